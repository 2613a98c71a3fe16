#!/usr/bin/python3
"""Prints the README's Performance tables from a benchmark summary, so that the
README's figures can be traced to (and checked against) one report.

  bench/readme_table.py SUMMARY.json
      prints the block (tables and the lines around them) for SUMMARY.json
  bench/readme_table.py --write README.md SUMMARY.json
      replaces the block between README.md's perf-table markers with it
  bench/readme_table.py --check README.md
      regenerates the block from the summary its begin marker names and
      exits 1, with a diff, when README.md's block differs

The markers are the lines
  <!-- perf-table: bench/results/DATE/summary.json -->
  <!-- /perf-table -->
and the summary path is relative to the repository root.
"""
import difflib
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios"))
import rounds  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = re.compile(r"^<!-- perf-table: (\S+) -->$")
END = "<!-- /perf-table -->"
FRONTS = ("direct", "lb", "haproxy", "nginx")


def st(s, pas, case, front):
    return s["stats"].get(pas, {}).get(case, {}).get(front)


def cell(s, pas, case, front, metric, f):
    return rounds.spread(st(s, pas, case, front), metric, f)


def pair(s, pas, case, front, m1, m2, f):
    a = rounds.med(st(s, pas, case, front), m1)
    b = rounds.med(st(s, pas, case, front), m2)
    if a is None and b is None:
        return "–"
    return "%s / %s" % (f(a), f(b))


def rat(s, pas, case, metric, name="lb/haproxy"):
    r = s["ratios"].get(pas, {}).get(case, {}).get(name, {}).get(metric)
    return rounds.fmt_ratio(r["of_medians"]) if r else "–"


def row(label, cells, ratio=""):
    return "| %s | %s | %s |" % (label, " | ".join(cells), ratio)


def fronts_row(s, pas, case, metric, f, label, skip_direct=False, bold=True):
    cells = []
    for fr in FRONTS:
        if fr == "direct" and skip_direct:
            cells.append("–")
        else:
            cells.append(cell(s, pas, case, fr, metric, f))
    r = rat(s, pas, case, metric)
    return row(label, cells, "**%s**" % r if bold and r != "–" else r)


def fact(s, key, f=str):
    v = s["facts"].get(key)
    return "–" if v is None or v == "-" or v == "" else f(v)


def main_table(s):
    m = s["meta"]
    fmt_n, fmt_ms = rounds.fmt_num, rounds.fmt_ms
    lines = ["| median (min–max) of %s rounds | direct | lb | HAProxy | nginx | lb/HAProxy |"
             % m.get("rounds", "?"),
             "|---|---:|---:|---:|---:|---:|"]
    lines.append(fronts_row(s, "t1", "rtt", "tput", fmt_n, "echo round trip, %s conns × 64 B, "
                            "messages/s" % m.get("rtt_c", "?")))
    lines.append(row("echo round trip p50 / p99, ms",
                     [pair(s, "t1", "rtt", fr, "p50_us", "p99_us", fmt_ms) for fr in FRONTS],
                     "%s / **%s**" % (rat(s, "t1", "rtt", "p50_us"), rat(s, "t1", "rtt",
                                                                         "p99_us"))))
    lines.append(fronts_row(s, "t1", "rtt", "cpu_us", fmt_n, "CPU per echo message, µs "
                            "(direct: the worker's)"))
    lines.append(fronts_row(s, "t1", "hs", "tput", fmt_n, "handshakes/s (%s concurrent)"
                            % m.get("hs_c", "?")))
    lines.append(row("handshake p50 / p99, ms",
                     [pair(s, "t1", "hs", fr, "p50_us", "p99_us", fmt_ms) for fr in FRONTS],
                     "%s / **%s**" % (rat(s, "t1", "hs", "p50_us"), rat(s, "t1", "hs",
                                                                       "p99_us"))))
    lines.append(fronts_row(s, "t1", "hs", "cpu_us", fmt_n, "CPU per handshake, µs"))
    if rat(s, "t1", "rtt", "ucpu_us") != "–":
        lines.append(fronts_row(s, "t1", "rtt", "ucpu_us", fmt_n, "of the CPU per echo message, "
                                "user space (the rest is the kernel's), µs", skip_direct=True,
                                bold=False))
        lines.append(fronts_row(s, "t1", "hs", "ucpu_us", fmt_n, "of the CPU per handshake, "
                                "user space, µs", skip_direct=True, bold=False))
    if s["stats"].get("t2"):
        lines.append(fronts_row(s, "t2", "rtt", "tput", fmt_n, "2 threads: echo messages/s",
                                skip_direct=True))
        lines.append(fronts_row(s, "t2", "rtt", "p99_us", fmt_ms, "2 threads: echo p99, ms",
                                skip_direct=True))
        lines.append(fronts_row(s, "t2", "rtt", "cpu_us", fmt_n,
                                "2 threads: CPU per echo message, µs", skip_direct=True))
        lines.append(fronts_row(s, "t2", "hs", "tput", fmt_n, "2 threads: handshakes/s",
                                skip_direct=True))
        lines.append(fronts_row(s, "t2", "hs", "p99_us", fmt_ms, "2 threads: handshake p99, ms",
                                skip_direct=True))
        lines.append(fronts_row(s, "t2", "hs", "cpu_us", fmt_n,
                                "2 threads: CPU per handshake, µs", skip_direct=True))
        sc = s.get("scaling", {})
        lines.append(row("2 threads / 1 thread: echo messages/s, handshakes/s", ["–"] + [
            "%s, %s" % (rounds.fmt_ratio(sc.get(fr, {}).get("rtt", {}).get("tput")),
                        rounds.fmt_ratio(sc.get(fr, {}).get("hs", {}).get("tput")))
            for fr in FRONTS[1:]]))
    mem = [fact(s, "mem_%s_bytes" % fr, lambda v: rounds.fmt_num(v, 0)) for fr in FRONTS]
    lb, hap = s["facts"].get("mem_lb_bytes"), s["facts"].get("mem_haproxy_bytes")
    mr = (rounds.fmt_ratio(lb / hap) if isinstance(lb, (int, float))
          and isinstance(hap, (int, float)) and hap else "–")
    lines.append(row("memory per idle websocket (%s held), bytes"
                     % rounds.fmt_num(s["facts"].get("mem_held_lb"), 0), mem, "**%s**" % mr))
    bal = ["–"] + ["%s / %s" % (fact(s, "bal_%s_max_over_mean_p50" % fr, ratio4),
                                fact(s, "bal_%s_max_over_mean_p99" % fr, ratio4))
                   for fr in FRONTS[1:]]
    lines.append(row("balance under churn, max/mean live per worker, p50 / p99", bal))
    lines.append(row("same with `--algo roundrobin`", [
        "–", "%s / %s" % (fact(s, "bal_lbrr_max_over_mean_p50", ratio4),
                          fact(s, "bal_lbrr_max_over_mean_p99", ratio4)), "", ""]))
    lines.append(row("failover: failed handshakes when a worker is SIGKILLed", [
        "–", fact(s, "fo_lb_hs_fail"), fact(s, "fo_haproxy_hs_fail"), ""]))
    lines.append(row("failover: time until the dead worker is marked down, ms", [
        "–", fact(s, "fo_lb_down_ms"), fact(s, "fo_haproxy_down_ms"), ""]))
    lines.append(fronts_row(s, "t1", "eval", "p50_us", fmt_ms,
                            "`python3` `pass` through each front, 1 client, p50 ms", bold=False))
    return lines


def worker_table(s):
    w = s["stats"].get("w", {}).get("py")
    if not w:
        return []
    m = s["meta"]
    lines = ["| `python3 -I -S -B main.py` (`pass`), %s at once, %s runs × %s rounds | "
             "evaluations/s | p50 ms | p99 ms | CPU per run, ms | worker's p50 / this |"
             % (m.get("max_evals", "?"), m.get("ws_runs", "?"), m.get("rounds", "?")),
             "|---|---:|---:|---:|---:|---:|"]
    label = {"worker": "the worker (`wsbench eval`, sandboxed)",
             "bare": "bare fork/exec (`wsbench spawn`)",
             "bwrap": "bwrap `--unshare-all`, read-only /usr, tmpfs /tmp (`wsbench spawn`)"}
    for fr in ("worker", "bare", "bwrap"):
        x = w.get(fr)
        if not x:
            continue
        c, k = rounds.med(x, "cpu_us"), rounds.med(x, "child_cpu_us")
        cpu = "–" if c is None else "%.1f" % ((c + (k or 0)) / 1000)
        r = "" if fr == "worker" else "**%s**" % rat(s, "w", "py", "p50_us", "worker/" + fr)
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            label[fr], rounds.spread(x, "tput", rounds.fmt_num),
            rounds.spread(x, "p50_us", rounds.fmt_ms), rounds.spread(x, "p99_us", rounds.fmt_ms),
            cpu, r))
    return lines


def ratio4(v):
    return "%.4f" % v if isinstance(v, (int, float)) else str(v)


def block(s, path):
    m = s["meta"]
    date = str(m.get("stamp", "?"))
    lines = ["Commit `%s`, `bench/run.sh %s` of %s UTC (%s), %s rounds of %s s per front, the "
             "fronts' order rotated each round; %s cores (%s), load average %s at the start. "
             "Every figure: `%s`." % (
                 m.get("commit", "?"), m.get("mode", "?"), date, "`make bench`"
                 if m.get("mode") == "short" else "`make bench-full`", m.get("rounds", "?"),
                 m.get("dur", "?"), m.get("nproc", "?"), m.get("cpu", "?"),
                 m.get("load_start", "?"), path), ""]
    lines += main_table(s)
    wt = worker_table(s)
    if wt:
        lines += [""] + wt
    f = s["facts"]
    lines += [
        "",
        "- Rolling deploy (every worker SIGTERM-drained and restarted in turn while clients "
        "run evaluations and reconnect on close): %s failed evaluations of %s, %s reconnects."
        % (fact(s, "rd_failed"), fact(s, "rd_evals"), fact(s, "rd_reconnects")),
        "- Scale-out (a fifth worker joins live connections): it took %s of the new "
        "connections in its first second, and max/mean was under 1.1 after %s s."
        % (fact(s, "so_peak_share", lambda v: "%.0f%%" % (100 * v)), fact(s, "so_settle_s")),
        "- Two lbs sharing Redis, one restarted midway: max/mean p50 %s / p99 %s with both "
        "running, %s / %s after the restart." % tuple(
            fact(s, k, ratio4) for k in ("two_before_p50", "two_before_p99", "two_after_p50",
                                         "two_after_p99")),
    ]
    if f.get("mem_note"):
        lines.append("- Memory: %s" % f["mem_note"])
    if m.get("stale"):
        lines.append("- Warning from the run: %s." % m["stale"])
    d = os.path.dirname(path)
    plots = [(n, t) for n, t in (("balance", "balance: leastconn vs roundrobin"),
                                 ("latency", "echo latency distribution, median round"),
                                 ("memory", "memory per idle connection"),
                                 ("scaleout", "scale-out"))
             if os.path.exists(os.path.join(ROOT, d, n + ".svg"))]
    if plots:
        lines.append("")
        lines += ["![%s](%s/%s.svg)" % (t, d, n) for n, t in plots]
    return "\n".join(lines)


def load(path):
    with open(os.path.join(ROOT, path) if not os.path.isabs(path) else path) as fh:
        return json.load(fh)


def rel(path):
    p = os.path.relpath(os.path.abspath(path), ROOT)
    return p if not p.startswith("..") else os.path.abspath(path)


def find_block(text):
    lines = text.split("\n")
    for i, line in enumerate(lines):
        mb = BEGIN.match(line)
        if mb:
            for j in range(i + 1, len(lines)):
                if lines[j] == END:
                    return i, j, mb.group(1), lines
            break
    raise SystemExit("readme_table: no '<!-- perf-table: PATH -->' ... '%s' block" % END)


def main(argv):
    if len(argv) == 2 and not argv[1].startswith("-"):
        print(block(load(argv[1]), rel(argv[1])))
        return 0
    if len(argv) == 4 and argv[1] == "--write":
        with open(argv[2]) as fh:
            text = fh.read()
        i, j, _, lines = find_block(text)
        path = rel(argv[3])
        new = lines[:i] + ["<!-- perf-table: %s -->" % path, block(load(argv[3]), path)] + \
            lines[j:]
        with open(argv[2], "w") as fh:
            fh.write("\n".join(new))
        return 0
    if len(argv) == 3 and argv[1] == "--check":
        with open(argv[2]) as fh:
            text = fh.read()
        i, j, path, lines = find_block(text)
        have = lines[i + 1:j]
        want = block(load(path), path).split("\n")
        if have == want:
            print("readme_table: %s matches %s" % (argv[2], path))
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            [x + "\n" for x in have], [x + "\n" for x in want], argv[2], path))
        return 1
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
