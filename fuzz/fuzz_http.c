/* Fuzzes the HTTP head parser (common/http.c) the way the lb and the worker
 * use it: a head arriving in pieces is re-parsed from its first byte after
 * every read, so besides not crashing the parser must give the same answer
 * for a complete head whatever prefix came before, and every span it
 * returns must lie inside the buffer.
 *
 * Input: byte 0 selects request/response (bit 0) and a head limit (bits
 * 1-2); the rest is the bytes received. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"

/* Small limits reach the 431 paths with short inputs. */
static const size_t fz_limits[4] = {0, 32, 200, 1024};

/* A span must be empty or lie inside buf[0..len); reading every byte lets
 * ASan prove it. */
static void fz_span(const char *buf, size_t len, http_str_t s)
{
    if (s.n == 0)
        return;
    FZ_CHECK(s.p != NULL && s.p >= buf && s.n <= len && s.p - buf <= (ptrdiff_t)(len - s.n));
    unsigned acc = 0;
    for (size_t i = 0; i < s.n; i++)
        acc += (unsigned char)s.p[i];
    fz_sink += acc;
}

static int fz_parse(int response, const char *buf, size_t len, size_t max, http_head_t *h)
{
    return response ? http_parse_response(buf, len, max, h) : http_parse_request(buf, len, max, h);
}

/* Checks a successfully parsed head and calls every lookup on it. */
static void fz_check_head(int response, const char *buf, size_t len, size_t max, int r,
                          const http_head_t *h)
{
    size_t lim = max ? max : HTTP_DEFAULT_MAX_HEAD;
    FZ_CHECK(h->head_len == (size_t)r && h->head_len <= len && h->head_len <= lim);
    /* A head ends with an empty line, and CR only ever comes before LF. */
    size_t e = h->head_len;
    FZ_CHECK(buf[e - 1] == '\n');
    FZ_CHECK(e >= 2 &&
             (buf[e - 2] == '\n' || (e >= 3 && buf[e - 2] == '\r' && buf[e - 3] == '\n')));
    for (size_t i = 0; i < e; i++)
        FZ_CHECK(buf[i] != '\r' || (i + 1 < e && buf[i + 1] == '\n'));
    FZ_CHECK(h->nheaders <= HTTP_MAX_HEADERS);
    /* Everything the head points at lies inside the head itself. */
    size_t hl = h->head_len;
    fz_span(buf, hl, h->url);
    fz_span(buf, hl, h->path);
    fz_span(buf, hl, h->reason);
    FZ_CHECK(h->path.n <= h->url.n);
    for (size_t i = 0; i < h->nheaders; i++) {
        FZ_CHECK(h->headers[i].name.n > 0);
        fz_span(buf, hl, h->headers[i].name);
        fz_span(buf, hl, h->headers[i].value);
        /* RFC 7230 field-value: no control bytes but HTAB. */
        for (size_t k = 0; k < h->headers[i].value.n; k++) {
            unsigned char ch = (unsigned char)h->headers[i].value.p[k];
            FZ_CHECK((ch >= 0x20 || ch == '\t') && ch != 0x7f);
        }
        /* Names are looked up by the parser's own result. */
        char name[64];
        size_t n = h->headers[i].name.n < sizeof(name) - 1 ? h->headers[i].name.n : 0;
        if (n > 0) {
            memcpy(name, h->headers[i].name.p, n);
            name[n] = '\0';
            const http_str_t *v = http_header_get(h, name);
            FZ_CHECK(v != NULL);
            fz_span(buf, hl, *v);
        }
    }
    if (!response) {
        FZ_CHECK(h->method_str.p != NULL && strlen(h->method_str.p) == h->method_str.n);
        FZ_CHECK(h->url.n > 0);
    } else {
        FZ_CHECK(h->status >= 0 && h->status <= 999);
    }
    static const char *const names[] = {"Host",
                                        "Connection",
                                        "Upgrade",
                                        "Content-Length",
                                        "X-Forwarded-For",
                                        "Sec-WebSocket-Key",
                                        "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const http_str_t *v = http_header_get(h, names[i]);
        if (v != NULL) {
            fz_span(buf, hl, *v);
            fz_sink += (unsigned)http_str_eq(*v, "websocket") + (unsigned)http_str_caseeq(*v, "");
        }
    }
    int up = http_header_has_token(h, "Connection", "upgrade");
    int ws = http_header_has_token(h, "Upgrade", "websocket");
    fz_sink += (unsigned)http_header_has_token(h, "Connection", "close") +
               (unsigned)http_header_has_token(h, "Transfer-Encoding", "chunked") +
               (unsigned)http_header_has_token(h, "Connection", "");
    FZ_CHECK(h->upgrade == (up && http_header_get(h, "Upgrade") != NULL));
    FZ_CHECK(h->is_websocket == (h->upgrade && ws));
    fz_sink += (unsigned)http_str_eq(h->method_str, "GET") + (unsigned)http_str_eq(h->path, "/");
    fz_sink += (unsigned)strlen(http_reason(h->status));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int response = data[0] & 1;
    size_t max = fz_limits[(data[0] >> 1) & 3];
    size_t len = size - 1;
    /* An exact-size copy so that ASan catches a read one byte past it. */
    char *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, len);

    http_head_t h;
    int r = fz_parse(response, buf, len, max, &h);
    FZ_CHECK(r >= HTTP_PARSE_TOO_MANY);
    if (r > 0) {
        fz_check_head(response, buf, len, max, r, &h);
        /* A daemon may have read more than the head: the answer must not
         * depend on what follows it, nor on how the head arrived. */
        http_head_t h2;
        FZ_CHECK(fz_parse(response, buf, (size_t)r, max, &h2) == r);
        FZ_CHECK(h2.nheaders == h.nheaders && h2.status == h.status && h2.method == h.method);
        size_t cut = (size_t)r - 1 - (data[0] >> 3) % (size_t)r;
        int rp = fz_parse(response, buf, cut, max, &h2);
        FZ_CHECK(rp == HTTP_PARSE_AGAIN);
    } else if (r == HTTP_PARSE_AGAIN) {
        /* Incomplete and within the limit: no prefix can be an error. */
        size_t cut = len ? (data[0] >> 3) % len : 0;
        http_head_t h2;
        FZ_CHECK(fz_parse(response, buf, cut, max, &h2) == HTTP_PARSE_AGAIN);
    }
    free(buf);
    return 0;
}
