/*
 * tend/component.h - the parts of a program that start and stop with the
 * runtime, in dependency order: what the reference system's
 * init_startup_tasks() / shutdown_startup_tasks() did by hand.
 *
 * A component is a name, the names it depends on, start and stop
 * functions and an optional health check.  tend_runtime_start() starts
 * the components so that each starts after its dependencies; if a
 * critical one fails, every one already started is stopped, newest first.
 * tend_runtime_shutdown() stops them in the reverse order.  The task
 * manager (with its batch queues, the batch processor) and the session
 * store register themselves as components ("tasks" and "sessions" by
 * default), so a program's own components can depend on them.
 */
#ifndef TEND_COMPONENT_H
#define TEND_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tend/common.h>
#include <tend/health.h>
#include <tend/runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Names: 1 to TEND_NAME_MAX bytes of [A-Za-z0-9_.:-]. */
#define TEND_NAME_MAX 128
/* Most dependencies one component may list. */
#define TEND_COMPONENT_DEPS_MAX 64

typedef struct tend_component_spec {
    const char *name;
    /* NULL-terminated names of the components this one needs started
     * first; NULL for none. */
    const char *const *deps;
    /* Default true.  A non-critical component that fails to start is
     * skipped with its dependents instead of failing the start. */
    bool critical;
    /* Called from tend_runtime_start() on its caller's thread; may block.
     * 0 on success, a negative errno on failure (then stop is not
     * called).  NULL: nothing to do.  It may write a sentence saying why
     * it failed into err (err_size bytes; the runtime shows it in
     * tend_runtime_error()). */
    int (*start)(tend_runtime *rt, void *data, char *err, size_t err_size);
    /* Called once for a started component, from tend_runtime_shutdown()
     * (or a failed start) on its caller's thread, with the milliseconds
     * left of the deadline (0 when it has passed: release quickly).
     * NULL: nothing to do. */
    void (*stop)(tend_runtime *rt, void *data, int64_t timeout_ms);
    /* Optional health check, registered with the runtime's health
     * monitor under the component's name once it has started (see
     * tend_health_check_fn; it runs on a worker thread). */
    tend_health_check_fn check;
    /* The check's timeout; 0: the runtime's default. */
    int64_t check_timeout_ms;
    /* Handed to start, stop and check; the caller keeps it valid until
     * the runtime is freed. */
    void *data;
} tend_component_spec;

/* Zeroes spec and sets critical = true; cannot fail. */
TEND_EXPORT void tend_component_spec_init(tend_component_spec *spec);

/*
 * Registers a component (the spec and its strings are copied).  Only
 * before tend_runtime_start().  Returns 0; -EINVAL (NULL, a bad name,
 * more than TEND_COMPONENT_DEPS_MAX deps); -EEXIST (the name is taken);
 * -EBUSY (the runtime has started); -ENOMEM.  Unknown dependencies and
 * cycles are reported by tend_runtime_start().
 */
TEND_EXPORT int tend_runtime_add_component(tend_runtime *rt, const tend_component_spec *spec);

typedef enum tend_component_state {
    TEND_COMPONENT_REGISTERED = 0,
    TEND_COMPONENT_STARTING,
    TEND_COMPONENT_STARTED,
    TEND_COMPONENT_FAILED,   /* its start returned an error */
    TEND_COMPONENT_SKIPPED,  /* a non-critical dependency failed */
    TEND_COMPONENT_STOPPING,
    TEND_COMPONENT_STOPPED,
} tend_component_state;

/* The state of the named component: >= 0 (a tend_component_state), or
 * -EINVAL, -ENOENT. */
TEND_EXPORT int tend_runtime_component_state(tend_runtime *rt, const char *name);
/* "registered", "starting", ...; NULL when out of range. */
TEND_EXPORT const char *tend_component_state_to_string(tend_component_state state);

/*
 * The names of the components in the order they start (dependencies
 * first; among independent ones, the order of registration), as a
 * NULL-terminated array in *ret_names that the caller frees with free()
 * (one allocation).  Returns the count; -EINVAL, -ENOENT (unknown
 * dependency), -ELOOP (cycle), -ENOMEM.
 */
TEND_EXPORT int tend_runtime_component_order(tend_runtime *rt, char ***ret_names);

#ifdef __cplusplus
}
#endif
#endif
