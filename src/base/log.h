/*
 * log.h - one line per event, text or JSON, always naming the service
 * ("-" for tend itself).  Used by the tend command; libtend never prints,
 * it reports through callbacks which the command routes here.
 *
 * Text:  2026-11-23T18:40:00.123Z info  api: state starting -> ready
 * JSON:  {"ts":"...","level":"info","service":"api","msg":"..."}
 */
#ifndef TEND_BASE_LOG_H
#define TEND_BASE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h> /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

#include "macros.h"

typedef enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON } log_format;

void log_setup(log_format format, int max_level, bool color);
int log_get_max_level(void);
/* Parses "error|warn|warning|notice|info|debug"; -EINVAL on others. */
int log_level_from_string(const char *s, int *ret);
const char *log_level_to_string(int level);
void log_msg(int level, const char *service, const char *fmt, ...) _printf_(3, 4);
/* The same for a message already formatted. */
void log_line(int level, const char *service, const char *msg);
/* A line of a service's output: "name | line" (coloured per service on a
 * TTY), or a JSON object with "stream":"output". */
void log_output_line(const char *service, size_t service_index, const char *line, size_t len);
/* The width used to align "name |" prefixes. */
void log_set_name_width(size_t width);
/* Buffering: lines are kept in memory (64 KiB at most, then written) until
 * log_flush(), so that a burst of lines is one write(2) and one wake-up of
 * whoever reads tend's output, not one each.  `tend up` buffers while its
 * loop runs and flushes before the loop waits for events (so no line
 * waits for an event); for one thread only.  Turning it off flushes. */
void log_set_buffered(bool on);
void log_flush(void);

#define log_error(svc, ...) log_msg(LOG_ERR, svc, __VA_ARGS__)
#define log_warn(svc, ...) log_msg(LOG_WARNING, svc, __VA_ARGS__)
#define log_info(svc, ...) log_msg(LOG_INFO, svc, __VA_ARGS__)
#define log_debug(svc, ...) log_msg(LOG_DEBUG, svc, __VA_ARGS__)

/* JSON string escaping into out (always NUL-terminated, truncating). */
size_t json_escape(char *out, size_t outlen, const char *s, size_t len);

#endif
