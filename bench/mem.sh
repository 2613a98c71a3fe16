#!/bin/bash
# Idle websocket memory of one or more lb binaries: each, in turn and
# freshly started, in front of the same static workers, holds N idle
# websockets to the workers' /echo (as `make bench` does: wsbench hold over
# several source addresses); the lb's RSS growth divided by the number held
# is the figure. With several binaries and rounds the order alternates, so
# an A/B of a change is one command.
#
# Usage: bench/mem.sh [-n N] [-r RATE] [--rounds R] [--workers W] [--threads T]
#                     [--lb-args 'FLAGS'] [BIN...]
# Defaults: N = 9950 (or what the open-files limit allows: two descriptors
# per connection), 4000/s, 1 round, 4 workers, 1 thread, BIN = bin/lb.
# Prints one line per run and, per binary, the median bytes per idle
# websocket.
set -u
cd "$(dirname "$0")/.." || exit 2
NW=4 ROUNDS=1 THREADS=1 N="" RATE=4000 LB_EXTRA=""
BIN=${BIN_DIR:-bin}
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. bench/lib.sh

lbs=()
while [ $# -gt 0 ]; do
    case $1 in
    -n) N=$2 && shift ;;
    -r) RATE=$2 && shift ;;
    --rounds) ROUNDS=$2 && shift ;;
    --workers) NW=$2 && shift ;;
    --threads) THREADS=$2 && shift ;;
    --lb-args) LB_EXTRA=$2 && shift ;;
    -h | --help) usage 0 ;;
    -*) usage ;;
    *) lbs+=("$1") ;;
    esac
    shift || usage
done
[ ${#lbs[@]} -eq 0 ] && lbs=("$BIN/lb")
for b in "${lbs[@]}"; do
    [ -x "$b" ] || { echo "mem: $b is not an executable" >&2 && exit 2; }
done
ulimit -n "$(ulimit -Hn)"
NOFILE=$(front_nofile)
FD_CONNS=$(((NOFILE - 100) / 2))
[ -z "$N" ] && N=$((FD_CONNS < 9950 ? FD_CONNS : 9950))
for v in "$N" "$RATE" "$ROUNDS" "$NW" "$THREADS"; do
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "$v" -lt 1 ]; then
        echo "mem: '$v' is not a count >= 1" >&2
        exit 2
    fi
done
# Each wsbench process keeps under its own open-files limit.
PROCS=$(((N + 7999) / 8000))
SRC_IPS=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5

bench_scratch mem

read -r -a ports < <(free_ports $((NW + 2)))
bench_start_workers "$NW" "$tmp" 30
LB_PORT=${ports[NW]} ADMIN_PORT=${ports[NW + 1]}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# One run: starts BIN, holds N, prints "held before_kb after_kb bytes_per_conn".
run_one() {
    local bin=$1 lb hp before after held
    # shellcheck disable=SC2086
    "$bin" --listen "127.0.0.1:$LB_PORT" --admin "127.0.0.1:$ADMIN_PORT" --threads "$THREADS" \
        --access-log=false --log-level warn --route /echo "${backends[@]}" $LB_EXTRA 2>"$tmp/lb.err" &
    lb=$!
    pids+=("$lb")
    wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" 200 15 || { cat "$tmp/lb.err" >&2 && return 1; }
    $PY bench/scenarios/lbstat.py up "127.0.0.1:$ADMIN_PORT" "$NW" 15 >/dev/null || return 1
    before=$(rss_kb "$lb")
    "$BIN/wsbench" hold -q -n "$N" -r "$RATE" -d 300 --procs "$PROCS" --source-ips "$SRC_IPS" \
        "ws://127.0.0.1:$LB_PORT/echo" >"$tmp/hold.out" 2>&1 &
    hp=$!
    local deadline=$((SECONDS + 60 + N / RATE))
    until grep -q '^HOLDING' "$tmp/hold.out" || [ $SECONDS -ge $deadline ]; do sleep 0.05; done
    held=$(sed -n 's/^HOLDING n=//p' "$tmp/hold.out" | head -1)
    after=$(rss_kb "$lb")
    kill -INT "$hp" 2>/dev/null
    wait "$hp" 2>/dev/null
    kill "$lb" 2>/dev/null
    wait "$lb" 2>/dev/null
    if [ -z "$held" ] || [ "$held" -le 0 ]; then
        echo "mem: nothing held" >&2
        cat "$tmp/hold.out" >&2
        return 1
    fi
    echo "$held $before $after $(((after - before) * 1024 / held))"
}

echo "idle websockets: wsbench hold -n $N -r $RATE --procs $PROCS --source-ips $SRC_IPS; $NW workers, $THREADS thread(s), $ROUNDS round(s)"
printf '%-3s %5s %-40s %6s %10s %9s %10s\n' bin round path held before_kb after_kb bytes/conn
for ((r = 1; r <= ROUNDS; r++)); do
    order=$(seq 0 $((${#lbs[@]} - 1)))
    [ $((r % 2)) = 0 ] && order=$(seq $((${#lbs[@]} - 1)) -1 0)
    for k in $order; do
        res=$(run_one "${lbs[k]}") || exit 1
        read -r held before after per <<<"$res"
        printf '%-3s %5d %-40s %6d %10d %9d %10d\n' "$k" "$r" "${lbs[k]}" "$held" "$before" "$after" "$per"
        echo "$k $per" >>"$tmp/per.txt"
    done
done
for ((k = 0; k < ${#lbs[@]}; k++)); do
    awk -v k="$k" '$1 == k { print $2 }' "$tmp/per.txt" | sort -n |
        awk -v b="${lbs[k]}" '{ v[++n] = $1 }
            END { printf "median %s: %d bytes per idle websocket (min %d, max %d, %d runs)\n",
                  b, v[int((n + 1) / 2)], v[1], v[n], n }'
done
