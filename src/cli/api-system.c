/*
 * api-system.c - GET /api/v1/system (state, startup report, waves),
 * POST /api/v1/system/start and POST /api/v1/system/shutdown.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "parse.h"
#include "tend-config.h"
#include "timeutil.h"

const char *api_system_state(const supervisor *sup) {
    switch (sup->phase) {
    case PHASE_IDLE: return "idle";
    case PHASE_STARTING: return "starting";
    case PHASE_STARTED: return "started";
    default: return "stopping";
    }
}

static json_t *report_json(const supervisor *sup) {
    if (!sup->started_ms)
        return json_null();
    json_t *svcs = json_array();
    for (size_t k = 0; k < sup->n; k++) {
        const service *s = &sup->services[sup->graph->order[k]];
        if (!s->selected)
            continue;
        json_t *stages = json_array();
        for (size_t i = 0; i < s->spec->n_stages; i++)
            json_array_append_new(stages, json_pack("{s:s, s:o}", "name", s->spec->stages[i].name, "duration_ms",
                                                    s->stages[i].duration_ms >= 0 ? json_integer(s->stages[i].duration_ms)
                                                                                  : json_null()));
        json_array_append_new(svcs, json_pack("{s:s, s:i, s:s, s:o, s:o, s:o}", "name", s->spec->name, "wave", s->wave,
                                              "state", service_state_name(s->state), "spawn_offset_ms",
                                              s->spawned_once ? json_integer(s->first_spawn_ms - sup->start_ms) : json_null(),
                                              "spawn_to_ready_ms", s->ready_once ? json_integer(s->startup_ready_ms) : json_null(),
                                              "stages", stages));
    }
    return json_pack("{s:I, s:o}", "duration_ms", (json_int_t)(sup->started_ms - sup->start_ms), "services", svcs);
}

static json_t *waves_json(const supervisor *sup) {
    json_t *waves = json_array();
    for (int w = 1; w <= sup->graph->n_waves; w++) {
        json_t *a = json_array();
        for (size_t i = 0; i < sup->n; i++)
            if (sup->graph->wave[i] == w)
                json_array_append_new(a, json_string(sup->services[i].spec->name));
        json_array_append_new(waves, a);
    }
    return waves;
}

static void get_system(api_request *req) {
    api_server *srv = req->srv;
    supervisor *sup = srv->sup;
    api_reply_json(req, 200, json_pack("{s:s, s:s, s:s, s:f, s:o, s:o, s:o}", "name", srv->cfg->name, "version",
                                       TEND_VERSION, "state", api_system_state(sup), "uptime_seconds",
                                       (double)(now_mono_ms() - srv->started_mono_ms) / 1000.0, "startup", report_json(sup),
                                       "waves", waves_json(sup), "failure",
                                       sup->failure[0] ? api_json_text(sup->failure) : json_null()));
}

static void reply_result(api_request *req, int status, bool ok, const char *msg) {
    api_reply_json(req, status, json_pack("{s:b, s:s}", "success", ok, "message", msg));
}

static void post_start(api_request *req) {
    supervisor *sup = req->srv->sup;
    switch (sup->phase) {
    case PHASE_IDLE:
        req->srv->request_start(req->srv);
        reply_result(req, 200, true, "system starting");
        return;
    case PHASE_STARTING: reply_result(req, 400, false, "system is already starting"); return;
    case PHASE_STARTED: reply_result(req, 400, false, "system is already started"); return;
    default: reply_result(req, 400, false, "system is stopping"); return;
    }
}

/* The ports the services' probes watch: what the shutdown frees. */
static json_t *ports_json(const supervisor *sup) {
    json_t *ports = json_array();
    for (size_t i = 0; i < sup->n; i++) {
        const tend_service_spec *sp = sup->services[i].spec;
        for (size_t k = 0; k < sp->n_stages; k++) {
            const tend_probe_spec *p = &sp->stages[k].probe;
            long port = 0;
            if (p->kind == TEND_PROBE_TCP)
                port = p->port;
            else if (p->kind == TEND_PROBE_HTTP && p->url) {
                const char *h = strstr(p->url, "://");
                h = h ? h + 3 : p->url;
                const char *end = strchr(h, '/');
                const char *colon = strrchr(h, ':');
                if (colon && (!end || colon < end))
                    port = strtol(colon + 1, NULL, 10);
                else
                    port = strncmp(p->url, "https", 5) == 0 ? 443 : 80;
            }
            if (port <= 0)
                continue;
            bool seen = false;
            size_t idx;
            json_t *v;
            json_array_foreach(ports, idx, v) if (json_integer_value(v) == port) seen = true;
            if (!seen)
                json_array_append_new(ports, json_integer(port));
        }
    }
    return ports;
}

static void post_shutdown(api_request *req) {
    api_server *srv = req->srv;
    supervisor *sup = srv->sup;
    if (sup->phase == PHASE_STARTING) {
        reply_result(req, 400, false, "system is starting; shut down once startup has settled, or send SIGTERM");
        return;
    }
    if (srv->shutdown_requested || sup->phase == PHASE_STOPPING || sup->phase == PHASE_DONE) {
        reply_result(req, 200, true, "shutdown already requested");
        return;
    }
    int64_t timeout_ms = -1;
    if (req->json) {
        json_t *t = json_is_object(req->json) ? json_object_get(req->json, "timeout") : NULL;
        if (t && (!json_is_string(t) || parse_duration_ms(json_string_value(t), &timeout_ms) < 0)) {
            api_error(req, 400, "bad_request", "timeout: expected a duration such as \"30s\"");
            return;
        }
    }
    char names[2048] = "";
    size_t o = 0;
    for (size_t k = sup->n; k-- > 0;) {
        const service *s = &sup->services[sup->graph->order[k]];
        if (s->pid > 0 && o < sizeof(names) - 70)
            o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", o ? ", " : "", s->spec->name);
    }
    char msg[2200];
    snprintf(msg, sizeof(msg), "shutdown requested; stopping tracked processes: %s", o ? names : "(none)");
    srv->shutdown_requested = true;
    srv->shutdown_timeout_ms = timeout_ms;
    srv->request_shutdown(srv, "API request");
    api_reply_json(req, 200, json_pack("{s:b, s:s, s:o}", "success", true, "message", msg, "ports", ports_json(sup)));
}

const api_route api_system_routes[] = {
    {"GET", "/api/v1/system", get_system, 0},
    {"POST", "/api/v1/system/start", post_start, API_JSON_BODY},
    {"POST", "/api/v1/system/shutdown", post_shutdown, API_JSON_BODY},
    {0},
};
