/*
 * test-store.c - the task store, both backends through the same tests:
 * records and ids, idempotency, dispatch order, optimistic updates,
 * paging, counts, dead letters, retention, crash recovery (a copied crash
 * image and a real SIGKILL), fault injection and group commit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "timeutil.h"

static const store_backend_kind backend_sqlite = STORE_BACKEND_SQLITE;
static const store_backend_kind backend_memory = STORE_BACKEND_MEMORY;

typedef struct fx {
    store_backend_kind kind;
    uv_loop_t loop;
    store *s;
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

static void on_closed(void *data) {
    *(bool *)data = true;
}

static int open_store(fx *f, const char *dir, store **ret) {
    store_config cfg = {.backend = f->kind, .state_dir = dir, .sync = STORE_SYNC_FULL};
    char *msg = NULL;
    int r = store_open(&f->loop, &cfg, ret, &msg);
    if (r < 0 && msg)
        print_message("store_open: %s\n", msg);
    free(msg);
    return r;
}

static void close_store(fx *f, store *s) {
    bool closed = false;
    store_close(s, on_closed, &closed);
    while (!closed)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    return remove(path);
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->kind = *(const store_backend_kind *)*state;
    snprintf(f->dir, sizeof(f->dir), "%s/test-store-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(open_store(f, f->dir, &f->s), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    if (f->s)
        close_store(f, f->s);
    /* Every handle of the store is closed: the loop closes cleanly. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Submits op and runs the loop until it completes; the result. */
static int run_on(fx *f, store *s, store_op *op) {
    waiter w = {0};
    op->done = on_done;
    op->userdata = &w;
    int r = store_submit(s, op);
    if (r < 0)
        return r;
    while (!w.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    return w.result;
}

static int run_op(fx *f, store_op *op) {
    return run_on(f, f->s, op);
}

static store_task mk(const char *queue, store_priority prio, const char *payload) {
    return (store_task){
        .queue = (char *)queue,
        .priority = prio,
        .state = STORE_TASK_PENDING,
        .max_attempts = 3,
        .timeout_ms = 30000,
        .payload = (char *)payload,
        .payload_len = strlen(payload),
    };
}

static int insert_on(fx *f, store *s, store_task *tasks, size_t n) {
    store_op op = {.kind = STORE_OP_INSERT, .insert = {.tasks = tasks, .n = n}};
    int r = run_on(f, s, &op);
    store_op_clear(&op);
    return r;
}

static int insert(fx *f, store_task *tasks, size_t n) {
    return insert_on(f, f->s, tasks, n);
}

static store_task *get_on(fx *f, store *s, const char *id) {
    store_op op = {.kind = STORE_OP_GET, .get = {.id = id}};
    int r = run_on(f, s, &op);
    if (r < 0)
        return NULL;
    return op.get.ret_task;
}

static store_task *get(fx *f, const char *id) {
    return get_on(f, f->s, id);
}

static int set_state(fx *f, const char *id, store_task_state st, int attempts,
                     int64_t finished_at) {
    store_task t = {.state = st, .attempts = attempts, .finished_at = finished_at};
    snprintf(t.id, sizeof(t.id), "%s", id);
    store_op op = {
        .kind = STORE_OP_UPDATE,
        .update = {.task = &t,
                   .fields = STORE_FIELD_STATE | STORE_FIELD_ATTEMPTS | STORE_FIELD_FINISHED_AT}};
    return run_op(f, &op);
}

static int64_t queue_count(fx *f, const char *queue, store_task_state st, int prio) {
    store_op op = {.kind = STORE_OP_COUNTS, .counts = {.queue = queue}};
    assert_true(run_op(f, &op) >= 0);
    int64_t n = 0;
    for (size_t i = 0; i < op.counts.ret_n; i++)
        for (int p = 0; p < STORE_PRIORITY_MAX; p++)
            if (prio < 0 || p == prio)
                n += (int64_t)op.counts.ret_counts[i].n[st][p];
    store_op_clear(&op);
    return n;
}

/* ---- Ids and records --------------------------------------------------- */

static void test_ids(void **state) {
    store_idgen g;
    store_idgen_init(&g);
    char prev[STORE_ID_SIZE] = "", id[STORE_ID_SIZE];
    int64_t t0 = now_wall_ms();
    for (int i = 0; i < 100000; i++) {
        /* The same millisecond many times, and a clock that steps back. */
        store_idgen_next(&g, i == 50000 ? t0 - 1000 : t0 + i / 1000, id);
        assert_true(store_id_valid(id));
        assert_int_equal(strlen(id), STORE_ID_LEN);
        assert_true(strcmp(prev, id) < 0);
        memcpy(prev, id, sizeof(id));
    }
    store_idgen_destroy(&g);

    store_id_format(0, 0, 0, id);
    assert_string_equal(id, "00000000000000000000000000");
    store_id_format((INT64_C(1) << 48) - 1, 0xFFFF, UINT64_MAX, id);
    assert_string_equal(id, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    store_id_format(1469918176385, 0, 0, id); /* the ULID spec's example time */
    assert_memory_equal(id, "01ARYZ6S41", 10);
    assert_int_equal(store_id_time_ms(id), 1469918176385);
    assert_false(store_id_valid("01ARYZ6S41000000000000000"));  /* 25 */
    assert_false(store_id_valid("01ARYZ6S41000000000000000U")); /* not Crockford */
    assert_false(store_id_valid("81ARYZ6S410000000000000000")); /* > 128 bits */
    assert_false(store_id_valid(NULL));

    assert_string_equal(store_task_state_to_string(STORE_TASK_CANCELLED), "cancelled");
    assert_int_equal(store_task_state_from_string("dead"), STORE_TASK_DEAD);
    assert_int_equal(store_priority_from_string("background"), STORE_PRIORITY_BACKGROUND);
    assert_int_equal(store_priority_from_string("urgent"), -EINVAL);
    assert_null(store_priority_to_string(7));

    /* last_error is cut at 4 KiB without splitting a UTF-8 character. */
    char big[STORE_ERROR_MAX + 16];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    memcpy(big + STORE_ERROR_MAX - 1, "\xc3\xa9", 2); /* é across the limit */
    assert_int_equal(store_error_len(big), STORE_ERROR_MAX - 1);
}

static void test_insert_get(void **state) {
    fx *f = *state;
    store_task t[3] = {mk("email", STORE_PRIORITY_HIGH, "{\"to\":\"a@example.com\"}"),
                       mk("email", STORE_PRIORITY_NORMAL, "[1,2,3]"),
                       mk("sms", STORE_PRIORITY_LOW, "\"x\"")};
    t[0].tags = "[\"welcome\"]";
    t[0].idempotency_key = "k-1";
    t[1].run_at = now_wall_ms() + 60000;
    t[1].state = STORE_TASK_SCHEDULED;
    assert_int_equal(insert(f, t, 3), 3);
    for (int i = 0; i < 3; i++) {
        assert_true(store_id_valid(t[i].id));
        assert_int_equal(t[i].version, 1);
        assert_true(t[i].created_at > 0);
    }
    assert_true(strcmp(t[0].id, t[1].id) < 0 && strcmp(t[1].id, t[2].id) < 0);
    assert_int_equal(t[0].run_at, t[0].created_at);

    store_task *g = get(f, t[0].id);
    assert_non_null(g);
    assert_string_equal(g->id, t[0].id);
    assert_string_equal(g->queue, "email");
    assert_int_equal(g->priority, STORE_PRIORITY_HIGH);
    assert_int_equal(g->state, STORE_TASK_PENDING);
    assert_string_equal(g->payload, "{\"to\":\"a@example.com\"}");
    assert_int_equal(g->payload_len, strlen(g->payload));
    assert_string_equal(g->tags, "[\"welcome\"]");
    assert_string_equal(g->idempotency_key, "k-1");
    assert_null(g->last_error);
    assert_int_equal(g->max_attempts, 3);
    assert_int_equal(g->timeout_ms, 30000);
    assert_int_equal(g->created_at, t[0].created_at);
    assert_int_equal(g->version, 1);
    store_task_free(g);
    g = get(f, t[1].id);
    assert_int_equal(g->state, STORE_TASK_SCHEDULED);
    assert_int_equal(g->run_at, t[1].run_at);
    assert_null(g->tags);
    store_task_free(g);

    store_op op = {.kind = STORE_OP_GET, .get = {.id = "01ARYZ6S410000000000000000"}};
    assert_int_equal(run_op(f, &op), -ENOENT);
    assert_null(op.get.ret_task);

    /* Refused at submission: done never runs. */
    store_task bad = mk("email", 9, "{}");
    store_op ins = {.kind = STORE_OP_INSERT, .insert = {.tasks = &bad, .n = 1}, .done = on_done};
    assert_int_equal(store_submit(f->s, &ins), -EINVAL);
    char longq[STORE_QUEUE_MAX + 2];
    memset(longq, 'q', sizeof(longq) - 1);
    longq[sizeof(longq) - 1] = 0;
    bad = mk(longq, 0, "{}");
    assert_int_equal(store_submit(f->s, &ins), -E2BIG);
    bad = mk("email", 0, "{}");
    snprintf(bad.id, sizeof(bad.id), "not-an-id");
    assert_int_equal(store_submit(f->s, &ins), -EINVAL);

    /* An explicit id that exists: the whole batch fails, none inserted. */
    store_task dup[2] = {mk("email", 0, "{}"), mk("email", 0, "{}")};
    memcpy(dup[1].id, t[2].id, STORE_ID_SIZE);
    assert_int_equal(insert(f, dup, 2), -EEXIST);
    op = (store_op){.kind = STORE_OP_GET, .get = {.id = dup[0].id}};
    assert_int_equal(run_op(f, &op), -ENOENT);
    assert_int_equal(queue_count(f, "email", STORE_TASK_PENDING, -1), 1);
}

static void test_idempotency(void **state) {
    fx *f = *state;
    store_task a = mk("email", STORE_PRIORITY_NORMAL, "{\"n\":1}");
    a.idempotency_key = "order-42";
    assert_int_equal(insert(f, &a, 1), 1);

    store_task b[4] = {mk("email", 0, "{\"n\":2}"), mk("email", 0, "{\"n\":3}"),
                       mk("email", 0, "{\"n\":4}"), mk("sms", 0, "{\"n\":5}")};
    b[0].idempotency_key = "order-42"; /* seen before */
    b[1].idempotency_key = "order-43"; /* new */
    b[2].idempotency_key = "order-43"; /* seen earlier in the same batch */
    b[3].idempotency_key = "order-42"; /* another queue: a different key */
    store_op op = {.kind = STORE_OP_INSERT, .insert = {.tasks = b, .n = 4}};
    assert_int_equal(run_op(f, &op), 2);
    assert_int_equal(op.insert.ret_created, 2);
    assert_non_null(op.insert.ret_existing);
    assert_string_equal(op.insert.ret_existing[0].id, a.id);
    assert_string_equal(op.insert.ret_existing[0].payload, "{\"n\":1}");
    assert_string_equal(op.insert.ret_existing[0].idempotency_key, "order-42");
    assert_string_equal(op.insert.ret_existing[1].id, "");
    assert_string_equal(op.insert.ret_existing[2].id, b[1].id);
    assert_string_equal(op.insert.ret_existing[3].id, "");
    store_op_clear(&op);
    assert_null(op.insert.ret_existing);

    /* No hit: no array. */
    store_task c = mk("email", 0, "{}");
    c.idempotency_key = "order-44";
    op = (store_op){.kind = STORE_OP_INSERT, .insert = {.tasks = &c, .n = 1}};
    assert_int_equal(run_op(f, &op), 1);
    assert_null(op.insert.ret_existing);
    assert_int_equal(queue_count(f, "email", STORE_TASK_PENDING, -1), 3);
    assert_int_equal(queue_count(f, "sms", STORE_TASK_PENDING, -1), 1);
}

/* Batches big enough for the multi-row statements (16 rows at a time in
 * SQLite): hits and conflicts inside and across chunks. */
static void test_insert_batches(void **state) {
    fx *f = *state;
    store_task pre = mk("big", 0, "\"pre\"");
    pre.idempotency_key = "key-pre";
    assert_int_equal(insert(f, &pre, 1), 1);

    enum { N = 40 };
    store_task t[N];
    char keys[N][16];
    for (int i = 0; i < N; i++) {
        t[i] = mk("big", i % STORE_PRIORITY_MAX, "{}");
        snprintf(keys[i], sizeof(keys[i]), "key-%d", i);
        t[i].idempotency_key = keys[i];
    }
    t[5].idempotency_key = "key-pre"; /* an earlier task, chunk 1 */
    t[9].idempotency_key = "key-2";   /* same chunk, earlier row */
    t[33].idempotency_key = "key-20"; /* another chunk */
    store_op op = {.kind = STORE_OP_INSERT, .insert = {.tasks = t, .n = N}};
    assert_int_equal(run_op(f, &op), N - 3);
    assert_non_null(op.insert.ret_existing);
    for (int i = 0; i < N; i++) {
        const char *want = i == 5 ? pre.id : i == 9 ? t[2].id : i == 33 ? t[20].id : "";
        assert_string_equal(op.insert.ret_existing[i].id, want);
    }
    store_op_clear(&op);
    assert_int_equal(queue_count(f, "big", STORE_TASK_PENDING, -1), 1 + N - 3);

    /* A duplicate id in the middle of the second chunk: the whole op is
     * undone, the rows after it in its chunk included. */
    store_task u[N];
    for (int i = 0; i < N; i++)
        u[i] = mk("big", 0, "{}");
    u[3].idempotency_key = "key-0"; /* a hit before the failure */
    memcpy(u[20].id, t[7].id, STORE_ID_SIZE);
    for (int i = 0; i < N; i++)
        if (i != 20)
            store_id_new(f->s, u[i].id);
    op = (store_op){.kind = STORE_OP_INSERT, .insert = {.tasks = u, .n = N}};
    assert_int_equal(run_op(f, &op), -EEXIST);
    assert_null(op.insert.ret_existing);
    for (int i = 0; i < N; i++) {
        store_task *g = get(f, u[i].id);
        if (i == 20) {
            assert_non_null(g); /* the existing one, untouched */
            assert_string_equal(g->idempotency_key, "key-7");
        } else
            assert_null(g);
        store_task_free(g);
    }
    assert_int_equal(queue_count(f, "big", STORE_TASK_PENDING, -1), 1 + N - 3);
}

/* ---- Dispatch order ---------------------------------------------------- */

static void expect_order(store_task *got, size_t n, store_task **want, size_t nwant) {
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(got[i].id, want[i]->id);
}

static void test_fetch_ready_order(void **state) {
    fx *f = *state;
    int64_t now = now_wall_ms();
    enum { A, B, C, D, E, F, G, H, I, N };
    store_task t[N] = {
        [A] = mk("work", STORE_PRIORITY_NORMAL, "1"),
        [B] = mk("work", STORE_PRIORITY_LOW, "2"),
        [C] = mk("work", STORE_PRIORITY_CRITICAL, "3"),
        [D] = mk("work", STORE_PRIORITY_NORMAL, "4"),
        [E] = mk("work", STORE_PRIORITY_HIGH, "5"),
        [F] = mk("work", STORE_PRIORITY_CRITICAL, "6"), /* delayed a minute */
        [G] = mk("work", STORE_PRIORITY_BACKGROUND, "7"),
        [H] = mk("other", STORE_PRIORITY_CRITICAL, "8"), /* another queue */
        [I] = mk("work", STORE_PRIORITY_NORMAL, "9"),    /* due earlier than A */
    };
    for (int i = 0; i < N; i++)
        t[i].run_at = now - 1000;
    t[F].run_at = now + 60000;
    t[F].state = STORE_TASK_SCHEDULED;
    t[I].run_at = now - 5000;
    assert_int_equal(insert(f, t, N), N);

    store_op op = {.kind = STORE_OP_FETCH_READY,
                   .fetch = {.queue = "work", .now = now, .limit = 100}};
    assert_int_equal(run_op(f, &op), 7);
    /* Strict priority; FIFO (run_at, then id) within one; F not yet due. */
    expect_order(op.fetch.ret_tasks, op.fetch.ret_n,
                 (store_task *[]){&t[C], &t[E], &t[I], &t[A], &t[D], &t[B], &t[G]}, 7);
    assert_string_equal(op.fetch.ret_tasks[0].payload, "3");
    store_op_clear(&op);

    /* A limit; then F once it is due. */
    op = (store_op){.kind = STORE_OP_FETCH_READY,
                    .fetch = {.queue = "work", .now = now + 60000, .limit = 3}};
    assert_int_equal(run_op(f, &op), 3);
    expect_order(op.fetch.ret_tasks, op.fetch.ret_n, (store_task *[]){&t[C], &t[F], &t[E]}, 3);
    store_op_clear(&op);

    /* Excluding what the caller holds. */
    const char *held[] = {t[C].id, t[I].id, t[E].id};
    op = (store_op){
        .kind = STORE_OP_FETCH_READY,
        .fetch = {.queue = "work", .now = now, .limit = 3, .exclude = held, .n_exclude = 3}};
    assert_int_equal(run_op(f, &op), 3);
    expect_order(op.fetch.ret_tasks, op.fetch.ret_n, (store_task *[]){&t[A], &t[D], &t[B]}, 3);
    store_op_clear(&op);

    /* Running and finished tasks are not ready. */
    assert_int_equal(set_state(f, t[C].id, STORE_TASK_RUNNING, 1, 0), 0);
    assert_int_equal(set_state(f, t[E].id, STORE_TASK_DEAD, 3, now), 0);
    op = (store_op){.kind = STORE_OP_FETCH_READY,
                    .fetch = {.queue = "work", .now = now, .limit = 2}};
    assert_int_equal(run_op(f, &op), 2);
    expect_order(op.fetch.ret_tasks, op.fetch.ret_n, (store_task *[]){&t[I], &t[A]}, 2);
    store_op_clear(&op);

    /* Unknown queue: nothing. */
    op = (store_op){.kind = STORE_OP_FETCH_READY,
                    .fetch = {.queue = "nope", .now = now, .limit = 2}};
    assert_int_equal(run_op(f, &op), 0);
    assert_null(op.fetch.ret_tasks);

    /* CLAIM takes the same order and marks the tasks running. */
    op = (store_op){.kind = STORE_OP_CLAIM,
                    .claim = {.queue = "work", .now = now, .limit = 2, .lease_until = now + 30000}};
    assert_int_equal(run_op(f, &op), 2);
    expect_order(op.claim.ret_tasks, op.claim.ret_n, (store_task *[]){&t[I], &t[A]}, 2);
    assert_int_equal(op.claim.ret_tasks[0].state, STORE_TASK_RUNNING);
    assert_int_equal(op.claim.ret_tasks[0].attempts, 1);
    assert_int_equal(op.claim.ret_tasks[0].version, 2);
    assert_int_equal(op.claim.ret_tasks[0].lease_until, now + 30000);
    store_op_clear(&op);
    store_task *g = get(f, t[A].id);
    assert_int_equal(g->state, STORE_TASK_RUNNING);
    assert_int_equal(g->attempts, 1);
    assert_int_equal(g->started_at, now);
    assert_int_equal(g->version, 2);
    store_task_free(g);
    op = (store_op){.kind = STORE_OP_CLAIM, .claim = {.queue = "work", .now = now, .limit = 10}};
    assert_int_equal(run_op(f, &op), 3);
    expect_order(op.claim.ret_tasks, op.claim.ret_n, (store_task *[]){&t[D], &t[B], &t[G]}, 3);
    store_op_clear(&op);
    op = (store_op){.kind = STORE_OP_CLAIM, .claim = {.queue = "work", .now = now, .limit = 10}};
    assert_int_equal(run_op(f, &op), 0);
}

/* Ready order under churn: tasks inserted out of order, priorities and
 * run_at changed, claimed and put back (the memory store's per-priority
 * treaps take fast paths for a task that sorts last or first; this checks
 * them against the plain order, on both backends). */
static int cmp_ready_order(const store_task *a, const store_task *b) {
    if (a->priority != b->priority)
        return a->priority < b->priority ? -1 : 1;
    if (a->run_at != b->run_at)
        return a->run_at < b->run_at ? -1 : 1;
    return strcmp(a->id, b->id);
}

static void test_ready_order_churn(void **state) {
    fx *f = *state;
    enum { N = 200 };
    int64_t base = now_wall_ms() - 100000;
    unsigned seed = 12345;
    store_task t[N];
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        t[i] = mk("churn", (store_priority)((seed >> 16) % STORE_PRIORITY_MAX), "{}");
        t[i].run_at = base + (int64_t)((seed >> 8) % 50); /* out of order */
    }
    for (int i = 0; i < N; i += 40)
        assert_int_equal(insert(f, t + i, 40), 40);
    int64_t now = base + 1000;
    for (int round = 0; round < 30; round++) {
        seed = seed * 1103515245u + 12345u;
        if (round % 3 == 0) {
            /* Claim the first few, then put them back with new times. */
            store_op op = {.kind = STORE_OP_CLAIM, .claim = {.queue = "churn", .now = now, .limit = 1 + seed % 7}};
            int n = run_op(f, &op);
            assert_true(n > 0);
            for (int k = 0; k < n; k++) {
                store_task u = {.state = STORE_TASK_PENDING, .run_at = base + (int64_t)((seed >> (k % 8)) % 60)};
                memcpy(u.id, op.claim.ret_tasks[k].id, STORE_ID_SIZE);
                store_op up = {.kind = STORE_OP_UPDATE, .update = {.task = &u, .fields = STORE_FIELD_STATE | STORE_FIELD_RUN_AT}};
                assert_int_equal(run_op(f, &up), 0);
            }
            store_op_clear(&op);
        } else {
            /* A new priority (and time) for one task. */
            store_task u = {.priority = (store_priority)((seed >> 4) % STORE_PRIORITY_MAX),
                            .run_at = base + (int64_t)((seed >> 12) % 60)};
            memcpy(u.id, t[(seed >> 20) % N].id, STORE_ID_SIZE);
            store_op up = {.kind = STORE_OP_UPDATE,
                           .update = {.task = &u, .fields = STORE_FIELD_PRIORITY | STORE_FIELD_RUN_AT}};
            assert_int_equal(run_op(f, &up), 0);
        }
    }
    store_op op = {.kind = STORE_OP_FETCH_READY, .fetch = {.queue = "churn", .now = now, .limit = N + 10}};
    assert_int_equal(run_op(f, &op), N);
    for (int i = 1; i < N; i++)
        assert_true(cmp_ready_order(&op.fetch.ret_tasks[i - 1], &op.fetch.ret_tasks[i]) < 0);
    store_op_clear(&op);
    /* Claiming everything takes them in the same order. */
    op = (store_op){.kind = STORE_OP_CLAIM, .claim = {.queue = "churn", .now = now, .limit = N}};
    assert_int_equal(run_op(f, &op), N);
    for (int i = 1; i < N; i++)
        assert_true(cmp_ready_order(&op.claim.ret_tasks[i - 1], &op.claim.ret_tasks[i]) < 0);
    store_op_clear(&op);
    op = (store_op){.kind = STORE_OP_FETCH_READY, .fetch = {.queue = "churn", .now = now, .limit = N}};
    assert_int_equal(run_op(f, &op), 0);
}

/* CLAIM with borrow: the memory store lends its records (strings equal to
 * what was stored, valid while the tasks run, an outcome UPDATE that
 * replaces last_error copies it first); SQLite copies.  Either way
 * store_op_clear frees what is the caller's. */
static void test_claim_borrow(void **state) {
    fx *f = *state;
    store_task t[2] = {mk("work", STORE_PRIORITY_NORMAL, "{\"a\":1}"), mk("work", STORE_PRIORITY_NORMAL, "[2]")};
    t[0].idempotency_key = "k0";
    t[0].tags = "[\"t\"]";
    t[0].last_error = "before";
    assert_int_equal(insert(f, t, 2), 2);
    int64_t now = now_wall_ms();
    store_op op = {.kind = STORE_OP_CLAIM,
                   .claim = {.queue = "work", .now = now, .limit = 5, .lease_until = now + 1000, .borrow = true}};
    assert_int_equal(run_op(f, &op), 2);
    assert_int_equal(op.claim.ret_borrowed, f->kind == STORE_BACKEND_MEMORY);
    store_task *c = op.claim.ret_tasks;
    assert_string_equal(c[0].id, t[0].id);
    assert_string_equal(c[0].payload, "{\"a\":1}");
    assert_int_equal(c[0].payload_len, 7);
    assert_string_equal(c[0].queue, "work");
    assert_string_equal(c[0].idempotency_key, "k0");
    assert_string_equal(c[0].tags, "[\"t\"]");
    assert_string_equal(c[0].last_error, "before");
    assert_int_equal(c[0].state, STORE_TASK_RUNNING);
    assert_int_equal(c[0].attempts, 1);
    assert_string_equal(c[1].payload, "[2]");
    /* The outcome, with the lent last_error as its input. */
    store_task u = c[0];
    u.state = STORE_TASK_SUCCEEDED;
    u.finished_at = now;
    store_op up = {.kind = STORE_OP_UPDATE,
                   .update = {.task = &u, .fields = STORE_FIELD_STATE | STORE_FIELD_LAST_ERROR | STORE_FIELD_FINISHED_AT,
                              .expect_states = STORE_STATE_BIT(STORE_TASK_RUNNING)}};
    assert_int_equal(run_op(f, &up), 0);
    store_op_clear(&op);
    assert_null(op.claim.ret_tasks);
    assert_false(op.claim.ret_borrowed);
    store_task *g = get(f, t[0].id);
    assert_non_null(g);
    assert_int_equal(g->state, STORE_TASK_SUCCEEDED);
    assert_string_equal(g->last_error, "before");
    assert_string_equal(g->payload, "{\"a\":1}");
    store_task_free(g);
}

/* ---- Updates ----------------------------------------------------------- */

static void test_update_conflicts(void **state) {
    fx *f = *state;
    store_task t = mk("work", STORE_PRIORITY_NORMAL, "{}");
    assert_int_equal(insert(f, &t, 1), 1);

    /* pending -> running, expecting version 1. */
    store_task u = {
        .state = STORE_TASK_RUNNING, .attempts = 1, .started_at = 111, .lease_until = 222};
    memcpy(u.id, t.id, STORE_ID_SIZE);
    store_op op = {.kind = STORE_OP_UPDATE,
                   .update = {.task = &u,
                              .fields = STORE_FIELD_STATE | STORE_FIELD_ATTEMPTS |
                                        STORE_FIELD_STARTED_AT | STORE_FIELD_LEASE,
                              .expect_version = 1,
                              .expect_states = STORE_STATE_BIT(STORE_TASK_PENDING) |
                                               STORE_STATE_BIT(STORE_TASK_SCHEDULED)}};
    assert_int_equal(run_op(f, &op), 0);
    assert_int_equal(op.update.ret_version, 2);

    /* The same again: stale version, then a stale state. */
    assert_int_equal(run_op(f, &op), -ESTALE);
    assert_int_equal(op.update.ret_version, 2);
    assert_int_equal(op.update.ret_state, STORE_TASK_RUNNING);
    op.update.expect_version = 0;
    assert_int_equal(run_op(f, &op), -ESTALE);
    assert_int_equal(op.update.ret_state, STORE_TASK_RUNNING);

    /* Only the listed fields change. */
    char big[STORE_ERROR_MAX * 2];
    memset(big, 'e', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    u = (store_task){
        .state = STORE_TASK_SCHEDULED, .run_at = 999, .last_error = big, .attempts = 77};
    memcpy(u.id, t.id, STORE_ID_SIZE);
    op = (store_op){
        .kind = STORE_OP_UPDATE,
        .update = {.task = &u,
                   .fields = STORE_FIELD_STATE | STORE_FIELD_RUN_AT | STORE_FIELD_LAST_ERROR,
                   .expect_version = 2,
                   .expect_states = STORE_STATE_BIT(STORE_TASK_RUNNING)}};
    assert_int_equal(run_op(f, &op), 0);
    assert_int_equal(op.update.ret_version, 3);
    store_task *g = get(f, t.id);
    assert_int_equal(g->state, STORE_TASK_SCHEDULED);
    assert_int_equal(g->run_at, 999);
    assert_int_equal(g->attempts, 1); /* not in fields */
    assert_int_equal(g->started_at, 111);
    assert_int_equal(g->lease_until, 222);
    assert_int_equal(strlen(g->last_error), STORE_ERROR_MAX);
    assert_string_equal(g->payload, "{}");
    assert_int_equal(g->version, 3);
    store_task_free(g);

    /* Clearing last_error; unknown id. */
    u.last_error = NULL;
    op.update.fields = STORE_FIELD_LAST_ERROR;
    op.update.expect_version = 0;
    op.update.expect_states = 0;
    assert_int_equal(run_op(f, &op), 0);
    g = get(f, t.id);
    assert_null(g->last_error);
    store_task_free(g);
    snprintf(u.id, sizeof(u.id), "01ARYZ6S410000000000000000");
    assert_int_equal(run_op(f, &op), -ENOENT);

    /* Bad input is refused at submission. */
    op.update.fields = 1u << 20;
    op.done = on_done;
    assert_int_equal(store_submit(f->s, &op), -EINVAL);
}

/* Ids given by the caller, out of order and across the id index's
 * growth: each is found again, a repeat of any of them (not only of the
 * newest) is refused, and LIST still goes newest first. */
static void test_explicit_ids(void **state) {
    fx *f = *state;
    enum { N = 3000 };
    static char ids[N][STORE_ID_SIZE];
    for (int i = 0; i < N; i++) {
        /* Descending and interleaved timestamps, scattered random bits. */
        int k = (i * 7919) % N;
        store_id_format(1700000000000 + (N - k) / 3, (uint16_t)(k * 31),
                        (uint64_t)k * 0x9E3779B97F4A7C15ull, ids[i]);
        store_task t = mk(i % 2 ? "x" : "y", 0, "{}");
        memcpy(t.id, ids[i], STORE_ID_SIZE);
        assert_int_equal(insert(f, &t, 1), 1);
    }
    for (int i = 0; i < N; i += 97) {
        store_task *g = get(f, ids[i]);
        assert_non_null(g);
        assert_string_equal(g->id, ids[i]);
        assert_string_equal(g->queue, i % 2 ? "x" : "y");
        assert_string_equal(g->payload, "{}");
        store_task_free(g);
        store_task dup = mk("y", 0, "{}");
        memcpy(dup.id, ids[i], STORE_ID_SIZE);
        assert_int_equal(insert(f, &dup, 1), -EEXIST);
    }
    char cursor[STORE_ID_SIZE] = "", prev[STORE_ID_SIZE] = "";
    int seen = 0;
    do {
        store_op op = {.kind = STORE_OP_LIST, .list = {.state = -1, .limit = 700, .cursor = cursor}};
        int r = run_op(f, &op);
        assert_true(r > 0);
        for (int i = 0; i < r; i++, seen++) {
            if (prev[0])
                assert_true(strcmp(op.list.ret_tasks[i].id, prev) < 0);
            memcpy(prev, op.list.ret_tasks[i].id, STORE_ID_SIZE);
        }
        memcpy(cursor, op.list.ret_cursor, STORE_ID_SIZE);
        store_op_clear(&op);
    } while (cursor[0]);
    assert_int_equal(seen, N);
    /* A generated id after all that still sorts (and lists) first. */
    store_task t = mk("x", 0, "{}");
    assert_int_equal(insert(f, &t, 1), 1);
    store_op op = {.kind = STORE_OP_LIST, .list = {.state = -1, .limit = 1}};
    assert_int_equal(run_op(f, &op), 1);
    assert_string_equal(op.list.ret_tasks[0].id, t.id);
    store_op_clear(&op);
}

/* ---- Listing, counts, dead letters, retention ------------------------- */

static void test_list_paging(void **state) {
    fx *f = *state;
    enum { N = 25 };
    store_task t[N];
    for (int i = 0; i < N; i++) {
        t[i] = mk(i % 2 ? "b" : "a", i % STORE_PRIORITY_MAX, "{}");
        assert_int_equal(insert(f, &t[i], 1), 1); /* one at a time: ids in order */
    }
    for (int i = 0; i < N; i += 3)
        assert_int_equal(set_state(f, t[i].id, STORE_TASK_DEAD, 3, 1), 0);

    struct {
        const char *queue;
        int state;
    } filters[] = {
        {NULL, -1}, {"a", -1}, {"b", -1}, {NULL, STORE_TASK_DEAD}, {"a", STORE_TASK_PENDING},
        {"zz", -1}};
    for (size_t k = 0; k < sizeof(filters) / sizeof(filters[0]); k++) {
        /* Expected: newest first among the matching ones. */
        int want[N], nwant = 0;
        for (int i = N - 1; i >= 0; i--) {
            bool dead = i % 3 == 0;
            if (filters[k].queue && strcmp(filters[k].queue, t[i].queue) != 0)
                continue;
            if (filters[k].state >= 0 &&
                filters[k].state != (dead ? STORE_TASK_DEAD : STORE_TASK_PENDING))
                continue;
            want[nwant++] = i;
        }
        char cursor[STORE_ID_SIZE] = "";
        int seen = 0, pages = 0;
        do {
            store_op op = {.kind = STORE_OP_LIST,
                           .list = {.queue = filters[k].queue,
                                    .state = filters[k].state,
                                    .limit = 4,
                                    .cursor = cursor}};
            int r = run_op(f, &op);
            assert_true(r >= 0 && r <= 4);
            for (int i = 0; i < r; i++, seen++) {
                assert_true(seen < nwant);
                assert_string_equal(op.list.ret_tasks[i].id, t[want[seen]].id);
            }
            memcpy(cursor, op.list.ret_cursor, STORE_ID_SIZE);
            if (cursor[0])
                assert_int_equal(r, 4);
            store_op_clear(&op);
            pages++;
        } while (cursor[0]);
        assert_int_equal(seen, nwant);
        assert_int_equal(pages, nwant ? (nwant + 3) / 4 : 1);
    }
}

static void test_counts(void **state) {
    fx *f = *state;
    store_task t[6] = {mk("q1", 0, "{}"), mk("q1", 0, "{}"), mk("q1", 2, "{}"),
                       mk("q1", 4, "{}"), mk("q2", 1, "{}"), mk("q2", 1, "{}")};
    t[3].state = STORE_TASK_SCHEDULED;
    assert_int_equal(insert(f, t, 6), 6);
    assert_int_equal(set_state(f, t[1].id, STORE_TASK_RUNNING, 1, 0), 0);
    assert_int_equal(set_state(f, t[5].id, STORE_TASK_DEAD, 3, 5), 0);

    store_op op = {.kind = STORE_OP_COUNTS};
    assert_int_equal(run_op(f, &op), 2);
    store_queue_counts *c = op.counts.ret_counts;
    assert_string_equal(c[0].queue, "q1");
    assert_string_equal(c[1].queue, "q2");
    assert_int_equal(c[0].n[STORE_TASK_PENDING][0], 1);
    assert_int_equal(c[0].n[STORE_TASK_RUNNING][0], 1);
    assert_int_equal(c[0].n[STORE_TASK_PENDING][2], 1);
    assert_int_equal(c[0].n[STORE_TASK_SCHEDULED][4], 1);
    assert_int_equal(c[1].n[STORE_TASK_PENDING][1], 1);
    assert_int_equal(c[1].n[STORE_TASK_DEAD][1], 1);
    uint64_t total = 0;
    for (int s = 0; s < STORE_TASK_STATE_MAX; s++)
        for (int p = 0; p < STORE_PRIORITY_MAX; p++)
            total += c[0].n[s][p] + c[1].n[s][p];
    assert_int_equal(total, 6);
    store_op_clear(&op);

    op = (store_op){.kind = STORE_OP_COUNTS, .counts = {.queue = "q2"}};
    assert_int_equal(run_op(f, &op), 1);
    assert_string_equal(op.counts.ret_counts[0].queue, "q2");
    store_op_clear(&op);
}

static void test_dead_letters(void **state) {
    fx *f = *state;
    store_task t[5] = {mk("q", 0, "{}"), mk("q", 1, "{}"), mk("q", 2, "{}"), mk("q", 3, "{}"),
                       mk("r", 0, "{}")};
    assert_int_equal(insert(f, t, 5), 5);
    for (int i = 0; i < 5; i++)
        if (i != 2)
            assert_int_equal(set_state(f, t[i].id, STORE_TASK_DEAD, 3, 1000), 0);
    assert_int_equal(queue_count(f, "q", STORE_TASK_DEAD, -1), 3);

    store_op op = {.kind = STORE_OP_REQUEUE_DEAD, .dead = {.queue = "q", .now = 5000}};
    assert_int_equal(run_op(f, &op), 3);
    assert_int_equal(op.dead.ret_count, 3);
    store_task *g = get(f, t[1].id);
    assert_int_equal(g->state, STORE_TASK_PENDING);
    assert_int_equal(g->attempts, 0);
    assert_int_equal(g->run_at, 5000);
    assert_int_equal(g->finished_at, 0);
    store_task_free(g);
    assert_int_equal(queue_count(f, "q", STORE_TASK_DEAD, -1), 0);
    assert_int_equal(queue_count(f, "q", STORE_TASK_PENDING, -1), 4);
    assert_int_equal(queue_count(f, "r", STORE_TASK_DEAD, -1), 1); /* other queue untouched */

    assert_int_equal(set_state(f, t[0].id, STORE_TASK_DEAD, 3, 1000), 0);
    op = (store_op){.kind = STORE_OP_PURGE_DEAD, .dead = {.queue = "q"}};
    assert_int_equal(run_op(f, &op), 1);
    assert_null(get(f, t[0].id));
    assert_non_null((g = get(f, t[4].id)));
    store_task_free(g);
    assert_int_equal(queue_count(f, "q", STORE_TASK_DEAD, -1), 0);
    assert_int_equal(queue_count(f, "r", STORE_TASK_DEAD, -1), 1);
}

static void test_retention(void **state) {
    fx *f = *state;
    store_task t[7];
    for (int i = 0; i < 7; i++)
        t[i] = mk("q", 0, "{}");
    assert_int_equal(insert(f, t, 7), 7);
    assert_int_equal(set_state(f, t[0].id, STORE_TASK_SUCCEEDED, 1, 100), 0);
    assert_int_equal(set_state(f, t[1].id, STORE_TASK_SUCCEEDED, 1, 200), 0);
    assert_int_equal(set_state(f, t[2].id, STORE_TASK_SUCCEEDED, 1, 900), 0);
    assert_int_equal(set_state(f, t[3].id, STORE_TASK_DEAD, 3, 100), 0);
    assert_int_equal(set_state(f, t[4].id, STORE_TASK_DEAD, 3, 900), 0);
    assert_int_equal(set_state(f, t[5].id, STORE_TASK_CANCELLED, 0, 100), 0);
    /* t[6] pending: never touched. */

    store_op op = {.kind = STORE_OP_RETENTION,
                   .retention = {.succeeded_before = 500, .dead_before = 500, .max_rows = 1}};
    assert_int_equal(run_op(f, &op), 1); /* bounded */
    op.retention.max_rows = 0;
    assert_int_equal(run_op(f, &op), 2);
    assert_int_equal(run_op(f, &op), 0);
    assert_null(get(f, t[0].id));
    assert_null(get(f, t[1].id));
    assert_null(get(f, t[3].id));
    int keep[] = {2, 4, 5, 6};
    for (size_t i = 0; i < 4; i++) {
        store_task *g = get(f, t[keep[i]].id);
        assert_non_null(g);
        store_task_free(g);
    }
    op.retention = (typeof(op.retention)){.cancelled_before = 500};
    assert_int_equal(run_op(f, &op), 1);
    assert_int_equal(queue_count(f, "q", STORE_TASK_SUCCEEDED, -1), 1);
    assert_int_equal(queue_count(f, "q", STORE_TASK_DEAD, -1), 1);
    assert_int_equal(queue_count(f, "q", STORE_TASK_CANCELLED, -1), 0);
    /* The memory store skips walks when nothing finished early enough:
     * a task finishing after a complete walk, earlier than every task
     * left, must still be found; later cutoffs still delete. */
    op.retention = (typeof(op.retention)){.succeeded_before = 500, .dead_before = 500};
    assert_int_equal(run_op(f, &op), 0);
    assert_int_equal(set_state(f, t[6].id, STORE_TASK_SUCCEEDED, 1, 50), 0);
    assert_int_equal(run_op(f, &op), 1);
    assert_null(get(f, t[6].id));
    op.retention = (typeof(op.retention)){.succeeded_before = 901};
    assert_int_equal(run_op(f, &op), 1);
    assert_null(get(f, t[2].id));
    assert_int_equal(queue_count(f, "q", STORE_TASK_DEAD, -1), 1);
}

/* ---- Recovery ---------------------------------------------------------- */

/* Tasks: 0..2 claimed (running, attempt 1 of 3); 3 claimed on its last
 * attempt (max 1); 4..9 pending. */
static void make_crash_state(fx *f, store_task t[10]) {
    for (int i = 0; i < 10; i++)
        t[i] = mk("work", 0, "{\"crash\":true}");
    t[3].max_attempts = 1;
    t[3].priority = STORE_PRIORITY_CRITICAL;
    for (int i = 0; i < 3; i++)
        t[i].priority = STORE_PRIORITY_HIGH;
    for (int i = 4; i < 10; i++)
        t[i].priority = STORE_PRIORITY_LOW;
    assert_int_equal(insert(f, t, 10), 10);
    store_op op = {.kind = STORE_OP_CLAIM,
                   .claim = {.queue = "work", .now = now_wall_ms(), .limit = 4}};
    assert_int_equal(run_op(f, &op), 4);
    store_op_clear(&op);
}

static void check_recovered(fx *f, store *s, store_task t[10]) {
    store_op op = {.kind = STORE_OP_RECOVER};
    assert_int_equal(run_on(f, s, &op), 4);
    assert_int_equal(op.recover.ret_requeued, 3);
    assert_int_equal(op.recover.ret_dead, 1);
    for (int i = 0; i < 10; i++) {
        store_task *g = get_on(f, s, t[i].id);
        assert_non_null(g); /* nothing acknowledged is lost */
        assert_string_equal(g->payload, "{\"crash\":true}");
        if (i < 3) {
            assert_int_equal(g->state, STORE_TASK_PENDING);
            assert_int_equal(g->attempts, 1); /* the interrupted attempt counts */
            assert_int_equal(g->lease_until, 0);
            assert_non_null(g->last_error);
            assert_non_null(strstr(g->last_error, "interrupted"));
        } else if (i == 3) {
            assert_int_equal(g->state, STORE_TASK_DEAD);
            assert_int_equal(g->attempts, 1);
            assert_true(g->finished_at > 0);
        } else {
            assert_int_equal(g->state, STORE_TASK_PENDING);
            assert_int_equal(g->attempts, 0);
        }
        store_task_free(g);
    }
    /* Nothing is running any more, and a second RECOVER finds nothing. */
    op = (store_op){.kind = STORE_OP_RECOVER};
    assert_int_equal(run_on(f, s, &op), 0);
    /* The requeued tasks are dispatched again, before the low ones. */
    op = (store_op){.kind = STORE_OP_FETCH_READY,
                    .fetch = {.queue = "work", .now = now_wall_ms(), .limit = 3}};
    assert_int_equal(run_on(f, s, &op), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(op.fetch.ret_tasks[i].priority, STORE_PRIORITY_HIGH);
    store_op_clear(&op);
}

static void test_recover(void **state) {
    fx *f = *state;
    store_task t[10];
    make_crash_state(f, t);
    check_recovered(f, f->s, t);
}

/* The running tasks of an uncharged (pull) queue go back without the
 * attempt counted, even a last attempt; other queues' as before. */
static void test_recover_uncharged(void **state) {
    fx *f = *state;
    store_task t[4] = {mk("pulled", 0, "{}"), mk("pulled", 0, "{}"), mk("ran", 0, "{}"), mk("idle", 0, "{}")};
    t[0].max_attempts = 1; /* claimed ahead on its only attempt */
    t[2].max_attempts = 1;
    assert_int_equal(insert(f, t, 4), 4);
    const char *queues[] = {"pulled", "ran"};
    for (int i = 0; i < 2; i++) {
        store_op op = {.kind = STORE_OP_CLAIM, .claim = {.queue = queues[i], .now = now_wall_ms(), .limit = 5}};
        assert_int_equal(run_op(f, &op), i == 0 ? 2 : 1);
        store_op_clear(&op);
    }
    const char *unch[] = {"pulled", "idle"};
    store_op op = {.kind = STORE_OP_RECOVER, .recover = {.uncharged = unch, .n_uncharged = 2}};
    assert_int_equal(run_op(f, &op), 3);
    assert_int_equal(op.recover.ret_requeued, 2);
    assert_int_equal(op.recover.ret_dead, 1);
    store_op_clear(&op);
    for (int i = 0; i < 4; i++) {
        store_task *g = get(f, t[i].id);
        assert_non_null(g);
        if (i < 2) {
            assert_int_equal(g->state, STORE_TASK_PENDING);
            assert_int_equal(g->attempts, 0);
            assert_string_equal(g->last_error, STORE_RECOVER_UNCHARGED_TEXT);
        } else if (i == 2) {
            assert_int_equal(g->state, STORE_TASK_DEAD); /* its last attempt, counted */
        } else {
            assert_int_equal(g->state, STORE_TASK_PENDING);
            assert_null(g->last_error);
        }
        store_task_free(g);
    }
    /* Bad input is refused before the store sees it. */
    const char *bad[] = {""};
    op = (store_op){.kind = STORE_OP_RECOVER, .recover = {.uncharged = bad, .n_uncharged = 1}};
    assert_int_equal(store_submit(f->s, &op), -EINVAL);
    op = (store_op){.kind = STORE_OP_RECOVER, .recover = {.n_uncharged = 1}};
    assert_int_equal(store_submit(f->s, &op), -EINVAL);
}

static int copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT ? 0 : -errno;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return -errno;
    }
    char buf[65536];
    ssize_t n;
    int r = 0;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            r = -EIO;
            break;
        }
    if (n < 0)
        r = -errno;
    close(in);
    close(out);
    return r;
}

/* Copies tend.db and its -wal while the store is open: the files as a
 * kill -9 would leave them (the -shm is rebuilt at open). */
static void copy_crash_image(const char *from_dir, const char *to_dir) {
    const char *names[] = {"tend.db", "tend.db-wal"};
    for (int i = 0; i < 2; i++) {
        char a[PATH_MAX], b[PATH_MAX];
        snprintf(a, sizeof(a), "%s/%s", from_dir, names[i]);
        snprintf(b, sizeof(b), "%s/%s", to_dir, names[i]);
        assert_int_equal(copy_file(a, b), 0);
    }
}

static void test_recover_crash_image(void **state) {
    fx *f = *state;
    store_task t[10];
    make_crash_state(f, t);

    char copy[PATH_MAX + 8];
    snprintf(copy, sizeof(copy), "%s/copy", f->dir);
    assert_int_equal(mkdir(copy, 0700), 0);
    char wal[PATH_MAX + 32];
    snprintf(wal, sizeof(wal), "%s/tend.db-wal", f->dir);
    assert_int_equal(access(wal, F_OK), 0); /* the commits are in the WAL */
    copy_crash_image(f->dir, copy);

    store *s2;
    assert_int_equal(open_store(f, copy, &s2), 0);
    check_recovered(f, s2, t);
    close_store(f, s2);
    /* The original is untouched by the copy's recovery. */
    store_task *g = get(f, t[0].id);
    assert_int_equal(g->state, STORE_TASK_RUNNING);
    store_task_free(g);
}

static void test_recover_after_sigkill(void **state) {
    fx *f = *state;
    /* Fork with no store thread running in this process. */
    close_store(f, f->s);
    f->s = NULL;
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof(dir), "%s/killed", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child: no cmocka here, only exit codes. */
        fx c = {.kind = STORE_BACKEND_SQLITE};
        if (uv_loop_init(&c.loop) < 0 || open_store(&c, dir, &c.s) < 0)
            _exit(2);
        store_task t[10];
        for (int i = 0; i < 10; i++)
            t[i] = mk("work", 0, "{\"crash\":true}");
        t[3].max_attempts = 1;
        t[3].priority = STORE_PRIORITY_CRITICAL;
        for (int i = 0; i < 3; i++)
            t[i].priority = STORE_PRIORITY_HIGH;
        for (int i = 4; i < 10; i++)
            t[i].priority = STORE_PRIORITY_LOW;
        if (insert(&c, t, 10) != 10)
            _exit(3);
        store_op op = {.kind = STORE_OP_CLAIM,
                       .claim = {.queue = "work", .now = now_wall_ms(), .limit = 4}};
        if (run_op(&c, &op) != 4)
            _exit(4);
        /* Tell the parent the ids, then die with the store open and its
         * writer thread alive. */
        for (int i = 0; i < 10; i++)
            if (write(pipefd[1], t[i].id, STORE_ID_SIZE) != STORE_ID_SIZE)
                _exit(5);
        raise(SIGKILL);
        _exit(6);
    }
    close(pipefd[1]);
    store_task t[10];
    for (int i = 0; i < 10; i++) {
        t[i] = (store_task){0};
        assert_int_equal(read(pipefd[0], t[i].id, STORE_ID_SIZE), STORE_ID_SIZE);
    }
    close(pipefd[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    store *s2;
    assert_int_equal(open_store(f, dir, &s2), 0);
    check_recovered(f, s2, t);
    close_store(f, s2);
}

/* ---- Fault injection and groups --------------------------------------- */

typedef struct group {
    sqlite3 *locker;
    store_task barrier;
    store_op barrier_op;
    waiter barrier_w;
} group;

/*
 * Makes the next ops submitted form one group.  Memory: ops submitted in
 * one loop iteration are one group already.  SQLite: a second connection
 * holds the write lock, a barrier write is submitted and taken by the
 * writer (which then waits for the lock), so everything submitted next
 * queues up behind it and is taken as one group.
 */
static void group_begin(fx *f, group *g, const char *db_dir, const char *barrier_id) {
    *g = (group){0};
    if (f->kind != STORE_BACKEND_SQLITE)
        return;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/tend.db", db_dir);
    assert_int_equal(sqlite3_open(path, &g->locker), SQLITE_OK);
    assert_int_equal(sqlite3_exec(g->locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    store_stats st;
    store_get_stats(f->s, &st);
    uint64_t groups = st.groups;
    memcpy(g->barrier.id, barrier_id, STORE_ID_SIZE);
    g->barrier_op = (store_op){.kind = STORE_OP_UPDATE,
                               .done = on_done,
                               .userdata = &g->barrier_w,
                               .update = {.task = &g->barrier, .fields = 0}};
    assert_int_equal(store_submit(f->s, &g->barrier_op), 0);
    for (int i = 0; i < 5000; i++) {
        store_get_stats(f->s, &st);
        if (st.groups > groups)
            break;
        usleep(1000);
    }
    assert_true(st.groups > groups);
}

static void group_end(fx *f, group *g) {
    if (g->locker) {
        assert_int_equal(sqlite3_exec(g->locker, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(g->locker);
        while (!g->barrier_w.done)
            uv_run(&f->loop, UV_RUN_ONCE);
        assert_int_equal(g->barrier_w.result, 0);
    }
}

static void test_fault_injection(void **state) {
    fx *f = *state;
    store_task a = mk("q", 0, "\"acknowledged\"");
    assert_int_equal(insert(f, &a, 1), 1);

    /* Arm: the next transaction with an INSERT fails as if the disk were
     * full.  The group: an INSERT of two, an UPDATE, a GET, a FETCH. */
    group g;
    group_begin(f, &g, f->dir, a.id);
    store_inject_fault(f->s, STORE_OP_INSERT, -ENOSPC);
    store_task b[2] = {mk("q", 0, "\"b\""), mk("q", 0, "\"c\"")};
    store_task u = {.state = STORE_TASK_DEAD};
    memcpy(u.id, a.id, STORE_ID_SIZE);
    store_op ops[4] = {
        {.kind = STORE_OP_INSERT, .insert = {.tasks = b, .n = 2}},
        {.kind = STORE_OP_UPDATE, .update = {.task = &u, .fields = STORE_FIELD_STATE}},
        {.kind = STORE_OP_GET, .get = {.id = a.id}},
        {.kind = STORE_OP_FETCH_READY, .fetch = {.queue = "q", .now = now_wall_ms(), .limit = 10}},
    };
    waiter w[4] = {{0}};
    for (int i = 0; i < 4; i++) {
        ops[i].done = on_done;
        ops[i].userdata = &w[i];
        assert_int_equal(store_submit(f->s, &ops[i]), 0);
    }
    group_end(f, &g);
    for (int i = 0; i < 4; i++) {
        while (!w[i].done)
            uv_run(&f->loop, UV_RUN_ONCE);
        assert_int_equal(w[i].result, -ENOSPC); /* every op of the group */
    }
    assert_null(ops[2].get.ret_task);
    assert_null(ops[3].fetch.ret_tasks);

    /* Nothing of it was applied; the store goes on working. */
    assert_null(get(f, b[0].id));
    assert_null(get(f, b[1].id));
    store_task *t = get(f, a.id);
    assert_int_equal(t->state, STORE_TASK_PENDING);
    store_task_free(t);
    store_task d = mk("q", 0, "\"after\"");
    assert_int_equal(insert(f, &d, 1), 1);
    assert_int_equal(queue_count(f, "q", STORE_TASK_PENDING, -1), 2);

    /* Any kind, an I/O error, a read-only transaction: it fails too. */
    store_inject_fault(f->s, STORE_OP_ANY, -EIO);
    store_op op = {.kind = STORE_OP_COUNTS};
    assert_int_equal(run_op(f, &op), -EIO);
    assert_null(op.counts.ret_counts);
    store_inject_fault(f->s, STORE_OP_ANY, -EIO);
    store_task e = mk("q", 0, "\"e\"");
    assert_int_equal(insert(f, &e, 1), -EIO);
    assert_null(get(f, e.id));

    store_stats st;
    store_get_stats(f->s, &st);
    assert_int_equal(st.failed_commits, 3);

    if (f->kind == STORE_BACKEND_SQLITE) {
        /* A crash now loses nothing that was acknowledged and resurrects
         * nothing that failed. */
        char copy[PATH_MAX + 8];
        snprintf(copy, sizeof(copy), "%s/copy", f->dir);
        assert_int_equal(mkdir(copy, 0700), 0);
        copy_crash_image(f->dir, copy);
        store *s2;
        assert_int_equal(open_store(f, copy, &s2), 0);
        store_task *x = get_on(f, s2, a.id);
        assert_non_null(x);
        assert_int_equal(x->state, STORE_TASK_PENDING);
        store_task_free(x);
        assert_non_null((x = get_on(f, s2, d.id)));
        store_task_free(x);
        assert_null(get_on(f, s2, b[0].id));
        assert_null(get_on(f, s2, b[1].id));
        assert_null(get_on(f, s2, e.id));
        close_store(f, s2);
    }
}

/* TEND_STORE_FAULT arms a fault at open: integration tests of a whole
 * tend use it to see a submission answered 503. */
static void test_fault_env(void **state) {
    fx *f = *state;
    char dir[PATH_MAX + 8];
    snprintf(dir, sizeof(dir), "%s/env", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    store *s2;
    setenv("TEND_STORE_FAULT", "insert:ENOSPC:1", 1);
    int r = open_store(f, dir, &s2);
    unsetenv("TEND_STORE_FAULT");
    assert_int_equal(r, 0);
    store_task t[3] = {mk("q", 0, "1"), mk("q", 0, "2"), mk("q", 0, "3")};
    assert_int_equal(insert_on(f, s2, &t[0], 1), 1);       /* let through */
    assert_int_equal(insert_on(f, s2, &t[1], 1), -ENOSPC); /* fails */
    assert_int_equal(insert_on(f, s2, &t[2], 1), 1);       /* disarmed */
    assert_null(get_on(f, s2, t[1].id));
    close_store(f, s2);

    setenv("TEND_STORE_FAULT", "insert:EPERM", 1);
    store_config cfg = {.backend = f->kind, .state_dir = dir};
    char *msg = NULL;
    assert_int_equal(store_open(&f->loop, &cfg, &s2, &msg), -EINVAL);
    unsetenv("TEND_STORE_FAULT");
    assert_non_null(msg);
    assert_non_null(strstr(msg, "TEND_STORE_FAULT"));
    free(msg);
}

static int inserted_ok;

static void on_insert_done(store_op *op, int result) {
    if (result == 1)
        inserted_ok++;
    free(op->insert.tasks);
    free(op);
}

static void test_group_commit(void **state) {
    fx *f = *state;
    enum { N = 10000 };
    store_stats before, after;
    store_get_stats(f->s, &before);
    inserted_ok = 0;
    for (int i = 0; i < N; i++) {
        store_op *op = calloc(1, sizeof(*op));
        store_task *t = malloc(sizeof(*t));
        assert_true(op && t);
        *t = mk("bulk", i % STORE_PRIORITY_MAX, "{\"i\":1}");
        *op = (store_op){
            .kind = STORE_OP_INSERT, .done = on_insert_done, .insert = {.tasks = t, .n = 1}};
        assert_int_equal(store_submit(f->s, op), 0);
    }
    while (inserted_ok < N) {
        store_get_stats(f->s, &after);
        if (after.in_flight == 0)
            break;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(inserted_ok, N);
    store_get_stats(f->s, &after);
    uint64_t commits = after.commits - before.commits;
    print_message("    %s: %d single-task inserts in %llu transactions (largest group %llu ops)\n",
                  store_backend_name(f->s), N, (unsigned long long)commits,
                  (unsigned long long)after.max_group);
    assert_true(commits >= 1);
    assert_true(commits <= N / 10);
    assert_int_equal(after.tasks_inserted - before.tasks_inserted, N);
    assert_int_equal(queue_count(f, "bulk", STORE_TASK_PENDING, -1), N);

    /* Again, in 100 waves with the loop running in between, so that ops
     * keep arriving while commits are in flight and completing. */
    before = after;
    inserted_ok = 0;
    for (int i = 0; i < N; i++) {
        store_op *op = calloc(1, sizeof(*op));
        store_task *t = malloc(sizeof(*t));
        assert_true(op && t);
        *t = mk("bulk", 0, "{}");
        *op = (store_op){
            .kind = STORE_OP_INSERT, .done = on_insert_done, .insert = {.tasks = t, .n = 1}};
        assert_int_equal(store_submit(f->s, op), 0);
        if (i % 100 == 99)
            uv_run(&f->loop, UV_RUN_NOWAIT);
    }
    while (inserted_ok < N)
        uv_run(&f->loop, UV_RUN_ONCE);
    store_get_stats(f->s, &after);
    commits = after.commits - before.commits;
    print_message("    %s: %d in waves: %llu transactions\n", store_backend_name(f->s), N,
                  (unsigned long long)commits);
    assert_true(commits <= N / 10);
    assert_int_equal(queue_count(f, "bulk", STORE_TASK_PENDING, -1), 2 * N);
}

static int closed_ok;

static void on_close_done(store_op *op, int result) {
    if (result == 1)
        closed_ok++;
    /* The store is closing: new ops are refused. */
    store_op again = {.kind = STORE_OP_COUNTS, .done = on_close_done};
    assert_int_equal(store_submit(op->userdata, &again), -ESHUTDOWN);
}

static void test_close_flushes(void **state) {
    fx *f = *state;
    store_task t[100];
    store_op ops[100];
    closed_ok = 0;
    for (int i = 0; i < 100; i++) {
        t[i] = mk("flush", 0, "{}");
        ops[i] = (store_op){.kind = STORE_OP_INSERT,
                            .done = on_close_done,
                            .userdata = f->s,
                            .insert = {.tasks = &t[i], .n = 1}};
        assert_int_equal(store_submit(f->s, &ops[i]), 0);
    }
    close_store(f, f->s); /* completes all of them first */
    f->s = NULL;
    assert_int_equal(closed_ok, 100);
    if (f->kind == STORE_BACKEND_SQLITE) {
        assert_int_equal(open_store(f, f->dir, &f->s), 0); /* all there after reopening */
        for (int i = 0; i < 100; i += 9) {
            store_task *g = get(f, t[i].id);
            assert_non_null(g);
            store_task_free(g);
        }
    }
}

/* RECOVER's ret_paused, as a comma-separated list ("" when none). */
static void paused_list(fx *f, char *buf, size_t len) {
    store_op op = {.kind = STORE_OP_RECOVER};
    assert_true(run_op(f, &op) >= 0);
    buf[0] = 0;
    for (size_t i = 0; i < op.recover.ret_n_paused; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", op.recover.ret_paused[i]);
    store_op_clear(&op);
    assert_null(op.recover.ret_paused);
}

static int set_paused(fx *f, const char *queue, bool paused) {
    store_op op = {.kind = STORE_OP_QUEUE_PAUSE, .queue_pause = {.queue = queue, .paused = paused}};
    return run_op(f, &op);
}

static void test_queue_pause(void **state) {
    fx *f = *state;
    char buf[256];
    paused_list(f, buf, sizeof(buf));
    assert_string_equal(buf, "");
    assert_int_equal(set_paused(f, "mail", true), 0);
    assert_int_equal(set_paused(f, "bulk", true), 0);
    assert_int_equal(set_paused(f, "mail", true), 0); /* again: no change */
    assert_int_equal(set_paused(f, "zeta", false), 0); /* never paused: no change */
    paused_list(f, buf, sizeof(buf));
    assert_string_equal(buf, "bulk,mail"); /* sorted */
    assert_int_equal(set_paused(f, "bulk", false), 0);
    paused_list(f, buf, sizeof(buf));
    assert_string_equal(buf, "mail");
    /* Bad names are refused before the store sees them. */
    store_op op = {.kind = STORE_OP_QUEUE_PAUSE, .queue_pause = {.queue = ""}};
    assert_int_equal(store_submit(f->s, &op), -EINVAL);
    op.queue_pause.queue = NULL;
    assert_int_equal(store_submit(f->s, &op), -EINVAL);
    if (f->kind == STORE_BACKEND_SQLITE) {
        /* It is what the next start finds. */
        close_store(f, f->s);
        f->s = NULL;
        assert_int_equal(open_store(f, f->dir, &f->s), 0);
        paused_list(f, buf, sizeof(buf));
        assert_string_equal(buf, "mail");
    }
    /* A failed write changes nothing. */
    store_inject_fault(f->s, STORE_OP_QUEUE_PAUSE, -ENOSPC);
    assert_int_equal(set_paused(f, "mail", false), -ENOSPC);
    paused_list(f, buf, sizeof(buf));
    assert_string_equal(buf, "mail");
}

/* ---- SQLite specifics -------------------------------------------------- */

static void test_sqlite_schema(void **state) {
    fx *f = *state;
    store_task t = mk("q", 0, "{}");
    assert_int_equal(insert(f, &t, 1), 1);
    close_store(f, f->s);
    f->s = NULL;

    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/tend.db", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_true(sqlite3_column_int(st, 0) >= 2); /* 1 tasks, 2 sessions, ... */
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    /* Dispatch is an index range scan, never a sort. */
    assert_int_equal(
        sqlite3_prepare_v2(
            db,
            "EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE queue = 'q' AND state IN (0, 1)"
            " AND priority = 0 AND run_at <= 5 ORDER BY run_at, id",
            -1, &st, NULL),
        SQLITE_OK);
    char plan[1024] = "";
    while (sqlite3_step(st) == SQLITE_ROW)
        strncat(plan, (const char *)sqlite3_column_text(st, 3), sizeof(plan) - strlen(plan) - 2);
    sqlite3_finalize(st);
    print_message("    fetch plan: %s\n", plan);
    assert_non_null(strstr(plan, "tasks_ready"));
    assert_null(strstr(plan, "TEMP B-TREE"));

    /* A database from a newer tend is refused with a message. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    store_config cfg = {.backend = STORE_BACKEND_SQLITE, .state_dir = f->dir};
    char *msg = NULL;
    store *s;
    assert_int_equal(store_open(&f->loop, &cfg, &s, &msg), -EPROTONOSUPPORT);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "schema version 99"));
    free(msg);

    /* A missing directory names the file. */
    cfg.state_dir = "/nonexistent/dir";
    assert_int_equal(store_open(&f->loop, &cfg, &s, &msg), -ENOENT);
    assert_non_null(strstr(msg, "/nonexistent/dir/tend.db"));
    free(msg);
}

/* Each test once per backend, named after it. */
#define ON(fn, b) \
    { #fn "/" #b, fn, setup, teardown, (void *)&backend_##b }
#define BOTH(fn) ON(fn, sqlite), ON(fn, memory)
#define SQLITE_ONLY(fn) ON(fn, sqlite)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        BOTH(test_insert_get),
        BOTH(test_idempotency),
        BOTH(test_insert_batches),
        BOTH(test_explicit_ids),
        BOTH(test_fetch_ready_order),
        BOTH(test_update_conflicts),
        BOTH(test_list_paging),
        BOTH(test_counts),
        BOTH(test_dead_letters),
        BOTH(test_retention),
        BOTH(test_claim_borrow),
        BOTH(test_ready_order_churn),
        BOTH(test_recover),
        BOTH(test_recover_uncharged),
        SQLITE_ONLY(test_recover_crash_image),
        SQLITE_ONLY(test_recover_after_sigkill),
        BOTH(test_fault_injection),
        BOTH(test_fault_env),
        BOTH(test_group_commit),
        BOTH(test_close_flushes),
        BOTH(test_queue_pause),
        SQLITE_ONLY(test_sqlite_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
