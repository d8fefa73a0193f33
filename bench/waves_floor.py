#!/usr/bin/env python3
"""Context for startup_waves: what an ideal supervisor reaches on this host.

Not a tend benchmark.  It compiles (with `cc`, into a temporary directory
that is removed) a C program that runs the startup_waves shape itself:
W waves x P `demo-service --ready-delay 0.2` processes, wave k+1 started the
moment the last process of wave k says `ready` (its stdout line; no
logging, no state machine, no config, no API), in two ways:

  vfork, serial    each process started by a CLONE_VM | CLONE_VFORK clone
                   and execve, one after another (tend without parking)
  parked           every process of wave k+1 cloned ahead (CLONE_VM, no
                   vfork) and parked on a pipe while wave k runs; released
                   with one write each (tend's parking; wave 1 is parked
                   and released at once)

For each: the overhead over W x 200 ms measured inside the program (from its
first clone to the last `ready`), and the same from Python's clock just
before `Popen` of the program (what startup_waves' external figure counts:
it adds the start of a process from Python).  Medians over --reps runs.

Usage: waves_floor.py [--reps N] [--waves W] [--per-wave P]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ behind
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

C_SOURCE = B.C_PRELUDE + r"""
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#define STACK 65536
typedef struct child { char *argv[6]; int out_w, gate_r; pid_t pid; char *stack; } child;
static int run_direct(void *p) {
    child *c = p;
    dup2(c->out_w, 1);
    execve(c->argv[0], c->argv, environ);
    _exit(127);
}
/* Parked: raw system calls only (it shares our memory and errno). */
static int run_parked(void *p) {
    child *c = p;
    char go;
    syscall(SYS_dup2, c->out_w, 1);
    if (syscall(SYS_read, c->gate_r, &go, 1) != 1)
        syscall(SYS_exit_group, 0);
    syscall(SYS_execve, c->argv[0], c->argv, environ);
    syscall(SYS_exit_group, 127);
    return 0;
}
int main(int argc, char **argv) {
    int mode = atoi(argv[1]), waves = atoi(argv[2]), per = atoi(argv[3]);
    int n = waves * per;
    double t_main = now();
    child *c = calloc(n, sizeof(child));
    int *out_r = calloc(n, sizeof(int)), *gate_w = calloc(n, sizeof(int));
    char *stacks = mmap(NULL, (size_t)n * STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < n; i++) {
        c[i].argv[0] = argv[4];
        c[i].argv[1] = "--name";
        c[i].argv[2] = "floor";
        c[i].argv[3] = "--ready-delay";
        c[i].argv[4] = "0.2";
        c[i].stack = stacks + (size_t)(i + 1) * STACK;
    }
    double t0 = 0;
    /* Park wave w (its pipes made just before, so no other child holds them). */
    #define PARK(w) for (int i = (w) * per; i < ((w) + 1) * per; i++) { \
        int o[2], g[2]; pipe2(o, O_CLOEXEC); pipe2(g, O_CLOEXEC); \
        out_r[i] = o[0]; c[i].out_w = o[1]; c[i].gate_r = g[0]; gate_w[i] = g[1]; \
        c[i].pid = clone(run_parked, c[i].stack, CLONE_VM | SIGCHLD, &c[i]); \
        close(o[1]); close(g[0]); }
    #define RELEASE(w) for (int i = (w) * per; i < ((w) + 1) * per; i++) { \
        char go = 1; (void)!write(gate_w[i], &go, 1); close(gate_w[i]); }
    #define DIRECT(w) for (int i = (w) * per; i < ((w) + 1) * per; i++) { \
        int o[2]; pipe2(o, O_CLOEXEC); out_r[i] = o[0]; c[i].out_w = o[1]; \
        c[i].pid = clone(run_direct, c[i].stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &c[i]); \
        close(o[1]); }
    t0 = now();
    if (mode == 1) {
        PARK(0);
        RELEASE(0);
    } else {
        DIRECT(0);
    }
    for (int w = 0; w < waves; w++) {
        if (mode == 1 && w + 1 < waves)
            PARK(w + 1);
        /* Until every process of wave w has said "ready". */
        int left = per;
        char *ready = calloc(per, 1);
        while (left > 0) {
            struct pollfd pf[per];
            for (int k = 0; k < per; k++) {
                pf[k].fd = ready[k] ? -1 : out_r[w * per + k];
                pf[k].events = POLLIN;
            }
            poll(pf, per, 10000);
            for (int k = 0; k < per; k++) {
                if (ready[k] || !(pf[k].revents & (POLLIN | POLLHUP)))
                    continue;
                char buf[4096];
                ssize_t len = read(pf[k].fd, buf, sizeof(buf) - 1);
                if (len <= 0) { ready[k] = 1; left--; continue; }
                buf[len] = 0;
                if (strstr(buf, ": ready\n")) { ready[k] = 1; left--; }
            }
        }
        free(ready);
        if (w + 1 < waves) {
            if (mode == 1) {
                RELEASE(w + 1);
            } else {
                DIRECT(w + 1);
            }
        }
    }
    double t_end = now();
    printf("%.3f %.3f %.3f\n", t_main, t0, t_end);
    fflush(stdout);
    for (int i = 0; i < n; i++)
        kill(c[i].pid, SIGTERM);
    for (int i = 0; i < n; i++)
        waitpid(c[i].pid, NULL, 0);
    return 0;
}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--waves", type=int, default=5)
    ap.add_argument("--per-wave", type=int, default=10)
    a = ap.parse_args()
    B.check_binaries()
    cc = B.find_cc("waves_floor")
    B.print_header("waves_floor: %d waves x %d demo-service, ready 200 ms after start, ideal supervisor (C helper), "
                   "%d runs each" % (a.waves, a.per_wave, a.reps))
    ideal = a.waves * 200.0
    res = {0: [], 1: []}
    with B.c_program(cc, C_SOURCE, "waves_floor") as exe:
        for _ in range(a.reps):
            for mode in (0, 1):  # interleaved
                t_py = time.monotonic() * 1000.0
                out = subprocess.run([exe, str(mode), str(a.waves), str(a.per_wave), B.DEMO],
                                     capture_output=True, text=True, check=True).stdout
                t_main, t0, t_end = (float(x) for x in out.split())
                res[mode].append((t_end - t0 - ideal, t_end - t_py - ideal, t_main - t_py))
                time.sleep(0.3)
    rows = []
    for mode, label in ((0, "vfork, serial"), (1, "parked")):
        med = lambda k: B.fmt(statistics.median(r[k] for r in res[mode]), 1)
        lo = lambda k: B.fmt(min(r[k] for r in res[mode]), 1)
        hi = lambda k: B.fmt(max(r[k] for r in res[mode]), 1)
        rows.append([label, med(0), lo(0), hi(0), med(1), lo(1), hi(1), med(2)])
    print()
    B.table(["way", "inside: overhead ms (median)", "min", "max", "from Popen: overhead ms (median)", "min", "max",
             "Popen to the program's main() ms"], rows)


if __name__ == "__main__":
    main()
