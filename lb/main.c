/* lb: the websocket load balancer's entry point.
 *
 * The main thread owns the control plane on the default loop: signals, the
 * health checker, Redis discovery and the admin API. --threads proxy threads
 * each run their own loop (proxy.h) and share the backend table. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "admin.h"
#include "atomic.h"
#include "be.h"
#include "cfg.h"
#include "cidr.h"
#include "disc.h"
#include "fleet.h"
#include "hc.h"
#include "http.h"
#include "lbs.h"
#include "lim.h"
#include "log.h"
#include "met.h"
#include "met_names.h"
#include "proxy.h"
#include "route.h"
#include "rdo.h"
#include "sock.h"
#include "static.h"
#include "tls.h"
#include "util.h"

#ifndef VERSION
#define VERSION "dev"
#endif

typedef struct lb_opts {
    cfg_list_t listen, tls_listen, backend, trusted_proxies, route, proxy_http;
    char *cert, *key, *redis, *redis_prefix, *admin, *admin_token_file, *algo, *health_path,
        *log_level, *log_format, *upstream_secret_file, *id, *static_dir, *static_csp;
    long health_interval_ms, rise, fall, retries, threads, max_conns, timeout_head_ms,
        timeout_connect_ms, timeout_response_ms, timeout_idle_s, slowstart_ms, grace_s, max_head,
        limit_conns, limit_rate, limit_burst, static_max_file_kb, static_max_total_kb;
    long down_close_ms, ping_interval_s, ping_timeout_s; /* websocket-aware closes */
    int access_log, accept_proxy, metrics_legacy;
    rdo_t rdo; /* --redis-sentinel, --redis-password-file, ... */
} lb_opts_t;

/* Everything the process runs, in one place: the only context there is. */
typedef struct lb {
    struct ev_loop *loop;
    lb_opts_t o;
    lbs_t stats;
    met_registry_t *reg;
    be_table_t *table;
    tls_t *tls;
    hc_t *hc;
    disc_t *disc;
    admin_t *admin;
    px_t *px;
    lim_t *lim;
    st_t *st;
    cidr_set_t trusted;
    route_t *routes;
    ev_signal sig_term, sig_int, sig_hup;
    ev_timer grace;   /* shutdown deadline */
    ev_timer drained; /* polls for the last tunnel to end during shutdown */
    int stopping;
} lb_t;

/* Parses "ID=HOST:PORT[,weight=N]" and adds the backend. */
static int lb_add_static(lb_t *lb, const char *spec, char *err, size_t errlen)
{
    char tmp[512], e2[SOCK_ERR_LEN];
    unsigned weight = 1;
    sock_addr_t addr;

    if (strlen(spec) >= sizeof(tmp)) {
        snprintf(err, errlen, "--backend: too long");
        return -1;
    }
    strcpy(tmp, spec);
    char *eq = strchr(tmp, '=');
    if (eq == NULL || eq == tmp || (size_t)(eq - tmp) >= BE_ID_MAX) {
        snprintf(err, errlen, "--backend '%s': want ID=HOST:PORT[,weight=N]", spec);
        return -1;
    }
    *eq = '\0';
    char *hp = eq + 1;
    char *comma = strchr(hp, ',');
    if (comma != NULL) {
        *comma = '\0';
        const char *opt = comma + 1;
        char *end;
        if (strncmp(opt, "weight=", 7) != 0) {
            snprintf(err, errlen, "--backend '%s': unknown option '%s'", spec, opt);
            return -1;
        }
        errno = 0;
        long w = strtol(opt + 7, &end, 10);
        if (errno || *end || end == opt + 7 || w < 1 || w > 256) {
            snprintf(err, errlen, "--backend '%s': weight must be 1..256", spec);
            return -1;
        }
        weight = (unsigned)w;
    }
    if (sock_parse_addr(hp, &addr, e2, sizeof(e2)) < 0) {
        snprintf(err, errlen, "--backend '%s': %s", spec, e2);
        return -1;
    }
    if (be_find(lb->table, tmp) != NULL) {
        snprintf(err, errlen, "--backend '%s': duplicate id", spec);
        return -1;
    }
    if (be_add(lb->table, tmp, &addr, weight, BE_STATIC) == NULL) {
        snprintf(err, errlen, "--backend '%s': cannot add", spec);
        return -1;
    }
    return 0;
}

/* Whether "HOST:PORT" names a loopback address (127.0.0.0/8, ::1). */
static int lb_is_loopback(const char *hostport)
{
    sock_addr_t a;
    char e[SOCK_ERR_LEN];
    cidr_set_t lo = {0};
    if (sock_parse_addr(hostport, &a, e, sizeof(e)) < 0)
        return 0;
    int yes = cidr_set_add(&lo, "127.0.0.0/8,::1", e, sizeof(e)) == 0 &&
              cidr_set_match(&lo, (struct sockaddr *)&a.ss);
    cidr_set_free(&lo);
    return yes;
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

/* For /healthz: a front takes this lb out while it stops or has not yet
 * learnt its workers. */
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
static void lb_term_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    lb_t *lb = w->data;
    if (lb->stopping) {
        lb_finish(lb, "second signal");
        return;
    }
    lb->stopping = 1;
    log_info("signal %d: no longer accepting; waiting up to %ld s for %lld connections", w->signum,
             lb->o.grace_s, (long long)AT_LOAD(&lb->stats.active));
    px_stop_accepting(lb->px);
    ev_timer_init(&lb->grace, lb_grace_cb, (double)lb->o.grace_s, 0);
    ev_timer_start(loop, &lb->grace);
    ev_timer_init(&lb->drained, lb_drained_cb, 0.0, 0.05);
    ev_timer_start(loop, &lb->drained);
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
    if (lb->tls == NULL) {
        log_info("SIGHUP: no TLS configured, no certificate to reload");
        return;
    }
    if (tls_reload(lb->tls, err, sizeof(err)) < 0)
        log_error("SIGHUP: TLS reload failed, keeping the current certificate: %s", err);
    else
        log_info("SIGHUP: TLS certificate and key reloaded (generation %u)",
                 tls_generation(lb->tls));
}

int main(int argc, char **argv)
{
    static lb_t lbs; /* zeroed; static only to keep it off the stack */
    lb_t *lb = &lbs;
    lb_opts_t *o = &lb->o;
    char err[1024];
    char *token = NULL, *upstream_secret = NULL;
    int rc = 1;

    o->admin = "127.0.0.1:8081";
    o->algo = "leastconn";
    o->health_path = "/healthz";
    o->redis_prefix = FLEET_DEFAULT_PREFIX;
    o->log_level = "info";
    o->log_format = "text";
    o->health_interval_ms = 1000;
    o->rise = 2;
    o->fall = 2;
    o->retries = 2;
    o->threads = 1;
    o->timeout_head_ms = 10000;
    o->timeout_connect_ms = 2000;
    o->timeout_response_ms = 10000;
    o->timeout_idle_s = 3600;
    o->slowstart_ms = 3000;
    o->grace_s = 10;
    o->down_close_ms = 1000;
    o->max_head = HTTP_DEFAULT_MAX_HEAD;
    o->access_log = 1;
    o->metrics_legacy = 1;
    o->static_max_file_kb = ST_DEFAULT_MAX_FILE / 1024;
    o->static_max_total_kb = ST_DEFAULT_MAX_TOTAL / 1024;

    const cfg_opt_t opts[] = {
        {"listen", CFG_LIST, &o->listen, "HOST:PORT",
         "plain HTTP/websocket listener, repeatable (default 127.0.0.1:8080)", 0, 0},
        {"tls-listen", CFG_LIST, &o->tls_listen, "HOST:PORT", "TLS listener, repeatable", 0, 0},
        {"cert", CFG_STR, &o->cert, "PEM", "certificate chain for --tls-listen", 0, 0},
        {"key", CFG_STR, &o->key, "PEM", "private key for --tls-listen", 0, 0},
        {"backend", CFG_LIST, &o->backend, "ID=HOST:PORT[,weight=N]", "static backend, repeatable",
         0, 0},
        {"redis", CFG_STR, &o->redis, "HOST:PORT", "discover workers and their load in Redis", 0,
         0},
        {"redis-prefix", CFG_STR, &o->redis_prefix, "PREFIX",
         "Redis key prefix (" FLEET_DEFAULT_PREFIX ")", 0, 0},
        RDO_CFG_OPTS(&o->rdo),
        {"id", CFG_STR, &o->id, "NAME",
         "this lb's id, sent to workers as X-Lb-Id so they count connections per lb; unique "
         "per lb process (default HOSTNAME-PID, a long host name cut and hashed)",
         0, 0},
        {"admin", CFG_STR, &o->admin, "HOST:PORT",
         "admin API listener (default 127.0.0.1:8081; empty = off)", 0, 0},
        {"admin-token-file", CFG_STR, &o->admin_token_file, "FILE",
         "require 'Authorization: Bearer <token>' on the admin API", 0, 0},
        {"algo", CFG_STR, &o->algo, "NAME", "leastconn|leastload|roundrobin|p2c (leastconn)", 0, 0},
        {"health-path", CFG_STR, &o->health_path, "PATH", "health check path (/healthz)", 0, 0},
        {"health-interval-ms", CFG_INT, &o->health_interval_ms, "MS",
         "health check interval (1000)", 50, 600000},
        {"rise", CFG_INT, &o->rise, "N", "successes to bring a backend up (2)", 1, 100},
        {"fall", CFG_INT, &o->fall, "N", "failures to take a backend down (2)", 1, 100},
        {"retries", CFG_INT, &o->retries, "N", "other backends tried after a failure (2)", 0, 7},
        {"threads", CFG_INT, &o->threads, "N", "proxy threads (1)", 1, 256},
        {"max-conns", CFG_INT, &o->max_conns, "N",
         "client connections over this get 503 (0 = no limit)", 0, 100000000},
        {"timeout-head-ms", CFG_INT, &o->timeout_head_ms, "MS",
         "client request head (and TLS handshake) deadline (10000)", 1, 3600000},
        {"timeout-connect-ms", CFG_INT, &o->timeout_connect_ms, "MS",
         "backend connect deadline (2000)", 1, 600000},
        {"timeout-response-ms", CFG_INT, &o->timeout_response_ms, "MS",
         "backend response head deadline (10000)", 1, 3600000},
        {"timeout-idle-s", CFG_INT, &o->timeout_idle_s, "S",
         "close a tunnel idle this long (3600; 0 = never)", 0, 100000000},
        {"slowstart-ms", CFG_INT, &o->slowstart_ms, "MS",
         "ramp-up window for a new backend (3000; 0 = off)", 0, 3600000},
        {"grace-s", CFG_INT, &o->grace_s, "S", "on SIGTERM, how long open tunnels may finish (10)",
         0, 86400},
        {"down-close-ms", CFG_INT, &o->down_close_ms, "MS",
         "close tunnels on a backend marked down (not draining) after this long, websockets "
         "with 1014 (1000)",
         0, 3600000},
        {"ping-interval-s", CFG_INT, &o->ping_interval_s, "S",
         "ping websocket clients from the lb this often (0 = off)", 0, 3600},
        {"ping-timeout-s", CFG_INT, &o->ping_timeout_s, "S",
         "with --ping-interval-s, close a client that answers no ping within this (0 = the "
         "interval)",
         0, 3600},
        {"max-head", CFG_INT, &o->max_head, "BYTES", "largest request/response head (8192)", 512,
         1048576},
        {"limit-conns", CFG_INT, &o->limit_conns, "N",
         "concurrent connections per client address; over it: 429 (0 = no limit)", 0, 1000000},
        {"limit-rate", CFG_INT, &o->limit_rate, "R",
         "new connections (handshakes/requests) per second per client address; over it: 429 "
         "(0 = no limit)",
         0, 1000000},
        {"limit-burst", CFG_INT, &o->limit_burst, "B",
         "with --limit-rate, how many may come at once (0 = the rate)", 0, 1000000},
        {"trusted-proxies", CFG_LIST, &o->trusted_proxies, "CIDR[,CIDR...]",
         "peers whose X-Forwarded-For is appended to (others' is replaced), exempt from "
         "--limit-*; repeatable",
         0, 0},
        {"accept-proxy", CFG_BOOL, &o->accept_proxy, NULL,
         "every connection to the listeners (plain and TLS) starts with a PROXY protocol v1 or "
         "v2 header from a --trusted-proxies peer, whose client address is then used (off)",
         0, 0},
        {"route", CFG_LIST, &o->route, "PATH",
         "websocket path proxied to the workers, exact match (default /eval)", 0, 0},
        {"proxy-http", CFG_LIST, &o->proxy_http, "PREFIX",
         "proxy plain HTTP requests under this path prefix too (default none)", 0, 0},
        {"upstream-secret-file", CFG_STR, &o->upstream_secret_file, "FILE",
         "send the file's first line as X-Upstream-Secret to the workers", 0, 0},
        {"static", CFG_STR, &o->static_dir, "DIR",
         "serve the files under DIR from memory for GET and HEAD (the browser page: web); "
         "SIGHUP reloads them",
         0, 0},
        {"static-max-file-kb", CFG_INT, &o->static_max_file_kb, "KB",
         "largest file --static loads (1024)", 1, 1048576},
        {"static-max-total-kb", CFG_INT, &o->static_max_total_kb, "KB",
         "most bytes --static loads in all (16384)", 1, 16777216},
        {"static-csp", CFG_STR, &o->static_csp, "POLICY",
         "Content-Security-Policy of --static responses (default: same-origin scripts, styles, "
         "images and websockets only; empty = none)",
         0, 0},
        {"access-log", CFG_BOOL, &o->access_log, NULL,
         "one log line per connection (on; --access-log=false turns it off)", 0, 0},
        {"log-level", CFG_STR, &o->log_level, "LEVEL", "debug|info|warn|error|off (info)", 0, 0},
        {"log-format", CFG_STR, &o->log_format, "FORMAT",
         "text|json: key=value lines or one JSON object per line (text)", 0, 0},
        {"metrics-legacy", CFG_BOOL, &o->metrics_legacy, NULL,
         "/metrics also shows the deprecated wslb_lb_handshake_ms and wslb_lb_bytes_in/out_total "
         "beside their current names (on; --metrics-legacy=no drops them; they go in 0.3.0)",
         0, 0},
        CFG_END,
    };

    log_set_tag("lb");
    int pr = cfg_parse(opts, argc, argv,
                       "Websocket load balancer: least-connections/least-load balancing, health "
                       "checks, Redis discovery, TLS.",
                       VERSION, err, sizeof(err));
    if (pr == CFG_EXIT) {
        cfg_free(opts);
        return 0;
    }
    if (pr != CFG_OK) {
        fprintf(stderr, "lb: %s\n", err);
        cfg_free(opts);
        return 2;
    }

    enum log_level lvl;
    if (log_parse_level(o->log_level, &lvl) < 0) {
        fprintf(stderr, "lb: --log-level: unknown level '%s'\n", o->log_level);
        rc = 2;
        goto out;
    }
    log_set_level(lvl);
    enum log_format lfmt;
    if (log_parse_format(o->log_format, &lfmt) < 0) {
        fprintf(stderr, "lb: --log-format: unknown format '%s' (text or json)\n", o->log_format);
        rc = 2;
        goto out;
    }
    log_set_format(lfmt);
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
    if (algo == NULL) {
        fprintf(stderr, "lb: --algo: unknown algorithm '%s'\n", o->algo);
        rc = 2;
        goto out;
    }
    /* A certificate with no TLS listener would be silently unused: the
     * operator meant to serve TLS and would not be. */
    if (o->tls_listen.n == 0 && (o->cert != NULL || o->key != NULL)) {
        fprintf(stderr,
                "lb: --%s given without --tls-listen: add --tls-listen HOST:PORT, or "
                "drop --cert and --key\n",
                o->cert != NULL ? "cert" : "key");
        rc = 2;
        goto out;
    }
    if (o->tls_listen.n > 0 && (o->cert == NULL || o->key == NULL)) {
        fprintf(stderr, "lb: --tls-listen needs --cert and --key\n");
        rc = 2;
        goto out;
    }
    /* Anyone who reaches a non-loopback admin API could drain every worker. */
    if (o->admin != NULL && *o->admin && !lb_is_loopback(o->admin) &&
        (o->admin_token_file == NULL || !*o->admin_token_file)) {
        fprintf(stderr,
                "lb: --admin %s is not a loopback address: set --admin-token-file, or bind the "
                "admin API to 127.0.0.1\n",
                o->admin);
        rc = 2;
        goto out;
    }
    for (size_t i = 0; i < o->trusted_proxies.n; i++) {
        if (cidr_set_add(&lb->trusted, o->trusted_proxies.v[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "lb: --trusted-proxies: %s\n", err);
            rc = 2;
            goto out;
        }
    }
    /* Anyone could claim any client address: only named peers may. */
    if (o->accept_proxy && lb->trusted.n == 0) {
        fprintf(stderr, "lb: --accept-proxy needs --trusted-proxies: the addresses of the "
                        "load balancers that send the PROXY header\n");
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

    lb->table = be_table_create(algo, (unsigned)o->slowstart_ms);
    if (lb->table == NULL) {
        log_error("out of memory");
        goto out;
    }
    be_table_set_health(lb->table, (int)o->rise, (int)o->fall);
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
        .max_conns = o->max_conns,
        .timeout_head_ms = (unsigned)o->timeout_head_ms,
        .timeout_connect_ms = (unsigned)o->timeout_connect_ms,
        .timeout_response_ms = (unsigned)o->timeout_response_ms,
        .timeout_idle_s = (unsigned)o->timeout_idle_s,
        .retries = (int)o->retries,
        .access_log = o->access_log,
        .max_head = (size_t)o->max_head,
        .lim = lb->lim,
        .trusted = lb->trusted.n ? &lb->trusted : NULL,
        .upstream_secret = upstream_secret,
        .lb_id = o->id,
        .routes = lb->routes,
        .st = lb->st,
        .accept_proxy = o->accept_proxy,
        .down_close_ms = (unsigned)o->down_close_ms,
        .ping_interval_s = (unsigned)o->ping_interval_s,
        .ping_timeout_s = (unsigned)(o->ping_timeout_s ? o->ping_timeout_s : o->ping_interval_s),
    };
    lb->px = px_create(lb->table, &lb->stats, &pc, err, sizeof(err));
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
                             .open_reads = lb_is_loopback(o->admin)};
        lb->admin = admin_create(lb->loop, lb->table, &lb->stats, &ac, err, sizeof(err));
        if (lb->admin == NULL) {
            if (errno == EADDRINUSE)
                rc = 2;
            log_error("admin: %s", err);
            goto out;
        }
    }

    ev_signal_init(&lb->sig_term, lb_term_cb, SIGTERM);
    ev_signal_init(&lb->sig_int, lb_term_cb, SIGINT);
    ev_signal_init(&lb->sig_hup, lb_hup_cb, SIGHUP);
    lb->sig_term.data = lb->sig_int.data = lb;
    ev_signal_start(lb->loop, &lb->sig_term);
    ev_signal_start(lb->loop, &lb->sig_int);
    ev_signal_start(lb->loop, &lb->sig_hup);

    if (px_start(lb->px, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
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
                 o->limit_rate, o->limit_burst, lb->trusted.n,
                 upstream_secret ? ", upstream secret set" : "");
    }

    ev_run(lb->loop, 0);
    rc = 0;

out:
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
    cidr_set_free(&lb->trusted);
    route_free(lb->routes);
    free(token);
    if (upstream_secret != NULL)
        explicit_bzero(upstream_secret, strlen(upstream_secret));
    free(upstream_secret);
    cfg_free(opts);
    if (lb->loop != NULL)
        ev_loop_destroy(lb->loop);
    if (rc == 0)
        log_info("bye");
    return rc;
}
