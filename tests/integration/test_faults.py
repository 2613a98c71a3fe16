"""Fault injection against the real lb, workers and Redis: hung workers,
backends that never answer, Redis going away, the lb out of descriptors,
slow and silent clients, half-closes and resets in every phase, and a worker
killed mid-evaluation. After each, nothing is left open and everyone else
was served."""

import asyncio
import base64
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import util
from lbutil import FakeBackend, count_by, lb_factory, open_ws, read_head, run  # noqa: F401


def upgrade_request(path="/echo"):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode()


def masked_frame(payload, opcode=2):
    """One client-to-server websocket frame (FIN set, masked)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    m = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big") if n \
        else b""
    return head + mask + body


def open_tunnel(addr, path="/echo", timeout=10):
    """A raw socket with a completed websocket upgrade; returns (sock, rest)
    where rest is whatever followed the 101 head."""
    s = socket.create_connection(util.split_addr(addr), timeout=timeout)
    s.sendall(upgrade_request(path))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "closed before the 101: %r" % data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, rest


def rst_close(s):
    """Closes with SO_LINGER 0: the peer gets a reset, not a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def outcome(s, timeout=5.0):
    """What a client socket gets within timeout: ('data', bytes), ('eof',),
    ('reset',) or ('hang',)."""
    s.settimeout(timeout)
    try:
        d = s.recv(4096)
        return ("data", d) if d else ("eof",)
    except socket.timeout:
        return ("hang",)
    except ConnectionResetError:
        return ("reset",)


def lb_workers(worker_factory, lb_factory, n=3, **lbflags):
    ws_ = [worker_factory(id="w%d" % i) for i in range(n)]
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_], **lbflags)
    return ws_, lb


async def hello_of(url):
    ws, wid = await open_ws(url)
    await ws.close()
    return wid


def hellos(url, n, timeout=60):
    """Opens n websockets at once; returns the worker id each one landed on."""
    async def go():
        return await asyncio.gather(*[hello_of(url) for _ in range(n)])
    return run(go(), timeout=timeout)


# ---- hung and mute backends -------------------------------------------------------------

def test_sigstopped_worker_marked_down_and_back(worker_factory, lb_factory):
    interval_ms, rise = 300, 3
    ws_, lb = lb_workers(worker_factory, lb_factory, algo="roundrobin",
                         health_interval_ms=interval_ms, fall=2, rise=rise,
                         timeout_response_ms=1500, slowstart_ms=0)
    victim = ws_[1]
    victim.stop(signal.SIGSTOP)
    try:
        # Alive but hung: its socket still accepts, nothing answers. The
        # health check times out and takes it down.
        util.wait_for(lambda: lb.backend("w1")["state"] == "down", 5, "w1 marked down")
        stopped_total = lb.backend("w1")["total"]

        picked = hellos(lb.url("/echo"), 20)
        assert len(picked) == 20 and "w1" not in picked, picked
        assert lb.backend("w1")["total"] == stopped_total
    finally:
        victim.stop(signal.SIGCONT)
    t0 = time.monotonic()
    util.wait_for(lambda: lb.backend("w1")["state"] == "up", 10, "w1 back up")
    # Up again only after `rise` good checks in a row. The first may be the
    # answer to a check sent while the worker was stopped (it arrives at
    # SIGCONT) and the next tick may follow at once, so only the ticks after
    # that one are sure to be an interval apart.
    assert time.monotonic() - t0 >= (rise - 2) * interval_ms / 1000.0 * 0.8
    picked = hellos(lb.url("/echo"), 9)
    assert "w1" in picked, picked
    lb.wait_active(0)


def test_backend_that_never_answers_is_timed_out_and_retried(worker_factory, lb_factory):
    def mute(c):
        read_head(c)
        c.settimeout(30)
        while c.recv(4096):  # hold the connection, say nothing, until the lb gives up
            pass
    fb = FakeBackend(mute)
    try:
        w = worker_factory(id="real")
        lb = lb_factory(backend=["mute=" + fb.addr, "real=" + w.addr], algo="roundrobin",
                        timeout_response_ms=400, retries=2, slowstart_ms=0,
                        health_path="/healthz", health_interval_ms=60000)
        t0 = time.monotonic()
        picked = hellos(lb.url("/echo"), 6)
        assert picked == ["real"] * 6, picked
        assert fb.conns >= 1
        assert time.monotonic() - t0 < 10
        st = lb.stats()
        assert st["errors"]["backend_timeout"] >= 1 and st["errors"]["all_failed"] == 0, st
        assert st["handshakes"] == 6
        lb.wait_active(0)
    finally:
        fb.close()


# ---- Redis away and back ---------------------------------------------------------------

def test_redis_killed_and_restarted(redis_factory, worker_factory, lb_factory):
    srv = redis_factory()
    w1 = worker_factory(id="r1", redis=srv.addr)
    w2 = worker_factory(id="r2", redis=srv.addr)
    lb = lb_factory(redis=srv.addr, slowstart_ms=0)

    def ids():
        return sorted(b["id"] for b in lb.stats()["backends"])
    util.wait_for(lambda: ids() == ["r1", "r2"] and
                  all(b["state"] == "up" for b in lb.stats()["backends"]), 15, "both discovered")

    async def evals(n):
        out = []
        for _ in range(n):
            r = await util.arun_eval(lb.url("/eval"), "python3", "print(6*7)")
            out.append(r.stdout)
        return out
    srv.stop()
    # Redis gone: the last known set stays and evaluations go on.
    assert run(evals(4), timeout=90) == ["42\n"] * 4
    assert ids() == ["r1", "r2"]
    srv.restart()
    rc = util.redis_client(srv.addr)
    util.wait_for(lambda: sorted(rc.smembers("wslb:workers")) == ["r1", "r2"], 20,
                  "workers re-registered")
    # Discovery resumed: a worker that joins now is found; nothing is lost
    # or listed twice.
    worker_factory(id="r3", redis=srv.addr)
    util.wait_for(lambda: ids() == ["r1", "r2", "r3"], 20, "r3 discovered (now %r)" % ids())
    assert run(evals(3), timeout=90) == ["42\n"] * 3
    util.wait_for(lambda: all(b["state"] == "up" for b in lb.stats()["backends"]), 10,
                  "all up")
    assert ids() == ["r1", "r2", "r3"]
    assert w1.alive() and w2.alive()
    lb.wait_active(0)


# ---- the lb out of descriptors -------------------------------------------------------------

def test_lb_at_open_files_limit(worker_factory, lb_factory):
    w = worker_factory(id="w0")
    lb = lb_factory(backend="w0=" + w.addr, health_interval_ms=200, fall=2, rise=1)
    pid = lb.proc.pid
    base = util.proc_fd_count(pid)
    # Room for about 40 proxied connections beyond the lb's spare descriptors
    # (see px_fd_cap): 160 clients are far more than that, and more than
    # its descriptors, so some are turned away at accept (EMFILE).
    limit = base + 40 * 2 + 32 + 4
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (limit, limit)], check=True,
                   timeout=10)
    socks, outcomes = [], []
    try:
        for _ in range(160):
            s = socket.create_connection(util.split_addr(lb.addr), timeout=5)
            s.sendall(upgrade_request("/echo"))
            socks.append(s)
        # Every client hears something: a 101 for those that fit, a 503 or a
        # close for the excess. Nobody is left hanging.
        for s in socks:
            outcomes.append(outcome(s, 5.0))
        kinds = count_by(o[0] if o[0] != "data" else o[1].split(b"\r\n", 1)[0].decode()
                         for o in outcomes)
        print("open-files limit outcomes:", kinds, "base", base, "limit", limit,
              "fds", util.proc_fd_count(pid))
        assert "hang" not in kinds, kinds
        assert kinds.get("HTTP/1.1 101 Switching Protocols", 0) >= 10, kinds
        assert sum(v for k, v in kinds.items() if "101" not in k) >= 10, kinds
        # Held at the limit, the lb idles: no busy loop.
        cpu0 = util.proc_cpu_s(pid)
        t0 = time.monotonic()
        time.sleep(1.5)  # measuring a window, not waiting for an event
        used = util.proc_cpu_s(pid) - cpu0
        assert used < 0.3 * (time.monotonic() - t0), "lb used %.2fs CPU while idle" % used
        assert lb.alive()
    finally:
        for s in socks:
            s.close()
    lb.wait_active(0)
    # Recovered: descriptors are back and everyone is served again, and the
    # worker was never blamed for the lb's shortage.
    util.wait_for(lambda: util.proc_fd_count(pid) <= base + 2, 10, "lb fds back to base")
    assert hellos(lb.url("/echo"), 20) == ["w0"] * 20
    st = lb.stats()
    assert st["errors"]["overload"] >= 1, st
    assert lb.backend("w0")["state"] == "up"
    assert lb.backend("w0")["failures"] == 0, lb.backend("w0")


def test_admin_api_at_open_files_limit(worker_factory, lb_factory):
    """Out of descriptors with admin clients waiting, the admin port pauses
    its accepts (the listener stays readable: accepting again at once would
    spin), and answers again once descriptors are back."""
    w = worker_factory(id="w0")
    lb = lb_factory(backend="w0=" + w.addr, health_interval_ms=60000)
    pid = lb.proc.pid
    base = util.proc_fd_count(pid)
    soft = subprocess.run(["prlimit", "--pid", str(pid), "--nofile", "--output=SOFT",
                           "--noheadings"], check=True, timeout=10, capture_output=True,
                          text=True).stdout.strip()
    # The soft limit only, so that it can be raised back.
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:" % (base + 3)], check=True,
                   timeout=10)
    host, port = util.split_addr(lb.admin)
    socks = []
    try:
        for _ in range(12):
            socks.append(socket.create_connection((host, port), timeout=5))
        util.wait_for(lambda: "admin: accept: Too many open files" in lb.stderr_text(), 10,
                      "the admin port out of descriptors")
        cpu0 = util.proc_cpu_s(pid)
        t0 = time.monotonic()
        time.sleep(1.0)  # measuring a window, not waiting for an event
        used = util.proc_cpu_s(pid) - cpu0
        assert used < 0.3 * (time.monotonic() - t0), "lb used %.2fs CPU while idle" % used
        assert "admin: accept: Too many open files; pausing accepts" in lb.stderr_text()
        assert lb.alive()
    finally:
        for s in socks:
            s.close()
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%s:" % soft], check=True,
                       timeout=10)
    util.wait_for(lambda: util.try_http_get(lb.admin, "/healthz") is not None, 10,
                  "the admin API answering again")
    assert lb.stats()["backends"][0]["id"] == "w0"


# ---- hostile and careless clients ----------------------------------------------------------

def test_slowloris_gets_408_others_served(worker_factory, lb_factory):
    w = worker_factory(id="w0")
    lb = lb_factory(backend="w0=" + w.addr, timeout_head_ms=1500)
    s = socket.create_connection(util.split_addr(lb.addr), timeout=10)
    got = {}

    def drip():
        req = upgrade_request("/echo")
        t0 = time.monotonic()
        try:
            for i in range(len(req)):
                s.send(req[i:i + 1])
                s.settimeout(1.0)  # a byte a second, reading whatever comes back
                try:
                    d = s.recv(4096)
                except socket.timeout:
                    continue
                got["data"] = d
                got["after"] = time.monotonic() - t0
                return
        except OSError as e:
            got["error"] = repr(e)
    t = threading.Thread(target=drip, daemon=True)
    t.start()

    async def others():
        for _ in range(5):
            ws, wid = await open_ws(lb.url("/echo"))
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 10) == "hi"
            await ws.close()
    run(others(), timeout=30)
    t.join(10)
    assert not t.is_alive()
    s.close()
    assert got.get("data", b"").startswith(b"HTTP/1.1 408"), got
    assert got["after"] < 5, got
    assert lb.stats()["errors"]["head_timeout"] >= 1
    lb.wait_active(0)


def test_client_that_never_reads_keeps_lb_memory_bounded(worker_factory, lb_factory):
    w = worker_factory(id="w0", max_message_kb=2048)
    lb = lb_factory(backend="w0=" + w.addr)
    pid = lb.proc.pid
    s, _ = open_tunnel(lb.addr, "/echo")
    rss0 = util.proc_rss_kb(pid)
    frame = masked_frame(os.urandom(1024 * 1024))
    s.setblocking(False)
    sent, stalled_since = 0, None
    deadline = time.monotonic() + 8
    # Send echo requests and never read the echoes, until everything is
    # stuck (the client's own buffers full) or 64 MiB went out.
    while time.monotonic() < deadline and sent < 64 * len(frame):
        try:
            n = s.send(frame[sent % len(frame):])
            sent += n
            stalled_since = None
        except BlockingIOError:
            if stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > 1.0:
                break
            time.sleep(0.01)
    rss1 = util.proc_rss_kb(pid)
    grew_mib = (rss1 - rss0) / 1024.0
    # The lb holds at most a 64 KiB queue per direction; allow the
    # allocator and sanitizer some slack, far below what went through.
    assert sent >= 4 * 1024 * 1024, "only %d bytes went out" % sent
    assert grew_mib < 8, "lb RSS grew %.1f MiB while %d MiB were sent" % (grew_mib, sent >> 20)
    rst_close(s)
    lb.wait_active(0)
    assert lb.alive() and w.alive()


def test_half_closed_connections(worker_factory, lb_factory):
    w = worker_factory(id="w0")
    lb = lb_factory(backend="w0=" + w.addr, proxy_http="/healthz")
    # Half of a head, then EOF: nothing can be answered; the lb closes.
    s = socket.create_connection(util.split_addr(lb.addr), timeout=5)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost:")
    s.shutdown(socket.SHUT_WR)
    assert outcome(s)[0] in ("eof", "reset")
    s.close()
    # A whole request, then EOF: the answer still arrives in full.
    s = socket.create_connection(util.split_addr(lb.addr), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    data = b""
    s.settimeout(5)
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok\n"), data
    # A tunnel whose client stops sending: the echo of what it sent comes
    # back, then the connection ends instead of lingering.
    s, rest = open_tunnel(lb.addr, "/echo")
    s.sendall(masked_frame(b"ping-before-eof", opcode=1))
    s.shutdown(socket.SHUT_WR)
    data = rest
    s.settimeout(10)
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        data += d
    s.close()
    assert b"ping-before-eof" in data, data[:300]
    lb.wait_active(0)
    assert w.alive()


def test_resets_in_every_state(worker_factory, lb_factory):
    w = worker_factory(id="w0")

    def slow_101(c):
        read_head(c)
        time.sleep(1.0)  # a backend slow to answer: the state the resets hit
        try:
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\n\r\n")
            c.settimeout(10)
            while c.recv(4096):
                pass
        except OSError:
            pass
    fb = FakeBackend(slow_101)
    try:
        lb = lb_factory(backend="w0=" + w.addr)
        lb_slow = lb_factory(backend="slow=" + fb.addr)
        addr = util.split_addr(lb.addr)
        # Connected, nothing sent.
        rst_close(socket.create_connection(addr, timeout=5))
        # Mid-head.
        s = socket.create_connection(addr, timeout=5)
        s.sendall(b"GET /echo HTTP/1.1\r\nHo")
        rst_close(s)
        # After an lb answer (400), while it lingers.
        s = socket.create_connection(addr, timeout=5)
        s.sendall(b"BLAH\r\n\r\n")
        assert outcome(s)[0] == "data"
        rst_close(s)
        # Head complete, before the 101 (the backend takes its time).
        s = socket.create_connection(util.split_addr(lb_slow.addr), timeout=5)
        s.sendall(upgrade_request("/echo"))
        util.wait_for(lambda: fb.conns >= 1, 5, "the request to reach the backend")
        rst_close(s)
        # Mid-tunnel, with data in flight both ways.
        for _ in range(3):
            s, _ = open_tunnel(lb.addr, "/echo")
            s.sendall(masked_frame(os.urandom(256 * 1024)))
            rst_close(s)
        lb.wait_active(0)
        lb_slow.wait_active(0)
        # Everyone else is still served.
        assert run(hello_of(lb.url("/echo"))) == "w0"
        lb.wait_active(0)
        assert lb.alive() and lb_slow.alive() and w.alive()
    finally:
        fb.close()


# ---- a worker dying under a client ------------------------------------------------------------

def test_worker_killed_mid_evaluation(worker_factory, lb_factory):
    ws_, lb = lb_workers(worker_factory, lb_factory, n=2, health_interval_ms=300, fall=2,
                         slowstart_ms=0)
    by_id = {w.id: w for w in ws_}

    async def go():
        ws, wid = await open_ws(lb.url("/eval"))
        await util.send_json(ws, util.run_msg("python3", "import time\nprint('started', "
                                                         "flush=True)\ntime.sleep(60)"))
        m = await util.recv_json(ws)
        assert m["type"] == "stdout" and m["data"] == "started\n", m
        by_id[wid].stop(signal.SIGKILL)
        # The client's connection through the lb ends promptly with a close
        # frame from the lb (1014, bad gateway), not a bare TCP close.
        t0 = time.monotonic()
        code = await util.expect_closed(ws, timeout=10)
        closed_after = time.monotonic() - t0
        # Reconnecting through the lb lands on the healthy worker and runs code.
        ws2, wid2 = await open_ws(lb.url("/eval"))
        try:
            r = await util.arun(ws2, "python3", "print(6*7)")
        finally:
            await ws2.close()
        return wid, code, closed_after, wid2, r
    wid, code, closed_after, wid2, r = run(go(), timeout=60)
    assert closed_after < 5, closed_after
    assert code == 1014, code
    assert wid2 != wid
    assert r.verdict == "ok" and r.stdout == "42\n", r
    lb.wait_active(0)
    assert lb.stats()["errors"]["all_failed"] == 0
