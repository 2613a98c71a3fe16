/* sock: address parsing and non-blocking socket helpers (see sock.h). */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Writes a message into err (if any) without disturbing errno. */
static void sock_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sock_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    errno = saved;
}

/* Parses a decimal port 0..65535: digits only, no sign, no spaces. */
static int sock_parse_port(const char *p, unsigned *out)
{
    if (*p == '\0')
        return -1;
    unsigned v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 65535)
            return -1;
    }
    *out = v;
    return 0;
}

/* Accepts exactly the forms documented in sock.h; on failure out is left
 * zeroed and err names the offending input. */
int sock_parse_addr(const char *s, sock_addr_t *out, char *err, size_t errlen)
{
    char host[128];
    const char *port;
    size_t hlen;
    int bracketed = 0;

    memset(out, 0, sizeof(*out));
    if (s == NULL || *s == '\0') {
        sock_set_err(err, errlen, "empty address");
        goto fail;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL) {
            sock_set_err(err, errlen, "missing ']' in '%.100s'", s);
            goto fail;
        }
        if (close[1] != ':') {
            sock_set_err(err, errlen, "expected ':PORT' after ']' in '%.100s'", s);
            goto fail;
        }
        hlen = (size_t)(close - s - 1);
        memcpy(host, s + 1, hlen < sizeof(host) ? hlen : 0);
        port = close + 2;
        bracketed = 1;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            sock_set_err(err, errlen, "missing ':PORT' in '%.100s'", s);
            goto fail;
        }
        if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
            sock_set_err(err, errlen, "IPv6 addresses must be written as [ADDR]:PORT: '%.100s'", s);
            goto fail;
        }
        hlen = (size_t)(colon - s);
        memcpy(host, s, hlen < sizeof(host) ? hlen : 0);
        port = colon + 1;
    }
    if (hlen >= sizeof(host)) {
        sock_set_err(err, errlen, "host too long in '%.100s'", s);
        goto fail;
    }
    host[hlen] = '\0';

    unsigned pnum;
    if (sock_parse_port(port, &pnum) < 0) {
        sock_set_err(err, errlen, "bad port '%.20s' in '%.100s' (expected 0-65535)", port, s);
        goto fail;
    }

    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    if (bracketed) {
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            sock_set_err(err, errlen, "bad IPv6 address '%.64s'", host);
            goto fail;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pnum);
        out->len = sizeof(*sin6);
        return 0;
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)pnum);
    out->len = sizeof(*sin);
    if (hlen == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (strcasecmp(host, "localhost") == 0) {
        /* The one name we resolve ourselves: no DNS on the event loop. */
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        /* inet_pton rejects shorthand like "127.1" and hostnames alike. */
        sock_set_err(err, errlen, "'%.64s' is not a numeric IPv4 address or 'localhost'", host);
        goto fail;
    }
    return 0;

fail:
    memset(out, 0, sizeof(*out));
    errno = EINVAL;
    return -1;
}

const char *sock_addr_host(const sock_addr_t *a, char *out, size_t outlen)
{
    const void *src = NULL;
    if (a->ss.ss_family == AF_INET)
        src = &((const struct sockaddr_in *)&a->ss)->sin_addr;
    else if (a->ss.ss_family == AF_INET6)
        src = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    if (src == NULL || inet_ntop(a->ss.ss_family, src, out, (socklen_t)outlen) == NULL)
        snprintf(out, outlen, "?");
    return out;
}

const char *sock_addr_str(const sock_addr_t *a, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    sock_addr_host(a, host, sizeof(host));
    if (a->ss.ss_family == AF_INET)
        snprintf(out, outlen, "%s:%u", host, ntohs(((const struct sockaddr_in *)&a->ss)->sin_port));
    else if (a->ss.ss_family == AF_INET6)
        snprintf(out, outlen, "[%s]:%u", host,
                 ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port));
    else
        snprintf(out, outlen, "?");
    return out;
}

/* Returns a new non-blocking close-on-exec TCP socket for a's family. */
static int sock_new(const sock_addr_t *a, char *err, size_t errlen)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        sock_set_err(err, errlen, "socket: %s", strerror(errno));
    return fd;
}

/* Closes fd keeping errno, for failure paths. */
static void sock_close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

/* "what ADDR: reason" for a failed call on an address, errno intact; a
 * taken address is said plainly, as operators search logs for it. */
static void sock_addr_err(char *err, size_t errlen, const char *what, const sock_addr_t *a)
{
    char as[SOCK_ADDRSTRLEN];
    int e = errno;
    if (e == EADDRINUSE)
        sock_set_err(err, errlen, "address in use: %s", sock_addr_str(a, as, sizeof(as)));
    else
        sock_set_err(err, errlen, "%s %s: %s", what, sock_addr_str(a, as, sizeof(as)), strerror(e));
    errno = e;
}

int sock_listen(const sock_addr_t *a, int backlog, int flags, char *err, size_t errlen)
{
    int one = 1;
    int fd = sock_new(a, err, errlen);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
        sock_set_err(err, errlen, "setsockopt SO_REUSEADDR: %s", strerror(errno));
        goto fail;
    }
    if ((flags & SOCK_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        sock_set_err(err, errlen, "setsockopt SO_REUSEPORT: %s", strerror(errno));
        goto fail;
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        sock_addr_err(err, errlen, "bind", a);
        goto fail;
    }
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
        sock_addr_err(err, errlen, "listen", a);
        goto fail;
    }
    return fd;

fail:
    sock_close_keep_errno(fd);
    return -1;
}

static unsigned sock_port(const sock_addr_t *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

int sock_probe_free(const sock_addr_t *a, char *err, size_t errlen)
{
    int one = 1;
    if (sock_port(a) == 0)
        return 0;
    int fd = sock_new(a, err, errlen);
    if (fd < 0)
        return -1;
    /* SO_REUSEADDR as the listeners have it, so that connections in
     * TIME_WAIT from an earlier run do not count; no SO_REUSEPORT, so that
     * any listener, SO_REUSEPORT or not, does. */
    int r = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (r == 0)
        r = bind(fd, (const struct sockaddr *)&a->ss, a->len);
    if (r < 0)
        sock_addr_err(err, errlen, "bind", a);
    sock_close_keep_errno(fd);
    return r < 0 ? -1 : 0;
}

int sock_connect(const sock_addr_t *a, const sock_addr_t *src, char *err, size_t errlen)
{
    int fd = sock_new(a, err, errlen);
    if (fd < 0)
        return -1;
    if (src != NULL) {
#ifdef IP_BIND_ADDRESS_NO_PORT
        /* With port 0, let connect() pick the port so the same local port can
         * serve several destinations: binding first would reserve it for all. */
        int one = 1;
        if (src->ss.ss_family == AF_INET && ((const struct sockaddr_in *)&src->ss)->sin_port == 0)
            (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
        if (bind(fd, (const struct sockaddr *)&src->ss, src->len) < 0) {
            sock_addr_err(err, errlen, "bind source", src);
            goto fail;
        }
    }
    int rc;
    do {
        rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
        sock_addr_err(err, errlen, "connect", a);
        goto fail;
    }
    return fd;

fail:
    sock_close_keep_errno(fd);
    return -1;
}

int sock_connect_result(int fd)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        return errno;
    return soerr;
}

int sock_accept(int lfd, sock_addr_t *peer)
{
    sock_addr_t tmp;
    sock_addr_t *p = peer ? peer : &tmp;
    int fd;
    p->len = sizeof(p->ss);
    do {
        fd = accept4(lfd, (struct sockaddr *)&p->ss, &p->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

int sock_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    if (fl & O_NONBLOCK)
        return 0;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

int sock_set_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int sock_local_addr(int fd, sock_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    out->len = sizeof(out->ss);
    return getsockname(fd, (struct sockaddr *)&out->ss, &out->len) < 0 ? -1 : 0;
}
