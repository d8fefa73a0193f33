"""Regression tests for lifecycle bugs found in review: each reproduces
one report exactly."""

from harness import *


def test_critical_failure_with_waiting_dependent():
    """A critical service that never becomes ready while a dependent waits
    on it must fail the startup (exit 1), not settle it."""
    t = Tend('''
        services:
          db:
            command: {db}
            ready: {tcp: "127.0.0.1:{port}", start_interval: 50ms, timeout: 1s}
          api:
            command: {api}
            depends_on: {db: ready}
        ''', db=cmd(name="db"), api=cmd(name="api"), port=free_port())
    assert t.wait_exit(timeout=slow(15)) == 1
    assert t.find(r"^startup failed: service db stage tcp")
    assert not t.find(r"^startup complete")


def test_exit_while_starting_is_restarted_until_deadline():
    """A process that exits while its stage runs is restarted by its policy
    until the stage deadline, not failed at the first exit."""
    t = Tend('''
        services:
          flappy:
            command: {c}
            ready: {tcp: "127.0.0.1:{port}", start_interval: 50ms, timeout: 3s}
            restart: {policy: on-failure, delay: 100ms, max_delay: 200ms, jitter: 0,
                      max_attempts: 50, window: 60s}
        ''', c=cmd("--crash-after", "0.1", "--exit-code", "4", name="flappy"), port=free_port())
    assert t.wait_exit(timeout=slow(20)) == 1
    spawns = t.spawned_pids("flappy")
    assert len(spawns) >= 4, "restarted only %d times while starting" % (len(spawns) - 1)
    assert t.find(r"^startup failed: service flappy")


def test_manual_stop_during_startup_settles():
    """Stopping a service while the system starts counts as settled: the
    startup completes and tend still shuts down cleanly."""
    t = Tend('''
        services:
          slow:
            command: {slow}
            ready: {notify: true, timeout: 30s}
          other:
            command: {other}
        ''', slow=cmd("--notify", "--ready-delay", "20", name="slow"), other=cmd(name="other"))
    t.wait_state("slow", "starting")
    r = run_tend(["stop", "-f", t.config_path, "slow"])
    assert r.returncode == 0, r.stderr
    t.wait_log(r"^startup complete", timeout=slow(10))
    assert t.stop() == 0


def test_started_dependency_survives_failure():
    """`started` is met once the dependency spawned, even if it fails
    afterwards: only `ready`/`completed` dependents are blocked."""
    t = Tend('''
        services:
          flaky:
            command: {flaky}
            critical: false
            restart: {policy: "no"}
            ready: {tcp: "127.0.0.1:{port}", start_interval: 50ms, timeout: 1s}
          loose:
            command: {loose}
            depends_on: {flaky: started}
          strict:
            command: {strict}
            critical: false
            depends_on: {flaky: ready}
        ''', flaky=cmd(name="flaky"), loose=cmd(name="loose"), strict=cmd(name="strict"), port=free_port())
    t.wait_state("flaky", "failed", timeout=slow(10))
    t.wait_state("strict", "blocked", timeout=slow(5))
    t.wait_state("loose", "ready", timeout=slow(5))
    assert t.stop() == 0


def test_setsid_escapee_killed_at_shutdown():
    """A process that left its service's process group (double fork +
    setsid) is still killed when tend shuts down."""
    t = Tend('''
        services:
          escaper:
            command: ["/bin/sh", "-c", "setsid sh -c 'echo $$$$ > {dir}/escapee.pid; exec sleep 300' & sleep 300"]
        ''')
    pid = read_pidfile(os.path.join(t.dir, "escapee.pid"), timeout=slow(5))
    assert pid_alive(pid)
    assert t.stop() == 0
    wait_pids_gone([pid], timeout=5)


def test_missing_binary_fails_startup():
    """A command that cannot be executed is reported with the exec error;
    for a critical service the startup fails (exit 1) and nothing waits on
    it (its `started` dependents never start).  Also without parking
    (TEND_PARK=0), where the failure is known before the first loop turn:
    tend used to start serving its API after the system had stopped, and
    then never exit."""
    for park in ("1", "0"):
        t = Tend('''
            api: {listen: "127.0.0.1:%d"}
            services:
              ghost:
                command: ["/nonexistent/bin/ghost", "--flag"]
              child:
                command: {child}
                depends_on: {ghost: started}
            ''' % free_port(), child=cmd(name="child"), env={"TEND_PARK": park})
        assert t.wait_exit(timeout=slow(10)) == 1, "TEND_PARK=%s" % park
        assert t.find(r"^cannot start: exec /nonexistent/bin/ghost: No such file or directory", service="ghost")
        assert t.find(r"^startup failed: service ghost: exec /nonexistent/bin/ghost")
        assert not t.spawned_pids("child")


def test_started_waits_for_exec():
    """`started` is met once the exec succeeded, not at fork: the dependent
    spawns after its dependency's `spawned pid` line."""
    t = Tend('''
        services:
          a:
            command: {a}
          b:
            command: {b}
            depends_on: {a: started}
        ''', a=cmd(name="a"), b=cmd(name="b"))
    t.wait_state("b", "ready", timeout=slow(5))
    assert t.spawned_pids("a") and t.spawned_pids("b")
    assert t.stop() == 0


if __name__ == "__main__":
    run([test_critical_failure_with_waiting_dependent, test_exit_while_starting_is_restarted_until_deadline,
         test_manual_stop_during_startup_settles, test_started_dependency_survives_failure,
         test_setsid_escapee_killed_at_shutdown, test_missing_binary_fails_startup, test_started_waits_for_exec])
