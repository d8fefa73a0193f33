/*
 * cmd-down.c - `tend down [--timeout D]`: ask the running instance to
 * shut down gracefully and wait until it has exited.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "client.h"
#include "cmd.h"
#include "parse.h"

static size_t discard(char *p, size_t s, size_t n, void *d) { return s * n; }

/* Waits for pid to exit: a pidfd where the kernel has one (no polling). */
static int wait_pid(pid_t pid, int64_t timeout_ms) {
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r;
        do
            r = poll(&p, 1, (int)timeout_ms);
        while (r < 0 && errno == EINTR);
        close(fd);
        return r > 0 ? 0 : -ETIMEDOUT;
    }
    if (errno == ESRCH)
        return 0;
#endif
    return -ENOSYS;
}

typedef struct opts {
    const char *timeout;
    int64_t timeout_ms;
} opts;

static int on_opt(int opt, const char *arg, void *data) {
    opts *o = data;
    o->timeout = arg;
    if (parse_duration_ms(arg, &o->timeout_ms) < 0) {
        cli_error("--timeout: invalid duration \"%s\" (try 500ms, 5s, 2m)", arg);
        return EXIT_USAGE;
    }
    return 0;
}

static int run(int argc, char **argv) {
    static const struct option extra[] = {{"timeout", required_argument, NULL, 'T'}, {0}};
    opts o = {.timeout_ms = 30000};
    client cl;
    int r = client_start(&cl, argc, argv, true, "", extra, "tend down [-f FILE | --url URL] [--timeout D]", on_opt, &o);
    if (r)
        return r < 0 ? EXIT_OK : r;
    const char *timeout = o.timeout;
    int64_t timeout_ms = o.timeout_ms;
    pid_t pid = client_instance_pid(&cl);
    char body[128];
    snprintf(body, sizeof(body), "{\"timeout\":\"%s\"}", timeout ? timeout : "30s");
    client_response resp;
    r = client_call(&cl, "POST", "/api/v1/system/shutdown", body, &resp);
    if (r) {
        client_close(&cl);
        return r;
    }
    const char *msg = json_string_value(json_object_get(resp.json, "message"));
    if (msg)
        fprintf(stderr, "tend: %s\n", msg);
    client_response_free(&resp);
    /* Wait for the exit: the pid when local, else the event stream's end. */
    int w = pid > 0 ? wait_pid(pid, timeout_ms + 10000) : -ENOSYS;
    if (w == -ENOSYS)
        (void)client_stream(&cl, "/api/v1/events?types=system", discard, NULL);
    client_close(&cl);
    if (w == -ETIMEDOUT) {
        cli_error("the instance did not exit within %lld ms", (long long)(timeout_ms + 10000));
        return EXIT_RUNTIME;
    }
    fprintf(stderr, "tend: stopped\n");
    return EXIT_OK;
}

const cmd_entry cmd_down_entry = {"down", "[-f FILE] [--timeout D]", "shut the running instance down and wait", run};
