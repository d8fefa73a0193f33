"""The task client commands (SPEC 3): tend task add|ls|show|cancel|retry,
tend queue ls|show|pause|resume|requeue-dead|purge-dead, tend stats; their
output, exit codes (0, 1 refused, 2 usage, 3 unreachable) and one-line
`tend: ...` errors."""

from harness import *
from taskutil import *

TID = r"[0-9A-HJKMNP-TV-Z]{26}"


def one_line_error(r):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("tend: "), "stderr is not one `tend: ...` line: %r" % r.stderr
    return lines[0]


def test_task_commands():
    t = task_tend('''
        queues:
          mail: {handler: {exec: HANDLER}, concurrency: 1, max_attempts: 1}
          jobs: {handler: pull}
        ''')
    # add: prints the id; options before or after the positional arguments.
    r = check_cli(tend_cli(t, ["task", "add", "mail", '{"to": "a@example.com"}', "--priority", "high"]), 0)
    a = r.stdout.strip()
    assert re.fullmatch(TID, a), r.stdout
    wait_task(t, a, "succeeded")
    assert runs(t)[0]["payload"] == {"to": "a@example.com"}
    r = check_cli(tend_cli(t, ["task", "add", "--key", "k1", "jobs", "-"], input='[1, 2, 3]'), 0)
    k1 = r.stdout.strip()
    r = check_cli(tend_cli(t, ["task", "add", "jobs", "--key", "k1", '"other"']), 0)
    assert r.stdout.strip() == k1, "an idempotency hit prints the existing id"
    task = get_task(t, k1)
    assert task["payload"] == [1, 2, 3] and task.get("idempotency_key") == "k1", task
    r = check_cli(tend_cli(t, ["task", "add", "jobs", "null", "--delay", "1h", "--max-attempts", "7",
                               "--priority", "low", "--tag", "x", "--json"]), 0)
    js = json.loads(r.stdout)
    assert js["state"] == "scheduled" and js["priority"] == "low" and js["max_attempts"] == 7, js
    late = js["id"]
    check_cli(tend_cli(t, ["task", "add", "jobs"]), 0)        # no payload: null

    # Usage errors: exit 2, before anything is sent.
    for args in (["task", "add"], ["task", "add", "jobs", "{bad json"], ["task", "add", "jobs", "1", "--priority", "x"],
                 ["task", "add", "jobs", "1", "--delay", "soon"], ["task", "add", "jobs", "1", "--max-attempts", "0"],
                 ["task", "ls", "--state", "done"], ["task", "ls", "--limit", "0"], ["task", "show"],
                 ["task", "frob"], ["task", "add", "jobs", "1", "--bogus"], ["queue", "frob"], ["queue", "pause"],
                 ["stats", "extra"]):
        r = tend_cli(t, args)
        assert r.returncode == 2, "%s: exit %d, expected 2: %s" % (args, r.returncode, r.stderr)
        assert r.stderr.startswith("tend: "), (args, r.stderr)
    # Refused by the instance: exit 1, one line.
    r = check_cli(tend_cli(t, ["task", "add", "nope", "1"]), 1)
    assert "404" in one_line_error(r), r.stderr
    r = check_cli(tend_cli(t, ["task", "show", "0000000000000000000000000Z"]), 1)
    assert "404" in one_line_error(r)
    r = check_cli(tend_cli(t, ["task", "cancel", a]), 1)        # succeeded: cannot cancel
    assert "409" in one_line_error(r), r.stderr

    # ls: a table, newest first; filters; --json; paging.
    r = check_cli(tend_cli(t, ["task", "ls"]), 0)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "QUEUE", "STATE", "PRIORITY", "ATTEMPTS", "CREATED"], lines
    rows = [l.split() for l in lines[1:]]
    assert len(rows) == 4 and rows[-1][0] == a, rows
    assert rows[-1][1:5] == ["mail", "succeeded", "high", "1/1"], rows[-1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[-1][5]), rows[-1]
    r = check_cli(tend_cli(t, ["task", "ls", "--queue", "jobs", "--state", "scheduled"]), 0)
    assert [l.split()[0] for l in r.stdout.splitlines()[1:]] == [late], r.stdout
    r = check_cli(tend_cli(t, ["task", "ls", "--json", "--queue", "mail"]), 0)
    assert [x["id"] for x in json.loads(r.stdout)["tasks"]] == [a], r.stdout
    r = check_cli(tend_cli(t, ["task", "ls", "--limit", "2"]), 0)
    assert len(r.stdout.splitlines()) == 3 and "--cursor" in r.stderr, (r.stdout, r.stderr)
    cur = re.search(r"--cursor (\S+)", r.stderr).group(1)
    r2 = check_cli(tend_cli(t, ["task", "ls", "--limit", "2", "--cursor", cur]), 0)
    got = [l.split()[0] for l in r.stdout.splitlines()[1:] + r2.stdout.splitlines()[1:]]
    r3 = check_cli(tend_cli(t, ["task", "ls", "--all", "--limit", "1"]), 0)
    assert got == [l.split()[0] for l in r3.stdout.splitlines()[1:]] and len(got) == 4, (got, r3.stdout)

    # show: details and --json.
    r = check_cli(tend_cli(t, ["task", "show", a]), 0)
    assert re.search(r"(?m)^id\s+%s$" % a, r.stdout) and re.search(r"(?m)^state\s+succeeded$", r.stdout), r.stdout
    assert '"to": "a@example.com"' in r.stdout, r.stdout
    r = check_cli(tend_cli(t, ["task", "show", "--json", a]), 0)
    assert json.loads(r.stdout)["id"] == a

    # cancel and retry.
    r = check_cli(tend_cli(t, ["task", "cancel", late]), 0)
    assert r.stdout.strip() == "%s: cancelled" % late, r.stdout
    r = check_cli(tend_cli(t, ["task", "retry", late]), 0)
    assert re.fullmatch(r"%s: (pending|scheduled)" % late, r.stdout.strip()), r.stdout
    r = check_cli(tend_cli(t, ["task", "retry", "0000000000000000000000000Z", late]), 1)
    assert "404" in r.stderr, r.stderr
    assert t.stop() == 0


def test_queue_and_stats_commands():
    t = task_tend('''
        queues:
          mail: {handler: {exec: HANDLER}, max_attempts: 1, rate_limit: 50/s}
          jobs: {handler: pull}
        ''')
    check_cli(tend_cli(t, ["queue", "pause", "jobs"]), 0, out=r"^jobs: paused$")
    for p in ("critical", "normal", "normal", "background"):
        check_cli(tend_cli(t, ["task", "add", "jobs", "1", "--priority", p]), 0)
    dead = [check_cli(tend_cli(t, ["task", "add", "mail", '{"exit": 65}']), 0).stdout.strip() for _ in range(2)]
    wait_tasks(t, dead, "dead")
    r = check_cli(tend_cli(t, ["queue", "ls"]), 0)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["QUEUE", "HANDLER", "PAUSED", "BREAKER", "CRITICAL", "HIGH", "NORMAL", "LOW",
                                "BACKGROUND", "RUNNING", "DEAD", "RATE"], lines
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert rows["jobs"][1:11] == ["pull", "yes", "closed", "1", "0", "2", "0", "1", "0", "0"], rows["jobs"]
    assert rows["mail"][1:4] == ["exec", "no", "closed"] and rows["mail"][10] == "2", rows["mail"]
    assert "50" in rows["mail"][11], rows["mail"]
    js = json.loads(check_cli(tend_cli(t, ["queue", "ls", "--json"]), 0).stdout)
    assert sorted(q.get("name") for q in js) == ["jobs", "mail"], js
    r = check_cli(tend_cli(t, ["queue", "show", "mail"]), 0)
    assert re.search(r"(?m)^dead\s+2$", r.stdout), r.stdout
    check_cli(tend_cli(t, ["queue", "resume", "jobs"]), 0, out=r"^jobs: resumed$")
    assert queue_info(t, "jobs")["paused"] is False
    r = check_cli(tend_cli(t, ["queue", "requeue-dead", "mail"]), 0)
    assert r.stdout.strip() == "mail: 2 dead tasks requeued", r.stdout
    wait_tasks(t, dead, "dead")      # exit 65 again
    r = check_cli(tend_cli(t, ["queue", "purge-dead", "mail"]), 0)
    assert r.stdout.strip() == "mail: 2 dead tasks purged", r.stdout
    r = check_cli(tend_cli(t, ["queue", "pause", "nope", "jobs"]), 1)
    assert "404" in r.stderr and "jobs: paused" in r.stdout, (r.stdout, r.stderr)

    r = check_cli(tend_cli(t, ["stats"]), 0)
    assert re.search(r"(?m)^queue_depth\s+4$", r.stdout) and re.search(r"(?m)^running_tasks\s+0$", r.stdout), r.stdout
    assert re.search(r"(?m)^circuit_breakers", r.stdout), r.stdout
    js = json.loads(check_cli(tend_cli(t, ["stats", "--json"]), 0).stdout)
    assert js["queue_depth"] == 4 and js["dead_letter_count"] == 0, js
    assert t.stop() == 0


def test_url_token_and_limits():
    """Over TCP with --url / TEND_URL and TEND_TOKEN; a payload over
    tasks.max_payload is refused (413, exit 1) and nothing is stored."""
    port = free_port()
    token = "task-cli-token-0123456789"
    t = task_tend('''
        max_payload: 1K
        queues:
          q: {handler: pull}
        ''', extra='api: {listen: "127.0.0.1:%d", token_file: token}' % port, start=False)
    with open(t.path("token"), "w") as f:
        f.write(token)
    t.start()
    wait_up(t)
    url = "http://127.0.0.1:%d" % port
    r = check_cli(tend_cli(None, ["task", "add", "--url", url, "q", "1"], config=False), 1)
    assert "401" in one_line_error(r), r.stderr
    env = {"TEND_TOKEN": token}
    tid = check_cli(tend_cli(None, ["task", "add", "--url", url, "q", '{"k": 1}'], env=env, config=False), 0).stdout.strip()
    r = check_cli(tend_cli(None, ["task", "ls"], env=dict(env, TEND_URL=url), config=False), 0)
    assert tid in r.stdout, r.stdout
    r = check_cli(tend_cli(t, ["task", "add", "q", "-"], input=json.dumps("x" * 2000)), 1)
    assert "413" in one_line_error(r), r.stderr
    assert [x["id"] for x in list_tasks(t)["tasks"]] == [tid]
    assert t.stop() == 0


def test_unreachable_exit_3():
    t = task_tend('''
        queues:
          q: {handler: pull}
        ''', start=False)
    for args in (["task", "add", "q", "1"], ["task", "ls"], ["task", "show", "X"], ["task", "cancel", "X"],
                 ["task", "retry", "X"], ["queue", "ls"], ["queue", "show", "q"], ["queue", "pause", "q"],
                 ["queue", "resume", "q"], ["queue", "requeue-dead", "q"], ["queue", "purge-dead", "q"],
                 ["stats"]):
        r = check_cli(tend_cli(t, args), 3)
        assert "no running instance" in one_line_error(r), (args, r.stderr)
    r = check_cli(tend_cli(None, ["stats", "--url", "http://127.0.0.1:%d" % free_port()], config=False), 3)
    assert "no running instance" in one_line_error(r)
    for args in (["task", "--help"], ["queue", "--help"], ["task", "add", "--help"], ["stats", "--help"]):
        check_cli(tend_cli(None, args, config=False), 0, out=r"usage: tend")


if __name__ == "__main__":
    run([test_task_commands, test_queue_and_stats_commands, test_url_token_and_limits, test_unreachable_exit_3])
