/*
 * cmd-status.c - `tend status [--json] [SERVICE...]`: the services as an
 * aligned table (service, wave, state, health, pid, restarts, uptime,
 * stage).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "cmd.h"

static void uptime(double s, char *buf, size_t len) {
    if (s <= 0)
        snprintf(buf, len, "-");
    else if (s < 60)
        snprintf(buf, len, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, len, "%ldm%02lds", (long)s / 60, (long)s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%ldh%02ldm", (long)s / 3600, ((long)s % 3600) / 60);
    else
        snprintf(buf, len, "%ldd%02ldh", (long)s / 86400, ((long)s % 86400) / 3600);
}

static bool wanted(int argc, char **argv, const char *name) {
    if (optind >= argc)
        return true;
    for (int i = optind; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static int on_json(int opt, const char *arg, void *data) {
    *(bool *)data = true;
    return 0;
}

static int run(int argc, char **argv) {
    static const struct option extra[] = {{"json", no_argument, NULL, 'j'}, {0}};
    bool json = false;
    client cl;
    int r = client_start(&cl, argc, argv, true, "", extra, "tend status [-f FILE | --url URL] [--json] [SERVICE...]",
                         on_json, &json);
    if (r)
        return r < 0 ? EXIT_OK : r;
    client_response resp;
    r = client_call(&cl, "GET", "/api/v1/services", NULL, &resp);
    client_close(&cl);
    if (r)
        return r;
    json_t *svcs = json_object_get(resp.json, "services");
    if (!json_is_array(svcs)) {
        client_print_error(&resp);
        client_response_free(&resp);
        return EXIT_RUNTIME;
    }
    json_t *out = json_array();
    size_t i;
    json_t *s;
    int unknown = 0;
    for (int k = optind; k < argc; k++) {
        bool found = false;
        json_array_foreach(svcs, i, s) if (strcmp(json_string_value(json_object_get(s, "name")), argv[k]) == 0) found = true;
        if (!found) {
            cli_error("no service \"%s\"", argv[k]);
            unknown = 1;
        }
    }
    json_array_foreach(svcs, i, s) if (wanted(argc, argv, json_string_value(json_object_get(s, "name"))))
        json_array_append(out, s);
    if (json) {
        char *text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", text ? text : "[]");
        free(text);
    } else {
        printf("%-20s %4s  %-10s %-10s %7s %8s %8s  %s\n", "SERVICE", "WAVE", "STATE", "HEALTH", "PID", "RESTARTS",
               "UPTIME", "STAGE");
        json_array_foreach(out, i, s) {
            char up[32], pid[16];
            uptime(json_real_value(json_object_get(s, "uptime_seconds")), up, sizeof(up));
            json_t *p = json_object_get(s, "pid");
            snprintf(pid, sizeof(pid), "%s", json_is_integer(p) ? "" : "-");
            if (json_is_integer(p))
                snprintf(pid, sizeof(pid), "%lld", (long long)json_integer_value(p));
            const char *stage = json_string_value(json_object_get(s, "stage"));
            printf("%-20s %4lld  %-10s %-10s %7s %8lld %8s  %s\n", json_string_value(json_object_get(s, "name")),
                   (long long)json_integer_value(json_object_get(s, "wave")),
                   json_string_value(json_object_get(s, "state")), json_string_value(json_object_get(s, "health")),
                   pid, (long long)json_integer_value(json_object_get(s, "restarts")), up, stage ? stage : "-");
        }
    }
    json_decref(out);
    client_response_free(&resp);
    return unknown ? EXIT_RUNTIME : EXIT_OK;
}

const cmd_entry cmd_status_entry = {"status", "[-f FILE] [--json] [SERVICE...]", "show the services", run};
