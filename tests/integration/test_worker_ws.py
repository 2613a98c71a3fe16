"""Websocket basics: the hello message and the /echo endpoint."""

import asyncio
import os
import shutil

import pytest
import websockets

import util


@pytest.mark.parametrize("path", ["/eval", "/echo"])
def test_hello(worker_factory, path):
    w = worker_factory(id="hello-worker-1")

    async def go():
        ws = await util.ws_connect(w.url(path))
        try:
            return await util.recv_hello(ws)
        finally:
            await ws.close()
    hello = asyncio.run(go())
    assert hello["type"] == "hello"
    assert hello["worker"] == "hello-worker-1"
    rts = hello["runtimes"]
    assert isinstance(rts, list) and all(isinstance(x, str) for x in rts)
    assert "python3" in rts and "sh" in rts
    if shutil.which("gcc"):
        assert "c" in rts
    assert isinstance(hello.get("isolation"), str) and hello["isolation"], hello


def test_hello_default_id_is_listen_address(worker_factory):
    w = worker_factory(id=None)
    assert "--id" not in w.argv

    async def go():
        ws = await util.ws_connect(w.url("/eval"))
        try:
            return await util.recv_hello(ws)
        finally:
            await ws.close()
    assert asyncio.run(go())["worker"] == w.addr


def test_echo_text_and_binary(worker):
    payloads = [
        "hello",
        "",
        "ünïcødé ✓ 🚀",
        b"",
        b"\x00\x01\x02\xff" * 7,
        os.urandom(200 * 1024),
        "x" * (200 * 1024),
        os.urandom(70000),  # needs the 64-bit length form
        os.urandom(126),    # first 16-bit length
        os.urandom(125),    # largest 7-bit length
    ]

    async def go():
        ws = await util.ws_connect(worker.url("/echo"))
        try:
            await util.recv_hello(ws)
            for p in payloads:
                await ws.send(p)
                got = await asyncio.wait_for(ws.recv(), 10)
                assert type(got) is type(p), (type(got), type(p))
                assert got == p, "echo differs for a %d-long %s" % (len(p), type(p).__name__)
            # Pipelined: many messages before reading any answer.
            msgs = [os.urandom(i * 37 % 5000) for i in range(200)]
            for p in msgs:
                await ws.send(p)
            for p in msgs:
                assert await asyncio.wait_for(ws.recv(), 10) == p
            # Fragmented message: websockets sends an iterable as fragments.
            await ws.send(["frag", "ment", "ed"])
            assert await asyncio.wait_for(ws.recv(), 10) == "fragmented"
            # Ping is answered.
            pong = await ws.ping(b"abc")
            await asyncio.wait_for(pong, 10)
        finally:
            await ws.close()
        assert ws.close_code == 1000
    asyncio.run(go())


def test_echo_oversized_closes_1009(worker):
    async def go():
        ws = await util.ws_connect(worker.url("/echo"))
        await util.recv_hello(ws)
        await ws.send(b"y" * (1024 * 1024 + 1))
        return await util.expect_closed(ws)
    assert asyncio.run(go()) == 1009


def test_invalid_utf8_text_closes_1007(worker):
    # A text frame with invalid UTF-8, written by hand: websockets will not.
    async def go():
        ws = await util.ws_connect(worker.url("/echo"))
        await util.recv_hello(ws)
        from websockets.frames import Frame, OP_TEXT
        ws.transport.write(Frame(OP_TEXT, b"\xc3\x28", True).serialize(
            mask=True, extensions=[]))
        return await util.expect_closed(ws)
    assert asyncio.run(go()) == 1007
    worker.healthy_and_serving()


def test_bad_upgrade_via_client_rejected(worker):
    async def go():
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            await util.ws_connect("ws://%s/nope" % worker.addr)
        return ei.value.status_code
    assert asyncio.run(go()) == 404
