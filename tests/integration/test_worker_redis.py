"""The worker's state in Redis (heartbeat, expiry, events) and its drain."""

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest

import util


class Events:
    """A subscription to the events channel, opened before the worker starts
    so that no event can be missed."""

    def __init__(self, addr, channel="wslb:events"):
        self.r = util.redis_client(addr)
        self.ps = self.r.pubsub()
        self.ps.subscribe(channel)
        m = self.ps.get_message(timeout=5)
        assert m and m["type"] == "subscribe", m
        self.seen = []

    def wait(self, event, wid, timeout=10.0):
        deadline = time.monotonic() + timeout
        for e in self.seen:
            if e.get("event") == event and e.get("id") == wid:
                return e
        while time.monotonic() < deadline:
            m = self.ps.get_message(timeout=max(0.01, deadline - time.monotonic()))
            if m is None or m["type"] != "message":
                continue
            e = json.loads(m["data"])
            self.seen.append(e)
            if e.get("event") == event and e.get("id") == wid:
                return e
        raise AssertionError("no %r event for %s within %.1fs; saw %r"
                             % (event, wid, timeout, self.seen))

    def close(self):
        self.ps.close()


def get_state(r, wid, prefix="wslb:"):
    s = r.get("%sworker:%s" % (prefix, wid))
    return json.loads(s) if s is not None else None


def wait_state(r, wid, pred, timeout, what, prefix="wslb:"):
    def check():
        st = get_state(r, wid, prefix)
        return st if st is not None and pred(st) else None
    return util.wait_for(check, timeout, what)


HOLD = "import sys\nprint('holding', flush=True)\nsys.stdin.read()\nprint('released', flush=True)\n"


def test_heartbeat_state_and_join(redis_server, worker_factory):
    r = util.redis_client(redis_server)
    ev = Events(redis_server)
    try:
        w = worker_factory(redis=redis_server, max_evals=3)
        join = ev.wait("join", w.id, 10)
        assert join["addr"] == w.addr, join

        st = wait_state(r, w.id, lambda s: True, 5, "the worker's state key")
        assert st["id"] == w.id and st["addr"] == w.addr and st["state"] == "up", st
        assert st["conns"] == 0 and st["evals_running"] == 0 and st["evals_queued"] == 0, st
        assert st["max_evals"] == 3 and st["load"] == 0, st
        assert abs(st["ts_ms"] / 1000.0 - time.time()) < 5, st
        assert st["started_ms"] <= st["ts_ms"], st
        assert isinstance(st.get("isolation"), str), st
        # The version is the binary's own, as --version prints it.
        assert w.argv[0].endswith("worker")
        out = subprocess.run([w.argv[0], "--version"], stdout=subprocess.PIPE, text=True,
                             timeout=10).stdout.split()
        assert st.get("version") == out[-1], (st, out)
        assert w.id in r.smembers("wslb:workers")
        ttl = r.pttl("wslb:worker:%s" % w.id)
        assert 0 < ttl <= 3000, ttl

        # The state is refreshed: ts_ms moves on without any activity.
        ts0 = st["ts_ms"]
        wait_state(r, w.id, lambda s: s["ts_ms"] > ts0, 3, "a fresher heartbeat")

        async def go():
            ws = await util.ws_connect(w.url())
            try:
                await util.recv_hello(ws)
                # Blocking calls inside the coroutine are fine: the worker is
                # another process and nothing else runs on this loop.
                wait_state(r, w.id, lambda s: s["conns"] == 1, 3, "conns == 1")
                await util.send_json(ws, util.run_msg("python3", HOLD, "h"))
                assert (await util.recv_json(ws, 15))["data"] == "holding\n"
                st = wait_state(r, w.id, lambda s: s["evals_running"] == 1, 3,
                                "evals_running == 1")
                assert st["load"] >= 1, st
                await util.send_json(ws, {"type": "stdin_close", "id": "h"})
                res = await asyncio.wait_for(util.collect_run(ws, "h"), 10)
                assert res.verdict == "ok", res
                wait_state(r, w.id, lambda s: s["evals_running"] == 0 and s["load"] == 0, 3,
                           "evals_running back to 0")
            finally:
                await ws.close()
        asyncio.run(go())
        wait_state(r, w.id, lambda s: s["conns"] == 0, 3, "conns back to 0")
    finally:
        ev.close()


def test_connections_counted_per_lb(redis_server, worker_factory):
    """Websockets are also counted per X-Lb-Id ("by_lb"), so that each lb can
    subtract exactly its own connections from the worker's total; an id that
    is not plain is not published, and entries leave when their count does."""
    r = util.redis_client(redis_server)
    w = worker_factory(redis=redis_server)

    async def go():
        a = [await util.ws_connect(w.url("/echo"), extra_headers={"X-Lb-Id": "lb-a"})
             for _ in range(3)]
        b = [await util.ws_connect(w.url("/echo"), extra_headers={"X-Lb-Id": "lb-b:2"})]
        bad = [await util.ws_connect(w.url("/echo"), extra_headers={"X-Lb-Id": "x y\"z"})]
        none = [await util.ws_connect(w.url("/echo"))]
        st = wait_state(r, w.id, lambda s: s["conns"] == 6, 5, "conns == 6")
        assert st["by_lb"] == {"lb-a": 3, "lb-b:2": 1}, st
        for ws in a[:2] + b:
            await ws.close()
        st = wait_state(r, w.id, lambda s: s["conns"] == 3, 5, "conns == 3")
        assert st["by_lb"] == {"lb-a": 1}, st
        for ws in a[2:] + bad + none:
            await ws.close()
    asyncio.run(go())
    st = wait_state(r, w.id, lambda s: s["conns"] == 0, 5, "conns back to 0")
    assert st["by_lb"] == {}, st


def test_advertise_and_prefix(redis_server, worker_factory):
    r = util.redis_client(redis_server)
    ev = Events(redis_server, "t9:events")
    try:
        w = worker_factory(redis=redis_server, redis_prefix="t9:", advertise="10.9.8.7:1234")
        assert ev.wait("join", w.id, 10)["addr"] == "10.9.8.7:1234"
        st = wait_state(r, w.id, lambda s: True, 5, "state under t9:", prefix="t9:")
        assert st["addr"] == "10.9.8.7:1234", st
        assert w.id in r.smembers("t9:workers")
        assert r.get("wslb:worker:%s" % w.id) is None
    finally:
        ev.close()


def test_key_expires_after_sigkill(redis_server, worker_factory):
    r = util.redis_client(redis_server)
    w = worker_factory(redis=redis_server)
    wait_state(r, w.id, lambda s: True, 5, "the worker's state key")
    w.stop(signal.SIGKILL)
    assert w.wait(5) == -signal.SIGKILL
    t0 = time.monotonic()
    util.wait_for(lambda: r.get("wslb:worker:%s" % w.id) is None, 5,
                  "the state key to expire after SIGKILL")
    # It did not vanish by deregistration (a killed worker cannot), it expired.
    assert time.monotonic() - t0 <= 3.5


def test_redis_outage_does_not_disturb_runs(redis_factory, worker_factory):
    srv = redis_factory()
    r = util.redis_client(srv.addr)
    w = worker_factory(redis=srv.addr)
    wait_state(r, w.id, lambda s: True, 5, "the worker's state key")
    srv.stop()
    t0 = time.monotonic()
    res = util.run_eval(w.url(), "python3", "print('no redis needed')", deadline=10)
    assert res.stdout == "no redis needed\n" and res.verdict == "ok", res
    assert time.monotonic() - t0 < 5
    assert w.alive()
    srv.restart()  # empty: the worker must publish itself again
    r = util.redis_client(srv.addr)
    wait_state(r, w.id, lambda s: s["state"] == "up", 15, "state back after Redis returned")
    assert w.id in r.smembers("wslb:workers")
    w.healthy_and_serving()


def test_drain_on_sigterm(redis_server, worker_factory):
    r = util.redis_client(redis_server)
    ev = Events(redis_server)
    try:
        w = worker_factory(redis=redis_server, drain_s=20)
        ev.wait("join", w.id, 10)
        wait_state(r, w.id, lambda s: True, 5, "the worker's state key")

        async def go():
            ws = await util.ws_connect(w.url())
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", HOLD, "d"))
            res = util.RunResult()
            m = await util.recv_json(ws, 15)
            res.messages.append((time.monotonic(), m))
            assert m["data"] == "holding\n", m

            w.stop(signal.SIGTERM)
            def healthz():
                status, _, body = util.http_get(w.addr, "/healthz")
                return status == 503 and body.strip() == b"draining"
            util.wait_for(healthz, 5, "healthz 503 draining")
            st = wait_state(r, w.id, lambda s: s["state"] == "draining", 3, "state draining")
            assert st["evals_running"] == 1, st
            drain = ev.wait("drain", w.id, 5)
            assert drain["addr"] == w.addr
            m = util.get_metrics(w.addr)
            assert util.metric_sum(m, "worker_draining") == 1

            # No new websockets while draining.
            import websockets
            with pytest.raises(websockets.InvalidStatusCode) as ei:
                await util.ws_connect(w.url())
            assert ei.value.status_code == 503
            # Nor new runs on the open websocket.
            await util.send_json(ws, util.run_msg("python3", "print(1)", "late"))
            m = await util.recv_json(ws, 5)
            assert m["type"] == "error" and m["id"] == "late" and "drain" in m["error"], m

            # The running evaluation goes on and its output arrives.
            assert w.alive()
            await util.send_json(ws, {"type": "stdin", "id": "d", "data": "x"})
            await util.send_json(ws, {"type": "stdin_close", "id": "d"})
            await asyncio.wait_for(util.collect_run(ws, "d", res), 10)
            code = await util.expect_closed(ws, 10)
            return res, code
        res, code = asyncio.run(go())
        assert res.stdout == "holding\nreleased\n" and res.verdict == "ok", res
        assert code == 1001
        assert w.wait(10) == 0, w.stderr_text()[-3000:]
        ev.wait("leave", w.id, 5)
        assert r.get("wslb:worker:%s" % w.id) is None
        assert w.id not in r.smembers("wslb:workers")
    finally:
        ev.close()


def test_drain_closes_idle_websockets_and_exits(worker_factory):
    w = worker_factory()

    async def go():
        a = await util.ws_connect(w.url("/eval"))
        b = await util.ws_connect(w.url("/echo"))
        await util.recv_hello(a)
        await util.recv_hello(b)
        w.stop(signal.SIGINT)  # SIGINT drains like SIGTERM
        return await util.expect_closed(a, 10), await util.expect_closed(b, 10)
    assert asyncio.run(go()) == (1001, 1001)
    assert w.wait(10) == 0


def test_drain_deadline_kills_runs(worker_factory):
    w = worker_factory(drain_s=1)

    async def go():
        ws = await util.ws_connect(w.url())
        await util.recv_hello(ws)
        await util.send_json(ws, util.run_msg("python3", HOLD, "d"))
        assert (await util.recv_json(ws, 15))["data"] == "holding\n"
        t0 = time.monotonic()
        w.stop(signal.SIGTERM)
        res = await asyncio.wait_for(util.collect_run(ws, "d"), 10)
        return res, time.monotonic() - t0, await util.expect_closed(ws, 10)
    res, dt, code = asyncio.run(go())
    assert res.verdict == "killed", res
    assert 0.8 <= dt < 5, dt
    assert code == 1001
    assert w.wait(10) == 0


def test_drain_deadline_ends_queued_runs_too(worker_factory):
    """At the drain deadline the runs still waiting for a slot end as well as
    the running ones, each with its exit message (killed, no output)."""
    w = worker_factory(drain_s=1, max_evals=1)

    async def go():
        a = await util.ws_connect(w.url())
        b = await util.ws_connect(w.url())
        try:
            await util.recv_hello(a)
            await util.recv_hello(b)
            await util.send_json(a, util.run_msg("python3", HOLD, "a"))
            assert (await util.recv_json(a, 15))["data"] == "holding\n"
            await util.send_json(b, util.run_msg("python3", "print('never')", "b"))
            util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr),
                                                  "worker_evaluations_queued") == 1,
                          5, "the second run to be queued")
            w.stop(signal.SIGTERM)
            ra = await asyncio.wait_for(util.collect_run(a, "a"), 10)
            rb = await asyncio.wait_for(util.collect_run(b, "b"), 10)
            return ra, rb
        finally:
            await a.close()
            await b.close()
    ra, rb = asyncio.run(go())
    assert ra.verdict == "killed", ra
    assert rb.verdict == "killed" and rb.stdout == "", rb
    assert w.wait(10) == 0


def test_second_sigterm_exits_at_once(worker_factory):
    w = worker_factory(drain_s=60)
    mk = util.marker()

    async def go():
        ws = await util.ws_connect(w.url())
        await util.recv_hello(ws)
        await util.send_json(ws, util.run_msg(
            "sh", "exec sh -c 'echo started; sleep 1000' %s" % mk, "s"))
        assert (await util.recv_json(ws, 15))["data"] == "started\n"
        w.stop(signal.SIGTERM)
        util.wait_for(lambda: util.http_get(w.addr, "/healthz")[0] == 503, 5, "draining")
        assert w.alive()
        t0 = time.monotonic()
        w.stop(signal.SIGTERM)
        w.wait(3)
        dt = time.monotonic() - t0
        ws.transport.abort()
        return dt
    dt = asyncio.run(go())
    assert dt < 3
    # The run did not outlive its worker.
    util.wait_no_process(mk, 5)


def _sockets_to(pid, port):
    """The descriptors of process pid whose TCP peer is 127.0.0.1:port."""
    inodes = set()
    with open("/proc/%d/net/tcp" % pid) as f:
        next(f)
        for line in f:
            fields = line.split()
            rem = fields[2]
            if int(rem.split(":")[1], 16) == port:
                inodes.add(fields[9])
    fds = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            fds.append(fd)
    return fds


def test_redis_socket_close_on_exec(redis_server, worker_factory):
    """hiredis opens its socket without close-on-exec; the worker marks it,
    so no sandboxed program or exec'd process can inherit it."""
    r = util.redis_client(redis_server)
    w = worker_factory(redis=redis_server)
    wait_state(r, w.id, lambda s: True, 10, "the worker's state key")
    port = int(redis_server.rsplit(":", 1)[1])
    fds = util.wait_for(lambda: _sockets_to(w.proc.pid, port), 10,
                        "the worker's connection to Redis")
    for fd in fds:
        with open("/proc/%d/fdinfo/%s" % (w.proc.pid, fd)) as f:
            flags = int(next(l for l in f if l.startswith("flags:")).split()[1], 8)
        assert flags & 0o2000000, "fd %s to Redis lacks O_CLOEXEC (flags %o)" % (fd, flags)
