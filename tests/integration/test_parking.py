"""Parking ahead: a pending service whose dependencies are all under way is
cloned ahead and waits before its exec (spawn.h); its start releases it.
These check that the released process is the service exactly as a direct
spawn would make it, that what can change meanwhile (the directory, the
binary) is looked up at the start, and that a parked process never
outlives its reason to exist."""

from harness import *


def parked_pids(t):
    """tend's children that are parked now (comm "tend-parked")."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if comm == "tend-parked" and t.proc and ppid == t.proc.pid:
            out.append(int(name))
    return out


def a_then_b(ready_after, env=None, name=None):
    """a (sd_notify, ready after ready_after seconds) and b, which waits for
    a to be ready: while a starts, b is parked."""
    return Tend('''
        services:
          a:
            command: {a}
            ready: {notify: true, timeout: 120s}
          b:
            command: {b}
            depends_on: {a: ready}
        ''', env=env, name=name,
        a=cmd("--notify", "--ready-delay", "%.1f" % ready_after, name="a"), b=cmd(name="b"))


_parking = None


def require_parking():
    """Skips where tend parks nothing: an architecture without the raw
    system calls, ThreadSanitizer, valgrind (it ends the process at a
    CLONE_VM clone that is not a vfork), TEND_PARK=0."""
    global _parking
    if _parking is None:
        t = a_then_b(60, name="require_parking")
        t.wait_state("a", "starting", timeout=slow(10))
        # Seen once is enough: a parked process of the first wave is one
        # only until its release a moment later (asking again could miss it).
        deadline = time.time() + slow(3)
        seen = parked_pids(t)
        while time.time() < deadline and not seen:
            time.sleep(0.05)
            seen = parked_pids(t)
        _parking = bool(seen)
        assert t.stop() == 0
    if _parking:
        return
    # Where it must work, that it does not is a failure, not a skip.
    import platform
    with open(TEND_BIN, "rb") as f:
        wrapper = f.read(2) == b"#!"  # e.g. valgrind around tend
    expected = (platform.machine() in ("x86_64", "aarch64") and os.environ.get("TEND_PARK") != "0"
                and not wrapper and not os.environ.get("TEND_TEST_NO_PARKING"))
    assert not expected, "tend parked nothing (set TEND_TEST_NO_PARKING=1 for a ThreadSanitizer build)"
    raise Skip("this tend parks nothing (valgrind, ThreadSanitizer, TEND_PARK=0 or no raw system calls)")


def wait_parked(t, n, timeout=10.0):
    """The n (or more) processes parked ahead of a later wave.  The first
    wave is parked too, but only until its release a moment later: a pid
    counts when two looks 0.1 s apart both find it."""
    got, last = [], []

    def enough():
        now = parked_pids(t)
        got[:] = [p for p in now if p in last]
        last[:] = now
        return len(got) >= n
    wait_for(enough, timeout=slow(timeout), interval=0.1, what="%d parked process(es), have %s" % (n, got))
    return list(got)


def test_parked_then_released():
    """b waits for a (ready after 1 s): it is parked meanwhile, and the
    parked process is the one that becomes b, with only 0, 1, 2 open and
    its environment."""
    require_parking()
    t = Tend('''
        services:
          a:
            command: {a}
            ready: {notify: true, timeout: 20s}
          b:
            command: {b}
            depends_on: {a: ready}
            env: {B_VAR: "b-value"}
            ready: {notify: true, timeout: 20s}
        ''',
        a=cmd("--notify", "--ready-delay", "%.1f" % slow(1.0), name="a"),
        b=cmd("--notify", "--fd-report", "{dir}/b.fds", "--env-report", "{dir}/b.env", name="b"))
    parked = wait_parked(t, 1)
    assert t.state("b") == "pending", t.states("b")
    t.wait_state("b", "ready", timeout=slow(20))
    assert t.spawned_pids("b") == parked, (t.spawned_pids("b"), parked)
    with open(t.path("b.fds")) as f:
        assert f.read().split() == ["0", "1", "2"]
    with open(t.path("b.env")) as f:
        env = f.read()
    assert "B_VAR=b-value" in env and "NOTIFY_SOCKET=" in env, env
    assert not parked_pids(t)
    assert t.stop() == 0


def test_parked_cwd_and_binary_looked_up_at_start():
    """A deploy switches `current` (a symlink) while b is parked: b starts in
    the new directory and runs the new binary."""
    require_parking()
    t = Tend('''
        services:
          deploy:
            command: "sleep {delay}; ln -sfn v2 {dir}/current.new && mv -T {dir}/current.new {dir}/current"
            oneshot: true
          b:
            command: ["{dir}/current/svc", "--name", "b", "--pidfile", "b.pid"]
            cwd: "{dir}/current"
            depends_on: {deploy: completed}
        ''', start=False, delay="%.1f" % slow(1.0))
    for v, target in (("v1", "/bin/false"), ("v2", FAKE)):
        os.mkdir(t.path(v))
        os.symlink(target, t.path(v, "svc"))
    os.symlink("v1", t.path("current"))
    t.start()
    wait_parked(t, 1)
    pid = read_pidfile(t.path("v2", "b.pid"), tend=t)
    assert pid in t.spawned_pids("b")
    assert not os.path.exists(t.path("v1", "b.pid"))
    assert t.state("b") in ("starting", "ready"), t.states("b")
    assert t.stop() == 0


def test_parked_binary_gone_at_start():
    """The binary is there when b is parked and gone when it is due: the
    exec error is reported as for a direct spawn, and the startup fails."""
    require_parking()
    t = Tend('''
        services:
          remove:
            command: "sleep {delay}; rm -f {dir}/svc"
            oneshot: true
          b:
            command: ["{dir}/svc", "--name", "b"]
            depends_on: {remove: completed}
        ''', start=False, delay="%.1f" % slow(1.0))
    os.symlink(FAKE, t.path("svc"))
    t.start()
    wait_parked(t, 1)
    assert t.wait_exit(timeout=slow(20)) == 1
    assert t.find(r"^cannot start: exec %s: No such file or directory" % re.escape(t.path("svc")), service="b")
    assert t.find(r"^startup failed: service b: exec ")
    assert not t.spawned_pids("b")


def test_parked_process_killed():
    """Someone kills the parked process: b is spawned directly when due."""
    require_parking()
    t = a_then_b(slow(1.5))
    parked = wait_parked(t, 1)
    os.kill(parked[0], signal.SIGKILL)
    t.wait_state("b", "ready", timeout=slow(20))
    pids = t.spawned_pids("b")
    assert len(pids) == 1 and pids[0] != parked[0], (pids, parked)
    assert t.stop() == 0


def test_shutdown_while_parked():
    """tend stopped while b is parked: the parked process goes too, and b
    never runs."""
    require_parking()
    t = a_then_b(30)
    parked = wait_parked(t, 1)
    assert t.stop() == 0
    wait_pids_gone(parked, timeout=5)
    assert not t.spawned_pids("b")


def test_parked_blocked_by_failure():
    """a (non-critical) fails its stage while b is parked: b is blocked and
    the parked process is gone."""
    require_parking()
    t = Tend('''
        services:
          a:
            command: {a}
            critical: false
            ready: {notify: true, timeout: {timeout}}
          b:
            command: {b}
            depends_on: {a: ready}
        ''',
        timeout="%dms" % int(slow(1.5) * 1000),
        a=cmd(name="a"),
        b=cmd(name="b"))
    parked = wait_parked(t, 1)
    t.wait_state("b", "blocked", timeout=slow(20))
    wait_pids_gone(parked, timeout=5)
    assert not parked_pids(t)
    assert not t.spawned_pids("b")
    assert t.stop() == 0


def test_parked_oneshot_exits_at_once():
    """A parked oneshot that exits the moment it runs (its exit may reach
    tend before its exec is seen): it is spawned, completes, and its
    dependent starts."""
    require_parking()
    t = Tend('''
        services:
          a:
            command: {a}
            ready: {notify: true, timeout: 20s}
          once:
            command: ["/bin/true"]
            oneshot: true
            depends_on: {a: ready}
          after:
            command: {after}
            depends_on: {once: completed}
        ''',
        a=cmd("--notify", "--ready-delay", "%.1f" % slow(1.0), name="a"),
        after=cmd(name="after"))
    parked = wait_parked(t, 1)
    t.wait_state("once", "completed", timeout=slow(20))
    assert t.spawned_pids("once") == parked, (t.spawned_pids("once"), parked)
    t.wait_state("after", "ready", timeout=slow(20))
    assert t.stop() == 0


def test_parking_off():
    """TEND_PARK=0: nothing is parked, the start is the same."""
    t = a_then_b(slow(0.8), env={"TEND_PARK": "0"})
    seen = []
    wait_for(lambda: seen.extend(parked_pids(t)) or t.state("b") == "ready", timeout=slow(20))
    assert not seen
    assert t.stop() == 0


if __name__ == "__main__":
    run([
        test_parked_then_released,
        test_parked_cwd_and_binary_looked_up_at_start,
        test_parked_binary_gone_at_start,
        test_parked_process_killed,
        test_shutdown_while_parked,
        test_parked_blocked_by_failure,
        test_parked_oneshot_exits_at_once,
        test_parking_off,
    ])
