/*
 * handler-exec.c - the exec handler (SPEC 5): the queue's argv runs once
 * per task (or batch) in its own process group, with the task JSON on
 * stdin and TEND_TASK_ID, TEND_QUEUE, TEND_ATTEMPT in the environment.
 * Exit 0 succeeds, 65 (EX_DATAERR) fails for good, anything else (another
 * status, a signal, the timeout) is a failed attempt; the tail of the
 * combined stdout/stderr is kept as the error, and in batch mode the whole
 * output (up to EXEC_OUTPUT_MAX) is the handler's answer.
 *
 * Spawning uses spawn_process() (the same clone-vfork path as exec probes,
 * so the exec outcome is known at once and the loop never waits for the
 * child to be scheduled).  stdin is a memfd holding the input, so a large
 * payload never blocks the loop on a full pipe.  The exit comes through
 * the shared reaper; output through a uv_pipe_t.  When the main process
 * exits, whatever is left in its group is killed (as for services), so
 * the output pipe reaches end-of-file.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdutil.h"
#include "guard.h"
#include "handler.h"
#include "macros.h"
#include "parse.h"
#include "reaper.h"
#include "spawn.h"
#include "strv.h"

#define EXEC_TAIL 2048
#define EXEC_OUTPUT_MAX (1024 * 1024)

typedef struct exec_run {
    task_run *run;
    pid_t pid;
    struct guard *guard;    /* the group is registered with it */
    uv_pipe_t out;
    bool out_open, exited, eof, reported;
    int status;
    char *buf;              /* batch: everything; else a ring of the tail */
    size_t len, cap;
    bool wrapped;
} exec_run;

static void on_out_closed(uv_handle_t *h) {
    exec_run *x = h->data;
    free(x->buf);
    free(x);
}

static void append(exec_run *x, const char *p, size_t n) {
    if (x->run->batch) {
        if (x->len + n > x->cap) {
            size_t cap = MIN(MAX(x->cap * 2, x->len + n + 4096), (size_t)EXEC_OUTPUT_MAX);
            if (cap <= x->len)
                return; /* full: the rest is dropped */
            char *b = realloc(x->buf, cap + 1);
            if (!b)
                return;
            x->buf = b;
            x->cap = cap;
        }
        size_t m = MIN(n, x->cap - x->len);
        memcpy(x->buf + x->len, p, m);
        x->len += m;
        return;
    }
    /* The tail: keep the last EXEC_TAIL bytes. */
    for (size_t i = 0; i < n; i++) {
        x->buf[x->len++] = p[i];
        if (x->len == EXEC_TAIL) {
            x->len = 0;
            x->wrapped = true;
        }
    }
}

/* The kept output as one string (the tail in order, trimmed). */
static char *output_text(exec_run *x, size_t *ret_len) {
    char *s;
    size_t n;
    if (x->run->batch) {
        n = x->len;
        s = malloc(n + 1);
        if (!s)
            return NULL;
        if (n)
            memcpy(s, x->buf, n);
    } else {
        n = x->wrapped ? EXEC_TAIL : x->len;
        s = malloc(n + 1);
        if (!s)
            return NULL;
        if (x->wrapped) {
            memcpy(s, x->buf + x->len, EXEC_TAIL - x->len);
            memcpy(s + EXEC_TAIL - x->len, x->buf, x->len);
        } else if (n) {
            memcpy(s, x->buf, n);
        }
    }
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    s[n] = '\0';
    /* Drop a cut UTF-8 sequence at the start of a wrapped tail. */
    size_t skip = 0;
    if (x->wrapped)
        while (skip < n && ((unsigned char)s[skip] & 0xc0) == 0x80)
            skip++;
    if (skip)
        memmove(s, s + skip, n - skip + 1);
    *ret_len = n - skip;
    return s;
}

static void maybe_done(exec_run *x) {
    if (!x->exited || !x->eof || x->reported)
        return;
    x->reported = true;
    size_t olen = 0;
    char *out = output_text(x, &olen);
    handler_result res = {.retry_after_ms = -1};
    char msg[EXEC_TAIL + 128];
    int st = x->status;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        res.outcome = HANDLER_OK;
        res.output = out;
        res.output_len = olen;
    } else {
        res.outcome = WIFEXITED(st) && WEXITSTATUS(st) == TASK_FUNC_PERMANENT ? HANDLER_PERMANENT : HANDLER_FAILED;
        const char *tail = out ? out : "";
        /* In batch mode the error is the tail of the full output. */
        if (x->run->batch && olen > EXEC_TAIL)
            tail = out + olen - EXEC_TAIL;
        if (WIFEXITED(st))
            snprintf(msg, sizeof(msg), "exit status %d%s%s", WEXITSTATUS(st), *tail ? ": " : "", tail);
        else if (WIFSIGNALED(st))
            snprintf(msg, sizeof(msg), "killed by signal %s%s%s", signal_name(WTERMSIG(st)), *tail ? ": " : "", tail);
        else
            snprintf(msg, sizeof(msg), "ended with status %d", st);
        res.error = msg;
    }
    task_run *run = x->run;
    x->run = NULL;
    handler_done(run, &res);
    free(out);
    if (x->out_open)
        uv_close((uv_handle_t *)&x->out, on_out_closed);
    else
        on_out_closed((uv_handle_t *)&x->out);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char scratch[16384];
    buf->base = scratch;
    buf->len = sizeof(scratch);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
    exec_run *x = s->data;
    if (n > 0) {
        append(x, buf->base, (size_t)n);
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        x->eof = true;
        maybe_done(x);
    }
}

static void on_exit_status(void *data, pid_t pid, int status) {
    exec_run *x = data;
    x->exited = true;
    x->status = status;
    if (x->guard)
        guard_remove(x->guard, pid);
    /* Whatever the task left behind in its group goes too, so the output
     * pipe closes. */
    kill(-pid, SIGKILL);
    maybe_done(x);
}

static int exec_start(task_run *run) {
    handler_env *env = run->env;
    const tend_queue_spec *q = run->spec;
    size_t in_len = 0;
    char *input = handler_input_json(run, &in_len);
    if (!input)
        return -ENOMEM;
    int r = 0, memfd = -1, p[2] = {-1, -1};
    char **envp = NULL;
    exec_run *x = NULL;
    memfd = memfd_create("tend-task", MFD_CLOEXEC);
    if (memfd < 0 || write_all(memfd, input, in_len) < 0 || lseek(memfd, 0, SEEK_SET) < 0) {
        r = -errno;
        goto fail;
    }
    if (memfd <= 2) { /* stdin must come from a descriptor above 2 */
        int fd = fcntl(memfd, F_DUPFD_CLOEXEC, 3);
        close(memfd);
        memfd = fd;
        if (memfd < 0) {
            r = -errno;
            goto fail;
        }
    }
    if (pipe2(p, O_CLOEXEC) < 0) {
        r = -errno;
        goto fail;
    }
    char idv[64], qv[200], av[64], bv[64];
    snprintf(idv, sizeof(idv), "TEND_TASK_ID=%s", run->tasks[0].id);
    snprintf(qv, sizeof(qv), "TEND_QUEUE=%s", q->name);
    snprintf(av, sizeof(av), "TEND_ATTEMPT=%d", (int)run->tasks[0].attempts);
    snprintf(bv, sizeof(bv), "TEND_BATCH_SIZE=%zu", run->batch ? run->n : (size_t)0);
    char *over[] = {idv, qv, av, run->batch ? bv : NULL, NULL};
    envp = spawn_build_env(over);
    if (!envp) {
        r = -ENOMEM;
        goto fail;
    }
    x = calloc(1, sizeof(*x));
    if (!x) {
        r = -ENOMEM;
        goto fail;
    }
    x->run = run;
    if (!run->batch) {
        x->buf = malloc(EXEC_TAIL);
        if (!x->buf) {
            r = -ENOMEM;
            goto fail;
        }
    }
    spawn_opts o = {.argv = q->argv, .envp = envp, .cwd = env->cwd, .out_fd = p[1], .in_fd = memfd};
    const char *step = NULL;
    pid_t pid;
    r = spawn_process(&o, &pid, &step);
    if (r < 0)
        goto fail;
    x->pid = pid;
    if (env->guard) {
        guard_add(env->guard, pid);
        x->guard = env->guard;
    }
    close(p[1]);
    p[1] = -1;
    close(memfd);
    memfd = -1;
    if ((r = reaper_watch(env->reaper, pid, on_exit_status, x)) < 0) {
        kill(-pid, SIGKILL);
        if (x->guard)
            guard_remove(x->guard, pid);
        goto fail_spawned;
    }
    uv_pipe_init(env->loop, &x->out, 0);
    x->out.data = x;
    if (uv_pipe_open(&x->out, p[0]) == 0) {
        p[0] = -1;
        x->out_open = true;
        uv_read_start((uv_stream_t *)&x->out, on_alloc, on_read);
    } else {
        uv_close((uv_handle_t *)&x->out, NULL);
        x->eof = true;
    }
    run->priv = x;
    free(input);
    strv_free(envp);
    if (p[0] >= 0)
        close(p[0]);
    return 0;
fail_spawned:
fail:
    if (memfd >= 0)
        close(memfd);
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    strv_free(envp);
    if (x) {
        free(x->buf);
        free(x);
    }
    free(input);
    return r;
}

static void exec_abort(task_run *run) {
    exec_run *x = run->priv;
    if (x && x->pid > 0 && !x->exited)
        kill(-x->pid, SIGKILL);
}

const handler_backend handler_exec = {"exec", exec_start, exec_abort};
