/* guard.c - see guard.h. */
#include "guard.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdutil.h"

#define GUARD_MAX_GROUPS 65536
#define GUARD_NAME "tend-guard"
/* The pipe's read end in the guard. */
#define GUARD_FD 3

static guard prestarted = {.pid = -1, .fd = -1};

static void guard_main(int rfd) {
    pid_t *groups = calloc(GUARD_MAX_GROUPS, sizeof(pid_t));
    size_t n = 0;
    char buf[4096], line[32];
    size_t ll = 0;
    int clean = 0;

    for (;;) {
        ssize_t r = read(rfd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++) {
            char c = buf[i];
            if (c != '\n') {
                if (ll < sizeof(line) - 1)
                    line[ll++] = c;
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            if (strcmp(line, "bye") == 0) {
                clean = 1;
                continue;
            }
            pid_t pg = (pid_t)strtol(line + 1, NULL, 10);
            if (pg <= 1 || !groups)
                continue;
            if (line[0] == '+' && n < GUARD_MAX_GROUPS) {
                groups[n++] = pg;
            } else if (line[0] == '-') {
                for (size_t k = 0; k < n; k++)
                    if (groups[k] == pg) {
                        groups[k] = groups[--n];
                        break;
                    }
            }
        }
    }
    if (!clean)
        for (size_t k = 0; k < n; k++)
            kill(-groups[k], SIGKILL);
    free(groups);
    _exit(0);
}

/* sched_setattr(2)'s argument, first version (glibc 2.36 has no
 * wrapper). */
typedef struct guard_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
} guard_sched_attr;

/* The guard's process: fd GUARD_FD is the pipe, 0-2 /dev/null. */
static void guard_setup(void) {
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_NAME, GUARD_NAME);
    /* SCHED_BATCH, with the default time slice rather than tend's short
     * one: the guard wakes for every group tend announces, and such a
     * wake-up must not preempt tend's loop or a service that is starting
     * (it did, by ~0.7 ms at a time, on a 2-core machine).  It still gets
     * its fair share of the CPU when it has work to do. */
#ifdef SYS_sched_setattr
    guard_sched_attr a = {.size = sizeof(a), .policy = SCHED_BATCH};
    (void)syscall(SYS_sched_setattr, 0, &a, 0);
#endif
    if (chdir("/") < 0) { /* stay where we are */ }
}


static int start(guard *g) {
    int p[2];
    g->pid = -1;
    g->fd = -1;
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    if (pid == 0) {
        close(p[1]);
        setsid();
        if (p[0] != GUARD_FD) {
            dup2(p[0], GUARD_FD);
            close(p[0]);
        }
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        close_all_fds(GUARD_FD + 1);
        guard_setup();
        guard_main(GUARD_FD);
    }
    close(p[0]);
    g->pid = pid;
    g->fd = p[1];
    return 0;
}

void guard_prestart(void) {
    if (prestarted.fd < 0)
        (void)start(&prestarted);
}

pid_t guard_prestarted_pid(void) { return prestarted.fd >= 0 ? prestarted.pid : -1; }

int guard_start(guard *g) {
    if (prestarted.fd >= 0) {
        *g = prestarted;
        prestarted = (guard){.pid = -1, .fd = -1};
        return 0;
    }
    return start(g);
}

static void guard_send(guard *g, char op, pid_t pgid) {
    if (g->fd < 0)
        return;
    char line[32];
    int n = snprintf(line, sizeof(line), "%c%d\n", op, (int)pgid);
    (void)write_all(g->fd, line, (size_t)n);
}

void guard_add(guard *g, pid_t pgid) { guard_send(g, '+', pgid); }
void guard_remove(guard *g, pid_t pgid) { guard_send(g, '-', pgid); }

void guard_stop(guard *g) {
    if (g->fd < 0)
        return;
    (void)write_all(g->fd, "bye\n", 4);
    close(g->fd);
    g->fd = -1;
    /* The reaper may have collected it already; ECHILD is fine. */
    if (g->pid > 0)
        while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    g->pid = -1;
}
