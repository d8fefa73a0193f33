/*
 * token-bucket.h - the rate limiter behind a queue's `rate_limit` ("50/s",
 * "600/m", parsed by parse_rate()).  The task engine takes one token per
 * dispatched task and, when none is left, arms a timer for
 * token_bucket_wait_ms().
 *
 * Pure arithmetic: no clock, no I/O, no allocation.  Time is passed in as
 * monotonic milliseconds.  Tokens are kept as a double and the refill is
 * computed from the elapsed time, never rounded to whole tokens, so the
 * long-run rate is exact (no drift however often it is called).  A `now`
 * earlier than the last one seen counts as no time passed.  As in any
 * token bucket, a full bucket stops filling: with a burst of 1 token (the
 * default below 1/s) a take made some ms after the token arrived does not
 * get those ms back.
 *
 * The caller owns the struct (embed it by value); there is nothing to free.
 */
#ifndef TEND_LIB_TOKEN_BUCKET_H
#define TEND_LIB_TOKEN_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

typedef struct token_bucket {
    double rate_per_sec; /* tokens added per second; 0: unlimited */
    double burst;        /* capacity in tokens */
    double tokens;       /* available at last_ms; negative after an oversize take */
    int64_t last_ms;     /* the latest time seen */
} token_bucket;

/*
 * Sets tb up full (burst tokens available at now_ms).  rate_per_sec 0
 * means unlimited; burst 0 means the default, one second's worth:
 * max(1, rate_per_sec).  Returns 0, or -EINVAL (and leaves tb untouched)
 * for a negative, NaN or infinite rate or burst.
 */
int token_bucket_init(token_bucket *tb, double rate_per_sec, double burst, int64_t now_ms);

/*
 * Takes n tokens at now_ms if they are available and returns true;
 * otherwise takes nothing and returns false.  n 0 always succeeds.  An n
 * larger than the burst can never be covered, so it is granted when the
 * bucket is full and leaves it in debt: the long-run rate still holds.
 */
bool token_bucket_take(token_bucket *tb, int64_t now_ms, unsigned n);

/*
 * Milliseconds from now_ms until token_bucket_take(tb, now_ms + result, n)
 * succeeds (if nothing else takes meanwhile): 0 when it would succeed now,
 * otherwise the smallest such delay, >= 1.  For absurdly low rates it
 * saturates (now_ms + result never exceeds INT64_MAX).  Does not change tb.
 */
int64_t token_bucket_wait_ms(const token_bucket *tb, int64_t now_ms, unsigned n);

/* Tokens available at now_ms (for the API's queue view); +inf when unlimited. */
double token_bucket_available(const token_bucket *tb, int64_t now_ms);

#endif
