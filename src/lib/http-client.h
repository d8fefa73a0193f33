/*
 * http-client.h - asynchronous HTTP requests on the loop: libcurl's multi
 * interface driven by libuv (socket and timer callbacks), so any number of
 * probes and handler calls run at once on the loop thread with no thread
 * per request.  Proxies from the environment are ignored: probes target
 * the local services.
 */
#ifndef TEND_LIB_HTTP_CLIENT_H
#define TEND_LIB_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_MAX_BODY (64 * 1024)

typedef struct http_client http_client;
typedef struct http_req http_req;

typedef struct http_result {
    int curl_code;          /* CURLE_OK when a response arrived */
    const char *error;      /* curl's message when curl_code != 0 */
    long status;            /* HTTP status, 0 without a response */
    const char *body;       /* first HTTP_MAX_BODY bytes, NUL-terminated */
    size_t body_len;
    double retry_after_s;   /* Retry-After in seconds, -1 when absent */
    double total_ms;
} http_result;

typedef void (*http_done_cb)(void *data, const http_result *res);

typedef struct http_req_opts {
    const char *method;     /* "GET" (default) or "POST" */
    const char *url;
    const char *body;       /* POST body, copied */
    size_t body_len;
    const char *content_type;
    int64_t timeout_ms;
} http_req_opts;

int http_client_new(uv_loop_t *loop, http_client **ret);
/* Cancels every request in flight (no callbacks) and frees the client
 * once libuv has closed its handles. */
void http_client_free(http_client *c);

/* Starts a request; cb runs exactly once on the loop unless the request is
 * cancelled first.  0 or -errno. */
int http_request(http_client *c, const http_req_opts *o, http_done_cb cb, void *data, http_req **ret);
void http_cancel(http_req *r);

#endif
