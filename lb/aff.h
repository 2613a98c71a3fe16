/* aff: session affinity with bounded loads (consistent hashing with
 * bounded loads, Mirrokni, Thorup and Zadimoghaddam 2016; HAProxy's
 * hash-type consistent with hash-balance-factor).
 *
 * A session key (a query parameter, a header or a cookie of the upgrade
 * request) is hashed onto a ring of points, AFF_VNODES per backend, placed by
 * hashing the backend's id: the ring depends only on the set of ids, so when
 * a backend leaves only the keys whose owner it was move, and when one joins
 * only the keys it now owns come to it. A key goes to the first backend
 * clockwise from its point that is usable and whose connections stay within
 * factor x the mean (weighted); the bound keeps a popular key range from
 * piling onto one worker, at the price of a few keys moving on to the next
 * backend while their owner is full.
 *
 * Everything here is pure (no locks, no backends): lb/be_aff.c applies it to
 * the backend table under the table's lock. */
#ifndef LB_AFF_H
#define LB_AFF_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* Points per backend on the ring: with 160 the share of keys a backend
 * owns stays within a few percent of 1/n (as ketama's 160). */
#define AFF_VNODES 160
/* A key is tried on at most this many distinct backends before the
 * balancing algorithm takes it. */
#define AFF_WALK_MAX 16
#define AFF_NAME_MAX 64

enum aff_kind { AFF_NONE = 0, AFF_QUERY, AFF_HEADER, AFF_COOKIE };

/* Where the key is: --affinity query:NAME | header:NAME | cookie:NAME. */
typedef struct aff_spec {
    enum aff_kind kind;
    char name[AFF_NAME_MAX];
} aff_spec_t;

/* Parses "query:sid" and the like into s. 0, or -1 with err. */
int aff_spec_parse(const char *text, aff_spec_t *s, char *err, size_t errlen);
/* "query", "header", "cookie" ("none" for AFF_NONE). */
const char *aff_kind_name(enum aff_kind k);

/* The key's hash into *hash when the request carries a non-empty key: 1;
 * 0 when it carries none. The value is taken as sent (no percent
 * decoding): the same client sends the same bytes. */
int aff_key(const aff_spec_t *s, const http_head_t *h, uint64_t *hash);
/* 64-bit hash of n bytes (FNV-1a, then a finaliser that spreads the bits
 * over the ring). */
uint64_t aff_hash(const void *p, size_t n);

/* Why a key did not go to its owner (the first backend on the ring), or
 * that it did. Counted per pick in lbs (lb/lbs.h). */
enum aff_why {
    AFF_HIT = 0,  /* the owner took it */
    AFF_NO_KEY,   /* the request carried no key */
    AFF_DOWN,     /* the owner is down or draining */
    AFF_OVERLOAD, /* the owner is above factor x the mean */
    AFF_RETRY,    /* the owner was tried for this request already and failed */
    AFF_WHY__COUNT
};
/* "hit", "no_key", "down", "overload", "retry". */
const char *aff_why_name(enum aff_why w);

typedef struct aff_ring aff_ring_t;

aff_ring_t *aff_ring_create(void);
void aff_ring_free(aff_ring_t *r);
/* Replaces the ring with one for ids[0..n) (node i is ids[i]). 0, or -1
 * without memory, when the ring is left empty (every key then falls back). */
int aff_ring_build(aff_ring_t *r, const char *const *ids, size_t n);
/* Takes node out of the ring in place: its points go, and every node above
 * it is renumbered one down, as when ids[node] is taken out of the array
 * the ring was built from. The result is the ring aff_ring_build would make
 * of the remaining ids, in O(points) without hashing or sorting again. */
void aff_ring_remove_node(aff_ring_t *r, uint32_t node);
size_t aff_ring_nodes(const aff_ring_t *r);
/* The distinct nodes clockwise from key's point, owner first, at most max:
 * how many were written to out. */
size_t aff_ring_walk(const aff_ring_t *r, uint64_t key, uint32_t *out, size_t max);

/* What the bound needs to know about one candidate node. */
enum aff_probe { AFF_P_OK = 0, AFF_P_DOWN, AFF_P_OVERLOAD, AFF_P_EXCLUDED };
typedef enum aff_probe (*aff_probe_fn)(void *ctx, uint32_t node);

/* Bounded loads: the first node on key's walk that probe accepts, or -1
 * when none of the first AFF_WALK_MAX does (the algorithm decides then).
 * *why says why the owner was passed over (AFF_HIT when it was not). */
long aff_choose(const aff_ring_t *r, uint64_t key, aff_probe_fn probe, void *ctx,
                enum aff_why *why);

/* Whether a node with conns connections and weight w may take one more:
 * conns + 1 <= ceil(factor x (total + 1) x w / wsum), factor in
 * thousandths, total and wsum over the usable nodes. At least one usable
 * node always may (the mean is never above the maximum). */
int aff_within(int64_t conns, unsigned w, int64_t total, uint64_t wsum, unsigned factor_milli);

#endif
