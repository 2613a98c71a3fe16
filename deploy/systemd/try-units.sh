#!/bin/bash
# Runs the units under a real systemd where systemd is not PID 1 (containers,
# CI, build machines): boots systemd as PID 1 of fresh pid, mount and cgroup
# namespaces with a unit path holding only what is needed, installs the
# units there (with the programs from build/pkg/bin: `make deb` builds them),
# adds the given options as a drop-in to each unit tried, and checks:
#   worker: isolation "full"; runs in python3, sh and c; the memory limit;
#           the timeout kills forked children; the run's /proc is complete;
#           `systemctl stop` lets a running evaluation finish, then 1001;
#   lb:     an evaluation through it, plain and TLS on a port below 1024,
#           and `systemctl reload` handing the listeners to a new lb that
#           becomes the unit's main process.
# This is how the units' hardening options were chosen.
#
# Usage (as root): deploy/systemd/try-units.sh [worker|lb|both] ['Option=value'...]
#   e.g. deploy/systemd/try-units.sh worker ProtectHostname=yes
# Exit status 0 when every check passed. The lb runs as user nobody here.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
which=${1:-both}
[ $# -gt 0 ] && shift
case "$which" in worker | lb | both) ;; *) echo "usage: $0 [worker|lb|both] [Option=value...]" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "try-units: needs root" >&2; exit 2; }
for p in worker lb; do
    [ -x "$top/build/pkg/bin/$p" ] || { echo "try-units: build/pkg/bin/$p missing: make deb" >&2; exit 2; }
done

# Not under /tmp or /home: PrivateTmp= and ProtectHome= would hide it.
work="$top/build/try-units"
rm -rf "$work"
mkdir -p "$work/units" "$work/empty" "$work/tls"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wport=$(free_port) lport=$(free_port) aport=$(free_port) rport=$(free_port)
tport=$(/usr/bin/python3 -c '
import socket
for p in range(440, 460):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()')

"$top/scripts/install.sh" "$top/build/pkg/bin" "$work/root" /usr "$work/man" >/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null
chmod 644 "$work/tls/"*.pem
printf 'listen = 127.0.0.1:%s\nid = try-w1\ndrain-s = 5\nredis = 127.0.0.1:%s\n' \
    "$wport" "$rport" >"$work/worker.conf"
printf 'listen = 127.0.0.1:%s\ntls-listen = 127.0.0.1:%s\ncert = %s\nkey = %s\nadmin = 127.0.0.1:%s\nredis = 127.0.0.1:%s\nthreads = 2\ngrace-s = 3\n' \
    "$lport" "$tport" "$work/tls/cert.pem" "$work/tls/key.pem" "$aport" "$rport" >"$work/lb.conf"

# Only these units exist for this systemd: nothing of the host's starts.
for t in try sysinit basic shutdown network-online network multi-user sockets paths timers \
    slices local-fs remote-fs; do
    printf '[Unit]\nDescription=%s\n' "$t" >"$work/units/$t.target"
done
printf '[Unit]\nDescription=System Slice\nDefaultDependencies=no\n' >"$work/units/system.slice"
for u in worker lb; do
    sed -e "s|/usr/bin/wslb-$u|$work/root/usr/bin/wslb-$u|" -e "s|/etc/wslb/$u.conf|$work/$u.conf|" \
        -e 's/^User=wslb$/User=nobody/' -e 's/^Group=wslb$/Group=nogroup/' \
        "$top/deploy/systemd/wslb-$u.service" >"$work/units/wslb-$u.service"
    mkdir -p "$work/units/wslb-$u.service.d"
    printf '[Service]\nStandardOutput=append:%s/%s.log\nStandardError=append:%s/%s.log\n' \
        "$work" "$u" "$work" "$u" >"$work/units/wslb-$u.service.d/00-log.conf"
    if [ "$which" = both ] || [ "$which" = "$u" ]; then
        { echo '[Service]'; for o in "$@"; do echo "$o"; done; } >"$work/units/wslb-$u.service.d/10-try.conf"
    fi
done

redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$work/redis.pid" --logfile "$work/redis.log" --dir "$work"

# systemd as PID 1, in a cgroup of its own in every hierarchy (below ours),
# which the cgroup namespace makes its root.
boot() {
    local tag mine ctl path dir
    tag=try-units-$BASHPID
    mine=$(cat /proc/self/cgroup)
    while IFS=: read -r _ ctl path; do
        case "$ctl" in
        "") dir=/sys/fs/cgroup/unified; [ -f /sys/fs/cgroup/cgroup.controllers ] && dir=/sys/fs/cgroup ;;
        name=systemd) dir=/sys/fs/cgroup/systemd ;;
        *) dir=/sys/fs/cgroup/$ctl ;;
        esac
        [ -d "$dir" ] || dir=/sys/fs/cgroup/${ctl%%,*}
        [ -d "$dir" ] || continue
        path=${path%/}
        mkdir -p "$dir$path/$tag"
        echo "$dir$path/$tag" >>"$work/cgroups"
        if [ -f "$dir$path/cpuset.cpus" ] && [ ! -f "$dir$path/cgroup.controllers" ]; then
            cat "$dir$path/cpuset.cpus" >"$dir$path/$tag/cpuset.cpus"
            cat "$dir$path/cpuset.mems" >"$dir$path/$tag/cpuset.mems"
        fi
        echo "$BASHPID" >"$dir$path/$tag/cgroup.procs"
    done <<<"$mine"
    exec unshare --cgroup --pid --fork --mount --propagation private --mount-proc \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin container=wslb-try \
        SYSTEMD_UNIT_PATH="$work/units" SYSTEMD_GENERATOR_PATH="$work/empty" \
        SYSTEMD_ENVIRONMENT_GENERATOR_PATH="$work/empty" \
        bash -c '
set -eu
mount -t tmpfs -o mode=755 none /run
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
else
    # The same hierarchies mounted again from inside the cgroup namespace:
    # each is then rooted at our cgroup.
    hier=$(awk "\$3 == \"cgroup\" || \$3 == \"cgroup2\" { print \$3, \$2, \$4 }" /proc/self/mounts)
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    echo "$hier" | while read -r type dir opts; do
        opts=$(echo "$opts" | tr , "\n" | grep -Ev "^(rw|ro|relatime|nosuid|nodev|noexec)$" | paste -sd, -)
        case "$type,$opts" in cgroup,name=*) opts="none,$opts" ;; esac
        mkdir -p "$dir"
        mount -t "$type" ${opts:+-o "$opts"} "$type" "$dir"
    done
fi
exec /lib/systemd/systemd --unit=try.target --log-target=console --show-status=0
' </dev/null >"$work/systemd.log" 2>&1
}
: >"$work/cgroups"
(boot) &
outer=$!

cleanup() {
    set +e
    [ -n "${sd:-}" ] && nsenter -t "$sd" -m -p -- systemctl stop wslb-lb wslb-worker 2>/dev/null
    # PID 1 of a namespace dies by SIGKILL from outside; the rest with it.
    pkill -KILL -P "$outer" 2>/dev/null
    kill -KILL "$outer" 2>/dev/null
    wait "$outer" 2>/dev/null
    [ -s "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null
    # Deepest first: systemd's own cgroups, then ours. A cgroup whose last
    # process just died may refuse rmdir for a moment.
    for _ in $(seq 50); do
        left=0
        while read -r d; do
            [ -d "$d" ] || continue
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$d" ] && left=1
        done <"$work/cgroups"
        [ "$left" -eq 0 ] && break
        sleep 0.1
    done
    [ "$left" -eq 0 ] || echo "try-units: could not remove every cgroup in $work/cgroups" >&2
    # The logs stay in $work; the throwaway key does not.
    rm -rf "$work/tls"
}
trap cleanup EXIT

sd=""
for _ in $(seq 100); do
    # (boot) exec'ed unshare, whose child is the namespaces' PID 1.
    sd=$(pgrep -P "$outer" -x systemd || true)
    [ -n "$sd" ] && nsenter -t "$sd" -m -p -- systemctl is-system-running >/dev/null 2>&1 && break
    sd=""
    sleep 0.1
done
[ -n "$sd" ] || { echo "try-units: systemd did not come up:"; cat "$work/systemd.log"; exit 1; }
sc="nsenter -t $sd -m -p --"
echo "try-units: $($sc systemctl --version | head -1) is PID 1 of its namespaces; trying: ${*:-the units as they are}"

rc=0
if [ "$which" != lb ]; then
    $sc systemctl start wslb-worker.service || rc=1
    SC="$sc" /usr/bin/python3 "$top/deploy/systemd/try_probe.py" worker "127.0.0.1:$wport" || rc=1
    tail -n 20 "$work/worker.log" | sed 's/^/  worker: /'
fi
if [ "$which" != worker ]; then
    $sc systemctl start wslb-worker.service wslb-lb.service || rc=1
    SC="$sc" /usr/bin/python3 "$top/deploy/systemd/try_probe.py" lb "127.0.0.1:$wport" \
        "127.0.0.1:$lport" "127.0.0.1:$aport" "127.0.0.1:$tport" "$work/tls/cert.pem" \
        "$work/lb.log" || rc=1
    tail -n 8 "$work/lb.log" | sed 's/^/  lb: /'
fi
echo "try-units: $([ $rc -eq 0 ] && echo PASS || echo FAIL)"
exit $rc
