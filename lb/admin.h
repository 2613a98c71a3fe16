/* admin: the lb's admin HTTP API (main loop, one request per connection).
 *
 *   GET  /stats                  JSON totals and per-backend figures
 *   GET  /metrics                Prometheus text
 *   POST /backends/<id>/drain    no new connections to it; existing ones kept
 *   POST /backends/<id>/enable   undo a drain
 *   GET  /healthz                200 ok when the lb can serve; 503 and the reason
 *                                when it cannot (shutting down, still loading, no
 *                                usable backend), for whatever sits in front of it
 *   GET  /livez                  200 ok while the process runs
 *
 * With a token, every request needs `Authorization: Bearer <token>`, except
 * GETs when open_reads is set. */
#ifndef LB_ADMIN_H
#define LB_ADMIN_H

#include <stddef.h>

#include "be.h"
#include "buf.h"
#include "lbs.h"
#include "met.h"

struct ev_loop;

typedef struct admin admin_t;

/* What the lb as a whole is doing, as /healthz reports it. */
enum admin_life {
    ADMIN_LIFE_SERVING = 0,
    ADMIN_LIFE_LOADING,  /* discovery has not read Redis once yet */
    ADMIN_LIFE_STOPPING, /* no longer accepting: tunnels finishing their grace */
};

typedef struct admin_config {
    const char *listen; /* "HOST:PORT"; NULL = 127.0.0.1:8081 */
    const char *token;  /* NULL = no auth */
    /* With a token: GET needs none (a loopback listener, where local
     * scrapers read); POST always does. 0 = every request needs it. */
    int open_reads;
    /* Optional registry rendered at the end of /metrics, e.g. the one that
     * holds stats->handshake_ms. NULL = none. */
    met_registry_t *metrics;
    /* Main loop, at each /healthz: the lb's phase. NULL = always serving. */
    enum admin_life (*life)(void *ud);
    void *life_ud;
    /* A listening socket taken over from another lb (--takeover) to use
     * instead of binding listen; owned once admin_create succeeds. */
    int has_fd, fd;
} admin_config_t;

/* Listens at once. t and stats must outlive the server; cfg is copied.
 * NULL with err on failure, errno EADDRINUSE when the address is taken. */
admin_t *admin_create(struct ev_loop *loop, be_table_t *t, lbs_t *stats, const admin_config_t *cfg,
                      char *err, size_t errlen);
/* Closes the listener and every connection. NULL is a no-op. */
void admin_free(admin_t *a);
/* Main thread (a reload): the token from now on (NULL = none). 0, or -1
 * without memory (the current one stays). */
int admin_set_token(admin_t *a, const char *token);
/* The listening socket (stays a's), for a takeover to pass on. */
int admin_listen_fd(const admin_t *a);
/* Actual listening address (useful with port 0). */
int admin_local_addr(const admin_t *a, sock_addr_t *out);

/* Pure renderers, exposed for tests. Append to out; 0 or -1. */
int admin_render_stats(be_table_t *t, lbs_t *stats, const char *algo, buf_t *out);
int admin_render_metrics(be_table_t *t, lbs_t *stats, met_registry_t *extra, buf_t *out);
/* The /healthz body for life and the table; returns the status (200 when
 * the lb can serve, 503 otherwise) or -1 without memory. Main thread. */
int admin_render_health(be_table_t *t, enum admin_life life, buf_t *out);

#endif
