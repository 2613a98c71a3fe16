#!/bin/bash
# The worker's side alone, in interleaved rounds: sandboxed evaluations of
# `python3 -I -S -B main.py` (main.py = `pass`) through one worker's /eval
# (no proxy, no Redis), against the same program bare (fork/exec) and under
# bwrap, all through wsbench at the same concurrency and count. With a
# second worker binary (--worker-b), an A/B of two builds of the sandbox
# (the "did this lever help" check). The fronts' order rotates one place per
# round, so a burst of load from elsewhere falls on different fronts.
#
# Per run it prints evaluations/s, p50/p99 and the CPU per evaluation: for a
# worker, its own (event loop, janitor) and its zygote's plus its children's
# (the sandboxes' init and the programs), from /proc/PID/stat; for bare and bwrap, wsbench's
# own plus its children's (from wait4). At the end, per front, the median
# (min-max) of the rounds, and X/bare of the medians.
#
# Usage: bench/worker_ab.sh [--worker-a BIN] [--worker-b BIN] [--rounds R]
#                           [-n RUNS] [-c N] [--hold N] [--no-bwrap]
# Defaults: bin/worker alone, 5 rounds, 300 runs per front and round, 4 at
# once (the workers' --max-evals: 2 x cores here). --hold N first opens N
# idle websockets to each worker and closes them, as make bench's memory
# scenario does to the worker its eval rounds then use: a worker's heap
# stays grown after holding many websockets.
set -u
cd "$(dirname "$0")/.." || exit 2
BIN=${BIN_DIR:-bin}
PY=/usr/bin/python3
WA=$BIN/worker WB="" ROUNDS=5 RUNS=300 CONC=4 USE_BWRAP=1 HOLD=0
# shellcheck source=bench/lib.sh
. bench/lib.sh

while [ $# -gt 0 ]; do
    case $1 in
    --worker-a) WA=$2 && shift ;;
    --worker-b) WB=$2 && shift ;;
    --rounds) ROUNDS=$2 && shift ;;
    -n) RUNS=$2 && shift ;;
    -c) CONC=$2 && shift ;;
    --hold) HOLD=$2 && shift ;;
    --no-bwrap) USE_BWRAP=0 ;;
    -h | --help) usage 0 ;;
    *) usage ;;
    esac
    shift || usage
done
if ! [[ $HOLD =~ ^[0-9]+$ ]] || [ "$HOLD" -gt 20000 ]; then
    echo "worker_ab: --hold '$HOLD' is not a count in 0..20000" >&2
    exit 2
fi
for v in "$ROUNDS" "$RUNS" "$CONC"; do
    if ! [[ $v =~ ^[0-9]+$ ]] || [ "$v" -lt 1 ]; then
        echo "worker_ab: '$v' is not a count >= 1" >&2
        exit 2
    fi
done
for b in "$WA" $WB "$BIN/wsbench"; do
    [ -x "$b" ] || {
        echo "worker_ab: $b is missing; run make first" >&2
        exit 2
    }
done
TMP=$(mktemp -d /tmp/wslb-wab.XXXXXX)
declare -A PID PORT
cleanup() {
    local p
    for p in "${PID[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PID[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FRONTS="A"
[ -n "$WB" ] && FRONTS+=" B"
read -r -a ports < <(free_ports 2)
start_worker() { # NAME BIN PORT
    local n=$1 bin=$2 port=$3
    PORT[$n]=$port
    "$bin" --listen "127.0.0.1:$port" --id "wab-$n" --max-evals "$CONC" --work-root "$TMP/root-$n" \
        --uid-base $((100000 + 1024 * port)) --log-level warn 2>"$TMP/worker-$n.log" &
    PID[$n]=$!
    wait_http "http://127.0.0.1:$port/healthz" 200 30 || { cat "$TMP/worker-$n.log" >&2; exit 1; }
}
ulimit -n "$(ulimit -Hn)" # for --hold: the workers and wsbench hold a descriptor per websocket
start_worker A "$WA" "${ports[0]}"
[ -n "$WB" ] && start_worker B "$WB" "${ports[1]}"
hold() { # NAME: HOLD idle websockets opened to the worker, then closed
    local n=$1 hp
    "$BIN/wsbench" hold -q -n "$HOLD" -r 5000 -d 120 --procs $(((HOLD + 7999) / 8000)) \
        --source-ips 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 "ws://127.0.0.1:${PORT[$n]}/echo" \
        >"$TMP/hold-$n.out" 2>&1 &
    hp=$!
    local deadline=$((SECONDS + 60))
    until grep -q '^HOLDING' "$TMP/hold-$n.out" || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
    kill -INT "$hp" 2>/dev/null
    wait "$hp"
    echo "worker_ab: $n held $(sed -n 's/^HOLDING n=\([0-9]*\).*/\1/p' "$TMP/hold-$n.out" | head -1) websockets; now $(grep RssAnon /proc/"${PID[$n]}"/status | tr -s ' \t' ' ')"
}
if [ "$HOLD" -gt 0 ]; then
    hold A
    [ -n "$WB" ] && hold B
fi
FRONTS+=" bare"
PYCMD=(/usr/bin/python3 -I -S -B main.py)
BWRAP=$(command -v bwrap || true)
BWRAP_ISO=(--unshare-all --die-with-parent --ro-bind /usr /usr)
for d in lib lib64 bin sbin; do
    if [ -L "/$d" ]; then
        BWRAP_ISO+=(--symlink "$(readlink "/$d")" "/$d")
    elif [ -d "/$d" ]; then
        BWRAP_ISO+=(--ro-bind "/$d" "/$d")
    fi
done
BWRAP_ISO+=(--tmpfs /tmp --proc /proc --dev /dev)
if [ "$USE_BWRAP" = 1 ] && [ -n "$BWRAP" ] && "$BWRAP" "${BWRAP_ISO[@]}" /bin/true 2>/dev/null; then
    FRONTS+=" bwrap"
fi
rotated() { # K WORDS...
    local k=$1
    shift
    local a=("$@") n=$# i out=""
    for ((i = 0; i < n; i++)); do out+="${a[(i + k) % n]} "; done
    echo "${out% }"
}
key() { grep -o " $1=[0-9.]*" <<<"$2" | head -1 | cut -d= -f2; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
RES=$TMP/rounds.tsv
: >"$RES"
echo "worker_ab: fronts $FRONTS, $ROUNDS rounds x $RUNS runs, $CONC at once; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-6s %10s %9s %9s %12s\n' round front evals/s p50_ms p99_ms cpu_ms/run
for r in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086
    for t in $(rotated $((r - 1)) $FRONTS); do
        case $t in
        A | B)
            # shellcheck disable=SC2046
            read -r o0 c0 < <(cpu_ticks $(with_zygotes "${PID[$t]}"))
            out=$("$BIN/wsbench" eval -q -c "$CONC" -n "$RUNS" -d 300 "ws://127.0.0.1:${PORT[$t]}/eval" |
                grep '^RESULT')
            # shellcheck disable=SC2046
            read -r o1 c1 < <(cpu_ticks $(with_zygotes "${PID[$t]}"))
            cpu_us=$(((o1 - o0 + c1 - c0) * TICK_US))
            ;;
        bare | bwrap)
            mkdir -p "$TMP/spawn"
            if [ "$t" = bare ]; then
                cmd=("${PYCMD[@]}")
            else
                cmd=("$BWRAP" "${BWRAP_ISO[@]}" --bind '{dir}' /work --chdir /work "${PYCMD[@]}")
            fi
            out=$("$BIN/wsbench" spawn -q -c "$CONC" -n "$RUNS" -d 300 --work-root "$TMP/spawn" \
                -- "${cmd[@]}" | grep '^RESULT')
            cpu_us=$(($(key cpu_self_us "$out") + $(key cpu_child_us "$out")))
            ;;
        esac
        n=$(key evals "$out")
        if [ -z "$n" ] || [ "$n" -eq 0 ]; then
            echo "worker_ab: $t made no evaluations: $out" >&2
            exit 1
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" "$(key evals_per_s "$out")" "$(key p50_us "$out")" \
            "$(key p99_us "$out")" "$((cpu_us / n))" >>"$RES"
        tail -1 "$RES" | awk -F'\t' '{printf "%-6s %-6s %10.1f %9.2f %9.2f %12.2f\n", $1, $2, $3, $4/1000, $5/1000, $6/1000}'
    done
done
$PY - "$RES" "$FRONTS" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
fronts = sys.argv[2].split()
col = {"evals/s": 2, "p50 ms": 3, "p99 ms": 4, "CPU ms/run": 5}
scale = {"evals/s": 1, "p50 ms": 1e-3, "p99 ms": 1e-3, "CPU ms/run": 1e-3}
med = {}
print("\nmedian (min-max) of %d rounds" % len({r[0] for r in rows}))
print("%-6s" % "front" + "".join("%26s" % k for k in col))
for f in fronts:
    line = "%-6s" % f
    for k, i in col.items():
        v = [float(r[i]) * scale[k] for r in rows if r[1] == f]
        med[(f, k)] = statistics.median(v)
        line += "%26s" % ("%.2f (%.2f-%.2f)" % (med[(f, k)], min(v), max(v)))
    print(line)
for f in fronts:
    if f in ("A", "B"):
        print("%s/bare: p50 %.2f, CPU per run %.2f" % (f, med[(f, "p50 ms")] / med[("bare", "p50 ms")],
              med[(f, "CPU ms/run")] / med[("bare", "CPU ms/run")]), end="")
        if "bwrap" in fronts:
            print("; %s/bwrap: p50 %.2f, CPU per run %.2f" % (f, med[(f, "p50 ms")] / med[("bwrap", "p50 ms")],
                  med[(f, "CPU ms/run")] / med[("bwrap", "CPU ms/run")]), end="")
        print()
if "B" in fronts:
    rounds = sorted({r[0] for r in rows}, key=int)
    get = lambda f, r, i: float(next(x[i] for x in rows if x[0] == r and x[1] == f))
    print("B/A per round, CPU per run: " + " ".join("%.3f" % (get("B", r, 5) / get("A", r, 5)) for r in rounds))
    print("B/A per round, p50:         " + " ".join("%.3f" % (get("B", r, 3) / get("A", r, 3)) for r in rounds))
EOF
