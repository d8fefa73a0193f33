/*
 * utf8.h - making arbitrary bytes valid UTF-8 before they go into JSON.
 *
 * jansson refuses strings that are not valid UTF-8 (json_string() returns
 * NULL, and a json_pack() around it fails as a whole), yet much of what
 * the API reports comes from outside: request paths, sd_notify STATUS=
 * texts, service output, probe errors.  utf8_sanitize() replaces, in
 * place, every byte that is not part of a well-formed sequence (RFC 3629:
 * no overlong forms, no UTF-16 surrogates, nothing above U+10FFFF) with
 * '?', so the length never changes and valid text is left untouched.
 */
#ifndef TEND_BASE_UTF8_H
#define TEND_BASE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the well-formed sequence at s (at most n bytes), or 0. */
size_t utf8_sequence_len(const unsigned char *s, size_t n);
/* Whether the n bytes at s are valid UTF-8 (NUL counts as valid). */
bool utf8_valid(const char *s, size_t n);
/* Replaces each byte of the NUL-terminated s that is not part of a
 * well-formed sequence with '?'.  Returns the number replaced. */
size_t utf8_sanitize(char *s);
/* Copies the NUL-terminated s to out (outlen > 0 bytes, always
 * NUL-terminated) with control characters written as \n, \r, \t or
 * \xNN, so that the text stays on one line and cannot drive a terminal;
 * everything else is copied as is.  Stops before an escape that would not
 * fit.  Returns true when all of s was copied. */
bool text_escape_controls(char *out, size_t outlen, const char *s);

#endif
