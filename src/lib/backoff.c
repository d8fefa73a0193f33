/* backoff.c - see backoff.h. */
#include "backoff.h"

#include <math.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int64_t backoff_delay_ms(int64_t base_ms, int64_t max_ms, double jitter, unsigned attempt, double u) {
    if (base_ms < 0)
        base_ms = 0;
    if (max_ms < base_ms)
        max_ms = base_ms;
    if (attempt == 0)
        attempt = 1;
    double d = (double)base_ms;
    for (unsigned i = 1; i < attempt && d < (double)max_ms; i++)
        d *= 2;
    if (d > (double)max_ms)
        d = (double)max_ms;
    if (jitter < 0)
        jitter = 0;
    if (jitter > 1)
        jitter = 1;
    if (u < 0)
        u = 0;
    if (u >= 1)
        u = 0.999999;
    d *= 1.0 + jitter * (2.0 * u - 1.0);
    if (d < 0)
        d = 0;
    if (d > 4e18)
        d = 4e18;
    /* Doubles cannot hold every int64: keep the cap exact. */
    int64_t r = (int64_t)llround(d);
    int64_t hi = max_ms + (int64_t)((double)max_ms * jitter);
    if (hi < max_ms)
        hi = INT64_MAX;
    return r > hi ? hi : r;
}

int restart_window_init(restart_window *w, int max_attempts) {
    if (max_attempts < 1)
        max_attempts = 1;
    if (max_attempts > RESTART_WINDOW_MAX)
        max_attempts = RESTART_WINDOW_MAX;
    memset(w, 0, sizeof(*w));
    w->at = calloc((size_t)max_attempts, sizeof(int64_t));
    if (!w->at)
        return -ENOMEM;
    w->cap = (unsigned)max_attempts;
    return 0;
}

void restart_window_free(restart_window *w) {
    free(w->at);
    memset(w, 0, sizeof(*w));
}

static void prune(restart_window *w, int64_t now_ms, int64_t window_ms) {
    while (w->count > 0) {
        unsigned oldest = (w->head + w->cap - w->count) % w->cap;
        if (now_ms - w->at[oldest] < window_ms)
            break;
        w->count--;
    }
}

unsigned restart_window_count(restart_window *w, int64_t now_ms, int64_t window_ms) {
    prune(w, now_ms, window_ms);
    return w->count;
}

bool restart_window_allow(restart_window *w, int64_t now_ms, int64_t window_ms, int max_attempts) {
    if (w->cap == 0)
        return false;
    if (max_attempts > (int)w->cap)
        max_attempts = (int)w->cap;
    prune(w, now_ms, window_ms);
    if ((int)w->count >= max_attempts)
        return false;
    w->at[w->head] = now_ms;
    w->head = (w->head + 1) % w->cap;
    w->count++;
    return true;
}

void restart_window_reset(restart_window *w) { w->head = w->count = 0; }
