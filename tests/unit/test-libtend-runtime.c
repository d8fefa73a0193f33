/*
 * test-libtend-runtime.c - the public runtime and components
 * (tend/runtime.h, tend/component.h): lifecycle, dependency order,
 * cleanup of started components when one fails, the shutdown deadline,
 * the scoped helper, and misuse (NULL, double shutdown, calls after
 * shutdown) answered with errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tend.h>
#include <time.h>

/* What the components did, in order: "+a" started, "-a" stopped. */
typedef struct journal {
    pthread_mutex_t lock;
    char text[1024];
} journal;

static void note(journal *j, char sign, const char *name) {
    pthread_mutex_lock(&j->lock);
    size_t len = strlen(j->text);
    snprintf(j->text + len, sizeof(j->text) - len, "%s%c%s", len ? " " : "", sign, name);
    pthread_mutex_unlock(&j->lock);
}

typedef struct comp {
    journal *j;
    const char *name;
    int start_result;
    int stop_sleep_ms;
    int64_t last_timeout;
    int health;
} comp;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int comp_start(tend_runtime *rt, void *data, char *err, size_t err_size) {
    comp *c = data;
    note(c->j, '+', c->name);
    if (c->start_result < 0)
        snprintf(err, err_size, "%s refused to start", c->name);
    return c->start_result;
}

static void comp_stop(tend_runtime *rt, void *data, int64_t timeout_ms) {
    comp *c = data;
    c->last_timeout = timeout_ms;
    if (c->stop_sleep_ms)
        sleep_ms(c->stop_sleep_ms);
    note(c->j, '-', c->name);
}

static int comp_check(void *data, char *msg, size_t size) {
    comp *c = data;
    snprintf(msg, size, "%s looks fine", c->name);
    return c->health;
}

static void add(tend_runtime *rt, comp *c, const char *const *deps, bool critical) {
    tend_component_spec s;
    tend_component_spec_init(&s);
    s.name = c->name;
    s.deps = deps;
    s.critical = critical;
    s.start = comp_start;
    s.stop = comp_stop;
    s.check = comp_check;
    s.data = c;
    assert_int_equal(tend_runtime_add_component(rt, &s), 0);
}

static tend_runtime *new_rt(void) {
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    o.health_interval_ms = 0;
    tend_runtime *rt = NULL;
    assert_int_equal(tend_runtime_new(&o, &rt), 0);
    assert_non_null(rt);
    return rt;
}

static void test_version_and_errors(void **state) {
    assert_string_equal(tend_version(), TEND_VERSION_TEXT);
    assert_string_equal(tend_strerror(-ESHUTDOWN), "The runtime is shutting down");
    assert_non_null(tend_strerror(-12345));
    assert_non_null(tend_strerror(0));
    assert_string_equal(tend_runtime_state_to_string(TEND_RUNTIME_RUNNING), "running");
    assert_null(tend_runtime_state_to_string((tend_runtime_state)99));
    assert_string_equal(tend_component_state_to_string(TEND_COMPONENT_SKIPPED), "skipped");
    assert_null(tend_component_state_to_string((tend_component_state)-1));
}

static void test_misuse_null(void **state) {
    tend_runtime *rt = NULL;
    assert_int_equal(tend_runtime_new(NULL, NULL), -EINVAL);
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    o.shutdown_timeout_ms = -1;
    assert_int_equal(tend_runtime_new(&o, &rt), -EINVAL);
    tend_runtime_options_init(&o);
    o.name = "has space";
    assert_int_equal(tend_runtime_new(&o, &rt), -EINVAL);
    assert_null(rt);
    assert_int_equal(tend_runtime_start(NULL), -EINVAL);
    assert_int_equal(tend_runtime_shutdown(NULL, 10), -EINVAL);
    assert_int_equal(tend_shutdown(NULL, 10), -EINVAL);
    assert_null(tend_runtime_free(NULL));
    assert_int_equal(tend_runtime_get_state(NULL), TEND_RUNTIME_STOPPED);
    assert_int_equal(tend_runtime_add_component(NULL, NULL), -EINVAL);
    assert_int_equal(tend_runtime_component_state(NULL, "x"), -EINVAL);
    assert_int_equal(tend_runtime_component_order(NULL, NULL), -EINVAL);
    assert_int_equal(tend_runtime_error(NULL, NULL, 0), -EINVAL);
    assert_null(tend_runtime_health(NULL));
    tend_component_spec_init(NULL);
    tend_runtime_options_init(NULL);

    rt = new_rt();
    assert_int_equal(tend_runtime_add_component(rt, NULL), -EINVAL);
    tend_component_spec s;
    tend_component_spec_init(&s);
    assert_int_equal(tend_runtime_add_component(rt, &s), -EINVAL); /* no name */
    s.name = "";
    assert_int_equal(tend_runtime_add_component(rt, &s), -EINVAL);
    s.name = "bad/name";
    assert_int_equal(tend_runtime_add_component(rt, &s), -EINVAL);
    s.name = "ok";
    const char *bad_deps[] = {"fine", "not fine", NULL};
    s.deps = bad_deps;
    assert_int_equal(tend_runtime_add_component(rt, &s), -EINVAL);
    const char *many[TEND_COMPONENT_DEPS_MAX + 2];
    for (int i = 0; i <= TEND_COMPONENT_DEPS_MAX; i++)
        many[i] = "x";
    many[TEND_COMPONENT_DEPS_MAX + 1] = NULL;
    s.deps = many;
    assert_int_equal(tend_runtime_add_component(rt, &s), -EINVAL);
    s.deps = NULL;
    s.check_timeout_ms = -1;
    assert_int_equal(tend_runtime_add_component(rt, &s), -EINVAL);
    s.check_timeout_ms = 0;
    assert_int_equal(tend_runtime_add_component(rt, &s), 0);
    assert_int_equal(tend_runtime_add_component(rt, &s), -EEXIST);
    assert_int_equal(tend_runtime_component_state(rt, NULL), -EINVAL);
    assert_int_equal(tend_runtime_component_state(rt, "nope"), -ENOENT);
    assert_int_equal(tend_runtime_component_state(rt, "ok"), TEND_COMPONENT_REGISTERED);
    assert_int_equal(tend_runtime_shutdown(rt, -1), -EINVAL);
    char buf[8];
    assert_int_equal(tend_runtime_error(rt, NULL, 8), -EINVAL);
    assert_int_equal(tend_runtime_error(rt, buf, sizeof(buf)), 0);
    assert_null(tend_runtime_free(rt));
}

static void test_lifecycle_twice(void **state) {
    tend_runtime *rt = new_rt();
    assert_int_equal(tend_runtime_get_state(rt), TEND_RUNTIME_CREATED);
    assert_int_equal(tend_runtime_start(rt), 0);
    assert_int_equal(tend_runtime_get_state(rt), TEND_RUNTIME_RUNNING);
    assert_int_equal(tend_runtime_start(rt), -EALREADY);
    tend_component_spec s;
    tend_component_spec_init(&s);
    s.name = "late";
    assert_int_equal(tend_runtime_add_component(rt, &s), -EBUSY);
    assert_int_equal(tend_runtime_shutdown(rt, 1000), 0);
    assert_int_equal(tend_runtime_get_state(rt), TEND_RUNTIME_STOPPED);
    /* Double shutdown, start and calls after shutdown: errors, no crash. */
    assert_int_equal(tend_runtime_shutdown(rt, 1000), -EALREADY);
    assert_int_equal(tend_shutdown(rt, 1000), -EALREADY);
    assert_int_equal(tend_runtime_start(rt), -EALREADY);
    assert_int_equal(tend_runtime_add_component(rt, &s), -EBUSY);
    tend_health_report *rep = NULL;
    assert_int_equal(tend_health_run(tend_runtime_health(rt), &rep), -ESHUTDOWN);
    assert_null(rep);
    tend_runtime_free(rt);

    /* Shut down without ever starting; free without shutting down. */
    rt = new_rt();
    assert_int_equal(tend_runtime_shutdown(rt, 0), 0);
    tend_runtime_free(rt);
    rt = new_rt();
    tend_runtime_free(rt);
}

static void test_dependency_order(void **state) {
    journal j = {PTHREAD_MUTEX_INITIALIZER, ""};
    comp db = {&j, "db", 0, 0, 0, 0}, cache = {&j, "cache", 0, 0, 0, 0}, api = {&j, "api", 0, 0, 0, 0},
         web = {&j, "web", 0, 0, 0, 0};
    tend_runtime *rt = new_rt();
    const char *api_deps[] = {"db", "cache", NULL};
    const char *web_deps[] = {"api", NULL};
    /* Registered dependents first: the order must still be db, cache, api, web. */
    add(rt, &web, web_deps, true);
    add(rt, &api, api_deps, true);
    add(rt, &db, NULL, true);
    add(rt, &cache, NULL, true);
    char **names;
    assert_int_equal(tend_runtime_component_order(rt, &names), 4);
    assert_string_equal(names[0], "db");
    assert_string_equal(names[1], "cache");
    assert_string_equal(names[2], "api");
    assert_string_equal(names[3], "web");
    assert_null(names[4]);
    free(names);
    assert_int_equal(tend_runtime_start(rt), 0);
    assert_string_equal(j.text, "+db +cache +api +web");
    assert_int_equal(tend_runtime_component_state(rt, "web"), TEND_COMPONENT_STARTED);
    assert_int_equal(tend_runtime_shutdown(rt, 5000), 0);
    assert_string_equal(j.text, "+db +cache +api +web -web -api -cache -db");
    assert_int_equal(tend_runtime_component_state(rt, "db"), TEND_COMPONENT_STOPPED);
    assert_true(db.last_timeout > 0 && db.last_timeout <= 5000);
    tend_runtime_free(rt);
}

static void test_unknown_dep_and_cycle(void **state) {
    journal j = {PTHREAD_MUTEX_INITIALIZER, ""};
    comp a = {&j, "a", 0, 0, 0, 0}, b = {&j, "b", 0, 0, 0, 0}, c = {&j, "c", 0, 0, 0, 0};
    tend_runtime *rt = new_rt();
    const char *a_deps[] = {"ghost", NULL};
    add(rt, &a, a_deps, true);
    assert_int_equal(tend_runtime_start(rt), -ENOENT);
    char err[256];
    assert_true(tend_runtime_error(rt, err, sizeof(err)) > 0);
    assert_non_null(strstr(err, "unknown dependency \"ghost\""));
    assert_string_equal(j.text, "");
    tend_runtime_free(rt);

    rt = new_rt();
    const char *ad[] = {"c", NULL}, *bd[] = {"a", NULL}, *cd[] = {"b", NULL};
    add(rt, &a, ad, true);
    add(rt, &b, bd, true);
    add(rt, &c, cd, true);
    char **names = NULL;
    assert_int_equal(tend_runtime_component_order(rt, &names), -ELOOP);
    assert_null(names);
    assert_int_equal(tend_runtime_start(rt), -ELOOP);
    tend_runtime_error(rt, err, sizeof(err));
    assert_string_equal(err, "dependency cycle: a -> c -> b -> a");
    assert_string_equal(j.text, "");
    assert_int_equal(tend_runtime_shutdown(rt, 100), 0);
    tend_runtime_free(rt);

    rt = new_rt();
    const char *self[] = {"a", NULL};
    add(rt, &a, self, true);
    assert_int_equal(tend_runtime_start(rt), -ELOOP);
    tend_runtime_free(rt);
}

static void test_failure_cleans_up_started(void **state) {
    journal j = {PTHREAD_MUTEX_INITIALIZER, ""};
    comp a = {&j, "a", 0, 0, 0, 0}, b = {&j, "b", 0, 0, 0, 0}, c = {&j, "c", -ECONNREFUSED, 0, 0, 0},
         d = {&j, "d", 0, 0, 0, 0};
    tend_runtime *rt = new_rt();
    const char *bd[] = {"a", NULL}, *cd[] = {"b", NULL}, *dd[] = {"c", NULL};
    add(rt, &a, NULL, true);
    add(rt, &b, bd, true);
    add(rt, &c, cd, true);
    add(rt, &d, dd, true);
    assert_int_equal(tend_runtime_start(rt), -ECONNREFUSED);
    /* c failed: b and a are stopped, newest first; c is not stopped, d never started. */
    assert_string_equal(j.text, "+a +b +c -b -a");
    assert_int_equal(tend_runtime_component_state(rt, "c"), TEND_COMPONENT_FAILED);
    assert_int_equal(tend_runtime_component_state(rt, "d"), TEND_COMPONENT_REGISTERED);
    assert_int_equal(tend_runtime_component_state(rt, "a"), TEND_COMPONENT_STOPPED);
    assert_int_equal(tend_runtime_get_state(rt), TEND_RUNTIME_STOPPED);
    char err[256];
    tend_runtime_error(rt, err, sizeof(err));
    assert_string_equal(err, "component c: start: c refused to start");
    /* A failed start has cleaned up: shutdown is a no-op, once. */
    assert_int_equal(tend_runtime_shutdown(rt, 100), 0);
    assert_int_equal(tend_runtime_shutdown(rt, 100), -EALREADY);
    assert_string_equal(j.text, "+a +b +c -b -a");
    tend_runtime_free(rt);
}

static void test_non_critical_failure_skips_dependents(void **state) {
    journal j = {PTHREAD_MUTEX_INITIALIZER, ""};
    comp a = {&j, "a", 0, 0, 0, 0}, metrics = {&j, "metrics", -EIO, 0, 0, 0}, dash = {&j, "dash", 0, 0, 0, 0},
         api = {&j, "api", 0, 0, 0, 0};
    tend_runtime *rt = new_rt();
    const char *dd[] = {"metrics", NULL}, *ad[] = {"a", NULL};
    add(rt, &a, NULL, true);
    add(rt, &metrics, NULL, false);
    add(rt, &dash, dd, true);
    add(rt, &api, ad, true);
    assert_int_equal(tend_runtime_start(rt), 0);
    assert_string_equal(j.text, "+a +metrics +api");
    assert_int_equal(tend_runtime_component_state(rt, "metrics"), TEND_COMPONENT_FAILED);
    assert_int_equal(tend_runtime_component_state(rt, "dash"), TEND_COMPONENT_SKIPPED);
    char err[256];
    assert_true(tend_runtime_error(rt, err, sizeof(err)) > 0);
    assert_non_null(strstr(err, "metrics"));
    assert_int_equal(tend_runtime_shutdown(rt, 1000), 0);
    assert_string_equal(j.text, "+a +metrics +api -api -a");
    tend_runtime_free(rt);
}

static void test_shutdown_deadline(void **state) {
    journal j = {PTHREAD_MUTEX_INITIALIZER, ""};
    comp a = {&j, "a", 0, 0, 0, 0}, slow = {&j, "slow", 0, 300, 0, 0};
    tend_runtime *rt = new_rt();
    const char *sd[] = {"a", NULL};
    add(rt, &a, NULL, true);
    add(rt, &slow, sd, true);
    assert_int_equal(tend_runtime_start(rt), 0);
    assert_int_equal(tend_runtime_shutdown(rt, 50), -ETIMEDOUT);
    /* Past the deadline the rest is still stopped, told it has 0 ms. */
    assert_string_equal(j.text, "+a +slow -slow -a");
    assert_int_equal(a.last_timeout, 0);
    tend_runtime_free(rt);
}

static void test_free_shuts_down(void **state) {
    journal j = {PTHREAD_MUTEX_INITIALIZER, ""};
    comp a = {&j, "a", 0, 0, 0, 0};
    tend_runtime *rt = new_rt();
    add(rt, &a, NULL, true);
    assert_int_equal(tend_runtime_start(rt), 0);
    tend_runtime_free(rt);
    assert_string_equal(j.text, "+a -a");
}

static void test_component_check_in_health(void **state) {
    journal j = {PTHREAD_MUTEX_INITIALIZER, ""};
    comp db = {&j, "db", 0, 0, 0, TEND_HEALTH_DEGRADED};
    tend_runtime *rt = new_rt();
    add(rt, &db, NULL, true);
    tend_health_report *r;
    /* Not started: no check yet. */
    assert_int_equal(tend_health_run(tend_runtime_health(rt), &r), 0);
    assert_int_equal(tend_health_report_count(r), 1);
    tend_health_report_free(r);
    assert_int_equal(tend_runtime_start(rt), 0);
    assert_int_equal(tend_health_run(tend_runtime_health(rt), &r), 0);
    tend_health_entry e;
    assert_int_equal(tend_health_report_find(r, "db", &e), 0);
    assert_int_equal(e.status, TEND_HEALTH_DEGRADED);
    assert_string_equal(e.message, "db looks fine");
    assert_int_equal(tend_health_report_status(r), TEND_HEALTH_DEGRADED);
    tend_health_report_free(r);
    tend_runtime_free(rt);
}

/* ---- The scoped helper ---- */

typedef struct scope {
    journal j;
    comp a, b;
    int setup_result, body_result;
    bool body_ran;
} scope;

static int scope_setup(tend_runtime *rt, void *data) {
    scope *s = data;
    add(rt, &s->a, NULL, true);
    const char *bd[] = {"a", NULL};
    add(rt, &s->b, bd, true);
    return s->setup_result;
}

static int scope_body(tend_runtime *rt, void *data) {
    scope *s = data;
    s->body_ran = true;
    assert_int_equal(tend_runtime_get_state(rt), TEND_RUNTIME_RUNNING);
    return s->body_result;
}

static void test_scoped_run(void **state) {
    scope s = {.j = {PTHREAD_MUTEX_INITIALIZER, ""}};
    s.a = (comp){&s.j, "a", 0, 0, 0, 0};
    s.b = (comp){&s.j, "b", 0, 0, 0, 0};
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    o.health_interval_ms = 0;
    assert_int_equal(tend_runtime_run(&o, scope_setup, scope_body, &s), 0);
    assert_true(s.body_ran);
    assert_string_equal(s.j.text, "+a +b -b -a");

    /* A failing body still shuts everything down; its error comes back. */
    s.j.text[0] = '\0';
    s.body_result = -EPIPE;
    assert_int_equal(tend_runtime_run(&o, scope_setup, scope_body, &s), -EPIPE);
    assert_string_equal(s.j.text, "+a +b -b -a");
    s.body_result = 7; /* positive: passed through */
    s.j.text[0] = '\0';
    assert_int_equal(tend_runtime_run(&o, scope_setup, scope_body, &s), 7);

    /* A failing start: the body never runs; what started is stopped. */
    s.j.text[0] = '\0';
    s.body_ran = false;
    s.body_result = 0;
    s.b.start_result = -ENODEV;
    assert_int_equal(tend_runtime_run(&o, scope_setup, scope_body, &s), -ENODEV);
    assert_false(s.body_ran);
    assert_string_equal(s.j.text, "+a +b -a");

    s.setup_result = -EINVAL;
    s.j.text[0] = '\0';
    assert_int_equal(tend_runtime_run(&o, scope_setup, scope_body, &s), -EINVAL);
    assert_string_equal(s.j.text, "");
    assert_int_equal(tend_runtime_run(&o, NULL, NULL, NULL), 0);
}

/* ---- Threads ---- */

typedef struct racer {
    tend_runtime *rt;
    int errors;
} racer;

static void *race_shutdown(void *arg) {
    racer *r = arg;
    int v = tend_runtime_shutdown(r->rt, 2000);
    if (v != 0 && v != -EALREADY) {
        fprintf(stderr, "shutdown: %d\n", v);
        r->errors++;
    }
    return (void *)(intptr_t)(v == 0);
}

static void test_concurrent_shutdown(void **state) {
    tend_runtime *rt = new_rt();
    assert_int_equal(tend_runtime_start(rt), 0);
    pthread_t t[4];
    racer r[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (racer){rt, 0};
        pthread_create(&t[i], NULL, race_shutdown, &r[i]);
    }
    int winners = 0;
    for (int i = 0; i < 4; i++) {
        void *v;
        pthread_join(t[i], &v);
        winners += (int)(intptr_t)v;
        assert_int_equal(r[i].errors, 0);
    }
    assert_int_equal(winners, 1);
    tend_runtime_free(rt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_errors),
        cmocka_unit_test(test_misuse_null),
        cmocka_unit_test(test_lifecycle_twice),
        cmocka_unit_test(test_dependency_order),
        cmocka_unit_test(test_unknown_dep_and_cycle),
        cmocka_unit_test(test_failure_cleans_up_started),
        cmocka_unit_test(test_non_critical_failure_skips_dependents),
        cmocka_unit_test(test_shutdown_deadline),
        cmocka_unit_test(test_free_shuts_down),
        cmocka_unit_test(test_component_check_in_health),
        cmocka_unit_test(test_scoped_run),
        cmocka_unit_test(test_concurrent_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
