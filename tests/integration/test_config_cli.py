"""The command line without a running instance: check, graph, version,
usage errors and configuration errors (exit 2, FILE:LINE:COL messages)."""

import tempfile
import shutil

from harness import *

DIAMOND = '''\
services:
  a:
    command: ["/bin/true"]
  b:
    command: ["/bin/true"]
    depends_on: {a: ready}
  c:
    command: ["/bin/true"]
    depends_on: {a: ready}
  d:
    command: ["/bin/true"]
    depends_on: {b: ready, c: ready}
  e:
    command: ["/bin/true"]
    depends_on: {d: started}
'''


class Dir:
    """A temp dir holding config files; removed unless the test fails."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="tend-cli-")

    def write(self, name, text):
        p = os.path.join(self.path, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            print("    kept %s" % self.path)
        return False


def pos(text, line_no, needle):
    """1-based column of needle on 1-based line line_no of text."""
    line = text.splitlines()[line_no - 1]
    i = line.index(needle)
    return i + 1


def line_of(text, needle):
    for i, line in enumerate(text.splitlines()):
        if needle in line:
            return i + 1
    raise AssertionError("%r not in text" % needle)


def test_check_valid():
    with Dir() as d:
        f = d.write("tend.yaml", DIAMOND)
        r = run_tend(["check", "-f", f])
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        waves = {}
        for line in r.stdout.splitlines():
            m = re.match(r"^\s*wave (\d+):\s*(.*)$", line)
            if m:
                waves[int(m.group(1))] = sorted(x.strip() for x in m.group(2).split(","))
        assert waves == {1: ["a"], 2: ["b", "c"], 3: ["d"], 4: ["e"]}, r.stdout
        # Also from the config's directory without -f (default tend.yaml).
        r = run_tend(["check"], cwd=d.path)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_check_invalid():
    """Every error is reported, each as `tend: FILE:LINE:COL: path: what`."""
    text = '''\
services:
  api:
    command: ["/bin/true"]
    colour: red
    restart:
      delay: 5x
    depends_on: {nosuch: ready}
  web:
    command: ["/bin/true"]
    critical: maybe
'''
    with Dir() as d:
        f = d.write("tend.yaml", text)
        r = run_tend(["check", "-f", f])
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        errs = [l for l in r.stderr.splitlines() if l.strip()]
        assert len(errs) >= 4, "expected 4 errors:\n" + r.stderr
        locs = []
        for e in errs:
            m = re.match(r"^tend: (\S*tend\.yaml):(\d+):(\d+): (.*)$", e)
            assert m, "not FILE:LINE:COL: %r" % e
            locs.append((int(m.group(2)), int(m.group(3)), m.group(4)))

        def find(word):
            hits = [l for l in locs if word in l[2]]
            assert hits, "no error mentioning %r:\n%s" % (word, r.stderr)
            return hits[0]
        ln, col, msg = find("colour")
        assert ln == line_of(text, "colour") and col == pos(text, ln, "colour"), (ln, col, msg)
        ln, col, msg = find("5x")
        assert ln == line_of(text, "5x") and col == pos(text, ln, "5x"), (ln, col, msg)
        assert "services.api.restart.delay" in msg, msg
        ln, col, msg = find("nosuch")
        assert ln == line_of(text, "nosuch"), (ln, col, msg)
        ln, col, msg = find("maybe")
        assert ln == line_of(text, "maybe"), (ln, col, msg)
        assert "services.web.critical" in msg, msg
        # In file order.
        assert [l[0] for l in locs] == sorted(l[0] for l in locs), locs


def test_up_invalid_config():
    """tend up refuses a bad config with exit 2 and starts nothing."""
    text = '''\
services:
  api:
    command: ["/bin/true"]
    restart: {delay: 5x}
'''
    with Dir() as d:
        f = d.write("tend.yaml", text)
        r = run_tend(["up", "-f", f], timeout=20)
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert re.search(r"^tend: \S*tend\.yaml:4:\d+: services\.api\.restart\.delay", r.stderr, re.M), r.stderr


def test_up_refusals_say_only_why():
    """tend up with a service name not in the config (exit 2) or an unknown
    user: (exit 1) prints the one reason on stderr and nothing else: no
    "stray process" killed (the guard forked ahead is not one) and no
    "shutdown complete" for a system that never started."""
    cases = [(["up", "-f", "{f}", "nope"], DIAMOND, 2, 'tend: unknown service "nope"'),
             (["up", "-f", "{f}"], 'services:\n  a: {command: ["/bin/sleep", "5"], user: nosuchuser-tend}\n', 1,
              'tend: service a: user "nosuchuser-tend": no such user')]
    for args, text, code, line in cases:
        with Dir() as d:
            f = d.write("tend.yaml", "log: {format: json}\n" + text)
            r = run_tend([a.replace("{f}", f) for a in args], timeout=20)
            assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
            assert r.stderr.strip().splitlines() == [line], (args, r.stderr)
            assert "stray" not in r.stdout and "shutdown complete" not in r.stdout, (args, r.stdout)


def test_postgres_store_refused_without_echo():
    """store: postgres://... is valid config but not in this build: tend up
    exits 2 saying so, for tasks and for persisted sessions, and never
    prints the URL (it may carry a password)."""
    for extra in ("tasks:\n  queues:\n    q: {handler: pull}\n", "sessions: {persist: true}\n"):
        text = 'store: "postgres://app:s3cretpw@db.example/app"\nservices:\n  a:\n    command: ["/bin/true"]\n    oneshot: true\n' + extra
        with Dir() as d:
            f = d.write("tend.yaml", text)
            r = run_tend(["up", "-f", f], timeout=20)
            assert r.returncode == 2, (extra, r.returncode, r.stdout, r.stderr)
            assert "PostgreSQL store is not available" in r.stderr, r.stderr
            assert "s3cretpw" not in r.stdout + r.stderr, (r.stdout, r.stderr)
            assert not os.path.exists(os.path.join(d.path, ".tend", "tend.db"))


def test_missing_file():
    with Dir() as d:
        r = run_tend(["check", "-f", os.path.join(d.path, "nope.yaml")])
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert r.stderr.startswith("tend: ") and "nope.yaml" in r.stderr, r.stderr


def test_cycle():
    text = '''\
services:
  a:
    command: ["/bin/true"]
    depends_on: {b: ready}
  b:
    command: ["/bin/true"]
    depends_on: {c: ready}
  c:
    command: ["/bin/true"]
    depends_on: {a: ready}
  z:
    command: ["/bin/true"]
'''
    with Dir() as d:
        f = d.write("tend.yaml", text)
        r = run_tend(["check", "-f", f])
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert "dependency cycle: a -> b -> c -> a" in r.stderr, r.stderr
        r = run_tend(["up", "-f", f], timeout=20)
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert "dependency cycle: a -> b -> c -> a" in r.stderr, r.stderr


def test_graph_formats():
    with Dir() as d:
        f = d.write("tend.yaml", DIAMOND)
        # json
        r = run_tend(["graph", "-f", f, "--format", "json"])
        assert r.returncode == 0, (r.returncode, r.stderr)
        g = json.loads(r.stdout)
        text = json.dumps(g)
        for s in "abcde":
            assert '"%s"' % s in text, text
        if isinstance(g, dict) and "waves" in g:
            assert [sorted(w) if isinstance(w, list) else w for w in g["waves"]][:4] == \
                [["a"], ["b", "c"], ["d"], ["e"]], g["waves"]
        # dot
        r = run_tend(["graph", "-f", f, "--format", "dot"])
        assert r.returncode == 0, (r.returncode, r.stderr)
        assert re.match(r"^\s*(strict\s+)?digraph\b", r.stdout), r.stdout
        assert r.stdout.rstrip().endswith("}"), r.stdout
        edges = set(re.findall(r'"?(\w+)"?\s*->\s*"?(\w+)"?', r.stdout))
        want = {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")}
        rev = {(y, x) for x, y in want}
        assert want <= edges or rev <= edges, "edges %s" % sorted(edges)
        # text (also the default)
        for args in (["--format", "text"], []):
            r = run_tend(["graph", "-f", f] + args)
            assert r.returncode == 0, (r.returncode, r.stderr)
            assert "wave 1" in r.stdout and "wave 4" in r.stdout, r.stdout
            for s in "abcde":
                assert re.search(r"\b%s\b" % s, r.stdout), r.stdout
        # bad format
        r = run_tend(["graph", "-f", f, "--format", "svg"])
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)


def test_version():
    for args in (["version"], ["--version"]):
        r = run_tend(args)
        assert r.returncode == 0, (args, r.returncode, r.stderr)
        assert re.search(r"\btend\b.*\b\d+\.\d+\.\d+", r.stdout), r.stdout


def test_usage_errors():
    r = run_tend(["no-such-command"])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.startswith("tend: "), r.stderr
    r = run_tend([])
    assert r.returncode == 2, (r.returncode, r.stderr)
    r = run_tend(["check", "--no-such-flag"])
    assert r.returncode == 2, (r.returncode, r.stderr)


if __name__ == "__main__":
    run([
        test_check_valid,
        test_check_invalid,
        test_up_invalid_config,
        test_up_refusals_say_only_why,
        test_postgres_store_refused_without_echo,
        test_missing_file,
        test_cycle,
        test_graph_formats,
        test_version,
        test_usage_errors,
    ])
