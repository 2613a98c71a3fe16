/* Unit tests for common/sen.c: what Sentinels say, parsed. Replies are built
 * from RESP text with hiredis' own reader, as they arrive on the wire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "sen.h"

static redisReply *resp(const char *text)
{
    redisReader *rd = redisReaderCreate();
    void *v = NULL;
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &v), REDIS_OK);
    assert_non_null(v);
    redisReaderFree(rd);
    return v;
}

static void test_names_and_addresses(void **state)
{
    assert_true(sen_name_ok("mymaster"));
    assert_true(sen_name_ok("a-b.c_1"));
    assert_false(sen_name_ok(""));
    assert_false(sen_name_ok("my master"));
    assert_false(sen_name_ok("m\n"));
    char longname[SEN_NAME_MAX + 1];
    memset(longname, 'x', SEN_NAME_MAX);
    longname[SEN_NAME_MAX] = '\0';
    assert_false(sen_name_ok(longname));

    sen_addr_t a;
    char err[SOCK_ERR_LEN];
    assert_int_equal(sen_addr_parse(&a, "127.0.0.1:26379", err, sizeof(err)), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 26379);
    assert_string_equal(a.str, "127.0.0.1:26379");
    assert_int_equal(sen_addr_parse(&a, "[::1]:6380", err, sizeof(err)), 0);
    assert_string_equal(a.host, "::1");
    assert_string_equal(a.str, "[::1]:6380");
    assert_int_equal(sen_addr_parse(&a, "127.0.0.1:0", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "port 0"));
    assert_int_equal(sen_addr_parse(&a, "sentinel.example:26379", err, sizeof(err)), -1);

    /* As Sentinel sends them: apart, IPv6 without brackets. */
    assert_int_equal(sen_addr_from(&a, "10.0.0.2", "6379"), 0);
    assert_string_equal(a.str, "10.0.0.2:6379");
    assert_int_equal(sen_addr_from(&a, "fe80::1", "6379"), 0);
    assert_string_equal(a.str, "[fe80::1]:6379");
    assert_int_equal(sen_addr_from(&a, "redis-1.internal", "6379"), -1);
    assert_int_equal(sen_addr_from(&a, "10.0.0.2", "0"), -1);
    assert_int_equal(sen_addr_from(&a, "10.0.0.2", "65536"), -1);
    assert_int_equal(sen_addr_from(&a, "10.0.0.2", "63790000"), -1);
    assert_int_equal(sen_addr_from(&a, "[::1]", "6379"), -1);
}

static void test_lists(void **state)
{
    sen_addr_t v[4];
    char err[SOCK_ERR_LEN];
    assert_int_equal(sen_list_parse("127.0.0.1:1", v, 4, err, sizeof(err)), 1);
    assert_int_equal(sen_list_parse(" 127.0.0.1:1 ,[::1]:2,, 127.0.0.1:3", v, 4, err, sizeof(err)),
                     3);
    assert_string_equal(v[0].str, "127.0.0.1:1");
    assert_string_equal(v[1].str, "[::1]:2");
    assert_string_equal(v[2].str, "127.0.0.1:3");
    assert_int_equal(sen_list_parse(" , ", v, 4, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no address"));
    assert_int_equal(
        sen_list_parse("1.1.1.1:1,1.1.1.1:2,1.1.1.1:3,1.1.1.1:4,1.1.1.1:5", v, 4, err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "too many"));
    assert_int_equal(sen_list_parse("127.0.0.1:1,nowhere:2", v, 4, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "nowhere"));
}

static void test_master_reply(void **state)
{
    static const struct {
        const char *resp;
        const char *addr; /* NULL: refused, with why containing: */
        const char *why;
    } cases[] = {
        {"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", "127.0.0.1:6380", NULL},
        {"*2\r\n$3\r\n::1\r\n$4\r\n6380\r\n", "[::1]:6380", NULL},
        {"*-1\r\n", NULL, "does not know"},
        {"$-1\r\n", NULL, "does not know"},
        {"-NOPERM this user has no permissions\r\n", NULL, "NOPERM"},
        {"*1\r\n$9\r\n127.0.0.1\r\n", NULL, "not an address"},
        {"*2\r\n$9\r\n127.0.0.1\r\n:6380\r\n", NULL, "not an address"},
        {"*2\r\n$7\r\nredis-1\r\n$4\r\n6380\r\n", NULL, "not a numeric"},
        {"*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n", NULL, "not a numeric"},
        {"+OK\r\n", NULL, "not an address"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redisReply *x = resp(cases[i].resp);
        sen_addr_t a;
        const char *why = NULL;
        int rc = sen_master_reply(x, &a, &why);
        if (cases[i].addr != NULL) {
            assert_int_equal(rc, 0);
            assert_string_equal(a.str, cases[i].addr);
        } else if (rc != -1 || why == NULL || strstr(why, cases[i].why) == NULL) {
            fail_msg("case %zu: rc %d, why '%s'", i, rc, why ? why : "(null)");
        }
        freeReplyObject(x);
    }
}

static void test_switch_messages(void **state)
{
    sen_addr_t a;
    assert_int_equal(sen_switch_msg("mym 127.0.0.1 6379 127.0.0.1 6380", "mym", &a), 1);
    assert_string_equal(a.str, "127.0.0.1:6380");
    assert_int_equal(sen_switch_msg("mym ::1 6379 ::1 6381", "mym", &a), 1);
    assert_string_equal(a.str, "[::1]:6381");
    /* Another master's switch, or a name that only starts like ours. */
    assert_int_equal(sen_switch_msg("other 127.0.0.1 6379 127.0.0.1 6380", "mym", &a), 0);
    assert_int_equal(sen_switch_msg("mym2 127.0.0.1 6379 127.0.0.1 6380", "mym", &a), 0);
    assert_int_equal(sen_switch_msg("mym 127.0.0.1 6379 127.0.0.1", "mym", &a), -1);
    assert_int_equal(sen_switch_msg("mym 127.0.0.1 6379 127.0.0.1 6380 extra", "mym", &a), -1);
    assert_int_equal(sen_switch_msg("mym 127.0.0.1 6379 redis-2 6380", "mym", &a), -1);
    assert_int_equal(sen_switch_msg("", "mym", &a), -1);
}

static void test_sentinels_reply(void **state)
{
    /* Two Sentinels (fields in any order, extra fields ignored), one with a
     * host name, one entry that is not an array, one without a port. */
    redisReply *x = resp("*5\r\n"
                         "*6\r\n$4\r\nname\r\n$2\r\nab\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
                         "$4\r\nport\r\n$5\r\n26380\r\n"
                         "*4\r\n$4\r\nport\r\n$5\r\n26381\r\n$2\r\nip\r\n$3\r\n::1\r\n"
                         "*4\r\n$2\r\nip\r\n$4\r\nsn-3\r\n$4\r\nport\r\n$5\r\n26382\r\n"
                         ":7\r\n"
                         "*2\r\n$2\r\nip\r\n$8\r\n10.0.0.9\r\n");
    sen_addr_t v[4];
    assert_int_equal(sen_sentinels_reply(x, v, 4), 2);
    assert_string_equal(v[0].str, "127.0.0.1:26380");
    assert_string_equal(v[1].str, "[::1]:26381");
    assert_int_equal(sen_sentinels_reply(x, v, 1), 1);
    freeReplyObject(x);
    x = resp("-NOPERM no\r\n");
    assert_int_equal(sen_sentinels_reply(x, v, 4), 0);
    freeReplyObject(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_addresses), cmocka_unit_test(test_lists),
        cmocka_unit_test(test_master_reply),        cmocka_unit_test(test_switch_messages),
        cmocka_unit_test(test_sentinels_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
