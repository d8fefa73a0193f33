/*
 * test-task-engine.c - the task engine over both store backends (memory
 * and SQLite): priority order and FIFO, concurrency limits, delays,
 * timeouts, retries with backoff, dead letters, the circuit breaker
 * (open, tasks waiting, half-open trial, closed), the rate limit,
 * pause/resume, cancel, retry, dry runs, batch assembly with partial
 * failure, C-function, exec and pull handlers (durable and async acks),
 * shutdown requeue, and crash
 * recovery on a copy of the database file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "reaper.h"
#include "store.h"
#include "task-engine.h"
#include "timeutil.h"

/* ---- the handler's side: what the C function saw ------------------------- */

enum mode { M_OK, M_FAIL_FIRST2, M_PERMANENT, M_WAIT_CANCEL, M_SLEEP100, M_FAIL_FLAG, M_BATCH_FAIL_SECOND };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    enum mode mode;
    int order[256];
    int n_order;
    int calls;
    int active, max_active;
    int batch_sizes[64];
    int n_batches;
    volatile int fail_flag;
} H;

static int payload_int(const task_func_item *it) { return atoi(it->payload); }

static int fn(task_func_ctx *ctx, void *ud) {
    pthread_mutex_lock(&lock);
    H.calls++;
    H.active++;
    if (H.active > H.max_active)
        H.max_active = H.active;
    for (size_t i = 0; i < ctx->n && H.n_order < 256; i++)
        H.order[H.n_order++] = payload_int(&ctx->items[i]);
    if (ctx->n > 1 && H.n_batches < 64)
        H.batch_sizes[H.n_batches++] = (int)ctx->n;
    enum mode m = H.mode;
    pthread_mutex_unlock(&lock);
    int rc = 0;
    switch (m) {
    case M_OK: break;
    case M_FAIL_FIRST2:
        if (ctx->items[0].attempt <= 2) {
            snprintf(ctx->error, sizeof(ctx->error), "attempt %d failed", ctx->items[0].attempt);
            rc = 1;
        }
        break;
    case M_PERMANENT: rc = TASK_FUNC_PERMANENT; break;
    case M_WAIT_CANCEL:
        while (!task_func_cancelled(ctx))
            usleep(1000);
        rc = 0;
        break;
    case M_SLEEP100: usleep(100000); break; /* long enough to overlap on a loaded machine */
    case M_FAIL_FLAG: rc = H.fail_flag ? 1 : 0; break;
    case M_BATCH_FAIL_SECOND:
        if (ctx->n > 1 && ctx->failed)
            ctx->failed[1] = true;
        break;
    }
    pthread_mutex_lock(&lock);
    H.active--;
    pthread_mutex_unlock(&lock);
    return rc;
}

/* ---- fixture ------------------------------------------------------------------ */

typedef struct fx {
    uv_loop_t loop;
    store *st;
    task_engine *e;
    tend_tasks_spec spec;
    tend_queue_spec q;
    reaper rp;
    bool has_reaper;
    char dir[64];
    store_backend_kind backend;
    uv_timer_t tick;
} fx;

static store_backend_kind backend_under_test;

/* Wall-clock budgets scale with TEND_TEST_SLOW (ASan in CI runs with 2);
 * the waits end as soon as their condition holds. */
static int64_t slow_ms(int64_t ms) {
    const char *v = getenv("TEND_TEST_SLOW");
    double f = v ? strtod(v, NULL) : 1.0;
    return f > 1.0 ? (int64_t)((double)ms * f) : ms;
}

static void on_tick(uv_timer_t *t) {}

static void fx_spec(fx *f, tend_handler_kind kind) {
    tend_queue_spec_init(&f->q);
    f->q.name = strdup("q");
    f->q.handler = kind;
    f->q.backoff_base_ms = 20;
    f->q.backoff_max_ms = 200;
    f->q.backoff_jitter = 0;
    memset(&f->spec, 0, sizeof(f->spec));
    f->spec.workers = 4;
    f->spec.max_payload = 256 << 10;
    f->spec.retention_succeeded_ms = 24LL * 3600 * 1000;
    f->spec.retention_dead_ms = 7LL * 24 * 3600 * 1000;
    f->spec.queues = &f->q;
    f->spec.n_queues = 1;
    memset(&H, 0, sizeof(H));
}

static void fx_open_store(fx *f) {
    snprintf(f->dir, sizeof(f->dir), "/tmp/tend-te-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    store_config sc = {.backend = backend_under_test, .state_dir = f->dir, .sync = STORE_SYNC_NORMAL};
    char *msg = NULL;
    assert_int_equal(store_open(&f->loop, &sc, &f->st, &msg), 0);
}

static void fx_start(fx *f) {
    task_engine_config ec = {.loop = &f->loop, .store = f->st, .spec = &f->spec,
                             .reaper = f->has_reaper ? &f->rp : NULL};
    char err[256] = "";
    int r = task_engine_new(&ec, &f->e, err, sizeof(err));
    if (r < 0)
        fail_msg("task_engine_new: %s", err);
    if (f->q.handler == TEND_HANDLER_FUNC)
        assert_int_equal(task_engine_set_func(f->e, "q", fn, NULL), 0);
    assert_int_equal(task_engine_start(f->e), 0);
}

static fx *fx_new(tend_handler_kind kind, void (*tweak)(fx *)) {
    fx *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 5, 5);
    fx_spec(f, kind);
    if (kind == TEND_HANDLER_EXEC) {
        assert_int_equal(reaper_init(&f->rp, &f->loop), 0);
        f->has_reaper = true;
    }
    if (tweak)
        tweak(f);
    fx_open_store(f);
    fx_start(f);
    return f;
}

static void on_store_closed(void *data) { *(bool *)data = true; }
static void on_engine_stopped(void *data) { *(bool *)data = true; }

/* Runs the loop until *flag or the timeout; returns *flag. */
static bool run_until(fx *f, volatile bool *flag, int64_t timeout_ms) {
    int64_t end = now_mono_ms() + slow_ms(timeout_ms);
    while (!*flag && now_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    return *flag;
}

static void run_for(fx *f, int64_t ms) {
    int64_t end = now_mono_ms() + ms;
    while (now_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void fx_free(fx *f) {
    bool stopped = false, closed = false;
    task_engine_shutdown(f->e, 2000, on_engine_stopped, &stopped);
    assert_true(run_until(f, &stopped, 5000));
    store_close(f->st, on_store_closed, &closed);
    assert_true(run_until(f, &closed, 5000));
    f->e = task_engine_free(f->e);
    if (f->has_reaper)
        reaper_close(&f->rp);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    (void)!system(cmd);
    tend_queue_spec_clear(&f->q);
    free(f);
}

/* ---- submit / inspect helpers -------------------------------------------------- */

typedef struct sub_res {
    bool done;
    int result;
    char ids[64][STORE_ID_SIZE];
    size_t n;
} sub_res;

static void on_sub(void *data, int result, const store_task *tasks, const store_task *existing, size_t n) {
    sub_res *s = data;
    s->done = true;
    s->result = result;
    for (size_t i = 0; i < n && i < 64; i++)
        memcpy(s->ids[i], existing && existing[i].id[0] ? existing[i].id : tasks[i].id, STORE_ID_SIZE);
    s->n = n;
}

static void submit(fx *f, const task_submit *subs, size_t n, sub_res *out) {
    memset(out, 0, sizeof(*out));
    assert_int_equal(task_engine_submit(f->e, "q", subs, n, on_sub, out), 0);
    assert_true(run_until(f, &out->done, 5000));
    assert_true(out->result >= 0);
}

static void submit_one(fx *f, int payload, int prio, int64_t delay_ms, char ret_id[STORE_ID_SIZE]) {
    char p[16];
    snprintf(p, sizeof(p), "%d", payload);
    task_submit s = {.payload = p, .payload_len = strlen(p), .priority = prio, .delay_ms = delay_ms};
    sub_res r;
    submit(f, &s, 1, &r);
    if (ret_id)
        memcpy(ret_id, r.ids[0], STORE_ID_SIZE);
}

typedef struct got {
    bool done;
    int result;
    store_task t;
} got;

static void on_got(void *data, int result, const store_task *t) {
    got *g = data;
    g->done = true;
    g->result = result;
    if (t)
        store_task_copy(&g->t, t);
}

static store_task_state state_of(fx *f, const char *id, int *ret_attempts) {
    got g = {0};
    assert_int_equal(task_engine_get(f->e, id, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, 0);
    store_task_state s = g.t.state;
    if (ret_attempts)
        *ret_attempts = g.t.attempts;
    store_task_clear(&g.t);
    return s;
}

static bool wait_state(fx *f, const char *id, store_task_state want, int64_t timeout_ms) {
    int64_t end = now_mono_ms() + slow_ms(timeout_ms);
    while (now_mono_ms() < end) {
        if (state_of(f, id, NULL) == want)
            return true;
        run_for(f, 10);
    }
    return false;
}

/* ---- tests ------------------------------------------------------------------------- */

static void one_worker(fx *f) {
    f->q.concurrency = 1;
    f->spec.workers = 1;
}

static void test_priority_fifo(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, one_worker);
    task_engine_pause(f->e, "q", true, NULL, NULL);
    int prios[] = {STORE_PRIORITY_LOW, STORE_PRIORITY_NORMAL, STORE_PRIORITY_CRITICAL, STORE_PRIORITY_NORMAL,
                   STORE_PRIORITY_BACKGROUND, STORE_PRIORITY_HIGH, STORE_PRIORITY_CRITICAL};
    char last[STORE_ID_SIZE];
    for (int i = 0; i < 7; i++)
        submit_one(f, i, prios[i], 0, last);
    task_engine_pause(f->e, "q", false, NULL, NULL);
    assert_true(wait_state(f, last, STORE_TASK_SUCCEEDED, 5000));
    run_for(f, 100);
    int want[] = {2, 6, 5, 1, 3, 0, 4};
    assert_int_equal(H.n_order, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(H.order[i], want[i]);
    fx_free(f);
}

static void conc2(fx *f) {
    f->q.concurrency = 2;
    f->spec.workers = 4;
}

static void test_concurrency_limit(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, conc2);
    H.mode = M_SLEEP100;
    task_submit s[12];
    for (int i = 0; i < 12; i++)
        s[i] = (task_submit){.payload = "1", .payload_len = 1, .priority = STORE_PRIORITY_NORMAL};
    sub_res r;
    submit(f, s, 12, &r);
    assert_true(wait_state(f, r.ids[11], STORE_TASK_SUCCEEDED, 5000));
    run_for(f, 50);
    assert_int_equal(H.calls, 12);
    assert_int_equal(H.max_active, 2);
    task_engine_stats st;
    task_engine_get_stats(f->e, &st);
    assert_int_equal(st.total_processed, 12);
    fx_free(f);
}

static void test_delay(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    char id[STORE_ID_SIZE];
    int64_t t0 = now_mono_ms();
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 300, id);
    assert_int_equal(state_of(f, id, NULL), STORE_TASK_SCHEDULED);
    run_for(f, 150);
    assert_int_equal(H.calls, 0);
    assert_true(wait_state(f, id, STORE_TASK_SUCCEEDED, 5000));
    assert_true(now_mono_ms() - t0 >= 290);
    fx_free(f);
}

static void short_timeout(fx *f) {
    f->q.timeout_ms = 100;
    f->q.max_attempts = 1;
}

static void test_timeout(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, short_timeout);
    H.mode = M_WAIT_CANCEL;
    char id[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    assert_true(wait_state(f, id, STORE_TASK_DEAD, 5000));
    got g = {0};
    task_engine_get(f->e, id, on_got, &g);
    assert_true(run_until(f, &g.done, 5000));
    assert_non_null(g.t.last_error);
    assert_non_null(strstr(g.t.last_error, "timed out"));
    store_task_clear(&g.t);
    fx_free(f);
}

static void test_retry_backoff(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    H.mode = M_FAIL_FIRST2;
    char id[STORE_ID_SIZE];
    int64_t t0 = now_mono_ms();
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    assert_true(wait_state(f, id, STORE_TASK_SUCCEEDED, 5000));
    int attempts = 0;
    state_of(f, id, &attempts);
    assert_int_equal(attempts, 3);
    /* 20 ms then 40 ms of backoff (no jitter). */
    assert_true(now_mono_ms() - t0 >= 55);
    task_queue_info in;
    task_engine_queue_info(f->e, 0, &in);
    assert_int_equal(in.finished[TASK_RESULT_FAILED], 2);
    assert_int_equal(in.finished[TASK_RESULT_SUCCEEDED], 1);
    fx_free(f);
}

typedef struct cnt {
    bool done;
    int result;
} cnt;
static void on_cnt(void *data, int result) {
    cnt *c = data;
    c->done = true;
    c->result = result;
}

static void test_dead_letters(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    H.mode = M_PERMANENT;
    char id[STORE_ID_SIZE], id2[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    submit_one(f, 2, STORE_PRIORITY_NORMAL, 0, id2);
    assert_true(wait_state(f, id, STORE_TASK_DEAD, 5000));
    assert_true(wait_state(f, id2, STORE_TASK_DEAD, 5000));
    int attempts = 0;
    state_of(f, id, &attempts);
    assert_int_equal(attempts, 1); /* permanent: no retry */
    H.mode = M_OK;
    cnt c = {0};
    assert_int_equal(task_engine_requeue_dead(f->e, "q", on_cnt, &c), 0);
    assert_true(run_until(f, &c.done, 5000));
    assert_int_equal(c.result, 2);
    assert_true(wait_state(f, id, STORE_TASK_SUCCEEDED, 5000));
    /* purge */
    H.mode = M_PERMANENT;
    char id3[STORE_ID_SIZE];
    submit_one(f, 3, STORE_PRIORITY_NORMAL, 0, id3);
    assert_true(wait_state(f, id3, STORE_TASK_DEAD, 5000));
    c = (cnt){0};
    assert_int_equal(task_engine_purge_dead(f->e, "q", on_cnt, &c), 0);
    assert_true(run_until(f, &c.done, 5000));
    assert_int_equal(c.result, 1);
    got g = {0};
    task_engine_get(f->e, id3, on_got, &g);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, -ENOENT);
    fx_free(f);
}

static void with_breaker(fx *f) {
    f->q.breaker_failure_threshold = 2;
    f->q.breaker_open_ms = slow_ms(300); /* the checks while open take 150 ms */
    f->q.max_attempts = 20;
    f->q.concurrency = 1;
    f->q.backoff_base_ms = 5;
    f->q.backoff_max_ms = 5;
}

static void test_breaker(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, with_breaker);
    H.mode = M_FAIL_FLAG;
    H.fail_flag = 1;
    char ids[4][STORE_ID_SIZE];
    for (int i = 0; i < 4; i++)
        submit_one(f, i, STORE_PRIORITY_NORMAL, 0, ids[i]);
    /* Two failures open the circuit; the tasks wait, none is dead. */
    int64_t end = now_mono_ms() + slow_ms(3000);
    task_queue_info in;
    do {
        run_for(f, 10);
        task_engine_queue_info(f->e, 0, &in);
    } while (in.breaker != BREAKER_OPEN && now_mono_ms() < end);
    assert_int_equal(in.breaker, BREAKER_OPEN);
    int calls_at_open = H.calls;
    assert_int_equal(calls_at_open, 2);
    run_for(f, 150);
    assert_int_equal(H.calls, calls_at_open); /* nothing dispatched while open */
    for (int i = 0; i < 4; i++) {
        store_task_state s = state_of(f, ids[i], NULL);
        assert_true(s == STORE_TASK_PENDING || s == STORE_TASK_SCHEDULED);
    }
    /* The downstream recovers: the half-open trial succeeds and closes it. */
    H.fail_flag = 0;
    for (int i = 0; i < 4; i++)
        assert_true(wait_state(f, ids[i], STORE_TASK_SUCCEEDED, 5000));
    task_engine_queue_info(f->e, 0, &in);
    assert_int_equal(in.breaker, BREAKER_CLOSED);
    assert_int_equal(in.breaker_opened_total, 1);
    fx_free(f);
}

static void rate20(fx *f) {
    f->q.rate_per_sec = 20;
    f->q.concurrency = 10;
}

static void test_rate_limit(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, rate20);
    task_submit s[30];
    for (int i = 0; i < 30; i++)
        s[i] = (task_submit){.payload = "1", .payload_len = 1, .priority = STORE_PRIORITY_NORMAL};
    int64_t t0 = now_mono_ms();
    sub_res r;
    submit(f, s, 30, &r);
    for (int i = 0; i < 30; i++) {
        if (!wait_state(f, r.ids[i], STORE_TASK_SUCCEEDED, 5000)) {
            int a;
            task_queue_info in;
            task_engine_queue_info(f->e, 0, &in);
            fail_msg("task %d: state %d calls %d running %d tokens %f", i, state_of(f, r.ids[i], &a), H.calls,
                     (int)in.running, in.tokens);
        }
    }
    /* A burst of 20, then 10 more at 20/s: at least ~0.5 s. */
    assert_true(now_mono_ms() - t0 >= 400);
    fx_free(f);
}

/* Many short waits for a token, each a pump that stops at the rate gate
 * and a timer that must bring the next one: every task has to run.  A
 * queue once stalled with tasks pending when the gate opened between the
 * pump and the timer's arming; that microsecond window is not forced
 * here, so this guards the cycle rather than reproducing the race. */
static void rate400(fx *f) {
    f->q.rate_per_sec = 400;
    f->q.concurrency = 10;
}

static void test_rate_limit_no_stall(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, rate400);
    enum { N = 800, CHUNK = 50 };
    task_submit s[CHUNK];
    for (int i = 0; i < CHUNK; i++)
        s[i] = (task_submit){.payload = "1", .payload_len = 1, .priority = STORE_PRIORITY_NORMAL};
    for (int k = 0; k < N / CHUNK; k++) {
        sub_res r;
        submit(f, s, CHUNK, &r);
    }
    /* A burst of 400, then 400 more at 400/s: ~1 s. */
    int64_t end = now_mono_ms() + slow_ms(10000);
    int calls = 0;
    while (now_mono_ms() < end) {
        pthread_mutex_lock(&lock);
        calls = H.calls;
        pthread_mutex_unlock(&lock);
        if (calls >= N)
            break;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    if (calls < N) {
        task_queue_info in;
        task_engine_queue_info(f->e, 0, &in);
        fail_msg("%d of %d tasks ran; running %d tokens %f", calls, N, (int)in.running, in.tokens);
    }
    fx_free(f);
}

static void test_pause_resume(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    task_engine_pause(f->e, "q", true, NULL, NULL);
    char id[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    run_for(f, 150);
    assert_int_equal(H.calls, 0);
    assert_int_equal(state_of(f, id, NULL), STORE_TASK_PENDING);
    task_engine_pause(f->e, "q", false, NULL, NULL);
    assert_true(wait_state(f, id, STORE_TASK_SUCCEEDED, 5000));
    fx_free(f);
}

static void test_cancel(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    /* Pending: never runs. */
    task_engine_pause(f->e, "q", true, NULL, NULL);
    char id[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    got g = {0};
    assert_int_equal(task_engine_cancel(f->e, id, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, 0);
    assert_int_equal(g.t.state, STORE_TASK_CANCELLED);
    store_task_clear(&g.t);
    task_engine_pause(f->e, "q", false, NULL, NULL);
    run_for(f, 100);
    assert_int_equal(H.calls, 0);
    /* Cancelling again: finished, refused. */
    g = (got){0};
    assert_int_equal(task_engine_cancel(f->e, id, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, -EBUSY);
    store_task_clear(&g.t);
    /* Running: the function is told to stop, the task ends cancelled. */
    H.mode = M_WAIT_CANCEL;
    char id2[STORE_ID_SIZE];
    submit_one(f, 2, STORE_PRIORITY_NORMAL, 0, id2);
    assert_true(wait_state(f, id2, STORE_TASK_RUNNING, 5000));
    g = (got){0};
    assert_int_equal(task_engine_cancel(f->e, id2, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, 0);
    assert_int_equal(g.t.state, STORE_TASK_CANCELLED);
    store_task_clear(&g.t);
    assert_int_equal(state_of(f, id2, NULL), STORE_TASK_CANCELLED);
    fx_free(f);
}

static void test_retry_action(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    H.mode = M_PERMANENT;
    char id[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    assert_true(wait_state(f, id, STORE_TASK_DEAD, 5000));
    H.mode = M_OK;
    got g = {0};
    assert_int_equal(task_engine_retry(f->e, id, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, 0);
    assert_int_equal(g.t.state, STORE_TASK_PENDING);
    assert_int_equal(g.t.attempts, 0);
    store_task_clear(&g.t);
    assert_true(wait_state(f, id, STORE_TASK_SUCCEEDED, 5000));
    int attempts;
    state_of(f, id, &attempts);
    assert_int_equal(attempts, 1);
    /* A succeeded task cannot be retried. */
    g = (got){0};
    assert_int_equal(task_engine_retry(f->e, id, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, -EBUSY);
    store_task_clear(&g.t);
    fx_free(f);
}

static void dry(fx *f) { f->q.dry_run = true; }

static void test_dry_run(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, dry);
    char id[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    assert_true(wait_state(f, id, STORE_TASK_SUCCEEDED, 5000));
    assert_int_equal(H.calls, 0);
    fx_free(f);
}

static void batch3(fx *f) {
    f->q.batch = true;
    f->q.batch_size = 3;
    f->q.batch_max_wait_ms = 250;
    f->q.concurrency = 1;
}

static void test_batch(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, batch3);
    H.mode = M_BATCH_FAIL_SECOND;
    task_engine_pause(f->e, "q", true, NULL, NULL);
    task_submit s[7];
    char p[7][4];
    for (int i = 0; i < 7; i++) {
        snprintf(p[i], sizeof(p[i]), "%d", i);
        s[i] = (task_submit){.payload = p[i], .payload_len = strlen(p[i]), .priority = STORE_PRIORITY_NORMAL};
    }
    sub_res r;
    submit(f, s, 7, &r);
    int64_t t0 = now_mono_ms();
    task_engine_pause(f->e, "q", false, NULL, NULL);
    /* Two full batches at once, then the last one after max_wait. */
    for (int i = 0; i < 7; i++)
        if (i != 1 && i != 4)
            assert_true(wait_state(f, r.ids[i], STORE_TASK_SUCCEEDED, 5000));
    assert_true(H.n_batches >= 2);
    assert_int_equal(H.batch_sizes[0], 3);
    assert_int_equal(H.batch_sizes[1], 3);
    (void)t0;
    /* The second of each batch was reported failed: it is retried. */
    int attempts = 0;
    store_task_state st = state_of(f, r.ids[1], &attempts);
    assert_true(attempts >= 1);
    assert_true(st == STORE_TASK_SCHEDULED || st == STORE_TASK_PENDING || st == STORE_TASK_RUNNING ||
                st == STORE_TASK_SUCCEEDED);
    task_queue_info in;
    task_engine_queue_info(f->e, 0, &in);
    assert_true(in.batch_size->count >= 2);
    assert_true(in.finished[TASK_RESULT_FAILED] >= 2);
    fx_free(f);
}

static void test_idempotency(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    task_engine_pause(f->e, "q", true, NULL, NULL);
    task_submit s = {.payload = "1", .payload_len = 1, .priority = STORE_PRIORITY_NORMAL, .idempotency_key = "k1"};
    sub_res a, b;
    submit(f, &s, 1, &a);
    assert_int_equal(a.result, 1);
    submit(f, &s, 1, &b);
    assert_int_equal(b.result, 0);
    assert_string_equal(a.ids[0], b.ids[0]);
    /* Over tasks.max_payload: refused up front. */
    f->spec.max_payload = 4;
    task_submit big = {.payload = "\"12345\"", .payload_len = 7, .priority = STORE_PRIORITY_NORMAL};
    assert_int_equal(task_engine_submit(f->e, "q", &big, 1, on_sub, &a), -E2BIG);
    assert_int_equal(task_engine_submit(f->e, "nope", &s, 1, on_sub, &a), -ENOENT);
    fx_free(f);
}

/* Thread-safe intake: another thread enqueues, the loop inserts them in bulk. */
static void *enqueuer(void *arg) {
    task_engine *e = arg;
    for (int i = 0; i < 500; i++) {
        task_submit s = {.payload = "7", .payload_len = 1, .priority = STORE_PRIORITY_NORMAL};
        if (task_engine_enqueue(e, "q", &s, NULL) < 0)
            abort();
    }
    return NULL;
}

static void test_enqueue_threads(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    /* Three threads at once, 1,500 tasks before the loop drains: the
     * intake's chunks (512 tasks) fill and chain. */
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, enqueuer, f->e);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    int64_t end = now_mono_ms() + slow_ms(10000);
    int calls = 0;
    while (calls < 1500 && now_mono_ms() < end) {
        run_for(f, 10);
        pthread_mutex_lock(&lock); /* the workers count under it */
        calls = H.calls;
        pthread_mutex_unlock(&lock);
    }
    assert_int_equal(calls, 1500);
    task_engine_stats st;
    task_engine_get_stats(f->e, &st);
    assert_int_equal(st.submitted, 1500);
    assert_int_equal(st.intake_failed, 0);
    fx_free(f);
}

/* What task_engine_enqueue() stores: payload, key, tags, priority and
 * delay as given (the intake packs them into one buffer per drain); the
 * store's limits are checked up front; a repeated key stores one task. */
static void test_enqueue_fields(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    task_engine_pause(f->e, "q", true, NULL, NULL);
    char a[STORE_ID_SIZE], b[STORE_ID_SIZE], c[STORE_ID_SIZE], d[STORE_ID_SIZE];
    task_submit s1 = {.payload = "{\"n\":1}", .payload_len = 7, .priority = STORE_PRIORITY_HIGH,
                      .idempotency_key = "key-1", .tags = "[\"x\"]", .max_attempts = 7};
    task_submit s2 = {.payload = NULL, .priority = STORE_PRIORITY_LOW, .delay_ms = 60000};
    assert_int_equal(task_engine_enqueue(f->e, "q", &s1, a), 0);
    assert_int_equal(task_engine_enqueue(f->e, "q", &s2, b), 0);
    assert_int_equal(task_engine_enqueue(f->e, "q", &s1, c), 0); /* same key */
    char longkey[STORE_KEY_MAX + 2];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = 0;
    task_submit bad = {.payload = "1", .payload_len = 1, .priority = STORE_PRIORITY_NORMAL, .idempotency_key = longkey};
    assert_int_equal(task_engine_enqueue(f->e, "q", &bad, d), -E2BIG);
    bad.idempotency_key = "";
    assert_int_equal(task_engine_enqueue(f->e, "q", &bad, d), -EINVAL);
    bad.idempotency_key = NULL;
    bad.priority = STORE_PRIORITY_MAX;
    assert_int_equal(task_engine_enqueue(f->e, "q", &bad, d), -EINVAL);
    assert_int_equal(task_engine_enqueue(f->e, "nope", &s2, d), -ENOENT);
    run_for(f, 50);
    got g = {0};
    assert_int_equal(task_engine_get(f->e, a, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, 0);
    assert_string_equal(g.t.payload, "{\"n\":1}");
    assert_int_equal(g.t.payload_len, 7);
    assert_string_equal(g.t.idempotency_key, "key-1");
    assert_string_equal(g.t.tags, "[\"x\"]");
    assert_string_equal(g.t.queue, "q");
    assert_int_equal(g.t.priority, STORE_PRIORITY_HIGH);
    assert_int_equal(g.t.max_attempts, 7);
    assert_int_equal(g.t.state, STORE_TASK_PENDING);
    store_task_clear(&g.t);
    g = (got){0};
    assert_int_equal(task_engine_get(f->e, b, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, 0);
    assert_string_equal(g.t.payload, "null");
    assert_null(g.t.idempotency_key);
    assert_null(g.t.tags);
    assert_int_equal(g.t.priority, STORE_PRIORITY_LOW);
    assert_int_equal(g.t.state, STORE_TASK_SCHEDULED);
    assert_true(g.t.run_at >= g.t.created_at + 60000);
    store_task_clear(&g.t);
    /* The repeated key was not stored a second time. */
    g = (got){0};
    assert_int_equal(task_engine_get(f->e, c, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.result, -ENOENT);
    fx_free(f);
}

static void wide(fx *f) {
    f->q.concurrency = 64; /* >= tasks.workers: the windowed path over memory */
    f->spec.workers = 2;
}

/* Many tasks through the pool's window: all run, never more at once than
 * the pool's tasks.workers threads, and failures still retry. */
static void test_window(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, wide);
    H.mode = M_FAIL_FIRST2;
    pthread_t t;
    pthread_create(&t, NULL, enqueuer, f->e);
    pthread_join(t, NULL);
    /* About a second when all is well (backoff 20 then 40 ms); a task
     * left behind would be a dispatch stall, not slowness. */
    int64_t end = now_mono_ms() + slow_ms(30000);
    task_engine_stats st;
    do {
        run_for(f, 10);
        task_engine_get_stats(f->e, &st);
    } while (st.total_processed < 500 * 3 && now_mono_ms() < end);
    task_queue_info in;
    task_engine_queue_info(f->e, 0, &in);
    assert_int_equal(in.finished[TASK_RESULT_SUCCEEDED], 500);
    assert_int_equal(in.finished[TASK_RESULT_FAILED], 1000);
    assert_true(H.max_active <= 2);
    fx_free(f);
}

static void exec_q(fx *f) {
    f->q.argv = calloc(4, sizeof(char *));
    f->q.argv[0] = strdup("/bin/sh");
    f->q.argv[1] = strdup("-c");
    f->q.argv[2] = strdup("read x; case \"$x\" in *'\"payload\":65'*) echo bad input; exit 65;; esac; "
                          "test \"$TEND_QUEUE\" = q && echo \"$x\"");
    f->q.max_attempts = 2;
}

static void test_exec(void **state) {
    fx *f = fx_new(TEND_HANDLER_EXEC, exec_q);
    char ok[STORE_ID_SIZE], bad[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, ok);
    submit_one(f, 65, STORE_PRIORITY_NORMAL, 0, bad);
    assert_true(wait_state(f, ok, STORE_TASK_SUCCEEDED, 5000));
    assert_true(wait_state(f, bad, STORE_TASK_DEAD, 5000));
    got g = {0};
    task_engine_get(f->e, bad, on_got, &g);
    assert_true(run_until(f, &g.done, 5000));
    assert_int_equal(g.t.attempts, 1);
    assert_non_null(strstr(g.t.last_error, "exit status 65: bad input"));
    store_task_clear(&g.t);
    fx_free(f);
}

typedef struct res_out {
    bool done;
    int result;
    char id[STORE_ID_SIZE];
} res_out;

static void on_res(void *data, int result, const store_task *t) {
    res_out *o = data;
    o->done = true;
    o->result = result;
    if (t)
        memcpy(o->id, t->id, STORE_ID_SIZE);
}

static void pull_q(fx *f) {
    f->q.timeout_ms = 200;
    f->q.ack_async = false; /* ack: durable (the default is async) */
}

static void test_pull(void **state) {
    fx *f = fx_new(TEND_HANDLER_PULL, pull_q);
    res_out o = {0};
    assert_int_equal(task_engine_reserve(f->e, "q", 100, on_res, &o, NULL), 0);
    assert_true(run_until(f, &o.done, 2000));
    assert_int_equal(o.result, 0);
    assert_int_equal(o.id[0], 0); /* nothing within the wait */
    char a[STORE_ID_SIZE], b[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, a);
    submit_one(f, 2, STORE_PRIORITY_NORMAL, 0, b);
    o = (res_out){0};
    assert_int_equal(task_engine_reserve(f->e, "q", 1000, on_res, &o, NULL), 0);
    assert_true(run_until(f, &o.done, 2000));
    assert_string_equal(o.id, a);
    got g = {0};
    assert_int_equal(task_engine_ack(f->e, a, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 2000));
    assert_int_equal(g.t.state, STORE_TASK_SUCCEEDED);
    store_task_clear(&g.t);
    /* The second lease expires: a failed attempt, delivered again. */
    o = (res_out){0};
    assert_int_equal(task_engine_reserve(f->e, "q", 1000, on_res, &o, NULL), 0);
    assert_true(run_until(f, &o.done, 2000));
    assert_string_equal(o.id, b);
    assert_true(wait_state(f, b, STORE_TASK_SCHEDULED, 2000) || wait_state(f, b, STORE_TASK_PENDING, 100));
    o = (res_out){0};
    assert_int_equal(task_engine_reserve(f->e, "q", 2000, on_res, &o, NULL), 0);
    assert_true(run_until(f, &o.done, 3000));
    assert_string_equal(o.id, b);
    g = (got){0};
    assert_int_equal(task_engine_nack(f->e, b, "no", 0, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 2000));
    assert_int_equal(g.t.state, STORE_TASK_SCHEDULED); /* attempt 2 of 3 */
    assert_string_equal(g.t.last_error, "no");
    store_task_clear(&g.t);
    fx_free(f);
}

static void pull_async_q(fx *f) {
    f->q.timeout_ms = 2000;
    f->q.ack_async = true;
}

/* ack: async: ack, nack and touch are answered inside the call, before
 * the UPDATE commits; an ack of a task no longer leased is still -EBUSY;
 * a failed commit is retried until the store has the outcome. */
static void test_pull_async(void **state) {
    fx *f = fx_new(TEND_HANDLER_PULL, pull_async_q);
    char a[STORE_ID_SIZE], b[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, a);
    submit_one(f, 2, STORE_PRIORITY_NORMAL, 0, b);
    res_out o = {0};
    assert_int_equal(task_engine_reserve(f->e, "q", 1000, on_res, &o, NULL), 0);
    assert_true(run_until(f, &o.done, 2000));
    assert_string_equal(o.id, a);
    got g = {0};
    assert_int_equal(task_engine_touch(f->e, a, on_got, &g), 0);
    assert_true(g.done); /* answered before the commit */
    assert_int_equal(g.result, 0);
    assert_int_equal(g.t.state, STORE_TASK_RUNNING);
    store_task_clear(&g.t);
    g = (got){0};
    assert_int_equal(task_engine_ack(f->e, a, on_got, &g), 0);
    assert_true(g.done);
    assert_int_equal(g.result, 0);
    assert_int_equal(g.t.state, STORE_TASK_SUCCEEDED);
    store_task_clear(&g.t);
    assert_true(wait_state(f, a, STORE_TASK_SUCCEEDED, 2000));
    g = (got){0};
    assert_int_equal(task_engine_ack(f->e, a, on_got, &g), 0);
    assert_true(run_until(f, &g.done, 2000));
    assert_int_equal(g.result, -EBUSY);
    store_task_clear(&g.t);
    /* A nack whose first commit fails: answered at once, written on retry. */
    o = (res_out){0};
    assert_int_equal(task_engine_reserve(f->e, "q", 1000, on_res, &o, NULL), 0);
    assert_true(run_until(f, &o.done, 2000));
    assert_string_equal(o.id, b);
    store_inject_fault(f->st, STORE_OP_UPDATE, -EIO);
    g = (got){0};
    assert_int_equal(task_engine_nack(f->e, b, "later", 60000, on_got, &g), 0);
    assert_true(g.done);
    assert_int_equal(g.result, 0);
    assert_int_equal(g.t.state, STORE_TASK_SCHEDULED);
    store_task_clear(&g.t);
    run_for(f, 100); /* the failing group (it fails reads in it too) */
    assert_true(wait_state(f, b, STORE_TASK_SCHEDULED, 5000));
    fx_free(f);
}

static void on_sget(store_op *op, int result) { *(int *)op->userdata = result + 1000; }

/* Shutdown with a task running past the deadline: it is requeued with
 * its attempt counted. */
static void test_shutdown_requeue(void **state) {
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    H.mode = M_WAIT_CANCEL;
    char id[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    assert_true(wait_state(f, id, STORE_TASK_RUNNING, 5000));
    bool stopped = false;
    task_engine_shutdown(f->e, 50, on_engine_stopped, &stopped);
    assert_int_equal(task_engine_submit(f->e, "q", &(task_submit){.priority = 2}, 1, on_sub, NULL), -ESHUTDOWN);
    assert_true(run_until(f, &stopped, 5000));
    /* Read it straight from the store: pending again, attempt counted. */
    int r = 0;
    store_op op = {.kind = STORE_OP_GET, .done = on_sget, .userdata = &r};
    op.get.id = id;
    assert_int_equal(store_submit(f->st, &op), 0);
    while (!r)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(r, 1000);
    assert_int_equal(op.get.ret_task->state, STORE_TASK_PENDING);
    assert_int_equal(op.get.ret_task->attempts, 1);
    assert_string_equal(op.get.ret_task->last_error, "interrupted by shutdown");
    store_op_clear(&op);
    fx_free(f);
}

/* Crash recovery: the database file copied while a task runs is what a
 * kill -9 leaves; RECOVER on it requeues the task with the attempt counted. */
static void on_rec(store_op *op, int result) { *(int *)op->userdata = result + 1000; }

static void test_crash_recovery(void **state) {
    if (backend_under_test != STORE_BACKEND_SQLITE)
        skip();
    fx *f = fx_new(TEND_HANDLER_FUNC, NULL);
    H.mode = M_WAIT_CANCEL;
    char id[STORE_ID_SIZE];
    submit_one(f, 1, STORE_PRIORITY_NORMAL, 0, id);
    assert_true(wait_state(f, id, STORE_TASK_RUNNING, 5000));
    char copy[128], cmd[512];
    snprintf(copy, sizeof(copy), "/tmp/tend-te-copy-XXXXXX");
    assert_non_null(mkdtemp(copy));
    snprintf(cmd, sizeof(cmd), "cp %s/tend.db %s/ && (cp %s/tend.db-wal %s/ 2>/dev/null || true)", f->dir, copy,
             f->dir, copy);
    assert_int_equal(system(cmd), 0);
    fx_free(f);

    uv_loop_t loop;
    uv_loop_init(&loop);
    store *st;
    store_config sc = {.backend = STORE_BACKEND_SQLITE, .state_dir = copy};
    assert_int_equal(store_open(&loop, &sc, &st, NULL), 0);
    int rec = 0;
    store_op op = {.kind = STORE_OP_RECOVER, .done = on_rec, .userdata = &rec};
    op.recover.now = now_wall_ms();
    assert_int_equal(store_submit(st, &op), 0);
    while (!rec)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(rec, 1001);
    assert_int_equal(op.recover.ret_requeued, 1);
    bool closed = false;
    store_close(st, on_store_closed, &closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", copy);
    (void)!system(cmd);
}

#define BOTH(t) cmocka_unit_test(t)

static const struct CMUnitTest tests[] = {
    BOTH(test_priority_fifo), BOTH(test_concurrency_limit), BOTH(test_delay),     BOTH(test_timeout),
    BOTH(test_retry_backoff), BOTH(test_dead_letters),      BOTH(test_breaker),   BOTH(test_rate_limit), BOTH(test_rate_limit_no_stall),
    BOTH(test_pause_resume),  BOTH(test_cancel),            BOTH(test_retry_action), BOTH(test_dry_run),
    BOTH(test_batch),         BOTH(test_idempotency),       BOTH(test_enqueue_threads), BOTH(test_enqueue_fields), BOTH(test_exec),
    BOTH(test_pull),          BOTH(test_pull_async),  BOTH(test_shutdown_requeue),  BOTH(test_crash_recovery), BOTH(test_window),
};

int main(void) {
    int failed = 0;
    backend_under_test = STORE_BACKEND_MEMORY;
    cmocka_set_message_output(CM_OUTPUT_STDOUT);
    if (getenv("TEST_FILTER")) /* e.g. TEST_FILTER=test_batch */
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    failed += _cmocka_run_group_tests("task-engine/memory", tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
    backend_under_test = STORE_BACKEND_SQLITE;
    failed += _cmocka_run_group_tests("task-engine/sqlite", tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
    return failed ? 1 : 0;
}
