/*
 * test-libtend-health.c - the public health monitor (tend/health.h):
 * hierarchical status with critical and non-critical checks, checks run
 * in parallel on threads of their own, timeouts and hung checks, the JSON
 * form, runs from several threads at once, and misuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tend.h>
#include <time.h>

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct probe {
    int result;
    int sleep_ms;
    const char *msg;
    atomic_int calls;
} probe;

static int probe_fn(void *data, char *msg, size_t size) {
    probe *p = data;
    atomic_fetch_add(&p->calls, 1);
    if (p->sleep_ms)
        sleep_ms(p->sleep_ms);
    if (p->msg)
        snprintf(msg, size, "%s", p->msg);
    return p->result;
}

static tend_runtime *new_rt(int64_t interval_ms) {
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    o.health_interval_ms = interval_ms;
    o.health_timeout_ms = 2000;
    tend_runtime *rt;
    assert_int_equal(tend_runtime_new(&o, &rt), 0);
    return rt;
}

static void add_check(tend_health *h, const char *name, probe *p, bool critical, int64_t timeout_ms) {
    tend_health_check_spec s;
    tend_health_check_spec_init(&s);
    s.name = name;
    s.fn = probe_fn;
    s.data = p;
    s.critical = critical;
    s.timeout_ms = timeout_ms;
    assert_int_equal(tend_health_add_check(h, &s), 0);
}

static tend_health_status status_of(const tend_health_report *r, const char *name) {
    tend_health_entry e;
    assert_int_equal(tend_health_report_find(r, name, &e), 0);
    return e.status;
}

static void test_hierarchy(void **state) {
    tend_runtime *rt = new_rt(0);
    tend_health *h = tend_runtime_health(rt);
    probe ok = {.result = TEND_HEALTH_HEALTHY}, bad = {.result = -ECONNREFUSED},
          slowish = {.result = TEND_HEALTH_DEGRADED, .msg = "replica lag 3s"};
    add_check(h, "storage/db", &ok, true, 0);
    add_check(h, "storage/cache", &bad, false, 0);
    add_check(h, "storage/replica", &slowish, false, 0);
    add_check(h, "api", &ok, true, 0);

    tend_health_report *r;
    assert_int_equal(tend_health_last(h, &r), 0); /* nothing ran yet */
    assert_int_equal(tend_health_report_status(r), TEND_HEALTH_UNKNOWN);
    tend_health_report_free(r);

    assert_int_equal(tend_health_run(h, &r), 0);
    /* root, api, storage, storage/cache, storage/db, storage/replica */
    assert_int_equal(tend_health_report_count(r), 6);
    tend_health_entry e;
    assert_int_equal(tend_health_report_entry(r, 0, &e), 0);
    assert_string_equal(e.name, "");
    assert_true(e.group);
    assert_int_equal(tend_health_report_entry(r, 1, &e), 0);
    assert_string_equal(e.name, "api");
    assert_int_equal(tend_health_report_entry(r, 2, &e), 0);
    assert_string_equal(e.name, "storage");
    assert_true(e.group);
    assert_true(e.critical);
    assert_int_equal(tend_health_report_entry(r, 6, &e), -ERANGE);
    /* A non-critical unhealthy member degrades its group and the root. */
    assert_int_equal(status_of(r, "storage/cache"), TEND_HEALTH_UNHEALTHY);
    assert_int_equal(tend_health_report_find(r, "storage/cache", &e), 0);
    assert_string_equal(e.message, tend_strerror(-ECONNREFUSED));
    assert_int_equal(tend_health_report_find(r, "storage/replica", &e), 0);
    assert_string_equal(e.message, "replica lag 3s");
    assert_true(e.checked_at_ms > 0);
    assert_int_equal(status_of(r, "storage"), TEND_HEALTH_DEGRADED);
    assert_int_equal(tend_health_report_status(r), TEND_HEALTH_DEGRADED);
    tend_health_report_free(r);

    /* A critical unhealthy member makes it unhealthy, up to the root. */
    ok.result = -EIO;
    assert_int_equal(tend_health_run(h, &r), 0);
    assert_int_equal(status_of(r, "storage"), TEND_HEALTH_UNHEALTHY);
    assert_int_equal(tend_health_report_status(r), TEND_HEALTH_UNHEALTHY);
    tend_health_report_free(r);

    /* All well again. */
    ok.result = bad.result = slowish.result = TEND_HEALTH_HEALTHY;
    assert_int_equal(tend_health_run(h, &r), 0);
    assert_int_equal(tend_health_report_status(r), TEND_HEALTH_HEALTHY);
    char *json;
    assert_int_equal(tend_health_report_json(r, &json), 0);
    json_error_t jerr;
    json_t *j = json_loads(json, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "healthy");
    json_t *db = json_object_get(json_object_get(json_object_get(json_object_get(j, "checks"), "storage"), "checks"), "db");
    assert_non_null(db);
    assert_string_equal(json_string_value(json_object_get(db, "status")), "healthy");
    assert_true(json_is_true(json_object_get(db, "critical")));
    assert_true(json_is_integer(json_object_get(db, "duration_ms")));
    json_decref(j);
    free(json);
    tend_health_report_free(r);

    /* Removing a check removes its entry; the group goes with its last member. */
    assert_int_equal(tend_health_remove_check(h, "api"), 0);
    assert_int_equal(tend_health_remove_check(h, "api"), -ENOENT);
    assert_int_equal(tend_health_run(h, &r), 0);
    assert_int_equal(tend_health_report_find(r, "api", &e), -ENOENT);
    tend_health_report_free(r);
    tend_runtime_free(rt);
}

static void test_parallel_and_timeouts(void **state) {
    tend_runtime *rt = new_rt(0);
    tend_health *h = tend_runtime_health(rt);
    probe slow[6];
    char names[6][16];
    for (int i = 0; i < 6; i++) {
        slow[i] = (probe){.result = TEND_HEALTH_HEALTHY, .sleep_ms = 400};
        snprintf(names[i], sizeof(names[i]), "slow%d", i);
        add_check(h, names[i], &slow[i], true, 5000);
    }
    /* Static: its thread outlives this test (that is the point). */
    static probe hung = {.result = TEND_HEALTH_HEALTHY, .sleep_ms = 1500};
    add_check(h, "deps/hung", &hung, false, 100);
    int64_t t0 = mono_ms();
    tend_health_report *r;
    assert_int_equal(tend_health_run(h, &r), 0);
    int64_t took = mono_ms() - t0;
    /* In parallel: about 400 ms, not 6 x 400 ms (generous for a loaded machine). */
    assert_true(took < 2000);
    assert_int_equal(status_of(r, "slow3"), TEND_HEALTH_HEALTHY);
    tend_health_entry e;
    assert_int_equal(tend_health_report_find(r, "deps/hung", &e), 0);
    assert_int_equal(e.status, TEND_HEALTH_UNHEALTHY);
    assert_string_equal(e.message, "timed out after 100 ms");
    assert_int_equal(tend_health_report_status(r), TEND_HEALTH_DEGRADED);
    tend_health_report_free(r);

    /* The hung one is not started twice: it is still running. */
    for (int i = 0; i < 6; i++)
        slow[i].sleep_ms = 0;
    assert_int_equal(tend_health_run(h, &r), 0);
    assert_int_equal(tend_health_report_find(r, "deps/hung", &e), 0);
    assert_int_equal(e.status, TEND_HEALTH_UNHEALTHY);
    assert_non_null(strstr(e.message, "still running"));
    assert_int_equal(atomic_load(&hung.calls), 1);
    tend_health_report_free(r);
    /* Shut down while the hung check is still on its thread: its late
     * answer is dropped (the thread frees its own job). */
    assert_int_equal(tend_runtime_shutdown(rt, 1000), 0);
    tend_runtime_free(rt);
}

static void test_periodic(void **state) {
    tend_runtime *rt = new_rt(50);
    probe p = {.result = TEND_HEALTH_HEALTHY};
    add_check(tend_runtime_health(rt), "tick", &p, true, 0);
    int64_t until = mono_ms() + 5000;
    while (atomic_load(&p.calls) < 2 && mono_ms() < until)
        sleep_ms(10);
    assert_true(atomic_load(&p.calls) >= 2);
    tend_health_report *r;
    assert_int_equal(tend_health_last(tend_runtime_health(rt), &r), 0);
    assert_int_equal(tend_health_report_status(r), TEND_HEALTH_HEALTHY);
    tend_health_report_free(r);
    tend_runtime_free(rt);
}

static void test_bad_status_value(void **state) {
    tend_runtime *rt = new_rt(0);
    probe p = {.result = 42};
    add_check(tend_runtime_health(rt), "odd", &p, true, 0);
    tend_health_report *r;
    assert_int_equal(tend_health_run(tend_runtime_health(rt), &r), 0);
    tend_health_entry e;
    assert_int_equal(tend_health_report_find(r, "odd", &e), 0);
    assert_int_equal(e.status, TEND_HEALTH_UNHEALTHY);
    assert_non_null(strstr(e.message, "invalid status"));
    tend_health_report_free(r);
    tend_runtime_free(rt);
}

typedef struct runner {
    tend_health *h;
    int failures;
} runner;

static void *run_many(void *arg) {
    runner *u = arg;
    for (int i = 0; i < 20; i++) {
        tend_health_report *r;
        if (tend_health_run(u->h, &r) != 0 || tend_health_report_status(r) != TEND_HEALTH_HEALTHY)
            u->failures++;
        tend_health_report_free(r);
    }
    return NULL;
}

static void test_threads(void **state) {
    tend_runtime *rt = new_rt(0);
    tend_health *h = tend_runtime_health(rt);
    probe p[3] = {{.result = 0}, {.result = 0, .sleep_ms = 1}, {.result = 0}};
    add_check(h, "a", &p[0], true, 0);
    add_check(h, "b/c", &p[1], true, 0);
    add_check(h, "b/d", &p[2], false, 0);
    pthread_t t[4];
    runner u[4];
    for (int i = 0; i < 4; i++) {
        u[i] = (runner){h, 0};
        pthread_create(&t[i], NULL, run_many, &u[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(u[i].failures, 0);
    }
    tend_runtime_free(rt);
}

static void test_misuse(void **state) {
    tend_health_check_spec s;
    tend_health_check_spec_init(NULL);
    tend_health_check_spec_init(&s);
    assert_true(s.critical);
    assert_int_equal(tend_health_add_check(NULL, &s), -EINVAL);
    assert_int_equal(tend_health_remove_check(NULL, "x"), -EINVAL);
    tend_health_report *r = NULL;
    assert_int_equal(tend_health_run(NULL, &r), -EINVAL);
    assert_int_equal(tend_health_last(NULL, &r), -EINVAL);
    assert_int_equal(tend_health_report_status(NULL), TEND_HEALTH_UNKNOWN);
    assert_int_equal(tend_health_report_count(NULL), 0);
    tend_health_entry e;
    assert_int_equal(tend_health_report_entry(NULL, 0, &e), -EINVAL);
    assert_int_equal(tend_health_report_find(NULL, "", &e), -EINVAL);
    char *json;
    assert_int_equal(tend_health_report_json(NULL, &json), -EINVAL);
    assert_null(tend_health_report_free(NULL));
    assert_string_equal(tend_health_status_to_string(TEND_HEALTH_DEGRADED), "degraded");
    assert_null(tend_health_status_to_string((tend_health_status)9));

    tend_runtime *rt = new_rt(0);
    tend_health *h = tend_runtime_health(rt);
    assert_int_equal(tend_health_run(h, NULL), -EINVAL);
    assert_int_equal(tend_health_add_check(h, NULL), -EINVAL);
    assert_int_equal(tend_health_add_check(h, &s), -EINVAL); /* no name, no fn */
    probe p = {0};
    s.fn = probe_fn;
    s.data = &p;
    const char *bad[] = {"", "/a", "a/", "a//b", "a b", "a/b/c/d/e"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        s.name = bad[i];
        assert_int_equal(tend_health_add_check(h, &s), -EINVAL);
    }
    s.name = "a/b/c/d";
    assert_int_equal(tend_health_add_check(h, &s), 0);
    assert_int_equal(tend_health_add_check(h, &s), -EEXIST);
    s.name = "a/b"; /* would be a check and a group */
    assert_int_equal(tend_health_add_check(h, &s), -EINVAL);
    s.name = "x";
    s.timeout_ms = -5;
    assert_int_equal(tend_health_add_check(h, &s), -EINVAL);
    s.timeout_ms = 0;
    assert_int_equal(tend_health_add_check(h, &s), 0);
    s.name = "x/y"; /* inside a check */
    assert_int_equal(tend_health_add_check(h, &s), -EINVAL);
    assert_int_equal(tend_health_remove_check(h, NULL), -EINVAL);
    assert_int_equal(tend_health_run(h, &r), 0);
    assert_int_equal(tend_health_report_find(r, NULL, &e), -EINVAL);
    assert_int_equal(tend_health_report_find(r, "a/b/c", &e), 0);
    assert_true(e.group);
    assert_int_equal(tend_health_report_json(r, NULL), -EINVAL);
    tend_health_report_free(r);
    /* After shutdown: errors, not crashes. */
    assert_int_equal(tend_runtime_shutdown(rt, 1000), 0);
    s.name = "late";
    assert_int_equal(tend_health_add_check(h, &s), -ESHUTDOWN);
    assert_int_equal(tend_health_remove_check(h, "x"), -ESHUTDOWN);
    assert_int_equal(tend_health_run(h, &r), -ESHUTDOWN);
    assert_int_equal(tend_health_last(h, &r), -ESHUTDOWN);
    tend_runtime_free(rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hierarchy),
        cmocka_unit_test(test_parallel_and_timeouts),
        cmocka_unit_test(test_periodic),
        cmocka_unit_test(test_bad_status_value),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
