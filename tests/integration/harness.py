"""Integration test harness for tend: runs the real `tend` binary against
real processes (tests/fake-service.c) in a throw-away directory.

Python 3.11 standard library only.  A test script looks like:

    from harness import *

    def test_something():
        t = Tend('''
            services:
              api:
                command: ["{fake}", "--name", "api", "--port", "{port}"]
                ready: {tcp: "127.0.0.1:{port}", timeout: 10s}
            ''', port=free_port())
        t.wait_state("api", "ready")
        t.signal(signal.SIGTERM)
        assert t.wait_exit() == 0

    if __name__ == "__main__":
        run([test_something])

Environment:
  TEND_BIN        absolute path of the tend binary (default: build/src/cli/tend)
  FAKE_SERVICE    absolute path of fake-service (default: build/tests/fake-service)
  TEND_TEST_SLOW  multiplier for every timeout and timing bound (default 1;
                  use 3-10 under ASan/valgrind or on a loaded machine)
  TEND_TEST_KEEP  set to 1 to keep temp dirs of passing tests too
  TEND_TEST_VERBOSE  set to 1 to echo tend's output live to stderr

Every Tend instance writes tend's raw output to <dir>/tend.out as it
arrives.  Instances created by a test are cleaned up by run() when the test
ends: tend's process group, every pid the test tracked (spawned pids seen
in the log, pid files read) and any process still running with its cwd or
command line inside the temp dir are SIGKILLed; the dir is removed on
success and kept (path and last 80 lines printed) on failure.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import urllib.error
import urllib.request

__all__ = [
    "Tend", "Skip", "SLOW", "TEND_BIN", "FAKE", "slow", "wait_for", "pid_alive",
    "pids_alive", "wait_pids_gone", "read_pidfile", "free_port", "run", "run_tend",
    "http_get", "cmd", "signal", "os", "re", "time", "json", "textwrap",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))

SLOW = float(os.environ.get("TEND_TEST_SLOW") or "1")
if SLOW <= 0:
    SLOW = 1.0
TEND_BIN = os.environ.get("TEND_BIN") or os.path.join(_REPO, "build", "src", "cli", "tend")
FAKE = os.environ.get("FAKE_SERVICE") or os.path.join(_REPO, "build", "tests", "fake-service")
KEEP = os.environ.get("TEND_TEST_KEEP") == "1"
VERBOSE = os.environ.get("TEND_TEST_VERBOSE") == "1"
# TEND_VALGRIND=1 runs every `tend up` under memcheck; a memory error or a
# definite leak makes tend exit 99, which fails the test that expected 0.
VALGRIND = (["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
             "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
             "--child-silent-after-fork=yes", "--trace-children=no"]
            if os.environ.get("TEND_VALGRIND") == "1" else [])

STATE_RE = re.compile(r"^state (\S+) -> (\S+)(?: \((.*)\))?$")
SPAWNED_RE = re.compile(r"^spawned pid (\d+)")


class Skip(Exception):
    """Raise from a test to report it as skipped (e.g. a flag not supported yet)."""


def slow(seconds):
    """A duration or timing bound scaled by TEND_TEST_SLOW."""
    return seconds * SLOW


def wait_for(predicate, timeout=10.0, interval=0.02, what=None):
    """Polls predicate() until it returns something truthy and returns that.
    timeout is scaled by TEND_TEST_SLOW.  Raises AssertionError on timeout."""
    deadline = time.monotonic() + slow(timeout)
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (slow(timeout), what or getattr(predicate, "__name__", "condition")))
        time.sleep(interval)


def pid_alive(pid):
    """True if pid exists and is not a zombie (state 'Z' or 'X' in /proc/PID/stat)."""
    if not pid or pid <= 0:
        return False
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return False
    # "pid (comm) S ...": comm may contain spaces and parens; take the last ')'.
    rest = data[data.rfind(")") + 1:].split()
    if not rest:
        return False
    return rest[0] not in ("Z", "X", "x")


def pids_alive(pids):
    """The subset of pids that are still alive (zombies count as dead)."""
    return [p for p in pids if pid_alive(p)]


def wait_pids_gone(pids, timeout=10.0):
    """Waits until none of pids is alive; raises AssertionError naming the survivors."""
    pids = [p for p in pids if p]
    deadline = time.monotonic() + slow(timeout)
    while True:
        alive = pids_alive(pids)
        if not alive:
            return
        if time.monotonic() >= deadline:
            raise AssertionError("pids still alive after %.1fs: %s" % (slow(timeout), _describe_pids(alive)))
        time.sleep(0.02)


def _describe_pids(pids):
    out = []
    for p in pids:
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            cmd = "?"
        out.append("%d (%s)" % (p, cmd[:120]))
    return ", ".join(out)


def read_pidfile(path, timeout=10.0, tend=None):
    """Waits until path holds a pid and returns it (as int).  With tend=,
    the pid is tracked for cleanup."""
    def get():
        try:
            with open(path) as f:
                s = f.read().strip()
            return int(s) if s else None
        except (FileNotFoundError, ValueError):
            return None
    pid = wait_for(get, timeout, what="pid file %s" % path)
    if tend is not None:
        tend.track(pid)
    return pid


_ports_given = set()
_ports_lock = threading.Lock()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, close).
    Never returns the same port twice in one test process."""
    with _ports_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise RuntimeError("no free port found")


def http_get(url, timeout=5.0):
    """(status, body as str); status 0 and the error text when it cannot connect."""
    try:
        with urllib.request.urlopen(url, timeout=slow(timeout)) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def cmd(*args, name=None):
    """A YAML flow list (JSON) for a fake-service command line: cmd("--port", 8200).
    name= adds --name.  Paths may use the {dir} placeholder (Tend substitutes it)."""
    argv = [FAKE] + (["--name", name] if name else []) + [str(a) for a in args]
    return json.dumps(argv)


def run_tend(args, cwd=None, timeout=20.0, env=None, input=None):
    """Runs `tend ARGS...` to completion; returns subprocess.CompletedProcess
    with text stdout/stderr."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([TEND_BIN] + list(args), cwd=cwd, env=e, input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=slow(timeout))


class Record(dict):
    """One line of tend's output: the parsed JSON object, plus
    .t (time.monotonic() when the reader saw it), .n (index), .stream
    ('stdout' or 'stderr'), .raw (the line) and .is_json."""
    t = 0.0
    n = 0
    stream = "stdout"
    raw = ""
    is_json = False

    @property
    def msg(self):
        return self.get("msg", "")

    @property
    def service(self):
        return self.get("service")

    @property
    def is_output(self):
        return self.get("stream") == "output"

    def __repr__(self):
        return "<%.3f %s>" % (self.t, self.raw)


_instances = []          # Tend objects created by the current test
_instances_lock = threading.Lock()


class Tend:
    """One `tend up` run in its own temp dir.  See the module docstring.

    config: YAML text (dedented).  `{fake}` becomes the fake-service path,
    `{dir}` the temp dir, and `{KEY}` each keyword argument in subs.
    Unless the text sets them at top level, `log: {format: json}` and
    `api: {listen: ""}` are prepended (header=False disables that).
    args: extra arguments after `up -f FILE`.  start=False: call start()."""

    def __init__(self, config, args=(), start=True, header=True, env=None, name=None, **subs):
        self.name = name or _current_test_name or "tend"
        self.dir = tempfile.mkdtemp(prefix="tend-%s-" % re.sub(r"[^A-Za-z0-9_]", "_", self.name)[:40])
        self.config_path = os.path.join(self.dir, "tend.yaml")
        self.out_path = os.path.join(self.dir, "tend.out")
        self.records = []
        self.cond = threading.Condition()
        self.proc = None
        self.rc = None
        self.started_at = None
        self.tracked = set()
        self.failed = False
        self._readers = []
        self._eof = 0
        self._out = None
        text = textwrap.dedent(config).strip("\n") + "\n"
        subs = dict(subs)
        subs.setdefault("fake", FAKE)
        subs.setdefault("dir", self.dir)
        for k, v in subs.items():
            text = text.replace("{" + k + "}", str(v))
        if header:
            head = []
            if not re.search(r"(?m)^log:", text):
                head.append("log: {format: json}")
            if not re.search(r"(?m)^api:", text):
                head.append('api: {listen: ""}')
            text = "\n".join(head + [text])
        self.config = text
        with open(self.config_path, "w") as f:
            f.write(text)
        with _instances_lock:
            _instances.append(self)
        if start:
            self.start(*args, env=env)

    def path(self, *parts):
        """A path inside the temp dir."""
        return os.path.join(self.dir, *parts)

    # -- process ---------------------------------------------------------

    def start(self, *args, env=None, command="up"):
        if not os.path.exists(TEND_BIN):
            raise AssertionError("TEND_BIN %s does not exist (build first)" % TEND_BIN)
        e = dict(os.environ)
        if env:
            e.update(env)
        self.argv = VALGRIND + [TEND_BIN, command, "-f", self.config_path] + list(args)
        self._out = open(self.out_path, "a", buffering=1, errors="replace")
        self._out.write("# %s\n" % " ".join(self.argv))
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.argv, cwd=self.dir, env=e, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.pid = self.proc.pid
        for stream, name in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            th = threading.Thread(target=self._reader, args=(stream, name), daemon=True)
            th.start()
            self._readers.append(th)
        return self

    def _reader(self, stream, name):
        try:
            for raw in iter(stream.readline, b""):
                now = time.monotonic()
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                rec = Record()
                try:
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        rec.update(obj)
                        rec.is_json = True
                    else:
                        rec["msg"] = line
                except ValueError:
                    rec["msg"] = line
                rec.t = now
                rec.stream = name
                rec.raw = line
                with self.cond:
                    rec.n = len(self.records)
                    self.records.append(rec)
                    self.cond.notify_all()
                try:
                    self._out.write("%8.3f %s %s\n" % (now - self.started_at, name[3], line))
                except (ValueError, OSError):
                    pass
                if VERBOSE:
                    sys.stderr.write("  | %s\n" % line)
                m = SPAWNED_RE.match(rec.msg) if not rec.is_output else None
                if m:
                    self.tracked.add(int(m.group(1)))
        finally:
            with self.cond:
                self._eof += 1
                self.cond.notify_all()

    def output_done(self):
        """True once tend closed both stdout and stderr."""
        return self._eof >= 2

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        """Sends sig to the tend process (not its group)."""
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=20.0):
        """Waits for tend to exit and returns its exit code (negative: killed
        by that signal).  Also waits (briefly) for its output to drain."""
        try:
            self.rc = self.proc.wait(timeout=slow(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("tend did not exit within %.1fs" % slow(timeout))
        self.exited_at = time.monotonic()
        with self.cond:
            self.cond.wait_for(self.output_done, timeout=slow(5))
        return self.rc

    def stop(self, timeout=30.0):
        """Graceful: SIGTERM and wait; returns the exit code."""
        if self.running():
            self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill9(self):
        """SIGKILL to tend only (its services are left to fend for themselves)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        try:
            self.rc = self.proc.wait(timeout=slow(10))
        except subprocess.TimeoutExpired:
            raise AssertionError("tend survived SIGKILL?")
        return self.rc

    def track(self, *pids):
        """Records pids to kill at cleanup."""
        for p in pids:
            if p:
                self.tracked.add(int(p))

    # -- log queries -----------------------------------------------------

    def lines(self, stream=None):
        with self.cond:
            recs = list(self.records)
        return [r for r in recs if stream is None or r.stream == stream]

    def events(self, service=None, since=0):
        """tend's own event records (not service output), optionally for one
        service ("-" is tend itself)."""
        with self.cond:
            recs = self.records[since:]
        return [r for r in recs if not r.is_output and (service is None or r.service == service)]

    def output(self, service=None):
        """Service output records ("stream":"output")."""
        with self.cond:
            recs = list(self.records)
        return [r for r in recs if r.is_output and (service is None or r.service == service)]

    def find(self, regex, service=None, stream="events", since=0):
        """All records whose msg matches regex (re.search).  stream: 'events'
        (tend's own lines, the default), 'output' (service output), 'stderr'
        (non-JSON stderr lines too), or 'any'."""
        rx = re.compile(regex)
        with self.cond:
            recs = self.records[since:]
        return [r for r in recs if self._match(r, rx, service, stream)]

    @staticmethod
    def _match(r, rx, service, stream):
        if stream == "events" and r.is_output:
            return False
        if stream == "output" and not r.is_output:
            return False
        if stream == "stderr" and r.stream != "stderr":
            return False
        if service is not None and r.service != service:
            return False
        return rx.search(r.msg) is not None or (not r.is_json and rx.search(r.raw) is not None)

    def wait_log(self, regex, service=None, timeout=10.0, stream="events", since=0):
        """Waits for a record matching regex (see find) and returns (record,
        arrival time).  since: only records with index >= since.  Fails
        early if tend's output ends without a match."""
        rx = re.compile(regex)
        deadline = time.monotonic() + slow(timeout)
        pos = since
        with self.cond:
            while True:
                while pos < len(self.records):
                    r = self.records[pos]
                    pos += 1
                    if self._match(r, rx, service, stream):
                        return r, r.t
                if self.output_done():
                    raise AssertionError("tend's output ended (rc=%s) without a line matching %r%s"
                                         % (self.proc.poll(), regex,
                                            " for service %s" % service if service else ""))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.1fs waiting for a line matching %r%s"
                                         % (slow(timeout), regex,
                                            " for service %s" % service if service else ""))
                self.cond.wait(min(left, 0.5))

    def state_changes(self, service):
        """[(from, to, reason or None, t, record)] for the service, in order."""
        out = []
        for r in self.events(service):
            m = STATE_RE.match(r.msg)
            if m:
                out.append((m.group(1), m.group(2), m.group(3), r.t, r))
        return out

    def states(self, service):
        """The sequence of states entered by the service."""
        return [c[1] for c in self.state_changes(service)]

    def state(self, service):
        """The last state the service entered, or None."""
        s = self.states(service)
        return s[-1] if s else None

    def wait_state(self, service, to_state, timeout=10.0, since=0):
        """Waits for `state X -> to_state` for the service; returns (record, t).
        to_state may be a regex alternative like 'ready|failed'."""
        return self.wait_log(r"^state \S+ -> (?:%s)(?: \(|$)" % to_state, service=service,
                             timeout=timeout, since=since)

    def first_time(self, service, to_state):
        """Arrival time of the first `-> to_state` record, or None."""
        for c in self.state_changes(service):
            if c[1] == to_state:
                return c[3]
        return None

    def spawned_pids(self, service):
        """Pids from `spawned pid N` records of the service, in order."""
        out = []
        for r in self.events(service):
            m = SPAWNED_RE.match(r.msg)
            if m:
                out.append(int(m.group(1)))
        return out

    def wait_spawns(self, service, count, timeout=10.0):
        """Waits until the service has been spawned at least count times;
        returns the [(pid, t)] list."""
        def get():
            recs = [(int(SPAWNED_RE.match(r.msg).group(1)), r.t) for r in self.events(service)
                    if SPAWNED_RE.match(r.msg)]
            return recs if len(recs) >= count else None
        return wait_for(get, timeout, what="%d spawns of %s" % (count, service))

    def tail(self, n=80):
        return [r.raw for r in self.lines()[-n:]]

    # -- cleanup ---------------------------------------------------------

    def _strays(self):
        """Pids of our processes with cwd or cmdline inside the temp dir."""
        out = []
        me = os.getpid()
        d = self.dir.encode()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid == me:
                continue
            try:
                cwd = os.readlink("/proc/%d/cwd" % pid).encode()
            except OSError:
                cwd = b""
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmd = f.read()
            except OSError:
                cmd = b""
            if cwd == d or cwd.startswith(d + b"/") or d in cmd:
                out.append(pid)
        return out

    def cleanup(self, success):
        """Kills everything this run started; removes or keeps the dir."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for _ in range(3):
            victims = set(p for p in self.tracked if pid_alive(p)) | set(self._strays())
            if not victims:
                break
            for p in victims:
                try:
                    pg = os.getpgid(p)
                    if pg not in (os.getpgrp(), 0, 1):
                        os.killpg(pg, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        for th in self._readers:
            th.join(timeout=2)
        if self._out:
            try:
                self._out.close()
            except OSError:
                pass
        if success and not KEEP:
            import shutil
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("    kept %s" % self.dir)
            if not success:
                lines = self.tail(80)
                print("    last %d lines of tend's output:" % len(lines))
                for line in lines:
                    print("    | " + line)


def _cleanup_instances(success):
    with _instances_lock:
        todo = list(_instances)
        _instances.clear()
    for t in todo:
        try:
            t.cleanup(success)
        except Exception:
            traceback.print_exc()


_current_test_name = None


def run(tests):
    """Runs each test function; prints `ok name (1.2s)`, `SKIP name: why` or
    `FAIL name: ...` with the traceback; exits 1 if any failed.  Command-line
    arguments select tests by (sub)name."""
    global _current_test_name
    selected = sys.argv[1:]
    failed = []
    print("# TEND_BIN=%s FAKE_SERVICE=%s TEND_TEST_SLOW=%g" % (TEND_BIN, FAKE, SLOW), flush=True)
    for fn in tests:
        name = fn.__name__
        if selected and not any(s in name for s in selected):
            continue
        _current_test_name = name
        t0 = time.monotonic()
        ok = False
        try:
            fn()
            ok = True
            print("ok %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
        except Skip as e:
            ok = True
            print("SKIP %s: %s" % (name, e), flush=True)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                _cleanup_instances(False)
                raise
            failed.append(name)
            print("FAIL %s (%.1fs): %s: %s" % (name, time.monotonic() - t0, type(e).__name__, e), flush=True)
            traceback.print_exc(file=sys.stdout)
        finally:
            _cleanup_instances(ok)
            _current_test_name = None
            sys.stdout.flush()
    if failed:
        print("%d failed: %s" % (len(failed), ", ".join(failed)), flush=True)
        sys.exit(1)
    sys.exit(0)


# -- HTTP over TCP or the unix socket, and expected failures -------------------
# (Added for test_api.py / test_cli_client.py; import them by name:
#  `from harness import http_request, UnixHTTPConnection, xfail`.)

import http.client  # noqa: E402


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket (tend's <state_dir>/tend.sock)."""

    def __init__(self, path, timeout=5.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def http_request(method, url, body=None, headers=None, timeout=5.0, unix=None):
    """One request without proxies; returns (status, headers, body as str)
    with header names lower-cased.  url: "http://host:port/path?q", or with
    unix=SOCKET_PATH just "/path?q".  body: str, bytes, a dict/list (sent as
    JSON) or None.  Raises OSError when it cannot connect."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
    if unix:
        conn = UnixHTTPConnection(unix, timeout=slow(timeout))
        path = url
    else:
        m = re.match(r"^http://([^/:]+)(?::(\d+))?(/.*)?$", url)
        if not m:
            raise ValueError("bad url %r" % url)
        conn = http.client.HTTPConnection(m.group(1), int(m.group(2) or 80), timeout=slow(timeout))
        path = m.group(3) or "/"
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read().decode("utf-8", "replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def xfail(reason):
    """Decorator: the test is expected to fail (a known bug, described by
    reason).  A failure is reported as SKIP "XFAIL ..."; an unexpected pass
    fails the test so that the marker gets removed with the fix."""
    def wrap(fn):
        def inner():
            try:
                fn()
            except AssertionError as e:
                raise Skip("XFAIL (%s): %s" % (reason, str(e).splitlines()[0] if str(e) else "assertion failed"))
            raise AssertionError("XPASS: expected to fail (%s) but passed; remove @xfail" % reason)
        inner.__name__ = fn.__name__
        inner.__doc__ = fn.__doc__
        return inner
    return wrap
