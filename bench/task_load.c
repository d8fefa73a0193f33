/*
 * task_load.c - the load generator of bench/task_http.py: drives tend's
 * task API (HTTP/1.1 keep-alive over TCP or the unix socket) or
 * beanstalkd (its plain-text protocol over TCP) as fast as it can, from
 * several threads, one connection each, and prints one JSON line of
 * results.  A Python client tops out at a few thousand requests a second
 * on this machine, far below the rates measured here.
 *
 *   task_load submit TARGET QUEUE N BULK CONNS
 *       POST N tasks to QUEUE in bodies of BULK tasks over CONNS connections.
 *   task_load pull TARGET QUEUE N BULK WORKERS
 *       end to end: one thread submits N tasks in bodies of BULK while
 *       WORKERS threads reserve and ack until N are acked.
 *   task_load bput TARGET N PIPELINE CONNS
 *       beanstalkd: put N jobs, PIPELINE commands in flight per connection.
 *   task_load bpull TARGET N PIPELINE WORKERS
 *       beanstalkd end to end: one producer puts N jobs (pipelined) while
 *       WORKERS consumers reserve and delete until N are deleted.
 *
 * TARGET: unix:/path/tend.sock or tcp:127.0.0.1:7070.  Payloads are small
 * JSON objects ({"n":123}); beanstalkd jobs carry the same bytes.
 * Output: {"mode":..,"tasks":N,"seconds":..,"rate":..,"errors":..}.
 * Exit 1 on an error that stops the run (connect, a non-2xx answer).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF_MAX (8 * 1024 * 1024)

static const char *target;
static const char *queue;
static long n_tasks, bulk, threads;
static atomic_long next_task, done_tasks, errors;
static _Atomic double end_time; /* when the last task completed (end-to-end modes) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "task_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- connections ------------------------------------------------------ */

typedef struct conn {
    int fd;
    char *buf; /* received, not yet consumed: buf[off..len) */
    size_t len, off, cap;
} conn;

/* A new connection to target; exits on failure. */
static int connect_target(void) {
    int fd;
    if (strncmp(target, "unix:", 5) == 0) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(target + 5) >= sizeof(a.sun_path))
            die("unix path too long");
        memcpy(a.sun_path, target + 5, strlen(target + 5) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
            die("connect");
        return fd;
    }
    if (strncmp(target, "tcp:", 4) != 0) {
        errno = EINVAL;
        die("target must be unix:PATH or tcp:HOST:PORT");
    }
    char host[64];
    const char *colon = strrchr(target + 4, ':');
    if (!colon || (size_t)(colon - (target + 4)) >= sizeof(host)) {
        errno = EINVAL;
        die("target");
    }
    memcpy(host, target + 4, (size_t)(colon - (target + 4)));
    host[colon - (target + 4)] = '\0';
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)strtol(colon + 1, NULL, 10))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        errno = EINVAL;
        die("target host");
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void conn_open(conn *c) {
    memset(c, 0, sizeof(*c));
    c->cap = BUF_MAX;
    c->buf = malloc(c->cap);
    if (!c->buf)
        die("malloc");
    c->fd = connect_target();
}

static void conn_close(conn *c) {
    close(c->fd);
    free(c->buf);
}

static void send_all(conn *c, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("send");
        p += w;
        n -= (size_t)w;
    }
}

static void send_str(conn *c, const char *s) { send_all(c, s, strlen(s)); }

/* Makes at least need bytes available at buf+off. */
static void fill(conn *c, size_t need) {
    if (c->off > 0 && c->off == c->len)
        c->off = c->len = 0;
    while (c->len - c->off < need) {
        if (c->len == c->cap) {
            memmove(c->buf, c->buf + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
            if (c->len == c->cap) {
                errno = EMSGSIZE;
                die("answer too large");
            }
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            errno = r == 0 ? ECONNRESET : errno;
            die("recv");
        }
        c->len += (size_t)r;
    }
}

/* A line ending in \r\n at buf+off: returns its start and consumes it. */
static char *read_line(conn *c) {
    for (;;) {
        char *s = c->buf + c->off;
        char *e = memmem(s, c->len - c->off, "\r\n", 2);
        if (e) {
            *e = '\0';
            c->off = (size_t)(e + 2 - c->buf);
            return s;
        }
        fill(c, c->len - c->off + 1);
    }
}

/* ---- HTTP ------------------------------------------------------------- */

/* One request; returns the status; *body (NUL-terminated, valid until the
 * next call) and *blen the answer's body. */
static int http(conn *c, const char *method, const char *path, const char *body, size_t blen, char **ret_body,
                size_t *ret_len) {
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      method, path, blen);
    send_all(c, head, (size_t)hl);
    if (blen)
        send_all(c, body, blen);
    char *status = read_line(c);
    int code = 0;
    if (sscanf(status, "HTTP/1.%*d %d", &code) != 1) {
        errno = EPROTO;
        die("bad status line");
    }
    size_t clen = 0;
    bool close_after = false;
    for (;;) {
        char *l = read_line(c);
        if (!*l)
            break;
        if (strncasecmp(l, "Content-Length:", 15) == 0)
            clen = (size_t)strtoul(l + 15, NULL, 10);
        else if (strncasecmp(l, "Connection:", 11) == 0 && strcasestr(l, "close"))
            close_after = true;
    }
    if (clen)
        fill(c, clen);
    static __thread char *copy;
    static __thread size_t copy_cap;
    if (copy_cap < clen + 1) {
        free(copy);
        copy_cap = clen + 1;
        copy = malloc(copy_cap);
        if (!copy)
            die("malloc");
    }
    memcpy(copy, c->buf + c->off, clen);
    copy[clen] = '\0';
    c->off += clen;
    if (ret_body)
        *ret_body = copy;
    if (ret_len)
        *ret_len = clen;
    if (close_after) {
        close(c->fd);
        c->len = c->off = 0;
        c->fd = connect_target();
    }
    return code;
}

/* A JSON array of k small tasks into buf. */
static size_t make_bulk(char *buf, size_t cap, long first, long k) {
    size_t n = 0;
    buf[n++] = '[';
    for (long i = 0; i < k; i++) {
        int w = snprintf(buf + n, cap - n, "%s{\"payload\":{\"n\":%ld}}", i ? "," : "", first + i);
        if (w < 0 || (size_t)w >= cap - n) {
            errno = E2BIG;
            die("bulk too large");
        }
        n += (size_t)w;
    }
    buf[n++] = ']';
    buf[n] = '\0';
    return n;
}

static void *submitter(void *arg) {
    (void)arg;
    conn c;
    conn_open(&c);
    size_t cap = (size_t)bulk * 40 + 64;
    char *body = malloc(cap);
    char path[300];
    snprintf(path, sizeof(path), "/api/v1/queues/%s/tasks", queue);
    for (;;) {
        long first = atomic_fetch_add(&next_task, bulk);
        if (first >= n_tasks)
            break;
        long k = first + bulk > n_tasks ? n_tasks - first : bulk;
        size_t blen = make_bulk(body, cap, first, k);
        char *resp;
        int st = http(&c, "POST", path, body, blen, &resp, NULL);
        if (st != 201 && st != 200) {
            fprintf(stderr, "task_load: submit: HTTP %d: %.300s\n", st, resp);
            exit(1);
        }
    }
    free(body);
    conn_close(&c);
    return NULL;
}

/* The value of the first "id" key of a JSON text, copied into id. */
static bool json_id(const char *s, char *id, size_t cap) {
    const char *p = strstr(s, "\"id\"");
    if (!p)
        return false;
    p = strchr(p + 4, '"');
    if (!p)
        return false;
    const char *e = strchr(p + 1, '"');
    if (!e || (size_t)(e - p - 1) >= cap)
        return false;
    memcpy(id, p + 1, (size_t)(e - p - 1));
    id[e - p - 1] = '\0';
    return true;
}

static void *puller(void *arg) {
    (void)arg;
    conn c;
    conn_open(&c);
    char rpath[300], apath[300], id[128];
    snprintf(rpath, sizeof(rpath), "/api/v1/queues/%s/reserve?wait=1s", queue);
    while (atomic_load(&done_tasks) < n_tasks) {
        char *resp;
        int st = http(&c, "POST", rpath, NULL, 0, &resp, NULL);
        if (st == 204)
            continue;
        if (st != 200 || !json_id(resp, id, sizeof(id))) {
            fprintf(stderr, "task_load: reserve: HTTP %d: %.300s\n", st, resp);
            exit(1);
        }
        snprintf(apath, sizeof(apath), "/api/v1/tasks/%s/ack", id);
        st = http(&c, "POST", apath, NULL, 0, &resp, NULL);
        if (st != 200 && st != 204) {
            atomic_fetch_add(&errors, 1);
            continue;
        }
        if (atomic_fetch_add(&done_tasks, 1) + 1 == n_tasks)
            atomic_store(&end_time, now_s());
    }
    conn_close(&c);
    return NULL;
}

/* ---- beanstalkd ----------------------------------------------------- */

static void bs_expect(conn *c, const char *prefix) {
    char *l = read_line(c);
    if (strncmp(l, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "task_load: beanstalkd: expected %s, got \"%s\"\n", prefix, l);
        exit(1);
    }
}

static void bs_use(conn *c) {
    send_str(c, "use bench\r\n");
    bs_expect(c, "USING");
}

static void *bs_producer(void *arg) {
    (void)arg;
    conn c;
    conn_open(&c);
    bs_use(&c);
    size_t cap = (size_t)bulk * 64 + 64;
    char *out = malloc(cap);
    for (;;) {
        long first = atomic_fetch_add(&next_task, bulk);
        if (first >= n_tasks)
            break;
        long k = first + bulk > n_tasks ? n_tasks - first : bulk;
        size_t n = 0;
        for (long i = 0; i < k; i++) {
            char data[32];
            int dl = snprintf(data, sizeof(data), "{\"n\":%ld}", first + i);
            n += (size_t)snprintf(out + n, cap - n, "put 1024 0 60 %d\r\n%s\r\n", dl, data);
        }
        send_all(&c, out, n);
        for (long i = 0; i < k; i++)
            bs_expect(&c, "INSERTED");
    }
    free(out);
    conn_close(&c);
    return NULL;
}

static void *bs_consumer(void *arg) {
    (void)arg;
    conn c;
    conn_open(&c);
    send_str(&c, "watch bench\r\nignore default\r\n");
    bs_expect(&c, "WATCHING");
    bs_expect(&c, "WATCHING");
    while (atomic_load(&done_tasks) < n_tasks) {
        send_str(&c, "reserve-with-timeout 1\r\n");
        char *l = read_line(&c);
        if (strncmp(l, "TIMED_OUT", 9) == 0 || strncmp(l, "DEADLINE_SOON", 13) == 0)
            continue;
        unsigned long long id;
        size_t bytes;
        if (sscanf(l, "RESERVED %llu %zu", &id, &bytes) != 2) {
            fprintf(stderr, "task_load: beanstalkd: reserve: \"%s\"\n", l);
            exit(1);
        }
        fill(&c, bytes + 2);
        c.off += bytes + 2;
        char cmd[64];
        int cl = snprintf(cmd, sizeof(cmd), "delete %llu\r\n", id);
        send_all(&c, cmd, (size_t)cl);
        bs_expect(&c, "DELETED");
        if (atomic_fetch_add(&done_tasks, 1) + 1 == n_tasks)
            atomic_store(&end_time, now_s());
    }
    conn_close(&c);
    return NULL;
}

/* ---- main ------------------------------------------------------------- */

static void run_threads(void *(*fn)(void *), long n, pthread_t *ids) {
    for (long i = 0; i < n; i++)
        if (pthread_create(&ids[i], NULL, fn, NULL) != 0)
            die("pthread_create");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: task_load submit|pull TARGET QUEUE N BULK THREADS\n"
                        "       task_load bput|bpull TARGET N PIPELINE THREADS\n");
        return 2;
    }
    const char *mode = argv[1];
    bool beanstalk = mode[0] == 'b';
    if (argc != (beanstalk ? 6 : 7)) {
        fprintf(stderr, "task_load: wrong number of arguments for %s\n", mode);
        return 2;
    }
    target = argv[2];
    int a = 3;
    if (!beanstalk)
        queue = argv[a++];
    n_tasks = strtol(argv[a++], NULL, 10);
    bulk = strtol(argv[a++], NULL, 10);
    threads = strtol(argv[a++], NULL, 10);
    if (n_tasks <= 0 || bulk <= 0 || threads <= 0 || threads > 256) {
        fprintf(stderr, "task_load: N, BULK and THREADS must be positive (THREADS <= 256)\n");
        return 2;
    }
    pthread_t ids[257];
    double t0 = now_s();
    long nthr = 0;
    if (strcmp(mode, "submit") == 0) {
        run_threads(submitter, threads, ids);
        nthr = threads;
    } else if (strcmp(mode, "pull") == 0) {
        run_threads(puller, threads, ids);
        run_threads(submitter, 1, ids + threads);
        nthr = threads + 1;
    } else if (strcmp(mode, "bput") == 0) {
        run_threads(bs_producer, threads, ids);
        nthr = threads;
    } else if (strcmp(mode, "bpull") == 0) {
        run_threads(bs_consumer, threads, ids);
        run_threads(bs_producer, 1, ids + threads);
        nthr = threads + 1;
    } else {
        fprintf(stderr, "task_load: unknown mode %s\n", mode);
        return 2;
    }
    for (long i = 0; i < nthr; i++)
        pthread_join(ids[i], NULL);
    /* End to end, the clock stops at the last ack (a consumer may then
     * still sit in a 1 s reserve); for submissions when all are answered. */
    double t_end = atomic_load(&end_time) > 0 ? atomic_load(&end_time) : now_s();
    double secs = t_end - t0;
    printf("{\"mode\":\"%s\",\"tasks\":%ld,\"bulk\":%ld,\"threads\":%ld,\"seconds\":%.4f,\"rate\":%.1f,"
           "\"errors\":%ld}\n",
           mode, n_tasks, bulk, threads, secs, (double)n_tasks / secs, atomic_load(&errors));
    return 0;
}
