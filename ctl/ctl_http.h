/* ctl_http: a small blocking HTTP/1.1 client for the lbs' admin APIs.
 *
 * One request per connection (Connection: close), every step under one
 * deadline. The response head is parsed by common/http.c (http-parser);
 * the body is read by Content-Length, chunked encoding or to the end of
 * the stream, and is capped so a confused server cannot exhaust memory. */
#ifndef CTL_HTTP_H
#define CTL_HTTP_H

#include <stddef.h>

#include "buf.h"

#define CTL_HTTP_MAX_BODY (16u << 20)

/* An admin API base: "http://HOST:PORT[/PREFIX]". */
typedef struct ctl_url {
    char host[256];
    char port[8];
    char base[256]; /* path prefix without a trailing '/', "" for none */
    char text[600]; /* http://host:port/base, for messages */
} ctl_url_t;

/* Parses "http://HOST[:PORT][/PREFIX]" or "HOST:PORT" (port 80 by default;
 * IPv6 as [ADDR]). https is refused with a reason: the admin API speaks
 * plain HTTP. Returns 0, or -1 with err. */
int ctl_url_parse(const char *s, ctl_url_t *u, char *err, size_t errlen);

typedef struct ctl_http_resp {
    int status;
    buf_t body; /* decoded body; freed by ctl_http_resp_free() */
} ctl_http_resp_t;

/* Sends METHOD base+path with an empty body, and Authorization: Bearer
 * token when token is not NULL; waits for the whole answer until timeout_s
 * has passed. Returns 0 with any HTTP status in r (the caller judges it),
 * or -1 with err when no complete answer came (connect, timeout, a
 * malformed or oversized answer). r needs no init; free it either way. */
int ctl_http_request(const ctl_url_t *u, const char *method, const char *path, const char *token,
                     double timeout_s, ctl_http_resp_t *r, char *err, size_t errlen);
void ctl_http_resp_free(ctl_http_resp_t *r);

/* Pure: decodes a chunked body from p[0..n) into out. Returns 1 when the
 * last chunk and the trailer are complete, 0 when more bytes are needed,
 * -1 when it is malformed. out holds the body so far either way. */
int ctl_http_dechunk(const char *p, size_t n, buf_t *out);

/* Pure: percent-escapes s as one path segment (everything but A-Z a-z 0-9
 * - . _ ~). Returns 0, or -1 when out is too small. */
int ctl_http_escape(const char *s, char *out, size_t outlen);

#endif
