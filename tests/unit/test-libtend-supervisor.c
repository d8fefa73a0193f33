/*
 * test-libtend-supervisor.c - the public supervisor (tend/supervisor.h)
 * over real child processes: start in dependency order, wait for the
 * startup, service info and manual actions, stop, a failed startup, one
 * supervisor per process, and misuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tend/tend.h>
#include <unistd.h>

static char tmpdir[64];

static char **argv_of(const char *a, const char *b) {
    char **v = calloc(3, sizeof(char *));
    v[0] = strdup(a);
    v[1] = b ? strdup(b) : NULL;
    return v;
}

/* A config of "db" (sleep) and "api" (sleep, needs db ready); bad_api: api's
 * command does not exist. */
static tend_config *make_cfg(bool bad_api) {
    /* A state directory per supervisor, so that one test's leftovers
     * never meet the next one's. */
    static int seq;
    tend_config *c = calloc(1, sizeof(*c));
    tend_config_init(c);
    c->dir = strdup(tmpdir);
    char sd[128];
    snprintf(sd, sizeof(sd), "%s/state%d", tmpdir, seq++);
    c->state_dir = strdup(sd);
    c->n_services = 2;
    c->services = calloc(2, sizeof(tend_service_spec));
    tend_service_spec *db = &c->services[0], *api = &c->services[1];
    tend_service_spec_init(db);
    tend_service_spec_init(api);
    db->name = strdup("db");
    db->argv = argv_of("sleep", "30");
    api->name = strdup("api");
    api->argv = bad_api ? argv_of("/nonexistent/tend-test-binary", NULL) : argv_of("sleep", "30");
    api->restart.policy = TEND_RESTART_NO;
    api->n_deps = 1;
    api->deps = calloc(1, sizeof(tend_dep_spec));
    api->deps[0].name = strdup("db");
    api->deps[0].condition = TEND_DEP_READY;
    return c;
}

typedef struct events {
    pthread_mutex_t lock;
    char text[2048];
} events;

static void on_state(void *data, const char *svc, tend_service_state from, tend_service_state to,
                     const char *reason) {
    events *e = data;
    pthread_mutex_lock(&e->lock);
    size_t len = strlen(e->text);
    snprintf(e->text + len, sizeof(e->text) - len, "%s:%s ", svc, tend_service_state_to_string(to));
    pthread_mutex_unlock(&e->lock);
}

static int setup(void **state) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-libtend-sup-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_start_info_stop(void **state) {
    tend_config *cfg = make_cfg(false);
    events ev = {PTHREAD_MUTEX_INITIALIZER, ""};
    tend_supervisor_options o;
    tend_supervisor_options_init(&o);
    o.data = &ev;
    o.state_changed = on_state;
    tend_supervisor *sup;
    assert_int_equal(tend_supervisor_new(cfg, &o, &sup), 0);
    /* One per process. */
    tend_supervisor *other = NULL;
    assert_int_equal(tend_supervisor_new(cfg, &o, &other), -EBUSY);
    assert_null(other);

    assert_int_equal(tend_supervisor_wait_started(sup, 100), -EINVAL); /* not started */
    assert_int_equal(tend_supervisor_start(sup), 0);
    assert_int_equal(tend_supervisor_start(sup), -EALREADY);
    assert_int_equal(tend_supervisor_wait_started(sup, 20000), 0);
    tend_service_info info;
    assert_int_equal(tend_supervisor_service_info(sup, "api", &info), 0);
    assert_int_equal(info.state, TEND_SERVICE_READY);
    assert_true(info.pid > 0);
    assert_int_equal(kill(info.pid, 0), 0);
    pid_t api_pid = info.pid;
    assert_int_equal(tend_supervisor_service_info(sup, "nope", &info), -ENOENT);
    assert_int_equal(tend_supervisor_service_info(sup, NULL, &info), -EINVAL);
    assert_int_equal(tend_supervisor_service_info(sup, "db", NULL), -EINVAL);
    /* db became ready before api started. */
    pthread_mutex_lock(&ev.lock);
    char *db_ready = strstr(ev.text, "db:ready"), *api_start = strstr(ev.text, "api:starting");
    assert_non_null(db_ready);
    assert_non_null(api_start);
    assert_true(db_ready < api_start);
    pthread_mutex_unlock(&ev.lock);

    assert_int_equal(tend_supervisor_service_start(sup, "db"), -EBUSY); /* running */
    assert_int_equal(tend_supervisor_service_stop(sup, "api"), 0);
    assert_int_equal(tend_supervisor_service_restart(sup, "nope"), -ENOENT);

    assert_int_equal(tend_supervisor_stop(sup, 10000), 0);
    assert_int_equal(tend_supervisor_stop(sup, 10000), -EALREADY);
    assert_int_equal(tend_supervisor_start(sup), -ESHUTDOWN);
    assert_int_equal(tend_supervisor_service_info(sup, "db", &info), 0);
    assert_int_equal(info.state, TEND_SERVICE_STOPPED);
    assert_int_equal(info.pid, 0);
    assert_true(kill(api_pid, 0) < 0);
    char err[64];
    assert_int_equal(tend_supervisor_error(sup, err, sizeof(err)), 0);
    assert_null(tend_supervisor_free(sup));
    tend_config_free(cfg);
}

static void test_failed_startup(void **state) {
    tend_config *cfg = make_cfg(true);
    tend_supervisor *sup;
    assert_int_equal(tend_supervisor_new(cfg, NULL, &sup), 0);
    assert_int_equal(tend_supervisor_start(sup), 0);
    assert_int_equal(tend_supervisor_wait_started(sup, 20000), -ECANCELED);
    char err[256];
    assert_true(tend_supervisor_error(sup, err, sizeof(err)) > 0);
    assert_non_null(strstr(err, "api"));
    /* free without stop: it stops (the startup failure already did). */
    tend_supervisor_free(sup);
    tend_config_free(cfg);
}

static void test_free_without_start(void **state) {
    tend_config *cfg = make_cfg(false);
    tend_supervisor *sup;
    assert_int_equal(tend_supervisor_new(cfg, NULL, &sup), 0);
    tend_supervisor_free(sup);
    tend_config_free(cfg);
    /* The slot is free again. */
    cfg = make_cfg(false);
    assert_int_equal(tend_supervisor_new(cfg, NULL, &sup), 0);
    assert_int_equal(tend_supervisor_stop(sup, 1000), 0);
    tend_supervisor_free(sup);
    tend_config_free(cfg);
}

static void log_cb(void *data, int level, const char *svc, const char *msg) {
    snprintf(data, 256, "%s", msg);
}

static void test_misuse(void **state) {
    tend_supervisor *sup = NULL;
    assert_int_equal(tend_supervisor_new(NULL, NULL, &sup), -EINVAL);
    tend_config *cfg = make_cfg(false);
    assert_int_equal(tend_supervisor_new(cfg, NULL, NULL), -EINVAL);
    free(cfg->state_dir);
    cfg->state_dir = strdup("relative/dir");
    assert_int_equal(tend_supervisor_new(cfg, NULL, &sup), -EINVAL);
    free(cfg->state_dir);
    char sd[128];
    snprintf(sd, sizeof(sd), "%s/state-misuse", tmpdir);
    cfg->state_dir = strdup(sd);
    char **argv = cfg->services[1].argv;
    cfg->services[1].argv = NULL;
    assert_int_equal(tend_supervisor_new(cfg, NULL, &sup), -EINVAL);
    cfg->services[1].argv = argv;
    /* An unknown dependency: the engine refuses, the log says why. */
    free(cfg->services[1].deps[0].name);
    cfg->services[1].deps[0].name = strdup("ghost");
    char msg[256] = "";
    tend_supervisor_options o;
    tend_supervisor_options_init(&o);
    o.log = log_cb;
    o.data = msg;
    assert_true(tend_supervisor_new(cfg, &o, &sup) < 0);
    assert_non_null(strstr(msg, "ghost"));
    assert_null(sup);
    tend_supervisor_options_init(NULL);
    assert_int_equal(tend_supervisor_start(NULL), -EINVAL);
    assert_int_equal(tend_supervisor_wait_started(NULL, 0), -EINVAL);
    assert_int_equal(tend_supervisor_stop(NULL, 0), -EINVAL);
    assert_null(tend_supervisor_free(NULL));
    assert_int_equal(tend_supervisor_service_start(NULL, "x"), -EINVAL);
    assert_int_equal(tend_supervisor_error(NULL, NULL, 0), -EINVAL);
    assert_string_equal(tend_service_state_to_string(TEND_SERVICE_BACKOFF), "backoff");
    assert_null(tend_service_state_to_string((tend_service_state)77));
    assert_string_equal(tend_service_health_to_string(TEND_SERVICE_HEALTH_DEGRADED), "degraded");
    assert_null(tend_service_health_to_string((tend_service_health)9));
    tend_config_free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_info_stop),
        cmocka_unit_test(test_failed_startup),
        cmocka_unit_test(test_free_without_start),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
