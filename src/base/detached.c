/* detached.c - see detached.h. */
#include "detached.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

extern char **environ;

int spawn_detached(const char *path, char *const argv[], int fd, int as_fd, pid_t *ret_pid) {
    if (fd == as_fd || as_fd <= 2)
        return -EINVAL; /* dup2(fd, fd) would keep close-on-exec */
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    int r = posix_spawn_file_actions_init(&fa);
    if (r != 0)
        return -r;
    if ((r = posix_spawnattr_init(&at)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -r;
    }
    if ((r = posix_spawn_file_actions_adddup2(&fa, fd, as_fd)) == 0 &&
        (r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0)) == 0 &&
        (r = posix_spawn_file_actions_adddup2(&fa, 0, 1)) == 0 &&
        (r = posix_spawn_file_actions_adddup2(&fa, 0, 2)) == 0 &&
        (r = posix_spawn_file_actions_addclosefrom_np(&fa, as_fd + 1)) == 0 &&
        (r = posix_spawnattr_setsigmask(&at, &none)) == 0 &&
        (r = posix_spawnattr_setsigdefault(&at, &all)) == 0 &&
        (r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF)) == 0)
        r = posix_spawn(ret_pid, path, &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return -r;
}
