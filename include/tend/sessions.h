/*
 * tend/sessions.h - the TTL session store: a JSON value under a key with a
 * time to live.  A read of an expired session misses; expired sessions
 * are swept every cleanup_interval_ms; at max_sessions the session that
 * would expire soonest is evicted.
 *
 * The store is in memory (the `tend` daemon's persist: true mirrors it to
 * SQLite; the library does not persist).  It is a component of the
 * runtime ("sessions" unless named otherwise) and owned by it: freed by
 * tend_runtime_free().  Every function may be called from any thread (the
 * store has its own mutex; calls do not go through the loop).
 */
#ifndef TEND_SESSIONS_H
#define TEND_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include <tend/common.h>
#include <tend/runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tend_sessions tend_sessions;

/* Keys are 1..TEND_SESSION_KEY_MAX bytes. */
#define TEND_SESSION_KEY_MAX 256

typedef struct tend_sessions_options {
    const char *name;            /* component name; default "sessions" */
    const char *const *deps;     /* components it needs first; NULL: none */
    int64_t ttl_ms;              /* default time to live; default 1 h */
    int64_t cleanup_interval_ms; /* sweep period; default 5 min */
    uint64_t max_sessions;       /* default 100000; 0: unlimited */
    size_t max_value;            /* bytes of JSON per value; default 64 KiB (max 16 MiB) */
} tend_sessions_options;

/* Fills the defaults; cannot fail. */
TEND_EXPORT void tend_sessions_options_init(tend_sessions_options *opts);

/*
 * Creates the store (usable at once) and registers it as a component of
 * rt (before tend_runtime_start(); the sweep runs once it has started).
 * Returns 0 and *ret_sessions (owned by rt); -EINVAL; -EEXIST (the
 * component name is taken); -EBUSY (rt has started); -ENOMEM.
 */
TEND_EXPORT int tend_sessions_new(tend_runtime *rt, const tend_sessions_options *opts,
                                  tend_sessions **ret_sessions);

/*
 * Stores json (a JSON text: object, array, string, number, true, false or
 * null) under key for ttl_ms (0: the default).  Returns 1 created, 0
 * replaced; -EINVAL (NULL, empty key, json not valid JSON, negative ttl);
 * -ENAMETOOLONG (key over TEND_SESSION_KEY_MAX); -E2BIG (over
 * max_value); -ESHUTDOWN (the runtime has shut down); -ENOMEM.
 */
TEND_EXPORT int tend_sessions_set(tend_sessions *s, const char *key, const char *json, int64_t ttl_ms);
/* The value of a live session in *ret_json (NUL-terminated; free() it).
 * 0; -ENOENT (missing or expired); -EINVAL; -ESHUTDOWN; -ENOMEM. */
TEND_EXPORT int tend_sessions_get(tend_sessions *s, const char *key, char **ret_json);
/* Extends a live session to now + ttl_ms (0: its own ttl).  0, -ENOENT,
 * -EINVAL, -ESHUTDOWN. */
TEND_EXPORT int tend_sessions_touch(tend_sessions *s, const char *key, int64_t ttl_ms);
/* 0, -ENOENT, -EINVAL, -ESHUTDOWN. */
TEND_EXPORT int tend_sessions_delete(tend_sessions *s, const char *key);

typedef struct tend_sessions_stats {
    uint64_t count;         /* live sessions (expired ones are swept first) */
    uint64_t expired_total;
    uint64_t evicted_total;
    uint64_t bytes;         /* keys + values */
} tend_sessions_stats;
/* 0, -EINVAL. */
TEND_EXPORT int tend_sessions_get_stats(tend_sessions *s, tend_sessions_stats *ret_stats);
/* Removes the expired sessions now (the periodic sweep does it too);
 * returns how many, or -EINVAL, -ESHUTDOWN. */
TEND_EXPORT int tend_sessions_sweep(tend_sessions *s);

#ifdef __cplusplus
}
#endif
#endif
