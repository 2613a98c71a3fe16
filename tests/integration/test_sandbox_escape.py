"""Sandbox escape attempts through the real worker's /eval: hidden memory,
/proc snooping, signals to the worker, inherited descriptors, planted links,
`../` names, a compiler reading host files, leftovers between runs, sockets
between concurrent runs, host-wide kernel quotas and the 32-bit syscall ABIs. Each attempt must be contained, and the worker must
still run print(1) afterwards.

Nothing here uses the network beyond the worker's and Redis's loopback
ports. Runs that must share a slot use a worker with --max-evals 1.
"""

import asyncio
import errno
import glob
import hashlib
import json
import os
import signal
import subprocess

import pytest

import util
from conftest import binary, sanitizer_env

MEM_MB = 64


@pytest.fixture
def w1(worker_factory):
    """A worker with one slot, so consecutive runs share a work dir and a
    cgroup, and a small memory limit."""
    return worker_factory(max_evals=1, memory_mb=MEM_MB)


def run(worker, runtime, code, timeout_ms=None, deadline=30):
    return util.run_eval(worker.url(), runtime, code, timeout_ms=timeout_ms, deadline=deadline)


def hello(worker):
    async def go():
        ws = await util.ws_connect(worker.url())
        try:
            return await util.recv_hello(ws)
        finally:
            await ws.close()
    return asyncio.run(go())


def need_c(worker):
    if "c" not in hello(worker)["runtimes"]:
        pytest.skip("no c runtime (gcc missing)")


# ---- the slot's memory cgroup ----------------------------------------------------------

def slot_memory_stats(worker):
    """memory.stat files of the worker's slot cgroups (v1 or v2); empty when
    the worker runs without cgroups."""
    pid = worker.proc.pid
    found = set()
    with open("/proc/%d/cgroup" % pid) as f:
        lines = f.read().splitlines()
    for line in lines:
        hid, ctls, path = line.split(":", 2)
        if "memory" in ctls.split(","):
            base = "/sys/fs/cgroup/memory" + path
        elif hid == "0" and ctls == "":
            base = "/sys/fs/cgroup" + path
        else:
            continue
        # v2 may have moved the worker into a "-self" leaf next to its tree.
        for b in (base, os.path.dirname(base)):
            found.update(glob.glob(os.path.join(b, "wsworker-%d-*" % pid, "slot*",
                                                "memory.stat")))
    return sorted(found)


def held_mib(stats):
    """Anonymous + shared memory (tmpfs, memfd, SysV shm) charged to the slot
    cgroups, in MiB. Page cache of files the run read is not counted: it is
    reclaimable and not the run's to keep."""
    total = 0
    for path in stats:
        with open(path) as f:
            st = dict(line.split() for line in f if line.strip())
        if "total_shmem" in st:
            total += int(st["total_shmem"]) + int(st["total_rss"])
        else:
            total += int(st.get("shmem", 0)) + int(st.get("anon", 0))
    return total / 2 ** 20


def assert_memory_released(worker, stats):
    """Whatever the run held is uncharged, and the next run in the slot gets
    its whole limit (python itself needs ~10 MiB of the 64)."""
    if stats:
        # The worker empties /work just after sending the exit message.
        util.wait_for(lambda: held_mib(stats) < 2, 2, "slot memory released (held %.1f MiB)"
                      % held_mib(stats), interval=0.01)
    r = run(worker, "python3", "x = bytearray(44 << 20)\nprint(len(x) >> 20)")
    assert r.verdict == "ok" and r.stdout == "44\n", r


MEMFD_WRITE = """\
import os
n = 0
for i in range(40):
    fd = os.memfd_create('hide%d' % i)
    for j in range(8):
        os.write(fd, b'm' * (1 << 20))
        n += 1
print('HID', n)
"""

MEMFD_MMAP = """\
import mmap, os
maps = []
for i in range(40):
    fd = os.memfd_create('map%d' % i)
    os.ftruncate(fd, 8 << 20)
    m = mmap.mmap(fd, 8 << 20)
    os.close(fd)
    for off in range(0, 8 << 20, 4096):
        m[off] = 1
    maps.append(m)
print('HID', len(maps) * 8)
"""

MEMFD_BIG = """\
import os
fd = os.memfd_create('big')
try:
    os.ftruncate(fd, 1 << 30)
    for i in range(1024):
        os.pwrite(fd, b'b' * (1 << 20), i << 20)
    print('HID 1024')
except OSError as e:
    print('ERR', e.errno)
"""


@pytest.mark.parametrize("code", [MEMFD_WRITE, MEMFD_MMAP, MEMFD_BIG],
                         ids=["memfd-write", "memfd-mmap", "memfd-one-big"])
def test_memory_hidden_in_memfd(w1, code):
    stats = slot_memory_stats(w1)
    r = run(w1, "python3", code, timeout_ms=10000)
    assert "HID" not in r.stdout, r
    if r.verdict == "ok":
        # One file cannot pass RLIMIT_FSIZE: EFBIG before any memory is used.
        assert r.stdout.split()[:2] == ["ERR", str(errno.EFBIG)], r
    else:
        assert r.verdict == "memory", r
    assert_memory_released(w1, stats)
    w1.healthy_and_serving()


@pytest.mark.parametrize("dirs", [["/tmp"], ["/work"], ["/dev/shm"], ["/tmp", "/work"]],
                         ids=["tmp", "work", "dev-shm", "tmp+work"])
def test_memory_hidden_in_tmpfs(w1, dirs):
    stats = slot_memory_stats(w1)
    # Bounded at 320 MiB per directory, which the test counts as no limit.
    code = ("import os\n"
            "n = 0\n"
            "for d in %r:\n"
            "    try:\n"
            "        for i in range(40):\n"
            "            with open(os.path.join(d, 'fill%%d' %% i), 'wb') as f:\n"
            "                f.write(b'f' * (8 << 20))\n"
            "            n += 8\n"
            "        print('NOLIMIT', d, n, flush=True)\n"
            "    except OSError as e:\n"
            "        print('ERR', e.errno, n, flush=True)\n" % dirs)
    r = run(w1, "python3", code, timeout_ms=10000)
    assert "NOLIMIT" not in r.stdout, r
    if r.verdict == "ok":
        lines = r.stdout.split("\n")[:-1]
        assert len(lines) == len(dirs), r
        for line in lines:
            word, err, _ = line.split()
            assert word == "ERR" and int(err) in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT), r
        assert int(lines[-1].split()[2]) <= MEM_MB + 8, r
    else:
        assert r.verdict == "memory", r
    assert_memory_released(w1, stats)
    r = run(w1, "sh", "ls -A /work /tmp /dev/shm/")
    assert r.verdict == "ok" and r.stdout == "/dev/shm/:\n\n/tmp:\n\n/work:\nmain.sh\n", r
    w1.healthy_and_serving()


def test_sysv_shm_released_before_next_run(w1):
    """SysV segments outlive their creator; the kernel frees an IPC namespace
    late (a work queue after an RCU grace period). The next run, started at
    once in the same slot and cgroup, must not pay for them."""
    stats = slot_memory_stats(w1)
    leave = ("import ctypes\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "libc.shmat.restype = ctypes.c_void_p\n"
             "for k in range(2):\n"
             "    i = libc.shmget(0, 20 << 20, 0o1000 | 0o600)\n"
             "    ctypes.memset(libc.shmat(i, None, 0), 7, 20 << 20)\n"
             "print('left', libc.semget(0, 2, 0o1000 | 0o600) >= 0,\n"
             "      libc.msgget(0, 0o1000 | 0o600) >= 0)\n")
    for _ in range(3):
        r = run(w1, "python3", leave)
        assert r.verdict == "ok" and r.stdout == "left True True\n", r
        if stats:
            # Already uncharged when the exit message arrives: no grace.
            assert held_mib(stats) < 2, "%.1f MiB still charged" % held_mib(stats)
        r = run(w1, "python3", "x = bytearray(44 << 20)\n"
                               "print(len(x) >> 20, [len(open('/proc/sysvipc/' + n).readlines())"
                               " for n in ('shm', 'sem', 'msg')])")
        assert r.verdict == "ok" and r.stdout == "44 [1, 1, 1]\n", r
    w1.healthy_and_serving()


# ---- /proc ------------------------------------------------------------------------------

SNOOP = """\
import json, os
me = os.getpid()
seen = {}
for p in os.listdir('/proc'):
    if not p.isdigit():
        continue
    info = {}
    for f in ('cmdline', 'environ', 'status'):
        try:
            info[f] = open('/proc/%s/%s' % (p, f), 'rb').read().decode('latin-1')
        except OSError as e:
            info[f] = 'E%d' % e.errno
    seen[p] = info
def tryrw(path, mode):
    try:
        with open(path, mode) as f:
            return 'read %d' % len(f.read(64)) if 'r' in mode else f.write('1')
    except OSError as e:
        return errno_name(e.errno)
def errno_name(n):
    import errno
    return errno.errorcode.get(n, str(n))
mounts = [l.split() for l in open('/proc/self/mountinfo')]
print(json.dumps({
    'me': me, 'seen': seen,
    'exists': {p: os.path.exists(p) for p in ('/proc/1', '/proc/%d' % WORKER, '/sys')},
    'cgroup': open('/proc/self/cgroup').read(),
    'mounts': [(m[3], m[4], m[5].split(',')[0]) for m in mounts],
    'mountinfo': open('/proc/self/mountinfo').read(),
    'writes': {p: tryrw(p, 'w') for p in ('/proc/sys/kernel/hostname', '/proc/sysrq-trigger',
                                          '/proc/sys/vm/drop_caches', '/proc/pressure/cpu',
                                          '/proc/pressure/memory')},
    'kcore': tryrw('/proc/kcore', 'rb') if os.path.exists('/proc/kcore') else 'absent',
    'host': {p: tryrw(p, 'r') for p in ('/proc/cmdline', '/proc/sys/kernel/random/boot_id',
                                        '/proc/key-users', '/proc/kallsyms', '/proc/swaps')},
}))
"""


def test_proc_snooping(worker_factory, monkeypatch):
    """A run sees neither a concurrent run's processes nor the worker's, nor
    their command lines or environments; its mount table shows only the
    documented mounts and no host path but /usr."""
    secret = util.marker("wslbsecret")
    monkeypatch.setenv("WSLB_WORKER_SECRET", secret)
    w = worker_factory(max_evals=2)
    other = util.marker("wslbother")

    async def go():
        ws_a = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws_a)
            code_a = ("export OTHER_ENV=%s\n"
                      "exec python3 -c 'import time; print(\"up\", flush=True); "
                      "time.sleep(30)' %s\n" % (other, other))
            await util.send_json(ws_a, util.run_msg("sh", code_a, "a"))
            m = await util.recv_json(ws_a)
            assert m["type"] == "stdout" and m["data"] == "up\n", m
            r_b = await util.arun_eval(w.url(), "python3",
                                       SNOOP.replace("WORKER", str(w.proc.pid)))
            await util.send_json(ws_a, {"type": "kill", "id": "a"})
            r_a = await asyncio.wait_for(util.collect_run(ws_a, "a"), 20)
            return r_a, r_b
        finally:
            await ws_a.close()
    r_a, r_b = asyncio.run(go())
    assert r_a.verdict == "killed", r_a
    assert r_b.verdict == "ok", r_b
    assert secret not in r_b.stdout and other not in r_b.stdout, r_b
    facts = json.loads(r_b.stdout)
    # Only the program itself: init (a copy of the worker, showing the
    # worker's command line) is hidden, the other run is in another PID
    # namespace, the worker in the host's.
    assert list(facts["seen"]) == [str(facts["me"])], facts["seen"].keys()
    assert facts["exists"] == {"/proc/1": False, "/proc/%d" % w.proc.pid: False,
                               "/sys": False}, facts["exists"]
    # The cgroup namespace starts at the slot: no worker pid, no host path.
    assert set(line.rsplit(":", 1)[1] for line in facts["cgroup"].split()) == {"/"}, facts
    # Mount points and the host paths they show.
    points = {m[1] for m in facts["mounts"]}
    assert points <= {"/", "/usr", "/etc", "/proc", "/proc/sys", "/proc/pressure", "/proc/kcore",
                      "/proc/sysrq-trigger", "/proc/keys", "/proc/timer_list",
                      "/proc/sched_debug", "/proc/cmdline", "/proc/sys/kernel/random/boot_id",
                      "/proc/key-users", "/proc/config.gz", "/proc/kallsyms", "/proc/modules",
                      "/proc/swaps", "/dev", "/dev/null", "/dev/zero", "/dev/full",
                      "/dev/random", "/dev/urandom", "/work", "/tmp"}, points
    roots = {m[0] for m in facts["mounts"]}
    assert roots <= {"/", "/usr", "/sys", "/pressure", "/null", "/zero", "/full", "/random",
                     "/urandom"}, roots
    modes = {m[1]: m[2] for m in facts["mounts"]}
    assert modes["/"] == "ro" and modes["/usr"] == "ro" and modes["/etc"] == "ro", modes
    assert modes["/proc/sys"] == "ro" and modes.get("/proc/pressure", "ro") == "ro", modes
    assert "wsworker" not in facts["mountinfo"], facts["mountinfo"]
    for path, res in facts["writes"].items():
        assert res in ("EROFS", "EACCES", "ENOENT"), (path, res)
    assert facts["writes"]["/proc/pressure/cpu"] in ("EROFS", "ENOENT"), facts["writes"]
    assert facts["kcore"] in ("absent", "read 0", "EACCES"), facts["kcore"]
    # What identifies or describes the host reads empty.
    assert set(facts["host"].values()) <= {"read 0", "ENOENT"}, facts["host"]
    w.healthy_and_serving()


# ---- signals to the worker -------------------------------------------------------------

SIGNALS = """\
import os, re, signal, subprocess, time
me = os.getpid()
guess = [int(x) for x in re.findall(r'wsworker-(\\d+)', open('/proc/self/cgroup').read())]
res = {}
for p in guess + [WORKER]:
    try:
        os.kill(p, signal.SIGKILL)
        res[p] = 'SENT'
    except OSError as e:
        res[p] = e.errno
hits = set()
for p in range(1, 32769):
    if p == me:
        continue
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        try:
            os.kill(p, sig)
            hits.add(p)
        except OSError:
            pass
print('guessed', guess, res, 'hits', sorted(hits))
child = subprocess.Popen(['/bin/sleep', '30'])
os.kill(-1, signal.SIGSTOP)
time.sleep(0.1)
with open('/proc/%d/stat' % child.pid) as f:
    print('child', f.read().rsplit(')', 1)[1].split()[0], flush=True)
"""


def test_signals_to_worker(w1):
    """kill(2) at the worker's real pid (as if guessed from the cgroup, which
    no longer shows it), SIGSTOP and SIGKILL at every pid up to 32768, then
    kill(-1, SIGSTOP): only the run's own processes can be hit."""
    wpid = w1.proc.pid
    r = run(w1, "python3", SIGNALS.replace("WORKER", str(wpid)), timeout_ms=8000)
    assert r.verdict == "ok", r
    lines = r.stdout.split("\n")
    assert lines[0].startswith("guessed [] {%d: %d} hits " % (wpid, errno.ESRCH)), r
    # The namespace's init ignores signals from inside even when kill()
    # reports success (kernels without Landlock's signal scope).
    assert lines[0].split("hits ")[1] in ("[]", "[1]"), r
    # kill(-1) reached the run's own child (not the caller) and nothing else;
    # the stopped child did not keep the run alive past its program.
    assert lines[1] == "child T", r
    assert r.exit["wall_ms"] < 6000, r
    with open("/proc/%d/stat" % wpid) as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    assert state in ("S", "R"), "worker state %s" % state
    w1.healthy_and_serving()


# ---- inherited descriptors --------------------------------------------------------------

FDS = """\
import json, os
listed = sorted(int(x) for x in os.listdir('/proc/self/fd'))
valid = []
for fd in range(3, 1025):
    try:
        os.fstat(fd)
        valid.append(fd)
    except OSError:
        pass
print(json.dumps({'listed': listed, 'valid': valid}))
"""


def test_no_descriptor_leaks_into_runs(worker_factory, redis_server, tmp_path):
    """The worker holds its listening socket, a Redis connection and client
    websockets; a run, and a build step, get stdin/stdout/stderr only. The
    "probe" runtime runs the code as its build step, where a hostile
    compiler would be."""
    rt = tmp_path / "runtimes"
    rt.write_text("[python3]\nfile = main.py\nrun = /usr/bin/python3 -I main.py\n"
                  "[probe]\nfile = main.py\nbuild = /usr/bin/python3 -I main.py\n"
                  "run = /bin/true\n")
    w = worker_factory(redis=redis_server, max_evals=2, runtimes=str(rt))

    def sockets():
        n = 0
        for fd in os.listdir("/proc/%d/fd" % w.proc.pid):
            try:
                n += os.readlink("/proc/%d/fd/%s" % (w.proc.pid, fd)).startswith("socket:")
            except OSError:
                pass
        return n

    async def go():
        clients = [await util.ws_connect(w.url("/echo")) for _ in range(5)]
        try:
            for c in clients:
                await util.recv_hello(c)
            # listening + Redis + 5 clients, at least
            util.wait_for(lambda: sockets() >= 7, 10, "worker sockets (have %d)" % sockets())
            return [await util.arun_eval(w.url(), rt_name, FDS) for rt_name in
                    ("python3", "probe")]
        finally:
            for c in clients:
                await c.close()

    for r in asyncio.run(go()):
        assert r.verdict == "ok", r
        facts = json.loads(r.stdout)
        assert facts["valid"] == [], facts
        assert set(facts["listed"]) <= {0, 1, 2, 3}, facts  # 3: listdir's own
    w.healthy_and_serving()


# ---- planted links -----------------------------------------------------------------------

def snapshot(path):
    st = os.lstat(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return (digest, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_nlink, st.st_mtime_ns)


def test_planted_links_for_the_next_run(w1, tmp_path):
    """A run plants symlinks and hard links where the next run's source file
    and outputs will go, links to / and /etc, unreadable directories and a
    process that keeps re-planting; the worker's reset and its write of the
    next source file neither follow nor damage anything."""
    victim = tmp_path / "victim"
    victim.write_text("victim\n")
    os.chmod(victim, 0o666)
    os.chmod(tmp_path, 0o755)
    watched = ["/etc/passwd", "/etc/shadow", str(victim), binary("worker")]
    before = {p: snapshot(p) for p in watched}
    plant = ("cd /work\n"
             "rm -f main.py main.c main\n"
             "ln -s /etc/shadow main.py\n"
             "ln -s /etc/passwd main.c\n"
             "ln -s %s main\n"
             "ln -s / root\n"
             "ln -s /etc etc\n"
             "ln /etc/passwd hard 2>/dev/null || echo no-hard-link\n"
             "ln main.sh hard-to-own\n"
             "mkdir -p d/e && ln -s /etc/shadow d/e/main.py && chmod 000 d/e d\n"
             "mkfifo fifo\n"
             "(while :; do ln -sf /etc/shadow /work/main.py 2>/dev/null;"
             " ln -sf %s /work/main.sh 2>/dev/null; done) &\n"
             "sleep 0.1\n"
             "echo planted\n" % (victim, victim))
    checks = [("python3", "import os\nprint('py', sorted(os.listdir('.')))\n",
               "py ['main.py']\n"),
              ("sh", "echo sh $(ls -A)\n", "sh main.sh\n")]
    c = "c" in hello(w1)["runtimes"]
    if c:
        checks.append(("c", '#include <stdio.h>\nint main(void){puts("c ok");return 0;}\n',
                       "c ok\n"))
    for runtime, code, want in checks:
        r = run(w1, "sh", plant)
        assert r.verdict == "ok" and "planted\n" in r.stdout, r
        assert "no-hard-link" in r.stdout, r  # /work is its own file system
        r = run(w1, runtime, code)
        assert r.verdict == "ok" and r.stdout == want, (runtime, r)
    after = {p: snapshot(p) for p in watched}
    assert after == before
    assert victim.read_text() == "victim\n"
    w1.healthy_and_serving()


# ---- `../` in file names ------------------------------------------------------------------

@pytest.mark.parametrize("text,why", [
    ("[py]\nfile = ../escape.py\nrun = /usr/bin/python3 main.py\n", "plain file name"),
    ("[py]\nfile = /tmp/escape.py\nrun = /usr/bin/python3 main.py\n", "plain file name"),
    ("[py]\nfile = a/../../b.py\nrun = /usr/bin/python3 main.py\n", "plain file name"),
    ("[py]\nfile = ..\nrun = /usr/bin/python3 main.py\n", "plain file name"),
    ("[../py]\nfile = main.py\nrun = /usr/bin/python3 main.py\n", "bad runtime name"),
], ids=["dotdot", "absolute", "nested", "dotdot-only", "runtime-name"])
def test_runtimes_file_paths_rejected(tmp_path, text, why):
    rt = tmp_path / "runtimes"
    rt.write_text(text)
    r = subprocess.run([binary("worker"), "--listen", "127.0.0.1:%d" % util.free_port(),
                        "--runtimes", str(rt)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20,
                       env=sanitizer_env())
    assert r.returncode != 0 and why in r.stderr, r


def test_protocol_cannot_name_a_path(w1):
    """A run message has no field that names a file: path-like extras are
    ignored and path-like runtime names are unknown runtimes."""
    mk = util.marker()
    extra = {k: "../../../../tmp/%s" % mk for k in ("file", "filename", "path", "name", "cwd",
                                                    "dir", "workdir", "main")}
    r = util.run_eval(w1.url(), "python3", "import os\nprint(os.getcwd(), os.listdir('.'))",
                      extra=extra)
    assert r.verdict == "ok" and r.stdout == "/work ['main.py']\n", r
    for name in ("../python3", "/usr/bin/python3", "python3/../sh", "..", "."):
        r = util.run_eval(w1.url(), name, "print(1)", until_error=True)
        assert r.errors or r.verdict == "error", (name, r)
        assert not r.stdout, (name, r)
    assert not glob.glob("/tmp/%s*" % mk) and not glob.glob("/%s*" % mk)
    w1.healthy_and_serving()


# ---- what the compiler (and the program) can read -----------------------------------------

HOST_ONLY = ["hostname", "hosts", "resolv.conf", "machine-id", "shadow", "gshadow", "ssh",
             "redis", "nginx", "haproxy", "sudoers", "crontab", "fstab", "environment"]


def test_compiler_reads_host_files(worker_factory, monkeypatch):
    secret = util.marker("wslbsecret")
    monkeypatch.setenv("WSLB_WORKER_SECRET", secret)
    w = worker_factory(max_evals=1)
    need_c(w)
    for inc in ("/etc/shadow", "/etc/hostname", "/etc/machine-id", "/proc/1/environ",
                "/proc/1/cmdline"):
        r = run(w, "c", '#include "%s"\nint main(void){return 0;}\n' % inc)
        assert r.verdict == "error" and "build failed" in r.exit.get("error", ""), (inc, r)
        assert "No such file" in r.stderr, (inc, r)
        assert secret not in r.stdout + r.stderr, (inc, r)
    # The compiler's own environment is the sandbox's minimal one (gcc reads
    # the size-0 /proc file as empty, so this may even build).
    r = run(w, "c", '#include "/proc/self/environ"\nint main(void){return 0;}\n')
    assert r.verdict in ("ok", "error") and secret not in r.stdout + r.stderr, r
    r = run(w, "c", 'asm(".incbin \\"/etc/shadow\\"");\nint main(void){return 0;}\n')
    assert r.verdict == "error" and "root:" not in r.stdout + r.stderr, r
    # What /etc holds: nothing host-specific, yet python3, sh and gcc work.
    r = run(w, "python3", "import os, pwd, time\n"
                          "print(' '.join(sorted(os.listdir('/etc'))))\n"
                          "print(pwd.getpwuid(os.getuid()).pw_name, time.localtime().tm_zone)\n")
    assert r.verdict == "ok", r
    listing, who = r.stdout.split("\n")[:2]
    present = [f for f in HOST_ONLY if f in listing.split()]
    assert present == [], present
    assert "passwd" in listing.split() and who.split()[0] == "sandbox", r
    r = run(w, "c", '#include <stdio.h>\n#include <math.h>\n'
                    'int main(void){printf("%.1f\\n", sqrt(2.0) * 0 + 42);return 0;}\n')
    assert r.verdict == "ok" and r.stdout == "42.0\n", r
    r = run(w, "sh", "id -un; awk 'BEGIN{print 6*7}'; date +%Z")
    assert r.verdict == "ok" and r.stdout.split("\n")[:2] == ["sandbox", "42"], r
    w.healthy_and_serving()


# ---- leftovers ------------------------------------------------------------------------------

def test_nothing_left_for_the_next_run(w1):
    mk = util.marker()
    leave = ("import ctypes, os, socket, subprocess\n"
             "for p in ('/work/left', '/tmp/left', '/dev/shm/left2'):\n"
             "    open(p, 'w').write('x')\n"
             "os.mkdir('/tmp/dir')\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "KEY = 0x5157\n"
             "print(libc.shmget(KEY, 4096, 0o1000 | 0o666) >= 0,\n"
             "      libc.semget(KEY, 1, 0o1000 | 0o666) >= 0,\n"
             "      libc.msgget(KEY, 0o1000 | 0o666) >= 0)\n"
             "subprocess.Popen(['/bin/sleep', '1000', %r], start_new_session=True)\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "s.bind(b'\\0%s')\n"
             "s.listen(1)\n"
             "os.set_inheritable(s.fileno(), True)\n"
             "subprocess.Popen(['/bin/sleep', '1000', %r], pass_fds=[s.fileno()],\n"
             "                 start_new_session=True)\n"
             "print('left', flush=True)\n" % (mk, mk, mk))
    check = ("import ctypes, os, socket\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "KEY = 0x5157\n"
             "print(sorted(os.listdir('/work')), os.listdir('/tmp'), os.listdir('/dev/shm'))\n"
             "print(libc.shmget(KEY, 0, 0), libc.semget(KEY, 0, 0), libc.msgget(KEY, 0, 0))\n"
             "print([len(open('/proc/sysvipc/' + n).readlines()) for n in"
             " ('shm', 'sem', 'msg')])\n"
             "print([p for p in os.listdir('/proc') if p.isdigit()])\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n"
             "    s.connect(b'\\0%s')\n"
             "    print('CONNECTED')\n"
             "except OSError as e:\n"
             "    print('refused')\n" % mk)
    for _ in range(2):
        r = run(w1, "python3", leave)
        assert r.verdict == "ok" and r.stdout == "True True True\nleft\n", r
        util.wait_no_process(mk, 5)
        r = run(w1, "python3", check)
        assert r.verdict == "ok", r
        assert r.stdout == ("['main.py'] [] []\n-1 -1 -1\n[1, 1, 1]\n['2']\nrefused\n"), r
    w1.healthy_and_serving()


def test_sockets_between_concurrent_runs(worker_factory):
    """Each slot has its own network namespace: a run cannot see another
    run's unix sockets in /proc/net/unix, reach its abstract name, or take
    that name from it (nor use any of that as a channel)."""
    w = worker_factory(max_evals=2)
    mk = util.marker()
    server = ("import socket, sys\n"
              "s = socket.socket(socket.AF_UNIX)\n"
              "s.bind(b'\\0%s')\n"
              "s.listen(1)\n"
              "t = socket.socket(socket.AF_UNIX)\n"
              "t.bind('/tmp/%s')\n"
              "t.listen(1)\n"
              "print('bound', flush=True)\n"
              "s.settimeout(5)\n"
              "try:\n"
              "    s.accept()\n"
              "    print('ACCEPTED')\n"
              "except OSError:\n"
              "    pass\n" % (mk, mk))
    client = ("import socket, errno\n"
              "print(%r in open('/proc/net/unix').read())\n"
              "s = socket.socket(socket.AF_UNIX)\n"
              "try:\n"
              "    s.connect(b'\\0%s')\n"
              "    print('CONNECTED')\n"
              "except OSError as e:\n"
              "    print(errno.errorcode[e.errno])\n"
              "s = socket.socket(socket.AF_UNIX)\n"
              "s.bind(b'\\0%s')\n"
              "print('bound too')\n" % (mk, mk, mk))

    async def go():
        ws = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", server, "srv"))
            m = await util.recv_json(ws)
            assert m["type"] == "stdout" and m["data"] == "bound\n", m
            rc = await util.arun_eval(w.url(), "python3", client)
            await util.send_json(ws, {"type": "kill", "id": "srv"})
            rs = await asyncio.wait_for(util.collect_run(ws, "srv"), 20)
            return rc, rs
        finally:
            await ws.close()
    rc, rs = asyncio.run(go())
    assert "ACCEPTED" not in rs.stdout, rs
    assert rc.verdict == "ok" and rc.stdout == "False\nECONNREFUSED\nbound too\n", rc
    w.healthy_and_serving()


# ---- other syscall ABIs ----------------------------------------------------------------------

ABI = """\
int main(void)
{
    long r;
#ifdef X32
    __asm__ volatile("syscall" : "=a"(r) : "a"(0x40000000L + 39) : "rcx", "r11", "memory");
#else
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
#endif
    return r > 0 ? 0 : 1;
}
"""


@pytest.mark.parametrize("variant", ["int80", "x32"])
def test_32bit_syscall_abis_killed(w1, variant):
    need_c(w1)
    code = ("#define X32 1\n" if variant == "x32" else "") + ABI
    r = run(w1, "c", code)
    assert r.verdict == "signaled" and r.exit["signal"] == signal.SIGSYS, r
    w1.healthy_and_serving()


# ---- host-wide kernel quotas ---------------------------------------------------------------------

QUOTAS = """\
import ctypes, errno, resource as R
libc = ctypes.CDLL(None, use_errno=True)
ctx = ctypes.c_ulong(0)
rv = libc.syscall(ctypes.c_long(206), ctypes.c_long(1), ctypes.c_long(ctypes.addressof(ctx)))
print('io_setup', 'ok' if rv == 0 else errno.errorcode[ctypes.get_errno()])
try:
    open('/proc/pressure/memory', 'w').write('some 150000 2000000')
    print('psi trigger made')
except OSError as e:
    print('psi', errno.errorcode[e.errno])
print(*[R.getrlimit(getattr(R, 'RLIMIT_' + n)) for n in ('RTPRIO', 'NICE', 'RTTIME')])
"""


def test_kernel_quotas(worker_factory):
    """A run cannot take slots of the host's AIO pool or make PSI triggers,
    and gets no real-time or nice limits from how the worker was started
    (under prlimit here, where this host lets us raise them)."""
    raise_rt = subprocess.run(["prlimit", "--rtprio=99:99", "--nice=40:40", "--", "true"],
                              stderr=subprocess.DEVNULL).returncode == 0
    wrap = ["prlimit", "--rttime=unlimited:unlimited"]
    if raise_rt:
        wrap += ["--rtprio=99:99", "--nice=40:40"]
    w = worker_factory(wrap=wrap + ["--"])
    r = run(w, "python3", QUOTAS)
    assert r.verdict == "ok", r
    assert r.stdout == "io_setup ENOSYS\npsi EROFS\n(0, 0) (0, 0) (0, 0)\n", r
    # The host's AIO is untouched.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    ctx = ctypes.c_ulong(0)
    assert libc.syscall(ctypes.c_long(206), ctypes.c_long(1),
                        ctypes.c_long(ctypes.addressof(ctx))) == 0
    assert libc.syscall(ctypes.c_long(207), ctypes.c_ulong(ctx.value)) == 0
    w.healthy_and_serving()
