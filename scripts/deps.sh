#!/bin/sh
# Checks for (and, as root, installs) the Debian packages a make target needs.
#
# Usage: deps.sh check|install GROUP...
#   check:   silent when everything is there; otherwise prints the exact
#            apt-get line and fails. Never installs anything: plain `make`
#            uses it.
#   install: installs whatever is missing (as root), or prints the line and
#            fails. `make test`, `make run` and `make deps` use it.
# Groups: build run test fuzz bench deploy browser all
set -u

pkgs_build="build-essential pkg-config libev-dev libssl-dev libhttp-parser-dev libhiredis-dev \
libseccomp-dev libjansson-dev"
# make run: a private Redis; the websocket client the banner suggests.
pkgs_run="redis-server python3 python3-websockets"
# make test: cmocka, pytest and its clients; openssl makes throwaway
# certificates; procps gives pgrep/ps; prometheus gives promtool, which checks
# both daemons' /metrics and deploy/prometheus/.
pkgs_test="libcmocka-dev redis-server redis-sentinel python3 python3-websockets python3-redis python3-pytest \
openssl procps prometheus"
pkgs_fuzz="clang libclang-rt-14-dev"
# The fronts compared with the lb, the plots, and bubblewrap: the sandbox the
# worker's evaluations are measured against.
pkgs_bench="haproxy nginx gnuplot-nox bubblewrap"
# The deployment tests: the package (dpkg-deb, dpkg-shlibdeps, lintian), the
# units (systemd-analyze from the systemd package), Ansible (ansible-core,
# ansible-lint) and the cloud-init user-data (python3-yaml).
pkgs_deploy="dpkg-dev lintian systemd ansible-core ansible-lint python3-yaml"
# Headless Chromium for tests/browser: a few hundred MB that a build does not
# need, so only `make deps` (group all) installs them; `make test` skips those
# tests, saying why, where they are missing.
pkgs_browser="chromium chromium-driver python3-selenium"

action=${1:-}
[ $# -gt 0 ] && shift
case "$action" in
check | install) ;;
*)
    echo "usage: deps.sh check|install GROUP..." >&2
    exit 2
    ;;
esac
[ $# -eq 0 ] && set -- build

want=""
for g in "$@"; do
    case "$g" in
    build) want="$want $pkgs_build" ;;
    run) want="$want $pkgs_build $pkgs_run" ;;
    # The unit tests are compiled; the fuzz smoke run is part of CI's tests.
    test) want="$want $pkgs_build $pkgs_test $pkgs_fuzz $pkgs_deploy" ;;
    fuzz) want="$want $pkgs_fuzz" ;;
    bench) want="$want $pkgs_build $pkgs_run $pkgs_bench" ;;
    deploy) want="$want $pkgs_build $pkgs_deploy" ;;
    browser) want="$want $pkgs_browser" ;;
    all) want="$want $pkgs_build $pkgs_run $pkgs_test $pkgs_fuzz $pkgs_bench $pkgs_deploy $pkgs_browser" ;;
    *)
        echo "deps.sh: unknown group '$g'" >&2
        exit 2
        ;;
    esac
done

missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$action" = install ] && [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && $cmd >&2 && exit 0
    echo "deps: apt-get failed" >&2
    exit 1
fi
echo "deps: missing Debian packages:$missing" >&2
echo "deps: install them as root:  apt-get update && $cmd" >&2
exit 1
