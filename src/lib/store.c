/*
 * store.c - what every store backend shares: task records, ids, op
 * validation, and the trip back to the loop (a uv_async_t and a
 * mutex-protected completion list), fault injection and statistics.
 * The backends (store-sqlite.c, store-memory.c) only execute ops.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "macros.h"
#include "timeutil.h"

_Static_assert(STORE_TASK_STATE_MAX == 6, "states are stored as numbers: append only");
_Static_assert(STORE_OP_KIND_MAX <= 32, "op kinds are a bit mask in the group scan");

struct store {
    uv_loop_t *loop;
    const store_backend *backend;
    void *data;
    store_idgen idgen;

    uv_async_t async;
    pthread_mutex_t lock; /* protects the fields below */
    store_op *done_head, *done_tail;
    bool backend_stopped;
    bool async_ready; /* s->async is initialized */
    int fault_error;  /* armed fault, 0: none */
    store_op_kind fault_kind;
    unsigned fault_skip; /* matching groups to let through first */

    /* Loop thread only. */
    uint64_t in_flight;
    bool closing, freeing;
    store_close_fn close_cb;
    void *close_data;

    _Atomic uint64_t groups, commits, failed_commits, ops, tasks_inserted, max_group;
};

/* ---- Records -------------------------------------------------------- */

void store_task_clear(store_task *t) {
    if (!t)
        return;
    free(t->queue);
    free(t->payload);
    free(t->idempotency_key);
    free(t->tags);
    free(t->last_error);
    *t = (store_task){0};
}

store_task *store_task_free(store_task *t) {
    store_task_clear(t);
    free(t);
    return NULL;
}

store_task *store_tasks_free(store_task *tasks, size_t n) {
    if (!tasks)
        return NULL;
    for (size_t i = 0; i < n; i++)
        store_task_clear(&tasks[i]);
    free(tasks);
    return NULL;
}

static int dup_str(char **dst, const char *src) {
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -ENOMEM;
}

int store_task_copy(store_task *dst, const store_task *src) {
    *dst = *src;
    dst->queue = dst->payload = dst->idempotency_key = dst->tags = dst->last_error = NULL;
    if (src->payload) {
        dst->payload = malloc(src->payload_len + 1);
        if (!dst->payload)
            goto fail;
        memcpy(dst->payload, src->payload, src->payload_len);
        dst->payload[src->payload_len] = 0;
    }
    if (dup_str(&dst->queue, src->queue) < 0 ||
        dup_str(&dst->idempotency_key, src->idempotency_key) < 0 ||
        dup_str(&dst->tags, src->tags) < 0)
        goto fail;
    if (src->last_error) {
        size_t n = store_error_len(src->last_error);
        dst->last_error = strndup(src->last_error, n);
        if (!dst->last_error)
            goto fail;
    }
    return 0;
fail:
    store_task_clear(dst);
    return -ENOMEM;
}

static const char *const state_names[STORE_TASK_STATE_MAX] = {
    [STORE_TASK_PENDING] = "pending", [STORE_TASK_SCHEDULED] = "scheduled",
    [STORE_TASK_RUNNING] = "running", [STORE_TASK_SUCCEEDED] = "succeeded",
    [STORE_TASK_DEAD] = "dead",       [STORE_TASK_CANCELLED] = "cancelled",
};
static const char *const priority_names[STORE_PRIORITY_MAX] = {
    [STORE_PRIORITY_CRITICAL] = "critical",     [STORE_PRIORITY_HIGH] = "high",
    [STORE_PRIORITY_NORMAL] = "normal",         [STORE_PRIORITY_LOW] = "low",
    [STORE_PRIORITY_BACKGROUND] = "background",
};
static const char *const op_names[STORE_OP_KIND_MAX] = {
    [STORE_OP_INSERT] = "insert",
    [STORE_OP_UPDATE] = "update",
    [STORE_OP_FETCH_READY] = "fetch_ready",
    [STORE_OP_CLAIM] = "claim",
    [STORE_OP_GET] = "get",
    [STORE_OP_LIST] = "list",
    [STORE_OP_COUNTS] = "counts",
    [STORE_OP_RECOVER] = "recover",
    [STORE_OP_PURGE_DEAD] = "purge_dead",
    [STORE_OP_REQUEUE_DEAD] = "requeue_dead",
    [STORE_OP_RETENTION] = "retention",
    [STORE_OP_SESSION_PUT] = "session_put",
    [STORE_OP_SESSION_TOUCH] = "session_touch",
    [STORE_OP_SESSION_DELETE] = "session_delete",
    [STORE_OP_SESSION_SWEEP] = "session_sweep",
    [STORE_OP_SESSION_LOAD] = "session_load",
    [STORE_OP_QUEUE_PAUSE] = "queue_pause",
};

const char *store_task_state_to_string(store_task_state s) {
    return (unsigned)s < STORE_TASK_STATE_MAX ? state_names[s] : NULL;
}

const char *store_priority_to_string(store_priority p) {
    return (unsigned)p < STORE_PRIORITY_MAX ? priority_names[p] : NULL;
}

const char *store_op_kind_to_string(store_op_kind k) {
    if (k == STORE_OP_ANY)
        return "any";
    return (unsigned)k < STORE_OP_KIND_MAX ? op_names[k] : NULL;
}

static int lookup(const char *const *names, int n, const char *s) {
    if (!s)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -EINVAL;
}

int store_task_state_from_string(const char *s) {
    return lookup(state_names, STORE_TASK_STATE_MAX, s);
}

int store_priority_from_string(const char *s) {
    return lookup(priority_names, STORE_PRIORITY_MAX, s);
}

size_t store_error_len(const char *s) {
    size_t n = strnlen(s, STORE_ERROR_MAX + 1);
    if (n <= STORE_ERROR_MAX)
        return n;
    n = STORE_ERROR_MAX;
    /* Back off continuation bytes so a multi-byte character is not cut. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* ---- Ids ------------------------------------------------------------ */

static const char crockford[32] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void store_id_format(int64_t ms, uint16_t rand_hi, uint64_t rand_lo, char ret_id[STORE_ID_SIZE]) {
    uint64_t t = (uint64_t)ms & ((UINT64_C(1) << 48) - 1);
    /* 10 characters of time (50 bits, the top two zero). */
    for (int i = 9; i >= 0; i--) {
        ret_id[i] = crockford[t & 31];
        t >>= 5;
    }
    /* 16 characters of the 80 random bits, most significant first. */
    for (int i = 25; i >= 10; i--) {
        ret_id[i] = crockford[rand_lo & 31];
        rand_lo = (rand_lo >> 5) | ((uint64_t)(rand_hi & 31) << 59);
        rand_hi >>= 5;
    }
    ret_id[STORE_ID_LEN] = 0;
}

/* Value + 1 of each Crockford character, 0 for the others: every INSERT
 * of a caller-made id checks 26 of them (a memchr each cost 3 % of the
 * memory store's hot path). */
static const unsigned char crockford_plus1[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
    ['G'] = 17, ['H'] = 18, ['J'] = 19, ['K'] = 20, ['M'] = 21, ['N'] = 22, ['P'] = 23, ['Q'] = 24,
    ['R'] = 25, ['S'] = 26, ['T'] = 27, ['V'] = 28, ['W'] = 29, ['X'] = 30, ['Y'] = 31, ['Z'] = 32,
};

static int crockford_value(char c) {
    return (int)crockford_plus1[(unsigned char)c] - 1;
}

bool store_id_valid(const char *s) {
    if (!s || strnlen(s, STORE_ID_SIZE) != STORE_ID_LEN)
        return false;
    if (crockford_value(s[0]) > 7) /* 128 bits: the first character holds 3 */
        return false;
    for (int i = 0; i < STORE_ID_LEN; i++)
        if (crockford_value(s[i]) < 0)
            return false;
    return true;
}

int64_t store_id_time_ms(const char *id) {
    if (!store_id_valid(id))
        return -EINVAL;
    int64_t t = 0;
    for (int i = 0; i < 10; i++)
        t = (t << 5) | crockford_value(id[i]);
    return t;
}

static void fill_random(store_idgen *g) {
    uint8_t b[10];
    if (getrandom(b, sizeof(b), GRND_NONBLOCK) != (ssize_t)sizeof(b)) {
        /* No entropy yet (early boot): ids stay unique through the
         * counter; mix time and pid so two processes still differ. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x =
            (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() << 32 ^ g->rand_lo;
        for (size_t i = 0; i < sizeof(b); i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            b[i] = (uint8_t)x;
        }
    }
    g->rand_hi = (uint16_t)(b[0] << 8 | b[1]);
    g->rand_lo = 0;
    for (int i = 2; i < 10; i++)
        g->rand_lo = g->rand_lo << 8 | b[i];
    /* Leave room to count up within the millisecond without carrying
     * into the timestamp: clear the top bit of the 80. */
    g->rand_hi &= 0x7FFF;
}

void store_idgen_init(store_idgen *g) {
    *g = (store_idgen){0};
    pthread_mutex_init(&g->lock, NULL);
}

void store_idgen_destroy(store_idgen *g) {
    pthread_mutex_destroy(&g->lock);
}

void store_idgen_next(store_idgen *g, int64_t now_ms, char ret_id[STORE_ID_SIZE]) {
    pthread_mutex_lock(&g->lock);
    if (now_ms > g->last_ms) {
        g->last_ms = now_ms;
        fill_random(g);
    } else {
        /* Same millisecond, or the clock stepped back: count up from the
         * last id so the order holds. */
        if (++g->rand_lo == 0 && ++g->rand_hi == 0) {
            g->last_ms++;
            fill_random(g);
        }
    }
    store_id_format(g->last_ms, g->rand_hi, g->rand_lo, ret_id);
    pthread_mutex_unlock(&g->lock);
}

/* ---- Ops ------------------------------------------------------------ */

bool store_op_kind_writes(store_op_kind k) {
    switch (k) {
    case STORE_OP_FETCH_READY:
    case STORE_OP_GET:
    case STORE_OP_LIST:
    case STORE_OP_COUNTS:
    case STORE_OP_SESSION_LOAD:
        return false;
    default:
        return true;
    }
}

store_queue_counts *store_counts_free(store_queue_counts *c, size_t n) {
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++)
        free(c[i].queue);
    free(c);
    return NULL;
}

void store_op_reset_outputs(store_op *op) {
    switch (op->kind) {
    case STORE_OP_INSERT:
        op->insert.ret_existing = store_tasks_free(op->insert.ret_existing, op->insert.n);
        op->insert.ret_created = 0;
        break;
    case STORE_OP_UPDATE:
        op->update.ret_state = -1;
        op->update.ret_version = 0;
        break;
    case STORE_OP_FETCH_READY:
        op->fetch.ret_tasks = store_tasks_free(op->fetch.ret_tasks, op->fetch.ret_n);
        op->fetch.ret_n = 0;
        break;
    case STORE_OP_CLAIM:
        if (op->claim.ret_borrowed)
            free(op->claim.ret_tasks); /* lent strings: the store's */
        else
            store_tasks_free(op->claim.ret_tasks, op->claim.ret_n);
        op->claim.ret_tasks = NULL;
        op->claim.ret_n = 0;
        op->claim.ret_borrowed = false;
        break;
    case STORE_OP_GET:
        op->get.ret_task = store_task_free(op->get.ret_task);
        break;
    case STORE_OP_LIST:
        op->list.ret_tasks = store_tasks_free(op->list.ret_tasks, op->list.ret_n);
        op->list.ret_n = 0;
        op->list.ret_cursor[0] = 0;
        break;
    case STORE_OP_COUNTS:
        op->counts.ret_counts = store_counts_free(op->counts.ret_counts, op->counts.ret_n);
        op->counts.ret_n = 0;
        break;
    case STORE_OP_RECOVER:
        op->recover.ret_requeued = op->recover.ret_dead = 0;
        op->recover.ret_paused = store_names_free(op->recover.ret_paused, op->recover.ret_n_paused);
        op->recover.ret_n_paused = 0;
        break;
    case STORE_OP_PURGE_DEAD:
    case STORE_OP_REQUEUE_DEAD:
        op->dead.ret_count = 0;
        break;
    case STORE_OP_RETENTION:
        op->retention.ret_count = 0;
        break;
    case STORE_OP_SESSION_LOAD:
        op->session_load.ret_sessions =
            store_sessions_free(op->session_load.ret_sessions, op->session_load.ret_n);
        op->session_load.ret_n = 0;
        break;
    default:
        break;
    }
}

char **store_names_free(char **v, size_t n) {
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return NULL;
}

store_session *store_sessions_free(store_session *v, size_t n) {
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
    free(v);
    return NULL;
}

/* A session key: 1..STORE_KEY_MAX bytes. */
static int session_key_check(const char *k) {
    if (!k || !k[0])
        return -EINVAL;
    return strnlen(k, STORE_KEY_MAX + 1) > STORE_KEY_MAX ? -E2BIG : 0;
}

void store_op_clear(store_op *op) {
    if (op)
        store_op_reset_outputs(op);
}

static bool queue_ok(const char *q) {
    return q && q[0] && strnlen(q, STORE_QUEUE_MAX + 1) <= STORE_QUEUE_MAX;
}

static bool id_arg_ok(const char *id) {
    return id && id[0] && strnlen(id, STORE_ID_SIZE) < STORE_ID_SIZE;
}

/* Checks one INSERT record and fills in what the store owns. */
static int prepare_task(store *s, store_task *t, int64_t now) {
    if (!queue_ok(t->queue))
        return t->queue && t->queue[0] ? -E2BIG : -EINVAL;
    if ((unsigned)t->priority >= STORE_PRIORITY_MAX || (unsigned)t->state >= STORE_TASK_STATE_MAX)
        return -EINVAL;
    if (t->attempts < 0 || t->max_attempts < 0 || t->timeout_ms < 0)
        return -EINVAL;
    if (t->payload && t->payload_len == 0)
        t->payload_len = strnlen(t->payload, STORE_PAYLOAD_MAX + 1);
    if (t->payload && t->payload_len > STORE_PAYLOAD_MAX)
        return -E2BIG;
    if (t->idempotency_key &&
        (!t->idempotency_key[0] || strnlen(t->idempotency_key, STORE_KEY_MAX + 1) > STORE_KEY_MAX))
        return t->idempotency_key[0] ? -E2BIG : -EINVAL;
    if (t->tags && strnlen(t->tags, STORE_TAGS_MAX + 1) > STORE_TAGS_MAX)
        return -E2BIG;
    if (t->id[0]) {
        if (!store_id_valid(t->id))
            return -EINVAL;
    } else
        store_idgen_next(&s->idgen, now, t->id);
    if (t->created_at == 0)
        t->created_at = now;
    if (t->run_at == 0)
        t->run_at = t->created_at;
    t->version = 1;
    return 0;
}

static int validate(store *s, store_op *op) {
    /* The ops that fill in times read the clock; the hot UPDATE and CLAIM
     * do not need to. */
    int64_t now = op->kind == STORE_OP_UPDATE || op->kind == STORE_OP_CLAIM ? 0 : now_wall_ms();
    switch (op->kind) {
    case STORE_OP_INSERT:
        if (op->insert.n > STORE_INSERT_MAX)
            return -E2BIG;
        if (op->insert.n > 0 && !op->insert.tasks)
            return -EINVAL;
        for (size_t i = 0; i < op->insert.n; i++) {
            int r = prepare_task(s, &op->insert.tasks[i], now);
            if (r < 0)
                return r;
        }
        break;
    case STORE_OP_UPDATE: {
        const store_task *t = op->update.task;
        if (!t || !id_arg_ok(t->id) || (op->update.fields & ~(unsigned)STORE_FIELD_ALL) ||
            op->update.expect_states >= (1u << STORE_TASK_STATE_MAX))
            return -EINVAL;
        unsigned f = op->update.fields;
        if ((f & STORE_FIELD_STATE) && (unsigned)t->state >= STORE_TASK_STATE_MAX)
            return -EINVAL;
        if ((f & STORE_FIELD_PRIORITY) && (unsigned)t->priority >= STORE_PRIORITY_MAX)
            return -EINVAL;
        if (((f & STORE_FIELD_ATTEMPTS) && t->attempts < 0) ||
            ((f & STORE_FIELD_MAX_ATTEMPTS) && t->max_attempts < 0) ||
            ((f & STORE_FIELD_TIMEOUT) && t->timeout_ms < 0))
            return -EINVAL;
        break;
    }
    case STORE_OP_FETCH_READY:
        if (!queue_ok(op->fetch.queue) || op->fetch.limit > STORE_LIMIT_MAX ||
            (op->fetch.n_exclude && !op->fetch.exclude))
            return -EINVAL;
        break;
    case STORE_OP_CLAIM:
        if (!queue_ok(op->claim.queue) || op->claim.limit > STORE_LIMIT_MAX)
            return -EINVAL;
        break;
    case STORE_OP_GET:
        if (!id_arg_ok(op->get.id))
            return -EINVAL;
        break;
    case STORE_OP_LIST:
        if ((op->list.queue && !queue_ok(op->list.queue)) || op->list.limit > STORE_LIMIT_MAX ||
            op->list.state < -1 || op->list.state >= STORE_TASK_STATE_MAX ||
            (op->list.cursor && strnlen(op->list.cursor, STORE_ID_SIZE) >= STORE_ID_SIZE))
            return -EINVAL;
        break;
    case STORE_OP_COUNTS:
        if (op->counts.queue && !queue_ok(op->counts.queue))
            return -EINVAL;
        break;
    case STORE_OP_RECOVER:
        if (op->recover.n_uncharged > STORE_LIMIT_MAX || (op->recover.n_uncharged && !op->recover.uncharged))
            return -EINVAL;
        for (size_t i = 0; i < op->recover.n_uncharged; i++)
            if (!queue_ok(op->recover.uncharged[i]))
                return -EINVAL;
        if (op->recover.now == 0)
            op->recover.now = now;
        break;
    case STORE_OP_PURGE_DEAD:
    case STORE_OP_REQUEUE_DEAD:
        if (!queue_ok(op->dead.queue))
            return -EINVAL;
        if (op->dead.now == 0)
            op->dead.now = now;
        break;
    case STORE_OP_RETENTION:
        break;
    case STORE_OP_SESSION_PUT: {
        int r = session_key_check(op->session.key);
        if (r < 0)
            return r;
        if (!op->session.value)
            return -EINVAL;
        if (op->session.value_len == 0)
            op->session.value_len = strnlen(op->session.value, STORE_SESSION_VALUE_MAX + 1);
        if (op->session.value_len > STORE_SESSION_VALUE_MAX)
            return -E2BIG;
        if (op->session.created_at == 0)
            op->session.created_at = now;
        break;
    }
    case STORE_OP_SESSION_TOUCH:
    case STORE_OP_SESSION_DELETE:
        return session_key_check(op->session.key);
    case STORE_OP_SESSION_SWEEP:
    case STORE_OP_SESSION_LOAD:
        if (op->session_load.now == 0)
            op->session_load.now = now;
        break;
    case STORE_OP_QUEUE_PAUSE:
        if (!queue_ok(op->queue_pause.queue))
            return -EINVAL;
        break;
    default:
        return -EINVAL;
    }
    return 0;
}

/* ---- The store ------------------------------------------------------ */

static void deliver(store *s);

static void on_async(uv_async_t *h) {
    store *s = h->data;
    if (s->backend->poll && !s->freeing)
        s->backend->poll(s->data);
    deliver(s);
}

static void on_async_closed(uv_handle_t *h) {
    store *s = h->data;
    store_close_fn cb = s->close_cb;
    void *data = s->close_data;
    pthread_mutex_destroy(&s->lock);
    store_idgen_destroy(&s->idgen);
    free(s);
    if (cb)
        cb(data);
}

static void deliver(store *s) {
    pthread_mutex_lock(&s->lock);
    store_op *op = s->done_head;
    s->done_head = s->done_tail = NULL;
    bool stopped = s->backend_stopped;
    pthread_mutex_unlock(&s->lock);

    while (op) {
        store_op *next = op->priv_next;
        op->priv_next = NULL;
        s->in_flight--;
        atomic_fetch_add_explicit(&s->ops, 1, memory_order_relaxed);
        /* The callback may free op: read everything first. */
        op->done(op, op->priv_result);
        op = next;
    }
    /* An idle store does not keep the loop alive (like an unref'd
     * timer); one with ops in flight, or closing, does. */
    if (s->in_flight == 0 && !s->closing)
        uv_unref((uv_handle_t *)&s->async);

    if (stopped && s->closing && !s->freeing && s->in_flight == 0) {
        s->freeing = true;
        s->backend->free(s->data);
        s->data = NULL;
        uv_close((uv_handle_t *)&s->async, on_async_closed);
    }
}

static int fault_from_env(store *s) {
    /* TEND_STORE_FAULT=<op kind|any>:<ENOSPC|EIO>[:<groups to skip>] */
    const char *e = getenv("TEND_STORE_FAULT");
    if (!e || !*e)
        return 0;
    char kind[32];
    const char *colon = strchr(e, ':');
    if (!colon || (size_t)(colon - e) >= sizeof(kind))
        return -EINVAL;
    memcpy(kind, e, colon - e);
    kind[colon - e] = 0;
    int k = -2;
    if (strcmp(kind, "any") == 0)
        k = STORE_OP_ANY;
    for (int i = 0; i < STORE_OP_KIND_MAX; i++)
        if (strcmp(kind, op_names[i]) == 0)
            k = i;
    if (k == -2)
        return -EINVAL;
    const char *err = colon + 1;
    int error;
    if (strncmp(err, "ENOSPC", 6) == 0)
        error = -ENOSPC, err += 6;
    else if (strncmp(err, "EIO", 3) == 0)
        error = -EIO, err += 3;
    else
        return -EINVAL;
    unsigned skip = 0;
    if (*err == ':') {
        char *end;
        unsigned long v = strtoul(err + 1, &end, 10);
        if (end == err + 1 || *end || v > 1000000)
            return -EINVAL;
        skip = (unsigned)v;
    } else if (*err)
        return -EINVAL;
    s->fault_kind = (store_op_kind)k;
    s->fault_error = error;
    s->fault_skip = skip;
    return 0;
}

int store_open(uv_loop_t *loop, const store_config *cfg, store **ret, char **ret_message) {
    if (ret_message)
        *ret_message = NULL;
    if (!loop || !cfg || !ret)
        return -EINVAL;
    const store_backend *b;
    switch (cfg->backend) {
    case STORE_BACKEND_SQLITE:
        b = &store_backend_sqlite;
        break;
    case STORE_BACKEND_MEMORY:
        b = &store_backend_memory;
        break;
    default:
        return -EINVAL;
    }
    store *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->backend = b;
    store_idgen_init(&s->idgen);
    pthread_mutex_init(&s->lock, NULL);
    int r = fault_from_env(s);
    if (r < 0) {
        if (ret_message)
            *ret_message =
                strdup("TEND_STORE_FAULT: expected <op|any>:<ENOSPC|EIO>[:<groups to skip>]");
        goto fail;
    }
    r = b->open(s, cfg, &s->data, ret_message);
    if (r < 0)
        goto fail;
    /* The handle last, so that every failure above is undone here,
     * without a loop iteration.  Until it exists the backend has nothing
     * to send: no op can have been submitted. */
    r = uv_async_init(loop, &s->async, on_async);
    if (r < 0) {
        b->stop(s->data);
        b->free(s->data);
        goto fail;
    }
    s->async.data = s;
    uv_unref((uv_handle_t *)&s->async);
    pthread_mutex_lock(&s->lock);
    s->async_ready = true;
    pthread_mutex_unlock(&s->lock);
    *ret = s;
    return 0;
fail:
    pthread_mutex_destroy(&s->lock);
    store_idgen_destroy(&s->idgen);
    free(s);
    return r;
}

int store_submit(store *s, store_op *op) {
    if (!s || !op || !op->done)
        return -EINVAL;
    if (s->closing)
        return -ESHUTDOWN;
    int r = validate(s, op);
    if (r < 0)
        return r;
    op->priv_next = NULL;
    op->priv_result = 0;
    /* Outputs start empty, whatever the caller left there. */
    switch (op->kind) {
    case STORE_OP_INSERT:
        op->insert.ret_existing = NULL, op->insert.ret_created = 0;
        break;
    case STORE_OP_UPDATE:
        op->update.ret_state = -1, op->update.ret_version = 0;
        break;
    case STORE_OP_FETCH_READY:
        op->fetch.ret_tasks = NULL, op->fetch.ret_n = 0;
        break;
    case STORE_OP_CLAIM:
        op->claim.ret_tasks = NULL, op->claim.ret_n = 0, op->claim.ret_borrowed = false;
        break;
    case STORE_OP_GET:
        op->get.ret_task = NULL;
        break;
    case STORE_OP_SESSION_LOAD:
        op->session_load.ret_sessions = NULL, op->session_load.ret_n = 0;
        break;
    case STORE_OP_LIST:
        op->list.ret_tasks = NULL, op->list.ret_n = 0, op->list.ret_cursor[0] = 0;
        break;
    case STORE_OP_COUNTS:
        op->counts.ret_counts = NULL, op->counts.ret_n = 0;
        break;
    case STORE_OP_RECOVER:
        op->recover.ret_requeued = op->recover.ret_dead = 0;
        op->recover.ret_paused = NULL, op->recover.ret_n_paused = 0;
        break;
    default:
        store_op_reset_outputs(op);
        break;
    }
    if (s->in_flight++ == 0)
        uv_ref((uv_handle_t *)&s->async);
    s->backend->submit(s->data, op);
    return 0;
}

void store_id_new(store *s, char ret_id[STORE_ID_SIZE]) {
    store_idgen_next(&s->idgen, now_wall_ms(), ret_id);
}

void store_close(store *s, store_close_fn cb, void *data) {
    if (!s || s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    s->close_data = data;
    /* Keep the loop alive until the backend has stopped. */
    uv_ref((uv_handle_t *)&s->async);
    s->backend->stop(s->data);
}

void store_backend_stopped(store *s) {
    pthread_mutex_lock(&s->lock);
    s->backend_stopped = true;
    bool send = s->async_ready;
    pthread_mutex_unlock(&s->lock);
    if (send)
        uv_async_send(&s->async);
}

void store_complete(store *s, store_op *head) {
    if (!head)
        return;
    store_op *tail = head;
    while (tail->priv_next)
        tail = tail->priv_next;
    pthread_mutex_lock(&s->lock);
    if (s->done_tail)
        s->done_tail->priv_next = head;
    else
        s->done_head = head;
    s->done_tail = tail;
    pthread_mutex_unlock(&s->lock);
    uv_async_send(&s->async);
}

void store_kick(store *s) {
    pthread_mutex_lock(&s->lock);
    bool send = s->async_ready;
    pthread_mutex_unlock(&s->lock);
    if (send)
        uv_async_send(&s->async);
}

int store_group_begin(store *s, const store_op *head) {
    int r = 0;
    atomic_fetch_add_explicit(&s->groups, 1, memory_order_relaxed);
    pthread_mutex_lock(&s->lock);
    if (s->fault_error) {
        bool match = s->fault_kind == STORE_OP_ANY && head;
        for (const store_op *op = head; op && !match; op = op->priv_next)
            match = op->kind == s->fault_kind;
        if (match) {
            if (s->fault_skip > 0)
                s->fault_skip--;
            else {
                r = s->fault_error;
                s->fault_error = 0;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

void store_inject_fault(store *s, store_op_kind kind, int error) {
    pthread_mutex_lock(&s->lock);
    s->fault_kind = kind;
    s->fault_error = error > 0 ? -error : error;
    s->fault_skip = 0;
    pthread_mutex_unlock(&s->lock);
}

void store_count_commit(store *s, size_t nops, size_t ntasks, bool ok) {
    if (ok) {
        atomic_fetch_add_explicit(&s->commits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->tasks_inserted, ntasks, memory_order_relaxed);
    } else
        atomic_fetch_add_explicit(&s->failed_commits, 1, memory_order_relaxed);
    uint64_t m = atomic_load_explicit(&s->max_group, memory_order_relaxed);
    while (nops > m && !atomic_compare_exchange_weak(&s->max_group, &m, nops))
        ;
}

void store_get_stats(store *s, store_stats *ret) {
    *ret = (store_stats){
        .groups = atomic_load(&s->groups),
        .commits = atomic_load(&s->commits),
        .failed_commits = atomic_load(&s->failed_commits),
        .ops = atomic_load(&s->ops),
        .tasks_inserted = atomic_load(&s->tasks_inserted),
        .max_group = atomic_load(&s->max_group),
        .in_flight = s->in_flight,
    };
}

const char *store_backend_name(store *s) {
    return s->backend->name;
}
