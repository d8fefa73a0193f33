/*
 * tend/supervisor.h - the supervisor for child processes, the same one
 * `tend up` runs: services described by tend_service_spec (tend/spec.h)
 * start in dependency order with staged readiness, are restarted by their
 * policy, and stop in reverse dependency order under a hard deadline.
 *
 * It runs on a thread of its own (its own event loop); every function
 * here may be called from any thread, and the callbacks run on the
 * supervisor's thread (they must not call tend_supervisor_stop/free).
 *
 * Process-wide effects, which is why only one supervisor may exist in a
 * process at a time (a second tend_supervisor_new() is -EBUSY): the
 * process becomes a child subreaper, and a SIGCHLD handler reaps EVERY
 * child of the process (waitpid(-1)); a program that spawns and waits for
 * children of its own must not use it.  Services are killed if the
 * process dies (a guard process, see docs/architecture.md).
 */
#ifndef TEND_SUPERVISOR_H
#define TEND_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <tend/common.h>
#include <tend/spec.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tend_supervisor tend_supervisor;

/* The states of SPEC 4 / GET /api/v1/services; never renumbered. */
typedef enum tend_service_state {
    TEND_SERVICE_STOPPED = 0,
    TEND_SERVICE_PENDING,
    TEND_SERVICE_BLOCKED,
    TEND_SERVICE_STARTING,
    TEND_SERVICE_READY,
    TEND_SERVICE_UNREADY,
    TEND_SERVICE_BACKOFF,
    TEND_SERVICE_STOPPING,
    TEND_SERVICE_EXITED,
    TEND_SERVICE_COMPLETED,
    TEND_SERVICE_FAILED,
} tend_service_state;

typedef enum tend_service_health {
    TEND_SERVICE_HEALTH_STOPPED = 0,
    TEND_SERVICE_HEALTH_STARTING,
    TEND_SERVICE_HEALTH_HEALTHY,
    TEND_SERVICE_HEALTH_DEGRADED,
    TEND_SERVICE_HEALTH_UNHEALTHY,
} tend_service_health;

typedef struct tend_supervisor_options {
    void *data;
    /* Event lines (level: syslog LOG_ERR..LOG_DEBUG; service NULL for the
     * supervisor itself).  A failing tend_supervisor_new() says why here. */
    void (*log)(void *data, int level, const char *service, const char *message);
    /* One line of a service's output (without the newline). */
    void (*output)(void *data, const char *service, const char *line, size_t len);
    /* A service changed state. */
    void (*state_changed)(void *data, const char *service, tend_service_state from,
                          tend_service_state to, const char *reason);
    /* The deadline tend_supervisor_free() uses if not stopped.  Default 30 s. */
    int64_t shutdown_timeout_ms;
} tend_supervisor_options;

/* Zeroes opts and fills the defaults; cannot fail. */
TEND_EXPORT void tend_supervisor_options_init(tend_supervisor_options *opts);

/*
 * Creates the supervisor for cfg: services, dir (relative paths and
 * commands resolve against it) and state_dir (absolute; logs and notify
 * sockets go there) must be set, e.g. by filling a tend_config with
 * tend_config_init() and tend_service_spec_init().  cfg is NOT copied:
 * it must stay valid and unchanged until tend_supervisor_free() returns.
 * Nothing starts yet.  Returns 0; -EINVAL (NULL, no state_dir or dir, a
 * service without a name or argv, an unknown dependency, a cycle: the log
 * callback says which); -EBUSY (another supervisor exists in the
 * process); -ENOMEM; or the error of creating the state directories.
 */
TEND_EXPORT int tend_supervisor_new(const tend_config *cfg, const tend_supervisor_options *opts,
                                    tend_supervisor **ret_sup);

/* Starts every service in dependency order and returns at once.  0,
 * -EINVAL, -EALREADY (started before), -ESHUTDOWN (stopped). */
TEND_EXPORT int tend_supervisor_start(tend_supervisor *sup);

/*
 * Waits until the startup has settled (every service ready, completed,
 * failed, blocked, ...) or timeout_ms passed.  0: settled (the system may
 * be degraded); -ETIMEDOUT; -ECANCELED: a critical service failed and the
 * startup was aborted (tend_supervisor_error() says why; everything is
 * being stopped); -EINVAL; -ESHUTDOWN (stopped before settling).
 */
TEND_EXPORT int tend_supervisor_wait_started(tend_supervisor *sup, int64_t timeout_ms);

/*
 * Stops every service in reverse dependency order (SIGKILL to whatever is
 * left at timeout_ms) and waits until all are down.  0; -EALREADY (a
 * second call); -EINVAL.
 */
TEND_EXPORT int tend_supervisor_stop(tend_supervisor *sup, int64_t timeout_ms);

/* Stops (if needed, with opts.shutdown_timeout_ms) and frees; NULL-safe;
 * returns NULL.  Not from a callback. */
TEND_EXPORT tend_supervisor *tend_supervisor_free(tend_supervisor *sup);

typedef struct tend_service_info {
    tend_service_state state;
    tend_service_health health;
    pid_t pid;                   /* 0 when not running */
    unsigned long restarts;      /* restarts so far, every reason */
} tend_service_info;

/* The named service's state into *ret_info: 0, -EINVAL, -ENOENT, -ESHUTDOWN. */
TEND_EXPORT int tend_supervisor_service_info(tend_supervisor *sup, const char *name,
                                             tend_service_info *ret_info);
/* Manual actions (`tend start|stop|restart NAME`): 0; -EINVAL; -ENOENT;
 * -EBUSY (the service's state or the supervisor's phase forbids it);
 * -ESHUTDOWN. */
TEND_EXPORT int tend_supervisor_service_start(tend_supervisor *sup, const char *name);
TEND_EXPORT int tend_supervisor_service_stop(tend_supervisor *sup, const char *name);
TEND_EXPORT int tend_supervisor_service_restart(tend_supervisor *sup, const char *name);

/* Why the startup failed ("" if it did not), as tend_runtime_error(). */
TEND_EXPORT int tend_supervisor_error(tend_supervisor *sup, char *buf, size_t size);

/* "stopped", "pending", ... (as the API shows them); NULL out of range. */
TEND_EXPORT const char *tend_service_state_to_string(tend_service_state state);
TEND_EXPORT const char *tend_service_health_to_string(tend_service_health health);

#ifdef __cplusplus
}
#endif
#endif
