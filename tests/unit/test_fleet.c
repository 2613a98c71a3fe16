/* Unit tests for common/fleet.c: the lb/worker contract. The worker's state
 * goes through serialise -> parse -> equal for a full state, a minimal one
 * and each optional field alone; every rule of the parser has a state it
 * refuses. */
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
#include "sock.h"

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
    assert_int_equal(fleet_key_rebalance(NULL, 1764150000, b, sizeof(b)), 25);
    assert_string_equal(b, "wslb:rebalance:1764150000");
}

/* The fleet-wide shed budget: what INCRBY's answer grants. */
static void test_rebalance_granted(void **state)
{
    assert_int_equal(fleet_rebalance_granted(10, 4, 4), 4);   /* first in the second */
    assert_int_equal(fleet_rebalance_granted(10, 4, 12), 2);  /* 8 taken before: 2 left */
    assert_int_equal(fleet_rebalance_granted(10, 4, 14), 0);  /* 10 taken before */
    assert_int_equal(fleet_rebalance_granted(10, 4, 100), 0); /* far over */
    assert_int_equal(fleet_rebalance_granted(10, 0, 5), 0);
    assert_int_equal(fleet_rebalance_granted(0, 4, 4), 0);
    /* answers INCRBY cannot give: nothing granted, no overflow (UBSan) */
    assert_int_equal(fleet_rebalance_granted(10, 4, INT64_MIN), 0);
    assert_int_equal(fleet_rebalance_granted(10, 4, 3), 0);
    assert_int_equal(fleet_rebalance_granted(10, 4, INT64_MAX), 0);
    /* two workers asking for 8 each under a rate of 10: 8 + 2, never 16 */
    assert_int_equal(fleet_rebalance_granted(10, 8, 8) + fleet_rebalance_granted(10, 8, 16), 10);
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

/* ---- the worker's state: parsing ----------------------------------------------- */

static int parse(const char *json, fleet_state_t *st, char *err)
{
    return fleet_state_parse(json, strlen(json), NULL, st, err, 128);
}

static void test_state_parse_valid(void **state)
{
    fleet_state_t st;
    char err[128];
    const char *full =
        "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\",\"conns\":12,"
        "\"evals_running\":1,\"evals_queued\":2,\"max_evals\":4,\"load\":3,"
        "\"ts_ms\":1764150000000,\"started_ms\":1764149000000,\"isolation\":\"full\"}";
    assert_int_equal(parse(full, &st, err), 0);
    assert_string_equal(st.id, "w1");
    assert_string_equal(st.addr, "127.0.0.1:9001");
    assert_int_equal(st.draining, 0);
    assert_int_equal(st.conns, 12);
    assert_int_equal(st.load, 3);
    assert_int_equal(st.ts_ms, 1764150000000ull);
    assert_int_equal(st.evals_running, 1);
    assert_int_equal(st.evals_queued, 2);
    assert_int_equal(st.started_ms, 1764149000000ull);
    assert_string_equal(st.version, "");
    const char *ver = "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\",\"conns\":0,"
                      "\"version\":\"0.2.0-rc1\"}";
    assert_int_equal(parse(ver, &st, err), 0);
    assert_string_equal(st.version, "0.2.0-rc1");
    assert_int_equal(st.started_ms, 0);

    /* minimal: load from the evaluation counts, no timestamp, IPv6 */
    assert_int_equal(parse("{\"id\":\"w-2.x\",\"addr\":\"[::1]:9002\",\"state\":\"draining\","
                           "\"conns\":0,\"evals_running\":2,\"evals_queued\":1}",
                           &st, err),
                     0);
    assert_int_equal(st.draining, 1);
    assert_int_equal(st.load, 3);
    assert_int_equal(st.ts_ms, 0);
    assert_string_equal(st.addr, "[::1]:9002");

    /* unknown fields are fine; the length bound is respected (no NUL needed) */
    const char *two = "{\"id\":\"a\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,"
                      "\"extra\":[1,2]}GARBAGE";
    assert_int_equal(fleet_state_parse(two, strlen(two) - 7, NULL, &st, err, sizeof(err)), 0);
    assert_int_equal(st.load, 0);
    /* err may be NULL */
    assert_int_equal(fleet_state_parse("{", 1, NULL, &st, NULL, 0), -1);
}

/* "by_lb": this lb's own connections on the worker, read by the lb's id. */
static void test_state_parse_by_lb(void **state)
{
    static const char js[] = "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\","
                             "\"conns\":12,\"by_lb\":{\"lb-a\":7,\"lb-b\":5}}";
    fleet_state_t st;
    char err[128];
    assert_int_equal(fleet_state_parse(js, strlen(js), "lb-a", &st, err, sizeof(err)), 0);
    assert_int_equal(st.conns, 12);
    assert_int_equal(st.mine, 7);
    assert_int_equal(fleet_state_parse(js, strlen(js), "lb-c", &st, err, sizeof(err)), 0);
    assert_int_equal(st.mine, 0); /* listed others, not us: none of ours */
    assert_int_equal(fleet_state_parse(js, strlen(js), NULL, &st, err, sizeof(err)), 0);
    assert_int_equal(st.mine, -1);
    static const char old[] = "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\","
                              "\"conns\":12}";
    assert_int_equal(fleet_state_parse(old, strlen(old), "lb-a", &st, err, sizeof(err)), 0);
    assert_int_equal(st.mine, -1); /* a worker without per-lb counts */
    static const char *const bad[] = {
        "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\",\"conns\":1,\"by_lb\":[]}",
        "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\",\"conns\":1,"
        "\"by_lb\":{\"lb-a\":-1}}",
        "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\",\"conns\":1,"
        "\"by_lb\":{\"lb-a\":\"3\"}}",
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
        assert_int_equal(fleet_state_parse(bad[k], strlen(bad[k]), "lb-a", &st, err, sizeof(err)),
                         -1);
}

static void test_state_parse_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[1,2,3]",
        "\"w1\"",
        "{}",
        /* id */
        "{\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":7,\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"a\\nb\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"a\\u0000b\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1}",
        /* addr */
        "{\"id\":\"w\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\"example.com:80\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:99999\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:0\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\"0.0.0.0:9001\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\":9001\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\"[::]:9001\",\"state\":\"up\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":[],\"state\":\"up\",\"conns\":1}",
        /* state */
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"UP\",\"conns\":1}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":true,\"conns\":1}",
        /* numbers */
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\"}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":-1}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1.5}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":\"3\"}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":9223372036854775807}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,\"load\":-2}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,\"load\":null}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,"
        "\"evals_running\":\"x\"}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,\"ts_ms\":\"now\"}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,\"ts_ms\":-5}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,\"started_ms\":-1}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,\"version\":1}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,\"version\":\"\"}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,"
        "\"version\":\"1\\n2\"}",
        "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,"
        "\"version\":\"0123456789012345678901234567890123456789012345678901234567890123\"}",
        /* duplicate keys could smuggle two answers past a checker */
        "{\"id\":\"w\",\"id\":\"v\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fleet_state_t st;
        char err[128] = "";
        if (parse(bad[i], &st, err) != -1)
            fail_msg("accepted bad state #%zu: %s", i, bad[i]);
        assert_true(err[0] != 0);
    }
    /* an id that does not fit */
    char longid[300];
    snprintf(longid, sizeof(longid),
             "{\"id\":\"%0200d\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1}", 0);
    fleet_state_t st;
    assert_int_equal(parse(longid, &st, (char[128]){0}), -1);
}

/* The states every field adds a rule for, beyond the ones above. */
static void test_state_parse_invalid_fields(void **state)
{
#define W "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1,"
    static const struct {
        const char *json, *why;
    } bad[] = {
        {W "\"max_evals\":-1}", "bad max_evals"},
        {W "\"max_evals\":\"4\"}", "bad max_evals"},
        {W "\"slots_broken\":1000000001}", "bad slots_broken"},
        {W "\"slots_broken\":null}", "bad slots_broken"},
        {W "\"rebalance_shed\":-1}", "bad rebalance_shed"},
        {W "\"isolation\":5}", "bad isolation"},
        {W "\"isolation\":\"\"}", "bad isolation"},
        {W "\"isolation\":\"partial:\\u001b[31m\"}", "bad isolation"},
        {W "\"evals_queued\":1000000001}", "bad evals_queued"},
        {W "\"ts_ms\":1.5}", "bad ts_ms"},
        {W "\"started_ms\":-1}", "bad started_ms"},
        {W "\"version\":\"\"}", "bad version"},
        {W "\"load\":-1}", "bad load"},
        {"{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\"}", "bad or missing conns"},
        {"{\"id\":\"w\",\"addr\":\"127.0.0.1:0\",\"state\":\"up\",\"conns\":1}",
         "addr '127.0.0.1:0' is not a reachable worker address"},
        {"{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"UP\",\"conns\":1}",
         "unknown state 'UP'"},
        {"{\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":1}", "bad or missing id"},
        {"{\"id\":\"w\",\"addr\":\"w:1\",\"state\":\"up\",\"conns\":1}", "bad or missing addr"},
        {"{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"conns\":1}", "bad or missing state"},
        {"[]", "not a JSON object"},
        {W "\"by_lb\":{\"lb a\":1}}", "bad by_lb id"},
        {W "\"by_lb\":{\"\":1}}", "bad by_lb id"},
        {W "\"by_lb\":{\"a\\u0000b\":1}}", "not JSON"}, /* jansson refuses NUL in keys */
        {W "\"by_lb\":{\"lb-a\":1,\"lb-b\":-1}}", "bad by_lb count"},
        {W "\"by_lb\":{\"lb-a\":{}}}", "bad by_lb count"},
        {W "\"by_lb\":{\"lb-a\":1000000001}}", "bad by_lb count"},
        {W "\"by_lb\":{\"lb-a\":1,\"lb-a\":2}}", "not JSON"},
        {W "\"by_lb\":\"lb-a\"}", "bad by_lb"},
    };
#undef W
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fleet_state_t st;
        char err[128] = "";
        if (fleet_state_parse(bad[i].json, strlen(bad[i].json), "lb-a", &st, err, sizeof(err)) !=
            -1)
            fail_msg("accepted bad state #%zu: %s", i, bad[i].json);
        if (strncmp(err, bad[i].why, strlen(bad[i].why)) != 0)
            fail_msg("#%zu: '%s', want '%s'", i, err, bad[i].why);
    }
    /* isolation and by_lb ids at their limits */
    char js[8192];
    int n = snprintf(js, sizeof(js),
                     "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\","
                     "\"conns\":1,\"isolation\":\"%0255d\",\"by_lb\":{",
                     0);
    for (int i = 0; i < FLEET_MAX_LBS; i++)
        n += snprintf(js + n, sizeof(js) - (size_t)n, "%s\"%063d\":%d", i ? "," : "", i, i);
    snprintf(js + n, sizeof(js) - (size_t)n, "}}");
    fleet_state_t st;
    char err[128] = "";
    assert_int_equal(fleet_state_parse(js, strlen(js), NULL, &st, err, sizeof(err)), 0);
    assert_int_equal(st.nlbs, FLEET_MAX_LBS);
    assert_int_equal(strlen(st.isolation), 255);
    assert_int_equal(strlen(st.by_lb[31].id), 63);
    assert_int_equal(st.by_lb[31].n, 31);
    /* one lb more, one byte more */
    snprintf(js + n, sizeof(js) - (size_t)n, ",\"extra\":1}}");
    assert_int_equal(fleet_state_parse(js, strlen(js), NULL, &st, err, sizeof(err)), -1);
    assert_string_equal(err, "by_lb lists more than 32 lbs");
    n = snprintf(js, sizeof(js),
                 "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\","
                 "\"conns\":1,\"isolation\":\"%0256d\"}",
                 0);
    assert_int_equal(fleet_state_parse(js, strlen(js), NULL, &st, err, sizeof(err)), -1);
    snprintf(js, sizeof(js),
             "{\"id\":\"w\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\","
             "\"conns\":1,\"by_lb\":{\"%064d\":1}}",
             0);
    assert_int_equal(fleet_state_parse(js, strlen(js), NULL, &st, err, sizeof(err)), -1);
    assert_string_equal(err, "bad by_lb id");
}

/* ---- the worker's state: round trips ------------------------------------------------ */

static void assert_state_equal(const fleet_state_t *a, const fleet_state_t *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->addr, b->addr);
    assert_int_equal(a->sa.len, b->sa.len);
    assert_memory_equal(&a->sa.ss, &b->sa.ss, a->sa.len);
    assert_int_equal(a->draining, b->draining);
    assert_int_equal(a->conns, b->conns);
    assert_int_equal(a->has, b->has);
    assert_int_equal(a->evals_running, b->evals_running);
    assert_int_equal(a->evals_queued, b->evals_queued);
    assert_int_equal(a->max_evals, b->max_evals);
    assert_int_equal(a->slots_broken, b->slots_broken);
    assert_int_equal(a->rebalance_shed, b->rebalance_shed);
    assert_int_equal(a->load, b->load);
    assert_int_equal(a->ts_ms, b->ts_ms);
    assert_int_equal(a->started_ms, b->started_ms);
    assert_string_equal(a->isolation, b->isolation);
    assert_string_equal(a->version, b->version);
    assert_int_equal(a->nlbs, b->nlbs);
    for (size_t i = 0; i < a->nlbs; i++) {
        assert_string_equal(a->by_lb[i].id, b->by_lb[i].id);
        assert_int_equal(a->by_lb[i].n, b->by_lb[i].n);
    }
    assert_int_equal(a->mine, b->mine);
}

/* Serialises s, parses it back for lb_id and compares; returns the JSON. */
static char *round_trip(const fleet_state_t *s, const char *lb_id)
{
    char *js = fleet_state_to_json(s);
    assert_non_null(js);
    fleet_state_t back;
    char err[128] = "";
    if (fleet_state_parse(js, strlen(js), lb_id, &back, err, sizeof(err)) != 0)
        fail_msg("%s: %s", js, err);
    assert_state_equal(s, &back);
    return js;
}

static void state_base(fleet_state_t *s, const char *id, const char *addr)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->addr, sizeof(s->addr), "%s", addr);
    assert_int_equal(sock_parse_addr(addr, &s->sa, NULL, 0), 0);
    s->mine = -1;
}

/* Everything a worker publishes today, the way it always published it. */
static void test_state_round_trip_full(void **state)
{
    fleet_state_t s;
    state_base(&s, "w1", "127.0.0.1:9001");
    s.conns = 12;
    s.has = FLEET_HAS_ALL;
    s.evals_running = 1;
    s.max_evals = 4;
    s.load = 1;
    s.ts_ms = 1764150000000ull;
    s.started_ms = 1764149000000ull;
    snprintf(s.isolation, sizeof(s.isolation), "full");
    snprintf(s.version, sizeof(s.version), "0.1.0");
    s.nlbs = 2;
    snprintf(s.by_lb[0].id, sizeof(s.by_lb[0].id), "lb1-4242");
    s.by_lb[0].n = 7;
    snprintf(s.by_lb[1].id, sizeof(s.by_lb[1].id), "lb2-977");
    s.by_lb[1].n = 5;
    char *js = round_trip(&s, NULL);
    assert_string_equal(js, "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\","
                            "\"conns\":12,\"evals_running\":1,\"evals_queued\":0,\"max_evals\":4,"
                            "\"load\":1,\"ts_ms\":1764150000000,\"started_ms\":1764149000000,"
                            "\"isolation\":\"full\",\"version\":\"0.1.0\",\"slots_broken\":0,"
                            "\"rebalance_shed\":0,\"by_lb\":{\"lb1-4242\":7,\"lb2-977\":5}}");
    free(js);
    s.mine = 5; /* read by the lb named second */
    free(round_trip(&s, "lb2-977"));
    s.mine = 0; /* an lb it does not list */
    free(round_trip(&s, "lb3-1"));

    /* draining, IPv6, big figures, a long isolation text, every by_lb slot */
    state_base(&s, "worker with spaces/\xc3\xa9", "[2001:db8::7]:65535");
    s.draining = 1;
    s.conns = FLEET_MAX_COUNT;
    s.has = FLEET_HAS_ALL;
    s.evals_running = s.evals_queued = FLEET_MAX_COUNT;
    s.load = FLEET_MAX_COUNT - 1; /* as published, not the sum */
    s.max_evals = 64;
    s.slots_broken = 3;
    s.rebalance_shed = FLEET_MAX_COUNT;
    s.ts_ms = (uint64_t)INT64_MAX;
    s.started_ms = 1;
    snprintf(s.isolation, sizeof(s.isolation), "partial: no seccomp; %0200d", 7);
    snprintf(s.version, sizeof(s.version), "1.2.3-rc.1+g0123abc");
    for (s.nlbs = 0; s.nlbs < FLEET_MAX_LBS; s.nlbs++) {
        snprintf(s.by_lb[s.nlbs].id, sizeof(s.by_lb[0].id), "lb-%zu.example:%zu", s.nlbs, s.nlbs);
        s.by_lb[s.nlbs].n = (int64_t)s.nlbs;
    }
    s.mine = 17;
    free(round_trip(&s, "lb-17.example:17"));
}

/* The least a worker may publish: no optional field at all. */
static void test_state_round_trip_minimal(void **state)
{
    fleet_state_t s;
    state_base(&s, "w2", "[::1]:9002");
    s.draining = 1;
    char *js = round_trip(&s, NULL);
    assert_string_equal(js, "{\"id\":\"w2\",\"addr\":\"[::1]:9002\",\"state\":\"draining\","
                            "\"conns\":0}");
    free(js);
    free(round_trip(&s, "lb-a")); /* no by_lb: mine stays -1 */
    /* by_lb present and empty: none of any lb's */
    s.has = FLEET_HAS_BY_LB;
    s.mine = 0;
    js = round_trip(&s, "lb-a");
    assert_non_null(strstr(js, "\"by_lb\":{}"));
    free(js);
}

/* Each optional field alone, the others absent. */
static void test_state_round_trip_each_field(void **state)
{
    for (unsigned bit = 1; bit < FLEET_HAS_ALL; bit <<= 1) {
        fleet_state_t s;
        state_base(&s, "w3", "10.1.2.3:9003");
        s.conns = 2;
        s.has = bit;
        if (bit == FLEET_HAS_EVALS_RUNNING)
            s.evals_running = 3;
        if (bit == FLEET_HAS_EVALS_QUEUED)
            s.evals_queued = 4;
        if (bit == FLEET_HAS_MAX_EVALS)
            s.max_evals = 5;
        if (bit == FLEET_HAS_LOAD)
            s.load = 6;
        if (bit == FLEET_HAS_TS)
            s.ts_ms = 7;
        if (bit == FLEET_HAS_STARTED)
            s.started_ms = 8;
        if (bit == FLEET_HAS_ISOLATION)
            snprintf(s.isolation, sizeof(s.isolation), "none");
        if (bit == FLEET_HAS_VERSION)
            snprintf(s.version, sizeof(s.version), "9");
        if (bit == FLEET_HAS_SLOTS_BROKEN)
            s.slots_broken = 10;
        if (bit == FLEET_HAS_REBALANCE_SHED)
            s.rebalance_shed = 11;
        if (bit == FLEET_HAS_BY_LB) {
            s.nlbs = 1;
            snprintf(s.by_lb[0].id, sizeof(s.by_lb[0].id), "lb-a");
            s.by_lb[0].n = 2;
            s.mine = 2;
        }
        /* without "load" a reader counts what runs and waits */
        if (!(bit & FLEET_HAS_LOAD))
            s.load = s.evals_running + s.evals_queued;
        char *js = round_trip(&s, bit == FLEET_HAS_BY_LB ? "lb-a" : NULL);
        /* exactly one field beyond the four required ones */
        int fields = 0;
        for (const char *p = js; (p = strstr(p, "\":")) != NULL; p++)
            fields++;
        assert_int_equal(fields, bit == FLEET_HAS_BY_LB ? 6 : 5);
        free(js);
    }
}

/* ---- time ------------------------------------------------------------------------ */

static void test_wall_ms(void **state)
{
    /* Bounds from the same clock at full resolution: time() may read the
     * coarse clock, a tick behind, and put `after` before `now` across a
     * second's boundary. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    uint64_t now = fleet_wall_ms();
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t after = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;
    assert_true(now >= before && now < after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_ok),
        cmocka_unit_test(test_id_default),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_rebalance_granted),
        cmocka_unit_test(test_worker_id_rule),
        cmocka_unit_test(test_event_round_trip),
        cmocka_unit_test(test_event_invalid),
        cmocka_unit_test(test_state_parse_valid),
        cmocka_unit_test(test_state_parse_by_lb),
        cmocka_unit_test(test_state_parse_invalid),
        cmocka_unit_test(test_state_parse_invalid_fields),
        cmocka_unit_test(test_state_round_trip_full),
        cmocka_unit_test(test_state_round_trip_minimal),
        cmocka_unit_test(test_state_round_trip_each_field),
        cmocka_unit_test(test_wall_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
