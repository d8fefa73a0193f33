/*
 * probe.h - one attempt of a readiness or liveness check.
 *
 * A probe runs at most one attempt at a time; the caller (the service
 * state machine) decides when to run the next one and what consecutive
 * results mean.  Kinds: tcp (connect), http (one GET, spoken directly
 * for http:// and through the loop's curl multi for https://; 2xx/3xx
 * and the optional expected body substring pass), exec
 * (argv in its own process group; exit 0 passes; SIGKILL to the group at
 * the probe timeout).  notify probes are passive and never "run".
 * Every attempt is bounded by spec->probe_timeout_ms.
 */
#ifndef TEND_LIB_PROBE_H
#define TEND_LIB_PROBE_H

#include <stdbool.h>
#include <tend/spec.h>
#include <uv.h>

#include "http-client.h"
#include "reaper.h"

typedef struct probe_ctx {
    uv_loop_t *loop;
    reaper *reaper;
    http_client *http;
    char *const *envp;      /* environment for exec probes */
    const char *cwd;        /* working directory for exec probes */
} probe_ctx;

/* ok: passed; latency_ms: attempt duration; error: why it failed (NULL
 * when ok), valid during the call only. */
typedef void (*probe_cb)(void *data, bool ok, double latency_ms, const char *error);

typedef struct probe_attempt probe_attempt;

typedef struct probe {
    const tend_probe_spec *spec;
    probe_ctx *ctx;
    probe_cb cb;
    void *data;
    probe_attempt *attempt; /* in flight, or NULL */
    bool refused;           /* the last attempt failed with a refused connection */
} probe;

void probe_init(probe *p, probe_ctx *ctx, const tend_probe_spec *spec, probe_cb cb, void *data);
/* Starts an attempt; the callback runs later on the loop, never from
 * within this call.  0, -EBUSY when one is in flight, or -errno. */
int probe_run(probe *p);
/* Abandons the attempt in flight, if any: no callback will run. */
void probe_cancel(probe *p);
static inline bool probe_in_flight(const probe *p) { return p->attempt != NULL; }
const char *probe_kind_name(tend_probe_kind k);
/* An http probe that needs libcurl (https://, or credentials in the URL);
 * plain http:// is spoken by probe.c itself. */
bool probe_needs_curl(const tend_probe_spec *s);

#endif
