/*
 * detached.h - start a program in a session of its own with one inherited
 * descriptor, by posix_spawn: a CLONE_VM | CLONE_VFORK child, so the
 * caller waits only until the exec and its address space is never copied.
 * (Here in libbase, not next to src/lib/spawn.c, because that directory's
 * spawn.h hides the system's <spawn.h>.)
 */
#ifndef TEND_BASE_DETACHED_H
#define TEND_BASE_DETACHED_H

#include <sys/types.h>

/* Runs path with argv and the caller's environment: fd becomes as_fd
 * (> 2), 0-2 are /dev/null, no other descriptor is inherited, no signal
 * is blocked, every disposition is the default.  0 or -errno (an exec
 * failure included). */
int spawn_detached(const char *path, char *const argv[], int fd, int as_fd, pid_t *ret_pid);

#endif
