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
 * The guard is a fork() of tend.  The tend command forks it first thing
 * (guard_prestart), while the process is small and single-threaded -
 * before the configuration is parsed and libmicrohttpd's loader thread
 * runs - and the supervisor's guard_start() adopts it; a program
 * embedding libtend gets one forked by guard_start().  (Measured against
 * exec'ing the tend binary afresh by posix_spawn: the exec'd guard's own
 * dynamic loading, ~1.3 ms of CPU on the other core, delayed that
 * loader thread; tend's first line came 8.3 ms after Popen against 7.2 ms
 * with the early fork, median of 40 runs.)
 */
#ifndef TEND_LIB_GUARD_H
#define TEND_LIB_GUARD_H

#include <sys/types.h>

typedef struct guard {
    pid_t pid;
    int fd;     /* write end, close-on-exec; -1 when no guard runs */
} guard;

/* Forks a guard now, for the next guard_start() to adopt.  A failure is
 * left for guard_start() to retry and report.  Process-wide. */
void guard_prestart(void);
/* The pid of the guard guard_prestart() forked and no guard_start() has
 * adopted yet, or -1: a child of ours that is not a stray. */
pid_t guard_prestarted_pid(void);

/* Starts the guard (or adopts the one guard_prestart() started).  0 or
 * -errno (then g->fd is -1 and tend runs without one; the caller should
 * warn). */
int guard_start(guard *g);
void guard_add(guard *g, pid_t pgid);
void guard_remove(guard *g, pid_t pgid);
/* Clean stop: the guard exits without killing anything; reaps it. */
void guard_stop(guard *g);

#endif
