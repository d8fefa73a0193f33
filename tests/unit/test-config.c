/*
 * test-config.c - the tend.yaml loader (src/cli/config.c): a full config
 * and its struct, defaults, `defaults:` merging, ${VAR} expansion,
 * env_file, and every class of error with its exact position and key path.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "macros.h"
#include "strv.h"

static int load(const char *yaml, tend_config **ret, char ***errors) {
    return config_load_string("t.yaml", yaml, strlen(yaml), ret, errors);
}

/* Loads yaml, which must fail, and compares the messages with the
 * NULL-terminated list that follows. */
static void expect_errors(const char *yaml, ...) {
    tend_config *cfg = NULL;
    char **errors = NULL;
    int r = load(yaml, &cfg, &errors);
    if (r != -EINVAL) {
        print_error("expected -EINVAL, got %d for:\n%s\n", r, yaml);
        tend_config_free(cfg);
        strv_free(errors);
        fail();
    }
    assert_null(cfg);
    assert_non_null(errors);
    va_list ap;
    va_start(ap, yaml);
    size_t i = 0;
    bool ok = true;
    for (const char *want; (want = va_arg(ap, const char *)); i++) {
        if (!errors[i] || strcmp(errors[i], want) != 0) {
            print_error("error %zu:\n  want: %s\n  got:  %s\n", i, want,
                        errors[i] ? errors[i] : "(none)");
            ok = false;
            break;
        }
    }
    va_end(ap);
    if (ok && errors[i]) {
        print_error("unexpected extra error: %s\n", errors[i]);
        ok = false;
    }
    if (!ok)
        for (size_t j = 0; errors[j]; j++)
            print_error("  all[%zu]: %s\n", j, errors[j]);
    strv_free(errors);
    assert_true(ok);
}

static tend_config *expect_ok(const char *yaml) {
    tend_config *cfg = NULL;
    char **errors = NULL;
    int r = load(yaml, &cfg, &errors);
    for (size_t i = 0; errors && errors[i]; i++)
        print_error("unexpected: %s\n", errors[i]);
    strv_free(errors);
    assert_int_equal(r, 0);
    assert_non_null(cfg);
    return cfg;
}

static char *cwd_join(const char *rel) {
    char *cwd = get_current_dir_name(), *r = NULL;
    assert_non_null(cwd);
    if (rel)
        assert_true(asprintf(&r, "%s/%s", cwd, rel) > 0);
    else
        r = strdup(cwd);
    free(cwd);
    return r;
}

static const tend_service_spec *service(const tend_config *cfg, const char *name) {
    for (size_t i = 0; i < cfg->n_services; i++)
        if (strcmp(cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    fail_msg("no service %s", name);
    return NULL;
}

/* ---- valid configs ---------------------------------------------------- */

static char tmpdir[64];

static void write_file(const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup_tmpdir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/tend-test-config-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmpdir(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char full_yaml[] =
    "name: demo\n"
    "state_dir: state\n"
    "api:\n"
    "  listen: 0.0.0.0:7171\n"
    "  token_file: secrets/token\n"
    "store: postgres://u@h/db\n"
    "log:\n"
    "  format: json\n"
    "  level: debug\n"
    "  max_size: 5M\n"
    "  max_files: 7\n"
    "defaults:\n"
    "  stop: {timeout: 20s}\n"
    "services:\n"
    "  db:\n"
    "    command: postgres -D data\n"
    "    oneshot: false\n"
    "    ready: {notify: true}\n"
    "    watchdog: 30s\n"
    "  migrate:\n"
    "    command: [./migrate]\n"
    "    oneshot: true\n"
    "  registry:\n"
    "    command: [\"./bin/registry\", \"--port\", \"8200\"]\n"
    "    cwd: ./srv\n"
    "    env: {LOG_LEVEL: info, PORT: 8200, EMPTY: }\n"
    "    env_file: .env\n"
    "    user: nobody\n"
    "    critical: false\n"
    "    depends_on:\n"
    "      db: ready\n"
    "      migrate: completed\n"
    "    ready:\n"
    "      - name: port_listening\n"
    "        tcp: 127.0.0.1:8200\n"
    "        timeout: 30s\n"
    "      - name: api_responsive\n"
    "        http: http://127.0.0.1:8200/health\n"
    "        expect_body: '\"ok\"'\n"
    "        interval: 5s\n"
    "        start_interval: 50ms\n"
    "        probe_timeout: 2s\n"
    "        failure_threshold: 4\n"
    "        success_threshold: 2\n"
    "        timeout: 60s\n"
    "      - http: http://127.0.0.1:8200/health/ready\n"
    "        timeout: 2m\n"
    "        critical: false\n"
    "      - exec: [\"./check\", \"-q\"]\n"
    "      - exec: test -f /tmp/x\n"
    "    live:\n"
    "      http: http://127.0.0.1:8200/health\n"
    "      interval: 11s\n"
    "      probe_timeout: 3s\n"
    "      failure_threshold: 3\n"
    "      initial_delay: 10s\n"
    "    restart:\n"
    "      policy: always\n"
    "      delay: 250ms\n"
    "      max_delay: 1m30s\n"
    "      jitter: 0.5\n"
    "      max_attempts: 9\n"
    "      window: 1h\n"
    "      reset_after: 61s\n"
    "    stop:\n"
    "      signal: INT\n"
    "    replicas: 1\n"
    "    resources: {memory_max: 512M, nofile: 4096}\n"
    "tasks:\n"
    "  workers: 12\n"
    "  retention: {succeeded: 1h, dead: 2d}\n"
    "  max_payload: 1M\n"
    "  queues:\n"
    "    email:\n"
    "      handler: {exec: [\"./bin/send-email\"]}\n"
    "      concurrency: 4\n"
    "      timeout: 31s\n"
    "      max_attempts: 5\n"
    "      backoff: {base: 2s, max: 5m, jitter: 0.1}\n"
    "      rate_limit: 50/s\n"
    "      circuit_breaker: {failure_threshold: 6, open_for: 61s}\n"
    "      batch: {size: 20, max_wait: 15s}\n"
    "      dry_run: true\n"
    "    hook:\n"
    "      handler: {http: \"https://example.com/hook\"}\n"
    "      rate_limit: 600/m\n"
    "      circuit_breaker: {}\n"
    "    jobs:\n"
    "      handler: pull\n"
    "    jobs2:\n"
    "      handler: {pull: true}\n"
    "    sh:\n"
    "      handler: {exec: \"echo hi\"}\n"
    "sessions:\n"
    "  ttl: 2h\n"
    "  cleanup_interval: 1m\n"
    "  max_sessions: 500\n"
    "  persist: true\n"
    "health:\n"
    "  interval: 30s\n";

static void test_full(void **state) {
    (void)state;
    char path[256], want[512];
    write_file(".env", "# comment\n\nexport A=1\nB = \"two words\" \nC='lit $x'\nPORT=1\n");
    snprintf(path, sizeof(path), "%s/tend.yaml", tmpdir);
    tend_config *cfg = NULL;
    char **errors = NULL;
    int r = config_load_string(path, full_yaml, strlen(full_yaml), &cfg, &errors);
    for (size_t i = 0; errors && errors[i]; i++)
        print_error("unexpected: %s\n", errors[i]);
    strv_free(errors);
    assert_int_equal(r, 0);

    assert_string_equal(cfg->file, path);
    assert_string_equal(cfg->dir, tmpdir);
    assert_string_equal(cfg->name, "demo");
    snprintf(want, sizeof(want), "%s/state", tmpdir);
    assert_string_equal(cfg->state_dir, want);
    assert_string_equal(cfg->api_listen, "0.0.0.0:7171");
    snprintf(want, sizeof(want), "%s/secrets/token", tmpdir);
    assert_string_equal(cfg->api_token_file, want);
    assert_string_equal(cfg->store, "postgres://u@h/db");
    assert_int_equal(cfg->log_format, TEND_LOG_JSON);
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->log_max_size, 5 << 20);
    assert_int_equal(cfg->log_max_files, 7);
    assert_int_equal(cfg->n_services, 3);

    const tend_service_spec *db = service(cfg, "db");
    assert_true(db->shell);
    assert_string_equal(db->argv[0], "/bin/sh");
    assert_string_equal(db->argv[1], "-c");
    assert_string_equal(db->argv[2], "postgres -D data");
    assert_null(db->argv[3]);
    assert_int_equal(db->n_stages, 1);
    assert_string_equal(db->stages[0].name, "notify");
    assert_int_equal(db->stages[0].probe.kind, TEND_PROBE_NOTIFY);
    assert_int_equal(db->watchdog_ms, 30000);
    assert_int_equal(db->stop.timeout_ms, 20000); /* from defaults */
    assert_int_equal(db->restart.policy, TEND_RESTART_ON_FAILURE);

    const tend_service_spec *mig = service(cfg, "migrate");
    assert_false(mig->shell);
    assert_true(mig->oneshot);
    assert_int_equal(mig->restart.policy, TEND_RESTART_NO);

    const tend_service_spec *s = service(cfg, "registry");
    assert_string_equal(s->argv[0], "./bin/registry");
    assert_string_equal(s->argv[2], "8200");
    assert_null(s->argv[3]);
    snprintf(want, sizeof(want), "%s/srv", tmpdir);
    assert_string_equal(s->cwd, want);
    /* env_file first, env on top (PORT from env wins). */
    assert_string_equal(strv_env_get(s->env, "A"), "1");
    assert_string_equal(strv_env_get(s->env, "B"), "two words");
    assert_string_equal(strv_env_get(s->env, "C"), "lit $x");
    assert_string_equal(strv_env_get(s->env, "PORT"), "8200");
    assert_string_equal(strv_env_get(s->env, "LOG_LEVEL"), "info");
    assert_string_equal(strv_env_get(s->env, "EMPTY"), "");
    assert_int_equal(strv_length(s->env), 6);
    assert_string_equal(s->user, "nobody");
    assert_false(s->critical);
    assert_false(s->oneshot);
    assert_int_equal(s->n_deps, 2);
    assert_string_equal(s->deps[0].name, "db");
    assert_int_equal(s->deps[0].condition, TEND_DEP_READY);
    assert_string_equal(s->deps[1].name, "migrate");
    assert_int_equal(s->deps[1].condition, TEND_DEP_COMPLETED);

    assert_int_equal(s->n_stages, 5);
    const tend_stage_spec *st = &s->stages[0];
    assert_string_equal(st->name, "port_listening");
    assert_int_equal(st->probe.kind, TEND_PROBE_TCP);
    assert_string_equal(st->probe.host, "127.0.0.1");
    assert_int_equal(st->probe.port, 8200);
    assert_int_equal(st->timeout_ms, 30000);
    assert_true(st->critical);
    st = &s->stages[1];
    assert_string_equal(st->name, "api_responsive");
    assert_int_equal(st->probe.kind, TEND_PROBE_HTTP);
    assert_string_equal(st->probe.url, "http://127.0.0.1:8200/health");
    assert_string_equal(st->probe.expect_body, "\"ok\"");
    assert_int_equal(st->probe.interval_ms, 5000);
    assert_int_equal(st->probe.start_interval_ms, 50);
    assert_int_equal(st->probe.probe_timeout_ms, 2000);
    assert_int_equal(st->probe.failure_threshold, 4);
    assert_int_equal(st->probe.success_threshold, 2);
    assert_int_equal(st->timeout_ms, 60000);
    st = &s->stages[2];
    assert_string_equal(st->name, "http");
    assert_int_equal(st->timeout_ms, 120000);
    assert_false(st->critical);
    assert_int_equal(st->probe.interval_ms, 5000);
    assert_int_equal(st->probe.start_interval_ms, 100);
    st = &s->stages[3];
    assert_string_equal(st->name, "exec");
    assert_string_equal(st->probe.argv[0], "./check");
    assert_string_equal(st->probe.argv[1], "-q");
    assert_null(st->probe.argv[2]);
    st = &s->stages[4];
    assert_string_equal(st->name, "exec2");
    assert_string_equal(st->probe.argv[0], "/bin/sh");
    assert_string_equal(st->probe.argv[2], "test -f /tmp/x");

    assert_true(s->has_live);
    assert_int_equal(s->live.kind, TEND_PROBE_HTTP);
    assert_int_equal(s->live.interval_ms, 11000);
    assert_int_equal(s->live.probe_timeout_ms, 3000);
    assert_int_equal(s->live.failure_threshold, 3);
    assert_int_equal(s->live.initial_delay_ms, 10000);
    assert_int_equal(s->watchdog_ms, 0);
    assert_int_equal(s->restart.policy, TEND_RESTART_ALWAYS);
    assert_int_equal(s->restart.delay_ms, 250);
    assert_int_equal(s->restart.max_delay_ms, 90000);
    assert_true(s->restart.jitter == 0.5);
    assert_int_equal(s->restart.max_attempts, 9);
    assert_int_equal(s->restart.window_ms, 3600000);
    assert_int_equal(s->restart.reset_after_ms, 61000);
    assert_int_equal(s->stop.signal, SIGINT);
    assert_int_equal(s->stop.timeout_ms, 20000); /* merged from defaults */
    assert_int_equal(s->replicas, 1);
    assert_int_equal(s->resources.memory_max, 512u << 20);
    assert_int_equal(s->resources.nofile, 4096);

    assert_int_equal(cfg->tasks.workers, 12);
    assert_int_equal(cfg->tasks.retention_succeeded_ms, 3600000);
    assert_int_equal(cfg->tasks.retention_dead_ms, 2 * 86400000LL);
    assert_int_equal(cfg->tasks.max_payload, 1 << 20);
    assert_int_equal(cfg->tasks.n_queues, 5);
    const tend_queue_spec *q = &cfg->tasks.queues[0];
    assert_string_equal(q->name, "email");
    assert_int_equal(q->handler, TEND_HANDLER_EXEC);
    assert_string_equal(q->argv[0], "./bin/send-email");
    assert_null(q->argv[1]);
    assert_int_equal(q->concurrency, 4);
    assert_int_equal(q->timeout_ms, 31000);
    assert_int_equal(q->max_attempts, 5);
    assert_int_equal(q->backoff_base_ms, 2000);
    assert_int_equal(q->backoff_max_ms, 300000);
    assert_true(q->backoff_jitter == 0.1);
    assert_true(q->rate_per_sec == 50.0);
    assert_int_equal(q->breaker_failure_threshold, 6);
    assert_int_equal(q->breaker_open_ms, 61000);
    assert_true(q->batch);
    assert_int_equal(q->batch_size, 20);
    assert_int_equal(q->batch_max_wait_ms, 15000);
    assert_true(q->dry_run);
    q = &cfg->tasks.queues[1];
    assert_string_equal(q->name, "hook");
    assert_int_equal(q->handler, TEND_HANDLER_HTTP);
    assert_string_equal(q->url, "https://example.com/hook");
    assert_true(q->rate_per_sec == 10.0);
    assert_int_equal(q->breaker_failure_threshold, 5); /* present -> default 5 */
    assert_int_equal(q->breaker_open_ms, 60000);
    assert_false(q->batch);
    assert_int_equal(cfg->tasks.queues[2].handler, TEND_HANDLER_PULL);
    assert_int_equal(cfg->tasks.queues[3].handler, TEND_HANDLER_PULL);
    q = &cfg->tasks.queues[4];
    assert_int_equal(q->handler, TEND_HANDLER_EXEC);
    assert_string_equal(q->argv[0], "/bin/sh");
    assert_string_equal(q->argv[2], "echo hi");

    assert_int_equal(cfg->sessions.ttl_ms, 7200000);
    assert_int_equal(cfg->sessions.cleanup_interval_ms, 60000);
    assert_int_equal(cfg->sessions.max_sessions, 500);
    assert_true(cfg->sessions.persist);
    assert_int_equal(cfg->health_interval_ms, 30000);
    tend_config_free(cfg);
}

static void test_defaults(void **state) {
    (void)state;
    tend_config *cfg = expect_ok("services:\n"
                                 "  a:\n"
                                 "    command: [x]\n"
                                 "    ready: {tcp: \"8080\"}\n"
                                 "  b:\n"
                                 "    command: [y]\n"
                                 "    oneshot: true\n"
                                 "tasks:\n"
                                 "  queues:\n"
                                 "    q: {handler: pull, batch: {}}\n");
    char *dir = cwd_join(NULL), *sd = cwd_join(".tend");
    const char *base = strrchr(dir, '/') + 1;
    assert_string_equal(cfg->dir, dir);
    assert_string_equal(cfg->name, base);
    assert_string_equal(cfg->state_dir, sd);
    free(dir);
    free(sd);
    assert_string_equal(cfg->api_listen, "127.0.0.1:7070");
    assert_null(cfg->api_token_file);
    assert_string_equal(cfg->store, "sqlite");
    assert_int_equal(cfg->log_format, TEND_LOG_TEXT);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->log_max_size, 10 << 20);
    assert_int_equal(cfg->log_max_files, 3);
    assert_int_equal(cfg->tasks.workers, 10);
    assert_int_equal(cfg->tasks.retention_succeeded_ms, 86400000);
    assert_int_equal(cfg->tasks.retention_dead_ms, 7 * 86400000LL);
    assert_int_equal(cfg->tasks.max_payload, 256 << 10);
    assert_int_equal(cfg->sessions.ttl_ms, 3600000);
    assert_int_equal(cfg->sessions.cleanup_interval_ms, 300000);
    assert_int_equal(cfg->sessions.max_sessions, 100000);
    assert_false(cfg->sessions.persist);
    assert_int_equal(cfg->health_interval_ms, 60000);

    const tend_service_spec *a = service(cfg, "a");
    assert_false(a->shell);
    assert_null(a->cwd);
    assert_null(a->env);
    assert_null(a->user);
    assert_true(a->critical);
    assert_false(a->oneshot);
    assert_int_equal(a->n_deps, 0);
    assert_false(a->has_live);
    assert_int_equal(a->watchdog_ms, 0);
    assert_int_equal(a->restart.policy, TEND_RESTART_ON_FAILURE);
    assert_int_equal(a->restart.delay_ms, 1000);
    assert_int_equal(a->restart.max_delay_ms, 60000);
    assert_true(a->restart.jitter == 0.2);
    assert_int_equal(a->restart.max_attempts, 5);
    assert_int_equal(a->restart.window_ms, 120000);
    assert_int_equal(a->restart.reset_after_ms, 60000);
    assert_int_equal(a->stop.signal, SIGTERM);
    assert_int_equal(a->stop.timeout_ms, 10000);
    assert_int_equal(a->replicas, 1);
    assert_int_equal(a->resources.memory_max, 0);
    assert_int_equal(a->resources.nofile, 0);
    assert_int_equal(a->n_stages, 1);
    const tend_stage_spec *st = &a->stages[0];
    assert_string_equal(st->name, "tcp");
    assert_string_equal(st->probe.host, "127.0.0.1");
    assert_int_equal(st->probe.port, 8080);
    assert_int_equal(st->timeout_ms, 60000);
    assert_true(st->critical);
    assert_int_equal(st->probe.interval_ms, 5000);
    assert_int_equal(st->probe.start_interval_ms, 100);
    assert_int_equal(st->probe.probe_timeout_ms, 3000);
    assert_int_equal(st->probe.failure_threshold, 3);
    assert_int_equal(st->probe.success_threshold, 1);
    /* The liveness probe's defaults are set even when absent. */
    assert_int_equal(a->live.interval_ms, 10000);
    assert_int_equal(a->live.initial_delay_ms, 0);

    const tend_service_spec *b = service(cfg, "b");
    assert_int_equal(b->restart.policy, TEND_RESTART_NO);

    const tend_queue_spec *q = &cfg->tasks.queues[0];
    assert_int_equal(q->concurrency, 3);
    assert_int_equal(q->timeout_ms, 30000);
    assert_int_equal(q->max_attempts, 3);
    assert_int_equal(q->backoff_base_ms, 1000);
    assert_int_equal(q->backoff_max_ms, 300000);
    assert_true(q->rate_per_sec == 0);
    assert_int_equal(q->breaker_failure_threshold, 0);
    assert_true(q->batch);
    assert_int_equal(q->batch_size, 10);
    assert_int_equal(q->batch_max_wait_ms, 30000);
    assert_false(q->dry_run);
    tend_config_free(cfg);
}

static void test_empty(void **state) {
    (void)state;
    tend_config *cfg = expect_ok("");
    assert_int_equal(cfg->n_services, 0);
    assert_int_equal(cfg->tasks.n_queues, 0);
    tend_config_free(cfg);
    cfg = expect_ok("services: {}\n");
    assert_int_equal(cfg->n_services, 0);
    tend_config_free(cfg);
    cfg = expect_ok("services:\ntasks:\n  queues:\n");
    assert_int_equal(cfg->n_services, 0);
    tend_config_free(cfg);
}

static void test_paths(void **state) {
    (void)state;
    tend_config *cfg = NULL;
    char **errors = NULL;
    const char *y = "state_dir: /var/lib/tend\nservices: {a: {command: x, cwd: .}}\n";
    assert_int_equal(config_load_string("/etc/tend/tend.yaml", y, strlen(y), &cfg, &errors), 0);
    assert_string_equal(cfg->dir, "/etc/tend");
    assert_string_equal(cfg->name, "tend");
    assert_string_equal(cfg->state_dir, "/var/lib/tend");
    assert_string_equal(cfg->services[0].cwd, "/etc/tend");
    tend_config_free(cfg);
    y = "services: {a: {command: x, cwd: ./sub/dir}}\n";
    assert_int_equal(config_load_string("conf/t.yaml", y, strlen(y), &cfg, &errors), 0);
    char *want = cwd_join("conf/sub/dir"), *wd = cwd_join("conf/.tend");
    assert_string_equal(cfg->services[0].cwd, want);
    assert_string_equal(cfg->state_dir, wd);
    assert_string_equal(cfg->name, "conf");
    free(want);
    free(wd);
    tend_config_free(cfg);
}

static void test_defaults_merge(void **state) {
    (void)state;
    tend_config *cfg = expect_ok("defaults:\n"
                                 "  user: www\n"
                                 "  critical: false\n"
                                 "  env: {A: da, B: db}\n"
                                 "  restart: {policy: always, delay: 2s, max_attempts: 7}\n"
                                 "  stop: {signal: INT, timeout: 20s}\n"
                                 "  resources: {memory_max: 1G, nofile: 100}\n"
                                 "  command: [default-cmd]\n"
                                 "services:\n"
                                 "  a:\n"
                                 "    command: [a]\n"
                                 "    env: {B: ab, C: ac}\n"
                                 "    restart: {delay: 3s}\n"
                                 "    stop: {timeout: 1s}\n"
                                 "    resources: {nofile: 200}\n"
                                 "  b:\n"
                                 "    user: root\n"
                                 "    critical: true\n"
                                 "  c:\n"
                                 "    oneshot: true\n");
    const tend_service_spec *a = service(cfg, "a");
    assert_string_equal(a->argv[0], "a");
    assert_string_equal(a->user, "www");
    assert_false(a->critical);
    assert_string_equal(strv_env_get(a->env, "A"), "da");
    assert_string_equal(strv_env_get(a->env, "B"), "ab");
    assert_string_equal(strv_env_get(a->env, "C"), "ac");
    assert_int_equal(strv_length(a->env), 3);
    assert_int_equal(a->restart.policy, TEND_RESTART_ALWAYS);
    assert_int_equal(a->restart.delay_ms, 3000);
    assert_int_equal(a->restart.max_attempts, 7);
    assert_int_equal(a->stop.signal, SIGINT);
    assert_int_equal(a->stop.timeout_ms, 1000);
    assert_int_equal(a->resources.memory_max, 1u << 30);
    assert_int_equal(a->resources.nofile, 200);
    const tend_service_spec *b = service(cfg, "b");
    assert_string_equal(b->argv[0], "default-cmd");
    assert_string_equal(b->user, "root");
    assert_true(b->critical);
    assert_int_equal(b->restart.delay_ms, 2000);
    assert_int_equal(b->stop.timeout_ms, 20000);
    assert_int_equal(b->resources.nofile, 100);
    assert_int_equal(strv_length(b->env), 2);
    /* A policy from defaults counts as set: oneshot keeps "always". */
    assert_int_equal(service(cfg, "c")->restart.policy, TEND_RESTART_ALWAYS);
    tend_config_free(cfg);
}

static void test_expand(void **state) {
    (void)state;
    setenv("TEND_T_PORT", "9000", 1);
    setenv("TEND_T_EMPTY", "", 1);
    unsetenv("TEND_T_UNSET");
    tend_config *cfg = expect_ok("name: \"${TEND_T_PORT}-$$-${TEND_T_UNSET}-$x\"\n"
                                 "services:\n"
                                 "  a:\n"
                                 "    command: [\"srv\", \"--port=${TEND_T_PORT}\"]\n"
                                 "    env:\n"
                                 "      A: ${TEND_T_UNSET:-fallback}\n"
                                 "      B: ${TEND_T_EMPTY:-empty}\n"
                                 "      C: ${TEND_T_PORT:-no}\n"
                                 "      D: $${TEND_T_PORT}\n"
                                 "    ready: {tcp: \"${TEND_T_PORT}\"}\n"
                                 "    restart: {delay: \"${TEND_T_UNSET:-5s}\"}\n");
    assert_string_equal(cfg->name, "9000-$--$x");
    const tend_service_spec *a = &cfg->services[0];
    assert_string_equal(a->argv[1], "--port=9000");
    assert_string_equal(strv_env_get(a->env, "A"), "fallback");
    assert_string_equal(strv_env_get(a->env, "B"), "empty");
    assert_string_equal(strv_env_get(a->env, "C"), "9000");
    assert_string_equal(strv_env_get(a->env, "D"), "${TEND_T_PORT}");
    assert_int_equal(a->stages[0].probe.port, 9000);
    assert_int_equal(a->restart.delay_ms, 5000);
    tend_config_free(cfg);

    expect_errors("name: \"abc ${HOME\"\n"
                  "store: \"${1X}\"\n",
                  "t.yaml:1:7: name: unterminated \"${\" in \"abc ${HOME\" (use ${VAR} or "
                  "${VAR:-default}; write $$ for a literal $)",
                  "t.yaml:2:8: store: invalid variable reference in \"${1X}\" (use ${VAR} or "
                  "${VAR:-default}; write $$ for a literal $)",
                  NULL);
}

static void test_env_file(void **state) {
    (void)state;
    char path[256];
    write_file("good.env", "# a comment\n"
                           "   \n"
                           "PLAIN=value with spaces   \n"
                           "export EXPORTED=yes\n"
                           "DQ=\"a \\\"quoted\\\" \\n line\"  # trailing\n"
                           "SQ='single # not a comment'\n"
                           "HASH=a#b # comment\n"
                           "EMPTY=\n"
                           "CRLF=x\r\n"
                           "DUP=1\n"
                           "DUP=2\n");
    write_file("bad.env", "OK=1\nnot a pair\n");
    write_file("badq.env", "A=\"open\n");
    snprintf(path, sizeof(path), "%s/tend.yaml", tmpdir);
    const char *y = "services:\n"
                    "  a:\n"
                    "    command: x\n"
                    "    env_file: good.env\n"
                    "    env: {DUP: env}\n";
    tend_config *cfg = NULL;
    char **errors = NULL;
    assert_int_equal(config_load_string(path, y, strlen(y), &cfg, &errors), 0);
    char **env = cfg->services[0].env;
    assert_string_equal(strv_env_get(env, "PLAIN"), "value with spaces");
    assert_string_equal(strv_env_get(env, "EXPORTED"), "yes");
    assert_string_equal(strv_env_get(env, "DQ"), "a \"quoted\" \n line");
    assert_string_equal(strv_env_get(env, "SQ"), "single # not a comment");
    assert_string_equal(strv_env_get(env, "HASH"), "a#b");
    assert_string_equal(strv_env_get(env, "EMPTY"), "");
    assert_string_equal(strv_env_get(env, "CRLF"), "x");
    assert_string_equal(strv_env_get(env, "DUP"), "env");
    assert_int_equal(strv_length(env), 8);
    tend_config_free(cfg);
    cfg = NULL;

    y = "services:\n"
        "  a:\n"
        "    command: x\n"
        "    env_file: bad.env\n"
        "  b:\n"
        "    command: x\n"
        "    env_file: missing.env\n"
        "  c:\n"
        "    command: x\n"
        "    env_file: badq.env\n";
    assert_int_equal(config_load_string(path, y, strlen(y), &cfg, &errors), -EINVAL);
    assert_null(cfg);
    char want[512];
    snprintf(want, sizeof(want), "%s:4:15: services.a.env_file: bad.env:2: expected KEY=VALUE",
             path);
    assert_string_equal(errors[0], want);
    snprintf(want, sizeof(want),
             "%s:7:15: services.b.env_file: cannot read env file \"%s/missing.env\": No such "
             "file or directory", path, tmpdir);
    assert_string_equal(errors[1], want);
    snprintf(want, sizeof(want),
             "%s:10:15: services.c.env_file: badq.env:1: unterminated quoted value", path);
    assert_string_equal(errors[2], want);
    assert_null(errors[3]);
    strv_free(errors);
}

/* ---- errors ------------------------------------------------------------ */

static void test_err_values(void **state) {
    (void)state;
    expect_errors("services:\n"
                  "  a:\n"
                  "    command: [x]\n"
                  "    restart:\n"
                  "      delay: 5x\n"
                  "      jitter: 1.5\n"
                  "      policy: sometimes\n"
                  "      max_attempts: many\n"
                  "    stop: {signal: FOO, timeout: -1s}\n"
                  "    resources: {memory_max: 5Q, nofile: -1}\n"
                  "    critical: maybe\n"
                  "    replicas: 3\n",
                  "t.yaml:5:14: services.a.restart.delay: invalid duration \"5x\" (try 500ms, "
                  "5s, 2m)",
                  "t.yaml:6:15: services.a.restart.jitter: 1.5 is out of range (expected a "
                  "fraction from 0 to 1, e.g. 0.2)",
                  "t.yaml:7:15: services.a.restart.policy: invalid restart policy \"sometimes\" "
                  "(expected no, on-failure, always)",
                  "t.yaml:8:21: services.a.restart.max_attempts: invalid integer \"many\" "
                  "(expected a whole number from 0 to 10000)",
                  "t.yaml:9:20: services.a.stop.signal: invalid signal \"FOO\" (try TERM, INT, "
                  "QUIT, HUP, KILL, USR1 or a number)",
                  "t.yaml:9:34: services.a.stop.timeout: invalid duration \"-1s\" (try 500ms, "
                  "5s, 2m)",
                  "t.yaml:10:29: services.a.resources.memory_max: invalid size \"5Q\" (try "
                  "512K, 10M, 1G)",
                  "t.yaml:10:41: services.a.resources.nofile: -1 is out of range (expected 0 to "
                  "1073741824)",
                  "t.yaml:11:15: services.a.critical: invalid boolean \"maybe\" (expected true "
                  "or false)",
                  "t.yaml:12:15: services.a.replicas: replicas > 1 is not supported yet",
                  NULL);
    expect_errors("services:\n"
                  "  a: {command: x, replicas: 0}\n",
                  "t.yaml:2:29: services.a.replicas: invalid replicas \"0\" (expected 1)", NULL);
}

static void test_err_unknown_keys(void **state) {
    (void)state;
    expect_errors("foo: 1\n"
                  "services:\n"
                  "  a:\n"
                  "    command: x\n"
                  "    comand: y\n"
                  "    restart: {dealy: 1s}\n"
                  "    ready: {tcp: \"1\", initial_delay: 1s}\n"
                  "    live: {tcp: \"2\", timeout: 1s}\n"
                  "api: {port: 1}\n"
                  "tasks: {queues: {q: {handler: pull, retries: 1}}}\n",
                  "t.yaml:1:1: unknown key \"foo\" (expected one of: name, state_dir, api, "
                  "store, log, defaults, services, tasks, sessions, health)",
                  "t.yaml:5:5: services.a: unknown key \"comand\" (expected one of: command, "
                  "cwd, env, env_file, user, critical, oneshot, depends_on, ready, live, "
                  "watchdog, restart, stop, replicas, resources)",
                  "t.yaml:6:15: services.a.restart: unknown key \"dealy\" (expected one of: "
                  "policy, delay, max_delay, jitter, max_attempts, window, reset_after)",
                  "t.yaml:7:23: services.a.ready: unknown key \"initial_delay\" (expected one "
                  "of: name, exec, tcp, http, notify, expect_body, interval, start_interval, "
                  "probe_timeout, failure_threshold, success_threshold, timeout, critical)",
                  "t.yaml:8:22: services.a.live: unknown key \"timeout\" (expected one of: exec, "
                  "tcp, http, notify, expect_body, interval, start_interval, probe_timeout, "
                  "failure_threshold, success_threshold, initial_delay)",
                  "t.yaml:9:7: api: unknown key \"port\" (expected one of: listen, token_file)",
                  "t.yaml:10:37: tasks.queues.q: unknown key \"retries\" (expected one of: "
                  "handler, concurrency, timeout, max_attempts, backoff, rate_limit, "
                  "circuit_breaker, batch, dry_run)",
                  NULL);
}

static void test_err_types(void **state) {
    (void)state;
    expect_errors("services:\n"
                  "  a:\n"
                  "    command: {x: 1}\n"
                  "    restart: [1, 2]\n"
                  "    env: [A=1]\n"
                  "    ready: fast\n"
                  "    live: [x]\n"
                  "    depends_on: db\n"
                  "    stop: {timeout: [1]}\n"
                  "    user: {a: b}\n"
                  "  b: [x]\n"
                  "log: text\n",
                  "t.yaml:3:14: services.a.command: expected a command (a sequence of strings "
                  "or a string), got a mapping",
                  "t.yaml:4:14: services.a.restart: expected a mapping, got a sequence",
                  "t.yaml:5:10: services.a.env: expected a mapping, got a sequence",
                  "t.yaml:6:12: services.a.ready: expected a stage mapping or a sequence of "
                  "them, got a string",
                  "t.yaml:7:11: services.a.live: expected a mapping with one of exec, tcp, "
                  "http, got a sequence",
                  "t.yaml:8:17: services.a.depends_on: expected a mapping (name: "
                  "started|ready|completed) or a sequence of names, got a string",
                  "t.yaml:9:21: services.a.stop.timeout: expected a duration, got a sequence",
                  "t.yaml:10:11: services.a.user: expected a string, got a mapping",
                  "t.yaml:11:6: services.b: expected a mapping, got a sequence",
                  "t.yaml:12:6: log: expected a mapping, got a string",
                  NULL);
    expect_errors("- a\n- b\n",
                  "t.yaml:1:1: expected a mapping at the top level, got a sequence", NULL);
}

static void test_err_services(void **state) {
    (void)state;
    expect_errors("services:\n"
                  "  \"bad name\": {command: x}\n"
                  "  a: {}\n"
                  "  b:\n"
                  "  c: {command: []}\n"
                  "  d: {command: \"\"}\n"
                  "  e: {command: [\"\", x]}\n",
                  "t.yaml:2:3: services: invalid service name \"bad name\" (expected 1-64 "
                  "characters of A-Z a-z 0-9 _ . -)",
                  "t.yaml:3:6: services.a: missing required key \"command\" (e.g. command: "
                  "[\"./bin/server\", \"--port\", \"8080\"])",
                  "t.yaml:4:5: services.b: missing required key \"command\" (e.g. command: "
                  "[\"./bin/server\", \"--port\", \"8080\"])",
                  "t.yaml:5:16: services.c.command: empty command (expected [\"program\", "
                  "\"arg\", ...] or a shell command line)",
                  "t.yaml:6:16: services.d.command: empty command (expected [\"program\", "
                  "\"arg\", ...] or a shell command line)",
                  "t.yaml:7:17: services.e.command[0]: empty program name",
                  NULL);
}

static void test_err_deps(void **state) {
    (void)state;
    expect_errors("services:\n"
                  "  a:\n"
                  "    command: x\n"
                  "    depends_on: {dbx: ready, a: started, b: completed, c: soon}\n"
                  "  b:\n"
                  "    command: x\n"
                  "    depends_on: [a, a, zz]\n"
                  "  c: {command: x, oneshot: true}\n",
                  "t.yaml:4:18: services.a.depends_on: unknown dependency \"dbx\" (services: a, "
                  "b, c)",
                  "t.yaml:4:30: services.a.depends_on: service \"a\" cannot depend on itself",
                  "t.yaml:4:42: services.a.depends_on: \"completed\" requires \"b\" to be a "
                  "oneshot (use ready or started)",
                  "t.yaml:4:59: services.a.depends_on.c: invalid dependency condition \"soon\" "
                  "(expected started, ready, completed)",
                  "t.yaml:7:21: services.b.depends_on[1]: duplicate dependency \"a\"",
                  "t.yaml:7:24: services.b.depends_on: unknown dependency \"zz\" (services: a, "
                  "b, c)",
                  NULL);
}

static void test_err_probes(void **state) {
    (void)state;
    expect_errors("services:\n"
                  "  a:\n"
                  "    command: x\n"
                  "    ready:\n"
                  "      - {name: p, tcp: \"host:99999\"}\n"
                  "      - {http: \"ftp://x\"}\n"
                  "      - {tcp: \"1\", http: \"http://h/\"}\n"
                  "      - {interval: 1s}\n"
                  "      - {name: p, notify: false}\n"
                  "      - {exec: [x], expect_body: ok, failure_threshold: 0}\n"
                  "      - {tcp: \"::1:80\", success_threshold: x}\n"
                  "      - {name: \"a b\", exec: x, timeout: 0}\n"
                  "    live: {notify: true}\n"
                  "    watchdog: 10s\n",
                  "t.yaml:5:24: services.a.ready[0].tcp: invalid tcp address \"host:99999\" "
                  "(try 127.0.0.1:8200, :8200 or 8200)",
                  "t.yaml:6:16: services.a.ready[1].http: invalid http URL \"ftp://x\" "
                  "(expected http://host[:port]/path or https://...)",
                  "t.yaml:7:20: services.a.ready[2].http: only one of exec, tcp, http, notify "
                  "may be given (already have tcp)",
                  "t.yaml:8:9: services.a.ready[3]: missing probe (expected one of: exec, tcp, "
                  "http, notify)",
                  "t.yaml:9:16: services.a.ready[4].name: duplicate stage name \"p\" (already "
                  "used by ready[0])",
                  "t.yaml:9:27: services.a.ready[4].notify: notify must be true (remove the "
                  "stage to disable it)",
                  "t.yaml:10:21: services.a.ready[5].expect_body: expect_body requires an "
                  "http probe",
                  "t.yaml:10:57: services.a.ready[5].failure_threshold: 0 is out of range "
                  "(expected 1 to 1000000)",
                  "t.yaml:11:15: services.a.ready[6].tcp: invalid tcp address \"::1:80\" (try "
                  "127.0.0.1:8200, :8200 or 8200)",
                  "t.yaml:11:44: services.a.ready[6].success_threshold: invalid integer \"x\" "
                  "(expected a whole number from 1 to 1000000)",
                  "t.yaml:12:16: services.a.ready[7].name: invalid stage name \"a b\" "
                  "(expected 1-64 characters of A-Z a-z 0-9 _ . -)",
                  "t.yaml:12:41: services.a.ready[7].timeout: duration \"0\" must be greater "
                  "than 0 (try 500ms, 5s, 2m)",
                  "t.yaml:13:12: services.a.live.notify: liveness probes cannot use notify (use "
                  "exec, tcp or http)",
                  "t.yaml:14:15: services.a.watchdog: watchdog requires a notify readiness "
                  "stage (add `ready: {notify: true}`)",
                  NULL);
}

static void test_probe_addresses(void **state) {
    (void)state;
    tend_config *cfg = expect_ok("services:\n"
                                 "  a:\n"
                                 "    command: x\n"
                                 "    ready:\n"
                                 "      - tcp: \"[::1]:80\"\n"
                                 "      - tcp: \":81\"\n"
                                 "      - tcp: 82\n"
                                 "      - tcp: db.local:83\n"
                                 "      - name: tcp2\n"
                                 "        notify: true\n");
    const tend_service_spec *a = &cfg->services[0];
    assert_string_equal(a->stages[0].probe.host, "::1");
    assert_int_equal(a->stages[0].probe.port, 80);
    assert_string_equal(a->stages[1].probe.host, "127.0.0.1");
    assert_int_equal(a->stages[1].probe.port, 81);
    assert_int_equal(a->stages[2].probe.port, 82);
    assert_string_equal(a->stages[3].probe.host, "db.local");
    /* Generated names skip the explicit "tcp2". */
    assert_string_equal(a->stages[0].name, "tcp");
    assert_string_equal(a->stages[1].name, "tcp3");
    assert_string_equal(a->stages[2].name, "tcp4");
    assert_string_equal(a->stages[3].name, "tcp5");
    assert_string_equal(a->stages[4].name, "tcp2");
    tend_config_free(cfg);
}

static void test_err_ports(void **state) {
    (void)state;
    expect_errors("services:\n"
                  "  a:\n"
                  "    command: x\n"
                  "    ready: [{tcp: \"8200\"}, {http: \"http://127.0.0.1:8200/h\"}]\n"
                  "  b:\n"
                  "    command: x\n"
                  "    ready: {tcp: 9000}\n"
                  "    live: {http: \"http://localhost:8200/\"}\n"
                  "  c:\n"
                  "    command: x\n"
                  "    ready: {tcp: \"other:8200\"}\n"
                  "    live: {http: \"http://127.0.0.1/\"}\n"
                  "  d:\n"
                  "    command: x\n"
                  "    live: {http: \"http://127.0.0.1:80/\"}\n",
                  "t.yaml:8:18: services.b.live.http: port 8200 is also probed by service \"a\"",
                  "t.yaml:15:18: services.d.live.http: port 80 is also probed by service \"c\"",
                  NULL);
}

static void test_err_api(void **state) {
    (void)state;
    expect_errors("api: {listen: \"0.0.0.0:7070\"}\n",
                  "t.yaml:1:15: api.listen: listening on non-loopback address \"0.0.0.0:7070\" "
                  "requires api.token_file",
                  NULL);
    expect_errors("api: {listen: \"7070\"}\nstore: mysql\n",
                  "t.yaml:1:15: api.listen: invalid listen address \"7070\" (try "
                  "127.0.0.1:7070, [::1]:7070, or \"\" to disable TCP)",
                  "t.yaml:2:8: store: invalid store \"mysql\" (expected sqlite or a postgres:// "
                  "URL)",
                  NULL);
    const char *ok[] = {"api: {listen: \"\"}\n", "api: {listen: \"[::1]:1\"}\n",
                        "api: {listen: \"localhost:0\"}\n", "api: {listen: \"127.1.2.3:80\"}\n",
                        "api: {listen: \"0.0.0.0:80\", token_file: tok}\n"};
    for (size_t i = 0; i < ELEMENTSOF(ok); i++)
        tend_config_free(expect_ok(ok[i]));
}

static void test_err_top(void **state) {
    (void)state;
    expect_errors("log: {format: xml, level: loud, max_size: big, max_files: 0}\n"
                  "sessions: {ttl: 0, cleanup_interval: x, max_sessions: 0, persist: 2}\n"
                  "health: {interval: soon}\n"
                  "tasks: {workers: 0, retention: {dead: x}, max_payload: 0}\n"
                  "name: \"\"\n",
                  "t.yaml:1:15: log.format: invalid log format \"xml\" (expected text, json)",
                  "t.yaml:1:27: log.level: invalid log level \"loud\" (expected error, warn, "
                  "notice, info, debug)",
                  "t.yaml:1:43: log.max_size: invalid size \"big\" (try 512K, 10M, 1G)",
                  "t.yaml:1:59: log.max_files: 0 is out of range (expected 1 to 1000)",
                  "t.yaml:2:17: sessions.ttl: duration \"0\" must be greater than 0 (try "
                  "500ms, 5s, 2m)",
                  "t.yaml:2:38: sessions.cleanup_interval: invalid duration \"x\" (try 500ms, "
                  "5s, 2m)",
                  "t.yaml:2:55: sessions.max_sessions: 0 is out of range (expected 1 to "
                  "1000000000)",
                  "t.yaml:2:67: sessions.persist: invalid boolean \"2\" (expected true or "
                  "false)",
                  "t.yaml:3:20: health.interval: invalid duration \"soon\" (try 500ms, 5s, 2m)",
                  "t.yaml:4:18: tasks.workers: 0 is out of range (expected 1 to 100000)",
                  "t.yaml:4:39: tasks.retention.dead: invalid duration \"x\" (try 500ms, 5s, "
                  "2m)",
                  "t.yaml:4:56: tasks.max_payload: max_payload must be greater than 0 (try "
                  "256K, 1M)",
                  "t.yaml:5:7: name: invalid name \"\" (expected 1-255 characters)",
                  NULL);
}

static void test_err_queues(void **state) {
    (void)state;
    expect_errors("tasks:\n"
                  "  queues:\n"
                  "    a: {concurrency: 2}\n"
                  "    b: {handler: push}\n"
                  "    c: {handler: {exec: x, http: \"http://h\"}}\n"
                  "    d: {handler: {http: \"h\"}}\n"
                  "    e: {handler: pull, rate_limit: \"50\"}\n"
                  "    f: {handler: pull, backoff: {jitter: 2}, batch: {size: 0}}\n"
                  "    g: {handler: pull, circuit_breaker: {failure_threshold: 0, open: 1}}\n"
                  "    h: {handler: {pull: false}}\n"
                  "    \"q q\": {handler: pull}\n"
                  "    i: {handler: [pull]}\n"
                  "    j: {handler: pull, dry_run: perhaps}\n",
                  "t.yaml:3:8: tasks.queues.a: missing required key \"handler\" (expected "
                  "{exec: [\"program\", ...]}, {http: URL} or pull)",
                  "t.yaml:4:18: tasks.queues.b.handler: invalid handler \"push\" (expected "
                  "{exec: [\"program\", ...]}, {http: URL} or pull)",
                  "t.yaml:5:28: tasks.queues.c.handler: only one of exec, http, pull may be "
                  "given",
                  "t.yaml:6:25: tasks.queues.d.handler.http: invalid http URL \"h\" (expected "
                  "http://host[:port]/path or https://...)",
                  "t.yaml:7:36: tasks.queues.e.rate_limit: invalid rate \"50\" (try 50/s, "
                  "600/m, 1000/h)",
                  "t.yaml:8:42: tasks.queues.f.backoff.jitter: 2 is out of range (expected a "
                  "fraction from 0 to 1, e.g. 0.2)",
                  "t.yaml:8:60: tasks.queues.f.batch.size: 0 is out of range (expected 1 to "
                  "100000)",
                  "t.yaml:9:61: tasks.queues.g.circuit_breaker.failure_threshold: 0 is out of "
                  "range (expected 1 to 1000000)",
                  "t.yaml:9:64: tasks.queues.g.circuit_breaker: unknown key \"open\" (expected "
                  "one of: failure_threshold, open_for)",
                  "t.yaml:10:25: tasks.queues.h.handler.pull: pull must be true",
                  "t.yaml:11:5: tasks.queues: invalid queue name \"q q\" (expected 1-64 "
                  "characters of A-Z a-z 0-9 _ . -)",
                  "t.yaml:12:18: tasks.queues.i.handler: expected a handler (expected {exec: "
                  "[\"program\", ...]}, {http: URL} or pull), got a sequence",
                  "t.yaml:13:33: tasks.queues.j.dry_run: invalid boolean \"perhaps\" (expected "
                  "true or false)",
                  NULL);
}

static void test_err_yaml(void **state) {
    (void)state;
    expect_errors("services:\n  a: {command: x\n",
                  "t.yaml:3:1: invalid YAML: did not find expected ',' or '}' (while parsing a "
                  "flow mapping at line 2)",
                  NULL);
    expect_errors("a: b: c\n",
                  "t.yaml:1:5: invalid YAML: mapping values are not allowed in this context",
                  NULL);
    expect_errors("name: x\nname: y\nservices:\n  a: {command: x, command: y}\n",
                  "t.yaml:2:1: duplicate key \"name\" (first at line 1)",
                  "t.yaml:4:19: services.a: duplicate key \"command\" (first at line 4)", NULL);
    expect_errors("name: x\n---\nname: y\n",
                  "t.yaml:3:1: only one YAML document is allowed (remove the \"---\" "
                  "separator)",
                  NULL);
    expect_errors("{[a]: 1}\n", "t.yaml:1:2: expected a string key, got a sequence", NULL);
}

/* A mapping of more than 16 keys finds its duplicates by a hash rather
 * than a scan: the same errors, in the same words. */
static void test_err_duplicate_in_long_mapping(void **state) {
    (void)state;
    char yaml[4096] = "services:\n";
    size_t o = strlen(yaml);
    for (int i = 0; i < 20; i++)
        o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "  s%02d: {command: x}\n", i);
    snprintf(yaml + o, sizeof(yaml) - o, "  s07: {command: y}\n  s19: {command: z}\n");
    expect_errors(yaml, "t.yaml:22:3: services: duplicate key \"s07\" (first at line 9)",
                  "t.yaml:23:3: services: duplicate key \"s19\" (first at line 21)", NULL);
}

static void test_err_defaults(void **state) {
    (void)state;
    /* Errors inside defaults are reported once, at the defaults node;
     * whole-service checks are reported per service. */
    expect_errors("defaults:\n"
                  "  restart: {delay: 5x}\n"
                  "  bogus: 1\n"
                  "  watchdog: 5s\n"
                  "services:\n"
                  "  a: {command: x}\n"
                  "  b:\n"
                  "    command: x\n"
                  "    ready: {notify: true}\n"
                  "    restart: {delay: 6y}\n",
                  "t.yaml:2:20: defaults.restart.delay: invalid duration \"5x\" (try 500ms, 5s, "
                  "2m)",
                  "t.yaml:3:3: defaults: unknown key \"bogus\" (expected one of: command, cwd, "
                  "env, env_file, user, critical, oneshot, depends_on, ready, live, watchdog, "
                  "restart, stop, replicas, resources)",
                  "t.yaml:4:13: services.a.watchdog: watchdog requires a notify readiness "
                  "stage (add `ready: {notify: true}`)",
                  "t.yaml:10:22: services.b.restart.delay: invalid duration \"6y\" (try 500ms, "
                  "5s, 2m)",
                  NULL);
    expect_errors("defaults: [1]\nservices: {a: {command: x}}\n",
                  "t.yaml:1:11: defaults: expected a mapping, got a sequence", NULL);
}

static void test_err_many(void **state) {
    (void)state;
    /* All errors of one run, in file order. */
    expect_errors("services:\n"
                  "  web:\n"
                  "    command: [\"./web\"]\n"
                  "    depends_on: {dbx: ready}\n"
                  "    restart:\n"
                  "      delay: 5x\n"
                  "  worker:\n"
                  "    cmd: x\n"
                  "tasks:\n"
                  "  queues:\n"
                  "    email:\n"
                  "      handler: pull\n"
                  "      rate_limit: fast\n",
                  "t.yaml:4:18: services.web.depends_on: unknown dependency \"dbx\" (services: "
                  "web, worker)",
                  "t.yaml:6:14: services.web.restart.delay: invalid duration \"5x\" (try 500ms, "
                  "5s, 2m)",
                  "t.yaml:8:5: services.worker: unknown key \"cmd\" (expected one of: command, "
                  "cwd, env, env_file, user, critical, oneshot, depends_on, ready, live, "
                  "watchdog, restart, stop, replicas, resources)",
                  "t.yaml:8:5: services.worker: missing required key \"command\" (e.g. "
                  "command: [\"./bin/server\", \"--port\", \"8080\"])",
                  "t.yaml:13:19: tasks.queues.email.rate_limit: invalid rate \"fast\" (try "
                  "50/s, 600/m, 1000/h)",
                  NULL);
}

static void test_limits(void **state) {
    (void)state;
    tend_config *cfg = NULL;
    char **errors = NULL;

    /* A billion laughs: aliases share nodes, the walk is capped. */
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "services:\n"
                       "  s:\n"
                       "    command: x\n"
                       "    ready: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    assert_int_equal(load(bomb, &cfg, &errors), -EINVAL);
    assert_non_null(errors);
    assert_null(cfg);
    strv_free(errors);

    /* Deep nesting (libyaml is quadratic in it), many anchors, aliases. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 16);
    assert_non_null(deep);
    strcpy(deep, "services: ");
    memset(deep + 10, '[', depth);
    memset(deep + 10 + depth, ']', depth);
    deep[10 + 2 * depth] = '\0';
    expect_errors(deep, "t.yaml:1:74: nesting is too deep (more than 64 levels)", NULL);
    free(deep);
    char *many = NULL;
    size_t many_len = 0;
    FILE *mf = open_memstream(&many, &many_len);
    assert_non_null(mf);
    fputs("services:\n", mf);
    for (int i = 0; i < 101; i++)
        fprintf(mf, "  s%d: &a%d {command: x}\n", i, i);
    fclose(mf);
    expect_errors(many, "t.yaml:102:9: too many anchors (at most 100)", NULL);
    free(many);
    mf = open_memstream(&many, &many_len);
    assert_non_null(mf);
    fputs("defaults: &d {user: x}\nservices: {a: {command: [", mf);
    for (int i = 0; i < 10001; i++)
        fputs("*d, ", mf);
    fputs("]}}\n", mf);
    fclose(mf);
    expect_errors(many, "t.yaml:2:40026: too many aliases (at most 10000)", NULL);
    free(many);

    /* An alias loop. */
    assert_int_equal(load("services: &s {a: *s}\n", &cfg, &errors), -EINVAL);
    strv_free(errors);

    /* Too large. */
    size_t big = (4u << 20) + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, '#', big);
    text[big] = '\0';
    assert_int_equal(config_load_string("t.yaml", text, big, &cfg, &errors), -EINVAL);
    assert_string_equal(errors[0], "t.yaml: file is too large (more than 4 MiB)");
    strv_free(errors);

    /* A string over 64 KiB. */
    size_t n = 70000;
    memcpy(text, "name: ", 6);
    memset(text + 6, 'x', n);
    text[6 + n] = '\0';
    expect_errors(text, "t.yaml:1:7: name: string is too long (more than 65536 bytes)", NULL);

    /* Too many services. */
    FILE *f = fmemopen(text, big, "w");
    assert_non_null(f);
    fputs("services:\n", f);
    for (int i = 0; i < 1001; i++)
        fprintf(f, "  s%d: {command: x}\n", i);
    fputc('\0', f);
    fclose(f);
    expect_errors(text, "t.yaml:2:3: services: too many services (at most 1000)", NULL);

    /* Errors are capped. */
    f = fmemopen(text, big, "w");
    fputs("services:\n", f);
    for (int i = 0; i < 300; i++)
        fprintf(f, "  s%d: {command: x, stop: {timeout: bad}}\n", i);
    fputc('\0', f);
    fclose(f);
    assert_int_equal(load(text, &cfg, &errors), -EINVAL);
    assert_int_equal(strv_length(errors), 101);
    assert_string_equal(errors[100], "t.yaml: too many errors, stopping");
    strv_free(errors);
    free(text);

    /* Binary garbage and NUL bytes do not crash. */
    const char garbage[] = "a: \"\\0\"\nb: \xff\xfe\n";
    assert_int_equal(config_load_string("t.yaml", garbage, sizeof(garbage) - 1, &cfg, &errors),
                     -EINVAL);
    strv_free(errors);
}

static void test_load_file(void **state) {
    (void)state;
    char path[256];
    tend_config *cfg = NULL;
    char **errors = NULL;
    write_file("file.yaml", "services: {a: {command: x}}\n");
    snprintf(path, sizeof(path), "%s/file.yaml", tmpdir);
    assert_int_equal(config_load(path, &cfg, &errors), 0);
    assert_null(errors);
    assert_string_equal(cfg->services[0].name, "a");
    assert_string_equal(cfg->dir, tmpdir);
    tend_config_free(cfg);
    cfg = NULL;

    snprintf(path, sizeof(path), "%s/nope.yaml", tmpdir);
    assert_int_equal(config_load(path, &cfg, &errors), -ENOENT);
    assert_null(cfg);
    char want[300];
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    assert_string_equal(errors[0], want);
    assert_null(errors[1]);
    strv_free(errors);
}

static void test_err_oneshot_with_stages(void **state) {
    expect_errors("services:\n"
                  "  m:\n"
                  "    oneshot: true\n"
                  "    command: [./migrate]\n"
                  "    ready: {tcp: \":1234\"}\n",
                  "t.yaml:5:12: services.m.ready: a oneshot has no readiness stages (it is `completed` "
                  "when it exits 0; remove `ready` or `oneshot`)",
                  NULL);
}

/* What a message quotes from the file stays on one line, escaped, and
 * bounded (found by fuzz/fuzz-config: a duration with a newline). */
static void test_err_quoted_text(void **state) {
    expect_errors("health: {interval: \"6\\n\\u001b[31mred\\tx\"}\n",
                  "t.yaml:1:20: health.interval: invalid duration \"6\\n\\x1b[31mred\\tx\" "
                  "(try 500ms, 5s, 2m)",
                  NULL);
    expect_errors("health: {\"inter\\nval\": 5s}\n",
                  "t.yaml:1:10: health: unknown key \"inter\\nval\" (expected one of: interval)", NULL);
    /* A huge value: the message is cut, not the whole value echoed. */
    size_t n = 60000; /* under the 64 KiB string limit */
    char *yaml = malloc(n + 64);
    assert_non_null(yaml);
    int k = snprintf(yaml, 64, "health: {interval: \"");
    memset(yaml + k, '7', n);
    snprintf(yaml + k + n, 64, "x\"}\n");
    tend_config *cfg = NULL;
    char **errors = NULL;
    assert_int_equal(load(yaml, &cfg, &errors), -EINVAL);
    assert_non_null(errors);
    assert_non_null(errors[0]);
    assert_true(strlen(errors[0]) <= 1003);
    assert_non_null(strstr(errors[0], "..."));
    assert_null(strchr(errors[0], '\n'));
    strv_free(errors);
    free(yaml);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_defaults_merge),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_env_file),
        cmocka_unit_test(test_err_values),
        cmocka_unit_test(test_err_oneshot_with_stages),
        cmocka_unit_test(test_err_unknown_keys),
        cmocka_unit_test(test_err_types),
        cmocka_unit_test(test_err_services),
        cmocka_unit_test(test_err_deps),
        cmocka_unit_test(test_err_probes),
        cmocka_unit_test(test_probe_addresses),
        cmocka_unit_test(test_err_ports),
        cmocka_unit_test(test_err_api),
        cmocka_unit_test(test_err_top),
        cmocka_unit_test(test_err_queues),
        cmocka_unit_test(test_err_yaml), cmocka_unit_test(test_err_duplicate_in_long_mapping),
        cmocka_unit_test(test_err_defaults),
        cmocka_unit_test(test_err_many),
        cmocka_unit_test(test_err_quoted_text),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
