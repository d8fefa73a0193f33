/* test-breaker.c - the queue circuit breaker: every transition of its table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "breaker.h"

/* Opens b (threshold failures at now) and checks it did. */
static void trip_at(breaker *b, int64_t now) {
    for (unsigned i = 0; i < b->threshold; i++) {
        assert_int_equal(breaker_state(b, now), BREAKER_CLOSED);
        assert_true(breaker_allow(b, now));
        breaker_record(b, now, false);
    }
    assert_int_equal(breaker_state(b, now), BREAKER_OPEN);
}

static void test_init_and_metric_values(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 5, -1), -EINVAL);
    assert_int_equal(breaker_init(&b, 5, 60000), 0);
    assert_int_equal(breaker_state(&b, 0), BREAKER_CLOSED);
    assert_int_equal(b.opened_total, 0);
    assert_int_equal(breaker_retry_in_ms(&b, 0), 0);
    /* tend_circuit_breaker_state: 0 closed, 1 half-open, 2 open. */
    assert_int_equal(BREAKER_CLOSED, 0);
    assert_int_equal(BREAKER_HALF_OPEN, 1);
    assert_int_equal(BREAKER_OPEN, 2);
    assert_string_equal(breaker_state_to_string(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_to_string(BREAKER_HALF_OPEN), "half-open");
    assert_string_equal(breaker_state_to_string(BREAKER_OPEN), "open");
    assert_null(breaker_state_to_string((enum breaker_state)7));
}

static void test_disabled(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 0, 60000), 0);
    for (int i = 0; i < 1000; i++) {
        assert_true(breaker_allow(&b, i));
        breaker_record(&b, i, false);
    }
    assert_int_equal(breaker_state(&b, 1000), BREAKER_CLOSED);
    assert_int_equal(breaker_retry_in_ms(&b, 1000), 0);
    assert_int_equal(b.opened_total, 0);
}

/* CLOSED: only consecutive failures count; a success starts over. */
static void test_closed_counts_consecutive_failures(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 3, 60000), 0);
    breaker_record(&b, 0, false);
    breaker_record(&b, 1, false);
    breaker_record(&b, 2, true);
    assert_int_equal(b.failures, 0);
    breaker_record(&b, 3, false);
    breaker_record(&b, 4, false);
    assert_int_equal(breaker_state(&b, 4), BREAKER_CLOSED);
    assert_true(breaker_allow(&b, 4));
    /* CLOSED -> OPEN at the threshold. */
    breaker_record(&b, 5, false);
    assert_int_equal(breaker_state(&b, 5), BREAKER_OPEN);
    assert_int_equal(b.opened_total, 1);
    assert_int_equal(b.open_until_ms, 60005);
}

/* OPEN: tasks wait (allow is false) until open_for has passed. */
static void test_open_waits(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 2, 60000), 0);
    trip_at(&b, 1000);
    assert_false(breaker_allow(&b, 1000));
    assert_false(breaker_allow(&b, 60999));
    assert_int_equal(breaker_retry_in_ms(&b, 1000), 60000);
    assert_int_equal(breaker_retry_in_ms(&b, 60999), 1);
    assert_int_equal(breaker_state(&b, 60999), BREAKER_OPEN);
    /* Once open_for has passed the metric reads half-open before any allow. */
    assert_int_equal(breaker_state(&b, 61000), BREAKER_HALF_OPEN);
    assert_int_equal(breaker_retry_in_ms(&b, 61000), 0);
    /* A clock going back after that is still before open_until. */
    assert_int_equal(breaker_state(&b, 500), BREAKER_OPEN);
}

/* OPEN -> HALF_OPEN: the first allow is the trial, the rest wait for it. */
static void test_half_open_single_trial(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 2, 60000), 0);
    trip_at(&b, 0);
    assert_true(breaker_allow(&b, 60000));
    assert_int_equal(b.state, BREAKER_HALF_OPEN);
    assert_int_equal(breaker_state(&b, 60000), BREAKER_HALF_OPEN);
    for (int i = 0; i < 10; i++)
        assert_false(breaker_allow(&b, 60000 + i * 100000));
    assert_int_equal(breaker_retry_in_ms(&b, 60000), -1); /* wait for the report */
}

/* HALF_OPEN -> CLOSED on the trial's success. */
static void test_half_open_success_closes(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 2, 60000), 0);
    trip_at(&b, 0);
    assert_true(breaker_allow(&b, 70000));
    breaker_record(&b, 70500, true);
    assert_int_equal(breaker_state(&b, 70500), BREAKER_CLOSED);
    assert_int_equal(b.failures, 0);
    assert_true(breaker_allow(&b, 70500));
    assert_true(breaker_allow(&b, 70500));
    assert_int_equal(breaker_retry_in_ms(&b, 70500), 0);
    assert_int_equal(b.opened_total, 1);
    /* The count starts over: threshold more failures to open again. */
    breaker_record(&b, 70600, false);
    assert_int_equal(breaker_state(&b, 70600), BREAKER_CLOSED);
    breaker_record(&b, 70700, false);
    assert_int_equal(breaker_state(&b, 70700), BREAKER_OPEN);
    assert_int_equal(b.opened_total, 2);
}

/* HALF_OPEN -> OPEN on the trial's failure, for another open_for from then. */
static void test_half_open_failure_reopens(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 3, 60000), 0);
    trip_at(&b, 0);
    assert_true(breaker_allow(&b, 60000));
    breaker_record(&b, 65000, false); /* one failure is enough in half-open */
    assert_int_equal(breaker_state(&b, 65000), BREAKER_OPEN);
    assert_int_equal(b.opened_total, 2);
    assert_int_equal(b.open_until_ms, 125000);
    assert_false(breaker_allow(&b, 124999));
    assert_int_equal(breaker_retry_in_ms(&b, 65000), 60000);
    /* A second failure arriving now (another task of the half-open period
     * or one dispatched before the first opening) is ignored: no re-count,
     * no extension. */
    breaker_record(&b, 70000, false);
    assert_int_equal(b.opened_total, 2);
    assert_int_equal(b.open_until_ms, 125000);
    /* Fail the trial again and again: each one re-opens. */
    for (int i = 0; i < 3; i++) {
        int64_t t = 125000 + i * 60000;
        assert_true(breaker_allow(&b, t));
        assert_false(breaker_allow(&b, t));
        breaker_record(&b, t, false);
        assert_int_equal(breaker_state(&b, t), BREAKER_OPEN);
    }
    assert_int_equal(b.opened_total, 5);
    /* Then a trial succeeds. */
    assert_true(breaker_allow(&b, 305000));
    breaker_record(&b, 305001, true);
    assert_int_equal(breaker_state(&b, 305001), BREAKER_CLOSED);
}

/*
 * A success recorded while OPEN comes from a task dispatched before the
 * circuit opened: it neither closes the circuit nor shortens open_for.
 */
static void test_success_while_open_is_ignored(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 2, 60000), 0);
    /* Three tasks in flight; two fail and open the circuit. */
    assert_true(breaker_allow(&b, 0));
    assert_true(breaker_allow(&b, 0));
    assert_true(breaker_allow(&b, 0));
    breaker_record(&b, 10, false);
    breaker_record(&b, 20, false);
    assert_int_equal(breaker_state(&b, 20), BREAKER_OPEN);
    /* The third one succeeds. */
    breaker_record(&b, 30, true);
    assert_int_equal(breaker_state(&b, 30), BREAKER_OPEN);
    assert_false(breaker_allow(&b, 30));
    assert_int_equal(b.open_until_ms, 60020);
    assert_int_equal(b.failures, 0);
    /* It still goes half-open on time, and a trial is still needed. */
    assert_true(breaker_allow(&b, 60020));
    assert_int_equal(breaker_state(&b, 60020), BREAKER_HALF_OPEN);
}

/* A released trial (cancelled, interrupted) lets the next task be the trial. */
static void test_release(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 1, 1000), 0);
    breaker_release(&b); /* no-op while closed */
    assert_int_equal(breaker_state(&b, 0), BREAKER_CLOSED);
    trip_at(&b, 0);
    breaker_release(&b); /* no-op while open */
    assert_false(breaker_allow(&b, 999));
    assert_true(breaker_allow(&b, 1000));
    assert_false(breaker_allow(&b, 1000));
    breaker_release(&b);
    assert_int_equal(breaker_state(&b, 1000), BREAKER_HALF_OPEN);
    assert_int_equal(breaker_retry_in_ms(&b, 1000), 0);
    assert_true(breaker_allow(&b, 1001));
    assert_false(breaker_allow(&b, 1001));
    breaker_record(&b, 1002, true);
    assert_int_equal(breaker_state(&b, 1002), BREAKER_CLOSED);
}

/* The runbook's reset: from any state to CLOSED, opened_total kept. */
static void test_reset(void **state) {
    (void)state;
    breaker b;
    assert_int_equal(breaker_init(&b, 2, 60000), 0);
    /* From OPEN. */
    trip_at(&b, 0);
    breaker_reset(&b);
    assert_int_equal(breaker_state(&b, 1), BREAKER_CLOSED);
    assert_true(breaker_allow(&b, 1));
    assert_int_equal(b.opened_total, 1);
    /* From CLOSED with failures counted: the count is forgotten. */
    breaker_record(&b, 2, false);
    breaker_reset(&b);
    breaker_record(&b, 3, false);
    assert_int_equal(breaker_state(&b, 3), BREAKER_CLOSED);
    /* From HALF_OPEN: the trial's later report counts as a closed-state result. */
    breaker_record(&b, 4, false);
    assert_int_equal(breaker_state(&b, 4), BREAKER_OPEN);
    assert_true(breaker_allow(&b, 60004));
    breaker_reset(&b);
    assert_int_equal(breaker_state(&b, 60004), BREAKER_CLOSED);
    assert_true(breaker_allow(&b, 60004));
    breaker_record(&b, 60005, false);
    assert_int_equal(breaker_state(&b, 60005), BREAKER_CLOSED);
    assert_int_equal(b.opened_total, 2);
}

static void test_edge_values(void **state) {
    (void)state;
    breaker b;
    /* open_for 0: the trial may go at once. */
    assert_int_equal(breaker_init(&b, 1, 0), 0);
    breaker_record(&b, 100, false);
    assert_int_equal(breaker_state(&b, 100), BREAKER_HALF_OPEN);
    assert_true(breaker_allow(&b, 100));
    assert_false(breaker_allow(&b, 100));
    /* Near the end of time: open_until saturates. */
    assert_int_equal(breaker_init(&b, 1, INT64_MAX), 0);
    breaker_record(&b, 1000, false);
    assert_int_equal(b.open_until_ms, INT64_MAX);
    assert_false(breaker_allow(&b, INT64_MAX - 1));
    assert_int_equal(breaker_retry_in_ms(&b, 1000), INT64_MAX - 1000);
    assert_int_equal(breaker_retry_in_ms(&b, -1000), INT64_MAX);
    assert_int_equal(breaker_retry_in_ms(&b, INT64_MIN), INT64_MAX);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_metric_values),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_closed_counts_consecutive_failures),
        cmocka_unit_test(test_open_waits),
        cmocka_unit_test(test_half_open_single_trial),
        cmocka_unit_test(test_half_open_success_closes),
        cmocka_unit_test(test_half_open_failure_reopens),
        cmocka_unit_test(test_success_while_open_is_ignored),
        cmocka_unit_test(test_release),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_edge_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
