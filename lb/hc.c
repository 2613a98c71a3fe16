/* hc: active health checks, one short-lived HTTP request per backend and
 * interval, all on the main loop.
 *
 * A check holds a reference on its backend, so discovery may remove the
 * backend meanwhile: the check then finishes without touching the table and
 * the backend is freed with the last reference. Finished checks are freed
 * from an ev_prepare watcher, never inside their own callbacks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "buf.h"
#include "hc.h"
#include "http.h"
#include "log.h"
#include "util.h"

/* A health answer is a short head; anything longer is not a health check. */
#define HC_MAX_HEAD 4096

enum hc_result { HC_OK, HC_DRAIN, HC_FAIL };

typedef struct hc_check {
    ev_io io;
    ev_timer tmo;
    hc_t *h;
    be_t *b; /* referenced */
    int fd;
    int connected;
    buf_t out; /* request not yet written */
    buf_t in;  /* response head so far */
    struct hc_check *next, **pprev;
} hc_check_t;

struct hc {
    struct ev_loop *loop;
    be_table_t *t;
    char *path;
    unsigned interval_ms, timeout_ms;
    ev_timer tick;
    ev_prepare reap;
    hc_check_t *inflight; /* checks running now */
    hc_check_t *dead;     /* finished, freed by the reap watcher */
};

static const enum be_ev hc_events[] = {
    [HC_OK] = BE_EV_CHECK_OK, [HC_DRAIN] = BE_EV_CHECK_DRAIN, [HC_FAIL] = BE_EV_CHECK_FAIL};

/* Reports one check result; be_event() applies rise and fall and logs a
 * transition once. Main thread; b is in the table. */
static void hc_apply(hc_t *h, be_t *b, enum hc_result res, const char *why)
{
    be_event(h->t, b, hc_events[res], res == HC_DRAIN ? "health check answered 503" : why);
}

static void hc_reap_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    hc_t *h = container_of(w, hc_t, reap);
    while (h->dead) {
        hc_check_t *c = h->dead;
        h->dead = c->next;
        buf_free(&c->out);
        buf_free(&c->in);
        be_unref(h->t, c->b);
        free(c);
    }
    ev_prepare_stop(loop, w);
}

/* Ends a check: stops its watchers, closes the socket, applies the result
 * (unless the backend left the table meanwhile) and queues it for freeing. */
static void hc_finish(hc_check_t *c, enum hc_result res, const char *why)
{
    hc_t *h = c->h;
    ev_io_stop(h->loop, &c->io);
    ev_timer_stop(h->loop, &c->tmo);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->next)
        c->next->pprev = c->pprev;
    *c->pprev = c->next;

    if (!be_removed(c->b)) {
        if (res == HC_FAIL)
            log_debug("health check %s (%s): %s", be_id(c->b), be_addr_str(c->b), why);
        hc_apply(h, c->b, res, why);
    }
    c->next = h->dead;
    h->dead = c;
    ev_prepare_start(h->loop, &h->reap);
}

static enum hc_result hc_classify(int status)
{
    if (status == 200)
        return HC_OK;
    if (status == 503)
        return HC_DRAIN;
    return HC_FAIL;
}

/* After a failed read or write: 1 to try again at once (EINTR); 0 to wait
 * for the loop (EAGAIN), or when the error has failed the check. */
static int hc_io_retry(hc_check_t *c)
{
    if (errno == EINTR)
        return 1;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        hc_finish(c, HC_FAIL, strerror(errno));
    return 0;
}

static void hc_on_readable(hc_check_t *c)
{
    for (;;) {
        size_t room = HC_MAX_HEAD + 1 - buf_size(&c->in);
        if (room == 0) {
            hc_finish(c, HC_FAIL, "response head too large");
            return;
        }
        char *p = buf_reserve(&c->in, room);
        if (!p) {
            hc_finish(c, HC_FAIL, "out of memory");
            return;
        }
        ssize_t n = read(c->fd, p, room);
        if (n < 0) {
            if (hc_io_retry(c))
                continue;
            return;
        }
        if (n == 0) {
            hc_finish(c, HC_FAIL, "closed before a complete response head");
            return;
        }
        buf_commit(&c->in, (size_t)n);
        http_head_t head;
        int r = http_parse_response(buf_head(&c->in), buf_size(&c->in), HC_MAX_HEAD, &head);
        if (r > 0) {
            char why[48];
            snprintf(why, sizeof(why), "status %d", head.status);
            hc_finish(c, hc_classify(head.status), why);
            return;
        }
        if (r != HTTP_PARSE_AGAIN) {
            hc_finish(c, HC_FAIL, "malformed response");
            return;
        }
    }
}

static void hc_on_writable(hc_check_t *c)
{
    if (!c->connected) {
        int e = sock_connect_result(c->fd);
        if (e != 0) {
            hc_finish(c, HC_FAIL, strerror(e));
            return;
        }
        c->connected = 1;
    }
    while (buf_size(&c->out) > 0) {
        ssize_t n = write(c->fd, buf_head(&c->out), buf_size(&c->out));
        if (n < 0) {
            if (hc_io_retry(c))
                continue;
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    ev_io_stop(c->h->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_READ);
    ev_io_start(c->h->loop, &c->io);
}

static void hc_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    hc_check_t *c = container_of(w, hc_check_t, io);
    if (revents & EV_WRITE)
        hc_on_writable(c);
    else if (revents & EV_READ)
        hc_on_readable(c);
}

static void hc_tmo_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    hc_check_t *c = container_of(w, hc_check_t, tmo);
    hc_finish(c, HC_FAIL, c->connected ? "timed out waiting for the answer" : "connect timed out");
}

static int hc_busy(const hc_t *h, const be_t *b)
{
    for (const hc_check_t *c = h->inflight; c; c = c->next)
        if (c->b == b)
            return 1;
    return 0;
}

/* Starts one check of b (main thread, b in the table). A connect that fails
 * at once counts as a failure right away. */
static void hc_start(hc_t *h, be_t *b)
{
    char err[SOCK_ERR_LEN];
    int fd = sock_connect(be_addr(b), NULL, err, sizeof(err));
    if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
        /* Our own shortage says nothing about the backend: skip this round
         * rather than take a healthy backend down. */
        log_warn("health check %s: %s; skipped", be_id(b), err);
        return;
    }
    if (fd < 0) {
        log_debug("health check %s (%s): %s", be_id(b), be_addr_str(b), err);
        hc_apply(h, b, HC_FAIL, err);
        return;
    }
    hc_check_t *c = calloc(1, sizeof(*c));
    if (!c || buf_printf(&c->out,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wslb-hc\r\n"
                         "Connection: close\r\n\r\n",
                         h->path, be_addr_str(b)) < 0) {
        if (c)
            buf_free(&c->out);
        free(c);
        close(fd);
        log_warn("health check %s: out of memory", be_id(b));
        return;
    }
    c->h = h;
    c->b = b;
    c->fd = fd;
    be_ref(b);
    c->next = h->inflight;
    if (c->next)
        c->next->pprev = &c->next;
    c->pprev = &h->inflight;
    h->inflight = c;
    ev_io_init(&c->io, hc_io_cb, fd, EV_WRITE);
    ev_io_start(h->loop, &c->io);
    ev_timer_init(&c->tmo, hc_tmo_cb, h->timeout_ms / 1000.0, 0.);
    ev_timer_start(h->loop, &c->tmo);
}

static void hc_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    hc_t *h = container_of(w, hc_t, tick);
    /* Checks only read the table, and it changes on this thread alone. */
    for (size_t i = 0; i < be_table_count(h->t); i++) {
        be_t *b = be_table_at(h->t, i);
        if (!hc_busy(h, b))
            hc_start(h, b);
    }
}

hc_t *hc_create(struct ev_loop *loop, be_table_t *t, const hc_config_t *cfg, char *err,
                size_t errlen)
{
    const char *path = cfg && cfg->path ? cfg->path : "/healthz";
    if (path[0] != '/' || strpbrk(path, " \r\n")) {
        snprintf(err, errlen, "health path must start with / and hold no spaces: '%s'", path);
        return NULL;
    }
    hc_t *h = calloc(1, sizeof(*h));
    if (!h || !(h->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(h);
        return NULL;
    }
    h->loop = loop;
    h->t = t;
    h->interval_ms = cfg && cfg->interval_ms ? cfg->interval_ms : 1000;
    h->timeout_ms = cfg && cfg->timeout_ms  ? cfg->timeout_ms
                    : h->interval_ms < 2000 ? h->interval_ms
                                            : 2000;
    ev_prepare_init(&h->reap, hc_reap_cb);
    /* First round right away, so a backend dead at boot is found quickly. */
    ev_timer_init(&h->tick, hc_tick_cb, 0., h->interval_ms / 1000.0);
    ev_timer_start(loop, &h->tick);
    return h;
}

void hc_free(hc_t *h)
{
    if (!h)
        return;
    ev_timer_stop(h->loop, &h->tick);
    while (h->inflight) {
        hc_check_t *c = h->inflight;
        ev_io_stop(h->loop, &c->io);
        ev_timer_stop(h->loop, &c->tmo);
        close(c->fd);
        h->inflight = c->next;
        c->next = h->dead;
        h->dead = c;
    }
    hc_reap_cb(h->loop, &h->reap, 0);
    free(h->path);
    free(h);
}
