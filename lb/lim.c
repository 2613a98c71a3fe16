/* lim: per-client-address limits (see lim.h).
 *
 * Each shard is an open-addressing table with linear probing and
 * backward-shift deletion (no tombstones, so lookups never slow down as
 * entries come and go), at most half full. */
#include "lim.h"

#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cidr.h"

#define LIM_MAX_SHARDS    64
#define LIM_MIN_SHARD_CAP 16

typedef struct lim_entry {
    lim_key_t key;
    uint64_t last; /* ns of the last refill */
    double tokens;
    uint32_t conns;
    uint8_t used;
} lim_entry_t;

typedef struct lim_shard {
    pthread_mutex_t mu;
    lim_entry_t *slot;
    size_t mask;  /* slots - 1 */
    size_t count; /* used slots */
    size_t cap;   /* most entries allowed */
    uint64_t untracked;
} lim_shard_t;

struct lim {
    lim_config_t cfg;
    double burst;
    uint64_t seed;
    lim_shard_t *sh;
    unsigned nsh;
};

static uint64_t lim_mono_ns(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The limits may change while threads use them (lim_set): read them
 * whole, once per use. */
#define LIM_LD(f) __atomic_load_n(&(f), __ATOMIC_RELAXED)

static double lim_burst(const lim_t *l)
{
    double b;
    __atomic_load(&l->burst, &b, __ATOMIC_RELAXED);
    return b;
}

static double lim_burst_of(const lim_config_t *cfg)
{
    return cfg->burst ? cfg->burst : (cfg->rate ? cfg->rate : 1);
}

void lim_set(lim_t *l, unsigned max_conns, unsigned rate, unsigned burst)
{
    lim_config_t c = {.max_conns = max_conns, .rate = rate, .burst = burst};
    double b = lim_burst_of(&c);
    __atomic_store_n(&l->cfg.max_conns, max_conns, __ATOMIC_RELAXED);
    __atomic_store_n(&l->cfg.rate, rate, __ATOMIC_RELAXED);
    __atomic_store(&l->burst, &b, __ATOMIC_RELAXED);
}

int lim_active(const lim_t *l)
{
    return LIM_LD(l->cfg.max_conns) > 0 || LIM_LD(l->cfg.rate) > 0;
}

int lim_enabled(const lim_config_t *cfg)
{
    return cfg != NULL && (cfg->max_conns > 0 || cfg->rate > 0);
}

lim_t *lim_create(const lim_config_t *cfg, char *err, size_t errlen)
{
    lim_t *l = NULL;

    if (!lim_enabled(cfg)) {
        snprintf(err, errlen, "no limit configured");
        return NULL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        goto oom;
    l->cfg = *cfg;
    if (l->cfg.max_entries == 0)
        l->cfg.max_entries = LIM_DEFAULT_ENTRIES;
    if (l->cfg.clock == NULL)
        l->cfg.clock = lim_mono_ns;
    l->burst = lim_burst_of(cfg);
    if (getrandom(&l->seed, sizeof(l->seed), 0) != sizeof(l->seed))
        l->seed = lim_mono_ns(NULL) * 0x9e3779b97f4a7c15ull;

    /* More shards means less contention; each keeps at least a few entries
     * so that a small table still fills evenly. */
    l->nsh = 1;
    while (l->nsh < LIM_MAX_SHARDS && l->cfg.max_entries / (l->nsh * 2) >= LIM_MIN_SHARD_CAP)
        l->nsh *= 2;
    l->sh = calloc(l->nsh, sizeof(*l->sh));
    if (l->sh == NULL)
        goto oom;
    for (unsigned i = 0; i < l->nsh; i++) {
        lim_shard_t *s = &l->sh[i];
        s->cap = l->cfg.max_entries / l->nsh;
        if (s->cap == 0)
            s->cap = 1;
        size_t slots = 2;
        while (slots < 2 * s->cap)
            slots *= 2;
        s->slot = calloc(slots, sizeof(*s->slot));
        if (s->slot == NULL) {
            /* shards past i have no mutex yet: free only what exists */
            l->nsh = i;
            goto oom;
        }
        s->mask = slots - 1;
        pthread_mutex_init(&s->mu, NULL);
    }
    return l;

oom:
    snprintf(err, errlen, "out of memory");
    lim_free(l);
    return NULL;
}

void lim_free(lim_t *l)
{
    if (l == NULL)
        return;
    for (unsigned i = 0; l->sh != NULL && i < l->nsh; i++) {
        pthread_mutex_destroy(&l->sh[i].mu);
        free(l->sh[i].slot);
    }
    free(l->sh);
    free(l);
}

int lim_key_from_sa(const struct sockaddr *sa, lim_key_t *out)
{
    if (cidr_addr16(sa, out->b) < 0)
        return -1;
    /* An IPv6 host is its /64; IPv4, and a v4-mapped address (that IPv4
     * host), is keyed whole. */
    if (sa->sa_family == AF_INET6 &&
        !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr))
        memset(out->b + 8, 0, 8);
    return 0;
}

/* ---- hash table ------------------------------------------------------------- */

static uint64_t lim_hash(const lim_t *l, const lim_key_t *k)
{
    uint64_t a, b;
    memcpy(&a, k->b, 8);
    memcpy(&b, k->b + 8, 8);
    uint64_t h = a ^ l->seed;
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdull;
    h ^= b + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static lim_shard_t *lim_shard(const lim_t *l, uint64_t h)
{
    /* High bits pick the shard, low bits the slot: independent choices. */
    return &l->sh[(h >> 58) & (l->nsh - 1)];
}

/* Slot index holding k in s, or the empty slot where it would go. s->mu held. */
static size_t lim_probe(const lim_shard_t *s, uint64_t h, const lim_key_t *k)
{
    size_t i = h & s->mask;
    while (s->slot[i].used && memcmp(&s->slot[i].key, k, sizeof(*k)) != 0)
        i = (i + 1) & s->mask;
    return i;
}

/* Removes slot i, shifting later members of its probe run back so every
 * remaining key stays reachable from its home slot. s->mu held. */
static void lim_delete(const lim_t *l, lim_shard_t *s, size_t i)
{
    size_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        if (!s->slot[j].used)
            break;
        size_t home = lim_hash(l, &s->slot[j].key) & s->mask;
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            s->slot[i] = s->slot[j];
            i = j;
        }
    }
    memset(&s->slot[i], 0, sizeof(s->slot[i]));
    s->count--;
}

/* Refills e's bucket up to now. */
static void lim_refill(const lim_t *l, lim_entry_t *e, uint64_t now)
{
    if (LIM_LD(l->cfg.rate) == 0)
        return;
    if (now > e->last) {
        e->tokens += (double)(now - e->last) * LIM_LD(l->cfg.rate) / 1e9;
        if (e->tokens > lim_burst(l))
            e->tokens = lim_burst(l);
    }
    e->last = now;
}

/* An entry with no connection and a full bucket carries no information. */
static int lim_removable(const lim_t *l, lim_entry_t *e, uint64_t now)
{
    if (e->conns > 0)
        return 0;
    lim_refill(l, e, now);
    return LIM_LD(l->cfg.rate) == 0 || e->tokens >= lim_burst(l);
}

/* Drops every removable entry of s. s->mu held. */
static void lim_sweep(const lim_t *l, lim_shard_t *s, uint64_t now)
{
    for (size_t i = 0; i <= s->mask; i++) {
        /* After a delete, slot i may hold a shifted entry: look again. */
        while (s->slot[i].used && lim_removable(l, &s->slot[i], now))
            lim_delete(l, s, i);
    }
}

enum lim_verdict lim_enter(lim_t *l, const lim_key_t *k, unsigned *retry_after_s)
{
    uint64_t h = lim_hash(l, k);
    lim_shard_t *s = lim_shard(l, h);
    uint64_t now = l->cfg.clock(l->cfg.clock_arg);
    enum lim_verdict v = LIM_OK;
    unsigned retry = 1;

    pthread_mutex_lock(&s->mu);
    size_t i = lim_probe(s, h, k);
    lim_entry_t *e = &s->slot[i];
    if (!e->used) {
        if (s->count >= s->cap) {
            lim_sweep(l, s, now);
            if (s->count >= s->cap) {
                s->untracked++;
                v = LIM_UNTRACKED;
                goto out;
            }
            i = lim_probe(s, h, k);
            e = &s->slot[i];
        }
        memset(e, 0, sizeof(*e));
        e->used = 1;
        e->key = *k;
        e->tokens = lim_burst(l);
        e->last = now;
        s->count++;
    }
    if (LIM_LD(l->cfg.max_conns) > 0 && e->conns >= LIM_LD(l->cfg.max_conns)) {
        v = LIM_CONNS;
        goto out;
    }
    if (LIM_LD(l->cfg.rate) > 0) {
        lim_refill(l, e, now);
        if (e->tokens < 1.0) {
            double wait = (1.0 - e->tokens) / LIM_LD(l->cfg.rate);
            retry = (unsigned)ceil(wait);
            v = LIM_RATE;
            goto out;
        }
        e->tokens -= 1.0;
    }
    e->conns++;
out:
    pthread_mutex_unlock(&s->mu);
    if (retry_after_s != NULL)
        *retry_after_s = retry < 1 ? 1 : retry;
    return v;
}

void lim_leave(lim_t *l, const lim_key_t *k)
{
    uint64_t h = lim_hash(l, k);
    lim_shard_t *s = lim_shard(l, h);

    pthread_mutex_lock(&s->mu);
    size_t i = lim_probe(s, h, k);
    lim_entry_t *e = &s->slot[i];
    if (e->used && e->conns > 0) {
        e->conns--;
        /* Without a rate limit the entry is now empty: drop it at once. */
        if (lim_removable(l, e, l->cfg.clock(l->cfg.clock_arg)))
            lim_delete(l, s, i);
    }
    pthread_mutex_unlock(&s->mu);
}

void lim_stats(lim_t *l, lim_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < l->nsh; i++) {
        pthread_mutex_lock(&l->sh[i].mu);
        out->entries += l->sh[i].count;
        out->untracked += l->sh[i].untracked;
        pthread_mutex_unlock(&l->sh[i].mu);
    }
}

unsigned lim_conns(lim_t *l, const lim_key_t *k)
{
    uint64_t h = lim_hash(l, k);
    lim_shard_t *s = lim_shard(l, h);
    pthread_mutex_lock(&s->mu);
    size_t i = lim_probe(s, h, k);
    unsigned n = s->slot[i].used ? s->slot[i].conns : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}
