/* lb: the websocket load balancer's entry point.
 *
 * The main thread owns the control plane on the default loop: signals, the
 * health checker, Redis discovery and the admin API. --threads proxy threads
 * each run their own loop (proxy.h) and share the backend table. */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "admin.h"
#include "aff.h"
#include "atomic.h"
#include "be.h"
#include "cfg.h"
#include "cidr.h"
#include "disc.h"
#include "fleet.h"
#include "hc.h"
#include "hand.h"
#include "http.h"
#include "lb.h"
#include "lbs.h"
#include "lim.h"
#include "log.h"
#include "met.h"
#include "met_names.h"
#include "proxy.h"
#include "rdo.h"
#include "rld.h"
#include "route.h"
#include "sock.h"
#include "static.h"
#include "tls.h"
#include "util.h"

#ifndef VERSION
#define VERSION "dev"
#endif

/* Adds a static backend from its --backend spec (checked by lbo_check). */
static int lb_add_static(lb_t *lb, const char *spec, char *err, size_t errlen)
{
    char id[BE_ID_MAX];
    sock_addr_t addr;
    unsigned weight;
    if (lbo_parse_backend(spec, id, &addr, &weight, err, errlen) < 0)
        return -1;
    if (be_find(lb->table, id) != NULL) {
        snprintf(err, errlen, "--backend '%s': duplicate id", spec);
        return -1;
    }
    if (be_add(lb->table, id, &addr, weight, BE_STATIC) == NULL) {
        snprintf(err, errlen, "--backend '%s': cannot add", spec);
        return -1;
    }
    return 0;
}

/* Ends the loop once every tunnel is gone or the grace period is over. */
static void lb_finish(lb_t *lb, const char *why)
{
    log_info("shutting down: %s", why);
    ev_timer_stop(lb->loop, &lb->grace);
    ev_timer_stop(lb->loop, &lb->drained);
    ev_signal_stop(lb->loop, &lb->sig_term);
    ev_signal_stop(lb->loop, &lb->sig_int);
    ev_signal_stop(lb->loop, &lb->sig_hup);
    ev_signal_stop(lb->loop, &lb->sig_usr2);
    ev_break(lb->loop, EVBREAK_ALL);
}

static void lb_drained_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lb_t *lb = container_of(w, lb_t, drained);
    if (AT_LOAD(&lb->stats.active) <= 0)
        lb_finish(lb, "all connections closed");
}

static void lb_grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lb_t *lb = container_of(w, lb_t, grace);
    log_info("grace period over with %lld connections open; closing them",
             (long long)AT_LOAD(&lb->stats.active));
    lb_finish(lb, "grace period over");
}

static double lb_gauge_redis(void *ud)
{
    return disc_connected(ud);
}

/* For /healthz: a front takes this lb out while it stops (a signal, or a
 * takeover by a new lb) or has not yet learnt its workers. */
static enum admin_life lb_life(void *ud)
{
    lb_t *lb = ud;
    if (lb->stopping)
        return ADMIN_LIFE_STOPPING;
    if (lb->disc != NULL && !disc_loaded(lb->disc))
        return ADMIN_LIFE_LOADING;
    return ADMIN_LIFE_SERVING;
}

/* SIGTERM/SIGINT: stop accepting, let tunnels finish within --grace-s. A
 * second signal cuts the grace period short. */
static void lb_begin_stop(lb_t *lb, const char *why)
{
    lb->stopping = 1;
    log_info("%s: no longer accepting; waiting up to %ld s for %lld connections", why,
             lb->o.grace_s, (long long)AT_LOAD(&lb->stats.active));
    px_stop_accepting(lb->px);
    hand_refuse(lb->hand, "this lb is shutting down");
    ev_timer_init(&lb->grace, lb_grace_cb, (double)lb->o.grace_s, 0);
    ev_timer_start(lb->loop, &lb->grace);
    ev_timer_init(&lb->drained, lb_drained_cb, 0.0, 0.05);
    ev_timer_start(lb->loop, &lb->drained);
}

static void lb_term_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    lb_t *lb = w->data;
    char why[32];
    if (lb->stopping) {
        lb_finish(lb, "second signal");
        return;
    }
    snprintf(why, sizeof(why), "signal %d", w->signum);
    lb_begin_stop(lb, why);
}

/* Tells systemd (Type=notify) about this process, when it asked: one
 * datagram to $NOTIFY_SOCKET, the whole of the protocol the lb needs, so
 * libsystemd is no dependency. MAINPID lets a new lb started by a takeover
 * become the unit's main process (the unit sets NotifyAccess=all). */
static void lb_notify(const char *state, int with_pid)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char msg[128];
    if (path == NULL || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, strlen(path));
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* an abstract socket */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    int n = with_pid ? snprintf(msg, sizeof(msg), "%s\nMAINPID=%ld\n", state, (long)getpid())
                     : snprintf(msg, sizeof(msg), "%s\n", state);
    (void)sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
                 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path)));
    close(fd);
}

static void lb_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    lb_t *lb = container_of(w, lb_t, child);
    ev_child_stop(loop, w);
    if (!lb->stopping)
        log_error("upgrade: the new lb (pid %d) exited with status %d before taking over; "
                  "still serving",
                  w->rpid,
                  WIFEXITED(w->rstatus) ? WEXITSTATUS(w->rstatus) : 128 + WTERMSIG(w->rstatus));
}

/* SIGUSR2: starts the binary at argv[0] again (a new version, if one was
 * installed there) with the same command line and --takeover, as nginx's
 * USR2 does. The new lb checks its configuration, takes the listeners and
 * then this one drains; if it fails, this one never stops serving. */
static void lb_usr2_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    lb_t *lb = container_of(w, lb_t, sig_usr2);
    if (lb->stopping || lb->hand == NULL || ev_is_active(&lb->child)) {
        log_error("SIGUSR2: %s", lb->stopping ? "shutting down, no upgrade"
                                 : lb->hand == NULL
                                     ? "no --control-socket to hand the listeners over"
                                     : "an upgrade is already under way");
        return;
    }
    char **av = calloc((size_t)lb->argc + 3, sizeof(*av));
    if (av == NULL) {
        log_error("SIGUSR2: out of memory");
        return;
    }
    /* A lb that was itself started by a takeover drops its own --takeover:
     * else every upgrade would lengthen the next one's command line. */
    int ac = 0;
    for (int i = 0; i < lb->argc; i++) {
        if (i > 0 && strcmp(lb->argv[i], "--takeover") == 0) {
            i++;
            continue;
        }
        if (i > 0 && strncmp(lb->argv[i], "--takeover=", 11) == 0)
            continue;
        av[ac++] = lb->argv[i];
    }
    av[ac] = "--takeover";
    av[ac + 1] = lb->o.control_socket;
    long maxfd = sysconf(_SC_OPEN_MAX);
    pid_t pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls until exec: the proxy threads'
         * locks may be held by threads that do not exist here. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* The new lb takes the listeners over the control socket and
         * nothing else: a descriptor without close-on-exec (hiredis opens
         * its sockets so) would stay open in it, a Redis connection of
         * this lb kept alive by every later one. */
        if (close_range(3, ~0U, 0) < 0)
            for (long fd = 3; fd < maxfd; fd++)
                close((int)fd);
        execvp(av[0], av);
        _exit(127);
    }
    free(av);
    if (pid < 0) {
        log_error("SIGUSR2: fork: %s", strerror(errno));
        return;
    }
    log_info("SIGUSR2: started %s (pid %ld) to take over", lb->argv[0], (long)pid);
    ev_child_init(&lb->child, lb_child_cb, pid, 0);
    ev_child_start(loop, &lb->child);
}

/* The takeover's hooks (hand.h): what to pass, and the new lb's READY. */
static size_t lb_hand_fds(void *ud, int *fds, char *kinds, size_t cap)
{
    lb_t *lb = ud;
    int tls[HAND_MAX_FDS];
    size_t n = px_listen_fds(lb->px, fds, tls, cap < HAND_MAX_FDS ? cap : HAND_MAX_FDS);
    for (size_t i = 0; i < n; i++)
        kinds[i] = tls[i] ? 't' : 'p';
    if (lb->admin != NULL && n < cap) {
        fds[n] = admin_listen_fd(lb->admin);
        kinds[n++] = 'a';
    }
    return n;
}

static void lb_hand_done(void *ud)
{
    lb_t *lb = ud;
    if (lb->stopping)
        return;
    /* The new lb owns the admin address too: this one answers no more. */
    admin_free(lb->admin);
    lb->admin = NULL;
    /* The admin socket lives on in the new lb: a fresh epoll set forgets
     * it (see px_close_listeners). */
    ev_loop_fork(lb->loop);
    lb_begin_stop(lb, "taken over");
}

static void lb_hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    lb_t *lb = container_of(w, lb_t, sig_hup);
    char err[512];
    if (lb->st != NULL) {
        /* The proxy threads keep serving the old files until the swap. */
        if (st_reload(lb->st, err, sizeof(err)) < 0)
            log_error("SIGHUP: static files not reloaded, keeping the current ones: %s", err);
        else
            log_info("SIGHUP: static files reloaded: %zu files, %zu KiB from %s", st_files(lb->st),
                     (st_bytes(lb->st) + 1023) / 1024, lb->o.static_dir);
    }
    if (lb->stopping) {
        log_info("SIGHUP: shutting down, configuration not reloaded");
        return;
    }
    /* The configuration, the certificate and key among it. */
    (void)rld_reload(lb);
}

int main(int argc, char **argv)
{
    static lb_t lbs; /* zeroed; static only to keep it off the stack */
    lb_t *lb = &lbs;
    lb_opts_t *o = &lb->o;
    char err[1024];
    char *token = NULL, *upstream_secret = NULL;
    int taken[HAND_MAX_FDS], hconn = -1;
    char tkinds[HAND_MAX_FDS];
    size_t ntaken = 0;
    int admin_fd = -1;
    int rc = 1;

    log_set_tag("lb");
    lb->argc = argc;
    lb->argv = argv;
    int pr = rld_parse(o, lb->opts, argc, argv, err, sizeof(err));
    if (pr == CFG_EXIT) {
        cfg_free(lb->opts);
        return 0;
    }
    if (pr != CFG_OK) {
        /* --check exits 1 on an invalid configuration, as nginx -t; the
         * file may have failed before the flag was read. */
        int checking = 0;
        for (int i = 1; i < argc; i++)
            checking |= strcmp(argv[i], "--check") == 0;
        fprintf(stderr, "lb: %s\n", err);
        cfg_free(lb->opts);
        return checking ? 1 : 2;
    }

    enum log_level lvl;
    enum log_format lfmt;
    (void)log_parse_level(o->log_level, &lvl); /* checked by rld_parse */
    (void)log_parse_format(o->log_format, &lfmt);
    log_set_level(lvl);
    log_set_format(lfmt);
    if (o->check) {
        /* What lbo_check cannot see without loading: the certificate. */
        tls_t *t = o->tls_listen.n > 0 ? tls_create(o->cert, o->key, err, sizeof(err)) : NULL;
        if (o->tls_listen.n > 0 && t == NULL) {
            fprintf(stderr, "lb: tls: %s\n", err);
            cfg_free(lb->opts);
            return 1;
        }
        tls_free(t);
        printf("lb: configuration ok\n");
        cfg_free(lb->opts);
        return 0;
    }
    if (o->id == NULL) {
        /* Unique per process: a restarted lb must not be taken for its
         * predecessor, whose connections may still be open. A long host
         * name (Kubernetes pods reach 63 characters) is cut and hashed. */
        char host[256] = "", idbuf[FLEET_ID_MAX + 1];
        if (gethostname(host, sizeof(host) - 1) < 0)
            host[0] = '\0';
        host[sizeof(host) - 1] = '\0';
        o->id = strdup(fleet_id_default(host, (long)getpid(), idbuf, sizeof(idbuf)));
    }
    if (o->id == NULL || !fleet_id_ok(o->id, strlen(o->id))) {
        fprintf(stderr, "lb: --id: 1-63 characters of A-Z a-z 0-9 . _ : -\n");
        rc = 2;
        goto out;
    }
    const be_algo_t *algo = be_algo_find(o->algo);
    if (rld_trusted(o, &lb->trusted, err, sizeof(err)) < 0) {
        fprintf(stderr, "lb: %s\n", err);
        rc = 2;
        goto out;
    }
    unsigned aff_factor_milli = 1250;
    if (lbo_affinity(o, &lb->aff, &aff_factor_milli, err, sizeof(err)) < 0) {
        fprintf(stderr, "lb: %s\n", err);
        rc = 2;
        goto out;
    }
    lb->routes = route_create();
    if (lb->routes == NULL) {
        fprintf(stderr, "lb: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < o->route.n; i++) {
        if (route_add_ws(lb->routes, o->route.v[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "lb: %s\n", err);
            rc = 2;
            goto out;
        }
    }
    for (size_t i = 0; i < o->proxy_http.n; i++) {
        if (route_add_http(lb->routes, o->proxy_http.v[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "lb: %s\n", err);
            rc = 2;
            goto out;
        }
    }
    if (route_finish(lb->routes, err, sizeof(err)) < 0) {
        fprintf(stderr, "lb: %s\n", err);
        goto out;
    }
    if (o->upstream_secret_file != NULL && *o->upstream_secret_file) {
        upstream_secret =
            cfg_read_secret("--upstream-secret-file", o->upstream_secret_file, err, sizeof(err));
        if (upstream_secret == NULL) {
            fprintf(stderr, "lb: %s\n", err);
            rc = 2;
            goto out;
        }
    }
    /* Everything is checked: only now take the listeners of the running lb
     * (which keeps accepting until this one says it does). */
    if (o->takeover != NULL && *o->takeover) {
        hconn = hand_take(o->takeover, taken, tkinds, &ntaken, err, sizeof(err));
        if (hconn < 0) {
            log_error("%s; the running lb is left as it was", err);
            goto out;
        }
        /* The admin socket goes to the admin API, the rest to the proxy. */
        size_t k = 0;
        for (size_t i = 0; i < ntaken; i++) {
            if (tkinds[i] == 'a' && admin_fd < 0)
                admin_fd = taken[i];
            else if (tkinds[i] == 'a')
                close(taken[i]);
            else
                taken[k++] = taken[i];
        }
        ntaken = k;
        log_info("takeover: %zu listening socket(s) received from %s", ntaken, o->takeover);
    }
    lim_config_t lc = {.max_conns = (unsigned)o->limit_conns,
                       .rate = (unsigned)o->limit_rate,
                       .burst = (unsigned)o->limit_burst};
    if (lim_enabled(&lc)) {
        lb->lim = lim_create(&lc, err, sizeof(err));
        if (lb->lim == NULL) {
            log_error("limits: %s", err);
            goto out;
        }
    }

    /* Writes to a closed socket must be errors, not a dead process. */
    signal(SIGPIPE, SIG_IGN);
    lb->loop = ev_default_loop(EVFLAG_AUTO);
    if (lb->loop == NULL) {
        log_error("cannot create the event loop");
        goto out;
    }

    static const double hs_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                       0.1,    0.25,  0.5,   1,     2.5,  5};
    lb->reg = met_create();
    if (lb->reg == NULL) {
        log_error("out of memory");
        goto out;
    }
    met_set_legacy(lb->reg, o->metrics_legacy);
    lb->stats.handshake_ms =
        met_hist(lb->reg, MN_LB_HANDSHAKE_DURATION, NULL,
                 "Seconds from accepting a client to its backend's response head", hs_bounds,
                 sizeof(hs_bounds) / sizeof(hs_bounds[0]));

    if (rld_init(lb) < 0) {
        log_error("out of memory");
        goto out;
    }
    lb->table = be_table_create(algo, (unsigned)o->slowstart_ms);
    if (lb->table == NULL) {
        log_error("out of memory");
        goto out;
    }
    be_table_set_health(lb->table, (int)o->rise, (int)o->fall);
    if (lb->aff.kind != AFF_NONE && be_table_set_affinity(lb->table, aff_factor_milli) < 0) {
        log_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < o->backend.n; i++) {
        if (lb_add_static(lb, o->backend.v[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "lb: %s\n", err);
            rc = 2;
            goto out;
        }
    }

    if (o->tls_listen.n > 0) {
        lb->tls = tls_create(o->cert, o->key, err, sizeof(err));
        if (lb->tls == NULL) {
            log_error("tls: %s", err);
            goto out;
        }
    }

    if (o->static_dir != NULL && *o->static_dir) {
        st_opts_t so = {.max_file = (size_t)o->static_max_file_kb * 1024,
                        .max_total = (size_t)o->static_max_total_kb * 1024,
                        .csp = o->static_csp,
                        .metrics = lb->reg};
        lb->st = st_create(o->static_dir, &so, err, sizeof(err));
        if (lb->st == NULL) {
            fprintf(stderr, "lb: --static: %s\n", err);
            rc = 2;
            goto out;
        }
        log_info("static: %zu files, %zu KiB from %s", st_files(lb->st),
                 (st_bytes(lb->st) + 1023) / 1024, o->static_dir);
    }

    char *def_listen[] = {"127.0.0.1:8080"};
    px_config_t pc = {
        .listen = o->listen.n ? o->listen.v : def_listen,
        .nlisten = o->listen.n ? o->listen.n : (o->tls_listen.n ? 0 : 1),
        .tls_listen = o->tls_listen.v,
        .ntls_listen = o->tls_listen.n,
        .tls = lb->tls,
        .threads = (int)o->threads,
        .upstream_secret = upstream_secret,
        .lb_id = o->id,
        .routes = lb->routes,
        .st = lb->st,
        .down_close_ms = (unsigned)o->down_close_ms,
        .ping_interval_s = (unsigned)o->ping_interval_s,
        .ping_timeout_s = (unsigned)(o->ping_timeout_s ? o->ping_timeout_s : o->ping_interval_s),
        .takeover = hconn >= 0,
        .taken = taken,
        .ntaken = ntaken,
        .aff = lb->aff.kind != AFF_NONE ? &lb->aff : NULL,
        .accept_proxy = o->accept_proxy,
    };
    rld_px_tunables(lb, &pc);
    lb->px = px_create(lb->table, &lb->stats, &pc, err, sizeof(err));
    ntaken = 0; /* px_create's now, whatever it returned */
    if (lb->px == NULL) {
        /* Another process on our port is a configuration error, as a bad
         * flag is: exit 2, and never join it silently. */
        if (errno == EADDRINUSE)
            rc = 2;
        log_error("%s", err);
        goto out;
    }

    hc_config_t hcc = {
        .path = o->health_path,
        .interval_ms = (unsigned)o->health_interval_ms,
        .timeout_ms = 0,
    };
    lb->hc = hc_create(lb->loop, lb->table, &hcc, err, sizeof(err));
    if (lb->hc == NULL) {
        log_error("health checks: %s", err);
        goto out;
    }
    {
        rds_config_t rcfg;
        if (rdo_config(o->redis, &o->rdo, &rcfg, err, sizeof(err)) < 0) {
            log_error("%s", err);
            goto out;
        }
        if (rcfg.addr != NULL || rcfg.sentinels != NULL) {
            lb->disc = disc_create(lb->loop, lb->table, &rcfg, o->redis_prefix, err, sizeof(err));
            rdo_clear(&rcfg);
            if (lb->disc == NULL) {
                log_error("--redis: %s", err);
                goto out;
            }
            disc_set_lb_id(lb->disc, o->id);
            /* Rendered on the main thread, where discovery runs. */
            if (met_gauge_fn(lb->reg, MN_LB_REDIS_UP, NULL,
                             "1 while discovery's connection to Redis is up", lb_gauge_redis,
                             lb->disc) < 0) {
                log_error("out of memory");
                goto out;
            }
        }
    }
    if (o->admin != NULL && *o->admin) {
        if (o->admin_token_file != NULL && *o->admin_token_file) {
            token = cfg_read_secret("--admin-token-file", o->admin_token_file, err, sizeof(err));
            if (token == NULL) {
                log_error("%s", err);
                goto out;
            }
        }
        /* On loopback, reading needs no token (local scrapers); changing
         * things always does when one is set. */
        admin_config_t ac = {.listen = o->admin,
                             .token = token,
                             .metrics = lb->reg,
                             .life = lb_life,
                             .life_ud = lb,
                             .open_reads = lbo_is_loopback(o->admin)};
        /* The running lb's admin socket, if it is bound where this one's
         * must be: binding the address again would fail. */
        sock_addr_t want, have;
        char s1[SOCK_ADDRSTRLEN], s2[SOCK_ADDRSTRLEN];
        if (admin_fd >= 0 && sock_parse_addr(o->admin, &want, s1, sizeof(s1)) == 0 &&
            sock_local_addr(admin_fd, &have) == 0 &&
            strcmp(sock_addr_str(&want, s1, sizeof(s1)), sock_addr_str(&have, s2, sizeof(s2))) ==
                0) {
            ac.has_fd = 1;
            ac.fd = admin_fd;
        }
        lb->admin = admin_create(lb->loop, lb->table, &lb->stats, &ac, err, sizeof(err));
        if (lb->admin != NULL && ac.has_fd)
            admin_fd = -1; /* the admin API's now */
        if (lb->admin == NULL) {
            if (errno == EADDRINUSE)
                rc = 2;
            log_error("admin: %s", err);
            goto out;
        }
    }
    if (admin_fd >= 0) {
        /* The old lb's admin socket, on an address this one does not
         * serve: kept, it would take connections nobody answers. */
        close(admin_fd);
        admin_fd = -1;
    }

    ev_signal_init(&lb->sig_term, lb_term_cb, SIGTERM);
    ev_signal_init(&lb->sig_int, lb_term_cb, SIGINT);
    ev_signal_init(&lb->sig_hup, lb_hup_cb, SIGHUP);
    ev_signal_init(&lb->sig_usr2, lb_usr2_cb, SIGUSR2);
    ev_signal_start(lb->loop, &lb->sig_usr2);
    lb->sig_term.data = lb->sig_int.data = lb;
    ev_signal_start(lb->loop, &lb->sig_term);
    ev_signal_start(lb->loop, &lb->sig_int);
    ev_signal_start(lb->loop, &lb->sig_hup);

    if (px_start(lb->px, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    /* The control socket first: once the old lb hears READY, its path
     * already leads to this one, and the next takeover finds it. */
    if (o->control_socket != NULL && *o->control_socket) {
        hand_ops_t hops = {.fds = lb_hand_fds, .done = lb_hand_done};
        lb->hand = hand_listen(lb->loop, o->control_socket, &hops, lb, err, sizeof(err));
        if (lb->hand == NULL) {
            log_error("%s", err);
            goto out;
        }
    }
    /* Ready, and the unit's main process from now on: said before the old
     * lb hears it, so that systemd never sees the main process exit. */
    lb_notify("READY=1", 1);
    if (hconn >= 0) {
        /* Accepting now: the old lb may stop. */
        int hr = hand_ready(hconn, err, sizeof(err));
        hconn = -1;
        if (hr < 0)
            log_warn("takeover: %s; it stops at its own pace", err);
        else
            log_info("takeover: accepting; the old lb stops accepting and drains");
    }

    {
        char a1[SOCK_ADDRSTRLEN] = "-", a2[SOCK_ADDRSTRLEN] = "-", a3[SOCK_ADDRSTRLEN] = "-";
        sock_addr_t sa;
        if (px_listen_addr(lb->px, 0, &sa) == 0)
            sock_addr_str(&sa, a1, sizeof(a1));
        if (px_listen_addr(lb->px, 1, &sa) == 0)
            sock_addr_str(&sa, a2, sizeof(a2));
        if (lb->admin != NULL && admin_local_addr(lb->admin, &sa) == 0)
            sock_addr_str(&sa, a3, sizeof(a3));
        log_info("lb %s (id %s) listening on %s (tls %s), admin %s, algo %s, %ld thread(s), %zu "
                 "static backend(s)%s%s; limits conns=%ld rate=%ld burst=%ld, %zu trusted "
                 "network(s)%s",
                 VERSION, o->id, a1, a2, a3, algo->name, o->threads, o->backend.n,
                 lb->disc ? ", redis " : "",
                 lb->disc ? (o->redis ? o->redis : "master from Sentinels") : "", o->limit_conns,
                 o->limit_rate, o->limit_burst, lb->trusted ? lb->trusted->n : 0,
                 upstream_secret ? ", upstream secret set" : "");
    }

    ev_run(lb->loop, 0);
    /* A lb taken over is no longer the unit's main process: the unit is
     * not stopping. */
    if (lb->hand == NULL || !hand_done(lb->hand))
        lb_notify("STOPPING=1", 0);
    rc = 0;

out:
    hand_free(lb->hand, 1);
    if (hconn >= 0)
        close(hconn); /* the old lb sees it and keeps serving */
    for (size_t i = 0; i < ntaken; i++)
        close(taken[i]);
    if (admin_fd >= 0)
        close(admin_fd);
    /* Proxy threads first: they are the ones touching the table. */
    px_free(lb->px);
    st_free(lb->st);
    admin_free(lb->admin);
    disc_free(lb->disc);
    hc_free(lb->hc);
    be_table_free(lb->table);
    tls_free(lb->tls);
    met_free(lb->reg);
    lim_free(lb->lim);
    for (size_t i = 0; i < lb->nretired; i++) {
        cidr_set_free(lb->retired[i].set);
        free(lb->retired[i].set);
    }
    free(lb->retired);
    if (lb->trusted != NULL) {
        cidr_set_free(lb->trusted);
        free(lb->trusted);
    }
    route_free(lb->routes);
    free(token);
    if (upstream_secret != NULL)
        explicit_bzero(upstream_secret, strlen(upstream_secret));
    free(upstream_secret);
    cfg_free(lb->opts);
    if (lb->loop != NULL)
        ev_loop_destroy(lb->loop);
    if (rc == 0)
        log_info("bye");
    return rc;
}
