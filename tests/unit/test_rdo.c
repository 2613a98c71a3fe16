/* Unit tests for common/rdo.c: the Redis flags both daemons take, parsed
 * through cfg as the daemons do. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "rdo.h"

struct opts {
    char *redis;
    rdo_t rdo;
};

/* Parses the NULL-ended flags with a table like the daemons' and turns them
 * into cfg; returns rdo_config's result (or -2 when cfg_parse failed). */
static int run(rds_config_t *cfg, char *err, size_t errlen, ...)
{
    struct opts o;
    memset(&o, 0, sizeof(o));
    const cfg_opt_t t[] = {
        {"redis", CFG_STR, &o.redis, "HOST:PORT", "a Redis", 0, 0},
        RDO_CFG_OPTS(&o.rdo),
        CFG_END,
    };
    char *argv[32] = {"/usr/bin/prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    err[0] = '\0';
    int rc = cfg_parse(t, argc, argv, "Test.", "1", err, errlen) == CFG_OK
                 ? rdo_config(o.redis, &o.rdo, cfg, err, errlen)
                 : -2;
    cfg_free(t);
    return rc;
}

static void test_modes(void **state)
{
    rds_config_t c;
    char err[256];
    assert_int_equal(run(&c, err, sizeof(err), (char *)NULL), 0);
    assert_null(c.addr);
    assert_null(c.sentinels);

    assert_int_equal(run(&c, err, sizeof(err), "--redis", "127.0.0.1:6379", (char *)NULL), 0);
    assert_string_equal(c.addr, "127.0.0.1:6379");
    assert_null(c.sentinels);
    assert_null(c.password);
    rdo_clear(&c);
    assert_null(c.addr);

    /* Repeatable, and each may be a comma list. */
    assert_int_equal(run(&c, err, sizeof(err), "--redis-sentinel", "127.0.0.1:1",
                         "--redis-sentinel", "127.0.0.1:2,127.0.0.1:3", "--redis-master", "m",
                         "--redis-user", "u", "--redis-password-file", "/dev/null", (char *)NULL),
                     -1);
    assert_non_null(strstr(err, "--redis-password-file /dev/null: empty"));

    char path[] = "/tmp/wslb-rdo-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "  s3cret \nsecond line\n", 22), 22);
    close(fd);
    assert_int_equal(run(&c, err, sizeof(err), "--redis-sentinel", "127.0.0.1:1",
                         "--redis-sentinel", "127.0.0.1:2,127.0.0.1:3", "--redis-master", "m",
                         "--redis-user", "u", "--redis-password-file", path,
                         "--redis-sentinel-user", "su", "--redis-sentinel-password-file", path,
                         (char *)NULL),
                     0);
    unlink(path);
    assert_null(c.addr);
    assert_string_equal(c.sentinels, "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3");
    assert_string_equal(c.master, "m");
    assert_string_equal(c.user, "u");
    assert_string_equal(c.password, "s3cret");
    assert_string_equal(c.sentinel_user, "su");
    assert_string_equal(c.sentinel_password, "s3cret");
    rdo_clear(&c);
    assert_null(c.password);
    assert_null(c.sentinels);
}

static void test_bad_combinations(void **state)
{
    rds_config_t c;
    char err[256];
    static const struct {
        const char *a[6];
        const char *want;
    } bad[] = {
        {{"--redis", "127.0.0.1:1", "--redis-sentinel", "127.0.0.1:2"}, "exclude each other"},
        {{"--redis-sentinel", "127.0.0.1:2"}, "needs --redis-master"},
        {{"--redis", "127.0.0.1:1", "--redis-master", "m"}, "need --redis-sentinel"},
        {{"--redis", "127.0.0.1:1", "--redis-sentinel-password-file", "/x"},
         "need --redis-sentinel"},
        {{"--redis-password-file", "/x"}, "need --redis or --redis-sentinel"},
        {{"--redis", "127.0.0.1:1", "--redis-user", "u"}, "needs --redis-password-file"},
        {{"--redis-sentinel", "127.0.0.1:2", "--redis-master", "m", "--redis-sentinel-user", "u"},
         "needs --redis-sentinel-password-file"},
        {{"--redis", "127.0.0.1:1", "--redis-password-file", "/nonexistent/pw"},
         "--redis-password-file /nonexistent/pw: No such file"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *const *a = bad[i].a;
        int rc = run(&c, err, sizeof(err), a[0], a[1], a[2], a[3], a[4], a[5], (char *)NULL);
        if (rc != -1 || strstr(err, bad[i].want) == NULL)
            fail_msg("case %zu: rc %d, error '%s', want '%s'", i, rc, err, bad[i].want);
        /* Nothing is left allocated on failure. */
        assert_null(c.addr);
        assert_null(c.sentinels);
        assert_null(c.password);
    }
    /* An empty --redis means none, as before. */
    assert_int_equal(run(&c, err, sizeof(err), "--redis", "", (char *)NULL), 0);
    assert_null(c.addr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_bad_combinations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
