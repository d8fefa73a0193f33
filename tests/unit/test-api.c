/*
 * test-api.c - pieces of the HTTP API that need no server: making text
 * valid UTF-8 for JSON (src/base/utf8.c, api_json_text), the routing
 * decision (404 / 405 / params), and the GPU memory figure of /health
 * (resources.c: null without NVML; with a fake NVML library, the sum over
 * devices of the supervised process groups' memory).
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "api.h"
#include "resources.h"
#include "utf8.h"

static void sanitized(const char *in, const char *want, size_t want_replaced) {
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", in);
    size_t r = utf8_sanitize(buf);
    if (strcmp(buf, want) != 0 || r != want_replaced)
        fail_msg("utf8_sanitize(%s): got \"%s\" (%zu replaced), want \"%s\" (%zu)", in, buf, r, want, want_replaced);
    assert_true(utf8_valid(buf, strlen(buf)));
}

static void test_utf8_valid_text_unchanged(void **state) {
    (void)state;
    sanitized("", "", 0);
    sanitized("plain ascii /api/v1", "plain ascii /api/v1", 0);
    sanitized("caf\xc3\xa9", "caf\xc3\xa9", 0);                       /* U+00E9 */
    sanitized("\xe2\x82\xac", "\xe2\x82\xac", 0);                     /* U+20AC */
    sanitized("\xed\x9f\xbf", "\xed\x9f\xbf", 0);                     /* U+D7FF, below the surrogates */
    sanitized("\xee\x80\x80", "\xee\x80\x80", 0);                     /* U+E000, above them */
    sanitized("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", 0);             /* U+1F600 */
    sanitized("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf", 0);             /* U+10FFFF, the last */
    sanitized("\xc2\x80", "\xc2\x80", 0);                             /* U+0080, shortest 2-byte */
    sanitized("\xe0\xa0\x80", "\xe0\xa0\x80", 0);                     /* U+0800, shortest 3-byte */
    sanitized("\xf0\x90\x80\x80", "\xf0\x90\x80\x80", 0);             /* U+10000, shortest 4-byte */
}

static void test_utf8_invalid_bytes_replaced(void **state) {
    (void)state;
    sanitized("\xff", "?", 1);
    sanitized("caf\xe9", "caf?", 1);                                  /* Latin-1 */
    sanitized("\x80\xbf", "??", 2);                                   /* lone continuations */
    sanitized("\xc0\x80", "??", 2);                                   /* overlong NUL */
    sanitized("\xc1\xbf", "??", 2);                                   /* overlong 2-byte */
    sanitized("\xe0\x80\x80", "???", 3);                              /* overlong 3-byte */
    sanitized("\xf0\x80\x80\x80", "????", 4);                         /* overlong 4-byte */
    sanitized("\xed\xa0\x80", "???", 3);                              /* U+D800, a surrogate */
    sanitized("\xed\xbf\xbf", "???", 3);                              /* U+DFFF */
    sanitized("\xf4\x90\x80\x80", "????", 4);                         /* U+110000 */
    sanitized("\xf7\xb7\xb7\xb7", "????", 4);                         /* the fuzz regression */
    sanitized("\xf8\x88\x80\x80\x80", "?????", 5);                    /* 5-byte forms */
    sanitized("\xe2\x82", "??", 2);                                   /* truncated at the end */
    sanitized("\xe2\x82x", "??x", 2);                                 /* truncated in the middle */
    sanitized("a\xc3\xa9\xff\xc3\xa9z", "a\xc3\xa9?\xc3\xa9z", 1);    /* valid text around kept */
    assert_false(utf8_valid("\xed\xa0\x80", 3));
    assert_true(utf8_valid("a\0b", 3));
}

static void test_json_text(void **state) {
    (void)state;
    /* jansson itself refuses these: the helper must not. */
    const char *bad[] = {"/\xc0\x80", "/\xed\xa0\x80", "/\xf4\x90\x80\x80", "caf\xe9 \xff half", "\xf7\xb7\xb7\xb7"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(json_string(bad[i]));
        json_t *j = api_json_text(bad[i]);
        assert_non_null(j);
        assert_true(json_is_string(j));
        assert_int_equal(json_string_length(j), strlen(bad[i]));
        assert_true(utf8_valid(json_string_value(j), json_string_length(j)));
        json_decref(j);
    }
    json_t *j = api_json_text("caf\xc3\xa9");
    assert_string_equal(json_string_value(j), "caf\xc3\xa9");
    json_decref(j);
    j = api_json_text(NULL);
    assert_true(json_is_null(j));
    /* With a length: an embedded NUL ends the text. */
    j = api_json_textn("ab\0cd", 5);
    assert_string_equal(json_string_value(j), "ab");
    json_decref(j);
    j = api_json_textn("line\xff", 5);
    assert_string_equal(json_string_value(j), "line?");
    json_decref(j);
}

static void test_route_match(void **state) {
    (void)state;
    char *params[API_MAX_PARAMS] = {0};
    size_t n = 0;
    int status = 0;
    const api_route *r = api_route_match("GET", "/api/v1/services/web", params, &n, &status);
    assert_non_null(r);
    assert_int_equal(n, 1);
    assert_string_equal(params[0], "web");
    free(params[0]);
    params[0] = NULL;
    r = api_route_match("HEAD", "/health", params, &n, &status);
    assert_non_null(r);
    assert_true(r->flags & API_PUBLIC);
    r = api_route_match("POST", "/api/v1/services/web/restart", params, &n, &status);
    assert_non_null(r);
    assert_false(r->flags & API_PUBLIC);
    free(params[0]);
    params[0] = NULL;
    assert_null(api_route_match("DELETE", "/api/v1/services", params, &n, &status));
    assert_int_equal(status, 405);
    assert_null(api_route_match("GET", "/api/v1/services/web/restart", params, &n, &status));
    assert_int_equal(status, 405);
    assert_null(api_route_match("GET", "/api/v1/nope", params, &n, &status));
    assert_int_equal(status, 404);
    assert_null(api_route_match("GET", "/health/", params, &n, &status));
    assert_int_equal(status, 404);
    assert_null(api_route_match("GET", "/api/v1/services//logs", params, &n, &status));
    assert_int_equal(status, 404);
    assert_null(params[0]);
}

/* No NVML: false (null in /health), whatever the groups. */
static void test_gpu_absent(void **state) {
    (void)state;
    setenv("TEND_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
    resources_gpu_reset();
    pid_t pg = getpgid(0);
    double mb = -1;
    assert_false(resources_gpu_memory_mb(NULL, &pg, 1, &mb));
    assert_false(resources_gpu_memory_mb(NULL, NULL, 0, &mb));
    unsetenv("TEND_NVML_LIBRARY");
    resources_gpu_reset();
}

/*
 * The fake NVML (tests/fake-nvml.c) reports, from $FAKE_NVML_PROCS
 * ("device:kind:pid:MiB,..."; kind c compute, g graphics), with
 * $FAKE_NVML_DEVICES devices, and says "insufficient size" like the real
 * one when the caller's buffer is too small.
 */
static void with_fake(const char *devices, const char *procs) {
    setenv("TEND_NVML_LIBRARY", FAKE_NVML, 1);
    setenv("FAKE_NVML_DEVICES", devices, 1);
    setenv("FAKE_NVML_PROCS", procs, 1);
    resources_gpu_reset();
}

static void test_gpu_fake_nvml(void **state) {
    (void)state;
    pid_t me = getpid(), pg = getpgid(0);
    char procs[4096];
    /* Ours on two devices (one of them in both lists: counted once), a
     * stranger's (pid 1, another group), and one that has exited. */
    snprintf(procs, sizeof(procs), "0:c:%d:100,0:g:%d:100,1:c:%d:50,0:c:1:1000,1:g:999999:7", (int)me, (int)me,
             (int)me);
    with_fake("2", procs);
    double mb = -1;
    assert_true(resources_gpu_memory_mb(NULL, &pg, 1, &mb));
    assert_true(mb > 149.99 && mb < 150.01);
    /* The sample is kept for a second: resetting reads it again. */
    resources_gpu_reset();
    mb = -1;
    assert_true(resources_gpu_memory_mb(NULL, NULL, 0, &mb)); /* no services: 0, not null */
    assert_true(mb == 0.0);

    /* More processes than the first buffer (64) holds. */
    size_t o = 0;
    for (int i = 0; i < 300 && o < sizeof(procs) - 32; i++)
        o += (size_t)snprintf(procs + o, sizeof(procs) - o, "%s0:c:%d:1", i ? "," : "", i < 100 ? (int)me : 1000000 + i);
    with_fake("1", procs);
    mb = -1;
    assert_true(resources_gpu_memory_mb(NULL, &pg, 1, &mb));
    assert_true(mb > 0.99 && mb < 1.01); /* one pid, counted once */

    /* A driver whose init fails: null. */
    setenv("FAKE_NVML_INIT_FAILS", "1", 1);
    with_fake("1", "");
    assert_false(resources_gpu_memory_mb(NULL, &pg, 1, &mb));
    unsetenv("FAKE_NVML_INIT_FAILS");
    unsetenv("TEND_NVML_LIBRARY");
    resources_gpu_reset();
}

/* With a loop: the sample is taken on the thread pool; until it is in,
 * the answer is "unknown" (null), then the figure. */
static void test_gpu_async(void **state) {
    (void)state;
    pid_t me = getpid(), pg = getpgid(0);
    char procs[256];
    snprintf(procs, sizeof(procs), "0:c:%d:64", (int)me);
    with_fake("1", procs);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    double mb = -1;
    assert_false(resources_gpu_memory_mb(&loop, &pg, 1, &mb)); /* queued, nothing yet */
    assert_false(resources_gpu_memory_mb(&loop, &pg, 1, &mb)); /* still in flight: no second one */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);        /* the sample comes back */
    assert_true(resources_gpu_memory_mb(&loop, &pg, 1, &mb));
    assert_true(mb > 63.99 && mb < 64.01);
    assert_int_equal(uv_loop_close(&loop), 0);
    /* No NVML: answered on the spot, no thread. */
    setenv("TEND_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
    resources_gpu_reset();
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_false(resources_gpu_memory_mb(&loop, &pg, 1, &mb));
    assert_int_equal(uv_loop_alive(&loop), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    unsetenv("TEND_NVML_LIBRARY");
    resources_gpu_reset();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_text_unchanged),
        cmocka_unit_test(test_utf8_invalid_bytes_replaced),
        cmocka_unit_test(test_json_text),
        cmocka_unit_test(test_route_match),
        cmocka_unit_test(test_gpu_absent),
        cmocka_unit_test(test_gpu_fake_nvml),
        cmocka_unit_test(test_gpu_async),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
