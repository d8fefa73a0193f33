/*
 * test-libtend-tasks.c - the public task manager (tend/tasks.h) with the
 * memory store: priorities, retries, permanent failures, timeouts, the
 * dead-letter list (list, requeue, purge), the circuit breaker, batch
 * queues, statistics, submission from several threads, and misuse
 * (NULL, before start, after shutdown) answered with errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tend.h>
#include <time.h>

#define WAIT_MS 30000

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct rec {
    pthread_mutex_t lock;
    char order[256];
    atomic_int calls;
    atomic_int fail_first;    /* fail this many attempts, then succeed */
    atomic_int items;
    int mode;                 /* 0 record, 1 permanent, 2 wait for cancel, 3 batch */
} rec;

static int task_fn(tend_task_ctx *ctx, void *data) {
    rec *r = data;
    atomic_fetch_add(&r->calls, 1);
    if (r->mode == 1) {
        tend_task_set_error(ctx, "bad input");
        return TEND_TASK_PERMANENT;
    }
    if (r->mode == 2) {
        while (!tend_task_cancelled(ctx))
            sleep_ms(5);
        return -ETIMEDOUT;
    }
    if (r->mode == 3) {
        size_t n = tend_task_count(ctx);
        atomic_fetch_add(&r->items, (int)n);
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *p = tend_task_payload(ctx, i, &len);
            if (strcmp(p, "\"fail\"") == 0)
                tend_task_fail_item(ctx, i);
        }
        assert_int_equal(tend_task_fail_item(ctx, n), -ERANGE);
        return 0;
    }
    size_t len;
    const char *p = tend_task_payload(ctx, 0, &len);
    assert_non_null(p);
    assert_int_equal(strlen(p), len);
    assert_non_null(tend_task_id(ctx, 0));
    assert_null(tend_task_id(ctx, 1));
    assert_int_equal(tend_task_count(ctx), 1);
    assert_int_equal(tend_task_fail_item(ctx, 0), -EINVAL);
    pthread_mutex_lock(&r->lock);
    size_t o = strlen(r->order);
    snprintf(r->order + o, sizeof(r->order) - o, "%s%s", o ? " " : "", p);
    pthread_mutex_unlock(&r->lock);
    if (atomic_load(&r->fail_first) > 0) {
        atomic_fetch_sub(&r->fail_first, 1);
        tend_task_set_error(ctx, "attempt %d failed", tend_task_attempt(ctx, 0));
        return -EIO;
    }
    return 0;
}

typedef struct fixture {
    tend_runtime *rt;
    tend_tasks *tasks;
    rec r;
} fixture;

static tend_queue_options queue(const char *name, rec *r) {
    tend_queue_options q;
    tend_queue_options_init(&q);
    q.name = name;
    q.fn = task_fn;
    q.data = r;
    q.backoff_base_ms = 10;
    q.backoff_max_ms = 20;
    q.backoff_jitter = 0;
    return q;
}

static void setup(fixture *f, tend_queue_options *qs, size_t n) {
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    o.health_interval_ms = 0;
    assert_int_equal(tend_runtime_new(&o, &f->rt), 0);
    tend_tasks_options to;
    tend_tasks_options_init(&to);
    to.workers = 4;
    assert_int_equal(tend_tasks_new(f->rt, &to, &f->tasks), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(tend_tasks_add_queue(f->tasks, &qs[i]), 0);
    assert_int_equal(tend_tasks_submit(f->tasks, qs[0].name, "1", NULL, NULL), -EAGAIN);
    assert_int_equal(tend_runtime_start(f->rt), 0);
}

static void teardown(fixture *f) {
    assert_int_equal(tend_runtime_shutdown(f->rt, 5000), 0);
    tend_runtime_free(f->rt);
}

static void test_priorities(void **state) {
    fixture f = {.r = {.lock = PTHREAD_MUTEX_INITIALIZER}};
    tend_queue_options q = queue("work", &f.r);
    q.concurrency = 1;
    setup(&f, &q, 1);
    assert_int_equal(tend_tasks_pause(f.tasks, "work", true), 0);
    const struct {
        const char *payload;
        tend_priority p;
    } in[] = {{"\"low\"", TEND_PRIORITY_LOW}, {"\"normal\"", TEND_PRIORITY_NORMAL},
              {"\"background\"", TEND_PRIORITY_BACKGROUND}, {"\"critical\"", TEND_PRIORITY_CRITICAL},
              {"\"high\"", TEND_PRIORITY_HIGH}};
    for (size_t i = 0; i < 5; i++) {
        tend_task_options o;
        tend_task_options_init(&o);
        o.priority = in[i].p;
        char id[TEND_TASK_ID_SIZE];
        assert_int_equal(tend_tasks_submit(f.tasks, "work", in[i].payload, &o, id), 0);
        assert_int_equal(strlen(id), TEND_TASK_ID_SIZE - 1);
    }
    /* Wait until all five are stored (queued) before resuming. */
    tend_queue_stats qs;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(tend_tasks_queue_stats(f.tasks, "work", &qs), 0);
        if (qs.depth == 5)
            break;
        sleep_ms(5);
    }
    assert_int_equal(qs.depth, 5);
    assert_int_equal(qs.depth_by_priority[TEND_PRIORITY_CRITICAL], 1);
    assert_true(qs.paused);
    assert_int_equal(tend_tasks_pause(f.tasks, "work", false), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    assert_string_equal(f.r.order, "\"critical\" \"high\" \"normal\" \"low\" \"background\"");
    tend_tasks_stats st;
    assert_int_equal(tend_tasks_get_stats(f.tasks, &st), 0);
    assert_int_equal(st.submitted, 5);
    assert_int_equal(st.depth, 0);
    assert_true(st.success_rate > 0.99);
    teardown(&f);
}

static void test_retries_and_dead_letters(void **state) {
    fixture f = {.r = {.lock = PTHREAD_MUTEX_INITIALIZER}};
    tend_queue_options q = queue("flaky", &f.r);
    q.max_attempts = 3;
    setup(&f, &q, 1);
    /* Two failures, then success on the third attempt. */
    atomic_store(&f.r.fail_first, 2);
    char id[TEND_TASK_ID_SIZE];
    assert_int_equal(tend_tasks_submit(f.tasks, "flaky", "{\"n\":1}", NULL, id), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    tend_task_info info;
    assert_int_equal(tend_tasks_get(f.tasks, id, &info), 0);
    assert_int_equal(info.state, TEND_TASK_SUCCEEDED);
    assert_int_equal(info.attempts, 3);
    assert_string_equal(info.queue, "flaky");

    /* Three failures: dead, in the dead-letter list with its last error. */
    atomic_store(&f.r.fail_first, 3);
    assert_int_equal(tend_tasks_submit(f.tasks, "flaky", "{\"n\":2}", NULL, id), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    assert_int_equal(tend_tasks_get(f.tasks, id, &info), 0);
    assert_int_equal(info.state, TEND_TASK_DEAD);
    assert_string_equal(info.last_error, "attempt 3 failed");
    tend_task_info *dead = NULL;
    assert_int_equal(tend_tasks_list_dead(f.tasks, "flaky", 10, &dead), 1);
    assert_string_equal(dead[0].id, id);
    free(dead);
    tend_queue_stats qs;
    assert_int_equal(tend_tasks_queue_stats(f.tasks, "flaky", &qs), 0);
    assert_int_equal(qs.dead, 1);
    assert_int_equal(qs.dead_total, 1);

    /* Requeued, it runs again (and now succeeds); purge then finds none. */
    assert_int_equal(tend_tasks_requeue_dead(f.tasks, "flaky"), 1);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    assert_int_equal(tend_tasks_get(f.tasks, id, &info), 0);
    assert_int_equal(info.state, TEND_TASK_SUCCEEDED);
    assert_int_equal(tend_tasks_purge_dead(f.tasks, "flaky"), 0);
    assert_int_equal(tend_tasks_list_dead(f.tasks, "flaky", 10, &dead), 0);
    assert_null(dead);
    teardown(&f);
}

static void test_permanent_timeout_cancel(void **state) {
    fixture f = {.r = {.lock = PTHREAD_MUTEX_INITIALIZER}};
    rec slow = {.lock = PTHREAD_MUTEX_INITIALIZER, .mode = 2}, perm = {.lock = PTHREAD_MUTEX_INITIALIZER, .mode = 1};
    tend_queue_options q[3] = {queue("perm", &perm), queue("slow", &slow), queue("idle", &f.r)};
    q[1].timeout_ms = 100;
    q[1].max_attempts = 1;
    setup(&f, q, 3);
    char id[TEND_TASK_ID_SIZE];
    assert_int_equal(tend_tasks_submit(f.tasks, "perm", "null", NULL, id), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    tend_task_info info;
    assert_int_equal(tend_tasks_get(f.tasks, id, &info), 0);
    assert_int_equal(info.state, TEND_TASK_DEAD);
    assert_int_equal(info.attempts, 1);
    assert_int_equal(atomic_load(&perm.calls), 1);

    assert_int_equal(tend_tasks_submit(f.tasks, "slow", NULL, NULL, id), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    assert_int_equal(tend_tasks_get(f.tasks, id, &info), 0);
    assert_int_equal(info.state, TEND_TASK_DEAD);
    assert_true(strlen(info.last_error) > 0);

    /* A delayed task can be cancelled before it runs, and retried. */
    tend_task_options o;
    tend_task_options_init(&o);
    o.delay_ms = 60000;
    assert_int_equal(tend_tasks_submit(f.tasks, "idle", "\"later\"", &o, id), 0);
    int r;
    for (int i = 0; i < 2000 && (r = tend_tasks_cancel(f.tasks, id)) == -ENOENT; i++)
        sleep_ms(5); /* until its INSERT is done */
    assert_int_equal(r, 0);
    assert_int_equal(tend_tasks_get(f.tasks, id, &info), 0);
    assert_int_equal(info.state, TEND_TASK_CANCELLED);
    assert_int_equal(tend_tasks_cancel(f.tasks, id), -EBUSY);
    assert_int_equal(tend_tasks_retry(f.tasks, id), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    assert_int_equal(tend_tasks_get(f.tasks, id, &info), 0);
    assert_int_equal(info.state, TEND_TASK_SUCCEEDED);
    teardown(&f);
}

static void test_breaker(void **state) {
    fixture f = {.r = {.lock = PTHREAD_MUTEX_INITIALIZER}};
    tend_queue_options q = queue("down", &f.r);
    q.max_attempts = 1;
    q.concurrency = 1;
    q.breaker_failure_threshold = 2;
    q.breaker_open_ms = 60000;
    setup(&f, &q, 1);
    atomic_store(&f.r.fail_first, 1000);
    for (int i = 0; i < 2; i++)
        assert_int_equal(tend_tasks_submit(f.tasks, "down", "1", NULL, NULL), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    tend_queue_stats qs;
    assert_int_equal(tend_tasks_queue_stats(f.tasks, "down", &qs), 0);
    assert_int_equal(qs.breaker, TEND_BREAKER_OPEN);
    assert_int_equal(qs.breaker_opened_total, 1);
    /* While open, new tasks wait instead of failing. */
    assert_int_equal(tend_tasks_submit(f.tasks, "down", "2", NULL, NULL), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, 300), -ETIMEDOUT);
    assert_int_equal(atomic_load(&f.r.calls), 2);
    assert_int_equal(tend_tasks_queue_stats(f.tasks, "down", &qs), 0);
    assert_int_equal(qs.depth, 1);
    teardown(&f);
}

static void test_batch(void **state) {
    fixture f = {.r = {.lock = PTHREAD_MUTEX_INITIALIZER, .mode = 3}};
    tend_queue_options q = queue("batch", &f.r);
    q.batch = true;
    q.batch_size = 5;
    q.batch_max_wait_ms = 50;
    q.max_attempts = 1;
    setup(&f, &q, 1);
    char fail_id[TEND_TASK_ID_SIZE];
    for (int i = 0; i < 11; i++)
        assert_int_equal(tend_tasks_submit(f.tasks, "batch", i == 4 ? "\"fail\"" : "{}", NULL, i == 4 ? fail_id : NULL), 0);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, WAIT_MS), 0);
    assert_int_equal(atomic_load(&f.r.items), 11);
    assert_true(atomic_load(&f.r.calls) >= 3); /* at most 5 a batch */
    tend_task_info info;
    assert_int_equal(tend_tasks_get(f.tasks, fail_id, &info), 0);
    assert_int_equal(info.state, TEND_TASK_DEAD);
    tend_queue_stats qs;
    assert_int_equal(tend_tasks_queue_stats(f.tasks, "batch", &qs), 0);
    assert_int_equal(qs.succeeded_total, 10);
    teardown(&f);
}

typedef struct submitter {
    tend_tasks *t;
    int n, errors;
} submitter;

static void *submit_many(void *arg) {
    submitter *s = arg;
    for (int i = 0; i < s->n; i++)
        if (tend_tasks_submit(s->t, "noop", NULL, NULL, NULL) != 0)
            s->errors++;
    return NULL;
}

static int noop(tend_task_ctx *ctx, void *data) { return 0; }

static void test_submit_from_threads(void **state) {
    tend_runtime *rt;
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    o.health_interval_ms = 0;
    assert_int_equal(tend_runtime_new(&o, &rt), 0);
    tend_tasks *t;
    assert_int_equal(tend_tasks_new(rt, NULL, &t), 0);
    tend_queue_options q;
    tend_queue_options_init(&q);
    q.name = "noop";
    q.fn = noop;
    q.concurrency = 8;
    assert_int_equal(tend_tasks_add_queue(t, &q), 0);
    assert_int_equal(tend_runtime_start(rt), 0);
    enum { THREADS = 4, EACH = 5000 };
    pthread_t th[THREADS];
    submitter s[THREADS];
    for (int i = 0; i < THREADS; i++) {
        s[i] = (submitter){t, EACH, 0};
        pthread_create(&th[i], NULL, submit_many, &s[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(s[i].errors, 0);
    }
    assert_int_equal(tend_tasks_wait_idle(t, 60000), 0);
    tend_queue_stats qs;
    assert_int_equal(tend_tasks_queue_stats(t, "noop", &qs), 0);
    assert_int_equal(qs.succeeded_total, THREADS * EACH);
    assert_int_equal(tend_runtime_shutdown(rt, 5000), 0);
    tend_runtime_free(rt);
}

/* With state_dir the tasks are in SQLite: a dead letter survives the runtime. */
static void test_sqlite_durable(void **state) {
    char dir[] = "/tmp/test-libtend-tasks-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char id[TEND_TASK_ID_SIZE];
    for (int round = 0; round < 2; round++) {
        rec r = {.lock = PTHREAD_MUTEX_INITIALIZER, .mode = 1};
        tend_runtime *rt;
        tend_runtime_options o;
        tend_runtime_options_init(&o);
        o.health_interval_ms = 0;
        assert_int_equal(tend_runtime_new(&o, &rt), 0);
        tend_tasks_options to;
        tend_tasks_options_init(&to);
        to.state_dir = dir;
        tend_tasks *t;
        assert_int_equal(tend_tasks_new(rt, &to, &t), 0);
        tend_queue_options q = queue("mail", &r);
        assert_int_equal(tend_tasks_add_queue(t, &q), 0);
        assert_int_equal(tend_runtime_start(rt), 0);
        if (round == 0) {
            assert_int_equal(tend_tasks_submit(t, "mail", "{\"to\":\"x\"}", NULL, id), 0);
            assert_int_equal(tend_tasks_wait_idle(t, WAIT_MS), 0);
        }
        tend_task_info info;
        assert_int_equal(tend_tasks_get(t, id, &info), 0);
        assert_int_equal(info.state, TEND_TASK_DEAD);
        assert_string_equal(info.last_error, "bad input");
        assert_int_equal(tend_runtime_shutdown(rt, 5000), 0);
        tend_runtime_free(rt);
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_misuse(void **state) {
    tend_tasks_options_init(NULL);
    tend_queue_options_init(NULL);
    tend_task_options_init(NULL);
    tend_tasks *t = NULL;
    assert_int_equal(tend_tasks_new(NULL, NULL, &t), -EINVAL);
    assert_int_equal(tend_tasks_add_queue(NULL, NULL), -EINVAL);
    assert_int_equal(tend_tasks_submit(NULL, "q", NULL, NULL, NULL), -EINVAL);
    tend_task_info info;
    assert_int_equal(tend_tasks_get(NULL, "x", &info), -EINVAL);
    assert_int_equal(tend_tasks_cancel(NULL, "x"), -EINVAL);
    assert_int_equal(tend_tasks_retry(NULL, "x"), -EINVAL);
    tend_task_info *list;
    assert_int_equal(tend_tasks_list_dead(NULL, "q", 1, &list), -EINVAL);
    assert_int_equal(tend_tasks_requeue_dead(NULL, "q"), -EINVAL);
    assert_int_equal(tend_tasks_purge_dead(NULL, "q"), -EINVAL);
    assert_int_equal(tend_tasks_pause(NULL, "q", true), -EINVAL);
    tend_queue_stats qs;
    tend_tasks_stats st;
    assert_int_equal(tend_tasks_queue_stats(NULL, "q", &qs), -EINVAL);
    assert_int_equal(tend_tasks_get_stats(NULL, &st), -EINVAL);
    assert_int_equal(tend_tasks_wait_idle(NULL, 0), -EINVAL);
    assert_null(tend_task_queue(NULL));
    assert_int_equal(tend_task_count(NULL), 0);
    assert_null(tend_task_payload(NULL, 0, NULL));
    assert_true(tend_task_cancelled(NULL));
    tend_task_set_error(NULL, "x");
    assert_string_equal(tend_task_state_to_string(TEND_TASK_DEAD), "dead");
    assert_null(tend_task_state_to_string((tend_task_state)9));
    assert_string_equal(tend_priority_to_string(TEND_PRIORITY_BACKGROUND), "background");
    assert_string_equal(tend_breaker_state_to_string(TEND_BREAKER_HALF_OPEN), "half-open");

    fixture f = {.r = {.lock = PTHREAD_MUTEX_INITIALIZER}};
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    assert_int_equal(tend_runtime_new(&o, &f.rt), 0);
    tend_tasks_options to;
    tend_tasks_options_init(&to);
    to.state_dir = "relative";
    assert_int_equal(tend_tasks_new(f.rt, &to, &t), -EINVAL);
    assert_int_equal(tend_tasks_new(f.rt, NULL, &f.tasks), 0);
    assert_int_equal(tend_tasks_new(f.rt, NULL, &t), -EEXIST); /* name "tasks" taken */
    tend_queue_options q = queue("q", &f.r);
    q.fn = NULL;
    assert_int_equal(tend_tasks_add_queue(f.tasks, &q), -EINVAL);
    q = queue("bad name", &f.r);
    assert_int_equal(tend_tasks_add_queue(f.tasks, &q), -EINVAL);
    q = queue("q", &f.r);
    q.backoff_jitter = 2;
    assert_int_equal(tend_tasks_add_queue(f.tasks, &q), -EINVAL);
    q.backoff_jitter = 0;
    assert_int_equal(tend_tasks_add_queue(f.tasks, &q), 0);
    assert_int_equal(tend_tasks_add_queue(f.tasks, &q), -EEXIST);
    /* Before start. */
    assert_int_equal(tend_tasks_submit(f.tasks, "q", "1", NULL, NULL), -EAGAIN);
    assert_int_equal(tend_tasks_get_stats(f.tasks, &st), -EAGAIN);
    assert_int_equal(tend_runtime_start(f.rt), 0);
    q.name = "late";
    assert_int_equal(tend_tasks_add_queue(f.tasks, &q), -EBUSY);
    assert_int_equal(tend_tasks_submit(f.tasks, NULL, "1", NULL, NULL), -EINVAL);
    assert_int_equal(tend_tasks_submit(f.tasks, "q", "{not json", NULL, NULL), -EINVAL);
    assert_int_equal(tend_tasks_submit(f.tasks, "nope", "1", NULL, NULL), -ENOENT);
    tend_task_options opt;
    tend_task_options_init(&opt);
    opt.priority = (tend_priority)9;
    assert_int_equal(tend_tasks_submit(f.tasks, "q", "1", &opt, NULL), -EINVAL);
    char *big = malloc(300 * 1024);
    memset(big, ' ', 300 * 1024 - 1);
    big[0] = '1';
    big[300 * 1024 - 1] = '\0';
    assert_int_equal(tend_tasks_submit(f.tasks, "q", big, NULL, NULL), -E2BIG);
    free(big);
    assert_int_equal(tend_tasks_get(f.tasks, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &info), -ENOENT);
    assert_int_equal(tend_tasks_get(f.tasks, "x", NULL), -EINVAL);
    assert_int_equal(tend_tasks_list_dead(f.tasks, "nope", 1, &list), -ENOENT);
    assert_int_equal(tend_tasks_list_dead(f.tasks, "q", 0, &list), -EINVAL);
    assert_int_equal(tend_tasks_requeue_dead(f.tasks, "nope"), -ENOENT);
    assert_int_equal(tend_tasks_pause(f.tasks, "nope", true), -ENOENT);
    assert_int_equal(tend_tasks_queue_stats(f.tasks, "nope", &qs), -ENOENT);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, -1), -EINVAL);
    /* After shutdown: errors, no crash. */
    assert_int_equal(tend_runtime_shutdown(f.rt, 5000), 0);
    assert_int_equal(tend_tasks_submit(f.tasks, "q", "1", NULL, NULL), -ESHUTDOWN);
    assert_int_equal(tend_tasks_get(f.tasks, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &info), -ESHUTDOWN);
    assert_int_equal(tend_tasks_get_stats(f.tasks, &st), -ESHUTDOWN);
    assert_int_equal(tend_tasks_wait_idle(f.tasks, 10), -ESHUTDOWN);
    tend_runtime_free(f.rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priorities),
        cmocka_unit_test(test_retries_and_dead_letters),
        cmocka_unit_test(test_permanent_timeout_cancel),
        cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_submit_from_threads),
        cmocka_unit_test(test_sqlite_durable),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
