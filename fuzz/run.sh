#!/bin/sh
# Runs the libFuzzer targets built by `make fuzz` (build/fuzz/fuzz_NAME).
# Usage: fuzz/run.sh smoke|regress NAME...
#   smoke:   fuzzes each target for $FUZZ_SECONDS (default 30) starting from a
#            writable copy of its committed corpus in build/fuzz/corpus-work/,
#            so new inputs never land in the repository; crash inputs go to
#            build/fuzz/artifacts/NAME/.
#   regress: runs each target once over its committed corpus and every input
#            in fuzz/regressions/NAME/ (crashes found and fixed).
# Fails if any target crashes, leaks, times out or runs out of memory.
set -u
mode=${1:-}
shift || true
secs=${FUZZ_SECONDS:-30}
# FUZZ_SEED and FUZZ_RUNS make a smoke run reproducible: the same seed and
# run count from the same committed corpus take the same path here and in CI.
seedopt=""
[ -n "${FUZZ_SEED:-}" ] && seedopt="-seed=$FUZZ_SEED"
[ -n "${FUZZ_RUNS:-}" ] && seedopt="$seedopt -runs=$FUZZ_RUNS"
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/build/fuzz
opts="-rss_limit_mb=2048 -timeout=10"
failed=""

for name in "$@"; do
    exe=$bin/fuzz_$name
    if [ ! -x "$exe" ]; then
        echo "fuzz: $exe not built (run make fuzz)" >&2
        exit 1
    fi
    log=$bin/$name.$mode.log
    case $mode in
    smoke)
        work=$bin/corpus-work/$name
        art=$bin/artifacts/$name
        rm -rf "$work"
        mkdir -p "$work" "$art"
        cp "$root/fuzz/corpus/$name/"* "$work/" 2>/dev/null
        extra=""
        [ -d "$root/fuzz/regressions/$name" ] && extra=$root/fuzz/regressions/$name
        # The first directory receives new inputs; the others are only read.
        # shellcheck disable=SC2086
        "$exe" $opts $seedopt -max_total_time="$secs" -print_final_stats=1 \
            -artifact_prefix="$art/" "$work" $extra >"$log" 2>&1
        rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
        echo "fuzz-smoke $name: rc=$rc ${execs:-?} runs, ${speed:-?} exec/s, $cov, corpus $(ls "$work" | wc -l)"
        ;;
    regress)
        files=$(find "$root/fuzz/corpus/$name" "$root/fuzz/regressions/$name" -type f 2>/dev/null | sort)
        if [ -z "$files" ]; then
            echo "fuzz-regress $name: no inputs" >&2
            failed="$failed $name"
            continue
        fi
        # Given files rather than directories, libFuzzer runs each once.
        # shellcheck disable=SC2086
        "$exe" $opts $files >"$log" 2>&1
        rc=$?
        echo "fuzz-regress $name: rc=$rc, $(echo "$files" | wc -l) inputs"
        ;;
    *)
        echo "usage: fuzz/run.sh smoke|regress NAME..." >&2
        exit 2
        ;;
    esac
    if [ "$rc" -ne 0 ]; then
        echo "fuzz: $name failed; last lines of $log:" >&2
        tail -n 30 "$log" >&2
        failed="$failed $name"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed" >&2
    exit 1
fi
exit 0
