/* reaper.c - see reaper.h. */
#include "reaper.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/wait.h>

static void on_sigchld(uv_signal_t *h, int signum) {
    reaper_reap(h->data);
}

int reaper_init(reaper *r, uv_loop_t *loop) {
    *r = (reaper){0};
    int e = uv_signal_init(loop, &r->sigchld);
    if (e < 0)
        return e;
    r->sigchld.data = r;
    e = uv_signal_start(&r->sigchld, on_sigchld, SIGCHLD);
    if (e < 0)
        return e;
    uv_unref((uv_handle_t *)&r->sigchld);
    return 0;
}

int reaper_watch(reaper *r, pid_t pid, reaper_cb cb, void *data) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        reaper_entry *e = realloc(r->entries, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        r->entries = e;
        r->cap = cap;
    }
    r->entries[r->n++] = (reaper_entry){.pid = pid, .cb = cb, .data = data};
    return 0;
}

void reaper_unwatch(reaper *r, pid_t pid) {
    for (size_t i = 0; i < r->n; i++) {
        if (r->entries[i].pid == pid) {
            r->entries[i] = r->entries[--r->n];
            return;
        }
    }
}

int reaper_rewatch(reaper *r, pid_t pid, reaper_cb cb, void *data) {
    for (size_t i = 0; i < r->n; i++) {
        if (r->entries[i].pid == pid) {
            r->entries[i].cb = cb;
            r->entries[i].data = data;
            return 0;
        }
    }
    return -ENOENT;
}

void reaper_reap(reaper *r) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        size_t i;
        for (i = 0; i < r->n; i++)
            if (r->entries[i].pid == pid)
                break;
        if (i == r->n) {
            r->orphans_reaped++;
            if (r->on_orphan)
                r->on_orphan(r->orphan_data, pid, status);
            continue;
        }
        reaper_entry e = r->entries[i];
        r->entries[i] = r->entries[--r->n];
        e.cb(e.data, pid, status);
    }
}

void reaper_close(reaper *r) {
    /* Tell the remaining watchers (status -1) so they can free what
     * they hold; their processes were killed and exit on their own. */
    while (r->n > 0) {
        reaper_entry e = r->entries[--r->n];
        e.cb(e.data, e.pid, -1);
    }
    uv_signal_stop(&r->sigchld);
    uv_close((uv_handle_t *)&r->sigchld, NULL);
    free(r->entries);
    r->entries = NULL;
    r->n = r->cap = 0;
}
