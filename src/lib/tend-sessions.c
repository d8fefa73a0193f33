/*
 * tend-sessions.c - the public session store (tend/sessions.h) over
 * session-store.c made with `locked` (its own mutex), so public calls go
 * to it directly from any thread instead of through the loop: a session
 * read is a hash lookup and a copy, and a hop to the loop thread would
 * cost more than the work.  Only the periodic sweep is on the loop (a
 * uv_timer armed when the component starts).
 */
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <tend/sessions.h>

#include "session-store.h"
#include "tend-internal.h"
#include "timeutil.h"

struct tend_sessions {
    tend_runtime *rt;
    session_store *store;
    int64_t cleanup_interval_ms;
    uv_timer_t sweep;
    bool timer_on;
    atomic_bool stopped;
};

TEND_EXPORT void tend_sessions_options_init(tend_sessions_options *o) {
    if (!o)
        return;
    *o = (tend_sessions_options){
        .name = "sessions",
        .ttl_ms = 3600 * 1000,
        .cleanup_interval_ms = 300 * 1000,
        .max_sessions = 100000,
        .max_value = SESSION_VALUE_MAX_DEFAULT,
    };
}

static void on_sweep(uv_timer_t *t) {
    tend_sessions *s = t->data;
    session_store_sweep(s->store, now_wall_ms(), 0);
}

static void call_arm(tend_loop *l, tend_call *c) {
    tend_sessions *s = c->arg;
    uv_timer_init(&l->uv, &s->sweep);
    s->sweep.data = s;
    uv_timer_start(&s->sweep, on_sweep, (uint64_t)s->cleanup_interval_ms, (uint64_t)s->cleanup_interval_ms);
    s->timer_on = true;
    c->result = 0;
}

static void call_disarm(tend_loop *l, tend_call *c) {
    tend_sessions *s = c->arg;
    if (s->timer_on)
        uv_close((uv_handle_t *)&s->sweep, NULL);
    s->timer_on = false;
    c->result = 0;
}

static int comp_start(tend_runtime *rt, void *data, char *err, size_t err_size) {
    return tend_loop_call(rt->loop, call_arm, data);
}

static void comp_stop(tend_runtime *rt, void *data, int64_t timeout_ms) {
    tend_sessions *s = data;
    atomic_store(&s->stopped, true);
    (void)tend_loop_call(rt->loop, call_disarm, s);
}

static void comp_destroy(void *data) {
    tend_sessions *s = data;
    session_store_free(s->store);
    free(s);
}

TEND_EXPORT int tend_sessions_new(tend_runtime *rt, const tend_sessions_options *opts, tend_sessions **ret) {
    tend_sessions_options o;
    if (opts)
        o = *opts;
    else
        tend_sessions_options_init(&o);
    if (!rt || !ret || o.ttl_ms < 0 || o.ttl_ms > SESSION_TTL_MAX_MS || o.cleanup_interval_ms < 0 ||
        o.max_value > SESSION_VALUE_MAX_LIMIT)
        return -EINVAL;
    tend_sessions *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->rt = rt;
    s->cleanup_interval_ms = o.cleanup_interval_ms ? o.cleanup_interval_ms : 300 * 1000;
    session_store_config sc = {
        .ttl_ms = o.ttl_ms, .max_sessions = o.max_sessions, .max_value = o.max_value, .locked = true};
    int r = session_store_new(&sc, &s->store);
    if (r < 0) {
        free(s);
        return r;
    }
    tend_component_spec spec;
    tend_component_spec_init(&spec);
    spec.name = o.name ? o.name : "sessions";
    spec.deps = o.deps;
    spec.start = comp_start;
    spec.stop = comp_stop;
    spec.data = s;
    r = tend_runtime_add_internal(rt, &spec, comp_destroy);
    if (r < 0) {
        session_store_free(s->store);
        free(s);
        return r;
    }
    *ret = s;
    return 0;
}

static int check_key(tend_sessions *s, const char *key) {
    if (!s || !key || !key[0])
        return -EINVAL;
    if (atomic_load(&s->stopped))
        return -ESHUTDOWN;
    return 0;
}

TEND_EXPORT int tend_sessions_set(tend_sessions *s, const char *key, const char *json, int64_t ttl_ms) {
    int r = check_key(s, key);
    if (r < 0)
        return r;
    if (!json || ttl_ms < 0)
        return -EINVAL;
    size_t len = strlen(json);
    if (len > session_store_max_value(s->store))
        return -E2BIG;
    json_error_t jerr;
    json_t *v = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v)
        return -EINVAL;
    json_decref(v);
    return session_store_put(s->store, key, strlen(key), json, len, ttl_ms, now_wall_ms(), NULL);
}

TEND_EXPORT int tend_sessions_get(tend_sessions *s, const char *key, char **ret_json) {
    int r = check_key(s, key);
    if (r < 0)
        return r;
    if (!ret_json)
        return -EINVAL;
    char *v = NULL;
    r = session_store_get(s->store, key, strlen(key), now_wall_ms(), NULL, &v);
    if (r < 0)
        return r;
    *ret_json = v;
    return 0;
}

TEND_EXPORT int tend_sessions_touch(tend_sessions *s, const char *key, int64_t ttl_ms) {
    int r = check_key(s, key);
    if (r < 0)
        return r;
    if (ttl_ms < 0)
        return -EINVAL;
    return session_store_touch(s->store, key, strlen(key), ttl_ms, now_wall_ms(), NULL);
}

TEND_EXPORT int tend_sessions_delete(tend_sessions *s, const char *key) {
    int r = check_key(s, key);
    if (r < 0)
        return r;
    return session_store_delete(s->store, key, strlen(key), now_wall_ms());
}

TEND_EXPORT int tend_sessions_get_stats(tend_sessions *s, tend_sessions_stats *ret) {
    if (!s || !ret)
        return -EINVAL;
    /* Sweep first, so that count is the live sessions (the work is what
     * expired, not a scan); the daemon's /metrics does the same. */
    if (!atomic_load(&s->stopped))
        session_store_sweep(s->store, now_wall_ms(), 0);
    session_store_stats st;
    session_store_get_stats(s->store, &st);
    *ret = (tend_sessions_stats){
        .count = st.count, .expired_total = st.expired_total, .evicted_total = st.evicted_total, .bytes = st.bytes};
    return 0;
}

TEND_EXPORT int tend_sessions_sweep(tend_sessions *s) {
    if (!s)
        return -EINVAL;
    if (atomic_load(&s->stopped))
        return -ESHUTDOWN;
    size_t n = session_store_sweep(s->store, now_wall_ms(), 0);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}
