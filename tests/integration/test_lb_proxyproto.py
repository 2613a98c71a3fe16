"""--accept-proxy: the lb behind a network load balancer that sends the
PROXY protocol (v1 and v2). The carried client address feeds
X-Forwarded-For, the per-address limits and the access log; a missing,
malformed or untrusted header closes the connection and is counted."""

import ipaddress
import json
import os
import socket
import ssl
import struct
import tempfile

import pytest

import util
from lbutil import (access_records, echo_headers_handler, fake_backend, lb_factory,  # noqa: F401
                    make_cert)

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
REQ = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"


def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src=None, dst=None, sport=0, dport=0, local=False, tlvs=b""):
    if local:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fp = 0x11 if s.version == 4 else 0x21
    block = s.packed + d.packed + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x21, fp]) + struct.pack("!H", len(block)) + block


def exchange(addr, data, pieces=1, wrap=None):
    """Sends data (in `pieces` writes) on a new connection, optionally
    wrapping the socket in TLS after the first `wrap[0]` bytes; returns
    everything the lb answered until it closed."""
    s = socket.create_connection(util.split_addr(addr), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if wrap is not None:
            n, ctx = wrap
            s.sendall(data[:n])
            s = ctx.wrap_socket(s)
            data = data[n:]
        step = max(1, -(-len(data) // pieces))
        for i in range(0, len(data), step):
            s.sendall(data[i:i + step])
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def forwarded_for(resp):
    assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
    body = json.loads(resp.partition(b"\r\n\r\n")[2])
    return body["headers"]["x-forwarded-for"]


def err_count(lb, kind):
    return lb.stats()["errors"][kind]


@pytest.fixture
def nlb(fake_backend, lb_factory):
    """An lb that takes PROXY headers from 127.0.0.1 in front of a backend
    answering its request headers."""
    be = fake_backend(echo_headers_handler)
    return lb_factory(backend="b1=" + be.addr, proxy_http="/", accept_proxy=True,
                      trusted_proxies="127.0.0.1/32", health_interval_ms=600000)


@pytest.mark.parametrize("header,client", [
    (v1("203.0.113.7", "198.51.100.1", 40001, 443), "203.0.113.7"),
    (v1("2001:db8::7", "2001:db8::1", 40002, 443), "2001:db8::7"),
    (v2("203.0.113.8", "198.51.100.1", 40003, 443), "203.0.113.8"),
    (v2("2001:db8::8", "2001:db8::1", 40004, 443), "2001:db8::8"),
    # TLVs (AWS puts its VPC endpoint id there) are skipped.
    (v2("203.0.113.9", "198.51.100.1", 40005, 443, tlvs=b"\xea\x00\x05vpce1"), "203.0.113.9"),
    # UNKNOWN and LOCAL (the balancer's own checks): the socket's peer stands.
    (b"PROXY UNKNOWN\r\n", "127.0.0.1"),
    (v2(local=True), "127.0.0.1"),
])
def test_client_address_reaches_forwarded_for_and_log(nlb, header, client):
    for pieces in (1, 7):
        resp = exchange(nlb.addr, header + REQ, pieces=pieces)
        assert forwarded_for(resp) == [client]
    def recs():
        return [r for r in access_records(nlb.stderr_text()) if r.get("req") == b"GET /x"]
    # Each line is written as its connection ends, just after the answer.
    util.wait_for(lambda: len(recs()) == 2, 5, "two access lines")
    for r in recs():
        host = r["client"].decode().rsplit(":", 1)[0].strip("[]")
        assert host == client, r
    assert err_count(nlb, "proxy_bad") == 0


@pytest.mark.parametrize("data,why", [
    (REQ, "no PROXY protocol header"),                                       # missing
    (b"PROXY TCP4 203.0.113.7 198.51.100.1 1\r\n" + REQ, "v1: want"),        # a port short
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + REQ, "without CRLF"),             # LF alone
    (b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n" + REQ, "longer than 107"),     # over the bound
    (V2_SIG + b"\x21\x11\x00\x04\x01\x02\x03\x04" + REQ, "shorter than its family"),
    (V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12 + REQ, "version is not 2"),
])
def test_bad_header_closes_and_counts(nlb, data, why):
    before = err_count(nlb, "proxy_bad")
    assert exchange(nlb.addr, data) == b""  # closed without an answer
    util.wait_for(lambda: err_count(nlb, "proxy_bad") == before + 1, 5, "proxy_bad counted")
    text = nlb.stderr_text()
    assert "proxy protocol: closing 127.0.0.1:" in text and why in text, text[-2000:]
    recs = [r for r in access_records(text) if r.get("reason") == b"proxy_bad"]
    assert recs, text[-2000:]
    m = util.get_metrics(nlb.admin)
    assert util.metric_labelled(m, "wslb_lb_errors_total", 'kind="proxy_bad"') == before + 1


def test_untrusted_peer_is_closed(fake_backend, lb_factory):
    be = fake_backend(echo_headers_handler)
    lb = lb_factory(backend="b1=" + be.addr, proxy_http="/", accept_proxy=True,
                    trusted_proxies="10.0.0.0/8")
    hdr = v1("203.0.113.7", "198.51.100.1", 1, 443)
    # The readiness probe's bare connect was one already, counted once the
    # lb's proxy thread has accepted it, which the admin API may answer
    # before.
    before = util.wait_for(lambda: err_count(lb, "proxy_untrusted"), 10,
                           "the readiness probe counted as untrusted")
    assert exchange(lb.addr, hdr + REQ) == b""
    assert err_count(lb, "proxy_untrusted") == before + 1
    assert "peer is not in --trusted-proxies" in lb.stderr_text()
    # Nothing reached the backend.
    recs = access_records(lb.stderr_text())
    assert recs and all(r["backend"] == b"-" for r in recs), recs


def test_needs_trusted_proxies(lb_factory):
    lb = lb_factory(accept_proxy=True, ready=False)
    assert lb.wait(10) == 2
    assert "--accept-proxy needs --trusted-proxies" in lb.stderr_text()


def test_limits_count_the_carried_address(fake_backend, lb_factory):
    be = fake_backend(echo_headers_handler)
    lb = lb_factory(backend="b1=" + be.addr, proxy_http="/", accept_proxy=True,
                    trusted_proxies="127.0.0.1/32", limit_conns=1)
    # One connection of client A, header in, request not yet sent: it holds
    # A's only slot.
    held = socket.create_connection(util.split_addr(lb.addr), timeout=10)
    try:
        held.sendall(v1("203.0.113.1", "198.51.100.1", 1, 443))
        lb.wait_active(1)
        # Every connection comes from 127.0.0.1, yet only A is over its limit.
        def a_limited():
            r = exchange(lb.addr, v1("203.0.113.1", "198.51.100.1", 2, 443) + REQ)
            return r.startswith(b"HTTP/1.1 429")
        util.wait_for(a_limited, 5, "client A over its limit")
        resp = exchange(lb.addr, v1("203.0.113.2", "198.51.100.1", 3, 443) + REQ)
        assert forwarded_for(resp) == ["203.0.113.2"]
    finally:
        held.close()
    lb.wait_active(0)
    resp = exchange(lb.addr, v1("203.0.113.1", "198.51.100.1", 4, 443) + REQ)
    assert forwarded_for(resp) == ["203.0.113.1"]


def test_tls_listener_header_before_client_hello(fake_backend, lb_factory):
    be = fake_backend(echo_headers_handler)
    d = tempfile.mkdtemp(prefix="wslb-pp-")
    try:
        cert, key = make_cert(d)
        tls_addr = "127.0.0.1:%d" % util.free_port()
        lb = lb_factory(backend="b1=" + be.addr, proxy_http="/", accept_proxy=True,
                        trusted_proxies="127.0.0.1/32", tls_listen=tls_addr, cert=cert, key=key)
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        for hdr, client in ((v2("203.0.113.20", "198.51.100.1", 5, 443), "203.0.113.20"),
                            (v1("2001:db8::20", "2001:db8::1", 6, 443), "2001:db8::20")):
            resp = exchange(tls_addr, hdr + REQ, wrap=(len(hdr), ctx))
            assert forwarded_for(resp) == [client]
        def recs():
            return [r for r in access_records(lb.stderr_text()) if r.get("req") == b"GET /x"]
        util.wait_for(lambda: len(recs()) == 2, 5, "two access lines")
        assert [r.get("tls") for r in recs()] == [True, True], recs()
        assert {r["client"].decode().rsplit(":", 1)[0] for r in recs()} == {
            "203.0.113.20", "[2001:db8::20]"}
        # A TLS client with no header is refused like any other.
        before = err_count(lb, "proxy_bad")
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            exchange(tls_addr, REQ, wrap=(0, ctx))
        util.wait_for(lambda: err_count(lb, "proxy_bad") == before + 1, 5, "proxy_bad")
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def test_websocket_through_a_real_worker(worker_factory, lb_factory):
    """Both versions in front of a websocket upgrade to a worker: the tunnel
    echoes, and the access line names the carried client."""
    w = worker_factory(id="pw1")
    lb = lb_factory(backend="pw1=" + w.addr, accept_proxy=True, trusted_proxies="127.0.0.1/32")
    upgrade = (b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    mask = b"\x01\x02\x03\x04"
    frame = b"\x81\x82" + mask + bytes(a ^ b for a, b in zip(b"hi", mask))
    for hdr, client in ((v1("203.0.113.30", "198.51.100.1", 7, 443), "203.0.113.30"),
                        (v2("2001:db8::30", "2001:db8::1", 8, 443), "[2001:db8::30]")):
        s = socket.create_connection(util.split_addr(lb.addr), timeout=10)
        try:
            s.sendall(hdr + upgrade)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 101"), data
            rest = data.partition(b"\r\n\r\n")[2]
            s.sendall(frame)
            # The worker's hello, then our echo.
            while b"\x81\x02hi" not in rest:
                chunk = s.recv(4096)
                assert chunk and len(rest) < 65536, rest
                rest += chunk
            assert b'"type":"hello"' in rest, rest
        finally:
            s.close()
        util.wait_for(lambda: any(r.get("req") == b"GET /echo" and
                                  r["client"].decode().rsplit(":", 1)[0] == client
                                  for r in access_records(lb.stderr_text())),
                      5, "access line of %s" % client)
