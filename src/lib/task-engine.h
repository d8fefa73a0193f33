/*
 * task-engine.h - the durable task engine (SPEC 1 Task, 2 `tasks:`, 5
 * Tasks): named queues with strict priorities, a global worker limit and
 * per-queue concurrency, delays, timeouts, retries with exponential backoff
 * and jitter, a circuit breaker and a rate limit per queue, pause/resume,
 * cancel, retry, dead letters, idempotency keys, dry runs, batch mode,
 * retention and statistics, over the asynchronous task store (store.h).
 *
 * Threading.  The loop thread owns the engine: every function here runs on
 * it, except task_engine_enqueue(), which any thread may call (the C API's
 * thread-safe submission: a mutex-protected intake list and one uv_async
 * wake-up, drained in bulk into one INSERT per wake-up).  C-function
 * handlers run on a pool of tasks.workers threads; exec and http handlers
 * run on the loop (a child process, a libcurl multi request).
 *
 * Memory.  The engine never loads the pending tasks: it CLAIMs from the
 * store as many as it can start now (free slots, rate-limit tokens, the
 * breaker's trial), so only running tasks (and, for batch queues, one
 * batch's worth of ids) are in memory.  Counts per queue/state/priority
 * (metrics, /api/v1/queues) are kept incrementally and re-read from the
 * store every few seconds.
 *
 * Results are >= 0 or -errno: -ENOENT no such queue or task, -EINVAL bad
 * input, -E2BIG over a limit, -ESHUTDOWN the engine is stopping, -EBUSY the
 * task's state forbids the action (ret task says what it is), -EOPNOTSUPP
 * the queue's handler does not support it (reserve on a non-pull queue),
 * and the store's errors (-ENOSPC, -EIO, ...: nothing was applied).
 */
#ifndef TEND_LIB_TASK_ENGINE_H
#define TEND_LIB_TASK_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tend/spec.h>
#include <uv.h>

#include "breaker.h"
#include "histogram.h"
#include "store.h"

struct reaper;
typedef struct task_engine task_engine;

/* ---- C-function handlers (libtend) ----------------------------------- */

/* What a C function gets.  For a batch queue, n > 1 entries; else n == 1. */
typedef struct task_func_item {
    const char *id;
    const char *payload; /* JSON text, NUL-terminated */
    size_t payload_len;
    int attempt;         /* 1-based */
} task_func_item;

typedef struct task_func_ctx task_func_ctx;
struct task_func_ctx {
    const char *queue;
    const task_func_item *items;
    size_t n;
    /* Set by the function (optional): why it failed (copied). */
    char error[512];
    /* Batch mode: the function marks the items that failed (failed[i] =
     * true) and returns 0; NULL when n == 1. */
    bool *failed;
    /* Private. */
    volatile int priv_cancel;
};

/* Returns 0: succeeded; TASK_FUNC_PERMANENT (65, EX_DATAERR): failed for
 * good (dead at once); anything else: a failed attempt (retried). */
#define TASK_FUNC_PERMANENT 65
typedef int (*task_func)(task_func_ctx *ctx, void *userdata);

/* True once the engine wants the function to stop (its timeout passed, the
 * task was cancelled, or shutdown gave up waiting).  Any thread. */
bool task_func_cancelled(const task_func_ctx *ctx);

/* ---- Creating and running ------------------------------------------- */

typedef struct task_engine_callbacks {
    void *data;
    /* One log line (syslog level); queue may be NULL. */
    void (*log)(void *data, int level, const char *queue, const char *msg);
    /* A task changed state (SPEC "task.state" events). */
    void (*state_changed)(void *data, const char *id, const char *queue, store_task_state from,
                          store_task_state to);
} task_engine_callbacks;

typedef struct task_engine_config {
    uv_loop_t *loop;
    store *store;                /* the caller opens, RECOVERs and closes it */
    const tend_tasks_spec *spec; /* must outlive the engine */
    struct reaper *reaper;       /* collects exec handlers' exits (required for exec queues) */
    struct guard *guard;         /* optional: exec handlers' process groups are registered with
                                  * it, so they die with tend even on SIGKILL */
    const char *cwd;             /* exec handlers' working directory; NULL: inherit */
    task_engine_callbacks cb;
    /* The queues the store's RECOVER reported paused (ret_paused): they
     * start paused.  Names of queues not in spec are ignored. */
    char *const *paused;
    size_t n_paused;
} task_engine_config;

/*
 * The queues whose interrupted attempts RECOVER must not count (its
 * `uncharged` input): the pull queues of spec.  *ret is an array of
 * pointers to spec's names (free() it, after the RECOVER completed); NULL
 * with *ret_n 0 when there are none.  0 or -ENOMEM.
 */
int task_engine_recover_uncharged(const tend_tasks_spec *spec, const char ***ret, size_t *ret_n);

/*
 * Creates the engine for spec's queues; dispatching starts with
 * task_engine_start().  0 or -errno with a message in err.
 */
int task_engine_new(const task_engine_config *cfg, task_engine **ret, char *err, size_t errlen);

/* Registers the C function of a queue whose handler is TEND_HANDLER_FUNC
 * (before start).  0, -ENOENT, -EINVAL (not a func queue). */
int task_engine_set_func(task_engine *e, const char *queue, task_func fn, void *userdata);

/* Starts dispatching (call after the store's RECOVER): reads the counts,
 * arms retention, claims what is ready.  0 or -errno. */
int task_engine_start(task_engine *e);

/*
 * Graceful stop (SPEC 4): submissions get -ESHUTDOWN at once, nothing new
 * is dispatched, parked reserves are answered (-ESHUTDOWN), running tasks
 * get until deadline_ms from now; then they are stopped (exec: SIGKILL to
 * the group) and requeued with the interrupted attempt counted.  done(data)
 * runs on the loop once every task's outcome is written to the store (the
 * caller then closes the store).  Idempotent; a second call with a shorter
 * deadline shortens it.
 */
void task_engine_shutdown(task_engine *e, int64_t deadline_ms, void (*done)(void *data), void *data);

/* Frees a stopped engine (after the shutdown's done ran, or one never
 * started).  NULL-safe; returns NULL. */
task_engine *task_engine_free(task_engine *e);

bool task_engine_stopping(const task_engine *e);

/* ---- Submitting -------------------------------------------------------- */

/* One task to submit.  Zeroed fields take the queue's defaults. */
typedef struct task_submit {
    const char *payload;    /* JSON text (validated by the caller); NULL: null */
    size_t payload_len;
    int priority;           /* store_priority; use STORE_PRIORITY_NORMAL for the default */
    int64_t delay_ms;       /* > 0: run no earlier than now + delay */
    int64_t run_at;         /* wall ms; > 0: run no earlier (wins over delay) */
    int max_attempts;       /* 0: the queue's */
    int64_t timeout_ms;     /* 0: the queue's */
    const char *idempotency_key; /* NULL: none */
    const char *tags;       /* JSON array text or NULL */
} task_submit;

/*
 * result: >= 0 (number created) or -errno (nothing was stored).  tasks[i]
 * are the records as stored; existing[i].id[0] != 0 when tasks[i]'s
 * idempotency key was already known: existing[i] is that stored task and
 * tasks[i] was not inserted.  existing is NULL when no key hit.  Both are
 * valid only during the call.
 */
typedef void (*task_submit_done)(void *data, int result, const store_task *tasks,
                                 const store_task *existing, size_t n);

/*
 * Submits n tasks to queue in one atomic, durable INSERT (loop thread).
 * 0: done will run once the INSERT committed (or failed); <0 (-ENOENT
 * unknown queue, -EINVAL, -E2BIG payload over tasks.max_payload,
 * -ESHUTDOWN): done will not run.
 */
int task_engine_submit(task_engine *e, const char *queue, const task_submit *subs, size_t n,
                       task_submit_done done, void *data);

/*
 * Any thread: queues one task for submission and returns at once with its
 * id in ret_id (may be NULL).  Tasks enqueued between two loop wake-ups
 * are inserted together.  0, -ENOENT, -E2BIG, -ENOMEM, -ESHUTDOWN.  The
 * task is durable once the store committed its INSERT (not yet when this
 * returns); a failed INSERT is logged and counted.
 */
int task_engine_enqueue(task_engine *e, const char *queue, const task_submit *sub, char ret_id[STORE_ID_SIZE]);

/* ---- Acting on tasks (loop thread; done runs later, once) -------------- */

/* task: the record after the action (or the current one with -EBUSY), NULL
 * on other errors; valid only during the call. */
typedef void (*task_done)(void *data, int result, const store_task *task);
/* tasks[0..n) of one LIST page and the cursor of the next ("" at the end). */
typedef void (*task_list_done)(void *data, int result, const store_task *tasks, size_t n,
                               const char *next_cursor);
/* result: the number of tasks concerned, or -errno. */
typedef void (*task_count_done)(void *data, int result);

int task_engine_get(task_engine *e, const char *id, task_done done, void *data);
/* queue NULL: all; state -1: all; limit 0: 100; cursor NULL/"": newest. */
int task_engine_list(task_engine *e, const char *queue, int state, size_t limit, const char *cursor,
                     task_list_done done, void *data);
/* pending/scheduled -> cancelled; running -> the handler is stopped, then
 * cancelled.  -EBUSY for a finished task. */
int task_engine_cancel(task_engine *e, const char *id, task_done done, void *data);
/* dead/cancelled/scheduled (a failed attempt waiting) -> pending now,
 * attempts reset.  -EBUSY otherwise. */
int task_engine_retry(task_engine *e, const char *id, task_done done, void *data);
int task_engine_requeue_dead(task_engine *e, const char *queue, task_count_done done, void *data);
int task_engine_purge_dead(task_engine *e, const char *queue, task_count_done done, void *data);
/*
 * Pausing stops dispatching (running tasks go on); resuming starts it
 * again.  Either takes effect at once, and is also written to the store so
 * that the next start keeps it (RECOVER's ret_paused); done (may be NULL)
 * gets 0 once that write is durable, or its error (the queue stays as
 * asked in memory: a restart would then forget it).  Returns 0, -ENOENT
 * or the error that kept the write from being submitted (the in-memory
 * change is made all the same).
 */
int task_engine_pause(task_engine *e, const char *queue, bool paused, task_count_done done, void *data);

/* ---- Pull queues --------------------------------------------------------- */

typedef struct task_reserve task_reserve;
/* result 0 with task: leased (lease until task->lease_until); 0 with
 * task NULL: nothing within wait; <0: -ESHUTDOWN, store errors. */
typedef void (*task_reserve_done)(void *data, int result, const store_task *task);
/*
 * Leases the next task of a pull queue, waiting up to wait_ms (0: answer
 * at once).  0: done runs exactly once, either inside this call (a lease
 * claimed ahead was ready; *ret is then NULL) or later; or -ENOENT /
 * -EOPNOTSUPP / -ESHUTDOWN.  *ret (optional), when not NULL, lets the
 * caller give up early with task_engine_reserve_cancel (done does not run
 * then).
 */
int task_engine_reserve(task_engine *e, const char *queue, int64_t wait_ms, task_reserve_done done,
                        void *data, task_reserve **ret);
void task_engine_reserve_cancel(task_engine *e, task_reserve *r);
/* A leased task: ack succeeds it; nack fails the attempt (retry_in_ms < 0:
 * the queue's backoff; error may be NULL); touch extends the lease by the
 * queue's timeout from now.  -ENOENT unknown, -EBUSY not leased.  On a
 * queue with `ack: async` (spec ack_async) done runs as soon as the UPDATE
 * is queued in the store, possibly inside the call, with the record as it
 * will be stored; a crash before the commit leaves the task running in the
 * store (RECOVER requeues it), and a failed commit is retried and logged. */
int task_engine_ack(task_engine *e, const char *id, task_done done, void *data);
int task_engine_nack(task_engine *e, const char *id, const char *error, int64_t retry_in_ms,
                     task_done done, void *data);
int task_engine_touch(task_engine *e, const char *id, task_done done, void *data);

/* ---- Views (loop thread, in memory, no store access) --------------------- */

typedef struct task_queue_info {
    const tend_queue_spec *spec;
    bool paused;
    /* Counts (exact after each periodic refresh, incremental between). */
    uint64_t n[STORE_TASK_STATE_MAX][STORE_PRIORITY_MAX];
    uint64_t depth;          /* pending + scheduled */
    uint64_t running;
    uint64_t dead;
    enum breaker_state breaker;
    unsigned breaker_failures;
    uint64_t breaker_opened_total;
    double rate_limit;       /* per second, 0: unlimited */
    double tokens;           /* available now (+inf unlimited) */
    uint64_t submitted[STORE_PRIORITY_MAX];
    uint64_t finished[4];    /* succeeded, failed (attempts), dead, cancelled */
    const histogram *duration;   /* seconds per attempt */
    const histogram *batch_size; /* tasks per batch (batch queues) */
    double avg_ms;           /* average attempt duration */
    double throughput;       /* finished per second over the last 10 s */
} task_queue_info;

enum { TASK_RESULT_SUCCEEDED = 0, TASK_RESULT_FAILED, TASK_RESULT_DEAD, TASK_RESULT_CANCELLED };
const char *task_result_name(int r);

size_t task_engine_n_queues(const task_engine *e);
/* 0 or -ENOENT (index out of range / no such name). */
int task_engine_queue_info(task_engine *e, size_t index, task_queue_info *ret);
int task_engine_queue_index(const task_engine *e, const char *name);

typedef struct task_engine_stats {
    uint64_t running_tasks;
    uint64_t queue_depth;
    uint64_t dead_letter_count;
    double success_rate;     /* succeeded / (succeeded + failed attempts + dead), 1 when none */
    uint64_t total_processed;/* finished attempts (every result) */
    double average_processing_time_ms;
    double throughput_per_second;
    uint64_t submitted;
    uint64_t intake_failed;  /* task_engine_enqueue() tasks whose INSERT failed */
} task_engine_stats;
void task_engine_get_stats(task_engine *e, task_engine_stats *ret);

/* The task record as JSON text for handlers: {"id","queue","attempt","payload"}
 * (the payload raw).  Caller frees.  NULL on -ENOMEM. */
char *task_engine_task_json(const store_task *t, size_t *ret_len);

#endif
