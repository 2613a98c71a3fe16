/* Unit tests for wslbctl's pure parts (ctl/): URLs, chunked bodies, the
 * command template and line splitting, the registry and /stats parsers,
 * merging the lbs' views, disagreement warnings and rendering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "ctl_cmd.h"
#include "ctl_fleet.h"
#include "ctl_http.h"
#include "ctl_reg.h"
#include "ctl_show.h"

/* ---- URLs and paths ------------------------------------------------------------ */

static void test_url_parse(void **state)
{
    ctl_url_t u;
    char err[300];
    assert_int_equal(ctl_url_parse("http://127.0.0.1:8081", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "8081");
    assert_string_equal(u.base, "");
    assert_string_equal(u.text, "http://127.0.0.1:8081");
    /* bare HOST:PORT, a trailing slash, a prefix, IPv6, a name with the default port */
    assert_int_equal(ctl_url_parse("127.0.0.1:9/", &u, err, sizeof(err)), 0);
    assert_string_equal(u.port, "9");
    assert_string_equal(u.base, "");
    assert_int_equal(ctl_url_parse("HTTP://[::1]:8081/lb/admin/", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.base, "/lb/admin");
    assert_string_equal(u.text, "http://[::1]:8081/lb/admin");
    assert_int_equal(ctl_url_parse("http://lb1.internal", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "lb1.internal");
    assert_string_equal(u.port, "80");

    static const char *const bad[] = {
        "",          "https://127.0.0.1:8081", "ftp://x:1",      "http://",      "http://:80",
        "http://h:", "http://h:99999x",        "http://h:1?x=1", "http://h:1#f", "http://h:1/a b",
        "::1:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(ctl_url_parse(bad[i], &u, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    ctl_url_parse("https://127.0.0.1:8081", &u, err, sizeof(err));
    assert_non_null(strstr(err, "plain HTTP"));
}

static void test_escape(void **state)
{
    char out[64];
    assert_int_equal(ctl_http_escape("w-1.a_b~", out, sizeof(out)), 0);
    assert_string_equal(out, "w-1.a_b~");
    assert_int_equal(ctl_http_escape("host:9001/x y%", out, sizeof(out)), 0);
    assert_string_equal(out, "host%3A9001%2Fx%20y%25");
    assert_int_equal(ctl_http_escape("\xc3\xa9", out, sizeof(out)), 0);
    assert_string_equal(out, "%C3%A9");
    assert_int_equal(ctl_http_escape("abcd", out, 4), -1); /* no room for the NUL */
    assert_int_equal(ctl_http_escape(":", out, 3), -1);
}

static void test_dechunk(void **state)
{
    buf_t b = BUF_INIT;
    static const char full[] = "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                               "0\r\nX-Trailer: 1\r\n\r\n";
    assert_int_equal(ctl_http_dechunk(full, strlen(full), &b), 1);
    assert_int_equal(buf_size(&b), 23);
    assert_memory_equal(buf_head(&b), "Wikipedia in\r\n\r\nchunks.", 23);
    /* every prefix is incomplete, never malformed */
    for (size_t n = 0; n < strlen(full) - 1; n++)
        assert_int_equal(ctl_http_dechunk(full, n, &b), 0);
    assert_int_equal(ctl_http_dechunk("0\r\n\r\n", 5, &b), 1);
    assert_int_equal(buf_size(&b), 0);
    static const char *const bad[] = {"x\r\n", "4\r\nWikiXX", "-1\r\n", "4 z\r\nWiki\r\n",
                                      "FFFFFFFFFFFF\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ctl_http_dechunk(bad[i], strlen(bad[i]), &b), -1);
    buf_free(&b);
}

/* ---- the command ------------------------------------------------------------------ */

static void test_subst(void **state)
{
    buf_t out = BUF_INIT;
    char err[300];
    assert_int_equal(ctl_subst("ssh {host} restart {id} --port={port}; echo ${HOME} {x} {id}", "w1",
                               "10.0.0.5", "9001", &out, err, sizeof(err)),
                     0);
    assert_string_equal(buf_head(&out), "ssh 10.0.0.5 restart w1 --port=9001; echo ${HOME} {x} w1");
    assert_int_equal(ctl_subst("x {host}", "w", "::1", "1", &out, err, sizeof(err)), 0);
    assert_string_equal(buf_head(&out), "x ::1");
    /* a value a shell would act on is refused, only when the template uses it */
    assert_int_equal(ctl_subst("r {id}", "w1;rm -rf /", "h", "1", &out, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "$WSLB_ID"));
    assert_int_equal(ctl_subst("r $WSLB_ID", "w1;x", "h", "1", &out, err, sizeof(err)), 0);
    assert_int_equal(ctl_subst("{host}", "w", "a b", "1", &out, err, sizeof(err)), -1);
    assert_int_equal(ctl_subst("{id}", "", "h", "1", &out, err, sizeof(err)), -1);
    buf_free(&out);
}

typedef struct lines_seen {
    char text[4096];
    size_t n, calls, longest;
} lines_seen_t;

static void lines_cb(void *ud, int fd, const char *line, size_t n)
{
    lines_seen_t *s = ud;
    s->calls++;
    if (n > s->longest)
        s->longest = n;
    int w = snprintf(s->text + s->n, sizeof(s->text) - s->n, "%d<%.*s>", fd, (int)(n > 40 ? 40 : n),
                     line);
    s->n += (size_t)w;
}

static void test_lines(void **state)
{
    ctl_lines_t l = {BUF_INIT};
    lines_seen_t s = {0};
    assert_int_equal(ctl_lines_feed(&l, 1, "a\nbc", 4, lines_cb, &s), 0);
    assert_int_equal(ctl_lines_feed(&l, 1, "d\n\nef", 6, lines_cb, &s), 0);
    assert_string_equal(s.text, "1<a>1<bcd>1<>");
    ctl_lines_flush(&l, 2, lines_cb, &s); /* the partial last line is not lost */
    assert_string_equal(s.text, "1<a>1<bcd>1<>2<ef>");
    ctl_lines_flush(&l, 2, lines_cb, &s);
    assert_int_equal(s.calls, 4);

    /* an endless line comes out in full pieces; every byte arrives */
    memset(&s, 0, sizeof(s));
    size_t big = CTL_LINE_MAX + CTL_LINE_MAX / 2;
    char *p = malloc(big + 1);
    memset(p, 'x', big);
    p[big] = '\n';
    for (size_t off = 0; off <= big; off += 100000)
        assert_int_equal(ctl_lines_feed(&l, 1, p + off,
                                        off + 100000 > big + 1 ? big + 1 - off : 100000, lines_cb,
                                        &s),
                         0);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.longest, CTL_LINE_MAX);
    /* a line of exactly the maximum is one line, with no empty one after it */
    memset(&s, 0, sizeof(s));
    p[CTL_LINE_MAX] = '\n';
    assert_int_equal(ctl_lines_feed(&l, 1, p, CTL_LINE_MAX + 1, lines_cb, &s), 0);
    ctl_lines_flush(&l, 1, lines_cb, &s);
    assert_int_equal(s.calls, 1);
    free(p);
    ctl_lines_free(&l);
}

/* ---- the registry ---------------------------------------------------------------- */

static void test_reg_parse(void **state)
{
    ctl_regw_t w;
    memset(&w, 0, sizeof(w));
    snprintf(w.id, sizeof(w.id), "from-set");
    static const char ok[] = "{\"id\":\"w1\",\"addr\":\"127.0.0.1:9001\",\"state\":\"up\","
                             "\"conns\":12,\"evals_running\":1,\"evals_queued\":2,\"max_evals\":4,"
                             "\"load\":3,\"ts_ms\":1764150000000,\"started_ms\":1764149000000,"
                             "\"isolation\":\"full\",\"version\":\"0.1.0\",\"by_lb\":{\"a\":1}}";
    assert_int_equal(ctl_reg_parse(ok, strlen(ok), &w), 0);
    assert_string_equal(w.id, "from-set"); /* the member, whatever the state says */
    assert_string_equal(w.s.id, "w1");
    assert_string_equal(w.s.addr, "127.0.0.1:9001");
    assert_string_equal(fleet_state_name(&w.s), "up");
    assert_int_equal(w.s.conns, 12);
    assert_int_equal(w.s.evals_running, 1);
    assert_int_equal(w.s.evals_queued, 2);
    assert_int_equal(w.s.max_evals, 4);
    assert_int_equal(w.s.started_ms, 1764149000000ull);
    assert_string_equal(w.s.version, "0.1.0");
    assert_string_equal(w.err, "");
    /* an older worker: no version */
    static const char old[] = "{\"id\":\"w1\",\"addr\":\"127.0.0.1:1\",\"state\":\"draining\","
                              "\"conns\":0}";
    assert_int_equal(ctl_reg_parse(old, strlen(old), &w), 0);
    assert_string_equal(w.s.version, "");
    assert_string_equal(fleet_state_name(&w.s), "draining");
    /* what the lbs refuse, wslbctl reports: the same parser */
    static const char *const bad[] = {
        "nope",
        "[]",
        "{\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":0}",
        "{\"id\":\"w1\",\"state\":\"up\",\"conns\":0}",
        "{\"id\":\"w1\",\"addr\":\"127.0.0.1:1\",\"state\":\"weird\",\"conns\":0}",
        "{\"id\":\"w1\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":-1}",
        "{\"id\":\"w1\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\"}",
        "{\"id\":\"w1\",\"addr\":\"h:1\",\"state\":\"up\",\"conns\":0}",
        "{\"id\":\"w1\",\"addr\":\"0.0.0.0:9001\",\"state\":\"up\",\"conns\":0}",
        "{\"id\":\"w1\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":0,"
        "\"version\":\"a\\u001bb\"}",
        "{\"id\":\"w1\",\"id\":\"w2\",\"addr\":\"127.0.0.1:1\",\"state\":\"up\",\"conns\":0}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ctl_reg_parse(bad[i], strlen(bad[i]), &w), -1);
        assert_true(w.err[0] != '\0');
        assert_string_equal(w.id, "from-set");
    }
}

/* ---- the fleet ---------------------------------------------------------------------- */

#define BE(id, addr, state, health, drain, active, extra)                                          \
    "{\"id\":\"" id "\",\"addr\":\"" addr "\",\"state\":\"" state "\",\"health\":\"" health        \
    "\",\"admin_drain\":" drain ",\"active\":" active                                              \
    ",\"conns_global\":5,\"source\":\"redis\"" extra "}"

static const char stats1[] = "{\"algo\":\"leastconn\",\"active\":3,\"backends\":[" BE(
    "w10", "127.0.0.1:9010", "up", "up", "false", "1",
    ",\"evals_running\":2,\"evals_queued\":1,\"version\":\"0.2.0\",\"heartbeat_age_ms\":400,"
    "\"started_ms\":77") "," BE("w2", "127.0.0.1:9002", "draining", "up", "true", "2",
                                "") "," BE("w3", "127.0.0.1:9003", "down", "down", "false", "0",
                                           "") "]}";
static const char stats2[] = "{\"algo\":\"leastconn\",\"backends\":[" BE(
    "w2", "127.0.0.1:9002", "up", "up", "false", "4", "") "," BE("w3", "127.0.0.9:9003", "up", "up",
                                                                 "false", "0", "") "]}";

static void fleet_build(ctl_fleet_t *f, ctl_url_t *urls)
{
    char err[300];
    memset(f, 0, sizeof(*f));
    f->nlbs = 2;
    f->lbs = calloc(2, sizeof(*f->lbs));
    for (int i = 0; i < 2; i++) {
        f->lbs[i].url = &urls[i];
        snprintf(f->lbs[i].name, sizeof(f->lbs[i].name), "lb%d", i + 1);
        f->lbs[i].ok = 1;
    }
    assert_int_equal(ctl_fleet_parse_stats(stats1, strlen(stats1), &f->lbs[0], err, sizeof(err)),
                     0);
    assert_int_equal(ctl_fleet_parse_stats(stats2, strlen(stats2), &f->lbs[1], err, sizeof(err)),
                     0);
    /* w5 is only in Redis */
    f->use_reg = f->reg_ok = 1;
    f->reg.n = 1;
    f->reg.v = calloc(1, sizeof(*f->reg.v));
    snprintf(f->reg.v[0].id, sizeof(f->reg.v[0].id), "w5");
    static const char w5[] = "{\"id\":\"w5\",\"addr\":\"127.0.0.1:9005\",\"state\":\"up\","
                             "\"conns\":7,\"ts_ms\":1000,\"started_ms\":900,\"version\":\"0.3.0\"}";
    assert_int_equal(ctl_reg_parse(w5, strlen(w5), &f->reg.v[0]), 0);
    f->wall_ms = 1500;
    assert_int_equal(ctl_fleet_merge(f), 0);
}

static void test_fleet_merge(void **state)
{
    ctl_url_t urls[2];
    char err[300], s[32];
    ctl_url_parse("http://127.0.0.1:8081", &urls[0], err, sizeof(err));
    ctl_url_parse("http://127.0.0.1:8082", &urls[1], err, sizeof(err));
    ctl_fleet_t f;
    fleet_build(&f, urls);
    assert_string_equal(f.lbs[0].algo, "leastconn");
    /* natural order: w2 w3 w5 w10 */
    assert_int_equal(f.nbes, 4);
    assert_string_equal(f.bes[0].id, "w2");
    assert_string_equal(f.bes[1].id, "w3");
    assert_string_equal(f.bes[2].id, "w5");
    assert_string_equal(f.bes[3].id, "w10");
    ctl_be_t *w2 = ctl_fleet_find(&f, "w2"), *w10 = ctl_fleet_find(&f, "w10");
    ctl_be_t *w5 = ctl_fleet_find(&f, "w5");
    assert_null(ctl_fleet_find(&f, "w1"));
    assert_string_equal(ctl_view_state(&w2->views[0], s, sizeof(s)), "drained");
    assert_string_equal(ctl_view_state(&w2->views[1], s, sizeof(s)), "up");
    assert_string_equal(ctl_view_state(&w10->views[1], s, sizeof(s)), "-");
    assert_int_equal(ctl_be_active(&f, w2), 6);
    assert_int_equal(ctl_be_ws_global(&f, w2), 5);
    assert_int_equal(ctl_be_evals(&f, w10, 0), 2);
    assert_int_equal(ctl_be_evals(&f, w10, 1), 1);
    assert_int_equal(ctl_be_evals(&f, w2, 0), -1);
    assert_string_equal(ctl_be_version(&f, w10), "0.2.0");
    assert_int_equal(ctl_be_hb_age(&f, w10), 400);
    assert_int_equal(ctl_be_started(&f, w10), 77);
    /* the registry wins where the worker is registered */
    assert_int_equal(ctl_be_ws_global(&f, w5), 7);
    assert_int_equal(ctl_be_hb_age(&f, w5), 500);
    assert_string_equal(ctl_be_version(&f, w5), "0.3.0");
    assert_string_equal(ctl_be_addr(&f, w5), "127.0.0.1:9005");

    buf_t w = BUF_INIT;
    int n = ctl_fleet_warnings(&f, &w);
    const char *txt = buf_head(&w);
    assert_non_null(strstr(txt, "w2: the lbs disagree: drained on lb1, up on lb2\n"));
    assert_non_null(strstr(txt, "w3: the lbs disagree: down on lb1, up on lb2\n"));
    assert_non_null(strstr(txt, "w3: the lbs know it at different addresses"));
    assert_non_null(
        strstr(txt, "w5: registered in Redis (127.0.0.1:9005) but unknown to every lb"));
    assert_non_null(strstr(txt, "w10: unknown to lb2"));
    /* discovered from Redis by the lbs, yet gone from it */
    assert_non_null(strstr(txt, "w2: the lbs list it from Redis, but it is not registered"));
    assert_int_equal(n, 8);
    buf_free(&w);
    ctl_fleet_free(&f);
}

static void test_fleet_parse_bad(void **state)
{
    ctl_lb_t lb = {0};
    char err[300];
    static const char *const bad[] = {"", "{}", "{\"backends\":{}}", "{\"backends\":[{}]}",
                                      "{\"backends\":[{\"id\":\"w\"}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ctl_fleet_parse_stats(bad[i], strlen(bad[i]), &lb, err, sizeof(err)), -1);
        assert_int_equal(lb.nbes, 0);
    }
    /* an lb from before "health": an admin drain on an up backend is still up underneath */
    static const char old[] = "{\"backends\":[{\"id\":\"w\",\"state\":\"draining\","
                              "\"admin_drain\":true,\"addr\":\"h:1\\u001b\"}]}";
    assert_int_equal(ctl_fleet_parse_stats(old, strlen(old), &lb, err, sizeof(err)), 0);
    assert_string_equal(lb.bes[0].v.health, "up");
    assert_string_equal(lb.bes[0].v.addr, "h:1?"); /* no escape reaches a terminal */
    assert_int_equal(lb.bes[0].v.evals_running, -1);
    free(lb.bes);
}

static void test_http_error(void **state)
{
    buf_t b = BUF_INIT;
    char err[300];
    buf_append_str(&b, "{\"error\":\"unauthorized\"}\n");
    ctl_fleet_http_error(401, &b, 1, err, sizeof(err));
    assert_non_null(strstr(err, "token was refused"));
    ctl_fleet_http_error(401, &b, 0, err, sizeof(err));
    assert_non_null(strstr(err, "--admin-token-file"));
    buf_reset(&b);
    buf_append_str(&b, "<html>\x1b[31m");
    ctl_fleet_http_error(502, &b, 0, err, sizeof(err));
    assert_string_equal(err, "answered 502: <html> [31m");
    buf_free(&b);
}

/* ---- rendering -------------------------------------------------------------------- */

static void test_tab_and_age(void **state)
{
    ctl_tab_t t;
    buf_t out = BUF_INIT;
    ctl_tab_init(&t, 3, 1u << 1);
    ctl_tab_cell(&t, "A");
    ctl_tab_cell(&t, "N");
    ctl_tab_cell(&t, "NOTE");
    ctl_tab_cell(&t, "long");
    ctl_tab_cell(&t, "%d", 7);
    ctl_tab_cell(&t, "%s", "");
    ctl_tab_cell(&t, "b");
    ctl_tab_cell(&t, "%d", 1234);
    ctl_tab_cell(&t, "x");
    assert_int_equal(ctl_tab_render(&t, &out), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    assert_string_equal(buf_head(&out), "A        N  NOTE\nlong     7\nb     1234  x\n");
    ctl_tab_free(&t);
    buf_free(&out);
    char s[32];
    assert_string_equal(ctl_show_age(-1, s, sizeof(s)), "-");
    assert_string_equal(ctl_show_age(420, s, sizeof(s)), "0.4s");
    assert_string_equal(ctl_show_age(59999, s, sizeof(s)), "60.0s");
    assert_string_equal(ctl_show_age(183000, s, sizeof(s)), "3m03s");
    assert_string_equal(ctl_show_age(7800000, s, sizeof(s)), "2h10m");
}

static void test_show(void **state)
{
    ctl_url_t urls[2];
    char err[300];
    ctl_url_parse("http://127.0.0.1:8081", &urls[0], err, sizeof(err));
    ctl_url_parse("http://127.0.0.1:8082", &urls[1], err, sizeof(err));
    ctl_conf_t c = {.lbs = urls, .nlbs = 2, .redis = "127.0.0.1:6379", .prefix = "wslb:"};
    ctl_fleet_t f;
    fleet_build(&f, urls);
    buf_t out = BUF_INIT;
    assert_int_equal(ctl_show_table(&f, &c, &out), 0);
    buf_append(&out, "", 1);
    const char *t = buf_head(&out);
    assert_non_null(strstr(t, "lb1    http://127.0.0.1:8081  leastconn, 3 backends\n"));
    assert_non_null(strstr(t, "redis  127.0.0.1:6379 wslb:   1 worker registered\n"));
    assert_non_null(
        strstr(t, "ID   ADDRESS         LB1      LB2  WS:LB1  WS:LB2  WS:ALL  RUNNING"));
    /* w10: up on lb1, unknown to lb2, its figures; w2 marked */
    const char *row = strstr(t, "\nw10 ");
    assert_non_null(row);
    assert_true(strncmp(row,
                        "\nw10  127.0.0.1:9010  up       -         1       -       5        2"
                        "       1  0.2.0         0.4s  !\n",
                        90) == 0);
    assert_non_null(strstr(t, "\nw2   127.0.0.1:9002  drained  up        2       4"));
    assert_null(strstr(t, " \n")); /* no trailing blanks */
    /* an unreachable lb shows ? and says why */
    f.lbs[1].ok = 0;
    snprintf(f.lbs[1].err, sizeof(f.lbs[1].err), "cannot reach it: refused");
    buf_reset(&out);
    assert_int_equal(ctl_show_table(&f, &c, &out), 0);
    buf_append(&out, "", 1);
    assert_non_null(strstr(buf_head(&out), "UNREACHABLE: cannot reach it: refused"));
    assert_non_null(strstr(buf_head(&out), "\nw2   127.0.0.1:9002  drained  ?         2       ?"));

    buf_reset(&out);
    assert_int_equal(ctl_show_json(&f, &c, &out), 0);
    json_error_t jerr;
    json_t *root = json_loadb(buf_head(&out), buf_size(&out), 0, &jerr);
    assert_non_null(root);
    json_t *lb2 = json_array_get(json_object_get(root, "lbs"), 1);
    assert_false(json_is_true(json_object_get(lb2, "ok")));
    assert_string_equal(json_string_value(json_object_get(lb2, "error")),
                        "cannot reach it: refused");
    json_t *bes = json_object_get(root, "backends");
    assert_int_equal(json_array_size(bes), 4);
    json_t *w2 = json_array_get(bes, 0);
    assert_string_equal(json_string_value(json_object_get(w2, "id")), "w2");
    json_t *v = json_object_get(json_object_get(w2, "lbs"), "lb1");
    assert_string_equal(json_string_value(json_object_get(v, "state")), "drained");
    assert_string_equal(json_string_value(json_object_get(v, "health")), "up");
    assert_int_equal(json_integer_value(json_object_get(v, "websockets")), 2);
    assert_true(json_is_null(json_object_get(w2, "evals_running")));
    json_t *w5 = json_array_get(bes, 2);
    assert_int_equal(json_integer_value(json_object_get(w5, "websockets_global")), 7);
    assert_string_equal(json_string_value(json_object_get(json_object_get(w5, "redis"), "version")),
                        "0.3.0");
    assert_true(json_array_size(json_object_get(w5, "warnings")) >= 1);
    assert_true(json_array_size(json_object_get(root, "warnings")) >= 5);
    json_decref(root);
    buf_free(&out);
    ctl_fleet_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),   cmocka_unit_test(test_escape),
        cmocka_unit_test(test_dechunk),     cmocka_unit_test(test_subst),
        cmocka_unit_test(test_lines),       cmocka_unit_test(test_reg_parse),
        cmocka_unit_test(test_fleet_merge), cmocka_unit_test(test_fleet_parse_bad),
        cmocka_unit_test(test_http_error),  cmocka_unit_test(test_tab_and_age),
        cmocka_unit_test(test_show),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
