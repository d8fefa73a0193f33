/* test-spawn.c - parked children (spawn_park / release / cancel). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "spawn.h"

extern char **environ;

#define SKIP_UNLESS_PARKING()                                                                                 \
    do {                                                                                                      \
        if (!spawn_can_park())                                                                                \
            skip();                                                                                           \
    } while (0)

/* Waits for the released child's word (1: exec'd, 2: a step failed). */
static int await_result(spawn_parked *p, const char **step, int *err) {
    for (;;) {
        int r = spawn_parked_result(p, step, err);
        if (r != 0)
            return r;
        struct pollfd pfd = {.fd = p->status_fd, .events = POLLIN};
        (void)poll(&pfd, 1, 5000);
    }
}

static int wait_exit(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* Parks `/bin/sh -c "exit 0"` (in cwd, if not NULL); spawn_park()'s result. */
static int park_sh(spawn_parked *p, const char *cwd) {
    static char *sh[] = {"/bin/sh", "-c", "exit 0", NULL};
    spawn_opts o = {.argv = sh, .envp = environ, .out_fd = -1, .cwd = cwd};
    return spawn_park(&o, p, NULL);
}

static void test_release_runs_it(void **state) {
    SKIP_UNLESS_PARKING();
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    char *argv[] = {"/bin/sh", "-c", "echo \"hello $SPAWN_T\"; exit 3", NULL};
    char *envp[] = {"SPAWN_T=parked", "PATH=/usr/bin:/bin", NULL};
    spawn_opts o = {.argv = argv, .envp = envp, .out_fd = out[1]};
    spawn_parked p;
    const char *step = NULL;
    assert_int_equal(spawn_park(&o, &p, &step), 0);
    close(out[1]);
    assert_true(p.pid > 0);
    /* Parked: it has not run yet. */
    usleep(20000);
    assert_int_equal(kill(p.pid, 0), 0);
    int fl = fcntl(out[0], F_GETFL);
    fcntl(out[0], F_SETFL, fl | O_NONBLOCK);
    char buf[64];
    assert_int_equal(read(out[0], buf, sizeof(buf)), -1);
    fcntl(out[0], F_SETFL, fl);
    /* In its own process group. */
    assert_int_equal(getpgid(p.pid), p.pid);

    assert_int_equal(spawn_release(&p, NULL), 0);
    int err = -1;
    assert_int_equal(await_result(&p, &step, &err), 1);
    assert_int_equal(err, 0);
    pid_t pid = p.pid;
    spawn_parked_forget(&p);
    int status = wait_exit(pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3);
    ssize_t n = read(out[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "hello parked\n");
    close(out[0]);
}

static void test_path_search(void **state) {
    SKIP_UNLESS_PARKING();
    /* execvp's rules: entries that do not exist are skipped. */
    const char *old = getenv("PATH");
    char *saved = old ? strdup(old) : NULL;
    setenv("PATH", "/nonexistent-dir::/usr/bin:/bin", 1);
    char *argv[] = {"true", NULL};
    spawn_opts o = {.argv = argv, .envp = environ, .out_fd = -1};
    spawn_parked p;
    const char *step = NULL;
    int r = spawn_park(&o, &p, &step);
    if (saved) {
        setenv("PATH", saved, 1);
        free(saved);
    }
    assert_int_equal(r, 0);
    assert_int_equal(spawn_release(&p, NULL), 0);
    assert_int_equal(await_result(&p, &step, NULL), 1);
    pid_t pid = p.pid;
    spawn_parked_forget(&p);
    int status = wait_exit(pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_park_checks(void **state) {
    SKIP_UNLESS_PARKING();
    /* What the child checks when parked is told by the release. */
    spawn_parked p;
    const char *step = NULL;
    char *missing[] = {"/nonexistent/bin/ghost", NULL};
    spawn_opts o = {.argv = missing, .envp = environ, .out_fd = -1};
    assert_int_equal(spawn_park(&o, &p, &step), 0);
    assert_int_equal(spawn_release(&p, &step), -ENOENT);
    assert_string_equal(step, "exec");
    spawn_parked_cancel(&p);
    assert_int_equal(p.pid, 0);
    assert_int_equal(park_sh(&p, "/nonexistent/dir"), 0);
    assert_int_equal(spawn_release(&p, &step), -ENOENT);
    assert_string_equal(step, "chdir");
    spawn_parked_cancel(&p);
    /* Nothing left to collect. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_descriptors(void **state) {
    SKIP_UNLESS_PARKING();
    /* Only 0, 1 and 2 reach the program, whatever we have open (even
     * without close-on-exec). */
    int stray = open("/dev/null", O_RDONLY);
    assert_true(stray > 2);
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    char *argv[] = {"/bin/sh", "-c", "ls /proc/$$/fd", NULL};
    spawn_opts o = {.argv = argv, .envp = environ, .out_fd = out[1]};
    spawn_parked p;
    assert_int_equal(spawn_park(&o, &p, NULL), 0);
    close(out[1]);
    close(stray);
    assert_int_equal(spawn_release(&p, NULL), 0);
    assert_int_equal(await_result(&p, NULL, NULL), 1);
    pid_t pid = p.pid;
    spawn_parked_forget(&p);
    char buf[256];
    size_t len = 0;
    ssize_t n;
    while ((n = read(out[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(out[0]);
    (void)wait_exit(pid);
    /* ls of the shell's own fds: 0, 1, 2 (and the one ls opened, if any
     * shell keeps one: none here, ls runs as a child of sh). */
    assert_string_equal(buf, "0\n1\n2\n");
}

static void test_cancel(void **state) {
    SKIP_UNLESS_PARKING();
    spawn_parked p;
    assert_int_equal(park_sh(&p, NULL), 0);
    pid_t pid = p.pid;
    spawn_parked_cancel(&p);
    assert_int_equal(p.pid, 0);
    assert_int_equal(p.mem, NULL);
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

static void test_failure_after_release(void **state) {
    SKIP_UNLESS_PARKING();
    /* The binary and the directory are there when parked, gone when
     * released: the failed step comes back, and the child exits 127. */
    char dir[] = "/tmp/test-spawn-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char bin[64], sub[64];
    snprintf(bin, sizeof(bin), "%s/true", dir);
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    assert_int_equal(symlink("/bin/true", bin), 0);
    assert_int_equal(mkdir(sub, 0700), 0);

    char *argv[] = {bin, NULL};
    spawn_opts o = {.argv = argv, .envp = environ, .out_fd = -1};
    spawn_parked p;
    const char *step = NULL;
    int err = 0;
    assert_int_equal(spawn_park(&o, &p, &step), 0);
    assert_int_equal(spawn_parked_wait(&p, &step), 0); /* checked while there */
    assert_int_equal(unlink(bin), 0);
    assert_int_equal(spawn_release(&p, NULL), 0);
    assert_int_equal(await_result(&p, &step, &err), 2);
    assert_string_equal(step, "exec");
    assert_int_equal(err, ENOENT);
    pid_t pid = p.pid;
    int status = wait_exit(pid);
    spawn_parked_forget(&p);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 127);

    assert_int_equal(park_sh(&p, sub), 0);
    assert_int_equal(spawn_parked_wait(&p, &step), 0);
    assert_int_equal(rmdir(sub), 0);
    assert_int_equal(spawn_release(&p, NULL), 0);
    assert_int_equal(await_result(&p, &step, &err), 2);
    assert_string_equal(step, "chdir");
    assert_int_equal(err, ENOENT);
    status = wait_exit(p.pid);
    spawn_parked_forget(&p);
    assert_int_equal(WEXITSTATUS(status), 127);
    assert_int_equal(rmdir(dir), 0);
}

static void test_release_of_dead_child(void **state) {
    SKIP_UNLESS_PARKING();
    spawn_parked p;
    assert_int_equal(park_sh(&p, NULL), 0);
    pid_t pid = p.pid;
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = wait_exit(pid);
    assert_true(WIFSIGNALED(status));
    /* Its end of the gate is closed: the release says so (no SIGPIPE). */
    assert_true(spawn_release(&p, NULL) < 0);
    spawn_parked_forget(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_runs_it),
        cmocka_unit_test(test_path_search),
        cmocka_unit_test(test_park_checks),
        cmocka_unit_test(test_descriptors),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_failure_after_release),
        cmocka_unit_test(test_release_of_dead_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
