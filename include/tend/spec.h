/*
 * tend/spec.h - plain-data descriptions of a system: services, their
 * readiness stages and probes, restart and stop policies, task queues and
 * the session store.
 *
 * These structs are what the config loader (tend.yaml) produces and what
 * the supervisor consumes; a C program embedding libtend may fill them in
 * directly.  Durations are milliseconds (int64_t), sizes are bytes.
 * Every string and array is owned by the enclosing struct and released by
 * tend_config_free() / tend_service_spec_clear().
 */
#ifndef TEND_SPEC_H
#define TEND_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tend/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tend_probe_kind {
    TEND_PROBE_NONE = 0,
    TEND_PROBE_EXEC,   /* argv; exit 0 passes */
    TEND_PROBE_TCP,    /* host:port accepts a connection */
    TEND_PROBE_HTTP,   /* GET url; 2xx/3xx (and expect_body, if set) passes */
    TEND_PROBE_NOTIFY, /* READY=1 over $NOTIFY_SOCKET (sd_notify) */
} tend_probe_kind;

typedef struct tend_probe_spec {
    tend_probe_kind kind;
    char **argv;            /* exec: NULL-terminated */
    char *host;             /* tcp */
    int port;               /* tcp */
    char *url;              /* http */
    char *expect_body;      /* http: substring the body must contain, or NULL */
    int64_t interval_ms;        /* period once passing (default 5s; live 10s) */
    int64_t start_interval_ms;  /* period while waiting (default 100ms) */
    int64_t probe_timeout_ms;   /* one attempt (default 3s) */
    int64_t initial_delay_ms;   /* liveness: first probe after spawn + this */
    int failure_threshold;      /* consecutive misses (default 3) */
    int success_threshold;      /* consecutive passes (default 1) */
} tend_probe_spec;

typedef struct tend_stage_spec {
    char *name;             /* default: the probe kind, "tcp", "tcp2", ... */
    tend_probe_spec probe;
    int64_t timeout_ms;     /* deadline for this stage (default 60s) */
    bool critical;          /* default true; false: failure -> degraded */
} tend_stage_spec;

typedef enum tend_dep_condition {
    TEND_DEP_STARTED = 0,   /* spawned */
    TEND_DEP_READY,         /* all critical stages passed */
    TEND_DEP_COMPLETED,     /* a oneshot exited 0 */
} tend_dep_condition;

typedef struct tend_dep_spec {
    char *name;
    tend_dep_condition condition;
} tend_dep_spec;

typedef enum tend_restart_policy {
    TEND_RESTART_NO = 0,
    TEND_RESTART_ON_FAILURE,
    TEND_RESTART_ALWAYS,
} tend_restart_policy;

typedef struct tend_restart_spec {
    tend_restart_policy policy; /* default on-failure (oneshot: no) */
    int64_t delay_ms;           /* default 1s; doubles each time */
    int64_t max_delay_ms;       /* default 60s */
    double jitter;              /* default 0.2, fraction in [0,1] */
    int max_attempts;           /* default 5 within window */
    int64_t window_ms;          /* default 120s */
    int64_t reset_after_ms;     /* default 60s ready -> attempts reset */
} tend_restart_spec;

typedef struct tend_stop_spec {
    int signal;                 /* default SIGTERM */
    int64_t timeout_ms;         /* default 10s, then SIGKILL to the group */
} tend_stop_spec;

typedef struct tend_resources_spec {
    uint64_t memory_max;        /* bytes, 0 = unlimited (RLIMIT_AS) */
    uint64_t nofile;            /* 0 = inherit (RLIMIT_NOFILE) */
} tend_resources_spec;

typedef struct tend_service_spec {
    char *name;
    char **argv;                /* NULL-terminated; a string command becomes
                                 * {"/bin/sh", "-c", cmd, NULL} */
    bool shell;                 /* command was a string */
    char *cwd;                  /* absolute, or NULL for the config's dir */
    char **env;                 /* NULL-terminated "KEY=VALUE" overrides,
                                 * env_file first, then env */
    char *user;                 /* NULL: no privilege drop */
    bool critical;              /* default true */
    bool oneshot;               /* default false */
    tend_dep_spec *deps;
    size_t n_deps;
    tend_stage_spec *stages;
    size_t n_stages;
    bool has_live;
    tend_probe_spec live;
    int64_t watchdog_ms;        /* 0 = off */
    tend_restart_spec restart;
    tend_stop_spec stop;
    int replicas;               /* only 1 is supported */
    tend_resources_spec resources;
} tend_service_spec;

typedef enum tend_handler_kind {
    TEND_HANDLER_EXEC = 0,
    TEND_HANDLER_HTTP,
    TEND_HANDLER_PULL,
    TEND_HANDLER_FUNC,          /* libtend only */
} tend_handler_kind;

typedef struct tend_queue_spec {
    char *name;
    tend_handler_kind handler;
    char **argv;                /* exec */
    char *url;                  /* http */
    int concurrency;            /* default 3 */
    int64_t timeout_ms;         /* default 30s */
    int max_attempts;           /* default 3 */
    int64_t backoff_base_ms;    /* default 1s */
    int64_t backoff_max_ms;     /* default 5m */
    double backoff_jitter;      /* default 0.2 */
    double rate_per_sec;        /* 0 = unlimited */
    int breaker_failure_threshold; /* 0 = no breaker; default 5 when set */
    int64_t breaker_open_ms;    /* default 60s */
    bool batch;
    int batch_size;             /* default 10 */
    int64_t batch_max_wait_ms;  /* default 30s */
    bool dry_run;
    bool ack_async;             /* pull: `ack: async` (answered before the commit); default false */
} tend_queue_spec;

typedef struct tend_tasks_spec {
    int workers;                    /* default 10 */
    int64_t retention_succeeded_ms; /* default 24h */
    int64_t retention_dead_ms;      /* default 7d */
    uint64_t max_payload;           /* default 256 KiB */
    tend_queue_spec *queues;
    size_t n_queues;
} tend_tasks_spec;

typedef struct tend_sessions_spec {
    int64_t ttl_ms;                 /* default 1h */
    int64_t cleanup_interval_ms;    /* default 5m */
    uint64_t max_sessions;          /* default 100000 */
    bool persist;                   /* default false */
    uint64_t max_value;             /* bytes of JSON per session; default 64 KiB */
} tend_sessions_spec;

typedef enum tend_log_format { TEND_LOG_TEXT = 0, TEND_LOG_JSON } tend_log_format;

typedef struct tend_config {
    char *file;                 /* path as given */
    char *dir;                  /* absolute directory of the file */
    char *name;                 /* default: basename of dir */
    char *state_dir;            /* absolute; default <dir>/.tend */
    char *api_listen;           /* default "127.0.0.1:7070"; "" disables */
    char *api_token_file;       /* NULL: no token */
    char *store;                /* "sqlite" or a postgres:// URL */
    tend_log_format log_format;
    int log_level;              /* LOG_ERR..LOG_DEBUG (syslog numbers) */
    uint64_t log_max_size;      /* default 10M */
    int log_max_files;          /* default 3 */
    tend_service_spec *services;
    size_t n_services;
    tend_tasks_spec tasks;
    tend_sessions_spec sessions;
    int64_t health_interval_ms; /* default 60s */
} tend_config;

/*
 * Initialisers fill every default listed above.  Strings and arrays are
 * left NULL (no allocation, so these cannot fail); the config loader
 * fills the string defaults of tend_config (name, state_dir, api_listen,
 * store).
 */
TEND_EXPORT void tend_probe_spec_init(tend_probe_spec *p, bool liveness);
TEND_EXPORT void tend_stage_spec_init(tend_stage_spec *st);
TEND_EXPORT void tend_service_spec_init(tend_service_spec *s);
TEND_EXPORT void tend_queue_spec_init(tend_queue_spec *q);
TEND_EXPORT void tend_config_init(tend_config *c);

/*
 * _clear releases what a struct owns and zeroes it (it must be
 * re-initialised before reuse); NULL-safe.  tend_config_free() releases a
 * heap-allocated config and everything it owns; NULL-safe.
 */
TEND_EXPORT void tend_service_spec_clear(tend_service_spec *s);
TEND_EXPORT void tend_probe_spec_clear(tend_probe_spec *p);
TEND_EXPORT void tend_stage_spec_clear(tend_stage_spec *st);
TEND_EXPORT void tend_queue_spec_clear(tend_queue_spec *q);
TEND_EXPORT void tend_config_free(tend_config *c);

#ifdef __cplusplus
}
#endif
#endif
