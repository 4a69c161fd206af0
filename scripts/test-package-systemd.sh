#!/usr/bin/env bash
# Runs the package test (TestDebInstallsAndRemoves) under a real systemd,
# on a machine whose PID 1 is not systemd (CI, a container, a VM like ours):
# it boots this machine's own root file system, as an overlay (nothing is
# written to the machine's files), as a systemd-nspawn container, and runs
# the test in it. There the packaged unit starts with its whole sandbox
# (system call filter, capabilities, read-only file system...), which the
# ordinary package test, without systemd, cannot apply.
#
# Needs: root, systemd-nspawn (Debian's systemd-container), and a root file
# system that holds /usr, /etc, /var and this checkout (an overlay does not
# reach into other mounts). The container shares no network with the host
# (--private-network) and starts none of the host's services: only systemd
# and what the test starts. It reaches the host's Docker engine through
# /run/docker.sock, so the containers the test creates are the host's, and
# removed by it as usual.
# Usage: scripts/test-package-systemd.sh dist/gitopsd_<version>_amd64.deb
set -euo pipefail
deb=$(readlink -f "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "test-package-systemd: needs root"; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "test-package-systemd: systemd-nspawn is missing: apt-get install systemd-container"; exit 1; }
[ -f "$deb" ] || { echo "test-package-systemd: no package $1: run make package"; exit 1; }

base=$(mktemp -d /var/tmp/gitopsd-nspawn.XXXXXX)
mkdir "$base/upper" "$base/work" "$base/root"
nspawn=
cleanup() {
  if [ -n "$nspawn" ]; then
    kill "$nspawn" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$nspawn" 2>/dev/null || break; sleep 1; done
  fi
  umount "$base/root" 2>/dev/null || true
  rm -rf "$base"
}
trap cleanup EXIT
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
# None of the host's services (a second dockerd, databases, timers) starts
# in the container: their .wants links are removed from the overlay only.
find "$base/root/etc/systemd/system" -path '*.wants/*' -delete

systemd-nspawn --directory="$base/root" --register=no --keep-unit --machine="gitopsd-test-$$" \
  --console=passive --private-network --bind=/run/docker.sock --bind-ro="$(dirname "$deb")":/pkgdist \
  -b >"$base/nspawn.log" 2>&1 &
nspawn=$!

leader=
for _ in $(seq 1 60); do
  leader=$(pgrep -P "$nspawn" | head -1 || true)
  if [ -n "$leader" ]; then
    state=$(nsenter -t "$leader" -a -- systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
  fi
  kill -0 "$nspawn" 2>/dev/null || { echo "test-package-systemd: the container did not boot:"; cat "$base/nspawn.log"; exit 1; }
  sleep 1
done
[ -n "$leader" ] || { echo "test-package-systemd: the container did not boot in 60 s"; cat "$base/nspawn.log"; exit 1; }
echo "test-package-systemd: systemd runs in the container ($state); running the package test there"

nsenter -t "$leader" -a -- env HOME="$HOME" PATH="$PATH" CGO_ENABLED=0 GITOPSD_TEST_PACKAGE=1 \
  GITOPSD_TEST_DEB="/pkgdist/$(basename "$deb")" \
  sh -c "cd '$repo' && go test -count=1 -v -timeout 9m -run '^TestDebInstallsAndRemoves\$' ./cmd/gitopsd/"
