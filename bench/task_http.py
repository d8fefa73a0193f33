#!/usr/bin/env python3
"""Task engine throughput and memory, side by side with beanstalkd in the
same run (docs/PERFORMANCE.md, "Task engine").

  (a) durable submission through the HTTP API, bulks of 1,000 tasks per
      POST, SQLite synchronous=FULL (every commit fsynced before the 201):
      target >= 50,000 tasks/s.  beanstalkd: `put` with -f 0 (fsync every
      write) and, for reference, without fsync (-F), pipelined 1,000
      commands per round trip.
  (b) durable end to end: one submitter (bulks of 1,000, each answered
      after its fsync) while 4 pull workers reserve + ack each task over
      HTTP: target >= 10,000 tasks/s.  Two tend queues: the default (acks
      answered once queued in the fsynced group commit) and `ack: durable`
      (each ack answered after its fsync).  beanstalkd: one pipelined
      producer, 4 consumers reserve + delete, with -f 0 and -F.
  (c) 1,000,000 pending tasks in the SQLite store: tend's VmRSS (and
      VmHWM) after submitting them: target <= 64 MB.

The load comes from bench/task_load.c (built by meson as
build/bench/task_load; $TASK_LOAD overrides), one connection per thread.
tend's API is reached over TCP on 127.0.0.1 (as beanstalkd is), and also
over its unix socket for (a).  Each figure is the median of --runs runs
(default 5), with min and max.  Needs beanstalkd (scripts/deps.sh --bench).

  bench/task_http.py [--runs N] [--quick] [--tasks N] [--skip-rss] [--parts abc]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import fmt, free_ports, print_header, spread, table, verdict  # noqa: E402

LOAD = os.environ.get("TASK_LOAD") or next(
    (p for p in (os.path.join(benchlib.REPO, d, "bench", "task_load") for d in ("build", "build-taskcli"))
     if os.access(p, os.X_OK)), os.path.join(benchlib.REPO, "build", "bench", "task_load"))


def run_load(*args, timeout=900):
    r = subprocess.run([LOAD] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.exit("bench: task_load %s failed (%d): %s" % (" ".join(map(str, args)), r.returncode, r.stderr.strip()))
    import json
    return json.loads(r.stdout.strip().splitlines()[-1])


def tend_config(port, cache_kib=None):
    return ("name: taskbench\nstate_dir: .tend\napi: {listen: \"127.0.0.1:%d\"}\n"
            "log: {format: json, level: warning}\nservices: {}\n"
            "tasks:\n  workers: 10\n  queues:\n"
            "    bulk: {handler: pull, timeout: 60s}\n"
            "    e2e: {handler: {pull: true, ack: durable}, timeout: 60s, concurrency: 64}\n"
            "    e2e_async: {handler: pull, timeout: 60s, concurrency: 64}\n" % port)


def start_tend(port):
    t = benchlib.Tend(tend_config(port))
    t.start()
    sock = os.path.join(t.dir, ".tend", "tend.sock")
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if t.proc.poll() is not None or time.monotonic() > deadline:
            t.fail("tend did not start")
        time.sleep(0.05)
    time.sleep(0.3)
    return t, sock


class Beanstalkd:
    def __init__(self, port, fsync):
        self.dir = tempfile.mkdtemp(prefix="beanstalkd-bench-")
        argv = ["beanstalkd", "-l", "127.0.0.1", "-p", str(port), "-b", self.dir, "-z", "65535"]
        argv += ["-f", "0"] if fsync else ["-F"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.port = port
        import socket
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    sys.exit("bench: beanstalkd did not start")
                time.sleep(0.05)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def series(fn, runs):
    """Runs fn() runs times; returns (median, min, max, loads)."""
    vals, loads = [], []
    for _ in range(runs):
        loads.append(loadavg())
        vals.append(fn())
    med, lo, hi = spread(vals)
    return med, lo, hi, loads


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 runs, smaller counts")
    ap.add_argument("--tasks", type=int, default=0, help="tasks per run (default 200000 for (a), 100000 for (b))")
    ap.add_argument("--skip-rss", action="store_true", help="leave out (c)")
    ap.add_argument("--parts", default="abc", help="which of (a), (b), (c) to run, e.g. --parts a")
    ap.add_argument("--rss-tasks", type=int, default=1000000)
    args = ap.parse_args()
    if args.quick:
        args.runs = min(args.runs, 3)
    benchlib.check_binaries = lambda: None
    if not os.access(LOAD, os.X_OK):
        sys.exit("bench: %s not found (ninja -C build first, or set TASK_LOAD)" % LOAD)
    if not shutil.which("beanstalkd"):
        sys.exit("bench: beanstalkd not installed (scripts/deps.sh --bench)")
    n_a = args.tasks or (50000 if args.quick else 200000)
    n_b = args.tasks or (30000 if args.quick else 100000)
    n_bs_fsync = 3000 if args.quick else 10000   # beanstalkd -f 0 does ~fsync rate: keep it short

    print_header("task engine: tend task API vs beanstalkd (bench/task_http.py)")
    if "a" in args.parts or "b" in args.parts:
        parts_ab(args, n_a, n_b, n_bs_fsync)
    if "c" in args.parts and not args.skip_rss:
        part_c(args)


def rows_of(rs):
    return [(name, fmt(m, 0), fmt(lo, 0), fmt(hi, 0), " ".join(l)) for name, (m, lo, hi, l) in rs]


def parts_ab(args, n_a, n_b, n_bs_fsync):
    tport, bport, bport2 = free_ports(3)
    t, sock = start_tend(tport)
    tcp = "tcp:127.0.0.1:%d" % tport
    bs_f = bs_n = None
    rows_a, rows_b = [], []
    try:
        if "a" in args.parts:
            bs_f, bs_n = Beanstalkd(bport, fsync=True), Beanstalkd(bport2, fsync=False)
            a_tcp = series(lambda: run_load("submit", tcp, "bulk", n_a, 1000, 2)["rate"], args.runs)
            a_unix = series(lambda: run_load("submit", "unix:" + sock, "bulk", n_a, 1000, 2)["rate"], args.runs)
            a_one = series(lambda: run_load("submit", tcp, "bulk", n_a // 10, 1, 8)["rate"], args.runs)
            b_f = series(lambda: run_load("bput", "tcp:127.0.0.1:%d" % bport, n_bs_fsync, 1000, 2)["rate"],
                         args.runs)
            b_n = series(lambda: run_load("bput", "tcp:127.0.0.1:%d" % bport2, n_a, 1000, 2)["rate"], args.runs)
            # Fresh beanstalkd instances (empty binlogs) for (b).
            bs_f.close()
            bs_n.close()
            bs_f = bs_n = None
            rows_a = [
                ("tend POST bulk 1000, TCP, 2 conns, synchronous=FULL", a_tcp),
                ("tend POST bulk 1000, unix socket, 2 conns, synchronous=FULL", a_unix),
                ("tend POST 1 task per request, TCP, 8 conns, synchronous=FULL", a_one),
                ("beanstalkd put, -f 0 (fsync every write), pipelined 1000, 2 conns", b_f),
                ("beanstalkd put, -F (no fsync), pipelined 1000, 2 conns", b_n),
            ]
        if "b" in args.parts:
            bs_f, bs_n = Beanstalkd(bport, fsync=True), Beanstalkd(bport2, fsync=False)
            e_t = series(lambda: run_load("pull", tcp, "e2e", n_b, 1000, 4)["rate"], args.runs)
            e_ta = series(lambda: run_load("pull", tcp, "e2e_async", n_b, 1000, 4)["rate"], args.runs)
            e_bf = series(lambda: run_load("bpull", "tcp:127.0.0.1:%d" % bport, n_bs_fsync, 1000, 4)["rate"],
                          args.runs)
            e_bn = series(lambda: run_load("bpull", "tcp:127.0.0.1:%d" % bport2, n_b, 1000, 4)["rate"], args.runs)
            rows_b = [
                ("tend submit (bulk 1000) + 4 pull workers reserve+ack, TCP (default ack)", e_ta),
                ("same, queue with ack: durable (each ack after its fsync)", e_t),
                ("beanstalkd -f 0: producer + 4 consumers reserve+delete", e_bf),
                ("beanstalkd -F: producer + 4 consumers reserve+delete", e_bn),
            ]
    finally:
        for b in (bs_f, bs_n):
            if b:
                b.close()
        rss = benchlib.kb(t.proc_status()["VmRSS"]) if t.proc.poll() is None else None
        t.close()
    if rows_a:
        print("\n(a) durable submission, tasks/s (%d tasks per tend run; beanstalkd -f 0: %d)" % (n_a, n_bs_fsync))
        table(["what", "median", "min", "max", "loadavg at each run"], rows_of(rows_a))
        ra = rows_a[0][1][0]
        print("target >= 50000 tasks/s: %s (%.0f); tend / beanstalkd -f 0: %.1fx; tend / beanstalkd -F: %.2fx"
              % (verdict(ra >= 50000), ra, ra / rows_a[3][1][0], ra / rows_a[4][1][0]))
    if rows_b:
        print("\n(b) durable end to end, tasks/s (%d tasks per tend run)" % n_b)
        table(["what", "median", "min", "max", "loadavg at each run"], rows_of(rows_b))
        rb = rows_b[0][1][0]
        print("target >= 10000 tasks/s: %s (%.0f); tend / beanstalkd -f 0: %.1fx; tend / beanstalkd -F: %.2fx"
              % (verdict(rb >= 10000), rb, rb / rows_b[2][1][0], rb / rows_b[3][1][0]))
        ra2 = rows_b[1][1][0]
        print("ack: durable: %.0f tasks/s; / beanstalkd -f 0: %.1fx" % (ra2, ra2 / rows_b[2][1][0]))
    if rss:
        print("tend VmRSS after the runs: %.1f MB" % (rss / 1024.0))


def part_c(args):
    """(c) memory with args.rss_tasks pending tasks."""
    port = free_ports(1)[0]
    t, sock = start_tend(port)
    try:
        base = benchlib.kb(t.proc_status()["VmRSS"])
        t0 = time.monotonic()
        r = run_load("submit", "unix:" + sock, "bulk", args.rss_tasks, 1000, 2, timeout=1800)
        took = time.monotonic() - t0
        time.sleep(2)
        st = t.proc_status()
        rss, hwm = benchlib.kb(st["VmRSS"]), benchlib.kb(st["VmHWM"])
        db = os.path.join(t.dir, ".tend", "tend.db")
        size = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
        print("\n(c) %d pending tasks in the store (submitted at %.0f tasks/s in %.1f s, loadavg %s)"
              % (args.rss_tasks, r["rate"], took, loadavg()))
        table(["what", "MB"], [("VmRSS before", fmt(base / 1024.0)),
                               ("VmRSS with the tasks pending", fmt(rss / 1024.0)),
                               ("VmHWM (peak)", fmt(hwm / 1024.0)),
                               ("tend.db + WAL on disk", fmt(size / 1048576.0))])
        print("target <= 64 MB RSS: %s (%.1f MB, peak %.1f MB)"
              % (verdict(rss <= 64 * 1024), rss / 1024.0, hwm / 1024.0))
    finally:
        t.close()


if __name__ == "__main__":
    main()
