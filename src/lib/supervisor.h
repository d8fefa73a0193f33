/*
 * supervisor.h - a whole system of services on one loop: dependency-driven
 * startup (each service starts the moment its own dependencies meet their
 * conditions), the startup verdict (critical failure aborts, non-critical
 * degrades and blocks its ready-dependents), supervision, and shutdown in
 * reverse dependency order under a hard deadline.
 *
 * Single-threaded: every function runs on the loop thread.  The supervisor
 * reports through callbacks and never prints.
 */
#ifndef TEND_LIB_SUPERVISOR_H
#define TEND_LIB_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <tend/spec.h>
#include <syslog.h> /* LOG_* levels for the log callback */
#include <uv.h>

#include "graph.h"
#include "guard.h"
#include "http-client.h"
#include "reaper.h"
#include "service.h"

typedef enum supervisor_phase {
    PHASE_IDLE = 0,     /* created; nothing started (tend up --no-start) */
    PHASE_STARTING,
    PHASE_STARTED,      /* every selected service settled */
    PHASE_STOPPING,
    PHASE_DONE,         /* everything stopped; exit_code is final */
} supervisor_phase;

typedef struct supervisor_callbacks {
    void *data;
    /* One event line; service is NULL for the system itself. */
    void (*log)(void *data, int level, const char *svc, const char *msg);
    /* One line of a service's output. */
    void (*output)(void *data, const char *svc, size_t index, const char *line, size_t len);
    void (*state_changed)(void *data, const service *s, service_state from, const char *reason);
    void (*health_changed)(void *data, const service *s, service_health from);
    void (*phase_changed)(void *data, supervisor_phase phase);
    /* Once after supervisor_start(): the services it started have all
     * exec'd (or failed to).  Work put off until then (tend up loads
     * libmicrohttpd) no longer competes with their start for the CPU and
     * for the address space they were cloned in. */
    void (*spawns_settled)(void *data);
} supervisor_callbacks;

typedef struct supervisor {
    uv_loop_t *loop;
    const tend_config *cfg;
    graph *graph;
    service *services;
    size_t n;
    supervisor_phase phase;
    supervisor_callbacks cb;
    reaper reaper;
    guard guard;
    http_client *http;
    probe_ctx probe_ctx;
    uv_timer_t deadline;
    uv_timer_t park_timer;      /* parks pending services ahead (service_park) */
    bool park_enabled;
    uv_signal_t sig_int, sig_term;
    int exit_code;
    /* Work of the owner that must end before shutdown completes (the task
     * engine draining): supervisor_hold_shutdown/_release_shutdown. */
    unsigned shutdown_holds;
    int64_t shutdown_timeout_ms;    /* deadline when startup fails (default 30s) */
    int64_t created_ms, start_ms, started_ms, stop_ms;
    char failure[1024];      /* why startup failed, or "" */
    char stop_reason[128];
    bool rng_seeded;
    uint64_t rng;
    char notify_prefix[40];     /* "@tend/<pid>-<random>/": abstract notify socket names */
    int lock_fd;                /* flock on <state_dir>/tend.lock, -1 when none */
    logfile_precreator *precreate; /* creating the services' log files ahead (output.h) */
    bool finishing;             /* finish() has begun */
    bool settled_told;          /* cb.spawns_settled has been called */
    char **environ;             /* environ when the supervisor was made: what
                                 * every service's environment starts from */
    bool initial_pass;          /* supervisor_start() evaluating every
                                 * service in dependency order: a change
                                 * does not re-evaluate the dependents */
} supervisor;

/*
 * Creates the supervisor for cfg (which must outlive it) on loop: opens
 * state_dir/logs, the notify sockets, the guard process.  selected: NULL
 * for all services, else a NULL-terminated list of names whose
 * dependencies (transitively) are included.  0 or -errno; on error a
 * message is written to err.
 */
int supervisor_new(uv_loop_t *loop, const tend_config *cfg, char *const *selected,
                   const supervisor_callbacks *cb, supervisor **ret, char *err, size_t errlen);
/* Starts every selected service in dependency order. */
int supervisor_start(supervisor *sup);
/* Graceful shutdown; deadline_ms bounds it (then SIGKILL to everything).
 * Idempotent.  exit_code is what the run ends with. */
void supervisor_shutdown(supervisor *sup, const char *reason, int exit_code, int64_t deadline_ms);
/* While held, a shutdown whose services are all down waits (the reaper
 * and the process stay up) until the last release; the hard deadline
 * still ends it. */
void supervisor_hold_shutdown(supervisor *sup);
void supervisor_release_shutdown(supervisor *sup);
/* Skips to the deadline's SIGKILL (a second Ctrl-C). */
void supervisor_hurry(supervisor *sup);
/* Frees after the loop has drained (call once phase is PHASE_DONE). */
void supervisor_free(supervisor *sup);

service *supervisor_find(supervisor *sup, const char *name);
/* Manual actions (`tend start|stop|restart`): 0, -EBUSY when the state
 * forbids it. */
int supervisor_service_start(supervisor *sup, service *s);
int supervisor_service_stop(supervisor *sup, service *s);
int supervisor_service_restart(supervisor *sup, service *s);

/* Internal, for service.c. */
void supervisor_on_state(supervisor *sup, service *s, service_state from, const char *reason);
/* Re-evaluates s's dependents after a change that is not a state change
 * (its exec was confirmed: `started` is met). */
void supervisor_reevaluate(supervisor *sup, service *s);
/* A service has exec'd: park, a moment later, the pending services whose
 * dependencies are now all under way. */
void supervisor_park_soon(supervisor *sup);
/* Calls cb.spawns_settled, once, when no released service awaits its exec. */
void supervisor_check_settled(supervisor *sup);
void supervisor_logf(supervisor *sup, int level, const char *svc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
double supervisor_random(supervisor *sup);

#endif
