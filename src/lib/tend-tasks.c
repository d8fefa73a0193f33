/*
 * tend-tasks.c - the public task manager (tend/tasks.h) over the task
 * engine (task-engine.c) and the task store (store.h), on the runtime's
 * loop thread.
 *
 * Submission does not go through the loop: tend_tasks_submit() calls
 * task_engine_enqueue(), the engine's own any-thread intake (a mutex and
 * one uv_async wake-up for a burst), so the wrapper adds a payload check
 * and a read lock per task.  The read lock is what makes submission safe
 * against the engine being freed: the loop takes the write lock to
 * unpublish the engine before freeing it, so a submitter either sees the
 * engine (and it stays alive until it is done) or sees NULL.
 *
 * Everything else is a call on the loop thread; the engine's asynchronous
 * actions (get, cancel, list, requeue, ...) are deferred calls completed
 * from the engine's done callbacks.  Start and stop are too: the store is
 * opened and RECOVERed, then the engine is created and started; stop
 * shuts the engine down within the deadline, frees it and closes the
 * store.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tasks.h>

#include "macros.h"
#include "store.h"
#include "task-engine.h"
#include "tend-internal.h"
#include "timeutil.h"

#define TASKS_QUEUES_MAX 256
#define DEAD_LIST_MAX 1000

typedef struct tqueue {
    tend_task_fn fn;
    void *data;
} tqueue;

typedef struct idle_waiter {
    tend_call *call;
    int64_t deadline;
} idle_waiter;

struct tend_tasks {
    tend_runtime *rt;
    char *state_dir;
    tend_tasks_spec spec;        /* queues[] and their names are ours */
    tqueue *fns;                 /* parallel to spec.queues */
    size_t cap_queues;
    atomic_bool started;         /* the component's start was called */
    /* Loop thread. */
    store *store;
    task_engine *engine;
    store_op recover_op;
    const char **recover_uncharged; /* its input: the pull queues */
    tend_call *pending;          /* the start or stop call being answered */
    int start_error;             /* why the start failed, for the store-closed callback */
    char err[TEND_ERROR_MAX];
    idle_waiter *waiters;
    size_t n_waiters, cap_waiters;
    uv_timer_t idle_timer;
    bool idle_timer_on;
    /* Submitters. */
    pthread_rwlock_t pub_lock;
    task_engine *pub;            /* the engine, for submitters; NULL before start / after stop */
    atomic_bool stopping;
    atomic_uint_fast64_t enqueued_plain; /* submitted without an idempotency key */
};

/* ---- Small things ------------------------------------------------------ */

static const char *const prio_names[] = {"critical", "high", "normal", "low", "background"};
static const char *const state_names[] = {"pending", "scheduled", "running", "succeeded", "dead", "cancelled"};
static const char *const breaker_names[] = {"closed", "half-open", "open"};

TEND_EXPORT const char *tend_task_state_to_string(tend_task_state s) {
    return (unsigned)s < ELEMENTSOF(state_names) ? state_names[s] : NULL;
}
TEND_EXPORT const char *tend_priority_to_string(tend_priority p) {
    return (unsigned)p < ELEMENTSOF(prio_names) ? prio_names[p] : NULL;
}
TEND_EXPORT const char *tend_breaker_state_to_string(tend_breaker_state b) {
    return (unsigned)b < ELEMENTSOF(breaker_names) ? breaker_names[b] : NULL;
}

_Static_assert((int)TEND_PRIORITY_BACKGROUND == (int)STORE_PRIORITY_BACKGROUND, "priorities mirror the store's");
_Static_assert((int)TEND_TASK_CANCELLED == (int)STORE_TASK_CANCELLED, "states mirror the store's");
_Static_assert((int)TEND_BREAKER_OPEN == (int)BREAKER_OPEN, "breaker states mirror breaker.h");

TEND_EXPORT void tend_tasks_options_init(tend_tasks_options *o) {
    if (!o)
        return;
    *o = (tend_tasks_options){
        .name = "tasks",
        .workers = 10,
        .max_payload = 256 * 1024,
        .retention_succeeded_ms = 24LL * 3600 * 1000,
        .retention_dead_ms = 7LL * 24 * 3600 * 1000,
    };
}

TEND_EXPORT void tend_queue_options_init(tend_queue_options *o) {
    if (!o)
        return;
    tend_queue_spec q;
    tend_queue_spec_init(&q);
    *o = (tend_queue_options){
        .concurrency = q.concurrency,
        .timeout_ms = q.timeout_ms,
        .max_attempts = q.max_attempts,
        .backoff_base_ms = q.backoff_base_ms,
        .backoff_max_ms = q.backoff_max_ms,
        .backoff_jitter = q.backoff_jitter,
        .breaker_open_ms = q.breaker_open_ms,
        .batch_size = q.batch_size,
        .batch_max_wait_ms = q.batch_max_wait_ms,
    };
}

TEND_EXPORT void tend_task_options_init(tend_task_options *o) {
    if (!o)
        return;
    *o = (tend_task_options){.priority = TEND_PRIORITY_NORMAL};
}

/* ---- The task function's side ----------------------------------------- */

/* The public context is the engine's, behind an opaque name. */
static task_func_ctx *C(const tend_task_ctx *c) { return (task_func_ctx *)c; }

TEND_EXPORT const char *tend_task_queue(const tend_task_ctx *c) { return c ? C(c)->queue : NULL; }
TEND_EXPORT size_t tend_task_count(const tend_task_ctx *c) { return c ? C(c)->n : 0; }
TEND_EXPORT const char *tend_task_id(const tend_task_ctx *c, size_t i) {
    return c && i < C(c)->n ? C(c)->items[i].id : NULL;
}
TEND_EXPORT const char *tend_task_payload(const tend_task_ctx *c, size_t i, size_t *ret_len) {
    if (!c || i >= C(c)->n)
        return NULL;
    if (ret_len)
        *ret_len = C(c)->items[i].payload_len;
    return C(c)->items[i].payload;
}
TEND_EXPORT int tend_task_attempt(const tend_task_ctx *c, size_t i) {
    return c && i < C(c)->n ? C(c)->items[i].attempt : 0;
}
TEND_EXPORT void tend_task_set_error(tend_task_ctx *c, const char *fmt, ...) {
    if (!c || !fmt)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(C(c)->error, sizeof(C(c)->error), fmt, ap);
    va_end(ap);
}
TEND_EXPORT int tend_task_fail_item(tend_task_ctx *c, size_t i) {
    if (!c || !C(c)->failed)
        return -EINVAL;
    if (i >= C(c)->n)
        return -ERANGE;
    C(c)->failed[i] = true;
    return 0;
}
TEND_EXPORT bool tend_task_cancelled(const tend_task_ctx *c) { return c ? task_func_cancelled(C(c)) : true; }

static int func_adapter(task_func_ctx *ctx, void *ud) {
    tqueue *q = ud;
    int r = q->fn((tend_task_ctx *)ctx, q->data);
    if (r == 0)
        return 0;
    return r == TEND_TASK_PERMANENT ? TASK_FUNC_PERMANENT : 1;
}

/* ---- Idle waiters (loop thread) ---------------------------------------- */

static bool is_idle(tend_tasks *t) {
    task_engine_stats st;
    task_engine_get_stats(t->engine, &st);
    return st.queue_depth == 0 && st.running_tasks == 0 &&
           st.submitted + st.intake_failed >= atomic_load(&t->enqueued_plain);
}

static void arm_idle_timer(tend_tasks *t);

static void check_waiters(tend_tasks *t, bool stopping) {
    if (t->n_waiters == 0)
        return;
    bool idle = !stopping && is_idle(t);
    int64_t now = now_mono_ms();
    size_t w = 0;
    for (size_t i = 0; i < t->n_waiters; i++) {
        idle_waiter *iw = &t->waiters[i];
        if (stopping)
            tend_loop_complete(t->rt->loop, iw->call, -ESHUTDOWN);
        else if (idle)
            tend_loop_complete(t->rt->loop, iw->call, 0);
        else if (iw->deadline <= now)
            tend_loop_complete(t->rt->loop, iw->call, -ETIMEDOUT);
        else
            t->waiters[w++] = *iw;
    }
    t->n_waiters = w;
    arm_idle_timer(t);
}

static void on_idle_timer(uv_timer_t *h) { check_waiters(h->data, false); }

static void arm_idle_timer(tend_tasks *t) {
    if (!t->idle_timer_on)
        return;
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < t->n_waiters; i++)
        next = MIN(next, t->waiters[i].deadline);
    if (next == INT64_MAX) {
        uv_timer_stop(&t->idle_timer);
        return;
    }
    int64_t d = next - now_mono_ms();
    uv_timer_start(&t->idle_timer, on_idle_timer, (uint64_t)MAX(d, 0), 0);
}

static void on_engine_state(void *data, const char *id, const char *queue, store_task_state from,
                            store_task_state to) {
    tend_tasks *t = data;
    if (t->n_waiters)
        check_waiters(t, false);
}

/* ---- Start and stop (deferred calls on the loop) ------------------------ */

static void finish_pending(tend_tasks *t, int r) {
    tend_call *c = t->pending;
    t->pending = NULL;
    if (c)
        tend_loop_complete(t->rt->loop, c, r);
}

static void on_start_failed_closed(void *data) {
    tend_tasks *t = data;
    t->store = NULL;
    finish_pending(t, t->start_error < 0 ? t->start_error : -EIO);
}

static void on_recovered(store_op *op, int result) {
    tend_tasks *t = op->userdata;
    free(t->recover_uncharged);
    t->recover_uncharged = NULL;
    int r = result;
    if (r >= 0) {
        task_engine_config cfg = {
            .loop = &t->rt->loop->uv,
            .store = t->store,
            .spec = &t->spec,
            .cb = {.data = t, .state_changed = on_engine_state},
            .paused = op->recover.ret_paused,
            .n_paused = op->recover.ret_n_paused,
        };
        r = task_engine_new(&cfg, &t->engine, t->err, sizeof(t->err));
        for (size_t i = 0; r >= 0 && i < t->spec.n_queues; i++)
            r = task_engine_set_func(t->engine, t->spec.queues[i].name, func_adapter, &t->fns[i]);
        store_op_clear(op);
        if (r >= 0)
            r = task_engine_start(t->engine);
        if (r < 0 && t->engine) {
            task_engine_free(t->engine);
            t->engine = NULL;
        }
    } else
        snprintf(t->err, sizeof(t->err), "recovering the task store: %s", strerror(-r));
    if (r < 0) {
        t->start_error = r;
        store_close(t->store, on_start_failed_closed, t);
        return;
    }
    uv_timer_init(&t->rt->loop->uv, &t->idle_timer);
    t->idle_timer.data = t;
    t->idle_timer_on = true;
    pthread_rwlock_wrlock(&t->pub_lock);
    t->pub = t->engine;
    pthread_rwlock_unlock(&t->pub_lock);
    finish_pending(t, 0);
}

static void call_start(tend_loop *l, tend_call *c) {
    tend_tasks *t = c->arg;
    store_config sc = {
        .backend = t->state_dir ? STORE_BACKEND_SQLITE : STORE_BACKEND_MEMORY,
        .state_dir = t->state_dir,
        .sync = STORE_SYNC_FULL,
    };
    char *msg = NULL;
    int r = store_open(&l->uv, &sc, &t->store, &msg);
    if (r < 0) {
        snprintf(t->err, sizeof(t->err), "opening the task store: %s", msg ? msg : strerror(-r));
        free(msg);
        c->result = r;
        return;
    }
    free(msg);
    t->recover_op = (store_op){.kind = STORE_OP_RECOVER, .done = on_recovered, .userdata = t};
    t->recover_op.recover.now = now_wall_ms();
    r = task_engine_recover_uncharged(&t->spec, &t->recover_uncharged, &t->recover_op.recover.n_uncharged);
    t->recover_op.recover.uncharged = t->recover_uncharged;
    if (r == 0)
        r = store_submit(t->store, &t->recover_op);
    if (r < 0) {
        free(t->recover_uncharged);
        t->recover_uncharged = NULL;
    }
    if (r < 0) {
        snprintf(t->err, sizeof(t->err), "recovering the task store: %s", strerror(-r));
        t->start_error = r;
        t->pending = c;
        c->deferred = true;
        store_close(t->store, on_start_failed_closed, t);
        return;
    }
    t->pending = c;
    c->deferred = true;
}

static int comp_start(tend_runtime *rt, void *data, char *err, size_t err_size) {
    tend_tasks *t = data;
    t->err[0] = '\0';
    int r = tend_loop_call(rt->loop, call_start, t);
    /* From now on a missing engine means it is gone, not yet there. */
    atomic_store(&t->started, true);
    if (r < 0)
        snprintf(err, err_size, "%s", t->err[0] ? t->err : strerror(-r));
    return r;
}

static void on_stop_closed(void *data) {
    tend_tasks *t = data;
    t->store = NULL;
    finish_pending(t, 0);
}

static void on_engine_down(void *data) {
    tend_tasks *t = data;
    pthread_rwlock_wrlock(&t->pub_lock);
    t->pub = NULL;
    pthread_rwlock_unlock(&t->pub_lock);
    check_waiters(t, true);
    if (t->idle_timer_on) {
        uv_close((uv_handle_t *)&t->idle_timer, NULL);
        t->idle_timer_on = false;
    }
    task_engine_free(t->engine);
    t->engine = NULL;
    store_close(t->store, on_stop_closed, t);
}

typedef struct stop_args {
    tend_tasks *t;
    int64_t timeout_ms;
} stop_args;

static void call_stop(tend_loop *l, tend_call *c) {
    stop_args *a = c->arg;
    tend_tasks *t = a->t;
    if (!t->engine) {
        c->result = 0;
        return;
    }
    t->pending = c;
    c->deferred = true;
    task_engine_shutdown(t->engine, a->timeout_ms, on_engine_down, t);
}

static void comp_stop(tend_runtime *rt, void *data, int64_t timeout_ms) {
    tend_tasks *t = data;
    atomic_store(&t->stopping, true);
    stop_args a = {t, timeout_ms};
    (void)tend_loop_call(rt->loop, call_stop, &a);
}

static void comp_destroy(void *data) {
    tend_tasks *t = data;
    for (size_t i = 0; i < t->spec.n_queues; i++)
        tend_queue_spec_clear(&t->spec.queues[i]);
    free(t->spec.queues);
    free(t->fns);
    free(t->waiters);
    free(t->state_dir);
    pthread_rwlock_destroy(&t->pub_lock);
    free(t);
}

TEND_EXPORT int tend_tasks_new(tend_runtime *rt, const tend_tasks_options *opts, tend_tasks **ret) {
    tend_tasks_options o;
    if (opts)
        o = *opts;
    else
        tend_tasks_options_init(&o);
    if (!rt || !ret || o.workers < 0 || o.workers > 1024 || o.max_payload > STORE_PAYLOAD_MAX ||
        o.retention_succeeded_ms < 0 || o.retention_dead_ms < 0 || (o.state_dir && o.state_dir[0] != '/'))
        return -EINVAL;
    tend_tasks *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->rt = rt;
    t->spec = (tend_tasks_spec){
        .workers = o.workers ? o.workers : 10,
        .retention_succeeded_ms = o.retention_succeeded_ms,
        .retention_dead_ms = o.retention_dead_ms,
        .max_payload = o.max_payload ? o.max_payload : 256 * 1024,
    };
    if (o.state_dir && !(t->state_dir = strdup(o.state_dir))) {
        free(t);
        return -ENOMEM;
    }
    pthread_rwlock_init(&t->pub_lock, NULL);
    tend_component_spec spec;
    tend_component_spec_init(&spec);
    spec.name = o.name ? o.name : "tasks";
    spec.deps = o.deps;
    spec.start = comp_start;
    spec.stop = comp_stop;
    spec.data = t;
    int r = tend_runtime_add_internal(rt, &spec, comp_destroy);
    if (r < 0) {
        comp_destroy(t);
        return r;
    }
    *ret = t;
    return 0;
}

TEND_EXPORT int tend_tasks_add_queue(tend_tasks *t, const tend_queue_options *o) {
    if (!t || !o || !o->name || !tend_name_valid(o->name, strlen(o->name)) || !o->fn || o->concurrency < 0 ||
        o->timeout_ms < 0 || o->max_attempts < 0 || o->backoff_base_ms < 0 || o->backoff_max_ms < 0 ||
        o->backoff_jitter < 0 || o->backoff_jitter > 1 || o->rate_per_sec < 0 ||
        o->breaker_failure_threshold < 0 || o->breaker_open_ms < 0 || o->batch_size < 0 ||
        o->batch_max_wait_ms < 0)
        return -EINVAL;
    tend_runtime *rt = t->rt;
    pthread_mutex_lock(&rt->lock);
    int r = 0;
    if (rt->state != TEND_RUNTIME_CREATED || rt->shutdown_called)
        r = -EBUSY;
    for (size_t i = 0; r == 0 && i < t->spec.n_queues; i++)
        if (strcmp(t->spec.queues[i].name, o->name) == 0)
            r = -EEXIST;
    if (r == 0 && t->spec.n_queues >= TASKS_QUEUES_MAX)
        r = -ENOSPC;
    if (r == 0 && t->spec.n_queues == t->cap_queues) {
        size_t nc = t->cap_queues ? 2 * t->cap_queues : 4;
        tend_queue_spec *nq = realloc(t->spec.queues, nc * sizeof(*nq));
        if (nq)
            t->spec.queues = nq;
        tqueue *nf = nq ? realloc(t->fns, nc * sizeof(*nf)) : NULL;
        if (nf)
            t->fns = nf;
        if (!nq || !nf)
            r = -ENOMEM;
        else
            t->cap_queues = nc;
    }
    if (r == 0) {
        tend_queue_spec *q = &t->spec.queues[t->spec.n_queues];
        tend_queue_spec_init(q);
        if (!(q->name = strdup(o->name)))
            r = -ENOMEM;
        else {
            q->handler = TEND_HANDLER_FUNC;
            if (o->concurrency)
                q->concurrency = o->concurrency;
            if (o->timeout_ms)
                q->timeout_ms = o->timeout_ms;
            if (o->max_attempts)
                q->max_attempts = o->max_attempts;
            if (o->backoff_base_ms)
                q->backoff_base_ms = o->backoff_base_ms;
            if (o->backoff_max_ms)
                q->backoff_max_ms = o->backoff_max_ms;
            q->backoff_jitter = o->backoff_jitter;
            q->rate_per_sec = o->rate_per_sec;
            q->breaker_failure_threshold = o->breaker_failure_threshold;
            if (o->breaker_open_ms)
                q->breaker_open_ms = o->breaker_open_ms;
            q->batch = o->batch;
            if (o->batch_size)
                q->batch_size = o->batch_size;
            if (o->batch_max_wait_ms)
                q->batch_max_wait_ms = o->batch_max_wait_ms;
            t->fns[t->spec.n_queues] = (tqueue){o->fn, o->data};
            t->spec.n_queues++;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    return r;
}

/* ---- Submission (any thread) ------------------------------------------- */

TEND_EXPORT int tend_tasks_submit(tend_tasks *t, const char *queue, const char *payload,
                                  const tend_task_options *opts, char ret_id[TEND_TASK_ID_SIZE]) {
    if (!t || !queue)
        return -EINVAL;
    tend_task_options o;
    if (opts)
        o = *opts;
    else
        tend_task_options_init(&o);
    if ((unsigned)o.priority > TEND_PRIORITY_BACKGROUND || o.delay_ms < 0 || o.max_attempts < 0 ||
        o.timeout_ms < 0)
        return -EINVAL;
    size_t len = payload ? strlen(payload) : 0;
    if (payload) {
        if (len > t->spec.max_payload)
            return -E2BIG;
        json_error_t jerr;
        json_t *v = json_loadb(payload, len, JSON_DECODE_ANY, &jerr);
        if (!v)
            return -EINVAL;
        json_decref(v);
    }
    task_submit sub = {
        .payload = payload,
        .payload_len = len,
        .priority = (int)o.priority,
        .delay_ms = o.delay_ms,
        .max_attempts = o.max_attempts,
        .timeout_ms = o.timeout_ms,
        .idempotency_key = o.idempotency_key,
    };
    if (atomic_load_explicit(&t->stopping, memory_order_relaxed))
        return -ESHUTDOWN;
    pthread_rwlock_rdlock(&t->pub_lock);
    int r;
    if (!t->pub)
        r = atomic_load(&t->stopping) || atomic_load(&t->started) ? -ESHUTDOWN : -EAGAIN;
    else {
        /* Counted before the engine can count it as submitted. */
        if (!o.idempotency_key)
            atomic_fetch_add_explicit(&t->enqueued_plain, 1, memory_order_relaxed);
        char id[STORE_ID_SIZE];
        r = task_engine_enqueue(t->pub, queue, &sub, id);
        if (r < 0 && !o.idempotency_key)
            atomic_fetch_sub_explicit(&t->enqueued_plain, 1, memory_order_relaxed);
        if (r >= 0 && ret_id)
            memcpy(ret_id, id, TEND_TASK_ID_SIZE);
    }
    pthread_rwlock_unlock(&t->pub_lock);
    return r < 0 ? r : 0;
}

/* ---- Loop-side actions --------------------------------------------------- */

typedef struct act_args {
    tend_tasks *t;
    const char *arg;             /* id or queue */
    size_t max;
    bool flag;
    tend_task_info *info;        /* get/cancel/retry: one; list: an array */
    size_t n;
    tend_queue_stats *qstats;
    tend_tasks_stats *stats;
    int64_t timeout_ms;
    tend_call *call;
} act_args;

/* The engine must be running for any action: -EAGAIN before, -ESHUTDOWN after. */
static int engine_ready(tend_tasks *t) {
    if (t->engine && !task_engine_stopping(t->engine))
        return 0;
    return atomic_load(&t->started) || atomic_load(&t->stopping) ? -ESHUTDOWN : -EAGAIN;
}

static void fill_info(tend_task_info *out, const store_task *s) {
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", s->id);
    snprintf(out->queue, sizeof(out->queue), "%s", s->queue ? s->queue : "");
    out->state = (tend_task_state)s->state;
    out->priority = (tend_priority)s->priority;
    out->attempts = s->attempts;
    out->max_attempts = s->max_attempts;
    out->created_at_ms = s->created_at;
    out->finished_at_ms = s->finished_at;
    snprintf(out->last_error, sizeof(out->last_error), "%s", s->last_error ? s->last_error : "");
}

static void on_task_done(void *data, int result, const store_task *task) {
    act_args *a = data;
    if (task && a->info)
        fill_info(a->info, task);
    tend_loop_complete(a->t->rt->loop, a->call, result < 0 ? result : 0);
}

enum { ACT_GET, ACT_CANCEL, ACT_RETRY };

static int start_task_action(act_args *a, tend_call *c, int which) {
    tend_tasks *t = a->t;
    a->call = c;
    switch (which) {
    case ACT_GET:
        return task_engine_get(t->engine, a->arg, on_task_done, a);
    case ACT_CANCEL:
        return task_engine_cancel(t->engine, a->arg, on_task_done, a);
    default:
        return task_engine_retry(t->engine, a->arg, on_task_done, a);
    }
}

#define DEFINE_TASK_CALL(fname, which)                                \
    static void fname(tend_loop *l, tend_call *c) {                   \
        act_args *a = c->arg;                                         \
        int r = engine_ready(a->t);                                   \
        if (r == 0)                                                   \
            r = start_task_action(a, c, which);                       \
        if (r < 0)                                                    \
            c->result = r;                                            \
        else                                                          \
            c->deferred = true;                                       \
    }
DEFINE_TASK_CALL(call_get, ACT_GET)
DEFINE_TASK_CALL(call_cancel, ACT_CANCEL)
DEFINE_TASK_CALL(call_retry, ACT_RETRY)

static int task_call(tend_tasks *t, const char *id, tend_call_fn fn, tend_task_info *info) {
    if (!t || !id)
        return -EINVAL;
    if (tend_loop_on_thread(t->rt->loop))
        return -EDEADLK;
    tend_task_info tmp;
    act_args a = {.t = t, .arg = id, .info = info ? info : &tmp};
    return tend_loop_call(t->rt->loop, fn, &a);
}

TEND_EXPORT int tend_tasks_get(tend_tasks *t, const char *id, tend_task_info *ret) {
    if (!ret)
        return -EINVAL;
    tend_task_info info;
    int r = task_call(t, id, call_get, &info);
    if (r == 0)
        *ret = info;
    return r;
}
TEND_EXPORT int tend_tasks_cancel(tend_tasks *t, const char *id) { return task_call(t, id, call_cancel, NULL); }
TEND_EXPORT int tend_tasks_retry(tend_tasks *t, const char *id) { return task_call(t, id, call_retry, NULL); }

static void on_list_done(void *data, int result, const store_task *tasks, size_t n, const char *next) {
    act_args *a = data;
    if (result >= 0 && n > 0) {
        a->info = calloc(n, sizeof(tend_task_info));
        if (!a->info)
            result = -ENOMEM;
        else {
            for (size_t i = 0; i < n; i++)
                fill_info(&a->info[i], &tasks[i]);
            a->n = n;
        }
    }
    tend_loop_complete(a->t->rt->loop, a->call, result < 0 ? result : 0);
}

static void call_list_dead(tend_loop *l, tend_call *c) {
    act_args *a = c->arg;
    int r = engine_ready(a->t);
    if (r == 0 && task_engine_queue_index(a->t->engine, a->arg) < 0)
        r = -ENOENT;
    a->call = c;
    if (r == 0)
        r = task_engine_list(a->t->engine, a->arg, STORE_TASK_DEAD, a->max, NULL, on_list_done, a);
    if (r < 0)
        c->result = r;
    else
        c->deferred = true;
}

TEND_EXPORT int tend_tasks_list_dead(tend_tasks *t, const char *queue, size_t max, tend_task_info **ret) {
    if (!t || !queue || !ret || max == 0 || max > DEAD_LIST_MAX)
        return -EINVAL;
    if (tend_loop_on_thread(t->rt->loop))
        return -EDEADLK;
    act_args a = {.t = t, .arg = queue, .max = max};
    int r = tend_loop_call(t->rt->loop, call_list_dead, &a);
    if (r < 0) {
        free(a.info);
        return r;
    }
    *ret = a.info;
    return (int)a.n;
}

static void on_count_done(void *data, int result) {
    act_args *a = data;
    tend_loop_complete(a->t->rt->loop, a->call, result);
}

static void call_dead_action(tend_loop *l, tend_call *c) {
    act_args *a = c->arg;
    int r = engine_ready(a->t);
    if (r == 0 && task_engine_queue_index(a->t->engine, a->arg) < 0)
        r = -ENOENT;
    a->call = c;
    if (r == 0)
        r = a->flag ? task_engine_purge_dead(a->t->engine, a->arg, on_count_done, a)
                    : task_engine_requeue_dead(a->t->engine, a->arg, on_count_done, a);
    if (r < 0)
        c->result = r;
    else
        c->deferred = true;
}

static int dead_action(tend_tasks *t, const char *queue, bool purge) {
    if (!t || !queue)
        return -EINVAL;
    if (tend_loop_on_thread(t->rt->loop))
        return -EDEADLK;
    act_args a = {.t = t, .arg = queue, .flag = purge};
    return tend_loop_call(t->rt->loop, call_dead_action, &a);
}

TEND_EXPORT int tend_tasks_requeue_dead(tend_tasks *t, const char *queue) { return dead_action(t, queue, false); }
TEND_EXPORT int tend_tasks_purge_dead(tend_tasks *t, const char *queue) { return dead_action(t, queue, true); }

/* Answered once the queue's new state is durable (it outlives a restart
 * with a state_dir); the change itself is made at once. */
static void call_pause(tend_loop *l, tend_call *c) {
    act_args *a = c->arg;
    int r = engine_ready(a->t);
    a->call = c;
    if (r == 0)
        r = task_engine_pause(a->t->engine, a->arg, a->flag, on_count_done, a);
    if (r < 0)
        c->result = r;
    else
        c->deferred = true;
}

TEND_EXPORT int tend_tasks_pause(tend_tasks *t, const char *queue, bool paused) {
    if (!t || !queue)
        return -EINVAL;
    if (tend_loop_on_thread(t->rt->loop))
        return -EDEADLK;
    act_args a = {.t = t, .arg = queue, .flag = paused};
    return tend_loop_call(t->rt->loop, call_pause, &a);
}

static void call_queue_stats(tend_loop *l, tend_call *c) {
    act_args *a = c->arg;
    int r = engine_ready(a->t);
    int idx = r < 0 ? r : task_engine_queue_index(a->t->engine, a->arg);
    task_queue_info in;
    if (idx < 0 || (r = task_engine_queue_info(a->t->engine, (size_t)idx, &in)) < 0) {
        c->result = idx < 0 ? (r < 0 ? r : -ENOENT) : r;
        return;
    }
    tend_queue_stats *s = a->qstats;
    memset(s, 0, sizeof(*s));
    s->depth = in.depth;
    for (int p = 0; p < STORE_PRIORITY_MAX; p++)
        s->depth_by_priority[p] = in.n[STORE_TASK_PENDING][p] + in.n[STORE_TASK_SCHEDULED][p];
    s->running = in.running;
    s->dead = in.dead;
    s->succeeded_total = in.finished[TASK_RESULT_SUCCEEDED];
    s->failed_total = in.finished[TASK_RESULT_FAILED];
    s->dead_total = in.finished[TASK_RESULT_DEAD];
    s->cancelled_total = in.finished[TASK_RESULT_CANCELLED];
    s->breaker = (tend_breaker_state)in.breaker;
    s->breaker_opened_total = in.breaker_opened_total;
    s->paused = in.paused;
    s->average_ms = in.avg_ms;
    s->throughput_per_second = in.throughput;
    c->result = 0;
}

TEND_EXPORT int tend_tasks_queue_stats(tend_tasks *t, const char *queue, tend_queue_stats *ret) {
    if (!t || !queue || !ret)
        return -EINVAL;
    tend_queue_stats s;
    act_args a = {.t = t, .arg = queue, .qstats = &s};
    int r = tend_loop_call(t->rt->loop, call_queue_stats, &a);
    if (r == 0)
        *ret = s;
    return r;
}

static void call_stats(tend_loop *l, tend_call *c) {
    act_args *a = c->arg;
    int r = engine_ready(a->t);
    if (r < 0) {
        c->result = r;
        return;
    }
    task_engine_stats st;
    task_engine_get_stats(a->t->engine, &st);
    *a->stats = (tend_tasks_stats){
        .running = st.running_tasks,
        .depth = st.queue_depth,
        .dead = st.dead_letter_count,
        .submitted = st.submitted,
        .total_processed = st.total_processed,
        .success_rate = st.success_rate,
        .average_ms = st.average_processing_time_ms,
        .throughput_per_second = st.throughput_per_second,
    };
    c->result = 0;
}

TEND_EXPORT int tend_tasks_get_stats(tend_tasks *t, tend_tasks_stats *ret) {
    if (!t || !ret)
        return -EINVAL;
    tend_tasks_stats s;
    act_args a = {.t = t, .stats = &s};
    int r = tend_loop_call(t->rt->loop, call_stats, &a);
    if (r == 0)
        *ret = s;
    return r;
}

static void call_wait_idle(tend_loop *l, tend_call *c) {
    act_args *a = c->arg;
    tend_tasks *t = a->t;
    int r = engine_ready(t);
    if (r < 0) {
        c->result = r;
        return;
    }
    if (is_idle(t)) {
        c->result = 0;
        return;
    }
    if (t->n_waiters == t->cap_waiters) {
        size_t nc = t->cap_waiters ? 2 * t->cap_waiters : 4;
        idle_waiter *n = realloc(t->waiters, nc * sizeof(*n));
        if (!n) {
            c->result = -ENOMEM;
            return;
        }
        t->waiters = n;
        t->cap_waiters = nc;
    }
    t->waiters[t->n_waiters++] = (idle_waiter){c, now_mono_ms() + a->timeout_ms};
    c->deferred = true;
    arm_idle_timer(t);
}

TEND_EXPORT int tend_tasks_wait_idle(tend_tasks *t, int64_t timeout_ms) {
    if (!t || timeout_ms < 0)
        return -EINVAL;
    if (tend_loop_on_thread(t->rt->loop))
        return -EDEADLK;
    act_args a = {.t = t, .timeout_ms = timeout_ms};
    return tend_loop_call(t->rt->loop, call_wait_idle, &a);
}
