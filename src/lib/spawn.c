/* spawn.c - see spawn.h. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "fdutil.h"
#include "macros.h"
#include "strv.h"

extern char **environ;

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SPAWN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define SPAWN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#endif
#endif
#ifndef SPAWN_UNPOISON
#define SPAWN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if defined(__SANITIZE_THREAD__)
#define SPAWN_FORK_FALLBACK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPAWN_FORK_FALLBACK 1
#endif
#endif

/* sched_setattr(2)'s argument, first version (48 bytes); glibc 2.36 has
 * no wrapper. */
typedef struct sched_attr_v0 {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
} sched_attr_v0;

static bool short_slice;

static int set_slice(uint64_t ns) {
#ifdef SYS_sched_setattr
    sched_attr_v0 a = {.size = sizeof(a), .policy = SCHED_OTHER, .nice = getpriority(PRIO_PROCESS, 0),
                       .runtime = ns};
    return (int)syscall(SYS_sched_setattr, 0, &a, 0);
#else
    (void)ns;
    errno = ENOSYS;
    return -1;
#endif
}

int spawn_request_short_slice(void) {
    int nice = getpriority(PRIO_PROCESS, 0);
    sched_attr_v0 a = {.size = sizeof(a), .policy = SCHED_OTHER, .nice = nice, .runtime = 100 * 1000};
#ifdef SYS_sched_setattr
    if (sched_getscheduler(0) != SCHED_OTHER)
        return -EPERM; /* a real-time or batch policy was chosen on purpose: keep it */
    if (syscall(SYS_sched_setattr, 0, &a, 0) < 0)
        return -errno;
    short_slice = true;
    return 0;
#else
    (void)a;
    return -ENOSYS;
#endif
}

enum {
    STEP_NONE, STEP_SETPGID, STEP_PDEATHSIG, STEP_DUP, STEP_RLIMIT, STEP_CHDIR,
    STEP_SETGID, STEP_SETGROUPS, STEP_SETUID, STEP_EXEC,
};
static const char *const step_names[] = {
    "", "setpgid", "prctl", "dup2", "setrlimit", "chdir", "setgid", "setgroups", "setuid", "exec",
};

/*
 * The child runs in tend's address space (CLONE_VM | CLONE_VFORK, as
 * glibc's posix_spawn does) on a stack of its own, until it execs: no page
 * tables are copied, and the parent resumes the moment exec has replaced
 * the child (or it failed).  So: only system calls here, no malloc, no
 * locks, nothing written but the result fields of `args`.
 */
typedef struct child_args {
    const spawn_opts *o;
    pid_t parent;
    const gid_t *groups;
    int ngroups;
    int errfd;              /* fork fallback only: failures are written here */
    int step;               /* written by the child on failure */
    int err;
} child_args;

static void child_fail(child_args *a, int step) {
    a->err = errno;
    a->step = step;
    if (a->errfd >= 0) {
        int msg[2] = {step, a->err};
        (void)!write(a->errfd, msg, sizeof(msg));
    }
    _exit(127);
}

static int child_main(void *arg) {
    child_args *a = arg;
    const spawn_opts *o = a->o;
    if (setpgid(0, 0) < 0)
        child_fail(a, STEP_SETPGID);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(a, STEP_PDEATHSIG);
    /* The parent may have died before prctl took effect. */
    if (getppid() != a->parent)
        _exit(127);

    /* Default dispositions first, then unblock (the parent blocked every
     * signal around clone, so no tend handler can run in the child). */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* The service gets the scheduler's default time slice, not tend's. */
    if (short_slice)
        (void)set_slice(0);

    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int out = o->out_fd >= 0 ? o->out_fd : devnull;
    int in = o->in_fd > 2 ? o->in_fd : devnull;
    if (devnull < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        child_fail(a, STEP_DUP);
    if (a->errfd >= 0) {
        /* Keep the (close-on-exec) error pipe, as fd 3, past the sweep. */
        if (a->errfd != 3 && dup3(a->errfd, 3, O_CLOEXEC) < 0)
            child_fail(a, STEP_DUP);
        a->errfd = 3;
        close_all_fds(4);
    } else {
        close_all_fds(3);
    }

    if (o->rlimit_as) {
        struct rlimit rl = {o->rlimit_as, o->rlimit_as};
        if (setrlimit(RLIMIT_AS, &rl) < 0)
            child_fail(a, STEP_RLIMIT);
    }
    if (o->rlimit_nofile) {
        struct rlimit rl = {o->rlimit_nofile, o->rlimit_nofile};
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            child_fail(a, STEP_RLIMIT);
    }
    if (o->cwd && chdir(o->cwd) < 0)
        child_fail(a, STEP_CHDIR);
    if (o->has_user) {
        if (setgroups((size_t)a->ngroups, a->groups) < 0)
            child_fail(a, STEP_SETGROUPS);
        if (setgid(o->gid) < 0)
            child_fail(a, STEP_SETGID);
        if (setuid(o->uid) < 0)
            child_fail(a, STEP_SETUID);
    }
    execvpe(o->argv[0], o->argv, o->envp);
    child_fail(a, STEP_EXEC);
    return 127;
}

#define SPAWN_STACK (256 * 1024)
#define SPAWN_MAX_GROUPS 256

/*
 * One child stack per thread, kept: the parent is suspended while the
 * child uses it, so it is free again when clone() returns.  Unmapped when
 * the thread ends (libtend runs supervisors on threads of their own).
 */
static pthread_key_t stack_key;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;
static bool stack_key_ok;

static void stack_free(void *p) { munmap(p, SPAWN_STACK); }
static void stack_key_init(void) { stack_key_ok = pthread_key_create(&stack_key, stack_free) == 0; }

/* *ret_temporary: the caller unmaps it after use (it could not be kept). */
static void *child_stack(bool *ret_temporary) {
    pthread_once(&stack_once, stack_key_init);
    *ret_temporary = false;
    void *st = stack_key_ok ? pthread_getspecific(stack_key) : NULL;
    if (st)
        return st;
    st = mmap(NULL, SPAWN_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (st == MAP_FAILED)
        return NULL;
    if (!stack_key_ok || pthread_setspecific(stack_key, st) != 0)
        *ret_temporary = true;
    return st;
}

int spawn_process(const spawn_opts *o, pid_t *ret_pid, const char **ret_step) {
    if (!o->argv || !o->argv[0])
        return -EINVAL;
    gid_t groups[SPAWN_MAX_GROUPS];
    int ngroups = SPAWN_MAX_GROUPS;
    if (o->has_user) {
        /* Resolved here: NSS lookups allocate, which the child must not. */
        if (getgrouplist(o->user, o->gid, groups, &ngroups) < 0)
            ngroups = SPAWN_MAX_GROUPS; /* truncated: the first ones */
    } else {
        ngroups = 0;
    }
    bool temporary;
    void *stack = child_stack(&temporary);
    if (!stack) {
        if (ret_step)
            *ret_step = "mmap";
        return -ENOMEM;
    }
    /* A child leaves by exec or _exit, never returning: under
     * AddressSanitizer the redzones of its frames would stay poisoned in
     * the reused stack. */
    SPAWN_UNPOISON(stack, SPAWN_STACK);
    child_args a = {.o = o, .parent = getpid(), .groups = groups, .ngroups = ngroups, .errfd = -1};
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int saved_errno = errno;
#ifdef SPAWN_FORK_FALLBACK
    /* ThreadSanitizer's runtime cannot share its state with a child that
     * runs in our address space (children hang): fork there, and learn
     * the outcome from a close-on-exec pipe, blocking as vfork would. */
    int p[2] = {-1, -1};
    if (pipe2(p, O_CLOEXEC) == 0)
        a.errfd = p[1];
    pid_t pid = fork();
    if (pid == 0) {
        if (p[0] >= 0)
            close(p[0]);
        _exit(child_main(&a));
    }
    if (p[1] >= 0)
        close(p[1]);
    if (pid > 0 && p[0] >= 0) {
        int msg[2];
        ssize_t n;
        while ((n = read(p[0], msg, sizeof(msg))) < 0 && errno == EINTR)
            ;
        if (n == (ssize_t)sizeof(msg)) {
            a.step = msg[0];
            a.err = msg[1];
        }
    }
    if (p[0] >= 0)
        close(p[0]);
#else
    pid_t pid = clone(child_main, (char *)stack + SPAWN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
#endif
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved_errno;
    if (temporary)
        munmap(stack, SPAWN_STACK);
    if (pid < 0) {
        if (ret_step)
            *ret_step = "clone";
        return -clone_errno;
    }
    /* Also set the group from the parent side, closing the race with a
     * killpg() issued before the child ran (as the shells do). */
    (void)setpgid(pid, pid);
    if (a.step != STEP_NONE) {
        /* The child failed before exec and has exited with 127: collect it
         * here (we run on the loop thread, so the reaper cannot race us). */
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (ret_step)
            *ret_step = a.step < (int)ELEMENTSOF(step_names) ? step_names[a.step] : "?";
        return a.err > 0 ? -a.err : -EIO;
    }
    *ret_pid = pid;
    return 0;
}

int spawn_lookup_user(const char *user, uid_t *ret_uid, gid_t *ret_gid) {
    struct passwd pw, *res = NULL;
    char buf[4096];
    int r = getpwnam_r(user, &pw, buf, sizeof(buf), &res);
    if (r == 0 && !res) {
        char *end;
        errno = 0;
        unsigned long uid = strtoul(user, &end, 10);
        if (errno || *end || end == user)
            return -ESRCH;
        r = getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &res);
        if (r == 0 && !res) {
            *ret_uid = (uid_t)uid;
            *ret_gid = (gid_t)uid;
            return 0;
        }
    }
    if (r != 0)
        return -r;
    *ret_uid = pw.pw_uid;
    *ret_gid = pw.pw_gid;
    return 0;
}

char **spawn_build_env(char *const *overrides) {
    char **env = strv_copy(environ);
    if (!env)
        return NULL;
    for (size_t i = 0; overrides && overrides[i]; i++) {
        const char *eq = strchr(overrides[i], '=');
        if (!eq)
            continue;
        char key[256];
        size_t kl = (size_t)(eq - overrides[i]);
        if (kl >= sizeof(key))
            continue;
        memcpy(key, overrides[i], kl);
        key[kl] = '\0';
        if (strv_env_set(&env, key, eq + 1) < 0) {
            strv_free(env);
            return NULL;
        }
    }
    return env;
}
