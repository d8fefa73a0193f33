/* test-output.c - log files: created ahead by the idle-priority thread
 * (logfile_precreate), then appended to as before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"

static void path_in(char *out, size_t n, const char *dir, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

static void test_precreate_creates_missing_files_only(void **state) {
    char dir[] = "/tmp/tend-test-output-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[256], b[256], c[256];
    path_in(a, sizeof(a), dir, "a.log");
    path_in(b, sizeof(b), dir, "b.log");
    path_in(c, sizeof(c), dir, "no-such-dir/c.log");
    /* b exists with content: it must be kept, not truncated. */
    FILE *f = fopen(b, "w");
    assert_non_null(f);
    fputs("kept\n", f);
    fclose(f);
    char *paths[] = {a, b, c};
    logfile_precreator *p = logfile_precreate(paths, 3);
    assert_non_null(p);
    logfile_precreate_stop(p); /* joins: the thread has done what it will do */
    struct stat st;
    /* stop may have come before the thread reached a file; then the first
     * line creates it, as below. */
    mode_t mask = umask(0);
    umask(mask);
    if (stat(a, &st) == 0) {
        assert_int_equal(st.st_size, 0);
        assert_int_equal(st.st_mode & 0777, 0640 & ~mask);
    }
    assert_int_equal(stat(b, &st), 0);
    assert_int_equal(st.st_size, 5);
    assert_int_not_equal(stat(c, &st), 0); /* a failed create is no error */

    logfile lf;
    assert_int_equal(logfile_open(&lf, a, 0, 0), 0);
    assert_int_equal(logfile_write_line(&lf, "hello", 5), 0);
    logfile_close(&lf);
    assert_int_equal(stat(a, &st), 0);
    assert_int_equal(st.st_size, 6);
    unlink(a);
    unlink(b);
    rmdir(dir);
}

static void test_precreate_waits_for_every_file(void **state) {
    char dir[] = "/tmp/tend-test-output-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char names[8][256];
    char *paths[8];
    for (int i = 0; i < 8; i++) {
        char n[16];
        snprintf(n, sizeof(n), "s%d.log", i);
        path_in(names[i], sizeof(names[i]), dir, n);
        paths[i] = names[i];
    }
    logfile_precreator *p = logfile_precreate(paths, 8);
    assert_non_null(p);
    /* The thread runs at idle priority: wait for the last file by sleeping
     * this thread (the test's only way to give it the CPU). */
    struct stat st;
    for (int k = 0; k < 2000 && stat(names[7], &st) != 0; k++)
        usleep(1000);
    logfile_precreate_stop(p);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(stat(names[i], &st), 0);
        assert_int_equal(st.st_size, 0);
        unlink(names[i]);
    }
    rmdir(dir);
}

static void test_precreate_nothing(void **state) {
    assert_null(logfile_precreate(NULL, 0));
    logfile_precreate_stop(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precreate_creates_missing_files_only),
        cmocka_unit_test(test_precreate_waits_for_every_file),
        cmocka_unit_test(test_precreate_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
