/*
 * task-view.h - what the task client commands (cmd-task.c, cmd-queue.c,
 * cmd-stats.c) share: percent-encoding of names that go into a URL, and
 * turning the API's task/queue JSON into table cells.  Reading is
 * tolerant: a missing or null field prints as "-", never crashes.
 */
#ifndef TEND_CLI_TASK_VIEW_H
#define TEND_CLI_TASK_VIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <getopt.h>

/* Longest queue name or task id the client accepts (the store's limit on
 * queue names is 128 bytes; ids are 26 characters). */
#define TASK_VIEW_NAME_MAX 200

/*
 * Appends s percent-encoded (RFC 3986 unreserved characters kept) to
 * buf[0..len); returns 0, or -ENAMETOOLONG when it does not fit (buf is
 * then left NUL-terminated at its previous end).
 */
int task_view_escape(char *buf, size_t len, const char *s);

/* Appends s to buf[0..len), truncating; returns 0 or -ENAMETOOLONG when
 * it did not fit. */
int task_view_append(char *buf, size_t len, const char *s);

/* True when s is a usable queue name or task id on the command line: 1 to
 * TASK_VIEW_NAME_MAX bytes, no control characters.  Else prints
 * "tend: invalid WHAT ..." and returns false. */
bool task_view_name_ok(const char *what, const char *s);

/* A field as a table cell: strings as they are, integers and reals in
 * decimal, true/false, "-" for null or missing.  Times (RFC 3339 strings
 * or epoch milliseconds) are shortened to seconds with time_cell. */
const char *task_view_cell(json_t *v, char *buf, size_t len);
const char *task_view_time_cell(json_t *v, char *buf, size_t len);

/* The breaker state of a queue object ("breaker": "open" or
 * "circuit_breaker": {"state": "open"} or a number 0/1/2), or "-". */
const char *task_view_breaker(json_t *queue);

/*
 * SPEC 3 writes `tend task add QUEUE [JSON] [--priority P]`: options may
 * follow the positional arguments, while client_start() stops at the
 * first one.  This moves every option in argv[1..argc) (the common -f,
 * --file, --url, -h and those of extra, with their values, in the forms
 * "--opt V", "--opt=V", "-xV", "-x V") in front of the positional ones,
 * keeping each group's order; "--" ends the options and "-" is
 * positional.  short_with_arg lists the short options taking a value
 * besides -f.
 */
void task_view_permute(int argc, char **argv, const struct option *extra, const char *short_with_arg);

/* Prints v as indented JSON and a newline to stdout. */
void task_view_print_json(json_t *v);

#endif
