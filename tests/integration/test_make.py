"""The Makefile's handling of Debian packages: plain `make` only checks,
`make test`/`make run` install, and with -j nothing compiles before the
packages are in place. Runs the real Makefile in a scratch copy of the tree
with a stand-in for scripts/deps.sh and for the compiler, so nothing is
installed or built."""

import os
import shutil
import stat
import subprocess

import pytest

from conftest import REPO, plain_make_env


def write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def tree(tmp_path):
    """A copy of the Makefile next to the sources, whose deps.sh logs its
    arguments and takes a moment to 'install', and a compiler that records
    whether it ran before the packages were there."""
    shutil.copy(os.path.join(REPO, "Makefile"), tmp_path / "Makefile")
    # Every source directory (a new program's too), not the build outputs.
    for d in sorted(os.listdir(REPO)):
        if d not in ("scripts", "build", "bin") and not d.startswith(".") and \
                os.path.isdir(os.path.join(REPO, d)):
            os.symlink(os.path.join(REPO, d), tmp_path / d)
    (tmp_path / "scripts").mkdir()
    write_exe(tmp_path / "scripts" / "deps.sh", """#!/bin/sh
echo "$*" >>deps.log
sleep 1
touch deps.done
""")
    write_exe(tmp_path / "fakecc", """#!/bin/sh
[ -e deps.done ] || echo "compiled before the packages were there: $*" >>race.log
exit 1
""")
    return tmp_path


def make(tree, *args):
    return subprocess.run(["make", "-C", str(tree), "CC=%s/fakecc" % tree] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120, env=plain_make_env())


def log(tree, name):
    p = tree / name
    return p.read_text().splitlines() if p.exists() else []


def test_plain_make_only_checks(tree):
    make(tree)
    assert log(tree, "deps.log") == ["check build"]


@pytest.mark.parametrize("goal,groups", [("unit-asan", "build test"), ("test", "build test"),
                                         ("asan", "build")])
def test_parallel_build_waits_for_packages(tree, goal, groups):
    r = make(tree, "-j2", goal)
    assert "fakecc" in r.stdout, "nothing was compiled: %s" % r.stdout[-2000:]
    assert log(tree, "race.log") == [], r.stdout[-2000:]
    calls = log(tree, "deps.log")
    assert calls and calls[0].endswith(groups), (calls, r.stdout[-2000:])
    if goal != "asan":
        assert calls[0] == "install " + groups


def test_run_installs_what_it_needs(tree):
    r = subprocess.run(["make", "-n", "-C", str(tree), "run"], stdout=subprocess.PIPE, text=True,
                       timeout=60, env=plain_make_env())
    assert "scripts/deps.sh install build run" in r.stdout, r.stdout


@pytest.fixture
def fake_apt(tmp_path):
    """PATH with a dpkg-query that knows no package and an apt-get that
    logs its arguments."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    write_exe(bindir / "dpkg-query", "#!/bin/sh\nexit 1\n")
    write_exe(bindir / "apt-get", '#!/bin/sh\necho "$*" >>"%s"\n' % (tmp_path / "apt.log"))
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]))
    return env, tmp_path / "apt.log"


def test_deps_check_never_installs(fake_apt):
    env, apt_log = fake_apt
    r = subprocess.run([os.path.join(REPO, "scripts", "deps.sh"), "check", "build"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 1
    assert "apt-get install -y --no-install-recommends build-essential" in r.stderr, r.stderr
    assert "libev-dev" in r.stderr and "redis-server" not in r.stderr, r.stderr
    assert not apt_log.exists(), "check ran apt-get"


def test_deps_install_as_root_installs_the_group(fake_apt):
    if os.geteuid() != 0:
        pytest.skip("installing needs root")
    env, apt_log = fake_apt
    r = subprocess.run([os.path.join(REPO, "scripts", "deps.sh"), "install", "run"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    calls = apt_log.read_text().splitlines()
    assert calls[0] == "update -qq", calls
    assert calls[1].startswith("install -y --no-install-recommends"), calls
    for p in ("libev-dev", "redis-server", "python3-websockets"):
        assert p in calls[1].split(), calls
    assert "haproxy" not in calls[1], calls


def test_deps_all_covers_bench_and_deployment_tools(fake_apt):
    env, _ = fake_apt
    r = subprocess.run([os.path.join(REPO, "scripts", "deps.sh"), "check", "all"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    for p in ("haproxy", "nginx", "gnuplot-nox", "bubblewrap", "ansible-core", "ansible-lint",
              "lintian", "dpkg-dev", "systemd", "libcmocka-dev", "clang"):
        assert p in r.stderr.split(), (p, r.stderr)
