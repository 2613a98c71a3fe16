"""Restarts one local worker, honestly: the command the wslbctl tests give
to `wslbctl rollout --exec`.

    /usr/bin/python3 wslbctl_restart.py DIR ID

DIR/ID.json holds {"argv": [...], "pid": N, "log": PATH}. The old process
gets SIGTERM and is waited for (it drains: evaluations finish, clients get
1001, it leaves Redis); then the same argv starts a new process in a session
of its own (so it outlives this command and its process group), and its pid
is written back. The tests import start() and stop_all() from here too.

Files in DIR script what a real deploy does now and then:
  fail-once-ID    removed on use: the old worker is stopped, then the start
                  "fails" (exit 1); the next try starts it
  fail-always-ID  fails every time, before touching the worker
  long-line-ID    prints a 200 KB line
Every run ends with a line that has no newline.
"""

import json
import os
import signal
import subprocess
import sys
import time


def _state_path(d, wid):
    return os.path.join(d, wid + ".json")


def start(d, wid, argv, env=None):
    """Starts a worker process for wid from argv; returns its pid."""
    log = os.path.join(d, wid + ".log")
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=env,
                                start_new_session=True)
    with open(_state_path(d, wid), "w") as f:
        json.dump({"argv": argv, "pid": proc.pid, "log": log}, f)
    return proc.pid


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (its parent gone) counts as gone: look at its state.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(pid, sig=signal.SIGTERM, timeout=30.0):
    """Signals pid and waits for it to be gone; True when it went in time."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def stop_all(d):
    """Stops every worker recorded in d (SIGTERM, then SIGKILL); returns the
    ids that needed SIGKILL."""
    killed = []
    for name in sorted(os.listdir(d)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(d, name)) as f:
            pid = json.load(f)["pid"]
        if not stop(pid, timeout=15):
            stop(pid, signal.SIGKILL, 5)
            killed.append(name[:-5])
    return killed


def main(d, wid):
    with open(_state_path(d, wid)) as f:
        st = json.load(f)
    if os.path.exists(os.path.join(d, "fail-always-" + wid)):
        print("cannot reach %s: no route to host (scripted)" % wid, file=sys.stderr, flush=True)
        return 1
    pid = st["pid"]
    print("stopping %s (pid %d) with SIGTERM" % (wid, pid), flush=True)
    t0 = time.monotonic()
    if not stop(pid):
        print("%s did not exit within 30 s" % wid, file=sys.stderr, flush=True)
        return 1
    print("%s exited after %.1f s" % (wid, time.monotonic() - t0), flush=True)
    once = os.path.join(d, "fail-once-" + wid)
    if os.path.exists(once):
        os.unlink(once)
        print("starting %s failed: a transient error (scripted)" % wid, file=sys.stderr,
              flush=True)
        return 1
    if os.path.exists(os.path.join(d, "long-line-" + wid)):
        print("L" * 200000 + "E", flush=True)
    new = start(d, wid, st["argv"])
    print("started %s (pid %d)" % (wid, new), flush=True)
    sys.stdout.write("no newline at the end")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
