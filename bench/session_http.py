#!/usr/bin/env python3
"""Session store over HTTP, next to Redis on the same machine in the same run.

1. tend with one idle service and sessions {ttl: 1h}; N sessions (default
   10,000, 100-byte JSON string values) are PUT over one keep-alive
   connection; then wrk -c 32 -t 2 (keep-alive) for 5 s, 3 runs each:
   GET /api/v1/sessions/{random of N} (a Lua request generator), GET of one
   fixed id (no Lua), and PUT of random ids.  Target: GET >= 30,000 req/s.
2. redis-server on 127.0.0.1 (a free port, no RDB, no AOF), the same N keys
   with 100-byte values (redis-benchmark -t set -r N -d 100), then
   redis-benchmark -t get -r N -d 100 -c 32 -n 500000 (keep-alive, no
   pipelining), 3 runs.

Usage: session_http.py [N]
"""
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import (DEMO, Tend, check_binaries, config_header, free_ports, machine_info, print_header,
                      service_block, table, verdict)

VALUE = "v" * 98  # with its quotes, 100 bytes of JSON


def wrk(url, seconds=5, script=None):
    argv = ["wrk", "-c", "32", "-t", "2", "-d", "%ds" % seconds, "--latency"]
    if script:
        argv += ["-s", script]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        sys.exit("bench: wrk saw %s error responses:\n%s" % (bad.group(1), out))
    return rps, p99


def populate(port, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"data": VALUE})
    t0 = time.monotonic()
    for i in range(n):
        c.request("PUT", "/api/v1/sessions/s%d" % i, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status not in (200, 201):
            sys.exit("bench: PUT s%d: %d" % (i, r.status))
    el = time.monotonic() - t0
    c.close()
    return n / el


def redis_runs(n, runs=3):
    port = free_ports(1)[0]
    d = tempfile.mkdtemp(prefix="tend-bench-redis-")
    srv = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", d, "--daemonize", "no", "--loglevel", "warning"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                              text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        base = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-r", str(n), "-d", "100",
                "-c", "32", "-q"]
        subprocess.run(base + ["-t", "set", "-n", str(max(n * 10, 100000))], capture_output=True, check=True)
        out = []
        for _ in range(runs):
            o = subprocess.run(base + ["-t", "get", "-n", "500000"], capture_output=True, text=True,
                               check=True).stdout
            m = re.search(r"GET: ([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", o.replace("\r", "\n"))
            out.append(float(m.group(1)))
        return out
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    check_binaries()
    for tool in ("wrk", "redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(tool):
            sys.exit("bench: %s is not installed (scripts/deps.sh --bench)" % tool)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    print_header("Sessions over HTTP (%d sessions) and Redis GET" % n)
    port = free_ports(1)[0]
    cfg = config_header("sessbench", port, extra="sessions: {ttl: 1h, max_sessions: %d}\n" % max(n, 100000))
    cfg += service_block("idle", [DEMO, "--name", "idle"])
    base = "http://127.0.0.1:%d" % port
    scripts = tempfile.mkdtemp(prefix="tend-bench-lua-")
    get_lua = os.path.join(scripts, "get.lua")
    put_lua = os.path.join(scripts, "put.lua")
    with open(get_lua, "w") as f:
        f.write("math.randomseed(os.time())\n"
                "request = function()\n"
                "  return wrk.format('GET', '/api/v1/sessions/s' .. math.random(0, %d))\n"
                "end\n" % (n - 1))
    with open(put_lua, "w") as f:
        f.write("math.randomseed(os.time() + 1)\n"
                "local body = '%s'\n"
                "request = function()\n"
                "  return wrk.format('PUT', '/api/v1/sessions/s' .. math.random(0, %d),"
                " {['Content-Type'] = 'application/json'}, body)\n"
                "end\n" % (json.dumps({"data": VALUE}), n - 1))
    with Tend(cfg) as t:
        t.wait_startup()
        put_serial = populate(port, n)
        get_rand = [wrk(base + "/api/v1/sessions/s0", script=get_lua) for _ in range(3)]
        get_one = [wrk(base + "/api/v1/sessions/s1") for _ in range(3)]
        put_rand = [wrk(base + "/api/v1/sessions/s0", script=put_lua) for _ in range(3)]
        t.stop()
    # The same PUTs with persist: each answered once its SQLite commit
    # (group commit, fsync) is durable.
    cfg_p = cfg.replace("sessions: {ttl: 1h,", "sessions: {ttl: 1h, persist: true,")
    with Tend(cfg_p) as t:
        t.wait_startup()
        put_durable = [wrk(base + "/api/v1/sessions/s0", script=put_lua) for _ in range(3)]
        t.stop()
    shutil.rmtree(scripts, ignore_errors=True)
    redis = redis_runs(n)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    med = lambda runs: statistics.median(r for r, _ in runs)
    p99 = lambda runs: statistics.median(p for _, p in runs)
    rows = [
        ["tend GET /api/v1/sessions/{random}", "%.0f" % med(get_rand), "%.2f" % p99(get_rand), ">= 30000",
         verdict(med(get_rand) >= 30000)],
        ["tend GET /api/v1/sessions/{one id}", "%.0f" % med(get_one), "%.2f" % p99(get_one), "", ""],
        ["tend PUT /api/v1/sessions/{random}", "%.0f" % med(put_rand), "%.2f" % p99(put_rand), "", ""],
        ["tend PUT, persist: true (durable)", "%.0f" % med(put_durable), "%.2f" % p99(put_durable), "", ""],
        ["redis-benchmark GET (-c 32, -r N, -d 100)", "%.0f" % statistics.median(redis), "", "reference", ""],
    ]
    table(["route (wrk -c 32 -t 2, 5 s, median of 3)", "req/s", "p99 ms", "target", ""], rows)
    print("runs: get-random %s; get-one %s; put %s; redis %s" % (
        ", ".join("%.0f" % r for r, _ in get_rand), ", ".join("%.0f" % r for r, _ in get_one),
        ", ".join("%.0f" % r for r, _ in put_rand), ", ".join("%.0f" % r for r in redis)))
    print("runs: put persist %s" % ", ".join("%.0f" % r for r, _ in put_durable))
    print("populate: %d sequential PUTs on one connection: %.0f/s; load average (1 min) at the end: %s"
          % (n, put_serial, load))


if __name__ == "__main__":
    main()
