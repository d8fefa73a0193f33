/* strbuf.c - see strbuf.h. */
#include "strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void strbuf_init(strbuf *b, size_t max) { *b = (strbuf){.max = max}; }

static int grow(strbuf *b, size_t need) {
    if (b->error)
        return b->error;
    if (b->len + need + 1 > b->max)
        return b->error = -E2BIG;
    if (b->len + need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need + 1)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    char *d = realloc(b->data, cap);
    if (!d)
        return b->error = -ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int strbuf_append(strbuf *b, const char *s, size_t len) {
    int r = grow(b, len);
    if (r < 0)
        return r;
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int strbuf_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    char tmp[512];
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return b->error = -EINVAL;
    if ((size_t)n < sizeof(tmp))
        return strbuf_append(b, tmp, (size_t)n);
    int r = grow(b, (size_t)n);
    if (r < 0)
        return r;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *strbuf_take(strbuf *b, size_t *ret_len) {
    char *d = b->data;
    if (!d)
        d = calloc(1, 1);
    if (ret_len)
        *ret_len = b->len;
    *b = (strbuf){.max = b->max};
    return d;
}

void strbuf_free(strbuf *b) {
    free(b->data);
    *b = (strbuf){.max = b->max};
}
