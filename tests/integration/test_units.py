"""The systemd units (deploy/systemd/): systemd-analyze accepts them, their
hardening does not regress, and the settings a drain depends on are there.
systemd need not be running: systemd-analyze works offline."""

import configparser
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN_DIR, REPO, binary

UNITS = os.path.join(REPO, "deploy", "systemd")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze is missing (Debian package systemd)")


def unit_text(name):
    with open(os.path.join(UNITS, name)) as f:
        return f.read()


def unit(name):
    p = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    p.optionxform = str  # keys are case-sensitive
    p.read_string(unit_text(name))
    return p


def runnable_copies(tmp_path):
    """Copies of both units whose ExecStart names the binaries just built
    (verify checks that the command exists)."""
    paths = []
    for name, prog in (("wslb-lb.service", "lb"), ("wslb-worker.service", "worker")):
        text = unit_text(name).replace("/usr/bin/wslb-" + prog, os.path.join(BIN_DIR, prog))
        p = tmp_path / name
        p.write_text(text)
        paths.append(str(p))
    return paths


@needs_analyze
def test_units_verify_cleanly(tmp_path):
    binary("lb")
    binary("worker")
    paths = runnable_copies(tmp_path)
    # The man pages are checked with the package; here only the units.
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no"] + paths,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path):
    # The check above can fail: a typo in a key is reported.
    paths = runnable_copies(tmp_path)
    with open(paths[0]) as f:
        text = f.read()
    with open(paths[0], "w") as f:
        f.write(text.replace("KillSignal=", "KilSignal="))
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", paths[0]],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert "Unknown key" in r.stdout, r.stdout


@needs_analyze
@pytest.mark.parametrize("name,most", [("wslb-lb.service", 2.0), ("wslb-worker.service", 4.5)])
def test_hardening_does_not_regress(tmp_path, name, most):
    path = [p for p in runnable_copies(tmp_path) if p.endswith(name)][0]
    r = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    m = re.search(r"Overall exposure level for %s: (\d+\.\d+)" % re.escape(name), r.stdout)
    assert m, r.stdout[-2000:]
    assert float(m.group(1)) <= most, r.stdout


def help_default(prog, flag):
    out = subprocess.run([binary(prog), "--help"], stdout=subprocess.PIPE, text=True,
                         timeout=10, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("  --%s " % flag))
    return int(re.search(r"\((\d+)\)", line).group(1))


def seconds(v):
    m = re.fullmatch(r"(\d+)(s|min)?", v)
    assert m, v
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def test_worker_unit_lets_a_drain_finish():
    s = unit("wslb-worker.service")["Service"]
    assert s["ExecStart"] == "/usr/bin/wslb-worker --config /etc/wslb/worker.conf"
    assert s["KillSignal"] == "SIGTERM"
    # Only the worker gets SIGTERM; its evaluations must be left to finish.
    assert s["KillMode"] == "mixed"
    assert s["Delegate"] == "yes"
    drain = help_default("worker", "drain-s")
    assert seconds(s["TimeoutStopSec"]) >= drain + 10, (s["TimeoutStopSec"], drain)
    assert int(s["LimitNOFILE"]) >= 65536
    assert s["Restart"] == "on-failure" and s["RestartPreventExitStatus"] == "2"


def test_worker_unit_keeps_out_what_breaks_the_sandbox():
    s = unit("wslb-worker.service")["Service"]
    for key in ("ProtectControlGroups", "ProtectHostname", "RestrictNamespaces",
                "MemoryDenyWriteExecute", "PrivateUsers", "PrivateNetwork"):
        assert key not in s, key
    caps = set(s["CapabilityBoundingSet"].split())
    assert {"CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER",
            "CAP_DAC_OVERRIDE", "CAP_KILL"} == caps
    # Each option left out is explained in the unit.
    text = unit_text("wslb-worker.service")
    for key in ("ProtectControlGroups", "ProtectHostname", "RestrictNamespaces",
                "MemoryDenyWriteExecute", "SystemCallFilter=@system-service"):
        assert re.search(r"^#\s+%s" % re.escape(key), text, re.M), key


def test_lb_unit_reloads_and_stops_gracefully():
    s = unit("wslb-lb.service")["Service"]
    assert s["ExecStart"] == ("/usr/bin/wslb-lb --config /etc/wslb/lb.conf "
                              "--control-socket /run/wslb-lb/control.sock")
    # A reload checks the configuration, then the lb re-executes itself with
    # --takeover (SIGUSR2); the new process reports itself with MAINPID=.
    text = unit_text("wslb-lb.service")
    assert "ExecReload=/usr/bin/wslb-lb --config /etc/wslb/lb.conf --check\n" in text
    assert s["ExecReload"] == "/bin/kill -USR2 $MAINPID"
    assert s["Type"] == "notify" and s["NotifyAccess"] == "all"
    assert s["KillSignal"] == "SIGTERM"
    grace = help_default("lb", "grace-s")
    assert seconds(s["TimeoutStopSec"]) > grace, (s["TimeoutStopSec"], grace)
    assert int(s["LimitNOFILE"]) >= 65536
    assert s["Restart"] == "on-failure" and s["RestartPreventExitStatus"] == "2"
    assert s["User"] == "wslb"
    assert s["AmbientCapabilities"] == s["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"


@pytest.mark.parametrize("name", ["wslb-lb.service", "wslb-worker.service"])
def test_units_are_enabled_for_boot(name):
    assert unit(name)["Install"]["WantedBy"] == "multi-user.target"
