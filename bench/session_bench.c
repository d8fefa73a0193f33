/*
 * session_bench.c - the session store's own figures (docs/PERFORMANCE.md
 * "Sessions"): get, put (replace) and touch operations per second on one
 * core with N live sessions, and the memory each session costs beyond
 * its key and value (malloc accounting with mallinfo2, before and after
 * inserting N sessions).
 *
 *   session_bench [N (default 100000)] [value bytes (default 100)] [seconds per test (default 2)]
 *
 * Keys are "session:<16 hex digits>" (24 bytes, like a session token);
 * lookups follow a random permutation so they are not cache-friendly
 * sequential walks.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session-store.h"

#define KEY_LEN 24

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this thread: ops per CPU second is the one-core figure even
 * when other processes share the cores (the wall-clock rate is printed
 * too). */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmRSS of this process in bytes (0 if unreadable). */
static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtoull(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb * 1024;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void make_key(char *k, uint64_t i) {
    snprintf(k, KEY_LEN + 1, "session:%016llx", (unsigned long long)(i * 0x9e3779b97f4a7c15ULL));
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    size_t vlen = argc > 2 ? strtoull(argv[2], NULL, 10) : 100;
    double secs = argc > 3 ? strtod(argv[3], NULL) : 2.0;
    if (n == 0 || vlen == 0 || vlen > SESSION_VALUE_MAX_DEFAULT)
        return 2;
    char *value = malloc(vlen + 1);
    memset(value, 'x', vlen);
    value[0] = '"';
    value[vlen - 1] = '"';
    value[vlen] = 0;
    char *keys = malloc(n * (KEY_LEN + 1));
    uint32_t *perm = malloc(n * sizeof(*perm));
    for (size_t i = 0; i < n; i++) {
        make_key(keys + i * (KEY_LEN + 1), i);
        perm[i] = (uint32_t)i;
    }
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = next_rand() % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int64_t now = 1700000000000LL;

    size_t rss0 = rss_bytes();
    struct mallinfo2 m0 = mallinfo2();
    session_store_config cfg = {.ttl_ms = 3600 * 1000};
    session_store *s = NULL;
    if (session_store_new(&cfg, &s) < 0)
        return 1;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        /* Spread the expiry times so the heap is not degenerate. */
        int64_t ttl = 3600 * 1000 + (int64_t)(next_rand() % 600000);
        if (session_store_put(s, keys + i * (KEY_LEN + 1), KEY_LEN, value, vlen, ttl, now, NULL) != 1)
            return 1;
    }
    double t_insert = now_s() - t0;
    struct mallinfo2 m1 = mallinfo2();
    size_t rss1 = rss_bytes();
    size_t used = m1.uordblks + m1.hblkhd - (m0.uordblks + m0.hblkhd);
    size_t payload = n * (KEY_LEN + vlen);
    printf("sessions: %zu, key %d B, value %zu B\n", n, KEY_LEN, vlen);
    printf("insert: %.0f ops/s\n", (double)n / t_insert);
    printf("memory: %zu B allocated, %zu B key+value, overhead %.1f B/session\n", used, payload,
           (double)(used - payload) / (double)n);
    printf("rss: +%zu B, overhead %.1f B/session\n", rss1 - rss0,
           ((double)rss1 - (double)rss0 - (double)payload) / (double)n);

    /* get (zero-copy peek, what the daemon's GET uses), get with a copy,
     * put (replace), touch: each for `secs` seconds over the permutation. */
    const char *names[] = {"get (peek)", "get (copy)", "put (replace)", "touch"};
    for (int test = 0; test < 4; test++) {
        size_t ops = 0, hits = 0;
        double start = now_s(), cstart = cpu_s(), el;
        do {
            for (size_t b = 0; b < 65536; b++, ops++) {
                const char *k = keys + (size_t)perm[ops % n] * (KEY_LEN + 1);
                int r;
                if (test == 0) {
                    const char *v;
                    r = session_store_peek(s, k, KEY_LEN, now, NULL, &v);
                } else if (test == 1) {
                    char *v = NULL;
                    r = session_store_get(s, k, KEY_LEN, now, NULL, &v);
                    free(v);
                } else if (test == 2)
                    r = session_store_put(s, k, KEY_LEN, value, vlen, 0, now, NULL);
                else
                    r = session_store_touch(s, k, KEY_LEN, 0, now, NULL);
                hits += r >= 0;
            }
            el = now_s() - start;
        } while (el < secs);
        double cel = cpu_s() - cstart;
        printf("%s: %.0f ops/s wall, %.0f ops per CPU second (%zu ops, %zu ok)\n", names[test],
               (double)ops / el, (double)ops / cel, ops, hits);
    }
    session_store_stats st;
    session_store_get_stats(s, &st);
    printf("table slots: %zu (load %.2f)\n", st.table_slots, (double)st.count / (double)st.table_slots);
    session_store_free(s);
    free(keys);
    free(perm);
    free(value);
    return 0;
}
