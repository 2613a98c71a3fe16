#!/usr/bin/python3
"""Reads wsbench balance --series files for the benchmark report.

  series.py scaleout FILE NEW_ID [THRESHOLD]
      prints: join_s settle_s first_second peak_share
      join_s: first sample where NEW_ID holds a connection;
      settle_s: seconds from join until max/mean (over all workers seen,
      the new one included) is below THRESHOLD (default 1.1), or -1;
      first_second: connections NEW_ID received in its first second;
      peak_share: the largest share of the connections opened in any one
      second of that first second window that went to NEW_ID (1.0 = herding).
  series.py window FILE FROM_S TO_S
      prints: p50 p99 max of max/mean between FROM_S and TO_S
  series.py gp FILE OUT
      writes OUT as plain columns for gnuplot: t then live count per worker,
      with a header naming the workers
"""
import sys


def load(path):
    rows, names = [], []
    with open(path) as f:
        for line in f:
            if line.startswith("# workers:"):
                names = line.split(":", 1)[1].split()
            elif line.startswith("#") or not line.strip():
                continue
            else:
                v = line.split()
                rows.append([float(x) for x in v])
    return rows, names


def pct(vals, q):
    if not vals:
        return float("nan")
    s = sorted(vals)
    i = max(0, min(len(s) - 1, int(-(-q * len(s) // 1)) - 1))
    return s[i]


def main(argv):
    cmd, path = argv[1], argv[2]
    rows, names = load(path)
    nmax = (len(rows[0]) - 3) // 2 if rows else 0
    if cmd == "scaleout":
        new = argv[3]
        thr = float(argv[4]) if len(argv) > 4 else 1.1
        if new not in names:
            print("-1 -1 0 0")
            return 0
        k = names.index(new)
        live_col, opened_col = 3 + k, 3 + nmax + k
        join = next((r for r in rows if r[opened_col] > 0), None)
        if join is None:
            print("-1 -1 0 0")
            return 0
        tj = join[0]
        settle = next((r[0] - tj for r in rows if r[0] >= tj and r[2] > 0 and r[2] < thr), -1)
        # Connections in the first second: opened counters one second apart.
        before = [r for r in rows if r[0] < tj]
        base_new = before[-1][opened_col] if before else 0
        base_all = sum(before[-1][3 + nmax:3 + 2 * nmax]) if before else 0
        after = [r for r in rows if r[0] <= tj + 1.0]
        last = after[-1]
        took = last[opened_col] - base_new
        all_ = sum(last[3 + nmax:3 + 2 * nmax]) - base_all
        share = took / all_ if all_ > 0 else 0
        print("%.2f %.2f %d %.3f" % (tj, settle, took, share))
        return 0
    if cmd == "window":
        lo, hi = float(argv[3]), float(argv[4])
        vals = [r[2] for r in rows if lo <= r[0] <= hi and r[2] > 0]
        print("%.4f %.4f %.4f" % (pct(vals, 0.5), pct(vals, 0.99), max(vals) if vals else float("nan")))
        return 0
    if cmd == "gp":
        with open(argv[3], "w") as out:
            out.write("t " + " ".join(names) + "\n")
            for r in rows:
                out.write("%.3f %s\n" % (r[0], " ".join("%d" % r[3 + i] for i in range(len(names)))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
