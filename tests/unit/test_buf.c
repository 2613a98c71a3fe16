/* Unit tests for common/buf.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"

static void test_empty_holds_nothing(void **state)
{
    buf_t b = BUF_INIT;
    assert_null(b.data);
    assert_int_equal(buf_size(&b), 0);
    /* Freeing or consuming an untouched buffer is harmless. */
    buf_consume(&b, 10);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
}

static void test_append_and_consume_releases(void **state)
{
    buf_t b = BUF_INIT;
    assert_int_equal(buf_append(&b, "hello", 5), 0);
    assert_non_null(b.data);
    assert_int_equal(buf_size(&b), 5);
    assert_memory_equal(buf_head(&b), "hello", 5);

    buf_consume(&b, 2);
    assert_int_equal(buf_size(&b), 3);
    assert_memory_equal(buf_head(&b), "llo", 3);

    /* Empty after consume: memory goes back so idle connections hold nothing. */
    buf_consume(&b, 3);
    assert_int_equal(buf_size(&b), 0);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);

    /* Over-consuming also empties rather than underflowing. */
    assert_int_equal(buf_append_str(&b, "abc"), 0);
    buf_consume(&b, 100);
    assert_int_equal(buf_size(&b), 0);
    assert_null(b.data);
}

static void test_reserve_commit(void **state)
{
    buf_t b = BUF_INIT;
    char *w = buf_reserve(&b, 10);
    assert_non_null(w);
    assert_true(b.cap >= 10);
    memcpy(w, "0123456789", 10);
    buf_commit(&b, 4);
    assert_int_equal(buf_size(&b), 4);
    assert_memory_equal(buf_head(&b), "0123", 4);
    /* A reserve that fits returns the tail without moving anything. */
    char *old = b.data;
    char *w2 = buf_reserve(&b, 1);
    assert_ptr_equal(w2, old + 4);
    buf_commit(&b, 0);
    assert_int_equal(buf_size(&b), 4);
    buf_free(&b);
}

static void test_reserve_compacts_instead_of_growing(void **state)
{
    buf_t b = BUF_INIT;
    char *w = buf_reserve(&b, 1);
    assert_non_null(w);
    size_t cap = b.cap;
    char *data = b.data;
    /* Fill completely, then consume most of it from the front. */
    memset(w, 'x', cap);
    buf_commit(&b, cap);
    buf_consume(&b, cap - 3);
    assert_int_equal(buf_size(&b), 3);
    assert_int_equal(b.off, cap - 3);

    /* Room for cap-3 more exists only if the 3 live bytes move to the front. */
    w = buf_reserve(&b, cap - 3);
    assert_non_null(w);
    assert_int_equal(b.cap, cap);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.off, 0);
    assert_int_equal(b.len, 3);
    assert_ptr_equal(w, b.data + 3);
    assert_memory_equal(buf_head(&b), "xxx", 3);
    buf_free(&b);
}

static void test_growth_doubles(void **state)
{
    buf_t b = BUF_INIT;
    assert_non_null(buf_reserve(&b, 1));
    size_t cap = b.cap;
    memset(b.data, 'a', cap);
    buf_commit(&b, cap);
    assert_non_null(buf_reserve(&b, 1));
    assert_int_equal(b.cap, cap * 2);
    /* A large request jumps straight to a power-of-two multiple that fits. */
    assert_non_null(buf_reserve(&b, cap * 10));
    assert_true(b.cap >= cap * 11);
    assert_int_equal(b.cap % cap, 0);
    size_t ratio = b.cap / cap;
    assert_int_equal(ratio & (ratio - 1), 0);
    /* Data survived the reallocations. */
    for (size_t i = 0; i < cap; i++)
        assert_int_equal(b.data[i], 'a');
    buf_free(&b);
}

static void test_grow_with_offset_keeps_data(void **state)
{
    buf_t b = BUF_INIT;
    for (int i = 0; i < 100; i++)
        assert_int_equal(buf_printf(&b, "%03d", i), 0);
    buf_consume(&b, 150); /* drop the first 50 numbers */
    /* Bigger than anything compaction could give: must reallocate. */
    assert_non_null(buf_reserve(&b, b.cap * 4));
    assert_int_equal(b.off, 0);
    assert_int_equal(buf_size(&b), 150);
    assert_memory_equal(buf_head(&b), "050051052", 9);
    assert_memory_equal(buf_head(&b) + 147, "099", 3);
    buf_free(&b);
}

static void test_impossible_reserve_fails_cleanly(void **state)
{
    buf_t b = BUF_INIT;
    assert_int_equal(buf_append_str(&b, "keep"), 0);
    buf_t before = b;
    assert_null(buf_reserve(&b, SIZE_MAX));
    assert_null(buf_reserve(&b, SIZE_MAX / 2 + 1));
    /* Unchanged on failure. */
    assert_ptr_equal(b.data, before.data);
    assert_int_equal(b.len, before.len);
    assert_int_equal(b.cap, before.cap);
    assert_int_equal(buf_append(&b, "x", SIZE_MAX), -1);
    assert_memory_equal(buf_head(&b), "keep", 4);
    buf_free(&b);
}

static void test_printf(void **state)
{
    buf_t b = BUF_INIT;
    assert_int_equal(buf_printf(&b, "a=%d b=%s", 42, "x"), 0);
    assert_int_equal(buf_size(&b), strlen("a=42 b=x"));
    assert_memory_equal(buf_head(&b), "a=42 b=x", 8);
    /* Output larger than the remaining space forces a second formatting pass. */
    char big[3000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(buf_size(&b), 8 + 2 + 2999);
    assert_int_equal(buf_head(&b)[8], '[');
    assert_int_equal(buf_head(&b)[8 + 1 + 2999], ']');
    /* Empty format appends nothing. */
    size_t n = buf_size(&b);
    assert_int_equal(buf_printf(&b, "%s", ""), 0);
    assert_int_equal(buf_size(&b), n);
    buf_free(&b);
}

static void test_reset_keeps_memory(void **state)
{
    buf_t b = BUF_INIT;
    assert_int_equal(buf_append_str(&b, "abcdef"), 0);
    buf_consume(&b, 2);
    char *d = b.data;
    size_t cap = b.cap;
    buf_reset(&b);
    assert_int_equal(buf_size(&b), 0);
    assert_ptr_equal(b.data, d);
    assert_int_equal(b.cap, cap);
    assert_int_equal(buf_append_str(&b, "z"), 0);
    assert_ptr_equal(buf_head(&b), d);
    buf_free(&b);
    /* Reusable after free. */
    assert_int_equal(buf_append_str(&b, "again"), 0);
    assert_memory_equal(buf_head(&b), "again", 5);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_holds_nothing),
        cmocka_unit_test(test_append_and_consume_releases),
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_reserve_compacts_instead_of_growing),
        cmocka_unit_test(test_growth_doubles),
        cmocka_unit_test(test_grow_with_offset_keeps_data),
        cmocka_unit_test(test_impossible_reserve_fails_cleanly),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_reset_keeps_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
