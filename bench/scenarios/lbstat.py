#!/usr/bin/python3
"""Polls the lb's admin /stats for the benchmark scenarios.

  lbstat.py up ADMIN N TIMEOUT_S          wait until >= N backends are up
  lbstat.py state ADMIN ID STATES TIMEOUT_S [SINCE_NS]
                                          wait until backend ID's state is one of
                                          STATES (comma list, 'gone' = absent);
                                          prints the milliseconds it took, counted
                                          from SINCE_NS (wall clock, `date +%s%N`)
                                          when given
  lbstat.py dump ADMIN                    one line per backend
  lbstat.py hap SOCKET SERVER STATES TIMEOUT_S [SINCE_NS]
                                          the same wait as 'state' for a server of
                                          HAProxy's backend, read from its stats
                                          socket (states as HAProxy names them:
                                          UP, DOWN, MAINT, ...)

Every wait is bounded by its timeout; exit status 1 when it runs out.
"""
import json
import socket
import sys
import time
import urllib.request


def stats(admin):
    with urllib.request.urlopen("http://%s/stats" % admin, timeout=1) as r:
        return json.load(r)


def backends(admin):
    try:
        return stats(admin).get("backends", [])
    except Exception:
        return None


def hap_states(sock_path):
    """Server name -> status from HAProxy's 'show stat' CSV."""
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(1)
        s.connect(sock_path)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
    except OSError:
        return None
    lines = data.decode().splitlines()
    if not lines or not lines[0].startswith("# "):
        return None
    cols = lines[0][2:].split(",")
    si, ni = cols.index("status"), cols.index("svname")
    out = {}
    for line in lines[1:]:
        f = line.split(",")
        if len(f) > si:
            out[f[ni]] = f[si].split()[0] if f[si] else ""
    return out


def main(argv):
    cmd = argv[1]
    admin = argv[2]
    t0 = time.monotonic()
    if cmd == "dump":
        for b in backends(admin) or []:
            print("%s %s %s active=%s total=%s failures=%s" % (
                b.get("id"), b.get("addr"), b.get("state"), b.get("active"),
                b.get("total"), b.get("failures")))
        return 0
    if cmd == "up":
        want, deadline = int(argv[3]), t0 + float(argv[4])
        while time.monotonic() < deadline:
            bs = backends(admin)
            if bs is not None and sum(1 for b in bs if b.get("state") == "up") >= want:
                return 0
            time.sleep(0.05)
        print("lbstat: fewer than %d backends up after %ss: %s" % (want, argv[4], backends(admin)),
              file=sys.stderr)
        return 1
    if cmd == "state":
        bid, states, deadline = argv[3], argv[4].split(","), t0 + float(argv[5])
        # Counting from the caller's timestamp includes this interpreter's
        # start-up, which would otherwise hide the first tens of milliseconds.
        since_ns = int(argv[6]) if len(argv) > 6 else time.time_ns()
        while time.monotonic() < deadline:
            bs = backends(admin)
            if bs is not None:
                st = next((b.get("state") for b in bs if b.get("id") == bid), "gone")
                if st in states:
                    print("%.0f" % ((time.time_ns() - since_ns) / 1e6))
                    return 0
            time.sleep(0.02)
        print("lbstat: %s not in %s after %ss" % (bid, argv[4], argv[5]), file=sys.stderr)
        return 1
    if cmd == "hap":
        srv, states, deadline = argv[3], argv[4].split(","), t0 + float(argv[5])
        since_ns = int(argv[6]) if len(argv) > 6 else time.time_ns()
        while time.monotonic() < deadline:
            st = hap_states(admin)
            if st is not None and st.get(srv, "gone") in states:
                print("%.0f" % ((time.time_ns() - since_ns) / 1e6))
                return 0
            time.sleep(0.02)
        print("lbstat: %s not in %s after %ss" % (srv, argv[4], argv[5]), file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
