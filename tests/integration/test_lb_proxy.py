"""The lb's data path: websocket upgrades and plain HTTP reach a worker, the
lb's own answers (400, 408, 431, 502, 503), retries, TLS, and no leaked
connections afterwards."""

import asyncio
import os
import signal
import socket
import time

import pytest

import util
from lbutil import (client_ssl_ctx, close_at_once_handler, echo_headers_handler,  # noqa: F401
                    fake_backend, lb_factory, make_cert, open_ws, peer_cert_der, run)


def refused_addr():
    """An address where nothing listens (connect is refused)."""
    return "127.0.0.1:%d" % util.free_port()


def test_upgrade_reaches_worker_and_runs_code(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr)

    async def go():
        ws, wid = await open_ws(lb.url("/eval"))
        try:
            assert wid == "w1"
            r = await util.arun(ws, "python3", "print(6*7)")
            assert r.verdict == "ok" and r.stdout == "42\n", r
            # The tunnel carries large messages both ways intact.
            ws2, _ = await open_ws(lb.url("/echo"))
            big = os.urandom(300 * 1024)
            await ws2.send(big)
            assert await asyncio.wait_for(ws2.recv(), 20) == big
            await ws2.close()
        finally:
            await ws.close()
    run(go())
    st = lb.wait_active(0)
    st = lb.stats()
    assert st["handshakes"] >= 2 and st["accepted"] >= 2
    assert lb.backend("w1")["total"] >= 2
    log = lb.stderr_text()
    assert "backend=w1" in log and 'req="GET /eval"' in log and "status=101" in log


def test_plain_http_and_forwarded_headers(worker_factory, fake_backend, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, proxy_http="/")
    status, _, body = util.http_get(lb.addr, "/healthz")
    assert status == 200 and body.strip() == b"ok"
    status, _, _ = util.http_get(lb.addr, "/nope")
    assert status == 404

    fb = fake_backend(echo_headers_handler)
    lb2 = lb_factory(backend="h1=" + fb.addr, proxy_http="/")
    status, _, body = util.http_get(lb2.addr, "/x?q=1", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Request-Id": "spoofed", "X-Custom": "keep me"})
    assert status == 200
    import json
    got = json.loads(body)
    h = got["headers"]
    assert got["request_line"] == "GET /x?q=1 HTTP/1.1"
    # Replaced, not appended to: the client is not a trusted proxy.
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert len(h["x-request-id"]) == 1 and h["x-request-id"][0] != "spoofed"
    assert h["x-custom"] == ["keep me"]
    # Request ids are unique per request.
    _, _, body2 = util.http_get(lb2.addr, "/")
    assert json.loads(body2)["headers"]["x-request-id"] != h["x-request-id"]
    lb.wait_active(0)
    lb2.wait_active(0)


UPGRADE_EVAL = (b"GET /eval HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_503_without_backend(lb_factory):
    lb = lb_factory()
    status, hdrs, body = util.raw_http(lb.addr, UPGRADE_EVAL)
    assert status == 503
    assert hdrs["content-type"].startswith("application/json")
    assert b'"error"' in body and b"no backend" in body
    st = lb.stats()
    assert st["errors"]["no_backend"] == 1
    lb.wait_active(0)


def test_502_when_every_backend_refuses(lb_factory):
    lb = lb_factory(backend=["a=" + refused_addr(), "b=" + refused_addr()], retries=3,
                    health_interval_ms=60000)
    status, hdrs, body = util.raw_http(lb.addr, UPGRADE_EVAL)
    assert status == 502 and b'"error"' in body
    st = lb.stats()
    assert st["errors"]["all_failed"] == 1 and st["errors"]["connect"] >= 2
    lb.wait_active(0)


def test_dead_backend_is_retried_transparently(worker_factory, fake_backend, lb_factory):
    """A refused connect and a backend that accepts then closes without a byte
    both cost the client nothing: it is answered by the live worker."""
    w = worker_factory(id="live")
    dead = fake_backend(close_at_once_handler)
    lb = lb_factory(backend=["live=" + w.addr, "dead=" + dead.addr, "gone=" + refused_addr()],
                    algo="roundrobin", health_interval_ms=60000, fall=100)

    async def go():
        for _ in range(9):
            ws, wid = await open_ws(lb.url("/eval"))
            assert wid == "live"
            await ws.close()
    run(go())
    assert dead.conns >= 1, "the accepting-but-dead backend was never tried"
    st = lb.stats()
    assert st["handshakes"] == 9 and st["errors"]["all_failed"] == 0
    lb.wait_active(0)


def test_bad_requests_get_answers_and_leave_nothing_behind(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, timeout_head_ms=500, proxy_http="/healthz")

    status, _, _ = util.raw_http(lb.addr, b"BLAH BLAH\r\n\r\n")
    assert status == 400
    status, _, _ = util.raw_http(lb.addr, b"GET / HTTP/1.1\r\nBad Header Name\r\n\r\n")
    assert status == 400
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    status, _, _ = util.raw_http(lb.addr, big)
    assert status == 431
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(100)) + b"\r\n"
    status, _, _ = util.raw_http(lb.addr, many)
    assert status == 431
    # At the limit: the lb, not the worker, refuses a head that its own
    # forwarding headers would push past what the worker parses; just below
    # it the request goes through.
    def n_headers(n):
        return (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(n))
                + b"\r\n")
    # A plain request gets seven lines from the lb (X-Forwarded-For/-Proto,
    # X-Real-IP, Forwarded, X-Request-Id, X-Lb-Id, Connection): 57 of the
    # client's fit in the worker's 64.
    status, _, body = util.raw_http(lb.addr, n_headers(58))
    assert status == 431 and b"error" in body, body
    status, _, _ = util.raw_http(lb.addr, n_headers(57))
    assert status == 200

    # A slow head gets 408 after --timeout-head-ms.
    t0 = time.monotonic()
    with socket.create_connection(util.split_addr(lb.addr), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert 0.3 < time.monotonic() - t0 < 4

    # Clients that vanish: before sending anything, mid-head, and right
    # after a complete upgrade request.
    for payload in (b"", b"GET /eval HTTP/1.1\r\nHo",
                    b"GET /eval HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"):
        s = socket.create_connection(util.split_addr(lb.addr), timeout=5)
        if payload:
            s.sendall(payload)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST

    lb.wait_active(0)
    st = lb.stats()
    assert st["errors"]["bad_request"] == 2
    assert st["errors"]["head_too_large"] == 3
    assert st["errors"]["head_timeout"] == 1
    # Still serving.
    status, _, body = util.http_get(lb.addr, "/healthz")
    assert status == 200
    lb.wait_active(0)
    log = lb.stderr_text()
    for reason in ("bad_request", "head_too_large", "head_timeout"):
        assert "reason=%s" % reason in log


def test_max_conns_sheds_with_503(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, max_conns=2, proxy_http="/healthz")

    async def go():
        a, _ = await open_ws(lb.url())
        b, _ = await open_ws(lb.url())
        status, _, body = await asyncio.get_running_loop().run_in_executor(
            None, util.http_get, lb.addr, "/healthz")
        assert status == 503 and b"overload" in body
        await a.close()
        await b.close()
    run(go())
    lb.wait_active(0)
    assert lb.stats()["errors"]["overload"] == 1
    assert util.http_get(lb.addr, "/healthz")[0] == 200


def test_wss_through_tls_listener_and_reload(worker_factory, lb_factory, tmp_path):
    w = worker_factory(id="w1")
    d = str(tmp_path)  # removed with the test: it holds the private key
    cert, key = make_cert(d)
    tls_addr = "127.0.0.1:%d" % util.free_port()
    lb = lb_factory(backend="w1=" + w.addr, tls_listen=tls_addr, cert=cert, key=key)
    ctx = client_ssl_ctx(cert)

    async def go(ctx):
        ws, wid = await open_ws("wss://%s/eval" % tls_addr, ssl_ctx=ctx)
        assert wid == "w1"
        r = await util.arun(ws, "python3", "print('tls')")
        assert r.stdout == "tls\n"
        return ws
    ws_holder = {}

    async def keep_open():
        ws_holder["ws"] = await go(ctx)
        # Reload with a new certificate while this tunnel stays open.
        before = peer_cert_der(tls_addr)
        os.rename(cert, cert + ".old")
        os.rename(key, key + ".old")
        make_cert(d, cn="reloaded")
        lb.stop(signal.SIGHUP)
        util.wait_for(lambda: peer_cert_der(tls_addr) != before, 10, "new certificate served")
        # The old tunnel still works.
        r = await util.arun(ws_holder["ws"], "python3", "print(1)", run_id="r2")
        assert r.stdout == "1\n"
        await ws_holder["ws"].close()
        ws2 = await go(client_ssl_ctx(cert))
        await ws2.close()
    run(keep_open())
    # X-Forwarded-Proto is https on the TLS listener.
    lb.wait_active(0)
    assert "reloaded" in lb.stderr_text()
    assert lb.stats()["handshakes"] >= 2


def test_sigterm_lets_tunnels_finish(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, grace_s=10)

    async def go():
        ws, _ = await open_ws(lb.url())
        lb.stop(signal.SIGTERM)
        # The listener goes away, the open tunnel keeps working.
        util.wait_for(lambda: util.try_http_get(lb.addr, "/healthz", timeout=0.5) is None, 5,
                      "listener closed")
        r = await util.arun(ws, "python3", "print(5)")
        assert r.stdout == "5\n"
        assert lb.alive()
        await ws.close()
    run(go())
    assert lb.wait(10) == 0


def echo_until_eof_handler(c):
    """Answers 200 at once, then echoes the request body until the client
    half-closes, then closes: checks half-close travels both ways."""
    from lbutil import read_head
    head = read_head(c)
    rest = head.partition(b"\r\n\r\n")[2]
    c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + rest)
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)


def test_half_close_and_large_transfer(fake_backend, lb_factory):
    fb = fake_backend(echo_until_eof_handler)
    lb = lb_factory(backend="e=" + fb.addr, proxy_http="/x")
    payload = bytes(range(256)) * 8192  # 2 MiB, more than any lb buffer
    with socket.create_connection(util.split_addr(lb.addr), timeout=10) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload))
        got = b""
        # Write in pieces while reading, so neither direction blocks the test.
        s.setblocking(False)
        sent = 0
        shut = False
        deadline = time.monotonic() + 30
        import select
        while time.monotonic() < deadline:
            want_w = [s] if not shut else []
            r, w, _ = select.select([s], want_w, [], 1.0)
            if w:
                if sent < len(payload):
                    try:
                        sent += s.send(payload[sent:sent + 65536])
                    except BlockingIOError:
                        pass
                else:
                    s.shutdown(socket.SHUT_WR)
                    shut = True
            if r:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    assert body == payload, "echoed %d of %d bytes" % (len(body), len(payload))
    lb.wait_active(0)
    st = lb.stats()
    assert st["bytes_in"] >= len(payload) and st["bytes_out"] >= len(payload)


def test_several_threads_serve(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, threads=3, args=["--access-log=false"])

    async def go():
        conns = await asyncio.gather(*(open_ws(lb.url("/echo")) for _ in range(40)))
        for ws, wid in conns:
            assert wid == "w1"
        await asyncio.gather(*(ws.send("x%d" % i) for i, (ws, _) in enumerate(conns)))
        got = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 10) for ws, _ in conns))
        assert got == ["x%d" % i for i in range(40)]
        await asyncio.gather(*(ws.close() for ws, _ in conns))
    run(go())
    lb.wait_active(0)
    assert lb.stats()["handshakes"] == 40
    assert "access client=" not in lb.stderr_text()


def test_tls_forwarded_proto_alpn_and_stalled_handshake(fake_backend, lb_factory, tmp_path):
    import json
    import ssl
    fb = fake_backend(echo_headers_handler)
    d = str(tmp_path)  # removed with the test: it holds the private key
    cert, key = make_cert(d)
    tls_addr = "127.0.0.1:%d" % util.free_port()
    lb = lb_factory(backend="h=" + fb.addr, tls_listen=tls_addr, cert=cert, key=key,
                    timeout_head_ms=500, proxy_http="/p")
    ctx = client_ssl_ctx(cert)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(util.split_addr(tls_addr), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "http/1.1"
            s.sendall(b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["headers"]["x-forwarded-proto"] == ["https"]

    # A client that opens TCP and never starts TLS is cut at the head timeout.
    t0 = time.monotonic()
    with socket.create_connection(util.split_addr(tls_addr), timeout=5) as s:
        assert s.recv(100) == b""
    assert time.monotonic() - t0 < 4
    # Garbage instead of a ClientHello is a TLS error, not a crash.
    with socket.create_connection(util.split_addr(tls_addr), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        try:
            s.recv(100)
        except ConnectionResetError:
            pass
    lb.wait_active(0)
    st = lb.stats()
    assert st["errors"]["head_timeout"] == 1 and st["errors"]["tls"] >= 1


def test_idle_timeout_and_grace_period_end_tunnels(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    # The grace (1 s) ends well before the idle timeout (2 s) would, so that
    # the shutdown close below cannot be an idle close that won the race.
    lb = lb_factory(backend="w1=" + w.addr, timeout_idle_s=2, grace_s=1)

    async def go():
        idle, _ = await open_ws(lb.url("/echo"))
        t0 = time.monotonic()
        code = await util.expect_closed(idle, timeout=10)
        took = time.monotonic() - t0
        assert 1.8 < took < 6, took
        assert code == 1001  # the lb's own close frame, not a bare TCP close
        # A busy tunnel outlives the idle timeout...
        busy, _ = await open_ws(lb.url("/echo"))
        for i in range(10):
            await busy.send("x")
            assert await asyncio.wait_for(busy.recv(), 5) == "x"
            await asyncio.sleep(0.3)  # traffic every 0.3 s for longer than the 2 s idle timeout
        # ...but not the end of the grace period after SIGTERM.
        lb.stop(signal.SIGTERM)
        t0 = time.monotonic()
        await busy.send("y")
        assert await asyncio.wait_for(busy.recv(), 5) == "y"
        code = await util.expect_closed(busy, timeout=10)
        assert time.monotonic() - t0 < 5
        assert code == 1001  # going away, sent by the lb between two frames
    run(go())
    assert lb.wait(10) == 0
    log = lb.stderr_text()
    assert "reason=idle_timeout" in log and "reason=shutdown" in log


def test_max_conns_silent_connections_make_way(worker_factory, lb_factory):
    """At --max-conns, a connection that has sent no request for a second
    makes way for a newcomer instead of the newcomer getting 503: silent
    connections cannot lock real clients out."""
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, max_conns=3)
    silent = [socket.create_connection(util.split_addr(lb.addr), timeout=5) for _ in range(3)]
    try:
        lb.wait_active(3)
        time.sleep(1.1)  # the lb lets a silent connection make way only after 1 s

        async def go():
            held = []
            for _ in range(3):  # each one needs a silent one's place
                ws, wid = await open_ws(lb.url("/echo"))
                assert wid == "w1"
                held.append(ws)
            for ws in held:
                await ws.close()
        run(go())
        # The three silent ones were closed, oldest first, one per newcomer.
        for s in silent:
            s.settimeout(5)
            assert s.recv(10) == b""
    finally:
        for s in silent:
            s.close()
    lb.wait_active(0)
    st = lb.stats()
    assert st["errors"]["evicted"] == 3 and st["errors"]["overload"] == 0, st
    assert "reason=evicted" in lb.stderr_text()
