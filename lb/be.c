/* be: the backend table, the one writer of backend state, and the table of
 * balancing algorithms (each in a be_<name>.c of its own).
 *
 * Locking: the array of backends changes only on the main thread, under the
 * write lock; proxy threads pick under the read lock. Per-backend counters
 * are plain integers touched only with __atomic builtins, and every health
 * and drain input lives in one state word that only be_event() changes, by
 * compare-and-swap (see be_int.h), so picking never waits for the main
 * thread beyond a table change and no two writers can interleave a read and
 * a write of a backend's state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aff.h"
#include "be_int.h"
#include "log.h"

uint64_t be_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- what the algorithms share ------------------------------------------------ */

/* Per-thread generator: thread-local so that threads never contend on it;
 * seeded lazily from the thread's stack address and the clock. */
static __thread uint64_t be_rng;

void be_seed(uint64_t seed)
{
    be_rng = seed ? seed : 0x2545F4914F6CDD1Dull;
}

uint64_t bei_rand(void)
{
    uint64_t x = be_rng;
    if (x == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = ((uint64_t)(uintptr_t)&ts * 0x9E3779B97F4A7C15ull) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)gettid();
        if (x == 0)
            x = 0x2545F4914F6CDD1Dull;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    be_rng = x;
    return x;
}

/* Slow start caps the share of new connections, not only the weight. With
 * weights alone an empty backend among loaded ones still has the lowest
 * score, so leastconn would send it every new connection until it has
 * caught up: the herd that slow start is meant to prevent. So a winner
 * further from the end of its slow start than the runner-up keeps its pick
 * only with probability ramp(best) / ramp(runner-up); otherwise the runner-up
 * gets it. A fresh backend among established ones thus takes 10% of the
 * arrivals at first, growing to what leastconn gives it over the window;
 * backends that joined together (a restarted lb discovering every worker at
 * once) are not held back relative to each other. */
be_t *bei_slowstart_gate(const be_table_t *t, be_t *best, be_t *second, uint64_t now)
{
    if (best == NULL || second == NULL)
        return best;
    int64_t fb = bei_ramp(t, best, now), fs = bei_ramp(t, second, now);
    if (fb < fs && (int64_t)(bei_rand() % (uint64_t)fs) >= fb)
        return second;
    return best;
}

/* Every algorithm, by name; the first is the default. */
static const be_algo_t *const be_algos[] = {
    &be_algo_leastconn,
    &be_algo_leastload,
    &be_algo_roundrobin,
    &be_algo_p2c,
};

#define BE_AI(t) __atomic_load_n(&(t)->ai, __ATOMIC_ACQUIRE)

/* A table's algorithm with its fresh state; NULL without memory. */
static be_ai_t *be_ai_create(be_table_t *t, const be_algo_t *algo)
{
    be_ai_t *ai = calloc(1, sizeof(*ai));
    if (ai == NULL)
        return NULL;
    ai->algo = algo;
    if (algo->init && algo->init(t, &ai->ctx) < 0) {
        free(ai);
        return NULL;
    }
    return ai;
}

static void be_ai_free(be_ai_t *ai)
{
    if (ai == NULL)
        return;
    if (ai->algo->free)
        ai->algo->free(ai->ctx);
    free(ai);
}

/* Tells the algorithm in use that b joined, left or changed. */
static void be_algo_update(be_table_t *t, be_t *b)
{
    be_ai_t *ai = BE_AI(t);
    if (ai->algo->update)
        ai->algo->update(t, ai->ctx, b);
}

const be_algo_t *be_algo_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(be_algos) / sizeof(be_algos[0]); i++)
        if (strcmp(be_algos[i]->name, name) == 0)
            return be_algos[i];
    return NULL;
}

/* ---- the state word ------------------------------------------------------------ */

/* Rise and fall are applied here and nowhere else. A failure ends a drain
 * the check saw (it no longer answers 503) only once it takes the backend
 * down; a success ends it only once it brings the backend up. */
uint64_t be_word_next(uint64_t w, enum be_ev ev, unsigned rise, unsigned fall)
{
    uint64_t flags = w & 0xff;
    unsigned fails = be_word_fails(w), oks = be_word_oks(w);
    switch (ev) {
    case BE_EV_CHECK_OK:
        fails = 0;
        oks += oks < BE_W_STREAK_MAX;
        if (oks >= rise)
            flags &= ~(BE_W_DOWN | BE_W_CHECK_DRAIN);
        break;
    case BE_EV_CHECK_DRAIN: /* alive but leaving: no failure, no success */
        fails = 0;
        oks = 0;
        flags |= BE_W_CHECK_DRAIN;
        break;
    case BE_EV_CHECK_FAIL:
    case BE_EV_PASSIVE_FAIL:
        oks = 0;
        fails += fails < BE_W_STREAK_MAX;
        if (fails >= fall) {
            flags |= BE_W_DOWN;
            flags &= ~BE_W_CHECK_DRAIN;
        }
        break;
    case BE_EV_PASSIVE_OK:
        fails = 0;
        break;
    case BE_EV_REMOTE_DRAIN:
        flags |= BE_W_REMOTE_DRAIN;
        break;
    case BE_EV_REMOTE_UP:
        flags &= ~BE_W_REMOTE_DRAIN;
        break;
    case BE_EV_REMOTE_GONE:
        /* Nobody will say "up" again: health checks end the drain, after
         * rise successes, as they end a 503. */
        if (flags & BE_W_REMOTE_DRAIN) {
            flags &= ~BE_W_REMOTE_DRAIN;
            if (!(flags & BE_W_DOWN))
                flags |= BE_W_CHECK_DRAIN;
        }
        break;
    case BE_EV_ADMIN_DRAIN:
        flags |= BE_W_ADMIN_DRAIN;
        break;
    case BE_EV_ADMIN_ENABLE:
        flags &= ~BE_W_ADMIN_DRAIN;
        break;
    default:
        return w;
    }
    uint64_t body = flags | (uint64_t)fails << BE_W_FAIL_SHIFT | (uint64_t)oks << BE_W_OK_SHIFT;
    if (body == (w & 0xffffffffull))
        return w;
    return body | (uint64_t)(uint32_t)(be_word_seq(w) + 1) << BE_W_SEQ_SHIFT;
}

static const char *const be_ev_names[BE_EV__COUNT] = {
    [BE_EV_CHECK_OK] = "check_ok",       [BE_EV_CHECK_FAIL] = "check_fail",
    [BE_EV_CHECK_DRAIN] = "check_drain", [BE_EV_PASSIVE_FAIL] = "passive_fail",
    [BE_EV_PASSIVE_OK] = "passive_ok",   [BE_EV_REMOTE_DRAIN] = "remote_drain",
    [BE_EV_REMOTE_UP] = "remote_up",     [BE_EV_REMOTE_GONE] = "remote_gone",
    [BE_EV_ADMIN_DRAIN] = "admin_drain", [BE_EV_ADMIN_ENABLE] = "admin_enable",
};

const char *be_ev_name(enum be_ev ev)
{
    return (unsigned)ev < BE_EV__COUNT ? be_ev_names[ev] : "?";
}

const char *be_state_name(enum be_state st)
{
    return st == BE_UP ? "up" : st == BE_DOWN ? "down" : "draining";
}

/* One line per change, by the thread whose compare-and-swap made it. */
static void be_log_change(const be_t *b, enum be_ev ev, const char *why, uint64_t old, uint64_t now)
{
    enum be_state so = be_word_state(old), sn = be_word_state(now);
    const char *cause = why && *why ? why : be_ev_name(ev);
    if (so == sn) { /* only the admin drain changed */
        log_info("backend %s (%s) %s %s (health %s)", b->id, b->addr_str,
                 (now & BE_W_ADMIN_DRAIN) ? "drained" : "enabled", cause, be_state_name(sn));
        return;
    }
    int fell = (now & BE_W_DOWN) && !(old & BE_W_DOWN);
    if (ev == BE_EV_CHECK_OK)
        log_info("backend %s (%s) %s -> %s: %u consecutive successful checks", b->id, b->addr_str,
                 be_state_name(so), be_state_name(sn), be_word_oks(now));
    else if (fell)
        log_warn("backend %s (%s) %s -> %s: %s (%u consecutive failures)", b->id, b->addr_str,
                 be_state_name(so), be_state_name(sn), cause, be_word_fails(now));
    else
        log_msg(sn == BE_DOWN ? LOG_LVL_WARN : LOG_LVL_INFO, "backend %s (%s) %s -> %s: %s", b->id,
                b->addr_str, be_state_name(so), be_state_name(sn), cause);
}

/* Any thread; b referenced. The word is recomputed from the current value
 * on every failed compare-and-swap, so an event never acts on a state
 * another thread has replaced meanwhile. */
int be_event_ex(be_table_t *t, be_t *b, enum be_ev ev, const char *why, uint64_t *before,
                uint64_t *after)
{
    if (ev == BE_EV_CHECK_FAIL || ev == BE_EV_PASSIVE_FAIL)
        BE_ADD(&b->failures, 1);
    uint64_t old = __atomic_load_n(&b->word, __ATOMIC_ACQUIRE), now;
    for (;;) {
        now = be_word_next(old, ev, BE_LD(&t->rise), BE_LD(&t->fall));
        if (now == old ||
            __atomic_compare_exchange_n(&b->word, &old, now, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            break;
    }
    if (before)
        *before = old;
    if (after)
        *after = now;
    enum be_state so = be_word_state(old), sn = be_word_state(now);
    if (so == sn && !((old ^ now) & BE_W_ADMIN_DRAIN))
        return 0;
    /* Back up after a failure or a drain: it holds no connections of ours
     * any more, so it ramps up as a new one would. An admin enable alone
     * does not (as HAProxy: slow start follows a failure, not maintenance). */
    if (sn == BE_UP && so != BE_UP)
        BE_ST(&b->joined_ms, be_now_ms());
    if (sn == BE_DOWN && so != BE_DOWN)
        BE_ST(&b->down_ms, be_now_ms());
    be_log_change(b, ev, why, old, now);
    be_algo_update(t, b);
    if (t->watch &&
        ((be_word_usable(old) && !be_word_usable(now)) || (sn == BE_DOWN && so != BE_DOWN)))
        t->watch(t->watch_arg, b);
    return 1;
}

void be_table_set_watch(be_table_t *t, be_watch_fn fn, void *arg)
{
    t->watch = fn;
    t->watch_arg = arg;
}

uint64_t be_down_ms(const be_t *b)
{
    return BE_LD(&b->down_ms);
}

int be_event(be_table_t *t, be_t *b, enum be_ev ev, const char *why)
{
    return be_event_ex(t, b, ev, why, NULL, NULL);
}

/* ---- reading a backend ------------------------------------------------------ */

const char *be_id(const be_t *b)
{
    return b->id;
}

const char *be_addr_str(const be_t *b)
{
    return b->addr_str;
}

const sock_addr_t *be_addr(const be_t *b)
{
    return &b->addr;
}

enum be_source be_source(const be_t *b)
{
    return b->source;
}

unsigned be_weight(const be_t *b)
{
    return BE_LD(&b->weight);
}

enum be_state be_state(const be_t *b)
{
    return be_word_state(__atomic_load_n(&b->word, __ATOMIC_ACQUIRE));
}

int be_usable(const be_t *b)
{
    return bei_usable(b);
}

int be_in_admin_drain(const be_t *b)
{
    return (__atomic_load_n(&b->word, __ATOMIC_ACQUIRE) & BE_W_ADMIN_DRAIN) != 0;
}

int be_remote_draining(const be_t *b)
{
    return (__atomic_load_n(&b->word, __ATOMIC_ACQUIRE) & BE_W_REMOTE_DRAIN) != 0;
}

int be_removed(const be_t *b)
{
    return __atomic_load_n(&b->removed, __ATOMIC_ACQUIRE);
}

int64_t be_conns(const be_t *b)
{
    return bei_conns(b);
}

int64_t be_active(const be_t *b)
{
    return BE_LD(&b->active);
}

uint64_t be_total(const be_t *b)
{
    return BE_LD(&b->total);
}

uint64_t be_failures(const be_t *b)
{
    return BE_LD(&b->failures);
}

int64_t be_load(const be_t *b)
{
    return BE_LD(&b->load);
}

int be_has_remote(const be_t *b)
{
    return __atomic_load_n(&b->has_remote, __ATOMIC_ACQUIRE);
}

uint64_t be_remote_ts_ms(const be_t *b)
{
    return BE_LD(&b->remote_ts_ms);
}

uint64_t be_joined_ms(const be_t *b)
{
    return BE_LD(&b->joined_ms);
}

int64_t be_evals_running(const be_t *b)
{
    return b->evals_running;
}

int64_t be_rebalance_shed(const be_t *b)
{
    return b->rebalance_shed;
}

void be_update_rebalance(be_t *b, int64_t shed)
{
    b->rebalance_shed = shed < 0 ? 0 : shed;
}

int64_t be_evals_queued(const be_t *b)
{
    return b->evals_queued;
}

uint64_t be_started_ms(const be_t *b)
{
    return b->started_ms;
}

const char *be_version(const be_t *b)
{
    return b->version;
}

/* ---- references and connections ------------------------------------------- */

void be_ref(be_t *b)
{
    BE_ADD(&b->refs, 1);
}

/* Whoever drops the last reference frees. refs only reaches 0 after
 * be_remove() dropped the table's own reference, i.e. once removed is set
 * and no thread can find the backend any more. */
void be_unref(be_table_t *t, be_t *b)
{
    if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(b);
}

void bei_take(be_table_t *t, be_t *b)
{
    be_ref(b);
    BE_ADD(&b->active, 1);
    BE_ADD(&b->total, 1);
    be_ai_t *ai = BE_AI(t);
    if (ai->algo->take)
        ai->algo->take(t, ai->ctx, b);
}

be_t *be_pick_at(be_table_t *t, be_t *const *exclude, int nexclude, uint64_t now_ms)
{
    pthread_rwlock_rdlock(&t->lock);
    be_ai_t *ai = BE_AI(t);
    be_t *b = ai->algo->pick(t, ai->ctx, exclude, nexclude, now_ms);
    if (b)
        bei_take(t, b);
    pthread_rwlock_unlock(&t->lock);
    return b;
}

be_t *be_pick(be_table_t *t, be_t *const *exclude, int nexclude)
{
    return be_pick_at(t, exclude, nexclude, be_now_ms());
}

void be_release(be_table_t *t, be_t *b)
{
    BE_ADD(&b->active, -1);
    be_ai_t *ai = t ? BE_AI(t) : NULL;
    if (ai && ai->algo->release)
        ai->algo->release(t, ai->ctx, b);
    be_unref(t, b); /* never touches t: safe after be_table_free() */
}

/* ---- table ----------------------------------------------------------------- */

be_table_t *be_table_create(const be_algo_t *algo, unsigned slowstart_ms)
{
    be_table_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->slowstart_ms = slowstart_ms;
    t->rise = 2;
    t->fall = 2;
    if ((t->ai = be_ai_create(t, algo ? algo : be_algos[0])) == NULL)
        goto fail;
    if (pthread_rwlock_init(&t->lock, NULL) != 0) {
        be_ai_free(t->ai);
        goto fail;
    }
    return t;
fail:
    free(t);
    return NULL;
}

/* Drops the table's reference on every backend; those still held by live
 * connections are freed when the last one releases. */
void be_table_free(be_table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        __atomic_store_n(&t->v[i]->removed, 1, __ATOMIC_RELEASE);
        be_unref(t, t->v[i]);
    }
    free(t->v);
    free(t->idx);
    for (size_t i = 0; i < t->ndrained; i++)
        free(t->drained[i]);
    free(t->drained);
    be_ai_free(t->ai);
    while (t->retired) {
        be_ai_t *next = t->retired->next;
        be_ai_free(t->retired);
        t->retired = next;
    }
    aff_ring_free(t->ring);
    pthread_rwlock_destroy(&t->lock);
    free(t);
}

void be_table_set_health(be_table_t *t, int rise, int fall)
{
    BE_ST(&t->rise, rise <= 0 ? 2 : rise > (int)BE_W_STREAK_MAX ? BE_W_STREAK_MAX : (unsigned)rise);
    BE_ST(&t->fall, fall <= 0 ? 2 : fall > (int)BE_W_STREAK_MAX ? BE_W_STREAK_MAX : (unsigned)fall);
}

int be_table_rise(const be_table_t *t)
{
    return (int)BE_LD(&t->rise);
}

int be_table_fall(const be_table_t *t)
{
    return (int)BE_LD(&t->fall);
}

const be_algo_t *be_table_algo(const be_table_t *t)
{
    return BE_AI(t)->algo;
}

int be_table_set_algo(be_table_t *t, const be_algo_t *algo)
{
    if (BE_AI(t)->algo == algo)
        return 0;
    be_ai_t *fresh = be_ai_create(t, algo);
    if (fresh == NULL)
        return -1;
    pthread_rwlock_wrlock(&t->lock);
    be_ai_t *old = t->ai;
    __atomic_store_n(&t->ai, fresh, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&t->lock);
    /* A hook without the lock (release, update) may still be running on
     * the old one: keep it for the grace period, and free those whose
     * grace has ended (the list is newest first). */
    uint64_t now = be_now_ms();
    old->retired_ms = now;
    old->next = t->retired;
    t->retired = old;
    for (be_ai_t **pp = &t->retired; *pp != NULL; pp = &(*pp)->next) {
        if (now - (*pp)->retired_ms < BE_AI_GRACE_MS)
            continue;
        be_ai_t *stale = *pp;
        *pp = NULL;
        while (stale) {
            be_ai_t *next = stale->next;
            be_ai_free(stale);
            stale = next;
        }
        break;
    }
    /* The new algorithm learns every backend, as be_add() tells it. */
    for (size_t i = 0; i < t->n; i++)
        be_algo_update(t, t->v[i]);
    return 0;
}

void be_set_weight(be_table_t *t, be_t *b, unsigned weight)
{
    unsigned w = weight < 1 ? 1 : weight > 256 ? 256 : weight;
    if (BE_LD(&b->weight) == w)
        return;
    BE_ST(&b->weight, w);
    log_info("backend %s: weight %u", b->id, w);
    be_algo_update(t, b);
}

void be_table_rdlock(be_table_t *t)
{
    pthread_rwlock_rdlock(&t->lock);
}

void be_table_unlock(be_table_t *t)
{
    pthread_rwlock_unlock(&t->lock);
}

size_t be_table_count(be_table_t *t)
{
    return t->n;
}

be_t *be_table_at(be_table_t *t, size_t i)
{
    return i < t->n ? t->v[i] : NULL;
}

/* ---- the id index (main thread only) --------------------------------------- */

/* The id index hashes as the affinity ring does (aff_hash: FNV-1a with a
 * finaliser that spreads similar ids such as "worker-0042"). */
static size_t be_id_hash(const char *s)
{
    return (size_t)aff_hash(s, strlen(s));
}

static void be_index_put(be_t **idx, size_t cap, be_t *b)
{
    size_t i = be_id_hash(b->id) & (cap - 1);
    while (idx[i] != NULL)
        i = (i + 1) & (cap - 1);
    idx[i] = b;
}

/* Makes room for one more backend, growing (and rehashing) the index when
 * it would pass half full; without memory the index is dropped and be_find
 * scans instead. */
static void be_index_grow(be_table_t *t)
{
    if (t->idx == NULL && t->idxcap != 0)
        return; /* dropped for lack of memory: stay on the scan */
    if ((t->n + 1) * 2 <= t->idxcap)
        return;
    size_t cap = t->idxcap ? t->idxcap * 2 : 16;
    be_t **idx = calloc(cap, sizeof(*idx));
    free(t->idx);
    t->idx = idx;
    t->idxcap = cap;
    if (idx == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        be_index_put(idx, cap, t->v[i]);
}

/* Backward-shift deletion: the entries after b in its probe run move up
 * when b's slot lies on their way, so lookups need no tombstones. */
static void be_index_del(be_table_t *t, const be_t *b)
{
    if (t->idx == NULL)
        return;
    size_t mask = t->idxcap - 1, i = be_id_hash(b->id) & mask;
    while (t->idx[i] != b) {
        if (t->idx[i] == NULL)
            return;
        i = (i + 1) & mask;
    }
    for (size_t j = (i + 1) & mask; t->idx[j] != NULL; j = (j + 1) & mask) {
        size_t k = be_id_hash(t->idx[j]->id) & mask;
        /* The entry at j stays when its home k lies cyclically in (i, j]. */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        t->idx[i] = t->idx[j];
        i = j;
    }
    t->idx[i] = NULL;
}

/* Main thread only (the only writer), so reading without the lock is safe. */
be_t *be_find(be_table_t *t, const char *id)
{
    if (t->idx == NULL) {
        for (size_t i = 0; i < t->n; i++)
            if (strcmp(t->v[i]->id, id) == 0)
                return t->v[i];
        return NULL;
    }
    for (size_t i = be_id_hash(id) & (t->idxcap - 1); t->idx[i] != NULL;
         i = (i + 1) & (t->idxcap - 1))
        if (strcmp(t->idx[i]->id, id) == 0)
            return t->idx[i];
    return NULL;
}

/* Main thread only. A static backend is known from the start and needs no
 * slow start; a discovered one just joined. Backends are cache-line aligned
 * so that their hot lines are theirs alone (be_int.h). */
be_t *be_add(be_table_t *t, const char *id, const sock_addr_t *addr, unsigned weight,
             enum be_source src)
{
    be_t *b = be_find(t, id);
    if (b)
        return b;
    if (strlen(id) >= sizeof(b->id))
        return NULL;
    b = aligned_alloc(BE_CACHELINE, sizeof(*b));
    if (!b)
        return NULL;
    memset(b, 0, sizeof(*b));
    memcpy(b->id, id, strlen(id) + 1);
    b->addr = *addr;
    sock_addr_str(addr, b->addr_str, sizeof(b->addr_str));
    b->source = src;
    b->weight = weight < 1 ? 1 : weight > 256 ? 256 : weight;
    b->joined_ms = src == BE_DISCOVERED ? be_now_ms() : 0;
    b->refs = 1;
    /* Set before any proxy thread can see it: a drained id never takes a
     * connection between its return and the drain. */
    b->word = be_admin_drained(t, id) ? BE_W_ADMIN_DRAIN : 0;

    pthread_rwlock_wrlock(&t->lock);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        be_t **v = realloc(t->v, cap * sizeof(*v));
        if (!v) {
            pthread_rwlock_unlock(&t->lock);
            free(b);
            return NULL;
        }
        t->v = v;
        t->cap = cap;
    }
    be_index_grow(t);
    if (t->idx != NULL)
        be_index_put(t->idx, t->idxcap, b);
    t->v[t->n++] = b;
    bei_aff_added(t);
    pthread_rwlock_unlock(&t->lock);
    be_algo_update(t, b);
    return b;
}

/* Main thread only. Takes b out of the table (keeping the others' order, so
 * rotations stay fair) and drops the table's reference. */
void be_remove(be_table_t *t, be_t *b)
{
    int found = 0;
    pthread_rwlock_wrlock(&t->lock);
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i] == b) {
            memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
            t->n--;
            be_index_del(t, b);
            bei_aff_removed(t, i);
            found = 1;
            break;
        }
    }
    pthread_rwlock_unlock(&t->lock);
    if (!found)
        return;
    __atomic_store_n(&b->removed, 1, __ATOMIC_RELEASE);
    be_algo_update(t, b);
    if (t->watch)
        t->watch(t->watch_arg, b);
    be_unref(t, b);
}

/* ---- admin drains, kept by id ----------------------------------------------- */

static long be_drained_index(const be_table_t *t, const char *id)
{
    for (size_t i = 0; i < t->ndrained; i++)
        if (strcmp(t->drained[i], id) == 0)
            return (long)i;
    return -1;
}

int be_admin_drained(const be_table_t *t, const char *id)
{
    return be_drained_index(t, id) >= 0;
}

size_t be_admin_drained_count(const be_table_t *t)
{
    return t->ndrained;
}

const char *be_admin_drained_at(const be_table_t *t, size_t i)
{
    return i < t->ndrained ? t->drained[i] : NULL;
}

/* Main thread. The id set first, so that a backend of that id added later
 * is drained from its start; then the backend itself, through be_event(),
 * which logs it. An id away is logged here. */
int be_admin_drain(be_table_t *t, const char *id, int on)
{
    long i = be_drained_index(t, id);
    int was = i >= 0;
    if (on && i < 0) {
        if (t->ndrained >= BE_ADMIN_DRAINED_MAX)
            return -1;
        if (t->ndrained == t->capdrained) {
            size_t cap = t->capdrained ? 2 * t->capdrained : 8;
            char **v = realloc(t->drained, cap * sizeof(*v));
            if (v == NULL)
                return -1;
            t->drained = v;
            t->capdrained = cap;
        }
        if ((t->drained[t->ndrained] = strdup(id)) == NULL)
            return -1;
        t->ndrained++;
    } else if (!on && i >= 0) {
        free(t->drained[i]);
        memmove(&t->drained[i], &t->drained[i + 1],
                (t->ndrained - (size_t)i - 1) * sizeof(*t->drained));
        t->ndrained--;
    }
    be_t *b = be_find(t, id);
    if (b != NULL)
        be_event(t, b, on ? BE_EV_ADMIN_DRAIN : BE_EV_ADMIN_ENABLE, "through the admin API");
    else if (was != !!on)
        log_info("backend %s (absent) %s through the admin API while absent", id,
                 on ? "drained" : "enabled");
    return 0;
}

/* ---- what the worker publishes ------------------------------------------------ */

void be_table_sample(be_table_t *t, uint64_t wall_ms)
{
    for (size_t i = 0; i < t->n; i++) {
        be_t *b = t->v[i];
        b->hist[b->hist_pos] = (struct be_sample){wall_ms, BE_LD(&b->active)};
        b->hist_pos = (b->hist_pos + 1) % BE_HIST;
        if (b->hist_n < BE_HIST)
            b->hist_n++;
    }
}

/* This lb's `active` as of wall-clock ts: the newest sample taken at or
 * before ts, so the error is at most one sampling period of this lb's own
 * traffic, counted twice rather than lost (the safe side: a backend looks
 * slightly busier, never emptier). Before the first sample the backend had
 * none of this lb's connections; a snapshot older than the whole history
 * gets the oldest sample. With no history at all (no sampling), now. */
static int64_t be_active_at(const be_t *b, uint64_t ts)
{
    if (b->hist_n == 0 || ts == 0)
        return BE_LD(&b->active);
    for (unsigned k = 1; k <= b->hist_n; k++) {
        const struct be_sample *s = &b->hist[(b->hist_pos + BE_HIST - k) % BE_HIST];
        if (s->wall_ms <= ts)
            return s->active;
    }
    if (b->hist_n < BE_HIST)
        return 0;
    return b->hist[b->hist_pos].active; /* oldest */
}

/* remote_conns and remote_base are stored one after the other, so a pick on
 * another thread may see one without the other for an instant: one pick
 * scored with a count off by a heartbeat's worth, corrected by the next. */
int be_update_remote(be_table_t *t, be_t *b, int64_t conns, int64_t load, uint64_t ts_ms)
{
    return be_update_remote_ex(t, b, conns, load, ts_ms, -1);
}

int be_update_remote_ex(be_table_t *t, be_t *b, int64_t conns, int64_t load, uint64_t ts_ms,
                        int64_t mine)
{
    if (BE_LD(&b->has_remote) && ts_ms && ts_ms <= BE_LD(&b->remote_ts_ms))
        return 0;
    BE_ST(&b->remote_conns, conns < 0 ? 0 : conns);
    BE_ST(&b->remote_base, mine >= 0 ? mine : be_active_at(b, ts_ms));
    BE_ST(&b->load, load < 0 ? 0 : load);
    BE_ST(&b->remote_ts_ms, ts_ms);
    __atomic_store_n(&b->has_remote, 1, __ATOMIC_RELEASE);
    be_algo_update(t, b);
    return 1;
}

void be_update_info(be_t *b, int64_t evals_running, int64_t evals_queued, uint64_t started_ms,
                    const char *version)
{
    b->evals_running = evals_running < 0 ? 0 : evals_running;
    b->evals_queued = evals_queued < 0 ? 0 : evals_queued;
    b->started_ms = started_ms;
    snprintf(b->version, sizeof(b->version), "%s", version ? version : "");
}

void be_clear_remote(be_table_t *t, be_t *b)
{
    __atomic_store_n(&b->has_remote, 0, __ATOMIC_RELEASE);
    BE_ST(&b->remote_ts_ms, 0);
    BE_ST(&b->load, 0);
    be_update_info(b, 0, 0, 0, NULL);
    be_update_rebalance(b, 0);
    be_event(t, b, BE_EV_REMOTE_GONE, "its Redis state is gone");
    be_algo_update(t, b);
}
