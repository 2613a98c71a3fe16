/* http: request and response heads on top of http-parser.
 *
 * Every call re-parses the buffer from its first byte. Heads are a few
 * hundred bytes and are parsed once or twice per connection, so keeping no
 * parser state between reads is cheaper than the bookkeeping it would save,
 * and it lets every name and value be a plain pointer into the caller's
 * buffer: within one http_parser_execute() call each token is reported as a
 * contiguous span. */
#include "http.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>

/* Per-call state reachable from the parser callbacks through parser->data. */
typedef struct http_ctx {
    http_head_t *h;
    int last_cb;  /* which callback ran last: HTTP_CB_* */
    int done;     /* on_headers_complete ran */
    int too_many; /* a header past HTTP_MAX_HEADERS was seen */
} http_ctx_t;

enum { HTTP_CB_NONE = 0, HTTP_CB_FIELD, HTTP_CB_VALUE };

/* Grows a span with the next piece of the same token; pieces are adjacent in
 * the buffer because the whole buffer goes through one execute call. Returns
 * -1 when they are not (which only an obs-fold continuation produces). */
static int http_span_extend(http_str_t *s, const char *at, size_t n)
{
    if (s->p == NULL) {
        s->p = at;
        s->n = n;
        return 0;
    }
    if (s->p + s->n != at)
        return -1;
    s->n += n;
    return 0;
}

static int http_on_url(http_parser *p, const char *at, size_t n)
{
    http_ctx_t *c = p->data;
    return http_span_extend(&c->h->url, at, n);
}

static int http_on_status(http_parser *p, const char *at, size_t n)
{
    http_ctx_t *c = p->data;
    return http_span_extend(&c->h->reason, at, n);
}

/* RFC 7230 tchar. The packaged http-parser is built non-strict and lets a
 * space into header names ("Host : x"), which 3.2.4 says must be rejected. */
static int http_is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return 1;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int http_on_header_field(http_parser *p, const char *at, size_t n)
{
    http_ctx_t *c = p->data;
    http_head_t *h = c->h;

    for (size_t i = 0; i < n; i++)
        if (!http_is_tchar((unsigned char)at[i]))
            return -1;

    if (c->last_cb != HTTP_CB_FIELD) {
        if (h->nheaders == HTTP_MAX_HEADERS) {
            c->too_many = 1;
            return -1;
        }
        http_header_t *hd = &h->headers[h->nheaders++];
        hd->name.p = at;
        hd->name.n = n;
        /* A value that is empty may never be reported: point it just past
         * the name so it is still a valid (empty) span of the buffer. */
        hd->value.p = at + n;
        hd->value.n = 0;
        c->last_cb = HTTP_CB_FIELD;
        return 0;
    }
    c->last_cb = HTTP_CB_FIELD;
    return http_span_extend(&h->headers[h->nheaders - 1].name, at, n);
}

static int http_on_header_value(http_parser *p, const char *at, size_t n)
{
    http_ctx_t *c = p->data;
    http_header_t *hd = &c->h->headers[c->h->nheaders - 1];

    /* http-parser checks every byte of a value but the first against
     * RFC 7230 field-vchar; a control byte there would pass here and be
     * refused by the next parser once the lb merges it into a list. */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)at[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return -1;
    }
    if (n == 0) {
        /* An empty value is reported with a pointer already on the next
         * line; the span set up by the field callback stays. */
    } else if (c->last_cb == HTTP_CB_FIELD) {
        /* Only ':' and OWS may separate name and value; a line break means
         * the value started on a folded line. */
        for (const char *q = hd->name.p + hd->name.n; q < at; q++) {
            if (*q == '\r' || *q == '\n') {
                return -1;
            }
        }
        hd->value.p = at;
        hd->value.n = n;
    } else if (http_span_extend(&hd->value, at, n) < 0) {
        /* http-parser accepts obs-fold; RFC 7230 3.2.4 lets a server reject
         * it, and a folded value could not be a single span anyway. */
        return -1;
    }
    c->last_cb = HTTP_CB_VALUE;
    return 0;
}

static int http_on_headers_complete(http_parser *p)
{
    http_ctx_t *c = p->data;
    http_head_t *h = c->h;

    c->done = 1;
    h->method = p->method;
    h->status = p->status_code;
    h->version_major = p->http_major;
    h->version_minor = p->http_minor;
    h->has_content_length = (p->flags & F_CONTENTLENGTH) != 0;
    h->content_length = h->has_content_length ? p->content_length : 0;
    h->chunked = (p->flags & F_CHUNKED) != 0;
    h->keep_alive = http_should_keep_alive(p);
    /* Stop right here: whatever follows (body, websocket frames) is the
     * caller's, and pausing keeps http-parser from looking at it. */
    http_parser_pause(p, 1);
    return 0;
}

static void http_trim_values(http_head_t *h)
{
    /* http-parser drops leading OWS but keeps trailing OWS in a value. */
    for (size_t i = 0; i < h->nheaders; i++) {
        http_str_t *v = &h->headers[i].value;
        while (v->n > 0 && (v->p[v->n - 1] == ' ' || v->p[v->n - 1] == '\t'))
            v->n--;
    }
}

/* Shared body of http_parse_request/response; out is fully overwritten. */
static int http_parse(enum http_parser_type type, const char *data, size_t len, size_t max_head,
                      http_head_t *out)
{
    static const http_parser_settings settings = {
        .on_url = http_on_url,
        .on_status = http_on_status,
        .on_header_field = http_on_header_field,
        .on_header_value = http_on_header_value,
        .on_headers_complete = http_on_headers_complete,
    };
    http_parser parser;
    http_ctx_t ctx = {.h = out};

    memset(out, 0, sizeof(*out));
    if (max_head == 0)
        max_head = HTTP_DEFAULT_MAX_HEAD;
    /* Only the first max_head bytes can hold an acceptable head, so that is
     * all that is parsed; a head not finished by then is too large whether
     * or not the rest of it has arrived. */
    size_t n = len < max_head ? len : max_head;
    if (n == 0)
        return HTTP_PARSE_AGAIN;

    http_parser_init(&parser, type);
    parser.data = &ctx;
    size_t used = http_parser_execute(&parser, &settings, data, n);
    enum http_errno err = HTTP_PARSER_ERRNO(&parser);

    if (ctx.too_many)
        return HTTP_PARSE_TOO_MANY;
    if (ctx.done && err == HPE_PAUSED) {
        /* Paused inside on_headers_complete, execute reports the offset of
         * the final LF, which is still part of the head. */
        size_t head_len = used + 1;
        if (head_len > n || data[head_len - 1] != '\n' || head_len > (size_t)INT32_MAX)
            return HTTP_PARSE_ERROR;
        /* The non-strict parser takes CR plus any byte as a line end after
         * an empty header value, so "X:\rA\n" ends a head with no blank
         * line: headers the lb appends would then follow the end of the
         * head and reach the backend as body. RFC 7230 3.5: a bare CR is
         * invalid. */
        for (const char *q = memchr(data, '\r', head_len); q != NULL;
             q = memchr(q + 1, '\r', (size_t)(data + head_len - (q + 1)))) {
            if (q + 1 == data + head_len || q[1] != '\n')
                return HTTP_PARSE_ERROR;
        }
        /* The packaged parser is built non-strict and would take "HTTQ/1.1"
         * or an HTTP/0.9 request line; insist on the version token. */
        if (type == HTTP_REQUEST) {
            const char *v = out->url.p + out->url.n;
            if (out->url.p == NULL || (size_t)(data + n - v) < 6 || memcmp(v, " HTTP/", 6) != 0)
                return HTTP_PARSE_ERROR;
        } else {
            const char *v = data;
            while (v < data + n && (*v == '\r' || *v == '\n'))
                v++;
            if ((size_t)(data + n - v) < 5 || memcmp(v, "HTTP/", 5) != 0)
                return HTTP_PARSE_ERROR;
        }
        out->head_len = head_len;
        if (type == HTTP_REQUEST) {
            out->method_str.p = http_method_str((enum http_method)out->method);
            out->method_str.n = strlen(out->method_str.p);
            out->path = out->url;
            const char *q = memchr(out->url.p, '?', out->url.n);
            if (q != NULL)
                out->path.n = (size_t)(q - out->url.p);
        }
        http_trim_values(out);
        out->upgrade = http_header_has_token(out, "Connection", "upgrade") &&
                       http_header_get(out, "Upgrade") != NULL;
        out->is_websocket = out->upgrade && http_header_has_token(out, "Upgrade", "websocket");
        return (int)head_len;
    }
    if (err == HPE_HEADER_OVERFLOW)
        return HTTP_PARSE_TOO_LARGE;
    if (err != HPE_OK)
        return HTTP_PARSE_ERROR;
    return len >= max_head ? HTTP_PARSE_TOO_LARGE : HTTP_PARSE_AGAIN;
}

int http_parse_request(const char *data, size_t len, size_t max_head, http_head_t *out)
{
    return http_parse(HTTP_REQUEST, data, len, max_head, out);
}

int http_parse_response(const char *data, size_t len, size_t max_head, http_head_t *out)
{
    return http_parse(HTTP_RESPONSE, data, len, max_head, out);
}

static int http_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int http_mem_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (http_lower((unsigned char)a[i]) != http_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

int http_str_eq(http_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && (n == 0 || memcmp(s.p, lit, n) == 0);
}

int http_str_caseeq(http_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && http_mem_caseeq(s.p, lit, n);
}

const http_str_t *http_header_get(const http_head_t *h, const char *name)
{
    for (size_t i = 0; i < h->nheaders; i++)
        if (http_str_caseeq(h->headers[i].name, name))
            return &h->headers[i].value;
    return NULL;
}

/* Looks through every header called name (a list may be split over several
 * lines, RFC 7230 3.2.2) for one comma-separated element equal to token. */
int http_header_has_token(const http_head_t *h, const char *name, const char *token)
{
    size_t tlen = strlen(token);

    for (size_t i = 0; i < h->nheaders; i++) {
        if (!http_str_caseeq(h->headers[i].name, name))
            continue;
        const char *p = h->headers[i].value.p;
        const char *end = p + h->headers[i].value.n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *start = p;
            while (p < end && *p != ',')
                p++;
            const char *stop = p;
            while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
                stop--;
            if ((size_t)(stop - start) == tlen && tlen > 0 && http_mem_caseeq(start, token, tlen))
                return 1;
        }
    }
    return 0;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* Appends to b; on failure b may hold a partial response, so the caller
 * should drop the connection rather than send it. */
int http_write_response(buf_t *b, int status, const char *content_type, const char *body,
                        size_t body_len, const char *extra_headers)
{
    /* RFC 7230 3.3.2: no Content-Length (and so no body) on 1xx and 204. */
    int bodyless = (status >= 100 && status < 200) || status == 204;

    if (buf_printf(b, "HTTP/1.1 %d %s\r\n", status, http_reason(status)) < 0)
        return -1;
    if (content_type != NULL && buf_printf(b, "Content-Type: %s\r\n", content_type) < 0)
        return -1;
    if (!bodyless && buf_printf(b, "Content-Length: %zu\r\n", body_len) < 0)
        return -1;
    if (buf_append_str(b, "Connection: close\r\n") < 0)
        return -1;
    if (extra_headers != NULL && buf_append_str(b, extra_headers) < 0)
        return -1;
    if (buf_append(b, "\r\n", 2) < 0)
        return -1;
    if (!bodyless && body_len > 0 && buf_append(b, body, body_len) < 0)
        return -1;
    return 0;
}
