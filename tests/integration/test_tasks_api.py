"""The task API from the outside (SPEC 5 Tasks): submission (single, bulk,
idempotency), validation errors, paging and filters, cancel/retry,
dead-letter requeue and purge, pause/resume, stats, the task metrics and
task events."""

import threading

from harness import *
from taskutil import *

TID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def error_of(js):
    assert isinstance(js, dict) and isinstance(js.get("error"), dict), js
    e = js["error"]
    assert isinstance(e.get("code"), str) and isinstance(e.get("message"), str), js
    return e


def raw_post(path, url, body):
    """POST over the unix socket that tolerates the server answering and
    closing before the whole body is sent; (status, parsed JSON)."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(slow(10))
    s.connect(path)
    head = ("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n" % (url, len(body))).encode()
    try:
        s.sendall(head + body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.\d (\d+)", head)
    assert m, "no HTTP answer: %r" % data[:200]
    try:
        js = json.loads(rest.decode())
    except ValueError:
        js = None
    return int(m.group(1)), js


def test_submit_single_bulk_idempotency():
    t = task_tend('''
        queues:
          q: {handler: pull}
          other: {handler: pull}
        ''')
    one = submit(t, "q", {"payload": {"n": 1}, "priority": "high", "tags": ["a", "b"]})
    assert TID_RE.match(one["id"]), one
    assert one["queue"] == "q" and one["state"] == "pending" and one["priority"] == "high", one
    got = get_task(t, one["id"])
    assert got["payload"] == {"n": 1} and got["attempts"] == 0, got
    assert got.get("tags") == ["a", "b"], got

    # A bulk: one 201, one task each, ids unique and increasing.
    bulk = submit(t, "q", [{"payload": i} for i in range(50)])
    ids = [x["id"] for x in bulk]
    assert len(ids) == 50 and len(set(ids)) == 50, ids
    assert ids == sorted(ids) and ids[0] > one["id"], ids
    assert [get_task(t, i)["payload"] for i in ids[:3]] == [0, 1, 2]

    # Idempotency: 200 and the same task, nothing new; per queue.
    k1 = submit(t, "q", {"payload": "first", "idempotency_key": "k-1"})
    again = submit(t, "q", {"payload": "second", "idempotency_key": "k-1"}, expect=200)
    assert again["id"] == k1["id"] and get_task(t, k1["id"])["payload"] == "first", (k1, again)
    elsewhere = submit(t, "other", {"payload": "x", "idempotency_key": "k-1"})
    assert elsewhere["id"] != k1["id"]
    # In a bulk: the hit returns the existing task, the rest are created.
    mixed = submit(t, "q", [{"idempotency_key": "k-1"}, {"idempotency_key": "k-2"}], expect=201)
    assert mixed[0]["id"] == k1["id"] and mixed[1]["id"] != k1["id"], mixed
    page = list_tasks(t, queue="q", limit=1000)
    assert len(page["tasks"]) == 1 + 50 + 1 + 1, len(page["tasks"])
    assert t.stop() == 0


def test_validation_errors():
    t = task_tend('''
        max_payload: 64K
        queues:
          q: {handler: pull}
        ''')
    cases = [
        ("POST", "/api/v1/queues/nope/tasks", {"payload": 1}, 404),
        ("POST", "/api/v1/queues/q/tasks", {"payload": 1, "priority": "urgent"}, 400),
        ("POST", "/api/v1/queues/q/tasks", {"payload": 1, "delay": "5x"}, 400),
        ("POST", "/api/v1/queues/q/tasks", {"payload": 1, "timeout": "-1s"}, 400),
        ("POST", "/api/v1/queues/q/tasks", {"payload": 1, "max_attempts": 0}, 400),
        ("POST", "/api/v1/queues/q/tasks", {"payload": 1, "run_at": "yesterday"}, 400),
        ("POST", "/api/v1/queues/q/tasks", {"payload": 1, "tags": "notalist"}, 400),
        ("POST", "/api/v1/queues/q/tasks", '{"payload": ', 400),
        ("POST", "/api/v1/queues/q/tasks", "[1, 2", 400),
        ("POST", "/api/v1/queues/q/tasks", "42", 400),
        ("POST", "/api/v1/queues/q/tasks", {"payload": "x" * (70 * 1024)}, 413),
        ("GET", "/api/v1/tasks/0000000000000000000000000Z", None, 404),
        ("GET", "/api/v1/tasks?state=bogus", None, 400),
        ("GET", "/api/v1/tasks?limit=-3", None, 400),
        ("GET", "/api/v1/queues/nope", None, 404),
        ("POST", "/api/v1/queues/nope/pause", None, 404),
        ("POST", "/api/v1/tasks/0000000000000000000000000Z/cancel", None, 404),
        ("POST", "/api/v1/queues/q/reserve?wait=forever", None, 400),
        ("DELETE", "/api/v1/queues/q/tasks", None, 405),
    ]
    for method, path, body, code in cases:
        st, js, text = api(t, method, path, body)
        assert st == code, "%s %s %.80r: HTTP %d, expected %d: %s" % (method, path, body, st, code, text[:300])
        if code != 405 or js is not None:
            error_of(js)
    # Over the API's 1 MiB body limit: 413, possibly before the body is read
    # (the server may close while we still send).
    st, js = raw_post(sock(t), "/api/v1/queues/q/tasks", ('{"payload": "%s"}' % ("y" * (1100 * 1024))).encode())
    assert st == 413, st
    error_of(js)
    # Nothing of the refused submissions was stored.
    assert list_tasks(t, queue="q")["tasks"] == []
    # A bulk with one bad task stores none of it.
    st, js, _ = api(t, "POST", "/api/v1/queues/q/tasks", [{"payload": 1}, {"priority": "nope"}])
    assert st == 400, st
    assert list_tasks(t, queue="q")["tasks"] == []
    assert t.stop() == 0


def test_paging_and_filters():
    t = task_tend('''
        queues:
          a: {handler: pull}
          b: {handler: pull}
        ''')
    ids_a = [x["id"] for x in submit(t, "a", [{"payload": i} for i in range(25)])]
    ids_b = [x["id"] for x in submit(t, "b", [{"payload": i, "delay": "1h"} for i in range(7)])]
    seen, cursor, pages = [], None, 0
    while True:
        page = list_tasks(t, queue="a", limit=10, cursor=cursor)
        pages += 1
        seen += [x["id"] for x in page["tasks"]]
        assert all(x["queue"] == "a" for x in page["tasks"]), page
        cursor = page.get("next_cursor") or page.get("cursor")
        if not cursor:
            break
        assert pages < 10, "paging does not end"
    assert seen == list(reversed(ids_a)), "newest first, every task once"
    assert pages in (3, 4), pages
    # Filters: state, queue, both; every task.
    sched = list_tasks(t, state="scheduled")["tasks"]
    assert sorted(x["id"] for x in sched) == sorted(ids_b), sched
    assert list_tasks(t, queue="b", state="pending")["tasks"] == []
    allt = list_tasks(t, limit=100)["tasks"]
    assert len(allt) == 32 and [x["id"] for x in allt] == sorted((x["id"] for x in allt), reverse=True)
    assert t.stop() == 0


def test_cancel_retry_pause_resume():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}, concurrency: 1, max_attempts: 1}
        ''')
    st, js, _ = api(t, "POST", "/api/v1/queues/q/pause")
    assert st == 200, (st, js)
    assert queue_info(t, "q")["paused"] is True
    a = submit(t, "q", {"payload": {}})["id"]
    b = submit(t, "q", {"payload": {}})["id"]
    time.sleep(slow(0.5))
    assert runs(t) == [] and get_task(t, a)["state"] == "pending", "a paused queue ran a task"

    # Cancel a pending task.
    st, js, text = api(t, "POST", "/api/v1/tasks/%s/cancel" % a)
    assert st == 200 and tasks_of(js)[0]["state"] == "cancelled", (st, text)
    st, js, _ = api(t, "POST", "/api/v1/tasks/%s/cancel" % a)
    assert st == 409, "cancelling a cancelled task: %d" % st
    error_of(js)

    st, _, _ = api(t, "POST", "/api/v1/queues/q/resume")
    assert st == 200
    wait_task(t, b, "succeeded")
    assert get_task(t, a)["state"] == "cancelled" and starts(t) == [b]

    # Retry: a cancelled task runs again, attempts reset; a succeeded one cannot.
    st, js, text = api(t, "POST", "/api/v1/tasks/%s/retry" % a)
    assert st == 200 and tasks_of(js)[0]["state"] in ("pending", "running", "succeeded"), (st, text)
    wait_task(t, a, "succeeded")
    st, js, _ = api(t, "POST", "/api/v1/tasks/%s/retry" % b)
    assert st == 409, st

    # Cancel a running task: its handler is stopped, the task is cancelled.
    c = submit(t, "q", {"payload": {"sleep": 60}})["id"]
    rec = wait_for(lambda: [r for r in runs(t) if r["id"] == c], 10, what="the long task to start")[0]
    assert get_task(t, c)["state"] == "running"
    st, js, text = api(t, "POST", "/api/v1/tasks/%s/cancel" % c)
    assert st in (200, 202), (st, text)
    wait_task(t, c, "cancelled", timeout=10)
    wait_pids_gone([rec["pid"]], 10)
    assert t.stop() == 0


def test_pause_survives_restart():
    # An operator pauses a queue during an incident, then tend restarts (a
    # deploy, a crash): the queue must stay paused until resumed.
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}}
          other: {handler: {exec: HANDLER}}
        ''')
    st, js, _ = api(t, "POST", "/api/v1/queues/q/pause")
    assert st == 200 and js["paused"] is True, (st, js)
    # Answered once durable: even kill -9 right after the answer keeps it.
    t.kill9()
    t.start()
    wait_up(t)
    assert queue_info(t, "q")["paused"] is True, "the pause was lost by a kill -9 and restart"
    assert queue_info(t, "other")["paused"] is False
    t.wait_log(r"paused \(as the last run left it", timeout=10, stream="any")
    a = submit(t, "q", {"payload": {}})["id"]
    b = submit(t, "other", {"payload": {}})["id"]
    wait_task(t, b, "succeeded")
    time.sleep(slow(0.3))
    assert get_task(t, a)["state"] == "pending", "a queue paused before the restart ran a task"
    # Resumed, it runs, and a graceful restart keeps it resumed.
    st, js, _ = api(t, "POST", "/api/v1/queues/q/resume")
    assert st == 200 and js["paused"] is False, (st, js)
    wait_task(t, a, "succeeded")
    assert t.stop() == 0
    t.start()
    wait_up(t)
    assert queue_info(t, "q")["paused"] is False
    c = submit(t, "q", {"payload": {}})["id"]
    wait_task(t, c, "succeeded")
    assert t.stop() == 0


def test_pause_not_saved_is_503():
    # The pause applies at once, but a write that fails is not hidden: 503,
    # and the message says what a restart would do.
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}}
        ''', env={"TEND_STORE_FAULT": "queue_pause:EIO"})
    st, js, _ = api(t, "POST", "/api/v1/queues/q/pause")
    assert st == 503, (st, js)
    assert "restart would not keep it" in error_of(js)["message"], js
    assert queue_info(t, "q")["paused"] is True
    st, js, _ = api(t, "POST", "/api/v1/queues/q/pause")
    assert st == 200, (st, js)
    assert t.stop() == 0


def test_dead_letters_requeue_purge():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}, concurrency: 3, max_attempts: 2, backoff: {base: 50ms, max: 100ms, jitter: 0}}
        ''')
    flag = t.path("broken")
    open(flag, "w").close()
    dead = submit_many(t, "q", [{"payload": {"fail_if_exists": flag, "fail_exit": 65}} for _ in range(3)])
    wait_tasks(t, dead, "dead")
    for i in dead:
        assert get_task(t, i)["attempts"] == 1, "exit 65 must not be retried"
    assert queue_info(t, "q")["dead"] == 3
    # Retry one dead task while still broken: dead again after 1 attempt.
    st, js, _ = api(t, "POST", "/api/v1/tasks/%s/retry" % dead[0])
    assert st == 200, st
    wait_for(lambda: len([r for r in runs(t) if r["id"] == dead[0]]) == 2 and
             get_task(t, dead[0])["state"] == "dead", 10, what="the retried task to die again")
    os.unlink(flag)
    st, js, text = api(t, "POST", "/api/v1/queues/q/dead/requeue")
    assert st == 200, (st, text)
    assert 3 in [v for v in js.values() if isinstance(v, int)], js
    wait_tasks(t, dead, "succeeded")
    # Purge: two more dead ones disappear.
    open(flag, "w").close()
    more = submit_many(t, "q", [{"payload": {"fail_if_exists": flag, "fail_exit": 65}} for _ in range(2)])
    wait_tasks(t, more, "dead")
    st, js, text = api(t, "DELETE", "/api/v1/queues/q/dead")
    assert st == 200 and 2 in [v for v in js.values() if isinstance(v, int)], (st, text)
    for i in more:
        assert api(t, "GET", "/api/v1/tasks/%s" % i)[0] == 404
    assert queue_info(t, "q")["dead"] == 0
    for i in dead:
        assert get_task(t, i)["state"] == "succeeded"
    assert t.stop() == 0


def test_stats_and_metrics():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}, concurrency: 2, max_attempts: 1}
          p: {handler: pull}
        ''')
    ok = submit_many(t, "q", [{"payload": {}, "priority": "high"} for _ in range(4)])
    bad = submit_many(t, "q", [{"payload": {"exit": 65}}])
    submit(t, "p", [{"payload": 1, "priority": "low"}, {"payload": 2, "priority": "low"}, {"payload": 3}])
    wait_tasks(t, ok, "succeeded")
    wait_tasks(t, bad, "dead")
    st, s, text = api(t, "GET", "/api/v1/stats")
    assert st == 200, text
    for k in ("running_tasks", "queue_depth", "dead_letter_count", "success_rate", "total_processed",
              "average_processing_time_ms", "throughput_per_second", "circuit_breakers"):
        assert k in s, "stats lacks %s: %s" % (k, s)
    assert s["dead_letter_count"] == 1 and s["queue_depth"] == 3 and s["running_tasks"] == 0, s
    assert s["total_processed"] == 5, s
    assert abs(s["success_rate"] - 0.8) < 0.01 or abs(s["success_rate"] - 80.0) < 0.1, s

    text = metrics_text(t)
    assert metric(t, "tend_tasks_submitted_total", text, queue="q", priority="high") == 4, text
    assert metric(t, "tend_tasks_submitted_total", text, queue="p", priority="low") == 2
    assert metric(t, "tend_tasks_finished_total", text, queue="q", result="succeeded") == 4
    assert metric(t, "tend_tasks_finished_total", text, queue="q", result="dead") == 1
    assert metric(t, "tend_queue_depth", text, queue="p", priority="low") == 2
    assert metric(t, "tend_queue_depth", text, queue="p", priority="normal") == 1
    assert metric(t, "tend_tasks_running", text, queue="q") == 0
    assert metric(t, "tend_dead_tasks", text, queue="q") == 1
    assert metric(t, "tend_circuit_breaker_state", text, queue="q") == 0
    assert metric(t, "tend_task_duration_seconds_count", text, queue="q") == 5, text
    assert re.search(r'(?m)^# TYPE tend_task_duration_seconds histogram$', text)
    assert re.search(r'(?m)^# TYPE tend_batch_size histogram$', text)
    assert t.stop() == 0


def test_task_events():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}}
        ''')
    got = []
    done = threading.Event()

    def reader():
        import http.client
        from harness import UnixHTTPConnection
        conn = UnixHTTPConnection(sock(t), timeout=slow(15))
        try:
            conn.request("GET", "/api/v1/events?types=task")
            r = conn.getresponse()
            buf = ""
            while not done.is_set():
                line = r.fp.readline().decode("utf-8", "replace")
                if not line:
                    break
                if line.startswith("data:"):
                    try:
                        got.append(json.loads(line[5:].strip()))
                    except ValueError:
                        pass
                buf += line
        except OSError:
            pass
        finally:
            conn.close()
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    time.sleep(slow(0.3))
    tid = submit(t, "q", {"payload": {}})["id"]
    wait_task(t, tid, "succeeded")

    def seen():
        txt = json.dumps(got)
        return tid in txt and "succeeded" in txt and "running" in txt
    # The event stream may only wake on traffic (see test_cli_client.py Poker).
    deadline = time.monotonic() + slow(10)
    while not seen() and time.monotonic() < deadline:
        api(t, "GET", "/health/live")
        time.sleep(0.05)
    done.set()
    assert seen(), "task events for %s: %s" % (tid, got[:10])
    assert t.stop() == 0


if __name__ == "__main__":
    run([test_submit_single_bulk_idempotency, test_validation_errors, test_paging_and_filters,
         test_cancel_retry_pause_resume, test_pause_survives_restart, test_pause_not_saved_is_503, test_dead_letters_requeue_purge, test_stats_and_metrics,
         test_task_events])
