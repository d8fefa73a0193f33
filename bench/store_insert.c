/*
 * store_insert.c - durable insert throughput of the task store, and the
 * memory it costs to hold a large queue.
 *
 * Inserts N pending tasks in batches (one INSERT op per batch, as one
 * HTTP bulk submission of that many tasks would), keeping J batches in
 * flight (J concurrent submitters: what group commit merges), through the
 * real store API on a libuv loop.  Then times a dispatch read
 * (FETCH_READY of 100) and COUNTS on the full table, reports the process
 * RSS, then runs P tasks through the store's side of dispatch (CLAIM 1000,
 * then one UPDATE op per task to succeeded, all submitted at once) and
 * times a RECOVER of 1000 running tasks among the rest.
 *
 *   store_insert [-n TASKS] [-b BATCH] [-j INFLIGHT] [-s full|normal]
 *                [-p PROCESS] [-m] [-d DIR] [-k]
 *   -m: the memory backend; -d: database directory (default: a new
 *   directory under $TMPDIR or /tmp); -k: keep it.
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "timeutil.h"

typedef struct batch {
    store_op op;
    store_task *tasks;
    char *payloads; /* one buffer for the batch's payload texts */
} batch;

static struct {
    uv_loop_t loop;
    store *s;
    size_t total, batch, inflight;
    size_t submitted, done;
    int error;
    batch *batches;
} B;

enum { PAYLOAD_SIZE = 96 };

static void fill(batch *b, size_t first) {
    for (size_t i = 0; i < B.batch; i++) {
        char *p = b->payloads + i * PAYLOAD_SIZE;
        int n = snprintf(p, PAYLOAD_SIZE,
                         "{\"to\":\"user%zu@example.com\",\"template\":\"welcome\",\"n\":%zu}",
                         first + i, first + i);
        b->tasks[i] = (store_task){
            .queue = "email",
            .priority = (store_priority)((first + i) % STORE_PRIORITY_MAX),
            .state = STORE_TASK_PENDING,
            .max_attempts = 3,
            .timeout_ms = 30000,
            .payload = p,
            .payload_len = (size_t)n,
        };
    }
}

static void submit_next(batch *b);

static void on_batch(store_op *op, int result) {
    batch *b = (batch *)op;
    if (result < 0) {
        if (!B.error)
            B.error = result;
        return;
    }
    B.done += op->insert.ret_created;
    store_op_clear(op);
    submit_next(b);
}

static void submit_next(batch *b) {
    if (B.error || B.submitted >= B.total)
        return;
    size_t n = B.total - B.submitted < B.batch ? B.total - B.submitted : B.batch;
    fill(b, B.submitted);
    b->op = (store_op){
        .kind = STORE_OP_INSERT, .done = on_batch, .insert = {.tasks = b->tasks, .n = n}};
    B.submitted += n;
    int r = store_submit(B.s, &b->op);
    if (r < 0 && !B.error)
        B.error = r;
}

static int waiter_done;
static void on_done(store_op *op, int result) {
    *(int *)op->userdata = result;
    waiter_done = 1;
}

static int run_one(store_op *op);
static size_t updates_done;
static void on_update(store_op *op, int result) {
    if (result < 0 && !B.error)
        B.error = result;
    updates_done++;
}

/* CLAIM up to 1000 tasks, then finish each with its own UPDATE op. */
static size_t process(size_t total) {
    size_t n = 0;
    store_op *ops = calloc(1000, sizeof(*ops));
    store_task *u = calloc(1000, sizeof(*u));
    while (n < total && !B.error) {
        int64_t now = now_wall_ms();
        store_op claim = {
            .kind = STORE_OP_CLAIM,
            .claim = {.queue = "email", .now = now, .limit = 1000, .lease_until = now + 30000}};
        int r = run_one(&claim);
        if (r <= 0)
            break;
        updates_done = 0;
        for (int i = 0; i < r; i++) {
            u[i] = (store_task){.state = STORE_TASK_SUCCEEDED, .finished_at = now};
            memcpy(u[i].id, claim.claim.ret_tasks[i].id, STORE_ID_SIZE);
            ops[i] = (store_op){.kind = STORE_OP_UPDATE,
                                .done = on_update,
                                .update = {.task = &u[i],
                                           .fields = STORE_FIELD_STATE | STORE_FIELD_FINISHED_AT,
                                           .expect_version = claim.claim.ret_tasks[i].version}};
            store_submit(B.s, &ops[i]);
        }
        while (updates_done < (size_t)r)
            uv_run(&B.loop, UV_RUN_ONCE);
        store_op_clear(&claim);
        n += (size_t)r;
    }
    free(ops);
    free(u);
    return n;
}

static int run_one(store_op *op) {
    int result = 0;
    waiter_done = 0;
    op->done = on_done;
    op->userdata = &result;
    int r = store_submit(B.s, op);
    if (r < 0)
        return r;
    while (!waiter_done)
        uv_run(&B.loop, UV_RUN_ONCE);
    return result;
}

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static void print_rss(const char *when) {
    printf("rss %-22s VmRSS %6.1f MB (anon %6.1f, file %5.1f, shmem %5.1f)  VmHWM %6.1f MB\n", when,
           status_kb("VmRSS") / 1024.0, status_kb("RssAnon") / 1024.0,
           status_kb("RssFile") / 1024.0, status_kb("RssShmem") / 1024.0,
           status_kb("VmHWM") / 1024.0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    return remove(path);
}

static void on_closed(void *data) {
    *(int *)data = 1;
}

static double file_mb(const char *dir, const char *name) {
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 ? st.st_size / 1048576.0 : 0;
}

int main(int argc, char **argv) {
    B.total = 1000000;
    B.batch = 1000;
    B.inflight = 1;
    store_config cfg = {.backend = STORE_BACKEND_SQLITE, .sync = STORE_SYNC_FULL};
    const char *dir = NULL;
    bool keep = false;
    size_t nprocess = 100000;
    int c;
    while ((c = getopt(argc, argv, "n:b:j:s:p:md:k")) != -1) {
        switch (c) {
        case 'n':
            B.total = strtoul(optarg, NULL, 10);
            break;
        case 'b':
            B.batch = strtoul(optarg, NULL, 10);
            break;
        case 'j':
            B.inflight = strtoul(optarg, NULL, 10);
            break;
        case 's':
            cfg.sync = strcmp(optarg, "normal") == 0 ? STORE_SYNC_NORMAL : STORE_SYNC_FULL;
            break;
        case 'p':
            nprocess = strtoul(optarg, NULL, 10);
            break;
        case 'm':
            cfg.backend = STORE_BACKEND_MEMORY;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'k':
            keep = true;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-n TASKS] [-b BATCH] [-j INFLIGHT] [-s full|normal] [-p PROCESS] "
                    "[-m] [-d DIR] [-k]\n",
                    argv[0]);
            return 2;
        }
    }
    if (B.batch == 0 || B.batch > STORE_INSERT_MAX || B.inflight == 0) {
        fprintf(stderr, "store_insert: bad -b or -j\n");
        return 2;
    }
    char tmp[PATH_MAX];
    if (!dir) {
        snprintf(tmp, sizeof(tmp), "%s/tend-bench-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmp;
    } else
        keep = true;
    cfg.state_dir = dir;

    print_rss("at start");
    uv_loop_init(&B.loop);
    char *msg = NULL;
    int r = store_open(&B.loop, &cfg, &B.s, &msg);
    if (r < 0) {
        fprintf(stderr, "store_insert: %s\n", msg ? msg : strerror(-r));
        return 1;
    }
    B.batches = calloc(B.inflight, sizeof(*B.batches));
    for (size_t i = 0; i < B.inflight; i++) {
        B.batches[i].tasks = calloc(B.batch, sizeof(store_task));
        B.batches[i].payloads = malloc(B.batch * PAYLOAD_SIZE);
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    int64_t t0 = now_mono_us();
    for (size_t i = 0; i < B.inflight; i++)
        submit_next(&B.batches[i]);
    uv_run(&B.loop, UV_RUN_DEFAULT);
    int64_t t1 = now_mono_us();
    getrusage(RUSAGE_SELF, &ru1);
    if (B.error) {
        fprintf(stderr, "store_insert: insert failed: %s\n", strerror(-B.error));
        return 1;
    }
    store_stats st;
    store_get_stats(B.s, &st);
    double secs = (t1 - t0) / 1e6;
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                 (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    printf("backend %s, synchronous=%s, %zu tasks, batches of %zu, %zu in flight\n",
           store_backend_name(B.s), cfg.sync == STORE_SYNC_FULL ? "FULL" : "NORMAL", B.done,
           B.batch, B.inflight);
    printf("inserted %zu tasks in %.2f s: %.0f tasks/s; %" PRIu64
           " commits (%.0f tasks/commit); cpu %.2f s\n",
           B.done, secs, B.done / secs, st.commits, st.commits ? (double)B.done / st.commits : 0.0,
           cpu);
    print_rss("after inserts");

    /* Dispatch reads against the full table. */
    store_op op = {.kind = STORE_OP_FETCH_READY,
                   .fetch = {.queue = "email", .now = now_wall_ms(), .limit = 100}};
    int64_t f0 = now_mono_us();
    r = run_one(&op);
    int64_t f1 = now_mono_us();
    printf("fetch_ready(100): %d tasks in %.2f ms (first priority %s)\n", r, (f1 - f0) / 1000.0,
           r > 0 ? store_priority_to_string(op.fetch.ret_tasks[0].priority) : "-");
    store_op_clear(&op);
    op = (store_op){.kind = STORE_OP_COUNTS};
    f0 = now_mono_us();
    r = run_one(&op);
    f1 = now_mono_us();
    uint64_t pending = 0;
    for (size_t i = 0; r > 0 && i < op.counts.ret_n; i++)
        for (int p = 0; p < STORE_PRIORITY_MAX; p++)
            pending += op.counts.ret_counts[i].n[STORE_TASK_PENDING][p];
    printf("counts: %" PRIu64 " pending in %.2f ms\n", pending, (f1 - f0) / 1000.0);
    store_op_clear(&op);

    if (nprocess) {
        store_get_stats(B.s, &st);
        uint64_t commits0 = st.commits;
        int64_t p0 = now_mono_us();
        size_t done = process(nprocess);
        int64_t p1 = now_mono_us();
        store_get_stats(B.s, &st);
        printf(
            "processed %zu tasks (claim 1000 + an UPDATE op each) in %.2f s: %.0f tasks/s; %" PRIu64
            " commits\n",
            done, (p1 - p0) / 1e6, done / ((p1 - p0) / 1e6), st.commits - commits0);
    }
    if (B.error) {
        fprintf(stderr, "store_insert: processing failed: %s\n", strerror(-B.error));
        return 1;
    }
    {
        int64_t now = now_wall_ms();
        store_op claim = {.kind = STORE_OP_CLAIM,
                          .claim = {.queue = "email", .now = now, .limit = 1000}};
        run_one(&claim);
        store_op_clear(&claim);
        op = (store_op){.kind = STORE_OP_RECOVER};
        int64_t r0 = now_mono_us();
        r = run_one(&op);
        int64_t r1 = now_mono_us();
        printf("recover: %d running tasks requeued in %.2f ms\n", r, (r1 - r0) / 1000.0);
    }
    for (size_t i = 0; i < B.inflight; i++) {
        free(B.batches[i].tasks);
        free(B.batches[i].payloads);
    }
    free(B.batches);
    malloc_trim(0);
    print_rss("after reads, trimmed");
    if (cfg.backend == STORE_BACKEND_SQLITE)
        printf("disk: tend.db %.1f MB, tend.db-wal %.1f MB\n", file_mb(dir, "tend.db"),
               file_mb(dir, "tend.db-wal"));

    int closed = 0;
    store_close(B.s, on_closed, &closed);
    while (!closed)
        uv_run(&B.loop, UV_RUN_ONCE);
    uv_loop_close(&B.loop);
    if (!keep)
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
