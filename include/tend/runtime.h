/*
 * tend/runtime.h - the runtime: one per embedding program (or more; they
 * share nothing), with its own event-loop thread that owns the state of
 * everything created on it (the health monitor, the task manager, the
 * session store).  Public calls from other threads are handed to that
 * thread through a mutex-protected queue and a uv_async wake-up.
 *
 *     tend_runtime_options o;
 *     tend_runtime_options_init(&o);
 *     tend_runtime *rt;
 *     int r = tend_runtime_new(&o, &rt);          // nothing runs yet
 *     ... tend_runtime_add_component(rt, &spec) ...  (component.h)
 *     r = tend_runtime_start(rt);                // loop thread + components
 *     ...
 *     r = tend_runtime_shutdown(rt, 10000);       // reverse order, 10 s
 *     tend_runtime_free(rt);
 *
 * Lifecycle: new -> start -> shutdown -> free.  start runs once; a failed
 * start has already stopped what it started (shutdown is then a no-op
 * returning 0).  shutdown is idempotent: a second call returns
 * -EALREADY.  free shuts down first (with the options' shutdown_timeout_ms)
 * if that was not done.
 */
#ifndef TEND_RUNTIME_H
#define TEND_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include <tend/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tend_runtime tend_runtime;

typedef enum tend_runtime_state {
    TEND_RUNTIME_CREATED = 0, /* components may be added */
    TEND_RUNTIME_STARTING,
    TEND_RUNTIME_RUNNING,
    TEND_RUNTIME_STOPPING,
    TEND_RUNTIME_STOPPED,     /* shut down, or a failed start cleaned up */
} tend_runtime_state;

typedef struct tend_runtime_options {
    /* Shown in health reports and errors (copied).  Default "tend". */
    const char *name;
    /* Period of the health monitor's background checks; 0: only when
     * asked (tend_health_run).  Default 60 s. */
    int64_t health_interval_ms;
    /* Per-check timeout when a check does not set its own.  Default 5 s. */
    int64_t health_timeout_ms;
    /* Used by tend_runtime_free when shutdown was not called, and by a
     * failed start to stop what it started.  Default 30 s. */
    int64_t shutdown_timeout_ms;
} tend_runtime_options;

/* Fills every default above; cannot fail. */
TEND_EXPORT void tend_runtime_options_init(tend_runtime_options *opts);

/*
 * Creates a runtime (opts NULL: the defaults) and its loop thread.
 * Returns 0 and *ret_rt, or -EINVAL (negative durations, ret_rt NULL),
 * -ENOMEM, or the error of creating the loop or thread.
 */
TEND_EXPORT int tend_runtime_new(const tend_runtime_options *opts, tend_runtime **ret_rt);

/*
 * Starts every registered component in dependency order, on the calling
 * thread, one at a time (a component's start may block: it is given the
 * caller's thread, not the loop's).  When a critical component fails to
 * start, every component already started is stopped in reverse order and
 * its error is returned (tend_runtime_error() says which and why); a
 * non-critical one that fails is skipped, its dependents are skipped too,
 * and the runtime runs degraded.  Returns 0; -EINVAL (rt NULL), -EALREADY
 * (called before), -ENOENT (a dependency names no component), -ELOOP (a
 * dependency cycle), or the failing component's error.
 */
TEND_EXPORT int tend_runtime_start(tend_runtime *rt);

/*
 * Stops every started component in reverse start order (a component stops
 * only after every component that depends on it), each told how much of
 * timeout_ms is left, then stops the loop thread.  Every started
 * component's stop is called, even past the deadline (then with 0 ms
 * left), so that nothing is leaked.  Returns 0; -ETIMEDOUT when the
 * deadline passed before everything had stopped; -EALREADY on a second
 * call; -EINVAL (rt NULL, timeout_ms < 0).  Must not be called from a
 * callback that runs on the loop thread (-EDEADLK).
 */
TEND_EXPORT int tend_runtime_shutdown(tend_runtime *rt, int64_t timeout_ms);

/* The SPEC's name for tend_runtime_shutdown(). */
TEND_EXPORT int tend_shutdown(tend_runtime *rt, int64_t timeout_ms);

/* Shuts down if needed, frees everything; NULL-safe, returns NULL.  Not
 * from the loop thread. */
TEND_EXPORT tend_runtime *tend_runtime_free(tend_runtime *rt);

/* The current state; TEND_RUNTIME_STOPPED for NULL. */
TEND_EXPORT tend_runtime_state tend_runtime_get_state(const tend_runtime *rt);
/* "created", "starting", "running", "stopping", "stopped"; NULL if out of range. */
TEND_EXPORT const char *tend_runtime_state_to_string(tend_runtime_state state);

/*
 * Copies the last error's sentence (e.g. "component db: start: Connection
 * refused") into buf, NUL-terminated and truncated to size.  Returns its
 * full length (0: no error), or -EINVAL.
 */
TEND_EXPORT int tend_runtime_error(const tend_runtime *rt, char *buf, size_t size);

/*
 * The scoped form (the reference system's `async with` around
 * init_startup_tasks()/shutdown_startup_tasks()): creates a runtime, calls
 * setup(rt, data) to register components, starts it, calls body(rt, data),
 * and whatever happens shuts it down within shutdown_timeout_ms and frees
 * it.  Returns the first error of setup, start, body (their negative
 * return values) or shutdown; 0 when all went well.  body's positive
 * return value is passed through when nothing failed.  setup may be NULL.
 */
TEND_EXPORT int tend_runtime_run(const tend_runtime_options *opts,
                                 int (*setup)(tend_runtime *rt, void *data),
                                 int (*body)(tend_runtime *rt, void *data), void *data);

#ifdef __cplusplus
}
#endif
#endif
