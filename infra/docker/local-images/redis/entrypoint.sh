#!/bin/sh
# As the official image: options alone mean redis-server; its defaults here are every address, no protected
# mode, data in /data. Later arguments win, so the command can override any of them.
set -e
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --bind '* -::*' --protected-mode no --dir /data "$@"
fi
exec "$@"
