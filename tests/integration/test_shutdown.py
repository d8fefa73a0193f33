"""Shutdown: stop timeouts and process-group kills, reverse dependency
order, descriptor hygiene, no orphans when tend itself is killed, SIGINT,
the hard deadline, and exit codes."""

from harness import *


def idx_of_state(t, service, to_state):
    for c in t.state_changes(service):
        if c[1] == to_state:
            return c[4].n
    return None


def test_stop_timeout_kills_group():
    """A service ignoring SIGTERM, with a grandchild doing the same: after
    stop.timeout 1s the whole group is SIGKILLed; shutdown takes ~1s."""
    t = Tend('''
        services:
          stubborn:
            command: {s}
            stop: {timeout: 1s}
        ''', s=cmd("--ignore-sigterm", "--spawn-grandchild", "--pidfile", "{dir}/main.pid",
                   "--grandchild-pidfile", "{dir}/gc.pid", name="stubborn"))
    t.wait_state("stubborn", "ready", timeout=20)
    main = read_pidfile(t.path("main.pid"), tend=t)
    gc = read_pidfile(t.path("gc.pid"), tend=t)
    assert pid_alive(main) and pid_alive(gc)
    t0 = time.monotonic()
    t.signal(signal.SIGTERM)
    rc = t.wait_exit(timeout=30)
    took = t.exited_at - t0
    assert rc == 0, "exit code %s after a graceful shutdown" % rc
    assert took >= 0.9, "tend did not wait for the stop timeout (%.2fs)" % took
    assert took < 1 + slow(3), "shutdown took %.2fs with a 1s stop timeout" % took
    wait_pids_gone([main, gc], timeout=2)
    assert t.find(r"^shutdown complete in \d+ ms", service="-")


def test_reverse_order():
    """Dependents stop before their dependencies; independent ones in parallel."""
    t = Tend('''
        services:
          a:
            command: {a}
          b:
            command: {b}
            depends_on: {a: ready}
          c:
            command: {c}
            depends_on: {a: ready}
          d:
            command: {d}
            depends_on: {b: ready, c: started}
        ''',
        a=cmd("--term-delay", "0.2", name="a"),
        b=cmd("--term-delay", "0.4", name="b"),
        c=cmd("--term-delay", "0.4", name="c"),
        d=cmd("--term-delay", "0.2", name="d"))
    t.wait_log(r"^startup complete", service="-", timeout=20)
    t.signal(signal.SIGTERM)
    assert t.wait_exit(timeout=30) == 0
    stopping = {s: idx_of_state(t, s, "stopping") for s in "abcd"}
    stopped = {s: idx_of_state(t, s, "stopped") for s in "abcd"}
    assert None not in stopping.values() and None not in stopped.values(), (stopping, stopped)
    for dep, dependents in (("a", "bc"), ("b", "d"), ("c", "d")):
        for s in dependents:
            assert stopping[dep] > stopped[s], \
                "%s began stopping (line %d) before its dependent %s stopped (line %d)" % (
                    dep, stopping[dep], s, stopped[s])
    # b and c are independent of each other: stopped in parallel.
    assert stopping["b"] < stopped["c"] and stopping["c"] < stopped["b"], \
        "b and c were stopped one after the other"
    assert t.find(r"^shutting down \(", service="-")


def test_no_fd_leak():
    """Services inherit only 0, 1 and 2 (also with a notify socket and
    after a restart)."""
    p = free_port()
    t = Tend('''
        services:
          plain:
            command: {plain}
            ready: {tcp: "127.0.0.1:{p}", timeout: 20s}
          notified:
            command: {notified}
            ready: {notify: true, timeout: 20s}
          restarted:
            command: {restarted}
            critical: false
            restart: {delay: 100ms, jitter: 0, max_attempts: 100}
        ''', p=p,
        plain=cmd("--port", p, "--fd-report", "{dir}/plain.fds", name="plain"),
        notified=cmd("--notify", "--fd-report", "{dir}/notified.fds", name="notified"),
        restarted=cmd("--crash-after", "0.3", "--fd-report", "{dir}/restarted.fds", name="restarted"))
    t.wait_state("plain", "ready", timeout=20)
    t.wait_state("notified", "ready", timeout=20)
    t.wait_spawns("restarted", 3, timeout=20)
    time.sleep(0.2)
    for name in ("plain", "notified", "restarted"):
        with open(t.path(name + ".fds")) as f:
            fds = f.read().split()
        assert fds == ["0", "1", "2"], "%s inherited descriptors %s" % (name, fds)
    assert t.stop() == 0


def test_no_orphans_after_kill9():
    """kill -9 of tend: its services and their grandchildren go too."""
    t = Tend('''
        services:
          svc:
            command: {s}
          stubborn:
            command: {st}
        ''',
        s=cmd("--spawn-grandchild", "--pidfile", "{dir}/s.pid", "--grandchild-pidfile", "{dir}/s.gc",
              name="svc"),
        st=cmd("--ignore-sigterm", "--spawn-grandchild", "--pidfile", "{dir}/st.pid",
               "--grandchild-pidfile", "{dir}/st.gc", name="stubborn"))
    t.wait_log(r"^startup complete", service="-", timeout=20)
    pids = [read_pidfile(t.path(n), tend=t) for n in ("s.pid", "s.gc", "st.pid", "st.gc")]
    assert pids_alive(pids) == pids
    t.kill9()
    wait_pids_gone(pids, timeout=5)


def test_sigint():
    t = Tend('''
        services:
          a:
            command: {a}
          b:
            command: {b}
            depends_on: {a: started}
        ''', a=cmd("--pidfile", "{dir}/a.pid", name="a"), b=cmd("--pidfile", "{dir}/b.pid", name="b"))
    t.wait_log(r"^startup complete", service="-", timeout=20)
    pids = [read_pidfile(t.path(n), tend=t) for n in ("a.pid", "b.pid")]
    t.signal(signal.SIGINT)
    assert t.wait_exit(timeout=20) == 0
    assert t.find(r"^shutting down \(.*INT", service="-"), "no 'shutting down (SIGINT)' line"
    assert t.state("a") == "stopped" and t.state("b") == "stopped", (t.states("a"), t.states("b"))
    wait_pids_gone(pids, timeout=2)


def test_sigterm_at_once():
    """SIGTERM as soon as tend says it is starting: the first wave is being
    spawned and libmicrohttpd is still loading for the API.  tend stops
    what it started and exits 0; no service is left."""
    for _ in range(3):  # a race: give it a few chances
        t = Tend('''
            api: {listen: "127.0.0.1:%d"}
            services:
              a: {command: {a}, ready: {notify: true, timeout: 20s}}
              b: {command: {b}, ready: {notify: true, timeout: 20s}}
              c: {command: {c}, depends_on: {a: ready, b: ready}}
            ''' % free_port(), a=cmd("--notify", "--ready-delay", "0.5", name="a"),
            b=cmd("--notify", "--ready-delay", "0.5", name="b"), c=cmd(name="c"))
        t.wait_log(r"^tend \S+ starting ")
        t.signal(signal.SIGTERM)
        assert t.wait_exit(timeout=20) == 0, t.tail(20)
        assert t.find(r"^shutting down \(SIGTERM\)", service="-"), t.tail(20)
        assert not t.spawned_pids("c"), "c started after the shutdown"
        wait_pids_gone(t.spawned_pids("a") + t.spawned_pids("b"), timeout=2)


def _up_supports(flag):
    r = run_tend(["up", "--help"], timeout=10)
    if flag in r.stdout + r.stderr:
        return True
    r = run_tend(["--help"], timeout=10)
    return flag in r.stdout + r.stderr


def test_hard_deadline():
    """tend up --timeout 2s: a service with a 60s stop timeout is killed at
    the deadline; tend exits after ~2s and nothing survives."""
    if not _up_supports("--timeout"):
        raise Skip("tend up --timeout not supported yet")
    t = Tend('''
        services:
          slow:
            command: {s}
            stop: {timeout: 60s}
        ''', args=["--timeout", "2s"],
        s=cmd("--ignore-sigterm", "--spawn-grandchild", "--pidfile", "{dir}/main.pid",
              "--grandchild-pidfile", "{dir}/gc.pid", name="slow"))
    t.wait_state("slow", "ready", timeout=20)
    pids = [read_pidfile(t.path(n), tend=t) for n in ("main.pid", "gc.pid")]
    t0 = time.monotonic()
    t.signal(signal.SIGTERM)
    rc = t.wait_exit(timeout=30)
    took = t.exited_at - t0
    assert took >= 1.8, "tend exited after %.2fs, before its deadline" % took
    assert took < 2 + slow(3), "tend exited after %.2fs with --timeout 2s" % took
    assert rc in (0, 1), "exit code %s" % rc
    wait_pids_gone(pids, timeout=3)


def test_graceful_exit_code_and_no_survivors():
    """Graceful shutdown of a mixed system: exit 0, every pid gone
    (including a grandchild whose parent exits promptly on SIGTERM)."""
    p = free_port()
    t = Tend('''
        services:
          web:
            command: {web}
            ready: {http: "http://127.0.0.1:{p}/health", timeout: 20s}
          worker:
            command: {worker}
            depends_on: {web: ready}
          lingering:
            command: {lingering}
            stop: {timeout: 1s}
        ''', p=p,
        web=cmd("--port", p, "--term-delay", "0.3", "--pidfile", "{dir}/web.pid", name="web"),
        worker=cmd("--notify", "--pidfile", "{dir}/worker.pid", name="worker"),
        lingering=cmd("--spawn-grandchild", "--pidfile", "{dir}/l.pid",
                      "--grandchild-pidfile", "{dir}/l.gc", name="lingering"))
    t.wait_log(r"^startup complete", service="-", timeout=20)
    pids = [read_pidfile(t.path(n), tend=t) for n in ("web.pid", "worker.pid", "l.pid", "l.gc")]
    t.signal(signal.SIGTERM)
    assert t.wait_exit(timeout=30) == 0
    wait_pids_gone(pids + t.spawned_pids("web") + t.spawned_pids("worker"), timeout=2)
    for s in ("web", "worker", "lingering"):
        assert t.state(s) == "stopped", (s, t.states(s))
    assert t.find(r"^shutdown complete in \d+ ms", service="-")


if __name__ == "__main__":
    run([
        test_stop_timeout_kills_group,
        test_reverse_order,
        test_no_fd_leak,
        test_no_orphans_after_kill9,
        test_sigint,
        test_sigterm_at_once,
        test_hard_deadline,
        test_graceful_exit_code_and_no_survivors,
    ])
