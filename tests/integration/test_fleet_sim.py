"""The fleet simulation (bin/fleetsim, make bench-fleet) at a tiny scale:
simulated workers publish the real state, real lbs discover every one of
them and forget them once their keys expire; in-process pickers spread
their connections over all of them."""

import subprocess

import util
from conftest import binary, sanitizer_env
from lbutil import lb_factory  # noqa: F401  (fixture)

NWORKERS = 50
PORT_BASE = 21000


def result(out):
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert line, "no RESULT line:\n%s" % out[-3000:]
    return dict(kv.split("=", 1) for kv in line[-1].split()[1:])


def fleetsim(args, **kw):
    return subprocess.Popen([binary("fleetsim")] + args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=sanitizer_env(), **kw)


def test_lbs_discover_every_simulated_worker(redis_server, lb_factory):  # noqa: F811
    lbs = [lb_factory(redis=redis_server, id="fleet-lb%d" % k, health_interval_ms=600000,
                      fall=100) for k in range(2)]
    sim = fleetsim(["--redis", redis_server, "--workers", str(NWORKERS), "--duration", "6",
                    "--port-base", str(PORT_BASE)])
    try:
        want = {"fsw-%05d" % i: "127.0.0.1:%d" % (PORT_BASE + i) for i in range(NWORKERS)}

        def discovered(lb):
            bes = lb.stats()["backends"]
            return ({b["id"]: b["addr"] for b in bes} == want and
                    all(b["source"] == "redis" and b["heartbeat_age_ms"] is not None
                        for b in bes))
        for lb in lbs:
            util.wait_for(lambda: discovered(lb), 5, "%s to discover all %d simulated workers"
                          % (lb.name, NWORKERS))
        out, err = sim.communicate(timeout=30)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.communicate()
    assert sim.returncode == 0, err
    res = result(out)
    assert int(res["connected"]) == NWORKERS and int(res["joins"]) == NWORKERS
    # Several heartbeats each in 6 s, at one a second.
    assert NWORKERS * 4 <= int(res["sets"]) <= NWORKERS * 8
    # Once they stop publishing, their keys expire and every lb forgets them.
    for lb in lbs:
        util.wait_for(lambda: lb.stats()["backends"] == [], 10,
                      "%s to drop the simulated workers" % lb.name)


def test_pickers_spread_connections_over_every_worker(redis_server):
    sim = fleetsim(["--redis", redis_server, "--workers", str(NWORKERS), "--pickers", "2",
                    "--conns", "500", "--arrive", "1", "--duration", "30", "--iters", "1000"])
    out, err = sim.communicate(timeout=60)
    assert sim.returncode == 0, err
    res = result(out)
    assert int(res["discovered_min"]) == NWORKERS
    assert int(res["conns"]) == 500 and int(res["pick_fail"]) == 0
    # Ten each on average: leastconn over global counts leaves none far
    # behind (the bench reports how far ahead the busiest one gets).
    assert int(res["max"]) < 30
    assert float(res["count_err_rel"]) < 1.0
