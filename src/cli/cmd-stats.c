/*
 * cmd-stats.c - `tend stats [--json]`: the task statistics of the
 * running instance (GET /api/v1/stats, SPEC 5), one "name value" line
 * each, nested objects (the circuit breakers per queue) indented.
 */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "cmd.h"
#include "task-view.h"

static int on_json(int opt, const char *arg, void *data) {
    (void)arg;
    if (opt != 'j')
        return EXIT_USAGE;
    *(bool *)data = true;
    return 0;
}

static void print_value(int indent, const char *key, json_t *v) {
    char buf[256];
    if (json_is_object(v)) {
        printf("%*s%s:\n", indent, "", key);
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) print_value(indent + 2, k, x);
        if (json_object_size(v) == 0)
            printf("%*s-\n", indent + 2, "");
        return;
    }
    const char *cell;
    if (strcmp(key, "success_rate") == 0 && json_is_number(v) && json_number_value(v) <= 1.0) {
        /* A fraction: 0.985 reads better as 98.5%. */
        snprintf(buf, sizeof(buf), "%.1f%%", json_number_value(v) * 100.0);
        cell = buf;
    } else if (json_is_real(v)) {
        snprintf(buf, sizeof(buf), "%.2f", json_real_value(v));
        cell = buf;
    } else {
        cell = task_view_cell(v, buf, sizeof(buf));
    }
    printf("%*s%-*s %s\n", indent, "", 30 - indent, key, cell);
}

static int run(int argc, char **argv) {
    static const struct option extra[] = {{"json", no_argument, NULL, 'j'}, {0}};
    bool json = false;
    client cl;
    task_view_permute(argc, argv, extra, "");
    int r = client_start(&cl, argc, argv, true, "", extra, "tend stats [-f FILE | --url URL] [--json]", on_json,
                         &json);
    if (r)
        return r < 0 ? EXIT_OK : r;
    if (optind < argc) {
        cli_error("stats takes no arguments");
        client_close(&cl);
        return EXIT_USAGE;
    }
    client_response resp;
    r = client_call(&cl, "GET", "/api/v1/stats", NULL, &resp);
    client_close(&cl);
    if (r)
        return r;
    if (!json_is_object(resp.json)) {
        cli_error("unexpected answer (HTTP %ld): %.200s", resp.status, resp.body ? resp.body : "");
        client_response_free(&resp);
        return EXIT_RUNTIME;
    }
    if (json) {
        task_view_print_json(resp.json);
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(resp.json, k, v) print_value(0, k, v);
    }
    client_response_free(&resp);
    return EXIT_OK;
}

const cmd_entry cmd_stats_entry = {"stats", "[-f FILE] [--json]", "task statistics", run};
