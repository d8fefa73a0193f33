/*
 * tend-supervisor.c - the public supervisor (tend/supervisor.h): the
 * engine's supervisor (supervisor.c, what `tend up` runs) on a loop
 * thread of its own.
 *
 * Why not on the runtime's loop: supervisor_new() runs its loop to drain
 * what it opened when it fails, and supervisor_free() wants a drained
 * loop; both are natural on a loop of its own and impossible inside
 * another loop's callback.  It also keeps process spawning and reaping
 * off the thread that serves tasks.
 *
 * Public calls are tend_loop calls.  Waiting calls (wait_started, stop)
 * are deferred calls completed from the supervisor's phase callback; the
 * wait timeout is one timer for the earliest waiter.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/supervisor.h>

#include "macros.h"
#include "supervisor.h"
#include "tend-loop.h"
#include "timeutil.h"

_Static_assert((int)TEND_SERVICE_FAILED == (int)SVC_FAILED && (int)TEND_SERVICE_READY == (int)SVC_READY &&
                   (int)_SVC_STATE_MAX == (int)TEND_SERVICE_FAILED + 1,
               "tend_service_state mirrors service_state");
_Static_assert((int)TEND_SERVICE_HEALTH_UNHEALTHY == (int)HEALTH_UNHEALTHY, "tend_service_health mirrors service_health");

/* The reaper and the subreaper flag are the process's: one supervisor at
 * a time.  The only process-wide state of libtend, and it exists because
 * the resource it guards is process-wide. */
static atomic_int supervisor_exists;

typedef struct swaiter {
    tend_call *call;
    int64_t deadline; /* mono ms; INT64_MAX: none */
    bool for_stop;
} swaiter;

struct tend_supervisor {
    tend_loop *loop;
    const tend_config *cfg;
    tend_supervisor_options opts;
    supervisor *sup;
    uv_timer_t wait_timer;
    swaiter *waiters;
    size_t n_waiters, cap_waiters;
    pthread_mutex_t lock; /* the flags and failure below */
    bool started, stopped, freed;
    char failure[1024];
};

TEND_EXPORT void tend_supervisor_options_init(tend_supervisor_options *o) {
    if (!o)
        return;
    *o = (tend_supervisor_options){.shutdown_timeout_ms = 30000};
}

TEND_EXPORT const char *tend_service_state_to_string(tend_service_state s) {
    return (unsigned)s < _SVC_STATE_MAX ? service_state_name((service_state)s) : NULL;
}

TEND_EXPORT const char *tend_service_health_to_string(tend_service_health h) {
    return (unsigned)h <= HEALTH_UNHEALTHY ? service_health_name((service_health)h) : NULL;
}

/* ---- Callbacks from the engine (supervisor thread) ------------------- */

static void on_log(void *data, int level, const char *svc, const char *msg) {
    tend_supervisor *ts = data;
    if (ts->opts.log)
        ts->opts.log(ts->opts.data, level, svc, msg);
}

static void on_output(void *data, const char *svc, size_t index, const char *line, size_t len) {
    tend_supervisor *ts = data;
    if (ts->opts.output)
        ts->opts.output(ts->opts.data, svc, line, len);
}

static void on_state(void *data, const service *s, service_state from, const char *reason) {
    tend_supervisor *ts = data;
    if (ts->opts.state_changed)
        ts->opts.state_changed(ts->opts.data, s->spec->name, (tend_service_state)from,
                               (tend_service_state)s->state, reason ? reason : "");
}

/* Completes the waiters that match (for_stop) with result. */
static void complete_waiters(tend_supervisor *ts, bool for_stop, int result) {
    size_t w = 0;
    for (size_t i = 0; i < ts->n_waiters; i++) {
        if (ts->waiters[i].for_stop == for_stop)
            tend_loop_complete(ts->loop, ts->waiters[i].call, result);
        else
            ts->waiters[w++] = ts->waiters[i];
    }
    ts->n_waiters = w;
}

static void on_phase(void *data, supervisor_phase phase) {
    tend_supervisor *ts = data;
    if (phase == PHASE_STARTED)
        complete_waiters(ts, false, 0);
    else if (phase == PHASE_STOPPING || phase == PHASE_DONE) {
        pthread_mutex_lock(&ts->lock);
        snprintf(ts->failure, sizeof(ts->failure), "%s", ts->sup->failure);
        pthread_mutex_unlock(&ts->lock);
        complete_waiters(ts, false, ts->sup->failure[0] ? -ECANCELED : -ESHUTDOWN);
        if (phase == PHASE_DONE)
            complete_waiters(ts, true, 0);
    }
}

static void arm_wait_timer(tend_supervisor *ts);

static void on_wait_timer(uv_timer_t *t) {
    tend_supervisor *ts = t->data;
    int64_t now = now_mono_ms();
    size_t w = 0;
    for (size_t i = 0; i < ts->n_waiters; i++) {
        if (ts->waiters[i].deadline <= now)
            tend_loop_complete(ts->loop, ts->waiters[i].call, -ETIMEDOUT);
        else
            ts->waiters[w++] = ts->waiters[i];
    }
    ts->n_waiters = w;
    arm_wait_timer(ts);
}

static void arm_wait_timer(tend_supervisor *ts) {
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < ts->n_waiters; i++)
        next = MIN(next, ts->waiters[i].deadline);
    if (next == INT64_MAX) {
        uv_timer_stop(&ts->wait_timer);
        return;
    }
    int64_t d = next - now_mono_ms();
    uv_timer_start(&ts->wait_timer, on_wait_timer, (uint64_t)MAX(d, 0), 0);
}

static int add_waiter(tend_supervisor *ts, tend_call *call, int64_t timeout_ms, bool for_stop) {
    if (ts->n_waiters == ts->cap_waiters) {
        size_t nc = ts->cap_waiters ? 2 * ts->cap_waiters : 4;
        swaiter *n = realloc(ts->waiters, nc * sizeof(*n));
        if (!n)
            return -ENOMEM;
        ts->waiters = n;
        ts->cap_waiters = nc;
    }
    ts->waiters[ts->n_waiters++] = (swaiter){
        .call = call, .deadline = timeout_ms < 0 ? INT64_MAX : now_mono_ms() + timeout_ms, .for_stop = for_stop};
    call->deferred = true;
    arm_wait_timer(ts);
    return 0;
}

/* ---- Loop thread lifecycle ------------------------------------------ */

static int sup_init(tend_loop *l, void *data) {
    tend_supervisor *ts = data;
    ts->loop = l;
    supervisor_callbacks cb = {
        .data = ts, .log = on_log, .output = on_output, .state_changed = on_state, .phase_changed = on_phase};
    char err[1024] = "";
    int r = supervisor_new(&l->uv, ts->cfg, NULL, &cb, &ts->sup, err, sizeof(err));
    if (r < 0) {
        if (ts->opts.log)
            ts->opts.log(ts->opts.data, LOG_ERR, NULL, err[0] ? err : strerror(-r));
        ts->sup = NULL;
        return r;
    }
    ts->sup->shutdown_timeout_ms = ts->opts.shutdown_timeout_ms;
    uv_timer_init(&l->uv, &ts->wait_timer);
    ts->wait_timer.data = ts;
    return 0;
}

static void sup_stop(tend_loop *l, void *data) {
    tend_supervisor *ts = data;
    if (ts->sup->phase != PHASE_DONE)
        supervisor_shutdown(ts->sup, "tend_supervisor_free", 0, ts->opts.shutdown_timeout_ms);
    for (size_t i = 0; i < ts->n_waiters; i++)
        tend_loop_complete(l, ts->waiters[i].call, -ESHUTDOWN);
    ts->n_waiters = 0;
    uv_close((uv_handle_t *)&ts->wait_timer, NULL);
}

static bool cfg_valid(const tend_config *cfg, const tend_supervisor_options *opts) {
    if (!cfg->state_dir || cfg->state_dir[0] != '/' || !cfg->dir || cfg->dir[0] != '/' ||
        (cfg->n_services > 0 && !cfg->services))
        return false;
    if (opts && opts->shutdown_timeout_ms < 0)
        return false;
    for (size_t i = 0; i < cfg->n_services; i++) {
        const tend_service_spec *s = &cfg->services[i];
        if (!s->name || !s->name[0] || !s->argv || !s->argv[0] || (s->n_deps > 0 && !s->deps) ||
            (s->n_stages > 0 && !s->stages))
            return false;
        for (size_t k = 0; k < s->n_deps; k++)
            if (!s->deps[k].name)
                return false;
    }
    return true;
}

TEND_EXPORT int tend_supervisor_new(const tend_config *cfg, const tend_supervisor_options *opts,
                                    tend_supervisor **ret_sup) {
    if (!cfg || !ret_sup || !cfg_valid(cfg, opts))
        return -EINVAL;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&supervisor_exists, &expected, 1))
        return -EBUSY;
    tend_supervisor *ts = calloc(1, sizeof(*ts));
    if (!ts) {
        atomic_store(&supervisor_exists, 0);
        return -ENOMEM;
    }
    ts->cfg = cfg;
    if (opts)
        ts->opts = *opts;
    else
        tend_supervisor_options_init(&ts->opts);
    pthread_mutex_init(&ts->lock, NULL);
    tend_loop *l;
    int r = tend_loop_new(sup_init, sup_stop, ts, &l);
    if (r < 0) {
        pthread_mutex_destroy(&ts->lock);
        free(ts);
        atomic_store(&supervisor_exists, 0);
        return r;
    }
    *ret_sup = ts;
    return 0;
}

/* ---- Calls ---------------------------------------------------------- */

static void call_start(tend_loop *l, tend_call *c) {
    tend_supervisor *ts = c->arg;
    c->result = supervisor_start(ts->sup);
}

TEND_EXPORT int tend_supervisor_start(tend_supervisor *ts) {
    if (!ts)
        return -EINVAL;
    pthread_mutex_lock(&ts->lock);
    int r = ts->stopped ? -ESHUTDOWN : ts->started ? -EALREADY : 0;
    ts->started = true;
    pthread_mutex_unlock(&ts->lock);
    return r < 0 ? r : tend_loop_call(ts->loop, call_start, ts);
}

typedef struct wait_args {
    tend_supervisor *ts;
    int64_t timeout_ms;
} wait_args;

static void call_wait_started(tend_loop *l, tend_call *c) {
    wait_args *a = c->arg;
    supervisor *sup = a->ts->sup;
    switch (sup->phase) {
    case PHASE_IDLE:
        c->result = -EINVAL;
        return;
    case PHASE_STARTED:
        c->result = 0;
        return;
    case PHASE_STOPPING:
    case PHASE_DONE:
        c->result = sup->failure[0] ? -ECANCELED : -ESHUTDOWN;
        return;
    case PHASE_STARTING:
        c->result = add_waiter(a->ts, c, a->timeout_ms, false);
        return;
    }
}

TEND_EXPORT int tend_supervisor_wait_started(tend_supervisor *ts, int64_t timeout_ms) {
    if (!ts || timeout_ms < 0)
        return -EINVAL;
    if (tend_loop_on_thread(ts->loop))
        return -EDEADLK;
    wait_args a = {ts, timeout_ms};
    return tend_loop_call(ts->loop, call_wait_started, &a);
}

static void call_stop(tend_loop *l, tend_call *c) {
    wait_args *a = c->arg;
    supervisor *sup = a->ts->sup;
    if (sup->phase == PHASE_DONE) {
        c->result = 0;
        return;
    }
    supervisor_shutdown(sup, "stop requested", 0, a->timeout_ms);
    if (sup->phase == PHASE_DONE) {
        c->result = 0;
        return;
    }
    c->result = add_waiter(a->ts, c, -1, true);
}

TEND_EXPORT int tend_supervisor_stop(tend_supervisor *ts, int64_t timeout_ms) {
    if (!ts || timeout_ms < 0)
        return -EINVAL;
    if (tend_loop_on_thread(ts->loop))
        return -EDEADLK;
    pthread_mutex_lock(&ts->lock);
    bool again = ts->stopped;
    ts->stopped = true;
    pthread_mutex_unlock(&ts->lock);
    if (again)
        return -EALREADY;
    wait_args a = {ts, timeout_ms};
    return tend_loop_call(ts->loop, call_stop, &a);
}

TEND_EXPORT tend_supervisor *tend_supervisor_free(tend_supervisor *ts) {
    if (!ts || tend_loop_on_thread(ts->loop))
        return NULL;
    (void)tend_supervisor_stop(ts, ts->opts.shutdown_timeout_ms);
    tend_loop_stop(ts->loop);
    supervisor_free(ts->sup);
    tend_loop_unref(ts->loop);
    free(ts->waiters);
    pthread_mutex_destroy(&ts->lock);
    free(ts);
    atomic_store(&supervisor_exists, 0);
    return NULL;
}

typedef struct svc_args {
    tend_supervisor *ts;
    const char *name;
    int action; /* 0 info, 1 start, 2 stop, 3 restart */
    tend_service_info info;
} svc_args;

static void call_service(tend_loop *l, tend_call *c) {
    svc_args *a = c->arg;
    service *s = supervisor_find(a->ts->sup, a->name);
    if (!s) {
        c->result = -ENOENT;
        return;
    }
    switch (a->action) {
    case 0:
        a->info = (tend_service_info){
            .state = (tend_service_state)s->state,
            .health = (tend_service_health)s->health,
            .pid = s->pid > 0 ? s->pid : 0,
            .restarts = s->restarts_total,
        };
        c->result = 0;
        return;
    case 1:
        c->result = supervisor_service_start(a->ts->sup, s);
        return;
    case 2:
        c->result = supervisor_service_stop(a->ts->sup, s);
        return;
    default:
        c->result = supervisor_service_restart(a->ts->sup, s);
        return;
    }
}

static int service_call(tend_supervisor *ts, const char *name, int action, tend_service_info *ret) {
    if (!ts || !name || (action == 0 && !ret))
        return -EINVAL;
    svc_args a = {.ts = ts, .name = name, .action = action};
    int r = tend_loop_call(ts->loop, call_service, &a);
    if (r >= 0 && ret)
        *ret = a.info;
    return r;
}

TEND_EXPORT int tend_supervisor_service_info(tend_supervisor *ts, const char *name, tend_service_info *ret) {
    return service_call(ts, name, 0, ret);
}
TEND_EXPORT int tend_supervisor_service_start(tend_supervisor *ts, const char *name) {
    return service_call(ts, name, 1, NULL);
}
TEND_EXPORT int tend_supervisor_service_stop(tend_supervisor *ts, const char *name) {
    return service_call(ts, name, 2, NULL);
}
TEND_EXPORT int tend_supervisor_service_restart(tend_supervisor *ts, const char *name) {
    return service_call(ts, name, 3, NULL);
}

TEND_EXPORT int tend_supervisor_error(tend_supervisor *ts, char *buf, size_t size) {
    if (!ts || (!buf && size > 0))
        return -EINVAL;
    pthread_mutex_lock(&ts->lock);
    size_t len = strlen(ts->failure);
    if (size > 0)
        snprintf(buf, size, "%s", ts->failure);
    pthread_mutex_unlock(&ts->lock);
    return (int)len;
}
