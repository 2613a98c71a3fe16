/* Unit tests for lb/proxy.h: the idle cost of a connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy.h"

static void test_idle_connection_is_small(void **state)
{
    /* The whole cost of an idle tunnel in lb memory: no buffers are held. */
    assert_true(px_conn_idle_bytes() < 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_connection_is_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
