/* Unit tests for lb/px_pool: objects from aligned blocks, reused, and
 * blocks given back once empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "px_pool.h"

enum { SIZE = 360 };
#define PER_BLOCK ((PX_POOL_BLOCK - 64) / SIZE) /* a lower bound */

/* Objects are zeroed, distinct, 8-byte aligned and do not overlap. */
static void test_get_distinct_zeroed(void **state)
{
    px_pool_t p = {0};
    enum { N = 1000 };
    unsigned char **o = calloc(N, sizeof(*o));
    assert_non_null(o);
    for (int i = 0; i < N; i++) {
        o[i] = px_pool_get(&p, SIZE);
        assert_non_null(o[i]);
        assert_int_equal((uintptr_t)o[i] % 8, 0);
        for (int k = 0; k < SIZE; k++)
            assert_int_equal(o[i][k], 0);
        memset(o[i], (unsigned char)(i + 1), SIZE); /* would spill into a neighbour */
    }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < SIZE; k++)
            assert_int_equal(o[i][k], (unsigned char)(i + 1));
    assert_true(p.nblk >= (size_t)(N / (PX_POOL_BLOCK / SIZE)));
    assert_true(p.nblk <= (size_t)(N / PER_BLOCK + 1));
    for (int i = 0; i < N; i++)
        px_pool_put(&p, o[i]);
    /* Every block was empty once: all went back but the spare. */
    assert_int_equal(p.nblk, 1);
    px_pool_destroy(&p);
    assert_int_equal(p.nblk, 0);
    free(o);
}

/* A freed object is handed out again (zeroed) before a new block is made. */
static void test_reuse(void **state)
{
    px_pool_t p = {0};
    unsigned char *a = px_pool_get(&p, SIZE);
    unsigned char *b = px_pool_get(&p, SIZE);
    assert_non_null(a);
    assert_non_null(b);
    memset(b, 0xee, SIZE);
    px_pool_put(&p, b);
    unsigned char *c = px_pool_get(&p, SIZE);
    assert_ptr_equal(c, b);
    for (int k = 0; k < SIZE; k++)
        assert_int_equal(c[k], 0);
    assert_int_equal(p.nblk, 1);
    px_pool_put(&p, a);
    px_pool_put(&p, c);
    px_pool_put(&p, NULL);
    px_pool_destroy(&p);
    assert_int_equal(p.nblk, 0);
}

/* Going between zero and one object keeps one block, not one per cycle. */
static void test_spare(void **state)
{
    px_pool_t p = {0};
    for (int i = 0; i < 100; i++) {
        void *o = px_pool_get(&p, SIZE);
        assert_non_null(o);
        assert_int_equal(p.nblk, 1);
        px_pool_put(&p, o);
        assert_int_equal(p.nblk, 1);
    }
    px_pool_destroy(&p);
    assert_int_equal(p.nblk, 0);
}

/* A full block that gets an object back is used again, in any order of
 * frees. */
static void test_full_block_refills(void **state)
{
    px_pool_t p = {0};
    int n = 3 * (PX_POOL_BLOCK / SIZE);
    void **o = calloc((size_t)n, sizeof(*o));
    assert_non_null(o);
    for (int i = 0; i < n; i++)
        assert_non_null(o[i] = px_pool_get(&p, SIZE));
    size_t blocks = p.nblk;
    /* Every other object back, from the first block onwards. */
    for (int i = 0; i < n; i += 2) {
        px_pool_put(&p, o[i]);
        o[i] = NULL;
    }
    for (int i = 0; i < n; i += 2)
        assert_non_null(o[i] = px_pool_get(&p, SIZE));
    assert_int_equal(p.nblk, blocks);
    for (int i = n - 1; i >= 0; i--)
        px_pool_put(&p, o[i]);
    assert_int_equal(p.nblk, 1);
    px_pool_destroy(&p);
    free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_distinct_zeroed),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_spare),
        cmocka_unit_test(test_full_block_refills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
