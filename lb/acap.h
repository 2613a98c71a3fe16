/* acap: who may hold one of the admin API's connections.
 *
 * The admin API answers the front's health checks and the operator's token,
 * so connections that say nothing must not be able to crowd those out.
 * Every connection counts against a total cap and a per-address cap (IPv6
 * per /64), and when a newcomer finds no room, an idle connection makes way
 * instead of the newcomer being refused:
 *
 *   1. an address at its cap can only displace its own oldest idle
 *      connection (one address cannot take more than per_addr);
 *   2. when the API is full, the first of these goes: the oldest connection
 *      already answered (only waiting for its client to hang up); for a
 *      loopback newcomer, the oldest idle one from off the host; the oldest
 *      idle one of the address holding the most idle connections, when that
 *      is more than the newcomer's address holds;
 *   3. a request that carried the admin token is never displaced; one being
 *      answered without a token only after every idle one.
 *
 * Idle means no complete request yet; admin.c gives those a short deadline.
 * Pure: admin.c keeps the connections and applies the verdict. */
#ifndef LB_ACAP_H
#define LB_ACAP_H

#include <stddef.h>
#include <stdint.h>

#include "lim.h"

enum acap_state {
    ACAP_IDLE = 0,  /* accepted, no complete request yet */
    ACAP_ANSWERING, /* request read, answer being written, no token */
    ACAP_AUTHED,    /* request read with the admin token, being answered */
    ACAP_DONE,      /* answered; waiting for the client's EOF */
};

typedef struct acap_peer {
    lim_key_t key;    /* lim_key_from_sa() of the peer */
    uint8_t loopback; /* 127.0.0.0/8 or ::1 */
    uint8_t state;    /* enum acap_state */
    uint64_t seq;     /* accept order: smaller is older */
} acap_peer_t;

typedef struct acap_limits {
    size_t max_conns; /* every admin connection */
    size_t per_addr;  /* connections one address (IPv6 /64) may hold */
} acap_limits_t;

enum acap_verdict {
    ACAP_ADMIT = 0,   /* room: take it */
    ACAP_EVICT = 1,   /* take it after closing open[*victim] */
    ACAP_REFUSE = -1, /* no room and nothing to displace: close the newcomer */
};

/* Pure: what to do with `newcomer` given the n connections open now. */
enum acap_verdict acap_admit(const acap_limits_t *lim, const acap_peer_t *const *open, size_t n,
                             const acap_peer_t *newcomer, size_t *victim);
/* Whether sa is a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
int acap_is_loopback(const struct sockaddr *sa);

#endif
