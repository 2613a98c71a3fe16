#!/usr/bin/env bash
# The takeover scenario: websocket handshakes and echoes through a front while
# it is replaced twice, the lb by `lb --takeover` (its listening sockets
# passed over its --control-socket) and HAProxy by `haproxy -x SOCK -sf PID`
# (the same, through its stats socket with expose-fd listeners). Counts what
# the clients saw: handshakes, failed handshakes, refused connects, echoes,
# dropped tunnels. Bounded: about 2 × (DUR + 5) seconds.
#
#   bench/run.sh takeover      (or bench/takeover.sh)
#
# Environment: BIN_DIR (default ./bin), DUR (seconds of traffic per front,
# default 12; the takeovers happen at DUR/4 and DUR/2), CONNS (default 8).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN_DIR:-$ROOT/bin}
WSB=$BIN/wsbench
PY=/usr/bin/python3
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
DUR=${DUR:-12}
CONNS=${CONNS:-8}
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT=$ROOT/bench/results/$STAMP-takeover
TMP=$(mktemp -d /tmp/wslb-bench-takeover.XXXXXX)
mkdir -p "$OUT/raw"
HAPROXY=$(command -v haproxy || true)
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r W1 W2 LB_PORT LB_ADMIN HAP_PORT < <(free_ports 5)
for p in "$W1" "$W2"; do
    "$BIN/worker" --listen "127.0.0.1:$p" --id "w$p" --uid-base $((100000 + 1024 * p)) \
        --log-level warn >"$OUT/raw/worker-$p.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$p/healthz" 200 15
done

# Runs handshake and rtt clients for DUR seconds against URL while the
# command TAKEOVER (a shell function) runs at DUR/4 and DUR/2; prints
# "handshakes hs_fail connect_err msgs rtt_errors". Call it with its output
# redirected to a file, not in $(...) or <(...): TAKEOVER appends the new
# front to PIDS, which a subshell would lose, leaving it running at exit.
traffic() { # NAME URL TAKEOVER
    local name=$1 url=$2 take=$3
    "$WSB" handshake -q -c "$CONNS" -d "$DUR" "$url" >"$OUT/raw/$name-handshake.out" 2>&1 &
    local hs=$!
    "$WSB" rtt -q -c "$CONNS" -d "$DUR" "$url" >"$OUT/raw/$name-rtt.out" 2>&1 &
    local rt=$!
    sleep "$(awk -v d="$DUR" 'BEGIN { print d / 4 }')"
    "$take" 1
    sleep "$(awk -v d="$DUR" 'BEGIN { print d / 4 }')"
    "$take" 2
    wait "$hs" || true
    wait "$rt" || true
    $PY - "$OUT/raw/$name-handshake.out" "$OUT/raw/$name-rtt.out" <<'PYEOF'
import re, sys
def res(path):
    m = re.search(r"^RESULT (.*)$", open(path).read(), re.M)
    return dict(kv.split("=", 1) for kv in m.group(1).split()) if m else {}
h, r = res(sys.argv[1]), res(sys.argv[2])
print(h.get("handshakes", "-"), h.get("hs_fail", "-"),
      int(h.get("e_connect", 0)) + int(r.get("e_connect", 0)),
      r.get("msgs", "-"), r.get("errors", "-"))
PYEOF
}

# ---- the lb -------------------------------------------------------------------
LB_ARGS=(--listen "127.0.0.1:$LB_PORT" --admin "127.0.0.1:$LB_ADMIN" --route /echo
    --backend "w1=127.0.0.1:$W1" --backend "w2=127.0.0.1:$W2" --log-level warn
    --access-log=false --grace-s 60 --control-socket "$TMP/lb.sock")
"$BIN/lb" "${LB_ARGS[@]}" >"$OUT/raw/lb-0.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$LB_ADMIN/healthz" 200 15
lb_takeover() {
    "$BIN/lb" "${LB_ARGS[@]}" --takeover "$TMP/lb.sock" >"$OUT/raw/lb-$1.log" 2>&1 &
    PIDS+=($!)
}
traffic lb "ws://127.0.0.1:$LB_PORT/echo" lb_takeover >"$TMP/lb.res"
read -r LB_HS LB_FAIL LB_REF LB_MSGS LB_ERR <"$TMP/lb.res"

# ---- HAProxy ------------------------------------------------------------------
HAP="- - - - -"
if [ -n "$HAPROXY" ]; then
    mkdir -p "$TMP/hap"
    render_haproxy "$ROOT/bench/haproxy.cfg.in" "$TMP/hap/haproxy.cfg" "$TMP/hap" "$HAP_PORT" 1 \
        "w1=127.0.0.1:$W1" "w2=127.0.0.1:$W2"
    # -x needs the listeners exposed on the stats socket.
    sed -i 's|level admin$|level admin expose-fd listeners|' "$TMP/hap/haproxy.cfg"
    "$HAPROXY" -db -f "$TMP/hap/haproxy.cfg" >"$OUT/raw/haproxy-0.log" 2>&1 &
    PIDS+=($!)
    HAP_PID=$!
    wait_http "http://127.0.0.1:$HAP_PORT/healthz" 200 15
    hap_takeover() {
        "$HAPROXY" -db -f "$TMP/hap/haproxy.cfg" -x "$TMP/hap/haproxy.sock" -sf "$HAP_PID" \
            >"$OUT/raw/haproxy-$1.log" 2>&1 &
        PIDS+=($!)
        HAP_PID=$!
    }
    traffic haproxy "ws://127.0.0.1:$HAP_PORT/echo" hap_takeover >"$TMP/hap.res"
    HAP=$(cat "$TMP/hap.res")
fi
read -r H_HS H_FAIL H_REF H_MSGS H_ERR <<<"$HAP"

{
    echo "# Takeover: two replacements of the front under traffic"
    echo
    echo "$CONNS handshake clients and $CONNS echo clients (wsbench handshake/rtt -c $CONNS)"
    echo "for $DUR s; the front is replaced at $((DUR / 4)) s and $((DUR / 2)) s. Commit"
    echo "$(bench_commit "$ROOT"), $(nproc) cores."
    echo
    echo "| front | how | handshakes | failed handshakes | refused connects | echoes | echo errors |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    echo "| lb | \`lb --takeover\` | $LB_HS | $LB_FAIL | $LB_REF | $LB_MSGS | $LB_ERR |"
    echo "| HAProxy $($HAPROXY -v 2>/dev/null | awk 'NR==1 {print $3}') | \`haproxy -x -sf\` | $H_HS | $H_FAIL | $H_REF | $H_MSGS | $H_ERR |"
} >"$OUT/report.md"
cat "$OUT/report.md"
