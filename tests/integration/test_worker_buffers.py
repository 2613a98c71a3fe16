"""Bytes that the worker already holds but must not leave unread."""

import base64
import json
import os
import socket
import struct
import time



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
