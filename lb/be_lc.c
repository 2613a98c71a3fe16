/* be_lc: leastconn and leastload, the lowest score among usable backends.
 *
 * A backend's score is (conns + 1) / effective weight for leastconn and
 * (conns + BE_LOAD_FACTOR * load + 1) / effective weight for leastload,
 * compared exactly with integers (be_int.h). The scan starts at a rotating
 * index so that ties go round instead of always to the first backend; the
 * runner-up is kept for slow start's gate. */
#include <stdlib.h>

#include "be_int.h"

/* leastload counts each running or queued evaluation as this many idle
 * connections: a socket running code costs the worker a CPU slot, an idle
 * editor costs almost nothing. */
#define BE_LOAD_FACTOR 4

/* The tie-break rotation: every pick on every thread bumps it, so it has a
 * cache line of its own. */
struct be_lc {
    _Alignas(BE_CACHELINE) unsigned rot;
};

static int be_lc_init(be_table_t *t, void **ctx)
{
    struct be_lc *c = aligned_alloc(BE_CACHELINE, sizeof(*c));
    if (c == NULL)
        return -1;
    c->rot = 0;
    *ctx = c;
    return 0;
}

static void be_lc_free(void *ctx)
{
    free(ctx);
}

/* Lowest (conns [+ K*load] + 1) / weight among candidates. Caller holds the
 * read lock. */
static be_t *be_lc_pick_least(be_table_t *t, struct be_lc *c, be_t *const *ex, int nex,
                              uint64_t now, int with_load)
{
    size_t n = bei_count(t);
    if (n == 0)
        return NULL;
    size_t start = __atomic_fetch_add(&c->rot, 1, __ATOMIC_RELAXED) % n;
    be_t *best = NULL, *second = NULL;
    int64_t bnum = 0, bew = 1, snum = 0, sew = 1;
    for (size_t i = 0; i < n; i++) {
        be_t *b = bei_at(t, (start + i) % n);
        if (!bei_candidate(b, ex, nex))
            continue;
        int64_t num = bei_conns(b) + 1;
        if (with_load)
            num += BE_LOAD_FACTOR * bei_load(b);
        int64_t ew = bei_eff_weight(t, b, now);
        if (!best || bei_score_less(num, ew, bnum, bew)) {
            second = best;
            snum = bnum;
            sew = bew;
            best = b;
            bnum = num;
            bew = ew;
        } else if (!second || bei_score_less(num, ew, snum, sew)) {
            second = b;
            snum = num;
            sew = ew;
        }
    }
    return bei_slowstart_gate(t, best, second, now);
}

static be_t *be_lc_pick(be_table_t *t, void *ctx, be_t *const *ex, int nex, uint64_t now)
{
    return be_lc_pick_least(t, ctx, ex, nex, now, 0);
}

static be_t *be_ll_pick(be_table_t *t, void *ctx, be_t *const *ex, int nex, uint64_t now)
{
    return be_lc_pick_least(t, ctx, ex, nex, now, 1);
}

/* A scan needs to be told nothing: no take, release or update. */
const be_algo_t be_algo_leastconn = {
    .name = "leastconn", .init = be_lc_init, .free = be_lc_free, .pick = be_lc_pick};
const be_algo_t be_algo_leastload = {
    .name = "leastload", .init = be_lc_init, .free = be_lc_free, .pick = be_ll_pick};
