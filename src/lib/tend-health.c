/*
 * tend-health.c - the health monitor (tend/health.h).
 *
 * State is on the runtime's loop thread.  A run (a "round") starts every
 * check on a detached thread of its own: a check is a user's C function
 * that may block or hang, and a thread per check per round is what keeps
 * one hung check from delaying the others or the loop (a pool would fill
 * up with hung ones).  Each thread hands its result back with a posted
 * call; the round's timer settles the checks that missed their deadline.
 * A check whose previous run has not returned is not started again: it is
 * reported unhealthy ("still running") until it returns.
 *
 * The job a thread runs owns copies of all it needs and a reference to
 * the loop struct, so a check that returns after the runtime is gone
 * finds its post refused and only frees its job.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macros.h"
#include "tend-internal.h"
#include "timeutil.h"

#define HEALTH_DEPTH_MAX 4

typedef struct hcheck {
    char *name;
    tend_health_check_fn fn;
    void *data;
    bool critical;
    int64_t timeout_ms;
    uint64_t id;
    /* The latest result. */
    tend_health_status status;
    char msg[TEND_HEALTH_MSG_MAX];
    int64_t duration_ms, checked_at;
    /* A thread is running fn, since run_started (mono ms). */
    bool running;
    int64_t run_started;
    /* The current round. */
    bool in_round, settled;
    int64_t deadline;
} hcheck;

struct tend_health {
    tend_runtime *rt;
    tend_loop *loop;
    hcheck **checks;
    size_t n, cap;
    uint64_t next_id;
    uv_timer_t periodic, round_timer;
    bool round_active, closed;
    tend_call **waiters;
    size_t n_waiters, cap_waiters;
    int64_t default_timeout_ms;
};

typedef struct hjob {
    tend_call call;
    tend_loop *loop;
    tend_health *h;
    uint64_t check_id;
    tend_health_check_fn fn;
    void *data;
    int result;
    char msg[TEND_HEALTH_MSG_MAX];
    int64_t duration_ms, end_wall;
} hjob;

typedef struct rentry {
    char *name;
    tend_health_status status;
    bool critical, group;
    char *message;
    int64_t duration_ms, checked_at;
    size_t parent;
} rentry;

struct tend_health_report {
    rentry *e;
    size_t n;
    int64_t created_at;
};

static const char *const status_names[] = {"healthy", "degraded", "unhealthy", "unknown"};

TEND_EXPORT const char *tend_health_status_to_string(tend_health_status s) {
    return (unsigned)s < ELEMENTSOF(status_names) ? status_names[s] : NULL;
}

TEND_EXPORT void tend_health_check_spec_init(tend_health_check_spec *spec) {
    if (!spec)
        return;
    *spec = (tend_health_check_spec){.critical = true};
}

TEND_EXPORT tend_health *tend_runtime_health(tend_runtime *rt) { return rt ? rt->health : NULL; }

/* A path of 1..HEALTH_DEPTH_MAX valid names joined by '/'. */
static bool path_valid(const char *s) {
    size_t depth = 0;
    for (const char *p = s;; depth++) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (!tend_name_valid(p, len) || depth >= HEALTH_DEPTH_MAX)
            return false;
        if (!slash)
            return true;
        p = slash + 1;
    }
}

/* ---- Reports -------------------------------------------------------- */

/* Orders paths so that a group comes right before its members: '/' sorts
 * below every name character. */
static int path_cmp(const char *a, const char *b) {
    for (;; a++, b++) {
        unsigned char ca = *a == '/' ? 1 : (unsigned char)*a, cb = *b == '/' ? 1 : (unsigned char)*b;
        if (ca != cb || ca == 0)
            return (int)ca - (int)cb;
    }
}

static int rentry_cmp(const void *a, const void *b) {
    return path_cmp(((const rentry *)a)->name, ((const rentry *)b)->name);
}

TEND_EXPORT tend_health_report *tend_health_report_free(tend_health_report *r) {
    if (!r)
        return NULL;
    for (size_t i = 0; i < r->n; i++) {
        free(r->e[i].name);
        free(r->e[i].message);
    }
    free(r->e);
    free(r);
    return NULL;
}

static int push_entry(tend_health_report *r, size_t *cap, const char *name, size_t len, bool group) {
    if (r->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        rentry *ne = realloc(r->e, nc * sizeof(*ne));
        if (!ne)
            return -ENOMEM;
        r->e = ne;
        *cap = nc;
    }
    rentry *e = &r->e[r->n];
    *e = (rentry){.group = group, .status = TEND_HEALTH_HEALTHY};
    e->name = strndup(name, len);
    e->message = strdup("");
    r->n++;
    return e->name && e->message ? 0 : -ENOMEM;
}

/* Loop thread: a report of every check's latest result. */
static int build_report(tend_health *h, tend_health_report **ret) {
    tend_health_report *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->created_at = now_wall_ms();
    size_t cap = 0;
    int err = push_entry(r, &cap, "", 0, true);
    for (size_t i = 0; i < h->n && err == 0; i++) {
        const hcheck *c = h->checks[i];
        /* Its groups: every prefix ending before a '/'. */
        for (const char *p = strchr(c->name, '/'); p && err == 0; p = strchr(p + 1, '/'))
            err = push_entry(r, &cap, c->name, (size_t)(p - c->name), true);
        if (err == 0)
            err = push_entry(r, &cap, c->name, strlen(c->name), false);
        if (err == 0) {
            rentry *e = &r->e[r->n - 1];
            free(e->message);
            e->message = strdup(c->msg);
            e->status = c->status;
            e->critical = c->critical;
            e->duration_ms = c->duration_ms;
            e->checked_at = c->checked_at;
            if (!e->message)
                err = -ENOMEM;
        }
    }
    if (err < 0) {
        tend_health_report_free(r);
        return err;
    }
    qsort(r->e, r->n, sizeof(rentry), rentry_cmp);
    /* Groups were pushed once per member: keep one of each. */
    size_t w = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (w > 0 && strcmp(r->e[w - 1].name, r->e[i].name) == 0) {
            free(r->e[i].name);
            free(r->e[i].message);
            continue;
        }
        r->e[w++] = r->e[i];
    }
    r->n = w;
    /* Parents: the entry named by the path up to the last '/' (the root
     * for top-level names); found by binary search on the sorted array. */
    for (size_t i = 1; i < r->n; i++) {
        const char *slash = strrchr(r->e[i].name, '/');
        size_t plen = slash ? (size_t)(slash - r->e[i].name) : 0;
        char pname[TEND_NAME_MAX * HEALTH_DEPTH_MAX + HEALTH_DEPTH_MAX];
        memcpy(pname, r->e[i].name, plen);
        pname[plen] = '\0';
        rentry key = {.name = pname};
        rentry *p = bsearch(&key, r->e, r->n, sizeof(rentry), rentry_cmp);
        r->e[i].parent = p ? (size_t)(p - r->e) : 0;
    }
    /* Bottom-up: members come after their group, so walking backwards
     * settles every member before its group is summed up. */
    typedef struct {
        bool crit_unhealthy, other_bad, unknown, critical, any;
    } agg;
    _cleanup_free_ agg *a = calloc(r->n, sizeof(agg));
    if (!a) {
        tend_health_report_free(r);
        return -ENOMEM;
    }
    for (size_t i = r->n; i-- > 0;) {
        rentry *e = &r->e[i];
        if (e->group) {
            e->critical = a[i].critical;
            e->status = a[i].crit_unhealthy                      ? TEND_HEALTH_UNHEALTHY
                        : a[i].other_bad                         ? TEND_HEALTH_DEGRADED
                        : a[i].unknown                           ? TEND_HEALTH_UNKNOWN
                                                                 : TEND_HEALTH_HEALTHY;
        }
        if (i == 0)
            break;
        agg *p = &a[e->parent];
        p->any = true;
        p->critical |= e->critical;
        if (e->status == TEND_HEALTH_UNHEALTHY && e->critical)
            p->crit_unhealthy = true;
        else if (e->status == TEND_HEALTH_UNHEALTHY || e->status == TEND_HEALTH_DEGRADED)
            p->other_bad = true;
        else if (e->status == TEND_HEALTH_UNKNOWN)
            p->unknown = true;
    }
    *ret = r;
    return 0;
}

TEND_EXPORT tend_health_status tend_health_report_status(const tend_health_report *r) {
    return r && r->n ? r->e[0].status : TEND_HEALTH_UNKNOWN;
}

TEND_EXPORT size_t tend_health_report_count(const tend_health_report *r) { return r ? r->n : 0; }

static void fill_entry(const rentry *e, tend_health_entry *out) {
    *out = (tend_health_entry){
        .name = e->name,
        .status = e->status,
        .critical = e->critical,
        .group = e->group,
        .message = e->message,
        .duration_ms = e->duration_ms,
        .checked_at_ms = e->checked_at,
    };
}

TEND_EXPORT int tend_health_report_entry(const tend_health_report *r, size_t i, tend_health_entry *ret) {
    if (!r || !ret)
        return -EINVAL;
    if (i >= r->n)
        return -ERANGE;
    fill_entry(&r->e[i], ret);
    return 0;
}

TEND_EXPORT int tend_health_report_find(const tend_health_report *r, const char *name, tend_health_entry *ret) {
    if (!r || !name || !ret)
        return -EINVAL;
    rentry key = {.name = (char *)name};
    const rentry *e = bsearch(&key, r->e, r->n, sizeof(rentry), rentry_cmp);
    if (!e)
        return -ENOENT;
    fill_entry(e, ret);
    return 0;
}

TEND_EXPORT int tend_health_report_json(const tend_health_report *r, char **ret_json) {
    if (!r || !ret_json || r->n == 0)
        return -EINVAL;
    _cleanup_free_ json_t **obj = calloc(r->n, sizeof(json_t *));
    if (!obj)
        return -ENOMEM;
    int err = 0;
    char ts[32];
    for (size_t i = 0; i < r->n && err == 0; i++) {
        const rentry *e = &r->e[i];
        json_t *o = json_object();
        if (!o) {
            err = -ENOMEM;
            break;
        }
        json_object_set_new(o, "status", json_string(status_names[e->status]));
        if (i == 0)
            json_object_set_new(o, "checked_at", json_string(format_rfc3339_ms(r->created_at, ts, sizeof(ts))));
        else
            json_object_set_new(o, "critical", json_boolean(e->critical));
        if (e->group)
            json_object_set_new(o, "checks", json_object());
        else {
            json_object_set_new(o, "message", json_string(e->message));
            json_object_set_new(o, "duration_ms", json_integer(e->duration_ms));
            json_object_set_new(o, "checked_at",
                                e->checked_at ? json_string(format_rfc3339_ms(e->checked_at, ts, sizeof(ts)))
                                              : json_null());
        }
        if (i == 0) {
            obj[0] = o;
            continue;
        }
        const char *slash = strrchr(e->name, '/');
        json_t *siblings = json_object_get(obj[e->parent], "checks");
        if (!siblings || json_object_set_new(siblings, slash ? slash + 1 : e->name, o) < 0)
            err = -ENOMEM;
        obj[i] = o;
    }
    char *s = err == 0 ? json_dumps(obj[0], JSON_COMPACT) : NULL;
    json_decref(obj[0]);
    if (!s)
        return err < 0 ? err : -ENOMEM;
    *ret_json = s;
    return 0;
}

/* ---- Rounds --------------------------------------------------------- */

static hcheck *find_check_id(tend_health *h, uint64_t id) {
    for (size_t i = 0; i < h->n; i++)
        if (h->checks[i]->id == id)
            return h->checks[i];
    return NULL;
}

static void round_check(tend_health *h);

static void finish_round(tend_health *h) {
    uv_timer_stop(&h->round_timer);
    h->round_active = false;
    for (size_t i = 0; i < h->n; i++)
        h->checks[i]->in_round = false;
    /* Each waiter gets a report of its own. */
    size_t n = h->n_waiters;
    h->n_waiters = 0;
    for (size_t i = 0; i < n; i++) {
        tend_call *c = h->waiters[i];
        tend_health_report **slot = c->arg;
        int r = build_report(h, slot);
        tend_loop_complete(h->loop, c, r);
    }
}

static void on_round_timer(uv_timer_t *t) { round_check(t->data); }

/* Settles the checks past their deadline; finishes the round when none is
 * left, else sleeps until the next deadline. */
static void round_check(tend_health *h) {
    if (!h->round_active)
        return;
    int64_t now = now_mono_ms(), next = INT64_MAX;
    for (size_t i = 0; i < h->n; i++) {
        hcheck *c = h->checks[i];
        if (!c->in_round || c->settled)
            continue;
        if (c->deadline <= now) {
            c->settled = true;
            c->status = TEND_HEALTH_UNHEALTHY;
            snprintf(c->msg, sizeof(c->msg), "timed out after %" PRId64 " ms", c->timeout_ms);
            c->duration_ms = now - c->run_started;
            c->checked_at = now_wall_ms();
        } else if (c->deadline < next)
            next = c->deadline;
    }
    if (next == INT64_MAX)
        finish_round(h);
    else
        uv_timer_start(&h->round_timer, on_round_timer, (uint64_t)(next - now), 0);
}

static void on_job_done(tend_loop *l, tend_call *call) {
    hjob *j = call->arg;
    tend_health *h = j->h;
    if (call->result == -ESHUTDOWN || h->closed) {
        free(j);
        return;
    }
    hcheck *c = find_check_id(h, j->check_id);
    if (c && c->running) {
        c->running = false;
        int r = j->result;
        if (r < 0) {
            c->status = TEND_HEALTH_UNHEALTHY;
            snprintf(c->msg, sizeof(c->msg), "%s", j->msg[0] ? j->msg : tend_strerror(r));
        } else if (r > TEND_HEALTH_UNHEALTHY) {
            c->status = TEND_HEALTH_UNHEALTHY;
            snprintf(c->msg, sizeof(c->msg), "check returned an invalid status %d", r);
        } else {
            c->status = (tend_health_status)r;
            memcpy(c->msg, j->msg, sizeof(c->msg));
        }
        c->duration_ms = j->duration_ms;
        c->checked_at = j->end_wall;
        if (c->in_round && !c->settled) {
            c->settled = true;
            round_check(h);
        }
    }
    free(j);
}

static void *job_thread(void *arg) {
    hjob *j = arg;
    int64_t t0 = now_mono_us();
    j->result = j->fn(j->data, j->msg, sizeof(j->msg));
    j->msg[sizeof(j->msg) - 1] = '\0';
    j->duration_ms = (now_mono_us() - t0) / 1000;
    j->end_wall = now_wall_ms();
    tend_loop *l = j->loop;
    j->call = (tend_call){.fn = on_job_done, .arg = j};
    if (tend_loop_post(l, &j->call) < 0)
        free(j);
    tend_loop_unref(l);
    return NULL;
}

static int start_job(tend_health *h, hcheck *c) {
    hjob *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    *j = (hjob){.loop = h->loop, .h = h, .check_id = c->id, .fn = c->fn, .data = c->data};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    tend_loop_ref(h->loop);
    pthread_t t;
    int r = pthread_create(&t, &attr, job_thread, j);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        tend_loop_unref(h->loop);
        free(j);
        return -r;
    }
    return 0;
}

static void round_start(tend_health *h) {
    if (h->round_active || h->closed)
        return;
    h->round_active = true;
    int64_t now = now_mono_ms();
    for (size_t i = 0; i < h->n; i++) {
        hcheck *c = h->checks[i];
        c->in_round = true;
        c->settled = false;
        if (c->running) {
            c->settled = true;
            c->status = TEND_HEALTH_UNHEALTHY;
            snprintf(c->msg, sizeof(c->msg), "still running from the previous run, for %" PRId64 " ms",
                     now - c->run_started);
            continue;
        }
        int r = start_job(h, c);
        if (r < 0) {
            c->settled = true;
            c->status = TEND_HEALTH_UNHEALTHY;
            snprintf(c->msg, sizeof(c->msg), "cannot start the check's thread: %s", tend_strerror(r));
            c->checked_at = now_wall_ms();
            continue;
        }
        c->running = true;
        c->run_started = now;
        c->deadline = now + c->timeout_ms;
    }
    round_check(h);
}

static void on_periodic(uv_timer_t *t) { round_start(t->data); }

/* ---- Loop-side lifecycle -------------------------------------------- */

int tend_health_create(tend_runtime *rt, tend_health **ret) {
    tend_health *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->rt = rt;
    h->loop = rt->loop;
    h->default_timeout_ms = rt->opts.health_timeout_ms;
    h->next_id = 1;
    uv_timer_init(&h->loop->uv, &h->periodic);
    uv_timer_init(&h->loop->uv, &h->round_timer);
    h->periodic.data = h->round_timer.data = h;
    if (rt->opts.health_interval_ms > 0)
        uv_timer_start(&h->periodic, on_periodic, (uint64_t)rt->opts.health_interval_ms,
                       (uint64_t)rt->opts.health_interval_ms);
    *ret = h;
    return 0;
}

void tend_health_close(tend_health *h) {
    if (!h || h->closed)
        return;
    h->closed = true;
    h->round_active = false;
    uv_close((uv_handle_t *)&h->periodic, NULL);
    uv_close((uv_handle_t *)&h->round_timer, NULL);
    for (size_t i = 0; i < h->n_waiters; i++)
        tend_loop_complete(h->loop, h->waiters[i], -ESHUTDOWN);
    h->n_waiters = 0;
}

void tend_health_destroy(tend_health *h) {
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        free(h->checks[i]->name);
        free(h->checks[i]);
    }
    free(h->checks);
    free(h->waiters);
    free(h);
}

/* ---- Public calls (marshalled to the loop) -------------------------- */

typedef struct add_args {
    tend_health *h;
    const tend_health_check_spec *spec;
} add_args;

static void call_add(tend_loop *l, tend_call *call) {
    add_args *a = call->arg;
    tend_health *h = a->h;
    const char *name = a->spec->name;
    size_t len = strlen(name);
    if (h->closed) {
        call->result = -ESHUTDOWN;
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        const char *e = h->checks[i]->name;
        size_t elen = strlen(e);
        if (strcmp(e, name) == 0) {
            call->result = -EEXIST;
            return;
        }
        /* One would be a group of the other. */
        if ((elen > len && strncmp(e, name, len) == 0 && e[len] == '/') ||
            (len > elen && strncmp(name, e, elen) == 0 && name[elen] == '/')) {
            call->result = -EINVAL;
            return;
        }
    }
    if (h->n >= TEND_HEALTH_CHECKS_MAX) {
        call->result = -ENOSPC;
        return;
    }
    if (h->n == h->cap) {
        size_t nc = h->cap ? 2 * h->cap : 8;
        hcheck **n = realloc(h->checks, nc * sizeof(*n));
        if (!n) {
            call->result = -ENOMEM;
            return;
        }
        h->checks = n;
        h->cap = nc;
    }
    hcheck *c = calloc(1, sizeof(*c));
    if (!c || !(c->name = strdup(name))) {
        free(c);
        call->result = -ENOMEM;
        return;
    }
    c->fn = a->spec->fn;
    c->data = a->spec->data;
    c->critical = a->spec->critical;
    c->timeout_ms = a->spec->timeout_ms ? a->spec->timeout_ms : h->default_timeout_ms;
    c->id = h->next_id++;
    c->status = TEND_HEALTH_UNKNOWN;
    h->checks[h->n++] = c;
    call->result = 0;
}

TEND_EXPORT int tend_health_add_check(tend_health *h, const tend_health_check_spec *spec) {
    if (!h || !spec || !spec->name || !spec->fn || spec->timeout_ms < 0 || !path_valid(spec->name))
        return -EINVAL;
    add_args a = {h, spec};
    return tend_loop_call(h->loop, call_add, &a);
}

typedef struct name_args {
    tend_health *h;
    const char *name;
} name_args;

static void call_remove(tend_loop *l, tend_call *call) {
    name_args *a = call->arg;
    tend_health *h = a->h;
    if (h->closed) {
        call->result = -ESHUTDOWN;
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        hcheck *c = h->checks[i];
        if (strcmp(c->name, a->name) != 0)
            continue;
        memmove(&h->checks[i], &h->checks[i + 1], (h->n - i - 1) * sizeof(hcheck *));
        h->n--;
        free(c->name);
        free(c);
        call->result = 0;
        round_check(h);
        return;
    }
    call->result = -ENOENT;
}

TEND_EXPORT int tend_health_remove_check(tend_health *h, const char *name) {
    if (!h || !name)
        return -EINVAL;
    name_args a = {h, name};
    return tend_loop_call(h->loop, call_remove, &a);
}

typedef struct report_args {
    tend_health *h;
    tend_health_report *report;
} report_args;

static void call_run(tend_loop *l, tend_call *call) {
    report_args *a = call->arg;
    tend_health *h = a->h;
    if (h->closed) {
        call->result = -ESHUTDOWN;
        return;
    }
    round_start(h);
    if (!h->round_active) {
        /* Finished at once (no checks, or none could start). */
        call->result = build_report(h, &a->report);
        return;
    }
    if (h->n_waiters == h->cap_waiters) {
        size_t nc = h->cap_waiters ? 2 * h->cap_waiters : 4;
        tend_call **n = realloc(h->waiters, nc * sizeof(*n));
        if (!n) {
            call->result = -ENOMEM;
            return;
        }
        h->waiters = n;
        h->cap_waiters = nc;
    }
    /* finish_round() writes the report through call->arg. */
    call->arg = &a->report;
    h->waiters[h->n_waiters++] = call;
    call->deferred = true;
}

TEND_EXPORT int tend_health_run(tend_health *h, tend_health_report **ret_report) {
    if (!h || !ret_report)
        return -EINVAL;
    if (tend_loop_on_thread(h->loop))
        return -EDEADLK;
    report_args a = {h, NULL};
    int r = tend_loop_call(h->loop, call_run, &a);
    if (r < 0) {
        tend_health_report_free(a.report);
        return r;
    }
    *ret_report = a.report;
    return 0;
}

static void call_last(tend_loop *l, tend_call *call) {
    report_args *a = call->arg;
    call->result = a->h->closed ? -ESHUTDOWN : build_report(a->h, &a->report);
}

TEND_EXPORT int tend_health_last(tend_health *h, tend_health_report **ret_report) {
    if (!h || !ret_report)
        return -EINVAL;
    report_args a = {h, NULL};
    int r = tend_loop_call(h->loop, call_last, &a);
    if (r < 0) {
        tend_health_report_free(a.report);
        return r;
    }
    *ret_report = a.report;
    return 0;
}
