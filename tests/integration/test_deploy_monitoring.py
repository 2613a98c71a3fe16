"""deploy/prometheus/ (scrape config, recording and alerting rules with their
unit tests) passes promtool, and every metric and label that the rules and
deploy/grafana/'s dashboard name exists in the /metrics of a real lb and
worker (started here, with Redis, legacy names off)."""

import json
import os
import re
import shutil
import subprocess

import pytest

import util
from lbutil import lb_factory  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROM = os.path.join(ROOT, "deploy", "prometheus")
DASH = os.path.join(ROOT, "deploy", "grafana", "wslb-dashboard.json")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool missing: apt-get install prometheus "
                                           "(make deps does)")

# Labels Prometheus adds to every scraped series, and the histogram's own.
TARGET_LABELS = {"job", "instance", "le"}
# Series Prometheus makes itself.
SYNTHETIC = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan"}


def promtool(*args):
    p = subprocess.run([PROMTOOL] + list(args), cwd=PROM, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode()


@needs_promtool
def test_prometheus_config_and_rules_pass_promtool():
    rc, out = promtool("check", "config", "prometheus.yml")
    assert rc == 0, out
    assert "1 rule files found" in out, out
    rc, out = promtool("check", "rules", "wslb-rules.yml")
    assert rc == 0, out
    rc, out = promtool("test", "rules", "wslb-rules.test.yml")
    assert rc == 0 and "SUCCESS" in out, out


def alert_rules():
    """(alert names, recording rule names, every expr) of wslb-rules.yml,
    read with promtool's own YAML through a JSON round trip of our own:
    plain `key: value` lines are enough for this file."""
    text = open(os.path.join(PROM, "wslb-rules.yml")).read()
    alerts = re.findall(r"^\s*- alert: (\S+)$", text, re.M)
    records = re.findall(r"^\s*- record: (\S+)$", text, re.M)
    exprs = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr: (.*)$", line)
        if not m:
            continue
        if m.group(2).strip() != ">-":
            exprs.append(m.group(2))
            continue
        body, ind = [], len(m.group(1))
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= ind:
                break
            body.append(nxt.strip())
        exprs.append(" ".join(body))
    return alerts, records, exprs


def test_rules_cover_what_operators_asked_for():
    alerts, records, exprs = alert_rules()
    for want in ("WslbWorkerDown", "WslbLbNoUsableBackend", "WslbIsolationNotFull",
                 "WslbHandshakeP99Rising", "WslbWebsocketsImbalanced", "WslbRedisUnreachable"):
        assert want in alerts, (want, alerts)
    assert len(exprs) == len(alerts) + len(records)
    tests = open(os.path.join(PROM, "wslb-rules.test.yml")).read()
    for a in alerts:  # every alert has a unit test
        assert "alertname: %s" % a in tests, a


def promql_refs(expr):
    """(metric names, label names) an expression refers to."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels = set()
    for m in re.finditer(r"\{([^}]*)\}", e):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(1)))
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        labels |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\S+", " ", e)
    e = re.sub(r"\$\w+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        if e[m.end():].lstrip().startswith("(") or tok.lower() in KEYWORDS:
            continue  # a function or an aggregation
        names.add(tok)
    return names, labels


def test_promql_refs_parser():
    n, l = promql_refs('histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$j"}'
                       '[$__rate_interval]))) > 2 * (b offset 1h) and on (job) c:d:e')
    assert n == {"a_bucket", "b", "c:d:e"}, n
    assert l == {"le", "job"}, l


@pytest.fixture
def scraped(redis_server, worker_factory, lb_factory):
    """{name: (type, label names)} of a real worker's and lb's /metrics."""
    off = ["--metrics-legacy=no"]
    w = worker_factory(args=off, id="mon1", redis=redis_server)
    lb = lb_factory(args=off, redis=redis_server)
    util.wait_for(lambda: lb.backend("mon1") is not None, 10, "mon1 discovered")
    r = util.run_eval(lb.url("/eval"), "python3", "print(1)")
    assert r.verdict == "ok", r
    fams = {}
    for addr in (w.addr, lb.admin):
        text = util.http_get(addr, "/metrics")[2].decode()
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        for name, typ in types.items():
            fams[name] = (typ, set())
        for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? ", text, re.M):
            series, lab = m.group(1), m.group(2) or ""
            base = re.sub(r"_(bucket|sum|count)$", "", series)
            fam = series if series in fams else base
            fams[fam][1].update(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', lab))
    # Both daemons' Redis gauges are there (the Redis alert needs them).
    assert "wslb_lb_redis_up" in fams and "wslb_worker_redis_up" in fams, sorted(fams)
    return fams


def check_refs(expr, fams, extra_names=()):
    names, labels = promql_refs(expr)
    assert names, expr
    known_labels = set(TARGET_LABELS)
    for n in names:
        if n in SYNTHETIC or n in extra_names:
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        if n in fams:
            known_labels |= fams[n][1]
        elif base in fams and fams[base][0] == "histogram":
            known_labels |= fams[base][1]
        else:
            raise AssertionError("%s names %s, which no daemon exports" % (expr, n))
    unknown = labels - known_labels
    assert not unknown, "%s uses labels %s that its metrics do not have" % (expr, unknown)


def test_dashboard_and_rules_name_real_metrics(scraped):
    with open(DASH) as f:
        dash = json.load(f)
    assert dash["title"] and dash["uid"]
    titles = [p["title"] for p in dash["panels"]]
    for want in ("Websockets per worker", "Websockets max/mean", "Handshakes/s",
                 "Handshake latency", "Evaluations/s by verdict", "Sandbox start latency"):
        assert want in titles, titles
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= len(dash["panels"])
    for e in exprs:
        check_refs(e, scraped)
    _, records, rule_exprs = alert_rules()
    for e in rule_exprs:
        check_refs(e, scraped, extra_names=set(records))
