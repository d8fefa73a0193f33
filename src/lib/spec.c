/*
 * spec.c - defaults and destructors for the plain-data system description
 * in tend/spec.h.  The config loader fills these structs from tend.yaml; a
 * C program embedding libtend may fill them directly, starting from the
 * _init() defaults.
 */
#include <tend/spec.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

static void free_strv(char **v) {
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

void tend_probe_spec_init(tend_probe_spec *p, bool liveness) {
    memset(p, 0, sizeof(*p));
    p->kind = TEND_PROBE_NONE;
    p->interval_ms = liveness ? 10000 : 5000;
    p->start_interval_ms = 100;
    p->probe_timeout_ms = 3000;
    p->initial_delay_ms = 0;
    p->failure_threshold = 3;
    p->success_threshold = 1;
}

void tend_stage_spec_init(tend_stage_spec *st) {
    memset(st, 0, sizeof(*st));
    tend_probe_spec_init(&st->probe, false);
    st->timeout_ms = 60000;
    st->critical = true;
}

void tend_service_spec_init(tend_service_spec *s) {
    memset(s, 0, sizeof(*s));
    s->critical = true;
    s->oneshot = false;
    s->has_live = false;
    tend_probe_spec_init(&s->live, true);
    s->watchdog_ms = 0;
    s->restart.policy = TEND_RESTART_ON_FAILURE;
    s->restart.delay_ms = 1000;
    s->restart.max_delay_ms = 60000;
    s->restart.jitter = 0.2;
    s->restart.max_attempts = 5;
    s->restart.window_ms = 120000;
    s->restart.reset_after_ms = 60000;
    s->stop.signal = SIGTERM;
    s->stop.timeout_ms = 10000;
    s->replicas = 1;
}

void tend_queue_spec_init(tend_queue_spec *q) {
    memset(q, 0, sizeof(*q));
    q->handler = TEND_HANDLER_EXEC;
    q->concurrency = 3;
    q->timeout_ms = 30000;
    q->max_attempts = 3;
    q->backoff_base_ms = 1000;
    q->backoff_max_ms = 300000;
    q->backoff_jitter = 0.2;
    q->rate_per_sec = 0;
    q->breaker_failure_threshold = 0;
    q->breaker_open_ms = 60000;
    q->batch = false;
    q->batch_size = 10;
    q->batch_max_wait_ms = 30000;
    q->dry_run = false;
    /* Pull acks are answered once queued in the group commit (at least
     * once, as beanstalkd's default binlog and most job queues); `ack:
     * durable` waits for the commit.  See docs/tasks.md. */
    q->ack_async = true;
}

void tend_config_init(tend_config *c) {
    memset(c, 0, sizeof(*c));
    c->log_format = TEND_LOG_TEXT;
    c->log_level = LOG_INFO;
    c->log_max_size = 10u << 20;
    c->log_max_files = 3;
    c->tasks.workers = 10;
    c->tasks.retention_succeeded_ms = 24LL * 3600 * 1000;
    c->tasks.retention_dead_ms = 7LL * 24 * 3600 * 1000;
    c->tasks.max_payload = 256u << 10;
    c->sessions.ttl_ms = 3600 * 1000;
    c->sessions.cleanup_interval_ms = 5 * 60 * 1000;
    c->sessions.max_sessions = 100000;
    c->sessions.persist = false;
    c->sessions.max_value = 64u << 10;
    c->health_interval_ms = 60000;
}

void tend_probe_spec_clear(tend_probe_spec *p) {
    if (!p)
        return;
    free_strv(p->argv);
    free(p->host);
    free(p->url);
    free(p->expect_body);
    memset(p, 0, sizeof(*p));
}

void tend_stage_spec_clear(tend_stage_spec *st) {
    if (!st)
        return;
    free(st->name);
    tend_probe_spec_clear(&st->probe);
    memset(st, 0, sizeof(*st));
}

void tend_service_spec_clear(tend_service_spec *s) {
    if (!s)
        return;
    free(s->name);
    free_strv(s->argv);
    free(s->cwd);
    free_strv(s->env);
    free(s->user);
    for (size_t i = 0; i < s->n_deps; i++)
        free(s->deps[i].name);
    free(s->deps);
    for (size_t i = 0; i < s->n_stages; i++)
        tend_stage_spec_clear(&s->stages[i]);
    free(s->stages);
    tend_probe_spec_clear(&s->live);
    memset(s, 0, sizeof(*s));
}

void tend_queue_spec_clear(tend_queue_spec *q) {
    if (!q)
        return;
    free(q->name);
    free_strv(q->argv);
    free(q->url);
    memset(q, 0, sizeof(*q));
}

void tend_config_free(tend_config *c) {
    if (!c)
        return;
    free(c->file);
    free(c->dir);
    free(c->name);
    free(c->state_dir);
    free(c->api_listen);
    free(c->api_token_file);
    free(c->store);
    for (size_t i = 0; i < c->n_services; i++)
        tend_service_spec_clear(&c->services[i]);
    free(c->services);
    for (size_t i = 0; i < c->tasks.n_queues; i++)
        tend_queue_spec_clear(&c->tasks.queues[i]);
    free(c->tasks.queues);
    free(c);
}
