/* http: HTTP/1.1 request and response heads, parsed with http-parser.
 *
 * Only the head is parsed here: daemons read until a complete head is in
 * their buffer (http_parse_* says how many bytes it took) and decide
 * themselves what to do with any body or tunnel bytes that follow. Header
 * names and values are pointers into the caller's buffer, which must stay
 * unchanged while the head is in use. */
#ifndef COMMON_HTTP_H
#define COMMON_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HTTP_MAX_HEADERS      64
#define HTTP_DEFAULT_MAX_HEAD 8192

typedef struct http_str {
    const char *p;
    size_t n;
} http_str_t;

typedef struct http_header {
    http_str_t name;
    http_str_t value;
} http_header_t;

typedef struct http_head {
    /* request only */
    int method; /* enum http_method from http_parser.h */
    http_str_t method_str;
    http_str_t url;  /* as sent */
    http_str_t path; /* url without query string */
    /* response only */
    int status;
    http_str_t reason;
    /* both */
    int version_major, version_minor;
    http_header_t headers[HTTP_MAX_HEADERS];
    size_t nheaders;
    size_t head_len;         /* bytes of the head, including the final CRLFCRLF */
    uint64_t content_length; /* valid when has_content_length */
    int has_content_length;
    int chunked;      /* Transfer-Encoding: chunked */
    int keep_alive;   /* http_should_keep_alive() */
    int upgrade;      /* Connection: upgrade + Upgrade header present */
    int is_websocket; /* upgrade to "websocket" */
} http_head_t;

/* Results of http_parse_request/response (besides a positive head length). */
enum {
    HTTP_PARSE_AGAIN = 0,      /* incomplete: read more */
    HTTP_PARSE_ERROR = -1,     /* malformed: answer 400 */
    HTTP_PARSE_TOO_LARGE = -2, /* head over max_head: answer 431 */
    HTTP_PARSE_TOO_MANY = -3,  /* over HTTP_MAX_HEADERS: answer 431 */
};

/* Parses a request head from data[0..len). Returns its length (>0) when the
 * head is complete, or one of the HTTP_PARSE_* codes. A head longer than
 * max_head (0 = HTTP_DEFAULT_MAX_HEAD) is HTTP_PARSE_TOO_LARGE even if
 * incomplete. */
int http_parse_request(const char *data, size_t len, size_t max_head, http_head_t *out);
/* Same for a response head (from a backend or a health check). */
int http_parse_response(const char *data, size_t len, size_t max_head, http_head_t *out);

/* Case-insensitive lookup; returns NULL when absent. */
const http_str_t *http_header_get(const http_head_t *h, const char *name);
/* True when a comma-separated header (e.g. Connection) holds token,
 * case-insensitively. */
int http_header_has_token(const http_head_t *h, const char *name, const char *token);
int http_str_eq(http_str_t s, const char *lit);     /* exact */
int http_str_caseeq(http_str_t s, const char *lit); /* ASCII case-insensitive */

/* Standard reason phrase for a status ("Not Found"); "Unknown" otherwise. */
const char *http_reason(int status);
/* Appends a complete response with Content-Length and Connection: close,
 * e.g. http_write_response(b, 404, "text/plain", "not found\n", 10, NULL).
 * extra_headers, if not NULL, is inserted verbatim (each line ending CRLF). */
int http_write_response(buf_t *b, int status, const char *content_type, const char *body,
                        size_t body_len, const char *extra_headers);

#endif
