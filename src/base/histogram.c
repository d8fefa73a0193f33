/* histogram.c - see histogram.h. */
#include "histogram.h"

#include <string.h>

const double histogram_latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                           0.25, 0.5, 1, 2.5, 5, 10};
const size_t histogram_latency_n = sizeof(histogram_latency_bounds) / sizeof(histogram_latency_bounds[0]);

void histogram_init(histogram *h, const double *bounds, size_t n) {
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->n_bounds = n < HISTOGRAM_MAX_BUCKETS - 1 ? n : HISTOGRAM_MAX_BUCKETS - 1;
}

void histogram_observe(histogram *h, double v) {
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    h->counts[i]++; /* i == n_bounds is the +Inf bucket */
    h->count++;
    h->sum += v;
}
