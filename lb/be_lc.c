/* be_lc: leastconn and leastload, the lowest score among usable backends.
 *
 * A backend's score is (conns + 1) / effective weight for leastconn and
 * (conns + BE_LOAD_FACTOR * load + 1) / effective weight for leastload,
 * compared exactly with integers (be_int.h).
 *
 * The pick is O(log n), as HAProxy's lb_fwlc keeps its servers in a tree
 * keyed by score: every backend is a leaf of a tournament tree whose inner
 * nodes hold the better of their two children, so the root is the best
 * backend and the runner-up (for slow start's gate) is the best of the
 * subtrees that lost to it on its way up. A leaf's key is refreshed, and
 * its path replayed, by the take, release and update hooks, i.e. whenever
 * one of its inputs changes (this lb's count, the worker's published
 * counts, its state, joining or leaving). Equal scores go to the leaf taken
 * longest ago, so ties go round, and among leaves never taken in an order
 * of this table's own, so that several lbs do not walk the fleet in step.
 * At 5,000 backends the scan this replaces took about 65 us of CPU per
 * pick, the tree 0.4 us (README.md, "Fleet scale").
 *
 * Two cases keep the scan's exact answer instead:
 *   - a backend in slow start has a weight that grows with the clock, which
 *     no stored key can follow: it stays out of the tree, on a short list
 *     that each pick scans, until a pick finds its window over;
 *   - a pick that excludes backends (a retry) or whose tree winner turns out
 *     unusable or removed before its hook ran scans the table, from a
 *     rotating start so that ties go round there too.
 * The tree has its own mutex: take and release come from any proxy thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "be_int.h"

/* leastload counts each running or queued evaluation as this many idle
 * connections: a socket running code costs the worker a CPU slot, an idle
 * editor costs almost nothing. */
#define BE_LOAD_FACTOR 4

#define LC_NONE UINT32_MAX

/* A leaf's key as of its last hook. live 0: not in the running (empty,
 * unusable, or on the slow-start list). */
struct lc_key {
    int64_t num, ew;
    /* Older wins a tie: the take that last touched it in the high half, a
     * random low half drawn when it joined. Never taken, a backend is
     * older than any taken one, and those are ordered by chance: lbs that
     * discover the same workers in the same order would otherwise walk them
     * in step and send their first connections to the same ones. */
    uint64_t stamp;
    int live;
};

struct be_lc {
    /* The scan's tie-break rotation: bumped by every scan on every thread,
     * so it has a cache line of its own. */
    _Alignas(BE_CACHELINE) unsigned rot;
    _Alignas(BE_CACHELINE) pthread_mutex_t lock;
    int with_load;
    uint32_t cap;       /* leaves, a power of two (0 before the first) */
    uint32_t used;      /* slots ever handed out; below are free or taken */
    be_t **leaf;        /* slot -> backend, NULL when free */
    struct lc_key *key; /* slot -> key */
    uint32_t *win;      /* node (1..2cap-1) -> winning slot or LC_NONE */
    uint32_t *freed;    /* free slots below used */
    uint32_t nfreed;
    uint32_t *ramp; /* slots in slow start, scanned by each pick */
    unsigned char *inramp;
    uint32_t nramp;
    uint64_t seq;  /* take counter, for stamps */
    uint64_t salt; /* this table's chance, for the stamps' low halves */
};

/* splitmix64's finaliser: a well-spread 64-bit hash. */
static uint64_t lc_mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- the scan (exclusions, and the fallback) ----------------------------------- */

static int64_t lc_num(const be_t *b, int with_load)
{
    int64_t num = bei_conns(b) + 1;
    if (with_load)
        num += BE_LOAD_FACTOR * bei_load(b);
    return num;
}

/* A candidate of a pick, with its score's parts. */
typedef struct lc_cand {
    be_t *b;
    int64_t num, ew;
} lc_cand_t;

/* Keeps the best and the runner-up of the candidates offered (the
 * runner-up is what slow start may pick instead). */
static void lc_offer(lc_cand_t *best, lc_cand_t *second, be_t *b, int64_t num, int64_t ew)
{
    lc_cand_t n = {b, num, ew};
    if (!best->b || bei_score_less(num, ew, best->num, best->ew)) {
        *second = *best;
        *best = n;
    } else if (!second->b || bei_score_less(num, ew, second->num, second->ew)) {
        *second = n;
    }
}

/* Lowest (conns [+ K*load] + 1) / weight among candidates, from a rotating
 * start. Caller holds the table's read lock. */
static be_t *lc_scan(be_table_t *t, struct be_lc *c, be_t *const *ex, int nex, uint64_t now)
{
    size_t n = bei_count(t);
    if (n == 0)
        return NULL;
    size_t start = __atomic_fetch_add(&c->rot, 1, __ATOMIC_RELAXED) % n;
    lc_cand_t best = {NULL, 0, 1}, second = {NULL, 0, 1};
    for (size_t i = 0; i < n; i++) {
        be_t *b = bei_at(t, (start + i) % n);
        if (!bei_candidate(b, ex, nex))
            continue;
        lc_offer(&best, &second, b, lc_num(b, c->with_load), bei_eff_weight(t, b, now));
    }
    return bei_slowstart_gate(t, best.b, second.b, now);
}

/* ---- the tree (c->lock held) --------------------------------------------------- */

/* Slot a beats slot b: lower score, or as low and taken longer ago. */
static int lc_beats(const struct be_lc *c, uint32_t a, uint32_t b)
{
    if (a == LC_NONE || !c->key[a].live)
        return 0;
    if (b == LC_NONE || !c->key[b].live)
        return 1;
    const struct lc_key *ka = &c->key[a], *kb = &c->key[b];
    if (bei_score_less(ka->num, ka->ew, kb->num, kb->ew))
        return 1;
    if (bei_score_less(kb->num, kb->ew, ka->num, ka->ew))
        return 0;
    return ka->stamp < kb->stamp;
}

static uint32_t lc_better(const struct be_lc *c, uint32_t a, uint32_t b)
{
    if (lc_beats(c, a, b))
        return a;
    return b != LC_NONE && c->key[b].live ? b : LC_NONE;
}

/* Replays slot s's way up to the root. */
static void lc_fix(struct be_lc *c, uint32_t s)
{
    uint32_t i = c->cap + s;
    c->win[i] = c->key[s].live ? s : LC_NONE;
    for (i /= 2; i >= 1; i /= 2)
        c->win[i] = lc_better(c, c->win[2 * i], c->win[2 * i + 1]);
}

/* The slot of b, or LC_NONE when b has none (removed, or never seen). */
static uint32_t lc_slot(const struct be_lc *c, const be_t *b)
{
    uint32_t s = b->algo_slot;
    return s < c->used && c->leaf[s] == b ? s : LC_NONE;
}

/* Doubles the leaves (at least 16) and replays the whole tree. */
static int lc_grow(struct be_lc *c)
{
    uint32_t cap = c->cap ? c->cap * 2 : 16;
    be_t **leaf = realloc(c->leaf, cap * sizeof(*leaf));
    if (leaf)
        c->leaf = leaf;
    struct lc_key *key = leaf ? realloc(c->key, cap * sizeof(*key)) : NULL;
    if (key)
        c->key = key;
    uint32_t *freed = key ? realloc(c->freed, cap * sizeof(*freed)) : NULL;
    if (freed)
        c->freed = freed;
    uint32_t *ramp = freed ? realloc(c->ramp, cap * sizeof(*ramp)) : NULL;
    if (ramp)
        c->ramp = ramp;
    unsigned char *inramp = ramp ? realloc(c->inramp, cap) : NULL;
    if (inramp)
        c->inramp = inramp;
    uint32_t *win = inramp ? malloc(2 * (size_t)cap * sizeof(*win)) : NULL;
    if (win == NULL)
        return -1;
    for (uint32_t s = c->cap; s < cap; s++) {
        c->leaf[s] = NULL;
        c->key[s] = (struct lc_key){0};
        c->inramp[s] = 0;
    }
    free(c->win);
    c->win = win;
    c->cap = cap;
    for (uint32_t s = 0; s < cap; s++)
        win[cap + s] = c->key[s].live ? s : LC_NONE;
    for (uint32_t i = cap - 1; i >= 1; i--)
        win[i] = lc_better(c, win[2 * i], win[2 * i + 1]);
    return 0;
}

static void lc_ramp_del(struct be_lc *c, uint32_t s)
{
    if (!c->inramp[s])
        return;
    c->inramp[s] = 0;
    for (uint32_t i = 0; i < c->nramp; i++)
        if (c->ramp[i] == s) {
            c->ramp[i] = c->ramp[--c->nramp];
            break;
        }
}

/* Reads b's inputs into its key and replays its path. A backend in slow
 * start (by the clock now) goes on the list instead; only a pick takes it
 * off, by the pick's own clock. */
static void lc_refresh(be_table_t *t, struct be_lc *c, uint32_t s, uint64_t now)
{
    be_t *b = c->leaf[s];
    if (!c->inramp[s] && bei_ramp(t, b, now) < 1000) {
        c->inramp[s] = 1;
        c->ramp[c->nramp++] = s;
    }
    struct lc_key *k = &c->key[s];
    k->live = !c->inramp[s] && bei_usable(b);
    k->num = lc_num(b, c->with_load);
    k->ew = bei_eff_weight(t, b, now);
    lc_fix(c, s);
}

/* ---- hooks ----------------------------------------------------------------------- */

static int lc_init_common(be_table_t *t, void **ctx, int with_load)
{
    struct be_lc *c = aligned_alloc(BE_CACHELINE, sizeof(*c));
    if (c == NULL)
        return -1;
    memset(c, 0, sizeof(*c));
    c->with_load = with_load;
    /* Not bei_rand(): a seeded test's sequence stays its own. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->salt = lc_mix((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uintptr_t)c ^
                     (uint64_t)getpid() << 16);
    /* The scan's rotation too starts at random, for the same reason. */
    c->rot = (unsigned)c->salt;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return -1;
    }
    *ctx = c;
    return 0;
}

static int be_lc_init(be_table_t *t, void **ctx)
{
    return lc_init_common(t, ctx, 0);
}

static int be_ll_init(be_table_t *t, void **ctx)
{
    return lc_init_common(t, ctx, 1);
}

static void be_lc_free(void *ctx)
{
    struct be_lc *c = ctx;
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c->leaf);
    free(c->key);
    free(c->win);
    free(c->freed);
    free(c->ramp);
    free(c->inramp);
    free(c);
}

/* b joined, left, changed state or got new counts. Without memory for a
 * new leaf it stays out of the tree, and picks scan the table (tree_ok). */
static void be_lc_update(be_table_t *t, void *ctx, be_t *b)
{
    struct be_lc *c = ctx;
    pthread_mutex_lock(&c->lock);
    uint32_t s = lc_slot(c, b);
    if (be_removed(b)) {
        if (s != LC_NONE) {
            lc_ramp_del(c, s);
            c->leaf[s] = NULL;
            c->key[s] = (struct lc_key){0};
            lc_fix(c, s);
            c->freed[c->nfreed++] = s;
        }
        goto out;
    }
    if (s == LC_NONE) {
        if (c->nfreed > 0) {
            s = c->freed[--c->nfreed];
        } else {
            if (c->used == c->cap && lc_grow(c) < 0)
                goto out;
            s = c->used++;
        }
        c->leaf[s] = b;
        c->key[s] = (struct lc_key){.stamp = lc_mix(c->salt ^ (uintptr_t)b) & 0xffffffffu};
        b->algo_slot = s;
    }
    lc_refresh(t, c, s, be_now_ms());
out:
    pthread_mutex_unlock(&c->lock);
}

static void be_lc_touch(be_table_t *t, struct be_lc *c, be_t *b, int taken)
{
    pthread_mutex_lock(&c->lock);
    uint32_t s = lc_slot(c, b);
    if (s != LC_NONE) {
        if (taken)
            c->key[s].stamp = ++c->seq << 32 | (c->key[s].stamp & 0xffffffffu);
        lc_refresh(t, c, s, be_now_ms());
    }
    pthread_mutex_unlock(&c->lock);
}

static void be_lc_take(be_table_t *t, void *ctx, be_t *b)
{
    be_lc_touch(t, ctx, b, 1);
}

static void be_lc_release(be_table_t *t, void *ctx, be_t *b)
{
    be_lc_touch(t, ctx, b, 0);
}

/* The runner-up to the root's winner w: the best of the subtrees w beat on
 * its way up. */
static uint32_t lc_second(const struct be_lc *c, uint32_t w)
{
    uint32_t best = LC_NONE;
    for (uint32_t i = c->cap + w; i > 1; i /= 2)
        best = lc_better(c, best, c->win[i ^ 1]);
    return best;
}

/* Caller holds the table's read lock. */
static be_t *be_lc_pick(be_table_t *t, void *ctx, be_t *const *ex, int nex, uint64_t now)
{
    struct be_lc *c = ctx;
    if (nex > 0)
        return lc_scan(t, c, ex, nex, now);
    pthread_mutex_lock(&c->lock);
    /* Slow starts that are over by this pick's clock join the tree. */
    for (uint32_t i = 0; i < c->nramp;) {
        uint32_t s = c->ramp[i];
        if (bei_ramp(t, c->leaf[s], now) < 1000) {
            i++;
            continue;
        }
        lc_ramp_del(c, s); /* moves the last entry to i */
        lc_refresh(t, c, s, now);
    }
    /* Every backend of the table has a leaf unless memory ran out. */
    if (c->cap == 0 || c->used - c->nfreed != bei_count(t)) {
        pthread_mutex_unlock(&c->lock);
        return lc_scan(t, c, ex, nex, now);
    }
    uint32_t w = c->win[1], r = w == LC_NONE ? LC_NONE : lc_second(c, w);
    be_t *best = w == LC_NONE ? NULL : c->leaf[w];
    be_t *second = r == LC_NONE ? NULL : c->leaf[r];
    /* A hook not run yet (a state change, a removal): the scan knows. */
    if ((best && (!bei_usable(best) || be_removed(best))) ||
        (second && (!bei_usable(second) || be_removed(second)))) {
        pthread_mutex_unlock(&c->lock);
        return lc_scan(t, c, ex, nex, now);
    }
    lc_cand_t cb = {best, best ? c->key[w].num : 0, best ? c->key[w].ew : 1};
    lc_cand_t cs = {second, second ? c->key[r].num : 0, second ? c->key[r].ew : 1};
    for (uint32_t i = 0; i < c->nramp; i++) {
        be_t *b = c->leaf[c->ramp[i]];
        if (!bei_usable(b))
            continue;
        lc_offer(&cb, &cs, b, lc_num(b, c->with_load), bei_eff_weight(t, b, now));
    }
    pthread_mutex_unlock(&c->lock);
    return bei_slowstart_gate(t, cb.b, cs.b, now);
}

/* The two differ only in what a connection counts for (lc_init_common's
 * with_load). */
#define LC_ALGO(nm, initfn)                                                                        \
    {                                                                                              \
        .name = nm, .init = initfn, .free = be_lc_free, .pick = be_lc_pick, .take = be_lc_take,    \
        .release = be_lc_release, .update = be_lc_update                                           \
    }
const be_algo_t be_algo_leastconn = LC_ALGO("leastconn", be_lc_init);
const be_algo_t be_algo_leastload = LC_ALGO("leastload", be_ll_init);
