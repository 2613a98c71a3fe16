"""The example configs (deploy/conf/*.conf, installed as /etc/wslb/*.conf):
every option of each daemon is there, and the daemons start with them as
shipped and with every commented default switched on."""

import os
import re
import socket
import subprocess

import pytest

import util
from conftest import REPO, binary
from lbutil import lb_factory, make_cert  # noqa: F401

CONF = os.path.join(REPO, "deploy", "conf")
BUILTIN = {"config", "help", "version"}


def help_options(prog):
    out = subprocess.run([binary(prog), "--help"], stdout=subprocess.PIPE, text=True,
                         timeout=10, check=True).stdout
    return [m.group(1) for m in re.finditer(r"^  --([a-z0-9-]+)", out, re.M)
            if m.group(1) not in BUILTIN]


def conf_lines(name):
    with open(os.path.join(CONF, name)) as f:
        return f.read().splitlines()


def conf_keys(name):
    """Option names set or shown commented out (`#name = value`)."""
    keys = set()
    for line in conf_lines(name):
        m = re.match(r"^#?([a-z][a-z0-9-]*) = ", line)
        if m:
            keys.add(m.group(1))
    return keys


@pytest.mark.parametrize("prog", ["lb", "worker"])
def test_example_config_lists_every_option(prog):
    opts = help_options(prog)
    assert len(opts) > 10, opts
    keys = conf_keys(prog + ".conf")
    missing = [o for o in opts if o not in keys]
    assert not missing, "%s.conf lacks %s" % (prog, missing)
    unknown = sorted(keys - set(opts))
    assert not unknown, "%s.conf shows options %s has not" % (prog, unknown)


@pytest.mark.parametrize("prog", ["lb", "worker"])
def test_example_config_is_all_comments(prog):
    # As shipped it changes nothing: the package's defaults are the daemon's.
    for line in conf_lines(prog + ".conf"):
        assert line == "" or line.startswith("#"), line


# Alternatives to `redis` (a daemon takes one or the other): left off when
# every other line is switched on.
SENTINEL_KEYS = ("redis-sentinel", "redis-master", "redis-sentinel-user",
                 "redis-sentinel-password-file")


def uncommented(name, replace, tmp_path, skip=SENTINEL_KEYS):
    """The example with every `#name = value` line switched on but those in
    skip; values of the options in replace are substituted (addresses,
    files)."""
    out = []
    for line in conf_lines(name):
        m = re.match(r"^#([a-z][a-z0-9-]*) = (.*)$", line)
        if m and m.group(1) not in skip:
            key = m.group(1)
            out.append("%s = %s" % (key, replace.get(key, m.group(2))))
    path = tmp_path / ("all-" + name)
    path.write_text("\n".join(out) + "\n")
    return str(path)


def test_worker_starts_with_example_config(worker_factory):
    w = worker_factory(args=["--config", os.path.join(CONF, "worker.conf")])
    w.healthy_and_serving()


def test_worker_starts_with_every_default_switched_on(worker_factory, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    runtimes = tmp_path / "runtimes.conf"
    runtimes.write_text("[python3]\nfile = main.py\nrun = /usr/bin/python3 -I main.py\n")
    work = tmp_path / "work"
    work.mkdir()
    path = uncommented("worker.conf", {
        "redis": "127.0.0.1:%d" % util.free_port(),  # nothing there: it keeps trying
        "runtimes": str(runtimes),
        "work-root": str(work),
        "upstream-secret-file": str(secret),
        "redis-password-file": str(secret),
        "max-evals": "3",
    }, tmp_path)
    w = worker_factory(args=["--config", path])
    # The file was read: its values show in the start-up line.
    util.wait_for(lambda: "max-evals 3" in w.stderr_text(), 10, "the start-up line")
    assert "1 runtimes" in w.stderr_text()
    status, _, _ = util.http_get(w.addr, "/healthz")
    assert status == 200


def test_lb_starts_with_example_config(lb_factory):  # noqa: F811
    lb_factory(args=["--config", os.path.join(CONF, "lb.conf")])


def test_lb_starts_with_every_default_switched_on(lb_factory, tmp_path):  # noqa: F811
    cert, key = make_cert(str(tmp_path))
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>t</title>\n")
    tls = "127.0.0.1:%d" % util.free_port()
    path = uncommented("lb.conf", {
        "listen": "127.0.0.1:%d" % util.free_port(),
        "tls-listen": tls,
        "cert": cert,
        "key": key,
        "backend": "w1=127.0.0.1:%d" % util.free_port(),
        "redis": "127.0.0.1:%d" % util.free_port(),
        "admin": "127.0.0.1:%d" % util.free_port(),  # lb_factory's --admin wins
        "admin-token-file": str(token),
        "upstream-secret-file": str(secret),
        "redis-password-file": str(secret),
        "static": str(web),
        "control-socket": str(tmp_path / "control.sock"),
    }, tmp_path, skip=SENTINEL_KEYS + ("takeover",))  # a takeover needs a running lb
    lb = lb_factory(args=["--config", path])
    util.wait_for(lambda: "limits conns=0" in lb.stderr_text(), 10, "the start-up line")
    assert "upstream secret set" in lb.stderr_text()
    # The TLS listener from the file is up.
    with socket.create_connection(util.split_addr(tls), timeout=5):
        pass
