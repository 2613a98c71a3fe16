"""wslbctl against real lbs, workers and Redis: status (table, JSON, the
disagreement warning, workers only Redis knows), drain/enable --wait, the
errors an operator meets, and rolling restarts of a local cluster while
clients run evaluations through both lbs."""

import asyncio
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import util
import wslbctl_restart
from conftest import SANITIZER_MARKS, binary, sanitizer_env
from lbutil import lb_factory, open_ws  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
RESTART = "%s %s" % (sys.executable, os.path.join(HERE, "wslbctl_restart.py"))


def ctl(*args, timeout=120, env=None, check=None):
    """Runs wslbctl; returns (exit status, stdout, stderr)."""
    r = subprocess.run([binary("wslbctl")] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       env=env or sanitizer_env())
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    for m in SANITIZER_MARKS:
        assert m not in err, "wslbctl reported a sanitizer error:\n" + err[-4000:]
    if check is not None:
        assert r.returncode == check, "wslbctl %s -> %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(args), r.returncode, out[-4000:], err[-4000:])
    return r.returncode, out, err


def lbargs(*lbs):
    out = []
    for lb in lbs:
        out += ["--lb", "http://" + lb.admin]
    return out


def status_json(lbs, redis=None):
    args = ["status", "--json"] + lbargs(*lbs) + (["--redis", redis] if redis else [])
    rc, out, _ = ctl(*args)
    return rc, json.loads(out)


def backend(doc, bid):
    for b in doc["backends"]:
        if b["id"] == bid:
            return b
    return None


def wait_lbs_know(lbs, ids, state="up", timeout=20):
    def ok():
        for lb in lbs:
            st = {b["id"]: b["state"] for b in lb.stats()["backends"]}
            if any(st.get(i) != state for i in ids):
                return False
        return True
    util.wait_for(ok, timeout, "every lb to list %s as %s" % (ids, state), interval=0.1)


# ---- a cluster whose workers the rollout command can restart ----------------------------

class Cluster:
    """Redis, n workers started through wslbctl_restart (so its restarts are
    the real thing) and two lbs discovering them."""

    def __init__(self, redis, lb_factory, n, nlbs=2):
        self.dir = tempfile.mkdtemp(prefix="wslb-ctl-")
        self.redis = redis
        self.r = util.redis_client(redis)
        self.ids = ["w%d" % i for i in range(1, n + 1)]
        self.addrs = {}
        exe = binary("worker")
        for wid in self.ids:
            addr = "127.0.0.1:%d" % util.free_port()
            self.addrs[wid] = addr
            wslbctl_restart.start(self.dir, wid, [exe, "--listen", addr, "--id", wid, "--redis",
                                                  redis, "--drain-s", "10"], env=sanitizer_env())
        for wid in self.ids:
            util.wait_for(lambda: self.state(wid) is not None, 20, "%s to register" % wid)
        self.lbs = [lb_factory(redis=redis, id="lb%d" % (i + 1), health_interval_ms=200)
                    for i in range(nlbs)]
        wait_lbs_know(self.lbs, self.ids)

    def state(self, wid):
        raw = self.r.get("wslb:worker:" + wid)
        return json.loads(raw) if raw else None

    def pid(self, wid):
        with open(os.path.join(self.dir, wid + ".json")) as f:
            return json.load(f)["pid"]

    def flag(self, name):
        open(os.path.join(self.dir, name), "w").close()

    def args(self):
        return lbargs(*self.lbs) + ["--redis", self.redis]

    def close(self):
        killed = wslbctl_restart.stop_all(self.dir)
        bad = []
        for name in os.listdir(self.dir):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                if any(m in text for m in SANITIZER_MARKS):
                    bad.append(name)
                    sys.stdout.write("\n---- %s ----\n%s\n" % (name, text[-8000:]))
        shutil.rmtree(self.dir, ignore_errors=True)
        assert not killed, "workers ignored SIGTERM at teardown: %s" % killed
        assert not bad, "sanitizer reports in %s" % bad


@pytest.fixture
def cluster_factory(redis_server, lb_factory):  # noqa: F811
    made = []

    def make(n, nlbs=2):
        c = Cluster(redis_server, lb_factory, n, nlbs)
        made.append(c)
        return c
    try:
        yield make
    finally:
        for c in made:
            c.close()


class EvalClients:
    """bin/wsbench eval: clients running evaluations in a loop through the
    lbs, reconnecting when a draining worker closes them with 1001 and
    resending a run it never started (the bench's rolling-deploy client)."""

    def __init__(self, urls, conns=4):
        self.proc = subprocess.Popen(
            [binary("wsbench"), "eval", "-q", "-c", str(conns), "-d", "300", "--code",
             "import time; time.sleep(0.05)"] + urls,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=sanitizer_env())

    def finish(self):
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        out = out.decode("utf-8", "replace")
        line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        assert line, "no RESULT line from wsbench:\n%s\n%s" % (out[-3000:], err[-3000:])
        return dict(kv.split("=", 1) for kv in line[-1].split()[1:] if "=" in kv)


# ---- status -----------------------------------------------------------------------------

def test_status_table_json_and_disagreement(cluster_factory):
    c = cluster_factory(3)
    lb1, lb2 = c.lbs
    # Two websockets through lb1 and one through lb2, held open.
    async def hold():
        held = []
        for url in (lb1.url(), lb1.url(), lb2.url()):
            ws, _ = await open_ws(url)
            held.append(ws)
        return held

    loop = asyncio.new_event_loop()
    held = loop.run_until_complete(hold())
    try:
        util.wait_for(lambda: sum(b["active"] for b in lb1.stats()["backends"]) == 2, 10,
                      "lb1 to hold 2 websockets")
        util.wait_for(lambda: sum(c.state(w)["conns"] for w in c.ids) == 3, 10,
                      "the workers to publish their 3 websockets")
        # Drained on lb1 only: the lbs disagree about w2.
        assert lb1.post("/backends/w2/drain")[0] == 200
        rc, out, err = ctl("status", *c.args(), check=0)
        lines = out.splitlines()
        assert re.match(r"lb1 +http://%s +leastconn, 3 backends, config generation 1$"
                        % lb1.admin, lines[0]), out
        assert re.match(r"redis +%s wslb: +3 workers registered$" % c.redis, lines[2]), out
        head = [ln for ln in lines if ln.startswith("ID ")][0].split()
        assert head == ["ID", "ADDRESS", "LB1", "LB2", "WS:LB1", "WS:LB2", "WS:ALL", "RUNNING",
                        "QUEUED", "VERSION", "HEARTBEAT"], head
        rows = {ln.split()[0]: ln.split() for ln in lines if re.match(r"w\d ", ln)}
        assert sorted(rows) == ["w1", "w2", "w3"], out
        assert rows["w2"][1] == c.addrs["w2"] and rows["w2"][2:4] == ["drained", "up"], out
        assert rows["w2"][-1] == "!" and rows["w1"][-1] != "!", out
        assert sum(int(r[4]) for r in rows.values()) == 2, out   # lb1's websockets
        assert sum(int(r[5]) for r in rows.values()) == 1, out   # lb2's
        assert sum(int(r[6]) for r in rows.values()) == 3, out   # every lb's, from Redis
        version = subprocess.run([binary("worker"), "--version"], stdout=subprocess.PIPE,
                                 text=True, timeout=10).stdout.split()[-1]
        assert all(r[9] == version for r in rows.values()), out
        assert all(re.match(r"\d\.\ds$", r[10]) for r in rows.values()), out
        assert "warning: w2: the lbs disagree: drained on lb1, up on lb2" in err, err

        rc, doc = status_json(c.lbs, c.redis)
        assert rc == 0
        assert [lb["ok"] for lb in doc["lbs"]] == [True, True]
        assert [lb["config_generation"] for lb in doc["lbs"]] == [1, 1]
        w2 = backend(doc, "w2")
        assert w2["lbs"]["lb1"]["state"] == "drained" and w2["lbs"]["lb1"]["health"] == "up"
        assert w2["lbs"]["lb2"]["state"] == "up"
        assert w2["redis"]["state"] == "up" and w2["version"] == version
        assert w2["evals_running"] == 0 and w2["heartbeat_age_ms"] < 3000
        assert any("disagree" in w for w in w2["warnings"]), w2
        assert sum(b["websockets_global"] for b in doc["backends"]) == 3
        assert not backend(doc, "w1")["warnings"]
        assert any(w.startswith("w2: the lbs disagree") for w in doc["warnings"])
    finally:
        for ws in held:
            loop.run_until_complete(ws.close())
        loop.close()


def test_status_lists_workers_only_redis_knows(redis_server, worker_factory, lb_factory):  # noqa: F811
    # Static lbs without Redis know w1 and w2; w3 only registered itself.
    ws = [worker_factory(id="w%d" % i, redis=redis_server) for i in (1, 2, 3)]
    backends = ["w1=" + ws[0].addr, "w2=" + ws[1].addr]
    lb1 = lb_factory(backend=backends)
    lb2 = lb_factory(backend=backends)
    r = util.redis_client(redis_server)
    util.wait_for(lambda: len(r.smembers("wslb:workers")) == 3, 10, "3 registrations")
    rc, out, err = ctl("status", *lbargs(lb1, lb2), "--redis", redis_server, check=0)
    row = [ln.split() for ln in out.splitlines() if ln.startswith("w3 ")][0]
    assert row[1] == ws[2].addr and row[2:6] == ["-", "-", "-", "-"], out
    assert "warning: w3: registered in Redis (%s) but unknown to every lb" % ws[2].addr in err
    # Without --redis the lbs are all there is: w3 does not exist.
    rc, out, err = ctl("status", *lbargs(lb1, lb2), check=0)
    assert "w3" not in out and "w1 " in out
    # A static backend without Redis on the lb: its figures come from nobody.
    rc, doc = status_json([lb1])
    assert backend(doc, "w1")["version"] is None and backend(doc, "w1")["evals_running"] is None


# ---- drain / enable -------------------------------------------------------------------

def test_drain_enable_wait(worker_factory, lb_factory):  # noqa: F811
    w1, w2 = worker_factory(id="w1"), worker_factory(id="w2")
    backends = ["w1=" + w1.addr, "w2=" + w2.addr]
    lb1, lb2 = lb_factory(backend=backends), lb_factory(backend=backends)
    loop = asyncio.new_event_loop()
    try:
        # A websocket through lb2 on w1.
        async def open_on_w1():
            for _ in range(20):
                ws, wid = await open_ws(lb2.url())
                if wid == "w1":
                    return ws
                await ws.close()
            raise AssertionError("never reached w1")
        ws = loop.run_until_complete(open_on_w1())

        # --wait with a short timeout: the websocket stays, so it times out.
        rc, out, err = ctl("drain", "w1", "--wait", "--timeout", "1", *lbargs(lb1, lb2), check=1)
        assert "w1: drained on lb1, lb2" in out
        assert "timed out after 1s: w1 holds 1 websocket(s) from the lbs" in err, err
        assert lb1.backend("w1")["admin_drain"] and lb2.backend("w1")["admin_drain"]

        # --wait returns once the websocket is gone, not before.
        p = subprocess.Popen([binary("wslbctl"), "drain", "w1", "--wait", "--timeout", "30"]
                             + lbargs(lb1, lb2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=sanitizer_env())
        time.sleep(1.0)  # the observable fact is that it has not returned yet
        assert p.poll() is None, "drain --wait returned while a websocket was open"
        loop.run_until_complete(ws.close())
        out, err = p.communicate(timeout=15)
        assert p.returncode == 0, err
        assert b"no websockets left after" in out
        # New websockets avoid it meanwhile.
        for _ in range(4):
            ws, wid = loop.run_until_complete(open_ws(lb1.url()))
            loop.run_until_complete(ws.close())
            assert wid == "w2"

        rc, out, err = ctl("enable", "w1", "--wait", *lbargs(lb1, lb2), check=0)
        assert "w1: enabled on lb1, lb2" in out and "up on every lb after" in out
        assert lb1.backend("w1")["state"] == "up" and lb2.backend("w1")["state"] == "up"
    finally:
        loop.close()


def test_errors(worker_factory, lb_factory):  # noqa: F811
    w1 = worker_factory(id="w1")
    tmp = tempfile.mkdtemp(prefix="wslb-ctl-tok-")
    try:
        token = "adm-" + os.urandom(8).hex()
        good, bad = os.path.join(tmp, "good"), os.path.join(tmp, "bad")
        with open(good, "w") as f:
            f.write(token + "\n")
        with open(bad, "w") as f:
            f.write("not-the-token\n")
        lb = lb_factory(backend="w1=" + w1.addr, admin_token_file=good)
        dead = "127.0.0.1:%d" % util.free_port()

        # An unreachable lb: status shows the rest and fails; drain fails.
        rc, out, err = ctl("status", *lbargs(lb), "--lb", "http://" + dead, check=1)
        assert "lb2 (http://%s): cannot reach it: connect %s: Connection refused" % (dead, dead) \
            in err, err
        assert re.search(r"\nw1 .* up +\? ", out), out
        rc, out, err = ctl("drain", "w1", "--lb", "http://" + dead, check=1)
        assert "Connection refused" in err
        # Redis that does not answer
        rc, out, err = ctl("status", *lbargs(lb), "--redis", dead, check=1)
        assert "redis %s: cannot reach it" % dead in err, err

        # Tokens: none, a wrong one, the right one.
        rc, out, err = ctl("drain", "w1", *lbargs(lb), check=1)
        assert "401 unauthorized: the lb wants an admin token (--admin-token-file FILE)" in err
        rc, out, err = ctl("drain", "w1", *lbargs(lb), "--admin-token-file", bad, check=1)
        assert "401 unauthorized: the admin token was refused" in err, err
        assert not lb.backend("w1")["admin_drain"]
        ctl("drain", "w1", *lbargs(lb), "--admin-token-file", good, check=0)
        assert lb.backend("w1")["admin_drain"]
        ctl("enable", "w1", *lbargs(lb), "--admin-token-file", good, check=0)
        rc, out, err = ctl("drain", "w1", *lbargs(lb), "--admin-token-file",
                           os.path.join(tmp, "missing"), check=1)
        assert "--admin-token-file" in err and "No such file" in err

        # An unknown id names the known ones.
        rc, out, err = ctl("drain", "nope", *lbargs(lb), "--admin-token-file", good, check=1)
        assert "unknown backend id 'nope' on every lb (known: w1)" in err, err
        rc, out, err = ctl("rollout", "nope", *lbargs(lb), "--exec", "true", check=1)
        assert "rollout refused: unknown backend id 'nope' (known: w1)" in err, err
        # A rollout needs every lb.
        rc, out, err = ctl("rollout", *lbargs(lb), "--lb", dead, "--exec", "true", check=1)
        assert "rollout refused: lb2" in err and "a rollout needs every lb" in err, err

        # Usage errors: exit status 2.
        for args, msg in ((["status", "--lb", "https://" + lb.admin], "https is not supported"),
                          (["frobnicate"], "unknown command 'frobnicate'"),
                          ([], "no command"),
                          (["drain"] + lbargs(lb), "name the backend id"),
                          (["status"], "give at least one --lb URL"),
                          (["rollout"] + lbargs(lb), "--exec CMD is required"),
                          (["status", "--batch", "0"] + lbargs(lb), "--batch")):
            rc, out, err = ctl(*args)
            assert rc == 2 and msg in err, (args, rc, err)
        rc, out, err = ctl("--version", check=0)
        assert re.match(r"wslbctl \d+\.\d+\.\d+\n$", out), out
        rc, out, err = ctl("--help", check=0)
        assert "rollout [ID...]" in out and "--drain-timeout S" in out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- rollout ------------------------------------------------------------------------------

def summary_rows(out):
    """{worker: [result, attempts, time, notes]} from the summary table."""
    lines = out.splitlines()
    start = [i for i, ln in enumerate(lines) if ln.startswith("WORKER ")]
    assert start, "no summary table:\n" + out[-4000:]
    rows = {}
    for ln in lines[start[-1] + 1:]:
        if ln.startswith("rollout: "):
            break
        m = re.match(r"(\S+)\s+(ok|FAILED|interrupted|not started)\s+(\d+)\s+(\S+)\s*(.*)$", ln)
        assert m, "bad summary row %r" % ln
        rows[m.group(1)] = [m.group(2), int(m.group(3)), m.group(4), m.group(5)]
    return rows


def test_rollout_under_load(cluster_factory):
    c = cluster_factory(4)
    before = {w: (c.pid(w), c.state(w)["started_ms"]) for w in c.ids}
    c.flag("fail-once-w2")
    c.flag("long-line-w3")
    clients = EvalClients([lb.url() for lb in c.lbs])
    try:
        # Evaluations are flowing through both lbs before the rollout starts.
        util.wait_for(lambda: sum(b["active"] for lb in c.lbs for b in lb.stats()["backends"])
                      == 4, 20, "4 eval clients connected")
        rc, out, err = ctl("rollout", *c.args(), "--exec", RESTART + " " + c.dir + " {id}",
                           "--drain-timeout", "1", "--ready-timeout", "30", "--retries", "1",
                           timeout=240)
    finally:
        res = clients.finish()
    assert rc == 0, "rollout -> %d\n%s\n%s" % (rc, out[-6000:], err[-4000:])
    # Zero failed evaluations, while workers were really restarted under them.
    assert int(res["evals"]) > 20 and res["failed"] == "0" and res["v_lost"] == "0", res
    assert int(res["reconnects"]) >= 1, res
    for w in c.ids:
        st = c.state(w)
        assert c.pid(w) != before[w][0] and st["started_ms"] > before[w][1], w
        assert st["state"] == "up"
    doc = status_json(c.lbs, c.redis)[1]
    for w in c.ids:
        assert [backend(doc, w)["lbs"][lb]["state"] for lb in ("lb1", "lb2")] == ["up", "up"], w

    rows = summary_rows(out)
    assert sorted(rows) == c.ids
    assert all(r[0] == "ok" for r in rows.values()), rows
    assert rows["w2"][1] == 2 and "attempt 1: the command exited with status 1" in rows["w2"][3]
    assert rows["w1"][1] == 1 and rows["w3"][1] == 1 and rows["w4"][1] == 1, rows
    assert re.search(r"^rollout: 4 of 4 restarted, 0 failed, 0 not restarted, in ", out, re.M)
    # Steps in order for each worker, batches one after the other.
    for w in c.ids:
        steps = [m.group(1) for m in re.finditer(r"^\[%s \+[\d.]+s\] -- (\w+)" % w, out, re.M)]
        assert steps[:2] == ["drained", "no"] or steps[:2] == ["drained", "drain"], steps
        assert steps[-2:] == ["ready", "enabled"], (w, steps)
    order = [m.group(1) for m in re.finditer(r"^\[(w\d) \S+\] -- enabled", out, re.M)]
    assert order == c.ids
    # The command's output, live and whole: stdout lines on stdout, stderr on
    # stderr, each prefixed; the 200 KB line intact; the last partial line kept.
    assert re.search(r"^\[w1 \+[\d.]+s\] stopping w1 \(pid %d\) with SIGTERM$" % before["w1"][0],
                     out, re.M)
    assert re.search(r"^\[w2 \+[\d.]+s\] starting w2 failed: a transient error \(scripted\)$",
                     err, re.M), err
    assert re.search(r"^\[w3 \+[\d.]+s\] L{200000}E$", out, re.M)
    assert len(re.findall(r"^\[w\d \+[\d.]+s\] no newline at the end$", out, re.M)) == 4
    assert "attempt 1 failed: the command exited with status 1; trying again (attempt 2 of 2)" \
        in out
    # Not a terminal: no progress line.
    assert "\r" not in out and "\r" not in err


def test_rollout_reports_a_worker_that_never_restarts(cluster_factory):
    c = cluster_factory(3)
    before = {w: c.pid(w) for w in c.ids}
    c.flag("fail-always-w2")
    rc, out, err = ctl("rollout", *c.args(), "--exec", RESTART + " " + c.dir + " {id}",
                       "--drain-timeout", "0", "--retries", "2", "--max-failures", "2",
                       timeout=240)
    assert rc == 1, out
    rows = summary_rows(out)
    assert rows["w1"][0] == "ok" and rows["w3"][0] == "ok", rows
    assert rows["w2"][0] == "FAILED" and rows["w2"][1] == 3, rows
    assert "left drained" in rows["w2"][3] and "exited with status 1" in rows["w2"][3]
    assert "rollout: 2 of 3 restarted, 1 failed, 0 not restarted" in out
    assert c.pid("w1") != before["w1"] and c.pid("w3") != before["w3"]
    assert c.pid("w2") == before["w2"]  # never touched
    doc = status_json(c.lbs, c.redis)[1]
    assert [backend(doc, "w2")["lbs"][lb]["state"] for lb in ("lb1", "lb2")] == \
        ["drained", "drained"]
    assert backend(doc, "w1")["lbs"]["lb1"]["state"] == "up"

    # With --max-failures 1 (the default) the rest is left untouched.
    before = {w: c.pid(w) for w in c.ids}
    rc, out, err = ctl("rollout", "w2", "w3", *c.args(), "--exec",
                       RESTART + " " + c.dir + " {id}", "--drain-timeout", "0", "--retries", "0",
                       timeout=240)
    assert rc == 1
    rows = summary_rows(out)
    assert rows["w2"][0] == "FAILED" and rows["w3"] == ["not started", 0, "-", ""], rows
    assert "stopping after this batch" in out
    assert c.pid("w3") == before["w3"]
    assert backend(status_json(c.lbs)[1], "w3")["lbs"]["lb1"]["state"] == "up"


def test_rollout_sigint(cluster_factory):
    c = cluster_factory(2)
    lb1 = c.lbs[0]
    loop = asyncio.new_event_loop()
    held = []
    try:
        # A websocket on each worker keeps the first drain waiting.
        async def hold_both():
            seen = set()
            for _ in range(20):
                ws, wid = await open_ws(lb1.url())
                held.append(ws)
                seen.add(wid)
                if seen == {"w1", "w2"}:
                    return
            raise AssertionError("websockets did not reach both workers")
        loop.run_until_complete(hold_both())
        before = {w: c.pid(w) for w in c.ids}
        # Ctrl-C while the first worker waits for its websockets: it is
        # enabled again and nothing is restarted.
        p = subprocess.Popen([binary("wslbctl"), "rollout"] + c.args() +
                             ["--exec", RESTART + " " + c.dir + " {id}", "--drain-timeout", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sanitizer_env())
        util.wait_for(lambda: lb1.backend("w1")["admin_drain"], 20, "w1 drained")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        out = out.decode()
        assert p.returncode == 1, (out, err)
        rows = summary_rows(out)
        assert rows["w1"][0] == "interrupted" and "enabled again" in rows["w1"][3], rows
        assert rows["w2"][0] == "not started"
        assert not lb1.backend("w1")["admin_drain"] and not c.lbs[1].backend("w1")["admin_drain"]
        assert {w: c.pid(w) for w in c.ids} == before

        # Ctrl-C while the first worker restarts: it is finished (restarted,
        # ready, enabled), the next is not started.
        for ws in held:
            loop.run_until_complete(ws.close())
        held.clear()
        marker = os.path.join(c.dir, "started")
        cmd = "touch %s; sleep 1; %s %s {id}" % (marker, RESTART, c.dir)
        p = subprocess.Popen([binary("wslbctl"), "rollout"] + c.args() +
                             ["--exec", cmd, "--drain-timeout", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sanitizer_env())
        util.wait_for(lambda: os.path.exists(marker), 20, "the first command to start")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        out = out.decode()
        assert p.returncode == 1, (out, err)
        rows = summary_rows(out)
        assert rows["w1"][0] == "ok" and rows["w2"][0] == "not started", rows
        assert c.pid("w1") != before["w1"] and c.pid("w2") == before["w2"]
        assert lb1.backend("w1")["state"] == "up"

        # A second Ctrl-C stops the command itself and leaves its worker drained.
        pidfile = os.path.join(c.dir, "cmd.pid")
        p = subprocess.Popen([binary("wslbctl"), "rollout", "w2"] + c.args() +
                             ["--exec", "echo $$ > %s.tmp; mv %s.tmp %s; exec sleep 60"
                              % (pidfile, pidfile, pidfile), "--drain-timeout", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sanitizer_env())
        util.wait_for(lambda: os.path.exists(pidfile), 20, "the command to run")
        with open(pidfile) as f:
            cmd_pid = int(f.read())
        p.send_signal(signal.SIGINT)
        time.sleep(0.3)  # two separate signals, as two presses of Ctrl-C are
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        out = out.decode()
        assert p.returncode == 1, (out, err)
        assert "aborting: stopping the running commands" in out
        rows = summary_rows(out)
        assert rows["w2"][0] == "FAILED" and "aborted" in rows["w2"][3], rows
        util.wait_for(lambda: not wslbctl_restart._alive(cmd_pid), 10, "the command to be gone")
        assert lb1.backend("w2")["admin_drain"] and c.pid("w2") == before["w2"]
    finally:
        for ws in held:
            loop.run_until_complete(ws.close())
        loop.close()


def test_rollout_progress_on_a_terminal(cluster_factory):
    c = cluster_factory(1, nlbs=1)
    c.flag("long-line-w1")
    master, slave = pty.openpty()
    p = subprocess.Popen([binary("wslbctl"), "rollout"] + c.args() +
                         ["--exec", RESTART + " " + c.dir + " {id}", "--drain-timeout", "0"],
                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=sanitizer_env())
    os.close(slave)
    data = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 1.0)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is gone
                break
            if not chunk:
                break
            data += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    assert p.wait(10) == 0, data[-4000:]
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    # The progress line was drawn, and always erased before other output.
    assert re.search(r"\[0/1 done\] w1: (drain|restart|ready-wait)", text), text[-3000:]
    assert "\x1b[K" in text
    clean = re.sub(r"\r\x1b\[K[^\r\n]*(?=\r\x1b\[K|\Z)", "", text)
    clean = clean.replace("\r\x1b[K", "")
    assert re.search(r"^\[w1 \+[\d.]+s\] L{200000}E$", clean, re.M), clean[-2000:]
    assert re.search(r"^\[w1 \+[\d.]+s\] no newline at the end$", clean, re.M)
    assert re.search(r"^\[w1 \+[\d.]+s\] -- enabled on lb1: done in", clean, re.M)
    assert "\x1b" not in clean.split("WORKER")[-1]


def test_rollout_probe_gates_enable(cluster_factory):
    # Up and registered is not enough: a worker that cannot run the probe
    # stays drained and is reported.
    c = cluster_factory(1, nlbs=1)
    rc, out, err = ctl("rollout", *c.args(), "--exec", RESTART + " " + c.dir + " {id}",
                       "--drain-timeout", "0", "--ready-timeout", "3", "--retries", "0",
                       "--probe-runtime", "cobol", timeout=120)
    assert rc == 1, out
    rows = summary_rows(out)
    assert rows["w1"][0] == "FAILED", rows
    assert "not ready within 3s (--ready-timeout): probe at %s: the worker offers no runtime " \
           "'cobol'" % c.addrs["w1"] in rows["w1"][3], rows
    assert c.lbs[0].backend("w1")["admin_drain"]
    assert c.lbs[0].backend("w1")["health"] == "up"

    # A command that hangs is stopped at --exec-timeout, its whole group.
    pidfile = os.path.join(c.dir, "hung.pid")
    rc, out, err = ctl("rollout", *c.args(), "--exec",
                       "sleep 60 & echo $! > %s; wait" % pidfile, "--drain-timeout", "0",
                       "--exec-timeout", "1", "--retries", "0", timeout=60)
    assert rc == 1
    with open(pidfile) as f:
        bg = int(f.read())
    # the background sleep went with its group, not just the shell
    util.wait_for(lambda: not wslbctl_restart._alive(bg), 10, "the command's child to be gone")
    rows = summary_rows(out)
    assert rows["w1"][0] == "FAILED" and "did not end within 1s (--exec-timeout)" in rows["w1"][3]
    assert "was drained before the rollout" not in out  # it failed: no enable at all


def test_admin_drain_survives_a_restart(cluster_factory):
    # A discovered worker that leaves and comes back under its id stays
    # drained until it is enabled: a restart must not hand it clients early.
    c = cluster_factory(2)
    ctl("drain", "w1", *lbargs(*c.lbs), check=0)
    started = c.state("w1")["started_ms"]
    subprocess.run([sys.executable, os.path.join(HERE, "wslbctl_restart.py"), c.dir, "w1"],
                   check=True, stdout=subprocess.DEVNULL, timeout=60)
    util.wait_for(lambda: (c.state("w1") or {}).get("started_ms", started) != started, 20,
                  "the new w1 to register")

    util.wait_for(lambda: all(lb.backend("w1") and lb.backend("w1")["started_ms"] != started
                              for lb in c.lbs), 20, "both lbs to list the new w1")
    for lb in c.lbs:
        b = lb.backend("w1")
        assert b["admin_drain"] and b["state"] == "draining" and b["health"] == "up", b
    # and nothing goes to it until it is enabled
    loop = asyncio.new_event_loop()
    try:
        for _ in range(4):
            ws, wid = loop.run_until_complete(open_ws(c.lbs[0].url()))
            loop.run_until_complete(ws.close())
            assert wid == "w2"
    finally:
        loop.close()
    ctl("enable", "w1", "--wait", *lbargs(*c.lbs), check=0)
    assert all(lb.backend("w1")["state"] == "up" for lb in c.lbs)


def test_rollout_in_batches(cluster_factory):
    c = cluster_factory(3, nlbs=1)
    before = {w: c.pid(w) for w in c.ids}
    cmd = "sleep 1; %s %s {id}" % (RESTART, c.dir)
    rc, out, err = ctl("rollout", *c.args(), "--exec", cmd, "--drain-timeout", "0", "--batch",
                       "2", timeout=120)
    assert rc == 0, out + err
    assert all(r[0] == "ok" for r in summary_rows(out).values())
    assert all(c.pid(w) != before[w] for w in c.ids)
    # w1 and w2 restart together; w3 only once both are back.
    lines = out.splitlines()

    def first(pat):
        return min(i for i, ln in enumerate(lines) if re.search(pat, ln))
    assert first(r"^\[w2 \S+\] -- restart") < first(r"^\[w1 \S+\] -- enabled")
    assert first(r"^\[w1 \S+\] -- restart") < first(r"^\[w2 \S+\] -- enabled")
    assert first(r"^\[w3 \S+\] -- drained") > max(first(r"^\[w1 \S+\] -- enabled"),
                                                  first(r"^\[w2 \S+\] -- enabled"))
    assert "1 at a time" not in out and "2 at a time" in out
