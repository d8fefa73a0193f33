/*
 * fdutil.h - descriptor helpers.  Every descriptor tend opens is
 * close-on-exec; children get exactly 0/1/2 (and what spawn hands them).
 */
#ifndef TEND_BASE_FDUTIL_H
#define TEND_BASE_FDUTIL_H

#include <stddef.h>
#include <sys/types.h>

int fd_set_cloexec(int fd, int on);
int fd_set_nonblock(int fd, int on);
/* Writes all of buf, retrying on EINTR/partial writes; 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);
/* mkdir -p with mode for created directories; 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);
/* Closes every descriptor >= lowfd except those in keep[]. */
void close_all_fds(int lowfd);

#endif
