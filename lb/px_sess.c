/* px_sess: the session state machine of the lb's data path (see proxy.h,
 * and px_int.h for the other rooms).
 *
 * A connection goes through phases:
 *
 *   TLS_HS   TLS handshake (TLS listeners only)
 *   HEAD     reading the client's request head into hbuf
 *   CONNECT  non-blocking connect to the picked backend
 *   WAIT     request prefix (rewritten head + bytes read with it) sent from
 *            hbuf, backend's response head read into rbuf
 *   TUNNEL   bytes both ways until both sides are done
 *   REPLY    an answer of the lb's own (400, 404, 408, 411, 429, 431, 502, 503)
 *            being sent
 *   LINGER   after REPLY: reading and dropping until the client closes, so
 *            that closing with unread input does not reset the connection
 *            before the client has read the answer
 *
 * Until the first byte of a response reaches the client nothing is lost by
 * trying another backend: hbuf is kept until then, so a backend that refuses,
 * times out, or accepts and closes without answering is retried with the same
 * prefix on another one, and the client never sees the failure. One function,
 * px_retry_policy, decides what each failure costs the client. hbuf, rbuf
 * and the backends tried live in c->pre, which goes when the tunnel starts.
 *
 * The tunnel reads a side only while the other side's output buffer is under
 * PX_TUNNEL_CAP (backpressure), reads into one per-thread scratch buffer and
 * writes straight to the other socket; only what the socket does not take at
 * once is copied into that side's buf_t, which frees its memory when drained.
 * An idle tunnel therefore holds no buffer at all: px_conn_idle_bytes(). */
#include "px_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alog.h"
#include "log.h"
#include "met.h"
#include "px_ping.h"
#include "sock.h"
#include "ws.h"

static const char *const px_reason_names[PX_R__COUNT] = {
    [PX_R_NONE] = "-",
    [PX_R_CLIENT_EOF] = "client_eof",
    [PX_R_BACKEND_EOF] = "backend_eof",
    [PX_R_CLIENT_RESET] = "client_reset",
    [PX_R_BACKEND_RESET] = "backend_reset",
    [PX_R_IDLE_TIMEOUT] = "idle_timeout",
    [PX_R_HEAD_TIMEOUT] = "head_timeout",
    [PX_R_BAD_REQUEST] = "bad_request",
    [PX_R_HEAD_TOO_LARGE] = "head_too_large",
    [PX_R_NO_BACKEND] = "no_backend",
    [PX_R_ALL_FAILED] = "all_failed",
    [PX_R_OVERLOAD] = "overload",
    [PX_R_TLS_ERROR] = "tls_error",
    [PX_R_SHUTDOWN] = "shutdown",
    [PX_R_NO_MEMORY] = "no_memory",
    [PX_R_RATE_LIMITED] = "rate_limited",
    [PX_R_NOT_FOUND] = "not_found",
    [PX_R_CLIENT_CLOSE] = "client_close",
    [PX_R_BACKEND_CLOSE] = "backend_close",
    [PX_R_BACKEND_LOST] = "backend_lost",
    [PX_R_EVICTED] = "evicted",
    [PX_R_BACKEND_DOWN] = "backend_down",
    [PX_R_PING_TIMEOUT] = "ping_timeout",
    [PX_R_PROXY_BAD] = "proxy_bad",
    [PX_R_PROXY_UNTRUSTED] = "proxy_untrusted",
};

size_t px_conn_idle_bytes(void)
{
    return sizeof(px_conn_t);
}

void px_set_reason(px_conn_t *c, enum px_reason r)
{
    if (c->reason == PX_R_NONE)
        c->reason = (uint8_t)r;
}

/* Marks c for freeing by the callback that is running; the first reason
 * given wins (it is the cause, later ones are consequences). */
void px_close(px_conn_t *c, enum px_reason r)
{
    px_set_reason(c, r);
    c->closing = 1;
}

/* The hq list: connections that have not sent a complete request head, in
 * accept order, so that over the connection cap the oldest silent one can
 * make way for a newcomer (px_conn_new). */
static void px_hq_add(px_conn_t *c)
{
    px_thread_t *th = c->th;
    c->pre->hq_prev = th->hq_last;
    c->pre->hq_next = NULL;
    if (th->hq_last)
        th->hq_last->pre->hq_next = c;
    else
        th->hq_first = c;
    th->hq_last = c;
    c->in_hq = 1;
}

void px_hq_del(px_conn_t *c)
{
    px_thread_t *th = c->th;
    if (!c->in_hq)
        return;
    px_pre_t *q = c->pre;
    if (q->hq_prev)
        q->hq_prev->pre->hq_next = q->hq_next;
    else
        th->hq_first = q->hq_next;
    if (q->hq_next)
        q->hq_next->pre->hq_prev = q->hq_prev;
    else
        th->hq_last = q->hq_prev;
    c->in_hq = 0;
}

void px_pre_free(px_conn_t *c)
{
    if (c->pre == NULL)
        return;
    px_hq_del(c);
    /* What the access log reads outlives pre only when the log will be
     * written; a reload that turns the log on later logs its counts as
     * null for such a connection. */
    if (c->acct == &c->pre->acct) {
        c->acct = NULL;
        if (PX_CFG(c->th->px, access_log) && (c->acct = malloc(sizeof(*c->acct))) != NULL)
            *c->acct = c->pre->acct;
    }
    buf_free(&c->pre->hbuf);
    buf_free(&c->pre->rbuf);
    free(c->pre->pp);
    free(c->pre);
    c->pre = NULL;
}

const char *px_req(const px_conn_t *c)
{
    return c->acct != NULL ? c->acct->req : "";
}

/* The id is made of the thread's random prefix, its index and the
 * request's sequence number, so only the number needs keeping. */
void px_reqid(const px_conn_t *c, char *out)
{
    snprintf(out, PX_REQID_LEN, "%06x%02x%08x", c->th->rid_rand & 0xffffff,
             (unsigned)c->th->idx & 0xff, c->rid);
}

/* Sets the events an io watcher waits for, touching libev only on change. */
static void px_watch(struct ev_loop *loop, px_side_t *s, int events)
{
    if (s->fd < 0)
        return;
    if (ev_is_active(&s->io) && (s->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(loop, &s->io);
    if (events == 0)
        return;
    ev_io_set(&s->io, s->fd, events);
    ev_io_start(loop, &s->io);
}

/* Arms the single timer for `after` seconds (0 = off). */
void px_timer(px_conn_t *c, double after)
{
    ev_timer_stop(c->th->loop, &c->timer);
    if (after > 0) {
        ev_timer_set(&c->timer, after, 0);
        ev_timer_start(c->th->loop, &c->timer);
    }
}

/* The tunnel's current time limit in seconds (0 = none): the idle timeout,
 * shortened once either side has finished. */
double px_tunnel_limit(px_conn_t *c)
{
    double lim = PX_CFG(c->th->px, timeout_idle_s);
    if ((c->a.rd_eof || c->b.rd_eof) && (lim == 0 || lim > PX_FIN_TIMEOUT_S))
        lim = PX_FIN_TIMEOUT_S;
    return lim;
}

/* Recomputes what each socket waits for from the phase and buffers. */
static void px_update(px_conn_t *c)
{
    struct ev_loop *loop = c->th->loop;
    int ea = 0, eb = 0;

    if (c->closing)
        return;
    switch (c->phase) {
    case PX_PROXY:
        ea = EV_READ;
        break;
    case PX_TLS_HS:
        ea = (c->a.wants & PX_IO_RECV_WANTS_WRITE) ? EV_WRITE : EV_READ;
        break;
    case PX_HEAD:
        ea = EV_READ | ((c->a.wants & PX_IO_RECV_WANTS_WRITE) ? EV_WRITE : 0);
        break;
    case PX_CONNECT:
        eb = EV_WRITE;
        break;
    case PX_WAIT:
    case PX_TUNNEL: {
        int hdone = c->phase == PX_TUNNEL || c->pre->hsent == buf_size(&c->pre->hbuf);
        if (!c->a.rd_eof && hdone && px_out_size(&c->b) < PX_TUNNEL_CAP)
            ea |= EV_READ;
        if (c->a.wants & PX_IO_SEND_WANTS_READ)
            ea |= EV_READ;
        if (px_out_size(&c->a) > 0 || (c->a.wants & PX_IO_RECV_WANTS_WRITE))
            ea |= EV_WRITE;
        if (!c->b.rd_eof && (c->phase == PX_WAIT || px_out_size(&c->a) < PX_TUNNEL_CAP))
            eb |= EV_READ;
        if (px_out_size(&c->b) > 0 || !hdone)
            eb |= EV_WRITE;
        break;
    }
    case PX_REPLY:
        ea = EV_WRITE | ((c->a.wants & PX_IO_SEND_WANTS_READ) ? EV_READ : 0);
        break;
    case PX_LINGER:
        ea = EV_READ;
        break;
    }
    px_watch(loop, &c->a, ea);
    px_watch(loop, &c->b, eb);
}

/* Drops the backend connection (not the backend reference). */
void px_close_backend_fd(px_conn_t *c)
{
    if (c->b.fd >= 0) {
        ev_io_stop(c->th->loop, &c->b.io);
        close(c->b.fd);
        c->b.fd = -1;
    }
    px_out_free(&c->b);
    if (c->pre != NULL) {
        buf_free(&c->pre->rbuf);
        c->pre->hsent = 0;
    }
    c->b.rd_eof = c->b.wr_shut = c->b.shut_pending = 0;
}

static void px_release_backend(px_conn_t *c)
{
    px_close_backend_fd(c);
    if (c->be != NULL) {
        be_release(c->th->px->table, c->be);
        c->be = NULL;
    }
}

/* A unit test that includes this file defines it to see each connection
 * as it ends (tests/unit/pxfx.h). */
#ifndef PX_SESS_FREE_HOOK
#define PX_SESS_FREE_HOOK(c) ((void)0)
#endif

/* Precondition: c is unlinked from nothing yet; every watcher belongs to
 * c->th->loop. Frees c and everything it holds; logs the access line. */
void px_conn_free(px_conn_t *c)
{
    px_thread_t *th = c->th;
    px_t *px = th->px;

    PX_SESS_FREE_HOOK(c);

    ev_io_stop(th->loop, &c->a.io);
    ev_io_stop(th->loop, &c->b.io);
    ev_timer_stop(th->loop, &c->timer);
    px_hq_del(c);

    if (PX_CFG(px, access_log)) {
        char host[SOCK_ADDRSTRLEN] = "-", rid[PX_REQID_LEN];
        sock_addr_t pa;
        px_peer_addr(c, &pa);
        sock_addr_str(&pa, host, sizeof(host));
        px_reqid(c, rid);
        alog_rec_t r = {
            .client = host,
            .backend = c->be ? be_id(c->be) : NULL,
            .req = px_req(c)[0] ? px_req(c) : NULL,
            .status = c->status,
            .ms = c->acct ? (double)(px_now_ns() - c->acct->start_ns) / 1e6 : 0,
            .in = c->acct ? c->acct->bytes_in : 0,
            .out = c->acct ? c->acct->bytes_out : 0,
            .uncounted = c->acct == NULL,
            .reason = px_reason_names[c->reason ? c->reason : PX_R_CLIENT_EOF],
            .id = c->has_rid ? rid : NULL,
            .tls = c->tls,
        };
        alog_write(&r);
    }

    px_io_ops(&c->a)->free(&c->a);
    if (c->a.fd >= 0)
        close(c->a.fd);
    px_out_free(&c->a);
    if (c->pre == NULL || c->acct != &c->pre->acct)
        free(c->acct);
    c->acct = NULL;
    px_pre_free(c);
    px_release_backend(c);
    /* The key is the peer's, made again rather than kept: 16 bytes less in
     * every connection, for one call when a limited one ends. */
    lim_key_t key;
    if (c->lim_held && lim_key_from_sa(&c->peer.sa, &key) == 0)
        lim_leave(PX_CFG(px, lim), &key);

    if (c->prev)
        c->prev->next = c->next;
    else
        th->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    lbs_active(px->stats, -1);
    px_pool_put(&th->cpool, c);
}

/* ---- the retry policy ------------------------------------------------------- */

/* Pure: what the client gets when f happens to c, from c's phase and what
 * it knows of the request and the tunnel. Until the response head arrives
 * (before TUNNEL) a failing backend costs the client nothing while the
 * request can be replayed (c->retryable: nothing beyond hbuf reached the
 * backend): it is retried on another one, and once replaying is impossible
 * the client gets 502. A 503 to a GET is a draining worker: another one is
 * the better answer. When no backend is left, 503 if none was there or
 * every one tried was draining ("unavailable"), else 502 ("failed"). In
 * the tunnel, a websocket whose worker connection ends between two frames,
 * while the client is not closing it itself, gets the lb's 1014 close (the
 * client reconnects); anything else is closed bare, or for a backend EOF
 * passed on as a half-close. */
enum px_act px_retry_policy(const px_conn_t *c, enum px_fail f)
{
    switch (f) {
    case PX_F_LOCAL:
        return PX_ACT_REPLY_503;
    case PX_F_EXHAUSTED:
        return c->ntried == 0 || c->only_503 ? PX_ACT_REPLY_503 : PX_ACT_REPLY_502;
    case PX_F_101_PLAIN:
        return PX_ACT_REPLY_502;
    case PX_F_DOWN: /* a hung worker must not hold the request: never GO_ON */
        return c->phase != PX_TUNNEL && c->retryable ? PX_ACT_RETRY : PX_ACT_REPLY_502;
    case PX_F_503:
        return c->is_get && c->retryable ? PX_ACT_RETRY : PX_ACT_GO_ON;
    default:
        break;
    }
    if (c->phase != PX_TUNNEL)
        return c->retryable ? PX_ACT_RETRY : PX_ACT_REPLY_502;
    if ((f == PX_F_EOF || f == PX_F_RESET) && px_ws_at_boundary(c) && !c->wsc.close)
        return PX_ACT_WS_CLOSE_1014;
    return f == PX_F_EOF ? PX_ACT_GO_ON : PX_ACT_CLOSE;
}

/* The lbs error a failure of the backend before its answer counts under. */
static int px_fail_err(enum px_fail f)
{
    return f == PX_F_TIMEOUT ? LBS_ERR_BACKEND_TIMEOUT : LBS_ERR_CONNECT;
}

/* Counts, reports and logs failure f before acting on it with a: the
 * backend's own faults before the response head count against its health;
 * a local shortage, a 503 or a refused 101 do not. */
static void px_fail_note(px_conn_t *c, enum px_fail f, enum px_act a, const char *why)
{
    px_t *px = c->th->px;

    switch (f) {
    case PX_F_LOCAL:
        /* Out of descriptors here: the backend did nothing wrong, so
         * neither count it as a failure (that would take healthy workers
         * down) nor try the others. */
        log_warn("backend %s: %s; answering 503", be_id(c->be), why);
        px_release_backend(c);
        return;
    case PX_F_503:
        if (a != PX_ACT_RETRY)
            return;
        log_info("backend %s answered 503 (draining?), trying another", be_id(c->be));
        c->only_503 = c->ntried == 1 || c->only_503;
        px_release_backend(c);
        return;
    case PX_F_101_PLAIN:
        log_warn("backend %s answered 101 to a plain request; refusing the tunnel", be_id(c->be));
        return;
    case PX_F_EXHAUSTED:
        return;
    case PX_F_DOWN:
        /* Its failure is counted already: that is how it went down. */
        lbs_inc(&px->stats->handshakes_moved);
        /* Not a failed try: the request did not fail there, the backend
         * stopped taking connections. Counted, moves by reload after reload
         * would end in a 502 on a healthy fleet, and --retries 0 would
         * forbid any. The tried array still bounds them. */
        if (a == PX_ACT_RETRY && c->pre != NULL)
            c->pre->moved++;
        log_info("backend %s is down: %s request %s", be_id(c->be),
                 a == PX_ACT_RETRY ? "moving its waiting" : "answering 502 to its waiting",
                 px_req(c));
        px_release_backend(c);
        return;
    default:
        break;
    }
    if (c->phase == PX_TUNNEL)
        return; /* the backend answered: how its tunnel ends is no health matter */
    lbs_inc(&px->stats->errors[px_fail_err(f)]);
    c->only_503 = 0;
    if (c->be != NULL) {
        be_event(px->table, c->be, BE_EV_PASSIVE_FAIL, why);
        log_warn("backend %s (%s) failed: %s%s", be_id(c->be), be_addr_str(c->be), why,
                 a == PX_ACT_RETRY ? ", retrying" : "");
    }
    px_release_backend(c);
}

int px_backend_error(px_conn_t *c, enum px_fail f, const char *why)
{
    enum px_act a = px_retry_policy(c, f);

    px_fail_note(c, f, a, why);
    switch (a) {
    case PX_ACT_GO_ON:
        return 0;
    case PX_ACT_RETRY:
        px_try_backend(c);
        break;
    case PX_ACT_REPLY_502:
        px_reply(c, 502, LBS_ERR_ALL_FAILED, PX_R_ALL_FAILED,
                 f == PX_F_EXHAUSTED ? "all backends failed" : "backend failed");
        break;
    case PX_ACT_REPLY_503:
        if (f == PX_F_LOCAL)
            px_reply(c, 503, LBS_ERR_OVERLOAD, PX_R_OVERLOAD, "overloaded");
        else
            px_reply(c, 503, LBS_ERR_NO_BACKEND, PX_R_NO_BACKEND, "no backend available");
        break;
    case PX_ACT_CLOSE:
        px_close(c, px_reset_reason(c, &c->b));
        break;
    case PX_ACT_WS_CLOSE_1014:
        px_ws_close_client(c, 1014, "worker connection lost",
                           f == PX_F_EOF ? px_eof_reason(c, 0) : PX_R_BACKEND_RESET);
        break;
    }
    return -1;
}

/* ---- backend selection ------------------------------------------------------ */

static void px_connected(px_conn_t *c);

/* A backend not tried yet for c, referenced, or NULL: by the session key
 * when --affinity is on and c is a websocket upgrade (counting what became
 * of the key's owner), else by the algorithm. */
static be_t *px_pick(px_conn_t *c)
{
    px_t *px = c->th->px;
    if (px->cfg.aff == NULL || !c->ws_route)
        return be_pick(px->table, c->pre->tried, c->ntried);
    int why, fallback;
    be_t *b = be_pick_key(px->table, c->pre->aff_has ? &c->pre->aff_key : NULL, c->pre->tried,
                          c->ntried, &why, &fallback);
    lbs_inc(&px->stats->aff[why]);
    if (fallback && b != NULL)
        lbs_inc(&px->stats->aff_fallback);
    return b;
}

/* The request prefix, sent right after connect(). To a listener on the same
 * host (and often to one near) the TCP handshake is over inside connect(),
 * which still says EINPROGRESS: the socket takes the prefix at once, and
 * the lb waits for the answer straight away, without the wakeup for
 * writability and the epoll_ctl that turned the watcher from writing to
 * reading (one syscall and a loop round less per handshake). A socket still
 * connecting answers EAGAIN (its send buffer is empty, so nothing else
 * does): then CONNECT waits for it to become writable, as before. A connect
 * refused at once fails the send with its error: a failed connect, counted
 * and retried as one. The retry comes back here through px_backend_error
 * and px_try_backend, at most PX_MAX_TRIES deep (every pass takes a try),
 * and no one frees c on the way: px_after does, after the callback. No
 * TCP Fast Open: on loopback it saves nothing (the handshake costs the
 * same CPU inside connect() either way) and it needs the worker's listener
 * to enable it. */
static void px_send_early(px_conn_t *c)
{
    px_pre_t *q = c->pre;
    ssize_t w = px_io_send(&c->b, buf_head(&q->hbuf), buf_size(&q->hbuf));
    if (w < 0 && errno == EAGAIN) {
        c->phase = PX_CONNECT;
        px_timer(c, PX_CFG(c->th->px, timeout_connect_ms) / 1000.0);
        return;
    }
    if (w < 0) {
        (void)px_backend_error(c, PX_F_CONNECT, strerror(errno));
        return;
    }
    q->hsent = (size_t)w;
    /* Nothing was reported about the new socket, and the client's watcher,
     * level-triggered, reports again any bytes left unread there: a read
     * now on either side would most likely answer EAGAIN. */
    c->rd_hint_a = c->rd_hint_b = 0;
    px_connected(c);
}

/* Picks a backend not tried yet and starts connecting to it; when none is
 * left or the connect fails, the retry policy decides what follows. */
void px_try_backend(px_conn_t *c)
{
    px_t *px = c->th->px;
    char err[SOCK_ERR_LEN];
    int max_tries = PX_CFG(px, retries) + 1 + c->pre->moved;

    if (max_tries > PX_MAX_TRIES)
        max_tries = PX_MAX_TRIES;
    be_t *b = NULL;
    if (c->ntried < max_tries)
        b = px_pick(c);
    if (b == NULL) {
        (void)px_backend_error(c, PX_F_EXHAUSTED, NULL);
        return;
    }
    c->pre->tried[c->ntried++] = b;
    c->be = b;
    int fd = sock_connect(be_addr(b), NULL, err, sizeof(err));
    if (fd < 0) {
        int local = errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
        (void)px_backend_error(c, local ? PX_F_LOCAL : PX_F_CONNECT, err);
        return;
    }
    (void)sock_set_nodelay(fd);
    c->b.fd = fd;
    ev_io_init(&c->b.io, c->b.io.cb, fd, EV_WRITE);
    c->pre->hsent = 0;
    px_send_early(c);
}

/* If the client's transport holds bytes the socket will not signal again
 * (decrypted TLS records), make the read side run, but only when the tunnel
 * would read them now (otherwise the feed would spin without progress). */
static void px_kick_pending(px_conn_t *c)
{
    int reading =
        c->phase == PX_TUNNEL || (c->phase == PX_WAIT && c->pre->hsent == buf_size(&c->pre->hbuf));
    if (reading && !c->a.rd_eof && px_out_size(&c->b) < PX_TUNNEL_CAP && ev_is_active(&c->a.io) &&
        px_io_ops(&c->a)->pending(&c->a) > 0)
        ev_feed_event(c->th->loop, &c->a.io, EV_READ);
}

/* TLS_HS: one step of the client's transport handshake. */
static void px_handshake(px_conn_t *c)
{
    switch (px_io_ops(&c->a)->handshake(&c->a)) {
    case PX_IO_HS_DONE:
        c->phase = PX_HEAD;
        if (c->limited) {
            px_reply_limited(c);
            return;
        }
        px_read_head(c);
        return;
    case PX_IO_HS_AGAIN:
        return;
    case PX_IO_HS_EOF:
        px_close(c, PX_R_CLIENT_EOF);
        return;
    case PX_IO_HS_ERROR:
        lbs_inc(&c->th->px->stats->errors[LBS_ERR_TLS]);
        px_close(c, PX_R_TLS_ERROR);
        return;
    }
}

/* CONNECT: the backend socket is writable (or px_send_early found it
 * connected). No getsockopt(SO_ERROR) here: a failed connect fails the
 * request's first send with the same error (px_flush counts it as a connect
 * failure), one syscall less per handshake, as HAProxy does. */
static void px_connected(px_conn_t *c)
{
    c->phase = PX_WAIT;
    px_timer(c, PX_CFG(c->th->px, timeout_response_ms) / 1000.0);
    px_pump(c);
}

/* The backend's response head is complete in rbuf. */
static void px_response(px_conn_t *c, const http_head_t *h)
{
    px_t *px = c->th->px;

    /* A draining worker answers 503 to new clients; while the request can be
     * replayed, another worker is the better answer. Not a health failure. */
    if (h->status == 503 && px_backend_error(c, PX_F_503, NULL) < 0)
        return;
    /* Only a websocket route may become a tunnel of another protocol: a 101
     * to a plain request (whose Upgrade the lb dropped) would open one to
     * the backend past every route. */
    if (h->status == 101 && !c->ws_route) {
        (void)px_backend_error(c, PX_F_101_PLAIN, NULL);
        return;
    }
    /* An upgrade the backend refused is one answer: what the client sends
     * after it must not reach the backend as a new, unrouted request. */
    if (h->status != 101 && c->ws_route) {
        c->up_capped = 1;
        c->up_left = 0;
    }
    be_event(px->table, c->be, BE_EV_PASSIVE_OK, NULL);
    c->status = (uint16_t)h->status;
    if (h->status == 101)
        lbs_inc(&px->stats->handshakes);
    else
        lbs_inc(&px->stats->requests);
    if (px->stats->handshake_ms != NULL)
        met_observe(px->stats->handshake_ms, (double)(px_now_ns() - c->pre->acct.start_ns) / 1e9);

    if (h->status == 101) {
        c->ws = http_header_has_token(h, "Upgrade", "websocket");
        /* Frames the backend sent right behind its 101 (the worker's hello). */
        if (buf_size(&c->pre->rbuf) > h->head_len)
            px_pass(c, 0, buf_head(&c->pre->rbuf) + h->head_len,
                    buf_size(&c->pre->rbuf) - h->head_len);
    }
    size_t n = buf_size(&c->pre->rbuf);
    px_count_out(c, n);
    lbs_add(&px->stats->bytes_out, n);
    /* The head and whatever followed it become the client's output as is. */
    px_out_free(&c->a);
    if (px_out_take(&c->a, &c->pre->rbuf) < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return;
    }
    px_pre_free(c); /* no more retries: the head and the tries go */
    c->retryable = 0;
    c->phase = PX_TUNNEL;
    c->last_io = ev_now(c->th->loop);
    px_ping_start(c);
    px_timer(c, px_ping_wait(c, px_tunnel_limit(c)));
}

/* WAIT: reads what the backend has sent of its response head. */
void px_read_response(px_conn_t *c)
{
    px_t *px = c->th->px;
    size_t max_head = PX_CFG(px, max_head);
    if (max_head == 0)
        max_head = HTTP_DEFAULT_MAX_HEAD;

    /* As in the tunnel (px_xfer): a backend not reported readable would
     * only answer EAGAIN, e.g. right after the request went out. */
    if (!px_io_ops(&c->b)->buffered && !c->rd_hint_b)
        return;
    for (;;) {
        /* Into the thread's scratch buffer, then only what came into rbuf
         * (see px_read_head). */
        char *p = c->th->scratch;
        ssize_t n = px_io_recv(&c->b, p, PX_HEAD_CHUNK);
        if (n < 0) {
            if (errno != EAGAIN)
                (void)px_backend_error(c, PX_F_RESET, strerror(errno));
            return;
        }
        if (n == 0) {
            (void)px_backend_error(c, PX_F_EOF, "closed before answering");
            return;
        }
        if (buf_append(&c->pre->rbuf, p, (size_t)n) < 0) {
            px_close(c, PX_R_NO_MEMORY);
            return;
        }
        /* A short read drained the socket: neither the rest of the head nor
         * the tunnel that may follow at once need read it again now. */
        if (!px_io_ops(&c->b)->buffered && (size_t)n < PX_HEAD_CHUNK)
            c->rd_hint_b = 0;
        http_head_t h;
        int r = http_parse_response(buf_head(&c->pre->rbuf), buf_size(&c->pre->rbuf), max_head, &h);
        if (r == HTTP_PARSE_AGAIN && !c->rd_hint_b)
            return;
        if (r == HTTP_PARSE_AGAIN)
            continue;
        if (r < 0) {
            (void)px_backend_error(c, PX_F_BAD_HEAD, "malformed response head");
            return;
        }
        px_response(c, &h);
        return;
    }
}

/* Runs the phase's work for an event on either socket. */
static void px_step(px_conn_t *c)
{
    switch (c->phase) {
    case PX_PROXY:
        px_read_proxy(c);
        break;
    case PX_TLS_HS:
        px_handshake(c);
        break;
    case PX_HEAD:
        px_read_head(c);
        break;
    case PX_CONNECT:
        px_connected(c);
        break;
    case PX_WAIT:
    case PX_TUNNEL:
        px_pump(c);
        break;
    case PX_REPLY:
        px_flush_reply(c);
        break;
    case PX_LINGER:
        px_linger_read(c);
        break;
    }
}

/* Entry point of every event of a connection: the only place it is freed. */
void px_after(px_conn_t *c)
{
    if (c->closing) {
        px_conn_free(c);
        return;
    }
    px_update(c);
    px_kick_pending(c);
}

static void px_client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    px_conn_t *c = container_of(w, px_conn_t, a.io);
    c->rd_hint_a = (revents & EV_READ) != 0;
    c->rd_hint_b = 0;
    px_step(c);
    px_after(c);
}

static void px_backend_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    px_conn_t *c = container_of(w, px_conn_t, b.io);
    c->rd_hint_a = 0;
    c->rd_hint_b = (revents & EV_READ) != 0;
    px_step(c);
    px_after(c);
}

static void px_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    px_conn_t *c = container_of(w, px_conn_t, timer);

    switch (c->phase) {
    case PX_PROXY:
    case PX_TLS_HS:
        lbs_inc(&c->th->px->stats->errors[LBS_ERR_HEAD_TIMEOUT]);
        px_close(c, PX_R_HEAD_TIMEOUT);
        break;
    case PX_HEAD:
        px_reply(c, 408, LBS_ERR_HEAD_TIMEOUT, PX_R_HEAD_TIMEOUT, "request timeout");
        break;
    case PX_CONNECT:
        (void)px_backend_error(c, PX_F_CONNECT_TIMEOUT, "connect timeout");
        break;
    case PX_WAIT:
        (void)px_backend_error(c, PX_F_TIMEOUT, "no response in time");
        break;
    case PX_TUNNEL: {
        double lim = px_tunnel_limit(c);
        double idle = ev_now(loop) - c->last_io;
        if (lim > 0 && idle >= lim && px_ws_at_boundary(c))
            px_ws_close_client(c, WS_CLOSE_GOING_AWAY, "idle timeout", PX_R_IDLE_TIMEOUT);
        else if (lim > 0 && idle >= lim)
            px_close(c, PX_R_IDLE_TIMEOUT);
        else if (px_ping_tick(c) == 0)
            px_timer(c, px_ping_wait(c, lim > 0 ? lim - idle : 0));
        break;
    }
    case PX_REPLY:
    case PX_LINGER:
        px_close(c, PX_R_NONE);
        break;
    }
    px_after(c);
}

/* Most client connections the open-files limit allows: each needs its own
 * descriptor and one toward a backend, and PX_FD_RESERVE stay spare for
 * listeners, loops, health checks, Redis and the admin API. Accepting beyond
 * it would leave accepted clients without a descriptor for their backend, so
 * everyone would fail instead of the excess. Read again at most once a
 * second per thread (a getrlimit per accept was one syscall in 28 of a
 * handshake), so that a limit raised (or lowered) at run time counts.
 * 0 = unlimited. */
static long px_fd_cap(px_thread_t *th)
{
    px_t *px = th->px;
    ev_tstamp now = ev_now(th->loop);
    struct rlimit rl;

    if (th->fd_cap_at > 0 && now - th->fd_cap_at < 1.0)
        return th->fd_cap;
    th->fd_cap_at = now;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return th->fd_cap = 0;
    long spare = PX_FD_RESERVE + 2L * px->nth * (long)(px->cfg.nlisten + px->cfg.ntls_listen);
    long cap = ((long)rl.rlim_cur - spare) / 2;
    return th->fd_cap = cap > 1 ? cap : 1;
}

/* What a new connection c may do: over the connection cap it is shed (503
 * once its head is in) unless an old silent connection makes way for it;
 * over a per-address limit it is refused (429). */
static void px_admit(px_conn_t *c)
{
    px_thread_t *th = c->th;
    px_t *px = th->px;

    long cap = px_fd_cap(th);
    long max_conns = PX_CFG(px, max_conns);
    if (max_conns > 0 && (cap == 0 || max_conns < cap))
        cap = max_conns;
    if (cap > 0 && __atomic_load_n(&px->stats->active, __ATOMIC_RELAXED) > cap) {
        /* Over the cap, this thread's oldest connection that has sent no
         * complete request for a while makes way, as on the admin API
         * (lb/acap.c): silent connections cannot lock real requests out. */
        px_conn_t *v = th->hq_first;
        if (v != NULL && px_now_ns() - v->pre->acct.start_ns >= PX_EVICT_AGE_NS) {
            lbs_inc(&px->stats->errors[LBS_ERR_EVICTED]);
            px_close(v, PX_R_EVICTED);
            px_after(v); /* not inside any of v's callbacks: frees it */
        } else {
            c->shed = 1;
        }
    }
    /* Behind a PROXY header, the address is known once the header is in. */
    if (!px->cfg.accept_proxy)
        px_admit_addr(c);
}

void px_peer_addr(const px_conn_t *c, sock_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(&out->ss, &c->peer, sizeof(c->peer));
    out->len = c->peer.sa.sa_family == AF_INET6 ? sizeof(c->peer.in6) : sizeof(c->peer.in);
}

void px_admit_addr(px_conn_t *c)
{
    px_t *px = c->th->px;
    const cidr_set_t *trusted = PX_CFG(px, trusted);
    lim_t *lim = PX_CFG(px, lim);
    c->trusted = trusted != NULL && cidr_set_match(trusted, &c->peer.sa);
    lim_key_t key;
    /* Limits lifted by a reload leave the table in place: no mutex, hash
     * and entry per connection for nothing then. */
    if (lim != NULL && !c->trusted && lim_active(lim) && lim_key_from_sa(&c->peer.sa, &key) == 0) {
        unsigned ra = 1;
        enum lim_verdict v = lim_enter(lim, &key, &ra);
        if (v == LIM_OK)
            c->lim_held = 1;
        else if (v < 0) {
            c->limited = (int8_t)v;
            c->retry_after = (uint16_t)(ra > 3600 ? 3600 : ra);
        }
    }
}

/* Takes ownership of fd, which has TCP_NODELAY already (px_on_accept): a
 * new connection in its first phase. */
void px_conn_new(px_thread_t *th, int fd, const sock_addr_t *peer, int tls)
{
    px_t *px = th->px;
    px_conn_t *c = px_pool_get(&th->cpool, sizeof(*c));
    px_pre_t *pre = calloc(1, sizeof(*pre));
    if (c == NULL || pre == NULL) {
        px_pool_put(&th->cpool, c);
        free(pre);
        close(fd);
        lbs_inc(&px->stats->errors[LBS_ERR_OVERLOAD]);
        return;
    }
    c->th = th;
    c->pre = pre;
    pre->acct.start_ns = px_now_ns();
    c->acct = &pre->acct;
    c->a.fd = fd;
    c->b.fd = -1;
    c->tls = tls != 0;
    memcpy(&c->peer, &peer->ss, peer->len < sizeof(c->peer) ? peer->len : sizeof(c->peer));
    ev_io_init(&c->a.io, px_client_cb, fd, EV_READ);
    ev_io_init(&c->b.io, px_backend_cb, -1, 0);
    ev_init(&c->timer, px_timer_cb);

    c->next = th->conns;
    if (th->conns)
        th->conns->prev = c;
    th->conns = c;
    lbs_active(px->stats, 1);
    px_admit(c);
    if (px->cfg.accept_proxy) {
        c->phase = PX_PROXY; /* then TLS or the head, see px_read_proxy */
    } else if (tls) {
        if (px_io_tls_attach(&c->a, px->cfg.tls) < 0) {
            px_conn_free(c);
            return;
        }
        c->phase = PX_TLS_HS;
    } else {
        c->phase = PX_HEAD;
    }
    px_timer(c, PX_CFG(px, timeout_head_ms) / 1000.0);
    px_hq_add(c);
    if (c->phase == PX_PROXY && px_proxy_accept(c) < 0) {
        px_after(c); /* not inside any of c's callbacks: frees it */
        return;
    }
    if (c->limited && !tls) {
        /* Not inside any of c's callbacks: px_after may free it. */
        px_reply_limited(c);
        px_after(c);
        return;
    }
    if (c->phase == PX_HEAD || c->phase == PX_PROXY) {
        /* The client usually sent its head with the connection, so it is
         * most often here already: read it at once rather than after a trip
         * through epoll (one epoll_ctl and one wakeup less per handshake,
         * and the client's watcher is first armed when the tunnel needs
         * it). A head not here yet costs one EAGAIN; px_update then waits
         * for it. The same goes for a PROXY header. Not inside any of c's
         * callbacks: px_after may free it. */
        c->rd_hint_a = 1;
        if (c->phase == PX_PROXY)
            px_read_proxy(c);
        else
            px_read_head(c);
        px_after(c);
        return;
    }
    ev_io_start(th->loop, &c->a.io);
}

/* Shutdown, past the grace period: frees every connection of th. Not
 * inside any connection's callback. */
void px_sess_shutdown(px_thread_t *th)
{
    while (th->conns != NULL) {
        px_conn_t *c = th->conns;
        px_set_reason(c, PX_R_SHUTDOWN);
        /* Past the grace period: a websocket client between frames gets a
         * 1001 it can reconnect on, best effort (one non-blocking write,
         * only when nothing else is queued toward it). */
        if (c->phase == PX_TUNNEL && px_ws_at_boundary(c) && px_out_size(&c->a) == 0 &&
            px_out(&c->a) != NULL &&
            ws_close_write(c->a.out, WS_ROLE_SERVER, WS_CLOSE_GOING_AWAY,
                           "load balancer shutting down") == 0)
            (void)px_io_send(&c->a, px_out_head(&c->a), px_out_size(&c->a));
        /* Not inside any of c's callbacks: freeing here is safe. */
        px_conn_free(c);
    }
}
