#!/bin/bash
# Local demo: a private Redis, three workers publishing to it and the lb on
# 127.0.0.1:8080 (admin on 127.0.0.1:8081). Ctrl-C stops everything.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN_DIR:-bin}
LB_LISTEN=${LB_LISTEN:-127.0.0.1:8080}
LB_ADMIN=${LB_ADMIN:-127.0.0.1:8081}
NWORKERS=${NWORKERS:-3}
WORKER_BASE_PORT=${WORKER_BASE_PORT:-9001}

tmp=$(mktemp -d /tmp/wslb-run.XXXXXX)
pids=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    # Workers and the lb drain on SIGTERM; Redis goes last so they can deregister.
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "${redis_pid:-}" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$tmp"
    exit 0
}
trap cleanup INT TERM EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # host port seconds
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    --logfile "$tmp/redis.log" &
redis_pid=$!
wait_port 127.0.0.1 "$rport" 10 || { echo "redis did not start; see $tmp/redis.log"; exit 1; }
echo "redis:   127.0.0.1:$rport"

for ((i = 1; i <= NWORKERS; i++)); do
    port=$((WORKER_BASE_PORT + i - 1))
    # Each worker's slots get uids of their own (per-uid kernel limits).
    "$BIN/worker" --listen "127.0.0.1:$port" --id "w$i" --redis "127.0.0.1:$rport" \
        --uid-base $((61000 + 1024 * (i - 1))) --drain-s 5 2> >(sed "s/^/[w$i] /" >&2) &
    pids+=($!)
    wait_port 127.0.0.1 "$port" 10 || { echo "worker w$i did not start"; exit 1; }
    echo "worker:  w$i on ws://127.0.0.1:$port/eval"
done

if [ -x "$BIN/lb" ]; then
    "$BIN/lb" --listen "$LB_LISTEN" --admin "$LB_ADMIN" --redis "127.0.0.1:$rport" \
        --route /eval --static web 2> >(sed "s/^/[lb] /" >&2) &
    pids+=($!)
    wait_port "${LB_LISTEN%:*}" "${LB_LISTEN##*:}" 10 || { echo "lb did not start"; exit 1; }
    echo "lb:      http://$LB_LISTEN/ (the page), ws://$LB_LISTEN/eval   (admin: http://$LB_ADMIN/stats)"
    url="ws://$LB_LISTEN/eval"
else
    url="ws://127.0.0.1:$WORKER_BASE_PORT/eval"
    echo "lb:      not built yet; connect to a worker directly"
fi
cat <<EOT

Try it (python3-websockets):
  /usr/bin/python3 -m websockets $url
  > {"type":"run","id":"r1","runtime":"python3","code":"print(6*7)"}

Ctrl-C stops everything.
EOT
wait "${pids[0]}"
