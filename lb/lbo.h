/* lbo: the lb's options, as one table that can be parsed again.
 *
 * Startup, `lb --check` and SIGHUP all parse the --config file and the
 * command line into a fresh lb_opts_t through the same table and check it
 * with the same function, so a reload accepts exactly what a start accepts
 * and reports errors the same way ("lb.conf:3: unknown option 'foo'"). */
#ifndef LB_LBO_H
#define LB_LBO_H

#include <stddef.h>

#include "aff.h"
#include "cfg.h"
#include "rdo.h"
#include "sock.h"

typedef struct lb_opts {
    cfg_list_t listen, tls_listen, backend, trusted_proxies, route, proxy_http;
    char *cert, *key, *redis, *redis_prefix, *admin, *admin_token_file, *algo, *health_path,
        *log_level, *log_format, *upstream_secret_file, *id, *static_dir, *static_csp,
        *control_socket, *takeover, *affinity, *affinity_factor;
    long health_interval_ms, rise, fall, retries, threads, max_conns, timeout_head_ms,
        timeout_connect_ms, timeout_response_ms, timeout_idle_s, slowstart_ms, grace_s, max_head,
        limit_conns, limit_rate, limit_burst, static_max_file_kb, static_max_total_kb;
    long down_close_ms, ping_interval_s, ping_timeout_s; /* websocket-aware closes */
    int access_log, check, accept_proxy, metrics_legacy;
    rdo_t rdo; /* --redis-sentinel, --redis-password-file, ... */
} lb_opts_t;

/* Room for every option of the table, CFG_END included. */
#define LBO_MAX 80

/* Sets o's defaults (string defaults are literals until cfg_parse copies
 * them to the heap). */
void lbo_defaults(lb_opts_t *o);
/* Fills out[LBO_MAX] with the option table writing into o. */
void lbo_table(lb_opts_t *o, cfg_opt_t *out);
/* The --help summary. */
extern const char lbo_summary[];

/* Pure checks of a parsed set of options that need no running lb: names
 * (log level and format, algorithm), combinations (TLS, admin token on a
 * non-loopback admin), backend specs, trusted networks, files that must be
 * readable (certificate, key, token, secret). 0, or -1 with err. */
int lbo_check(const lb_opts_t *o, char *err, size_t errlen);

/* --affinity and --affinity-load-factor: the spec (kind AFF_NONE when
 * off) and the bound in thousandths of the mean (1250 by default). 0, or
 * -1 with err. */
int lbo_affinity(const lb_opts_t *o, aff_spec_t *spec, unsigned *factor_milli, char *err,
                 size_t errlen);

/* Parses a --backend value "ID=HOST:PORT[,weight=N]". id must hold
 * BE_ID_MAX bytes. 0, or -1 with err. */
int lbo_parse_backend(const char *spec, char *id, sock_addr_t *addr, unsigned *weight, char *err,
                      size_t errlen);

/* Whether "HOST:PORT" names a loopback address (127.0.0.0/8, ::1). */
int lbo_is_loopback(const char *hostport);

/* Whether two option lists hold the same values in the same order. */
int lbo_list_eq(const cfg_list_t *a, const cfg_list_t *b);
/* Whether two optional strings are equal (NULL equals NULL only). */
int lbo_str_eq(const char *a, const char *b);

#endif
