#!/usr/bin/env python3
"""Graceful shutdown time of 50 services.

50 x demo-service (default behaviour: exits at once on SIGTERM), no
readiness stages.  Variant "flat": no dependencies (all stop in parallel).
Variant "5-wave chain": 5 waves x 10, each service of wave k depends on all
of wave k-1 (`ready`), so shutdown stops wave 5, then 4, ... then 1.

After `startup complete` (+0.5 s), SIGTERM is sent to tend;
  external = time.monotonic() just before kill() .. tend's exit seen through
             a pidfd (the kernel wakes us at exit; no polling)
  internal = N of tend's `shutdown complete in N ms`

Usage: stop50.py [--services N] [--waves W] [--runs R]
"""

import argparse
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

TARGET_MS = 100.0
SPAWNED_RE = re.compile(r"^spawned pid \d+")


def alive(pid):
    """True if pid still exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def build_config(n, waves, api_port):
    per = n // waves
    parts = [B.config_header("bench-stop", api_port, "defaults:\n  stop: {timeout: 10s}\n")]
    for i in range(n):
        w = i // per
        name = "w%ds%02d" % (w + 1, i % per)
        deps = [("w%ds%02d" % (w, j), "ready") for j in range(per)] if w > 0 else None
        parts.append(B.service_block(name, [B.DEMO, "--name", name], deps))
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--waves", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    B.check_binaries()
    B.print_header("stop50: SIGTERM to tend with %d running services, %d runs each"
                   % (a.services, a.runs))
    api_port = B.free_ports(1)[0]
    rows = []
    for waves, label in ((1, "flat (no dependencies)"), (a.waves, "%d-wave chain" % a.waves)):
        ext, intl, rcs, left = [], [], [], 0
        for _ in range(a.runs):
            with B.Tend(build_config(a.services, waves, api_port)) as t:
                t.wait_startup()
                time.sleep(0.5)
                pids = [int(o["msg"].split()[2]) for _, o in t.service_lines(SPAWNED_RE)]
                e, i, rc = t.stop()
                left += sum(1 for p in pids if alive(p))
                ext.append(e)
                intl.append(i)
                rcs.append(rc)
            time.sleep(0.2)
        em, emin, emax = B.spread(ext)
        good = [x for x in intl if x is not None]
        im, imin, imax = B.spread(good) if good else (None, None, None)
        rows.append([label, B.fmt(em), B.fmt(emin), B.fmt(emax), B.fmt(im, 0), B.fmt(imin, 0),
                     B.fmt(imax, 0), ",".join(str(r) for r in sorted(set(rcs))), left,
                     "<= %d" % TARGET_MS,
                     B.verdict(em <= TARGET_MS and set(rcs) == {0} and left == 0)])
        print("#   %s: external ms %s; internal ms %s; exit codes %s"
              % (label, ", ".join("%.1f" % x for x in ext), intl, rcs))
        sys.stdout.flush()
    print()
    B.table(["variant", "ext median ms", "ext min", "ext max", "int median ms", "int min",
             "int max", "exit code", "services left", "target ms", "result"], rows)
    print("(services left: service processes still alive after tend exited, all runs)")


if __name__ == "__main__":
    main()
