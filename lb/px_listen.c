/* px_listen: listeners, accepting (batches, the EMFILE reserve and
 * back-off), the proxy threads and the lifecycle of a px_t (see proxy.h and
 * px_int.h). */
#include "px_listen.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acc.h"
#include "log.h"
#include "px_down.h"
#include "sock.h"

/* Out of descriptors with clients waiting: frees the reserve descriptor to
 * accept one of them, answers 503 (best effort, one non-blocking send) and
 * closes it, then takes the reserve back. Turning clients away like this
 * empties the backlog, so they learn at once instead of hanging until a
 * descriptor frees up, and the listener does not stay readable. 0 if a
 * client was turned away, -1 if that was not possible. */
static int px_turn_away(px_thread_t *th, px_listener_t *l)
{
    static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Content-Type: application/json\r\nContent-Length: 23\r\n"
                               "Connection: close\r\nRetry-After: 1\r\n\r\n"
                               "{\"error\":\"overloaded\"}\n";
    sock_addr_t peer;

    if (th->reserve_fd < 0 || l->tls)
        return -1; /* a TLS client cannot read a plain answer: let it wait */
    close(th->reserve_fd);
    th->reserve_fd = -1;
    int fd = sock_accept(l->fd, &peer);
    int e = errno;
    if (fd >= 0) {
        (void)send(fd, resp, sizeof(resp) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        lbs_inc(&th->px->stats->accepted);
    }
    th->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    errno = e; /* the caller looks at why accept failed */
    return fd >= 0 ? 0 : -1;
}

/* The acceptor's hooks (common/acc.h): a new client; EMFILE, where a
 * client may be turned away; a pause, counted as overload; the pause's end,
 * when the reserve descriptor is taken back if turning away gave it up. */
static void px_on_accept(acc_t *a, int fd, const sock_addr_t *peer, void *ud)
{
    px_listener_t *l = ud;
    lbs_inc(&l->th->px->stats->accepted);
    if (!l->nodelay)
        (void)sock_set_nodelay(fd);
    px_conn_new(l->th, fd, peer, l->tls);
}

static int px_on_emfile(acc_t *a, int lfd, void *ud)
{
    px_listener_t *l = ud;
    if (px_turn_away(l->th, l) < 0)
        return -1;
    lbs_inc(&l->th->px->stats->errors[LBS_ERR_OVERLOAD]);
    return 0;
}

static void px_on_pause(acc_t *a, int err, void *ud)
{
    px_listener_t *l = ud;
    lbs_inc(&l->th->px->stats->errors[LBS_ERR_OVERLOAD]);
}

static void px_on_resume(acc_t *a, void *ud)
{
    px_thread_t *th = ((px_listener_t *)ud)->th;
    if (th->reserve_fd < 0)
        th->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void px_close_listeners(px_thread_t *th)
{
    int closed = 0;
    th->accepting = 0;
    for (size_t i = 0; i < th->nls; i++) {
        acc_free(th->ls[i].acc);
        th->ls[i].acc = NULL;
        if (th->ls[i].fd >= 0) {
            close(th->ls[i].fd);
            th->ls[i].fd = -1;
            closed = 1;
        }
    }
    /* After a takeover the sockets live on in the new lb, and epoll drops a
     * registration only when the last descriptor of a socket closes: this
     * loop would keep waking for the new lb's clients, and libev's late
     * EPOLL_CTL_DEL would hit whatever reuses the number. A fresh epoll set
     * before the next poll forgets them (libev's documented way). */
    if (closed)
        ev_loop_fork(th->loop);
}

/* Cross-thread requests arrive here as flags. */
static void px_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    px_thread_t *th = container_of(w, px_thread_t, wake);
    px_t *px = th->px;

    if (__atomic_load_n(&px->stop_accept, __ATOMIC_ACQUIRE) && th->accepting)
        px_close_listeners(th);
    if (__atomic_load_n(&px->shutdown, __ATOMIC_ACQUIRE)) {
        px_close_listeners(th);
        px_sess_shutdown(th);
        ev_async_stop(loop, &th->wake);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *px_thread_main(void *arg)
{
    px_thread_t *th = arg;
    ev_run(th->loop, 0);
    return NULL;
}

int px_listeners_alloc(px_thread_t *th, size_t n)
{
    th->ls = calloc(n ? n : 1, sizeof(*th->ls));
    if (th->ls == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        th->ls[i].fd = -1;
    th->nls = n;
    return 0;
}

int px_listener_attach(px_thread_t *th, size_t i, int fd, int tls, char *err, size_t errlen)
{
    px_listener_t *l = &th->ls[i];
    l->fd = fd;
    l->tls = tls;
    l->th = th;
    /* A socket accepted from a listener with TCP_NODELAY has it too (Linux
     * copies the listener's TCP options into it), so set once here it
     * spares a setsockopt per accept; if it cannot be set here, each
     * accepted socket gets it. */
    l->nodelay = sock_set_nodelay(fd) == 0;
    acc_config_t ac = {.fd = fd,
                       .batch = PX_ACCEPT_BATCH,
                       .backoff_s = PX_ACCEPT_BACKOFF,
                       .on_fd = px_on_accept,
                       .on_emfile = px_on_emfile,
                       .on_pause = px_on_pause,
                       .on_resume = px_on_resume,
                       .ud = l};
    if ((l->acc = acc_create(th->loop, &ac, err, errlen)) == NULL) {
        l->fd = -1; /* still the caller's */
        return -1;
    }
    acc_start(l->acc);
    th->accepting = 1;
    return 0;
}

/* Whether fd is bound to a. */
static int px_fd_is(int fd, const sock_addr_t *a)
{
    sock_addr_t b;
    char s1[SOCK_ADDRSTRLEN], s2[SOCK_ADDRSTRLEN];
    return sock_local_addr(fd, &b) == 0 &&
           strcmp(sock_addr_str(a, s1, sizeof(s1)), sock_addr_str(&b, s2, sizeof(s2))) == 0;
}

/* Records fd in p's list of listeners (px_listen_fds). */
static int px_note_fd(px_t *p, int fd, int tls)
{
    int *f = realloc(p->lfd, (p->nlfd + 1) * sizeof(*f));
    if (f == NULL)
        return -1;
    p->lfd = f;
    int *t = realloc(p->ltls, (p->nlfd + 1) * sizeof(*t));
    if (t == NULL)
        return -1;
    p->ltls = t;
    p->lfd[p->nlfd] = fd;
    p->ltls[p->nlfd++] = tls;
    return 0;
}

/* Which address each taken socket serves (match[k], -1 = none) and its
 * rank among those of that address (ord[k]): thread t takes the ones whose
 * rank is t modulo the thread count, whatever the others took already. */
static void px_match_taken(const px_config_t *cfg, const sock_addr_t *addrs, size_t n, int *match,
                           size_t *ord)
{
    for (size_t k = 0; k < cfg->ntaken; k++) {
        match[k] = -1;
        ord[k] = 0;
        for (size_t i = 0; i < n && match[k] < 0; i++) {
            if (!px_fd_is(cfg->taken[k], &addrs[i]))
                continue;
            match[k] = (int)i;
            for (size_t j = 0; j < k; j++)
                ord[k] += match[j] == (int)i;
        }
    }
}

/* Binds (or takes from cfg->taken, as px_match_taken says) the listeners
 * of thread th: for each address, its taken sockets, or a fresh one when
 * there is none. addrs are updated when a port was 0, so every thread
 * shares the port the first one got. Taken sockets used are set to -1. */
static int px_bind(px_thread_t *th, sock_addr_t *addrs, const int *tls, size_t n,
                   const px_config_t *cfg, const int *match, const size_t *ord, char *err,
                   size_t errlen)
{
    px_t *p = th->px;
    size_t total = 0;
    /* Per address, how many taken sockets this thread gets (0 = bind). */
    size_t *mine = calloc(n ? n : 1, sizeof(*mine));
    if (mine == NULL)
        goto oom;
#define PX_MINE(k, i) (match[k] == (int)(i) && ord[k] % (size_t)p->nth == (size_t)th->idx)
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < cfg->ntaken; k++)
            mine[i] += PX_MINE(k, i);
        total += mine[i] ? mine[i] : 1;
    }
    if (px_listeners_alloc(th, total) < 0)
        goto oom;
    size_t slot = 0;
    for (size_t i = 0; i < n; i++) {
        char as[SOCK_ADDRSTRLEN], e2[SOCK_ERR_LEN];
        if (mine[i] > 0) {
            for (size_t k = 0; k < cfg->ntaken; k++) {
                if (!PX_MINE(k, i))
                    continue;
                int fd = cfg->taken[k];
                if (sock_set_nonblock(fd) < 0) {
                    snprintf(err, errlen, "taking over %s: %s",
                             sock_addr_str(&addrs[i], as, sizeof(as)), strerror(errno));
                    goto fail;
                }
                if (px_note_fd(p, fd, tls[i]) < 0)
                    goto oom;
                if (px_listener_attach(th, slot, fd, tls[i], err, errlen) < 0)
                    goto fail;      /* err says why */
                cfg->taken[k] = -1; /* th's now */
                slot++;
            }
            continue;
        }
        int fd = sock_listen(&addrs[i], PX_BACKLOG, SOCK_REUSEPORT, e2, sizeof(e2));
        if (fd < 0) {
            snprintf(err, errlen, "listen %s: %s", sock_addr_str(&addrs[i], as, sizeof(as)), e2);
            goto fail;
        }
        sock_addr_t bound;
        if (sock_local_addr(fd, &bound) == 0)
            addrs[i] = bound;
        if (px_note_fd(p, fd, tls[i]) < 0) {
            close(fd);
            goto oom;
        }
        if (px_listener_attach(th, slot, fd, tls[i], err, errlen) < 0) {
            close(fd);
            goto fail; /* err says why */
        }
        slot++;
    }
#undef PX_MINE
    free(mine);
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(mine);
    return -1;
}

/* Checks that nothing listens on any of the n addresses yet (see
 * px_create). 0, or -1 with errno and err. */
static int px_probe(const sock_addr_t *addrs, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (sock_probe_free(&addrs[i], err, errlen) < 0)
            return -1;
    return 0;
}

/* Closes the taken sockets no address wanted (the other lb listened on an
 * address this configuration drops). */
static void px_close_unused(const px_config_t *cfg)
{
    for (size_t k = 0; k < cfg->ntaken; k++) {
        if (cfg->taken[k] < 0)
            continue;
        sock_addr_t a;
        char as[SOCK_ADDRSTRLEN] = "?";
        if (sock_local_addr(cfg->taken[k], &a) == 0)
            sock_addr_str(&a, as, sizeof(as));
        log_warn("takeover: %s is not in this configuration: its listener is closed", as);
        close(cfg->taken[k]);
        cfg->taken[k] = -1;
    }
}

px_t *px_create(be_table_t *table, lbs_t *stats, const px_config_t *cfg, char *err, size_t errlen)
{
    size_t n = cfg->nlisten + cfg->ntls_listen;
    sock_addr_t *addrs = NULL;
    int *tls = NULL, *match = NULL;
    size_t *ord = NULL;
    int fail_errno = 0;
    px_t *p = calloc(1, sizeof(*p));

    if (p == NULL)
        goto oom;
    p->table = table;
    p->stats = stats;
    p->cfg = *cfg;
    /* Addresses are parsed here and not needed later: don't keep pointers. */
    p->cfg.listen = NULL;
    p->cfg.tls_listen = NULL;
    p->nth = cfg->threads > 0 ? cfg->threads : 1;
    if (cfg->ntls_listen > 0 && cfg->tls == NULL) {
        snprintf(err, errlen, "--tls-listen needs --cert and --key");
        goto fail;
    }
    if (n == 0) {
        snprintf(err, errlen, "nothing to listen on");
        goto fail;
    }
    addrs = calloc(n, sizeof(*addrs));
    tls = calloc(n, sizeof(*tls));
    p->th = calloc((size_t)p->nth, sizeof(*p->th));
    if (addrs == NULL || tls == NULL || p->th == NULL)
        goto oom;
    for (int i = 0; i < p->nth; i++)
        p->th[i].reserve_fd = -1; /* px_free closes it when >= 0 */
    for (size_t i = 0; i < n; i++) {
        const char *s = i < cfg->nlisten ? cfg->listen[i] : cfg->tls_listen[i - cfg->nlisten];
        char e2[SOCK_ERR_LEN];
        tls[i] = i >= cfg->nlisten;
        if (sock_parse_addr(s, &addrs[i], e2, sizeof(e2)) < 0) {
            snprintf(err, errlen, "%s: %s", tls[i] ? "--tls-listen" : "--listen", e2);
            goto fail;
        }
    }

    if (!cfg->takeover && px_probe(addrs, n, err, errlen) < 0) {
        fail_errno = errno;
        goto fail;
    }
    match = calloc(cfg->ntaken ? cfg->ntaken : 1, sizeof(*match));
    ord = calloc(cfg->ntaken ? cfg->ntaken : 1, sizeof(*ord));
    if (match == NULL || ord == NULL)
        goto oom;
    px_match_taken(cfg, addrs, n, match, ord);

    uint32_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = (uint32_t)getpid() ^ (uint32_t)px_now_ns();
    for (int i = 0; i < p->nth; i++) {
        px_thread_t *th = &p->th[i];
        th->px = p;
        th->idx = i;
        th->rid_rand = seed + (uint32_t)i * 0x9e3779b9u;
        th->scratch = malloc(PX_SCRATCH);
        th->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        th->loop = ev_loop_new(EVFLAG_AUTO);
        if (th->scratch == NULL || th->loop == NULL)
            goto oom;
        ev_async_init(&th->wake, px_wake_cb);
        ev_async_start(th->loop, &th->wake);
        px_down_thread_init(th);
        if (px_bind(th, addrs, tls, n, cfg, match, ord, err, errlen) < 0)
            goto fail;
    }
    px_close_unused(cfg);
    free(match);
    free(ord);
    free(addrs);
    free(tls);
    be_table_set_watch(table, px_down_watch, p);
    return p;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    px_close_unused(cfg);
    free(match);
    free(ord);
    free(addrs);
    free(tls);
    px_free(p);
    errno = fail_errno;
    return NULL;
}

size_t px_listen_fds(px_t *p, int *fds, int *tls, size_t cap)
{
    size_t n = p->nlfd < cap ? p->nlfd : cap;
    for (size_t i = 0; i < n; i++) {
        fds[i] = p->lfd[i];
        tls[i] = p->ltls[i];
    }
    return n;
}

int px_listen_addr(px_t *p, int tls, sock_addr_t *out)
{
    if (p == NULL || p->nth == 0)
        return -1;
    px_thread_t *th = &p->th[0];
    for (size_t i = 0; i < th->nls; i++)
        if (th->ls[i].tls == tls && th->ls[i].fd >= 0)
            return sock_local_addr(th->ls[i].fd, out);
    return -1;
}

int px_start(px_t *p, char *err, size_t errlen)
{
    sigset_t all, old;

    /* Signals belong to the main loop's ev_signal watchers: proxy threads
     * inherit a mask that blocks them all. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 0; i < p->nth; i++) {
        int e = pthread_create(&p->th[i].tid, NULL, px_thread_main, &p->th[i]);
        if (e != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(e));
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return -1;
        }
        p->th[i].started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

void px_tune(px_t *p, const px_config_t *cfg)
{
#define PX_SET(f) __atomic_store_n(&p->cfg.f, cfg->f, __ATOMIC_RELEASE)
    PX_SET(max_conns);
    PX_SET(timeout_head_ms);
    PX_SET(timeout_connect_ms);
    PX_SET(timeout_response_ms);
    PX_SET(timeout_idle_s);
    PX_SET(retries);
    PX_SET(access_log);
    PX_SET(max_head);
    PX_SET(lim);
    PX_SET(trusted);
#undef PX_SET
}

void px_stop_accepting(px_t *p)
{
    __atomic_store_n(&p->stop_accept, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < p->nth; i++)
        if (p->th[i].loop != NULL)
            ev_async_send(p->th[i].loop, &p->th[i].wake);
}

void px_shutdown(px_t *p)
{
    __atomic_store_n(&p->shutdown, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < p->nth; i++)
        if (p->th[i].loop != NULL)
            ev_async_send(p->th[i].loop, &p->th[i].wake);
}

void px_free(px_t *p)
{
    if (p == NULL)
        return;
    if (p->th != NULL) {
        int any = 0;
        for (int i = 0; i < p->nth; i++)
            any |= p->th[i].started;
        if (any)
            px_shutdown(p);
        /* Every thread ends before any loop goes: a thread still running may
         * wake the others (px_down_watch). */
        for (int i = 0; i < p->nth; i++)
            if (p->th[i].started)
                pthread_join(p->th[i].tid, NULL);
        if (p->table != NULL)
            be_table_set_watch(p->table, NULL, NULL);
        for (int i = 0; i < p->nth; i++) {
            px_thread_t *th = &p->th[i];
            if (th->loop != NULL) {
                /* Never ran (or already stopped): release what is left. */
                while (th->conns != NULL)
                    px_conn_free(th->conns);
                px_close_listeners(th);
                ev_async_stop(th->loop, &th->wake);
                px_down_thread_stop(th);
                ev_loop_destroy(th->loop);
            }
            free(th->ls);
            free(th->scratch);
            px_pool_destroy(&th->cpool);
            if (th->reserve_fd >= 0)
                close(th->reserve_fd);
        }
        free(p->th);
    }
    free(p->lfd);
    free(p->ltls);
    free(p);
}
