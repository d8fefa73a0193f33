/*
 * tend-internal.h - what the files of the public API (src/lib/tend-*.c)
 * share: the runtime's struct, its internal components (the task manager,
 * the session store and the batch processor register themselves as
 * components with a destroy hook), and the health monitor's entry points
 * for the runtime.  Not installed.
 */
#ifndef TEND_LIB_TEND_INTERNAL_H
#define TEND_LIB_TEND_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <tend/component.h>
#include <tend/health.h>
#include <tend/runtime.h>

#include "tend-loop.h"

/* Writes a sentence into a fixed error buffer; never fails. */
#define TEND_ERROR_MAX 512

typedef struct tend_component {
    char *name;
    char **deps;        /* NULL-terminated copy */
    size_t n_deps;
    bool critical;
    int (*start)(tend_runtime *rt, void *data, char *err, size_t err_size);
    void (*stop)(tend_runtime *rt, void *data, int64_t timeout_ms);
    tend_health_check_fn check;
    int64_t check_timeout_ms;
    void *data;
    /* Internal components only: called by tend_runtime_free(). */
    void (*destroy)(void *data);
    tend_component_state state; /* under rt->lock */
    bool check_added;
} tend_component;

struct tend_runtime {
    pthread_mutex_t lock;       /* state, components, error */
    tend_runtime_state state;
    bool shutdown_called;
    tend_runtime_options opts;
    char *name;
    tend_loop *loop;
    tend_health *health;
    tend_component *comps;
    size_t n_comps, cap_comps;
    size_t *started;            /* indexes, in start order */
    size_t n_started;
    char error[TEND_ERROR_MAX];
};

/* Registers an internal component with a destroy hook (called at
 * tend_runtime_free whether or not the runtime started).  As
 * tend_runtime_add_component otherwise; on failure destroy is not
 * called. */
int tend_runtime_add_internal(tend_runtime *rt, const tend_component_spec *spec,
                              void (*destroy)(void *data));
/* Records the error sentence (printf-style). */
void tend_runtime_set_error(tend_runtime *rt, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The health monitor's side of the runtime (tend-health.c); the first
 * two and the last run on the loop thread. */
int tend_health_create(tend_runtime *rt, tend_health **ret);
void tend_health_close(tend_health *h);
void tend_health_destroy(tend_health *h);

/* Checks a name: 1..TEND_NAME_MAX of [A-Za-z0-9_.:-]. */
bool tend_name_valid(const char *s, size_t len);

#endif
