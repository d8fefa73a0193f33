/*
 * cmd-service.c - `tend start|stop|restart SERVICE...`: act on services
 * of the running instance.  Exit 1 when any action is refused.
 */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "cmd.h"

/* "/api/v1/services/NAME/VERB"; false after printing why. */
static bool service_path(char *buf, size_t len, const char *name, void *data) {
    if (strlen(name) > 200 || strchr(name, '/')) {
        cli_error("invalid service name \"%s\"", name);
        return false;
    }
    snprintf(buf, len, "/api/v1/services/%s/%s", name, (const char *)data);
    return true;
}

static void report_state(const char *name, const client_response *resp, void *data) {
    printf("%s: %s\n", name, json_string_value(json_object_get(resp->json, "state")));
}

static int act(const char *verb, int argc, char **argv) {
    char usage[128];
    snprintf(usage, sizeof(usage), "tend %s [-f FILE | --url URL] SERVICE...", verb);
    client cl;
    int r = client_start(&cl, argc, argv, true, "", NULL, usage, NULL, NULL);
    if (r)
        return r < 0 ? EXIT_OK : r;
    return client_act_each(&cl, argc, argv, verb, "service", "POST", service_path, report_state, (void *)verb);
}

static int run_start(int argc, char **argv) { return act("start", argc, argv); }
static int run_stop(int argc, char **argv) { return act("stop", argc, argv); }
static int run_restart(int argc, char **argv) { return act("restart", argc, argv); }

const cmd_entry cmd_start_entry = {"start", "[-f FILE] SERVICE...", "start services (also failed ones)", run_start};
const cmd_entry cmd_stop_entry = {"stop", "[-f FILE] SERVICE...", "stop services", run_stop};
const cmd_entry cmd_restart_entry = {"restart", "[-f FILE] SERVICE...", "restart services", run_restart};
