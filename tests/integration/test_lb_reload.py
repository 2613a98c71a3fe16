"""SIGHUP reloads the lb's configuration (--config file and command line):
backends added, removed and re-weighted, the algorithm and the log level
changed, open tunnels untouched; a bad file changes nothing and counts in
reload_failed; options that need a rebind say so; `lb --check`."""

import asyncio
import os
import signal
import subprocess

import util
from conftest import binary
from lbutil import lb_factory, open_ws  # noqa: F401


def run(coro):
    return asyncio.run(coro)


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def test_reload_applies_backends_algo_and_keeps_tunnels(worker_factory, lb_factory, tmp_path):
    w1 = worker_factory(id="w1")
    w2 = worker_factory(id="w2")
    conf = str(tmp_path / "lb.conf")
    write(conf, "backend = w1=%s\nalgo = leastconn\n" % w1.addr)
    lb = lb_factory(config=conf)
    st = lb.stats()
    assert st["config_generation"] == 1 and st["reload_failed"] == 0
    loaded0 = st["config_loaded_at"]

    async def go():
        ws, wid = await open_ws(lb.url("/echo"))
        assert wid == "w1"
        # Swap w1 for w2 with weight 3, another algorithm, debug logs.
        write(conf, "backend = w2=%s,weight=3\nalgo = roundrobin\nlog-level = debug\n" % w2.addr)
        lb.stop(signal.SIGHUP)
        util.wait_for(lambda: lb.stats()["config_generation"] == 2, 10, "generation 2")
        st = lb.stats()
        assert st["algo"] == "roundrobin" and st["reload_failed"] == 0
        assert st["config_loaded_at"] >= loaded0
        ids = {b["id"]: b for b in st["backends"]}
        assert set(ids) == {"w2"} and ids["w2"]["weight"] == 3
        # The tunnel to the removed w1 still echoes.
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), 10) == "still here"
        ws2, wid2 = await open_ws(lb.url("/echo"))
        assert wid2 == "w2"
        await ws2.close()
        await ws.close()
    run(go())
    text = lb.stderr_text()
    assert any("reload: backend w1 " in line and "removed" in line
               for line in text.splitlines()), text[-3000:]
    assert "log level debug" in text


def test_bad_reload_changes_nothing(worker_factory, lb_factory, tmp_path):
    w1 = worker_factory(id="w1")
    conf = str(tmp_path / "lb.conf")
    write(conf, "backend = w1=%s\n" % w1.addr)
    lb = lb_factory(config=conf)
    write(conf, "backend = w1=%s\nalgo = nosuch\n" % w1.addr)
    lb.stop(signal.SIGHUP)
    util.wait_for(lambda: lb.stats()["reload_failed"] == 1, 10, "reload_failed counted")
    write(conf, "backend = w1=%s\nno-such-option = 1\n" % w1.addr)
    lb.stop(signal.SIGHUP)
    util.wait_for(lambda: lb.stats()["reload_failed"] == 2, 10, "second reload_failed")
    st = lb.stats()
    assert st["config_generation"] == 1 and st["algo"] == "leastconn"
    assert [b["id"] for b in st["backends"]] == ["w1"]
    text = lb.stderr_text()
    assert "lb.conf:2: unknown option 'no-such-option'" in text
    assert "--algo: unknown algorithm 'nosuch'" in text
    metrics = util.get_metrics(lb.admin)
    assert util.metric_sum(metrics, "wslb_lb_reload_failed_total") == 2
    assert util.metric_sum(metrics, "wslb_lb_config_generation") == 1

    async def go():
        ws, wid = await open_ws(lb.url("/echo"))
        assert wid == "w1"
        await ws.close()
    run(go())


def test_rebind_options_wait_for_a_takeover(worker_factory, lb_factory, tmp_path):
    w1 = worker_factory(id="w1")
    conf = str(tmp_path / "lb.conf")
    write(conf, "backend = w1=%s\n" % w1.addr)
    lb = lb_factory(config=conf)
    other = "127.0.0.1:%d" % util.free_port()
    write(conf, "backend = w1=%s\nlisten = %s\nthreads = 2\n" % (w1.addr, other))
    lb.stop(signal.SIGHUP)
    util.wait_for(lambda: lb.stats()["config_generation"] == 2, 10, "generation 2")
    text = lb.stderr_text()
    assert "--listen changed: it takes effect through a takeover" in text
    assert "--threads changed" in text
    # Still serving where it was.
    assert util.try_http_get(lb.admin, "/healthz") is not None

    async def go():
        ws, _ = await open_ws(lb.url("/echo"))
        await ws.close()
    run(go())


def test_check_flag(tmp_path):
    exe = binary("lb")
    good = str(tmp_path / "good.conf")
    bad = str(tmp_path / "bad.conf")
    write(good, "backend = a=127.0.0.1:9\nalgo = p2c\n")
    write(bad, "backend = a=127.0.0.1:9\nalgo = p2c\nrise = zero\n")
    r = subprocess.run([exe, "--config", good, "--check"], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    r = subprocess.run([exe, "--config", bad, "--check"], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert r.returncode == 1
    assert "bad.conf:3" in r.stderr and "rise" in r.stderr


def test_reloads_under_threaded_traffic(worker_factory, lb_factory, tmp_path):
    """Four proxy threads carry handshakes and echoes while SIGHUPs swap the
    backends, the algorithm, the limits, the timeouts and the trusted
    networks: nothing fails, and under `make tsan-test` no race shows."""
    ws = [worker_factory(id="w%d" % i) for i in range(3)]
    conf = str(tmp_path / "lb.conf")
    confs = [
        "backend = w0=%s\nbackend = w1=%s\nalgo = leastconn\n" % (ws[0].addr, ws[1].addr),
        "backend = w1=%s,weight=4\nbackend = w2=%s\nalgo = p2c\nlimit-conns = 1000\n"
        "trusted-proxies = 10.0.0.0/8\ntimeout-idle-s = 600\nretries = 1\n"
        % (ws[1].addr, ws[2].addr),
        "backend = w0=%s\nbackend = w2=%s,weight=2\nalgo = roundrobin\nlimit-rate = 100000\n"
        "trusted-proxies = 127.0.0.0/8\naccess-log = false\nmax-conns = 5000\n"
        % (ws[0].addr, ws[2].addr),
    ]
    write(conf, confs[0])
    lb = lb_factory(config=conf, threads=4)
    bench = binary("wsbench")
    url = lb.url("/echo")
    hs = subprocess.Popen([bench, "handshake", "-q", "-c", "6", "-d", "6", url],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rtt = subprocess.Popen([bench, "rtt", "-q", "-c", "6", "-d", "6", url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for gen in range(2, 11):
            write(conf, confs[(gen - 1) % len(confs)])
            lb.stop(signal.SIGHUP)
            util.wait_for(lambda: lb.stats()["config_generation"] == gen, 10,
                          "generation %d" % gen)
        # Every reload happened under traffic: both loads still run.
        overlapped = hs.poll() is None and rtt.poll() is None
        hs_out, _ = hs.communicate(timeout=60)
        rtt_out, _ = rtt.communicate(timeout=60)
    finally:
        for p in (hs, rtt):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert overlapped, "the reloads outlasted the traffic"
    for out, done in ((hs_out, "handshakes"), (rtt_out, "msgs")):
        res = dict(kv.split("=", 1) for kv in out.strip().splitlines()[-1].split()[1:])
        assert res["hs_fail"] == "0" and res["errors"] == "0", out[-1500:]
        assert int(res[done]) > 0, out[-1500:]  # traffic went through, not only no errors
    assert lb.stats()["reload_failed"] == 0
