#!/usr/bin/python3
"""Polls the lb's admin /stats for the benchmark scenarios.

  lbstat.py up ADMIN N TIMEOUT_S          wait until >= N backends are up
  lbstat.py state ADMIN ID STATES TIMEOUT_S
                                          wait until backend ID's state is one of
                                          STATES (comma list, 'gone' = absent);
                                          prints the milliseconds it took
  lbstat.py dump ADMIN                    one line per backend

Every wait is bounded by its timeout; exit status 1 when it runs out.
"""
import json
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
        while time.monotonic() < deadline:
            bs = backends(admin)
            if bs is not None:
                st = next((b.get("state") for b in bs if b.get("id") == bid), "gone")
                if st in states:
                    print("%.0f" % ((time.monotonic() - t0) * 1000))
                    return 0
            time.sleep(0.02)
        print("lbstat: %s not in %s after %ss" % (bid, argv[4], argv[5]), file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
