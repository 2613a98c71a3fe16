/* be: the backend table, the one writer of a backend's state, and the
 * balancing algorithms behind it.
 *
 * One table is shared by every event-loop thread of the lb. Backends are
 * added and removed only by the main thread (static config, Redis discovery,
 * admin API); proxy threads read the table and change per-backend counters
 * with atomics. Removal is deferred: a removed backend stays allocated until
 * its last connection ends (refcount), so a proxy thread never touches freed
 * memory. The table itself is protected by a rwlock that proxy threads take
 * for reading only while picking.
 *
 * A backend is opaque outside be*.c: other modules read it through the
 * accessors below and change its health and drains only by reporting an
 * event to be_event(), which applies it with one compare-and-swap on a
 * single state word and logs the transition once.
 *
 * Counts are global: with Redis, a backend's `remote_conns` is what the
 * worker last published (connections from every lb, as of the worker's
 * wall-clock ts_ms) and `remote_base` this lb's `active` at that same moment,
 * taken from a short history of samples; the balancer uses
 * remote_conns + (active - remote_base), so a fresh lb or one of several
 * sees the real load instead of starting from zero, and connections this lb
 * opened after the worker's snapshot are neither lost nor counted twice
 * (to within one sampling period). */
#ifndef LB_BE_H
#define LB_BE_H

#include <pthread.h>
#include <stdint.h>

#include "sock.h"

/* 128 samples every 50 ms: 6.4 s of history, twice a state key's lifetime.
 * Only a fallback: workers that publish by_lb say exactly how many of their
 * connections are this lb's, so the samples matter only for workers that do
 * not, and a finer period would wake the main thread for nothing. */
#define BE_HIST      128
#define BE_SAMPLE_MS 50
/* A backend id is shorter than this (NUL included). */
#define BE_ID_MAX 128

/* The state health checks and the worker's own drain give a backend. An
 * admin drain is kept apart (be_in_admin_drain()): /stats shows both. */
enum be_state { BE_UP = 0, BE_DOWN, BE_DRAINING };
enum be_source { BE_STATIC = 0, BE_DISCOVERED };

typedef struct be be_t;
typedef struct be_table be_table_t;

/* Everything that can happen to a backend's health or drains.
 *
 * Health: `fall` consecutive failures (checks and passive ones together)
 * take a backend down; only `rise` consecutive successful checks after the
 * last failure bring it back. The drains (the check's 503, the worker's
 * announcement, the operator's) never touch health: a down backend stays
 * down whatever a drain or its end says. */
enum be_ev {
    BE_EV_CHECK_OK = 0, /* the health check answered 200 */
    BE_EV_CHECK_FAIL,   /* it failed: refused, timed out, any other answer */
    BE_EV_CHECK_DRAIN,  /* it answered 503: alive but leaving; ends after rise 200s */
    BE_EV_PASSIVE_FAIL, /* a connect or exchange of a proxy thread failed */
    BE_EV_PASSIVE_OK,   /* a proxy thread got an answer: the failure streak ends */
    BE_EV_REMOTE_DRAIN, /* the worker announced its drain (Redis) */
    BE_EV_REMOTE_UP,    /* the worker says it serves (Redis) */
    BE_EV_REMOTE_GONE,  /* its Redis state is gone: a drain it announced ends by checks */
    BE_EV_ADMIN_DRAIN,  /* the operator drained it (see be_admin_drain()) */
    BE_EV_ADMIN_ENABLE, /* the operator enabled it */
    BE_EV__COUNT
};

/* Any thread; b referenced by the caller. Applies ev to b's state word with
 * a compare-and-swap; the call that changes the state (or the admin drain)
 * logs it once, with why (a short cause, e.g. "status 500"; NULL = none),
 * and restarts slow start when the backend comes back up. Failures count in
 * be_failures(). Returns 1 when the state or the admin drain changed. */
int be_event(be_table_t *t, be_t *b, enum be_ev ev, const char *why);
/* Called on the thread that made the change, right after it, when b stops
 * taking new connections (up -> down or drained), goes DOWN from a drain,
 * or is removed from the table: whoever holds connections to b (the proxy
 * threads) may want to move or end them. Must be quick and thread-safe. */
typedef void (*be_watch_fn)(void *arg, be_t *b);
/* Main thread, while no other thread reports events (before proxy threads
 * start, after they end): sets (or, with fn NULL, clears) the one watcher. */
void be_table_set_watch(be_table_t *t, be_watch_fn fn, void *arg);
/* Monotonic ms (be_now_ms()) at which b last went DOWN; meaningful while
 * be_state(b) == BE_DOWN. */
uint64_t be_down_ms(const be_t *b);

/* "check_ok", "passive_fail", ...; "?" if unknown. */
const char *be_ev_name(enum be_ev ev);

/* One balancing algorithm: an ops table, as HAProxy's lbprm. A new
 * algorithm is one file (lb/be_<name>.c) and one line in be.c's table. The
 * hooks see backends through the accessors only. Every hook but pick may be
 * NULL. */
typedef struct be_algo {
    const char *name;
    /* Per-table state, made when the table is (0, or -1 without memory) and
     * freed with it; given back to every hook as ctx. */
    int (*init)(be_table_t *t, void **ctx);
    void (*free)(void *ctx);
    /* Under the table's read lock: a usable backend not in exclude, or
     * NULL. It takes nothing: the table counts the connection, then calls
     * take. */
    be_t *(*pick)(be_table_t *t, void *ctx, be_t *const *exclude, int nexclude, uint64_t now_ms);
    /* b got a new connection (read lock held, b's active already counted). */
    void (*take)(be_table_t *t, void *ctx, be_t *b);
    /* One of b's connections ended (no lock; any thread; b may have been
     * removed meanwhile; not called once the table is gone). */
    void (*release)(be_table_t *t, void *ctx, be_t *b);
    /* b joined, left (be_removed()), changed state or got new published
     * counts (no lock; any thread). */
    void (*update)(be_table_t *t, void *ctx, be_t *b);
} be_algo_t;

/* "leastconn", "leastload", "roundrobin", "p2c"; NULL if unknown. */
const be_algo_t *be_algo_find(const char *name);

/* slowstart_ms: a backend that joined (or came back UP) less than this ago
 * has its weight scaled by max(0.1, age / slowstart_ms), so a fresh worker
 * takes connections at once but ramps up instead of absorbing every new
 * client; 0 disables. A NULL algo means leastconn. NULL without memory. */
be_table_t *be_table_create(const be_algo_t *algo, unsigned slowstart_ms);
void be_table_free(be_table_t *t);

/* Main thread only. Returns the backend (existing one if id is known). */
be_t *be_add(be_table_t *t, const char *id, const sock_addr_t *addr, unsigned weight,
             enum be_source src);
void be_remove(be_table_t *t, be_t *b);
be_t *be_find(be_table_t *t, const char *id);

/* Any thread. Picks a backend for a new client, taking a reference and
 * counting the connection as active. NULL when none is usable. */
be_t *be_pick(be_table_t *t, be_t *const *exclude, int nexclude);
/* Session affinity with bounded loads (lb/aff.h). Main thread, before
 * any other thread picks: turns it on with a bound of factor_milli/1000 x
 * the mean (at least 1000). 0, or -1 without memory. */
int be_table_set_affinity(be_table_t *t, unsigned factor_milli);
int be_table_affinity(const be_table_t *t); /* on */
/* Main thread. Brackets a run of be_add()s (a discovery refresh): with
 * affinity on, the ring is rebuilt once at the end instead of once per
 * add, which at a fleet's first discovery is the difference between one
 * sort of n x AFF_VNODES points and n of them. Until the end the new
 * backends take no session keys (they are picked by the algorithm only).
 * Calls nest. */
void be_table_batch(be_table_t *t, int begin);
/* Any thread. Like be_pick(), for a request whose session key hashes to
 * *key (NULL: it carries none): the key's owner on the ring while it is
 * usable, not excluded and within the bound; else the next backend on the
 * ring that is; else the algorithm's pick. *why (an enum aff_why) says why
 * the owner was passed over, or AFF_HIT; *fallback is 1 when the algorithm
 * picked (no key, or no backend on the ring within the bound). Without
 * affinity, be_pick(). */
be_t *be_pick_key(be_table_t *t, const uint64_t *key, be_t *const *exclude, int nexclude, int *why,
                  int *fallback);
/* The connection to b ended (or its connect failed): drops active and the
 * reference. t may be NULL once the table is gone. */
void be_release(be_table_t *t, be_t *b);

/* Health thresholds (defaults rise 2, fall 2; at most 255). Any thread;
 * events reported after the call use them. */
void be_table_set_health(be_table_t *t, int rise, int fall);
int be_table_rise(const be_table_t *t);
int be_table_fall(const be_table_t *t);
const be_algo_t *be_table_algo(const be_table_t *t);
/* Main thread (a reload): balances with algo from the next pick on. 0, or
 * -1 without memory (the current one stays). */
int be_table_set_algo(be_table_t *t, const be_algo_t *algo);
/* Main thread (a reload): b's new weight (1..256), from the next pick on. */
void be_set_weight(be_table_t *t, be_t *b, unsigned weight);

/* Like be_pick() with an explicit clock (monotonic ms, see be_now_ms()), so
 * tests can drive slow start. */
be_t *be_pick_at(be_table_t *t, be_t *const *exclude, int nexclude, uint64_t now_ms);
/* Monotonic milliseconds: the clock of joined_ms and slow start. */
uint64_t be_now_ms(void);
/* Seeds this thread's generator (p2c, slow start): for reproducible tests. */
void be_seed(uint64_t seed);

/* Extra references, e.g. a health check in flight (any thread). be_unref()
 * frees a removed backend when the last reference goes. */
void be_ref(be_t *b);
void be_unref(be_table_t *t, be_t *b);

/* ---- reading a backend (any thread unless said) ----------------------------- */

/* Fixed at be_add(). */
const char *be_id(const be_t *b);
const char *be_addr_str(const be_t *b);
const sock_addr_t *be_addr(const be_t *b);
enum be_source be_source(const be_t *b);
unsigned be_weight(const be_t *b);

/* Health and the drains of checks and the worker, without the admin drain. */
enum be_state be_state(const be_t *b);
/* "up", "down", "draining". */
const char *be_state_name(enum be_state st);
/* Takes new connections: up and drained by nobody. */
int be_usable(const be_t *b);
int be_in_admin_drain(const be_t *b);
int be_remote_draining(const be_t *b);
/* Removed from the table; freed with its last reference. */
int be_removed(const be_t *b);

/* Live connections as the balancer sees them: the worker's published count
 * plus this lb's change since, or this lb's own count without Redis. */
int64_t be_conns(const be_t *b);
int64_t be_active(const be_t *b);        /* this lb's open connections to it */
uint64_t be_total(const be_t *b);        /* connections this lb ever sent it */
uint64_t be_failures(const be_t *b);     /* check and passive failures */
int64_t be_load(const be_t *b);          /* published evaluations running + queued */
int be_has_remote(const be_t *b);        /* published counts are in use */
uint64_t be_remote_ts_ms(const be_t *b); /* the worker's ts_ms of them, 0 = none */
uint64_t be_joined_ms(const be_t *b);    /* slow start's start, 0 = none */

/* Main thread: what the worker published beyond its counts, for operators
 * (valid while be_has_remote()): 0 and "" when not published. */
int64_t be_evals_running(const be_t *b);
int64_t be_rebalance_shed(const be_t *b);
int64_t be_evals_queued(const be_t *b);
uint64_t be_started_ms(const be_t *b);
const char *be_version(const be_t *b);

/* ---- what the worker publishes (main thread) ------------------------------- */

/* Main thread, every BE_SAMPLE_MS while remote counts are in use: records
 * each backend's `active` at wall_ms for be_update_remote(). */
void be_table_sample(be_table_t *t, uint64_t wall_ms);

/* Main thread: the worker published `conns` and `load` at wall-clock ts_ms
 * (0 = unknown: taken as now). A snapshot no newer than the last one is
 * ignored, so a heartbeat read twice changes nothing. Returns 1 when the
 * snapshot was newer and applied, 0 when ignored. */
int be_update_remote(be_table_t *t, be_t *b, int64_t conns, int64_t load, uint64_t ts_ms);
/* Same, when the worker also said how many of its connections came from this
 * lb (mine >= 0; the X-Lb-Id header the lb sends): then the part of conns
 * that is other lbs' is exact, and no sample of this lb's own past count is
 * needed. mine < 0 falls back to the samples. */
int be_update_remote_ex(be_table_t *t, be_t *b, int64_t conns, int64_t load, uint64_t ts_ms,
                        int64_t mine);
/* Main thread: the websockets the worker says it closed to rebalance (its
 * --rebalance), ever. */
void be_update_rebalance(be_t *b, int64_t shed);
/* Main thread: forget the remote figures (worker key gone); back to local
 * counts. A drain the worker announced then ends only by health checks
 * (BE_EV_REMOTE_GONE). */
void be_clear_remote(be_table_t *t, be_t *b);
/* Main thread: the rest of what the worker published with its counts
 * (version may be NULL or "" when not published). */
void be_update_info(be_t *b, int64_t evals_running, int64_t evals_queued, uint64_t started_ms,
                    const char *version);

/* ---- admin drains, kept by id (main thread) -------------------------------- */

/* The operator's drain of a backend found through Redis must survive that
 * worker leaving and coming back (a deploy, an expired key, a new address),
 * so the table remembers drained ids until they are enabled, present or not,
 * and be_add() applies them. */
#define BE_ADMIN_DRAINED_MAX 4096

/* Drains (on = 1) or enables (on = 0) id, and the backend of that id if
 * present (BE_EV_ADMIN_DRAIN/ENABLE, logged once). 0, or -1 when on is 1 and
 * BE_ADMIN_DRAINED_MAX ids are already drained, or without memory. */
int be_admin_drain(be_table_t *t, const char *id, int on);
/* Whether id is admin-drained (present or not). */
int be_admin_drained(const be_table_t *t, const char *id);
/* The drained ids, in the order they were drained (i < count). */
size_t be_admin_drained_count(const be_table_t *t);
const char *be_admin_drained_at(const be_table_t *t, size_t i);

/* Iteration for the admin API, health checks and discovery (main thread,
 * or under the read lock). */
void be_table_rdlock(be_table_t *t);
void be_table_unlock(be_table_t *t);
size_t be_table_count(be_table_t *t);
be_t *be_table_at(be_table_t *t, size_t i);

#endif
