/* acc: the accept loop with its back-off (see acc.h). */
#include "acc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct acc {
    struct ev_loop *loop;
    acc_config_t cfg;
    ev_io io;
    ev_timer backoff;
    int on; /* started: watching, or paused with the timer pending */
};

static void acc_pause(acc_t *a, int err)
{
    log_warn("%s%saccept: %s; pausing accepts for %.0f ms", a->cfg.name ? a->cfg.name : "",
             a->cfg.name ? ": " : "", strerror(err), a->cfg.backoff_s * 1000);
    ev_io_stop(a->loop, &a->io);
    ev_timer_stop(a->loop, &a->backoff);
    ev_timer_set(&a->backoff, a->cfg.backoff_s, 0.);
    ev_timer_start(a->loop, &a->backoff);
    if (a->cfg.on_pause != NULL)
        a->cfg.on_pause(a, err, a->cfg.ud);
}

/* What to do after accept failed with errno e: 1 go on, 0 stop for now. */
static int acc_failed(acc_t *a, int e)
{
    if (e == EAGAIN || e == EWOULDBLOCK)
        return 0;
    if (e == EMFILE && a->cfg.on_emfile != NULL) {
        /* EMFILE comes before the kernel looks for a client, so there may
         * be none: then the backlog is empty, all good. */
        if (a->cfg.on_emfile(a, a->cfg.fd, a->cfg.ud) == 0)
            return 1;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
    }
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        acc_pause(a, e);
        return 0;
    }
    if (e == ECONNABORTED || e == EPROTO || e == EPERM || e == EINTR)
        return 1;
    log_warn("%s%saccept: %s", a->cfg.name ? a->cfg.name : "", a->cfg.name ? ": " : "",
             strerror(e));
    return 0;
}

static void acc_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    acc_t *a = container_of(w, acc_t, io);
    for (int i = 0; i < a->cfg.batch && a->on && ev_is_active(&a->io); i++) {
        sock_addr_t peer;
        int fd = sock_accept(a->cfg.fd, &peer);
        if (fd >= 0)
            a->cfg.on_fd(a, fd, &peer, a->cfg.ud);
        else if (!acc_failed(a, errno))
            return;
    }
}

static void acc_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    acc_t *a = container_of(w, acc_t, backoff);
    if (!a->on)
        return;
    if (a->cfg.on_resume != NULL)
        a->cfg.on_resume(a, a->cfg.ud);
    if (a->on)
        ev_io_start(a->loop, &a->io);
}

acc_t *acc_create(struct ev_loop *loop, const acc_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->on_fd == NULL) {
        snprintf(err, errlen, "acceptor without a callback");
        return NULL;
    }
    acc_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->cfg = *cfg;
    if (a->cfg.batch <= 0)
        a->cfg.batch = ACC_DEFAULT_BATCH;
    if (a->cfg.backoff_s <= 0)
        a->cfg.backoff_s = ACC_DEFAULT_BACKOFF;
    ev_io_init(&a->io, acc_io_cb, cfg->fd, EV_READ);
    ev_timer_init(&a->backoff, acc_backoff_cb, a->cfg.backoff_s, 0.);
    return a;
}

void acc_free(acc_t *a)
{
    if (a == NULL)
        return;
    acc_stop(a);
    free(a);
}

void acc_start(acc_t *a)
{
    a->on = 1;
    ev_timer_stop(a->loop, &a->backoff);
    ev_io_start(a->loop, &a->io);
}

void acc_stop(acc_t *a)
{
    a->on = 0;
    ev_io_stop(a->loop, &a->io);
    ev_timer_stop(a->loop, &a->backoff);
}

int acc_watching(const acc_t *a)
{
    return a->on && ev_is_active(&a->io);
}

int acc_fd(const acc_t *a)
{
    return a->cfg.fd;
}
