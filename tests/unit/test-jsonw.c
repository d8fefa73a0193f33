/*
 * test-jsonw.c - jsonw writes, byte for byte, what jansson's
 * json_dumps(JSON_COMPACT) writes for the same values, and sanitizes a
 * string as the API's api_json_textn() does (cut at a NUL, '?' for each
 * byte outside a well-formed UTF-8 sequence).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "utf8.h"

/* What the API did before jsonw: api_json_textn() into json_dumps(). */
static char *jansson_text(const char *s, size_t n) {
    char *copy = malloc(n + 1);
    assert_non_null(copy);
    memcpy(copy, s, n);
    copy[n] = '\0';
    utf8_sanitize(copy);
    json_t *a = json_array();
    json_array_append_new(a, json_string_nocheck(copy));
    free(copy);
    char *out = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    /* "[...]" without the brackets */
    size_t len = strlen(out);
    memmove(out, out + 1, len - 2);
    out[len - 2] = '\0';
    return out;
}

static void check(const char *s, size_t n) {
    strbuf b;
    strbuf_init(&b, 1 << 20);
    jsonw_stringn(&b, s, n);
    assert_int_equal(b.error, 0);
    char *want = jansson_text(s, n);
    assert_string_equal(b.data, want);
    free(want);
    strbuf_free(&b);
}

static void test_plain_and_escapes(void **state) {
    check("", 0);
    check("w1s00", 5);
    check("say \"hi\" C:\\dir /x", 18);
    check("\b\f\n\r\t\x01\x1f\x7f", 8);
    check("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 13);
}

static void test_invalid_utf8_and_nul(void **state) {
    check("\xff", 1);
    check("a\xc3", 2);                 /* a sequence cut short */
    check("\xe0\x80\xaf", 3);          /* overlong */
    check("\xed\xa0\x80", 3);          /* a surrogate */
    check("\xf4\x90\x80\x80", 4);      /* above U+10FFFF */
    check("ab\0cd", 5);                /* the rest after a NUL is dropped */
}

static void test_random_bytes(void **state) {
    srand(7);
    char s[300];
    for (int it = 0; it < 20000; it++) {
        size_t n = (size_t)(rand() % (int)sizeof(s));
        for (size_t i = 0; i < n; i++) {
            int r = rand() % 8;
            s[i] = (char)(r == 0 ? rand() % 256 : r == 1 ? rand() % 32 : r == 2 ? 0xc0 + rand() % 64
                          : r == 3 ? 0x80 + rand() % 64 : 'a' + rand() % 26);
            if (s[i] == 0)
                s[i] = 'z';
        }
        check(s, n);
    }
}

static void test_object(void **state) {
    strbuf b;
    strbuf_init(&b, 4096);
    jsonw_open(&b);
    jsonw_key(&b, "service");
    jsonw_string(&b, "web");
    jsonw_key(&b, "reason");
    jsonw_string(&b, NULL);
    jsonw_key(&b, "pid");
    jsonw_int(&b, 4242);
    jsonw_key(&b, "min");
    jsonw_int(&b, INT64_MIN);
    jsonw_key(&b, "none");
    jsonw_null(&b);
    jsonw_close(&b);
    assert_int_equal(b.error, 0);
    json_t *o = json_pack("{s:s, s:n, s:I, s:I, s:n}", "service", "web", "reason", "pid", (json_int_t)4242, "min",
                          (json_int_t)INT64_MIN, "none");
    char *want = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(b.data, want);
    free(want);
    json_decref(o);
    strbuf_free(&b);
}

static void test_limit_is_sticky(void **state) {
    strbuf b;
    strbuf_init(&b, 8);
    jsonw_string(&b, "a long string");
    jsonw_int(&b, 1);
    assert_int_equal(b.error, -E2BIG);
    strbuf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_escapes),
        cmocka_unit_test(test_invalid_utf8_and_nul),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_object),
        cmocka_unit_test(test_limit_is_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
