#!/usr/bin/env bash
# Benchmark scenarios: the lb side by side with HAProxy and nginx in front of
# the same workers, plus failover, rolling deploy, scale-out and two-lb runs.
#
#   bench/run.sh short    a few minutes (make bench)
#   bench/run.sh full     up to ~20 minutes (make bench-full)
#
# Starts its own Redis, workers, lb(s), HAProxy and nginx on free 127.0.0.1
# ports, with every config, pid and log file in a temp dir (nothing under
# /etc is read or written), and writes bench/results/<date>/report.md plus
# SVG plots. Raw outputs go to bench/results/<date>/raw/ (not committed).
# Environment: BIN_DIR (default ./bin), LB_STATIC=1 to give the lb static
# --backend flags as well as Redis discovery.
set -euo pipefail

MODE=${1:-short}
case "$MODE" in
short | full) ;;
*)
    echo "usage: $0 short|full" >&2
    exit 2
    ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN_DIR:-$ROOT/bin}
WSB=$BIN/wsbench
PY=/usr/bin/python3
LBSTAT="$PY $ROOT/bench/scenarios/lbstat.py"
SERIES="$PY $ROOT/bench/scenarios/series.py"
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT=$ROOT/bench/results/$STAMP
RAW=$OUT/raw
TMP=$(mktemp -d /tmp/wslb-bench.XXXXXX)
mkdir -p "$RAW"
CMDS=$RAW/commands.txt
: >"$CMDS"

for b in "$WSB" "$BIN/lb" "$BIN/worker"; do
    [ -x "$b" ] || {
        echo "bench: $b is missing; run make first" >&2
        exit 1
    }
done
command -v redis-server >/dev/null || {
    echo "bench: redis-server not installed (apt-get install redis-server)" >&2
    exit 1
}
HAPROXY=$(command -v haproxy || true)
NGINX=$(command -v nginx || true)
GNUPLOT=$(command -v gnuplot || true)

# ---- sizes -------------------------------------------------------------------
if [ "$MODE" = short ]; then
    D=4               # seconds per rtt/handshake/eval measurement
    RTT_C=50          # rtt connections
    HS_C=16           # concurrent handshake cycles
    HOLD_NS="500 1000 2000"
    HOLD_R=4000
    BAL_C=400 BAL_L=2000 BAL_D=12 # balance: alive, mean life ms, seconds
    SO_C=200 SO_L=2000 SO_D=14 SO_AT=6
    TWO_C=400 TWO_L=2000 TWO_D=14 TWO_AT=6
    FO_D=8 FO_AT=3
else
    D=10
    RTT_C=200
    HS_C=64
    HOLD_NS="1000 2000 4000 8000"
    HOLD_R=5000
    BAL_C=2000 BAL_L=10000 BAL_D=45
    SO_C=1000 SO_L=10000 SO_D=60 SO_AT=30
    TWO_C=2000 TWO_L=10000 TWO_D=60 TWO_AT=35
    FO_D=20 FO_AT=6
fi
NW=4

# ---- process bookkeeping -----------------------------------------------------
declare -A PID
declare -A WPORT
cleanup() {
    set +e
    for name in "${!PID[@]}"; do
        kill -TERM "${PID[$name]}" 2>/dev/null
    done
    for name in "${!PID[@]}"; do
        for _ in $(seq 50); do
            kill -0 "${PID[$name]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${PID[$name]}" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Starts a named background process with its output in raw/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$RAW/$name.log" 2>&1 &
    PID[$name]=$!
}

# Stops a named process with a signal, waiting (bounded) for it to exit.
stop() {
    local name=$1 sig=${2:-TERM} limit=${3:-100}
    local p=${PID[$name]:-}
    [ -n "$p" ] || return 0
    kill -"$sig" "$p" 2>/dev/null || true
    for _ in $(seq "$limit"); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "PID[$name]"
}

# N free TCP ports on 127.0.0.1, distinct from each other.
free_ports() {
    $PY - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Polls URL until it answers with status CODE, at most TIMEOUT seconds.
wait_http() {
    local url=$1 code=${2:-200} timeout=${3:-10}
    local deadline=$((SECONDS + timeout))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" = "$code" ] && return 0
        sleep 0.05
    done
    log "timeout waiting for $code from $url"
    return 1
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Value of key in the RESULT line of raw/NAME.out ('-' when absent).
kv() {
    local v
    v=$(grep '^RESULT' "$RAW/$1.out" 2>/dev/null | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p")
    echo "${v:--}"
}

# Runs wsbench, recording the exact command; output in raw/NAME.out.
wsb() {
    local name=$1
    shift
    echo "wsbench $*" >>"$CMDS"
    "$WSB" "$@" >"$RAW/$name.out" 2>"$RAW/$name.err" || log "wsbench $name exited $?"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
ms() { awk -v u="$1" 'BEGIN { if (u == "-") print "-"; else printf "%.3f", u / 1000 }'; }

# ---- services ----------------------------------------------------------------
read -r REDIS_PORT LB_PORT LB_ADMIN LB2_PORT LB2_ADMIN LBRR_PORT LBRR_ADMIN HAP_PORT NGX_PORT \
    W1 W2 W3 W4 W5 < <(free_ports 14)
WPORT[w1]=$W1 WPORT[w2]=$W2 WPORT[w3]=$W3 WPORT[w4]=$W4 WPORT[w5]=$W5
REDIS=127.0.0.1:$REDIS_PORT

start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP" --protected-mode yes
for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.05
done

start_worker() {
    local id=$1
    start "$id" "$BIN/worker" --listen "127.0.0.1:${WPORT[$id]}" --id "$id" --redis "$REDIS" \
        --uid-base $((100000 + 64 * ${WPORT[$id]})) --drain-s 5 --log-level warn
    wait_http "http://127.0.0.1:${WPORT[$id]}/healthz" 200 15
}
for i in $(seq $NW); do start_worker "w$i"; done

lb_args() { # PORT ADMIN [extra...]
    local port=$1 admin=$2
    shift 2
    # The bench drives the workers' /echo as well as /eval: both are routes.
    echo --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --redis "$REDIS" --threads 1 \
        --log-level warn --access-log=false --route /eval --route /echo "$@"
    if [ "${LB_STATIC:-0}" = 1 ]; then
        for i in $(seq $NW); do echo --backend "w$i=127.0.0.1:${WPORT[w$i]}"; done
    fi
}
start_lb() { # NAME PORT ADMIN [extra...]
    local name=$1 port=$2 admin=$3
    shift 3
    # shellcheck disable=SC2046
    start "$name" "$BIN/lb" $(lb_args "$port" "$admin" "$@")
    wait_http "http://127.0.0.1:$admin/healthz" 200 15
    $LBSTAT up "127.0.0.1:$admin" "$NW" 15
}
start_lb lb "$LB_PORT" "$LB_ADMIN"

declare -A URL
URL[direct]=ws://127.0.0.1:$W1
URL[lb]=ws://127.0.0.1:$LB_PORT
TARGETS="direct lb"
if [ -n "$HAPROXY" ]; then
    servers=""
    for i in $(seq $NW); do servers+="    server w$i 127.0.0.1:${WPORT[w$i]} check"$'\n'; done
    sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|$HAP_PORT|g" "$ROOT/bench/haproxy.cfg.in" |
        awk -v s="$servers" '{ if ($0 == "@SERVERS@") printf "%s", s; else print }' >"$TMP/haproxy.cfg"
    start haproxy "$HAPROXY" -db -f "$TMP/haproxy.cfg"
    wait_http "http://127.0.0.1:$HAP_PORT/healthz" 200 15
    URL[haproxy]=ws://127.0.0.1:$HAP_PORT
    TARGETS+=" haproxy"
fi
if [ -n "$NGINX" ]; then
    servers=""
    for i in $(seq $NW); do servers+="        server 127.0.0.1:${WPORT[w$i]};"$'\n'; done
    sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|$NGX_PORT|g" "$ROOT/bench/nginx.conf.in" |
        awk -v s="$servers" '{ if ($0 == "@SERVERS@") printf "%s", s; else print }' >"$TMP/nginx.conf"
    start nginx "$NGINX" -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log"
    wait_http "http://127.0.0.1:$NGX_PORT/healthz" 200 15
    URL[nginx]=ws://127.0.0.1:$NGX_PORT
    TARGETS+=" nginx"
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "up: redis $REDIS, workers $W1 $W2 $W3 $W4, lb $LB_PORT, targets: $TARGETS"

# The process whose memory a target's idle connections cost.
target_pid() {
    case $1 in
    direct) echo "${PID[w1]}" ;;
    lb) echo "${PID[lb]}" ;;
    haproxy) echo "${PID[haproxy]}" ;;
    nginx) pgrep -P "${PID[nginx]}" | head -1 ;; # the one worker process
    esac
}

# ---- memory: idle websockets held, measured first while every front is fresh --------
# Holds accumulate (each wsbench keeps its connections until told to stop),
# so RSS is read at N1, N2, ... open connections without the allocator
# reusing memory freed by an earlier, smaller run.
echo "# n direct_mb lb_mb haproxy_mb nginx_mb" >"$RAW/memory.dat"
declare -A KBPC
declare -A MEMROW
for t in direct lb haproxy nginx; do
    if [[ " $TARGETS " != *" $t "* ]]; then
        for n in $HOLD_NS; do MEMROW[$n]+=" NaN"; done
        continue
    fi
    log "hold $t"
    pid=$(target_pid "$t")
    before=$(rss_kb "$pid")
    have=0
    hps=""
    for n in $HOLD_NS; do
        inc=$((n - have))
        echo "wsbench hold -n $inc -r $HOLD_R -d 300 ${URL[$t]}/echo   # cumulative $n held; stopped with SIGINT" >>"$CMDS"
        "$WSB" hold -q -n "$inc" -r "$HOLD_R" -d 300 "${URL[$t]}/echo" >"$RAW/hold-$t-$n.out" 2>&1 &
        hps+=" $!"
        deadline=$((SECONDS + 60))
        until grep -q '^HOLDING' "$RAW/hold-$t-$n.out" || [ $SECONDS -ge $deadline ]; do sleep 0.05; done
        have=$((have + $(sed -n 's/^HOLDING n=//p' "$RAW/hold-$t-$n.out" | head -1)))
        after=$(rss_kb "$pid")
        MEMROW[$n]+=" $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", (a - b) / 1024 }')"
        KBPC[$t]=$(awk -v a="$after" -v b="$before" -v n="$have" \
            'BEGIN { if (n + 0 > 0) printf "%.2f", (a - b) / n; else print "-" }')
        echo "$t held=$have rss_before_kb=$before rss_after_kb=$after" >>"$RAW/memory.txt"
    done
    # shellcheck disable=SC2086
    kill -INT $hps 2>/dev/null || true
    for p in $hps; do wait "$p" || true; done
done
for n in $HOLD_NS; do echo "$n${MEMROW[$n]}" >>"$RAW/memory.dat"; done

# The worker's built-in python3 runtime runs `/usr/bin/python3 -I -S -B main.py`;
# the same command from a shell is the bare baseline. Measured right after
# the direct eval run (the machine's load drifts), median of BARE_N runs to
# compare with the eval p50.
BARE_N=40
declare -A BARE_MS_ROUND
PYBIN="/usr/bin/python3 -I -S -B main.py"
bare_median_ms() {
    echo pass >"$TMP/main.py"
    local i t0 t1
    for i in $(seq $BARE_N); do
        t0=$(date +%s%N)
        (cd "$TMP" && /usr/bin/python3 -I -S -B main.py)
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000))
    done | sort -n | awk '{ v[NR] = $1 } END { printf "%.3f", v[int((NR + 1) / 2)] / 1000 }'
}

# ---- side by side --------------------------------------------------------------
# The machine is shared (load average in the report), so each measurement runs
# twice, the fronts in one order and then in reverse, and the round with the
# higher throughput is reported: interference only ever slows a run down.
REV_TARGETS=$(echo "$TARGETS" | tr ' ' '\n' | tac | tr '\n' ' ')
best() { # NAME KEY: copies the better of NAME-r1/NAME-r2 (higher KEY) to NAME
    local a b pick
    a=$(kv "$1-r1" "$2")
    b=$(kv "$1-r2" "$2")
    pick=r1
    awk -v a="$a" -v b="$b" 'BEGIN { exit !(b != "-" && (a == "-" || b + 0 > a + 0)) }' && pick=r2
    cp "$RAW/$1-$pick.out" "$RAW/$1.out"
    [ -f "$RAW/$1-$pick.hist" ] && cp "$RAW/$1-$pick.hist" "$RAW/$1.hist"
    return 0
}
for round in r1 r2; do
    order=$TARGETS
    [ $round = r2 ] && order=$REV_TARGETS
    for t in $order; do
        log "rtt $t ($round)"
        wsb "rtt-$t-$round" rtt -q -c "$RTT_C" -s 64 -w 1 -d "$D" --hist "$RAW/rtt-$t-$round.hist" "${URL[$t]}/echo"
    done
    if [ "$MODE" = full ]; then
        for t in $order; do
            wsb "rtt4k-$t-$round" rtt -q -c 100 -s 4096 -w 4 -d "$D" "${URL[$t]}/echo"
        done
    fi
    for t in $order; do
        log "handshake $t ($round)"
        wsb "hs-$t-$round" handshake -q -c "$HS_C" -d "$D" --hist "$RAW/hs-$t-$round.hist" "${URL[$t]}/echo"
    done
    for t in $order; do
        log "eval $t ($round)"
        wsb "eval-$t-$round" eval -q -c 1 -d "$D" --hist "$RAW/eval-$t-$round.hist" "${URL[$t]}/eval"
        if [ "$t" = direct ]; then BARE_MS_ROUND[$round]=$(bare_median_ms); fi
    done
done
for t in $TARGETS; do
    best "rtt-$t" msgs_per_s
    [ "$MODE" = full ] && best "rtt4k-$t" msgs_per_s
    best "hs-$t" hs_per_s
    best "eval-$t" evals_per_s
done
# The bare baseline that goes with the direct round that was kept.
if cmp -s "$RAW/eval-direct.out" "$RAW/eval-direct-r1.out"; then BARE_MS=${BARE_MS_ROUND[r1]}; else BARE_MS=${BARE_MS_ROUND[r2]}; fi

# Balance under churn: leastconn on every front, roundrobin on a second lb.
start_lb lbrr "$LBRR_PORT" "$LBRR_ADMIN" --algo roundrobin
URL[lbrr]=ws://127.0.0.1:$LBRR_PORT
BAL_TARGETS="lb lbrr"
[ -n "$HAPROXY" ] && BAL_TARGETS+=" haproxy"
[ -n "$NGINX" ] && BAL_TARGETS+=" nginx"
for t in $BAL_TARGETS; do
    log "balance $t"
    wsb "bal-$t" balance -q -c "$BAL_C" -L "$BAL_L" -d "$BAL_D" --workers "$NW" \
        --series "$RAW/bal-$t.series" "${URL[$t]}/echo"
    $SERIES gp "$RAW/bal-$t.series" "$RAW/bal-$t.dat"
done
stop lbrr

# ---- failover: kill -9 one of four workers under handshake load ------------------
# Through the lb, and through HAProxy (option redispatch, retries 2) for contrast.
FO_TARGETS="lb"
[ -n "$HAPROXY" ] && FO_TARGETS+=" haproxy"
declare -A FO_DOWN
for t in $FO_TARGETS; do
    log "failover $t"
    echo "wsbench handshake -c $HS_C -d $FO_D ${URL[$t]}/echo   # w4 killed with SIGKILL at ${FO_AT}s" >>"$CMDS"
    "$WSB" handshake -q -c "$HS_C" -d "$FO_D" "${URL[$t]}/echo" >"$RAW/failover-$t.out" 2>&1 &
    fp=$!
    sleep "$FO_AT" # scenario timing, not synchronisation: the load runs meanwhile
    kill_ns=$(date +%s%N)
    kill -KILL "${PID[w4]}"
    if [ "$t" = lb ]; then
        FO_DOWN[$t]=$($LBSTAT state "127.0.0.1:$LB_ADMIN" w4 down,gone 15 "$kill_ns" || echo "-")
    else
        FO_DOWN[$t]=$($LBSTAT hap "$TMP/haproxy.sock" w4 DOWN 15 "$kill_ns" || echo "-")
    fi
    wait "${PID[w4]}" 2>/dev/null || true
    unset "PID[w4]"
    wait "$fp" || true
    start_worker w4
    $LBSTAT up "127.0.0.1:$LB_ADMIN" "$NW" 15 || true
    [ -n "$HAPROXY" ] && { $LBSTAT hap "$TMP/haproxy.sock" w4 UP 15 >/dev/null || true; }
done

# ---- rolling deploy: SIGTERM each worker in turn while eval clients run ------------
log "rolling deploy"
# Runs that take a while, so that each drain has evaluations to wait for.
RD_CODE='import time; time.sleep(0.1)'
echo "wsbench eval -c 4 -d 120 --code '$RD_CODE' ${URL[lb]}/eval   # stopped with SIGINT after w1..w4 were drained and restarted in turn" >>"$CMDS"
"$WSB" eval -q -c 4 -d 120 --code "$RD_CODE" "${URL[lb]}/eval" >"$RAW/rolling.out" 2>&1 &
rp=$!
wait_http "http://127.0.0.1:$LB_ADMIN/healthz" 200 5
RD_T0=$(date +%s%N)
for i in $(seq $NW); do
    stop "w$i" TERM 200 # the worker drains: evaluations finish, clients get 1001
    # The lb must have seen it leave before the replacement starts, or the
    # "up" wait below could be satisfied by stale state.
    $LBSTAT state "127.0.0.1:$LB_ADMIN" "w$i" draining,down,gone 15 >/dev/null || true
    start_worker "w$i"
    $LBSTAT state "127.0.0.1:$LB_ADMIN" "w$i" up 15 >/dev/null || true
done
RD_SECS=$(awk -v a="$RD_T0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
kill -INT "$rp" 2>/dev/null || true
wait "$rp" || true
RD_EVALS=$(kv rolling evals)
RD_FAILED=$(kv rolling failed)
RD_RECONN=$(kv rolling reconnects)
RD_LOST=$(kv rolling v_lost)
RD_RETRY=$(kv rolling drain_retries)
RD_RESENT=$(kv rolling resent_1001)

# ---- scale-out: a fifth worker joins a loaded set --------------------------------
log "scale-out"
echo "wsbench balance -c $SO_C -L $SO_L -d $SO_D --series scaleout.series ${URL[lb]}/echo   # w5 started at ${SO_AT}s" >>"$CMDS"
"$WSB" balance -q -c "$SO_C" -L "$SO_L" -d "$SO_D" --warmup 0 --series "$RAW/scaleout.series" \
    "${URL[lb]}/echo" >"$RAW/scaleout.out" 2>&1 &
sp=$!
sleep "$SO_AT" # scenario timing: the set is loaded by now
start_worker w5
wait "$sp" || true
read -r SO_JOIN SO_SETTLE SO_FIRST SO_SHARE < <($SERIES scaleout "$RAW/scaleout.series" w5 1.1)
$SERIES gp "$RAW/scaleout.series" "$RAW/scaleout.dat"
stop w5

# ---- two lbs sharing Redis, and an lb restart under churn --------------------------
log "two lbs"
# A short grace period so that SIGTERM ends lb2 within the wait below (its
# tunnels are cut, as on any restart) instead of escalating to SIGKILL.
start_lb lb2 "$LB2_PORT" "$LB2_ADMIN" --grace-s 1
URL[lb2]=ws://127.0.0.1:$LB2_PORT
echo "wsbench balance -c $TWO_C -L $TWO_L -d $TWO_D --workers $NW ${URL[lb]}/echo ${URL[lb2]}/echo   # lb2 (--grace-s 1) restarted with SIGTERM at ${TWO_AT}s" >>"$CMDS"
"$WSB" balance -q -c "$TWO_C" -L "$TWO_L" -d "$TWO_D" --workers "$NW" \
    --series "$RAW/twolb.series" "${URL[lb]}/echo" "${URL[lb2]}/echo" >"$RAW/twolb.out" 2>&1 &
tp=$!
sleep "$TWO_AT" # scenario timing
stop lb2 TERM 50
RESTART_AT=$(awk -v d="$TWO_AT" 'BEGIN { print d }')
start_lb lb2 "$LB2_PORT" "$LB2_ADMIN" --grace-s 1
wait "$tp" || true
# "Before" starts after a warm-up of two mean lifetimes, or half-way to the
# restart if that comes first, so the window is never empty.
TWO_WARM=$(awk -v l="$TWO_L" -v at="$TWO_AT" 'BEGIN { w = 2 * l / 1000; if (w > at / 2) w = at / 2; print w }')
read -r TWO_BEFORE_P50 TWO_BEFORE_P99 TWO_BEFORE_MAX < <($SERIES window "$RAW/twolb.series" "$TWO_WARM" "$TWO_AT")
read -r TWO_AFTER_P50 TWO_AFTER_P99 TWO_AFTER_MAX < <($SERIES window "$RAW/twolb.series" "$RESTART_AT" "$TWO_D")
$SERIES gp "$RAW/twolb.series" "$RAW/twolb.dat"
stop lb2

# ---- plots ------------------------------------------------------------------
PLOTS=""
if [ -n "$GNUPLOT" ]; then
    gnuplot -e "lc='$RAW/bal-lb.dat'; rr='$RAW/bal-lbrr.dat'; nw=$NW; out='$OUT/balance.svg'" \
        "$ROOT/bench/plot/balance.gp" 2>>"$RAW/gnuplot.log" && PLOTS+=" balance"
    hists=""
    for t in $TARGETS; do hists+="$RAW/rtt-$t.hist:$t "; done
    gnuplot -e "files='$hists'; out='$OUT/latency.svg'; ttl='echo round trip, $RTT_C connections, 64-byte messages'" \
        "$ROOT/bench/plot/latency.gp" 2>>"$RAW/gnuplot.log" && PLOTS+=" latency"
    gnuplot -e "data='$RAW/memory.dat'; out='$OUT/memory.svg'" \
        "$ROOT/bench/plot/memory.gp" 2>>"$RAW/gnuplot.log" && PLOTS+=" memory"
    gnuplot -e "data='$RAW/scaleout.dat'; nw=5; at=$SO_AT; out='$OUT/scaleout.svg'" \
        "$ROOT/bench/plot/scaleout.gp" 2>>"$RAW/gnuplot.log" && PLOTS+=" scaleout"
fi

# ---- report -------------------------------------------------------------------
R=$OUT/report.md
{
    echo "# Benchmark report ($MODE run, $STAMP UTC)"
    echo
    echo "Produced by \`bench/run.sh $MODE\` (\`make bench$([ "$MODE" = full ] && echo -full)\`) at commit \`$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')\`."
    echo "Every front proxies the same $NW workers (\`bin/worker\`) with one thread/process:"
    echo "the lb with \`--threads 1 --algo leastconn\` and Redis discovery, HAProxy $($HAPROXY -v 2>/dev/null | head -1 | awk '{print $3}') with \`nbthread 1\`, \`balance leastconn\`,"
    echo "\`timeout tunnel 1h\`, nginx $($NGINX -v 2>&1 | sed 's|.*/||') with \`worker_processes 1\` and \`least_conn\`. \"direct\" is wsbench against one worker, no proxy."
    echo "The load generator, the proxy and the workers share the machine, so absolute figures are"
    echo "lower than on separate hosts. Other work may run on the machine too (see the load average):"
    echo "rtt, handshake and eval run twice, fronts in one order then the reverse, and each row shows"
    echo "its round with the higher throughput (both rounds are in raw/)."
    echo
    echo "## Machine"
    echo
    echo '```'
    echo "nproc: $(nproc)"
    uname -srmo
    lscpu | grep -E '^(Model name|Thread|Core|Socket|CPU\(s\)|CPU max MHz)' || true
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo '```'
    echo
    echo "## Echo round trip ($RTT_C connections, 64-byte binary messages, 1 in flight each, ${D}s)"
    echo
    echo "| front | messages/s | MB/s | p50 ms | p99 ms | p99.9 ms | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for t in $TARGETS; do
        echo "| $t | $(kv rtt-$t msgs_per_s) | $(kv rtt-$t mb_per_s) | $(ms $(kv rtt-$t p50_us)) | $(ms $(kv rtt-$t p99_us)) | $(ms $(kv rtt-$t p999_us)) | $(kv rtt-$t errors) |"
    done
    if [ -n "$HAPROXY" ]; then
        echo "| **lb/HAProxy** | $(ratio $(kv rtt-lb msgs_per_s) $(kv rtt-haproxy msgs_per_s)) | $(ratio $(kv rtt-lb mb_per_s) $(kv rtt-haproxy mb_per_s)) | $(ratio $(kv rtt-lb p50_us) $(kv rtt-haproxy p50_us)) | $(ratio $(kv rtt-lb p99_us) $(kv rtt-haproxy p99_us)) | $(ratio $(kv rtt-lb p999_us) $(kv rtt-haproxy p999_us)) | |"
    fi
    if [ "$MODE" = full ]; then
        echo
        echo "## Echo round trip (100 connections, 4 KiB messages, 4 in flight each, ${D}s)"
        echo
        echo "| front | messages/s | MB/s | p50 ms | p99 ms | p99.9 ms | errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        for t in $TARGETS; do
            echo "| $t | $(kv rtt4k-$t msgs_per_s) | $(kv rtt4k-$t mb_per_s) | $(ms $(kv rtt4k-$t p50_us)) | $(ms $(kv rtt4k-$t p99_us)) | $(ms $(kv rtt4k-$t p999_us)) | $(kv rtt4k-$t errors) |"
        done
        [ -n "$HAPROXY" ] && echo "| **lb/HAProxy** | $(ratio $(kv rtt4k-lb msgs_per_s) $(kv rtt4k-haproxy msgs_per_s)) | $(ratio $(kv rtt4k-lb mb_per_s) $(kv rtt4k-haproxy mb_per_s)) | $(ratio $(kv rtt4k-lb p50_us) $(kv rtt4k-haproxy p50_us)) | $(ratio $(kv rtt4k-lb p99_us) $(kv rtt4k-haproxy p99_us)) | $(ratio $(kv rtt4k-lb p999_us) $(kv rtt4k-haproxy p999_us)) | |"
    fi
    echo
    echo "## Handshakes ($HS_C concurrent connect → upgrade → close cycles, ${D}s)"
    echo
    echo "| front | handshakes/s | p50 ms | p99 ms | failed |"
    echo "|---|---:|---:|---:|---:|"
    for t in $TARGETS; do
        echo "| $t | $(kv hs-$t hs_per_s) | $(ms $(kv hs-$t p50_us)) | $(ms $(kv hs-$t p99_us)) | $(kv hs-$t errors) |"
    done
    [ -n "$HAPROXY" ] && echo "| **lb/HAProxy** | $(ratio $(kv hs-lb hs_per_s) $(kv hs-haproxy hs_per_s)) | $(ratio $(kv hs-lb p50_us) $(kv hs-haproxy p50_us)) | $(ratio $(kv hs-lb p99_us) $(kv hs-haproxy p99_us)) | |"
    echo
    echo "## Memory per idle connection (RSS of the front's process before and with N open, N = ${HOLD_NS// /, })"
    echo
    echo "| front | KiB per idle websocket (largest N) |"
    echo "|---|---:|"
    for t in $TARGETS; do echo "| $t | ${KBPC[$t]:--} |"; done
    [ -n "$HAPROXY" ] && echo "| **lb/HAProxy** | $(ratio "${KBPC[lb]:--}" "${KBPC[haproxy]:--}") |"
    echo
    echo "RSS counts user-space memory only (kernel socket buffers are not in it). \"direct\" is the worker's own cost per websocket."
    echo
    echo "## Evaluations (\`python3\` running \`pass\`, 1 client in a loop, ${D}s)"
    echo
    echo "| front | evaluations/s | p50 ms | p99 ms | failed |"
    echo "|---|---:|---:|---:|---:|"
    for t in $TARGETS; do
        echo "| $t | $(kv eval-$t evals_per_s) | $(ms $(kv eval-$t p50_us)) | $(ms $(kv eval-$t p99_us)) | $(kv eval-$t failed) |"
    done
    echo "| bare \`$PYBIN\` with main.py = \`pass\` (from a shell, median of $BARE_N, right after the direct run) | | $BARE_MS | | |"
    echo
    echo "direct p50 / bare: **$(ratio $(ms $(kv eval-direct p50_us)) "$BARE_MS")×**, sandbox + protocol overhead ≈ $(awk -v a="$(ms $(kv eval-direct p50_us))" -v b="$BARE_MS" 'BEGIN { if (a == "-") print "-"; else printf "%.1f", a - b }') ms."
    echo
    echo "## Balance under churn (about $BAL_C alive, exponential lifetimes with mean ${BAL_L} ms, ${BAL_D}s, $NW workers)"
    echo
    echo "max/mean of live connections per worker, sampled every 100 ms after a warm-up of $(awk -v l="$BAL_L" -v d="$BAL_D" 'BEGIN { w = 2 * l / 1000; if (w > d / 3) w = d / 3; print w }') s."
    echo
    echo "| front | algorithm | p50 | p99 | max | connections opened | errors |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for t in $BAL_TARGETS; do
        algo=leastconn
        [ "$t" = lbrr ] && algo=roundrobin
        name=$t
        [ "$t" = lbrr ] && name=lb
        echo "| $name | $algo | $(kv bal-$t max_over_mean_p50) | $(kv bal-$t max_over_mean_p99) | $(kv bal-$t max_over_mean_max) | $(kv bal-$t opened) | $(kv bal-$t errors) |"
    done
    echo
    echo "## Failover (kill -9 one of $NW workers at ${FO_AT}s under $HS_C concurrent handshake cycles, ${FO_D}s)"
    echo
    echo "| front | failed handshakes | handshakes/s | p99 ms | max ms | time until marked down |"
    echo "|---|---:|---:|---:|---:|---:|"
    for t in $FO_TARGETS; do
        echo "| $t | $(kv failover-$t hs_fail) | $(kv failover-$t hs_per_s) | $(ms $(kv failover-$t p99_us)) | $(ms $(kv failover-$t max_us)) | ${FO_DOWN[$t]} ms |"
    done
    echo
    echo "Marked down: from the SIGKILL until the lb's /stats (or HAProxy's stats socket) shows the worker down."
    echo
    echo "## Rolling deploy (SIGTERM-drain and restart each of $NW workers in turn; 4 eval clients running \`$RD_CODE\` in a loop, reconnecting on close)"
    echo
    echo "| evaluations | failed | of which lost in flight | reconnects | runs resent: refused while draining | runs resent: unanswered at the 1001 close | deploy took |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    echo "| $RD_EVALS | $RD_FAILED | $RD_LOST | $RD_RECONN | $RD_RETRY | $RD_RESENT | ${RD_SECS} s |"
    echo
    echo "A draining worker answers a new run with a \"draining\" error and closes with 1001 once its running evaluations are done, so a run unanswered at that close was never started; the client resends both kinds on its new connection. \"Lost\" counts runs cut off by any other close."
    echo
    echo "## Scale-out (a fifth worker joins at ${SO_AT}s; about $SO_C alive, mean life ${SO_L} ms)"
    echo
    echo "| joined at | time until max/mean < 1.1 | connections it took in its first second | its share of new connections in that second |"
    echo "|---:|---:|---:|---:|"
    echo "| ${SO_JOIN} s | ${SO_SETTLE} s | $SO_FIRST | $SO_SHARE |"
    echo
    echo "## Two lbs sharing Redis, one restarted (about $TWO_C alive, connections alternate between the lbs)"
    echo
    echo "| window | max/mean p50 | p99 | max |"
    echo "|---|---:|---:|---:|"
    echo "| both running (from ${TWO_WARM}s to the restart) | $TWO_BEFORE_P50 | $TWO_BEFORE_P99 | $TWO_BEFORE_MAX |"
    echo "| from lb2's restart to the end | $TWO_AFTER_P50 | $TWO_AFTER_P99 | $TWO_AFTER_MAX |"
    echo
    echo "Whole run: RESULT \`$(grep '^RESULT' "$RAW/twolb.out" | tr ' ' '\n' | grep -E '^(max_over_mean|errors|dropped)' | tr '\n' ' ')\`"
    if [ -n "$PLOTS" ]; then
        echo
        echo "## Plots"
        echo
        for p in $PLOTS; do echo "![$p]($p.svg)"; done
    fi
    echo
    echo "## Commands"
    echo
    echo "Ports are picked free at each run. In this run: direct (worker w1) $W1, lb $LB_PORT, lb with roundrobin $LBRR_PORT, second lb $LB2_PORT$([ -n "$HAPROXY" ] && echo ", HAProxy $HAP_PORT")$([ -n "$NGINX" ] && echo ", nginx $NGX_PORT"); workers w1-w5 on $W1 $W2 $W3 $W4 $W5."
    echo
    echo '```'
    sed -e "s|$RAW/||g" "$CMDS"
    echo '```'
} >"$R"
log "report: $R"
echo "$R"
