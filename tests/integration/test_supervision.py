"""Supervision: restart backoff, the circuit, liveness and watchdog
restarts, restart policies, and restart isolation between services."""

from harness import *

RESTARTING_RE = re.compile(r"^restarting in (\d+) ms \(reason (\w+), restart (\d+)")


def restarts(t, service):
    """[(delay_ms, reason, k, record)] from `restarting in N ms (...)` lines."""
    out = []
    for r in t.events(service):
        m = RESTARTING_RE.match(r.msg)
        if m:
            out.append((int(m.group(1)), m.group(2), int(m.group(3)), r))
    return out


def test_backoff_growth():
    """crash after 0.1s, delay 200ms doubling, max_delay 2s, no jitter:
    the gaps between spawns grow 0.2, 0.4, 0.8, 1.6, 2.0 (+ run time)."""
    t = Tend('''
        services:
          crashy:
            command: {c}
            critical: false
            restart: {policy: on-failure, delay: 200ms, max_delay: 2s, jitter: 0,
                      max_attempts: 100, window: 60s}
        ''', c=cmd("--crash-after", "0.1", "--exit-code", "3", name="crashy"))
    spawns = t.wait_spawns("crashy", 6, timeout=30)
    times = [s[1] for s in spawns]
    gaps = [b - a for a, b in zip(times, times[1:])]
    expected = [0.2, 0.4, 0.8, 1.6, 2.0]
    for i, (gap, exp) in enumerate(zip(gaps, expected)):
        # Each gap is the run time (0.1s) plus the delay; never shorter.
        assert gap >= 0.1 + exp * 0.9, "gap %d is %.3fs, expected >= %.2fs (%s)" % (
            i, gap, 0.1 + exp * 0.9, ["%.2f" % g for g in gaps])
        assert gap < 0.1 + exp + slow(0.6), "gap %d is %.3fs, expected ~%.2fs (%s)" % (
            i, gap, 0.1 + exp, ["%.2f" % g for g in gaps])
    for i in range(3):
        assert gaps[i + 1] > gaps[i] * 1.3, "backoff not growing: %s" % ["%.2f" % g for g in gaps]
    rs = restarts(t, "crashy")
    assert [r[0] for r in rs[:5]] == [200, 400, 800, 1600, 2000], [r[0] for r in rs]
    assert all(r[1] == "exit" for r in rs), [r[1] for r in rs]
    assert [r[2] for r in rs[:5]] == [1, 2, 3, 4, 5], [r[2] for r in rs]
    assert t.find(r"^exited with status 3", service="crashy")
    assert t.stop() == 0


def test_circuit_failed():
    """max_attempts 3 within 60s: the 4th crash opens the circuit, the
    service is `failed` and is never spawned again."""
    t = Tend('''
        services:
          crashy:
            command: {c}
            critical: false
            restart: {policy: on-failure, delay: 100ms, max_delay: 100ms, jitter: 0,
                      max_attempts: 3, window: 60s}
          bystander:
            command: {b}
        ''', c=cmd("--crash-after", "0.1", "--counter-file", "{dir}/count", name="crashy"),
        b=cmd(name="bystander"))
    t.wait_state("crashy", "failed", timeout=20)
    t.wait_log(r"^circuit open: \d+ restarts within", service="crashy", timeout=5)
    n = len(t.spawned_pids("crashy"))
    assert n == 4, "spawned %d times, expected 1 + 3 restarts" % n
    time.sleep(slow(1.5))
    assert len(t.spawned_pids("crashy")) == n, "spawned again after the circuit opened"
    with open(t.path("count")) as f:
        assert len(f.read().splitlines()) == n
    assert t.state("crashy") == "failed"
    assert t.running(), "tend exited when a non-critical service failed"
    assert t.state("bystander") == "ready"
    assert t.stop() == 0


def test_liveness_restart():
    """/health turns 503 after 1s; live probe every 200ms, 2 misses -> restart."""
    p = free_port()
    t = Tend('''
        services:
          api:
            command: {api}
            ready: {tcp: "127.0.0.1:{p}", timeout: 20s}
            live:
              http: "http://127.0.0.1:{p}/health"
              interval: 200ms
              failure_threshold: 2
              initial_delay: 0s
              probe_timeout: 1s
            restart: {delay: 100ms, jitter: 0, max_attempts: 100}
        ''', p=p, api=cmd("--port", p, "--unhealthy-after", "1", name="api"))
    _, t_spawn = t.wait_log(r"^spawned pid \d+", service="api", timeout=20)
    rec, t_restart = t.wait_log(r"^restarting in \d+ ms \(reason liveness", service="api", timeout=20)
    took = t_restart - t_spawn
    assert took >= 1.0 + 0.2, "liveness restart after %.2fs, before /health failed twice" % took
    assert took < 1.0 + 0.4 + slow(3), "liveness restart only after %.2fs" % took
    pids = t.wait_spawns("api", 2, timeout=20)
    assert pids[0][0] != pids[1][0]
    wait_pids_gone([pids[0][0]], timeout=10)
    assert t.stop() == 0


def test_watchdog_restart():
    """watchdog 1s; the service pings every 0.5s and stops after 1s ->
    restart with reason watchdog about 1s later."""
    t = Tend('''
        services:
          wd:
            command: {wd}
            ready: {notify: true, timeout: 20s}
            watchdog: 1s
            restart: {delay: 100ms, jitter: 0, max_attempts: 100}
        ''', wd=cmd("--notify", "--watchdog-stop-after", "1", name="wd"))
    _, t_spawn = t.wait_log(r"^spawned pid \d+", service="wd", timeout=20)
    t.wait_state("wd", "ready", timeout=20)
    _, t_restart = t.wait_log(r"^restarting in \d+ ms \(reason watchdog", service="wd", timeout=20)
    took = t_restart - t_spawn
    # Pings at 0, 0.5 (and maybe 1.0) s, then none: the deadline is 1s after the last.
    assert took >= 1.3, "watchdog restart after %.2fs: pings were still coming" % took
    assert took < 2.0 + slow(3), "watchdog restart only after %.2fs" % took
    # WATCHDOG_USEC was handed to the service.
    out = t.find(r"watchdog every \d+ ms", service="wd", stream="output")
    assert out, "the service saw no WATCHDOG_USEC"
    assert t.wait_spawns("wd", 2, timeout=10)
    assert t.stop() == 0


def test_restart_policies():
    """policy no: never restarted; on-failure: not restarted on exit 0;
    always: restarted on exit 0."""
    t = Tend('''
        services:
          never:
            command: {never}
            critical: false
            restart: {policy: "no"}
          onfail:
            command: {onfail}
            critical: false
            restart: {policy: on-failure, delay: 100ms, jitter: 0}
          always:
            command: {always}
            critical: false
            restart: {policy: always, delay: 100ms, jitter: 0, max_attempts: 100}
        ''',
        never=cmd("--crash-after", "0.3", "--exit-code", "3", name="never"),
        onfail=cmd("--crash-after", "0.3", "--exit-code", "0", name="onfail"),
        always=cmd("--crash-after", "0.3", "--exit-code", "0", name="always"))
    t.wait_log(r"^exited with status 3", service="never", timeout=20)
    t.wait_log(r"^exited with status 0", service="onfail", timeout=20)
    t.wait_spawns("always", 3, timeout=20)
    rs = restarts(t, "always")
    assert rs and all(r[1] == "exit" for r in rs), rs
    time.sleep(slow(1.0))
    assert len(t.spawned_pids("never")) == 1, t.spawned_pids("never")
    assert len(t.spawned_pids("onfail")) == 1, t.spawned_pids("onfail")
    assert not restarts(t, "never") and not restarts(t, "onfail")
    assert t.state("never") in ("exited", "failed"), t.states("never")
    assert t.state("onfail") in ("exited", "completed"), t.states("onfail")
    assert t.stop() == 0


def test_dependency_restart_isolated():
    """db crashes and is restarted; api (depends on db ready) keeps its pid."""
    pdb = free_port()
    t = Tend('''
        services:
          db:
            command: {db}
            ready: {tcp: "127.0.0.1:{pdb}", timeout: 20s}
            restart: {delay: 100ms, jitter: 0, max_attempts: 100}
          api:
            command: {api}
            depends_on: {db: ready}
        ''', pdb=pdb,
        db=cmd("--port", pdb, "--crash-after", "1", name="db"),
        api=cmd("--pidfile", "{dir}/api.pid", name="api"))
    t.wait_state("api", "ready", timeout=20)
    api_pid = read_pidfile(t.path("api.pid"), tend=t)
    t.wait_spawns("db", 3, timeout=20)
    t.wait_state("db", "ready", since=t.find(r"^spawned pid", service="db")[-1].n, timeout=20)
    assert pid_alive(api_pid), "api was killed when db restarted"
    assert t.spawned_pids("api") == [api_pid], t.spawned_pids("api")
    with open(t.path("api.pid")) as f:
        assert int(f.read()) == api_pid
    assert t.stop() == 0


if __name__ == "__main__":
    run([
        test_backoff_growth,
        test_circuit_failed,
        test_liveness_restart,
        test_watchdog_restart,
        test_restart_policies,
        test_dependency_restart_isolated,
    ])
