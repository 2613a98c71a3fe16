/* Unit tests for lb/pp.c: PROXY protocol v1 and v2 headers, whole and in
 * pieces, with what follows them left alone, and malformed ones refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>

#include "pp.h"

/* Feeds data in pieces of `step` bytes (0 = all at once); returns the rc of
 * the last feed and the total bytes used. */
static int feed(const void *data, size_t n, size_t step, size_t *used, pp_info_t *out,
                const char **err)
{
    pp_t p;
    pp_init(&p);
    const uint8_t *d = data;
    size_t off = 0;
    int rc = PP_AGAIN;
    *used = 0;
    *err = NULL;
    while (off < n && rc == PP_AGAIN) {
        size_t k = step == 0 || n - off < step ? n - off : step;
        size_t u = 0;
        rc = pp_feed(&p, d + off, k, &u, out, err);
        assert_true(u <= k);
        if (rc == PP_AGAIN)
            assert_int_equal(u, k);
        *used += u;
        off += k;
    }
    return rc;
}

static const char *addr_str(const sock_addr_t *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)&a->ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const void *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
    return buf;
}

static const size_t steps[] = {0, 1, 2, 5, 13};

static void test_v1(void **state)
{
    static const struct {
        const char *in;
        int has_addr;
        const char *src, *dst;
    } ok[] = {
        {"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", 1, "192.0.2.1:56324",
         "198.51.100.2:443"},
        {"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", 1, "[2001:db8::1]:1",
         "[2001:db8::2]:65535"},
        {"PROXY UNKNOWN\r\n", 0, NULL, NULL},
        {"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", 0, NULL, NULL},
    };
    const char *follow = "GET / HTTP/1.1\r\n\r\n";
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            char in[256], a[64];
            snprintf(in, sizeof(in), "%s%s", ok[i].in, follow);
            size_t used;
            pp_info_t info;
            const char *err;
            int rc = feed(in, strlen(in), steps[s], &used, &info, &err);
            assert_int_equal(rc, PP_DONE);
            /* Not one byte of the request after it. */
            assert_int_equal(used, strlen(ok[i].in));
            assert_int_equal(info.version, 1);
            assert_int_equal(info.has_addr, ok[i].has_addr);
            if (ok[i].has_addr) {
                assert_string_equal(addr_str(&info.src, a, sizeof(a)), ok[i].src);
                assert_string_equal(addr_str(&info.dst, a, sizeof(a)), ok[i].dst);
            }
        }
    }
}

/* A v2 header: command (0 LOCAL, 1 PROXY), family/protocol byte, address
 * block, then tlv_len bytes of TLVs. */
static size_t v2(uint8_t *out, int cmd, uint8_t fp, const uint8_t *addr, size_t alen,
                 size_t tlv_len)
{
    static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
    size_t len = alen + tlv_len;
    memcpy(out, sig, 12);
    out[12] = (uint8_t)(0x20 | cmd);
    out[13] = fp;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    memcpy(out + 16, addr, alen);
    for (size_t i = 0; i < tlv_len; i++) /* a TLV of type 0x04 (NOOP) filling it */
        out[16 + alen + i] = i == 0   ? 0x04
                             : i == 1 ? (uint8_t)((tlv_len - 3) >> 8)
                             : i == 2 ? (uint8_t)(tlv_len - 3)
                                      : 0xaa;
    return 16 + len;
}

static void test_v2(void **state)
{
    uint8_t a4[12] = {192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb};
    uint8_t a6[36] = {0x20, 0x01, 0x0d,     0xb8, [15] = 1, 0x20, 0x01,
                      0x0d, 0xb8, [31] = 2, 0x00, 0x50,     0x1f, 0x90};
    static const char follow[] = "\x16\x03\x01 a ClientHello";
    struct {
        int cmd;
        uint8_t fp;
        const uint8_t *addr;
        size_t alen, tlv;
        int has_addr;
        const char *src, *dst;
    } ok[] = {
        {1, 0x11, a4, 12, 0, 1, "192.0.2.1:56324", "198.51.100.2:443"},
        {1, 0x11, a4, 12, 40, 1, "192.0.2.1:56324", "198.51.100.2:443"}, /* TLVs skipped */
        {1, 0x21, a6, 36, 0, 1, "[2001:db8::1]:80", "[2001:db8::2]:8080"},
        {1, 0x21, a6, 36, 300, 1, "[2001:db8::1]:80", "[2001:db8::2]:8080"},
        {0, 0x00, a4, 0, 0, 0, NULL, NULL},  /* LOCAL: the proxy's own check */
        {0, 0x11, a4, 12, 0, 0, NULL, NULL}, /* LOCAL with an address: ignored */
        {1, 0x00, a4, 0, 7, 0, NULL, NULL},  /* PROXY UNSPEC */
        {1, 0x12, a4, 12, 0, 0, NULL, NULL}, /* datagrams: not a TCP client */
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            uint8_t in[600];
            char a[64];
            size_t hl = v2(in, ok[i].cmd, ok[i].fp, ok[i].addr, ok[i].alen, ok[i].tlv);
            memcpy(in + hl, follow, sizeof(follow));
            size_t used;
            pp_info_t info;
            const char *err;
            int rc = feed(in, hl + sizeof(follow), steps[s], &used, &info, &err);
            assert_int_equal(rc, PP_DONE);
            assert_int_equal(used, hl);
            assert_int_equal(info.version, 2);
            assert_int_equal(info.has_addr, ok[i].has_addr);
            if (ok[i].has_addr) {
                assert_string_equal(addr_str(&info.src, a, sizeof(a)), ok[i].src);
                assert_string_equal(addr_str(&info.dst, a, sizeof(a)), ok[i].dst);
            }
        }
    }
}

static void test_missing(void **state)
{
    static const char *const in[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "PUT / HTTP/1.1\r\n",
        "\x16\x03\x01\x02\x00",
        "PROXY\r\n",
        "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        "\r\n\r\n\x01",
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        size_t used;
        pp_info_t info;
        const char *err;
        assert_int_equal(feed(in[i], strlen(in[i]), 1, &used, &info, &err), PP_MISSING);
        assert_non_null(err);
    }
}

static void test_malformed(void **state)
{
    static const char *const v1[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",       /* LF alone */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",       /* a port short */
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",    /* two spaces */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",    /* trailing space */
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",   /* bad address */
        "PROXY TCP4 ::1 ::2 1 2\r\n",             /* family mismatch */
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",     /* family mismatch */
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", /* port range */
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",    /* port sign */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n",  /* bare CR */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 \x01\r\n",  /* control byte */
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",     /* protocol */
        "PROXY \r\n",                             /* nothing */
    };
    for (size_t i = 0; i < sizeof(v1) / sizeof(v1[0]); i++) {
        size_t used;
        pp_info_t info;
        const char *err;
        assert_int_equal(feed(v1[i], strlen(v1[i]), 0, &used, &info, &err), PP_ERROR);
        assert_non_null(err);
    }
    /* Longer than 107 bytes without a CRLF: refused at the bound, not later. */
    char longl[300];
    memset(longl, 'A', sizeof(longl));
    memcpy(longl, "PROXY UNKNOWN ", 14);
    size_t used;
    pp_info_t info;
    const char *err;
    assert_int_equal(feed(longl, sizeof(longl), 0, &used, &info, &err), PP_ERROR);
    assert_true(used <= PP_V1_MAX);
    /* Exactly 107 bytes is allowed. */
    memcpy(longl + 105, "\r\n", 2);
    assert_int_equal(feed(longl, 107, 0, &used, &info, &err), PP_DONE);
    assert_int_equal(used, 107);

    uint8_t a4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}, in[PP_V2_MAX_LEN + 64];
    size_t hl = v2(in, 1, 0x11, a4, 12, 0);
    in[12] = 0x11; /* version 1 */
    assert_int_equal(feed(in, hl, 0, &used, &info, &err), PP_ERROR);
    in[12] = 0x22; /* command 2 */
    assert_int_equal(feed(in, hl, 0, &used, &info, &err), PP_ERROR);
    in[12] = 0x21;
    in[13] = 0x41; /* family 4 */
    assert_int_equal(feed(in, hl, 0, &used, &info, &err), PP_ERROR);
    in[13] = 0x13; /* protocol 3 */
    assert_int_equal(feed(in, hl, 0, &used, &info, &err), PP_ERROR);
    /* An address block shorter than its family's. */
    hl = v2(in, 1, 0x11, a4, 8, 0);
    assert_int_equal(feed(in, hl, 0, &used, &info, &err), PP_ERROR);
    hl = v2(in, 1, 0x21, a4, 12, 0);
    assert_int_equal(feed(in, hl, 0, &used, &info, &err), PP_ERROR);
    /* Over the bound: refused as soon as the length is read. */
    hl = v2(in, 1, 0x11, a4, 12, PP_V2_MAX_LEN);
    assert_int_equal(feed(in, hl, 1, &used, &info, &err), PP_ERROR);
    assert_int_equal(used, 16);
    /* Exactly at the bound is fine. */
    hl = v2(in, 1, 0x11, a4, 12, PP_V2_MAX_LEN - 12);
    assert_int_equal(feed(in, hl, 0, &used, &info, &err), PP_DONE);
    assert_int_equal(used, hl);
}

/* A header cut short asks for more and has used everything. */
static void test_partial_and_after(void **state)
{
    pp_t p;
    pp_init(&p);
    size_t used;
    pp_info_t info;
    const char *err = NULL;
    assert_int_equal(pp_feed(&p, "PROXY TCP4 1.2", 14, &used, &info, &err), PP_AGAIN);
    assert_int_equal(used, 14);
    assert_int_equal(pp_feed(&p, "", 0, &used, &info, &err), PP_AGAIN);
    assert_int_equal(pp_feed(&p, ".3.4 5.6.7.8 1 2\r\nGET", 21, &used, &info, &err), PP_DONE);
    assert_int_equal(used, 18);
    assert_int_equal(pp_feed(&p, "GET", 3, &used, &info, &err), PP_ERROR);
    assert_int_equal(used, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_partial_and_after),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
