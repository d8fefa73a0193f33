#!/usr/bin/env python3
"""Context for startup_waves: what starting 10 processes costs on this host.

Not a tend benchmark.  It compiles (with `cc`, into a temporary directory
that is removed) a tiny C program that starts 10 demo-service processes
(no flags) in three ways and reports how long until all 10 have exec'd
(for the fork ways, confirmed by EOF on a close-on-exec pipe):

  fork, wait each   fork(); block on that child's exec pipe; next fork
                    (what tend did before 2026-12-01)
  fork, overlapped  fork all 10 first, then wait for the 10 exec pipes
  posix_spawn       glibc posix_spawn (clone(CLONE_VM|CLONE_VFORK)), serially
                    (what tend's spawn_process() does now, service after service)

A C program is used rather than Python's os.fork() because forking the
Python interpreter itself costs more than the exec being measured.
Each way runs --reps times; median, min, max of the time for all 10.

Usage: spawn_floor.py [--reps N] [--count N]
"""

import argparse
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # leave no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

C_SOURCE = B.C_PRELUDE + r"""
#include <spawn.h>
int main(int argc, char **argv) {
    int mode = atoi(argv[1]), n = atoi(argv[2]), reps = atoi(argv[3]);
    char *cargv[] = {argv[4], "--name", "spawn-floor", NULL};
    pid_t *pids = calloc(n, sizeof(pid_t));
    int *fds = calloc(n, sizeof(int));
    int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int rep = 0; rep < reps; rep++) {
        double t0 = now();
        for (int i = 0; i < n; i++) {
            if (mode == 2) {
                posix_spawn_file_actions_t fa;
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_adddup2(&fa, dn, 1);
                posix_spawn_file_actions_adddup2(&fa, dn, 2);
                if (posix_spawn(&pids[i], cargv[0], &fa, NULL, cargv, environ) != 0)
                    return 1;
                posix_spawn_file_actions_destroy(&fa);
                continue;
            }
            int p[2];
            if (pipe2(p, O_CLOEXEC) < 0)
                return 1;
            pid_t pid = fork();
            if (pid == 0) {
                setpgid(0, 0);
                dup2(dn, 1);
                dup2(dn, 2);
                execv(cargv[0], cargv);
                _exit(127);
            }
            close(p[1]);
            pids[i] = pid;
            if (mode == 0) {
                char b[8];
                (void)!read(p[0], b, sizeof(b));
                close(p[0]);
            } else {
                fds[i] = p[0];
            }
        }
        if (mode == 1)
            for (int i = 0; i < n; i++) {
                char b[8];
                (void)!read(fds[i], b, sizeof(b));
                close(fds[i]);
            }
        printf("%.3f\n", now() - t0);
        fflush(stdout);
        for (int i = 0; i < n; i++)
            kill(pids[i], SIGTERM);
        for (int i = 0; i < n; i++)
            waitpid(pids[i], NULL, 0);
        usleep(200000);
    }
    return 0;
}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--count", type=int, default=10)
    a = ap.parse_args()
    B.check_binaries()
    cc = B.find_cc("spawn_floor")
    B.print_header("spawn_floor: time until %d demo-service processes have exec'd (C helper)"
                   % a.count)
    with B.c_program(cc, C_SOURCE, "spawn_floor") as exe:
        rows = []
        for mode, label in ((0, "fork, wait each"), (1, "fork, overlapped"),
                            (2, "posix_spawn (vfork), serial (tend's way)")):
            out = subprocess.run([exe, str(mode), str(a.count), str(a.reps), B.DEMO],
                                 capture_output=True, text=True, check=True).stdout
            times = [float(x) for x in out.split()]
            m, lo, hi = B.spread(times)
            rows.append([label, B.fmt(m, 2), B.fmt(lo, 2), B.fmt(hi, 2), B.fmt(m / a.count, 2)])
    print()
    B.table(["way", "%d processes ms (median)" % a.count, "min", "max", "per process ms"], rows)


if __name__ == "__main__":
    main()
