"""Durability (SPEC 1 Task, 4 startup step 2 and shutdown): an
acknowledged task survives kill -9 and runs after the restart (at least
once: duplicates allowed, none missing); a failed store write answers 503
and loses nothing acknowledged before; a graceful shutdown lets running
tasks finish within the deadline and requeues those that cannot."""

from harness import *
from taskutil import *

N = 1000


def count_lines(path):
    try:
        with open(path) as f:
            return [l.strip() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def test_kill9_every_acknowledged_task_runs():
    # A shell handler (cheaper than python): records the id, then works.
    t = task_tend('''
        workers: 8
        queues:
          slow:
            handler: {exec: ["/bin/sh", "-c", "echo \\"$TEND_TASK_ID\\" >> {dir}/ran.txt; sleep 0.05"]}
            concurrency: 8
            max_attempts: 5
        ''')
    ran = t.path("ran.txt")
    ids = []
    for k in range(10):
        got = submit(t, "slow", [{"payload": {"k": k, "i": i}} for i in range(N // 10)])
        ids += [x["id"] for x in got]
    assert len(set(ids)) == N
    wait_for(lambda: len(count_lines(ran)) >= 150, 60, interval=0.05, what="150 runs before the kill")
    t.kill9()
    before = len(set(count_lines(ran)))
    assert before < N, "everything ran before the kill; slow the handler down"
    # Handlers of the killed tend die with it (the guard) or finish on their
    # own within a second; then start again on the same state_dir.
    time.sleep(slow(0.5))
    t.start()
    wait_up(t)
    t.wait_log(r"recover|requeued", timeout=10, stream="any")

    def all_ran():
        seen = set(count_lines(ran))
        return seen if seen >= set(ids) else None
    seen = wait_for(all_ran, 120, interval=0.2, what="every acknowledged task to run (ran %d of %d)"
                    % (len(set(count_lines(ran))), N))
    assert seen - set(ids) == set(), "ran tasks nobody submitted"

    def settled():
        q = queue_info(t, "slow")
        return q["running"] == 0 and q["depth"]["total"] == 0 and q
    wait_for(settled, 30, what="the queue to drain")
    page = list_tasks(t, queue="slow", state="succeeded", limit=1000)
    assert len(page["tasks"]) == N, "succeeded: %d of %d" % (len(page["tasks"]), N)
    dups = len(count_lines(ran)) - N
    print("    ran %d before the kill, %d duplicate runs (at least once)" % (before, dups))
    assert t.stop() == 0


def test_store_fault_503_keeps_acknowledged():
    # The third INSERT transaction fails with ENOSPC (a real failed write).
    t = task_tend('''
        queues:
          q: {handler: pull}
        ''', env={"TEND_STORE_FAULT": "insert:ENOSPC:2"})
    a = submit(t, "q", {"payload": "a"})["id"]
    b = submit(t, "q", [{"payload": "b1"}, {"payload": "b2"}])
    st, js, text = api(t, "POST", "/api/v1/queues/q/tasks", [{"payload": "c1"}, {"payload": "c2"}])
    assert st == 503, "a failed store write must answer 503, got %d %s" % (st, text)
    assert isinstance(js.get("error"), dict), js
    d = submit(t, "q", {"payload": "d"})["id"]
    want = {a, b[0]["id"], b[1]["id"], d}
    have = {x["id"]: x["payload"] for x in list_tasks(t, queue="q")["tasks"]}
    assert set(have) == want and "c1" not in have.values(), have
    # And after a crash, still all of them.
    t.kill9()
    t.start()
    wait_up(t)
    have = {x["id"] for x in list_tasks(t, queue="q")["tasks"]}
    assert have == want, have
    assert t.stop() == 0


def test_shutdown_finishes_or_requeues():
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}, concurrency: 4, max_attempts: 3}
        ''', args=("--timeout", "3s"))
    short = submit(t, "q", {"payload": {"sleep": 1.0}})["id"]
    long_ = submit(t, "q", {"payload": {"sleep": 60, "sleep_attempts": 1}})["id"]
    wait_for(lambda: len(runs(t)) == 2, 10, what="both tasks to start")
    t0 = time.monotonic()
    t.signal(signal.SIGTERM)
    assert t.wait_exit(20) == 0
    took = time.monotonic() - t0
    assert took < slow(8), "shutdown took %.1fs with a 3s deadline" % took
    rs = {r["id"]: r for r in runs(t)}
    assert rs[short]["end"] is not None, "the short task did not get its remaining time"
    assert rs[long_]["end"] is None
    wait_pids_gone([rs[long_]["pid"]], 5)
    # After a restart: the short one is done, the long one runs again and succeeds.
    t.start()
    wait_up(t)
    assert get_task(t, short)["state"] == "succeeded"
    task = wait_task(t, long_, "succeeded", timeout=20)
    assert task["attempts"] == 2, task
    assert len([r for r in runs(t) if r["id"] == short]) == 1, "the finished task ran again"
    assert t.stop() == 0


if __name__ == "__main__":
    run([test_kill9_every_acknowledged_task_runs, test_store_fault_503_keeps_acknowledged,
         test_shutdown_finishes_or_requeues])
