/*
 * tend-loop.h - a libuv loop on a thread of its own, and the one way other
 * threads reach it: a call queued under a mutex and a uv_async wake-up.
 * The public API (tend-runtime.c, tend-supervisor.c, ...) is built on it:
 * state lives on the loop thread and every public function either runs
 * there through tend_loop_call() or touches only what a lock protects.
 *
 * A call is run on the loop thread in the order queued.  A synchronous
 * call (tend_loop_call) waits for its result; the function may defer the
 * answer (set c->deferred) and give it later with tend_loop_complete(),
 * still on the loop thread.  A posted call (tend_loop_post) is heap
 * memory that its function frees.  When the loop stops, calls still
 * queued run with c->result = -ESHUTDOWN (sync callers get -ESHUTDOWN;
 * posted calls' functions see it and only free), and later calls are
 * refused with -ESHUTDOWN.
 *
 * The struct is reference-counted so that threads that may still post
 * (health checks that overran) can hold it past the loop's end.
 */
#ifndef TEND_LIB_TEND_LOOP_H
#define TEND_LIB_TEND_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

typedef struct tend_loop tend_loop;
typedef struct tend_call tend_call;
typedef void (*tend_call_fn)(tend_loop *l, tend_call *c);

struct tend_call {
    tend_call_fn fn;
    void *arg;
    int result;     /* set by fn (or tend_loop_complete) */
    bool deferred;  /* fn sets it: the answer comes with tend_loop_complete() */
    /* Private. */
    bool sync, done;
    tend_call *next;
};

struct tend_loop {
    uv_loop_t uv;
    uv_async_t async;
    pthread_t thread;   /* as pthread_create wrote it: for join */
    pthread_t tid;      /* as the thread itself saw it: for on_thread */
    atomic_bool live;   /* tid is valid: once joined, pthread_t values are reused */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    tend_call *head, *tail;
    bool closed;        /* refuses new calls */
    bool stop_requested;
    bool stopping;      /* on_stop ran: the loop is closing */
    bool joined;
    int init_result;
    bool init_done;
    int refs;
    int (*init)(tend_loop *l, void *data);
    void (*on_stop)(tend_loop *l, void *data);
    void *data;
};

/*
 * Starts the thread; on it: the loop, then init(l, data) (may be NULL),
 * whose result this returns, then the async handle.  A failing init must
 * have closed (uv_close) what it opened; the loop is then run until those
 * are gone and the thread ends.  on_stop(l, data) runs on the loop thread
 * when tend_loop_stop() is called: it closes the owner's handles so that
 * uv_run() returns.  tend_loop_call() must not be used inside init (the
 * queue does not exist yet).  0 and *ret, or -errno.
 */
int tend_loop_new(int (*init)(tend_loop *l, void *data), void (*on_stop)(tend_loop *l, void *data),
                  void *data, tend_loop **ret);
/* Runs c->fn on the loop thread and waits for its result (which it
 * returns).  On the loop thread itself, runs it at once (it must not
 * defer).  -ESHUTDOWN once the loop is closing. */
int tend_loop_call(tend_loop *l, tend_call_fn fn, void *arg);
/* Queues a heap call (fn frees it); 0 or -ESHUTDOWN (then the caller
 * still owns c). */
int tend_loop_post(tend_loop *l, tend_call *c);
/* Loop thread: the answer to a deferred sync call. */
void tend_loop_complete(tend_loop *l, tend_call *c, int result);
/* True on the loop thread. */
bool tend_loop_on_thread(tend_loop *l);
/* Runs on_stop on the loop thread, fails what is queued, waits for the
 * thread to end.  Idempotent; not from the loop thread (-EDEADLK). */
int tend_loop_stop(tend_loop *l);
void tend_loop_ref(tend_loop *l);
/* Frees when the last reference goes (after tend_loop_stop). */
void tend_loop_unref(tend_loop *l);

#endif
