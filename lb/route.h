/* route: what the lb's public port proxies.
 *
 *   --route PATH        websocket upgrades (GET, Upgrade: websocket) whose
 *                       path is exactly PATH; the query string is ignored
 *                       for matching and passed through. Default: /eval.
 *   --proxy-http PREFIX plain requests whose path is PREFIX or lies under it
 *                       (at a segment boundary: /api matches /api and
 *                       /api/x, not /apix). Off by default.
 *
 * Everything else is answered 404 by the lb itself, so the workers'
 * /metrics, /healthz and /echo are not public unless named here. A path
 * that could mean something else to a backend that normalises it (dot
 * segments, "//", encoded slashes, dots or backslashes, ';' parameters,
 * bytes outside printable ASCII) never matches a prefix. */
#ifndef LB_ROUTE_H
#define LB_ROUTE_H

#include <stddef.h>

#include "http.h"

#define ROUTE_MAX     64  /* of each kind */
#define ROUTE_MAX_LEN 256 /* bytes of one path or prefix */

typedef struct route route_t;

enum route_action {
    ROUTE_NONE = 0, /* not proxied: the lb answers (404) */
    ROUTE_WS,       /* a websocket upgrade on a --route path */
    ROUTE_HTTP,     /* a plain request under a --proxy-http prefix */
};

route_t *route_create(void);
/* NULL is a no-op. */
void route_free(route_t *r);
/* Adds a --route path / a --proxy-http prefix; 0, or -1 with err. */
int route_add_ws(route_t *r, const char *path, char *err, size_t errlen);
int route_add_http(route_t *r, const char *prefix, char *err, size_t errlen);
/* With no --route given, /eval is the one websocket route. */
int route_finish(route_t *r, char *err, size_t errlen);

/* Pure: where a parsed request goes. r NULL = the defaults (/eval only). */
enum route_action route_decide(const route_t *r, const http_head_t *h);

#endif
