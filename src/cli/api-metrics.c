/*
 * api-metrics.c - GET /metrics in the Prometheus text format 0.0.4:
 * the tend_* metrics of SPEC 5 that exist today and the standard
 * process_* metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api-sessions.h"
#include "events.h"
#include "histogram.h"
#include "probe.h"
#include "resources.h"
#include "strbuf.h"
#include "task-engine.h"
#include "timeutil.h"

#define METRICS_MAX (16 * 1024 * 1024)

/* Label values escape backslash, double quote and newline. */
static void label(strbuf *b, const char *v) {
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            strbuf_append(b, "\\\\", 2);
        else if (*p == '"')
            strbuf_append(b, "\\\"", 2);
        else if (*p == '\n')
            strbuf_append(b, "\\n", 2);
        else
            strbuf_append(b, p, 1);
    }
}

static void head(strbuf *b, const char *name, const char *type, const char *help) {
    strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{service="x"<extra>} value */
static void sample(strbuf *b, const char *name, const char *svc, const char *k2, const char *v2, double value) {
    strbuf_printf(b, "%s{service=\"", name);
    label(b, svc);
    if (k2) {
        strbuf_printf(b, "\",%s=\"", k2);
        label(b, v2);
    }
    strbuf_printf(b, "\"} %.17g\n", value);
}

static void hist(strbuf *b, const char *name, const char *svc, const char *kind, const histogram *h) {
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += h->counts[i];
        strbuf_printf(b, "%s_bucket{service=\"", name);
        label(b, svc);
        strbuf_printf(b, "\",probe=\"%s\",le=\"", kind);
        if (i < h->n_bounds)
            strbuf_printf(b, "%g\"} %llu\n", h->bounds[i], (unsigned long long)cum);
        else
            strbuf_printf(b, "+Inf\"} %llu\n", (unsigned long long)cum);
    }
    strbuf_printf(b, "%s_sum{service=\"", name);
    label(b, svc);
    strbuf_printf(b, "\",probe=\"%s\"} %.17g\n", kind, h->sum);
    strbuf_printf(b, "%s_count{service=\"", name);
    label(b, svc);
    strbuf_printf(b, "\",probe=\"%s\"} %llu\n", kind, (unsigned long long)h->count);
}

/* The session store (api-sessions.c); zeroes when it is not running. */
static void sessions_metrics(strbuf *b, api_server *srv) {
    session_store_stats st;
    api_sessions_stats(srv->sessions, &st);
    head(b, "tend_sessions", "gauge", "Live sessions in the session store.");
    strbuf_printf(b, "tend_sessions %llu\n", (unsigned long long)st.count);
    head(b, "tend_sessions_expired_total", "counter", "Sessions removed because their ttl ran out.");
    strbuf_printf(b, "tend_sessions_expired_total %llu\n", (unsigned long long)st.expired_total);
    head(b, "tend_sessions_evicted_total", "counter", "Sessions evicted because sessions.max_sessions was reached.");
    strbuf_printf(b, "tend_sessions_evicted_total %llu\n", (unsigned long long)st.evicted_total);
}

/* name{queue="q"[,k2="v2"]} value */
static void qsample(strbuf *b, const char *name, const char *queue, const char *k2, const char *v2, double value) {
    strbuf_printf(b, "%s{queue=\"", name);
    label(b, queue);
    if (k2) {
        strbuf_printf(b, "\",%s=\"", k2);
        label(b, v2);
    }
    strbuf_printf(b, "\"} %.17g\n", value);
}

static void qhist(strbuf *b, const char *name, const char *queue, const histogram *h) {
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += h->counts[i];
        strbuf_printf(b, "%s_bucket{queue=\"", name);
        label(b, queue);
        if (i < h->n_bounds)
            strbuf_printf(b, "\",le=\"%g\"} %llu\n", h->bounds[i], (unsigned long long)cum);
        else
            strbuf_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    strbuf_printf(b, "%s_sum{queue=\"", name);
    label(b, queue);
    strbuf_printf(b, "\"} %.17g\n", h->sum);
    strbuf_printf(b, "%s_count{queue=\"", name);
    label(b, queue);
    strbuf_printf(b, "\"} %llu\n", (unsigned long long)h->count);
}

/* The task engine's counters (SPEC 5), all from memory: the engine keeps
 * the per-state counts incrementally and re-reads them from the store
 * every few seconds, so a scrape never touches the store. */
static void tasks_metrics(strbuf *b, api_server *srv) {
    task_engine *e = srv->engine;
    size_t n = e ? task_engine_n_queues(e) : 0;
    task_queue_info *in = n ? calloc(n, sizeof(*in)) : NULL;
    if (n && !in)
        return;
    for (size_t i = 0; i < n; i++)
        task_engine_queue_info(e, i, &in[i]);
    head(b, "tend_tasks_submitted_total", "counter", "Tasks stored by submissions, by queue and priority.");
    for (size_t i = 0; i < n; i++)
        for (int p = 0; p < STORE_PRIORITY_MAX; p++)
            qsample(b, "tend_tasks_submitted_total", in[i].spec->name, "priority",
                    store_priority_to_string((store_priority)p), (double)in[i].submitted[p]);
    head(b, "tend_tasks_finished_total", "counter",
         "Task attempts finished, by result (failed: an attempt that will be retried).");
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < 4; r++)
            qsample(b, "tend_tasks_finished_total", in[i].spec->name, "result", task_result_name(r),
                    (double)in[i].finished[r]);
    head(b, "tend_task_duration_seconds", "histogram", "Duration of task attempts.");
    for (size_t i = 0; i < n; i++)
        qhist(b, "tend_task_duration_seconds", in[i].spec->name, in[i].duration);
    head(b, "tend_queue_depth", "gauge", "Tasks waiting (pending or scheduled), by priority.");
    for (size_t i = 0; i < n; i++)
        for (int p = 0; p < STORE_PRIORITY_MAX; p++)
            qsample(b, "tend_queue_depth", in[i].spec->name, "priority", store_priority_to_string((store_priority)p),
                    (double)(in[i].n[STORE_TASK_PENDING][p] + in[i].n[STORE_TASK_SCHEDULED][p]));
    head(b, "tend_tasks_running", "gauge", "Tasks running now (pull queues: leased).");
    for (size_t i = 0; i < n; i++)
        qsample(b, "tend_tasks_running", in[i].spec->name, NULL, NULL, (double)in[i].running);
    head(b, "tend_dead_tasks", "gauge", "Tasks in the dead-letter state.");
    for (size_t i = 0; i < n; i++)
        qsample(b, "tend_dead_tasks", in[i].spec->name, NULL, NULL, (double)in[i].dead);
    head(b, "tend_circuit_breaker_state", "gauge", "Queue circuit breaker: 0 closed, 1 half-open, 2 open.");
    for (size_t i = 0; i < n; i++)
        qsample(b, "tend_circuit_breaker_state", in[i].spec->name, NULL, NULL, (double)in[i].breaker);
    head(b, "tend_queue_paused", "gauge", "1 while the queue is paused.");
    for (size_t i = 0; i < n; i++)
        qsample(b, "tend_queue_paused", in[i].spec->name, NULL, NULL, in[i].paused ? 1 : 0);
    head(b, "tend_batch_size", "histogram", "Tasks per batch handed to batch-mode handlers.");
    for (size_t i = 0; i < n; i++)
        if (in[i].spec->batch)
            qhist(b, "tend_batch_size", in[i].spec->name, in[i].batch_size);
    free(in);
}

static const char *probe_label(const service *s, int which) {
    if (which == 1)
        return "liveness";
    return "readiness";
}

char *api_metrics_text(api_server *srv, size_t *ret_len);
char *api_metrics_text(api_server *srv, size_t *ret_len) {
    supervisor *sup = srv->sup;
    strbuf b;
    strbuf_init(&b, METRICS_MAX);

    head(&b, "tend_up", "gauge", "1 while tend is running.");
    strbuf_printf(&b, "tend_up 1\n");
    head(&b, "tend_startup_seconds", "gauge", "Time from start to every service settled; 0 until then.");
    strbuf_printf(&b, "tend_startup_seconds %.3f\n",
                  sup->started_ms ? (double)(sup->started_ms - sup->start_ms) / 1000.0 : 0.0);

    head(&b, "tend_service_state", "gauge", "1 for the state each service is in.");
    for (size_t i = 0; i < sup->n; i++)
        for (int st = 0; st < _SVC_STATE_MAX; st++)
            sample(&b, "tend_service_state", sup->services[i].spec->name, "state",
                   service_state_name((service_state)st), sup->services[i].state == (service_state)st);
    head(&b, "tend_service_ready", "gauge", "1 when the service is ready.");
    for (size_t i = 0; i < sup->n; i++)
        sample(&b, "tend_service_ready", sup->services[i].spec->name, NULL, NULL,
               sup->services[i].state == SVC_READY);
    head(&b, "tend_service_restarts_total", "counter", "Restarts by reason.");
    for (size_t i = 0; i < sup->n; i++)
        for (int r = 0; r < _REASON_MAX; r++)
            sample(&b, "tend_service_restarts_total", sup->services[i].spec->name, "reason",
                   restart_reason_name((restart_reason)r), (double)sup->services[i].restarts[r]);
    head(&b, "tend_service_startup_seconds", "gauge", "Time from first spawn to ready in this run.");
    for (size_t i = 0; i < sup->n; i++) {
        const service *s = &sup->services[i];
        if (!s->ready_once)
            continue;
        char wave[16];
        snprintf(wave, sizeof(wave), "%d", s->wave);
        sample(&b, "tend_service_startup_seconds", s->spec->name, "wave", wave, (double)s->startup_ready_ms / 1000.0);
    }
    head(&b, "tend_health_check_duration_seconds", "histogram", "Duration of readiness and liveness probes.");
    for (size_t i = 0; i < sup->n; i++)
        for (int w = 0; w < 2; w++)
            if (sup->services[i].probe_seconds[w].count)
                hist(&b, "tend_health_check_duration_seconds", sup->services[i].spec->name,
                     probe_label(&sup->services[i], w), &sup->services[i].probe_seconds[w]);
    head(&b, "tend_health_check_failures_total", "counter", "Failed readiness and liveness probes.");
    for (size_t i = 0; i < sup->n; i++)
        for (int w = 0; w < 2; w++)
            sample(&b, "tend_health_check_failures_total", sup->services[i].spec->name, "probe",
                   probe_label(&sup->services[i], w), (double)sup->services[i].probe_failures[w]);
    head(&b, "tend_http_requests_total", "counter", "API requests served.");
    strbuf_printf(&b, "tend_http_requests_total %llu\n", (unsigned long long)srv->stats.requests_total);
    head(&b, "tend_event_streams", "gauge", "Open /api/v1/events streams.");
    strbuf_printf(&b, "tend_event_streams %u\n", events_subscribers(srv->events));

    tasks_metrics(&b, srv);
    sessions_metrics(&b, srv);

    self_usage u;
    resources_self(&u);
    head(&b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    strbuf_printf(&b, "process_cpu_seconds_total %.2f\n", u.cpu_seconds);
    head(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    strbuf_printf(&b, "process_resident_memory_bytes %llu\n", (unsigned long long)u.rss_bytes);
    head(&b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    strbuf_printf(&b, "process_virtual_memory_bytes %llu\n", (unsigned long long)u.vsize_bytes);
    head(&b, "process_open_fds", "gauge", "Number of open file descriptors.");
    strbuf_printf(&b, "process_open_fds %d\n", u.open_fds);
    head(&b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    strbuf_printf(&b, "process_max_fds %llu\n", (unsigned long long)u.max_fds);
    head(&b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    strbuf_printf(&b, "process_start_time_seconds %.2f\n", u.start_time_s);
    head(&b, "process_threads", "gauge", "Number of OS threads.");
    strbuf_printf(&b, "process_threads %d\n", u.threads);
    if (b.error) {
        strbuf_free(&b);
        return NULL;
    }
    return strbuf_take(&b, ret_len);
}

static void metrics(api_request *req) {
    api_server *srv = req->srv;
    struct api_cache *c = &srv->metrics_cache;
    int64_t now = now_mono_us();
    if (!c->body || c->gen != srv->state_gen || now - c->at_us >= API_CACHE_US) {
        size_t len;
        char *text = api_metrics_text(srv, &len);
        if (!text) {
            api_error(req, 500, "internal", "cannot render metrics");
            return;
        }
        api_cache_clear(c);
        c->body = text;
        c->len = len;
        c->status = 200;
        c->at_us = now;
        c->gen = srv->state_gen;
    }
    api_reply_cached(req, c, "text/plain; version=0.0.4; charset=utf-8");
}

const api_route api_metrics_routes[] = {
    {"GET", "/metrics", metrics, API_PUBLIC},
    {0},
};
