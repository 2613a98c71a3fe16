/* Unit tests for lb/route: which requests the public port proxies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"
#include "route.h"

/* Decides for "METHOD target" as a websocket upgrade or a plain request. */
static enum route_action decide(const route_t *r, const char *method, const char *target, int ws)
{
    char req[1024];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", method, target,
             ws ? "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                : "");
    http_head_t h;
    int n = http_parse_request(req, strlen(req), 0, &h);
    if (n <= 0)
        fail_msg("does not parse: %s", req);
    return route_decide(r, &h);
}

static void test_default_is_eval_websockets_only(void **state)
{
    assert_int_equal(decide(NULL, "GET", "/eval", 1), ROUTE_WS);
    assert_int_equal(decide(NULL, "GET", "/eval?token=1&x=/echo", 1), ROUTE_WS);
    assert_int_equal(decide(NULL, "GET", "/echo", 1), ROUTE_NONE);
    assert_int_equal(decide(NULL, "GET", "/eval/", 1), ROUTE_NONE);
    assert_int_equal(decide(NULL, "GET", "/EVAL", 1), ROUTE_NONE);
    assert_int_equal(decide(NULL, "POST", "/eval", 1), ROUTE_NONE);
    /* Plain requests, the workers' own endpoints included: not proxied. */
    assert_int_equal(decide(NULL, "GET", "/eval", 0), ROUTE_NONE);
    assert_int_equal(decide(NULL, "GET", "/metrics", 0), ROUTE_NONE);
    assert_int_equal(decide(NULL, "GET", "/healthz", 0), ROUTE_NONE);

    route_t *r = route_create();
    char err[256];
    assert_int_equal(route_finish(r, err, sizeof(err)), 0);
    assert_int_equal(decide(r, "GET", "/eval", 1), ROUTE_WS);
    assert_int_equal(decide(r, "GET", "/metrics", 0), ROUTE_NONE);
    route_free(r);
}

static void test_routes_and_prefixes(void **state)
{
    route_t *r = route_create();
    char err[256];
    assert_int_equal(route_add_ws(r, "/eval", err, sizeof(err)), 0);
    assert_int_equal(route_add_ws(r, "/echo", err, sizeof(err)), 0);
    assert_int_equal(route_add_ws(r, "/echo", err, sizeof(err)), 0); /* twice: once */
    assert_int_equal(route_add_http(r, "/api/", err, sizeof(err)), 0);
    assert_int_equal(route_add_http(r, "/status", err, sizeof(err)), 0);
    assert_int_equal(route_finish(r, err, sizeof(err)), 0);

    assert_int_equal(decide(r, "GET", "/echo", 1), ROUTE_WS);
    assert_int_equal(decide(r, "GET", "/eval", 1), ROUTE_WS);
    assert_int_equal(decide(r, "GET", "/api", 0), ROUTE_HTTP);
    assert_int_equal(decide(r, "POST", "/api/v1/x?y=../z", 0), ROUTE_HTTP);
    assert_int_equal(decide(r, "GET", "/api/", 0), ROUTE_HTTP);
    assert_int_equal(decide(r, "GET", "/status", 0), ROUTE_HTTP);
    assert_int_equal(decide(r, "GET", "/apix", 0), ROUTE_NONE);
    assert_int_equal(decide(r, "GET", "/statusx/y", 0), ROUTE_NONE);
    assert_int_equal(decide(r, "GET", "/metrics", 0), ROUTE_NONE);
    /* A websocket under a plain prefix is not proxied. */
    assert_int_equal(decide(r, "GET", "/api/ws", 1), ROUTE_NONE);
    /* Paths a normalising backend could read as outside the prefix. */
    static const char *const tricks[] = {
        "/api/../metrics",
        "/api/./x",
        "/api/..",
        "/api//x",
        "/api/%2e%2e/metrics",
        "/api/%2E./metrics",
        "/api/x%2fy",
        "/api/%5c..%5cmetrics",
        "/api/..;/metrics",
        "/api;/x",
        "/api/%00",
        "/api/%252e%252e/x",
        "/api/%zz",
        "/api/x%",
        "/api/\xff",
    };
    for (size_t i = 0; i < sizeof(tricks) / sizeof(tricks[0]); i++)
        if (decide(r, "GET", tricks[i], 0) != ROUTE_NONE)
            fail_msg("%s was proxied", tricks[i]);
    /* Harmless escapes and dots inside names stay fine. */
    assert_int_equal(decide(r, "GET", "/api/a%20b/.well-known/x..y", 0), ROUTE_HTTP);
    route_free(r);

    /* "/" takes every clean path. */
    r = route_create();
    assert_int_equal(route_add_http(r, "/", err, sizeof(err)), 0);
    assert_int_equal(route_finish(r, err, sizeof(err)), 0);
    assert_int_equal(decide(r, "GET", "/", 0), ROUTE_HTTP);
    assert_int_equal(decide(r, "GET", "/metrics", 0), ROUTE_HTTP);
    assert_int_equal(decide(r, "GET", "/a/../b", 0), ROUTE_NONE);
    assert_int_equal(decide(r, "GET", "/echo", 1), ROUTE_NONE); /* not a --route */
    assert_int_equal(decide(r, "GET", "/eval", 1), ROUTE_WS);   /* the default one */
    route_free(r);
}

/* A hand-made head: the parser would refuse some of these bytes. */
static void test_raw_paths_never_match_prefixes(void **state)
{
    route_t *r = route_create();
    char err[256];
    assert_int_equal(route_add_http(r, "/", err, sizeof(err)), 0);
    static const char *const raw[] = {"/a\\..\\b", "/a\tb", "/a b", "", "x/y", "/a\"b"};
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        http_head_t h;
        memset(&h, 0, sizeof(h));
        h.method_str = (http_str_t){"GET", 3};
        h.path = h.url = (http_str_t){raw[i], strlen(raw[i])};
        enum route_action a = route_decide(r, &h);
        if (a != ROUTE_NONE) {
            route_free(r);
            fail_msg("%s was proxied", raw[i]);
        }
    }
    route_free(r);
}

static void test_bad_config_refused(void **state)
{
    route_t *r = route_create();
    char err[256];
    static const char *const bad[] = {"",    "eval", "/eval?x=1", "/a#b",     "/a/../b",
                                      "//a", "/a b", "/./a",      "/a/%2e%2e"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (route_add_ws(r, bad[i], err, sizeof(err)) == 0)
            fail_msg("--route '%s' accepted", bad[i]);
        assert_non_null(strstr(err, "--route"));
        if (route_add_http(r, bad[i], err, sizeof(err)) == 0)
            fail_msg("--proxy-http '%s' accepted", bad[i]);
        assert_non_null(strstr(err, "--proxy-http"));
    }
    char many[16];
    for (int i = 0; i < ROUTE_MAX; i++) {
        snprintf(many, sizeof(many), "/r%d", i);
        assert_int_equal(route_add_ws(r, many, err, sizeof(err)), 0);
    }
    assert_int_equal(route_add_ws(r, "/one-more", err, sizeof(err)), -1);
    route_free(r);
    route_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_is_eval_websockets_only),
        cmocka_unit_test(test_routes_and_prefixes),
        cmocka_unit_test(test_raw_paths_never_match_prefixes),
        cmocka_unit_test(test_bad_config_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
