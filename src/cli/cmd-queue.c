/*
 * cmd-queue.c - `tend queue ls|show|pause|resume|requeue-dead|purge-dead`:
 * the task queues of the running instance and their dead letters.
 *
 *   tend queue ls [--json]
 *   tend queue show [--json] QUEUE
 *   tend queue pause|resume|requeue-dead|purge-dead QUEUE...
 *
 * The table has the pending depth per priority (critical, high, normal,
 * low, background: pending plus scheduled tasks, as tend_queue_depth),
 * what runs, the dead letters, the breaker and the rate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "cmd.h"
#include "task-view.h"

static const char *const priorities[] = {"critical", "high", "normal", "low", "background"};

static int on_json(int opt, const char *arg, void *data) {
    (void)arg;
    if (opt != 'j')
        return EXIT_USAGE;
    *(bool *)data = true;
    return 0;
}

/* The handler kind: "exec", "http", "pull", "function", from a string or
 * an object such as {"exec": [...]} or {"kind": "exec"}. */
static const char *handler_kind(json_t *q, char *buf, size_t len) {
    json_t *h = json_object_get(q, "handler");
    if (json_is_string(h))
        return json_string_value(h);
    if (json_is_object(h)) {
        json_t *k = json_object_get(h, "kind");
        if (!k)
            k = json_object_get(h, "type");
        if (json_is_string(k))
            return json_string_value(k);
        const char *key;
        json_t *v;
        json_object_foreach(h, key, v) {
            snprintf(buf, len, "%s", key);
            return buf;
        }
    }
    return "-";
}

static const char *queue_name(json_t *q) {
    const char *n = json_string_value(json_object_get(q, "name"));
    if (!n)
        n = json_string_value(json_object_get(q, "queue"));
    return n ? n : "-";
}

/* Depth of one priority: from "depth": {"normal": 3} (or the
 * "depth_by_priority" spelling). */
static const char *depth_cell(json_t *q, const char *prio, char *buf, size_t len) {
    json_t *d = json_object_get(q, "depth");
    if (!json_is_object(d))
        d = json_object_get(q, "depth_by_priority");
    return task_view_cell(json_object_get(d, prio), buf, len);
}

/* The rate: a measured rate (a number, tasks/s) or a configured limit
 * ("50/s"), or {"limit": ..} / {"per_second": ..} objects. */
static const char *rate_cell(json_t *q, char *buf, size_t len) {
    json_t *r = json_object_get(q, "rate");
    if (!r)
        r = json_object_get(q, "rate_limit");
    if (json_is_object(r)) {
        json_t *x = json_object_get(r, "limit");
        if (!x)
            x = json_object_get(r, "per_second");
        r = x;
    }
    if (json_is_number(r)) {
        snprintf(buf, len, "%.4g/s", json_number_value(r));
        return buf;
    }
    return task_view_cell(r, buf, len);
}

static json_t *queues_of(json_t *body) {
    if (json_is_array(body))
        return body;
    json_t *q = json_object_get(body, "queues");
    return json_is_array(q) ? q : NULL;
}

static int queue_ls(int argc, char **argv) {
    static const struct option extra[] = {{"json", no_argument, NULL, 'j'}, {0}};
    bool json = false;
    client cl;
    task_view_permute(argc, argv, extra, "");
    int r = client_start(&cl, argc, argv, true, "", extra, "tend queue ls [-f FILE | --url URL] [--json]", on_json,
                         &json);
    if (r)
        return r < 0 ? EXIT_OK : r;
    if (optind < argc) {
        cli_error("queue ls takes no arguments (try tend queue show QUEUE)");
        client_close(&cl);
        return EXIT_USAGE;
    }
    client_response resp;
    r = client_call(&cl, "GET", "/api/v1/queues", NULL, &resp);
    client_close(&cl);
    if (r)
        return r;
    json_t *queues = queues_of(resp.json);
    if (!queues) {
        cli_error("unexpected answer (HTTP %ld): %.200s", resp.status, resp.body ? resp.body : "");
        client_response_free(&resp);
        return EXIT_RUNTIME;
    }
    if (json) {
        task_view_print_json(queues);
        client_response_free(&resp);
        return EXIT_OK;
    }
    size_t w = 5, i;
    json_t *q;
    json_array_foreach(queues, i, q) {
        size_t l = strlen(queue_name(q));
        if (l > w)
            w = l > 40 ? 40 : l;
    }
    printf("%-*s  %-8s %-6s %-9s %8s %6s %6s %6s %10s %7s %6s  %s\n", (int)w, "QUEUE", "HANDLER", "PAUSED", "BREAKER",
           "CRITICAL", "HIGH", "NORMAL", "LOW", "BACKGROUND", "RUNNING", "DEAD", "RATE");
    json_array_foreach(queues, i, q) {
        char hb[32], d[5][32], rb[64], db[32], rate[64];
        const char *cell[5];
        for (size_t p = 0; p < 5; p++)
            cell[p] = depth_cell(q, priorities[p], d[p], sizeof(d[p]));
        json_t *paused = json_object_get(q, "paused");
        printf("%-*s  %-8s %-6s %-9s %8s %6s %6s %6s %10s %7s %6s  %s\n", (int)w, queue_name(q),
               handler_kind(q, hb, sizeof(hb)), json_is_true(paused) ? "yes" : json_is_false(paused) ? "no" : "-",
               task_view_breaker(q), cell[0], cell[1], cell[2], cell[3], cell[4],
               task_view_cell(json_object_get(q, "running"), rb, sizeof(rb)),
               task_view_cell(json_object_get(q, "dead"), db, sizeof(db)), rate_cell(q, rate, sizeof(rate)));
    }
    client_response_free(&resp);
    return EXIT_OK;
}

/* Builds "/api/v1/queues/Q[suffix]"; false after printing why. */
static bool queue_path(char *buf, size_t len, const char *q, const char *suffix) {
    if (!task_view_name_ok("queue name", q))
        return false;
    snprintf(buf, len, "/api/v1/queues/");
    return task_view_escape(buf, len, q) == 0 && task_view_append(buf, len, suffix) == 0;
}

static void show_value(int indent, const char *key, json_t *v) {
    char buf[256];
    if (json_is_object(v)) {
        printf("%*s%s:\n", indent, "", key);
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) show_value(indent + 2, k, x);
    } else {
        printf("%*s%-*s %s\n", indent, "", 22 - indent, key, task_view_cell(v, buf, sizeof(buf)));
    }
}

static int queue_show(int argc, char **argv) {
    static const struct option extra[] = {{"json", no_argument, NULL, 'j'}, {0}};
    bool json = false;
    client cl;
    task_view_permute(argc, argv, extra, "");
    int r = client_start(&cl, argc, argv, true, "", extra, "tend queue show [-f FILE | --url URL] [--json] QUEUE",
                         on_json, &json);
    if (r)
        return r < 0 ? EXIT_OK : r;
    char path[1024];
    if (argc - optind != 1) {
        cli_error("queue show: name one queue");
        r = EXIT_USAGE;
    } else if (!queue_path(path, sizeof(path), argv[optind], "")) {
        r = EXIT_USAGE;
    } else {
        client_response resp;
        r = client_call(&cl, "GET", path, NULL, &resp);
        if (r == 0) {
            json_t *q = json_object_get(resp.json, "queue");
            if (!json_is_object(q))
                q = resp.json;
            if (json) {
                task_view_print_json(q);
            } else {
                const char *k;
                json_t *v;
                json_object_foreach(q, k, v) show_value(0, k, v);
            }
            client_response_free(&resp);
        }
    }
    client_close(&cl);
    return r;
}

/* pause, resume, requeue-dead, purge-dead. */
static const struct {
    const char *name, *method, *suffix, *done;
} actions[] = {
    {"pause", "POST", "/pause", "paused"},
    {"resume", "POST", "/resume", "resumed"},
    {"requeue-dead", "POST", "/dead/requeue", "requeued"},
    {"purge-dead", "DELETE", "/dead", "purged"},
};

/* The count of an answer to requeue/purge ("count", "requeued",
 * "purged", "deleted"), or -1. */
static long long answer_count(json_t *body) {
    static const char *const keys[] = {"count", "requeued", "purged", "deleted", "tasks"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(body, keys[i]);
        if (json_is_integer(v))
            return json_integer_value(v);
    }
    return -1;
}

static bool queue_act_path(char *buf, size_t len, const char *q, void *data) {
    const size_t *a = data;
    return queue_path(buf, len, q, actions[*a].suffix);
}

static void report_queue_act(const char *q, const client_response *resp, void *data) {
    const size_t *a = data;
    long long n = answer_count(resp->json);
    if (n >= 0)
        printf("%s: %lld dead task%s %s\n", q, n, n == 1 ? "" : "s", actions[*a].done);
    else
        printf("%s: %s\n", q, actions[*a].done);
}

static int queue_act(size_t a, int argc, char **argv) {
    char usage[128], prefix[48];
    snprintf(usage, sizeof(usage), "tend queue %s [-f FILE | --url URL] QUEUE...", actions[a].name);
    snprintf(prefix, sizeof(prefix), "queue %s", actions[a].name);
    client cl;
    task_view_permute(argc, argv, NULL, "");
    int r = client_start(&cl, argc, argv, true, "", NULL, usage, NULL, NULL);
    if (r)
        return r < 0 ? EXIT_OK : r;
    return client_act_each(&cl, argc, argv, prefix, "queue", actions[a].method, queue_act_path, report_queue_act, &a);
}

static void usage(FILE *f) {
    fprintf(f, "usage: tend queue ls [-f FILE] [--json]\n"
               "       tend queue show [-f FILE] [--json] QUEUE\n"
               "       tend queue pause|resume|requeue-dead|purge-dead [-f FILE] QUEUE...\n");
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    argv[1] = (char *)"tend";
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return queue_ls(argc - 1, argv + 1);
    if (strcmp(sub, "show") == 0)
        return queue_show(argc - 1, argv + 1);
    for (size_t a = 0; a < sizeof(actions) / sizeof(actions[0]); a++)
        if (strcmp(actions[a].name, sub) == 0)
            return queue_act(a, argc - 1, argv + 1);
    argv[1] = (char *)sub;
    cli_error("unknown queue command \"%s\" (ls, show, pause, resume, requeue-dead, purge-dead)", sub);
    return EXIT_USAGE;
}

const cmd_entry cmd_queue_entry = {"queue", "ls|show|pause|resume|requeue-dead|purge-dead",
                                   "task queues and their dead letters", run};
