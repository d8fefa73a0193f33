/*
 * client.h - how the client commands reach a running tend: HTTP over the
 * unix socket <state_dir>/tend.sock found from -f FILE (or $TEND_CONFIG,
 * or ./tend.yaml), or over TCP with --url / $TEND_URL (with $TEND_TOKEN
 * as the bearer token).  libcurl, blocking: a client command does one
 * thing at a time.
 */
#ifndef TEND_CLI_CLIENT_H
#define TEND_CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <getopt.h>
#include <sys/types.h>

typedef struct client {
    char *socket_path;      /* unix socket, or NULL with url */
    char *url;              /* base URL, e.g. http://127.0.0.1:7070 */
    char *token;
    char *state_dir;        /* when known: for the pid in tend.lock */
    long timeout_ms;
} client;

typedef struct client_response {
    long status;            /* 0 when unreachable */
    char *body;
    size_t len;
    json_t *json;           /* parsed body when it is JSON */
} client_response;

/* Common options: -f FILE, --url URL.  Parses and removes them from
 * argv (getopt-style "+"); returns 0 or EXIT_USAGE after printing. */
int client_open(client *c, const char *config_path, const char *url);
void client_close(client *c);

/* Performs a request; returns 0 with *ret filled (any HTTP status), or
 * EXIT_UNREACHABLE after printing "tend: no running instance ...". */
int client_request(client *c, const char *method, const char *path, const char *body, client_response *ret);
void client_response_free(client_response *r);

/* Streams a response body to cb (SSE, logs); returns like client_request. */
int client_stream(client *c, const char *path, size_t (*cb)(char *, size_t, size_t, void *), void *data);

typedef int (*client_opt_fn)(int opt, const char *arg, void *data);

/*
 * Parses a client command's options: the common -f/--file FILE (when
 * file_is_f; else only --file), --url URL and -h/--help, plus the
 * command's own `extra` options (short ones in extra_short), each handed
 * to on_opt, which returns 0 or an exit code.  Then opens the client.
 * Returns 0; -1 after printing usage for -h (the command exits 0); or an
 * exit code after printing why.  Positional arguments start at optind.
 */
int client_start(client *c, int argc, char **argv, bool file_is_f, const char *extra_short,
                 const struct option *extra, const char *usage, client_opt_fn on_opt, void *data);

/* A request whose answer must be 2xx: prints the API's error otherwise and
 * returns EXIT_RUNTIME (the response is freed then); 0 on success. */
int client_call(client *c, const char *method, const char *path, const char *body, client_response *ret);

/*
 * The shape shared by `tend start|stop|restart`, `tend task cancel|retry`
 * and `tend queue pause|...`: one request per name in argv[optind..argc).
 * path_for builds the request path for a name into buf (false after
 * printing why: that name is refused, the rest go on); report prints the
 * answer to a 2xx.  "what" names the objects in the usage error ("task
 * %s: name at least one task id" is what = "task id", prefix = "task
 * cancel").  Closes cl.  Returns EXIT_OK, EXIT_USAGE without any name,
 * EXIT_RUNTIME when any name was refused, or the exit code of an
 * unreachable instance (the remaining names are not tried).
 */
typedef bool (*client_path_fn)(char *buf, size_t len, const char *name, void *data);
typedef void (*client_report_fn)(const char *name, const client_response *resp, void *data);
int client_act_each(client *cl, int argc, char **argv, const char *prefix, const char *what,
                    const char *method, client_path_fn path_for, client_report_fn report, void *data);

/* The pid in <state_dir>/tend.lock, or -1. */
pid_t client_instance_pid(const client *c);

/* Prints the API's error message (or the status) as "tend: ..." */
void client_print_error(const client_response *r);

#endif
