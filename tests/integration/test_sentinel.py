"""Redis without a single point of failure, end to end.

A master, a replica and three Sentinels on loopback, locked down the way the
README's "Redis high availability (Sentinel)" section describes (the default
user off, one ACL user each for the workers, the lbs, the Sentinels and
replication; the Sentinels with their own password and a client user). The
lb and the workers find the master through the Sentinels while clients open
websockets and run evaluations throughout. The master is SIGKILLed: nobody
may notice. A second test takes a plain Redis away for 10 s.
"""

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

import util
from lbutil import lb_factory  # noqa: F401

REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
MASTER = "wslb"
PW = {"admin": "admin-pw", "replica-user": "repl-pw", "sentinel-user": "sentinel-pw",
      "wslb-worker": "worker-pw", "wslb-lb": "lb-pw", "sentinel-default": "sentinels-pw",
      "wslb-client": "client-pw"}

# The ACLs the README documents, word for word.
ACL_WORKER = ("on >%s resetkeys ~wslb:worker:* ~wslb:workers resetchannels &wslb:events "
              "-@all +set +sadd +srem +del +publish +ping +role" % PW["wslb-worker"])
ACL_LB = ("on >%s resetkeys ~wslb:worker:* ~wslb:workers resetchannels &wslb:events "
          "-@all +smembers +mget +srem +subscribe +role" % PW["wslb-lb"])
ACL_SENTINEL_CLIENT = ("on >%s -@all +sentinel|get-master-addr-by-name +sentinel|sentinels "
                       "+subscribe resetchannels &+switch-master" % PW["wslb-client"])


def _redis(port, password, username=None):
    import redis
    return redis.Redis(host="127.0.0.1", port=port, username=username, password=password,
                       decode_responses=True, socket_timeout=5)


class RedisHA:
    """A master, a replica and three Sentinels (quorum 2, down after 1 s),
    each on a free loopback port with its files in one temp dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wslb-ha-")
        os.chmod(self.dir, 0o700)
        self.procs = {}
        self.files = {}
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self):
        for user in ("wslb-worker", "wslb-lb", "wslb-client"):
            path = os.path.join(self.dir, user + ".pw")
            with open(path, "w") as f:
                f.write(PW[user] + "\n")
            os.chmod(path, 0o600)
            self.files[user] = path
        self.mport = self._start("master", self._node_conf)
        self.rport = self._start("replica", self._node_conf)
        util.wait_for(lambda: self.admin(self.mport).info("replication")["connected_slaves"] == 1,
                      10, "the replica to connect")
        self.sports = [self._start("sentinel%d" % i, self._sentinel_conf) for i in range(3)]
        util.wait_for(self._sentinels_ready, 30, "every Sentinel to know the replica and the "
                      "other two Sentinels")

    def _start(self, name, make_conf):
        """Starts name on a free port (another one if that was taken in the
        meantime) with the configuration make_conf(name, port) writes;
        returns the port once it answers."""
        for attempt in range(3):
            port = util.free_port()
            conf, argv, auth = make_conf(name, port)
            log = open(os.path.join(self.dir, name + ".log"), "wb")
            self.procs[name] = subprocess.Popen(argv + [conf], stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=subprocess.STDOUT)
            log.close()

            def up():
                if self.procs[name].poll() is not None:
                    return "exited"
                try:
                    return _redis(port, *auth).ping()
                except Exception:
                    return False
            if util.wait_for(up, 10, "%s on port %d" % (name, port)) is True:
                return port
            if "Address already in use" not in self.log(name) or attempt == 2:
                raise AssertionError("%s exited: %s" % (name, self.log(name)[-2000:]))

    def _node_conf(self, name, port):
        conf = os.path.join(self.dir, name + ".conf")
        lines = [
            "port %d" % port, "bind 127.0.0.1", 'save ""', "appendonly no",
            "dir %s" % self.dir, "dbfilename %s.rdb" % name,
            "user default off",
            "user admin on >%s ~* &* +@all" % PW["admin"],
            "user replica-user on >%s +psync +replconf +ping" % PW["replica-user"],
            "user sentinel-user on >%s allchannels +multi +slaveof +ping +exec +subscribe "
            "+config|rewrite +role +publish +info +client|setname +client|kill +script|kill"
            % PW["sentinel-user"],
            "user wslb-worker " + ACL_WORKER,
            "user wslb-lb " + ACL_LB,
            "masteruser replica-user",
            "masterauth %s" % PW["replica-user"],
        ]
        if name == "replica":
            lines.append("replicaof 127.0.0.1 %d" % self.mport)
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(conf, 0o600)
        return conf, [util.REDIS_SERVER], (PW["admin"], "admin")

    def _sentinel_conf(self, name, port):
        conf = os.path.join(self.dir, name + ".conf")
        lines = [
            "port %d" % port, "bind 127.0.0.1", "dir %s" % self.dir,
            "sentinel monitor %s 127.0.0.1 %d 2" % (MASTER, self.mport),
            "sentinel auth-user %s sentinel-user" % MASTER,
            "sentinel auth-pass %s %s" % (MASTER, PW["sentinel-user"]),
            "sentinel down-after-milliseconds %s 1000" % MASTER,
            "sentinel failover-timeout %s 10000" % MASTER,
            "requirepass %s" % PW["sentinel-default"],
            "sentinel sentinel-pass %s" % PW["sentinel-default"],
            "user wslb-client " + ACL_SENTINEL_CLIENT,
        ]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(conf, 0o600)
        return conf, [REDIS_SENTINEL], (PW["sentinel-default"],)

    def _sentinels_ready(self):
        for port in self.sports:
            s = self.sentinel(port)
            m = s.sentinel_master(MASTER)
            reps = s.sentinel_slaves(MASTER)
            if m.get("num-other-sentinels") != 2 or not any(
                    r.get("master-link-status") == "ok" for r in reps):
                return False
        return True

    def admin(self, port):
        return _redis(port, PW["admin"], "admin")

    def sentinel(self, port):
        return _redis(port, PW["sentinel-default"])

    def master_port(self):
        """The master's port as the first Sentinel that answers says."""
        for port in self.sports:
            try:
                return int(self.sentinel(port).sentinel_get_master_addr_by_name(MASTER)[1])
            except Exception:
                continue
        return None

    def flags(self, role):
        """Flags for a worker (role 'wslb-worker') or an lb ('wslb-lb')."""
        return {
            "redis_sentinel": ",".join("127.0.0.1:%d" % p for p in self.sports),
            "redis_master": MASTER,
            "redis_user": role,
            "redis_password_file": self.files[role],
            "redis_sentinel_user": "wslb-client",
            "redis_sentinel_password_file": self.files["wslb-client"],
        }

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self, name):
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_ha():
    if not os.access(util.REDIS_SERVER, os.X_OK) or not os.access(REDIS_SENTINEL, os.X_OK):
        pytest.skip("redis-server or redis-sentinel is not installed (make deps)")
    ha = RedisHA()
    try:
        yield ha
    finally:
        ha.close()


class Load:
    """Clients of the lb for as long as it runs: `churn` of them open a
    websocket, run one evaluation and close, again and again; `hold` of them
    keep one websocket and run evaluations on it. Every handshake and
    evaluation is counted, with what went wrong. Bounded: it stops by itself
    after `max_s` seconds or `max_evals` evaluations."""

    def __init__(self, url, churn=2, hold=2, max_s=120, max_evals=20000):
        self.url, self.churn, self.hold = url, churn, hold
        self.max_s, self.max_evals = max_s, max_evals
        self.handshakes = 0
        self.failed_handshakes = []
        self.eval_times = []
        self.failed_evals = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self):
        self._thread.start()
        util.wait_for(lambda: len(self.eval_times) >= 2 * (self.churn + self.hold), 30,
                      "the load to get going")
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the load did not stop"

    def evals_between(self, t0, t1):
        return sum(1 for t in self.eval_times if t0 <= t <= t1)

    def _done(self):
        return (self._stop.is_set() or time.monotonic() > self._deadline
                or len(self.eval_times) >= self.max_evals)

    async def _open(self):
        try:
            ws = await util.ws_connect(self.url)
            await util.recv_hello(ws)
        except Exception as e:
            self.failed_handshakes.append(repr(e))
            return None
        self.handshakes += 1
        return ws

    async def _eval(self, ws, n):
        try:
            r = await util.arun(ws, "python3", "print(6*7)", run_id="r%d" % n, deadline=30)
        except Exception as e:
            self.failed_evals.append(repr(e))
            return False
        if r.verdict == "ok" and r.stdout == "42\n":
            self.eval_times.append(time.monotonic())
            return True
        self.failed_evals.append(repr(r))
        return False

    async def _churner(self):
        n = 0
        while not self._done():
            ws = await self._open()
            if ws is None:
                await asyncio.sleep(0.1)  # pacing after a failure, which fails the test anyway
                continue
            try:
                await self._eval(ws, n)
            finally:
                await ws.close()
            n += 1

    async def _holder(self):
        ws = await self._open()
        n = 0
        try:
            while ws is not None and not self._done() and await self._eval(ws, n):
                n += 1
        finally:
            if ws is not None:
                await ws.close()

    async def _main(self):
        self._deadline = time.monotonic() + self.max_s
        await asyncio.gather(*[self._churner() for _ in range(self.churn)],
                             *[self._holder() for _ in range(self.hold)])

    def assert_clean(self):
        assert not self.failed_handshakes, "failed handshakes: %r" % self.failed_handshakes[:5]
        assert not self.failed_evals, "failed evaluations: %r" % self.failed_evals[:5]


async def _hold_direct(url, n, opened, release):
    """Holds n websockets straight to a worker (not through the lb) until
    release is set; opened is set once they are all up."""
    socks = []
    try:
        for _ in range(n):
            ws = await util.ws_connect(url)
            await util.recv_hello(ws)
            socks.append(ws)
        opened.set()
        while not release.is_set():
            await asyncio.sleep(0.05)
    finally:
        for ws in socks:
            await ws.close()


class Direct:
    """Websockets held straight to workers, which only Redis can tell the lb
    about: the lb counts them in conns_global once it read the workers'
    fresh state."""

    def __init__(self, workers, n=1):
        self.n = n
        self._release = threading.Event()
        self._threads = []
        for w in workers:
            opened = threading.Event()
            t = threading.Thread(target=lambda u=w.url(), o=opened: asyncio.run(
                _hold_direct(u, n, o, self._release)), daemon=True)
            t.start()
            self._threads.append((t, opened))
        for t, opened in self._threads:
            assert opened.wait(20), "direct websockets did not open"

    def close(self):
        self._release.set()
        for t, _ in self._threads:
            t.join(20)


def lb_counts_direct(lb, workers, n):
    """Whether the lb's global count of every worker includes n websockets
    that did not come through it."""
    bs = {b["id"]: b for b in lb.stats()["backends"]}
    return all(w.id in bs and bs[w.id]["conns_global"] - bs[w.id]["active"] >= n
               for w in workers)


def lb_counts_exactly(lb, workers, n):
    """Whether the lb counts exactly n websockets on each worker that did
    not come through it."""
    bs = {b["id"]: b for b in lb.stats()["backends"]}
    return all(w.id in bs and bs[w.id]["conns_global"] - bs[w.id]["active"] == n
               for w in workers)


def backend_ids(lb):
    return sorted(b["id"] for b in lb.stats()["backends"])


def test_sentinel_failover_under_load(redis_ha, worker_factory, lb_factory):
    ha = redis_ha
    workers = [worker_factory(id="s%d" % i, **ha.flags("wslb-worker")) for i in range(3)]
    lb = lb_factory(slowstart_ms=0, **ha.flags("wslb-lb"))
    util.wait_for(lambda: backend_ids(lb) == ["s0", "s1", "s2"], 15, "the lb to discover the "
                  "workers through Sentinel (now %r)" % backend_ids(lb))
    # The ACLs are enough: the workers registered, the lb read and subscribed.
    admin = ha.admin(ha.mport)
    assert sorted(admin.smembers("wslb:workers")) == ["s0", "s1", "s2"]
    # A websocket straight to each worker, which the lb learns about from
    # Redis only.
    direct = Direct(workers)
    load = Load(lb.url("/eval")).start()
    try:
        util.wait_for(lambda: lb_counts_direct(lb, workers, 1), 10,
                      "the lb to count the direct websockets")
        t_kill = time.monotonic()
        ha.kill("master")
        # They close while there is no master: only the new one can tell.
        direct.close()
        util.wait_for(lambda: ha.master_port() == ha.rport, 30, "the Sentinels to promote "
                      "the replica")
        t_switch = time.monotonic()
        failover_s = t_switch - t_kill
        # The lb reads the workers' fresh state from the new master within
        # the failover time plus 2 s.
        util.wait_for(lambda: lb_counts_exactly(lb, workers, 0),
                      max(0.1, t_switch + 2.0 - time.monotonic()),
                      "the lb to see the direct websockets gone (stats %r)"
                      % lb.stats()["backends"], interval=0.02)
        t_fresh = time.monotonic()
        assert t_fresh - t_switch <= 2.2, "fresh only %.2f s after the switch" % (
            t_fresh - t_switch)
        new = ha.admin(ha.rport)
        assert sorted(new.smembers("wslb:workers")) == ["s0", "s1", "s2"]
        # A worker started after the failover is discovered.
        w3 = worker_factory(id="s3", **ha.flags("wslb-worker"))
        util.wait_for(lambda: "s3" in backend_ids(lb), 10, "s3 discovered (now %r)"
                      % backend_ids(lb))
        t_end = time.monotonic()
        util.wait_for(lambda: load.evals_between(t_end, time.monotonic()) >= 4, 30,
                      "evaluations after the failover")
    finally:
        direct.close()
        load.stop()
    print("\nSENTINEL failover_s=%.2f fresh_after_switch_s=%.2f handshakes=%d evals=%d "
          "evals_during_failover=%d" % (failover_s, t_fresh - t_switch, load.handshakes,
                                        len(load.eval_times),
                                        load.evals_between(t_kill, t_switch)))
    load.assert_clean()
    assert load.evals_between(t_kill, t_switch) > 0, "no evaluation ran during the failover"
    # Never a backend dropped because Redis was away.
    assert "removed" not in lb.stderr_text(), lb.stderr_text()[-3000:]
    assert all(w.alive() for w in workers) and w3.alive()
    lb.wait_active(0)


def test_redis_away_for_10s(redis_factory, worker_factory, lb_factory):
    srv = redis_factory()
    workers = [worker_factory(id="p%d" % i, redis=srv.addr) for i in range(2)]
    lb = lb_factory(redis=srv.addr, slowstart_ms=0)
    util.wait_for(lambda: backend_ids(lb) == ["p0", "p1"], 15, "both discovered")
    load = Load(lb.url("/eval")).start()
    try:
        srv.stop()
        t0 = time.monotonic()
        # Started while Redis is away: it serves, and registers once Redis is back.
        late = worker_factory(id="p2", redis=srv.addr)
        # The outage itself is the point here: 10 s, during which the lb keeps
        # serving the workers it knew.
        while time.monotonic() < t0 + 10:
            assert backend_ids(lb) == ["p0", "p1"]
            assert all(b["state"] == "up" for b in lb.stats()["backends"])
            time.sleep(0.5)
        assert load.evals_between(t0, time.monotonic()) > 0, "nothing ran during the outage"
        srv.restart()  # empty: no persistence
        t_back = time.monotonic()
        util.wait_for(lambda: backend_ids(lb) == ["p0", "p1", "p2"], 10,
                      "the late worker discovered (now %r)" % backend_ids(lb))
        rc = util.redis_client(srv.addr)
        assert sorted(rc.smembers("wslb:workers")) == ["p0", "p1", "p2"]
        # Counts are fresh again: direct websockets show in the lb's figures.
        every = workers + [late]
        direct = Direct(every)
        try:
            util.wait_for(lambda: lb_counts_direct(lb, every, 1), 5,
                          "fresh counts after Redis came back (stats %r)"
                          % lb.stats()["backends"])
        finally:
            direct.close()
        t_end = time.monotonic()
        util.wait_for(lambda: load.evals_between(t_end, time.monotonic()) >= 4, 30,
                      "evaluations after the outage")
    finally:
        load.stop()
    print("\nREDIS-AWAY caught_up_s=%.2f handshakes=%d evals=%d"
          % (t_end - t_back, load.handshakes, len(load.eval_times)))
    load.assert_clean()
    assert "removed" not in lb.stderr_text(), lb.stderr_text()[-3000:]
    lb.wait_active(0)


@pytest.mark.parametrize("prog", ["worker", "lb"])
def test_bad_redis_flags_refused_at_start(prog, tmp_path):
    from conftest import binary
    pw = tmp_path / "pw"
    pw.write_text("the-secret\n")
    cases = [
        (["--redis", "127.0.0.1:6379", "--redis-sentinel", "127.0.0.1:26379",
          "--redis-master", "m"], "exclude each other"),
        (["--redis-sentinel", "127.0.0.1:26379"], "needs --redis-master"),
        (["--redis-sentinel", "127.0.0.1:26379,sentinel.example:26379", "--redis-master", "m"],
         "not a numeric"),
        (["--redis", "127.0.0.1:6379", "--redis-password-file", str(tmp_path / "missing")],
         "--redis-password-file"),
        (["--redis", "127.0.0.1:6379", "--redis-user", "u"], "needs --redis-password-file"),
    ]
    base = ["--listen", "127.0.0.1:%d" % util.free_port()]
    if prog == "lb":
        base += ["--admin", "127.0.0.1:%d" % util.free_port()]
    for args, want in cases:
        r = subprocess.run([binary(prog)] + base + args, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        assert r.returncode != 0 and want in r.stderr, (args, r.returncode, r.stderr[-1000:])
        assert "Sanitizer" not in r.stderr, r.stderr[-3000:]


def test_refused_password_is_reported_not_logged(redis_factory, worker_factory, tmp_path):
    srv = redis_factory()
    util.redis_client(srv.addr).config_set("requirepass", "right-pw")
    pw = tmp_path / "pw"
    pw.write_text("wrong-pw\n")
    w = worker_factory(id="a1", redis=srv.addr, redis_password_file=str(pw))
    util.wait_for(lambda: "AUTH refused" in w.stderr_text(), 10, "the refusal logged")
    w.healthy_and_serving()  # Redis refusing us costs the clients nothing
    text = w.stderr_text()
    assert "WRONGPASS" in text and "wrong-pw" not in text, text[-2000:]
