/* px_io: plain and TLS transports for a session's sides (see px_io.h). */
#include "px_io.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* ---- plain ---------------------------------------------------------------------- */

static ssize_t px_plain_recv(px_side_t *s, char *p, size_t n)
{
    ssize_t r;
    do {
        r = read(s->fd, p, n);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EWOULDBLOCK)
        errno = EAGAIN;
    return r;
}

static ssize_t px_plain_send(px_side_t *s, const char *p, size_t n)
{
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

static void px_plain_shutdown_wr(px_side_t *s)
{
    shutdown(s->fd, SHUT_WR);
}

static int px_plain_pending(const px_side_t *s)
{
    return 0;
}

static enum px_io_hs px_plain_handshake(px_side_t *s)
{
    return PX_IO_HS_DONE;
}

static void px_plain_free(px_side_t *s)
{
}

const px_io_ops_t px_io_plain = {
    .recv = px_plain_recv,
    .send = px_plain_send,
    .shutdown_wr = px_plain_shutdown_wr,
    .pending = px_plain_pending,
    .handshake = px_plain_handshake,
    .free = px_plain_free,
    .buffered = 0,
};

/* ---- TLS ------------------------------------------------------------------------- */

static ssize_t px_tls_recv(px_side_t *s, char *p, size_t n)
{
    SSL *ssl = s->io.data;
    s->wants &= ~PX_IO_RECV_WANTS_WRITE;
    int r = SSL_read(ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    switch (tls_classify(ssl, r)) {
    case TLS_IO_WANT_WRITE:
        s->wants |= PX_IO_RECV_WANTS_WRITE;
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

static ssize_t px_tls_send(px_side_t *s, const char *p, size_t n)
{
    SSL *ssl = s->io.data;
    s->wants &= ~PX_IO_SEND_WANTS_READ;
    int r = SSL_write(ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (r > 0)
        return r;
    switch (tls_classify(ssl, r)) {
    case TLS_IO_WANT_READ:
        s->wants |= PX_IO_SEND_WANTS_READ;
        /* fallthrough */
    case TLS_IO_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    default:
        errno = EPIPE;
        return -1;
    }
}

/* close_notify, best effort: what had to go out is out, and a peer that
 * does not wait for it loses nothing. */
static void px_tls_shutdown_wr(px_side_t *s)
{
    (void)SSL_shutdown(s->io.data);
    ERR_clear_error();
    shutdown(s->fd, SHUT_WR);
}

static int px_tls_pending(const px_side_t *s)
{
    return SSL_pending(s->io.data);
}

static enum px_io_hs px_tls_handshake(px_side_t *s)
{
    SSL *ssl = s->io.data;
    s->wants &= ~PX_IO_RECV_WANTS_WRITE;
    int r = SSL_do_handshake(ssl);
    if (r == 1)
        return PX_IO_HS_DONE;
    switch (tls_classify(ssl, r)) {
    case TLS_IO_WANT_READ:
        return PX_IO_HS_AGAIN;
    case TLS_IO_WANT_WRITE:
        s->wants |= PX_IO_RECV_WANTS_WRITE;
        return PX_IO_HS_AGAIN;
    case TLS_IO_EOF:
        return PX_IO_HS_EOF;
    default:
        return PX_IO_HS_ERROR;
    }
}

static void px_tls_free(px_side_t *s)
{
    SSL_free(s->io.data);
    s->io.data = NULL;
}

const px_io_ops_t px_io_tls = {
    .recv = px_tls_recv,
    .send = px_tls_send,
    .shutdown_wr = px_tls_shutdown_wr,
    .pending = px_tls_pending,
    .handshake = px_tls_handshake,
    .free = px_tls_free,
    .buffered = 1,
};

int px_io_tls_attach(px_side_t *s, tls_t *tls)
{
    SSL *ssl = tls_new_conn(tls, s->fd);
    if (ssl == NULL)
        return -1;
    s->io.data = ssl;
    s->tls = 1;
    return 0;
}

/* ---- the queue toward a side ---------------------------------------------------- */

buf_t *px_out(px_side_t *s)
{
    if (s->out == NULL)
        s->out = calloc(1, sizeof(*s->out));
    return s->out;
}

int px_out_append(px_side_t *s, const void *p, size_t n)
{
    buf_t *b = px_out(s);
    if (b == NULL || buf_append(b, p, n) < 0) {
        if (b != NULL && buf_size(b) == 0)
            px_out_free(s);
        return -1;
    }
    return 0;
}

int px_out_take(px_side_t *s, buf_t *b)
{
    buf_t *o = px_out(s);
    if (o == NULL)
        return -1;
    buf_free(o);
    *o = *b;
    *b = (buf_t)BUF_INIT;
    return 0;
}

void px_out_consume(px_side_t *s, size_t n)
{
    buf_consume(s->out, n);
    if (buf_size(s->out) == 0)
        px_out_free(s);
}

void px_out_free(px_side_t *s)
{
    if (s->out == NULL)
        return;
    buf_free(s->out);
    free(s->out);
    s->out = NULL;
}
