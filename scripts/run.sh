#!/bin/bash
# Local demo: a private Redis, WORKERS workers publishing to it and the lb on
# 127.0.0.1:8080 (admin on 127.0.0.1:8081), supervised. `make run` runs it.
#
# Environment: WORKERS (3; NWORKERS is the old name), LB_LISTEN, LB_ADMIN,
# WORKER_BASE_PORT (9001: workers on 9001, 9002, ...), REDIS_PORT (a free one),
# DRAIN_S (5), BIN_DIR (bin).
#
# - Every port is checked before anything starts: a second `make run` next to
#   a running one says which port is taken and exits 1.
# - Each daemon runs in its own session, so the terminal's Ctrl-C reaches
#   this script only. The script then sends each daemon exactly one SIGTERM:
#   the workers drain (running evaluations finish, websockets close with
#   1001, they leave Redis), the lb stops once its tunnels are gone, and
#   Redis is stopped last. A second Ctrl-C sends the second signal, which
#   every daemon takes as "exit at once".
# - A daemon that dies is restarted after a back-off (1 s, doubling up to
#   30 s while it keeps dying young), and the script says so.
# - Every output line carries its daemon's name and is written whole, as it
#   comes (sed -u: one line per write).
set -u
cd "$(dirname "$0")/.."
BIN=${BIN_DIR:-bin}
LB_LISTEN=${LB_LISTEN:-127.0.0.1:8080}
LB_ADMIN=${LB_ADMIN:-127.0.0.1:8081}
WORKERS=${WORKERS:-${NWORKERS:-3}}
WORKER_BASE_PORT=${WORKER_BASE_PORT:-9001}
DRAIN_S=${DRAIN_S:-5}
REDIS_SERVER=${REDIS_SERVER:-redis-server}

say() { printf '[run] %s\n' "$*"; }
fail() {
    printf '[run] %s\n' "$*" >&2
    exit 1
}

case "$WORKERS" in
'' | *[!0-9]*) fail "WORKERS must be a number from 1 to 64, not '$WORKERS'" ;;
esac
((WORKERS >= 1 && WORKERS <= 64)) || fail "WORKERS must be a number from 1 to 64, not '$WORKERS'"
case "$WORKER_BASE_PORT" in
'' | *[!0-9]*) fail "WORKER_BASE_PORT must be a port number, not '$WORKER_BASE_PORT'" ;;
esac
for p in worker lb; do
    [ -x "$BIN/$p" ] || fail "$BIN/$p is missing: build it first (make)"
done
command -v "$REDIS_SERVER" >/dev/null || fail "redis-server is missing: apt-get install redis-server"

# ---- ports: all checked before anything starts -----------------------------
if [ -z "${REDIS_PORT:-}" ]; then
    REDIS_PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi
specs=("lb=$LB_LISTEN" "lb admin API=$LB_ADMIN" "redis=127.0.0.1:$REDIS_PORT")
for ((i = 1; i <= WORKERS; i++)); do
    specs+=("worker w$i=127.0.0.1:$((WORKER_BASE_PORT + i - 1))")
done
# A plain bind, as a daemon without SO_REUSEPORT does: it fails next to any
# listener on that port (a second lb with SO_REUSEPORT would not notice).
busy=$(/usr/bin/python3 - "${specs[@]}" <<'EOF'
import socket, sys
for spec in sys.argv[1:]:
    role, addr = spec.split("=", 1)
    host, port = addr.rsplit(":", 1)
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, int(port)))
    except (OSError, ValueError) as e:
        print("%s\t%s\t%s" % (addr, role, getattr(e, "strerror", None) or e))
    finally:
        s.close()
EOF
)
if [ -n "$busy" ]; then
    while IFS=$'\t' read -r addr role why; do
        printf '[run] cannot start: %s (%s) is not available: %s\n' "$addr" "$role" "$why" >&2
    done <<<"$busy"
    printf '[run] is another `make run` running? Stop it (Ctrl-C there), or use other ports:\n' >&2
    printf '[run]   make run LB_LISTEN=127.0.0.1:8090 LB_ADMIN=127.0.0.1:8091 WORKER_BASE_PORT=9101\n' >&2
    exit 1
fi

tmp=$(mktemp -d /tmp/wslb-run.XXXXXX)

# ---- daemons -------------------------------------------------------------------
declare -A CMD PID LOGFD BACKOFF STARTED RESTART_AT PREFIXER
NAMES=()

# One line-buffered prefixer per daemon, kept open by this script so that a
# restarted daemon writes to the same one. It ignores Ctrl-C: it must print
# the daemons' last lines.
add_daemon() { # name cmd...
    local name=$1 fd
    shift
    CMD[$name]=$(printf '%q ' "$@")
    exec {fd}> >(
        trap '' INT TERM
        # Only this script may hold the others' pipes: each must end when
        # this script closes it.
        for n in "${NAMES[@]}"; do eval "exec ${LOGFD[$n]}>&-"; done
        exec sed -u "s/^/[$name] /"
    )
    PREFIXER[$name]=$!
    LOGFD[$name]=$fd
    BACKOFF[$name]=1
    NAMES+=("$name")
}

# Starts the daemon in its own session (setsid), stdout and stderr to its
# prefixer, the other prefixers' descriptors closed.
launch() { # name
    local name=$1 n
    (
        for n in "${NAMES[@]}"; do
            [ "$n" = "$name" ] || eval "exec ${LOGFD[$n]}>&-"
        done
        eval "exec setsid ${CMD[$name]}" </dev/null >&"${LOGFD[$name]}" 2>&1
    ) &
    PID[$name]=$!
    STARTED[$name]=$SECONDS
}

name_of() { # pid -> name, or fails
    local n
    for n in "${NAMES[@]}"; do
        [ "${PID[$n]:-}" = "$1" ] && { echo "$n"; return 0; }
    done
    return 1
}

alive_pids() { # names... -> their running pids
    local n
    for n in "$@"; do
        [ -n "${PID[$n]:-}" ] && echo "${PID[$n]}"
    done
}

how_ended() { # wait status -> words
    if (($1 > 128)); then
        echo "killed by SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"
    else
        echo "exited with status $1"
    fi
}

wait_port() { # host:port seconds name -> 0 once it accepts
    local host=${1%:*} port=${1##*:} i
    host=${host#[}
    host=${host%]}
    for ((i = 0; i < $2 * 20; i++)); do
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
        [ -n "${PID[$3]:-}" ] && kill -0 "${PID[$3]}" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

ints=0
trap 'ints=$((ints + 1))' INT TERM

TIMER=""
start_timer() { # seconds: a job whose end wakes the supervisor
    [ -n "$TIMER" ] && return
    sleep "$1" &
    TIMER=$!
}

# Ctrl-C: one SIGTERM each to the lb and the workers; Redis once they are
# gone. A second Ctrl-C (or a daemon still there after DRAIN_S + 20 s) gets
# the second signal through.
shutdown() {
    local n pids=() left seen=$ints dead st deadline
    trap - EXIT
    [ -n "$TIMER" ] && kill "$TIMER" 2>/dev/null
    TIMER=""
    echo
    say "stopping: one SIGTERM to the lb and to each worker; running evaluations finish" \
        "(up to ${DRAIN_S} s), websockets close with 1001, workers leave Redis; Redis stops last"
    for n in "${NAMES[@]}"; do
        [ "$n" = redis ] && continue
        [ -n "${PID[$n]:-}" ] && kill -TERM "${PID[$n]}" 2>/dev/null && pids+=("$n")
    done
    deadline=$((SECONDS + DRAIN_S + 20))
    while left=$(alive_pids "${pids[@]}") && [ -n "$left" ]; do
        start_timer 1
        # shellcheck disable=SC2086
        wait -n -p dead $left "$TIMER" 2>/dev/null
        st=$?
        if [ "${dead:-}" = "$TIMER" ]; then
            TIMER=""
        elif n=$(name_of "${dead:-}"); then
            PID[$n]=""
            [ "$st" -ne 0 ] && say "$n $(how_ended "$st")"
        fi
        if ((ints > seen)) || ((SECONDS > deadline)); then
            if ((ints > seen)); then
                say "second Ctrl-C: telling what is left to exit at once"
            else
                say "still running after $((DRAIN_S + 20)) s: telling what is left to exit at once"
            fi
            seen=$ints
            deadline=$((SECONDS + 5))
            for n in "${pids[@]}"; do
                [ -n "${PID[$n]:-}" ] && kill -TERM "${PID[$n]}" 2>/dev/null
            done
        fi
    done
    # Their last lines first: each daemon's prefixer ends once its pipe has
    # no writer, and what they print must come before Redis's own lines.
    for n in "${pids[@]}"; do
        eval "exec ${LOGFD[$n]}>&-"
        LOGFD[$n]=""
    done
    deadline=$((SECONDS + 3))
    for n in "${pids[@]}"; do
        while kill -0 "${PREFIXER[$n]}" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.05
        done
    done
    if [ -n "${PID[redis]:-}" ]; then
        say "workers and lb stopped; stopping redis"
        kill -TERM "${PID[redis]}" 2>/dev/null
        wait "${PID[redis]}" 2>/dev/null
        PID[redis]=""
    fi
    [ -n "$TIMER" ] && kill "$TIMER" 2>/dev/null
    for n in "${NAMES[@]}"; do
        [ -n "${LOGFD[$n]}" ] && eval "exec ${LOGFD[$n]}>&-"
        wait "${PREFIXER[$n]}" 2>/dev/null
    done
    rm -rf "$tmp"
    say "stopped"
}
# Leaving any other way (an error in this script) still stops the daemons.
trap 'shutdown' EXIT

# ---- start -----------------------------------------------------------------------
add_daemon redis "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$tmp" --loglevel warning --logfile ''
for ((i = 1; i <= WORKERS; i++)); do
    add_daemon "w$i" "$BIN/worker" --listen "127.0.0.1:$((WORKER_BASE_PORT + i - 1))" --id "w$i" \
        --redis "127.0.0.1:$REDIS_PORT" --drain-s "$DRAIN_S" \
        --uid-base $((61000 + 1024 * (i - 1))) # each worker's slots get uids of their own
done
add_daemon lb "$BIN/lb" --listen "$LB_LISTEN" --admin "$LB_ADMIN" --redis "127.0.0.1:$REDIS_PORT" \
    --route /eval --static web

launch redis
wait_port "127.0.0.1:$REDIS_PORT" 10 redis || fail "redis did not start (see its lines above)"
say "redis   127.0.0.1:$REDIS_PORT (pid ${PID[redis]})"
for ((i = 1; i <= WORKERS; i++)); do
    launch "w$i"
done
for ((i = 1; i <= WORKERS; i++)); do
    addr=127.0.0.1:$((WORKER_BASE_PORT + i - 1))
    wait_port "$addr" 20 "w$i" || fail "worker w$i did not start (see its lines above)"
    say "worker  w$i on ws://$addr/eval (pid ${PID[w$i]})"
done
launch lb
# The lb binds its listeners before its admin API, and a probe of the
# listener would show up in its access log.
wait_port "$LB_ADMIN" 20 lb || fail "the lb did not start (see its lines above)"
say "lb      ws://$LB_LISTEN/eval, admin http://$LB_ADMIN/stats (pid ${PID[lb]})"

cat <<EOT

  wslb is running: Redis, $WORKERS worker(s) and the lb, supervised (a daemon
  that dies is restarted).

  REPL page:  http://$LB_LISTEN/
  Try it:     /usr/bin/python3 -m websockets ws://$LB_LISTEN/eval
              > {"type":"run","id":"r1","runtime":"python3","code":"print(6*7)"}
  Status:     $BIN/wslbctl status --lb http://$LB_ADMIN
              (or: curl -s http://$LB_ADMIN/stats)
  Stop:       Ctrl-C: running evaluations finish, then everything stops.

EOT

# ---- supervise -------------------------------------------------------------------
while ((ints == 0)); do
    dead=""
    # (bash would report a job killed by a signal on stderr; we say it below.)
    wait -n -p dead 2>/dev/null
    st=$?
    ((ints > 0)) && break
    if [ -n "$TIMER" ] && [ "${dead:-}" = "$TIMER" ]; then
        TIMER=""
    elif [ -n "${dead:-}" ] && n=$(name_of "$dead"); then
        PID[$n]=""
        # A daemon that lived a while starts again from the short back-off.
        ((SECONDS - STARTED[$n] > 30)) && BACKOFF[$n]=1
        say "$n (pid $dead) $(how_ended "$st"); restarting it in ${BACKOFF[$n]} s"
        RESTART_AT[$n]=$((SECONDS + BACKOFF[$n]))
        BACKOFF[$n]=$((BACKOFF[$n] * 2 > 30 ? 30 : BACKOFF[$n] * 2))
    fi
    next=""
    for n in "${!RESTART_AT[@]}"; do
        if ((RESTART_AT[$n] <= SECONDS)); then
            unset "RESTART_AT[$n]"
            launch "$n"
            say "$n restarted (pid ${PID[$n]})"
        elif [ -z "$next" ] || ((RESTART_AT[$n] < next)); then
            next=${RESTART_AT[$n]}
        fi
    done
    [ -n "$next" ] && start_timer $((next - SECONDS))
done
shutdown
exit 0
