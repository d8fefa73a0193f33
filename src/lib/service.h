/*
 * service.h - one supervised service: its process, readiness stages,
 * liveness probe, watchdog, restart policy and stop sequence, as an
 * explicit state machine.
 *
 * The lifecycle is the table in service_transition(): a state and an
 * event give the next state (or "ignored").  Probe results, process exits
 * and timers are turned into events by service.c; entering a state runs
 * that state's action (spawn, arm timers, signal the group, ...).  The
 * table is printed in docs/architecture.md.
 */
#ifndef TEND_LIB_SERVICE_H
#define TEND_LIB_SERVICE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <tend/spec.h>
#include <uv.h>

#include "backoff.h"
#include "histogram.h"
#include "notify.h"
#include "output.h"
#include "probe.h"
#include "spawn.h"

typedef enum service_state {
    SVC_STOPPED = 0,    /* not running, not wanted (initial, or stopped) */
    SVC_PENDING,        /* wanted; waiting for its dependencies */
    SVC_BLOCKED,        /* a dependency can no longer meet its condition */
    SVC_STARTING,       /* spawned; readiness stages in progress */
    SVC_READY,          /* all stages done (passed, or non-critical failed) */
    SVC_UNREADY,        /* was ready; a critical stage now fails */
    SVC_BACKOFF,        /* exited; waiting to be restarted */
    SVC_STOPPING,       /* stop signal sent; waiting for the group to exit */
    SVC_EXITED,         /* exited and not restarted by its policy */
    SVC_COMPLETED,      /* a oneshot that exited 0 */
    SVC_FAILED,         /* cannot start, or its restart circuit opened */
    _SVC_STATE_MAX,
} service_state;

typedef enum service_event {
    EV_START,           /* dependencies met, or `tend start` */
    EV_WAIT,            /* wanted, but dependencies are not met yet */
    EV_BLOCK,           /* a dependency can never meet its condition */
    EV_SPAWN_FAILED,
    EV_STAGES_DONE,     /* every readiness stage settled */
    EV_STAGE_FAILED,    /* a critical stage missed its deadline */
    EV_READY_LOST,
    EV_READY_BACK,
    EV_EXIT_RESTART,    /* exited; the policy restarts it */
    EV_EXIT_DONE,       /* exited; the policy does not restart it */
    EV_EXIT_COMPLETED,  /* a oneshot exited 0 */
    EV_EXIT_FAILED,     /* exited; circuit open, or failed while starting */
    EV_BACKOFF_DONE,
    EV_RESTART,         /* liveness, watchdog or manual: stop, then restart */
    EV_STOP,
    EV_STOPPED,         /* the process group is gone after a stop */
    _EV_MAX,
} service_event;

typedef enum restart_reason {
    REASON_EXIT = 0, REASON_SIGNAL, REASON_LIVENESS, REASON_WATCHDOG, REASON_MANUAL, _REASON_MAX,
} restart_reason;

typedef enum service_health {
    HEALTH_STOPPED = 0, HEALTH_STARTING, HEALTH_HEALTHY, HEALTH_DEGRADED, HEALTH_UNHEALTHY,
} service_health;

const char *service_state_name(service_state s);
const char *service_event_name(service_event e);
const char *restart_reason_name(restart_reason r);
const char *service_health_name(service_health h);

/* The transition table: the next state, or -1 when the event is ignored
 * in that state.  Pure; unit-tested. */
int service_transition(service_state s, service_event e);

/*
 * What a process exit means, given the policy: which event to raise.
 * exited_ok: exit status 0; starting: the exit came before readiness;
 * stopping: tend asked it to stop; restart_allowed: the restart window
 * has room.  Pure; unit-tested.
 */
service_event service_exit_event(const tend_service_spec *spec, bool exited_ok, bool stopping,
                                 bool restart_requested, bool restart_allowed);

struct supervisor;

typedef struct stage_rt {
    probe probe;
    uv_timer_t timer;       /* periodic re-probe after startup */
    bool passed;            /* during startup */
    bool ok;                /* current verdict after startup */
    int fails, succs;
    int64_t started_ms, duration_ms; /* startup timing (-1: not passed) */
    char last_error[160];
} stage_rt;

typedef struct service {
    struct supervisor *sup;
    const tend_service_spec *spec;
    size_t index;
    int wave;
    bool selected;          /* part of this run (tend up SERVICE...) */

    service_state state;
    service_health health;
    pid_t pid;              /* main process, also the process group */
    pid_t pgid;             /* the group, kept until it is empty */
    char **envp;
    char **env_own;         /* the strings of envp that are this service's (the others are
                             * the supervisor's copy of environ, sup->environ) */
    bool has_user;
    uid_t uid;
    gid_t gid;

    /* readiness */
    stage_rt *stages;
    size_t stage;           /* current stage during startup */
    uv_timer_t stage_deadline;
    uv_timer_t stage_retry;
    bool notified_ready;    /* READY=1 since the last spawn */
    bool degraded;
    char status_text[NOTIFY_MAX_STATUS];

    probe_ctx pctx;         /* the supervisor's, with this service's env and cwd */

    /* liveness and watchdog */
    probe live;
    uv_timer_t live_timer;
    int live_fails;
    uv_timer_t watchdog;

    /* restarts */
    uv_timer_t backoff;
    uv_timer_t reset_timer;
    restart_window window;
    unsigned backoff_attempt;
    unsigned long restarts_total;
    unsigned long restarts[_REASON_MAX];
    bool restart_requested;
    restart_reason pending_reason;
    bool manual_restart;
    bool fail_after_stop;   /* stopping because a critical stage failed */
    int64_t backoff_delay_ms;
    int64_t carry_deadline_ms;  /* exits while starting: retries end here (0: none) */

    /* stopping */
    uv_timer_t stop_timer;
    bool kill_sent;
    bool want_running;      /* false once stopped by the user/shutdown */

    /* timings (monotonic ms) */
    int64_t first_spawn_ms, spawn_ms, ready_ms, startup_ready_ms;
    bool spawned_once, ready_once;

    double last_probe_ms;   /* latency of the last readiness probe, -1: none */
    histogram probe_seconds[2];     /* [0] readiness, [1] liveness */
    uint64_t probe_failures[2];
    int64_t last_exit_wall_ms;
    int last_exit_status;   /* raw wait status, -1 when none */
    char last_error[512];

    bool exec_pending_confirm;      /* spawned; "started" once the state is entered */
    /* Parked ahead of its start (spawn.h), while its dependencies finish. */
    spawn_parked park;
    bool parked;            /* park holds a child not released yet */
    bool park_failed;       /* parking did not work for it: spawned when due */
    int park_out_fd;        /* read end of the parked child's output pipe */
    bool exec_inflight;     /* released; its exec not seen yet (exec_poll) */
    bool exec_failed;       /* a step after the release failed (spawn_error) */
    uv_poll_t *exec_poll;
    char spawn_error[300];
    notify_socket *notify;
    char *notify_path;
    output_stream *out;
    logfile log;
    int handles_open;       /* uv timers to close at teardown */
} service;

int service_init(service *s, struct supervisor *sup, const tend_service_spec *spec, size_t index);
/* Opens the log file, resolves the user, and opens the notify socket of a
 * service without dependencies (service_open_notify() for the others).
 * 0 or -errno with a message in err. */
int service_open(service *s, char *err, size_t errlen);
/* The notify socket, if the service has one and it is not open yet
 * (service_open() leaves it to later for a service with dependencies). */
int service_open_notify(service *s, char *err, size_t errlen);
/* Releases memory once the loop has closed the handles. */
void service_free(service *s);
/* Closes handles; the supervisor frees memory when the loop is done. */
void service_close(service *s);
void service_dispatch(service *s, service_event e, const char *reason);
/* Clones the service's process ahead and parks it before its exec, so
 * that its start is one write (spawn.h).  For a pending service whose
 * dependencies are under way; 0 or -errno (then it is spawned directly). */
int service_park(service *s);

/* The stage to show: the one in progress while starting, the first
 * failing one after, else the last one; NULL without stages. */
const char *service_stage_name(const service *s);

/* Dependency conditions, for the supervisor's scheduling. */
bool service_dep_met(const service *dep, tend_dep_condition c);
bool service_dep_impossible(const service *dep, tend_dep_condition c);
bool service_is_settled(const service *s);
bool service_is_down(const service *s);

#endif
