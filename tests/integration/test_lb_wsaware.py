"""Websocket-aware closes: a hung worker costs nobody more than the time it
takes to notice it (pending handshakes move, clients that leave are let go,
tunnels on a dead worker get 1014), and the lb's own pings reap clients
that are gone."""

import asyncio
import base64
import os
import queue
import random
import signal
import socket
import struct
import threading
import time

import util
from lbutil import FakeBackend, lb_factory, open_ws, read_head, run  # noqa: F401


def lb_workers(worker_factory, lb_factory, n=3, **lbflags):
    ws_ = [worker_factory(id="w%d" % i) for i in range(n)]
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_], **lbflags)
    return ws_, lb


class DownWatch:
    """Polls the lb in a thread and records when a backend is first seen
    down (monotonic), so the test can compare what clients saw with the
    detection time."""

    def __init__(self, lb, bid):
        self.lb, self.bid, self.at = lb, bid, None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        deadline = time.monotonic() + 15
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.lb.backend(self.bid)["state"] == "down":
                self.at = time.monotonic()
                return
            time.sleep(0.02)

    def close(self):
        self._stop.set()
        self._t.join(5)


async def timed_hello(url):
    t = time.monotonic()
    ws, wid = await open_ws(url)
    dt = time.monotonic() - t
    await ws.close()
    return wid, dt


async def timed_close(ws, t0):
    code = await util.expect_closed(ws, timeout=15)
    return code, time.monotonic() - t0


def check_sigstopped_worker(worker_factory, lb_factory, threads):
    """A worker SIGSTOPped under 9 open websockets and 12 new handshakes:
    every handshake completes within the detection time plus a little,
    every client of the stopped worker gets 1014 within detection plus
    grace, everyone else carries on."""
    grace_ms = 300
    ws_, lb = lb_workers(worker_factory, lb_factory, algo="roundrobin", health_interval_ms=200,
                         fall=2, rise=2, slowstart_ms=0, down_close_ms=grace_ms,
                         timeout_response_ms=10000, threads=threads)
    victim = ws_[1]
    url = lb.url("/echo")

    async def go():
        conns = [await open_ws(url) for _ in range(9)]
        mine = [ws for ws, wid in conns if wid == "w1"]
        others = [ws for ws, wid in conns if wid != "w1"]
        assert mine and others
        victim.stop(signal.SIGSTOP)
        t0 = time.monotonic()
        watch = DownWatch(lb, "w1")
        try:
            closes = [asyncio.ensure_future(timed_close(ws, t0)) for ws in mine]
            # Round robin sends a third of these to the stopped worker
            # before the checks notice it.
            hellos = await asyncio.gather(*[timed_hello(url) for _ in range(12)])
            closed = await asyncio.gather(*closes)
        finally:
            watch.close()
        # Everyone else keeps talking.
        for ws in others:
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), 5) == "still here"
            await ws.close()
        return t0, watch.at, hellos, closed

    try:
        t0, down_at, hellos, closed = run(go(), timeout=60)
    finally:
        victim.stop(signal.SIGCONT)
    assert down_at is not None, "w1 never seen down"
    detect = down_at - t0
    assert "w1" not in [wid for wid, _ in hellos]
    slowest = max(dt for _, dt in hellos)
    print("detection %.3f s, slowest handshake %.3f s, closes at %s s" % (
        detect, slowest, ", ".join("%.3f" % dt for _, dt in closed)))
    # Detection plus a few ms, measured against a poller that itself lags
    # by up to 20 ms plus an admin request; nowhere near the 10 s timeout.
    assert slowest < detect + 0.5, (slowest, detect)
    assert slowest < 3.0, (slowest, detect)
    for code, dt in closed:
        assert code == 1014, closed
        assert dt < detect + grace_ms / 1000.0 + 0.5, (dt, detect)
    st = lb.stats()
    assert st["ws_closes"]["handshakes_moved"] >= 1, st
    assert st["ws_closes"]["down_closed"] == len(closed), st
    m = util.get_metrics(lb.admin)
    assert util.metric_sum(m, "wslb_lb_down_closed_total") == len(closed)
    lb.wait_active(0)


def test_sigstopped_worker_costs_only_detection(worker_factory, lb_factory):
    check_sigstopped_worker(worker_factory, lb_factory, threads=1)


def test_client_gone_while_worker_hangs_is_let_go(worker_factory, lb_factory):
    w = worker_factory(id="w0")
    # Checks far apart: the worker stays "up" the whole test, so only the
    # client's own EOF can end its wait.
    lb = lb_factory(backend=["w0=" + w.addr], health_interval_ms=60000,
                    timeout_response_ms=10000)
    w.stop(signal.SIGSTOP)
    try:
        s = socket.create_connection(util.split_addr(lb.addr), timeout=5)
        s.sendall(("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        lb.wait_active(1, timeout=5)
        t0 = time.monotonic()
        s.close()
        lb.wait_active(0, timeout=5)
        gone = time.monotonic() - t0
        print("abandoned after %.3f s" % gone)
        assert gone < 1.0, gone
        assert lb.stats()["ws_closes"]["handshakes_abandoned"] == 1
        assert lb.backend("w0")["active"] == 0
    finally:
        w.stop(signal.SIGCONT)


# ---- the lb's pings ----------------------------------------------------------------------

def upgrade_request(path="/echo"):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode()


def xor(payload, mask):
    n = len(payload)
    if not n:
        return b""
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


def frame(payload, opcode, fin=True, masked=True):
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + xor(payload, mask)


class FrameReader:
    """Reads websocket frames off a socket: (fin, opcode, unmasked payload)."""

    def __init__(self, sock, buf=b""):
        self.s, self.buf = sock, buf

    def _need(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d

    def next(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7f, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        mask = None
        if b1 & 0x80:
            self._need(off + 4)
            mask, off = self.buf[off:off + 4], off + 4
        self._need(off + n)
        pl = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0f, xor(pl, mask) if mask else pl


def open_raw_tunnel(addr, path="/echo"):
    s = socket.create_connection(util.split_addr(addr), timeout=10)
    s.sendall(upgrade_request(path))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "closed before the 101: %r" % data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, rest


def test_client_that_never_reads_is_reaped(worker_factory, lb_factory):
    w = worker_factory(id="w0")
    lb = lb_factory(backend=["w0=" + w.addr], ping_interval_s=1, ping_timeout_s=1)
    s, _ = open_raw_tunnel(lb.addr)
    try:
        t0 = time.monotonic()
        util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr), "worker_websockets") == 1,
                      5, "the worker to count the websocket")
        lb.wait_active(0, timeout=10)
        gone = time.monotonic() - t0
        print("reaped after %.3f s" % gone)
        # One interval to the ping, one timeout to give up on it.
        assert 1.8 <= gone < 1 + 1 + 1.0, gone
        util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr), "worker_websockets") == 0,
                      5, "the worker to drop the websocket")
        st = lb.stats()
        assert st["ws_closes"]["ping_timeouts"] == 1, st
        assert st["ws_closes"]["pings_sent"] == 1, st
        assert lb.backend("w0")["active"] == 0
        # The client sees a TCP close (or a reset: it left our pings unread).
        s.settimeout(5)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
    finally:
        s.close()


def test_live_client_stays_over_many_intervals(worker_factory, lb_factory):
    """A websockets client answers pings on its own: held for ten 1 s
    intervals with a 1 s timeout, it is never closed and its echo works."""
    w = worker_factory(id="w0")
    lb = lb_factory(backend=["w0=" + w.addr], ping_interval_s=1, ping_timeout_s=1)

    async def go():
        ws, wid = await open_ws(lb.url("/echo"))
        for i in range(10):
            await asyncio.sleep(1.0)
            await ws.send("tick %d" % i)
            assert await asyncio.wait_for(ws.recv(), 5) == "tick %d" % i
        await ws.close()
        return ws.close_code

    assert run(go(), timeout=40) == 1000
    st = lb.stats()
    assert st["ws_closes"]["pings_sent"] >= 8, st
    assert st["ws_closes"]["ping_timeouts"] == 0, st


def echo_backend(record):
    """A backend that upgrades, echoes data frames back as they came and
    records every frame it gets (fin, opcode, payload) in record."""
    def handler(c):
        head = read_head(c)
        if b"Upgrade" not in head:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
        r = FrameReader(c)
        while True:
            fin, op, pl = r.next()
            record.append((fin, op, pl))
            if op in (0, 1, 2):
                c.sendall(frame(pl, op, fin, masked=False))
            elif op == 8:
                c.sendall(frame(pl, 8, masked=False))
                return
    return handler


def test_echo_with_pings_intact_under_random_fragmentation(lb_factory):
    record = []
    fb = FakeBackend(echo_backend(record))
    try:
        lb = lb_factory(backend=["fb=" + fb.addr], ping_interval_s=1, ping_timeout_s=3,
                        health_interval_ms=60000)
        s, rest = open_raw_tunnel(lb.addr)
        s.settimeout(10)
        rnd = random.Random(12)
        pongs = queue.Queue()
        got = {"data": [], "pings": [], "close": None}

        def reader():
            r = FrameReader(s, rest)
            try:
                while True:
                    fin, op, pl = r.next()
                    if op == 9:
                        got["pings"].append(pl)
                        pongs.put(pl)
                    elif op == 8:
                        got["close"] = pl
                        return
                    else:
                        got["data"].append((fin, op, pl))
            except (EOFError, OSError):
                return
        rt = threading.Thread(target=reader, daemon=True)
        rt.start()

        sent_data, sent_ctl = [], []

        def send_split(b):
            # Random cuts, so the lb sees headers and pongs in pieces.
            i = 0
            while i < len(b):
                k = rnd.choice([1, 2, 3, 5, 8, 13, 100, 4096])
                s.sendall(b[i:i + k])
                i += k
                if rnd.random() < 0.05:
                    time.sleep(0.002)

        def answer_pongs():
            while not pongs.empty():
                pl = pongs.get()
                send_split(frame(pl, 10))

        t_end = time.monotonic() + 3.5
        while time.monotonic() < t_end:
            nfrag = rnd.randint(1, 4)
            for f in range(nfrag):
                pl = os.urandom(rnd.choice([0, 1, 7, 8, 125, 126, 300, 70000]))
                op = 2 if f == 0 else 0
                sent_data.append((f == nfrag - 1, op, pl))
                send_split(frame(pl, op, fin=f == nfrag - 1))
                # The client's own control frames, between fragments too;
                # some pongs with 8-byte payloads, like the lb's.
                if rnd.random() < 0.3:
                    c = (rnd.choice([9, 10]), os.urandom(rnd.choice([0, 8, 20])))
                    sent_ctl.append(c)
                    send_split(frame(c[1], c[0]))
                answer_pongs()
            time.sleep(0.01)
        answer_pongs()
        send_split(frame(struct.pack("!H", 1000), 8))
        rt.join(15)
        s.close()
        assert got["close"] == struct.pack("!H", 1000)
        # Everything the client sent came back, frame by frame, byte for byte.
        assert got["data"] == sent_data
        assert len(got["pings"]) >= 2, got["pings"]
        # The backend got every frame of the client's, and none of the
        # pongs to the lb's pings.
        assert [f for f in record if f[1] in (0, 1, 2)] == sent_data
        assert [(op, pl) for _, op, pl in record if op in (9, 10)] == sent_ctl
        lb_tokens = set(got["pings"])
        assert not [pl for _, op, pl in record if op == 10 and pl in lb_tokens]
        st = lb.stats()
        assert st["ws_closes"]["ping_timeouts"] == 0, st
        assert st["ws_closes"]["pings_sent"] == len(got["pings"]), st
        lb.wait_active(0)
    finally:
        fb.close()


async def _drain_while_one_waits(lb):
    """Round robin over w0 (hung) and w1: of two handshakes one completes
    and one waits on w0; drain w0 through the admin API. Returns the two
    handshakes' results and the time from the drain to both being done."""
    tasks = [asyncio.ensure_future(timed_hello(lb.url("/echo"))) for _ in range(2)]
    await asyncio.sleep(0)
    done, _ = await asyncio.wait(tasks, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    t0 = time.monotonic()
    status = await asyncio.get_running_loop().run_in_executor(
        None, lambda: lb.post("/backends/w0/drain")[0])
    assert status == 200
    res = await asyncio.gather(*tasks)
    return res, time.monotonic() - t0


def test_admin_drain_moves_a_waiting_handshake(worker_factory, lb_factory):
    """The admin API is one more way a backend stops taking connections: a
    handshake waiting on a hung worker moves the moment it is drained."""
    ws_, lb = lb_workers(worker_factory, lb_factory, n=2, algo="roundrobin", slowstart_ms=0,
                         health_interval_ms=60000, timeout_response_ms=10000)
    hung = ws_[0]
    hung.stop(signal.SIGSTOP)
    try:
        res, after_drain = run(_drain_while_one_waits(lb), timeout=30)
        assert [wid for wid, _ in res] == ["w1", "w1"], res
        assert after_drain < 1.0, after_drain
        assert lb.stats()["ws_closes"]["handshakes_moved"] == 1
    finally:
        hung.stop(signal.SIGCONT)


def test_a_move_uses_no_retry(worker_factory, lb_factory):
    """A handshake moved off a backend that stopped taking connections did
    not fail there: it moves even with --retries 0 (and a request moved by
    one reload after another never runs out of tries and gets a 502)."""
    ws_, lb = lb_workers(worker_factory, lb_factory, n=2, algo="roundrobin", slowstart_ms=0,
                         health_interval_ms=60000, timeout_response_ms=10000, retries=0)
    hung = ws_[0]
    hung.stop(signal.SIGSTOP)
    try:
        res, _ = run(_drain_while_one_waits(lb), timeout=30)
        assert [wid for wid, _ in res] == ["w1", "w1"], res
        assert lb.stats()["ws_closes"]["handshakes_moved"] == 1
        assert lb.stats()["errors"]["all_failed"] == 0
    finally:
        hung.stop(signal.SIGCONT)
