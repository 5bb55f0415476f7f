#!/usr/bin/env bash
# A private Docker engine for the compose test on a machine without a running one (needs root).
#
#   infra/docker/local-images/dockerd.sh start   # prints DOCKER_HOST=unix://...; reuses a daemon this script started
#   infra/docker/local-images/dockerd.sh stop    # stops only the daemon whose pid is in our pidfile
#   infra/docker/local-images/dockerd.sh status  # exit 0 when that daemon is running
#
# Its data root persists (TOLLGATE_DOCKER_DATA, default /var/lib/tollgate-ci/docker), so later runs reuse the
# base images built by build.sh. Runtime files live under TOLLGATE_DOCKER_RUN (default /run/tollgate-ci).
set -euo pipefail

data_root=${TOLLGATE_DOCKER_DATA:-/var/lib/tollgate-ci/docker}
run_dir=${TOLLGATE_DOCKER_RUN:-/run/tollgate-ci}
socket=$run_dir/docker.sock
pidfile=$run_dir/dockerd.pid
log=$run_dir/dockerd.log
docker_host=unix://$socket

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  status)
    running
    ;;
  start)
    if running && DOCKER_HOST=$docker_host docker info >/dev/null 2>&1; then
      echo "DOCKER_HOST=$docker_host"
      exit 0
    fi
    command -v dockerd >/dev/null || { echo "dockerd is not installed (apt-get install docker.io)" >&2; exit 2; }
    [ "$(id -u)" -eq 0 ] || { echo "starting dockerd needs root" >&2; exit 2; }
    mkdir -p "$data_root" "$run_dir/exec"
    # setsid: the daemon outlives this script, and a Ctrl-C in the caller's terminal does not reach it.
    setsid dockerd --data-root "$data_root" --exec-root "$run_dir/exec" -H "$docker_host" --pidfile "$pidfile" \
      >"$log" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
      if DOCKER_HOST=$docker_host docker info >/dev/null 2>&1; then
        echo "DOCKER_HOST=$docker_host"
        exit 0
      fi
      sleep 0.5
    done
    echo "dockerd did not answer within 60 s; its log ($log) ends with:" >&2
    tail -n 20 "$log" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$pidfile")
      kill -TERM "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.5; done
      echo "dockerd ($pid) still running after 30 s" >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
