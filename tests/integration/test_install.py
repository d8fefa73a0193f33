"""test_install.py - `meson install` into a temporary root, then every
program in examples/embed/ built against the *installed* libtend with
`pkg-config --cflags --libs tend` and run (each must exit 0).

Also checks the installed layout of SPEC 8 (bin/tend, lib/libtend.so*,
include/tend/*.h, lib/pkgconfig/tend.pc, the man page, the docs), the
soname, that libtend.so exports nothing but tend_* symbols, and that the
public headers compile on their own as C11 and as C++.

Environment (set by tests/meson.build): BUILD_ROOT, SOURCE_ROOT.
"""

import glob
import shutil
import subprocess
import tempfile

from harness import *

BUILD = os.environ.get("BUILD_ROOT") or os.path.join(os.path.dirname(TEND_BIN))
SOURCE = os.environ.get("SOURCE_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CC = os.environ.get("CC_FOR_TEST", "cc")


def sh(args, **kw):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (" ".join(args), p.returncode, p.stdout))
    return p.stdout


class Installed:
    """One `meson install --destdir` shared by the tests below."""
    root = None

    @classmethod
    def get(cls):
        if cls.root:
            return cls
        cls.tmp = tempfile.mkdtemp(prefix="tend-install-")
        root = os.path.join(cls.tmp, "root")
        sh(["meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", root])
        cls.root = root
        # The prefix meson was configured with (/usr/local unless changed).
        info = json.loads(sh(["meson", "introspect", "--buildoptions", BUILD]))
        opts = {o["name"]: o["value"] for o in info}
        cls.prefix = cls.root + opts["prefix"]
        cls.libdir = os.path.join(cls.prefix, opts["libdir"])
        cls.includedir = os.path.join(cls.prefix, opts["includedir"])
        # A sanitized libtend.so needs sanitized programs (the runtime first).
        san = opts.get("b_sanitize", "none")
        cls.san = ["-fsanitize=" + ",".join(san) if isinstance(san, list) else "-fsanitize=" + san] \
            if san not in ("none", [], ["none"]) else []
        cls.env = dict(os.environ)
        # pkg-config prepends the sysroot to -I and -L: the .pc says
        # /usr/local/..., the files are under the destdir.
        cls.env["PKG_CONFIG_PATH"] = os.path.join(cls.libdir, "pkgconfig")
        cls.env["PKG_CONFIG_SYSROOT_DIR"] = cls.root
        cls.env["PKG_CONFIG_LIBDIR"] = ""  # the installed tend.pc only, not a system one
        cls.env["LD_LIBRARY_PATH"] = cls.libdir
        return cls


def test_layout():
    i = Installed.get()
    p = i.prefix
    for f in ["bin/tend", "share/man/man1/tend.1", "share/doc/tend/libtend.md",
              "share/doc/tend/architecture.md"]:
        assert os.path.isfile(os.path.join(p, f)), f
    for f in ["libtend.so", "libtend.so.0", "pkgconfig/tend.pc"]:
        assert os.path.exists(os.path.join(i.libdir, f)), f
    assert glob.glob(os.path.join(i.libdir, "libtend.so.0.*")), "libtend.so.0.<minor>.<patch>"
    headers = sorted(os.path.basename(h) for h in glob.glob(os.path.join(i.includedir, "tend", "*.h")))
    for h in ["tend.h", "common.h", "runtime.h", "component.h", "health.h", "tasks.h", "sessions.h",
              "supervisor.h", "spec.h"]:
        assert h in headers, (h, headers)
    # Only public headers: nothing from src/ is installed.
    src_headers = {os.path.basename(h) for h in glob.glob(os.path.join(SOURCE, "src", "*", "*.h"))}
    leaked = (set(headers) & src_headers) - {"supervisor.h"}  # tend/supervisor.h is the public one
    assert not leaked, leaked
    with open(os.path.join(i.includedir, "tend", "supervisor.h")) as f:
        assert "TEND_SUPERVISOR_H" in f.read()


def test_soname_and_exports():
    i = Installed.get()
    lib = os.path.realpath(os.path.join(i.libdir, "libtend.so"))
    dyn = sh(["readelf", "-d", lib])
    assert "Library soname: [libtend.so.0]" in dyn, dyn
    syms = sh(["nm", "-D", "--defined-only", lib]).split("\n")
    # Newer binutils print the version: tend_x@@TEND_0.
    names = [l.split()[-1].split("@")[0] for l in syms if l.strip()]
    bad = [n for n in names if not n.startswith("tend_") and n != "TEND_0"]
    assert not bad, "exported non-API symbols: %s" % bad[:20]
    for n in ["tend_runtime_new", "tend_runtime_shutdown", "tend_shutdown", "tend_tasks_submit",
              "tend_sessions_set", "tend_health_run", "tend_supervisor_new", "tend_config_init"]:
        assert n in names, n


def test_pkg_config():
    i = Installed.get()
    cflags = sh(["pkg-config", "--cflags", "tend"], env=i.env).strip()
    libs = sh(["pkg-config", "--libs", "tend"], env=i.env).strip()
    assert i.includedir in cflags or cflags == "", cflags
    assert "-ltend" in libs and i.libdir in libs, libs
    version = sh(["pkg-config", "--modversion", "tend"], env=i.env).strip()
    out = sh([i.prefix + "/bin/tend", "version"])
    assert version in out, (version, out)


def test_headers_standalone():
    i = Installed.get()
    cflags = sh(["pkg-config", "--cflags", "tend"], env=i.env).split()
    d = tempfile.mkdtemp(prefix="tend-headers-")
    try:
        for h in sorted(glob.glob(os.path.join(i.includedir, "tend", "*.h"))):
            name = os.path.basename(h)
            src = os.path.join(d, "h.c")
            with open(src, "w") as f:
                f.write("#include <tend/%s>\n#include <tend/%s>\nint main(void) { return 0; }\n" % (name, name))
            sh([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", *cflags, src, "-o", os.path.join(d, "h"), *i.san])
        cxx = shutil.which("c++") or shutil.which("g++")
        if cxx:
            src = os.path.join(d, "h.cpp")
            with open(src, "w") as f:
                f.write("#include <tend/tend.h>\nint main() { return tend_version() ? 0 : 1; }\n")
            sh([cxx, "-Wall", "-Werror", *cflags, *i.san, src, "-o", os.path.join(d, "hpp"),
                *sh(["pkg-config", "--libs", "tend"], env=i.env).split()])
            sh([os.path.join(d, "hpp")], env=i.env)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_examples_build_and_run():
    i = Installed.get()
    flags = sh(["pkg-config", "--cflags", "--libs", "tend"], env=i.env).split()
    examples = sorted(glob.glob(os.path.join(SOURCE, "examples", "embed", "*.c")))
    assert len(examples) >= 2, examples
    d = tempfile.mkdtemp(prefix="tend-examples-")
    try:
        for src in examples:
            exe = os.path.join(d, os.path.basename(src)[:-2])
            sh([CC, "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror", src, "-o", exe, *flags, "-pthread", *i.san])
            # It must load the installed library, not one from the build tree.
            ldd = sh(["ldd", exe], env=i.env)
            line = [l for l in ldd.split("\n") if "libtend.so" in l]
            assert line and i.libdir in line[0], ldd
            p = subprocess.run([exe], env=i.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=slow(60))
            assert p.returncode == 0, "%s exited %d:\n%s" % (exe, p.returncode, p.stdout)
            print("# %s: ok" % os.path.basename(exe), flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_getting_started():
    """The getting-started program of docs/libtend.md, as printed there."""
    i = Installed.get()
    with open(os.path.join(SOURCE, "docs", "libtend.md")) as f:
        m = re.search(r"## Getting started.*?```c\n(.*?)```", f.read(), re.S)
    assert m, "no ```c block under ## Getting started"
    code = m.group(1)
    assert len(code.strip().split("\n")) <= 30, "the getting-started is 30 lines at most"
    d = tempfile.mkdtemp(prefix="tend-gs-")
    try:
        src, exe = os.path.join(d, "gs.c"), os.path.join(d, "gs")
        with open(src, "w") as f:
            f.write(code)
        flags = sh(["pkg-config", "--cflags", "--libs", "tend"], env=i.env).split()
        sh([CC, "-std=gnu11", "-Wall", "-Wno-unused-parameter", "-Werror", src, "-o", exe, *flags, *i.san])
        out = sh([exe], env=i.env)
        assert "db: connected" in out and "health: healthy" in out and "db: closed" in out, out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_cleanup():
    if getattr(Installed, "tmp", None):
        shutil.rmtree(Installed.tmp, ignore_errors=True)


if __name__ == "__main__":
    run([test_layout, test_soname_and_exports, test_pkg_config, test_headers_standalone,
         test_examples_build_and_run, test_getting_started, test_cleanup])
