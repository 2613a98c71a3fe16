"""bin/wsbench as the benchmark drives it: `eval -n` (a fixed number of
evaluations, so that the worker and its bare baseline run the same count)
and `spawn` (that baseline: the same program without a worker)."""

import subprocess
import time

from conftest import binary, sanitizer_env
from lbutil import lb_factory  # noqa: F401


def result(out):
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert line, "no RESULT line:\n%s" % out[-3000:]
    return dict(kv.split("=", 1) for kv in line[-1].split()[1:] if "=" in kv)


def run(args, timeout=60):
    return subprocess.run([binary("wsbench")] + args, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, env=sanitizer_env())


def test_eval_stops_after_n_evaluations(worker):
    t0 = time.monotonic()
    r = run(["eval", "-q", "-c", "2", "-n", "5", "-d", "60",
             "ws://127.0.0.1:%d/eval" % worker.port])
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    res = result(r.stdout)
    # Exactly the count, all of them ok, and well before the duration.
    assert res["evals"] == "5", res
    assert res["v_ok"] == "5" and res["failed"] == "0", res
    assert took < 30, took
    assert float(res["duration"]) < 30, res


def test_eval_count_below_procs_is_refused():
    r = run(["eval", "-n", "1", "--procs", "2", "ws://127.0.0.1:9/eval"])
    assert r.returncode == 2, r
    assert "-n is below --procs" in r.stderr, r.stderr


def test_spawn_runs_the_program_in_its_directory(tmp_path):
    # The program checks that it runs in its slot's directory, with its file
    # written there, and says so on both pipes.
    r = run(["spawn", "-c", "2", "-n", "6", "--file", "main.sh", "--work-root", str(tmp_path),
             "--code", "case $PWD in */slot0|*/slot1) ;; *) exit 9 ;; esac; "
             "grep -q marker main.sh && echo out && echo err >&2 # marker",
             "--", "/bin/sh", "main.sh"])
    assert r.returncode == 0, r.stderr
    res = result(r.stdout)
    assert res["evals"] == "6" and res["failed"] == "0", res
    assert int(res["p50_us"]) > 0, res
    assert float(res["cpu_child_us"]) > 0, res
    # Its slot directories are removed afterwards.
    assert list(tmp_path.iterdir()) == []


def test_spawn_dir_placeholder_and_failures(tmp_path):
    # {dir} is the run's directory: here it is where the file is read from.
    r = run(["spawn", "-c", "1", "-n", "3", "--file", "p.sh", "--code", "exit 4",
             "--work-root", str(tmp_path), "--", "/bin/sh", "{dir}/p.sh"])
    assert r.returncode == 0, r.stderr
    res = result(r.stdout)
    assert res["evals"] == "0" and res["failed"] == "3", res
    assert "exit status 4" in r.stdout, r.stdout


def test_spawn_bad_arguments():
    r = run(["spawn", "-c", "2"])
    assert r.returncode == 2 and "missing COMMAND" in r.stderr, r
    r = run(["spawn", "-c", "0", "--", "/bin/true"])
    assert r.returncode == 2, r
    r = run(["spawn", "--file", "a/b", "--", "/bin/true"])
    assert r.returncode == 2 and "--file" in r.stderr, r


def test_balance_holds_without_churn_and_counts_keys(worker_factory, lb_factory):
    """`balance -L 0` holds its connections to the end; with --keys every
    connection after a key's first is a hit or a miss; --reopen reopens
    what the server ends. Through an lb with --affinity over two workers,
    every repeat of a key is a hit."""
    ws_ = [worker_factory(id="k%d" % i) for i in range(2)]
    lb = lb_factory(backend=["%s=%s" % (w.id, w.addr) for w in ws_],
                    affinity="header:X-Session", affinity_load_factor="100", slowstart_ms=0)
    r = run(["balance", "-q", "-L", "0", "-c", "12", "-r", "100", "-d", "2", "--reopen",
             "--keys", "3", "--key-header", "X-Session", lb.url("/echo")])
    assert r.returncode == 0, r.stderr
    res = result(r.stdout)
    assert res["opened"] == "12" and res["errors"] == "0", res
    # 12 connections over 3 keys drawn at random (the seed is the time):
    # one first per key drawn (1 to 3; all 3 only ~98% of the time), every
    # other connection a repeat, and every repeat on its key's worker.
    assert res["key_misses"] == "0" and 9 <= int(res["key_hits"]) <= 11, res
    assert res["closed_1012"] == "0" and res["closed_other"] == "0", res
    assert lb.stats()["affinity"]["hit"] == 12
    bad = run(["balance", "--keys", "3", "ws://127.0.0.1:9/echo"])
    assert bad.returncode == 2 and "--key-header" in bad.stderr, bad
