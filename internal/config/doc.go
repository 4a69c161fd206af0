// Package config is the daemon's own configuration: where it reads it, its
// defaults, its environment overrides, and what makes it invalid.
//
// # Where
//
// The file is /etc/gitopsd/gitopsd.yaml, or the path given by --config or
// the GITOPSD_CONFIG variable. When the default file does not exist, the
// defaults and the GITOPSD_* variables below are the whole configuration, so
// a daemon can be configured from the environment alone; a file given with
// --config or GITOPSD_CONFIG must exist.
//
// # Every key
//
//	source:
//	  # Required. The Git repository of the desired state: https://, http://,
//	  # ssh://, git://, file://, scp-like (git@git.example.com:ops/fleet.git),
//	  # or a local path, which is also watched so a local push converges at
//	  # once. Never printed in errors: it may carry a token.
//	  # Env: GITOPSD_SOURCE_URL
//	  url: https://git.example.com/ops/fleet.git
//
//	  # The branch to follow, as a name ("main", not "refs/heads/main").
//	  # Default: main. Env: GITOPSD_SOURCE_BRANCH
//	  branch: main
//
//	  # Poll period, a Go duration (30s, 1m, 1h30m); each poll waits this
//	  # long plus jitter so a fleet does not poll in step. At least 5s.
//	  # Default: 1m. Env: GITOPSD_SOURCE_INTERVAL
//	  interval: 1m
//
//	  # How long one fetch (the first clone included) may take before it
//	  # fails: a server that accepts the connection and never answers gets
//	  # source.error "no answer within 1m (source.timeout)" and a count in
//	  # gitopsd_source_fetch_errors_total. The fetch runs beside the
//	  # reconcile loop, so heals, snapshots and the CLI never wait for it;
//	  # only syncs do (sync --wait then fails). A Go duration, at least 1s.
//	  # Default: 1m.
//	  timeout: 1m
//
//	  # Credentials, all optional. ssh_key is a private key for ssh:// and
//	  # scp-like URLs and requires known_hosts, the host keys to trust;
//	  # token_file holds an HTTPS token. Only the paths are configuration:
//	  # the secrets themselves never reach logs, the database or status.
//	  auth:
//	    ssh_key: /etc/gitopsd/deploy_key
//	    known_hosts: /etc/gitopsd/known_hosts
//	    token_file: /etc/gitopsd/token
//
//	  # Optional. With either file set, only a head whose commit is signed by
//	  # a key they hold is applied: SSH keys in git's allowed_signers format
//	  # (principals, options namespaces=, valid-after=, valid-before=; the
//	  # key may sign under any principal, as git itself checks), OpenPGP keys
//	  # as an armored keyring. An unsigned or wrongly signed head is refused:
//	  # the last trusted head keeps running, status' source.error says why,
//	  # gitopsd_source_head_trusted is 0. Only the head is verified, as Flux
//	  # does: a signer vouches for the tree of the commit they sign.
//	  # A signed head must also descend from the head applied before it
//	  # (kept in the database, so across restarts too): a force-push of an
//	  # older signed commit, or of one signed for another branch, is refused
//	  # the same way ("head X does not descend from the applied Y"). For a
//	  # repository whose history is rewritten on purpose, allow_rewrite: true
//	  # accepts such heads (it needs allowed_signers or keyring). Default:
//	  # false. `gitopsd rollback STACK --to REV` still returns a stack to an
//	  # older signed revision.
//	  verify:
//	    allowed_signers: /etc/gitopsd/allowed_signers
//	    keyring: /etc/gitopsd/keyring.asc
//	    allow_rewrite: false
//
//	host:
//	  # This host's name, matched by x-gitopsd.targets.hosts and seen by
//	  # compose files as GITOPSD_HOST. Lower-cased when loaded; letters,
//	  # digits, '-', '_' and '.'.
//	  # Default: the machine's hostname. Env: GITOPSD_HOST_NAME
//	  name: edge-01
//	  # Labels matched by x-gitopsd.targets.labels and seen by compose files
//	  # as GITOPSD_LABEL_<KEY> (key upper-cased). Keys: letters, digits, '_',
//	  # '.', '-'. Default: none.
//	  labels: {site: berlin}
//
//	# The SQLite database, the Git mirror and checkouts, snapshots. When it
//	# is full (or the database cannot be written), drift is still healed;
//	# status' store_error, gitopsd_store_writable and the log (once a
//	# minute) say what was not recorded.
//	# Default: /var/lib/gitopsd. Env: GITOPSD_STATE_DIR
//	state_dir: /var/lib/gitopsd
//
//	# The local API socket the subcommands (status, sync, ...) talk to.
//	# Default: /run/gitopsd/gitopsd.sock. Env: GITOPSD_SOCKET
//	socket: /run/gitopsd/gitopsd.sock
//
//	# host:port of the HTTP server for /metrics and /healthz; ":9469" listens
//	# on every interface; "" disables it.
//	# Default: 127.0.0.1:9469. Env: GITOPSD_METRICS
//	metrics: 127.0.0.1:9469
//
//	# Optional push trigger: POST /webhook (GitHub, GitLab, Gitea/Forgejo
//	# signatures) and POST /sync (Authorization: Bearer <secret>). listen is a
//	# host:port, "" (the default) disables it; secret_file is then required.
//	webhook:
//	  listen: ""
//	  secret_file: ""
//
//	# Drift is seen through Docker's events within a second; besides, the
//	# engine is listed this often (reads only), and every stack whose
//	# containers, networks or volumes changed since it was last compared is
//	# compared, for whatever an event stream can miss. At least 1s.
//	# Default: 1m.
//	drift:
//	  check_interval: 1m
//
//	# Snapshots a stack encrypts (x-gitopsd.backup.recipients: age public
//	# keys) are decrypted for restore tests and restores with the age
//	# identities in this file (age-keygen's format). "" (the default): none.
//	backup:
//	  identity_file: /etc/gitopsd/backup.key
//	  # Reserved for copies of the snapshots off the host: checked at start
//	  # (scheme s3 or sftp, no credentials in the URL, credentials_file
//	  # required and absolute, recipients are age public keys), not used yet.
//	  # The credentials file holds KEY=value lines: AWS_ACCESS_KEY_ID,
//	  # AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_INSECURE for s3; SSH_KEY_FILE,
//	  # SSH_KNOWN_HOSTS for sftp. Default: no remote.
//	  remote:
//	    url: ""                # s3://host:port/bucket/prefix, sftp://user@host:port/path
//	    credentials_file: ""   # /etc/gitopsd/remote.env
//	    recipients: []         # age1...
//
//	# SOPS-encrypted env_file files (dotenv, age recipients) are decrypted
//	# in memory with the age identities in this file, for the stacks that run
//	# here; values reach the containers' environment and nothing else (not
//	# the state folder, logs, status, diff or metrics). "" (the default): a
//	# stack with such a file is Invalid.
//	secrets:
//	  age_key_file: /etc/gitopsd/age.key
//
//	# What a stack may ask of this host. Without a preset everything docker
//	# compose runs is allowed, except paths that leave the stack's folder.
//	# preset: strict allows none of it; each key then opens a rule again.
//	# A stack that breaks a rule is Invalid, naming the file, line and rule.
//	# Rules judge what a request amounts to: a post_start/pre_stop hook is
//	# judged with its service, a local volume with o=bind as a bind of its
//	# device, a network named host as network_mode: host.
//	policy:
//	  preset: strict
//	  privileged: false          # privileged: true, on a service or on one of
//	                             # its post_start/pre_stop hooks
//	  host_namespaces: false     # network_mode, pid, ipc, uts, userns_mode, cgroup:
//	                             # host; a network named host; build.network: host
//	  devices: false             # devices:, device_cgroup_rules:, gpus:,
//	                             # deploy.resources.reservations.devices, a volume
//	                             # whose driver_opts mount a /dev device
//	  docker_socket: false       # a bind (or bind volume) of /var/run/docker.sock,
//	                             # or of a folder holding it
//	  paths_outside_stack: false # env_file, include, extends, build contexts,
//	                             # secrets/configs files, symlinks leaving stacks/<name>/
//	  other_containers: false    # joining or mounting from a container outside the
//	                             # stack: network_mode, ipc, pid, volumes_from or
//	                             # build.network container:<name>, external_links
//	  capabilities: [NET_BIND_SERVICE]  # cap_add allowed (ALL: any)
//	  bind_paths: [/srv/data]    # host folders binds may come from, also the
//	                             # device (or overlay dirs) of a local volume's
//	                             # driver_opts; binds inside the stack's folder
//	                             # need no entry (a volume's only with ro in o)
//	  # security_opt values allowed besides the known-safe no-new-privileges
//	  # (:true) and apparmor=docker-default; key=value or key:value, a
//	  # trailing * matches any rest (apparmor=*), ALL allows any. Absent: any
//	  # when privileged is allowed (a privileged container is unconfined
//	  # anyway), else only the known-safe ones, which refuses
//	  # seccomp=unconfined, a custom seccomp profile, apparmor=unconfined,
//	  # label=disable and systempaths=unconfined.
//	  security_options: [apparmor=my-profile]
//	  volume_drivers: [rexray/ebs]  # volume drivers allowed besides local (ALL: any)
//	  volume_options: false      # driver_opts of volumes (nfs, tmpfs, a filesystem,
//	                             # an overlay); a local bind volume needs none, as
//	                             # bind_paths and docker_socket judge it
//
//	# Pulls take registry credentials from a Docker config.json (auths,
//	# credsStore and credHelpers, as `docker login` leaves them); ""
//	# (the default) reads $DOCKER_CONFIG/config.json or ~/.docker/config.json.
//	# A build context (after .dockerignore) may hold max_build_context.
//	# Images gitopsd built or pulled that neither the applied nor the last
//	# healthy revision of any stack uses are removed after prune_after; 0
//	# (the default) never removes an image.
//	images:
//	  docker_config: /root/.docker/config.json
//	  max_build_context: 512MiB
//	  prune_after: 168h
//
//	# What went wrong (deploy_failed, rolled_back, drift, backup_failed,
//	# restore_test_failed) is POSTed as JSON ({event, host, stack, detail,
//	# at}) to this URL. "" (the default): no notifications.
//	# urls are shoutrrr service URLs (slack://, telegram://, smtp://,
//	# ntfy://, generic+https://, ...; docs/configuration.md lists the
//	# schemes) that get each event as a line of text.
//	notify:
//	  webhook: https://hooks.example.com/gitopsd
//	  urls: []
//
//	# Commit statuses on the Git provider, one per host and stack (context
//	# gitopsd/<host>/<stack>): pending while a roll runs or the rollout
//	# holds the stack, success, failure with the reason. provider: github,
//	# gitlab or gitea (Forgejo too); url: the API's base, default from
//	# source.url's host; token_file: absolute, never logged.
//	report:
//	  provider: github
//	  url: https://api.github.com
//	  token_file: /etc/gitopsd/status_token
//
//	# The Prometheus that scrapes the fleet, for `gitopsd fleet status` and
//	# `gitopsd fleet rollout` (--prometheus overrides it). "": the flag is
//	# required.
//	fleet:
//	  prometheus: http://prometheus.example:9090
//
// # Rules
//
//   - Unknown keys are errors, so a typo is not silently ignored. A key that
//     is absent, or present with no value, keeps its default.
//   - Environment variables are applied over the file. A variable that is set
//     wins even when it is empty: GITOPSD_METRICS= disables metrics.
//   - Relative paths (state_dir, socket, the auth and verify files,
//     webhook.secret_file, a local source.url) are resolved against the
//     working directory of the process loading the configuration, so
//     `state_dir: ./state` works from a checkout. Under systemd the working
//     directory is /, and the subcommands must resolve the same socket as the
//     daemon: use absolute paths there.
//   - A bad configuration is one error on one line naming the file, the line
//     when known, and the key, for instance
//     "config /etc/gitopsd/gitopsd.yaml: line 4: unknown key source.urll",
//     "config /etc/gitopsd/gitopsd.yaml: line 3: source.interval: must be at least 5s",
//     "config: source.url: required (from GITOPSD_SOURCE_URL)".
//     The daemon does not start with it.
package config
