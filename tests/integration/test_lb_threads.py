"""The lb with four proxy threads: clients opening websockets and echoing
through them at once (plain and TLS), while the main thread checks health,
follows Redis, drains and enables backends from the admin API, renders
/stats and /metrics and reloads the certificate and the static files, and
while a backend is killed under traffic.

`make tsan-test` runs this file against the ThreadSanitizer build of the lb
(LB_BIN_DIR=bin/tsan) and the ASan workers: a data race the traffic provokes
fails the test (the lb fixture scans the lb's stderr for ThreadSanitizer's
reports). `make test` runs it against the ASan lb with everything else.
"""

import asyncio
import os
import signal
import ssl
import threading
import time

import websockets

import util
from lbutil import lb_factory, make_cert, peer_cert_der  # noqa: F401

THREADS = 4
# No load loop here runs longer than this, whatever happens.
TRAFFIC_MAX_S = 90


class Traffic:
    """`clients` clients in a thread of their own, each looping until
    stopped (or `rounds` times): open a websocket through the lb, make
    `echoes` round trips, close. Records when each handshake started and
    which worker answered it, handshakes that failed, round trips that got a
    wrong answer, and tunnels the far side closed (worker, or None when it
    went before its hello; close code)."""

    def __init__(self, url, clients, echoes=3, rounds=None, ssl_ctx=None):
        self.url, self.clients, self.echoes, self.rounds = url, clients, echoes, rounds
        self.ssl_ctx = ssl_ctx
        self.picks = []  # (monotonic start of the handshake, worker id)
        self.failed = []  # (monotonic start, what went wrong)
        self.lost = []  # (worker id, close code)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        async def main():
            await asyncio.gather(*(self._client(i) for i in range(self.clients)))
        asyncio.run(main())

    async def _client(self, i):
        deadline = time.monotonic() + TRAFFIC_MAX_S
        n = 0
        while not self._stop.is_set() and time.monotonic() < deadline and \
                (self.rounds is None or n < self.rounds):
            n += 1
            wid = None  # until the hello names the worker
            t0 = time.monotonic()
            try:
                ws = await asyncio.wait_for(self._connect(), 20)
            except Exception as e:  # a failed handshake is what must not happen
                self.failed.append((t0, "handshake: %r" % e))
                continue
            try:
                # The worker's hello: a tunnel can be lost before it comes.
                wid = (await util.recv_hello(ws, 20))["worker"]
                self.picks.append((t0, wid))
                for k in range(self.echoes):
                    msg = "c%d-r%d-e%d" % (i, n, k)
                    await ws.send(msg)
                    got = await asyncio.wait_for(ws.recv(), 20)
                    if got != msg:
                        self.failed.append((t0, "echo from %s: %r for %r" % (wid, got, msg)))
                        break
            except websockets.ConnectionClosed as e:
                self.lost.append((wid, e.code))
            except Exception as e:
                self.failed.append((t0, "echo through %s: %r" % (wid, e)))
            finally:
                await ws.close()

    async def _connect(self):
        if self.ssl_ctx:
            return await util.ws_connect(self.url, ssl=self.ssl_ctx)
        return await util.ws_connect(self.url)

    def since(self, t):
        """Workers picked by handshakes started at or after t."""
        return [w for ts, w in list(self.picks) if ts >= t]

    def wait_handshakes(self, n, since=0.0, timeout=60.0):
        util.wait_for(lambda: len(self.since(since)) >= n or self.failed, timeout,
                      "%d handshakes through the lb" % n)
        assert not self.failed, self.failed[:5]

    def join(self, timeout=TRAFFIC_MAX_S):
        """Waits for the clients to finish their rounds."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "clients still running after %.0f s" % timeout
        return self

    def stop(self, timeout=60.0):
        self._stop.set()
        return self.join(timeout)


class Reader:
    """GETs paths from addr in a loop until stopped, keeping the last body
    of each: by default the admin API's /stats and /metrics, as a dashboard
    reads them (the main thread rendering counters the proxy threads are
    writing)."""

    def __init__(self, addr, paths=("/stats", "/metrics")):
        self.addr, self.paths = addr, paths
        self.reads = 0
        self.last = {}
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        deadline = time.monotonic() + TRAFFIC_MAX_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            for path in self.paths:
                try:
                    status, _, body = util.http_get(self.addr, path)
                    if status != 200:
                        self.errors.append("%s answered %d: %r" % (path, status, body[:200]))
                    self.last[path] = body
                except OSError as e:
                    self.errors.append("%s: %r" % (path, e))
            self.reads += 1
            self._stop.wait(0.02)  # pacing, as a dashboard polls

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        assert not self.errors, self.errors[:5]
        assert self.reads > 0
        return self.reads


def insecure_ctx():
    """TLS without verification: the certificate changes under the clients."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_handshakes_and_round_trips(worker_factory, lb_factory, tmp_path):
    """Plain and TLS websockets on every thread, a per-address limit they
    all share, static files, the admin API read throughout, and a SIGHUP
    that swaps the certificate and the static files under them."""
    ws_ = [worker_factory(id="w%d" % i) for i in range(3)]
    cert, key = make_cert(str(tmp_path))
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("v1\n")
    tls_addr = "127.0.0.1:%d" % util.free_port()
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_], threads=THREADS,
                    tls_listen=tls_addr, cert=cert, key=key, static=str(web),
                    limit_conns=1000, limit_rate=100000, limit_burst=100000,
                    health_interval_ms=100, algo="leastconn", slowstart_ms=0)
    admin = Reader(lb.admin)
    page = Reader(lb.addr, ("/",))
    plain = Traffic(lb.url("/echo"), 16, echoes=4, rounds=10).start()
    tls = Traffic("wss://%s/echo" % tls_addr, 8, echoes=4, ssl_ctx=insecure_ctx()).start()
    try:
        tls.wait_handshakes(8)
        before = peer_cert_der(tls_addr)
        new = tmp_path / "new"
        new.mkdir()
        new_cert, new_key = make_cert(str(new), cn="reloaded")
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        (web / "index.html").write_text("v2\n")
        lb.stop(signal.SIGHUP)
        util.wait_for(lambda: peer_cert_der(tls_addr) != before, 20, "the new certificate")
        util.wait_for(lambda: page.last.get("/") == b"v2\n", 20, "the new page")
        tls.wait_handshakes(16, since=time.monotonic())
    finally:
        tls.stop()
        plain.join()
    admin.stop()
    page.stop()
    for t in (plain, tls):
        assert not t.failed, t.failed[:5]
        assert not t.lost, t.lost[:5]
    assert len(plain.picks) == 16 * 10
    lb.wait_active(0)
    st = lb.stats()
    n = len(plain.picks) + len(tls.picks)
    assert st["handshakes"] == n, (n, st)
    per = {b["id"]: b["total"] for b in st["backends"]}
    assert sum(per.values()) == n and min(per.values()) > 0, per


def test_drains_under_traffic(redis_server, worker_factory, lb_factory):
    ws_ = [worker_factory(id="w%d" % i, redis=redis_server, drain_s=10) for i in range(3)]
    lb = lb_factory(redis=redis_server, threads=THREADS, health_interval_ms=100,
                    slowstart_ms=0)
    util.wait_for(lambda: {b["id"] for b in lb.stats()["backends"]} == {"w0", "w1", "w2"}, 15,
                  "lb to discover the workers")
    admin = Reader(lb.admin)
    traffic = Traffic(lb.url("/echo"), 16, echoes=2).start()
    try:
        # The admin API drains and enables w0 while handshakes go on: once
        # the drain is answered, no new handshake lands there; once enabled,
        # it takes connections again.
        for _ in range(3):
            traffic.wait_handshakes(16, since=time.monotonic())
            status, _, body = lb.post("/backends/w0/drain")
            assert status == 200, body
            t = time.monotonic()
            traffic.wait_handshakes(32, since=t)
            assert "w0" not in traffic.since(t), traffic.since(t)
            status, _, body = lb.post("/backends/w0/enable")
            assert status == 200, body
            t = time.monotonic()
            util.wait_for(lambda: "w0" in traffic.since(t), 30, "w0 to take connections again")
        # w1 drains itself (SIGTERM): its health check and Redis say so.
        ws_[1].stop(signal.SIGTERM)
        util.wait_for(lambda: (lb.backend("w1") or {"state": "gone"})["state"] != "up", 15,
                      "lb to see w1 draining")
        t = time.monotonic()
        traffic.wait_handshakes(32, since=t)
        assert "w1" not in traffic.since(t), traffic.since(t)
    finally:
        traffic.stop()
    admin.stop()
    assert not traffic.failed, traffic.failed[:5]
    # Only w1's drain may close tunnels from the far side: 1001, going away.
    assert all(w in ("w1", None) and code == 1001 for w, code in traffic.lost), traffic.lost[:5]
    assert ws_[1].wait(20) == 0
    lb.wait_active(0)
    assert lb.stats()["errors"]["all_failed"] == 0


def test_backend_killed_mid_traffic(worker_factory, lb_factory):
    ws_ = [worker_factory(id="w%d" % i) for i in range(3)]
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_], threads=THREADS,
                    algo="roundrobin", health_interval_ms=200, fall=2, rise=2, retries=2)
    admin = Reader(lb.admin)
    traffic = Traffic(lb.url("/echo"), 16, echoes=3).start()
    try:
        traffic.wait_handshakes(48)
        ws_[1].stop(signal.SIGKILL)
        ws_[1].wait(5)
        util.wait_for(lambda: lb.backend("w1")["state"] == "down", 15, "w1 marked down")
        t = time.monotonic()
        traffic.wait_handshakes(48, since=t)
        assert "w1" not in traffic.since(t), traffic.since(t)
    finally:
        traffic.stop()
    admin.stop()
    # Retries hide the dead worker from every handshake; tunnels that were
    # on it end with the lb's 1014.
    assert not traffic.failed, traffic.failed[:5]
    assert all(w in ("w1", None) and code == 1014 for w, code in traffic.lost), traffic.lost[:5]
    lb.wait_active(0)
    st = lb.stats()
    assert st["errors"]["all_failed"] == 0, st


def test_sigstopped_worker_under_threads(worker_factory, lb_factory):
    """The news that a backend is down crosses from the thread that saw it
    to every proxy thread (test_lb_wsaware.py, with four threads)."""
    from test_lb_wsaware import check_sigstopped_worker
    check_sigstopped_worker(worker_factory, lb_factory, threads=THREADS)
