/*
 * cmd-health.c - `tend health [--json] [--strict]`: the system's health.
 * Exit 0 when healthy or degraded (--strict: healthy only), 1 when
 * unhealthy, 3 when no instance answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "cmd.h"

typedef struct opts {
    bool json, strict;
} opts;

static int on_opt(int opt, const char *arg, void *data) {
    opts *o = data;
    if (opt == 'j')
        o->json = true;
    else if (opt == 's')
        o->strict = true;
    return 0;
}

static int run(int argc, char **argv) {
    static const struct option extra[] = {{"json", no_argument, NULL, 'j'}, {"strict", no_argument, NULL, 's'}, {0}};
    opts o = {0};
    client cl;
    int r = client_start(&cl, argc, argv, true, "", extra, "tend health [-f FILE | --url URL] [--json] [--strict]",
                         on_opt, &o);
    if (r)
        return r < 0 ? EXIT_OK : r;
    bool json = o.json, strict = o.strict;
    client_response resp;
    r = client_request(&cl, "GET", "/health", NULL, &resp);
    client_close(&cl);
    if (r)
        return r;
    const char *status = json_string_value(json_object_get(resp.json, "status"));
    if (!status) {
        client_print_error(&resp);
        client_response_free(&resp);
        return EXIT_RUNTIME;
    }
    if (json) {
        char *text = json_dumps(resp.json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text ? text : "{}");
        free(text);
    } else {
        printf("%s\n", status);
        json_t *deps = json_object_get(json_object_get(resp.json, "checks"), "dependencies");
        const char *name;
        json_t *d;
        json_object_foreach(deps, name, d) {
            const char *err = json_string_value(json_object_get(d, "error"));
            printf("  %-20s %-10s %-10s%s%s\n", name, json_string_value(json_object_get(d, "status")),
                   json_string_value(json_object_get(d, "state")), err ? "  " : "", err ? err : "");
        }
    }
    int code = strcmp(status, "healthy") == 0 ? EXIT_OK
             : strcmp(status, "degraded") == 0 ? (strict ? EXIT_RUNTIME : EXIT_OK)
                                               : EXIT_RUNTIME;
    client_response_free(&resp);
    return code;
}

const cmd_entry cmd_health_entry = {"health", "[-f FILE] [--json] [--strict]", "system health (exit 1 when unhealthy)", run};
