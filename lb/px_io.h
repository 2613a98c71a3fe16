/* px_io: the transport under one side of a session. A side reads and writes
 * through a table of functions (px_io_ops_t), plain or TLS, that it points
 * at, as nginx swaps c->recv and c->send: the session's code is the same for
 * both, with no test of which one it is.
 *
 * What TLS needs beyond plain reads and writes reaches the session as data,
 * not as branches:
 *   - wants: SSL_read (and the handshake) may need the socket writable, and
 *     SSL_write may need it readable; each call sets its bit in s->wants,
 *     and the session waits for those events as well as its own.
 *   - pending(): bytes already taken from the socket and decrypted, which
 *     the socket's readiness will not announce again.
 *   - buffered: such bytes can exist at all, so a side must be read even
 *     when its socket was not reported readable, and a short read does not
 *     mean its socket is drained. */
#ifndef LB_PX_IO_H
#define LB_PX_IO_H

#include <stddef.h>
#include <sys/types.h>

#include <ev.h>

#include "buf.h"
#include "tls.h"

/* s->wants bits, each set by the last call of its kind. */
enum {
    PX_IO_RECV_WANTS_WRITE = 1, /* recv (or the handshake) waits for the socket to be writable */
    PX_IO_SEND_WANTS_READ = 2,  /* send waits for the socket to be readable */
};

/* What handshake() says. */
enum px_io_hs {
    PX_IO_HS_DONE = 0, /* the transport carries data now */
    PX_IO_HS_AGAIN,    /* call again on the next event (see wants) */
    PX_IO_HS_EOF,      /* the peer closed */
    PX_IO_HS_ERROR,    /* failed for good */
};

typedef struct px_side px_side_t;

typedef struct px_io_ops {
    /* >0 bytes read, 0 on EOF, -1 with errno (EAGAIN = later, anything else
     * is fatal for the connection). */
    ssize_t (*recv)(px_side_t *s, char *p, size_t n);
    /* >0 bytes written, -1 with errno (EAGAIN = later, anything else is
     * fatal for the connection); never 0. */
    ssize_t (*send)(px_side_t *s, const char *p, size_t n);
    /* Half-closes the way toward the peer (TLS: close_notify first, best
     * effort). */
    void (*shutdown_wr)(px_side_t *s);
    /* Bytes held above the socket, readable now without it. */
    int (*pending)(const px_side_t *s);
    /* Runs the transport's own handshake one step. */
    enum px_io_hs (*handshake)(px_side_t *s);
    /* Releases the transport's state (not the descriptor). */
    void (*free)(px_side_t *s);
    unsigned buffered : 1; /* recv may return bytes the socket no longer shows */
} px_io_ops_t;

/* One socket of a session: its descriptor and watcher, the transport that
 * reads and writes it, and the bytes queued toward it.
 *
 * An idle tunnel holds two of these, so every byte counts
 * (px_conn_idle_bytes): the queue is a pointer, allocated only while bytes
 * wait (a send that completes at once never queues); the transport is a bit
 * (px_io_ops) instead of a pointer to its table; a TLS side keeps its SSL in
 * io.data, the field libev leaves to its user. */
struct px_side {
    ev_io io;                  /* io.data: the transport's state (the SSL of a TLS side) */
    buf_t *out;                /* bytes waiting to be written to this side; NULL = none */
    int fd;                    /* -1 = none */
    unsigned rd_eof : 1;       /* this side sent EOF */
    unsigned shut_pending : 1; /* the other side sent EOF: shut our write once out drains */
    unsigned wr_shut : 1;      /* we shut our write toward this side */
    unsigned wants : 2;        /* PX_IO_*_WANTS_* */
    unsigned tls : 1;          /* the transport is px_io_tls, else px_io_plain */
};

extern const px_io_ops_t px_io_plain;
extern const px_io_ops_t px_io_tls;

/* Makes s a TLS server side on s->fd, in accept state, with a new SSL from
 * tls's current context. 0, or -1 (out of memory; s unchanged). */
int px_io_tls_attach(px_side_t *s, tls_t *tls);

/* The table of s's transport. */
static inline const px_io_ops_t *px_io_ops(const px_side_t *s)
{
    return s->tls ? &px_io_tls : &px_io_plain;
}

static inline ssize_t px_io_recv(px_side_t *s, char *p, size_t n)
{
    return px_io_ops(s)->recv(s, p, n);
}

static inline ssize_t px_io_send(px_side_t *s, const char *p, size_t n)
{
    return px_io_ops(s)->send(s, p, n);
}

/* ---- the queue toward a side ---------------------------------------------------- */

/* Bytes queued toward s. */
static inline size_t px_out_size(const px_side_t *s)
{
    return s->out != NULL ? buf_size(s->out) : 0;
}

/* The first queued byte (only with px_out_size(s) > 0). */
static inline const char *px_out_head(const px_side_t *s)
{
    return buf_head(s->out);
}

/* s's queue, made when s has none, to append to: NULL when out of memory.
 * A queue left empty is released by px_out_consume or px_out_free. */
buf_t *px_out(px_side_t *s);
/* Appends n bytes to s's queue. 0, or -1 when out of memory. */
int px_out_append(px_side_t *s, const void *p, size_t n);
/* Makes b's bytes s's queue, without a copy; b is left empty. s's queue
 * must be empty. 0, or -1 when out of memory (b unchanged). */
int px_out_take(px_side_t *s, buf_t *b);
/* Drops n bytes written from the front; an emptied queue is released, so an
 * idle side holds none. */
void px_out_consume(px_side_t *s, size_t n);
/* Releases s's queue and what it holds. */
void px_out_free(px_side_t *s);

#endif
