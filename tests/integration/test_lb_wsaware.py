"""Websocket-aware closes: a hung worker costs nobody more than the time it
takes to notice it (pending handshakes move, clients that leave are let go,
tunnels on a dead worker get 1014), and the lb's own pings reap clients
that are gone."""

import asyncio
import socket
import signal
import threading
import time

import util
from lbutil import lb_factory, open_ws, run  # noqa: F401


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
