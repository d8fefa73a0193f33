/* guard.c - see guard.h. */
#include "guard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdutil.h"

#define GUARD_MAX_GROUPS 65536

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
    _exit(0);
}

int guard_start(guard *g) {
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
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_IGN);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        prctl(PR_SET_NAME, "tend-guard");
        if (p[0] != 3) {
            dup2(p[0], 3);
            close(p[0]);
        }
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        close_all_fds(4);
        if (chdir("/") < 0) { /* stay where we are */ }
        guard_main(3);
    }
    close(p[0]);
    g->pid = pid;
    g->fd = p[1];
    return 0;
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
