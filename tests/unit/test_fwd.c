/* Unit tests for lb/fwd: the request head the lb sends a backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "http.h"
#include "fwd.h"

static const fwd_t fwd = {.client_ip = "10.1.2.3", .proto = "https", .request_id = "abc123"};

/* Rewrites req (a complete head plus optional trailing bytes) into a NUL
 * terminated string in out; fails the test if the head does not parse. */
static void rewrite(const char *req, char *out, size_t outlen)
{
    http_head_t h;
    int r = http_parse_request(req, strlen(req), 0, &h);
    assert_true(r > 0);
    buf_t b = BUF_INIT;
    assert_int_equal(fwd_rewrite_head(req, strlen(req), &h, &fwd, &b), 0);
    assert_true(buf_size(&b) < outlen);
    memcpy(out, buf_head(&b), buf_size(&b));
    out[buf_size(&b)] = '\0';
    buf_free(&b);
}

static void test_adds_forwarded_headers(void **state)
{
    char out[1024];
    rewrite(
        "GET /eval?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        out, sizeof(out));
    assert_string_equal(out, "GET /eval?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nX-Forwarded-For: 10.1.2.3\r\n"
                             "X-Forwarded-Proto: https\r\nX-Real-IP: 10.1.2.3\r\n"
                             "Forwarded: for=10.1.2.3;proto=https\r\nX-Request-Id: abc123\r\n\r\n");
}

static void test_result_parses_with_same_headers(void **state)
{
    char out[1024];
    rewrite("GET / HTTP/1.1\r\nHost: a\r\nX-Custom:  spaced value \r\n\r\n", out, sizeof(out));
    http_head_t h;
    assert_int_equal(http_parse_request(out, strlen(out), 0, &h), (int)strlen(out));
    assert_true(http_str_eq(*http_header_get(&h, "X-Custom"), "spaced value"));
    assert_true(http_str_eq(*http_header_get(&h, "Host"), "a"));
    assert_true(http_str_eq(*http_header_get(&h, "X-Request-Id"), "abc123"));
    /* Untouched bytes stay byte for byte, trailing space included. */
    assert_non_null(strstr(out, "X-Custom:  spaced value \r\n"));
}

static void test_replaces_client_xff(void **state)
{
    char out[1024];
    /* An untrusted client's X-Forwarded-For is a lie until proven otherwise. */
    rewrite("GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: a\r\n"
            "x-forwarded-for: 2.2.2.2, 3.3.3.3\r\n\r\n",
            out, sizeof(out));
    assert_non_null(strstr(out, "\r\nX-Forwarded-For: 10.1.2.3\r\n"));
    assert_null(strstr(out, "1.1.1.1"));
    assert_null(strstr(out, "2.2.2.2"));
    const char *first = strcasestr(out, "x-forwarded-for");
    assert_null(strcasestr(first + 1, "x-forwarded-for"));
}

/* Like rewrite() with explicit forwarding values. */
static void rewrite_fwd(const char *req, const fwd_t *f, char *out, size_t outlen)
{
    http_head_t h;
    assert_true(http_parse_request(req, strlen(req), 0, &h) > 0);
    buf_t b = BUF_INIT;
    assert_int_equal(fwd_rewrite_head(req, strlen(req), &h, f, &b), 0);
    assert_true(buf_size(&b) < outlen);
    memcpy(out, buf_head(&b), buf_size(&b));
    out[buf_size(&b)] = '\0';
    buf_free(&b);
}

static void test_trusted_proxy_merges_xff_keeps_proto(void **state)
{
    char out[1024];
    fwd_t t = fwd;
    t.trusted = 1;
    t.proto = "http";
    rewrite_fwd("GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: a\r\n"
                "x-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: https\r\n"
                "X-Request-Id: theirs\r\n\r\n",
                &t, out, sizeof(out));
    assert_non_null(strstr(out, "\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3\r\n"));
    /* Exactly one XFF line survives. */
    const char *first = strcasestr(out, "x-forwarded-for");
    assert_null(strcasestr(first + 1, "x-forwarded-for"));
    /* The proxy terminated TLS: its scheme stands, ours is not added. */
    assert_non_null(strstr(out, "X-Forwarded-Proto: https\r\n"));
    assert_null(strstr(out, "X-Forwarded-Proto: http\r\n"));
    /* The request id is always the lb's. */
    assert_null(strstr(out, "theirs"));
    assert_non_null(strstr(out, "X-Request-Id: abc123\r\n"));

    /* A trusted proxy that sends nothing gets the same headers as anyone. */
    rewrite_fwd("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &t, out, sizeof(out));
    assert_string_equal(out, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.1.2.3\r\n"
                             "X-Forwarded-Proto: http\r\nX-Real-IP: 10.1.2.3\r\n"
                             "Forwarded: for=10.1.2.3;proto=http\r\nX-Request-Id: abc123\r\n\r\n");
}

static void test_upstream_secret(void **state)
{
    char out[1024];
    fwd_t t = fwd;
    /* A client's own X-Upstream-Secret never reaches a worker... */
    rewrite_fwd("GET /eval HTTP/1.1\r\nX-Upstream-Secret: guess\r\nHost: a\r\n"
                "x-upstream-secret: again\r\n\r\n",
                &t, out, sizeof(out));
    assert_null(strcasestr(out, "upstream-secret"));
    /* ...and with one configured, exactly the lb's does. */
    t.upstream_secret = "s3cr3t";
    rewrite_fwd("GET /eval HTTP/1.1\r\nX-Upstream-Secret: guess\r\nHost: a\r\n\r\nxyz", &t, out,
                sizeof(out));
    assert_string_equal(out, "GET /eval HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.1.2.3\r\n"
                             "X-Forwarded-Proto: https\r\nX-Real-IP: 10.1.2.3\r\n"
                             "Forwarded: for=10.1.2.3;proto=https\r\nX-Request-Id: abc123\r\n"
                             "X-Upstream-Secret: s3cr3t\r\n\r\nxyz");
}

/* The lb's id goes to the workers (per-lb counts); a client's X-Lb-Id could
 * skew another lb's count, so it never passes. */
static void test_lb_id(void **state)
{
    char out[1024];
    fwd_t t = fwd;
    t.lb_id = "lb-7";
    t.upstream_secret = "s";
    rewrite_fwd("GET /eval HTTP/1.1\r\nX-Lb-Id: other\r\nHost: a\r\nx-lb-id: x\r\n\r\n", &t, out,
                sizeof(out));
    assert_string_equal(out, "GET /eval HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.1.2.3\r\n"
                             "X-Forwarded-Proto: https\r\nX-Real-IP: 10.1.2.3\r\n"
                             "Forwarded: for=10.1.2.3;proto=https\r\nX-Request-Id: abc123\r\n"
                             "X-Upstream-Secret: s\r\nX-Lb-Id: lb-7\r\n\r\n");
    t.lb_id = NULL;
    rewrite_fwd("GET / HTTP/1.1\r\nX-Lb-Id: other\r\n\r\n", &t, out, sizeof(out));
    assert_null(strcasestr(out, "x-lb-id"));
}

static void test_replaces_spoofed_proto_and_id(void **state)
{
    char out[1024];
    rewrite("GET / HTTP/1.1\r\nX-Forwarded-Proto: http\r\nX-Request-Id: evil\r\nHost: a\r\n\r\n",
            out, sizeof(out));
    assert_null(strstr(out, "evil"));
    assert_null(strstr(out, "Proto: http\r"));
    assert_non_null(strstr(out, "X-Forwarded-Proto: https\r\n"));
    assert_non_null(strstr(out, "Host: a\r\n"));
}

static void test_keeps_trailing_bytes(void **state)
{
    char out[1024];
    /* Bytes after the head (a body, or frames sent early) follow unchanged. */
    rewrite("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", out, sizeof(out));
    size_t n = strlen(out);
    assert_true(n > 9);
    assert_string_equal(out + n - 9, "\r\n\r\nhello");
    assert_non_null(strstr(out, "Content-Length: 5\r\n"));
}

/* A plain request is one per connection: the backend is told to close, the
 * client cannot ask for another protocol, and only the request's own body
 * passes (what follows it could be a second, unrouted request). */
static void test_plain_request_closes(void **state)
{
    char out[1024];
    fwd_t t = fwd;
    t.close = 1;
    t.body_max = 5;
    rewrite_fwd("POST /api HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
                "Upgrade: h2c\r\nKeep-Alive: 300\r\nproxy-connection: x\r\n"
                "Content-Length: 5\r\n\r\nhelloGET /metrics HTTP/1.1\r\n\r\n",
                &t, out, sizeof(out));
    assert_string_equal(out, "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                             "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n"
                             "X-Real-IP: 10.1.2.3\r\nForwarded: for=10.1.2.3;proto=https\r\n"
                             "X-Request-Id: abc123\r\nConnection: close\r\n\r\nhello");
    t.body_max = 0;
    rewrite_fwd("GET /api HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n", &t, out, sizeof(out));
    assert_null(strstr(out, "metrics"));
}

/* X-Real-IP and Forwarded follow the trusted-proxy rule of X-Forwarded-For. */
static void test_real_ip_and_forwarded(void **state)
{
    char out[2048];
    static const char spoof[] = "GET / HTTP/1.1\r\nX-Real-IP: 6.6.6.6\r\nHost: a\r\n"
                                "Forwarded: for=6.6.6.6;proto=https\r\n"
                                "forwarded: for=7.7.7.7\r\nx-real-ip: 7.7.7.7\r\n\r\n";
    rewrite(spoof, out, sizeof(out));
    assert_null(strstr(out, "6.6.6.6"));
    assert_null(strstr(out, "7.7.7.7"));
    assert_string_equal(out, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.1.2.3\r\n"
                             "X-Forwarded-Proto: https\r\nX-Real-IP: 10.1.2.3\r\n"
                             "Forwarded: for=10.1.2.3;proto=https\r\nX-Request-Id: abc123\r\n\r\n");
    /* From a trusted proxy: its X-Real-IP stands, its Forwarded list is
     * extended with this hop (an IPv6 node quoted and bracketed). */
    fwd_t t = fwd;
    t.trusted = 1;
    t.client_ip = "2001:db8::7";
    rewrite_fwd(spoof, &t, out, sizeof(out));
    assert_string_equal(out, "GET / HTTP/1.1\r\nX-Real-IP: 6.6.6.6\r\nHost: a\r\n"
                             "x-real-ip: 7.7.7.7\r\nX-Forwarded-For: 2001:db8::7\r\n"
                             "X-Forwarded-Proto: https\r\n"
                             "Forwarded: for=6.6.6.6;proto=https, for=7.7.7.7, "
                             "for=\"[2001:db8::7]\";proto=https\r\nX-Request-Id: abc123\r\n\r\n");
    /* A trusted proxy that names nobody gets the lb's view. */
    rewrite_fwd("GET / HTTP/1.1\r\nX-Real-IP:\r\n\r\n", &t, out, sizeof(out));
    assert_non_null(strstr(out, "\r\nX-Real-IP: 2001:db8::7\r\n"));
    assert_non_null(strstr(out, "\r\nForwarded: for=\"[2001:db8::7]\";proto=https\r\n"));
}

/* Other headers that name the client or the original request pass only
 * from a trusted proxy; underscore spellings of the lb's names never do. */
static void test_identity_headers_and_underscores(void **state)
{
    char out[2048];
    static const char req[] =
        "GET / HTTP/1.1\r\nX-Forwarded-Host: evil\r\nTrue-Client-IP: 6.6.6.6\r\n"
        "CF-Connecting-IP: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\n"
        "x_real_ip: 6.6.6.6\r\nX_Request_Id: evil\r\n"
        "X-Forwarded-Port: 1\r\nX_Custom: kept\r\nHost: a\r\n\r\n";
    rewrite(req, out, sizeof(out));
    assert_null(strstr(out, "6.6.6.6"));
    assert_null(strstr(out, "evil"));
    assert_null(strstr(out, "X-Forwarded-Port"));
    assert_non_null(strstr(out, "\r\nX_Custom: kept\r\n"));
    fwd_t t = fwd;
    t.trusted = 1;
    rewrite_fwd(req, &t, out, sizeof(out));
    assert_non_null(strstr(out, "\r\nX-Forwarded-Host: evil\r\n"));
    assert_non_null(strstr(out, "\r\nTrue-Client-IP: 6.6.6.6\r\n"));
    assert_non_null(strstr(out, "\r\nX-Forwarded-Port: 1\r\n"));
    /* Underscore spellings are dropped even from a trusted proxy, and are
     * not merged into the lists. */
    assert_null(strstr(out, "X_Forwarded_For"));
    assert_null(strstr(out, "x_real_ip"));
    assert_non_null(strstr(out, "\r\nX-Forwarded-For: 10.1.2.3\r\n"));
}

static void test_no_headers_and_leading_blank_lines(void **state)
{
    char out[1024];
    rewrite("\r\nGET / HTTP/1.0\r\n\r\n", out, sizeof(out));
    assert_string_equal(out, "GET / HTTP/1.0\r\nX-Forwarded-For: 10.1.2.3\r\n"
                             "X-Forwarded-Proto: https\r\nX-Real-IP: 10.1.2.3\r\n"
                             "Forwarded: for=10.1.2.3;proto=https\r\nX-Request-Id: abc123\r\n\r\n");
}

static void test_bare_lf_lines(void **state)
{
    char out[1024];
    rewrite("GET / HTTP/1.1\nHost: a\nX-Request-Id: z\n\n", out, sizeof(out));
    assert_non_null(strstr(out, "Host: a\n"));
    assert_null(strstr(out, "X-Request-Id: z"));
    http_head_t h;
    assert_true(http_parse_request(out, strlen(out), 0, &h) > 0);
}

static void test_bad_head_len_rejected(void **state)
{
    http_head_t h;
    memset(&h, 0, sizeof(h));
    buf_t b = BUF_INIT;
    assert_int_equal(fwd_rewrite_head("GET", 3, &h, &fwd, &b), -1);
    h.head_len = 10; /* longer than the data */
    assert_int_equal(fwd_rewrite_head("GET", 3, &h, &fwd, &b), -1);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adds_forwarded_headers),
        cmocka_unit_test(test_result_parses_with_same_headers),
        cmocka_unit_test(test_replaces_client_xff),
        cmocka_unit_test(test_trusted_proxy_merges_xff_keeps_proto),
        cmocka_unit_test(test_upstream_secret),
        cmocka_unit_test(test_lb_id),
        cmocka_unit_test(test_replaces_spoofed_proto_and_id),
        cmocka_unit_test(test_keeps_trailing_bytes),
        cmocka_unit_test(test_plain_request_closes),
        cmocka_unit_test(test_real_ip_and_forwarded),
        cmocka_unit_test(test_identity_headers_and_underscores),
        cmocka_unit_test(test_no_headers_and_leading_blank_lines),
        cmocka_unit_test(test_bare_lf_lines),
        cmocka_unit_test(test_bad_head_len_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
