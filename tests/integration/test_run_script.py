"""`make run` (scripts/run.sh) as a new user meets it: Ctrl-C drains instead
of killing, a dead worker comes back, a second copy refuses to start, and the
log arrives line by line even when stdout is a file."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import tempfile

import pytest

import util
from conftest import BIN_DIR, REPO, SANITIZER_MARKS

SCRIPT = os.path.join(REPO, "scripts", "run.sh")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def free_run(n):
    """n consecutive free ports on 127.0.0.1; returns the first."""
    for _ in range(50):
        base = util.free_port()
        if base + n > 65000:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no %d consecutive free ports" % n)


class RunScript:
    """scripts/run.sh in its own process group (as a shell runs a job), its
    output going to a file."""

    def __init__(self, tmpdir, workers=2, env=None, name="run"):
        self.workers = workers
        self.lb = "127.0.0.1:%d" % util.free_port()
        self.admin = "127.0.0.1:%d" % util.free_port()
        self.base = free_run(workers)
        self.env = dict(os.environ, BIN_DIR=BIN_DIR, WORKERS=str(workers), LB_LISTEN=self.lb,
                        LB_ADMIN=self.admin, WORKER_BASE_PORT=str(self.base), DRAIN_S="5")
        self.env.pop("NWORKERS", None)
        self.env.update(env or {})
        self.out_path = os.path.join(tmpdir, name + ".out")
        self._out = open(self.out_path, "wb")
        # A terminal delivers Ctrl-C to the job's whole process group; SIGINT
        # must not be inherited as ignored (as it is for shell '&' jobs).
        self.proc = subprocess.Popen(
            [SCRIPT], stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=self.env, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def text(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def lines(self):
        return self.text().splitlines()

    def wait_text(self, pattern, timeout=30.0):
        """Waits until a line matches pattern (a regex); returns the match."""
        rx = re.compile(pattern)

        def found():
            for line in self.lines():
                m = rx.search(line)
                if m:
                    return m
            if self.proc.poll() is not None:
                raise AssertionError("run.sh exited %s before printing %r:\n%s"
                                     % (self.proc.returncode, pattern, self.text()[-6000:]))
            return None
        return util.wait_for(found, timeout, "run.sh to print %r" % pattern)

    def wait_ready(self):
        self.wait_text(r"^  Stop: ")
        return self

    def pids(self):
        """Daemon pids the script announced (all of them, restarted ones too)."""
        return [int(p) for p in re.findall(r"\(pid (\d+)\)", self.text())]

    def worker_pid(self, name):
        return int(self.wait_text(r"^\[run\] worker  %s on .* \(pid (\d+)\)" % name).group(1))

    def ctrl_c(self):
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout=30.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("run.sh still running %.0f s after Ctrl-C:\n%s"
                                 % (timeout, self.text()[-6000:]))

    def close(self):
        """Stops what is left (Ctrl-C, then SIGKILL) and checks no daemon
        outlives the script."""
        if self.proc.poll() is None:
            self.ctrl_c()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        left = []
        for pid in self.pids():
            try:
                os.kill(pid, 0)
                left.append(pid)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._out.close()
        return left


@pytest.fixture
def run_script():
    tmpdir = tempfile.mkdtemp(prefix="wslb-runsh-")
    runs = []

    def start(**kw):
        r = RunScript(tmpdir, name="run%d" % len(runs), **kw)
        runs.append(r)
        return r
    try:
        yield start
    finally:
        problems = []
        for r in runs:
            left = r.close()
            if left:
                problems.append("daemons outlived run.sh: %s" % left)
            bad = [m for m in SANITIZER_MARKS if m in r.text()]
            if bad:
                problems.append("sanitizer reports in run.sh output: %s" % bad)
            if problems:
                print("\n---- %s ----\n%s" % (r.out_path, r.text()[-20000:]))
        subprocess.run(["rm", "-rf", tmpdir], check=False)
        if problems:
            pytest.fail("; ".join(problems))


def count(lines, pattern):
    rx = re.compile(pattern)
    return sum(1 for x in lines if rx.search(x))


def index_of(lines, pattern):
    rx = re.compile(pattern)
    found = [i for i, x in enumerate(lines) if rx.search(x)]
    assert found, "no line matches %r" % pattern
    return found


def assert_lines_whole(lines):
    """Every daemon line carries its prefix and exactly one log record."""
    names = r"(run|redis|lb|w\d+)"
    for line in lines:
        if TIMESTAMP.search(line):
            assert re.match(r"^\[%s\] \d{4}-" % names, line), "line without its prefix: %r" % line
            assert len(TIMESTAMP.findall(line)) == 1, "two records spliced: %r" % line
        elif line.startswith("["):
            assert re.match(r"^\[%s\] " % names, line), "mangled prefix: %r" % line


def test_ctrl_c_gives_each_daemon_one_sigterm(run_script):
    r = run_script(workers=2).wait_ready()
    lb_url = "ws://%s/eval" % r.lb
    assert count(r.lines(), r"^\[run\] worker  w\d+ on ") == 2
    worker_addrs = ["127.0.0.1:%d" % (r.base + i) for i in range(2)]

    async def run_through_ctrl_c():
        ws = await util.ws_connect(lb_url)
        await util.recv_hello(ws)
        await util.send_json(ws, util.run_msg(
            "python3", "import time\nprint('start', flush=True)\ntime.sleep(1.5)\nprint('done')",
            "inflight"))
        # The run is under way when the user presses Ctrl-C.
        first = await util.recv_json(ws)
        assert first.get("type") == "stdout" and first.get("data") == "start\n", first
        r.ctrl_c()
        rest = await asyncio.wait_for(util.collect_run(ws, "inflight"), 20)
        closed = await util.expect_closed(ws)
        return rest, closed
    rest, closed = asyncio.run(run_through_ctrl_c())
    assert rest.exit and rest.exit["verdict"] == "ok", rest.exit
    assert rest.stdout == "done\n", rest.stdout
    assert closed == 1001, closed
    assert r.wait() == 0
    lines = r.lines()
    for w in ("w1", "w2"):
        assert count(lines, r"^\[%s\] .* signal 15: draining" % w) == 1, w
        assert count(lines, r"^\[%s\] .* drained; exiting" % w) == 1, w
    assert count(lines, r"^\[lb\] .* signal 15: no longer accepting") == 1
    assert count(lines, r"^\[lb\] .* bye$") == 1
    assert count(lines, r"second signal") == 0, "a daemon got a second signal"
    assert count(lines, r"^\[redis\] .*Received SIGTERM") == 1
    # Redis goes last: after every worker left it and the lb is gone.
    redis_stop = index_of(lines, r"^\[redis\] .*Received SIGTERM")[0]
    for pattern in (r"^\[w1\] .* drained; exiting", r"^\[w2\] .* drained; exiting",
                    r"^\[lb\] .* bye$"):
        assert index_of(lines, pattern)[0] < redis_stop, pattern
    assert lines[-1] == "[run] stopped", lines[-3:]
    assert_lines_whole(lines)
    for addr in worker_addrs + [r.lb]:
        assert util.try_http_get(addr, "/healthz", timeout=1.0) is None, addr


def test_dead_worker_is_restarted_and_lines_arrive_at_once(run_script):
    r = run_script(workers=2).wait_ready()
    w1 = r.worker_pid("w1")
    w1_addr = "127.0.0.1:%d" % r.base
    os.kill(w1, signal.SIGKILL)
    r.wait_text(r"^\[run\] w1 \(pid %d\) killed by SIGKILL; restarting it in 1 s$" % w1)
    # Said once, in its words: no shell job report next to it.
    assert "Killed" not in r.text(), r.text()[-3000:]
    new = int(r.wait_text(r"^\[run\] w1 restarted \(pid (\d+)\)$").group(1))
    assert new != w1
    util.wait_for(lambda: (util.try_http_get(w1_addr, "/healthz") or [0])[0] == 200, 20,
                  "the restarted w1 to serve")
    res = util.run_eval("ws://%s/eval" % w1_addr, "python3", "print(6*7)")
    assert res.exit and res.exit["verdict"] == "ok" and res.stdout == "42\n", res.exit
    assert r.proc.poll() is None, "run.sh stopped when a worker died"
    # The lb kept serving throughout; its access line for this connection
    # is in the file while everything still runs: nothing sits in a buffer.
    res = util.run_eval("ws://%s/eval" % r.lb, "python3", "print(7)")
    assert res.exit and res.exit["verdict"] == "ok" and res.stdout == "7\n", res.exit
    r.wait_text(r"^\[lb\] .* access client=.* status=101 ", timeout=5)
    r.ctrl_c()
    assert r.wait() == 0
    lines = r.lines()
    # The restarted worker drained like the others: one SIGTERM each.
    assert count(lines, r"^\[w1\] .* signal 15: draining") == 1
    assert count(lines, r"^\[w2\] .* signal 15: draining") == 1
    assert count(lines, r"second signal") == 0
    assert_lines_whole(lines)


def test_second_instance_refuses_naming_the_port(run_script):
    first = run_script(workers=1).wait_ready()
    second = run_script(workers=1, env={"LB_LISTEN": first.lb, "LB_ADMIN": first.admin,
                                        "WORKER_BASE_PORT": str(first.base)})
    assert second.wait(15) == 1
    text = second.text()
    assert "[run] cannot start: %s (lb) is not available: Address already in use" % first.lb \
        in text, text
    assert "%s (worker w1)" % "127.0.0.1:%d" % first.base in text, text
    # It refused before starting anything.
    assert "[redis]" not in text and "[w1]" not in text and "(pid " not in text, text
    assert first.proc.poll() is None
    assert util.http_get(first.admin, "/healthz")[0] == 200


def test_busy_worker_port_is_named(run_script):
    with socket.socket() as s:
        base = free_run(2)
        s.bind(("127.0.0.1", base + 1))
        s.listen(1)
        r = run_script(workers=2, env={"WORKER_BASE_PORT": str(base)})
        assert r.wait(15) == 1
    text = r.text()
    assert "127.0.0.1:%d (worker w2) is not available" % (base + 1) in text, text
    assert "(worker w1)" not in text, text
    assert "(pid " not in text, text


@pytest.mark.parametrize("value", ["0", "x", "65"])
def test_bad_worker_count_is_refused(run_script, value):
    r = run_script(workers=1, env={"WORKERS": value})
    assert r.wait(15) == 1
    assert "WORKERS must be a number from 1 to 64, not '%s'" % value in r.text()
