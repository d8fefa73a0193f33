/* client.c - see client.h. */
#include "client.h"

#include "curl-api.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "config.h"
#include "strv.h"

int client_open(client *c, const char *config_path, const char *url) {
    memset(c, 0, sizeof(*c));
    c->timeout_ms = 30000;
    if (!url && !config_path)
        url = getenv("TEND_URL");
    if (url && *url) {
        c->url = strdup(url);
        size_t l = strlen(c->url);
        while (l > 0 && c->url[l - 1] == '/')
            c->url[--l] = '\0';
        const char *tok = getenv("TEND_TOKEN");
        c->token = tok ? strdup(tok) : NULL;
        return 0;
    }
    tend_config *cfg;
    int r = cli_load_config(config_path ? config_path : cli_default_config(), &cfg);
    if (r != 0)
        return r;
    if (asprintf(&c->socket_path, "%s/tend.sock", cfg->state_dir) < 0)
        c->socket_path = NULL;
    c->state_dir = strdup(cfg->state_dir);
    c->url = strdup("http://localhost");
    tend_config_free(cfg);
    return c->socket_path && c->url ? 0 : EXIT_RUNTIME;
}

void client_close(client *c) {
    free(c->socket_path);
    free(c->url);
    free(c->token);
    free(c->state_dir);
    memset(c, 0, sizeof(*c));
}

void client_response_free(client_response *r) {
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *data) {
    client_response *r = data;
    size_t n = size * nmemb;
    if (r->len + n > 64 * 1024 * 1024)
        return 0;
    char *b = realloc(r->body, r->len + n + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, ptr, n);
    r->body = b;
    r->len += n;
    b[r->len] = '\0';
    return n;
}

/* libcurl, loaded on the first request (see curl-api.h). */
static const curl_api *C;

static CURL *prepare(client *c, const char *method, const char *path, const char *body, struct curl_slist **hdrs) {
    const char *why = NULL;
    if (!C && !(C = curl_api_get(&why))) {
        fprintf(stderr, "tend: cannot load libcurl: %s\n", why);
        return NULL;
    }
    CURL *e = C->easy_init();
    if (!e)
        return NULL;
    char *url;
    if (asprintf(&url, "%s%s", c->url, path) < 0) {
        C->easy_cleanup(e);
        return NULL;
    }
    C->easy_setopt(e, CURLOPT_URL, url);
    free(url);
    if (c->socket_path)
        C->easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, c->socket_path);
    C->easy_setopt(e, CURLOPT_NOPROXY, "*");
    C->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    C->easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    *hdrs = C->slist_append(NULL, "Content-Type: application/json");
    if (c->token) {
        char *h;
        if (asprintf(&h, "Authorization: Bearer %s", c->token) >= 0) {
            *hdrs = C->slist_append(*hdrs, h);
            free(h);
        }
    }
    C->easy_setopt(e, CURLOPT_HTTPHEADER, *hdrs);
    if (body) {
        C->easy_setopt(e, CURLOPT_POSTFIELDS, body);
        C->easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (strcmp(method, "POST") == 0) {
        C->easy_setopt(e, CURLOPT_POSTFIELDS, "");
        C->easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    }
    return e;
}

static int unreachable(client *c, CURLcode code) {
    if (c->socket_path)
        fprintf(stderr, "tend: no running instance reachable at %s (%s); start one with `tend up`\n",
                c->socket_path, C->easy_strerror(code));
    else
        fprintf(stderr, "tend: no running instance reachable at %s (%s)\n", c->url, C->easy_strerror(code));
    return EXIT_UNREACHABLE;
}

int client_request(client *c, const char *method, const char *path, const char *body, client_response *ret) {
    memset(ret, 0, sizeof(*ret));
    struct curl_slist *hdrs = NULL;
    CURL *e = prepare(c, method, path, body, &hdrs);
    if (!e)
        return EXIT_RUNTIME;
    C->easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    C->easy_setopt(e, CURLOPT_WRITEDATA, ret);
    C->easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    CURLcode code = C->easy_perform(e);
    int r = 0;
    if (code != CURLE_OK) {
        r = unreachable(c, code);
    } else {
        C->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &ret->status);
        if (ret->body)
            ret->json = json_loadb(ret->body, ret->len, JSON_DECODE_ANY, NULL);
    }
    C->slist_free_all(hdrs);
    C->easy_cleanup(e);
    if (r != 0)
        client_response_free(ret);
    return r;
}

int client_stream(client *c, const char *path, size_t (*cb)(char *, size_t, size_t, void *), void *data) {
    struct curl_slist *hdrs = NULL;
    CURL *e = prepare(c, "GET", path, NULL, &hdrs);
    if (!e)
        return EXIT_RUNTIME;
    C->easy_setopt(e, CURLOPT_WRITEFUNCTION, cb);
    C->easy_setopt(e, CURLOPT_WRITEDATA, data);
    CURLcode code = C->easy_perform(e);
    long status = 0;
    C->easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    C->slist_free_all(hdrs);
    C->easy_cleanup(e);
    if (code == CURLE_COULDNT_CONNECT || (code != CURLE_OK && status == 0 && code != CURLE_WRITE_ERROR &&
                                          code != CURLE_PARTIAL_FILE && code != CURLE_RECV_ERROR))
        return unreachable(c, code);
    return 0;
}

int client_start(client *c, int argc, char **argv, bool file_is_f, const char *extra_short,
                 const struct option *extra, const char *usage, client_opt_fn on_opt, void *data) {
    struct option opts[32];
    size_t n = 0;
    opts[n++] = (struct option){"file", required_argument, NULL, 'F'};
    opts[n++] = (struct option){"url", required_argument, NULL, 'U'};
    opts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    for (size_t i = 0; extra && extra[i].name && n < 31; i++)
        opts[n++] = extra[i];
    opts[n] = (struct option){0};
    char shortopts[64];
    snprintf(shortopts, sizeof(shortopts), "+%sh%s", file_is_f ? "f:" : "", extra_short ? extra_short : "");
    const char *file = NULL, *url = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
        int r = 0;
        switch (opt) {
        case 'F': file = optarg; break;
        case 'f':
            if (file_is_f) {
                file = optarg;
                break;
            }
            r = on_opt ? on_opt(opt, optarg, data) : EXIT_USAGE;
            break;
        case 'U': url = optarg; break;
        case 'h': printf("usage: %s\n", usage); return -1;
        case '?': return EXIT_USAGE;
        default: r = on_opt ? on_opt(opt, optarg, data) : EXIT_USAGE; break;
        }
        if (r)
            return r;
    }
    return client_open(c, file, url);
}

int client_call(client *c, const char *method, const char *path, const char *body, client_response *ret) {
    int r = client_request(c, method, path, body, ret);
    if (r)
        return r;
    if (ret->status < 200 || ret->status >= 300) {
        client_print_error(ret);
        client_response_free(ret);
        return EXIT_RUNTIME;
    }
    return 0;
}

int client_act_each(client *cl, int argc, char **argv, const char *prefix, const char *what,
                    const char *method, client_path_fn path_for, client_report_fn report, void *data) {
    if (optind >= argc) {
        cli_error("%s: name at least one %s", prefix, what);
        client_close(cl);
        return EXIT_USAGE;
    }
    int code = EXIT_OK;
    for (int i = optind; i < argc; i++) {
        char path[1024];
        if (!path_for(path, sizeof(path), argv[i], data)) {
            code = EXIT_RUNTIME;
            continue;
        }
        client_response resp;
        int r = client_call(cl, method, path, NULL, &resp);
        if (r == EXIT_RUNTIME) {
            code = EXIT_RUNTIME;
            continue;
        }
        if (r) {
            code = r;
            break;
        }
        report(argv[i], &resp, data);
        client_response_free(&resp);
    }
    client_close(cl);
    return code;
}

pid_t client_instance_pid(const client *c) {
    if (!c->state_dir)
        return -1;
    char path[4200], buf[32];
    snprintf(path, sizeof(path), "%s/tend.lock", c->state_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    long pid = strtol(buf, NULL, 10);
    return pid > 1 ? (pid_t)pid : -1;
}

void client_print_error(const client_response *r) {
    json_t *err = r->json ? json_object_get(r->json, "error") : NULL;
    const char *msg = err ? json_string_value(json_object_get(err, "message")) : NULL;
    if (!msg && r->json)
        msg = json_string_value(json_object_get(r->json, "message"));
    if (msg)
        fprintf(stderr, "tend: %s (HTTP %ld)\n", msg, r->status);
    else
        fprintf(stderr, "tend: request failed with HTTP %ld\n", r->status);
}
