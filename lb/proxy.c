/* px: the lb's data path (see proxy.h).
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
 * prefix on another one, and the client never sees the failure.
 *
 * The tunnel reads a side only while the other side's output buffer is under
 * PX_TUNNEL_CAP (backpressure), reads into one per-thread scratch buffer and
 * writes straight to the other socket; only what the socket does not take at
 * once is copied into that side's buf_t, which frees its memory when drained.
 * An idle tunnel therefore holds no buffer at all: px_conn_idle_bytes(). */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "acc.h"
#include "alog.h"
#include "fwd.h"
#include "log.h"
#include "met.h"
#include "sock.h"
#include "util.h"
#include "ws.h"
#include "wsf.h"

#define PX_TUNNEL_CAP     (64 * 1024)   /* most bytes queued toward one side */
#define PX_SCRATCH        (64 * 1024)   /* per-thread read buffer */
#define PX_PUMP_BUDGET    (1024 * 1024) /* bytes per direction per event: fairness */
#define PX_HEAD_CHUNK     4096
#define PX_MAX_TRIES      8
#define PX_LINGER_S       2.0  /* REPLY + LINGER together */
#define PX_FIN_TIMEOUT_S  30.0 /* a half-closed tunnel gets this long to finish */
#define PX_ACCEPT_BACKOFF 0.1  /* after EMFILE/ENFILE */
#define PX_ACCEPT_BATCH   64
#define PX_BACKLOG        4096
#define PX_FD_RESERVE     32            /* descriptors kept from client connections */
#define PX_EVICT_AGE_NS   1000000000ull /* over the cap, a silent connection this old makes way */

enum { PX_WS_BY_NONE = 0, PX_WS_BY_CLIENT, PX_WS_BY_BACKEND };

enum px_phase { PX_TLS_HS, PX_HEAD, PX_CONNECT, PX_WAIT, PX_TUNNEL, PX_REPLY, PX_LINGER };

enum px_reason {
    PX_R_NONE = 0,
    PX_R_CLIENT_EOF,
    PX_R_BACKEND_EOF,
    PX_R_CLIENT_RESET,
    PX_R_BACKEND_RESET,
    PX_R_IDLE_TIMEOUT,
    PX_R_HEAD_TIMEOUT,
    PX_R_BAD_REQUEST,
    PX_R_HEAD_TOO_LARGE,
    PX_R_NO_BACKEND,
    PX_R_ALL_FAILED,
    PX_R_OVERLOAD,
    PX_R_TLS_ERROR,
    PX_R_SHUTDOWN,
    PX_R_NO_MEMORY,
    PX_R_RATE_LIMITED,
    PX_R_NOT_FOUND,
    PX_R_CLIENT_CLOSE,
    PX_R_BACKEND_CLOSE,
    PX_R_BACKEND_LOST,
    PX_R_EVICTED,
    PX_R__COUNT
};

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
};

typedef struct px_side {
    int fd;
    ev_io io;
    buf_t out;                   /* bytes waiting to be written to this side */
    SSL *ssl;                    /* client side of a TLS listener only */
    unsigned rd_eof : 1;         /* this side sent EOF */
    unsigned shut_pending : 1;   /* the other side sent EOF: shut our write once out drains */
    unsigned wr_shut : 1;        /* we shut our write toward this side */
    unsigned ssl_rd_wants_w : 1; /* SSL_read needs the socket writable */
    unsigned ssl_wr_wants_r : 1; /* SSL_write needs the socket readable */
} px_side_t;

struct px_thread;

typedef struct px_conn {
    struct px_conn *prev, *next;       /* the thread's list, for shutdown */
    struct px_conn *hq_prev, *hq_next; /* the thread's connections still without a head */
    struct px_thread *th;
    px_side_t a; /* client */
    px_side_t b; /* backend */
    ev_timer timer;
    ev_tstamp last_io; /* tunnel activity; the timer checks it instead of re-arming per read */
    buf_t hbuf;        /* request head, then the request prefix kept for retries */
    buf_t rbuf;        /* backend response head being read */
    size_t hsent;      /* bytes of hbuf already written to the current backend */
    be_t *be;          /* current backend, with a reference */
    be_t *tried[PX_MAX_TRIES];
    uint64_t start_ns;
    uint64_t bytes_in, bytes_out;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    uint16_t status;
    uint8_t ntried;
    uint8_t phase;
    uint8_t reason;
    unsigned closing : 1;
    unsigned tls : 1;
    unsigned retryable : 1; /* nothing beyond hbuf has reached the backend */
    unsigned is_get : 1;
    unsigned shed : 1;      /* over --max-conns: answer 503 once the head is in */
    unsigned only_503 : 1;  /* every backend tried so far answered 503 (draining) */
    unsigned trusted : 1;   /* peer is in --trusted-proxies */
    unsigned lim_held : 1;  /* counted in px->cfg.lim: lim_leave() at the end */
    unsigned rd_hint_a : 1; /* this event said the client socket is readable */
    unsigned rd_hint_b : 1; /* ... the backend socket */
    unsigned ws : 1;        /* the tunnel is a websocket (the backend said 101) */
    unsigned lb_closed : 1; /* the lb put its own close frame toward the client */
    unsigned ws_route : 1;  /* routed as a websocket upgrade (else a plain request) */
    unsigned up_capped : 1; /* client bytes beyond up_left are dropped, not forwarded */
    unsigned in_hq : 1;     /* on the thread's hq list */
    int8_t limited;         /* refused by lim: LIM_CONNS or LIM_RATE, 0 = no */
    uint8_t ws_first;       /* whose close frame came first: PX_WS_BY_* */
    wsf_t wsb;              /* frames backend -> client */
    wsf_t wsc;              /* frames client -> backend */
    uint64_t up_left;       /* with up_capped: client bytes the backend may still get */
    uint16_t retry_after;   /* seconds, with limited */
    lim_key_t lim_key;
    char reqid[17];
    char req[48]; /* "METHOD path", truncated, for the access log */
} px_conn_t;

typedef struct px_listener {
    acc_t *acc; /* accepts on fd */
    int fd;
    int tls;
    struct px_thread *th;
} px_listener_t;

typedef struct px_thread {
    px_t *px;
    int idx;
    struct ev_loop *loop;
    pthread_t tid;
    int started;
    px_listener_t *ls;
    size_t nls;
    ev_async wake;
    int reserve_fd; /* spare descriptor, given up to turn clients away at EMFILE */
    int accepting;
    px_conn_t *conns;
    px_conn_t *hq_first, *hq_last; /* connections without a complete head, oldest first */
    uint32_t rid_rand;
    uint32_t rid_seq;
    char *scratch;
} px_thread_t;

struct px {
    be_table_t *table;
    lbs_t *stats;
    px_config_t cfg;
    px_thread_t *th;
    int nth;
    int stop_accept; /* atomics: set by any thread, acted on by each loop */
    int shutdown;
};

size_t px_conn_idle_bytes(void)
{
    return sizeof(px_conn_t);
}

/* ---- helpers ------------------------------------------------------------ */

static uint64_t px_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void px_set_reason(px_conn_t *c, enum px_reason r)
{
    if (c->reason == PX_R_NONE)
        c->reason = (uint8_t)r;
}

/* Marks c for freeing by the callback that is running; the first reason
 * given wins (it is the cause, later ones are consequences). */
static void px_close(px_conn_t *c, enum px_reason r)
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
    c->hq_prev = th->hq_last;
    c->hq_next = NULL;
    if (th->hq_last)
        th->hq_last->hq_next = c;
    else
        th->hq_first = c;
    th->hq_last = c;
    c->in_hq = 1;
}

static void px_hq_del(px_conn_t *c)
{
    px_thread_t *th = c->th;
    if (!c->in_hq)
        return;
    if (c->hq_prev)
        c->hq_prev->hq_next = c->hq_next;
    else
        th->hq_first = c->hq_next;
    if (c->hq_next)
        c->hq_next->hq_prev = c->hq_prev;
    else
        th->hq_last = c->hq_prev;
    c->in_hq = 0;
}

/* Reads from one side. >0 bytes, 0 on EOF, -1 with errno (EAGAIN = retry
 * later, anything else is fatal for the connection). */
static ssize_t px_sread(px_side_t *s, char *p, size_t n)
{
    if (s->ssl != NULL) {
        s->ssl_rd_wants_w = 0;
        int r = SSL_read(s->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (r > 0)
            return r;
        switch (tls_classify(s->ssl, r)) {
        case TLS_IO_WANT_WRITE:
            s->ssl_rd_wants_w = 1;
            /* fallthrough */
        case TLS_IO_WANT_READ:
        case TLS_IO_OK:
            errno = EAGAIN;
            return -1;
        case TLS_IO_EOF:
            return 0;
        default:
            errno = ECONNRESET;
            return -1;
        }
    }
    ssize_t r;
    do {
        r = read(s->fd, p, n);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EWOULDBLOCK)
        errno = EAGAIN;
    return r;
}

/* Writes to one side; same conventions as px_sread (never returns 0). */
static ssize_t px_swrite(px_side_t *s, const char *p, size_t n)
{
    if (s->ssl != NULL) {
        s->ssl_wr_wants_r = 0;
        int r = SSL_write(s->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (r > 0)
            return r;
        switch (tls_classify(s->ssl, r)) {
        case TLS_IO_WANT_READ:
            s->ssl_wr_wants_r = 1;
            /* fallthrough */
        case TLS_IO_WANT_WRITE:
            errno = EAGAIN;
            return -1;
        default:
            errno = EPIPE;
            return -1;
        }
    }
    ssize_t r;
    do {
        r = send(s->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EWOULDBLOCK)
        errno = EAGAIN;
    if (r == 0) {
        errno = EAGAIN;
        return -1;
    }
    return r;
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
static void px_timer(px_conn_t *c, double after)
{
    ev_timer_stop(c->th->loop, &c->timer);
    if (after > 0) {
        ev_timer_set(&c->timer, after, 0);
        ev_timer_start(c->th->loop, &c->timer);
    }
}

/* The tunnel's current time limit in seconds (0 = none): the idle timeout,
 * shortened once either side has finished. */
static double px_tunnel_limit(px_conn_t *c)
{
    double lim = c->th->px->cfg.timeout_idle_s;
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
    case PX_TLS_HS:
        ea = c->a.ssl_rd_wants_w ? EV_WRITE : EV_READ;
        break;
    case PX_HEAD:
        ea = EV_READ | (c->a.ssl_rd_wants_w ? EV_WRITE : 0);
        break;
    case PX_CONNECT:
        eb = EV_WRITE;
        break;
    case PX_WAIT:
    case PX_TUNNEL: {
        int hdone = c->phase == PX_TUNNEL || c->hsent == buf_size(&c->hbuf);
        if (!c->a.rd_eof && hdone && buf_size(&c->b.out) < PX_TUNNEL_CAP)
            ea |= EV_READ;
        if (c->a.ssl_wr_wants_r)
            ea |= EV_READ;
        if (buf_size(&c->a.out) > 0 || c->a.ssl_rd_wants_w)
            ea |= EV_WRITE;
        if (!c->b.rd_eof && (c->phase == PX_WAIT || buf_size(&c->a.out) < PX_TUNNEL_CAP))
            eb |= EV_READ;
        if (buf_size(&c->b.out) > 0 || !hdone)
            eb |= EV_WRITE;
        break;
    }
    case PX_REPLY:
        ea = EV_WRITE | (c->a.ssl_wr_wants_r ? EV_READ : 0);
        break;
    case PX_LINGER:
        ea = EV_READ;
        break;
    }
    px_watch(loop, &c->a, ea);
    px_watch(loop, &c->b, eb);
}

/* Drops the backend connection (not the backend reference). */
static void px_close_backend_fd(px_conn_t *c)
{
    if (c->b.fd >= 0) {
        ev_io_stop(c->th->loop, &c->b.io);
        close(c->b.fd);
        c->b.fd = -1;
    }
    buf_free(&c->b.out);
    buf_free(&c->rbuf);
    c->b.rd_eof = c->b.wr_shut = c->b.shut_pending = 0;
    c->hsent = 0;
}

static void px_release_backend(px_conn_t *c)
{
    px_close_backend_fd(c);
    if (c->be != NULL) {
        be_release(c->th->px->table, c->be);
        c->be = NULL;
    }
}

/* Precondition: c is unlinked from nothing yet; every watcher belongs to
 * c->th->loop. Frees c and everything it holds; logs the access line. */
static void px_conn_free(px_conn_t *c)
{
    px_thread_t *th = c->th;
    px_t *px = th->px;

    ev_io_stop(th->loop, &c->a.io);
    ev_io_stop(th->loop, &c->b.io);
    ev_timer_stop(th->loop, &c->timer);
    px_hq_del(c);

    if (px->cfg.access_log) {
        char host[SOCK_ADDRSTRLEN] = "-";
        sock_addr_t pa;
        memset(&pa, 0, sizeof(pa));
        memcpy(&pa.ss, &c->peer, sizeof(c->peer));
        pa.len = c->peer.sa.sa_family == AF_INET6 ? sizeof(c->peer.in6) : sizeof(c->peer.in);
        sock_addr_str(&pa, host, sizeof(host));
        alog_rec_t r = {
            .client = host,
            .backend = c->be ? be_id(c->be) : NULL,
            .req = c->req[0] ? c->req : NULL,
            .status = c->status,
            .ms = (double)(px_now_ns() - c->start_ns) / 1e6,
            .in = c->bytes_in,
            .out = c->bytes_out,
            .reason = px_reason_names[c->reason ? c->reason : PX_R_CLIENT_EOF],
            .id = c->reqid[0] ? c->reqid : NULL,
            .tls = c->tls,
        };
        alog_write(&r);
    }

    if (c->a.ssl != NULL)
        SSL_free(c->a.ssl);
    if (c->a.fd >= 0)
        close(c->a.fd);
    buf_free(&c->a.out);
    buf_free(&c->hbuf);
    px_release_backend(c);
    if (c->lim_held)
        lim_leave(px->cfg.lim, &c->lim_key);

    if (c->prev)
        c->prev->next = c->next;
    else
        th->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    lbs_active(px->stats, -1);
    free(c);
}

/* ---- lb's own answers ------------------------------------------------------- */

/* Starts the lingering close after an lb answer went out. */
static void px_linger(px_conn_t *c)
{
    c->phase = PX_LINGER;
    if (c->a.ssl != NULL) {
        /* close_notify, best effort: the answer itself is already out. */
        (void)SSL_shutdown(c->a.ssl);
        ERR_clear_error();
    }
    shutdown(c->a.fd, SHUT_WR);
    c->a.wr_shut = 1;
}

static void px_flush_reply(px_conn_t *c)
{
    while (buf_size(&c->a.out) > 0) {
        ssize_t w = px_swrite(&c->a, buf_head(&c->a.out), buf_size(&c->a.out));
        if (w < 0) {
            if (errno == EAGAIN)
                return;
            px_close(c, PX_R_CLIENT_RESET);
            return;
        }
        buf_consume(&c->a.out, (size_t)w);
        c->bytes_out += (uint64_t)w;
    }
    px_linger(c);
}

/* Answers the client with status, a small JSON body and extra (header lines
 * ending in CRLF, or NULL), then closes. err is an lbs error kind to count,
 * or -1. */
static void px_reply_ex(px_conn_t *c, int status, int err, enum px_reason r, const char *msg,
                        const char *extra)
{
    px_t *px = c->th->px;
    char body[128];

    if (err >= 0)
        lbs_inc(&px->stats->errors[err]);
    px_hq_del(c);
    px_set_reason(c, r);
    c->status = (uint16_t)status;
    px_close_backend_fd(c);
    buf_free(&c->hbuf);
    buf_free(&c->a.out);
    if (c->phase == PX_TLS_HS) {
        /* No TLS session yet: nothing HTTP can be said. */
        px_close(c, r);
        return;
    }
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);
    if (http_write_response(&c->a.out, status, "application/json", body, (size_t)n, extra) < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return;
    }
    c->phase = PX_REPLY;
    px_timer(c, PX_LINGER_S);
    px_flush_reply(c);
}

static void px_reply(px_conn_t *c, int status, int err, enum px_reason r, const char *msg)
{
    px_reply_ex(c, status, err, r, msg, NULL);
}

/* ---- websocket frame tracking ----------------------------------------------- */

/* Where bytes pass from one side to the other: a websocket's frames are
 * followed both ways (lb/wsf.c), the backend's so the lb can speak to the
 * client between two of them, both so the access log can say whose close
 * frame came first. A websocket route's client bytes are followed from the
 * start, frames sent before the 101 included. */
static void px_pass(px_conn_t *c, int upstream, const char *p, size_t n)
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
static int px_ws_at_boundary(const px_conn_t *c)
{
    return c->ws && !c->wsb.close && !c->lb_closed && wsf_at_boundary(&c->wsb);
}

/* Why a tunnel ends when side `up` (1 = client) sends EOF: a websocket says
 * who closed it (whose close frame came first, or a worker connection that
 * ended without one: the worker died); anything else says who hung up. */
static enum px_reason px_eof_reason(const px_conn_t *c, int up)
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
static void px_ws_close_client(px_conn_t *c, uint16_t code, const char *why, enum px_reason r)
{
    px_set_reason(c, r);
    px_close_backend_fd(c);
    buf_free(&c->b.out);
    if (ws_close_write(&c->a.out, WS_ROLE_SERVER, code, why) < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return;
    }
    c->lb_closed = 1;
    c->phase = PX_REPLY;
    px_timer(c, PX_LINGER_S);
    px_flush_reply(c);
}

static void px_ws_backend_gone(px_conn_t *c, enum px_reason r)
{
    px_ws_close_client(c, 1014, "worker connection lost", r);
}

/* 429 for a client over a per-address limit. Sent as soon as the connection
 * can carry HTTP, without waiting for the request: a refused client must cost
 * as little as possible, and the lingering close keeps the answer from being
 * lost to a reset when its request arrives afterwards. */
static void px_reply_limited(px_conn_t *c)
{
    char extra[48];
    snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", (unsigned)c->retry_after);
    px_reply_ex(c, 429, LBS_ERR_RATE_LIMITED, PX_R_RATE_LIMITED,
                c->limited == LIM_CONNS ? "too many connections from this address"
                                        : "too many requests from this address",
                extra);
}

/* ---- backend selection ------------------------------------------------------ */

static void px_try_backend(px_conn_t *c);

/* The current backend failed before the client saw any of its answer: count
 * it, then try another one when the request can still be replayed. */
static void px_backend_failed(px_conn_t *c, int err, const char *why)
{
    px_t *px = c->th->px;

    lbs_inc(&px->stats->errors[err]);
    c->only_503 = 0;
    if (c->be != NULL) {
        be_event(px->table, c->be, BE_EV_PASSIVE_FAIL, why);
        log_warn("backend %s (%s) failed: %s%s", be_id(c->be), be_addr_str(c->be), why,
                 c->retryable ? ", retrying" : "");
    }
    px_release_backend(c);
    if (!c->retryable) {
        px_reply(c, 502, LBS_ERR_ALL_FAILED, PX_R_ALL_FAILED, "backend failed");
        return;
    }
    px_try_backend(c);
}

/* Picks a backend not tried yet and starts connecting to it; answers 503 when
 * none is available at all and 502 when every candidate failed. */
static void px_try_backend(px_conn_t *c)
{
    px_t *px = c->th->px;
    char err[SOCK_ERR_LEN];
    int max_tries = px->cfg.retries + 1;

    if (max_tries > PX_MAX_TRIES)
        max_tries = PX_MAX_TRIES;
    for (;;) {
        be_t *b = NULL;
        if (c->ntried < max_tries)
            b = be_pick(px->table, c->tried, c->ntried);
        if (b == NULL) {
            /* Only draining workers left is "unavailable", not "failed". */
            if (c->ntried == 0 || c->only_503)
                px_reply(c, 503, LBS_ERR_NO_BACKEND, PX_R_NO_BACKEND, "no backend available");
            else
                px_reply(c, 502, LBS_ERR_ALL_FAILED, PX_R_ALL_FAILED, "all backends failed");
            return;
        }
        c->tried[c->ntried++] = b;
        c->be = b;
        int fd = sock_connect(be_addr(b), NULL, err, sizeof(err));
        if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
            /* Out of descriptors here: the backend did nothing wrong, so
             * neither count it as a failure (that would take healthy
             * workers down) nor try the others. */
            log_warn("backend %s: %s; answering 503", be_id(b), err);
            px_release_backend(c);
            px_reply(c, 503, LBS_ERR_OVERLOAD, PX_R_OVERLOAD, "overloaded");
            return;
        }
        if (fd < 0) {
            lbs_inc(&px->stats->errors[LBS_ERR_CONNECT]);
            be_event(px->table, b, BE_EV_PASSIVE_FAIL, err);
            log_warn("backend %s: %s, retrying", be_id(b), err);
            px_release_backend(c);
            continue;
        }
        (void)sock_set_nodelay(fd);
        c->b.fd = fd;
        ev_io_init(&c->b.io, c->b.io.cb, fd, EV_WRITE);
        c->phase = PX_CONNECT;
        c->hsent = 0;
        px_timer(c, px->cfg.timeout_connect_ms / 1000.0);
        return;
    }
}

/* ---- phases ----------------------------------------------------------------- */

static void px_pump(px_conn_t *c);

/* If the TLS layer holds decrypted bytes the socket will not signal again,
 * make the read side run, but only when the tunnel would read them now
 * (otherwise the feed would spin without progress). */
static void px_kick_tls(px_conn_t *c)
{
    int reading = c->phase == PX_TUNNEL || (c->phase == PX_WAIT && c->hsent == buf_size(&c->hbuf));
    if (c->a.ssl != NULL && reading && !c->a.rd_eof && buf_size(&c->b.out) < PX_TUNNEL_CAP &&
        SSL_pending(c->a.ssl) > 0 && ev_is_active(&c->a.io))
        ev_feed_event(c->th->loop, &c->a.io, EV_READ);
}

/* ---- static files (--static) ------------------------------------------------ */

#define PX_STATIC_MIN_BPS (16 * 1024) /* a static answer must leave at least this fast */

/* Answers a plain request from the in-memory files when they have it (a
 * file, its 304, a directory's redirect, a 405 or a 400 for an unclean
 * path); returns 0 when they do not, and the request goes on. The answer is
 * rendered into the client's output at once and sent with the lb's own
 * lingering close: no disk, no backend. A client gets PX_LINGER_S plus
 * one second per PX_STATIC_MIN_BPS of the answer to take it, so a slow
 * reader cannot hold a large file's copy for long. */
static int px_static(px_conn_t *c, const http_head_t *h)
{
    px_t *px = c->th->px;
    int status = 0;

    if (px->cfg.st == NULL || h->upgrade)
        return 0;
    buf_free(&c->a.out);
    int r = st_respond(px->cfg.st, h, time(NULL), &c->a.out, &status);
    if (r == ST_PASS)
        return 0;
    if (r < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return 1;
    }
    st_count(px->cfg.st, status);
    c->status = (uint16_t)status;
    buf_free(&c->hbuf);
    c->phase = PX_REPLY;
    px_timer(c, PX_LINGER_S + (double)buf_size(&c->a.out) / PX_STATIC_MIN_BPS);
    px_flush_reply(c);
    return 1;
}

/* Lines fwd_rewrite_head adds to c's request. */
static size_t px_added_lines(const px_conn_t *c, int close)
{
    const px_config_t *cfg = &c->th->px->cfg;
    return FWD_BASE_LINES + (cfg->upstream_secret != NULL) + (cfg->lb_id != NULL) + (close != 0);
}

/* Decides what the public port does with a complete head, in this order:
 * (1) a websocket upgrade on a --route path is proxied; (2) a plain request
 * under a --proxy-http prefix is proxied, one per connection; (3) static
 * files (see the mark below); (4) the lb answers 404. 0 when the request
 * goes to a backend (c->ws_route says how), -1 when c was answered. */
static int px_route(px_conn_t *c, const http_head_t *h)
{
    px_t *px = c->th->px;

    switch (route_decide(px->cfg.routes, h)) {
    case ROUTE_WS:
        c->ws_route = 1;
        break;
    case ROUTE_HTTP:
        /* The lb follows a plain request's body only by its Content-Length:
         * a chunked one could carry a second request past the route check. */
        if (h->chunked) {
            px_reply(c, 411, LBS_ERR_BAD_REQUEST, PX_R_BAD_REQUEST, "length required");
            return -1;
        }
        c->up_capped = 1;
        c->up_left = h->has_content_length ? h->content_length : 0;
        break;
    case ROUTE_NONE:
        /* (3) GET and HEAD of a path that is no route: the static files. */
        if (px_static(c, h))
            return -1;
        px_reply(c, 404, LBS_ERR_NOT_FOUND, PX_R_NOT_FOUND, "not found");
        return -1;
    }
    /* A worker parses at most HTTP_MAX_HEADERS lines: with the lb's own
     * added, a head that would exceed that gets its 431 here, from the lb. */
    if (h->nheaders + px_added_lines(c, !c->ws_route) > HTTP_MAX_HEADERS) {
        px_reply(c, 431, LBS_ERR_HEAD_TOO_LARGE, PX_R_HEAD_TOO_LARGE,
                 "request header fields too large");
        return -1;
    }
    return 0;
}

/* The client's head is complete in hbuf. */
static void px_head_done(px_conn_t *c, const http_head_t *h)
{
    px_thread_t *th = c->th;
    char ip[SOCK_ADDRSTRLEN];
    sock_addr_t pa;

    px_hq_del(c);
    snprintf(c->req, sizeof(c->req), "%.*s %.*s", (int)h->method_str.n, h->method_str.p,
             (int)(h->path.n > 200 ? 200 : h->path.n), h->path.p);
    c->is_get = http_str_eq(h->method_str, "GET");
    if (c->shed) {
        px_reply(c, 503, LBS_ERR_OVERLOAD, PX_R_OVERLOAD, "overloaded");
        return;
    }
    snprintf(c->reqid, sizeof(c->reqid), "%06x%02x%08x", th->rid_rand & 0xffffff,
             (unsigned)th->idx & 0xff, ++th->rid_seq);
    if (px_route(c, h) < 0)
        return;
    if (buf_size(&c->hbuf) > h->head_len) /* frames sent with the upgrade */
        px_pass(c, 1, buf_head(&c->hbuf) + h->head_len, buf_size(&c->hbuf) - h->head_len);
    memset(&pa, 0, sizeof(pa));
    memcpy(&pa.ss, &c->peer, sizeof(c->peer));
    pa.len = c->peer.sa.sa_family == AF_INET6 ? sizeof(c->peer.in6) : sizeof(c->peer.in);
    if (sock_addr_host(&pa, ip, sizeof(ip)) == NULL)
        snprintf(ip, sizeof(ip), "unknown");
    fwd_t fwd = {.client_ip = ip,
                 .proto = c->tls ? "https" : "http",
                 .request_id = c->reqid,
                 .trusted = c->trusted,
                 .upstream_secret = th->px->cfg.upstream_secret,
                 .lb_id = th->px->cfg.lb_id,
                 .close = !c->ws_route,
                 .body_max = (size_t)c->up_left};
    buf_t nb = BUF_INIT;
    if (fwd_rewrite_head(buf_head(&c->hbuf), buf_size(&c->hbuf), h, &fwd, &nb) < 0) {
        buf_free(&nb);
        px_close(c, PX_R_NO_MEMORY);
        return;
    }
    /* What came with the head counts against the body it may carry. */
    if (c->up_capped) {
        size_t extra = buf_size(&c->hbuf) - h->head_len;
        c->up_left -= extra < c->up_left ? extra : c->up_left;
    }
    buf_free(&c->hbuf);
    c->hbuf = nb;
    c->retryable = 1;
    px_try_backend(c);
}

static void px_read_head(px_conn_t *c)
{
    px_t *px = c->th->px;
    size_t max_head = px->cfg.max_head ? px->cfg.max_head : HTTP_DEFAULT_MAX_HEAD;

    for (;;) {
        size_t want = PX_HEAD_CHUNK;
        char *p = buf_reserve(&c->hbuf, want);
        if (p == NULL) {
            px_close(c, PX_R_NO_MEMORY);
            return;
        }
        ssize_t n = px_sread(&c->a, p, want);
        if (n < 0) {
            if (errno != EAGAIN)
                px_close(c, PX_R_CLIENT_RESET);
            return;
        }
        if (n == 0) {
            /* Gone before asking anything: no answer is possible. */
            px_close(c, PX_R_CLIENT_EOF);
            return;
        }
        buf_commit(&c->hbuf, (size_t)n);
        c->bytes_in += (uint64_t)n;
        lbs_add(&px->stats->bytes_in, (uint64_t)n);

        http_head_t h;
        int r = http_parse_request(buf_head(&c->hbuf), buf_size(&c->hbuf), max_head, &h);
        if (r == HTTP_PARSE_AGAIN)
            continue;
        if (r == HTTP_PARSE_ERROR) {
            px_reply(c, 400, LBS_ERR_BAD_REQUEST, PX_R_BAD_REQUEST, "bad request");
            return;
        }
        if (r == HTTP_PARSE_TOO_LARGE || r == HTTP_PARSE_TOO_MANY) {
            px_reply(c, 431, LBS_ERR_HEAD_TOO_LARGE, PX_R_HEAD_TOO_LARGE,
                     "request header fields too large");
            return;
        }
        px_head_done(c, &h);
        return;
    }
}

static void px_tls_handshake(px_conn_t *c)
{
    c->a.ssl_rd_wants_w = 0;
    int r = SSL_do_handshake(c->a.ssl);
    if (r == 1) {
        c->phase = PX_HEAD;
        if (c->limited) {
            px_reply_limited(c);
            return;
        }
        px_read_head(c);
        return;
    }
    switch (tls_classify(c->a.ssl, r)) {
    case TLS_IO_WANT_READ:
        return;
    case TLS_IO_WANT_WRITE:
        c->a.ssl_rd_wants_w = 1;
        return;
    case TLS_IO_EOF:
        px_close(c, PX_R_CLIENT_EOF);
        return;
    default:
        lbs_inc(&c->th->px->stats->errors[LBS_ERR_TLS]);
        px_close(c, PX_R_TLS_ERROR);
        return;
    }
}

static void px_connected(px_conn_t *c)
{
    int e = sock_connect_result(c->b.fd);
    if (e != 0) {
        px_backend_failed(c, LBS_ERR_CONNECT, strerror(e));
        return;
    }
    c->phase = PX_WAIT;
    px_timer(c, c->th->px->cfg.timeout_response_ms / 1000.0);
    px_pump(c);
}

/* The backend's response head is complete in rbuf. */
static void px_response(px_conn_t *c, const http_head_t *h)
{
    px_t *px = c->th->px;

    /* A draining worker answers 503 to new clients; while the request can be
     * replayed, another worker is the better answer. Not a health failure. */
    if (h->status == 503 && c->is_get && c->retryable) {
        log_info("backend %s answered 503 (draining?), trying another", be_id(c->be));
        c->only_503 = c->ntried == 1 || c->only_503;
        px_release_backend(c);
        px_try_backend(c);
        return;
    }
    /* Only a websocket route may become a tunnel of another protocol: a 101
     * to a plain request (whose Upgrade the lb dropped) would open one to
     * the backend past every route. */
    if (h->status == 101 && !c->ws_route) {
        log_warn("backend %s answered 101 to a plain request; refusing the tunnel", be_id(c->be));
        px_reply(c, 502, LBS_ERR_ALL_FAILED, PX_R_ALL_FAILED, "backend failed");
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
        met_observe(px->stats->handshake_ms, (double)(px_now_ns() - c->start_ns) / 1e6);

    if (h->status == 101) {
        c->ws = http_header_has_token(h, "Upgrade", "websocket");
        /* Frames the backend sent right behind its 101 (the worker's hello). */
        if (buf_size(&c->rbuf) > h->head_len)
            px_pass(c, 0, buf_head(&c->rbuf) + h->head_len, buf_size(&c->rbuf) - h->head_len);
    }
    size_t n = buf_size(&c->rbuf);
    c->bytes_out += n;
    lbs_add(&px->stats->bytes_out, n);
    /* The head and whatever followed it become the client's output as is. */
    buf_free(&c->a.out);
    c->a.out = c->rbuf;
    c->rbuf = (buf_t)BUF_INIT;
    buf_free(&c->hbuf);
    c->hsent = 0;
    c->retryable = 0;
    c->phase = PX_TUNNEL;
    c->last_io = ev_now(c->th->loop);
    px_timer(c, px_tunnel_limit(c));
}

/* WAIT: reads what the backend has sent of its response head. */
static void px_read_response(px_conn_t *c)
{
    px_t *px = c->th->px;
    size_t max_head = px->cfg.max_head ? px->cfg.max_head : HTTP_DEFAULT_MAX_HEAD;

    for (;;) {
        char *p = buf_reserve(&c->rbuf, PX_HEAD_CHUNK);
        if (p == NULL) {
            px_close(c, PX_R_NO_MEMORY);
            return;
        }
        ssize_t n = px_sread(&c->b, p, PX_HEAD_CHUNK);
        if (n < 0) {
            if (errno != EAGAIN)
                px_backend_failed(c, LBS_ERR_CONNECT, strerror(errno));
            return;
        }
        if (n == 0) {
            px_backend_failed(c, LBS_ERR_CONNECT, "closed before answering");
            return;
        }
        buf_commit(&c->rbuf, (size_t)n);
        http_head_t h;
        int r = http_parse_response(buf_head(&c->rbuf), buf_size(&c->rbuf), max_head, &h);
        if (r == HTTP_PARSE_AGAIN)
            continue;
        if (r < 0) {
            px_backend_failed(c, LBS_ERR_CONNECT, "malformed response head");
            return;
        }
        px_response(c, &h);
        return;
    }
}

/* ---- tunnel ------------------------------------------------------------------ */

/* Why a connection ends when reading or writing side s failed for good. */
static enum px_reason px_reset_reason(px_conn_t *c, px_side_t *s)
{
    if (s->rd_eof)
        return px_eof_reason(c, s == &c->a);
    return s == &c->a ? PX_R_CLIENT_RESET : PX_R_BACKEND_RESET;
}

/* A write to s failed for good. Before the response head a backend write
 * failure is a failed backend (retried); anything else ends the connection. */
static void px_write_failed(px_conn_t *c, px_side_t *s)
{
    if (s == &c->b && c->phase == PX_WAIT)
        px_backend_failed(c, LBS_ERR_CONNECT, "write failed");
    else
        px_close(c, px_reset_reason(c, s));
}

/* Writes what is queued toward s (for the backend in WAIT, the request prefix
 * first). 0 while the connection lives on, -1 when it failed. */
static int px_flush(px_conn_t *c, px_side_t *s)
{
    if (s->fd < 0)
        return 0;
    if (s == &c->b && c->phase == PX_WAIT) {
        while (c->hsent < buf_size(&c->hbuf)) {
            ssize_t w = px_swrite(s, buf_head(&c->hbuf) + c->hsent, buf_size(&c->hbuf) - c->hsent);
            if (w < 0) {
                if (errno == EAGAIN)
                    return 0;
                px_write_failed(c, s);
                return -1;
            }
            c->hsent += (size_t)w;
        }
    }
    while (buf_size(&s->out) > 0) {
        ssize_t w = px_swrite(s, buf_head(&s->out), buf_size(&s->out));
        if (w < 0) {
            if (errno == EAGAIN)
                return 0;
            px_write_failed(c, s);
            return -1;
        }
        buf_consume(&s->out, (size_t)w);
        c->last_io = ev_now(c->th->loop);
    }
    if (s->shut_pending && !s->wr_shut) {
        /* The other side finished and everything it sent is out: pass the
         * half-close on, so a peer waiting for EOF sees it. */
        if (s->ssl != NULL)
            (void)SSL_shutdown(s->ssl);
        shutdown(s->fd, SHUT_WR);
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
        ssize_t w = px_swrite(y, p, n);
        if (w > 0) {
            off = (size_t)w;
        } else if (errno != EAGAIN) {
            px_write_failed(c, y);
            return -1;
        }
    }
    if (off < n && buf_append(&y->out, p + off, n - off) < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return -1;
    }
    return 0;
}

/* Moves bytes from x to y while y's queue has room. 0 or -1 (failed). */
static int px_xfer(px_conn_t *c, px_side_t *x, px_side_t *y)
{
    px_t *px = c->th->px;
    char *sc = c->th->scratch;
    int up = x == &c->a;
    size_t budget = PX_PUMP_BUDGET;

    /* In a plain tunnel only a side whose readiness was reported is read: a
     * read on the quiet side would only return EAGAIN, one wasted syscall
     * per message. Level-triggered readiness brings back any side skipped
     * here. TLS may hold decrypted bytes the socket does not show. */
    if (c->phase == PX_TUNNEL && x->ssl == NULL && !(up ? c->rd_hint_a : c->rd_hint_b))
        return 0;
    while (!x->rd_eof && budget > 0) {
        size_t q = buf_size(&y->out);
        if (q >= PX_TUNNEL_CAP)
            break;
        size_t room = PX_TUNNEL_CAP - q;
        if (room > PX_SCRATCH)
            room = PX_SCRATCH;
        ssize_t n = px_sread(x, sc, room);
        if (n < 0) {
            if (errno == EAGAIN)
                break;
            if (!up && c->phase == PX_WAIT)
                px_backend_failed(c, LBS_ERR_CONNECT, strerror(errno));
            else if (!up && px_ws_at_boundary(c) && !c->wsc.close)
                px_ws_backend_gone(c, PX_R_BACKEND_RESET);
            else
                px_close(c, px_reset_reason(c, x));
            return -1;
        }
        /* The worker went away without closing the websocket: the client
         * gets a 1014 it can reconnect on, unless it is closing it itself. */
        if (n == 0 && !up && c->phase == PX_TUNNEL && px_ws_at_boundary(c) && !c->wsc.close) {
            px_ws_backend_gone(c, px_eof_reason(c, 0));
            return -1;
        }
        if (n == 0) {
            x->rd_eof = 1;
            y->shut_pending = 1;
            px_set_reason(c, px_eof_reason(c, up));
            if (up && c->phase == PX_WAIT)
                c->retryable = 0; /* a replay could not repeat the half-close timing */
            if (c->phase == PX_TUNNEL)
                px_timer(c, px_tunnel_limit(c));
            break;
        }
        c->last_io = ev_now(c->th->loop);
        if (up) {
            c->bytes_in += (uint64_t)n;
            lbs_add(&px->stats->bytes_in, (uint64_t)n);
        } else {
            c->bytes_out += (uint64_t)n;
            lbs_add(&px->stats->bytes_out, (uint64_t)n);
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
         * next read would be EAGAIN (HAProxy makes the same bet). */
        if (x->ssl == NULL && (size_t)n < room)
            break;
    }
    if (budget == 0 && x->ssl != NULL && SSL_pending(x->ssl) > 0)
        ev_feed_event(c->th->loop, &x->io, EV_READ);
    return 0;
}

/* One round of everything that can make progress in WAIT and TUNNEL. */
static void px_pump(px_conn_t *c)
{
    if (px_flush(c, &c->a) < 0 || px_flush(c, &c->b) < 0)
        return;
    if (c->phase == PX_WAIT) {
        if (c->hsent == buf_size(&c->hbuf) && px_xfer(c, &c->a, &c->b) < 0)
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
    if (c->a.rd_eof && c->b.rd_eof && buf_size(&c->a.out) == 0 && buf_size(&c->b.out) == 0)
        px_close(c, PX_R_NONE); /* reason: whichever side finished first */
}

/* ---- callbacks ----------------------------------------------------------------- */

static void px_linger_read(px_conn_t *c)
{
    char *sc = c->th->scratch;
    for (int i = 0; i < 16; i++) {
        ssize_t n = px_sread(&c->a, sc, PX_SCRATCH);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            px_close(c, PX_R_NONE);
            return;
        }
    }
}

/* Runs the phase's work for an event on either socket. */
static void px_step(px_conn_t *c)
{
    switch (c->phase) {
    case PX_TLS_HS:
        px_tls_handshake(c);
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
static void px_after(px_conn_t *c)
{
    if (c->closing) {
        px_conn_free(c);
        return;
    }
    px_update(c);
    px_kick_tls(c);
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
    case PX_TLS_HS:
        lbs_inc(&c->th->px->stats->errors[LBS_ERR_HEAD_TIMEOUT]);
        px_close(c, PX_R_HEAD_TIMEOUT);
        break;
    case PX_HEAD:
        px_reply(c, 408, LBS_ERR_HEAD_TIMEOUT, PX_R_HEAD_TIMEOUT, "request timeout");
        break;
    case PX_CONNECT:
        px_backend_failed(c, LBS_ERR_CONNECT, "connect timeout");
        break;
    case PX_WAIT:
        px_backend_failed(c, LBS_ERR_BACKEND_TIMEOUT, "no response in time");
        break;
    case PX_TUNNEL: {
        double lim = px_tunnel_limit(c);
        double idle = ev_now(loop) - c->last_io;
        if (lim <= 0)
            break;
        if (idle >= lim && px_ws_at_boundary(c))
            px_ws_close_client(c, WS_CLOSE_GOING_AWAY, "idle timeout", PX_R_IDLE_TIMEOUT);
        else if (idle >= lim)
            px_close(c, PX_R_IDLE_TIMEOUT);
        else
            px_timer(c, lim - idle);
        break;
    }
    case PX_REPLY:
    case PX_LINGER:
        px_close(c, PX_R_NONE);
        break;
    }
    px_after(c);
}

/* ---- accepting ----------------------------------------------------------------- */

/* Most client connections the open-files limit allows: each needs its own
 * descriptor and one toward a backend, and PX_FD_RESERVE stay spare for
 * listeners, loops, health checks, Redis and the admin API. Accepting beyond
 * it would leave accepted clients without a descriptor for their backend, so
 * everyone would fail instead of the excess. Read on every accept so that a
 * limit raised (or lowered) at run time counts. 0 = unlimited. */
static long px_fd_cap(const px_t *px)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    long spare = PX_FD_RESERVE + 2L * px->nth * (long)(px->cfg.nlisten + px->cfg.ntls_listen);
    long cap = ((long)rl.rlim_cur - spare) / 2;
    return cap > 1 ? cap : 1;
}

/* Takes ownership of fd: a new connection in its first phase. */
static void px_conn_new(px_thread_t *th, int fd, const sock_addr_t *peer, int tls)
{
    px_t *px = th->px;
    px_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        lbs_inc(&px->stats->errors[LBS_ERR_OVERLOAD]);
        return;
    }
    c->th = th;
    c->start_ns = px_now_ns();
    c->a.fd = fd;
    c->b.fd = -1;
    c->tls = tls != 0;
    memcpy(&c->peer, &peer->ss, peer->len < sizeof(c->peer) ? peer->len : sizeof(c->peer));
    ev_io_init(&c->a.io, px_client_cb, fd, EV_READ);
    ev_io_init(&c->b.io, px_backend_cb, -1, 0);
    ev_init(&c->timer, px_timer_cb);
    (void)sock_set_nodelay(fd);

    c->next = th->conns;
    if (th->conns)
        th->conns->prev = c;
    th->conns = c;
    lbs_active(px->stats, 1);

    long cap = px_fd_cap(px);
    if (px->cfg.max_conns > 0 && (cap == 0 || px->cfg.max_conns < cap))
        cap = px->cfg.max_conns;
    if (cap > 0 && __atomic_load_n(&px->stats->active, __ATOMIC_RELAXED) > cap) {
        /* Over the cap, this thread's oldest connection that has sent no
         * complete request for a while makes way, as on the admin API
         * (lb/acap.c): silent connections cannot lock real requests out. */
        px_conn_t *v = th->hq_first;
        if (v != NULL && px_now_ns() - v->start_ns >= PX_EVICT_AGE_NS) {
            lbs_inc(&px->stats->errors[LBS_ERR_EVICTED]);
            px_close(v, PX_R_EVICTED);
            px_after(v); /* not inside any of v's callbacks: frees it */
        } else {
            c->shed = 1;
        }
    }
    c->trusted = px->cfg.trusted != NULL && cidr_set_match(px->cfg.trusted, &c->peer.sa);
    if (px->cfg.lim != NULL && !c->trusted && lim_key_from_sa(&c->peer.sa, &c->lim_key) == 0) {
        unsigned ra = 1;
        enum lim_verdict v = lim_enter(px->cfg.lim, &c->lim_key, &ra);
        if (v == LIM_OK)
            c->lim_held = 1;
        else if (v < 0) {
            c->limited = (int8_t)v;
            c->retry_after = (uint16_t)(ra > 3600 ? 3600 : ra);
        }
    }
    if (tls) {
        c->a.ssl = tls_new_conn(px->cfg.tls, fd);
        if (c->a.ssl == NULL) {
            px_conn_free(c);
            return;
        }
        c->phase = PX_TLS_HS;
    } else {
        c->phase = PX_HEAD;
    }
    px_timer(c, px->cfg.timeout_head_ms / 1000.0);
    px_hq_add(c);
    if (c->limited && !tls) {
        /* Not inside any of c's callbacks: px_after may free it. */
        px_reply_limited(c);
        px_after(c);
        return;
    }
    ev_io_start(th->loop, &c->a.io);
}

/* Out of descriptors with clients waiting: frees the reserve descriptor to
 * accept one of them, answers 503 (best effort, one non-blocking send) and
 * closes it, then takes the reserve back. Turning clients away like this
 * empties the backlog, so they learn at once instead of hanging until a
 * descriptor frees up, and the listener does not stay readable. 0 if a
 * client was turned away, -1 if that was not possible. */
static int px_turn_away(px_thread_t *th, px_listener_t *l)
{
    static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Content-Type: application/json\r\nContent-Length: 23\r\n"
                               "Connection: close\r\nRetry-After: 1\r\n\r\n"
                               "{\"error\":\"overloaded\"}\n";
    sock_addr_t peer;

    if (th->reserve_fd < 0 || l->tls)
        return -1; /* a TLS client cannot read a plain answer: let it wait */
    close(th->reserve_fd);
    th->reserve_fd = -1;
    int fd = sock_accept(l->fd, &peer);
    int e = errno;
    if (fd >= 0) {
        (void)send(fd, resp, sizeof(resp) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        lbs_inc(&th->px->stats->accepted);
    }
    th->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    errno = e; /* the caller looks at why accept failed */
    return fd >= 0 ? 0 : -1;
}

/* The acceptor's hooks (common/acc.h): a new client; EMFILE, where a
 * client may be turned away; a pause, counted as overload; the pause's end,
 * when the reserve descriptor is taken back if turning away gave it up. */
static void px_on_accept(acc_t *a, int fd, const sock_addr_t *peer, void *ud)
{
    px_listener_t *l = ud;
    lbs_inc(&l->th->px->stats->accepted);
    px_conn_new(l->th, fd, peer, l->tls);
}

static int px_on_emfile(acc_t *a, int lfd, void *ud)
{
    px_listener_t *l = ud;
    if (px_turn_away(l->th, l) < 0)
        return -1;
    lbs_inc(&l->th->px->stats->errors[LBS_ERR_OVERLOAD]);
    return 0;
}

static void px_on_pause(acc_t *a, int err, void *ud)
{
    px_listener_t *l = ud;
    lbs_inc(&l->th->px->stats->errors[LBS_ERR_OVERLOAD]);
}

static void px_on_resume(acc_t *a, void *ud)
{
    px_thread_t *th = ((px_listener_t *)ud)->th;
    if (th->reserve_fd < 0)
        th->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void px_close_listeners(px_thread_t *th)
{
    th->accepting = 0;
    for (size_t i = 0; i < th->nls; i++) {
        acc_free(th->ls[i].acc);
        th->ls[i].acc = NULL;
        if (th->ls[i].fd >= 0) {
            close(th->ls[i].fd);
            th->ls[i].fd = -1;
        }
    }
}

/* Cross-thread requests arrive here as flags. */
static void px_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    px_thread_t *th = container_of(w, px_thread_t, wake);
    px_t *px = th->px;

    if (__atomic_load_n(&px->stop_accept, __ATOMIC_ACQUIRE) && th->accepting)
        px_close_listeners(th);
    if (__atomic_load_n(&px->shutdown, __ATOMIC_ACQUIRE)) {
        px_close_listeners(th);
        while (th->conns != NULL) {
            px_conn_t *c = th->conns;
            px_set_reason(c, PX_R_SHUTDOWN);
            /* Past the grace period: a websocket client between frames gets a
             * 1001 it can reconnect on, best effort (one non-blocking write,
             * only when nothing else is queued toward it). */
            if (c->phase == PX_TUNNEL && px_ws_at_boundary(c) && buf_size(&c->a.out) == 0 &&
                ws_close_write(&c->a.out, WS_ROLE_SERVER, WS_CLOSE_GOING_AWAY,
                               "load balancer shutting down") == 0)
                (void)px_swrite(&c->a, buf_head(&c->a.out), buf_size(&c->a.out));
            /* Not inside any of c's callbacks: freeing here is safe. */
            px_conn_free(c);
        }
        ev_async_stop(loop, &th->wake);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *px_thread_main(void *arg)
{
    px_thread_t *th = arg;
    ev_run(th->loop, 0);
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------- */

/* Binds one listener per address on thread th. addrs are updated when a port
 * was 0, so every thread shares the port the first one got. */
static int px_bind(px_thread_t *th, sock_addr_t *addrs, const int *tls, size_t n, char *err,
                   size_t errlen)
{
    th->ls = calloc(n ? n : 1, sizeof(*th->ls));
    if (th->ls == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        th->ls[i].fd = -1;
    th->nls = n;
    for (size_t i = 0; i < n; i++) {
        px_listener_t *l = &th->ls[i];
        char as[SOCK_ADDRSTRLEN], e2[SOCK_ERR_LEN];
        l->fd = sock_listen(&addrs[i], PX_BACKLOG, SOCK_REUSEPORT, e2, sizeof(e2));
        if (l->fd < 0) {
            snprintf(err, errlen, "listen %s: %s", sock_addr_str(&addrs[i], as, sizeof(as)), e2);
            return -1;
        }
        sock_addr_t bound;
        if (sock_local_addr(l->fd, &bound) == 0)
            addrs[i] = bound;
        l->tls = tls[i];
        l->th = th;
        acc_config_t ac = {.fd = l->fd,
                           .batch = PX_ACCEPT_BATCH,
                           .backoff_s = PX_ACCEPT_BACKOFF,
                           .on_fd = px_on_accept,
                           .on_emfile = px_on_emfile,
                           .on_pause = px_on_pause,
                           .on_resume = px_on_resume,
                           .ud = l};
        if ((l->acc = acc_create(th->loop, &ac, err, errlen)) == NULL)
            return -1;
        acc_start(l->acc);
    }
    th->accepting = 1;
    return 0;
}

/* Checks that nothing listens on any of the n addresses yet (see
 * px_create). 0, or -1 with errno and err. */
static int px_probe(const sock_addr_t *addrs, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (sock_probe_free(&addrs[i], err, errlen) < 0)
            return -1;
    return 0;
}

px_t *px_create(be_table_t *table, lbs_t *stats, const px_config_t *cfg, char *err, size_t errlen)
{
    size_t n = cfg->nlisten + cfg->ntls_listen;
    sock_addr_t *addrs = NULL;
    int *tls = NULL;
    int fail_errno = 0;
    px_t *p = calloc(1, sizeof(*p));

    if (p == NULL)
        goto oom;
    p->table = table;
    p->stats = stats;
    p->cfg = *cfg;
    /* Addresses are parsed here and not needed later: don't keep pointers. */
    p->cfg.listen = NULL;
    p->cfg.tls_listen = NULL;
    p->nth = cfg->threads > 0 ? cfg->threads : 1;
    if (cfg->ntls_listen > 0 && cfg->tls == NULL) {
        snprintf(err, errlen, "--tls-listen needs --cert and --key");
        goto fail;
    }
    if (n == 0) {
        snprintf(err, errlen, "nothing to listen on");
        goto fail;
    }
    addrs = calloc(n, sizeof(*addrs));
    tls = calloc(n, sizeof(*tls));
    p->th = calloc((size_t)p->nth, sizeof(*p->th));
    if (addrs == NULL || tls == NULL || p->th == NULL)
        goto oom;
    for (int i = 0; i < p->nth; i++)
        p->th[i].reserve_fd = -1; /* px_free closes it when >= 0 */
    for (size_t i = 0; i < n; i++) {
        const char *s = i < cfg->nlisten ? cfg->listen[i] : cfg->tls_listen[i - cfg->nlisten];
        char e2[SOCK_ERR_LEN];
        tls[i] = i >= cfg->nlisten;
        if (sock_parse_addr(s, &addrs[i], e2, sizeof(e2)) < 0) {
            snprintf(err, errlen, "%s: %s", tls[i] ? "--tls-listen" : "--listen", e2);
            goto fail;
        }
    }

    if (!cfg->takeover && px_probe(addrs, n, err, errlen) < 0) {
        fail_errno = errno;
        goto fail;
    }

    uint32_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = (uint32_t)getpid() ^ (uint32_t)px_now_ns();
    for (int i = 0; i < p->nth; i++) {
        px_thread_t *th = &p->th[i];
        th->px = p;
        th->idx = i;
        th->rid_rand = seed + (uint32_t)i * 0x9e3779b9u;
        th->scratch = malloc(PX_SCRATCH);
        th->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        th->loop = ev_loop_new(EVFLAG_AUTO);
        if (th->scratch == NULL || th->loop == NULL)
            goto oom;
        ev_async_init(&th->wake, px_wake_cb);
        ev_async_start(th->loop, &th->wake);
        if (px_bind(th, addrs, tls, n, err, errlen) < 0)
            goto fail;
    }
    free(addrs);
    free(tls);
    return p;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(addrs);
    free(tls);
    px_free(p);
    errno = fail_errno;
    return NULL;
}

int px_listen_addr(px_t *p, int tls, sock_addr_t *out)
{
    if (p == NULL || p->nth == 0)
        return -1;
    px_thread_t *th = &p->th[0];
    for (size_t i = 0; i < th->nls; i++)
        if (th->ls[i].tls == tls && th->ls[i].fd >= 0)
            return sock_local_addr(th->ls[i].fd, out);
    return -1;
}

int px_start(px_t *p, char *err, size_t errlen)
{
    sigset_t all, old;

    /* Signals belong to the main loop's ev_signal watchers: proxy threads
     * inherit a mask that blocks them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < p->nth; i++) {
        int e = pthread_create(&p->th[i].tid, NULL, px_thread_main, &p->th[i]);
        if (e != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(e));
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return -1;
        }
        p->th[i].started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

void px_stop_accepting(px_t *p)
{
    __atomic_store_n(&p->stop_accept, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < p->nth; i++)
        if (p->th[i].loop != NULL)
            ev_async_send(p->th[i].loop, &p->th[i].wake);
}

void px_shutdown(px_t *p)
{
    __atomic_store_n(&p->shutdown, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < p->nth; i++)
        if (p->th[i].loop != NULL)
            ev_async_send(p->th[i].loop, &p->th[i].wake);
}

void px_free(px_t *p)
{
    if (p == NULL)
        return;
    if (p->th != NULL) {
        int any = 0;
        for (int i = 0; i < p->nth; i++)
            any |= p->th[i].started;
        if (any)
            px_shutdown(p);
        for (int i = 0; i < p->nth; i++) {
            px_thread_t *th = &p->th[i];
            if (th->started)
                pthread_join(th->tid, NULL);
            if (th->loop != NULL) {
                /* Never ran (or already stopped): release what is left. */
                while (th->conns != NULL)
                    px_conn_free(th->conns);
                px_close_listeners(th);
                ev_async_stop(th->loop, &th->wake);
                ev_loop_destroy(th->loop);
            }
            free(th->ls);
            free(th->scratch);
            if (th->reserve_fd >= 0)
                close(th->reserve_fd);
        }
        free(p->th);
    }
    free(p);
}
