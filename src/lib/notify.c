/* notify.c - see notify.h. */
#include "notify.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "macros.h"

struct notify_socket {
    uv_poll_t poll;
    int fd;
    char *path;
    notify_cb cb;
    pid_t (*pgid_fn)(void *data);
    void *data;
    uid_t uid;              /* the service's user, or (uid_t)-1 */
    unsigned long rejected;
};

/* Who could send to a 0600 socket file owned by tend (or chowned to the
 * service's user): the same senders are admitted on an abstract socket,
 * which has no permissions of its own. */
static bool uid_allowed(const notify_socket *s, uid_t uid) {
    return uid == 0 || uid == geteuid() || (s->uid != (uid_t)-1 && uid == s->uid);
}

static bool field(const char *line, size_t len, const char *key, const char **ret_val, size_t *ret_len) {
    size_t kl = strlen(key);
    if (len < kl + 1 || memcmp(line, key, kl) != 0 || line[kl] != '=')
        return false;
    *ret_val = line + kl + 1;
    *ret_len = len - kl - 1;
    return true;
}

static long parse_long(const char *v, size_t len) {
    char tmp[32];
    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, v, len);
    tmp[len] = '\0';
    char *end;
    errno = 0;
    long n = strtol(tmp, &end, 10);
    if (errno || *end)
        return -1;
    return n;
}

int notify_parse(const char *buf, size_t len, notify_msg *m) {
    int n = 0;
    *m = (notify_msg){0};
    size_t start = 0;
    while (start < len) {
        size_t end = start;
        while (end < len && buf[end] != '\n')
            end++;
        const char *line = buf + start, *v;
        size_t ll = end - start, vl;
        if (field(line, ll, "READY", &v, &vl)) {
            m->ready = vl == 1 && v[0] == '1';
            n++;
        } else if (field(line, ll, "WATCHDOG", &v, &vl)) {
            if (vl == 1 && v[0] == '1')
                m->watchdog = true;
            else if (vl == 7 && memcmp(v, "trigger", 7) == 0)
                m->watchdog_trigger = true;
            n++;
        } else if (field(line, ll, "STATUS", &v, &vl)) {
            m->has_status = true;
            vl = MIN(vl, sizeof(m->status) - 1);
            memcpy(m->status, v, vl);
            m->status[vl] = '\0';
            n++;
        } else if (field(line, ll, "MAINPID", &v, &vl)) {
            long p = parse_long(v, vl);
            if (p > 0) {
                m->has_mainpid = true;
                m->mainpid = (pid_t)p;
                n++;
            }
        } else if (field(line, ll, "STOPPING", &v, &vl)) {
            m->stopping = vl == 1 && v[0] == '1';
            n++;
        } else if (field(line, ll, "RELOADING", &v, &vl)) {
            m->reloading = vl == 1 && v[0] == '1';
            n++;
        } else if (field(line, ll, "ERRNO", &v, &vl)) {
            long e = parse_long(v, vl);
            if (e >= 0) {
                m->has_errno = true;
                m->errno_value = (int)e;
                n++;
            }
        }
        start = end + 1;
    }
    return n;
}

static void on_readable(uv_poll_t *h, int status, int events) {
    notify_socket *s = h->data;
    for (;;) {
        char buf[4096];
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(struct ucred))];
        } ctl;
        struct iovec iov = {buf, sizeof(buf) - 1};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN or a transient error */
        }
        /* Close any descriptors passed (FDSTORE is not supported). */
        pid_t sender = 0;
        bool have_creds = false;
        uid_t sender_uid = (uid_t)-1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
                c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
                struct ucred uc;
                memcpy(&uc, CMSG_DATA(c), sizeof(uc));
                sender = uc.pid;
                sender_uid = uc.uid;
                have_creds = true;
            } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int *fds = (int *)CMSG_DATA(c);
                size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nfds; i++)
                    close(fds[i]);
            }
        }
        /* SO_PASSCRED is set before bind, so the kernel attaches the
         * (unforgeable) credentials to every datagram. */
        if (!have_creds || !uid_allowed(s, sender_uid)) {
            s->rejected++;
            continue;
        }
        pid_t allowed = s->pgid_fn ? s->pgid_fn(s->data) : 0;
        if (allowed > 0 && sender > 0) {
            pid_t pg = getpgid(sender);
            /* A sender that already exited cannot be checked (a helper
             * such as systemd-notify); its uid was, so accept it. */
            if (pg >= 0 && pg != allowed) {
                s->rejected++;
                continue;
            }
        } else if (allowed < 0) {
            s->rejected++; /* no process of the service is running */
            continue;
        }
        notify_msg m;
        if (notify_parse(buf, (size_t)n, &m) > 0 && s->cb)
            s->cb(s->data, &m, sender);
    }
}

int notify_socket_open(uv_loop_t *loop, const char *path, uid_t uid, notify_cb cb,
                       pid_t (*pgid_fn)(void *data), void *data, notify_socket **ret) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t pl = strlen(path);
    bool abstract = path[0] == '@';
    if (pl >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, pl + 1);
    if (abstract)
        sa.sun_path[0] = '\0'; /* "@name": the abstract namespace, as sd_notify reads it */
    socklen_t salen = abstract ? (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl)
                               : (socklen_t)sizeof(sa);
    notify_socket *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->fd = -1;
    s->path = strdup(path);
    if (!s->path) {
        free(s);
        return -ENOMEM;
    }
    s->cb = cb;
    s->pgid_fn = pgid_fn;
    s->data = data;
    s->uid = uid;
    int r;
    s->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->fd < 0)
        goto fail_errno;
    int one = 1;
    if (setsockopt(s->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
        goto fail_errno;
    /* A large receive buffer so a burst of WATCHDOG=1 is not dropped. */
    int rcv = 256 * 1024;
    (void)setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    if (!abstract)
        (void)unlink(path);
    if (bind(s->fd, (struct sockaddr *)&sa, salen) < 0)
        goto fail_errno;
    if (!abstract && chmod(path, 0600) < 0)
        goto fail_errno;
    if (!abstract && uid != (uid_t)-1 && chown(path, uid, (gid_t)-1) < 0)
        goto fail_errno;
    r = uv_poll_init(loop, &s->poll, s->fd);
    if (r < 0)
        goto fail;
    s->poll.data = s;
    r = uv_poll_start(&s->poll, UV_READABLE, on_readable);
    if (r < 0) {
        notify_socket_close(s);
        return r;
    }
    *ret = s;
    return 0;
fail_errno:
    r = -errno;
fail:
    if (s->fd >= 0)
        close(s->fd);
    if (!abstract)
        (void)unlink(path);
    free(s->path);
    free(s);
    return r;
}

static void on_close(uv_handle_t *h) {
    notify_socket *s = h->data;
    close(s->fd);
    free(s->path);
    free(s);
}

void notify_socket_close(notify_socket *s) {
    if (!s)
        return;
    if (s->path[0] != '@')
        (void)unlink(s->path);
    s->cb = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_close);
}

unsigned long notify_socket_rejected(const notify_socket *s) { return s ? s->rejected : 0; }
