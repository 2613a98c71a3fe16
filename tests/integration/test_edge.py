"""The lb's public edge: per-client-address limits (429 + Retry-After),
X-Forwarded-* replaced unless the peer is a trusted proxy, the upstream
secret between lb and workers, and the admin API's token rules."""

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import websockets

import util
from conftest import SANITIZER_MARKS, binary, sanitizer_env
from lbutil import echo_headers_handler, fake_backend, lb_factory, open_ws, run  # noqa: F401


def upgrade_request(path="/echo", extra=""):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n" % (path, key, extra)
            ).encode()


def status_of_raw(addr, request, timeout=5.0):
    """Sends request on a fresh connection; returns (status, headers, body, sock)
    with the socket still open (the caller closes it)."""
    s = socket.create_connection(util.split_addr(addr), timeout=timeout)
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), "no response: %r" % data[:200]
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    m = hdrs.get("content-length")
    while m is not None and len(body) < int(m):
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), hdrs, body, s


def write_secret(tmpdir, name, value):
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write(value + "\n")
    return path


# ---- per-address limits -----------------------------------------------------------------

def test_limit_conns_answers_429_and_frees_on_close(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, limit_conns=2)

    async def go():
        a, _ = await open_ws(lb.url("/echo"))
        b, _ = await open_ws(lb.url("/echo"))
        # The third concurrent connection from 127.0.0.1 is refused.
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            await util.ws_connect(lb.url("/echo"))
        assert ei.value.status_code == 429
        await a.close()
        # The slot is free once the lb has seen the close.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                c, _ = await open_ws(lb.url("/echo"))
                break
            except websockets.InvalidStatusCode as e:
                assert e.status_code == 429
                assert asyncio.get_running_loop().time() < deadline, "slot never freed"
                await asyncio.sleep(0.05)
        await c.send("still works")
        assert await asyncio.wait_for(c.recv(), 10) == "still works"
        await b.close()
        await c.close()
    run(go())

    # The refusal itself: status, Retry-After, a JSON body, then a close.
    async def hold():
        x, _ = await open_ws(lb.url("/echo"))
        y, _ = await open_ws(lb.url("/echo"))
        st, h, body, s = await asyncio.get_running_loop().run_in_executor(
            None, status_of_raw, lb.addr, upgrade_request())
        try:
            assert st == 429, (st, h, body)
            assert int(h["retry-after"]) >= 1
            assert json.loads(body)["error"] == "too many connections from this address"
            s.settimeout(5)
            assert s.recv(100) == b""  # closed by the lb, not left hanging
        finally:
            s.close()
        await x.close()
        await y.close()
    run(hold())
    lb.wait_active(0)
    st = lb.stats()
    assert st["errors"]["rate_limited"] >= 2
    assert st["handshakes"] == 5


def test_limit_rate_token_bucket(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, limit_rate=2, limit_burst=3, proxy_http="/healthz")
    got = []
    for _ in range(6):
        st, h, body, s = status_of_raw(lb.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
        got.append((st, h.get("retry-after"), body))
    # A burst of 3 passes, then the bucket is empty (2 per second). The
    # readiness probe took one token, which may have come back meanwhile.
    codes = [g[0] for g in got]
    passed = codes.index(429)
    assert passed in (2, 3) and codes == [200] * passed + [429] * (6 - passed), got
    for st, ra, body in got[passed:]:
        assert ra == "1", got
        assert json.loads(body)["error"] == "too many requests from this address"
    # Tokens come back at 2/s: within a second a request passes again.
    def passes():
        st, _, _, s = status_of_raw(lb.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
        return st == 200
    util.wait_for(passes, 3.0, "a token to come back", interval=0.2)
    lb.wait_active(0)
    assert lb.stats()["errors"]["rate_limited"] >= 2


def test_limits_off_by_default(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, proxy_http="/healthz")

    async def go():
        socks = await asyncio.gather(*[open_ws(lb.url("/echo")) for _ in range(30)])
        for ws, _ in socks:
            await ws.close()
    run(go())
    for _ in range(20):
        assert util.http_get(lb.addr, "/healthz")[0] == 200
    lb.wait_active(0)
    assert lb.stats()["errors"]["rate_limited"] == 0


def test_trusted_proxy_exempt_from_limits(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, limit_conns=1, limit_rate=1,
                    trusted_proxies="127.0.0.0/8")

    async def go():
        socks = await asyncio.gather(*[open_ws(lb.url("/echo")) for _ in range(5)])
        for ws, _ in socks:
            await ws.close()
    run(go())
    lb.wait_active(0)
    assert lb.stats()["errors"]["rate_limited"] == 0


# ---- forwarded headers -----------------------------------------------------------------

def forwarded(lb, headers):
    status, _, body = util.http_get(lb.addr, "/x", headers=headers)
    assert status == 200
    return json.loads(body)["headers"]


def test_forwarded_headers_replaced_unless_trusted(fake_backend, lb_factory):
    fb = fake_backend(echo_headers_handler)
    spoof = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
             "X-Request-Id": "spoofed", "X-Real-IP": "203.0.113.9",
             "Forwarded": "for=203.0.113.9;proto=https", "X_Forwarded_For": "203.0.113.9",
             "True-Client-IP": "203.0.113.9", "X-Forwarded-Host": "evil.example"}
    # Not trusted (the default; also a list that does not hold the peer).
    for flags in ({}, {"trusted_proxies": ["10.0.0.0/8", "::1/128"]}):
        lb = lb_factory(backend="h1=" + fb.addr, proxy_http="/", **flags)
        h = forwarded(lb, spoof)
        assert h["x-forwarded-for"] == ["127.0.0.1"], (flags, h)
        assert h["x-forwarded-proto"] == ["http"], (flags, h)
        assert h["x-request-id"] != ["spoofed"] and len(h["x-request-id"]) == 1
        assert h["x-real-ip"] == ["127.0.0.1"], (flags, h)
        assert h["forwarded"] == ["for=127.0.0.1;proto=http"], (flags, h)
        for name in ("x_forwarded_for", "true-client-ip", "x-forwarded-host"):
            assert name not in h, (name, h)
    # Trusted: X-Forwarded-For extended, the proxy's scheme kept, the id ours.
    lb = lb_factory(backend="h1=" + fb.addr, proxy_http="/",
                    trusted_proxies=["192.0.2.0/24", "127.0.0.1"])
    h = forwarded(lb, spoof)
    assert h["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"], h
    assert h["x-forwarded-proto"] == ["https"], h
    assert h["x-request-id"] != ["spoofed"] and len(h["x-request-id"]) == 1
    # Kept and extended like X-Forwarded-For (RFC 7239 for Forwarded).
    assert h["x-real-ip"] == ["203.0.113.9"], h
    assert h["forwarded"] == ["for=203.0.113.9;proto=https, for=127.0.0.1;proto=http"], h
    assert h["true-client-ip"] == ["203.0.113.9"] and h["x-forwarded-host"] == ["evil.example"]
    assert "x_forwarded_for" not in h, h
    h = forwarded(lb, {})
    assert h["x-forwarded-for"] == ["127.0.0.1"] and h["x-forwarded-proto"] == ["http"], h
    assert h["x-real-ip"] == ["127.0.0.1"] and h["forwarded"] == ["for=127.0.0.1;proto=http"], h


def test_bad_trusted_proxies_refused(lb_factory):
    for bad in ("10.0.0.0/33", "example.com", "1.2.3.4/x"):
        lb = lb_factory(trusted_proxies=bad, ready=False)
        assert lb.wait(10) == 2
        assert "--trusted-proxies" in lb.stderr_text()


# ---- upstream secret --------------------------------------------------------------------

def test_upstream_secret_between_lb_and_worker(worker_factory, fake_backend, lb_factory,
                                              tmp_path):
    tmp = str(tmp_path)  # removed with the test: it holds secrets
    secret = write_secret(tmp, "upstream", "lb-to-worker-" + os.urandom(8).hex())
    w = worker_factory(id="w1", upstream_secret_file=secret)
    # Straight to the worker without it, or with a wrong one: 403.
    st, _, _, s = status_of_raw(w.addr, upgrade_request("/eval"))
    s.close()
    assert st == 403
    st, _, _, s = status_of_raw(w.addr, upgrade_request("/eval", "X-Upstream-Secret: nope\r\n"))
    s.close()
    assert st == 403

    # Through an lb without the secret: the worker refuses (the lb passes
    # the 403 on); a client's own guess is stripped on the way.
    lb0 = lb_factory(backend="w1=" + w.addr)
    st, _, _, s = status_of_raw(lb0.addr, upgrade_request("/eval", "X-Upstream-Secret: nope\r\n"))
    s.close()
    assert st == 403

    # Through the lb with the secret: accepted, and code runs.
    lb = lb_factory(backend="w1=" + w.addr, upstream_secret_file=secret)

    async def go():
        ws, wid = await open_ws(lb.url("/eval"))
        try:
            assert wid == "w1"
            r = await util.arun(ws, "python3", "print(6*7)")
            assert r.verdict == "ok" and r.stdout == "42\n", r
        finally:
            await ws.close()
    run(go())

    # What a backend sees: exactly the lb's secret, never the client's.
    fb = fake_backend(echo_headers_handler)
    lb2 = lb_factory(backend="h1=" + fb.addr, upstream_secret_file=secret, proxy_http="/")
    h = forwarded(lb2, {"X-Upstream-Secret": "client-guess"})
    with open(secret) as f:
        assert h["x-upstream-secret"] == [f.read().strip()]
    lb.wait_active(0)


def test_upstream_secret_file_errors(lb_factory, tmp_path):
    tmp = str(tmp_path)  # removed with the test: it holds secrets
    empty = write_secret(tmp, "empty", "")
    for path in (empty, os.path.join(tmp, "missing")):
        lb = lb_factory(upstream_secret_file=path, ready=False)
        assert lb.wait(10) == 2
        assert "--upstream-secret-file" in lb.stderr_text()


# ---- admin API ----------------------------------------------------------------------------

def admin_req(addr, method, path, token=None):
    auth = "Authorization: Bearer %s\r\n" % token if token else ""
    req = ("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n%sConnection: close\r\n\r\n"
           % (method, path, auth)).encode()
    return util.raw_http(addr, req)[0]


def test_admin_off_loopback_needs_token():
    exe = binary("lb")
    port = util.free_port()
    # No token: refuses to start, and says why.
    r = subprocess.run([exe, "--listen", "127.0.0.1:%d" % util.free_port(),
                        "--admin", "0.0.0.0:%d" % port], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 2, out
    assert "not a loopback address" in out and "--admin-token-file" in out


def test_admin_token_rules(worker_factory, lb_factory, tmp_path):
    tmp = str(tmp_path)  # removed with the test: it holds secrets
    token = "adm-" + os.urandom(8).hex()
    tf = write_secret(tmp, "token", token)
    w = worker_factory(id="w1")

    # Off loopback with a token: everything needs it, reads included.
    port = util.free_port()
    lb = lb_factory(backend="w1=" + w.addr, admin="0.0.0.0:%d" % port, admin_token_file=tf,
                    ready=False)
    local = "127.0.0.1:%d" % port

    def up():
        assert lb.alive(), lb.stderr_text()
        r = util.try_http_get(local, "/healthz")
        return r is not None
    util.wait_for(up, 15, "admin API to listen")
    assert admin_req(local, "GET", "/stats") == 401
    assert admin_req(local, "GET", "/metrics") == 401
    assert admin_req(local, "GET", "/stats", token) == 200
    assert admin_req(local, "POST", "/backends/w1/drain") == 401
    assert admin_req(local, "POST", "/backends/w1/drain", "wrong") == 401
    assert admin_req(local, "POST", "/backends/w1/drain", token) == 200
    assert admin_req(local, "POST", "/backends/w1/enable", token) == 200

    # On loopback with a token: reads are open, changes are not.
    lb2 = lb_factory(backend="w1=" + w.addr, admin_token_file=tf)
    assert admin_req(lb2.admin, "GET", "/stats") == 200
    assert admin_req(lb2.admin, "POST", "/backends/w1/drain") == 401
    assert admin_req(lb2.admin, "POST", "/backends/w1/drain", token) == 200
    assert lb2.backend("w1")["admin_drain"] in (True, 1)


# ---- routes: what the public port proxies ------------------------------------------------

def test_default_routes_hide_worker_endpoints(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, route=None)  # the lb's own default: /eval
    # The workers' plain endpoints are the lb's 404, with a JSON body.
    for path in ("/metrics", "/healthz", "/eval", "/", "/metrics?x=1"):
        st, h, body = util.http_get(lb.addr, path)
        assert st == 404 and h["content-type"].startswith("application/json"), (path, st, body)
        assert json.loads(body) == {"error": "not found"}
        assert b"worker_" not in body
    # A websocket to anything but a route is 404 too, /echo included.
    st, _, _, s = status_of_raw(lb.addr, upgrade_request("/echo"))
    s.close()
    assert st == 404
    # /eval upgrades are proxied, query string and all.
    async def go():
        ws, wid = await open_ws(lb.url("/eval?tab=3&lang=py"))
        await ws.close()
        assert wid == "w1"
    run(go())
    lb.wait_active(0)
    st = lb.stats()
    assert st["errors"]["not_found"] == 6 and st["handshakes"] == 1, st
    metrics = util.get_metrics(lb.admin)
    assert metrics['wslb_lb_errors_total{kind="not_found"}'] == 6
    assert "reason=not_found" in lb.stderr_text()


def test_route_and_proxy_http_flags(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, route=["/echo"], proxy_http="/healthz")

    async def go():
        ws, _ = await open_ws(lb.url("/echo"))
        await ws.send("x")
        assert await asyncio.wait_for(ws.recv(), 10) == "x"
        await ws.close()
        # /eval is no route once --route names others.
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            await util.ws_connect(lb.url("/eval"))
        assert ei.value.status_code == 404
    run(go())
    st, _, body = util.http_get(lb.addr, "/healthz")
    assert st == 200 and body == b"ok\n"
    for path in ("/metrics", "/healthz/../metrics", "/healthz/%2e%2e/metrics", "/healthzx"):
        assert util.http_get(lb.addr, path)[0] == 404, path
    lb.wait_active(0)


def test_bad_route_flags_refused(lb_factory):
    for flags in ({"route": "eval"}, {"route": "/a/../b"}, {"proxy_http": "/x?y"}):
        lb = lb_factory(ready=False, **flags)
        assert lb.wait(10) == 2
        assert ("--route" in lb.stderr_text()) or ("--proxy-http" in lb.stderr_text())


def read_for(s, seconds):
    """Everything s receives within `seconds` (or until EOF)."""
    s.settimeout(seconds)
    got = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except socket.timeout:
        pass
    return got


class KeepAliveBackend:
    """A backend that serves any number of requests per connection and
    answers an upgrade with `upgrade_status`; records every request head."""

    def __init__(self, upgrade_status=403):
        self.heads = []
        self.upgrade_status = upgrade_status

    def __call__(self, c):
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            self.heads.append(head.decode("latin-1"))
            st = self.upgrade_status if b"upgrade: websocket" in head.lower() else 200
            c.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 3\r\n\r\nhi\n" % st)


def test_one_routed_request_per_connection(fake_backend, lb_factory):
    """Whatever follows a routed request on the same connection never reaches
    a backend: a pipelined second request, a body beyond Content-Length, the
    next request after a refused upgrade, an h2c upgrade."""
    kb = KeepAliveBackend(upgrade_status=403)
    fb = fake_backend(kb)
    lb = lb_factory(backend="k=" + fb.addr, proxy_http="/api")
    second = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(util.split_addr(lb.addr), timeout=5) as s:
        s.sendall(b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  b"Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\nbody" + second)
        got = read_for(s, 1.0)
    # This backend ignores "Connection: close"; the lb still sent it nothing
    # more, so exactly one answer came back.
    assert got.count(b"HTTP/1.1 ") == 1 and got.startswith(b"HTTP/1.1 200"), got
    # A refused upgrade on a route, then a request on the same connection.
    with socket.create_connection(util.split_addr(lb.addr), timeout=5) as s:
        s.sendall(upgrade_request("/eval"))
        st = s.recv(4096)
        assert st.startswith(b"HTTP/1.1 403"), st
        s.sendall(second)
        assert read_for(s, 1.0) == b""
    # A chunked plain body is refused (the lb follows bodies by length only).
    st, _, _, s = status_of_raw(lb.addr, b"POST /api HTTP/1.1\r\nHost: x\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + second)
    s.close()
    assert st == 411
    lb.wait_active(0)
    heads = [h for h in kb.heads if "User-Agent: wslb-hc" not in h]  # not health checks
    lines = [h.split("\r\n")[0] for h in heads]
    assert lines == ["POST /api/x HTTP/1.1", "GET /eval HTTP/1.1"], heads
    plain = heads[0].lower()
    assert "connection: close" in plain and "upgrade" not in plain and "keep-alive" not in plain


# ---- admin API under a pile of silent connections ------------------------------------------

def idle_conns(addr, sources, per_source):
    """Opens per_source silent TCP connections to addr from each source
    address (loopback aliases); returns the sockets (some may already have
    been closed by the peer)."""
    socks = []
    for src in sources:
        for _ in range(per_source):
            s = socket.socket()
            s.bind((src, 0))
            s.settimeout(5)
            try:
                s.connect(util.split_addr(addr))
            except OSError:
                s.close()
                continue
            socks.append(s)
    return socks


def closed_by_peer(s, timeout):
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_admin_survives_silent_connections(worker_factory, lb_factory):
    tmp = tempfile.mkdtemp(prefix="wslb-edge-")
    try:
        token = "adm-" + os.urandom(8).hex()
        tf = write_secret(tmp, "token", token)
        w = worker_factory(id="w1")
        lb = lb_factory(backend="w1=" + w.addr, admin_token_file=tf)
        # Twice the API's 64 connections, 8 from each of 16 addresses, none
        # saying a word.
        sources = ["127.0.0.%d" % i for i in range(2, 18)]
        t0 = time.monotonic()
        socks = idle_conns(lb.admin, sources, 8)
        try:
            # The front's health check and the token holder still get in, at
            # once, and so does an anonymous read from the host.
            for _ in range(5):
                t1 = time.monotonic()
                st, _, body = util.http_get(lb.admin, "/healthz", timeout=2)
                assert st == 200 and body == b"ok\n"
                assert admin_req(lb.admin, "POST", "/backends/w1/drain", token) == 200
                assert admin_req(lb.admin, "POST", "/backends/w1/enable", token) == 200
                assert admin_req(lb.admin, "GET", "/stats") == 200
                assert time.monotonic() - t1 < 1.5
            # One address cannot hold more than its share.
            more = idle_conns(lb.admin, ["127.0.0.99"], 20)
            socks += more
            live = [s for s in more if not closed_by_peer(s, 0.2)]
            assert len(live) <= 8, len(live)
            # Every silent connection is closed within the 2 s deadline.
            for s in socks:
                assert closed_by_peer(s, max(0.1, t0 + 6 - time.monotonic())), \
                    "a silent admin connection outlived the deadline"
        finally:
            for s in socks:
                s.close()
        st = lb.stats()["admin_conns"]
        assert st["evicted"] > 0 and st["timed_out"] > 0, st
        metrics = util.get_metrics(lb.admin)
        assert metrics['wslb_admin_connections_dropped_total{why="evicted"}'] == st["evicted"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the lb's default id ------------------------------------------------------------------

def test_default_id_from_a_long_hostname(fake_backend, tmp_path):
    """Without --id the lb names itself after the host: on a host with a
    63-character name (a Kubernetes pod's) it still starts, with a valid id
    that keeps the name's start and ends in its pid."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a UTS namespace")
    host = "wslb-lb-deployment-7d9f8b6c5d-abcde.wslb-lb.production.svc.cluster"[:63]
    fb = fake_backend(echo_headers_handler)
    addr = "127.0.0.1:%d" % util.free_port()
    admin = "127.0.0.1:%d" % util.free_port()
    log = open(tmp_path / "lb.stderr", "w+b")
    proc = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host, binary("lb"),
         "--listen", addr, "--admin", admin, "--backend", "h1=" + fb.addr, "--proxy-http", "/",
         "--grace-s", "1"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=sanitizer_env())
    try:
        def up():
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError("lb exited %s: %s" % (proc.returncode, log.read()[-2000:]))
            return util.try_http_get(admin, "/healthz") is not None
        util.wait_for(up, 15, "the lb to start")
        st, _, body = util.http_get(addr, "/x")
        assert st == 200
        lb_id = json.loads(body)["headers"]["x-lb-id"][0]
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,63}", lb_id), lb_id
        assert lb_id.startswith(host[:40]) and lb_id.endswith("-%d" % proc.pid), lb_id
    finally:
        proc.terminate()
        rc = proc.wait(15)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
        log.close()
    assert rc == 0, text
    assert not [m for m in SANITIZER_MARKS if m in text], text
    assert "(id %s)" % lb_id in text


# ---- one lb per port -------------------------------------------------------------------

def test_lb_refuses_a_port_another_lb_holds(worker_factory, lb_factory):
    """SO_REUSEPORT would let a second lb join the first one's port unnoticed
    and take a share of its clients; it refuses to start instead (exit 2),
    and so it does for a taken admin port."""
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, threads=2)
    lb2 = lb_factory(backend="w1=" + w.addr, listen=lb.addr, ready=False)
    assert lb2.wait(10) == 2
    assert "address in use: %s" % lb.addr in lb2.stderr_text()
    wildcard = "0.0.0.0:%d" % util.split_addr(lb.addr)[1]
    lb3 = lb_factory(backend="w1=" + w.addr, listen=wildcard, ready=False)
    assert lb3.wait(10) == 2
    assert "address in use: %s" % wildcard in lb3.stderr_text()
    lb4 = lb_factory(backend="w1=" + w.addr, admin=lb.admin, ready=False)
    assert lb4.wait(10) == 2
    assert "address in use: %s" % lb.admin in lb4.stderr_text()

    async def go():
        for _ in range(6):
            ws, _ = await open_ws(lb.url("/echo"))
            await ws.close()
    run(go())
    lb.wait_active(0)
    assert lb.stats()["handshakes"] == 6
