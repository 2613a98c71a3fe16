"""Workers dying, joining and draining while clients keep connecting: no
failed handshakes, and the admin API tells the truth."""

import asyncio
import signal
import time

import util
from lbutil import count_by, lb_factory, open_ws, run  # noqa: F401


def test_sigkilled_worker_costs_no_handshake(worker_factory, lb_factory):
    ws_ = [worker_factory(id="w%d" % i) for i in range(3)]
    interval_ms, fall = 300, 2
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_], algo="roundrobin",
                    health_interval_ms=interval_ms, fall=fall, rise=2)
    victim = ws_[1]

    async def go():
        picked, failures = [], []
        killed_at = None
        for i in range(60):
            if i == 10:
                victim.stop(signal.SIGKILL)
                victim.wait(5)
                killed_at = time.monotonic()
            try:
                ws, wid = await open_ws(lb.url("/eval"))
                picked.append(wid)
                await ws.close()
            except Exception as e:  # a failed handshake is what must not happen
                failures.append(repr(e))
        return picked, failures, killed_at
    picked, failures, killed_at = run(go(), timeout=90)
    assert failures == [], failures
    assert "w1" not in picked[11:], picked
    # Marked down within fall x interval (plus slack for the sanitizer build).
    util.wait_for(lambda: lb.backend("w1")["state"] == "down",
                  max(0.0, killed_at + fall * interval_ms / 1000.0 + 1.5 - time.monotonic()) + 0.1,
                  "w1 marked down")
    assert lb.stats()["errors"]["all_failed"] == 0
    lb.wait_active(0)


def test_worker_started_later_is_discovered(redis_server, worker_factory, lb_factory):
    w1 = worker_factory(id="first", redis=redis_server)
    lb = lb_factory(redis=redis_server, slowstart_ms=500)
    util.wait_for(lambda: lb.backend("first") is not None, 10, "first discovered")

    async def go():
        held = [await open_ws(lb.url("/echo")) for _ in range(6)]
        assert {w for _, w in held} == {"first"}
        worker_factory(id="late", redis=redis_server)
        await asyncio.get_running_loop().run_in_executor(None, lambda: util.wait_for(
            lambda: (lb.backend("late") or {}).get("state") == "up", 10, "late discovered"))
        more = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(more) < 30:
            more.append(await open_ws(lb.url("/echo")))
            # Arrivals spread over the slow start (the ramp under test),
            # not a wait for an event.
            await asyncio.sleep(0.05)
        picked = count_by(w for _, w in more)
        await asyncio.gather(*(ws.close() for ws, _ in held + more), return_exceptions=True)
        return picked
    picked = run(go(), timeout=60)
    # The newcomer takes most of the new connections (it had none) without
    # getting every single one at once (slow start).
    assert picked.get("late", 0) >= 6, picked
    lb.wait_active(0)
    assert w1.alive()


def test_drain_through_admin_api(worker_factory, lb_factory):
    a = worker_factory(id="a")
    b = worker_factory(id="b")
    lb = lb_factory(backend=["a=" + a.addr, "b=" + b.addr], slowstart_ms=0)

    async def go():
        held = [await open_ws(lb.url("/eval")) for _ in range(4)]
        assert count_by(w for _, w in held) == {"a": 2, "b": 2}
        status, _, body = lb.post("/backends/a/drain")
        assert status == 200, body
        assert lb.backend("a")["state"] == "draining"
        new = [await open_ws(lb.url("/eval")) for _ in range(6)]
        assert {w for _, w in new} == {"b"}
        # Existing tunnels to the drained worker keep working.
        for ws, wid in held:
            if wid == "a":
                r = await util.arun(ws, "python3", "print(3)")
                assert r.stdout == "3\n"
        status, _, _ = lb.post("/backends/a/enable")
        assert status == 200
        util.wait_for(lambda: lb.backend("a")["state"] == "up", 5, "a enabled")
        back = [await open_ws(lb.url("/eval")) for _ in range(4)]
        assert "a" in {w for _, w in back}
        await asyncio.gather(*(ws.close() for ws, _ in held + new + back))
    run(go(), timeout=60)
    lb.wait_active(0)


def test_admin_drain_survives_leave_and_rejoin(redis_server, worker_factory, lb_factory):
    """An admin drain of a worker found through Redis holds across a deploy
    (SIGTERM, restart under the same id at a new address) until enabled."""
    a = worker_factory(id="a", redis=redis_server)
    worker_factory(id="b", redis=redis_server)
    lb = lb_factory(redis=redis_server, slowstart_ms=0)
    util.wait_for(lambda: {x["id"] for x in lb.stats()["backends"]} == {"a", "b"}, 10,
                  "both workers discovered")
    status, _, body = lb.post("/backends/a/drain")
    assert status == 200, body
    a.stop(signal.SIGTERM)
    assert a.wait(20) == 0
    util.wait_for(lambda: lb.backend("a") is None, 10, "a gone from the lb")
    st = lb.stats()
    assert st["admin_drained"] == ["a"], st  # shown while away
    a2 = worker_factory(id="a", redis=redis_server)
    assert a2.addr != a.addr
    util.wait_for(lambda: lb.backend("a") is not None, 10, "a back")
    back = lb.backend("a")
    assert back["admin_drain"] in (True, 1) and back["state"] == "draining", back

    async def go():
        new = [await open_ws(lb.url("/eval")) for _ in range(6)]
        assert {w for _, w in new} == {"b"}, [w for _, w in new]
        await asyncio.gather(*(ws.close() for ws, _ in new))
    run(go(), timeout=60)
    status, _, _ = lb.post("/backends/a/enable")
    assert status == 200
    assert lb.backend("a")["state"] == "up" and lb.stats()["admin_drained"] == []

    async def again():
        new = [await open_ws(lb.url("/eval")) for _ in range(6)]
        assert "a" in {w for _, w in new}
        await asyncio.gather(*(ws.close() for ws, _ in new))
    run(again(), timeout=60)
    # An id never seen is still unknown; one drained while away can be enabled.
    assert lb.post("/backends/nobody/drain")[0] == 404
    assert lb.post("/backends/a/drain")[0] == 200
    a2.stop(signal.SIGTERM)
    assert a2.wait(20) == 0
    util.wait_for(lambda: lb.backend("a") is None, 10, "a gone again")
    status, _, body = lb.post("/backends/a/enable")
    assert status == 200 and b'"absent"' in body, body
    assert lb.stats()["admin_drained"] == []
    lb.wait_active(0)


def test_drain_through_worker_sigterm(worker_factory, lb_factory):
    a = worker_factory(id="a", drain_s=10)
    b = worker_factory(id="b")
    lb = lb_factory(backend=["a=" + a.addr, "b=" + b.addr], health_interval_ms=200,
                    slowstart_ms=0)

    async def go():
        ws, wid = await open_ws(lb.url("/eval"))
        if wid != "a":
            ws2, wid2 = await open_ws(lb.url("/eval"))
            assert wid2 == "a"
            await ws.close()
            ws = ws2
        # A slow run keeps `a` draining (not gone) for a while, once it runs.
        await util.send_json(ws, util.run_msg(
            "python3", "import time; print('go', flush=True); time.sleep(3); print(9)",
            timeout_ms=20000))
        assert (await util.recv_json(ws, 20))["data"] == "go\n"
        a.stop(signal.SIGTERM)
        picked, failures = [], []
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            try:
                c, w = await open_ws(lb.url("/eval"))
                picked.append(w)
                await c.close()
            except Exception as e:
                failures.append(repr(e))
            await asyncio.sleep(0.05)  # clients keep arriving through the drain: the scenario
        r = await asyncio.wait_for(util.collect_run(ws, "r1"), 20)
        assert r.stdout == "9\n", r
        await ws.close()
        return picked, failures
    picked, failures = run(go(), timeout=60)
    assert failures == [], failures
    assert picked and set(picked) == {"b"}, picked
    assert a.wait(20) == 0
    lb.wait_active(0)


def test_only_draining_workers_left_means_503(worker_factory, lb_factory):
    a = worker_factory(id="a", drain_s=10)
    lb = lb_factory(backend="a=" + a.addr, health_interval_ms=60000)

    async def go():
        ws, _ = await open_ws(lb.url("/eval"))
        await util.send_json(ws, util.run_msg(
            "python3", "import time; print('go', flush=True); time.sleep(2); print(9)",
            timeout_ms=20000))
        assert (await util.recv_json(ws, 20))["data"] == "go\n"  # running
        a.stop(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, lambda: util.wait_for(
            lambda: util.http_get(a.addr, "/healthz")[0] == 503, 5, "a draining"))
        status, _, body = await asyncio.get_running_loop().run_in_executor(
            None, util.raw_http, lb.addr,
            b"GET /eval HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert status == 503 and b"no backend" in body, (status, body)
        r = await asyncio.wait_for(util.collect_run(ws, "r1"), 20)
        assert r.stdout == "9\n", r
        await ws.close()
    run(go(), timeout=60)
    assert a.wait(20) == 0
    assert lb.stats()["errors"]["all_failed"] == 0
    lb.wait_active(0)
