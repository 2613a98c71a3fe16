/* wb_hist: a log-linear latency histogram in microseconds.
 *
 * HdrHistogram's layout: values below 128 get a bucket each, then every
 * power of two is split into 64 linear sub-buckets, so any recorded value is
 * known to within 1/64 (1.6%) up to 2^40 us. That keeps p99.9 honest where
 * Prometheus-style fixed buckets would round a 3 ms tail to "under 5 ms".
 * The struct is plain data so worker processes can ship it through a pipe
 * and the parent can add them up. */
#ifndef BENCH_WB_HIST_H
#define BENCH_WB_HIST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WB_HIST_LINEAR    128 /* values 0..127 exactly */
#define WB_HIST_SUB       64  /* sub-buckets per power of two above that */
#define WB_HIST_MAX_SHIFT 34
#define WB_HIST_BUCKETS   (WB_HIST_LINEAR + WB_HIST_MAX_SHIFT * WB_HIST_SUB)
#define WB_HIST_MAX_VALUE ((UINT64_C(1) << 40) - 1)

typedef struct wb_hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t b[WB_HIST_BUCKETS];
} wb_hist_t;

void wb_hist_init(wb_hist_t *h);
/* Records one value (clamped to WB_HIST_MAX_VALUE). */
void wb_hist_add(wb_hist_t *h, uint64_t v);
void wb_hist_merge(wb_hist_t *dst, const wb_hist_t *src);
/* Value at quantile q in [0,1]: the highest value equivalent to the bucket
 * holding the ceil(q*count)-th smallest sample, clamped to [min,max]; 0 when
 * empty. q=0 is the minimum and q=1 the maximum. */
uint64_t wb_hist_quantile(const wb_hist_t *h, double q);
double wb_hist_mean(const wb_hist_t *h);

size_t wb_hist_index(uint64_t v);
uint64_t wb_hist_lowest(size_t idx);  /* smallest value stored in bucket idx */
uint64_t wb_hist_highest(size_t idx); /* largest value stored in bucket idx */

/* Writes "percentile value_us 1/(1-percentile)" rows, HdrHistogram's
 * percentile-distribution shape, for plotting with a log x axis. */
int wb_hist_write_dist(const wb_hist_t *h, FILE *f);

#endif
