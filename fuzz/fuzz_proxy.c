/* Fuzzes the lb's request head rewriting (px_rewrite_head in lb/proxy.c) on
 * heads parsed by http_parse_request, as the data path does. Beyond not
 * crashing, the rewritten head must parse again, with the same request line
 * and the client's headers in the same order, minus those the backend must
 * be able to believe (X-Forwarded-For, X-Request-Id, X-Upstream-Secret,
 * X-Lb-Id, and X-Forwarded-Proto unless the client is a trusted proxy), followed by
 * exactly one X-Forwarded-For (the trusted client's list, then the client
 * address), X-Forwarded-Proto when the client's was not kept, X-Request-Id
 * and the lb's X-Upstream-Secret and X-Lb-Id when they are set. The bytes after the head
 * must follow unchanged, and what routes the request (upgrade, body
 * framing) must not change.
 *
 * Input: byte 0 selects the forwarding values (bits 0-1: client address,
 * bit 2: https, bit 3: trusted client, bit 4: upstream secret); the rest is
 * what the client sent. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "buf.h"
#include "http.h"
#include "proxy.h"

static const char *const fz_ips[4] = {"127.0.0.1", "10.200.30.4", "::1",
                                      "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"};

static int fz_spaneq(http_str_t a, http_str_t b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* Whether px_rewrite_head keeps a header of the client's. */
static int fz_kept(const http_header_t *hd, const px_fwd_t *fwd)
{
    if (http_str_caseeq(hd->name, "X-Forwarded-Proto"))
        return fwd->trusted && hd->value.n > 0;
    return !http_str_caseeq(hd->name, "X-Forwarded-For") &&
           !http_str_caseeq(hd->name, "X-Request-Id") &&
           !http_str_caseeq(hd->name, "X-Upstream-Secret") && !http_str_caseeq(hd->name, "X-Lb-Id");
}

/* The X-Forwarded-For value the backend must see. */
static void fz_expected_xff(const http_head_t *h, const px_fwd_t *fwd, buf_t *b)
{
    for (size_t i = 0; fwd->trusted && i < h->nheaders; i++) {
        const http_header_t *hd = &h->headers[i];
        if (http_str_caseeq(hd->name, "X-Forwarded-For") && hd->value.n > 0) {
            FZ_CHECK(buf_append(b, hd->value.p, hd->value.n) == 0);
            FZ_CHECK(buf_append_str(b, ", ") == 0);
        }
    }
    FZ_CHECK(buf_append_str(b, fwd->client_ip) == 0);
}

/* Checks that header j of h2 is name: value and returns j + 1. */
static size_t fz_expect(const http_head_t *h2, size_t j, const char *name, http_str_t value)
{
    FZ_CHECK(j < h2->nheaders);
    FZ_CHECK(http_str_eq(h2->headers[j].name, name));
    FZ_CHECK(fz_spaneq(h2->headers[j].value, value));
    return j + 1;
}

static http_str_t fz_lit(const char *s)
{
    http_str_t v = {s, strlen(s)};
    return v;
}

static void fz_check(const char *in, size_t len, const http_head_t *h, const px_fwd_t *fwd,
                     const buf_t *out)
{
    const char *o = buf_head(out);
    size_t olen = buf_size(out);
    size_t kept = 0;
    int have_proto = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        kept += fz_kept(&h->headers[i], fwd);
        have_proto |= fz_kept(&h->headers[i], fwd) &&
                      http_str_caseeq(h->headers[i].name, "X-Forwarded-Proto");
    }
    size_t added = 2 + !have_proto + (fwd->upstream_secret != NULL) + (fwd->lb_id != NULL);

    /* Past the header count limit the backend answers 431: the client's
     * doing, as the lb accepted the maximum the backend does. */
    http_head_t h2;
    int r2 = http_parse_request(o, olen, olen + 1, &h2);
    if (r2 == HTTP_PARSE_TOO_MANY) {
        FZ_CHECK(kept + added > HTTP_MAX_HEADERS);
        return;
    }
    FZ_CHECK(r2 > 0);
    /* What followed the head follows the new head, untouched. */
    size_t tail = len - h->head_len;
    FZ_CHECK(olen - (size_t)r2 == tail);
    FZ_CHECK(tail == 0 || memcmp(o + r2, in + h->head_len, tail) == 0);

    FZ_CHECK(h2.method == h->method && fz_spaneq(h2.url, h->url));
    FZ_CHECK(h2.version_major == h->version_major && h2.version_minor == h->version_minor);
    FZ_CHECK(h2.nheaders == kept + added);
    size_t j = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        if (!fz_kept(&h->headers[i], fwd))
            continue;
        FZ_CHECK(fz_spaneq(h2.headers[j].name, h->headers[i].name));
        FZ_CHECK(fz_spaneq(h2.headers[j].value, h->headers[i].value));
        j++;
    }
    buf_t xff = BUF_INIT;
    fz_expected_xff(h, fwd, &xff);
    http_str_t want = {buf_head(&xff), buf_size(&xff)};
    j = fz_expect(&h2, j, "X-Forwarded-For", want);
    buf_free(&xff);
    if (!have_proto)
        j = fz_expect(&h2, j, "X-Forwarded-Proto", fz_lit(fwd->proto));
    j = fz_expect(&h2, j, "X-Request-Id", fz_lit(fwd->request_id));
    if (fwd->upstream_secret != NULL)
        j = fz_expect(&h2, j, "X-Upstream-Secret", fz_lit(fwd->upstream_secret));
    if (fwd->lb_id != NULL)
        j = fz_expect(&h2, j, "X-Lb-Id", fz_lit(fwd->lb_id));
    FZ_CHECK(j == h2.nheaders);
    /* What decides the routing must not change either. */
    FZ_CHECK(h2.is_websocket == h->is_websocket && h2.upgrade == h->upgrade);
    FZ_CHECK(h2.has_content_length == h->has_content_length &&
             h2.content_length == h->content_length && h2.chunked == h->chunked);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    px_fwd_t fwd = {
        .client_ip = fz_ips[data[0] & 3],
        .proto = (data[0] & 4) ? "https" : "http",
        .request_id = "0123456789abcdef",
        .trusted = (data[0] >> 3) & 1,
        .upstream_secret = (data[0] & 16) ? "s3cr3t-t0ken" : NULL,
        .lb_id = (data[0] & 32) ? "lb-host-1234" : NULL,
    };
    size_t len = size - 1;
    char *in = malloc(len ? len : 1);
    if (in == NULL)
        return 0;
    memcpy(in, data + 1, len);

    http_head_t h;
    if (http_parse_request(in, len, 0, &h) > 0) {
        buf_t out = BUF_INIT;
        FZ_CHECK(px_rewrite_head(in, len, &h, &fwd, &out) == 0);
        fz_check(in, len, &h, &fwd, &out);
        buf_free(&out);
    }
    free(in);
    return 0;
}
