"""Helpers and fixtures for the lb's integration tests: starting bin/lb,
reading its admin API, tiny fake backends, websocket helpers and a throwaway
TLS certificate.

Fixtures here are imported by the test_lb_*.py modules; the Redis and worker
fixtures come from conftest.py. Everything started here is stopped at
teardown, whatever the outcome, and the lb's stderr is checked for sanitizer
reports and printed when a test failed.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import util  # noqa: E402
from conftest import SANITIZER_MARKS, _failed, binary, sanitizer_env  # noqa: E402


class Lb:
    """One bin/lb on free ports; ready when the admin API answers and the
    listener accepts."""

    def __init__(self, exe, tmpdir, flags, args, env, name):
        self.name = name
        self.addr = flags.pop("listen", None) or "127.0.0.1:%d" % util.free_port()
        self.admin = flags.pop("admin", None) or "127.0.0.1:%d" % util.free_port()
        self.tls_addr = None
        self.argv = [exe, "--listen", self.addr, "--admin", self.admin]
        for k, v in flags.items():
            if v is None or v is False:
                continue
            if k == "tls_listen":
                self.tls_addr = v
            vals = v if isinstance(v, (list, tuple)) else [v]
            for one in vals:
                self.argv.append("--" + k.replace("_", "-"))
                if one is not True:
                    self.argv.append(str(one))
        self.argv += list(args)
        self.stderr_path = os.path.join(tmpdir, "lb-%s.stderr" % name)
        self._stderr = open(self.stderr_path, "w+b")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=self._stderr, env=env)

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("lb exited with %s; stderr:\n%s"
                                     % (self.proc.returncode, self.stderr_text()[-4000:]))
            r = util.try_http_get(self.admin, "/livez", timeout=1.0)
            if r is None or r[0] != 200:
                return False
            try:
                with socket.create_connection(util.split_addr(self.addr), timeout=1.0):
                    return True
            except OSError:
                return False
        util.wait_for(ready, timeout, "lb %s to serve" % self.addr)

    def url(self, path="/eval"):
        return "ws://%s%s" % (self.addr, path)

    def stats(self):
        status, _, body = util.http_get(self.admin, "/stats")
        assert status == 200, "/stats answered %d: %r" % (status, body)
        return json.loads(body)

    def backend(self, bid):
        for b in self.stats()["backends"]:
            if b["id"] == bid:
                return b
        return None

    def wait_active(self, n, timeout=10.0):
        """Waits until the lb holds exactly n client connections."""
        return util.wait_for(lambda: self.stats()["active"] == n, timeout,
                             "lb active == %d (now %r)" % (n, self.stats()["active"]))

    def post(self, path):
        req = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
               "Connection: close\r\n\r\n" % path)
        return util.raw_http(self.admin, req.encode())

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=15.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("lb %s still running after %.1fs" % (self.name, timeout))

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._stderr.close()


@pytest.fixture
def lb_factory(request):
    """start_lb(**flags) -> Lb. backend=[...] and other lists repeat a flag;
    `args` adds raw arguments; ready=False skips the readiness wait. Stopped
    at teardown with SIGTERM (must exit 0 when the test did not kill it),
    stderr checked for sanitizer reports."""
    exe = binary("lb")
    tmpdir = tempfile.mkdtemp(prefix="wslb-lb-")
    lbs = []
    env = sanitizer_env()

    def start_lb(args=(), ready=True, **flags):
        flags.setdefault("grace_s", 2)
        # The lb proxies only the websocket routes it is given (/eval by
        # default); tests also use the workers' /echo. route=None gives the
        # lb's own default. Plain HTTP needs proxy_http=PREFIX.
        flags.setdefault("route", ["/eval", "/echo"])
        lb = Lb(exe, tmpdir, dict(flags), args, env, "lb%d" % len(lbs))
        lbs.append(lb)
        if ready:
            lb.wait_ready()
        return lb

    try:
        yield start_lb
    finally:
        problems = []
        for lb in lbs:
            was_alive = lb.alive()
            try:
                lb.close()
            except Exception as e:
                problems.append("stopping %s: %r" % (lb.name, e))
            text = lb.stderr_text()
            bad = [m for m in SANITIZER_MARKS if m in text]
            if bad or _failed(request):
                sys.stdout.write("\n---- lb %s (%s) exit %s, stderr ----\n%s\n"
                                 % (lb.name, " ".join(lb.argv), lb.proc.returncode,
                                    text[-20000:]))
            if bad:
                problems.append("lb %s stderr has sanitizer reports: %s" % (lb.name, bad))
            elif was_alive and lb.proc.returncode != 0:
                problems.append("lb %s exited %s on SIGTERM" % (lb.name, lb.proc.returncode))
        shutil.rmtree(tmpdir, ignore_errors=True)
        if problems:
            pytest.fail("; ".join(problems))


# ---- fake backends -------------------------------------------------------------------

class FakeBackend:
    """A thread serving raw TCP on 127.0.0.1:<free port> with a handler
    (sock) -> None per connection. Stopped by close()."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(10)
            self.handler(c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def read_head(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def echo_headers_handler(c):
    """Answers any request with a JSON object of its request headers."""
    head = read_head(c).decode("latin-1")
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    body = json.dumps({"request_line": lines[0], "headers": headers}).encode()
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % len(body) + body)


def close_at_once_handler(c):
    """Accepts, reads the request and closes without a byte: a dead process
    whose socket the kernel still accepts on."""
    read_head(c)


@pytest.fixture
def fake_backend():
    made = []

    def make(handler):
        b = FakeBackend(handler)
        made.append(b)
        return b
    try:
        yield make
    finally:
        for b in made:
            b.close()


# ---- websockets through the lb ----------------------------------------------------------

async def open_ws(url, ssl_ctx=None):
    """Opens a websocket and returns (ws, worker id from the hello)."""
    ws = await util.ws_connect(url, ssl=ssl_ctx) if ssl_ctx else await util.ws_connect(url)
    hello = await util.recv_hello(ws)
    return ws, hello["worker"]


def count_by(items):
    out = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


# ---- TLS -------------------------------------------------------------------------------

def make_cert(dirpath, cn="localhost"):
    """A throwaway self-signed certificate; returns (cert, key) paths."""
    cert = os.path.join(dirpath, "cert.pem")
    key = os.path.join(dirpath, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=" + cn, "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return cert, key


def client_ssl_ctx(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


def peer_cert_der(addr, timeout=5.0):
    """The DER certificate a TLS server presents, unverified."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(util.split_addr(addr), timeout=timeout) as s:
        with ctx.wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


def run(coro, timeout=60):
    """Runs a coroutine with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def wait_port_free_of(addr, deadline=5.0):
    """Waits until nothing accepts on addr."""
    def refused():
        try:
            with socket.create_connection(util.split_addr(addr), timeout=0.5):
                return False
        except OSError:
            return True
    util.wait_for(refused, deadline, "%s to stop accepting" % addr)


def now():
    return time.monotonic()


# ---- access log ---------------------------------------------------------------------------

_TEXT_FIELD = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)(?:=("(?:[^"\\]|\\.)*"|[^ "\\]*))?')


def _text_unescape(v):
    """The bytes behind a text-format value (\\\\, \\" and \\xHH escapes)."""
    if v.startswith('"'):
        v = v[1:-1]
    out = bytearray()
    i = 0
    while i < len(v):
        if v[i] == "\\":
            if v[i + 1] == "x":
                out.append(int(v[i + 2:i + 4], 16))
                i += 4
                continue
            out += v[i + 1].encode()
            i += 2
            continue
        out += v[i].encode()
        i += 1
    return bytes(out)


def parse_text_event(line, event="access"):
    """A text-format structured line -> {key: bytes or True}. Strict: single
    spaces between fields, no key twice, so a forged field fails here."""
    _, sep, rest = line.partition(": %s " % event)
    assert sep, "not a %s line: %r" % (event, line)
    fields = {}
    pos = 0
    while pos < len(rest):
        m = _TEXT_FIELD.match(rest, pos)
        assert m and m.end() > pos, "unparsable at %d: %r" % (pos, rest)
        key = m.group(1)
        assert key not in fields, "field %s twice in %r" % (key, line)
        fields[key] = _text_unescape(m.group(2)) if m.group(2) is not None else True
        pos = m.end()
        if pos < len(rest):
            assert rest[pos] == " ", "junk after %s at %d: %r" % (key, pos, rest)
            pos += 1
    return fields


def access_records(text, fmt="text"):
    """Every access line of a daemon's stderr, parsed (JSON objects with
    "event": "access", or text lines through parse_text_event)."""
    out = []
    for line in text.splitlines():
        if fmt == "json":
            obj = json.loads(line)
            if obj.get("event") == "access":
                out.append(obj)
        elif ": access " in line:
            out.append(parse_text_event(line))
    return out
