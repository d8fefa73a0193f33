/*
 * fuzz-api-request.c - libFuzzer target for the HTTP API's request path:
 * libmicrohttpd's parsing, tend's routing, authentication, body limits,
 * JSON body parsing and every handler, exactly as `tend up` runs them.
 *
 * LLVMFuzzerInitialize builds a real tend_config (config_load_string), a
 * supervisor on a libuv loop and an api_server, as cmd-up.c does, with the
 * TCP listener on an ephemeral loopback port and a bearer token.  Every
 * input is a raw HTTP byte stream (one or more pipelined requests) and is
 * sent twice:
 *   - over the unix socket <state_dir>/tend.sock (trusted: no token);
 *   - to the TCP daemon, through a socketpair handed to MHD_add_connection
 *     (so the token check runs, without using up loopback ports).
 * The write side is shut down after the input, and the loop runs until the
 * server closes the connection (or, for an open event stream, until
 * nothing has happened for a few milliseconds).
 *
 * Nothing an input asks for can escape into later iterations: the
 * supervisor stays in its idle phase (never started, so service actions
 * answer 409 and nothing is spawned), the start/shutdown callbacks are
 * no-ops, and the shutdown flag is reset after each input.  Event streams
 * opened by an input are woken and dropped before the next one.
 *
 * Build and run: see fuzz/README.md.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "events.h"
#include "strv.h"
#include "supervisor.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN "fuzz-token-0123456789abcdef"

static uv_loop_t loop;
static tend_config *cfg;
static supervisor *sup;
static api_server srv;
static char dir[64];
static char sock_path[256];
static bool verbose;        /* TEND_FUZZ_VERBOSE=1: responses to stderr */
static uv_timer_t *heartbeat; /* the event hub's heartbeat timer */
static void die(const char *what, const char *detail) {
    fprintf(stderr, "fuzz-api-request: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static void no_shutdown(api_server *s, const char *reason) { (void)s; (void)reason; }
static void no_start(api_server *s) { (void)s; }

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "we");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die("cannot write", path);
}

/* The events hub's heartbeat is the only thing that writes to a stream
 * whose ?types= filter matches nothing we publish, so it is how such a
 * stream finds out that its client has gone.  It is private to
 * api-events.c: find it on the loop (a timer repeating every
 * EVENTS_HEARTBEAT_MS whose data is the hub). */
static void find_heartbeat(uv_handle_t *h, void *arg) {
    (void)arg;
    if (h->type == UV_TIMER && h->data == (void *)srv.events &&
        uv_timer_get_repeat((uv_timer_t *)h) == EVENTS_HEARTBEAT_MS)
        heartbeat = (uv_timer_t *)h;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    verbose = getenv("TEND_FUZZ_VERBOSE") && strcmp(getenv("TEND_FUZZ_VERBOSE"), "1") == 0;
    snprintf(dir, sizeof(dir), "/tmp/tend-fuzz-XXXXXX");
    if (!mkdtemp(dir))
        die("mkdtemp", strerror(errno));
    char path[256], text[4096];
    snprintf(path, sizeof(path), "%s/token", dir);
    write_file(path, TOKEN "\n");
    /* Ports 9 (discard) on loopback: nothing ever probes them, since the
     * system is never started. */
    snprintf(text, sizeof(text),
             "name: fuzz\n"
             "state_dir: %s/state\n"
             "api: {listen: \"127.0.0.1:7070\", token_file: %s/token}\n"
             "services:\n"
             "  web:\n"
             "    command: [\"/bin/true\", \"--port\", \"9\"]\n"
             "    env: {SECRET_VALUE: do-not-print, LOG_LEVEL: debug}\n"
             "    restart: {policy: \"no\"}\n"
             "    ready:\n"
             "      - name: port\n"
             "        tcp: 127.0.0.1:9\n"
             "        timeout: 1s\n"
             "      - name: api_responsive\n"
             "        http: http://127.0.0.1:9/health\n"
             "        critical: false\n"
             "    live: {http: \"http://127.0.0.1:9/health\", initial_delay: 1h}\n"
             "  worker:\n"
             "    command: /bin/true\n"
             "    critical: false\n"
             "    depends_on: {web: ready}\n"
             "  migrate:\n"
             "    command: [\"/bin/true\"]\n"
             "    oneshot: true\n",
             dir, dir);
    snprintf(path, sizeof(path), "%s/tend.yaml", dir);
    char **errors = NULL;
    if (config_load_string(path, text, strlen(text), &cfg, &errors) < 0)
        die("config", errors && errors[0] ? errors[0] : "invalid");
    strv_free(errors);
    /* An ephemeral port: several fuzzers may run at once.  Nothing connects
     * to it; TCP inputs go through MHD_add_connection. */
    free(cfg->api_listen);
    cfg->api_listen = strdup("127.0.0.1:0");

    if (uv_loop_init(&loop) < 0)
        die("uv_loop_init", NULL);
    supervisor_callbacks cb = {0};
    char err[1024] = "";
    if (supervisor_new(&loop, cfg, NULL, &cb, &sup, err, sizeof(err)) < 0)
        die("supervisor_new", err);
    /* Some state for the views to render (never acted upon). */
    for (size_t i = 0; i < sup->n; i++) {
        service *s = &sup->services[i];
        snprintf(s->last_error, sizeof(s->last_error), "stage port: connect 127.0.0.1:9: connection refused");
        snprintf(s->status_text, sizeof(s->status_text), "warming up \"%zu\"", i);
        s->restarts_total = i;
    }
    /* A log file for /api/v1/services/web/logs to tail. */
    snprintf(path, sizeof(path), "%s/state/logs/web.log", dir);
    FILE *f = fopen(path, "ae");
    if (f) {
        for (int i = 1; i <= 50; i++)
            fprintf(f, "web: line %d of 50%s\n", i, i % 7 ? "" : " \xff\xfe (not UTF-8)");
        fclose(f);
    }

    srv.owner = NULL;
    srv.request_shutdown = no_shutdown;
    srv.request_start = no_start;
    srv.shutdown_timeout_ms = -1;
    if (api_server_start(&srv, &loop, cfg, sup, err, sizeof(err)) < 0)
        die("api_server_start", err);
    if (!srv.tcp || !srv.unix_d)
        die("api_server_start", "a listener is missing");
    snprintf(sock_path, sizeof(sock_path), "%s", srv.socket_path);
    uv_walk(&loop, find_heartbeat, NULL);
    if (!heartbeat)
        die("the events heartbeat timer was not found", NULL);
    /* Leave the temp dir behind only while running. */
    return 0;
}

static unsigned connections(struct MHD_Daemon *d) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

/* One round of the server: MHD (also for connections resumed outside a
 * request, which MHD only notices when run) and the rest of the loop. */
static void turn(void) {
    api_server_kick(&srv);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/*
 * An oracle besides the sanitizers: tend answers 500 "internal" only when
 * something went wrong inside it (a handler without a reply, JSON that
 * could not be built), never because of what a client sent.  The body
 * {"error":{"code":"internal" cannot come from echoed client input: inside
 * a JSON string every quote is escaped.  (It is matched per recv() chunk;
 * a body split across two chunks may be missed, which only loses a
 * finding.)
 */
static void check_response(const char *p, size_t n) {
    static const char needle[] = "{\"error\":{\"code\":\"internal\"";
    if (memmem(p, n, needle, sizeof(needle) - 1)) {
        fprintf(stderr, "fuzz-api-request: the server answered 500 internal:\n%.*s\n", (int)(n > 600 ? 600 : n), p);
        abort();
    }
}

/* Writes the input to fd (non-blocking, interleaved with the server),
 * shuts the write side down and reads until the server closes, or until
 * 8 turns of the server in a row brought nothing (an open event stream:
 * the server is single-threaded and runs only inside turn(), so there is
 * nothing to wait for), or a bound. */
static void exchange(int fd, const uint8_t *data, size_t size) {
    static char buf[65536];
    size_t off = 0;
    bool shut = false;
    int idle = 0;
    for (int round = 0; round < 5000; round++) {
        while (off < size) {
            ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            off = size; /* the server closed: stop writing */
        }
        if (off >= size && !shut) {
            (void)shutdown(fd, SHUT_WR);
            shut = true;
        }
        turn();
        bool eof = false, progress = false;
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0) {
                progress = true;
                if (verbose)
                    (void)!fwrite(buf, 1, (size_t)n, stderr);
                check_response(buf, (size_t)n);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                eof = true;
            break;
        }
        if (eof)
            break;
        if (progress)
            idle = 0;
        else if (shut && ++idle >= 8)
            break;
    }
    close(fd);
}

static void via_unix(const uint8_t *data, size_t size) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("connect to the unix socket", strerror(errno));
    exchange(fd, data, size);
}

static void via_tcp_daemon(const uint8_t *data, size_t size) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", strerror(errno));
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (MHD_add_connection(srv.tcp, sv[1], (struct sockaddr *)&peer, sizeof(peer)) != MHD_YES) {
        close(sv[0]);
        close(sv[1]);
        die("MHD_add_connection", "refused (connection limit reached: a leak?)");
    }
    exchange(sv[0], data, size);
}

/* Wakes every event stream (an event, and the heartbeat for filtered
 * streams: they write, find the peer gone, and close) and lets MHD notice
 * closed connections. */
static void settle(void) {
    for (int i = 0; i < 50; i++) {
        if (events_subscribers(srv.events) > 0) {
            char tick[32];
            int n = snprintf(tick, sizeof(tick), "{\"round\":%d}", i);
            events_publish(srv.events, "fuzz.tick", tick, (size_t)n);
            if (i == 1) /* private field, but a public struct: fire it now */
                uv_timer_start(heartbeat, heartbeat->timer_cb, 0, EVENTS_HEARTBEAT_MS);
        }
        turn();
        if (events_subscribers(srv.events) == 0 && connections(srv.unix_d) == 0 && connections(srv.tcp) == 0)
            return;
    }
    if (connections(srv.unix_d) + connections(srv.tcp) > 64 || events_subscribers(srv.events) > 32) {
        fprintf(stderr, "fuzz-api-request: %u unix + %u tcp connections and %u event streams still open "
                        "after the clients closed\n",
                connections(srv.unix_d), connections(srv.tcp), events_subscribers(srv.events));
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Both sides of "startup complete" for /health/ready, /health/startup,
     * /api/v1/system and /metrics, chosen by the input (reproducible). */
    sup->start_ms = sup->created_ms;
    sup->started_ms = (size & 1) ? sup->created_ms + 1234 : 0;
    if (verbose)
        fprintf(stderr, "\n--- unix socket ---\n");
    via_unix(data, size);
    if (verbose)
        fprintf(stderr, "\n--- tcp daemon ---\n");
    via_tcp_daemon(data, size);
    settle();
    /* What a request may have changed that must not leak into the next. */
    srv.shutdown_requested = false;
    srv.shutdown_timeout_ms = -1;
    if (sup->phase != PHASE_IDLE)
        die("the supervisor left the idle phase", NULL);
    return 0;
}
