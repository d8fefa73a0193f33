/*
 * handler-func.c - C-function handlers (libtend): the function registered
 * for a queue runs on a pool of tasks.workers threads.  The loop hands
 * runs over in bulk: func_start() only appends to a list of the loop's
 * own, and a uv_prepare handle (run before the loop next waits for
 * events) moves the whole list to the workers under one mutex with one
 * wake-up, so a claim of thousands of runs does not wake a worker per run
 * (each woke, took the single run waiting and slept again); each worker takes its share of what waits (what waits divided by
 * the number of workers, at least 1, at most FUNC_TAKE) per lock, so runs
 * that may go at once never queue behind each other on one thread while
 * another idles; finished runs go back
 * through one mutex-protected list and one uv_async wake-up, so a burst
 * of tiny tasks costs a few lock round-trips per batch, not per task.
 *
 * A C function cannot be killed.  At its timeout, a cancel or shutdown
 * the engine raises the context's cancel flag (task_func_cancelled()
 * turns true) and waits for the function to return; what it returns is
 * then overridden by the reason it was asked to stop.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "macros.h"

#define FUNC_TAKE 64
/* Finished runs' records kept for reuse (loop thread), at most this many:
 * a window of thousands of runs outgrows malloc's per-thread cache. */
#define FUNC_SPARE_MAX 1024

typedef struct func_run {
    task_run *run;
    task_func_ctx ctx;
    task_func_item *items;  /* &one for a single task (no allocation) */
    task_func_item one;
    bool *failed;
    int rc;
    struct func_run *next;
} func_run;

struct func_pool {
    handler_env *env;
    /* Loop thread only: started, not yet handed to the workers. */
    func_run *new_head, *new_tail;
    size_t n_new;
    func_run *spare;
    size_t n_spare;
    uv_prepare_t flush;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    func_run *todo_head, *todo_tail;
    size_t n_todo;          /* runs in the todo list */
    bool stop;
    pthread_mutex_t done_lock;
    func_run *done_head, *done_tail;
    uv_async_t async;
    pthread_t *threads;
    int n_threads;
};

bool task_func_cancelled(const task_func_ctx *ctx) { return __atomic_load_n(&ctx->priv_cancel, __ATOMIC_RELAXED) != 0; }

static void *worker(void *arg) {
    func_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->todo_head && !p->stop)
            pthread_cond_wait(&p->cond, &p->lock);
        if (!p->todo_head && p->stop) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        size_t share = p->n_todo / (size_t)MAX(p->n_threads, 1);
        share = MIN(MAX(share, (size_t)1), (size_t)FUNC_TAKE);
        func_run *list = p->todo_head, *last = list;
        size_t n = 1;
        while (last->next && n < share) {
            last = last->next;
            n++;
        }
        p->n_todo -= n;
        p->todo_head = last->next;
        if (!p->todo_head)
            p->todo_tail = NULL;
        else
            pthread_cond_signal(&p->cond); /* more for another worker */
        last->next = NULL;
        pthread_mutex_unlock(&p->lock);
        for (func_run *f = list; f; f = f->next) {
            task_func fn;
            void *data;
            task_engine_func_of(f->run, &fn, &data);
            f->rc = fn(&f->ctx, data);
        }
        pthread_mutex_lock(&p->done_lock);
        bool wake = p->done_head == NULL;
        if (p->done_tail)
            p->done_tail->next = list;
        else
            p->done_head = list;
        p->done_tail = last;
        pthread_mutex_unlock(&p->done_lock);
        if (wake)
            uv_async_send(&p->async);
    }
}

static void on_done(uv_async_t *a) {
    func_pool *p = a->data;
    pthread_mutex_lock(&p->done_lock);
    func_run *list = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->done_lock);
    task_engine *e = list ? list->run->engine : NULL;
    if (e)
        handler_batch(e, true);
    while (list) {
        func_run *f = list;
        list = f->next;
        task_run *run = f->run;
        run->priv = NULL;
        handler_result res = {.retry_after_ms = -1};
        res.outcome = f->rc == 0 ? HANDLER_OK : f->rc == TASK_FUNC_PERMANENT ? HANDLER_PERMANENT : HANDLER_FAILED;
        char err[600];
        if (f->rc != 0) {
            snprintf(err, sizeof(err), "%s", f->ctx.error[0] ? f->ctx.error : "the function failed");
            res.error = err;
        }
        /* Batch: report the failed members as {"failed": [...]}, the
         * same answer an exec or http batch handler gives. */
        char *answer = NULL;
        if (f->rc == 0 && f->failed) {
            size_t cap = 16 + run->n * (STORE_ID_SIZE + 3), len = 0;
            answer = malloc(cap);
            if (answer) {
                len += (size_t)snprintf(answer, cap, "{\"failed\":[");
                bool first = true;
                for (size_t i = 0; i < run->n; i++)
                    if (f->failed[i]) {
                        len += (size_t)snprintf(answer + len, cap - len, "%s\"%s\"", first ? "" : ",", run->tasks[i].id);
                        first = false;
                    }
                len += (size_t)snprintf(answer + len, cap - len, "]}");
                res.output = answer;
                res.output_len = len;
            }
        }
        handler_done(run, &res);
        free(answer);
        if (f->items != &f->one)
            free(f->items);
        free(f->failed);
        if (p->n_spare < FUNC_SPARE_MAX) {
            f->next = p->spare;
            p->spare = f;
            p->n_spare++;
        } else
            free(f);
    }
    if (e)
        handler_batch(e, false);
}

/* Before the loop waits: what was started since goes to the workers. */
static void on_flush(uv_prepare_t *h) {
    func_pool *p = h->data;
    uv_prepare_stop(h);
    if (!p->new_head)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->todo_tail)
        p->todo_tail->next = p->new_head;
    else
        p->todo_head = p->new_head;
    p->todo_tail = p->new_tail;
    p->n_todo += p->n_new;
    pthread_mutex_unlock(&p->lock);
    /* One wake-up; a worker that takes its share wakes the next while
     * runs are left. */
    pthread_cond_signal(&p->cond);
    p->new_head = p->new_tail = NULL;
    p->n_new = 0;
}

int func_pool_new(handler_env *env, int threads, func_pool **ret) {
    func_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->env = env;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    pthread_mutex_init(&p->done_lock, NULL);
    int r = uv_async_init(env->loop, &p->async, on_done);
    if (r < 0) {
        free(p);
        return r;
    }
    p->async.data = p;
    uv_unref((uv_handle_t *)&p->async);
    uv_prepare_init(env->loop, &p->flush);
    p->flush.data = p;
    p->threads = calloc((size_t)MAX(threads, 1), sizeof(*p->threads));
    if (!p->threads) {
        uv_close((uv_handle_t *)&p->flush, NULL);
        uv_close((uv_handle_t *)&p->async, NULL);
        return -ENOMEM;
    }
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        p->n_threads++;
    }
    if (p->n_threads == 0) {
        free(p->threads);
        uv_close((uv_handle_t *)&p->flush, NULL);
        uv_close((uv_handle_t *)&p->async, NULL);
        return -EAGAIN;
    }
    *ret = p;
    return 0;
}

static void on_async_closed(uv_handle_t *h) {
    func_pool *p = h->data;
    while (p->spare) {
        func_run *f = p->spare;
        p->spare = f->next;
        free(f);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->done_lock);
    free(p);
}

static void on_flush_closed(uv_handle_t *h) {
    func_pool *p = h->data;
    uv_close((uv_handle_t *)&p->async, on_async_closed);
}

void func_pool_free(func_pool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    /* The flush handle first: p goes with the last one closed. */
    uv_close((uv_handle_t *)&p->flush, on_flush_closed);
}

static int func_start(task_run *run) {
    func_pool *p = run->env->pool;
    if (!p)
        return -ENOEXEC;
    func_run *f = p->spare;
    if (f) {
        p->spare = f->next;
        p->n_spare--;
        memset(f, 0, sizeof(*f));
    } else if (!(f = calloc(1, sizeof(*f))))
        return -ENOMEM;
    f->items = run->n == 1 ? &f->one : calloc(run->n, sizeof(*f->items));
    if (run->batch)
        f->failed = calloc(run->n, sizeof(bool));
    if (!f->items || (run->batch && !f->failed)) {
        if (f->items != &f->one)
            free(f->items);
        free(f->failed);
        free(f);
        return -ENOMEM;
    }
    for (size_t i = 0; i < run->n; i++)
        f->items[i] = (task_func_item){run->tasks[i].id, run->tasks[i].payload, run->tasks[i].payload_len,
                                       (int)run->tasks[i].attempts};
    f->run = run;
    f->ctx.queue = run->spec->name;
    f->ctx.items = f->items;
    f->ctx.n = run->n;
    f->ctx.failed = f->failed;
    run->priv = f;
    if (p->new_tail)
        p->new_tail->next = f;
    else {
        p->new_head = f;
        uv_prepare_start(&p->flush, on_flush);
    }
    p->new_tail = f;
    p->n_new++;
    return 0;
}

static void func_abort(task_run *run) {
    func_run *f = run->priv;
    if (f)
        __atomic_store_n(&f->ctx.priv_cancel, 1, __ATOMIC_RELAXED);
}

const handler_backend handler_func = {"function", func_start, func_abort};
