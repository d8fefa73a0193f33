/*
 * cmd-task.c - `tend task add|ls|show|cancel|retry`: submit and inspect
 * tasks of the running instance through the task routes of SPEC 5.
 *
 *   tend task add QUEUE [JSON|-] [--priority P] [--delay D | --run-at T]
 *                 [--max-attempts N] [--timeout D] [--key K] [--tag T]... [--json]
 *   tend task ls [--queue Q] [--state S] [--limit N] [--cursor C] [--all] [--json]
 *   tend task show [--json] ID
 *   tend task cancel|retry ID...
 *
 * Values the client can check (priority, state, durations, numbers, the
 * JSON payload) are checked here, so that a typo is a usage error (exit
 * 2) before anything is sent; the instance checks everything again.  An
 * action the instance refuses (404, 409, 400, 413, 503) exits 1 with its
 * message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "cmd.h"
#include "parse.h"
#include "task-view.h"

static const char *const priorities[] = {"critical", "high", "normal", "low", "background", NULL};
static const char *const states[] = {"pending", "scheduled", "running", "succeeded", "dead", "cancelled", NULL};

/* The largest payload read from stdin: the API's body limit is 1 MiB, so
 * anything between that and this still reaches the instance, which
 * answers 413 with its own message. */
#define PAYLOAD_READ_MAX (4 * 1024 * 1024)
#define LS_LIMIT_MAX 1000

static bool in_list(const char *const *list, const char *s) {
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

/* The task object of a submit/action answer: the object itself, or the
 * first of an array / of "tasks", or "task". */
static json_t *task_of(json_t *body) {
    if (json_is_array(body))
        return json_array_get(body, 0);
    if (!json_is_object(body))
        return NULL;
    if (json_object_get(body, "id"))
        return body;
    json_t *t = json_object_get(body, "task");
    if (json_is_object(t))
        return t;
    t = json_object_get(body, "tasks");
    return json_is_array(t) ? json_array_get(t, 0) : NULL;
}

/* ---- add ------------------------------------------------------------ */

typedef struct add_opts {
    const char *priority, *delay, *run_at, *timeout, *key;
    long long max_attempts;
    json_t *tags;
    bool json;
} add_opts;

static int add_opt(int opt, const char *arg, void *data) {
    add_opts *o = data;
    int64_t ms;
    switch (opt) {
    case 'p':
        if (!in_list(priorities, arg)) {
            cli_error("invalid priority \"%s\" (critical, high, normal, low or background)", arg);
            return EXIT_USAGE;
        }
        o->priority = arg;
        return 0;
    case 'd':
    case 'T':
        if (parse_duration_ms(arg, &ms) < 0) {
            cli_error("invalid duration \"%s\" (try 500ms, 5s, 2m)", arg);
            return EXIT_USAGE;
        }
        *(opt == 'd' ? &o->delay : &o->timeout) = arg;
        return 0;
    case 'r': o->run_at = arg; return 0;
    case 'm':
        if (parse_int(arg, 1, 1000, &o->max_attempts) < 0) {
            cli_error("invalid --max-attempts \"%s\" (1 to 1000)", arg);
            return EXIT_USAGE;
        }
        return 0;
    case 'k': o->key = arg; return 0;
    case 't': json_array_append_new(o->tags, json_string(arg)); return 0;
    case 'j': o->json = true; return 0;
    }
    return EXIT_USAGE;
}

/* Reads all of stdin into a NUL-terminated buffer; NULL after printing
 * why. */
static char *read_stdin(void) {
    size_t len = 0, cap = 64 * 1024;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0)
            break;
        if (len == cap) {
            if (cap >= PAYLOAD_READ_MAX) {
                cli_error("payload on stdin is over %d MiB", PAYLOAD_READ_MAX / (1024 * 1024));
                free(buf);
                return NULL;
            }
            char *b = realloc(buf, cap * 2 + 1);
            if (!b)
                break;
            buf = b;
            cap *= 2;
        }
    }
    if (!buf || ferror(stdin)) {
        cli_error("cannot read the payload from stdin: %s", buf ? strerror(errno) : "out of memory");
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static int task_add(int argc, char **argv) {
    static const struct option extra[] = {
        {"priority", required_argument, NULL, 'p'}, {"delay", required_argument, NULL, 'd'},
        {"run-at", required_argument, NULL, 'r'},   {"timeout", required_argument, NULL, 'T'},
        {"max-attempts", required_argument, NULL, 'm'}, {"key", required_argument, NULL, 'k'},
        {"tag", required_argument, NULL, 't'},      {"json", no_argument, NULL, 'j'},
        {0},
    };
    const char *usage = "tend task add [-f FILE | --url URL] QUEUE [JSON|-] [--priority P] [--delay D | --run-at T] "
                        "[--max-attempts N] [--timeout D] [--key K] [--tag T]... [--json]";
    add_opts o = {.tags = json_array()};
    json_t *body = NULL, *payload = NULL;
    char *text = NULL, *in = NULL;
    client cl = {0};
    bool opened = false;
    int r;

    task_view_permute(argc, argv, extra, "");
    r = client_start(&cl, argc, argv, true, "", extra, usage, add_opt, &o);
    if (r) {
        r = r < 0 ? EXIT_OK : r;
        goto finish;
    }
    opened = true;
    if (optind >= argc || argc - optind > 2) {
        cli_error("usage: %s", usage);
        r = EXIT_USAGE;
        goto finish;
    }
    const char *queue = argv[optind];
    if (!task_view_name_ok("queue name", queue)) {
        r = EXIT_USAGE;
        goto finish;
    }
    if (o.delay && o.run_at) {
        cli_error("--delay and --run-at exclude each other");
        r = EXIT_USAGE;
        goto finish;
    }
    if (optind + 1 < argc) {
        const char *src = argv[optind + 1];
        if (strcmp(src, "-") == 0) {
            if (!(in = read_stdin())) {
                r = EXIT_USAGE;
                goto finish;
            }
            src = in;
        }
        json_error_t err;
        payload = json_loads(src, JSON_DECODE_ANY, &err);
        if (!payload) {
            cli_error("invalid JSON payload: %d:%d: %s", err.line, err.column, err.text);
            r = EXIT_USAGE;
            goto finish;
        }
    }
    body = json_object();
    json_object_set_new(body, "payload", payload ? payload : json_null());
    payload = NULL;
    if (o.priority)
        json_object_set_new(body, "priority", json_string(o.priority));
    if (o.delay)
        json_object_set_new(body, "delay", json_string(o.delay));
    if (o.run_at)
        json_object_set_new(body, "run_at", json_string(o.run_at));
    if (o.timeout)
        json_object_set_new(body, "timeout", json_string(o.timeout));
    if (o.max_attempts)
        json_object_set_new(body, "max_attempts", json_integer(o.max_attempts));
    if (o.key)
        json_object_set_new(body, "idempotency_key", json_string(o.key));
    if (json_array_size(o.tags))
        json_object_set(body, "tags", o.tags);
    text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char path[512] = "/api/v1/queues/";
    if (!text || task_view_escape(path, sizeof(path), queue) < 0 ||
        task_view_append(path, sizeof(path), "/tasks") < 0) {
        cli_error("out of memory");
        r = EXIT_RUNTIME;
        goto finish;
    }
    client_response resp;
    r = client_call(&cl, "POST", path, text, &resp);
    if (r)
        goto finish;
    json_t *task = task_of(resp.json);
    const char *id = json_string_value(json_object_get(task, "id"));
    if (o.json) {
        task_view_print_json(task ? task : resp.json);
    } else if (id) {
        printf("%s\n", id);
    } else {
        cli_error("unexpected answer (HTTP %ld): %.200s", resp.status, resp.body ? resp.body : "");
        r = EXIT_RUNTIME;
    }
    client_response_free(&resp);

finish:
    if (opened)
        client_close(&cl);
    json_decref(o.tags);
    json_decref(body);
    json_decref(payload);
    free(text);
    free(in);
    return r;
}

/* ---- ls ------------------------------------------------------------- */

typedef struct ls_opts {
    const char *queue, *state, *cursor;
    long long limit;
    bool all, json;
} ls_opts;

static int ls_opt(int opt, const char *arg, void *data) {
    ls_opts *o = data;
    switch (opt) {
    case 'q':
        if (!task_view_name_ok("queue name", arg))
            return EXIT_USAGE;
        o->queue = arg;
        return 0;
    case 's':
        if (!in_list(states, arg)) {
            cli_error("invalid state \"%s\" (pending, scheduled, running, succeeded, dead or cancelled)", arg);
            return EXIT_USAGE;
        }
        o->state = arg;
        return 0;
    case 'n':
        if (parse_int(arg, 1, LS_LIMIT_MAX, &o->limit) < 0) {
            cli_error("invalid --limit \"%s\" (1 to %d)", arg, LS_LIMIT_MAX);
            return EXIT_USAGE;
        }
        return 0;
    case 'c':
        if (!task_view_name_ok("cursor", arg))
            return EXIT_USAGE;
        o->cursor = arg;
        return 0;
    case 'a': o->all = true; return 0;
    case 'j': o->json = true; return 0;
    }
    return EXIT_USAGE;
}

static const char *next_cursor(json_t *page) {
    json_t *c = json_object_get(page, "next_cursor");
    if (!c)
        c = json_object_get(page, "cursor");
    const char *s = json_string_value(c);
    return s && *s ? s : NULL;
}

static void print_rows(json_t *tasks) {
    size_t qw = 5, i;
    json_t *t;
    json_array_foreach(tasks, i, t) {
        const char *q = json_string_value(json_object_get(t, "queue"));
        if (q && strlen(q) > qw)
            qw = strlen(q) > 40 ? 40 : strlen(q);
    }
    printf("%-26s  %-*s  %-9s  %-10s  %8s  %s\n", "ID", (int)qw, "QUEUE", "STATE", "PRIORITY", "ATTEMPTS", "CREATED");
    json_array_foreach(tasks, i, t) {
        char b1[64], b2[64], b3[64], att[48], created[64];
        const char *a = task_view_cell(json_object_get(t, "attempts"), b1, sizeof(b1));
        json_t *max = json_object_get(t, "max_attempts");
        if (max)
            snprintf(att, sizeof(att), "%s/%s", a, task_view_cell(max, b2, sizeof(b2)));
        else
            snprintf(att, sizeof(att), "%s", a);
        printf("%-26s  %-*s  %-9s  %-10s  %8s  %s\n", task_view_cell(json_object_get(t, "id"), b3, sizeof(b3)),
               (int)qw, task_view_cell(json_object_get(t, "queue"), b1, sizeof(b1)),
               task_view_cell(json_object_get(t, "state"), b2, sizeof(b2)),
               json_string_value(json_object_get(t, "priority")) ? json_string_value(json_object_get(t, "priority"))
                                                                 : "-",
               att, task_view_time_cell(json_object_get(t, "created_at"), created, sizeof(created)));
    }
}

static int task_ls(int argc, char **argv) {
    static const struct option extra[] = {
        {"queue", required_argument, NULL, 'q'}, {"state", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'n'}, {"cursor", required_argument, NULL, 'c'},
        {"all", no_argument, NULL, 'a'},         {"json", no_argument, NULL, 'j'},
        {0},
    };
    const char *usage = "tend task ls [-f FILE | --url URL] [--queue Q] [--state S] [--limit N] [--cursor C] [--all] "
                        "[--json]";
    ls_opts o = {0};
    client cl;
    task_view_permute(argc, argv, extra, "n");
    int r = client_start(&cl, argc, argv, true, "n:", extra, usage, ls_opt, &o);
    if (r)
        return r < 0 ? EXIT_OK : r;
    if (optind < argc) {
        cli_error("task ls takes no arguments (filter with --queue and --state)");
        client_close(&cl);
        return EXIT_USAGE;
    }
    json_t *all = json_array();
    char *cursor = o.cursor ? strdup(o.cursor) : NULL;
    for (;;) {
        char path[1024];
        snprintf(path, sizeof(path), "/api/v1/tasks?limit=%lld", o.limit ? o.limit : (o.all ? LS_LIMIT_MAX : 100));
        if (o.queue) {
            task_view_append(path, sizeof(path), "&queue=");
            task_view_escape(path, sizeof(path), o.queue);
        }
        if (o.state) {
            task_view_append(path, sizeof(path), "&state=");
            task_view_escape(path, sizeof(path), o.state);
        }
        if (cursor) {
            task_view_append(path, sizeof(path), "&cursor=");
            task_view_escape(path, sizeof(path), cursor);
        }
        client_response resp;
        r = client_call(&cl, "GET", path, NULL, &resp);
        if (r)
            break;
        json_t *tasks = json_is_array(resp.json) ? resp.json : json_object_get(resp.json, "tasks");
        if (!json_is_array(tasks)) {
            cli_error("unexpected answer (HTTP %ld): %.200s", resp.status, resp.body ? resp.body : "");
            client_response_free(&resp);
            r = EXIT_RUNTIME;
            break;
        }
        json_array_extend(all, tasks);
        const char *next = json_is_object(resp.json) ? next_cursor(resp.json) : NULL;
        free(cursor);
        cursor = next && json_array_size(tasks) ? strdup(next) : NULL;
        client_response_free(&resp);
        if (!o.all || !cursor)
            break;
    }
    if (r == 0) {
        if (o.json) {
            json_t *out = json_pack("{s:O, s:s?}", "tasks", all, "next_cursor", cursor);
            if (out && !cursor)
                json_object_set_new(out, "next_cursor", json_null());
            task_view_print_json(out);
            json_decref(out);
        } else {
            print_rows(all);
            if (cursor)
                fprintf(stderr, "tend: more tasks; next page: tend task ls --cursor %s (or --all)\n", cursor);
        }
    }
    free(cursor);
    json_decref(all);
    client_close(&cl);
    return r;
}

/* ---- show ----------------------------------------------------------- */

static int on_json(int opt, const char *arg, void *data) {
    (void)arg;
    if (opt != 'j')
        return EXIT_USAGE;
    *(bool *)data = true;
    return 0;
}

/* Builds "/api/v1/tasks/ID[/verb]"; false after printing why. */
static bool task_path(char *buf, size_t len, const char *id, const char *verb) {
    if (!task_view_name_ok("task id", id))
        return false;
    snprintf(buf, len, "/api/v1/tasks/");
    if (task_view_escape(buf, len, id) < 0)
        return false;
    if (verb) {
        task_view_append(buf, len, "/");
        task_view_append(buf, len, verb);
    }
    return true;
}

static void show_field(const char *label, json_t *v, bool time) {
    char buf[256];
    if (time)
        printf("%-16s %s\n", label, task_view_time_cell(v, buf, sizeof(buf)));
    else
        printf("%-16s %s\n", label, task_view_cell(v, buf, sizeof(buf)));
}

static void show_task(json_t *t) {
    static const struct {
        const char *key, *label;
        bool time;
    } known[] = {
        {"id", "id"}, {"queue", "queue"}, {"state", "state"}, {"priority", "priority"},
        {"attempts", "attempts"}, {"max_attempts", "max attempts"}, {"timeout", "timeout"},
        {"timeout_ms", "timeout ms"}, {"idempotency_key", "idempotency key"}, {"tags", "tags"},
        {"created_at", "created", true}, {"run_at", "run at", true}, {"started_at", "started", true},
        {"finished_at", "finished", true}, {"lease_until", "lease until", true},
        {"duration_ms", "duration ms"},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        json_t *v = json_object_get(t, known[i].key);
        if (v)
            show_field(known[i].label, v, known[i].time);
    }
    /* Whatever else the instance reports, except the long ones below. */
    const char *k;
    json_t *v;
    json_object_foreach(t, k, v) {
        bool seen = strcmp(k, "payload") == 0 || strcmp(k, "last_error") == 0 || strcmp(k, "errors") == 0;
        for (size_t i = 0; !seen && i < sizeof(known) / sizeof(known[0]); i++)
            seen = strcmp(k, known[i].key) == 0;
        if (!seen)
            show_field(k, v, false);
    }
    json_t *err = json_object_get(t, "last_error");
    if (err)
        printf("%-16s %s\n", "last error", json_is_string(err) ? json_string_value(err) : "-");
    json_t *errors = json_object_get(t, "errors");
    if (json_is_array(errors) && json_array_size(errors)) {
        printf("errors:\n");
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e) {
            char buf[512];
            if (json_is_object(e)) {
                json_t *m = json_object_get(e, "error");
                if (!m)
                    m = json_object_get(e, "message");
                char tb[64];
                printf("  attempt %s at %s: %s\n", task_view_cell(json_object_get(e, "attempt"), buf, sizeof(buf)),
                       task_view_time_cell(json_object_get(e, "at"), tb, sizeof(tb)),
                       json_is_string(m) ? json_string_value(m) : task_view_cell(m, buf, sizeof(buf)));
            } else {
                printf("  %s\n", task_view_cell(e, buf, sizeof(buf)));
            }
        }
    }
    json_t *payload = json_object_get(t, "payload");
    if (payload) {
        char *text = json_dumps(payload, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
        printf("payload:\n%s\n", text ? text : "?");
        free(text);
    }
}

static int task_show(int argc, char **argv) {
    static const struct option extra[] = {{"json", no_argument, NULL, 'j'}, {0}};
    bool json = false;
    client cl;
    task_view_permute(argc, argv, extra, "");
    int r = client_start(&cl, argc, argv, true, "", extra, "tend task show [-f FILE | --url URL] [--json] ID",
                         on_json, &json);
    if (r)
        return r < 0 ? EXIT_OK : r;
    char path[1024];
    if (argc - optind != 1) {
        cli_error("task show: name one task id");
        r = EXIT_USAGE;
    } else if (!task_path(path, sizeof(path), argv[optind], NULL)) {
        r = EXIT_USAGE;
    } else {
        client_response resp;
        r = client_call(&cl, "GET", path, NULL, &resp);
        if (r == 0) {
            json_t *t = task_of(resp.json);
            if (json)
                task_view_print_json(t ? t : resp.json);
            else if (t)
                show_task(t);
            else {
                cli_error("unexpected answer (HTTP %ld): %.200s", resp.status, resp.body ? resp.body : "");
                r = EXIT_RUNTIME;
            }
            client_response_free(&resp);
        }
    }
    client_close(&cl);
    return r;
}

/* ---- cancel, retry -------------------------------------------------- */

static bool task_act_path(char *buf, size_t len, const char *id, void *data) {
    return task_path(buf, len, id, data);
}

static void report_task_state(const char *id, const client_response *resp, void *data) {
    json_t *t = task_of(resp->json);
    const char *state = json_string_value(json_object_get(t ? t : resp->json, "state"));
    printf("%s: %s\n", id, state ? state : (strcmp(data, "cancel") == 0 ? "cancelled" : "pending"));
}

static int task_act(const char *verb, int argc, char **argv) {
    char usage[128], prefix[32];
    snprintf(usage, sizeof(usage), "tend task %s [-f FILE | --url URL] ID...", verb);
    snprintf(prefix, sizeof(prefix), "task %s", verb);
    client cl;
    task_view_permute(argc, argv, NULL, "");
    int r = client_start(&cl, argc, argv, true, "", NULL, usage, NULL, NULL);
    if (r)
        return r < 0 ? EXIT_OK : r;
    return client_act_each(&cl, argc, argv, prefix, "task id", "POST", task_act_path, report_task_state, (void *)verb);
}

/* ---- dispatch ------------------------------------------------------- */

static int task_cancel(int argc, char **argv) { return task_act("cancel", argc, argv); }
static int task_retry(int argc, char **argv) { return task_act("retry", argc, argv); }

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} subcommands[] = {
    {"add", task_add}, {"ls", task_ls}, {"list", task_ls}, {"show", task_show},
    {"cancel", task_cancel}, {"retry", task_retry},
};

static void usage(FILE *f) {
    fprintf(f, "usage: tend task add [-f FILE] QUEUE [JSON|-] [--priority P] [--delay D | --run-at T]\n"
               "                     [--max-attempts N] [--timeout D] [--key K] [--tag T]... [--json]\n"
               "       tend task ls [-f FILE] [--queue Q] [--state S] [--limit N] [--cursor C] [--all] [--json]\n"
               "       tend task show [-f FILE] [--json] ID\n"
               "       tend task cancel|retry [-f FILE] ID...\n");
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        if (strcmp(subcommands[i].name, argv[1]) == 0) {
            argv[1] = (char *)"tend";
            return subcommands[i].run(argc - 1, argv + 1);
        }
    }
    cli_error("unknown task command \"%s\" (add, ls, show, cancel, retry)", argv[1]);
    return EXIT_USAGE;
}

const cmd_entry cmd_task_entry = {"task", "add|ls|show|cancel|retry ...", "submit and inspect tasks", run};
