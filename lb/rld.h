/* rld: live reload of the lb's configuration (SIGHUP).
 *
 * The --config file and the original command line are parsed again into a
 * fresh set of options and checked whole (lbo_check, then the certificate)
 * before anything changes: a bad file changes nothing, logs why (with
 * file:line when the file is at fault) and counts in reload_failed. Then
 * what can change without binding anything is applied on the main thread:
 * static backends (added, removed, re-weighted, moved), the algorithm,
 * health checks, limits, timeouts, trusted proxies, the admin token, the
 * certificate and key, the log level and the access log. Open tunnels are
 * untouched; a removed backend's tunnels run until they end. What needs a
 * new process (listen addresses, threads, Redis, routes...) is logged as
 * waiting for a takeover. */
#ifndef LB_RLD_H
#define LB_RLD_H

#include <stddef.h>

#include "lb.h"

/* Registers the reload metrics in lb->reg and records generation 1 (the
 * start). 0, or -1 without memory. */
int rld_init(lb_t *lb);
/* Main thread: one reload. 0 when applied, -1 when refused (logged and
 * counted; nothing changed). */
int rld_reload(lb_t *lb);
/* Parses argc/argv (and its --config) into o through table (LBO_MAX
 * entries) and checks it. CFG_OK, CFG_EXIT (--help, --version), or CFG_ERR
 * with err. Call cfg_free(table) whatever it returns. */
int rld_parse(lb_opts_t *o, cfg_opt_t *table, int argc, char **argv, char *err, size_t errlen);
/* The proxy settings a reload may change, from lb's options, limiter and
 * trusted set: what start and every reload hand the proxy. */
void rld_px_tunables(const lb_t *lb, px_config_t *pc);
/* Main thread: old, the trusted set a reload replaced, is kept for
 * RLD_RETIRE_GRACE_MS (a proxy thread may be matching against it), and
 * those kept longer than that as of now_ms are freed: reloads that change
 * --trusted-proxies do not pile up sets. 0, or -1 without memory (old is
 * left to the caller). */
#define RLD_RETIRE_GRACE_MS 10000
int rld_retire_trusted(lb_t *lb, cidr_set_t *old, uint64_t now_ms);
/* Builds the trusted set of o (NULL when there is none). 0, or -1 with err. */
int rld_trusted(const lb_opts_t *o, cidr_set_t **out, char *err, size_t errlen);

#endif
