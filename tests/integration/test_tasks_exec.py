"""Dispatch semantics through exec handlers (SPEC 5 Handlers): the task
JSON on stdin and the TEND_* environment, strict priorities and FIFO,
per-queue concurrency and the global workers limit, delay and run_at,
timeouts, retries with growing backoff then dead, exit 65, dry_run, batch
mode with partial failure, the circuit breaker and the rate limit.

Timing bounds are one-sided where the machine's load can only make
things slower, and generous (scaled by TEND_TEST_SLOW) otherwise."""

import datetime

from harness import *
from taskutil import *


def overlap(rs):
    """The most runs that were in progress at one moment."""
    ev = []
    for r in rs:
        ev.append((r["start"], 1))
        ev.append((r["end"] if r["end"] is not None else float("inf"), -1))
    ev.sort(key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def test_exec_contract():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}}
        ''')
    tid = submit(t, "q", {"payload": {"hello": ["w", 1]}})["id"]
    wait_task(t, tid, "succeeded")
    r = runs(t)
    assert len(r) == 1, r
    r = r[0]
    assert r["id"] == tid and r["queue"] == "q" and r["attempt"] == 1 and r["payload"] == {"hello": ["w", 1]}, r
    assert r["env"] == {"TEND_TASK_ID": tid, "TEND_QUEUE": "q", "TEND_ATTEMPT": "1"}, r["env"]
    task = get_task(t, tid)
    assert task["attempts"] == 1 and task.get("started_at") and task.get("finished_at"), task
    # A failure keeps the output tail as the error.
    bad = submit(t, "q", {"payload": {"exit": 65, "stderr": "cannot parse the frobnicator"}})["id"]
    task = wait_task(t, bad, "dead")
    assert "frobnicator" in json.dumps(task), task
    assert t.stop() == 0


def test_priorities_strict_fifo():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}, concurrency: 1}
        ''')
    assert api(t, "POST", "/api/v1/queues/q/pause")[0] == 200
    order = ["low", "normal", "background", "critical", "high", "normal", "critical", "low", "high", "background"]
    ids = []
    for i, p in enumerate(order):
        ids.append((p, i, submit(t, "q", {"payload": {"i": i}, "priority": p})["id"]))
    assert api(t, "POST", "/api/v1/queues/q/resume")[0] == 200
    wait_runs(t, len(ids), timeout=30)
    got = starts(t)
    want = [tid for _, _, tid in sorted(ids, key=lambda x: (PRIORITIES.index(x[0]), x[1]))]
    assert got == want, "run order %s, expected %s" % (
        [next(p for p, _, i in ids if i == g) for g in got], [next(p for p, _, i in ids if i == w) for w in want])
    assert t.stop() == 0


def peak_running(t, queues, until_ids, timeout=30):
    """Polls tend's own count of running tasks (of one queue, or all of
    them in one snapshot: /api/v1/stats) until every task of until_ids
    succeeded; returns the highest seen."""
    best = 0
    deadline = time.monotonic() + slow(timeout)
    while time.monotonic() < deadline:
        if len(queues) == 1:
            best = max(best, queue_info(t, queues[0])["running"])
        else:
            best = max(best, api(t, "GET", "/api/v1/stats")[1]["running_tasks"])
        if all(get_task(t, i)["state"] == "succeeded" for i in until_ids):
            return best
        time.sleep(0.02)
    raise AssertionError("tasks did not finish within %.0fs" % slow(timeout))


def test_concurrency_and_workers():
    t = task_tend('''
        workers: 3
        queues:
          a: {handler: {exec: HANDLER}, concurrency: 2}
          b: {handler: {exec: HANDLER}, concurrency: 2}
        ''')
    a = submit_many(t, "a", [{"payload": {"sleep": 0.6}} for _ in range(6)])
    peak = peak_running(t, ["a"], a)
    ra = runs(t)
    # The bound holds for the handlers themselves; tend's own count shows
    # that it used the two slots.
    assert overlap(ra) <= 2 and peak == 2, "queue concurrency 2: %d handlers at once, tend counted %d" % (
        overlap(ra), peak)
    # Both queues together: at most workers (3) at once, each queue <= 2.
    os.unlink(t.path("runs.log"))
    ids = submit_many(t, "a", [{"payload": {"sleep": 0.6}} for _ in range(4)])
    ids += submit_many(t, "b", [{"payload": {"sleep": 0.6}} for _ in range(4)])
    peak = peak_running(t, ["a", "b"], ids)
    rs = runs(t)
    assert overlap(rs) <= 3 and peak == 3, "workers 3: %d handlers at once, tend counted %d" % (overlap(rs), peak)
    assert overlap([r for r in rs if r["queue"] == "a"]) <= 2 and overlap([r for r in rs if r["queue"] == "b"]) <= 2
    assert t.stop() == 0


def test_delay_and_run_at():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}}
        ''')
    t0 = time.time()
    d = submit(t, "q", {"payload": {}, "delay": "2500ms"})
    assert d["state"] == "scheduled", d
    at = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    r = submit(t, "q", {"payload": {}, "run_at": at})
    now = submit(t, "q", {"payload": {}})
    wait_tasks(t, [d["id"], r["id"], now["id"]], "succeeded")
    by = {x["id"]: x["start"] for x in runs(t)}
    assert by[d["id"]] - t0 >= 2.4, "delay 2.5s ran after %.2fs" % (by[d["id"]] - t0)
    assert by[r["id"]] - t0 >= 0.9, "run_at +1s ran after %.2fs" % (by[r["id"]] - t0)
    assert by[now["id"]] < by[r["id"]] < by[d["id"]], by
    assert t.stop() == 0


def test_timeout_retries_backoff_dead():
    t = task_tend('''
        queues:
          slow: {handler: {exec: HANDLER}, timeout: 1s, max_attempts: 1}
          flaky: {handler: {exec: HANDLER}, max_attempts: 4, backoff: {base: 300ms, max: 10s, jitter: 0}}
        ''')
    s = submit(t, "slow", {"payload": {"sleep": 60}})["id"]
    f = submit(t, "flaky", {"payload": {"exit": 3}})["id"]
    task = wait_task(t, s, "dead", timeout=15)
    assert "timeout" in json.dumps(task).lower() or "timed out" in json.dumps(task).lower(), task
    pid = [r for r in runs(t) if r["id"] == s][0]["pid"]
    wait_pids_gone([pid], 5)
    task = wait_task(t, f, "dead", timeout=20)
    assert task["attempts"] == 4, task
    rs = [r for r in runs(t) if r["id"] == f]
    assert [r["attempt"] for r in rs] == [1, 2, 3, 4], rs
    gaps = [rs[i + 1]["start"] - rs[i]["end"] for i in range(3)]
    # min(max, base * 2^(n-1)): 0.3, 0.6, 1.2 s (plus process start-up).
    for i, g in enumerate(gaps):
        assert g >= 0.3 * 2 ** i * 0.9, "backoff %d was %.3fs: %s" % (i + 1, g, gaps)
    assert gaps[2] > gaps[0] + 0.5, "backoff does not grow: %s" % gaps
    # A task's own max_attempts overrides the queue's.
    g = submit(t, "flaky", {"payload": {"exit": 3}, "max_attempts": 1})["id"]
    assert wait_task(t, g, "dead")["attempts"] == 1
    # Succeeds on the third attempt: not dead.
    h = submit(t, "flaky", {"payload": {"fail_attempts": 2}})["id"]
    task = wait_task(t, h, "succeeded", timeout=20)
    assert task["attempts"] == 3, task
    assert t.stop() == 0


def test_dry_run():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}, dry_run: true}
        ''')
    ids = submit_many(t, "q", [{"payload": {"exit": 1}} for _ in range(3)])
    wait_tasks(t, ids, "succeeded")
    assert runs(t) == [], "dry_run ran the handler"
    t.wait_log(r"dry.run", timeout=5, stream="any")
    assert t.stop() == 0


def test_batch_mode_partial_failure():
    t = task_tend('''
        queues:
          q:
            handler: {exec: HANDLER}
            batch: {size: 3, max_wait: 1500ms}
            max_attempts: 2
            backoff: {base: 100ms, max: 100ms, jitter: 0}
        ''')
    body = [{"payload": {"i": i, "fail": i == 4}} for i in range(7)]
    t0 = time.time()
    ids = [x["id"] for x in submit(t, "q", body)]
    wait_tasks(t, [i for k, i in enumerate(ids) if k != 4], "succeeded", timeout=20)
    task = wait_task(t, ids[4], "dead", timeout=20)
    assert task["attempts"] == 2, task
    rs = runs(t)
    batches = {}
    for r in rs:
        batches.setdefault(r["pid"], []).append(r)
    batches = sorted(batches.values(), key=lambda b: b[0]["start"])
    assert all(len(b) <= 3 and all(r["batch"] == len(b) for r in b) for b in batches), batches
    # Two full batches at once (running side by side), in submission order...
    assert sorted([r["id"] for r in b] for b in batches[:2]) == [ids[0:3], ids[3:6]], batches
    # ... and the seventh task alone (or with a retry) once the oldest waited max_wait.
    seventh = [b for b in batches if ids[6] in [r["id"] for r in b]]
    assert len(seventh) == 1 and seventh[0][0]["start"] - t0 >= 1.3, "the partial batch ran after %.2fs" % (
        seventh[0][0]["start"] - t0)
    # Only the failed task was retried.
    assert [r["id"] for r in rs if r["attempt"] == 2] == [ids[4]], rs
    text = metrics_text(t)
    assert metric(t, "tend_batch_size_count", text, queue="q") >= 3, text
    assert t.stop() == 0


OPEN_FOR = slow(2.0)  # the breaker's open_for, seconds; the checks while open take < slow(1)


def test_circuit_breaker():
    t = task_tend('''
        queues:
          q:
            handler: {exec: HANDLER}
            concurrency: 3
            max_attempts: 10
            backoff: {base: 100ms, max: 100ms, jitter: 0}
            circuit_breaker: {failure_threshold: 2, open_for: %dms}
        ''' % (OPEN_FOR * 1000))
    flag = t.path("down")
    open(flag, "w").close()
    p = {"fail_if_exists": flag}
    first = submit_many(t, "q", [{"payload": p}, {"payload": p}])
    wait_for(lambda: queue_info(t, "q")["breaker"] == "open", 10, what="the breaker to open")
    opened = time.time()
    metric_open = metric(t, "tend_circuit_breaker_state", queue="q")
    more = submit_many(t, "q", [{"payload": {}} for _ in range(4)])
    time.sleep(slow(0.8))
    n_runs = len(runs(t))
    for i in more:
        task = get_task(t, i)
        assert task["state"] == "pending" and task["attempts"] == 0, "open breaker: %s" % task
    os.unlink(flag)
    wait_tasks(t, first + more, "succeeded", timeout=20)
    assert queue_info(t, "q")["breaker"] == "closed"
    after = [r for r in runs(t)[n_runs:] if r["start"] > opened]
    assert after, "nothing ran after the breaker opened"
    # The first run after opening waited open_for and ran alone (the trial).
    assert after[0]["start"] - opened >= OPEN_FOR - 0.5, "trial after %.2fs" % (after[0]["start"] - opened)
    assert all(r["start"] >= after[0]["end"] for r in after[1:]), "ran beside the half-open trial"
    assert metric_open == 2, "tend_circuit_breaker_state was %s while open" % metric_open
    assert metric(t, "tend_circuit_breaker_state", queue="q") == 0
    assert t.stop() == 0


def test_rate_limit():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}, concurrency: 10, rate_limit: 4/s}
        ''')
    ids = [x["id"] for x in submit(t, "q", [{"payload": {}} for _ in range(12)])]
    wait_tasks(t, ids, "succeeded", timeout=30)
    st = sorted(r["start"] for r in runs(t))
    # 12 starts at 4/s with a burst of at most 4: 2 s from first to last
    # (less the handlers' own start-up jitter).
    assert st[-1] - st[0] >= 1.5, "12 tasks at 4/s took %.2fs" % (st[-1] - st[0])
    for i in range(len(st)):
        in_window = len([s for s in st if st[i] <= s < st[i] + 1.0])
        assert in_window <= 9, "%d starts within 1 s at 4/s" % in_window
    assert t.stop() == 0


if __name__ == "__main__":
    run([test_exec_contract, test_priorities_strict_fifo, test_concurrency_and_workers, test_delay_and_run_at,
         test_timeout_retries_backoff_dead, test_dry_run, test_batch_mode_partial_failure, test_circuit_breaker,
         test_rate_limit])
