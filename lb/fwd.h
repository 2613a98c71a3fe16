/* fwd: the request head the lb sends a backend: the client's, with the
 * headers that say who the client is set by the lb.
 *
 * A backend must be able to believe what it is told about the client, so
 * whatever a client sent under those names is dropped and replaced:
 *
 *   X-Forwarded-For    the client address; from a trusted proxy its list
 *                      (every line, merged) with the address appended
 *   X-Forwarded-Proto  http or https; from a trusted proxy its own is kept
 *   X-Real-IP          the client address; from a trusted proxy its own is kept
 *   Forwarded          (RFC 7239) for=<client>;proto=<scheme>; from a trusted
 *                      proxy appended to its list, as X-Forwarded-For is
 *   X-Request-Id       always the lb's own, the one its access log shows
 *   X-Upstream-Secret, X-Lb-Id   always the lb's own, or none
 *
 * Other headers through which proxies and CDNs name the client or the
 * original request (X-Forwarded-Host/-Port/-Server/-Prefix, X-Client-IP,
 * True-Client-IP, X-Cluster-Client-IP, CF-Connecting-IP, Fastly-Client-IP,
 * X-Original-Forwarded-For, Client-IP) pass only from a trusted proxy.
 * Names are matched without regard to case, and a name that is one of these
 * with '_' for '-' (X_Forwarded_For) is always dropped: CGI, WSGI and Rack
 * map both spellings to the same variable, so it could stand in for the
 * real one. Every other byte passes untouched. */
#ifndef LB_FWD_H
#define LB_FWD_H

#include <stddef.h>

#include "buf.h"
#include "http.h"

typedef struct fwd {
    const char *client_ip;       /* the peer's address, without port */
    const char *proto;           /* "http" or "https" */
    const char *request_id;      /* X-Request-Id */
    int trusted;                 /* the peer is a trusted proxy */
    const char *upstream_secret; /* X-Upstream-Secret to add; NULL = none */
    const char *lb_id;           /* X-Lb-Id to add; NULL = none */
    /* A plain request: one per connection. The client's Connection,
     * Keep-Alive, Proxy-Connection and Upgrade lines are dropped and
     * "Connection: close" added, so the backend closes after its answer and
     * nothing the client sends later on that connection can reach it. */
    int close;
    size_t body_max; /* with close: bytes after the head to pass on (its body) */
} fwd_t;

/* Lines fwd_rewrite_head adds to any request: X-Forwarded-For,
 * X-Forwarded-Proto, X-Real-IP, Forwarded and X-Request-Id, then one each
 * for an upstream secret, an lb id and close when they apply. */
#define FWD_BASE_LINES 5

/* Pure: appends to out the request line and headers of data[0..h->head_len)
 * (parsed into h by http_parse_request), rewritten as above, then the lb's
 * lines in this order: X-Forwarded-For, X-Forwarded-Proto (unless a trusted
 * proxy's was kept), X-Real-IP (same), Forwarded, X-Request-Id,
 * X-Upstream-Secret, X-Lb-Id, Connection: close; then the bytes that
 * followed the head (with f->close, at most f->body_max of them). Returns 0,
 * or -1 on a head that does not match h or allocation failure. */
int fwd_rewrite_head(const char *data, size_t len, const http_head_t *h, const fwd_t *f,
                     buf_t *out);

#endif
