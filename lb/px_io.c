/* px_io: the transport under a session's sides: reads and writes on a
 * plain socket or through the side's TLS session (see px_int.h). */
#include "px_int.h"

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "tls.h"

/* Reads from one side. >0 bytes, 0 on EOF, -1 with errno (EAGAIN = retry
 * later, anything else is fatal for the connection). */
ssize_t px_sread(px_side_t *s, char *p, size_t n)
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
ssize_t px_swrite(px_side_t *s, const char *p, size_t n)
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
