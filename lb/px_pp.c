/* px_pp: the PX_PROXY phase of a session (--accept-proxy). A network load
 * balancer in front puts a PROXY protocol header (lb/pp.h) before the
 * client's first byte; from it the client's address replaces the peer's, so
 * X-Forwarded-For, the per-address limits and the access log see the client
 * rather than the balancer.
 *
 * Only a peer in --trusted-proxies may send one: anyone else could claim any
 * address. A missing or malformed header, or an untrusted peer, closes the
 * connection, counted (proxy_bad, proxy_untrusted) and logged.
 *
 * The header is read with MSG_PEEK and only its own bytes are then taken
 * from the socket, so what follows stays there for the next reader: the
 * request head, or the TLS ClientHello that OpenSSL reads from the
 * descriptor itself. Every byte peeked is either header (taken) or ends the
 * phase, so a partial header never leaves readable bytes behind to wake the
 * loop again and again. */
#include "px_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "pp.h"
#include "sock.h"

/* Enough for the longest header pp accepts: one peek sees it all. */
#define PX_PP_PEEK (16 + PP_V2_MAX_LEN)

static void px_pp_refuse(px_conn_t *c, enum lbs_err e, enum px_reason r, const char *why)
{
    char peer[SOCK_ADDRSTRLEN];
    sock_addr_t pa;
    px_peer_addr(c, &pa);
    sock_addr_str(&pa, peer, sizeof(peer));
    lbs_inc(&c->th->px->stats->errors[e]);
    log_warn("proxy protocol: closing %s: %s", peer, why);
    px_close(c, r);
}

int px_proxy_accept(px_conn_t *c)
{
    const cidr_set_t *tp = PX_CFG(c->th->px, trusted);
    if (tp != NULL && cidr_set_match(tp, &c->peer.sa))
        return 0;
    px_pp_refuse(c, LBS_ERR_PROXY_UNTRUSTED, PX_R_PROXY_UNTRUSTED,
                 "peer is not in --trusted-proxies");
    return -1;
}

/* The header is complete: the client is who it says, and c goes on to its
 * first phase as if it had just been accepted from there. */
static void px_pp_done(px_conn_t *c, const pp_info_t *info)
{
    px_t *px = c->th->px;
    if (info->has_addr && info->src.len <= sizeof(c->peer))
        memcpy(&c->peer, &info->src.ss, info->src.len);
    free(c->pre->pp);
    c->pre->pp = NULL;
    px_admit_addr(c);
    if (c->tls) {
        if (px_io_tls_attach(&c->a, px->cfg.tls) < 0) {
            px_close(c, PX_R_NO_MEMORY);
            return;
        }
        c->phase = PX_TLS_HS;
        return; /* the ClientHello, if already here, wakes the loop again */
    }
    c->phase = PX_HEAD;
    if (c->limited) {
        px_reply_limited(c);
        return;
    }
    /* The request head usually came in the same segment as the header:
     * read it now, as px_conn_new does for a connection without one,
     * rather than after a trip through epoll. */
    c->rd_hint_a = 1;
    px_read_head(c);
}

void px_read_proxy(px_conn_t *c)
{
    px_pre_t *q = c->pre;
    if (q->pp == NULL) {
        q->pp = malloc(sizeof(*q->pp));
        if (q->pp == NULL) {
            px_close(c, PX_R_NO_MEMORY);
            return;
        }
        pp_init(q->pp);
    }
    char *buf = c->th->scratch;
    /* Each round takes every byte it peeked or ends the phase: bounded by
     * the header's own bound. */
    for (;;) {
        ssize_t n = recv(c->a.fd, buf, PX_PP_PEEK, MSG_PEEK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            px_close(c, PX_R_CLIENT_RESET);
            return;
        }
        if (n == 0) {
            /* A bare connect and close (a TCP health check) is no error. */
            if (q->pp->n == 0)
                px_close(c, PX_R_CLIENT_EOF);
            else
                px_pp_refuse(c, LBS_ERR_PROXY_BAD, PX_R_PROXY_BAD,
                             "connection closed inside the PROXY header");
            return;
        }
        size_t used = 0;
        pp_info_t info;
        const char *err = "?";
        int rc = pp_feed(q->pp, buf, (size_t)n, &used, &info, &err);
        if (rc < 0) {
            px_pp_refuse(c, LBS_ERR_PROXY_BAD, PX_R_PROXY_BAD, err);
            return;
        }
        /* Take exactly the header's bytes out of the socket. */
        while (used > 0) {
            ssize_t r = recv(c->a.fd, buf, used, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) { /* they were there a moment ago */
                px_close(c, PX_R_CLIENT_RESET);
                return;
            }
            used -= (size_t)r;
        }
        if (rc == PP_DONE) {
            px_pp_done(c, &info);
            return;
        }
    }
}
