/*
 * startup.c - the reference system's usage example, in C: a program's
 * startup and shutdown with libtend.
 *
 * What the Python reference did with init_startup_tasks() and
 * shutdown_startup_tasks(): start a task manager, a session store, a
 * batch processor and a health monitor, plus the program's own parts (a
 * database pool and an API that needs everything else), in dependency
 * order; use them; stop everything in reverse order within a deadline.
 * Here the scoped form, tend_runtime_run(), does the bracketing: setup()
 * registers the parts, body() is the program, and shutdown happens
 * whatever body returns.
 *
 * Build against the installed library:
 *   cc startup.c -o startup $(pkg-config --cflags --libs tend)
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tend.h>

typedef struct app {
    tend_tasks *tasks;
    tend_sessions *sessions;
    atomic_int emails_sent;
    atomic_int events_stored;
    atomic_int batches;
    int db_connections;
} app;

/* ---- The program's own components ---- */

static int db_start(tend_runtime *rt, void *data, char *err, size_t err_size) {
    app *a = data;
    a->db_connections = 4; /* a real program would connect here, and may block */
    printf("database: pool of %d connections\n", a->db_connections);
    return 0;
}

static void db_stop(tend_runtime *rt, void *data, int64_t timeout_ms) {
    app *a = data;
    printf("database: closing %d connections (%lld ms left)\n", a->db_connections, (long long)timeout_ms);
    a->db_connections = 0;
}

static int db_check(void *data, char *msg, size_t size) {
    app *a = data;
    snprintf(msg, size, "%d connections", a->db_connections);
    return a->db_connections > 0 ? TEND_HEALTH_HEALTHY : TEND_HEALTH_UNHEALTHY;
}

static int api_start(tend_runtime *rt, void *data, char *err, size_t err_size) {
    puts("api: listening (tasks, sessions and the database are up)");
    return 0;
}

static void api_stop(tend_runtime *rt, void *data, int64_t timeout_ms) { puts("api: stopped accepting requests"); }

/* A non-critical check: its failure degrades the system, it does not fail it. */
static int cache_check(void *data, char *msg, size_t size) {
    snprintf(msg, size, "cache hit rate 41%% (below 50%%)");
    return TEND_HEALTH_DEGRADED;
}

/* ---- Task functions (run on the task manager's worker threads) ---- */

static int send_email(tend_task_ctx *ctx, void *data) {
    app *a = data;
    size_t len;
    const char *payload = tend_task_payload(ctx, 0, &len);
    if (!strstr(payload, "\"to\""))
        return TEND_TASK_PERMANENT; /* bad input: no point retrying */
    atomic_fetch_add(&a->emails_sent, 1);
    return 0;
}

/* The batch processor: up to batch_size events at once. */
static int store_events(tend_task_ctx *ctx, void *data) {
    app *a = data;
    atomic_fetch_add(&a->events_stored, (int)tend_task_count(ctx));
    atomic_fetch_add(&a->batches, 1);
    return 0;
}

/* ---- init_startup_tasks() ---- */

static int setup(tend_runtime *rt, void *data) {
    app *a = data;
    int r;
    /* The task manager and its queues. */
    if ((r = tend_tasks_new(rt, NULL, &a->tasks)) < 0)
        return r;
    tend_queue_options q;
    tend_queue_options_init(&q);
    q.name = "email";
    q.fn = send_email;
    q.data = a;
    q.concurrency = 4;
    q.max_attempts = 5;
    q.breaker_failure_threshold = 10;
    if ((r = tend_tasks_add_queue(a->tasks, &q)) < 0)
        return r;
    /* The batch processor: a batch queue. */
    tend_queue_options_init(&q);
    q.name = "events";
    q.fn = store_events;
    q.data = a;
    q.batch = true;
    q.batch_size = 25;
    q.batch_max_wait_ms = 100;
    if ((r = tend_tasks_add_queue(a->tasks, &q)) < 0)
        return r;
    /* The session store. */
    tend_sessions_options so;
    tend_sessions_options_init(&so);
    so.ttl_ms = 30 * 60 * 1000;
    if ((r = tend_sessions_new(rt, &so, &a->sessions)) < 0)
        return r;
    /* The program's components: api needs everything else. */
    tend_component_spec c;
    tend_component_spec_init(&c);
    c.name = "database";
    c.start = db_start;
    c.stop = db_stop;
    c.check = db_check;
    c.data = a;
    if ((r = tend_runtime_add_component(rt, &c)) < 0)
        return r;
    static const char *const api_deps[] = {"database", "tasks", "sessions", NULL};
    tend_component_spec_init(&c);
    c.name = "api";
    c.deps = api_deps;
    c.start = api_start;
    c.stop = api_stop;
    c.data = a;
    if ((r = tend_runtime_add_component(rt, &c)) < 0)
        return r;
    /* The health monitor: one extra, non-critical check. */
    tend_health_check_spec hc;
    tend_health_check_spec_init(&hc);
    hc.name = "storage/cache";
    hc.fn = cache_check;
    hc.critical = false;
    return tend_health_add_check(tend_runtime_health(rt), &hc);
}

/* ---- The program ---- */

static int body(tend_runtime *rt, void *data) {
    app *a = data;
    char **order;
    int n = tend_runtime_component_order(rt, &order);
    if (n < 0)
        return n;
    printf("started in order:");
    for (int i = 0; i < n; i++)
        printf(" %s", order[i]);
    printf("\n");
    free(order);

    /* Sessions. */
    int r = tend_sessions_set(a->sessions, "session:42", "{\"user\":\"ada\",\"cart\":[1,2]}", 0);
    if (r < 0)
        return r;
    char *value;
    if ((r = tend_sessions_get(a->sessions, "session:42", &value)) < 0)
        return r;
    printf("session:42 = %s\n", value);
    free(value);

    /* Tasks: ten emails (one of them bad), a hundred events in batches. */
    for (int i = 0; i < 10; i++) {
        char payload[64];
        snprintf(payload, sizeof(payload), i == 3 ? "{\"oops\":%d}" : "{\"to\":\"user%d@example.com\"}", i);
        tend_task_options o;
        tend_task_options_init(&o);
        o.priority = i < 2 ? TEND_PRIORITY_HIGH : TEND_PRIORITY_NORMAL;
        if ((r = tend_tasks_submit(a->tasks, "email", payload, &o, NULL)) < 0)
            return r;
    }
    for (int i = 0; i < 100; i++) {
        char payload[32];
        snprintf(payload, sizeof(payload), "{\"event\":%d}", i);
        if ((r = tend_tasks_submit(a->tasks, "events", payload, NULL, NULL)) < 0)
            return r;
    }
    if ((r = tend_tasks_wait_idle(a->tasks, 30000)) < 0)
        return r;
    tend_tasks_stats st;
    if ((r = tend_tasks_get_stats(a->tasks, &st)) < 0)
        return r;
    printf("tasks: %llu submitted, %llu processed, %llu dead, success rate %.2f\n",
           (unsigned long long)st.submitted, (unsigned long long)st.total_processed,
           (unsigned long long)st.dead, st.success_rate);
    printf("emails sent: %d, events stored: %d in %d batches\n", atomic_load(&a->emails_sent),
           atomic_load(&a->events_stored), atomic_load(&a->batches));

    /* Health: every check in parallel, then the tree as JSON. */
    tend_health_report *h;
    if ((r = tend_health_run(tend_runtime_health(rt), &h)) < 0)
        return r;
    char *json;
    if ((r = tend_health_report_json(h, &json)) == 0) {
        printf("health: %s\n%s\n", tend_health_status_to_string(tend_health_report_status(h)), json);
        free(json);
    }
    tend_health_status status = tend_health_report_status(h);
    tend_health_report_free(h);
    if (r < 0)
        return r;

    /* What this example promises: everything ran, the bad email is dead,
     * the system is degraded (the cache), not unhealthy. */
    if (atomic_load(&a->emails_sent) != 9 || atomic_load(&a->events_stored) != 100 || st.dead != 1 ||
        status != TEND_HEALTH_DEGRADED) {
        fprintf(stderr, "unexpected results\n");
        return -EPROTO;
    }
    return 0;
}

int main(void) {
    app a = {0};
    tend_runtime_options o;
    tend_runtime_options_init(&o);
    o.name = "shop";
    o.shutdown_timeout_ms = 10000;
    /* new + setup + start, body, then shutdown_startup_tasks() and free. */
    int r = tend_runtime_run(&o, setup, body, &a);
    if (r < 0) {
        fprintf(stderr, "startup example: %s\n", tend_strerror(r));
        return 1;
    }
    puts("shut down cleanly");
    return 0;
}
