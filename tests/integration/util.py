"""Helpers shared by the integration tests: ports, HTTP, websockets, runs.

Everything here is bounded in time: every wait takes a deadline and fails
with a message saying what it was waiting for.
"""

import asyncio
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import websockets

# One run can take a few seconds under the sanitizer build; nothing waits
# longer than this unless a test says so.
DEFAULT_DEADLINE = 20.0


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def marker(prefix="wslbmk"):
    """A string unique to one test, to find its processes with pgrep -f."""
    return "%s%s" % (prefix, uuid.uuid4().hex[:12])


def wait_for(pred, timeout, what, interval=0.05):
    """Polls pred() until it returns a truthy value; returns that value.
    Fails with `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)


# ---- HTTP ---------------------------------------------------------------------

def http_get(addr, path, headers=None, timeout=5.0):
    """GET path; returns (status, headers as a lowercase dict, body bytes)."""
    host, port = split_addr(addr)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, hdrs, body
    finally:
        conn.close()


def try_http_get(addr, path, timeout=2.0):
    """Like http_get but returns None when the connection fails."""
    try:
        return http_get(addr, path, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None


def raw_http(addr, request, timeout=5.0):
    """Sends raw request bytes and reads until the peer closes or the head
    and a Content-Length body are complete. Returns (status, headers, body)."""
    host, port = split_addr(addr)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                if head.startswith(b"HTTP/1.1 101"):
                    break
                m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
                if m and len(body) >= int(m.group(1)):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/1."):
        raise AssertionError("no HTTP response to %r: got %r" % (request[:60], data[:200]))
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


# ---- metrics ------------------------------------------------------------------

_METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text):
    """Prometheus text -> {"name" or "name{labels}": float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        if not m:
            raise AssertionError("unparsable metrics line: %r" % line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        out[name + labels] = float(value)
    return out


def metric_labelled(metrics, name, label):
    """Value of the series of name whose labels contain label (e.g.
    'verdict="ok"'), 0 when that series has not appeared yet."""
    for k, v in metrics.items():
        if k.startswith(name + "{") and label in k:
            return v
    return 0.0


def get_verdict(metrics, verdict):
    return metric_labelled(metrics, VERDICT_METRIC, 'verdict="%s"' % verdict)


VERDICT_METRIC = "worker_verdicts_total"


def get_metrics(addr):
    status, _, body = http_get(addr, "/metrics")
    assert status == 200, "GET /metrics: %d %r" % (status, body[:200])
    return parse_metrics(body.decode())


def metric_sum(metrics, name):
    """Sum of every series called name (any labels)."""
    total = 0.0
    found = False
    for k, v in metrics.items():
        if k == name or k.startswith(name + "{"):
            total += v
            found = True
    assert found, "metric %s missing; have: %s" % (name, sorted(metrics)[:80])
    return total


# ---- processes ----------------------------------------------------------------

def pgrep(pattern):
    """PIDs whose full command line contains pattern (never our own)."""
    r = subprocess.run(["pgrep", "-f", pattern], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, timeout=10)
    return [int(p) for p in r.stdout.split() if int(p) != os.getpid()]


def wait_no_process(pattern, timeout=5.0):
    wait_for(lambda: not pgrep(pattern), timeout,
             "no process matching %r (found %r)" % (pattern, pgrep(pattern)))


# ---- websockets -----------------------------------------------------------------

async def ws_connect(url, **kw):
    """Opens a websocket with no size limit and no keepalive pings (tests
    check limits themselves and must not see unrelated pings)."""
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    return await websockets.connect(url, **kw)


async def recv_json(ws, timeout=DEFAULT_DEADLINE):
    msg = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(msg, str), "expected a text message, got %d bytes" % len(msg)
    return json.loads(msg)


async def recv_hello(ws, timeout=10.0):
    hello = await recv_json(ws, timeout)
    assert hello.get("type") == "hello", "first message is not hello: %r" % hello
    return hello


async def send_json(ws, obj):
    await ws.send(json.dumps(obj))


async def expect_closed(ws, timeout=10.0):
    """Reads (discarding messages) until the connection closes; returns the
    close code the peer sent (1006 when none)."""
    async def drain():
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as e:
            return e.code
    return await asyncio.wait_for(drain(), timeout)


class RunResult:
    """What one run produced: every message with its arrival time."""

    def __init__(self):
        self.messages = []  # (monotonic time, message dict)
        self.exit = None
        self.errors = []

    @property
    def stdout(self):
        return "".join(m["data"] for _, m in self.messages if m.get("type") == "stdout")

    @property
    def stderr(self):
        return "".join(m["data"] for _, m in self.messages if m.get("type") == "stderr")

    def of_type(self, t):
        return [(ts, m) for ts, m in self.messages if m.get("type") == t]

    @property
    def verdict(self):
        return self.exit["verdict"] if self.exit else None

    def __repr__(self):
        return "RunResult(exit=%r, stdout=%r, stderr=%r, errors=%r)" % (
            self.exit, self.stdout[-500:], self.stderr[-2000:], self.errors)


def wait_idle(addr, timeout=10.0):
    """Waits until the worker at addr runs no evaluation (from /metrics)."""
    wait_for(lambda: metric_sum(get_metrics(addr), "worker_evaluations_running") == 0,
             timeout, "no evaluation running on %s" % addr)


def drop_mid_run(url, runtime, code, first_timeout=15.0):
    """Starts a run, waits for its first message, then drops the TCP
    connection without a close frame, as a vanished client does."""
    async def go():
        ws = await ws_connect(url)
        await recv_hello(ws)
        await send_json(ws, run_msg(runtime, code, "dropped"))
        await recv_json(ws, first_timeout)
        ws.transport.abort()
    asyncio.run(go())


def run_msg(runtime, code, run_id="r1", stdin=None, timeout_ms=None, extra=None):
    msg = {"type": "run", "id": run_id, "runtime": runtime, "code": code}
    if stdin is not None:
        msg["stdin"] = stdin
    if timeout_ms is not None:
        msg["timeout_ms"] = timeout_ms
    if extra:
        msg.update(extra)
    return msg


async def collect_run(ws, run_id, result=None, until_error=False):
    """Collects messages for run_id until its exit message (or, with
    until_error, an error message for it). Messages for other ids fail."""
    result = result or RunResult()
    while True:
        msg = json.loads(await ws.recv())
        if msg.get("id") not in (run_id, None):
            raise AssertionError("message for another run: %r" % msg)
        result.messages.append((time.monotonic(), msg))
        t = msg.get("type")
        if t == "exit":
            assert result.exit is None, "second exit message: %r" % msg
            result.exit = msg
            return result
        if t == "error":
            result.errors.append(msg)
            if until_error:
                return result
        elif t not in ("stdout", "stderr"):
            raise AssertionError("unexpected message during a run: %r" % msg)


async def arun(ws, runtime, code, run_id="r1", stdin=None, timeout_ms=None, extra=None,
               deadline=DEFAULT_DEADLINE, until_error=False):
    """Sends a run on an open /eval websocket and collects it to the end."""
    await send_json(ws, run_msg(runtime, code, run_id, stdin, timeout_ms, extra))
    return await asyncio.wait_for(collect_run(ws, run_id, until_error=until_error), deadline)


async def arun_eval(url, runtime, code, stdin=None, timeout_ms=None, extra=None,
                    deadline=DEFAULT_DEADLINE, until_error=False):
    ws = await ws_connect(url)
    try:
        await recv_hello(ws)
        return await arun(ws, runtime, code, stdin=stdin, timeout_ms=timeout_ms, extra=extra,
                          deadline=deadline, until_error=until_error)
    finally:
        await ws.close()


def run_eval(url, runtime, code, stdin=None, timeout_ms=None, extra=None,
             deadline=DEFAULT_DEADLINE, until_error=False):
    """Connects to url (a worker's /eval), runs code, returns a RunResult
    once the exit message arrived; fails if it takes longer than deadline."""
    return asyncio.run(arun_eval(url, runtime, code, stdin, timeout_ms, extra, deadline,
                                 until_error))


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """A private redis-server on 127.0.0.1 (free port, temp dir, no
    persistence), answering PING when the constructor returns."""

    def __init__(self, port=None):
        self.dir = tempfile.mkdtemp(prefix="wslb-redis-")
        self.proc = None
        for attempt in range(3):  # a probed port can be taken before the bind
            self.port = port or free_port()
            self.addr = "127.0.0.1:%d" % self.port
            try:
                self.start()
                return
            except AssertionError:
                if port is not None or attempt == 2:
                    self.close()
                    raise

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
             "--protected-mode", "no"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def ping():
            if self.proc.poll() is not None:
                raise AssertionError("redis-server exited: %s" % self.log_text()[-2000:])
            try:
                return redis_client(self.addr).ping()
            except Exception:
                return False
        try:
            wait_for(ping, 10, "redis-server on %s to answer PING" % self.addr)
        except AssertionError:
            self.stop()
            raise

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self):
        """Stops and starts again on the same port."""
        self.stop()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_client(addr):
    import redis
    host, port = split_addr(addr)
    return redis.Redis(host=host, port=port, decode_responses=True, socket_timeout=5)


# ---- /proc figures of a process ------------------------------------------------

def proc_cpu_s(pid):
    """User + system CPU seconds a process has used (its threads included)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kb(pid):
    """Resident set size in KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def proc_fd_count(pid):
    """Open file descriptors of a process."""
    return len(os.listdir("/proc/%d/fd" % pid))
