#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Starts or stops a Redis server, or a Redis Cluster of three masters, on
# loopback ports, for trying `kvscope-cli store` and `store bench` by hand
# (the tests start their own: tests/stream/redis_fixture.h).
#
#   scripts/redis-local.sh start [--cluster] [--port P] [DIR]   prints the store spec
#   scripts/redis-local.sh stop [DIR]
#
# DIR (default: /tmp/kvscope-redis) holds the servers' data, logs and pids.
# Nothing is started in the background beyond the servers themselves;
# `stop` ends exactly the processes `start` recorded.
set -euo pipefail
cmd="${1:-}"
shift || true
cluster=0
port=""
dir=/tmp/kvscope-redis
while [ $# -gt 0 ]; do
  case "$1" in
    --cluster) cluster=1; shift ;;
    --port) port="$2"; shift 2 ;;
    -*) echo "usage: $0 start [--cluster] [--port P] [DIR] | stop [DIR]" >&2; exit 2 ;;
    *) dir="$1"; shift ;;
  esac
done

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_one() {  # start_one PORT SUBDIR [extra args...]
  local p="$1" d="$2"
  shift 2
  mkdir -p "$d"
  redis-server --port "$p" --bind 127.0.0.1 --dir "$d" --save "" --appendonly no \
    --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" "$@"
  for _ in $(seq 100); do
    redis-cli -p "$p" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "redis-server on port $p did not start (see $d/redis.log)" >&2
  return 1
}

case "$cmd" in
  start)
    command -v redis-server >/dev/null || { echo "redis-server is not installed (Debian: redis-server)" >&2; exit 1; }
    if [ -e "$dir/ports" ]; then echo "already started in $dir (stop it first)" >&2; exit 1; fi
    mkdir -p "$dir"
    if [ "$cluster" = 0 ]; then
      p="${port:-$(free_port)}"
      start_one "$p" "$dir/node0"
      echo "$p" > "$dir/ports"
      echo "redis://127.0.0.1:$p"
    else
      ports=()
      for i in 0 1 2; do
        p="$(free_port)"
        start_one "$p" "$dir/node$i" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
        ports+=("$p")
      done
      printf '%s\n' "${ports[@]}" > "$dir/ports"
      redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" "127.0.0.1:${ports[2]}" \
        --cluster-replicas 0 --cluster-yes >/dev/null
      for _ in $(seq 100); do
        redis-cli -p "${ports[0]}" cluster info | grep -q cluster_state:ok && break
        sleep 0.1
      done
      echo "redis://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
    fi
    ;;
  stop)
    [ -e "$dir/ports" ] || { echo "nothing started in $dir" >&2; exit 0; }
    for pidfile in "$dir"/node*/redis.pid; do
      [ -e "$pidfile" ] || continue
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start [--cluster] [--port P] [DIR] | stop [DIR]" >&2
    exit 2
    ;;
esac
