"""A new lb takes the listening sockets of the running one (--takeover over
its --control-socket): wsbench handshakes and round trips run across three
takeovers with nothing refused or failed; websockets of an old lb echo
until its grace ends and then get exactly one 1001; takeovers from a peer
that is not an lb, a second concurrent one, a broken config and a missing
binary (SIGUSR2) leave the running lb serving."""

import asyncio
import errno
import os
import re
import signal
import socket
import subprocess

import websockets

import util
from conftest import binary, sanitizer_env
from lbutil import lb_factory, open_ws  # noqa: F401


def result(out):
    m = re.search(r"^RESULT (.*)$", out, re.M)
    assert m, out[-2000:]
    return dict(kv.split("=", 1) for kv in m.group(1).split())


def successor(lb_factory, old, sock, **kw):
    return lb_factory(listen=old.addr, admin=old.admin, control_socket=sock, takeover=sock,
                      **kw)


def test_three_takeovers_under_wsbench(worker_factory, lb_factory, tmp_path):
    w = worker_factory(id="w1")
    sock = str(tmp_path / "ctl.sock")
    lbs = [lb_factory(backend="w1=" + w.addr, control_socket=sock, threads=2, grace_s=30)]
    url = lbs[0].url("/echo")
    bench = binary("wsbench")
    hs = subprocess.Popen([bench, "handshake", "-q", "-c", "4", "-d", "8", url],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rtt = subprocess.Popen([bench, "rtt", "-q", "-c", "4", "-d", "8", url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for i in range(3):
            util.wait_for(lambda: lbs[-1].stats()["handshakes"] > 0, 10, "traffic on lb")
            new = successor(lb_factory, lbs[-1], sock, backend="w1=" + w.addr, threads=2,
                            grace_s=30)
            util.wait_for(lambda: "this one stops accepting" in lbs[-1].stderr_text(), 10,
                          "old lb handed over")
            lbs.append(new)
        hs_out, _ = hs.communicate(timeout=60)
        rtt_out, _ = rtt.communicate(timeout=60)
    finally:
        for p in (hs, rtt):
            if p.poll() is None:
                p.kill()
                p.wait()
    h, r = result(hs_out), result(rtt_out)
    assert int(h["handshakes"]) > 0 and int(r["msgs"]) > 0
    for res in (h, r):
        bad = {k: v for k, v in res.items() if (k.startswith("e_") or k in ("hs_fail", "errors",
                                                                          "dropped")) and v != "0"}
        assert not bad, (res["mode"], bad)
        assert res.get("e_connect", "0") == "0", res
    # Every old lb drained and exited 0; the last one serves.
    for old in lbs[:-1]:
        assert old.wait(40) == 0
    assert lbs[-1].alive()
    assert lbs[-1].stats()["config_generation"] == 1

    async def go():
        ws, _ = await open_ws(lbs[-1].url("/echo"))
        await ws.close()
    asyncio.run(go())


def test_old_websockets_echo_until_grace_then_one_1001(worker_factory, lb_factory, tmp_path):
    w = worker_factory(id="w1")
    sock = str(tmp_path / "ctl.sock")
    old = lb_factory(backend="w1=" + w.addr, control_socket=sock, grace_s=3)

    async def go():
        conns = [(await open_ws(old.url("/echo")))[0] for _ in range(3)]
        new = successor(lb_factory, old, sock, backend="w1=" + w.addr)
        util.wait_for(lambda: "this one stops accepting" in old.stderr_text(), 10, "handed over")
        for i, ws in enumerate(conns):
            await ws.send("m%d" % i)
            assert await asyncio.wait_for(ws.recv(), 10) == "m%d" % i
        codes = []
        for ws in conns:
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
            except websockets.ConnectionClosed as e:
                codes.append(e.rcvd.code if e.rcvd else None)
        return new, codes
    new, codes = asyncio.run(go())
    assert codes == [1001, 1001, 1001]
    assert old.wait(20) == 0
    assert "grace period over" in old.stderr_text()

    async def again():
        ws, _ = await open_ws(new.url("/echo"))
        await ws.close()
    asyncio.run(again())


def test_refusals_leave_the_old_lb_serving(worker_factory, lb_factory, tmp_path):
    w = worker_factory(id="w1")
    sock = str(tmp_path / "ctl.sock")
    old = lb_factory(backend="w1=" + w.addr, control_socket=sock)

    # A peer that is not an lb gets no sockets.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(sock)
    s.send(b"GET / HTTP/1.0\r\n\r\n")
    assert s.recv(100).startswith(b"WSLB-HAND 1 ERR")
    s.close()
    # A second takeover while one is in progress: BUSY.
    first = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    first.settimeout(5)
    first.connect(sock)
    first.send(b"WSLB-TAKEOVER 1\n")
    assert first.recv(100).startswith(b"WSLB-HAND 1 OK")
    second = lb_factory(listen=old.addr, admin=old.admin, takeover=sock,
                        backend="w1=" + w.addr, ready=False)
    assert second.wait(20) != 0
    assert "another takeover is in progress" in second.stderr_text()
    first.close()  # abandoned before READY
    util.wait_for(lambda: "takeover abandoned" in old.stderr_text(), 10, "abandoned")
    # A takeover with a broken config never reaches the old lb.
    bad = lb_factory(listen=old.addr, admin=old.admin, takeover=sock, algo="nosuch",
                     ready=False)
    assert bad.wait(20) == 2
    # Taking over from something that is not an lb.
    fake = str(tmp_path / "fake.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(fake)
    srv.listen(1)
    notlb = lb_factory(listen="127.0.0.1:%d" % util.free_port(), takeover=fake, ready=False)
    c, _ = srv.accept()
    c.recv(100)
    c.send(b"hello there\n")
    assert notlb.wait(20) != 0
    assert "not an lb" in notlb.stderr_text()
    c.close()
    srv.close()
    async def go():
        ws, _ = await open_ws(old.url("/echo"))
        await ws.send("x")
        assert await asyncio.wait_for(ws.recv(), 10) == "x"
        await ws.close()
    asyncio.run(go())
    assert old.stats()["accepted"] > 0


def test_sigusr2_with_the_binary_gone_keeps_serving(worker_factory, tmp_path):
    w = worker_factory(id="w1")
    exe = str(tmp_path / "wslb-lb-copy")
    subprocess.run(["cp", binary("lb"), exe], check=True)
    addr = "127.0.0.1:%d" % util.free_port()
    admin = "127.0.0.1:%d" % util.free_port()
    log = open(str(tmp_path / "lb.log"), "w+")
    p = subprocess.Popen([exe, "--listen", addr, "--admin", admin, "--route", "/echo",
                          "--backend", "w1=" + w.addr, "--grace-s", "1",
                          "--control-socket", str(tmp_path / "ctl.sock")],
                         stdout=log, stderr=log, env=sanitizer_env())
    try:
        util.wait_for(lambda: util.try_http_get(admin, "/healthz") is not None, 15, "lb up")
        os.unlink(exe)  # an upgrade that removed the binary
        p.send_signal(signal.SIGUSR2)
        text = lambda: open(str(tmp_path / "lb.log")).read()  # noqa: E731
        util.wait_for(lambda: "before taking over; still serving" in text(), 15, "child failed")
        assert p.poll() is None

        async def go():
            ws, _ = await open_ws("ws://%s/echo" % addr)
            await ws.send("x")
            assert await asyncio.wait_for(ws.recv(), 10) == "x"
            await ws.close()
        asyncio.run(go())
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        log.close()


def _stop_upgraded(pid):
    """Stop the lb a SIGUSR2 upgrade started: it is not the test's child,
    so wait until it is gone or a zombie of init rather than wait()."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    def gone():
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().split(") ")[1][0] == "Z"
        except FileNotFoundError:  # reaped between two looks
            return True
    util.wait_for(gone, 20, "the upgraded lb to exit")


def test_sigusr2_upgrade_and_notify(worker_factory, tmp_path):
    """SIGUSR2 starts argv[0] again with --takeover: the new lb tells
    $NOTIFY_SOCKET it is ready and the main process (MAINPID), the old one
    drains and exits 0, and the new one serves; a broken config then makes
    the next SIGUSR2 fail while the running lb keeps serving."""
    w = worker_factory(id="w1")
    notify = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify)
    ns.settimeout(20)
    conf = str(tmp_path / "lb.conf")
    with open(conf, "w") as f:
        f.write("backend = w1=%s\nroute = /echo\n" % w.addr)
    addr = "127.0.0.1:%d" % util.free_port()
    admin = "127.0.0.1:%d" % util.free_port()
    logpath = str(tmp_path / "lb.log")
    log = open(logpath, "w+")
    env = dict(sanitizer_env(), NOTIFY_SOCKET=notify)
    p = subprocess.Popen([binary("lb"), "--config", conf, "--listen", addr, "--admin", admin,
                          "--grace-s", "1", "--control-socket", str(tmp_path / "ctl.sock")],
                         stdout=log, stderr=log, env=env)
    new_pid = None
    try:
        msg = ns.recv(200).decode()
        assert "READY=1" in msg and "MAINPID=%d" % p.pid in msg
        p.send_signal(signal.SIGUSR2)
        msgs = [ns.recv(200).decode()]
        m = re.search(r"MAINPID=(\d+)", msgs[0])
        assert "READY=1" in msgs[0] and m, msgs
        new_pid = int(m.group(1))
        assert new_pid != p.pid
        assert p.wait(20) == 0  # drained and gone
        # The old lb, taken over, says nothing more: systemd's main process
        # stays the new one.
        ns.settimeout(0.5)
        try:
            msgs.append(ns.recv(200).decode())
        except socket.timeout:
            pass
        assert len(msgs) == 1, msgs
        ns.settimeout(20)

        async def echo():
            ws, _ = await open_ws("ws://%s/echo" % addr)
            await ws.send("x")
            assert await asyncio.wait_for(ws.recv(), 10) == "x"
            await ws.close()
        asyncio.run(echo())
        # An upgrade of the upgraded lb: its --takeover is not passed on
        # beside the fresh one, so command lines do not grow per upgrade.
        os.kill(new_pid, signal.SIGUSR2)
        m = re.search(r"MAINPID=(\d+)", ns.recv(200).decode())
        assert m and int(m.group(1)) != new_pid
        old_pid, new_pid = new_pid, int(m.group(1))
        with open("/proc/%d/cmdline" % new_pid, "rb") as f:
            args = f.read().split(b"\0")
        assert args.count(b"--takeover") == 1, args
        util.wait_for(lambda: not os.path.exists("/proc/%d" % old_pid) or
                      open("/proc/%d/stat" % old_pid).read().split(") ")[1][0] == "Z",
                      20, "the first upgraded lb to drain and exit")
        asyncio.run(echo())
        # A broken config: the next upgrade fails, the running lb stays.
        with open(conf, "a") as f:
            f.write("algo = nosuch\n")
        os.kill(new_pid, signal.SIGUSR2)
        util.wait_for(lambda: "exited with status 2 before taking over" in open(logpath).read(),
                      15, "failed upgrade logged")
        asyncio.run(echo())
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if new_pid is not None:
            _stop_upgraded(new_pid)
        ns.close()
        log.close()


def test_admin_socket_not_wanted_is_not_kept(worker_factory, lb_factory, tmp_path):
    """A new lb whose --admin differs from the old one's closes the admin
    socket it was handed: once the old lb is gone nothing listens there (a
    socket kept open would take connections no one ever answers)."""
    w = worker_factory(id="w1")
    sock = str(tmp_path / "ctl.sock")
    old = lb_factory(backend="w1=" + w.addr, control_socket=sock)
    old_admin = old.admin
    new = lb_factory(listen=old.addr, control_socket=sock, takeover=sock,
                     backend="w1=" + w.addr)
    assert new.admin != old_admin
    util.wait_for(lambda: "this one stops accepting" in old.stderr_text(), 10, "handed over")
    assert old.wait(20) == 0
    # A socket still listening would complete the handshake (and then never
    # answer); one closed for good refuses at once.
    s = socket.socket()
    s.settimeout(5)
    try:
        err = s.connect_ex(util.split_addr(old_admin))
    finally:
        s.close()
    assert err == errno.ECONNREFUSED, os.strerror(err)
    assert new.alive()



def test_takeover_of_a_stopping_lb_is_refused(worker_factory, lb_factory, tmp_path):
    """An lb draining after SIGTERM has closed its listeners: a takeover
    then gets a clear refusal, never the numbers of descriptors it no longer
    holds (or that now belong to other sockets), and the drain goes on."""
    w = worker_factory(id="w1")
    sock = str(tmp_path / "ctl.sock")
    old = lb_factory(backend="w1=" + w.addr, control_socket=sock, grace_s=30)

    async def go():
        ws, _ = await open_ws(old.url("/echo"))
        old.stop()
        util.wait_for(lambda: "no longer accepting" in old.stderr_text(), 10, "stopping")
        new = lb_factory(listen=old.addr, takeover=sock, backend="w1=" + w.addr, ready=False)
        assert new.wait(20) != 0
        assert "shutting down" in new.stderr_text(), new.stderr_text()[-2000:]
        await ws.send("still")
        assert await asyncio.wait_for(ws.recv(), 10) == "still"
        await ws.close()
    asyncio.run(go())
    assert old.wait(20) == 0
    assert "handed over" not in old.stderr_text()


def _redis_conns(redis_addr, pid=None):
    """Local ports of the established connections to redis_addr (of pid's
    process, if given)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "dst", redis_addr],
                         capture_output=True, text=True, check=True).stdout
    ports = set()
    for line in out.splitlines():
        if pid is not None and "pid=%d," % pid not in line:
            continue
        ports.add(line.split()[2].rsplit(":", 1)[1])
    return ports


def test_sigusr2_child_inherits_no_connection(worker_factory, redis_server, tmp_path):
    """The lb started by SIGUSR2 takes its listeners over the control socket
    and nothing else from the old one: the old lb's Redis connections end
    with it (inherited, they would stay open in the new lb, one more set at
    every upgrade)."""
    w = worker_factory(id="w1")
    addr = "127.0.0.1:%d" % util.free_port()
    admin = "127.0.0.1:%d" % util.free_port()
    logpath = str(tmp_path / "lb.log")
    log = open(logpath, "w+")
    p = subprocess.Popen([binary("lb"), "--listen", addr, "--admin", admin, "--route", "/echo",
                          "--backend", "w1=" + w.addr, "--redis", redis_server, "--grace-s", "1",
                          "--control-socket", str(tmp_path / "ctl.sock")],
                         stdout=log, stderr=log, env=sanitizer_env())
    new_pid = None
    try:
        util.wait_for(lambda: util.try_http_get(admin, "/healthz") is not None, 15, "lb up")
        old_ports = util.wait_for(lambda: _redis_conns(redis_server, p.pid), 15,
                                  "the lb's Redis connections")
        p.send_signal(signal.SIGUSR2)
        m = util.wait_for(lambda: re.search(r"SIGUSR2: started .* \(pid (\d+)\)",
                                            open(logpath).read()), 15, "upgrade started")
        new_pid = int(m.group(1))
        assert p.wait(20) == 0
        util.wait_for(lambda: not (_redis_conns(redis_server) & old_ports), 10,
                      "the old lb's Redis connections to close")
        assert _redis_conns(redis_server, new_pid)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if new_pid is not None:
            _stop_upgraded(new_pid)
        log.close()
