/*
 * spawn.h - fork/exec of a service or probe process.
 *
 * The child gets its own process group (so a whole service, grandchildren
 * included, can be signalled at once), SIGKILL as its parent-death signal,
 * default signal dispositions and an empty signal mask, stdin from
 * /dev/null, the given stdout/stderr, every other descriptor closed,
 * optional rlimits and a privilege drop.  Errors in the child before exec
 * (chdir, setuid, exec itself) are reported back through a close-on-exec
 * pipe, so spawn_process() fails with the real errno and the step.
 */
#ifndef TEND_LIB_SPAWN_H
#define TEND_LIB_SPAWN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct spawn_opts {
    char *const *argv;      /* argv[0] searched in PATH when it has no '/' */
    char *const *envp;      /* complete environment */
    const char *cwd;        /* NULL: inherit */
    int out_fd;             /* stdout and stderr; -1: /dev/null */
    int in_fd;              /* stdin: a descriptor > 2, or 0 (the default) for /dev/null */
    bool has_user;
    uid_t uid;
    gid_t gid;
    const char *user;       /* for initgroups() */
    uint64_t rlimit_as;     /* 0: inherit */
    uint64_t rlimit_nofile; /* 0: inherit */
} spawn_opts;

/*
 * Returns 0 and the child's pid in *ret_pid (also its process group id),
 * or a negative errno; on failure, if ret_step is not NULL, it is set to a
 * static string naming the failed step ("fork", "chdir", "exec", ...).
 */
int spawn_process(const spawn_opts *o, pid_t *ret_pid, const char **ret_step);

/*
 * The same without waiting for the exec: fork() (the parent never waits
 * for the child to be scheduled, so a wave of services spawns at once on
 * a loaded machine), returning at once with the pid and, in *ret_errfd, a
 * non-blocking pipe that reaches end-of-file when the exec succeeded or
 * carries the failure (read it with spawn_read_exec_error()).  A failed
 * child exits 127 and must be reaped by the caller's reaper.
 */
int spawn_process_nowait(const spawn_opts *o, pid_t *ret_pid, int *ret_errfd);

/* Reads the outcome from such a pipe: 0 at end-of-file (exec succeeded),
 * a positive errno (with the step in *ret_step) when it failed, -EAGAIN
 * when nothing is known yet. */
int spawn_read_exec_error(int fd, const char **ret_step);

/* Resolves a user name or numeric uid; 0 or -errno (-ESRCH: no user). */
int spawn_lookup_user(const char *user, uid_t *ret_uid, gid_t *ret_gid);

/* Builds environ + overrides ("K=V", later wins) as a new vector. */
char **spawn_build_env(char *const *overrides);

#endif
