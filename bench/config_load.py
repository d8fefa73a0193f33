#!/usr/bin/env python3
"""Configuration load time: `tend check` of generated systems.

Each system is startup_waves' shape scaled up: W waves x P services, every
service of wave k depending on all P services of wave k-1 (so P x P
dependency edges between two waves), each with an sd_notify stage.
`tend check` loads and validates the file (libyaml, every key, the
dependency checks, the graph and its waves) and prints the waves; the
figure is its wall time from Python, median of --runs, and the same for
`tend --version` (process start alone) for scale.

Usage: config_load.py [--runs N] [--shapes 5x10,10x50,10x100]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # leave no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import startup_waves as S  # noqa: E402


def wall_ms(argv, runs):
    v = []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        v.append((time.perf_counter() - t) * 1000.0)
        if r.returncode != 0:
            sys.exit("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr.decode()[:400]))
    return statistics.median(v), min(v), max(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--shapes", default="5x10,10x50,10x100")
    a = ap.parse_args()
    B.check_binaries()
    B.print_header("config_load: tend check of W waves x P services, each needing all of the wave before, "
                   "%d runs each" % a.runs)
    print()
    rows = [["(tend --version)", "-", "-", "-"] + [B.fmt(x) for x in wall_ms([B.TEND, "--version"], a.runs)]]
    with tempfile.TemporaryDirectory(prefix="tend-bench-") as d:
        for shape in a.shapes.split(","):
            w, p = (int(x) for x in shape.split("x"))
            text = S.build_config("notify", w, p, list(range(20000, 20000 + w * p + 1)))
            path = os.path.join(d, "tend-%s.yaml" % shape)
            with open(path, "w") as f:
                f.write(text)
            m = wall_ms([B.TEND, "check", "-f", path], a.runs)
            rows.append(["%d x %d" % (w, p), w * p, (w - 1) * p * p, "%.0f" % (len(text) / 1024.0)] +
                        [B.fmt(x) for x in m])
    B.table(["system", "services", "dependencies", "file KiB", "tend check median ms", "min", "max"], rows)


if __name__ == "__main__":
    main()
