/* Unit tests for common/atomic.h: what each helper returns, and that
 * additions and compare-and-swap lose nothing between threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <cmocka.h>

#include "atomic.h"

static void test_single_thread(void **state)
{
    int64_t v = 5;
    assert_int_equal(AT_LOAD(&v), 5);
    AT_STORE(&v, 7);
    assert_int_equal(AT_LOAD_ACQ(&v), 7);
    AT_STORE_REL(&v, 9);
    assert_int_equal(AT_ADD(&v, 3), 12); /* the new value */
    assert_int_equal(AT_ADD_ACQREL(&v, -2), 10);
    assert_int_equal(AT_XCHG(&v, 1), 10); /* the old value */
    assert_int_equal(v, 1);

    int64_t want = 2;
    assert_false(AT_CAS(&v, &want, 3));
    assert_int_equal(want, 1); /* failure hands back what is there */
    assert_int_equal(v, 1);
    assert_true(AT_CAS(&v, &want, 3));
    assert_int_equal(v, 3);
    want = 3;
    assert_true(AT_CAS_RELAXED(&v, &want, 4));
    assert_false(AT_CAS_RELAXED(&v, &want, 5));
    assert_int_equal(want, 4);
    assert_int_equal(v, 4);
}

#define NTHR  4
#define ITERS 100000

typedef struct shared {
    uint64_t added;
    uint64_t casd;
    int flag;
    uint64_t payload;
} shared_t;

static void *worker(void *arg)
{
    shared_t *s = arg;
    for (int i = 0; i < ITERS; i++) {
        AT_ADD(&s->added, 1);
        uint64_t cur = AT_LOAD(&s->casd);
        while (!AT_CAS(&s->casd, &cur, cur + 2))
            ; /* cur was refreshed: try again with it */
    }
    return NULL;
}

static void test_threads(void **state)
{
    shared_t s = {0};
    pthread_t t[NTHR];
    for (int i = 0; i < NTHR; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &s), 0);
    for (int i = 0; i < NTHR; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(AT_LOAD(&s.added), (uint64_t)NTHR * ITERS);
    assert_int_equal(AT_LOAD(&s.casd), (uint64_t)NTHR * ITERS * 2);
}

static void *publisher(void *arg)
{
    shared_t *s = arg;
    s->payload = 42; /* plain write, published by the release store */
    AT_STORE_REL(&s->flag, 1);
    return NULL;
}

/* Release/acquire: whoever sees the flag sees what was written before it. */
static void test_publish(void **state)
{
    for (int round = 0; round < 100; round++) {
        shared_t s = {0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, publisher, &s), 0);
        while (!AT_LOAD_ACQ(&s.flag))
            ;
        assert_int_equal(s.payload, 42);
        pthread_join(t, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_thread),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
