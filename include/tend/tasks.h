/*
 * tend/tasks.h - the task manager: named queues of background work done by
 * C functions, with strict priorities, retries with exponential backoff
 * and jitter, per-attempt timeouts, a circuit breaker and a rate limit per
 * queue, a dead-letter list, statistics, and batch queues (the batch
 * processor: the function gets up to batch_size tasks at once).
 *
 * It is tend's task engine, in-process: tasks are kept in memory (the
 * default) or in SQLite under state_dir (then they survive a crash and
 * are recovered at the next start, like `tend up`'s).  It is a component
 * of the runtime ("tasks" unless named otherwise): it starts with
 * tend_runtime_start() and, at tend_runtime_shutdown(), stops taking
 * tasks, lets running ones finish within the deadline and requeues the
 * others (durable store) or drops them (memory store).
 *
 * Threading.  tend_tasks_submit() may be called from any thread and does
 * not wait for the loop (tasks are handed over in bulk).  Task functions
 * run on the manager's worker threads (`workers`, default 10).  Other
 * calls are answered by the runtime's loop thread.
 */
#ifndef TEND_TASKS_H
#define TEND_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tend/common.h>
#include <tend/runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tend_tasks tend_tasks;
typedef struct tend_task_ctx tend_task_ctx;

/* Strict priorities: a queue always runs its critical tasks first. */
typedef enum tend_priority {
    TEND_PRIORITY_CRITICAL = 0,
    TEND_PRIORITY_HIGH = 1,
    TEND_PRIORITY_NORMAL = 2,
    TEND_PRIORITY_LOW = 3,
    TEND_PRIORITY_BACKGROUND = 4,
} tend_priority;

typedef enum tend_task_state {
    TEND_TASK_PENDING = 0,
    TEND_TASK_SCHEDULED = 1, /* delayed, or waiting to be retried */
    TEND_TASK_RUNNING = 2,
    TEND_TASK_SUCCEEDED = 3,
    TEND_TASK_DEAD = 4,      /* attempts used up: the dead-letter list */
    TEND_TASK_CANCELLED = 5,
} tend_task_state;

/* Ids: 26 characters (sortable by creation time) and a NUL. */
#define TEND_TASK_ID_SIZE 27
#define TEND_QUEUE_NAME_MAX 128
#define TEND_TASK_ERROR_MAX 512

/*
 * A task function.  Returns 0 (succeeded), TEND_TASK_PERMANENT (failed
 * for good: dead at once, no retry) or anything else, e.g. a negative
 * errno (a failed attempt: retried after the queue's backoff while
 * attempts remain, then dead).  It runs on a worker thread; it should
 * return soon after tend_task_cancelled() turns true (its timeout passed,
 * the task was cancelled, or shutdown stopped waiting): a C function
 * cannot be killed.
 */
#define TEND_TASK_PERMANENT 1
typedef int (*tend_task_fn)(tend_task_ctx *ctx, void *data);

/* Inside a task function: the queue, the number of tasks (1, or a
 * batch's size), and each task's id, payload (JSON text, NUL-terminated;
 * ret_len may be NULL) and attempt (1-based).  i out of range: NULL / 0. */
TEND_EXPORT const char *tend_task_queue(const tend_task_ctx *ctx);
TEND_EXPORT size_t tend_task_count(const tend_task_ctx *ctx);
TEND_EXPORT const char *tend_task_id(const tend_task_ctx *ctx, size_t i);
TEND_EXPORT const char *tend_task_payload(const tend_task_ctx *ctx, size_t i, size_t *ret_len);
TEND_EXPORT int tend_task_attempt(const tend_task_ctx *ctx, size_t i);
/* Why the attempt failed (kept as the task's last_error; truncated). */
TEND_EXPORT void tend_task_set_error(tend_task_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Batch queues: marks task i of the batch failed (the function then
 * returns 0; the others succeed).  0, -EINVAL (not a batch of several),
 * -ERANGE. */
TEND_EXPORT int tend_task_fail_item(tend_task_ctx *ctx, size_t i);
TEND_EXPORT bool tend_task_cancelled(const tend_task_ctx *ctx);

typedef struct tend_tasks_options {
    const char *name;              /* component name; default "tasks" */
    const char *const *deps;       /* components it needs first; NULL: none */
    /* NULL: tasks in memory.  Else an absolute directory: tasks in
     * <state_dir>/tend.db (SQLite, each acknowledged task fsynced). */
    const char *state_dir;
    int workers;                   /* threads for task functions; default 10 */
    uint64_t max_payload;          /* bytes; default 256 KiB (max 1 MiB) */
    int64_t retention_succeeded_ms;/* default 24 h */
    int64_t retention_dead_ms;     /* default 7 d */
} tend_tasks_options;

typedef struct tend_queue_options {
    const char *name;              /* 1..TEND_QUEUE_NAME_MAX of [A-Za-z0-9_.:-] */
    tend_task_fn fn;
    void *data;                    /* handed to fn; kept valid by the caller */
    int concurrency;               /* tasks of this queue at once; default 3 */
    int64_t timeout_ms;            /* per attempt; default 30 s */
    int max_attempts;              /* default 3 */
    int64_t backoff_base_ms;       /* default 1 s, doubling */
    int64_t backoff_max_ms;        /* default 5 min */
    double backoff_jitter;         /* default 0.2 */
    double rate_per_sec;           /* 0: unlimited */
    int breaker_failure_threshold; /* consecutive failures that open it; 0: no breaker */
    int64_t breaker_open_ms;       /* default 60 s */
    bool batch;                    /* fn gets up to batch_size tasks */
    int batch_size;                /* default 10 */
    int64_t batch_max_wait_ms;     /* a partial batch waits at most this; default 30 s */
} tend_queue_options;

typedef struct tend_task_options {
    tend_priority priority;        /* default normal */
    int64_t delay_ms;              /* run no earlier than now + delay */
    int max_attempts;              /* 0: the queue's */
    int64_t timeout_ms;            /* 0: the queue's */
    const char *idempotency_key;   /* NULL: none; a known key in the queue is not inserted again */
} tend_task_options;

/* Fill the defaults; cannot fail. */
TEND_EXPORT void tend_tasks_options_init(tend_tasks_options *opts);
TEND_EXPORT void tend_queue_options_init(tend_queue_options *opts);
TEND_EXPORT void tend_task_options_init(tend_task_options *opts);

/*
 * Creates the task manager and registers it as a component of rt (before
 * tend_runtime_start()).  *ret_tasks is owned by rt.  0; -EINVAL;
 * -EEXIST (component name taken); -EBUSY (rt started); -ENOMEM.
 */
TEND_EXPORT int tend_tasks_new(tend_runtime *rt, const tend_tasks_options *opts, tend_tasks **ret_tasks);

/* Adds a queue (before the runtime starts).  0; -EINVAL (bad name or
 * values, no fn); -EEXIST; -EBUSY (started); -ENOSPC (256 queues); -ENOMEM. */
TEND_EXPORT int tend_tasks_add_queue(tend_tasks *t, const tend_queue_options *opts);

/*
 * Any thread: submits one task (payload: JSON text, or NULL for null;
 * opts NULL: defaults) and returns at once, its id in ret_id (may be
 * NULL).  With a durable store the task is on disk shortly after (tasks
 * submitted together are written in one transaction), not yet when this
 * returns.  0; -EINVAL (NULL queue, invalid JSON, bad options); -ENOENT
 * (no such queue); -E2BIG (payload over max_payload); -EAGAIN (the task
 * manager has not started yet); -ESHUTDOWN (it is stopping or stopped);
 * -ENOMEM.
 */
TEND_EXPORT int tend_tasks_submit(tend_tasks *t, const char *queue, const char *payload,
                                  const tend_task_options *opts, char ret_id[TEND_TASK_ID_SIZE]);

typedef struct tend_task_info {
    char id[TEND_TASK_ID_SIZE];
    char queue[TEND_QUEUE_NAME_MAX + 1];
    tend_task_state state;
    tend_priority priority;
    int attempts;                  /* started so far */
    int max_attempts;
    int64_t created_at_ms;         /* wall clock */
    int64_t finished_at_ms;        /* 0: not finished */
    char last_error[TEND_TASK_ERROR_MAX]; /* "" when none */
} tend_task_info;

/* The task with that id.  0; -ENOENT; -EINVAL; -EAGAIN; -ESHUTDOWN. */
TEND_EXPORT int tend_tasks_get(tend_tasks *t, const char *id, tend_task_info *ret_info);
/* Cancels a waiting task (a running one is asked to stop).  0; -ENOENT;
 * -EBUSY (finished); -EINVAL; -EAGAIN; -ESHUTDOWN. */
TEND_EXPORT int tend_tasks_cancel(tend_tasks *t, const char *id);
/* Runs a dead or cancelled task again, attempts reset.  Errors as cancel. */
TEND_EXPORT int tend_tasks_retry(tend_tasks *t, const char *id);
/*
 * The dead-letter list of queue: up to max (1..1000) dead tasks, newest
 * first, in *ret_tasks (free() it; NULL when none).  Returns the count;
 * -ENOENT (no queue); -EINVAL; -EAGAIN; -ESHUTDOWN; -ENOMEM.
 */
TEND_EXPORT int tend_tasks_list_dead(tend_tasks *t, const char *queue, size_t max, tend_task_info **ret_tasks);
/* Every dead task of queue back to pending (attempts reset) / deleted.
 * Returns how many; errors as list_dead. */
TEND_EXPORT int tend_tasks_requeue_dead(tend_tasks *t, const char *queue);
TEND_EXPORT int tend_tasks_purge_dead(tend_tasks *t, const char *queue);
/* Pauses (no new dispatch; running tasks go on) or resumes a queue.  It
 * takes effect at once; the call returns once it is also recorded in the
 * store, so with a state_dir a paused queue stays paused across a restart.
 * 0; -ENOENT; -EINVAL; -EAGAIN; -ESHUTDOWN; -EDEADLK on the runtime's
 * thread; a store error (-EIO, -ENOSPC...): in effect now, but not saved. */
TEND_EXPORT int tend_tasks_pause(tend_tasks *t, const char *queue, bool paused);

typedef enum tend_breaker_state {
    TEND_BREAKER_CLOSED = 0,
    TEND_BREAKER_HALF_OPEN = 1,
    TEND_BREAKER_OPEN = 2,
} tend_breaker_state;

typedef struct tend_queue_stats {
    uint64_t depth;                /* pending + scheduled */
    uint64_t depth_by_priority[5]; /* index: tend_priority */
    uint64_t running;
    uint64_t dead;                 /* in the dead-letter list now */
    uint64_t succeeded_total, failed_total, dead_total, cancelled_total; /* attempts' outcomes */
    tend_breaker_state breaker;
    uint64_t breaker_opened_total;
    bool paused;
    double average_ms;             /* per attempt */
    double throughput_per_second;  /* over the last 10 s */
} tend_queue_stats;

typedef struct tend_tasks_stats {
    uint64_t running, depth, dead;
    uint64_t submitted;
    uint64_t total_processed;      /* attempts finished, every outcome */
    double success_rate;           /* 1 when nothing finished yet */
    double average_ms;
    double throughput_per_second;
} tend_tasks_stats;

/* 0; -ENOENT (queue); -EINVAL; -EAGAIN; -ESHUTDOWN. */
TEND_EXPORT int tend_tasks_queue_stats(tend_tasks *t, const char *queue, tend_queue_stats *ret_stats);
TEND_EXPORT int tend_tasks_get_stats(tend_tasks *t, tend_tasks_stats *ret_stats);

/*
 * Waits until no task is waiting or running in any queue (delayed and
 * backing-off tasks count as waiting) and every submitted task has been
 * taken in, or timeout_ms passed.  0; -ETIMEDOUT; -EINVAL; -EAGAIN;
 * -ESHUTDOWN; -EDEADLK (called from the loop thread).  Not from a task
 * function: it would hold the worker that the wait may need.  Tasks
 * submitted with an idempotency key are counted once they are stored.
 */
TEND_EXPORT int tend_tasks_wait_idle(tend_tasks *t, int64_t timeout_ms);

/* "pending", ... / "critical", ... / "closed", ...; NULL out of range. */
TEND_EXPORT const char *tend_task_state_to_string(tend_task_state state);
TEND_EXPORT const char *tend_priority_to_string(tend_priority priority);
TEND_EXPORT const char *tend_breaker_state_to_string(tend_breaker_state state);

#ifdef __cplusplus
}
#endif
#endif
