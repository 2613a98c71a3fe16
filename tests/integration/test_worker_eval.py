"""The /eval protocol: runs, streaming, stdin, kill, timeouts, exit codes,
signals, invalid messages and what happens when the client goes away."""

import asyncio
import hashlib
import json
import shutil
import time

import pytest

import util


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def assert_exit_shape(e):
    for k in ("type", "id", "status", "signal", "verdict", "wall_ms", "cpu_ms", "max_rss_kb"):
        assert k in e, "exit message lacks %s: %r" % (k, e)
    for k in ("wall_ms", "cpu_ms", "max_rss_kb"):
        assert is_number(e[k]) and e[k] >= 0, (k, e)
    assert e["verdict"] in ("ok", "signaled", "timeout", "memory", "output", "killed", "error"), e


# ---- plain runs -----------------------------------------------------------------------

def test_python_print(worker):
    r = util.run_eval(worker.url(), "python3", "print(6*7)")
    assert r.stdout == "42\n", r
    assert r.stderr == "", r
    e = r.exit
    assert_exit_shape(e)
    assert e["id"] == "r1"
    assert e["status"] == 0 and e["signal"] is None and e["verdict"] == "ok", e
    assert 0 < e["wall_ms"] < 10000, e
    assert e["cpu_ms"] < 10000, e
    # A Python interpreter needs some megabytes: the figure is real, not 0.
    assert 1000 < e["max_rss_kb"] < 1024 * 1024, e


def test_sh_stdout_stderr_status(worker):
    r = util.run_eval(worker.url(), "sh", "echo hi; echo err >&2; exit 3")
    assert r.stdout == "hi\n", r
    assert r.stderr == "err\n", r
    assert r.exit["status"] == 3 and r.exit["signal"] is None, r
    assert r.exit["verdict"] == "ok", r


def test_output_is_tagged_with_run_id(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            r = await util.arun(ws, "sh", "echo a; echo b >&2", run_id="weird id ✓ 1")
            for _, m in r.messages:
                assert m["id"] == "weird id ✓ 1", m
            return r
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.stdout == "a\n" and r.stderr == "b\n"


@pytest.mark.parametrize("code,status", [("exit 0", 0), ("exit 1", 1), ("exit 42", 42),
                                         ("exit 255", 255), ("false", 1)])
def test_exit_codes_sh(worker, code, status):
    r = util.run_eval(worker.url(), "sh", code)
    assert r.exit["status"] == status and r.exit["signal"] is None, r
    assert r.exit["verdict"] == "ok", r


def test_exit_code_python(worker):
    r = util.run_eval(worker.url(), "python3", "import sys\nprint('x')\nsys.exit(7)")
    assert r.stdout == "x\n" and r.exit["status"] == 7 and r.exit["verdict"] == "ok", r
    r = util.run_eval(worker.url(), "python3", "raise ValueError('boom')")
    assert r.exit["status"] == 1 and r.exit["verdict"] == "ok", r
    assert "ValueError: boom" in r.stderr, r


@pytest.mark.parametrize("runtime,code,sig", [
    ("python3", "import os\nos.kill(os.getpid(), 11)", 11),
    ("python3", "import os\nos.abort()", 6),
    ("sh", "kill -TERM $$", 15),
    ("sh", "kill -KILL $$", 9),
])
def test_signals(worker, runtime, code, sig):
    r = util.run_eval(worker.url(), runtime, code)
    assert r.exit["verdict"] == "signaled", r
    assert r.exit["signal"] == sig, r
    assert r.exit["status"] is None, r


def test_c_hello(worker):
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed: no c runtime")
    code = '#include <stdio.h>\nint main(void) { printf("hello from c %d\\n", 6 * 7); return 5; }\n'
    r = util.run_eval(worker.url(), "c", code, deadline=60)
    assert r.stdout == "hello from c 42\n", r
    assert r.exit["status"] == 5 and r.exit["verdict"] == "ok", r


def test_c_compile_error(worker):
    """A program that does not compile never runs: the exit says so, either
    as verdict "error" or as a failing status, and the compiler's message
    reaches the client (on stderr or in the exit's reason)."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed: no c runtime")
    code = "int main(void) { return undeclared_thing_xyz; }\n"
    r = util.run_eval(worker.url(), "c", code, deadline=60)
    e = r.exit
    assert e is not None, r
    assert e["verdict"] == "error" or (e["verdict"] == "ok" and e["status"] != 0), r
    assert r.stdout == "", r
    text = r.stderr + json.dumps(e)
    assert "undeclared_thing_xyz" in text and "error" in text, r


def test_c_build_is_sandboxed(worker):
    """The compiler runs in the sandbox too: #include of a host secret fails."""
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed: no c runtime")
    r = util.run_eval(worker.url(), "c", '#include "/etc/shadow"\nint main(void){return 0;}\n',
                      deadline=60)
    assert r.exit["verdict"] == "error" or r.exit["status"] != 0, r
    assert "root:" not in r.stderr, "compiler leaked /etc/shadow"


# ---- streaming ----------------------------------------------------------------------------

def test_streaming_without_newline(worker):
    code = ("import time, sys\n"
            "for i in range(3):\n"
            "    print(i, end='', flush=True)\n"
            "    time.sleep(0.3)\n")
    r = util.run_eval(worker.url(), "python3", code)
    assert r.stdout == "012", r
    assert r.exit["verdict"] == "ok", r
    outs = r.of_type("stdout")
    assert len(outs) >= 2, "output was not streamed: %r" % r.messages
    t_first = outs[0][0]
    t_exit = r.of_type("exit")[0][0]
    # The program runs ~0.9 s after its first print; the first chunk must
    # not wait for the end.
    assert t_exit - t_first >= 0.45, (t_exit - t_first, r.messages)


def test_utf8_split_across_reads_and_invalid_bytes(worker):
    code = ("import sys, time\n"
            "e = 'é✓'.encode()\n"
            "sys.stdout.buffer.write(e[:1]); sys.stdout.flush(); time.sleep(0.2)\n"
            "sys.stdout.buffer.write(e[1:4]); sys.stdout.flush(); time.sleep(0.2)\n"
            "sys.stdout.buffer.write(e[4:] + b'|\\xff|\\n'); sys.stdout.flush()\n")
    r = util.run_eval(worker.url(), "python3", code)
    assert r.exit["verdict"] == "ok", r
    assert r.stdout == "é✓|\ufffd|\n", r


def test_large_output_intact(worker):
    # 300 KB of distinct lines: nothing lost, duplicated or reordered.
    code = "for i in range(30000):\n    print('%09d' % i)\n"
    r = util.run_eval(worker.url(), "python3", code, deadline=60)
    assert r.exit["verdict"] == "ok", r.exit
    assert r.stdout == "".join("%09d\n" % i for i in range(30000))


# ---- stdin -------------------------------------------------------------------------------

def test_initial_stdin(worker):
    code = "a = input()\nb = input()\nprint(int(a) + int(b))\n"
    r = util.run_eval(worker.url(), "python3", code, stdin="2\n40\n")
    assert r.stdout == "42\n", r
    assert r.exit["verdict"] == "ok" and r.exit["status"] == 0, r


def test_initial_stdin_is_closed_after_it(worker):
    # Without "stdin_open" the initial input is the whole input: EOF follows.
    code = "import sys\nd = sys.stdin.read()\nprint(repr(d))\n"
    r = util.run_eval(worker.url(), "python3", code, stdin="all of it\n", deadline=10)
    assert r.stdout == "'all of it\\n'\n", r
    # An empty initial input is still the whole input; without any "stdin"
    # the program's input stays open for stdin messages instead.
    r = util.run_eval(worker.url(), "python3", code, stdin="", deadline=10)
    assert r.stdout == "''\n" and r.verdict == "ok", r


def test_stdin_after_close_is_an_error(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            code = "import sys, time\nprint(len(sys.stdin.read()), flush=True)\ntime.sleep(0.5)\n"
            await util.send_json(ws, util.run_msg("python3", code, "c", stdin="abc"))
            m = await util.recv_json(ws, 15)
            assert m == {"type": "stdout", "id": "c", "data": "3\n"}, m
            await util.send_json(ws, {"type": "stdin", "id": "c", "data": "more"})
            m = await util.recv_json(ws, 10)
            assert m["type"] == "error" and m["id"] == "c", m
            return await asyncio.wait_for(util.collect_run(ws, "c"), 10)
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.verdict == "ok", r


def test_interactive_stdin_then_close(worker):
    code = ("import sys\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    line = sys.stdin.readline()\n"
            "    if not line:\n"
            "        break\n"
            "    print('got', line.strip(), flush=True)\n"
            "print('eof', flush=True)\n")

    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", code, "s1"))
            res = util.RunResult()

            async def until(text):
                while text not in res.stdout:
                    m = await util.recv_json(ws)
                    res.messages.append((time.monotonic(), m))
                    assert m["type"] in ("stdout", "stderr"), m
            await asyncio.wait_for(until("ready\n"), 15)
            await util.send_json(ws, {"type": "stdin", "id": "s1", "data": "a\n"})
            await asyncio.wait_for(until("got a\n"), 10)
            await util.send_json(ws, {"type": "stdin", "id": "s1", "data": "b\nc"})
            await util.send_json(ws, {"type": "stdin", "id": "s1", "data": "\n"})
            await util.send_json(ws, {"type": "stdin_close", "id": "s1"})
            await asyncio.wait_for(util.collect_run(ws, "s1", res), 10)
            return res
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.stdout == "ready\ngot a\ngot b\ngot c\neof\n", r
    assert r.exit["verdict"] == "ok" and r.exit["status"] == 0, r


def test_large_stdin(worker):
    data = "".join("line %d\n" % i for i in range(40000))  # ~400 KB, above pipe size
    code = ("import sys, hashlib\n"
            "d = sys.stdin.buffer.read()\n"
            "print(len(d), hashlib.sha256(d).hexdigest())\n")

    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", code, "big", stdin=data[:100000],
                                                  extra={"stdin_open": True}))
            for i in range(100000, len(data), 50000):
                await util.send_json(ws, {"type": "stdin", "id": "big",
                                          "data": data[i:i + 50000]})
            await util.send_json(ws, {"type": "stdin_close", "id": "big"})
            return await asyncio.wait_for(util.collect_run(ws, "big"), 30)
        finally:
            await ws.close()
    r = asyncio.run(go())
    want = "%d %s\n" % (len(data), hashlib.sha256(data.encode()).hexdigest())
    assert r.stdout == want, r
    assert r.exit["verdict"] == "ok", r


# ---- kill and timeouts ---------------------------------------------------------------------

def test_kill(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg(
                "python3", "import time\nprint('ready', flush=True)\ntime.sleep(100)", "k1"))
            m = await util.recv_json(ws, 15)
            assert m == {"type": "stdout", "id": "k1", "data": "ready\n"}, m
            t0 = time.monotonic()
            await util.send_json(ws, {"type": "kill", "id": "k1"})
            r = await asyncio.wait_for(util.collect_run(ws, "k1"), 10)
            return r, time.monotonic() - t0
        finally:
            await ws.close()
    r, dt = asyncio.run(go())
    assert r.exit["verdict"] == "killed", r
    assert r.exit["status"] is None, r
    assert dt < 5, dt


def test_timeout_busy_loop(worker):
    r = util.run_eval(worker.url(), "python3", "while True: pass", timeout_ms=500)
    assert r.exit["verdict"] == "timeout", r
    assert 500 <= r.exit["wall_ms"] < 5000, r
    assert r.exit["status"] is None, r
    # One thread cannot use more CPU than wall time (how much it got depends
    # on the machine's load, so only the bound is checked here).
    assert r.exit["cpu_ms"] <= r.exit["wall_ms"] + 50, r


def test_cpu_ms_is_measured(worker):
    # The program burns 300 ms of its own CPU time, whatever the load.
    code = ("import time\n"
            "t = time.process_time()\n"
            "while time.process_time() - t < 0.3:\n"
            "    pass\n")
    r = util.run_eval(worker.url(), "python3", code)
    assert r.verdict == "ok", r
    assert 300 <= r.exit["cpu_ms"] <= r.exit["wall_ms"] + 50, r


def test_timeout_default_from_flag(worker_factory):
    w = worker_factory(timeout_ms=700)
    r = util.run_eval(w.url(), "sh", "sleep 100")
    assert r.exit["verdict"] == "timeout", r
    assert 700 <= r.exit["wall_ms"] < 5000, r


def test_run_timeout_cannot_raise_worker_limit(worker_factory):
    w = worker_factory(timeout_ms=700)
    r = util.run_eval(w.url(), "sh", "sleep 100", timeout_ms=60000)
    assert r.exit["verdict"] == "timeout", r
    assert 700 <= r.exit["wall_ms"] < 5000, r


def test_timeout_keeps_output(worker):
    code = "import time\nprint('before', flush=True)\ntime.sleep(100)\n"
    r = util.run_eval(worker.url(), "python3", code, timeout_ms=800)
    assert r.stdout == "before\n", r
    assert r.exit["verdict"] == "timeout", r


# ---- invalid messages ------------------------------------------------------------------------

def test_unknown_runtime(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            r = await util.arun(ws, "cobol-nope", "DISPLAY 'x'.", run_id="u1", until_error=True)
            after = await util.arun(ws, "python3", "print(1)", run_id="u2")
            return r, after
        finally:
            await ws.close()
    r, after = asyncio.run(go())
    if r.errors:
        err = r.errors[0]
        assert err["id"] == "u1", err
        reason = err["error"]
    else:
        assert r.exit["verdict"] == "error", r
        reason = json.dumps(r.exit)
    assert "cobol-nope" in reason or "runtime" in reason.lower(), reason
    assert after.stdout == "1\n" and after.verdict == "ok", after


BAD_MESSAGES = [
    ("{not json", None),
    ("", None),
    ("[]", None),
    ("42", None),
    ('"run"', None),
    ('{"id":"b1"}', "b1"),
    ('{"type":"bogus","id":"b2"}', "b2"),
    ('{"type":"run","id":"b3","runtime":"python3"}', "b3"),
    ('{"type":"run","id":"b4","code":"print(1)"}', "b4"),
    ('{"type":"run","id":"b5","runtime":5,"code":"print(1)"}', "b5"),
    ('{"type":"run","id":"b6","runtime":"python3","code":["x"]}', "b6"),
    ('{"type":"run","id":"b7","runtime":"python3","code":"print(1)","timeout_ms":"soon"}', "b7"),
    ('{"type":"run","id":"b8","runtime":"python3","code":"print(1)","stdin":7}', "b8"),
    ('{"type":"run","id":"b9","runtime":"python3","code":"print(1)","timeout_ms":-5}', "b9"),
    ('{"type":"run","runtime":"python3","code":"print(1)"}', None),
    ('{"type":"stdin","id":"nope","data":"x"}', "nope"),
    ('{"type":"kill","id":"nope"}', "nope"),
]


def test_invalid_messages_get_errors_and_connection_survives(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            for text, rid in BAD_MESSAGES:
                await ws.send(text)
                m = await util.recv_json(ws, 10)
                assert m.get("type") == "error", (text, m)
                assert isinstance(m.get("error"), str) and len(m["error"]) > 3, (text, m)
                if rid is not None:
                    assert m.get("id") == rid, (text, m)
            # A binary message is not part of the protocol either.
            await ws.send(b"\x00binary")
            m = await util.recv_json(ws, 10)
            assert m.get("type") == "error", m
            return await util.arun(ws, "python3", "print('still here')", run_id="ok1")
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.stdout == "still here\n" and r.verdict == "ok", r


def test_duplicate_running_id_rejected(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            code = "import sys\nprint('ready', flush=True)\nsys.stdin.read()\n"
            await util.send_json(ws, util.run_msg("python3", code, "d1"))
            assert (await util.recv_json(ws, 15))["data"] == "ready\n"
            await util.send_json(ws, util.run_msg("python3", "print(2)", "d1"))
            m = await util.recv_json(ws, 10)
            assert m["type"] == "error" and m["id"] == "d1", m
            await util.send_json(ws, {"type": "stdin_close", "id": "d1"})
            return await asyncio.wait_for(util.collect_run(ws, "d1"), 10)
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.verdict == "ok" and r.stdout == "", r


def test_oversized_eval_message_closes_1009(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        await util.recv_hello(ws)
        big = json.dumps(util.run_msg("python3", "#" + "x" * (1024 * 1024) + "\nprint(1)"))
        await ws.send(big)
        return await util.expect_closed(ws)
    assert asyncio.run(go()) == 1009
    worker.healthy_and_serving()


def test_message_just_under_limit_accepted(worker):
    code = "#" + "x" * (1024 * 1024 - 200) + "\nprint('big ok')\n"
    msg = util.run_msg("python3", code)
    assert len(json.dumps(msg)) < 1024 * 1024
    r = util.run_eval(worker.url(), "python3", code, deadline=30)
    assert r.stdout == "big ok\n", r


# ---- several runs, queueing ---------------------------------------------------------------------

def test_concurrent_runs_on_one_connection(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            code = "import time\nfor i in range(3):\n    print('%s', i, flush=True)\n    time.sleep(0.1)\n"
            for rid in ("A", "B"):
                await util.send_json(ws, util.run_msg("python3", code % rid, rid))
            results = {"A": util.RunResult(), "B": util.RunResult()}
            pending = {"A", "B"}

            async def loop():
                while pending:
                    m = await util.recv_json(ws)
                    assert m["id"] in results, m
                    results[m["id"]].messages.append((time.monotonic(), m))
                    if m["type"] == "exit":
                        pending.discard(m["id"])
            await asyncio.wait_for(loop(), 30)
            return results
        finally:
            await ws.close()
    res = asyncio.run(go())
    for rid, r in res.items():
        assert r.stdout == "".join("%s %d\n" % (rid, i) for i in range(3)), r
        assert len(r.of_type("exit")) == 1


def test_queue_beyond_max_evals(worker_factory):
    """With one slot, a second run waits in the queue and starts when the
    first ends (the worker queues rather than refusing, up to --queue)."""
    w = worker_factory(max_evals=1)
    hold = "import sys\nprint('holding', flush=True)\nsys.stdin.read()\n"

    async def go():
        a = await util.ws_connect(w.url())
        b = await util.ws_connect(w.url())
        try:
            await util.recv_hello(a)
            await util.recv_hello(b)
            await util.send_json(a, util.run_msg("python3", hold, "a"))
            assert (await util.recv_json(a, 15))["data"] == "holding\n"
            await util.send_json(b, util.run_msg("python3", "print('second')", "b"))
            util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr),
                                                  "worker_evaluations_queued") == 1,
                          5, "the second run to be queued")
            # Still queued: nothing from b yet.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(b.recv(), 0.5)
            await util.send_json(a, {"type": "stdin_close", "id": "a"})
            ra = await asyncio.wait_for(util.collect_run(a, "a"), 10)
            rb = await asyncio.wait_for(util.collect_run(b, "b"), 15)
            return ra, rb
        finally:
            await a.close()
            await b.close()
    ra, rb = asyncio.run(go())
    assert ra.verdict == "ok" and rb.verdict == "ok" and rb.stdout == "second\n", (ra, rb)


# ---- client disconnect -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["close", "abort"])
def test_disconnect_kills_run(worker, how):
    mk = util.marker()
    # The marker is an argument of the long-lived shell, so pgrep -f sees it.
    code = "exec sh -c 'echo started; sleep 1000; echo never' %s\n" % mk

    async def go():
        ws = await util.ws_connect(worker.url())
        await util.recv_hello(ws)
        await util.send_json(ws, util.run_msg("sh", code, "d"))
        m = await util.recv_json(ws, 15)
        assert m["type"] == "stdout" and m["data"] == "started\n", m
        assert util.pgrep(mk), "the run's process is not visible"
        m = util.get_metrics(worker.addr)
        assert util.metric_sum(m, "worker_evaluations_running") == 1
        if how == "close":
            await ws.close()
        else:
            ws.transport.abort()  # no close frame: a dropped TCP connection
    asyncio.run(go())
    util.wait_idle(worker.addr, 5)
    util.wait_no_process(mk, 5)
    worker.healthy_and_serving()


def test_busy_beyond_queue(worker_factory):
    """--max-evals 1 --queue 1: one runs, one waits, the third is refused
    with "busy" at once; the two accepted ones both complete."""
    w = worker_factory(max_evals=1, queue=1)
    hold = "import sys\nprint('holding', flush=True)\nsys.stdin.read()\n"

    async def go():
        ws = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", hold, "a"))
            assert (await util.recv_json(ws, 15))["data"] == "holding\n"
            await util.send_json(ws, util.run_msg("python3", "print('b')", "b"))
            await util.send_json(ws, util.run_msg("python3", "print('c')", "c"))
            m = await util.recv_json(ws, 5)
            assert m == {"type": "error", "id": "c", "error": "busy"}, m
            await util.send_json(ws, {"type": "stdin_close", "id": "a"})
            exits = {}
            out = {}

            async def loop():
                while len(exits) < 2:
                    m = await util.recv_json(ws)
                    if m["type"] == "exit":
                        exits[m["id"]] = m
                    elif m["type"] == "stdout":
                        out[m["id"]] = out.get(m["id"], "") + m["data"]
                    else:
                        raise AssertionError(m)
            await asyncio.wait_for(loop(), 20)
            return exits, out
        finally:
            await ws.close()
    exits, out = asyncio.run(go())
    assert set(exits) == {"a", "b"} and out.get("b") == "b\n", (exits, out)
    assert all(e["verdict"] == "ok" for e in exits.values()), exits


def test_disconnect_drops_queued_runs(worker_factory):
    w = worker_factory(max_evals=1)
    mk = util.marker()
    hold = "import sys\nprint('holding', flush=True)\nsys.stdin.read()\n"

    async def go():
        a = await util.ws_connect(w.url())
        await util.recv_hello(a)
        await util.send_json(a, util.run_msg("python3", hold, "a"))
        assert (await util.recv_json(a, 15))["data"] == "holding\n"
        b = await util.ws_connect(w.url())
        await util.recv_hello(b)
        # Would leave a trace on the host's process list if it ever ran.
        await util.send_json(b, util.run_msg("sh", "exec sh -c 'sleep 1000' %s" % mk, "b"))
        util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr),
                                              "worker_evaluations_queued") == 1,
                      5, "b to be queued")
        total0 = util.metric_sum(util.get_metrics(w.addr), "worker_evaluations_total")
        await b.close()
        util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr),
                                              "worker_evaluations_queued") == 0,
                      5, "the queued run to be dropped")
        await util.send_json(a, {"type": "stdin_close", "id": "a"})
        r = await asyncio.wait_for(util.collect_run(a, "a"), 10)
        await a.close()
        return r, total0
    r, total0 = asyncio.run(go())
    assert r.verdict == "ok", r
    util.wait_idle(w.addr, 5)
    assert not util.pgrep(mk), "the dropped run was started anyway"


@pytest.mark.parametrize("msg", [
    '{"type":"run","id":5,"runtime":"python3","code":"print(1)"}',
    '{"type":"run","id":"%s","runtime":"python3","code":"print(1)"}' % ("i" * 1000),
    '{"type":"run","id":"n","runtime":"python3","code":"print(1)","timeout_ms":1.5e300}',
    '{"type":"run","id":"n","runtime":"python3\\u0000x","code":"print(1)"}',
])
def test_more_invalid_runs(worker, msg):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            await ws.send(msg)
            m = await util.recv_json(ws, 10)
            assert m["type"] == "error" and len(m["error"]) > 3, m
            return await util.arun(ws, "python3", "print(1)", run_id="after")
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.stdout == "1\n", r


def test_nul_bytes_in_code_and_output(worker):
    # NUL inside a JSON string is legal; the code either runs as sent or is
    # refused with an error, and NUL bytes in output arrive as \u0000.
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            await util.recv_hello(ws)
            await ws.send('{"type":"run","id":"z","runtime":"python3",'
                          '"code":"print(len(\'a\\u0000b\'))"}')
            r = await asyncio.wait_for(util.collect_run(ws, "z", until_error=True), 15)
            r2 = await util.arun(ws, "python3",
                                 "import sys\nsys.stdout.buffer.write(b'a\\x00b\\n')",
                                 run_id="z2")
            return r, r2
        finally:
            await ws.close()
    r, r2 = asyncio.run(go())
    assert r.errors or r.stdout == "3\n", r
    assert r2.stdout == "a\x00b\n", r2


def test_slow_reader_gets_all_output(worker):
    """Backpressure: the client stops reading while the program writes
    ~900 KB; nothing is lost once it reads again."""
    code = "for i in range(90000):\n    print('%09d' % i)\n"

    async def go():
        ws = await util.ws_connect(worker.url(), max_queue=1, read_limit=2 ** 12)
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", code, "s"))
            await asyncio.sleep(2)  # deliberately not reading: the load under test
            return await asyncio.wait_for(util.collect_run(ws, "s"), 60)
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.verdict == "ok", r.exit
    assert r.stdout == "".join("%09d\n" % i for i in range(90000))
