"""The lb's public edge: per-client-address limits (429 + Retry-After),
X-Forwarded-* replaced unless the peer is a trusted proxy, the upstream
secret between lb and workers, and the admin API's token rules."""

import asyncio
import base64
import json
import os
import socket
import subprocess
import tempfile

import pytest
import websockets

import util
from conftest import binary
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
    lb = lb_factory(backend="w1=" + w.addr, limit_rate=2, limit_burst=3)
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
    lb = lb_factory(backend="w1=" + w.addr)

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
             "X-Request-Id": "spoofed"}
    # Not trusted (the default; also a list that does not hold the peer).
    for flags in ({}, {"trusted_proxies": ["10.0.0.0/8", "::1/128"]}):
        lb = lb_factory(backend="h1=" + fb.addr, **flags)
        h = forwarded(lb, spoof)
        assert h["x-forwarded-for"] == ["127.0.0.1"], (flags, h)
        assert h["x-forwarded-proto"] == ["http"], (flags, h)
        assert h["x-request-id"] != ["spoofed"] and len(h["x-request-id"]) == 1
    # Trusted: X-Forwarded-For extended, the proxy's scheme kept, the id ours.
    lb = lb_factory(backend="h1=" + fb.addr, trusted_proxies=["192.0.2.0/24", "127.0.0.1"])
    h = forwarded(lb, spoof)
    assert h["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"], h
    assert h["x-forwarded-proto"] == ["https"], h
    assert h["x-request-id"] != ["spoofed"] and len(h["x-request-id"]) == 1
    h = forwarded(lb, {})
    assert h["x-forwarded-for"] == ["127.0.0.1"] and h["x-forwarded-proto"] == ["http"], h


def test_bad_trusted_proxies_refused(lb_factory):
    for bad in ("10.0.0.0/33", "example.com", "1.2.3.4/x"):
        lb = lb_factory(trusted_proxies=bad, ready=False)
        assert lb.wait(10) == 2
        assert "--trusted-proxies" in lb.stderr_text()


# ---- upstream secret --------------------------------------------------------------------

def test_upstream_secret_between_lb_and_worker(worker_factory, fake_backend, lb_factory):
    tmp = tempfile.mkdtemp(prefix="wslb-edge-")
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
    lb2 = lb_factory(backend="h1=" + fb.addr, upstream_secret_file=secret)
    h = forwarded(lb2, {"X-Upstream-Secret": "client-guess"})
    with open(secret) as f:
        assert h["x-upstream-secret"] == [f.read().strip()]
    lb.wait_active(0)


def test_upstream_secret_file_errors(lb_factory):
    tmp = tempfile.mkdtemp(prefix="wslb-edge-")
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


def test_admin_token_rules(worker_factory, lb_factory):
    tmp = tempfile.mkdtemp(prefix="wslb-edge-")
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
