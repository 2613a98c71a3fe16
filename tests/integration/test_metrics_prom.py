"""Both daemons' /metrics pass `promtool check metrics` (the Prometheus
project's own linter: format, units in names, _total on counters) with the
legacy names off, and carry the same figures under the legacy names while
--metrics-legacy is on."""

import re
import shutil
import subprocess

import pytest

import util
from lbutil import lb_factory  # noqa: F401

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool missing: apt-get install prometheus "
                                           "(make deps does)")


def promtool_check(text):
    """(returncode, complaints) of promtool check metrics on text."""
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode().strip()


def scrape(addr):
    st, _, body = util.http_get(addr, "/metrics")
    assert st == 200
    return body.decode()


def families(text):
    """{name: type} from the TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def check_conventions(text):
    """What promtool does not check but the conventions ask for."""
    fam = families(text)
    assert fam, text[:500]
    for name, typ in fam.items():
        assert name.startswith("wslb_"), name  # one application prefix
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        if typ == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
        if typ == "histogram":
            assert name.endswith("_seconds") or name.endswith("_bytes"), name
        assert not re.search(r"_(ms|us|ns|kb|mb|sec|millis\w*)(_|$)", name), name
    for labels in re.findall(r"^[a-z_0-9]+\{([^}]*)\}", text, re.M):
        for lname in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', labels):
            assert re.fullmatch(r"[a-z][a-z0-9_]*", lname) and not lname.startswith("__"), lname


@pytest.fixture
def cluster(worker_factory, lb_factory):
    def start(legacy):
        flag = ["--metrics-legacy=" + legacy]
        w = worker_factory(args=flag, id="m1")
        lb = lb_factory(args=flag, backend="m1=" + w.addr)
        # Traffic through the lb, so histograms, verdicts and byte counts
        # have samples.
        r = util.run_eval(lb.url("/eval"), "python3", "print(6*7)")
        assert r.verdict == "ok", r
        return w, lb
    return start


@needs_promtool
def test_promtool_accepts_both_daemons(cluster):
    w, lb = cluster("no")
    for who, addr in (("worker", w.addr), ("lb", lb.admin)):
        text = scrape(addr)
        rc, out = promtool_check(text)
        assert rc == 0 and out == "", "%s /metrics: promtool says:\n%s" % (who, out)
        check_conventions(text)
        # No legacy name is left.
        assert "\nworker_" not in text and "_ms" not in text, who
    m = util.get_metrics(w.addr)
    assert util.metric_labelled(m, "wslb_worker_verdicts_total", 'verdict="ok"') == 1
    assert util.metric_sum(m, "wslb_worker_sandbox_start_duration_seconds_count") >= 1
    # Seconds, not milliseconds: a process starts in well under 10 s.
    assert 0 < util.metric_sum(m, "wslb_worker_sandbox_start_duration_seconds_sum") < 10
    ml = util.get_metrics(lb.admin)
    assert util.metric_sum(ml, "wslb_lb_handshake_duration_seconds_count") == 1
    assert 0 < util.metric_sum(ml, "wslb_lb_handshake_duration_seconds_sum") < 10
    assert util.metric_sum(ml, "wslb_lb_received_bytes_total") > 0


@needs_promtool
def test_legacy_names_carry_the_same_figures(cluster):
    w, lb = cluster("yes")
    for who, addr in (("worker", w.addr), ("lb", lb.admin)):
        text = scrape(addr)
        rc, out = promtool_check(text)
        # promtool parses the whole text; its only complaints are the legacy
        # names' abbreviated units (documented in the README).
        complaints = [line for line in out.splitlines() if line]
        for line in complaints:
            assert line.endswith("metric names should not contain abbreviated units"), line
            assert line.split()[0] in ("worker_sandbox_start_ms", "worker_evaluation_wall_ms",
                                       "worker_slot_reset_ms", "wslb_lb_handshake_ms"), line
        assert complaints, "%s: the legacy names are expected to be linted" % who
    m = util.get_metrics(w.addr)
    for new, old in (("wslb_worker_evaluations_total", "worker_evaluations_total"),
                     ("wslb_worker_websockets_total", "worker_websockets_total"),
                     ("wslb_worker_sandbox_start_duration_seconds_count",
                      "worker_sandbox_start_ms_count")):
        assert util.metric_sum(m, new) == util.metric_sum(m, old) > 0, (new, old)
    assert util.metric_sum(m, "worker_sandbox_start_ms_sum") == pytest.approx(
        1000 * util.metric_sum(m, "wslb_worker_sandbox_start_duration_seconds_sum"))
    assert util.get_verdict(m, "ok") == 1  # the tests' helper reads the legacy name
    ml = util.get_metrics(lb.admin)
    assert util.metric_sum(ml, "wslb_lb_bytes_in_total") == \
        util.metric_sum(ml, "wslb_lb_received_bytes_total") > 0
    assert util.metric_sum(ml, "wslb_lb_handshake_ms_sum") == pytest.approx(
        1000 * util.metric_sum(ml, "wslb_lb_handshake_duration_seconds_sum"))
