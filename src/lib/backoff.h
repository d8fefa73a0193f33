/*
 * backoff.h - restart arithmetic: exponential backoff with jitter, and the
 * sliding window that opens a service's circuit after too many restarts.
 * Pure functions, unit-tested in tests/unit/test-backoff.c.
 */
#ifndef TEND_LIB_BACKOFF_H
#define TEND_LIB_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

/*
 * The delay before restart number `attempt` (1-based):
 * min(max, base * 2^(attempt-1)), then scaled by 1 + jitter * (2u - 1)
 * where u is uniform in [0, 1).  Never negative; saturates instead of
 * overflowing.
 */
int64_t backoff_delay_ms(int64_t base_ms, int64_t max_ms, double jitter, unsigned attempt, double u);

/* The largest max_attempts the config accepts. */
#define RESTART_WINDOW_MAX 10000

typedef struct restart_window {
    int64_t *at;            /* ring of restart times (ms), cap entries */
    unsigned cap, head, count;
} restart_window;

/* Sizes the ring for max_attempts restarts; 0 or -ENOMEM. */
int restart_window_init(restart_window *w, int max_attempts);
void restart_window_free(restart_window *w);

/*
 * Records a restart at now_ms if fewer than max_attempts restarts happened
 * within the last window_ms and returns true; otherwise records nothing
 * and returns false (the circuit opens).  max_attempts above the ring's
 * capacity is treated as the capacity.
 */
bool restart_window_allow(restart_window *w, int64_t now_ms, int64_t window_ms, int max_attempts);
/* Number of restarts recorded within the window ending at now_ms. */
unsigned restart_window_count(restart_window *w, int64_t now_ms, int64_t window_ms);
void restart_window_reset(restart_window *w);

#endif
