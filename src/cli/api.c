/*
 * api.c - the HTTP server core: listeners, the libuv/MHD glue, routing,
 * authentication, body limits and the reply helpers.  See api.h.
 */
#include "api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "events.h"
#include "macros.h"
#include "mhd-api.h"
#include "timeutil.h"
#include "utf8.h"

static const api_route *const route_groups[] = {
    api_health_routes, api_system_routes, api_services_routes,
    api_metrics_routes, api_events_routes, api_dashboard_routes,
    api_sessions_routes, api_tasks_routes,
};

/* ---- routing ---- */

/* Matches one pattern against a path; on success stores copies of the
 * {param} segments.  Segments are compared whole; empty segments (a
 * trailing slash, "//") never match. */
static bool match_pattern(const char *pattern, const char *path, char **params, size_t *n) {
    size_t np = 0;
    if (strcmp(pattern, "/") == 0) { /* the root has no segment */
        *n = 0;
        return strcmp(path, "/") == 0;
    }
    const char *p = pattern, *u = path;
    while (*p && *u) {
        if (*p != '/' || *u != '/')
            goto nomatch;
        p++;
        u++;
        const char *pe = strchrnul(p, '/'), *ue = strchrnul(u, '/');
        if (ue == u)
            goto nomatch;
        if (*p == '{') {
            if (np == API_MAX_PARAMS)
                goto nomatch;
            params[np] = strndup(u, (size_t)(ue - u));
            if (!params[np])
                goto nomatch;
            np++;
        } else if ((size_t)(pe - p) != (size_t)(ue - u) || memcmp(p, u, (size_t)(pe - p)) != 0) {
            goto nomatch;
        }
        p = pe;
        u = ue;
    }
    if (*p || *u)
        goto nomatch;
    *n = np;
    return true;
nomatch:
    for (size_t i = 0; i < np; i++) {
        free(params[i]);
        params[i] = NULL;
    }
    return false;
}

const api_route *api_route_match(const char *method, const char *path, char **params,
                                 size_t *n_params, int *ret_status) {
    bool path_matched = false;
    *n_params = 0;
    for (size_t g = 0; g < ELEMENTSOF(route_groups); g++) {
        for (const api_route *r = route_groups[g]; r->pattern; r++) {
            size_t n = 0;
            if (!match_pattern(r->pattern, path, params, &n))
                continue;
            if (strcmp(r->method, method) == 0 ||
                (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
                *n_params = n;
                return r;
            }
            for (size_t i = 0; i < n; i++) {
                free(params[i]);
                params[i] = NULL;
            }
            path_matched = true;
        }
    }
    *ret_status = path_matched ? 405 : 404;
    return NULL;
}

/* ---- replies ---- */

static void record(api_request *req, int status) {
    api_stats *st = &req->srv->stats;
    double ms = (double)(now_mono_us() - req->start_us) / 1000.0;
    int64_t sec = now_mono_ms() / 1000;
    size_t slot = (size_t)(sec % API_RATE_SLOTS);
    if (st->slot_sec[slot] != sec) {
        st->slot_sec[slot] = sec;
        st->slot_requests[slot] = st->slot_errors[slot] = 0;
        st->slot_latency_ms[slot] = 0;
    }
    req->srv->progress++;
    st->slot_requests[slot]++;
    st->slot_latency_ms[slot] += ms;
    st->requests_total++;
    st->latency_ms_total += ms;
    if (status >= 500) {
        st->errors_total++;
        st->slot_errors[slot]++;
    }
}

static void queue(api_request *req, int status, struct MHD_Response *resp, const char *content_type) {
    if (!resp) {
        req->status = 500;
        return;
    }
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_queue_response(req->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    req->status = status;
    record(req, status);
}

void api_reply_text(api_request *req, int status, const char *content_type, char *text, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        free(text);
    queue(req, status, resp, content_type);
}

void api_reply_copy(api_request *req, int status, const char *content_type, const char *text, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    queue(req, status, resp, content_type);
}

void api_cache_clear(struct api_cache *c) {
    if (c->resp)
        MHD_destroy_response(c->resp);
    free(c->body);
    memset(c, 0, sizeof(*c));
}

void api_reply_cached(api_request *req, struct api_cache *c, const char *content_type) {
    if (!c->resp) {
        /* The body lives as long as the cache entry; MHD keeps the response
         * alive while a connection still sends it. */
        c->resp = MHD_create_response_from_buffer(c->len, c->body, MHD_RESPMEM_MUST_COPY);
        if (!c->resp) {
            api_error(req, 503, "out_of_memory", "out of memory");
            return;
        }
        MHD_add_response_header(c->resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        MHD_add_response_header(c->resp, "Cache-Control", "no-store");
    }
    MHD_queue_response(req->conn, (unsigned)c->status, c->resp);
    req->status = c->status;
    record(req, c->status);
}

void api_reply_static(api_request *req, int status, const char *content_type, const char *text, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_PERSISTENT);
    queue(req, status, resp, content_type);
}

void api_reply_json(api_request *req, int status, json_t *json) {
    char *text = json ? json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(json);
    if (!text) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        api_reply_static(req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    size_t len = strlen(text);
    api_reply_text(req, status, "application/json", text, len);
}

json_t *api_json_textn(const char *text, size_t n) {
    if (!text)
        return json_null();
    if (utf8_valid(text, n) && !memchr(text, '\0', n))
        return json_stringn_nocheck(text, n);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    memcpy(copy, text, n);
    copy[n] = '\0';
    utf8_sanitize(copy); /* stops at an embedded NUL: the rest is dropped */
    json_t *j = json_string_nocheck(copy);
    free(copy);
    return j;
}

json_t *api_json_text(const char *text) { return text ? api_json_textn(text, strlen(text)) : json_null(); }

void api_error(api_request *req, int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages quote client input (paths, names): JSON needs UTF-8. */
    api_reply_json(req, status, json_pack("{s:{s:s, s:o}}", "error", "code", code, "message", api_json_text(msg)));
}

const char *api_query(api_request *req, const char *key) {
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

json_t *api_time_json(int64_t wall_ms) {
    char buf[32];
    return json_string(format_rfc3339_ms(wall_ms, buf, sizeof(buf)));
}

/* ---- authentication ---- */

static bool token_ok(const api_server *srv, struct MHD_Connection *conn) {
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return false;
    const char *given = h + 7;
    size_t gl = strlen(given), tl = strlen(srv->token);
    /* Constant time in the token's length: no early exit on a mismatch. */
    unsigned char diff = (unsigned char)(gl != tl);
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)(srv->token[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

/* ---- the MHD access handler ---- */

typedef struct listener {
    api_server *srv;
    bool is_unix;
} listener;

static listener tcp_listener, unix_listener;

static void dispatch(api_request *req) {
    int status = 404;
    const api_route *r = api_route_match(req->method, req->url, req->params, &req->n_params, &status);
    if (!r) {
        if (status == 405)
            api_error(req, 405, "method_not_allowed", "%s is not allowed on %s", req->method, req->url);
        else
            api_error(req, 404, "not_found", "no route %s %s", req->method, req->url);
        return;
    }
    if (!(r->flags & API_PUBLIC) && req->srv->token && !req->via_unix && !token_ok(req->srv, req->conn)) {
        api_error(req, 401, "unauthorized", "a valid \"Authorization: Bearer <token>\" header is required");
        return;
    }
    if (req->too_large) {
        api_error(req, 413, "payload_too_large", "request body exceeds %d bytes", API_MAX_BODY);
        return;
    }
    if (req->body_len > 0) {
        json_error_t jerr;
        req->json = json_loadb(req->body, req->body_len, JSON_DECODE_ANY, &jerr);
        if (!req->json) {
            api_error(req, 400, "bad_json", "malformed JSON at line %d column %d: %s", jerr.line,
                      jerr.column, jerr.text);
            return;
        }
    }
    r->handler(req);
    if (req->status == 0 && !req->deferred)
        api_error(req, 500, "internal", "the handler produced no response");
}

/* ---- deferred replies (api.h) ---- */

static void defer_unlink(api_request *req) {
    api_server *srv = req->srv;
    if (req->defer_prev)
        req->defer_prev->defer_next = req->defer_next;
    else if (srv->deferred == req)
        srv->deferred = req->defer_next;
    if (req->defer_next)
        req->defer_next->defer_prev = req->defer_prev;
    req->defer_prev = req->defer_next = NULL;
}

void api_defer(api_request *req, api_defer_fn cancel, void *data) {
    api_server *srv = req->srv;
    req->deferred = true;
    req->cancel = cancel;
    req->defer_data = data;
    req->defer_prev = NULL;
    req->defer_next = srv->deferred;
    if (srv->deferred)
        srv->deferred->defer_prev = req;
    srv->deferred = req;
    MHD_suspend_connection(req->conn);
}

void api_resume(api_request *req, api_defer_fn fn) {
    defer_unlink(req);
    req->resume = fn;
    MHD_resume_connection(req->conn);
    api_server_wake(req->srv);
}

/* At stop: MHD refuses to stop with suspended connections. */
static void defer_cancel_all(api_server *srv) {
    while (srv->deferred) {
        api_request *req = srv->deferred;
        defer_unlink(req);
        req->deferred = false;
        if (req->cancel)
            req->cancel(req);
        MHD_resume_connection(req->conn);
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
    listener *l = cls;
    api_request *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        req->srv = l->srv;
        req->conn = conn;
        req->method = method;
        req->url = url;
        req->via_unix = l->is_unix;
        req->start_us = now_mono_us();
        *con_cls = req;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        unsigned long long announced = cl ? strtoull(cl, NULL, 10) : 0;
        if (announced > API_MAX_BODY) {
            req->too_large = true;
            api_error(req, 413, "payload_too_large", "request body exceeds %d bytes", API_MAX_BODY);
        } else if (announced == 0 && !te &&
                   MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT)) {
            /* "Expect: 100-continue" without a body: answer now, or
             * libmicrohttpd 0.9.75 sends "100 Continue" and then waits for
             * a body that never comes, its timeout saying "0 ms" all along
             * (fuzz/regressions/hang-expect-100-continue-unix).  An early
             * answer makes MHD close the connection afterwards, which is
             * why this is not done for every request without a body. */
            dispatch(req);
        }
        return MHD_YES;
    }
    if (req->resume) { /* a deferred reply, resumed */
        api_defer_fn fn = req->resume;
        req->resume = NULL;
        req->deferred = false;
        fn(req);
        if (req->status == 0)
            api_error(req, 500, "internal", "the deferred handler produced no response");
        return MHD_YES;
    }
    if (req->status)
        return MHD_YES; /* answered early (no body, 413); MHD discards the rest */
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        if (req->too_large || req->body_len + n > API_MAX_BODY) {
            req->too_large = true;
        } else {
            char *b = realloc(req->body, req->body_len + n + 1);
            if (!b)
                return MHD_NO;
            memcpy(b + req->body_len, upload_data, n);
            req->body = b;
            req->body_len += n;
            b[req->body_len] = '\0';
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    dispatch(req);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    api_request *req = *con_cls;
    if (!req)
        return;
    if (req->deferred || req->resume) {
        /* Suspended and never resumed (defensive), or resumed but the
         * client went away before the reply: the owner lets go. */
        defer_unlink(req);
        req->deferred = false;
        req->resume = NULL;
        if (req->cancel)
            req->cancel(req);
    }
    for (size_t i = 0; i < req->n_params; i++)
        free(req->params[i]);
    json_decref(req->json);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

/* ---- the loop glue ----
 *
 * Each daemon is run when its epoll descriptor turns readable (poll), when
 * the timeout MHD_get_timeout() asked for expires (timer), and on the
 * next loop iteration after api_server_wake() (an idle handle: a
 * connection was resumed, which MHD only notices when it runs).
 *
 * MHD_get_timeout() says 0 when MHD wants to run again at once (data left
 * in a connection's buffer, a resumed connection).  That is never honoured
 * with a 0 ms timer started inside the timer callback: libuv 1.44 runs
 * such a timer again in the same pass, so a connection on which MHD makes
 * no progress kept uv_run() from ever polling again.  Instead the daemon
 * runs on the next loop iteration (after I/O, signals and timers had their
 * turn), and when MHD keeps saying 0 without making progress (no request
 * answered, nothing written to an event stream) for API_SPIN_RUNS runs in
 * a row, the driver backs off: the daemon's poll watcher is stopped and it
 * runs from a timer every 1, 2, 4 ... up to API_BACKOFF_MAX_MS ms until
 * MHD asks for a real timeout again or makes progress (a stuck connection
 * is closed by MHD's connection timeout).  So no connection can block the
 * loop or make it spin.
 */
#define API_SPIN_RUNS 64
#define API_BACKOFF_MAX_MS 100

static void on_drv_timer(uv_timer_t *t);
static void on_poll(uv_poll_t *p, int status, int events);
static void on_again(uv_idle_t *h);

static void run_daemon(api_server *srv, struct api_driver *drv) {
    struct MHD_Daemon *d = *drv->daemon;
    if (!d || !drv->active)
        return;
    uint64_t progress = srv->progress;
    drv->again = false;
    MHD_run(d);
    MHD_UNSIGNED_LONG_LONG to;
    bool has_to = MHD_get_timeout(d, &to) == MHD_YES;
    if (!has_to || to > 0 || srv->progress != progress)
        drv->zero_runs = 0;
    if (has_to && to == 0)
        drv->zero_runs++;
    if (drv->zero_runs > API_SPIN_RUNS) {
        unsigned shift = MIN(drv->zero_runs - API_SPIN_RUNS - 1, 7u);
        if (!drv->backing_off) {
            uv_poll_stop(&drv->poll);
            drv->backing_off = true;
        }
        uv_timer_start(&drv->timer, on_drv_timer, MIN(1u << shift, (unsigned)API_BACKOFF_MAX_MS), 0);
        return;
    }
    if (drv->backing_off) {
        uv_poll_start(&drv->poll, UV_READABLE, on_poll);
        drv->backing_off = false;
    }
    if (!has_to) {
        uv_timer_stop(&drv->timer);
    } else if (to == 0) {
        uv_timer_stop(&drv->timer);
        drv->again = true;
        if (!srv->idle_active) {
            uv_idle_start(&srv->again_idle, on_again);
            srv->idle_active = true;
        }
    } else {
        uv_timer_start(&drv->timer, on_drv_timer, (uint64_t)to, 0);
    }
}

static void on_drv_timer(uv_timer_t *t) {
    struct api_driver *drv = t->data;
    api_server *srv = drv->poll.data;
    run_daemon(srv, drv);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    (void)status;
    (void)events;
    api_server *srv = p->data;
    run_daemon(srv, p == &srv->tcp_drv.poll ? &srv->tcp_drv : &srv->unix_drv);
}

static void on_again(uv_idle_t *h) {
    api_server *srv = h->data;
    uv_idle_stop(h);
    srv->idle_active = false;
    if (srv->tcp_drv.again)
        run_daemon(srv, &srv->tcp_drv);
    if (srv->unix_drv.again)
        run_daemon(srv, &srv->unix_drv);
}

void api_server_kick(api_server *srv) {
    run_daemon(srv, &srv->tcp_drv);
    run_daemon(srv, &srv->unix_drv);
}

void api_server_wake(api_server *srv) {
    if (!srv->loop || (!srv->tcp_drv.active && !srv->unix_drv.active))
        return;
    srv->tcp_drv.again = srv->tcp_drv.active;
    srv->unix_drv.again = srv->unix_drv.active;
    if (!srv->idle_active) {
        uv_idle_start(&srv->again_idle, on_again);
        srv->idle_active = true;
    }
}

static int watch_daemon(api_server *srv, struct api_driver *drv, struct MHD_Daemon **d) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(*d, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info)
        return -EINVAL;
    int r = uv_poll_init(srv->loop, &drv->poll, info->epoll_fd);
    if (r < 0)
        return r;
    drv->daemon = d;
    drv->poll.data = srv;
    uv_timer_init(srv->loop, &drv->timer);
    drv->timer.data = drv;
    drv->active = true;
    uv_poll_start(&drv->poll, UV_READABLE, on_poll);
    run_daemon(srv, drv);
    return 0;
}

static void unwatch_daemon(struct api_driver *drv) {
    if (!drv->active)
        return;
    uv_poll_stop(&drv->poll);
    uv_close((uv_handle_t *)&drv->poll, NULL);
    uv_close((uv_handle_t *)&drv->timer, NULL);
    drv->active = drv->again = drv->backing_off = false;
}

/* Parses "host:port", "[v6]:port" or ":port" into ss. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len) {
    char host[256];
    const char *colon = strrchr(s, ':');
    if (!colon)
        return -EINVAL;
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return -EINVAL;
        *len = sizeof(*a);
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (hl == 0 || strcmp(host, "0.0.0.0") == 0)
        a->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "localhost") == 0)
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -EINVAL;
    *len = sizeof(*a);
    return 0;
}

static int open_unix_socket(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    (void)unlink(path);
    /* Create it 0600 from the start: no window with wider permissions. */
    mode_t old = umask(0177);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || chmod(path, 0600) < 0 || listen(fd, 128) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static char *read_token(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "api.token_file %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    if (n < 16) {
        snprintf(err, errlen, "api.token_file %s: the token must be at least 16 characters", path);
        return NULL;
    }
    return strdup(buf);
}

static const unsigned base_flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;

/* Listens on the api.listen address as libmicrohttpd would have:
 * SO_REUSEADDR (a restarted tend binds while the last one's connections
 * linger in TIME_WAIT) and, for IPv6, that address only. */
static int open_tcp_socket(const struct sockaddr_storage *ss, socklen_t len) {
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        (ss->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0) ||
        bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, 1024) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* One daemon on the bound socket *fd, which libmicrohttpd then owns (and
 * closes when it stops), driven from the loop.  what names the listener
 * in the message. */
static int start_daemon(api_server *srv, listener *l, int *fd, unsigned limit, struct MHD_Daemon **d,
                        struct api_driver *drv, const char *what, char *err, size_t errlen) {
    *d = MHD_start_daemon(base_flags, 0, NULL, NULL, on_access, l, MHD_OPTION_LISTEN_SOCKET, *fd,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, limit,
                          MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
    if (!*d) {
        snprintf(err, errlen, "%s: cannot start the HTTP server", what);
        return -EIO;
    }
    *fd = -1;
    int r = watch_daemon(srv, drv, d);
    if (r < 0)
        snprintf(err, errlen, "%s: %s", what, uv_strerror(r));
    return r;
}

/* Hands the bound sockets to libmicrohttpd's daemons. */
static int serve(api_server *srv, char *err, size_t errlen) {
    char what[4300];
    snprintf(what, sizeof(what), "control socket %s", srv->socket_path);
    int r = start_daemon(srv, &unix_listener, &srv->unix_fd, 256u, &srv->unix_d, &srv->unix_drv, what, err, errlen);
    if (r < 0 || srv->tcp_fd < 0)
        return r;
    snprintf(what, sizeof(what), "api.listen %s", srv->cfg->api_listen);
    return start_daemon(srv, &tcp_listener, &srv->tcp_fd, 1024u, &srv->tcp, &srv->tcp_drv, what, err, errlen);
}

static void on_load_poll_closed(uv_handle_t *h) {
    api_server *srv = h->data;
    srv->load_waiting = false;
}

static void on_loaded(uv_poll_t *h, int status, int events) {
    api_server *srv = h->data;
    uv_poll_stop(h);
    uv_close((uv_handle_t *)h, on_load_poll_closed);
    char err[512];
    if (serve(srv, err, sizeof(err)) < 0 && srv->failed)
        srv->failed(srv, err);
}

int api_server_start(api_server *srv, uv_loop_t *loop, const tend_config *cfg, supervisor *sup,
                     char *err, size_t errlen) {
    srv->loop = loop;
    srv->unix_fd = srv->tcp_fd = -1;
    uv_idle_init(loop, &srv->again_idle);
    srv->again_idle.data = srv;
    srv->cfg = cfg;
    srv->sup = sup;
    srv->started_wall_ms = now_wall_ms();
    srv->started_mono_ms = now_mono_ms();
    tcp_listener = (listener){srv, false};
    unix_listener = (listener){srv, true};
    if (cfg->api_token_file) {
        srv->token = read_token(cfg->api_token_file, err, errlen);
        if (!srv->token)
            return -EINVAL;
    }
    int r = events_hub_new(srv, &srv->events);
    if (r < 0) {
        snprintf(err, errlen, "events: %s", strerror(-r));
        return r;
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/tend.sock", cfg->state_dir);
    srv->socket_path = strdup(path);
    if ((srv->unix_fd = open_unix_socket(path)) < 0) {
        snprintf(err, errlen, "control socket %s: %s", path, strerror(-srv->unix_fd));
        return srv->unix_fd;
    }
    if (cfg->api_listen && cfg->api_listen[0]) {
        struct sockaddr_storage ss;
        socklen_t sl;
        if (parse_listen(cfg->api_listen, &ss, &sl) < 0) {
            snprintf(err, errlen, "api.listen: invalid address \"%s\" (try 127.0.0.1:7070)", cfg->api_listen);
            return -EINVAL;
        }
        if ((srv->tcp_fd = open_tcp_socket(&ss, sl)) < 0) {
            snprintf(err, errlen, "api.listen %s: cannot listen: %s", cfg->api_listen, strerror(-srv->tcp_fd));
            return srv->tcp_fd;
        }
    }
    return 0;
}

void api_server_serve(api_server *srv) {
    char err[512];
    if (srv->unix_fd < 0 || srv->load_waiting)
        return; /* stopped, served, or about to be */
    int lfd = mhd_api_load_fd();
    if (lfd >= 0) {
        int r = uv_poll_init(srv->loop, &srv->load_poll, lfd);
        if (r == 0) {
            srv->load_poll.data = srv;
            srv->load_waiting = true;
            uv_poll_start(&srv->load_poll, UV_READABLE, on_loaded);
            return;
        }
        /* Else wait for the load here: the first MHD_* call joins it. */
    }
    if (serve(srv, err, sizeof(err)) < 0 && srv->failed)
        srv->failed(srv, err);
}

void api_server_stop(api_server *srv) {
    if (srv->load_waiting && !uv_is_closing((uv_handle_t *)&srv->load_poll)) {
        uv_poll_stop(&srv->load_poll);
        uv_close((uv_handle_t *)&srv->load_poll, on_load_poll_closed);
    }
    if (srv->loop) {
        if (srv->unix_fd >= 0)
            close(srv->unix_fd);
        if (srv->tcp_fd >= 0)
            close(srv->tcp_fd);
        srv->unix_fd = srv->tcp_fd = -1;
    }
    defer_cancel_all(srv);
    events_hub_close(srv->events);
    unwatch_daemon(&srv->tcp_drv);
    unwatch_daemon(&srv->unix_drv);
    if (srv->again_idle.loop && !uv_is_closing((uv_handle_t *)&srv->again_idle)) {
        uv_idle_stop(&srv->again_idle);
        uv_close((uv_handle_t *)&srv->again_idle, NULL);
        srv->idle_active = false;
    }
    if (srv->tcp)
        MHD_stop_daemon(srv->tcp);
    if (srv->unix_d)
        MHD_stop_daemon(srv->unix_d);
    srv->tcp = srv->unix_d = NULL;
    events_hub_free(srv->events);
    srv->events = NULL;
    if (srv->socket_path)
        (void)unlink(srv->socket_path);
    free(srv->socket_path);
    srv->socket_path = NULL;
    free(srv->token);
    srv->token = NULL;
    api_cache_clear(&srv->health_cache);
    api_cache_clear(&srv->metrics_cache);
}
