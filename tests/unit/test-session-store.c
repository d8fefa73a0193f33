/*
 * test-session-store.c - the TTL session store (session-store.c): expiry
 * on read, touch, per-session ttl, a sweep whose work is proportional to
 * what expired, eviction order, limits, hash collisions and resizing,
 * the locked mode from several threads; and session persistence through
 * both durable store backends (store.h STORE_OP_SESSION_*), reopened.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session-store.h"
#include "store.h"
#include "timeutil.h"

#define T0 1700000000000LL /* an arbitrary wall-clock start, ms */

static session_store *mk(int64_t ttl, uint64_t max) {
    session_store_config cfg = {.ttl_ms = ttl, .max_sessions = max};
    session_store *s = NULL;
    assert_int_equal(session_store_new(&cfg, &s), 0);
    return s;
}

static int put(session_store *s, const char *k, const char *v, int64_t ttl, int64_t now) {
    return session_store_put(s, k, strlen(k), v, strlen(v), ttl, now, NULL);
}

static int get(session_store *s, const char *k, int64_t now, char **ret_value) {
    return session_store_get(s, k, strlen(k), now, NULL, ret_value);
}

static void test_put_get_replace(void **state) {
    session_store *s = mk(1000, 0);
    session_info info;
    assert_int_equal(session_store_put(s, "a", 1, "{\"x\":1}", 7, 0, T0, &info), 1);
    assert_int_equal(info.created_ms, T0);
    assert_int_equal(info.expires_ms, T0 + 1000);
    char *v = NULL;
    assert_int_equal(session_store_get(s, "a", 1, T0 + 10, &info, &v), 0);
    assert_string_equal(v, "{\"x\":1}");
    assert_int_equal(info.value_len, 7);
    free(v);
    /* Replacing keeps created, moves expiry, returns 0. */
    assert_int_equal(session_store_put(s, "a", 1, "[1,2]", 5, 0, T0 + 500, &info), 0);
    assert_int_equal(info.created_ms, T0);
    assert_int_equal(info.expires_ms, T0 + 1500);
    const char *pv;
    assert_int_equal(session_store_peek(s, "a", 1, T0 + 600, NULL, &pv), 0);
    assert_string_equal(pv, "[1,2]");
    assert_int_equal(get(s, "b", T0, NULL), -ENOENT);
    assert_int_equal(session_store_delete(s, "a", 1, T0 + 600), 0);
    assert_int_equal(session_store_delete(s, "a", 1, T0 + 600), -ENOENT);
    assert_int_equal(get(s, "a", T0 + 600, NULL), -ENOENT);
    session_store_stats st;
    session_store_get_stats(s, &st);
    assert_int_equal(st.count, 0);
    assert_int_equal(st.bytes, 0);
    session_store_free(s);
    assert_null(session_store_free(NULL));
}

static void test_expiry_on_read(void **state) {
    session_store *s = mk(1000, 0);
    assert_int_equal(put(s, "k", "1", 0, T0), 1);
    assert_int_equal(get(s, "k", T0 + 999, NULL), 0);
    /* Exactly at expires_at it is gone, without any sweep. */
    assert_int_equal(get(s, "k", T0 + 1000, NULL), -ENOENT);
    session_store_stats st;
    session_store_get_stats(s, &st);
    assert_int_equal(st.count, 0);
    assert_int_equal(st.expired_total, 1);
    /* Touch and delete of an expired session miss too. */
    assert_int_equal(put(s, "k", "1", 0, T0), 1);
    assert_int_equal(session_store_touch(s, "k", 1, 0, T0 + 2000, NULL), -ENOENT);
    assert_int_equal(put(s, "k", "1", 0, T0), 1);
    assert_int_equal(session_store_delete(s, "k", 1, T0 + 2000), -ENOENT);
    /* A put over an expired session creates a new one. */
    assert_int_equal(put(s, "k", "1", 0, T0), 1);
    session_info info;
    assert_int_equal(session_store_put(s, "k", 1, "2", 1, 0, T0 + 5000, &info), 1);
    assert_int_equal(info.created_ms, T0 + 5000);
    session_store_get_stats(s, &st);
    assert_int_equal(st.expired_total, 4);
    session_store_free(s);
}

static void test_touch_and_ttl(void **state) {
    session_store *s = mk(1000, 0);
    session_info info;
    /* A per-session ttl overrides the default, and a plain touch reuses it. */
    assert_int_equal(session_store_put(s, "long", 4, "1", 1, 60000, T0, &info), 1);
    assert_int_equal(info.expires_ms, T0 + 60000);
    assert_int_equal(info.ttl_ms, 60000);
    assert_int_equal(put(s, "short", "1", 0, T0), 1);
    assert_int_equal(session_store_touch(s, "short", 5, 0, T0 + 900, &info), 0);
    assert_int_equal(info.expires_ms, T0 + 1900);
    assert_int_equal(get(s, "short", T0 + 1500, NULL), 0);
    assert_int_equal(session_store_touch(s, "long", 4, 0, T0 + 1000, &info), 0);
    assert_int_equal(info.expires_ms, T0 + 61000);
    /* A touch with a ttl replaces the session's ttl. */
    assert_int_equal(session_store_touch(s, "short", 5, 5000, T0 + 1000, &info), 0);
    assert_int_equal(info.expires_ms, T0 + 6000);
    assert_int_equal(session_store_touch(s, "short", 5, 0, T0 + 2000, &info), 0);
    assert_int_equal(info.expires_ms, T0 + 7000);
    assert_int_equal(session_store_touch(s, "none", 4, 0, T0, NULL), -ENOENT);
    assert_int_equal(session_store_touch(s, "short", 5, -1, T0, NULL), -EINVAL);
    /* The heap follows touches: the sweep takes "short" only when due. */
    assert_int_equal(session_store_sweep(s, T0 + 6999, 0), 0);
    assert_int_equal(session_store_next_expiry(s), T0 + 7000);
    assert_int_equal(session_store_sweep(s, T0 + 7000, 0), 1);
    assert_int_equal(get(s, "long", T0 + 7000, NULL), 0);
    session_store_free(s);
}

static void test_limits(void **state) {
    session_store_config cfg = {.ttl_ms = 1000, .max_value = 10};
    session_store *s = NULL;
    assert_int_equal(session_store_new(&cfg, &s), 0);
    char key[SESSION_KEY_MAX + 2];
    memset(key, 'k', sizeof(key));
    assert_int_equal(session_store_put(s, key, SESSION_KEY_MAX, "1", 1, 0, T0, NULL), 1);
    assert_int_equal(session_store_put(s, key, SESSION_KEY_MAX + 1, "1", 1, 0, T0, NULL), -ENAMETOOLONG);
    assert_int_equal(session_store_get(s, key, SESSION_KEY_MAX + 1, T0, NULL, NULL), -ENOENT);
    assert_int_equal(session_store_put(s, "", 0, "1", 1, 0, T0, NULL), -EINVAL);
    assert_int_equal(session_store_put(s, "a", 1, "0123456789", 10, 0, T0, NULL), 1);
    assert_int_equal(session_store_put(s, "a", 1, "0123456789x", 11, 0, T0, NULL), -E2BIG);
    assert_int_equal(session_store_put(s, "a", 1, "1", 1, -5, T0, NULL), -EINVAL);
    assert_int_equal(session_store_put(s, "a", 1, "1", 1, SESSION_TTL_MAX_MS + 1, T0, NULL), -EINVAL);
    assert_int_equal(session_store_max_value(s), 10);
    /* Keys are bytes: an embedded NUL is part of the key. */
    assert_int_equal(session_store_put(s, "x\0y", 3, "1", 1, 0, T0, NULL), 1);
    assert_int_equal(session_store_get(s, "x", 1, T0, NULL, NULL), -ENOENT);
    assert_int_equal(session_store_get(s, "x\0y", 3, T0, NULL, NULL), 0);
    session_store_free(s);
    cfg.max_value = SESSION_VALUE_MAX_LIMIT + 1;
    assert_int_equal(session_store_new(&cfg, &s), -EINVAL);
    assert_int_equal(session_store_new(NULL, &s), -EINVAL);
    assert_int_equal(session_store_get(NULL, "a", 1, T0, NULL, NULL), -EINVAL);
}

typedef struct evlog {
    char keys[16][16];
    size_t n;
} evlog;

static void on_evict(void *data, const char *key, size_t len) {
    evlog *l = data;
    if (l->n < 16) {
        memcpy(l->keys[l->n], key, len < 15 ? len : 15);
        l->keys[l->n][len < 15 ? len : 15] = 0;
        l->n++;
    }
}

static void test_eviction_order(void **state) {
    evlog log = {0};
    session_store_config cfg = {.ttl_ms = 10000, .max_sessions = 3, .on_evict = on_evict, .data = &log};
    session_store *s = NULL;
    assert_int_equal(session_store_new(&cfg, &s), 0);
    assert_int_equal(put(s, "a", "1", 5000, T0), 1);  /* expires T0+5000 */
    assert_int_equal(put(s, "b", "1", 1000, T0), 1);  /* T0+1000: soonest */
    assert_int_equal(put(s, "c", "1", 3000, T0), 1);  /* T0+3000 */
    assert_int_equal(put(s, "d", "1", 9000, T0), 1);  /* evicts b */
    assert_int_equal(log.n, 1);
    assert_string_equal(log.keys[0], "b");
    assert_int_equal(get(s, "b", T0, NULL), -ENOENT);
    /* Replacing does not evict. */
    assert_int_equal(put(s, "a", "2", 5000, T0), 0);
    assert_int_equal(log.n, 1);
    /* Touching c past a moves a to the front. */
    assert_int_equal(session_store_touch(s, "c", 1, 8000, T0, NULL), 0);
    assert_int_equal(put(s, "e", "1", 0, T0), 1);
    assert_int_equal(log.n, 2);
    assert_string_equal(log.keys[1], "a");
    /* An expired session makes room without an eviction. */
    assert_int_equal(put(s, "f", "1", 10, T0), 1); /* evicts c (T0+8000; d T0+9000, e T0+10000) */
    assert_int_equal(log.n, 3);
    assert_string_equal(log.keys[2], "c");
    assert_int_equal(put(s, "g", "1", 0, T0 + 20), 1); /* f expired: swept, not evicted */
    assert_int_equal(log.n, 3);
    session_store_stats st;
    session_store_get_stats(s, &st);
    assert_int_equal(st.count, 3);
    assert_int_equal(st.evicted_total, 3);
    assert_int_equal(st.expired_total, 1);
    assert_int_equal(session_store_max_sessions(s), 3);
    session_store_free(s);
}

static void test_sweep_proportional(void **state) {
    session_store *s = mk(1000, 0);
    char k[32];
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        int len = snprintf(k, sizeof(k), "key-%d", i);
        /* 100 sessions expire early, the rest an hour later. */
        int64_t ttl = i % 1000 == 0 ? 1000 : 3600 * 1000;
        assert_int_equal(session_store_put(s, k, (size_t)len, "{}", 2, ttl, T0, NULL), 1);
    }
    uint64_t p0, m0, p1, m1;
    session_store_work(s, &p0, &m0);
    assert_int_equal(session_store_sweep(s, T0 + 1000, 0), 100);
    session_store_work(s, &p1, &m1);
    /* Work: 100 pops of O(log n) heap moves and a few probes each, far
     * below one visit per live session. */
    print_message("sweep of 100 among %d: %llu probes, %llu heap moves\n", n,
                  (unsigned long long)(p1 - p0), (unsigned long long)(m1 - m0));
    assert_true(p1 - p0 < 100 * 20);
    assert_true(m1 - m0 < 100 * 40);
    session_store_stats st;
    session_store_get_stats(s, &st);
    assert_int_equal(st.count, n - 100);
    assert_int_equal(st.expired_total, 100);
    /* Nothing more is due; a bounded sweep stops at max. */
    session_store_work(s, &p0, &m0);
    assert_int_equal(session_store_sweep(s, T0 + 2000, 0), 0);
    session_store_work(s, &p1, &m1);
    assert_int_equal(p1 - p0, 0);
    assert_int_equal(m1 - m0, 0);
    assert_int_equal(session_store_sweep(s, T0 + 3600 * 1000, 10), 10);
    assert_int_equal(session_store_sweep(s, T0 + 3600 * 1000, 0), (size_t)n - 110);
    session_store_get_stats(s, &st);
    assert_int_equal(st.count, 0);
    /* The table shrank after the mass expiry. */
    assert_true(st.table_slots <= 64);
    session_store_free(s);
}

static void test_resize_and_delete_clusters(void **state) {
    session_store *s = mk(1000000, 0);
    char k[32];
    const int n = 5000;
    for (int i = 0; i < n; i++) {
        int len = snprintf(k, sizeof(k), "%d", i);
        assert_int_equal(session_store_put(s, k, (size_t)len, k, (size_t)len, 0, T0, NULL), 1);
    }
    session_store_stats st;
    session_store_get_stats(s, &st);
    assert_true(st.table_slots >= (size_t)n * 4 / 3);
    /* Delete every third key (backward-shift deletion), check the rest. */
    for (int i = 0; i < n; i += 3) {
        int len = snprintf(k, sizeof(k), "%d", i);
        assert_int_equal(session_store_delete(s, k, (size_t)len, T0), 0);
    }
    for (int i = 0; i < n; i++) {
        int len = snprintf(k, sizeof(k), "%d", i);
        char *v = NULL;
        int r = session_store_get(s, k, (size_t)len, T0, NULL, &v);
        if (i % 3 == 0)
            assert_int_equal(r, -ENOENT);
        else {
            assert_int_equal(r, 0);
            assert_string_equal(v, k);
        }
        free(v);
    }
    session_store_free(s);
}

/* Two stores get different seeds: the same keys land in different slots
 * (probabilistically certain for 64 keys), so collisions cannot be
 * precomputed. */
static void test_seeded(void **state) {
    session_store *a = mk(1000, 0), *b = mk(1000, 0);
    char k[16];
    for (int i = 0; i < 64; i++) {
        int len = snprintf(k, sizeof(k), "s%d", i);
        put(a, k, "1", 0, T0);
        put(b, k, "1", 0, T0);
        (void)len;
    }
    uint64_t pa, pb, ma, mb;
    session_store_work(a, &pa, &ma);
    session_store_work(b, &pb, &mb);
    /* Both work; what matters is that lookups succeed under any seed. */
    for (int i = 0; i < 64; i++) {
        snprintf(k, sizeof(k), "s%d", i);
        assert_int_equal(get(a, k, T0, NULL), 0);
        assert_int_equal(get(b, k, T0, NULL), 0);
    }
    session_store_free(a);
    session_store_free(b);
}

/* A random mix of every operation against a plain array model, with a
 * small key space so that probe clusters form, wrap around the end of
 * the table and get broken up by deletions; the table grows and shrinks.
 * After every step the store's invariants hold and it agrees with the
 * model. */
#define MODEL_KEYS 300
typedef struct model_entry {
    bool live;
    int64_t expires;
    int value;
} model_entry;

static void test_random_against_model(void **state) {
    session_store *s = mk(1000, 0);
    model_entry m[MODEL_KEYS] = {{0}};
    uint64_t x = 0x1234567887654321ULL;
    int64_t now = T0;
    char k[16], v[16];
    for (int step = 0; step < 200000; step++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int key = (int)(x % MODEL_KEYS), op = (int)((x >> 20) % 100);
        int klen = snprintf(k, sizeof(k), "k%d", key);
        model_entry *e = &m[key];
        bool live = e->live && e->expires > now;
        if (op < 40) {
            int64_t ttl = 1 + (int64_t)((x >> 32) % 2000);
            int vlen = snprintf(v, sizeof(v), "%d", step);
            int r = session_store_put(s, k, (size_t)klen, v, (size_t)vlen, ttl, now, NULL);
            assert_int_equal(r, live ? 0 : 1);
            *e = (model_entry){true, now + ttl, step};
        } else if (op < 70) {
            char *got = NULL;
            int r = session_store_get(s, k, (size_t)klen, now, NULL, &got);
            assert_int_equal(r, live ? 0 : -ENOENT);
            if (live)
                assert_int_equal((int)strtol(got, NULL, 10), e->value);
            free(got);
        } else if (op < 80) {
            int r = session_store_touch(s, k, (size_t)klen, 500, now, NULL);
            assert_int_equal(r, live ? 0 : -ENOENT);
            if (live)
                e->expires = now + 500;
        } else if (op < 92) {
            assert_int_equal(session_store_delete(s, k, (size_t)klen, now), live ? 0 : -ENOENT);
            e->live = false;
        } else if (op < 97) {
            now += (int64_t)((x >> 40) % 300);
        } else {
            session_store_sweep(s, now, 0);
        }
        if (step % 97 == 0 || op >= 97)
            assert_int_equal(session_store_check(s), 0);
    }
    /* A mass expiry: sweep everything, the table shrinks, still sound. */
    (void)session_store_sweep(s, now + 100000, 0);
    session_store_stats st;
    session_store_get_stats(s, &st);
    assert_int_equal(st.count, 0);
    assert_int_equal(session_store_check(s), 0);
    session_store_free(s);
}

/* ---- locked mode ---- */

typedef struct thr {
    session_store *s;
    int id;
} thr;

static void *worker(void *arg) {
    thr *t = arg;
    char k[32];
    for (int i = 0; i < 20000; i++) {
        int len = snprintf(k, sizeof(k), "t%d-%d", t->id, i % 500);
        session_store_put(t->s, k, (size_t)len, "{}", 2, 0, T0, NULL);
        char *v = NULL;
        if (session_store_get(t->s, k, (size_t)len, T0, NULL, &v) == 0)
            free(v);
        if (i % 7 == 0)
            session_store_delete(t->s, k, (size_t)len, T0);
    }
    return NULL;
}

static void test_locked_threads(void **state) {
    session_store_config cfg = {.ttl_ms = 100000, .max_sessions = 1000, .locked = true};
    session_store *s = NULL;
    assert_int_equal(session_store_new(&cfg, &s), 0);
    const char *pv;
    assert_int_equal(session_store_peek(s, "a", 1, T0, NULL, &pv), -EPERM);
    pthread_t th[4];
    thr t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (thr){s, i};
        pthread_create(&th[i], NULL, worker, &t[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    session_store_stats st;
    session_store_get_stats(s, &st);
    assert_true(st.count <= 1000);
    session_store_free(s);
}

/* ---- persistence through the durable store ---- */

typedef struct fx {
    uv_loop_t loop;
    char dir[PATH_MAX];
} fx;

typedef struct waiter {
    bool done;
    int result;
} waiter;

static void on_done(store_op *op, int result) {
    waiter *w = op->userdata;
    w->done = true;
    w->result = result;
}

static void on_closed(void *data) { *(bool *)data = true; }

static int run_op(fx *f, store *st, store_op *op) {
    waiter w = {0};
    op->done = on_done;
    op->userdata = &w;
    int r = store_submit(st, op);
    if (r < 0)
        return r;
    while (!w.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    return w.result;
}

static store *open_backend(fx *f, store_backend_kind kind) {
    store_config cfg = {.backend = kind, .state_dir = f->dir, .sync = STORE_SYNC_FULL};
    store *st = NULL;
    char *msg = NULL;
    int r = store_open(&f->loop, &cfg, &st, &msg);
    if (r < 0)
        print_message("store_open: %s\n", msg ? msg : strerror(-r));
    free(msg);
    assert_int_equal(r, 0);
    return st;
}

static void close_backend(fx *f, store *st) {
    bool closed = false;
    store_close(st, on_closed, &closed);
    while (!closed)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }

static void persist_roundtrip(store_backend_kind kind, bool reopen) {
    fx f;
    uv_loop_init(&f.loop);
    snprintf(f.dir, sizeof(f.dir), "/tmp/tend-test-sess-XXXXXX");
    assert_non_null(mkdtemp(f.dir));
    store *st = open_backend(&f, kind);

    int64_t now = now_wall_ms();
    store_op op = {.kind = STORE_OP_SESSION_PUT};
    op.session.key = "alive";
    op.session.value = "{\"user\":42}";
    op.session.created_at = now;
    op.session.expires_at = now + 3600000;
    op.session.ttl_ms = 3600000;
    assert_int_equal(run_op(&f, st, &op), 1);
    /* Replace it (upsert), then add an expired one and a deleted one. */
    op.session.value = "{\"user\":43}";
    assert_int_equal(run_op(&f, st, &op), 1);
    op.session.key = "expired";
    op.session.expires_at = now - 1;
    assert_int_equal(run_op(&f, st, &op), 1);
    op.session.key = "deleted";
    op.session.expires_at = now + 3600000;
    assert_int_equal(run_op(&f, st, &op), 1);
    store_op del = {.kind = STORE_OP_SESSION_DELETE};
    del.session.key = "deleted";
    assert_int_equal(run_op(&f, st, &del), 1);
    assert_int_equal(run_op(&f, st, &del), 0);
    op.session.key = "touched";
    op.session.expires_at = now + 10;
    assert_int_equal(run_op(&f, st, &op), 1);
    store_op touch = {.kind = STORE_OP_SESSION_TOUCH};
    touch.session.key = "touched";
    touch.session.expires_at = now + 7200000;
    touch.session.ttl_ms = 7200000;
    assert_int_equal(run_op(&f, st, &touch), 1);
    touch.session.key = "nobody";
    assert_int_equal(run_op(&f, st, &touch), 0);
    /* Validation. */
    store_op bad = {.kind = STORE_OP_SESSION_PUT, .done = on_done};
    assert_int_equal(store_submit(st, &bad), -EINVAL);

    if (reopen) {
        close_backend(&f, st);
        st = open_backend(&f, kind);
    }
    store_op load = {.kind = STORE_OP_SESSION_LOAD};
    load.session_load.now = now;
    int r = run_op(&f, st, &load);
    if (kind == STORE_BACKEND_MEMORY && reopen) {
        /* The memory backend forgets everything when closed. */
        assert_int_equal(r, 0);
    } else {
        assert_int_equal(r, 2);
        assert_int_equal(load.session_load.ret_n, 2);
        bool seen_alive = false, seen_touched = false;
        for (size_t i = 0; i < load.session_load.ret_n; i++) {
            store_session *x = &load.session_load.ret_sessions[i];
            if (strcmp(x->key, "alive") == 0) {
                seen_alive = true;
                assert_string_equal(x->value, "{\"user\":43}");
                assert_int_equal(x->value_len, strlen("{\"user\":43}"));
                assert_int_equal(x->created_at, now);
                assert_int_equal(x->expires_at, now + 3600000);
                assert_int_equal(x->ttl_ms, 3600000);
            } else if (strcmp(x->key, "touched") == 0) {
                seen_touched = true;
                assert_int_equal(x->expires_at, now + 7200000);
                assert_int_equal(x->ttl_ms, 7200000);
            }
        }
        assert_true(seen_alive && seen_touched);
        store_op_clear(&load);
        /* The sweep deletes what expired. */
        store_op sw = {.kind = STORE_OP_SESSION_SWEEP};
        sw.session_load.now = now + 3600000;
        assert_int_equal(run_op(&f, st, &sw), 2); /* "expired" and "alive" */
        load.session_load.now = now;
        assert_int_equal(run_op(&f, st, &load), 1);
        store_op_clear(&load);
    }
    close_backend(&f, st);
    uv_loop_close(&f.loop);
    nftw(f.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_persist_memory(void **state) {
    persist_roundtrip(STORE_BACKEND_MEMORY, false);
    persist_roundtrip(STORE_BACKEND_MEMORY, true);
}

static void test_persist_sqlite(void **state) {
    persist_roundtrip(STORE_BACKEND_SQLITE, false);
    persist_roundtrip(STORE_BACKEND_SQLITE, true);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace),
        cmocka_unit_test(test_expiry_on_read),
        cmocka_unit_test(test_touch_and_ttl),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_sweep_proportional),
        cmocka_unit_test(test_resize_and_delete_clusters),
        cmocka_unit_test(test_seeded),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_locked_threads),
        cmocka_unit_test(test_persist_memory),
        cmocka_unit_test(test_persist_sqlite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
