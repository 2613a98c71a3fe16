"""make install / make uninstall with PREFIX and DESTDIR: the programs
under their installed names, man pages, example configs and units."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO, plain_make_env


def run(*args):
    return subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300, env=plain_make_env(), cwd=REPO)


def files_under(root):
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in fs]
    return sorted(out)


def test_make_install_and_uninstall(tmp_path):
    dest = tmp_path / "root"
    r = run("make", "install", "DESTDIR=%s" % dest, "PREFIX=/opt/wslb")
    assert r.returncode == 0, r.stdout[-3000:]
    got = files_under(dest)
    for f in ("opt/wslb/bin/wslb-lb", "opt/wslb/bin/wslb-worker", "opt/wslb/bin/wslb-bench",
              "opt/wslb/share/wslb/lb.conf", "opt/wslb/share/wslb/worker.conf",
              "opt/wslb/lib/systemd/system/wslb-lb.service",
              "opt/wslb/lib/systemd/system/wslb-worker.service",
              "opt/wslb/share/man/man1/wslb-lb.1", "opt/wslb/share/man/man1/wslb-worker.1"):
        assert f in got, (f, got)
    # Nothing under the build outputs' own names.
    assert not [f for f in got if os.path.basename(f) in ("lb", "worker", "wsbench")], got
    # The installed programs run and know their installed name.
    for prog in ("wslb-lb", "wslb-worker"):
        v = run(str(dest / "opt/wslb/bin" / prog), "--version")
        assert v.returncode == 0 and v.stdout.strip() == "%s 0.1.0" % prog, v.stdout
    # The units point at this PREFIX.
    unit = (dest / "opt/wslb/lib/systemd/system/wslb-worker.service").read_text()
    assert "ExecStart=/opt/wslb/bin/wslb-worker --config /etc/wslb/worker.conf" in unit
    assert "/usr/bin/wslb" not in unit
    # The config is the example, byte for byte.
    with open(os.path.join(REPO, "deploy/conf/lb.conf")) as f:
        assert (dest / "opt/wslb/share/wslb/lb.conf").read_text() == f.read()
    # Man pages render without warnings.
    if shutil.which("man"):
        m = run("man", "--warnings", "-l", str(dest / "opt/wslb/share/man/man1/wslb-worker.1"))
        assert m.returncode == 0 and "wslb-worker - websocket worker" in m.stdout, m.stdout[:500]
        assert "warning" not in m.stdout.lower(), m.stdout[:2000]

    r = run("make", "uninstall", "DESTDIR=%s" % dest, "PREFIX=/opt/wslb")
    assert r.returncode == 0, r.stdout[-3000:]
    assert files_under(dest) == []


def test_installed_names(tmp_path):
    # Whatever programs are built get installed: wslbctl keeps its name.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for prog in ("lb", "worker", "wsbench", "wslbctl"):
        p = bindir / prog
        p.write_text("#!/bin/sh\necho \"Usage: $(basename $0) [OPTIONS]\"\n")
        p.chmod(0o755)
    (bindir / "asan").mkdir()  # a build variant's directory is not a program
    man = tmp_path / "man"
    r = run(os.path.join(REPO, "scripts/mkman.sh"), str(bindir), str(man), "0.1.0")
    assert r.returncode == 0, r.stdout
    r = run(os.path.join(REPO, "scripts/install.sh"), str(bindir), str(tmp_path / "root"), "/usr",
            str(man))
    assert r.returncode == 0, r.stdout
    got = sorted(os.listdir(tmp_path / "root/usr/bin"))
    assert got == ["wslb-bench", "wslb-lb", "wslb-worker", "wslbctl"], got
    assert sorted(os.listdir(tmp_path / "root/usr/share/man/man1")) == [
        "wslb-bench.1", "wslb-lb.1", "wslb-worker.1", "wslbctl.1"]
    page = (tmp_path / "root/usr/share/man/man1/wslbctl.1").read_text()
    assert "wslbctl \\- see and steer a wslb fleet" in page
    assert "Usage: wslbctl [OPTIONS]" in page


def test_install_without_a_build_says_so(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = run(os.path.join(REPO, "scripts/install.sh"), str(empty), str(tmp_path / "root"), "/usr",
            str(tmp_path / "man"))
    assert r.returncode == 1 and "nothing built" in r.stdout, r.stdout
