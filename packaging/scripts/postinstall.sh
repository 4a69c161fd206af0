#!/bin/sh
# The socket's group: its members may read status; changes need root. They
# may also read the config (paths, no secrets): /etc/gitopsd and the file
# are root:gitopsd. The unit gives /run/gitopsd to the group at each start.
set -e
if ! getent group gitopsd >/dev/null 2>&1; then
  groupadd --system gitopsd 2>/dev/null || addgroup --system gitopsd
fi
chgrp gitopsd /etc/gitopsd /etc/gitopsd/gitopsd.yaml 2>/dev/null || true
chmod 0750 /etc/gitopsd 2>/dev/null || true
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  # An upgrade restarts a running daemon; the stacks keep running meanwhile.
  systemctl try-restart gitopsd.service || true
fi
exit 0
