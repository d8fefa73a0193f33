/*
 * test-parse.c - the value syntaxes of tend.yaml (src/base/parse.c):
 * durations, sizes, rates, integers, numbers, booleans, signals.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "macros.h"
#include "parse.h"

static int64_t duration(const char *s) {
    int64_t ms = -12345;
    if (parse_duration_ms(s, &ms) < 0)
        fail_msg("parse_duration_ms(\"%s\") failed", s);
    return ms;
}

static void test_duration(void **state) {
    (void)state;
    assert_int_equal(duration("250ms"), 250);
    assert_int_equal(duration("5s"), 5000);
    assert_int_equal(duration("2m"), 120000);
    assert_int_equal(duration("1h"), 3600000);
    assert_int_equal(duration("1d"), 86400000);
    assert_int_equal(duration("1.5"), 1500);
    assert_int_equal(duration("30"), 30000);
    assert_int_equal(duration("0"), 0);
    assert_int_equal(duration("0s"), 0);
    assert_int_equal(duration("1.5s"), 1500);
    assert_int_equal(duration(".5s"), 500);
    assert_int_equal(duration("1m30s"), 90000);
    assert_int_equal(duration("1h2m3s4ms"), 3723004);
    assert_int_equal(duration("7d"), 7 * 86400000LL);
}

static void test_duration_bad(void **state) {
    (void)state;
    static const char *const bad[] = {
        "5x", "-1s", "", "s", "ms", "5 s", " 5s", "5s ", "1m30", "1.s", "1..5s", "1e3s",
        "0x10s", "inf", "nan", "5sec", "5S", "+5s", "99999999999999999999d", "1.5.2",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        int64_t ms = 42;
        if (parse_duration_ms(bad[i], &ms) != -EINVAL)
            fail_msg("parse_duration_ms(\"%s\") accepted", bad[i]);
        assert_int_equal(ms, 42); /* untouched on failure */
    }
    int64_t ms;
    assert_int_equal(parse_duration_ms(NULL, &ms), -EINVAL);
}

static uint64_t size(const char *s) {
    uint64_t v = 12345;
    if (parse_size(s, &v) < 0)
        fail_msg("parse_size(\"%s\") failed", s);
    return v;
}

static void test_size(void **state) {
    (void)state;
    assert_int_equal(size("0"), 0);
    assert_int_equal(size("100"), 100);
    assert_int_equal(size("100B"), 100);
    assert_int_equal(size("512K"), 512 * 1024);
    assert_int_equal(size("512k"), 512 * 1024);
    assert_int_equal(size("1KB"), 1024);
    assert_int_equal(size("1KiB"), 1024);
    assert_int_equal(size("10M"), 10 * 1024 * 1024);
    assert_int_equal(size("1G"), 1024 * 1024 * 1024);
    assert_int_equal(size("2T"), 2ULL << 40);
    assert_int_equal(size("1.5K"), 1536);

    static const char *const bad[] = {
        "", "K", "-1K", "1X", "10M ", " 10M", "1BB", "1KK", "1e3", "0x10", "1.5.K",
        "99999999999T",
    };
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        uint64_t v = 7;
        if (parse_size(bad[i], &v) != -EINVAL)
            fail_msg("parse_size(\"%s\") accepted", bad[i]);
        assert_int_equal(v, 7);
    }
}

static void test_rate(void **state) {
    (void)state;
    double r = 0;
    assert_int_equal(parse_rate("50/s", &r), 0);
    assert_true(r == 50.0);
    assert_int_equal(parse_rate("600/m", &r), 0);
    assert_true(r == 10.0);
    assert_int_equal(parse_rate("3600/h", &r), 0);
    assert_true(r == 1.0);
    assert_int_equal(parse_rate("1.5/sec", &r), 0);
    assert_true(r == 1.5);
    assert_int_equal(parse_rate("30/min", &r), 0);
    assert_true(r == 0.5);

    static const char *const bad[] = {"50", "0/s", "50/x", "/s", "50/", "-1/s", "50/s ", ""};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        r = 3;
        if (parse_rate(bad[i], &r) != -EINVAL)
            fail_msg("parse_rate(\"%s\") accepted", bad[i]);
        assert_true(r == 3);
    }
}

static void test_int(void **state) {
    (void)state;
    long long v = 0;
    assert_int_equal(parse_int("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(parse_int("-5", -10, 10, &v), 0);
    assert_int_equal(v, -5);
    v = 9;
    assert_int_equal(parse_int("101", 0, 100, &v), -ERANGE);
    assert_int_equal(parse_int("0", 1, 100, &v), -ERANGE);
    assert_int_equal(v, 9);
    assert_int_equal(parse_int("", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int(" 4", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int("4 ", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int("4x", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int("1.0", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int("99999999999999999999", 0, 100, &v), -EINVAL);
    assert_int_equal(parse_int(NULL, 0, 100, &v), -EINVAL);
    assert_int_equal(v, 9);
}

static void test_double(void **state) {
    (void)state;
    double d = 0;
    assert_int_equal(parse_double("0.2", &d), 0);
    assert_true(d == 0.2);
    assert_int_equal(parse_double("1", &d), 0);
    assert_true(d == 1.0);
    d = 5;
    assert_int_equal(parse_double("x", &d), -EINVAL);
    assert_int_equal(parse_double("", &d), -EINVAL);
    assert_int_equal(parse_double(" 1", &d), -EINVAL);
    assert_int_equal(parse_double("1 ", &d), -EINVAL);
    assert_int_equal(parse_double("inf", &d), -EINVAL);
    assert_int_equal(parse_double("nan", &d), -EINVAL);
    assert_true(d == 5);
}

static void test_bool(void **state) {
    (void)state;
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on", "1"};
    static const char *const no[] = {"false", "False", "no", "off", "0"};
    int b;
    for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
        b = -1;
        assert_int_equal(parse_bool(yes[i], &b), 0);
        assert_int_equal(b, 1);
    }
    for (size_t i = 0; i < ELEMENTSOF(no); i++) {
        b = -1;
        assert_int_equal(parse_bool(no[i], &b), 0);
        assert_int_equal(b, 0);
    }
    b = -1;
    assert_int_equal(parse_bool("maybe", &b), -EINVAL);
    assert_int_equal(parse_bool("", &b), -EINVAL);
    assert_int_equal(parse_bool("2", &b), -EINVAL);
    assert_int_equal(parse_bool(NULL, &b), -EINVAL);
    assert_int_equal(b, -1);
}

static void test_signal(void **state) {
    (void)state;
    int sig = 0;
    assert_int_equal(parse_signal("TERM", &sig), 0);
    assert_int_equal(sig, SIGTERM);
    assert_int_equal(parse_signal("SIGINT", &sig), 0);
    assert_int_equal(sig, SIGINT);
    assert_int_equal(parse_signal("hup", &sig), 0);
    assert_int_equal(sig, SIGHUP);
    assert_int_equal(parse_signal("sigusr1", &sig), 0);
    assert_int_equal(sig, SIGUSR1);
    assert_int_equal(parse_signal("KILL", &sig), 0);
    assert_int_equal(sig, SIGKILL);
    assert_int_equal(parse_signal("9", &sig), 0);
    assert_int_equal(sig, 9);
    sig = 77;
    assert_int_equal(parse_signal("FOO", &sig), -EINVAL);
    assert_int_equal(parse_signal("SIG", &sig), -EINVAL);
    assert_int_equal(parse_signal("0", &sig), -EINVAL);
    assert_int_equal(parse_signal("65", &sig), -EINVAL);
    assert_int_equal(parse_signal("", &sig), -EINVAL);
    assert_int_equal(parse_signal(NULL, &sig), -EINVAL);
    assert_int_equal(sig, 77);

    assert_string_equal(signal_name(SIGTERM), "TERM");
    assert_string_equal(signal_name(SIGKILL), "KILL");
    assert_string_equal(signal_name(0), "?");
}

static void test_format_duration(void **state) {
    (void)state;
    char buf[32];
    assert_string_equal(format_duration(0, buf, sizeof(buf)), "0ms");
    assert_string_equal(format_duration(250, buf, sizeof(buf)), "250ms");
    assert_string_equal(format_duration(1500, buf, sizeof(buf)), "1.5s");
    assert_string_equal(format_duration(5000, buf, sizeof(buf)), "5s");
    assert_string_equal(format_duration(120000, buf, sizeof(buf)), "2m");
    assert_string_equal(format_duration(90000, buf, sizeof(buf)), "1.5m");
    assert_string_equal(format_duration(3600000, buf, sizeof(buf)), "1h");
    /* What it writes parses back. */
    static const int64_t values[] = {250, 1500, 5000, 120000, 3600000};
    for (size_t i = 0; i < ELEMENTSOF(values); i++) {
        int64_t ms;
        assert_int_equal(parse_duration_ms(format_duration(values[i], buf, sizeof(buf)), &ms), 0);
        assert_int_equal(ms, values[i]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_duration_bad),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_double),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_signal),
        cmocka_unit_test(test_format_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
