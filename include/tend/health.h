/*
 * tend/health.h - the health monitor: named checks (C functions) run in
 * parallel, each on a thread of its own with a timeout, and a
 * hierarchical status.
 *
 * Names are paths: "db", "storage/db", "storage/cache".  A report has an
 * entry per check and one per group ("storage"), and the whole system
 * (the root, named "").  A check is healthy, degraded or unhealthy (a
 * negative errno from it, a timeout, or still running from the previous
 * run: unhealthy).  A group, and the root, is:
 *   unhealthy  if a critical member is unhealthy,
 *   degraded   else if any member is degraded or a non-critical member is
 *              unhealthy,
 *   healthy    else;
 * a group is critical when one of its members is.  This is the rule
 * tend applies to services (SPEC 4, "Health").
 *
 * Every runtime has one monitor (tend_runtime_health()); components'
 * checks are registered in it.  Checks run every health_interval_ms of the
 * runtime's options and whenever tend_health_run() asks.  A check that
 * never returns keeps its thread, and is reported unhealthy ("still
 * running") until it does; it never blocks the other checks or the loop.
 */
#ifndef TEND_HEALTH_H
#define TEND_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tend/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tend_runtime tend_runtime;
typedef struct tend_health tend_health;
typedef struct tend_health_report tend_health_report;

typedef enum tend_health_status {
    TEND_HEALTH_HEALTHY = 0,
    TEND_HEALTH_DEGRADED = 1,
    TEND_HEALTH_UNHEALTHY = 2,
    TEND_HEALTH_UNKNOWN = 3, /* never checked yet */
} tend_health_status;

/*
 * A check, called on a worker thread (never the loop thread, and never
 * twice at the same time).  Returns a tend_health_status, or a negative
 * errno (unhealthy, with strerror as the message unless msg is set).  It
 * may write a sentence into msg (msg_size bytes, NUL-terminated, starts
 * empty) saying what it saw.
 */
typedef int (*tend_health_check_fn)(void *data, char *msg, size_t msg_size);

/* A check's message is at most this long (bytes, NUL included). */
#define TEND_HEALTH_MSG_MAX 512
/* Most checks one monitor holds. */
#define TEND_HEALTH_CHECKS_MAX 1024

typedef struct tend_health_check_spec {
    /* A path of 1 to 4 names joined by '/', each as TEND_NAME_MAX. */
    const char *name;
    tend_health_check_fn fn;
    void *data;           /* kept valid by the caller while registered */
    bool critical;        /* default true */
    int64_t timeout_ms;   /* 0: the runtime's health_timeout_ms */
} tend_health_check_spec;

/* Zeroes spec and sets critical = true; cannot fail. */
TEND_EXPORT void tend_health_check_spec_init(tend_health_check_spec *spec);

/* The runtime's monitor (owned by the runtime); NULL for NULL. */
TEND_EXPORT tend_health *tend_runtime_health(tend_runtime *rt);

/*
 * Registers a check (spec copied).  Returns 0; -EINVAL (NULL, no fn, a
 * bad name, negative timeout; a name that is a group of other checks or
 * inside another check's name); -EEXIST; -ENOSPC (TEND_HEALTH_CHECKS_MAX);
 * -ESHUTDOWN (the runtime is shutting down); -ENOMEM.
 */
TEND_EXPORT int tend_health_add_check(tend_health *h, const tend_health_check_spec *spec);
/* Unregisters a check; a run of it in progress is discarded.  0, -EINVAL,
 * -ENOENT, -ESHUTDOWN.  After it returns, fn is not called again (a call
 * already running may still be finishing on its thread). */
TEND_EXPORT int tend_health_remove_check(tend_health *h, const char *name);

/*
 * Runs every check now, in parallel, and waits until each has answered or
 * timed out; *ret_report is the result (free it with
 * tend_health_report_free()).  A run already in progress (the periodic
 * one, another thread's) is joined rather than doubled.  Returns 0;
 * -EINVAL; -ESHUTDOWN; -ENOMEM; -EDEADLK from the loop thread.
 */
TEND_EXPORT int tend_health_run(tend_health *h, tend_health_report **ret_report);
/* The latest completed report without running anything (entries are
 * TEND_HEALTH_UNKNOWN before the first run).  0, -EINVAL, -ESHUTDOWN,
 * -ENOMEM. */
TEND_EXPORT int tend_health_last(tend_health *h, tend_health_report **ret_report);

/* Overall status, or TEND_HEALTH_UNKNOWN for NULL. */
TEND_EXPORT tend_health_status tend_health_report_status(const tend_health_report *r);
/* Number of entries: checks and groups, the root included. */
TEND_EXPORT size_t tend_health_report_count(const tend_health_report *r);

typedef struct tend_health_entry {
    const char *name;        /* "" for the root, "storage", "storage/db" */
    tend_health_status status;
    bool critical;
    bool group;              /* a group (or the root), not a check */
    const char *message;     /* checks: what it said, or "" */
    int64_t duration_ms;     /* checks: how long the last run took */
    int64_t checked_at_ms;   /* checks: wall-clock end of the last run; 0: never */
} tend_health_entry;

/* Entry i (0 is the root; groups come before their members, sorted by
 * name) into *ret_entry, whose strings live as long as the report.
 * 0, -EINVAL, -ERANGE. */
TEND_EXPORT int tend_health_report_entry(const tend_health_report *r, size_t i,
                                         tend_health_entry *ret_entry);
/* Finds an entry by name ("" is the root).  0, -EINVAL, -ENOENT. */
TEND_EXPORT int tend_health_report_find(const tend_health_report *r, const char *name,
                                        tend_health_entry *ret_entry);
/*
 * The report as JSON (caller frees):
 *   {"status":"degraded","checked_at":..., "checks":{"storage":{"status":..,
 *    "critical":true,"checks":{"db":{"status":"healthy","critical":true,
 *    "message":"","duration_ms":1}}}}}
 * 0, -EINVAL, -ENOMEM.
 */
TEND_EXPORT int tend_health_report_json(const tend_health_report *r, char **ret_json);
/* NULL-safe; returns NULL. */
TEND_EXPORT tend_health_report *tend_health_report_free(tend_health_report *r);

/* "healthy", "degraded", "unhealthy", "unknown"; NULL when out of range. */
TEND_EXPORT const char *tend_health_status_to_string(tend_health_status status);

#ifdef __cplusplus
}
#endif
#endif
