/*
 * supervisor.c - the process supervisor of `tend up`, in-process: two
 * services described with tend/spec.h (a "queue" and a "worker" that
 * needs it ready), started in dependency order, inspected, restarted and
 * stopped in reverse order.
 *
 *   cc supervisor.c -o supervisor $(pkg-config --cflags --libs tend)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tend/tend.h>
#include <unistd.h>

static char **argv3(const char *a, const char *b, const char *c) {
    char **v = calloc(4, sizeof(char *));
    if (!v)
        return NULL;
    v[0] = strdup(a);
    v[1] = b ? strdup(b) : NULL;
    v[2] = c ? strdup(c) : NULL;
    return v;
}

static void on_state(void *data, const char *svc, tend_service_state from, tend_service_state to,
                     const char *reason) {
    printf("  %s: %s -> %s%s%s\n", svc, tend_service_state_to_string(from), tend_service_state_to_string(to),
           reason[0] ? " " : "", reason);
}

int main(void) {
    char dir[] = "/tmp/tend-embed-supervisor-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    tend_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return 1;
    tend_config_init(cfg);
    cfg->dir = strdup(dir);
    size_t len = strlen(dir) + sizeof("/state");
    cfg->state_dir = malloc(len);
    snprintf(cfg->state_dir, len, "%s/state", dir);
    cfg->n_services = 2;
    cfg->services = calloc(2, sizeof(tend_service_spec));
    tend_service_spec *queue = &cfg->services[0], *worker = &cfg->services[1];
    tend_service_spec_init(queue);
    tend_service_spec_init(worker);
    queue->name = strdup("queue");
    queue->argv = argv3("sleep", "60", NULL);
    worker->name = strdup("worker");
    worker->argv = argv3("/bin/sh", "-c", "exec sleep 60");
    worker->n_deps = 1;
    worker->deps = calloc(1, sizeof(tend_dep_spec));
    worker->deps[0].name = strdup("queue");
    worker->deps[0].condition = TEND_DEP_READY;

    tend_supervisor_options o;
    tend_supervisor_options_init(&o);
    o.state_changed = on_state;
    tend_supervisor *sup;
    int r = tend_supervisor_new(cfg, &o, &sup);
    if (r < 0) {
        fprintf(stderr, "supervisor: %s\n", tend_strerror(r));
        return 1;
    }
    puts("starting:");
    if ((r = tend_supervisor_start(sup)) < 0 || (r = tend_supervisor_wait_started(sup, 30000)) < 0) {
        char err[256];
        tend_supervisor_error(sup, err, sizeof(err));
        fprintf(stderr, "startup: %s %s\n", tend_strerror(r), err);
        tend_supervisor_free(sup);
        return 1;
    }
    tend_service_info info;
    tend_supervisor_service_info(sup, "worker", &info);
    printf("worker: %s, pid %d\n", tend_service_state_to_string(info.state), (int)info.pid);
    int ok = info.state == TEND_SERVICE_READY && info.pid > 0;
    puts("restarting worker:");
    tend_supervisor_service_restart(sup, "worker");
    puts("stopping:");
    r = tend_supervisor_stop(sup, 10000);
    tend_supervisor_service_info(sup, "queue", &info);
    ok = ok && r == 0 && info.state == TEND_SERVICE_STOPPED;
    tend_supervisor_free(sup);
    tend_config_free(cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return ok ? 0 : 1;
}
