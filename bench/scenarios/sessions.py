#!/usr/bin/python3
"""Reads wsbench balance --series files for the rebalance and affinity
scenarios (bench/sessions.sh).

The fleet changes size during these runs (a worker joins, or one is
killed), so max/mean is recomputed here over the workers in service at each
sample rather than over those wsbench has seen:

  sessions.py ratio FILE T_CHANGE N_BEFORE N_AFTER THRESHOLD OUT
      prints: before after_p50 after_p99 final settle_s
      before: median max/mean before T_CHANGE (over N_BEFORE workers);
      after_p50, after_p99: of the samples from T_CHANGE on (N_AFTER);
      final: median of the last 5 seconds;
      settle_s: seconds from T_CHANGE until max/mean is at or below
      THRESHOLD and stays there to the end (-1: never);
      writes OUT: "t ratio" per sample, for gnuplot.
"""
import sys


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            rows.append([float(x) for x in line.split()])
    return rows


def pct(vals, q):
    if not vals:
        return float("nan")
    s = sorted(vals)
    i = max(0, min(len(s) - 1, int(-(-q * len(s) // 1)) - 1))
    return s[i]


def ratios(rows, t_change, n_before, n_after):
    nmax = (len(rows[0]) - 3) // 2 if rows else 0
    out = []
    for r in rows:
        live = r[3:3 + nmax]
        total = sum(live)
        if total <= 0:
            continue
        n = n_before if r[0] < t_change else n_after
        out.append((r[0], max(live) / (total / n)))
    return out


def main(argv):
    if len(argv) != 8 or argv[1] != "ratio":
        sys.stderr.write(__doc__)
        return 2
    path, t_change = argv[2], float(argv[3])
    n_before, n_after, thr, out = int(argv[4]), int(argv[5]), float(argv[6]), argv[7]
    series = ratios(load(path), t_change, n_before, n_after)
    with open(out, "w") as f:
        f.write("# t max_over_mean\n")
        for t, v in series:
            f.write("%.3f %.4f\n" % (t, v))
    before = [v for t, v in series if t < t_change]
    after = [v for t, v in series if t >= t_change]
    end = series[-1][0] if series else 0
    final = [v for t, v in series if t >= end - 5]
    settle = -1.0
    for i, (t, v) in enumerate(series):
        if t >= t_change and all(w <= thr for _, w in series[i:]):
            settle = t - t_change
            break
    print("%.3f %.3f %.3f %.3f %.1f" % (pct(before, 0.5), pct(after, 0.5), pct(after, 0.99),
                                        pct(final, 0.5), settle))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
