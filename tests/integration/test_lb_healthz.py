"""The admin API's /healthz says whether this lb can serve, so that a DNS or
NLB health check in front of several lbs takes a broken one out; /livez says
only that the process runs."""

import signal
import socket

import util
from lbutil import lb_factory  # noqa: F401


def health(lb):
    st, _, body = util.http_get(lb.admin, "/healthz")
    return st, body.decode()


def livez(lb):
    st, _, body = util.http_get(lb.admin, "/livez")
    return st, body.decode()


def test_no_backend_is_503_with_the_reason(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, health_interval_ms=100, fall=1, rise=1)
    assert health(lb) == (200, "ok\n")
    # The only worker dies: every client would get 503, and so does the front.
    w.stop(signal.SIGKILL)
    w.wait(5)
    util.wait_for(lambda: health(lb)[0] == 503, 10, "/healthz 503 once w1 is down")
    st, body = health(lb)
    assert body == "no usable backend: 1 known, 1 down, 0 draining\n", body
    assert livez(lb) == (200, "ok\n")
    # A client is refused, as the front was told.
    s = ws_upgrade(lb.addr, want=b"HTTP/1.1 503")
    s.close()


def test_admin_drain_of_every_backend_is_503(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr)
    assert health(lb)[0] == 200
    assert lb.post("/backends/w1/drain")[0] == 200
    assert health(lb) == (503, "no usable backend: 1 known, 0 down, 1 draining\n")
    assert lb.post("/backends/w1/enable")[0] == 200
    assert health(lb) == (200, "ok\n")


def test_loading_until_discovery_reads_redis(redis_server, worker_factory, lb_factory):
    # Nothing listens there: discovery never completes, the lb knows nothing.
    nowhere = "127.0.0.1:%d" % util.free_port()
    lb = lb_factory(redis=nowhere)
    st, body = health(lb)
    assert (st, body) == (503, "loading: waiting for the first discovery from Redis\n")
    assert livez(lb) == (200, "ok\n")

    # With Redis, the first read ends loading; an empty fleet is then "no backend".
    lb2 = lb_factory(redis=redis_server)
    util.wait_for(lambda: "no usable backend" in health(lb2)[1], 10,
                  "first discovery of an empty fleet")
    worker_factory(id="late", redis=redis_server)
    util.wait_for(lambda: health(lb2) == (200, "ok\n"), 15, "/healthz 200 with a worker")


def ws_upgrade(addr, path="/echo", want=b"HTTP/1.1 101"):
    s = socket.create_connection(util.split_addr(addr), timeout=5)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               "\r\n" % path).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "closed before the answer: %r" % head
        head += chunk
    assert head.startswith(want), head
    return s


def test_shutting_down_is_503_while_tunnels_finish(worker_factory, lb_factory):
    w = worker_factory(id="w1")
    lb = lb_factory(backend="w1=" + w.addr, grace_s=30)
    s = ws_upgrade(lb.addr)
    try:
        lb.wait_active(1)
        assert health(lb) == (200, "ok\n")
        lb.stop(signal.SIGTERM)
        # The tunnel holds the lb in its grace period: the front must leave it.
        util.wait_for(lambda: health(lb)[0] == 503, 10, "/healthz 503 after SIGTERM")
        assert health(lb) == (503, "shutting down: no longer accepting\n")
        assert livez(lb) == (200, "ok\n")
        assert lb.alive()
    finally:
        s.close()
    assert lb.wait(15) == 0
