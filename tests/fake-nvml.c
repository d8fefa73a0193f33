/*
 * fake-nvml.c - a stand-in for libnvidia-ml.so.1 with the entry points
 * tend's resources.c uses, for tests/unit/test-api.c (loaded through
 * $TEND_NVML_LIBRARY).  What it reports comes from the environment:
 *   FAKE_NVML_DEVICES    number of devices (default 1)
 *   FAKE_NVML_PROCS      "device:kind:pid:MiB,..." with kind c (compute) or g (graphics)
 *   FAKE_NVML_INIT_FAILS 1: nvmlInit_v2 fails (a driver that is not loaded)
 * Like the real library, a process list answers NVML_ERROR_INSUFFICIENT_SIZE
 * (7) with the needed count when the caller's buffer is too small.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} proc_v2;

typedef struct device {
    unsigned int index;
} device;

static device devices[16];

int nvmlInit_v2(void);
int nvmlDeviceGetCount_v2(unsigned int *n);
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, device **d);
int nvmlDeviceGetComputeRunningProcesses_v3(device *d, unsigned int *count, proc_v2 *out);
int nvmlDeviceGetGraphicsRunningProcesses_v3(device *d, unsigned int *count, proc_v2 *out);

int nvmlInit_v2(void) {
    const char *f = getenv("FAKE_NVML_INIT_FAILS");
    return f && strcmp(f, "1") == 0 ? 9 /* NVML_ERROR_DRIVER_NOT_LOADED */ : 0;
}

int nvmlDeviceGetCount_v2(unsigned int *n) {
    const char *s = getenv("FAKE_NVML_DEVICES");
    unsigned int v = s ? (unsigned int)strtoul(s, NULL, 10) : 1;
    *n = v > 16 ? 16 : v;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, device **d) {
    if (i >= 16)
        return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    devices[i].index = i;
    *d = &devices[i];
    return 0;
}

static int list(device *d, char kind, unsigned int *count, proc_v2 *out) {
    const char *s = getenv("FAKE_NVML_PROCS");
    unsigned int n = 0;
    while (s && *s) {
        unsigned int dev, pid;
        unsigned long long mib;
        char k;
        int used = 0;
        if (sscanf(s, "%u:%c:%u:%llu%n", &dev, &k, &pid, &mib, &used) != 4)
            break;
        if (dev == d->index && k == kind) {
            if (n < *count)
                out[n] = (proc_v2){pid, mib * 1024ULL * 1024ULL, 0, 0};
            n++;
        }
        s += used;
        if (*s == ',')
            s++;
    }
    if (n > *count) {
        *count = n;
        return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
    }
    *count = n;
    return 0;
}

int nvmlDeviceGetComputeRunningProcesses_v3(device *d, unsigned int *count, proc_v2 *out) {
    return list(d, 'c', count, out);
}

int nvmlDeviceGetGraphicsRunningProcesses_v3(device *d, unsigned int *count, proc_v2 *out) {
    return list(d, 'g', count, out);
}
