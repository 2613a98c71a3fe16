/* Unit tests for common/met.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "met.h"
#include "met_names.h"

/* Renders r into a NUL-terminated heap string the caller frees. */
static char *render(met_registry_t *r)
{
    buf_t b = BUF_INIT;
    assert_int_equal(met_render(r, &b), 0);
    char *s = strndup(buf_head(&b), buf_size(&b));
    assert_non_null(s);
    buf_free(&b);
    return s;
}

static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static double half(void *ud)
{
    return *(double *)ud / 2;
}

static void test_counters_and_gauges(void **state)
{
    met_registry_t *r = met_create();
    assert_non_null(r);
    met_counter_t *ok = met_counter(r, "evals_total", "verdict=\"ok\"", "Evaluations done.");
    met_gauge_t *g = met_gauge(r, "inflight", NULL, "Requests in flight.");
    met_counter_t *bad = met_counter(r, "evals_total", "verdict=\"error\"", NULL);
    assert_non_null(ok);
    assert_non_null(g);
    assert_non_null(bad);
    assert_ptr_not_equal(ok, bad);
    double base = 5;
    assert_int_equal(met_gauge_fn(r, "half", NULL, "Half of five.", half, &base), 0);

    met_inc(ok, 3);
    met_inc(bad, 1);
    met_set(g, 10);
    met_add(g, -12);
    assert_int_equal(met_counter_get(ok), 3);
    assert_int_equal(met_gauge_get(g), -2);

    char *s = render(r);
    const char *want = "# HELP evals_total Evaluations done.\n"
                       "# TYPE evals_total counter\n"
                       "evals_total{verdict=\"ok\"} 3\n"
                       "evals_total{verdict=\"error\"} 1\n"
                       "# HELP inflight Requests in flight.\n"
                       "# TYPE inflight gauge\n"
                       "inflight -2\n"
                       "# HELP half Half of five.\n"
                       "# TYPE half gauge\n"
                       "half 2.5\n";
    assert_string_equal(s, want);
    free(s);

    /* The function is evaluated at each render. */
    base = 9;
    s = render(r);
    assert_non_null(strstr(s, "half 4.5\n"));
    free(s);
    met_free(r);
}

static void test_registration_rules(void **state)
{
    met_registry_t *r = met_create();
    met_counter_t *a = met_counter(r, "x_total", "k=\"1\"", "help");
    /* Same name and labels: the same object, so callers may re-register. */
    assert_ptr_equal(met_counter(r, "x_total", "k=\"1\"", NULL), a);
    /* A name holds one type only. */
    assert_null(met_gauge(r, "x_total", "k=\"2\"", NULL));
    double b[] = {1};
    assert_null(met_hist(r, "x_total", NULL, NULL, b, 1));
    /* Invalid names are refused. */
    assert_null(met_counter(r, "", NULL, NULL));
    assert_null(met_counter(r, "9lives", NULL, NULL));
    assert_null(met_counter(r, "has space", NULL, NULL));
    assert_null(met_counter(r, "dash-ed", NULL, NULL));
    assert_non_null(met_counter(r, "ns:sub_total9", NULL, NULL));
    /* Bounds must ascend strictly and be finite. */
    double bad1[] = {1, 1};
    double bad2[] = {2, 1};
    double bad3[] = {1, NAN};
    assert_null(met_hist(r, "h", NULL, NULL, bad1, 2));
    assert_null(met_hist(r, "h", NULL, NULL, bad2, 2));
    assert_null(met_hist(r, "h", NULL, NULL, bad3, 2));
    double good[] = {0.1, 1};
    met_hist_t *h = met_hist(r, "h", NULL, NULL, good, 2);
    assert_non_null(h);
    assert_ptr_equal(met_hist(r, "h", NULL, NULL, good, 2), h);
    assert_null(met_hist(r, "h", NULL, NULL, b, 1)); /* different bounds */
    assert_int_equal(met_gauge_fn(r, "fn", NULL, NULL, NULL, NULL), -1);
    met_free(r);
    met_free(NULL);
}

static void test_histogram_render(void **state)
{
    met_registry_t *r = met_create();
    double bounds[] = {0.005, 0.5, 2.5};
    double copy[3];
    memcpy(copy, bounds, sizeof(copy));
    met_hist_t *ok = met_hist(r, "eval_seconds", "verdict=\"ok\"", "Eval time.", copy, 3);
    met_hist_t *plain = met_hist(r, "eval_seconds", NULL, NULL, bounds, 3);
    assert_non_null(ok);
    assert_non_null(plain);
    copy[0] = 99; /* the registry keeps its own copy */

    met_observe(ok, 0.5); /* le is inclusive */
    met_observe(ok, 0.001);
    met_observe(ok, 1);
    met_observe(ok, 100);
    met_observe(ok, NAN); /* ignored */
    assert_int_equal(met_hist_count(ok), 4);

    char *s = render(r);
    const char *want = "# HELP eval_seconds Eval time.\n"
                       "# TYPE eval_seconds histogram\n"
                       "eval_seconds_bucket{verdict=\"ok\",le=\"0.005\"} 1\n"
                       "eval_seconds_bucket{verdict=\"ok\",le=\"0.5\"} 2\n"
                       "eval_seconds_bucket{verdict=\"ok\",le=\"2.5\"} 3\n"
                       "eval_seconds_bucket{verdict=\"ok\",le=\"+Inf\"} 4\n"
                       "eval_seconds_sum{verdict=\"ok\"} 101.501\n"
                       "eval_seconds_count{verdict=\"ok\"} 4\n"
                       "eval_seconds_bucket{le=\"0.005\"} 0\n"
                       "eval_seconds_bucket{le=\"0.5\"} 0\n"
                       "eval_seconds_bucket{le=\"2.5\"} 0\n"
                       "eval_seconds_bucket{le=\"+Inf\"} 0\n"
                       "eval_seconds_sum 0\n"
                       "eval_seconds_count 0\n";
    assert_string_equal(s, want);
    assert_int_equal(count_substr(s, "# TYPE"), 1);
    free(s);
    met_free(r);
}

static void test_quantile(void **state)
{
    met_registry_t *r = met_create();
    double bounds[] = {1, 2, 5, 10};
    met_hist_t *h = met_hist(r, "lat", NULL, NULL, bounds, 4);
    assert_float_equal(met_hist_quantile(h, 0.5), 0, 0);
    /* 50 values in (0,1], 40 in (1,2], 9 in (2,5], 1 above 10. */
    for (int i = 0; i < 50; i++)
        met_observe(h, 0.5);
    for (int i = 0; i < 40; i++)
        met_observe(h, 1.5);
    for (int i = 0; i < 9; i++)
        met_observe(h, 3);
    met_observe(h, 50);
    assert_float_equal(met_hist_quantile(h, 0), 1, 0);
    assert_float_equal(met_hist_quantile(h, 0.5), 1, 0);
    assert_float_equal(met_hist_quantile(h, 0.51), 2, 0);
    assert_float_equal(met_hist_quantile(h, 0.9), 2, 0);
    assert_float_equal(met_hist_quantile(h, 0.95), 5, 0);
    assert_float_equal(met_hist_quantile(h, 0.99), 5, 0);
    /* The top value lies past the last bound: the largest finite bound. */
    assert_float_equal(met_hist_quantile(h, 1), 10, 0);
    assert_float_equal(met_hist_quantile(h, 7), 10, 0);
    assert_float_equal(met_hist_quantile(h, -1), 1, 0);

    met_hist_t *nob = met_hist(r, "nob", NULL, NULL, NULL, 0);
    assert_non_null(nob);
    met_observe(nob, 1);
    assert_true(isinf(met_hist_quantile(nob, 0.5)));
    char *s = render(r);
    assert_non_null(strstr(s, "nob_bucket{le=\"+Inf\"} 1\nnob_sum 1\nnob_count 1\n"));
    free(s);
    met_free(r);
}

static void test_help_escaping_and_specials(void **state)
{
    met_registry_t *r = met_create();
    double nan = NAN, inf = INFINITY;
    assert_int_equal(met_gauge_fn(r, "g", "a=\"1\"", "line\\one\ntwo", half, &nan), 0);
    assert_int_equal(met_gauge_fn(r, "g", "a=\"2\"", NULL, half, &inf), 0);
    char *s = render(r);
    assert_string_equal(s, "# HELP g line\\\\one\\ntwo\n"
                           "# TYPE g gauge\n"
                           "g{a=\"1\"} NaN\n"
                           "g{a=\"2\"} +Inf\n");
    free(s);
    met_free(r);
}

#define THREADS    4
#define PER_THREAD 50000

struct worker {
    met_hist_t *h;
    met_counter_t *c;
    met_gauge_t *g;
};

static void *observe_many(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        /* Multiples of 0.25 add up exactly in a double, so any lost update
         * in the sum shows as an inexact total. */
        met_observe(w->h, (i % 4) * 0.25);
        met_inc(w->c, 1);
        met_add(w->g, (i & 1) ? 1 : -1);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    met_registry_t *r = met_create();
    double bounds[] = {0.1, 0.3, 0.6};
    struct worker w = {
        .h = met_hist(r, "t", NULL, NULL, bounds, 3),
        .c = met_counter(r, "c", NULL, NULL),
        .g = met_gauge(r, "g", NULL, NULL),
    };
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, observe_many, &w), 0);
    /* Rendering concurrently with the updates must be safe too. */
    for (int i = 0; i < 20; i++) {
        char *s = render(r);
        free(s);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);

    assert_int_equal(met_hist_count(w.h), THREADS * PER_THREAD);
    assert_int_equal(met_counter_get(w.c), THREADS * PER_THREAD);
    assert_int_equal(met_gauge_get(w.g), 0);
    char *s = render(r);
    char want[128];
    /* Each thread adds (0 + 0.25 + 0.5 + 0.75) per 4 observations. */
    snprintf(want, sizeof(want), "t_sum %.15g\n", THREADS * (PER_THREAD / 4) * 1.5);
    assert_non_null(strstr(s, want));
    snprintf(want, sizeof(want), "t_bucket{le=\"0.1\"} %d\n", THREADS * PER_THREAD / 4);
    assert_non_null(strstr(s, want));
    snprintf(want, sizeof(want), "t_bucket{le=\"0.3\"} %d\n", THREADS * PER_THREAD / 2);
    assert_non_null(strstr(s, want));
    free(s);
    met_free(r);
}

/* Legacy names (met_names.h): the same series rendered again under the old
 * name, in the old unit, only while the registry's legacy switch is on. */
static void test_legacy_names(void **state)
{
    met_registry_t *r = met_create();
    assert_int_equal(met_legacy(r), 1);
    double b[] = {0.001, 0.01};
    met_hist_t *h = met_hist(r, MN_WK_SANDBOX_START, NULL, "Start time.", b, 2);
    met_counter_t *c = met_counter(r, MN_WK_VERDICTS, "verdict=\"ok\"", "By verdict.");
    met_counter_t *n = met_counter(r, "wslb_test_total", NULL, "No legacy twin.");
    met_observe(h, 0.004);
    met_inc(c, 3);
    met_inc(n, 1);
    buf_t out = BUF_INIT;
    assert_int_equal(met_render(r, &out), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    const char *t = buf_head(&out);
    assert_non_null(
        strstr(t, "wslb_worker_sandbox_start_duration_seconds_bucket{le=\"0.01\"} 1\n"));
    assert_non_null(strstr(t, "wslb_worker_sandbox_start_duration_seconds_sum 0.004\n"));
    assert_non_null(strstr(t, "# TYPE worker_sandbox_start_ms histogram\n"));
    assert_non_null(strstr(t, "worker_sandbox_start_ms_bucket{le=\"1\"} 0\n"));
    assert_non_null(strstr(t, "worker_sandbox_start_ms_bucket{le=\"10\"} 1\n"));
    assert_non_null(strstr(t, "worker_sandbox_start_ms_sum 4\n"));
    assert_non_null(strstr(t, "worker_sandbox_start_ms_count 1\n"));
    assert_non_null(strstr(t, "wslb_worker_verdicts_total{verdict=\"ok\"} 3\n"));
    assert_non_null(strstr(t, "worker_verdicts_total{verdict=\"ok\"} 3\n"));
    assert_non_null(
        strstr(t, "# HELP worker_verdicts_total Deprecated: wslb_worker_verdicts_total"));
    assert_int_equal(strstr(t, "wslb_test_total 1\n") != NULL, 1);
    buf_reset(&out);
    met_set_legacy(r, 0);
    assert_int_equal(met_render(r, &out), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    t = buf_head(&out);
    assert_non_null(strstr(t, "wslb_worker_verdicts_total{verdict=\"ok\"} 3\n"));
    assert_null(strstr(t, "\nworker_"));
    assert_null(strstr(t, " worker_"));
    buf_free(&out);
    met_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_gauges),
        cmocka_unit_test(test_registration_rules),
        cmocka_unit_test(test_histogram_render),
        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_help_escaping_and_specials),
        cmocka_unit_test(test_concurrent_updates),
        cmocka_unit_test(test_legacy_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
