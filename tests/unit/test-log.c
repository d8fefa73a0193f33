/*
 * test-log.c - the logger's line discipline: one line per event in both
 * formats, whatever the message quotes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs log_msg with stdout sent to a pipe; the bytes written. */
static void capture(char *buf, size_t len, int level, const char *service, const char *msg) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(p[1], STDOUT_FILENO), STDOUT_FILENO);
    log_msg(level, service, "%s", msg);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(p[1]);
    ssize_t n = read(p[0], buf, len - 1);
    close(p[0]);
    assert_true(n > 0);
    buf[n] = 0;
}

static size_t count(const char *s, char c) {
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_text_one_line(void **state) {
    char out[8192];
    log_setup(LOG_FORMAT_TEXT, LOG_INFO, false);
    capture(out, sizeof(out), LOG_WARNING, "jobs", "task 01J failed: line one\nline two\r\t\x1b[31mred");
    assert_int_equal(count(out, '\n'), 1);
    assert_true(out[strlen(out) - 1] == '\n');
    assert_non_null(strstr(out, " warn  jobs: task 01J failed: line one\\nline two\\r\\t\\x1b[31mred\n"));
    /* Plain text, quotes and backslashes are left as they are. */
    capture(out, sizeof(out), LOG_INFO, NULL, "say \"hi\" C:\\dir");
    assert_non_null(strstr(out, " -: say \"hi\" C:\\dir\n"));
}

static void test_json_one_line(void **state) {
    char out[8192];
    log_setup(LOG_FORMAT_JSON, LOG_INFO, false);
    capture(out, sizeof(out), LOG_ERR, "api", "a\nb \"q\"");
    assert_int_equal(count(out, '\n'), 1);
    assert_non_null(strstr(out, "\"level\":\"error\",\"service\":\"api\",\"msg\":\"a\\nb \\\"q\\\"\"}\n"));
    log_setup(LOG_FORMAT_TEXT, LOG_INFO, false);
}

static void test_long_message_cut_to_a_line(void **state) {
    char big[6000], out[8192];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    big[100] = '\n';
    log_setup(LOG_FORMAT_TEXT, LOG_INFO, false);
    capture(out, sizeof(out), LOG_INFO, "svc", big);
    assert_int_equal(count(out, '\n'), 1);
    assert_true(out[strlen(out) - 1] == '\n');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_one_line),
        cmocka_unit_test(test_json_one_line),
        cmocka_unit_test(test_long_message_cut_to_a_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
