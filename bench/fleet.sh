#!/usr/bin/env bash
# Fleet scale by simulation (make bench-fleet; bench/README.md, "Fleet
# scale"): simulated workers publishing the real state at the real rate into
# a private Redis, real lbs discovering them, and the lb's own table picking
# for simulated connections, at 100, 1,000, 2,000 (the fleet the README
# extrapolates to) and 5,000 workers with 1, 5 and 20 lbs. Writes
# bench/results/<date>-fleet/ (report.md, summary.json, points.tsv,
# picks.tsv, fleet.svg; raw/ is not committed).
# Environment: BIN_DIR (default ./bin), FLEET_WORKERS, FLEET_LBS (comma
# lists), FLEET_WINDOW (seconds measured per point, default 4).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN_DIR:-$ROOT/bin}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
COMMIT=$(bench_commit "$ROOT")
OUT=$ROOT/bench/results/$(date -u +%Y-%m-%d-%H%M)-fleet
mkdir -p "$OUT"
# A simulated worker holds a Redis connection: 5,000 of them need the
# machine's hard limit of open files, as do Redis and the lbs.
ulimit -n "$(ulimit -Hn)"
/usr/bin/python3 "$ROOT/bench/scenarios/fleet.py" --bin "$BIN" --out "$OUT" --commit "$COMMIT" \
    --workers "${FLEET_WORKERS:-100,1000,2000,5000}" --lbs "${FLEET_LBS:-1,5,20}" \
    --window "${FLEET_WINDOW:-4}"
if command -v gnuplot >/dev/null; then
    gnuplot -e "dir='$OUT'; out='$OUT/fleet.svg'" "$ROOT/bench/plot/fleet.gp"
fi
echo "fleet: report in $OUT/report.md"
