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

#include "cmd-client-common.h"
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

static int run(int argc, char **argv) {
    static const struct option opts[] = {CLIENT_OPTS_FILE_URL, {"timeout", required_argument, NULL, 'T'}, {0}};
    const char *file = NULL, *url = NULL, *timeout = NULL;
    int64_t timeout_ms = 30000;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': file = optarg; break;
        case 'U': url = optarg; break;
        case 'T':
            timeout = optarg;
            if (parse_duration_ms(optarg, &timeout_ms) < 0) {
                cli_error("--timeout: invalid duration \"%s\" (try 500ms, 5s, 2m)", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'h': printf("usage: tend down [-f FILE | --url URL] [--timeout D]\n"); return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    client cl;
    int r = client_open(&cl, file, url);
    if (r)
        return r;
    pid_t pid = client_instance_pid(&cl);
    char body[128];
    snprintf(body, sizeof(body), "{\"timeout\":\"%s\"}", timeout ? timeout : "30s");
    client_response resp;
    r = client_request(&cl, "POST", "/api/v1/system/shutdown", body, &resp);
    if (r) {
        client_close(&cl);
        return r;
    }
    if (resp.status != 200) {
        client_print_error(&resp);
        client_response_free(&resp);
        client_close(&cl);
        return EXIT_RUNTIME;
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
