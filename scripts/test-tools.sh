#!/usr/bin/env bash
# The command-line tools the test suite runs besides Go and Docker, each as
# tool:Debian-package. Both `make test` and .ci/run call this script, so a
# fresh machine and CI prepare the same way:
#  - as root with apt-get, missing tools are installed (their services are
#    not started: policy-rc.d);
#  - otherwise each missing tool is named with the command that installs it,
#    and the suite runs without it: the tests that need it skip with the same
#    message, except under CI=true, where they fail (and so does this script).
# Extra tools for a target: scripts/test-tools.sh lintian:lintian
set -uo pipefail

tools=(systemd-analyze:systemd promtool:prometheus prometheus:prometheus zstd:zstd ssh-keygen:openssh-client gpg:gnupg sshd:openssh-server "$@")

missing=()
for t in "${tools[@]}"; do
  command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("$t")
done
[ ${#missing[@]} -eq 0 ] && exit 0

pkgs=()
for t in "${missing[@]}"; do pkgs+=("${t#*:}"); done

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-tools: installing Debian's ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  rc=$?
  [ -n "$own_policy" ] && rm -f "$policy"
  [ $rc -eq 0 ] || echo "test-tools: apt-get install ${pkgs[*]} failed ($rc)"
  still=()
  for t in "${missing[@]}"; do
    command -v "${t%%:*}" >/dev/null 2>&1 || still+=("$t")
  done
  missing=("${still[@]}")
  [ ${#missing[@]} -eq 0 ] && exit 0
  pkgs=()
  for t in "${missing[@]}"; do pkgs+=("${t#*:}"); done
fi

for t in "${missing[@]}"; do
  echo "test-tools: ${t%%:*} is missing: the tests that need it skip (Debian, Ubuntu: sudo apt-get install ${t#*:})"
done
echo "test-tools: to install them all (Debian, Ubuntu): sudo apt-get install ${pkgs[*]}"
if [ "${CI:-}" = true ]; then
  echo "test-tools: CI=true runs every test: failing"
  exit 1
fi
exit 0
