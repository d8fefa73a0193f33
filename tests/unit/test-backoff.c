/* test-backoff.c - exponential backoff with jitter, the restart window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void test_doubling_and_cap(void **state) {
    assert_int_equal(backoff_delay_ms(1000, 60000, 0, 1, 0.5), 1000);
    assert_int_equal(backoff_delay_ms(1000, 60000, 0, 2, 0.5), 2000);
    assert_int_equal(backoff_delay_ms(1000, 60000, 0, 3, 0.5), 4000);
    assert_int_equal(backoff_delay_ms(1000, 60000, 0, 6, 0.5), 32000);
    assert_int_equal(backoff_delay_ms(1000, 60000, 0, 7, 0.5), 60000);
    assert_int_equal(backoff_delay_ms(1000, 60000, 0, 1000, 0.5), 60000);
    assert_int_equal(backoff_delay_ms(1000, 60000, 0, 0, 0.5), 1000); /* attempt 0 = 1 */
}

static void test_jitter_bounds(void **state) {
    /* +-20%: u=0 gives -20%, u->1 gives +20%, u=0.5 is exact. */
    assert_int_equal(backoff_delay_ms(1000, 60000, 0.2, 1, 0.0), 800);
    assert_int_equal(backoff_delay_ms(1000, 60000, 0.2, 1, 0.5), 1000);
    int64_t hi = backoff_delay_ms(1000, 60000, 0.2, 1, 0.9999999);
    assert_true(hi >= 1199 && hi <= 1200);
    for (int i = 0; i < 1000; i++) {
        double u = i / 1000.0;
        int64_t d = backoff_delay_ms(500, 60000, 0.2, 3, u);
        assert_true(d >= 1600 && d <= 2400);
    }
    /* Out-of-range inputs are clamped, never negative or overflowing. */
    assert_true(backoff_delay_ms(1000, 60000, 5.0, 1, 0.0) >= 0);
    assert_int_equal(backoff_delay_ms(-5, -5, 0, 1, 0.5), 0);
    assert_int_equal(backoff_delay_ms(INT64_MAX / 4, INT64_MAX / 4, 0, 200, 0.5), INT64_MAX / 4);
}

static void test_window(void **state) {
    restart_window w;
    assert_int_equal(restart_window_init(&w, 3), 0);
    /* max 3 restarts within 10 s. */
    assert_true(restart_window_allow(&w, 0, 10000, 3));
    assert_true(restart_window_allow(&w, 1000, 10000, 3));
    assert_true(restart_window_allow(&w, 2000, 10000, 3));
    assert_false(restart_window_allow(&w, 3000, 10000, 3)); /* 4th within 10s: circuit opens */
    assert_int_equal(restart_window_count(&w, 3000, 10000), 3);
    /* The first one ages out at t=10000. */
    assert_true(restart_window_allow(&w, 10000, 10000, 3));
    assert_false(restart_window_allow(&w, 10001, 10000, 3));
    restart_window_reset(&w);
    assert_int_equal(restart_window_count(&w, 10001, 10000), 0);
    assert_true(restart_window_allow(&w, 10002, 10000, 3));
    restart_window_free(&w);
}

static void test_window_zero_attempts(void **state) {
    restart_window w;
    assert_int_equal(restart_window_init(&w, 0), 0);
    assert_false(restart_window_allow(&w, 0, 10000, 0));
    restart_window_free(&w);
    /* A max_attempts above the ring's size is capped, never overrun. */
    assert_int_equal(restart_window_init(&w, 100), 0);
    for (int i = 0; i < 100; i++)
        assert_true(restart_window_allow(&w, i, 1000000, 1000));
    assert_false(restart_window_allow(&w, 100, 1000000, 1000));
    restart_window_free(&w);
    /* The largest accepted max_attempts works. */
    assert_int_equal(restart_window_init(&w, RESTART_WINDOW_MAX), 0);
    for (int i = 0; i < RESTART_WINDOW_MAX; i++)
        assert_true(restart_window_allow(&w, i, 1000000, RESTART_WINDOW_MAX));
    assert_false(restart_window_allow(&w, RESTART_WINDOW_MAX, 1000000, RESTART_WINDOW_MAX));
    restart_window_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubling_and_cap), cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_window), cmocka_unit_test(test_window_zero_attempts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
