/* token-bucket.c - see token-bucket.h. */
#include "token-bucket.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>

/*
 * Refill arithmetic rounds in the last bit: without a tolerance, a bucket
 * that should hold exactly 1 token after 1000/rate ms can hold
 * 0.9999999999999999 and make a timer fire 1 ms early for nothing.  The
 * tolerance is relative to the burst and far below anything observable.
 */
static double tolerance(const token_bucket *tb) { return 1e-12 * fmax(1.0, tb->burst); }

/* Elapsed ms since last_ms, 0 for a now in the past; exact, no overflow. */
static double elapsed_ms(const token_bucket *tb, int64_t now_ms) {
    if (now_ms <= tb->last_ms)
        return 0;
    return (double)((uint64_t)now_ms - (uint64_t)tb->last_ms);
}

static double tokens_at(const token_bucket *tb, int64_t now_ms) {
    double t = tb->tokens + elapsed_ms(tb, now_ms) * tb->rate_per_sec / 1000.0;
    return t > tb->burst ? tb->burst : t;
}

/* The tokens a take of n needs on hand: n, or a full bucket when n > burst. */
static double needed(const token_bucket *tb, unsigned n) {
    return (double)n > tb->burst ? tb->burst : (double)n;
}

static bool can_take(const token_bucket *tb, int64_t now_ms, unsigned n) {
    return tokens_at(tb, now_ms) >= needed(tb, n) - tolerance(tb);
}

int token_bucket_init(token_bucket *tb, double rate_per_sec, double burst, int64_t now_ms) {
    if (!(rate_per_sec >= 0) || isinf(rate_per_sec) || !(burst >= 0) || isinf(burst))
        return -EINVAL;
    if (burst == 0)
        burst = fmax(1.0, rate_per_sec);
    *tb = (token_bucket){
        .rate_per_sec = rate_per_sec,
        .burst = burst,
        .tokens = burst,
        .last_ms = now_ms,
    };
    return 0;
}

bool token_bucket_take(token_bucket *tb, int64_t now_ms, unsigned n) {
    if (tb->rate_per_sec == 0 || n == 0)
        return true;
    if (!can_take(tb, now_ms, n))
        return false;
    /* Commit the refill only now: a refused take changes nothing. */
    tb->tokens = tokens_at(tb, now_ms) - (double)n;
    if (now_ms > tb->last_ms)
        tb->last_ms = now_ms;
    return true;
}

int64_t token_bucket_wait_ms(const token_bucket *tb, int64_t now_ms, unsigned n) {
    if (tb->rate_per_sec == 0 || n == 0 || can_take(tb, now_ms, n))
        return 0;
    /* A now in the past waits as if it were last_ms, plus the gap. */
    int64_t from = now_ms < tb->last_ms ? tb->last_ms : now_ms;
    uint64_t gap = (uint64_t)from - (uint64_t)now_ms;
    int64_t limit = INT64_MAX - from;
    double deficit = needed(tb, n) - tokens_at(tb, from);
    double w = ceil(deficit * 1000.0 / tb->rate_per_sec);
    int64_t d;
    if (!(w < (double)limit)) {
        d = limit;
    } else {
        d = w < 1 ? 1 : (int64_t)w;
        /* The division rounds too: settle on exactly what take() accepts. */
        while (d > 1 && can_take(tb, from + d - 1, n))
            d--;
        while (d < limit && !can_take(tb, from + d, n))
            d++;
    }
    uint64_t total = gap + (uint64_t)d; /* <= INT64_MAX - now_ms < 2^64: no wrap */
    return total > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)total;
}

double token_bucket_available(const token_bucket *tb, int64_t now_ms) {
    if (tb->rate_per_sec == 0)
        return INFINITY;
    return tokens_at(tb, now_ms);
}
