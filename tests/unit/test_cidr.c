/* Unit tests for common/cidr.c: network lists and matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "cidr.h"

static void test_cidrs(void **state)
{
    char err[128];
    cidr_set_t set = {0};
    assert_int_equal(cidr_set_add(&set, "10.0.0.0/8, 192.0.2.7", err, sizeof(err)), 0);
    assert_int_equal(cidr_set_add(&set, "fd00::/8,::1", err, sizeof(err)), 0);
    assert_int_equal(set.n, 4);

    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    const struct {
        const char *ip;
        int want;
    } cases[] =
        {
            {"10.1.2.3", 1},        {"11.0.0.1", 0}, {"192.0.2.7", 1}, {"192.0.2.8", 0},
            {"fd12::1", 1},         {"fe80::1", 0},  {"::1", 1},       {"::2", 0},
            {"::ffff:10.9.9.9", 1}, /* a v4-mapped peer matches the IPv4 network */
        };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct sockaddr *sa;
        if (inet_pton(AF_INET, cases[i].ip, &in.sin_addr) == 1) {
            sa = (struct sockaddr *)&in;
        } else {
            assert_int_equal(inet_pton(AF_INET6, cases[i].ip, &in6.sin6_addr), 1);
            sa = (struct sockaddr *)&in6;
        }
        if (cidr_set_match(&set, sa) != cases[i].want)
            fail_msg("%s: want %d", cases[i].ip, cases[i].want);
    }
    /* Host bits in the network are ignored; /0 matches everything of a family. */
    cidr_set_t all = {0};
    assert_int_equal(cidr_set_add(&all, "1.2.3.4/0", err, sizeof(err)), 0);
    inet_pton(AF_INET, "203.0.113.1", &in.sin_addr);
    assert_true(cidr_set_match(&all, (struct sockaddr *)&in));
    inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
    assert_false(cidr_set_match(&all, (struct sockaddr *)&in6));
    cidr_set_free(&all);

    const char *bad[] = {"",          "10.0.0.0/33", "::/129", "host.example",
                         "10.0.0.0/", "1.2.3.4/8x",  ","};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cidr_set_add(&set, bad[i], err, sizeof(err)) == 0)
            fail_msg("accepted '%s'", bad[i]);
    assert_false(cidr_set_match(NULL, (struct sockaddr *)&in));
    cidr_set_free(&set);
    assert_int_equal(set.n, 0);
}

/* One 16-byte form for both families; v4-mapped IPv6 looks like IPv4. */
static void test_addr16(void **state)
{
    uint8_t a[16], b[16];
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "192.0.2.7", &in.sin_addr);
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &in6.sin6_addr);
    assert_int_equal(cidr_addr16((struct sockaddr *)&in, a), 0);
    assert_int_equal(cidr_addr16((struct sockaddr *)&in6, b), 0);
    assert_memory_equal(a, b, 16);
    inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
    assert_int_equal(cidr_addr16((struct sockaddr *)&in6, b), 0);
    assert_memory_equal(b, &in6.sin6_addr, 16);
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_int_equal(cidr_addr16(&un, a), -1);
    cidr_set_t set = {0};
    char err[128];
    assert_int_equal(cidr_set_add(&set, "0.0.0.0/0,::/0", err, sizeof(err)), 0);
    assert_false(cidr_set_match(&set, &un));
    cidr_set_free(&set);
    /* the error names the item */
    cidr_t c;
    assert_int_equal(cidr_parse("10.0.0.0/40", &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "'10.0.0.0/40'"));
    assert_int_equal(cidr_parse("10.1.2.3/8", &c, err, sizeof(err)), 0);
    assert_int_equal(c.bits, 96 + 8);
    assert_int_equal(c.net[12], 10);
    assert_int_equal(c.net[13], 0); /* host bits cleared */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidrs),
        cmocka_unit_test(test_addr16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
