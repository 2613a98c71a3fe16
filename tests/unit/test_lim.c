/* Unit tests for lb/lim.c: token bucket arithmetic on an injected clock,
 * concurrency counts, expiry of idle entries, a full table, many threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <cmocka.h>

#include "lim.h"

#define SEC 1000000000ull

static uint64_t fake_now;

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static lim_key_t key4(const char *ip)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, ip, &in.sin_addr), 1);
    lim_key_t k;
    assert_int_equal(lim_key_from_sa((struct sockaddr *)&in, &k), 0);
    return k;
}

static lim_key_t key6(const char *ip)
{
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
    lim_key_t k;
    assert_int_equal(lim_key_from_sa((struct sockaddr *)&in6, &k), 0);
    return k;
}

static lim_t *make(unsigned conns, unsigned rate, unsigned burst, size_t entries)
{
    char err[128];
    lim_config_t cfg = {.max_conns = conns,
                        .rate = rate,
                        .burst = burst,
                        .max_entries = entries,
                        .clock = fake_clock};
    fake_now = 1000 * SEC;
    lim_t *l = lim_create(&cfg, err, sizeof(err));
    assert_non_null(l);
    return l;
}

static size_t entries(lim_t *l)
{
    lim_stats_t st;
    lim_stats(l, &st);
    return st.entries;
}

static void test_disabled_config(void **state)
{
    char err[128];
    lim_config_t cfg = {0};
    assert_false(lim_enabled(&cfg));
    assert_false(lim_enabled(NULL));
    assert_null(lim_create(&cfg, err, sizeof(err)));
    lim_free(NULL);
}

/* lim_set (a reload): a lowered cap refuses at once, a lifted one admits,
 * counts are kept across, and with every limit lifted l is inactive. */
static void test_set_changes_limits(void **state)
{
    lim_t *l = make(2, 0, 0, 0);
    lim_key_t k = key4("192.0.2.9");
    assert_true(lim_active(l));
    assert_int_equal(lim_enter(l, &k, NULL), LIM_OK);
    assert_int_equal(lim_enter(l, &k, NULL), LIM_OK);
    assert_int_equal(lim_enter(l, &k, NULL), LIM_CONNS);
    lim_set(l, 1, 0, 0);
    lim_leave(l, &k);
    assert_int_equal(lim_enter(l, &k, NULL), LIM_CONNS); /* one still open */
    lim_set(l, 3, 0, 0);
    assert_int_equal(lim_enter(l, &k, NULL), LIM_OK);
    lim_set(l, 0, 0, 0);
    assert_false(lim_active(l));
    lim_set(l, 0, 1, 1);
    assert_true(lim_active(l));
    lim_leave(l, &k);
    lim_leave(l, &k);
    lim_free(l);
}

static void test_bucket_burst_then_rate(void **state)
{
    lim_t *l = make(0, 2, 5, 0);
    lim_key_t k = key4("192.0.2.1");
    unsigned ra = 0;
    /* A full bucket: burst admissions at the same instant, then refusal. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lim_enter(l, &k, &ra), LIM_OK);
        lim_leave(l, &k);
    }
    assert_int_equal(lim_enter(l, &k, &ra), LIM_RATE);
    assert_int_equal(ra, 1); /* one token at 2/s takes 0.5 s: rounded up */
    /* 0.4 s gives 0.8 token: still refused; 0.1 s more makes one. */
    fake_now += 400000000ull;
    assert_int_equal(lim_enter(l, &k, &ra), LIM_RATE);
    fake_now += 100000000ull;
    assert_int_equal(lim_enter(l, &k, &ra), LIM_OK);
    lim_leave(l, &k);
    assert_int_equal(lim_enter(l, &k, &ra), LIM_RATE);
    /* A long pause refills only up to burst. */
    fake_now += 3600 * SEC;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lim_enter(l, &k, NULL), LIM_OK);
        lim_leave(l, &k);
    }
    assert_int_equal(lim_enter(l, &k, NULL), LIM_RATE);
    /* Another address has its own bucket. */
    lim_key_t k2 = key4("192.0.2.2");
    assert_int_equal(lim_enter(l, &k2, NULL), LIM_OK);
    lim_leave(l, &k2);
    lim_free(l);
}

static void test_retry_after_slow_rate(void **state)
{
    /* burst 0 means burst = rate: 1/s allows one, then 1 s wait. */
    lim_t *l = make(0, 1, 0, 0);
    lim_key_t k = key4("198.51.100.7");
    unsigned ra = 0;
    assert_int_equal(lim_enter(l, &k, &ra), LIM_OK);
    assert_int_equal(lim_enter(l, &k, &ra), LIM_RATE);
    assert_int_equal(ra, 1);
    fake_now += 300000000ull; /* 0.3 token: 0.7 s more -> 1 */
    assert_int_equal(lim_enter(l, &k, &ra), LIM_RATE);
    assert_int_equal(ra, 1);
    lim_free(l);

    /* A wait of a fraction of a second is announced as one second. */
    lim_t *l2 = make(0, 1, 3, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lim_enter(l2, &k, NULL), LIM_OK);
    fake_now += 100000000ull;
    assert_int_equal(lim_enter(l2, &k, &ra), LIM_RATE);
    assert_int_equal(ra, 1);
    lim_free(l2);
}

static void test_concurrency_counts(void **state)
{
    lim_t *l = make(3, 0, 0, 0);
    lim_key_t a = key4("10.0.0.1"), b = key4("10.0.0.2");
    unsigned ra = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(lim_enter(l, &a, &ra), LIM_OK);
    assert_int_equal(lim_conns(l, &a), 3);
    assert_int_equal(lim_enter(l, &a, &ra), LIM_CONNS);
    assert_int_equal(ra, 1);
    /* A refusal takes no slot. */
    assert_int_equal(lim_conns(l, &a), 3);
    assert_int_equal(lim_enter(l, &b, &ra), LIM_OK);
    lim_leave(l, &a);
    assert_int_equal(lim_enter(l, &a, &ra), LIM_OK);
    for (int i = 0; i < 3; i++)
        lim_leave(l, &a);
    lim_leave(l, &b);
    /* Without a rate limit, an address with no connection is forgotten. */
    assert_int_equal(entries(l), 0);
    /* Leaving an unknown address is harmless. */
    lim_leave(l, &a);
    assert_int_equal(lim_conns(l, &a), 0);
    lim_free(l);
}

static void test_ipv6_keyed_by_64(void **state)
{
    lim_t *l = make(1, 0, 0, 0);
    lim_key_t a = key6("2001:db8:1:2::1"), b = key6("2001:db8:1:2:ffff::9");
    lim_key_t c = key6("2001:db8:1:3::1"), m = key6("::ffff:10.0.0.1");
    assert_int_equal(lim_enter(l, &a, NULL), LIM_OK);
    assert_int_equal(lim_enter(l, &b, NULL), LIM_CONNS); /* same /64 */
    assert_int_equal(lim_enter(l, &c, NULL), LIM_OK);
    /* A v4-mapped address is the IPv4 host. */
    lim_key_t v4 = key4("10.0.0.1");
    assert_int_equal(lim_enter(l, &v4, NULL), LIM_OK);
    assert_int_equal(lim_enter(l, &m, NULL), LIM_CONNS);
    lim_leave(l, &a);
    lim_leave(l, &c);
    lim_leave(l, &v4);
    assert_int_equal(entries(l), 0);
    lim_free(l);
}

static void test_expiry_when_bucket_full(void **state)
{
    /* 4 entries at most (one shard): entries whose bucket has refilled and
     * that hold no connection make room for new addresses. */
    lim_t *l = make(0, 10, 10, 4);
    char ip[32];
    for (int i = 0; i < 4; i++) {
        snprintf(ip, sizeof(ip), "10.1.0.%d", i);
        lim_key_t k = key4(ip);
        assert_int_equal(lim_enter(l, &k, NULL), LIM_OK);
        lim_leave(l, &k);
    }
    assert_int_equal(entries(l), 4); /* buckets not yet full again */
    lim_key_t n = key4("10.1.1.1");
    /* Not refilled yet: the table is full, the newcomer goes untracked. */
    assert_int_equal(lim_enter(l, &n, NULL), LIM_UNTRACKED);
    lim_stats_t st;
    lim_stats(l, &st);
    assert_int_equal(st.untracked, 1);
    /* 0.1 s later each bucket holds 10 tokens again: all four expire. */
    fake_now += 100000000ull;
    assert_int_equal(lim_enter(l, &n, NULL), LIM_OK);
    lim_leave(l, &n);
    assert_int_equal(entries(l), 1);
    lim_free(l);
}

static void test_table_full_keeps_live_entries(void **state)
{
    lim_t *l = make(1, 0, 0, 4);
    char ip[32];
    lim_key_t k[4];
    for (int i = 0; i < 4; i++) {
        snprintf(ip, sizeof(ip), "10.2.0.%d", i);
        k[i] = key4(ip);
        assert_int_equal(lim_enter(l, &k[i], NULL), LIM_OK);
    }
    /* Full of live entries: a new address is admitted, untracked; tracked
     * addresses stay limited. */
    lim_key_t n = key4("10.2.1.1");
    assert_int_equal(lim_enter(l, &n, NULL), LIM_UNTRACKED);
    assert_int_equal(lim_enter(l, &n, NULL), LIM_UNTRACKED);
    assert_int_equal(lim_enter(l, &k[2], NULL), LIM_CONNS);
    assert_int_equal(entries(l), 4);
    /* One leaves: its slot is free for the newcomer. */
    lim_leave(l, &k[1]);
    assert_int_equal(lim_enter(l, &n, NULL), LIM_OK);
    assert_int_equal(lim_enter(l, &n, NULL), LIM_CONNS);
    lim_leave(l, &n);
    for (int i = 0; i < 4; i++)
        if (i != 1)
            lim_leave(l, &k[i]);
    assert_int_equal(entries(l), 0);
    lim_free(l);
}

static void test_many_addresses_churn(void **state)
{
    /* Deletion with backward shifts must keep every key reachable: insert
     * and remove in interleaved order and check counts all the way. */
    lim_t *l = make(2, 0, 0, 256);
    char ip[32];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 200; i++) {
            snprintf(ip, sizeof(ip), "10.3.%d.%d", i / 100, i % 100);
            lim_key_t k = key4(ip);
            enum lim_verdict v = lim_enter(l, &k, NULL);
            assert_true(v == LIM_OK || v == LIM_UNTRACKED);
            if (v == LIM_UNTRACKED)
                continue;
            if ((i + round) % 3 == 0)
                lim_leave(l, &k);
        }
        for (int i = 0; i < 200; i++) {
            snprintf(ip, sizeof(ip), "10.3.%d.%d", i / 100, i % 100);
            lim_key_t k = key4(ip);
            while (lim_conns(l, &k) > 0)
                lim_leave(l, &k);
        }
        assert_int_equal(entries(l), 0);
    }
    lim_free(l);
}

typedef struct {
    lim_t *l;
    int idx;
    int refused;
} thr_arg_t;

static void *thr_main(void *p)
{
    thr_arg_t *a = p;
    char ip[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(ip, sizeof(ip), "10.4.%d.%d", i % 7, (i / 7) % 5);
        lim_key_t k = key4(ip);
        enum lim_verdict v = lim_enter(a->l, &k, NULL);
        if (v == LIM_OK)
            lim_leave(a->l, &k);
        else
            a->refused++;
    }
    return NULL;
}

static void test_threads_share_counts(void **state)
{
    /* 4 threads hammer 35 addresses with at most 4 connections each: no
     * count may go astray, so everything is gone at the end. */
    char err[128];
    lim_config_t cfg = {.max_conns = 4};
    lim_t *l = lim_create(&cfg, err, sizeof(err));
    assert_non_null(l);
    pthread_t t[4];
    thr_arg_t a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg_t){.l = l, .idx = i};
        assert_int_equal(pthread_create(&t[i], NULL, thr_main, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].refused, 0); /* at most 4 at once per address */
    }
    assert_int_equal(entries(l), 0);
    lim_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disabled_config),
        cmocka_unit_test(test_bucket_burst_then_rate),
        cmocka_unit_test(test_retry_after_slow_rate),
        cmocka_unit_test(test_concurrency_counts),
        cmocka_unit_test(test_ipv6_keyed_by_64),
        cmocka_unit_test(test_expiry_when_bucket_full),
        cmocka_unit_test(test_table_full_keeps_live_entries),
        cmocka_unit_test(test_many_addresses_churn),
        cmocka_unit_test(test_threads_share_counts),
        cmocka_unit_test(test_set_changes_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
