/* Unit tests for /eval message parsing (worker/proto.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

static int parse(const char *s, proto_msg_t *m, char *err)
{
    return proto_parse(s, strlen(s), m, err, 256);
}

static void test_run_full(void **state)
{
    proto_msg_t m;
    char err[256];
    assert_int_equal(parse("{\"type\":\"run\",\"id\":\"r1\",\"runtime\":\"python3\",\"code\":"
                           "\"print(1)\",\"stdin\":\"in\",\"timeout_ms\":500,\"stdin_open\":true}",
                           &m, err),
                     0);
    assert_int_equal(m.type, PROTO_RUN);
    assert_string_equal(m.id, "r1");
    assert_string_equal(m.runtime, "python3");
    assert_int_equal(m.code_len, 8);
    assert_true(m.has_stdin);
    assert_int_equal(m.stdin_len, 2);
    assert_int_equal(m.timeout_ms, 500);
    assert_true(m.stdin_open);
    proto_msg_free(&m);
}

static void test_run_minimal_and_nul_in_code(void **state)
{
    proto_msg_t m;
    char err[256];
    assert_int_equal(
        parse("{\"type\":\"run\",\"id\":\"a\",\"runtime\":\"sh\",\"code\":\"x\\u0000y\"}", &m, err),
        -1);
    assert_non_null(strstr(err, "NUL"));
    assert_string_equal(m.id, "a");
    proto_msg_free(&m);
    assert_int_equal(parse("{\"type\":\"run\",\"id\":\"a\",\"runtime\":\"sh\",\"code\":\"x\","
                           "\"stdin\":\"a\\u0000b\"}",
                           &m, err),
                     0);
    assert_int_equal(m.stdin_len, 3); /* input keeps its NUL bytes */
    assert_int_equal(m.timeout_ms, 0);
    proto_msg_free(&m);
}

static void test_others(void **state)
{
    proto_msg_t m;
    char err[256];
    assert_int_equal(parse("{\"type\":\"stdin\",\"id\":\"a\",\"data\":\"x\"}", &m, err), 0);
    assert_int_equal(m.type, PROTO_STDIN);
    assert_int_equal(m.stdin_len, 1);
    proto_msg_free(&m);
    assert_int_equal(parse("{\"type\":\"stdin_close\",\"id\":\"a\"}", &m, err), 0);
    assert_int_equal(m.type, PROTO_STDIN_CLOSE);
    proto_msg_free(&m);
    assert_int_equal(parse("{\"type\":\"kill\",\"id\":\"a\"}", &m, err), 0);
    assert_int_equal(m.type, PROTO_KILL);
    proto_msg_free(&m);
}

static void test_errors(void **state)
{
    static const struct {
        const char *msg;
        const char *want;
        int has_id;
    } cases[] = {
        {"not json", "invalid JSON", 0},
        {"[1,2]", "JSON object", 0},
        {"{\"id\":\"a\"}", "'type'", 1},
        {"{\"type\":\"run\"}", "'id'", 0},
        {"{\"type\":\"run\",\"id\":\"\"}", "'id'", 0},
        {"{\"type\":\"run\",\"id\":7}", "'id'", 0},
        {"{\"type\":\"run\",\"id\":\"a\\u0000b\"}", "'id'", 0},
        {"{\"type\":\"run\",\"id\":\"a\",\"code\":\"x\"}", "'runtime'", 1},
        {"{\"type\":\"run\",\"id\":\"a\",\"runtime\":\"sh\"}", "'code'", 1},
        {"{\"type\":\"run\",\"id\":\"a\",\"runtime\":\"sh\",\"code\":1}", "'code'", 1},
        {"{\"type\":\"run\",\"id\":\"a\",\"runtime\":\"sh\",\"code\":\"\",\"stdin\":5}", "'stdin'",
         1},
        {"{\"type\":\"run\",\"id\":\"a\",\"runtime\":\"sh\",\"code\":\"\",\"timeout_ms\":-1}",
         "'timeout_ms'", 1},
        {"{\"type\":\"run\",\"id\":\"a\",\"runtime\":\"sh\",\"code\":\"\",\"timeout_ms\":1.5}",
         "'timeout_ms'", 1},
        {"{\"type\":\"run\",\"id\":\"a\",\"runtime\":\"sh\",\"code\":\"\",\"stdin_open\":1}",
         "'stdin_open'", 1},
        {"{\"type\":\"stdin\",\"id\":\"a\"}", "'data'", 1},
        {"{\"type\":\"dance\",\"id\":\"a\"}", "unknown message type", 1},
        {"{\"type\":\"run\",\"type\":\"kill\",\"id\":\"a\"}", "invalid JSON", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        proto_msg_t m;
        char err[256] = "";
        assert_int_equal(parse(cases[i].msg, &m, err), -1);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
        if (cases[i].has_id != (m.id != NULL))
            fail_msg("case %zu: id %s", i, m.id ? "set" : "unset");
        proto_msg_free(&m);
    }
}

/* A message of many tiny values is refused before it is parsed: a parse tree
 * of one node per value would cost far more memory and time than its size. */
static void test_too_many_values(void **state)
{
    proto_msg_t m;
    char err[256];
    size_t n = 300000;
    char *s = malloc(n * 4 + 64);
    assert_non_null(s);
    size_t off = (size_t)sprintf(s, "{\"type\":\"kill\",\"id\":\"k\",\"x\":[");
    for (size_t i = 0; i < n; i++)
        off += (size_t)sprintf(s + off, "[],");
    sprintf(s + off - 1, "]}");
    assert_int_equal(proto_parse(s, strlen(s), &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at most 256 JSON values"));
    proto_msg_free(&m);
    /* Brackets and commas inside strings are data, not values. */
    off = (size_t)sprintf(s, "{\"type\":\"stdin\",\"id\":\"k\",\"data\":\"");
    for (size_t i = 0; i < n; i++)
        off += (size_t)sprintf(s + off, "[\\\"{");
    sprintf(s + off, ",\"}");
    assert_int_equal(proto_parse(s, strlen(s), &m, err, sizeof(err)), 0);
    assert_int_equal(m.stdin_len, n * 3 + 1);
    proto_msg_free(&m);
    free(s);
}

static void test_long_id(void **state)
{
    char msg[512], id[200];
    memset(id, 'x', 129);
    id[129] = '\0';
    snprintf(msg, sizeof(msg), "{\"type\":\"kill\",\"id\":\"%s\"}", id);
    proto_msg_t m;
    char err[256];
    assert_int_equal(parse(msg, &m, err), -1);
    proto_msg_free(&m);
    id[128] = '\0';
    snprintf(msg, sizeof(msg), "{\"type\":\"kill\",\"id\":\"%s\"}", id);
    assert_int_equal(parse(msg, &m, err), 0);
    proto_msg_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_full), cmocka_unit_test(test_run_minimal_and_nul_in_code),
        cmocka_unit_test(test_others),   cmocka_unit_test(test_errors),
        cmocka_unit_test(test_long_id),  cmocka_unit_test(test_too_many_values),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
