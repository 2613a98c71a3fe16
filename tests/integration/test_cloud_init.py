"""deploy/cloud-init/worker.yaml: valid cloud-config, and its scripts run
against a stand-in for the instance metadata service (IMDSv2): the worker
configures itself from it, registers in Redis, and on scale-in drains,
leaves Redis and only then completes the lifecycle action."""

import http.server
import os
import shutil
import signal
import subprocess
import threading

import pytest
import yaml

import util
from conftest import REPO, binary

USER_DATA = os.path.join(REPO, "deploy", "cloud-init", "worker.yaml")
INSTANCE_ID = "i-0123456789abcdef0"
# Modules this file may use (cloud-init's names).
KNOWN = {"write_files", "package_update", "packages", "runcmd"}


def user_data():
    with open(USER_DATA) as f:
        text = f.read()
    return text, yaml.safe_load(text)


def files():
    return {f["path"]: f for f in user_data()[1]["write_files"]}


def test_is_cloud_config():
    text, data = user_data()
    assert text.startswith("#cloud-config\n")
    assert isinstance(data, dict) and set(data) <= KNOWN, sorted(data)
    for f in data["write_files"]:
        assert set(f) <= {"path", "content", "permissions", "owner", "encoding"}, f
        assert f["path"].startswith("/") and isinstance(f["content"], str)
        assert isinstance(f["permissions"], str) and int(f["permissions"], 8) in (0o644, 0o755)
    assert all(isinstance(c, str) for c in data["runcmd"])
    assert "wslb-worker.service" in data["runcmd"][-1] and "enable --now" in data["runcmd"][-1]


@pytest.mark.skipif(shutil.which("cloud-init") is None,
                    reason="cloud-init is not installed; the YAML checks above stand in")
def test_cloud_init_schema():
    r = subprocess.run(["cloud-init", "schema", "--config-file", USER_DATA],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, r.stdout


def test_scripts_parse():
    scripts = [f["content"] for f in files().values() if f["content"].startswith("#!/bin/sh")]
    scripts += user_data()[1]["runcmd"]
    assert len(scripts) >= 5
    for s in scripts:
        r = subprocess.run(["sh", "-n"], input=s, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        assert r.returncode == 0, (r.stdout, s[:200])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing")
def test_scale_in_unit_verifies(tmp_path):
    f = files()
    script = tmp_path / "wslb-scale-in"
    script.write_text(f["/usr/local/sbin/wslb-scale-in"]["content"])
    script.chmod(0o755)
    unit = tmp_path / "wslb-scale-in.service"
    unit.write_text(f["/etc/systemd/system/wslb-scale-in.service"]["content"]
                    .replace("/usr/local/sbin/wslb-scale-in", str(script)))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout


class FakeImds:
    """IMDSv2 on 127.0.0.1: a token from PUT /latest/api/token, then GETs
    of /latest/meta-data/... that carry it; anything else is 401."""

    def __init__(self, values, lifecycle):
        self.values = values
        self.lifecycle = list(lifecycle)  # target-lifecycle-state answers, last one repeats
        self.tokens_issued = 0
        self.refused = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, body):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                if self.path == "/latest/api/token" and \
                        self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    fake.tokens_issued += 1
                    self.reply(200, "tok-%d" % fake.tokens_issued)
                else:
                    self.reply(400, "bad token request")

            def do_GET(self):
                tok = self.headers.get("X-aws-ec2-metadata-token", "")
                if not tok.startswith("tok-"):
                    fake.refused += 1
                    self.reply(401, "")
                    return
                key = self.path[len("/latest/meta-data/"):]
                if key == "autoscaling/target-lifecycle-state":
                    state = fake.lifecycle[0]
                    if len(fake.lifecycle) > 1:
                        fake.lifecycle.pop(0)
                    self.reply(200, state)
                elif self.path.startswith("/latest/meta-data/") and key in fake.values:
                    self.reply(200, fake.values[key])
                else:
                    self.reply(404, "")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def install_scripts(tmp_path):
    """The user-data's scripts in tmp_path/sbin, as cloud-init writes them."""
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    for path, f in files().items():
        if path.startswith("/usr/local/sbin/"):
            p = sbin / os.path.basename(path)
            p.write_text(f["content"])
            p.chmod(int(f["permissions"], 8))
    return sbin


def test_worker_configures_itself_and_drains_on_scale_in(tmp_path, redis_server):
    sbin = install_scripts(tmp_path)
    port = util.free_port()
    fleet = tmp_path / "fleet.env"
    fleet.write_text(files()["/etc/wslb/fleet.env"]["content"]
                     .replace("WSLB_REDIS=10.0.0.10:6379", "WSLB_REDIS=" + redis_server)
                     .replace("WSLB_PORT=9001", "WSLB_PORT=%d" % port)
                     .replace("WSLB_DRAIN_S=30", "WSLB_DRAIN_S=5"))
    imds = FakeImds({"instance-id": INSTANCE_ID, "local-ipv4": "127.0.0.1",
                     "placement/region": "eu-west-1"},
                    ["InService", "InService", "Terminated"])
    conf = tmp_path / "worker.conf"
    log = tmp_path / "calls.log"
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    # `systemctl stop` as systemd does it: SIGTERM, then wait for the exit.
    (fakebin / "systemctl").write_text(
        '#!/bin/sh\necho "systemctl $*" >>%s\nkill -TERM "$WORKER_PID"\n'
        'tail --pid="$WORKER_PID" -f /dev/null\necho "systemctl done" >>%s\n' % (log, log))
    (fakebin / "aws").write_text('#!/bin/sh\necho "aws $*" >>%s\n' % log)
    for p in fakebin.iterdir():
        p.chmod(0o755)
    env = dict(os.environ, WSLB_IMDS=imds.url, WSLB_FLEET_ENV=str(fleet),
               WSLB_WORKER_CONF=str(conf), WSLB_DROPIN_DIR=str(tmp_path / "dropin"),
               WSLB_IMDS_CMD=str(sbin / "wslb-imds"), WSLB_POLL_S="0.1",
               PATH="%s:%s" % (fakebin, os.environ["PATH"]))
    worker = scale_in = None
    try:
        r = subprocess.run([str(sbin / "wslb-worker-config")], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        assert r.returncode == 0, r.stdout
        text = conf.read_text()
        for line in ("id = " + INSTANCE_ID, "listen = 127.0.0.1:%d" % port,
                     "advertise = 127.0.0.1:%d" % port, "redis = " + redis_server,
                     "drain-s = 5"):
            assert line in text.splitlines(), (line, text)
        assert (tmp_path / "dropin/fleet.conf").read_text() == "[Service]\nTimeoutStopSec=20\n"
        assert imds.tokens_issued >= 2 and imds.refused == 0

        worker = subprocess.Popen([binary("worker"), "--config", str(conf),
                                   "--work-root", str(tmp_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        rc = util.redis_client(redis_server)
        util.wait_for(lambda: rc.get("wslb:worker:" + INSTANCE_ID), 15,
                      "the worker to register in Redis")
        assert INSTANCE_ID in rc.smembers("wslb:workers")

        env["WORKER_PID"] = str(worker.pid)
        scale_in = subprocess.Popen([str(sbin / "wslb-scale-in")], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # The worker drains and exits cleanly (reaped here, as systemd would).
        assert worker.wait(20) == 0, worker.stderr.read().decode()[-3000:]
        out, _ = scale_in.communicate(timeout=20)
        assert scale_in.returncode == 0, out
        calls = log.read_text().splitlines()
        assert calls[0] == "systemctl stop wslb-worker.service", calls
        assert calls[1] == "systemctl done", calls
        assert calls[2] == ("aws autoscaling complete-lifecycle-action --region eu-west-1 "
                            "--auto-scaling-group-name wslb-workers --lifecycle-hook-name "
                            "wslb-worker-drain --instance-id %s --lifecycle-action-result "
                            "CONTINUE" % INSTANCE_ID), calls
        # It left Redis before the group was told to go on.
        assert rc.get("wslb:worker:" + INSTANCE_ID) is None
        err = worker.stderr.read().decode()
        assert "draining" in err and "drained; exiting" in err, err[-3000:]
    finally:
        for p in (scale_in, worker):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(10)
        imds.close()


def test_config_refuses_odd_metadata(tmp_path):
    sbin = install_scripts(tmp_path)
    fleet = tmp_path / "fleet.env"
    fleet.write_text(files()["/etc/wslb/fleet.env"]["content"])
    imds = FakeImds({"instance-id": "i-1; rm -rf /", "local-ipv4": "10.0.0.5"}, ["InService"])
    try:
        r = subprocess.run([str(sbin / "wslb-worker-config")],
                           env=dict(os.environ, WSLB_IMDS=imds.url, WSLB_FLEET_ENV=str(fleet),
                                    WSLB_WORKER_CONF=str(tmp_path / "worker.conf"),
                                    WSLB_DROPIN_DIR=str(tmp_path / "dropin"),
                                    WSLB_IMDS_CMD=str(sbin / "wslb-imds")),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    finally:
        imds.close()
    assert r.returncode == 1, r.stdout
    assert "odd instance id 'i-1; rm -rf /'" in r.stdout
    assert not (tmp_path / "worker.conf").exists()
