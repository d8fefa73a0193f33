/*
 * probe.c - see probe.h.  An attempt is a heap object that owns its libuv
 * handles; it outlives its probe when cancelled, until libuv has closed
 * everything, and then frees itself (a reference count of open handles).
 */
#include "probe.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "macros.h"
#include "spawn.h"
#include "timeutil.h"

struct probe_attempt {
    probe *owner;           /* NULL once finished or cancelled */
    tend_probe_kind kind;
    int64_t start_us;
    int refs;               /* open handles and pending requests */
    bool finished;
    uv_timer_t timer;
    /* tcp */
    uv_tcp_t tcp;
    bool tcp_open;
    uv_connect_t connect;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    /* exec */
    pid_t pid;
    /* http */
    http_req *req;
    reaper *reaper;
};

const char *probe_kind_name(tend_probe_kind k) {
    switch (k) {
    case TEND_PROBE_EXEC: return "exec";
    case TEND_PROBE_TCP: return "tcp";
    case TEND_PROBE_HTTP: return "http";
    case TEND_PROBE_NOTIFY: return "notify";
    default: return "none";
    }
}

void probe_init(probe *p, probe_ctx *ctx, const tend_probe_spec *spec, probe_cb cb, void *data) {
    *p = (probe){.spec = spec, .ctx = ctx, .cb = cb, .data = data};
}

static void attempt_unref(probe_attempt *a) {
    if (--a->refs == 0)
        free(a);
}

static void on_handle_closed(uv_handle_t *h) { attempt_unref(h->data); }

/* Delivers the result once, then releases what the attempt holds. */
static void attempt_finish(probe_attempt *a, bool ok, const char *error) {
    if (a->finished)
        return;
    a->finished = true;
    probe *p = a->owner;
    a->owner = NULL;
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, on_handle_closed);
    if (a->kind == TEND_PROBE_TCP) {
        if (a->gai_pending)
            uv_cancel((uv_req_t *)&a->gai);
        if (a->tcp_open) {
            a->tcp_open = false;
            uv_close((uv_handle_t *)&a->tcp, on_handle_closed);
        }
    } else if (a->kind == TEND_PROBE_EXEC) {
        if (a->pid > 0)
            kill(-a->pid, SIGKILL); /* reaped by on_exec_exit */
    } else if (a->kind == TEND_PROBE_HTTP) {
        if (a->req) {
            http_cancel(a->req);
            a->req = NULL;
            attempt_unref(a);
        }
    }
    if (p) {
        p->attempt = NULL;
        double ms = (double)(now_mono_us() - a->start_us) / 1000.0;
        p->cb(p->data, ok, ms, error);
    }
}

static void on_timeout(uv_timer_t *t) {
    probe_attempt *a = t->data;
    char msg[64];
    snprintf(msg, sizeof(msg), "timed out after %lld ms",
             (long long)((now_mono_us() - a->start_us) / 1000));
    attempt_finish(a, false, msg);
}

/* --- tcp --- */

static void on_connect(uv_connect_t *req, int status) {
    probe_attempt *a = req->data;
    if (status == UV_ECANCELED)
        return;
    if (status == 0)
        attempt_finish(a, true, NULL);
    else {
        char msg[128];
        snprintf(msg, sizeof(msg), "connect: %s", uv_strerror(status));
        attempt_finish(a, false, msg);
    }
}

static void tcp_connect(probe_attempt *a, const struct sockaddr *sa) {
    uv_loop_t *loop = a->timer.loop;
    int r = uv_tcp_init(loop, &a->tcp);
    if (r < 0) {
        attempt_finish(a, false, uv_strerror(r));
        return;
    }
    a->tcp.data = a;
    a->tcp_open = true;
    a->refs++;
    a->connect.data = a;
    r = uv_tcp_connect(&a->connect, &a->tcp, sa, on_connect);
    if (r < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "connect: %s", uv_strerror(r));
        attempt_finish(a, false, msg);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    probe_attempt *a = req->data;
    a->gai_pending = false;
    if (!a->finished) {
        if (status < 0 || !res) {
            char msg[160];
            snprintf(msg, sizeof(msg), "resolve: %s", uv_strerror(status));
            attempt_finish(a, false, msg);
        } else {
            tcp_connect(a, res->ai_addr);
        }
    }
    uv_freeaddrinfo(res);
    attempt_unref(a);
}

static int tcp_start(probe_attempt *a, const tend_probe_spec *s, uv_loop_t *loop) {
    struct sockaddr_storage ss;
    const char *host = s->host && *s->host ? s->host : "127.0.0.1";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, s->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, s->port, (struct sockaddr_in6 *)&ss) == 0) {
        tcp_connect(a, (struct sockaddr *)&ss);
        return 0;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    a->gai.data = a;
    a->refs++;
    a->gai_pending = true;
    int r = uv_getaddrinfo(loop, &a->gai, on_resolved, host, port, &hints);
    if (r < 0) {
        a->gai_pending = false;
        a->refs--;
        return r;
    }
    return 0;
}

/* --- exec --- */

static void on_exec_exit(void *data, pid_t pid, int status) {
    probe_attempt *a = data;
    a->pid = 0;
    if (!a->finished) {
        if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            attempt_finish(a, true, NULL);
        } else {
            char msg[64];
            if (status >= 0 && WIFEXITED(status))
                snprintf(msg, sizeof(msg), "exit status %d", WEXITSTATUS(status));
            else if (status >= 0 && WIFSIGNALED(status))
                snprintf(msg, sizeof(msg), "killed by signal %d", WTERMSIG(status));
            else
                snprintf(msg, sizeof(msg), "abandoned");
            attempt_finish(a, false, msg);
        }
    }
    attempt_unref(a);
}

static int exec_start(probe_attempt *a, const tend_probe_spec *s, probe_ctx *ctx) {
    spawn_opts o = {.argv = s->argv, .envp = ctx->envp, .cwd = ctx->cwd, .out_fd = -1};
    const char *step = NULL;
    pid_t pid;
    int r = spawn_process(&o, &pid, &step);
    if (r < 0)
        return r;
    r = reaper_watch(ctx->reaper, pid, on_exec_exit, a);
    if (r < 0) {
        kill(-pid, SIGKILL);
        return r;
    }
    a->pid = pid;
    a->refs++;
    return 0;
}

/* --- http --- */

static void on_http_done(void *data, const http_result *res) {
    probe_attempt *a = data;
    a->req = NULL;
    char msg[256];
    probe *p = a->owner;
    if (res->curl_code != 0) {
        snprintf(msg, sizeof(msg), "%s", res->error ? res->error : "request failed");
        attempt_finish(a, false, msg);
    } else if (res->status < 200 || res->status >= 400) {
        snprintf(msg, sizeof(msg), "HTTP %ld", res->status);
        attempt_finish(a, false, msg);
    } else if (p && p->spec->expect_body && !strstr(res->body, p->spec->expect_body)) {
        snprintf(msg, sizeof(msg), "HTTP %ld: body does not contain the expected text", res->status);
        attempt_finish(a, false, msg);
    } else {
        attempt_finish(a, true, NULL);
    }
    attempt_unref(a);
}

static int http_start(probe_attempt *a, const tend_probe_spec *s, probe_ctx *ctx) {
    http_req_opts o = {.method = "GET", .url = s->url, .timeout_ms = s->probe_timeout_ms};
    int r = http_request(ctx->http, &o, on_http_done, a, &a->req);
    if (r < 0)
        return r;
    a->refs++;
    return 0;
}

int probe_run(probe *p) {
    if (p->attempt)
        return -EBUSY;
    const tend_probe_spec *s = p->spec;
    if (s->kind == TEND_PROBE_NOTIFY || s->kind == TEND_PROBE_NONE)
        return -EINVAL;
    probe_attempt *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->owner = p;
    a->kind = s->kind;
    a->start_us = now_mono_us();
    a->reaper = p->ctx->reaper;
    uv_timer_init(p->ctx->loop, &a->timer);
    a->timer.data = a;
    a->refs = 1; /* the timer */
    int64_t to = s->probe_timeout_ms > 0 ? s->probe_timeout_ms : 3000;
    uv_timer_start(&a->timer, on_timeout, (uint64_t)to, 0);
    p->attempt = a;
    int r;
    switch (s->kind) {
    case TEND_PROBE_TCP: r = tcp_start(a, s, p->ctx->loop); break;
    case TEND_PROBE_EXEC: r = exec_start(a, s, p->ctx); break;
    case TEND_PROBE_HTTP: r = http_start(a, s, p->ctx); break;
    default: r = -EINVAL;
    }
    if (r < 0) {
        /* Report asynchronously like any other failure: the timer fires
         * at once with the error. */
        a->owner = NULL;
        p->attempt = NULL;
        attempt_finish(a, false, NULL);
        return r;
    }
    return 0;
}

void probe_cancel(probe *p) {
    probe_attempt *a = p->attempt;
    if (!a)
        return;
    a->owner = NULL;
    p->attempt = NULL;
    attempt_finish(a, false, NULL);
}
