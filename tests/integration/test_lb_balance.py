"""Choosing a worker: leastconn against roundrobin with long-lived
connections, leastload away from a worker busy running code, and global
counts through Redis for several (or restarted) lbs."""

import asyncio
import random
import time

import util
from lbutil import count_by, lb_factory, open_ws, run  # noqa: F401


def imbalance(live, ids):
    """max/mean of live connections per worker (workers with none count)."""
    counts = [live.get(i, 0) for i in ids]
    mean = sum(counts) / len(counts)
    return max(counts) / mean


async def churn(url, ids, seed):
    """Opens 200 websockets, closes most of those on the first two workers
    in random order (their users left), then opens 100 more. Returns the
    live count per worker, read from each hello."""
    rng = random.Random(seed)
    conns = []  # (ws, worker)
    try:
        for _ in range(200):
            conns.append(await open_ws(url))
        leaving = [c for c in conns if c[1] in ids[:2]]
        rng.shuffle(leaving)
        leaving = leaving[:int(len(leaving) * 0.8)]
        for c in leaving:
            await c[0].close()
            conns.remove(c)
        for _ in range(100):
            conns.append(await open_ws(url))
        return count_by(wid for _, wid in conns)
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in conns), return_exceptions=True)


def test_leastconn_balances_where_roundrobin_does_not(worker_factory, lb_factory):
    ws_ = [worker_factory(id="w%d" % i) for i in range(4)]
    ids = [w.id for w in ws_]
    backends = ["%s=%s" % (w.id, w.addr) for w in ws_]
    seed = random.randrange(1 << 30)

    lc = lb_factory(backend=backends, algo="leastconn", slowstart_ms=0)
    live = run(churn(lc.url("/echo"), ids, seed), timeout=120)
    r_lc = imbalance(live, ids)
    lc.wait_active(0, timeout=20)

    rr = lb_factory(backend=backends, algo="roundrobin", slowstart_ms=0)
    live_rr = run(churn(rr.url("/echo"), ids, seed), timeout=120)
    r_rr = imbalance(live_rr, ids)
    rr.wait_active(0, timeout=20)

    print("leastconn max/mean %.3f %r; roundrobin %.3f %r" % (r_lc, live, r_rr, live_rr))
    assert r_lc < 1.1, "leastconn max/mean %.2f: %r (seed %d)" % (r_lc, live, seed)
    assert r_rr >= 1.1, "roundrobin max/mean %.2f: %r (seed %d)" % (r_rr, live_rr, seed)


def test_leastload_avoids_a_worker_running_code(redis_server, worker_factory, lb_factory):
    busy = worker_factory(id="busy", redis=redis_server, max_evals=4)
    idle = worker_factory(id="idle", redis=redis_server, max_evals=4)
    lb = lb_factory(redis=redis_server, algo="leastload", slowstart_ms=0)
    util.wait_for(lambda: {b["id"] for b in lb.stats()["backends"]} >= {"busy", "idle"}, 10,
                  "lb to discover both workers")

    async def go():
        # Three sockets straight to `busy`, each running a slow evaluation.
        direct = []
        for i in range(3):
            ws = await util.ws_connect(busy.url("/eval"))
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", "import time; time.sleep(8)",
                                                  run_id="s%d" % i, timeout_ms=30000))
            direct.append(ws)
        # And three idle sockets straight to `idle`: by connections alone it
        # is the busier one (3 + the lb's), by load it is not.
        for i in range(3):
            ws = await util.ws_connect(idle.url("/eval"))
            await util.recv_hello(ws)
            direct.append(ws)
        await asyncio.get_running_loop().run_in_executor(None, lambda: util.wait_for(
            lambda: (lb.backend("busy") or {}).get("load", 0) >= 3, 10,
            "lb to see busy's evaluations"))
        t0 = time.monotonic()
        through = []
        for _ in range(4):
            through.append(await open_ws(lb.url("/eval")))
        picked = count_by(w for _, w in through)
        assert time.monotonic() - t0 < 6, "evaluations finished before the check"
        for ws, _ in through:
            await ws.close()
        for ws in direct:
            await ws.close()
        return picked
    picked = run(go(), timeout=60)
    assert picked.get("busy", 0) == 0, picked
    lb.wait_active(0)


def test_two_lbs_share_counts_through_redis(redis_server, worker_factory, lb_factory):
    ws_ = [worker_factory(id="w%d" % i, redis=redis_server) for i in range(4)]
    ids = [w.id for w in ws_]
    lb1 = lb_factory(redis=redis_server, algo="leastconn", slowstart_ms=0)
    lb2 = lb_factory(redis=redis_server, algo="leastconn", slowstart_ms=0)
    for lb in (lb1, lb2):
        util.wait_for(lambda: {b["id"] for b in lb.stats()["backends"]} >= set(ids), 10,
                      "lb to discover the workers")

    async def go():
        conns = []
        try:
            # Other traffic (say a third lb) already sits on w0 and w1.
            for w in ws_[:2]:
                for _ in range(20):
                    ws = await util.ws_connect(w.url("/echo"))
                    await util.recv_hello(ws)
                    conns.append((ws, w.id))
            # The lbs learn it from the workers' next heartbeat.
            def known(lb):
                return all((lb.backend(w.id) or {}).get("conns_global", 0) >= 20
                           for w in ws_[:2])
            await asyncio.get_running_loop().run_in_executor(None, lambda: util.wait_for(
                lambda: known(lb1) and known(lb2), 10, "both lbs to count w0's and w1's 20"))
            for i in range(80):
                lb = lb1 if i % 2 == 0 else lb2
                conns.append(await open_ws(lb.url("/echo")))
                # Arrivals spread over ~2 s, so that each lb learns of the
                # other's connections (a heartbeat later) while they come:
                # the traffic under test, not a wait for an event.
                await asyncio.sleep(0.02)
            return count_by(w for _, w in conns)
        finally:
            await asyncio.gather(*(ws.close() for ws, _ in conns), return_exceptions=True)
    live = run(go(), timeout=120)
    # Each lb alone would split its 40 evenly and leave w0/w1 at 40 against
    # 20 (max/mean 1.33); with global counts they fill w2 and w3 first.
    r = imbalance(live, ids)
    print("two lbs: max/mean %.3f %r" % (r, live))
    assert r < 1.2, "max/mean %.2f: %r" % (r, live)
    lb1.wait_active(0)
    lb2.wait_active(0)


def test_restarted_lb_does_not_herd(redis_server, worker_factory, lb_factory):
    ws_ = [worker_factory(id="w%d" % i, redis=redis_server) for i in range(4)]
    ids = [w.id for w in ws_]

    def start():
        lb = lb_factory(redis=redis_server, algo="leastconn")
        util.wait_for(lambda: {b["id"] for b in lb.stats()["backends"]} >= set(ids), 10,
                      "lb to discover the workers")
        return lb

    async def fill(lb, n):
        return [await open_ws(lb.url("/echo")) for _ in range(n)]

    lb = start()
    first = run(fill(lb, 60), timeout=60)
    # The lb dies: its clients are cut and reconnect at once to its successor.
    lb.stop(9)
    lb.wait(10)

    async def close_all(conns):
        await asyncio.gather(*(ws.close() for ws, _ in conns), return_exceptions=True)
    run(close_all(first))
    lb2 = start()
    again = run(fill(lb2, 60), timeout=60)
    live = count_by(w for _, w in again)
    run(close_all(again))
    r = imbalance(live, ids)
    print("restarted lb: max/mean %.3f %r" % (r, live))
    assert r < 1.2, "max/mean %.2f after restart: %r" % (r, live)
    lb2.wait_active(0)
