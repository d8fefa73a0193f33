/*
 * guard.h - makes sure services never outlive tend, even when tend is
 * killed with SIGKILL.
 *
 * PR_SET_PDEATHSIG only reaches a service's main process, not the
 * grandchildren in its process group.  So tend starts one small guard
 * process (its own session, ignoring SIGINT/SIGTERM/SIGHUP) and keeps a
 * pipe to it, over which it announces each service process group ("+pgid"
 * / "-pgid").  When the pipe reaches end-of-file without a clean "bye" -
 * tend died, however - the guard sends SIGKILL to every group still
 * registered and exits.  The kernel closes the pipe for us, so there is
 * no window in which tend can die unnoticed.
 *
 * How the guard is started: the tend command names its own executable
 * (guard_prestart("/proc/self/exe")) first thing, and the guard is that
 * program exec'd afresh, by posix_spawn (a CLONE_VFORK child: tend waits
 * only until the exec, ~0.1 ms while the other core is idle, and no copy
 * of its address space is made or written to afterwards; the fresh
 * process also inherits no threads or locks).  Its main() sees
 * guard_invoked() and runs guard_run(); the supervisor's guard_start()
 * adopts it.  A program embedding libtend has no such entry point: the
 * guard is then a fork() of it, as it is when the exec fails.
 */
#ifndef TEND_LIB_GUARD_H
#define TEND_LIB_GUARD_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct guard {
    pid_t pid;
    int fd;     /* write end, close-on-exec; -1 when no guard runs */
} guard;

/* Starts a guard now by exec'ing program (whose main() must call
 * guard_run() when guard_invoked()), for the next guard_start() to adopt;
 * also every later guard_start() execs program.  Process-wide; the string
 * must outlive every guard_start().  A failure is left for guard_start()
 * to retry and report. */
void guard_prestart(const char *program);
/* Whether this process was started as a guard by guard_start(). */
bool guard_invoked(int argc, char **argv);
/* The guard's life in such a process: never returns. */
_Noreturn void guard_run(void);

/* Starts the guard (or adopts the one guard_prestart() started).  0 or
 * -errno (then g->fd is -1 and tend runs without one; the caller should
 * warn). */
int guard_start(guard *g);
void guard_add(guard *g, pid_t pgid);
void guard_remove(guard *g, pid_t pgid);
/* Clean stop: the guard exits without killing anything; reaps it. */
void guard_stop(guard *g);

#endif
