/* be_rr: roundrobin, plain rotation over usable backends, ignoring weights
 * and load: the old behaviour, kept as the benchmark baseline. */
#include <stdlib.h>

#include "be_int.h"

/* The cursor: every pick on every thread bumps it, so it has a cache line
 * of its own. */
struct be_rr {
    _Alignas(BE_CACHELINE) unsigned next;
};

static int be_rr_init(be_table_t *t, void **ctx)
{
    struct be_rr *c = aligned_alloc(BE_CACHELINE, sizeof(*c));
    if (c == NULL)
        return -1;
    c->next = 0;
    *ctx = c;
    return 0;
}

static void be_rr_free(void *ctx)
{
    free(ctx);
}

/* The next candidate from the cursor on. Caller holds the read lock. */
static be_t *be_rr_pick(be_table_t *t, void *ctx, be_t *const *ex, int nex, uint64_t now)
{
    struct be_rr *c = ctx;
    size_t n = bei_count(t);
    if (n == 0)
        return NULL;
    size_t start = __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED) % n;
    for (size_t i = 0; i < n; i++) {
        be_t *b = bei_at(t, (start + i) % n);
        if (bei_candidate(b, ex, nex))
            return b;
    }
    return NULL;
}

const be_algo_t be_algo_roundrobin = {
    .name = "roundrobin", .init = be_rr_init, .free = be_rr_free, .pick = be_rr_pick};
