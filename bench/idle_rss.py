#!/usr/bin/env python3
"""Resident memory of tend supervising 100 idle services.

Variant "no readiness": 100 x demo-service with no flags (idle until
SIGTERM), no `ready` stage.  Variant "http readiness": 100 x demo-service
--port P, each with one http readiness stage (re-probed every 5 s after
startup, the default interval).

After `startup complete`, VmRSS and VmHWM are read from /proc/PID/status of
tend's own process (not its children); for the http variant again after
`--settle` seconds (>= 2 re-probe rounds) to catch growth.  tend's helper
process `tend-guard` (a forked child that kills the services if tend dies)
is reported separately for information.

Usage: idle_rss.py [--services N] [--runs R] [--settle S]
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

TARGET_KB = 8 * 1024


def build_config(variant, n, ports):
    parts = [B.config_header("bench-rss", ports[-1])]
    for i in range(n):
        name = "idle%03d" % i
        if variant == "plain":
            parts.append(B.service_block(name, [B.DEMO, "--name", name]))
        else:
            p = ports[i]
            parts.append(B.service_block(
                name, [B.DEMO, "--name", name, "--port", str(p)],
                ready="{http: http://127.0.0.1:%d/health, start_interval: 50ms, interval: 5s, "
                      "timeout: 30s}" % p))
    return "".join(parts)


def guard_rss(t):
    for pid, comm in t.children():
        if comm == "tend-guard":
            return B.kb(t.proc_status(pid)["VmRSS"])
    return None


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reading(t):
    st = t.proc_status()
    return {"rss": B.kb(st["VmRSS"]), "hwm": B.kb(st["VmHWM"]), "anon": B.kb(st["RssAnon"]),
            "file": B.kb(st["RssFile"]), "pss": pss_kb(t.pid), "threads": int(st["Threads"])}


def top_mappings(pid, k=8):
    """The k file mappings (or [heap], [anon]) with the most resident kB."""
    rss, name = {}, None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split()
                name = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
            elif first == "Rss:":
                rss[name] = rss.get(name, 0) + int(line.split()[1])
    return sorted(rss.items(), key=lambda kv: -kv[1])[:k]


def measure(variant, n, ports, settle):
    with B.Tend(build_config(variant, n, ports)) as t:
        t.wait_startup()
        time.sleep(1.0)
        r = reading(t)
        r["top"] = top_mappings(t.pid)
        r["guard"] = guard_rss(t)
        r["fds"] = len(os.listdir("/proc/%d/fd" % t.pid))
        if settle > 0:
            time.sleep(settle)
            r["later"] = reading(t)
        t.stop()
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=11.0,
                    help="seconds after the first reading for the second one (http variant)")
    a = ap.parse_args()
    B.check_binaries()
    B.print_header("idle_rss: %d idle services, tend's own VmRSS/VmHWM, %d runs each"
                   % (a.services, a.runs))
    ports = B.free_ports(a.services + 1)  # the last one for the API
    mib = lambda kb: "-" if kb is None else "%.2f" % (kb / 1024.0)
    rows = []
    variants = (("plain", 1, "1 service, no readiness (baseline)", 0),
                ("plain", a.services, "%d services, no readiness" % a.services, 0),
                ("http", a.services, "%d services, http readiness every 5s" % a.services, a.settle))
    for variant, n, label, settle in variants:
        res = [measure(variant, n, ports, settle) for _ in range(a.runs)]
        if (variant, n) == ("plain", a.services):
            top_plain = res[0]["top"]
        med = lambda k, src=res: B.spread([r[k] for r in src if r.get(k) is not None])
        rm, rlo, rhi = med("rss")
        hm = med("hwm")[0]
        peak = hm
        later = "-"
        if settle:
            lr = [r["later"] for r in res]
            lrss, lhwm = med("rss", lr)[0], med("hwm", lr)[0]
            later = "%s / %s" % (mib(lrss), mib(lhwm))
            peak = max(peak, lhwm)
        target = n == a.services
        rows.append([label, mib(rm), "%s-%s" % (mib(rlo), mib(rhi)), mib(hm), later,
                     mib(med("anon")[0]), mib(med("file")[0]), mib(med("pss")[0]),
                     res[0]["threads"], res[0]["fds"], mib(med("guard")[0]),
                     "<= 8" if target else "-", B.verdict(peak <= TARGET_KB) if target else "-"])
        print("#   %s: VmRSS kB %s; VmHWM kB %s" % (label, [r["rss"] for r in res],
                                                     [r["hwm"] for r in res]))
        sys.stdout.flush()
    print()
    B.table(["variant", "VmRSS", "range", "VmHWM", "+%.0fs RSS / HWM" % a.settle,
             "RssAnon", "RssFile", "Pss", "threads", "fds", "tend-guard RSS",
             "target", "result"], rows)
    print("(all sizes MiB = 1024 kB, medians; result judged on the highest VmHWM seen)")
    print()
    print("largest resident mappings of tend, %s (first run, /proc/PID/smaps):" % variants[1][2])
    B.table(["mapping", "Rss kB"], top_plain)


if __name__ == "__main__":
    main()
