#!/bin/sh
# Runs each unit-test binary; fails if any fails. Usage: run-unit.sh DIR NAME...
dir=$1
shift
failed=0
passed=0
for t in "$@"; do
    if "$dir/$t"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $dir/$t" >&2
        failed=$((failed + 1))
    fi
done
echo "unit ($dir): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
