/*
 * resources.h - what tend and its services use: tend's own RSS, CPU and
 * threads (for /health and process_* metrics), and the GPU memory used by
 * the supervised processes, read through NVML when libnvidia-ml.so.1 can
 * be loaded (dlopen: no build dependency on CUDA; null otherwise).
 */
#ifndef TEND_CLI_RESOURCES_H
#define TEND_CLI_RESOURCES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

typedef struct self_usage {
    double rss_mb;
    double cpu_percent;     /* of one core, over the last sample period */
    double cpu_seconds;     /* user + system, total */
    int threads;
    int open_fds;
    uint64_t vsize_bytes;
    uint64_t rss_bytes;
    double start_time_s;    /* since the epoch */
    uint64_t max_fds;
} self_usage;

/* Reads /proc/self; cpu_percent compares with the previous call. */
void resources_self(self_usage *u);

/*
 * GPU memory (MiB) used by processes whose process group is in pgids[],
 * summed over every GPU, sampled at most once a second.  Returns false
 * when NVML is unavailable (no libnvidia-ml.so.1, or its init fails):
 * /health then says null.  $TEND_NVML_LIBRARY names another library.
 * With a loop, the sample is taken on libuv's thread pool and the last
 * one is returned meanwhile (false until the first is in); without one
 * (tests), synchronously.
 */
bool resources_gpu_memory_mb(uv_loop_t *loop, const pid_t *pgids, size_t n, double *ret_mb);
/* Forgets the loaded library and the cached sample (for tests; not while
 * a sample is being taken). */
void resources_gpu_reset(void);

#endif
