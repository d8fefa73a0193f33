/*
 * supervisor.c - see supervisor.h.
 *
 * Scheduling is event-driven: whenever a service changes state, its
 * dependents are re-evaluated (start, keep waiting, or block), and during
 * shutdown every service whose dependents are all down is told to stop.
 * Nothing polls.
 */
#include "supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "fdutil.h"
#include "macros.h"
#include "spawn.h"
#include "strv.h"
#include "timeutil.h"

void supervisor_logf(supervisor *sup, int level, const char *svc, const char *fmt, ...) {
    if (!sup->cb.log)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sup->cb.log(sup->cb.data, level, svc, msg);
}

double supervisor_random(supervisor *sup) {
    if (!sup->rng_seeded) {
        sup->rng = (uint64_t)now_mono_us() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
        sup->rng_seeded = true;
    }
    uint64_t x = sup->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    sup->rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

service *supervisor_find(supervisor *sup, const char *name) {
    for (size_t i = 0; i < sup->n; i++)
        if (strcmp(sup->services[i].spec->name, name) == 0)
            return &sup->services[i];
    return NULL;
}

static void set_phase(supervisor *sup, supervisor_phase p) {
    sup->phase = p;
    if (sup->cb.phase_changed)
        sup->cb.phase_changed(sup->cb.data, p);
}

/* ---- startup ---- */

/* Decides what a wanted, not-yet-running service does now. */
static void evaluate(supervisor *sup, service *s) {
    if (!s->selected || !s->want_running)
        return;
    if (s->state != SVC_STOPPED && s->state != SVC_PENDING && s->state != SVC_BLOCKED)
        return;
    if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED)
        return;
    const graph *g = sup->graph;
    bool all_met = true;
    for (size_t k = 0; k < g->n_deps[s->index]; k++) {
        service *d = &sup->services[g->deps[s->index][k]];
        tend_dep_condition c = s->spec->deps[k].condition;
        if (service_dep_met(d, c))
            continue;
        all_met = false;
        if (service_dep_impossible(d, c)) {
            if (s->state != SVC_BLOCKED) {
                char why[256];
                snprintf(why, sizeof(why), "dependency %s is %s", d->spec->name, service_state_name(d->state));
                snprintf(s->last_error, sizeof(s->last_error), "%s", why);
                service_dispatch(s, EV_BLOCK, why);
            }
            return;
        }
    }
    if (all_met)
        service_dispatch(s, EV_START, NULL);
    else if (s->state != SVC_PENDING)
        service_dispatch(s, EV_WAIT, NULL);
}

static void log_report(supervisor *sup) {
    int64_t total = now_mono_ms() - sup->start_ms;
    supervisor_logf(sup, LOG_INFO, NULL, "startup complete in %lld ms", (long long)total);
    for (size_t k = 0; k < sup->n; k++) {
        service *s = &sup->services[sup->graph->order[k]];
        if (!s->selected)
            continue;
        char stages[1024] = "";
        size_t o = 0;
        for (size_t i = 0; i < s->spec->n_stages && o < sizeof(stages) - 64; i++) {
            const stage_rt *st = &s->stages[i];
            if (st->duration_ms >= 0)
                o += (size_t)snprintf(stages + o, sizeof(stages) - o, "%s%s %lld ms", i ? ", " : "",
                                      s->spec->stages[i].name, (long long)st->duration_ms);
            else
                o += (size_t)snprintf(stages + o, sizeof(stages) - o, "%s%s failed", i ? ", " : "",
                                      s->spec->stages[i].name);
        }
        if (s->ready_once)
            supervisor_logf(sup, LOG_INFO, s->spec->name, "report: wave %d, spawn to ready %lld ms%s%s%s",
                            s->wave, (long long)s->startup_ready_ms, o ? " (" : "", stages, o ? ")" : "");
        else
            supervisor_logf(sup, LOG_INFO, s->spec->name, "report: wave %d, %s%s%s", s->wave,
                            service_state_name(s->state), s->last_error[0] ? ": " : "", s->last_error);
    }
}

static void check_started(supervisor *sup) {
    if (sup->phase != PHASE_STARTING)
        return;
    for (size_t i = 0; i < sup->n; i++)
        if (sup->services[i].selected && !service_is_settled(&sup->services[i]))
            return;
    sup->started_ms = now_mono_ms();
    set_phase(sup, PHASE_STARTED);
    log_report(sup);
}

/* ---- shutdown ---- */

static bool dependents_down(supervisor *sup, const service *s) {
    const graph *g = sup->graph;
    for (size_t k = 0; k < g->n_dependents[s->index]; k++)
        if (!service_is_down(&sup->services[g->dependents[s->index][k]]))
            return false;
    return true;
}

static void finish(supervisor *sup, bool clean);

static void progress_shutdown(supervisor *sup) {
    bool all_down = true;
    for (size_t i = 0; i < sup->n; i++) {
        service *s = &sup->services[i];
        if (service_is_down(s))
            continue;
        all_down = false;
        if (s->state != SVC_STOPPING && dependents_down(sup, s))
            service_dispatch(s, EV_STOP, sup->stop_reason);
    }
    if (all_down && sup->shutdown_holds == 0)
        finish(sup, true);
}

void supervisor_hold_shutdown(supervisor *sup) { sup->shutdown_holds++; }

void supervisor_release_shutdown(supervisor *sup) {
    if (sup->shutdown_holds > 0 && --sup->shutdown_holds == 0 && sup->phase == PHASE_STOPPING)
        progress_shutdown(sup);
}

static void on_deadline(uv_timer_t *t);
static void on_force_exit(uv_timer_t *t);

void supervisor_shutdown(supervisor *sup, const char *reason, int exit_code, int64_t deadline_ms) {
    if (sup->phase == PHASE_STOPPING || sup->phase == PHASE_DONE) {
        supervisor_logf(sup, LOG_INFO, NULL, "shutdown already in progress");
        return;
    }
    sup->exit_code = exit_code;
    sup->stop_ms = now_mono_ms();
    snprintf(sup->stop_reason, sizeof(sup->stop_reason), "%s", reason ? reason : "shutdown");
    set_phase(sup, PHASE_STOPPING);
    supervisor_logf(sup, LOG_INFO, NULL, "shutting down (%s)", sup->stop_reason);
    uv_timer_start(&sup->deadline, on_deadline, (uint64_t)MAX(deadline_ms, 0), 0);
    for (size_t i = 0; i < sup->n; i++) {
        service *s = &sup->services[i];
        s->want_running = false;
        if (s->state == SVC_PENDING || s->state == SVC_BLOCKED || s->state == SVC_BACKOFF)
            service_dispatch(s, EV_STOP, sup->stop_reason);
    }
    progress_shutdown(sup);
}

static void on_deadline(uv_timer_t *t) {
    supervisor *sup = t->data;
    if (sup->phase != PHASE_STOPPING)
        return;
    supervisor_logf(sup, LOG_WARNING, NULL, "shutdown deadline reached: killing every remaining process");
    for (size_t i = 0; i < sup->n; i++) {
        service *s = &sup->services[i];
        if (s->pgid > 0)
            kill(-s->pgid, SIGKILL);
    }
    /* The exits arrive through SIGCHLD; should a process be stuck in the
     * kernel, do not wait for it forever. */
    uv_timer_start(&sup->deadline, on_force_exit, 2000, 0);
}

static void on_force_exit(uv_timer_t *t) {
    supervisor *sup = t->data;
    supervisor_logf(sup, LOG_ERR, NULL, "processes did not exit after SIGKILL; leaving them to the guard");
    finish(sup, false);
}

static void on_signal_close(uv_handle_t *h) { (void)h; }

/* Processes that left their service's process group (setsid, double
 * fork) were re-parented to us, the subreaper: nothing of ours may
 * outlive tend, so they get SIGKILL too.  Returns how many. */
static int kill_stray_children(supervisor *sup) {
    char path[300], buf[4096];
    int n = 0;
    /* Orphans may be re-parented to any thread of ours: read every task. */
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/children", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        for (char *p = buf; *p;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            p = end;
            if (pid <= 1 || pid == sup->guard.pid || pid == guard_prestarted_pid())
                continue;
            if (kill((pid_t)pid, SIGKILL) == 0)
                n++;
        }
    }
    closedir(d);
    if (n > 0)
        supervisor_logf(sup, LOG_WARNING, NULL, "killed %d stray process%s that had left its service's process group",
                        n, n == 1 ? "" : "es");
    return n;
}

static void finish(supervisor *sup, bool clean) {
    /* Closing the services below changes their states, which can lead
     * back here through progress_shutdown(): once is enough. */
    if (sup->phase == PHASE_DONE || sup->finishing)
        return;
    sup->finishing = true;
    if (kill_stray_children(sup) > 0)
        reaper_reap(&sup->reaper);
    uv_timer_stop(&sup->deadline);
    uv_close((uv_handle_t *)&sup->deadline, on_signal_close);
    uv_timer_stop(&sup->park_timer);
    uv_close((uv_handle_t *)&sup->park_timer, on_signal_close);
    for (size_t i = 0; i < sup->n; i++)
        service_close(&sup->services[i]);
    reaper_close(&sup->reaper);
    http_client_free(sup->http);
    sup->http = NULL;
    if (clean)
        guard_stop(&sup->guard);
    else if (sup->guard.fd >= 0) {
        close(sup->guard.fd); /* no "bye": the guard kills what is left */
        sup->guard.fd = -1;
    }
    if (sup->stop_ms > 0) /* else supervisor_new() failed: nothing ran */
        supervisor_logf(sup, LOG_INFO, NULL, "shutdown complete in %lld ms", (long long)(now_mono_ms() - sup->stop_ms));
    set_phase(sup, PHASE_DONE);
}

/* ---- the hook every service transition ends in ---- */

void supervisor_on_state(supervisor *sup, service *s, service_state from, const char *reason) {
    if (sup->cb.state_changed)
        sup->cb.state_changed(sup->cb.data, s, from, reason);
    if (sup->phase == PHASE_STOPPING) {
        progress_shutdown(sup);
        return;
    }
    if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED)
        return;
    /* A critical failure before startup settled aborts it: decided before
     * the dependents are re-evaluated, so that their reactions (blocked)
     * cannot settle the startup first. */
    if (sup->phase == PHASE_STARTING && s->state == SVC_FAILED && s->spec->critical) {
        snprintf(sup->failure, sizeof(sup->failure), "service %s%s%s", s->spec->name,
                 str_startswith(s->last_error, "stage ") ? " " : ": ", s->last_error);
        supervisor_logf(sup, LOG_ERR, NULL, "startup failed: %s", sup->failure);
        supervisor_shutdown(sup, "startup failed", 1, sup->shutdown_timeout_ms);
        return;
    }
    if (sup->initial_pass)
        return;
    const graph *g = sup->graph;
    for (size_t k = 0; k < g->n_dependents[s->index]; k++) {
        evaluate(sup, &sup->services[g->dependents[s->index][k]]);
        if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED)
            return;
    }
    check_started(sup);
}

void supervisor_reevaluate(supervisor *sup, service *s) {
    if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED)
        return;
    if (sup->initial_pass)
        return;
    const graph *g = sup->graph;
    for (size_t k = 0; k < g->n_dependents[s->index]; k++) {
        evaluate(sup, &sup->services[g->dependents[s->index][k]]);
        if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED)
            return;
    }
    check_started(sup);
}

/* ---- parking ahead (spawn.h) ---- */

/*
 * After an exec, parking waits this long, so that it does not compete for
 * the CPU with the wave of processes still loading; a dependency ready
 * sooner starts its dependents directly, as without parking.
 */
#define PARK_DELAY_MS 20
#define PARK_MAX 64         /* parked processes at once */

/* Pending, and each dependency under way: it is likely to start soon. */
static bool park_worthwhile(const supervisor *sup, const service *s) {
    if (!s->selected || !s->want_running || s->state != SVC_PENDING || s->parked || s->park_failed)
        return false;
    const graph *g = sup->graph;
    for (size_t k = 0; k < g->n_deps[s->index]; k++) {
        const service *d = &sup->services[g->deps[s->index][k]];
        if (!d->spawned_once || d->state == SVC_FAILED || d->state == SVC_BLOCKED)
            return false;
    }
    return true;
}

static void on_park_timer(uv_timer_t *t) {
    supervisor *sup = t->data;
    if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED)
        return;
    size_t parked = 0;
    for (size_t i = 0; i < sup->n; i++)
        parked += sup->services[i].parked;
    for (size_t k = 0; k < sup->n && parked < PARK_MAX; k++) {
        service *s = &sup->services[sup->graph->order[k]];
        if (park_worthwhile(sup, s) && service_park(s) == 0)
            parked++;
    }
}

void supervisor_park_soon(supervisor *sup) {
    if (sup->park_enabled && !sup->finishing && (sup->phase == PHASE_STARTING || sup->phase == PHASE_STARTED))
        uv_timer_start(&sup->park_timer, on_park_timer, PARK_DELAY_MS, 0);
}

void supervisor_check_settled(supervisor *sup) {
    if (sup->settled_told || sup->phase == PHASE_IDLE)
        return;
    for (size_t i = 0; i < sup->n; i++)
        if (sup->services[i].exec_inflight)
            return;
    sup->settled_told = true;
    /* The first services have exec'd: now the other notify sockets, which
     * would have competed with those execs for the CPU (a failure here is
     * told again, as a spawn failure, when it is due). */
    for (size_t i = 0; i < sup->n && (sup->phase == PHASE_STARTING || sup->phase == PHASE_STARTED); i++) {
        service *s = &sup->services[i];
        char err[512];
        if (s->selected && service_open_notify(s, err, sizeof(err)) < 0)
            supervisor_logf(sup, LOG_ERR, s->spec->name, "%s", err);
    }
    if (sup->cb.spawns_settled)
        sup->cb.spawns_settled(sup->cb.data);
}

/* ---- construction ---- */

static void select_with_deps(supervisor *sup, size_t i) {
    service *s = &sup->services[i];
    if (s->selected)
        return;
    s->selected = true;
    for (size_t k = 0; k < sup->graph->n_deps[i]; k++)
        select_with_deps(sup, sup->graph->deps[i][k]);
}

static int lock_state_dir(const char *dir, char *err, size_t errlen) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/tend.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = read(fd, pid, sizeof(pid) - 1);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        snprintf(err, errlen, "another tend (pid %s) is running with state directory %s", pid[0] ? pid : "?", dir);
        close(fd);
        return e == EWOULDBLOCK ? -EBUSY : -e;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0)
        (void)!pwrite(fd, pid, (size_t)n, 0);
    return fd; /* kept open (close-on-exec) until supervisor_free() */
}

int supervisor_new(uv_loop_t *loop, const tend_config *cfg, char *const *selected,
                   const supervisor_callbacks *cb, supervisor **ret, char *err, size_t errlen) {
    int r;
    char *gerr = NULL;
    supervisor *sup = calloc(1, sizeof(*sup));
    if (!sup)
        return -ENOMEM;
    sup->loop = loop;
    sup->cfg = cfg;
    sup->cb = *cb;
    sup->created_ms = now_mono_ms();
    sup->shutdown_timeout_ms = 30000;
    sup->guard.fd = -1;
    sup->lock_fd = -1;
    r = graph_build(cfg->services, cfg->n_services, &sup->graph, &gerr);
    if (r < 0) {
        snprintf(err, errlen, "%s", gerr ? gerr : strerror(-r));
        free(gerr);
        free(sup);
        return r;
    }
    char path[4200];
    /* 0711: services that drop privileges must reach their notify
     * socket; nobody else can list the directory. */
    if ((r = mkdir_p(cfg->state_dir, 0711)) < 0) {
        snprintf(err, errlen, "state directory %s: %s", cfg->state_dir, strerror(-r));
        goto fail_early;
    }
    r = lock_state_dir(cfg->state_dir, err, errlen);
    if (r < 0)
        goto fail_early;
    sup->lock_fd = r;
    snprintf(path, sizeof(path), "%s/logs", cfg->state_dir);
    /* Log files are created by their first line: check now that they can be. */
    if ((r = mkdir_p(path, 0750)) < 0 || (r = access(path, W_OK | X_OK) < 0 ? -errno : 0) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
        goto fail_early;
    }

    /* libcurl (and the TLS library it initialises) only when some probe
     * speaks https: it costs ~10 ms to load and most of an idle tend's
     * memory; plain http:// probes are spoken by probe.c. */
    bool wants_curl = false;
    for (size_t i = 0; i < cfg->n_services; i++) {
        const tend_service_spec *sp = &cfg->services[i];
        wants_curl |= sp->has_live && probe_needs_curl(&sp->live);
        for (size_t k = 0; k < sp->n_stages; k++)
            wants_curl |= probe_needs_curl(&sp->stages[k].probe);
    }
    if ((r = reaper_init(&sup->reaper, loop)) < 0) {
        snprintf(err, errlen, "event loop setup: %s", uv_strerror(r));
        goto fail_early;
    }
    if (wants_curl && (r = http_client_new(loop, &sup->http)) < 0) {
        snprintf(err, errlen, "https probes need libcurl: %s",
                 r == -ENOPKG ? "libcurl.so.4 could not be loaded" : strerror(-r));
        goto fail_early;
    }
    sup->probe_ctx = (probe_ctx){.loop = loop, .reaper = &sup->reaper, .http = sup->http, .cwd = cfg->dir};
    /* Orphans re-parent to us, not to init, so we can reap them. */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    /* The loop thread reacts at once when woken (spawn.h says why). */
    (void)spawn_request_short_slice();
    uv_timer_init(loop, &sup->deadline);
    sup->deadline.data = sup;
    uv_timer_init(loop, &sup->park_timer);
    sup->park_timer.data = sup;
    /* TEND_PARK=0 turns parking off (to compare, or to rule it out). */
    const char *park = getenv("TEND_PARK");
    sup->park_enabled = spawn_can_park() && !(park && strcmp(park, "0") == 0);

    /* Abstract names are per network namespace, not per pid namespace:
     * the random part keeps two tends that are both pid 1 apart. */
    snprintf(sup->notify_prefix, sizeof(sup->notify_prefix), "@tend/%d-%08x/", (int)getpid(),
             (unsigned)(supervisor_random(sup) * 4294967296.0));

    sup->n = cfg->n_services;
    sup->services = calloc(sup->n + 1, sizeof(service));
    sup->environ = strv_copy(environ);
    if (!sup->services || !sup->environ) {
        r = -ENOMEM;
        goto fail_early;
    }
    for (size_t i = 0; i < sup->n; i++) {
        service *s = &sup->services[i];
        r = service_init(s, sup, &cfg->services[i], i);
        if (r < 0) {
            snprintf(err, errlen, "service %s: %s", cfg->services[i].name, strerror(-r));
            goto fail;
        }
        s->wave = sup->graph->wave[i];
    }
    if (!selected || !selected[0]) {
        for (size_t i = 0; i < sup->n; i++)
            sup->services[i].selected = true;
    } else {
        for (size_t k = 0; selected[k]; k++) {
            long i = graph_find(cfg->services, cfg->n_services, selected[k]);
            if (i < 0) {
                snprintf(err, errlen, "unknown service \"%s\"", selected[k]);
                r = -ENOENT;
                goto fail;
            }
            select_with_deps(sup, (size_t)i);
        }
    }
    for (size_t i = 0; i < sup->n; i++) {
        r = service_open(&sup->services[i], err, errlen);
        if (r < 0)
            goto fail;
    }
    if (guard_start(&sup->guard) < 0)
        supervisor_logf(sup, LOG_WARNING, NULL, "cannot start the guard process: services may outlive a killed tend");
    /* The selected services' log files, in the order they start. */
    char **paths = calloc(sup->n + 1, sizeof(char *));
    size_t np = 0;
    for (size_t k = 0; paths && k < sup->n; k++) {
        service *s = &sup->services[sup->graph->order[k]];
        if (s->selected && s->log.path)
            paths[np++] = s->log.path;
    }
    sup->precreate = paths ? logfile_precreate(paths, np) : NULL;
    free(paths);
    *ret = sup;
    return 0;
fail:
    sup->phase = PHASE_STOPPING;
    finish(sup, true);
    uv_run(loop, UV_RUN_DEFAULT);
    supervisor_free(sup);
    return r;
fail_early:
    /* Only what was set up before the first allocation of services. */
    http_client_free(sup->http);
    if (sup->reaper.sigchld.loop)
        reaper_close(&sup->reaper);
    if (sup->deadline.loop)
        uv_close((uv_handle_t *)&sup->deadline, NULL);
    if (sup->park_timer.loop)
        uv_close((uv_handle_t *)&sup->park_timer, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    if (sup->lock_fd >= 0)
        close(sup->lock_fd);
    graph_free(sup->graph);
    free(sup->services);
    strv_free(sup->environ);
    free(sup);
    return r;
}

int supervisor_start(supervisor *sup) {
    if (sup->phase != PHASE_IDLE)
        return -EALREADY;
    sup->start_ms = now_mono_ms();
    set_phase(sup, PHASE_STARTING);
    const graph *g = sup->graph;
    for (int w = 1; w <= g->n_waves; w++) {
        char line[2048];
        size_t o = 0;
        line[0] = '\0';
        for (size_t i = 0; i < sup->n; i++) {
            if (g->wave[i] != w || !sup->services[i].selected)
                continue;
            o += (size_t)snprintf(line + o, sizeof(line) - MIN(o, sizeof(line)), "%s%s", o ? ", " : "",
                                  sup->services[i].spec->name);
            if (o >= sizeof(line))
                o = sizeof(line) - 1;
        }
        if (o)
            supervisor_logf(sup, LOG_INFO, NULL, "plan: wave %d: %s", w, line);
    }
    for (size_t i = 0; i < sup->n; i++)
        if (sup->services[i].selected)
            sup->services[i].want_running = true;
    /* The first wave is parked too, all of it before any is released: a
     * clone each (the children set up beside us), then their execs run on
     * every CPU at once rather than one vfork after another. */
    if (sup->park_enabled) {
        size_t parked = 0;
        for (size_t k = 0; k < sup->n && parked < PARK_MAX; k++) {
            service *s = &sup->services[g->order[k]];
            if (s->selected && g->n_deps[s->index] == 0 && service_park(s) == 0)
                parked++;
        }
    }
    /* Every service once, in dependency order, the ones without
     * dependencies first: all of those are released before anything else
     * happens.  A change does not re-evaluate the dependents during this
     * pass (they come later in it); otherwise each start would take the
     * whole graph below it to pending (40 state changes, each logged and
     * published, for 5 waves of 10) before the next one is released. */
    sup->initial_pass = true;
    for (int pass = 0; pass < 2; pass++)
        for (size_t k = 0; k < sup->n && (sup->phase == PHASE_STARTING || sup->phase == PHASE_STARTED); k++)
            if (pass == 1 || g->n_deps[g->order[k]] == 0)
                evaluate(sup, &sup->services[g->order[k]]);
    sup->initial_pass = false;
    if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED) {
        supervisor_check_settled(sup);
        return 0;
    }
    check_started(sup);
    supervisor_check_settled(sup);
    return 0;
}

void supervisor_free(supervisor *sup) {
    if (!sup)
        return;
    logfile_precreate_stop(sup->precreate);
    for (size_t i = 0; sup->services && i < sup->n; i++)
        service_free(&sup->services[i]);
    free(sup->services);
    strv_free(sup->environ);
    graph_free(sup->graph);
    /* Releases the state directory (an embedder may start another). */
    if (sup->lock_fd >= 0)
        close(sup->lock_fd);
    free(sup);
}

/* ---- manual actions ---- */

int supervisor_service_start(supervisor *sup, service *s) {
    if (sup->phase != PHASE_STARTING && sup->phase != PHASE_STARTED)
        return -EBUSY;
    switch (s->state) {
    case SVC_STOPPED: case SVC_EXITED: case SVC_COMPLETED: case SVC_FAILED: case SVC_BLOCKED:
        break;
    default:
        return -EBUSY;
    }
    s->selected = true;
    s->want_running = true;
    s->backoff_attempt = 0;
    restart_window_reset(&s->window);
    if (s->state != SVC_STOPPED && s->state != SVC_BLOCKED)
        service_dispatch(s, EV_WAIT, "manual start");
    evaluate(sup, s);
    return 0;
}

int supervisor_service_stop(supervisor *sup, service *s) {
    switch (s->state) {
    case SVC_STARTING: case SVC_READY: case SVC_UNREADY: case SVC_BACKOFF: case SVC_PENDING:
    case SVC_BLOCKED:
        break;
    default:
        return -EBUSY;
    }
    s->want_running = false;
    service_dispatch(s, EV_STOP, "manual stop");
    return 0;
}

int supervisor_service_restart(supervisor *sup, service *s) {
    switch (s->state) {
    case SVC_STARTING: case SVC_READY: case SVC_UNREADY:
        s->want_running = true;
        s->restart_requested = true;
        s->manual_restart = true;
        s->pending_reason = REASON_MANUAL;
        service_dispatch(s, EV_RESTART, "manual restart");
        return 0;
    case SVC_BACKOFF:
        service_dispatch(s, EV_START, "manual restart");
        return 0;
    default:
        return supervisor_service_start(sup, s);
    }
}

void supervisor_hurry(supervisor *sup) {
    if (sup->phase != PHASE_STOPPING)
        return;
    if (uv_timer_get_due_in(&sup->deadline) > 0 && uv_is_active((uv_handle_t *)&sup->deadline)) {
        supervisor_logf(sup, LOG_WARNING, NULL, "second signal: not waiting for the stop timeouts");
        uv_timer_start(&sup->deadline, on_deadline, 0, 0);
    }
}
