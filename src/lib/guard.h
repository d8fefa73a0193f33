/*
 * guard.h - makes sure services never outlive tend, even when tend is
 * killed with SIGKILL.
 *
 * PR_SET_PDEATHSIG only reaches a service's main process, not the
 * grandchildren in its process group.  So tend forks one small guard
 * process (its own session, ignoring SIGINT/SIGTERM/SIGHUP) and keeps a
 * pipe to it, over which it announces each service process group ("+pgid"
 * / "-pgid").  When the pipe reaches end-of-file without a clean "bye" -
 * tend died, however - the guard sends SIGKILL to every group still
 * registered and exits.  The kernel closes the pipe for us, so there is
 * no window in which tend can die unnoticed.
 */
#ifndef TEND_LIB_GUARD_H
#define TEND_LIB_GUARD_H

#include <sys/types.h>

typedef struct guard {
    pid_t pid;
    int fd;     /* write end, close-on-exec; -1 when no guard runs */
} guard;

/* Starts the guard.  0 or -errno (then g->fd is -1 and tend runs
 * without one; the caller should warn). */
int guard_start(guard *g);
void guard_add(guard *g, pid_t pgid);
void guard_remove(guard *g, pid_t pgid);
/* Clean stop: the guard exits without killing anything; reaps it. */
void guard_stop(guard *g);

#endif
