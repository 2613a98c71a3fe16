"""The worker's command line: --help/--version, bad flags, --config,
--runtimes, --upstream-secret-file, --max-message-kb, --uid-base and a busy port."""

import asyncio
import json
import os
import socket
import subprocess

import pytest
import websockets

import util
from conftest import binary


def run_cli(*args, timeout=10):
    return subprocess.run([binary("worker")] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


def hello_of(w, path="/eval", **kw):
    async def go():
        ws = await util.ws_connect(w.url(path), **kw)
        try:
            return await util.recv_hello(ws)
        finally:
            await ws.close()
    return asyncio.run(go())


def test_version_and_help():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip().endswith("0.1.0"), r
    r = run_cli("--help")
    assert r.returncode == 0, r
    for flag in ("--listen", "--id", "--advertise", "--redis", "--redis-prefix", "--max-evals",
                 "--timeout-ms", "--memory-mb", "--output-kb", "--runtimes", "--drain-s",
                 "--uid-base",
                 "--config", "--log-level", "--help", "--version"):
        assert flag in r.stdout, flag


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["--max-evals", "zero"],
    ["--max-evals", "0"],
    ["--listen", "not-an-address"],
    ["--config", "/nonexistent/worker.conf"],
    ["--runtimes", "/nonexistent/runtimes"],
    ["--uid-base", "0"],
])
def test_bad_flags_fail_fast(args):
    r = run_cli("--listen", "127.0.0.1:%d" % util.free_port(), *args) \
        if args[0] != "--listen" else run_cli(*args)
    assert r.returncode != 0, r
    assert r.stderr.strip(), "no reason given"


@pytest.mark.parametrize("wid", ["x" * 128, "a\tb"])
def test_unpublishable_id_refused(wid):
    """With Redis, an id no lb would read is refused at start rather than
    published (common/fleet.h: 1-127 bytes, no control characters)."""
    r = run_cli("--listen", "127.0.0.1:%d" % util.free_port(),
                "--redis", "127.0.0.1:%d" % util.free_port(), "--id", wid)
    assert r.returncode != 0 and "cannot be published" in r.stderr, r


def test_uid_base(worker_factory):
    """Slots run as --uid-base + slot, so that workers sharing a kernel do not
    share the limits it keeps per uid."""
    w = worker_factory(uid_base=4100000, max_evals=2)
    r = util.run_eval(w.url(), "sh", "id -u; id -un")
    assert r.verdict == "ok" and r.stdout == "4100000\nsandbox\n", r


def test_listen_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run_cli("--listen", "127.0.0.1:%d" % port)
    assert r.returncode != 0 and "in use" in r.stderr.lower(), r


def test_config_file(worker_factory, tmp_path):
    conf = tmp_path / "worker.conf"
    conf.write_text("# worker settings\nid = from-config\n\ntimeout-ms = 600\n")
    w = worker_factory(config=str(conf), id=None)
    assert hello_of(w)["worker"] == "from-config"
    r = util.run_eval(w.url(), "sh", "sleep 100")
    assert r.verdict == "timeout" and 600 <= r.exit["wall_ms"] < 5000, r


def test_config_file_overridden_by_flags(worker_factory, tmp_path):
    conf = tmp_path / "worker.conf"
    conf.write_text("id = from-config\n")
    w = worker_factory(config=str(conf), id="from-flag")
    assert hello_of(w)["worker"] == "from-flag"


def test_runtimes_file(worker_factory, tmp_path):
    rt = tmp_path / "runtimes"
    rt.write_text("[py]\nfile = prog.py\nrun = /usr/bin/python3 -I prog.py\n\n"
                  "[ghost]\nfile = x\nrun = /nonexistent/interpreter x\n\n"
                  "[shell]\nfile = s.sh\nrun = /bin/sh -c 'echo \"args: $0\"; . ./s.sh' zero\n")
    w = worker_factory(runtimes=str(rt))
    rts = hello_of(w)["runtimes"]
    assert sorted(rts) == ["py", "shell"], rts
    r = util.run_eval(w.url(), "py", "import os\nprint(sorted(os.listdir('.')))")
    assert r.stdout == "['prog.py']\n", r
    r = util.run_eval(w.url(), "shell", "echo sourced")
    assert r.stdout == "args: zero\nsourced\n", r
    r = util.run_eval(w.url(), "python3", "print(1)", until_error=True)
    assert r.errors or r.verdict == "error", r


def test_bad_runtimes_file_fails(tmp_path):
    rt = tmp_path / "runtimes"
    rt.write_text("[py]\nrun = /usr/bin/python3 'unterminated\n")
    r = run_cli("--listen", "127.0.0.1:%d" % util.free_port(), "--runtimes", str(rt))
    assert r.returncode != 0 and "runtimes" in r.stderr, r


def test_upstream_secret(worker_factory, tmp_path):
    sec = tmp_path / "secret"
    sec.write_text("s3cr3t-value\n")
    w = worker_factory(upstream_secret_file=str(sec))

    async def refused(headers):
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            await util.ws_connect(w.url(), extra_headers=headers)
        return ei.value.status_code
    assert asyncio.run(refused({})) == 403
    assert asyncio.run(refused({"X-Upstream-Secret": "s3cr3t-valuX"})) == 403
    assert asyncio.run(refused({"X-Upstream-Secret": "s3cr3t"})) == 403
    assert hello_of(w, extra_headers={"X-Upstream-Secret": "s3cr3t-value"})["type"] == "hello"
    # Health and metrics stay open to probes.
    assert util.http_get(w.addr, "/healthz")[0] == 200


def test_max_message_kb(worker_factory):
    w = worker_factory(max_message_kb=4)

    async def go():
        ws = await util.ws_connect(w.url())
        await util.recv_hello(ws)
        ok = await util.arun(ws, "python3", "print('%s' and 1)" % ("a" * 3000))
        assert ok.stdout == "1\n", ok
        await ws.send(json.dumps(util.run_msg("python3", "#" + "b" * 5000)))
        return await util.expect_closed(ws)
    assert asyncio.run(go()) == 1009


def test_work_root(worker_factory, tmp_path):
    root = tmp_path / "runs"
    w = worker_factory(work_root=str(root))
    r = util.run_eval(w.url(), "sh", "echo hi > marker-file; head -c 1000000 /dev/zero > big; echo done")
    assert r.stdout == "done\n", r
    assert root.is_dir()
    # A run's files are removed once it is over, not left for the next run.
    # The root's own lock (held while the worker lives) is the only file.
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    assert files == [str(root / ".lock")], files
    w.stop()
    assert w.wait(10) == 0
    assert not root.exists(), "the work root outlived the worker"
