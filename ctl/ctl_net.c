/* ctl_net: blocking TCP with deadlines (see ctl_net.h). */
#include "ctl_net.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

double ctl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ctl_net_split(const char *hostport, char *host, size_t hostlen, char *port, size_t portlen,
                  char *err, size_t errlen)
{
    const char *h = hostport, *p;
    size_t hl;
    if (hostport == NULL || *hostport == '\0') {
        snprintf(err, errlen, "empty address");
        return -1;
    }
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "bad address '%.100s' (expected [V6]:PORT)", hostport);
            return -1;
        }
        h++;
        hl = (size_t)(close - h);
        p = close + 2;
    } else {
        const char *colon = strrchr(h, ':');
        if (colon == NULL || memchr(h, ':', (size_t)(colon - h)) != NULL) {
            snprintf(err, errlen, "bad address '%.100s' (expected HOST:PORT or [V6]:PORT)",
                     hostport);
            return -1;
        }
        hl = (size_t)(colon - h);
        p = colon + 1;
    }
    size_t pl = strlen(p);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen || pl > 5 ||
        strspn(p, "0123456789") != pl) {
        snprintf(err, errlen, "bad address '%.100s' (expected HOST:PORT)", hostport);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, p, pl + 1);
    return 0;
}

/* Milliseconds left until deadline for poll(2), at least 0. */
static int ctl_net_left_ms(double deadline)
{
    double left = deadline - ctl_now();
    return left <= 0 ? 0 : left > 3600 ? 3600000 : (int)(left * 1000) + 1;
}

/* Waits for events on fd; 1 ready, 0 deadline passed, -1 error. */
static int ctl_net_wait(int fd, short events, double deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int left = ctl_net_left_ms(deadline);
        int n = poll(&pfd, 1, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n > 0)
            return 1;
        if (left == 0)
            return 0;
    }
}

/* One address: the descriptor, or -1 with err. */
static int ctl_net_try(const struct addrinfo *ai, const char *name, double deadline, char *err,
                       size_t errlen)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        snprintf(err, errlen, "connect %s: %s", name, strerror(errno));
        goto fail;
    }
    int w = ctl_net_wait(fd, POLLOUT, deadline);
    if (w <= 0) {
        snprintf(err, errlen, "connect %s: %s", name, w == 0 ? "timed out" : strerror(errno));
        goto fail;
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
        snprintf(err, errlen, "connect %s: %s", name, strerror(soerr ? soerr : errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

int ctl_net_connect(const char *host, const char *port, double deadline, char *err, size_t errlen)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char name[320];
    int fd = -1;
    snprintf(name, sizeof(name), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "resolve %s: %s", name,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    snprintf(err, errlen, "connect %s: no address", name);
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        if (ctl_now() >= deadline) {
            snprintf(err, errlen, "connect %s: timed out", name);
            break;
        }
        fd = ctl_net_try(ai, name, deadline, err, errlen);
    }
    freeaddrinfo(res);
    return fd;
}

int ctl_net_write(int fd, const void *p, size_t n, double deadline, char *err, size_t errlen)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w > 0) {
            c += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(err, errlen, "send: %s", strerror(errno));
            return -1;
        }
        int r = ctl_net_wait(fd, POLLOUT, deadline);
        if (r <= 0) {
            snprintf(err, errlen, "send: %s", r == 0 ? "timed out" : strerror(errno));
            return -1;
        }
    }
    return 0;
}

ssize_t ctl_net_read(int fd, void *p, size_t n, double deadline, char *err, size_t errlen)
{
    for (;;) {
        ssize_t r = recv(fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            snprintf(err, errlen, "recv: %s", strerror(errno));
            return -1;
        }
        int w = ctl_net_wait(fd, POLLIN, deadline);
        if (w <= 0) {
            snprintf(err, errlen, "%s", w == 0 ? "timed out" : strerror(errno));
            return -1;
        }
    }
}
