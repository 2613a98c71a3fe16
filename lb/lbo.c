/* lbo: the lb's options (see lbo.h). */
#include "lbo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "be.h"
#include "cidr.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "route.h"
#include "static.h"

const char lbo_summary[] = "Websocket load balancer: least-connections/least-load balancing, "
                           "health checks, Redis discovery, TLS.";

void lbo_defaults(lb_opts_t *o)
{
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
}

void lbo_table(lb_opts_t *o, cfg_opt_t *out)
{
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
        {"affinity", CFG_STR, &o->affinity, "query:NAME|header:NAME|cookie:NAME",
         "session affinity: the same key goes to the same worker while it is up and within "
         "--affinity-load-factor x the mean (consistent hashing with bounded loads; off)",
         0, 0},
        {"affinity-load-factor", CFG_STR, &o->affinity_factor, "F",
         "with --affinity, most connections a worker keeps taking its keys at, as a multiple "
         "of the mean (1.25; 1.0 to 100)",
         0, 0},
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
        {"grace-s", CFG_INT, &o->grace_s, "S",
         "on SIGTERM or a takeover, how long open tunnels may finish (10)", 0, 86400},
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
        {"check", CFG_BOOL, &o->check, NULL,
         "check the configuration (files, flags, certificates) and exit: 0 if it is valid, 1 "
         "with the reason if not; run before a reload",
         0, 0},
        {"control-socket", CFG_STR, &o->control_socket, "PATH",
         "unix socket a new lb connects to with --takeover to take this one's listeners "
         "(default none)",
         0, 0},
        {"takeover", CFG_STR, &o->takeover, "PATH",
         "start by taking the listeners of the lb whose --control-socket is PATH; it stops "
         "accepting once this one accepts, and ends after its tunnels (--grace-s)",
         0, 0},
        CFG_END,
    };
    _Static_assert(sizeof(opts) / sizeof(opts[0]) <= LBO_MAX, "raise LBO_MAX");
    memcpy(out, opts, sizeof(opts));
}

int lbo_is_loopback(const char *hostport)
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

int lbo_parse_backend(const char *spec, char *id, sock_addr_t *addr, unsigned *weight, char *err,
                      size_t errlen)
{
    char tmp[512], e2[SOCK_ERR_LEN];

    *weight = 1;
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
        *weight = (unsigned)w;
    }
    if (sock_parse_addr(hp, addr, e2, sizeof(e2)) < 0) {
        snprintf(err, errlen, "--backend '%s': %s", spec, e2);
        return -1;
    }
    memcpy(id, tmp, (size_t)(eq - tmp) + 1);
    return 0;
}

/* Whether the secret in path can be read (nothing is kept). */
static int lbo_check_secret(const char *flag, const char *path, char *err, size_t errlen)
{
    if (path == NULL || !*path)
        return 0;
    char *s = cfg_read_secret(flag, path, err, errlen);
    if (s == NULL)
        return -1;
    explicit_bzero(s, strlen(s));
    free(s);
    return 0;
}

int lbo_affinity(const lb_opts_t *o, aff_spec_t *spec, unsigned *factor_milli, char *err,
                 size_t errlen)
{
    memset(spec, 0, sizeof(*spec));
    spec->kind = AFF_NONE;
    *factor_milli = 1250;
    if (o->affinity != NULL && *o->affinity && aff_spec_parse(o->affinity, spec, err, errlen) < 0)
        return -1;
    if (o->affinity_factor != NULL && cfg_parse_milli("affinity-load-factor", o->affinity_factor,
                                                      1.0, 100.0, factor_milli, err, errlen) < 0)
        return -1;
    return 0;
}

int lbo_check(const lb_opts_t *o, char *err, size_t errlen)
{
    aff_spec_t aff;
    unsigned aff_milli;
    enum log_level lvl;
    enum log_format lfmt;
    char e2[512];

    if (log_parse_level(o->log_level, &lvl) < 0) {
        snprintf(err, errlen, "--log-level: unknown level '%s'", o->log_level);
        return -1;
    }
    if (log_parse_format(o->log_format, &lfmt) < 0) {
        snprintf(err, errlen, "--log-format: unknown format '%s' (text or json)", o->log_format);
        return -1;
    }
    if (o->id != NULL && !fleet_id_ok(o->id, strlen(o->id))) {
        snprintf(err, errlen, "--id: 1-63 characters of A-Z a-z 0-9 . _ : -");
        return -1;
    }
    /* hc_create() would refuse it, after a reload had already applied the
     * rest (or a takeover had taken the listeners). */
    if (o->health_path != NULL &&
        (o->health_path[0] != '/' || strpbrk(o->health_path, " \r\n") != NULL)) {
        snprintf(err, errlen, "--health-path: must start with / and hold no spaces: '%s'",
                 o->health_path);
        return -1;
    }
    if (be_algo_find(o->algo) == NULL) {
        snprintf(err, errlen, "--algo: unknown algorithm '%s'", o->algo);
        return -1;
    }
    if (lbo_affinity(o, &aff, &aff_milli, err, errlen) < 0)
        return -1;
    /* A certificate with no TLS listener would be silently unused: the
     * operator meant to serve TLS and would not be. */
    if (o->tls_listen.n == 0 && (o->cert != NULL || o->key != NULL)) {
        snprintf(err, errlen,
                 "--%s given without --tls-listen: add --tls-listen HOST:PORT, or drop --cert "
                 "and --key",
                 o->cert != NULL ? "cert" : "key");
        return -1;
    }
    if (o->tls_listen.n > 0 && (o->cert == NULL || o->key == NULL)) {
        snprintf(err, errlen, "--tls-listen needs --cert and --key");
        return -1;
    }
    /* Anyone who reaches a non-loopback admin API could drain every worker. */
    if (o->admin != NULL && *o->admin && !lbo_is_loopback(o->admin) &&
        (o->admin_token_file == NULL || !*o->admin_token_file)) {
        snprintf(err, errlen,
                 "--admin %s is not a loopback address: set --admin-token-file, or bind the "
                 "admin API to 127.0.0.1",
                 o->admin);
        return -1;
    }
    cidr_set_t tr = {0};
    for (size_t i = 0; i < o->trusted_proxies.n; i++) {
        if (cidr_set_add(&tr, o->trusted_proxies.v[i], e2, sizeof(e2)) < 0) {
            snprintf(err, errlen, "--trusted-proxies: %s", e2);
            cidr_set_free(&tr);
            return -1;
        }
    }
    cidr_set_free(&tr);
    /* Anyone could claim any client address: only named peers may. */
    if (o->accept_proxy && o->trusted_proxies.n == 0) {
        snprintf(err, errlen,
                 "--accept-proxy needs --trusted-proxies: the addresses of the load "
                 "balancers that send the PROXY header");
        return -1;
    }
    for (size_t i = 0; i < o->backend.n; i++) {
        char id[BE_ID_MAX], id2[BE_ID_MAX];
        sock_addr_t a;
        unsigned w;
        if (lbo_parse_backend(o->backend.v[i], id, &a, &w, err, errlen) < 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (lbo_parse_backend(o->backend.v[j], id2, &a, &w, e2, sizeof(e2)) == 0 &&
                strcmp(id, id2) == 0) {
                snprintf(err, errlen, "--backend '%s': duplicate id", o->backend.v[i]);
                return -1;
            }
    }
    route_t *r = route_create();
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int bad = 0;
    for (size_t i = 0; i < o->route.n && !bad; i++)
        bad = route_add_ws(r, o->route.v[i], err, errlen) < 0;
    for (size_t i = 0; i < o->proxy_http.n && !bad; i++)
        bad = route_add_http(r, o->proxy_http.v[i], err, errlen) < 0;
    bad = bad || route_finish(r, err, errlen) < 0;
    route_free(r);
    if (bad)
        return -1;
    if (lbo_check_secret("--admin-token-file", o->admin_token_file, err, errlen) < 0 ||
        lbo_check_secret("--upstream-secret-file", o->upstream_secret_file, err, errlen) < 0)
        return -1;
    return 0;
}

int lbo_list_eq(const cfg_list_t *a, const cfg_list_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0)
            return 0;
    return 1;
}

int lbo_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}
