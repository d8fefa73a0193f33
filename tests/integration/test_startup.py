"""Startup: dependency ordering, oneshots, stage deadlines, non-critical
failures and every kind of readiness probe."""

from harness import *


def idx_of_state(t, service, to_state):
    """Index (in tend's output) of the first `-> to_state` record, or None."""
    for c in t.state_changes(service):
        if c[1] == to_state:
            return c[4].n
    return None


def idx_of(t, regex, service):
    r = t.find(regex, service=service)
    return r[0].n if r else None


def test_graph_order():
    """a; b,c need a ready; d needs b,c ready; e needs d started; x is an
    independent slow chain that must not hold the others back."""
    pa, pb, pc, pd = free_port(), free_port(), free_port(), free_port()
    t = Tend('''
        services:
          a:
            command: {a}
            ready: {tcp: "127.0.0.1:{pa}", timeout: 20s}
          b:
            command: {b}
            depends_on: {a: ready}
            ready: {tcp: "127.0.0.1:{pb}", timeout: 20s}
          c:
            command: {c}
            depends_on: {a: ready}
            ready: {tcp: "127.0.0.1:{pc}", timeout: 20s}
          d:
            command: {d}
            depends_on: {b: ready, c: ready}
            ready: {tcp: "127.0.0.1:{pd}", timeout: 20s}
          e:
            command: {e}
            depends_on: {d: started}
          x:
            command: {x}
            ready: {notify: true, timeout: 60s}
        ''',
        pa=pa, pb=pb, pc=pc, pd=pd,
        a=cmd("--port", pa, "--ready-delay", "0.3", name="a"),
        b=cmd("--port", pb, "--ready-delay", "0.2", name="b"),
        c=cmd("--port", pc, "--ready-delay", "0.1", name="c"),
        d=cmd("--port", pd, "--ready-delay", "0.5", name="d"),
        e=cmd(name="e"),
        x=cmd("--notify", "--ready-delay", "%.1f" % slow(4), name="x"))

    t.wait_log(r"^startup complete in \d+ ms", service="-", timeout=40)
    for s in "abcdex":
        assert t.first_time(s, "ready") is not None, "%s never ready: %s" % (s, t.states(s))

    # The plan shows the waves.
    plan = [r.msg for r in t.find(r"^plan: wave \d+:", service="-")]
    waves = {}
    for m in plan:
        mm = re.match(r"^plan: wave (\d+): (.*)$", m)
        waves[int(mm.group(1))] = sorted(x.strip() for x in mm.group(2).split(","))
    assert waves.get(1) == ["a", "x"], waves
    assert waves.get(2) == ["b", "c"], waves
    assert waves.get(3) == ["d"], waves
    assert waves.get(4) == ["e"], waves

    # Each service starts only after its dependencies met their condition.
    def after(svc, dep, dep_state=None, dep_regex=None):
        s_i = idx_of_state(t, svc, "starting")
        d_i = idx_of_state(t, dep, dep_state) if dep_state else idx_of(t, dep_regex, dep)
        assert s_i is not None and d_i is not None, (svc, dep)
        assert s_i > d_i, "%s started (line %d) before %s was %s (line %d)" % (
            svc, s_i, dep, dep_state or dep_regex, d_i)
    after("b", "a", "ready")
    after("c", "a", "ready")
    after("d", "b", "ready")
    after("d", "c", "ready")
    after("e", "d", dep_regex=r"^spawned pid \d+")
    # e needs d only started: it must not wait for d to be ready.
    assert idx_of_state(t, "e", "starting") < idx_of_state(t, "d", "ready"), \
        "e waited for d to be ready"
    # The independent slow service did not hold the chain back.
    assert t.first_time("d", "ready") < t.first_time("x", "ready"), "chain waited for x"
    assert t.stop() == 0


def test_oneshot_completed():
    """api depends on migrate: completed; migrate runs once and exits 0."""
    pa = free_port()
    t = Tend('''
        services:
          migrate:
            command: {migrate}
            oneshot: true
          api:
            command: {api}
            depends_on: {migrate: completed}
            ready: {tcp: "127.0.0.1:{pa}", timeout: 20s}
        ''',
        pa=pa,
        migrate=cmd("--oneshot", "--ready-delay", "0.5", "--counter-file", "{dir}/migrate.count",
                    name="migrate"),
        api=cmd("--port", pa, name="api"))
    t.wait_state("migrate", "completed", timeout=20)
    t.wait_state("api", "ready", timeout=20)
    assert idx_of_state(t, "api", "starting") > idx_of_state(t, "migrate", "completed"), \
        "api started before migrate completed"
    t.wait_log(r"^startup complete", service="-", timeout=10)
    time.sleep(slow(0.5))
    with open(t.path("migrate.count")) as f:
        assert len(f.read().splitlines()) == 1, "the oneshot ran more than once"
    assert len(t.spawned_pids("migrate")) == 1
    assert t.stop() == 0


def test_stage_timeout_critical():
    """A critical service whose stage never passes fails the startup: tend
    stops what it started and exits 1 naming the service and the stage."""
    pa, dead = free_port(), free_port()
    t = Tend('''
        services:
          a:
            command: {a}
            ready: {tcp: "127.0.0.1:{pa}", timeout: 20s}
          b:
            command: {b}
            depends_on: {a: ready}
            ready:
              - name: port_open
                tcp: "127.0.0.1:{dead}"
                timeout: 1s
          c:
            command: {c}
        ''',
        pa=pa, dead=dead,
        a=cmd("--port", pa, "--pidfile", "{dir}/a.pid", name="a"),
        b=cmd("--pidfile", "{dir}/b.pid", name="b"),
        c=cmd("--pidfile", "{dir}/c.pid", name="c"))
    _, t_b = t.wait_state("b", "starting", timeout=20)
    pids = [read_pidfile(t.path(n + ".pid"), tend=t) for n in "abc"]
    rc = t.wait_exit(timeout=30)
    assert rc == 1, "tend exited %s, expected 1" % rc
    elapsed = t.exited_at - t_b
    assert elapsed >= 0.9, "stage deadline of 1s not honoured (%.2fs)" % elapsed
    assert elapsed < 1 + slow(6), "startup failure took %.1fs" % elapsed
    fails = t.find(r"startup failed: service b\b", stream="any")
    assert fails, "no 'startup failed: service b' line"
    assert "port_open" in fails[-1].msg, fails[-1].raw
    # The last error line names service and stage.
    errors = [r for r in t.lines() if r.get("level") == "error" or r.stream == "stderr"]
    assert errors and "service b" in errors[-1].msg and "port_open" in errors[-1].msg, \
        errors[-1].raw if errors else "no error lines"
    assert t.find(r"^stage port_open failed", service="b"), "no 'stage port_open failed' line"
    # Every started service was stopped.
    wait_pids_gone(pids + t.spawned_pids("a") + t.spawned_pids("b") + t.spawned_pids("c"), timeout=5)
    assert t.state("a") == "stopped", t.states("a")
    assert t.state("c") == "stopped", t.states("c")
    a_stop = idx_of_state(t, "a", "stopped")
    assert a_stop is not None and a_stop > idx_of(t, r"stage port_open failed", "b")


def test_noncritical_failure():
    """A non-critical service that never gets ready: its `ready` dependents
    are blocked, `started` dependents and the rest go on; tend keeps running."""
    dead, pd = free_port(), free_port()
    t = Tend('''
        services:
          flaky:
            command: {flaky}
            critical: false
            ready: {tcp: "127.0.0.1:{dead}", timeout: 1s}
          needs_ready:
            command: {nr}
            depends_on: {flaky: ready}
          needs_started:
            command: {ns}
            depends_on: {flaky: started}
          other:
            command: {other}
            ready: {tcp: "127.0.0.1:{pd}", timeout: 20s}
        ''',
        dead=dead, pd=pd,
        flaky=cmd(name="flaky"), nr=cmd(name="needs_ready"), ns=cmd(name="needs_started"),
        other=cmd("--port", pd, "--ready-delay", "0.3", name="other"))
    t.wait_state("needs_ready", "blocked", timeout=20)
    t.wait_state("needs_started", "ready", timeout=20)
    t.wait_state("other", "ready", timeout=20)
    t.wait_log(r"^stage \S+ failed", service="flaky", timeout=10)
    time.sleep(slow(0.5))
    assert t.running(), "tend exited (rc %s) after a non-critical failure" % t.proc.poll()
    assert not t.spawned_pids("needs_ready"), "a blocked service was spawned"
    assert "ready" not in t.states("flaky"), t.states("flaky")
    assert t.stop() == 0


def test_notify_readiness():
    """notify stage: READY=1 over $NOTIFY_SOCKET after --ready-delay 0.5."""
    t = Tend('''
        services:
          n:
            command: {n}
            ready: {notify: true, timeout: 20s}
        ''', n=cmd("--notify", "--ready-delay", "0.5", name="n"))
    spawned, t_spawn = t.wait_log(r"^spawned pid \d+", service="n", timeout=20)
    _, t_ready = t.wait_state("n", "ready", timeout=20)
    took = t_ready - t_spawn
    assert took >= 0.45, "ready after %.2fs, before READY=1 was sent" % took
    assert took < 0.5 + slow(2), "ready only after %.2fs" % took
    assert t.find(r"^stage \S+ passed in \d+ ms", service="n")
    assert t.stop() == 0


def test_http_expect_body():
    p1, p2 = free_port(), free_port()
    t = Tend('''
        services:
          good:
            command: {good}
            ready:
              name: body_ok
              http: "http://127.0.0.1:{p1}/health"
              expect_body: '"status":"ok"'
              start_interval: 50ms
              timeout: 20s
          bad:
            command: {bad}
            critical: false
            ready:
              name: body_wrong
              http: "http://127.0.0.1:{p2}/health"
              expect_body: "no such text"
              start_interval: 50ms
              timeout: 1s
        ''', p1=p1, p2=p2,
        good=cmd("--port", p1, "--ready-delay", "0.3", name="good"),
        bad=cmd("--port", p2, name="bad"))
    t.wait_state("good", "ready", timeout=20)
    assert t.find(r"^stage body_ok passed in \d+ ms", service="good")
    t.wait_log(r"^stage body_wrong failed", service="bad", timeout=20)
    assert "ready" not in t.states("bad")
    assert t.stop() == 0


def test_exec_stage():
    """exec stage: passes once the command exits 0 (a flag file appears)."""
    t = Tend('''
        services:
          e:
            command: {e}
            ready:
              name: flag_present
              exec: ["/bin/sh", "-c", "test -f '{dir}/flag'"]
              start_interval: 50ms
              timeout: 30s
        ''', e=cmd(name="e"))
    t.wait_log(r"^spawned pid \d+", service="e", timeout=20)
    time.sleep(0.5)
    assert "ready" not in t.states("e"), "ready before the exec probe could pass"
    with open(t.path("flag"), "w") as f:
        f.write("1")
    t_flag = time.monotonic()
    _, t_ready = t.wait_state("e", "ready", timeout=20)
    assert t_ready >= t_flag
    assert t.find(r"^stage flag_present passed in \d+ ms", service="e")
    assert t.stop() == 0


def test_multi_stage():
    """Stages run in order: tcp, then http, then http with a distinct path."""
    p = free_port()
    t = Tend('''
        services:
          api:
            command: {api}
            ready:
              - name: port_listening
                tcp: "127.0.0.1:{p}"
                timeout: 20s
              - name: api_responsive
                http: "http://127.0.0.1:{p}/health"
                expect_body: '"ok"'
                timeout: 20s
              - name: fully_operational
                http: "http://127.0.0.1:{p}/health/ready"
                timeout: 20s
        ''', p=p, api=cmd("--port", p, "--ready-delay", "0.3", name="api"))
    _, t_ready = t.wait_state("api", "ready", timeout=30)
    names = []
    for r in t.events("api"):
        m = re.match(r"^stage (\S+) passed in (\d+) ms", r.msg)
        if m:
            names.append(m.group(1))
    assert names == ["port_listening", "api_responsive", "fully_operational"], names
    assert idx_of(t, r"^stage fully_operational passed", "api") < idx_of_state(t, "api", "ready")
    assert t.stop() == 0


# A tiny HTTP server for the probe tests: answers every request on PORT
# in the way MODE names, and records each request's head in REQS.
HTTP_SERVER_PY = r"""
import socket, sys, time
port, mode, reqs = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    req = b""
    while b"\r\n\r\n" not in req:
        d = c.recv(4096)
        if not d:
            break
        req += d
    with open(reqs, "ab") as f:
        f.write(req.split(b"\r\n\r\n")[0] + b"\n--\n")
    if mode == "chunked":
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"4\r\n{\"ok\r\n5\r\n\":1}\n\r\n0\r\n\r\n")
    elif mode == "close":
        c.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 100000 + b"tail")
    elif mode == "keepopen":
        c.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        time.sleep(3)
    elif mode == "unavailable":
        c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    elif mode == "garbage":
        c.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
    c.close()
"""


def test_http_probe_responses():
    """Plain http:// probes are spoken by tend itself: the request line
    carries path and query (no fragment) and a Host header; chunked
    bodies are decoded for expect_body; a body without Content-Length is
    read to the close (its first 64 KiB checked); a Content-Length answer
    passes without waiting for the close; 503 and a non-HTTP answer fail."""
    ports = [free_port() for _ in range(5)]
    t = Tend('''
        services:
          chunked:
            command: ["python3", "{dir}/srv.py", "{p0}", "chunked", "{dir}/chunked.req"]
            ready: {http: "http://127.0.0.1:{p0}/health?deep=1#frag", expect_body: '"ok":1', start_interval: 50ms, timeout: 20s}
          close:
            command: ["python3", "{dir}/srv.py", "{p1}", "close", "{dir}/close.req"]
            ready: {http: "http://localhost:{p1}", expect_body: "xxxx", start_interval: 50ms, timeout: 20s}
          keepopen:
            command: ["python3", "{dir}/srv.py", "{p2}", "keepopen", "{dir}/keepopen.req"]
            ready: {http: "http://127.0.0.1:{p2}/", start_interval: 50ms, probe_timeout: 2s, timeout: 20s}
          unavailable:
            command: ["python3", "{dir}/srv.py", "{p3}", "unavailable", "{dir}/unavailable.req"]
            critical: false
            ready: {http: "http://127.0.0.1:{p3}/", start_interval: 100ms, timeout: 5s}
          garbage:
            command: ["python3", "{dir}/srv.py", "{p4}", "garbage", "{dir}/garbage.req"]
            critical: false
            ready: {http: "http://127.0.0.1:{p4}/", start_interval: 100ms, timeout: 5s}
        ''', start=False, p0=ports[0], p1=ports[1], p2=ports[2], p3=ports[3], p4=ports[4])
    with open(t.path("srv.py"), "w") as f:
        f.write(HTTP_SERVER_PY)
    t.start()
    t.wait_log(r"^startup complete in \d+ ms", service="-", timeout=40)
    for s in ("chunked", "close", "keepopen"):
        assert "ready" in t.states(s), "%s: %s" % (s, t.states(s))
    # 204 with Content-Length 0 on a connection the server keeps open:
    # judged at once, not at the 2 s probe timeout.
    assert not t.find(r"timed out", service="keepopen"), t.tail()
    with open(t.path("chunked.req"), "rb") as f:
        req = f.read().decode()
    assert req.startswith("GET /health?deep=1 HTTP/1.1\r\n"), repr(req)
    assert "\r\nHost: 127.0.0.1:%d\r\n" % ports[0] in req, repr(req)
    assert "Connection: close" in req, repr(req)
    with open(t.path("close.req"), "rb") as f:
        assert f.read().decode().startswith("GET / HTTP/1.1\r\n")
    t.wait_log(r"^stage http failed: .*last error: HTTP 503", service="unavailable", timeout=20)
    t.wait_log(r"^stage http failed: .*last error: malformed HTTP response", service="garbage", timeout=20)
    assert t.stop() == 0


def test_refused_connection_retried_sooner():
    """While the port refuses connections the next attempt comes after a
    quarter of start_interval: a server listening 0.3 s after start with
    start_interval 2s is seen well before 2 s; http and tcp alike.  After
    an HTTP error (the port accepts) the full start_interval applies."""
    ph, pt, pu = free_port(), free_port(), free_port()
    t = Tend('''
        services:
          h:
            command: {h}
            ready: {http: "http://127.0.0.1:{ph}/health", start_interval: 2s, timeout: 30s}
          t:
            command: {t}
            ready: {tcp: "127.0.0.1:{pt}", start_interval: 2s, timeout: 30s}
          u:
            command: ["python3", "{dir}/srv.py", "{pu}", "unavailable", "{dir}/u.req"]
            critical: false
            ready: {http: "http://127.0.0.1:{pu}/", start_interval: 1s, timeout: 2500ms}
        ''', start=False, ph=ph, pt=pt, pu=pu,
        h=cmd("--port", ph, "--ready-delay", "0.3", name="h"),
        t=cmd("--port", pt, "--ready-delay", "0.3", name="t"))
    with open(t.path("srv.py"), "w") as f:
        f.write(HTTP_SERVER_PY)
    t.start()
    t.wait_log(r"^startup complete in \d+ ms", service="-", timeout=40)
    for s in ("h", "t"):
        r = t.find(r"^stage \S+ passed in (\d+) ms", service=s)
        assert r, "%s: %s" % (s, t.states(s))
        ms = int(re.search(r"passed in (\d+) ms", r[0].msg).group(1))
        # Seen at the first quarter-interval (500 ms) attempt after 0.3 s.
        assert ms < 800 + slow(1) * 500, "%s: passed after %d ms (start_interval 2s)" % (s, ms)
    # u answers 503 at once: attempts at 0, 1 s, 2 s, never every 250 ms
    # (the first may be refused, while python is still starting).
    t.wait_log(r"^stage http failed", service="u", timeout=20)
    try:
        with open(t.path("u.req"), "rb") as f:
            n = f.read().count(b"\n--\n")
    except FileNotFoundError:
        n = 0  # python was too slow to start on a loaded machine: no answers
    assert n <= 4, "%d attempts in 2.5 s with start_interval 1s" % n
    assert t.stop() == 0


# A service that sends READY=1 from the wrong places first: from a process
# in another process group, then from a process in its own group running
# as another user; only then from itself.
NOTIFY_SENDERS_PY = r"""
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
def send(msg):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg, addr)
    s.close()
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)            # another process group, still alive when read
    send(b"READY=1")
    time.sleep(1.5)
    os._exit(0)
pid2 = os.fork()
if pid2 == 0:
    if os.geteuid() == 0:
        os.setuid(65534)        # same group, another user
    send(b"READY=1")
    time.sleep(1.5)
    os._exit(0)
print("sent from the wrong places", flush=True)
time.sleep(1.0)
print("now from the service itself", flush=True)
send(b"READY=1")
os.waitpid(pid, 0)
os.waitpid(pid2, 0)
time.sleep(60)
"""


def test_notify_foreign_senders_rejected():
    """READY=1 counts only from the service's own process group and from
    tend's user, root or the service's user: a sender in another group,
    and (when tend runs as root) one of another user, are dropped."""
    t = Tend('''
        services:
          n:
            command: ["python3", "{dir}/svc.py"]
            ready: {notify: true, timeout: 20s}
        ''', start=False)
    with open(t.path("svc.py"), "w") as f:
        f.write(NOTIFY_SENDERS_PY)
    t.start()
    t.wait_log(r"sent from the wrong places", service="n", stream="output", timeout=20)
    _, t_right = t.wait_log(r"now from the service itself", service="n", stream="output", timeout=20)
    _, t_ready = t.wait_state("n", "ready", timeout=20)
    assert t_ready >= t_right - 0.05, "ready %.2fs before the service itself sent READY=1" % (t_right - t_ready)
    assert t.stop() == 0

def test_service_environment():
    """A service's environment is tend's, with its env: on top (an inherited
    variable replaced in place, once), TEND_SERVICE and, for a notify stage,
    NOTIFY_SOCKET; two services do not see each other's variables."""
    t = Tend('''
        services:
          a:
            command: {a}
            env: {A_VAR: "a-value", TEND_TEST_REPLACED: "by-a"}
            ready: {notify: true, timeout: 20s}
          b:
            command: {b}
        ''',
        a=cmd("--notify", "--env-report", "{dir}/a.env", name="a"),
        b=cmd("--env-report", "{dir}/b.env", name="b"),
        env={"TEND_TEST_INHERITED": "from-tend", "TEND_TEST_REPLACED": "from-tend"})
    t.wait_state("a", "ready", timeout=slow(20))
    wait_for(lambda: os.path.exists(t.path("b.env")), timeout=slow(10))
    envs = {}
    for n in ("a", "b"):
        with open(t.path(n + ".env")) as f:
            envs[n] = f.read().split("\n")
    a, b = envs["a"], envs["b"]
    assert "TEND_TEST_INHERITED=from-tend" in a and "TEND_TEST_INHERITED=from-tend" in b
    assert [v for v in a if v.startswith("TEND_TEST_REPLACED=")] == ["TEND_TEST_REPLACED=by-a"], a
    assert "TEND_TEST_REPLACED=from-tend" in b
    assert "A_VAR=a-value" in a and not [v for v in b if v.startswith("A_VAR=")]
    assert "TEND_SERVICE=a" in a and "TEND_SERVICE=b" in b
    assert [v for v in a if v.startswith("NOTIFY_SOCKET=")] and not [v for v in b if v.startswith("NOTIFY_SOCKET=")]
    assert t.stop() == 0



if __name__ == "__main__":
    run([
        test_graph_order,
        test_oneshot_completed,
        test_stage_timeout_critical,
        test_noncritical_failure,
        test_notify_readiness,
        test_http_expect_body,
        test_exec_stage,
        test_multi_stage,
        test_http_probe_responses,
        test_refused_connection_retried_sooner,
        test_notify_foreign_senders_rejected,
        test_service_environment,
    ])
