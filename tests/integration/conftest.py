"""Fixtures for the integration tests: a private Redis and worker processes.

BIN_DIR (environment) selects the binaries, default <repo>/bin; `make test`
points it at the sanitizer build. LB_BIN_DIR, when set, selects the lb alone
(`make tsan-test`: the ThreadSanitizer lb among ASan workers). Every process
started here is killed at teardown, whatever the test's outcome, and a
worker's stderr is printed when its test failed or when it reported a
sanitizer error. A test run fails if it leaves anything named wslb-* in
the temp directory.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import util  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("BIN_DIR") or os.path.join(REPO, "bin")
LB_BIN_DIR = os.environ.get("LB_BIN_DIR") or BIN_DIR
TSAN_SUPPRESSIONS = os.path.join(REPO, "tests", "integration", "tsan.supp")

# Sanitizer findings in a daemon's stderr fail the test that started it.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer",
                   "FATAL: ThreadSanitizer")


def binary(name):
    path = os.path.join(LB_BIN_DIR if name == "lb" else BIN_DIR, name)
    if not os.access(path, os.X_OK):
        pytest.fail("%s is missing: build it first (make / make asan / make tsan)" % path)
    return path


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Fixtures read this at teardown to decide whether to print logs.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    node = request.node
    return any(getattr(node, "rep_" + w, None) is not None and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


def plain_make_env():
    """The environment for running make from a test: without the variables
    an outer `make test` passes down (jobserver, -w directory lines)."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


def sanitizer_env():
    env = dict(os.environ)
    # Leaks make the process exit non-zero; the report is in stderr.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    # Every race reported (not only the first), with the other thread's
    # stack as far back as the history reaches; the suppressions say why
    # each one is not a race.
    env.setdefault("TSAN_OPTIONS", "halt_on_error=0:history_size=4:second_deadlock_stack=1:"
                   "suppressions=" + TSAN_SUPPRESSIONS)
    return env


# ---- temporary files -----------------------------------------------------------------
# A test run fails if its tests leave anything named wslb-* in the temp
# directory: such dirs hold private keys, tokens, secrets and sockets. Other
# suites and people use the same host and the same names, so what counts is
# (1) every wslb-* path this process made with tempfile (exact: each is
# tracked from its creation, with the test that made it), and (2) new
# entries named the way the scripts the tests run name theirs (mktemp(1):
# wslb-NAME.XXXXXX, as run.sh and mkman.sh do) that no live process uses
# and that are still there a few seconds later, rather than another suite's
# live files.

_SCRIPT_TMP_NAME = re.compile(r"wslb-[A-Za-z0-9_-]+\.[A-Za-z0-9]{6}")


def _track_tmp(make, made_by):
    def tracked(*args, **kwargs):
        made = make(*args, **kwargs)
        path = made[1] if isinstance(made, tuple) else made
        if isinstance(path, str) and os.path.basename(path).startswith("wslb-"):
            made_by[path] = os.environ.get("PYTEST_CURRENT_TEST", "outside a test")
        return made
    tracked.wslb_made_by = made_by
    return tracked


# path -> the test that made it; one record per process, however many times
# this file is loaded (tests/browser loads it under a name of its own).
if not hasattr(tempfile.mkdtemp, "wslb_made_by"):
    tempfile.mkdtemp = _track_tmp(tempfile.mkdtemp, {})
    tempfile.mkstemp = _track_tmp(tempfile.mkstemp, tempfile.mkdtemp.wslb_made_by)
_TMP_MADE = tempfile.mkdtemp.wslb_made_by


def _tmp_entries():
    """wslb-* paths in the temp directories the tests and the scripts they
    run use (tempfile's and /tmp)."""
    names = set()
    for d in {tempfile.gettempdir(), "/tmp"}:
        try:
            names |= {os.path.join(d, n) for n in os.listdir(d) if n.startswith("wslb-")}
        except OSError:
            pass
    return names


def _in_use(paths):
    """The subset of paths that a live process has open or works in."""
    used = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        links = ["/proc/%s/cwd" % pid]
        try:
            links += ["/proc/%s/fd/%s" % (pid, fd) for fd in os.listdir("/proc/%s/fd" % pid)]
        except OSError:
            continue
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            used |= {p for p in paths if target == p or target.startswith(p + "/")}
    return used


@pytest.fixture(scope="session", autouse=True)
def _no_tmp_leftovers():
    before = _tmp_entries()
    yield
    left = ["%s (made by %s)" % (p, t) for p, t in sorted(_TMP_MADE.items())
            if os.path.lexists(p)]
    def others():
        new = {p for p in _tmp_entries() - before - set(_TMP_MADE)
               if _SCRIPT_TMP_NAME.fullmatch(os.path.basename(p))}
        return new - _in_use(new)
    stay = others()
    if stay:
        # Another suite's files go within seconds; leftovers stay.
        deadline = time.monotonic() + 5
        while stay and time.monotonic() < deadline:
            time.sleep(0.2)
            stay &= others()
    left += sorted("%s (left by a program a test ran)" % p for p in stay)
    if left:
        pytest.fail("tests left temporary files behind:\n  " + "\n  ".join(left))


@pytest.fixture(autouse=True)
def _remove_tmp_path(request):
    """A test's tmp_path goes when the test ends: it may hold private keys
    and secrets (pytest would keep the last few runs' directories)."""
    path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


# ---- Redis --------------------------------------------------------------------------

@pytest.fixture
def redis_server():
    """A private redis-server on a free port, no persistence. Yields
    "127.0.0.1:PORT"; killed at teardown."""
    if not os.access(util.REDIS_SERVER, os.X_OK):
        pytest.skip("redis-server is not installed")
    srv = util.RedisServer()
    try:
        yield srv.addr
    finally:
        srv.close()


@pytest.fixture
def redis_factory():
    """start() -> util.RedisServer (with .addr, .stop(), .restart()); all
    stopped at teardown. For tests that take Redis away and bring it back."""
    if not os.access(util.REDIS_SERVER, os.X_OK):
        pytest.skip("redis-server is not installed")
    servers = []

    def start():
        srv = util.RedisServer()
        servers.append(srv)
        return srv
    try:
        yield start
    finally:
        for srv in servers:
            srv.close()


# ---- workers ---------------------------------------------------------------------------

class Worker:
    """One bin/worker process on 127.0.0.1:<free port>."""

    def __init__(self, exe, tmpdir, flags, args, env, wrap=()):
        # id=None: no --id flag, so the worker picks its default (host:port).
        no_id = "id" in flags and flags["id"] is None
        self.id = flags.pop("id", None) or "w-" + uuid.uuid4().hex[:8]
        self.addr = flags.pop("listen", None) or "127.0.0.1:%d" % util.free_port()
        self.port = util.split_addr(self.addr)[1]
        # wrap: a command that execs the worker (setpriv, prlimit), so the
        # process started here is still the worker itself.
        self.argv = list(wrap) + [exe, "--listen", self.addr]
        # Slot uids of its own (from its port, unique among live workers):
        # the kernel counts processes and other limits per uid, so workers
        # sharing uids (this suite's, or other suites' on the same host)
        # would share those limits.
        if "uid_base" not in flags:
            self.argv += ["--uid-base", str(20000000 + 64 * self.port)]
        if no_id:
            self.id = self.addr
        else:
            self.argv += ["--id", self.id]
        for k, v in flags.items():
            if v is None or v is False:
                continue
            self.argv.append("--" + k.replace("_", "-"))
            if v is not True:
                self.argv.append(str(v))
        self.argv += list(args)
        self.stderr_path = os.path.join(tmpdir, "worker-%s.stderr" % self.id)
        self._stderr = open(self.stderr_path, "w+b")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr, env=env)

    def url(self, path="/eval"):
        return "ws://%s%s" % (self.addr, path)

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("worker exited with %s before serving; stderr:\n%s"
                                     % (self.proc.returncode, self.stderr_text()[-4000:]))
            r = util.try_http_get(self.addr, "/healthz", timeout=1.0)
            return r is not None and r[0] == 200
        util.wait_for(ready, timeout, "worker %s to answer /healthz 200" % self.addr)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=10.0):
        """Returns the exit code; fails if it did not exit in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("worker %s still running after %.1fs" % (self.id, timeout))

    def healthy_and_serving(self, url_path="/eval"):
        """Asserts the worker is alive, healthy, and runs print(1)."""
        assert self.alive(), "worker died: %s\n%s" % (self.proc.returncode,
                                                      self.stderr_text()[-4000:])
        status, _, body = util.http_get(self.addr, "/healthz")
        assert status == 200, "healthz %d %r" % (status, body)
        r = util.run_eval(self.url(url_path), "python3", "print(1)", deadline=15)
        assert r.exit and r.exit["verdict"] == "ok" and r.stdout == "1\n", r

    def close(self):
        """Stops the worker if it still runs; returns a problem or None. A
        worker alive at teardown has no clients left, so SIGTERM must end it
        promptly and cleanly (exit 0, which also means no leak report)."""
        problem = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
                if rc != 0:
                    problem = "worker %s exited %s on SIGTERM at teardown" % (self.id, rc)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                problem = "worker %s ignored SIGTERM for 10 s at teardown" % self.id
        self._stderr.close()
        return problem


@pytest.fixture
def worker_factory(request):
    """start_worker(**flags) -> Worker. Keyword flags map to command-line
    flags (max_evals=2 -> --max-evals 2; True -> bare flag); `args` adds raw
    arguments, `wrap` a command line that execs the worker (e.g. setpriv),
    `env` variables to add to its environment, `ready=False` skips the
    /healthz wait. Workers are stopped at
    teardown (SIGTERM, then SIGKILL) and their stderr checked for sanitizer
    reports."""
    exe = binary("worker")
    tmpdir = tempfile.mkdtemp(prefix="wslb-worker-")
    workers = []
    base_env = sanitizer_env()

    def start_worker(args=(), ready=True, wrap=(), env=None, **flags):
        w = Worker(exe, tmpdir, dict(flags), args, dict(base_env, **(env or {})), wrap)
        workers.append(w)
        if ready:
            w.wait_ready()
        return w

    try:
        yield start_worker
    finally:
        problems = []
        for w in workers:
            p = None
            try:
                p = w.close()
            except Exception as e:  # keep stopping the others
                p = "stopping %s: %r" % (w.id, e)
            if p:
                problems.append(p)
            text = w.stderr_text()
            bad = [m for m in SANITIZER_MARKS if m in text]
            if bad or p or _failed(request):
                sys.stdout.write("\n---- worker %s (%s) exit %s, stderr ----\n%s\n"
                                 % (w.id, " ".join(w.argv), w.proc.returncode, text[-20000:]))
            if bad:
                problems.append("worker %s stderr has sanitizer reports: %s" % (w.id, bad))
        shutil.rmtree(tmpdir, ignore_errors=True)
        if problems:
            pytest.fail("; ".join(problems))


@pytest.fixture
def worker(worker_factory):
    """One worker with default flags."""
    return worker_factory()
