/*
 * store-sqlite.c - the default task store: one SQLite database,
 * <state_dir>/tend.db, in WAL mode with synchronous=FULL, written by one
 * thread.
 *
 * The loop queues ops (sq_submit); the writer thread takes everything
 * queued since its last commit and runs it as one transaction (group
 * commit), then hands the whole group back to the loop through
 * store_complete().  Reads run on the same thread and connection, in
 * order, so they see every write submitted before them; a group of reads
 * only uses a deferred transaction and costs no fsync.  Nothing here is
 * touched by the loop after store_open except the queue under q->lock.
 *
 * Every SQLite result code is converted to -errno in one place,
 * sqlite_errno().  Logical outcomes (no such task, a version conflict, a
 * duplicate id) are per op and do not abort the group; any other error
 * fails the whole group, which is rolled back.
 *
 * Fault injection goes through a pass-through VFS ("tend-fault") whose
 * writes fail while the writer thread has armed it, so an injected fault
 * takes SQLite's real disk-full path.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macros.h"

#define APPLICATION_ID 0x74656e64 /* "tend" */

/* ---- Errors ---------------------------------------------------------- */

/* The one adapter from SQLite result codes to -errno. */
static int sqlite_errno(sqlite3 *db, int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_IOERR:
        if (rc == SQLITE_IOERR_NOMEM)
            return -ENOMEM;
        if (db) {
            int e = sqlite3_system_errno(db);
            if (e == ENOSPC || e == EDQUOT)
                return -ENOSPC;
        }
        return -EIO;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EUCLEAN;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        if (db) {
            int e = sqlite3_system_errno(db);
            if (e > 0)
                return -e;
        }
        return -EIO;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_TOOBIG:
        return -E2BIG;
    case SQLITE_INTERRUPT:
    case SQLITE_ABORT:
        return -ECANCELED;
    case SQLITE_PROTOCOL:
        return -EPROTO;
    case SQLITE_RANGE:
        return -ERANGE;
    case SQLITE_MISUSE:
    case SQLITE_ERROR:
    default:
        return -EIO;
    }
}

/* ---- Fault-injection VFS ---------------------------------------------- */

/* Armed by the writer thread around a transaction that must fail: the
 * SQLite code every write returns meanwhile (0: pass through). */
static _Thread_local int fault_write_rc;

typedef struct fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* follows this struct in the same allocation */
} fault_file;

#define REAL(f) (((fault_file *)(f))->real)

static int ff_close(sqlite3_file *f) {
    return REAL(f)->pMethods->xClose(REAL(f));
}
static int ff_read(sqlite3_file *f, void *b, int n, sqlite3_int64 off) {
    return REAL(f)->pMethods->xRead(REAL(f), b, n, off);
}
static int ff_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 off) {
    if (fault_write_rc)
        return fault_write_rc;
    return REAL(f)->pMethods->xWrite(REAL(f), b, n, off);
}
static int ff_truncate(sqlite3_file *f, sqlite3_int64 size) {
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int ff_sync(sqlite3_file *f, int flags) {
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int ff_file_size(sqlite3_file *f, sqlite3_int64 *size) {
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int ff_lock(sqlite3_file *f, int l) {
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int ff_unlock(sqlite3_file *f, int l) {
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int ff_check_reserved(sqlite3_file *f, int *out) {
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int ff_file_control(sqlite3_file *f, int op, void *arg) {
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int ff_sector_size(sqlite3_file *f) {
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int ff_device_characteristics(sqlite3_file *f) {
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int ff_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp) {
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}
static int ff_shm_lock(sqlite3_file *f, int off, int n, int flags) {
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void ff_shm_barrier(sqlite3_file *f) {
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int ff_shm_unmap(sqlite3_file *f, int del) {
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int ff_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}
static int ff_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

#define FF_METHODS(v)                                                                           \
    {                                                                                           \
        v, ff_close, ff_read, ff_write, ff_truncate, ff_sync, ff_file_size, ff_lock, ff_unlock, \
            ff_check_reserved, ff_file_control, ff_sector_size, ff_device_characteristics,      \
            ff_shm_map, ff_shm_lock, ff_shm_barrier, ff_shm_unmap, ff_fetch, ff_unfetch,        \
    }
/* The shim offers exactly the methods the real file has. */
static const sqlite3_io_methods ff_methods[3] = {FF_METHODS(1), FF_METHODS(2), FF_METHODS(3)};

#define ORIG(vfs) ((sqlite3_vfs *)(vfs)->pAppData)

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags) {
    fault_file *p = (fault_file *)f;
    p->real = (sqlite3_file *)(p + 1);
    int rc = ORIG(vfs)->xOpen(ORIG(vfs), name, p->real, flags, out_flags);
    if (rc != SQLITE_OK || !p->real->pMethods) {
        p->base.pMethods = NULL;
        return rc;
    }
    int v = p->real->pMethods->iVersion;
    p->base.pMethods = &ff_methods[(v < 1 ? 1 : v > 3 ? 3 : v) - 1];
    return SQLITE_OK;
}
static int fv_delete(sqlite3_vfs *vfs, const char *name, int sync) {
    return ORIG(vfs)->xDelete(ORIG(vfs), name, sync);
}
static int fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
    return ORIG(vfs)->xAccess(ORIG(vfs), name, flags, out);
}
static int fv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
    return ORIG(vfs)->xFullPathname(ORIG(vfs), name, n, out);
}
static void *fv_dl_open(sqlite3_vfs *vfs, const char *name) {
    return ORIG(vfs)->xDlOpen(ORIG(vfs), name);
}
static void fv_dl_error(sqlite3_vfs *vfs, int n, char *msg) {
    ORIG(vfs)->xDlError(ORIG(vfs), n, msg);
}
static void (*fv_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void) {
    return ORIG(vfs)->xDlSym(ORIG(vfs), h, sym);
}
static void fv_dl_close(sqlite3_vfs *vfs, void *h) {
    ORIG(vfs)->xDlClose(ORIG(vfs), h);
}
static int fv_randomness(sqlite3_vfs *vfs, int n, char *out) {
    return ORIG(vfs)->xRandomness(ORIG(vfs), n, out);
}
static int fv_sleep(sqlite3_vfs *vfs, int us) {
    return ORIG(vfs)->xSleep(ORIG(vfs), us);
}
static int fv_current_time(sqlite3_vfs *vfs, double *out) {
    return ORIG(vfs)->xCurrentTime(ORIG(vfs), out);
}
static int fv_get_last_error(sqlite3_vfs *vfs, int n, char *out) {
    return ORIG(vfs)->xGetLastError ? ORIG(vfs)->xGetLastError(ORIG(vfs), n, out) : 0;
}
static int fv_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
    return ORIG(vfs)->xCurrentTimeInt64(ORIG(vfs), out);
}

static sqlite3_vfs fault_vfs;
static int fault_vfs_rc = SQLITE_ERROR;
static pthread_once_t fault_vfs_once = PTHREAD_ONCE_INIT;

static void fault_vfs_register(void) {
    sqlite3_vfs *orig = sqlite3_vfs_find(NULL);
    if (!orig || orig->iVersion < 2)
        return;
    fault_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(fault_file) + orig->szOsFile,
        .mxPathname = orig->mxPathname,
        .zName = "tend-fault",
        .pAppData = orig,
        .xOpen = fv_open,
        .xDelete = fv_delete,
        .xAccess = fv_access,
        .xFullPathname = fv_full_pathname,
        .xDlOpen = fv_dl_open,
        .xDlError = fv_dl_error,
        .xDlSym = fv_dl_sym,
        .xDlClose = fv_dl_close,
        .xRandomness = fv_randomness,
        .xSleep = fv_sleep,
        .xCurrentTime = fv_current_time,
        .xGetLastError = fv_get_last_error,
        .xCurrentTimeInt64 = fv_current_time_int64,
    };
    fault_vfs_rc = sqlite3_vfs_register(&fault_vfs, 0);
}

/* ---- Schema ----------------------------------------------------------- */

/*
 * Migrations, applied in order at open; PRAGMA user_version is the number
 * applied.  Append only: a released migration never changes.  States and
 * priorities are stored as their enum numbers (store.h).  Column order
 * matters: the large texts come last so that reading the small columns
 * never walks a payload's overflow pages.
 */
static const char *const migrations[] = {
    /* 1: tasks and per-queue counts. */
    "CREATE TABLE tasks ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  queue TEXT NOT NULL,"
    "  priority INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  max_attempts INTEGER NOT NULL,"
    "  timeout_ms INTEGER NOT NULL,"
    "  run_at INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER NOT NULL,"
    "  lease_until INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  idempotency_key TEXT,"
    "  tags TEXT,"
    "  last_error TEXT,"
    "  payload TEXT NOT NULL"
    ") WITHOUT ROWID;"
    /* FETCH_READY / CLAIM: a range scan per priority, no sort. */
    "CREATE INDEX tasks_ready ON tasks(queue, priority, run_at, id) WHERE state IN (0, 1);"
    "CREATE UNIQUE INDEX tasks_idempotency ON tasks(queue, idempotency_key)"
    "  WHERE idempotency_key IS NOT NULL;"
    /* LIST by queue and state, newest first; PURGE_DEAD, REQUEUE_DEAD. */
    "CREATE INDEX tasks_queue_state ON tasks(queue, state, id);"
    /* RECOVER and lease expiry: only running rows are in it. */
    "CREATE INDEX tasks_running ON tasks(lease_until) WHERE state = 2;"
    /* RETENTION: only finished rows are in it. */
    "CREATE INDEX tasks_finished ON tasks(state, finished_at) WHERE state >= 3;"
    /* COUNTS without scanning: kept exact by triggers, in the same
     * transaction as the change. */
    "CREATE TABLE queue_counts ("
    "  queue TEXT NOT NULL, state INTEGER NOT NULL, priority INTEGER NOT NULL,"
    "  n INTEGER NOT NULL, PRIMARY KEY (queue, state, priority)) WITHOUT ROWID;"
    "CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN"
    "  INSERT INTO queue_counts VALUES (new.queue, new.state, new.priority, 1)"
    "    ON CONFLICT (queue, state, priority) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN"
    "  UPDATE queue_counts SET n = n - 1"
    "    WHERE queue = old.queue AND state = old.state AND priority = old.priority;"
    " END;"
    "CREATE TRIGGER tasks_count_update AFTER UPDATE OF state, priority ON tasks"
    "  WHEN old.state != new.state OR old.priority != new.priority BEGIN"
    "  UPDATE queue_counts SET n = n - 1"
    "    WHERE queue = old.queue AND state = old.state AND priority = old.priority;"
    "  INSERT INTO queue_counts VALUES (new.queue, new.state, new.priority, 1)"
    "    ON CONFLICT (queue, state, priority) DO UPDATE SET n = n + 1;"
    " END;",
    /* 2: persisted sessions (sessions.persist).  A rowid table, not
     * WITHOUT ROWID: values run to 64 KiB and more, and big rows belong
     * in a rowid b-tree.  The expiry index serves LOAD and SWEEP. */
    "CREATE TABLE sessions ("
    "  key TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  ttl_ms INTEGER NOT NULL,"
    "  value TEXT NOT NULL);"
    "CREATE INDEX sessions_expires ON sessions(expires_at);",
    /* 3: what an operator set on a queue that must outlive a restart
     * (tend queue pause).  A row per paused queue; resume deletes it. */
    "CREATE TABLE queue_state ("
    "  queue TEXT PRIMARY KEY NOT NULL,"
    "  paused INTEGER NOT NULL) WITHOUT ROWID;",
};
#define SCHEMA_VERSION ((int)ELEMENTSOF(migrations))

/* INSERT: columns per row, rows per multi-row statement. */
#define INSERT_COLS 17
#define INSERT_ROWS 16
/* CLAIM: rows per UPDATE statement (one statement per row costs twice). */
#define CLAIM_ROWS 16

#define COLS                                                                              \
    "id, queue, priority, state, attempts, max_attempts, timeout_ms, run_at, created_at," \
    " started_at, finished_at, lease_until, version, idempotency_key, tags, last_error,"  \
    " payload"

enum {
    ST_BEGIN,
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_INSERT,
    ST_DELETE_ONE,
    ST_GET,
    ST_GET_BY_KEY,
    ST_STATE_VERSION,
    ST_FETCH,
    ST_CLAIM_MANY,
    ST_LIST_ALL,
    ST_LIST_IDS,
    ST_QUEUES,
    ST_COUNTS_ALL,
    ST_COUNTS_QUEUE,
    ST_RECOVER_DEAD,
    ST_RECOVER_PENDING,
    ST_RECOVER_UNCHARGED,
    ST_PURGE_DEAD,
    ST_REQUEUE_DEAD,
    ST_RETAIN_SUCCEEDED,
    ST_RETAIN_DEAD,
    ST_RETAIN_CANCELLED,
    ST_QUEUE_PAUSE,
    ST_QUEUE_RESUME,
    ST_QUEUES_PAUSED,
    ST_MAX,
};

/* Prepared once at open.  INDEXED BY pins the plans that matter on a big
 * table: a statement its index cannot serve fails to prepare at open,
 * instead of scanning every task at run time. */
static const char *const statements[ST_MAX] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT] = "INSERT INTO tasks (" COLS ") VALUES"
                  " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
                  " ON CONFLICT DO NOTHING",
    [ST_DELETE_ONE] = "DELETE FROM tasks WHERE id = ?1",
    [ST_GET] = "SELECT " COLS " FROM tasks WHERE id = ?1",
    [ST_GET_BY_KEY] = "SELECT " COLS " FROM tasks WHERE queue = ?1 AND idempotency_key = ?2",
    [ST_STATE_VERSION] = "SELECT state, version FROM tasks WHERE id = ?1",
    [ST_FETCH] = "SELECT " COLS " FROM tasks INDEXED BY tasks_ready"
                 " WHERE queue = ?1 AND state IN (0, 1) AND priority = ?2 AND run_at <= ?3"
                 " ORDER BY run_at, id",
    /* CLAIM_ROWS ids at a time; unused ones are bound NULL. */
    [ST_CLAIM_MANY] =
        "UPDATE tasks SET state = 2, attempts = attempts + 1, started_at = ?1,"
        " lease_until = ?2, version = version + 1"
        " WHERE id IN (?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
        " AND state IN (0, 1)",
    [ST_LIST_ALL] = "SELECT " COLS " FROM tasks WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    [ST_LIST_IDS] = "SELECT id FROM tasks INDEXED BY tasks_queue_state"
                    " WHERE queue = ?1 AND state = ?2 AND id < ?3"
                    " ORDER BY id DESC LIMIT ?4",
    [ST_QUEUES] = "SELECT DISTINCT queue FROM queue_counts ORDER BY queue",
    [ST_COUNTS_ALL] = "SELECT queue, state, priority, n FROM queue_counts ORDER BY queue",
    [ST_COUNTS_QUEUE] = "SELECT queue, state, priority, n FROM queue_counts WHERE queue = ?1",
    [ST_RECOVER_DEAD] =
        "UPDATE tasks INDEXED BY tasks_running SET state = 4, lease_until = 0, finished_at = ?1,"
        " last_error = 'interrupted: tend stopped during attempt ' || attempts"
        " || ' of ' || max_attempts || ' (no attempts left)',"
        " version = version + 1"
        " WHERE state = 2 AND attempts >= max_attempts",
    [ST_RECOVER_UNCHARGED] = "UPDATE tasks INDEXED BY tasks_running SET state = 0, lease_until = 0,"
                             " attempts = MAX(attempts - 1, 0), last_error = ?2,"
                             " version = version + 1 WHERE state = 2 AND queue = ?1",
    [ST_RECOVER_PENDING] = "UPDATE tasks INDEXED BY tasks_running SET state = 0, lease_until = 0,"
                           " last_error = 'interrupted: tend stopped during attempt ' || attempts,"
                           " version = version + 1 WHERE state = 2",
    [ST_PURGE_DEAD] =
        "DELETE FROM tasks INDEXED BY tasks_queue_state WHERE queue = ?1 AND state = 4",
    [ST_QUEUE_PAUSE] = "INSERT INTO queue_state (queue, paused) VALUES (?1, 1)"
                       " ON CONFLICT (queue) DO UPDATE SET paused = 1",
    [ST_QUEUE_RESUME] = "DELETE FROM queue_state WHERE queue = ?1",
    [ST_QUEUES_PAUSED] = "SELECT queue FROM queue_state WHERE paused != 0 ORDER BY queue",
    [ST_REQUEUE_DEAD] = "UPDATE tasks INDEXED BY tasks_queue_state"
                        " SET state = 0, attempts = 0, run_at = ?2, started_at = 0,"
                        " finished_at = 0, lease_until = 0, version = version + 1"
                        " WHERE queue = ?1 AND state = 4",
    /* The literal "state >= 3" is what lets SQLite use the partial index. */
    [ST_RETAIN_SUCCEEDED] =
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks"
        " INDEXED BY tasks_finished WHERE state >= 3 AND state = 3 AND finished_at < ?1 LIMIT ?2)",
    [ST_RETAIN_DEAD] =
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks"
        " INDEXED BY tasks_finished WHERE state >= 3 AND state = 4 AND finished_at < ?1 LIMIT ?2)",
    [ST_RETAIN_CANCELLED] =
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks"
        " INDEXED BY tasks_finished WHERE state >= 3 AND state = 5 AND finished_at < ?1 LIMIT ?2)",
};

/* Session statements (STORE_OP_SESSION_*), kept apart from the task ones. */
enum {
    SST_PUT,
    SST_TOUCH,
    SST_DELETE,
    SST_SWEEP,
    SST_LOAD,
    SST_MAX,
};

static const char *const session_statements[SST_MAX] = {
    [SST_PUT] = "INSERT INTO sessions (key, created_at, expires_at, ttl_ms, value)"
                " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO UPDATE SET"
                " created_at = excluded.created_at, expires_at = excluded.expires_at,"
                " ttl_ms = excluded.ttl_ms, value = excluded.value",
    [SST_TOUCH] = "UPDATE sessions SET expires_at = ?2, ttl_ms = ?3 WHERE key = ?1",
    [SST_DELETE] = "DELETE FROM sessions WHERE key = ?1",
    [SST_SWEEP] = "DELETE FROM sessions INDEXED BY sessions_expires WHERE expires_at <= ?1",
    [SST_LOAD] = "SELECT key, created_at, expires_at, ttl_ms, value FROM sessions"
                 " INDEXED BY sessions_expires WHERE expires_at > ?1",
};

/* ---- The backend ------------------------------------------------------ */

typedef struct sq {
    store *s;
    sqlite3 *db;
    sqlite3_stmt *st[ST_MAX];
    sqlite3_stmt *insert_many; /* INSERT_ROWS rows, RETURNING id */
    sqlite3_stmt *sess_st[SST_MAX];
    /* UPDATE by fields mask, prepared when first used (writer thread). */
    sqlite3_stmt *update[STORE_FIELD_ALL + 1];
    char *path;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock; /* protects head, tail, stopping */
    pthread_cond_t cond;
    store_op *head, *tail;
    bool stopping;

    /* Writer thread only: the error that fails the current group. */
    int fatal;
} sq;

_printf_(2, 3) static void set_message(char **ret_message, const char *fmt, ...) {
    if (!ret_message)
        return;
    free(*ret_message);
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(ret_message, fmt, ap) < 0)
        *ret_message = NULL;
    va_end(ap);
}

/* Records a group-fatal SQLite error; returns it as -errno. */
static int fail(sq *q, int rc) {
    if (!q->fatal)
        q->fatal = sqlite_errno(q->db, rc);
    if (!q->fatal)
        q->fatal = -EIO;
    return q->fatal;
}

/* Runs a statement without results to completion.  0 or -errno (fatal). */
static int run(sq *q, int id) {
    sqlite3_stmt *st = q->st[id];
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : fail(q, rc);
}

static int bind_text(sqlite3_stmt *st, int i, const char *s) {
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int dup_column(sqlite3_stmt *st, int i, char **ret, size_t *ret_len) {
    *ret = NULL;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return 0;
    const unsigned char *t = sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    if (!t) {
        if (sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM)
            return -ENOMEM;
        t = (const unsigned char *)"";
        n = 0;
    }
    char *c = malloc((size_t)n + 1);
    if (!c)
        return -ENOMEM;
    memcpy(c, t, (size_t)n);
    c[n] = 0;
    *ret = c;
    if (ret_len)
        *ret_len = (size_t)n;
    return 0;
}

/* Reads a row of COLS into *t (zeroed first).  0 or -ENOMEM (fatal). */
static int read_task(sq *q, sqlite3_stmt *st, store_task *t) {
    *t = (store_task){0};
    const unsigned char *id = sqlite3_column_text(st, 0);
    if (id)
        snprintf(t->id, sizeof(t->id), "%s", (const char *)id);
    t->priority = sqlite3_column_int(st, 2);
    t->state = sqlite3_column_int(st, 3);
    t->attempts = sqlite3_column_int(st, 4);
    t->max_attempts = sqlite3_column_int(st, 5);
    t->timeout_ms = sqlite3_column_int64(st, 6);
    t->run_at = sqlite3_column_int64(st, 7);
    t->created_at = sqlite3_column_int64(st, 8);
    t->started_at = sqlite3_column_int64(st, 9);
    t->finished_at = sqlite3_column_int64(st, 10);
    t->lease_until = sqlite3_column_int64(st, 11);
    t->version = sqlite3_column_int64(st, 12);
    if (dup_column(st, 1, &t->queue, NULL) < 0 ||
        dup_column(st, 13, &t->idempotency_key, NULL) < 0 ||
        dup_column(st, 14, &t->tags, NULL) < 0 || dup_column(st, 15, &t->last_error, NULL) < 0 ||
        dup_column(st, 16, &t->payload, &t->payload_len) < 0) {
        store_task_clear(t);
        return fail(q, SQLITE_NOMEM);
    }
    return 0;
}

/* A growable array of records for results. */
typedef struct task_vec {
    store_task *v;
    size_t n, cap;
} task_vec;

static store_task *vec_push(sq *q, task_vec *v) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        store_task *nv = realloc(v->v, cap * sizeof(*nv));
        if (!nv) {
            fail(q, SQLITE_NOMEM);
            return NULL;
        }
        v->v = nv;
        v->cap = cap;
    }
    return &v->v[v->n++];
}

static void vec_free(task_vec *v) {
    v->v = store_tasks_free(v->v, v->n);
    v->n = v->cap = 0;
}

/* ---- Ops (writer thread) --------------------------------------------- */

static int bind_insert(sqlite3_stmt *st, const store_task *t, int b) {
    int rc = 0;
    rc |= sqlite3_bind_text(st, b + 1, t->id, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_text(st, b + 2, t->queue, -1, SQLITE_STATIC);
    rc |= sqlite3_bind_int(st, b + 3, t->priority);
    rc |= sqlite3_bind_int(st, b + 4, t->state);
    rc |= sqlite3_bind_int(st, b + 5, t->attempts);
    rc |= sqlite3_bind_int(st, b + 6, t->max_attempts);
    rc |= sqlite3_bind_int64(st, b + 7, t->timeout_ms);
    rc |= sqlite3_bind_int64(st, b + 8, t->run_at);
    rc |= sqlite3_bind_int64(st, b + 9, t->created_at);
    rc |= sqlite3_bind_int64(st, b + 10, t->started_at);
    rc |= sqlite3_bind_int64(st, b + 11, t->finished_at);
    rc |= sqlite3_bind_int64(st, b + 12, t->lease_until);
    rc |= sqlite3_bind_int64(st, b + 13, t->version);
    rc |= bind_text(st, b + 14, t->idempotency_key);
    rc |= bind_text(st, b + 15, t->tags);
    if (t->last_error)
        rc |= sqlite3_bind_text(st, b + 16, t->last_error, (int)store_error_len(t->last_error),
                                SQLITE_STATIC);
    else
        rc |= sqlite3_bind_null(st, b + 16);
    if (t->payload)
        rc |= sqlite3_bind_text(st, b + 17, t->payload, (int)t->payload_len, SQLITE_STATIC);
    else
        rc |= sqlite3_bind_text(st, b + 17, "null", 4, SQLITE_STATIC);
    return rc;
}

/* Looks up (queue, key) into *ret.  1 found, 0 not, <0 fatal. */
static int get_by_key(sq *q, const char *queue, const char *key, store_task *ret) {
    sqlite3_stmt *st = q->st[ST_GET_BY_KEY];
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW)
        r = read_task(q, st, ret) < 0 ? q->fatal : 1;
    else if (rc != SQLITE_DONE)
        r = fail(q, rc);
    sqlite3_reset(st);
    return r;
}

/* Deletes one row this op inserted (the undo of a failed INSERT op).
 * 0 or fatal. */
static int undo_insert(sq *q, const char *id) {
    sqlite3_bind_text(q->st[ST_DELETE_ONE], 1, id, -1, SQLITE_STATIC);
    return run(q, ST_DELETE_ONE);
}

static bool id_in(const char (*ids)[STORE_ID_SIZE], size_t n, const char *id) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(ids[i], id) == 0)
            return true;
    return false;
}

/*
 * One INSERT op, all or nothing.  Rows go in INSERT_ROWS at a time (one
 * multi-row statement: half the cycles per task of one statement per
 * row); RETURNING tells which rows went in, and a row that did not
 * met a conflict: its idempotency key (the existing task answers) or its
 * id (the op fails).  No savepoint: its sub-journal costs a quarter of
 * the insert rate, and the only failure that stops an op half-way
 * without failing the whole transaction is a duplicate id (ids the store
 * makes never collide; a caller-supplied one may), undone by deleting
 * the rows this op inserted.
 */
static int op_insert(sq *q, store_op *op) {
    size_t n = op->insert.n, created = 0;
    char returned[INSERT_ROWS][STORE_ID_SIZE];
    for (size_t i = 0; i < n;) {
        size_t m = n - i >= INSERT_ROWS ? INSERT_ROWS : 1, nret = 0;
        sqlite3_stmt *st = m == INSERT_ROWS ? q->insert_many : q->st[ST_INSERT];
        int rc = SQLITE_OK;
        for (size_t r = 0; r < m && rc == SQLITE_OK; r++)
            rc = bind_insert(st, &op->insert.tasks[i + r], (int)(r * INSERT_COLS));
        if (rc != SQLITE_OK) {
            sqlite3_reset(st);
            return fail(q, rc);
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            if (nret < INSERT_ROWS)
                snprintf(returned[nret++], STORE_ID_SIZE, "%s",
                         (const char *)sqlite3_column_text(st, 0));
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return fail(q, rc);
        if (m == 1 && sqlite3_changes(q->db) == 1)
            nret = 1; /* the one-row statement has no RETURNING */
        created += nret;
        if (nret == m) {
            i += m;
            continue;
        }
        for (size_t r = 0; r < m; r++) {
            const store_task *t = &op->insert.tasks[i + r];
            if (m == 1 ? nret == 1 : id_in((const char(*)[STORE_ID_SIZE])returned, nret, t->id))
                continue;
            int k = 0;
            if (t->idempotency_key) {
                if (!op->insert.ret_existing) {
                    op->insert.ret_existing = calloc(n, sizeof(store_task));
                    if (!op->insert.ret_existing)
                        return fail(q, SQLITE_NOMEM);
                }
                k = get_by_key(q, t->queue, t->idempotency_key, &op->insert.ret_existing[i + r]);
                if (k < 0)
                    return k;
            }
            if (k == 0) {
                /* Undo: the rows of earlier chunks that were not hits,
                 * and those of this chunk that went in. */
                for (size_t j = 0; j < i; j++)
                    if (!(op->insert.ret_existing && op->insert.ret_existing[j].id[0]) &&
                        undo_insert(q, op->insert.tasks[j].id) < 0)
                        return q->fatal;
                for (size_t j = 0; j < nret; j++)
                    if (undo_insert(q, returned[j]) < 0)
                        return q->fatal;
                store_op_reset_outputs(op);
                return -EEXIST;
            }
        }
        i += m;
    }
    op->insert.ret_created = created;
    return (int)created;
}

/*
 * The UPDATE statement for a fields mask: it names only those columns, so
 * SQLite rewrites only the indexes that contain them, and the counts
 * trigger (UPDATE OF state, priority) fires only when it must.  No
 * RETURNING: op_update reads back only what the inputs do not tell.  The
 * parameter numbers are the same for every mask.  NULL on failure (fatal
 * set).
 */
static sqlite3_stmt *update_statement(sq *q, unsigned fields) {
    if (q->update[fields])
        return q->update[fields];
    static const char *const cols[] = {
        "state = ?2",         "attempts = ?3",    "run_at = ?4",      "lease_until = ?5",
        "last_error = ?6",    "started_at = ?7",  "finished_at = ?8", "priority = ?9",
        "max_attempts = ?10", "timeout_ms = ?11",
    };
    _Static_assert(ELEMENTSOF(cols) == 10 && STORE_FIELD_ALL == (1u << 10) - 1,
                   "one column per field bit");
    char sql[768];
    size_t len = (size_t)snprintf(sql, sizeof(sql), "UPDATE tasks SET ");
    for (unsigned i = 0; i < ELEMENTSOF(cols); i++)
        if (fields & (1u << i))
            len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s, ", cols[i]);
    snprintf(sql + len, sizeof(sql) - len,
             "version = version + 1 WHERE id = ?12 AND (?13 = 0 OR version = ?13)"
             " AND (?14 = 0 OR (?14 >> state) & 1 = 1)");
    int rc =
        sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->update[fields], NULL);
    if (rc != SQLITE_OK) {
        q->update[fields] = NULL;
        fail(q, rc);
        return NULL;
    }
    return q->update[fields];
}

static int op_update(sq *q, store_op *op) {
    const store_task *t = op->update.task;
    unsigned f = op->update.fields;
    sqlite3_stmt *st = update_statement(q, f);
    if (!st)
        return q->fatal;
    /* Parameters a mask does not use are bound all the same (harmless). */
    sqlite3_bind_int(st, 2, t->state);
    sqlite3_bind_int(st, 3, t->attempts);
    sqlite3_bind_int64(st, 4, t->run_at);
    sqlite3_bind_int64(st, 5, t->lease_until);
    if (t->last_error)
        sqlite3_bind_text(st, 6, t->last_error, (int)store_error_len(t->last_error), SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, t->started_at);
    sqlite3_bind_int64(st, 8, t->finished_at);
    sqlite3_bind_int(st, 9, t->priority);
    sqlite3_bind_int(st, 10, t->max_attempts);
    sqlite3_bind_int64(st, 11, t->timeout_ms);
    sqlite3_bind_text(st, 12, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 13, op->update.expect_version);
    sqlite3_bind_int(st, 14, (int)op->update.expect_states);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return fail(q, rc);
    bool updated = sqlite3_changes(q->db) == 1;
    if (updated && op->update.expect_version && (f & STORE_FIELD_STATE)) {
        /* Known without reading: no RETURNING, which costs a third of
         * an UPDATE. */
        op->update.ret_version = op->update.expect_version + 1;
        op->update.ret_state = t->state;
        return 0;
    }

    st = q->st[ST_STATE_VERSION];
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int r = -ENOENT;
    if (rc == SQLITE_ROW) {
        op->update.ret_state = sqlite3_column_int(st, 0);
        op->update.ret_version = sqlite3_column_int64(st, 1);
        r = updated ? 0 : -ESTALE;
    } else if (rc != SQLITE_DONE)
        r = fail(q, rc);
    sqlite3_reset(st);
    return r;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The ready tasks of queue in dispatch order, skipping the sorted
 * exclude[0..nx), until limit are in *v.  0 or fatal. */
static int select_ready(sq *q, const char *queue, int64_t now, size_t limit, const char **exclude,
                        size_t nx, task_vec *v) {
    sqlite3_stmt *st = q->st[ST_FETCH];
    for (int p = 0; p < STORE_PRIORITY_MAX && v->n < limit; p++) {
        sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, p);
        sqlite3_bind_int64(st, 3, now);
        int rc = SQLITE_DONE;
        while (v->n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (nx) {
                const char *id = (const char *)sqlite3_column_text(st, 0);
                if (id && bsearch(&id, exclude, nx, sizeof(*exclude), cmp_str_ptr))
                    continue;
            }
            store_task *t = vec_push(q, v);
            if (!t || read_task(q, st, t) < 0) {
                if (t)
                    v->n--;
                sqlite3_reset(st);
                return q->fatal;
            }
        }
        sqlite3_reset(st);
        if (v->n < limit && rc != SQLITE_DONE)
            return fail(q, rc);
    }
    return 0;
}

static int op_fetch(sq *q, store_op *op) {
    const char **exclude = NULL;
    size_t nx = op->fetch.n_exclude;
    if (nx) {
        exclude = malloc(nx * sizeof(*exclude));
        if (!exclude)
            return fail(q, SQLITE_NOMEM);
        memcpy(exclude, op->fetch.exclude, nx * sizeof(*exclude));
        qsort(exclude, nx, sizeof(*exclude), cmp_str_ptr);
    }
    task_vec v = {0};
    int r = select_ready(q, op->fetch.queue, op->fetch.now, op->fetch.limit, exclude, nx, &v);
    free(exclude);
    if (r < 0) {
        vec_free(&v);
        return r;
    }
    op->fetch.ret_tasks = v.v;
    op->fetch.ret_n = v.n;
    return (int)v.n;
}

static int op_claim(sq *q, store_op *op) {
    task_vec v = {0};
    int r = select_ready(q, op->claim.queue, op->claim.now, op->claim.limit, NULL, 0, &v);
    sqlite3_stmt *st = q->st[ST_CLAIM_MANY];
    for (size_t i = 0; r == 0 && i < v.n; i += CLAIM_ROWS) {
        sqlite3_bind_int64(st, 1, op->claim.now);
        sqlite3_bind_int64(st, 2, op->claim.lease_until);
        for (size_t k = 0; k < CLAIM_ROWS; k++) {
            if (i + k < v.n)
                sqlite3_bind_text(st, 3 + (int)k, v.v[i + k].id, -1, SQLITE_STATIC);
            else
                sqlite3_bind_null(st, 3 + (int)k);
        }
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            r = fail(q, rc);
    }
    if (r < 0) {
        vec_free(&v);
        return r;
    }
    for (size_t i = 0; i < v.n; i++) {
        store_task *t = &v.v[i];
        t->state = STORE_TASK_RUNNING;
        t->attempts++;
        t->started_at = op->claim.now;
        t->lease_until = op->claim.lease_until;
        t->version++;
    }
    op->claim.ret_tasks = v.v;
    op->claim.ret_n = v.n;
    return (int)v.n;
}

/* Reads task id into *ret.  1 found, 0 not, <0 fatal. */
static int get_task(sq *q, const char *id, store_task *ret) {
    sqlite3_stmt *st = q->st[ST_GET];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int r = 0;
    if (rc == SQLITE_ROW)
        r = read_task(q, st, ret) < 0 ? q->fatal : 1;
    else if (rc != SQLITE_DONE)
        r = fail(q, rc);
    sqlite3_reset(st);
    return r;
}

static int op_get(sq *q, store_op *op) {
    store_task *t = calloc(1, sizeof(*t));
    if (!t)
        return fail(q, SQLITE_NOMEM);
    int r = get_task(q, op->get.id, t);
    if (r <= 0) {
        free(t);
        return r < 0 ? r : -ENOENT;
    }
    op->get.ret_task = t;
    return 0;
}

typedef struct id_vec {
    char (*v)[STORE_ID_SIZE];
    size_t n, cap;
} id_vec;

static int cmp_id_desc(const void *a, const void *b) {
    return -strcmp(a, b);
}

/* Collects up to lim ids of (queue, state) below cursor, newest first. */
static int list_ids(sq *q, const char *queue, int state, const char *cursor, size_t lim,
                    id_vec *ids) {
    sqlite3_stmt *st = q->st[ST_LIST_IDS];
    sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, state);
    sqlite3_bind_text(st, 3, cursor, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (int64_t)lim);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (ids->n == ids->cap) {
            size_t cap = ids->cap ? ids->cap * 2 : 64;
            void *nv = realloc(ids->v, cap * sizeof(*ids->v));
            if (!nv) {
                sqlite3_reset(st);
                return fail(q, SQLITE_NOMEM);
            }
            ids->v = nv;
            ids->cap = cap;
        }
        snprintf(ids->v[ids->n++], STORE_ID_SIZE, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : fail(q, rc);
}

static int op_list(sq *q, store_op *op) {
    size_t limit = op->list.limit ? op->list.limit : 100;
    /* Every id sorts below "~". */
    const char *cursor = op->list.cursor && op->list.cursor[0] ? op->list.cursor : "~";
    task_vec v = {0};
    bool more = false;
    int r = 0;

    if (!op->list.queue && op->list.state < 0) {
        /* The primary key, backwards. */
        sqlite3_stmt *st = q->st[ST_LIST_ALL];
        sqlite3_bind_text(st, 1, cursor, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)limit + 1);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (v.n == limit) {
                more = true;
                continue;
            }
            store_task *t = vec_push(q, &v);
            if (!t || read_task(q, st, t) < 0) {
                if (t)
                    v.n--;
                r = q->fatal;
                break;
            }
        }
        sqlite3_reset(st);
        if (r == 0 && rc != SQLITE_DONE)
            r = fail(q, rc);
    } else {
        /* The newest limit + 1 ids of each (queue, state) range of the
         * queue_state index, merged; then the rows of the first limit. */
        id_vec ids = {0};
        char **queues = NULL;
        size_t nq = 0;
        if (op->list.queue) {
            queues = malloc(sizeof(*queues));
            if (!queues || !(queues[0] = strdup(op->list.queue)))
                r = fail(q, SQLITE_NOMEM);
            else
                nq = 1;
        } else {
            sqlite3_stmt *st = q->st[ST_QUEUES];
            int rc;
            while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                char **nqv = realloc(queues, (nq + 1) * sizeof(*queues));
                if (!nqv) {
                    r = fail(q, SQLITE_NOMEM);
                    break;
                }
                queues = nqv;
                if (!(queues[nq] = strdup((const char *)sqlite3_column_text(st, 0))))
                    r = fail(q, SQLITE_NOMEM);
                else
                    nq++;
            }
            sqlite3_reset(st);
            if (r == 0 && rc != SQLITE_DONE)
                r = fail(q, rc);
        }
        for (size_t i = 0; r == 0 && i < nq; i++)
            for (int s = 0; r == 0 && s < STORE_TASK_STATE_MAX; s++)
                if (op->list.state < 0 || op->list.state == s)
                    r = list_ids(q, queues[i], s, cursor, limit + 1, &ids);
        for (size_t i = 0; i < nq; i++)
            free(queues[i]);
        free(queues);
        if (r == 0) {
            if (ids.n > 1)
                qsort(ids.v, ids.n, sizeof(*ids.v), cmp_id_desc);
            more = ids.n > limit;
            for (size_t i = 0; r == 0 && i < ids.n && i < limit; i++) {
                store_task *t = vec_push(q, &v);
                if (!t) {
                    r = q->fatal;
                    break;
                }
                int k = get_task(q, ids.v[i], t);
                if (k <= 0) {
                    v.n--;
                    r = k < 0 ? k : 0;
                }
            }
        }
        free(ids.v);
    }
    if (r < 0) {
        vec_free(&v);
        return r;
    }
    op->list.ret_tasks = v.v;
    op->list.ret_n = v.n;
    if (more && v.n > 0)
        snprintf(op->list.ret_cursor, sizeof(op->list.ret_cursor), "%s", v.v[v.n - 1].id);
    return (int)v.n;
}

static int op_counts(sq *q, store_op *op) {
    sqlite3_stmt *st = q->st[op->counts.queue ? ST_COUNTS_QUEUE : ST_COUNTS_ALL];
    if (op->counts.queue)
        sqlite3_bind_text(st, 1, op->counts.queue, -1, SQLITE_STATIC);
    store_queue_counts *c = NULL;
    size_t n = 0;
    int r = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *queue = (const char *)sqlite3_column_text(st, 0);
        int state = sqlite3_column_int(st, 1), prio = sqlite3_column_int(st, 2);
        int64_t cnt = sqlite3_column_int64(st, 3);
        if (!queue)
            continue;
        if (n == 0 || strcmp(c[n - 1].queue, queue) != 0) {
            store_queue_counts *nc = realloc(c, (n + 1) * sizeof(*c));
            if (!nc) {
                r = fail(q, SQLITE_NOMEM);
                break;
            }
            c = nc;
            c[n] = (store_queue_counts){.queue = strdup(queue)};
            if (!c[n].queue) {
                r = fail(q, SQLITE_NOMEM);
                break;
            }
            n++;
        }
        if ((unsigned)state < STORE_TASK_STATE_MAX && (unsigned)prio < STORE_PRIORITY_MAX &&
            cnt > 0)
            c[n - 1].n[state][prio] = (uint64_t)cnt;
    }
    sqlite3_reset(st);
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(q, rc);
    if (r < 0) {
        store_counts_free(c, n);
        return r;
    }
    op->counts.ret_counts = c;
    op->counts.ret_n = n;
    return (int)n;
}

/* RECOVER's second half: the names of the paused queues. */
static int read_paused(sq *q, store_op *op) {
    sqlite3_stmt *st = q->st[ST_QUEUES_PAUSED];
    char **v = NULL;
    size_t n = 0, cap = 0;
    int r = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **nv = realloc(v, ncap * sizeof(*v));
            if (!nv) {
                r = -ENOMEM;
                break;
            }
            v = nv, cap = ncap;
        }
        r = dup_column(st, 0, &v[n], NULL);
        if (r < 0)
            break;
        if (v[n])
            n++;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fail(q, rc);
    sqlite3_reset(st);
    if (r < 0) {
        store_names_free(v, n);
        return r;
    }
    op->recover.ret_paused = v;
    op->recover.ret_n_paused = n;
    return 0;
}

static int op_recover(sq *q, store_op *op) {
    size_t uncharged = 0;
    for (size_t i = 0; i < op->recover.n_uncharged; i++) {
        sqlite3_stmt *st = q->st[ST_RECOVER_UNCHARGED];
        sqlite3_bind_text(st, 1, op->recover.uncharged[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, STORE_RECOVER_UNCHARGED_TEXT, -1, SQLITE_STATIC);
        if (run(q, ST_RECOVER_UNCHARGED) < 0)
            return q->fatal;
        uncharged += (size_t)sqlite3_changes(q->db);
    }
    sqlite3_bind_int64(q->st[ST_RECOVER_DEAD], 1, op->recover.now);
    if (run(q, ST_RECOVER_DEAD) < 0)
        return q->fatal;
    op->recover.ret_dead = (size_t)sqlite3_changes(q->db);
    if (run(q, ST_RECOVER_PENDING) < 0)
        return q->fatal;
    op->recover.ret_requeued = (size_t)sqlite3_changes(q->db) + uncharged;
    int r = read_paused(q, op);
    if (r < 0)
        return r;
    return (int)(op->recover.ret_dead + op->recover.ret_requeued);
}

static int op_queue_pause(sq *q, store_op *op) {
    int id = op->queue_pause.paused ? ST_QUEUE_PAUSE : ST_QUEUE_RESUME;
    sqlite3_bind_text(q->st[id], 1, op->queue_pause.queue, -1, SQLITE_STATIC);
    return run(q, id);
}

static int op_dead(sq *q, store_op *op) {
    int id = op->kind == STORE_OP_PURGE_DEAD ? ST_PURGE_DEAD : ST_REQUEUE_DEAD;
    sqlite3_bind_text(q->st[id], 1, op->dead.queue, -1, SQLITE_STATIC);
    if (id == ST_REQUEUE_DEAD)
        sqlite3_bind_int64(q->st[id], 2, op->dead.now);
    if (run(q, id) < 0)
        return q->fatal;
    op->dead.ret_count = (size_t)sqlite3_changes(q->db);
    return (int)op->dead.ret_count;
}

static int op_retention(sq *q, store_op *op) {
    const struct {
        int st;
        int64_t before;
    } parts[] = {
        {ST_RETAIN_SUCCEEDED, op->retention.succeeded_before},
        {ST_RETAIN_DEAD, op->retention.dead_before},
        {ST_RETAIN_CANCELLED, op->retention.cancelled_before},
    };
    size_t max = op->retention.max_rows, total = 0;
    for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
        if (parts[i].before <= 0 || (max && total >= max))
            continue;
        sqlite3_stmt *st = q->st[parts[i].st];
        sqlite3_bind_int64(st, 1, parts[i].before);
        sqlite3_bind_int64(st, 2, max ? (int64_t)(max - total) : -1);
        if (run(q, parts[i].st) < 0)
            return q->fatal;
        total += (size_t)sqlite3_changes(q->db);
    }
    op->retention.ret_count = total;
    return (int)total;
}

/* ---- Sessions ---- */

/* PUT / TOUCH / DELETE / SWEEP: one statement; result rows changed. */
static int op_session(sq *q, store_op *op) {
    int id = op->kind == STORE_OP_SESSION_PUT     ? SST_PUT
             : op->kind == STORE_OP_SESSION_TOUCH ? SST_TOUCH
             : op->kind == STORE_OP_SESSION_DELETE ? SST_DELETE
                                                  : SST_SWEEP;
    sqlite3_stmt *st = q->sess_st[id];
    switch (id) {
    case SST_PUT:
        sqlite3_bind_text(st, 1, op->session.key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, op->session.created_at);
        sqlite3_bind_int64(st, 3, op->session.expires_at);
        sqlite3_bind_int64(st, 4, op->session.ttl_ms);
        sqlite3_bind_text64(st, 5, op->session.value, op->session.value_len, SQLITE_STATIC,
                            SQLITE_UTF8);
        break;
    case SST_TOUCH:
        sqlite3_bind_text(st, 1, op->session.key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, op->session.expires_at);
        sqlite3_bind_int64(st, 3, op->session.ttl_ms);
        break;
    case SST_DELETE:
        sqlite3_bind_text(st, 1, op->session.key, -1, SQLITE_STATIC);
        break;
    default:
        sqlite3_bind_int64(st, 1, op->session_load.now);
        break;
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return fail(q, rc);
    int64_t n = sqlite3_changes64(q->db);
    return n > INT_MAX ? INT_MAX : (int)n;
}

static int op_session_load(sq *q, store_op *op) {
    sqlite3_stmt *st = q->sess_st[SST_LOAD];
    store_session *v = NULL;
    size_t n = 0, cap = 0;
    int r = 0, rc;
    sqlite3_bind_int64(st, 1, op->session_load.now);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            store_session *nv = realloc(v, nc * sizeof(*nv));
            if (!nv) {
                r = fail(q, SQLITE_NOMEM);
                goto finish;
            }
            v = nv;
            cap = nc;
        }
        store_session *o = &v[n];
        *o = (store_session){0};
        o->created_at = sqlite3_column_int64(st, 1);
        o->expires_at = sqlite3_column_int64(st, 2);
        o->ttl_ms = sqlite3_column_int64(st, 3);
        if (dup_column(st, 0, &o->key, NULL) < 0 || dup_column(st, 4, &o->value, &o->value_len) < 0) {
            free(o->key);
            free(o->value);
            r = fail(q, SQLITE_NOMEM);
            goto finish;
        }
        if (!o->key || !o->value) { /* NULL columns cannot happen (NOT NULL); skip */
            free(o->key);
            free(o->value);
            continue;
        }
        n++;
    }
    if (rc != SQLITE_DONE)
        r = fail(q, rc);
finish:
    sqlite3_reset(st);
    if (r < 0) {
        store_sessions_free(v, n);
        return r;
    }
    op->session_load.ret_sessions = n ? v : store_sessions_free(v, 0);
    op->session_load.ret_n = n;
    return n > INT_MAX ? INT_MAX : (int)n;
}

static int exec_op(sq *q, store_op *op) {
    switch (op->kind) {
    case STORE_OP_INSERT:
        return op_insert(q, op);
    case STORE_OP_UPDATE:
        return op_update(q, op);
    case STORE_OP_FETCH_READY:
        return op_fetch(q, op);
    case STORE_OP_CLAIM:
        return op_claim(q, op);
    case STORE_OP_GET:
        return op_get(q, op);
    case STORE_OP_LIST:
        return op_list(q, op);
    case STORE_OP_COUNTS:
        return op_counts(q, op);
    case STORE_OP_RECOVER:
        return op_recover(q, op);
    case STORE_OP_PURGE_DEAD:
    case STORE_OP_REQUEUE_DEAD:
        return op_dead(q, op);
    case STORE_OP_RETENTION:
        return op_retention(q, op);
    case STORE_OP_SESSION_PUT:
    case STORE_OP_SESSION_TOUCH:
    case STORE_OP_SESSION_DELETE:
    case STORE_OP_SESSION_SWEEP:
        return op_session(q, op);
    case STORE_OP_SESSION_LOAD:
        return op_session_load(q, op);
    case STORE_OP_QUEUE_PAUSE:
        return op_queue_pause(q, op);
    default:
        return -EINVAL;
    }
}

static int fault_code(int error) {
    return error == -ENOSPC ? SQLITE_FULL : SQLITE_IOERR_WRITE;
}

/*
 * Runs one group as one transaction.  On success every op has its own
 * result; on failure the transaction is rolled back and every op gets
 * the error with its outputs freed.
 */
static void run_group(sq *q, store_op *group) {
    size_t nops = 0, ntasks = 0;
    bool writes = false;
    for (store_op *op = group; op; op = op->priv_next) {
        nops++;
        writes |= store_op_kind_writes(op->kind);
    }
    int fault = store_group_begin(q->s, group);
    q->fatal = 0;
    int r = run(q, writes ? ST_BEGIN_IMMEDIATE : ST_BEGIN);
    if (r < 0)
        goto failed;
    int64_t changes_before = sqlite3_total_changes64(q->db);
    if (fault)
        fault_write_rc = fault_code(fault);
    for (store_op *op = group; op; op = op->priv_next) {
        op->priv_result = exec_op(q, op);
        if (q->fatal) {
            r = q->fatal;
            goto failed;
        }
        if (op->kind == STORE_OP_INSERT && op->priv_result > 0)
            ntasks += (size_t)op->priv_result;
    }
    if (fault && sqlite3_total_changes64(q->db) == changes_before) {
        /* Nothing to write, so the armed write fault cannot fire: fail
         * the commit anyway, as promised. */
        r = fault;
        goto failed;
    }
    r = run(q, ST_COMMIT);
    fault_write_rc = 0;
    if (r < 0)
        goto failed;
    store_count_commit(q->s, nops, ntasks, true);
    return;

failed:
    fault_write_rc = 0;
    if (fault && r != fault && (r == -EIO || r == -ENOSPC))
        r = fault;
    if (!sqlite3_get_autocommit(q->db)) {
        int rc = sqlite3_step(q->st[ST_ROLLBACK]);
        sqlite3_reset(q->st[ST_ROLLBACK]);
        (void)rc;
    }
    for (store_op *op = group; op; op = op->priv_next) {
        store_op_reset_outputs(op);
        op->priv_result = r;
    }
    store_count_commit(q->s, nops, 0, false);
}

static void *writer_main(void *arg) {
    sq *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        while (!q->head && !q->stopping)
            pthread_cond_wait(&q->cond, &q->lock);
        store_op *group = q->head;
        q->head = q->tail = NULL;
        pthread_mutex_unlock(&q->lock);
        if (!group)
            break; /* stopping, and everything queued is done */
        run_group(q, group);
        store_complete(q->s, group);
    }
    store_backend_stopped(q->s);
    return NULL;
}

/* ---- Open and close ----------------------------------------------------- */

static int exec_sql(sqlite3 *db, const char *sql, char **ret_message, const char *path) {
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        set_message(ret_message, "%s: %s", path, err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        return sqlite_errno(db, rc);
    }
    return 0;
}

static int query_int(sqlite3 *db, const char *sql, int64_t *ret) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ret = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : sqlite_errno(db, rc);
}

static int migrate(sqlite3 *db, const char *path, char **ret_message) {
    int64_t version = 0, app = 0;
    int r = query_int(db, "PRAGMA user_version", &version);
    if (r == 0)
        r = query_int(db, "PRAGMA application_id", &app);
    if (r < 0) {
        set_message(ret_message, "%s: %s", path, sqlite3_errmsg(db));
        return r;
    }
    if (app != 0 && app != APPLICATION_ID) {
        set_message(ret_message, "%s: not a tend database (application_id differs)", path);
        return -EINVAL;
    }
    if (version > SCHEMA_VERSION) {
        set_message(ret_message,
                    "%s: schema version %lld is newer than this tend's (%d); upgrade tend", path,
                    (long long)version, SCHEMA_VERSION);
        return -EPROTONOSUPPORT;
    }
    for (int64_t i = version; i < SCHEMA_VERSION; i++) {
        char tail[96];
        snprintf(tail, sizeof(tail), "PRAGMA user_version = %lld; PRAGMA application_id = %d;",
                 (long long)i + 1, APPLICATION_ID);
        r = exec_sql(db, "BEGIN IMMEDIATE", ret_message, path);
        if (r == 0)
            r = exec_sql(db, migrations[i], ret_message, path);
        if (r == 0)
            r = exec_sql(db, tail, ret_message, path);
        if (r == 0)
            r = exec_sql(db, "COMMIT", ret_message, path);
        if (r < 0) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return r;
        }
    }
    return 0;
}

static void sq_free(void *data) {
    sq *q = data;
    if (!q)
        return;
    if (q->thread_started)
        pthread_join(q->thread, NULL);
    for (int i = 0; i < ST_MAX; i++)
        sqlite3_finalize(q->st[i]);
    sqlite3_finalize(q->insert_many);
    for (int i = 0; i < SST_MAX; i++)
        sqlite3_finalize(q->sess_st[i]);
    for (size_t i = 0; i < ELEMENTSOF(q->update); i++)
        sqlite3_finalize(q->update[i]);
    if (q->db)
        sqlite3_close(q->db);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q->path);
    free(q);
}

static int sq_open(store *s, const store_config *cfg, void **ret_data, char **ret_message) {
    if (!cfg->path && !cfg->state_dir)
        return -EINVAL;
    sq *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->s = s;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    int r;
    if (cfg->path)
        q->path = strdup(cfg->path);
    else if (asprintf(&q->path, "%s/tend.db", cfg->state_dir) < 0)
        q->path = NULL;
    if (!q->path) {
        r = -ENOMEM;
        goto fail;
    }

    pthread_once(&fault_vfs_once, fault_vfs_register);
    if (fault_vfs_rc != SQLITE_OK) {
        set_message(ret_message, "%s: cannot register the SQLite VFS shim", q->path);
        r = -EIO;
        goto fail;
    }
    /* Payloads may be private: create the file 0600 (SQLite gives the
     * -wal and -shm files the same mode). */
    int fd = open(q->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        set_message(ret_message, "%s: %s", q->path, strerror(-r));
        goto fail;
    }
    close(fd);

    /* NOMUTEX: one thread at a time uses the connection (this one until
     * the writer starts, then only the writer). */
    int rc =
        sqlite3_open_v2(q->path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, "tend-fault");
    if (rc != SQLITE_OK) {
        r = sqlite_errno(q->db, rc);
        set_message(ret_message, "%s: %s", q->path,
                    q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(q->db, 1);
    sqlite3_busy_timeout(q->db, 5000);

    char pragmas[512];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode = WAL;"
             "PRAGMA synchronous = %s;"
             "PRAGMA cache_size = -%d;"
             "PRAGMA temp_store = MEMORY;"
             "PRAGMA secure_delete = FAST;"
             "PRAGMA journal_size_limit = 67108864;"
             "PRAGMA wal_autocheckpoint = 4000;",
             cfg->sync == STORE_SYNC_NORMAL ? "NORMAL" : "FULL",
             cfg->cache_kib > 0 ? cfg->cache_kib : 16000);
    r = exec_sql(q->db, pragmas, ret_message, q->path);
    if (r < 0)
        goto fail;
    {
        sqlite3_stmt *st = NULL;
        const char *mode = NULL;
        rc = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode", -1, &st, NULL);
        if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            mode = (const char *)sqlite3_column_text(st, 0);
        bool wal = mode && strcmp(mode, "wal") == 0;
        sqlite3_finalize(st);
        if (!wal) {
            set_message(ret_message, "%s: cannot switch the database to WAL mode", q->path);
            r = -EIO;
            goto fail;
        }
    }
    r = migrate(q->db, q->path, ret_message);
    if (r < 0)
        goto fail;
    for (int i = 0; i < ST_MAX; i++) {
        rc = sqlite3_prepare_v3(q->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i],
                                NULL);
        if (rc != SQLITE_OK) {
            r = sqlite_errno(q->db, rc);
            set_message(ret_message, "%s: %s", q->path, sqlite3_errmsg(q->db));
            goto fail;
        }
    }
    for (int i = 0; i < SST_MAX; i++) {
        rc = sqlite3_prepare_v3(q->db, session_statements[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &q->sess_st[i], NULL);
        if (rc != SQLITE_OK) {
            r = sqlite_errno(q->db, rc);
            set_message(ret_message, "%s: %s", q->path, sqlite3_errmsg(q->db));
            goto fail;
        }
    }

    {
        /* "INSERT INTO tasks (COLS) VALUES (?, ...), ... ON CONFLICT DO
         * NOTHING RETURNING id" with INSERT_ROWS rows. */
        char sql[INSERT_ROWS * (INSERT_COLS * 3 + 4) + 256];
        size_t len = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO tasks (" COLS ") VALUES ");
        for (int row = 0; row < INSERT_ROWS; row++) {
            len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s(", row ? "," : "");
            for (int c = 0; c < INSERT_COLS; c++)
                len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s?", c ? "," : "");
            len += (size_t)snprintf(sql + len, sizeof(sql) - len, ")");
        }
        snprintf(sql + len, sizeof(sql) - len, " ON CONFLICT DO NOTHING RETURNING id");
        rc = sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->insert_many, NULL);
        if (rc != SQLITE_OK) {
            r = sqlite_errno(q->db, rc);
            set_message(ret_message, "%s: %s", q->path, sqlite3_errmsg(q->db));
            goto fail;
        }
    }

    /* The writer takes no signals: they belong to the loop thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = -pthread_create(&q->thread, NULL, writer_main, q);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        set_message(ret_message, "%s: cannot start the store thread: %s", q->path, strerror(-r));
        goto fail;
    }
    q->thread_started = true;
    *ret_data = q;
    return 0;
fail:
    sq_free(q);
    return r;
}

static void sq_submit(void *data, store_op *op) {
    sq *q = data;
    op->priv_next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->priv_next = op;
    else
        q->head = op;
    q->tail = op;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

static void sq_stop(void *data) {
    sq *q = data;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

const store_backend store_backend_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .submit = sq_submit,
    .stop = sq_stop,
    .free = sq_free,
};
