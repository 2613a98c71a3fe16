"""What a client can make the worker hold in its own memory (outside every
cgroup), and bytes that the worker already holds but must not leave unread.

Memory is measured as the worker's VmRSS. The sanitizer build keeps freed
memory in a quarantine (256 MB by default), which would count what was
processed rather than what is held, so these workers run with a small one.
"""

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import time

import pytest

import util

SMALL_QUARANTINE = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=4"}


# ---- a raw websocket client: exact control over what goes in which segment ----------------------

def ws_head(addr, path="/eval"):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, addr, key)).encode()


def ws_frame(payload, opcode=1):
    """A masked client frame."""
    if isinstance(payload, str):
        payload = payload.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else \
        (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")
         ).to_bytes(n, "big")
    return head + mask + body


class RawWs:
    """Reads the 101 and then server frames from a plain socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("nothing more from the worker; have %r" % self.buf[:200])
        if not chunk:
            raise AssertionError("the worker closed; have %r" % self.buf[:200])
        self.buf += chunk

    def read_head(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head.decode("latin-1")

    def read_frame(self, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                off = 2
                if n == 126 and len(self.buf) >= 4:
                    n, off = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
                if n < 126 or off > 2:
                    if len(self.buf) >= off + n:
                        op, data = self.buf[0] & 0x0F, self.buf[off:off + n]
                        self.buf = self.buf[off + n:]
                        return op, data
            self._fill(deadline)

    def read_json(self, timeout=20):
        op, data = self.read_frame(timeout)
        assert op == 1, (op, data[:100])
        return json.loads(data)


def run_frame(code, run_id="r1", **extra):
    return ws_frame(json.dumps(dict({"type": "run", "id": run_id, "runtime": "python3",
                                     "code": code}, **extra)))


# ---- bytes that came with the upgrade head ----------------------------------------------------

def test_frame_in_the_same_segment_as_the_upgrade(worker):
    """A client that does not wait for the 101 (the lb forwards bytes as they
    come) sends its first message with the head: it must be answered."""
    with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as s:
        s.sendall(ws_head(worker.addr) + run_frame("print(6 * 7)"))
        ws = RawWs(s)
        assert ws.read_head().startswith("HTTP/1.1 101")
        assert ws.read_json()["type"] == "hello"
        msgs = [ws.read_json(20)]
        while msgs[-1]["type"] != "exit":
            msgs.append(ws.read_json(20))
    assert [m for m in msgs if m["type"] == "stdout"] == [
        {"type": "stdout", "id": "r1", "data": "42\n"}], msgs
    assert msgs[-1]["verdict"] == "ok", msgs


def test_echo_frames_with_the_upgrade(worker):
    with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as s:
        s.sendall(ws_head(worker.addr, "/echo") + ws_frame("one") + ws_frame("two"))
        ws = RawWs(s)
        assert ws.read_head().startswith("HTTP/1.1 101")
        assert ws.read_json()["type"] == "hello"
        assert [ws.read_frame(), ws.read_frame()] == [(1, b"one"), (1, b"two")]


# ---- stdin a program does not read ----------------------------------------------------------------

NEVER_READS = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
CLOSES_STDIN = "import os, time\nos.close(0)\nprint('ready', flush=True)\ntime.sleep(60)\n"


async def flood(ws, run_id, total, chunk=256 << 10, stall=2.0):
    """Sends stdin for run_id until total bytes went out or a send waited
    longer than stall (the worker stopped reading). Returns bytes sent."""
    msg = json.dumps({"type": "stdin", "id": run_id, "data": "x" * chunk})
    sent = 0
    while sent < total:
        try:
            await asyncio.wait_for(ws.send(msg), stall)
        except asyncio.TimeoutError:
            break
        sent += chunk
    return sent


@pytest.mark.parametrize("where", ["running", "queued"])
def test_stdin_flood_is_bounded(worker_factory, where):
    """A client sending stdin to a run that does not read it (running, or
    waiting for a slot) cannot swell the worker: it stops reading that
    websocket (the client's sends block), and since the input is never
    consumed it closes it with 1008 after a while."""
    w = worker_factory(max_evals=1, timeout_ms=60000, env=SMALL_QUARANTINE)
    total = 256 << 20

    async def go():
        ws = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", NEVER_READS, "a",
                                                  extra={"stdin_open": True}))
            m = await util.recv_json(ws)
            assert m["type"] == "stdout" and m["data"] == "ready\n", m
            target = "a"
            if where == "queued":
                await util.send_json(ws, util.run_msg("python3", "print(1)", "b",
                                                      extra={"stdin_open": True}))
                util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr),
                                                      "worker_evaluations_queued") == 1,
                              5, "b to be queued")
                target = "b"
            rss0 = util.proc_rss_kb(w.proc.pid)
            t0 = time.monotonic()
            sent = await flood(ws, target, total)
            grew = (util.proc_rss_kb(w.proc.pid) - rss0) << 10
            assert grew < 32 << 20, "the worker grew by %d MiB after %d MiB of stdin" % (
                grew >> 20, sent >> 20)
            assert sent < total, "every send went through: nothing held the client back"
            code = await util.expect_closed(ws, 30)
            return code, time.monotonic() - t0
        finally:
            await ws.close()
    code, dt = asyncio.run(go())
    assert code == 1008, code
    assert dt < 30, dt
    w.healthy_and_serving()


def test_stdin_for_a_closed_stdin_is_dropped(worker_factory):
    """Input for a program that closed its stdin is dropped (said once), not
    kept for ever."""
    w = worker_factory(timeout_ms=60000, env=SMALL_QUARANTINE)
    total = 96 << 20

    async def go():
        ws = await util.ws_connect(w.url())
        try:
            await util.recv_hello(ws)
            await util.send_json(ws, util.run_msg("python3", CLOSES_STDIN, "c",
                                                  extra={"stdin_open": True}))
            m = await util.recv_json(ws)
            assert m["type"] == "stdout" and m["data"] == "ready\n", m
            rss0 = util.proc_rss_kb(w.proc.pid)
            sent = await flood(ws, "c", total, stall=10)
            # A message that round-trips: everything sent before was handled.
            await util.send_json(ws, {"type": "stdin_close", "id": "nope"})
            errors = []
            while True:
                m = await util.recv_json(ws)
                if m.get("id") == "nope":
                    break
                errors.append(m)
            grew = (util.proc_rss_kb(w.proc.pid) - rss0) << 10
            await util.send_json(ws, {"type": "kill", "id": "c"})
            r = await asyncio.wait_for(util.collect_run(ws, "c"), 20)
            return sent, grew, errors, r
        finally:
            await ws.close()
    sent, grew, errors, r = asyncio.run(go())
    assert sent == total
    assert grew < 32 << 20, "the worker grew by %d MiB after %d MiB of stdin" % (
        grew >> 20, sent >> 20)
    assert errors == [{"type": "error", "id": "c",
                       "error": "the program closed its stdin; input is discarded"}], errors
    assert r.verdict == "killed", r


def test_stdin_backpressure_then_resume(worker):
    """Normal input larger than what the worker holds: reading the websocket
    pauses while the program is not reading yet and resumes as it reads;
    the end of input, already read before the pause, is acted on then
    (nothing more arrives to wake the worker up)."""
    data = [os.urandom(300 << 10).hex() for _ in range(2)]  # 2 x 600 KiB
    code = ("import sys, time, hashlib\n"
            "time.sleep(1)\n"
            "d = sys.stdin.buffer.read()\n"
            "print(len(d), hashlib.sha256(d).hexdigest())\n")
    with socket.create_connection(("127.0.0.1", worker.port), timeout=10) as s:
        ws = RawWs(s)
        s.sendall(ws_head(worker.addr))
        assert ws.read_head().startswith("HTTP/1.1 101")
        assert ws.read_json()["type"] == "hello"
        frames = [run_frame(code, "big", stdin_open=True)]
        frames += [ws_frame(json.dumps({"type": "stdin", "id": "big", "data": d})) for d in data]
        frames.append(ws_frame(json.dumps({"type": "stdin_close", "id": "big"})))
        s.sendall(b"".join(frames))
        msgs = [ws.read_json(30)]
        while msgs[-1]["type"] != "exit":
            msgs.append(ws.read_json(30))
    want = "".join(data).encode()
    out = "".join(m["data"] for m in msgs if m["type"] == "stdout")
    assert out == "%d %s\n" % (len(want), hashlib.sha256(want).hexdigest()), msgs
    assert msgs[-1]["verdict"] == "ok", msgs


# ---- output a client does not read -------------------------------------------------------------

def test_output_to_a_client_that_never_reads(worker_factory):
    """Runs writing as fast as they can (control characters: six bytes of
    JSON each) to a client that reads nothing: the worker stops reading
    their pipes instead of queueing their output."""
    w = worker_factory(max_evals=4, output_kb=1 << 20, timeout_ms=60000, env=SMALL_QUARANTINE)
    flood_code = "import sys\nb = '\\x01' * 65536\nwhile True:\n    sys.stdout.write(b)\n"
    with socket.create_connection(("127.0.0.1", w.port), timeout=10) as s:
        s.sendall(ws_head(w.addr))
        rss0 = util.proc_rss_kb(w.proc.pid)
        s.sendall(b"".join(run_frame(flood_code, "o%d" % i) for i in range(4)))
        util.wait_for(lambda: util.metric_sum(util.get_metrics(w.addr),
                                              "worker_evaluations_running") == 4,
                      15, "the four runs to start")
        samples = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            samples.append(util.proc_rss_kb(w.proc.pid) - rss0)
            time.sleep(0.2)
    grew = max(samples) << 10
    assert grew < 32 << 20, "the worker grew by %d MiB" % (grew >> 20)
    util.wait_idle(w.addr, 10)
    w.healthy_and_serving()
