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
#include <sys/wait.h>
#include <unistd.h>

#include "fdutil.h"
#include "macros.h"
#include "strv.h"

extern char **environ;

enum {
    STEP_NONE, STEP_SETPGID, STEP_PDEATHSIG, STEP_DUP, STEP_RLIMIT, STEP_CHDIR,
    STEP_SETGID, STEP_INITGROUPS, STEP_SETUID, STEP_EXEC,
};
static const char *const step_names[] = {
    "", "setpgid", "prctl", "dup2", "setrlimit", "chdir", "setgid", "initgroups", "setuid", "exec",
};

/* Only async-signal-safe calls between fork and exec. */
static void child_fail(int fd, int step) {
    int msg[2] = {step, errno};
    (void)!write(fd, msg, sizeof(msg));
    _exit(127);
}

static void child(const spawn_opts *o, int errfd, pid_t parent) {
    if (setpgid(0, 0) < 0)
        child_fail(errfd, STEP_SETPGID);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(errfd, STEP_PDEATHSIG);
    /* The parent may have died between fork and prctl. */
    if (getppid() != parent)
        _exit(127);

    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);

    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int out = o->out_fd >= 0 ? o->out_fd : devnull;
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        child_fail(errfd, STEP_DUP);
    /* Keep errfd (close-on-exec) above 2 while closing the rest. */
    if (errfd < 3) {
        int e = fcntl(errfd, F_DUPFD_CLOEXEC, 3);
        if (e < 0)
            child_fail(errfd, STEP_DUP);
        errfd = e;
    }
    if (errfd != 3) {
        if (dup3(errfd, 3, O_CLOEXEC) < 0)
            child_fail(errfd, STEP_DUP);
        errfd = 3;
    }
    close_all_fds(4);

    if (o->rlimit_as) {
        struct rlimit rl = {o->rlimit_as, o->rlimit_as};
        if (setrlimit(RLIMIT_AS, &rl) < 0)
            child_fail(errfd, STEP_RLIMIT);
    }
    if (o->rlimit_nofile) {
        struct rlimit rl = {o->rlimit_nofile, o->rlimit_nofile};
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            child_fail(errfd, STEP_RLIMIT);
    }
    if (o->cwd && chdir(o->cwd) < 0)
        child_fail(errfd, STEP_CHDIR);
    if (o->has_user) {
        if (setgid(o->gid) < 0)
            child_fail(errfd, STEP_SETGID);
        if (initgroups(o->user, o->gid) < 0)
            child_fail(errfd, STEP_INITGROUPS);
        if (setuid(o->uid) < 0)
            child_fail(errfd, STEP_SETUID);
    }
    execvpe(o->argv[0], o->argv, o->envp);
    child_fail(errfd, STEP_EXEC);
}

int spawn_process(const spawn_opts *o, pid_t *ret_pid, const char **ret_step) {
    int pipefd[2];
    if (!o->argv || !o->argv[0])
        return -EINVAL;
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        if (ret_step)
            *ret_step = "pipe";
        return -errno;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        if (ret_step)
            *ret_step = "fork";
        return -e;
    }
    if (pid == 0) {
        close(pipefd[0]);
        child(o, pipefd[1], parent);
    }
    close(pipefd[1]);
    /* Also set the group from the parent side, closing the race with a
     * killpg() issued before the child ran (as the shells do). */
    (void)setpgid(pid, pid);
    int msg[2];
    ssize_t n;
    do
        n = read(pipefd[0], msg, sizeof(msg));
    while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof(msg)) {
        /* The child failed before exec and is exiting with 127: collect
         * it here (we run on the loop thread, so the reaper cannot race
         * us) and report its errno. */
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (ret_step)
            *ret_step = (msg[0] > 0 && msg[0] < (int)ELEMENTSOF(step_names)) ? step_names[msg[0]] : "?";
        return msg[1] > 0 ? -msg[1] : -EIO;
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
