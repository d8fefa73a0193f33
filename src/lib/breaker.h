/*
 * breaker.h - a queue's circuit breaker (`circuit_breaker:
 * {failure_threshold, open_for}`).  failure_threshold consecutive failed
 * attempts open the circuit for open_for; while it is open the queue's
 * tasks wait (they are not failed).  Then ONE trial task runs (half-open):
 * its success closes the circuit, its failure opens it for another
 * open_for.
 *
 * The task engine asks breaker_allow() before dispatching a task, reports
 * every attempt's outcome with breaker_record(), and arms a timer for
 * breaker_retry_in_ms() when it is refused.  As a table (event -> state):
 *
 *   state      allow()                       success      failure
 *   CLOSED     yes                           count = 0    count++, at threshold -> OPEN
 *   OPEN       before open_for: no;          ignored      ignored
 *              after: -> HALF_OPEN, yes
 *   HALF_OPEN  trial in flight: no;          -> CLOSED    -> OPEN (again)
 *              none (released): yes, trial
 *
 * Results that arrive while OPEN come from tasks dispatched before the
 * circuit opened; they say nothing about the downstream's state now, so
 * they neither close nor extend it.  A result that arrives in HALF_OPEN is
 * taken as the trial's (the breaker cannot tell tasks apart).
 *
 * Pure logic: no clock, no I/O, no allocation; time is passed in as
 * monotonic milliseconds.  The caller owns the struct (embed it by value);
 * there is nothing to free.
 */
#ifndef TEND_LIB_BREAKER_H
#define TEND_LIB_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

/* The values are those of the metric tend_circuit_breaker_state. */
enum breaker_state {
    BREAKER_CLOSED = 0,
    BREAKER_HALF_OPEN = 1,
    BREAKER_OPEN = 2,
};

/* Fields are read-only outside breaker.c. */
typedef struct breaker {
    unsigned threshold;       /* consecutive failures that open; 0: disabled */
    int64_t open_for_ms;
    enum breaker_state state; /* as of the last call (OPEN may have expired) */
    unsigned failures;        /* consecutive failures while CLOSED */
    bool trial_in_flight;     /* HALF_OPEN: the trial is dispatched */
    int64_t open_until_ms;    /* OPEN: when the trial may go */
    uint64_t opened_total;    /* transitions into OPEN, re-opens included */
} breaker;

/*
 * Sets b up CLOSED with zeroed counters.  threshold 0 disables the breaker
 * (it always allows).  Returns 0, or -EINVAL (b untouched) for a negative
 * open_for_ms.
 */
int breaker_init(breaker *b, unsigned threshold, int64_t open_for_ms);

/*
 * True when a task may be dispatched at now_ms.  The first call after
 * open_for has expired moves the breaker to HALF_OPEN and returns true:
 * the caller must dispatch that task as the trial and report it with
 * breaker_record() (or breaker_release()); until then it returns false.
 */
bool breaker_allow(breaker *b, int64_t now_ms);

/* Reports the outcome of one dispatched task's attempt (see the table). */
void breaker_record(breaker *b, int64_t now_ms, bool success);

/*
 * The trial allowed in HALF_OPEN ended without an outcome that counts
 * (cancelled, interrupted by shutdown, never started): the next
 * breaker_allow() grants a new trial.  No effect in other states.
 */
void breaker_release(breaker *b);

/*
 * For a timer: 0 when breaker_allow() would return true at now_ms, the ms
 * until it will when OPEN, -1 when only an event (the trial's report or a
 * reset) can change the answer.
 */
int64_t breaker_retry_in_ms(const breaker *b, int64_t now_ms);

/*
 * The state at now_ms, for metrics and the API.  An OPEN circuit whose
 * open_for has expired reads HALF_OPEN: the next task is its trial.
 */
enum breaker_state breaker_state(const breaker *b, int64_t now_ms);

/* "closed", "half-open", "open"; NULL for values out of range. */
const char *breaker_state_to_string(enum breaker_state s);

/*
 * Closes the circuit by hand (the runbook's "reset a breaker"): the
 * failure count and any trial are forgotten; opened_total is kept.  A
 * trial still running reports into the CLOSED state like any task.
 */
void breaker_reset(breaker *b);

#endif
