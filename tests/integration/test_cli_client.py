"""The client commands against a running `tend up`: status, health,
start/stop/restart, logs (-n, -f), down, --url/TEND_URL/TEND_TOKEN, and
exit code 3 when no instance is reachable (SPEC 3)."""

import shutil
import subprocess
import tempfile
import textwrap
import threading
import queue

from harness import *
from harness import http_request

TOKEN = "client-test-token-0123456789"


def tend(args, cwd=None, env=None, timeout=30.0, config=None):
    """Runs `tend ARGS` with TEND_URL/TEND_TOKEN/TEND_CONFIG cleared unless
    given in env; returns CompletedProcess (text).  config= adds -f/--file
    FILE after the subcommand (--file for logs)."""
    e = {k: v for k, v in os.environ.items() if k not in ("TEND_URL", "TEND_TOKEN", "TEND_CONFIG")}
    e.update(env or {})
    args = list(args)
    if config:
        args = [args[0], "--file" if args[0] == "logs" else "-f", config] + args[1:]
    return subprocess.run([TEND_BIN] + args, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=slow(timeout))


def check(r, code, out=None, err=None):
    assert r.returncode == code, "exit %d, expected %d\nstdout: %s\nstderr: %s" % (
        r.returncode, code, r.stdout, r.stderr)
    if out:
        assert re.search(out, r.stdout), "stdout %r lacks %r" % (r.stdout, out)
    if err:
        assert re.search(err, r.stderr), "stderr %r lacks %r" % (r.stderr, err)
    return r


def one_line_error(r):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("tend: "), "stderr is not one `tend: ...` line: %r" % r.stderr
    return lines[0]


def streams(t):
    """tend_event_streams from /metrics (over the unix socket)."""
    st, _, text = http_request("GET", "/metrics", unix=t.path(".tend", "tend.sock"))
    m = re.search(r"(?m)^tend_event_streams (\d+)$", text)
    return int(m.group(1)) if m else None


PAIR = '''
    services:
      a:
        command: {a}
        ready: {tcp: "127.0.0.1:{pa}", timeout: 10s}
      b:
        command: {b}
        depends_on: {a: ready}
'''


def pair(extra_a=(), extra_b=(), **kw):
    pa = free_port()
    t = Tend(PAIR, a=cmd("--port", pa, *extra_a, name="a"), b=cmd(*extra_b, name="b"), pa=pa, **kw)
    t.wait_log(r"^startup complete", timeout=15)
    return t


# -- status ------------------------------------------------------------------

def test_status():
    t = pair()
    r = check(tend(["status"], config=t.config_path), 0)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "WAVE", "STATE", "HEALTH", "PID", "RESTARTS", "UPTIME", "STAGE"], lines
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert set(rows) == {"a", "b"}, lines
    assert [l.split()[0] for l in lines[1:]] == ["a", "b"], lines
    a, b = rows["a"], rows["b"]
    assert a[1:4] == ["1", "ready", "healthy"], a
    assert b[1:4] == ["2", "ready", "healthy"], b
    assert int(a[4]) == t.spawned_pids("a")[-1], (a, t.spawned_pids("a"))
    assert a[5] == "0" and re.match(r"^(\d+s|\d+m\d\ds|-)$", a[6]), a
    assert a[7] == "tcp", a

    # From the config's directory, without -f; and with TEND_CONFIG.
    check(tend(["status"], cwd=t.dir), 0, out=r"(?m)^a\s+1\s+ready")
    check(tend(["status"], cwd="/", env={"TEND_CONFIG": t.config_path}), 0, out=r"(?m)^b\s+2\s+ready")

    r = check(tend(["status", "--json"], config=t.config_path), 0)
    js = json.loads(r.stdout)
    assert [s["name"] for s in js] == ["a", "b"], js
    assert js[0]["wave"] == 1 and js[0]["state"] == "ready" and js[0]["pid"] == t.spawned_pids("a")[-1], js
    assert js[1]["wave"] == 2 and js[1]["health"] == "healthy", js

    r = check(tend(["status", "--json", "b"], config=t.config_path), 0)
    assert [s["name"] for s in json.loads(r.stdout)] == ["b"], r.stdout
    r = check(tend(["status", "b"], config=t.config_path), 0)
    assert [l.split()[0] for l in r.stdout.splitlines()[1:]] == ["b"], r.stdout

    r = check(tend(["status", "nope"], config=t.config_path), 1, err=r'no service "nope"')

    # After a stop the table shows it.
    check(tend(["stop", "b"], config=t.config_path), 0)
    t.wait_state("b", "stopped")
    r = check(tend(["status", "b"], config=t.config_path), 0)
    row = r.stdout.splitlines()[1].split()
    assert row[2] == "stopped" and row[4] == "-" and row[6] == "-", row
    assert t.stop() == 0


# -- health ------------------------------------------------------------------

def test_health_exit_codes():
    t = pair()
    r = check(tend(["health"], config=t.config_path), 0)
    assert r.stdout.splitlines()[0] == "healthy", r.stdout
    assert re.search(r"(?m)^\s+a\s+healthy\s+ready", r.stdout), r.stdout
    check(tend(["health", "--strict"], config=t.config_path), 0)
    r = check(tend(["health", "--json"], config=t.config_path), 0)
    h = json.loads(r.stdout)
    assert h["status"] == "healthy" and set(h["checks"]["dependencies"]) == {"a", "b"}, h

    # A stopped critical service: unhealthy, exit 1 (with and without --strict).
    check(tend(["stop", "b"], config=t.config_path), 0)
    t.wait_state("b", "stopped")
    r = check(tend(["health"], config=t.config_path), 1)
    assert r.stdout.splitlines()[0] == "unhealthy", r.stdout
    check(tend(["health", "--strict"], config=t.config_path), 1)
    r = check(tend(["health", "--json"], config=t.config_path), 1)
    assert json.loads(r.stdout)["status"] == "unhealthy"
    assert t.stop() == 0


def test_health_degraded_strict():
    p = free_port()
    t = Tend('''
        services:
          a:
            command: {a}
            ready:
              - name: port
                tcp: "127.0.0.1:{p}"
                timeout: 10s
              - name: extras
                http: http://127.0.0.1:{p}/missing
                timeout: 1s
                critical: false
        ''', a=cmd("--port", p, name="a"), p=p)
    t.wait_log(r"^startup complete", timeout=15)
    r = check(tend(["health"], config=t.config_path), 0)
    assert r.stdout.splitlines()[0] == "degraded", r.stdout
    check(tend(["health", "--strict"], config=t.config_path), 1)
    check(tend(["health", "--strict", "--json"], config=t.config_path), 1)
    assert t.stop() == 0


# -- start / stop / restart ----------------------------------------------------

def test_start_stop_restart():
    t = pair()
    cfg = t.config_path
    mark = len(t.lines())
    r = check(tend(["stop", "a"], config=cfg), 0)
    assert re.match(r"^a: (stopping|stopped)$", r.stdout.strip()), r.stdout
    t.wait_state("a", "stopped", since=mark)
    r = check(tend(["stop", "a"], config=cfg), 1)
    assert "cannot stop a while it is stopped" in one_line_error(r) and "409" in r.stderr, r.stderr

    mark = len(t.lines())
    r = check(tend(["start", "a"], config=cfg), 0)
    assert re.match(r"^a: \w+$", r.stdout.strip()), r.stdout
    t.wait_state("a", "ready", since=mark)
    r = check(tend(["start", "a"], config=cfg), 1)
    assert "409" in one_line_error(r), r.stderr

    pids = (t.spawned_pids("a")[-1], t.spawned_pids("b")[-1])
    mark = len(t.lines())
    r = check(tend(["restart", "a", "b"], config=cfg), 0)
    assert [l.split(":")[0] for l in r.stdout.splitlines()] == ["a", "b"], r.stdout
    t.wait_state("a", "ready", since=mark)
    t.wait_state("b", "ready", since=mark)
    assert t.spawned_pids("a")[-1] != pids[0] and t.spawned_pids("b")[-1] != pids[1]
    assert t.find(r"restarting in \d+ ms \(reason manual", service="a", since=mark)

    r = check(tend(["restart", "nope"], config=cfg), 1)
    assert 'no service "nope"' in one_line_error(r) and "404" in r.stderr, r.stderr
    # One bad name does not stop the others; the exit code reports it.
    mark = len(t.lines())
    r = check(tend(["restart", "nope", "b"], config=cfg), 1)
    assert "b:" in r.stdout, r.stdout
    t.wait_state("b", "ready", since=mark)
    check(tend(["restart"], config=cfg), 2, err=r"name at least one service")
    check(tend(["start", "a/b"], config=cfg), 1, err=r"invalid service name")
    for verb in ("start", "stop", "restart"):
        check(tend([verb, "--help"]), 0, out=r"usage: tend %s" % verb)
    assert t.stop() == 0


# -- logs --------------------------------------------------------------------

def test_logs():
    t = pair(extra_a=("--stdout-lines", "10"), extra_b=("--stdout-lines", "3"))
    cfg = t.config_path
    wait_for(lambda: len(t.output("a")) >= 12 and len(t.output("b")) >= 4, 5, what="service output")
    time.sleep(0.2)
    a_lines = [r.msg for r in t.output("a")]
    b_lines = [r.msg for r in t.output("b")]

    r = check(tend(["logs", "-n", "3", "a"], config=cfg), 0)
    assert r.stdout.splitlines() == a_lines[-3:], (r.stdout, a_lines)
    r = check(tend(["logs", "--lines", "5", "a"], config=cfg), 0)
    assert r.stdout.splitlines() == a_lines[-5:], (r.stdout, a_lines)
    r = check(tend(["logs", "a"], config=cfg), 0)
    assert r.stdout.splitlines() == a_lines, (r.stdout, a_lines)
    r = check(tend(["logs", "-n", "2"], config=cfg), 0)
    assert r.stdout.splitlines() == ["a | " + l for l in a_lines[-2:]] + ["b | " + l for l in b_lines[-2:]], r.stdout
    r = check(tend(["logs", "-n", "0", "a"], config=cfg), 0)
    assert r.stdout == "", r.stdout
    check(tend(["logs", "nope"], config=cfg), 1, err=r'no service "nope"')
    check(tend(["logs", "-n", "many"], config=cfg), 2)
    # From the config's directory without --file.
    r = check(tend(["logs", "-n", "1", "b"], cwd=t.dir), 0)
    assert r.stdout.splitlines() == b_lines[-1:], r.stdout
    assert t.stop() == 0


def _follow(t, args):
    """Starts `tend logs -f ...`; returns (proc, queue of stdout lines)."""
    e = {k: v for k, v in os.environ.items() if k not in ("TEND_URL", "TEND_TOKEN", "TEND_CONFIG")}
    p = subprocess.Popen([TEND_BIN, "logs", "--file", t.config_path] + args, env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    q = queue.Queue()

    def reader():
        for line in p.stdout:
            q.put(line.rstrip("\n"))
        q.put(None)
    threading.Thread(target=reader, daemon=True).start()
    t.track(p.pid)
    return p, q


def _lines_until(q, pred, timeout=10.0):
    got = []
    deadline = time.monotonic() + slow(timeout)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out; got %r" % got)
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError("tend logs -f ended; got %r" % got)
        got.append(line)
        if pred(line):
            return got


def test_logs_follow():
    """tend logs -f: the last lines, then live output of a restarted
    service; killing the client leaves tend running."""
    t = pair(extra_a=("--stdout-lines", "4"))
    wait_for(lambda: len(t.output("a")) >= 6, 5, what="service output")
    time.sleep(0.2)
    a_lines = [r.msg for r in t.output("a")]
    # A killed follower's stream is only released when tend next writes to
    # it, so count relative to what is open before each follower.
    n0 = streams(t)
    p, q = _follow(t, ["-f", "-n", "2", "a"])
    got = _lines_until(q, lambda l: l == a_lines[-1])
    assert got == a_lines[-2:], (got, a_lines)
    wait_for(lambda: streams(t) == n0 + 1, 5, what="the follower's event stream")
    mark = len(t.lines())
    check(tend(["restart", "a", "b"], config=t.config_path), 0)
    t.wait_state("a", "ready", since=mark)
    got = _lines_until(q, lambda l: l == "a: line 4 of 4")
    assert got[0].startswith("a: received SIGTERM") or got[0].startswith("a: started pid"), got
    assert any(re.match(r"^a: started pid \d+$", l) for l in got), got
    assert not any(l.startswith("b:") or " | " in l for l in got), "other service's output or prefixes: %r" % got
    p.kill()
    p.wait(timeout=5)
    assert t.running()

    # Every service: prefixed lines.
    n0 = streams(t)
    p, q = _follow(t, ["-f", "-n", "0"])
    wait_for(lambda: streams(t) == n0 + 1, 5, what="the follower's event stream")
    mark = len(t.lines())
    check(tend(["restart", "b"], config=t.config_path), 0)
    t.wait_state("b", "ready", since=mark)
    got = _lines_until(q, lambda l: re.match(r"^b \| b: started pid \d+$", l))
    assert all(l.startswith(("a | ", "b | ")) for l in got), got
    p.kill()
    p.wait(timeout=5)
    assert t.stop() == 0


# -- down --------------------------------------------------------------------

def test_down():
    t = pair(extra_b=("--term-delay", "0.5"))
    pids = [t.spawned_pids("a")[-1], t.spawned_pids("b")[-1]]
    r = tend(["down"], config=t.config_path)
    assert t.proc.poll() is not None, "tend down returned before tend exited"
    check(r, 0, err=r"shutdown requested; stopping tracked processes: b, a")
    assert r.stderr.strip().splitlines()[-1] == "tend: stopped", r.stderr
    assert t.wait_exit() == 0
    wait_pids_gone(pids, 2)
    # Nothing runs now.
    r = check(tend(["down"], config=t.config_path), 3)
    assert "no running instance" in one_line_error(r)
    check(tend(["down", "--timeout", "soon"], config=t.config_path), 2, err=r"invalid duration")


def _detach_config(d, service_args, ready_timeout="20s"):
    path = os.path.join(d, "tend.yaml")
    with open(path, "w") as f:
        f.write(textwrap.dedent('''
            name: det
            api: {listen: ""}
            log: {format: json}
            services:
              a:
                command: %s
                ready: {notify: true, timeout: %s}
                restart: {policy: "no"}
            ''') % (cmd(*service_args, name="a"), ready_timeout))
    return path


def _kill_if_alive(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_detach():
    """tend up --detach returns once startup has succeeded (exit 0, the pid
    and the log named); the instance answers tend status at once and
    stops with tend down, leaving no process.  When startup fails: exit
    1, the log named, nothing left running."""
    d = tempfile.mkdtemp(prefix="tend-test-detach-")
    cfg = _detach_config(d, ["--notify", "--ready-delay", "0.3"])
    r = check(tend(["up", "--detach"], config=cfg, cwd=d), 0, out=r"^tend: det started \(pid \d+\); log: ")
    pid = int(re.search(r"pid (\d+)", r.stdout).group(1))
    try:
        assert pid_alive(pid)
        js = json.loads(check(tend(["status", "--json"], config=cfg, cwd=d), 0).stdout)
        assert [(x["name"], x["state"]) for x in js] == [("a", "ready")], js
        child = js[0]["pid"]
        check(tend(["down"], config=cfg, cwd=d), 0)
        wait_pids_gone([pid, child], 10)
        log = open(os.path.join(d, ".tend", "tend.log")).read()
        assert "startup complete" in log and "shutdown complete" in log, log[-2000:]
    finally:
        _kill_if_alive(pid)
    shutil.rmtree(d)

    # Failures: the service exits, or never becomes ready and is stopped.
    # The parent returns once the system has stopped: the log is complete,
    # the service is gone and no instance answers.
    for args, timeout in ((["--crash-after", "0.1", "--exit-code", "3"], "20s"), (["--term-delay", "0.5"], "1s")):
        d = tempfile.mkdtemp(prefix="tend-test-detach-")
        cfg = _detach_config(d, args, timeout)
        r = check(tend(["up", "--detach"], config=cfg, cwd=d), 1, err=r"^tend: det failed to start; see \S+tend\.log")
        log = open(os.path.join(d, ".tend", "tend.log")).read()
        assert "startup failed" in log and "shutdown complete" in log, log[-2000:]
        pids = [int(p) for p in re.findall(r'"spawned pid (\d+)"', log)]
        assert pids and not any(pid_alive(p) for p in pids), (pids, log[-2000:])
        check(tend(["status"], config=cfg, cwd=d), 3)
        shutil.rmtree(d)


def test_down_refused_while_starting():
    """tend down while a service is still starting: refused with the API's
    message, exit 1; tend goes on and starts; then tend down works."""
    t = Tend('''
        services:
          slow:
            command: {c}
            ready: {notify: true, timeout: 30s}
        ''', c=cmd("--notify", "--ready-delay", "3", name="slow"))
    t.wait_log(r"^spawned pid", service="slow")
    r = check(tend(["down"], config=t.config_path), 1)
    assert "system is starting" in one_line_error(r) and "400" in r.stderr, r.stderr
    assert t.running()
    t.wait_log(r"^startup complete", timeout=20)
    check(tend(["down"], config=t.config_path), 0, err=r"stopping tracked processes: slow")
    assert t.wait_exit() == 0


def test_down_over_tcp():
    """tend down --url with TEND_TOKEN: no pid to watch, so it waits for the
    event stream to end."""
    port = free_port()
    t = Tend('''
        api: {listen: "127.0.0.1:%d", token_file: token}
        services:
          a:
            command: {a}
        ''' % port, a=cmd(name="a"), start=False)
    with open(t.path("token"), "w") as f:
        f.write(TOKEN)
    t.start()
    t.wait_log(r"^startup complete")
    url = "http://127.0.0.1:%d" % port
    check(tend(["down", "--url", url]), 1, err=r"401")
    assert t.running()
    r = check(tend(["down", "--url", url], env={"TEND_TOKEN": TOKEN}), 0)
    wait_for(lambda: t.proc.poll() is not None, 2, what="tend to have exited when down returned")
    assert t.wait_exit() == 0


def test_url_and_token():
    port = free_port()
    t = Tend('''
        api: {listen: "127.0.0.1:%d", token_file: token}
        services:
          a:
            command: {a}
        ''' % port, a=cmd(name="a"), start=False)
    with open(t.path("token"), "w") as f:
        f.write(TOKEN + "\n")
    t.start()
    t.wait_log(r"^startup complete")
    url = "http://127.0.0.1:%d" % port
    r = check(tend(["status", "--url", url], cwd="/"), 1)
    assert "401" in one_line_error(r), r.stderr
    check(tend(["status", "--url", url + "/"], cwd="/", env={"TEND_TOKEN": TOKEN}), 0, out=r"(?m)^a\s+1\s+ready")
    check(tend(["status"], cwd="/", env={"TEND_URL": url, "TEND_TOKEN": TOKEN}), 0, out=r"(?m)^a\s+1\s+ready")
    check(tend(["status"], cwd="/", env={"TEND_URL": url, "TEND_TOKEN": "wrong-wrong-wrong-wrong"}), 1)
    # /health is public: no token needed.
    check(tend(["health", "--url", url], cwd="/"), 0, out=r"^healthy")
    mark = len(t.lines())
    check(tend(["restart", "--url", url, "a"], cwd="/", env={"TEND_TOKEN": TOKEN}), 0)
    t.wait_state("a", "ready", since=mark)
    check(tend(["logs", "--url", url, "-n", "1", "a"], cwd="/", env={"TEND_TOKEN": TOKEN}), 0, out=r"^a: ")
    assert t.stop() == 0


# -- nothing running: exit 3 ----------------------------------------------------

CLIENT_COMMANDS = [
    ["status"], ["status", "--json"], ["health"], ["health", "--strict"],
    ["start", "a"], ["stop", "a"], ["restart", "a"],
    ["logs"], ["logs", "-f"], ["logs", "-n", "5", "a"],
    ["down"],
]


def _all_unreachable(run_one, where):
    for args in CLIENT_COMMANDS:
        r = run_one(args)
        assert r.returncode == 3, "tend %s (%s): exit %d, expected 3\nstderr: %s" % (
            " ".join(args), where, r.returncode, r.stderr)
        line = one_line_error(r)
        assert "no running instance reachable" in line, (args, line)
        assert r.stdout == "", (args, r.stdout)


def test_no_instance_exit_3():
    t = Tend('''
        services:
          a: {command: ["/bin/sleep", "60"]}
        ''', start=False)
    sock = t.path(".tend", "tend.sock")
    # Never started: no state dir at all.
    _all_unreachable(lambda a: tend(a, config=t.config_path, timeout=10), "never started")
    _all_unreachable(lambda a: tend(a, cwd=t.dir, timeout=10), "default ./tend.yaml")
    port = free_port()
    _all_unreachable(lambda a: tend([a[0], "--url", "http://127.0.0.1:%d" % port] + a[1:], cwd="/", timeout=10),
                     "--url")
    _all_unreachable(lambda a: tend(a, cwd="/", env={"TEND_URL": "http://127.0.0.1:%d" % port}, timeout=10),
                     "TEND_URL")
    # A stale socket left by a killed tend.
    t.start()
    t.wait_state("a", "ready")
    assert os.path.exists(sock)
    t.kill9()
    assert os.path.exists(sock), "expected a stale socket after SIGKILL"
    _all_unreachable(lambda a: tend(a, config=t.config_path, timeout=10), "stale socket")


if __name__ == "__main__":
    run([
        test_status,
        test_health_exit_codes,
        test_health_degraded_strict,
        test_start_stop_restart,
        test_logs,
        test_logs_follow,
        test_down,
        test_detach,
        test_down_refused_while_starting,
        test_down_over_tcp,
        test_url_and_token,
        test_no_instance_exit_3,
    ])
