#!/bin/bash
# A/B of two fronts in front of the same static workers, alternating which
# goes first each round so that both see the same machine load: by default
# the lb against HAProxy; with --lb-a OLD --lb-b NEW two lb binaries against
# each other (the "no regression" check of a change). For each run it prints
# operations/s, p50/p99/p99.9, the front's CPU per operation (user + system
# of all its threads, from /proc/PID/stat) and its involuntary context
# switches; at the end, the median (min-max) per front and B/A per round and
# of the medians.
#
# Usage: bench/ab.sh [--lb-a BIN --lb-b BIN] [--case rtt|hs|both] [--rounds R]
#                    [--workers N] [-d SECS] [--threads N] [--lb-args 'FLAGS']
#                    [WORKERS] [ROUNDS]
# Defaults: 4 workers, 5 rounds, both cases (rtt: wsbench rtt -c 50 -s 64;
# hs: wsbench handshake -c 16), 4 s per run, 1 thread (HAProxy nbthread = the
# lb's threads). WORKERS and ROUNDS may also be given positionally.
set -u
cd "$(dirname "$0")/.." || exit 2
NW=4 ROUNDS=5 CASES="rtt hs" DUR=4 THREADS=1 LB_A="" LB_B="" LB_EXTRA=""
BIN=${BIN_DIR:-bin}
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. bench/lib.sh

pos=()
while [ $# -gt 0 ]; do
    case $1 in
    --lb-a) LB_A=$2 && shift ;;
    --lb-b) LB_B=$2 && shift ;;
    --case) case $2 in rtt | hs) CASES=$2 ;; both) CASES="rtt hs" ;; *) usage ;; esac && shift ;;
    --rounds) ROUNDS=$2 && shift ;;
    --workers) NW=$2 && shift ;;
    -d) DUR=$2 && shift ;;
    --threads) THREADS=$2 && shift ;;
    --lb-args) LB_EXTRA=$2 && shift ;;
    -h | --help) usage 0 ;;
    -*) usage ;;
    *) pos+=("$1") ;;
    esac
    shift || usage
done
[ ${#pos[@]} -ge 1 ] && NW=${pos[0]}
[ ${#pos[@]} -ge 2 ] && ROUNDS=${pos[1]}
for v in "$NW" "$ROUNDS" "$DUR" "$THREADS"; do
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "$v" -lt 1 ]; then
        echo "ab: '$v' is not a count >= 1" >&2
        exit 2
    fi
done
if [ -n "$LB_A$LB_B" ]; then
    if ! [ -x "$LB_A" ] || ! [ -x "$LB_B" ]; then
        echo "ab: --lb-a and --lb-b need two lb binaries" >&2
        exit 2
    fi
    FRONT_A=A FRONT_B=B
else
    command -v haproxy >/dev/null || { echo "ab: haproxy is not installed" >&2; exit 2; }
    LB_A=$BIN/lb
    FRONT_A=haproxy FRONT_B=lb # ratios read lb/HAProxy
fi
HZ=$(getconf CLK_TCK)

bench_scratch ab
ulimit -n "$(ulimit -Hn)"

read -r -a ports < <(free_ports $((NW + 4)))
bench_start_workers "$NW" "$tmp"

declare -A PORT PIDOF BINOF ADMIN
start_lb() { # FRONT BIN PORT ADMIN
    # shellcheck disable=SC2086
    "$2" --listen "127.0.0.1:$3" --admin "127.0.0.1:$4" --threads "$THREADS" --access-log=false \
        --log-level warn --route /echo "${backends[@]}" $LB_EXTRA 2>"$tmp/$1.err" &
    pids+=($!)
    PORT[$1]=$3 PIDOF[$1]=$! BINOF[$1]=$2 ADMIN[$1]=$4
    # The lb answers only its routes on its port: ask its admin API instead.
    wait_http "http://127.0.0.1:$4/healthz" 200 15 || { cat "$tmp/$1.err" >&2; exit 1; }
}
if [ "$FRONT_A" = A ]; then
    start_lb A "$LB_A" "${ports[NW]}" "${ports[NW + 1]}"
    start_lb B "$LB_B" "${ports[NW + 2]}" "${ports[NW + 3]}"
else
    start_lb lb "$LB_A" "${ports[NW]}" "${ports[NW + 1]}"
    render_haproxy bench/haproxy.cfg.in "$tmp/haproxy.cfg" "$tmp" "${ports[NW + 2]}" "$THREADS" \
        "${servers[@]}"
    haproxy -db -f "$tmp/haproxy.cfg" 2>/dev/null &
    pids+=($!)
    PORT[haproxy]=${ports[NW + 2]} PIDOF[haproxy]=$! BINOF[haproxy]=$(command -v haproxy)
    wait_http "http://127.0.0.1:${ports[NW + 2]}/healthz" 200 15 || exit 1
fi
# Measure only once every front sees every worker up.
for f in "${!ADMIN[@]}"; do
    $PY bench/scenarios/lbstat.py up "127.0.0.1:${ADMIN[$f]}" "$NW" 15 || exit 1
done
if [ "$FRONT_A" = haproxy ]; then
    for ((i = 0; i < NW; i++)); do
        $PY bench/scenarios/lbstat.py hap "$tmp/haproxy.sock" "w$i" UP 15 >/dev/null || exit 1
    done
fi

echo "A/B: $FRONT_A = ${BINOF[$FRONT_A]}, $FRONT_B = ${BINOF[$FRONT_B]}; $NW workers, $THREADS thread(s), $ROUNDS rounds of ${DUR} s"
echo "  rtt: wsbench rtt -c 50 -s 64 -d $DUR; hs: wsbench handshake -c 16 -d $DUR"
printf '%-8s %-4s %5s %9s %7s %7s %8s %10s %12s\n' front case round ops/s p50_us p99_us p999_us cpu_us/op invol_ctxt
tsv=$tmp/ab.tsv
for ((r = 1; r <= ROUNDS; r++)); do
    order="$FRONT_A $FRONT_B"
    [ $((r % 2)) = 0 ] && order="$FRONT_B $FRONT_A"
    for cs in $CASES; do
        for front in $order; do
            url="ws://127.0.0.1:${PORT[$front]}/echo"
            pid=${PIDOF[$front]}
            read -r c0 _ < <(cpu_ticks "$pid")
            x0=$(ctxt_invol "$pid")
            if [ "$cs" = rtt ]; then
                res=$("$BIN/wsbench" rtt -q -c 50 -s 64 -d "$DUR" "$url" | grep '^RESULT')
            else
                res=$("$BIN/wsbench" handshake -q -c 16 -d "$DUR" "$url" | grep '^RESULT')
            fi
            read -r c1 _ < <(cpu_ticks "$pid")
            x1=$(ctxt_invol "$pid")
            get() { echo "$res" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
            if [ "$cs" = rtt ]; then ops=$(get msgs) tput=$(get msgs_per_s); else ops=$(get handshakes) tput=$(get hs_per_s); fi
            cpu=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="${ops:-0}" \
                'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "-" }')
            line="$front $cs $r ${tput:-0} $(get p50_us) $(get p99_us) $(get p999_us) $cpu $((x1 - x0))"
            echo "$line" >>"$tsv"
            # shellcheck disable=SC2086
            printf '%-8s %-4s %5s %9.0f %7s %7s %8s %10s %12s\n' $line
        done
    done
done
$PY bench/scenarios/rounds.py ab "$tsv" "$FRONT_A" "$FRONT_B"
