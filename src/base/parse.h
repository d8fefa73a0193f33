/*
 * parse.h - the value syntaxes of tend.yaml: durations ("250ms", "5s",
 * "2m", "1h", "1d", or a bare number of seconds), sizes ("512K", "10M",
 * "1G", or bytes), rates ("50/s", "600/m").  Each returns 0 or -EINVAL and
 * writes its output only on success.
 */
#ifndef TEND_BASE_PARSE_H
#define TEND_BASE_PARSE_H

#include <stdint.h>
#include <stddef.h>

int parse_duration_ms(const char *s, int64_t *ret_ms);
int parse_size(const char *s, uint64_t *ret_bytes);
int parse_rate(const char *s, double *ret_per_sec);
int parse_int(const char *s, long long min, long long max, long long *ret);
int parse_double(const char *s, double *ret);
int parse_bool(const char *s, int *ret);
int parse_signal(const char *s, int *ret_sig);
const char *signal_name(int sig);
/* Writes a human form of a duration ("1.5s", "250ms", "2m") into buf. */
const char *format_duration(int64_t ms, char *buf, size_t len);
/* The decimal digits of v at the end of out[FORMAT_U64_MAX] (no NUL);
 * returns where they start.  For hot paths that would not call printf. */
#define FORMAT_U64_MAX 20
char *format_u64(uint64_t v, char out[FORMAT_U64_MAX]);

#endif
