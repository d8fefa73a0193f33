/*
 * cmd-up.c - `tend up`: load the config, start the system, print its
 * events and the services' output, and shut it down on SIGINT/SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "api-sessions.h"
#include "task-engine.h"
#include "cmd.h"
#include "events.h"
#include "config.h"
#include "fdutil.h"
#include "jsonw.h"
#include "log.h"
#include "macros.h"
#include "mhd-api.h"
#include "parse.h"
#include "supervisor.h"
#include "tend-config.h"
#include "timeutil.h"

#define TEND_VERSION_STRING TEND_VERSION

typedef struct up_ctx {
    supervisor *sup;
    api_server api;
    bool api_running;
    uv_timer_t deferred;    /* API requests act on the next loop turn */
    bool want_start, want_shutdown;
    int64_t shutdown_timeout_ms;
    int notify_fd;          /* --detach: tells the waiting parent the outcome */
    uv_signal_t sigint, sigterm, sighup;
    bool signals_open;
    /* sessions: the session store, and the durable store it mirrors into
     * with sessions.persist (NULL otherwise). */
    api_sessions *sessions;
    store *store;
    /* tasks: the engine over u->store (opened when tasks: has queues). */
    task_engine *engine;
    bool engine_held;
} up_ctx;

static void on_log(void *data, int level, const char *svc, const char *msg) {
    log_line(level, svc, msg);
}

/*
 * The events of the API's stream (events.h), written with jsonw rather
 * than as jansson trees: one for every state change.  The same objects:
 * the members in this order, "ts" last.
 */
#define EVENT_MAX (256 * 1024)

static void event_begin(strbuf *b, const char *key, const char *value) {
    strbuf_init(b, EVENT_MAX);
    jsonw_open(b);
    jsonw_key(b, key);
    jsonw_string(b, value);
}

/* The "from" and "to" of a transition (state, health, task). */
static void event_from_to(strbuf *b, const char *from, const char *to) {
    jsonw_key(b, "from");
    jsonw_string(b, from);
    jsonw_key(b, "to");
    jsonw_string(b, to);
}

static void event_publish(up_ctx *u, const char *type, strbuf *b) {
    char ts[32];
    jsonw_key(b, "ts");
    jsonw_string(b, format_rfc3339_ms(now_wall_ms(), ts, sizeof(ts)));
    jsonw_close(b);
    if (b->error == 0)
        events_publish(u->api.events, type, b->data, b->len);
    strbuf_free(b);
}

static void on_output(void *data, const char *svc, size_t index, const char *line, size_t len) {
    up_ctx *u = data;
    log_output_line(svc, index, line, len);
    /* `tend logs -f` and the dashboard read output from the event stream. */
    if (u->api_running && events_subscribers(u->api.events) > 0) {
        strbuf b;
        event_begin(&b, "service", svc);
        jsonw_key(&b, "line");
        jsonw_stringn(&b, line, len);
        event_publish(u, "service.output", &b);
    }
}

/* Before the loop waits: what this turn logged goes out in one write. */
static void on_flush(uv_prepare_t *p) { log_flush(); }

/* --detach: the waiting parent exits on this, pointing at the log, which
 * must then hold every line so far. */
static void tell_parent(up_ctx *u, char verdict) {
    if (u->notify_fd < 0)
        return;
    log_flush();
    (void)write_all(u->notify_fd, &verdict, 1);
    close(u->notify_fd);
    u->notify_fd = -1;
}

static const char *phase_name(supervisor_phase p) {
    static const char *const n[] = {"idle", "starting", "started", "stopping", "stopped"};
    return p <= PHASE_DONE ? n[p] : "?";
}

static void on_state(void *data, const service *s, service_state from, const char *reason) {
    up_ctx *u = data;
    if (!u->api_running)
        return;
    api_server_touch(&u->api);
    strbuf b;
    event_begin(&b, "service", s->spec->name);
    event_from_to(&b, service_state_name(from), service_state_name(s->state));
    jsonw_key(&b, "reason");
    jsonw_string(&b, reason);
    jsonw_key(&b, "pid");
    if (s->pid > 0)
        jsonw_int(&b, s->pid);
    else
        jsonw_null(&b);
    event_publish(u, "service.state", &b);
}

static void on_health(void *data, const service *s, service_health from) {
    up_ctx *u = data;
    if (!u->api_running)
        return;
    api_server_touch(&u->api);
    strbuf b;
    event_begin(&b, "service", s->spec->name);
    event_from_to(&b, service_health_name(from), service_health_name(s->health));
    event_publish(u, "service.health", &b);
}

static void sessions_stop(up_ctx *u);
static void tasks_stop(up_ctx *u);

static void on_phase(void *data, supervisor_phase phase) {
    up_ctx *u = data;
    if (phase == PHASE_STOPPING) /* tasks: stop accepting, drain, requeue */
        tasks_stop(u);
    if (u->api_running)
        api_server_touch(&u->api);
    if (u->api_running) {
        strbuf b;
        event_begin(&b, "state", phase_name(phase));
        event_publish(u, "system.phase", &b);
    }
    if (phase == PHASE_DONE && u->api_running) {
        u->api_running = false;
        api_server_stop(&u->api);
        uv_close((uv_handle_t *)&u->deferred, NULL);
    }
    if (phase == PHASE_DONE) /* sessions: flush the durable store */
        sessions_stop(u);
    /* A startup that fails is told once the system has stopped: when
     * `tend up --detach` returns, nothing of it runs any more. */
    if (phase == PHASE_STARTED)
        tell_parent(u, '0');
    else if (phase == PHASE_DONE) {
        tell_parent(u, '1');
        if (u->signals_open) {
            u->signals_open = false;
            uv_close((uv_handle_t *)&u->sigint, NULL);
            uv_close((uv_handle_t *)&u->sigterm, NULL);
            uv_close((uv_handle_t *)&u->sighup, NULL);
        }
    }
}

/* Whether this build has the configured store (only SQLite today);
 * says why on stderr when not.  The URL is not echoed: it may carry a
 * password. */
static bool store_supported(const tend_config *cfg) {
    if (!cfg->store || strcmp(cfg->store, "sqlite") == 0)
        return true;
    cli_error("store: the PostgreSQL store is not available in this build; use store: sqlite");
    return false;
}

/* sessions: the session store, and with sessions.persist the durable
 * store opened to keep them (loading what it holds).  Exit code on error. */
static int sessions_start(up_ctx *u, uv_loop_t *loop, const tend_config *cfg) {
    int r;
    if (cfg->sessions.persist && !u->store) {
        if (!store_supported(cfg))
            return EXIT_USAGE;
        store_config sc = {.backend = STORE_BACKEND_SQLITE, .state_dir = cfg->state_dir};
        char *msg = NULL;
        if (mkdir_p(cfg->state_dir, 0700) < 0) {
            cli_error("%s: %s", cfg->state_dir, strerror(errno));
            return EXIT_RUNTIME;
        }
        r = store_open(loop, &sc, &u->store, &msg);
        if (r < 0) {
            cli_error("sessions.persist: cannot open the store: %s", msg ? msg : strerror(-r));
            free(msg);
            return EXIT_RUNTIME;
        }
    }
    r = api_sessions_new(loop, &cfg->sessions, cfg->sessions.persist ? u->store : NULL, &u->sessions);
    if (r >= 0)
        r = api_sessions_load(u->sessions);
    if (r < 0) {
        cli_error("sessions: %s", strerror(-r));
        return EXIT_RUNTIME;
    }
    if (cfg->sessions.persist)
        log_info(NULL, "sessions: %d loaded from the store", r);
    u->api.sessions = u->sessions;
    return 0;
}

static void sessions_stop(up_ctx *u) {
    api_sessions_close(u->sessions);
    u->api.sessions = NULL;
    if (u->store) {
        store_close(u->store, NULL, NULL);
        u->store = NULL;
    }
}

/* ---- tasks: the store, RECOVER, the engine (SPEC 4 steps 2-3) ---- */

static void on_task_log(void *data, int level, const char *queue, const char *msg) {
    if (queue)
        log_msg(level, NULL, "queue %s: %s", queue, msg);
    else
        log_msg(level, NULL, "tasks: %s", msg);
}

static void on_task_state(void *data, const char *id, const char *queue, store_task_state from, store_task_state to) {
    up_ctx *u = data;
    if (!u->api_running || events_subscribers(u->api.events) == 0)
        return;
    strbuf b;
    event_begin(&b, "id", id);
    jsonw_key(&b, "queue");
    jsonw_string(&b, queue);
    event_from_to(&b, store_task_state_to_string(from), store_task_state_to_string(to));
    event_publish(u, "task.state", &b);
}

typedef struct recover_wait {
    bool done;
    int result;
} recover_wait;

static void on_recovered(store_op *op, int result) {
    recover_wait *w = op->userdata;
    w->done = true;
    w->result = result;
}

/* Opens <state_dir>/tend.db, requeues what a crash left running and
 * starts the engine; nothing at all without queues (no database file).
 * Exit code on error. */
static int tasks_start(up_ctx *u, uv_loop_t *loop, const tend_config *cfg) {
    if (cfg->tasks.n_queues == 0)
        return 0;
    if (!store_supported(cfg))
        return EXIT_USAGE;
    if (mkdir_p(cfg->state_dir, 0700) < 0) {
        cli_error("%s: %s", cfg->state_dir, strerror(errno));
        return EXIT_RUNTIME;
    }
    store_config sc = {.backend = STORE_BACKEND_SQLITE, .state_dir = cfg->state_dir};
    char *msg = NULL;
    int r = store_open(loop, &sc, &u->store, &msg);
    if (r < 0) {
        cli_error("tasks: cannot open the store: %s", msg ? msg : strerror(-r));
        free(msg);
        return EXIT_RUNTIME;
    }
    /* RECOVER before anything dispatches: the loop runs only this op. */
    recover_wait w = {0};
    store_op op = {.kind = STORE_OP_RECOVER, .done = on_recovered, .userdata = &w};
    op.recover.now = now_wall_ms();
    _cleanup_free_ const char **uncharged = NULL;
    if (task_engine_recover_uncharged(&cfg->tasks, &uncharged, &op.recover.n_uncharged) < 0) {
        cli_error("tasks: cannot recover: %s", strerror(ENOMEM));
        return EXIT_RUNTIME;
    }
    op.recover.uncharged = uncharged;
    if ((r = store_submit(u->store, &op)) < 0) {
        cli_error("tasks: cannot recover: %s", strerror(-r));
        return EXIT_RUNTIME;
    }
    while (!w.done)
        uv_run(loop, UV_RUN_ONCE);
    if (w.result < 0) {
        store_op_clear(&op);
        cli_error("tasks: recovering the tasks left running failed: %s", strerror(-w.result));
        return EXIT_RUNTIME;
    }
    /* A signal while recovering: shutdown began (and may have closed the
     * store); start nothing, the caller unwinds. */
    if (u->sup->phase >= PHASE_STOPPING || !u->store) {
        store_op_clear(&op);
        return 0;
    }
    if (op.recover.ret_requeued || op.recover.ret_dead)
        log_warn(NULL, "tasks: %zu tasks left running by the last run requeued, %zu on their last attempt now dead",
                    op.recover.ret_requeued, op.recover.ret_dead);
    task_engine_config ec = {.loop = loop, .store = u->store, .spec = &cfg->tasks, .reaper = &u->sup->reaper, .guard = &u->sup->guard,
                             .cwd = cfg->dir, .cb = {.data = u, .log = on_task_log, .state_changed = on_task_state},
                             .paused = op.recover.ret_paused, .n_paused = op.recover.ret_n_paused};
    char err[512] = "";
    r = task_engine_new(&ec, &u->engine, err, sizeof(err));
    store_op_clear(&op);
    if (r < 0 || (r = task_engine_start(u->engine)) < 0) {
        cli_error("tasks: %s", err[0] ? err : strerror(-r));
        return EXIT_RUNTIME;
    }
    u->api.engine = u->engine;
    log_info(NULL, "tasks: %zu queue%s, %d workers, store %s", cfg->tasks.n_queues, cfg->tasks.n_queues == 1 ? "" : "s",
             cfg->tasks.workers, store_backend_name(u->store));
    return 0;
}

static void on_engine_stopped(void *data) {
    up_ctx *u = data;
    if (u->engine_held) {
        u->engine_held = false;
        supervisor_release_shutdown(u->sup);
    }
}

/* Shutdown: the engine answers parked reserves, lets running tasks finish
 * until shortly before the hard deadline, requeues the rest; services
 * stop meanwhile; the supervisor waits for it (the reaper must outlive
 * the tasks' processes), then the store is flushed and closed. */
static void tasks_stop(up_ctx *u) {
    if (!u->engine || task_engine_stopping(u->engine))
        return;
    int64_t to = u->sup->shutdown_timeout_ms;
    if (u->api.shutdown_timeout_ms >= 0)
        to = u->api.shutdown_timeout_ms;
    int64_t deadline = MAX(to - 1000, to / 2);
    u->engine_held = true;
    supervisor_hold_shutdown(u->sup);
    task_engine_shutdown(u->engine, deadline, on_engine_stopped, u);
}

static void on_deferred(uv_timer_t *t) {
    up_ctx *u = t->data;
    if (u->want_start) {
        u->want_start = false;
        supervisor_start(u->sup);
    }
    if (u->want_shutdown) {
        u->want_shutdown = false;
        int64_t to = u->api.shutdown_timeout_ms >= 0 ? u->api.shutdown_timeout_ms : u->shutdown_timeout_ms;
        supervisor_shutdown(u->sup, "API request", EXIT_OK, to);
    }
}

static void api_request_shutdown(api_server *srv, const char *reason) {
    up_ctx *u = srv->owner;
    u->want_shutdown = true;
    uv_timer_start(&u->deferred, on_deferred, 0, 0);
}

static void api_request_start(api_server *srv) {
    up_ctx *u = srv->owner;
    u->want_start = true;
    uv_timer_start(&u->deferred, on_deferred, 0, 0);
}

/* libmicrohttpd loads on a thread of its own once the first services
 * have exec'd (spawns_settled): beside the configuration it slowed it
 * down (the two threads share the address space's lock), and while the
 * first wave execs it slowed that too (its children were cloned in our
 * address space).  Until the daemons answer, clients wait in the listen
 * backlog.  Not once the system has stopped (a startup that failed at
 * once). */
static void serve_api(up_ctx *u) {
    if (!u->api_running)
        return;
    mhd_api_preload();
    api_server_serve(&u->api);
}

static void on_spawns_settled(void *data) { serve_api(data); }

/* The API's daemons did not start once libmicrohttpd was loaded: the
 * services may be up by now, so they are stopped as for a signal. */
static void api_failed(api_server *srv, const char *message) {
    up_ctx *u = srv->owner;
    cli_error("%s", message);
    tell_parent(u, '1');
    supervisor_shutdown(u->sup, "API failed to start", EXIT_RUNTIME, u->shutdown_timeout_ms);
}

static void on_signal(uv_signal_t *h, int signum) {
    up_ctx *u = h->data;
    if (u->sup->phase == PHASE_STOPPING) {
        supervisor_hurry(u->sup);
        return;
    }
    char reason[32];
    snprintf(reason, sizeof(reason), "SIG%s", signal_name(signum));
    supervisor_shutdown(u->sup, reason, EXIT_OK, u->shutdown_timeout_ms);
}

/* --detach: the parent waits for the verdict of startup and exits with
 * it; the child runs on in its own session with output to tend.log. */
static int detach(const tend_config *cfg, int *ret_notify_fd) {
    int p[2];
    char path[4200];
    if (mkdir_p(cfg->state_dir, 0700) < 0 || pipe2(p, O_CLOEXEC) < 0) {
        cli_error("cannot detach: %s", strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/tend.log", cfg->state_dir);
    int logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (logfd < 0) {
        cli_error("%s: %s", path, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        close(logfd);
        char v = '1';
        ssize_t n;
        do
            n = read(p[0], &v, 1);
        while (n < 0 && errno == EINTR);
        if (n == 1 && v == '0') {
            printf("tend: %s started (pid %d); log: %s\n", cfg->name, (int)pid, path);
            fflush(stdout);
            _exit(EXIT_OK);
        }
        fprintf(stderr, "tend: %s failed to start; see %s\n", cfg->name, path);
        _exit(EXIT_RUNTIME);
    }
    close(p[0]);
    setsid();
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
    dup2(logfd, STDOUT_FILENO);
    dup2(logfd, STDERR_FILENO);
    close(logfd);
    *ret_notify_fd = p[1];
    return 0;
}

static void usage(void) {
    printf("usage: tend up [-f FILE] [--detach] [--no-start] [--timeout D] [SERVICE...]\n"
           "  -f, --file FILE   config (default: $TEND_CONFIG or ./tend.yaml)\n"
           "  -d, --detach      run in the background once startup succeeded\n"
           "      --no-start    serve the API and wait for POST /api/v1/system/start\n"
           "      --timeout D   hard deadline for shutdown (default 30s)\n");
}

/* The end of a startup that stops before the API serves: runs the loop
 * until the shutdown already requested has finished (the engine drains,
 * the store closes), frees what was started and returns code, or the
 * supervisor's exit code when code is -1. */
static int abandon_start(up_ctx *u, uv_loop_t *loop, tend_config *cfg, int code) {
    uv_run(loop, UV_RUN_DEFAULT);
    if (code == -1)
        code = u->sup->exit_code;
    u->engine = task_engine_free(u->engine);
    u->sessions = api_sessions_free(u->sessions);
    supervisor_free(u->sup);
    uv_loop_close(loop);
    tend_config_free(cfg);
    return code;
}

static int run(int argc, char **argv) {
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},
        {"detach", no_argument, NULL, 'd'},
        {"timeout", required_argument, NULL, 'T'},
        {"no-start", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *path = cli_default_config();
    int64_t timeout_ms = 30000;
    bool do_detach = false, no_start = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+f:dh", opts, NULL)) != -1) {
        switch (c) {
        case 'f': path = optarg; break;
        case 'd': do_detach = true; break;
        case 'N': no_start = true; break;
        case 'T':
            if (parse_duration_ms(optarg, &timeout_ms) < 0) {
                cli_error("--timeout: invalid duration \"%s\" (try 500ms, 5s, 2m)", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h': usage(); return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    /* The guard, forked while the process is small and has one thread
     * (guard.h).  With --detach after its fork, which must not find it. */
    if (!do_detach)
        guard_prestart();
    tend_config *cfg;
    int r = cli_load_config(path, &cfg);
    if (r != 0)
        return r;

    up_ctx u = {.shutdown_timeout_ms = timeout_ms, .notify_fd = -1};
    if (do_detach && detach(cfg, &u.notify_fd) < 0) {
        tend_config_free(cfg);
        return EXIT_RUNTIME;
    }
    if (do_detach)
        guard_prestart();
    log_setup(cfg->log_format == TEND_LOG_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT, cfg->log_level,
              isatty(STDOUT_FILENO) && !getenv("NO_COLOR"));
    size_t width = 4;
    for (size_t i = 0; i < cfg->n_services; i++)
        width = MAX(width, strlen(cfg->services[i].name));
    log_set_name_width(width);
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    supervisor_callbacks cb = {.data = &u, .log = on_log, .output = on_output, .phase_changed = on_phase,
                               .state_changed = on_state, .health_changed = on_health,
                               .spawns_settled = on_spawns_settled};
    char err[1024] = "";
    char **selected = optind < argc ? argv + optind : NULL;
    r = supervisor_new(&loop, cfg, selected, &cb, &u.sup, err, sizeof(err));
    if (r < 0) {
        cli_error("%s", err);
        tell_parent(&u, '1');
        uv_loop_close(&loop);
        tend_config_free(cfg);
        return r == -ENOENT && selected ? EXIT_USAGE : EXIT_RUNTIME;
    }
    uv_signal_t *sigs[] = {&u.sigint, &u.sigterm, &u.sighup};
    int signums[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < ELEMENTSOF(sigs); i++) {
        uv_signal_init(&loop, sigs[i]);
        sigs[i]->data = &u;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    u.signals_open = true;
    u.sup->shutdown_timeout_ms = timeout_ms;
    uv_timer_init(&loop, &u.deferred);
    u.deferred.data = &u;
    u.api.owner = &u;
    u.api.request_shutdown = api_request_shutdown;
    u.api.request_start = api_request_start;
    u.api.failed = api_failed;
    u.api.shutdown_timeout_ms = -1;
    if ((r = tasks_start(&u, &loop, cfg)) != 0) { /* tasks */
        uv_close((uv_handle_t *)&u.deferred, NULL);
        tell_parent(&u, '1');
        if (u.engine) {
            task_engine_shutdown(u.engine, 0, NULL, NULL);
        }
        supervisor_shutdown(u.sup, "the task engine failed to start", r, 1000);
        if (u.store) {
            store_close(u.store, NULL, NULL);
            u.store = NULL;
        }
        return abandon_start(&u, &loop, cfg, r);
    }
    if (u.sup->phase < PHASE_STOPPING && (r = sessions_start(&u, &loop, cfg)) != 0) { /* sessions */
        uv_close((uv_handle_t *)&u.deferred, NULL);
        tell_parent(&u, '1');
        supervisor_shutdown(u.sup, "the session store failed to start", r, 1000);
        return abandon_start(&u, &loop, cfg, r);
    }
    if (u.sup->phase >= PHASE_STOPPING) {
        /* SIGINT/SIGTERM while the store was recovered or sessions loaded:
         * let that shutdown finish (the engine drains, the store closes)
         * and start nothing. */
        uv_close((uv_handle_t *)&u.deferred, NULL);
        tell_parent(&u, '1');
        return abandon_start(&u, &loop, cfg, -1);
    }
    r = api_server_start(&u.api, &loop, cfg, u.sup, err, sizeof(err));
    if (r < 0) {
        cli_error("%s", err);
        api_server_stop(&u.api);
        uv_close((uv_handle_t *)&u.deferred, NULL);
        tell_parent(&u, '1');
        supervisor_shutdown(u.sup, "API failed to start", EXIT_USAGE, 1000);
        return abandon_start(&u, &loop, cfg, r == -EINVAL ? EXIT_USAGE : EXIT_RUNTIME); /* -EINVAL: the token file, api.listen */
    }
    u.api_running = true;
    log_info(NULL, "tend %s starting %s (%zu services, state in %s, api %s, socket %s)", TEND_VERSION_STRING,
             cfg->name, cfg->n_services, cfg->state_dir, cfg->api_listen && *cfg->api_listen ? cfg->api_listen : "off",
             u.api.socket_path);
    /* A wave of services starting logs ~5 lines each, which a reader of
     * our output (a pipe, a terminal) would otherwise be woken for one by
     * one while the services compete with it for the CPU. */
    uv_prepare_t flush;
    uv_prepare_init(&loop, &flush);
    uv_prepare_start(&flush, on_flush);
    uv_unref((uv_handle_t *)&flush); /* it keeps nothing running */
    log_set_buffered(true);
    if (no_start) {
        log_info(NULL, "waiting for POST /api/v1/system/start");
        serve_api(&u);
    } else {
        supervisor_start(u.sup); /* serves the API when its spawns settle */
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    log_set_buffered(false);
    uv_close((uv_handle_t *)&flush, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    int code = u.sup->exit_code;
    if (u.sup->failure[0])
        cli_error("startup failed: %s", u.sup->failure);
    u.sessions = api_sessions_free(u.sessions);
    u.engine = task_engine_free(u.engine);
    supervisor_free(u.sup);
    if (uv_loop_close(&loop) == UV_EBUSY)
        log_debug(NULL, "event loop closed with handles still open");
    tend_config_free(cfg);
    return code;
}

const cmd_entry cmd_up_entry = {"up", "[-f FILE] [--detach] [--no-start] [--timeout D] [SERVICE...]",
                                "start the system and supervise it", run};
