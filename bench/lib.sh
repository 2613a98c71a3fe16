# shellcheck shell=bash
# Shell helpers shared by bench/run.sh and bench/ab.sh (sourced, not run).
# They read PY (a python3) from the caller.

# The calling script's header comment (from line 2 to `set -u`) as its
# usage, then exit with $1 (2 by default).
usage() {
    sed -n '2,/^set -u/p' "$0" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//'
    exit "${1:-2}"
}

# A scratch directory in `tmp` (/tmp/wslb-NAME.*) and an empty `pids`
# list; at exit every pid in it is killed and waited for and the directory
# removed.
bench_scratch() { # NAME
    tmp=$(mktemp -d "/tmp/wslb-$1.XXXXXX")
    pids=()
    trap bench_scratch_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_scratch_cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}

# Starts NW static workers on the first NW of the caller's `ports`, each
# with its log in DIR/wI.err and slot uids of its own (from its port), and
# waits (TIMEOUT s, 15) until each answers /healthz, printing the log of one
# that does not and exiting 1. Appends their pids to `pids` and fills
# `backends` (lb --backend flags) and `servers` (NAME=HOST:PORT).
bench_start_workers() { # NW DIR [TIMEOUT]
    local nw=$1 dir=$2 timeout=${3:-15} i
    backends=() servers=()
    # shellcheck disable=SC2154 # ports is the caller's
    for ((i = 0; i < nw; i++)); do
        "$BIN/worker" --listen "127.0.0.1:${ports[i]}" --id "w$i" \
            --uid-base $((100000 + 1024 * ports[i])) --log-level warn 2>"$dir/w$i.err" &
        pids+=($!)
        backends+=(--backend "w$i=127.0.0.1:${ports[i]}")
        servers+=("w$i=127.0.0.1:${ports[i]}")
    done
    for ((i = 0; i < nw; i++)); do
        wait_http "http://127.0.0.1:${ports[i]}/healthz" 200 "$timeout" || {
            echo "worker w$i (port ${ports[i]}) did not come up; its log:" >&2
            tail -5 "$dir/w$i.err" >&2
            exit 1
        }
    done
}

# N free TCP ports on 127.0.0.1, distinct from each other, on one line.
# Below the kernel's ephemeral range: a port from it (what bind to port 0
# gives) may be taken by some client's connect before the server binds it,
# which on a machine busy with other benchmarks (tens of thousands of
# connections in TIME_WAIT) happened in most runs.
free_ports() {
    $PY - "$1" <<'EOF'
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
low = max(low, 2048)
socks, seen = [], set()
while len(socks) < int(sys.argv[1]) and len(seen) < low - 1024:
    p = random.randrange(1024, low)
    if p in seen:
        continue
    seen.add(p)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    socks.append(s)
# Closed before they are printed: a caller reading them through a process
# substitution goes on as soon as the line is out, maybe before this
# process exits, and a port still bound here would refuse its bind.
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()
print(" ".join(str(p) for p in ports), flush=True)
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
    echo "bench: timeout waiting for $code from $url" >&2
    return 1
}

# CPU time of the processes PIDS (every thread, live or ended), summed, in
# clock ticks (getconf CLK_TCK), from /proc/PID/stat: prints "OWN CHILDREN",
# OWN = utime + stime, CHILDREN = cutime + cstime (children waited for).
# A pid that is gone counts 0.
cpu_ticks() {
    local own=0 ch=0 p f
    for p in "$@"; do
        # Fields after "pid (comm) ": state is [0], utime [11], stime [12],
        # cutime [13], cstime [14] (comm may hold spaces, so cut at the last ')').
        read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        [ "${#f[@]}" -gt 14 ] || continue
        own=$((own + f[11] + f[12]))
        ch=$((ch + f[13] + f[14]))
    done
    echo "$own $ch"
}

# User-space CPU time (utime) of the processes PIDS, summed, in clock ticks:
# with cpu_ticks, what a front's own code costs apart from the kernel's
# work in its system calls.
cpu_user_ticks() {
    local u=0 p f
    for p in "$@"; do
        read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        [ "${#f[@]}" -gt 14 ] || continue
        u=$((u + f[11]))
    done
    echo "$u"
}

# PIDS and each one's sandbox zygote (the worker's child that clones the runs'
# inits; it lives as long as the worker, so its CPU is never added to the
# worker's children's): a worker's CPU is both processes'.
with_zygotes() {
    local p
    for p in "$@"; do
        echo "$p"
        pgrep -P "$p" -x wk-zygote || true
    done | paste -sd' '
}

# Involuntary context switches of PID's threads, summed.
ctxt_invol() {
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^nonvoluntary/ {s += $2} END {print s + 0}'
}

# Open-files limit for a proxy front: the hard limit of this shell (capped,
# for configs), and how many proxied connections fit in it (two descriptors
# each, 50 spare).
front_nofile() {
    local n
    n=$(ulimit -Hn)
    [ "$n" = unlimited ] && n=1048576
    [ "$n" -gt 1048576 ] && n=1048576
    echo "$n"
}

# Writes HAProxy's config: render_haproxy TEMPLATE OUT DIR PORT NBTHREAD SERVER...
# (each SERVER is NAME=HOST:PORT; health checks on /healthz every second).
render_haproxy() {
    local tpl=$1 out=$2 dir=$3 port=$4 nbthread=$5 srv="" s nofile
    shift 5
    for s in "$@"; do srv+="    server ${s%%=*} ${s#*=} check"$'\n'; done
    nofile=$(front_nofile)
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@NBTHREAD@|$nbthread|g" \
        -e "s|@NOFILE@|$nofile|g" -e "s|@MAXCONN@|$(((nofile - 50) / 2))|g" "$tpl" |
        $PY -c 'import sys; sys.stdout.write(sys.stdin.read().replace("@SERVERS@\n", sys.argv[1]))' \
            "$srv" >"$out"
}

# Writes nginx's config: render_nginx TEMPLATE OUT DIR PORT WORKERS HOST:PORT...
render_nginx() {
    local tpl=$1 out=$2 dir=$3 port=$4 workers=$5 srv="" s nofile
    shift 5
    for s in "$@"; do srv+="        server $s;"$'\n'; done
    nofile=$(front_nofile)
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" \
        -e "s|@NOFILE@|$nofile|g" -e "s|@CONNS@|$((nofile * 2))|g" "$tpl" |
        $PY -c 'import sys; sys.stdout.write(sys.stdin.read().replace("@SERVERS@\n", sys.argv[1]))' \
            "$srv" >"$out"
}

# The commit the binaries are built from, "-dirty" when the tree (results
# aside) has uncommitted changes: what a report row names.
bench_commit() {
    local root=$1 c
    c=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
    if [ -n "$(git -C "$root" status --porcelain -- . ':(exclude)bench/results' 2>/dev/null)" ]; then
        c+=-dirty
    fi
    echo "$c"
}

# ---- named background processes (bench/run.sh, bench/sessions.sh) -----------
# The caller declares `declare -A PID` and sets RAW (where logs go), TMP
# (removed at exit), LOG_TAG (the prefix of log lines) and LOG_PREFIX (of
# the raw/ log file names), then traps bench_cleanup on EXIT.

# Stops every named process (TERM, then KILL after 5 s) and removes TMP.
bench_cleanup() {
    set +e
    for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null; done
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

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }

# Starts a named background process with its output in raw/LOG_PREFIX NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$RAW/${LOG_PREFIX:-}$name.log" 2>&1 &
    # shellcheck disable=SC2004 # PID is the caller's associative array
    PID[$name]=$!
}

# Stops a named process with a signal (TERM by default), waiting at most
# LIMIT tenths of a second (100) before KILL.
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

# Value of key in the RESULT line of raw/NAME.out ('-' when absent).
kv() {
    local v
    v=$(grep '^RESULT' "$RAW/$1.out" 2>/dev/null | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p")
    echo "${v:--}"
}
