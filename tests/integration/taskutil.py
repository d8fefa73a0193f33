"""Shared helpers of the task tests (test_tasks_*.py): a tend with task
queues and no services, the task API over the unix socket, the exec
handler (task_handler.py) and its run log, and the tend CLI.

    from taskutil import *
    t = task_tend('''
        queues:
          q: {handler: {exec: HANDLER}, concurrency: 2}
        ''')
    tid = submit(t, "q", {"payload": {"sleep": 0.1}})["id"]
    wait_task(t, tid, "succeeded")

The text given to task_tend() is the body of the `tasks:` map; HANDLER
(and HANDLER_<name> for a second log) become the handler argv.
"""

import subprocess
import sys

from harness import *
from harness import http_request

HERE = os.path.dirname(os.path.abspath(__file__))
HANDLER_PY = os.path.join(HERE, "task_handler.py")
PRIORITIES = ["critical", "high", "normal", "low", "background"]

__all__ = [
    "task_tend", "api", "submit", "submit_many", "get_task", "wait_task", "wait_tasks", "list_tasks", "reserve",
    "runs", "starts", "handler_argv", "tend_cli", "check_cli", "queue_info", "metric", "metrics_text",
    "tasks_of", "PRIORITIES", "HANDLER_PY", "wait_runs", "sock", "wait_up",
]


def handler_argv(t, log="runs"):
    """The argv (as a YAML flow list) of task_handler.py logging to <dir>/<log>.log."""
    return json.dumps([sys.executable, HANDLER_PY, t.path(log + ".log")])


def task_tend(tasks, services="services: {}", env=None, args=(), start=True, extra="", wait=True):
    """A tend whose config is `services` plus `tasks:` with the (indented)
    text tasks.  HANDLER / HANDLER_<x> in tasks become handler_argv(t, x)."""
    body = textwrap.indent(textwrap.dedent(tasks).strip("\n"), "  ")
    text = "%s\n%s\ntasks:\n%s\n" % (services, textwrap.dedent(extra).strip("\n"), body)
    t = Tend(text, start=False)
    cfg = t.config
    for m in sorted(set(re.findall(r"HANDLER(?:_(\w+))?", cfg)), key=len, reverse=True):
        cfg = cfg.replace("HANDLER_" + m if m else "HANDLER", handler_argv(t, m or "runs"))
    t.config = cfg
    with open(t.config_path, "w") as f:
        f.write(cfg)
    if start:
        t.start(*args, env=env)
        if wait:
            wait_up(t)
    return t


def sock(t):
    return t.path(".tend", "tend.sock")


def wait_up(t, timeout=15.0):
    def up():
        if t.proc.poll() is not None:
            raise AssertionError("tend exited with %s: %s" % (t.proc.poll(), "\n".join(t.tail(30))))
        try:
            st, _, _ = http_request("GET", "/health/live", unix=sock(t), timeout=2)
            return st == 200
        except OSError:
            return False
    wait_for(up, timeout, what="tend's API")
    # The engine starts with the API; wait for the startup to settle too.
    wait_for(lambda: t.find(r"^startup complete") or t.proc.poll() is not None, timeout,
             what="startup complete")


def api(t, method, path, body=None, timeout=10.0, headers=None):
    """(status, parsed JSON or None, raw text) over the unix socket."""
    st, hdrs, text = http_request(method, path, body=body, unix=sock(t), timeout=timeout, headers=headers)
    try:
        js = json.loads(text) if text else None
    except ValueError:
        js = None
    return st, js, text


def tasks_of(body):
    """The task objects of a submission answer: one object, an array, or
    {"tasks": [...]}."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("tasks"), list):
        return body["tasks"]
    if isinstance(body, dict) and isinstance(body.get("task"), dict):
        return [body["task"]]
    return [body]


def submit(t, queue, body, expect=201):
    """POSTs one task body (a dict) or a list; asserts the status; returns
    the task (dict) or the list of tasks."""
    st, js, text = api(t, "POST", "/api/v1/queues/%s/tasks" % queue, body)
    assert st == expect, "submit to %s: HTTP %d, expected %d: %s" % (queue, st, expect, text[:500])
    if isinstance(body, list):
        return tasks_of(js)
    return tasks_of(js)[0]


def submit_many(t, queue, bodies):
    """Submits each body on its own (in order); returns their ids."""
    return [submit(t, queue, b)["id"] for b in bodies]


def get_task(t, tid):
    st, js, text = api(t, "GET", "/api/v1/tasks/%s" % tid)
    assert st == 200, "GET task %s: HTTP %d %s" % (tid, st, text[:300])
    return tasks_of(js)[0]


def wait_task(t, tid, state, timeout=15.0):
    """Waits until the task is in state (a regex alternative like
    'succeeded|dead'); returns the task."""
    last = {}

    def get():
        last["t"] = get_task(t, tid)
        return last["t"] if re.fullmatch(state, last["t"].get("state", "")) else None
    try:
        return wait_for(get, timeout, interval=0.05, what="task %s to be %s" % (tid, state))
    except AssertionError as e:
        raise AssertionError("%s; last seen: %s" % (e, json.dumps(last.get("t"))[:600]))


def wait_tasks(t, ids, state, timeout=30.0):
    return [wait_task(t, i, state, timeout) for i in ids]


def reserve(t, queue, wait="0s", timeout=30):
    """Pull queues: lease the next task (long-poll up to wait); the task
    or None for 204."""
    st, js, text = api(t, "POST", "/api/v1/queues/%s/reserve?wait=%s" % (queue, wait), timeout=timeout)
    assert st in (200, 204), "reserve: HTTP %d %s" % (st, text)
    return tasks_of(js)[0] if st == 200 else None


def list_tasks(t, **query):
    q = "&".join("%s=%s" % (k, v) for k, v in query.items() if v is not None)
    st, js, text = api(t, "GET", "/api/v1/tasks" + ("?" + q if q else ""))
    assert st == 200, "list: HTTP %d %s" % (st, text[:300])
    return js


def queue_info(t, queue):
    st, js, text = api(t, "GET", "/api/v1/queues/%s" % queue)
    assert st == 200, "queue %s: HTTP %d %s" % (queue, st, text[:300])
    return js.get("queue", js) if isinstance(js, dict) else js


def runs(t, log="runs"):
    """The handler's records: a list of dicts {id, attempt, start, end
    (None if it did not finish), batch, payload, env, pid}, in start order."""
    try:
        with open(t.path(log + ".log")) as f:
            lines = [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []
    out, open_ = [], {}
    for r in lines:
        key = (r.get("id"), r.get("attempt"))
        if "start" in r:
            rec = dict(r)
            rec["end"] = None
            out.append(rec)
            open_.setdefault(key, []).append(rec)
        elif "end" in r and open_.get(key):
            open_[key].pop(0)["end"] = r["end"]
    out.sort(key=lambda r: r["start"])
    return out


def starts(t, log="runs"):
    """[id, ...] in the order the handler started them."""
    return [r["id"] for r in runs(t, log)]


def wait_runs(t, n, log="runs", timeout=15.0, finished=True):
    """Waits until the handler has n records (finished ones with finished=True)."""
    def get():
        rs = [r for r in runs(t, log) if r["end"] is not None or not finished]
        return rs if len(rs) >= n else None
    return wait_for(get, timeout, interval=0.05, what="%d handler runs in %s.log" % (n, log))


def tend_cli(t, args, timeout=30.0, input=None, env=None, config=True):
    """Runs `tend ARGS` against t: `-f CONFIG` goes right after the command
    (and the subcommand of task/queue); config=False leaves it out."""
    e = {k: v for k, v in os.environ.items() if k not in ("TEND_URL", "TEND_TOKEN", "TEND_CONFIG")}
    e.update(env or {})
    argv = list(args)
    if config and t is not None:
        # After the command (and its subcommand for task/queue).
        n = 2 if argv and argv[0] in ("task", "queue") and len(argv) > 1 else 1
        argv = argv[:n] + ["-f", t.config_path] + argv[n:]
    return subprocess.run([TEND_BIN] + argv, env=e, input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=slow(timeout))


def check_cli(r, code, out=None, err=None):
    assert r.returncode == code, "exit %d, expected %d\nstdout: %s\nstderr: %s" % (
        r.returncode, code, r.stdout, r.stderr)
    if out:
        assert re.search(out, r.stdout), "stdout %r lacks %r" % (r.stdout, out)
    if err:
        assert re.search(err, r.stderr), "stderr %r lacks %r" % (r.stderr, err)
    return r


def metrics_text(t):
    st, _, text = http_request("GET", "/metrics", unix=sock(t))
    assert st == 200, st
    return text


def metric(t, name, text=None, **labels):
    """The value of one sample of /metrics (labels must match exactly the
    given ones, others ignored), or None."""
    text = text if text is not None else metrics_text(t)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == str(v) for k, v in labels.items()):
            return float(m.group(4))
    return None
