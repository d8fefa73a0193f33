/*
 * handler-http.c - the http handler (SPEC 5): the task JSON (or the batch)
 * is POSTed to the queue's URL through the loop's libcurl multi client
 * (http-client.c; libcurl is loaded on the first request).  2xx succeeds;
 * 4xx other than 408 and 429 fails for good; anything else (5xx, 408,
 * 429, no answer, the timeout) is a failed attempt.  A Retry-After header
 * sets the wait before the next attempt.  The response body is the batch
 * handler's answer ({"failed": [...]}) and, on failure, the error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handler.h"
#include "http-client.h"
#include "macros.h"

typedef struct http_run {
    task_run *run;
    http_req *req;
} http_run;

static void on_response(void *data, const http_result *res) {
    http_run *h = data;
    task_run *run = h->run;
    run->priv = NULL;
    char msg[1024];
    handler_result out = {.retry_after_ms = -1};
    if (res->status >= 200 && res->status < 300) {
        out.outcome = HANDLER_OK;
        out.output = res->body;
        out.output_len = res->body_len;
    } else {
        if (res->status == 0)
            snprintf(msg, sizeof(msg), "no response: %s", res->error ? res->error : "request failed");
        else
            snprintf(msg, sizeof(msg), "HTTP %ld%s%.900s", res->status, res->body_len ? ": " : "",
                     res->body ? res->body : "");
        out.error = msg;
        out.outcome = res->status >= 400 && res->status < 500 && res->status != 408 && res->status != 429
                          ? HANDLER_PERMANENT
                          : HANDLER_FAILED;
        if (res->retry_after_s >= 0)
            out.retry_after_ms = (int64_t)(res->retry_after_s * 1000.0);
    }
    free(h);
    handler_done(run, &out);
}

static int http_start(task_run *run) {
    handler_env *env = run->env;
    if (!env->http) {
        int r = http_client_new(env->loop, &env->http);
        if (r < 0)
            return r;
    }
    size_t len = 0;
    char *body = handler_input_json(run, &len);
    if (!body)
        return -ENOMEM;
    http_run *h = calloc(1, sizeof(*h));
    if (!h) {
        free(body);
        return -ENOMEM;
    }
    h->run = run;
    http_req_opts o = {.method = "POST", .url = run->spec->url, .body = body, .body_len = len,
                       .content_type = "application/json", .timeout_ms = run->timeout_ms};
    int r = http_request(env->http, &o, on_response, h, &h->req);
    free(body);
    if (r < 0) {
        free(h);
        return r;
    }
    run->priv = h;
    return 0;
}

/* The request is cancelled (no callback) and the run ends at once; the
 * engine turns the abort reason into the outcome. */
static void http_abort(task_run *run) {
    http_run *h = run->priv;
    if (!h)
        return;
    run->priv = NULL;
    http_cancel(h->req);
    free(h);
    handler_result out = {.outcome = HANDLER_FAILED, .error = "request aborted", .retry_after_ms = -1};
    handler_done(run, &out);
}

const handler_backend handler_http = {"http", http_start, http_abort};
