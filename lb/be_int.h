/* be_int: what the be*.c files share (the backend and table structs, the
 * state word, the helpers algorithms score with). Nothing outside be*.c and
 * be's own unit tests includes it.
 *
 * Memory layout. The first two cache lines of a backend hold what every
 * pick reads on every thread and what proxy threads write per connection;
 * what only the main thread writes (the published info, the sample history)
 * and the strings start on lines of their own, so the main thread's
 * bookkeeping never invalidates the lines proxy threads are counting on. */
#ifndef LB_BE_INT_H
#define LB_BE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "be.h"

#define BE_CACHELINE 64

/* Relaxed atomics for counters and figures that need no ordering. Private
 * to be*.c. */
#define BE_LD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define BE_ST(p, v)  __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define BE_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)

/* ---- the state word ---------------------------------------------------------
 * Every health and drain input of a backend, in one 64-bit word that only
 * be_event() changes, by compare-and-swap:
 *   bit 0        down: `fall` consecutive failures, until `rise` checks pass
 *   bit 1        check drain: the health check answered 503
 *   bit 2        remote drain: the worker announced its drain in Redis
 *   bit 3        admin drain: the operator's
 *   bits 8..15   consecutive failures (checks and passive), saturating
 *   bits 16..23  consecutive successful checks, saturating
 *   bits 32..63  changes so far (wraps): every committed word differs from
 *                the one before, so the order of changes can be told apart
 *                afterwards and no compare-and-swap mistakes an old word
 *                for the current one.
 * The state is a pure function of the word (be_word_state()). Zero is a
 * healthy backend nobody drains. */
#define BE_W_DOWN         (1ull << 0)
#define BE_W_CHECK_DRAIN  (1ull << 1)
#define BE_W_REMOTE_DRAIN (1ull << 2)
#define BE_W_ADMIN_DRAIN  (1ull << 3)
#define BE_W_FAIL_SHIFT   8
#define BE_W_OK_SHIFT     16
#define BE_W_SEQ_SHIFT    32
#define BE_W_STREAK_MAX   255u

static inline unsigned be_word_fails(uint64_t w)
{
    return (unsigned)(w >> BE_W_FAIL_SHIFT) & 0xff;
}

static inline unsigned be_word_oks(uint64_t w)
{
    return (unsigned)(w >> BE_W_OK_SHIFT) & 0xff;
}

static inline uint32_t be_word_seq(uint64_t w)
{
    return (uint32_t)(w >> BE_W_SEQ_SHIFT);
}

/* Down wins over the worker's drain (it cannot serve anyway), but a down
 * backend whose check answers 503 is alive and leaving: draining. */
static inline enum be_state be_word_state(uint64_t w)
{
    if (w & BE_W_DOWN)
        return (w & BE_W_CHECK_DRAIN) ? BE_DRAINING : BE_DOWN;
    return (w & (BE_W_CHECK_DRAIN | BE_W_REMOTE_DRAIN)) ? BE_DRAINING : BE_UP;
}

static inline int be_word_usable(uint64_t w)
{
    return (w & (BE_W_DOWN | BE_W_CHECK_DRAIN | BE_W_REMOTE_DRAIN | BE_W_ADMIN_DRAIN)) == 0;
}

/* Pure: the word after ev. Equal to w when ev changes nothing. */
uint64_t be_word_next(uint64_t w, enum be_ev ev, unsigned rise, unsigned fall);

/* be_event() that also says which word it replaced by which (both the same
 * when nothing changed): for tests that check the order of changes. */
int be_event_ex(be_table_t *t, be_t *b, enum be_ev ev, const char *why, uint64_t *before,
                uint64_t *after);

/* ---- structs ------------------------------------------------------------------ */

struct be_sample {
    uint64_t wall_ms;
    int64_t active;
};

struct be {
    /* Hot, lines 0-1: read by every pick; active, total and refs written
     * per connection by proxy threads; the rest now and then. */
    _Alignas(BE_CACHELINE) uint64_t word; /* be_event() only */
    int64_t active;                       /* connections this lb has open to it now */
    uint64_t total;                       /* connections this lb ever sent it */
    int refs;                             /* table reference + one per live connection */
    int removed;                          /* no longer in the table; freed when refs reaches 0 */
    int64_t remote_conns;                 /* from Redis: the worker's own count, all lbs */
    int64_t remote_base;                  /* this lb's `active` when the worker took remote_conns */
    int64_t load;                         /* from Redis: evaluations running + queued */
    uint64_t joined_ms;                   /* slow start's start (0 = none) */
    uint64_t down_ms;                     /* when it last went DOWN (be_now_ms), be_event() only */
    uint64_t remote_ts_ms;                /* worker's wall-clock ts_ms of remote_conns (0 = none) */
    uint64_t failures;                    /* check and passive failures seen by this lb */
    int has_remote;                       /* remote_conns is valid */
    unsigned weight;                      /* 1..256; be_set_weight() only */
    unsigned algo_slot;                   /* the algorithm's index of it (be_lc.c), its lock */

    /* Fixed at be_add(): read by proxies at connect and in logs. */
    _Alignas(BE_CACHELINE) char id[BE_ID_MAX];
    char addr_str[SOCK_ADDRSTRLEN];
    sock_addr_t addr;
    enum be_source source;

    /* Main thread only (discovery writes, the admin API reads): what the
     * worker last published beyond its counts; valid while has_remote. */
    _Alignas(BE_CACHELINE) int64_t evals_running;
    int64_t evals_queued;
    uint64_t started_ms;    /* the worker process's start (0 = not published) */
    int64_t rebalance_shed; /* websockets it closed with 1012 to rebalance */
    char version[64];       /* "" = not published */

    /* Main thread only: samples of `active` against the wall clock, to find
     * remote_base for a snapshot's ts_ms (ring, newest at hist_pos - 1). */
    _Alignas(BE_CACHELINE) struct be_sample hist[BE_HIST];
    unsigned hist_pos, hist_n;
};

/* The algorithm in use and its state. A reload may put another in place
 * (be_table_set_algo) while threads call its hooks without the lock, so the
 * table publishes the pair as one pointer and keeps a replaced one for
 * BE_AI_GRACE_MS: a hook loads the pointer and returns within microseconds,
 * so one that saw the old pair is long done by then, and reloads that flip
 * the algorithm do not pile up fleet-sized states. */
#define BE_AI_GRACE_MS 10000
typedef struct be_ai {
    const be_algo_t *algo;
    void *ctx;
    struct be_ai *next;  /* in the table's list of replaced ones */
    uint64_t retired_ms; /* when it was replaced (be_now_ms) */
} be_ai_t;

struct be_table {
    pthread_rwlock_t lock;
    be_ai_t *ai;      /* current; swapped under the write lock, read with acquire */
    be_ai_t *retired; /* replaced ones, newest first: freed after BE_AI_GRACE_MS */
    unsigned slowstart_ms;
    unsigned rise, fall; /* relaxed atomics: a reload changes them */
    be_t **v;            /* in insertion order; changed under the write lock */
    size_t n, cap;
    /* be_find()'s index by id, main thread only: open addressing with
     * linear probing, a power of two at least twice n; NULL (no memory)
     * falls back to scanning v. Discovery looks up every worker every
     * second: a scan made that quadratic in the fleet. */
    be_t **idx;
    size_t idxcap;
    be_watch_fn watch; /* told when a backend stops taking new connections */
    void *watch_arg;
    char **drained; /* admin-drained ids, main thread only (be_admin_drain) */
    size_t ndrained, capdrained;
    /* Session affinity (be_aff.c): the ring over v, kept under the write
     * lock so that its node i is always v[i]; NULL when affinity is off.
     * A removal renumbers it in place; an add rebuilds it, unless a batch
     * holds the ring (be_table_batch): then the new backends, appended to
     * v, wait outside the ring until the batch ends (ring_stale). */
    struct aff_ring *ring;
    unsigned aff_factor_milli;
    unsigned ring_hold; /* main thread only */
    unsigned ring_stale : 1;
};

/* ---- what algorithms see (be*.c only; the caller holds the read lock) ------ */

static inline size_t bei_count(const be_table_t *t)
{
    return t->n;
}

static inline be_t *bei_at(const be_table_t *t, size_t i)
{
    return t->v[i];
}

static inline int bei_usable(const be_t *b)
{
    return be_word_usable(BE_LD(&b->word));
}

static inline int64_t bei_conns(const be_t *b)
{
    if (__atomic_load_n(&b->has_remote, __ATOMIC_ACQUIRE)) {
        int64_t c = BE_LD(&b->remote_conns) + BE_LD(&b->active) - BE_LD(&b->remote_base);
        return c < 0 ? 0 : c;
    }
    int64_t a = BE_LD(&b->active);
    return a < 0 ? 0 : a;
}

static inline int64_t bei_load(const be_t *b)
{
    int64_t l = BE_LD(&b->load);
    return l > 0 ? l : 0;
}

static inline int bei_excluded(const be_t *b, be_t *const *ex, int nex)
{
    for (int i = 0; i < nex; i++)
        if (ex[i] == b)
            return 1;
    return 0;
}

static inline int bei_candidate(const be_t *b, be_t *const *ex, int nex)
{
    return bei_usable(b) && !bei_excluded(b, ex, nex);
}

/* Slow start never scales a weight below this fraction (in thousandths), so
 * a fresh worker takes connections at once instead of none. */
#define BE_SLOWSTART_MIN 100

/* How far b is through slow start, in thousandths: 1000 when it is not in
 * slow start, else from BE_SLOWSTART_MIN up to 1000 over the window. */
static inline int64_t bei_ramp(const be_table_t *t, const be_t *b, uint64_t now)
{
    uint64_t joined = BE_LD(&b->joined_ms);
    if (!t->slowstart_ms || !joined)
        return 1000;
    if (now < joined) /* joined "in the future" (clock passed by a test): just joined */
        return BE_SLOWSTART_MIN;
    if (now - joined >= t->slowstart_ms)
        return 1000;
    int64_t f = (int64_t)((now - joined) * 1000 / t->slowstart_ms);
    return f < BE_SLOWSTART_MIN ? BE_SLOWSTART_MIN : f;
}

/* Weight in thousandths, scaled down while the backend is in slow start. */
static inline int64_t bei_eff_weight(const be_table_t *t, const be_t *b, uint64_t now)
{
    unsigned bw = BE_LD(&b->weight);
    int64_t w = (int64_t)(bw ? bw : 1) * bei_ramp(t, b, now);
    return w > 0 ? w : 1;
}

/* a.num / a.ew < b.num / b.ew, exactly (scores are compared with integers:
 * numerator over effective weight, cross-multiplied). */
static inline int bei_score_less(int64_t anum, int64_t aew, int64_t bnum, int64_t bew)
{
    return (__int128)anum * bew < (__int128)bnum * aew;
}

/* This thread's generator (p2c, slow start): be_seed() seeds it. */
uint64_t bei_rand(void);
/* Slow start's cap on the share of new connections: best, or sometimes the
 * runner-up while best is further from the end of its slow start (be.c). */
be_t *bei_slowstart_gate(const be_table_t *t, be_t *best, be_t *second, uint64_t now);

/* Counts b's new connection and takes a reference, as a pick does (read
 * lock held). */
void bei_take(be_table_t *t, be_t *b);
/* Rebuilds the affinity ring over t->v (write lock held; no-op when
 * affinity is off). */
void bei_aff_rebuild(be_table_t *t);
/* v[i] was just added (write lock held): into the ring now, or at the end
 * of the batch holding it. */
void bei_aff_added(be_table_t *t);
/* v[i] was just taken out of v (write lock held). */
void bei_aff_removed(be_table_t *t, size_t i);

/* The algorithms, one file each, named by be.c's table. */
extern const be_algo_t be_algo_leastconn, be_algo_leastload; /* be_lc.c */
extern const be_algo_t be_algo_roundrobin;                   /* be_rr.c */
extern const be_algo_t be_algo_p2c;                          /* be_p2c.c */

#endif
