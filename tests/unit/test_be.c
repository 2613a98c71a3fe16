/* Unit tests for lb/be.c: the backend table and the balancing algorithms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <pthread.h>

#include "be.h"
#include "be_int.h"
#include "be_int.h" /* refs, remote_base: what only be's own tests look at */
#include "log.h"

static sock_addr_t addr_of(int port)
{
    sock_addr_t a;
    char s[32];
    snprintf(s, sizeof(s), "127.0.0.1:%d", port);
    assert_int_equal(sock_parse_addr(s, &a, NULL, 0), 0);
    return a;
}

/* A table with n static backends b0..b(n-1) of weight 1. */
static be_table_t *table_with(const char *algo, int n, be_t **bs, unsigned slowstart_ms)
{
    be_table_t *t = be_table_create(be_algo_find(algo), slowstart_ms);
    assert_non_null(t);
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "b%d", i);
        sock_addr_t a = addr_of(9000 + i);
        bs[i] = be_add(t, id, &a, 1, BE_STATIC);
        assert_non_null(bs[i]);
    }
    return t;
}

/* Drives b to st the way health checks would. */
static void set_state(be_table_t *t, be_t *b, enum be_state st)
{
    if (st == BE_DRAINING)
        be_event(t, b, BE_EV_CHECK_DRAIN, "test");
    for (int i = 0; st == BE_DOWN && i < be_table_fall(t); i++)
        be_event(t, b, BE_EV_CHECK_FAIL, "test");
    for (int i = 0; st == BE_UP && i < be_table_rise(t); i++)
        be_event(t, b, BE_EV_CHECK_OK, "test");
    assert_int_equal(be_state(b), st);
}

static int index_of(be_t **bs, int n, be_t *b)
{
    for (int i = 0; i < n; i++)
        if (bs[i] == b)
            return i;
    fail_msg("picked a backend that is not in the set");
    return -1;
}

/* Deterministic generator for the simulations, so a failure reproduces. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void test_algo_find(void **state)
{
    const char *names[] = {"leastconn", "leastload", "roundrobin", "p2c"};
    for (size_t i = 0; i < 4; i++) {
        const be_algo_t *a = be_algo_find(names[i]);
        assert_non_null(a);
        assert_string_equal(a->name, names[i]);
    }
    assert_null(be_algo_find("random"));
    assert_null(be_algo_find(NULL));
    /* NULL algo defaults to leastconn */
    be_table_t *t = be_table_create(NULL, 0);
    assert_string_equal(be_table_algo(t)->name, "leastconn");
    be_table_free(t);
}

static void test_add_find_remove(void **state)
{
    be_t *bs[2];
    be_table_t *t = table_with("leastconn", 2, bs, 0);
    assert_int_equal(be_table_count(t), 2);
    assert_ptr_equal(be_find(t, "b1"), bs[1]);
    assert_null(be_find(t, "nope"));
    assert_string_equal(be_addr_str(bs[0]), "127.0.0.1:9000");
    /* adding a known id returns the existing backend */
    sock_addr_t a = addr_of(9100);
    assert_ptr_equal(be_add(t, "b0", &a, 5, BE_DISCOVERED), bs[0]);
    assert_int_equal(be_table_count(t), 2);
    /* weights are clamped */
    be_t *w0 = be_add(t, "w0", &a, 0, BE_STATIC);
    be_t *w9 = be_add(t, "w9", &a, 1000, BE_STATIC);
    assert_int_equal(be_weight(w0), 1);
    assert_int_equal(be_weight(w9), 256);
    be_remove(t, bs[0]);
    assert_null(be_find(t, "b0"));
    assert_int_equal(be_table_count(t), 3);
    assert_ptr_equal(be_table_at(t, 0), bs[1]); /* order kept */
    assert_null(be_table_at(t, 3));
    be_table_free(t);
}

/* leastconn and leastload keep a tree of scores: whatever happens to the
 * table (picks, releases, published counts, drains, downs, removals,
 * joins), every pick must be a usable backend of the lowest score, as a
 * scan of the table finds it. */
static int64_t model_score_num(be_t *b, int with_load)
{
    return be_conns(b) + 1 + (with_load ? 4 * (be_load(b) > 0 ? be_load(b) : 0) : 0);
}

static void tree_matches_scan(const char *algo, int with_load)
{
    enum { N = 200, OPS = 20000 };
    uint64_t rng = 0x1234567;
    be_table_t *t = be_table_create(be_algo_find(algo), 0);
    sock_addr_t a = addr_of(9000);
    be_t **held = calloc(OPS, sizeof(*held));
    static int64_t nums[2 * N + 1];
    int nheld = 0, next_id = 0;
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "m%d", next_id++);
        assert_non_null(be_add(t, id, &a, 1 + (unsigned)(rng_next(&rng) % 3), BE_STATIC));
    }
    for (int op = 0; op < OPS; op++) {
        size_t n = be_table_count(t);
        be_t *r = be_table_at(t, rng_next(&rng) % n);
        switch (rng_next(&rng) % 10) {
        case 0:
            be_update_remote_ex(t, r, (int64_t)(rng_next(&rng) % 50), (int64_t)(rng_next(&rng) % 5),
                                (uint64_t)op + 1, be_active(r));
            break;
        case 1:
            be_event(t, r, (rng_next(&rng) & 1) ? BE_EV_ADMIN_DRAIN : BE_EV_ADMIN_ENABLE, "t");
            break;
        case 2:
            be_event(t, r, (rng_next(&rng) & 1) ? BE_EV_CHECK_FAIL : BE_EV_CHECK_OK, "t");
            break;
        case 3:
            if (nheld > 0) {
                int k = (int)(rng_next(&rng) % (uint64_t)nheld);
                be_release(t, held[k]);
                held[k] = held[--nheld];
            }
            break;
        case 4:
            if (n > N / 2 && rng_next(&rng) % 4 == 0) {
                be_remove(t, r);
            } else if (n < 2 * N) {
                snprintf(id, sizeof(id), "m%d", next_id++);
                be_add(t, id, &a, 1, BE_STATIC);
            }
            break;
        default: {
            /* the lowest score among usable backends, by a scan */
            int64_t bn = -1, bw = 1, pn = -1;
            size_t cnt = be_table_count(t);
            for (size_t i = 0; i < cnt; i++) {
                be_t *b = be_table_at(t, i);
                int64_t num = model_score_num(b, with_load), w = be_weight(b);
                nums[i] = num;
                if (be_usable(b) && (bn < 0 || num * bw < bn * w)) {
                    bn = num;
                    bw = w;
                }
            }
            be_t *p = be_pick(t, NULL, 0);
            if (bn < 0) {
                assert_null(p);
                break;
            }
            assert_non_null(p);
            assert_true(be_usable(p));
            for (size_t i = 0; i < cnt; i++)
                if (be_table_at(t, i) == p)
                    pn = nums[i];
            int64_t w = be_weight(p);
            if (pn * bw != bn * w)
                fail_msg("op %d: picked %s at %lld/%lld, lowest is %lld/%lld", op, be_id(p),
                         (long long)pn, (long long)w, (long long)bn, (long long)bw);
            held[nheld++] = p;
        }
        }
    }
    for (int i = 0; i < nheld; i++)
        be_release(t, held[i]);
    free(held);
    be_table_free(t);
}

static void test_tree_matches_scan(void **state)
{
    tree_matches_scan("leastconn", 0);
    tree_matches_scan("leastload", 1);
}

/* be_find's index at fleet size: every id found after removals that
 * shift probe runs, none of the removed ones, and removed ids back again. */
static void test_find_index_churn(void **state)
{
    enum { N = 3000 };
    static be_t *bs[N];
    be_table_t *t = be_table_create(be_algo_find("leastconn"), 0);
    sock_addr_t a = addr_of(9000);
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "worker-%d", i);
        assert_non_null(bs[i] = be_add(t, id, &a, 1, BE_DISCOVERED));
    }
    for (int i = 0; i < N; i += 3)
        be_remove(t, bs[i]);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "worker-%d", i);
        if (i % 3 == 0)
            assert_null(be_find(t, id));
        else
            assert_ptr_equal(be_find(t, id), bs[i]);
    }
    for (int i = 0; i < N; i += 3) {
        snprintf(id, sizeof(id), "worker-%d", i);
        assert_non_null(bs[i] = be_add(t, id, &a, 1, BE_DISCOVERED));
    }
    assert_int_equal(be_table_count(t), N);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "worker-%d", i);
        assert_ptr_equal(be_find(t, id), bs[i]);
    }
    be_table_free(t);
}

/* An admin drain is kept by id: it outlives the backend (a worker that
 * leaves and rejoins, or comes back at another address) until enabled. */
static void test_admin_drain_outlives_backend(void **state)
{
    be_t *bs[2];
    be_table_t *t = table_with("leastconn", 2, bs, 0);
    assert_int_equal(be_admin_drain(t, "b0", 1), 0);
    assert_true(be_in_admin_drain(bs[0]));
    assert_false(be_usable(bs[0]));
    be_remove(t, bs[0]);
    assert_true(be_admin_drained(t, "b0"));
    /* Back, even at another address: drained before anyone can pick it. */
    sock_addr_t a = addr_of(9300);
    be_t *again = be_add(t, "b0", &a, 1, BE_DISCOVERED);
    assert_non_null(again);
    assert_true(be_in_admin_drain(again));
    for (int i = 0; i < 10; i++) {
        be_t *p = be_pick(t, NULL, 0);
        assert_ptr_equal(p, bs[1]);
        be_release(t, p);
    }
    /* Drained while away, enabled while away: both stick. */
    assert_int_equal(be_admin_drain(t, "gone", 1), 0);
    assert_int_equal(be_admin_drained_count(t), 2);
    assert_string_equal(be_admin_drained_at(t, 0), "b0");
    assert_string_equal(be_admin_drained_at(t, 1), "gone");
    assert_null(be_admin_drained_at(t, 2));
    assert_int_equal(be_admin_drain(t, "gone", 0), 0);
    assert_false(be_admin_drained(t, "gone"));
    assert_int_equal(be_admin_drain(t, "b0", 0), 0);
    assert_false(be_in_admin_drain(again));
    assert_int_equal(be_admin_drained_count(t), 0);
    be_remove(t, again);
    again = be_add(t, "b0", &a, 1, BE_DISCOVERED);
    assert_false(be_in_admin_drain(again));
    /* Twice is once; the set is bounded. */
    assert_int_equal(be_admin_drain(t, "b1", 1), 0);
    assert_int_equal(be_admin_drain(t, "b1", 1), 0);
    assert_int_equal(be_admin_drained_count(t), 1);
    char id[32];
    for (int i = 1; i < BE_ADMIN_DRAINED_MAX; i++) {
        snprintf(id, sizeof(id), "x%d", i);
        assert_int_equal(be_admin_drain(t, id, 1), 0);
    }
    assert_int_equal(be_admin_drain(t, "one-more", 1), -1);
    assert_int_equal(be_admin_drain(t, "b1", 0), 0);
    be_table_free(t); /* frees the set */
}

static void test_leastconn_picks_min(void **state)
{
    be_t *bs[3];
    be_table_t *t = table_with("leastconn", 3, bs, 0);
    be_t *held[8];
    for (int i = 0; i < 6; i++)
        held[i] = be_pick(t, NULL, 0);
    /* six picks over three equal backends: two each */
    for (int i = 0; i < 3; i++)
        assert_int_equal(be_active(bs[i]), 2);
    be_release(t, held[0]);
    be_t *freed = held[0];
    be_t *p = be_pick(t, NULL, 0);
    assert_ptr_equal(p, freed); /* the only one with a free slot */
    held[0] = p;
    for (int i = 0; i < 6; i++)
        be_release(t, held[i]);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(be_active(bs[i]), 0);
        assert_int_equal(be_total(bs[i]), i == index_of(bs, 3, freed) ? 3 : 2);
    }
    be_table_free(t);
}

static void test_leastconn_weights(void **state)
{
    be_table_t *t = be_table_create(be_algo_find("leastconn"), 0);
    sock_addr_t a = addr_of(9000);
    be_t *heavy = be_add(t, "heavy", &a, 2, BE_STATIC);
    be_t *light = be_add(t, "light", &a, 1, BE_STATIC);
    be_t *held[300];
    for (int i = 0; i < 300; i++)
        held[i] = be_pick(t, NULL, 0);
    /* (conns + 1) / weight balanced: heavy holds twice as many (+-1) */
    assert_in_range(be_active(heavy), 198, 201);
    assert_in_range(be_active(light), 99, 102);
    for (int i = 0; i < 300; i++)
        be_release(t, held[i]);
    be_table_free(t);
}

static void test_ties_rotate(void **state)
{
    be_t *bs[4];
    be_table_t *t = table_with("leastconn", 4, bs, 0);
    int seen[4] = {0};
    /* every backend idle: each pick is a four-way tie */
    for (int i = 0; i < 40; i++) {
        be_t *b = be_pick(t, NULL, 0);
        seen[index_of(bs, 4, b)]++;
        be_release(t, b);
    }
    for (int i = 0; i < 4; i++)
        assert_true(seen[i] >= 5);
    be_table_free(t);
}

static void test_exclusion_and_states(void **state)
{
    const char *algos[] = {"leastconn", "leastload", "roundrobin", "p2c"};
    for (size_t k = 0; k < 4; k++) {
        be_t *bs[4];
        be_table_t *t = table_with(algos[k], 4, bs, 0);
        set_state(t, bs[1], BE_DOWN);
        set_state(t, bs[2], BE_DRAINING);
        for (int i = 0; i < 20; i++) {
            be_t *b = be_pick(t, NULL, 0);
            assert_true(b == bs[0] || b == bs[3]);
            be_release(t, b);
        }
        be_t *ex[] = {bs[0]};
        for (int i = 0; i < 10; i++) {
            be_t *b = be_pick(t, ex, 1);
            assert_ptr_equal(b, bs[3]);
            be_release(t, b);
        }
        be_event(t, bs[3], BE_EV_ADMIN_DRAIN, "test");
        assert_null(be_pick(t, ex, 1));
        be_event(t, bs[3], BE_EV_ADMIN_ENABLE, "test");
        be_t *all[] = {bs[0], bs[3]};
        assert_null(be_pick(t, all, 2));
        /* back up: usable again */
        set_state(t, bs[1], BE_UP);
        be_t *b = be_pick(t, all, 2);
        assert_ptr_equal(b, bs[1]);
        be_release(t, b);
        be_table_free(t);
    }
}

static void test_empty_table(void **state)
{
    const char *algos[] = {"leastconn", "leastload", "roundrobin", "p2c"};
    for (size_t k = 0; k < 4; k++) {
        be_table_t *t = be_table_create(be_algo_find(algos[k]), 1000);
        assert_null(be_pick(t, NULL, 0));
        be_table_free(t);
    }
}

/* Simulates clients that come and go: one open per step, each connection
 * living 1..10 steps (75%) or 500..1500 steps (25%, the long-lived editor
 * tabs). Returns the worst max/mean of live connections per backend seen
 * after the warm-up. */
static double churn(const char *algo, uint64_t seed)
{
    enum { NB = 4, STEPS = 4000, WARM = 1600, MAXLIVE = 4096 };
    be_t *bs[NB];
    be_table_t *t = table_with(algo, NB, bs, 0);
    struct {
        be_t *b;
        int until;
    } live[MAXLIVE];
    int nlive = 0;
    double worst = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < nlive;) {
            if (live[i].until <= step) {
                be_release(t, live[i].b);
                live[i] = live[--nlive];
            } else {
                i++;
            }
        }
        uint64_t r = rng_next(&seed);
        int life = r % 4 == 0 ? 500 + (int)((r >> 8) % 1001) : 1 + (int)((r >> 8) % 10);
        assert_true(nlive < MAXLIVE);
        live[nlive].b = be_pick(t, NULL, 0);
        assert_non_null(live[nlive].b);
        live[nlive].until = step + life;
        nlive++;
        if (step >= WARM && step % 25 == 0) {
            int64_t max = 0, sum = 0;
            for (int i = 0; i < NB; i++) {
                sum += be_active(bs[i]);
                if (be_active(bs[i]) > max)
                    max = be_active(bs[i]);
            }
            double ratio = (double)max / ((double)sum / NB);
            if (ratio > worst)
                worst = ratio;
        }
    }
    for (int i = 0; i < nlive; i++)
        be_release(t, live[i].b);
    for (int i = 0; i < NB; i++)
        assert_int_equal(be_active(bs[i]), 0);
    be_table_free(t);
    return worst;
}

static void test_churn_leastconn_balanced(void **state)
{
    for (uint64_t seed = 1; seed <= 5; seed++) {
        double lc = churn("leastconn", seed * 0x9E3779B97F4A7C15ull);
        double rr = churn("roundrobin", seed * 0x9E3779B97F4A7C15ull);
        double p2 = churn("p2c", seed * 0x9E3779B97F4A7C15ull);
        print_message("seed %d: max/mean leastconn %.3f p2c %.3f roundrobin %.3f\n", (int)seed, lc,
                      p2, rr);
        assert_true(lc <= 1.1);
        assert_true(rr > 1.1);
        assert_true(rr > lc);
        assert_true(p2 < rr);
    }
}

static void test_slow_start(void **state)
{
    be_seed(42);
    for (int with_ss = 0; with_ss <= 1; with_ss++) {
        be_t *bs[3];
        be_table_t *t = table_with("leastconn", 3, bs, with_ss ? 10000 : 0);
        be_t *held[128];
        int nh = 0;
        for (int i = 0; i < 30; i++)
            held[nh++] = be_pick(t, NULL, 0); /* ten each */
        sock_addr_t a = addr_of(9100);
        be_t *fresh = be_add(t, "fresh", &a, 1, BE_DISCOVERED);
        uint64_t t0 = be_joined_ms(fresh);
        assert_true(t0 > 0);
        int got = 0;
        for (int i = 0; i < 20; i++) {
            be_t *b = be_pick_at(t, NULL, 0, t0 + 100);
            got += b == fresh;
            held[nh++] = b;
        }
        if (with_ss) {
            /* it takes connections at once, but not the whole herd */
            assert_in_range(got, 1, 5);
            /* later in the window it gets a larger share, and once the
             * window is over it catches up */
            int later = 0;
            for (int i = 0; i < 20; i++) {
                be_t *b = be_pick_at(t, NULL, 0, t0 + 10000);
                later += b == fresh;
                held[nh++] = b;
            }
            assert_true(later > got);
        } else {
            assert_true(got >= 10); /* without slow start it gets every pick until level */
        }
        for (int i = 0; i < nh; i++)
            be_release(t, held[i]);
        be_table_free(t);
    }
}

/* A fifth backend joins four loaded ones (250 each) while connections
 * arrive at 200/s: with slow start its share of the first second's
 * arrivals stays near its fair share instead of the whole herd. */
static void test_slow_start_caps_share(void **state)
{
    for (int seed = 1; seed <= 5; seed++) {
        for (int with_ss = 0; with_ss <= 1; with_ss++) {
            be_seed((uint64_t)seed);
            be_t *bs[4];
            be_table_t *t = table_with("leastconn", 4, bs, with_ss ? 3000 : 0);
            enum { LOADED = 1000, ARRIVALS = 200 };
            be_t **held = calloc(LOADED + ARRIVALS, sizeof(*held));
            int nh = 0;
            for (int i = 0; i < LOADED; i++)
                held[nh++] = be_pick(t, NULL, 0);
            sock_addr_t a = addr_of(9200);
            be_t *fresh = be_add(t, "fresh", &a, 1, BE_DISCOVERED);
            uint64_t t0 = be_joined_ms(fresh);
            int got = 0;
            for (int i = 0; i < ARRIVALS; i++) {
                be_t *b = be_pick_at(t, NULL, 0, t0 + (uint64_t)i * 1000 / ARRIVALS);
                got += b == fresh;
                held[nh++] = b;
            }
            if (with_ss) {
                if (got > ARRIVALS * 35 / 100 || got < ARRIVALS * 5 / 100)
                    fail_msg("seed %d: fresh backend took %d of %d arrivals", seed, got, ARRIVALS);
            } else {
                assert_true(got > ARRIVALS * 9 / 10); /* leastconn alone: the whole herd */
            }
            for (int i = 0; i < nh; i++)
                be_release(t, held[i]);
            free(held);
            be_table_free(t);
        }
    }
}

static void test_recovered_backend_slow_starts(void **state)
{
    be_t *bs[2];
    be_table_t *t = table_with("leastconn", 2, bs, 5000);
    assert_int_equal(be_joined_ms(bs[0]), 0); /* static: no slow start at boot */
    set_state(t, bs[0], BE_DOWN);
    assert_int_equal(be_joined_ms(bs[0]), 0);
    set_state(t, bs[0], BE_UP);
    assert_true(be_joined_ms(bs[0]) > 0);
    be_table_free(t);
}

/* With the worker's own per-lb count, the other lbs' share is exact: the
 * worker holds 30, 12 of them ours; we have opened 3 more since. */
static void test_global_counts_by_lb(void **state)
{
    be_t *bs[1];
    be_table_t *t = table_with("leastconn", 1, bs, 0);
    be_t *held[15];
    for (int i = 0; i < 15; i++)
        held[i] = be_pick(t, NULL, 0);
    be_update_remote_ex(t, bs[0], 30, 0, 1764150000000ull, 12);
    assert_int_equal(bs[0]->remote_base, 12);
    assert_int_equal(be_conns(bs[0]), 30 - 12 + 15); /* others' 18 plus our 15 now */
    for (int i = 0; i < 15; i++)
        be_release(t, held[i]);
    assert_int_equal(be_conns(bs[0]), 18);
    be_table_free(t);
}

static void test_global_counts(void **state)
{
    be_t *bs[3];
    be_table_t *t = table_with("leastconn", 3, bs, 0);
    uint64_t ts = 1764150000000ull;
    /* a fresh lb: the workers already hold connections from other lbs */
    be_update_remote(t, bs[0], 40, 0, ts);
    be_update_remote(t, bs[1], 20, 0, ts);
    be_update_remote(t, bs[2], 0, 0, ts);
    be_t *held[64];
    int count[3] = {0};
    for (int i = 0; i < 40; i++) {
        held[i] = be_pick(t, NULL, 0);
        count[index_of(bs, 3, held[i])]++;
    }
    /* b2 first fills up to b1's level, then they share; b0 is avoided */
    assert_int_equal(count[0], 0);
    assert_in_range(count[2], 29, 31);
    assert_int_equal(be_conns(bs[2]), count[2]);

    /* a new heartbeat already counts them (no history: taken as of now) */
    be_update_remote(t, bs[2], 30, 0, ts + 1000);
    assert_int_equal(bs[2]->remote_base, count[2]);
    assert_int_equal(be_conns(bs[2]), 30);
    /* the same snapshot read again must not wipe newer local changes */
    be_t *extra = be_pick(t, NULL, 0);
    int64_t before = be_conns(extra);
    be_update_remote(t, bs[0], 40, 0, ts);
    be_update_remote(t, bs[1], 20, 0, ts);
    be_update_remote(t, bs[2], 30, 0, ts + 1000);
    assert_int_equal(be_conns(extra), before);
    be_release(t, extra);

    /* closes below the snapshot never go negative */
    for (int i = 0; i < 40; i++)
        be_release(t, held[i]);
    be_update_remote(t, bs[1], 0, 0, ts + 2000);
    be_t *b = be_pick(t, NULL, 0);
    be_release(t, b);
    be_release(t, be_pick(t, (be_t *[]){b}, 1));
    assert_true(be_conns(bs[1]) >= 0);

    be_clear_remote(t, bs[0]);
    assert_int_equal(be_conns(bs[0]), 0);
    be_table_free(t);
}

/* The worker's snapshot is older than the moment the lb reads it:
 * connections this lb opened in between must count once, not zero times. */
static void test_global_counts_history(void **state)
{
    be_t *bs[2];
    be_table_t *t = table_with("leastconn", 2, bs, 0);
    be_t *held[32];
    int nh = 0;
    be_table_sample(t, 1000); /* b0: 0 of ours */
    for (int i = 0; i < 10; i++)
        held[nh++] = be_pick(t, (be_t *[]){bs[1]}, 1);
    be_table_sample(t, 1100); /* b0: 10 of ours */
    for (int i = 0; i < 5; i++)
        held[nh++] = be_pick(t, (be_t *[]){bs[1]}, 1);
    assert_int_equal(be_active(bs[0]), 15);

    /* snapshot at 1050 holds 3 from other lbs and none of ours yet */
    be_update_remote(t, bs[0], 3, 0, 1050);
    assert_int_equal(bs[0]->remote_base, 0);
    assert_int_equal(be_conns(bs[0]), 18);
    /* snapshot at 1150 holds our first ten plus the same 3 */
    be_update_remote(t, bs[0], 13, 0, 1150);
    assert_int_equal(be_conns(bs[0]), 18);
    /* an older snapshot than all samples: none of ours were in it */
    be_update_remote(t, bs[1], 4, 0, 500);
    assert_int_equal(be_conns(bs[1]), 4);

    /* once the ring wraps, a very old snapshot uses the oldest sample */
    for (int i = 0; i < BE_HIST; i++)
        be_table_sample(t, 2000 + (uint64_t)i * BE_SAMPLE_MS);
    be_update_remote(t, bs[0], 20, 0, 1900);
    assert_int_equal(bs[0]->remote_base, 15);
    assert_int_equal(be_conns(bs[0]), 20);
    /* ts 0 (unknown) means now */
    be_clear_remote(t, bs[0]);
    be_update_remote(t, bs[0], 20, 0, 0);
    assert_int_equal(be_conns(bs[0]), 20);

    for (int i = 0; i < nh; i++)
        be_release(t, held[i]);
    assert_int_equal(be_conns(bs[0]), 5); /* closes count too, never below 0 */
    be_table_free(t);
}

static void test_leastload_avoids_busy(void **state)
{
    be_t *bs[2];
    be_table_t *t = table_with("leastload", 2, bs, 0);
    be_update_remote(t, bs[0], 2, 3, 1); /* 2 conns, 3 evaluations */
    be_update_remote(t, bs[1], 5, 0, 1); /* 5 idle conns */
    /* leastload: 2 + 4*3 = 14 against 5: the idle editors win */
    be_t *held[8];
    for (int i = 0; i < 8; i++) {
        held[i] = be_pick(t, NULL, 0);
        assert_ptr_equal(held[i], bs[1]);
    }
    for (int i = 0; i < 8; i++)
        be_release(t, held[i]);
    be_table_free(t);

    /* leastconn ignores the load */
    t = table_with("leastconn", 2, bs, 0);
    be_update_remote(t, bs[0], 2, 3, 1);
    be_update_remote(t, bs[1], 5, 0, 1);
    be_t *b = be_pick(t, NULL, 0);
    assert_ptr_equal(b, bs[0]);
    be_release(t, b);
    be_table_free(t);
}

static void test_p2c_prefers_lower(void **state)
{
    be_t *bs[2];
    be_table_t *t = table_with("p2c", 2, bs, 0);
    be_update_remote(t, bs[0], 100, 0, 1);
    /* with two backends both are always the two choices */
    for (int i = 0; i < 20; i++) {
        be_t *b = be_pick(t, NULL, 0);
        assert_ptr_equal(b, bs[1]);
        be_release(t, b);
    }
    be_table_free(t);
}

static void test_roundrobin_rotates(void **state)
{
    be_t *bs[3];
    be_table_t *t = table_with("roundrobin", 3, bs, 0);
    be_t *prev = NULL;
    for (int i = 0; i < 9; i++) {
        be_t *b = be_pick(t, NULL, 0);
        assert_ptr_not_equal(b, prev);
        prev = b;
        be_release(t, b);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(be_total(bs[i]), 3);
    be_table_free(t);
}

static void test_passive_health(void **state)
{
    be_t *bs[2];
    be_table_t *t = table_with("leastconn", 2, bs, 0);
    be_table_set_health(t, 2, 3);
    assert_int_equal(be_table_rise(t), 2);
    assert_int_equal(be_table_fall(t), 3);
    be_event(t, bs[0], BE_EV_PASSIVE_FAIL, "refused");
    be_event(t, bs[0], BE_EV_PASSIVE_FAIL, "refused");
    be_event(t, bs[0], BE_EV_PASSIVE_OK, NULL); /* streak broken */
    be_event(t, bs[0], BE_EV_PASSIVE_FAIL, "refused");
    be_event(t, bs[0], BE_EV_PASSIVE_FAIL, "refused");
    assert_int_equal(be_state(bs[0]), BE_UP);
    be_event(t, bs[0], BE_EV_PASSIVE_FAIL, "refused");
    assert_int_equal(be_state(bs[0]), BE_DOWN);
    assert_int_equal(be_failures(bs[0]), 5);
    for (int i = 0; i < 5; i++) {
        be_t *b = be_pick(t, NULL, 0);
        assert_ptr_equal(b, bs[1]);
        be_release(t, b);
    }
    be_table_set_health(t, 0, -1); /* nonsense falls back to defaults */
    assert_int_equal(be_table_rise(t), 2);
    assert_int_equal(be_table_fall(t), 2);
    be_table_free(t);
}

static void test_deferred_free(void **state)
{
    be_t *bs[2];
    be_table_t *t = table_with("leastconn", 2, bs, 0);
    be_t *b = be_pick(t, (be_t *[]){bs[1]}, 1);
    assert_ptr_equal(b, bs[0]);
    assert_int_equal(b->refs, 2);
    be_ref(b); /* e.g. a health check in flight */
    be_remove(t, b);
    assert_int_equal(be_table_count(t), 1);
    /* still allocated for the live connection and the check */
    assert_int_equal(be_removed(b), 1);
    assert_int_equal(be_active(b), 1);
    assert_string_equal(be_id(b), "b0");
    /* a removed backend is never picked again */
    for (int i = 0; i < 4; i++) {
        be_t *p = be_pick(t, NULL, 0);
        assert_ptr_equal(p, bs[1]);
        be_release(t, p);
    }
    be_release(t, b);
    assert_int_equal(b->refs, 1);
    be_unref(t, b);  /* last one: freed here (ASan would flag a leak otherwise) */
    be_remove(t, b); /* unknown pointer: no-op, no access */

    /* the table may go first; a live connection keeps its backend */
    be_t *c = be_pick(t, NULL, 0);
    be_table_free(t);
    assert_string_equal(be_id(c), "b1");
    be_release(NULL, c);
}

struct mt_arg {
    be_table_t *t;
    int picks;
    int got;
};

static void *mt_picker(void *p)
{
    struct mt_arg *a = p;
    be_t *held[16] = {0};
    for (int i = 0; i < a->picks; i++) {
        int slot = i % 16;
        if (held[slot])
            be_release(a->t, held[slot]);
        held[slot] = be_pick(a->t, NULL, 0);
        a->got += held[slot] != NULL;
    }
    for (int i = 0; i < 16; i++)
        if (held[i])
            be_release(a->t, held[i]);
    return NULL;
}

/* Proxy threads pick and release while the main thread adds and removes
 * backends: under ASan this catches a backend freed while still referenced. */
static void threads_and_churning_table(const char *algo)
{
    be_t *bs[2];
    be_table_t *t = table_with(algo, 2, bs, 0);
    struct mt_arg args[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (struct mt_arg){t, 20000, 0};
        assert_int_equal(pthread_create(&th[i], NULL, mt_picker, &args[i]), 0);
    }
    for (int round = 0; round < 300; round++) {
        char id[16];
        snprintf(id, sizeof(id), "d%d", round % 4);
        be_t *d = be_find(t, id);
        if (d) {
            be_remove(t, d);
        } else {
            sock_addr_t a = addr_of(9200 + round % 4);
            assert_non_null(be_add(t, id, &a, 1, BE_DISCOVERED));
        }
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].got, 20000); /* b0 and b1 stay usable */
    }
    for (size_t i = 0; i < be_table_count(t); i++)
        assert_int_equal(be_active(be_table_at(t, i)), 0);
    be_table_free(t);
}

/* leastconn's tree is written by take and release on every thread. */
static void test_threads_and_churning_table(void **state)
{
    threads_and_churning_table("p2c");
    threads_and_churning_table("leastconn");
}

static size_t retired_count(const be_table_t *t)
{
    size_t n = 0;
    for (const be_ai_t *a = t->retired; a; a = a->next)
        n++;
    return n;
}

/* A replaced algorithm's state is kept for BE_AI_GRACE_MS (a hook may still
 * run on it), then freed at the next change: reloads that flip --algo do
 * not pile up states (ASan checks the frees). */
static void test_algo_retired_freed(void **state)
{
    (void)state;
    be_table_t *t = be_table_create(be_algo_find("leastconn"), 0);
    sock_addr_t sa;
    assert_int_equal(sock_parse_addr("127.0.0.1:9500", &sa, NULL, 0), 0);
    assert_non_null(be_add(t, "w0", &sa, 1, BE_STATIC));
    assert_int_equal(be_table_set_algo(t, be_algo_find("roundrobin")), 0);
    assert_int_equal(be_table_set_algo(t, be_algo_find("leastconn")), 0);
    assert_int_equal(retired_count(t), 2); /* both within their grace */
    for (be_ai_t *a = t->retired; a; a = a->next)
        a->retired_ms -= BE_AI_GRACE_MS;
    assert_int_equal(be_table_set_algo(t, be_algo_find("roundrobin")), 0);
    assert_int_equal(retired_count(t), 1); /* only the one just replaced */
    be_t *b = be_pick(t, NULL, 0);
    assert_non_null(b);
    be_release(t, b);
    be_table_free(t);
}

int main(void)
{
    log_set_level(LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_algo_find),
        cmocka_unit_test(test_add_find_remove),
        cmocka_unit_test(test_find_index_churn),
        cmocka_unit_test(test_tree_matches_scan),
        cmocka_unit_test(test_admin_drain_outlives_backend),
        cmocka_unit_test(test_leastconn_picks_min),
        cmocka_unit_test(test_leastconn_weights),
        cmocka_unit_test(test_ties_rotate),
        cmocka_unit_test(test_exclusion_and_states),
        cmocka_unit_test(test_empty_table),
        cmocka_unit_test(test_churn_leastconn_balanced),
        cmocka_unit_test(test_slow_start),
        cmocka_unit_test(test_slow_start_caps_share),
        cmocka_unit_test(test_recovered_backend_slow_starts),
        cmocka_unit_test(test_global_counts),
        cmocka_unit_test(test_global_counts_by_lb),
        cmocka_unit_test(test_global_counts_history),
        cmocka_unit_test(test_leastload_avoids_busy),
        cmocka_unit_test(test_p2c_prefers_lower),
        cmocka_unit_test(test_roundrobin_rotates),
        cmocka_unit_test(test_passive_health),
        cmocka_unit_test(test_deferred_free),
        cmocka_unit_test(test_threads_and_churning_table),
        cmocka_unit_test(test_algo_retired_freed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
