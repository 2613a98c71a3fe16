/* be_aff: session affinity over the backend table (the ring and the bound
 * are lb/aff.c's; this file feeds them the table's backends).
 *
 * The ring's node i is t->v[i], under the read lock always: a removal
 * renumbers the ring in place, an add rebuilds it (or, inside a batch,
 * leaves the new backend, appended at the end of v, outside the ring until
 * the batch ends: nodes below the ring's count still name the same
 * backends). Loads are the
 * balancer's global counts (bei_conns), read with relaxed atomics: a bound
 * off by a connection or two for an instant is harmless. */
#include <stdlib.h>

#include "aff.h"
#include "be_int.h"
#include "log.h"

int be_table_set_affinity(be_table_t *t, unsigned factor_milli)
{
    aff_ring_t *r = aff_ring_create();
    if (r == NULL)
        return -1;
    pthread_rwlock_wrlock(&t->lock);
    t->ring = r;
    t->aff_factor_milli = factor_milli < 1000 ? 1000 : factor_milli;
    bei_aff_rebuild(t);
    pthread_rwlock_unlock(&t->lock);
    return 0;
}

int be_table_affinity(const be_table_t *t)
{
    return t->ring != NULL;
}

void bei_aff_rebuild(be_table_t *t)
{
    if (t->ring == NULL)
        return;
    const char **ids = t->n ? malloc(t->n * sizeof(*ids)) : NULL;
    if (t->n && ids == NULL) {
        aff_ring_build(t->ring, NULL, 0);
        log_warn("affinity: out of memory rebuilding the ring: keys go by the algorithm");
        return;
    }
    for (size_t i = 0; i < t->n; i++)
        ids[i] = t->v[i]->id;
    if (aff_ring_build(t->ring, ids, t->n) < 0)
        log_warn("affinity: out of memory rebuilding the ring: keys go by the algorithm");
    free(ids);
}

void bei_aff_added(be_table_t *t)
{
    if (t->ring == NULL)
        return;
    if (t->ring_hold > 0)
        t->ring_stale = 1;
    else
        bei_aff_rebuild(t);
}

void bei_aff_removed(be_table_t *t, size_t i)
{
    if (t->ring != NULL && i < aff_ring_nodes(t->ring))
        aff_ring_remove_node(t->ring, (uint32_t)i);
}

void be_table_batch(be_table_t *t, int begin)
{
    if (begin) {
        t->ring_hold++;
        return;
    }
    if (t->ring_hold == 0 || --t->ring_hold > 0 || !t->ring_stale)
        return;
    pthread_rwlock_wrlock(&t->lock);
    bei_aff_rebuild(t);
    t->ring_stale = 0;
    pthread_rwlock_unlock(&t->lock);
}

struct be_aff_probe {
    be_table_t *t;
    be_t *const *ex;
    int nex;
    int64_t total;
    uint64_t wsum;
};

static enum aff_probe be_aff_probe(void *ctx, uint32_t node)
{
    struct be_aff_probe *p = ctx;
    if (node >= p->t->n)
        return AFF_P_DOWN;
    be_t *b = p->t->v[node];
    if (!bei_usable(b))
        return AFF_P_DOWN;
    if (bei_excluded(b, p->ex, p->nex))
        return AFF_P_EXCLUDED;
    if (!aff_within(bei_conns(b), BE_LD(&b->weight), p->total, p->wsum, p->t->aff_factor_milli))
        return AFF_P_OVERLOAD;
    return AFF_P_OK;
}

be_t *be_pick_key(be_table_t *t, const uint64_t *key, be_t *const *exclude, int nexclude, int *why,
                  int *fallback)
{
    *why = AFF_NO_KEY;
    *fallback = 1;
    if (t->ring == NULL || key == NULL)
        return be_pick(t, exclude, nexclude);
    pthread_rwlock_rdlock(&t->lock);
    struct be_aff_probe p = {t, exclude, nexclude, 0, 0};
    for (size_t i = 0; i < t->n; i++) {
        if (!bei_usable(t->v[i]))
            continue;
        p.total += bei_conns(t->v[i]);
        p.wsum += BE_LD(&t->v[i]->weight);
    }
    enum aff_why w;
    long node = aff_choose(t->ring, *key, be_aff_probe, &p, &w);
    *why = (int)w;
    *fallback = node < 0;
    be_ai_t *ai = __atomic_load_n(&t->ai, __ATOMIC_ACQUIRE);
    be_t *b = node >= 0 ? t->v[node] : ai->algo->pick(t, ai->ctx, exclude, nexclude, be_now_ms());
    if (b)
        bei_take(t, b);
    pthread_rwlock_unlock(&t->lock);
    return b;
}
