"""Pull queues with `handler: {pull: true, ack: async}` (docs/tasks.md,
Delivery guarantee): reserve/ack/nack/touch work as with durable acks, an
ack of a task that is not leased is still refused (409) at once, the key is
validated (file:line:col), and after a kill -9 right after a stream of acks
every task is either succeeded or delivered again: none is lost (at least
once; an acked task may run twice)."""

import threading

from harness import *
from taskutil import *

N = 400


def test_config_validation():
    t = Tend('''
        services: {}
        tasks:
          queues:
            a: {handler: {pull: true, ack: sometimes}}
        ''', start=False)
    r = tend_cli(t, ["check"])
    check_cli(r, 2 if r.returncode == 2 else 1,
              err=r"tend\.yaml:\d+:\d+: .*invalid ack \"sometimes\" \(expected durable or async\)")
    t2 = Tend('''
        services: {}
        tasks:
          queues:
            a: {handler: {exec: ["true"], ack: async}}
        ''', start=False)
    r = tend_cli(t2, ["check"])
    assert r.returncode != 0 and re.search(r":\d+:\d+: .*ack applies to pull handlers only", r.stderr), r.stderr
    t3 = Tend('''
        services: {}
        tasks:
          queues:
            a: {handler: {pull: true, ack: durable}}
            b: {handler: {pull: true, ack: async}}
        ''', start=False)
    check_cli(tend_cli(t3, ["check"]), 0)


def test_reserve_ack_nack_touch():
    t = task_tend('''
        queues:
          jobs: {handler: {pull: true, ack: async}, timeout: 2s, max_attempts: 3,
                 backoff: {base: 100ms, max: 100ms, jitter: 0}}
        ''')
    assert queue_info(t, "jobs")["ack"] == "async"
    a = submit(t, "jobs", {"payload": {"n": 1}})["id"]
    got = reserve(t, "jobs", "5s")
    assert got and got["id"] == a and got["payload"] == {"n": 1}, got
    st, js, text = api(t, "POST", "/api/v1/tasks/%s/ack" % a)
    assert st == 200, (st, text)
    assert tasks_of(js)[0]["state"] == "succeeded", js
    wait_task(t, a, "succeeded")
    # Not leased any more: refused at once, as with durable acks.
    t0 = time.monotonic()
    st, js, text = api(t, "POST", "/api/v1/tasks/%s/ack" % a)
    assert st == 409 and error_code(js) == "conflict", (st, text)
    assert time.monotonic() - t0 < slow(2)
    st, js, _ = api(t, "POST", "/api/v1/tasks/%s/nack" % a, {"error": "x"})
    assert st == 409, st
    # nack: scheduled, back after its retry_in with attempt 2.
    b = submit(t, "jobs", {"payload": {"n": 2}})["id"]
    assert reserve(t, "jobs", "5s")["id"] == b
    st, js, text = api(t, "POST", "/api/v1/tasks/%s/nack" % b, {"error": "try later", "retry_in": "500ms"})
    assert st == 200 and tasks_of(js)[0]["state"] == "scheduled", (st, text)
    again = reserve(t, "jobs", "5s")
    assert again and again["id"] == b, again
    assert get_task(t, b)["attempts"] == 2
    # touch keeps the lease beyond the timeout (2s).
    for _ in range(3):
        time.sleep(1)
        st, _, text = api(t, "POST", "/api/v1/tasks/%s/touch" % b)
        assert st == 200, (st, text)
    assert get_task(t, b)["state"] == "running"
    st, _, text = api(t, "POST", "/api/v1/tasks/%s/ack" % b)
    assert st == 200, (st, text)
    wait_task(t, b, "succeeded")
    assert t.stop() == 0


def error_code(js):
    return js.get("error", {}).get("code") if isinstance(js, dict) else None


def worker(t, acked, stop, lock):
    while not stop.is_set():
        try:
            task = reserve(t, "jobs", "1s", timeout=5)
            if not task:
                continue
            st, _, _ = api(t, "POST", "/api/v1/tasks/%s/ack" % task["id"], timeout=5)
        except (OSError, AssertionError, ValueError):
            return  # tend was killed
        if st == 200:
            with lock:
                acked.append(task["id"])


def test_kill9_after_acks_loses_nothing():
    t = task_tend('''
        queues:
          jobs: {handler: {pull: true, ack: async}, timeout: 60s, max_attempts: 10}
        ''')
    ids = []
    for k in range(N // 100):
        ids += [x["id"] for x in submit(t, "jobs", [{"payload": {"k": k, "i": i}} for i in range(100)])]
    acked, lock, stop = [], threading.Lock(), threading.Event()
    threads = [threading.Thread(target=worker, args=(t, acked, stop, lock)) for _ in range(4)]
    for th in threads:
        th.start()
    wait_for(lambda: len(acked) >= N // 3, 60, interval=0.01, what="a third acked")
    t.kill9()
    stop.set()
    for th in threads:
        th.join(slow(10))
    with lock:
        acked_before = set(acked)
    assert len(acked_before) < N, "everything was acked before the kill"
    t.start()
    wait_up(t)
    after = {x["id"]: x["state"] for x in list_tasks(t, queue="jobs", limit=1000)["tasks"]}
    assert set(after) == set(ids), "tasks lost: %d of %d" % (len(set(ids) - set(after)), N)
    # Nothing is left running: RECOVER requeued what was leased or acked
    # but not committed.
    assert all(s in ("succeeded", "pending") for s in after.values()), set(after.values())
    pending = {i for i, s in after.items() if s == "pending"}
    # Drain: everything not succeeded is delivered again.
    redelivered = set()
    deadline = time.monotonic() + slow(60)
    while pending - redelivered and time.monotonic() < deadline:
        task = reserve(t, "jobs", "1s")
        if task:
            redelivered.add(task["id"])
            st, _, text = api(t, "POST", "/api/v1/tasks/%s/ack" % task["id"])
            assert st == 200, (st, text)
    assert pending <= redelivered, "not delivered again: %s" % sorted(pending - redelivered)[:5]
    assert redelivered <= pending, "a succeeded task was delivered again"
    for i in ids:
        wait_task(t, i, "succeeded", timeout=20) if i in redelivered else None
    final = {x["id"]: x["state"] for x in list_tasks(t, queue="jobs", limit=1000)["tasks"]}
    assert all(s == "succeeded" for s in final.values()) and len(final) == N, set(final.values())
    lost_acks = acked_before & pending
    print("    acked %d before the kill, %d of them ran again (acked, not committed)"
          % (len(acked_before), len(lost_acks)))
    assert t.stop() == 0


def test_kill9_does_not_charge_pull_attempts():
    # Tasks leased (or claimed ahead for the next reserves) when tend dies
    # come back pending with the attempt not counted: tend's crash says
    # nothing about a task that runs in a worker, and a task on its only
    # attempt must not turn dead without ever being handed out.
    t = task_tend('''
        queues:
          jobs: {handler: pull, timeout: 60s, max_attempts: 1, concurrency: 8}
        ''')
    ids = [x["id"] for x in submit(t, "jobs", [{"payload": {"i": i}} for i in range(50)])]
    leased = reserve(t, "jobs", "5s")
    assert leased and leased["attempts"] == 1, leased
    # Claimed ahead: more than the one handed out are running on disk.
    wait_for(lambda: len(list_tasks(t, queue="jobs", state="running", limit=100)["tasks"]) > 1, 10,
             what="leases claimed ahead")
    t.kill9()
    t.start()
    wait_up(t)
    after = {x["id"]: x for x in list_tasks(t, queue="jobs", limit=100)["tasks"]}
    assert set(after) == set(ids)
    states = set(x["state"] for x in after.values())
    assert states == {"pending"}, "after the restart: %s" % states
    assert all(x["attempts"] == 0 for x in after.values()), [x["attempts"] for x in after.values()]
    assert "not counted" in (get_task(t, leased["id"]).get("last_error") or ""), get_task(t, leased["id"])
    # And they run: the one leased before is delivered again, on attempt 1.
    seen = set()
    while len(seen) < len(ids):
        task = reserve(t, "jobs", "2s")
        assert task, "not delivered: %d left" % (len(ids) - len(seen))
        assert task["attempts"] == 1, task
        seen.add(task["id"])
        assert api(t, "POST", "/api/v1/tasks/%s/ack" % task["id"])[0] == 200
    assert t.stop() == 0


if __name__ == "__main__":
    run([test_config_validation, test_reserve_ack_nack_touch, test_kill9_after_acks_loses_nothing,
         test_kill9_does_not_charge_pull_attempts])
