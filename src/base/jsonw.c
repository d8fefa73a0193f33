/* jsonw.c - see jsonw.h. */
#include "jsonw.h"

#include <string.h>

#include "parse.h"
#include "utf8.h"

void jsonw_open(strbuf *b) { (void)strbuf_append(b, "{", 1); }

void jsonw_close(strbuf *b) { (void)strbuf_append(b, "}", 1); }

void jsonw_key(strbuf *b, const char *key) {
    if (b->len > 0 && b->data[b->len - 1] != '{')
        (void)strbuf_append(b, ",", 1);
    (void)strbuf_append(b, "\"", 1);
    (void)strbuf_append(b, key, strlen(key));
    (void)strbuf_append(b, "\":", 2);
}

void jsonw_null(strbuf *b) { (void)strbuf_append(b, "null", 4); }

/* jansson's escapes (dump.c): the two mandatory ones, the five short
 * forms, \u00XX (upper-case hex) for the other controls; '/' and DEL as
 * they are. */
static size_t escape(unsigned char c, char out[6]) {
    static const char hex[] = "0123456789ABCDEF";
    const char *s = NULL;
    switch (c) {
    case '"': s = "\\\""; break;
    case '\\': s = "\\\\"; break;
    case '\b': s = "\\b"; break;
    case '\f': s = "\\f"; break;
    case '\n': s = "\\n"; break;
    case '\r': s = "\\r"; break;
    case '\t': s = "\\t"; break;
    default:
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        return 6;
    }
    memcpy(out, s, 2);
    return 2;
}

void jsonw_stringn(strbuf *b, const char *s, size_t n) {
    if (!s) {
        jsonw_null(b);
        return;
    }
    const char *nul = memchr(s, '\0', n);
    if (nul)
        n = (size_t)(nul - s);
    const unsigned char *p = (const unsigned char *)s;
    (void)strbuf_append(b, "\"", 1);
    size_t run = 0; /* bytes at p[i - run .. i) to copy as they are */
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t k = c < 0x80 ? 1 : utf8_sequence_len(p + i, n - i);
        if (k > 0 && c >= 0x20 && c != '"' && c != '\\') {
            run += k;
            i += k;
            continue;
        }
        (void)strbuf_append(b, (const char *)p + i - run, run);
        run = 0;
        if (k == 0) {
            (void)strbuf_append(b, "?", 1);
        } else {
            char e[6];
            (void)strbuf_append(b, e, escape(c, e));
        }
        i++;
    }
    (void)strbuf_append(b, (const char *)p + n - run, run);
    (void)strbuf_append(b, "\"", 1);
}

void jsonw_string(strbuf *b, const char *s) { jsonw_stringn(b, s, s ? strlen(s) : 0); }

void jsonw_int(strbuf *b, int64_t v) {
    char d[FORMAT_U64_MAX + 1];
    char *p = format_u64(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, d + 1);
    if (v < 0)
        *--p = '-';
    (void)strbuf_append(b, p, (size_t)(d + sizeof(d) - p));
}
