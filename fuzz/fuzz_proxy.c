/* Fuzzes the lb's request head rewriting (fwd_rewrite_head in lb/fwd.c) on
 * heads parsed by http_parse_request, as the data path does. Beyond not
 * crashing, the rewritten head must parse again, with the same request line
 * and, in the same order, exactly the client's headers that an independent
 * model of the rules (fwd.h) keeps, followed by the lb's lines in their
 * order with the values the model expects: X-Forwarded-For (a trusted
 * client's list, then the client address), X-Forwarded-Proto and X-Real-IP
 * unless a trusted client's were kept, Forwarded (a trusted client's list,
 * then this hop), X-Request-Id, X-Upstream-Secret and X-Lb-Id when set, and
 * Connection: close for a plain request. The bytes after the head must
 * follow unchanged (for a plain request, only its body), and what routes
 * the request (body framing, and the upgrade unless it is a plain request,
 * which must lose it) must not change.
 *
 * Input: byte 0 selects the forwarding values (bits 0-1: client address,
 * bit 2: https, bit 3: trusted client, bit 4: upstream secret, bit 5: lb id,
 * bit 6: plain request, bit 7: its body is the first 3 bytes after the
 * head, else none); the rest is what the client sent. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "buf.h"
#include "fwd.h"
#include "http.h"

static const char *const fz_ips[4] = {"127.0.0.1", "10.200.30.4", "::1",
                                      "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"};

static int fz_spaneq(http_str_t a, http_str_t b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* The model: lower-cased name with '_' read as '-' against a list. */
static int fz_is(const http_header_t *hd, const char *lit, int *alias)
{
    size_t n = strlen(lit);
    if (hd->name.n != n)
        return 0;
    int us = 0;
    for (size_t i = 0; i < n; i++) {
        char a = hd->name.p[i], b = lit[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (char)(b + 32);
        if (a == '_' && b == '-')
            us = 1;
        else if (a != b)
            return 0;
    }
    *alias = us;
    return 1;
}

static int fz_in(const http_header_t *hd, const char *const *names, int *alias)
{
    for (; *names; names++)
        if (fz_is(hd, *names, alias))
            return 1;
    return 0;
}

static const char *const fz_dropped[] = {"X-Forwarded-For",   "Forwarded", "X-Request-Id",
                                         "X-Upstream-Secret", "X-Lb-Id",   NULL};
static const char *const fz_ident[] = {
    "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Server",       "X-Forwarded-Prefix",
    "X-Client-IP",      "True-Client-IP",   "X-Cluster-Client-IP",      "CF-Connecting-IP",
    "Fastly-Client-IP", "Client-IP",        "X-Original-Forwarded-For", NULL};
static const char *const fz_hop[] = {"Connection", "Keep-Alive", "Proxy-Connection", "Upgrade",
                                     NULL};
static const char *const fz_xfp[] = {"X-Forwarded-Proto", NULL};
static const char *const fz_xri[] = {"X-Real-IP", NULL};

/* Whether the rules keep a header of the client's. */
static int fz_kept(const http_header_t *hd, const fwd_t *f)
{
    int alias = 0;
    if (fz_in(hd, fz_dropped, &alias))
        return 0;
    if (fz_in(hd, fz_xfp, &alias) || fz_in(hd, fz_xri, &alias))
        return !alias && f->trusted && hd->value.n > 0;
    if (fz_in(hd, fz_ident, &alias))
        return !alias && f->trusted;
    if (fz_in(hd, fz_hop, &alias))
        return !alias && !f->close;
    return 1;
}

/* A trusted client's list (every non-empty line of `name`) and ", ". */
static void fz_list(const http_head_t *h, const fwd_t *f, const char *name, buf_t *b)
{
    for (size_t i = 0; f->trusted && i < h->nheaders; i++) {
        int alias = 0;
        const http_header_t *hd = &h->headers[i];
        if (fz_is(hd, name, &alias) && !alias && hd->value.n > 0) {
            FZ_CHECK(buf_append(b, hd->value.p, hd->value.n) == 0);
            FZ_CHECK(buf_append_str(b, ", ") == 0);
        }
    }
}

/* Checks that header j of h2 is name: value and returns j + 1. */
static size_t fz_expect(const http_head_t *h2, size_t j, const char *name, http_str_t value)
{
    FZ_CHECK(j < h2->nheaders);
    FZ_CHECK(http_str_eq(h2->headers[j].name, name));
    FZ_CHECK(fz_spaneq(h2->headers[j].value, value));
    return j + 1;
}

static size_t fz_expect_buf(const http_head_t *h2, size_t j, const char *name, buf_t *b)
{
    http_str_t v = {buf_head(b), buf_size(b)};
    j = fz_expect(h2, j, name, v);
    buf_free(b);
    return j;
}

static http_str_t fz_lit(const char *s)
{
    http_str_t v = {s, strlen(s)};
    return v;
}

static void fz_check(const char *in, size_t len, const http_head_t *h, const fwd_t *f,
                     const buf_t *out)
{
    const char *o = buf_head(out);
    size_t olen = buf_size(out);
    size_t kept = 0;
    int have_proto = 0, have_real = 0, alias = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        int k = fz_kept(&h->headers[i], f);
        kept += k;
        have_proto |= k && fz_in(&h->headers[i], fz_xfp, &alias);
        have_real |= k && fz_in(&h->headers[i], fz_xri, &alias);
    }
    size_t added = 3 + !have_proto + !have_real + (f->upstream_secret != NULL) +
                   (f->lb_id != NULL) + (f->close != 0);

    /* Past the header count limit the backend answers 431: the lb checks
     * that itself before rewriting (px_route), with FWD_BASE_LINES. */
    FZ_CHECK(added <= FWD_BASE_LINES + 3);
    http_head_t h2;
    int r2 = http_parse_request(o, olen, olen + 1, &h2);
    if (r2 == HTTP_PARSE_TOO_MANY) {
        FZ_CHECK(kept + added > HTTP_MAX_HEADERS);
        return;
    }
    FZ_CHECK(r2 > 0);
    /* What followed the head follows the new head, untouched (a plain
     * request's body only). */
    size_t tail = len - h->head_len;
    if (f->close && tail > f->body_max)
        tail = f->body_max;
    FZ_CHECK(olen - (size_t)r2 == tail);
    FZ_CHECK(tail == 0 || memcmp(o + r2, in + h->head_len, tail) == 0);

    FZ_CHECK(h2.method == h->method && fz_spaneq(h2.url, h->url));
    FZ_CHECK(h2.version_major == h->version_major && h2.version_minor == h->version_minor);
    FZ_CHECK(h2.nheaders == kept + added);
    size_t j = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        if (!fz_kept(&h->headers[i], f))
            continue;
        FZ_CHECK(fz_spaneq(h2.headers[j].name, h->headers[i].name));
        FZ_CHECK(fz_spaneq(h2.headers[j].value, h->headers[i].value));
        j++;
    }
    buf_t b = BUF_INIT;
    fz_list(h, f, "X-Forwarded-For", &b);
    FZ_CHECK(buf_append_str(&b, f->client_ip) == 0);
    j = fz_expect_buf(&h2, j, "X-Forwarded-For", &b);
    if (!have_proto)
        j = fz_expect(&h2, j, "X-Forwarded-Proto", fz_lit(f->proto));
    if (!have_real)
        j = fz_expect(&h2, j, "X-Real-IP", fz_lit(f->client_ip));
    fz_list(h, f, "Forwarded", &b);
    int v6 = strchr(f->client_ip, ':') != NULL;
    FZ_CHECK(buf_printf(&b, "for=%s%s%s;proto=%s", v6 ? "\"[" : "", f->client_ip, v6 ? "]\"" : "",
                        f->proto) == 0);
    j = fz_expect_buf(&h2, j, "Forwarded", &b);
    j = fz_expect(&h2, j, "X-Request-Id", fz_lit(f->request_id));
    if (f->upstream_secret != NULL)
        j = fz_expect(&h2, j, "X-Upstream-Secret", fz_lit(f->upstream_secret));
    if (f->lb_id != NULL)
        j = fz_expect(&h2, j, "X-Lb-Id", fz_lit(f->lb_id));
    if (f->close)
        j = fz_expect(&h2, j, "Connection", fz_lit("close"));
    FZ_CHECK(j == h2.nheaders);
    /* What decides the routing must not change either; a plain request
     * cannot ask the backend for another protocol. */
    if (f->close)
        FZ_CHECK(!h2.upgrade && !h2.is_websocket && !h2.keep_alive);
    else
        FZ_CHECK(h2.is_websocket == h->is_websocket && h2.upgrade == h->upgrade);
    FZ_CHECK(h2.has_content_length == h->has_content_length &&
             h2.content_length == h->content_length && h2.chunked == h->chunked);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fwd_t f = {
        .client_ip = fz_ips[data[0] & 3],
        .proto = (data[0] & 4) ? "https" : "http",
        .request_id = "0123456789abcdef",
        .trusted = (data[0] >> 3) & 1,
        .upstream_secret = (data[0] & 16) ? "s3cr3t-t0ken" : NULL,
        .lb_id = (data[0] & 32) ? "lb-host-1234" : NULL,
        .close = (data[0] >> 6) & 1,
        .body_max = (data[0] & 128) ? 3 : 0,
    };
    size_t len = size - 1;
    char *in = malloc(len ? len : 1);
    if (in == NULL)
        return 0;
    memcpy(in, data + 1, len);

    http_head_t h;
    if (http_parse_request(in, len, 0, &h) > 0) {
        buf_t out = BUF_INIT;
        FZ_CHECK(fwd_rewrite_head(in, len, &h, &f, &out) == 0);
        fz_check(in, len, &h, &f, &out);
        buf_free(&out);
    }
    free(in);
    return 0;
}
