/*
 * api-sessions.c - the session routes (SPEC §5 Sessions) and the daemon's
 * session store: PUT/GET/DELETE /api/v1/sessions/{id}, POST
 * /api/v1/sessions/{id}/touch, GET /api/v1/sessions.
 *
 * The live sessions are in an in-memory session_store (the loop thread
 * owns it; reads never touch the disk).  With sessions.persist every
 * change is also queued to the durable store, whose writer thread commits
 * it (group commit, write-behind: the loop never waits on fsync), and the
 * request that made it is answered only once that commit is durable (a
 * deferred reply, api_defer).  Evictions and sweeps are mirrored too, and
 * at start-up the unexpired sessions are loaded back.  If a durable write
 * fails the client gets 503 while memory already holds the change; the
 * next successful write of that key makes the disk agree again.
 *
 * Values are kept as compact JSON text and served as such: a GET copies
 * text, it never parses or re-serialises the value.
 */
#include "api-sessions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "parse.h"
#include "strbuf.h"
#include "timeutil.h"

struct api_sessions {
    uv_loop_t *loop;
    tend_sessions_spec spec;
    session_store *ss;
    store *st; /* NULL: not persisted (or closing) */
    uv_timer_t sweeper;
    bool timer_open;
};

/* One durable write in flight; key and value live inline after it. */
typedef struct pend {
    store_op op;
    api_sessions *a;
    api_request *req; /* NULL: nobody waits (eviction, sweep, cancelled) */
    int status;       /* what to answer once durable: 200, 201, 204 */
    session_info info;
    int result;
    bool completed; /* the store op is done */
    char buf[]; /* key NUL [value NUL] */
} pend;

/* ---- replies ---- */

/* {"id":..,["data":..,]"created_at":..,"expires_at":..,"ttl_seconds":..};
 * data is the stored JSON text, copied as is.  NULL on ENOMEM. */
static char *session_text(const char *key, const char *value, size_t vlen, const session_info *in,
                          size_t *ret_len) {
    json_t *id = json_string(key);
    char *idtext = id ? json_dumps(id, JSON_ENCODE_ANY) : NULL;
    json_decref(id);
    if (!idtext)
        return NULL;
    char created[32], expires[32];
    format_rfc3339_ms(in->created_ms, created, sizeof(created));
    format_rfc3339_ms(in->expires_ms, expires, sizeof(expires));
    strbuf b;
    strbuf_init(&b, vlen + 4096);
    strbuf_printf(&b, "{\"id\":%s", idtext);
    if (value) {
        strbuf_append(&b, ",\"data\":", 8);
        strbuf_append(&b, value, vlen);
    }
    strbuf_printf(&b, ",\"created_at\":\"%s\",\"expires_at\":\"%s\",\"ttl_seconds\":%.3f}", created,
                  expires, (double)in->ttl_ms / 1000.0);
    free(idtext);
    if (b.error) {
        strbuf_free(&b);
        return NULL;
    }
    return strbuf_take(&b, ret_len);
}

static void reply_session(api_request *req, int status, const char *key, const char *value,
                          size_t vlen, const session_info *in) {
    size_t len;
    char *text = session_text(key, value, vlen, in, &len);
    if (!text) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    api_reply_text(req, status, "application/json", text, len);
}

/* ---- the durable mirror ---- */

static pend *pend_new(api_sessions *a, store_op_kind kind, const char *key, const char *value,
                      size_t vlen) {
    size_t klen = key ? strlen(key) : 0;
    pend *p = calloc(1, sizeof(*p) + klen + 1 + (value ? vlen + 1 : 0));
    if (!p)
        return NULL;
    p->a = a;
    p->op.kind = kind;
    p->op.userdata = p;
    if (key) {
        memcpy(p->buf, key, klen);
        p->op.session.key = p->buf;
    }
    if (value) {
        char *v = p->buf + klen + 1;
        memcpy(v, value, vlen);
        p->op.session.value = v;
        p->op.session.value_len = vlen;
    }
    return p;
}

static void answer_durable(api_request *req) {
    pend *p = req->defer_data;
    if (p->result < 0)
        api_error(req, 503, "store_unavailable", "the session is not durable: %s", strerror(-p->result));
    else if (p->status == 204)
        api_reply_static(req, 204, NULL, "", 0);
    else
        reply_session(req, p->status, p->buf, NULL, 0, &p->info);
    free(p);
}

/* The request goes away unanswered (server stop, client gone). */
static void cancel_durable(api_request *req) {
    pend *p = req->defer_data;
    if (p->completed)
        free(p); /* answer_durable will not run */
    else
        p->req = NULL; /* on_durable frees p */
}

static void on_durable(store_op *op, int result) {
    pend *p = op->userdata;
    store_op_clear(op);
    p->result = result;
    p->completed = true;
    if (p->req)
        api_resume(p->req, answer_durable); /* answer_durable frees p */
    else
        free(p);
}

/* Queues p; with req, defers req until p is durable.  Returns false
 * (having freed p) when the store refused it. */
static bool submit(api_sessions *a, pend *p, api_request *req) {
    p->op.done = on_durable;
    p->req = req;
    int r = a->st ? store_submit(a->st, &p->op) : -ESHUTDOWN;
    if (r < 0) {
        free(p);
        if (req)
            api_error(req, 503, "store_unavailable", "cannot persist the session: %s", strerror(-r));
        return false;
    }
    if (req)
        api_defer(req, cancel_durable, p);
    return true;
}

/* The session store evicted key (max_sessions): delete it on disk too. */
static void on_evict(void *data, const char *key, size_t len) {
    api_sessions *a = data;
    if (!a->st)
        return;
    char k[SESSION_KEY_MAX + 1];
    memcpy(k, key, len);
    k[len] = '\0';
    pend *p = pend_new(a, STORE_OP_SESSION_DELETE, k, NULL, 0);
    if (p)
        (void)submit(a, p, NULL); /* a lost delete only leaves a row that expires */
}

/* ---- request parsing ---- */

static api_sessions *sessions_of(api_request *req) {
    api_sessions *a = req->srv->sessions;
    if (!a)
        api_error(req, 503, "unavailable", "the session store is not running");
    return a;
}

/* The {id} segment: 1..SESSION_KEY_MAX bytes of UTF-8. */
static const char *key_of(api_request *req, size_t *ret_len) {
    const char *k = req->params[0];
    size_t len = strlen(k);
    if (len > SESSION_KEY_MAX) {
        api_error(req, 400, "key_too_long", "session id is %zu bytes; the limit is %d", len, SESSION_KEY_MAX);
        return NULL;
    }
    json_t *as_json = json_stringn(k, len);
    if (!as_json || len == 0) {
        json_decref(as_json);
        api_error(req, 400, "bad_request", "session id must be non-empty UTF-8");
        return NULL;
    }
    json_decref(as_json);
    *ret_len = len;
    return k;
}

/* "2h", "90s", a number of seconds; 0 when absent.  -EINVAL otherwise. */
static int parse_ttl(json_t *v, int64_t *ret) {
    int64_t ms;
    if (!v) {
        *ret = 0;
        return 0;
    }
    if (json_is_string(v)) {
        if (parse_duration_ms(json_string_value(v), &ms) < 0)
            return -EINVAL;
    } else if (json_is_number(v)) {
        double sec = json_number_value(v);
        if (!(sec > 0) || sec > (double)SESSION_TTL_MAX_MS / 1000.0)
            return -EINVAL;
        ms = (int64_t)(sec * 1000.0);
    } else
        return -EINVAL;
    if (ms <= 0 || ms > SESSION_TTL_MAX_MS)
        return -EINVAL;
    *ret = ms;
    return 0;
}

/* Checks that the body is an object with only the allowed keys (a NULL
 * body is allowed when !need). */
static bool body_ok(api_request *req, bool need, const char *const *allowed) {
    json_t *b = req->json;
    if (!b) {
        if (need)
            api_error(req, 400, "bad_request", "a JSON body {\"data\": ..., \"ttl\": \"1h\"} is required");
        return !need;
    }
    if (!json_is_object(b)) {
        api_error(req, 400, "bad_request", "the body must be a JSON object");
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            ok |= strcmp(k, allowed[i]) == 0;
        if (!ok) {
            api_error(req, 400, "bad_request", "unknown field \"%s\"", k);
            return false;
        }
    }
    return true;
}

static bool ttl_of(api_request *req, int64_t *ret) {
    json_t *v = req->json ? json_object_get(req->json, "ttl") : NULL;
    if (parse_ttl(v, ret) < 0) {
        api_error(req, 400, "bad_ttl", "invalid ttl (try \"30m\", \"2h\" or a number of seconds, at most 100 years)");
        return false;
    }
    return true;
}

/* ---- routes ---- */

static void put_session(api_request *req) {
    static const char *const allowed[] = {"data", "ttl", NULL};
    api_sessions *a = sessions_of(req);
    size_t klen;
    const char *key = a ? key_of(req, &klen) : NULL;
    int64_t ttl;
    if (!key || !body_ok(req, true, allowed) || !ttl_of(req, &ttl))
        return;
    json_t *data = json_object_get(req->json, "data");
    if (!data) {
        api_error(req, 400, "bad_request", "the body needs a \"data\" field (any JSON value)");
        return;
    }
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (!text) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    size_t vlen = strlen(text);
    session_info info;
    int r = vlen > session_store_max_value(a->ss)
                ? -E2BIG
                : session_store_put(a->ss, key, klen, text, vlen, ttl, now_wall_ms(), &info);
    if (r == -E2BIG)
        api_error(req, 413, "payload_too_large", "session data is %zu bytes; the limit is %zu", vlen,
                  session_store_max_value(a->ss));
    else if (r < 0)
        api_error(req, r == -ENOMEM ? 503 : 400, r == -ENOMEM ? "out_of_memory" : "bad_request",
                  "cannot store the session: %s", strerror(-r));
    else if (a->st) {
        pend *p = pend_new(a, STORE_OP_SESSION_PUT, key, text, vlen);
        if (!p)
            api_error(req, 503, "out_of_memory", "out of memory");
        else {
            p->status = r == 1 ? 201 : 200;
            p->info = info;
            p->op.session.created_at = info.created_ms;
            p->op.session.expires_at = info.expires_ms;
            p->op.session.ttl_ms = info.ttl_ms;
            submit(a, p, req);
        }
    } else
        reply_session(req, r == 1 ? 201 : 200, key, NULL, 0, &info);
    free(text);
}

static void get_session(api_request *req) {
    api_sessions *a = sessions_of(req);
    size_t klen;
    const char *key = a ? key_of(req, &klen) : NULL;
    if (!key)
        return;
    session_info info;
    const char *value;
    if (session_store_peek(a->ss, key, klen, now_wall_ms(), &info, &value) < 0) {
        api_error(req, 404, "not_found", "no session \"%s\" (missing or expired)", key);
        return;
    }
    reply_session(req, 200, key, value, info.value_len, &info);
}

static void touch_session(api_request *req) {
    static const char *const allowed[] = {"ttl", NULL};
    api_sessions *a = sessions_of(req);
    size_t klen;
    const char *key = a ? key_of(req, &klen) : NULL;
    int64_t ttl;
    if (!key || !body_ok(req, false, allowed) || !ttl_of(req, &ttl))
        return;
    session_info info;
    if (session_store_touch(a->ss, key, klen, ttl, now_wall_ms(), &info) < 0) {
        api_error(req, 404, "not_found", "no session \"%s\" (missing or expired)", key);
        return;
    }
    if (!a->st) {
        reply_session(req, 200, key, NULL, 0, &info);
        return;
    }
    pend *p = pend_new(a, STORE_OP_SESSION_TOUCH, key, NULL, 0);
    if (!p) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    p->status = 200;
    p->info = info;
    p->op.session.expires_at = info.expires_ms;
    p->op.session.ttl_ms = info.ttl_ms;
    submit(a, p, req);
}

static void delete_session(api_request *req) {
    api_sessions *a = sessions_of(req);
    size_t klen;
    const char *key = a ? key_of(req, &klen) : NULL;
    if (!key)
        return;
    if (session_store_delete(a->ss, key, klen, now_wall_ms()) < 0) {
        api_error(req, 404, "not_found", "no session \"%s\" (missing or expired)", key);
        return;
    }
    if (!a->st) {
        api_reply_static(req, 204, NULL, "", 0);
        return;
    }
    pend *p = pend_new(a, STORE_OP_SESSION_DELETE, key, NULL, 0);
    if (!p) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    p->status = 204;
    submit(a, p, req);
}

static void list_sessions(api_request *req) {
    api_sessions *a = sessions_of(req);
    if (!a)
        return;
    session_store_stats st;
    api_sessions_stats(a, &st);
    api_reply_json(req, 200,
                   json_pack("{s:I, s:I, s:I, s:f, s:f, s:I, s:I, s:b}", "count", (json_int_t)st.count,
                             "expired_total", (json_int_t)st.expired_total, "evicted_total",
                             (json_int_t)st.evicted_total, "ttl_seconds", (double)a->spec.ttl_ms / 1000.0,
                             "cleanup_interval_seconds", (double)a->spec.cleanup_interval_ms / 1000.0,
                             "max_sessions", (json_int_t)a->spec.max_sessions, "max_value_bytes",
                             (json_int_t)session_store_max_value(a->ss), "persist", a->st != NULL));
}

const api_route api_sessions_routes[] = {
    {"GET", "/api/v1/sessions", list_sessions, 0},
    {"PUT", "/api/v1/sessions/{id}", put_session, API_JSON_BODY},
    {"GET", "/api/v1/sessions/{id}", get_session, 0},
    {"DELETE", "/api/v1/sessions/{id}", delete_session, 0},
    {"POST", "/api/v1/sessions/{id}/touch", touch_session, API_JSON_BODY},
    {0},
};

/* ---- lifecycle ---- */

static void on_sweep(uv_timer_t *t) {
    api_sessions *a = t->data;
    int64_t now = now_wall_ms();
    session_store_sweep(a->ss, now, 0);
    if (a->st) {
        pend *p = pend_new(a, STORE_OP_SESSION_SWEEP, NULL, NULL, 0);
        if (p) {
            p->op.session_load.now = now;
            (void)submit(a, p, NULL);
        }
    }
}

int api_sessions_new(uv_loop_t *loop, const tend_sessions_spec *spec, store *st,
                     api_sessions **ret) {
    api_sessions *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->loop = loop;
    a->spec = *spec;
    a->st = st;
    session_store_config cfg = {.ttl_ms = spec->ttl_ms, .max_sessions = spec->max_sessions,
                                .max_value = (size_t)spec->max_value, .on_evict = on_evict, .data = a};
    int r = session_store_new(&cfg, &a->ss);
    if (r < 0) {
        free(a);
        return r;
    }
    uv_timer_init(loop, &a->sweeper);
    a->sweeper.data = a;
    a->timer_open = true;
    uint64_t every = spec->cleanup_interval_ms > 0 ? (uint64_t)spec->cleanup_interval_ms : 300000;
    uv_timer_start(&a->sweeper, on_sweep, every, every);
    uv_unref((uv_handle_t *)&a->sweeper); /* never what keeps tend running */
    *ret = a;
    return 0;
}

typedef struct load_wait {
    bool done;
    int result;
} load_wait;

static void on_loaded(store_op *op, int result) {
    load_wait *w = op->userdata;
    w->done = true;
    w->result = result;
}

int api_sessions_load(api_sessions *a) {
    if (!a->st)
        return 0;
    load_wait w = {0};
    store_op op = {.kind = STORE_OP_SESSION_LOAD, .done = on_loaded, .userdata = &w};
    int64_t now = now_wall_ms();
    op.session_load.now = now;
    int r = store_submit(a->st, &op);
    if (r < 0)
        return r;
    while (!w.done)
        uv_run(a->loop, UV_RUN_ONCE);
    if (w.result < 0)
        return w.result;
    size_t n = 0;
    for (size_t i = 0; i < op.session_load.ret_n; i++) {
        const store_session *x = &op.session_load.ret_sessions[i];
        if (session_store_restore(a->ss, x->key, strlen(x->key), x->value, x->value_len, x->created_at,
                                  x->expires_at, x->ttl_ms, now) > 0)
            n++;
    }
    store_op_clear(&op);
    return (int)n;
}

void api_sessions_close(api_sessions *a) {
    if (!a)
        return;
    if (a->timer_open) {
        a->timer_open = false;
        uv_close((uv_handle_t *)&a->sweeper, NULL);
    }
    a->st = NULL;
}

api_sessions *api_sessions_free(api_sessions *a) {
    if (!a)
        return NULL;
    session_store_free(a->ss);
    free(a);
    return NULL;
}

void api_sessions_stats(api_sessions *a, session_store_stats *ret) {
    if (!a) {
        memset(ret, 0, sizeof(*ret));
        return;
    }
    /* Reclaim what expired since the last sweep first (work proportional
     * to it), so that count is the number of live sessions. */
    session_store_sweep(a->ss, now_wall_ms(), 0);
    session_store_get_stats(a->ss, ret);
}
