#!/usr/bin/env bash
# Long-lived sessions: the rebalance and affinity scenarios.
#
#   bench/sessions.sh [short|full] [OUTDIR]
#
# rebalance: 400 websockets held with no churn on 4 workers, then a fifth
#   joins; max/mean over time, sockets moved (closed with 1012 and reopened),
#   evaluations interrupted, client errors. Side by side: the lb with the
#   workers' --rebalance, the lb without it, HAProxy (leastconn) without it,
#   and HAProxy in front of rebalancing workers (the decision is the
#   worker's, so it works behind any proxy).
# affinity: 1,000 session keys reconnecting under churn (exponential
#   lifetimes) with one of 4 workers killed midway; how often a key returns
#   to the worker it had (hit rate) and max/mean. The lb with --affinity
#   against HAProxy's balance hdr() + hash-type consistent +
#   hash-balance-factor, and the lb's plain leastconn for contrast.
#
# Starts its own Redis, workers, lbs and HAProxy on free 127.0.0.1 ports
# (every file in a temp dir); writes OUTDIR/sessions.md, OUTDIR/rebalance.svg
# (gnuplot) and raw outputs in OUTDIR/raw/ (default OUTDIR:
# bench/results/<date>-sessions). bench/run.sh runs it and appends the
# tables to its report. Bounded: short about 4 minutes, full about 7.
set -euo pipefail

MODE=${1:-short}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN_DIR:-$ROOT/bin}
WSB=$BIN/wsbench
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SESS="$PY $ROOT/bench/scenarios/sessions.py"
OUT=${2:-$ROOT/bench/results/$(date -u +%Y-%m-%d-%H%M)-sessions}
RAW=$OUT/raw
TMP=$(mktemp -d /tmp/wslb-sessions.XXXXXX)
mkdir -p "$RAW"
CMDS=$RAW/sessions-commands.txt
: >"$CMDS"
HAPROXY=$(command -v haproxy || true)
GNUPLOT=$(command -v gnuplot || true)
ulimit -n "$(ulimit -Hn)"

case "$MODE" in
short)
    RB_N=400 RB_D=40 RB_AT=6 RB_IDLE=4
    AF_RATE=100 AF_L=2000 AF_D=30 AF_KILL=15
    ;;
full)
    RB_N=400 RB_D=60 RB_AT=10 RB_IDLE=8
    AF_RATE=200 AF_L=3000 AF_D=60 AF_KILL=30
    ;;
*)
    echo "usage: $0 [short|full] [OUTDIR]" >&2
    exit 2
    ;;
esac
RB_RATE=20 # --rebalance-rate: fleet-wide sockets per second
AF_KEYS=1000

declare -A PID
LOG_TAG=sessions LOG_PREFIX=s-
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# kv as a number: 0 when the run printed no RESULT (so sums never abort).
kvn() {
    local v
    v=$(kv "$1" "$2")
    [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}

read -r REDIS_PORT LB_PORT LB_ADMIN HAP_PORT W1 W2 W3 W4 W5 < <(free_ports 9)
declare -A WPORT=([w1]=$W1 [w2]=$W2 [w3]=$W3 [w4]=$W4 [w5]=$W5)
REDIS=127.0.0.1:$REDIS_PORT
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP" --protected-mode yes
for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.05
done

start_worker() { # ID PREFIX [extra...]
    local id=$1 prefix=$2
    shift 2
    start "$id" "$BIN/worker" --listen "127.0.0.1:${WPORT[$id]}" --id "$id" --redis "$REDIS" \
        --redis-prefix "$prefix" --uid-base $((100000 + 1024 * ${WPORT[$id]})) --max-evals 2 \
        --drain-s 2 --log-level info "$@"
    wait_http "http://127.0.0.1:${WPORT[$id]}/healthz" 200 15
}
start_lb() { # PREFIX NWORKERS [extra...]
    local prefix=$1 nw=$2
    shift 2
    start lb "$BIN/lb" --listen "127.0.0.1:$LB_PORT" --admin "127.0.0.1:$LB_ADMIN" \
        --redis "$REDIS" --redis-prefix "$prefix" --log-level warn --access-log=false \
        --route /eval --route /echo --grace-s 1 "$@"
    wait_http "http://127.0.0.1:$LB_ADMIN/healthz" 200 15
    $PY "$ROOT/bench/scenarios/lbstat.py" up "127.0.0.1:$LB_ADMIN" "$nw" 15
}
start_haproxy() { # BALANCE-LINES SERVER...
    local lines=$1 dir=$TMP/haproxy
    shift
    mkdir -p "$dir"
    render_haproxy "$ROOT/bench/haproxy.cfg.in" "$dir/haproxy.cfg.1" "$dir" "$HAP_PORT" 1 "$@"
    $PY -c 'import sys; t = open(sys.argv[1]).read(); open(sys.argv[2], "w").write(t.replace("    balance leastconn\n", sys.argv[3]))' \
        "$dir/haproxy.cfg.1" "$dir/haproxy.cfg" "$lines"
    start haproxy "$HAPROXY" -db -f "$dir/haproxy.cfg"
    wait_http "http://127.0.0.1:$HAP_PORT/healthz" 200 15
}
servers() { for i in "$@"; do echo "w$i=127.0.0.1:${WPORT[w$i]}"; done; }
stop_all() {
    for n in lb haproxy w1 w2 w3 w4 w5; do stop "$n"; done
}

# ---- rebalance -------------------------------------------------------------------
RB_FLAGS=(--rebalance --rebalance-idle-s "$RB_IDLE" --rebalance-rate "$RB_RATE")
RB_VARIANTS="lb-rebalance lb haproxy"
[ -z "$HAPROXY" ] && RB_VARIANTS="lb-rebalance lb"
[ -n "$HAPROXY" ] && RB_VARIANTS+=" haproxy-rebalance"
declare -A RB_ROW
v_i=0
for v in $RB_VARIANTS; do
    v_i=$((v_i + 1))
    prefix="rb$v_i:"
    flags=()
    [[ $v == *-rebalance ]] && flags=("${RB_FLAGS[@]}")
    log "rebalance: $v"
    for i in 1 2 3 4; do start_worker "w$i" "$prefix" "${flags[@]}"; done
    if [[ $v == lb* ]]; then
        start_lb "$prefix" 4
        url=ws://127.0.0.1:$LB_PORT
    else
        # w5 is in HAProxy's list from the start (down until it runs), as a
        # server-template slot is.
        # shellcheck disable=SC2046
        start_haproxy "    balance leastconn"$'\n' $(servers 1 2 3 4 5)
        url=ws://127.0.0.1:$HAP_PORT
    fi
    echo "wsbench balance -L 0 -c $RB_N -r 200 --reopen -d $RB_D --series rb-$v.series $url/echo   # $v; w5 joins at ${RB_AT}s" >>"$CMDS"
    "$WSB" balance -q -L 0 -c "$RB_N" -r 200 --reopen -d "$RB_D" --interval 0.5 \
        --series "$RAW/rb-$v.series" "$url/echo" >"$RAW/rb-$v.out" 2>&1 &
    bp=$!
    # Evaluations running throughout (never idle, so never closed).
    echo "wsbench eval -c 2 -d $((RB_D - 2)) --code 'import time; time.sleep(0.5)' $url/eval   # alongside" >>"$CMDS"
    "$WSB" eval -q -c 2 -d $((RB_D - 2)) --code 'import time; time.sleep(0.5)' "$url/eval" \
        >"$RAW/rb-$v-eval.out" 2>&1 &
    ep=$!
    sleep "$RB_AT" # scenario timing: the 400 are held by now
    start_worker w5 "$prefix" "${flags[@]}"
    wait "$bp" || true
    wait "$ep" || true
    read -r before after50 after99 final settle < <($SESS ratio "$RAW/rb-$v.series" "$RB_AT" 4 5 1.1 "$RAW/rb-$v.dat") || true
    RB_ROW[$v]="| $v | $before | $final | $settle | $(kv "rb-$v" closed_1012) | $(kv "rb-$v-eval" evals) | $(kv "rb-$v-eval" v_lost) | $(($(kvn "rb-$v" hs_fail) + $(kvn "rb-$v" closed_other))) |"
    shed=0
    for i in 1 2 3 4 5; do
        n=$(curl -s --max-time 2 "http://127.0.0.1:${WPORT[w$i]}/metrics" |
            awk '/^worker_rebalance_shed_total/ {s += $2} END {print s + 0}')
        shed=$((shed + n))
    done
    RB_ROW[$v]+=" $shed |"
    stop_all
done

# ---- affinity --------------------------------------------------------------------
AF_VARIANTS="lb-affinity lb"
[ -n "$HAPROXY" ] && AF_VARIANTS="lb-affinity haproxy-hdr lb"
declare -A AF_ROW
for v in $AF_VARIANTS; do
    v_i=$((v_i + 1))
    prefix="af$v_i:"
    log "affinity: $v"
    for i in 1 2 3 4; do start_worker "w$i" "$prefix"; done
    case $v in
    lb-affinity)
        start_lb "$prefix" 4 --affinity header:X-Session --affinity-load-factor 1.25
        url=ws://127.0.0.1:$LB_PORT
        ;;
    lb)
        start_lb "$prefix" 4
        url=ws://127.0.0.1:$LB_PORT
        ;;
    haproxy-hdr)
        # shellcheck disable=SC2046
        start_haproxy "    balance hdr(X-Session)"$'\n'"    hash-type consistent"$'\n'"    hash-balance-factor 125"$'\n' $(servers 1 2 3 4)
        url=ws://127.0.0.1:$HAP_PORT
        ;;
    esac
    echo "wsbench balance -r $AF_RATE -L $AF_L -d $AF_D --keys $AF_KEYS --key-header X-Session --reopen --series af-$v.series $url/echo   # $v; w4 killed at ${AF_KILL}s" >>"$CMDS"
    "$WSB" balance -q -r "$AF_RATE" -L "$AF_L" -d "$AF_D" --keys "$AF_KEYS" --key-header X-Session \
        --reopen --interval 0.5 --series "$RAW/af-$v.series" "$url/echo" >"$RAW/af-$v.out" 2>&1 &
    bp=$!
    sleep "$AF_KILL" # scenario timing: keys have come back a few times by now
    kill -KILL "${PID[w4]}"
    wait "${PID[w4]}" 2>/dev/null || true
    unset "PID[w4]"
    wait "$bp" || true
    read -r before after50 after99 final settle < <($SESS ratio "$RAW/af-$v.series" "$AF_KILL" 4 3 1.25 "$RAW/af-$v.dat") || true
    AF_ROW[$v]="| $v | $(kv "af-$v" hit_rate) | $(kv "af-$v" key_hits) | $(kv "af-$v" key_misses) | $before | $after50 | $after99 | $(kv "af-$v" opened) | $(kv "af-$v" closed_other) | $(kv "af-$v" hs_fail) |"
    stop_all
done

# ---- plot and tables ---------------------------------------------------------------
PLOT=""
if [ -n "$GNUPLOT" ]; then
    files=""
    for v in $RB_VARIANTS; do files+="$RAW/rb-$v.dat:$v "; done
    gnuplot -e "files='$files'; at=$RB_AT; out='$OUT/rebalance.svg'" \
        "$ROOT/bench/plot/rebalance.gp" 2>>"$RAW/gnuplot.log" && PLOT=1
fi
{
    echo "Measured by \`bench/sessions.sh $MODE\` at commit \`$(bench_commit "$ROOT")\` ($(date -u +%Y-%m-%d) UTC, $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg))."
    echo
    echo "## Rebalance after a scale-out ($RB_N websockets held, no churn, on 4 workers; a fifth joins at ${RB_AT}s; ${RB_D}s)"
    echo
    echo "The workers' \`--rebalance --rebalance-idle-s $RB_IDLE --rebalance-rate $RB_RATE\` (threshold 1.2, hold 5 s) where the"
    echo "variant says so. max/mean over the workers in service (4, then 5), sampled every 0.5 s by the clients;"
    echo "\"settled\": seconds from the join until max/mean is ≤ 1.1 and stays there (-1: never). Moved: sockets"
    echo "closed with 1012 and reopened by the client (which then landed on the least-loaded worker). Two eval"
    echo "clients run \`time.sleep(0.5)\` in a loop alongside: \"interrupted\" counts runs lost to a close."
    echo
    echo "| front | max/mean before | max/mean at the end | settled (s) | moved | evaluations | interrupted | client errors | shed (workers' metrics) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for v in $RB_VARIANTS; do echo "${RB_ROW[$v]}"; done
    echo
    [ -n "$PLOT" ] && echo "![rebalance](rebalance.svg)" && echo
    echo "## Session affinity under churn ($AF_KEYS keys, $AF_RATE new connections/s, mean life ${AF_L} ms, ${AF_D}s; w4 killed at ${AF_KILL}s)"
    echo
    echo "Each new connection carries one of $AF_KEYS keys (X-Session, random) and reconnects on a close by the server with"
    echo "the same key. A hit: a key's connection lands on the worker its previous one had. max/mean over the live"
    echo "connections of the workers in service (4, then 3). lb-affinity: \`--affinity header:X-Session"
    echo "--affinity-load-factor 1.25\`; haproxy-hdr: \`balance hdr(X-Session)\`, \`hash-type consistent\`,"
    echo "\`hash-balance-factor 125\`; lb: plain leastconn, no affinity."
    echo
    echo "| front | hit rate | hits | misses | max/mean before the kill (p50) | after (p50) | after (p99) | connections | closed by the server | failed handshakes |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for v in $AF_VARIANTS; do echo "${AF_ROW[$v]}"; done
    echo
    echo "Commands:"
    echo
    echo '```'
    cat "$CMDS"
    echo '```'
} >"$OUT/sessions.md"
log "sessions: $OUT/sessions.md"
echo "$OUT/sessions.md"
