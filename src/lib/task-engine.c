/*
 * task-engine.c - the task engine's core: queues, dispatch, outcomes,
 * actions, pull leases, intake, counts, retention and shutdown.  See
 * task-engine.h for the contract and docs/tasks-engine notes in
 * docs/architecture.md.
 *
 * Dispatch is "claim what can start now": for each queue, pump() works
 * out how many tasks may start (free slots of the queue and of the global
 * worker limit, rate-limit tokens, the breaker's single trial) and issues
 * one CLAIM of that many; the claimed records become runs handed to the
 * queue's backend.  A queue's `maybe_ready` flag says whether the store may
 * hold ready tasks: set by every event that can make one ready (an insert,
 * a retry, a requeue, a scheduled time reached), cleared when a CLAIM
 * returns fewer than asked.  Store callbacks run in submission order, so a
 * CLAIM that raced an INSERT completes first and the INSERT's callback
 * sets the flag again; an event with no store callback after the CLAIM (a
 * scheduled time reached while it was in flight) bumps ready_gen, and a
 * short CLAIM leaves the flag set when the generation moved: no ready task
 * is ever forgotten.
 *
 * Scheduled tasks (delayed, backing off) are remembered by time only: a
 * capped min-heap of run_at values per queue arms the queue's timer.  When
 * the heap overflows, or at start (scheduled tasks left by a previous run),
 * a 1 s sweep stands in for it while the counts say scheduled tasks exist.
 */
#include "task-engine.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "backoff.h"
#include "batch.h"
#include "handler.h"
#include "http-client.h"
#include "macros.h"
#include "strbuf.h"
#include "timeutil.h"
#include "token-bucket.h"

#define SCHED_HEAP_MAX 4096         /* run_at values remembered per queue */
#define SWEEP_MS 1000               /* scheduled tasks of unknown time */
#define COUNTS_REFRESH_MS 2000
#define RETENTION_PERIOD_MS 60000
#define RETENTION_BATCH 1000
#define UPDATE_RETRY_MS 1000
#define RATE_SLOTS 10
/* Pull queues claim ahead of the reserves (a window of leases ready to
 * hand out), so a reserve is answered without waiting for a commit; a
 * claimed lease not handed out within PULL_HOLD_MS goes back to pending
 * with its attempt uncounted. */
#define PULL_PREFETCH_MAX 64
#define PULL_PREFETCH_PER_WAITER 8
/* With `ack: async` acks no longer wait for commits, so the claims are
 * what a commit's latency bounds: a wider window keeps a few fast workers
 * fed (the price: after a crash, up to this many claimed but unreserved
 * tasks have an attempt charged by RECOVER). */
#define PULL_PREFETCH_MAX_ASYNC 512
#define PULL_HOLD_MS 2000
/* A C-function queue over the memory store whose concurrency is not
 * below tasks.workers hands the pool a window of up to FUNC_WINDOW tasks:
 * the pool's tasks.workers threads are then what limits the tasks running
 * at once (the queue's limit cannot bind), and the loop claims, dispatches
 * and records outcomes thousands at a time instead of a handful per
 * round trip.  Not over SQLite: a claimed task counts an attempt, which a
 * crash would charge to tasks that never started. */
#define FUNC_WINDOW 4096

typedef struct tq tq;
typedef struct waiter waiter;

struct waiter {
    tq *q;
    task_reserve_done done;
    void *data;
    uv_timer_t timer;
    bool has_timer;
    waiter *prev, *next;
};

struct tq {
    task_engine *e;
    const tend_queue_spec *spec;
    size_t index;
    const handler_backend *backend; /* NULL: pull */
    task_func fn;
    void *fn_data;
    bool paused;
    bool windowed;          /* see FUNC_WINDOW */
    bool maybe_ready;
    /* Bumped by every mark_ready(): a CLAIM (or batch FETCH) that comes
     * back short clears maybe_ready only if nothing made a task ready
     * while it was in flight (a scheduled time reached meanwhile has no
     * store callback after it to set the flag again). */
    uint64_t ready_gen;
    bool claim_in_flight;
    bool fetch_in_flight, refetch;
    size_t claiming;        /* slots held by the claim in flight */
    size_t running;         /* runs (push) or leases (pull) */
    int64_t counts[STORE_TASK_STATE_MAX][STORE_PRIORITY_MAX];
    breaker br;
    token_bucket tb;
    batch bt;
    uv_timer_t timer;
    int64_t *sched;         /* min-heap of run_at (wall ms) */
    size_t n_sched;
    bool sched_unknown;     /* scheduled tasks whose time is not in the heap */
    waiter *waiters, *waiters_tail;
    size_t n_waiters;
    int64_t last_reserve_ms;
    task_run *held, *held_tail; /* pull: claimed, not yet handed out (FIFO) */
    size_t n_held;
    uint64_t submitted[STORE_PRIORITY_MAX];
    uint64_t finished[4];
    histogram duration, batch_hist;
    double dur_sum_ms;
    uint64_t dur_n;
    int64_t slot_sec[RATE_SLOTS];
    uint32_t slot_n[RATE_SLOTS];
};

/*
 * Tasks enqueued from any thread since the loop last drained: chunks of
 * INTAKE_CHUNK records (the INSERTs' own input, no per-task allocation;
 * one INSERT per chunk, which frees it), each with one text buffer for
 * its payloads, keys and tags.  Until the loop drains a chunk its text
 * may move (it grows by realloc), so the records' string fields are left
 * NULL and off[] holds each string's offset + 1 (0: none);
 * drain_intake() sets the pointers.  A chunk is under 100 KiB, so malloc
 * serves it from its heap and recycles it (no fresh pages per chunk, no
 * array doubling on the submitter's side).
 */
#define INTAKE_CHUNK 512

typedef struct intake_text {
    size_t payload, key, tags;
} intake_text;

typedef struct intake_buf {
    struct intake_buf *next;
    size_t n;
    char *text;
    size_t text_len, text_cap;
    size_t qidx[INTAKE_CHUNK];
    intake_text off[INTAKE_CHUNK];
    store_task tasks[INTAKE_CHUNK];
} intake_buf;

typedef struct upd upd;

/*
 * A few freed objects of one kind kept for reuse (loop thread): a
 * C-function queue's window makes and drops thousands of runs and outcome
 * writes per loop iteration, more than malloc's per-thread cache holds,
 * and its slow path cost about a tenth of the loop's time.  Bounded:
 * at most OBJ_CACHE_MAX objects stay.
 */
#define OBJ_CACHE_MAX 1024

typedef struct obj_cache {
    void *head; /* each free object's first word links the next */
    size_t n;
} obj_cache;

/* A zeroed object of size bytes, from the cache or calloc. */
static void *cache_get(obj_cache *c, size_t size) {
    void *o = c->head;
    if (!o)
        return calloc(1, size);
    c->head = *(void **)o;
    c->n--;
    memset(o, 0, size);
    return o;
}

static void cache_put(obj_cache *c, void *o) {
    if (c->n >= OBJ_CACHE_MAX) {
        free(o);
        return;
    }
    *(void **)o = c->head;
    c->head = o;
    c->n++;
}

static void cache_clear(obj_cache *c) {
    while (c->head) {
        void *o = c->head;
        c->head = *(void **)o;
        free(o);
    }
    c->n = 0;
}

struct task_engine {
    uv_loop_t *loop;
    store *st;
    const tend_tasks_spec *spec;
    task_engine_callbacks cb;
    handler_env env;
    tq *qs;
    size_t n_qs;
    size_t running;         /* push runs over all queues */
    size_t claiming;
    bool started, stopping, drained, closing;
    /* handler_batch(): runs finishing together pump once at the end, and
     * share one reading of the clocks (taken at the outermost begin). */
    int done_batch;
    bool done_batch_pump;
    int64_t batch_mono_ms, batch_wall_ms;
    size_t ops_in_flight;
    /* The run deadline heap (timeouts and pull leases). */
    task_run **heap;
    size_t n_heap, cap_heap;
    uv_timer_t heap_timer;
    int64_t heap_armed_at;  /* mono ms the heap timer fires at, while active */
    /* Runs by task id. */
    task_run **hash;
    size_t hash_cap, hash_n;
    uv_timer_t counts_timer, retention_timer, retry_timer, drain_timer;
    bool counts_in_flight;
    upd *retry_head;
    /* Intake from any thread. */
    pthread_mutex_t intake_lock;
    intake_buf *intake, *intake_tail; /* chunks, oldest first; NULL: none */
    bool intake_closed;
    uv_async_t intake_async;
    uint64_t intake_failed;
    uint64_t rng;
    void (*shutdown_done)(void *data);
    void *shutdown_data;
    size_t handles_open;
    size_t rr;              /* round-robin start for pump_all */
    obj_cache upd_cache, run_cache;
};

static void unhold(tq *q, task_run *r);
static void drop_held(tq *q, task_run *r);
static void finish_shutdown(task_engine *e);
static void pump(tq *q);
static void pump_all(task_engine *e);
static void on_heap_timer(uv_timer_t *t);
static void on_queue_timer(uv_timer_t *t);
static void check_drained(task_engine *e);
static void arm_queue_timer(tq *q);

/* ---- small helpers ------------------------------------------------------ */

static void elog(task_engine *e, int level, const tq *q, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void elog(task_engine *e, int level, const tq *q, const char *fmt, ...) {
    if (!e->cb.log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    e->cb.log(e->cb.data, level, q ? q->spec->name : NULL, msg);
}

static double rnd01(task_engine *e) {
    e->rng ^= e->rng << 13;
    e->rng ^= e->rng >> 7;
    e->rng ^= e->rng << 17;
    return (double)(e->rng >> 11) / 9007199254740992.0;
}

static tq *find_queue(const task_engine *e, const char *name) {
    if (!name)
        return NULL;
    for (size_t i = 0; i < e->n_qs; i++)
        if (strcmp(e->qs[i].spec->name, name) == 0)
            return &e->qs[i];
    return NULL;
}

/* The store may hold a ready task of q (see ready_gen). */
static void mark_ready(tq *q) {
    q->maybe_ready = true;
    q->ready_gen++;
}

static void count_move(tq *q, int from, int to, int prio) {
    if (prio < 0 || prio >= STORE_PRIORITY_MAX)
        return;
    if (from >= 0 && from < STORE_TASK_STATE_MAX && q->counts[from][prio] > 0)
        q->counts[from][prio]--;
    if (to >= 0 && to < STORE_TASK_STATE_MAX)
        q->counts[to][prio]++;
}

/* A claimed task left pending or scheduled; the record (running now) does
 * not say which.  run_at after created_at suggests scheduled, but a
 * retried or requeued task is pending with run_at = the retry's time: the
 * guess is taken only when that state has tasks counted, so the queue's
 * depth always drops by one (a stuck pending count kept the depth above
 * 0 until the next refresh, and tend_tasks_wait_idle() waited out its
 * timeout). */
static void count_claimed(tq *q, const store_task *t) {
    int p = t->priority;
    if (p < 0 || p >= STORE_PRIORITY_MAX)
        return;
    int from = t->run_at > t->created_at ? STORE_TASK_SCHEDULED : STORE_TASK_PENDING;
    if (q->counts[from][p] == 0)
        from = from == STORE_TASK_SCHEDULED ? STORE_TASK_PENDING : STORE_TASK_SCHEDULED;
    count_move(q, from, STORE_TASK_RUNNING, p);
}

static void notify_state(task_engine *e, const store_task *t, int from, int to) {
    if (e->cb.state_changed)
        e->cb.state_changed(e->cb.data, t->id, t->queue, (store_task_state)from, (store_task_state)to);
}

static uint64_t count_state(const tq *q, int state) {
    uint64_t n = 0;
    for (int p = 0; p < STORE_PRIORITY_MAX; p++)
        n += q->counts[state][p] > 0 ? (uint64_t)q->counts[state][p] : 0;
    return n;
}

const char *task_result_name(int r) {
    static const char *const n[] = {"succeeded", "failed", "dead", "cancelled"};
    return r >= 0 && r < 4 ? n[r] : NULL;
}

/* The throughput window has 1 s slots: the loop's cached time (uv_now,
 * monotonic, updated every iteration) is exact enough and saves a clock
 * read per finished task. */
static void note_finished(tq *q, int result) {
    q->finished[result]++;
    int64_t sec = (int64_t)(uv_now(q->e->loop) / 1000);
    size_t s = (size_t)(sec % RATE_SLOTS);
    if (q->slot_sec[s] != sec) {
        q->slot_sec[s] = sec;
        q->slot_n[s] = 0;
    }
    q->slot_n[s]++;
}

static double queue_throughput(const tq *q) {
    int64_t sec = (int64_t)(uv_now(q->e->loop) / 1000);
    uint64_t n = 0;
    for (size_t i = 0; i < RATE_SLOTS; i++)
        if (q->slot_sec[i] > sec - RATE_SLOTS && q->slot_sec[i] < sec)
            n += q->slot_n[i];
    return (double)n / (RATE_SLOTS - 1);
}

/* ---- the scheduled-time heap --------------------------------------------- */

static void sched_push(tq *q, int64_t at) {
    if (q->n_sched == SCHED_HEAP_MAX) {
        q->sched_unknown = true;
        return;
    }
    if (!q->sched) {
        q->sched = malloc(SCHED_HEAP_MAX * sizeof(*q->sched));
        if (!q->sched) {
            q->sched_unknown = true;
            return;
        }
    }
    size_t i = q->n_sched++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (q->sched[p] <= at)
            break;
        q->sched[i] = q->sched[p];
        i = p;
    }
    q->sched[i] = at;
}

static void sched_pop(tq *q) {
    int64_t last = q->sched[--q->n_sched];
    size_t i = 0, n = q->n_sched;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t mv = last;
        if (l < n && q->sched[l] < mv) {
            m = l;
            mv = q->sched[l];
        }
        if (r < n && q->sched[r] < mv)
            m = r;
        if (m == i)
            break;
        q->sched[i] = q->sched[m];
        i = m;
    }
    if (n > 0)
        q->sched[i] = last;
}

/* ---- the run deadline heap ------------------------------------------------ */

static void heap_swap(task_engine *e, size_t a, size_t b) {
    task_run *t = e->heap[a];
    e->heap[a] = e->heap[b];
    e->heap[b] = t;
    e->heap[a]->heap_index = a;
    e->heap[b]->heap_index = b;
}

static void heap_up(task_engine *e, size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p]->deadline_mono_ms <= e->heap[i]->deadline_mono_ms)
            break;
        heap_swap(e, i, p);
        i = p;
    }
}

static void heap_down(task_engine *e, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->n_heap && e->heap[l]->deadline_mono_ms < e->heap[m]->deadline_mono_ms)
            m = l;
        if (r < e->n_heap && e->heap[r]->deadline_mono_ms < e->heap[m]->deadline_mono_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(e, i, m);
        i = m;
    }
}

/* Arms the deadline timer for the heap's top.  A timer already armed no
 * later than that is left alone (firing early is harmless: only expired
 * runs are handled, then it re-arms), so finishing runs in deadline order
 * does not re-arm it for every run. */
static void heap_arm(task_engine *e) {
    if (e->n_heap == 0 || e->heap[0]->deadline_mono_ms == INT64_MAX)
        return;
    int64_t at = e->heap[0]->deadline_mono_ms;
    if (uv_is_active((uv_handle_t *)&e->heap_timer) && e->heap_armed_at <= at)
        return;
    int64_t d = at - now_mono_ms();
    e->heap_armed_at = at;
    uv_timer_start(&e->heap_timer, on_heap_timer, (uint64_t)MAX(d, 0), 0);
}

static int heap_add(task_engine *e, task_run *r) {
    if (e->n_heap == e->cap_heap) {
        size_t cap = e->cap_heap ? e->cap_heap * 2 : 64;
        task_run **h = realloc(e->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        e->heap = h;
        e->cap_heap = cap;
    }
    r->heap_index = e->n_heap;
    e->heap[e->n_heap++] = r;
    heap_up(e, r->heap_index);
    if (e->heap[0] == r)
        heap_arm(e);
    return 0;
}

static void heap_remove(task_engine *e, task_run *r) {
    size_t i = r->heap_index;
    if (i >= e->n_heap || e->heap[i] != r)
        return;
    bool was_top = i == 0;
    e->n_heap--;
    if (i != e->n_heap) {
        e->heap[i] = e->heap[e->n_heap];
        e->heap[i]->heap_index = i;
        heap_up(e, i);
        heap_down(e, e->heap[i]->heap_index);
    }
    r->heap_index = SIZE_MAX;
    if (was_top)
        heap_arm(e);
}

static void heap_update(task_engine *e, task_run *r, int64_t deadline) {
    heap_remove(e, r);
    r->deadline_mono_ms = deadline;
    (void)heap_add(e, r);
}

/* ---- runs by task id -------------------------------------------------------- */

/* Task ids are 26 characters whose last ones count up within a
 * millisecond and are random at each new one: their last 8 bytes, mixed
 * by one multiplication, spread well (a byte-by-byte hash of all 26 cost
 * 4 % of the C-function path, a hash_add and a hash_remove per run).
 * Other strings are no run's id: any bucket will do for them. */
static size_t id_hash(const char *id, size_t cap) {
    if (strnlen(id, STORE_ID_SIZE) != STORE_ID_LEN)
        return 0;
    uint64_t w;
    memcpy(&w, id + STORE_ID_LEN - sizeof(w), sizeof(w));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    w = __builtin_bswap64(w); /* the last character, which counts up, lowest */
#endif
    /* The product's middle bits depend on all of w's low bits. */
    return (size_t)((w * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* A batch run is filed under its first task's id only; lookups of the
 * others walk the run's tasks. */
static int hash_add(task_engine *e, task_run *r) {
    if (e->hash_n >= e->hash_cap) {
        size_t cap = e->hash_cap ? e->hash_cap * 2 : 256;
        task_run **h = calloc(cap, sizeof(*h));
        if (!h)
            return -ENOMEM;
        for (size_t i = 0; i < e->hash_cap; i++) {
            task_run *x = e->hash[i];
            while (x) {
                task_run *next = x->hash_next;
                size_t b = id_hash(x->tasks[0].id, cap);
                x->hash_next = h[b];
                h[b] = x;
                x = next;
            }
        }
        free(e->hash);
        e->hash = h;
        e->hash_cap = cap;
    }
    size_t b = id_hash(r->tasks[0].id, e->hash_cap);
    r->hash_next = e->hash[b];
    e->hash[b] = r;
    e->hash_n++;
    return 0;
}

static void hash_remove(task_engine *e, task_run *r) {
    if (!e->hash_cap)
        return;
    task_run **p = &e->hash[id_hash(r->tasks[0].id, e->hash_cap)];
    while (*p && *p != r)
        p = &(*p)->hash_next;
    if (*p) {
        *p = r->hash_next;
        e->hash_n--;
    }
    r->hash_next = NULL;
}

/* The run holding task id (and its index in the run), or NULL. */
static task_run *hash_find(task_engine *e, const char *id, size_t *ret_i) {
    if (!e->hash_cap)
        return NULL;
    for (task_run *r = e->hash[id_hash(id, e->hash_cap)]; r; r = r->hash_next)
        if (strcmp(r->tasks[0].id, id) == 0) {
            if (ret_i)
                *ret_i = 0;
            return r;
        }
    /* Members of running batches. */
    for (size_t i = 0; i < e->n_heap; i++) {
        task_run *r = e->heap[i];
        for (size_t k = 1; k < r->n; k++)
            if (strcmp(r->tasks[k].id, id) == 0) {
                if (ret_i)
                    *ret_i = k;
                return r;
            }
    }
    return NULL;
}

/* ---- store op plumbing ------------------------------------------------------- */

static int submit_op(task_engine *e, store_op *op) {
    int r = store_submit(e->st, op);
    if (r == 0)
        e->ops_in_flight++;
    return r;
}

static void op_finished(task_engine *e) {
    e->ops_in_flight--;
    if (e->stopping)
        check_drained(e);
}

/* ---- writing outcomes ------------------------------------------------------------ */

enum outcome { OUT_SUCCEEDED, OUT_FAILED, OUT_PERMANENT, OUT_CANCELLED, OUT_REQUEUE, OUT_UNCLAIM };

struct upd {
    store_op op;
    task_engine *e;
    tq *q;
    store_task t;           /* the new values */
    int from, to;
    int tries;
    bool write_attempts;
    /* A pull queue with `ack: async`: done is answered once the UPDATE is
     * queued, not when it commits (a crash before the commit leaves the
     * task running in the store; RECOVER requeues it). */
    bool answer_early;
    bool queue_borrowed;    /* t.queue is the spec's name, not ours to free */
    task_done done;
    void *data;
    upd *next;
};

static void upd_free(upd *u) {
    if (u->queue_borrowed)
        u->t.queue = NULL;
    store_task_clear(&u->t);
    cache_put(&u->e->upd_cache, u);
}

static void on_upd(store_op *op, int result);

static void upd_submit(upd *u) {
    task_engine *e = u->e;
    u->t.state = (store_task_state)u->to;
    u->op = (store_op){.kind = STORE_OP_UPDATE, .done = on_upd, .userdata = u};
    u->op.update.task = &u->t;
    u->op.update.expect_states = STORE_STATE_BIT(STORE_TASK_RUNNING);
    /* The engine alone moves a running task on, so the state is check
     * enough (a touch may have bumped the version meanwhile). */
    u->op.update.expect_version = 0;
    unsigned f = STORE_FIELD_STATE | STORE_FIELD_LAST_ERROR;
    if (u->to == STORE_TASK_SCHEDULED || u->to == STORE_TASK_PENDING)
        f |= STORE_FIELD_RUN_AT;
    if (u->to >= STORE_TASK_SUCCEEDED)
        f |= STORE_FIELD_FINISHED_AT;
    if (u->write_attempts)
        f |= STORE_FIELD_ATTEMPTS;
    u->op.update.fields = f;
    int r = submit_op(e, &u->op);
    if (r < 0) {
        elog(e, LOG_ERR, u->q, "task %s: cannot record its outcome (%s); it is recovered at the next start",
             u->t.id, strerror(-r));
        if (u->done)
            u->done(u->data, r, NULL);
        upd_free(u);
    } else if (u->answer_early && u->done) {
        /* The record as it will be once the UPDATE commits. */
        task_done d = u->done;
        u->done = NULL;
        store_task t = u->t;
        t.version++;
        d(u->data, 0, &t);
    }
}

static void on_retry_timer(uv_timer_t *t) {
    task_engine *e = t->data;
    upd *list = e->retry_head;
    e->retry_head = NULL;
    while (list) {
        upd *u = list;
        list = u->next;
        u->next = NULL;
        upd_submit(u);
    }
}

static void on_upd(store_op *op, int result) {
    upd *u = op->userdata;
    task_engine *e = u->e;
    tq *q = u->q;
    if (result == 0) {
        count_move(q, u->from, u->to, u->t.priority);
        u->t.version = op->update.ret_version;
        u->t.state = (store_task_state)u->to;
        notify_state(e, &u->t, u->from, u->to);
        if (u->to == STORE_TASK_PENDING) {
            mark_ready(q);
            pump(q);
        } else if (u->to == STORE_TASK_SCHEDULED) {
            sched_push(q, u->t.run_at);
            arm_queue_timer(q);
        }
        if (u->done)
            u->done(u->data, 0, &u->t);
        store_op_clear(op);
        upd_free(u);
    } else if (result == -ESTALE || result == -ENOENT) {
        elog(e, LOG_WARNING, q, "task %s changed while it ran (%s); its outcome %s is dropped", u->t.id,
             result == -ESTALE ? "state or version" : "deleted", store_task_state_to_string((store_task_state)u->to));
        if (u->done)
            u->done(u->data, result, NULL);
        store_op_clear(op);
        upd_free(u);
    } else if (u->tries++ < 5 && !e->closing) {
        /* The store failed the transaction (disk full, I/O): keep the
         * outcome and try again; the task stays running in the store
         * meanwhile, and RECOVER would requeue it after a crash. */
        elog(e, LOG_ERR, q, "task %s: cannot record outcome %s: %s; retrying", u->t.id,
             store_task_state_to_string((store_task_state)u->to), strerror(-result));
        store_op_clear(op);
        u->next = e->retry_head;
        e->retry_head = u;
        uv_timer_start(&e->retry_timer, on_retry_timer, UPDATE_RETRY_MS, 0);
    } else {
        elog(e, LOG_ERR, q, "task %s: cannot record outcome %s: %s; it is recovered at the next start", u->t.id,
             store_task_state_to_string((store_task_state)u->to), strerror(-result));
        if (u->done)
            u->done(u->data, result, NULL);
        store_op_clear(op);
        upd_free(u);
    }
    op_finished(e);
}

/*
 * Writes the outcome of task t (running) and updates the counters.
 * retry_ms >= 0 overrides the backoff of a failed attempt.  done (may be
 * NULL) runs when the store has the new state.
 */
static void write_outcome_ex(tq *q, const store_task *t, enum outcome out, const char *error, int64_t retry_ms,
                             task_done done, void *data, bool answer_early) {
    task_engine *e = q->e;
    upd *u = cache_get(&e->upd_cache, sizeof(*u));
    if (u && !done) {
        /* Nobody reads the record back: the UPDATE needs the id and the
         * columns it writes, not the payload, tags or key. */
        u->t = *t;
        u->t.payload = NULL;
        u->t.payload_len = 0;
        u->t.tags = NULL;
        u->t.idempotency_key = NULL;
        /* The queue's name outlives every outcome write (the engine's
         * spec); borrowing it saves a copy per task. */
        u->t.queue = (char *)q->spec->name;
        u->queue_borrowed = true;
        u->t.last_error = t->last_error ? strdup(t->last_error) : NULL;
        if (t->last_error && !u->t.last_error) {
            u->t.queue = NULL;
            store_task_clear(&u->t);
            free(u);
            u = NULL;
        }
    } else if (u && store_task_copy(&u->t, t) < 0) {
        free(u);
        u = NULL;
    }
    if (!u) {
        elog(e, LOG_ERR, q, "task %s: out of memory recording its outcome", t->id);
        if (done)
            done(data, -ENOMEM, NULL);
        return;
    }
    u->e = e;
    u->q = q;
    u->done = done;
    u->data = data;
    u->answer_early = answer_early;
    u->from = STORE_TASK_RUNNING;
    int64_t now = e->done_batch ? e->batch_wall_ms : now_wall_ms();
    if (error) {
        free(u->t.last_error);
        u->t.last_error = strdup(error);
    }
    switch (out) {
    case OUT_SUCCEEDED:
        u->to = STORE_TASK_SUCCEEDED;
        u->t.finished_at = now;
        note_finished(q, TASK_RESULT_SUCCEEDED);
        break;
    case OUT_FAILED:
        if (t->attempts >= t->max_attempts) {
            u->to = STORE_TASK_DEAD;
            u->t.finished_at = now;
            note_finished(q, TASK_RESULT_DEAD);
        } else {
            u->to = STORE_TASK_SCHEDULED;
            int64_t d = retry_ms >= 0 ? retry_ms
                                      : backoff_delay_ms(q->spec->backoff_base_ms, q->spec->backoff_max_ms,
                                                         q->spec->backoff_jitter, (unsigned)MAX(t->attempts, 1),
                                                         rnd01(e));
            u->t.run_at = now + d;
            note_finished(q, TASK_RESULT_FAILED);
        }
        break;
    case OUT_PERMANENT:
        u->to = STORE_TASK_DEAD;
        u->t.finished_at = now;
        note_finished(q, TASK_RESULT_DEAD);
        break;
    case OUT_CANCELLED:
        u->to = STORE_TASK_CANCELLED;
        u->t.finished_at = now;
        note_finished(q, TASK_RESULT_CANCELLED);
        break;
    case OUT_REQUEUE:
        /* Interrupted by shutdown: the attempt stays counted, as RECOVER
         * does after a crash, and the last one makes it dead. */
        if (t->attempts >= t->max_attempts) {
            u->to = STORE_TASK_DEAD;
            u->t.finished_at = now;
            note_finished(q, TASK_RESULT_DEAD);
        } else {
            u->to = STORE_TASK_PENDING;
        }
        break;
    case OUT_UNCLAIM:
        /* Claimed but never handed out: the attempt did not happen. */
        u->to = STORE_TASK_PENDING;
        u->t.attempts = MAX(t->attempts - 1, 0);
        u->write_attempts = true;
        free(u->t.last_error);
        u->t.last_error = t->last_error ? strdup(t->last_error) : NULL;
        break;
    }
    upd_submit(u);
}

static void write_outcome(tq *q, const store_task *t, enum outcome out, const char *error, int64_t retry_ms,
                          task_done done, void *data) {
    write_outcome_ex(q, t, out, error, retry_ms, done, data, false);
}

/* ---- runs ------------------------------------------------------------------------ */

/* Frees claimed records (lent ones: only the array). */
static void claimed_free(store_task *tasks, size_t n, bool lent) {
    if (lent)
        free(tasks);
    else
        store_tasks_free(tasks, n);
}

static void run_free(task_run *r) {
    if (!r)
        return;
    if (r->tasks != &r->one)
        claimed_free(r->tasks, r->n, r->lent);
    else if (!r->lent)
        store_task_clear(&r->one);
    cache_put(&r->engine->run_cache, r);
}

static const char *out_error_tail(const handler_result *res) { return res && res->error ? res->error : NULL; }

/* Parses a batch handler's {"failed": ["id", ...]} answer; marks failed[i]. */
static void parse_failed(const task_run *r, const char *out, size_t len, bool *failed) {
    if (!out || len == 0)
        return;
    json_error_t jerr;
    json_t *j = json_loadb(out, len, 0, &jerr);
    if (!j) {
        /* Not JSON as a whole: try the last non-empty line. */
        const char *end = out + len;
        while (end > out && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
            end--;
        const char *start = end;
        while (start > out && start[-1] != '\n')
            start--;
        if (end > start)
            j = json_loadb(start, (size_t)(end - start), 0, &jerr);
    }
    json_t *arr = j ? json_object_get(j, "failed") : NULL;
    if (json_is_array(arr)) {
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            const char *id = json_string_value(v);
            if (!id)
                continue;
            for (size_t k = 0; k < r->n; k++)
                if (strcmp(r->tasks[k].id, id) == 0)
                    failed[k] = true;
        }
    }
    json_decref(j);
}

typedef struct run_reply {
    task_done done;
    void *data;
    size_t index;           /* the task of the run the reply is about */
    bool early;             /* answer once the outcome's UPDATE is queued (ack: async) */
} run_reply;

static run_reply *run_reply_of(task_run *r) { return (run_reply *)r->reply; }

void handler_done(task_run *r, const handler_result *res) {
    tq *q = r->queue;
    task_engine *e = q->e;
    heap_remove(e, r);
    hash_remove(e, r);
    if (r->held)
        unhold(q, r);
    int64_t now_mono = e->done_batch ? e->batch_mono_ms : now_mono_ms();
    int64_t ms = now_mono - r->started_mono_ms;
    enum outcome out;
    char msg[600];
    const char *err = out_error_tail(res);
    int64_t retry_ms = res && res->retry_after_ms >= 0 ? res->retry_after_ms : -1;
    bool counts_for_breaker = true;
    switch (r->aborted) {
    case TASK_ABORT_SHUTDOWN:
        out = OUT_REQUEUE;
        err = "interrupted by shutdown";
        counts_for_breaker = false;
        break;
    case TASK_ABORT_CANCEL:
        out = OUT_CANCELLED;
        err = "cancelled while running";
        counts_for_breaker = false;
        break;
    case TASK_ABORT_TIMEOUT:
        out = OUT_FAILED;
        snprintf(msg, sizeof(msg), "timed out after %lld ms%s%.500s", (long long)r->timeout_ms,
                 err && *err ? ": " : "", err ? err : "");
        err = msg;
        break;
    default:
        out = !res || res->outcome == HANDLER_OK ? OUT_SUCCEEDED
              : res->outcome == HANDLER_PERMANENT ? OUT_PERMANENT
                                                  : OUT_FAILED;
        break;
    }
    if (counts_for_breaker && q->br.threshold)
        breaker_record(&q->br, now_mono, out == OUT_SUCCEEDED);
    else if (!counts_for_breaker)
        breaker_release(&q->br);
    if (r->aborted != TASK_ABORT_SHUTDOWN && q->backend) {
        histogram_observe(&q->duration, (double)ms / 1000.0);
        q->dur_sum_ms += (double)ms;
        q->dur_n++;
    }
    bool *failed = NULL;
    if (r->batch && out == OUT_SUCCEEDED && res) {
        failed = calloc(r->n, sizeof(bool));
        if (failed)
            parse_failed(r, res->output, res->output_len, failed);
    }
    run_reply *rep = run_reply_of(r);
    for (size_t i = 0; i < r->n; i++) {
        enum outcome o = out;
        const char *te = err;
        if (failed && failed[i]) {
            o = OUT_FAILED;
            te = "reported failed by the batch handler";
        }
        if (r->cancel_mask && r->cancel_mask[i] && o != OUT_REQUEUE)
            o = OUT_CANCELLED;
        task_done d = rep && rep->index == i ? rep->done : NULL;
        write_outcome_ex(q, &r->tasks[i], o, te, retry_ms, d, rep ? rep->data : NULL, d && rep->early);
    }
    free(failed);
    if (q->backend && !q->windowed)
        e->running--;
    q->running--;
    free(r->cancel_mask);
    free(rep);
    run_free(r);
    if (e->stopping)
        check_drained(e);
    else if (e->done_batch)
        e->done_batch_pump = true;
    else
        pump_all(e);
}

void handler_batch(task_engine *e, bool begin) {
    if (begin) {
        if (e->done_batch++ == 0) {
            e->batch_mono_ms = now_mono_ms();
            e->batch_wall_ms = now_wall_ms();
        }
        return;
    }
    if (--e->done_batch > 0 || !e->done_batch_pump)
        return;
    e->done_batch_pump = false;
    if (!e->stopping)
        pump_all(e);
}

static void abort_run(task_run *r, int why) {
    if (r->aborted)
        return;
    r->aborted = why;
    tq *q = r->queue;
    if (q->backend)
        q->backend->abort(r);
    else
        handler_done(r, NULL); /* a pull lease: nothing runs here */
}

static void on_heap_timer(uv_timer_t *t) {
    task_engine *e = t->data;
    int64_t now = now_mono_ms();
    while (e->n_heap > 0 && e->heap[0]->deadline_mono_ms <= now) {
        task_run *r = e->heap[0];
        heap_remove(e, r);
        r->heap_index = SIZE_MAX;
        tq *q = r->queue;
        if (r->aborted) {
            continue; /* already being stopped; wait for the backend */
        }
        if (!q->backend && r->held) {
            drop_held(q, r);
            continue;
        }
        if (!q->backend) {
            /* An expired lease: the attempt failed; the task is redelivered
             * after its backoff. */
            r->aborted = 0;
            handler_result res = {.outcome = HANDLER_FAILED, .error = pull_lease_expired_error(), .retry_after_ms = -1};
            elog(e, LOG_WARNING, q, "task %s: lease expired", r->tasks[0].id);
            /* handler_done removes it from the hash; re-add to heap not needed. */
            r->heap_index = SIZE_MAX;
            handler_done(r, &res);
            continue;
        }
        elog(e, LOG_WARNING, q, "task %s: timed out after %lld ms", r->tasks[0].id, (long long)r->timeout_ms);
        r->heap_index = SIZE_MAX;
        abort_run(r, TASK_ABORT_TIMEOUT);
    }
    heap_arm(e);
}

void task_engine_func_of(const task_run *run, task_func *ret_fn, void **ret_data) {
    const tq *q = run->queue;
    *ret_fn = q->fn;
    *ret_data = q->fn_data;
}

/* Takes ownership of tasks[0..n) (moved out of a CLAIM's output); tasks
 * NULL: the single record *one is moved into the run (and zeroed). */
static task_run *run_new(tq *q, store_task *tasks, size_t n, store_task *one, int64_t now_mono) {
    task_run *r = cache_get(&q->e->run_cache, sizeof(*r));
    if (!r)
        return NULL;
    if (!tasks) {
        r->one = *one;
        memset(one, 0, sizeof(*one));
        tasks = &r->one;
        n = 1;
    }
    r->engine = q->e;
    r->env = &q->e->env;
    r->spec = q->spec;
    r->queue = q;
    r->tasks = tasks;
    r->n = n;
    r->batch = q->spec->batch && q->backend;
    r->timeout_ms = tasks[0].timeout_ms > 0 ? tasks[0].timeout_ms : q->spec->timeout_ms;
    r->started_mono_ms = now_mono;
    r->heap_index = SIZE_MAX;
    return r;
}

static void start_run(tq *q, task_run *r) {
    task_engine *e = q->e;
    if (!q->windowed)
        e->running++;
    q->running++;
    (void)hash_add(e, r);
    for (size_t i = 0; i < r->n; i++) {
        count_claimed(q, &r->tasks[i]);
        notify_state(e, &r->tasks[i], STORE_TASK_PENDING, STORE_TASK_RUNNING);
    }
    if (r->batch)
        histogram_observe(&q->batch_hist, (double)r->n);
    if (q->spec->dry_run) {
        elog(e, LOG_INFO, q, "dry run: task%s %s%s marked succeeded without running the handler",
             r->n > 1 ? "s" : "", r->tasks[0].id, r->n > 1 ? " and the rest of the batch" : "");
        handler_result res = {.outcome = HANDLER_OK, .retry_after_ms = -1};
        handler_done(r, &res);
        return;
    }
    /* Every run is in the heap (no timeout: at the far end), so shutdown
     * and lookups find them all. */
    r->deadline_mono_ms = r->timeout_ms > 0 ? r->started_mono_ms + r->timeout_ms : INT64_MAX;
    (void)heap_add(e, r);
    int rc = q->backend->start(r);
    if (rc < 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "handler %s could not start: %s", q->backend->name, strerror(-rc));
        handler_result res = {.outcome = HANDLER_FAILED, .error = msg, .retry_after_ms = -1};
        handler_done(r, &res);
    }
}

/* ---- pull: waiters and held leases ------------------------------------------------ */

static void waiter_unlink(tq *q, waiter *w) {
    if (w->prev)
        w->prev->next = w->next;
    else
        q->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->waiters_tail = w->prev;
    w->prev = w->next = NULL;
    q->n_waiters--;
}

static void on_waiter_closed(uv_handle_t *h) {
    waiter *w = h->data;
    task_engine *e = w->q->e;
    free(w);
    e->handles_open--;
    if (e->closing && e->handles_open == 0)
        finish_shutdown(e);
}

static void waiter_free(waiter *w) {
    if (w->has_timer) {
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, on_waiter_closed);
    } else {
        free(w);
    }
}

/* The lease starts when a worker gets the task. */
static void give_lease(tq *q, waiter *w, task_run *r) {
    int64_t lease = r->timeout_ms > 0 ? r->timeout_ms : 30000;
    heap_update(q->e, r, now_mono_ms() + lease);
    r->tasks[0].lease_until = now_wall_ms() + lease;
    waiter_unlink(q, w);
    w->done(w->data, 0, &r->tasks[0]);
    waiter_free(w);
}

static void hold_lease(tq *q, task_run *r) {
    r->held = true;
    r->list_next = NULL;
    r->list_prev = q->held_tail;
    if (q->held_tail)
        q->held_tail->list_next = r;
    else
        q->held = r;
    q->held_tail = r;
    q->n_held++;
}

static void unhold(tq *q, task_run *r) {
    r->held = false;
    if (r->list_prev)
        r->list_prev->list_next = r->list_next;
    else
        q->held = r->list_next;
    if (r->list_next)
        r->list_next->list_prev = r->list_prev;
    else
        q->held_tail = r->list_prev;
    r->list_prev = r->list_next = NULL;
    q->n_held--;
}

/* A held lease nobody took: back to pending, the attempt not counted. */
static void drop_held(tq *q, task_run *r) {
    unhold(q, r);
    heap_remove(q->e, r);
    hash_remove(q->e, r);
    q->running--;
    write_outcome(q, &r->tasks[0], OUT_UNCLAIM, NULL, -1, NULL, NULL);
    run_free(r);
}

/* Pull queues honour `concurrency` as the leases out at once (handed to
 * workers; held leases are not out yet).  A reserve beyond it waits for an
 * ack, nack or expiry like one that finds nothing ready. */
static size_t lease_limit(const tq *q) { return (size_t)MAX(q->spec->concurrency, 1); }
static size_t leases_out(const tq *q) { return q->running - q->n_held; }

static void serve_waiters(tq *q) {
    /* Paused: leases claimed ahead stay held (and go back after
     * PULL_HOLD_MS); resuming pumps, which serves the waiters. */
    while (!q->paused && q->waiters && q->held && leases_out(q) < lease_limit(q)) {
        task_run *r = q->held;
        unhold(q, r);
        give_lease(q, q->waiters, r);
    }
}

/* A pull lease: a run with no backend; its deadline is the lease. */
static void start_lease(tq *q, task_run *r) {
    task_engine *e = q->e;
    q->running++;
    (void)hash_add(e, r);
    count_claimed(q, &r->tasks[0]);
    notify_state(e, &r->tasks[0], STORE_TASK_PENDING, STORE_TASK_RUNNING);
    /* Until it is handed out, its deadline is the hold limit. */
    r->deadline_mono_ms = now_mono_ms() + PULL_HOLD_MS;
    (void)heap_add(e, r);
    if (q->spec->dry_run) {
        elog(e, LOG_INFO, q, "dry run: task %s marked succeeded without a worker", r->tasks[0].id);
        handler_result res = {.outcome = HANDLER_OK, .retry_after_ms = -1};
        handler_done(r, &res);
        return;
    }
    hold_lease(q, r);
    serve_waiters(q);
}

/* ---- claiming ------------------------------------------------------------------------- */

typedef struct claim_op {
    store_op op;
    tq *q;
    size_t limit;
    bool trial;
    bool batch;
    uint64_t gen;           /* q->ready_gen when submitted */
} claim_op;

/* A claim or fetch that failed or could not be submitted (no memory,
 * the store refusing work): the pump tries again in a second rather
 * than at once, which with every gate open would be a busy loop. */
static void claim_later(tq *q, int err) {
    elog(q->e, LOG_ERR, q, "cannot claim tasks: %s; trying again in 1 s", strerror(-err));
    uv_timer_start(&q->timer, on_queue_timer, 1000, 0);
}

static void on_claim(store_op *op, int result) {
    claim_op *c = op->userdata;
    tq *q = c->q;
    task_engine *e = q->e;
    q->claim_in_flight = false;
    q->claiming -= c->limit;
    if (q->backend && !q->windowed)
        e->claiming -= c->limit;
    if (result < 0) {
        if (c->trial)
            breaker_release(&q->br);
        claim_later(q, result);
        free(c);
        op_finished(e);
        return;
    }
    size_t n = op->claim.ret_n;
    store_task *tasks = op->claim.ret_tasks;
    /* Lent records (the memory store): their strings stay the store's
     * while the tasks run, which is as long as the runs keep them. */
    bool lent = op->claim.ret_borrowed;
    op->claim.ret_tasks = NULL;
    op->claim.ret_n = 0;
    op->claim.ret_borrowed = false;
    size_t asked = c->batch ? c->limit * (size_t)q->spec->batch_size : c->limit;
    if (n < asked && q->ready_gen == c->gen)
        q->maybe_ready = false;
    if (c->trial && n == 0)
        breaker_release(&q->br);
    /* Tokens are taken for what was claimed; a shortfall of a fraction
     * of a token (time passed between pump and here) is taken as one
     * oversize take, keeping the long-run rate. */
    if (q->spec->rate_per_sec > 0 && n > 0 && !token_bucket_take(&q->tb, now_mono_ms(), (unsigned)n))
        for (size_t i = 0; i < n; i++)
            (void)token_bucket_take(&q->tb, now_mono_ms(), 1);
    if (e->stopping) {
        /* Claimed while stopping: put them back untouched. */
        for (size_t i = 0; i < n; i++)
            write_outcome(q, &tasks[i], OUT_UNCLAIM, NULL, -1, NULL, NULL);
        claimed_free(tasks, n, lent);
        free(c);
        op_finished(e);
        return;
    }
    if (c->batch && n > 0) {
        task_run *r = run_new(q, tasks, n, NULL, now_mono_ms());
        if (r) {
            r->lent = lent;
            start_run(q, r);
        } else
            claimed_free(tasks, n, lent);
    } else {
        /* C-function runs start at once (queued to the pool): one clock
         * reading for all; exec and http runs take a while each to start. */
        bool one_clock = q->backend == &handler_func;
        int64_t now_mono = now_mono_ms();
        for (size_t i = 0; i < n; i++) {
            if (!one_clock && i > 0)
                now_mono = now_mono_ms();
            /* The record moves into the run (one allocation per task). */
            task_run *r = run_new(q, NULL, 1, &tasks[i], now_mono);
            if (!r) {
                write_outcome(q, &tasks[i], OUT_UNCLAIM, NULL, -1, NULL, NULL);
                if (!lent)
                    store_task_clear(&tasks[i]);
                continue;
            }
            r->lent = lent;
            if (q->backend)
                start_run(q, r);
            else
                start_lease(q, r);
        }
        free(tasks);
    }
    free(c);
    op_finished(e);
    if (!e->stopping)
        pump(q);
}

static int claim(tq *q, size_t limit, bool trial, bool as_batch) {
    task_engine *e = q->e;
    claim_op *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->q = q;
    c->limit = limit;
    c->trial = trial;
    c->batch = as_batch;
    c->gen = q->ready_gen;
    int64_t now = now_wall_ms();
    int64_t lease = q->spec->timeout_ms > 0 ? q->spec->timeout_ms : 30000;
    c->op = (store_op){.kind = STORE_OP_CLAIM, .done = on_claim, .userdata = c};
    c->op.claim.queue = q->spec->name;
    c->op.claim.now = now;
    c->op.claim.limit = as_batch ? (size_t)q->spec->batch_size : limit;
    c->op.claim.lease_until = now + lease;
    c->op.claim.borrow = true; /* runs end before their outcome UPDATEs execute */
    int r = submit_op(e, &c->op);
    if (r < 0) {
        free(c);
        return r;
    }
    q->claim_in_flight = true;
    q->claiming += limit;
    if (q->backend && !q->windowed)
        e->claiming += limit;
    return 0;
}

/* Batch queues: a read-only look at what waits decides when a batch is due. */
typedef struct fetch_op {
    store_op op;
    tq *q;
    uint64_t gen;           /* q->ready_gen when submitted */
} fetch_op;

static void on_fetch(store_op *op, int result) {
    fetch_op *f = op->userdata;
    tq *q = f->q;
    task_engine *e = q->e;
    q->fetch_in_flight = false;
    if (result >= 0) {
        batch_id tmp[64];
        while (batch_count(&q->bt) > 0)
            (void)batch_take(&q->bt, tmp, ELEMENTSOF(tmp));
        int64_t now = now_wall_ms();
        for (size_t i = 0; i < op->fetch.ret_n; i++)
            (void)batch_add(&q->bt, op->fetch.ret_tasks[i].id, MIN(op->fetch.ret_tasks[i].run_at, now));
        if (op->fetch.ret_n == 0 && q->ready_gen == f->gen)
            q->maybe_ready = false;
    }
    store_op_clear(op);
    free(f);
    op_finished(e);
    if (e->stopping)
        return;
    if (result < 0)
        claim_later(q, result);
    else
        pump(q);
}

static int fetch_window(tq *q) {
    fetch_op *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->q = q;
    f->gen = q->ready_gen;
    f->op = (store_op){.kind = STORE_OP_FETCH_READY, .done = on_fetch, .userdata = f};
    f->op.fetch.queue = q->spec->name;
    f->op.fetch.now = now_wall_ms();
    f->op.fetch.limit = (size_t)q->spec->batch_size;
    int r = submit_op(q->e, &f->op);
    if (r < 0) {
        free(f);
        return r;
    }
    q->fetch_in_flight = true;
    q->refetch = false;
    return 0;
}

/* ---- the pump ------------------------------------------------------------------------- */

static void on_queue_timer(uv_timer_t *t) { pump(t->data); }

static void arm_at(tq *q, int64_t *best, int64_t delay) {
    if (delay >= 0 && (*best < 0 || delay < *best))
        *best = delay;
}

static size_t free_slots(tq *q);

static void arm_queue_timer(tq *q) {
    task_engine *e = q->e;
    if (e->stopping || q->paused) {
        uv_timer_stop(&q->timer);
        return;
    }
    int64_t best = -1, now_wall = now_wall_ms(), now_mono = now_mono_ms();
    if (q->n_sched)
        arm_at(q, &best, MAX(q->sched[0] - now_wall, 0));
    if (q->sched_unknown && count_state(q, STORE_TASK_SCHEDULED) > 0)
        arm_at(q, &best, SWEEP_MS);
    else
        q->sched_unknown = false;
    /* The gates of a claim (breaker, rate, batch due) matter only to a
     * pump that can act on them: with a claim or fetch in flight, or no
     * free slot, their outcome or a finishing run pumps again.  (A due
     * batch with no free slot armed 0 ms timers forever, starving the
     * loop's I/O.)  A claim needs every gate open, so the timer is for
     * the last of them to open; one that opens only on an event (a
     * half-open trial's outcome) arms nothing.  All open now arms 0 ms:
     * the clock may have passed a gate since the pump that stopped at
     * it, or a pending timer is being re-armed after its gate opened,
     * and no other event may come to pump the queue (that stalled a
     * rate-limited queue with tasks pending). */
    if (q->maybe_ready && !q->claim_in_flight && !q->fetch_in_flight && free_slots(q) > 0) {
        int64_t gate = 0;
        if (q->br.threshold) {
            int64_t b = breaker_retry_in_ms(&q->br, now_mono);
            gate = b < 0 ? -1 : MAX(gate, b);
        }
        if (gate >= 0 && q->spec->rate_per_sec > 0)
            gate = MAX(gate, token_bucket_wait_ms(&q->tb, now_mono, 1));
        if (gate >= 0 && q->spec->batch && q->backend && batch_count(&q->bt) > 0 && !q->refetch)
            gate = MAX(gate, MAX(batch_due_in_ms(&q->bt, now_wall), 0));
        arm_at(q, &best, gate);
    }
    if (best < 0)
        uv_timer_stop(&q->timer);
    else
        uv_timer_start(&q->timer, on_queue_timer, (uint64_t)best, 0);
}

static size_t free_slots(tq *q) {
    task_engine *e = q->e;
    if (!q->backend) {
        /* Claim when reserves wait, and ahead of them while workers are
         * active (a reserve within the last second) and the window runs
         * low, so the next reserves find a lease ready. */
        bool active = now_mono_ms() - q->last_reserve_ms < 1000;
        /* Only waiters a free lease slot could serve count (with every
         * slot out, claiming for the others would only hold leases until
         * PULL_HOLD_MS gives them back), and the window scales with the
         * slots: PULL_PREFETCH_PER_WAITER per slot, at least 16. */
        size_t pmax = MIN(q->spec->ack_async ? PULL_PREFETCH_MAX_ASYNC : PULL_PREFETCH_MAX,
                          MAX(lease_limit(q) * PULL_PREFETCH_PER_WAITER, 16));
        size_t out = leases_out(q), room = out < lease_limit(q) ? lease_limit(q) - out : 0;
        size_t waiting = MIN(q->n_waiters, room);
        if (waiting <= q->n_held && !(active && q->n_held < MAX(pmax / 4, 1)))
            return 0;
        size_t target = MIN(pmax, MAX(waiting * PULL_PREFETCH_PER_WAITER, MAX(pmax / 2, 1)));
        return target > q->n_held ? target - q->n_held : 0;
    }
    if (q->windowed) {
        size_t used = q->running + q->claiming;
        return used < FUNC_WINDOW ? FUNC_WINDOW - used : 0;
    }
    size_t conc = (size_t)MAX(q->spec->concurrency, 1);
    size_t used = q->running + q->claiming;
    if (used >= conc)
        return 0;
    size_t workers = (size_t)MAX(e->spec->workers, 1);
    size_t gused = e->running + e->claiming;
    if (gused >= workers)
        return 0;
    return MIN(conc - used, workers - gused);
}

static void pump(tq *q) {
    task_engine *e = q->e;
    if (!e->started || e->stopping)
        return;
    int64_t now_wall = now_wall_ms(), now_mono = now_mono_ms();
    while (q->n_sched && q->sched[0] <= now_wall) {
        sched_pop(q);
        mark_ready(q);
    }
    if (q->sched_unknown && count_state(q, STORE_TASK_SCHEDULED) > 0)
        mark_ready(q); /* the sweep: claim whatever came due */
    if (!q->backend)
        serve_waiters(q);
    if (q->paused || q->claim_in_flight || !q->maybe_ready)
        goto arm;
    size_t n = free_slots(q);
    if (n == 0)
        goto arm;
    bool as_batch = q->spec->batch && q->backend;
    if (as_batch) {
        if (q->fetch_in_flight)
            goto arm;
        if (batch_count(&q->bt) == 0 || q->refetch) {
            int r = fetch_window(q);
            if (r < 0) {
                claim_later(q, r);
                return;
            }
            goto arm;
        }
        if (!batch_due(&q->bt, now_wall))
            goto arm;
        n = 1;
    }
    if (q->spec->rate_per_sec > 0) {
        /* The bucket's own test, not a float comparison here: a token
         * that is 0.9999999 available must not leave us without a timer. */
        if (token_bucket_wait_ms(&q->tb, now_mono, 1) > 0)
            goto arm;
        double avail = token_bucket_available(&q->tb, now_mono);
        if (!as_batch)
            n = MIN(n, MAX((size_t)(avail + 1e-6), (size_t)1));
    }
    bool trial = false;
    if (q->br.threshold) {
        if (!breaker_allow(&q->br, now_mono))
            goto arm;
        if (q->br.state == BREAKER_HALF_OPEN) {
            trial = true;
            n = 1;
        }
    }
    int r = claim(q, n, trial, as_batch);
    if (r < 0) {
        if (trial)
            breaker_release(&q->br);
        claim_later(q, r);
        return;
    }
    if (as_batch) {
        batch_id tmp[64];
        while (batch_count(&q->bt) > 0)
            (void)batch_take(&q->bt, tmp, ELEMENTSOF(tmp));
    }
arm:
    arm_queue_timer(q);
}

static void pump_all(task_engine *e) {
    if (e->n_qs == 0)
        return;
    size_t start = e->rr++ % e->n_qs;
    for (size_t k = 0; k < e->n_qs; k++)
        pump(&e->qs[(start + k) % e->n_qs]);
}

/* ---- counts and retention ----------------------------------------------------------------- */

typedef struct counts_op {
    store_op op;
    task_engine *e;
} counts_op;

static void on_counts(store_op *op, int result) {
    counts_op *c = op->userdata;
    task_engine *e = c->e;
    e->counts_in_flight = false;
    if (result >= 0) {
        for (size_t i = 0; i < e->n_qs; i++)
            memset(e->qs[i].counts, 0, sizeof(e->qs[i].counts));
        for (size_t i = 0; i < op->counts.ret_n; i++) {
            tq *q = find_queue(e, op->counts.ret_counts[i].queue);
            if (!q)
                continue;
            for (int s = 0; s < STORE_TASK_STATE_MAX; s++)
                for (int p = 0; p < STORE_PRIORITY_MAX; p++)
                    q->counts[s][p] = (int64_t)op->counts.ret_counts[i].n[s][p];
        }
        for (size_t i = 0; i < e->n_qs; i++) {
            tq *q = &e->qs[i];
            /* Pending tasks we did not hear of (another writer, a retry
             * after a failed claim): look again. */
            if (count_state(q, STORE_TASK_PENDING) > 0 && !q->maybe_ready) {
                mark_ready(q);
                pump(q);
            } else {
                arm_queue_timer(q);
            }
        }
    }
    store_op_clear(op);
    free(c);
    op_finished(e);
}

static void refresh_counts(task_engine *e) {
    if (e->counts_in_flight || e->stopping)
        return;
    counts_op *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->e = e;
    c->op = (store_op){.kind = STORE_OP_COUNTS, .done = on_counts, .userdata = c};
    if (submit_op(e, &c->op) < 0) {
        free(c);
        return;
    }
    e->counts_in_flight = true;
}

static void on_counts_timer(uv_timer_t *t) { refresh_counts(t->data); }

typedef struct retention_op {
    store_op op;
    task_engine *e;
} retention_op;

static void retention_step(task_engine *e);

static void on_retention(store_op *op, int result) {
    retention_op *r = op->userdata;
    task_engine *e = r->e;
    bool more = result >= 0 && (size_t)result >= RETENTION_BATCH;
    if (result > 0)
        elog(e, LOG_DEBUG, NULL, "retention: deleted %d finished tasks", result);
    else if (result < 0)
        elog(e, LOG_WARNING, NULL, "retention: %s", strerror(-result));
    free(r);
    op_finished(e);
    if (more && !e->stopping)
        retention_step(e); /* bounded transactions, one after the other */
    else if (!e->stopping)
        refresh_counts(e);
}

static void retention_step(task_engine *e) {
    retention_op *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    r->e = e;
    int64_t now = now_wall_ms();
    r->op = (store_op){.kind = STORE_OP_RETENTION, .done = on_retention, .userdata = r};
    r->op.retention.succeeded_before = e->spec->retention_succeeded_ms > 0 ? now - e->spec->retention_succeeded_ms : 0;
    r->op.retention.dead_before = e->spec->retention_dead_ms > 0 ? now - e->spec->retention_dead_ms : 0;
    r->op.retention.cancelled_before = r->op.retention.dead_before;
    r->op.retention.max_rows = RETENTION_BATCH;
    if (submit_op(e, &r->op) < 0)
        free(r);
}

static void on_retention_timer(uv_timer_t *t) {
    task_engine *e = t->data;
    if (!e->stopping)
        retention_step(e);
}

/* ---- intake (any thread) ---------------------------------------------------------------- */

typedef struct intake_op {
    store_op op;
    task_engine *e;
    intake_buf *buf;        /* enqueued tasks: tasks and qidx point into it (ours) */
    store_task *tasks;
    size_t n;
    size_t *qidx;
    task_submit_done done;
    void *data;
} intake_op;

/* A submitted task's queue is the spec's name (borrowed: it outlives the
 * task's time in the engine, and the store keeps a copy of its own). */
static void submit_task_clear(store_task *t) {
    t->queue = NULL;
    store_task_clear(t);
}

static void intake_buf_free(intake_buf *b) {
    while (b) {
        intake_buf *next = b->next;
        free(b->text);
        free(b);
        b = next;
    }
}

static void intake_op_free(intake_op *io) {
    if (!io)
        return;
    if (io->buf) {
        intake_buf_free(io->buf);
        free(io);
        return;
    }
    for (size_t i = 0; i < io->n; i++)
        submit_task_clear(&io->tasks[i]);
    free(io->tasks);
    free(io->qidx);
    free(io);
}

static void on_insert(store_op *op, int result) {
    intake_op *io = op->userdata;
    task_engine *e = io->e;
    if (result >= 0) {
        for (size_t i = 0; i < io->n; i++) {
            if (op->insert.ret_existing && op->insert.ret_existing[i].id[0])
                continue;
            const store_task *t = &io->tasks[i];
            tq *q = &e->qs[io->qidx[i]];
            count_move(q, -1, t->state, t->priority);
            q->submitted[t->priority]++;
            notify_state(e, t, STORE_TASK_STATE_MAX, t->state);
            if (t->state == STORE_TASK_SCHEDULED)
                sched_push(q, t->run_at);
            else
                mark_ready(q);
            if (q->spec->batch)
                q->refetch = true;
        }
    } else if (!io->done) {
        e->intake_failed += io->n;
        elog(e, LOG_ERR, NULL, "%zu submitted tasks were not stored: %s", io->n, strerror(-result));
    }
    if (io->done)
        io->done(io->data, result, io->tasks, result >= 0 ? op->insert.ret_existing : NULL, io->n);
    store_op_clear(op);
    intake_op_free(io);
    op_finished(e);
    if (!e->stopping)
        pump_all(e);
}

static int fill_task(task_engine *e, tq *q, const task_submit *s, store_task *t, int64_t now) {
    if (s->priority < 0 || s->priority >= STORE_PRIORITY_MAX)
        return -EINVAL;
    if (s->payload_len > e->spec->max_payload)
        return -E2BIG;
    if (s->max_attempts < 0 || s->timeout_ms < 0 || s->delay_ms < 0)
        return -EINVAL;
    memset(t, 0, sizeof(*t));
    t->queue = (char *)q->spec->name;
    t->payload = s->payload ? strndup(s->payload, s->payload_len) : strdup("null");
    t->payload_len = s->payload ? s->payload_len : 4;
    t->idempotency_key = s->idempotency_key ? strdup(s->idempotency_key) : NULL;
    t->tags = s->tags ? strdup(s->tags) : NULL;
    if (!t->payload || (s->idempotency_key && !t->idempotency_key) || (s->tags && !t->tags)) {
        submit_task_clear(t);
        return -ENOMEM;
    }
    t->priority = (store_priority)s->priority;
    t->max_attempts = s->max_attempts > 0 ? s->max_attempts : MAX(q->spec->max_attempts, 1);
    t->timeout_ms = s->timeout_ms > 0 ? s->timeout_ms : q->spec->timeout_ms;
    t->created_at = now;
    t->run_at = s->run_at > 0 ? s->run_at : s->delay_ms > 0 ? now + s->delay_ms : 0;
    t->state = t->run_at > now ? STORE_TASK_SCHEDULED : STORE_TASK_PENDING;
    if (t->run_at <= now)
        t->run_at = 0;
    return 0;
}

int task_engine_submit(task_engine *e, const char *queue, const task_submit *subs, size_t n,
                       task_submit_done done, void *data) {
    if (e->stopping)
        return -ESHUTDOWN;
    tq *q = find_queue(e, queue);
    if (!q)
        return -ENOENT;
    if (n == 0 || n > STORE_INSERT_MAX)
        return -EINVAL;
    intake_op *io = calloc(1, sizeof(*io));
    if (!io)
        return -ENOMEM;
    io->tasks = calloc(n, sizeof(*io->tasks));
    io->qidx = calloc(n, sizeof(*io->qidx));
    io->e = e;
    io->done = done;
    io->data = data;
    int r = -ENOMEM;
    if (!io->tasks || !io->qidx)
        goto fail;
    int64_t now = now_wall_ms();
    for (size_t i = 0; i < n; i++) {
        if ((r = fill_task(e, q, &subs[i], &io->tasks[i], now)) < 0)
            goto fail;
        io->n = i + 1;
        io->qidx[i] = q->index;
    }
    io->op = (store_op){.kind = STORE_OP_INSERT, .done = on_insert, .userdata = io};
    io->op.insert.tasks = io->tasks;
    io->op.insert.n = n;
    if ((r = submit_op(e, &io->op)) < 0)
        goto fail;
    return 0;
fail:
    intake_op_free(io);
    return r;
}

/* The chunk with room for one more task of text bytes (intake lock
 * held), or NULL (-ENOMEM). */
static intake_buf *intake_reserve(task_engine *e, size_t text) {
    intake_buf *b = e->intake_tail;
    if (!b || b->n == INTAKE_CHUNK) {
        if (!(b = malloc(sizeof(*b))))
            return NULL;
        b->next = NULL;
        b->n = 0;
        b->text = NULL;
        b->text_len = b->text_cap = 0;
        if (e->intake_tail)
            e->intake_tail->next = b;
        else
            e->intake = b;
        e->intake_tail = b;
    }
    if (text > b->text_cap - b->text_len) {
        size_t cap = b->text_cap ? b->text_cap : 1024;
        while (text > cap - b->text_len)
            cap *= 2;
        char *x = realloc(b->text, cap);
        if (!x)
            return NULL;
        b->text = x;
        b->text_cap = cap;
    }
    return b;
}

/* Appends len bytes and a NUL to b's text; returns the offset + 1. */
static size_t intake_put(intake_buf *b, const char *s, size_t len) {
    size_t off = b->text_len;
    memcpy(b->text + off, s, len);
    b->text[off + len] = 0;
    b->text_len += len + 1;
    return off + 1;
}

int task_engine_enqueue(task_engine *e, const char *queue, const task_submit *sub, char ret_id[STORE_ID_SIZE]) {
    tq *q = find_queue(e, queue);
    if (!q)
        return -ENOENT;
    if (sub->priority < 0 || sub->priority >= STORE_PRIORITY_MAX || sub->max_attempts < 0 || sub->timeout_ms < 0 ||
        sub->delay_ms < 0 || (sub->idempotency_key && !sub->idempotency_key[0]))
        return -EINVAL;
    if (sub->payload_len > e->spec->max_payload)
        return -E2BIG;
    /* The store's limits, checked here: one bad task would fail the whole
     * INSERT it shares with the others. */
    size_t klen = sub->idempotency_key ? strnlen(sub->idempotency_key, STORE_KEY_MAX + 1) : 0;
    size_t glen = sub->tags ? strnlen(sub->tags, STORE_TAGS_MAX + 1) : 0;
    if (klen > STORE_KEY_MAX || glen > STORE_TAGS_MAX)
        return -E2BIG;
    const char *payload = sub->payload ? sub->payload : "null";
    size_t plen = sub->payload ? sub->payload_len : 4;
    size_t text = plen + 1 + (sub->idempotency_key ? klen + 1 : 0) + (sub->tags ? glen + 1 : 0);
    int64_t now = now_wall_ms();
    store_task t = {0};
    store_id_new(e->st, t.id);
    t.priority = (store_priority)sub->priority;
    t.max_attempts = sub->max_attempts > 0 ? sub->max_attempts : MAX(q->spec->max_attempts, 1);
    t.timeout_ms = sub->timeout_ms > 0 ? sub->timeout_ms : q->spec->timeout_ms;
    t.created_at = now;
    t.run_at = sub->run_at > 0 ? sub->run_at : sub->delay_ms > 0 ? now + sub->delay_ms : 0;
    t.state = t.run_at > now ? STORE_TASK_SCHEDULED : STORE_TASK_PENDING;
    if (t.run_at <= now)
        t.run_at = 0;
    t.payload_len = plen;
    bool wake = false;
    int r = 0;
    pthread_mutex_lock(&e->intake_lock);
    intake_buf *b;
    if (e->intake_closed)
        r = -ESHUTDOWN;
    else if (!(b = intake_reserve(e, text)))
        r = -ENOMEM;
    else {
        wake = e->intake == b && b->n == 0;
        size_t i = b->n++;
        b->tasks[i] = t;
        b->qidx[i] = q->index;
        b->off[i].payload = intake_put(b, payload, plen);
        b->off[i].key = sub->idempotency_key ? intake_put(b, sub->idempotency_key, klen) : 0;
        b->off[i].tags = sub->tags ? intake_put(b, sub->tags, glen) : 0;
    }
    pthread_mutex_unlock(&e->intake_lock);
    if (r < 0)
        return r;
    if (ret_id)
        memcpy(ret_id, t.id, STORE_ID_SIZE);
    if (wake)
        uv_async_send(&e->intake_async);
    return 0;
}

static void drain_intake(task_engine *e) {
    pthread_mutex_lock(&e->intake_lock);
    intake_buf *list = e->intake;
    e->intake = e->intake_tail = NULL;
    pthread_mutex_unlock(&e->intake_lock);
    while (list) {
        intake_buf *b = list;
        list = b->next;
        b->next = NULL;
        if (b->n == 0) { /* a chunk whose only task failed to fit */
            intake_buf_free(b);
            continue;
        }
        for (size_t i = 0; i < b->n; i++) {
            store_task *t = &b->tasks[i];
            t->queue = (char *)e->qs[b->qidx[i]].spec->name;
            t->payload = b->text + b->off[i].payload - 1;
            t->idempotency_key = b->off[i].key ? b->text + b->off[i].key - 1 : NULL;
            t->tags = b->off[i].tags ? b->text + b->off[i].tags - 1 : NULL;
        }
        /* One INSERT per chunk; it frees the chunk. */
        intake_op *io = calloc(1, sizeof(*io));
        int r = -ENOMEM;
        if (io) {
            io->e = e;
            io->buf = b;
            io->tasks = b->tasks;
            io->n = b->n;
            io->qidx = b->qidx;
            io->op = (store_op){.kind = STORE_OP_INSERT, .done = on_insert, .userdata = io};
            io->op.insert.tasks = io->tasks;
            io->op.insert.n = io->n;
            r = submit_op(e, &io->op);
        }
        if (r < 0) {
            e->intake_failed += b->n;
            elog(e, LOG_ERR, NULL, "%zu submitted tasks were not stored: %s", b->n, strerror(-r));
            if (io)
                intake_op_free(io);
            else
                intake_buf_free(b);
        }
    }
}

static void on_intake(uv_async_t *a) { drain_intake(a->data); }

/* ---- actions ---------------------------------------------------------------------------- */

enum action_kind { ACT_GET, ACT_CANCEL, ACT_RETRY, ACT_ACK, ACT_NACK, ACT_TOUCH };

typedef struct action {
    store_op op;
    task_engine *e;
    enum action_kind kind;
    char id[STORE_ID_SIZE];
    task_done done;
    void *data;
    store_task upd;         /* the values written by the update step */
    store_task *got;        /* the record read */
    int from;
    int tries;
    char *error;
    int64_t retry_in_ms;
    bool early;             /* answered already (a touch with ack: async) */
} action;

static void action_free(action *a) {
    store_task_free(a->got);
    store_task_clear(&a->upd);
    free(a->error);
    free(a);
}

static void action_get(action *a);

static void action_reply(action *a, int r, const store_task *t) {
    if (a->done)
        a->done(a->data, r, t);
    action_free(a);
}

/* The reply of an action on a running task comes from its outcome write. */
static void on_run_action_done(void *data, int result, const store_task *t) {
    action *a = data;
    action_reply(a, result, t);
}

static void on_touch(store_op *op, int result);

static int act_on_run(action *a, task_run *r, size_t idx) {
    task_engine *e = a->e;
    tq *q = r->queue;
    switch (a->kind) {
    case ACT_CANCEL:
        if (r->batch) {
            /* A batch member: the batch runs on; this task ends cancelled. */
            if (!r->cancel_mask)
                r->cancel_mask = calloc(r->n, sizeof(bool));
            if (!r->cancel_mask)
                return -ENOMEM;
            r->cancel_mask[idx] = true;
            store_task t = r->tasks[idx];
            action_reply(a, 0, &t);
            return 0;
        }
        break;
    case ACT_ACK:
    case ACT_NACK:
    case ACT_TOUCH:
        if (q->backend)
            return -EOPNOTSUPP;
        break;
    default:
        break;
    }
    run_reply *rep = calloc(1, sizeof(*rep));
    if (!rep)
        return -ENOMEM;
    rep->done = on_run_action_done;
    rep->data = a;
    rep->index = idx;
    rep->early = q->spec->ack_async && (a->kind == ACT_ACK || a->kind == ACT_NACK);
    if (a->kind == ACT_TOUCH) {
        free(rep);
        int64_t lease = r->timeout_ms > 0 ? r->timeout_ms : 30000;
        heap_update(e, r, now_mono_ms() + lease);
        store_task_clear(&a->upd);
        if (store_task_copy(&a->upd, &r->tasks[0]) < 0)
            return -ENOMEM;
        a->upd.lease_until = now_wall_ms() + lease;
        r->tasks[0].lease_until = a->upd.lease_until;
        a->op = (store_op){.kind = STORE_OP_UPDATE, .userdata = a};
        a->op.done = on_touch;
        a->op.update.task = &a->upd;
        a->op.update.fields = STORE_FIELD_LEASE;
        a->op.update.expect_states = STORE_STATE_BIT(STORE_TASK_RUNNING);
        int rc = submit_op(e, &a->op);
        if (rc == 0 && q->spec->ack_async) {
            /* ack: async: the lease is extended in memory already; answer
             * now (on_touch then only logs a failed write: the in-memory
             * lease is the one that counts while tend runs). */
            store_task t = a->upd;
            t.version++;
            task_done d = a->done;
            a->done = NULL;
            a->early = true;
            if (d)
                d(a->data, 0, &t);
        }
        return rc;
    }
    if (r->reply) {
        /* An earlier action waits for this run's outcome too (a second
         * cancel): it is answered now with what it asked for pending. */
        free(rep);
        return -EALREADY;
    }
    r->reply = rep;
    if (a->kind == ACT_CANCEL) {
        abort_run(r, TASK_ABORT_CANCEL);
    } else if (a->kind == ACT_ACK) {
        handler_result res = {.outcome = HANDLER_OK, .retry_after_ms = -1};
        handler_done(r, &res);
    } else { /* NACK */
        char msg[STORE_ERROR_MAX];
        snprintf(msg, sizeof(msg), "%s", a->error ? a->error : "nack");
        handler_result res = {.outcome = HANDLER_FAILED, .error = msg, .retry_after_ms = a->retry_in_ms};
        handler_done(r, &res);
    }
    return 0;
}

static void on_touch(store_op *op, int result) {
    action *a = op->userdata;
    task_engine *e = a->e;
    store_op_clear(op);
    op_finished(e);
    if (result == 0) {
        a->upd.version = op->update.ret_version;
        a->upd.state = STORE_TASK_RUNNING;
        action_reply(a, 0, &a->upd);
    } else if (a->early) {
        elog(e, LOG_WARNING, find_queue(e, a->upd.queue), "task %s: cannot record its extended lease: %s", a->id,
             strerror(-result));
        action_reply(a, result, NULL);
    } else {
        action_reply(a, result, NULL);
    }
}

static void on_action_update(store_op *op, int result) {
    action *a = op->userdata;
    task_engine *e = a->e;
    store_op_clear(op);
    op_finished(e);
    tq *q = find_queue(e, a->upd.queue);
    if (result == -ESTALE && a->tries++ < 3) {
        action_get(a); /* it changed meanwhile (a claim): look again */
        return;
    }
    if (result < 0) {
        action_reply(a, result, NULL);
        return;
    }
    a->upd.version = op->update.ret_version;
    if (q) {
        count_move(q, a->from, a->upd.state, a->upd.priority);
        if (a->upd.state == STORE_TASK_CANCELLED)
            note_finished(q, TASK_RESULT_CANCELLED);
        notify_state(e, &a->upd, a->from, a->upd.state);
        if (a->upd.state == STORE_TASK_PENDING) {
            mark_ready(q);
            if (q->spec->batch)
                q->refetch = true;
            pump(q);
        }
    }
    action_reply(a, 0, &a->upd);
}

static void on_action_get(store_op *op, int result) {
    action *a = op->userdata;
    task_engine *e = a->e;
    store_task *t = op->get.ret_task;
    op->get.ret_task = NULL;
    op_finished(e);
    if (result < 0) {
        action_reply(a, result, NULL);
        return;
    }
    store_task_free(a->got);
    a->got = t;
    if (a->kind == ACT_GET) {
        action_reply(a, 0, t);
        return;
    }
    size_t idx = 0;
    task_run *r = t->state == STORE_TASK_RUNNING ? hash_find(e, a->id, &idx) : NULL;
    if (r) {
        int rc = act_on_run(a, r, idx);
        if (rc < 0)
            action_reply(a, rc, NULL);
        return;
    }
    int64_t now = now_wall_ms();
    unsigned fields = 0;
    int to = -1;
    switch (a->kind) {
    case ACT_CANCEL:
        if (t->state == STORE_TASK_PENDING || t->state == STORE_TASK_SCHEDULED) {
            to = STORE_TASK_CANCELLED;
            fields = STORE_FIELD_STATE | STORE_FIELD_FINISHED_AT;
        }
        break;
    case ACT_RETRY:
        if (t->state == STORE_TASK_DEAD || t->state == STORE_TASK_CANCELLED || t->state == STORE_TASK_SCHEDULED) {
            to = STORE_TASK_PENDING;
            fields = STORE_FIELD_STATE | STORE_FIELD_ATTEMPTS | STORE_FIELD_RUN_AT | STORE_FIELD_FINISHED_AT;
        }
        break;
    default: /* ack/nack/touch of a task that is not leased here */
        break;
    }
    if (to < 0) {
        action_reply(a, -EBUSY, t);
        return;
    }
    store_task_clear(&a->upd);
    if (store_task_copy(&a->upd, t) < 0) {
        action_reply(a, -ENOMEM, NULL);
        return;
    }
    a->from = t->state;
    a->upd.state = (store_task_state)to;
    if (to == STORE_TASK_CANCELLED) {
        a->upd.finished_at = now;
    } else {
        a->upd.attempts = 0;
        a->upd.run_at = now;
        a->upd.finished_at = 0;
    }
    a->op = (store_op){.kind = STORE_OP_UPDATE, .done = on_action_update, .userdata = a};
    a->op.update.task = &a->upd;
    a->op.update.fields = fields;
    a->op.update.expect_version = t->version;
    int rc = submit_op(e, &a->op);
    if (rc < 0)
        action_reply(a, rc, NULL);
}

static void action_get(action *a) {
    a->op = (store_op){.kind = STORE_OP_GET, .done = on_action_get, .userdata = a};
    a->op.get.id = a->id;
    int r = submit_op(a->e, &a->op);
    if (r < 0)
        action_reply(a, r, NULL);
}

static int action_start(task_engine *e, enum action_kind kind, const char *id, task_done done, void *data,
                        const char *error, int64_t retry_in_ms) {
    if (!id || !store_id_valid(id))
        return -ENOENT;
    if (e->closing)
        return -ESHUTDOWN;
    action *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->e = e;
    a->kind = kind;
    memcpy(a->id, id, STORE_ID_SIZE);
    a->done = done;
    a->data = data;
    a->retry_in_ms = retry_in_ms;
    if (error && !(a->error = strdup(error))) {
        free(a);
        return -ENOMEM;
    }
    /* A task running here is acted on at once (no store read needed). */
    size_t idx = 0;
    task_run *r = kind != ACT_GET && kind != ACT_RETRY ? hash_find(e, id, &idx) : NULL;
    if (r) {
        int rc = act_on_run(a, r, idx);
        if (rc < 0)
            action_free(a);
        return rc;
    }
    a->op = (store_op){.kind = STORE_OP_GET, .done = on_action_get, .userdata = a};
    a->op.get.id = a->id;
    int rc = submit_op(e, &a->op);
    if (rc < 0)
        action_free(a);
    return rc;
}

int task_engine_get(task_engine *e, const char *id, task_done done, void *data) {
    return action_start(e, ACT_GET, id, done, data, NULL, -1);
}
int task_engine_cancel(task_engine *e, const char *id, task_done done, void *data) {
    return action_start(e, ACT_CANCEL, id, done, data, NULL, -1);
}
int task_engine_retry(task_engine *e, const char *id, task_done done, void *data) {
    if (e->stopping)
        return -ESHUTDOWN;
    return action_start(e, ACT_RETRY, id, done, data, NULL, -1);
}
int task_engine_ack(task_engine *e, const char *id, task_done done, void *data) {
    return action_start(e, ACT_ACK, id, done, data, NULL, -1);
}
int task_engine_nack(task_engine *e, const char *id, const char *error, int64_t retry_in_ms, task_done done,
                     void *data) {
    return action_start(e, ACT_NACK, id, done, data, error, retry_in_ms);
}
int task_engine_touch(task_engine *e, const char *id, task_done done, void *data) {
    return action_start(e, ACT_TOUCH, id, done, data, NULL, -1);
}

/* LIST */
typedef struct list_op {
    store_op op;
    task_engine *e;
    char *queue;
    char cursor[STORE_ID_SIZE];
    task_list_done done;
    void *data;
} list_op;

static void on_list(store_op *op, int result) {
    list_op *l = op->userdata;
    op_finished(l->e);
    if (result < 0)
        l->done(l->data, result, NULL, 0, "");
    else
        l->done(l->data, 0, op->list.ret_tasks, op->list.ret_n, op->list.ret_cursor);
    store_op_clear(op);
    free(l->queue);
    free(l);
}

int task_engine_list(task_engine *e, const char *queue, int state, size_t limit, const char *cursor,
                     task_list_done done, void *data) {
    if (e->closing)
        return -ESHUTDOWN;
    if (state < -1 || state >= STORE_TASK_STATE_MAX || limit > STORE_LIMIT_MAX)
        return -EINVAL;
    if (cursor && *cursor && !store_id_valid(cursor))
        return -EINVAL;
    list_op *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->e = e;
    l->done = done;
    l->data = data;
    if (queue && !(l->queue = strdup(queue))) {
        free(l);
        return -ENOMEM;
    }
    if (cursor)
        snprintf(l->cursor, sizeof(l->cursor), "%s", cursor);
    l->op = (store_op){.kind = STORE_OP_LIST, .done = on_list, .userdata = l};
    l->op.list.queue = l->queue;
    l->op.list.state = state;
    l->op.list.limit = limit;
    l->op.list.cursor = l->cursor;
    int r = submit_op(e, &l->op);
    if (r < 0) {
        free(l->queue);
        free(l);
    }
    return r;
}

/* Dead letters */
typedef struct dead_op {
    store_op op;
    tq *q;
    bool requeue;
    task_count_done done;
    void *data;
} dead_op;

static void on_dead(store_op *op, int result) {
    dead_op *d = op->userdata;
    tq *q = d->q;
    task_engine *e = q->e;
    op_finished(e);
    if (result > 0) {
        for (int p = 0; p < STORE_PRIORITY_MAX; p++) {
            if (d->requeue)
                q->counts[STORE_TASK_PENDING][p] += q->counts[STORE_TASK_DEAD][p];
            q->counts[STORE_TASK_DEAD][p] = 0;
        }
        elog(e, LOG_INFO, q, "%s %d dead tasks", d->requeue ? "requeued" : "purged", result);
        if (d->requeue) {
            mark_ready(q);
            q->refetch = true;
            pump(q);
        }
        refresh_counts(e);
    }
    if (d->done)
        d->done(d->data, result);
    free(d);
}

static int dead_action(task_engine *e, const char *queue, bool requeue, task_count_done done, void *data) {
    tq *q = find_queue(e, queue);
    if (!q)
        return -ENOENT;
    if (e->closing || (requeue && e->stopping))
        return -ESHUTDOWN;
    dead_op *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->q = q;
    d->requeue = requeue;
    d->done = done;
    d->data = data;
    d->op = (store_op){.kind = requeue ? STORE_OP_REQUEUE_DEAD : STORE_OP_PURGE_DEAD, .done = on_dead, .userdata = d};
    d->op.dead.queue = q->spec->name;
    d->op.dead.now = now_wall_ms();
    int r = submit_op(e, &d->op);
    if (r < 0)
        free(d);
    return r;
}

int task_engine_requeue_dead(task_engine *e, const char *queue, task_count_done done, void *data) {
    return dead_action(e, queue, true, done, data);
}
int task_engine_purge_dead(task_engine *e, const char *queue, task_count_done done, void *data) {
    return dead_action(e, queue, false, done, data);
}

typedef struct pause_op {
    store_op op;
    tq *q;
    task_count_done done;
    void *data;
} pause_op;

static void log_pause_not_saved(tq *q, bool paused, int error) {
    elog(q->e, LOG_ERR, q, "%s, but that could not be saved (%s): a restart would not keep it",
         paused ? "paused" : "resumed", strerror(-error));
}

static void on_pause_saved(store_op *op, int result) {
    pause_op *p = op->userdata;
    op_finished(p->q->e);
    if (result < 0)
        log_pause_not_saved(p->q, p->op.queue_pause.paused, result);
    if (p->done)
        p->done(p->data, result < 0 ? result : 0);
    free(p);
}

int task_engine_pause(task_engine *e, const char *queue, bool paused, task_count_done done, void *data) {
    tq *q = find_queue(e, queue);
    if (!q)
        return -ENOENT;
    if (q->paused != paused) {
        q->paused = paused;
        elog(e, LOG_INFO, q, "%s", paused ? "paused" : "resumed");
    }
    if (!paused)
        pump(q);
    else
        arm_queue_timer(q);
    /* Written even when nothing changed: the caller is told once the
     * state it asked for is on disk. */
    pause_op *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->q = q;
    p->done = done;
    p->data = data;
    p->op = (store_op){.kind = STORE_OP_QUEUE_PAUSE, .done = on_pause_saved, .userdata = p};
    p->op.queue_pause.queue = q->spec->name;
    p->op.queue_pause.paused = paused;
    int r = e->closing ? -ESHUTDOWN : submit_op(e, &p->op);
    if (r < 0) {
        log_pause_not_saved(q, paused, r);
        free(p);
    }
    return r;
}

/* ---- reserve ------------------------------------------------------------------------------ */

static void on_waiter_timeout(uv_timer_t *t) {
    waiter *w = t->data;
    tq *q = w->q;
    waiter_unlink(q, w);
    w->done(w->data, 0, NULL);
    waiter_free(w);
}

int task_engine_reserve(task_engine *e, const char *queue, int64_t wait_ms, task_reserve_done done, void *data,
                        task_reserve **ret) {
    tq *q = find_queue(e, queue);
    if (!q)
        return -ENOENT;
    if (q->backend)
        return -EOPNOTSUPP;
    if (e->stopping)
        return -ESHUTDOWN;
    q->last_reserve_ms = now_mono_ms();
    if (q->held && !q->waiters && !q->paused && leases_out(q) < lease_limit(q)) {
        /* A lease claimed ahead is ready: hand it out now, inside this
         * call (no waiter, no timer, no suspended connection), and top the
         * window up in the background. */
        task_run *r = q->held;
        unhold(q, r);
        int64_t lease = r->timeout_ms > 0 ? r->timeout_ms : 30000;
        heap_update(e, r, now_mono_ms() + lease);
        r->tasks[0].lease_until = now_wall_ms() + lease;
        if (ret)
            *ret = NULL;
        done(data, 0, &r->tasks[0]);
        uv_timer_start(&q->timer, on_queue_timer, 0, 0); /* pump re-arms it */
        return 0;
    }
    waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->q = q;
    w->done = done;
    w->data = data;
    uv_timer_init(e->loop, &w->timer);
    w->timer.data = w;
    w->has_timer = true;
    e->handles_open++;
    /* Always answer later, never inside this call; wait 0 still leaves
     * the claim this reserve triggers time to come back. */
    uv_timer_start(&w->timer, on_waiter_timeout, (uint64_t)MAX(wait_ms, 50), 0);
    w->prev = q->waiters_tail;
    if (q->waiters_tail)
        q->waiters_tail->next = w;
    else
        q->waiters = w;
    q->waiters_tail = w;
    q->n_waiters++;
    if (ret)
        *ret = (task_reserve *)w;
    mark_ready(q); /* external workers ask: look */
    q->last_reserve_ms = now_mono_ms();
    uv_timer_start(&q->timer, on_queue_timer, 0, 0);
    return 0;
}

void task_engine_reserve_cancel(task_engine *e, task_reserve *r) {
    waiter *w = (waiter *)r;
    if (!w)
        return;
    waiter_unlink(w->q, w);
    waiter_free(w);
}

/* ---- views ------------------------------------------------------------------------------- */

size_t task_engine_n_queues(const task_engine *e) { return e->n_qs; }

int task_engine_queue_index(const task_engine *e, const char *name) {
    const tq *q = find_queue(e, name);
    return q ? (int)q->index : -ENOENT;
}

int task_engine_queue_info(task_engine *e, size_t index, task_queue_info *ret) {
    if (index >= e->n_qs)
        return -ENOENT;
    tq *q = &e->qs[index];
    int64_t now = now_mono_ms();
    memset(ret, 0, sizeof(*ret));
    ret->spec = q->spec;
    ret->paused = q->paused;
    for (int s = 0; s < STORE_TASK_STATE_MAX; s++)
        for (int p = 0; p < STORE_PRIORITY_MAX; p++)
            ret->n[s][p] = q->counts[s][p] > 0 ? (uint64_t)q->counts[s][p] : 0;
    ret->depth = count_state(q, STORE_TASK_PENDING) + count_state(q, STORE_TASK_SCHEDULED);
    ret->running = q->running;
    ret->dead = count_state(q, STORE_TASK_DEAD);
    ret->breaker = q->br.threshold ? breaker_state(&q->br, now) : BREAKER_CLOSED;
    ret->breaker_failures = q->br.failures;
    ret->breaker_opened_total = q->br.opened_total;
    ret->rate_limit = q->spec->rate_per_sec;
    ret->tokens = q->spec->rate_per_sec > 0 ? token_bucket_available(&q->tb, now) : INFINITY;
    memcpy(ret->submitted, q->submitted, sizeof(ret->submitted));
    memcpy(ret->finished, q->finished, sizeof(ret->finished));
    ret->duration = &q->duration;
    ret->batch_size = &q->batch_hist;
    ret->avg_ms = q->dur_n ? q->dur_sum_ms / (double)q->dur_n : 0;
    ret->throughput = queue_throughput(q);
    return 0;
}

void task_engine_get_stats(task_engine *e, task_engine_stats *ret) {
    memset(ret, 0, sizeof(*ret));
    uint64_t ok = 0, bad = 0, dur_n = 0;
    double dur = 0;
    for (size_t i = 0; i < e->n_qs; i++) {
        task_queue_info in;
        task_engine_queue_info(e, i, &in);
        ret->running_tasks += in.running;
        ret->queue_depth += in.depth;
        ret->dead_letter_count += in.dead;
        ok += in.finished[TASK_RESULT_SUCCEEDED];
        bad += in.finished[TASK_RESULT_FAILED] + in.finished[TASK_RESULT_DEAD];
        ret->total_processed += in.finished[0] + in.finished[1] + in.finished[2] + in.finished[3];
        dur += e->qs[i].dur_sum_ms;
        dur_n += e->qs[i].dur_n;
        ret->throughput_per_second += in.throughput;
        for (int p = 0; p < STORE_PRIORITY_MAX; p++)
            ret->submitted += in.submitted[p];
    }
    ret->success_rate = ok + bad ? (double)ok / (double)(ok + bad) : 1.0;
    ret->average_processing_time_ms = dur_n ? dur / (double)dur_n : 0;
    ret->intake_failed = e->intake_failed;
}

bool task_engine_stopping(const task_engine *e) { return e->stopping; }

/* ---- task JSON for handlers ------------------------------------------------------------ */

static void json_str(strbuf *b, const char *s) {
    strbuf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            strbuf_append(b, esc, 2);
        } else if (*p < 0x20) {
            strbuf_printf(b, "\\u%04x", *p);
        } else {
            strbuf_append(b, (const char *)p, 1);
        }
    }
    strbuf_append(b, "\"", 1);
}

static void task_json_into(strbuf *b, const store_task *t) {
    strbuf_append(b, "{\"id\":", 6);
    json_str(b, t->id);
    strbuf_append(b, ",\"queue\":", 9);
    json_str(b, t->queue ? t->queue : "");
    strbuf_printf(b, ",\"attempt\":%d,\"payload\":", (int)t->attempts);
    if (t->payload && t->payload_len)
        strbuf_append(b, t->payload, t->payload_len);
    else
        strbuf_append(b, "null", 4);
    strbuf_append(b, "}", 1);
}

char *task_engine_task_json(const store_task *t, size_t *ret_len) {
    strbuf b;
    strbuf_init(&b, STORE_PAYLOAD_MAX + 4096);
    task_json_into(&b, t);
    if (b.error) {
        strbuf_free(&b);
        return NULL;
    }
    return strbuf_take(&b, ret_len);
}

char *handler_input_json(const task_run *run, size_t *ret_len) {
    if (!run->batch)
        return task_engine_task_json(&run->tasks[0], ret_len);
    strbuf b;
    strbuf_init(&b, (size_t)64 << 20);
    strbuf_append(&b, "{\"batch\":[", 10);
    for (size_t i = 0; i < run->n; i++) {
        if (i)
            strbuf_append(&b, ",", 1);
        task_json_into(&b, &run->tasks[i]);
    }
    strbuf_append(&b, "]}", 2);
    if (b.error) {
        strbuf_free(&b);
        return NULL;
    }
    return strbuf_take(&b, ret_len);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

int task_engine_recover_uncharged(const tend_tasks_spec *spec, const char ***ret, size_t *ret_n) {
    *ret = NULL;
    *ret_n = 0;
    size_t n = 0;
    for (size_t i = 0; i < spec->n_queues; i++)
        n += spec->queues[i].handler == TEND_HANDLER_PULL;
    if (n == 0)
        return 0;
    const char **v = calloc(n, sizeof(*v));
    if (!v)
        return -ENOMEM;
    n = 0;
    for (size_t i = 0; i < spec->n_queues; i++)
        if (spec->queues[i].handler == TEND_HANDLER_PULL)
            v[n++] = spec->queues[i].name;
    *ret = v;
    *ret_n = n;
    return 0;
}

int task_engine_new(const task_engine_config *cfg, task_engine **ret, char *err, size_t errlen) {
    task_engine *e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    e->loop = cfg->loop;
    e->st = cfg->store;
    e->spec = cfg->spec;
    e->cb = cfg->cb;
    e->env.loop = cfg->loop;
    e->env.reaper = cfg->reaper;
    e->env.guard = cfg->guard;
    e->env.cwd = cfg->cwd;
    e->env.workers = MAX(cfg->spec->workers, 1);
    e->rng = (uint64_t)now_mono_us() ^ ((uint64_t)(uintptr_t)e << 16) ^ 0x9e3779b97f4a7c15ull;
    if (!e->rng)
        e->rng = 1;
    pthread_mutex_init(&e->intake_lock, NULL);
    e->n_qs = cfg->spec->n_queues;
    e->qs = calloc(MAX(e->n_qs, 1), sizeof(*e->qs));
    if (!e->qs) {
        free(e);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int64_t now = now_mono_ms();
    for (size_t i = 0; i < e->n_qs; i++) {
        tq *q = &e->qs[i];
        const tend_queue_spec *s = &cfg->spec->queues[i];
        q->e = e;
        q->spec = s;
        q->index = i;
        switch (s->handler) {
        case TEND_HANDLER_EXEC:
            q->backend = &handler_exec;
            if (!cfg->reaper) {
                snprintf(err, errlen, "tasks.queues.%s: exec handlers need a reaper", s->name);
                goto fail;
            }
            break;
        case TEND_HANDLER_HTTP: q->backend = &handler_http; break;
        case TEND_HANDLER_FUNC: q->backend = &handler_func; break;
        case TEND_HANDLER_PULL: q->backend = NULL; break;
        }
        (void)breaker_init(&q->br, (unsigned)MAX(s->breaker_failure_threshold, 0), MAX(s->breaker_open_ms, 0));
        (void)token_bucket_init(&q->tb, s->rate_per_sec > 0 ? s->rate_per_sec : 0, 0, now);
        if (s->batch && batch_init(&q->bt, (size_t)MAX(s->batch_size, 1), MAX(s->batch_max_wait_ms, 0),
                                   (size_t)MAX(s->batch_size, 1)) < 0) {
            snprintf(err, errlen, "tasks.queues.%s: cannot set up batching", s->name);
            goto fail;
        }
        histogram_init(&q->duration, histogram_latency_bounds, histogram_latency_n);
        static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
        histogram_init(&q->batch_hist, batch_bounds, ELEMENTSOF(batch_bounds));
        uv_timer_init(e->loop, &q->timer);
        q->timer.data = q;
        e->handles_open++;
    }
    for (size_t i = 0; i < cfg->n_paused; i++) {
        tq *q = find_queue(e, cfg->paused[i]);
        if (q && !q->paused) {
            q->paused = true;
            elog(e, LOG_INFO, q, "paused (as the last run left it; resume with tend queue resume %s)", q->spec->name);
        }
    }
    uv_timer_init(e->loop, &e->heap_timer);
    e->heap_timer.data = e;
    uv_timer_init(e->loop, &e->counts_timer);
    e->counts_timer.data = e;
    uv_timer_init(e->loop, &e->retention_timer);
    e->retention_timer.data = e;
    uv_timer_init(e->loop, &e->retry_timer);
    e->retry_timer.data = e;
    uv_timer_init(e->loop, &e->drain_timer);
    e->drain_timer.data = e;
    uv_async_init(e->loop, &e->intake_async, on_intake);
    e->intake_async.data = e;
    uv_unref((uv_handle_t *)&e->intake_async);
    e->handles_open += 6;
    *ret = e;
    return 0;
fail:
    for (size_t i = 0; i < e->n_qs; i++)
        batch_free(&e->qs[i].bt);
    /* No handle was initialised for a failing queue's successors; the
     * initialised timers are closed by the caller's loop never running
     * them: close them now. */
    for (size_t i = 0; i < e->n_qs; i++)
        if (e->qs[i].timer.data == &e->qs[i])
            uv_close((uv_handle_t *)&e->qs[i].timer, NULL);
    uv_run(e->loop, UV_RUN_NOWAIT);
    free(e->qs);
    pthread_mutex_destroy(&e->intake_lock);
    free(e);
    return -EINVAL;
}

int task_engine_set_func(task_engine *e, const char *queue, task_func fn, void *userdata) {
    tq *q = find_queue(e, queue);
    if (!q)
        return -ENOENT;
    if (q->spec->handler != TEND_HANDLER_FUNC || !fn)
        return -EINVAL;
    q->fn = fn;
    q->fn_data = userdata;
    return 0;
}

int task_engine_start(task_engine *e) {
    if (e->started)
        return 0;
    bool want_pool = false;
    for (size_t i = 0; i < e->n_qs; i++) {
        if (e->qs[i].spec->handler == TEND_HANDLER_FUNC) {
            if (!e->qs[i].fn)
                return -EINVAL;
            want_pool = true;
        }
    }
    bool memory = strcmp(store_backend_name(e->st), "memory") == 0;
    for (size_t i = 0; i < e->n_qs; i++) {
        tq *q = &e->qs[i];
        q->windowed = memory && q->spec->handler == TEND_HANDLER_FUNC && !q->spec->batch &&
                      q->spec->concurrency >= e->env.workers;
    }
    if (want_pool) {
        int r = func_pool_new(&e->env, e->env.workers, &e->env.pool);
        if (r < 0)
            return r;
    }
    e->started = true;
    /* Unknown scheduled times until the first counts say otherwise. */
    for (size_t i = 0; i < e->n_qs; i++) {
        e->qs[i].sched_unknown = true;
        mark_ready(&e->qs[i]);
    }
    refresh_counts(e);
    uv_timer_start(&e->counts_timer, on_counts_timer, COUNTS_REFRESH_MS, COUNTS_REFRESH_MS);
    uv_unref((uv_handle_t *)&e->counts_timer);
    uv_timer_start(&e->retention_timer, on_retention_timer, 1000, RETENTION_PERIOD_MS);
    uv_unref((uv_handle_t *)&e->retention_timer);
    pump_all(e);
    return 0;
}

static void on_engine_handle_closed(uv_handle_t *h) {
    task_engine *e = h->data; /* close_handles() points every handle here */
    e->handles_open--;
    if (e->handles_open == 0)
        finish_shutdown(e);
}

static void finish_shutdown(task_engine *e) {
    if (e->shutdown_done) {
        void (*done)(void *) = e->shutdown_done;
        e->shutdown_done = NULL;
        done(e->shutdown_data);
    }
}

static void close_handles(task_engine *e) {
    if (e->closing)
        return;
    e->closing = true;
    for (size_t i = 0; i < e->n_qs; i++) {
        uv_timer_stop(&e->qs[i].timer);
        e->qs[i].timer.data = e;
        uv_close((uv_handle_t *)&e->qs[i].timer, on_engine_handle_closed);
    }
    uv_timer_t *ts[] = {&e->heap_timer, &e->counts_timer, &e->retention_timer, &e->retry_timer, &e->drain_timer};
    for (size_t i = 0; i < ELEMENTSOF(ts); i++) {
        uv_timer_stop(ts[i]);
        ts[i]->data = e;
        uv_close((uv_handle_t *)ts[i], on_engine_handle_closed);
    }
    e->intake_async.data = e;
    uv_close((uv_handle_t *)&e->intake_async, on_engine_handle_closed);
    if (e->env.pool) {
        func_pool_free(e->env.pool);
        e->env.pool = NULL;
    }
    if (e->env.http) {
        http_client_free(e->env.http);
        e->env.http = NULL;
    }
}

static void check_drained(task_engine *e) {
    if (!e->stopping || e->drained)
        return;
    bool runs = e->running > 0;
    for (size_t i = 0; i < e->n_qs && !runs; i++)
        runs = e->qs[i].running > 0 || e->qs[i].claim_in_flight || e->qs[i].fetch_in_flight;
    if (runs || e->ops_in_flight > 0 || e->retry_head || e->intake)
        return;
    /* Waiter timers still closing count as handles_open beyond ours. */
    e->drained = true;
    elog(e, LOG_INFO, NULL, "task engine stopped");
    close_handles(e);
}

static void on_drain_deadline(uv_timer_t *t) {
    task_engine *e = t->data;
    size_t n = 0;
    /* Abort every run: exec groups get SIGKILL, leases end; each is
     * requeued with its attempt counted. */
    while (e->n_heap > 0) {
        task_run *r = e->heap[0];
        heap_remove(e, r);
        n++;
        abort_run(r, TASK_ABORT_SHUTDOWN);
    }
    if (n)
        elog(e, LOG_WARNING, NULL, "shutdown deadline: %zu running task%s interrupted and requeued", n,
             n == 1 ? "" : "s");
    check_drained(e);
}

void task_engine_shutdown(task_engine *e, int64_t deadline_ms, void (*done)(void *data), void *data) {
    if (e->drained) {
        if (done && !e->shutdown_done && e->handles_open == 0)
            done(data);
        return;
    }
    if (done) {
        e->shutdown_done = done;
        e->shutdown_data = data;
    }
    if (!e->stopping) {
        e->stopping = true;
        pthread_mutex_lock(&e->intake_lock);
        e->intake_closed = true;
        pthread_mutex_unlock(&e->intake_lock);
        drain_intake(e); /* what was accepted is stored */
        uv_timer_stop(&e->counts_timer);
        uv_timer_stop(&e->retention_timer);
        for (size_t i = 0; i < e->n_qs; i++) {
            tq *q = &e->qs[i];
            uv_timer_stop(&q->timer);
            while (q->waiters) {
                waiter *w = q->waiters;
                waiter_unlink(q, w);
                w->done(w->data, -ESHUTDOWN, NULL);
                waiter_free(w);
            }
            while (q->held)
                drop_held(q, q->held);
        }
        size_t n = e->n_heap;
        if (n)
            elog(e, LOG_INFO, NULL, "waiting up to %lld ms for %zu running task%s", (long long)MAX(deadline_ms, 0), n,
                 n == 1 ? "" : "s");
    }
    uv_timer_start(&e->drain_timer, on_drain_deadline, (uint64_t)MAX(deadline_ms, 0), 0);
    check_drained(e);
}

task_engine *task_engine_free(task_engine *e) {
    if (!e)
        return NULL;
    for (size_t i = 0; i < e->n_qs; i++) {
        batch_free(&e->qs[i].bt);
        free(e->qs[i].sched);
    }
    while (e->retry_head) {
        upd *u = e->retry_head;
        e->retry_head = u->next;
        upd_free(u);
    }
    pthread_mutex_lock(&e->intake_lock);
    intake_buf_free(e->intake);
    e->intake = e->intake_tail = NULL;
    pthread_mutex_unlock(&e->intake_lock);
    pthread_mutex_destroy(&e->intake_lock);
    cache_clear(&e->upd_cache);
    cache_clear(&e->run_cache);
    free(e->heap);
    free(e->hash);
    free(e->qs);
    free(e);
    return NULL;
}
