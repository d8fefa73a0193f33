/*
 * cmd-logs.c - `tend logs [-f] [-n N] [SERVICE...]`: the services' output
 * from their log files (the last N lines, default 100), then with -f the
 * live output from the event stream.  The config file is --file here,
 * since -f means follow (as in tail and docker logs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "cmd.h"

typedef struct follow_ctx {
    char **names;
    int n;
    bool prefix;
    char line[16384];
    size_t len;
} follow_ctx;

static bool selected(const follow_ctx *f, const char *name) {
    if (f->n == 0)
        return true;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0)
            return true;
    return false;
}

static void sse_line(follow_ctx *f, const char *l) {
    if (strncmp(l, "data: ", 6) != 0)
        return;
    json_t *o = json_loads(l + 6, 0, NULL);
    const char *svc = json_string_value(json_object_get(o, "service"));
    const char *text = json_string_value(json_object_get(o, "line"));
    if (svc && text && selected(f, svc)) {
        if (f->prefix)
            printf("%s | %s\n", svc, text);
        else
            printf("%s\n", text);
        fflush(stdout);
    }
    json_decref(o);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *data) {
    follow_ctx *f = data;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            f->line[f->len] = '\0';
            sse_line(f, f->line);
            f->len = 0;
        } else if (f->len < sizeof(f->line) - 1) {
            f->line[f->len++] = p[i];
        }
    }
    return n;
}

typedef struct opts {
    bool follow;
    long lines;
} opts;

static int on_opt(int opt, const char *arg, void *data) {
    opts *o = data;
    if (opt == 'f') {
        o->follow = true;
        return 0;
    }
    char *end;
    o->lines = strtol(arg, &end, 10);
    if (*end || o->lines < 0 || o->lines > 100000) {
        cli_error("-n: expected a number of lines from 0 to 100000");
        return EXIT_USAGE;
    }
    return 0;
}

static int run(int argc, char **argv) {
    static const struct option extra[] = {{"follow", no_argument, NULL, 'f'}, {"lines", required_argument, NULL, 'n'}, {0}};
    opts o = {.lines = 100};
    client cl;
    int r = client_start(&cl, argc, argv, false, "fn:", extra,
                         "tend logs [--file FILE | --url URL] [-f] [-n N] [SERVICE...]", on_opt, &o);
    if (r)
        return r < 0 ? EXIT_OK : r;
    bool follow = o.follow;
    long lines = o.lines;
    follow_ctx f = {.names = argv + optind, .n = argc - optind};
    /* Which services: those named, or all of them. */
    client_response list;
    r = client_request(&cl, "GET", "/api/v1/services", NULL, &list);
    if (r) {
        client_close(&cl);
        return r;
    }
    json_t *svcs = json_object_get(list.json, "services");
    size_t i;
    json_t *s;
    int code = EXIT_OK;
    for (int k = 0; k < f.n; k++) {
        bool found = false;
        json_array_foreach(svcs, i, s) if (strcmp(json_string_value(json_object_get(s, "name")), f.names[k]) == 0) found = true;
        if (!found) {
            cli_error("no service \"%s\"", f.names[k]);
            code = EXIT_RUNTIME;
        }
    }
    f.prefix = f.n != 1;
    if (lines > 0 && code == EXIT_OK) {
        json_array_foreach(svcs, i, s) {
            const char *name = json_string_value(json_object_get(s, "name"));
            if (!selected(&f, name))
                continue;
            char path[512];
            snprintf(path, sizeof(path), "/api/v1/services/%s/logs?lines=%ld", name, lines);
            client_response resp;
            r = client_request(&cl, "GET", path, NULL, &resp);
            if (r) {
                code = r;
                break;
            }
            if (resp.status == 200 && resp.body) {
                char *save = NULL;
                for (char *l = strtok_r(resp.body, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                    f.prefix ? printf("%s | %s\n", name, l) : printf("%s\n", l);
            } else if (resp.status != 200) {
                client_print_error(&resp);
                code = EXIT_RUNTIME;
            }
            client_response_free(&resp);
        }
    }
    client_response_free(&list);
    fflush(stdout);
    if (follow && code == EXIT_OK)
        code = client_stream(&cl, "/api/v1/events?types=service.output", on_data, &f);
    client_close(&cl);
    return code;
}

const cmd_entry cmd_logs_entry = {"logs", "[--file FILE] [-f] [-n N] [SERVICE...]", "show service output", run};
