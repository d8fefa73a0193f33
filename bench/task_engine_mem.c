/*
 * task_engine_mem.c - libtend's task-engine throughput with the memory
 * store and no-op C-function tasks (issue 4's target: >= 1,000,000
 * tasks/s from one submitter thread).
 *
 * One submitter thread calls task_engine_enqueue() N times (the
 * thread-safe intake); the loop thread runs the engine; a no-op C function
 * counts completions on the worker threads.  Prints the submission rate
 * (enqueue calls per second on the submitter) and the end-to-end rate
 * (N / time until the last task's outcome is written to the store).
 *
 *   task_engine_mem [N] [workers] [concurrency]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "task-engine.h"
#include "timeutil.h"

static atomic_long ran;

static int noop(task_func_ctx *ctx, void *ud) {
    atomic_fetch_add_explicit(&ran, (long)ctx->n, memory_order_relaxed);
    return 0;
}

typedef struct sub_arg {
    task_engine *e;
    long n;
    double secs;
} sub_arg;

static void *submitter(void *p) {
    sub_arg *a = p;
    task_submit s = {.payload = "{}", .payload_len = 2, .priority = STORE_PRIORITY_NORMAL};
    int64_t t0 = now_mono_us();
    for (long i = 0; i < a->n; i++)
        if (task_engine_enqueue(a->e, "bench", &s, NULL) < 0) {
            fprintf(stderr, "enqueue failed at %ld\n", i);
            exit(1);
        }
    a->secs = (double)(now_mono_us() - t0) / 1e6;
    return NULL;
}

typedef struct watch {
    task_engine *e;
    long n;
    int64_t t0;
    int64_t done_us;
    uv_timer_t timer;
} watch;

static void on_watch(uv_timer_t *t) {
    watch *w = t->data;
    task_engine_stats st;
    task_engine_get_stats(w->e, &st);
    if ((long)st.total_processed >= w->n) {
        w->done_us = now_mono_us();
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
    }
}

static void on_stopped(void *data) { *(int *)data = 1; }
static void on_closed(void *data) { *(int *)data = 1; }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int workers = argc > 2 ? atoi(argv[2]) : 2;
    int conc = argc > 3 ? atoi(argv[3]) : workers;
    uv_loop_t loop;
    uv_loop_init(&loop);
    store *st;
    store_config sc = {.backend = STORE_BACKEND_MEMORY};
    if (store_open(&loop, &sc, &st, NULL) < 0)
        return 1;
    tend_queue_spec q;
    tend_queue_spec_init(&q);
    q.name = strdup("bench");
    q.handler = TEND_HANDLER_FUNC;
    q.concurrency = conc;
    tend_tasks_spec spec = {.workers = workers, .max_payload = 256 << 10, .queues = &q, .n_queues = 1,
                            .retention_succeeded_ms = 24LL * 3600 * 1000, .retention_dead_ms = 7LL * 24 * 3600 * 1000};
    task_engine *e;
    char err[256];
    task_engine_config ec = {.loop = &loop, .store = st, .spec = &spec};
    if (task_engine_new(&ec, &e, err, sizeof(err)) < 0 || task_engine_set_func(e, "bench", noop, NULL) < 0 ||
        task_engine_start(e) < 0) {
        fprintf(stderr, "engine: %s\n", err);
        return 1;
    }
    watch w = {.e = e, .n = n, .t0 = now_mono_us()};
    uv_timer_init(&loop, &w.timer);
    w.timer.data = &w;
    uv_timer_start(&w.timer, on_watch, 1, 1);
    sub_arg a = {.e = e, .n = n};
    pthread_t t;
    pthread_create(&t, NULL, submitter, &a);
    while (!w.done_us)
        uv_run(&loop, UV_RUN_ONCE);
    pthread_join(t, NULL);
    double total = (double)(w.done_us - w.t0) / 1e6;
    printf("tasks %ld workers %d concurrency %d: submit %.0f tasks/s (%.3f s), end-to-end %.0f tasks/s (%.3f s), "
           "ran %ld\n",
           n, workers, conc, (double)n / a.secs, a.secs, (double)n / total, total, atomic_load(&ran));
    int stopped = 0, closed = 0;
    task_engine_shutdown(e, 1000, on_stopped, &stopped);
    while (!stopped)
        uv_run(&loop, UV_RUN_ONCE);
    store_close(st, on_closed, &closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    task_engine_free(e);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    tend_queue_spec_clear(&q);
    return 0;
}
