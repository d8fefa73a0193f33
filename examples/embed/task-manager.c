/*
 * task-manager.c - libtend's task manager on its own: priorities, retries
 * with backoff, the dead-letter list (inspect, requeue, purge) and
 * statistics, with C functions as tasks.
 *
 * A "payments" queue runs one task at a time so that priorities are
 * visible: tasks submitted while the queue is paused run critical first,
 * background last.  A payment to "flaky" fails twice and succeeds on its
 * third attempt; one to "broken" fails every attempt and ends in the
 * dead-letter list, from which it is requeued (and, the gateway fixed,
 * succeeds).
 *
 *   cc task-manager.c -o task-manager $(pkg-config --cflags --libs tend)
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tend.h>

typedef struct gateway {
    pthread_mutex_t lock;
    char order[512];
    atomic_int flaky_failures; /* fail this many attempts of "flaky" */
    atomic_bool broken;        /* "broken" always fails while true */
} gateway;

static int pay(tend_task_ctx *ctx, void *data) {
    gateway *g = data;
    const char *payload = tend_task_payload(ctx, 0, NULL);
    int attempt = tend_task_attempt(ctx, 0);
    if (strstr(payload, "\"flaky\"") && atomic_load(&g->flaky_failures) > 0) {
        atomic_fetch_sub(&g->flaky_failures, 1);
        tend_task_set_error(ctx, "gateway timeout (attempt %d)", attempt);
        return -ETIMEDOUT; /* retried after the queue's backoff */
    }
    if (strstr(payload, "\"broken\"") && atomic_load(&g->broken)) {
        tend_task_set_error(ctx, "card declined by a broken gateway (attempt %d)", attempt);
        return -EIO;
    }
    pthread_mutex_lock(&g->lock);
    size_t n = strlen(g->order);
    snprintf(g->order + n, sizeof(g->order) - n, "%s%s", n ? ", " : "", payload);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static int fail(const char *what, int r) {
    fprintf(stderr, "task-manager example: %s: %s\n", what, tend_strerror(r));
    return 1;
}

int main(void) {
    gateway g = {.lock = PTHREAD_MUTEX_INITIALIZER};
    atomic_store(&g.flaky_failures, 2);
    atomic_store(&g.broken, true);
    tend_runtime *rt;
    int r = tend_runtime_new(NULL, &rt);
    if (r < 0)
        return fail("runtime", r);
    tend_tasks *tasks;
    tend_tasks_options to;
    tend_tasks_options_init(&to);
    to.workers = 2;
    if ((r = tend_tasks_new(rt, &to, &tasks)) < 0)
        return fail("task manager", r);
    tend_queue_options q;
    tend_queue_options_init(&q);
    q.name = "payments";
    q.fn = pay;
    q.data = &g;
    q.concurrency = 1;
    q.max_attempts = 3;
    q.backoff_base_ms = 50; /* 50 ms, 100 ms, ... with 20% jitter */
    q.backoff_max_ms = 1000;
    if ((r = tend_tasks_add_queue(tasks, &q)) < 0)
        return fail("queue", r);
    if ((r = tend_runtime_start(rt)) < 0)
        return fail("start", r);

    /* Priorities: queue them up while paused, then let them run. */
    tend_tasks_pause(tasks, "payments", true);
    static const struct {
        const char *payload;
        tend_priority priority;
    } batch[] = {
        {"{\"to\":\"newsletter\"}", TEND_PRIORITY_BACKGROUND}, {"{\"to\":\"shop\"}", TEND_PRIORITY_NORMAL},
        {"{\"to\":\"refund\"}", TEND_PRIORITY_CRITICAL},       {"{\"to\":\"report\"}", TEND_PRIORITY_LOW},
        {"{\"to\":\"payroll\"}", TEND_PRIORITY_HIGH},
    };
    for (size_t i = 0; i < sizeof(batch) / sizeof(batch[0]); i++) {
        tend_task_options o;
        tend_task_options_init(&o);
        o.priority = batch[i].priority;
        if ((r = tend_tasks_submit(tasks, "payments", batch[i].payload, &o, NULL)) < 0)
            return fail("submit", r);
    }
    /* Wait until the five are queued (submission is asynchronous). */
    tend_queue_stats qs = {0};
    for (int i = 0; i < 1000 && qs.depth < 5; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if ((r = tend_tasks_queue_stats(tasks, "payments", &qs)) < 0)
            return fail("stats", r);
    }
    printf("queued: critical %llu, high %llu, normal %llu, low %llu, background %llu\n",
           (unsigned long long)qs.depth_by_priority[0], (unsigned long long)qs.depth_by_priority[1],
           (unsigned long long)qs.depth_by_priority[2], (unsigned long long)qs.depth_by_priority[3],
           (unsigned long long)qs.depth_by_priority[4]);
    tend_tasks_pause(tasks, "payments", false);
    if ((r = tend_tasks_wait_idle(tasks, 30000)) < 0)
        return fail("wait", r);
    printf("ran in order: %s\n", g.order);
    bool order_ok = strcmp(g.order, "{\"to\":\"refund\"}, {\"to\":\"payroll\"}, {\"to\":\"shop\"}, "
                                     "{\"to\":\"report\"}, {\"to\":\"newsletter\"}") == 0;

    /* Retries: flaky succeeds on its third attempt. */
    char flaky[TEND_TASK_ID_SIZE], broken[TEND_TASK_ID_SIZE];
    if ((r = tend_tasks_submit(tasks, "payments", "{\"to\":\"flaky\"}", NULL, flaky)) < 0 ||
        (r = tend_tasks_submit(tasks, "payments", "{\"to\":\"broken\"}", NULL, broken)) < 0)
        return fail("submit", r);
    if ((r = tend_tasks_wait_idle(tasks, 30000)) < 0)
        return fail("wait", r);
    tend_task_info info;
    if ((r = tend_tasks_get(tasks, flaky, &info)) < 0)
        return fail("get", r);
    printf("flaky: %s after %d attempts\n", tend_task_state_to_string(info.state), info.attempts);
    bool retry_ok = info.state == TEND_TASK_SUCCEEDED && info.attempts == 3;

    /* The dead-letter list. */
    tend_task_info *dead;
    int n = tend_tasks_list_dead(tasks, "payments", 100, &dead);
    if (n < 0)
        return fail("list dead", n);
    for (int i = 0; i < n; i++)
        printf("dead letter %s: %d attempts, last error: %s\n", dead[i].id, dead[i].attempts, dead[i].last_error);
    bool dead_ok = n == 1 && strcmp(dead[0].id, broken) == 0;
    free(dead);

    /* Fix the gateway and requeue the dead letters; then purge finds none. */
    atomic_store(&g.broken, false);
    int requeued = tend_tasks_requeue_dead(tasks, "payments");
    if (requeued < 0)
        return fail("requeue", requeued);
    if ((r = tend_tasks_wait_idle(tasks, 30000)) < 0)
        return fail("wait", r);
    if ((r = tend_tasks_get(tasks, broken, &info)) < 0)
        return fail("get", r);
    printf("requeued %d; broken is now %s\n", requeued, tend_task_state_to_string(info.state));
    int purged = tend_tasks_purge_dead(tasks, "payments");
    bool requeue_ok = requeued == 1 && info.state == TEND_TASK_SUCCEEDED && purged == 0;

    if ((r = tend_tasks_queue_stats(tasks, "payments", &qs)) < 0)
        return fail("stats", r);
    printf("payments: %llu succeeded, %llu failed attempts, %llu dead, breaker %s, %.2f ms per attempt\n",
           (unsigned long long)qs.succeeded_total, (unsigned long long)qs.failed_total,
           (unsigned long long)qs.dead_total, tend_breaker_state_to_string(qs.breaker), qs.average_ms);

    r = tend_runtime_shutdown(rt, 5000);
    tend_runtime_free(rt);
    if (r < 0)
        return fail("shutdown", r);
    if (!order_ok || !retry_ok || !dead_ok || !requeue_ok) {
        fprintf(stderr, "task-manager example: unexpected results (order %d retry %d dead %d requeue %d)\n",
                order_ok, retry_ok, dead_ok, requeue_ok);
        return 1;
    }
    return 0;
}
