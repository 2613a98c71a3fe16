"""The worker's plain HTTP side: /healthz, /metrics, 404 and bad upgrades."""

import base64
import os

import util

UPGRADE_OK_KEY = base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path="/eval", key=UPGRADE_OK_KEY, version="13", extra=""):
    lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade"]
    if key is not None:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def test_healthz_ok(worker):
    status, hdrs, body = util.http_get(worker.addr, "/healthz")
    assert status == 200
    assert body.strip() == b"ok"
    assert int(hdrs["content-length"]) == len(body)


def test_unknown_path_404(worker):
    for path in ("/", "/nope", "/evalx", "/healthz/x", "/metrics2"):
        status, _, body = util.http_get(worker.addr, path)
        assert status == 404, (path, status, body)


def test_metrics_plausible(worker):
    m0 = util.get_metrics(worker.addr)
    status, hdrs, body = util.http_get(worker.addr, "/metrics")
    assert hdrs["content-type"].startswith("text/plain")
    text = body.decode()
    assert "# TYPE " in text and "# HELP " in text
    # Every sample line parses and every value is a finite number.
    for k, v in m0.items():
        assert v == v and abs(v) != float("inf"), (k, v)

    ev0 = util.metric_sum(m0, "worker_evaluations_total")
    ok0 = util.get_verdict(m0, "ok")
    r = util.run_eval(worker.url(), "python3", "print(6*7)")
    assert r.verdict == "ok", r
    r = util.run_eval(worker.url(), "sh", "exit 4")
    assert r.verdict == "ok" and r.exit["status"] == 4, r

    m1 = util.get_metrics(worker.addr)
    assert util.metric_sum(m1, "worker_evaluations_total") == ev0 + 2
    assert util.get_verdict(m1, "ok") == ok0 + 2
    assert util.metric_sum(m1, "worker_evaluations_running") == 0
    assert util.metric_sum(m1, "worker_evaluations_queued") == 0
    # Two websockets were opened and are closed again.
    assert util.metric_sum(m1, "worker_websockets_total") >= \
        util.metric_sum(m0, "worker_websockets_total") + 2
    util.wait_for(lambda: util.metric_sum(util.get_metrics(worker.addr),
                                          "worker_websockets") == 0,
                  5, "open websockets gauge back to 0")
    # The sandbox start latency histogram saw both runs.
    assert util.metric_sum(m1, "worker_sandbox_start_ms_count") >= 2


def test_metrics_count_open_websocket(worker):
    import asyncio

    async def go():
        ws = await util.ws_connect(worker.url("/echo"))
        try:
            await util.recv_hello(ws)
            m = util.get_metrics(worker.addr)
            assert util.metric_sum(m, "worker_websockets") == 1, m
        finally:
            await ws.close()
    asyncio.run(go())
    util.wait_for(lambda: util.metric_sum(util.get_metrics(worker.addr),
                                          "worker_websockets") == 0,
                  5, "open websockets gauge back to 0 after close")


def test_upgrade_missing_key_400(worker):
    status, _, body = util.raw_http(worker.addr, upgrade_request(key=None))
    assert status == 400
    assert b"key" in body.lower(), body


def test_upgrade_bad_key_400(worker):
    status, _, body = util.raw_http(worker.addr, upgrade_request(key="short"))
    assert status == 400
    assert b"key" in body.lower(), body


def test_upgrade_wrong_version(worker):
    # RFC 6455 4.2.2 allows 426 with the supported version; 400 is fine too.
    status, hdrs, body = util.raw_http(worker.addr, upgrade_request(version="8"))
    assert status in (400, 426), (status, body)
    assert body.strip(), "no reason given"
    if status == 426:
        assert hdrs.get("sec-websocket-version") == "13"


def test_upgrade_not_websocket_400(worker):
    req = (b"GET /eval HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Key: %s\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n" % UPGRADE_OK_KEY.encode())
    status, _, body = util.raw_http(worker.addr, req)
    assert status == 400 and body.strip(), (status, body)


def test_malformed_request_400(worker):
    status, _, body = util.raw_http(worker.addr, b"GARBAGE\x01 / HTTP/9\r\n\r\n")
    assert status == 400, (status, body)
    # And the worker still answers.
    assert util.http_get(worker.addr, "/healthz")[0] == 200


def test_upgrade_ok_raw(worker):
    status, hdrs, _ = util.raw_http(worker.addr, upgrade_request(), timeout=2)
    assert status == 101
    # RFC 6455 1.3: accept = base64(sha1(key + GUID)).
    import hashlib
    want = base64.b64encode(hashlib.sha1(
        (UPGRADE_OK_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    assert hdrs["sec-websocket-accept"] == want


def test_metrics_verdict_counts(worker):
    m0 = util.get_metrics(worker.addr)
    r = util.run_eval(worker.url(), "sh", "sleep 10", timeout_ms=300)
    assert r.verdict == "timeout", r
    r = util.run_eval(worker.url(), "sh", "kill -SEGV $$")
    assert r.verdict == "signaled", r
    m1 = util.get_metrics(worker.addr)
    assert util.get_verdict(m1, "timeout") == util.get_verdict(m0, "timeout") + 1
    assert util.get_verdict(m1, "signaled") == util.get_verdict(m0, "signaled") + 1
    assert util.get_verdict(m1, "ok") == util.get_verdict(m0, "ok")


def test_sandbox_start_histogram_counts_every_start(worker):
    """Every sandbox start is observed in the start-latency histogram, with
    cumulative buckets. (How fast the sandbox starts is a benchmark figure,
    measured by `make bench`, not a timed test.)"""
    m0 = util.get_metrics(worker.addr)
    n0 = m0.get("worker_sandbox_start_ms_count", 0)
    for _ in range(5):
        r = util.run_eval(worker.url(), "sh", "true")
        assert r.verdict == "ok", r
    m = util.get_metrics(worker.addr)
    assert m["worker_sandbox_start_ms_count"] == n0 + 5
    assert m["worker_sandbox_start_ms_sum"] > 0
    buckets = sorted((float(k.split('le="')[1].split('"')[0]), v) for k, v in m.items()
                     if k.startswith("worker_sandbox_start_ms_bucket{") and "+Inf" not in k)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), buckets
    assert m['worker_sandbox_start_ms_bucket{le="+Inf"}'] == n0 + 5
