/* fleet: the contract between load balancers and workers, in one place.
 *
 * What one side writes and the other reads lives here and nowhere else: the
 * Redis keys and the events channel, the id rules, the headers the lb adds
 * for the workers, and the wall clock both sides stamp Redis state with.
 * README.md ("Redis schema") describes the same for operators. */
#ifndef COMMON_FLEET_H
#define COMMON_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "sock.h"

/* ---- ids ------------------------------------------------------------------ */

#define FLEET_ID_MAX 63

/* True for an identifier the lb and its workers exchange in a header and
 * publish as a JSON key (X-Lb-Id): 1-63 of A-Z a-z 0-9 . _ : -. One rule on
 * both sides, so what the lb sends is what the worker counts. */
int fleet_id_ok(const char *p, size_t n);
/* Writes into out (at least 64 bytes) a default id that passes fleet_id_ok,
 * unique per process: "HOST-PID" when the host name fits the rule as it
 * is, else the host name with characters outside the rule as '-', cut to
 * fit, then "-" and 6 hex digits of a hash of the whole name, then "-PID",
 * so two long names that share a prefix stay apart. An empty name is "lb".
 * Returns out. */
char *fleet_id_default(const char *host, long pid, char *out, size_t outlen);

/* ---- Redis ---------------------------------------------------------------- */

/* Every key starts with a prefix (--redis-prefix on each daemon). */
#define FLEET_DEFAULT_PREFIX "wslb:"
/* A worker's state key expires this long after its last write (PX), so a
 * worker that dies silently is gone from Redis within it... */
#define FLEET_STATE_TTL_MS 3000
/* ...and it writes the state this often while alive. */
#define FLEET_HEARTBEAT_MS 1000

/* Key builders. Each writes the name into buf (len bytes, NUL-terminated,
 * cut to fit; buf may be NULL when len is 0) and returns its full length,
 * as snprintf does: a result >= len did not fit. prefix NULL is
 * FLEET_DEFAULT_PREFIX.
 *   <prefix>workers      set: ids of workers that registered
 *   <prefix>worker:<id>  string: the worker's state JSON, PX FLEET_STATE_TTL_MS
 *   <prefix>events       pub/sub channel: join, drain and leave events */
size_t fleet_key_workers(const char *prefix, char *buf, size_t len);
size_t fleet_key_worker(const char *prefix, const char *id, size_t idlen, char *buf, size_t len);
size_t fleet_key_events(const char *prefix, char *buf, size_t len);

/* Rebalancing (the worker's --rebalance): a fleet-wide budget of sockets
 * shed per wall-clock second, shared by every worker through one counter
 * per second:
 *   <prefix>rebalance:<unix second>  string: tokens taken in that second,
 *                                    SET NX EX FLEET_REBALANCE_TTL_S, INCRBY
 * A worker that wants k tokens sends INCRBY k and gets
 * fleet_rebalance_granted(rate, k, reply) of them: the counter only grows
 * within its second, so two workers asking at once never get more than
 * rate together. */
#define FLEET_REBALANCE_TTL_S 5
size_t fleet_key_rebalance(const char *prefix, uint64_t unix_s, char *buf, size_t len);
/* Pure: of want tokens asked with INCRBY, how many were granted when the
 * counter read after once it was added (0..want). */
int64_t fleet_rebalance_granted(int64_t rate, int64_t want, int64_t after);

/* Worker ids (--id) as published: 1-127 bytes, no control characters. */
#define FLEET_WORKER_ID_LEN 128
int fleet_worker_id_ok(const char *p, size_t n);

/* One message on the events channel: {"event":"join","id":..,"addr":..}. */
enum fleet_event_type { FLEET_EV_JOIN = 0, FLEET_EV_DRAIN, FLEET_EV_LEAVE };

typedef struct fleet_event {
    enum fleet_event_type type;
    char id[FLEET_WORKER_ID_LEN];
    char addr[SOCK_ADDRSTRLEN]; /* as the worker advertises it; "" when absent */
} fleet_event_t;

/* "join", "drain" or "leave". */
const char *fleet_event_name(enum fleet_event_type t);
/* The message as compact JSON (free() it); NULL when out of memory. */
char *fleet_event_to_json(const fleet_event_t *e);
/* Pure: parses and validates one message (an unknown event is an error).
 * Returns 0, or -1 with a reason in err (may be NULL). */
int fleet_event_parse(const char *json, size_t len, fleet_event_t *out, char *err, size_t errlen);

/* ---- the worker's state ------------------------------------------------------ */

/* What <prefix>worker:<id> holds, refreshed every FLEET_HEARTBEAT_MS:
 *   {"id":"w1","addr":"127.0.0.1:9001","state":"up","conns":12,
 *    "evals_running":1,"evals_queued":0,"max_evals":4,"load":1,
 *    "ts_ms":1764150000000,"started_ms":1764149000000,"isolation":"full",
 *    "version":"0.1.0","slots_broken":0,"rebalance_shed":0,
 *    "by_lb":{"lb1-4242":7,"lb2-977":5}}
 * id, addr, state and conns are required; the rest may be absent (older
 * workers), and a reader takes an absent field as 0 or "". */

#define FLEET_VERSION_LEN   64
#define FLEET_ISOLATION_LEN 256
/* Ids in by_lb at most: a worker counts connections of more lbs in conns
 * only. */
#define FLEET_MAX_LBS 32
/* Counts above this are not believable, and would only risk overflow in a
 * balancer's arithmetic. */
#define FLEET_MAX_COUNT 1000000000LL

/* Which optional fields a state holds (fleet_state_t.has). */
enum {
    FLEET_HAS_EVALS_RUNNING = 1u << 0,
    FLEET_HAS_EVALS_QUEUED = 1u << 1,
    FLEET_HAS_MAX_EVALS = 1u << 2,
    FLEET_HAS_LOAD = 1u << 3,
    FLEET_HAS_TS = 1u << 4,
    FLEET_HAS_STARTED = 1u << 5,
    FLEET_HAS_ISOLATION = 1u << 6,
    FLEET_HAS_VERSION = 1u << 7,
    FLEET_HAS_SLOTS_BROKEN = 1u << 8,
    FLEET_HAS_BY_LB = 1u << 9,
    FLEET_HAS_REBALANCE_SHED = 1u << 10,
    FLEET_HAS_ALL = (1u << 11) - 1,
};

typedef struct fleet_lb_count {
    char id[FLEET_ID_MAX + 1]; /* fleet_id_ok */
    int64_t n;
} fleet_lb_count_t;

typedef struct fleet_state {
    char id[FLEET_WORKER_ID_LEN]; /* fleet_worker_id_ok */
    /* "HOST:PORT" of a numeric, reachable address (no wildcard, no port 0);
     * parsed: as sock_addr_str renders sa. */
    char addr[SOCK_ADDRSTRLEN];
    sock_addr_t sa; /* filled by the parser only */
    int draining;   /* "state": "draining"; else "up" */
    int64_t conns;  /* open websockets, from every lb */
    unsigned has;   /* FLEET_HAS_*: the optional fields below that are present */
    int64_t evals_running, evals_queued, max_evals, slots_broken; /* 0 when absent */
    int64_t rebalance_shed; /* websockets it closed with 1012 to rebalance, ever */
    /* "load"; when absent, the parser sets evals_running + evals_queued */
    int64_t load;
    uint64_t ts_ms;      /* fleet_wall_ms() when taken; 0 when absent */
    uint64_t started_ms; /* when the process started; 0 when absent */
    char isolation[FLEET_ISOLATION_LEN];
    char version[FLEET_VERSION_LEN]; /* "" when absent */
    size_t nlbs;                     /* entries of by_lb */
    fleet_lb_count_t by_lb[FLEET_MAX_LBS];
    /* Parsed for an lb id: its by_lb count; 0 when by_lb lists only other
     * lbs; -1 when there is no by_lb (older workers) or no lb id. */
    int64_t mine;
} fleet_state_t;

/* The state as compact JSON (free() it), fields in the order above, each
 * optional one only when s->has says so; NULL when out of memory. The
 * caller fills s within the rules fleet_state_parse checks. */
char *fleet_state_to_json(const fleet_state_t *s);
/* Pure: parses and validates one state; lb_id (may be NULL) is the reader's
 * own id, for out->mine. Every field present is checked: a worker id, a
 * reachable numeric address, "up" or "draining", counts 0..FLEET_MAX_COUNT,
 * non-negative times, printable version and isolation that fit, by_lb an
 * object of at most FLEET_MAX_LBS fleet_id_ok ids with counts; no key
 * twice. Returns 0, or -1 with a reason in err (may be NULL). */
int fleet_state_parse(const char *json, size_t len, const char *lb_id, fleet_state_t *out,
                      char *err, size_t errlen);
/* "up" or "draining". */
const char *fleet_state_name(const fleet_state_t *s);

/* ---- headers -------------------------------------------------------------- */

/* What the lb adds to every head it sends a worker, replacing any a client
 * sent (lb/fwd.h says how each is built). */
#define FLEET_HDR_LB_ID           "X-Lb-Id"           /* the lb's id (fleet_id_ok) */
#define FLEET_HDR_SECRET          "X-Upstream-Secret" /* --upstream-secret-file */
#define FLEET_HDR_REQUEST_ID      "X-Request-Id"      /* the lb's access-log id */
#define FLEET_HDR_FORWARDED_FOR   "X-Forwarded-For"
#define FLEET_HDR_FORWARDED_PROTO "X-Forwarded-Proto"
#define FLEET_HDR_REAL_IP         "X-Real-IP"
#define FLEET_HDR_FORWARDED       "Forwarded" /* RFC 7239 */

/* ---- time ----------------------------------------------------------------- */

/* Wall-clock milliseconds: the clock of ts_ms and started_ms in a worker's
 * state, compared across hosts. */
uint64_t fleet_wall_ms(void);

#endif
