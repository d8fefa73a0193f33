#!/usr/bin/env python3
"""CPU used by tend while re-probing 100 services over HTTP every second.

100 x demo-service --port P, each with one http readiness stage
`{http: http://127.0.0.1:P/health, interval: 1s}`.  After `startup
complete` (+2 s to settle), tend's utime+stime (/proc/PID/stat, whole
process, all threads) is sampled every 10 s for --duration seconds (60 by
default); CPU% = CPU seconds / wall seconds * 100, i.e. percent of one core.
A baseline with the same 100 services and no readiness stage is measured the
same way for --baseline seconds (0 skips it) so the probe cost stands apart.

The demo services' own CPU (answering /health) is not counted: only tend's.

Usage: probe_cpu.py [--services N] [--duration S] [--baseline S]
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

TARGET_PCT = 3.0


def build_config(n, ports, probes):
    parts = [B.config_header("bench-probe", ports[-1])]
    for i in range(n):
        name = "p%03d" % i
        p = ports[i]
        ready = ("{http: http://127.0.0.1:%d/health, interval: 1s, start_interval: 50ms, "
                 "timeout: 30s}" % p) if probes else None
        parts.append(B.service_block(name, [B.DEMO, "--name", name, "--port", str(p)], ready=ready))
    return "".join(parts)


def sample(n, ports, probes, duration, step=10.0):
    """[(elapsed s, cumulative CPU s)] and the number of re-probe log lines."""
    with B.Tend(build_config(n, ports, probes)) as t:
        t.wait_startup()
        time.sleep(2.0)
        w0, c0 = time.monotonic(), t.cpu_ticks()
        pts = []
        end = w0 + duration
        while True:
            nxt = min(end, time.monotonic() + step)
            time.sleep(max(0.0, nxt - time.monotonic()))
            w, c = time.monotonic(), t.cpu_ticks()
            pts.append((w - w0, (c - c0) / B.CLK_TCK))
            if w >= end:
                break
        warnings = sum(1 for _, o in t.lines if isinstance(o, dict) and o.get("level") in
                       ("warning", "error", "err"))
        t.stop()
    return pts, warnings


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--baseline", type=float, default=30.0)
    a = ap.parse_args()
    B.check_binaries()
    B.print_header("probe_cpu: %d services, http readiness re-probed every 1 s, %.0f s sample"
                   % (a.services, a.duration))
    ports = B.free_ports(a.services + 1)  # the last one for the API
    rows = []
    runs = [(True, a.duration, "http probe every 1s")]
    if a.baseline > 0:
        runs.append((False, a.baseline, "no probes (baseline)"))
    for probes, dur, label in runs:
        pts, warns = sample(a.services, ports, probes, dur)
        secs, cpu = pts[-1]
        pct = cpu / secs * 100.0
        # per 10 s window, to show the spread
        win, prev = [], (0.0, 0.0)
        for p in pts:
            if p[0] > prev[0]:
                win.append((p[1] - prev[1]) / (p[0] - prev[0]) * 100.0)
            prev = p
        m, lo, hi = B.spread(win)
        per_probe = (cpu * 1e6 / (a.services * secs)) if probes else None
        rows.append([label, "%.1f" % secs, "%.2f" % cpu, "%.2f" % pct, "%.2f" % m,
                     "%.2f-%.2f" % (lo, hi), B.fmt(per_probe, 0), warns,
                     "<= 3" if probes else "-", B.verdict(pct <= TARGET_PCT) if probes else "-"])
        print("#   %s: cumulative (s, cpu s) %s" % (label, ", ".join("(%.0f, %.2f)" % p for p in pts)))
        sys.stdout.flush()
    print()
    B.table(["variant", "wall s", "cpu s", "CPU % (whole)", "CPU % 10s-window median",
             "window range", "us per probe", "warn/err lines", "target %", "result"], rows)
    print("(CPU %% of one core; clock tick %d Hz, so 1 tick = %.2f%% over 60 s)"
          % (B.CLK_TCK, 100.0 / B.CLK_TCK / 60.0))


if __name__ == "__main__":
    main()
