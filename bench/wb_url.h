/* wb_url: ws:// and wss:// URLs for the load generator.
 *
 * Only what a benchmark needs: a numeric host (or "localhost"), an optional
 * port and a path. No DNS: the address is resolved here, once, before any
 * load starts, so the event loop never blocks on a lookup. */
#ifndef BENCH_WB_URL_H
#define BENCH_WB_URL_H

#include <stddef.h>

#include "sock.h"

#define WB_URL_MAX 1024

typedef struct wb_url {
    int tls;               /* wss:// */
    unsigned port;         /* explicit, or 80 / 443 */
    char host[256];        /* as written, without brackets */
    char host_hdr[300];    /* Host header value: host, plus ":port" when not the default */
    char path[WB_URL_MAX]; /* path and query, "/" when absent */
    sock_addr_t addr;      /* where to connect */
} wb_url_t;

/* Parses ws[s]://host[:port][/path[?query]] into u. Returns 0, or -1 with a
 * reason in err (userinfo, fragments, empty host, bad port, non-numeric host
 * and control characters are all rejected). */
int wb_url_parse(const char *s, wb_url_t *u, char *err, size_t errlen);

#endif
