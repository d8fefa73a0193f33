/* test-service.c - the service lifecycle table and exit decisions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "service.h"

static void test_happy_path(void **state) {
    assert_int_equal(service_transition(SVC_STOPPED, EV_WAIT), SVC_PENDING);
    assert_int_equal(service_transition(SVC_PENDING, EV_START), SVC_STARTING);
    assert_int_equal(service_transition(SVC_STARTING, EV_STAGES_DONE), SVC_READY);
    assert_int_equal(service_transition(SVC_READY, EV_STOP), SVC_STOPPING);
    assert_int_equal(service_transition(SVC_STOPPING, EV_STOPPED), SVC_STOPPED);
}

static void test_failures_and_restarts(void **state) {
    assert_int_equal(service_transition(SVC_STARTING, EV_STAGE_FAILED), SVC_STOPPING);
    assert_int_equal(service_transition(SVC_STOPPING, EV_EXIT_FAILED), SVC_FAILED);
    assert_int_equal(service_transition(SVC_STARTING, EV_SPAWN_FAILED), SVC_FAILED);
    assert_int_equal(service_transition(SVC_READY, EV_EXIT_RESTART), SVC_BACKOFF);
    assert_int_equal(service_transition(SVC_BACKOFF, EV_BACKOFF_DONE), SVC_STARTING);
    assert_int_equal(service_transition(SVC_READY, EV_RESTART), SVC_STOPPING);
    assert_int_equal(service_transition(SVC_STOPPING, EV_EXIT_RESTART), SVC_BACKOFF);
    assert_int_equal(service_transition(SVC_READY, EV_READY_LOST), SVC_UNREADY);
    assert_int_equal(service_transition(SVC_UNREADY, EV_READY_BACK), SVC_READY);
    assert_int_equal(service_transition(SVC_STARTING, EV_EXIT_COMPLETED), SVC_COMPLETED);
    assert_int_equal(service_transition(SVC_PENDING, EV_BLOCK), SVC_BLOCKED);
    assert_int_equal(service_transition(SVC_BLOCKED, EV_START), SVC_STARTING);
    /* The circuit stays open until a manual start. */
    assert_int_equal(service_transition(SVC_FAILED, EV_BACKOFF_DONE), -1);
    assert_int_equal(service_transition(SVC_FAILED, EV_START), SVC_STARTING);
}

static void test_ignored(void **state) {
    assert_int_equal(service_transition(SVC_STOPPED, EV_STOP), -1);
    assert_int_equal(service_transition(SVC_READY, EV_START), -1);
    assert_int_equal(service_transition(SVC_STOPPING, EV_RESTART), -1);
    assert_int_equal(service_transition(SVC_COMPLETED, EV_READY_LOST), -1);
    assert_int_equal(service_transition(_SVC_STATE_MAX, EV_START), -1);
    assert_int_equal(service_transition(SVC_READY, _EV_MAX), -1);
}

static void test_every_state_can_stop(void **state) {
    /* Shutdown must be able to leave every state that holds a process or
     * a pending start. */
    service_state s[] = {SVC_PENDING, SVC_BLOCKED, SVC_STARTING, SVC_READY, SVC_UNREADY, SVC_BACKOFF};
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        int n = service_transition(s[i], EV_STOP);
        assert_true(n == SVC_STOPPED || n == SVC_STOPPING);
    }
}

static void test_exit_event(void **state) {
    tend_service_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.restart.policy = TEND_RESTART_ON_FAILURE;
    assert_int_equal(service_exit_event(&spec, false, false, false, true), EV_EXIT_RESTART);
    assert_int_equal(service_exit_event(&spec, false, false, false, false), EV_EXIT_FAILED);
    assert_int_equal(service_exit_event(&spec, true, false, false, true), EV_EXIT_DONE);
    spec.restart.policy = TEND_RESTART_ALWAYS;
    assert_int_equal(service_exit_event(&spec, true, false, false, true), EV_EXIT_RESTART);
    spec.restart.policy = TEND_RESTART_NO;
    assert_int_equal(service_exit_event(&spec, false, false, false, true), EV_EXIT_FAILED);
    assert_int_equal(service_exit_event(&spec, true, false, false, true), EV_EXIT_DONE);
    /* Stopping wins over the policy; a requested restart wins over stopping. */
    assert_int_equal(service_exit_event(&spec, false, true, false, true), EV_STOPPED);
    assert_int_equal(service_exit_event(&spec, false, true, true, true), EV_EXIT_RESTART);
    assert_int_equal(service_exit_event(&spec, false, true, true, false), EV_EXIT_FAILED);
    spec.oneshot = true;
    assert_int_equal(service_exit_event(&spec, true, false, false, true), EV_EXIT_COMPLETED);
    assert_int_equal(service_exit_event(&spec, false, false, false, true), EV_EXIT_FAILED);
}

static void test_names(void **state) {
    assert_string_equal(service_state_name(SVC_READY), "ready");
    assert_string_equal(service_state_name(SVC_BACKOFF), "backoff");
    assert_string_equal(service_event_name(EV_STAGE_FAILED), "stage_failed");
    assert_string_equal(restart_reason_name(REASON_WATCHDOG), "watchdog");
    assert_string_equal(service_health_name(HEALTH_DEGRADED), "degraded");
    for (int s = 0; s < _SVC_STATE_MAX; s++)
        assert_non_null(service_state_name((service_state)s));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path), cmocka_unit_test(test_failures_and_restarts),
        cmocka_unit_test(test_ignored), cmocka_unit_test(test_every_state_can_stop),
        cmocka_unit_test(test_exit_event), cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
