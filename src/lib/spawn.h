/*
 * spawn.h - fork/exec of a service or probe process.
 *
 * The child gets its own process group (so a whole service, grandchildren
 * included, can be signalled at once), SIGKILL as its parent-death signal,
 * default signal dispositions and an empty signal mask, stdin from
 * /dev/null, the given stdout/stderr, every other descriptor closed,
 * optional rlimits and a privilege drop.  The child is a CLONE_VM |
 * CLONE_VFORK clone (as glibc's posix_spawn): no page tables are copied,
 * and the parent resumes once the child has exec'd or failed, so errors
 * before exec (chdir, setuid, exec itself) are returned with the real
 * errno and the step.
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
 * Parked children: a service whose dependencies are about to be met is
 * cloned ahead (CLONE_VM, as above, but without CLONE_VFORK) and waits
 * before its exec, so that when it is released the spawn costs tend one
 * write, and the execs of a whole wave run at once on every CPU instead
 * of one after another.
 *
 spawn_park() returns at once (a clone, ~50 us); the child then does what
 * does not depend on the moment of the exec (process group, parent-death
 * signal, signal dispositions, descriptors, rlimits), checks that the
 * directory and the command are there, says so on its status pipe and
 * waits with every signal blocked.  It runs beside the caller in our
 * memory and with the calling thread's errno, so it makes raw system
 * calls only.  On release it changes to cwd, changes user, unblocks
 * signals and execs, searching PATH as execvp(3) does; each of these is
 * done at that moment, so a directory or a binary replaced meanwhile (a
 * deploy switching a symlink) is the one used.  o->argv, o->envp and
 * o->cwd must stay valid until the child has exec'd or is cancelled; the
 * rest of *o is used before spawn_park() returns.
 *
 * -ENOTSUP where children cannot be parked (see spawn_can_park()), and
 * any other failure means: spawn it directly when it is due, which
 * reports the real error then.  A failure of the child's setup is told by
 * spawn_release(), with the same meaning.
 */
typedef struct spawn_parked {
    pid_t pid;              /* also its process group; 0: none */
    int gate_fd;            /* one byte releases it; closed: it exits */
    int status_fd;          /* non-blocking: EOF once exec'd, else {step, errno} first */
    int failed_step, failed_err;
    bool parked_seen;       /* its word after the setup has been read */
    void *mem;              /* its arguments and stack, in our memory */
    size_t mem_size;
} spawn_parked;

bool spawn_can_park(void);
int spawn_park(const spawn_opts *o, spawn_parked *p, const char **ret_step);
/* Waits for its word after the setup (normally there long since), then
 * lets it exec; 0, or -errno with *ret_step: the setup failed or the child
 * is gone (cancel it, and spawn directly). */
int spawn_release(spawn_parked *p, const char **ret_step);
/* Waits for that word only: 0 once it is parked, or -errno and *ret_step. */
int spawn_parked_wait(spawn_parked *p, const char **ret_step);
/*
 * After the release, reads status_fd (non-blocking): 0 while the child
 * has not exec'd yet; 1 once it has; 2 when a step failed (*ret_step,
 * *ret_err; the child exits with 127); -errno on a read error.  After 1
 * or 2 the child no longer uses our memory: spawn_parked_forget() frees
 * it (once nothing polls status_fd any more).
 */
int spawn_parked_result(spawn_parked *p, const char **ret_step, int *ret_err);
/* SIGKILL, collect it (the caller must no longer watch it), free. */
void spawn_parked_cancel(spawn_parked *p);
/* Frees what is left of a child already collected. */
void spawn_parked_forget(spawn_parked *p);

/*
 * Asks the scheduler for a short time slice (100 us) for the calling
 * thread: sched_setattr(2) with sched_runtime for SCHED_OTHER, Linux 6.12
 * and later, no privilege needed; older kernels accept and ignore it.
 * The thread's CPU share is unchanged; what changes is that, when woken,
 * it runs at once instead of after the running task's slice (up to a few
 * ms).  That matters to the loop thread right after spawning: the vfork
 * parent is woken when the child execs, while the child goes on loading
 * on the same CPU.  Children get the default slice back before exec.
 * 0 or -errno.
 */
int spawn_request_short_slice(void);

/* Resolves a user name or numeric uid; 0 or -errno (-ESRCH: no user). */
int spawn_lookup_user(const char *user, uid_t *ret_uid, gid_t *ret_gid);

/* Builds environ + overrides ("K=V", later wins) as a new vector. */
char **spawn_build_env(char *const *overrides);

#endif
