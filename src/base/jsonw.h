/*
 * jsonw.h - JSON text written straight into a strbuf, for the few shapes
 * built on hot paths: every service state change and every task
 * transition is an event of the API's stream, and building those as
 * jansson trees to dump them cost more than the rest of the change.
 *
 * The bytes are the ones jansson's json_dumps(JSON_COMPACT) writes for
 * the same values.  A string that is not valid UTF-8 is written as the
 * API's api_json_textn() makes it: cut at an embedded NUL, and each byte
 * that is not part of a well-formed sequence written as '?'.
 *
 * Errors are the strbuf's (sticky): check b->error once at the end.
 */
#ifndef TEND_BASE_JSONW_H
#define TEND_BASE_JSONW_H

#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

/* The opening brace of an object. */
void jsonw_open(strbuf *b);
/* `"key":`, after a comma unless it is the object's first member (key is
 * a literal: written as is). */
void jsonw_key(strbuf *b, const char *key);
/* A quoted string of n bytes; NULL is null. */
void jsonw_stringn(strbuf *b, const char *s, size_t n);
/* The same for a NUL-terminated s (or NULL). */
void jsonw_string(strbuf *b, const char *s);
void jsonw_int(strbuf *b, int64_t v);
void jsonw_null(strbuf *b);
void jsonw_close(strbuf *b);

#endif
