#!/usr/bin/env python3
"""Startup overhead of dependency waves.

5 waves x 10 services; every service is demo-service becoming ready 200 ms
after it starts; each service of wave k depends on ALL services of wave k-1
with condition `ready`.  The critical path is 5 x 200 ms = 1000 ms, so

  external overhead = (time.monotonic() just before Popen(tend up) until the
                       `startup complete` line arrives on tend's stdout) - 1000 ms
  internal overhead = N of tend's own `startup complete in N ms` - 1000 ms

Variants: sd_notify readiness (`--notify --ready-delay 0.2`, stage
{notify: true}) and http probes (`--port P --ready-delay 0.2`, stage
{http: .../health, start_interval: 20ms and 10ms}).

The breakdown columns:
  tend start = Popen .. tend's first log line arrives (process start, dynamic
               linking, config load; in the external figure only)
and, from tend's own JSON log timestamps (ms):
  wave gap   = last `-> ready` of wave k-1 .. first `-> starting` of wave k
  spawn      = `-> starting` .. `spawned pid` of one service (tend's spawn call)
  wave spawn = first `-> starting` .. last `spawned pid` within one wave
  detect     = the service's own `ready` output line .. its `-> ready` in tend
               (how late tend notices readiness; the probe-granularity cost)

Usage: startup_waves.py [--runs N] [--waves W] [--per-wave P] [--variants notify,http20,http10]
"""

import argparse
import datetime
import os
import re
import statistics
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

READY_DELAY_S = 0.2
TARGETS = {"notify": 30.0, "http": 100.0}


def build_config(variant, waves, per_wave, ports):
    parts = [B.config_header("bench-waves", ports[-1])]
    k = 0
    for w in range(1, waves + 1):
        for i in range(per_wave):
            name = "w%ds%02d" % (w, i)
            deps = [("w%ds%02d" % (w - 1, j), "ready") for j in range(per_wave)] if w > 1 else None
            if variant == "notify":
                argv = [B.DEMO, "--name", name, "--notify", "--ready-delay", str(READY_DELAY_S)]
                ready = "{notify: true, timeout: 30s}"
            else:
                si = variant[len("http"):] + "ms"
                port = ports[k]
                argv = [B.DEMO, "--name", name, "--port", str(port), "--ready-delay", str(READY_DELAY_S)]
                ready = "{http: http://127.0.0.1:%d/health, start_interval: %s, timeout: 30s}" % (port, si)
            parts.append(B.service_block(name, argv, deps, ready))
            k += 1
    return "".join(parts)


def ts_ms(ts):
    d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return d.timestamp() * 1000.0


STARTING_RE = re.compile(r"^state \w+ -> starting")
SPAWNED_RE = re.compile(r"^spawned pid ")
READY_RE = re.compile(r"^state starting -> ready")


def breakdown(lines, waves, per_wave):
    """Per-run means from tend's log timestamps; see the module doc."""
    starting, spawned, ready, says_ready = {}, {}, {}, {}
    for _, o in lines:
        if not isinstance(o, dict) or "ts" not in o:
            continue
        svc, msg, t = o.get("service"), o.get("msg", ""), ts_ms(o["ts"])
        if o.get("stream") == "output":
            if msg.endswith(": ready"):
                says_ready.setdefault(svc, t)
        elif STARTING_RE.search(msg):
            starting.setdefault(svc, t)
        elif SPAWNED_RE.search(msg):
            spawned.setdefault(svc, t)
        elif READY_RE.search(msg):
            ready.setdefault(svc, t)
    names = lambda w: ["w%ds%02d" % (w, i) for i in range(per_wave)]
    gaps, spawns, spans, detects = [], [], [], []
    for w in range(1, waves + 1):
        ns = names(w)
        if w > 1:
            prev = max(ready.get(n, 0) for n in names(w - 1))
            gaps.append(min(starting.get(n, prev) for n in ns) - prev)
        spawns += [spawned[n] - starting[n] for n in ns if n in starting and n in spawned]
        if all(n in starting and n in spawned for n in ns):
            spans.append(max(spawned[n] for n in ns) - min(starting[n] for n in ns))
        detects += [ready[n] - says_ready[n] for n in ns if n in says_ready and n in ready]
    mean = lambda v: statistics.mean(v) if v else None
    return (mean(gaps), mean(spawns), mean(spans), mean(detects),
            (max(detects) if detects else None))


def run_variant(variant, runs, waves, per_wave, ports):
    ideal = waves * READY_DELAY_S * 1000.0
    ext, intl, bd = [], [], []
    cfg = build_config(variant, waves, per_wave, ports)
    for _ in range(runs):
        with B.Tend(cfg) as t:
            e, i = t.wait_startup()
            ext.append(e - ideal)
            intl.append(i - ideal)
            t.stop()
            first = (t.lines[0][0] - t.t0) * 1000.0 if t.lines else None
            bd.append((first,) + breakdown(t.lines, waves, per_wave))
        time.sleep(0.3)
    return ext, intl, bd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--waves", type=int, default=5)
    ap.add_argument("--per-wave", type=int, default=10)
    ap.add_argument("--variants", default="notify,http20,http10")
    a = ap.parse_args()
    B.check_binaries()
    B.print_header("startup_waves: %d waves x %d services, ready 200 ms after start, %d runs each"
                   % (a.waves, a.per_wave, a.runs))
    ports = B.free_ports(a.waves * a.per_wave + 1)  # the last one for the API
    print("# ports %d-%d (API on %d); ideal critical path %d ms" % (ports[0], ports[-2], ports[-1], a.waves * 200))
    rows, brows = [], []
    for v in a.variants.split(","):
        ext, intl, bd = run_variant(v, a.runs, a.waves, a.per_wave, ports)
        kind = "notify" if v == "notify" else "http"
        target = TARGETS[kind]
        label = "notify" if v == "notify" else "http start_interval %sms" % v[4:]
        em, emin, emax = B.spread(ext)
        im, imin, imax = B.spread(intl)
        rows.append([label, B.fmt(em), B.fmt(emin), B.fmt(emax), B.fmt(im, 0), B.fmt(imin, 0),
                     B.fmt(imax, 0), "<= %d" % target, B.verdict(em <= target),
                     B.verdict(im <= target)])
        med = lambda k: B.fmt(statistics.median([b[k] for b in bd if b[k] is not None]), 1)
        brows.append([label, med(0), med(1), med(2), med(3), med(4), med(5)])
        print("#   %s: external overheads %s ms; internal %s ms"
              % (label, ", ".join("%.1f" % x for x in ext), ", ".join("%.0f" % x for x in intl)))
        sys.stdout.flush()
    print()
    B.table(["variant", "ext median ms", "ext min", "ext max", "int median ms", "int min",
             "int max", "target ms", "result (ext)", "result (int)"], rows)
    print()
    print("breakdown (medians over runs; see the script's doc string):")
    B.table(["variant", "tend start ms", "wave gap ms", "spawn ms (per service)",
             "wave spawn ms (per wave)", "detect ms (mean)", "detect ms (max)"], brows)


if __name__ == "__main__":
    main()
