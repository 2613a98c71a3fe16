"""deploy/ansible: ansible-lint and --syntax-check; site.yml applied for
real (-c local) into a scratch root, twice, then its files checked and the
daemons started from the unpacked package with what it wrote; rollout.yml
run for real against local workers and an lb, with a worker that fails."""

import json
import os
import re
import shutil
import signal
import subprocess

import pytest

import util
from conftest import BIN_DIR, REPO, binary, plain_make_env
from lbutil import lb_factory, make_cert  # noqa: F401

ANSIBLE = os.path.join(REPO, "deploy", "ansible")
PLAYBOOK = shutil.which("ansible-playbook")
needs_ansible = pytest.mark.skipif(PLAYBOOK is None,
                                   reason="ansible-playbook is missing (Debian ansible-core)")


def ansible_env():
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ANSIBLE, "ansible.cfg"),
               ANSIBLE_PIPELINING="1",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCAL_TEMP="/tmp/.ansible-wslb-tests",
               ANSIBLE_REMOTE_TEMP="/tmp/.ansible-wslb-tests")
    # The controller's Python is Debian's: the pyenv one on PATH lacks ansible.
    env["PATH"] = "/usr/bin:/bin:" + env.get("PATH", "")
    return env


def playbook(*args, timeout=300):
    return subprocess.run([PLAYBOOK] + list(args), cwd=ANSIBLE, env=ansible_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def recap(out):
    """PLAY RECAP -> {host: {"ok": n, "changed": n, "failed": n, ...}}"""
    hosts = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", out, re.M):
        hosts[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return hosts


@needs_ansible
def test_syntax_check():
    r = playbook("--syntax-check", "-i", "inventory.example.ini", "site.yml", "rollout.yml")
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(shutil.which("ansible-lint") is None,
                    reason="ansible-lint is missing (Debian ansible-lint)")
def test_ansible_lint():
    r = subprocess.run(["ansible-lint", "--nocolor", "-p", "site.yml", "rollout.yml", "roles"],
                       cwd=ANSIBLE, env=ansible_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:]


# ---- site.yml into a scratch root ---------------------------------------------

@pytest.fixture(scope="module")
def deb():
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is missing")
    r = subprocess.run(["make", "deb"], cwd=REPO, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600, env=plain_make_env())
    assert r.returncode == 0, r.stdout[-3000:]
    debs = [x for x in r.stdout.splitlines() if x.endswith(".deb")]
    assert debs and os.path.exists(debs[-1]), r.stdout[-3000:]
    return debs[-1]


def local_inventory(path, groups):
    lines = []
    for group, hosts in groups.items():
        lines.append("[%s]" % group)
        for host, hostvars in hosts.items():
            lines.append(" ".join([host, "ansible_connection=local",
                                   "ansible_python_interpreter=/usr/bin/python3"] +
                                  ["%s=%s" % kv for kv in hostvars.items()]))
        lines.append("")
    lines += ["[wslb:children]"] + [g for g in groups] + [""]
    path.write_text("\n".join(lines))
    return str(path)


@pytest.fixture(scope="module")
def applied(deb, tmp_path_factory):
    """site.yml applied twice into a scratch root; returns (root, vars,
    first output, second output)."""
    if PLAYBOOK is None:
        pytest.skip("ansible-playbook is missing (Debian ansible-core)")
    tmp = tmp_path_factory.mktemp("site")
    root = tmp / "root"
    root.mkdir()
    cert, key = make_cert(str(tmp))
    ports = {k: util.free_port() for k in ("worker", "lb", "admin", "tls", "redis")}
    inv = local_inventory(tmp / "inventory.ini", {
        "wslb_redis": {"redis-1": {"wslb_private_ip": "127.0.0.1"}},
        "wslb_lbs": {"lb-1": {"wslb_private_ip": "127.0.0.1"}},
        "wslb_workers": {"worker-1": {"wslb_private_ip": "127.0.0.1"}},
    })
    extra = {
        "wslb_root": str(root), "wslb_deb": deb, "ansible_become": False,
        "wslb_redis_port": ports["redis"],
        "wslb_worker_listen": "127.0.0.1:%d" % ports["worker"],
        "wslb_worker_drain_s": 60, "wslb_worker_max_evals": 3,
        "wslb_worker_upstream_secret": "up-s3cret",
        "wslb_worker_options": {"timeout-ms": 5000},
        "wslb_lb_listen": ["127.0.0.1:%d" % ports["lb"]],
        "wslb_lb_admin": "127.0.0.1:%d" % ports["admin"],
        "wslb_lb_admin_token": "adm-t0ken", "wslb_lb_upstream_secret": "up-s3cret",
        "wslb_lb_tls_listen": ["127.0.0.1:%d" % ports["tls"]],
        "wslb_lb_tls_cert_src": cert, "wslb_lb_tls_key_src": key,
        "wslb_lb_trusted_proxies": ["10.0.0.0/8"], "wslb_lb_options": {"threads": 2},
        "wslb_lb_group": "root",
    }
    args = ["-i", inv, "-e", json.dumps(extra), "site.yml"]
    first = playbook(*args)
    assert first.returncode == 0, first.stdout[-6000:]
    second = playbook(*args)
    assert second.returncode == 0, second.stdout[-6000:]
    yield root, extra, ports, first.stdout, second.stdout
    shutil.rmtree(tmp, ignore_errors=True)


def conf(path):
    """A --config file -> {key: [values]} (values of repeated keys in order)."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition(" = ")
            out.setdefault(k, []).append(v)
    return out


def test_site_renders_the_configs(applied):
    root, extra, ports, first, _ = applied
    w = conf(root / "etc/wslb/worker.conf")
    assert w["listen"] == ["127.0.0.1:%d" % ports["worker"]]
    assert w["id"] == ["worker-1"]
    assert w["redis"] == ["127.0.0.1:%d" % ports["redis"]]
    assert w["drain-s"] == ["60"] and w["max-evals"] == ["3"] and w["timeout-ms"] == ["5000"]
    assert w["upstream-secret-file"] == ["/etc/wslb/upstream-secret"]
    assert "queue" not in w and "advertise" not in w
    lb = conf(root / "etc/wslb/lb.conf")
    assert lb["listen"] == ["127.0.0.1:%d" % ports["lb"]]
    assert lb["tls-listen"] == ["127.0.0.1:%d" % ports["tls"]]
    assert lb["cert"] == ["/etc/wslb/lb/fullchain.pem"]
    assert lb["key"] == ["/etc/wslb/lb/privkey.pem"]
    assert lb["admin-token-file"] == ["/etc/wslb/lb/admin-token"]
    assert lb["upstream-secret-file"] == ["/etc/wslb/lb/upstream-secret"]
    assert lb["redis"] == ["127.0.0.1:%d" % ports["redis"]]
    assert lb["trusted-proxies"] == ["10.0.0.0/8"] and lb["threads"] == ["2"]
    assert "id" not in lb  # unique per process: the daemon's default
    redis = (root / "etc/redis/redis.conf").read_text()
    assert re.search(r"^bind 127\.0\.0\.1$", redis, re.M)
    assert re.search(r"^port %d$" % ports["redis"], redis, re.M)
    assert 'save ""' in redis
    # Secrets: the values, readable by their daemon only.
    assert (root / "etc/wslb/upstream-secret").read_text() == "up-s3cret\n"
    assert (root / "etc/wslb/upstream-secret").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/wslb/lb/upstream-secret").read_text() == "up-s3cret\n"
    assert (root / "etc/wslb/lb").stat().st_mode & 0o777 == 0o750
    assert (root / "etc/wslb/lb/admin-token").stat().st_mode & 0o777 == 0o640
    assert (root / "etc/wslb/lb/privkey.pem").stat().st_mode & 0o777 == 0o640
    # no_log: the secrets never reach the output.
    assert "adm-t0ken" not in first and "up-s3cret" not in first


def test_site_renders_the_units(applied):
    root = applied[0]
    # The package's units, unpacked; the drop-ins follow drain-s / grace-s.
    assert (root / "lib/systemd/system/wslb-worker.service").exists()
    assert (root / "lib/systemd/system/wslb-lb.service").exists()
    w = (root / "etc/systemd/system/wslb-worker.service.d/ansible.conf").read_text()
    assert re.search(r"^TimeoutStopSec=75$", w, re.M), w
    lb = (root / "etc/systemd/system/wslb-lb.service.d/ansible.conf").read_text()
    assert re.search(r"^TimeoutStopSec=30$", lb, re.M), lb
    analyze = shutil.which("systemd-analyze")
    if analyze:
        r = subprocess.run([analyze, "cat-config", "--root=%s" % root, "--no-pager",
                            "systemd/system/wslb-worker.service.d/ansible.conf"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
        assert "TimeoutStopSec=75" in r.stdout, r.stdout


def test_site_is_idempotent_and_starts_nothing_here(applied):
    _, _, _, first, second = applied
    for host, counts in recap(second).items():
        assert counts["changed"] == 0 and counts["failed"] == 0, (host, counts, second[-3000:])
    assert recap(first)["worker-1"]["changed"] > 0
    # No systemd and a scratch root: installing and starting were skipped.
    assert "Start the worker and enable it at boot" in first
    assert not re.search(r"^changed: .*Start the", first, re.M)


def scratch_paths(path, root, out):
    """The config with /etc/wslb/ paths moved into the scratch root, so the
    packaged daemon can read it here."""
    out.write_text(path.read_text().replace("/etc/wslb/", "%s/etc/wslb/" % root))
    return str(out)


def test_packaged_daemons_start_with_rendered_configs(applied, tmp_path):
    root, _, ports, _, _ = applied
    work = tmp_path / "work"
    work.mkdir()
    procs = []
    try:
        wconf = scratch_paths(root / "etc/wslb/worker.conf", root, tmp_path / "worker.conf")
        procs.append(subprocess.Popen([str(root / "usr/bin/wslb-worker"), "--config", wconf,
                                       "--work-root", str(work)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        lconf = scratch_paths(root / "etc/wslb/lb.conf", root, tmp_path / "lb.conf")
        procs.append(subprocess.Popen([str(root / "usr/bin/wslb-lb"), "--config", lconf],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        # The lb's /livez: its /healthz stays 503 "loading" here, with no
        # Redis to discover the workers from.
        for addr, path in (("127.0.0.1:%d" % ports["worker"], "/healthz"),
                           ("127.0.0.1:%d" % ports["admin"], "/livez")):
            util.wait_for(lambda: (util.try_http_get(addr, path) or [0])[0] == 200, 15,
                          "%s to serve" % addr)
        for p in procs:
            assert p.poll() is None
    finally:
        errs = []
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                _, err = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate(timeout=10)
            errs.append(err.decode(errors="replace"))
    assert all(p.returncode == 0 for p in procs), errs


# ---- rollout.yml against local workers -------------------------------------------

RESTART = """#!/bin/bash
# restart.sh ID: SIGTERM the worker (it drains), wait until it is gone, start
# it again. FAIL_IDS lists workers whose restart fails.
dir=$(dirname "$0")
id=$1
case " $FAIL_IDS " in *" $id "*) echo "restart of $id failed" >&2; exit 1 ;; esac
if [ -s "$dir/$id.pid" ]; then
    pid=$(cat "$dir/$id.pid")
    kill -TERM "$pid" 2>/dev/null && tail --pid="$pid" -f /dev/null
fi
setsid $(cat "$dir/$id.cmd") >>"$dir/$id.log" 2>&1 </dev/null &
echo $! >"$dir/$id.pid"
"""


def gone(pid):
    """Exited: no such process, or a zombie its new parent has not reaped."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class LocalFleet:
    """Two workers started and restarted by restart.sh, one lb."""

    def __init__(self, tmp, redis, lb_factory):  # noqa: F811
        self.dir = tmp
        self.ids = ["w1", "w2"]
        self.ports = {}
        (tmp / "restart.sh").write_text(RESTART)
        (tmp / "restart.sh").chmod(0o755)
        exe = binary("worker")
        for i, wid in enumerate(self.ids):
            self.ports[wid] = util.free_port()
            # A work root and a range of slot uids of its own: a root is held
            # by one live worker at a time.
            (tmp / ("work-" + wid)).mkdir()
            (tmp / (wid + ".cmd")).write_text(
                "%s --listen 127.0.0.1:%d --id %s --redis %s --drain-s 5 --work-root %s "
                "--uid-base %d"
                % (exe, self.ports[wid], wid, redis, tmp / ("work-" + wid), 62000 + 1024 * i))
            r = subprocess.run([str(tmp / "restart.sh"), wid], timeout=30)
            assert r.returncode == 0
        for wid in self.ids:
            addr = "127.0.0.1:%d" % self.ports[wid]
            util.wait_for(lambda: (util.try_http_get(addr, "/healthz") or [0])[0] == 200, 15,
                          "%s to serve" % wid)
        self.lb = lb_factory(redis=redis)
        util.wait_for(lambda: sorted(b["id"] for b in self.lb.stats()["backends"]
                                     if b["state"] == "up") == self.ids, 15,
                      "the lb to find both workers")

    def pid(self, wid):
        return int((self.dir / (wid + ".pid")).read_text())

    def backend(self, wid):
        return self.lb.backend(wid)

    def rollout(self, **extra):
        inv = local_inventory(self.dir / "inventory.ini", {
            "wslb_lbs": {"lb-1": {"wslb_lb_admin": self.lb.admin}},
            "wslb_workers": {w: {"wslb_worker_listen": "127.0.0.1:%d" % self.ports[w]}
                             for w in self.ids},
        })
        ev = {"ansible_become": False,
              "wslb_rollout_restart_cmd": "%s {{ inventory_hostname }}" % (self.dir / "restart.sh"),
              "wslb_rollout_bench": os.path.join(BIN_DIR, "wsbench"),
              "wslb_rollout_drain_timeout_s": 10, "wslb_rollout_ready_timeout_s": 20}
        ev.update(extra)
        return playbook("-i", inv, "-e", json.dumps(ev), "rollout.yml")

    def close(self):
        for wid in self.ids:
            try:
                pid = self.pid(wid)
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue
            try:
                util.wait_for(lambda: gone(pid), 15, "%s to exit" % wid)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fleet(tmp_path, redis_server, lb_factory):  # noqa: F811
    if PLAYBOOK is None:
        pytest.skip("ansible-playbook is missing (Debian ansible-core)")
    f = LocalFleet(tmp_path, redis_server, lb_factory)
    try:
        yield f
    finally:
        f.close()


def lb_events(lb, wid):
    """Indexes of the lb's log lines about wid: drained through the admin
    API, gone (the worker left Redis), back (discovered again)."""
    lines = lb.stderr_text().splitlines()

    def where(what):
        rx = re.compile(r"backend %s \(.*\) %s" % (wid, what))
        return [i for i, x in enumerate(lines) if rx.search(x)]
    return where("drained through the admin"), where("removed"), where("discovered")


def test_rollout_restarts_each_worker_in_turn(fleet):
    before = {w: fleet.pid(w) for w in fleet.ids}
    r = fleet.rollout()
    assert r.returncode == 0, r.stdout[-6000:]
    counts = recap(r.stdout)
    for w in fleet.ids:
        assert counts[w]["failed"] == 0, counts
        assert fleet.pid(w) != before[w], "%s was not restarted" % w
        b = fleet.backend(w)
        assert b["state"] == "up" and not b["admin_drain"], b
    # One at a time: w1 drained, gone and back before w2 was drained. (A
    # restarted worker comes back as a new entry, not drained.)
    d1, gone1, back1 = lb_events(fleet.lb, "w1")
    d2, gone2, back2 = lb_events(fleet.lb, "w2")
    assert d1 and gone1 and len(back1) == 2 and d2, fleet.lb.stderr_text()[-4000:]
    assert d1[0] < gone1[0] < back1[1] < d2[0] < gone2[0] < back2[1]
    # The restart went through a drain, not a kill.
    log = (fleet.dir / "w1.log").read_text()
    assert "signal 15: draining" in log and "drained; exiting" in log, log[-3000:]


def test_rollout_leaves_a_failing_worker_drained_and_goes_on(fleet):
    before = {w: fleet.pid(w) for w in fleet.ids}
    os.environ["FAIL_IDS"] = "w1"
    try:
        r = fleet.rollout(wslb_rollout_max_failures=2, wslb_rollout_retries=1)
    finally:
        del os.environ["FAIL_IDS"]
    assert r.returncode != 0, r.stdout[-4000:]
    counts = recap(r.stdout)
    # w1 failed (reported, exit non-zero), w2 was still rolled.
    assert counts["w1"]["rescued"] == 1 and counts["w1"]["failed"] == 1, counts
    assert counts["w2"]["failed"] == 0 and counts["w2"]["rescued"] == 0, counts
    assert re.search(r"w1: Restart the worker \(it drains what still runs\): non-zero return code",
                     r.stdout), r.stdout[-4000:]
    assert "restart of w1 failed" in r.stdout
    # Retried once before giving up.
    assert re.search(r"FAILED - RETRYING: \[w1\]: Restart the worker .*\(1 retries left\)",
                     r.stdout), r.stdout[-4000:]
    b1 = fleet.backend("w1")
    assert b1["admin_drain"], b1  # left drained: it gets no new clients
    assert fleet.pid("w1") == before["w1"]
    assert fleet.pid("w2") != before["w2"]
    b2 = fleet.backend("w2")
    assert b2["state"] == "up" and not b2["admin_drain"], b2


def test_rollout_stops_after_max_failures(fleet):
    before = {w: fleet.pid(w) for w in fleet.ids}
    os.environ["FAIL_IDS"] = "w1"
    try:
        r = fleet.rollout(wslb_rollout_retries=0)
    finally:
        del os.environ["FAIL_IDS"]
    assert r.returncode != 0
    assert "1 worker(s) failed (w1): stopping here" in r.stdout, r.stdout[-4000:]
    # w2 untouched: same process, never drained.
    assert fleet.pid("w2") == before["w2"]
    assert not fleet.backend("w2")["admin_drain"]
    assert lb_events(fleet.lb, "w2")[0] == []
