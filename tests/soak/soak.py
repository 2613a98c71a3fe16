#!/usr/bin/python3
"""Soak: thousands of websocket connections churning through the lb to three
workers, everything under AddressSanitizer, then an audit.

    make soak                      # SOAK_SECONDS=120 by default
    SOAK_SECONDS=20 make soak      # the short version CI runs

Starts a private Redis, 3 workers and the lb (sanitizer build, leak
detection on). SOAK_CONCURRENCY clients (default 200) each loop until the
time is up: open a websocket through the lb, run a short evaluation (every
third connection) or echo a few messages, close. Then, once the churn has
settled:

  - every connection the clients made reached a worker: the lb's /stats
    accepted and handshakes equal the clients' counts, and the workers'
    websocket totals add up to the same number (nothing lost, nothing
    counted twice); /stats active is 0;
  - the lb's and workers' open descriptors are back to what they were after
    start-up;
  - SIGTERM stops every process with exit status 0 and no AddressSanitizer,
    LeakSanitizer or UBSan report in its stderr.

Prints one summary line starting with SOAK and exits non-zero on any
failure."""

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import util  # noqa: E402

import websockets  # noqa: E402

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: UndefinedBehaviorSanitizer")


class Proc:
    def __init__(self, name, argv, tmpdir, env):
        self.name = name
        self.argv = argv
        self.stderr_path = os.path.join(tmpdir, name + ".stderr")
        self._f = open(self.stderr_path, "w+b")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._f,
                                     stderr=self._f, env=env)
        self.pid = self.proc.pid

    def text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                return None
        self._f.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Counts:
    def __init__(self):
        self.connections = 0  # websocket handshakes that succeeded
        self.evals = 0
        self.echoes = 0
        self.failures = {}

    def fail(self, what):
        self.failures[what] = self.failures.get(what, 0) + 1


async def one_connection(url_base, n, counts):
    eval_turn = n % 3 == 0
    try:
        ws = await util.ws_connect(url_base + ("/eval" if eval_turn else "/echo"))
    except Exception as e:
        counts.fail("connect: %s" % type(e).__name__)
        return
    counts.connections += 1
    try:
        hello = await util.recv_hello(ws, timeout=30)
        if eval_turn:
            rid = "s%d" % n
            r = await util.arun(ws, "sh", "echo $((6*%d))" % (n % 1000), run_id=rid,
                                deadline=60)
            if r.verdict == "ok" and r.stdout == "%d\n" % (6 * (n % 1000)):
                counts.evals += 1
            else:
                counts.fail("eval: %s %s" % (r.verdict, (r.errors or [""])[0]))
        else:
            for i in range(3):
                msg = "%s-%d-%d" % (hello["worker"], n, i) * random.randint(1, 50)
                await ws.send(msg)
                if await asyncio.wait_for(ws.recv(), 30) != msg:
                    counts.fail("echo mismatch")
                    break
            else:
                counts.echoes += 1
    except Exception as e:
        counts.fail("during: %s" % type(e).__name__)
    finally:
        try:
            await asyncio.wait_for(ws.close(), 10)
        except Exception:
            pass


async def churn(url_base, seconds, concurrency, counts):
    deadline = time.monotonic() + seconds
    seq = iter(range(10 ** 9))

    async def client():
        while time.monotonic() < deadline:
            await one_connection(url_base, next(seq), counts)
    await asyncio.gather(*[client() for _ in range(concurrency)])


def fd_settled(pid, want=None, timeout=15.0):
    """The process's descriptor count once stable (the lowest of a few
    samples: health checks open short-lived sockets). With want, waits
    until it is at most want."""
    deadline = time.monotonic() + timeout
    while True:
        samples = []
        for _ in range(5):
            samples.append(util.proc_fd_count(pid))
            time.sleep(0.05)
        low = min(samples)
        if want is None or low <= want or time.monotonic() > deadline:
            return low


def worker_ws_total(addr):
    return util.metric_sum(util.get_metrics(addr), "worker_websockets_total")


def main():
    seconds = float(os.environ.get("SOAK_SECONDS", "120"))
    concurrency = int(os.environ.get("SOAK_CONCURRENCY", "200"))
    bindir = os.environ.get("BIN_DIR") or os.path.join(REPO, "bin", "asan")
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    tmpdir = tempfile.mkdtemp(prefix="wslb-soak-")
    problems = []
    procs = []
    redis = None
    t_start = time.monotonic()
    try:
        redis = util.RedisServer()
        workers = []
        for i in range(3):
            addr = "127.0.0.1:%d" % util.free_port()
            w = Proc("worker%d" % i, [os.path.join(bindir, "worker"), "--listen", addr,
                                      "--id", "soak%d" % i, "--redis", redis.addr,
                                      "--max-evals", "4", "--queue", "256",
                                      "--uid-base", str(61000 + 1024 * i),
                                      "--log-level", "warn"], tmpdir, env)
            w.addr = addr
            procs.append(w)
            workers.append(w)
        lb_addr = "127.0.0.1:%d" % util.free_port()
        admin = "127.0.0.1:%d" % util.free_port()
        lb = Proc("lb", [os.path.join(bindir, "lb"), "--listen", lb_addr, "--admin", admin,
                         "--redis", redis.addr, "--threads", "2", "--access-log=false",
                         "--slowstart-ms", "0", "--grace-s", "5",
                         "--route", "/eval", "--route", "/echo"], tmpdir, env)
        procs.append(lb)

        def stats():
            status, _, body = util.http_get(admin, "/stats")
            assert status == 200, status
            return json.loads(body)

        def ready():
            for p in procs:
                if p.proc.poll() is not None:
                    raise AssertionError("%s exited: %s" % (p.name, p.text()[-3000:]))
            if util.try_http_get(admin, "/healthz") is None:
                return False
            bes = stats()["backends"]
            return len(bes) == 3 and all(b["state"] == "up" for b in bes)
        # Readiness through the admin API only: a probe on the listener would
        # be a connection the clients did not count.
        util.wait_for(ready, 60, "lb with 3 workers up")
        fd_lb0 = fd_settled(lb.pid)
        fd_w0 = [fd_settled(w.pid) for w in workers]
        st0 = stats()
        ws0 = sum(worker_ws_total(w.addr) for w in workers)
        rss0 = util.proc_rss_kb(lb.pid)

        counts = Counts()
        t0 = time.monotonic()
        asyncio.run(churn("ws://" + lb_addr, seconds, concurrency, counts))
        duration = time.monotonic() - t0

        util.wait_for(lambda: stats()["active"] == 0, 30, "lb active back to 0")
        st1 = stats()
        ws1 = sum(worker_ws_total(w.addr) for w in workers)
        fd_lb1 = fd_settled(lb.pid, fd_lb0)
        fd_w1 = [fd_settled(w.pid, b) for w, b in zip(workers, fd_w0)]
        rss1 = util.proc_rss_kb(lb.pid)

        accepted = st1["accepted"] - st0["accepted"]
        handshakes = st1["handshakes"] - st0["handshakes"]
        errors = {k: v - st0["errors"].get(k, 0) for k, v in st1["errors"].items()
                  if v != st0["errors"].get(k, 0)}
        if counts.failures:
            problems.append("client failures: %r" % counts.failures)
        if accepted != counts.connections:
            problems.append("lb accepted %d, clients connected %d" % (accepted,
                                                                      counts.connections))
        if handshakes != counts.connections:
            problems.append("lb handshakes %d, clients connected %d" % (handshakes,
                                                                        counts.connections))
        if ws1 - ws0 != counts.connections:
            problems.append("workers counted %d websockets, clients %d" % (ws1 - ws0,
                                                                          counts.connections))
        if errors:
            problems.append("lb errors during the soak: %r" % errors)
        if fd_lb1 != fd_lb0:
            problems.append("lb descriptors %d after start-up, %d at the end" % (fd_lb0, fd_lb1))
        for w, b, e in zip(workers, fd_w0, fd_w1):
            if b != e:
                problems.append("%s descriptors %d after start-up, %d at the end" % (w.name, b, e))
        if counts.connections < 1000 and seconds >= 60:
            problems.append("only %d connections in %.0f s" % (counts.connections, duration))

        # Stop: the lb first (it holds no client now), then the workers.
        leaks = 0
        for p in [lb] + workers:
            rc = p.stop()
            text = p.text()
            bad = [m for m in SANITIZER_MARKS if m in text]
            leaks += text.count("ERROR: LeakSanitizer")
            if bad:
                problems.append("%s: sanitizer reports %r:\n%s" % (p.name, bad, text[-6000:]))
            if rc != 0:
                problems.append("%s exited %r on SIGTERM:\n%s" % (p.name, rc, text[-3000:]))

        print("SOAK connections=%d evals=%d echoes=%d duration_s=%.0f concurrency=%d "
              "rate_per_s=%.0f leaks=%d fd_lb=%d/%d fd_workers=%s lb_rss_kb=%d/%d "
              "bytes_in=%d bytes_out=%d"
              % (counts.connections, counts.evals, counts.echoes, duration, concurrency,
                 counts.connections / duration if duration else 0, leaks, fd_lb0, fd_lb1,
                 ",".join("%d/%d" % be for be in zip(fd_w0, fd_w1)), rss0, rss1,
                 st1["bytes_in"] - st0["bytes_in"], st1["bytes_out"] - st0["bytes_out"]))
    except AssertionError as e:
        problems.append(str(e))
    finally:
        for p in procs:
            p.kill()
        if redis is not None:
            redis.close()
    if problems:
        print("SOAK FAILED after %.0f s:\n  %s" % (time.monotonic() - t_start,
                                                   "\n  ".join(problems)))
        print("stderr files kept in %s" % tmpdir)
        return 1
    subprocess.run(["rm", "-rf", tmpdir])
    return 0


if __name__ == "__main__":
    sys.exit(main())
