/* hand: the takeover of listening sockets (see hand.h). */
#include "hand.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "acc.h"
#include "log.h"
#include "util.h"

enum hand_state { HAND_IDLE = 0, HAND_HELLO, HAND_WAIT_READY, HAND_DONE };

struct hand {
    struct ev_loop *loop;
    hand_ops_t ops;
    void *ud;
    char *path;
    dev_t dev; /* of the socket file we bound, to unlink only ours */
    ino_t ino;
    int lfd;
    acc_t *acc; /* on lfd: EMFILE pauses it instead of spinning the loop */
    int cfd;    /* the takeover in progress, -1 = none */
    ev_io cio;
    int rfd; /* a peer told BUSY, closed once it has spoken (else its
              * request would reset the connection before it reads) */
    ev_io rio;
    ev_timer timer;
    enum hand_state state;
    const char *refuse; /* non-NULL: every takeover gets "ERR refuse" */
};

static int hand_addr(const char *path, struct sockaddr_un *sa, char *err, size_t errlen)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        snprintf(err, errlen, "%s: path too long for a unix socket", path);
        return -1;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

/* Ends the takeover in flight (not done): the old lb keeps serving. */
static void hand_drop(hand_t *h, const char *why)
{
    if (h->cfd < 0)
        return;
    ev_io_stop(h->loop, &h->cio);
    ev_timer_stop(h->loop, &h->timer);
    close(h->cfd);
    h->cfd = -1;
    if (why != NULL)
        log_warn("takeover abandoned, still serving: %s", why);
    if (h->state != HAND_DONE)
        h->state = HAND_IDLE;
}

static void hand_say(int fd, const char *msg)
{
    (void)send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Sends the header and the descriptors. 0, or -1 with err. */
static int hand_send_fds(hand_t *h, char *err, size_t errlen)
{
    int fds[HAND_MAX_FDS];
    char kinds[HAND_MAX_FDS], hdr[64];
    size_t n = h->ops.fds(h->ud, fds, kinds, HAND_MAX_FDS);

    snprintf(hdr, sizeof(hdr), HAND_MAGIC_RESP "OK %zu\n", n);
    if (send(h->cfd, hdr, strlen(hdr), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        snprintf(err, errlen, "send: %s", strerror(errno));
        return -1;
    }
    for (size_t off = 0; off < n; off += HAND_CHUNK) {
        size_t k = n - off < HAND_CHUNK ? n - off : HAND_CHUNK;
        union {
            char buf[CMSG_SPACE(sizeof(int) * HAND_CHUNK)];
            struct cmsghdr align;
        } u;
        struct iovec iov = {.iov_base = kinds + off, .iov_len = k};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = u.buf,
                            .msg_controllen = CMSG_SPACE(sizeof(int) * k)};
        memset(u.buf, 0, sizeof(u.buf));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * k);
        memcpy(CMSG_DATA(cm), fds + off, sizeof(int) * k);
        if (sendmsg(h->cfd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            snprintf(err, errlen, "sendmsg: %s", strerror(errno));
            return -1;
        }
    }
    log_info("takeover: %zu listening socket(s) handed over; serving until the new lb accepts", n);
    return 0;
}

static void hand_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    hand_t *h = container_of(w, hand_t, cio);
    char buf[128], err[256];
    ssize_t r = recv(h->cfd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        hand_drop(h, h->state == HAND_HELLO ? "the peer left before asking"
                                            : "the new lb left before accepting");
        return;
    }
    buf[r] = '\0';
    if (h->state == HAND_HELLO) {
        if ((size_t)r != strlen(HAND_MAGIC_REQ) || memcmp(buf, HAND_MAGIC_REQ, (size_t)r) != 0) {
            hand_say(h->cfd, HAND_MAGIC_RESP "ERR not a takeover request\n");
            hand_drop(h, "a peer that is not an lb (no takeover magic) was refused");
            return;
        }
        if (h->refuse != NULL) {
            snprintf(err, sizeof(err), HAND_MAGIC_RESP "ERR %s\n", h->refuse);
            hand_say(h->cfd, err);
            hand_drop(h, NULL);
            log_warn("takeover refused: %s", h->refuse);
            return;
        }
        if (hand_send_fds(h, err, sizeof(err)) < 0) {
            hand_drop(h, err);
            return;
        }
        h->state = HAND_WAIT_READY;
        ev_timer_stop(loop, &h->timer);
        ev_timer_set(&h->timer, HAND_READY_S, 0);
        ev_timer_start(loop, &h->timer);
        return;
    }
    if (strcmp(buf, "READY\n") != 0) {
        hand_drop(h, "the new lb sent something other than READY");
        return;
    }
    /* Handed over: nothing more to take from here. */
    h->state = HAND_DONE;
    hand_drop(h, NULL);
    acc_stop(h->acc);
    close(h->lfd);
    h->lfd = -1;
    log_info("takeover: the new lb accepts; this one stops accepting");
    h->ops.done(h->ud);
}

static void hand_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    hand_t *h = container_of(w, hand_t, timer);
    hand_drop(h, h->state == HAND_HELLO ? "the peer asked nothing in time"
                                        : "the new lb did not start accepting in time");
}

static void hand_refused_close(hand_t *h)
{
    if (h->rfd < 0)
        return;
    ev_io_stop(h->loop, &h->rio);
    close(h->rfd);
    h->rfd = -1;
}

static void hand_refused_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    hand_t *h = container_of(w, hand_t, rio);
    char buf[64];
    (void)recv(h->rfd, buf, sizeof(buf), MSG_DONTWAIT);
    hand_refused_close(h);
}

static void hand_on_fd(acc_t *a, int fd, const sock_addr_t *peer, void *ud)
{
    hand_t *h = ud;
    (void)a;
    (void)peer;
    if (h->state != HAND_IDLE) {
        hand_say(fd, HAND_MAGIC_RESP "BUSY\n");
        log_warn("takeover refused: another one is in progress");
        hand_refused_close(h); /* one such peer at a time is plenty */
        h->rfd = fd;
        ev_io_init(&h->rio, hand_refused_cb, fd, EV_READ);
        ev_io_start(h->loop, &h->rio);
        return;
    }
    h->cfd = fd;
    h->state = HAND_HELLO;
    ev_io_init(&h->cio, hand_conn_cb, fd, EV_READ);
    ev_io_start(h->loop, &h->cio);
    ev_timer_set(&h->timer, HAND_TIMEOUT_S, 0);
    ev_timer_start(h->loop, &h->timer);
}

hand_t *hand_listen(struct ev_loop *loop, const char *path, const hand_ops_t *ops, void *ud,
                    char *err, size_t errlen)
{
    struct sockaddr_un sa;
    struct stat st;
    if (hand_addr(path, &sa, err, errlen) < 0)
        return NULL;
    hand_t *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->path = strdup(path)) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(h);
        return NULL;
    }
    h->loop = loop;
    h->ops = *ops;
    h->ud = ud;
    h->cfd = -1;
    h->rfd = -1;
    h->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->lfd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto fail;
    }
    /* A previous lb's socket (it was taken over, or died): ours now. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    /* Only this user may take the listeners (and the clients) over. */
    mode_t old = umask(0177);
    int b = bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (b < 0 || listen(h->lfd, 8) < 0) {
        snprintf(err, errlen, "--control-socket %s: %s", path, strerror(errno));
        goto fail;
    }
    if (stat(path, &st) == 0) {
        h->dev = st.st_dev;
        h->ino = st.st_ino;
    }
    acc_config_t ac = {.fd = h->lfd, .batch = 8, .name = "takeover", .on_fd = hand_on_fd, .ud = h};
    if ((h->acc = acc_create(loop, &ac, err, errlen)) == NULL)
        goto fail;
    acc_start(h->acc);
    ev_init(&h->timer, hand_timer_cb);
    return h;
fail:
    if (h->lfd >= 0)
        close(h->lfd);
    free(h->path);
    free(h);
    return NULL;
}

void hand_free(hand_t *h, int unlink_path)
{
    struct stat st;
    if (h == NULL)
        return;
    hand_drop(h, NULL);
    hand_refused_close(h);
    acc_free(h->acc);
    if (h->lfd >= 0)
        close(h->lfd);
    if (unlink_path && h->state != HAND_DONE && stat(h->path, &st) == 0 && st.st_dev == h->dev &&
        st.st_ino == h->ino)
        unlink(h->path);
    free(h->path);
    free(h);
}

void hand_refuse(hand_t *h, const char *why)
{
    if (h != NULL)
        h->refuse = why;
}

int hand_done(const hand_t *h)
{
    return h->state == HAND_DONE;
}

/* ---- the new lb's side ------------------------------------------------------ */

int hand_take(const char *path, int *fds, char *kinds, size_t *n, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    char hdr[128];
    size_t want = 0, got = 0;
    int fd = -1;

    *n = 0;
    if (hand_addr(path, &sa, err, errlen) < 0)
        return -1;
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = (time_t)HAND_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(err, errlen, "--takeover %s: %s%s", path, strerror(errno),
                 errno == EPROTOTYPE ? " (not an lb's control socket)" : "");
        goto fail;
    }
    if (send(fd, HAND_MAGIC_REQ, strlen(HAND_MAGIC_REQ), MSG_NOSIGNAL) < 0) {
        snprintf(err, errlen, "--takeover %s: send: %s", path, strerror(errno));
        goto fail;
    }
    ssize_t r = recv(fd, hdr, sizeof(hdr) - 1, 0);
    if (r <= 0) {
        snprintf(err, errlen, "--takeover %s: %s", path,
                 r == 0 ? "closed without an answer (not an lb?)" : strerror(errno));
        goto fail;
    }
    hdr[r] = '\0';
    size_t ml = strlen(HAND_MAGIC_RESP);
    if ((size_t)r < ml || memcmp(hdr, HAND_MAGIC_RESP, ml) != 0) {
        snprintf(err, errlen, "--takeover %s: the peer is not an lb (no takeover magic)", path);
        goto fail;
    }
    if (strcmp(hdr + ml, "BUSY\n") == 0) {
        snprintf(err, errlen, "--takeover %s: another takeover is in progress", path);
        goto fail;
    }
    char *end;
    if (strncmp(hdr + ml, "OK ", 3) != 0 ||
        (want = strtoul(hdr + ml + 3, &end, 10), *end != '\n') || want > HAND_MAX_FDS) {
        snprintf(err, errlen, "--takeover %s: refused: %.100s", path, hdr + ml);
        goto fail;
    }
    while (got < want) {
        union {
            char buf[CMSG_SPACE(sizeof(int) * HAND_CHUNK)];
            struct cmsghdr align;
        } u;
        char k[HAND_CHUNK];
        struct iovec iov = {.iov_base = k, .iov_len = sizeof(k)};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = u.buf,
                            .msg_controllen = sizeof(u.buf)};
        r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (r <= 0) {
            snprintf(err, errlen, "--takeover %s: %s", path,
                     r == 0 ? "closed while handing over" : strerror(errno));
            goto fail;
        }
        size_t nf = 0;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                continue;
            size_t c = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < c; i++) {
                int one;
                memcpy(&one, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                if (got + nf < want && nf < (size_t)r) {
                    fds[got + nf] = one;
                    kinds[got + nf] = k[nf];
                    nf++;
                } else {
                    close(one);
                }
            }
        }
        if (nf == 0 || (mh.msg_flags & MSG_CTRUNC)) {
            got += nf;
            snprintf(err, errlen, "--takeover %s: a message without its descriptors", path);
            goto fail;
        }
        got += nf;
    }
    *n = got;
    return fd;
fail:
    /* Every descriptor received so far, not only those of *n: a peer that
     * leaves between two messages must not leave the first ones open. */
    for (size_t i = 0; i < got; i++)
        close(fds[i]);
    *n = 0;
    if (fd >= 0)
        close(fd);
    return -1;
}

int hand_ready(int conn, char *err, size_t errlen)
{
    int rc = 0;
    if (send(conn, "READY\n", 6, MSG_NOSIGNAL) < 0) {
        snprintf(err, errlen, "telling the old lb: %s", strerror(errno));
        rc = -1;
    }
    close(conn);
    return rc;
}
