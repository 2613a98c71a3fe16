/* Unit tests for lb/aff.c and lb/be_aff.c: session affinity with bounded
 * loads. The ring must move only a lost backend's keys, and the bound must
 * hold whatever the keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "aff.h"
#include "be.h"
#include "log.h"

#define NKEYS 20000

static uint64_t key_of(int i)
{
    char k[32];
    int n = snprintf(k, sizeof(k), "session-%d", i);
    return aff_hash(k, (size_t)n);
}

static uint32_t owner(const aff_ring_t *r, uint64_t key)
{
    uint32_t o;
    assert_int_equal(aff_ring_walk(r, key, &o, 1), 1);
    return o;
}

static void test_spec_parse(void **state)
{
    aff_spec_t s;
    char err[256];
    assert_int_equal(aff_spec_parse("query:sid", &s, err, sizeof(err)), 0);
    assert_int_equal(s.kind, AFF_QUERY);
    assert_string_equal(s.name, "sid");
    assert_int_equal(aff_spec_parse("header:X-Session", &s, err, sizeof(err)), 0);
    assert_int_equal(s.kind, AFF_HEADER);
    assert_int_equal(aff_spec_parse("cookie:SID", &s, err, sizeof(err)), 0);
    assert_int_equal(s.kind, AFF_COOKIE);
    const char *bad[] = {"sid", "query:", "path:x", "header:a b", "cookie:a=b", ":x", "query:a;b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(aff_spec_parse(bad[i], &s, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "--affinity"));
        assert_int_equal(s.kind, AFF_NONE);
    }
    char longname[128];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname, "query:", 6);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(aff_spec_parse(longname, &s, err, sizeof(err)), -1);
}

/* Parses req and returns whether s finds a key, its hash in *h. */
static int key_in(const char *spec, const char *req, uint64_t *h)
{
    aff_spec_t s;
    http_head_t head;
    assert_int_equal(aff_spec_parse(spec, &s, NULL, 0), 0);
    assert_true(http_parse_request(req, strlen(req), 0, &head) > 0);
    return aff_key(&s, &head, h);
}

static void test_key_extraction(void **state)
{
    uint64_t h = 0, want = aff_hash("abc", 3);
    assert_true(key_in("query:sid", "GET /eval?x=1&sid=abc HTTP/1.1\r\nHost: a\r\n\r\n", &h));
    assert_int_equal(h, want);
    assert_true(key_in("query:sid", "GET /eval?sid=abc HTTP/1.1\r\nHost: a\r\n\r\n", &h));
    assert_int_equal(h, want);
    /* a name that is only a prefix of another is not it */
    assert_false(key_in("query:sid", "GET /eval?xsid=abc&sidx=1 HTTP/1.1\r\n\r\n", &h));
    assert_false(key_in("query:sid", "GET /eval HTTP/1.1\r\n\r\n", &h));
    assert_false(key_in("query:sid", "GET /eval?sid= HTTP/1.1\r\n\r\n", &h)); /* empty */
    assert_true(key_in("header:X-Session", "GET /eval HTTP/1.1\r\nx-session: abc\r\n\r\n", &h));
    assert_int_equal(h, want);
    assert_false(key_in("header:X-Session", "GET /eval HTTP/1.1\r\nX-Other: abc\r\n\r\n", &h));
    assert_true(
        key_in("cookie:SID", "GET /eval HTTP/1.1\r\nCookie: a=1; SID=abc; b=2\r\n\r\n", &h));
    assert_int_equal(h, want);
    /* cookies split over two lines */
    assert_true(
        key_in("cookie:SID", "GET /eval HTTP/1.1\r\nCookie: a=1\r\nCookie: SID=abc\r\n\r\n", &h));
    assert_int_equal(h, want);
    assert_false(key_in("cookie:SID", "GET /eval HTTP/1.1\r\nCookie: xSID=abc\r\n\r\n", &h));
}

/* Keys are spread evenly enough, and the ring does not depend on the order
 * the ids come in. */
static void test_ring_spread_and_order(void **state)
{
    const char *ids[] = {"w0", "w1", "w2", "w3"}, *rev[] = {"w3", "w2", "w1", "w0"};
    aff_ring_t *a = aff_ring_create(), *b = aff_ring_create();
    assert_int_equal(aff_ring_build(a, ids, 4), 0);
    assert_int_equal(aff_ring_build(b, rev, 4), 0);
    assert_int_equal(aff_ring_nodes(a), 4);
    int count[4] = {0};
    for (int i = 0; i < NKEYS; i++) {
        uint32_t oa = owner(a, key_of(i)), ob = owner(b, key_of(i));
        assert_string_equal(ids[oa], rev[ob]);
        count[oa]++;
    }
    for (int n = 0; n < 4; n++) /* within 20% of a quarter */
        assert_true(count[n] > NKEYS / 4 * 8 / 10 && count[n] < NKEYS / 4 * 12 / 10);
    /* a walk names every node once */
    uint32_t order[AFF_WALK_MAX];
    assert_int_equal(aff_ring_walk(a, key_of(7), order, AFF_WALK_MAX), 4);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            assert_int_not_equal(order[i], order[j]);
    aff_ring_free(a);
    aff_ring_free(b);
}

/* Losing a node moves its keys only; a node joining takes keys only for
 * itself. */
static void test_ring_stability(void **state)
{
    const char *four[] = {"w0", "w1", "w2", "w3"}, *three[] = {"w0", "w1", "w3"},
               *five[] = {"w0", "w1", "w2", "w3", "w4"};
    aff_ring_t *r4 = aff_ring_create(), *r3 = aff_ring_create(), *r5 = aff_ring_create();
    assert_int_equal(aff_ring_build(r4, four, 4), 0);
    assert_int_equal(aff_ring_build(r3, three, 3), 0);
    assert_int_equal(aff_ring_build(r5, five, 5), 0);
    int lost = 0, gained = 0;
    for (int i = 0; i < NKEYS; i++) {
        const char *o4 = four[owner(r4, key_of(i))], *o3 = three[owner(r3, key_of(i))],
                   *o5 = five[owner(r5, key_of(i))];
        if (strcmp(o4, "w2") == 0)
            lost++;
        else
            assert_string_equal(o3, o4); /* not w2's: stays */
        if (strcmp(o5, "w4") == 0)
            gained++;
        else
            assert_string_equal(o5, o4); /* not taken by w4: stays */
    }
    assert_true(lost > NKEYS / 8 && lost < NKEYS * 3 / 8);
    assert_true(gained > NKEYS / 10 && gained < NKEYS * 3 / 10);
    /* an empty ring has no owner */
    assert_int_equal(aff_ring_build(r3, NULL, 0), 0);
    uint32_t o;
    assert_int_equal(aff_ring_walk(r3, 1, &o, 1), 0);
    aff_ring_free(r4);
    aff_ring_free(r3);
    aff_ring_free(r5);
    aff_ring_free(NULL);
}

struct sim {
    int64_t conns[8];
    int up[8];
    int n;
    unsigned factor;
};

static enum aff_probe sim_probe(void *ctx, uint32_t node)
{
    struct sim *s = ctx;
    int64_t total = 0;
    uint64_t wsum = 0;
    for (int i = 0; i < s->n; i++)
        if (s->up[i]) {
            total += s->conns[i];
            wsum++;
        }
    if (!s->up[node])
        return AFF_P_DOWN;
    return aff_within(s->conns[node], 1, total, wsum, s->factor) ? AFF_P_OK : AFF_P_OVERLOAD;
}

/* However skewed the keys, no node goes over ceil(factor x mean); keys whose
 * owner is within the bound stay on it. */
static void test_bound_respected(void **state)
{
    const char *ids[] = {"w0", "w1", "w2", "w3"};
    aff_ring_t *r = aff_ring_create();
    assert_int_equal(aff_ring_build(r, ids, 4), 0);
    struct sim s = {.n = 4, .up = {1, 1, 1, 1}, .factor = 1250};
    int hits = 0, over = 0;
    /* 90% of the connections carry one of 3 keys: a hot spot */
    for (int i = 0; i < 4000; i++) {
        uint64_t k = (i % 10) ? key_of(i % 3) : key_of(i);
        enum aff_why why;
        long n = aff_choose(r, k, sim_probe, &s, &why);
        assert_true(n >= 0);
        s.conns[n]++;
        hits += why == AFF_HIT;
        over += why == AFF_OVERLOAD;
        int64_t total = 0, max = 0;
        for (int j = 0; j < 4; j++) {
            total += s.conns[j];
            max = s.conns[j] > max ? s.conns[j] : max;
        }
        /* the bound as it stood when the last connection came */
        assert_true(max * 4000 <= 1250 * total + 4000 * 2 /* ceil, +1 */);
    }
    assert_true(hits > 0);
    assert_true(over > 0);
    /* the owner down: the next on the ring, and the cause says so */
    uint32_t order[4];
    assert_int_equal(aff_ring_walk(r, key_of(99), order, 4), 4);
    memset(s.conns, 0, sizeof(s.conns));
    s.up[order[0]] = 0;
    enum aff_why why;
    assert_int_equal(aff_choose(r, key_of(99), sim_probe, &s, &why), order[1]);
    assert_int_equal(why, AFF_DOWN);
    /* all down: -1, the algorithm decides */
    memset(s.up, 0, sizeof(s.up));
    assert_int_equal(aff_choose(r, key_of(99), sim_probe, &s, &why), -1);
    aff_ring_free(r);
    /* the cap itself: mean 10 x 1.25 = 12.5, so 13 may be reached, not 14 */
    assert_true(aff_within(12, 1, 39, 4, 1250));
    assert_false(aff_within(13, 1, 39, 4, 1250));
    assert_true(aff_within(0, 1, 0, 4, 1000)); /* an empty fleet takes one */
    assert_true(aff_within(5, 1, 5, 0, 1000)); /* nothing usable: no bound to apply */
}

/* Through the backend table: the same key, the same backend; a failed try
 * moves to the next; the loss of a backend moves only its keys. */
static void test_table_pick_key(void **state)
{
    be_table_t *t = be_table_create(be_algo_find("leastconn"), 0);
    assert_int_equal(be_table_set_affinity(t, 1250), 0);
    assert_true(be_table_affinity(t));
    be_t *bs[3];
    for (int i = 0; i < 3; i++) {
        char id[16], a[32];
        sock_addr_t sa;
        snprintf(id, sizeof(id), "w%d", i);
        snprintf(a, sizeof(a), "127.0.0.1:%d", 9400 + i);
        assert_int_equal(sock_parse_addr(a, &sa, NULL, 0), 0);
        bs[i] = be_add(t, id, &sa, 1, BE_STATIC);
    }
    int why, fb;
    be_t *owners[60];
    for (int i = 0; i < 60; i++) {
        uint64_t k = key_of(i);
        owners[i] = be_pick_key(t, &k, NULL, 0, &why, &fb);
        assert_non_null(owners[i]);
        assert_int_equal(why, AFF_HIT);
        assert_false(fb);
        /* again, after a reconnect: the same backend */
        be_release(t, owners[i]);
        be_t *again = be_pick_key(t, &k, NULL, 0, &why, &fb);
        assert_ptr_equal(again, owners[i]);
        be_release(t, again);
    }
    /* excluded (a failed try): the next one, cause "retry" */
    uint64_t k0 = key_of(0);
    be_t *ex[1] = {owners[0]};
    be_t *b = be_pick_key(t, &k0, ex, 1, &why, &fb);
    assert_ptr_not_equal(b, owners[0]);
    assert_int_equal(why, AFF_RETRY);
    be_release(t, b);
    /* no key: the algorithm */
    b = be_pick_key(t, NULL, NULL, 0, &why, &fb);
    assert_non_null(b);
    assert_int_equal(why, AFF_NO_KEY);
    assert_true(fb);
    be_release(t, b);
    /* w1 leaves: only its keys move */
    be_remove(t, bs[1]);
    for (int i = 0; i < 60; i++) {
        uint64_t k = key_of(i);
        b = be_pick_key(t, &k, NULL, 0, &why, &fb);
        if (owners[i] != bs[1])
            assert_ptr_equal(b, owners[i]);
        else
            assert_ptr_not_equal(b, bs[1]);
        be_release(t, b);
    }
    be_table_free(t);
}

/* Taking a node out in place gives the ring a build of the remaining ids
 * would give: the same owner and walk for every key. */
static void test_ring_remove_node(void **state)
{
    (void)state;
    const char *ids[] = {"w0", "w1", "w2", "w3", "w4"};
    const char *left[] = {"w0", "w1", "w3", "w4"};
    aff_ring_t *r = aff_ring_create(), *fresh = aff_ring_create();
    assert_int_equal(aff_ring_build(r, ids, 5), 0);
    assert_int_equal(aff_ring_build(fresh, left, 4), 0);
    aff_ring_remove_node(r, 2);
    aff_ring_remove_node(r, 9); /* not a node: nothing */
    assert_int_equal(aff_ring_nodes(r), 4);
    for (int i = 0; i < NKEYS; i++) {
        uint32_t a[AFF_WALK_MAX], b[AFF_WALK_MAX];
        size_t na = aff_ring_walk(r, key_of(i), a, AFF_WALK_MAX);
        assert_int_equal(na, aff_ring_walk(fresh, key_of(i), b, AFF_WALK_MAX));
        assert_memory_equal(a, b, na * sizeof(*a));
    }
    aff_ring_remove_node(r, 0);
    aff_ring_remove_node(r, 0);
    aff_ring_remove_node(r, 0);
    aff_ring_remove_node(r, 0);
    assert_int_equal(aff_ring_nodes(r), 0);
    uint32_t o;
    assert_int_equal(aff_ring_walk(r, key_of(1), &o, 1), 0);
    aff_ring_free(r);
    aff_ring_free(fresh);
}

static be_t *add_backend(be_table_t *t, int i)
{
    char id[16], a[32];
    sock_addr_t sa;
    snprintf(id, sizeof(id), "w%d", i);
    snprintf(a, sizeof(a), "127.0.0.1:%d", 9400 + i);
    assert_int_equal(sock_parse_addr(a, &sa, NULL, 0), 0);
    be_t *b = be_add(t, id, &sa, 1, BE_DISCOVERED);
    assert_non_null(b);
    return b;
}

/* The owner a ring over the table's current ids gives key k. */
static const char *owner_id(be_table_t *t, uint64_t k)
{
    static const char *ids[64];
    size_t n = be_table_count(t);
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++)
        ids[i] = be_id(be_table_at(t, i));
    aff_ring_t *r = aff_ring_create();
    assert_int_equal(aff_ring_build(r, ids, n), 0);
    const char *id = ids[owner(r, k)];
    aff_ring_free(r);
    return id;
}

/* A batch of adds (a discovery refresh) rebuilds the ring once at its end;
 * during it the ring never names the wrong backend: keys stay with the
 * backends already on the ring, removals included, and after it every key
 * goes to the owner a fresh ring gives. */
static void test_table_batch(void **state)
{
    (void)state;
    be_table_t *t = be_table_create(be_algo_find("leastconn"), 0);
    assert_int_equal(be_table_set_affinity(t, 1000000), 0); /* no bound in the way */
    be_t *bs[40];
    for (int i = 0; i < 8; i++)
        bs[i] = add_backend(t, i);
    int why, fb;
    be_table_batch(t, 1);
    be_table_batch(t, 1); /* nested */
    for (int i = 8; i < 40; i++)
        bs[i] = add_backend(t, i);
    be_remove(t, bs[3]);  /* on the ring */
    be_remove(t, bs[20]); /* not yet on it */
    for (int i = 0; i < 200; i++) {
        uint64_t k = key_of(i);
        be_t *b = be_pick_key(t, &k, NULL, 0, &why, &fb);
        assert_non_null(b);
        assert_int_equal(why, AFF_HIT);
        /* the owner among the first eight still there: w3 left, and the
         * new ones are not on the ring yet */
        be_table_t *old = be_table_create(be_algo_find("leastconn"), 0);
        for (int j = 0; j < 8; j++)
            if (j != 3)
                add_backend(old, j);
        assert_string_equal(be_id(b), owner_id(old, k));
        be_table_free(old);
        be_release(t, b);
    }
    be_table_batch(t, 0);
    be_table_batch(t, 0); /* the outer end rebuilds */
    be_table_batch(t, 0); /* unbalanced: nothing */
    for (int i = 0; i < 200; i++) {
        uint64_t k = key_of(i);
        be_t *b = be_pick_key(t, &k, NULL, 0, &why, &fb);
        assert_string_equal(be_id(b), owner_id(t, k));
        be_release(t, b);
    }
    be_table_free(t);
}

int main(void)
{
    log_set_level(LOG_LVL_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_key_extraction),
        cmocka_unit_test(test_ring_spread_and_order),
        cmocka_unit_test(test_ring_stability),
        cmocka_unit_test(test_bound_respected),
        cmocka_unit_test(test_table_pick_key),
        cmocka_unit_test(test_ring_remove_node),
        cmocka_unit_test(test_table_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
