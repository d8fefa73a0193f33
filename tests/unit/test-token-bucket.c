/* test-token-bucket.c - the rate limiter: defaults, refill, waits, no drift. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "token-bucket.h"

static void test_init(void **state) {
    (void)state;
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, -1, 0, 0), -EINVAL);
    assert_int_equal(token_bucket_init(&tb, NAN, 0, 0), -EINVAL);
    assert_int_equal(token_bucket_init(&tb, INFINITY, 0, 0), -EINVAL);
    assert_int_equal(token_bucket_init(&tb, 10, -1, 0), -EINVAL);
    assert_int_equal(token_bucket_init(&tb, 10, NAN, 0), -EINVAL);
    assert_int_equal(token_bucket_init(&tb, 10, INFINITY, 0), -EINVAL);

    /* Default burst: one second's worth, at least 1 token. */
    assert_int_equal(token_bucket_init(&tb, 50, 0, 0), 0); /* 50/s */
    assert_true(tb.burst == 50);
    assert_int_equal(token_bucket_init(&tb, 600.0 / 60, 0, 0), 0); /* 600/m */
    assert_true(tb.burst == 10);
    assert_int_equal(token_bucket_init(&tb, 7.0 / 60, 0, 0), 0); /* 7/m */
    assert_true(tb.burst == 1);
    assert_int_equal(token_bucket_init(&tb, 50, 5, 0), 0);
    assert_true(tb.burst == 5);
    /* It starts full. */
    assert_true(token_bucket_available(&tb, 0) == 5);
}

static void test_rate_per_second(void **state) {
    (void)state;
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, 50, 0, 1000), 0);
    for (int i = 0; i < 50; i++)
        assert_true(token_bucket_take(&tb, 1000, 1));
    assert_false(token_bucket_take(&tb, 1000, 1));
    /* One token every 20 ms. */
    assert_int_equal(token_bucket_wait_ms(&tb, 1000, 1), 20);
    assert_int_equal(token_bucket_wait_ms(&tb, 1005, 1), 15);
    assert_int_equal(token_bucket_wait_ms(&tb, 1000, 3), 60);
    assert_false(token_bucket_take(&tb, 1019, 1));
    assert_true(token_bucket_take(&tb, 1020, 1));
    assert_false(token_bucket_take(&tb, 1020, 1));
    /* Refill stops at the burst. */
    assert_true(token_bucket_available(&tb, 1000000) == 50);
    assert_true(token_bucket_take(&tb, 1000000, 50));
    assert_false(token_bucket_take(&tb, 1000000, 1));
    /* n 0 always succeeds and waits for nothing. */
    assert_true(token_bucket_take(&tb, 1000000, 0));
    assert_int_equal(token_bucket_wait_ms(&tb, 1000000, 0), 0);
}

static void test_rate_per_minute(void **state) {
    (void)state;
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, 600.0 / 60, 0, 0), 0);
    assert_true(token_bucket_take(&tb, 0, 10));
    assert_int_equal(token_bucket_wait_ms(&tb, 0, 1), 100);
    assert_int_equal(token_bucket_wait_ms(&tb, 0, 10), 1000);
    assert_true(token_bucket_take(&tb, 100, 1));
    /* A fractional rate: 7/m is a token every 8571.43 ms.  With room for
     * more than one token, the 0.57 ms left over is kept: the next one is
     * due at ceil(2 * 60000 / 7) = 17143, not 8572 + 8572. */
    assert_int_equal(token_bucket_init(&tb, 7.0 / 60, 2, 0), 0);
    assert_true(token_bucket_take(&tb, 0, 2));
    assert_int_equal(token_bucket_wait_ms(&tb, 0, 1), 8572);
    assert_false(token_bucket_take(&tb, 8571, 1));
    assert_true(token_bucket_take(&tb, 8572, 1));
    assert_int_equal(token_bucket_wait_ms(&tb, 8572, 1), 17143 - 8572);
    /* With the default burst of 1 the bucket is full at 8571.43 and stops
     * filling, as a token bucket does: a take at 8572 starts from 0. */
    assert_int_equal(token_bucket_init(&tb, 7.0 / 60, 0, 0), 0);
    assert_true(token_bucket_take(&tb, 0, 1));
    assert_true(token_bucket_take(&tb, 8572, 1));
    assert_int_equal(token_bucket_wait_ms(&tb, 8572, 1), 8572);
}

static void test_unlimited(void **state) {
    (void)state;
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, 0, 0, 0), 0);
    for (int i = 0; i < 1000; i++)
        assert_true(token_bucket_take(&tb, 0, 1000000));
    assert_int_equal(token_bucket_wait_ms(&tb, 0, 1000000), 0);
    assert_true(isinf(token_bucket_available(&tb, 0)));
}

static void test_refused_take_changes_nothing(void **state) {
    (void)state;
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, 10, 0, 0), 0);
    assert_true(token_bucket_take(&tb, 0, 10));
    token_bucket before = tb;
    assert_false(token_bucket_take(&tb, 50, 1));
    assert_memory_equal(&before, &tb, sizeof(tb));
    assert_int_equal(token_bucket_wait_ms(&tb, 50, 1), 50);
    assert_memory_equal(&before, &tb, sizeof(tb));
}

static void test_time_going_backwards(void **state) {
    (void)state;
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, 50, 0, 1000), 0);
    assert_true(token_bucket_take(&tb, 1000, 50));
    /* An earlier now is no time passed: no refill, and no double count later. */
    assert_false(token_bucket_take(&tb, 500, 1));
    assert_true(token_bucket_available(&tb, 500) == 0);
    assert_int_equal(token_bucket_wait_ms(&tb, 500, 1), 520);
    assert_false(token_bucket_take(&tb, 1000, 1));
    assert_false(token_bucket_take(&tb, 1019, 1));
    assert_true(token_bucket_take(&tb, 1020, 1));
    /* A take at a past time is charged without moving time back. */
    assert_true(token_bucket_take(&tb, 2020, 50));
    assert_false(token_bucket_take(&tb, 2000, 1));
    assert_int_equal(tb.last_ms, 2020);
}

static void test_oversize_take(void **state) {
    (void)state;
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, 5, 0, 0), 0); /* burst 5 */
    assert_true(token_bucket_take(&tb, 0, 10));  /* granted when full... */
    assert_true(token_bucket_available(&tb, 0) == -5); /* ...leaving a debt */
    assert_int_equal(token_bucket_wait_ms(&tb, 0, 1), 1200);
    assert_int_equal(token_bucket_wait_ms(&tb, 0, 10), 2000); /* needs a full bucket */
    assert_false(token_bucket_take(&tb, 1999, 10));
    assert_true(token_bucket_take(&tb, 2000, 10));
    /* Over a long run the rate still holds: 10 tokens per 2 s. */
    int64_t now = 2000;
    for (int i = 0; i < 1000; i++) {
        now += token_bucket_wait_ms(&tb, now, 10);
        assert_true(token_bucket_take(&tb, now, 10));
    }
    assert_int_equal(now, 2000 + 1000 * 2000);
}

/*
 * A timer armed for wait_ms() finds the tokens there, exactly: never
 * early (a take one ms sooner fails), never late.
 */
static void test_wait_is_exact(void **state) {
    (void)state;
    srand(7);
    static const double rates[] = {50, 10, 7.0 / 60, 3, 1000, 0.5, 123.456, 1.0 / 3600};
    for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
        token_bucket tb;
        assert_int_equal(token_bucket_init(&tb, rates[r], 0, 12345), 0);
        int64_t now = 12345;
        for (int i = 0; i < 2000; i++) {
            unsigned n = 1 + (unsigned)(rand() % 3);
            int64_t w = token_bucket_wait_ms(&tb, now, n);
            assert_true(w >= 0);
            if (w > 0) {
                token_bucket copy = tb;
                assert_false(token_bucket_take(&copy, now + w - 1, n));
                assert_false(token_bucket_take(&copy, now, n));
            }
            now += w;
            assert_true(token_bucket_take(&tb, now, n));
            now += rand() % 30;
        }
    }
}

/*
 * No drift: with a burst of 2 taken at 0 and then one token taken as soon
 * as allowed, the k-th lands at exactly ceil(k * 1000 / rate) ms,
 * computed here in integers (a rate of num/den per second), over up to a
 * million takes.  (The bucket never fills, so the cap never discards.)
 */
static void check_schedule(int64_t num, int64_t den, int64_t takes) {
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, (double)num / (double)den, 2, 0), 0);
    assert_true(token_bucket_take(&tb, 0, 2));
    int64_t now = 0;
    for (int64_t k = 1; k <= takes; k++) {
        now += token_bucket_wait_ms(&tb, now, 1);
        int64_t num_ms = k * 1000 * den;
        int64_t expect = (num_ms + num - 1) / num;
        if (now != expect)
            fail_msg("rate %lld/%lld: take %lld at %lld, expected %lld", (long long)num,
                     (long long)den, (long long)k, (long long)now, (long long)expect);
        assert_true(token_bucket_take(&tb, now, 1));
    }
}

static void test_no_drift_event_driven(void **state) {
    (void)state;
    check_schedule(50, 1, 1000000); /* 50/s */
    check_schedule(3, 1, 1000000);  /* 3/s: 333.33 ms */
    check_schedule(7, 60, 300000);  /* 7/m: 8571.43 ms, ~30 days */
    check_schedule(1000, 7, 1000000);
    check_schedule(600, 60, 1000000); /* 600/m */
}

/*
 * No drift when polled: with a burst never reached, everything refilled is
 * taken, so by time T exactly burst + floor(rate * T) tokens went out.
 */
static void test_no_drift_polled(void **state) {
    (void)state;
    srand(11);
    token_bucket tb;
    assert_int_equal(token_bucket_init(&tb, 3, 10, 0), 0);
    int64_t now = 0, taken = 0;
    while (now < 200000000) { /* ~2.3 days in 1..50 ms steps */
        while (token_bucket_take(&tb, now, 1))
            taken++;
        now += 1 + rand() % 50;
    }
    now -= 1; /* the last poll was before the last step */
    while (token_bucket_take(&tb, now, 1))
        taken++;
    assert_int_equal(taken, 10 + (now * 3) / 1000);
}

static void test_extreme_values(void **state) {
    (void)state;
    token_bucket tb;
    /* A very low rate saturates instead of overflowing. */
    assert_int_equal(token_bucket_init(&tb, 1e-300, 1, 0), 0);
    assert_true(token_bucket_take(&tb, 0, 1));
    assert_int_equal(token_bucket_wait_ms(&tb, 0, 1), INT64_MAX);
    assert_int_equal(token_bucket_wait_ms(&tb, 1000, 1), INT64_MAX - 1000);
    assert_int_equal(token_bucket_wait_ms(&tb, -1000, 1), INT64_MAX);
    /* Times far apart, negative ones included. */
    assert_int_equal(token_bucket_init(&tb, 10, 0, INT64_MIN), 0);
    assert_true(token_bucket_take(&tb, INT64_MIN, 10));
    assert_true(token_bucket_take(&tb, INT64_MAX, 10));
    assert_false(token_bucket_take(&tb, INT64_MAX, 1));
    assert_int_equal(token_bucket_wait_ms(&tb, INT64_MAX - 1000, 1), 1000); /* as late as it gets */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_rate_per_second),
        cmocka_unit_test(test_rate_per_minute),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_refused_take_changes_nothing),
        cmocka_unit_test(test_time_going_backwards),
        cmocka_unit_test(test_oversize_take),
        cmocka_unit_test(test_wait_is_exact),
        cmocka_unit_test(test_no_drift_event_driven),
        cmocka_unit_test(test_no_drift_polled),
        cmocka_unit_test(test_extreme_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
