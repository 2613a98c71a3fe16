/* Unit tests for lb/rld: what a reload keeps of the configuration it
 * replaced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rld.h"

static cidr_set_t *set_of(const char *cidr)
{
    cidr_set_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    assert_int_equal(cidr_set_add(s, cidr, NULL, 0), 0);
    return s;
}

/* Replaced trusted sets stay for the grace (a proxy thread may be matching
 * against one) and are freed by a later reload once it is over, so reloads
 * that change --trusted-proxies keep a bounded number (ASan checks the
 * frees). */
static void test_retired_trusted_freed_after_grace(void **state)
{
    (void)state;
    lb_t lb;
    memset(&lb, 0, sizeof(lb));
    uint64_t t0 = 1000000;
    assert_int_equal(rld_retire_trusted(&lb, set_of("10.0.0.0/8"), t0), 0);
    assert_int_equal(rld_retire_trusted(&lb, set_of("10.1.0.0/16"), t0 + 1), 0);
    assert_int_equal(lb.nretired, 2); /* both within their grace */
    /* One reload per second for a minute: never more than the grace's worth. */
    for (uint64_t s = 1; s <= 60; s++) {
        assert_int_equal(rld_retire_trusted(&lb, set_of("10.2.0.0/16"), t0 + s * 1000 + 1), 0);
        assert_true(lb.nretired <= RLD_RETIRE_GRACE_MS / 1000 + 1);
        assert_true(t0 + s * 1000 + 1 - lb.retired[0].ms < RLD_RETIRE_GRACE_MS + 1000);
    }
    assert_ptr_not_equal(lb.retired[0].set, NULL);
    for (size_t i = 0; i < lb.nretired; i++) {
        cidr_set_free(lb.retired[i].set);
        free(lb.retired[i].set);
    }
    free(lb.retired);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retired_trusted_freed_after_grace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
