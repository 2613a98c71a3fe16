#!/bin/bash
# A/B of two lb builds (say, before and after a change) in front of the same
# workers, interleaved so that both see the same machine load. Each round
# runs, against each lb in turn (the order alternates between rounds),
# `wsbench rtt -c 50 -s 64 -d 4` on /echo and `wsbench handshake -c 16 -d 4`,
# and reads the lb's CPU time (user + system, /proc/PID/stat) around each
# run. CPU per operation is the figure to trust on a shared machine: it does
# not depend on how much of the machine the lb got. Prints one line per run,
# then the median and range of each figure per lb.
# Usage: bench/ab-lb.sh LB_A LB_B [ROUNDS] [WORKERS]   (defaults 5 and 4)
set -u
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/ab-lb.sh LB_A LB_B [ROUNDS] [WORKERS]" >&2; exit 2; }
LB_A=$1
LB_B=$2
ROUNDS=${3:-5}
NW=${4:-4}
BIN=${BIN_DIR:-bin}
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)
for b in "$LB_A" "$LB_B" "$BIN/worker" "$BIN/wsbench"; do
    [ -x "$b" ] || { echo "ab-lb: $b is not an executable" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/wslb-ab-lb.XXXXXX)
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
print(" ".join(str(x.getsockname()[1]) for x in s))' $((NW + 4)))

wait_ok() { # url
    for _ in $(seq 200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1")" = 200 ] && return 0
        sleep 0.05
    done
    echo "ab-lb: $1 did not answer" >&2
    exit 1
}

backends=()
for ((i = 0; i < NW; i++)); do
    "$BIN/worker" --listen "127.0.0.1:${ports[i]}" --id "w$i" --uid-base $((61000 + 1024 * i)) \
        --log-level warn 2>/dev/null &
    pids+=($!)
    backends+=(--backend "w$i=127.0.0.1:${ports[i]}")
done
for ((i = 0; i < NW; i++)); do wait_ok "http://127.0.0.1:${ports[i]}/healthz"; done

declare -A lb_pid lb_port
for k in 0 1; do
    bin=$LB_A
    [ $k = 1 ] && bin=$LB_B
    port=${ports[NW + 2 * k]} admin=${ports[NW + 2 * k + 1]}
    "$bin" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --access-log=false \
        --log-level warn --route /echo "${backends[@]}" 2>/dev/null &
    pids+=($!)
    lb_pid[$k]=$!
    lb_port[$k]=$port
    wait_ok "http://127.0.0.1:$admin/healthz"
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

echo "lb  mode       ops/s      cpu_us_per_op  (A = $LB_A, B = $LB_B; $NW workers)"
: >"$tmp/runs.tsv"
for ((r = 1; r <= ROUNDS; r++)); do
    order="0 1"
    [ $((r % 2)) = 0 ] && order="1 0"
    for k in $order; do
        name=A
        [ $k = 1 ] && name=B
        url="ws://127.0.0.1:${lb_port[$k]}/echo"
        for mode in rtt handshake; do
            if [ $mode = rtt ]; then args=(rtt -q -c 50 -s 64 -d 4) key=msgs; else
                args=(handshake -q -c 16 -d 4) key=handshakes; fi
            c0=$(cpu "${lb_pid[$k]}")
            res=$("$BIN/wsbench" "${args[@]}" "$url" | grep '^RESULT')
            c1=$(cpu "${lb_pid[$k]}")
            ops=$(get "$res" "$key")
            dur=$(get "$res" duration)
            if [ -z "$ops" ] || [ "$ops" = 0 ] || [ "$(get "$res" errors)" != 0 ]; then
                echo "ab-lb: $name $mode failed: $res" >&2
                exit 1
            fi
            line=$($PY -c 'import sys; o, d, c, hz = map(float, sys.argv[1:]); print("%.0f\t%.2f" % (o / d, (c / hz) * 1e6 / o))' \
                "$ops" "$dur" $((c1 - c0)) "$HZ")
            printf '%-3s %-10s %9s %14s\n' "$name" "$mode" $(echo "$line" | cut -f1) $(echo "$line" | cut -f2)
            printf '%s\t%s\t%s\t%s\n' "$name" "$mode" "$line" "$r" >>"$tmp/runs.tsv"
        done
    done
done

$PY - "$tmp/runs.tsv" "$ROUNDS" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
print("\nmedian [min-max] over %s rounds" % sys.argv[2])
for mode in ("rtt", "handshake"):
    for lb in ("A", "B"):
        ops = [float(r[2]) for r in rows if r[0] == lb and r[1] == mode]
        cpu = [float(r[3]) for r in rows if r[0] == lb and r[1] == mode]
        print("%s %-10s ops/s %8.0f [%.0f-%.0f]  cpu us/op %6.2f [%.2f-%.2f]" % (
            lb, mode, statistics.median(ops), min(ops), max(ops),
            statistics.median(cpu), min(cpu), max(cpu)))
    # Each round ran A and B back to back: their ratio cancels slow drifts
    # in the machine's load.
    by = {(r[0], r[4]): float(r[3]) for r in rows if r[1] == mode}
    ratio = [by[("B", k)] / by[("A", k)] for (lb, k) in by if lb == "A" and ("B", k) in by]
    print("B/A %-10s cpu per op, paired by round: median %.3f [%.3f-%.3f]" % (
        mode, statistics.median(ratio), min(ratio), max(ratio)))
EOF
