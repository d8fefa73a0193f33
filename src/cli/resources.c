/* resources.c - see resources.h. */
#include "resources.h"

#include <dirent.h>
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

/* The few NVML entry points we need, resolved at run time. */
typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

static struct {
    bool tried, ok;
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*count)(unsigned int *);
    nvmlReturn_t (*handle)(unsigned int, nvmlDevice_t *);
    nvmlReturn_t (*compute)(nvmlDevice_t, unsigned int *, nvmlProcessInfo_t *);
    nvmlReturn_t (*graphics)(nvmlDevice_t, unsigned int *, nvmlProcessInfo_t *);
} nvml;

static bool nvml_load(void) {
    if (nvml.tried)
        return nvml.ok;
    nvml.tried = true;
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return false;
    *(void **)&nvml.init = dlsym(h, "nvmlInit_v2");
    *(void **)&nvml.count = dlsym(h, "nvmlDeviceGetCount_v2");
    *(void **)&nvml.handle = dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&nvml.compute = dlsym(h, "nvmlDeviceGetComputeRunningProcesses_v3");
    *(void **)&nvml.graphics = dlsym(h, "nvmlDeviceGetGraphicsRunningProcesses_v3");
    if (!nvml.init || !nvml.count || !nvml.handle || !nvml.compute || nvml.init() != 0) {
        dlclose(h);
        return false;
    }
    nvml.ok = true;
    return true;
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

static bool gpu_sample(const pid_t *pgids, size_t n, double *ret_mb);

bool resources_gpu_memory_mb(const pid_t *pgids, size_t n, double *ret_mb) {
    static bool cached_ok;
    static double cached_mb;
    static int64_t cached_us;
    int64_t now = now_mono_us();
    if (cached_us == 0 || now - cached_us >= 1000000) {
        cached_ok = gpu_sample(pgids, n, &cached_mb);
        cached_us = now;
    }
    *ret_mb = cached_mb;
    return cached_ok;
}

static bool gpu_sample(const pid_t *pgids, size_t n, double *ret_mb) {
    if (!nvml_load())
        return false;
    unsigned int devs = 0;
    if (nvml.count(&devs) != 0)
        return false;
    unsigned long long total = 0;
    for (unsigned int d = 0; d < devs; d++) {
        nvmlDevice_t dev;
        if (nvml.handle(d, &dev) != 0)
            continue;
        nvmlReturn_t (*fns[2])(nvmlDevice_t, unsigned int *, nvmlProcessInfo_t *) = {nvml.compute, nvml.graphics};
        for (int k = 0; k < 2; k++) {
            if (!fns[k])
                continue;
            nvmlProcessInfo_t infos[256];
            unsigned int cnt = 256;
            if (fns[k](dev, &cnt, infos) != 0)
                continue;
            for (unsigned int i = 0; i < cnt && i < 256; i++)
                if (in_groups(infos[i].pid, pgids, n) && infos[i].usedGpuMemory != (unsigned long long)-1)
                    total += infos[i].usedGpuMemory;
        }
    }
    *ret_mb = (double)total / (1024.0 * 1024.0);
    return true;
}
