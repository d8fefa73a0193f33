/*
 * api-tasks.c - the task and queue routes (SPEC 5 Tasks) over the task
 * engine (src/lib/task-engine.h): submission (single and bulk, answered
 * 201 once the INSERT is durable), listing, one task, cancel, retry, the
 * queues' views, pause/resume, dead letters, the pull protocol
 * (reserve/ack/nack/touch) and the statistics.  docs/api.md describes the
 * JSON shapes.
 *
 * Every route that needs the store answers through a deferred reply
 * (api_defer): the connection is suspended while the store works on its
 * writer thread, and the engine's callback resumes it, so the loop never
 * waits.  The engine never calls back from inside the call that started
 * an action except for a few immediate answers; `in_call` catches those
 * and they are answered directly.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "macros.h"
#include "parse.h"
#include "task-engine.h"
#include "timeutil.h"

#define BULK_MAX 10000
#define LIST_LIMIT_MAX 1000
#define RESERVE_WAIT_MAX_MS (5 * 60 * 1000)

/* ---- JSON views ------------------------------------------------------------ */

static json_t *time_or_null(int64_t ms) { return ms > 0 ? api_time_json(ms) : json_null(); }

static json_t *payload_json(const store_task *t) {
    if (!t->payload || !t->payload_len)
        return json_null();
    json_t *j = json_loadb(t->payload, t->payload_len, JSON_DECODE_ANY, NULL);
    return j ? j : api_json_textn(t->payload, t->payload_len);
}

/* The task object of docs/api.md; with_payload false for bulk answers. */
static json_t *task_json(const store_task *t, bool with_payload) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "queue", api_json_text(t->queue ? t->queue : ""));
    json_object_set_new(o, "state", json_string(store_task_state_to_string(t->state) ? store_task_state_to_string(t->state) : "?"));
    json_object_set_new(o, "priority", json_string(store_priority_to_string(t->priority) ? store_priority_to_string(t->priority) : "?"));
    json_object_set_new(o, "attempts", json_integer(t->attempts));
    json_object_set_new(o, "max_attempts", json_integer(t->max_attempts));
    json_object_set_new(o, "timeout_ms", json_integer(t->timeout_ms));
    if (with_payload)
        json_object_set_new(o, "payload", payload_json(t));
    json_t *tags = t->tags ? json_loads(t->tags, 0, NULL) : NULL;
    json_object_set_new(o, "tags", tags ? tags : json_array());
    json_object_set_new(o, "idempotency_key", t->idempotency_key ? api_json_text(t->idempotency_key) : json_null());
    json_object_set_new(o, "last_error", t->last_error ? api_json_text(t->last_error) : json_null());
    json_object_set_new(o, "created_at", time_or_null(t->created_at));
    json_object_set_new(o, "run_at", time_or_null(t->run_at));
    json_object_set_new(o, "started_at", time_or_null(t->started_at));
    json_object_set_new(o, "finished_at", time_or_null(t->finished_at));
    json_object_set_new(o, "lease_until", t->state == STORE_TASK_RUNNING ? time_or_null(t->lease_until) : json_null());
    return o;
}

static const char *handler_name(tend_handler_kind k) {
    switch (k) {
    case TEND_HANDLER_EXEC: return "exec";
    case TEND_HANDLER_HTTP: return "http";
    case TEND_HANDLER_PULL: return "pull";
    case TEND_HANDLER_FUNC: return "function";
    }
    return "?";
}

static json_t *queue_json(const task_queue_info *in) {
    const tend_queue_spec *s = in->spec;
    json_t *depth = json_object();
    for (int p = 0; p < STORE_PRIORITY_MAX; p++)
        json_object_set_new(depth, store_priority_to_string((store_priority)p),
                            json_integer((json_int_t)(in->n[STORE_TASK_PENDING][p] + in->n[STORE_TASK_SCHEDULED][p])));
    json_object_set_new(depth, "total", json_integer((json_int_t)in->depth));
    json_t *states = json_object();
    for (int st = 0; st < STORE_TASK_STATE_MAX; st++) {
        uint64_t n = 0;
        for (int p = 0; p < STORE_PRIORITY_MAX; p++)
            n += in->n[st][p];
        json_object_set_new(states, store_task_state_to_string((store_task_state)st), json_integer((json_int_t)n));
    }
    json_t *fin = json_object();
    for (int r = 0; r < 4; r++)
        json_object_set_new(fin, task_result_name(r), json_integer((json_int_t)in->finished[r]));
    uint64_t submitted = 0;
    for (int p = 0; p < STORE_PRIORITY_MAX; p++)
        submitted += in->submitted[p];
    json_t *cb = json_pack("{s:s, s:i, s:I, s:i, s:I}", "state", breaker_state_to_string(in->breaker), "failures",
                           (int)in->breaker_failures, "opened_total", (json_int_t)in->breaker_opened_total,
                           "failure_threshold", s->breaker_failure_threshold, "open_for_ms",
                           (json_int_t)s->breaker_open_ms);
    json_t *o = json_object();
    json_object_set_new(o, "name", api_json_text(s->name));
    json_object_set_new(o, "handler", json_string(handler_name(s->handler)));
    if (s->handler == TEND_HANDLER_PULL)
        json_object_set_new(o, "ack", json_string(s->ack_async ? "async" : "durable"));
    json_object_set_new(o, "paused", json_boolean(in->paused));
    json_object_set_new(o, "concurrency", json_integer(s->concurrency));
    json_object_set_new(o, "timeout_ms", json_integer(s->timeout_ms));
    json_object_set_new(o, "max_attempts", json_integer(s->max_attempts));
    json_object_set_new(o, "depth", depth);
    json_object_set_new(o, "states", states);
    json_object_set_new(o, "running", json_integer((json_int_t)in->running));
    json_object_set_new(o, "dead", json_integer((json_int_t)in->dead));
    json_object_set_new(o, "breaker", json_string(breaker_state_to_string(in->breaker)));
    json_object_set_new(o, "circuit_breaker", cb);
    json_object_set_new(o, "rate_limit", in->rate_limit > 0 ? json_real(in->rate_limit) : json_null());
    json_object_set_new(o, "tokens", in->rate_limit > 0 && isfinite(in->tokens) ? json_real(in->tokens) : json_null());
    json_object_set_new(o, "batch", s->batch ? json_pack("{s:i, s:I}", "size", s->batch_size, "max_wait_ms",
                                                         (json_int_t)s->batch_max_wait_ms)
                                             : json_null());
    json_object_set_new(o, "dry_run", json_boolean(s->dry_run));
    json_object_set_new(o, "submitted_total", json_integer((json_int_t)submitted));
    json_object_set_new(o, "finished", fin);
    json_object_set_new(o, "throughput_per_second", json_real(in->throughput));
    json_object_set_new(o, "average_processing_time_ms", json_real(in->avg_ms));
    return o;
}

/* ---- errors --------------------------------------------------------------- */

static void engine_error(api_request *req, int r, const char *what) {
    switch (r) {
    case -ENOENT: api_error(req, 404, "not_found", "%s: not found", what); break;
    case -EINVAL: api_error(req, 400, "bad_request", "%s: invalid request", what); break;
    case -E2BIG: api_error(req, 413, "payload_too_large", "%s: over a size limit", what); break;
    case -ESHUTDOWN: api_error(req, 503, "shutting_down", "tend is shutting down: tasks are not accepted"); break;
    case -EBUSY: api_error(req, 409, "conflict", "%s: the task's state does not allow this", what); break;
    case -EALREADY: api_error(req, 409, "conflict", "%s: an action on this task is already in progress", what); break;
    case -EOPNOTSUPP: api_error(req, 409, "conflict", "%s: not a pull queue", what); break;
    case -ENOMEM: api_error(req, 503, "out_of_memory", "out of memory"); break;
    default:
        api_error(req, 503, "store_unavailable", "%s: the task store failed (%s); nothing was changed", what,
                  strerror(-r));
        break;
    }
}

/* ---- deferred replies ---------------------------------------------------------- */

typedef struct pend {
    api_request *req;       /* NULL once the server gave up on it */
    bool in_call, answered;
    int status;
    json_t *reply;          /* or an error: */
    int err;
    char what[160];
    task_engine *engine;
    task_reserve *reserve;
    /* Submission: the payload texts live until the INSERT is done. */
    task_submit *subs;
    char **texts;
    size_t n_subs, n_texts;
    bool single;
} pend;

static void pend_free(pend *p) {
    json_decref(p->reply);
    for (size_t i = 0; i < p->n_texts; i++)
        free(p->texts[i]);
    free(p->texts);
    free(p->subs);
    free(p);
}

static void send_pend(api_request *req, pend *p) {
    if (p->err)
        engine_error(req, p->err, p->what);
    else if (p->status == 204)
        api_reply_static(req, 204, NULL, "", 0);
    else {
        api_reply_json(req, p->status, p->reply);
        p->reply = NULL;
    }
}

static void on_resumed(api_request *req) {
    pend *p = req->defer_data;
    send_pend(req, p);
    pend_free(p);
}

static void on_cancelled(api_request *req) {
    pend *p = req->defer_data;
    p->req = NULL;
    if (p->reserve && !p->answered) {
        task_engine_reserve_cancel(p->engine, p->reserve);
        pend_free(p);
    }
}

/* The engine answered: reply now (inside the call) or resume. */
static void pend_answer(pend *p, int status, json_t *reply, int err) {
    p->answered = true;
    p->status = status;
    p->reply = reply;
    p->err = err;
    if (p->in_call)
        return;
    if (p->req)
        api_resume(p->req, on_resumed);
    else
        pend_free(p);
}

static pend *pend_new(api_request *req, const char *what) {
    pend *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->req = req;
    p->engine = req->srv->engine;
    snprintf(p->what, sizeof(p->what), "%s", what);
    p->in_call = true;
    return p;
}

/* After the engine call: r < 0 refused; answered inside the call; else park. */
static void pend_park(api_request *req, pend *p, int r) {
    p->in_call = false;
    if (r < 0) {
        engine_error(req, r, p->what);
        pend_free(p);
    } else if (p->answered) {
        send_pend(req, p);
        pend_free(p);
    } else {
        api_defer(req, on_cancelled, p);
    }
}

static task_engine *engine_or_404(api_request *req) {
    task_engine *e = req->srv->engine;
    if (!e)
        api_error(req, 404, "not_found", "no task queues are configured");
    return e;
}

/* ---- parsing a task body ------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* RFC 3339: 2026-11-22T12:00:00[.fff](Z|+hh:mm|-hh:mm) -> wall ms. */
static int parse_rfc3339(const char *s, int64_t *ret_ms) {
    unsigned Y, M, D, h, m, sec;
    int n = 0;
    if (sscanf(s, "%4u-%2u-%2u%n", &Y, &M, &D, &n) != 3 || n != 10 || (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
        return -EINVAL;
    const char *p = s + 11;
    if (sscanf(p, "%2u:%2u:%2u%n", &h, &m, &sec, &n) != 3 || n != 8)
        return -EINVAL;
    p += 8;
    int64_t ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return -EINVAL;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        unsigned oh, om;
        if (sscanf(p + 1, "%2u:%2u%n", &oh, &om, &n) != 2 || n != 5 || oh > 23 || om > 59)
            return -EINVAL;
        off = (int64_t)(oh * 60 + om) * 60000 * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -EINVAL;
    int64_t days = days_from_civil(Y, M, D);
    *ret_ms = ((days * 86400 + h * 3600 + m * 60 + sec) * 1000 + ms) - off;
    return 0;
}

static int duration_value(json_t *v, int64_t *ret_ms) {
    if (json_is_string(v))
        return parse_duration_ms(json_string_value(v), ret_ms);
    if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < 1e10) {
        *ret_ms = (int64_t)(json_number_value(v) * 1000.0);
        return 0;
    }
    return -EINVAL;
}

/*
 * Fills s from one task body; texts receives the allocated strings (the
 * payload, the tags).  0, or -EINVAL / -E2BIG with msg saying why.
 */
static int parse_task(json_t *o, uint64_t max_payload, task_submit *s, char **texts, size_t *n_texts, char *msg,
                      size_t msglen) {
    memset(s, 0, sizeof(*s));
    s->priority = STORE_PRIORITY_NORMAL;
    if (!json_is_object(o)) {
        snprintf(msg, msglen, "a task must be a JSON object");
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "payload") == 0) {
            char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!t)
                return -ENOMEM;
            texts[(*n_texts)++] = t;
            s->payload = t;
            s->payload_len = strlen(t);
            if (s->payload_len > max_payload) {
                snprintf(msg, msglen, "payload of %zu bytes is over tasks.max_payload (%llu bytes)", s->payload_len,
                         (unsigned long long)max_payload);
                return -E2BIG;
            }
        } else if (strcmp(key, "priority") == 0) {
            int p = json_is_string(v) ? store_priority_from_string(json_string_value(v)) : -EINVAL;
            if (p < 0) {
                snprintf(msg, msglen, "priority: must be one of critical, high, normal, low, background");
                return -EINVAL;
            }
            s->priority = p;
        } else if (strcmp(key, "delay") == 0) {
            if (duration_value(v, &s->delay_ms) < 0) {
                snprintf(msg, msglen, "delay: invalid duration (try 500ms, 5s, 2m)");
                return -EINVAL;
            }
        } else if (strcmp(key, "run_at") == 0) {
            if (!json_is_string(v) || parse_rfc3339(json_string_value(v), &s->run_at) < 0) {
                snprintf(msg, msglen, "run_at: invalid RFC 3339 time (try 2026-11-22T12:00:00Z)");
                return -EINVAL;
            }
            if (s->run_at <= 0)
                s->run_at = 1; /* the epoch or before: due at once */
        } else if (strcmp(key, "max_attempts") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000) {
                snprintf(msg, msglen, "max_attempts: must be an integer from 1 to 1000");
                return -EINVAL;
            }
            s->max_attempts = (int)json_integer_value(v);
        } else if (strcmp(key, "timeout") == 0) {
            if (duration_value(v, &s->timeout_ms) < 0 || s->timeout_ms <= 0) {
                snprintf(msg, msglen, "timeout: invalid duration (try 500ms, 5s, 2m)");
                return -EINVAL;
            }
        } else if (strcmp(key, "idempotency_key") == 0) {
            if (json_is_null(v))
                continue;
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > STORE_KEY_MAX) {
                snprintf(msg, msglen, "idempotency_key: must be a string of 1 to %d bytes", STORE_KEY_MAX);
                return -EINVAL;
            }
            s->idempotency_key = json_string_value(v);
        } else if (strcmp(key, "tags") == 0) {
            if (json_is_null(v))
                continue;
            bool ok = json_is_array(v);
            size_t i;
            json_t *t;
            json_array_foreach(v, i, t) ok = ok && json_is_string(t);
            if (!ok) {
                snprintf(msg, msglen, "tags: must be an array of strings");
                return -EINVAL;
            }
            char *text = json_dumps(v, JSON_COMPACT);
            if (!text)
                return -ENOMEM;
            texts[(*n_texts)++] = text;
            if (strlen(text) > STORE_TAGS_MAX) {
                snprintf(msg, msglen, "tags: over %d bytes", STORE_TAGS_MAX);
                return -E2BIG;
            }
            s->tags = text;
        } else {
            snprintf(msg, msglen, "unknown field \"%.64s\" (payload, priority, delay, run_at, max_attempts, timeout, "
                                  "idempotency_key, tags)", key);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- POST /api/v1/queues/{queue}/tasks ------------------------------------------- */

static void on_submitted(void *data, int result, const store_task *tasks, const store_task *existing, size_t n) {
    pend *p = data;
    if (result < 0) {
        pend_answer(p, 0, NULL, result);
        return;
    }
    size_t created = 0;
    if (p->single) {
        bool hit = existing && existing[0].id[0];
        pend_answer(p, hit ? 200 : 201, task_json(hit ? &existing[0] : &tasks[0], true), 0);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        bool hit = existing && existing[i].id[0];
        json_t *t = task_json(hit ? &existing[i] : &tasks[i], false);
        if (t)
            json_object_set_new(t, "existing", json_boolean(hit));
        json_array_append_new(arr, t);
        created += !hit;
    }
    pend_answer(p, created ? 201 : 200,
                json_pack("{s:I, s:I, s:o}", "created", (json_int_t)created, "existing", (json_int_t)(n - created),
                          "tasks", arr),
                0);
}

static void post_tasks(api_request *req) {
    task_engine *e = req->srv->engine;
    const char *queue = req->params[0];
    if (!e || task_engine_queue_index(e, queue) < 0) {
        api_error(req, 404, "not_found", "no queue \"%s\"", queue);
        return;
    }
    if (task_engine_stopping(e)) {
        api_error(req, 503, "shutting_down", "tend is shutting down: tasks are not accepted");
        return;
    }
    json_t *body = req->json;
    bool single = true;
    json_t *list = NULL;
    if (json_is_array(body)) {
        single = false;
        list = body;
    } else if (json_is_object(body) && json_is_array(json_object_get(body, "tasks")) && !json_object_get(body, "payload")) {
        single = false;
        list = json_object_get(body, "tasks");
    } else if (!body) {
        api_error(req, 400, "bad_request", "the body must be a task object or an array of tasks");
        return;
    }
    size_t n = single ? 1 : json_array_size(list);
    if (n == 0 || n > BULK_MAX) {
        api_error(req, 400, "bad_request", "a bulk submission holds 1 to %d tasks", BULK_MAX);
        return;
    }
    pend *p = pend_new(req, queue);
    if (!p || !(p->subs = calloc(n, sizeof(*p->subs))) || !(p->texts = calloc(2 * n, sizeof(char *)))) {
        if (p)
            pend_free(p);
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    p->single = single;
    p->n_subs = n;
    uint64_t max_payload = req->srv->cfg->tasks.max_payload;
    for (size_t i = 0; i < n; i++) {
        char msg[300];
        json_t *o = single ? body : json_array_get(list, i);
        int r = parse_task(o, max_payload, &p->subs[i], p->texts, &p->n_texts, msg, sizeof(msg));
        if (r < 0) {
            if (r == -ENOMEM)
                api_error(req, 503, "out_of_memory", "out of memory");
            else if (single)
                api_error(req, r == -E2BIG ? 413 : 400, r == -E2BIG ? "payload_too_large" : "bad_request", "%s", msg);
            else
                api_error(req, r == -E2BIG ? 413 : 400, r == -E2BIG ? "payload_too_large" : "bad_request",
                          "task %zu: %s", i, msg);
            pend_free(p);
            return;
        }
    }
    int r = task_engine_submit(e, queue, p->subs, n, on_submitted, p);
    pend_park(req, p, r);
}

/* ---- one task, and actions on it ----------------------------------------------------- */

static void on_task_done(void *data, int result, const store_task *t) {
    pend *p = data;
    if (result == -EBUSY && t) {
        /* 409 with the task as it is, so the client sees why. */
        char msg[400];
        snprintf(msg, sizeof(msg), "task %s is %s: %s is not possible", t->id, store_task_state_to_string(t->state),
                 p->what);
        pend_answer(p, 409, json_pack("{s:{s:s, s:s}, s:o}", "error", "code", "conflict", "message", msg, "task",
                                      task_json(t, true)),
                    0);
        return;
    }
    if (result == -ESTALE) {
        pend_answer(p, 409, json_pack("{s:{s:s, s:s}}", "error", "code", "conflict", "message",
                                      "the task changed meanwhile; try again"),
                    0);
        return;
    }
    if (result < 0 || !t) {
        pend_answer(p, 0, NULL, result < 0 ? result : -EIO);
        return;
    }
    pend_answer(p, 200, task_json(t, true), 0);
}

typedef int (*task_action_fn)(task_engine *e, const char *id, task_done done, void *data);

static void task_action(api_request *req, task_action_fn fn, const char *what) {
    task_engine *e = engine_or_404(req);
    if (!e)
        return;
    const char *id = req->params[0];
    if (!store_id_valid(id)) {
        api_error(req, 404, "not_found", "no task \"%s\"", id);
        return;
    }
    pend *p = pend_new(req, what);
    if (!p) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    snprintf(p->what, sizeof(p->what), "%s", what);
    int r = fn(e, id, on_task_done, p);
    if (r == -ENOENT) {
        p->in_call = false;
        api_error(req, 404, "not_found", "no task \"%s\"", id);
        pend_free(p);
        return;
    }
    pend_park(req, p, r);
}

static void get_task(api_request *req) { task_action(req, task_engine_get, "get"); }
static void cancel_task(api_request *req) { task_action(req, task_engine_cancel, "cancel"); }
static void retry_task(api_request *req) { task_action(req, task_engine_retry, "retry"); }
static void ack_task(api_request *req) { task_action(req, task_engine_ack, "ack"); }
static void touch_task(api_request *req) { task_action(req, task_engine_touch, "touch"); }

static void nack_task(api_request *req) {
    task_engine *e = engine_or_404(req);
    if (!e)
        return;
    const char *id = req->params[0];
    if (!store_id_valid(id)) {
        api_error(req, 404, "not_found", "no task \"%s\"", id);
        return;
    }
    const char *error = NULL;
    int64_t retry_in = -1;
    json_t *b = req->json;
    if (b && !json_is_object(b)) {
        api_error(req, 400, "bad_request", "the body must be {\"error\": ..., \"retry_in\": ...}");
        return;
    }
    json_t *ev = b ? json_object_get(b, "error") : NULL;
    char *etext = NULL;
    if (ev && !json_is_null(ev)) {
        if (json_is_string(ev))
            error = json_string_value(ev);
        else
            error = etext = json_dumps(ev, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    json_t *rv = b ? json_object_get(b, "retry_in") : NULL;
    if (rv && !json_is_null(rv) && duration_value(rv, &retry_in) < 0) {
        free(etext);
        api_error(req, 400, "bad_request", "retry_in: invalid duration (try 500ms, 5s, 2m)");
        return;
    }
    pend *p = pend_new(req, "nack");
    if (!p) {
        free(etext);
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    int r = task_engine_nack(e, id, error, retry_in, on_task_done, p);
    free(etext);
    if (r == -ENOENT) {
        p->in_call = false;
        api_error(req, 404, "not_found", "no task \"%s\"", id);
        pend_free(p);
        return;
    }
    pend_park(req, p, r);
}

/* ---- GET /api/v1/tasks ---------------------------------------------------------------- */

static void on_listed(void *data, int result, const store_task *tasks, size_t n, const char *next) {
    pend *p = data;
    if (result < 0) {
        pend_answer(p, 0, NULL, result);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, task_json(&tasks[i], true));
    pend_answer(p, 200, json_pack("{s:o, s:o}", "tasks", arr, "next_cursor", next && *next ? json_string(next) : json_null()),
                0);
}

static void list_tasks(api_request *req) {
    task_engine *e = req->srv->engine;
    if (!e) {
        api_reply_json(req, 200, json_pack("{s:[], s:n}", "tasks", "next_cursor"));
        return;
    }
    const char *queue = api_query(req, "queue");
    const char *state = api_query(req, "state");
    const char *limit = api_query(req, "limit");
    const char *cursor = api_query(req, "cursor");
    int st = -1;
    if (state && *state && (st = store_task_state_from_string(state)) < 0) {
        api_error(req, 400, "bad_request",
                  "state: must be one of pending, scheduled, running, succeeded, dead, cancelled");
        return;
    }
    long long lim = 100;
    if (limit && *limit && parse_int(limit, 1, LIST_LIMIT_MAX, &lim) < 0) {
        api_error(req, 400, "bad_request", "limit: must be an integer from 1 to %d", LIST_LIMIT_MAX);
        return;
    }
    if (cursor && *cursor && !store_id_valid(cursor)) {
        api_error(req, 400, "bad_request", "cursor: not a cursor returned by this route");
        return;
    }
    pend *p = pend_new(req, "list");
    if (!p) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    int r = task_engine_list(e, queue && *queue ? queue : NULL, st, (size_t)lim, cursor, on_listed, p);
    pend_park(req, p, r);
}

/* ---- queues ------------------------------------------------------------------------------ */

static void list_queues(api_request *req) {
    task_engine *e = req->srv->engine;
    json_t *arr = json_array();
    for (size_t i = 0; e && i < task_engine_n_queues(e); i++) {
        task_queue_info in;
        if (task_engine_queue_info(e, i, &in) == 0)
            json_array_append_new(arr, queue_json(&in));
    }
    api_reply_json(req, 200, json_pack("{s:o}", "queues", arr));
}

static int queue_of(api_request *req, task_engine **ret_e) {
    task_engine *e = req->srv->engine;
    int i = e ? task_engine_queue_index(e, req->params[0]) : -ENOENT;
    if (i < 0)
        api_error(req, 404, "not_found", "no queue \"%s\"", req->params[0]);
    *ret_e = e;
    return i;
}

static void get_queue(api_request *req) {
    task_engine *e;
    int i = queue_of(req, &e);
    if (i < 0)
        return;
    task_queue_info in;
    task_engine_queue_info(e, (size_t)i, &in);
    api_reply_json(req, 200, queue_json(&in));
}

/* The pause (or resume) took effect at once; this is its write. */
static void on_pause_saved(void *data, int result) {
    pend *p = data;
    int i = task_engine_queue_index(p->engine, p->what);
    if (result < 0 || i < 0) {
        char msg[320];
        snprintf(msg, sizeof(msg), "queue %s: done, but it could not be saved (%s): a restart would not keep it",
                 p->what, strerror(result < 0 ? -result : ENOENT));
        pend_answer(p, 503, json_pack("{s:{s:s, s:o}}", "error", "code", "store_unavailable", "message", api_json_text(msg)),
                    0);
        return;
    }
    task_queue_info in;
    task_engine_queue_info(p->engine, (size_t)i, &in);
    pend_answer(p, 200, queue_json(&in), 0);
}

/* Answered once the queue's new state is durable: a paused queue stays
 * paused across a restart of tend. */
static void pause_or_resume(api_request *req, bool pause) {
    task_engine *e;
    if (queue_of(req, &e) < 0)
        return;
    pend *p = pend_new(req, req->params[0]);
    if (!p) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    int r = task_engine_pause(e, req->params[0], pause, on_pause_saved, p);
    if (r < 0 && r != -ENOENT) {
        on_pause_saved(p, r); /* in effect, not saved: say so */
        r = 0;
    }
    pend_park(req, p, r);
}

static void pause_queue(api_request *req) { pause_or_resume(req, true); }
static void resume_queue(api_request *req) { pause_or_resume(req, false); }

static void on_dead_done(void *data, int result) {
    pend *p = data;
    if (result < 0)
        pend_answer(p, 0, NULL, result);
    else
        pend_answer(p, 200, json_pack("{s:s, s:i}", "queue", p->what, "count", result), 0);
}

static void dead_action(api_request *req, bool requeue) {
    task_engine *e;
    if (queue_of(req, &e) < 0)
        return;
    pend *p = pend_new(req, req->params[0]);
    if (!p) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    int r = requeue ? task_engine_requeue_dead(e, req->params[0], on_dead_done, p)
                    : task_engine_purge_dead(e, req->params[0], on_dead_done, p);
    pend_park(req, p, r);
}

static void requeue_dead(api_request *req) { dead_action(req, true); }
static void purge_dead(api_request *req) { dead_action(req, false); }

/* ---- pull: reserve --------------------------------------------------------------------- */

static void on_reserved(void *data, int result, const store_task *t) {
    pend *p = data;
    p->reserve = NULL;
    if (result < 0)
        pend_answer(p, 0, NULL, result);
    else if (!t)
        pend_answer(p, 204, NULL, 0);
    else
        pend_answer(p, 200, task_json(t, true), 0);
}

static void reserve(api_request *req) {
    task_engine *e;
    if (queue_of(req, &e) < 0)
        return;
    int64_t wait = 0;
    const char *w = api_query(req, "wait");
    if (w && *w && (parse_duration_ms(w, &wait) < 0 || wait < 0 || wait > RESERVE_WAIT_MAX_MS)) {
        api_error(req, 400, "bad_request", "wait: invalid duration (at most 5m; try 30s)");
        return;
    }
    pend *p = pend_new(req, req->params[0]);
    if (!p) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    int r = task_engine_reserve(e, req->params[0], wait, on_reserved, p, &p->reserve);
    if (r < 0)
        p->reserve = NULL;
    pend_park(req, p, r);
}

/* ---- GET /api/v1/stats ------------------------------------------------------------------ */

static void get_stats(api_request *req) {
    task_engine *e = req->srv->engine;
    task_engine_stats s = {0};
    s.success_rate = 1.0;
    if (e)
        task_engine_get_stats(e, &s);
    json_t *cbs = json_object(), *qs = json_object();
    for (size_t i = 0; e && i < task_engine_n_queues(e); i++) {
        task_queue_info in;
        if (task_engine_queue_info(e, i, &in) < 0)
            continue;
        json_object_set_new(cbs, in.spec->name, json_string(breaker_state_to_string(in.breaker)));
        uint64_t ok = in.finished[TASK_RESULT_SUCCEEDED], bad = in.finished[TASK_RESULT_FAILED] + in.finished[TASK_RESULT_DEAD];
        json_object_set_new(qs, in.spec->name,
                            json_pack("{s:I, s:I, s:I, s:f, s:I, s:f, s:f}", "running_tasks", (json_int_t)in.running,
                                      "queue_depth", (json_int_t)in.depth, "dead_letter_count", (json_int_t)in.dead,
                                      "success_rate", ok + bad ? (double)ok / (double)(ok + bad) : 1.0,
                                      "total_processed",
                                      (json_int_t)(in.finished[0] + in.finished[1] + in.finished[2] + in.finished[3]),
                                      "average_processing_time_ms", in.avg_ms, "throughput_per_second", in.throughput));
    }
    api_reply_json(req, 200,
                   json_pack("{s:I, s:I, s:I, s:f, s:I, s:f, s:f, s:I, s:o, s:o}", "running_tasks",
                             (json_int_t)s.running_tasks, "queue_depth", (json_int_t)s.queue_depth,
                             "dead_letter_count", (json_int_t)s.dead_letter_count, "success_rate", s.success_rate,
                             "total_processed", (json_int_t)s.total_processed, "average_processing_time_ms",
                             s.average_processing_time_ms, "throughput_per_second", s.throughput_per_second,
                             "submitted_total", (json_int_t)s.submitted, "circuit_breakers", cbs, "queues", qs));
}

const api_route api_tasks_routes[] = {
    {"POST", "/api/v1/queues/{queue}/tasks", post_tasks, API_JSON_BODY},
    {"GET", "/api/v1/tasks", list_tasks, 0},
    {"GET", "/api/v1/tasks/{id}", get_task, 0},
    {"POST", "/api/v1/tasks/{id}/cancel", cancel_task, 0},
    {"POST", "/api/v1/tasks/{id}/retry", retry_task, 0},
    {"POST", "/api/v1/tasks/{id}/ack", ack_task, 0},
    {"POST", "/api/v1/tasks/{id}/nack", nack_task, API_JSON_BODY},
    {"POST", "/api/v1/tasks/{id}/touch", touch_task, 0},
    {"GET", "/api/v1/queues", list_queues, 0},
    {"GET", "/api/v1/queues/{queue}", get_queue, 0},
    {"POST", "/api/v1/queues/{queue}/pause", pause_queue, 0},
    {"POST", "/api/v1/queues/{queue}/resume", resume_queue, 0},
    {"POST", "/api/v1/queues/{queue}/dead/requeue", requeue_dead, 0},
    {"DELETE", "/api/v1/queues/{queue}/dead", purge_dead, 0},
    {"POST", "/api/v1/queues/{queue}/reserve", reserve, 0},
    {"GET", "/api/v1/stats", get_stats, 0},
    {0},
};
