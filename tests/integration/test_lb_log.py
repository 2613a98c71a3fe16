"""The lb's and the worker's logs: text and JSON formats, an access log that
a hostile request target cannot forge, and close reasons that say who
closed."""

import asyncio
import json
import signal
import socket

import pytest
import websockets

import util
from lbutil import (access_records, echo_headers_handler, fake_backend,  # noqa: F401
                    lb_factory, open_ws, run)
from test_faults import open_tunnel, rst_close

# A request target made to look like more fields, with a tab, a quote, a
# form feed and a byte outside ASCII (http-parser lets all of them through).
HOSTILE_PATH = b'/a"\tstatus=200\tbackend=evil\x0c\xff'


def send_raw(addr, request):
    """Sends request, returns the status line's code (0 if none came)."""
    with socket.create_connection(util.split_addr(addr), timeout=5) as s:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def requests_logged(lb, fmt="text"):
    """Access records of connections that sent a request (not the fixture's
    readiness probes)."""
    return [r for r in access_records(lb.stderr_text(), fmt) if r["req"] not in (b"-", None)]


def wait_access(lb, n, fmt="text"):
    return util.wait_for(lambda: (lambda r: r if len(r) >= n else None)(
        requests_logged(lb, fmt)), 10, "%d access lines with a request" % n)


def test_access_log_text_cannot_be_forged(fake_backend, lb_factory):
    fb = fake_backend(echo_headers_handler)
    lb = lb_factory(backend="h1=" + fb.addr, proxy_http="/")
    status = send_raw(lb.addr, b"GET " + HOSTILE_PATH + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (200, 404), status
    rec = wait_access(lb, 1)[0]
    # The line parses strictly (one space between fields, each key once), and
    # what the client sent is inside req, byte for byte.
    assert rec["req"] == b"GET " + HOSTILE_PATH, rec
    assert rec["status"] == str(status).encode(), rec
    assert rec["backend"] in (b"h1", b"-"), rec
    lb.wait_active(0)


def test_access_log_json(fake_backend, lb_factory):
    fb = fake_backend(echo_headers_handler)
    lb = lb_factory(backend="h1=" + fb.addr, proxy_http="/", log_format="json")
    status = send_raw(lb.addr, b"GET " + HOSTILE_PATH + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (200, 404), status
    ok = util.http_get(lb.addr, "/plain?q=1")[0]
    recs = wait_access(lb, 2, "json")
    # Every line the lb wrote is one JSON object with the common keys.
    for line in lb.stderr_text().splitlines():
        obj = json.loads(line)
        assert {"ts", "level", "daemon", "event"} <= set(obj), obj
        assert obj["daemon"] == "lb"
    hostile, plain = recs
    assert hostile["req"].encode("latin-1") == b"GET " + HOSTILE_PATH, hostile
    assert hostile["status"] == status
    assert plain["req"] == "GET /plain" and plain["status"] == ok
    for r in recs:
        assert set(r) >= {"client", "backend", "req", "status", "ms", "in", "out", "reason",
                          "id", "tls"}, r
        assert r["client"].startswith("127.0.0.1:") and r["tls"] is False
        assert isinstance(r["ms"], float) and r["in"] > 0 and r["out"] > 0
    assert plain["backend"] == "h1" and len(plain["id"]) == 16
    lb.wait_active(0)


def test_unknown_log_format_refused(lb_factory):
    lb = lb_factory(log_format="xml", ready=False)
    assert lb.wait(10) == 2
    assert "--log-format" in lb.stderr_text()


def test_worker_json_log(worker_factory):
    w = worker_factory(log_format="json")
    r = util.run_eval(w.url(), "python3", "print(1)")
    assert r.exit and r.exit["verdict"] == "ok", r
    w.stop()
    assert w.wait(15) == 0
    lines = w.stderr_text().splitlines()
    assert lines, "the worker logged nothing"
    for line in lines:
        obj = json.loads(line)
        assert obj["daemon"] == "worker" and obj["level"] in ("debug", "info", "warn", "error")
        assert obj["event"] == "message" and isinstance(obj["msg"], str), obj


# ---- close reasons -------------------------------------------------------------------------

def reason_for(lb, port):
    """The access-log reason of the connection from local port `port`."""
    def find():
        for r in access_records(lb.stderr_text()):
            if r["client"] == b"127.0.0.1:%d" % port:
                return r["reason"].decode()
        return None
    return util.wait_for(find, 10, "the access line of port %d" % port)


def test_close_reasons_say_who_closed(worker_factory, lb_factory):
    w1 = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w1.addr)

    async def client_closes():
        ws, _ = await open_ws(lb.url("/echo"))
        port = ws.local_address[1]
        await ws.send("x")
        assert await asyncio.wait_for(ws.recv(), 10) == "x"
        await ws.close()  # close frame, the worker answers and hangs up
        return port
    port = run(client_closes())
    assert reason_for(lb, port) == "client_close"

    # A client that hangs up without a close frame, and one that resets.
    s, _ = open_tunnel(lb.addr)
    port = s.getsockname()[1]
    s.close()
    assert reason_for(lb, port) == "client_eof"
    s, _ = open_tunnel(lb.addr)
    port = s.getsockname()[1]
    rst_close(s)
    assert reason_for(lb, port) == "client_reset"

    # The worker closes (its drain sends 1001): the backend closed.
    w2 = worker_factory(id="w2")
    lb2 = lb_factory(backend="w2=" + w2.addr)

    async def worker_closes():
        ws, _ = await open_ws(lb2.url("/echo"))
        w2.stop(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as ei:
            await asyncio.wait_for(ws.recv(), 20)
        assert ei.value.code == 1001
        return ws.local_address[1]
    port = run(worker_closes())
    assert reason_for(lb2, port) == "backend_close"
    assert w2.wait(20) == 0

    # The worker is killed mid-tunnel: neither side closed the websocket; the
    # client gets the lb's 1014.
    w3 = worker_factory(id="w3")
    lb3 = lb_factory(backend="w3=" + w3.addr, health_interval_ms=60000)

    async def worker_dies():
        ws, _ = await open_ws(lb3.url("/echo"))
        w3.proc.kill()
        with pytest.raises(websockets.ConnectionClosed) as ei:
            await asyncio.wait_for(ws.recv(), 20)
        assert ei.value.code == 1014
        return ws.local_address[1]
    port = run(worker_dies())
    assert reason_for(lb3, port) in ("backend_lost", "backend_reset")
    for x in (lb, lb2, lb3):
        x.wait_active(0)
