"""Checks for deploy/systemd/try-units.sh: a worker or an lb run by systemd.

  try_probe.py worker WORKER
  try_probe.py lb WORKER LB ADMIN TLS CERT LBLOG

SC (environment) runs a command next to that systemd (nsenter ...)."""

import asyncio
import os
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "integration"))
import util  # noqa: E402

SC = os.environ.get("SC", "").split()
results = {}


def check(name, ok, detail=""):
    results[name] = bool(ok)
    print("  %-34s %s%s" % (name, "ok" if ok else "FAIL ", "" if ok else str(detail)[:600]))


def up(addr, timeout=15):
    try:
        util.wait_for(lambda: (util.try_http_get(addr, "/healthz") or [0])[0] == 200, timeout,
                      "%s to serve" % addr)
        return True
    except AssertionError:
        return False


def worker(addr):
    url = "ws://%s/eval" % addr
    if not up(addr):
        check("worker serves", False, "no /healthz 200")
        return
    iso = [k for k in util.get_metrics(addr) if k.startswith("worker_isolation_info")]
    check("isolation full", any('level="full"' in k for k in iso), iso)
    r = util.run_eval(url, "python3", "print(6*7)")
    check("python3", r.exit and r.exit["verdict"] == "ok" and r.stdout == "42\n", r.exit)
    r = util.run_eval(url, "sh", "id -u; hostname")
    out = r.stdout.split()
    check("sh: slot uid, own hostname", r.exit and r.exit["verdict"] == "ok" and len(out) == 2
          and out[0].startswith("610") and out[1] == "sandbox", (r.exit, r.stdout))
    r = util.run_eval(url, "c", '#include <stdio.h>\nint main(void){puts("c ok");return 0;}')
    check("c: build and run", r.exit and r.stdout == "c ok\n", (r.exit, r.stderr))
    r = util.run_eval(url, "python3", "b = bytearray(600*1024*1024)\nprint('survived')")
    check("memory limit", r.exit and r.exit["verdict"] != "ok" and "survived" not in r.stdout,
          r.exit)
    r = util.run_eval(url, "sh", "sleep 100 & sleep 100 & sleep 100", timeout_ms=800)
    check("timeout kills forked children", r.exit and r.exit["verdict"] == "timeout", r.exit)
    r = util.run_eval(url, "sh", "echo after")
    check("slot usable again", r.exit and r.stdout == "after\n", r.exit)
    r = util.run_eval(url, "sh", "head -1 /proc/meminfo; ls /proc/sys | head -1")
    check("the run's /proc is complete", r.exit and r.stdout.startswith("MemTotal"), r.stdout)
    r = util.run_eval(url, "c", "#include <sys/mman.h>\n#include <stdio.h>\nint main(void){"
                      "void *p = mmap(0, 4096, PROT_READ|PROT_WRITE|PROT_EXEC, "
                      "MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);"
                      "puts(p == MAP_FAILED ? \"denied\" : \"ok\");return 0;}")
    check("W+X memory (JIT runtimes)", r.exit and r.stdout == "ok\n", (r.exit, r.stdout))

    async def stop_during_a_run():
        ws = await util.ws_connect(url)
        await util.recv_hello(ws)
        await util.send_json(ws, util.run_msg("sh", "echo start; sleep 2; echo finished", "long"))
        first = await util.recv_json(ws)
        stop = subprocess.Popen(SC + ["systemctl", "stop", "wslb-worker.service"])
        rest = await asyncio.wait_for(util.collect_run(ws, "long"), 30)
        code = await util.expect_closed(ws, 15)
        stop.wait(60)
        return first, rest, code
    try:
        first, rest, code = asyncio.run(stop_during_a_run())
    except Exception as e:  # a run that failed at once ends the exchange early
        check("systemctl stop lets the run finish", False, repr(e))
        return
    check("systemctl stop lets the run finish", first.get("data") == "start\n" and rest.exit
          and rest.exit["verdict"] == "ok" and rest.stdout == "finished\n", (first, rest.exit))
    check("then closes with 1001", code == 1001, code)


def lb(waddr, laddr, admin, tls, cert, log):
    if not up(waddr) or not up(admin):
        check("lb and worker serve", False)
        return
    util.wait_for(lambda: any(b["state"] == "up" for b in
                              util.json.loads(util.http_get(admin, "/stats")[2])["backends"]),
                  15, "the lb to find the worker")
    r = util.run_eval("ws://%s/eval" % laddr, "python3", "print(1)")
    check("evaluation through the lb", r.exit and r.stdout == "1\n", r.exit)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False

    async def wss():
        ws = await util.ws_connect("wss://%s/eval" % tls, ssl=ctx)
        try:
            await util.recv_hello(ws)
            return await util.arun(ws, "python3", "print(2)")
        finally:
            await ws.close()
    r = asyncio.run(wss())
    check("TLS below port 1024", r.exit and r.stdout == "2\n", r.exit)
    def main_pid():
        return subprocess.run(SC + ["systemctl", "show", "-p", "MainPID", "--value",
                                    "wslb-lb.service"], stdout=subprocess.PIPE, text=True,
                              check=True).stdout.strip()
    before = main_pid()
    # A reload is a takeover: --check, then a new lb (the certificate read
    # afresh) takes the listeners and becomes the main process (MAINPID=),
    # and the old one drains (grace-s 3) and exits without failing the unit.
    subprocess.run(SC + ["systemctl", "reload", "wslb-lb.service"], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "this one stops accepting" not in open(log).read():
        time.sleep(0.1)
    check("systemctl reload hands the listeners to a new lb",
          "this one stops accepting" in open(log).read())
    # Wait for the old lb to be gone (it drains for grace-s 3) rather than
    # for a fixed time: the unit must outlive its first main process.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and os.path.exists("/proc/%s" % before):
        time.sleep(0.1)
    check("the old lb exits after its grace", not os.path.exists("/proc/%s" % before))
    active = subprocess.run(SC + ["systemctl", "is-active", "wslb-lb.service"],
                            stdout=subprocess.PIPE, text=True).stdout.strip()
    check("the unit stays active with the new lb as its main process",
          active == "active" and main_pid() not in ("0", before))
    r = util.run_eval("ws://%s/eval" % laddr, "python3", "print(3)")
    check("evaluation through the new lb", r.exit and r.stdout == "3\n", r.exit)


if __name__ == "__main__":
    {"worker": worker, "lb": lb}[sys.argv[1]](*sys.argv[2:])
    sys.exit(0 if results and all(results.values()) else 1)
