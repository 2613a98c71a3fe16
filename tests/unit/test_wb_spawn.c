/* Unit tests for `wsbench spawn`, the unsandboxed baseline of an evaluation:
 * the {dir} expansion, and real runs of /bin/sh counted, failed, timed out
 * and bounded. The bench sources are included directly, as in test_wb.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../bench/wb_hist.c"
#include "../../bench/wb_spawn.c"

static void test_expand_dir(void **state)
{
    char *const argv[] = {"bwrap", "--bind", "{dir}", "/work", "x{dir}/y{dir}", "{dir", NULL};
    char *out[8], buf[256], err[128] = "";
    assert_int_equal(wb_spawn_expand(argv, "/tmp/s0", out, 8, buf, sizeof(buf), err, sizeof(err)),
                     0);
    assert_string_equal(out[0], "bwrap");
    assert_string_equal(out[2], "/tmp/s0");
    assert_string_equal(out[3], "/work");
    assert_string_equal(out[4], "x/tmp/s0/y/tmp/s0");
    assert_string_equal(out[5], "{dir"); /* not a placeholder: copied as is */
    assert_null(out[6]);
}

static void test_expand_limits(void **state)
{
    char *const argv[] = {"a", "{dir}{dir}{dir}", NULL};
    char *out[8], buf[16], err[128] = "";
    /* 1 + 1 + 3 * 6 + 1 bytes do not fit in 16 */
    assert_int_equal(wb_spawn_expand(argv, "/12345", out, 8, buf, sizeof(buf), err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "longer"));
    char big[64];
    err[0] = '\0';
    assert_int_equal(wb_spawn_expand(argv, "d", out, 2, big, sizeof(big), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "arguments"));
}

/* Runs /bin/sh main.sh with code, conc at once, until count or duration. */
static void run_sh(const char *code, long conc, long count, double duration, double timeout,
                   wb_spawn_result_t *r)
{
    char root[] = "/tmp/test-wb-spawn.XXXXXX", err[256] = "";
    char *const argv[] = {"/bin/sh", "main.sh", NULL};
    assert_non_null(mkdtemp(root));
    wb_spawn_opts_t o = {.conc = conc,
                         .count = count,
                         .duration = duration,
                         .run_timeout = timeout,
                         .code = code,
                         .file = "main.sh",
                         .root = root,
                         .argv = argv};
    int rc = wb_spawn_run(&o, r, err, sizeof(err));
    if (rc != 0)
        fail_msg("wb_spawn_run: %s", err);
    assert_int_equal(rmdir(root), 0); /* the slots' dirs and files are gone */
}

static void test_runs_counted(void **state)
{
    wb_spawn_result_t r;
    /* The program reads its own file from its slot's directory: the code is
     * written there before each run, and output on both pipes is drained. */
    run_sh("grep -q marker main.sh && echo out && echo err >&2 # marker", 3, 7, 30, 10, &r);
    assert_int_equal(r.runs, 7);
    assert_int_equal(r.failed, 0);
    assert_int_equal(r.lat.count, 7);
    assert_true(r.elapsed > 0);
    assert_true(r.lat.min > 0);
}

static void test_failures_counted(void **state)
{
    wb_spawn_result_t r;
    run_sh("exit 3", 2, 4, 30, 10, &r);
    assert_int_equal(r.runs, 0);
    assert_int_equal(r.failed, 4);
    assert_int_equal(r.lat.count, 0);
    assert_non_null(strstr(r.first_err, "exit status 3"));
}

static void test_timeout_kills(void **state)
{
    wb_spawn_result_t r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_sh("exec sleep 30", 1, 1, 30, 0.2, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(r.runs, 0);
    assert_int_equal(r.failed, 1);
    assert_int_equal(r.timeouts, 1);
    assert_true(t1.tv_sec - t0.tv_sec < 10);
}

static void test_duration_bounds(void **state)
{
    wb_spawn_result_t r;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* No count: the duration ends it, and the runs cut short are not counted. */
    run_sh("exec sleep 30", 2, 0, 0.3, 60, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(r.runs, 0);
    assert_int_equal(r.failed, 0);
    assert_true(t1.tv_sec - t0.tv_sec < 10);
}

static void test_orphan_cpu_seen(void **state)
{
    wb_spawn_result_t r;
    /* The shell exits at once and leaves a busy child behind, as bwrap leaves
     * its init: the orphan comes back to the driver and its CPU counts. */
    run_sh("(i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done) >/dev/null 2>&1 & exit 0", 1, 1, 30,
           10, &r);
    assert_int_equal(r.runs, 1);
    assert_true(r.cpu_child_us >= 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand_dir),      cmocka_unit_test(test_expand_limits),
        cmocka_unit_test(test_runs_counted),    cmocka_unit_test(test_failures_counted),
        cmocka_unit_test(test_timeout_kills),   cmocka_unit_test(test_duration_bounds),
        cmocka_unit_test(test_orphan_cpu_seen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
