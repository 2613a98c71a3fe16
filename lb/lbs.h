/* lbs: the lb's global counters, shared by the proxy threads (which update
 * them with relaxed atomics) and the admin API (which renders them). */
#ifndef LB_LBS_H
#define LB_LBS_H

#include <stdint.h>

#include "aff.h"
#include "atomic.h"
#include "met.h"

enum lbs_err {
    LBS_ERR_BAD_REQUEST = 0, /* 400 */
    LBS_ERR_HEAD_TOO_LARGE,  /* 431 */
    LBS_ERR_HEAD_TIMEOUT,    /* 408 */
    LBS_ERR_NO_BACKEND,      /* 503 */
    LBS_ERR_ALL_FAILED,      /* 502 */
    LBS_ERR_CONNECT,         /* one backend connect failed (retried) */
    LBS_ERR_BACKEND_TIMEOUT, /* backend never answered the head */
    LBS_ERR_TLS,             /* TLS handshake failed */
    LBS_ERR_OVERLOAD,        /* shed: max-conns or EMFILE */
    LBS_ERR_RATE_LIMITED,    /* 429 */
    LBS_ERR_NOT_FOUND,       /* 404: not a --route or --proxy-http path */
    LBS_ERR_EVICTED,         /* over the cap: a silent connection closed to make room */
    LBS_ERR_PROXY_BAD,       /* --accept-proxy: the PROXY header was missing or malformed */
    LBS_ERR_PROXY_UNTRUSTED, /* --accept-proxy: a peer outside --trusted-proxies */
    LBS_ERR__COUNT
};

typedef struct lbs {
    uint64_t accepted;
    int64_t active;
    uint64_t handshakes; /* upgrades that got a 101 */
    uint64_t requests;   /* plain HTTP requests proxied */
    uint64_t bytes_in;   /* client -> backend */
    uint64_t bytes_out;  /* backend -> client */
    uint64_t errors[LBS_ERR__COUNT];
    met_hist_t *handshake_ms; /* accept to first byte of the backend's answer */
    /* admin API connections closed before an answer (lb/acap.c) */
    uint64_t admin_refused;   /* no room and nothing to displace */
    uint64_t admin_evicted;   /* idle, displaced by a newcomer */
    uint64_t admin_timed_out; /* no complete request within the deadline */
    /* websocket-aware closes (lb/px_down.c, lb/px_ping.c) */
    uint64_t handshakes_moved;     /* waiting on a backend marked down: sent elsewhere */
    uint64_t handshakes_abandoned; /* the client left while its request waited */
    uint64_t down_closed;          /* tunnels ended on a backend DOWN past --down-close-ms */
    uint64_t pings_sent;           /* the lb's own pings to websocket clients */
    uint64_t ping_timeouts;        /* clients closed for answering no ping in time */
    /* the configuration (lb/rld.c): 1 at start, +1 per applied reload */
    uint64_t config_generation;
    uint64_t config_loaded_ms; /* wall clock of the last load */
    uint64_t reload_failed;    /* reloads refused: the running one stayed */
    /* --affinity: picks by what became of the key's owner (hit, or why it
     * was passed over), and picks the algorithm made instead of the ring */
    uint64_t aff[AFF_WHY__COUNT];
    uint64_t aff_fallback;
} lbs_t;

/* Short names for JSON/Prometheus labels: "bad_request", "head_too_large", ... */
const char *lbs_err_name(enum lbs_err e);

static inline void lbs_inc(uint64_t *c)
{
    AT_ADD(c, 1);
}
static inline void lbs_add(uint64_t *c, uint64_t n)
{
    AT_ADD(c, n);
}
static inline void lbs_active(lbs_t *s, int64_t d)
{
    AT_ADD(&s->active, d);
}

#endif
