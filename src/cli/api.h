/*
 * api.h - the HTTP API server: libmicrohttpd driven from the libuv loop.
 *
 * MHD runs in "external epoll" mode: it owns an epoll descriptor that
 * becomes readable whenever any of its sockets has work; the loop watches
 * that one descriptor with a uv_poll_t and calls MHD_run(), and a
 * uv_timer_t follows MHD_get_timeout().  So every request handler runs on
 * the loop thread, next to the supervisor's state, with no locks; a
 * handler must never block.  Two daemons share one route table: TCP on
 * api.listen and, always, the unix socket <state_dir>/tend.sock (0600).
 *
 * Routes are data: each api-*.c file exports a NULL-terminated api_route
 * array, listed once in api.c.
 */
#ifndef TEND_CLI_API_H
#define TEND_CLI_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <tend/spec.h>
#include <uv.h>

#include "supervisor.h"

#define API_MAX_BODY (1024 * 1024)
#define API_MAX_PARAMS 4

struct MHD_Connection;
typedef struct api_server api_server;
typedef struct events_hub events_hub;

typedef struct api_request {
    api_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;            /* path, without the query */
    char *params[API_MAX_PARAMS]; /* {name} segments, in order */
    size_t n_params;
    char *body;
    size_t body_len;
    bool too_large;
    bool via_unix;              /* came over the unix socket */
    json_t *json;               /* the parsed body, or NULL when empty */
    int64_t start_us;
    int status;                 /* set by the reply helpers */
    /* A deferred reply (api_defer): see below. */
    bool deferred;
    void (*resume)(struct api_request *req);
    void (*cancel)(struct api_request *req);
    void *defer_data;
    struct api_request *defer_prev, *defer_next;
} api_request;

typedef void (*api_handler)(api_request *req);
typedef void (*api_defer_fn)(api_request *req);

enum {
    API_PUBLIC = 1 << 0,        /* no token needed (health, metrics, dashboard) */
    API_JSON_BODY = 1 << 1,     /* the body, if any, must be JSON */
};

typedef struct api_route {
    const char *method;
    const char *pattern;        /* "/api/v1/services/{name}/start" */
    api_handler handler;
    unsigned flags;
} api_route;

/* Counters behind /health "metrics" and the tend_http_* metrics. */
#define API_RATE_SLOTS 60
typedef struct api_stats {
    uint64_t requests_total;
    uint64_t errors_total;      /* 5xx */
    double latency_ms_total;
    int64_t slot_sec[API_RATE_SLOTS];
    uint32_t slot_requests[API_RATE_SLOTS];
    uint32_t slot_errors[API_RATE_SLOTS];
    double slot_latency_ms[API_RATE_SLOTS];
} api_stats;

struct api_server {
    uv_loop_t *loop;
    const tend_config *cfg;
    supervisor *sup;
    char *token;                /* NULL: no token configured */
    struct MHD_Daemon *tcp, *unix_d;
    /* How each daemon is driven from the loop (api.c, "the loop glue"). */
    struct api_driver {
        struct MHD_Daemon **daemon; /* &srv->tcp or &srv->unix_d */
        uv_poll_t poll;             /* MHD's epoll descriptor */
        uv_timer_t timer;           /* MHD_get_timeout(), or a back-off */
        bool active;                /* handles initialised */
        bool again;                 /* run on the next loop iteration */
        bool backing_off;           /* poll stopped, timer armed */
        unsigned zero_runs;         /* runs in a row after which MHD said "0 ms" */
    } tcp_drv, unix_drv;
    uint64_t progress;              /* answers queued and event-stream bytes written:
                                     * what the driver counts as MHD making progress */
    uv_idle_t again_idle;           /* runs the drivers flagged `again` */
    bool idle_active;
    char *socket_path;
    /* Bound and listening, not yet handed to a daemon (-1 once handed or
     * closed): api_server_start binds them, serve() gives them to
     * libmicrohttpd once it is loaded. */
    int unix_fd, tcp_fd;
    uv_poll_t load_poll;            /* on mhd_api_load_fd(), while the library loads */
    bool load_waiting;
    int64_t started_wall_ms, started_mono_ms;
    api_stats stats;
    events_hub *events;
    /* Set by the owner: shutdown and start requests from the API. */
    void (*request_shutdown)(api_server *srv, const char *reason);
    void (*request_start)(api_server *srv);
    /* The daemons could not be started after api_server_start returned
     * (libmicrohttpd could not be loaded): message says why. */
    void (*failed)(api_server *srv, const char *message);
    void *owner;
    /* Rendered /health and /metrics bodies, reused for at most
     * API_CACHE_US and only while state_gen is unchanged: under load the
     * loop serialises a few of them a second, not one per request. */
    uint64_t state_gen;
    struct api_cache {
        char *body;
        size_t len;
        int status;
        int64_t at_us;
        uint64_t gen;
        struct MHD_Response *resp; /* shared by every reply (refcounted by MHD) */
    } health_cache, metrics_cache;
    bool shutdown_requested;
    api_request *deferred;          /* suspended requests awaiting api_resume */
    struct api_sessions *sessions;  /* api-sessions.c; set by the owner (NULL: 503) */
    struct task_engine *engine;     /* api-tasks.c; set by the owner (NULL: no queues) */
    int64_t shutdown_timeout_ms;    /* from the shutdown request, -1: default */
};

/*
 * Opens both listeners: the control socket and api.listen are bound and
 * listening when it returns, so that a client may connect from then on
 * (and waits in the listen backlog until api_server_serve's daemons
 * answer).  0 or -errno with a message in err: -EINVAL for a
 * configuration problem (a missing, unreadable or too short token file,
 * an invalid api.listen: `tend up` exits 2), anything else for a runtime
 * one (a busy port: exit 1).
 */
int api_server_start(api_server *srv, uv_loop_t *loop, const tend_config *cfg, supervisor *sup,
                     char *err, size_t errlen);
/*
 * Serves the listeners with libmicrohttpd's daemons: at once if the
 * library is loaded or no load is under way (it is then loaded here),
 * else from the loop when the preload ends (mhd-api.h).  `tend up` calls
 * it once the first services have exec'd, so that neither the load nor
 * the daemons' start are on their way.  If the daemons cannot start,
 * srv->failed is called (from here or from the loop).  Nothing once the
 * server is stopped (or already served).
 */
void api_server_serve(api_server *srv);
/* Stops accepting, closes every connection and the loop handles. */
void api_server_stop(api_server *srv);
/* Runs both daemons now.  Never from inside a request handler (MHD_run
 * is not reentrant): use api_server_wake() there. */
void api_server_kick(api_server *srv);
/* Makes both daemons run on the next loop iteration: after resuming a
 * suspended connection from any callback, including a request handler. */
void api_server_wake(api_server *srv);

#define API_CACHE_US 100000

/* Marks the cached views stale (any service state or health change). */
static inline void api_server_touch(api_server *srv) { srv->state_gen++; }

/* Reply helpers: each queues exactly one response; the json is stolen. */
void api_reply_copy(api_request *req, int status, const char *content_type, const char *text, size_t len);
/* Replies with c's body, (re)building its shared response when needed. */
void api_reply_cached(api_request *req, struct api_cache *c, const char *content_type);
void api_cache_clear(struct api_cache *c);
void api_reply_json(api_request *req, int status, json_t *json);
void api_reply_text(api_request *req, int status, const char *content_type, char *text, size_t len);
void api_reply_static(api_request *req, int status, const char *content_type, const char *text, size_t len);
void api_error(api_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/*
 * Deferred replies, for answers that wait for something (a store commit:
 * "answered once durable").  A handler calls api_defer() instead of
 * replying: the connection is suspended.  Later (on the loop, never from
 * inside a handler of the same request) the owner calls api_resume(req,
 * fn): the connection is resumed and fn(req) runs on MHD's next pass and
 * must reply.  If the server stops first, cancel(req) runs instead (the
 * owner must forget req; it is freed right after) and the client gets no
 * answer.  data is the owner's, in req->defer_data.
 */
void api_defer(api_request *req, api_defer_fn cancel, void *data);
void api_resume(api_request *req, api_defer_fn fn);
/* The value of a query parameter, or NULL. */
const char *api_query(api_request *req, const char *key);

/* The routing decision, exposed for unit tests and the fuzz target:
 * returns the route matching method and path and fills params (caller
 * frees them); NULL with *ret_status 404 or 405. */
const api_route *api_route_match(const char *method, const char *path, char **params,
                                 size_t *n_params, int *ret_status);

/* Route groups (one file each). */
extern const api_route api_health_routes[];
extern const api_route api_system_routes[];
extern const api_route api_services_routes[];
extern const api_route api_metrics_routes[];
extern const api_route api_events_routes[];
extern const api_route api_dashboard_routes[];
extern const api_route api_sessions_routes[];
extern const api_route api_tasks_routes[];

/* Shared JSON views of the supervisor's state (api-services.c). */
json_t *api_service_json(const service *s, bool detail);
const char *api_system_state(const supervisor *sup);
json_t *api_health_json(api_server *srv, int *ret_http_status);
/* A JSON string of text that may not be valid UTF-8 (client input,
 * sd_notify texts, service output): invalid bytes become '?'. */
json_t *api_json_text(const char *text);
json_t *api_json_textn(const char *text, size_t len);
/* RFC 3339 with milliseconds, UTC. */
json_t *api_time_json(int64_t wall_ms);

#endif
