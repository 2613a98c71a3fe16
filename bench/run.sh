#!/usr/bin/env bash
# Benchmark scenarios: the lb side by side with HAProxy and nginx in front of
# the same workers, in interleaved rounds with each front's CPU per operation,
# at one and two proxy threads; the worker against the same program bare and
# under bwrap; memory per idle websocket; failover, rolling deploy, scale-out
# and two-lb runs.
#
#   bench/run.sh short    under 10 minutes (make bench)
#   bench/run.sh full     longer rounds and bigger counts (make bench-full)
#   bench/run.sh takeover the lb and HAProxy replaced twice under traffic
#                         (bench/takeover.sh, about half a minute)
#
# Starts its own Redis, workers, lbs, HAProxy and nginx on free 127.0.0.1
# ports, with every config, pid and log file in a temp dir (nothing under
# /etc is read or written), and writes bench/results/<date>/report.md,
# summary.json (what bench/readme_table.py reads) and SVG plots. Raw outputs
# go to bench/results/<date>/raw/ (not committed).
# Environment: BIN_DIR (default ./bin), LB_STATIC=1 to give the lb static
# --backend flags as well as Redis discovery, ROUNDS, HOLD_MAX (largest
# number of idle websockets held), NO_T2=1 to skip the two-thread pass.
set -euo pipefail

MODE=${1:-short}
case "$MODE" in
short | full) ;;
takeover) exec "$(dirname "$0")/takeover.sh" ;;
*)
    echo "usage: $0 short|full|takeover" >&2
    exit 2
    ;;
esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN_DIR:-$ROOT/bin}
WSB=$BIN/wsbench
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
LBSTAT="$PY $ROOT/bench/scenarios/lbstat.py"
SERIES="$PY $ROOT/bench/scenarios/series.py"
ROUNDS_PY="$PY $ROOT/bench/scenarios/rounds.py"
COMMIT=$(bench_commit "$ROOT")
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT=$ROOT/bench/results/$STAMP
RAW=$OUT/raw
TMP=$(mktemp -d /tmp/wslb-bench.XXXXXX)
mkdir -p "$RAW"
CMDS=$RAW/commands.txt
: >"$CMDS"
T_BEGIN=$SECONDS

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
BWRAP=$(command -v bwrap || true)
# A report names the commit it measured: say so when a binary is older than
# its sources (make bench rebuilds first; bench/run.sh alone does not).
STALE=""
for b in lb:lb worker:worker wsbench:bench; do
    if [ -n "$(find "$ROOT/${b#*:}" "$ROOT/common" -name '*.[ch]' -newer "$BIN/${b%%:*}" \
        2>/dev/null | head -1)" ]; then
        STALE+="${STALE:+, }$BIN/${b%%:*} is older than its sources"
    fi
done
[ -n "$STALE" ] && STALE+=": the binaries may not be commit $COMMIT"
# Every process started here may use the hard open-files limit.
ulimit -n "$(ulimit -Hn)"

# ---- sizes -------------------------------------------------------------------
# A proxied websocket costs its proxy two descriptors: the most idle ones a
# front can hold is about half the open-files limit.
NOFILE=$(front_nofile)
FD_CONNS=$(((NOFILE - 100) / 2))
HOLD_MAX=${HOLD_MAX:-$((FD_CONNS < 10000 ? FD_CONNS : 10000))}
MAXE=$((2 * $(nproc))) # the workers' --max-evals (their default, made explicit)
if [ "$MODE" = short ]; then
    ROUNDS=${ROUNDS:-5}
    D=3  # seconds per rtt/handshake run
    ED=3 # seconds per one-client eval run
    WS_RUNS=300
    RTT_C=50 # rtt connections
    HS_C=16  # concurrent handshake cycles
    HOLD_NS="1000 5000 $HOLD_MAX"
    HOLD_R=5000
    BAL_C=400 BAL_L=2000 BAL_D=10 # balance: alive, mean life ms, seconds
    SO_C=200 SO_L=2000 SO_D=12 SO_AT=5
    TWO_C=400 TWO_L=2000 TWO_D=12 TWO_AT=5
    FO_D=6 FO_AT=2
else
    ROUNDS=${ROUNDS:-7}
    D=8
    ED=6
    WS_RUNS=1000
    RTT_C=200
    HS_C=64
    HOLD_NS="1000 2500 5000 $HOLD_MAX"
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
LOG_TAG=bench LOG_PREFIX=""
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# Resident memory of PIDS, summed, in KiB.
rss_kb() {
    local p kb=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        kb=$((kb + ${v:-0}))
    done
    echo "$kb"
}

# Runs wsbench, recording the exact command; output in raw/NAME.out.
wsb() {
    local name=$1
    shift
    echo "wsbench $*" >>"$CMDS"
    "$WSB" "$@" >"$RAW/$name.out" 2>"$RAW/$name.err" || log "wsbench $name exited $?"
}

ms() { awk -v u="$1" 'BEGIN { if (u == "-") print "-"; else printf "%.3f", u / 1000 }'; }

# Figures for summary.json besides the rounds': meta (what ran) and facts
# (what the other scenarios measured), one "key<TAB>value" per line.
meta() { printf '%s\t%s\n' "$1" "$2" >>"$RAW/meta.tsv"; }
fact() { printf '%s\t%s\n' "$1" "$2" >>"$RAW/facts.tsv"; }
: >"$RAW/meta.tsv"
: >"$RAW/facts.tsv"
printf '# pass\tcase\tfront\tround\torder\tname\tfront_own\tfront_children\tworkers_own\tworkers_children\tfront_user\n' >"$RAW/runs.tsv"

# ---- services ----------------------------------------------------------------
read -r REDIS_PORT LB_PORT LB_ADMIN LB2_PORT LB2_ADMIN LBRR_PORT LBRR_ADMIN HAP_PORT NGX_PORT \
    LBT2_PORT LBT2_ADMIN HAPT2_PORT NGXT2_PORT W1 W2 W3 W4 W5 < <(free_ports 18)
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
    # Each worker's slots get uids of their own, derived from its (unique,
    # live) port so that runs sharing the machine do not share them either.
    start "$id" "$BIN/worker" --listen "127.0.0.1:${WPORT[$id]}" --id "$id" --redis "$REDIS" \
        --uid-base $((100000 + 1024 * ${WPORT[$id]})) --max-evals "$MAXE" --drain-s 5 --log-level warn
    wait_http "http://127.0.0.1:${WPORT[$id]}/healthz" 200 15
}
for i in $(seq $NW); do start_worker "w$i"; done

lb_args() { # PORT ADMIN THREADS [extra...]
    local port=$1 admin=$2 threads=$3
    shift 3
    # The bench drives the workers' /echo as well as /eval: both are routes.
    echo --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --redis "$REDIS" --threads "$threads" \
        --log-level warn --access-log=false --route /eval --route /echo "$@"
    if [ "${LB_STATIC:-0}" = 1 ]; then
        for i in $(seq $NW); do echo --backend "w$i=127.0.0.1:${WPORT[w$i]}"; done
    fi
}
start_lb() { # NAME PORT ADMIN THREADS [extra...]
    local name=$1 port=$2 admin=$3
    shift 3
    # shellcheck disable=SC2046
    start "$name" "$BIN/lb" $(lb_args "$port" "$admin" "$@")
    wait_http "http://127.0.0.1:$admin/healthz" 200 15
    $LBSTAT up "127.0.0.1:$admin" "$NW" 15
}
start_haproxy() { # NAME PORT NBTHREAD
    local dir=$TMP/$1 servers=() i
    mkdir -p "$dir"
    for i in $(seq $NW); do servers+=("w$i=127.0.0.1:${WPORT[w$i]}"); done
    render_haproxy "$ROOT/bench/haproxy.cfg.in" "$dir/haproxy.cfg" "$dir" "$2" "$3" "${servers[@]}"
    start "$1" "$HAPROXY" -db -f "$dir/haproxy.cfg"
    wait_http "http://127.0.0.1:$2/healthz" 200 15
}
start_nginx() { # NAME PORT WORKERS
    local dir=$TMP/$1 servers=() i
    mkdir -p "$dir"
    for i in $(seq $NW); do servers+=("127.0.0.1:${WPORT[w$i]}"); done
    render_nginx "$ROOT/bench/nginx.conf.in" "$dir/nginx.conf" "$dir" "$2" "$3" "${servers[@]}"
    start "$1" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/nginx-error.log"
    wait_http "http://127.0.0.1:$2/healthz" 200 15
}
start_lb lb "$LB_PORT" "$LB_ADMIN" 1

declare -A URL
URL[direct]=ws://127.0.0.1:$W1
URL[lb]=ws://127.0.0.1:$LB_PORT
TARGETS="direct lb"
if [ -n "$HAPROXY" ]; then
    start_haproxy haproxy "$HAP_PORT" 1
    URL[haproxy]=ws://127.0.0.1:$HAP_PORT
    TARGETS+=" haproxy"
fi
if [ -n "$NGINX" ]; then
    start_nginx nginx "$NGX_PORT" 1
    URL[nginx]=ws://127.0.0.1:$NGX_PORT
    TARGETS+=" nginx"
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "up: redis $REDIS, workers $W1 $W2 $W3 $W4, lb $LB_PORT, targets: $TARGETS (commit $COMMIT)"
[ -n "$STALE" ] && log "warning: $STALE"

# The processes whose CPU (and memory) a front costs, per pass: the lb's or
# HAProxy's one process (all its threads), nginx's worker processes, the
# worker itself for "direct".
front_pids() { # PASS FRONT
    case $1:$2 in
    t1:direct | w:worker) with_zygotes "${PID[w1]}" ;;
    t1:lb) echo "${PID[lb]}" ;;
    t2:lb) echo "${PID[lbt2]}" ;;
    t1:haproxy) echo "${PID[haproxy]}" ;;
    t2:haproxy) echo "${PID[haproxyt2]}" ;;
    t1:nginx) pgrep -P "${PID[nginx]}" | paste -sd' ' ;;
    t2:nginx) pgrep -P "${PID[nginxt2]}" | paste -sd' ' ;;
    *) echo "" ;;
    esac
}
worker_pids() { with_zygotes "${PID[w1]}" "${PID[w2]}" "${PID[w3]}" "${PID[w4]}"; }

# ---- memory: idle websockets held, measured first while every front is fresh --------
# Holds accumulate (each wsbench keeps its connections until told to stop),
# so RSS is read at N1, N2, ... open connections without the allocator
# reusing memory freed by an earlier, smaller run. Several client processes
# and source addresses keep each under the open-files limit and the port range.
echo "# n direct_mb lb_mb haproxy_mb nginx_mb" >"$RAW/memory.dat"
declare -A MEMROW
SRC_IPS=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5
for t in direct lb haproxy nginx; do
    if [[ " $TARGETS " != *" $t "* ]]; then
        for n in $HOLD_NS; do MEMROW[$n]+=" NaN"; done
        continue
    fi
    log "hold $t"
    mpids=$(front_pids t1 "$t")
    # shellcheck disable=SC2086
    before=$(rss_kb $mpids)
    have=0
    hps=""
    for n in $HOLD_NS; do
        inc=$((n - have))
        procs=$(((inc + 7999) / 8000))
        echo "wsbench hold -n $inc -r $HOLD_R -d 300 --procs $procs --source-ips $SRC_IPS ${URL[$t]}/echo   # cumulative $n held; stopped with SIGINT" >>"$CMDS"
        "$WSB" hold -q -n "$inc" -r "$HOLD_R" -d 300 --procs "$procs" --source-ips "$SRC_IPS" \
            "${URL[$t]}/echo" >"$RAW/hold-$t-$n.out" 2>&1 &
        hps+=" $!"
        deadline=$((SECONDS + 60))
        until grep -q '^HOLDING' "$RAW/hold-$t-$n.out" || [ $SECONDS -ge $deadline ]; do sleep 0.05; done
        have=$((have + $(sed -n 's/^HOLDING n=//p' "$RAW/hold-$t-$n.out" | head -1)))
        # shellcheck disable=SC2086
        after=$(rss_kb $mpids)
        MEMROW[$n]+=" $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", (a - b) / 1024 }')"
        echo "$t held=$have rss_before_kb=$before rss_after_kb=$after" >>"$RAW/memory.txt"
    done
    fact "mem_held_$t" "$have"
    fact "mem_before_kb_$t" "$before"
    fact "mem_after_kb_$t" "$after"
    fact "mem_${t}_bytes" "$(awk -v a="$after" -v b="$before" -v n="$have" \
        'BEGIN { if (n + 0 > 0) printf "%.0f", (a - b) * 1024 / n; else print "-" }')"
    # shellcheck disable=SC2086
    kill -INT $hps 2>/dev/null || true
    for p in $hps; do wait "$p" || true; done
done
for n in $HOLD_NS; do echo "$n${MEMROW[$n]}" >>"$RAW/memory.dat"; done
fact mem_n_max "$HOLD_MAX"
fact mem_steps "${HOLD_NS// /, }"
if [ "$HOLD_MAX" -lt 10000 ]; then
    fact mem_note "10,000 would take 20,000 descriptors in the proxy for the sockets alone; the open-files limit here is $NOFILE per process, so the largest count is $HOLD_MAX."
fi

# ---- interleaved rounds ---------------------------------------------------------
# Every round runs each case once on every front, the fronts' order rotated
# one place per round, so that a burst of load from elsewhere on the machine
# lands on different fronts in different rounds; the report gives the median
# and the spread. Each run records its front's CPU before and after.
measure() { # PASS CASE FRONT ROUND ORDER WSBENCH-ARGS...
    local pas=$1 cs=$2 t=$3 r=$4 order=$5 fp wp a b c d u
    shift 5
    local name=$pas-$cs-$t-r$r
    fp=$(front_pids "$pas" "$t")
    wp=$(worker_pids)
    # shellcheck disable=SC2086
    u=$(cpu_user_ticks $fp)
    # shellcheck disable=SC2086
    read -r a b < <(cpu_ticks $fp)
    # shellcheck disable=SC2086
    read -r c d < <(cpu_ticks $wp)
    wsb "$name" "$@"
    local a1 b1 c1 d1 u1
    # shellcheck disable=SC2086
    read -r a1 b1 < <(cpu_ticks $fp)
    # shellcheck disable=SC2086
    u1=$(cpu_user_ticks $fp)
    # shellcheck disable=SC2086
    read -r c1 d1 < <(cpu_ticks $wp)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pas" "$cs" "$t" "$r" "$order" \
        "$name" $((a1 - a)) $((b1 - b)) $((c1 - c)) $((d1 - d)) $((u1 - u)) >>"$RAW/runs.tsv"
}
rotated() { # K WORDS...: WORDS rotated left by K
    local k=$1
    shift
    local a=("$@") n=$# i out=""
    for ((i = 0; i < n; i++)); do out+="${a[(i + k) % n]} "; done
    echo "${out% }"
}
case_args() { # CASE URL: wsbench arguments of a case (the hist file added by the caller)
    case $1 in
    rtt) echo rtt -q -c "$RTT_C" -s 64 -w 1 -d "$D" "$2/echo" ;;
    rtt4k) echo rtt -q -c 100 -s 4096 -w 4 -d "$D" "$2/echo" ;;
    hs) echo handshake -q -c "$HS_C" -d "$D" "$2/echo" ;;
    eval) echo eval -q -c 1 -d "$ED" "$2/eval" ;;
    esac
}
run_rounds() { # PASS "CASES" "FRONTS" ("FRONT=URL"...)
    local pas=$1 cases=$2 fronts=$3 r cs t order
    shift 3
    local -A u
    for x in "$@"; do u[${x%%=*}]=${x#*=}; done
    for r in $(seq "$ROUNDS"); do
        # shellcheck disable=SC2086
        order=$(rotated $((r - 1)) $fronts)
        for cs in $cases; do
            log "$pas round $r/$ROUNDS: $cs ($order)"
            for t in $order; do
                # shellcheck disable=SC2046
                measure "$pas" "$cs" "$t" "$r" "$order" $(case_args "$cs" "${u[$t]}") \
                    --hist "$RAW/$pas-$cs-$t-r$r.hist"
            done
        done
    done
}

FRONTS=""
for t in lb haproxy nginx direct; do [[ " $TARGETS " == *" $t "* ]] && FRONTS+="$t "; done
CASES="rtt hs eval"
[ "$MODE" = full ] && CASES="rtt rtt4k hs eval"
T_ROUNDS=$SECONDS
# shellcheck disable=SC2046
run_rounds t1 "$CASES" "$FRONTS" $(for t in $FRONTS; do echo "$t=${URL[$t]}"; done)
T1_SECS=$((SECONDS - T_ROUNDS))

# ---- two proxy threads -------------------------------------------------------------
# Fronts of their own, started for this pass only: the lb with --threads 2,
# HAProxy with nbthread 2, nginx with 2 worker processes. Echo and handshakes
# only (an evaluation's time is the sandboxed program's, not the proxy's).
T2_SECS=0
if [ "${NO_T2:-0}" != 1 ]; then
    T_ROUNDS=$SECONDS
    start_lb lbt2 "$LBT2_PORT" "$LBT2_ADMIN" 2
    T2_ARGS="lb=ws://127.0.0.1:$LBT2_PORT"
    T2_FRONTS="lb"
    if [ -n "$HAPROXY" ]; then
        start_haproxy haproxyt2 "$HAPT2_PORT" 2
        T2_ARGS+=" haproxy=ws://127.0.0.1:$HAPT2_PORT"
        T2_FRONTS+=" haproxy"
    fi
    if [ -n "$NGINX" ]; then
        start_nginx nginxt2 "$NGXT2_PORT" 2
        T2_ARGS+=" nginx=ws://127.0.0.1:$NGXT2_PORT"
        T2_FRONTS+=" nginx"
    fi
    # shellcheck disable=SC2086
    run_rounds t2 "rtt hs" "$T2_FRONTS" $T2_ARGS
    stop lbt2
    stop haproxyt2
    stop nginxt2
    T2_SECS=$((SECONDS - T_ROUNDS))
fi

# ---- the worker's side: sandboxed evaluations against bare and bwrap ---------------
# The same program at the same concurrency (the workers' --max-evals) and the
# same number of runs: the worker through its own port (no proxy), bare
# fork/exec and bwrap through `wsbench spawn`, interleaved and rotated.
PYCMD=(/usr/bin/python3 -I -S -B main.py)
BWRAP_ISO=(--unshare-all --die-with-parent --ro-bind /usr /usr)
for d in lib lib64 bin sbin; do
    if [ -L "/$d" ]; then
        BWRAP_ISO+=(--symlink "$(readlink "/$d")" "/$d")
    elif [ -d "/$d" ]; then
        BWRAP_ISO+=(--ro-bind "/$d" "/$d")
    fi
done
BWRAP_ISO+=(--tmpfs /tmp --proc /proc --dev /dev)
W_FRONTS="worker bare"
if [ -n "$BWRAP" ]; then
    if "$BWRAP" "${BWRAP_ISO[@]}" /bin/true 2>"$RAW/bwrap-check.err"; then
        W_FRONTS+=" bwrap"
    else
        log "bwrap cannot run here ($(head -1 "$RAW/bwrap-check.err")): skipped"
    fi
fi
T_ROUNDS=$SECONDS
for r in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086
    order=$(rotated $((r - 1)) $W_FRONTS)
    log "worker side round $r/$ROUNDS ($order)"
    for t in $order; do
        h=(--hist "$RAW/w-py-$t-r$r.hist")
        case $t in
        worker) measure w py worker "$r" "$order" eval -q -c "$MAXE" -n "$WS_RUNS" -d 300 \
            "${h[@]}" "ws://127.0.0.1:$W1/eval" ;;
        bare) measure w py bare "$r" "$order" spawn -c "$MAXE" -n "$WS_RUNS" -d 300 "${h[@]}" \
            -- "${PYCMD[@]}" ;;
        bwrap) measure w py bwrap "$r" "$order" spawn -c "$MAXE" -n "$WS_RUNS" -d 300 "${h[@]}" \
            -- "$BWRAP" "${BWRAP_ISO[@]}" --bind '{dir}' /work --chdir /work "${PYCMD[@]}" ;;
        esac
    done
done
W_SECS=$((SECONDS - T_ROUNDS))

# ---- balance under churn: leastconn on every front, roundrobin on a second lb --------
start_lb lbrr "$LBRR_PORT" "$LBRR_ADMIN" 1 --algo roundrobin
URL[lbrr]=ws://127.0.0.1:$LBRR_PORT
BAL_TARGETS="lb lbrr"
[ -n "$HAPROXY" ] && BAL_TARGETS+=" haproxy"
[ -n "$NGINX" ] && BAL_TARGETS+=" nginx"
for t in $BAL_TARGETS; do
    log "balance $t"
    wsb "bal-$t" balance -q -c "$BAL_C" -L "$BAL_L" -d "$BAL_D" --workers "$NW" \
        --series "$RAW/bal-$t.series" "${URL[$t]}/echo"
    $SERIES gp "$RAW/bal-$t.series" "$RAW/bal-$t.dat"
    for k in max_over_mean_p50 max_over_mean_p99 max_over_mean_max opened errors; do
        fact "bal_${t}_$k" "$(kv "bal-$t" $k)"
    done
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
        FO_DOWN[$t]=$($LBSTAT hap "$TMP/haproxy/haproxy.sock" w4 DOWN 15 "$kill_ns" || echo "-")
    fi
    wait "${PID[w4]}" 2>/dev/null || true
    unset "PID[w4]"
    wait "$fp" || true
    start_worker w4
    $LBSTAT up "127.0.0.1:$LB_ADMIN" "$NW" 15 || true
    [ -n "$HAPROXY" ] && { $LBSTAT hap "$TMP/haproxy/haproxy.sock" w4 UP 15 >/dev/null || true; }
    fact "fo_${t}_down_ms" "${FO_DOWN[$t]}"
    for k in hs_fail hs_per_s p99_us max_us; do fact "fo_${t}_$k" "$(kv "failover-$t" $k)"; done
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
fact rd_secs "$RD_SECS"
for k in evals failed reconnects v_lost drain_retries resent_1001; do fact "rd_$k" "$(kv rolling $k)"; done

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
fact so_join_s "$SO_JOIN"
fact so_settle_s "$SO_SETTLE"
fact so_first_second "$SO_FIRST"
fact so_peak_share "$SO_SHARE"

# ---- two lbs sharing Redis, and an lb restart under churn --------------------------
log "two lbs"
# A short grace period so that SIGTERM ends lb2 within the wait below (its
# tunnels are cut, as on any restart) instead of escalating to SIGKILL.
start_lb lb2 "$LB2_PORT" "$LB2_ADMIN" 1 --grace-s 1
URL[lb2]=ws://127.0.0.1:$LB2_PORT
echo "wsbench balance -c $TWO_C -L $TWO_L -d $TWO_D --workers $NW ${URL[lb]}/echo ${URL[lb2]}/echo   # lb2 (--grace-s 1) restarted with SIGTERM at ${TWO_AT}s" >>"$CMDS"
"$WSB" balance -q -c "$TWO_C" -L "$TWO_L" -d "$TWO_D" --workers "$NW" \
    --series "$RAW/twolb.series" "${URL[lb]}/echo" "${URL[lb2]}/echo" >"$RAW/twolb.out" 2>&1 &
tp=$!
sleep "$TWO_AT" # scenario timing
stop lb2 TERM 50
start_lb lb2 "$LB2_PORT" "$LB2_ADMIN" 1 --grace-s 1
wait "$tp" || true
# "Before" starts after a warm-up of two mean lifetimes, or half-way to the
# restart if that comes first, so the window is never empty.
TWO_WARM=$(awk -v l="$TWO_L" -v at="$TWO_AT" 'BEGIN { w = 2 * l / 1000; if (w > at / 2) w = at / 2; print w }')
read -r TWO_BEFORE_P50 TWO_BEFORE_P99 TWO_BEFORE_MAX < <($SERIES window "$RAW/twolb.series" "$TWO_WARM" "$TWO_AT")
read -r TWO_AFTER_P50 TWO_AFTER_P99 TWO_AFTER_MAX < <($SERIES window "$RAW/twolb.series" "$TWO_AT" "$TWO_D")
$SERIES gp "$RAW/twolb.series" "$RAW/twolb.dat"
stop lb2
fact two_before_p50 "$TWO_BEFORE_P50"
fact two_before_p99 "$TWO_BEFORE_P99"
fact two_after_p50 "$TWO_AFTER_P50"
fact two_after_p99 "$TWO_AFTER_P99"

# ---- long-lived sessions: rebalance after a scale-out, and affinity ---------------
# bench/sessions.sh starts its own Redis, workers and fronts (these are idle
# now) and writes sessions.md and rebalance.svg next to this report.
log "sessions (rebalance, affinity)"
SESS_MD=""
T_SESS=$SECONDS
if BIN_DIR=$BIN "$ROOT/bench/sessions.sh" "$MODE" "$OUT" >"$RAW/sessions.log" 2>&1; then
    SESS_MD=$OUT/sessions.md
else
    log "sessions failed: see raw/sessions.log"
fi
meta secs_sessions $((SECONDS - T_SESS))

# ---- summary ------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL_SECS=$((SECONDS - T_BEGIN))
meta commit "$COMMIT"
meta stale "$STALE"
meta mode "$MODE"
meta stamp "$STAMP"
meta clk_tck "$(getconf CLK_TCK)"
meta rounds "$ROUNDS"
meta dur "$D"
meta dur_eval "$ED"
meta rtt_c "$RTT_C"
meta hs_c "$HS_C"
meta max_evals "$MAXE"
meta ws_runs "$WS_RUNS"
meta workers "$NW"
meta bwrap_isolation "${BWRAP_ISO[*]}"
meta haproxy "$([ -n "$HAPROXY" ] && $HAPROXY -v 2>/dev/null | head -1 | awk '{print $3}')"
meta nginx "$([ -n "$NGINX" ] && $NGINX -v 2>&1 | sed 's|.*/||')"
meta nproc "$(nproc)"
meta cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
meta kernel "$(uname -sr)"
meta load_start "$LOAD_START"
meta load_end "$LOAD_END"
meta secs_total "$TOTAL_SECS"
meta secs_t1 "$T1_SECS"
meta secs_t2 "$T2_SECS"
meta secs_worker "$W_SECS"
$ROUNDS_PY summary "$RAW" "$OUT/summary.json"

# ---- plots ------------------------------------------------------------------
PLOTS=""
if [ -n "$GNUPLOT" ]; then
    gnuplot -e "lc='$RAW/bal-lb.dat'; rr='$RAW/bal-lbrr.dat'; nw=$NW; out='$OUT/balance.svg'" \
        "$ROOT/bench/plot/balance.gp" 2>>"$RAW/gnuplot.log" && PLOTS+=" balance"
    hists=""
    for t in $FRONTS; do hists+="$RAW/$($ROUNDS_PY median-run "$OUT/summary.json" t1 rtt "$t").hist:$t "; done
    gnuplot -e "files='$hists'; out='$OUT/latency.svg'; ttl='echo round trip, $RTT_C connections, 64-byte messages (median round)'" \
        "$ROOT/bench/plot/latency.gp" 2>>"$RAW/gnuplot.log" && PLOTS+=" latency"
    gnuplot -e "data='$RAW/memory.dat'; out='$OUT/memory.svg'" \
        "$ROOT/bench/plot/memory.gp" 2>>"$RAW/gnuplot.log" && PLOTS+=" memory"
    gnuplot -e "data='$RAW/scaleout.dat'; nw=5; at=$SO_AT; out='$OUT/scaleout.svg'" \
        "$ROOT/bench/plot/scaleout.gp" 2>>"$RAW/gnuplot.log" && PLOTS+=" scaleout"
fi

# ---- report -------------------------------------------------------------------
R=$OUT/report.md
{
    echo "# Benchmark report ($MODE run, $STAMP UTC, commit \`$COMMIT\`)"
    echo
    echo "Produced by \`bench/run.sh $MODE\` (\`make bench$([ "$MODE" = full ] && echo -full)\`) at commit \`$COMMIT\`$([ -n "$STALE" ] && echo " (warning: $STALE)") in $((TOTAL_SECS / 60)) min $((TOTAL_SECS % 60)) s"
    echo "(rounds: ${T1_SECS} s at one thread, ${T2_SECS} s at two, ${W_SECS} s on the worker's side). \`summary.json\` holds every figure below;"
    echo "\`bench/readme_table.py bench/results/$STAMP/summary.json\` prints the README's table from it."
    echo
    echo "Every front proxies the same $NW workers (\`bin/worker --max-evals $MAXE\`): the lb with \`--algo leastconn\` and Redis"
    echo "discovery, HAProxy $($HAPROXY -v 2>/dev/null | head -1 | awk '{print $3}') with \`balance leastconn\` and \`timeout tunnel 1h\`, nginx $($NGINX -v 2>&1 | sed 's|.*/||') with \`least_conn\`;"
    echo "\"direct\" is wsbench against one worker, no proxy. The load generator, the proxy and the workers share"
    echo "the machine, which other work may share too (see the load average): rtt, handshake and eval run in"
    echo "$ROUNDS rounds, each front once per round, the fronts' order rotated one place each round. Each table"
    echo "gives the median of the rounds with their spread (min–max), and the lb/HAProxy ratio per round and of"
    echo "the medians. Proxy CPU is the front's user + system time (from \`/proc/PID/stat\`, all threads; nginx's"
    echo "worker processes) during the run, divided by the operations completed; it hardly depends on what"
    echo "else runs, so it judges a change better than throughput on a busy machine."
    echo
    echo "## Machine"
    echo
    echo '```'
    echo "nproc: $(nproc)"
    uname -srmo
    lscpu | grep -E '^(Model name|Thread|Core|Socket|CPU\(s\)|CPU max MHz)' || true
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "open files per process: $NOFILE"
    echo "load average (1/5/15 min) at start: $LOAD_START, at end: $LOAD_END"
    echo '```'
    echo
    $ROUNDS_PY report "$OUT/summary.json"
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
        echo "| $name | $algo | $(kv "bal-$t" max_over_mean_p50) | $(kv "bal-$t" max_over_mean_p99) | $(kv "bal-$t" max_over_mean_max) | $(kv "bal-$t" opened) | $(kv "bal-$t" errors) |"
    done
    echo
    echo "## Failover (kill -9 one of $NW workers at ${FO_AT}s under $HS_C concurrent handshake cycles, ${FO_D}s)"
    echo
    echo "| front | failed handshakes | handshakes/s | p99 ms | max ms | time until marked down |"
    echo "|---|---:|---:|---:|---:|---:|"
    for t in $FO_TARGETS; do
        echo "| $t | $(kv "failover-$t" hs_fail) | $(kv "failover-$t" hs_per_s) | $(ms "$(kv "failover-$t" p99_us)") | $(ms "$(kv "failover-$t" max_us)") | ${FO_DOWN[$t]} ms |"
    done
    echo
    echo "Marked down: from the SIGKILL until the lb's /stats (or HAProxy's stats socket) shows the worker down."
    echo
    echo "## Rolling deploy (SIGTERM-drain and restart each of $NW workers in turn; 4 eval clients running \`$RD_CODE\` in a loop, reconnecting on close)"
    echo
    echo "| evaluations | failed | of which lost in flight | reconnects | runs resent: refused while draining | runs resent: unanswered at the 1001 close | deploy took |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    echo "| $(kv rolling evals) | $(kv rolling failed) | $(kv rolling v_lost) | $(kv rolling reconnects) | $(kv rolling drain_retries) | $(kv rolling resent_1001) | ${RD_SECS} s |"
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
    if [ -n "$SESS_MD" ]; then
        echo
        cat "$SESS_MD"
    fi
    if [ -n "$PLOTS" ]; then
        echo
        echo "## Plots"
        echo
        for p in $PLOTS; do echo "![$p]($p.svg)"; done
    fi
    echo
    echo "## Commands"
    echo
    echo "Ports are picked free at each run. In this run: direct (worker w1) $W1, lb $LB_PORT, lb with roundrobin $LBRR_PORT, second lb $LB2_PORT, lb with 2 threads $LBT2_PORT$([ -n "$HAPROXY" ] && echo ", HAProxy $HAP_PORT (2 threads: $HAPT2_PORT)")$([ -n "$NGINX" ] && echo ", nginx $NGX_PORT (2 workers: $NGXT2_PORT)"); workers w1-w5 on $W1 $W2 $W3 $W4 $W5."
    echo "The raw outputs (one per run, named PASS-CASE-FRONT-rROUND) and runs.tsv with each run's CPU ticks are in raw/."
    echo
    echo '```'
    sed -e "s|$RAW/||g" "$CMDS"
    echo '```'
} >"$R"
log "report: $R ($((TOTAL_SECS / 60)) min $((TOTAL_SECS % 60)) s)"
echo "$R"
