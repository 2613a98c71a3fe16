/* Unit tests for common/http: request/response heads, limits, helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <http_parser.h>

#include "http.h"

/* Parses a private heap copy of exactly len bytes, so that ASan reports any
 * read past what the caller handed over. */
static int parse_copy(int response, const char *s, size_t len, size_t max, http_head_t *h)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);
    int r =
        response ? http_parse_response(copy, len, max, h) : http_parse_request(copy, len, max, h);
    free(copy);
    return r;
}

static void assert_str(http_str_t s, const char *want)
{
    if (!http_str_eq(s, want))
        fail_msg("got \"%.*s\", want \"%s\"", (int)s.n, s.p ? s.p : "", want);
}

static void test_simple_get(void **state)
{
    const char req[] = "GET /index.html?x=1&y=2 HTTP/1.1\r\n"
                       "Host: example.com\r\n"
                       "User-Agent: t/1.0  \r\n"
                       "\r\n";
    http_head_t h;
    int r = http_parse_request(req, sizeof(req) - 1, 0, &h);
    assert_int_equal(r, (int)(sizeof(req) - 1));
    assert_int_equal(h.head_len, sizeof(req) - 1);
    assert_int_equal(h.method, HTTP_GET);
    assert_str(h.method_str, "GET");
    assert_str(h.url, "/index.html?x=1&y=2");
    assert_str(h.path, "/index.html");
    assert_int_equal(h.version_major, 1);
    assert_int_equal(h.version_minor, 1);
    assert_int_equal(h.nheaders, 2);
    assert_str(h.headers[0].name, "Host");
    assert_str(h.headers[0].value, "example.com");
    /* trailing whitespace is not part of the value */
    assert_str(h.headers[1].value, "t/1.0");
    assert_true(h.keep_alive);
    assert_false(h.upgrade);
    assert_false(h.is_websocket);
    assert_false(h.has_content_length);
    assert_false(h.chunked);
}

static void test_http10_and_post(void **state)
{
    const char req[] = "POST /submit HTTP/1.0\r\nContent-Length: 11\r\n\r\nhello world";
    http_head_t h;
    int r = http_parse_request(req, sizeof(req) - 1, 0, &h);
    assert_int_equal(r, (int)(sizeof(req) - 1 - 11));
    assert_int_equal(h.method, HTTP_POST);
    assert_int_equal(h.version_minor, 0);
    assert_false(h.keep_alive);
    assert_true(h.has_content_length);
    assert_int_equal(h.content_length, 11);

    const char chunked[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    r = http_parse_request(chunked, sizeof(chunked) - 1, 0, &h);
    assert_true(r > 0);
    assert_true(h.chunked);
    assert_string_equal(chunked + r, "5\r\nhello\r\n");
}

static void test_websocket_upgrade(void **state)
{
    /* frame bytes follow the head; they must not be counted or parsed */
    const char req[] = "GET /chat?room=1 HTTP/1.1\r\n"
                       "Host: server.example.com\r\n"
                       "Upgrade: WebSocket\r\n"
                       "Connection: keep-alive, Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "\r\n"
                       "\x81\x85\x37\xfa\x21\x3d";
    http_head_t h;
    int r = http_parse_request(req, sizeof(req) - 1, 0, &h);
    assert_int_equal(r, (int)(sizeof(req) - 1 - 6));
    assert_true(h.upgrade);
    assert_true(h.is_websocket);
    assert_str(h.path, "/chat");
    const http_str_t *key = http_header_get(&h, "sec-websocket-key");
    assert_non_null(key);
    assert_str(*key, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_true(http_header_has_token(&h, "connection", "keep-alive"));
    assert_true(http_header_has_token(&h, "Connection", "UPGRADE"));
    assert_true(http_header_has_token(&h, "upgrade", "websocket"));
    assert_false(http_header_has_token(&h, "Connection", "close"));
    assert_false(http_header_has_token(&h, "Connection", "keep"));
    assert_false(http_header_has_token(&h, "X-Missing", "upgrade"));

    /* Upgrade without Connection: upgrade is not an upgrade */
    const char half[] = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n";
    assert_true(http_parse_request(half, sizeof(half) - 1, 0, &h) > 0);
    assert_false(h.upgrade);
    assert_false(h.is_websocket);

    /* an upgrade to something else is not a websocket */
    const char h2c[] = "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
    assert_true(http_parse_request(h2c, sizeof(h2c) - 1, 0, &h) > 0);
    assert_true(h.upgrade);
    assert_false(h.is_websocket);
}

static void test_header_lookup(void **state)
{
    const char req[] = "GET / HTTP/1.1\r\n"
                       "X-Empty:\r\n"
                       "x-multi: a\r\n"
                       "Connection:close ,\t foo ,, bar\t\r\n"
                       "X-Multi: b\r\n"
                       "Connection: baz\r\n"
                       "\r\n";
    http_head_t h;
    assert_true(http_parse_request(req, sizeof(req) - 1, 0, &h) > 0);
    assert_int_equal(h.nheaders, 5);
    const http_str_t *v = http_header_get(&h, "x-empty");
    assert_non_null(v);
    assert_int_equal(v->n, 0);
    v = http_header_get(&h, "X-MULTI");
    assert_non_null(v);
    assert_str(*v, "a"); /* first one wins */
    assert_null(http_header_get(&h, "X-Mult"));
    assert_null(http_header_get(&h, "X-Multii"));
    /* token lists with odd whitespace, empty elements and repeated headers */
    assert_true(http_header_has_token(&h, "Connection", "close"));
    assert_true(http_header_has_token(&h, "Connection", "foo"));
    assert_true(http_header_has_token(&h, "Connection", "BAR"));
    assert_true(http_header_has_token(&h, "Connection", "baz"));
    assert_false(http_header_has_token(&h, "Connection", "fo"));
    assert_false(http_header_has_token(&h, "Connection", ""));
    assert_false(h.keep_alive);

    http_str_t s = {"Hello", 5};
    assert_true(http_str_eq(s, "Hello"));
    assert_false(http_str_eq(s, "hello"));
    assert_false(http_str_eq(s, "Hell"));
    assert_true(http_str_caseeq(s, "hELLO"));
    assert_false(http_str_caseeq(s, "hELLO!"));
    http_str_t empty = {NULL, 0};
    assert_true(http_str_eq(empty, ""));
    assert_true(http_str_caseeq(empty, ""));
}

/* Every strict prefix of a complete head must ask for more bytes. */
static void check_every_split(int response, const char *msg, size_t len, int want)
{
    http_head_t h;
    for (size_t i = 0; i < len; i++) {
        int r = parse_copy(response, msg, i, 0, &h);
        if (i < (size_t)want && r != HTTP_PARSE_AGAIN)
            fail_msg("prefix %zu of %zu: got %d, want AGAIN", i, len, r);
        if (i >= (size_t)want && r != want)
            fail_msg("prefix %zu of %zu: got %d, want %d", i, len, r, want);
    }
    assert_int_equal(parse_copy(response, msg, len, 0, &h), want);
}

static void test_incomplete_every_split(void **state)
{
    const char req[] = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nX-Long: 0123456789abcdef\r\n\r\n";
    check_every_split(0, req, sizeof(req) - 1, (int)(sizeof(req) - 1));

    const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    check_every_split(1, resp, sizeof(resp) - 1, (int)(sizeof(resp) - 1 - 3));
}

static char *make_big_request(size_t target)
{
    char *s = malloc(target + 64);
    assert_non_null(s);
    size_t n = (size_t)sprintf(s, "GET / HTTP/1.1\r\nX-Pad: ");
    while (n < target)
        s[n++] = 'a';
    memcpy(s + n, "\r\n\r\n", 5);
    return s;
}

static void test_too_large(void **state)
{
    http_head_t h;
    /* a complete head of 9000 bytes, default limit 8192 */
    char *big = make_big_request(9000);
    size_t len = strlen(big);
    assert_int_equal(http_parse_request(big, len, 0, &h), HTTP_PARSE_TOO_LARGE);
    /* an explicit, larger limit accepts it */
    assert_int_equal(http_parse_request(big, len, 16384, &h), (int)len);
    /* incomplete but already over the limit */
    assert_int_equal(http_parse_request(big, 8500, 0, &h), HTTP_PARSE_TOO_LARGE);
    /* incomplete and under the limit: wait */
    assert_int_equal(http_parse_request(big, 8000, 0, &h), HTTP_PARSE_AGAIN);
    /* exactly the limit and still incomplete: cannot fit any more */
    assert_int_equal(http_parse_request(big, 8192, 0, &h), HTTP_PARSE_TOO_LARGE);
    free(big);

    /* a head of exactly max_head bytes fits; one byte less of limit does not */
    const char req[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t rl = sizeof(req) - 1;
    assert_int_equal(http_parse_request(req, rl, rl, &h), (int)rl);
    assert_int_equal(http_parse_request(req, rl, rl - 1, &h), HTTP_PARSE_TOO_LARGE);
    assert_int_equal(http_parse_request(req, rl - 2, rl - 1, &h), HTTP_PARSE_AGAIN);
}

static char *make_headers(size_t count)
{
    char *s = malloc(32 + count * 24);
    assert_non_null(s);
    size_t n = (size_t)sprintf(s, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < count; i++)
        n += (size_t)sprintf(s + n, "X-H%zu: v%zu\r\n", i, i);
    strcpy(s + n, "\r\n");
    return s;
}

static void test_too_many(void **state)
{
    http_head_t h;
    char *ok = make_headers(HTTP_MAX_HEADERS);
    assert_int_equal(http_parse_request(ok, strlen(ok), 0, &h), (int)strlen(ok));
    assert_int_equal(h.nheaders, HTTP_MAX_HEADERS);
    assert_str(h.headers[HTTP_MAX_HEADERS - 1].name, "X-H63");
    assert_str(h.headers[HTTP_MAX_HEADERS - 1].value, "v63");
    free(ok);

    char *bad = make_headers(HTTP_MAX_HEADERS + 1);
    assert_int_equal(http_parse_request(bad, strlen(bad), 0, &h), HTTP_PARSE_TOO_MANY);
    /* even before the head is complete */
    assert_int_equal(http_parse_request(bad, strlen(bad) - 4, 0, &h), HTTP_PARSE_TOO_MANY);
    free(bad);
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "GET\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET / HTTQ/1.1\r\n\r\n",
        "GET / HTTP/1.x\r\n\r\n",
        "GET /\r\n\r\n", /* HTTP/0.9 */
        "BREW / HTTP/1.1\r\n\r\n",
        "get / HTTP/1.1\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "GET /\x7f HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        "GET / HTTP/1.1\r\n: novalue\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nX(y): z\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01"
        "b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", /* obs-fold */
        "GET / HTTP/1.1\r\nX:\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\n\tX: a\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        NULL,
    };
    http_head_t h;
    for (size_t i = 0; bad[i] != NULL; i++) {
        int r = parse_copy(0, bad[i], strlen(bad[i]), 0, &h);
        if (r != HTTP_PARSE_ERROR)
            fail_msg("case %zu (%s): got %d, want ERROR", i, bad[i], r);
    }
    /* a NUL inside a header value */
    const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    assert_int_equal(parse_copy(0, nul, sizeof(nul) - 1, 0, &h), HTTP_PARSE_ERROR);

    static const char *const bad_resp[] = {
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTQ/1.1 200 OK\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        NULL,
    };
    for (size_t i = 0; bad_resp[i] != NULL; i++) {
        int r = parse_copy(1, bad_resp[i], strlen(bad_resp[i]), 0, &h);
        if (r != HTTP_PARSE_ERROR)
            fail_msg("response case %zu: got %d, want ERROR", i, r);
    }
}

static void test_responses(void **state)
{
    http_head_t h;
    const char r101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                        "\r\n"
                        "\x81\x02hi";
    int r = http_parse_response(r101, sizeof(r101) - 1, 0, &h);
    assert_int_equal(r, (int)(sizeof(r101) - 1 - 4));
    assert_int_equal(h.status, 101);
    assert_str(h.reason, "Switching Protocols");
    assert_true(h.upgrade);
    assert_true(h.is_websocket);
    assert_str(*http_header_get(&h, "sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    const char r200[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
                        "hello";
    r = http_parse_response(r200, sizeof(r200) - 1, 0, &h);
    assert_int_equal(r, (int)(sizeof(r200) - 1 - 5));
    assert_int_equal(h.head_len, (size_t)r);
    assert_string_equal(r200 + r, "hello");
    assert_int_equal(h.status, 200);
    assert_str(h.reason, "OK");
    assert_true(h.has_content_length);
    assert_int_equal(h.content_length, 5);
    assert_true(h.keep_alive);

    const char r503[] = "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    r = http_parse_response(r503, sizeof(r503) - 1, 0, &h);
    assert_int_equal(r, (int)(sizeof(r503) - 1));
    assert_int_equal(h.status, 503);
    assert_str(h.reason, "Service Unavailable");
    assert_int_equal(h.content_length, 0);
    assert_true(h.has_content_length);
    assert_false(h.keep_alive);
    assert_int_equal(h.version_minor, 0);
}

static void test_reason(void **state)
{
    static const int codes[] = {101, 200, 204, 301, 302, 304, 400, 401, 403, 404, 405,
                                408, 409, 413, 414, 429, 431, 500, 501, 502, 503, 504};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = http_reason(codes[i]);
        if (strcmp(s, "Unknown") == 0)
            fail_msg("no reason for %d", codes[i]);
    }
    assert_string_equal(http_reason(404), "Not Found");
    assert_string_equal(http_reason(101), "Switching Protocols");
    assert_string_equal(http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_reason(599), "Unknown");
    assert_string_equal(http_reason(-1), "Unknown");
}

static void test_write_response(void **state)
{
    buf_t b = BUF_INIT;
    assert_int_equal(http_write_response(&b, 404, "text/plain", "not found\n", 10,
                                         "X-A: 1\r\nRetry-After: 5\r\n"),
                     0);
    http_head_t h;
    int r = http_parse_response(buf_head(&b), buf_size(&b), 0, &h);
    assert_true(r > 0);
    assert_int_equal(buf_size(&b), (size_t)r + 10);
    assert_memory_equal(buf_head(&b) + r, "not found\n", 10);
    assert_int_equal(h.status, 404);
    assert_str(h.reason, "Not Found");
    assert_true(h.has_content_length);
    assert_int_equal(h.content_length, 10);
    assert_false(h.keep_alive);
    assert_true(http_header_has_token(&h, "Connection", "close"));
    assert_str(*http_header_get(&h, "content-type"), "text/plain");
    assert_str(*http_header_get(&h, "x-a"), "1");
    assert_str(*http_header_get(&h, "retry-after"), "5");
    buf_free(&b);

    /* no content type, no body */
    assert_int_equal(http_write_response(&b, 503, NULL, NULL, 0, NULL), 0);
    r = http_parse_response(buf_head(&b), buf_size(&b), 0, &h);
    assert_int_equal(r, (int)buf_size(&b));
    assert_int_equal(h.status, 503);
    assert_null(http_header_get(&h, "Content-Type"));
    assert_true(h.has_content_length);
    assert_int_equal(h.content_length, 0);
    buf_free(&b);

    /* 204 carries neither Content-Length nor a body (RFC 7230 3.3.2) */
    assert_int_equal(http_write_response(&b, 204, NULL, "x", 1, NULL), 0);
    r = http_parse_response(buf_head(&b), buf_size(&b), 0, &h);
    assert_int_equal(r, (int)buf_size(&b));
    assert_false(h.has_content_length);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_http10_and_post),
        cmocka_unit_test(test_websocket_upgrade),
        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_incomplete_every_split),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_write_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
