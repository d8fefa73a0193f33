/*
 * sqlite-api.c - SQLite, loaded with dlopen() when first used.
 *
 * Linked, libsqlite3 costs every tend process ~0.35 ms of CPU before
 * main() (its relocations touch ~30 pages; measured against the same
 * empty program without it: 0.56 -> 0.90 ms, `perf stat -r 200`), though
 * only a tend with a durable task queue or persisted sessions opens a
 * database, and no other command does.  So, as for libcurl
 * (curl-api.h) and libmicrohttpd (src/cli/mhd-api.c), it is not linked:
 * the functions below have SQLite's names and the prototypes of
 * <sqlite3.h>, store-sqlite.c calls them as if the library were linked,
 * and the first call loads libsqlite3.so.0 (once, from whichever thread)
 * and forwards.  They are hidden (libtend_static is built with
 * -fvisibility=hidden), so a program embedding libtend that links SQLite
 * itself keeps its own: dlopen() then finds that same library loaded.
 *
 * When the library cannot be loaded, sqlite3_open_v2() fails with
 * SQLITE_CANTOPEN and sqlite3_errstr()/sqlite3_errmsg() say why; nothing
 * else can be reached without an open database.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sqlite3.h>

#define SQLITE_SONAME "libsqlite3.so.0"

#define SQLITE_FUNCTIONS(X)                                                                                    \
    X(bind_int) X(bind_int64) X(bind_null) X(bind_text) X(bind_text64) X(busy_timeout) X(changes)             \
    X(changes64) X(clear_bindings) X(close) X(column_bytes) X(column_int) X(column_int64) X(column_text)      \
    X(column_type) X(db_handle) X(errcode) X(errmsg) X(errstr) X(exec) X(extended_result_codes) X(finalize) \
    X(free) X(get_autocommit) X(open_v2) X(prepare_v2) X(prepare_v3) X(reset) X(step) X(system_errno)        \
    X(total_changes64) X(vfs_find) X(vfs_register)

static struct {
#define MEMBER(f) __typeof__(sqlite3_##f) *f;
    SQLITE_FUNCTIONS(MEMBER)
#undef MEMBER
} fn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool loaded;
static char load_error[512];

static void load(void) {
    static const struct {
        const char *name;
        size_t offset;
    } syms[] = {
#define SYM(f) {"sqlite3_" #f, offsetof(__typeof__(fn), f)},
        SQLITE_FUNCTIONS(SYM)
#undef SYM
    };
    void *h = dlopen(SQLITE_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_error, sizeof(load_error), "%s could not be loaded: %s", SQLITE_SONAME, e ? e : "?");
        return;
    }
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        void *f = dlsym(h, syms[i].name);
        if (!f) {
            snprintf(load_error, sizeof(load_error), "%s lacks %s (SQLite 3.37 or later is needed)", SQLITE_SONAME,
                     syms[i].name);
            dlclose(h);
            return;
        }
        *(void **)((char *)&fn + syms[i].offset) = f;
    }
    loaded = true; /* published to other threads by pthread_once */
}

static bool ready(void) {
    (void)pthread_once(&once, load);
    return loaded;
}

/* A forwarder: the library's function, or `fail` when it is not there. */
#define FORWARD(ret, f, params, args, fail)                                                                    \
    ret sqlite3_##f params {                                                                                   \
        if (!ready())                                                                                          \
            return fail;                                                                                       \
        return fn.f args;                                                                                      \
    }

FORWARD(int, open_v2, (const char *path, sqlite3 **db, int flags, const char *vfs), (path, db, flags, vfs),
        (*db = NULL, SQLITE_CANTOPEN))
FORWARD(const char *, errstr, (int rc), (rc), load_error)
FORWARD(const char *, errmsg, (sqlite3 *db), (db), load_error)
FORWARD(sqlite3_vfs *, vfs_find, (const char *name), (name), NULL)
FORWARD(int, vfs_register, (sqlite3_vfs *vfs, int dflt), (vfs, dflt), SQLITE_ERROR)
FORWARD(int, bind_int, (sqlite3_stmt *st, int i, int v), (st, i, v), SQLITE_MISUSE)
FORWARD(int, bind_int64, (sqlite3_stmt *st, int i, sqlite3_int64 v), (st, i, v), SQLITE_MISUSE)
FORWARD(int, bind_null, (sqlite3_stmt *st, int i), (st, i), SQLITE_MISUSE)
FORWARD(int, bind_text, (sqlite3_stmt *st, int i, const char *s, int n, void (*d)(void *)), (st, i, s, n, d),
        SQLITE_MISUSE)
FORWARD(int, bind_text64,
        (sqlite3_stmt *st, int i, const char *s, sqlite3_uint64 n, void (*d)(void *), unsigned char enc),
        (st, i, s, n, d, enc), SQLITE_MISUSE)
FORWARD(int, busy_timeout, (sqlite3 *db, int ms), (db, ms), SQLITE_MISUSE)
FORWARD(int, changes, (sqlite3 *db), (db), 0)
FORWARD(sqlite3_int64, changes64, (sqlite3 *db), (db), 0)
FORWARD(int, clear_bindings, (sqlite3_stmt *st), (st), SQLITE_MISUSE)
FORWARD(int, close, (sqlite3 *db), (db), SQLITE_OK) /* closing NULL: a no-op, as SQLite's */
FORWARD(int, column_bytes, (sqlite3_stmt *st, int i), (st, i), 0)
FORWARD(int, column_int, (sqlite3_stmt *st, int i), (st, i), 0)
FORWARD(sqlite3_int64, column_int64, (sqlite3_stmt *st, int i), (st, i), 0)
FORWARD(const unsigned char *, column_text, (sqlite3_stmt *st, int i), (st, i), NULL)
FORWARD(int, column_type, (sqlite3_stmt *st, int i), (st, i), SQLITE_NULL)
FORWARD(sqlite3 *, db_handle, (sqlite3_stmt *st), (st), NULL)
FORWARD(int, errcode, (sqlite3 *db), (db), SQLITE_CANTOPEN)
FORWARD(int, exec, (sqlite3 *db, const char *sql, int (*cb)(void *, int, char **, char **), void *arg, char **err),
        (db, sql, cb, arg, err), SQLITE_MISUSE)
FORWARD(int, extended_result_codes, (sqlite3 *db, int on), (db, on), SQLITE_MISUSE)
FORWARD(int, finalize, (sqlite3_stmt *st), (st), SQLITE_OK)
FORWARD(int, get_autocommit, (sqlite3 *db), (db), 1)
FORWARD(int, prepare_v2, (sqlite3 *db, const char *sql, int n, sqlite3_stmt **st, const char **tail),
        (db, sql, n, st, tail), (*st = NULL, SQLITE_MISUSE))
FORWARD(int, prepare_v3,
        (sqlite3 *db, const char *sql, int n, unsigned int flags, sqlite3_stmt **st, const char **tail),
        (db, sql, n, flags, st, tail), (*st = NULL, SQLITE_MISUSE))
FORWARD(int, reset, (sqlite3_stmt *st), (st), SQLITE_MISUSE)
FORWARD(int, step, (sqlite3_stmt *st), (st), SQLITE_MISUSE)
FORWARD(int, system_errno, (sqlite3 *db), (db), 0)
FORWARD(sqlite3_int64, total_changes64, (sqlite3 *db), (db), 0)

void sqlite3_free(void *p) {
    if (ready())
        fn.free(p);
}
