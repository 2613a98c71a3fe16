#!/usr/bin/python3
"""Interleaved rounds of the benchmark: from raw outputs to summary.json, and
from summary.json to the report's tables.

  rounds.py summary RAW OUT.json
      reads RAW/meta.tsv and RAW/facts.tsv (key<TAB>value lines), RAW/runs.tsv
      (one line per measured run: pass case front round order name, then the
      front's own and children's CPU and the workers' own and children's CPU
      in clock ticks, from /proc/PID/stat before and after the run) and the
      RESULT line of RAW/<name>.out for each run; writes the summary: every
      run's figures, median/min/max per front, ratios per round and of the
      medians, 2-thread/1-thread scaling and the targets met or missed.
  rounds.py report SUMMARY.json
      prints the report's Markdown sections for the rounds (targets, echo,
      handshakes, evaluations, the --threads 2 pass, the worker's side,
      memory) to stdout.
  rounds.py median-run SUMMARY.json PASS CASE FRONT
      prints the raw name of the front's run with the median throughput (the
      one whose latency distribution the report plots)
  rounds.py ab TSV A B
      the A/B summary of bench/ab.sh: TSV lines "front case round tput p50_us
      p99_us p999_us cpu_us_per_op ctxt"; prints medians (min-max) per front
      and the B/A ratios per round and of the medians.

Passes: "t1" (one proxy thread/process), "t2" (two), "w" (the worker's
side: the worker against the same program run bare and under bwrap).
"""
import json
import statistics
import sys

# case -> (ops key in RESULT, throughput key, unit of one operation)
CASES = {
    "rtt": ("msgs", "msgs_per_s", "message"),
    "rtt4k": ("msgs", "msgs_per_s", "message"),
    "hs": ("handshakes", "hs_per_s", "handshake"),
    "eval": ("evals", "evals_per_s", "evaluation"),
    "py": ("evals", "evals_per_s", "run"),
}
METRICS = ("tput", "p50_us", "p99_us", "p999_us", "errors", "cpu_us", "child_cpu_us", "wcpu_us",
           "wchild_us", "ucpu_us")
# Targets: (pass, case, metric, ratio name, op, bound, what)
TARGETS = [
    ("t1", "rtt", "tput", "lb/haproxy", ">=", 1.2, "echo messages/s, lb/HAProxy"),
    ("t1", "rtt", "p99_us", "lb/haproxy", "<=", 1.0, "echo p99, lb/HAProxy"),
    ("t1", "rtt", "cpu_us", "lb/haproxy", "<=", 0.8, "proxy CPU per echo message, lb/HAProxy"),
    ("t1", "hs", "tput", "lb/haproxy", ">=", 1.2, "handshakes/s, lb/HAProxy"),
    ("t1", "hs", "p99_us", "lb/haproxy", "<=", 1.0, "handshake p99, lb/HAProxy"),
    ("t1", "hs", "cpu_us", "lb/haproxy", "<=", 0.8, "proxy CPU per handshake, lb/HAProxy"),
    ("t2", "rtt", "tput", "lb/haproxy", ">=", 1.2, "2 threads: echo messages/s, lb/HAProxy"),
    ("t2", "rtt", "p99_us", "lb/haproxy", "<=", 1.0, "2 threads: echo p99, lb/HAProxy"),
    ("t2", "rtt", "cpu_us", "lb/haproxy", "<=", 0.8, "2 threads: proxy CPU per echo message"),
    ("t2", "hs", "tput", "lb/haproxy", ">=", 1.2, "2 threads: handshakes/s, lb/HAProxy"),
    ("t2", "hs", "p99_us", "lb/haproxy", "<=", 1.0, "2 threads: handshake p99, lb/HAProxy"),
    ("t2", "hs", "cpu_us", "lb/haproxy", "<=", 0.8, "2 threads: proxy CPU per handshake"),
    ("w", "py", "p50_us", "worker/bare", "<=", 1.15, "sandboxed `python3` `pass` p50, worker/bare"),
    ("w", "py", "p50_us", "worker/bwrap", "<", 1.0, "sandboxed `python3` `pass` p50, worker/bwrap"),
]
RATIOS = {"t1": [("lb", "haproxy")], "t2": [("lb", "haproxy")],
          "w": [("worker", "bare"), ("worker", "bwrap")]}
NAMES = {"lb": "lb", "haproxy": "HAProxy", "nginx": "nginx", "direct": "direct",
         "worker": "worker", "bare": "bare", "bwrap": "bwrap"}


def read_kv(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#") or "\t" not in line:
                    continue
                k, v = line.split("\t", 1)
                out[k] = number(v)
    except FileNotFoundError:
        pass
    return out


def number(v):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def result_line(path):
    """The key=value pairs of the last RESULT line of a wsbench output."""
    kv = {}
    try:
        with open(path) as f:
            lines = [x for x in f if x.startswith("RESULT ")]
    except FileNotFoundError:
        return kv
    if lines:
        for tok in lines[-1].split()[1:]:
            if "=" in tok:
                k, v = tok.split("=", 1)
                kv[k] = number(v)
    return kv


def per_op(ticks, hz, ops):
    if ops <= 0 or ticks is None:
        return None
    return ticks * 1e6 / hz / ops


def load_runs(raw, hz):
    runs = []
    with open(raw + "/runs.tsv") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            v = line.rstrip("\n").split("\t")
            pas, case, front, rnd, order, name = v[:6]
            # own, children's, workers' own, workers' children's, own user-space
            ticks = [int(x) if x not in ("", "-") else None for x in v[6:11]]
            ticks += [None] * (5 - len(ticks))
            res = result_line("%s/%s.out" % (raw, name))
            ops_key, tput_key, _ = CASES[case]
            ops = res.get(ops_key, 0) or 0
            r = {"pass": pas, "case": case, "front": front, "round": int(rnd), "order": order,
                 "name": name, "ops": ops, "tput": res.get(tput_key),
                 "p50_us": res.get("p50_us"), "p99_us": res.get("p99_us"),
                 "p999_us": res.get("p999_us"),
                 "errors": res.get("failed", res.get("errors"))}
            if front in ("bare", "bwrap"):
                r["cpu_us"] = res["cpu_self_us"] / ops if ops and "cpu_self_us" in res else None
                r["child_cpu_us"] = (res["cpu_child_us"] / ops
                                     if ops and "cpu_child_us" in res else None)
            else:
                r["cpu_us"] = per_op(ticks[0], hz, ops)
                if pas != "w":
                    r["ucpu_us"] = per_op(ticks[4], hz, ops)
                if pas == "w":
                    r["child_cpu_us"] = per_op(ticks[1], hz, ops)
            if case == "eval":
                r["wcpu_us"] = per_op(ticks[2], hz, ops)
                r["wchild_us"] = per_op(ticks[3], hz, ops)
            if not res:
                r["missing"] = True
            runs.append(r)
    return runs


def stats(vals):
    vals = [x for x in vals if x is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def summarize(raw):
    meta = read_kv(raw + "/meta.tsv")
    facts = read_kv(raw + "/facts.tsv")
    hz = meta.get("clk_tck", 100)
    runs = load_runs(raw, hz)
    st, ra = {}, {}
    keys = sorted({(r["pass"], r["case"], r["front"]) for r in runs})
    for pas, case, front in keys:
        sel = [r for r in runs if (r["pass"], r["case"], r["front"]) == (pas, case, front)]
        st.setdefault(pas, {}).setdefault(case, {})[front] = {
            m: stats([r.get(m) for r in sel]) for m in METRICS
            if stats([r.get(m) for r in sel]) is not None}
    for pas, pairs in RATIOS.items():
        for case in st.get(pas, {}):
            for a, b in pairs:
                fa = st[pas][case].get(a)
                fb = st[pas][case].get(b)
                if not fa or not fb:
                    continue
                out = {}
                for m in ("tput", "p50_us", "p99_us", "p999_us", "cpu_us", "child_cpu_us",
                          "ucpu_us"):
                    if m not in fa or m not in fb:
                        continue
                    per_round = []
                    for rnd in sorted({r["round"] for r in runs if r["pass"] == pas}):
                        va = [r.get(m) for r in runs if (r["pass"], r["case"], r["front"],
                                                          r["round"]) == (pas, case, a, rnd)]
                        vb = [r.get(m) for r in runs if (r["pass"], r["case"], r["front"],
                                                          r["round"]) == (pas, case, b, rnd)]
                        per_round.append(ratio(va[0] if va else None, vb[0] if vb else None))
                    out[m] = {"rounds": per_round,
                              "of_medians": ratio(fa[m]["median"], fb[m]["median"])}
                ra.setdefault(pas, {}).setdefault(case, {})["%s/%s" % (a, b)] = out
    scaling = {}
    for front in ("lb", "haproxy", "nginx"):
        for case in ("rtt", "hs"):
            a = st.get("t2", {}).get(case, {}).get(front)
            b = st.get("t1", {}).get(case, {}).get(front)
            if a and b:
                scaling.setdefault(front, {})[case] = {
                    m: ratio(a[m]["median"], b[m]["median"])
                    for m in ("tput", "cpu_us", "p99_us") if m in a and m in b}
    targets = []
    for pas, case, m, rname, op, bound, what in TARGETS:
        v = ra.get(pas, {}).get(case, {}).get(rname, {}).get(m, {}).get("of_medians")
        targets.append({"what": what, "value": v, "op": op, "bound": bound,
                        "met": None if v is None else met(v, op, bound)})
    mem = facts.get("mem_lb_bytes")
    if isinstance(mem, (int, float)):
        targets.append({"what": "lb RSS per idle websocket, bytes, at %s held"
                                % facts.get("mem_held_lb", "?"),
                        "value": mem, "op": "<=", "bound": 512, "met": mem <= 512})
    return {"schema": 1, "meta": meta, "facts": facts, "runs": runs, "stats": st, "ratios": ra,
            "scaling": scaling, "targets": targets}


def met(v, op, bound):
    return {">=": v >= bound, "<=": v <= bound, "<": v < bound, ">": v > bound}[op]


# ---- formatting -----------------------------------------------------------------


def fmt_num(v, digits=None):
    """Thousands separated by spaces; small values with a few significant digits."""
    if v is None:
        return "–"
    if digits is None:
        digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)
    s = "%.*f" % (digits, v)
    whole, _, frac = s.partition(".")
    neg = whole.startswith("-")
    whole = whole.lstrip("-")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    out = ("-" if neg else "") + " ".join(groups)
    return out + ("." + frac if frac else "")


def fmt_ms(us):
    return "–" if us is None else "%.2f" % (us / 1000.0)


def fmt_ratio(v):
    return "–" if v is None else "%.2f" % v


def spread(s, m, f):
    """'median (min–max)' of metric m in stats s, formatted by f."""
    x = s.get(m) if s else None
    if not x:
        return "–"
    if x["n"] == 1 or x["min"] == x["max"]:
        return f(x["median"])
    return "%s (%s–%s)" % (f(x["median"]), f(x["min"]), f(x["max"]))


def med(s, m):
    x = s.get(m) if s else None
    return x["median"] if x else None


def fronts_of(summary, pas, case):
    order = ["lb", "haproxy", "nginx", "direct", "worker", "bare", "bwrap"]
    have = summary["stats"].get(pas, {}).get(case, {})
    return [f for f in order if f in have]


def commit_of(summary):
    return summary["meta"].get("commit", "?")


def case_table(summary, pas, case, title):
    """The per-front table of one case, and its per-round lb/HAProxy ratios."""
    st = summary["stats"].get(pas, {}).get(case)
    if not st:
        return []
    meta = summary["meta"]
    unit = CASES[case][2]
    commit = commit_of(summary)
    out = ["### " + title, ""]
    if case == "eval":
        # The proxy's CPU per evaluation is a tick or two per run, below what
        # /proc/PID/stat resolves: it stays in summary.json, not here.
        out += ["| front | commit | evaluations/s | p50 ms | p99 ms "
                "| workers' CPU ms per evaluation (own + programs) | failed |",
                "|---|---|---:|---:|---:|---:|---:|"]
        for f in fronts_of(summary, pas, case):
            s = st[f]
            w = med(s, "wcpu_us")
            c = med(s, "wchild_us")
            wcol = "–" if w is None else "%.2f + %.2f" % (w / 1000, (c or 0) / 1000)
            out.append("| %s | `%s` | %s | %s | %s | %s | %s |" % (
                NAMES[f], commit, spread(s, "tput", fmt_num), spread(s, "p50_us", fmt_ms),
                spread(s, "p99_us", fmt_ms), wcol,
                fmt_num(total_errors(summary, pas, case, f), 0)))
    else:
        cpu_head = "proxy CPU µs per %s" % unit
        out += ["| front | commit | %ss/s | p50 ms | p99 ms | p99.9 ms | %s | of which "
                "user space | errors |" % (unit, cpu_head),
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for f in fronts_of(summary, pas, case):
            s = st[f]
            out.append("| %s | `%s` | %s | %s | %s | %s | %s | %s | %s |" % (
                NAMES[f] + (" (the worker's CPU)" if f == "direct" else ""), commit,
                spread(s, "tput", fmt_num), spread(s, "p50_us", fmt_ms),
                spread(s, "p99_us", fmt_ms), spread(s, "p999_us", fmt_ms),
                spread(s, "cpu_us", fmt_num), spread(s, "ucpu_us", fmt_num),
                fmt_num(total_errors(summary, pas, case, f), 0)))
    out += ["", "Median (min–max) of %d rounds of %s s each." % (
        max((x["n"] for x in st[fronts_of(summary, pas, case)[0]].values()), default=0),
        meta.get("dur_eval" if case == "eval" else "dur", "?"))]
    rat = summary["ratios"].get(pas, {}).get(case, {}).get("lb/haproxy")
    if rat:
        cols = [("tput", "%ss/s" % unit), ("p50_us", "p50"),
                ("p99_us", "p99"), ("cpu_us", "CPU per %s" % unit),
                ("ucpu_us", "user-space CPU per %s" % unit)]
        # An evaluation costs the proxy a few clock ticks per round: its
        # CPU ratios per round are 0.00, 2.21 or missing, noise, not figures.
        cols = [c for c in cols
                if c[0] in rat and not (case == "eval" and c[0] in ("cpu_us", "ucpu_us"))]
        orders = {}
        for r in summary["runs"]:
            if r["pass"] == pas and r["case"] == case:
                orders[r["round"]] = r["order"]
        out += ["", "lb/HAProxy, round by round (fronts in the order run):", "",
                "| round | order | " + " | ".join(c[1] for c in cols) + " |",
                "|---|---|" + "---:|" * len(cols)]
        for i, rnd in enumerate(sorted(orders)):
            out.append("| %d | %s | %s |" % (rnd, orders[rnd], " | ".join(
                fmt_ratio(rat[c[0]]["rounds"][i] if i < len(rat[c[0]]["rounds"]) else None)
                for c in cols)))
        out.append("| **of the medians** | | %s |" % " | ".join(
            "**%s**" % fmt_ratio(rat[c[0]]["of_medians"]) for c in cols))
    out.append("")
    return out


def total_errors(summary, pas, case, front):
    return sum((r.get("errors") or 0) for r in summary["runs"]
               if (r["pass"], r["case"], r["front"]) == (pas, case, front))


def worker_table(summary):
    st = summary["stats"].get("w", {}).get("py")
    if not st:
        return []
    meta = summary["meta"]
    out = ["## The worker's side: sandboxed evaluations against the same program bare and under "
           "bwrap", "",
           "`python3 -I -S -B main.py` with main.py = `pass`, %s at once (the workers' "
           "`--max-evals`), %s runs per round, %s rounds, the three interleaved. The worker is "
           "driven by `wsbench eval -c %s -n %s` on its own port (a run is timed from the run "
           "message sent to its exit message); bare and bwrap by `wsbench spawn -c %s -n %s`, "
           "which times a run from writing main.py into the run's directory to the child reaped "
           "with its output at end of file (what the worker's own wall time covers), so the "
           "worker's figure carries the websocket round trip on top."
           % (meta.get("max_evals", "?"), meta.get("ws_runs", "?"), meta.get("rounds", "?"),
              meta.get("max_evals", "?"), meta.get("ws_runs", "?"), meta.get("max_evals", "?"),
              meta.get("ws_runs", "?")), "",
           "| runner | commit | evaluations/s | p50 ms | p99 ms | CPU per run, ms: runner + "
           "program | failed |",
           "|---|---|---:|---:|---:|---:|---:|"]
    label = {"worker": "worker (sandboxed: namespaces, cgroup, seccomp, fresh tmpfs)",
             "bare": "bare fork/exec", "bwrap": "bwrap (the flags below)"}
    for f in fronts_of(summary, "w", "py"):
        s = st[f]
        c, k = med(s, "cpu_us"), med(s, "child_cpu_us")
        cpu = "–" if c is None else "%.2f + %.2f" % (c / 1000, (k or 0) / 1000)
        out.append("| %s | `%s` | %s | %s | %s | %s | %s |" % (
            label[f], commit_of(summary), spread(s, "tput", fmt_num),
            spread(s, "p50_us", fmt_ms), spread(s, "p99_us", fmt_ms), cpu,
            fmt_num(total_errors(summary, "w", "py", f), 0)))
    out += ["", "bwrap's flags: `%s --bind {dir} /work --chdir /work`." % meta.get(
        "bwrap_isolation", "?"), ""]
    for pair in ("worker/bare", "worker/bwrap"):
        rat = summary["ratios"].get("w", {}).get("py", {}).get(pair)
        if not rat:
            continue
        out.append("%s p50 round by round: %s; of the medians **%s** (p99 %s, evaluations/s %s)."
                   % (pair, ", ".join(fmt_ratio(x) for x in rat["p50_us"]["rounds"]),
                      fmt_ratio(rat["p50_us"]["of_medians"]),
                      fmt_ratio(rat.get("p99_us", {}).get("of_medians")),
                      fmt_ratio(rat.get("tput", {}).get("of_medians"))))
        out.append("")
    out.append("The worker's CPU is its own process (event loop, janitor) and its zygote's (which "
               "clones the runs' inits) plus its reaped children (the sandboxes' init and the "
               "program); the drivers' is their own plus "
               "their reaped children (bwrap's init comes back to the driver as a subreaper).")
    out.append("")
    return out


def scaling_table(summary):
    sc = summary.get("scaling")
    if not sc:
        return []
    out = ["### 2 threads against 1: scaling of each front (medians, t2/t1)", "",
           "| front | echo messages/s | handshakes/s | CPU per message | CPU per handshake |",
           "|---|---:|---:|---:|---:|"]
    for f in ("lb", "haproxy", "nginx"):
        if f not in sc:
            continue
        g = sc[f]
        out.append("| %s | %s | %s | %s | %s |" % (
            NAMES[f], fmt_ratio(g.get("rtt", {}).get("tput")),
            fmt_ratio(g.get("hs", {}).get("tput")), fmt_ratio(g.get("rtt", {}).get("cpu_us")),
            fmt_ratio(g.get("hs", {}).get("cpu_us"))))
    out.append("")
    return out


def targets_table(summary):
    out = ["## Targets", "",
           "| target | measured | bound | |", "|---|---:|---:|---|"]
    for t in summary["targets"]:
        v = t["value"]
        shown = "–" if v is None else (fmt_num(v, 0) if t["bound"] > 10 else fmt_ratio(v))
        mark = "–" if t["met"] is None else ("met" if t["met"] else "**missed**")
        out.append("| %s | %s | %s %s | %s |" % (t["what"], shown, t["op"], t["bound"], mark))
    out += ["", "Ratios are of the medians over rounds (lb/HAProxy: below 1 is better for "
            "latency and CPU, above 1 for throughput).", ""]
    return out


def memory_table(summary):
    f = summary["facts"]
    if "mem_held_lb" not in f:
        return []
    out = ["## Memory per idle websocket", "",
           "RSS of each front's process before and while holding idle websockets, up to %s "
           "(steps: %s)." % (f.get("mem_n_max", "?"), f.get("mem_steps", "?")), "",
           "| front | commit | held | RSS before, MiB | RSS held, MiB | bytes per idle websocket |",
           "|---|---|---:|---:|---:|---:|"]
    for t in ("direct", "lb", "haproxy", "nginx"):
        if "mem_held_" + t not in f:
            continue
        out.append("| %s | `%s` | %s | %.1f | %.1f | %s |" % (
            NAMES[t] + (" (the worker)" if t == "direct" else ""), commit_of(summary),
            fmt_num(f["mem_held_" + t], 0), f["mem_before_kb_" + t] / 1024.0,
            f["mem_after_kb_" + t] / 1024.0, fmt_num(f.get("mem_%s_bytes" % t), 0)))
    lb, hap = f.get("mem_lb_bytes"), f.get("mem_haproxy_bytes")
    if isinstance(lb, (int, float)) and isinstance(hap, (int, float)) and hap:
        out.append("| **lb/HAProxy** | | | | | **%s** |" % fmt_ratio(lb / hap))
    out += ["", "RSS counts user-space memory only (kernel socket buffers are not in it). "
            "\"direct\" is the worker's own cost per websocket. %s" % f.get("mem_note", ""), ""]
    return out


def report(summary):
    m = summary["meta"]
    out = targets_table(summary)
    out += ["## One proxy thread (lb `--threads 1`, HAProxy `nbthread 1`, nginx 1 worker "
            "process)", ""]
    out += case_table(summary, "t1", "rtt", "Echo round trip (%s connections, 64-byte binary "
                      "messages, 1 in flight each)" % m.get("rtt_c", "?"))
    out += case_table(summary, "t1", "rtt4k", "Echo round trip (100 connections, 4 KiB "
                      "messages, 4 in flight each)")
    out += case_table(summary, "t1", "hs", "Handshakes (%s concurrent connect → upgrade → "
                      "close cycles)" % m.get("hs_c", "?"))
    out += case_table(summary, "t1", "eval", "Evaluations through each front (`python3` "
                      "running `pass`, 1 client in a loop)")
    if summary["stats"].get("t2"):
        out += ["## Two proxy threads (lb `--threads 2`, HAProxy `nbthread 2`, nginx 2 worker "
                "processes)", "",
                "The same workers and load generator; the fronts' CPU is all their threads or "
                "worker processes.", ""]
        out += case_table(summary, "t2", "rtt", "Echo round trip, 2 threads")
        out += case_table(summary, "t2", "hs", "Handshakes, 2 threads")
        out += scaling_table(summary)
    out += worker_table(summary)
    out += memory_table(summary)
    return "\n".join(out)


# ---- ab.sh ----------------------------------------------------------------------


def ab(path, a, b):
    rows = []
    with open(path) as f:
        for line in f:
            v = line.split()
            if len(v) < 9:
                continue
            rows.append({"front": v[0], "case": v[1], "round": int(v[2]), "tput": float(v[3]),
                         "p50_us": float(v[4]), "p99_us": float(v[5]), "p999_us": float(v[6]),
                         "cpu_us": float(v[7]) if v[7] != "-" else None, "ctxt": float(v[8])})
    cols = [("tput", "ops/s", fmt_num), ("p50_us", "p50 ms", fmt_ms), ("p99_us", "p99 ms", fmt_ms),
            ("p999_us", "p99.9 ms", fmt_ms), ("cpu_us", "CPU µs/op", fmt_num),
            ("ctxt", "invol. ctxt", fmt_num)]
    for case in sorted({r["case"] for r in rows}):
        print("\n%s: median (min-max) of %d rounds" % (
            case, len({r["round"] for r in rows if r["case"] == case})))
        print("%-10s " % "front" + " ".join("%-24s" % c[1] for c in cols))
        for front in (a, b):
            sel = [r for r in rows if r["case"] == case and r["front"] == front]
            print("%-10s " % front + " ".join(
                "%-24s" % spread({c[0]: stats([r[c[0]] for r in sel])}, c[0], c[2])
                for c in cols))
        print("%s/%s per round:" % (b, a))
        for m, name, _ in cols[:5]:
            per = []
            for rnd in sorted({r["round"] for r in rows if r["case"] == case}):
                va = [r[m] for r in rows if (r["case"], r["front"], r["round"]) == (case, a, rnd)]
                vb = [r[m] for r in rows if (r["case"], r["front"], r["round"]) == (case, b, rnd)]
                per.append(ratio(vb[0] if vb else None, va[0] if va else None))
            ma = stats([r[m] for r in rows if r["case"] == case and r["front"] == a])
            mb = stats([r[m] for r in rows if r["case"] == case and r["front"] == b])
            print("  %-10s %s   of the medians: %s" % (
                name, " ".join(fmt_ratio(x) for x in per),
                fmt_ratio(ratio(mb["median"] if mb else None, ma["median"] if ma else None))))


def median_run(summary, pas, case, front):
    """The name of the run whose throughput is the median of its front's rounds."""
    sel = [r for r in summary["runs"] if (r["pass"], r["case"], r["front"]) == (pas, case, front)
           and r.get("tput") is not None]
    if not sel:
        return ""
    sel.sort(key=lambda r: r["tput"])
    return sel[(len(sel) - 1) // 2]["name"]


def main(argv):
    if len(argv) == 6 and argv[1] == "median-run":
        with open(argv[2]) as f:
            print(median_run(json.load(f), argv[3], argv[4], argv[5]))
        return 0
    if len(argv) == 4 and argv[1] == "summary":
        s = summarize(argv[2])
        with open(argv[3], "w") as f:
            json.dump(s, f, indent=1, sort_keys=True)
            f.write("\n")
        return 0
    if len(argv) == 3 and argv[1] == "report":
        with open(argv[2]) as f:
            print(report(json.load(f)))
        return 0
    if len(argv) == 5 and argv[1] == "ab":
        ab(argv[2], argv[3], argv[4])
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
