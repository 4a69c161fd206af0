#!/bin/sh
# After removal. On purge (Debian's `apt purge` / `dpkg --purge`; an RPM is
# never purged) the configuration and the state go too, as Debian expects:
# /etc/gitopsd (with registry credentials the operator put there) and
# /var/lib/gitopsd (the database, checkouts, keys). One exception, on
# purpose: volume snapshots in /var/lib/gitopsd/snapshots may be the only
# copy of a volume's data, so a non-empty snapshots folder is kept, and
# said so. The group gitopsd stays (files elsewhere may belong to it), as
# Debian's policy for system groups advises. The stacks keep running: their
# containers belong to Docker.
set -e
case "$1" in
  purge)
    rm -rf /etc/gitopsd
    if [ -d /var/lib/gitopsd/snapshots ] && [ -n "$(ls -A /var/lib/gitopsd/snapshots 2>/dev/null)" ]; then
      find /var/lib/gitopsd -mindepth 1 -maxdepth 1 ! -name snapshots -exec rm -rf {} +
      echo "gitopsd: kept the volume snapshots in /var/lib/gitopsd/snapshots; remove them with: rm -rf /var/lib/gitopsd"
    else
      rm -rf /var/lib/gitopsd
    fi
    ;;
esac
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
