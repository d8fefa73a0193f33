/*
 * libtend_submit.c - task submission through the public API
 * (tend_tasks_submit, linked against the shared libtend.so), to measure
 * what the wrapper adds to the engine's own intake (bench/task_engine_mem.c,
 * issue 4's target: >= 1,000,000 no-op tasks/s from one submitter thread).
 *
 * One submitter thread calls tend_tasks_submit() N times into a queue of
 * no-op C functions on the memory store; prints the submission rate (calls
 * per second on the submitter) and the end-to-end rate (N / time until
 * tend_tasks_wait_idle() returns: every outcome written to the store).
 *
 *   libtend_submit [N] [payload|null] [workers] [concurrency]
 *     payload: "{}" (validated as JSON by the wrapper), null: no payload
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tend.h>
#include <time.h>

static atomic_long ran;

static int noop(tend_task_ctx *ctx, void *data) {
    atomic_fetch_add_explicit(&ran, (long)tend_task_count(ctx), memory_order_relaxed);
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct sub_arg {
    tend_tasks *t;
    long n;
    const char *payload;
    double secs;
} sub_arg;

static void *submitter(void *p) {
    sub_arg *a = p;
    double t0 = now_s();
    for (long i = 0; i < a->n; i++) {
        int r = tend_tasks_submit(a->t, "bench", a->payload, NULL, NULL);
        if (r < 0) {
            fprintf(stderr, "submit failed at %ld: %s\n", i, tend_strerror(r));
            exit(1);
        }
    }
    a->secs = now_s() - t0;
    return NULL;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    const char *payload = argc > 2 && strcmp(argv[2], "null") == 0 ? NULL : "{}";
    int workers = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 2;
    int conc = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 1000;
    tend_runtime_options ro;
    tend_runtime_options_init(&ro);
    ro.health_interval_ms = 0;
    tend_runtime *rt;
    if (tend_runtime_new(&ro, &rt) < 0)
        return 1;
    tend_tasks_options to;
    tend_tasks_options_init(&to);
    to.workers = workers;
    tend_tasks *t;
    if (tend_tasks_new(rt, &to, &t) < 0)
        return 1;
    tend_queue_options q;
    tend_queue_options_init(&q);
    q.name = "bench";
    q.fn = noop;
    q.concurrency = conc;
    if (tend_tasks_add_queue(t, &q) < 0 || tend_runtime_start(rt) < 0)
        return 1;
    sub_arg a = {t, n, payload, 0};
    double t0 = now_s();
    pthread_t th;
    pthread_create(&th, NULL, submitter, &a);
    pthread_join(th, NULL);
    int r = tend_tasks_wait_idle(t, 600000);
    double total = now_s() - t0;
    if (r < 0 || atomic_load(&ran) != n) {
        fprintf(stderr, "wait_idle: %s, ran %ld of %ld\n", tend_strerror(r), atomic_load(&ran), n);
        return 1;
    }
    printf("libtend_submit n=%ld payload=%s workers=%d concurrency=%d: submit %.0f/s, end-to-end %.0f/s\n", n,
           payload ? payload : "null", workers, conc, (double)n / a.secs, (double)n / total);
    tend_runtime_shutdown(rt, 10000);
    tend_runtime_free(rt);
    return 0;
}
