/* output.c - see output.h. */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fdutil.h"

int logfile_open(logfile *lf, const char *path, uint64_t max_size, int max_files) {
    *lf = (logfile){.fd = -1, .max_size = max_size, .max_files = max_files};
    lf->path = strdup(path);
    return lf->path ? 0 : -ENOMEM;
}

static int logfile_reopen(logfile *lf) {
    lf->fd = open(lf->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (lf->fd < 0) {
        lf->open_error = errno;
        return -errno;
    }
    lf->open_error = 0;
    struct stat st;
    lf->size = fstat(lf->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return 0;
}

static int logfile_rotate(logfile *lf) {
    char from[4200], to[4200];
    close(lf->fd);
    lf->fd = -1;
    if (lf->max_files <= 0) {
        (void)unlink(lf->path);
    } else {
        for (int i = lf->max_files - 1; i >= 1; i--) {
            snprintf(from, sizeof(from), "%s.%d", lf->path, i);
            snprintf(to, sizeof(to), "%s.%d", lf->path, i + 1);
            (void)rename(from, to);
        }
        snprintf(to, sizeof(to), "%s.1", lf->path);
        (void)rename(lf->path, to);
    }
    lf->fd = open(lf->path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0640);
    lf->size = 0;
    return lf->fd < 0 ? -errno : 0;
}

int logfile_write_line(logfile *lf, const char *line, size_t len) {
    if (!lf->path)
        return -EBADF;
    if (lf->fd < 0 && logfile_reopen(lf) < 0)
        return -lf->open_error;
    if (lf->max_size > 0 && lf->size > 0 && lf->size + len + 1 > lf->max_size) {
        int r = logfile_rotate(lf);
        if (r < 0)
            return r;
    }
    struct iovec iov[2] = {{(void *)line, len}, {"\n", 1}};
    ssize_t n = writev(lf->fd, iov, 2);
    if (n < 0)
        return -errno;
    lf->size += (uint64_t)n;
    return 0;
}

void logfile_close(logfile *lf) {
    if (lf->fd >= 0)
        close(lf->fd);
    lf->fd = -1;
    free(lf->path);
    lf->path = NULL;
}

struct logfile_precreator {
    pthread_t thread;
    atomic_bool stop;
    size_t n;
    char **paths;
};

/* sched_setattr(2)'s argument, first version (glibc 2.36 has no
 * wrapper). */
typedef struct precreate_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
} precreate_sched_attr;

static void *precreate_main(void *arg) {
    logfile_precreator *p = arg;
#ifdef SYS_sched_setattr
    precreate_sched_attr a = {.size = sizeof(a), .policy = SCHED_IDLE};
    (void)syscall(SYS_sched_setattr, 0, &a, 0); /* this thread only */
#endif
    for (size_t i = 0; i < p->n && !atomic_load(&p->stop); i++) {
        int fd = open(p->paths[i], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

static void precreator_free(logfile_precreator *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->paths[i]);
    free(p->paths);
    free(p);
}

logfile_precreator *logfile_precreate(char *const *paths, size_t n) {
    if (n == 0)
        return NULL;
    logfile_precreator *p = calloc(1, sizeof(*p));
    if (!p || !(p->paths = calloc(n, sizeof(char *)))) {
        free(p);
        return NULL;
    }
    atomic_init(&p->stop, false);
    for (; p->n < n; p->n++)
        if (!(p->paths[p->n] = strdup(paths[p->n]))) {
            precreator_free(p);
            return NULL;
        }
    if (pthread_create(&p->thread, NULL, precreate_main, p) != 0) {
        precreator_free(p);
        return NULL;
    }
    return p;
}

void logfile_precreate_stop(logfile_precreator *p) {
    if (!p)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    precreator_free(p);
}

/*
 * Reads land in one buffer per thread, shared by every stream (a read is
 * consumed by its callback before the next one is allocated); a stream
 * keeps only the unfinished end of its last line, in a buffer that grows
 * with it.  So an idle service's stream costs a few dozen bytes rather
 * than a line buffer of OUTPUT_MAX_LINE.
 */
#define OUTPUT_READ_SIZE (64 * 1024)

struct output_stream {
    uv_pipe_t pipe;
    logfile *lf;
    output_line_cb cb;
    void *data;
    char *tail;             /* the unfinished line, without a newline yet */
    size_t len, cap;
};

static void emit(output_stream *s, const char *line, size_t len) {
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (s->lf)
        (void)logfile_write_line(s->lf, line, len);
    if (s->cb)
        s->cb(s->data, line, len);
}

/* The buffer is freed when its thread ends: libtend runs a supervisor
 * on a loop thread of its own, and may run many one after another. */
static pthread_key_t read_buffer_key;
static pthread_once_t read_buffer_once = PTHREAD_ONCE_INIT;
static bool read_buffer_key_ok;

static void read_buffer_key_init(void) {
    read_buffer_key_ok = pthread_key_create(&read_buffer_key, free) == 0;
}

static char *read_buffer(void) {
    pthread_once(&read_buffer_once, read_buffer_key_init);
    if (!read_buffer_key_ok)
        return NULL;
    char *b = pthread_getspecific(read_buffer_key);
    if (!b && (b = malloc(OUTPUT_READ_SIZE)) && pthread_setspecific(read_buffer_key, b) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    char *shared = read_buffer();
    *buf = shared ? uv_buf_init(shared, OUTPUT_READ_SIZE) : uv_buf_init(NULL, 0);
}

static void on_close(uv_handle_t *h) {
    output_stream *s = h->data;
    free(s->tail);
    free(s);
}

/* Appends to the unfinished line; a line reaching OUTPUT_MAX_LINE is
 * emitted in pieces of that size. */
static void tail_append(output_stream *s, const char *p, size_t n) {
    while (n > 0) {
        if (s->len == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 256;
            if (cap > OUTPUT_MAX_LINE)
                cap = OUTPUT_MAX_LINE;
            char *nt = cap > s->cap ? realloc(s->tail, cap) : NULL;
            if (!nt) {
                if (s->len == 0)
                    return; /* out of memory: the rest of this read is lost */
                /* Full (or out of memory): what we have is a line. */
                emit(s, s->tail, s->len);
                s->len = 0;
                continue;
            }
            s->tail = nt;
            s->cap = cap;
        }
        size_t take = s->cap - s->len < n ? s->cap - s->len : n;
        memcpy(s->tail + s->len, p, take);
        s->len += take;
        p += take;
        n -= take;
    }
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    output_stream *s = st->data;
    if (n < 0) {
        if (s->len > 0)
            emit(s, s->tail, s->len);
        s->len = 0;
        if (s->cb)
            s->cb(s->data, NULL, 0); /* end of stream: the owner forgets us */
        uv_close((uv_handle_t *)&s->pipe, on_close);
        return;
    }
    const char *p = buf->base, *end = buf->base + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            tail_append(s, p, (size_t)(end - p));
            break;
        }
        if (s->len > 0) {
            tail_append(s, p, (size_t)(nl - p));
            emit(s, s->tail, s->len);
            s->len = 0;
        } else if ((size_t)(nl - p) > OUTPUT_MAX_LINE) {
            /* An over-long line: split it, as the tail would. */
            while ((size_t)(nl - p) > OUTPUT_MAX_LINE) {
                emit(s, p, OUTPUT_MAX_LINE);
                p += OUTPUT_MAX_LINE;
            }
            emit(s, p, (size_t)(nl - p));
        } else {
            emit(s, p, (size_t)(nl - p));
        }
        p = nl + 1;
    }
    if (s->cap > 1024 && s->len == 0) {
        /* A burst of long lines is over: give the memory back. */
        free(s->tail);
        s->tail = NULL;
        s->cap = 0;
    }
}

int output_stream_start(uv_loop_t *loop, int fd, logfile *lf, output_line_cb cb, void *data,
                        output_stream **ret) {
    output_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    s->lf = lf;
    s->cb = cb;
    s->data = data;
    int r = uv_pipe_init(loop, &s->pipe, 0);
    if (r < 0) {
        close(fd);
        free(s);
        return r;
    }
    s->pipe.data = s;
    r = uv_pipe_open(&s->pipe, fd);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
    if (r < 0) {
        uv_close((uv_handle_t *)&s->pipe, on_close);
        return r;
    }
    if (ret)
        *ret = s;
    return 0;
}

void output_stream_detach(output_stream *s) {
    if (!s)
        return;
    s->cb = NULL;
    s->lf = NULL;
    if (!uv_is_closing((uv_handle_t *)&s->pipe))
        uv_close((uv_handle_t *)&s->pipe, on_close);
}
