/*
 * tend-runtime.c - the public runtime (tend/runtime.h) and its components
 * (tend/component.h).
 *
 * The runtime is a loop thread (tend-loop.c) that hosts the health
 * monitor, the task manager and the session store, plus the list of
 * components.  Components start and stop on the thread that calls
 * tend_runtime_start() / tend_runtime_shutdown(), never on the loop
 * thread: a component's start may block (connect to a database), and the
 * loop must keep serving the parts already running meanwhile.  The
 * component list and the lifecycle state are under one mutex, so that
 * tend_runtime_component_state() may be asked from any thread while a
 * start is in progress.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macros.h"
#include "tend-internal.h"
#include "timeutil.h"

TEND_EXPORT const char *tend_version(void) { return TEND_VERSION_TEXT; }

TEND_EXPORT const char *tend_strerror(int error) {
    if (error == 0)
        return "Success";
    int e = error < 0 ? -error : error;
    /* strerror_r (GNU) is thread-safe; the texts of known errors are
     * static strings, and an unknown one is reported generically. */
    static const struct {
        int e;
        const char *msg;
    } known[] = {
        {EINVAL, "Invalid argument"}, {ENOMEM, "Cannot allocate memory"},
        {ESHUTDOWN, "The runtime is shutting down"}, {EALREADY, "Already done"},
        {EBUSY, "Busy"}, {ENOENT, "Not found"}, {EEXIST, "Already exists"},
        {ELOOP, "Dependency cycle"}, {ETIMEDOUT, "Timed out"}, {EDEADLK, "Called from the loop thread"},
        {ENOSPC, "Limit reached"}, {E2BIG, "Too big"}, {ERANGE, "Out of range"},
        {ECANCELED, "Cancelled"}, {EAGAIN, "Try again"}, {EIO, "Input/output error"},
    };
    for (size_t i = 0; i < ELEMENTSOF(known); i++)
        if (known[i].e == e)
            return known[i].msg;
    return "Error (see errno.h)";
}

bool tend_name_valid(const char *s, size_t len) {
    if (len == 0 || len > TEND_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

TEND_EXPORT void tend_runtime_options_init(tend_runtime_options *o) {
    if (!o)
        return;
    *o = (tend_runtime_options){
        .name = "tend",
        .health_interval_ms = 60000,
        .health_timeout_ms = 5000,
        .shutdown_timeout_ms = 30000,
    };
}

TEND_EXPORT void tend_component_spec_init(tend_component_spec *spec) {
    if (!spec)
        return;
    *spec = (tend_component_spec){.critical = true};
}

static const char *const state_names[] = {"created", "starting", "running", "stopping", "stopped"};
static const char *const comp_state_names[] = {"registered", "starting", "started", "failed",
                                               "skipped", "stopping", "stopped"};

TEND_EXPORT const char *tend_runtime_state_to_string(tend_runtime_state s) {
    return (unsigned)s < ELEMENTSOF(state_names) ? state_names[s] : NULL;
}

TEND_EXPORT const char *tend_component_state_to_string(tend_component_state s) {
    return (unsigned)s < ELEMENTSOF(comp_state_names) ? comp_state_names[s] : NULL;
}

void tend_runtime_set_error(tend_runtime *rt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&rt->lock);
    vsnprintf(rt->error, sizeof(rt->error), fmt, ap);
    pthread_mutex_unlock(&rt->lock);
    va_end(ap);
}

TEND_EXPORT int tend_runtime_error(const tend_runtime *crt, char *buf, size_t size) {
    tend_runtime *rt = (tend_runtime *)crt;
    if (!rt || (!buf && size > 0))
        return -EINVAL;
    pthread_mutex_lock(&rt->lock);
    size_t len = strlen(rt->error);
    if (size > 0)
        snprintf(buf, size, "%s", rt->error);
    pthread_mutex_unlock(&rt->lock);
    return (int)len;
}

TEND_EXPORT tend_runtime_state tend_runtime_get_state(const tend_runtime *crt) {
    tend_runtime *rt = (tend_runtime *)crt;
    if (!rt)
        return TEND_RUNTIME_STOPPED;
    pthread_mutex_lock(&rt->lock);
    tend_runtime_state s = rt->state;
    pthread_mutex_unlock(&rt->lock);
    return s;
}

/* ---- Creation ------------------------------------------------------- */

static int runtime_loop_init(tend_loop *l, void *data) {
    tend_runtime *rt = data;
    rt->loop = l; /* tend_loop_new has not returned yet: health needs it now */
    return tend_health_create(rt, &rt->health);
}

static void runtime_loop_stop(tend_loop *l, void *data) {
    tend_runtime *rt = data;
    tend_health_close(rt->health);
}

TEND_EXPORT int tend_runtime_new(const tend_runtime_options *opts, tend_runtime **ret_rt) {
    if (!ret_rt)
        return -EINVAL;
    tend_runtime_options o;
    if (opts)
        o = *opts;
    else
        tend_runtime_options_init(&o);
    if (o.health_interval_ms < 0 || o.health_timeout_ms < 0 || o.shutdown_timeout_ms < 0)
        return -EINVAL;
    if (o.health_timeout_ms == 0)
        o.health_timeout_ms = 5000;
    const char *name = o.name ? o.name : "tend";
    if (!tend_name_valid(name, strlen(name)))
        return -EINVAL;
    tend_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    int r = -ENOMEM;
    rt->name = strdup(name);
    if (!rt->name)
        goto fail;
    o.name = rt->name;
    rt->opts = o;
    r = -pthread_mutex_init(&rt->lock, NULL);
    if (r < 0)
        goto fail;
    tend_loop *l;
    r = tend_loop_new(runtime_loop_init, runtime_loop_stop, rt, &l);
    if (r < 0) {
        pthread_mutex_destroy(&rt->lock);
        goto fail;
    }
    *ret_rt = rt;
    return 0;
fail:
    free(rt->name);
    free(rt);
    return r;
}

/* ---- Components ----------------------------------------------------- */

static tend_component *find_comp(tend_runtime *rt, const char *name) {
    for (size_t i = 0; i < rt->n_comps; i++)
        if (strcmp(rt->comps[i].name, name) == 0)
            return &rt->comps[i];
    return NULL;
}

static void comp_clear(tend_component *c) {
    free(c->name);
    if (c->deps)
        for (size_t i = 0; c->deps[i]; i++)
            free(c->deps[i]);
    free(c->deps);
}

static int add_component(tend_runtime *rt, const tend_component_spec *spec, void (*destroy)(void *)) {
    if (!rt || !spec || !spec->name || !tend_name_valid(spec->name, strlen(spec->name)) ||
        spec->check_timeout_ms < 0)
        return -EINVAL;
    size_t n_deps = 0;
    if (spec->deps)
        for (; spec->deps[n_deps]; n_deps++) {
            if (n_deps >= TEND_COMPONENT_DEPS_MAX ||
                !tend_name_valid(spec->deps[n_deps], strlen(spec->deps[n_deps])))
                return -EINVAL;
        }
    tend_component c = {
        .n_deps = n_deps,
        .critical = spec->critical,
        .start = spec->start,
        .stop = spec->stop,
        .check = spec->check,
        .check_timeout_ms = spec->check_timeout_ms,
        .data = spec->data,
        .destroy = destroy,
    };
    c.name = strdup(spec->name);
    c.deps = calloc(n_deps + 1, sizeof(char *));
    if (!c.name || !c.deps)
        goto nomem;
    for (size_t i = 0; i < n_deps; i++)
        if (!(c.deps[i] = strdup(spec->deps[i])))
            goto nomem;
    pthread_mutex_lock(&rt->lock);
    int r = 0;
    if (rt->state != TEND_RUNTIME_CREATED || rt->shutdown_called)
        r = -EBUSY;
    else if (find_comp(rt, c.name))
        r = -EEXIST;
    else if (rt->n_comps == rt->cap_comps) {
        size_t cap = rt->cap_comps ? 2 * rt->cap_comps : 8;
        tend_component *nc = realloc(rt->comps, cap * sizeof(*nc));
        if (!nc)
            r = -ENOMEM;
        else {
            rt->comps = nc;
            rt->cap_comps = cap;
        }
    }
    if (r == 0)
        rt->comps[rt->n_comps++] = c;
    pthread_mutex_unlock(&rt->lock);
    if (r < 0)
        comp_clear(&c);
    return r;
nomem:
    comp_clear(&c);
    return -ENOMEM;
}

TEND_EXPORT int tend_runtime_add_component(tend_runtime *rt, const tend_component_spec *spec) {
    return add_component(rt, spec, NULL);
}

int tend_runtime_add_internal(tend_runtime *rt, const tend_component_spec *spec, void (*destroy)(void *)) {
    return add_component(rt, spec, destroy);
}

TEND_EXPORT int tend_runtime_component_state(tend_runtime *rt, const char *name) {
    if (!rt || !name)
        return -EINVAL;
    pthread_mutex_lock(&rt->lock);
    tend_component *c = find_comp(rt, name);
    int r = c ? (int)c->state : -ENOENT;
    pthread_mutex_unlock(&rt->lock);
    return r;
}

/*
 * The start order into order[0..n): repeatedly the first component (in
 * registration order) whose dependencies are all placed.  Called with
 * rt->lock held.  0; -ENOENT or -ELOOP with rt->error saying which.
 */
static int compute_order(tend_runtime *rt, size_t *order) {
    size_t n = rt->n_comps;
    _cleanup_free_ bool *placed = calloc(n + 1, sizeof(bool));
    if (!placed)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < rt->comps[i].n_deps; k++) {
            const char *d = rt->comps[i].deps[k];
            if (!find_comp(rt, d)) {
                snprintf(rt->error, sizeof(rt->error), "component %s: unknown dependency \"%s\"",
                         rt->comps[i].name, d);
                return -ENOENT;
            }
            if (strcmp(d, rt->comps[i].name) == 0) {
                snprintf(rt->error, sizeof(rt->error), "dependency cycle: %s -> %s", d, d);
                return -ELOOP;
            }
        }
    for (size_t done = 0; done < n; done++) {
        size_t pick = n;
        for (size_t i = 0; i < n && pick == n; i++) {
            if (placed[i])
                continue;
            bool ready = true;
            for (size_t k = 0; k < rt->comps[i].n_deps && ready; k++)
                ready = placed[find_comp(rt, rt->comps[i].deps[k]) - rt->comps];
            if (ready)
                pick = i;
        }
        if (pick == n) {
            /* Every unplaced component waits on another unplaced one:
             * walk those edges from any of them until a name repeats. */
            size_t walk[TEND_COMPONENT_DEPS_MAX + 1], len = 0;
            size_t cur = 0;
            while (placed[cur])
                cur++;
            _cleanup_free_ size_t *seen_at = malloc(n * sizeof(size_t));
            if (!seen_at)
                return -ENOMEM;
            for (size_t i = 0; i < n; i++)
                seen_at[i] = SIZE_MAX;
            size_t steps = 0;
            while (seen_at[cur] == SIZE_MAX) {
                seen_at[cur] = steps++;
                for (size_t k = 0; k < rt->comps[cur].n_deps; k++) {
                    size_t d = (size_t)(find_comp(rt, rt->comps[cur].deps[k]) - rt->comps);
                    if (!placed[d]) {
                        cur = d;
                        break;
                    }
                }
            }
            /* cur starts the cycle; list it (at most ELEMENTSOF(walk) names). */
            size_t first = cur;
            do {
                walk[len++] = cur;
                for (size_t k = 0; k < rt->comps[cur].n_deps; k++) {
                    size_t d = (size_t)(find_comp(rt, rt->comps[cur].deps[k]) - rt->comps);
                    if (!placed[d] && seen_at[d] != SIZE_MAX) {
                        cur = d;
                        break;
                    }
                }
            } while (cur != first && len < ELEMENTSOF(walk) - 1);
            size_t off = (size_t)snprintf(rt->error, sizeof(rt->error), "dependency cycle:");
            for (size_t i = 0; i <= len && off < sizeof(rt->error); i++)
                off += (size_t)snprintf(rt->error + off, sizeof(rt->error) - off, "%s%s", i ? " -> " : " ",
                                        rt->comps[walk[i % len]].name);
            return -ELOOP;
        }
        placed[pick] = true;
        order[done] = pick;
    }
    return 0;
}

TEND_EXPORT int tend_runtime_component_order(tend_runtime *rt, char ***ret_names) {
    if (!rt || !ret_names)
        return -EINVAL;
    pthread_mutex_lock(&rt->lock);
    size_t n = rt->n_comps;
    size_t *order = malloc((n + 1) * sizeof(size_t));
    int r = order ? compute_order(rt, order) : -ENOMEM;
    char **names = NULL;
    if (r == 0) {
        size_t bytes = (n + 1) * sizeof(char *);
        for (size_t i = 0; i < n; i++)
            bytes += strlen(rt->comps[i].name) + 1;
        names = malloc(bytes);
        if (!names)
            r = -ENOMEM;
        else {
            char *p = (char *)(names + n + 1);
            for (size_t i = 0; i < n; i++) {
                size_t len = strlen(rt->comps[order[i]].name) + 1;
                memcpy(p, rt->comps[order[i]].name, len);
                names[i] = p;
                p += len;
            }
            names[n] = NULL;
        }
    }
    pthread_mutex_unlock(&rt->lock);
    free(order);
    if (r < 0)
        return r;
    *ret_names = names;
    return (int)n;
}

static void set_comp_state(tend_runtime *rt, tend_component *c, tend_component_state s) {
    pthread_mutex_lock(&rt->lock);
    c->state = s;
    pthread_mutex_unlock(&rt->lock);
}

/* Stops the started components, newest first, within deadline (a
 * monotonic ms time).  -ETIMEDOUT when it passed, else 0. */
static int stop_started(tend_runtime *rt, int64_t deadline) {
    while (rt->n_started > 0) {
        tend_component *c = &rt->comps[rt->started[--rt->n_started]];
        set_comp_state(rt, c, TEND_COMPONENT_STOPPING);
        if (c->check_added) {
            (void)tend_health_remove_check(rt->health, c->name);
            c->check_added = false;
        }
        if (c->stop) {
            int64_t left = deadline - now_mono_ms();
            c->stop(rt, c->data, left > 0 ? left : 0);
        }
        set_comp_state(rt, c, TEND_COMPONENT_STOPPED);
    }
    return now_mono_ms() > deadline ? -ETIMEDOUT : 0;
}

static bool dep_missing(tend_runtime *rt, const tend_component *c) {
    for (size_t k = 0; k < c->n_deps; k++) {
        tend_component_state s = find_comp(rt, c->deps[k])->state;
        if (s != TEND_COMPONENT_STARTED)
            return true;
    }
    return false;
}

TEND_EXPORT int tend_runtime_start(tend_runtime *rt) {
    if (!rt)
        return -EINVAL;
    pthread_mutex_lock(&rt->lock);
    if (rt->state != TEND_RUNTIME_CREATED || rt->shutdown_called) {
        pthread_mutex_unlock(&rt->lock);
        return -EALREADY;
    }
    if (tend_loop_on_thread(rt->loop)) {
        pthread_mutex_unlock(&rt->lock);
        return -EDEADLK;
    }
    rt->error[0] = '\0';
    size_t n = rt->n_comps;
    rt->started = malloc((n + 1) * sizeof(size_t));
    _cleanup_free_ size_t *order = malloc((n + 1) * sizeof(size_t));
    int r = rt->started && order ? compute_order(rt, order) : -ENOMEM;
    rt->state = r < 0 ? TEND_RUNTIME_CREATED : TEND_RUNTIME_STARTING;
    pthread_mutex_unlock(&rt->lock);
    if (r < 0)
        return r; /* nothing started; the runtime can still be shut down */

    for (size_t i = 0; i < n; i++) {
        tend_component *c = &rt->comps[order[i]];
        if (dep_missing(rt, c)) {
            /* Only a non-critical dependency can be missing here: a
             * critical one would have ended the start. */
            set_comp_state(rt, c, TEND_COMPONENT_SKIPPED);
            continue;
        }
        set_comp_state(rt, c, TEND_COMPONENT_STARTING);
        char err[TEND_ERROR_MAX] = "";
        r = c->start ? c->start(rt, c->data, err, sizeof(err)) : 0;
        if (r >= 0 && c->check) {
            tend_health_check_spec hs;
            tend_health_check_spec_init(&hs);
            hs.name = c->name;
            hs.fn = c->check;
            hs.data = c->data;
            hs.critical = c->critical;
            hs.timeout_ms = c->check_timeout_ms;
            r = tend_health_add_check(rt->health, &hs);
            if (r < 0) {
                snprintf(err, sizeof(err), "health check: %s", tend_strerror(r));
                if (c->stop)
                    c->stop(rt, c->data, rt->opts.shutdown_timeout_ms);
            } else
                c->check_added = true;
        }
        if (r < 0) {
            tend_runtime_set_error(rt, "component %s: start: %s", c->name, err[0] ? err : tend_strerror(r));
            set_comp_state(rt, c, TEND_COMPONENT_FAILED);
            if (!c->critical)
                continue;
            (void)stop_started(rt, now_mono_ms() + rt->opts.shutdown_timeout_ms);
            tend_loop_stop(rt->loop);
            pthread_mutex_lock(&rt->lock);
            rt->state = TEND_RUNTIME_STOPPED;
            pthread_mutex_unlock(&rt->lock);
            return r;
        }
        rt->started[rt->n_started++] = order[i];
        set_comp_state(rt, c, TEND_COMPONENT_STARTED);
    }
    pthread_mutex_lock(&rt->lock);
    rt->state = TEND_RUNTIME_RUNNING;
    pthread_mutex_unlock(&rt->lock);
    return 0;
}

TEND_EXPORT int tend_runtime_shutdown(tend_runtime *rt, int64_t timeout_ms) {
    if (!rt || timeout_ms < 0)
        return -EINVAL;
    if (tend_loop_on_thread(rt->loop))
        return -EDEADLK;
    int64_t deadline = now_mono_ms() + timeout_ms;
    pthread_mutex_lock(&rt->lock);
    if (rt->shutdown_called) {
        pthread_mutex_unlock(&rt->lock);
        return -EALREADY;
    }
    if (rt->state == TEND_RUNTIME_STARTING) {
        pthread_mutex_unlock(&rt->lock);
        return -EBUSY;
    }
    rt->shutdown_called = true;
    tend_runtime_state prev = rt->state;
    if (prev != TEND_RUNTIME_STOPPED)
        rt->state = TEND_RUNTIME_STOPPING;
    pthread_mutex_unlock(&rt->lock);
    if (prev == TEND_RUNTIME_STOPPED)
        return 0; /* a failed start cleaned up already */
    int r = stop_started(rt, deadline);
    tend_loop_stop(rt->loop);
    pthread_mutex_lock(&rt->lock);
    rt->state = TEND_RUNTIME_STOPPED;
    pthread_mutex_unlock(&rt->lock);
    return r;
}

TEND_EXPORT int tend_shutdown(tend_runtime *rt, int64_t timeout_ms) { return tend_runtime_shutdown(rt, timeout_ms); }

TEND_EXPORT tend_runtime *tend_runtime_free(tend_runtime *rt) {
    if (!rt)
        return NULL;
    if (tend_loop_on_thread(rt->loop))
        return NULL; /* misuse: the loop cannot join itself; leak rather than crash */
    pthread_mutex_lock(&rt->lock);
    bool need_shutdown = !rt->shutdown_called && rt->state != TEND_RUNTIME_STOPPED;
    pthread_mutex_unlock(&rt->lock);
    if (need_shutdown)
        (void)tend_runtime_shutdown(rt, rt->opts.shutdown_timeout_ms);
    tend_loop_stop(rt->loop);
    tend_health_destroy(rt->health);
    for (size_t i = rt->n_comps; i-- > 0;) {
        if (rt->comps[i].destroy)
            rt->comps[i].destroy(rt->comps[i].data);
        comp_clear(&rt->comps[i]);
    }
    free(rt->comps);
    free(rt->started);
    tend_loop_unref(rt->loop);
    pthread_mutex_destroy(&rt->lock);
    free(rt->name);
    free(rt);
    return NULL;
}

TEND_EXPORT int tend_runtime_run(const tend_runtime_options *opts, int (*setup)(tend_runtime *rt, void *data),
                                 int (*body)(tend_runtime *rt, void *data), void *data) {
    tend_runtime *rt;
    int r = tend_runtime_new(opts, &rt);
    if (r < 0)
        return r;
    if (setup && (r = setup(rt, data)) < 0)
        goto finish;
    if ((r = tend_runtime_start(rt)) < 0)
        goto finish;
    if (body)
        r = body(rt, data);
finish:;
    int s = tend_runtime_shutdown(rt, rt->opts.shutdown_timeout_ms);
    if (r >= 0 && s < 0)
        r = s;
    tend_runtime_free(rt);
    return r;
}
