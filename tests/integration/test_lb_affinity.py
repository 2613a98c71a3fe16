"""Session affinity with bounded loads (--affinity): the same key reaches
the same worker across reconnects, a hot key spills over to the next worker
on the ring instead of piling up, and a lost worker moves only its own
keys."""

import asyncio
import math
import signal
import subprocess

import util
from conftest import binary
from lbutil import count_by, lb_factory, open_ws, run  # noqa: F401


async def open_with(url, headers):
    """Opens a websocket with extra request headers: (ws, worker)."""
    ws = await util.ws_connect(url, extra_headers=headers)
    return ws, (await util.recv_hello(ws))["worker"]


async def owners(url, keys):
    """Connects once per key (query sid=KEY), returns {key: worker}; every
    socket is closed before the next opens, so no load builds up."""
    out = {}
    for k in keys:
        ws, wid = await open_ws(url + "?sid=" + k)
        out[k] = wid
        await ws.close()
    return out


def affinity(lb):
    return lb.stats()["affinity"]


def test_same_key_same_worker_and_only_lost_keys_move(worker_factory, lb_factory):
    ws_ = [worker_factory(id="w%d" % i) for i in range(3)]
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_], affinity="query:sid",
                    affinity_load_factor="1.25", health_interval_ms=200, slowstart_ms=0)
    keys = ["user-%d" % i for i in range(30)]
    url = lb.url("/echo")
    first = run(owners(url, keys), timeout=60)
    again = run(owners(url, keys), timeout=60)
    assert first == again, "keys moved between reconnects: %r vs %r" % (first, again)
    # The keys spread over every worker (30 keys over 3: none is empty).
    assert set(first.values()) == {w.id for w in ws_}, count_by(first.values())
    lb.wait_active(0)
    a = affinity(lb)
    assert a["hit"] == 60 and a["down"] == 0 and a["overload"] == 0, a

    # A request without the key goes by the algorithm and says so.
    async def nokey():
        ws, _ = await open_ws(url)
        await ws.close()
    run(nokey())
    util.wait_for(lambda: affinity(lb)["no_key"] == 1, 5, "no_key counted")

    # w1 dies: its keys move, nobody else's.
    victim = ws_[1]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    util.wait_for(lambda: lb.backend(victim.id)["state"] == "down", 10, "w1 marked down")
    after = run(owners(url, keys), timeout=60)
    for k in keys:
        if first[k] == victim.id:
            assert after[k] != victim.id
        else:
            assert after[k] == first[k], "key %s moved from %s to %s" % (k, first[k], after[k])
    moved = sum(1 for k in keys if first[k] == victim.id)
    util.wait_for(lambda: affinity(lb)["down"] == moved, 5,
                  "one 'down' miss per moved key (%d): %r" % (moved, affinity(lb)))
    m = util.get_metrics(lb.admin)
    assert util.metric_labelled(m, "wslb_lb_affinity_total", 'result="hit"') == 90 - moved
    assert util.metric_labelled(m, "wslb_lb_affinity_total", 'result="down"') == moved


def test_hot_key_is_bounded(worker_factory, lb_factory):
    """Twenty sockets held open with one key: the owner takes them up to
    ceil(1.25 x mean), then the next worker on the ring does."""
    ws_ = [worker_factory(id="h%d" % i) for i in range(3)]
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_], affinity="header:X-Session",
                    slowstart_ms=0, threads=2)

    async def go():
        conns = []
        try:
            for _ in range(20):
                conns.append(await open_with(lb.url("/echo"), {"X-Session": "hot"}))
            return count_by(w for _, w in conns), conns[0][1]
        finally:
            await asyncio.gather(*(ws.close() for ws, _ in conns), return_exceptions=True)

    live, owner = run(go(), timeout=60)
    # The bound as the 20th socket came: ceil(1.25 x 20 / 3) = 9.
    cap = math.ceil(1.25 * 20 / 3)
    assert max(live.values()) <= cap, live
    assert live[owner] == cap, "the owner fills up to the bound first: %r" % live
    a = affinity(lb)
    assert a["hit"] == cap and a["overload"] == 20 - cap, a


def test_cookie_key_and_bad_flags(worker_factory, lb_factory):
    ws_ = [worker_factory(id="c%d" % i) for i in range(3)]
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_], affinity="cookie:SID",
                    slowstart_ms=0)

    async def go():
        seen = set()
        for _ in range(6):
            ws, wid = await open_with(lb.url("/echo"), {"Cookie": "theme=dark; SID=abc"})
            seen.add(wid)
            await ws.close()
        return seen
    assert len(run(go())) == 1
    for bad in (["--affinity", "path:x"], ["--affinity", "query:"],
                ["--affinity", "query:sid", "--affinity-load-factor", "0.5"],
                ["--affinity", "query:sid", "--affinity-load-factor", "x"]):
        p = subprocess.run([binary("lb")] + bad, capture_output=True, timeout=10)
        assert p.returncode == 2, (bad, p)
        assert b"--affinity" in p.stderr, p.stderr
