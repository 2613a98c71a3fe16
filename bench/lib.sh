# shellcheck shell=bash
# Shell helpers shared by bench/run.sh and bench/ab.sh (sourced, not run).
# They read PY (a python3) from the caller.

# N free TCP ports on 127.0.0.1, distinct from each other, on one line.
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
    local tpl=$1 out=$2 dir=$3 port=$4 nbthread=$5 servers="" s nofile
    shift 5
    for s in "$@"; do servers+="    server ${s%%=*} ${s#*=} check"$'\n'; done
    nofile=$(front_nofile)
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@NBTHREAD@|$nbthread|g" \
        -e "s|@NOFILE@|$nofile|g" -e "s|@MAXCONN@|$(((nofile - 50) / 2))|g" "$tpl" |
        $PY -c 'import sys; sys.stdout.write(sys.stdin.read().replace("@SERVERS@\n", sys.argv[1]))' \
            "$servers" >"$out"
}

# Writes nginx's config: render_nginx TEMPLATE OUT DIR PORT WORKERS HOST:PORT...
render_nginx() {
    local tpl=$1 out=$2 dir=$3 port=$4 workers=$5 servers="" s nofile
    shift 5
    for s in "$@"; do servers+="        server $s;"$'\n'; done
    nofile=$(front_nofile)
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$workers|g" \
        -e "s|@NOFILE@|$nofile|g" -e "s|@CONNS@|$((nofile * 2))|g" "$tpl" |
        $PY -c 'import sys; sys.stdout.write(sys.stdin.read().replace("@SERVERS@\n", sys.argv[1]))' \
            "$servers" >"$out"
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
