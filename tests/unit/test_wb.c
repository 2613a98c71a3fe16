/* Unit tests for the load generator's pure parts: URL parsing and the
 * latency histogram. The unit-test build links common/, worker/ and lb/
 * objects only, so the bench sources are included directly (h2o style). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "wb_url.c"
#include "wb_hist.c"

static void parse_ok(const char *s, wb_url_t *u)
{
    char err[256] = "";
    int rc = wb_url_parse(s, u, err, sizeof(err));
    if (rc != 0)
        fail_msg("'%s' rejected: %s", s, err);
}

static void parse_bad(const char *s)
{
    wb_url_t u;
    char err[256] = "";
    if (wb_url_parse(s, &u, err, sizeof(err)) == 0)
        fail_msg("'%s' accepted", s ? s : "(null)");
    assert_true(err[0] != '\0');
}

static void test_url_plain(void **state)
{
    wb_url_t u;
    parse_ok("ws://127.0.0.1:9001/echo", &u);
    assert_int_equal(u.tls, 0);
    assert_int_equal(u.port, 9001);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.host_hdr, "127.0.0.1:9001");
    assert_string_equal(u.path, "/echo");
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&u.addr.ss;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 9001);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
}

static void test_url_defaults_and_tls(void **state)
{
    wb_url_t u;
    parse_ok("wss://localhost/eval?x=1", &u);
    assert_int_equal(u.tls, 1);
    assert_int_equal(u.port, 443);
    assert_string_equal(u.host_hdr, "localhost"); /* default port is not repeated */
    assert_string_equal(u.path, "/eval?x=1");
    parse_ok("WS://127.0.0.2", &u);
    assert_int_equal(u.tls, 0);
    assert_int_equal(u.port, 80);
    assert_string_equal(u.path, "/");
    parse_ok("ws://127.0.0.1:8080?a=b", &u);
    assert_string_equal(u.path, "/?a=b");
    parse_ok("wss://127.0.0.1:443/", &u);
    assert_string_equal(u.host_hdr, "127.0.0.1");
}

static void test_url_ipv6(void **state)
{
    wb_url_t u;
    parse_ok("ws://[::1]:8080/x", &u);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.host_hdr, "[::1]:8080");
    assert_int_equal(u.addr.ss.ss_family, AF_INET6);
    parse_ok("ws://[::1]/", &u);
    assert_string_equal(u.host_hdr, "[::1]");
    assert_int_equal(u.port, 80);
}

static void test_url_rejects(void **state)
{
    parse_bad(NULL);
    parse_bad("");
    parse_bad("http://127.0.0.1/");
    parse_bad("ws://");
    parse_bad("ws:///path");
    parse_bad("ws://:80/");
    parse_bad("ws://127.0.0.1:0/");
    parse_bad("ws://127.0.0.1:65536/");
    parse_bad("ws://127.0.0.1:/");
    parse_bad("ws://127.0.0.1:12ab/");
    parse_bad("ws://127.0.0.1:-1/");
    parse_bad("ws://example.com/"); /* no DNS */
    parse_bad("ws://127.1/");       /* shorthand is not a numeric address */
    parse_bad("ws://user@127.0.0.1/");
    parse_bad("ws://127.0.0.1/#frag");
    parse_bad("ws://127.0.0.1/a b");
    parse_bad("ws://127.0.0.1/a\r\nX: y");
    parse_bad("ws://[::1/");
    parse_bad("ws://[::1]x/");
    parse_bad("ws://[nothex]:80/");
}

static void test_url_too_long(void **state)
{
    char s[2 * WB_URL_MAX];
    strcpy(s, "ws://127.0.0.1:1/");
    size_t n = strlen(s);
    memset(s + n, 'a', sizeof(s) - n - 1);
    s[sizeof(s) - 1] = '\0';
    parse_bad(s);
}

static void test_hist_buckets_cover_values(void **state)
{
    /* Every value lands in a bucket whose range contains it, buckets are in
     * order, and each is at most 1/64 of its values wide. */
    size_t last = 0;
    for (uint64_t v = 0; v < 2000000; v += (v < 5000 ? 1 : v / 997)) {
        size_t i = wb_hist_index(v);
        assert_true(i < WB_HIST_BUCKETS);
        assert_true(i >= last);
        last = i;
        assert_true(wb_hist_lowest(i) <= v);
        assert_true(wb_hist_highest(i) >= v);
        uint64_t width = wb_hist_highest(i) - wb_hist_lowest(i) + 1;
        assert_true(width == 1 || width * 64 <= wb_hist_lowest(i) * 2);
    }
    /* Bucket boundaries meet exactly. */
    for (size_t i = 1; i < WB_HIST_BUCKETS; i++)
        assert_int_equal(wb_hist_lowest(i), wb_hist_highest(i - 1) + 1);
    assert_true(wb_hist_index(WB_HIST_MAX_VALUE) < WB_HIST_BUCKETS);
    assert_true(wb_hist_index(UINT64_MAX) < WB_HIST_BUCKETS);
}

static void assert_near(uint64_t got, double want, double rel)
{
    double d = (double)got - want;
    if (d < 0)
        d = -d;
    if (d > want * rel)
        fail_msg("got %llu, want %.1f +- %.1f%%", (unsigned long long)got, want, rel * 100);
}

static void test_hist_quantiles(void **state)
{
    wb_hist_t h;
    wb_hist_init(&h);
    assert_int_equal(wb_hist_quantile(&h, 0.5), 0);
    assert_true(wb_hist_mean(&h) == 0.0);
    for (uint64_t v = 1; v <= 100000; v++)
        wb_hist_add(&h, v);
    assert_int_equal(h.count, 100000);
    assert_int_equal(wb_hist_quantile(&h, 0), 1);
    assert_int_equal(wb_hist_quantile(&h, 1), 100000);
    assert_near(wb_hist_quantile(&h, 0.5), 50000, 0.016);
    assert_near(wb_hist_quantile(&h, 0.99), 99000, 0.016);
    assert_near(wb_hist_quantile(&h, 0.999), 99900, 0.016);
    /* Never below the true quantile: the highest equivalent value is used. */
    assert_true(wb_hist_quantile(&h, 0.5) >= 50000);
    assert_true(wb_hist_mean(&h) > 50000.4 && wb_hist_mean(&h) < 50000.6);
    /* Small values are exact. */
    wb_hist_t s;
    wb_hist_init(&s);
    for (int i = 0; i < 99; i++)
        wb_hist_add(&s, 10);
    wb_hist_add(&s, 120);
    assert_int_equal(wb_hist_quantile(&s, 0.5), 10);
    assert_int_equal(wb_hist_quantile(&s, 0.99), 10);
    assert_int_equal(wb_hist_quantile(&s, 0.999), 120);
}

static void test_hist_tail_and_clamp(void **state)
{
    wb_hist_t h;
    wb_hist_init(&h);
    for (int i = 0; i < 999; i++)
        wb_hist_add(&h, 100);
    wb_hist_add(&h, 3000000); /* one 3 s outlier */
    assert_int_equal(wb_hist_quantile(&h, 0.99), 100);
    assert_int_equal(wb_hist_quantile(&h, 0.999), 100);
    assert_int_equal(wb_hist_quantile(&h, 0.9995), 3000000); /* clamped to the exact max */
    wb_hist_add(&h, UINT64_MAX);
    assert_int_equal(h.max, WB_HIST_MAX_VALUE);
}

static void test_hist_merge(void **state)
{
    wb_hist_t a, b, all;
    wb_hist_init(&a);
    wb_hist_init(&b);
    wb_hist_init(&all);
    for (uint64_t v = 1; v < 5000; v += 3) {
        wb_hist_add(v % 2 ? &a : &b, v * 7);
        wb_hist_add(&all, v * 7);
    }
    wb_hist_t empty;
    wb_hist_init(&empty);
    wb_hist_merge(&a, &empty); /* merging nothing changes nothing (min stays) */
    wb_hist_merge(&a, &b);
    assert_int_equal(a.count, all.count);
    assert_int_equal(a.sum, all.sum);
    assert_int_equal(a.min, all.min);
    assert_int_equal(a.max, all.max);
    assert_memory_equal(a.b, all.b, sizeof(a.b));
    for (double q = 0; q <= 1.0; q += 0.05)
        assert_int_equal(wb_hist_quantile(&a, q), wb_hist_quantile(&all, q));
}

static void test_hist_dist_output(void **state)
{
    wb_hist_t h;
    char *text = NULL;
    size_t len = 0;
    wb_hist_init(&h);
    for (uint64_t v = 1; v <= 1000; v++)
        wb_hist_add(&h, v);
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(wb_hist_write_dist(&h, f), 0);
    fclose(f);
    assert_non_null(strstr(text, "# percentile"));
    assert_non_null(strstr(text, "\n0.000000 1 1.000\n"));
    assert_non_null(strstr(text, "# max 1000"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_plain),      cmocka_unit_test(test_url_defaults_and_tls),
        cmocka_unit_test(test_url_ipv6),       cmocka_unit_test(test_url_rejects),
        cmocka_unit_test(test_url_too_long),   cmocka_unit_test(test_hist_buckets_cover_values),
        cmocka_unit_test(test_hist_quantiles), cmocka_unit_test(test_hist_tail_and_clamp),
        cmocka_unit_test(test_hist_merge),     cmocka_unit_test(test_hist_dist_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
