/* Unit tests for lb/lbo: the option table parsed again, backend specs and
 * the checks a start, `lb --check` and a reload share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "be.h"
#include "lbo.h"

/* Parses argv (NULL-terminated, program name first) into o and checks it;
 * the table is freed by the caller with cfg_free(t). */
static int parse(lb_opts_t *o, cfg_opt_t *t, char **argv, char *err, size_t errlen)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    memset(o, 0, sizeof(*o));
    lbo_defaults(o);
    lbo_table(o, t);
    int pr = cfg_parse(t, argc, argv, lbo_summary, "test", err, errlen);
    if (pr != CFG_OK)
        return -1;
    return lbo_check(o, err, errlen);
}

static void test_backend_specs(void **state)
{
    char id[BE_ID_MAX], err[256];
    sock_addr_t a;
    unsigned w;
    assert_int_equal(lbo_parse_backend("w1=127.0.0.1:9001", id, &a, &w, err, sizeof(err)), 0);
    assert_string_equal(id, "w1");
    assert_int_equal(w, 1);
    assert_int_equal(lbo_parse_backend("w2=[::1]:9,weight=7", id, &a, &w, err, sizeof(err)), 0);
    assert_string_equal(id, "w2");
    assert_int_equal(w, 7);
    assert_int_equal(lbo_parse_backend("=1.2.3.4:5", id, &a, &w, err, sizeof(err)), -1);
    assert_int_equal(lbo_parse_backend("w=1.2.3.4:5,weight=0", id, &a, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "weight must be 1..256"));
    assert_int_equal(lbo_parse_backend("w=1.2.3.4:5,wait=3", id, &a, &w, err, sizeof(err)), -1);
    assert_int_equal(lbo_parse_backend("w=nowhere", id, &a, &w, err, sizeof(err)), -1);
}

static void test_checks(void **state)
{
    lb_opts_t o;
    cfg_opt_t t[LBO_MAX];
    char err[512];

    char *ok[] = {"lb", "--backend", "a=127.0.0.1:1", "--algo", "p2c", NULL};
    assert_int_equal(parse(&o, t, ok, err, sizeof(err)), 0);
    assert_string_equal(o.algo, "p2c");
    assert_int_equal(o.check, 0);
    cfg_free(t);

    char *dup[] = {"lb", "--backend", "a=127.0.0.1:1", "--backend", "a=127.0.0.1:2", NULL};
    assert_int_equal(parse(&o, t, dup, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "duplicate id"));
    cfg_free(t);

    char *algo[] = {"lb", "--algo", "fastest", NULL};
    assert_int_equal(parse(&o, t, algo, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--algo: unknown algorithm 'fastest'"));
    cfg_free(t);

    char *lvl[] = {"lb", "--log-level", "loud", NULL};
    assert_int_equal(parse(&o, t, lvl, err, sizeof(err)), -1);
    cfg_free(t);

    char *admin[] = {"lb", "--admin", "0.0.0.0:8081", NULL};
    assert_int_equal(parse(&o, t, admin, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a loopback address"));
    cfg_free(t);

    char *cert[] = {"lb", "--cert", "/x.pem", NULL};
    assert_int_equal(parse(&o, t, cert, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "without --tls-listen"));
    cfg_free(t);

    char *tr[] = {"lb", "--trusted-proxies", "10.0.0.0/33", NULL};
    assert_int_equal(parse(&o, t, tr, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--trusted-proxies"));
    cfg_free(t);

    char *tok[] = {"lb", "--admin-token-file", "/nonexistent/token", NULL};
    assert_int_equal(parse(&o, t, tok, err, sizeof(err)), -1);
    cfg_free(t);

    char *route[] = {"lb", "--route", "no-slash", NULL};
    assert_int_equal(parse(&o, t, route, err, sizeof(err)), -1);
    cfg_free(t);

    char *chk[] = {"lb", "--check", "--control-socket", "/run/x.sock", NULL};
    assert_int_equal(parse(&o, t, chk, err, sizeof(err)), 0);
    assert_int_equal(o.check, 1);
    assert_string_equal(o.control_socket, "/run/x.sock");
    cfg_free(t);
}

/* A path the health checks would refuse is refused by the check itself, so
 * that `lb --check` says so and a reload changes nothing (instead of
 * reporting the reload applied while the old checks keep running). */
static void test_health_path(void **state)
{
    lb_opts_t o;
    cfg_opt_t t[LBO_MAX];
    char err[512];

    char *ok[] = {"lb", "--health-path", "/ready", NULL};
    assert_int_equal(parse(&o, t, ok, err, sizeof(err)), 0);
    cfg_free(t);

    char *rel[] = {"lb", "--health-path", "healthz", NULL};
    assert_int_equal(parse(&o, t, rel, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--health-path"));
    cfg_free(t);

    char *sp[] = {"lb", "--health-path", "/a b", NULL};
    assert_int_equal(parse(&o, t, sp, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--health-path"));
    cfg_free(t);

    char *crlf[] = {"lb", "--health-path", "/a\r\nX-Evil: 1", NULL};
    assert_int_equal(parse(&o, t, crlf, err, sizeof(err)), -1);
    cfg_free(t);
}

static void test_equalities(void **state)
{
    char *a[] = {"x", "y"}, *b[] = {"x", "z"};
    cfg_list_t la = {a, 2}, lb = {b, 2}, l1 = {a, 1};
    assert_true(lbo_list_eq(&la, &la));
    assert_false(lbo_list_eq(&la, &lb));
    assert_false(lbo_list_eq(&la, &l1));
    assert_true(lbo_str_eq(NULL, NULL));
    assert_false(lbo_str_eq("a", NULL));
    assert_true(lbo_str_eq("a", "a"));
    assert_true(lbo_is_loopback("127.0.0.2:80"));
    assert_true(lbo_is_loopback("[::1]:80"));
    assert_false(lbo_is_loopback("10.0.0.1:80"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_specs),
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_health_path),
        cmocka_unit_test(test_equalities),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
