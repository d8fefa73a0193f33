/*
 * api-services.c - GET /api/v1/services[/{name}] and POST
 * /api/v1/services/{name}/start|stop|restart; also the JSON view of a
 * service shared with /health and the event stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "api.h"
#include "parse.h"
#include "probe.h"
#include "timeutil.h"

static const char *cond_name(tend_dep_condition c) {
    return c == TEND_DEP_STARTED ? "started" : c == TEND_DEP_READY ? "ready" : "completed";
}

json_t *api_service_json(const service *s, bool detail) {
    const tend_service_spec *sp = s->spec;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(sp->name));
    json_object_set_new(o, "wave", json_integer(s->wave));
    json_object_set_new(o, "state", json_string(service_state_name(s->state)));
    json_object_set_new(o, "health", json_string(service_health_name(s->health)));
    json_object_set_new(o, "critical", json_boolean(sp->critical));
    json_object_set_new(o, "oneshot", json_boolean(sp->oneshot));
    json_object_set_new(o, "pid", s->pid > 0 ? json_integer(s->pid) : json_null());
    json_object_set_new(o, "restarts", json_integer((json_int_t)s->restarts_total));
    double up = s->pid > 0 ? (double)(now_mono_ms() - s->spawn_ms) / 1000.0 : 0;
    json_object_set_new(o, "uptime_seconds", json_real(up));
    const char *stage = service_stage_name(s);
    json_object_set_new(o, "stage", stage ? json_string(stage) : json_null());
    json_object_set_new(o, "error", s->last_error[0] ? api_json_text(s->last_error) : json_null());
    if (!detail)
        return o;

    json_t *reasons = json_object();
    for (int r = 0; r < _REASON_MAX; r++)
        json_object_set_new(reasons, restart_reason_name((restart_reason)r), json_integer((json_int_t)s->restarts[r]));
    json_object_set_new(o, "restarts_by_reason", reasons);
    json_object_set_new(o, "startup_ms", s->ready_once ? json_integer(s->startup_ready_ms) : json_null());
    json_t *stages = json_array();
    for (size_t i = 0; i < sp->n_stages; i++) {
        const stage_rt *st = &s->stages[i];
        json_array_append_new(stages, json_pack("{s:s, s:s, s:b, s:b, s:o, s:o}", "name", sp->stages[i].name,
                                                "probe", probe_kind_name(sp->stages[i].probe.kind),
                                                "critical", sp->stages[i].critical, "passing", st->ok,
                                                "duration_ms", st->duration_ms >= 0 ? json_integer(st->duration_ms) : json_null(),
                                                "last_error", st->last_error[0] ? api_json_text(st->last_error) : json_null()));
    }
    json_object_set_new(o, "stages", stages);
    json_t *deps = json_object();
    for (size_t k = 0; k < sp->n_deps; k++)
        json_object_set_new(deps, sp->deps[k].name, json_string(cond_name(sp->deps[k].condition)));
    json_object_set_new(o, "depends_on", deps);
    json_t *last_exit = json_null();
    if (s->last_exit_status >= 0) {
        int st = s->last_exit_status;
        last_exit = json_pack("{s:o, s:o, s:o}", "code", WIFEXITED(st) ? json_integer(WEXITSTATUS(st)) : json_null(),
                              "signal", WIFSIGNALED(st) ? json_string(signal_name(WTERMSIG(st))) : json_null(),
                              "at", api_time_json(s->last_exit_wall_ms));
    }
    json_object_set_new(o, "last_exit", last_exit);
    /* STATUS= is whatever bytes the service sent. */
    json_object_set_new(o, "status_text", s->status_text[0] ? api_json_text(s->status_text) : json_null());
    /* The command and the environment's keys; never environment values. */
    json_t *argv = json_array();
    for (size_t i = 0; sp->argv && sp->argv[i]; i++)
        json_array_append_new(argv, json_string(sp->argv[i]));
    json_object_set_new(o, "command", argv);
    json_t *env = json_array();
    for (size_t i = 0; sp->env && sp->env[i]; i++) {
        const char *eq = strchr(sp->env[i], '=');
        json_array_append_new(env, json_stringn(sp->env[i], eq ? (size_t)(eq - sp->env[i]) : strlen(sp->env[i])));
    }
    json_object_set_new(o, "env_keys", env);
    return o;
}

static service *find(api_request *req) {
    service *s = supervisor_find(req->srv->sup, req->params[0]);
    if (!s)
        api_error(req, 404, "not_found", "no service \"%s\"", req->params[0]);
    return s;
}

static void list(api_request *req) {
    supervisor *sup = req->srv->sup;
    json_t *arr = json_array();
    for (size_t k = 0; k < sup->n; k++)
        json_array_append_new(arr, api_service_json(&sup->services[sup->graph->order[k]], false));
    api_reply_json(req, 200, json_pack("{s:o}", "services", arr));
}

static void show(api_request *req) {
    service *s = find(req);
    if (s)
        api_reply_json(req, 200, api_service_json(s, true));
}

static void act(api_request *req, int (*fn)(supervisor *, service *), const char *verb) {
    service *s = find(req);
    if (!s)
        return;
    supervisor *sup = req->srv->sup;
    if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED) {
        api_error(req, 409, "conflict", "cannot %s %s: the system is %s", verb, s->spec->name, api_system_state(sup));
        return;
    }
    service_state before = s->state;
    int r = fn(sup, s);
    if (r == -EBUSY) {
        api_error(req, 409, "conflict", "cannot %s %s while it is %s", verb, s->spec->name, service_state_name(before));
        return;
    }
    if (r < 0) {
        api_error(req, 500, "internal", "%s %s: %s", verb, s->spec->name, strerror(-r));
        return;
    }
    json_t *o = api_service_json(s, false);
    json_object_set_new(o, "success", json_true());
    api_reply_json(req, 200, o);
}

/* The last n lines of the service's log file (at most 4 MiB read). */
static void logs(api_request *req) {
    service *s = find(req);
    if (!s)
        return;
    long n = 100;
    const char *q = api_query(req, "lines");
    if (q) {
        char *end;
        n = strtol(q, &end, 10);
        if (*end || n < 0 || n > 100000) {
            api_error(req, 400, "bad_request", "lines: expected a number from 0 to 100000");
            return;
        }
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/logs/%s.log", req->srv->cfg->state_dir, s->spec->name);
    FILE *f = fopen(path, "re");
    if (!f) {
        api_reply_text(req, 200, "text/plain; charset=utf-8", strdup(""), 0);
        return;
    }
    const long max = 4 * 1024 * 1024;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long start = size > max ? size - max : 0;
    fseek(f, start, SEEK_SET);
    char *buf = malloc((size_t)(size - start) + 1);
    size_t len = buf ? fread(buf, 1, (size_t)(size - start), f) : 0;
    fclose(f);
    if (!buf) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    buf[len] = '\0';
    /* Walk back n newlines (ignoring a trailing one). */
    size_t pos = len;
    if (pos > 0 && buf[pos - 1] == '\n')
        pos--;
    long seen = 0;
    while (pos > 0 && seen < n) {
        if (buf[pos - 1] == '\n' && ++seen == n)
            break;
        pos--;
    }
    if (n == 0)
        pos = len;
    memmove(buf, buf + pos, len - pos + 1);
    api_reply_text(req, 200, "text/plain; charset=utf-8", buf, len - pos);
}

static void start(api_request *req) { act(req, supervisor_service_start, "start"); }
static void stop(api_request *req) { act(req, supervisor_service_stop, "stop"); }
static void restart(api_request *req) { act(req, supervisor_service_restart, "restart"); }

const api_route api_services_routes[] = {
    {"GET", "/api/v1/services", list, 0},
    {"GET", "/api/v1/services/{name}", show, 0},
    {"GET", "/api/v1/services/{name}/logs", logs, 0},
    {"POST", "/api/v1/services/{name}/start", start, API_JSON_BODY},
    {"POST", "/api/v1/services/{name}/stop", stop, API_JSON_BODY},
    {"POST", "/api/v1/services/{name}/restart", restart, API_JSON_BODY},
    {0},
};
