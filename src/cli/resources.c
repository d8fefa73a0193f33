/* resources.c - see resources.h. */
#include "resources.h"

#include <dirent.h>
#include <stddef.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "timeutil.h"

/* Reading /proc costs tens of microseconds: a sample is reused for
 * RESOURCES_CACHE_US, so /health and /metrics stay cheap under load. */
#define RESOURCES_CACHE_US 250000

static void sample_self(self_usage *u);

void resources_self(self_usage *u) {
    static self_usage cached;
    static int64_t cached_us;
    int64_t now = now_mono_us();
    if (cached_us == 0 || now - cached_us >= RESOURCES_CACHE_US) {
        sample_self(&cached);
        cached_us = now;
    }
    *u = cached;
}

static void sample_self(self_usage *u) {
    static int64_t last_us;
    static double last_cpu;
    memset(u, 0, sizeof(*u));
    long page = sysconf(_SC_PAGESIZE), hz = sysconf(_SC_CLK_TCK);
    FILE *f = fopen("/proc/self/stat", "re");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0, vsize = 0;
        unsigned long long starttime = 0;
        long threads = 0, rss = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %ld %*d %llu %lu %ld",
                        &utime, &stime, &threads, &starttime, &vsize, &rss) == 6) {
            u->cpu_seconds = (double)(utime + stime) / (double)hz;
            u->threads = (int)threads;
            u->vsize_bytes = vsize;
            u->rss_bytes = (uint64_t)rss * (uint64_t)page;
            u->rss_mb = (double)u->rss_bytes / (1024.0 * 1024.0);
            /* Boot time + start ticks = start time since the epoch. */
            FILE *up = fopen("/proc/uptime", "re");
            double uptime = 0;
            if (up) {
                if (fscanf(up, "%lf", &uptime) != 1)
                    uptime = 0;
                fclose(up);
            }
            u->start_time_s = (double)time(NULL) - uptime + (double)starttime / (double)hz;
        }
    }
    int64_t now = now_mono_us();
    if (last_us > 0 && now > last_us)
        u->cpu_percent = 100.0 * (u->cpu_seconds - last_cpu) / ((double)(now - last_us) / 1e6);
    if (u->cpu_percent < 0)
        u->cpu_percent = 0;
    if (last_us == 0 || now - last_us >= 1000000) {
        last_us = now;
        last_cpu = u->cpu_seconds;
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                u->open_fds++;
        closedir(d);
        u->open_fds--; /* the directory itself */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        u->max_fds = rl.rlim_cur;
}

/*
 * GPU memory through NVML, resolved at run time with dlopen() so that tend
 * has no build or run dependency on the NVIDIA driver.  The library is
 * libnvidia-ml.so.1, or $TEND_NVML_LIBRARY (tests load a fake one).
 *
 * Per device, the compute and the graphics process lists are read (a
 * process with both kinds of context appears in both, with the same
 * figure: it is counted once), and the memory of every process whose
 * process group is a supervised service's is summed over all devices.
 * NVML reports pids of the host's pid namespace: run in a container with
 * its own pid namespace, tend sees none of them and reports 0.
 */
typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_VALUE_NOT_AVAILABLE (~0ULL)
/* nvmlProcessInfo_t as the _v2 and _v3 entry points fill it ... */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvml_proc_v2;
/* ... and as the original ones (drivers before R450) do. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
} nvml_proc_v1;
typedef nvmlReturn_t (*nvml_procs_fn)(nvmlDevice_t, unsigned int *, void *);

#define NVML_MAX_PROCS 65536    /* per device and list: a bound on the buffer */

static struct {
    bool opened, open_ok;       /* nvml_open(): the library and its symbols */
    bool inited, init_ok;       /* nvml_init(): nvmlInit (where sampling runs) */
    void *lib;
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*count)(unsigned int *);
    nvmlReturn_t (*handle)(unsigned int, nvmlDevice_t *);
    nvml_procs_fn procs[2];     /* compute, graphics */
    size_t entry_size[2];
} nvml;

static void *sym(const char *const *names, size_t *which) {
    for (size_t i = 0; names[i]; i++) {
        void *p = dlsym(nvml.lib, names[i]);
        if (p) {
            if (which)
                *which = i;
            return p;
        }
    }
    return NULL;
}

/* Loads the library and resolves the entry points: cheap (no driver
 * call), so done on the loop, and it tells whether there is NVML at all. */
static bool nvml_open(void) {
    if (nvml.opened)
        return nvml.open_ok;
    nvml.opened = true;
    const char *path = getenv("TEND_NVML_LIBRARY");
    nvml.lib = dlopen(path && *path ? path : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nvml.lib)
        return false;
    static const char *const init_names[] = {"nvmlInit_v2", "nvmlInit", NULL};
    static const char *const count_names[] = {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount", NULL};
    static const char *const handle_names[] = {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex", NULL};
    static const char *const proc_names[2][4] = {
        {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2",
         "nvmlDeviceGetComputeRunningProcesses", NULL},
        {"nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v2",
         "nvmlDeviceGetGraphicsRunningProcesses", NULL},
    };
    *(void **)&nvml.init = sym(init_names, NULL);
    *(void **)&nvml.count = sym(count_names, NULL);
    *(void **)&nvml.handle = sym(handle_names, NULL);
    for (int k = 0; k < 2; k++) {
        size_t which = 0;
        *(void **)&nvml.procs[k] = sym(proc_names[k], &which);
        nvml.entry_size[k] = which == 2 ? sizeof(nvml_proc_v1) : sizeof(nvml_proc_v2);
    }
    if (!nvml.init || !nvml.count || !nvml.handle || !nvml.procs[0]) {
        dlclose(nvml.lib);
        nvml.lib = NULL;
        return false;
    }
    nvml.open_ok = true;
    return true;
}

/* nvmlInit talks to the driver and may take long (hundreds of ms when no
 * process holds the GPU open): only called where sampling runs. */
static bool nvml_init(void) {
    if (nvml.inited)
        return nvml.init_ok;
    nvml.inited = true;
    nvml.init_ok = nvml_open() && nvml.init() == NVML_SUCCESS;
    return nvml.init_ok;
}

static bool in_groups(unsigned int pid, const pid_t *pgids, size_t n) {
    pid_t pg = getpgid((pid_t)pid);
    if (pg < 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (pgids[i] == pg)
            return true;
    return false;
}

typedef struct gpu_proc {
    unsigned int pid;
    unsigned long long bytes;
} gpu_proc;

/* Appends one device's list k to *procs (one entry per pid, the larger
 * figure kept).  The buffer grows when NVML says it is too small. */
static int read_list(int k, nvmlDevice_t dev, gpu_proc **procs, size_t *n, size_t *cap) {
    if (!nvml.procs[k])
        return 0;
    size_t es = nvml.entry_size[k];
    unsigned int want = 64;
    unsigned char *buf = NULL;
    unsigned int cnt = 0;
    nvmlReturn_t r = NVML_ERROR_INSUFFICIENT_SIZE;
    for (int tries = 0; tries < 4 && r == NVML_ERROR_INSUFFICIENT_SIZE; tries++) {
        unsigned char *b = realloc(buf, (size_t)want * es);
        if (!b) {
            free(buf);
            return -1;
        }
        buf = b;
        cnt = want;
        r = nvml.procs[k](dev, &cnt, buf);
        /* On INSUFFICIENT_SIZE cnt is the number needed; leave room for
         * processes that start meanwhile. */
        if (r == NVML_ERROR_INSUFFICIENT_SIZE) {
            if (cnt >= NVML_MAX_PROCS)
                break;
            want = cnt + 16;
        }
    }
    if (r != NVML_SUCCESS) {
        free(buf);
        return r == NVML_ERROR_INSUFFICIENT_SIZE ? -1 : 0;
    }
    for (unsigned int i = 0; i < cnt && i < want; i++) {
        const unsigned char *e = buf + (size_t)i * es;
        unsigned int pid;
        unsigned long long bytes;
        memcpy(&pid, e + offsetof(nvml_proc_v2, pid), sizeof(pid));
        memcpy(&bytes, e + offsetof(nvml_proc_v2, usedGpuMemory), sizeof(bytes));
        if (bytes == NVML_VALUE_NOT_AVAILABLE)
            bytes = 0; /* e.g. without the permission to see it */
        size_t j = 0;
        while (j < *n && (*procs)[j].pid != pid)
            j++;
        if (j < *n) {
            if (bytes > (*procs)[j].bytes)
                (*procs)[j].bytes = bytes;
            continue;
        }
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            gpu_proc *p = realloc(*procs, nc * sizeof(*p));
            if (!p) {
                free(buf);
                return -1;
            }
            *procs = p;
            *cap = nc;
        }
        (*procs)[(*n)++] = (gpu_proc){pid, bytes};
    }
    free(buf);
    return 0;
}

static bool gpu_sample(const pid_t *pgids, size_t n, double *ret_mb);

/*
 * The last sample, renewed when it is GPU_SAMPLE_US old.  With a loop, a
 * new sample is taken on libuv's thread pool (NVML calls are ioctls into
 * the driver that may block) and the answer is the previous one meanwhile:
 * null until the first sample is in.  Without NVML no thread is used.
 */
#define GPU_SAMPLE_US 1000000
static struct {
    bool have, ok, busy;
    double mb;
    int64_t at_us;
    uv_work_t work;
    pid_t *pgids;               /* the worker's copy */
    size_t n;
    bool result_ok;
    double result_mb;
} gpu;

static void gpu_work(uv_work_t *w) {
    (void)w;
    gpu.result_ok = gpu_sample(gpu.pgids, gpu.n, &gpu.result_mb);
}

static void gpu_after(uv_work_t *w, int status) {
    (void)w;
    gpu.busy = false;
    free(gpu.pgids);
    gpu.pgids = NULL;
    gpu.have = true;
    gpu.ok = status == 0 && gpu.result_ok;
    gpu.mb = gpu.ok ? gpu.result_mb : 0;
    gpu.at_us = now_mono_us();
}

bool resources_gpu_memory_mb(uv_loop_t *loop, const pid_t *pgids, size_t n, double *ret_mb) {
    int64_t now = now_mono_us();
    if (!gpu.busy && (!gpu.have || now - gpu.at_us >= GPU_SAMPLE_US)) {
        if (!nvml_open()) {
            gpu.have = true;
            gpu.ok = false;
            gpu.at_us = now;
        } else if (!loop) {
            gpu.ok = gpu_sample(pgids, n, &gpu.mb);
            gpu.have = true;
            gpu.at_us = now;
        } else {
            gpu.pgids = malloc((n ? n : 1) * sizeof(*pgids));
            if (gpu.pgids) {
                if (n)
                    memcpy(gpu.pgids, pgids, n * sizeof(*pgids));
                gpu.n = n;
                if (uv_queue_work(loop, &gpu.work, gpu_work, gpu_after) == 0) {
                    gpu.busy = true;
                } else {
                    free(gpu.pgids);
                    gpu.pgids = NULL;
                }
            }
        }
    }
    *ret_mb = gpu.mb;
    return gpu.have && gpu.ok;
}

void resources_gpu_reset(void) {
    if (gpu.busy)
        return; /* a sample in flight: tests wait for it first */
    if (nvml.lib)
        dlclose(nvml.lib); /* no nvmlShutdown: a test's fake, or never at run time */
    memset(&nvml, 0, sizeof(nvml));
    memset(&gpu, 0, sizeof(gpu));
}

/* Runs on the sampling thread (or the caller's, without a loop). */
static bool gpu_sample(const pid_t *pgids, size_t n, double *ret_mb) {
    *ret_mb = 0;
    if (!nvml_init())
        return false;
    unsigned int devs = 0;
    if (nvml.count(&devs) != NVML_SUCCESS)
        return false;
    unsigned long long total = 0;
    gpu_proc *procs = NULL;
    size_t cap = 0;
    for (unsigned int d = 0; d < devs; d++) {
        nvmlDevice_t dev;
        if (nvml.handle(d, &dev) != NVML_SUCCESS)
            continue;
        size_t np = 0;
        for (int k = 0; k < 2; k++)
            if (read_list(k, dev, &procs, &np, &cap) < 0)
                break;
        for (size_t i = 0; i < np; i++)
            if (in_groups(procs[i].pid, pgids, n))
                total += procs[i].bytes;
    }
    free(procs);
    *ret_mb = (double)total / (1024.0 * 1024.0);
    return true;
}
