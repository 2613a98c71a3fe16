"""Rebalancing after a scale-out (the worker's --rebalance): 40 long-lived
websockets on two workers, a third joins; the old workers close their idle
excess with 1012, the clients reconnect through the lb and land on the new
one, until max/mean is within 1.1. Evaluations in flight are never cut, and
the clients see 1012 and nothing else."""

import asyncio
import time

import util
from lbutil import count_by, lb_factory, run  # noqa: F401

RB = dict(rebalance=True, rebalance_idle_s=1, rebalance_hold_s=1, rebalance_rate=10)


class Client:
    def __init__(self):
        self.worker = None
        self.codes = []   # close codes seen, in order
        self.errors = []  # anything that is not a clean 1012 and reconnect
        self.result = None


async def hold(url, c, stop, code=None):
    """Keeps one websocket open through the lb, reconnecting on 1012, until
    stop is set. With code, first runs it and keeps its RunResult."""
    first = True
    while not stop.is_set():
        try:
            ws = await util.ws_connect(url)
            c.worker = (await util.recv_hello(ws))["worker"]
            if first and code:
                c.result = await util.arun(ws, "python3", code, timeout_ms=30000, deadline=60)
            first = False
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            c.errors.append(repr(e))
            return
        closed = asyncio.ensure_future(ws.wait_closed())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([closed, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not closed.done():
            closed.cancel()
            await ws.close()
            return
        stopped.cancel()
        c.codes.append(ws.close_code)
        if ws.close_code != 1012:
            c.errors.append("closed with %s" % ws.close_code)
            return


def ratio(counts, n):
    vals = list(counts.values()) + [0] * (n - len(counts))
    return max(vals) / (sum(vals) / n)


def test_scale_out_rebalances_idle_sockets(redis_server, worker_factory, lb_factory):
    old = [worker_factory(id="r%d" % i, redis=redis_server, max_evals=4, **RB) for i in range(2)]
    lb = lb_factory(redis=redis_server, slowstart_ms=0)
    util.wait_for(lambda: {b["id"] for b in lb.stats()["backends"]} == {"r0", "r1"}, 10,
                  "lb to discover r0 and r1")
    clients = [Client() for _ in range(40)]
    box = {}

    async def go():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Four sockets run a 4 s evaluation as the third worker joins: they
        # are not idle and must not be touched.
        tasks = [asyncio.ensure_future(hold(lb.url("/eval"), c, stop,
                                            "import time; time.sleep(4); print('done')"
                                            if i < 4 else None))
                 for i, c in enumerate(clients)]
        try:
            await loop.run_in_executor(None, lambda: util.wait_for(
                lambda: sum(1 for c in clients if c.worker) == 40, 30, "40 sockets open"))
            box["before"] = count_by(c.worker for c in clients)
            t0 = time.monotonic()
            box["new"] = await loop.run_in_executor(
                None, lambda: worker_factory(id="r2", redis=redis_server, max_evals=4, **RB))

            def balanced():
                bad = [c.errors for c in clients if c.errors]
                assert not bad, bad
                counts = count_by(c.worker for c in clients)
                return len(counts) == 3 and ratio(counts, 3) <= 1.1
            await loop.run_in_executor(None, lambda: util.wait_for(
                balanced, 30, "max/mean <= 1.1: %r" % count_by(c.worker for c in clients)))
            box["took"] = time.monotonic() - t0
            box["after"] = count_by(c.worker for c in clients)
            # The workers' own view of the fleet comes down too (next tick).
            await loop.run_in_executor(None, lambda: util.wait_for(
                lambda: 0 < util.get_metrics(old[0].addr)["worker_rebalance_fleet_ratio"] <= 1.1,
                10, "r0 to see max/mean <= 1.1"))
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    run(go(), timeout=120)
    print("rebalance: %r -> %r in %.1fs" % (box["before"], box["after"], box["took"]))
    assert box["before"] == {"r0": 20, "r1": 20}, box["before"]
    # Nobody saw anything but 1012, and every evaluation ran to its end.
    assert not [c.errors for c in clients if c.errors]
    assert all(code == 1012 for c in clients for code in c.codes)
    for c in clients[:4]:
        assert c.result is not None and c.result.verdict == "ok" and c.result.stdout == "done\n", \
            c.result
    # Moved: each old worker's excess over ceil(40 / 3) = 14, about 12 in
    # all, never the whole fleet.
    moved = sum(len(c.codes) for c in clients)
    assert 6 <= moved <= 16, moved
    shed = sum(util.metric_labelled(util.get_metrics(w.addr), "worker_rebalance_shed_total",
                                    'why="over_mean"') for w in old + [box["new"]])
    assert shed == moved
    assert util.metric_labelled(util.get_metrics(box["new"].addr), "worker_rebalance_shed_total",
                                'why="over_mean"') == 0
    # The lb shows each worker's count from its published state.
    util.wait_for(lambda: sum(b["rebalance_shed"] or 0 for b in lb.stats()["backends"]) == moved,
                  10, "the lb's /stats to show %d shed" % moved)
    assert all((b["rebalance_shed"] or 0) == 0 for b in lb.stats()["backends"] if b["id"] == "r2")
    lb.wait_active(0, timeout=20)


def test_rebalance_needs_redis(worker_factory):
    w = worker_factory(id="nr", ready=False, rebalance=True)
    assert w.wait(10) == 1
    assert "--rebalance needs --redis" in w.stderr_text()
