#!/usr/bin/python3
"""Fleet scale by simulation (bench/README.md, "Fleet scale").

For each fleet size (workers) and number of lbs it starts, on loopback:
  - one private redis-server for the whole run (FLUSHALL and CONFIG RESETSTAT
    between points);
  - phase A, discovery: `fleetsim --workers N` (simulated workers publishing
    the real state at the real rate) and L real `bin/lb` processes
    discovering them (health checks every 10 minutes, so in effect off: the
    simulated workers accept nothing). Once every lb lists every worker, a
    window of --window seconds measures Redis commands/s and CPU and each
    lb's CPU (/proc/PID/stat), then each lb's /stats gives the age of the
    heartbeat behind every backend's global count;
  - phase B, picks: `fleetsim --workers N --pickers L`, L in-process lbs made
    of the lb's table and discovery, picking for 10 simulated connections
    per worker, which gives the spread (max/mean), the error of the global
    counts against the workers' own and ns per pick on the discovered table.
Then `fleetsim --pick-only N` times the pick alone at several table sizes.

Writes OUT/report.md, OUT/summary.json, OUT/points.tsv, OUT/picks.tsv (the
plotted data, committed) and OUT/raw/ (logs and every fleetsim line)."""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for " + what)


class Redis:
    def __init__(self, tmp):
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.log = open(os.path.join(tmp, "redis.log"), "w")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp, "--maxclients", "15000",
             "--tcp-backlog", "4096"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.ping(), 10, "redis-server")

    def cmd(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                             capture_output=True, text=True, timeout=10)
        return out.stdout

    def ping(self):
        try:
            return self.cmd("PING").strip() == "PONG"
        except (OSError, subprocess.SubprocessError):
            return False

    def info(self):
        """INFO stats and commandstats: total commands and per-command calls and usec."""
        d = {"calls": {}, "usec": {}}
        for line in self.cmd("INFO", "all").splitlines():
            if line.startswith("total_commands_processed:"):
                d["total"] = int(line.split(":")[1])
            elif line.startswith("cmdstat_"):
                name, rest = line[8:].split(":", 1)
                kv = dict(x.split("=") for x in rest.split(","))
                d["calls"][name] = int(kv["calls"])
                d["usec"][name] = int(kv["usec"])
            elif line.startswith("used_memory:"):
                d["mem"] = int(line.split(":")[1])
        return d

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def stats(admin):
    with urllib.request.urlopen("http://%s/stats" % admin, timeout=10) as r:
        return json.load(r)


def start_lbs(bindir, redis, n, raw, tag):
    lbs = []
    for k in range(n):
        admin = "127.0.0.1:%d" % free_port()
        log = open(os.path.join(raw, "%s-lb%d.log" % (tag, k)), "w")
        p = subprocess.Popen(
            [os.path.join(bindir, "lb"), "--listen", "127.0.0.1:%d" % free_port(), "--admin",
             admin, "--redis", redis, "--id", "fleet-lb%d" % k, "--threads", "1",
             "--health-interval-ms", "600000", "--fall", "100", "--log-level", "warn",
             "--access-log=false"],
            stdout=log, stderr=subprocess.STDOUT)
        lbs.append((p, admin, log))
    return lbs


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def parse_result(text):
    for line in text.splitlines():
        if line.startswith("RESULT "):
            out = {}
            for kv in line.split()[1:]:
                k, v = kv.split("=", 1)
                try:
                    out[k] = float(v) if "." in v else int(v)
                except ValueError:
                    out[k] = v
            return out
    raise RuntimeError("no RESULT line in: " + text[-500:])


def phase_a(args, redis, n, L, raw):
    """Real lbs discovering n simulated workers: Redis and lb figures."""
    redis.cmd("FLUSHALL")
    redis.cmd("CONFIG", "RESETSTAT")
    tag = "a-w%d-l%d" % (n, L)
    lbs = start_lbs(args.bin, redis.addr, L, raw, tag)
    simlog = open(os.path.join(raw, tag + "-fleetsim.txt"), "w")
    sim = subprocess.Popen(
        [os.path.join(args.bin, "fleetsim"), "--redis", redis.addr, "--workers", str(n),
         "--duration", "600"], stdout=simlog, stderr=subprocess.STDOUT)
    procs = [sim] + [p for p, _, _ in lbs]
    try:
        t0 = time.monotonic()

        def all_found():
            for p, admin, _ in lbs:
                if p.poll() is not None:
                    raise RuntimeError("lb exited, see " + tag)
                try:
                    if len(stats(admin)["backends"]) < n:
                        return False
                except OSError:
                    return False
            return True
        wait_for(all_found, 180, "%d lbs to discover %d workers" % (L, n))
        discover_s = time.monotonic() - t0
        time.sleep(args.settle)
        i0, c0 = redis.info(), cpu_s(redis.proc.pid)
        l0 = [cpu_s(p.pid) for p, _, _ in lbs]
        s0 = cpu_s(sim.pid)
        w0 = time.monotonic()
        time.sleep(args.window)
        w = time.monotonic() - w0
        i1, c1 = redis.info(), cpu_s(redis.proc.pid)
        l1 = [cpu_s(p.pid) for p, _, _ in lbs]
        s1 = cpu_s(sim.pid)
        ages, found = [], []
        for p, admin, _ in lbs:
            st = stats(admin)["backends"]
            found.append(len(st))
            ages += [b["heartbeat_age_ms"] for b in st if b.get("heartbeat_age_ms") is not None]
        ages.sort()
        lb_cpu = [(b - a) / w * 100 for a, b in zip(l0, l1)]
        calls = {k: (i1["calls"].get(k, 0) - i0["calls"].get(k, 0)) / w for k in i1["calls"]}
        # Redis's own time per call of each command (INFO commandstats).
        usec = {k: (i1["usec"][k] - i0["usec"].get(k, 0)) /
                (i1["calls"][k] - i0["calls"].get(k, 0))
                for k in i1["calls"] if i1["calls"][k] > i0["calls"].get(k, 0)}
        return {
            "workers": n, "lbs": L, "discover_s": round(discover_s, 2),
            "discovered_min": min(found),
            "redis_ops_s": round((i1["total"] - i0["total"]) / w),
            "redis_cmds_s": {k: round(v, 1) for k, v in calls.items() if v > 0},
            "redis_usec_per_call": {k: round(v, 1) for k, v in usec.items()},
            "redis_cpu_pct": round((c1 - c0) / w * 100, 1),
            "redis_mem_mb": round(i1.get("mem", 0) / 1e6, 1),
            "lb_cpu_pct_mean": round(sum(lb_cpu) / L, 2),
            "lb_cpu_pct_max": round(max(lb_cpu), 2),
            "sim_cpu_pct": round((s1 - s0) / w * 100, 1),
            "age_ms_mean": round(sum(ages) / len(ages)) if ages else None,
            "age_ms_p99": ages[int(len(ages) * 0.99)] if ages else None,
            "age_ms_max": ages[-1] if ages else None,
        }
    finally:
        stop(procs)
        simlog.close()
        for _, _, log in lbs:
            log.close()


def phase_b(args, redis, n, L, raw, algo):
    """L in-process lbs picking for 10 simulated connections per worker."""
    redis.cmd("FLUSHALL")
    tag = "b-w%d-l%d-%s" % (n, L, algo)
    out = subprocess.run(
        [os.path.join(args.bin, "fleetsim"), "--redis", redis.addr, "--workers", str(n),
         "--pickers", str(L), "--algo", algo, "--duration", "60", "--arrive",
         str(args.arrive), "--conns", str(10 * n), "--warmup", "30", "--iters",
         str(args.iters)],
        capture_output=True, text=True, timeout=180)
    with open(os.path.join(raw, tag + ".txt"), "w") as f:
        f.write(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError("fleetsim failed: " + out.stderr[-500:])
    return parse_result(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--out", required=True)
    ap.add_argument("--workers", default="100,1000,5000")
    ap.add_argument("--lbs", default="1,5,20")
    ap.add_argument("--picks-at", default="100,1000,2000,5000,10000")
    ap.add_argument("--window", type=float, default=4.0)
    ap.add_argument("--settle", type=float, default=1.5)
    ap.add_argument("--arrive", type=float, default=3.0)
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--commit", default="")
    args = ap.parse_args()
    raw = os.path.join(args.out, "raw")
    os.makedirs(raw, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="wslb-fleet-")
    redis = Redis(tmp)
    points, picks, failed = [], [], []
    try:
        for n in [int(x) for x in args.workers.split(",")]:
            for L in [int(x) for x in args.lbs.split(",")]:
                try:
                    try:
                        a = phase_a(args, redis, n, L, raw)
                    except RuntimeError as e:
                        # A free port taken by someone else before the lb
                        # bound it: once more, on other ports.
                        print("fleet: workers=%d lbs=%d: %s; once more" % (n, L, e), flush=True)
                        a = phase_a(args, redis, n, L, raw)
                    b = phase_b(args, redis, n, L, raw, "leastconn")
                    p2c = phase_b(args, redis, n, L, raw, "p2c")
                except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                    # A point this machine cannot hold is reported, not fatal.
                    print("fleet: workers=%d lbs=%d failed: %s" % (n, L, e), flush=True)
                    failed.append({"workers": n, "lbs": L, "error": str(e)})
                    continue
                a.update({"max_over_mean": b["max_over_mean"], "pick_fail": b["pick_fail"],
                          "max_over_mean_p2c": p2c["max_over_mean"],
                          "count_err_mean": b["count_err_mean"],
                          "count_err_rel": b["count_err_rel"],
                          "pick_age_ms_mean": b["age_mean_ms"], "pick_ns_fleet": b["pick_ns"]})
                points.append(a)
                print("fleet: workers=%d lbs=%d redis %d ops/s %.1f%% CPU, lb %.2f%% CPU, "
                      "max/mean %.3f (p2c %.3f), count err %.2f, age %s ms, pick %.0f ns" %
                      (n, L, a["redis_ops_s"], a["redis_cpu_pct"], a["lb_cpu_pct_mean"],
                       a["max_over_mean"], a["max_over_mean_p2c"], a["count_err_mean"],
                       a["age_ms_mean"],
                       a["pick_ns_fleet"]), flush=True)
        for n in [int(x) for x in args.picks_at.split(",")]:
            row = {"backends": n}
            for path, extra, iters in (("tree", [], 50000), ("scan", ["--scan"], 5000)):
                out = subprocess.run([os.path.join(args.bin, "fleetsim"), "--pick-only", str(n),
                                      "--iters", str(iters)] + extra,
                                     capture_output=True, text=True, timeout=300)
                row[path + "_ns"] = parse_result(out.stdout)["ns_per_pick"]
            picks.append(row)
            print("fleet: pick at %d backends: %.0f ns (the scan: %.0f ns)" %
                  (n, row["tree_ns"], row["scan_ns"]), flush=True)
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    write(args, points, picks, failed)


def write(args, points, picks, failed):
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"commit": args.commit, "points": points, "picks": picks, "failed": failed},
                  f, indent=1)
    cols = ["workers", "lbs", "redis_ops_s", "redis_cpu_pct", "lb_cpu_pct_mean",
            "lb_cpu_pct_max", "sim_cpu_pct", "discover_s", "age_ms_mean", "age_ms_p99",
            "max_over_mean", "max_over_mean_p2c", "count_err_mean", "count_err_rel", "pick_ns_fleet"]
    with open(os.path.join(args.out, "points.tsv"), "w") as f:
        f.write("\t".join(cols) + "\n")
        for p in points:
            f.write("\t".join(str(p[c]) for c in cols) + "\n")
    with open(os.path.join(args.out, "picks.tsv"), "w") as f:
        f.write("backends\ttree_ns\tscan_ns\n")
        for p in picks:
            f.write("%d\t%.1f\t%.1f\n" % (p["backends"], p["tree_ns"], p["scan_ns"]))
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("# Fleet scale by simulation\n\n")
        f.write("Commit `%s`, %s, %d cores, load average %s.\n\n" %
                (args.commit, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))
        f.write("Command: `make bench-fleet` (bench/fleet.sh, bench/scenarios/fleet.py).\n\n")
        f.write("Phase A: `fleetsim --workers N` publishes like N workers; L real `bin/lb` "
                "discover them; %.0f s window once all are discovered. Phase B: "
                "`fleetsim --workers N --pickers L --conns 10N --arrive %g` (the lb's table and "
                "discovery in process, picking in turn; leastconn, then `--algo p2c`); "
                "its pick figure is ns per pick + release on the first picker's table at "
                "the end.\n\n" % (args.window, args.arrive))
        f.write("| workers | lbs | Redis cmds/s | Redis CPU | lb CPU (mean, max) | "
                "all discovered in | heartbeat age mean / p99 | max/mean (p2c) | count error "
                "(mean, rel.) | pick |\n|---|---|---|---|---|---|---|---|---|---|\n")
        for p in points:
            f.write("| %d | %d | %d | %.1f%% | %.2f%%, %.2f%% | %.1f s | %s / %s ms | %.2f (%.2f) | "
                    "%.2f, %.1f%% | %.2f µs |\n" %
                    (p["workers"], p["lbs"], p["redis_ops_s"], p["redis_cpu_pct"],
                     p["lb_cpu_pct_mean"], p["lb_cpu_pct_max"], p["discover_s"],
                     p["age_ms_mean"], p["age_ms_p99"], p["max_over_mean"],
                     p["max_over_mean_p2c"],
                     p["count_err_mean"], 100 * p["count_err_rel"], p["pick_ns_fleet"] / 1000))
        for p in failed:
            f.write("\nNot measured: %d workers with %d lbs: %s\n" %
                    (p["workers"], p["lbs"], p["error"]))
        f.write("\nRedis commands per second by name, and Redis's time per call:\n\n")
        for p in points:
            f.write("- %d workers, %d lbs: %s\n" % (p["workers"], p["lbs"], ", ".join(
                "%s %g (%g µs each)" % (k, v, p["redis_usec_per_call"].get(k, 0))
                for k, v in sorted(p["redis_cmds_s"].items()))))
        f.write("\nPick alone, CPU ns per pick + release (`fleetsim --pick-only N`, leastconn; "
                "`--scan`: the scan of every backend the tree replaced, still the path of "
                "retries):\n\n| backends | tree | scan |\n|---|---|---|\n")
        for p in picks:
            f.write("| %d | %.0f | %.0f |\n" % (p["backends"], p["tree_ns"], p["scan_ns"]))
        f.write("\n![fleet](fleet.svg)\n")


if __name__ == "__main__":
    sys.exit(main())
