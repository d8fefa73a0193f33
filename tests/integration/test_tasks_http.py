"""HTTP task handlers (SPEC 5): tend POSTs the task JSON; 2xx succeeds,
4xx other than 408/429 is permanent (dead at once), 5xx is retried, 429
with Retry-After waits that long.  And the pull protocol: reserve with a
long poll (204 when nothing comes), ack, nack with retry_in, touch, and
redelivery when a lease expires."""

import http.server
import threading

from harness import *
from taskutil import *


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"null")
        srv = self.server
        with srv.lock:
            srv.calls.append((time.time(), self.path, body, self.headers.get("Content-Type")))
            count = len([c for c in srv.calls if c[1] == self.path])
        code, hdrs, out = 200, {}, b'{"ok":true}'
        if self.path == "/bad":
            code = 400
        elif self.path == "/err":
            code = 500 if count < 3 else 200
        elif self.path == "/busy":
            code, hdrs = (429, {"Retry-After": "2"}) if count == 1 else (200, {})
        elif self.path == "/timeout":
            code = 408
        elif self.path == "/batch":
            failed = [t["id"] for t in body["batch"] if (t.get("payload") or {}).get("fail")]
            out = json.dumps({"failed": failed}).encode()
        self.send_response(code)
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.calls = []
    srv.lock = threading.Lock()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_http_handler():
    srv = server()
    base = "http://127.0.0.1:%d" % srv.server_address[1]
    t = task_tend('''
        queues:
          ok: {handler: {http: "%(b)s/ok"}}
          bad: {handler: {http: "%(b)s/bad"}, max_attempts: 5}
          err: {handler: {http: "%(b)s/err"}, max_attempts: 5, backoff: {base: 100ms, max: 200ms, jitter: 0}}
          busy: {handler: {http: "%(b)s/busy"}, max_attempts: 5, backoff: {base: 50ms, max: 50ms, jitter: 0}}
          to: {handler: {http: "%(b)s/timeout"}, max_attempts: 2, backoff: {base: 50ms, max: 50ms, jitter: 0}}
          batch: {handler: {http: "%(b)s/batch"}, batch: {size: 4, max_wait: 200ms}, max_attempts: 1}
        ''' % {"b": base})
    try:
        ok = submit(t, "ok", {"payload": {"x": 1}})["id"]
        bad = submit(t, "bad", {"payload": {}})["id"]
        err = submit(t, "err", {"payload": {}})["id"]
        busy = submit(t, "busy", {"payload": {}})["id"]
        to = submit(t, "to", {"payload": {}})["id"]
        bt = [x["id"] for x in submit(t, "batch", [{"payload": {"fail": i == 1}} for i in range(4)])]
        wait_task(t, ok, "succeeded")
        with srv.lock:
            c = [c for c in srv.calls if c[1] == "/ok"][0]
        assert c[2]["id"] == ok and c[2]["queue"] == "ok" and c[2]["attempt"] == 1 and c[2]["payload"] == {"x": 1}, c
        assert c[3].startswith("application/json"), c
        task = wait_task(t, bad, "dead")
        assert task["attempts"] == 1, "a 400 is permanent: %s" % task
        assert wait_task(t, err, "succeeded", timeout=20)["attempts"] == 3
        task = wait_task(t, busy, "succeeded", timeout=20)
        with srv.lock:
            bc = [c[0] for c in srv.calls if c[1] == "/busy"]
        assert len(bc) == 2 and bc[1] - bc[0] >= 1.8, "Retry-After 2 honoured? gaps %s" % bc
        assert wait_task(t, to, "dead", timeout=20)["attempts"] == 2, "408 is retried"
        wait_task(t, bt[1], "dead")
        for i in (0, 2, 3):
            wait_task(t, bt[i], "succeeded")
    finally:
        srv.shutdown()
    assert t.stop() == 0


def test_pull_protocol():
    t = task_tend('''
        queues:
          jobs: {handler: {pull: true, ack: durable}, timeout: 2s, max_attempts: 3, backoff: {base: 100ms, max: 100ms, jitter: 0}}
          other: {handler: {exec: ["true"]}}
        ''')
    # Empty: 204 after the wait (a long poll, not at once).
    t0 = time.monotonic()
    assert reserve(t, "jobs", "1s") is None
    assert time.monotonic() - t0 >= 0.9
    assert api(t, "POST", "/api/v1/queues/other/reserve?wait=0s")[0] in (400, 409), "reserve on an exec queue"
    # A submission during a long poll answers it at once.
    got = {}
    th = threading.Thread(target=lambda: got.update(task=reserve(t, "jobs", "20s")))
    t0 = time.monotonic()
    th.start()
    time.sleep(slow(0.4))
    a = submit(t, "jobs", {"payload": {"n": 1}})["id"]
    th.join(slow(10))
    assert got.get("task") and got["task"]["id"] == a, got
    assert time.monotonic() - t0 < slow(5), "the parked reserve was not woken"
    assert got["task"]["payload"] == {"n": 1} and get_task(t, a)["state"] == "running"
    st, js, _ = api(t, "POST", "/api/v1/tasks/%s/ack" % a)
    assert st == 200 and get_task(t, a)["state"] == "succeeded", st
    assert api(t, "POST", "/api/v1/tasks/%s/ack" % a)[0] == 409, "ack of a finished task"

    # nack with retry_in: back after that long, attempt 2.
    b = submit(t, "jobs", {"payload": {"n": 2}})["id"]
    assert reserve(t, "jobs")["id"] == b
    st, js, text = api(t, "POST", "/api/v1/tasks/%s/nack" % b, {"error": "try later", "retry_in": "1s"})
    assert st == 200, (st, text)
    task = get_task(t, b)
    assert task["state"] == "scheduled" and "try later" in json.dumps(task), task
    assert reserve(t, "jobs") is None
    t0 = time.monotonic()
    again = reserve(t, "jobs", "5s")
    assert again and again["id"] == b and time.monotonic() - t0 >= 0.5, again
    assert get_task(t, b)["attempts"] == 2

    # touch keeps the lease beyond the timeout (2s).
    for _ in range(3):
        time.sleep(1)
        st, _, text = api(t, "POST", "/api/v1/tasks/%s/touch" % b)
        assert st == 200, (st, text)
    assert get_task(t, b)["state"] == "running" and get_task(t, b)["attempts"] == 2
    # Stop touching: the lease expires and the task is delivered again.
    t0 = time.monotonic()
    third = reserve(t, "jobs", "10s", timeout=20)
    assert third and third["id"] == b, third
    assert time.monotonic() - t0 >= 1.0, "redelivered before the lease expired"
    assert get_task(t, b)["attempts"] == 3
    assert api(t, "POST", "/api/v1/tasks/%s/ack" % b)[0] == 200
    # nack of the last attempt: dead.
    c = submit(t, "jobs", {"payload": {}, "max_attempts": 1})["id"]
    assert reserve(t, "jobs")["id"] == c
    assert api(t, "POST", "/api/v1/tasks/%s/nack" % c, {"error": "no"})[0] == 200
    assert get_task(t, c)["state"] == "dead"
    assert t.stop() == 0


def test_pull_concurrency():
    # concurrency bounds the leases out at once; a reserve beyond it waits
    # for an ack (or nack, or an expired lease) like one that finds nothing.
    t = task_tend('''
        queues:
          jobs: {handler: pull, timeout: 30s, concurrency: 2}
          wide: {handler: pull, timeout: 30s}
        ''')
    ids = [x["id"] for x in submit(t, "jobs", [{"payload": {"n": i}} for i in range(5)])]
    a, b = reserve(t, "jobs", "5s"), reserve(t, "jobs", "5s")
    assert a and b and a["id"] != b["id"], (a, b)
    t0 = time.monotonic()
    assert reserve(t, "jobs", "1s") is None, "a third lease with concurrency 2"
    assert time.monotonic() - t0 >= 0.9
    running = [x for x in ids if get_task(t, x)["state"] == "running"]
    assert set([a["id"], b["id"]]) <= set(running)
    # A parked reserve gets the next task as soon as an ack frees a slot.
    got = {}
    th = threading.Thread(target=lambda: got.update(task=reserve(t, "jobs", "20s")))
    th.start()
    time.sleep(slow(0.4))
    assert not got, "served with no slot free"
    t0 = time.monotonic()
    assert api(t, "POST", "/api/v1/tasks/%s/ack" % a["id"])[0] == 200
    th.join(slow(10))
    assert got.get("task") and got["task"]["id"] in ids and got["task"]["id"] not in (a["id"], b["id"]), got
    assert time.monotonic() - t0 < slow(3), "the parked reserve waited past the ack"
    # nack frees a slot too; FIFO order is kept (the nacked one is retried later).
    st, _, text = api(t, "POST", "/api/v1/tasks/%s/nack" % b["id"], {"error": "later", "retry_in": "30s"})
    assert st == 200, (st, text)
    c = reserve(t, "jobs", "5s")
    assert c and c["id"] in ids, c
    assert reserve(t, "jobs", "1s") is None
    # The default concurrency (3) applies to pull queues as well.
    submit(t, "wide", [{"payload": {}} for _ in range(6)])
    out = [reserve(t, "wide", "5s") for _ in range(3)]
    assert all(out), out
    assert reserve(t, "wide", "1s") is None, "a fourth lease with the default concurrency 3"
    # (Shutdown gives leases out their remaining time: give them back first.)
    for x in out + [c, got["task"]]:
        assert api(t, "POST", "/api/v1/tasks/%s/ack" % x["id"])[0] == 200
    assert t.stop() == 0


def test_pull_pause():
    # A paused pull queue hands out nothing, not even the leases it had
    # claimed ahead for the next reserves; resumed, a parked reserve gets one.
    t = task_tend('''
        queues:
          jobs: {handler: pull, timeout: 30s, concurrency: 8}
        ''')
    ids = [x["id"] for x in submit(t, "jobs", [{"payload": {"n": i}} for i in range(20)])]
    first = reserve(t, "jobs", "5s")
    assert first, "nothing to reserve"
    # Leases claimed ahead are waiting for the next reserves now.
    wait_for(lambda: len(list_tasks(t, queue="jobs", state="running", limit=100)["tasks"]) > 1, 10,
             what="leases claimed ahead")
    st, js, _ = api(t, "POST", "/api/v1/queues/jobs/pause")
    assert st == 200 and js["paused"] is True, (st, js)
    assert reserve(t, "jobs", "1s") is None, "a paused queue handed out a lease"
    got = {}
    th = threading.Thread(target=lambda: got.update(task=reserve(t, "jobs", "20s")))
    th.start()
    time.sleep(slow(0.5))
    assert not got, "a paused queue served a parked reserve"
    st, _, _ = api(t, "POST", "/api/v1/queues/jobs/resume")
    assert st == 200
    th.join(slow(10))
    assert got.get("task") and got["task"]["id"] in ids, got
    # The one leased before the pause can still be acked.
    for x in (first, got["task"]):
        assert api(t, "POST", "/api/v1/tasks/%s/ack" % x["id"])[0] == 200
    assert t.stop() == 0


if __name__ == "__main__":
    run([test_http_handler, test_pull_protocol, test_pull_concurrency, test_pull_pause])
