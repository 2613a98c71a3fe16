/* Unit tests for common/ct.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ct.h"

static void test_ct_eq(void **state)
{
    static const char want[] = "s3cr3t";
    const size_t n = sizeof(want) - 1;
    assert_true(ct_eq(want, n, "s3cr3t", 6));
    assert_false(ct_eq(want, n, "s3cr3T", 6));  /* last byte */
    assert_false(ct_eq(want, n, "x3cr3t", 6));  /* first byte */
    assert_false(ct_eq(want, n, "s3cr3", 5));   /* a prefix */
    assert_false(ct_eq(want, n, "s3cr3tt", 7)); /* longer */
    assert_false(ct_eq(want, n, "", 0));
    assert_false(ct_eq(want, n, NULL, 0));
    /* the length counts, not a NUL: a guess with one inside is wrong */
    assert_false(ct_eq(want, n, "s3c\0r3t", 7));
    assert_true(ct_eq("a\0b", 3, "a\0b", 3));
    assert_false(ct_eq("a\0b", 3, "a\0c", 3));
    /* an empty secret equals only an empty guess */
    assert_true(ct_eq("", 0, "", 0));
    assert_false(ct_eq("", 0, "x", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_eq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
