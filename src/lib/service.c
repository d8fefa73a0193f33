/*
 * service.c - one service's lifecycle; see service.h.
 *
 * Everything that happens to a service - a probe result, a process exit,
 * a timer, a request - ends in service_dispatch(), which looks up the
 * next state in the transition table and runs the entry action of that
 * state.  Actions may raise further events (a spawn that fails raises
 * EV_SPAWN_FAILED); they never call back into the table re-entrantly
 * except through service_dispatch.
 */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdutil.h"
#include "macros.h"
#include "parse.h"
#include "spawn.h"
#include "strv.h"
#include "supervisor.h"
#include "timeutil.h"

static const char *const state_names[_SVC_STATE_MAX] = {
    [SVC_STOPPED] = "stopped", [SVC_PENDING] = "pending", [SVC_BLOCKED] = "blocked",
    [SVC_STARTING] = "starting", [SVC_READY] = "ready", [SVC_UNREADY] = "unready",
    [SVC_BACKOFF] = "backoff", [SVC_STOPPING] = "stopping", [SVC_EXITED] = "exited",
    [SVC_COMPLETED] = "completed", [SVC_FAILED] = "failed",
};
static const char *const event_names[_EV_MAX] = {
    [EV_START] = "start", [EV_WAIT] = "wait", [EV_BLOCK] = "block",
    [EV_SPAWN_FAILED] = "spawn_failed", [EV_STAGES_DONE] = "stages_done",
    [EV_STAGE_FAILED] = "stage_failed", [EV_READY_LOST] = "ready_lost",
    [EV_READY_BACK] = "ready_back", [EV_EXIT_RESTART] = "exit_restart",
    [EV_EXIT_DONE] = "exit_done", [EV_EXIT_COMPLETED] = "exit_completed",
    [EV_EXIT_FAILED] = "exit_failed", [EV_BACKOFF_DONE] = "backoff_done",
    [EV_RESTART] = "restart", [EV_STOP] = "stop", [EV_STOPPED] = "stopped",
};
static const char *const reason_names[_REASON_MAX] = {
    "exit", "signal", "liveness", "watchdog", "manual",
};

const char *service_state_name(service_state s) {
    return s < _SVC_STATE_MAX ? state_names[s] : "?";
}
const char *service_event_name(service_event e) { return e < _EV_MAX ? event_names[e] : "?"; }
const char *restart_reason_name(restart_reason r) { return r < _REASON_MAX ? reason_names[r] : "?"; }
const char *service_health_name(service_health h) {
    static const char *const n[] = {"stopped", "starting", "healthy", "degraded", "unhealthy"};
    return h <= HEALTH_UNHEALTHY ? n[h] : "?";
}

/*
 * The lifecycle.  Rows are states, columns events; 0 means "ignored"
 * (stored as next+1 so that the zero-initialised cells are ignores).
 */
#define T(x) ((x) + 1)
static const unsigned char transitions[_SVC_STATE_MAX][_EV_MAX] = {
    [SVC_STOPPED] = {
        [EV_START] = T(SVC_STARTING), [EV_WAIT] = T(SVC_PENDING), [EV_BLOCK] = T(SVC_BLOCKED),
    },
    [SVC_PENDING] = {
        [EV_START] = T(SVC_STARTING), [EV_BLOCK] = T(SVC_BLOCKED), [EV_STOP] = T(SVC_STOPPED),
    },
    [SVC_BLOCKED] = {
        [EV_START] = T(SVC_STARTING), [EV_WAIT] = T(SVC_PENDING), [EV_STOP] = T(SVC_STOPPED),
    },
    [SVC_STARTING] = {
        [EV_SPAWN_FAILED] = T(SVC_FAILED), [EV_STAGES_DONE] = T(SVC_READY),
        [EV_STAGE_FAILED] = T(SVC_STOPPING), [EV_EXIT_RESTART] = T(SVC_BACKOFF),
        [EV_EXIT_DONE] = T(SVC_EXITED), [EV_EXIT_COMPLETED] = T(SVC_COMPLETED),
        [EV_EXIT_FAILED] = T(SVC_FAILED), [EV_RESTART] = T(SVC_STOPPING),
        [EV_STOP] = T(SVC_STOPPING), [EV_STOPPED] = T(SVC_STOPPED),
    },
    [SVC_READY] = {
        [EV_READY_LOST] = T(SVC_UNREADY), [EV_EXIT_RESTART] = T(SVC_BACKOFF),
        [EV_EXIT_DONE] = T(SVC_EXITED), [EV_EXIT_COMPLETED] = T(SVC_COMPLETED),
        [EV_EXIT_FAILED] = T(SVC_FAILED), [EV_RESTART] = T(SVC_STOPPING),
        [EV_STOP] = T(SVC_STOPPING), [EV_STOPPED] = T(SVC_STOPPED),
    },
    [SVC_UNREADY] = {
        [EV_READY_BACK] = T(SVC_READY), [EV_EXIT_RESTART] = T(SVC_BACKOFF),
        [EV_EXIT_DONE] = T(SVC_EXITED), [EV_EXIT_COMPLETED] = T(SVC_COMPLETED),
        [EV_EXIT_FAILED] = T(SVC_FAILED), [EV_RESTART] = T(SVC_STOPPING),
        [EV_STOP] = T(SVC_STOPPING), [EV_STOPPED] = T(SVC_STOPPED),
    },
    [SVC_BACKOFF] = {
        [EV_BACKOFF_DONE] = T(SVC_STARTING), [EV_START] = T(SVC_STARTING),
        [EV_STOP] = T(SVC_STOPPED),
    },
    [SVC_STOPPING] = {
        [EV_STOPPED] = T(SVC_STOPPED), [EV_EXIT_RESTART] = T(SVC_BACKOFF),
        [EV_EXIT_FAILED] = T(SVC_FAILED),
    },
    [SVC_EXITED] = {
        [EV_START] = T(SVC_STARTING), [EV_WAIT] = T(SVC_PENDING), [EV_STOP] = T(SVC_STOPPED),
    },
    [SVC_COMPLETED] = {
        [EV_START] = T(SVC_STARTING), [EV_WAIT] = T(SVC_PENDING), [EV_STOP] = T(SVC_STOPPED),
    },
    [SVC_FAILED] = {
        [EV_START] = T(SVC_STARTING), [EV_WAIT] = T(SVC_PENDING), [EV_STOP] = T(SVC_STOPPED),
    },
};
#undef T

int service_transition(service_state s, service_event e) {
    if (s >= _SVC_STATE_MAX || e >= _EV_MAX)
        return -1;
    return (int)transitions[s][e] - 1;
}

service_event service_exit_event(const tend_service_spec *spec, bool exited_ok, bool stopping,
                                 bool restart_requested, bool restart_allowed) {
    if (stopping && !restart_requested)
        return EV_STOPPED;
    if (restart_requested)
        return restart_allowed ? EV_EXIT_RESTART : EV_EXIT_FAILED;
    if (spec->oneshot && exited_ok)
        return EV_EXIT_COMPLETED;
    bool restart;
    switch (spec->restart.policy) {
    case TEND_RESTART_ALWAYS: restart = true; break;
    case TEND_RESTART_ON_FAILURE: restart = !exited_ok; break;
    default: restart = false; break;
    }
    if (!restart)
        return exited_ok ? EV_EXIT_DONE : EV_EXIT_FAILED;
    return restart_allowed ? EV_EXIT_RESTART : EV_EXIT_FAILED;
}

/* ---- helpers ---- */

#define SVC_NAME(s) ((s)->spec->name)

static void logf_svc(service *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_svc(service *s, int level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    supervisor_logf(s->sup, level, SVC_NAME(s), "%s", msg);
}

static void timer_init(service *s, uv_timer_t *t) {
    uv_timer_init(s->sup->loop, t);
    t->data = s;
    s->handles_open++;
}

static bool is_running(const service *s) { return s->pid > 0; }

static void kill_group(service *s, int sig) {
    if (s->pgid > 0)
        (void)kill(-s->pgid, sig);
}

static void set_health(service *s, service_health h) {
    if (s->health == h)
        return;
    service_health from = s->health;
    s->health = h;
    /* Starting and stopping are told by the state lines already. */
    bool notable = h == HEALTH_DEGRADED || h == HEALTH_UNHEALTHY || from == HEALTH_DEGRADED ||
                   from == HEALTH_UNHEALTHY;
    logf_svc(s, notable ? LOG_INFO : LOG_DEBUG, "health %s -> %s", service_health_name(from),
             service_health_name(h));
    if (s->sup->cb.health_changed)
        s->sup->cb.health_changed(s->sup->cb.data, s, from);
}

static void update_health(service *s) {
    service_health h;
    switch (s->state) {
    case SVC_STOPPED: case SVC_PENDING: h = HEALTH_STOPPED; break;
    case SVC_STARTING: h = HEALTH_STARTING; break;
    case SVC_STOPPING: h = s->health; break;
    case SVC_READY: h = s->degraded ? HEALTH_DEGRADED : HEALTH_HEALTHY; break;
    case SVC_COMPLETED: h = HEALTH_HEALTHY; break;
    case SVC_EXITED:
        h = (s->last_exit_status >= 0 && WIFEXITED(s->last_exit_status) &&
             WEXITSTATUS(s->last_exit_status) == 0) ? HEALTH_STOPPED : HEALTH_UNHEALTHY;
        break;
    default: h = HEALTH_UNHEALTHY; break;
    }
    set_health(s, h);
}

static void stop_readiness(service *s) {
    uv_timer_stop(&s->stage_deadline);
    uv_timer_stop(&s->stage_retry);
    for (size_t i = 0; i < s->spec->n_stages; i++) {
        probe_cancel(&s->stages[i].probe);
        uv_timer_stop(&s->stages[i].timer);
    }
}

static void stop_monitors(service *s) {
    stop_readiness(s);
    probe_cancel(&s->live);
    uv_timer_stop(&s->live_timer);
    uv_timer_stop(&s->watchdog);
    uv_timer_stop(&s->reset_timer);
}

/* ---- readiness during startup ---- */

static void begin_stage(service *s);

static void on_stage_retry(uv_timer_t *t);

/*
 * The wait before the next attempt of a stage that has not passed:
 * start_interval, except after a refused connection (nothing listens on
 * the port yet: the kernel answered, the service did no work), when it is
 * a quarter of that (at least 1 ms).  A wave waits for its slowest
 * member, which is seen up to one retry period after it starts to listen,
 * so this is most of the readiness lag of tcp and http stages.
 */
static uint64_t stage_retry_ms(const service *s, const stage_rt *st) {
    int64_t iv = MAX(s->spec->stages[s->stage].probe.start_interval_ms, 1);
    if (st->probe.refused)
        iv = MAX(iv / 4, 1);
    return (uint64_t)iv;
}

static void run_stage_probe(service *s) {
    stage_rt *st = &s->stages[s->stage];
    int r = probe_run(&st->probe);
    if (r < 0 && r != -EBUSY) {
        snprintf(st->last_error, sizeof(st->last_error), "%s", strerror(-r));
        st->probe.refused = false;
        uv_timer_start(&s->stage_retry, on_stage_retry, stage_retry_ms(s, st), 0);
    }
}

static void on_stage_retry(uv_timer_t *t) {
    service *s = t->data;
    if (s->state == SVC_STARTING && s->stage < s->spec->n_stages)
        run_stage_probe(s);
}

static void stage_passed(service *s) {
    stage_rt *st = &s->stages[s->stage];
    const tend_stage_spec *sp = &s->spec->stages[s->stage];
    st->passed = st->ok = true;
    st->fails = 0;
    st->duration_ms = now_mono_ms() - st->started_ms;
    logf_svc(s, LOG_INFO, "stage %s passed in %lld ms", sp->name, (long long)st->duration_ms);
    uv_timer_stop(&s->stage_deadline);
    uv_timer_stop(&s->stage_retry);
    s->stage++;
    begin_stage(s);
}

static void on_stage_deadline(uv_timer_t *t) {
    service *s = t->data;
    if (s->state != SVC_STARTING || s->stage >= s->spec->n_stages)
        return;
    stage_rt *st = &s->stages[s->stage];
    const tend_stage_spec *sp = &s->spec->stages[s->stage];
    char fmt[32];
    probe_cancel(&st->probe);
    uv_timer_stop(&s->stage_retry);
    if (!sp->critical) {
        logf_svc(s, LOG_WARNING, "stage %s failed: no pass within %s%s%s (not critical: degraded)",
                 sp->name, format_duration(sp->timeout_ms, fmt, sizeof(fmt)),
                 st->last_error[0] ? ", last error: " : "", st->last_error);
        st->passed = true; /* settled; re-probed after startup */
        st->ok = false;
        s->degraded = true;
        s->stage++;
        begin_stage(s);
        return;
    }
    snprintf(s->last_error, sizeof(s->last_error), "stage %s: no pass within %s%s%s", sp->name,
             format_duration(sp->timeout_ms, fmt, sizeof(fmt)),
             st->last_error[0] ? ", last error: " : "", st->last_error);
    logf_svc(s, LOG_ERR, "stage %s failed: %s", sp->name, s->last_error + strlen(sp->name) + 8);
    s->fail_after_stop = true;
    service_dispatch(s, EV_STAGE_FAILED, s->last_error);
}

static void start_monitoring(service *s);

static void begin_stage(service *s) {
    if (s->state != SVC_STARTING)
        return;
    if (s->spec->oneshot || s->stage >= s->spec->n_stages) {
        if (!s->spec->oneshot)
            service_dispatch(s, EV_STAGES_DONE, NULL);
        return;
    }
    stage_rt *st = &s->stages[s->stage];
    const tend_stage_spec *sp = &s->spec->stages[s->stage];
    st->started_ms = now_mono_ms();
    st->last_error[0] = '\0';
    int64_t timeout = sp->timeout_ms;
    if (s->carry_deadline_ms > 0)
        timeout = MIN(timeout, s->carry_deadline_ms - st->started_ms);
    uv_timer_start(&s->stage_deadline, on_stage_deadline, (uint64_t)MAX(timeout, 1), 0);
    if (sp->probe.kind == TEND_PROBE_NOTIFY) {
        if (s->notified_ready)
            stage_passed(s);
        return;
    }
    run_stage_probe(s);
}

/* ---- readiness after startup (Kubernetes readinessProbe semantics) ---- */

static void on_recheck_timer(uv_timer_t *t);

static bool critical_stages_ok(const service *s) {
    for (size_t i = 0; i < s->spec->n_stages; i++)
        if (s->spec->stages[i].critical && !s->stages[i].ok)
            return false;
    return true;
}

static bool noncritical_failing(const service *s) {
    for (size_t i = 0; i < s->spec->n_stages; i++)
        if (!s->spec->stages[i].critical && !s->stages[i].ok)
            return true;
    return false;
}

static void recheck_result(service *s, stage_rt *st, size_t i, bool ok, const char *error) {
    const tend_stage_spec *sp = &s->spec->stages[i];
    if (ok) {
        st->fails = 0;
        st->succs++;
        if (!st->ok && st->succs >= MAX(sp->probe.success_threshold, 1)) {
            st->ok = true;
            logf_svc(s, LOG_INFO, "stage %s passing again", sp->name);
        }
    } else {
        st->succs = 0;
        st->fails++;
        snprintf(st->last_error, sizeof(st->last_error), "%s", error ? error : "failed");
        if (st->ok && st->fails >= MAX(sp->probe.failure_threshold, 1)) {
            st->ok = false;
            logf_svc(s, LOG_WARNING, "stage %s failing: %d consecutive misses, last: %s", sp->name,
                     st->fails, st->last_error);
        }
    }
    s->degraded = noncritical_failing(s);
    if (s->state == SVC_READY && !critical_stages_ok(s)) {
        snprintf(s->last_error, sizeof(s->last_error), "stage %s: %s", sp->name, st->last_error);
        service_dispatch(s, EV_READY_LOST, s->last_error);
    } else if (s->state == SVC_UNREADY && critical_stages_ok(s)) {
        service_dispatch(s, EV_READY_BACK, NULL);
    } else {
        update_health(s);
    }
}

static void schedule_recheck(service *s, size_t i) {
    const tend_stage_spec *sp = &s->spec->stages[i];
    if (sp->probe.kind == TEND_PROBE_NOTIFY || sp->probe.kind == TEND_PROBE_NONE)
        return;
    stage_rt *st = &s->stages[i];
    int64_t iv = st->ok ? sp->probe.interval_ms : MIN(sp->probe.interval_ms, MAX(sp->probe.start_interval_ms, 1));
    uv_timer_start(&st->timer, on_recheck_timer, (uint64_t)MAX(iv, 1), 0);
}

/* One callback for all stage probes: startup and re-checks. */
static void stage_probe_result(void *data, bool ok, double latency_ms, const char *error);

typedef struct stage_ref {
    service *s;
    size_t i;
} stage_ref;

static void on_recheck_timer(uv_timer_t *t) {
    stage_ref *ref = t->data;
    service *s = ref->s;
    if (s->state != SVC_READY && s->state != SVC_UNREADY)
        return;
    int r = probe_run(&s->stages[ref->i].probe);
    if (r < 0 && r != -EBUSY) {
        recheck_result(s, &s->stages[ref->i], ref->i, false, strerror(-r));
        schedule_recheck(s, ref->i);
    }
}

static void stage_probe_result(void *data, bool ok, double latency_ms, const char *error) {
    stage_ref *ref = data;
    service *s = ref->s;
    stage_rt *st = &s->stages[ref->i];
    s->last_probe_ms = latency_ms;
    histogram_observe(&s->probe_seconds[0], latency_ms / 1000.0);
    if (!ok)
        s->probe_failures[0]++;
    if (s->state == SVC_STARTING && ref->i == s->stage) {
        if (ok) {
            stage_passed(s);
        } else {
            snprintf(st->last_error, sizeof(st->last_error), "%s", error ? error : "failed");
            uv_timer_start(&s->stage_retry, on_stage_retry, stage_retry_ms(s, st), 0);
        }
        return;
    }
    if (s->state == SVC_READY || s->state == SVC_UNREADY) {
        recheck_result(s, st, ref->i, ok, error);
        schedule_recheck(s, ref->i);
    }
}

/* ---- liveness and watchdog ---- */

static void request_restart(service *s, restart_reason why, const char *detail) {
    s->restart_requested = true;
    s->pending_reason = why;
    service_dispatch(s, EV_RESTART, detail);
}

static void on_live_timer(uv_timer_t *t) {
    service *s = t->data;
    if (!is_running(s) || s->state == SVC_STOPPING)
        return;
    int r = probe_run(&s->live);
    if (r < 0 && r != -EBUSY)
        uv_timer_start(&s->live_timer, on_live_timer, (uint64_t)MAX(s->spec->live.interval_ms, 1), 0);
}

static void live_result(void *data, bool ok, double latency_ms, const char *error) {
    service *s = data;
    histogram_observe(&s->probe_seconds[1], latency_ms / 1000.0);
    if (!ok)
        s->probe_failures[1]++;
    if (!is_running(s) || s->state == SVC_STOPPING)
        return;
    if (ok) {
        s->live_fails = 0;
    } else {
        s->live_fails++;
        logf_svc(s, LOG_WARNING, "liveness probe failed (%d/%d): %s", s->live_fails,
                 s->spec->live.failure_threshold, error ? error : "failed");
        if (s->live_fails >= MAX(s->spec->live.failure_threshold, 1)) {
            char why[256];
            snprintf(why, sizeof(why), "liveness: %d consecutive failures, last: %s", s->live_fails,
                     error ? error : "failed");
            s->live_fails = 0;
            request_restart(s, REASON_LIVENESS, why);
            return;
        }
    }
    uv_timer_start(&s->live_timer, on_live_timer, (uint64_t)MAX(s->spec->live.interval_ms, 1), 0);
}

static void on_watchdog(uv_timer_t *t) {
    service *s = t->data;
    if (!is_running(s) || s->state == SVC_STOPPING)
        return;
    char fmt[32], why[128];
    snprintf(why, sizeof(why), "watchdog: no WATCHDOG=1 for %s",
             format_duration(s->spec->watchdog_ms, fmt, sizeof(fmt)));
    logf_svc(s, LOG_WARNING, "%s", why);
    request_restart(s, REASON_WATCHDOG, why);
}

static void on_notify(void *data, const notify_msg *m, pid_t sender) {
    service *s = data;
    if (m->has_status)
        snprintf(s->status_text, sizeof(s->status_text), "%s", m->status);
    if (m->has_mainpid)
        logf_svc(s, LOG_DEBUG, "MAINPID=%d noted (the process group is what tend tracks)", (int)m->mainpid);
    if (m->watchdog && s->spec->watchdog_ms > 0 && is_running(s))
        uv_timer_start(&s->watchdog, on_watchdog, (uint64_t)s->spec->watchdog_ms, 0);
    if (m->watchdog_trigger && is_running(s))
        request_restart(s, REASON_WATCHDOG, "watchdog: WATCHDOG=trigger");
    if (m->ready && !s->notified_ready) {
        s->notified_ready = true;
        /* Before the exec is seen the stage has not begun; it will find
         * notified_ready set. */
        if (s->state == SVC_STARTING && !s->exec_inflight && s->stage < s->spec->n_stages &&
            s->spec->stages[s->stage].probe.kind == TEND_PROBE_NOTIFY)
            stage_passed(s);
    }
}

static pid_t notify_pgid(void *data) {
    service *s = data;
    return s->pgid > 0 ? s->pgid : -1;
}

/* ---- process ---- */

static void on_output(void *data, const char *line, size_t len) {
    service *s = data;
    if (!line) {
        s->out = NULL;
        return;
    }
    if (s->sup->cb.output)
        s->sup->cb.output(s->sup->cb.data, SVC_NAME(s), s->index, line, len);
}

static void on_stop_timeout(uv_timer_t *t);

static void describe_status(int status, char *buf, size_t len) {
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %s%s", signal_name(WTERMSIG(status)),
                 WCOREDUMP(status) ? " (core dumped)" : "");
    else
        snprintf(buf, len, "ended with status 0x%x", status);
}

static void on_reset_timer(uv_timer_t *t) {
    service *s = t->data;
    if (s->backoff_attempt > 0 || s->window.count > 0)
        logf_svc(s, LOG_DEBUG, "ready for the reset_after period: restart count reset");
    s->backoff_attempt = 0;
    restart_window_reset(&s->window);
}

static bool exec_status_settle(service *s);

static void on_main_exit(void *data, pid_t pid, int status) {
    service *s = data;
    char desc[96];
    if (status < 0)
        return; /* the reaper is closing at teardown */
    /* A released child ended before its exec was seen: its status pipe is
     * at EOF now, with the failed step first if one failed. */
    if (s->exec_inflight && exec_status_settle(s) && !s->exec_failed) {
        logf_svc(s, LOG_INFO, "spawned pid %d", (int)pid); /* and ended before we saw it */
        s->spawned_once = true;
    }
    if (s->exec_failed) {
        s->exec_failed = false;
        if (s->state == SVC_STARTING) {
            s->pid = 0;
            s->last_exit_status = status;
            stop_monitors(s);
            if (s->pgid > 0)
                guard_remove(&s->sup->guard, s->pgid);
            s->pgid = 0;
            snprintf(s->last_error, sizeof(s->last_error), "%s", s->spawn_error);
            logf_svc(s, LOG_ERR, "cannot start: %s", s->spawn_error);
            service_dispatch(s, EV_SPAWN_FAILED, s->spawn_error);
            return;
        }
    }
    describe_status(status, desc, sizeof(desc));
    s->pid = 0;
    s->last_exit_status = status;
    s->last_exit_wall_ms = now_wall_ms();
    /* How long the current stage had left: a process that exits while
     * starting is restarted by its policy until that deadline. */
    bool deadline_active = uv_is_active((uv_handle_t *)&s->stage_deadline);
    uint64_t deadline_left = deadline_active ? uv_timer_get_due_in(&s->stage_deadline) : 0;
    stop_monitors(s);
    /* Whatever is left of the group dies with its main process. */
    if (s->pgid > 0 && kill(-s->pgid, 0) == 0)
        kill_group(s, SIGKILL);
    if (s->pgid > 0)
        guard_remove(&s->sup->guard, s->pgid);
    s->pgid = 0;
    uv_timer_stop(&s->stop_timer);

    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool stopping = s->state == SVC_STOPPING || !s->want_running;
    if (s->fail_after_stop) {
        s->fail_after_stop = false;
        logf_svc(s, LOG_INFO, "%s", desc);
        service_dispatch(s, EV_EXIT_FAILED, s->last_error);
        return;
    }
    int level = (ok || stopping) ? LOG_INFO : LOG_WARNING;
    logf_svc(s, level, "%s", desc);

    restart_reason why = s->restart_requested ? s->pending_reason
                         : WIFSIGNALED(status) ? REASON_SIGNAL : REASON_EXIT;
    bool restart_requested = s->restart_requested && s->want_running;
    s->restart_requested = false;
    bool manual = s->manual_restart;
    s->manual_restart = false;

    /* Would the policy restart it?  Only then consult the window. */
    service_event ev = service_exit_event(s->spec, ok, stopping, restart_requested, true);
    if (s->state == SVC_STARTING && s->stage < s->spec->n_stages && ev == EV_EXIT_RESTART) {
        /* Restarted by its policy until the stage deadline. */
        int64_t next = backoff_delay_ms(s->spec->restart.delay_ms, s->spec->restart.max_delay_ms, 0,
                                        s->backoff_attempt + 1, 0.5);
        if (!deadline_active || (int64_t)deadline_left < next) {
            s->carry_deadline_ms = 0;
            snprintf(s->last_error, sizeof(s->last_error), "%s while starting (stage %s)", desc,
                     s->spec->stages[s->stage].name);
            service_dispatch(s, EV_EXIT_FAILED, s->last_error);
            return;
        }
    }
    if (ev == EV_EXIT_RESTART && !manual) {
        if (!restart_window_allow(&s->window, now_mono_ms(), s->spec->restart.window_ms,
                                  s->spec->restart.max_attempts)) {
            char fmt[32];
            logf_svc(s, LOG_ERR, "circuit open: %d restarts within %s", s->spec->restart.max_attempts,
                     format_duration(s->spec->restart.window_ms, fmt, sizeof(fmt)));
            snprintf(s->last_error, sizeof(s->last_error), "%s; circuit open after %d restarts", desc,
                     s->spec->restart.max_attempts);
            ev = EV_EXIT_FAILED;
        }
    }
    if (ev == EV_EXIT_RESTART && s->state == SVC_STARTING && deadline_active) {
        /* The retry must make it before the failing stage's deadline. */
        int64_t until = now_mono_ms() + (int64_t)deadline_left;
        if (s->carry_deadline_ms == 0 || until < s->carry_deadline_ms)
            s->carry_deadline_ms = until;
    }
    if (ev == EV_EXIT_RESTART) {
        s->restarts_total++;
        s->restarts[why]++;
        s->backoff_attempt++;
        int64_t delay = manual ? 0 : backoff_delay_ms(s->spec->restart.delay_ms, s->spec->restart.max_delay_ms,
                                                      s->spec->restart.jitter, s->backoff_attempt,
                                                      supervisor_random(s->sup));
        logf_svc(s, LOG_INFO, "restarting in %lld ms (reason %s, restart %lu)", (long long)delay,
                 restart_reason_name(why), s->restarts_total);
        s->backoff_delay_ms = delay;
        char reason[160];
        snprintf(reason, sizeof(reason), "%s", desc);
        service_dispatch(s, ev, reason);
        return;
    }
    if (ev == EV_EXIT_FAILED && !s->last_error[0])
        snprintf(s->last_error, sizeof(s->last_error), "%s", desc);
    service_dispatch(s, ev, desc);
}

static spawn_opts main_opts(const service *s, int out_fd) {
    return (spawn_opts){
        .argv = s->spec->argv, .envp = s->envp, .out_fd = out_fd,
        .cwd = s->spec->cwd ? s->spec->cwd : s->sup->cfg->dir,
        .has_user = s->has_user, .uid = s->uid, .gid = s->gid, .user = s->spec->user,
        .rlimit_as = s->spec->resources.memory_max, .rlimit_nofile = s->spec->resources.nofile,
    };
}

static void capture_output(service *s, int fd) {
    if (s->out)
        output_stream_detach(s->out);
    s->out = NULL;
    int r = output_stream_start(s->sup->loop, fd, &s->log, on_output, s, &s->out);
    if (r < 0)
        logf_svc(s, LOG_WARNING, "cannot capture output: %s", uv_strerror(r));
}

/* ---- parked children (spawn.h) ---- */

static void on_parked_exit(void *data, pid_t pid, int status) {
    service *s = data;
    guard_remove(&s->sup->guard, pid);
    s->parked = false;
    spawn_parked_forget(&s->park);
    if (s->park_out_fd >= 0)
        close(s->park_out_fd);
    s->park_out_fd = -1;
    if (status >= 0) {
        char desc[96];
        describe_status(status, desc, sizeof(desc));
        s->park_failed = true; /* whatever ended it: do not park it again */
        logf_svc(s, LOG_DEBUG, "parked process %d %s before its start; it will be spawned when due", (int)pid, desc);
    }
}

static void service_unpark(service *s) {
    if (!s->parked)
        return;
    reaper_unwatch(&s->sup->reaper, s->park.pid);
    guard_remove(&s->sup->guard, s->park.pid);
    spawn_parked_cancel(&s->park);
    if (s->park_out_fd >= 0)
        close(s->park_out_fd);
    s->park_out_fd = -1;
    s->parked = false;
}

int service_park(service *s) {
    if (s->parked || s->park_failed || s->exec_inflight || s->pid > 0)
        return 0;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        s->park_failed = true;
        return -errno;
    }
    spawn_opts o = main_opts(s, pipefd[1]);
    const char *step = "park";
    int r = spawn_park(&o, &s->park, &step);
    close(pipefd[1]);
    if (r == 0 && (r = reaper_watch(&s->sup->reaper, s->park.pid, on_parked_exit, s)) < 0)
        spawn_parked_cancel(&s->park);
    if (r < 0) {
        close(pipefd[0]);
        s->park_failed = true;
        if (r != -ENOTSUP)
            logf_svc(s, LOG_DEBUG, "not parked ahead (%s: %s); it will be spawned when due", step, strerror(-r));
        return r;
    }
    s->park_out_fd = pipefd[0];
    s->parked = true;
    /* The guard knows the group from now on, not from its release: the
     * write and the guard's wake-up stay out of the moment a wave's execs
     * compete for the CPU (and a parked process dies with tend too). */
    guard_add(&s->sup->guard, s->park.pid);
    logf_svc(s, LOG_DEBUG, "parked pid %d ahead of its start", (int)s->park.pid);
    return 0;
}

static void on_poll_closed(uv_handle_t *h) { free(h); }

static void exec_poll_done(service *s) {
    if (!s->exec_poll)
        return;
    uv_poll_stop(s->exec_poll);
    uv_close((uv_handle_t *)s->exec_poll, on_poll_closed);
    s->exec_poll = NULL;
}

static void exec_seen(service *s);

/* Reads the released child's word; true once it is known (and then the
 * poll and the child's memory are gone). */
static bool exec_status_settle(service *s) {
    const char *step = NULL;
    int err = 0;
    int r = spawn_parked_result(&s->park, &step, &err);
    if (r == 0)
        return false;
    exec_poll_done(s);
    spawn_parked_forget(&s->park);
    s->exec_inflight = false;
    supervisor_check_settled(s->sup);
    if (r == 2 || r < 0) {
        s->exec_failed = true;
        if (r < 0)
            snprintf(s->spawn_error, sizeof(s->spawn_error), "status of %s: %s", s->spec->argv[0], strerror(-r));
        else
            snprintf(s->spawn_error, sizeof(s->spawn_error), "%s %s: %s", step ? step : "exec", s->spec->argv[0],
                     strerror(err));
        if (r < 0 && s->pgid > 0)
            kill_group(s, SIGKILL); /* it is told by its exit */
    }
    return true;
}

static void on_exec_status(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    service *s = h->data;
    if (!exec_status_settle(s))
        return;
    if (!s->exec_failed)
        exec_seen(s);
    /* else: the child exits with 127; on_main_exit reports the failure */
}

/* A released parked child: 0, or -errno when it cannot be (it has been
 * collected then, and the caller spawns directly). */
static int release_parked(service *s) {
    uv_poll_t *pl = malloc(sizeof(*pl));
    if (!pl || uv_poll_init(s->sup->loop, pl, s->park.status_fd) < 0) {
        free(pl);
        service_unpark(s);
        return -ENOMEM;
    }
    pl->data = s;
    const char *step = "release";
    int r = spawn_release(&s->park, &step);
    if (r < 0) {
        logf_svc(s, LOG_DEBUG, "parked process %d cannot start (%s: %s); spawning it directly", (int)s->park.pid,
                 step, strerror(-r));
        uv_close((uv_handle_t *)pl, on_poll_closed);
        service_unpark(s);
        return r;
    }
    pid_t pid = s->park.pid;
    int out = s->park_out_fd;
    s->park_out_fd = -1;
    s->parked = false;
    (void)reaper_rewatch(&s->sup->reaper, pid, on_main_exit, s);
    s->pid = s->pgid = pid; /* in the guard since service_park() */
    s->exec_inflight = true;
    s->exec_poll = pl;
    r = uv_poll_start(pl, UV_READABLE, on_exec_status);
    if (r < 0) {
        /* Cannot hear from it: wait for it here (it is exec'ing now). */
        logf_svc(s, LOG_DEBUG, "poll on the exec status: %s", uv_strerror(r));
        struct pollfd pfd = {.fd = s->park.status_fd, .events = POLLIN};
        while (!exec_status_settle(s))
            (void)poll(&pfd, 1, -1);
        if (!s->exec_failed)
            s->exec_pending_confirm = true; /* as for a direct spawn */
    }
    capture_output(s, out);
    return 0;
}

/*
 * Starts the main process.  spawn_process() returns once the child has
 * exec'd (a CLONE_VM | CLONE_VFORK child, as posix_spawn: no page tables
 * are copied, which is what made fork() cost ~0.6 ms per service for a
 * tend of a few MB), so the outcome is known here: an exec failure is a
 * spawn failure, and a success makes the service "started" once its
 * state has been entered (exec_pending_confirm).  A parked child is
 * released instead; its exec is seen on the loop (exec_seen), and a
 * failure after the release comes with its exit (on_main_exit).
 */
static int spawn_main(service *s, char *err, size_t errlen) {
    int r = service_open_notify(s, err, errlen);
    if (r < 0)
        return r;
    if (s->parked && release_parked(s) == 0)
        return 0;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -errno;
    }
    spawn_opts o = main_opts(s, pipefd[1]);
    pid_t pid;
    const char *step = "exec";
    r = spawn_process(&o, &pid, &step);
    close(pipefd[1]);
    if (r < 0) {
        close(pipefd[0]);
        snprintf(err, errlen, "%s %s: %s", step, s->spec->argv[0], strerror(-r));
        return r;
    }
    guard_add(&s->sup->guard, pid);
    r = reaper_watch(&s->sup->reaper, pid, on_main_exit, s);
    if (r < 0) {
        kill(-pid, SIGKILL);
        guard_remove(&s->sup->guard, pid);
        close(pipefd[0]);
        snprintf(err, errlen, "out of memory");
        return r;
    }
    s->pid = s->pgid = pid;
    s->exec_pending_confirm = true; /* confirmed once the state is entered */
    capture_output(s, pipefd[0]);
    return 0;
}

/* ---- entry actions ---- */

static void exec_confirmed(service *s);

static void enter_starting(service *s, service_state from) {
    char err[512];
    s->notified_ready = false;
    s->degraded = false;
    s->live_fails = 0;
    s->last_error[0] = '\0';
    s->stage = 0;
    for (size_t i = 0; i < s->spec->n_stages; i++) {
        stage_rt *st = &s->stages[i];
        st->passed = st->ok = false;
        st->fails = st->succs = 0;
        st->duration_ms = -1;
    }
    if (spawn_main(s, err, sizeof(err)) < 0) {
        snprintf(s->last_error, sizeof(s->last_error), "%s", err);
        logf_svc(s, LOG_ERR, "cannot start: %s", err);
        service_dispatch(s, EV_SPAWN_FAILED, err);
        return;
    }
    int64_t now = now_mono_ms();
    s->spawn_ms = now;
    if (!s->spawned_once)
        s->first_spawn_ms = now;
    if (!s->exec_inflight)
        logf_svc(s, LOG_INFO, "spawned pid %d", (int)s->pid);
    if (s->spec->watchdog_ms > 0)
        uv_timer_start(&s->watchdog, on_watchdog, (uint64_t)s->spec->watchdog_ms, 0);
    if (s->spec->has_live)
        uv_timer_start(&s->live_timer, on_live_timer, (uint64_t)MAX(s->spec->live.initial_delay_ms, 0), 0);
    supervisor_on_state(s->sup, s, from, NULL);
    if (s->exec_pending_confirm && s->state == SVC_STARTING) {
        s->exec_pending_confirm = false;
        exec_confirmed(s);
    }
}

/* A released parked child has exec'd. */
static void exec_seen(service *s) {
    if (s->pid <= 0)
        return; /* its exit came first and was handled as such */
    logf_svc(s, LOG_INFO, "spawned pid %d", (int)s->pid);
    exec_confirmed(s);
}

/* The exec succeeded: the service is "started" (dependents waiting for
 * that may go), and its readiness stages begin. */
static void exec_confirmed(service *s) {
    if (s->state != SVC_STARTING || s->pid <= 0)
        return;
    s->spawned_once = true;
    supervisor_park_soon(s->sup);
    supervisor_reevaluate(s->sup, s);
    if (s->state == SVC_STARTING)
        begin_stage(s);
}

static void start_monitoring(service *s) {
    for (size_t i = 0; i < s->spec->n_stages; i++) {
        s->stages[i].fails = s->stages[i].succs = 0;
        schedule_recheck(s, i);
    }
}

static void enter_ready(service *s, service_state from) {
    s->carry_deadline_ms = 0;
    if (from == SVC_STARTING) {
        s->ready_ms = now_mono_ms();
        if (!s->ready_once) {
            s->ready_once = true;
            s->startup_ready_ms = s->ready_ms - s->first_spawn_ms;
        }
        start_monitoring(s);
        if (s->spec->restart.reset_after_ms > 0)
            uv_timer_start(&s->reset_timer, on_reset_timer, (uint64_t)s->spec->restart.reset_after_ms, 0);
    }
}

static void enter_stopping(service *s) {
    stop_monitors(s);
    if (!is_running(s)) {
        /* Nothing left to signal. */
        bool failed = s->fail_after_stop;
        s->fail_after_stop = false;
        service_dispatch(s, failed ? EV_EXIT_FAILED : EV_STOPPED, failed ? s->last_error : NULL);
        return;
    }
    s->kill_sent = false;
    kill_group(s, s->spec->stop.signal > 0 ? s->spec->stop.signal : SIGTERM);
    uv_timer_start(&s->stop_timer, on_stop_timeout, (uint64_t)MAX(s->spec->stop.timeout_ms, 0), 0);
}

static void on_stop_timeout(uv_timer_t *t) {
    service *s = t->data;
    if (!is_running(s))
        return;
    char fmt[32];
    logf_svc(s, LOG_WARNING, "did not stop within %s: sending SIGKILL to process group %d",
             format_duration(s->spec->stop.timeout_ms, fmt, sizeof(fmt)), (int)s->pgid);
    s->kill_sent = true;
    kill_group(s, SIGKILL);
}

static void on_backoff(uv_timer_t *t) {
    service_dispatch(t->data, EV_BACKOFF_DONE, NULL);
}

void service_dispatch(service *s, service_event e, const char *reason) {
    int next = service_transition(s->state, e);
    if (next < 0) {
        supervisor_logf(s->sup, LOG_DEBUG, SVC_NAME(s), "event %s ignored in state %s",
                        service_event_name(e), service_state_name(s->state));
        return;
    }
    service_state from = s->state;
    s->state = (service_state)next;
    if (s->parked && s->state != SVC_PENDING && s->state != SVC_STARTING)
        service_unpark(s); /* it will not start from here */
    if (from != s->state)
        supervisor_logf(s->sup, LOG_INFO, SVC_NAME(s), "state %s -> %s%s%s%s", service_state_name(from),
                        service_state_name(s->state), reason ? " (" : "", reason ? reason : "",
                        reason ? ")" : "");
    switch (s->state) {
    case SVC_STARTING:
        update_health(s);
        enter_starting(s, from);
        return; /* enter_starting reports to the supervisor */
    case SVC_READY:
        enter_ready(s, from);
        break;
    case SVC_STOPPING:
        enter_stopping(s);
        if (s->state != SVC_STOPPING)
            return;
        break;
    case SVC_BACKOFF:
        uv_timer_start(&s->backoff, on_backoff, (uint64_t)MAX(s->backoff_delay_ms, 0), 0);
        break;
    case SVC_STOPPED: case SVC_PENDING: case SVC_BLOCKED:
        uv_timer_stop(&s->backoff);
        break;
    default:
        break;
    }
    update_health(s);
    supervisor_on_state(s->sup, s, from, reason);
}

/* ---- setup ---- */

/* Sets a variable of the service's environment (s->envp) to kv, a
 * "KEY=value" of which the key is klen bytes (strv_env_put); the copy of
 * kv it puts there is s->env_own's, what it replaces sup->environ's or
 * s->env_own's. */
static int env_set(service *s, const char *kv, size_t klen) {
    if (strv_push(&s->env_own, kv) < 0)
        return -ENOMEM;
    if (strv_env_put(&s->envp, s->env_own[strv_length(s->env_own) - 1], klen, NULL) < 0)
        return -ENOMEM;
    s->pctx.envp = s->envp;
    return 0;
}

static int env_setf(service *s, const char *key, const char *value) {
    char kv[4352];
    int n = snprintf(kv, sizeof(kv), "%s=%s", key, value);
    if (n < 0 || (size_t)n >= sizeof(kv))
        return -ENOMEM;
    return env_set(s, kv, strlen(key));
}

int service_init(service *s, struct supervisor *sup, const tend_service_spec *spec, size_t index) {
    memset(s, 0, sizeof(*s));
    s->sup = sup;
    s->spec = spec;
    s->index = index;
    s->last_exit_status = -1;
    s->last_probe_ms = -1;
    histogram_init(&s->probe_seconds[0], histogram_latency_bounds, histogram_latency_n);
    histogram_init(&s->probe_seconds[1], histogram_latency_bounds, histogram_latency_n);
    s->log.fd = -1;
    s->park_out_fd = -1;
    s->park = (spawn_parked){.gate_fd = -1, .status_fd = -1};
    s->stages = calloc(spec->n_stages + 1, sizeof(stage_rt));
    if (!s->stages || restart_window_init(&s->window, spec->restart.max_attempts) < 0)
        return -ENOMEM;
    /* Exec probes run in the service's environment and directory. */
    s->pctx = sup->probe_ctx;
    s->pctx.cwd = spec->cwd ? spec->cwd : sup->cfg->dir;
    timer_init(s, &s->stage_deadline);
    timer_init(s, &s->stage_retry);
    timer_init(s, &s->live_timer);
    timer_init(s, &s->watchdog);
    timer_init(s, &s->backoff);
    timer_init(s, &s->reset_timer);
    timer_init(s, &s->stop_timer);
    s->stage_retry.data = s;
    for (size_t i = 0; i < spec->n_stages; i++) {
        stage_ref *ref = malloc(sizeof(*ref));
        if (!ref)
            return -ENOMEM;
        *ref = (stage_ref){s, i};
        probe_init(&s->stages[i].probe, &s->pctx, &spec->stages[i].probe, stage_probe_result, ref);
        uv_timer_init(sup->loop, &s->stages[i].timer);
        s->stages[i].timer.data = ref;
        s->handles_open++;
        s->stages[i].duration_ms = -1;
    }
    if (spec->has_live)
        probe_init(&s->live, &s->pctx, &spec->live, live_result, s);

    /* The supervisor's copy of environ with this service's variables set:
     * the strings of that copy are shared, only the array and the
     * variables set here are the service's own. */
    size_t n_base = strv_length(sup->environ);
    s->envp = malloc((n_base + 1) * sizeof(char *));
    if (!s->envp)
        return -ENOMEM;
    if (sup->environ)
        memcpy(s->envp, sup->environ, (n_base + 1) * sizeof(char *));
    else
        s->envp[0] = NULL;
    s->pctx.envp = s->envp;
    for (size_t i = 0; spec->env && spec->env[i]; i++) {
        const char *eq = strchr(spec->env[i], '=');
        if (eq && (size_t)(eq - spec->env[i]) < 256 && env_set(s, spec->env[i], (size_t)(eq - spec->env[i])) < 0)
            return -ENOMEM;
    }
    if (env_setf(s, "TEND_SERVICE", spec->name) < 0)
        return -ENOMEM;
    bool wants_notify = spec->watchdog_ms > 0;
    for (size_t i = 0; i < spec->n_stages; i++)
        if (spec->stages[i].probe.kind == TEND_PROBE_NOTIFY)
            wants_notify = true;
    if (wants_notify) {
        /* An abstract socket: binding one creates no file, which on some
         * file systems costs ~0.2 ms a service at startup; who may send is
         * checked on every datagram instead (notify.c). */
        char path[108];
        if ((size_t)snprintf(path, sizeof(path), "%s%s", sup->notify_prefix, spec->name) >= sizeof(path))
            snprintf(path, sizeof(path), "%s%zu", sup->notify_prefix, index);
        s->notify_path = strdup(path);
        if (!s->notify_path || env_setf(s, "NOTIFY_SOCKET", path) < 0)
            return -ENOMEM;
        if (spec->watchdog_ms > 0) {
            char usec[32];
            snprintf(usec, sizeof(usec), "%lld", (long long)spec->watchdog_ms * 1000);
            if (env_setf(s, "WATCHDOG_USEC", usec) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

int service_open_notify(service *s, char *err, size_t errlen) {
    if (!s->notify_path || s->notify)
        return 0;
    int r = notify_socket_open(s->sup->loop, s->notify_path, s->has_user ? s->uid : (uid_t)-1, on_notify,
                               notify_pgid, s, &s->notify);
    if (r < 0)
        snprintf(err, errlen, "service %s: notify socket %s: %s", s->spec->name, s->notify_path, strerror(-r));
    return r;
}

int service_open(service *s, char *err, size_t errlen) {
    const tend_service_spec *spec = s->spec;
    const tend_config *cfg = s->sup->cfg;
    if (spec->user) {
        int r = spawn_lookup_user(spec->user, &s->uid, &s->gid);
        if (r < 0) {
            snprintf(err, errlen, "service %s: user \"%s\": %s", spec->name, spec->user,
                     r == -ESRCH ? "no such user" : strerror(-r));
            return r;
        }
        s->has_user = true;
    }
    /* A service that waits for others gets its socket after the first
     * ones have started (service_open_notify()). */
    if (spec->n_deps == 0) {
        int r = service_open_notify(s, err, errlen);
        if (r < 0)
            return r;
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/logs/%s.log", cfg->state_dir, spec->name);
    int r = logfile_open(&s->log, path, cfg->log_max_size, cfg->log_max_files);
    if (r < 0) {
        snprintf(err, errlen, "service %s: log file %s: %s", spec->name, path, strerror(-r));
        return r;
    }
    return 0;
}

static void on_timer_closed(uv_handle_t *h) {
    /* Stage timers carry a stage_ref; service timers carry the service. */
    (void)h;
}

void service_close(service *s) {
    service_unpark(s);
    if (s->exec_inflight) {
        /* Released, exec not seen, at teardown: collect it before its
         * memory (in ours) goes. */
        exec_poll_done(s);
        if (s->park.pid > 0) {
            int status;
            (void)kill(s->park.pid, SIGKILL);
            while (waitpid(s->park.pid, &status, 0) < 0 && errno == EINTR)
                ;
        }
        spawn_parked_forget(&s->park);
        s->exec_inflight = false;
    }
    stop_monitors(s);
    uv_timer_stop(&s->backoff);
    uv_timer_stop(&s->stop_timer);
    uv_timer_t *timers[] = {&s->stage_deadline, &s->stage_retry, &s->live_timer, &s->watchdog,
                            &s->backoff, &s->reset_timer, &s->stop_timer};
    for (size_t i = 0; i < ELEMENTSOF(timers); i++)
        uv_close((uv_handle_t *)timers[i], on_timer_closed);
    for (size_t i = 0; i < s->spec->n_stages; i++)
        uv_close((uv_handle_t *)&s->stages[i].timer, on_timer_closed);
    if (s->out)
        output_stream_detach(s->out);
    s->out = NULL;
    notify_socket_close(s->notify);
    s->notify = NULL;
}

void service_free(service *s) {
    for (size_t i = 0; s->stages && i < s->spec->n_stages; i++)
        free(s->stages[i].timer.data);
    free(s->stages);
    restart_window_free(&s->window);
    free(s->envp); /* its strings are sup->environ's and s->env_own's */
    strv_free(s->env_own);
    free(s->notify_path);
    logfile_close(&s->log);
}

const char *service_stage_name(const service *s) {
    size_t n = s->spec->n_stages;
    if (n == 0)
        return NULL;
    if (s->state == SVC_STARTING)
        return s->spec->stages[MIN(s->stage, n - 1)].name;
    for (size_t i = 0; i < n; i++)
        if (s->stages[i].passed && !s->stages[i].ok)
            return s->spec->stages[i].name;
    return s->spec->stages[n - 1].name;
}

/* ---- dependency conditions ---- */

bool service_dep_met(const service *d, tend_dep_condition c) {
    switch (c) {
    case TEND_DEP_STARTED: return d->spawned_once;
    case TEND_DEP_READY: return d->ready_once && d->state != SVC_FAILED;
    case TEND_DEP_COMPLETED: return d->state == SVC_COMPLETED;
    }
    return false;
}

bool service_dep_impossible(const service *d, tend_dep_condition c) {
    if (c == TEND_DEP_STARTED)
        return !d->spawned_once && (d->state == SVC_FAILED || d->state == SVC_BLOCKED);
    if (d->state == SVC_FAILED || d->state == SVC_BLOCKED)
        return true;
    if (!d->selected)
        return false;
    switch (c) {
    case TEND_DEP_STARTED: return false;
    case TEND_DEP_READY:
        return !d->ready_once && (d->state == SVC_EXITED || d->state == SVC_COMPLETED);
    case TEND_DEP_COMPLETED: return d->state == SVC_EXITED;
    }
    return false;
}

bool service_is_settled(const service *s) {
    switch (s->state) {
    case SVC_READY: case SVC_UNREADY: case SVC_EXITED: case SVC_COMPLETED: case SVC_FAILED:
    case SVC_BLOCKED:
        return true;
    case SVC_BACKOFF: case SVC_STARTING:
        return s->ready_once;
    case SVC_STOPPED:
        return !s->want_running; /* stopped on purpose during startup */
    default:
        return false;
    }
}

bool service_is_down(const service *s) {
    return s->pid <= 0 && s->state != SVC_STOPPING && s->state != SVC_STARTING &&
           s->state != SVC_READY && s->state != SVC_UNREADY;
}
