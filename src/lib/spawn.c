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
#include <poll.h>
#include <sys/socket.h>
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

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SPAWN_HAVE_VALGRIND_H 1
#endif
#endif

/* Valgrind runs only the clones that are a fork, a vfork or a thread; it
 * ends the process at any other, and runs a CLONE_VM | CLONE_VFORK one as
 * a fork: the child's report of a failed step would not reach us. */
static bool under_valgrind(void) {
#ifdef SPAWN_HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND)
        return true;
#endif
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

/* fork() and a close-on-exec pipe instead of a vfork that shares our
 * memory: under ThreadSanitizer, whose runtime cannot share its state with
 * a child in our address space (children hang), and under valgrind. */
static bool use_fork(void) {
#ifdef SPAWN_FORK_FALLBACK
    const bool always = true;
#else
    const bool always = false;
#endif
    static int v = -1;
    if (v < 0)
        v = always || under_valgrind();
    return v;
}

/* The child of use_fork(): blocks as vfork would, until the child has
 * exec'd (the pipe closes) or reported its failed step on it. */
static pid_t fork_child(child_args *a) {
    int p[2] = {-1, -1};
    if (pipe2(p, O_CLOEXEC) == 0)
        a->errfd = p[1];
    pid_t pid = fork();
    if (pid == 0) {
        if (p[0] >= 0)
            close(p[0]);
        _exit(child_main(a));
    }
    int fork_errno = errno;
    if (p[1] >= 0)
        close(p[1]);
    if (pid > 0 && p[0] >= 0) {
        int msg[2];
        ssize_t n;
        while ((n = read(p[0], msg, sizeof(msg))) < 0 && errno == EINTR)
            ;
        if (n == (ssize_t)sizeof(msg)) {
            a->step = msg[0];
            a->err = msg[1];
        }
    }
    if (p[0] >= 0)
        close(p[0]);
    errno = fork_errno;
    return pid;
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
    pid_t pid = use_fork() ? fork_child(&a)
                           : clone(child_main, (char *)stack + SPAWN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
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

/* ---- parked children ---- */

#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(SPAWN_FORK_FALLBACK)
#define SPAWN_CAN_PARK 1
#endif

#ifdef SPAWN_CAN_PARK
/*
 * Not instrumented: after its word a parked child runs beside the loop
 * thread, and a sanitizer runtime entered from it (a use-after-return
 * fake stack, a report) would use that thread's state.
 */
#if defined(__clang__)
#define PARKED_CODE __attribute__((no_sanitize("address", "undefined")))
#elif defined(__GNUC__)
#define PARKED_CODE __attribute__((no_sanitize_address, no_sanitize_undefined))
#else
#define PARKED_CODE
#endif

/*
 * A parked child shares tend's memory while tend runs on, so after it has
 * told tend it is parked it must not touch errno: that is the loop
 * thread's (the child runs with its TLS).  These go to the kernel
 * directly and return -errno.
 */
PARKED_CODE static inline long raw_syscall(long n, long a, long b, long c, long d) {
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
#else
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory", "cc");
    return x0;
#endif
}

#define PARK_PATH_MAX 4096
#define PARK_NAME_MAX (PARK_PATH_MAX + 256)
#define PARK_GATE_FD 3
#define PARK_STATUS_FD 4

/* At the start of the child's mapping; its stack grows down from the end. */
typedef struct park_args {
    child_args c;           /* parent and ngroups (o is not used) */
    char *const *argv;
    char *const *envp;
    const char *cwd;
    bool has_user;
    uid_t uid;
    gid_t gid;
    int gate_fd, status_fd; /* before the move to 3 and 4 */
    int out_fd, in_fd;
    uint64_t rlimit_as, rlimit_nofile;
    bool reset_slice;       /* the scheduler's default slice back (spawn.h) */
    int nice;
    gid_t groups[SPAWN_MAX_GROUPS];
    char path[PARK_PATH_MAX];   /* PATH, as execvp(3) searches it */
    char name[PARK_NAME_MAX];   /* a candidate file */
    char *sh_argv[];        /* argc + 2: /bin/sh, the file, argv[1..], NULL */
} park_args;

PARKED_CODE static size_t raw_strlen(const char *s) {
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

PARKED_CODE static bool has_slash(const char *s) {
    for (; *s; s++)
        if (*s == '/')
            return true;
    return false;
}

/* One candidate: exec it (check: only whether it could be), with
 * execvp(3)'s fallback of /bin/sh for a file without an exec format. */
PARKED_CODE static long try_file(park_args *a, const char *file, bool check) {
    if (check)
        return raw_syscall(SYS_faccessat, AT_FDCWD, (long)file, X_OK, 0);
    long r = raw_syscall(SYS_execve, (long)file, (long)a->argv, (long)a->envp, 0);
    if (r == -ENOEXEC) {
        size_t i = 0;
        a->sh_argv[i++] = (char *)"/bin/sh";
        a->sh_argv[i++] = (char *)file;
        for (size_t k = 1; a->argv[k]; k++)
            a->sh_argv[i++] = a->argv[k];
        a->sh_argv[i] = NULL;
        (void)raw_syscall(SYS_execve, (long)"/bin/sh", (long)a->sh_argv, (long)a->envp, 0);
    }
    return r;
}

/* execvp(3)'s search (glibc's rules: an empty PATH entry is the current
 * directory; EACCES is remembered and the search goes on; errors other
 * than "not there" end it), with raw system calls.  Returns -errno. */
PARKED_CODE static long search_exec(park_args *a, bool check) {
    const char *file = a->argv[0];
    if (has_slash(file))
        return try_file(a, file, check);
    size_t flen = raw_strlen(file);
    bool eacces = false;
    for (const char *p = a->path;;) {
        const char *end = p;
        while (*end && *end != ':')
            end++;
        size_t dl = (size_t)(end - p);
        if (dl + 1 + flen + 1 <= sizeof(a->name)) {
            size_t o = 0;
            for (size_t i = 0; i < dl; i++)
                a->name[o++] = p[i];
            if (dl > 0)
                a->name[o++] = '/';
            for (size_t i = 0; i <= flen; i++)
                a->name[o++] = file[i];
            long r = try_file(a, a->name, check);
            if (check && r == 0)
                return 0;
            switch (-r) {
            case EACCES: eacces = true; break;
            case ENOENT: case ESTALE: case ENOTDIR: case ENODEV: case ETIMEDOUT: break;
            default: return r;
            }
        }
        if (!*end)
            break;
        p = end + 1;
    }
    return eacces ? -EACCES : -ENOENT;
}

/* A failed step: told on the status pipe (the fd it has then), exit. */
PARKED_CODE static void park_fail(park_args *a, int step, long err) {
    int msg[2] = {step, (int)-err};
    (void)raw_syscall(SYS_write, a->status_fd, (long)msg, sizeof(msg), 0);
    (void)raw_syscall(SYS_exit_group, 127, 0, 0, 0);
}

/* dup2(2) with raw calls: from == to keeps it, without close-on-exec. */
PARKED_CODE static long raw_dup_to(int from, int to) {
    if (from == to)
        return raw_syscall(SYS_fcntl, to, F_SETFD, 0, 0);
    return raw_syscall(SYS_dup3, from, to, 0, 0);
}

PARKED_CODE static long raw_setrlimit(int resource, uint64_t v) {
    uint64_t rl[2] = {v, v}; /* struct rlimit64 */
    return raw_syscall(SYS_prlimit64, 0, resource, (long)rl, 0);
}

/*
 * The child.  It runs beside tend from the start (tend does not wait for
 * it), in tend's memory and with the loop thread's TLS: raw system calls
 * only, and nothing written but its own mapping.  First what does not
 * depend on the moment of the exec, then its word ("parked", or the step
 * that failed), then the wait.  Signals stay blocked until the exec.
 */
PARKED_CODE static int park_main(void *arg) {
    park_args *a = arg;
    long r;
    if ((r = raw_syscall(SYS_setpgid, 0, 0, 0, 0)) < 0)
        park_fail(a, STEP_SETPGID, r);
    if ((r = raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0)) < 0)
        park_fail(a, STEP_PDEATHSIG, r);
    if (raw_syscall(SYS_getppid, 0, 0, 0, 0) != a->c.parent)
        (void)raw_syscall(SYS_exit_group, 127, 0, 0, 0);
    /* Default dispositions: the kernel's struct sigaction, all zero. */
    uint64_t dfl[4] = {0, 0, 0, 0};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)raw_syscall(SYS_rt_sigaction, sig, (long)dfl, 0, 8);
    if (a->reset_slice) {
        sched_attr_v0 at = {.size = sizeof(at), .policy = SCHED_OTHER, .nice = a->nice};
        (void)raw_syscall(SYS_sched_setattr, 0, (long)&at, 0, 0);
    }
    (void)raw_syscall(SYS_prctl, PR_SET_NAME, (long)"tend-parked", 0, 0);
    long devnull = raw_syscall(SYS_openat, AT_FDCWD, (long)"/dev/null", O_RDWR | O_CLOEXEC, 0);
    if (devnull < 0)
        park_fail(a, STEP_DUP, devnull);
    int out = a->out_fd >= 0 ? a->out_fd : (int)devnull;
    int in = a->in_fd > 2 ? a->in_fd : (int)devnull;
    /* The gate and the status pipe become 3 and 4 (close-on-exec), by way
     * of numbers above every other so that nothing overwrites them. */
    long g = raw_syscall(SYS_fcntl, a->gate_fd, F_DUPFD_CLOEXEC, 10, 0);
    long st = raw_syscall(SYS_fcntl, a->status_fd, F_DUPFD_CLOEXEC, 10, 0);
    if (st >= 0)
        a->status_fd = (int)st;
    if (g < 0 || st < 0)
        park_fail(a, STEP_DUP, g < 0 ? g : st);
    if ((r = raw_dup_to(in, 0)) < 0 || (r = raw_dup_to(out, 1)) < 0 || (r = raw_dup_to(out, 2)) < 0)
        park_fail(a, STEP_DUP, r);
    if ((r = raw_syscall(SYS_dup3, st, PARK_STATUS_FD, O_CLOEXEC, 0)) < 0)
        park_fail(a, STEP_DUP, r);
    a->status_fd = PARK_STATUS_FD;
    if ((r = raw_syscall(SYS_dup3, g, PARK_GATE_FD, O_CLOEXEC, 0)) < 0)
        park_fail(a, STEP_DUP, r);
    a->gate_fd = PARK_GATE_FD;
#ifdef SYS_close_range
    if (raw_syscall(SYS_close_range, PARK_STATUS_FD + 1, ~0U, 0, 0) < 0)
#endif
    {
        uint64_t lim[2] = {1024, 1024};
        (void)raw_syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, (long)lim);
        for (uint64_t fd = PARK_STATUS_FD + 1; fd < lim[0] && fd < 65536; fd++)
            (void)raw_syscall(SYS_close, (long)fd, 0, 0, 0);
    }
    if (a->rlimit_as && (r = raw_setrlimit(RLIMIT_AS, a->rlimit_as)) < 0)
        park_fail(a, STEP_RLIMIT, r);
    if (a->rlimit_nofile && (r = raw_setrlimit(RLIMIT_NOFILE, a->rlimit_nofile)) < 0)
        park_fail(a, STEP_RLIMIT, r);
    /* The directory and the command must be there now; both are looked
     * up again at the exec, which is what counts. */
    if (a->cwd && (r = raw_syscall(SYS_chdir, (long)a->cwd, 0, 0, 0)) < 0)
        park_fail(a, STEP_CHDIR, r);
    if ((r = search_exec(a, true)) < 0)
        park_fail(a, STEP_EXEC, r);
    int parked[2] = {STEP_NONE, 0};
    if (raw_syscall(SYS_write, a->status_fd, (long)parked, sizeof(parked), 0) != (long)sizeof(parked))
        (void)raw_syscall(SYS_exit_group, 127, 0, 0, 0);

    /* Parked: from here on raw system calls only. */
    char go = 0;
    long n;
    do
        n = raw_syscall(SYS_read, a->gate_fd, (long)&go, 1, 0);
    while (n == -EINTR);
    if (n != 1)
        (void)raw_syscall(SYS_exit_group, 0, 0, 0, 0); /* cancelled, or tend is gone */
    if (a->cwd && (r = raw_syscall(SYS_chdir, (long)a->cwd, 0, 0, 0)) < 0)
        park_fail(a, STEP_CHDIR, r);
    if (a->has_user) {
        static const int steps[3] = {STEP_SETGROUPS, STEP_SETGID, STEP_SETUID};
        long rs[3];
        rs[0] = raw_syscall(SYS_setgroups, a->c.ngroups, (long)a->groups, 0, 0);
        rs[1] = rs[0] < 0 ? 0 : raw_syscall(SYS_setgid, a->gid, 0, 0, 0);
        rs[2] = rs[0] < 0 || rs[1] < 0 ? 0 : raw_syscall(SYS_setuid, a->uid, 0, 0, 0);
        for (int i = 0; i < 3; i++)
            if (rs[i] < 0)
                park_fail(a, steps[i], rs[i]);
    }
    uint64_t none = 0;
    (void)raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof(none));
    park_fail(a, STEP_EXEC, search_exec(a, false));
    return 127;
}
#endif /* SPAWN_CAN_PARK */

bool spawn_can_park(void) {
#ifdef SPAWN_CAN_PARK
    return !under_valgrind();
#else
    return false;
#endif
}

/*
 * The mappings of children that have exec'd are kept for the next ones
 * (a wave parks and releases ten at a time): an munmap of pages a child
 * touched flushes the TLBs of every CPU tend ran on, an interrupt to each
 * that a virtual machine pays dearly for.
 */
#define PARK_POOL 16
static void *park_pool[PARK_POOL];
static size_t park_pool_n;
static pthread_mutex_t park_pool_lock = PTHREAD_MUTEX_INITIALIZER;

#ifdef SPAWN_CAN_PARK
static void *park_mem_get(void) {
    void *m = NULL;
    pthread_mutex_lock(&park_pool_lock);
    if (park_pool_n > 0)
        m = park_pool[--park_pool_n];
    pthread_mutex_unlock(&park_pool_lock);
    if (m)
        return m;
    m = mmap(NULL, SPAWN_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}
#endif

static void park_mem_put(void *m) {
    /* Under AddressSanitizer the frames the child left stay poisoned. */
    SPAWN_UNPOISON(m, SPAWN_STACK);
    pthread_mutex_lock(&park_pool_lock);
    bool kept = park_pool_n < PARK_POOL;
    if (kept)
        park_pool[park_pool_n++] = m;
    pthread_mutex_unlock(&park_pool_lock);
    if (!kept)
        munmap(m, SPAWN_STACK);
}

static void parked_clear(spawn_parked *p) {
    if (p->gate_fd >= 0)
        close(p->gate_fd);
    if (p->status_fd >= 0)
        close(p->status_fd);
    if (p->mem)
        park_mem_put(p->mem);
    *p = (spawn_parked){.pid = 0, .gate_fd = -1, .status_fd = -1};
}

int spawn_park(const spawn_opts *o, spawn_parked *p, const char **ret_step) {
    *p = (spawn_parked){.pid = 0, .gate_fd = -1, .status_fd = -1};
    if (ret_step)
        *ret_step = "park";
#ifndef SPAWN_CAN_PARK
    (void)o;
    return -ENOTSUP;
#else
    if (!spawn_can_park())
        return -ENOTSUP;
    if (!o->argv || !o->argv[0])
        return -EINVAL;
    size_t argc = 0;
    while (o->argv[argc])
        argc++;
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    size_t need = sizeof(park_args) + (argc + 2) * sizeof(char *);
    if (strlen(path) >= PARK_PATH_MAX || need > SPAWN_STACK / 2)
        return -E2BIG;
    /* A non-root tend cannot change users; the direct spawn says why. */
    if (o->has_user && geteuid() != 0)
        return -EPERM;
    int gate[2], status[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gate) < 0)
        return -errno;
    if (pipe2(status, O_CLOEXEC | O_NONBLOCK) < 0) {
        int e = errno;
        close(gate[0]);
        close(gate[1]);
        return -e;
    }
    p->gate_fd = gate[0];
    p->status_fd = status[0];
    p->mem_size = SPAWN_STACK;
    p->mem = park_mem_get();
    if (!p->mem) {
        close(gate[1]);
        close(status[1]);
        parked_clear(p);
        return -ENOMEM;
    }
    park_args *a = p->mem;
    memset(a, 0, sizeof(*a));
    a->c = (child_args){.parent = getpid(), .errfd = -1};
    a->out_fd = o->out_fd;
    a->in_fd = o->in_fd;
    a->rlimit_as = o->rlimit_as;
    a->rlimit_nofile = o->rlimit_nofile;
    a->reset_slice = short_slice;
    a->nice = getpriority(PRIO_PROCESS, 0);
    a->argv = o->argv;
    a->envp = o->envp;
    a->cwd = o->cwd;
    a->has_user = o->has_user;
    a->uid = o->uid;
    a->gid = o->gid;
    a->gate_fd = gate[1];
    a->status_fd = status[1];
    memcpy(a->path, path, strlen(path) + 1);
    if (o->has_user) {
        int ng = SPAWN_MAX_GROUPS;
        if (getgrouplist(o->user, o->gid, a->groups, &ng) < 0)
            ng = SPAWN_MAX_GROUPS;
        a->c.ngroups = ng;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int saved_errno = errno;
    pid_t pid = clone(park_main, (char *)p->mem + p->mem_size, CLONE_VM | SIGCHLD, a);
    int clone_errno = errno;
    errno = saved_errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(gate[1]);
    close(status[1]);
    if (pid < 0) {
        parked_clear(p);
        if (ret_step)
            *ret_step = "clone";
        return -clone_errno;
    }
    (void)setpgid(pid, pid);
    p->pid = pid;
    return 0;
#endif
}

static int parked_word(spawn_parked *p);

int spawn_parked_wait(spawn_parked *p, const char **ret_step) {
    int r = parked_word(p);
    if (r < 0 && ret_step)
        *ret_step = step_names[p->failed_step];
    return r;
}

/* The child's word after its setup: 0 (parked) or -errno with the step
 * in p->failed_step; waits for it (a few system calls of the child's). */
static int parked_word(spawn_parked *p) {
    if (p->parked_seen)
        return 0;
    for (;;) {
        int msg[2];
        ssize_t n = read(p->status_fd, msg, sizeof(msg));
        if (n == (ssize_t)sizeof(msg)) {
            if (msg[0] == STEP_NONE) {
                p->parked_seen = true;
                return 0;
            }
            p->failed_step = msg[0] > 0 && msg[0] < (int)ELEMENTSOF(step_names) ? msg[0] : STEP_EXEC;
            p->failed_err = msg[1] > 0 ? msg[1] : EIO;
            return -p->failed_err;
        }
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            p->failed_step = STEP_EXEC;
            p->failed_err = n == 0 ? ECHILD : errno;
            return -p->failed_err; /* it ended before its word */
        }
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = p->status_fd, .events = POLLIN};
            (void)poll(&pfd, 1, -1);
        }
    }
}

int spawn_release(spawn_parked *p, const char **ret_step) {
    if (p->pid <= 0 || p->gate_fd < 0)
        return -EINVAL;
    int r = parked_word(p);
    if (r < 0) {
        if (ret_step)
            *ret_step = step_names[p->failed_step];
        return r;
    }
    char go = 1;
    ssize_t n;
    while ((n = send(p->gate_fd, &go, 1, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    int e = n == 1 ? 0 : -errno;
    close(p->gate_fd);
    p->gate_fd = -1;
    if (e < 0 && ret_step)
        *ret_step = "release";
    return e;
}

int spawn_parked_result(spawn_parked *p, const char **ret_step, int *ret_err) {
    for (;;) {
        int msg[2];
        ssize_t n = read(p->status_fd, msg, sizeof(msg));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
        if (n == 0) {
            /* The child has exec'd or ended: it no longer uses our memory. */
            bool failed = p->failed_step != STEP_NONE;
            if (ret_step)
                *ret_step = failed && p->failed_step < (int)ELEMENTSOF(step_names) ? step_names[p->failed_step] : NULL;
            if (ret_err)
                *ret_err = failed ? p->failed_err : 0;
            return failed ? 2 : 1;
        }
        if (n == (ssize_t)sizeof(msg) && msg[0] > STEP_NONE) {
            p->failed_step = msg[0];
            p->failed_err = msg[1] > 0 ? msg[1] : EIO;
        }
    }
}

void spawn_parked_cancel(spawn_parked *p) {
    if (p->pid > 0) {
        (void)kill(p->pid, SIGKILL);
        int status;
        while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    spawn_parked_forget(p);
}

void spawn_parked_forget(spawn_parked *p) {
    parked_clear(p);
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
