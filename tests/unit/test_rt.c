/* Unit tests for the runtimes parser (worker/rt.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rt.h"

static int load(rt_table_t *t, const char *text, char *err, size_t errlen)
{
    return rt_load_string(t, text, strlen(text), "test", err, errlen);
}

static void test_sections(void **state)
{
    rt_table_t t = {0};
    char err[256];
    assert_int_equal(
        load(&t,
             "# comment\n[python3]\nfile = main.py\nrun = /usr/bin/python3 -I main.py\n"
             "\n[c]\nfile=main.c\nbuild = /usr/bin/gcc -o main main.c\nrun = ./main\n",
             err, sizeof(err)),
        0);
    assert_int_equal(t.n, 2);
    const rt_runtime_t *py = rt_find(&t, "python3");
    assert_non_null(py);
    assert_string_equal(py->file, "main.py");
    assert_string_equal(py->run_argv[0], "/usr/bin/python3");
    assert_string_equal(py->run_argv[2], "main.py");
    assert_null(py->run_argv[3]);
    assert_null(py->build_argv);
    const rt_runtime_t *c = rt_find(&t, "c");
    assert_non_null(c);
    assert_string_equal(c->build_argv[0], "/usr/bin/gcc");
    assert_null(rt_find(&t, "ruby"));
    rt_free(&t);
}

static void test_replace_same_name(void **state)
{
    rt_table_t t = {0};
    char err[256];
    assert_int_equal(load(&t, "[sh]\nfile = a.sh\nrun = /bin/sh a.sh\n", err, sizeof(err)), 0);
    assert_int_equal(load(&t, "[sh]\nfile = b.sh\nrun = /bin/sh b.sh\n", err, sizeof(err)), 0);
    assert_int_equal(t.n, 1);
    assert_string_equal(rt_find(&t, "sh")->file, "b.sh");
    rt_free(&t);
}

static void test_errors(void **state)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"file = x\n", "outside"},
        {"[a]\nfile = main.py\n", "no 'run'"},
        {"[a]\nrun = /bin/true\n", "no 'file'"},
        {"[a\n", "bad section"},
        {"[a b]\n", "bad runtime name"},
        {"[a]\nfile = ../etc/passwd\nrun = /bin/true\n", "plain file name"},
        {"[a]\nfile = x/y\nrun = /bin/true\n", "plain file name"},
        {"[a]\nfile = ..\nrun = /bin/true\n", "plain file name"},
        {"[a]\nfile = x\nrun = /bin/sh 'unterminated\n", "unterminated"},
        {"[a]\nfile = x\nrun = \n", "empty command"},
        {"[a]\nfile = x\nbogus = 1\nrun = /bin/true\n", "unknown key"},
        {"[a]\njust words\n", "key = value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rt_table_t t = {0};
        char err[256] = "";
        assert_int_equal(load(&t, cases[i].text, err, sizeof(err)), -1);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: error '%s' lacks '%s'", i, err, cases[i].want);
        assert_int_equal(t.n, 0);
        rt_free(&t);
    }
}

static void test_nul_byte(void **state)
{
    rt_table_t t = {0};
    char err[256];
    static const char text[] = "[a]\nfile = x\0\nrun = /bin/true\n";
    assert_int_equal(rt_load_string(&t, text, sizeof(text) - 1, "t", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "NUL"));
    rt_free(&t);
}

static void test_split(void **state)
{
    char err[128];
    char **a = rt_split("  /bin/sh -c 'echo a  b' \"x \\\"y\\\"\"  ", err, sizeof(err));
    assert_non_null(a);
    assert_string_equal(a[0], "/bin/sh");
    assert_string_equal(a[1], "-c");
    assert_string_equal(a[2], "echo a  b");
    assert_string_equal(a[3], "x \"y\"");
    assert_null(a[4]);
    rt_argv_free(a);
    assert_null(rt_split("   ", err, sizeof(err)));
    assert_null(rt_split("a \"b", err, sizeof(err)));
}

static void test_prune_missing(void **state)
{
    rt_table_t t = {0};
    char err[256];
    assert_int_equal(load(&t,
                          "[ok]\nfile = x\nrun = /bin/sh x\n"
                          "[gone]\nfile = x\nrun = /nonexistent/interp x\n"
                          "[built]\nfile = x.c\nbuild = /bin/sh -c true\nrun = /work/main\n",
                          err, sizeof(err)),
                     0);
    rt_prune_missing(&t);
    assert_int_equal(t.n, 2);
    assert_non_null(rt_find(&t, "ok"));
    assert_null(rt_find(&t, "gone"));
    assert_non_null(rt_find(&t, "built"));
    rt_free(&t);
}

static void test_defaults(void **state)
{
    rt_table_t t = {0};
    assert_int_equal(rt_load_defaults(&t), 0);
    assert_non_null(rt_find(&t, "sh")); /* /bin/sh exists everywhere */
    rt_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sections), cmocka_unit_test(test_replace_same_name),
        cmocka_unit_test(test_errors),   cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_split),    cmocka_unit_test(test_prune_missing),
        cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests_name("rt", tests, NULL, NULL);
}
