/* breaker.c - see breaker.h. */
#include "breaker.h"

#include <errno.h>
#include <stddef.h>

int breaker_init(breaker *b, unsigned threshold, int64_t open_for_ms) {
    if (open_for_ms < 0)
        return -EINVAL;
    *b = (breaker){
        .threshold = threshold,
        .open_for_ms = open_for_ms,
        .state = BREAKER_CLOSED,
    };
    return 0;
}

static void trip(breaker *b, int64_t now_ms) {
    b->state = BREAKER_OPEN;
    b->trial_in_flight = false;
    b->failures = 0;
    b->open_until_ms = now_ms > INT64_MAX - b->open_for_ms ? INT64_MAX : now_ms + b->open_for_ms;
    b->opened_total++;
}

static void close_circuit(breaker *b) {
    b->state = BREAKER_CLOSED;
    b->trial_in_flight = false;
    b->failures = 0;
}

bool breaker_allow(breaker *b, int64_t now_ms) {
    if (b->threshold == 0)
        return true;
    switch (b->state) {
    case BREAKER_CLOSED:
        return true;
    case BREAKER_OPEN:
        if (now_ms < b->open_until_ms)
            return false;
        b->state = BREAKER_HALF_OPEN;
        b->trial_in_flight = true;
        return true;
    case BREAKER_HALF_OPEN:
        if (b->trial_in_flight)
            return false;
        b->trial_in_flight = true;
        return true;
    }
    return false;
}

void breaker_record(breaker *b, int64_t now_ms, bool success) {
    if (b->threshold == 0)
        return;
    switch (b->state) {
    case BREAKER_CLOSED:
        if (success)
            b->failures = 0;
        else if (++b->failures >= b->threshold)
            trip(b, now_ms);
        return;
    case BREAKER_OPEN:
        /* From a task dispatched before the circuit opened: no evidence
         * either way about the downstream now. */
        return;
    case BREAKER_HALF_OPEN:
        if (success)
            close_circuit(b);
        else
            trip(b, now_ms);
        return;
    }
}

void breaker_release(breaker *b) {
    if (b->state == BREAKER_HALF_OPEN)
        b->trial_in_flight = false;
}

int64_t breaker_retry_in_ms(const breaker *b, int64_t now_ms) {
    if (b->threshold == 0)
        return 0;
    switch (b->state) {
    case BREAKER_CLOSED:
        return 0;
    case BREAKER_OPEN:
        if (now_ms >= b->open_until_ms)
            return 0;
        if (now_ms < 0 && b->open_until_ms > INT64_MAX + now_ms)
            return INT64_MAX; /* the difference does not fit */
        return b->open_until_ms - now_ms;
    case BREAKER_HALF_OPEN:
        return b->trial_in_flight ? -1 : 0;
    }
    return -1;
}

enum breaker_state breaker_state(const breaker *b, int64_t now_ms) {
    if (b->threshold == 0)
        return BREAKER_CLOSED;
    if (b->state == BREAKER_OPEN && now_ms >= b->open_until_ms)
        return BREAKER_HALF_OPEN;
    return b->state;
}

const char *breaker_state_to_string(enum breaker_state s) {
    switch (s) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_HALF_OPEN:
        return "half-open";
    case BREAKER_OPEN:
        return "open";
    }
    return NULL;
}

void breaker_reset(breaker *b) { close_circuit(b); }
