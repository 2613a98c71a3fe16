/* Unit tests for common/cfg.c. */
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

/* One option table shared by the tests; reset before each. */
struct opts {
    char *listen;
    char *name;
    long rise;
    long neg;
    int verbose;
    int color;
    cfg_list_t backends;
};

static const char DEFAULT_LISTEN[] = "127.0.0.1:8080";

static void opts_reset(struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = (char *)DEFAULT_LISTEN;
    o->rise = 2;
    o->neg = -1;
    o->color = 1;
}

#define TABLE(o)                                                                                   \
    {                                                                                              \
        {"listen", CFG_STR, &(o).listen, "HOST:PORT", "address to listen on", 0, 0},               \
            {"name", CFG_STR, &(o).name, "NAME", "instance name", 0, 0},                           \
            {"rise", CFG_INT, &(o).rise, "N", "successes before up", 1, 10},                       \
            {"neg", CFG_INT, &(o).neg, NULL, "any integer (-1)", 0, 0},                            \
            {"verbose", CFG_BOOL, &(o).verbose, NULL, "log more", 0, 0},                           \
            {"color", CFG_BOOL, &(o).color, NULL, "colour output", 0, 0},                          \
            {"backend", CFG_LIST, &(o).backends, "HOST:PORT", "a backend", 0, 0}, CFG_END          \
    }

static int parse(const cfg_opt_t *t, char *err, size_t errlen, ...)
{
    char *argv[32] = {"/usr/bin/prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    err[0] = '\0';
    return cfg_parse(t, argc, argv, "Test program.", "9.9.9", err, errlen);
}

/* Writes content (len bytes) to a fresh temp file; returns its malloc'd path. */
static char *write_tmp(const void *content, size_t len)
{
    char *path = strdup("/tmp/test_cfg.XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

static void rm_tmp(char *path)
{
    unlink(path);
    free(path);
}

static void test_defaults_are_copied(void **state)
{
    struct opts o;
    opts_reset(&o);
    cfg_opt_t t[] = TABLE(o);
    char err[256];
    assert_int_equal(parse(t, err, sizeof(err), NULL), CFG_OK);
    /* Heap copy, same text: cfg_free must be able to free it. */
    assert_ptr_not_equal(o.listen, DEFAULT_LISTEN);
    assert_string_equal(o.listen, DEFAULT_LISTEN);
    assert_null(o.name);
    assert_int_equal(o.rise, 2);
    assert_int_equal(o.backends.n, 0);
    cfg_free(t);
    assert_null(o.listen);
}

static void test_flag_forms(void **state)
{
    struct opts o;
    opts_reset(&o);
    cfg_opt_t t[] = TABLE(o);
    char err[256];
    int rc = parse(t, err, sizeof(err), "--listen", ":9000", "--name=a=b", "--rise", "7",
                   "--neg=-42", "--verbose", "--no-color", "--backend", "127.0.0.1:1",
                   "--backend=127.0.0.1:2", "--listen", "[::1]:1", NULL);
    assert_int_equal(rc, CFG_OK);
    assert_string_equal(o.listen, "[::1]:1"); /* last one wins */
    assert_string_equal(o.name, "a=b");       /* only the first '=' splits */
    assert_int_equal(o.rise, 7);
    assert_int_equal(o.neg, -42);
    assert_int_equal(o.verbose, 1);
    assert_int_equal(o.color, 0);
    assert_int_equal(o.backends.n, 2);
    assert_string_equal(o.backends.v[0], "127.0.0.1:1");
    assert_string_equal(o.backends.v[1], "127.0.0.1:2");
    cfg_free(t);
    assert_null(o.backends.v);
    assert_int_equal(o.backends.n, 0);

    opts_reset(&o);
    assert_int_equal(parse(t, err, sizeof(err), "--verbose=yes", "--color=OFF", NULL), CFG_OK);
    assert_int_equal(o.verbose, 1);
    assert_int_equal(o.color, 0);
    cfg_free(t);
}

/* Asserts parsing args fails with a message containing want. */
static void parse_fails(const char *want, ...)
{
    struct opts o;
    opts_reset(&o);
    cfg_opt_t t[] = TABLE(o);
    char *argv[16] = {"prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, want);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;)
        argv[argc++] = a;
    va_end(ap);
    char err[256] = "";
    assert_int_equal(cfg_parse(t, argc, argv, NULL, NULL, err, sizeof(err)), CFG_ERR);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' lacks '%s'", err, want);
    cfg_free(t);
}

static void test_flag_errors(void **state)
{
    parse_fails("--rise: not a number: 'x'", "--rise", "x", NULL);
    parse_fails("--rise: not a number: '5x'", "--rise=5x", NULL);
    parse_fails("--rise: not a number: ' 5'", "--rise", " 5", NULL);
    parse_fails("--rise: not a number: ''", "--rise=", NULL);
    parse_fails("--neg: not a number: '99999999999999999999999'", "--neg",
                "99999999999999999999999", NULL);
    parse_fails("--rise: 11 out of range [1, 10]", "--rise", "11", NULL);
    parse_fails("--rise: 0 out of range [1, 10]", "--rise=0", NULL);
    parse_fails("unknown option '--nope'", "--nope", "1", NULL);
    parse_fails("unknown option '--no-listen'", "--no-listen", NULL);
    parse_fails("--listen: missing value", "--listen", NULL);
    parse_fails("--listen: missing value", "--listen", "--verbose", NULL);
    parse_fails("unexpected argument 'stray'", "stray", NULL);
    parse_fails("unexpected argument '-v'", "-v", NULL);
    parse_fails("unexpected argument '--'", "--", NULL);
    parse_fails("--verbose: not a boolean", "--verbose=maybe", NULL);
    parse_fails("--help takes no value", "--help=1", NULL);
    parse_fails("--config: missing value", "--config", NULL);
    parse_fails("/nonexistent/x.conf: No such file", "--config", "/nonexistent/x.conf", NULL);
}

static void test_config_file(void **state)
{
    static const char text[] = "# a comment\n"
                               "\n"
                               "   listen   =   127.0.0.1:7000   \n"
                               "name = \"quoted value\"\r\n"
                               "\t# indented comment\n"
                               "rise=3\n"
                               "verbose = true\n"
                               "backend = 127.0.0.1:1\n"
                               "--backend = '127.0.0.1:2'\n"
                               "color = no"; /* no final newline */
    char *path = write_tmp(text, sizeof(text) - 1);
    struct opts o;
    opts_reset(&o);
    cfg_opt_t t[] = TABLE(o);
    char err[256];
    /* Flags win over the file even when they come first; lists accumulate. */
    int rc = parse(t, err, sizeof(err), "--rise", "9", "--backend", "127.0.0.1:3", "--config", path,
                   NULL);
    assert_int_equal(rc, CFG_OK);
    assert_string_equal(o.listen, "127.0.0.1:7000");
    assert_string_equal(o.name, "quoted value");
    assert_int_equal(o.rise, 9);
    assert_int_equal(o.verbose, 1);
    assert_int_equal(o.color, 0);
    assert_int_equal(o.backends.n, 3);
    assert_string_equal(o.backends.v[0], "127.0.0.1:1");
    assert_string_equal(o.backends.v[1], "127.0.0.1:2");
    assert_string_equal(o.backends.v[2], "127.0.0.1:3");
    cfg_free(t);
    rm_tmp(path);
}

static void test_config_quotes_and_empty(void **state)
{
    static const char text[] = "name = \"\"\n"
                               "listen = \"\n"
                               "rise = '4'\n";
    char *path = write_tmp(text, sizeof(text) - 1);
    struct opts o;
    opts_reset(&o);
    cfg_opt_t t[] = TABLE(o);
    char err[256];
    assert_int_equal(parse(t, err, sizeof(err), "--config", path, NULL), CFG_OK);
    assert_string_equal(o.name, "");
    assert_string_equal(o.listen, "\""); /* a lone quote is kept as is */
    assert_int_equal(o.rise, 4);
    cfg_free(t);
    rm_tmp(path);
}

/* Loads content as a config file and checks the error names file:line. */
static void file_fails(const void *content, size_t len, unsigned line, const char *want)
{
    char *path = write_tmp(content, len);
    struct opts o;
    opts_reset(&o);
    cfg_opt_t t[] = TABLE(o);
    char err[512] = "";
    assert_int_equal(parse(t, err, sizeof(err), "--config", path, NULL), CFG_ERR);
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, want) == NULL)
        fail_msg("error '%s' is not '%s...%s'", err, prefix, want);
    cfg_free(t);
    rm_tmp(path);
}

static void test_config_errors(void **state)
{
    static const char unknown[] = "listen = :1\n\nfoo = 1\n";
    file_fails(unknown, sizeof(unknown) - 1, 3, "unknown option 'foo'");
    static const char noeq[] = "# ok\nlisten :1\n";
    file_fails(noeq, sizeof(noeq) - 1, 2, "expected 'key = value'");
    static const char nokey[] = " = 5\n";
    file_fails(nokey, sizeof(nokey) - 1, 1, "missing key");
    static const char badint[] = "rise = 1\nrise = eleven\n";
    file_fails(badint, sizeof(badint) - 1, 2, "--rise: not a number: 'eleven'");
    static const char range[] = "rise = 100\n";
    file_fails(range, sizeof(range) - 1, 1, "out of range");
    static const char nul[] = "listen = :1\nname = a\0b\n";
    file_fails(nul, sizeof(nul) - 1, 2, "NUL byte");
    static const char nested[] = "config = /etc/passwd\n";
    file_fails(nested, sizeof(nested) - 1, 1, "unknown option 'config'");

    /* A line far longer than any real option. */
    size_t n = 100000;
    char *longline = malloc(n);
    assert_non_null(longline);
    memcpy(longline, "# ok\nname = ", 12);
    memset(longline + 12, 'a', n - 13);
    longline[n - 1] = '\n';
    file_fails(longline, n, 2, "line longer than");
    free(longline);
}

static void test_config_too_large(void **state)
{
    /* Valid lines but far too many of them: refused before parsing. */
    size_t n = 3 * 1024 * 1024;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (i % 16 == 15) ? '\n' : '#';
    char *path = write_tmp(big, n);
    free(big);
    struct opts o;
    opts_reset(&o);
    cfg_opt_t t[] = TABLE(o);
    char err[512] = "";
    assert_int_equal(parse(t, err, sizeof(err), "--config", path, NULL), CFG_ERR);
    assert_non_null(strstr(err, "larger than"));
    cfg_free(t);
    rm_tmp(path);
}

static void test_config_garbage_never_crashes(void **state)
{
    /* Deterministic pseudo-random files mixing bytes that matter to the
     * parser; every outcome is fine except a crash or a leak. */
    static const char alphabet[] = "=#\"' \t\r\n\0abrisevlnt0123456789-";
    uint32_t seed = 12345;
    char data[512];
    for (int iter = 0; iter < 300; iter++) {
        size_t len = (size_t)(iter * 7) % sizeof(data);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            data[i] =
                (iter & 1) ? (char)(seed >> 16) : alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        char *path = write_tmp(data, len);
        struct opts o;
        opts_reset(&o);
        cfg_opt_t t[] = TABLE(o);
        char err[256] = "";
        int rc = parse(t, err, sizeof(err), "--config", path, NULL);
        assert_true(rc == CFG_OK || rc == CFG_ERR);
        if (rc == CFG_ERR)
            assert_true(strlen(err) > 0);
        cfg_free(t);
        rm_tmp(path);
    }
}

/* Runs cfg_parse with stdout captured into out. */
static int parse_capture(const cfg_opt_t *t, char *out, size_t outlen, ...)
{
    char *argv[8] = {"./bin/prog"};
    int argc = 1;
    va_list ap;
    va_start(ap, outlen);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 7;)
        argv[argc++] = a;
    va_end(ap);

    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
    char err[256] = "";
    int rc = cfg_parse(t, argc, argv, "Balances things.", "1.2.3", err, sizeof(err));
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, outlen - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return rc;
}

static void test_help_and_version(void **state)
{
    struct opts o;
    opts_reset(&o);
    cfg_opt_t t[] = TABLE(o);
    char out[4096];
    /* --help wins even next to a config file that does not exist. */
    assert_int_equal(parse_capture(t, out, sizeof(out), "--config", "/nonexistent", "-h", NULL),
                     CFG_EXIT);
    assert_non_null(strstr(out, "Usage: prog [OPTIONS]"));
    assert_non_null(strstr(out, "Balances things."));
    assert_non_null(strstr(out, "--listen HOST:PORT"));
    assert_non_null(strstr(out, "address to listen on"));
    assert_non_null(strstr(out, "(default: 127.0.0.1:8080)"));
    assert_non_null(strstr(out, "--rise N"));
    assert_non_null(
        strstr(out, "--rise N                 successes before up (default: 2) [1..10]\n"));
    /* The default is not repeated when the help text already gives it. */
    assert_non_null(strstr(out, "any integer (-1)\n"));
    assert_non_null(strstr(out, "(default: on)"));
    assert_non_null(strstr(out, "--verbose "));
    assert_null(strstr(out, "--verbose VALUE"));
    assert_non_null(strstr(out, "--backend HOST:PORT"));
    assert_non_null(strstr(out, "--config FILE"));
    assert_non_null(strstr(out, "--version"));
    cfg_free(t);

    opts_reset(&o);
    assert_int_equal(parse_capture(t, out, sizeof(out), "--version", NULL), CFG_EXIT);
    assert_string_equal(out, "prog 1.2.3\n");
    cfg_free(t);
}

/* The help says "(repeatable)" once, prints "auto" for a default that is a
 * placeholder outside the option's bounds, and "-h" is --help. */
static void test_help_placeholders_and_short_flag(void **state)
{
    long queue = -1, head = 0, plain = 5;
    cfg_list_t listen = {0}, peers = {0};
    cfg_opt_t t[] = {
        {"listen", CFG_LIST, &listen, "HOST:PORT", "listener, repeatable", 0, 0},
        {"peer", CFG_LIST, &peers, "HOST", "a peer", 0, 0},
        {"queue", CFG_INT, &queue, "N", "waiting runs (4 x slots)", 0, 100},
        {"max-head", CFG_INT, &head, "BYTES", "largest head", 512, 4096},
        {"plain", CFG_INT, &plain, "N", "in range", 1, 10},
        CFG_END,
    };
    char out[4096];
    assert_int_equal(parse_capture(t, out, sizeof(out), "--config", "/nonexistent", "-h", NULL),
                     CFG_EXIT);
    assert_non_null(strstr(out, "Usage: prog [OPTIONS]"));
    assert_non_null(strstr(out, "listener, repeatable\n"));
    assert_null(strstr(out, "repeatable (repeatable)"));
    assert_non_null(strstr(out, "a peer (repeatable)\n"));
    assert_non_null(strstr(out, "waiting runs (4 x slots) (default: auto) [0..100]\n"));
    assert_non_null(strstr(out, "largest head (default: auto) [512..4096]\n"));
    assert_null(strstr(out, "(default: -1)"));
    assert_null(strstr(out, "(default: 0)"));
    assert_non_null(strstr(out, "in range (default: 5) [1..10]\n"));
    assert_non_null(strstr(out, "also -h"));
    cfg_free(t);

    /* Only "-h" itself: other short forms stay errors. */
    char err[256] = "";
    queue = -1;
    assert_int_equal(parse(t, err, sizeof(err), "-hv", NULL), CFG_ERR);
    assert_non_null(strstr(err, "unexpected argument '-hv'"));
    cfg_free(t);
}

static void test_cfg_set_direct(void **state)
{
    struct opts o;
    memset(&o, 0, sizeof(o));
    cfg_opt_t t[] = TABLE(o);
    char err[256] = "";
    assert_int_equal(cfg_set(t, "listen", ":1", err, sizeof(err)), 0);
    assert_int_equal(cfg_set(t, "listen", ":2", err, sizeof(err)), 0); /* old one freed */
    assert_string_equal(o.listen, ":2");
    assert_int_equal(cfg_set(t, "verbose", NULL, err, sizeof(err)), 0);
    assert_int_equal(o.verbose, 1);
    assert_int_equal(cfg_set(t, "listen", NULL, err, sizeof(err)), -1);
    assert_string_equal(err, "--listen: missing value");
    assert_int_equal(cfg_set(t, "bogus", "1", err, sizeof(err)), -1);
    assert_string_equal(err, "unknown option 'bogus'");
    assert_int_equal(cfg_set(t, "neg", "-9223372036854775808", err, sizeof(err)), 0);
    assert_true(o.neg < 0);
    cfg_free(t);
}

/* Both daemons read shared secrets through cfg_read_secret: the first line,
 * blanks around it dropped; empty, control characters or no file: refused. */
static void test_read_secret(void **state)
{
    static const struct {
        const char *content;
        const char *want; /* NULL: refused */
    } cases[] = {
        {"s3cret\n", "s3cret"},
        {"  tok en \t\r\nsecond line\n", "tok en"},
        {"no-newline", "no-newline"},
        {"\n", NULL},
        {"", NULL},
        {"   \n", NULL},
        {"bad\x01char\n", NULL},
    };
    char path[] = "/tmp/test_cfg_secret.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(cases[i].content, f);
        fclose(f);
        char err[256] = "";
        char *got = cfg_read_secret("--x", path, err, sizeof(err));
        if (cases[i].want == NULL) {
            assert_null(got);
            assert_non_null(strstr(err, "--x"));
        } else {
            assert_non_null(got);
            assert_string_equal(got, cases[i].want);
        }
        free(got);
    }
    unlink(path);
    char err[256] = "";
    assert_null(cfg_read_secret("--x", "/nonexistent/secret", err, sizeof(err)));
    assert_non_null(strstr(err, "No such file"));
}

static void test_parse_milli(void **state)
{
    (void)state;
    unsigned m = 7;
    char err[128];
    assert_int_equal(cfg_parse_milli("f", "1.25", 1.0, 100.0, &m, err, sizeof(err)), 0);
    assert_int_equal(m, 1250);
    assert_int_equal(cfg_parse_milli("f", "100", 1.0, 100.0, &m, err, sizeof(err)), 0);
    assert_int_equal(m, 100000);
    assert_int_equal(cfg_parse_milli("f", "1", 1.0, 100.0, &m, err, sizeof(err)), 0);
    assert_int_equal(m, 1000);
    const char *bad[] = {"", "0.99", "100.5", "1.2x", "nan", "inf", "-3", "1e999", " "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        m = 7;
        assert_int_equal(cfg_parse_milli("load-factor", bad[i], 1.0, 100.0, &m, err, sizeof(err)),
                         -1);
        assert_int_equal(m, 7); /* untouched */
        assert_non_null(strstr(err, "--load-factor '"));
        assert_non_null(strstr(err, "want a number from 1.0 to 100"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_copied),
        cmocka_unit_test(test_flag_forms),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_config_file),
        cmocka_unit_test(test_config_quotes_and_empty),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_too_large),
        cmocka_unit_test(test_config_garbage_never_crashes),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_help_placeholders_and_short_flag),
        cmocka_unit_test(test_cfg_set_direct),
        cmocka_unit_test(test_read_secret),
        cmocka_unit_test(test_parse_milli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
