/* met: counters, gauges and histograms rendered as Prometheus text (see met.h).
 *
 * Series are grouped into families by name so that each name gets exactly one
 * HELP/TYPE block, as the text format requires. Registration and rendering
 * take the registry mutex; updates never do. */
#include "met.h"
#include "met_names.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum met_type { MET_COUNTER, MET_GAUGE, MET_GAUGE_FN, MET_HIST };

struct met_hist {
    size_t nbounds;
    double *bounds;
    /* nbounds + 1 non-cumulative counts; the last one is the +Inf bucket.
     * The total count is their sum, which keeps _count equal to the +Inf
     * bucket in every rendering even while other threads observe. */
    uint64_t *buckets;
    /* The sum as a double's bit pattern, updated with a CAS loop because
     * there is no portable atomic add for doubles. */
    uint64_t sum_bits;
};

struct met_series {
    struct met_series *next;
    char *labels; /* NULL when unlabelled */
    union {
        met_counter_t counter;
        met_gauge_t gauge;
        struct {
            double (*fn)(void *ud);
            void *ud;
        } fn;
        met_hist_t hist;
    } u;
};

struct met_family {
    struct met_family *next;
    char *name;
    char *help;
    enum met_type type;
    struct met_series *series, **series_tail;
};

struct met_registry {
    pthread_mutex_t lock;
    int legacy; /* render MET_LEGACY_NAMES too */
    struct met_family *families, **families_tail;
};

met_registry_t *met_create(void)
{
    met_registry_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->families_tail = &r->families;
    r->legacy = 1;
    return r;
}

void met_set_legacy(met_registry_t *r, int on)
{
    r->legacy = on != 0;
}

int met_legacy(const met_registry_t *r)
{
    return r->legacy;
}

static const struct met_alias {
    const char *name, *legacy;
    double factor;
} met_aliases[] = {
#define MET_ALIAS(n, l, f) {n, l, f},
    MET_LEGACY_NAMES(MET_ALIAS)
#undef MET_ALIAS
};

/* The legacy twin of the family called name, or NULL. */
static const struct met_alias *met_alias_of(const char *name)
{
    for (size_t i = 0; i < sizeof(met_aliases) / sizeof(met_aliases[0]); i++) {
        if (strcmp(met_aliases[i].name, name) == 0)
            return &met_aliases[i];
    }
    return NULL;
}

static void met_series_free(struct met_series *s, enum met_type type)
{
    if (type == MET_HIST) {
        free(s->u.hist.bounds);
        free(s->u.hist.buckets);
    }
    free(s->labels);
    free(s);
}

void met_free(met_registry_t *r)
{
    if (r == NULL)
        return;
    struct met_family *f = r->families;
    while (f != NULL) {
        struct met_family *fn = f->next;
        struct met_series *s = f->series;
        while (s != NULL) {
            struct met_series *sn = s->next;
            met_series_free(s, f->type);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static int met_valid_name(const char *name)
{
    if (name == NULL || *name == '\0')
        return 0;
    for (const char *p = name; *p; p++) {
        int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':';
        if (!alpha && !(p != name && *p >= '0' && *p <= '9'))
            return 0;
    }
    return 1;
}

static int met_same_labels(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Finds or creates the series name{labels} of the given type. Returns it with
 * *created telling whether it is new, or NULL when the name is invalid, the
 * name is already used with another type, or memory ran out. Caller holds the
 * registry lock. */
static struct met_series *met_lookup(met_registry_t *r, const char *name, const char *labels,
                                     const char *help, enum met_type type, int *created)
{
    struct met_family *f;
    struct met_series *s = NULL;
    *created = 0;
    if (!met_valid_name(name))
        return NULL;
    for (f = r->families; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0)
            break;
    }
    if (f != NULL) {
        /* A gauge and a computed gauge render the same way, yet keeping them
         * apart keeps met_gauge() from handing out a fn series. */
        if (f->type != type)
            return NULL;
        for (s = f->series; s != NULL; s = s->next) {
            if (met_same_labels(s->labels, labels))
                return s;
        }
    } else {
        f = calloc(1, sizeof(*f));
        if (f == NULL)
            return NULL;
        f->name = strdup(name);
        f->help = help ? strdup(help) : NULL;
        if (f->name == NULL || (help != NULL && f->help == NULL)) {
            free(f->name);
            free(f->help);
            free(f);
            return NULL;
        }
        f->type = type;
        f->series_tail = &f->series;
        *r->families_tail = f;
        r->families_tail = &f->next;
    }
    if (f->help == NULL && help != NULL)
        f->help = strdup(help); /* best effort: a missing HELP is harmless */

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (labels != NULL && *labels != '\0') {
        s->labels = strdup(labels);
        if (s->labels == NULL) {
            free(s);
            return NULL;
        }
    }
    /* Linking is left to the caller so a half-built histogram is never seen. */
    *created = 1;
    return s;
}

/* Appends a new series to its family (found by name; it exists). */
static void met_link(met_registry_t *r, const char *name, struct met_series *s)
{
    for (struct met_family *f = r->families; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            *f->series_tail = s;
            f->series_tail = &s->next;
            return;
        }
    }
}

met_counter_t *met_counter(met_registry_t *r, const char *name, const char *labels,
                           const char *help)
{
    int created;
    pthread_mutex_lock(&r->lock);
    struct met_series *s = met_lookup(r, name, labels, help, MET_COUNTER, &created);
    if (s != NULL && created)
        met_link(r, name, s);
    pthread_mutex_unlock(&r->lock);
    return s ? &s->u.counter : NULL;
}

met_gauge_t *met_gauge(met_registry_t *r, const char *name, const char *labels, const char *help)
{
    int created;
    pthread_mutex_lock(&r->lock);
    struct met_series *s = met_lookup(r, name, labels, help, MET_GAUGE, &created);
    if (s != NULL && created)
        met_link(r, name, s);
    pthread_mutex_unlock(&r->lock);
    return s ? &s->u.gauge : NULL;
}

/* Registering the same name and labels again replaces the function. */
int met_gauge_fn(met_registry_t *r, const char *name, const char *labels, const char *help,
                 double (*fn)(void *ud), void *ud)
{
    int created;
    if (fn == NULL)
        return -1;
    pthread_mutex_lock(&r->lock);
    struct met_series *s = met_lookup(r, name, labels, help, MET_GAUGE_FN, &created);
    if (s != NULL) {
        s->u.fn.fn = fn;
        s->u.fn.ud = ud;
        if (created)
            met_link(r, name, s);
    }
    pthread_mutex_unlock(&r->lock);
    return s ? 0 : -1;
}

/* Bounds must be finite and strictly ascending. Registering the same series
 * again returns it if the bounds match, NULL otherwise. */
met_hist_t *met_hist(met_registry_t *r, const char *name, const char *labels, const char *help,
                     const double *bounds, size_t nbounds)
{
    int created;
    met_hist_t *h = NULL;
    for (size_t i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return NULL;
    }
    pthread_mutex_lock(&r->lock);
    struct met_series *s = met_lookup(r, name, labels, help, MET_HIST, &created);
    if (s == NULL)
        goto out;
    if (!created) {
        if (s->u.hist.nbounds == nbounds &&
            (nbounds == 0 || memcmp(s->u.hist.bounds, bounds, nbounds * sizeof(double)) == 0))
            h = &s->u.hist;
        goto out;
    }
    s->u.hist.nbounds = nbounds;
    s->u.hist.bounds = malloc((nbounds ? nbounds : 1) * sizeof(double));
    s->u.hist.buckets = calloc(nbounds + 1, sizeof(uint64_t));
    if (s->u.hist.bounds == NULL || s->u.hist.buckets == NULL) {
        met_series_free(s, MET_HIST);
        goto out;
    }
    if (nbounds > 0)
        memcpy(s->u.hist.bounds, bounds, nbounds * sizeof(double));
    double zero = 0.0;
    memcpy(&s->u.hist.sum_bits, &zero, sizeof(zero));
    met_link(r, name, s);
    h = &s->u.hist;
out:
    pthread_mutex_unlock(&r->lock);
    return h;
}

/* Lock-free: any number of threads may observe the same histogram. NaN is
 * dropped because one NaN would poison _sum forever. */
void met_observe(met_hist_t *h, double v)
{
    if (isnan(v))
        return;
    /* Binary search for the first bound >= v ("le" is inclusive). */
    size_t lo = 0, hi = h->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    __atomic_fetch_add(&h->buckets[lo], 1, __ATOMIC_RELAXED);

    uint64_t old = __atomic_load_n(&h->sum_bits, __ATOMIC_RELAXED), nw;
    do {
        double d;
        memcpy(&d, &old, sizeof(d));
        d += v;
        memcpy(&nw, &d, sizeof(d));
    } while (!__atomic_compare_exchange_n(&h->sum_bits, &old, nw, 1, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}

uint64_t met_hist_count(const met_hist_t *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= h->nbounds; i++)
        n += __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
    return n;
}

static double met_hist_sum(const met_hist_t *h)
{
    uint64_t bits = __atomic_load_n(&h->sum_bits, __ATOMIC_RELAXED);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

/* The rank-th smallest observation lies in the first bucket whose cumulative
 * count reaches rank; its upper bound is the estimate. Past the last finite
 * bound the largest finite bound is the best that can be said (as Prometheus's
 * histogram_quantile does). */
double met_hist_quantile(const met_hist_t *h, double q)
{
    uint64_t total = met_hist_count(h);
    if (total == 0)
        return 0;
    if (!(q >= 0))
        q = 0; /* also catches NaN */
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank < 1)
        rank = 1;
    /* Counts only grow, so re-reading them below still reaches rank even if
     * other threads observed meanwhile. */
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
        if (cum >= rank)
            return h->bounds[i];
    }
    return h->nbounds ? h->bounds[h->nbounds - 1] : INFINITY;
}

/* Formats a sample value the way the text format spells specials. */
static const char *met_fmt(double v, char *out, size_t outlen)
{
    if (isnan(v))
        snprintf(out, outlen, "NaN");
    else if (isinf(v))
        snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
    else
        snprintf(out, outlen, "%.15g", v);
    return out;
}

/* Appends HELP text with backslash and newline escaped, per the format. */
static int met_put_help(buf_t *out, const char *help)
{
    for (const char *p = help; *p; p++) {
        int rc;
        if (*p == '\\')
            rc = buf_append(out, "\\\\", 2);
        else if (*p == '\n')
            rc = buf_append(out, "\\n", 2);
        else
            rc = buf_append(out, p, 1);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Appends "{labels}" or nothing for an unlabelled series. */
static int met_put_labels(buf_t *out, const char *labels)
{
    if (labels == NULL)
        return 0;
    return buf_printf(out, "{%s}", labels);
}

static int met_render_hist(buf_t *out, const char *name, const struct met_series *s, double factor)
{
    const met_hist_t *h = &s->u.hist;
    const char *sep = s->labels ? "," : "";
    const char *lab = s->labels ? s->labels : "";
    char num[64];
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
        const char *le = i < h->nbounds ? met_fmt(h->bounds[i] * factor, num, sizeof(num)) : "+Inf";
        if (buf_printf(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, lab, sep, le,
                       (unsigned long long)cum) < 0)
            return -1;
    }
    if (buf_printf(out, "%s_sum", name) < 0 || met_put_labels(out, s->labels) < 0 ||
        buf_printf(out, " %s\n", met_fmt(met_hist_sum(h) * factor, num, sizeof(num))) < 0)
        return -1;
    /* cum is the +Inf bucket just printed: _count always agrees with it. */
    if (buf_printf(out, "%s_count", name) < 0 || met_put_labels(out, s->labels) < 0 ||
        buf_printf(out, " %llu\n", (unsigned long long)cum) < 0)
        return -1;
    return 0;
}

/* One family under the given name and help, every value times factor. */
static int met_render_family(buf_t *out, const struct met_family *f, const char *name,
                             const char *help, double factor)
{
    static const char *const types[] = {"counter", "gauge", "gauge", "histogram"};
    char num[64];
    if (help != NULL) {
        if (buf_printf(out, "# HELP %s ", name) < 0 || met_put_help(out, help) < 0 ||
            buf_append(out, "\n", 1) < 0)
            return -1;
    }
    if (buf_printf(out, "# TYPE %s %s\n", name, types[f->type]) < 0)
        return -1;
    for (const struct met_series *s = f->series; s != NULL; s = s->next) {
        if (f->type == MET_HIST) {
            if (met_render_hist(out, name, s, factor) < 0)
                return -1;
            continue;
        }
        if (buf_append_str(out, name) < 0 || met_put_labels(out, s->labels) < 0)
            return -1;
        double v;
        switch (f->type) {
        case MET_COUNTER:
            v = (double)met_counter_get(&s->u.counter);
            break;
        case MET_GAUGE:
            v = (double)met_gauge_get(&s->u.gauge);
            break;
        default:
            v = s->u.fn.fn(s->u.fn.ud);
            break;
        }
        int w;
        /* Integers as integers: counters past 2^53 keep every digit. */
        if (factor == 1 && f->type == MET_COUNTER)
            w = buf_printf(out, " %llu\n", (unsigned long long)met_counter_get(&s->u.counter));
        else if (factor == 1 && f->type == MET_GAUGE)
            w = buf_printf(out, " %lld\n", (long long)met_gauge_get(&s->u.gauge));
        else
            w = buf_printf(out, " %s\n", met_fmt(v * factor, num, sizeof(num)));
        if (w < 0)
            return -1;
    }
    return 0;
}

/* Renders under the registry lock so registration cannot change the lists
 * midway; values are read atomically and may move while we render. Gauge
 * functions run under the lock, so they must not call back into the registry. */
int met_render(met_registry_t *r, buf_t *out)
{
    int rc = -1;
    pthread_mutex_lock(&r->lock);
    for (const struct met_family *f = r->families; f != NULL; f = f->next) {
        if (f->series == NULL)
            continue;
        if (met_render_family(out, f, f->name, f->help, 1) < 0)
            goto out;
        const struct met_alias *al = r->legacy ? met_alias_of(f->name) : NULL;
        if (al != NULL) {
            char help[512];
            snprintf(help, sizeof(help), "Deprecated: %s%s; --metrics-legacy=no drops it.%s%s",
                     f->name, al->factor == 1000 ? " in milliseconds" : " under its old name",
                     al->factor == 1 && f->help ? " " : "",
                     al->factor == 1 && f->help ? f->help : "");
            if (met_render_family(out, f, al->legacy, help, al->factor) < 0)
                goto out;
        }
    }
    rc = 0;
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}
