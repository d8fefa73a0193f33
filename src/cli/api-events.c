/*
 * api-events.c - GET /api/v1/events, Server-Sent Events; see events.h.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "events.h"
#include "macros.h"
#include "parse.h"
#include "timeutil.h"

typedef struct event {
    uint64_t id;
    char type[32];
    char *text;             /* "id: N\nevent: T\ndata: {...}\n\n" */
    size_t len;
} event;

typedef struct subscriber subscriber;
struct subscriber {
    events_hub *hub;
    struct MHD_Connection *conn;
    uint64_t next_id;       /* first id not yet sent */
    size_t offset;          /* bytes of that event already sent */
    bool suspended;
    bool heartbeat_due;
    bool hello_sent;
    char types[128];        /* comma-separated type prefixes; "" = all */
    subscriber *prev, *next;
};

struct events_hub {
    struct api_server *srv;
    event ring[EVENTS_RING];
    uint64_t next_id;       /* id of the next event; ids start at 1 */
    subscriber *subs;
    unsigned n_subs;
    bool closed;
    uv_timer_t heartbeat;
};

/* MHD only acts on a resumed connection the next time it runs, and
 * nothing else may make it run soon (an event published from a probe
 * result or an exit, not from a request): so ask for a run on the next
 * loop iteration.  Safe from any callback, a request handler included. */
static void resume(subscriber *s) {
    if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
        api_server_wake(s->hub->srv);
    }
}

static void on_heartbeat(uv_timer_t *t) {
    events_hub *h = t->data;
    for (subscriber *s = h->subs; s; s = s->next) {
        s->heartbeat_due = true;
        resume(s);
    }
}

int events_hub_new(struct api_server *srv, events_hub **ret) {
    events_hub *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->srv = srv;
    h->next_id = 1;
    uv_timer_init(srv->loop, &h->heartbeat);
    h->heartbeat.data = h;
    uv_timer_start(&h->heartbeat, on_heartbeat, EVENTS_HEARTBEAT_MS, EVENTS_HEARTBEAT_MS);
    uv_unref((uv_handle_t *)&h->heartbeat);
    *ret = h;
    return 0;
}

void events_hub_close(events_hub *h) {
    if (!h || h->closed)
        return;
    h->closed = true;
    uv_timer_stop(&h->heartbeat);
    for (subscriber *s = h->subs; s; s = s->next)
        resume(s);
}

static void on_timer_closed(uv_handle_t *t) { free(t->data); }

void events_hub_free(events_hub *h) {
    if (!h)
        return;
    /* MHD_stop_daemon already freed every subscriber (free callback). */
    for (size_t i = 0; i < EVENTS_RING; i++)
        free(h->ring[i].text);
    uv_close((uv_handle_t *)&h->heartbeat, on_timer_closed);
}

unsigned events_subscribers(const events_hub *h) { return h ? h->n_subs : 0; }

static size_t put(char *p, const char *s, size_t n) {
    memcpy(p, s, n);
    return n;
}

uint64_t events_publish(events_hub *h, const char *type, const char *json, size_t len) {
    if (!h || h->closed)
        return 0;
    uint64_t id = h->next_id++;
    event *e = &h->ring[id % EVENTS_RING];
    free(e->text);
    e->id = id;
    snprintf(e->type, sizeof(e->type), "%s", type);
    /* "id: N\nevent: T\ndata: {...}\n\n" */
    char digits[FORMAT_U64_MAX];
    const char *ds = format_u64(id, digits);
    size_t tl = strlen(type), idl = (size_t)(digits + sizeof(digits) - ds);
    e->len = 4 + idl + 8 + tl + 7 + len + 2;
    e->text = malloc(e->len + 1);
    if (!e->text) {
        e->len = 0;
    } else {
        char *p = e->text;
        p += put(p, "id: ", 4);
        p += put(p, ds, idl);
        p += put(p, "\nevent: ", 8);
        p += put(p, type, tl);
        p += put(p, "\ndata: ", 7);
        p += put(p, json, len);
        p += put(p, "\n\n", 2);
        *p = '\0';
    }
    for (subscriber *s = h->subs; s; s = s->next)
        resume(s);
    return id;
}

static bool wants(const subscriber *s, const char *type) {
    if (!s->types[0])
        return true;
    const char *p = s->types;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n > 0 && strncmp(type, p, n) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max) {
    subscriber *s = cls;
    events_hub *h = s->hub;
    size_t out = 0;
    if (!s->hello_sent) {
        /* Tell EventSource clients how fast to reconnect. */
        int n = snprintf(buf, max, "retry: 2000\n\n");
        if (n > 0 && (size_t)n < max) {
            out += (size_t)n;
            s->hello_sent = true;
        }
    }
    /* A client too far behind skips to the oldest event still kept. */
    uint64_t oldest = h->next_id > EVENTS_RING ? h->next_id - EVENTS_RING : 1;
    if (s->next_id < oldest) {
        s->next_id = oldest;
        s->offset = 0;
    }
    while (s->next_id < h->next_id && out < max) {
        event *e = &h->ring[s->next_id % EVENTS_RING];
        if (e->id != s->next_id || !e->text || (s->offset == 0 && !wants(s, e->type))) {
            s->next_id++;
            s->offset = 0;
            continue;
        }
        size_t n = MIN(e->len - s->offset, max - out);
        memcpy(buf + out, e->text + s->offset, n);
        out += n;
        s->offset += n;
        if (s->offset == e->len) {
            s->next_id++;
            s->offset = 0;
        }
    }
    if (out == 0 && s->heartbeat_due && max >= 3) {
        memcpy(buf, ":\n\n", 3);
        out = 3;
    }
    s->heartbeat_due = false;
    if (out > 0) {
        h->srv->progress++; /* a long replay is progress for the MHD driver */
        return (ssize_t)out;
    }
    if (h->closed)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing to say: park the connection until there is. */
    s->suspended = true;
    MHD_suspend_connection(s->conn);
    return 0;
}

static void reader_free(void *cls) {
    subscriber *s = cls;
    events_hub *h = s->hub;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->n_subs--;
    free(s);
}

static void get_events(api_request *req) {
    events_hub *h = req->srv->events;
    if (!h || h->closed) {
        api_error(req, 503, "shutting_down", "tend is shutting down");
        return;
    }
    if (h->n_subs >= EVENTS_MAX_SUBSCRIBERS) {
        api_error(req, 503, "too_many_streams", "at most %d event streams at once", EVENTS_MAX_SUBSCRIBERS);
        return;
    }
    subscriber *s = calloc(1, sizeof(*s));
    if (!s) {
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    s->hub = h;
    s->conn = req->conn;
    s->next_id = h->next_id; /* new events only, unless resuming */
    const char *types = api_query(req, "types");
    if (types)
        snprintf(s->types, sizeof(s->types), "%s", types);
    const char *last = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *q = api_query(req, "since");
    if (!last)
        last = q;
    if (last && *last) {
        char *end;
        unsigned long long v = strtoull(last, &end, 10);
        if (!*end && v < h->next_id)
            s->next_id = v + 1;
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, s, reader_free);
    if (!resp) {
        free(s);
        api_error(req, 503, "out_of_memory", "out of memory");
        return;
    }
    s->next = h->subs;
    if (h->subs)
        h->subs->prev = s;
    h->subs = s;
    h->n_subs++;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_queue_response(req->conn, 200, resp);
    MHD_destroy_response(resp);
    req->status = 200;
}

const api_route api_events_routes[] = {
    {"GET", "/api/v1/events", get_events, 0},
    {0},
};
