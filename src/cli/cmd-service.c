/*
 * cmd-service.c - `tend start|stop|restart SERVICE...`: act on services
 * of the running instance.  Exit 1 when any action is refused.
 */
#include <stdio.h>
#include <string.h>

#include "cmd-client-common.h"
#include "cmd.h"

static int act(const char *verb, int argc, char **argv) {
    static const struct option opts[] = {CLIENT_OPTS_FILE_URL, {0}};
    const char *file = NULL, *url = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': file = optarg; break;
        case 'U': url = optarg; break;
        case 'h': printf("usage: tend %s [-f FILE | --url URL] SERVICE...\n", verb); return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        cli_error("%s: name at least one service", verb);
        return EXIT_USAGE;
    }
    client cl;
    int r = client_open(&cl, file, url);
    if (r)
        return r;
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
        r = client_request(&cl, "POST", path, NULL, &resp);
        if (r) {
            client_close(&cl);
            return r;
        }
        if (resp.status == 200)
            printf("%s: %s\n", argv[i], json_string_value(json_object_get(resp.json, "state")));
        else {
            client_print_error(&resp);
            code = EXIT_RUNTIME;
        }
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
