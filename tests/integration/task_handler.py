#!/usr/bin/env python3
"""An exec task handler for the task tests: reads the task JSON (or a
batch) on stdin and does what the payload asks, recording each run.

    task_handler.py LOGFILE

Appends one JSON line per task (and per attempt) to LOGFILE:
  {"id", "queue", "attempt", "payload", "start", "end", "pid", "batch": n,
   "env": {"TEND_TASK_ID", "TEND_QUEUE", "TEND_ATTEMPT"}}
"start"/"end" are time.time() values; "end" is written in a second line
({"id", "attempt", "end"}) so that a run that is killed still shows its
start.  Payload keys (all optional; a payload that is not an object does
nothing special):
  sleep: seconds to sleep (only on attempts <= sleep_attempts when given)
  exit: exit status (e.g. 1, 65)
  fail_attempts: exit 1 while attempt <= this
  fail_if_exists: exit 1 (or fail_exit) while this path exists
  fail_exit: the status used by fail_attempts / fail_if_exists (default 1)
  stderr: text to print on stderr
  fail: true  (batch mode: listed in {"failed": [...]} on stdout)
In batch mode ({"batch": [...]}) the largest sleep of the batch is slept
once, "exit" of any task is the batch's exit status, and the ids with
"fail": true are printed as {"failed": [...]}.
"""

import json
import os
import sys
import time


def attempt_of(task):
    try:
        return int(task.get("attempt") or os.environ.get("TEND_ATTEMPT") or 0)
    except (TypeError, ValueError):
        return 0


def decide(p, attempt):
    """The exit status the payload p asks for on this attempt, or 0."""
    if not isinstance(p, dict):
        return 0
    fexit = int(p.get("fail_exit", 1))
    if "fail_attempts" in p and attempt <= int(p["fail_attempts"]):
        return fexit
    if p.get("fail_if_exists") and os.path.exists(p["fail_if_exists"]):
        return fexit
    return int(p.get("exit", 0))


def sleep_of(p, attempt):
    if not isinstance(p, dict) or "sleep" not in p:
        return 0.0
    if "sleep_attempts" in p and attempt > int(p["sleep_attempts"]):
        return 0.0
    return float(p["sleep"])


def record(log, obj):
    line = json.dumps(obj) + "\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main():
    log = sys.argv[1]
    raw = sys.stdin.read()
    doc = json.loads(raw)
    env = {k: os.environ.get(k) for k in ("TEND_TASK_ID", "TEND_QUEUE", "TEND_ATTEMPT")}
    tasks = doc["batch"] if isinstance(doc, dict) and isinstance(doc.get("batch"), list) else [doc]
    batch = len(tasks) if isinstance(doc, dict) and "batch" in doc else 0
    start = time.time()
    for t in tasks:
        record(log, {"id": t.get("id"), "queue": t.get("queue"), "attempt": attempt_of(t),
                     "payload": t.get("payload"), "start": start, "pid": os.getpid(),
                     "batch": batch, "env": env})
    naps = [sleep_of(t.get("payload"), attempt_of(t)) for t in tasks]
    if naps and max(naps) > 0:
        time.sleep(max(naps))
    for t in tasks:
        p = t.get("payload")
        if isinstance(p, dict) and p.get("stderr"):
            sys.stderr.write(p["stderr"] + "\n")
    codes = [decide(t.get("payload"), attempt_of(t)) for t in tasks]
    end = time.time()
    for t in tasks:
        record(log, {"id": t.get("id"), "attempt": attempt_of(t), "end": end})
    if batch:
        failed = [t["id"] for t in tasks if isinstance(t.get("payload"), dict) and t["payload"].get("fail")]
        if failed:
            sys.stdout.write(json.dumps({"failed": failed}) + "\n")
    sys.stdout.flush()
    code = next((c for c in codes if c), 0)
    sys.exit(code)


if __name__ == "__main__":
    main()
