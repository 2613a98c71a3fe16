# Sourced by install.sh, mkman.sh and deploy/debian/build.sh: the installed
# name of a built program and its one-line description.

# bin/lb -> wslb-lb, bin/worker -> wslb-worker, bin/wsbench -> wslb-bench;
# names that already start with "wslb" (wslbctl) are kept.
wslb_installed_name() {
    case "$1" in
    wslb*) echo "$1" ;;
    wsbench) echo wslb-bench ;;
    *) echo "wslb-$1" ;;
    esac
}

wslb_description() {
    case "$1" in
    wslb-lb) echo "websocket load balancer in front of wslb workers" ;;
    wslb-worker) echo "websocket worker running sandboxed code evaluations" ;;
    wslb-bench) echo "websocket load generator for wslb benchmarks" ;;
    wslbctl) echo "see and steer a wslb fleet: status, drain, enable, rollout" ;;
    *) echo "part of the wslb websocket load balancer" ;;
    esac
}

# The programs built in directory $1: regular executable files.
wslb_programs() {
    for f in "$1"/*; do
        if [ -f "$f" ] && [ -x "$f" ]; then
            basename "$f"
        fi
    done
}
