/*
 * main.c - the tend command: dispatch to a subcommand from the table.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "config.h"
#include "graph.h"
#include "macros.h"
#include "strv.h"

static const cmd_entry *const commands[] = {
    &cmd_up_entry,
    &cmd_down_entry,
    &cmd_status_entry,
    &cmd_health_entry,
    &cmd_start_entry,
    &cmd_stop_entry,
    &cmd_restart_entry,
    &cmd_logs_entry,
    &cmd_check_entry,
    &cmd_graph_entry,
    &cmd_task_entry,
    &cmd_queue_entry,
    &cmd_stats_entry,
    &cmd_version_entry,
};

void cli_error(const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tend: %s\n", msg);
}

const char *cli_default_config(void) {
    const char *e = getenv("TEND_CONFIG");
    return e && *e ? e : "tend.yaml";
}

int cli_load_config(const char *path, tend_config **ret) {
    char **errors = NULL;
    int r = config_load(path, ret, &errors);
    if (r < 0) {
        if (errors && errors[0]) {
            for (size_t i = 0; errors[i]; i++)
                fprintf(stderr, "tend: %s\n", errors[i]);
        } else {
            cli_error("%s: %s", path, strerror(-r));
        }
        strv_free(errors);
        return EXIT_USAGE;
    }
    strv_free(errors);
    /* Cycles are configuration errors too (exit 2), for every command. */
    char *gerr = NULL;
    graph *g = NULL;
    r = graph_build((*ret)->services, (*ret)->n_services, &g, &gerr);
    graph_free(g);
    if (r < 0) {
        cli_error("%s: %s", path, gerr ? gerr : strerror(-r));
        free(gerr);
        tend_config_free(*ret);
        *ret = NULL;
        return EXIT_USAGE;
    }
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: tend COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < ELEMENTSOF(commands); i++)
        fprintf(f, "  %-8s %-44s %s\n", commands[i]->name, commands[i]->usage, commands[i]->summary);
    fprintf(f, "\nexit codes: 0 success, 1 runtime failure, 2 usage or configuration error,\n"
               "3 no running instance reachable.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0)
        name = "version";
    for (size_t i = 0; i < ELEMENTSOF(commands); i++) {
        if (strcmp(commands[i]->name, name) == 0) {
            /* getopt prefixes its messages with argv[0]: make them read
             * "tend: unrecognized option ..." like every other error. */
            argv[1] = (char *)"tend";
            return commands[i]->run(argc - 1, argv + 1);
        }
    }
    cli_error("unknown command \"%s\" (try tend --help)", name);
    return EXIT_USAGE;
}
