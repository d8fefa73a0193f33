"""The session store through the real `tend up` (SPEC 1 Session, 2
sessions:, 5 Sessions): every route and status, the error format, expiry
with a short ttl (reads never serve an expired session; the sweeper
counts it), eviction with a small max_sessions, persistence across a
restart of tend (sessions.persist), and the tend_sessions* metrics."""

from harness import *
from harness import http_request

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

SERVICE = """
services:
  idle:
    command: ["{fake}", "--name", "idle"]
"""


def start_tend(sessions="", t=None, env=None):
    """A Tend with TCP on a free port and the given sessions: block."""
    if t is None:
        port = free_port()
        cfg = 'api: {listen: "127.0.0.1:%d"}\n' % port + SERVICE + sessions
        t = Tend(cfg, start=False)
        t.base = "http://127.0.0.1:%d" % port
    t.start(env=env)

    def up():
        if not t.running():
            raise AssertionError("tend exited (rc=%s): %s" % (t.proc.poll(), t.tail(20)))
        try:
            return http_request("GET", t.base + "/health/live", timeout=1)[0] == 200
        except OSError:
            return False
    wait_for(up, slow(15), what="the API")
    return t


def call(t, method, path, body=None, raw=None):
    """(status, parsed JSON or None)."""
    if raw is not None:
        st, hd, text = http_request(method, t.base + path, body=raw,
                                    headers={"Content-Type": "application/json"}, timeout=10)
    else:
        st, hd, text = http_request(method, t.base + path, body=body, timeout=10)
    data = None
    if text:
        assert hd.get("content-type", "").startswith("application/json"), (st, hd, text)
        data = json.loads(text)
    return st, data


def error_code(data):
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}, data
    return data["error"]["code"]


def stop(t):
    t.signal(signal.SIGTERM)
    assert t.wait_exit(slow(30)) == 0, t.tail(40)


def test_routes():
    t = start_tend("sessions: {ttl: 1h}\n")
    st, d = call(t, "PUT", "/api/v1/sessions/user-1", {"data": {"name": "ada", "roles": ["x"]}})
    assert st == 201, (st, d)
    assert d["id"] == "user-1" and RFC3339_MS.match(d["created_at"]) and RFC3339_MS.match(d["expires_at"])
    assert abs(d["ttl_seconds"] - 3600) < 0.001
    st, d = call(t, "GET", "/api/v1/sessions/user-1")
    assert st == 200
    assert d["data"] == {"name": "ada", "roles": ["x"]}
    assert set(d) >= {"id", "data", "created_at", "expires_at"}
    created = d["created_at"]
    # Replace: 200, created_at kept; a per-session ttl.
    st, d = call(t, "PUT", "/api/v1/sessions/user-1", {"data": [1, 2, 3], "ttl": "2h"})
    assert st == 200 and d["created_at"] == created and abs(d["ttl_seconds"] - 7200) < 0.001
    st, d = call(t, "GET", "/api/v1/sessions/user-1")
    assert d["data"] == [1, 2, 3]
    # Any JSON value, a ttl in seconds.
    for v in ("text", 42, None, True, {"deep": {"er": [{}]}}):
        st, d = call(t, "PUT", "/api/v1/sessions/v", {"data": v, "ttl": 60})
        assert st in (200, 201)
        assert call(t, "GET", "/api/v1/sessions/v")[1]["data"] == v
    # Touch, with and without a ttl; the response has the new expiry.
    st, d = call(t, "POST", "/api/v1/sessions/user-1/touch")
    assert st == 200 and abs(d["ttl_seconds"] - 7200) < 0.001
    st, d = call(t, "POST", "/api/v1/sessions/user-1/touch", {"ttl": "10m"})
    assert st == 200 and abs(d["ttl_seconds"] - 600) < 0.001
    assert call(t, "POST", "/api/v1/sessions/nobody/touch")[0] == 404
    # UTF-8 ids.
    st, d = call(t, "PUT", "/api/v1/sessions/%C3%A9t%C3%A9", {"data": 1})
    assert st == 201 and d["id"] == "\u00e9t\u00e9", d
    # Stats.
    st, d = call(t, "GET", "/api/v1/sessions")
    assert st == 200 and d["count"] == 3 and d["expired_total"] == 0 and d["evicted_total"] == 0, d
    assert d["persist"] is False and d["max_sessions"] == 100000 and d["ttl_seconds"] == 3600
    # Delete.
    st, d = call(t, "DELETE", "/api/v1/sessions/user-1")
    assert st == 204 and d is None
    st, d = call(t, "DELETE", "/api/v1/sessions/user-1")
    assert st == 404 and error_code(d) == "not_found"
    st, d = call(t, "GET", "/api/v1/sessions/user-1")
    assert st == 404 and error_code(d) == "not_found"
    stop(t)


def test_errors():
    t = start_tend("sessions: {max_sessions: 10}\n")
    cases = [
        ({"data": 1, "ttl": "5x"}, 400, "bad_ttl"),
        ({"data": 1, "ttl": -3}, 400, "bad_ttl"),
        ({"data": 1, "ttl": [1]}, 400, "bad_ttl"),
        ({"ttl": "1h"}, 400, "bad_request"),
        ({"data": 1, "tll": "1h"}, 400, "bad_request"),
        ([1, 2], 400, "bad_request"),
    ]
    for body, status, code in cases:
        st, d = call(t, "PUT", "/api/v1/sessions/k", body)
        assert st == status and error_code(d) == code, (body, st, d)
    st, d = call(t, "PUT", "/api/v1/sessions/k", raw=b'{"data": ')
    assert st == 400 and error_code(d) == "bad_json", d
    st, d = call(t, "PUT", "/api/v1/sessions/k")
    assert st == 400 and error_code(d) == "bad_request", d
    st, d = call(t, "PUT", "/api/v1/sessions/" + "k" * 257, {"data": 1})
    assert st == 400 and error_code(d) == "key_too_long", d
    assert call(t, "PUT", "/api/v1/sessions/" + "k" * 256, {"data": 1})[0] == 201
    assert call(t, "GET", "/api/v1/sessions/" + "k" * 257)[0] == 400
    # Over the 64 KiB value limit: 413; just under: stored.
    st, d = call(t, "PUT", "/api/v1/sessions/big", {"data": "x" * (64 * 1024)})
    assert st == 413 and error_code(d) == "payload_too_large", d
    assert call(t, "PUT", "/api/v1/sessions/big", {"data": "x" * (64 * 1024 - 2)})[0] == 201
    st, d = call(t, "POST", "/api/v1/sessions/k/touch", {"ttl": "nope"})
    assert st == 400 and error_code(d) == "bad_ttl"
    assert call(t, "PATCH", "/api/v1/sessions/k", {"data": 1})[0] == 405
    assert call(t, "GET", "/api/v1/sessions/a/b")[0] == 404
    stop(t)


def test_max_value():
    t = start_tend("sessions: {max_value: 1K}\n")
    assert call(t, "PUT", "/api/v1/sessions/a", {"data": "x" * 1022})[0] == 201  # 1024 bytes of JSON
    st, d = call(t, "PUT", "/api/v1/sessions/a", {"data": "x" * 1023})
    assert st == 413 and error_code(d) == "payload_too_large", d
    assert call(t, "GET", "/api/v1/sessions")[1]["max_value_bytes"] == 1024
    stop(t)
    bad = Tend(SERVICE + "sessions: {max_value: 2M}\n", start=False)
    bad.start()
    assert bad.wait_exit(slow(20)) == 2
    assert bad.find(r"sessions\.max_value: max_value must be between 1 and 1M", stream="stderr"), bad.tail(10)


def test_expiry_and_sweep():
    ttl = int(1500 * SLOW)  # ms; the default ttl of this tend
    t = start_tend("sessions: {ttl: %dms, cleanup_interval: 1s}\n" % ttl)
    for i in range(5):
        assert call(t, "PUT", "/api/v1/sessions/s%d" % i, {"data": i})[0] == 201
    assert call(t, "PUT", "/api/v1/sessions/long", {"data": 1, "ttl": "1h"})[0] == 201
    assert call(t, "GET", "/api/v1/sessions/s0")[0] == 200
    time.sleep(ttl / 1000.0 + 0.2)
    # Expired: never served, whatever the sweeper did so far.
    st, d = call(t, "GET", "/api/v1/sessions/s0")
    assert st == 404 and error_code(d) == "not_found"
    assert call(t, "POST", "/api/v1/sessions/s1/touch")[0] == 404
    assert call(t, "DELETE", "/api/v1/sessions/s2")[0] == 404
    assert call(t, "GET", "/api/v1/sessions/long")[0] == 200

    def swept():
        d = call(t, "GET", "/api/v1/sessions")[1]
        return d["count"] == 1 and d["expired_total"] == 5 and d
    wait_for(swept, slow(10), what="the sweeper")
    # A touch keeps a session alive past its first expiry (touched at a
    # third of its ttl, three times: a stall of two thirds is tolerated).
    ttl_ms = int(3000 * SLOW)
    assert call(t, "PUT", "/api/v1/sessions/kept", {"data": 1, "ttl": "%dms" % ttl_ms})[0] == 201
    for _ in range(4):
        time.sleep(ttl_ms / 3000.0)
        assert call(t, "POST", "/api/v1/sessions/kept/touch")[0] == 200
    assert call(t, "GET", "/api/v1/sessions/kept")[0] == 200
    stop(t)


def test_eviction():
    t = start_tend("sessions: {max_sessions: 3, ttl: 1h}\n")
    # Expiring soonest: b, then c, then a.
    for k, ttl in (("a", "50m"), ("b", "10m"), ("c", "30m")):
        assert call(t, "PUT", "/api/v1/sessions/" + k, {"data": k, "ttl": ttl})[0] == 201
    assert call(t, "PUT", "/api/v1/sessions/d", {"data": "d"})[0] == 201
    assert call(t, "GET", "/api/v1/sessions/b")[0] == 404
    assert call(t, "PUT", "/api/v1/sessions/e", {"data": "e"})[0] == 201
    assert call(t, "GET", "/api/v1/sessions/c")[0] == 404
    for k in "ade":
        assert call(t, "GET", "/api/v1/sessions/" + k)[0] == 200
    d = call(t, "GET", "/api/v1/sessions")[1]
    assert d["count"] == 3 and d["evicted_total"] == 2 and d["max_sessions"] == 3, d
    # Metrics.
    st, hd, text = http_request("GET", t.base + "/metrics")
    assert st == 200
    for name, kind, value in (("tend_sessions", "gauge", 3), ("tend_sessions_expired_total", "counter", 0),
                              ("tend_sessions_evicted_total", "counter", 2)):
        assert "# TYPE %s %s\n" % (name, kind) in text, text
        assert "# HELP %s " % name in text
        assert re.search(r"(?m)^%s %d$" % (name, value), text), (name, text)
    stop(t)


def test_persist_across_restart():
    t = start_tend("sessions: {persist: true, ttl: 1h, max_sessions: 3}\n")
    assert call(t, "GET", "/api/v1/sessions")[1]["persist"] is True
    assert call(t, "PUT", "/api/v1/sessions/keep", {"data": {"n": 1}})[0] == 201
    assert call(t, "PUT", "/api/v1/sessions/keep", {"data": {"n": 2}, "ttl": "3h"})[0] == 200
    assert call(t, "PUT", "/api/v1/sessions/short", {"data": 1, "ttl": "30m"})[0] == 201
    assert call(t, "PUT", "/api/v1/sessions/gone", {"data": 1})[0] == 201
    assert call(t, "DELETE", "/api/v1/sessions/gone")[0] == 204
    assert call(t, "PUT", "/api/v1/sessions/touched", {"data": 1, "ttl": "10m"})[0] == 201
    st, d = call(t, "POST", "/api/v1/sessions/touched/touch", {"ttl": "2h"})
    assert st == 200
    touched_expiry = d["expires_at"]
    before = call(t, "GET", "/api/v1/sessions/keep")[1]
    # max_sessions 3 (keep, short, touched): this evicts "short", also on disk.
    assert call(t, "PUT", "/api/v1/sessions/new", {"data": 1, "ttl": "4h"})[0] == 201
    assert call(t, "GET", "/api/v1/sessions/short")[0] == 404
    stop(t)

    start_tend(t=t)
    st, d = call(t, "GET", "/api/v1/sessions/keep")
    assert st == 200 and d == before, (d, before)
    assert call(t, "GET", "/api/v1/sessions/touched")[1]["expires_at"] == touched_expiry
    assert call(t, "GET", "/api/v1/sessions/gone")[0] == 404
    assert call(t, "GET", "/api/v1/sessions/short")[0] == 404
    assert call(t, "GET", "/api/v1/sessions/new")[0] == 200
    assert call(t, "GET", "/api/v1/sessions")[1]["count"] == 3
    assert t.find(r"sessions: 3 loaded")
    stop(t)


def test_persist_write_failure():
    # The second session write transaction fails with a full disk: that PUT
    # gets 503 (memory has it, the disk does not); the next one is durable.
    t = start_tend("sessions: {persist: true}\n", env={"TEND_STORE_FAULT": "session_put:ENOSPC:1"})
    assert call(t, "PUT", "/api/v1/sessions/a", {"data": 1})[0] == 201
    st, d = call(t, "PUT", "/api/v1/sessions/b", {"data": 2})
    assert st == 503 and error_code(d) == "store_unavailable", (st, d)
    assert call(t, "PUT", "/api/v1/sessions/c", {"data": 3})[0] == 201
    stop(t)
    start_tend(t=t)
    assert call(t, "GET", "/api/v1/sessions/a")[0] == 200
    assert call(t, "GET", "/api/v1/sessions/b")[0] == 404
    assert call(t, "GET", "/api/v1/sessions/c")[0] == 200
    stop(t)


if __name__ == "__main__":
    run([test_routes, test_errors, test_max_value, test_expiry_and_sweep, test_eviction, test_persist_across_restart,
         test_persist_write_failure])
