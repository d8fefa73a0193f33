/*
 * api-health.c - the health probes of Kubernetes, docker and load
 * balancers: /health (the reference format), /health/live,
 * /health/ready, /health/startup, /health/services/{name}.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "resources.h"
#include "tend-config.h"
#include "macros.h"
#include "timeutil.h"

/* A service counts when it is part of this run. */
static bool counted(const service *s) { return s->selected; }

static const char *service_status(const service *s) {
    switch (s->health) {
    case HEALTH_HEALTHY: return "healthy";
    case HEALTH_DEGRADED: return "degraded";
    case HEALTH_STARTING: return "starting";
    case HEALTH_STOPPED: return s->state == SVC_STOPPED || s->state == SVC_PENDING ? "stopped" : "healthy";
    default: return "unhealthy";
    }
}

/* SPEC 4: unhealthy if a critical service is unhealthy; degraded if a
 * service is degraded or a non-critical one unhealthy; else healthy.
 * A critical service that is not up (starting, stopped) is unhealthy. */
static const char *system_status(const supervisor *sup) {
    bool degraded = false;
    for (size_t i = 0; i < sup->n; i++) {
        const service *s = &sup->services[i];
        if (!counted(s))
            continue;
        const char *st = service_status(s);
        bool bad = strcmp(st, "unhealthy") == 0 || strcmp(st, "starting") == 0 || strcmp(st, "stopped") == 0;
        if (bad && s->spec->critical)
            return "unhealthy";
        if (bad || strcmp(st, "degraded") == 0)
            degraded = true;
    }
    return degraded ? "degraded" : "healthy";
}

static json_t *dependency_json(const service *s) {
    const char *stage = service_stage_name(s);
    return json_pack("{s:s, s:s, s:b, s:o, s:o, s:I, s:o}", "status", service_status(s), "state",
                     service_state_name(s->state), "critical", s->spec->critical, "latency_ms",
                     s->last_probe_ms >= 0 ? json_real(s->last_probe_ms) : json_null(), "stage",
                     stage ? json_string(stage) : json_null(), "restarts", (json_int_t)s->restarts_total,
                     "error", s->last_error[0] && s->health != HEALTH_HEALTHY ? api_json_text(s->last_error) : json_null());
}

json_t *api_health_json(api_server *srv, int *ret_http_status) {
    int64_t t0 = now_mono_us();
    supervisor *sup = srv->sup;
    const char *status = system_status(sup);
    json_t *deps = json_object();
    pid_t pgids[1024];
    size_t n_pg = 0;
    for (size_t k = 0; k < sup->n; k++) {
        const service *s = &sup->services[sup->graph->order[k]];
        if (!counted(s))
            continue;
        json_object_set_new(deps, s->spec->name, dependency_json(s));
        if (s->pgid > 0 && n_pg < 1024)
            pgids[n_pg++] = s->pgid;
    }
    self_usage u;
    resources_self(&u);
    double gpu_mb;
    bool has_gpu = resources_gpu_memory_mb(srv->loop, pgids, n_pg, &gpu_mb);

    api_stats *st = &srv->stats;
    int64_t now_s = now_mono_ms() / 1000;
    uint64_t req = 0, err = 0;
    double lat = 0;
    for (size_t i = 0; i < API_RATE_SLOTS; i++) {
        if (st->slot_sec[i] > now_s - API_RATE_SLOTS && st->slot_sec[i] <= now_s) {
            req += st->slot_requests[i];
            err += st->slot_errors[i];
            lat += st->slot_latency_ms[i];
        }
    }
    double window = (double)MIN(API_RATE_SLOTS, MAX(1, now_s - srv->started_mono_ms / 1000 + 1));
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "timestamp", api_time_json(now_wall_ms()));
    json_object_set_new(o, "service", json_pack("{s:s, s:s, s:f}", "name", srv->cfg->name, "version", TEND_VERSION,
                                                "uptime_seconds", (double)(now_mono_ms() - srv->started_mono_ms) / 1000.0));
    double self_ms = (double)(now_mono_us() - t0) / 1000.0;
    json_object_set_new(o, "checks", json_pack("{s:{s:s, s:f}, s:o, s:{s:f, s:f, s:i, s:o}}",
        "self", "status", "healthy", "latency_ms", self_ms,
        "dependencies", deps,
        "resources", "memory_mb", u.rss_mb, "cpu_percent", u.cpu_percent, "threads", u.threads,
        "gpu_memory_mb", has_gpu ? json_real(gpu_mb) : json_null()));
    json_object_set_new(o, "metrics", json_pack("{s:f, s:f, s:f}", "requests_per_second", (double)req / window,
                                                "error_rate", req ? (double)err / (double)req : 0.0,
                                                "average_latency_ms", req ? lat / (double)req : 0.0));
    *ret_http_status = strcmp(status, "unhealthy") == 0 ? 503 : 200;
    return o;
}

static void health(api_request *req) {
    api_server *srv = req->srv;
    struct api_cache *c = &srv->health_cache;
    int64_t now = now_mono_us();
    if (!c->body || c->gen != srv->state_gen || now - c->at_us >= API_CACHE_US) {
        int code;
        json_t *o = api_health_json(srv, &code);
        char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        json_decref(o);
        if (!text) {
            api_error(req, 503, "out_of_memory", "out of memory");
            return;
        }
        api_cache_clear(c);
        c->body = text;
        c->len = strlen(text);
        c->status = code;
        c->at_us = now;
        c->gen = srv->state_gen;
    }
    api_reply_cached(req, c, "application/json");
}

static void live(api_request *req) {
    api_reply_json(req, 200, json_pack("{s:s}", "status", "alive"));
}

static bool startup_complete(const supervisor *sup) { return sup->started_ms > 0; }

static void ready(api_request *req) {
    supervisor *sup = req->srv->sup;
    const char *st = system_status(sup);
    bool ok = startup_complete(sup) && sup->phase == PHASE_STARTED && strcmp(st, "unhealthy") != 0;
    api_reply_json(req, ok ? 200 : 503, json_pack("{s:s, s:s, s:b}", "status", ok ? "ready" : "not_ready",
                                                  "health", st, "startup_complete", startup_complete(sup)));
}

static void startup(api_request *req) {
    supervisor *sup = req->srv->sup;
    bool ok = startup_complete(sup);
    api_reply_json(req, ok ? 200 : 503, json_pack("{s:s, s:s}", "status", ok ? "started" : "starting",
                                                  "state", api_system_state(sup)));
}

static void one(api_request *req) {
    service *s = supervisor_find(req->srv->sup, req->params[0]);
    if (!s) {
        api_error(req, 404, "not_found", "no service \"%s\"", req->params[0]);
        return;
    }
    json_t *o = dependency_json(s);
    const char *st = service_status(s);
    bool ok = strcmp(st, "healthy") == 0 || strcmp(st, "degraded") == 0;
    json_object_set_new(o, "name", json_string(s->spec->name));
    api_reply_json(req, ok ? 200 : 503, o);
}

const api_route api_health_routes[] = {
    {"GET", "/health", health, API_PUBLIC},
    {"GET", "/health/live", live, API_PUBLIC},
    {"GET", "/health/ready", ready, API_PUBLIC},
    {"GET", "/health/startup", startup, API_PUBLIC},
    {"GET", "/health/services/{name}", one, API_PUBLIC},
    {0},
};
