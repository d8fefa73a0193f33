#!/usr/bin/env python3
"""API throughput with 50 services, and whether serving it delays supervision.

1. wrk -c 32 -t 2 against GET /health and GET /metrics (3 runs each, median);
   targets: /health >= 30,000 req/s with p99 <= 5 ms, /metrics >= 5,000 req/s.
2. Readiness-detection lag: a notify service that sends READY=1 200 ms after
   it starts is restarted (POST /api/v1/services/probe/restart over the unix
   socket) 10 times idle and 10 times while wrk hammers /health; the lag is
   tend's `stage notified passed in N ms` minus the 200 ms the service waits.
"""
import http.client
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

from benchlib import (DEMO, Tend, check_binaries, config_header, free_ports, machine_info, print_header,
                      service_block, table, verdict)

N = 50
STAGE_RE = re.compile(r"^stage notified passed in (\d+) ms")


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path_)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wrk(url, seconds=5):
    out = subprocess.run(["wrk", "-c", "32", "-t", "2", "-d", "%ds" % seconds, "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        sys.exit("bench: wrk reported errors: %s" % errors.group(0))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    return rps, p99


def restart_lags(t, sock, count):
    lags = []
    for _ in range(count):
        seen = len(t.lines)
        c = UnixHTTP(sock)
        c.request("POST", "/api/v1/services/probe/restart", body="")
        c.getresponse().read()
        c.close()
        deadline = time.monotonic() + 10
        lag = None
        while time.monotonic() < deadline and lag is None:
            with t.cond:
                for _, o in t.lines[seen:]:
                    if isinstance(o, dict) and o.get("service") == "probe":
                        m = STAGE_RE.search(o.get("msg", ""))
                        if m:
                            lag = int(m.group(1)) - 200
                            break
                t.cond.wait(0.05)
        if lag is None:
            t.fail("no readiness after restart")
        lags.append(lag)
        time.sleep(0.3)
    return lags


def main():
    check_binaries()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (apt-get install wrk)")
    print_header("API load with %d services" % N)
    port = free_ports(1)[0]
    cfg = config_header("apiload", port)
    for i in range(N):
        cfg += service_block("s%d" % i, [DEMO, "--name", "s%d" % i])
    cfg += service_block("probe", [DEMO, "--name", "probe", "--notify", "--ready-delay", "0.2"],
                         ready="{name: notified, notify: true, timeout: 10s}",
                         extra="    restart: {delay: 10ms}\n")
    base = "http://127.0.0.1:%d" % port
    with Tend(cfg) as t:
        t.wait_startup()
        sock = t.dir + "/.tend/tend.sock"
        health, metrics, loads = [], [], []
        for _ in range(3):
            loads.append(loadavg())
            health.append(wrk(base + "/health"))
        for _ in range(3):
            loads.append(loadavg())
            metrics.append(wrk(base + "/metrics"))
        idle = restart_lags(t, sock, 10)
        load = []
        done = threading.Event()

        def hammer():
            while not done.is_set():
                wrk(base + "/health", 3)

        th = threading.Thread(target=hammer, daemon=True)
        th.start()
        time.sleep(1)
        load = restart_lags(t, sock, 10)
        done.set()
        th.join()
        t.stop()
    h_rps = statistics.median(r for r, _ in health)
    h_p99 = statistics.median(p for _, p in health)
    m_rps = statistics.median(r for r, _ in metrics)
    m_p99 = statistics.median(p for _, p in metrics)
    rows = [
        ["GET /health", "%.0f" % h_rps, "%.2f" % h_p99, ">= 30000 req/s, p99 <= 5 ms",
         verdict(h_rps >= 30000 and h_p99 <= 5)],
        ["GET /metrics", "%.0f" % m_rps, "%.2f" % m_p99, ">= 5000 req/s", verdict(m_rps >= 5000)],
    ]
    table(["route (wrk -c 32 -t 2, 5 s, median of 3)", "req/s", "p99 ms", "target", ""], rows)
    print("runs: /health %s; /metrics %s" % (
        ", ".join("%.0f/%.2fms" % r for r in health), ", ".join("%.0f/%.2fms" % r for r in metrics)))
    print("1-minute loadavg before each run: %s" % ", ".join("%.2f" % l for l in loads))
    print()
    rows = [["idle", "%d" % statistics.median(idle), "%d..%d" % (min(idle), max(idle))],
            ["under wrk /health", "%d" % statistics.median(load), "%d..%d" % (min(load), max(load))]]
    table(["readiness-detection lag (notify, 10 restarts)", "median ms", "range ms"], rows)


if __name__ == "__main__":
    main()
