#!/bin/bash
# Syscalls per operation of each front, counted by `strace -c -f -p PID`
# over a fixed wsbench run in front of the same static workers: the exact
# figures of README.md "Performance -> Levers" (they do not swing with the
# machine's load as throughput and CPU do). Fronts: the lb binaries given
# (default bin/lb) and, with --haproxy, HAProxy with bench/haproxy.cfg.in.
# Throughput under strace means nothing; only the counts are printed: per
# syscall, calls per operation and (in brackets) the failing ones.
#
# Usage: bench/syscalls.sh [--case hs|rtt] [-d SECS] [--workers N]
#                          [--haproxy] [LB_BIN...]
# Defaults: hs (wsbench handshake -c 16), 3 s, 4 workers; rtt is wsbench
# rtt -c 50 -s 64.
set -u
cd "$(dirname "$0")/.." || exit 2
NW=4 CASE=hs DUR=3 HAP=0
BIN=${BIN_DIR:-bin}
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. bench/lib.sh

lbs=()
while [ $# -gt 0 ]; do
    case $1 in
    --case) case $2 in hs | rtt) CASE=$2 ;; *) usage ;; esac && shift ;;
    -d) DUR=$2 && shift ;;
    --workers) NW=$2 && shift ;;
    --haproxy) HAP=1 ;;
    -h | --help) usage 0 ;;
    -*) usage ;;
    *) lbs+=("$1") ;;
    esac
    shift || usage
done
for v in "$NW" "$DUR"; do
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "$v" -lt 1 ]; then
        echo "syscalls: '$v' is not a count >= 1" >&2
        exit 2
    fi
done
[ ${#lbs[@]} -eq 0 ] && [ "$HAP" = 0 ] && lbs=("$BIN/lb")
for b in "${lbs[@]}"; do
    [ -x "$b" ] || { echo "syscalls: $b is not an executable" >&2; exit 2; }
done
command -v strace >/dev/null || { echo "syscalls: strace is not installed" >&2; exit 2; }
if [ "$HAP" = 1 ]; then
    command -v haproxy >/dev/null || { echo "syscalls: haproxy is not installed" >&2; exit 2; }
fi

bench_scratch sc
ulimit -n "$(ulimit -Hn)"

read -r -a ports < <(free_ports $((NW + 2 * ${#lbs[@]} + 1)))
bench_start_workers "$NW" "$tmp"

# Runs the case against PORT while strace counts PID's syscalls; prints the
# table per operation.
count() { # NAME PID PORT
    local url="ws://127.0.0.1:$3/echo" res ops
    run() {
        if [ "$CASE" = rtt ]; then
            "$BIN/wsbench" rtt -q -c 50 -s 64 -d "$1" "$url"
        else
            "$BIN/wsbench" handshake -q -c 16 -d "$1" "$url"
        fi
    }
    run 1 >/dev/null # warm-up: the first connections, the workers' pools
    strace -c -f -p "$2" -o "$tmp/strace" 2>/dev/null &
    local spid=$!
    sleep 1 # attached to every thread before the run starts
    res=$(run "$DUR" | grep '^RESULT')
    kill -INT "$spid"
    wait "$spid"
    if [ "$CASE" = rtt ]; then
        ops=$(echo "$res" | tr ' ' '\n' | sed -n 's/^msgs=//p')
    else
        ops=$(echo "$res" | tr ' ' '\n' | sed -n 's/^handshakes=//p')
    fi
    echo "$1: ${ops:-0} $([ "$CASE" = rtt ] && echo messages || echo handshakes)"
    # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
    awk -v n="${ops:-0}" '
        $1 ~ /^[0-9.]+$/ && (NF == 5 || NF == 6) && $NF != "total" {
            e = NF == 6 ? $5 : 0
            if (n > 0) printf "  %-16s %7.2f  (%.2f)\n", $NF, $4 / n, e / n
            t += $4
        }
        END { if (n > 0) printf "  %-16s %7.2f\n", "total", t / n; else print "  no operations" }
    ' "$tmp/strace"
}

echo "syscalls per $([ "$CASE" = rtt ] && echo "round trip (wsbench rtt -c 50 -s 64)" || echo "handshake (wsbench handshake -c 16)"), $NW workers, ${DUR} s, 1 thread"
k=$NW
for b in "${lbs[@]}"; do
    port=${ports[k]} admin=${ports[k + 1]}
    k=$((k + 2))
    "$b" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --threads 1 --access-log=false \
        --health-interval-ms 60000 --log-level warn --route /echo "${backends[@]}" 2>"$tmp/lb.err" &
    lpid=$!
    pids+=("$lpid")
    wait_http "http://127.0.0.1:$admin/healthz" 200 15 || { cat "$tmp/lb.err" >&2; exit 1; }
    $PY bench/scenarios/lbstat.py up "127.0.0.1:$admin" "$NW" 15 >/dev/null || exit 1
    count "$b" "$lpid" "$port"
    kill "$lpid"
done
if [ "$HAP" = 1 ]; then
    port=${ports[k]}
    render_haproxy bench/haproxy.cfg.in "$tmp/haproxy.cfg" "$tmp" "$port" 1 "${servers[@]}"
    haproxy -db -f "$tmp/haproxy.cfg" 2>/dev/null &
    hpid=$!
    pids+=("$hpid")
    wait_http "http://127.0.0.1:$port/healthz" 200 15 || exit 1
    for ((i = 0; i < NW; i++)); do
        $PY bench/scenarios/lbstat.py hap "$tmp/haproxy.sock" "w$i" UP 15 >/dev/null || exit 1
    done
    count haproxy "$hpid" "$port"
fi
