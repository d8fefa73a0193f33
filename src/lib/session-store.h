/*
 * session-store.h - the TTL session store (SPEC §1 Session, §2 sessions:):
 * keys -> JSON values (kept as text) with a time to live.
 *
 * An in-memory hash table (open addressing, SipHash-1-3 keyed with a
 * random seed per store, so a client cannot flood one bucket) and a
 * binary min-heap of expiry times with back-indices.  Each session is one
 * allocation holding its header, key and value.  An expired session is
 * never served: every read checks the expiry time itself; the periodic
 * sweep only reclaims memory, and its work is proportional to what
 * expired (heap pops), never a scan.  When max_sessions is reached the
 * session that would expire soonest is evicted (the heap's top).
 *
 * Times are wall-clock milliseconds (they are persisted and survive a
 * restart); every call takes `now` from the caller, which keeps the
 * store deterministic under test.
 *
 * Persistence is not done here: the daemon mirrors writes into the
 * durable store (store.h, STORE_OP_SESSION_*), and gets told about
 * evictions through on_evict so it can delete those rows too.
 *
 * Threading: a store made with cfg.locked = true takes an internal mutex
 * in every function below, so any thread may call any of them (the
 * on_evict callback then runs with the lock held and must not call back
 * into the store).  Without it (the daemon: the loop thread only) the
 * caller serialises all calls.  session_store_peek() returns a pointer
 * into the store that stays valid only until the next call that may
 * modify the store; it is for single-threaded users (or callers holding
 * their own lock) and refuses to run (-EPERM) on a locked store.
 *
 * Errors are negative errno values (see each function).
 */
#ifndef TEND_LIB_SESSION_STORE_H
#define TEND_LIB_SESSION_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes in a key (1..SESSION_KEY_MAX; any bytes, the API restricts it). */
#define SESSION_KEY_MAX 256
/* Default limit of a value (JSON text, bytes); cfg.max_value overrides. */
#define SESSION_VALUE_MAX_DEFAULT (64 * 1024)
/* Hard upper bound of cfg.max_value (and of a TTL: 100 years). */
#define SESSION_VALUE_MAX_LIMIT (16 * 1024 * 1024)
#define SESSION_TTL_MAX_MS ((int64_t)100 * 365 * 24 * 3600 * 1000)

typedef struct session_store session_store;

typedef enum session_remove_reason {
    SESSION_REMOVED_EVICTED = 0, /* max_sessions reached */
} session_remove_reason;

typedef struct session_store_config {
    int64_t ttl_ms;        /* default time to live (> 0); 0: 1h */
    uint64_t max_sessions; /* 0: unlimited */
    size_t max_value;      /* bytes; 0: SESSION_VALUE_MAX_DEFAULT */
    bool locked;           /* take an internal mutex in every call */
    /* Optional: a session was removed for a reason other than its own
     * expiry or a delete (eviction).  key is not NUL-terminated. */
    void (*on_evict)(void *data, const char *key, size_t key_len);
    void *data;
} session_store_config;

/* What a read reports about a session. */
typedef struct session_info {
    int64_t created_ms;
    int64_t expires_ms;
    int64_t ttl_ms; /* the session's own ttl (what a plain touch extends by) */
    size_t value_len;
} session_info;

typedef struct session_store_stats {
    uint64_t count;         /* sessions held (expired ones not yet swept included) */
    uint64_t expired_total; /* removed because their ttl ran out (sweep or read) */
    uint64_t evicted_total; /* removed because max_sessions was reached */
    size_t bytes;           /* key + value bytes held */
    size_t table_slots;     /* hash table size (for tests and the bench) */
} session_store_stats;

/* 0 with *ret set, or -EINVAL (bad cfg), -ENOMEM.  Seeds the hash with
 * getrandom(2). */
int session_store_new(const session_store_config *cfg, session_store **ret);
/* NULL-safe; returns NULL. */
session_store *session_store_free(session_store *s);

/*
 * Stores value (JSON text, value_len bytes, need not be NUL-terminated)
 * under key, expiring at now + ttl_ms (ttl_ms 0: the store's default).
 * A live session under key is replaced (its created time is kept; an
 * expired one counts as expired and the new one is new).  When a new
 * session would exceed max_sessions, the soonest-to-expire one is evicted
 * first.  Returns 1 created, 0 replaced; -EINVAL (empty key, ttl < 0 or
 * over SESSION_TTL_MAX_MS), -ENAMETOOLONG (key over SESSION_KEY_MAX),
 * -E2BIG (value over max_value), -ENOMEM (nothing changed).  ret_info
 * (may be NULL) describes the stored session.
 */
int session_store_put(session_store *s, const char *key, size_t key_len, const char *value,
                      size_t value_len, int64_t ttl_ms, int64_t now, session_info *ret_info);

/*
 * Inserts a session with given times (loading persisted sessions): as
 * put, but created/expires/ttl are taken as given.  A session already
 * expired at now is skipped (returns 0).  1 inserted or replaced;
 * errors as put.
 */
int session_store_restore(session_store *s, const char *key, size_t key_len, const char *value,
                          size_t value_len, int64_t created_ms, int64_t expires_ms, int64_t ttl_ms,
                          int64_t now);

/*
 * Looks key up at time now.  0: found; ret_info (may be NULL) is filled
 * and, when ret_value is not NULL, *ret_value is a malloc'ed,
 * NUL-terminated copy of the value (the caller frees it).  -ENOENT:
 * missing or expired (an expired session is removed and counted).
 * -ENOMEM.
 */
int session_store_get(session_store *s, const char *key, size_t key_len, int64_t now,
                      session_info *ret_info, char **ret_value);

/*
 * As get, without a copy: *ret_value points at the stored NUL-terminated
 * value, valid until the next call that may modify the store.  Only on a
 * store without cfg.locked (-EPERM otherwise).
 */
int session_store_peek(session_store *s, const char *key, size_t key_len, int64_t now,
                       session_info *ret_info, const char **ret_value);

/* Extends a live session to now + ttl_ms (0: the session's own ttl, which
 * a non-zero ttl_ms replaces).  0 or -ENOENT (missing or expired), -EINVAL
 * (bad ttl). */
int session_store_touch(session_store *s, const char *key, size_t key_len, int64_t ttl_ms,
                        int64_t now, session_info *ret_info);

/* Removes a session.  0, or -ENOENT when missing or already expired (an
 * expired one is removed and counted as expired). */
int session_store_delete(session_store *s, const char *key, size_t key_len, int64_t now);

/*
 * Removes sessions expired at now, at most max of them (0: all), soonest
 * first.  The work is proportional to the number removed (heap pops of
 * O(log n) each).  Returns the number removed.
 */
size_t session_store_sweep(session_store *s, int64_t now, size_t max);

/* When the next session expires (ms), or INT64_MAX when there is none. */
int64_t session_store_next_expiry(session_store *s);

void session_store_get_stats(session_store *s, session_store_stats *ret);

/* The limits the store was made with. */
int64_t session_store_default_ttl(const session_store *s);
uint64_t session_store_max_sessions(const session_store *s);
size_t session_store_max_value(const session_store *s);

/* Consistency check for tests: every session is reachable from its home
 * slot, the heap is ordered and every back-index is right, the counts and
 * byte totals add up.  0 or -EUCLEAN. */
int session_store_check(session_store *s);

/* Internal counters for tests: hash slots probed and heap entries moved
 * since the store was made. */
void session_store_work(session_store *s, uint64_t *ret_probes, uint64_t *ret_heap_moves);

#endif
