/*
 * cmd.h - the tend command's subcommands, as data: each cmd-*.c file
 * exports one cmd_entry, and main.c lists them in one table.
 */
#ifndef TEND_CLI_CMD_H
#define TEND_CLI_CMD_H

typedef struct cmd_entry {
    const char *name;
    const char *usage;      /* "[-f FILE] [--detach] [SERVICE...]" */
    const char *summary;
    int (*run)(int argc, char **argv);
} cmd_entry;

extern const cmd_entry cmd_up_entry;
extern const cmd_entry cmd_down_entry;
extern const cmd_entry cmd_status_entry;
extern const cmd_entry cmd_health_entry;
extern const cmd_entry cmd_start_entry;
extern const cmd_entry cmd_stop_entry;
extern const cmd_entry cmd_restart_entry;
extern const cmd_entry cmd_logs_entry;
extern const cmd_entry cmd_check_entry;
extern const cmd_entry cmd_graph_entry;
extern const cmd_entry cmd_version_entry;
extern const cmd_entry cmd_task_entry;
extern const cmd_entry cmd_queue_entry;
extern const cmd_entry cmd_stats_entry;

/* Exit codes (SPEC section 3). */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1,
    EXIT_USAGE = 2,
    EXIT_UNREACHABLE = 3,
};

/* Prints "tend: <msg>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Default config path: $TEND_CONFIG, else ./tend.yaml. */
const char *cli_default_config(void);
/* Loads the config, printing every error as "tend: FILE:LINE:COL: ...".
 * Returns 0 or EXIT_USAGE. */
struct tend_config;
int cli_load_config(const char *path, struct tend_config **ret);

#endif
