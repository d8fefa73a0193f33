/*
 * reaper.h - collects every child's exit status on the loop.
 *
 * tend is a child subreaper, so orphaned grandchildren of its services are
 * re-parented to it; one SIGCHLD watcher reaps all of them with
 * waitpid(-1, WNOHANG) and dispatches the statuses of the pids somebody
 * watches.  Nobody else in the process may call wait*() on -1.
 */
#ifndef TEND_LIB_REAPER_H
#define TEND_LIB_REAPER_H

#include <sys/types.h>
#include <uv.h>

typedef void (*reaper_cb)(void *data, pid_t pid, int status);

typedef struct reaper_entry {
    pid_t pid;
    reaper_cb cb;
    void *data;
} reaper_entry;

typedef struct reaper {
    uv_signal_t sigchld;
    reaper_entry *entries;
    size_t n, cap;
    unsigned long orphans_reaped;
    /* Called after any reap of a pid nobody watched (an orphan). */
    void (*on_orphan)(void *data, pid_t pid, int status);
    void *orphan_data;
} reaper;

int reaper_init(reaper *r, uv_loop_t *loop);
/* Watches pid; cb runs once on the loop when it exits.  0 or -ENOMEM. */
int reaper_watch(reaper *r, pid_t pid, reaper_cb cb, void *data);
void reaper_unwatch(reaper *r, pid_t pid);
/* Another callback for a watched pid (no allocation); 0 or -ENOENT. */
int reaper_rewatch(reaper *r, pid_t pid, reaper_cb cb, void *data);
/* Reaps whatever has exited now (also called from the SIGCHLD handler). */
void reaper_reap(reaper *r);
void reaper_close(reaper *r);

#endif
