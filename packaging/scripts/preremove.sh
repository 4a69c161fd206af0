#!/bin/sh
# Stop the daemon on removal (not on upgrade). Its stacks keep running:
# their containers belong to Docker. Config and state stay until purge.
set -e
case "$1" in
  remove|0)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now gitopsd.service || true
    fi
    ;;
esac
exit 0
