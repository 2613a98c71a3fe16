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
 * reads and writes it, and the bytes queued toward it. */
struct px_side {
    ev_io io;
    buf_t out; /* bytes waiting to be written to this side */
    const px_io_ops_t *ops;
    void *ctx;                 /* the transport's state: the SSL of a TLS side */
    int fd;                    /* -1 = none */
    unsigned rd_eof : 1;       /* this side sent EOF */
    unsigned shut_pending : 1; /* the other side sent EOF: shut our write once out drains */
    unsigned wr_shut : 1;      /* we shut our write toward this side */
    unsigned wants : 2;        /* PX_IO_*_WANTS_* */
};

extern const px_io_ops_t px_io_plain;
extern const px_io_ops_t px_io_tls;

/* Makes s a TLS server side on s->fd, in accept state, with a new SSL from
 * tls's current context. 0, or -1 (out of memory; s unchanged). */
int px_io_tls_attach(px_side_t *s, tls_t *tls);

static inline ssize_t px_io_recv(px_side_t *s, char *p, size_t n)
{
    return s->ops->recv(s, p, n);
}

static inline ssize_t px_io_send(px_side_t *s, const char *p, size_t n)
{
    return s->ops->send(s, p, n);
}

#endif
