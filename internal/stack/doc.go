// Package stack owns the desired state: each stacks/<name>/ folder of a
// checked-out revision loaded, as docker compose would load it, into a
// normalized model, with gitopsd's x-gitopsd extension parsed and load
// errors pinned to a file and line.
//
// Loading follows `docker compose -p <name> -f <file> [-f compose.<host>.yaml]
// up` of compose v2.40.3, run in the stack folder, step for step, so that
// the config hash gitopsd writes equals the one compose computes: the stack
// folder is the working directory (and PWD), its .env feeds interpolation
// (the process environment wins over it), paths are resolved, no profile is
// active, unused networks and volumes are dropped, the service environment
// is resolved after load (env_file merged in, then dropped) and builds get
// DOCKER_DEFAULT_PLATFORM. GITOPSD_HOST and GITOPSD_LABEL_<KEY> are added
// to the interpolation environment and win over the process environment.
package stack
