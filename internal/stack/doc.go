// Package stack owns the desired state: each stacks/<name>/ folder of a
// checked-out revision loaded, as docker compose would load it, into a
// normalized model, with gitopsd's x-gitopsd extension parsed and load
// errors pinned to a file and line.
//
// Loading follows `docker compose -p <name> [--profile P]... up` of compose
// v2.40.3, run in the stack folder, step for step, so that the config hash
// gitopsd writes equals the one compose computes:
//
//   - The interpolation environment is GITOPSD_HOST and GITOPSD_LABEL_<KEY>,
//     then the process environment, then the stack's .env, each filling in
//     only what the ones before left unset; PWD is the stack folder.
//   - The files are those COMPOSE_FILE in .env names (split by
//     COMPOSE_PATH_SEPARATOR, default ":", relative to the stack folder),
//     else the first of compose.yaml, compose.yml, docker-compose.yml and
//     docker-compose.yaml; the host's overlay compose.<host>.yaml (or .yml)
//     is merged last. compose.override.yaml is not read. The first file's
//     folder is the project directory, and its own .env, if it is not the
//     stack folder, fills in what is still unset.
//   - The active profiles are x-gitopsd.profiles (as --profile), else
//     COMPOSE_PROFILES in .env, else none. A stack that sets
//     x-gitopsd.profiles is loaded twice: its profiles are known only once
//     its files are merged and interpolated.
//   - COMPOSE_FILE, COMPOSE_PATH_SEPARATOR and COMPOSE_PROFILES are taken
//     from .env only, never from the process environment: one variable in
//     the daemon's environment would change every stack on the host.
//   - Paths are resolved, services of inactive profiles dropped (a required
//     depends_on on one fails, as in compose), unused networks and volumes
//     dropped, the service environment resolved after load (env_file merged
//     in, then dropped), and builds get DOCKER_DEFAULT_PLATFORM.
//
// Discover takes a folder under stacks/ for a stack when it holds a compose
// file by a default name or a .env assigning COMPOSE_FILE; a .env naming
// files that do not exist makes an Invalid stack, not a missing one (whose
// containers would be removed).
//
// Two steps are gitopsd's own, for a repository that may be hostile. Every
// file the loader reads is judged before anything opens it: the stack
// folder and stacks/ itself must be folders, not symlinks (the daemon's
// live view aside); nothing in the folder may be a device, FIFO or socket,
// and no symlink may leave it; each file read (compose files, .env,
// env_file, label_file, include and extends files, secret and config
// files) must be a regular file under its size limit (MaxFileBytes,
// MaxObjectBytes), and those parsed as YAML, whatever their name, must not
// expand past MaxYAMLNodes; COMPOSE_FILE names at most MaxComposeFiles
// files; and paths that leave the folder are refused unless the host's
// policy allows them. Compose files are judged as they are selected,
// include entries by a walk of the YAML before compose-go runs, extends
// and include paths again by a resource loader compose-go asks first
// (fileGuard), label files between compose-go's model and its project
// (which reads them), env, secret and config files before anything reads
// them. LoadAll passes over a stack whose compose files, as written, target
// other hosts, before reading any other file of it. After loading,
// SOPS-encrypted env files and secret and config files are decrypted in
// memory (a decrypted secret or config keeps its plaintext as content,
// which the engine writes into the container) and, for stacks that target
// this host, the host's policy judges what the services ask
// (internal/policy).
//
// Loading is paid for once per content: compose-go's validation against
// the compose schema is done with the schema compiled once per process,
// compose-go validating only what gitopsd cannot vouch for (schema.go),
// and Cache keeps loaded stacks by their folder's tree hash, so that a
// push loads again only the stacks whose folder it changed.
package stack
