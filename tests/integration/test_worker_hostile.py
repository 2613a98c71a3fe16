"""Hostile programs: each run must be contained, and the worker must still
serve (print(1) runs) afterwards.

Nothing here may touch the network: socket tests only check that creating
an internet socket is refused, and connect only to 127.0.0.1 when a socket
could be created at all.
"""

import asyncio
import os
import threading
import time

import pytest

import util

OUTPUT_KB = 128


@pytest.fixture
def w(worker_factory):
    return worker_factory(output_kb=OUTPUT_KB, memory_mb=64)


def isolation(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            return (await util.recv_hello(ws))["isolation"]
        finally:
            await ws.close()
    return asyncio.run(go())


def run(worker, runtime, code, timeout_ms=None, deadline=30):
    return util.run_eval(worker.url(), runtime, code, timeout_ms=timeout_ms, deadline=deadline)


class Sampler:
    """Counts processes matching a marker in the background; keeps the max."""

    def __init__(self, mk):
        self.mk = mk
        self.max = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.max = max(self.max, len(util.pgrep(self.mk)))
            time.sleep(0.05)

    def done(self):
        self.stop.set()
        self.t.join(10)
        return self.max


# ---- resource exhaustion -----------------------------------------------------------------------

def test_fork_bomb_sh(w):
    mk = util.marker()
    # The marker is an argument of every shell in the bomb (forks keep argv).
    code = "exec sh -c 'f(){ f | f & }; f; wait' %s\n" % mk
    s = Sampler(mk)
    try:
        r = run(w, "sh", code, timeout_ms=2000)
    finally:
        peak = s.done()
    # It ends by the timeout, or dies out by itself once forks fail; either
    # way it is bounded in time and in processes.
    assert r.verdict in ("timeout", "ok", "memory"), r
    assert r.exit["wall_ms"] < 6000, r
    assert peak <= 256, "fork bomb reached %d processes" % peak
    util.wait_no_process(mk, 5)
    w.healthy_and_serving()


def test_fork_bomb_python(w):
    mk = util.marker()
    code = ("import os, sys\n"
            "if len(sys.argv) < 2:\n"
            "    os.execv(sys.executable, [sys.executable, '-I', 'main.py', %r])\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        pass\n" % mk)
    s = Sampler(mk)
    try:
        r = run(w, "python3", code, timeout_ms=2000)
    finally:
        peak = s.done()
    assert r.verdict in ("timeout", "memory"), r
    assert r.exit["wall_ms"] < 6000, r
    assert peak <= 256, "fork bomb reached %d processes" % peak
    util.wait_no_process(mk, 5)
    w.healthy_and_serving()


@pytest.mark.parametrize("code", [
    "x = bytearray(2 * 1024 ** 3)\nprint('allocated')\n",
    "a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n",
], ids=["2GiB-at-once", "1MiB-steps"])
def test_memory_bomb(w, code):
    iso = isolation(w)
    r = run(w, "python3", code, timeout_ms=8000)
    assert "allocated" not in r.stdout, r
    if "memory" in iso and iso != "full":
        # No cgroup memory controller: the address-space rlimit stops it.
        assert r.verdict == "memory" or "MemoryError" in r.stderr, (iso, r)
    else:
        assert r.verdict == "memory", (iso, r)
    assert r.exit["max_rss_kb"] < 4 * 64 * 1024, r
    w.healthy_and_serving()


@pytest.mark.parametrize("runtime,code", [
    ("python3", "while True: pass"),
    ("sh", "while :; do :; done"),
    ("python3", "import time\ntime.sleep(10 ** 9)"),
    ("sh", "sleep infinity"),
    ("sh", "exec cat"),  # waits for stdin that never comes nor closes
], ids=["py-loop", "sh-loop", "py-sleep", "sh-sleep", "stdin-wait"])
def test_runs_forever_times_out(w, runtime, code):
    r = run(w, runtime, code, timeout_ms=1000)
    assert r.verdict == "timeout", r
    assert 1000 <= r.exit["wall_ms"] < 5000, r
    w.healthy_and_serving()


# ---- escaping the process tree -----------------------------------------------------------------

def test_setsid_double_fork_sh(w):
    mk = util.marker()
    code = ("(setsid sh -c 'echo escaped; touch /tmp/flag; sleep 1000; echo %s' &)\n"
            "while [ ! -e /tmp/flag ]; do sleep 0.02; done\n"
            "echo parent done\n"
            "exit 0\n" % mk)
    r = run(w, "sh", code, timeout_ms=5000)
    assert r.verdict == "ok" and r.exit["status"] == 0, r
    assert "escaped\n" in r.stdout and "parent done\n" in r.stdout, r
    # The exit came when the program ended, not at the timeout.
    assert r.exit["wall_ms"] < 4000, r
    util.wait_no_process(mk, 5)
    w.healthy_and_serving()


def test_setsid_double_fork_python(w):
    mk = util.marker()
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        os.execv('/bin/sh', ['sh', '-c', 'touch /tmp/flag; exec sleep 1000', %r])\n"
            "    os._exit(0)\n"
            "os.wait()\n"
            "while not os.path.exists('/tmp/flag'):\n"
            "    time.sleep(0.02)\n"
            "print('orphaned', flush=True)\n" % mk)
    r = run(w, "python3", code, timeout_ms=5000)
    assert r.verdict == "ok" and r.stdout == "orphaned\n", r
    util.wait_no_process(mk, 5)
    w.healthy_and_serving()


# ---- output ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime,code,stream", [
    ("sh", "yes", "stdout"),
    ("python3", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", "stdout"),
    ("python3", "import sys\nwhile True:\n    sys.stderr.write('e' * 1000)\n", "stderr"),
    ("sh", "yes 'line of text' >&2", "stderr"),
], ids=["yes", "no-newline", "stderr-no-newline", "stderr-lines"])
def test_output_flood(w, runtime, code, stream):
    r = run(w, runtime, code, timeout_ms=8000)
    assert r.verdict == "output", r
    cap = OUTPUT_KB * 1024
    total = len(r.stdout.encode()) + len(r.stderr.encode())
    # What was produced up to the cap is delivered: at most one read past it.
    assert cap - 65536 <= total <= cap + 65536, total
    out = getattr(r, stream)
    assert len(out) >= total - 65536, (len(out), total)
    assert set(out) <= set("y\nxeline oftx"), set(out)
    assert r.exit["wall_ms"] < 6000, r
    w.healthy_and_serving()


# ---- files -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", [".", "/tmp"])
def test_disk_fill(w, where):
    # Bounded: it stops by itself after 512 MiB, which the test counts as a
    # failure (no limit), so a missing limit cannot fill the host's disk.
    code = ("import os\n"
            "n = 0\n"
            "try:\n"
            "    for i in range(16):\n"
            "        with open(os.path.join(%r, 'fill%%d' %% i), 'wb') as f:\n"
            "            for j in range(32):\n"
            "                f.write(b'x' * (1 << 20))\n"
            "                n += 1\n"
            "except OSError as e:\n"
            "    print('ERR', e.errno, n)\n"
            "else:\n"
            "    print('NOLIMIT', n)\n" % where)
    r = run(w, "python3", code, timeout_ms=8000)
    if r.verdict == "ok":
        words = r.stdout.split()
        assert words and words[0] == "ERR", r
        assert int(words[1]) in (27, 28, 122), r  # EFBIG, ENOSPC, EDQUOT
        assert int(words[2]) <= 256, "wrote %s MiB before a limit hit" % words[2]
    else:
        # SIGXFSZ or the worker stopping it are containment too.
        assert r.verdict in ("signaled", "memory", "killed"), r
    # The next run starts with a fresh work dir and /tmp.
    r = run(w, "python3", "import os\nprint(sorted(os.listdir('.')), sorted(os.listdir('/tmp')))")
    assert r.verdict == "ok" and r.stdout == "['main.py'] []\n", r
    w.healthy_and_serving()


def test_too_many_files(w):
    code = ("import os\n"
            "fds = []\n"
            "try:\n"
            "    while len(fds) < 100000:\n"
            "        fds.append(os.dup(1))\n"
            "except OSError as e:\n"
            "    print('errno', e.errno, len(fds))\n")
    r = run(w, "python3", code)
    assert r.verdict == "ok", r
    words = r.stdout.split()
    assert words[:2] == ["errno", "24"], r  # EMFILE
    assert 0 < int(words[2]) < 100000, r
    w.healthy_and_serving()


def test_work_dir_is_private(w):
    """A run cannot see the previous run's files, nor the host's paths."""
    mk = util.marker()
    r = run(w, "sh", "echo secret > %s; echo s > /tmp/%s; ls" % (mk, mk))
    assert r.verdict == "ok" and mk in r.stdout, r
    r = run(w, "sh", "ls -a; ls -a /tmp")
    assert r.verdict == "ok" and mk not in r.stdout, r
    assert not os.path.exists("/tmp/" + mk)


# ---- the network -------------------------------------------------------------------------------------

def test_internet_socket_refused(w):
    # Only socket creation is tried: never a connection to the outside.
    code = ("import socket\n"
            "for fam in (socket.AF_INET, socket.AF_INET6):\n"
            "    for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW):\n"
            "        try:\n"
            "            s = socket.socket(fam, typ)\n"
            "            print('CREATED', fam, typ)\n"
            "            s.close()\n"
            "        except OSError as e:\n"
            "            print('denied', e.errno)\n"
            "try:\n"
            "    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
            "    print('CREATED netlink')\n"
            "except OSError as e:\n"
            "    print('denied', e.errno)\n")
    r = run(w, "python3", code)
    assert r.verdict == "ok", r
    assert "CREATED" not in r.stdout, r
    assert r.stdout.count("denied") == 7, r
    w.healthy_and_serving()


def test_loopback_socket_to_worker_refused(w):
    code = ("import socket\n"
            "try:\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
            "    s.settimeout(2)\n"
            "    s.connect(('127.0.0.1', %d))\n"
            "    print('CONNECTED')\n"
            "except OSError as e:\n"
            "    print('failed', e.errno)\n" % w.port)
    r = run(w, "python3", code)
    assert r.verdict == "ok", r
    assert r.stdout.startswith("failed"), r
    w.healthy_and_serving()


# ---- privileges and the host ---------------------------------------------------------------------------

def test_read_etc_shadow_denied(w):
    code = ("try:\n"
            "    print('READ', open('/etc/shadow').read()[:10])\n"
            "except OSError as e:\n"
            "    print('denied', e.errno)\n")
    r = run(w, "python3", code)
    assert r.verdict == "ok", r
    # EACCES; ENOENT would mean the sandbox's root hides the file, also fine.
    assert r.stdout.strip() in ("denied 13", "denied 2"), r
    w.healthy_and_serving()


def test_write_outside_work_dir_fails(w):
    mk = util.marker()
    # /dev/shm is the run's private /tmp (POSIX shared memory must work), so a
    # write there succeeds; it must not reach the host's /dev/shm.
    paths = ["/etc/%s" % mk, "/usr/%s" % mk, "/%s" % mk, "/var/tmp/%s" % mk, "/root/%s" % mk,
             "/run/%s" % mk, "/usr/bin/%s" % mk]
    code = ("import os\n"
            "for p in %r:\n"
            "    try:\n"
            "        with open(p, 'w') as f:\n"
            "            f.write('x')\n"
            "        print('WROTE', p)\n"
            "    except OSError as e:\n"
            "        print('denied', e.errno)\n"
            "open('/tmp/%s', 'w').write('private')\n"
            "open('%s', 'w').write('in work dir')\n"
            "print('ok')\n" % (paths, mk, mk))
    try:
        r = run(w, "python3", code)
        assert r.verdict == "ok", r
        assert "WROTE" not in r.stdout, r
        assert r.stdout.count("denied") == len(paths) and r.stdout.endswith("ok\n"), r
        # The run's /tmp is its own.
        assert not os.path.exists("/tmp/%s" % mk)
        for p in paths + ["/dev/shm/%s" % mk]:
            assert not os.path.exists(p), p
    finally:
        for p in paths + ["/tmp/%s" % mk, "/dev/shm/%s" % mk]:
            if os.path.exists(p):
                os.unlink(p)
    w.healthy_and_serving()


def test_kill_everything(w):
    code = ("import os\n"
            "try:\n"
            "    os.kill(-1, 9)\n"
            "    print('sent')\n"
            "except OSError as e:\n"
            "    print('err', e.errno)\n"
            "for pid in (%d, 1):\n"
            "    try:\n"
            "        os.kill(pid, 9)\n"
            "        print('KILLED', pid)\n"
            "    except OSError as e:\n"
            "        print('err', e.errno)\n" % w.proc.pid)
    r = run(w, "python3", code)
    assert r.exit is not None, r
    assert w.alive(), "the worker was killed"
    assert "KILLED %d" % w.proc.pid not in r.stdout, r
    r = run(w, "sh", "kill -9 -1; echo after")
    assert r.exit is not None, r
    w.healthy_and_serving()


def test_ptrace_denied(w):
    code = ("import ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.ptrace.restype = ctypes.c_long\n"
            "print(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())\n"
            "print(libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())\n")
    r = run(w, "python3", code)
    assert r.verdict == "ok", r
    lines = r.stdout.split("\n")
    assert lines[0].split()[0] == "-1" and lines[1].split()[0] == "-1", r
    w.healthy_and_serving()


def test_setuid_denied_and_unprivileged(w):
    code = ("import os\n"
            "print('uid', os.getuid(), os.geteuid(), os.getgid())\n"
            "for f, a in ((os.setuid, 0), (os.setgid, 0), (os.seteuid, 0)):\n"
            "    try:\n"
            "        f(a)\n"
            "        print('BECAME', f.__name__)\n"
            "    except OSError as e:\n"
            "        print('denied', e.errno)\n")
    r = run(w, "python3", code)
    assert r.verdict == "ok", r
    first = r.stdout.split("\n")[0].split()
    assert first[0] == "uid" and int(first[1]) != 0 and int(first[2]) != 0, r
    assert "BECAME" not in r.stdout and r.stdout.count("denied") == 3, r
    w.healthy_and_serving()


def test_unshare_and_mount_denied(w):
    r = run(w, "sh", "unshare -r true; echo status $?; unshare -U true; echo status $?")
    assert r.verdict == "ok", r
    assert "status 0" not in r.stdout and r.stdout.count("status") == 2, r
    code = ("import ctypes\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.unshare(0x10000000), libc.unshare(0x00020000), libc.unshare(0x40000000))\n"
            "print(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))\n"
            "print(libc.setns(0, 0))\n")
    r = run(w, "python3", code)
    assert r.verdict == "ok", r
    assert r.stdout.split() == ["-1"] * 5, r
    w.healthy_and_serving()


def test_sandbox_facts(w):
    """What the program sees of itself: no new privileges, a seccomp
    filter, no capabilities, its own PID namespace, a minimal environment
    and no controlling terminal."""
    code = ("import os\n"
            "st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
            "print('nnp', st['NoNewPrivs'].strip())\n"
            "print('seccomp', st['Seccomp'].strip())\n"
            "print('capeff', st['CapEff'].strip())\n"
            "print('pid', os.getpid())\n"
            "print('procs', len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
            "print('env', ' '.join(sorted(os.environ)))\n"
            "try:\n"
            "    open('/dev/tty')\n"
            "    print('tty yes')\n"
            "except OSError:\n"
            "    print('tty no')\n")
    r = run(w, "python3", code)
    assert r.verdict == "ok", r
    facts = dict(line.split(" ", 1) for line in r.stdout.strip().split("\n"))
    assert facts["nnp"] == "1", r
    assert facts["seccomp"] == "2", r
    assert int(facts["capeff"], 16) == 0, r
    assert int(facts["pid"]) <= 3, r
    assert int(facts["procs"]) <= 3, r
    env = set(facts["env"].split())
    assert env <= {"PATH", "HOME", "LANG", "TMPDIR", "PWD", "LC_CTYPE"}, env
    assert facts["tty"] == "no", r


# ---- hostile clients ---------------------------------------------------------------------------------

def test_stdin_to_exited_program(w):
    """Writing stdin to a program that already exited (EPIPE) must not hurt
    the worker (SIGPIPE)."""
    async def go():
        ws = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("sh", "exec 0<&-; echo closed; sleep 0.3",
                                                  "p", extra={"stdin_open": True}))
            chunk = "z" * 65536
            for _ in range(8):
                await util.send_json(ws, {"type": "stdin", "id": "p", "data": chunk})
            r = util.RunResult()
            while r.exit is None:
                m = await util.recv_json(ws, 15)
                r.messages.append((time.monotonic(), m))
                if m["type"] == "exit":
                    r.exit = m
            return r
        finally:
            await ws.close()
    r = asyncio.run(go())
    assert r.verdict == "ok" and r.stdout == "closed\n", r
    w.healthy_and_serving()


def test_client_vanishes_during_output_flood(worker_factory):
    w = worker_factory(output_kb=100000)
    for _ in range(3):
        util.drop_mid_run(w.url(), "sh", "yes flood")
    util.wait_idle(w.addr)
    w.healthy_and_serving()


def test_many_concurrent_websockets(worker):
    """200 websockets at once on /echo and 20 runs on /eval, all answered."""
    async def echo_one(i):
        ws = await util.ws_connect(worker.url("/echo"))
        try:
            await util.recv_hello(ws)
            await ws.send("m%d" % i)
            assert await asyncio.wait_for(ws.recv(), 20) == "m%d" % i
        finally:
            await ws.close()

    async def eval_one(i):
        r = await util.arun_eval(worker.url(), "python3", "print(%d * 2)" % i, deadline=60)
        assert r.stdout == "%d\n" % (i * 2) and r.verdict == "ok", r

    async def go():
        await asyncio.wait_for(asyncio.gather(*[echo_one(i) for i in range(200)],
                                              *[eval_one(i) for i in range(20)]), 90)
    asyncio.run(go())
    util.wait_for(lambda: util.metric_sum(util.get_metrics(worker.addr),
                                          "worker_websockets") == 0, 10, "all closed")
    worker.healthy_and_serving()


def test_slowloris_and_garbage_do_not_block(worker):
    """Half-sent request heads and garbage bytes on other connections do
    not stop the worker from serving."""
    import socket
    socks = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", worker.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if i % 2 else os.urandom(300))
            socks.append(s)
        t0 = time.monotonic()
        worker.healthy_and_serving()
        assert time.monotonic() - t0 < 10
    finally:
        for s in socks:
            s.close()
