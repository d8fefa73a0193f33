/*
 * http-client.c - see http-client.h.  The shape follows curl's
 * multi-uv.c example: CURLMOPT_SOCKETFUNCTION maps each socket curl wants
 * watched to a uv_poll_t, CURLMOPT_TIMERFUNCTION to one uv_timer_t.
 */
#include "http-client.h"

#include "curl-api.h"
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <time.h>

/* libcurl, loaded by the first http_client_new(); every other function
 * runs with a client, so after that. */
static const curl_api *C;

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    http_req *reqs;         /* in flight, doubly linked */
    bool freeing;
};

struct http_req {
    http_client *client;
    CURL *easy;
    http_done_cb cb;
    void *data;
    char *body_out;         /* POST body */
    struct curl_slist *headers;
    char *buf;
    size_t len;
    double retry_after_s;
    http_req *prev, *next;
};

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    http_client *client;
} sock_ctx;

static void check_done(http_client *c);

static void on_sock_close(uv_handle_t *h) { free(h->data); }

static void on_poll(uv_poll_t *h, int status, int events) {
    sock_ctx *sc = h->data;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    http_client *c = sc->client;
    C->multi_socket_action(c->multi, sc->fd, flags, &running);
    check_done(c);
}

static int on_socket(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp) {
    http_client *c = userp;
    sock_ctx *sc = socketp;
    if (action == CURL_POLL_REMOVE) {
        if (sc) {
            uv_poll_stop(&sc->poll);
            uv_close((uv_handle_t *)&sc->poll, on_sock_close);
            C->multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    if (!sc) {
        sc = calloc(1, sizeof(*sc));
        if (!sc)
            return -1;
        sc->fd = s;
        sc->client = c;
        if (uv_poll_init_socket(c->loop, &sc->poll, s) < 0) {
            free(sc);
            return -1;
        }
        sc->poll.data = sc;
        C->multi_assign(c->multi, s, sc);
    }
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&sc->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t) {
    http_client *c = t->data;
    int running;
    C->multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
    http_client *c = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    http_req *r = userdata;
    size_t n = size * nmemb;
    size_t room = HTTP_MAX_BODY - r->len;
    size_t take = n < room ? n : room;
    if (take > 0) {
        memcpy(r->buf + r->len, ptr, take);
        r->len += take;
        r->buf[r->len] = '\0';
    }
    return n; /* keep reading, discard the excess */
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
    http_req *r = userdata;
    size_t n = size * nmemb;
    static const char key[] = "retry-after:";
    if (n > sizeof(key) && strncasecmp(ptr, key, sizeof(key) - 1) == 0) {
        char tmp[64];
        size_t vl = n - (sizeof(key) - 1);
        if (vl >= sizeof(tmp))
            vl = sizeof(tmp) - 1;
        memcpy(tmp, ptr + sizeof(key) - 1, vl);
        tmp[vl] = '\0';
        char *end;
        double v = strtod(tmp, &end);
        if (end != tmp && v >= 0)
            r->retry_after_s = v;
        else {
            /* An HTTP date. */
            time_t t = C->getdate(tmp, NULL);
            if (t > 0) {
                double d = difftime(t, time(NULL));
                r->retry_after_s = d > 0 ? d : 0;
            }
        }
    }
    return n;
}

static void unlink_req(http_req *r) {
    http_client *c = r->client;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

static void req_free(http_req *r) {
    C->multi_remove_handle(r->client->multi, r->easy);
    C->easy_cleanup(r->easy);
    C->slist_free_all(r->headers);
    free(r->body_out);
    free(r->buf);
    free(r);
}

static void check_done(http_client *c) {
    CURLMsg *msg;
    int left;
    while ((msg = C->multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        http_req *r = NULL;
        C->easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r)
            continue;
        http_result res = {.curl_code = msg->data.result, .retry_after_s = r->retry_after_s};
        if (res.curl_code != CURLE_OK)
            res.error = C->easy_strerror(msg->data.result);
        C->easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
        double t = 0;
        C->easy_getinfo(r->easy, CURLINFO_TOTAL_TIME, &t);
        res.total_ms = t * 1000.0;
        res.body = r->buf;
        res.body_len = r->len;
        unlink_req(r);
        http_done_cb cb = r->cb;
        void *data = r->data;
        /* Remove before the callback: it may start a new request. */
        C->multi_remove_handle(c->multi, r->easy);
        if (cb)
            cb(data, &res);
        req_free(r);
    }
}

int http_client_new(uv_loop_t *loop, http_client **ret) {
    if (!C && !(C = curl_api_get(NULL)))
        return -ENOPKG;
    http_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->multi = C->multi_init();
    if (!c->multi) {
        free(c);
        return -ENOMEM;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    C->multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    C->multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    C->multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    C->multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    *ret = c;
    return 0;
}

static void on_client_timer_close(uv_handle_t *h) {
    http_client *c = h->data;
    C->multi_cleanup(c->multi);
    free(c);
}

void http_client_free(http_client *c) {
    if (!c)
        return;
    while (c->reqs) {
        http_req *r = c->reqs;
        unlink_req(r);
        req_free(r);
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_client_timer_close);
}

int http_request(http_client *c, const http_req_opts *o, http_done_cb cb, void *data, http_req **ret) {
    http_req *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->client = c;
    r->cb = cb;
    r->data = data;
    r->retry_after_s = -1;
    r->buf = malloc(HTTP_MAX_BODY + 1);
    r->easy = C->easy_init();
    if (!r->buf || !r->easy)
        goto oom;
    r->buf[0] = '\0';
    CURL *e = r->easy;
    C->easy_setopt(e, CURLOPT_URL, o->url);
    C->easy_setopt(e, CURLOPT_PRIVATE, r);
    C->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    C->easy_setopt(e, CURLOPT_NOPROXY, "*");
    C->easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    C->easy_setopt(e, CURLOPT_WRITEDATA, r);
    C->easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    C->easy_setopt(e, CURLOPT_HEADERDATA, r);
    C->easy_setopt(e, CURLOPT_USERAGENT, "tend/" "0.1");
    C->easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (o->timeout_ms > 0)
        C->easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
    if (o->method && strcmp(o->method, "POST") == 0) {
        r->body_out = malloc(o->body_len + 1);
        if (!r->body_out)
            goto oom;
        if (o->body_len)
            memcpy(r->body_out, o->body, o->body_len);
        r->body_out[o->body_len] = '\0';
        C->easy_setopt(e, CURLOPT_POST, 1L);
        C->easy_setopt(e, CURLOPT_POSTFIELDS, r->body_out);
        C->easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        char hdr[256];
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", o->content_type ? o->content_type : "application/json");
        r->headers = C->slist_append(NULL, hdr);
        if (!r->headers)
            goto oom;
        C->easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    }
    if (C->multi_add_handle(c->multi, e) != CURLM_OK)
        goto oom;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    if (ret)
        *ret = r;
    return 0;
oom:
    if (r->easy)
        C->easy_cleanup(r->easy);
    C->slist_free_all(r->headers);
    free(r->body_out);
    free(r->buf);
    free(r);
    return -ENOMEM;
}

void http_cancel(http_req *r) {
    if (!r)
        return;
    unlink_req(r);
    req_free(r);
}
