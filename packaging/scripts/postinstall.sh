#!/bin/sh
# The socket's group: its members may read status; changes need root.
set -e
if ! getent group gitopsd >/dev/null 2>&1; then
  groupadd --system gitopsd 2>/dev/null || addgroup --system gitopsd
fi
chgrp gitopsd /etc/gitopsd/gitopsd.yaml /var/lib/gitopsd 2>/dev/null || true
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  # An upgrade restarts a running daemon; the stacks keep running meanwhile.
  systemctl try-restart gitopsd.service || true
fi
exit 0
