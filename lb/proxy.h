/* px: the lb's data path. N threads, each with its own ev_loop and its own
 * SO_REUSEPORT listener per address, accept clients, read and rewrite the
 * request head, pick a backend from the shared table (retrying another one
 * when a connect fails or a backend dies before answering), forward the
 * backend's response head and then tunnel bytes both ways until either side
 * is done.
 *
 * Only routed requests reach a backend (lb/route.h): websocket upgrades on
 * --route paths and plain requests under --proxy-http prefixes; the rest is
 * the lb's 404. A plain request uses the same path, one per connection: the
 * backend gets it with Connection: close and only its own body, so nothing
 * the client sends after it can reach the backend unrouted (HAProxy's
 * "httpclose"). */
#ifndef LB_PROXY_H
#define LB_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "aff.h"
#include "be.h"
#include "buf.h"
#include "cidr.h"
#include "http.h"
#include "lbs.h"
#include "lim.h"
#include "route.h"
#include "static.h"
#include "tls.h"

typedef struct px px_t;

typedef struct px_config {
    char *const *listen; /* "HOST:PORT" for plain HTTP */
    size_t nlisten;
    char *const *tls_listen; /* "HOST:PORT" terminated with tls */
    size_t ntls_listen;
    tls_t *tls; /* required when ntls_listen > 0; not owned */
    int threads;
    long max_conns;               /* 0 = unlimited */
    unsigned timeout_head_ms;     /* client head (and TLS handshake) */
    unsigned timeout_connect_ms;  /* one backend connect */
    unsigned timeout_response_ms; /* backend response head after the request */
    unsigned timeout_idle_s;      /* tunnel with no traffic; 0 = none */
    int retries;                  /* further backends tried after a failure */
    int access_log;               /* one log_info line per connection */
    size_t max_head;              /* request/response head limit; 0 = default */
    /* Per-client-address limits shared by every thread; NULL = none. Over a
     * limit a client gets 429 with Retry-After and is closed. Not owned. */
    lim_t *lim;
    /* Peers whose X-Forwarded-For is extended rather than replaced (and
     * whose X-Forwarded-Proto is kept), exempt from lim:
     * they speak for many clients. NULL = none. Not owned. */
    const cidr_set_t *trusted;
    /* Sent as X-Upstream-Secret with every request; NULL = none. Not owned. */
    const char *upstream_secret;
    /* Sent as X-Lb-Id with every request, so that workers count connections
     * per lb (see disc.h); NULL = none. Not owned. */
    const char *lb_id;
    /* What is proxied (--route, --proxy-http); NULL = websocket upgrades on
     * /eval only. Everything else is answered 404. Not owned. */
    const route_t *routes;
    /* A deliberate takeover of another lb's listeners (--takeover): skips
     * the check that nothing listens on the addresses yet. */
    int takeover;
    /* With takeover: the listening sockets received from the other lb.
     * Each serves the address it is bound to (one per thread and address
     * at most; threads left over bind their own with SO_REUSEPORT);
     * px_create owns them all once called, closing those no address wants,
     * whatever it returns. */
    int *taken;
    size_t ntaken;
    /* Files served from memory for GET and HEAD (--static); NULL = none.
     * Not owned. */
    st_t *st;
    /* A tunnel whose backend has been DOWN this long is ended, a websocket
     * with 1014 (px_down.h); 0 = at once. */
    unsigned down_close_ms;
    /* The lb's own pings to websocket clients (px_ping.h): every
     * ping_interval_s, and a client that answers none within ping_timeout_s
     * is closed. 0 = off. */
    unsigned ping_interval_s;
    unsigned ping_timeout_s;
    /* Where a websocket upgrade's session key is (--affinity); NULL = no
     * affinity. The table must have it on (be_table_set_affinity). Not
     * owned. */
    const aff_spec_t *aff;
    /* --accept-proxy: every connection starts with a PROXY protocol header
     * (v1 or v2) from a peer in trusted; anything else is closed. */
    int accept_proxy;
} px_config_t;

/* Binds every listener (one per address per thread) so that configuration
 * errors show up before anything runs. Unless cfg->takeover, each address
 * must be free first: SO_REUSEPORT would otherwise let this lb silently
 * share a port with another running lb, each getting part of the clients.
 * Then NULL with errno EADDRINUSE and "address in use: HOST:PORT". table,
 * stats, cfg->tls, cfg->lim, cfg->trusted, cfg->upstream_secret and
 * cfg->routes must outlive the px_t; the listen addresses are parsed here
 * and not kept. NULL with err on failure (errno 0 unless said above). */
px_t *px_create(be_table_t *table, lbs_t *stats, const px_config_t *cfg, char *err, size_t errlen);
/* Starts the threads. */
int px_start(px_t *p, char *err, size_t errlen);
/* Main thread (a reload): new connections from now on use cfg's limits,
 * timeouts, retries, access log, max_head, lim and trusted; the rest of cfg
 * is ignored. Timers already armed run out as they were; an open tunnel's
 * idle limit follows the new --timeout-idle-s from its next check. cfg->lim and
 * cfg->trusted must outlive the px_t (nothing reads the replaced ones after
 * px_free, but a thread may still be reading them now: keep them). */
void px_tune(px_t *p, const px_config_t *cfg);
/* Main thread, before px_stop_accepting(): every listening socket (tls[i]
 * says which are TLS), at most cap; the number there is. They stay p's. */
size_t px_listen_fds(px_t *p, int *fds, int *tls, size_t cap);
/* Any thread: closes the listeners; open connections keep running. */
void px_stop_accepting(px_t *p);
/* Any thread: closes every connection (close reason "shutdown") and lets
 * each thread's loop end. px_free() joins them. */
void px_shutdown(px_t *p);
/* Stops (if needed), joins and frees. NULL is a no-op. */
void px_free(px_t *p);
/* The address the first plain (tls=0) or TLS (tls=1) listener is bound to,
 * useful with port 0. -1 if there is none. */
int px_listen_addr(px_t *p, int tls, sock_addr_t *out);

/* Bytes one connection costs the lb while its tunnel is idle (for tests and
 * the docs): the connection struct, no buffers. */
size_t px_conn_idle_bytes(void);

#endif
