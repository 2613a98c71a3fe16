#!/bin/bash
# A/B of the lb against HAProxy on the echo round trip, alternating fronts so
# that both see the same machine load: N workers (static backends, no Redis,
# no health-check noise difference: both check every second), R rounds of
# `wsbench rtt -c 50 -s 64 -d 4` per front. For each run it prints messages/s,
# p50/p99/p99.9 and the front's involuntary context switches during the run
# (from /proc/PID/task/*/status), the figures the README's Performance section
# quotes. Usage: bench/ab.sh [WORKERS] [ROUNDS]   (defaults 4 and 3)
set -u
cd "$(dirname "$0")/.."
NW=${1:-4}
ROUNDS=${2:-3}
BIN=${BIN_DIR:-bin}
PY=/usr/bin/python3
command -v haproxy >/dev/null || { echo "ab: haproxy is not installed" >&2; exit 2; }

tmp=$(mktemp -d /tmp/wslb-ab.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

read -r -a ports < <($PY -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))' $((NW + 3)))
lb_port=${ports[NW]} lb_admin=${ports[NW + 1]} ha_port=${ports[NW + 2]}

wait_ok() { # url
    for _ in $(seq 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1")" = 200 ] && return 0
        sleep 0.05
    done
    echo "ab: $1 did not answer" >&2
    exit 1
}

backends=() servers=""
for ((i = 0; i < NW; i++)); do
    "$BIN/worker" --listen "127.0.0.1:${ports[i]}" --id "w$i" --uid-base $((61000 + 1024 * i)) \
        --log-level warn 2>/dev/null &
    pids+=($!)
    backends+=(--backend "w$i=127.0.0.1:${ports[i]}")
    servers+="    server w$i 127.0.0.1:${ports[i]} check"$'\n'
done
for ((i = 0; i < NW; i++)); do wait_ok "http://127.0.0.1:${ports[i]}/healthz"; done

"$BIN/lb" --listen "127.0.0.1:$lb_port" --admin "127.0.0.1:$lb_admin" --access-log=false \
    --log-level warn --route /echo "${backends[@]}" 2>/dev/null &
lb_pid=$!
pids+=($lb_pid)
sed -e "s|@DIR@|$tmp|g" -e "s|@PORT@|$ha_port|" bench/haproxy.cfg.in |
    $PY -c 'import sys; sys.stdout.write(sys.stdin.read().replace("@SERVERS@\n", sys.argv[1]))' \
        "$servers" >"$tmp/haproxy.cfg"
haproxy -db -f "$tmp/haproxy.cfg" 2>/dev/null &
ha_pid=$!
pids+=($ha_pid)
# The lb answers only its routes on its port: ask its admin API instead.
wait_ok "http://127.0.0.1:$lb_admin/healthz"
wait_ok "http://127.0.0.1:$ha_port/healthz"

ctxt() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^nonvoluntary/ {s += $2} END {print s + 0}'; }

echo "front   msgs/s  p50_us p99_us p999_us involuntary_ctxt  ($NW workers, wsbench rtt -c 50 -s 64 -d 4)"
for ((r = 1; r <= ROUNDS; r++)); do
    for front in lb haproxy; do
        if [ $front = lb ]; then port=$lb_port pid=$lb_pid; else port=$ha_port pid=$ha_pid; fi
        before=$(ctxt "$pid")
        res=$("$BIN/wsbench" rtt -q -c 50 -s 64 -d 4 "ws://127.0.0.1:$port/echo" | grep '^RESULT')
        after=$(ctxt "$pid")
        get() { echo "$res" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
        printf '%-7s %7.0f %6s %6s %7s %16s\n' "$front" "$(get msgs_per_s)" "$(get p50_us)" \
            "$(get p99_us)" "$(get p999_us)" $((after - before))
    done
done
