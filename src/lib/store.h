/*
 * store.h - the durable task store: one asynchronous interface, several
 * backends (store-sqlite.c, the default; store-memory.c, for embedders
 * who want no disk; a PostgreSQL backend can implement the same ops).
 *
 * Threading.  The loop thread owns a store.  It hands the store a
 * store_op with store_submit(), which never blocks on I/O, and the store
 * calls op->done(op, result) later, always on the loop thread and never
 * from within store_submit().  Callbacks run in submission order.  The
 * SQLite backend runs every op on one writer thread: it takes all the ops
 * queued since its last commit, executes them in one transaction (group
 * commit) and completes them together once the transaction is durable;
 * ops that arrive while a commit is in flight go into the next one.  If a
 * transaction fails (disk full, I/O error, an injected fault) every op in
 * it completes with that error and none of it is applied.  Reads run on
 * the same thread, in order, so a read sees every write submitted before
 * it (see docs/store.md).
 *
 * Ownership of an op.  The caller allocates the store_op (anywhere: on
 * the heap, embedded in its own struct) and keeps it, and everything its
 * inputs point to, valid and untouched until done runs.  Outputs (the
 * ret_* fields) are allocated by the store and belong to the caller when
 * done runs; store_op_clear() frees them.  After a failure (result < 0)
 * every ret_* pointer is NULL.
 *
 * Errors are negative errno values:
 *   -EINVAL    bad input (store_submit returns it; done is not called)
 *   -E2BIG     a field over its limit (likewise)
 *   -ESHUTDOWN the store is closing (likewise)
 *   -ENOENT    no such task (GET, UPDATE)
 *   -ESTALE    UPDATE: the task's version or state is not the expected one
 *   -EEXIST    INSERT: a task with that id already exists
 *   -ENOSPC, -EIO, -EBUSY, -ENOMEM, -EUCLEAN (corrupt database), -EROFS:
 *              the transaction failed; nothing of the group was applied.
 *
 * Times are wall-clock milliseconds since the epoch (they survive a
 * restart); 0 means "not set".
 */
#ifndef TEND_LIB_STORE_H
#define TEND_LIB_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Task ids: 26 Crockford base32 characters (a 48-bit millisecond
 * timestamp, then 80 bits that are random at each new millisecond and
 * incremented within one), like a ULID: unique, and sorting them as
 * strings sorts them by creation time. */
#define STORE_ID_LEN 26
#define STORE_ID_SIZE (STORE_ID_LEN + 1)

/* Limits, in bytes, checked by store_submit (-E2BIG). */
#define STORE_QUEUE_MAX 128
#define STORE_KEY_MAX 256
#define STORE_PAYLOAD_MAX (1024 * 1024)
#define STORE_TAGS_MAX (64 * 1024)
/* last_error is truncated (at a UTF-8 boundary) to this many bytes. */
#define STORE_ERROR_MAX 4096
/* Tasks in one INSERT op; rows asked of FETCH_READY, CLAIM and LIST. */
#define STORE_INSERT_MAX 100000
#define STORE_LIMIT_MAX 100000

/* The numeric values are stored in the database: never renumber. */
typedef enum store_task_state {
    STORE_TASK_PENDING = 0,
    STORE_TASK_SCHEDULED = 1, /* delayed or backing off until run_at */
    STORE_TASK_RUNNING = 2,
    STORE_TASK_SUCCEEDED = 3,
    STORE_TASK_DEAD = 4,
    STORE_TASK_CANCELLED = 5,
    STORE_TASK_STATE_MAX,
} store_task_state;

/* A bit per state, for store_op.update.expect_states. */
#define STORE_STATE_BIT(s) (1u << (s))

typedef enum store_priority {
    STORE_PRIORITY_CRITICAL = 0,
    STORE_PRIORITY_HIGH = 1,
    STORE_PRIORITY_NORMAL = 2,
    STORE_PRIORITY_LOW = 3,
    STORE_PRIORITY_BACKGROUND = 4,
    STORE_PRIORITY_MAX,
} store_priority;

/*
 * One task record.  The strings are heap-allocated and owned by the
 * record when it comes from the store (store_task_clear/free release
 * them); in an INSERT the caller owns them and the store only reads them.
 * payload and tags are JSON text; payload is NUL-terminated and
 * payload_len excludes the NUL.
 *
 * attempts counts the attempts started, the one in progress included: a
 * claim increments it, and a task found `running` after a crash already
 * has its interrupted attempt counted.
 */
typedef struct store_task {
    char id[STORE_ID_SIZE];
    store_priority priority;
    store_task_state state;
    int32_t attempts;
    int32_t max_attempts;
    int64_t timeout_ms;
    int64_t run_at; /* eligible from; FIFO order within a priority */
    int64_t created_at;
    int64_t started_at;  /* the last attempt's start */
    int64_t finished_at; /* succeeded, dead or cancelled at */
    int64_t lease_until; /* running: pull-queue lease / attempt deadline */
    int64_t version;     /* 1 at insert, +1 at every change */
    char *queue;
    char *payload;
    size_t payload_len;
    char *idempotency_key; /* NULL: none; unique within the queue */
    char *tags;            /* JSON array text, or NULL */
    char *last_error;      /* NULL: none */
} store_task;

/* Frees the strings of t and zeroes it; NULL-safe. */
void store_task_clear(store_task *t);
/* store_task_clear() then free(t); NULL-safe; returns NULL. */
store_task *store_task_free(store_task *t);
/* Clears and frees an array of n records as returned in ret_tasks;
 * NULL-safe; returns NULL. */
store_task *store_tasks_free(store_task *tasks, size_t n);
/* Deep copy of src into *dst (dst's previous contents are not freed).
 * 0 or -ENOMEM (then *dst is zeroed). */
int store_task_copy(store_task *dst, const store_task *src);

/* "pending" ... / "critical" ...; NULL for values out of range. */
const char *store_task_state_to_string(store_task_state s);
const char *store_priority_to_string(store_priority p);
/* The enum value, or -EINVAL. */
int store_task_state_from_string(const char *s);
int store_priority_from_string(const char *s);

/*
 * Id generation.  A generator is monotonic: every id it returns sorts
 * after the previous one, even when the wall clock steps back or many ids
 * are made in one millisecond.  Thread-safe.  Each store has one
 * (store_id_new); in tend there is one store per process, so ids are
 * monotonic within the process.
 */
typedef struct store_idgen {
    pthread_mutex_t lock;
    int64_t last_ms;
    uint16_t rand_hi; /* 80 bits: 16 + 64 */
    uint64_t rand_lo;
} store_idgen;

void store_idgen_init(store_idgen *g);
void store_idgen_destroy(store_idgen *g);
/* Writes a new id (26 chars + NUL) for wall time now_ms into ret_id. */
void store_idgen_next(store_idgen *g, int64_t now_ms, char ret_id[STORE_ID_SIZE]);
/* Encodes the 128 bits; exposed for tests. */
void store_id_format(int64_t ms, uint16_t rand_hi, uint64_t rand_lo, char ret_id[STORE_ID_SIZE]);
/* True when s is 26 Crockford base32 characters (upper case). */
bool store_id_valid(const char *s);
/* The millisecond timestamp encoded in an id, or -EINVAL. */
int64_t store_id_time_ms(const char *id);

/* ---- Operations ---------------------------------------------------- */

/* RECOVER's last_error for a task of an uncharged queue. */
#define STORE_RECOVER_UNCHARGED_TEXT "interrupted: tend stopped while the task was leased (attempt not counted)"

typedef enum store_op_kind {
    STORE_OP_INSERT,       /* write */
    STORE_OP_UPDATE,       /* write */
    STORE_OP_FETCH_READY,  /* read */
    STORE_OP_CLAIM,        /* write: fetch ready + mark running (SKIP LOCKED) */
    STORE_OP_GET,          /* read */
    STORE_OP_LIST,         /* read */
    STORE_OP_COUNTS,       /* read */
    STORE_OP_RECOVER,      /* write */
    STORE_OP_PURGE_DEAD,   /* write */
    STORE_OP_REQUEUE_DEAD, /* write */
    STORE_OP_RETENTION,    /* write */
    /* Sessions (SPEC "persist: true"); see store_session below. */
    STORE_OP_SESSION_PUT,    /* write: insert or replace one session */
    STORE_OP_SESSION_TOUCH,  /* write: new expires_at / ttl */
    STORE_OP_SESSION_DELETE, /* write */
    STORE_OP_SESSION_SWEEP,  /* write: delete the expired sessions */
    STORE_OP_SESSION_LOAD,   /* read: every unexpired session */
    STORE_OP_QUEUE_PAUSE,    /* write: record that a queue is paused or not */
    STORE_OP_KIND_MAX,
    STORE_OP_ANY = -1, /* store_inject_fault: any op */
} store_op_kind;

/* store_op.update.fields: which columns an UPDATE writes. */
enum {
    STORE_FIELD_STATE = 1u << 0,
    STORE_FIELD_ATTEMPTS = 1u << 1,
    STORE_FIELD_RUN_AT = 1u << 2,
    STORE_FIELD_LEASE = 1u << 3, /* lease_until */
    STORE_FIELD_LAST_ERROR = 1u << 4,
    STORE_FIELD_STARTED_AT = 1u << 5,
    STORE_FIELD_FINISHED_AT = 1u << 6,
    STORE_FIELD_PRIORITY = 1u << 7,
    STORE_FIELD_MAX_ATTEMPTS = 1u << 8,
    STORE_FIELD_TIMEOUT = 1u << 9, /* timeout_ms */
    STORE_FIELD_ALL = (1u << 10) - 1,
};

/* Per queue: how many tasks are in each state, by priority.  Depth (SPEC
 * tend_queue_depth) is n[PENDING][p] + n[SCHEDULED][p]. */
typedef struct store_queue_counts {
    char *queue;
    uint64_t n[STORE_TASK_STATE_MAX][STORE_PRIORITY_MAX];
} store_queue_counts;

/* A persisted session (SPEC sessions.persist): key -> JSON text with its
 * times (wall-clock ms).  Returned by SESSION_LOAD; strings owned by the
 * record (store_sessions_free). */
#define STORE_SESSION_VALUE_MAX (16 * 1024 * 1024)
typedef struct store_session {
    char *key;   /* 1..STORE_KEY_MAX bytes, NUL-terminated */
    char *value; /* NUL-terminated; value_len excludes the NUL */
    size_t value_len;
    int64_t created_at;
    int64_t expires_at;
    int64_t ttl_ms;
} store_session;

/* Frees an array of n sessions as returned by SESSION_LOAD; NULL-safe;
 * returns NULL. */
store_session *store_sessions_free(store_session *v, size_t n);
/* Frees an array of n strings (RECOVER ret_paused); NULL-safe; returns NULL. */
char **store_names_free(char **v, size_t n);

typedef struct store_op store_op;

/* Called on the loop thread once per submitted op.  result: >= 0 on
 * success (for most ops the number of tasks concerned), or -errno.  The
 * callback may free the op, submit new ops, or close the store. */
typedef void (*store_op_done_fn)(store_op *op, int result);

struct store_op {
    store_op_kind kind;
    store_op_done_fn done;
    void *userdata;
    union {
        /*
         * INSERT: tasks[0..n) in one atomic step.  store_submit fills in,
         * in the caller's records, an empty id (a new one), a zero
         * created_at (now), a zero run_at (created_at) and sets version 1.
         * A task whose idempotency_key already exists in its queue (also
         * earlier in the same batch) is not inserted: ret_existing[i]
         * holds the stored task (ret_existing is NULL when there was no
         * such hit; otherwise an array of n where entries without a hit
         * have an empty id).  Result: ret_created.  A duplicate id fails
         * the op with -EEXIST and inserts none of it.
         */
        struct {
            store_task *tasks;
            size_t n;
            store_task *ret_existing;
            size_t ret_created;
        } insert;
        /*
         * UPDATE: writes task's `fields` columns to the stored task with
         * task->id, if its version is expect_version (0: any) and its
         * state is in expect_states (a STORE_STATE_BIT mask; 0: any); the
         * version is incremented.  payload, tags, queue and the
         * idempotency key never change.  Result 0 with ret_state and
         * ret_version as stored after the update; -ESTALE with
         * ret_state/ret_version the current ones; -ENOENT.
         */
        struct {
            const store_task *task;
            unsigned fields;
            unsigned expect_states;
            int64_t expect_version;
            int ret_state;
            int64_t ret_version;
        } update;
        /*
         * FETCH_READY: up to limit tasks of queue that are pending or
         * scheduled with run_at <= now, strict priority (critical first),
         * then by run_at, then by id (FIFO), skipping the ids in
         * exclude[0..n_exclude) (those the caller already holds).  Changes
         * nothing.  Result: ret_n.
         */
        struct {
            const char *queue;
            int64_t now;
            size_t limit;
            const char *const *exclude;
            size_t n_exclude;
            store_task *ret_tasks;
            size_t ret_n;
        } fetch;
        /*
         * CLAIM: the same selection as FETCH_READY (no exclusion), and in
         * the same transaction each task becomes running: attempts + 1,
         * started_at = now, lease_until, version + 1.  The records
         * returned are as stored after the claim.  What a multi-node
         * backend does with SELECT ... FOR UPDATE SKIP LOCKED.
         *
         * borrow (optional): the caller accepts lent records.  A backend
         * that keeps its records in memory may then return ret_tasks
         * whose strings (queue, payload, idempotency_key, tags,
         * last_error) point into its own records, and sets ret_borrowed:
         * only the array is the caller's (store_op_clear frees just it;
         * never store_task_clear a lent record).  Lent strings stay valid
         * while the task stays running, until an UPDATE of it that
         * writes last_error or moves it out of running has executed
         * (nothing else changes a running task's strings), and at most
         * until the store closes.  Backends with no such records (SQLite,
         * PostgreSQL) copy as without it: ret_borrowed false.
         */
        struct {
            const char *queue;
            int64_t now;
            size_t limit;
            int64_t lease_until;
            bool borrow;
            store_task *ret_tasks;
            size_t ret_n;
            bool ret_borrowed;
        } claim;
        /* GET: ret_task (store_task_free it) or -ENOENT. */
        struct {
            const char *id;
            store_task *ret_task;
        } get;
        /*
         * LIST: newest first (by id), optionally only queue (NULL: all)
         * and state (-1: all), at most limit (0: 100), starting after
         * cursor (NULL or "": from the newest).  ret_cursor is the cursor of the next
         * page, "" when there is none.  Result: ret_n.
         */
        struct {
            const char *queue;
            int state;
            size_t limit;
            const char *cursor;
            store_task *ret_tasks;
            size_t ret_n;
            char ret_cursor[STORE_ID_SIZE];
        } list;
        /* COUNTS: one entry per known queue (only queue when not NULL),
         * sorted by name; free with store_counts_free.  Result: ret_n. */
        struct {
            const char *queue;
            store_queue_counts *ret_counts;
            size_t ret_n;
        } counts;
        /*
         * RECOVER (once, at start, before dispatching): every running task
         * goes back to pending with its interrupted attempt counted and
         * last_error saying so, or to dead (finished_at = now) when that
         * was its last attempt.  Result: ret_requeued + ret_dead.  It
         * also reads back what the last run left of the queues: ret_paused
         * names the queues a QUEUE_PAUSE recorded as paused, sorted
         * (ret_n_paused of them; store_op_clear frees them).  The running
         * tasks of the queues named in uncharged (n_uncharged, may be 0)
         * go back to pending with the interrupted attempt NOT counted:
         * pull queues, whose tasks run in the workers, not in tend, so
         * tend stopping says nothing about the task (and a lease claimed
         * ahead but never handed out was no attempt at all).
         */
        struct {
            int64_t now;
            const char *const *uncharged;
            size_t n_uncharged;
            size_t ret_requeued;
            size_t ret_dead;
            char **ret_paused;
            size_t ret_n_paused;
        } recover;
        /* QUEUE_PAUSE: remember that queue is paused (or is not), for the
         * RECOVER of the next start.  Result 0. */
        struct {
            const char *queue;
            bool paused;
        } queue_pause;
        /* PURGE_DEAD: delete the dead tasks of queue.  REQUEUE_DEAD: they
         * become pending, attempts 0, run_at now.  Result: ret_count. */
        struct {
            const char *queue;
            int64_t now;
            size_t ret_count;
        } dead;
        /* RETENTION: delete succeeded / dead / cancelled tasks finished
         * before the given times (0: keep), at most max_rows of them (0:
         * no limit; repeat while the result equals max_rows, which keeps
         * each transaction short).  Result: ret_count. */
        struct {
            int64_t succeeded_before;
            int64_t dead_before;
            int64_t cancelled_before;
            size_t max_rows;
            size_t ret_count;
        } retention;
        /*
         * SESSION_PUT: insert or replace key with value (value_len bytes,
         * 0: strlen) and the times.  SESSION_TOUCH: set expires_at and
         * ttl_ms of key.  SESSION_DELETE: delete key.  Result: rows
         * changed (TOUCH/DELETE of a missing key: 0, not an error).
         */
        struct {
            const char *key;
            const char *value;
            size_t value_len;
            int64_t created_at;
            int64_t expires_at;
            int64_t ttl_ms;
        } session;
        /* SESSION_LOAD: every session with expires_at > now (ret_sessions,
         * free with store_sessions_free; result ret_n).  SESSION_SWEEP:
         * delete those with expires_at <= now; result the number. */
        struct {
            int64_t now;
            store_session *ret_sessions;
            size_t ret_n;
        } session_load;
    };
    /* Private to the store. */
    store_op *priv_next;
    int priv_result;
};

/* Frees the outputs (ret_*) of a completed op and resets them; the
 * inputs are the caller's and are left alone. */
void store_op_clear(store_op *op);
/* Frees an array from COUNTS; NULL-safe; returns NULL. */
store_queue_counts *store_counts_free(store_queue_counts *c, size_t n);
const char *store_op_kind_to_string(store_op_kind k);

/* ---- The store ----------------------------------------------------- */

typedef enum store_backend_kind {
    STORE_BACKEND_SQLITE = 0,
    STORE_BACKEND_MEMORY = 1,
} store_backend_kind;

typedef enum store_sync {
    STORE_SYNC_FULL = 0,   /* fsync every commit: acknowledged = durable */
    STORE_SYNC_NORMAL = 1, /* WAL synced at checkpoints only: a power
                            * loss may lose the last commits */
} store_sync;

typedef struct store_config {
    store_backend_kind backend;
    /* SQLite: the database is <state_dir>/tend.db unless path is set. */
    const char *state_dir;
    const char *path;
    store_sync sync;
    /* SQLite page cache in KiB (0: 16000). */
    int cache_kib;
} store_config;

typedef struct store store;

/*
 * Opens a store on loop (the thread that calls this owns it from now on).
 * SQLite: creates the file if needed, applies the schema migrations in
 * order and starts the writer thread.  This call blocks on disk I/O; call
 * it at start-up, before the loop serves anything.  Tasks left running by
 * a crash stay running until a RECOVER op.  On failure returns -errno,
 * has released everything, and, when ret_message is not NULL, sets it to
 * a sentence saying what failed (caller frees; may be NULL).  On success
 * *ret is the store; close it with store_close().  An idle store does not
 * keep the loop alive; one with ops in flight does.
 */
int store_open(uv_loop_t *loop, const store_config *cfg, store **ret, char **ret_message);

/*
 * Queues op.  0: op->done will run exactly once, later, on the loop.  <0
 * (-EINVAL, -E2BIG, -ESHUTDOWN): nothing was queued and done will not
 * run.  Never blocks on I/O.  Loop thread only.
 */
int store_submit(store *s, store_op *op);

/* Writes a new id into ret_id; any thread. */
void store_id_new(store *s, char ret_id[STORE_ID_SIZE]);

typedef void (*store_close_fn)(void *data);
/*
 * Stops accepting ops (store_submit answers -ESHUTDOWN), finishes and
 * completes every op already submitted (their done callbacks run), shuts
 * the backend down (joins the writer thread, closes the database), frees
 * the store and then calls cb(data) on the loop.  The loop must keep
 * running until then.  Calling it twice is a no-op.
 */
void store_close(store *s, store_close_fn cb, void *data);

typedef struct store_stats {
    uint64_t groups;         /* groups (transactions) begun */
    uint64_t commits;        /* groups committed */
    uint64_t failed_commits; /* groups that failed as a whole */
    uint64_t ops;            /* ops completed */
    uint64_t tasks_inserted;
    uint64_t max_group;      /* most ops in one transaction */
    uint64_t in_flight;      /* submitted, not yet completed */
} store_stats;
/* Loop thread. */
void store_get_stats(store *s, store_stats *ret);
const char *store_backend_name(store *s);

/*
 * Fault injection: the next transaction that contains an op of `kind`
 * (STORE_OP_ANY: any) fails with `error` (a negative errno such as
 * -ENOSPC or -EIO) and is rolled back.  The same can be armed from the
 * environment at store_open, for integration tests of a whole tend:
 * TEND_STORE_FAULT=<op name|any>:<ENOSPC|EIO>[:<matching groups to let
 * through first>], e.g. TEND_STORE_FAULT=insert:ENOSPC:2.  In the SQLite backend the fault is a real failed write (a VFS
 * shim makes the writer thread's next write return SQLITE_FULL or
 * SQLITE_IOERR_WRITE), so SQLite's own error path is what gets tested.
 * error 0 disarms.  Loop thread.
 */
void store_inject_fault(store *s, store_op_kind kind, int error);

/* ---- Backend interface (store-*.c only) ----------------------------- */

typedef struct store_backend {
    const char *name;
    /* Opens the backend's resources; may block (start-up). */
    int (*open)(store *s, const store_config *cfg, void **ret_data, char **ret_message);
    /* Loop thread: queue op (validated, ids filled).  Must not block. */
    void (*submit)(void *data, store_op *op);
    /* Loop thread: finish every queued op, then call
     * store_backend_stopped() (from any thread). */
    void (*stop)(void *data);
    /* Loop thread, after store_backend_stopped(): release everything. */
    void (*free)(void *data);
    /* Optional; loop thread, at each wake-up of the store's async handle,
     * before completions are delivered. */
    void (*poll)(void *data);
} store_backend;

extern const store_backend store_backend_sqlite;
extern const store_backend store_backend_memory;

/* Any thread: hand a chain of executed ops (linked by priv_next, each
 * with priv_result set) back to the loop. */
void store_complete(store *s, store_op *head);
/* Any thread: wake the loop so that backend->poll runs. */
void store_kick(store *s);
/* Any thread: the backend has finished every op and stopped. */
void store_backend_stopped(store *s);
/* Any thread: the backend starts executing the group starting at head
 * (linked by priv_next).  Returns the error of an injected fault that
 * applies to it (disarming it): the group must then fail as a whole;
 * else 0. */
int store_group_begin(store *s, const store_op *head);
/* Any thread: account one transaction of nops ops. */
void store_count_commit(store *s, size_t nops, size_t ntasks, bool ok);
/* Frees the outputs of op and resets them (as store_op_clear). */
void store_op_reset_outputs(store_op *op);
/* True for ops that write. */
bool store_op_kind_writes(store_op_kind k);
/* Truncates an error text to at most STORE_ERROR_MAX bytes without
 * cutting a UTF-8 sequence; returns the length to keep. */
size_t store_error_len(const char *s);

#endif
