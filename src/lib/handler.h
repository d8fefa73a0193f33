/*
 * handler.h - the one interface behind which a queue's handler runs a
 * dispatched task (or batch): handler-exec.c (a child process),
 * handler-http.c (a POST through libcurl's multi interface on the loop),
 * handler-func.c (a C function on a worker thread).  Pull queues have no
 * push backend: external workers reserve and ack over the API
 * (handler-pull.c holds the lease logic's helpers).
 *
 * The engine creates a task_run, calls backend->start(run) on the loop,
 * and the backend reports exactly once with handler_done(run, result), on
 * the loop, never from inside start().  backend->abort(run) (a timeout, a
 * cancel, shutdown) asks the backend to stop the run as soon as it can; it
 * still reports through handler_done (the engine then decides the outcome
 * from why it aborted).
 */
#ifndef TEND_LIB_HANDLER_H
#define TEND_LIB_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tend/spec.h>
#include <uv.h>

#include "store.h"
#include "task-engine.h"

enum handler_outcome {
    HANDLER_OK = 0,
    HANDLER_FAILED,    /* a failed attempt: retried with backoff */
    HANDLER_PERMANENT, /* failed for good: dead at once */
};

typedef struct handler_result {
    enum handler_outcome outcome;
    const char *error;       /* the error text (an output tail), or NULL */
    int64_t retry_after_ms;  /* >= 0: the handler asked to wait this long (Retry-After) */
    /* Batch mode: the handler's answer (stdout / response body), parsed for
     * {"failed": ["id", ...]} by the engine; may be NULL. */
    const char *output;
    size_t output_len;
} handler_result;

typedef struct handler_env handler_env;
typedef struct task_run task_run;

struct task_run {
    task_engine *engine;
    handler_env *env;
    const tend_queue_spec *spec;
    void *queue;             /* the engine's queue */
    store_task *tasks;       /* the claimed records; n > 1 only in batch mode */
    size_t n;
    bool batch;
    int64_t timeout_ms;
    int64_t started_mono_ms;
    int aborted;             /* 0, or why: TASK_ABORT_* */
    void *priv;              /* the backend's */
    /* The engine's bookkeeping. */
    void *reply;             /* an API action waiting for this run's outcome */
    bool *cancel_mask;       /* batch members cancelled while it runs */
    bool held;               /* pull: claimed, not yet handed to a worker */
    bool lent;               /* tasks' strings are the store's (a CLAIM with borrow) */
    size_t heap_index;
    int64_t deadline_mono_ms;
    task_run *hash_next;
    task_run *list_prev, *list_next;
    store_task one;          /* tasks == &one: a single task held inline */
};

enum { TASK_ABORT_TIMEOUT = 1, TASK_ABORT_CANCEL, TASK_ABORT_SHUTDOWN };

typedef struct handler_backend {
    const char *name;
    /* 0: started (handler_done follows later); <0: could not start (the
     * engine counts a failed attempt with a message from errno). */
    int (*start)(task_run *run);
    void (*abort)(task_run *run);
} handler_backend;

extern const handler_backend handler_exec;
extern const handler_backend handler_http;
extern const handler_backend handler_func;

/* The engine's, called by backends on the loop. */
void handler_done(task_run *run, const handler_result *res);
/* Around a backend's loop of handler_done() calls (begin true, then
 * false): dispatching what the finished runs freed happens once, at the
 * end, instead of after each run.  Nests. */
void handler_batch(task_engine *e, bool begin);

/*
 * The input a push handler gets: the task JSON {"id","queue","attempt",
 * "payload"}, or {"batch":[task, ...]} for a batch run.  Caller frees.
 */
char *handler_input_json(const task_run *run, size_t *ret_len);

/* ---- Shared state of the backends (one per engine) ---------------------- */

struct http_client;
struct reaper;
struct guard;
typedef struct func_pool func_pool;

struct handler_env {
    uv_loop_t *loop;
    struct reaper *reaper;
    struct guard *guard;      /* NULL: none */
    struct http_client *http; /* created on the first http run */
    const char *cwd;
    func_pool *pool;          /* created at start when a func queue exists */
    int workers;
};

/* handler-func.c: the worker pool.  The function of a run is looked up
 * through func_of (set by the engine). */
int func_pool_new(handler_env *env, int threads, func_pool **ret);
/* Stops the threads (after the runs in flight returned); frees. */
void func_pool_free(func_pool *p);
/* The engine's lookup of a run's function. */
void task_engine_func_of(const task_run *run, task_func *ret_fn, void **ret_data);

/* handler-pull.c: a lease's expiry error text and the nack body parser. */
const char *pull_lease_expired_error(void);

#endif
