/*
 * mhd-api.c - libmicrohttpd, loaded with dlopen() instead of linked.
 *
 * Debian's libmicrohttpd links GnuTLS, and GnuTLS its own dependencies
 * (nettle, hogweed, gmp, p11-kit, libtasn1, libidn2, libunistring,
 * libffi): linked, the dynamic loader maps, relocates and initialises
 * those ten libraries before main(), ~1.4 ms of every tend command on the
 * reference VM, and on the critical path of `tend up`'s startup.  Here,
 * `tend up` starts the load on a thread of its own once the first
 * services have exec'd (mhd_api_preload), and the API server starts its
 * daemons when the thread says it is done (mhd_api_load_fd), from the
 * event loop.  The thread runs at nice 19, so that on a small machine it
 * does not take a core from the first services' own start.  The other
 * commands never load the library at all.
 *
 * The functions below have libmicrohttpd's names and the prototypes of
 * <microhttpd.h>, so api*.c call them as if the library were linked; each
 * waits for the load once and forwards.  They are called on the loop
 * thread only.  If the library cannot be loaded, why is printed once and
 * each call fails the way libmicrohttpd reports failure (no daemon, no
 * response, MHD_NO), which the API server already handles.
 */
#include "mhd-api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <microhttpd.h>

#define MHD_SONAME "libmicrohttpd.so.12"

static struct {
    __typeof__(MHD_start_daemon_va) *start_daemon_va;
    __typeof__(MHD_stop_daemon) *stop_daemon;
    __typeof__(MHD_run) *run;
    __typeof__(MHD_get_timeout) *get_timeout;
    __typeof__(MHD_get_daemon_info) *get_daemon_info;
    __typeof__(MHD_add_connection) *add_connection;
    __typeof__(MHD_lookup_connection_value) *lookup_connection_value;
    __typeof__(MHD_queue_response) *queue_response;
    __typeof__(MHD_suspend_connection) *suspend_connection;
    __typeof__(MHD_resume_connection) *resume_connection;
    __typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
    __typeof__(MHD_create_response_from_callback) *create_response_from_callback;
    __typeof__(MHD_add_response_header) *add_response_header;
    __typeof__(MHD_destroy_response) *destroy_response;
} fn;

static const struct {
    const char *name;
    size_t offset;
} syms[] = {
#define SYM(field, name) {name, offsetof(__typeof__(fn), field)}
    SYM(start_daemon_va, "MHD_start_daemon_va"), SYM(stop_daemon, "MHD_stop_daemon"),
    SYM(run, "MHD_run"), SYM(get_timeout, "MHD_get_timeout"),
    SYM(get_daemon_info, "MHD_get_daemon_info"), SYM(add_connection, "MHD_add_connection"),
    SYM(lookup_connection_value, "MHD_lookup_connection_value"),
    SYM(queue_response, "MHD_queue_response"), SYM(suspend_connection, "MHD_suspend_connection"),
    SYM(resume_connection, "MHD_resume_connection"),
    SYM(create_response_from_buffer, "MHD_create_response_from_buffer"),
    SYM(create_response_from_callback, "MHD_create_response_from_callback"),
    SYM(add_response_header, "MHD_add_response_header"), SYM(destroy_response, "MHD_destroy_response"),
#undef SYM
};

static pthread_t loader;
static bool loader_running, done, ok;
static int done_fd = -1; /* eventfd, written by the loader when it ends */
static char load_error[512];

/* Fills fn (and ok), or load_error.  Runs once, on the loader thread or
 * on the first caller's. */
static void load(void) {
    void *h = dlopen(MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_error, sizeof(load_error), "%s", e ? e : MHD_SONAME ": cannot be loaded");
        return;
    }
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        void *f = dlsym(h, syms[i].name);
        if (!f) {
            snprintf(load_error, sizeof(load_error), MHD_SONAME " lacks %s", syms[i].name);
            dlclose(h);
            return;
        }
        *(void **)((char *)&fn + syms[i].offset) = f;
    }
    ok = true;
}

static void *loader_main(void *unused) {
    /* This thread only (a thread id is a PRIO_PROCESS `who` on Linux).
     * Nice 19 rather than SCHED_IDLE: against a busy machine's tasks it
     * still gets ~1.5 % of a core rather than ~0.3 %, so the API comes up
     * within a second or so even then. */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    load();
    (void)eventfd_write(done_fd, 1);
    return NULL;
}

void mhd_api_preload(void) {
    if (done || loader_running)
        return;
    /* Without the thread the first call loads it, as without a preload. */
    done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (done_fd < 0)
        return;
    loader_running = pthread_create(&loader, NULL, loader_main, NULL) == 0;
    if (!loader_running) {
        close(done_fd);
        done_fd = -1;
    }
}

int mhd_api_load_fd(void) { return loader_running ? done_fd : -1; }

static bool loaded(void) {
    if (!done) {
        done = true;
        if (loader_running) {
            pthread_join(loader, NULL);
            loader_running = false;
            close(done_fd);
            done_fd = -1;
        } else {
            load();
        }
        if (!ok)
            fprintf(stderr, "tend: the HTTP API needs libmicrohttpd: %s\n", load_error);
    }
    return ok;
}

struct MHD_Daemon *MHD_start_daemon(unsigned int flags, uint16_t port, MHD_AcceptPolicyCallback apc,
                                    void *apc_cls, MHD_AccessHandlerCallback dh, void *dh_cls, ...) {
    if (!loaded())
        return NULL;
    va_list ap;
    va_start(ap, dh_cls);
    struct MHD_Daemon *d = fn.start_daemon_va(flags, port, apc, apc_cls, dh, dh_cls, ap);
    va_end(ap);
    return d;
}

void MHD_stop_daemon(struct MHD_Daemon *daemon) {
    if (loaded())
        fn.stop_daemon(daemon);
}

enum MHD_Result MHD_run(struct MHD_Daemon *daemon) { return loaded() ? fn.run(daemon) : MHD_NO; }

enum MHD_Result MHD_get_timeout(struct MHD_Daemon *daemon, MHD_UNSIGNED_LONG_LONG *timeout) {
    return loaded() ? fn.get_timeout(daemon, timeout) : MHD_NO;
}

/* Forwards no variable arguments: no information type tend asks for
 * (MHD_DAEMON_INFO_EPOLL_FD) takes any. */
const union MHD_DaemonInfo *MHD_get_daemon_info(struct MHD_Daemon *daemon, enum MHD_DaemonInfoType info_type,
                                                ...) {
    return loaded() ? fn.get_daemon_info(daemon, info_type) : NULL;
}

enum MHD_Result MHD_add_connection(struct MHD_Daemon *daemon, MHD_socket client_socket,
                                   const struct sockaddr *addr, socklen_t addrlen) {
    return loaded() ? fn.add_connection(daemon, client_socket, addr, addrlen) : MHD_NO;
}

const char *MHD_lookup_connection_value(struct MHD_Connection *connection, enum MHD_ValueKind kind,
                                        const char *key) {
    return loaded() ? fn.lookup_connection_value(connection, kind, key) : NULL;
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *connection, unsigned int status_code,
                                   struct MHD_Response *response) {
    return loaded() ? fn.queue_response(connection, status_code, response) : MHD_NO;
}

void MHD_suspend_connection(struct MHD_Connection *connection) {
    if (loaded())
        fn.suspend_connection(connection);
}

void MHD_resume_connection(struct MHD_Connection *connection) {
    if (loaded())
        fn.resume_connection(connection);
}

struct MHD_Response *MHD_create_response_from_buffer(size_t size, void *buffer, enum MHD_ResponseMemoryMode mode) {
    return loaded() ? fn.create_response_from_buffer(size, buffer, mode) : NULL;
}

struct MHD_Response *MHD_create_response_from_callback(uint64_t size, size_t block_size,
                                                       MHD_ContentReaderCallback crc, void *crc_cls,
                                                       MHD_ContentReaderFreeCallback crfc) {
    return loaded() ? fn.create_response_from_callback(size, block_size, crc, crc_cls, crfc) : NULL;
}

enum MHD_Result MHD_add_response_header(struct MHD_Response *response, const char *header, const char *content) {
    return loaded() ? fn.add_response_header(response, header, content) : MHD_NO;
}

void MHD_destroy_response(struct MHD_Response *response) {
    if (loaded())
        fn.destroy_response(response);
}
