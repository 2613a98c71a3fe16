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

/* ---- Redis keys and events ----------------------------------------------------- */

static void test_keys(void **state)
{
    char b[64];
    assert_int_equal(fleet_key_workers(NULL, b, sizeof(b)), 12);
    assert_string_equal(b, "wslb:workers");
    assert_int_equal(fleet_key_events("app1:", b, sizeof(b)), 11);
    assert_string_equal(b, "app1:events");
    assert_int_equal(fleet_key_worker(NULL, "w1", 2, b, sizeof(b)), 14);
    assert_string_equal(b, "wslb:worker:w1");
    /* the id's length counts, not a NUL after it */
    assert_int_equal(fleet_key_worker("", "w12345", 3, b, sizeof(b)), 10);
    assert_string_equal(b, "worker:w12");
    /* sizing first, as snprintf */
    assert_int_equal(fleet_key_worker("p:", "abc", 3, NULL, 0), 12);
    char small[8];
    assert_int_equal(fleet_key_workers(NULL, small, sizeof(small)), 12);
    assert_string_equal(small, "wslb:wo"); /* cut, terminated */
}

static void test_worker_id_rule(void **state)
{
    assert_true(fleet_worker_id_ok("w1", 2));
    assert_true(fleet_worker_id_ok("127.0.0.1:9001", 14));
    assert_true(fleet_worker_id_ok("a b/\xc3\xa9", 6)); /* printable bytes, any */
    assert_false(fleet_worker_id_ok("", 0));
    assert_false(fleet_worker_id_ok("a\tb", 3));
    assert_false(fleet_worker_id_ok("a\x7f", 2));
    assert_false(fleet_worker_id_ok("a\0b", 3));
    char id[FLEET_WORKER_ID_LEN + 1];
    memset(id, 'w', sizeof(id));
    assert_true(fleet_worker_id_ok(id, FLEET_WORKER_ID_LEN - 1));
    assert_false(fleet_worker_id_ok(id, FLEET_WORKER_ID_LEN));
}

static void test_event_round_trip(void **state)
{
    static const enum fleet_event_type types[] = {FLEET_EV_JOIN, FLEET_EV_DRAIN, FLEET_EV_LEAVE};
    for (size_t i = 0; i < 3; i++) {
        fleet_event_t e = {.type = types[i]}, back;
        snprintf(e.id, sizeof(e.id), "w%zu", i);
        snprintf(e.addr, sizeof(e.addr), "[::1]:900%zu", i);
        char *js = fleet_event_to_json(&e);
        assert_non_null(js);
        char err[128] = "";
        assert_int_equal(fleet_event_parse(js, strlen(js), &back, err, sizeof(err)), 0);
        assert_int_equal(back.type, e.type);
        assert_string_equal(back.id, e.id);
        assert_string_equal(back.addr, e.addr);
        free(js);
    }
    /* exactly what workers have always published */
    fleet_event_t e = {.type = FLEET_EV_JOIN, .id = "w1", .addr = "127.0.0.1:9001"};
    char *js = fleet_event_to_json(&e);
    assert_string_equal(js, "{\"event\":\"join\",\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\"}");
    free(js);
    /* no addr: none written, none read */
    fleet_event_t noaddr = {.type = FLEET_EV_LEAVE, .id = "w2"}, back;
    js = fleet_event_to_json(&noaddr);
    assert_string_equal(js, "{\"event\":\"leave\",\"id\":\"w2\"}");
    assert_int_equal(fleet_event_parse(js, strlen(js), &back, NULL, 0), 0);
    assert_string_equal(back.addr, "");
    free(js);
    assert_string_equal(fleet_event_name(FLEET_EV_DRAIN), "drain");
}

static void test_event_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "nope",
        "[]",
        "{}",
        "{\"id\":\"w1\"}",
        "{\"event\":\"rejoin\",\"id\":\"w1\"}",
        "{\"event\":7,\"id\":\"w1\"}",
        "{\"event\":\"drain\"}",
        "{\"event\":\"drain\",\"id\":\"\"}",
        "{\"event\":\"drain\",\"id\":3}",
        "{\"event\":\"drain\",\"id\":\"a\\nb\"}",
        "{\"event\":\"drain\",\"id\":\"w1\",\"addr\":9001}",
        "{\"event\":\"drain\",\"id\":\"w1\",\"addr\":\"\"}",
        "{\"event\":\"drain\",\"id\":\"w1\",\"id\":\"w2\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fleet_event_t e;
        char err[128] = "";
        if (fleet_event_parse(bad[i], strlen(bad[i]), &e, err, sizeof(err)) != -1)
            fail_msg("accepted bad event #%zu: %s", i, bad[i]);
        assert_true(err[0] != '\0');
    }
    char big[400];
    snprintf(big, sizeof(big), "{\"event\":\"leave\",\"id\":\"%0200d\"}", 0);
    fleet_event_t e;
    assert_int_equal(fleet_event_parse(big, strlen(big), &e, NULL, 0), -1);
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
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_worker_id_rule),
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_event_invalid),
        cmocka_unit_test(test_wall_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
