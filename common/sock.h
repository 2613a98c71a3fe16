/* sock: address parsing and non-blocking socket helpers.
 *
 * Every function that can fail returns 0 or a descriptor on success and -1 on
 * failure, writing a reason into err (which may be NULL) and keeping errno. */
#ifndef COMMON_SOCK_H
#define COMMON_SOCK_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct sock_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} sock_addr_t;

#define SOCK_ERR_LEN    256
#define SOCK_ADDRSTRLEN 64

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT" (meaning 0.0.0.0). HOST must be a
 * numeric address or "localhost"; no DNS lookups happen on the event loop. */
int sock_parse_addr(const char *s, sock_addr_t *out, char *err, size_t errlen);
/* Renders "1.2.3.4:80" or "[::1]:80" into out (SOCK_ADDRSTRLEN bytes). */
const char *sock_addr_str(const sock_addr_t *a, char *out, size_t outlen);
/* Renders only the host part ("1.2.3.4" or "::1"). */
const char *sock_addr_host(const sock_addr_t *a, char *out, size_t outlen);

enum { SOCK_REUSEPORT = 1 };
/* Creates a non-blocking, close-on-exec listening TCP socket with
 * SO_REUSEADDR (and SO_REUSEPORT when flags has SOCK_REUSEPORT). */
int sock_listen(const sock_addr_t *a, int backlog, int flags, char *err, size_t errlen);
/* Whether a could be listened on without SO_REUSEPORT: -1 with errno
 * EADDRINUSE and "address in use: HOST:PORT" in err while any socket listens
 * there, another process's SO_REUSEPORT listener included (which a listener
 * with SO_REUSEPORT would silently join and share). Port 0 is always free.
 * Nothing stays bound. */
int sock_probe_free(const sock_addr_t *a, char *err, size_t errlen);
/* Starts a non-blocking connect; returns the fd (connect may be in progress,
 * check SO_ERROR when writable). If src is not NULL, binds to it first. */
int sock_connect(const sock_addr_t *a, const sock_addr_t *src, char *err, size_t errlen);
/* Returns the pending error of a non-blocking connect (0 when connected). */
int sock_connect_result(int fd);
/* Accepts one connection as non-blocking and close-on-exec; -1 with errno
 * EAGAIN when there is none. */
int sock_accept(int lfd, sock_addr_t *peer);
int sock_set_nonblock(int fd);
int sock_set_nodelay(int fd);
/* Returns the local address a listening socket is bound to (port 0 case). */
int sock_local_addr(int fd, sock_addr_t *out);

#endif
