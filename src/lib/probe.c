/*
 * probe.c - see probe.h.  An attempt is a heap object that owns its libuv
 * handles; it outlives its probe when cancelled, until libuv has closed
 * everything, and then frees itself (a reference count of open handles).
 *
 * http:// probes are spoken here directly over a uv_tcp_t (one GET with
 * "Connection: close", the response read to its end or to its
 * Content-Length): a readiness check needs no more, and libcurl, which
 * pulls in some thirty libraries (TLS, Kerberos, LDAP...), costs ~10 ms
 * to load and ~3 MB of resident memory.  https:// (and URLs with
 * credentials) go through libcurl (http-client.c), loaded only then.
 */
#include "probe.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
    bool refused;           /* the connection was refused: nothing listens */
    /* http via libcurl (https) */
    http_req *req;
    reaper *reaper;
    /* http spoken here */
    uv_write_t write;
    char *request;          /* the request text, until written */
    char *buf;              /* the response so far, NUL-terminated */
    size_t len, cap;
};

/* The response kept: headers plus the first HTTP_MAX_BODY bytes of body. */
#define HTTP_MAX_HEADERS (16 * 1024)
#define HTTP_MAX_RESPONSE (HTTP_MAX_HEADERS + HTTP_MAX_BODY)

/* Where an http:// URL points; false for anything libcurl must handle
 * (https, credentials, an over-long host). */
typedef struct http_target {
    char host[256];         /* without brackets */
    int port;
    const char *authority;  /* for the Host header (into the URL) */
    size_t authority_len;
    const char *path;       /* path and query, fragment excluded */
    size_t path_len;
} http_target;

static bool parse_http_url(const char *url, http_target *t) {
    if (strncasecmp(url, "http://", 7) != 0)
        return false;
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0 || memchr(a, '@', alen))
        return false;
    const char *host = a, *port = NULL;
    size_t hlen;
    if (a[0] == '[') {
        const char *e = memchr(a, ']', alen);
        if (!e)
            return false;
        host = a + 1;
        hlen = (size_t)(e - host);
        if (e + 1 < a + alen) {
            if (e[1] != ':')
                return false;
            port = e + 2;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = colon ? (size_t)(colon - a) : alen;
        if (colon)
            port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof(t->host))
        return false;
    memcpy(t->host, host, hlen);
    t->host[hlen] = '\0';
    t->port = 80;
    if (port) {
        long v = 0;
        const char *end = a + alen;
        if (port == end)
            return false;
        for (const char *c = port; c < end; c++) {
            if (!isdigit((unsigned char)*c) || (v = v * 10 + (*c - '0')) > 65535)
                return false;
        }
        if (v == 0)
            return false;
        t->port = (int)v;
    }
    t->authority = a;
    t->authority_len = alen;
    t->path = a + alen;
    t->path_len = strcspn(t->path, "#");
    return true;
}

bool probe_needs_curl(const tend_probe_spec *s) {
    http_target t;
    return s->kind == TEND_PROBE_HTTP && s->url && !parse_http_url(s->url, &t);
}

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
    if (--a->refs == 0) {
        free(a->request);
        free(a->buf);
        free(a);
    }
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
    if (a->kind == TEND_PROBE_TCP || (a->kind == TEND_PROBE_HTTP && !a->req)) {
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
        p->refused = !ok && a->refused;
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

/* --- http, spoken here --- */

static void http_send(probe_attempt *a);

/* --- tcp --- */

static void on_connect(uv_connect_t *req, int status) {
    probe_attempt *a = req->data;
    if (status == UV_ECANCELED || a->finished)
        return;
    if (status == 0) {
        if (a->kind == TEND_PROBE_HTTP)
            http_send(a);
        else
            attempt_finish(a, true, NULL);
    } else {
        char msg[128];
        a->refused = status == UV_ECONNREFUSED;
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

static int tcp_start(probe_attempt *a, const char *host, int portnum, uv_loop_t *loop) {
    struct sockaddr_storage ss;
    if (!host || !*host || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, portnum, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(host, portnum, (struct sockaddr_in6 *)&ss) == 0) {
        tcp_connect(a, (struct sockaddr *)&ss);
        return 0;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", portnum);
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

/* --- http, spoken here --- */

/* Removes chunked transfer coding in place; returns the body length, or
 * what could be decoded of it. */
static size_t dechunk(char *body, size_t len) {
    size_t in = 0, out = 0;
    while (in < len) {
        char *end;
        unsigned long n = strtoul(body + in, &end, 16);
        char *eol = memchr(body + in, '\n', len - in);
        if (end == body + in || !eol)
            break;
        in = (size_t)(eol - body) + 1;
        if (n == 0)
            break;
        size_t take = n < len - in ? n : len - in;
        memmove(body + out, body + in, take);
        out += take;
        in += take;
        if (in < len && body[in] == '\r')
            in++;
        if (in < len && body[in] == '\n')
            in++;
    }
    body[out] = '\0';
    return out;
}

/* The value of header name (lower case, with the colon) in the header
 * block hdr, or NULL. */
static const char *find_header(const char *hdr, const char *name, size_t *ret_len) {
    size_t nl = strlen(name);
    for (const char *l = strchr(hdr, '\n'); l && *++l; l = strchr(l, '\n')) {
        if (strncasecmp(l, name, nl) != 0)
            continue;
        const char *v = l + nl;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vl = strcspn(v, "\r\n");
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        *ret_len = vl;
        return v;
    }
    return NULL;
}

/* Judges the response in a->buf; done: the peer closed (or the buffer is
 * full), so whatever is there is all there will be.  Returns false when
 * more must be read first. */
static bool http_judge(probe_attempt *a, bool done) {
    char *buf = a->buf ? a->buf : "";
    char *hend = strstr(buf, "\r\n\r\n");
    size_t sep = 4;
    if (!hend) {
        hend = strstr(buf, "\n\n");
        sep = 2;
    }
    if (!hend) {
        if (!done)
            return false;
        attempt_finish(a, false, a->len ? "malformed HTTP response (no end of headers)"
                                        : "empty reply from server");
        return true;
    }
    char *body = hend + sep;
    size_t body_len = a->len - (size_t)(body - buf);
    char saved = *hend;
    *hend = '\0'; /* the header block is a string now */
    size_t vl;
    const char *te = find_header(buf, "transfer-encoding:", &vl);
    bool chunked = te && vl >= 7 && strncasecmp(te + vl - 7, "chunked", 7) == 0;
    const char *cl = find_header(buf, "content-length:", &vl);
    if (!done) {
        if (chunked || !cl) {
            /* Complete once the peer closes ("Connection: close"). */
            *hend = saved;
            return false;
        }
        unsigned long long want = strtoull(cl, NULL, 10);
        if (body_len < want && body_len < HTTP_MAX_BODY) {
            *hend = saved;
            return false;
        }
    }
    int status = 0;
    if (strncmp(buf, "HTTP/", 5) != 0) {
        attempt_finish(a, false, "malformed HTTP response (no status line)");
        return true;
    }
    const char *sp = strchr(buf, ' ');
    if (!sp || !isdigit((unsigned char)sp[1]) || !isdigit((unsigned char)sp[2]) ||
        !isdigit((unsigned char)sp[3])) {
        attempt_finish(a, false, "malformed HTTP response (no status code)");
        return true;
    }
    status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    if (chunked)
        body_len = dechunk(body, body_len);
    if (body_len > HTTP_MAX_BODY)
        body[HTTP_MAX_BODY] = '\0';
    char msg[128];
    probe *p = a->owner;
    if (status < 200 || status >= 400) {
        snprintf(msg, sizeof(msg), "HTTP %d", status);
        attempt_finish(a, false, msg);
    } else if (p && p->spec->expect_body && !strstr(body, p->spec->expect_body)) {
        snprintf(msg, sizeof(msg), "HTTP %d: body does not contain the expected text", status);
        attempt_finish(a, false, msg);
    } else {
        attempt_finish(a, true, NULL);
    }
    return true;
}

static void http_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    probe_attempt *a = h->data;
    /* Grown as needed: most health answers are a few hundred bytes. */
    if (a->cap - a->len < 1024 && a->cap < HTTP_MAX_RESPONSE + 1) {
        size_t cap = a->cap ? a->cap * 4 : 4096;
        if (cap > HTTP_MAX_RESPONSE + 1)
            cap = HTTP_MAX_RESPONSE + 1;
        char *nb = realloc(a->buf, cap);
        if (nb) {
            a->buf = nb;
            a->cap = cap;
        }
    }
    if (!a->buf || a->cap - a->len <= 1) {
        *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: judged in http_read */
        return;
    }
    *buf = uv_buf_init(a->buf + a->len, (unsigned)(a->cap - a->len - 1));
}

static void http_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    probe_attempt *a = st->data;
    if (a->finished || n == 0)
        return;
    if (n > 0) {
        a->len += (size_t)n;
        a->buf[a->len] = '\0';
        (void)http_judge(a, a->len + 1 >= HTTP_MAX_RESPONSE + 1);
        return;
    }
    if (n == UV_EOF || (n == UV_ENOBUFS && a->buf)) {
        (void)http_judge(a, true);
        return;
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "read: %s", uv_strerror((int)n));
    attempt_finish(a, false, msg);
}

static void http_written(uv_write_t *w, int status) {
    probe_attempt *a = w->data;
    free(a->request);
    a->request = NULL;
    if (status < 0 && !a->finished) {
        char msg[128];
        snprintf(msg, sizeof(msg), "write: %s", uv_strerror(status));
        attempt_finish(a, false, msg);
    }
    attempt_unref(a);
}

static void http_send(probe_attempt *a) {
    probe *p = a->owner;
    http_target t;
    if (!p || !parse_http_url(p->spec->url, &t)) {
        attempt_finish(a, false, "invalid URL");
        return;
    }
    /* HTTP/1.1 with "Connection: close": the end of the response is the
     * end of the connection (or its Content-Length). */
    size_t cap = t.path_len + t.authority_len + 128;
    a->request = malloc(cap);
    if (!a->request) {
        attempt_finish(a, false, "out of memory");
        return;
    }
    int n = snprintf(a->request, cap,
                     "GET %s%.*s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: tend/0.1\r\nAccept: */*\r\n"
                     "Connection: close\r\n\r\n",
                     t.path_len && t.path[0] == '/' ? "" : "/", (int)t.path_len, t.path,
                     (int)t.authority_len, t.authority);
    uv_buf_t b = uv_buf_init(a->request, (unsigned)n);
    a->write.data = a;
    int r = uv_write(&a->write, (uv_stream_t *)&a->tcp, &b, 1, http_written);
    if (r < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "write: %s", uv_strerror(r));
        attempt_finish(a, false, msg);
        return;
    }
    a->refs++;
    r = uv_read_start((uv_stream_t *)&a->tcp, http_alloc, http_read);
    if (r < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "read: %s", uv_strerror(r));
        attempt_finish(a, false, msg);
    }
}

static int http_native_start(probe_attempt *a, const tend_probe_spec *s, uv_loop_t *loop) {
    http_target t;
    if (!parse_http_url(s->url, &t))
        return -EINVAL;
    return tcp_start(a, t.host, t.port, loop);
}

/* --- http via libcurl --- */

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
    if (!probe_needs_curl(s))
        return http_native_start(a, s, ctx->loop);
    if (!ctx->http)
        return -ENOPKG; /* libcurl could not be loaded */
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
    case TEND_PROBE_TCP: r = tcp_start(a, s->host, s->port, p->ctx->loop); break;
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
