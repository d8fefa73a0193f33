/* test-strmap.c - the name map: put, get, duplicates, growth past the
 * expected size, the empty map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "strmap.h"

static void test_put_get(void **state) {
    (void)state;
    strmap m;
    assert_int_equal(strmap_init(&m, 2), 0);
    assert_int_equal(strmap_put(&m, "api", 0, NULL), 1);
    assert_int_equal(strmap_put(&m, "db", 1, NULL), 1);
    assert_int_equal(strmap_put(&m, "", 2, NULL), 1);
    assert_int_equal(strmap_get(&m, "api"), 0);
    assert_int_equal(strmap_get(&m, "db"), 1);
    assert_int_equal(strmap_get(&m, ""), 2);
    assert_int_equal(strmap_get(&m, "ap"), -1);
    assert_int_equal(strmap_get(&m, "dbx"), -1);
    assert_int_equal(m.n, 3);
    strmap_done(&m);
    assert_null(m.slots);
}

static void test_duplicate_keeps_first(void **state) {
    (void)state;
    strmap m;
    assert_int_equal(strmap_init(&m, 4), 0);
    char key[] = "web";
    assert_int_equal(strmap_put(&m, "web", 7, NULL), 1);
    size_t existing = 99;
    /* A different pointer to an equal string is the same key. */
    assert_int_equal(strmap_put(&m, key, 8, &existing), 0);
    assert_int_equal(existing, 7);
    assert_int_equal(strmap_put(&m, "web", 9, NULL), 0);
    assert_int_equal(strmap_get(&m, "web"), 7);
    assert_int_equal(m.n, 1);
    strmap_done(&m);
}

/* Many more names than expected: the map grows and finds every one. */
static void test_growth(void **state) {
    (void)state;
    enum { N = 5000 };
    static char names[N][16];
    strmap m;
    assert_int_equal(strmap_init(&m, 1), 0);
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "svc-%zu", i);
        assert_int_equal(strmap_put(&m, names[i], i, NULL), 1);
    }
    assert_int_equal(m.n, N);
    assert_true(m.cap >= 2 * N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(strmap_get(&m, names[i]), (long)i);
    assert_int_equal(strmap_get(&m, "svc-5000"), -1);
    strmap_done(&m);
}

/* Zeroed (never initialised) and done maps are empty, not a crash. */
static void test_empty(void **state) {
    (void)state;
    strmap m = {0};
    assert_int_equal(strmap_get(&m, "x"), -1);
    assert_int_equal(strmap_put(&m, "x", 3, NULL), 1);
    assert_int_equal(strmap_get(&m, "x"), 3);
    strmap_done(&m);
    assert_int_equal(strmap_get(&m, "x"), -1);
    strmap_done(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get), cmocka_unit_test(test_duplicate_keeps_first),
        cmocka_unit_test(test_growth), cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
