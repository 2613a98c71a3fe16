/* Unit tests for common/fleet.c: the lb/worker contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "fleet.h"

/* ---- ids ------------------------------------------------------------------------ */

/* The id rule the lb and the workers share for X-Lb-Id. */
static void test_id_ok(void **state)
{
    static const char *const good[] = {"a", "lb-1", "host.example:8080", "A_b-c.d:e", "x"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(fleet_id_ok(good[i], strlen(good[i])));
    static const char *const bad[] = {"", "a b", "a\"b", "a\tb", "lb/1", "\xc3\xa9", "a,b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (fleet_id_ok(bad[i], strlen(bad[i])))
            fail_msg("'%s' accepted", bad[i]);
    char id[65];
    memset(id, 'a', sizeof(id));
    assert_true(fleet_id_ok(id, 63));
    assert_false(fleet_id_ok(id, 64));
    assert_false(fleet_id_ok("a\0b", 3)); /* length, not NUL, ends it */
}

/* The lb's default id: HOST-PID while that is a valid id, else a cut host
 * name with a hash of the whole one, still unique per process. */
static void test_id_default(void **state)
{
    char out[FLEET_ID_MAX + 1], a[FLEET_ID_MAX + 1], b[FLEET_ID_MAX + 1];
    assert_string_equal(fleet_id_default("lb1.example", 4242, out, sizeof(out)),
                        "lb1.example-4242");
    assert_string_equal(fleet_id_default("", 7, out, sizeof(out)), "lb-7");
    /* Kubernetes pod names reach 63 characters; two share a long prefix. */
    const char *p1 = "wslb-lb-deployment-7d9f8b6c5d-abcde.wslb-lb.production.svc.cl-1";
    const char *p2 = "wslb-lb-deployment-7d9f8b6c5d-abcde.wslb-lb.production.svc.cl-2";
    assert_int_equal(strlen(p1), 63);
    fleet_id_default(p1, 4194304, a, sizeof(a));
    fleet_id_default(p2, 4194304, b, sizeof(b));
    assert_true(fleet_id_ok(a, strlen(a)));
    assert_true(fleet_id_ok(b, strlen(b)));
    assert_int_equal(strlen(a), FLEET_ID_MAX);
    assert_string_not_equal(a, b);
    assert_memory_equal(a, p1, 40); /* still recognisable */
    assert_string_equal(a + strlen(a) - 8, "-4194304");
    /* Characters outside the rule, and a name that fits only without the pid. */
    fleet_id_default("host name/with\xc3\xa9", 12, out, sizeof(out));
    assert_true(fleet_id_ok(out, strlen(out)));
    assert_memory_equal(out, "host-name-with--", 16);
    char fits[FLEET_ID_MAX + 1];
    memset(fits, 'h', 60);
    fits[60] = '\0';
    fleet_id_default(fits, 99999, out, sizeof(out));
    assert_true(fleet_id_ok(out, strlen(out)));
    assert_string_equal(out + strlen(out) - 6, "-99999");
}

/* ---- time ------------------------------------------------------------------------ */

static void test_wall_ms(void **state)
{
    uint64_t before = (uint64_t)time(NULL) * 1000;
    uint64_t now = fleet_wall_ms();
    uint64_t after = (uint64_t)time(NULL) * 1000 + 1000;
    assert_true(now >= before && now < after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_ok),
        cmocka_unit_test(test_id_default),
        cmocka_unit_test(test_wall_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
