/*
 * timeutil.h - clocks and timestamps.  Monotonic milliseconds drive every
 * timer; wall-clock time is only for display (RFC 3339 with ms, UTC).
 */
#ifndef TEND_BASE_TIMEUTIL_H
#define TEND_BASE_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

int64_t now_mono_us(void);
int64_t now_mono_ms(void);
int64_t now_wall_ms(void);
/* "2026-11-22T12:00:00.000Z" (24 chars + NUL); returns buf. */
char *format_rfc3339_ms(int64_t wall_ms, char *buf, size_t len);

#endif
