/* wb_hist: log-linear latency histogram (see wb_hist.h). */
#include "wb_hist.h"

#include <math.h>
#include <string.h>

void wb_hist_init(wb_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

size_t wb_hist_index(uint64_t v)
{
    if (v > WB_HIST_MAX_VALUE)
        v = WB_HIST_MAX_VALUE;
    if (v < WB_HIST_LINEAR)
        return (size_t)v;
    /* msb >= 7 here; shifting by msb-6 leaves a value in [64,128). */
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - 6;
    uint64_t sub = v >> shift;
    return WB_HIST_LINEAR + (size_t)(shift - 1) * WB_HIST_SUB + (size_t)(sub - WB_HIST_SUB);
}

uint64_t wb_hist_lowest(size_t idx)
{
    if (idx < WB_HIST_LINEAR)
        return idx;
    size_t k = idx - WB_HIST_LINEAR;
    unsigned shift = (unsigned)(k / WB_HIST_SUB) + 1;
    uint64_t sub = WB_HIST_SUB + k % WB_HIST_SUB;
    return sub << shift;
}

uint64_t wb_hist_highest(size_t idx)
{
    if (idx < WB_HIST_LINEAR)
        return idx;
    unsigned shift = (unsigned)((idx - WB_HIST_LINEAR) / WB_HIST_SUB) + 1;
    return wb_hist_lowest(idx) + (UINT64_C(1) << shift) - 1;
}

void wb_hist_add(wb_hist_t *h, uint64_t v)
{
    if (v > WB_HIST_MAX_VALUE)
        v = WB_HIST_MAX_VALUE;
    h->b[wb_hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void wb_hist_merge(wb_hist_t *dst, const wb_hist_t *src)
{
    if (src->count == 0)
        return;
    for (size_t i = 0; i < WB_HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t wb_hist_quantile(const wb_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < WB_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = wb_hist_highest(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double wb_hist_mean(const wb_hist_t *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

int wb_hist_write_dist(const wb_hist_t *h, FILE *f)
{
    if (fprintf(f, "# percentile value_us inv_one_minus_p\n") < 0)
        return -1;
    if (h->count == 0)
        return 0;
    /* Halve the remaining distance to 100% at each step, 5 points per
     * halving, as HdrHistogram's percentile output does. */
    for (int i = 0; i <= 5 * 20; i++) {
        double p = 1.0 - pow(0.5, (double)i / 5.0);
        if (p * (double)h->count > (double)h->count - 0.5)
            break;
        if (fprintf(f, "%.6f %llu %.3f\n", p * 100.0, (unsigned long long)wb_hist_quantile(h, p),
                    1.0 / (1.0 - p)) < 0)
            return -1;
    }
    /* The maximum has no finite x on this axis; keep it as a comment. */
    return fprintf(f, "# max %llu\n", (unsigned long long)h->max) < 0 ? -1 : 0;
}
