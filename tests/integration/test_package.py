"""make deb: a Debian package lintian accepts, with the runtime libraries
in Depends, the configs as conffiles and programs that run from a scratch
root (dpkg -x: nothing is installed on this machine)."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, plain_make_env

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None,
                                reason="dpkg-deb is missing (a Debian system is needed)")


def run(*args, **kw):
    kw.setdefault("timeout", 600)
    kw.setdefault("env", plain_make_env())
    return subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=REPO, **kw)


@pytest.fixture(scope="module")
def deb():
    r = run("make", "deb")
    assert r.returncode == 0, r.stdout[-4000:]
    debs = [x for x in r.stdout.splitlines() if x.endswith(".deb")]
    assert debs and os.path.exists(debs[-1]), r.stdout[-2000:]
    return debs[-1]


def field(info, name):
    m = re.search(r"^ %s: (.*)$" % re.escape(name), info, re.M)
    assert m, "%s missing from:\n%s" % (name, info)
    return m.group(1)


def test_control_fields(deb):
    info = run("dpkg-deb", "-I", deb).stdout
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert field(info, "Package") == "wslb"
    assert field(info, "Version") == "0.1.0-1"
    assert field(info, "Architecture") == arch
    assert re.fullmatch(r".+ <[^@ ]+@[^> ]+>", field(info, "Maintainer"))
    assert int(field(info, "Installed-Size")) > 100
    depends = [d.strip() for d in field(info, "Depends").split(",")]
    names = {d.split()[0] for d in depends}
    for lib in ("libev4", "libssl3", "libhttp-parser2.9", "libhiredis0.14", "libseccomp2",
                "libjansson4", "libc6", "adduser"):
        assert lib in names, (lib, depends)
    assert not [d for d in names if d.endswith("-dev")], depends
    assert field(info, "Section") == "net"
    assert "conffiles" in info and "postinst" in info


def test_contents(deb):
    listing = run("dpkg-deb", "-c", deb).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for p in ("/usr/bin/wslb-lb", "/usr/bin/wslb-worker", "/usr/bin/wslb-bench",
              "/etc/wslb/lb.conf", "/etc/wslb/worker.conf",
              "/lib/systemd/system/wslb-lb.service", "/lib/systemd/system/wslb-worker.service",
              "/usr/share/doc/wslb/copyright", "/usr/share/doc/wslb/changelog.Debian.gz",
              "/usr/share/man/man1/wslb-lb.1.gz", "/usr/share/man/man1/wslb-worker.1.gz"):
        assert p in paths, (p, sorted(paths))
    assert "/usr/bin/lb" not in paths and "/usr/bin/worker" not in paths
    # Owned by root, whoever built it.
    for line in listing.splitlines():
        assert line.split()[1] == "root/root", line
    conffiles = run("dpkg-deb", "-f", deb, "Package").stdout  # the archive opens
    assert conffiles.strip() == "wslb"
    ctl = subprocess.run(["dpkg-deb", "--ctrl-tarfile", deb], stdout=subprocess.PIPE, timeout=60)
    listed = subprocess.run(["tar", "-xOf", "-", "./conffiles"], input=ctl.stdout,
                            stdout=subprocess.PIPE, timeout=60).stdout.decode()
    assert listed.split() == ["/etc/wslb/lb.conf", "/etc/wslb/worker.conf"]


def test_programs_run_from_a_scratch_root(deb, tmp_path):
    root = tmp_path / "root"
    r = run("dpkg", "-x", deb, str(root))
    assert r.returncode == 0, r.stdout
    for prog in ("wslb-worker", "wslb-lb"):
        exe = root / "usr/bin" / prog
        v = run(str(exe), "--version")
        assert v.returncode == 0 and v.stdout.strip() == "%s 0.1.0" % prog, v.stdout
        # Stripped, and built with Debian's hardening (full RELRO).
        sections = run("readelf", "-S", str(exe)).stdout
        assert ".symtab" not in sections, prog
        dyn = run("readelf", "-d", "-l", str(exe)).stdout
        assert "GNU_RELRO" in dyn and "BIND_NOW" in dyn, prog
        syms = run("readelf", "-W", "--dyn-syms", str(exe)).stdout
        assert "__stack_chk_fail" in syms and "_chk@" in syms.replace("__stack_chk_fail@", ""), prog
    # The packaged configs are the examples; the unit reads them.
    with open(os.path.join(REPO, "deploy/conf/worker.conf")) as f:
        assert (root / "etc/wslb/worker.conf").read_text() == f.read()
    unit = (root / "lib/systemd/system/wslb-worker.service").read_text()
    assert "ExecStart=/usr/bin/wslb-worker --config /etc/wslb/worker.conf" in unit


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is missing")
def test_lintian_is_clean(deb):
    # Errors and warnings both fail; the overrides in deploy/debian say why.
    r = run("lintian", "--fail-on", "error,warning", deb)
    tags = [x for x in r.stdout.splitlines() if re.match(r"^[EW]: ", x)]
    assert r.returncode == 0 and not tags, r.stdout


def test_same_tree_same_package(deb, tmp_path):
    first = tmp_path / "first.deb"
    shutil.copy(deb, first)
    r = run("make", "deb")
    assert r.returncode == 0, r.stdout[-2000:]
    with open(first, "rb") as a, open(deb, "rb") as b:
        assert a.read() == b.read(), "make deb is not reproducible"
