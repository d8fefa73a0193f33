/*
 * utf8.c - see utf8.h.  The validation follows the table of well-formed
 * byte sequences in the Unicode standard (chapter 3, table 3-7): the
 * second byte's range depends on the first byte, which is what rules out
 * overlong forms (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code
 * points above U+10FFFF (F4 90..BF, F5..FF).
 */
#include "utf8.h"

#include <stdio.h>
#include <string.h>

size_t utf8_sequence_len(const unsigned char *s, size_t n) {
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0; /* a continuation byte, C0, C1 or F5..FF */
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

bool utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_sequence_len(p + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

size_t utf8_sanitize(char *s) {
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s), i = 0, replaced = 0;
    while (i < n) {
        size_t k = utf8_sequence_len(p + i, n - i);
        if (k == 0) {
            p[i++] = '?';
            replaced++;
        } else {
            i += k;
        }
    }
    return replaced;
}

bool text_escape_controls(char *out, size_t outlen, const char *s) {
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        size_t need = c == '\n' || c == '\r' || c == '\t' ? 2 : c < 0x20 || c == 0x7f ? 4 : 1;
        if (o + need >= outlen)
            break;
        if (need == 2) {
            out[o++] = '\\';
            out[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (need == 4)
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = 0;
    return *s == 0;
}
