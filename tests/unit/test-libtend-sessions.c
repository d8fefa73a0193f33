/*
 * test-libtend-sessions.c - the public session store (tend/sessions.h):
 * set/get/touch/delete, TTL expiry, JSON and size checks, calls from
 * several threads, and calls after shutdown answered with -ESHUTDOWN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tend.h>
#include <time.h>

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static tend_runtime *new_rt(tend_sessions **ret, int64_t ttl_ms) {
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    o.health_interval_ms = 0;
    tend_runtime *rt;
    assert_int_equal(tend_runtime_new(&o, &rt), 0);
    tend_sessions_options so;
    tend_sessions_options_init(&so);
    so.ttl_ms = ttl_ms;
    so.cleanup_interval_ms = 20;
    so.max_value = 1024;
    assert_int_equal(tend_sessions_new(rt, &so, ret), 0);
    assert_int_equal(tend_runtime_start(rt), 0);
    return rt;
}

static void test_basics(void **state) {
    tend_sessions *s;
    tend_runtime *rt = new_rt(&s, 3600000);
    assert_int_equal(tend_sessions_set(s, "user:1", "{\"name\":\"ada\"}", 0), 1);
    assert_int_equal(tend_sessions_set(s, "user:1", "{\"name\":\"grace\"}", 0), 0);
    char *v;
    assert_int_equal(tend_sessions_get(s, "user:1", &v), 0);
    assert_string_equal(v, "{\"name\":\"grace\"}");
    free(v);
    assert_int_equal(tend_sessions_touch(s, "user:1", 1000), 0);
    assert_int_equal(tend_sessions_touch(s, "user:2", 1000), -ENOENT);
    assert_int_equal(tend_sessions_set(s, "n", "42", 0), 1);
    assert_int_equal(tend_sessions_set(s, "s", "\"text\"", 0), 1);
    tend_sessions_stats st;
    assert_int_equal(tend_sessions_get_stats(s, &st), 0);
    assert_int_equal(st.count, 3);
    assert_int_equal(tend_sessions_delete(s, "n"), 0);
    assert_int_equal(tend_sessions_delete(s, "n"), -ENOENT);
    assert_int_equal(tend_sessions_get(s, "n", &v), -ENOENT);
    tend_runtime_free(rt);
}

static void test_expiry(void **state) {
    tend_sessions *s;
    tend_runtime *rt = new_rt(&s, 50);
    assert_int_equal(tend_sessions_set(s, "a", "1", 0), 1);
    assert_int_equal(tend_sessions_set(s, "b", "2", 60000), 1);
    sleep_ms(150);
    char *v;
    assert_int_equal(tend_sessions_get(s, "a", &v), -ENOENT);
    assert_int_equal(tend_sessions_get(s, "b", &v), 0);
    free(v);
    /* The periodic sweep (20 ms here) reclaims what expired. */
    assert_int_equal(tend_sessions_set(s, "c", "3", 30), 1);
    tend_sessions_stats st;
    for (int i = 0; i < 400; i++) {
        sleep_ms(10);
        tend_sessions_get_stats(s, &st);
        if (st.count == 1)
            break;
    }
    assert_int_equal(st.count, 1);
    assert_true(st.expired_total >= 2);
    assert_int_equal(tend_sessions_sweep(s), 0);
    tend_runtime_free(rt);
}

typedef struct worker {
    tend_sessions *s;
    int id, errors;
} worker;

static void *hammer(void *arg) {
    worker *w = arg;
    char key[32], val[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "k%d-%d", w->id, i % 50);
        snprintf(val, sizeof(val), "%d", i);
        if (tend_sessions_set(w->s, key, val, 0) < 0)
            w->errors++;
        char *v;
        if (tend_sessions_get(w->s, key, &v) == 0) {
            if (strcmp(v, val) != 0)
                w->errors++;
            free(v);
        } else
            w->errors++;
    }
    return NULL;
}

static void test_threads(void **state) {
    tend_sessions *s;
    tend_runtime *rt = new_rt(&s, 3600000);
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){s, i, 0};
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    tend_sessions_stats st;
    tend_sessions_get_stats(s, &st);
    assert_int_equal(st.count, 200);
    tend_runtime_free(rt);
}

static void test_misuse(void **state) {
    tend_sessions_options_init(NULL);
    tend_sessions *s = NULL;
    assert_int_equal(tend_sessions_new(NULL, NULL, &s), -EINVAL);
    assert_int_equal(tend_sessions_set(NULL, "a", "1", 0), -EINVAL);
    char *v;
    assert_int_equal(tend_sessions_get(NULL, "a", &v), -EINVAL);
    assert_int_equal(tend_sessions_touch(NULL, "a", 0), -EINVAL);
    assert_int_equal(tend_sessions_delete(NULL, "a"), -EINVAL);
    assert_int_equal(tend_sessions_get_stats(NULL, NULL), -EINVAL);
    assert_int_equal(tend_sessions_sweep(NULL), -EINVAL);

    tend_runtime *rt = new_rt(&s, 3600000);
    tend_sessions *other;
    assert_int_equal(tend_sessions_new(rt, NULL, &other), -EBUSY); /* started */
    assert_int_equal(tend_sessions_set(s, "", "1", 0), -EINVAL);
    assert_int_equal(tend_sessions_set(s, NULL, "1", 0), -EINVAL);
    assert_int_equal(tend_sessions_set(s, "a", NULL, 0), -EINVAL);
    assert_int_equal(tend_sessions_set(s, "a", "{oops", 0), -EINVAL);
    assert_int_equal(tend_sessions_set(s, "a", "1", -1), -EINVAL);
    char key[300];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    assert_int_equal(tend_sessions_set(s, key, "1", 0), -ENAMETOOLONG);
    char big[2048];
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '1';
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(tend_sessions_set(s, "a", big, 0), -E2BIG);
    assert_int_equal(tend_sessions_get(s, "a", NULL), -EINVAL);
    assert_int_equal(tend_runtime_shutdown(rt, 1000), 0);
    assert_int_equal(tend_sessions_set(s, "a", "1", 0), -ESHUTDOWN);
    assert_int_equal(tend_sessions_get(s, "a", &v), -ESHUTDOWN);
    assert_int_equal(tend_sessions_sweep(s), -ESHUTDOWN);
    tend_runtime_free(rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
