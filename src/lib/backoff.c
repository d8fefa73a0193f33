/* backoff.c - see backoff.h. */
#include "backoff.h"

#include <math.h>
#include <stdint.h>
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

static void prune(restart_window *w, int64_t now_ms, int64_t window_ms) {
    while (w->count > 0) {
        unsigned oldest = (w->head + RESTART_WINDOW_MAX - w->count) % RESTART_WINDOW_MAX;
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
    if (max_attempts > RESTART_WINDOW_MAX)
        max_attempts = RESTART_WINDOW_MAX;
    prune(w, now_ms, window_ms);
    if ((int)w->count >= max_attempts)
        return false;
    w->at[w->head] = now_ms;
    w->head = (w->head + 1) % RESTART_WINDOW_MAX;
    w->count++;
    return true;
}

void restart_window_reset(restart_window *w) { memset(w, 0, sizeof(*w)); }
