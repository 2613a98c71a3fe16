/* px_tun: the tunnel of a session (see px_int.h): bytes both ways with
 * backpressure and half-closes, and the websocket frame tracking (lb/wsf.c)
 * that lets the lb end a websocket with a close frame of its own. */
#include "px_int.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "px_ping.h"
#include "ws.h"

/* Where bytes pass from one side to the other: a websocket's frames are
 * followed both ways (lb/wsf.c), the backend's so the lb can speak to the
 * client between two of them, both so the access log can say whose close
 * frame came first. A websocket route's client bytes are followed from the
 * start, frames sent before the 101 included. */
void px_pass(px_conn_t *c, int upstream, const char *p, size_t n)
{
    wsf_t *t = upstream ? &c->wsc : &c->wsb;
    if (!(upstream ? c->ws_route : c->ws) || t->lost)
        return;
    wsf_feed(t, upstream, (const uint8_t *)p, n);
    if (t->close && c->ws_first == PX_WS_BY_NONE)
        c->ws_first = upstream ? PX_WS_BY_CLIENT : PX_WS_BY_BACKEND;
}

/* True when the lb may put a frame of its own toward the client: a websocket
 * tunnel between two backend frames whose backend has not closed it. */
int px_ws_at_boundary(const px_conn_t *c)
{
    return c->ws && !c->wsb.close && !c->lb_closed && wsf_at_boundary(&c->wsb);
}

/* Why a tunnel ends when side `up` (1 = client) sends EOF: a websocket says
 * who closed it (whose close frame came first, or a worker connection that
 * ended without one: the worker died); anything else says who hung up. */
enum px_reason px_eof_reason(const px_conn_t *c, int up)
{
    if (c->ws && c->ws_first == PX_WS_BY_CLIENT)
        return PX_R_CLIENT_CLOSE;
    if (c->ws && c->ws_first == PX_WS_BY_BACKEND)
        return PX_R_BACKEND_CLOSE;
    if (up)
        return PX_R_CLIENT_EOF;
    return c->ws ? PX_R_BACKEND_LOST : PX_R_BACKEND_EOF;
}

/* Ends a websocket tunnel that is at a frame boundary with a close frame
 * from the lb itself: the backend side is dropped, the client gets `code`
 * (1014 when the worker connection was lost, 1001 on idle timeout or
 * shutdown) and the usual lingering close. A bare TCP close would reach the
 * client as 1006, which says nothing about what to do next. */
void px_ws_close_client(px_conn_t *c, uint16_t code, const char *why, enum px_reason r)
{
    px_set_reason(c, r);
    px_close_backend_fd(c); /* its queue goes with it */
    if (px_out(&c->a) == NULL || ws_close_write(c->a.out, WS_ROLE_SERVER, code, why) < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return;
    }
    c->lb_closed = 1;
    c->phase = PX_REPLY;
    px_timer(c, PX_LINGER_S);
    px_flush_reply(c);
}

/* Why a connection ends when reading or writing side s failed for good. */
enum px_reason px_reset_reason(px_conn_t *c, px_side_t *s)
{
    if (s->rd_eof)
        return px_eof_reason(c, s == &c->a);
    return s == &c->a ? PX_R_CLIENT_RESET : PX_R_BACKEND_RESET;
}

/* A write to s failed for good. Before the response head a backend write
 * failure is a failed backend (retried); anything else ends the connection. */
static void px_write_failed(px_conn_t *c, px_side_t *s)
{
    if (s == &c->b)
        (void)px_backend_error(c, PX_F_WRITE, "write failed");
    else
        px_close(c, px_reset_reason(c, s));
}

/* A websocket whose close handshake went by both ways and whose worker has
 * closed, the client's close frame read whole: the client may send nothing
 * more (RFC 6455 5.5.1), so it is closed once its last bytes are out. */
static int px_ws_closed(const px_conn_t *c)
{
    return c->ws && c->wsc.close && wsf_at_boundary(&c->wsc) && c->wsb.close && c->b.rd_eof;
}

/* Both sides finished (or the websocket's close handshake is over) and
 * nothing is queued either way: px_pump closes both now, and a plain
 * close() sends the same FIN, so a shutdown of s would be one syscall for
 * nothing (a TLS side still gets its close_notify). Asked only when a
 * half-close is due, not on every flush. */
static int px_closing_now(const px_conn_t *c, const px_side_t *s)
{
    return ((c->a.rd_eof && c->b.rd_eof) || px_ws_closed(c)) && px_out_size(&c->a) == 0 &&
           px_out_size(&c->b) == 0 && !px_io_ops(s)->buffered;
}

/* Writes what is queued toward s (for the backend in WAIT, the request prefix
 * first). 0 while the connection lives on, -1 when it failed. */
static int px_flush(px_conn_t *c, px_side_t *s)
{
    if (s->fd < 0)
        return 0;
    if (s == &c->b && c->phase == PX_WAIT) {
        px_pre_t *q = c->pre;
        while (q->hsent < buf_size(&q->hbuf)) {
            ssize_t w = px_io_send(s, buf_head(&q->hbuf) + q->hsent, buf_size(&q->hbuf) - q->hsent);
            if (w < 0) {
                if (errno == EAGAIN)
                    return 0;
                if (q->hsent == 0) /* the connect's own error (px_connected) */
                    (void)px_backend_error(c, PX_F_CONNECT, strerror(errno));
                else
                    px_write_failed(c, s);
                return -1;
            }
            q->hsent += (size_t)w;
        }
    }
    while (px_out_size(s) > 0) {
        ssize_t w = px_io_send(s, px_out_head(s), px_out_size(s));
        if (w < 0) {
            if (errno == EAGAIN)
                return 0;
            px_write_failed(c, s);
            return -1;
        }
        px_out_consume(s, (size_t)w);
        c->last_io = ev_now(c->th->loop);
    }
    if (s->shut_pending && !s->wr_shut && !px_closing_now(c, s)) {
        /* The other side finished and everything it sent is out: pass the
         * half-close on, so a peer waiting for EOF sees it. */
        px_io_ops(s)->shutdown_wr(s);
        s->wr_shut = 1;
    }
    return 0;
}

/* Sends n bytes toward y: straight from the scratch buffer when nothing is
 * queued (direct), the rest into y's queue. 0, or -1 when c failed. */
static int px_forward(px_conn_t *c, px_side_t *y, const char *p, size_t n, int direct)
{
    size_t off = 0;
    if (direct) {
        ssize_t w = px_io_send(y, p, n);
        if (w > 0) {
            off = (size_t)w;
        } else if (errno != EAGAIN) {
            px_write_failed(c, y);
            return -1;
        }
    }
    if (off < n && px_out_append(y, p + off, n - off) < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return -1;
    }
    return 0;
}

struct px_emit {
    px_conn_t *c;
    px_side_t *y;
    size_t n; /* bytes passed on */
};

static int px_emit_up(void *ctx, const uint8_t *p, size_t n)
{
    struct px_emit *e = ctx;
    e->n += n;
    return px_forward(e->c, e->y, (const char *)p, n, px_out_size(e->y) == 0);
}

/* The client's bytes of a websocket the lb pings: through the pong filter
 * (lb/wsp.h), which also follows the frames as px_pass does. Bytes that
 * were only the lb's pongs are no traffic for the idle timeout (last_io is
 * put back to idle_since). 0, or -1 when c failed. */
static int px_pass_filtered(px_conn_t *c, px_side_t *y, const char *p, size_t n,
                            ev_tstamp idle_since)
{
    uint8_t tok[WSP_TOKEN_LEN];
    struct px_emit e = {c, y, 0};
    px_ping_token(c, tok);
    int r = wsp_filter(&c->wsc, tok, (const uint8_t *)p, n, px_emit_up, &e);
    if (r < 0)
        return -1;
    if (r > 0)
        px_ping_pong(c);
    if (e.n == 0)
        c->last_io = idle_since;
    if (c->wsc.close && c->ws_first == PX_WS_BY_NONE)
        c->ws_first = PX_WS_BY_CLIENT;
    return 0;
}

/* Moves bytes from x to y while y's queue has room. 0 or -1 (failed). */
static int px_xfer(px_conn_t *c, px_side_t *x, px_side_t *y)
{
    px_t *px = c->th->px;
    char *sc = c->th->scratch;
    int up = x == &c->a;
    size_t budget = PX_PUMP_BUDGET;

    /* Only a side whose readiness was reported is read: a read on the quiet
     * side would only return EAGAIN, one wasted syscall per message (and two
     * per handshake while waiting for the response). Level-triggered
     * readiness brings back any side skipped here. A buffered transport
     * (TLS) may hold bytes the socket does not show. */
    if (!px_io_ops(x)->buffered && !(up ? c->rd_hint_a : c->rd_hint_b))
        return 0;
    while (!x->rd_eof && budget > 0) {
        size_t q = px_out_size(y);
        if (q >= PX_TUNNEL_CAP)
            break;
        size_t room = PX_TUNNEL_CAP - q;
        if (room > PX_SCRATCH)
            room = PX_SCRATCH;
        ssize_t n = px_io_recv(x, sc, room);
        if (n < 0) {
            if (errno == EAGAIN)
                break;
            if (up)
                px_close(c, px_reset_reason(c, x));
            else
                (void)px_backend_error(c, PX_F_RESET, strerror(errno));
            return -1;
        }
        /* The worker went away: a websocket client may get a 1014 it can
         * reconnect on (px_retry_policy), else the EOF is passed on. */
        if (n == 0 && !up && px_backend_error(c, PX_F_EOF, "closed") < 0)
            return -1;
        /* A websocket client that leaves while its upgrade waits on the
         * worker can never use the answer: abandoned at once, so that a
         * hung worker holds it no longer than it takes to notice. */
        if (n == 0 && up && c->phase == PX_WAIT && c->ws_route) {
            lbs_inc(&px->stats->handshakes_abandoned);
            px_close(c, PX_R_CLIENT_EOF);
            return -1;
        }
        if (n == 0) {
            x->rd_eof = 1;
            y->shut_pending = 1;
            px_set_reason(c, px_eof_reason(c, up));
            if (up && c->phase == PX_WAIT)
                c->retryable = 0; /* a replay could not repeat the half-close timing */
            if (c->phase == PX_TUNNEL)
                px_timer(c, px_ping_wait(c, px_tunnel_limit(c)));
            break;
        }
        ev_tstamp idle_since = c->last_io;
        c->last_io = ev_now(c->th->loop);
        if (up) {
            px_count_in(c, (uint64_t)n);
            lbs_add(&px->stats->bytes_in, (uint64_t)n);
        } else {
            px_count_out(c, (uint64_t)n);
            lbs_add(&px->stats->bytes_out, (uint64_t)n);
        }
        if (up && px_ping_filters(c)) {
            if (px_pass_filtered(c, y, sc, (size_t)n, idle_since) < 0)
                return -1;
            budget -= (size_t)n < budget ? (size_t)n : budget;
            if (!px_io_ops(x)->buffered && (size_t)n < room)
                break;
            continue;
        }
        px_pass(c, up, sc, (size_t)n);
        size_t fwd = (size_t)n;
        if (up && c->up_capped) {
            /* Past a plain request's body: read (to see the client's EOF)
             * and drop. */
            if (fwd > c->up_left)
                fwd = (size_t)c->up_left;
            c->up_left -= fwd;
        }
        if (up && fwd > 0 && c->phase == PX_WAIT)
            c->retryable = 0;
        if (fwd > 0 && px_forward(c, y, sc, fwd, q == 0) < 0)
            return -1;
        budget -= (size_t)n < budget ? (size_t)n : budget;
        /* A short read from a stream socket emptied its receive queue: the
         * next read would be EAGAIN (HAProxy makes the same bet). Not so
         * through a buffered transport: a TLS read returns one record. */
        if (!px_io_ops(x)->buffered && (size_t)n < room)
            break;
    }
    if (budget == 0 && px_io_ops(x)->pending(x) > 0)
        ev_feed_event(c->th->loop, &x->io, EV_READ);
    return 0;
}

/* One round of everything that can make progress in WAIT and TUNNEL. */
void px_pump(px_conn_t *c)
{
    if (px_flush(c, &c->a) < 0 || px_flush(c, &c->b) < 0)
        return;
    if (c->phase == PX_WAIT) {
        if (c->pre->hsent == buf_size(&c->pre->hbuf) && px_xfer(c, &c->a, &c->b) < 0)
            return;
        /* A client EOF read just now goes on at once: a backend that waits
         * for it before answering would otherwise wait for the next event,
         * or for the response timeout. */
        if (c->b.shut_pending && !c->b.wr_shut && px_out_size(&c->b) == 0 && px_flush(c, &c->b) < 0)
            return;
        if (c->phase == PX_WAIT)
            px_read_response(c);
        if (c->closing || c->phase != PX_TUNNEL)
            return;
        /* fall through with the response head queued toward the client */
        if (px_flush(c, &c->a) < 0)
            return;
    }
    if (c->phase != PX_TUNNEL)
        return;
    if (px_xfer(c, &c->a, &c->b) < 0 || px_xfer(c, &c->b, &c->a) < 0)
        return;
    if (px_flush(c, &c->a) < 0 || px_flush(c, &c->b) < 0)
        return;
    if (c->a.rd_eof && c->b.rd_eof && px_out_size(&c->a) == 0 && px_out_size(&c->b) == 0)
        px_close(c, PX_R_NONE); /* reason: whichever side finished first */
    /* A websocket whose close handshake is over (px_ws_closed): its close
     * frame has been read whole (no unread bytes to turn the close into a
     * reset), so once the last bytes are out it is closed now instead of
     * after its own EOF, as HAProxy does: a wakeup, a read and two
     * epoll_ctl less per connection (libev's lazy removal of the finished
     * backend socket, and the client's EPOLLHUP). A plain client gets its
     * FIN from the close() itself, without a shutdown() first (px_flush);
     * a TLS one its close_notify first. */
    else if (px_ws_closed(c) && px_out_size(&c->a) == 0 &&
             (c->a.wr_shut || !px_io_ops(&c->a)->buffered)) {
        px_close(c, PX_R_NONE);
        /* The worker sent its close frame and its FIN, both read here, and
         * the client's close frame is in the kernel's hands (nothing queued
         * here): the backend connection has nothing left to carry either
         * way, so it ends with a reset
         * (SO_LINGER 0) instead of a FIN. The worker, reading until its
         * peer closes (lingering), sees ECONNRESET where it saw EOF; the
         * FIN's ACK and the worker's TIME_WAIT entry (created, then expired
         * by a timer) are gone: CPU per handshake 0.95 A/B (README,
         * "Levers"). */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        if (c->b.fd >= 0 && px_out_size(&c->b) == 0)
            (void)setsockopt(c->b.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
}
