/*
 * tend-loop.c - a loop thread and the call queue into it (see
 * tend-loop.h).  The queue is a singly linked list under one mutex; the
 * loop takes the whole list at each wake-up, so a burst of calls from
 * many threads costs one wake-up.  uv_async_send() is made while the
 * mutex is held: the loop closes the async handle only after it has seen
 * `closed` under the same mutex, so no thread can send to a closed handle.
 */
#include <errno.h>
#include <stdlib.h>

#include "tend-loop.h"

static void run_call(tend_loop *l, tend_call *c) {
    bool sync = c->sync;
    c->deferred = false;
    c->fn(l, c);
    /* A posted call may have freed itself: only sync calls are looked at
     * again, and they live on their waiting caller's stack. */
    if (sync && !c->deferred)
        tend_loop_complete(l, c, c->result);
}

static void fail_call(tend_loop *l, tend_call *c) {
    if (c->sync) {
        tend_loop_complete(l, c, -ESHUTDOWN);
        return;
    }
    /* The posted call's function sees -ESHUTDOWN and only frees. */
    c->result = -ESHUTDOWN;
    c->fn(l, c);
}

static tend_call *take_all(tend_loop *l) {
    pthread_mutex_lock(&l->lock);
    tend_call *head = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->lock);
    return head;
}

static void on_async(uv_async_t *h) {
    tend_loop *l = h->data;
    for (tend_call *c = take_all(l), *next; c; c = next) {
        next = c->next;
        run_call(l, c);
    }
    pthread_mutex_lock(&l->lock);
    bool stop = l->stop_requested && !l->stopping;
    pthread_mutex_unlock(&l->lock);
    if (!stop)
        return;
    l->stopping = true;
    if (l->on_stop)
        l->on_stop(l, l->data);
    /* closed was set when the stop was asked for; anything queued since
     * then was queued before that, by this thread (on_stop). */
    for (tend_call *c = take_all(l), *next; c; c = next) {
        next = c->next;
        fail_call(l, c);
    }
    uv_close((uv_handle_t *)&l->async, NULL);
}

static void report_init(tend_loop *l, int r) {
    pthread_mutex_lock(&l->lock);
    l->init_result = r;
    l->init_done = true;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static void *loop_thread(void *arg) {
    tend_loop *l = arg;
    l->tid = pthread_self();
    atomic_store(&l->live, true);
    int r = uv_loop_init(&l->uv);
    if (r < 0) {
        atomic_store(&l->live, false);
        report_init(l, r);
        return NULL;
    }
    /* The owner's init runs before the async handle exists, so that a
     * failing init may run the loop to drain its own handles (as
     * supervisor_new does) without blocking on ours. */
    if (l->init && (r = l->init(l, l->data)) < 0) {
        uv_run(&l->uv, UV_RUN_DEFAULT);
        uv_loop_close(&l->uv);
        atomic_store(&l->live, false);
        report_init(l, r);
        return NULL;
    }
    r = uv_async_init(&l->uv, &l->async, on_async);
    if (r < 0) {
        if (l->on_stop)
            l->on_stop(l, l->data);
        uv_run(&l->uv, UV_RUN_DEFAULT);
        uv_loop_close(&l->uv);
        atomic_store(&l->live, false);
        report_init(l, r);
        return NULL;
    }
    l->async.data = l;
    report_init(l, 0);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    /* Everything is closed once uv_run returns; a second pass runs close
     * callbacks that a last callback queued. */
    uv_run(&l->uv, UV_RUN_NOWAIT);
    uv_loop_close(&l->uv);
    atomic_store(&l->live, false);
    return NULL;
}

int tend_loop_new(int (*init)(tend_loop *l, void *data), void (*on_stop)(tend_loop *l, void *data),
                  void *data, tend_loop **ret) {
    tend_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->refs = 1;
    l->init = init;
    l->on_stop = on_stop;
    l->data = data;
    int r = pthread_mutex_init(&l->lock, NULL);
    if (r != 0) {
        free(l);
        return -r;
    }
    r = pthread_cond_init(&l->cond, NULL);
    if (r != 0) {
        pthread_mutex_destroy(&l->lock);
        free(l);
        return -r;
    }
    r = pthread_create(&l->thread, NULL, loop_thread, l);
    if (r != 0) {
        r = -r;
        goto fail;
    }
    pthread_mutex_lock(&l->lock);
    while (!l->init_done)
        pthread_cond_wait(&l->cond, &l->lock);
    r = l->init_result;
    pthread_mutex_unlock(&l->lock);
    if (r < 0) {
        pthread_join(l->thread, NULL);
        goto fail;
    }
    *ret = l;
    return 0;
fail:
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l);
    return r;
}

bool tend_loop_on_thread(tend_loop *l) { return atomic_load(&l->live) && pthread_equal(pthread_self(), l->tid); }

static int enqueue(tend_loop *l, tend_call *c) {
    c->next = NULL;
    pthread_mutex_lock(&l->lock);
    if (l->closed) {
        pthread_mutex_unlock(&l->lock);
        return -ESHUTDOWN;
    }
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    uv_async_send(&l->async);
    pthread_mutex_unlock(&l->lock);
    return 0;
}

int tend_loop_call(tend_loop *l, tend_call_fn fn, void *arg) {
    tend_call c = {.fn = fn, .arg = arg, .sync = true};
    if (tend_loop_on_thread(l)) {
        if (l->stopping)
            return -ESHUTDOWN;
        c.sync = false;
        fn(l, &c);
        return c.deferred ? -EDEADLK : c.result;
    }
    int r = enqueue(l, &c);
    if (r < 0)
        return r;
    pthread_mutex_lock(&l->lock);
    while (!c.done)
        pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
    return c.result;
}

int tend_loop_post(tend_loop *l, tend_call *c) {
    c->sync = false;
    c->done = false;
    return enqueue(l, c);
}

void tend_loop_complete(tend_loop *l, tend_call *c, int result) {
    pthread_mutex_lock(&l->lock);
    c->result = result;
    c->done = true;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

int tend_loop_stop(tend_loop *l) {
    if (tend_loop_on_thread(l))
        return -EDEADLK;
    pthread_mutex_lock(&l->lock);
    if (l->stop_requested) {
        while (!l->joined)
            pthread_cond_wait(&l->cond, &l->lock);
        pthread_mutex_unlock(&l->lock);
        return 0;
    }
    l->stop_requested = true;
    l->closed = true;
    uv_async_send(&l->async);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    pthread_mutex_lock(&l->lock);
    l->joined = true;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
    return 0;
}

void tend_loop_ref(tend_loop *l) {
    pthread_mutex_lock(&l->lock);
    l->refs++;
    pthread_mutex_unlock(&l->lock);
}

void tend_loop_unref(tend_loop *l) {
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    bool last = --l->refs == 0;
    pthread_mutex_unlock(&l->lock);
    if (!last)
        return;
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
