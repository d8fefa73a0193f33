/*
 * strbuf.h - a growable string with a hard size limit (curl's dynbuf
 * idea): appends fail with -ENOMEM or -E2BIG instead of growing without
 * bound.  The buffer is always NUL-terminated.
 */
#ifndef TEND_BASE_STRBUF_H
#define TEND_BASE_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *data;
    size_t len, cap, max;
    int error;              /* first failure, sticky */
} strbuf;

void strbuf_init(strbuf *b, size_t max);
int strbuf_append(strbuf *b, const char *s, size_t len);
int strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes the string (caller frees); the buffer is reset. */
char *strbuf_take(strbuf *b, size_t *ret_len);
void strbuf_free(strbuf *b);

#endif
