#!/usr/bin/env bash
# gitopsd on embedded defaults: the bundled example repository as a local Git
# repository, SQLite and all state in ./.demo, one stack from an image built
# here FROM scratch (nothing is pulled).
#
#   scripts/demo.sh        build, then run the daemon in the foreground (Ctrl-C stops it;
#                          the stack keeps running, as under systemd)
#   scripts/demo.sh down   remove the demo's containers, network, volume, image and ./.demo
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=$root/.demo
project=gitopsd-demo
port=${DEMO_PORT:-8088}

if [ "${1:-}" = down ]; then
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
echo "building gitopsd and the demo image..."
CGO_ENABLED=0 go build -o "$root/bin/gitopsd" ./cmd/gitopsd
CGO_ENABLED=0 go build -o "$demo/image/testapp" ./internal/testenv/testapp
cat > "$demo/image/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY testapp /testapp
LABEL io.gitopsd.demo="1"
EXPOSE 8080
ENTRYPOINT ["/testapp"]
CMD ["serve"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build -q -t gitopsd-demo:1 "$demo/image" >/dev/null

if [ ! -d "$demo/repo/.git" ]; then
  rm -rf "$demo/repo"
  cp -r examples/repo "$demo/repo"
  git -C "$demo/repo" init -q -b main
  git -C "$demo/repo" add -A
  git -C "$demo/repo" -c user.name=demo -c user.email=demo@localhost commit -qm "Example stacks"
fi

cat > "$demo/gitopsd.yaml" <<CONFIG
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

cat <<HELP
gitopsd demo: state in .demo/, repository .demo/repo, stack '$project'.
  curl http://127.0.0.1:$port/                                  # the demo service
  bin/gitopsd status --config .demo/gitopsd.yaml                # what gitopsd sees
  bin/gitopsd history --config .demo/gitopsd.yaml
  edit .demo/repo/stacks/$project/compose.yaml, git commit, then
  bin/gitopsd sync --wait --config .demo/gitopsd.yaml           # or wait for the 10 s poll
Stop: Ctrl-C (the stack keeps running), then 'make demo-down' to remove everything.
HELP
exec "$root/bin/gitopsd" run --config "$demo/gitopsd.yaml"
