/* Unit tests for common/log: escaping in both formats, structured lines, cut
 * lines that stay valid, and the access-log fields (lb/alog). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "alog.h"
#include "log.h"

static const struct timespec t0 = {1764150000, 123456789};

static size_t render(char *out, size_t outlen, enum log_format fmt, const char *event,
                     const log_field_t *f, size_t n)
{
    return log_render(out, outlen, fmt, &t0, LOG_LVL_INFO, "lb", event, f, n);
}

/* Parses one rendered JSON line (with its newline) and checks it is a
 * single line. */
static json_t *parse_line(const char *line)
{
    size_t n = strlen(line);
    assert_true(n > 0 && line[n - 1] == '\n');
    assert_null(memchr(line, '\n', n - 1));
    json_error_t e;
    json_t *j = json_loadb(line, n - 1, 0, &e);
    if (j == NULL)
        fail_msg("not JSON (%s): %s", e.text, line);
    assert_true(json_is_object(j));
    return j;
}

static void test_text_message_escapes(void **state)
{
    char line[512];
    log_field_t f = {.key = "msg", .type = LOG_F_TEXT, .s = "a\nb\tc\x1b[31m\xff\\ \"q\""};
    render(line, sizeof(line), LOG_FMT_TEXT, NULL, &f, 1);
    assert_string_equal(line, "2025-11-26T09:40:00.123Z INFO  lb: "
                              "a\\x0ab\\x09c\\x1b[31m\\xff\\\\ \"q\"\n");
}

static void test_text_fields(void **state)
{
    char line[512];
    log_field_t f[] = {LOG_STR("client", "127.0.0.1:5"),
                       LOG_STR("backend", "w 1"),
                       LOG_QSTR("req", "GET /x\" status=200"),
                       LOG_NULL("status"),
                       LOG_MS("ms", 1.25),
                       LOG_UINT("in", 7),
                       LOG_INT("neg", -3),
                       LOG_STR("empty", ""),
                       LOG_FLAG("tls", 1),
                       LOG_FLAG("off", 0)};
    render(line, sizeof(line), LOG_FMT_TEXT, "access", f, sizeof(f) / sizeof(f[0]));
    assert_string_equal(line, "2025-11-26T09:40:00.123Z INFO  lb: access client=127.0.0.1:5 "
                              "backend=\"w 1\" req=\"GET /x\\\" status=200\" status=- ms=1.2 "
                              "in=7 neg=-3 empty=\"\" tls\n");
}

static void test_json_fields(void **state)
{
    char line[1024];
    log_field_t f[] = {
        LOG_STR("client", "::1"), LOG_QSTR("req", "GET /\"\x01\xc3\xa9\xff"), LOG_NULL("status"),
        LOG_MS("ms", 2.0),        LOG_UINT("in", 9007199254740993ull),        LOG_FLAG("tls", 0)};
    render(line, sizeof(line), LOG_FMT_JSON, "access", f, sizeof(f) / sizeof(f[0]));
    /* ASCII only: every byte above 0x7e is one \u00HH. */
    for (const char *p = line; *p; p++)
        assert_true((unsigned char)*p < 0x80);
    json_t *j = parse_line(line);
    assert_string_equal(json_string_value(json_object_get(j, "ts")), "2025-11-26T09:40:00.123Z");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "daemon")), "lb");
    assert_string_equal(json_string_value(json_object_get(j, "event")), "access");
    /* Each raw byte comes back as the code point of the same value. */
    assert_string_equal(json_string_value(json_object_get(j, "req")),
                        "GET /\"\x01\xc3\x83\xc2\xa9\xc3\xbf");
    assert_true(json_is_null(json_object_get(j, "status")));
    assert_true(json_is_real(json_object_get(j, "ms")));
    assert_true(json_is_false(json_object_get(j, "tls")));
    assert_int_equal(json_object_size(j), 10);
    json_decref(j);
}

static void test_json_message(void **state)
{
    char line[512];
    log_field_t f = {.key = "msg", .type = LOG_F_TEXT, .s = "line\r\nforged\"}"};
    render(line, sizeof(line), LOG_FMT_JSON, NULL, &f, 1);
    json_t *j = parse_line(line);
    assert_string_equal(json_string_value(json_object_get(j, "event")), "message");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "line\r\nforged\"}");
    json_decref(j);
}

/* A value too long for the line is cut with "...", and the line stays one
 * line and, in JSON, valid. */
static void test_cut_lines_stay_valid(void **state)
{
    char big[3000], line[400];
    memset(big, '\x01', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_field_t f[] = {LOG_STR("a", "x"), LOG_QSTR("big", big), LOG_UINT("after", 1)};
    for (int fmt = LOG_FMT_TEXT; fmt <= LOG_FMT_JSON; fmt++) {
        size_t n = render(line, sizeof(line), (enum log_format)fmt, "access", f, 3);
        assert_int_equal(n, strlen(line));
        assert_true(n < sizeof(line));
        assert_null(memchr(line, '\n', n - 1));
        assert_int_equal(line[n - 1], '\n');
        if (fmt == LOG_FMT_JSON) {
            json_t *j = parse_line(line);
            const char *v = json_string_value(json_object_get(j, "big"));
            assert_non_null(v);
            assert_string_equal(v + strlen(v) - 3, "...");
            json_decref(j);
        } else {
            assert_memory_equal(line + n - 4, "...\n", 4);
        }
    }
}

/* The access line: a request target made to look like more fields stays
 * inside req, in both formats. */
static void test_access_line_cannot_be_forged(void **state)
{
    alog_rec_t r = {.client = "127.0.0.1:4000",
                    .backend = "w1",
                    .req = "GET /a\" status=200 backend=evil\tx=\"\n2025 INFO  lb: access",
                    .status = 404,
                    .ms = 1.5,
                    .in = 10,
                    .out = 20,
                    .reason = "not_found",
                    .id = "abc"};
    log_field_t f[ALOG_NFIELDS];
    size_t n = alog_fields(&r, f);
    char line[1024];
    render(line, sizeof(line), LOG_FMT_TEXT, "access", f, n);
    assert_null(memchr(line, '\n', strlen(line) - 1));
    assert_null(strchr(line, '\t'));
    /* Exactly one unescaped status= and backend= outside the quoted req. */
    const char *req = strstr(line, "req=\"");
    assert_non_null(req);
    const char *p = req + 5;
    while (*p && *p != '"')
        p += *p == '\\' ? 2 : 1;
    assert_int_equal(*p, '"');
    assert_string_equal(p + 1, " status=404 ms=1.5 in=10 out=20 reason=not_found id=abc\n");
    assert_non_null(strstr(line, " backend=w1 req="));

    render(line, sizeof(line), LOG_FMT_JSON, "access", f, n);
    json_t *j = parse_line(line);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
    assert_string_equal(json_string_value(json_object_get(j, "backend")), "w1");
    assert_string_equal(json_string_value(json_object_get(j, "req")), r.req);
    json_decref(j);
}

/* A connection whose counts were not kept (the access log was off when its
 * tunnel started) logs them as unknown, not as zero. */
static void test_access_line_uncounted(void **state)
{
    alog_rec_t r = {
        .client = "127.0.0.1:4000", .status = 101, .reason = "client_eof", .uncounted = 1};
    log_field_t f[ALOG_NFIELDS];
    size_t n = alog_fields(&r, f);
    char line[1024];
    render(line, sizeof(line), LOG_FMT_TEXT, "access", f, n);
    assert_non_null(strstr(line, " status=101 ms=- in=- out=- reason=client_eof"));
    render(line, sizeof(line), LOG_FMT_JSON, "access", f, n);
    json_t *j = parse_line(line);
    assert_true(json_is_null(json_object_get(j, "ms")));
    assert_true(json_is_null(json_object_get(j, "in")));
    assert_true(json_is_null(json_object_get(j, "out")));
    json_decref(j);
}

static void test_parse_format(void **state)
{
    enum log_format f;
    assert_int_equal(log_parse_format("json", &f), 0);
    assert_int_equal(f, LOG_FMT_JSON);
    assert_int_equal(log_parse_format("TEXT", &f), 0);
    assert_int_equal(f, LOG_FMT_TEXT);
    assert_int_equal(log_parse_format("xml", &f), -1);
    assert_int_equal(log_parse_format(NULL, &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_message_escapes),
        cmocka_unit_test(test_text_fields),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_message),
        cmocka_unit_test(test_cut_lines_stay_valid),
        cmocka_unit_test(test_access_line_cannot_be_forged),
        cmocka_unit_test(test_access_line_uncounted),
        cmocka_unit_test(test_parse_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
