/*
 * macros.h - small language helpers shared by every layer: cleanup
 * attributes (gnu11), array sizes, ownership transfer.
 */
#ifndef TEND_BASE_MACROS_H
#define TEND_BASE_MACROS_H

#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
#define UNUSED __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _cleanup_(f) __attribute__((cleanup(f)))
/* A switch case that runs on into the next (gcc also takes a comment; clang needs this). */
#define _fallthrough_ __attribute__((fallthrough))

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) {
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Take ownership of a pointer: returns it and clears the variable. */
#define TAKE_PTR(p)                      \
    ({                                   \
        __typeof__(p) _tp_ = (p);        \
        (p) = NULL;                      \
        _tp_;                            \
    })
#define TAKE_FD(fd)                      \
    ({                                   \
        int _tf_ = (fd);                 \
        (fd) = -1;                       \
        _tf_;                            \
    })

#undef MIN
#undef MAX
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
