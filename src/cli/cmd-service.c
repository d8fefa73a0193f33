/*
 * cmd-service.c - `tend start|stop|restart SERVICE...`: act on services
 * of the running instance.  Exit 1 when any action is refused.
 */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "cmd.h"

static int act(const char *verb, int argc, char **argv) {
    char usage[128];
    snprintf(usage, sizeof(usage), "tend %s [-f FILE | --url URL] SERVICE...", verb);
    client cl;
    int r = client_start(&cl, argc, argv, true, "", NULL, usage, NULL, NULL);
    if (r)
        return r < 0 ? EXIT_OK : r;
    if (optind >= argc) {
        cli_error("%s: name at least one service", verb);
        client_close(&cl);
        return EXIT_USAGE;
    }
    int code = EXIT_OK;
    for (int i = optind; i < argc; i++) {
        char path[512];
        if (strlen(argv[i]) > 200 || strchr(argv[i], '/')) {
            cli_error("invalid service name \"%s\"", argv[i]);
            code = EXIT_RUNTIME;
            continue;
        }
        snprintf(path, sizeof(path), "/api/v1/services/%s/%s", argv[i], verb);
        client_response resp;
        r = client_call(&cl, "POST", path, NULL, &resp);
        if (r == EXIT_RUNTIME) {
            code = EXIT_RUNTIME;
            continue;
        }
        if (r) {
            client_close(&cl);
            return r;
        }
        printf("%s: %s\n", argv[i], json_string_value(json_object_get(resp.json, "state")));
        client_response_free(&resp);
    }
    client_close(&cl);
    return code;
}

static int run_start(int argc, char **argv) { return act("start", argc, argv); }
static int run_stop(int argc, char **argv) { return act("stop", argc, argv); }
static int run_restart(int argc, char **argv) { return act("restart", argc, argv); }

const cmd_entry cmd_start_entry = {"start", "[-f FILE] SERVICE...", "start services (also failed ones)", run_start};
const cmd_entry cmd_stop_entry = {"stop", "[-f FILE] SERVICE...", "stop services", run_stop};
const cmd_entry cmd_restart_entry = {"restart", "[-f FILE] SERVICE...", "restart services", run_restart};
