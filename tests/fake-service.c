/*
 * fake-service.c - a configurable stand-in for a real service, used by the
 * integration tests and the demo system.  It can listen on a port and
 * answer /health, become ready after a delay, speak the sd_notify protocol
 * (READY=1, WATCHDOG=1), crash on a timer, ignore SIGTERM, leave a
 * grandchild behind, and report its descriptors and environment so tests
 * can check what the supervisor handed it.
 *
 * Single file, libc only:
 *   gcc -std=gnu11 -O2 -Wall -Wextra -o fake-service tests/fake-service.c
 *
 * Every notable event is one line on stdout, "NAME: event", line-buffered.
 * Durations are float seconds ("0.5"); "250ms" and "2s" are accepted too.
 * One poll() loop drives everything: a signalfd for SIGTERM/SIGINT/SIGCHLD,
 * the listening socket, its clients, and timers computed from deadlines.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

extern char **environ;

#define MAX_CLIENTS 512
#define REQ_MAX 8192
#define CLIENT_IDLE_MS 15000

/* Options; negative durations mean "not set". */
static const char *opt_name = "fake";
static int opt_port = 0;
static double opt_ready_delay = 0;
static bool opt_notify = false;
static double opt_watchdog_stop_after = -1;
static double opt_crash_after = -1;
static int opt_crash_signal = 0;
static int opt_exit_code = 0;
static bool opt_exit_code_set = false;
static bool opt_oneshot = false;
static bool opt_ignore_sigterm = false;
static double opt_term_delay = 0;
static bool opt_spawn_grandchild = false;
static const char *opt_grandchild_pidfile = NULL;
static const char *opt_pidfile = NULL;
static double opt_unhealthy_after = -1;
static double opt_flaky = 0;
static const char *opt_fd_report = NULL;
static const char *opt_counter_file = NULL;
static long opt_stdout_lines = 0;
static const char *opt_env_report = NULL;

typedef struct client {
    int fd;
    char in[REQ_MAX];
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    bool close_after;
    int64_t last_ms;
} client;

static client *clients[MAX_CLIENTS];
static size_t n_clients = 0;
static int listen_fd = -1;
static int64_t start_ms;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    printf("%s: ", opt_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "fake-service: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(2);
}

static void do_exit(int code) {
    fflush(stdout);
    fflush(stderr);
    _exit(code);
}

/* "0.5", "500ms", "2s", "1m" -> seconds. */
static double parse_duration(const char *flag, const char *s) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || v < 0)
        die_usage("%s: invalid duration \"%s\"", flag, s);
    if (*end == '\0' || strcmp(end, "s") == 0)
        return v;
    if (strcmp(end, "ms") == 0)
        return v / 1000.0;
    if (strcmp(end, "m") == 0)
        return v * 60.0;
    die_usage("%s: invalid duration \"%s\"", flag, s);
}

static long parse_long(const char *flag, const char *s, long min, long max) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        die_usage("%s: invalid number \"%s\"", flag, s);
    return v;
}

static int parse_signal(const char *flag, const char *s) {
    static const struct { const char *n; int s; } sigs[] = {
        {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ABRT", SIGABRT},
        {"KILL", SIGKILL}, {"SEGV", SIGSEGV}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
        {"USR2", SIGUSR2},
    };
    const char *n = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (strcasecmp(n, sigs[i].n) == 0)
            return sigs[i].s;
    return (int)parse_long(flag, s, 1, 64);
}

static void usage(void) {
    fputs("usage: fake-service [--name N] [--port P] [--ready-delay S] [--notify]\n"
          "  [--watchdog-stop-after S] [--crash-after S] [--crash-signal SIG]\n"
          "  [--exit-code N] [--oneshot] [--ignore-sigterm] [--term-delay S]\n"
          "  [--spawn-grandchild] [--grandchild-pidfile F] [--pidfile F]\n"
          "  [--unhealthy-after S] [--flaky P] [--fd-report F] [--counter-file F]\n"
          "  [--stdout-lines N] [--env-report F]\n",
          stdout);
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        const char *val = NULL;
        char flag[64];
        /* --flag=value or --flag value */
        char *eq = strchr(arg, '=');
        if (strncmp(arg, "--", 2) != 0)
            die_usage("unexpected argument \"%s\"", arg);
        if (eq) {
            size_t n = (size_t)(eq - arg);
            if (n >= sizeof(flag))
                die_usage("unknown option \"%s\"", arg);
            memcpy(flag, arg, n);
            flag[n] = '\0';
            val = eq + 1;
        } else {
            snprintf(flag, sizeof(flag), "%s", arg);
        }
#define NEED_VAL()                                                        \
    do {                                                                  \
        if (!val) {                                                       \
            if (i + 1 >= argc)                                            \
                die_usage("%s needs a value", flag);                      \
            val = argv[++i];                                              \
        }                                                                 \
    } while (0)
#define NO_VAL()                                                          \
    do {                                                                  \
        if (val)                                                          \
            die_usage("%s takes no value", flag);                         \
    } while (0)
        if (strcmp(flag, "--help") == 0) {
            usage();
            exit(0);
        } else if (strcmp(flag, "--name") == 0) {
            NEED_VAL(); opt_name = val;
        } else if (strcmp(flag, "--port") == 0) {
            NEED_VAL(); opt_port = (int)parse_long(flag, val, 1, 65535);
        } else if (strcmp(flag, "--ready-delay") == 0) {
            NEED_VAL(); opt_ready_delay = parse_duration(flag, val);
        } else if (strcmp(flag, "--notify") == 0) {
            NO_VAL(); opt_notify = true;
        } else if (strcmp(flag, "--watchdog-stop-after") == 0) {
            NEED_VAL(); opt_watchdog_stop_after = parse_duration(flag, val);
        } else if (strcmp(flag, "--crash-after") == 0) {
            NEED_VAL(); opt_crash_after = parse_duration(flag, val);
        } else if (strcmp(flag, "--crash-signal") == 0) {
            NEED_VAL(); opt_crash_signal = parse_signal(flag, val);
        } else if (strcmp(flag, "--exit-code") == 0) {
            NEED_VAL(); opt_exit_code = (int)parse_long(flag, val, 0, 255); opt_exit_code_set = true;
        } else if (strcmp(flag, "--oneshot") == 0) {
            NO_VAL(); opt_oneshot = true;
        } else if (strcmp(flag, "--ignore-sigterm") == 0) {
            NO_VAL(); opt_ignore_sigterm = true;
        } else if (strcmp(flag, "--term-delay") == 0) {
            NEED_VAL(); opt_term_delay = parse_duration(flag, val);
        } else if (strcmp(flag, "--spawn-grandchild") == 0) {
            NO_VAL(); opt_spawn_grandchild = true;
        } else if (strcmp(flag, "--grandchild-pidfile") == 0) {
            NEED_VAL(); opt_grandchild_pidfile = val;
        } else if (strcmp(flag, "--pidfile") == 0) {
            NEED_VAL(); opt_pidfile = val;
        } else if (strcmp(flag, "--unhealthy-after") == 0) {
            NEED_VAL(); opt_unhealthy_after = parse_duration(flag, val);
        } else if (strcmp(flag, "--flaky") == 0) {
            char *end = NULL;
            NEED_VAL();
            opt_flaky = strtod(val, &end);
            if (end == val || *end != '\0' || opt_flaky < 0 || opt_flaky > 1)
                die_usage("%s: invalid probability \"%s\" (0..1)", flag, val);
        } else if (strcmp(flag, "--fd-report") == 0) {
            NEED_VAL(); opt_fd_report = val;
        } else if (strcmp(flag, "--counter-file") == 0) {
            NEED_VAL(); opt_counter_file = val;
        } else if (strcmp(flag, "--stdout-lines") == 0) {
            NEED_VAL(); opt_stdout_lines = parse_long(flag, val, 0, 100000000L);
        } else if (strcmp(flag, "--env-report") == 0) {
            NEED_VAL(); opt_env_report = val;
        } else {
            die_usage("unknown option \"%s\" (try --help)", arg);
        }
#undef NEED_VAL
#undef NO_VAL
    }
    if (opt_spawn_grandchild == false && opt_grandchild_pidfile)
        opt_spawn_grandchild = true;
    if (!opt_exit_code_set)
        opt_exit_code = opt_oneshot ? 0 : 1;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes data to path atomically: PATH.tmp.PID, then rename(2). */
static int write_file_atomic(const char *path, const char *data, size_t len) {
    char tmp[4096];
    int r;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    r = write_all(fd, data, len);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

static void write_pidfile(const char *path, pid_t pid) {
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
    int r = write_file_atomic(path, buf, (size_t)n);
    if (r < 0)
        fprintf(stderr, "%s: cannot write %s: %s\n", opt_name, path, strerror(-r));
}

/* Growing buffer for reports. */
typedef struct sbuf { char *p; size_t len, cap; } sbuf;

static void sbuf_add(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            fprintf(stderr, "%s: out of memory\n", opt_name);
            do_exit(70);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void fd_report(const char *path) {
    int fds[4096];
    size_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        fprintf(stderr, "%s: opendir /proc/self/fd: %s\n", opt_name, strerror(errno));
        return;
    }
    int self = dirfd(d);
    struct dirent *de;
    while ((de = readdir(d)) && n < sizeof(fds) / sizeof(fds[0])) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        int fd = atoi(de->d_name);
        if (fd == self)
            continue;
        fds[n++] = fd;
    }
    closedir(d);
    /* Sort (readdir order is not guaranteed). */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    sbuf b = {0};
    sbuf_add(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        char line[32];
        int l = snprintf(line, sizeof(line), "%d\n", fds[i]);
        sbuf_add(&b, line, (size_t)l);
    }
    int r = write_file_atomic(path, b.p, b.len);
    if (r < 0)
        fprintf(stderr, "%s: cannot write %s: %s\n", opt_name, path, strerror(-r));
    free(b.p);
}

static void env_report(const char *path) {
    sbuf b = {0};
    sbuf_add(&b, "", 0);
    for (char **e = environ; e && *e; e++) {
        sbuf_add(&b, *e, strlen(*e));
        sbuf_add(&b, "\n", 1);
    }
    int r = write_file_atomic(path, b.p, b.len);
    if (r < 0)
        fprintf(stderr, "%s: cannot write %s: %s\n", opt_name, path, strerror(-r));
    free(b.p);
}

static void counter_append(const char *path) {
    struct timespec ts;
    char line[96];
    clock_gettime(CLOCK_REALTIME, &ts);
    int n = snprintf(line, sizeof(line), "pid=%d t=%lld.%03ld\n", (int)getpid(),
                     (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot open %s: %s\n", opt_name, path, strerror(errno));
        return;
    }
    (void)write_all(fd, line, (size_t)n);
    close(fd);
}

/*
 * sd_notify(3): one datagram to the AF_UNIX SOCK_DGRAM socket named by
 * $NOTIFY_SOCKET; a leading '@' names the abstract namespace.  Returns
 * 1 when sent, 0 when NOTIFY_SOCKET is unset, negative errno on failure.
 */
static int notify_send(const char *msg) {
    const char *e = getenv("NOTIFY_SOCKET");
    if (!e || !*e)
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t len = strlen(e);
    if (len >= sizeof(sa.sun_path) || (e[0] != '/' && e[0] != '@'))
        return -EINVAL;
    memcpy(sa.sun_path, e, len);
    socklen_t salen;
    if (e[0] == '@') {
        sa.sun_path[0] = '\0';
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    ssize_t n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    int r = n < 0 ? -errno : 1;
    close(fd);
    return r;
}

static void notify(const char *msg, bool quiet) {
    int r = notify_send(msg);
    if (r < 0)
        fprintf(stderr, "%s: sd_notify(\"%s\"): %s\n", opt_name, msg, strerror(-r));
    else if (r == 0 && !quiet)
        fprintf(stderr, "%s: NOTIFY_SOCKET not set, cannot send %s\n", opt_name, msg);
}

static void spawn_grandchild(int sfd) {
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", opt_name, strerror(errno));
        return;
    }
    if (pid == 0) {
        /* Same process group; no signalfd; SIGTERM default or ignored. */
        sigset_t all;
        close(sfd);
        signal(SIGTERM, opt_ignore_sigterm ? SIG_IGN : SIG_DFL);
        signal(SIGINT, opt_ignore_sigterm ? SIG_IGN : SIG_DFL);
        signal(SIGHUP, opt_ignore_sigterm ? SIG_IGN : SIG_DFL);
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        if (opt_grandchild_pidfile)
            write_pidfile(opt_grandchild_pidfile, getpid());
        say("grandchild %d sleeping", (int)getpid());
        for (;;)
            pause();
    }
    say("spawned grandchild %d", (int)pid);
}

static int start_listening(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)opt_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    listen_fd = fd;
    return 0;
}

static void client_free(size_t idx) {
    client *c = clients[idx];
    close(c->fd);
    free(c->out);
    free(c);
    clients[idx] = clients[--n_clients];
}

static bool is_unhealthy(void) {
    if (opt_unhealthy_after >= 0 && now_ms() - start_ms >= (int64_t)(opt_unhealthy_after * 1000))
        return true;
    if (opt_flaky > 0 && drand48() < opt_flaky)
        return true;
    return false;
}

static void client_respond(client *c, int status, const char *reason, const char *ctype,
                           const char *body, bool head) {
    size_t blen = strlen(body);
    char hdr[512];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: %s\r\n"
                     "\r\n",
                     status, reason, ctype, blen, c->close_after ? "close" : "keep-alive");
    size_t total = (size_t)n + (head ? 0 : blen);
    char *p = realloc(c->out, c->out_len + total);
    if (!p) {
        c->close_after = true;
        return;
    }
    c->out = p;
    memcpy(c->out + c->out_len, hdr, (size_t)n);
    if (!head)
        memcpy(c->out + c->out_len + (size_t)n, body, blen);
    c->out_len += total;
}

/*
 * Finds header `name` in a request head; returns a pointer to its value
 * (leading blanks skipped) and its length in *ret_len, or NULL.
 */
static const char *header_get(const char *head, const char *name, size_t *ret_len) {
    size_t nl = strlen(name);
    const char *p = strchr(head, '\n');
    while (p) {
        p++;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *end = strchr(v, '\n');
            size_t vl = end ? (size_t)(end - v) : strlen(v);
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            *ret_len = vl;
            return v;
        }
        p = strchr(p, '\n');
    }
    return NULL;
}

/* Whether header `name` exists and its value contains `token` (any case). */
static bool header_has(const char *head, const char *name, const char *token) {
    size_t vl, tl = strlen(token);
    const char *v = header_get(head, name, &vl);
    if (!v)
        return false;
    for (size_t i = 0; i + tl <= vl; i++)
        if (strncasecmp(v + i, token, tl) == 0)
            return true;
    return false;
}

/*
 * Handles every complete request in c->in.  A request body (Content-Length)
 * is not expected from probes; if one is announced the connection is
 * answered and closed rather than parsed.
 */
static void client_process(client *c) {
    for (;;) {
        if (c->close_after)
            return;
        c->in[c->in_len] = '\0';
        char *end = strstr(c->in, "\r\n\r\n");
        size_t term = 4;
        if (!end) {
            end = strstr(c->in, "\n\n");
            term = 2;
        }
        if (!end) {
            if (c->in_len >= REQ_MAX - 1) {
                c->close_after = true;
                client_respond(c, 431, "Request Header Fields Too Large", "text/plain", "too large\n", false);
            }
            return;
        }
        size_t req_len = (size_t)(end - c->in) + term;
        char head[REQ_MAX];
        memcpy(head, c->in, req_len);
        head[req_len] = '\0';
        memmove(c->in, c->in + req_len, c->in_len - req_len);
        c->in_len -= req_len;

        char method[16] = "", target[1024] = "", version[16] = "";
        if (sscanf(head, "%15s %1023s %15s", method, target, version) != 3 ||
            strncmp(version, "HTTP/1.", 7) != 0) {
            c->close_after = true;
            client_respond(c, 400, "Bad Request", "text/plain", "bad request\n", false);
            return;
        }
        bool http10 = strcmp(version, "HTTP/1.0") == 0;
        if (header_has(head, "Connection", "close") ||
            (http10 && !header_has(head, "Connection", "keep-alive")))
            c->close_after = true;
        size_t cl_len;
        const char *cl = header_get(head, "Content-Length", &cl_len);
        if (cl && !(cl_len == 1 && cl[0] == '0'))
            c->close_after = true; /* bodies are not read; don't misparse them */
        if (header_has(head, "Transfer-Encoding", ""))
            c->close_after = true;
        char *q = strchr(target, '?');
        if (q)
            *q = '\0';
        bool head_only = strcmp(method, "HEAD") == 0;
        if (strcmp(method, "GET") != 0 && !head_only) {
            client_respond(c, 405, "Method Not Allowed", "text/plain", "method not allowed\n", head_only);
        } else if (strcmp(target, "/health") == 0) {
            if (is_unhealthy())
                client_respond(c, 503, "Service Unavailable", "application/json", "{\"status\":\"bad\"}", head_only);
            else
                client_respond(c, 200, "OK", "application/json", "{\"status\":\"ok\"}", head_only);
        } else if (strcmp(target, "/health/ready") == 0) {
            if (is_unhealthy())
                client_respond(c, 503, "Service Unavailable", "text/plain", "not ready", head_only);
            else
                client_respond(c, 200, "OK", "text/plain", "ready", head_only);
        } else {
            client_respond(c, 404, "Not Found", "text/plain", "not found\n", head_only);
        }
    }
}

/* Returns false when the client must be dropped. */
static bool client_read(client *c) {
    for (;;) {
        if (c->in_len >= REQ_MAX - 1) {
            client_process(c);
            if (c->in_len >= REQ_MAX - 1)
                return false;
        }
        ssize_t n = read(c->fd, c->in + c->in_len, REQ_MAX - 1 - c->in_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return false;
        }
        if (n == 0) {
            client_process(c);
            /* Peer closed its side: flush what we have, then drop. */
            c->close_after = true;
            break;
        }
        c->in_len += (size_t)n;
        c->last_ms = now_ms();
    }
    client_process(c);
    return true;
}

/* Returns false when the client must be dropped. */
static bool client_write(client *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true;
            return false;
        }
        c->out_off += (size_t)n;
        c->last_ms = now_ms();
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    if (c->close_after)
        return false;
    return true;
}

static void accept_clients(void) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, EMFILE, ... */
        }
        if (n_clients >= MAX_CLIENTS) {
            /* Full: drop the longest-idle client so probes keep working. */
            size_t oldest = 0;
            for (size_t i = 1; i < n_clients; i++)
                if (clients[i]->last_ms < clients[oldest]->last_ms)
                    oldest = i;
            client_free(oldest);
        }
        client *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->last_ms = now_ms();
        clients[n_clients++] = c;
    }
}

static int64_t deadline_of(double secs) {
    return secs < 0 ? -1 : start_ms + (int64_t)(secs * 1000.0 + 0.5);
}

static void update_timeout(int64_t *best, int64_t when) {
    if (when < 0)
        return;
    if (*best < 0 || when < *best)
        *best = when;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    start_ms = now_ms();
    parse_args(argc, argv);
    srand48((long)time(NULL) ^ ((long)getpid() << 16));

    /* Before anything opens a descriptor of its own. */
    if (opt_fd_report)
        fd_report(opt_fd_report);
    if (opt_env_report)
        env_report(opt_env_report);
    if (opt_counter_file)
        counter_append(opt_counter_file);
    if (opt_pidfile)
        write_pidfile(opt_pidfile, getpid());

    say("started pid %d", (int)getpid());
    for (long i = 1; i <= opt_stdout_lines; i++)
        say("line %ld of %ld", i, opt_stdout_lines);

    /*
     * Signals.  An inherited SIG_IGN would make blocked signals vanish, so
     * dispositions are reset first.  With --ignore-sigterm, TERM/INT/HUP
     * are ignored outright.
     */
    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    signal(SIGCHLD, SIG_DFL);
    int term_sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof(term_sigs) / sizeof(term_sigs[0]); i++) {
        if (opt_ignore_sigterm) {
            signal(term_sigs[i], SIG_IGN);
        } else {
            signal(term_sigs[i], SIG_DFL);
            sigaddset(&mask, term_sigs[i]);
        }
    }
    /* Unblock everything else that might have been inherited blocked. */
    sigset_t unblock;
    sigfillset(&unblock);
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "%s: signalfd: %s\n", opt_name, strerror(errno));
        return 70;
    }
    if (opt_ignore_sigterm)
        say("ignoring SIGTERM");

    if (opt_spawn_grandchild)
        spawn_grandchild(sfd);

    /* Watchdog: WATCHDOG_USEC (and WATCHDOG_PID, if set, must be us). */
    int64_t wd_period = -1, wd_next = -1, wd_stop = -1;
    {
        const char *u = getenv("WATCHDOG_USEC");
        const char *p = getenv("WATCHDOG_PID");
        bool for_us = !p || !*p || atol(p) == (long)getpid();
        if (u && *u && for_us) {
            long long usec = atoll(u);
            if (usec > 0) {
                wd_period = usec / 2000;
                if (wd_period < 1)
                    wd_period = 1;
                wd_next = start_ms; /* one right away */
                wd_stop = deadline_of(opt_watchdog_stop_after);
                say("watchdog every %lld ms", (long long)wd_period);
            }
        }
    }

    int64_t ready_at = deadline_of(opt_ready_delay);
    bool ready_done = false;
    int64_t crash_at = deadline_of(opt_crash_after);
    int64_t term_exit_at = -1;
    bool wd_stopped = false;

    for (;;) {
        int64_t now = now_ms();

        /* Timers. */
        if (!ready_done && now >= ready_at) {
            ready_done = true;
            if (opt_oneshot) {
                say("work done, exiting with %d", opt_exit_code);
                do_exit(opt_exit_code);
            }
            if (opt_port > 0) {
                int r = start_listening();
                if (r < 0) {
                    say("cannot listen on %d: %s", opt_port, strerror(-r));
                    do_exit(3);
                }
                say("listening on %d", opt_port);
            }
            if (opt_notify) {
                notify("READY=1\nSTATUS=ready", false);
            }
            say("ready");
        }
        if (crash_at >= 0 && now >= crash_at) {
            if (opt_crash_signal) {
                say("crashing with signal %d", opt_crash_signal);
                fflush(stdout);
                signal(opt_crash_signal, SIG_DFL);
                sigset_t s;
                sigemptyset(&s);
                sigaddset(&s, opt_crash_signal);
                sigprocmask(SIG_UNBLOCK, &s, NULL);
                raise(opt_crash_signal);
            }
            say("crashing with %d", opt_exit_code);
            do_exit(opt_exit_code);
        }
        if (term_exit_at >= 0 && now >= term_exit_at) {
            say("exiting on SIGTERM");
            do_exit(0);
        }
        if (wd_period > 0 && !wd_stopped) {
            if (wd_stop >= 0 && now >= wd_stop) {
                wd_stopped = true;
                say("watchdog pings stopped");
            } else if (now >= wd_next) {
                notify("WATCHDOG=1", true);
                wd_next = now + wd_period;
            }
        }
        /* Idle clients. */
        for (size_t i = 0; i < n_clients;) {
            if (now - clients[i]->last_ms > CLIENT_IDLE_MS)
                client_free(i);
            else
                i++;
        }

        int64_t next = -1;
        if (!ready_done)
            update_timeout(&next, ready_at);
        update_timeout(&next, crash_at);
        update_timeout(&next, term_exit_at);
        if (wd_period > 0 && !wd_stopped) {
            update_timeout(&next, wd_next);
            update_timeout(&next, wd_stop);
        }
        if (n_clients > 0)
            update_timeout(&next, now + 1000);
        int timeout = -1;
        if (next >= 0) {
            int64_t d = next - now;
            timeout = d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
        }

        struct pollfd pfds[MAX_CLIENTS + 2];
        nfds_t np = 0;
        pfds[np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        size_t lidx = (size_t)-1;
        if (listen_fd >= 0) {
            lidx = np;
            pfds[np++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        }
        size_t cbase = np;
        for (size_t i = 0; i < n_clients; i++) {
            client *c = clients[i];
            short ev = c->out_len > c->out_off ? POLLOUT : POLLIN;
            pfds[np++] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        int pr = poll(pfds, np, timeout);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: poll: %s\n", opt_name, strerror(errno));
            return 70;
        }
        if (pr == 0)
            continue;

        if (pfds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGCHLD) {
                    int st;
                    pid_t p;
                    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
                        say("grandchild %d exited", (int)p);
                } else if (term_exit_at < 0) {
                    const char *nm = si.ssi_signo == SIGTERM ? "SIGTERM" :
                                     si.ssi_signo == SIGINT ? "SIGINT" : "SIGHUP";
                    if (opt_notify)
                        notify("STOPPING=1", true);
                    if (opt_term_delay > 0) {
                        say("received %s, exiting in %.3fs", nm, opt_term_delay);
                        term_exit_at = now_ms() + (int64_t)(opt_term_delay * 1000.0 + 0.5);
                    } else {
                        say("received %s, exiting", nm);
                        do_exit(0);
                    }
                }
            }
        }
        /* Clients first (indices into pfds match clients[] as polled). */
        size_t polled = n_clients;
        client *snapshot[MAX_CLIENTS];
        memcpy(snapshot, clients, polled * sizeof(client *));
        for (size_t k = 0; k < polled; k++) {
            short re = pfds[cbase + k].revents;
            if (!re)
                continue;
            client *c = snapshot[k];
            bool keep = true;
            if (re & (POLLIN | POLLHUP | POLLERR))
                keep = client_read(c);
            if (keep && (c->out_len > c->out_off || c->close_after))
                keep = client_write(c);
            if (!keep) {
                for (size_t i = 0; i < n_clients; i++)
                    if (clients[i] == c) {
                        client_free(i);
                        break;
                    }
            }
        }
        if (lidx != (size_t)-1 && (pfds[lidx].revents & POLLIN))
            accept_clients();
    }
}
