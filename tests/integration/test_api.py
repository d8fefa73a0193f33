"""The HTTP API of a running `tend up` (SPEC 5 without the task and
session routes): health probes, metrics, system and service routes, the
error format and limits, bearer tokens, the unix socket, and the
Server-Sent Events stream."""

import queue
import socket
import stat
import subprocess
import threading

from harness import *
from harness import http_request

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKEN = "s3cr3t-t0ken-0123456789abcdef"


# -- helpers -----------------------------------------------------------------

def api_tend(config, token=False, listen=None, args=(), start=True, env=None, **subs):
    """A Tend serving TCP on a free loopback port (or `listen`), optionally
    with api.token_file; t.base is the URL, t.sock the unix socket path."""
    port = free_port()
    listen = listen or "127.0.0.1:%d" % port
    api = 'api: {listen: "%s"%s}\n' % (listen, ", token_file: token" if token else "")
    t = Tend(api + textwrap.dedent(config).strip("\n") + "\n", start=False, **subs)
    if token:
        with open(t.path("token"), "w") as f:
            f.write(TOKEN + "\n")
    t.api_port = int(listen.rsplit(":", 1)[1])
    t.base = "http://127.0.0.1:%d" % t.api_port
    t.sock = t.path(".tend", "tend.sock")
    if start:
        t.start(*args, env=env)
        wait_api(t)
    return t


def wait_api(t, timeout=10.0):
    def up():
        if not t.running():
            raise AssertionError("tend exited (rc=%s)" % t.proc.poll())
        try:
            return http_request("GET", t.base + "/health/live", timeout=1)[0] == 200
        except OSError:
            return False
    wait_for(up, timeout, what="the API on %s" % t.base)


def call(t, method, path, body=None, token=None, headers=None, unix=False, timeout=10.0):
    """(status, headers, parsed JSON or text)."""
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    if unix:
        st, hd, text = http_request(method, path, body=body, headers=h, unix=t.sock, timeout=timeout)
    else:
        st, hd, text = http_request(method, t.base + path, body=body, headers=h, timeout=timeout)
    if method != "HEAD" and hd.get("content-type", "").startswith("application/json"):
        try:
            return st, hd, json.loads(text)
        except ValueError:
            raise AssertionError("%s %s: invalid JSON body %r" % (method, path, text[:200]))
    return st, hd, text


def get(t, path, **kw):
    return call(t, "GET", path, **kw)


def post(t, path, body=None, **kw):
    return call(t, "POST", path, body=body, **kw)


def assert_error(resp, status, code=None, contains=None):
    st, hd, body = resp
    assert st == status, "expected %d, got %d: %r" % (status, st, body)
    assert hd.get("content-type", "").startswith("application/json"), hd
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if code:
        assert body["error"]["code"] == code, body
    if contains:
        assert contains in body["error"]["message"], body


def wait_startup(t, timeout=15.0):
    t.wait_log(r"^startup complete", timeout=timeout)


def tend_version():
    r = run_tend(["version"])
    m = re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr)
    return m.group(0) if m else None


def raw_request(t, data, unix=False, read_timeout=5.0):
    """Sends bytes as they are and returns everything read until the
    server closes (or read_timeout passes)."""
    if unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(t.sock)
    else:
        s = socket.create_connection(("127.0.0.1", t.api_port))
    s.settimeout(slow(read_timeout))
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            out += d
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
        return out
    finally:
        s.close()


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    assert m, "no status line in %r" % raw[:200]
    return int(m.group(1))


class SSE:
    """A reader of /api/v1/events in a thread: .events is a queue of
    dicts {id, event, data (parsed), raw}; .comments counts ':' lines;
    .closed is set when the server ends the stream."""

    def __init__(self, t, query="", last_event_id=None, token=None, unix=False):
        if unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(t.sock)
        else:
            s = socket.create_connection(("127.0.0.1", t.api_port))
        self.sock = s
        hdrs = "GET /api/v1/events%s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n" % query
        if last_event_id is not None:
            hdrs += "Last-Event-ID: %s\r\n" % last_event_id
        if token:
            hdrs += "Authorization: Bearer %s\r\n" % token
        s.sendall((hdrs + "\r\n").encode())
        self.events = queue.Queue()
        self.retry = None
        self.comments = 0
        self.closed = threading.Event()
        self.head = None
        self.head_ready = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()
        assert self.head_ready.wait(slow(5)), "no response head from /api/v1/events"

    def _run(self):
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = self.sock.recv(65536)
                if not d:
                    break
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            self.head = head.decode("latin-1")
            self.head_ready.set()
            chunked = re.search(r"(?i)transfer-encoding:\s*chunked", self.head) is not None
            body = _Dechunk() if chunked else None
            text = ""
            data = buf
            while True:
                if data:
                    text += (body.feed(data) if body else data).decode("utf-8", "replace")
                    while "\n\n" in text:
                        block, text = text.split("\n\n", 1)
                        self._block(block)
                    if body and body.done:
                        break
                d = self.sock.recv(65536)
                if not d:
                    break
                data = d
        except OSError:
            pass
        finally:
            self.head_ready.set()
            self.closed.set()

    def _block(self, block):
        ev = {"raw": block}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                continue
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "retry":
                self.retry = int(v)
            elif k in ("id", "event", "data"):
                ev[k] = v
        if "data" in ev:
            ev["id"] = int(ev["id"]) if "id" in ev else None
            ev["data"] = json.loads(ev["data"])
            self.events.put(ev)

    def status(self):
        m = re.match(r"HTTP/1\.[01] (\d{3})", self.head or "")
        return int(m.group(1)) if m else 0

    def next(self, timeout=10.0):
        try:
            return self.events.get(timeout=slow(timeout))
        except queue.Empty:
            raise AssertionError("no event within %.1fs" % slow(timeout))

    def collect_until(self, pred, timeout=10.0):
        """Events up to and including the first one for which pred is true."""
        out = []
        deadline = time.monotonic() + slow(timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out; events so far: %s" % [(e["id"], e["event"], e["data"]) for e in out])
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            out.append(e)
            if pred(e):
                return out

    def drain(self, quiet=0.3):
        out = []
        while True:
            try:
                out.append(self.events.get(timeout=slow(quiet)))
            except queue.Empty:
                return out

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class _Dechunk:
    def __init__(self):
        self.buf = b""
        self.done = False

    def feed(self, data):
        self.buf += data
        out = b""
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                return out
            size = int(self.buf[:i].split(b";")[0] or b"0", 16)
            if size == 0:
                self.done = True
                return out
            if len(self.buf) < i + 2 + size + 2:
                return out
            out += self.buf[i + 2:i + 2 + size]
            self.buf = self.buf[i + 2 + size + 2:]


TWO = '''
    name: apitest
    services:
      db:
        command: {db}
        ready: {tcp: "127.0.0.1:{pdb}", timeout: 10s}
      web:
        command: {web}
        depends_on: {db: ready}
        ready:
          - name: port
            tcp: "127.0.0.1:{pweb}"
            timeout: 10s
          - name: api_responsive
            http: http://127.0.0.1:{pweb}/health
            timeout: 10s
'''


def two(**kw):
    pdb, pweb = free_port(), free_port()
    t = api_tend(TWO, db=cmd("--port", pdb, name="db"), web=cmd("--port", pweb, name="web"),
                 pdb=pdb, pweb=pweb, **kw)
    t.pdb, t.pweb = pdb, pweb
    return t


# -- health --------------------------------------------------------------------

def test_health_shape():
    """GET /health: exactly the SPEC 5 document, 200 when healthy."""
    t = two()
    wait_startup(t)
    st, hd, h = get(t, "/health")
    assert st == 200, (st, h)
    assert hd["content-type"].startswith("application/json"), hd
    assert set(h) == {"status", "timestamp", "service", "checks", "metrics"}, sorted(h)
    assert h["status"] == "healthy", h
    assert RFC3339_MS.match(h["timestamp"]), h["timestamp"]
    assert set(h["service"]) == {"name", "version", "uptime_seconds"}, h["service"]
    assert h["service"]["name"] == "apitest"
    v = tend_version()
    if v:
        assert h["service"]["version"] == v, (h["service"], v)
    assert isinstance(h["service"]["uptime_seconds"], float) and h["service"]["uptime_seconds"] > 0
    c = h["checks"]
    assert set(c) == {"self", "dependencies", "resources"}, sorted(c)
    assert set(c["self"]) == {"status", "latency_ms"} and c["self"]["status"] == "healthy", c["self"]
    assert isinstance(c["self"]["latency_ms"], (int, float)) and c["self"]["latency_ms"] >= 0
    deps = c["dependencies"]
    assert set(deps) == {"db", "web"}, sorted(deps)
    for name, stage in (("db", "tcp"), ("web", "api_responsive")):
        d = deps[name]
        assert set(d) == {"status", "state", "critical", "latency_ms", "stage", "restarts", "error"}, sorted(d)
        assert d["status"] == "healthy" and d["state"] == "ready" and d["critical"] is True, d
        assert d["restarts"] == 0 and d["error"] is None, d
        assert d["stage"] == stage, d
        assert d["latency_ms"] is None or d["latency_ms"] >= 0, d
    r = c["resources"]
    assert set(r) == {"memory_mb", "cpu_percent", "threads", "gpu_memory_mb"}, sorted(r)
    assert r["memory_mb"] > 0 and r["threads"] >= 1 and r["cpu_percent"] >= 0, r
    assert r["gpu_memory_mb"] is None or r["gpu_memory_mb"] >= 0, r
    m = h["metrics"]
    assert set(m) == {"requests_per_second", "error_rate", "average_latency_ms"}, sorted(m)
    assert all(isinstance(x, (int, float)) and x >= 0 for x in m.values()), m
    # The counters see our own requests.
    for _ in range(3):
        get(t, "/health/live")
    assert get(t, "/health")[2]["metrics"]["requests_per_second"] > 0

    assert get(t, "/health/live")[:3:2] == (200, {"status": "alive"})
    st, _, body = get(t, "/health/ready")
    assert st == 200 and body["status"] == "ready" and body["startup_complete"] is True, body
    st, _, body = get(t, "/health/startup")
    assert st == 200 and body["status"] == "started", body
    st, _, body = get(t, "/health/services/web")
    assert st == 200 and body["name"] == "web" and body["status"] == "healthy", body
    assert_error(get(t, "/health/services/nope"), 404, "not_found", "nope")
    # HEAD works like GET without a body.
    st, _, body = call(t, "HEAD", "/health")
    assert st == 200 and body == "", (st, body)
    assert t.stop() == 0


def test_health_unhealthy_after_startup():
    """A critical service whose readiness stage starts failing after
    startup: /health, /health/ready and /health/services/x turn 503;
    /health/startup and /health/live stay 200."""
    p = free_port()
    t = api_tend('''
        services:
          api:
            command: {c}
            ready:
              http: http://127.0.0.1:{p}/health
              interval: 200ms
              failure_threshold: 2
              timeout: 10s
        ''', c=cmd("--port", p, "--unhealthy-after", "2", name="api"), p=p)
    wait_startup(t)
    st, _, h = get(t, "/health")
    assert st == 200 and h["status"] == "healthy", h
    t.wait_state("api", "unready", timeout=10)
    st, _, h = get(t, "/health")
    assert st == 503 and h["status"] == "unhealthy", (st, h)
    dep = h["checks"]["dependencies"]["api"]
    assert dep["status"] == "unhealthy" and dep["state"] == "unready", dep
    assert dep["error"], dep
    st, _, body = get(t, "/health/ready")
    assert st == 503 and body["status"] == "not_ready" and body["health"] == "unhealthy", body
    st, _, body = get(t, "/health/services/api")
    assert st == 503 and body["status"] == "unhealthy", body
    assert get(t, "/health/startup")[0] == 200
    assert get(t, "/health/live")[0] == 200
    assert t.stop() == 0


def test_health_degraded():
    """A failing non-critical stage: degraded, still 200 everywhere."""
    p = free_port()
    t = api_tend('''
        services:
          api:
            command: {c}
            ready:
              - name: port
                tcp: "127.0.0.1:{p}"
                timeout: 10s
              - name: extras
                http: http://127.0.0.1:{p}/missing
                timeout: 1s
                critical: false
        ''', c=cmd("--port", p, name="api"), p=p)
    wait_startup(t)
    st, _, h = get(t, "/health")
    assert st == 200 and h["status"] == "degraded", (st, h)
    assert h["checks"]["dependencies"]["api"]["status"] == "degraded", h
    st, _, body = get(t, "/health/services/api")
    assert st == 200 and body["status"] == "degraded", body
    st, _, body = get(t, "/health/ready")
    assert st == 200 and body["health"] == "degraded", body
    assert t.stop() == 0


def test_health_while_starting():
    """A slow notify service: /health/startup and /health/ready are 503
    until it is ready; /health/live answers at once; a shutdown request
    while starting is refused with 400."""
    t = api_tend('''
        services:
          slow:
            command: {c}
            ready: {notify: true, timeout: 20s}
        ''', c=cmd("--notify", "--ready-delay", "2", name="slow"))
    assert get(t, "/health/live")[0] == 200
    st, _, body = get(t, "/health/startup")
    assert st == 503 and body["status"] == "starting", body
    st, _, body = get(t, "/health/ready")
    assert st == 503 and body["startup_complete"] is False, body
    st, _, body = get(t, "/health")
    assert st == 503, (st, body)
    assert body["checks"]["dependencies"]["slow"]["status"] == "starting", body
    st, _, body = get(t, "/health/services/slow")
    assert st == 503 and body["status"] == "starting", body
    st, _, body = get(t, "/api/v1/system")
    assert st == 200 and body["state"] == "starting" and body["startup"] is None, body
    st, _, body = post(t, "/api/v1/system/shutdown")
    assert st == 400 and body["success"] is False, (st, body)
    wait_startup(t)
    st, _, body = get(t, "/health/startup")
    assert st == 200 and body == {"status": "started", "state": "started"}, body
    assert get(t, "/health/ready")[0] == 200
    assert get(t, "/health/services/slow")[0] == 200
    assert t.stop() == 0


def test_api_answers_from_the_first_line():
    """The listeners are bound before the first service starts, and the
    daemons that answer them start once libmicrohttpd is loaded, after the
    first spawns: a client that connects as soon as tend says it is
    starting, over TCP and over the unix socket, is answered (it waits in
    the backlog, it is never refused)."""
    port = free_port()
    t = Tend('''
        api: {listen: "127.0.0.1:%d"}
        services:
          a:
            command: {a}
            ready: {notify: true, timeout: 20s}
        ''' % port, a=cmd("--notify", "--ready-delay", "1", name="a"))
    t.wait_log(r"^tend \S+ starting ")
    st, _, body = http_request("GET", "http://127.0.0.1:%d/health/live" % port, timeout=10)
    assert st == 200 and json.loads(body)["status"] == "alive", (st, body)
    st, _, body = http_request("GET", "/api/v1/services/a", unix=t.path(".tend", "tend.sock"), timeout=10)
    assert st == 200 and json.loads(body)["state"] in ("starting", "ready"), (st, body)
    t.wait_state("a", "ready")
    assert t.stop() == 0


def test_busy_port():
    """api.listen on a port another process listens on: tend up names the
    address and the reason, starts no service, and exits 1 (SPEC 3)."""
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        t = Tend('''
            api: {listen: "127.0.0.1:%d"}
            services:
              a: {command: ["/bin/sleep", "60"]}
            ''' % port)
        assert t.wait_exit() == 1
        assert t.find(r"api\.listen 127\.0\.0\.1:%d: cannot listen: Address already in use" % port,
                      stream="any"), t.tail(10)
        assert not t.spawned_pids("a"), "services started without an API"
    finally:
        other.close()


# -- metrics -------------------------------------------------------------------

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                       r'(-?[0-9.eE+-]+|NaN|[+-]Inf)$')


def test_metrics():
    t = two()
    wait_startup(t)
    mark = len(t.lines())
    assert post(t, "/api/v1/services/web/restart")[0] == 200
    t.wait_state("web", "ready", since=mark)
    st, hd, text = get(t, "/metrics")
    assert st == 200
    assert hd["content-type"] == "text/plain; version=0.0.4; charset=utf-8", hd
    helps, types, samples = {}, {}, []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, "duplicate HELP for " + name
            helps[name] = line
        elif line.startswith("# TYPE "):
            _, _, name, typ = line.split()
            assert name not in types, "duplicate TYPE for " + name
            assert name in helps, "TYPE before HELP for " + name
            types[name] = typ
        elif line.strip():
            m = SAMPLE_RE.match(line)
            assert m, "not a valid sample line: %r" % line
            samples.append((m.group(1), m.group(2) or "", float(m.group(3))))
    required = {
        "tend_up": "gauge", "tend_startup_seconds": "gauge", "tend_service_state": "gauge",
        "tend_service_ready": "gauge", "tend_service_restarts_total": "counter",
        "tend_service_startup_seconds": "gauge", "tend_health_check_duration_seconds": "histogram",
        "tend_health_check_failures_total": "counter",
        "process_cpu_seconds_total": "counter", "process_resident_memory_bytes": "gauge",
        "process_virtual_memory_bytes": "gauge", "process_open_fds": "gauge", "process_max_fds": "gauge",
        "process_start_time_seconds": "gauge",
    }
    for name, typ in required.items():
        assert name in helps, "no HELP for " + name
        assert types.get(name) == typ, "%s: TYPE %s, expected %s" % (name, types.get(name), typ)
    # Every sample belongs to a declared family.
    for name, labels, value in samples:
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert base in types, "sample %s has no TYPE" % name

    def val(name, labels):
        for n, l, v in samples:
            if n == name and l == labels:
                return v
        raise AssertionError("no sample %s%s" % (name, labels))
    assert val("tend_up", "") == 1
    assert val("tend_startup_seconds", "") > 0
    assert val("tend_service_state", '{service="db",state="ready"}') == 1
    assert val("tend_service_state", '{service="db",state="stopped"}') == 0
    assert val("tend_service_ready", '{service="web"}') == 1
    assert val("tend_service_restarts_total", '{service="web",reason="manual"}') == 1
    assert val("tend_service_restarts_total", '{service="db",reason="exit"}') == 0
    assert val("tend_service_startup_seconds", '{service="web",wave="2"}') >= 0
    assert val("tend_service_startup_seconds", '{service="db",wave="1"}') >= 0
    assert val("tend_health_check_failures_total", '{service="db",probe="readiness"}') >= 0
    assert val("tend_health_check_duration_seconds_count", '{service="db",probe="readiness"}') >= 1
    assert val("tend_health_check_duration_seconds_bucket", '{service="db",probe="readiness",le="+Inf"}') == \
        val("tend_health_check_duration_seconds_count", '{service="db",probe="readiness"}')
    assert val("process_resident_memory_bytes", "") > 0
    assert val("process_open_fds", "") > 0
    # Public even with a token configured: checked in test_token_rules.
    assert t.stop() == 0


# -- system ----------------------------------------------------------------------

def test_system_no_start():
    """tend up --no-start: idle until POST /api/v1/system/start; then 400
    "already starting" and "already started"."""
    t = api_tend('''
        name: nostart
        services:
          a:
            command: {a}
            ready: {notify: true, timeout: 20s}
          b:
            command: {b}
            depends_on: {a: ready}
        ''', a=cmd("--notify", "--ready-delay", "1", name="a"), b=cmd(name="b"), args=["--no-start"])
    t.wait_log(r"waiting for POST /api/v1/system/start")
    st, _, s = get(t, "/api/v1/system")
    assert st == 200, s
    assert s["name"] == "nostart" and s["state"] == "idle" and s["startup"] is None, s
    assert s["waves"] == [["a"], ["b"]], s
    assert s["failure"] is None, s
    assert RFC3339_MS.match(get(t, "/health")[2]["timestamp"])
    assert get(t, "/health/startup")[0] == 503
    assert not t.spawned_pids("a"), "spawned before POST /api/v1/system/start"
    assert_error(post(t, "/api/v1/services/a/start"), 409, "conflict")
    st, _, body = post(t, "/api/v1/system/start")
    assert st == 200 and body["success"] is True, (st, body)
    t.wait_log(r"^spawned pid", service="a")
    st, _, body = post(t, "/api/v1/system/start")
    assert (st, body) == (400, {"success": False, "message": "system is already starting"}), (st, body)
    st, _, s = get(t, "/api/v1/system")
    assert s["state"] == "starting", s
    wait_startup(t)
    st, _, body = post(t, "/api/v1/system/start")
    assert (st, body) == (400, {"success": False, "message": "system is already started"}), (st, body)
    st, _, s = get(t, "/api/v1/system")
    assert s["state"] == "started", s
    rep = s["startup"]
    assert isinstance(rep["duration_ms"], int) and rep["duration_ms"] >= 900, rep
    names = [x["name"] for x in rep["services"]]
    assert names == ["a", "b"], rep
    a = rep["services"][0]
    assert a["wave"] == 1 and a["state"] == "ready" and a["spawn_to_ready_ms"] >= 900, a
    assert a["stages"] and a["stages"][0]["duration_ms"] >= 900, a
    assert rep["services"][1]["wave"] == 2, rep
    assert t.stop() == 0


def test_system_shutdown():
    """POST /api/v1/system/shutdown: 200 naming the tracked processes and
    ports; asked again while stopping: "shutdown already requested"; tend
    exits 0."""
    pa, pb = free_port(), free_port()
    t = api_tend('''
        services:
          a:
            command: {a}
            ready: {tcp: "127.0.0.1:{pa}", timeout: 10s}
          b:
            command: {b}
            depends_on: {a: ready}
            ready: {http: "http://127.0.0.1:{pb}/health", timeout: 10s}
        ''', a=cmd("--port", pa, name="a"), b=cmd("--port", pb, "--term-delay", "1.5", name="b"), pa=pa, pb=pb)
    wait_startup(t)
    assert_error(post(t, "/api/v1/system/shutdown", body='{"timeout": 5'), 400, "bad_json")
    assert_error(post(t, "/api/v1/system/shutdown", body={"timeout": "soon"}), 400, "bad_request", "timeout")
    assert t.running()
    st, _, body = post(t, "/api/v1/system/shutdown", body={"timeout": "20s"})
    assert st == 200, (st, body)
    assert set(body) == {"success", "message", "ports"}, body
    assert body["success"] is True
    assert body["message"] == "shutdown requested; stopping tracked processes: b, a", body
    assert sorted(body["ports"]) == sorted([pa, pb]), body
    st, _, body = post(t, "/api/v1/system/shutdown")
    assert (st, body) == (200, {"success": True, "message": "shutdown already requested"}), (st, body)
    st, _, s = get(t, "/api/v1/system")
    assert s["state"] == "stopping", s
    assert_error(post(t, "/api/v1/services/a/restart"), 409, "conflict")
    st, _, body = post(t, "/api/v1/system/start")
    assert st == 400 and body["success"] is False, body
    assert t.wait_exit(20) == 0
    assert not os.path.exists(t.sock), "the unix socket outlived tend"


# -- services ----------------------------------------------------------------------

def test_services_routes():
    t = two()
    wait_startup(t)
    st, _, body = get(t, "/api/v1/services")
    assert st == 200 and set(body) == {"services"}, body
    svcs = body["services"]
    assert [s["name"] for s in svcs] == ["db", "web"], svcs
    summary_keys = {"name", "wave", "state", "health", "critical", "oneshot", "pid", "restarts",
                    "uptime_seconds", "stage", "error"}
    for s in svcs:
        assert set(s) == summary_keys, sorted(s)
        assert s["state"] == "ready" and s["health"] == "healthy" and isinstance(s["pid"], int), s
    assert [s["wave"] for s in svcs] == [1, 2]
    assert svcs[0]["pid"] == t.spawned_pids("db")[-1]

    st, _, d = get(t, "/api/v1/services/web")
    assert st == 200, d
    assert summary_keys <= set(d), sorted(d)
    for k in ("restarts_by_reason", "startup_ms", "stages", "depends_on", "last_exit", "status_text",
              "command", "env_keys"):
        assert k in d, "detail lacks %s: %s" % (k, sorted(d))
    assert d["depends_on"] == {"db": "ready"}, d
    assert [s["name"] for s in d["stages"]] == ["port", "api_responsive"], d["stages"]
    assert [s["probe"] for s in d["stages"]] == ["tcp", "http"], d["stages"]
    assert all(s["passing"] and s["duration_ms"] is not None for s in d["stages"]), d["stages"]
    assert d["restarts_by_reason"] == {"exit": 0, "signal": 0, "liveness": 0, "watchdog": 0, "manual": 0}, d
    assert d["last_exit"] is None and d["command"][0] == FAKE, d
    assert_error(get(t, "/api/v1/services/nope"), 404, "not_found", "nope")
    for verb in ("start", "stop", "restart"):
        assert_error(post(t, "/api/v1/services/nope/%s" % verb), 404, "not_found", "nope")

    # start a running service: 409
    assert_error(post(t, "/api/v1/services/db/start"), 409, "conflict", "db")

    # stop, then stop again: 409
    mark = len(t.lines())
    st, _, body = post(t, "/api/v1/services/web/stop")
    assert st == 200 and body["success"] is True and body["name"] == "web", body
    assert body["state"] in ("stopping", "stopped"), body
    t.wait_state("web", "stopped", since=mark)
    assert_error(post(t, "/api/v1/services/web/stop"), 409, "conflict", "stopped")
    st, _, d = get(t, "/api/v1/services/web")
    assert d["state"] == "stopped" and d["pid"] is None, d
    assert d["last_exit"]["code"] == 0 and d["last_exit"]["signal"] is None, d
    assert RFC3339_MS.match(d["last_exit"]["at"]), d

    # start it again
    mark = len(t.lines())
    st, _, body = post(t, "/api/v1/services/web/start")
    assert st == 200 and body["success"] is True, body
    t.wait_state("web", "ready", since=mark)

    # restart: a new pid, counted as manual
    old = get(t, "/api/v1/services/db")[2]["pid"]
    mark = len(t.lines())
    st, _, body = post(t, "/api/v1/services/db/restart")
    assert st == 200 and body["success"] is True, body
    t.wait_state("db", "ready", since=mark)
    st, _, d = get(t, "/api/v1/services/db")
    assert d["pid"] != old and d["restarts_by_reason"]["manual"] == 1 and d["restarts"] == 1, d

    # logs
    st, hd, text = get(t, "/api/v1/services/db/logs?lines=2")
    assert st == 200 and hd["content-type"].startswith("text/plain"), (st, hd)
    lines = text.splitlines()
    assert len(lines) == 2 and all(l.startswith("db: ") for l in lines), lines
    st, _, text = get(t, "/api/v1/services/db/logs?lines=0")
    assert st == 200 and text == "", text
    assert_error(get(t, "/api/v1/services/db/logs?lines=many"), 400)
    assert_error(get(t, "/api/v1/services/nope/logs"), 404, "not_found")
    assert t.stop() == 0


# -- errors and limits ----------------------------------------------------------

def test_errors_and_limits():
    t = two()
    wait_startup(t)
    assert_error(get(t, "/api/v1/nope"), 404, "not_found")
    assert_error(get(t, "/api/v2/services"), 404, "not_found")
    assert_error(get(t, "/api/v1/services/db/bogus"), 404, "not_found")
    assert_error(get(t, "/health/"), 404, "not_found")
    assert_error(call(t, "POST", "/health"), 405, "method_not_allowed")
    assert_error(call(t, "DELETE", "/api/v1/services"), 405, "method_not_allowed")
    assert_error(get(t, "/api/v1/system/start"), 405, "method_not_allowed")
    assert_error(call(t, "PUT", "/metrics"), 405, "method_not_allowed")
    assert_error(get(t, "/api/v1/services/db/restart"), 405, "method_not_allowed")

    # Malformed JSON: 400, and the action is not taken.
    pid = get(t, "/api/v1/services/db")[2]["pid"]
    for bad in ('{bad', '{"a": 1', '[1, 2,]', '\x00', 'nul'):
        assert_error(post(t, "/api/v1/services/db/restart", body=bad), 400, "bad_json")
    assert get(t, "/api/v1/services/db")[2]["pid"] == pid, "restarted despite a malformed body"

    # Over 1 MiB: 413 (announced with Content-Length, with Expect)...
    big = 1024 * 1024 + 1
    raw = raw_request(t, b"POST /api/v1/services/db/restart HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                         b"Content-Length: %d\r\n\r\n" % big)
    assert status_of(raw) == 413, raw[:300]
    body = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "payload_too_large", body
    # ... without Expect (the body is being sent while the answer comes) ...
    s = socket.create_connection(("127.0.0.1", t.api_port))
    s.settimeout(slow(5))
    s.sendall(b"POST /api/v1/services/db/restart HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big)

    def pump():
        try:
            s.sendall(b" " * big)
        except OSError:
            pass
    th = threading.Thread(target=pump, daemon=True)
    th.start()
    got = b""
    try:
        while b"\r\n" not in got:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except OSError:
        pass
    s.close()
    assert status_of(got) == 413, got[:300]
    # ... and chunked, with no length announced.
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", t.api_port, timeout=slow(10))
    chunks = (b" " * 65536 for _ in range(17))   # 1.06 MiB
    conn.request("POST", "/api/v1/services/db/restart", body=chunks, encode_chunked=True,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 413, r.status
    assert json.loads(r.read())["error"]["code"] == "payload_too_large"
    conn.close()
    # Exactly 1 MiB is accepted (valid JSON: one string).
    exact = b'"' + b"a" * (1024 * 1024 - 2) + b'"'
    assert_error(post(t, "/api/v1/services/nope/restart", body=exact), 404, "not_found")
    assert get(t, "/api/v1/services/db")[2]["pid"] == pid
    # Still serving after all that.
    assert get(t, "/health")[0] == 200
    assert t.stop() == 0


def test_dashboard_root():
    """GET / serves the dashboard page, public like /health (SPEC 7)."""
    t = api_tend('''
        services:
          a:
            command: {a}
        ''', token=True, a=cmd(name="a"))
    try:
        st, hd, text = get(t, "/")
        assert st == 200, (st, text)
        assert hd["content-type"].startswith("text/html"), hd
        assert "<html" in text.lower()
    finally:
        t.stop()


def test_non_utf8_path_is_404():
    """GET /%ff: the error message embeds the path, which is not UTF-8;
    the answer must still be a 404 JSON error (and not count as a 5xx).
    Also the sequences that look like UTF-8 but are not valid (overlong
    forms, UTF-16 surrogates, code points above U+10FFFF), which jansson
    rejects."""
    t = api_tend('''
        services:
          a:
            command: {a}
        ''', a=cmd(name="a"))
    try:
        for path in ("/%ff", "/api/v1/services/%ff", "/health/services/caf%e9", "/caf%c3%a9",
                     "/%c0%80", "/%e0%80%80", "/%ed%a0%80", "/%f4%90%80%80", "/api/v1/services/%c1%bf"):
            r = get(t, path)
            assert r[0] == 404, "GET %s: %d %s" % (path, r[0], r[2])
            assert_error(r, 404, "not_found")
        for verb in ("start", "stop", "restart"):
            assert_error(post(t, "/api/v1/services/%%ff/%s" % verb), 404, "not_found")
    finally:
        t.stop()


def test_expect_continue_does_not_freeze_loop():
    """A request with "Expect: 100-continue", no body length and more bytes
    after the head, over the unix socket (fuzz/regressions/
    hang-expect-100-continue-unix): MHD_get_timeout() then says 0 forever,
    api.c re-arms a 0 ms timer inside its own callback and uv_run() never
    polls again.  tend must stay responsive and stop on SIGTERM."""
    t = api_tend('''
        services:
          a:
            command: {a}
        ''', a=cmd(name="a"))
    wait_startup(t)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(t.sock)
    s.sendall(b"POST /api/v1/services/a/restart HTTP/1.1\r\nHost: localhost\r\n"
              b"Expect: 100-continue\r\n\r\n{}")
    time.sleep(0.3)
    try:
        try:
            st = http_request("GET", t.base + "/health/live", timeout=2)[0]
        except OSError as e:
            st = "no answer (%s)" % e
        assert st == 200, "/health/live after the request: %s" % st
        t.signal(signal.SIGTERM)
        try:
            rc = t.proc.wait(timeout=slow(10))
        except subprocess.TimeoutExpired:
            rc = "still running 10 s after SIGTERM"
        assert rc == 0, rc
    finally:
        s.close()


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_expect_continue_with_body_and_idle_cpu():
    """Expect: 100-continue with a real body gets "100 Continue" and then
    its answer, over both listeners; while a request that announces a body
    and never sends it is open, tend stays responsive and idle (no busy
    loop: under 10 % of a core over 2 s)."""
    t = api_tend('''
        services:
          a:
            command: {a}
        ''', a=cmd(name="a"))
    wait_startup(t)
    for unix in (False, True):
        if unix:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(t.sock)
        else:
            c = socket.create_connection(("127.0.0.1", t.api_port))
        c.settimeout(slow(5))
        c.sendall(b"POST /api/v1/services/nope/restart HTTP/1.1\r\nHost: x\r\n"
                  b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}")
        raw = b""
        while b"}}" not in raw:
            d = c.recv(65536)
            if not d:
                break
            raw += d
        c.close()
        assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), raw[:200]
        rest = raw[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        assert status_of(rest) == 404 and b"not_found" in rest, rest[:300]
    stuck = []
    for unix in (False, True):
        if unix:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(t.sock)
        else:
            c = socket.create_connection(("127.0.0.1", t.api_port))
        c.sendall(b"POST /api/v1/services/a/restart HTTP/1.1\r\nHost: x\r\n"
                  b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n{")
        stuck.append(c)
    try:
        time.sleep(0.3)
        c0 = _cpu_ticks(t.proc.pid)
        time.sleep(2)
        used = (_cpu_ticks(t.proc.pid) - c0) / os.sysconf("SC_CLK_TCK")
        assert used < 0.2, "tend used %.2f s of CPU in 2 s with a half-sent request open" % used
        assert http_request("GET", t.base + "/health/live", timeout=2)[0] == 200
        assert http_request("GET", "/health/live", unix=t.sock, timeout=2)[0] == 200
        assert t.state("a") == "ready"
    finally:
        for c in stuck:
            c.close()
    assert t.stop() == 0


def test_output_not_utf8_in_events():
    """A service printing bytes that are not UTF-8: its service.output
    events still arrive (invalid bytes as "?"), and so do later ones."""
    t = api_tend('''
        services:
          p:
            command: ["python3", "{dir}/out.py"]
            ready: {notify: true, timeout: 10s}
        ''', start=False)
    with open(t.path("out.py"), "w") as f:
        f.write(r'''
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", addr)
time.sleep(1.0)
sys.stdout.buffer.write(b"caf\xe9 \xff\xfe \xed\xa0\x80 end\n")
sys.stdout.buffer.write(b"plain after\n")
sys.stdout.flush()
time.sleep(120)
''')
    t.start()
    wait_api(t)
    ev = SSE(t, query="?types=service.output")
    try:
        got = ev.collect_until(lambda e: e["data"]["line"] == "plain after", timeout=15)
        lines = [e["data"]["line"] for e in got]
        assert "caf? ?? ??? end" in lines, lines
    finally:
        ev.close()
        t.stop()


NOTIFY_STATUS_PY = r'''
import os, socket, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=caf\xe9 \xff half-written", addr)
time.sleep(120)
'''


def test_status_text_not_utf8():
    """sd_notify STATUS= is arbitrary bytes from the service: the detail
    must still have a status_text key (the text made valid, or null)."""
    t = api_tend('''
        services:
          n:
            command: ["python3", "{dir}/svc.py"]
            ready: {notify: true, timeout: 10s}
        ''', start=False)
    with open(t.path("svc.py"), "w") as f:
        f.write(NOTIFY_STATUS_PY)
    t.start()
    wait_api(t)
    try:
        wait_startup(t)
        st, _, d = get(t, "/api/v1/services/n")
        assert st == 200, d
        assert "status_text" in d, "status_text missing: %s" % sorted(d)
        assert d["status_text"] is None or "half-written" in d["status_text"], d["status_text"]
    finally:
        t.stop()


# -- tokens and the unix socket --------------------------------------------------

PROTECTED = [
    ("GET", "/api/v1/system"),
    ("GET", "/api/v1/services"),
    ("GET", "/api/v1/services/a"),
    ("GET", "/api/v1/services/a/logs"),
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/services/a/start"),
    ("POST", "/api/v1/services/a/stop"),
    ("POST", "/api/v1/services/a/restart"),
    ("POST", "/api/v1/system/start"),
    ("POST", "/api/v1/system/shutdown"),
]
PUBLIC = ["/health", "/health/live", "/health/ready", "/health/startup", "/health/services/a", "/metrics"]


def test_token_rules():
    """With api.token_file, TCP needs the bearer token on every route but
    /health* and /metrics; the unix socket (0600) needs none.  Listening on
    0.0.0.0 is allowed with a token."""
    t = api_tend('''
        services:
          a:
            command: {a}
        ''', token=True, listen="0.0.0.0:%d" % free_port(), a=cmd(name="a"))
    wait_startup(t)
    wrong = [None, "x" * len(TOKEN), TOKEN[:-1], TOKEN + "x", TOKEN.upper(), ""]
    for method, path in PROTECTED:
        for tok in wrong:
            assert_error(call(t, method, path, token=tok), 401, "unauthorized")
        assert_error(call(t, method, path, headers={"Authorization": "Basic " + TOKEN}), 401, "unauthorized")
        assert_error(call(t, method, path, headers={"Authorization": TOKEN}), 401, "unauthorized")
    assert t.running() and t.state("a") == "ready", "a request without a valid token had an effect"
    for path in PUBLIC:
        st, _, body = get(t, path)
        assert st == 200, (path, st, body)
        st, _, body = get(t, path, token="wrong-token-wrong-token")
        assert st == 200, (path, st, body)
    for method, path in PROTECTED:
        if method == "GET" and path != "/api/v1/events":
            st, _, body = call(t, method, path, token=TOKEN)
            assert st == 200, (path, st, body)
    ev = SSE(t, token=TOKEN)
    assert ev.status() == 200, ev.head
    ev.close()
    mark = len(t.lines())
    st, _, body = post(t, "/api/v1/services/a/restart", token=TOKEN)
    assert st == 200, body
    t.wait_state("a", "ready", since=mark)

    # The unix socket: mode 0600, no token needed.
    mode = os.stat(t.sock).st_mode
    assert stat.S_ISSOCK(mode), oct(mode)
    assert stat.S_IMODE(mode) == 0o600, oct(stat.S_IMODE(mode))
    for method, path in PROTECTED:
        if method == "GET" and path != "/api/v1/events":
            st, _, body = call(t, method, path, unix=True)
            assert st == 200, (path, st, body)
    mark = len(t.lines())
    st, _, body = post(t, "/api/v1/services/a/restart", unix=True)
    assert st == 200, body
    t.wait_state("a", "ready", since=mark)
    ev = SSE(t, unix=True)
    assert ev.status() == 200, ev.head
    ev.close()
    st, _, body = post(t, "/api/v1/system/shutdown", unix=True)
    assert st == 200 and body["success"], body
    assert t.wait_exit() == 0


def test_token_file_problems():
    """A token under 16 characters or a missing token file: tend up refuses
    to start, names the problem, starts no service, and exits 2 (a
    configuration error, SPEC 3)."""
    rcs = []
    for content, what in (("short", "at least 16 characters"), (None, "token_file")):
        port = free_port()
        t = Tend('''
            api: {listen: "127.0.0.1:%d", token_file: token}
            services:
              a: {command: ["/bin/sleep", "60"]}
            ''' % port, start=False)
        if content is not None:
            with open(t.path("token"), "w") as f:
                f.write(content + "\n")
        t.start()
        rc = t.wait_exit()
        assert rc != 0, rc
        assert t.find(what, stream="any"), t.tail(10)
        assert not t.spawned_pids("a"), "services started without an API"
        rcs.append(rc)
    assert rcs == [2, 2], "exit codes %s, expected 2 (configuration error)" % rcs


def test_non_loopback_needs_token():
    """Listening beyond loopback without api.token_file: exit 2."""
    for listen in ("0.0.0.0:%d" % free_port(), ":%d" % free_port()):
        t = Tend('''
            api: {listen: "%s"}
            services:
              a: {command: ["/bin/sleep", "60"]}
            ''' % listen)
        assert t.wait_exit() == 2, "listen %s" % listen
        assert t.find(r"requires api\.token_file", stream="any"), t.tail(10)
        assert not t.spawned_pids("a")
    # loopback names are fine without a token
    for listen in ("127.0.0.1:%d" % free_port(), "localhost:%d" % free_port()):
        t = Tend('''
            api: {listen: "%s"}
            services:
              a: {command: ["/bin/sleep", "60"]}
            ''' % listen)
        t.wait_state("a", "ready")
        assert t.stop() == 0


def test_unix_socket_only():
    """api.listen "": no TCP, the unix socket serves everything; it is
    removed at exit.  It is 0600 even when tend runs with umask 0."""
    old_umask = os.umask(0)
    try:
        t = Tend('''
            services:
              a:
                command: {a}
            ''', a=cmd(name="a"))
    finally:
        os.umask(old_umask)
    t.wait_state("a", "ready")
    sock = t.path(".tend", "tend.sock")
    wait_for(lambda: os.path.exists(sock), 5, what="the socket")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    st, _, body = http_request("GET", "/api/v1/services/a", unix=sock)
    assert st == 200 and json.loads(body)["state"] == "ready", body
    st, _, body = http_request("GET", "/health", unix=sock)
    assert st == 200, body
    assert t.find(r"api off", stream="any"), "expected TCP to be off"
    assert t.stop() == 0
    assert not os.path.exists(sock)


def test_env_values_never_exposed():
    p = free_port()
    t = api_tend('''
        services:
          a:
            command: {a}
            env: {SECRET_X: topsecretvalue, PLAIN: visible-key-only}
            ready: {tcp: "127.0.0.1:{p}", timeout: 10s}
        ''', a=cmd("--port", p, "--env-report", "{dir}/env.txt", name="a"), p=p)
    wait_startup(t)
    # The service did get it (so the check below means something).
    wait_for(lambda: os.path.exists(t.path("env.txt")), 5, what="env report")
    with open(t.path("env.txt")) as f:
        assert "topsecretvalue" in f.read()
    st, _, d = get(t, "/api/v1/services/a")
    assert st == 200 and "SECRET_X" in d["env_keys"] and "PLAIN" in d["env_keys"], d
    ev = SSE(t)
    mark = len(t.lines())
    post(t, "/api/v1/services/a/restart")
    t.wait_state("a", "ready", since=mark)
    time.sleep(0.2)
    seen = [e["raw"] for e in ev.drain()]
    ev.close()
    for path in ("/api/v1/services", "/api/v1/services/a", "/api/v1/system", "/health",
                 "/health/services/a", "/metrics", "/api/v1/services/a/logs"):
        st, _, body = get(t, path)
        text = body if isinstance(body, str) else json.dumps(body)
        assert "topsecretvalue" not in text, "%s leaks the env value: %s" % (path, text[:300])
        assert "visible-key-only" not in text, path
    assert seen and not any("topsecretvalue" in r for r in seen)
    assert t.stop() == 0
    with open(t.out_path, errors="replace") as f:
        log = f.read()
    assert "topsecretvalue" not in log, "tend's log contains the env value"


# -- events ------------------------------------------------------------------------

def test_events_delivered_without_other_traffic():
    """A service crash (no API request involved) must reach an open event
    stream promptly, without any other request hitting the server."""
    p = free_port()
    t = api_tend('''
        services:
          a:
            command: {a}
            ready: {tcp: "127.0.0.1:{p}", timeout: 10s}
            restart: {policy: always, delay: 100ms, jitter: 0}
        ''', a=cmd("--port", p, name="a"), p=p)
    wait_startup(t)
    ev = SSE(t, query="?types=service.state")
    time.sleep(0.2)
    pid = t.spawned_pids("a")[-1]
    os.kill(pid, signal.SIGKILL)
    t.wait_state("a", "backoff")
    try:
        e = ev.next(timeout=3)
        assert e["data"]["service"] == "a" and e["data"]["to"] == "backoff", e
    finally:
        ev.close()
        t.stop()


def test_events_stream_and_resume():
    """service.state events with consecutive ids after an API restart;
    Last-Event-ID (header) and ?since= resume with exactly the later
    events; ?types= filters by prefix; a new stream replays nothing."""
    t = two()
    wait_startup(t)
    ev = SSE(t)
    assert ev.status() == 200, ev.head
    assert re.search(r"(?im)^content-type:\s*text/event-stream", ev.head), ev.head
    mark = len(t.lines())
    st, _, _ = post(t, "/api/v1/services/db/restart")
    assert st == 200
    evs = ev.collect_until(lambda e: e["event"] == "service.state" and e["data"]["service"] == "db"
                           and e["data"]["to"] == "ready")
    t.wait_state("db", "ready", since=mark)
    ev.close()
    assert ev.retry == 2000, ev.retry
    ids = [e["id"] for e in evs]
    assert all(isinstance(i, int) for i in ids), ids
    assert ids == list(range(ids[0], ids[-1] + 1)), "ids not consecutive: %s" % ids
    states = [e for e in evs if e["event"] == "service.state"]
    assert states, [e["event"] for e in evs]
    for e in states:
        d = e["data"]
        assert {"service", "from", "to", "reason", "pid", "ts"} <= set(d), d
        assert RFC3339_MS.match(d["ts"]), d
    db = [(e["data"]["from"], e["data"]["to"]) for e in states if e["data"]["service"] == "db"]
    assert ("ready", "stopping") == db[0], db
    assert states[0]["data"]["reason"] == "manual restart", states[0]
    assert db[-1][1] == "ready", db
    types = {e["event"] for e in evs}
    assert {"service.state", "service.health", "service.output"} <= types, types
    out = [e["data"] for e in evs if e["event"] == "service.output"]
    assert all(set(o) == {"service", "line", "ts"} for o in out), out

    # Resume after the first state event: exactly the later events, in order.
    first = states[0]["id"]
    for how in ("header", "query"):
        if how == "header":
            ev2 = SSE(t, last_event_id=first)
        else:
            ev2 = SSE(t, query="?since=%d" % first)
        got = []
        while not got or got[-1]["id"] < ids[-1]:
            got.append(ev2.next())
        ev2.close()
        assert [e["id"] for e in got] == [i for i in ids if i > first], (how, [e["id"] for e in got], ids)
        assert [e["raw"] for e in got] == [e["raw"] for e in evs if e["id"] > first]

    # ?types= filters by prefix.
    ev3 = SSE(t, query="?types=service.state", last_event_id=ids[0] - 1)
    got = []
    while not got or got[-1]["id"] < states[-1]["id"]:
        got.append(ev3.next())
    ev3.close()
    assert all(e["event"] == "service.state" for e in got), [e["event"] for e in got]
    assert [e["id"] for e in got] == [e["id"] for e in states], ([e["id"] for e in got], [e["id"] for e in states])
    ev3 = SSE(t, query="?types=service.health,service.state", last_event_id=ids[0] - 1)
    got = []
    while not got or got[-1]["id"] < states[-1]["id"]:
        got.append(ev3.next())
    ev3.close()
    assert {e["event"] for e in got} == {"service.health", "service.state"}, [e["event"] for e in got]

    # A new stream without Last-Event-ID sends only new events.
    ev4 = SSE(t)
    assert not ev4.drain(0.5), "a fresh stream replayed old events"
    ev4.close()
    assert t.stop() == 0


def test_events_long_replay_is_fast():
    """Resuming from the start of a ring full of long events (about 2 MB
    of service output) streams at full speed: writing a long stream is
    progress, so the server never backs off in the middle of it."""
    t = api_tend('''
        services:
          p:
            command: ["python3", "-c", "import sys, time\\nfor i in range(1000): print('%04d ' % i + 'x' * 2000)\\nsys.stdout.flush()\\ntime.sleep(120)"]
        ''', args=["--no-start"])
    live = SSE(t, query="?types=service.output")
    assert post(t, "/api/v1/system/start")[0] == 200
    live.collect_until(lambda e: e["data"]["line"].startswith("0999 "), timeout=30)
    live.close()
    t0 = time.monotonic()
    ev = SSE(t, query="?types=service.output", last_event_id=0)
    got = ev.collect_until(lambda e: e["data"]["line"].startswith("0999 "), timeout=30)
    took = time.monotonic() - t0
    ev.close()
    assert len(got) >= 1000 and all(len(e["data"]["line"]) == 2005 for e in got), len(got)
    assert took < slow(3), "replaying %d events took %.1f s" % (len(got), took)
    assert t.stop() == 0


def test_events_state_from_field():
    """Each service.state event's `from` is the state the service left: a
    restart goes ready -> stopping -> backoff -> starting -> ready."""
    p = free_port()
    t = api_tend('''
        services:
          a:
            command: {a}
            ready: {tcp: "127.0.0.1:{p}", timeout: 10s}
        ''', a=cmd("--port", p, name="a"), p=p)
    wait_startup(t)
    ev = SSE(t, query="?types=service.state")
    mark = len(t.lines())
    post(t, "/api/v1/services/a/restart")
    evs = ev.collect_until(lambda e: e["data"]["to"] == "ready")
    ev.close()
    pairs = [(e["data"]["from"], e["data"]["to"]) for e in evs]
    # What tend's own log says happened (the event may arrive before the
    # log line is read):
    t.wait_state("a", "ready", since=mark)
    logged = [(c[0], c[1]) for c in t.state_changes("a")][-4:]
    t.stop()
    assert pairs == logged, "events %s, log %s" % (pairs, logged)
    for f, to in pairs:
        assert f != to, "event with from == to: %s" % pairs


def test_events_end_at_shutdown():
    """?types=system: the phase change to stopping arrives, then the
    stream ends when tend exits."""
    t = api_tend('''
        services:
          a:
            command: {a}
        ''', a=cmd("--term-delay", "0.5", name="a"))
    wait_startup(t)
    ev = SSE(t, query="?types=system")
    assert ev.status() == 200, ev.head
    st, _, body = post(t, "/api/v1/system/shutdown")
    assert st == 200 and body["success"], (st, body)
    e = ev.next()
    assert e["event"] == "system.phase" and e["data"]["state"] == "stopping", e
    assert ev.closed.wait(slow(15)), "the stream did not end at shutdown"
    rest = ev.drain(0.1)
    assert all(x["event"].startswith("system") for x in rest), rest
    assert t.wait_exit() == 0


def test_events_stream_limit():
    """At most 64 streams at once (503 too_many_streams beyond); closed
    streams are released once the server writes to them."""
    t = two()
    wait_startup(t)
    streams = [SSE(t, unix=True) for _ in range(64)]
    assert all(s.status() == 200 for s in streams)
    over = SSE(t, unix=True)
    assert over.status() == 503, over.head
    over.close()
    st, _, text = get(t, "/metrics")
    assert re.search(r"(?m)^tend_event_streams 64$", text), [l for l in text.splitlines() if "event_streams" in l]
    for s in streams:
        s.close()
    # An event makes the server write to (and drop) the closed streams.
    mark = len(t.lines())
    post(t, "/api/v1/services/db/restart")
    t.wait_state("db", "ready", since=mark)
    wait_for(lambda: re.search(r"(?m)^tend_event_streams 0$", get(t, "/metrics")[2]), 5,
             what="closed streams to be released")
    again = SSE(t, unix=True)
    assert again.status() == 200, again.head
    again.close()
    assert t.stop() == 0


def test_events_heartbeat():
    """An idle stream gets a comment line (":") within 15 s (+ slack)."""
    t = two()
    wait_startup(t)
    ev = SSE(t, query="?types=nothing.matches")
    wait_for(lambda: ev.comments > 0, 20, interval=0.2, what="a heartbeat comment")
    assert ev.events.empty()
    ev.close()
    assert t.stop() == 0


if __name__ == "__main__":
    run([
        test_health_shape,
        test_health_unhealthy_after_startup,
        test_health_degraded,
        test_health_while_starting,
        test_metrics,
        test_system_no_start,
        test_system_shutdown,
        test_services_routes,
        test_errors_and_limits,
        test_dashboard_root,
        test_non_utf8_path_is_404,
        test_status_text_not_utf8,
        test_expect_continue_does_not_freeze_loop,
        test_expect_continue_with_body_and_idle_cpu,
        test_output_not_utf8_in_events,
        test_api_answers_from_the_first_line,
        test_busy_port,
        test_token_rules,
        test_token_file_problems,
        test_non_loopback_needs_token,
        test_unix_socket_only,
        test_env_values_never_exposed,
        test_events_delivered_without_other_traffic,
        test_events_stream_and_resume,
        test_events_long_replay_is_fast,
        test_events_state_from_field,
        test_events_end_at_shutdown,
        test_events_stream_limit,
        test_events_heartbeat,
    ])
