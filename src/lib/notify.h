/*
 * notify.h - the sd_notify(3) protocol: one AF_UNIX datagram socket per
 * service, its address given to the service as $NOTIFY_SOCKET, so code
 * written for systemd Type=notify works unchanged.  tend names them in the
 * abstract namespace ("@tend/..."), which sd_notify(3) defines and which
 * costs no file; a path works too.
 *
 * Understood: READY=1, STATUS=..., WATCHDOG=1, WATCHDOG=trigger,
 * MAINPID=N, STOPPING=1, RELOADING=1, ERRNO=N, EXTEND_TIMEOUT_USEC=N.
 * Datagrams are accepted from processes of the service's process group
 * running as tend's user, root or the service's user (checked with
 * SCM_CREDENTIALS); others are dropped and counted.
 */
#ifndef TEND_LIB_NOTIFY_H
#define TEND_LIB_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#define NOTIFY_MAX_STATUS 256

typedef struct notify_msg {
    bool ready, watchdog, watchdog_trigger, stopping, reloading;
    bool has_status, has_mainpid, has_errno;
    pid_t mainpid;
    int errno_value;
    char status[NOTIFY_MAX_STATUS];
} notify_msg;

/* Parses one datagram; returns the number of recognised assignments. */
int notify_parse(const char *buf, size_t len, notify_msg *ret);

typedef void (*notify_cb)(void *data, const notify_msg *msg, pid_t sender);

typedef struct notify_socket notify_socket;

/*
 * Creates the socket at path: "@name" in the abstract namespace, else a
 * file (unlinked first; 0600, chowned to uid when uid != (uid_t)-1).
 * uid (or (uid_t)-1) is the service's user, admitted as a sender.  pgid_fn returns the process group allowed to send,
 * 0 to allow any sender, or -1 to drop everything (nothing runs).  0 or -errno.
 */
int notify_socket_open(uv_loop_t *loop, const char *path, uid_t uid, notify_cb cb,
                       pid_t (*pgid_fn)(void *data), void *data, notify_socket **ret);
/* Closes and unlinks; the memory is released once libuv is done. */
void notify_socket_close(notify_socket *s);
unsigned long notify_socket_rejected(const notify_socket *s);

#endif
