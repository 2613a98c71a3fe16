/* met: counters, gauges and histograms rendered as Prometheus text.
 *
 * Values are updated with relaxed atomics so that several event-loop threads
 * can share one registry without locks. Metric objects belong to the registry
 * and live until met_free(). Several series may share a name with different
 * labels; they are rendered under one HELP/TYPE block, in registration order. */
#ifndef COMMON_MET_H
#define COMMON_MET_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct met_registry met_registry_t;
typedef struct met_counter {
    uint64_t v;
} met_counter_t;
typedef struct met_gauge {
    int64_t v;
} met_gauge_t;
typedef struct met_hist met_hist_t;

met_registry_t *met_create(void);
void met_free(met_registry_t *r);
/* Whether met_render() also renders the legacy names of met_names.h
 * (--metrics-legacy; on in a new registry). Set before rendering starts. */
void met_set_legacy(met_registry_t *r, int on);
int met_legacy(const met_registry_t *r);

/* labels: NULL or a Prometheus label list without braces, e.g. `verdict="ok"`. */
met_counter_t *met_counter(met_registry_t *r, const char *name, const char *labels,
                           const char *help);
met_gauge_t *met_gauge(met_registry_t *r, const char *name, const char *labels, const char *help);
/* A gauge whose value is computed at render time. */
int met_gauge_fn(met_registry_t *r, const char *name, const char *labels, const char *help,
                 double (*fn)(void *ud), void *ud);
/* bounds: ascending upper bounds (+Inf is implicit); copied. */
met_hist_t *met_hist(met_registry_t *r, const char *name, const char *labels, const char *help,
                     const double *bounds, size_t nbounds);

static inline void met_inc(met_counter_t *c, uint64_t n)
{
    __atomic_fetch_add(&c->v, n, __ATOMIC_RELAXED);
}
static inline uint64_t met_counter_get(const met_counter_t *c)
{
    return __atomic_load_n(&c->v, __ATOMIC_RELAXED);
}
static inline void met_set(met_gauge_t *g, int64_t v)
{
    __atomic_store_n(&g->v, v, __ATOMIC_RELAXED);
}
static inline void met_add(met_gauge_t *g, int64_t d)
{
    __atomic_fetch_add(&g->v, d, __ATOMIC_RELAXED);
}
static inline int64_t met_gauge_get(const met_gauge_t *g)
{
    return __atomic_load_n(&g->v, __ATOMIC_RELAXED);
}
void met_observe(met_hist_t *h, double v);
/* Value at quantile q (0..1) estimated from the buckets (upper bound of the
 * bucket holding it); 0 when empty. */
double met_hist_quantile(const met_hist_t *h, double q);
uint64_t met_hist_count(const met_hist_t *h);

/* Appends the whole registry in Prometheus text format 0.0.4: each family,
 * then (with legacy on) its legacy twin if met_names.h gives it one. */
int met_render(met_registry_t *r, buf_t *out);

#endif
