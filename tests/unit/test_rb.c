/* Unit tests for worker/rb.c's decision: when a worker starts shedding
 * after a scale-out, how many, and when it stops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rb.h"

static const rb_config_t cfg = {.threshold_milli = 1200, .hold_s = 5, .idle_s = 30, .rate = 10};

/* 4 workers of 100 and a fifth of 0: each old one sheds 20, after the
 * hold, once; the new one never sheds. */
static void test_scale_out(void **state)
{
    rb_state_t s;
    rb_state_init(&s);
    rb_view_t v = {.mine = 100, .total = 400, .max = 100, .n = 5};
    assert_true(rb_ratio(&v) > 1.2);
    assert_int_equal(rb_decide(&s, &cfg, &v, 100.0), 0); /* above, not yet held */
    assert_int_equal(rb_decide(&s, &cfg, &v, 104.9), 0);
    assert_int_equal(rb_decide(&s, &cfg, &v, 105.0), 20); /* held 5 s: down to the mean */
    /* the rate let 7 go: 13 left, still active though max/mean may have
     * fallen under the threshold meanwhile */
    v.mine = 93;
    v.max = 100;
    assert_int_equal(rb_decide(&s, &cfg, &v, 106.0), 13);
    v.mine = 80;
    assert_int_equal(rb_decide(&s, &cfg, &v, 107.0), 0); /* at the mean: done */
    assert_false(s.active);
    /* the new worker's view */
    rb_state_t n;
    rb_state_init(&n);
    rb_view_t nv = {.mine = 0, .total = 400, .max = 100, .n = 5};
    for (double t = 0; t < 20; t += 1)
        assert_int_equal(rb_decide(&n, &cfg, &nv, t), 0);
}

/* A dip under the threshold restarts the hold. */
static void test_hold_restarts(void **state)
{
    rb_state_t s;
    rb_state_init(&s);
    rb_view_t hi = {.mine = 130, .total = 300, .max = 130, .n = 3};
    rb_view_t lo = {.mine = 110, .total = 300, .max = 110, .n = 3}; /* 1.1 */
    assert_int_equal(rb_decide(&s, &cfg, &hi, 0), 0);
    assert_int_equal(rb_decide(&s, &cfg, &hi, 4), 0);
    assert_int_equal(rb_decide(&s, &cfg, &lo, 4.5), 0);
    assert_int_equal(rb_decide(&s, &cfg, &hi, 6), 0); /* held 0 s again */
    assert_int_equal(rb_decide(&s, &cfg, &hi, 10.9), 0);
    assert_int_equal(rb_decide(&s, &cfg, &hi, 11), 30);
    /* exactly at the threshold is not above it */
    rb_state_t e;
    rb_state_init(&e);
    rb_view_t at = {.mine = 120, .total = 300, .max = 120, .n = 3};
    assert_int_equal(rb_decide(&e, &cfg, &at, 0), 0);
    assert_int_equal(rb_decide(&e, &cfg, &at, 100), 0);
}

/* No fleet to balance against: nothing. A worker below the mean of an
 * unbalanced fleet sheds nothing either. */
static void test_nothing_to_do(void **state)
{
    rb_state_t s;
    rb_state_init(&s);
    rb_view_t alone = {.mine = 500, .total = 500, .max = 500, .n = 1};
    assert_int_equal(rb_decide(&s, &cfg, &alone, 0), 0);
    assert_int_equal(rb_decide(&s, &cfg, &alone, 100), 0);
    rb_view_t empty = {.n = 3};
    assert_int_equal(rb_decide(&s, &cfg, &empty, 100), 0);
    assert_true(rb_ratio(&empty) == 0);
    rb_view_t low = {.mine = 50, .total = 300, .max = 200, .n = 3};
    assert_int_equal(rb_decide(&s, &cfg, &low, 0), 0);
    assert_int_equal(rb_decide(&s, &cfg, &low, 10), 0);
    /* the mean rounds up: 301 over 3 is 101, so 102 sheds one */
    rb_state_t r;
    rb_state_init(&r);
    rb_view_t odd = {.mine = 102, .total = 301, .max = 180, .n = 3};
    assert_int_equal(rb_decide(&r, &cfg, &odd, 0), 0);
    assert_int_equal(rb_decide(&r, &cfg, &odd, 5), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale_out),
        cmocka_unit_test(test_hold_restarts),
        cmocka_unit_test(test_nothing_to_do),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
