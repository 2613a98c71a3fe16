/* be_p2c: power of two choices. Two distinct random candidates, the one
 * with the lower leastconn score wins. Needs no shared cursor, and several
 * lbs that cannot see each other's choices herd less than with a strict
 * minimum. */
#include "be_int.h"

static be_t *be_p2c_nth(be_table_t *t, be_t *const *ex, int nex, size_t k)
{
    for (size_t i = 0; i < bei_count(t); i++) {
        be_t *b = bei_at(t, i);
        if (bei_candidate(b, ex, nex) && k-- == 0)
            return b;
    }
    return NULL;
}

/* Caller holds the read lock. The candidates are counted, then two drawn by
 * rank: a state change between the scans costs one of them at most. */
static be_t *be_p2c_pick(be_table_t *t, void *ctx, be_t *const *ex, int nex, uint64_t now)
{
    size_t u = 0;
    for (size_t i = 0; i < bei_count(t); i++)
        u += bei_candidate(bei_at(t, i), ex, nex);
    if (u == 0)
        return NULL;
    if (u == 1)
        return be_p2c_nth(t, ex, nex, 0);
    size_t r1 = bei_rand() % u, r2 = bei_rand() % (u - 1);
    if (r2 >= r1)
        r2++;
    be_t *a = be_p2c_nth(t, ex, nex, r1);
    be_t *b = be_p2c_nth(t, ex, nex, r2);
    if (!a || !b) /* state changed between the two scans */
        return a ? a : b;
    if (bei_score_less(bei_conns(b) + 1, bei_eff_weight(t, b, now), bei_conns(a) + 1,
                       bei_eff_weight(t, a, now)))
        return bei_slowstart_gate(t, b, a, now);
    return bei_slowstart_gate(t, a, b, now);
}

const be_algo_t be_algo_p2c = {.name = "p2c", .pick = be_p2c_pick};
