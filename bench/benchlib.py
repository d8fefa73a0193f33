"""Shared helpers for the tend benchmarks (Python 3 standard library only).

Each benchmark writes its tend.yaml into a fresh temporary directory
(removed afterwards), runs `tend up -f tend.yaml` with `log: {format: json}`,
and reads tend's stdout line by line on a thread, stamping each line with
time.monotonic() as it arrives.  Nothing is written outside that temporary
directory; results go to stdout only.

The reader is kept cheap, since it shares the 2 CPUs with tend and its
services while they start: it only stamps and stores the raw line, and wakes
a waiting thread only for a line that contains the waiter's hint (a
substring of the message it waits for); lines are parsed as JSON when they
are looked at, after the fact.  (Parsing each line on arrival and waking
the waiter for every one cost the harness ~12 ms of CPU during a 1 s
startup_waves run, which competed with what was measured.)

Binaries: $TEND_BIN (default build/src/cli/tend, else build/tend) and
$DEMO_BIN (default build/examples/demo-service), relative to the repository
root.  Ports: $BENCH_PORT_BASE (default 20000); the first free block is used.
tend's HTTP API (on by default at 127.0.0.1:7070) is moved to a free port of
that block so that a tend already running on this host does not collide.
"""

import contextlib
import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _default_tend():
    for rel in (("build", "src", "cli", "tend"), ("build", "tend")):
        p = os.path.join(REPO, *rel)
        if os.access(p, os.X_OK):
            return p
    return os.path.join(REPO, "build", "src", "cli", "tend")


TEND = os.environ.get("TEND_BIN") or _default_tend()
DEMO = os.environ.get("DEMO_BIN", os.path.join(REPO, "build", "examples", "demo-service"))
CLK_TCK = os.sysconf("SC_CLK_TCK")

STARTUP_RE = re.compile(r"^startup complete in (\d+) ms")
SHUTDOWN_RE = re.compile(r"^shutdown complete in (\d+) ms")


def check_binaries():
    for p in (TEND, DEMO):
        if not os.access(p, os.X_OK):
            sys.exit("bench: %s not found or not executable (run `ninja -C build` first, "
                     "or set TEND_BIN / DEMO_BIN)" % p)


# ---------------------------------------------------------------- C helpers

# The start of the C helpers' sources (spawn_floor, waves_floor): the
# headers both use and a millisecond clock; each adds its own headers.
C_PRELUDE = r"""#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}
"""


def find_cc(what):
    """The C compiler, or exit saying that `what` is skipped."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        sys.exit("%s: no C compiler (cc) found; skipped" % what)
    return cc


@contextlib.contextmanager
def c_program(cc, source, what):
    """Compiles source (-O2) into a temporary directory, removed afterwards;
    yields the executable's path."""
    d = tempfile.mkdtemp(prefix="tend-bench-%s-" % what)
    try:
        src, exe = os.path.join(d, what + ".c"), os.path.join(d, what)
        with open(src, "w") as f:
            f.write(source)
        subprocess.run([cc, "-O2", "-o", exe, src], check=True)
        yield exe
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- ports

def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # The services set SO_REUSEADDR too, so TIME_WAIT leftovers of a
        # previous run do not count as "taken".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n, base=None):
    """First block of n consecutive bindable ports at or above base."""
    if base is None:
        base = int(os.environ.get("BENCH_PORT_BASE", "20000"))
    start = base
    while start + n < 65000:
        bad = next((p for p in range(start, start + n) if not _port_free(p)), None)
        if bad is None:
            return list(range(start, start + n))
        start = bad + 1
    sys.exit("bench: no block of %d free ports above %d" % (n, base))


# ---------------------------------------------------------------- config

def yaml_str(s):
    return json.dumps(s)  # a JSON string is a valid YAML flow scalar


def yaml_argv(argv):
    return "[" + ", ".join(yaml_str(a) for a in argv) + "]"


def config_header(name, api_port, extra=""):
    """api_port: the API's TCP port (loopback), or None for listen: "" (unix
    socket only)."""
    listen = "127.0.0.1:%d" % api_port if api_port else ""
    return ("name: %s\nstate_dir: .tend\napi: {listen: %s}\nlog: {format: json, level: info}\n%s"
            "services:\n" % (name, yaml_str(listen), extra))


def service_block(name, argv, depends=None, ready=None, extra=None):
    """One service entry; ready is a YAML flow mapping string or None."""
    out = ["  %s:\n" % name, "    command: %s\n" % yaml_argv(argv)]
    if depends:
        out.append("    depends_on: {%s}\n" % ", ".join("%s: %s" % (d, c) for d, c in depends))
    if ready:
        out.append("    ready: %s\n" % ready)
    if extra:
        out.append(extra)
    return "".join(out)


# ---------------------------------------------------------------- running tend

class Tend:
    """One `tend up` run in a temporary directory.

    t0: time.monotonic() taken immediately before Popen.
    lines: [(arrival monotonic, parsed JSON object or raw str)] (parsed on
    access from what the reader stored).
    """

    def __init__(self, config_text, startup_timeout=60.0):
        self.dir = tempfile.mkdtemp(prefix="tend-bench-")
        self.config = os.path.join(self.dir, "tend.yaml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.startup_timeout = startup_timeout
        self._raw = []          # (arrival monotonic, bytes), appended by the reader
        self._parsed = []       # self._raw[:len(self._parsed)], parsed
        self._hints = []        # one per waiter: bytes, or None to wake on every line
        self.stderr = []
        self.cond = threading.Condition()
        self.eof = False
        self.proc = None
        self.pidfd = None
        self.exit_time = None

    # -- lifecycle
    def start(self):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["NO_COLOR"] = "1"
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([TEND, "up", "-f", self.config], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        try:
            self.pidfd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self.pidfd = None
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def _read_stdout(self):
        raw_lines, cond, hints = self._raw, self.cond, self._hints
        for raw in self.proc.stdout:
            t = time.monotonic()
            raw_lines.append((t, raw))  # list.append is atomic under the GIL
            for h in hints:
                if h is None or h in raw:
                    with cond:
                        cond.notify_all()
                    break
        with cond:
            self.eof = True
            cond.notify_all()

    @property
    def lines(self):
        n = len(self._raw)
        for t, raw in self._raw[len(self._parsed):n]:
            s = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                obj = json.loads(s)
            except ValueError:
                obj = s
            self._parsed.append((t, obj))
        return self._parsed

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def pid(self):
        return self.proc.pid

    def wait_line(self, pred, timeout, hint=None):
        """First line (t, obj) with pred(obj) true; None at EOF or timeout.
        hint: bytes every such line contains (the reader wakes this thread
        only for lines with it), or None to look at every line."""
        deadline = time.monotonic() + timeout
        i = 0
        with self.cond:
            self._hints.append(hint)
            try:
                while True:
                    lines = self.lines
                    while i < len(lines):
                        t, obj = lines[i]
                        i += 1
                        if isinstance(obj, dict) and pred(obj):
                            return t, obj
                    left = deadline - time.monotonic()
                    if self.eof or left <= 0:
                        return None
                    self.cond.wait(min(left, 1.0))  # 1 s: a line that came as the hint was added
            finally:
                self._hints.remove(hint)

    def wait_msg(self, regex, timeout, service="-", hint=None):
        """(arrival time, match) of the first system line matching regex."""
        r = self.wait_line(lambda o: o.get("service") == service and "stream" not in o
                           and regex.search(o.get("msg", "")), timeout, hint)
        if r is None:
            return None
        return r[0], regex.search(r[1]["msg"])

    def wait_startup(self):
        """(external ms since t0, internal ms) for `startup complete in N ms`."""
        r = self.wait_msg(STARTUP_RE, self.startup_timeout, hint=b"startup complete in ")
        if r is None:
            self.fail("no `startup complete` line")
        t, m = r
        return (t - self.t0) * 1000.0, int(m.group(1))

    def wait_exit(self, timeout):
        """Blocks until tend exits; returns the monotonic time it was seen
        to exit (pidfd: woken by the kernel at exit, no polling)."""
        if self.pidfd is not None:
            p = select.poll()
            p.register(self.pidfd, select.POLLIN)
            if not p.poll(timeout * 1000):
                return None
            t = time.monotonic()
            self.proc.wait()
        else:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
            t = time.monotonic()
        self.exit_time = t
        return t

    def stop(self, timeout=30.0):
        """SIGTERM, wait; (external ms signal->exit, internal shutdown ms, rc)."""
        t_sig = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        t_exit = self.wait_exit(timeout)
        if t_exit is None:
            self.fail("tend did not exit within %.0f s of SIGTERM" % timeout)
        r = self.wait_msg(SHUTDOWN_RE, 5.0, hint=b"shutdown complete in ")
        internal = int(r[1].group(1)) if r else None
        return (t_exit - t_sig) * 1000.0, internal, self.proc.returncode

    def fail(self, why):
        tail = [json.dumps(o) if isinstance(o, dict) else o for _, o in self.lines[-15:]]
        self.close()
        sys.exit("bench: %s\n--- last stdout lines:\n%s\n--- stderr:\n%s"
                 % (why, "\n".join(tail), "\n".join(self.stderr[-10:])))

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # tend's guard process then kills the services
                self.proc.wait()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- /proc
    def proc_status(self, pid=None):
        out = {}
        with open("/proc/%d/status" % (pid or self.proc.pid)) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
        return out

    def cpu_ticks(self, pid=None):
        with open("/proc/%d/stat" % (pid or self.proc.pid)) as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)

    def children(self):
        """Direct children of tend: (pid, comm)."""
        out = []
        for tid in os.listdir("/proc/%d/task" % self.proc.pid):
            try:
                with open("/proc/%d/task/%s/children" % (self.proc.pid, tid)) as f:
                    for p in f.read().split():
                        with open("/proc/%s/comm" % p) as c:
                            out.append((int(p), c.read().strip()))
            except OSError:
                pass
        return out

    def service_lines(self, regex):
        return [(t, o) for t, o in self.lines
                if isinstance(o, dict) and "stream" not in o and regex.search(o.get("msg", ""))]


def kb(status_value):
    return int(status_value.split()[0])


# ---------------------------------------------------------------- reporting

def spread(values):
    v = sorted(values)
    return statistics.median(v), v[0], v[-1]


def table(headers, rows):
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.rjust(w[i]) if i else c.ljust(w[i])
                                       for i, c in enumerate(r)) + " |"
    print(line(cells[0]))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in cells[1:]:
        print(line(r))
    sys.stdout.flush()


def fmt(x, nd=1):
    return "-" if x is None else ("%.*f" % (nd, x))


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = "%.1f GiB" % (int(line.split()[1]) / 1048576.0)
    except OSError:
        pass
    try:
        ver = subprocess.run([TEND, "version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        ver = "?"
    try:
        built = datetime.datetime.fromtimestamp(os.stat(TEND).st_mtime, datetime.timezone.utc)
        ver += " (binary built %s)" % built.strftime("%Y-%m-%d %H:%M UTC")
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "?"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "ram": mem,
        "tend": ver,
        "commit": commit or "?",
        "load": load,
        "python": platform.python_version(),
    }


def print_header(title):
    m = machine_info()
    print("# %s" % title)
    print("# %s | nproc %s | %s | kernel %s | RAM %s | loadavg %s"
          % (m["date"], m["nproc"], m["cpu"], m["kernel"], m["ram"], m["load"]))
    print("# %s | git HEAD %s | %s" % (m["tend"], m["commit"], TEND))
    sys.stdout.flush()


def verdict(ok):
    return "PASS" if ok else "FAIL"
