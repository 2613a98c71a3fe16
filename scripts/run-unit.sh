#!/bin/sh
# Runs each unit-test binary; fails if any fails or leaves anything named
# wslb-* in /tmp, where the tests keep their temp files. Usage:
# run-unit.sh DIR NAME...
#
# Other suites and people use this host and these names at the same time,
# so an entry counts only if it is named the way the unit tests name theirs
# (mkdtemp(3), mkstemp(3): wslb-NAME-XXXXXX), was not there before the test
# and is still there a few seconds later.
dir=$1
shift
failed=0
passed=0
tmp_list() {
    find /tmp -maxdepth 1 -name 'wslb-*' 2>/dev/null | grep -E '^/tmp/wslb-[a-z_]+-[A-Za-z0-9]{6}$' | sort
}
for t in "$@"; do
    before=$(tmp_list)
    ok=1
    if ! "$dir/$t"; then
        echo "FAILED: $dir/$t" >&2
        ok=0
    fi
    left=$(tmp_list | grep -vxF "$before")
    tries=0
    while [ -n "$left" ] && [ $tries -lt 15 ]; do
        sleep 0.2 # another suite's files go within seconds; leftovers stay
        left=$(echo "$left" | grep -xF "$(tmp_list)")
        tries=$((tries + 1))
    done
    if [ -n "$left" ]; then
        echo "FAILED: $dir/$t left temporary files behind:" $left >&2
        ok=0
    fi
    if [ $ok -eq 1 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
echo "unit ($dir): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
