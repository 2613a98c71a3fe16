/* lim: per-client-address limits for the lb's public edge.
 *
 * Shared by every proxy thread: at most max_conns concurrent
 * connections per client address and a token bucket of `rate` new
 * connections (each one is one handshake or request) per second with room
 * for `burst`. State lives in a hash table of address -> {conns, tokens,
 * last} split into shards, each with its own mutex, so threads rarely
 * contend. IPv4 addresses are keyed whole; IPv6 addresses by their /64,
 * the block one host normally gets, so that one host cannot dodge the
 * limit by cycling through its addresses.
 *
 * Memory is bounded: the table never holds more than max_entries
 * addresses. An entry that holds no connection and whose bucket has
 * refilled is indistinguishable from a fresh one and is dropped (at once
 * when its last connection leaves without a rate limit, otherwise when
 * its shard needs room). When a shard is full of live entries a new
 * address is admitted untracked (LIM_UNTRACKED): refusing strangers
 * because other addresses fill the table would let an attacker with many
 * addresses lock everyone else out, while the addresses already tracked
 * stay limited. lim_stats() counts these so an operator can raise the
 * bound.
 *
 * Trusted proxy networks, exempt from these limits, are common/cidr.h. */
#ifndef LB_LIM_H
#define LB_LIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct lim lim_t;

/* A client address as the table keys it: 16 bytes, IPv4 as ::ffff:a.b.c.d,
 * IPv6 cut to its /64. */
typedef struct lim_key {
    uint8_t b[16];
} lim_key_t;

/* Monotonic nanoseconds; injectable so tests control time. */
typedef uint64_t (*lim_clock_fn)(void *arg);

typedef struct lim_config {
    unsigned max_conns; /* concurrent connections per address; 0 = no limit */
    unsigned rate;      /* new connections per second per address; 0 = no limit */
    unsigned burst;     /* bucket size; 0 = rate (at least 1) */
    size_t max_entries; /* addresses tracked at most; 0 = LIM_DEFAULT_ENTRIES */
    lim_clock_fn clock; /* NULL = CLOCK_MONOTONIC */
    void *clock_arg;
} lim_config_t;

#define LIM_DEFAULT_ENTRIES 65536

enum lim_verdict {
    LIM_OK = 0,        /* admitted and counted: call lim_leave() once when it ends */
    LIM_UNTRACKED = 1, /* admitted, table full: do NOT call lim_leave() */
    LIM_CONNS = -1,    /* refused: too many concurrent connections */
    LIM_RATE = -2,     /* refused: bucket empty */
};

typedef struct lim_stats {
    size_t entries;     /* addresses tracked now */
    uint64_t untracked; /* admissions while the table was full */
} lim_stats_t;

/* NULL with err when cfg asks for no limit at all (nothing to create) or on
 * allocation failure; check lim_enabled(cfg) first. */
lim_t *lim_create(const lim_config_t *cfg, char *err, size_t errlen);
/* NULL is a no-op. No thread may be inside lim_enter/lim_leave. */
void lim_free(lim_t *l);
/* Any thread: new limits (a reload). Addresses keep their counts and
 * buckets; 0 lifts a limit. */
void lim_set(lim_t *l, unsigned max_conns, unsigned rate, unsigned burst);
/* Whether cfg limits anything. */
int lim_enabled(const lim_config_t *cfg);
/* Any thread: whether l limits anything now (a reload may have lifted
 * every limit with lim_set, and l stays): when not, a new connection need
 * not enter it. Such connections are not counted should a later reload
 * bring a limit back, as those from before the first limit are not. */
int lim_active(const lim_t *l);

/* Maps a peer address to its key; -1 for families other than IPv4/IPv6. */
int lim_key_from_sa(const struct sockaddr *sa, lim_key_t *out);

/* Any thread: admits one new connection from k (see enum lim_verdict). On
 * refusal *retry_after_s (if not NULL) says when trying again can succeed,
 * in whole seconds, at least 1. */
enum lim_verdict lim_enter(lim_t *l, const lim_key_t *k, unsigned *retry_after_s);
/* Any thread: a connection admitted with LIM_OK has ended. */
void lim_leave(lim_t *l, const lim_key_t *k);
/* Current figures (takes every shard lock in turn). */
void lim_stats(lim_t *l, lim_stats_t *out);
/* Concurrent connections counted for k (tests). */
unsigned lim_conns(lim_t *l, const lim_key_t *k);

#endif
