#!/bin/sh
# Checks for (and, as root, installs) the Debian packages the build and tests
# need. Usage: deps.sh check|install
#   check:   silent when everything is there; otherwise installs as root, or
#            prints the exact apt-get line and fails.
#   install: installs whatever is missing (root), or prints the line; this
#            includes the browser tests' packages, which check leaves alone.
PKGS="build-essential pkg-config libev-dev libssl-dev libhttp-parser-dev libhiredis-dev \
libseccomp-dev libjansson-dev libcmocka-dev redis-server redis-sentinel python3 python3-websockets \
python3-redis python3-pytest gcc clang libclang-rt-14-dev"
# Headless Chromium for tests/browser: a few hundred MB that a build does not
# need, so only `make deps` installs them; `make test` skips those tests,
# saying why, where they are missing.
BROWSER_PKGS="chromium chromium-driver python3-selenium"
[ "${1:-check}" = install ] && PKGS="$PKGS $BROWSER_PKGS"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && $cmd >&2 && exit 0
    echo "deps: apt-get failed" >&2
    exit 1
fi
echo "deps: missing Debian packages:$missing" >&2
echo "deps: run as root:  apt-get update && $cmd" >&2
exit 1
