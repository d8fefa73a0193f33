/*
 * histogram.h - a Prometheus-style cumulative histogram over fixed
 * buckets (upper bounds in seconds).  Observing is O(buckets), no
 * allocation.
 */
#ifndef TEND_BASE_HISTOGRAM_H
#define TEND_BASE_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_MAX_BUCKETS 16

typedef struct histogram {
    const double *bounds;   /* ascending upper bounds, +Inf implied */
    size_t n_bounds;
    uint64_t counts[HISTOGRAM_MAX_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} histogram;

/* Probe and request latencies: 1 ms .. 10 s. */
extern const double histogram_latency_bounds[];
extern const size_t histogram_latency_n;

void histogram_init(histogram *h, const double *bounds, size_t n);
void histogram_observe(histogram *h, double value);

#endif
