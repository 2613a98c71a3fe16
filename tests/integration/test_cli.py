"""Both daemons' command lines as a new user meets them: --help and -h, the
defaults the help shows, and options that would be silently ignored."""

import re
import subprocess

import pytest

import util
from conftest import binary


def run(prog, *args, timeout=10):
    return subprocess.run([binary(prog)] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("prog", ["lb", "worker"])
def test_help_is_honest(prog):
    r = run(prog, "--help")
    assert r.returncode == 0, r
    assert r.stderr == "", r.stderr
    # -h is --help.
    short = run(prog, "-h")
    assert short.returncode == 0 and short.stdout == r.stdout, short
    lines = r.stdout.splitlines()
    for i, line in enumerate(lines):
        assert "repeatable (repeatable)" not in line, line
        # A default the program computes after parsing is "auto", never
        # the placeholder number; every default shown lies inside the bounds.
        m = re.search(r"\(default: ([^)]*)\)(?: \[(-?\d+)\.\.(-?\d+)\])?", line)
        if m and m.group(2) is not None:
            if m.group(1) != "auto":
                assert int(m.group(2)) <= int(m.group(1)) <= int(m.group(3)), line
    assert "(default: -1)" not in r.stdout
    assert "also -h" in r.stdout


def test_help_shows_computed_defaults_as_auto():
    worker = run("worker", "--help").stdout
    assert re.search(r"--queue N .*\(default: auto\) \[0\.\.100000\]", worker), worker
    assert re.search(r"--max-evals N .*\(default: auto\) \[1\.\.1024\]", worker), worker
    lb = run("lb", "--help").stdout
    line = next(x for x in lb.splitlines() if "--max-head" in x)
    assert "(8192)" in line and "(default: 0)" not in line, line


@pytest.mark.parametrize("flag", ["--cert", "--key"])
def test_lb_refuses_certificate_without_tls_listener(tmp_path, flag):
    pem = tmp_path / "x.pem"
    pem.write_text("not used\n")
    port = util.free_port()
    r = run("lb", "--listen", "127.0.0.1:%d" % port, "--admin", "", flag, str(pem))
    assert r.returncode == 2, r
    assert "%s given without --tls-listen" % flag in r.stderr, r.stderr
    # It refused before listening: nothing was served.
    with pytest.raises(OSError):
        util.http_get("127.0.0.1:%d" % port, "/", timeout=1.0)


def test_lb_refuses_cert_without_tls_listener_in_config_file(tmp_path):
    conf = tmp_path / "lb.conf"
    conf.write_text("listen = 127.0.0.1:%d\nadmin =\ncert = /etc/ssl/x.pem\n" % util.free_port())
    r = run("lb", "--config", str(conf))
    assert r.returncode == 2, r
    assert "--cert given without --tls-listen" in r.stderr, r.stderr
