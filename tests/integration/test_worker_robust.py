"""Robustness over many runs: no descriptor or process leaks, kills during
builds and queues, no sandbox outliving a crashed worker, and work roots
told live or dead by their lock, never by a pid another namespace cannot
see."""

import asyncio
import json
import os
import re
import shutil
import signal
import time

import pytest

import util


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def children(pid):
    """(pid, state) of the worker's direct children."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append((int(d), fields[0]))
    return out


def descendants(pid):
    """(pid, command name) of every process under pid."""
    parent, comm = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        comm[int(d)] = st[st.index("(") + 1:st.rindex(")")]
        parent[int(d)] = int(st[st.rindex(")") + 2:].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += [(c, comm[c]) for c in kids]
        todo += kids
    return out


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def run_children(pid):
    """children() but the sandbox's zygote, which lives as long as the worker."""
    return [(p, st) for p, st in children(pid) if comm(p) != "wk-zygote"]


def zygote(pid):
    """The sandbox's zygote among pid's children, or None."""
    return next((p for p, _ in children(pid) if comm(p) == "wk-zygote"), None)


def test_no_fd_or_process_leak_over_many_runs(worker_factory):
    w = worker_factory(max_evals=2)
    # Warm up once so lazily opened descriptors are counted in the baseline.
    assert util.run_eval(w.url(), "sh", "true").verdict == "ok"
    base = open_fds(w.proc.pid)
    # The zygote gets five descriptors with each request and must close them.
    zyg = zygote(w.proc.pid)
    assert zyg is not None, "no zygote: runs would be cloned from the worker"
    zyg_base = open_fds(zyg)
    # Of the worker's sockets it keeps only its own end of the socketpair:
    # a copy of the listening socket would keep the port bound.
    socks = [fd for fd in os.listdir("/proc/%d/fd" % zyg)
             if os.readlink("/proc/%d/fd/%s" % (zyg, fd)).startswith("socket:")]
    assert len(socks) == 1, socks

    async def go():
        ws = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws)
            for i in range(60):
                kind = i % 4
                if kind == 0:
                    r = await util.arun(ws, "sh", "echo %d" % i, run_id="n%d" % i)
                    assert r.stdout == "%d\n" % i, r
                elif kind == 1:
                    r = await util.arun(ws, "sh", "sleep 5", run_id="n%d" % i, timeout_ms=50)
                    assert r.verdict == "timeout", r
                elif kind == 2:
                    await util.send_json(ws, util.run_msg(
                        "sh", "echo go; sleep 5", "n%d" % i))
                    await util.recv_json(ws, 10)
                    await util.send_json(ws, {"type": "kill", "id": "n%d" % i})
                    r = await asyncio.wait_for(util.collect_run(ws, "n%d" % i), 10)
                    assert r.verdict == "killed", r
                else:
                    r = await util.arun(ws, "nope", "x", run_id="n%d" % i, until_error=True)
        finally:
            await ws.close()
    asyncio.run(go())
    # Connections that go away mid-run, too.
    for _ in range(10):
        util.drop_mid_run(w.url(), "sh", "echo x; sleep 5", first_timeout=10)
    util.wait_idle(w.addr)
    util.wait_for(lambda: open_fds(w.proc.pid) <= base + 2, 5,
                  "descriptors back to the baseline %d (now %d)" % (base, open_fds(w.proc.pid)))
    util.wait_for(lambda: not run_children(w.proc.pid), 5,
                  "no child processes left (%r)" % run_children(w.proc.pid))
    # Still the same zygote (never lost, so every run was its clone), and it
    # kept none of the runs' descriptors.
    assert zygote(w.proc.pid) == zyg
    assert open_fds(zyg) == zyg_base
    w.healthy_and_serving()


def test_kill_during_build(worker):
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed: no c runtime")
    # A program that takes the compiler a while: a large generated body.
    body = "".join("int f%d(int x) { return x * %d + %d; }\n" % (i, i, i) for i in range(20000))
    code = body + "int main(void) { return 0; }\n"

    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("c", code, "b"))
            # The build is under way once the compiler proper runs.
            await asyncio.get_running_loop().run_in_executor(None, lambda: util.wait_for(
                lambda: [p for p, name in descendants(worker.proc.pid) if name == "cc1"], 20,
                "the compiler to run (%r)" % descendants(worker.proc.pid)))
            await util.send_json(ws, {"type": "kill", "id": "b"})
            return await asyncio.wait_for(util.collect_run(ws, "b"), 10)
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.verdict == "killed", r  # the compiler was running: the build takes seconds
    util.wait_for(lambda: not run_children(worker.proc.pid), 5, "no children left")
    worker.healthy_and_serving()


def test_kill_queued_run(worker_factory):
    w = worker_factory(max_evals=1)
    hold = "import sys\nprint('holding', flush=True)\nsys.stdin.read()\n"

    async def go():
        ws = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", hold, "a"))
            assert (await util.recv_json(ws, 15))["data"] == "holding\n"
            await util.send_json(ws, util.run_msg("python3", "print('should not run')", "q"))
            util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr),
                                                  "worker_evaluations_queued") == 1, 5, "queued")
            await util.send_json(ws, {"type": "kill", "id": "q"})
            rq = await asyncio.wait_for(util.collect_run(ws, "q"), 10)
            await util.send_json(ws, {"type": "stdin_close", "id": "a"})
            ra = await asyncio.wait_for(util.collect_run(ws, "a"), 10)
            return rq, ra
        finally:
            await ws.close()
    rq, ra = asyncio.run(go())
    assert rq.verdict == "killed" and rq.stdout == "", rq
    assert ra.verdict == "ok", ra


def test_sandboxes_do_not_outlive_a_killed_worker(worker_factory):
    """If the worker dies (SIGKILL, a crash), nothing enforces its runs'
    timeouts any more: the runs must die with it."""
    w = worker_factory()
    mk = util.marker()

    async def go():
        ws = await util.ws_connect(w.url())
        await util.recv_hello(ws)
        await util.send_json(ws, util.run_msg(
            "sh", "exec sh -c 'echo started; sleep 1000' %s" % mk, "s"))
        assert (await util.recv_json(ws, 15))["data"] == "started\n"
        assert util.pgrep(mk)
        w.stop(signal.SIGKILL)
        w.wait(5)
        ws.transport.abort()
    asyncio.run(go())
    util.wait_no_process(mk, 5)


def test_timeout_accuracy_under_parallel_load(worker_factory):
    """Four runs time out together: each within a reasonable margin."""
    w = worker_factory(max_evals=4)

    async def one(i):
        return await util.arun_eval(w.url(), "python3", "while True: pass", timeout_ms=800,
                                    deadline=20)

    async def go():
        return await asyncio.gather(*[one(i) for i in range(4)])
    t0 = time.monotonic()
    rs = asyncio.run(go())
    for r in rs:
        assert r.verdict == "timeout" and 800 <= r.exit["wall_ms"] < 3000, r
    assert time.monotonic() - t0 < 8


def test_timeout_never_fires_early_when_runs_start_together(worker_factory):
    """Runs started in one burst (one read of several messages) each get
    their full timeout_ms: the timer counts from the run's real start, not
    from a clock cached earlier in the event-loop iteration."""
    w = worker_factory(max_evals=6)

    async def go():
        ws = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws)
            ids = ["t%d" % i for i in range(6)]
            # All frames in one TCP write, so that one read delivers them all.
            from websockets.frames import Frame, OP_TEXT
            burst = b"".join(
                Frame(OP_TEXT, json.dumps(util.run_msg("sh", "sleep 10", i, timeout_ms=400))
                      .encode(), True).serialize(mask=True, extensions=[])
                for i in ids)
            ws.transport.write(burst)
            exits = {}
            while len(exits) < len(ids):
                m = await util.recv_json(ws, 20)
                if m["type"] == "exit":
                    exits[m["id"]] = m
            return exits
        finally:
            await ws.close()
    exits = asyncio.run(go())
    early = {k: e["wall_ms"] for k, e in exits.items() if e["wall_ms"] < 400}
    assert all(e["verdict"] == "timeout" for e in exits.values()), exits
    assert not early, "runs killed before their 400 ms timeout: %r" % early


UNSHARE_PID = ["unshare", "--pid", "--fork", "--mount-proc"]


def work_root(w):
    """The work root a worker logged at start."""
    m = util.wait_for(lambda: re.search(r"slots under (\S+),", w.stderr_text()), 5,
                      "the worker's sandbox line")
    return m.group(1)


def stop_unshared(w):
    """Stops a worker started under UNSHARE_PID: the signal goes to the worker
    (PID 1 of its namespace), and unshare exits with its status."""
    for pid, _ in children(w.proc.pid):
        os.kill(pid, signal.SIGTERM)
    assert w.wait(15) == 0, w.stderr_text()[-4000:]


def needs_unshare():
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")


def test_a_worker_in_another_pid_namespace_leaves_a_live_root(worker_factory):
    """Workers remove the work roots (/tmp/wsworker-PID) of workers that are
    gone. A worker in another PID namespace (a container sharing /tmp) cannot
    see our pid, and once took our root for a dead worker's: every run here
    then failed with "open slot0: No such file or directory"."""
    needs_unshare()
    a = worker_factory(max_evals=1)
    a.healthy_and_serving()
    root = work_root(a)
    assert root == "/tmp/wsworker-%d" % a.proc.pid
    b = worker_factory(max_evals=1, wrap=UNSHARE_PID)
    try:
        b.healthy_and_serving()
        assert os.path.isdir(os.path.join(root, "slot0")), os.listdir("/tmp")
        for _ in range(2):  # the slot's work dir, then its fresh one
            a.healthy_and_serving()
    finally:
        stop_unshared(b)


def test_workers_with_the_same_pid_get_roots_of_their_own(worker_factory):
    """Two workers that are each PID 1 of their namespace, sharing /tmp: the
    second finds /tmp/wsworker-1 held and takes another name rather than
    share (and later remove) the first one's work dirs."""
    needs_unshare()
    b1 = worker_factory(max_evals=1, wrap=UNSHARE_PID)
    b2 = worker_factory(max_evals=1, wrap=UNSHARE_PID)
    try:
        r1, r2 = work_root(b1), work_root(b2)
        same_pid = re.compile(r"/tmp/wsworker-1(-\d+)?$")
        assert r1 != r2 and same_pid.match(r1) and same_pid.match(r2), (r1, r2)
        b1.healthy_and_serving()
        b2.healthy_and_serving()
        stop_unshared(b2)
        assert not os.path.exists(r2)
        b1.healthy_and_serving()
    finally:
        for w in (b1, b2):
            if w.alive():
                stop_unshared(w)


def test_the_root_of_a_killed_worker_is_removed(worker_factory):
    """A worker killed with SIGKILL leaves its work root (its mounts go with
    it, its directories do not); the next worker that starts removes it."""
    a = worker_factory(max_evals=1)
    root = work_root(a)
    a.stop(signal.SIGKILL)
    a.wait(5)
    assert os.path.isdir(root)
    b = worker_factory(max_evals=1)
    assert not os.path.exists(root), os.listdir(root)
    b.healthy_and_serving()
