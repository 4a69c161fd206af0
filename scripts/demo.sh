#!/usr/bin/env bash
# gitopsd on embedded defaults: the bundled example repository as a local Git
# repository, SQLite and all state in ./.demo, one stack from an image built
# here FROM scratch (nothing is pulled).
#
#   scripts/demo.sh        build, start the daemon, wait for its first sync
#                          ("ready"), then show a zero-downtime roll and an
#                          automatic rollback under load; the daemon then runs
#                          until Ctrl-C (the stack keeps running, as under
#                          systemd). DEMO_TOUR=0 skips the roll and rollback.
#   scripts/demo.sh down   stop a demo daemon still running, remove the demo's
#                          containers, network, volume, image and ./.demo
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.demo
project=gitopsd-demo
port=${DEMO_PORT:-8088}
gitopsd=$root/bin/gitopsd
cfg=$demo/gitopsd.yaml
file=$demo/repo/stacks/$project/compose.yaml

if [ "${1:-}" = down ]; then
  # Only the daemon this script started, by the pid it wrote.
  if [ -f "$demo/gitopsd.pid" ]; then
    pid=$(cat "$demo/gitopsd.pid")
    if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$gitopsd" ]; then
      kill -TERM "$pid" && while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
  fi
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  nets=$(docker network ls -q --filter "label=com.docker.compose.project=$project")
  [ -n "$nets" ] && docker network rm $nets >/dev/null
  vols=$(docker volume ls -q --filter "label=com.docker.compose.project=$project")
  [ -n "$vols" ] && docker volume rm $vols >/dev/null
  docker image rm -f gitopsd-demo:1 >/dev/null 2>&1 || true
  rm -rf "$demo"
  echo "demo removed"
  exit 0
fi

mkdir -p "$demo/image" "$demo/state"
version=$(git describe --always --dirty 2>/dev/null || echo dev)
echo "building gitopsd $version and the demo image..."
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$version" -o "$gitopsd" ./cmd/gitopsd
CGO_ENABLED=0 go build -o "$demo/image/testapp" ./internal/testenv/testapp
cat > "$demo/image/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY testapp /testapp
LABEL io.gitopsd.demo="1"
EXPOSE 8080
ENTRYPOINT ["/testapp"]
CMD ["serve"]
DOCKERFILE
out=$(DOCKER_BUILDKIT=0 docker build -q -t gitopsd-demo:1 "$demo/image" 2>&1) || { echo "$out" >&2; exit 1; }

git_demo() { git -C "$demo/repo" -c user.name=demo -c user.email=demo@localhost "$@"; }
fresh=false
if [ ! -d "$demo/repo/.git" ]; then
  rm -rf "$demo/repo"
  cp -r examples/repo "$demo/repo"
  git -C "$demo/repo" init -q -b main
  git -C "$demo/repo" add -A
  git_demo commit -qm "Example stacks"
  fresh=true
fi

cat > "$cfg" <<CONFIG
source:
  url: $demo/repo
  branch: main
  interval: 10s
host:
  name: demo
state_dir: $demo/state
socket: $demo/gitopsd.sock
metrics: ""
CONFIG

# The daemon runs in the background with its log in a file, so what the demo
# shows stays readable; `tail -f .demo/gitopsd.log` follows it.
"$gitopsd" run --config "$cfg" >"$demo/gitopsd.log" 2>&1 &
daemon=$!
echo "$daemon" > "$demo/gitopsd.pid"
load=""
stop() {
  [ -n "$load" ] && kill -TERM "$load" 2>/dev/null
  kill -TERM "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
  rm -f "$demo/gitopsd.pid"
}
trap 'echo; echo "gitopsd stopped; the stack keeps running (make demo-down removes it)"; stop; exit 0' INT TERM
gd() { "$gitopsd" "$@" --config "$cfg"; }
alive() {
  kill -0 "$daemon" 2>/dev/null && return
  echo "gitopsd exited; the end of .demo/gitopsd.log:" >&2
  tail -n 20 "$demo/gitopsd.log" >&2
  exit 1
}
# settled: the stack runs the revision it wants, healthy (a held or failed
# stack is Failed, not Synced).
settled() { gd status "$project" --json 2>/dev/null | tr -d ' \n' | grep -q '"sync":"Synced","health":"Healthy"'; }
answer() { curl -fsS --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null || echo "(no answer)"; }
revision() { gd status "$project" --json | tr -d ' \n' | sed -n 's/.*"revision":"\([0-9a-f]\{12\}\).*/\1/p'; }

echo "starting gitopsd (log: .demo/gitopsd.log)..."
start=$SECONDS
until settled; do
  alive
  if (( SECONDS - start > 300 )); then
    echo "the stack did not become Synced and Healthy within 5 minutes:" >&2
    gd status >&2 || true
    stop
    exit 1
  fi
  sleep 1
done
echo "ready: gitopsd $version synced stack '$project' at $(revision) in $((SECONDS - start)) s; http://127.0.0.1:$port/ answers: $(answer)"

# load_start sends requests through the published port (the proxy) until
# load_stop; load_stop prints how many there were and how many failed.
load_start() {
  rm -f "$demo/load.json"
  "$demo/image/testapp" load "http://127.0.0.1:$port/" --duration 10m --interval 20ms --out "$demo/load.json" &
  load=$!
}
load_stop() {
  kill -TERM "$load" 2>/dev/null || true
  wait "$load" || true
  load=""
  local requests failures
  requests=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' "$demo/load.json")
  failures=$(sed -n 's/.*"failures":\([0-9]*\).*/\1/p' "$demo/load.json")
  echo "   $requests requests to http://127.0.0.1:$port/ meanwhile, $failures failed"
}
# step MESSAGE: commit what was edited and sync, under load.
step() {
  git_demo commit -qam "$1"
  echo
  echo "== commit: $1"
  load_start
  local t=$SECONDS out rc=0
  out=$(gd sync "$project" --wait 2>&1) || rc=$?
  if [ "$rc" = 0 ]; then
    echo "   gitopsd sync --wait: $out in $((SECONDS - t)) s"
  else
    echo "   gitopsd sync --wait: exit $rc after $((SECONDS - t)) s"
  fi
  load_stop
  alive
  gd history "$project" --limit 1 | sed 's/^/   /'
}

if [ "${DEMO_TOUR:-1}" != 0 ] && $fresh; then
  sed -i 's/VERSION: "v1:/VERSION: "v2:/' "$file"
  echo
  echo "web publishes no port (the proxy does), so gitopsd rolls it start-first:"
  echo "the new container passes its health gate beside the old one, then the old one stops."
  step "web: v2"
  echo "   now: $(answer)"

  sed -i 's/VERSION: "v2:/VERSION: "v3:/; s|STOP_DELAY: 1s|STOP_DELAY: 1s\n      CRASH_IF_EXISTS: /testapp   # v3'"'"'s bug: the app exits at start|' "$file"
  echo
  echo "A bad revision: v3 exits at start. Its container fails the gate, the old one keeps"
  echo "serving, the stack is rolled back and held until its folder changes again."
  step "web: v3 (exits at start)"
  echo "   now: $(answer)"
  gd status "$project" | sed 's/^/   /'

  git_demo revert --no-edit HEAD >/dev/null
  echo
  echo "== commit: revert v3"
  out=$(gd sync "$project" --wait 2>&1) || true
  echo "   gitopsd sync --wait: ${out//$'\n'/ }; the stack follows the branch again"
elif [ "${DEMO_TOUR:-1}" != 0 ]; then
  echo "(the roll and rollback tour runs on a fresh demo: make demo-down first)"
fi

cat <<HELP

gitopsd demo: state in .demo/, repository .demo/repo, stack '$project', log .demo/gitopsd.log
  curl http://127.0.0.1:$port/                                  # the demo service, through its proxy
  bin/gitopsd status --config .demo/gitopsd.yaml                # what gitopsd sees
  bin/gitopsd history $project --config .demo/gitopsd.yaml     # every deployment and its steps
  docker stop $project-web-1                               # drift: healed within seconds
  edit .demo/repo/stacks/$project/compose.yaml, git commit, then
  bin/gitopsd sync --wait --config .demo/gitopsd.yaml           # or wait for the 10 s poll
Stop: Ctrl-C (the stack keeps running), then 'make demo-down' to remove everything.
HELP
wait "$daemon"
