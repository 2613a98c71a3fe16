/* Unit tests for lb/acap: who may hold one of the admin API's connections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "acap.h"

#define MAXP 80

typedef struct pool {
    acap_peer_t peers[MAXP];
    const acap_peer_t *open[MAXP];
    size_t n;
    uint64_t seq;
} pool_t;

static acap_peer_t peer(pool_t *p, uint8_t addr, int state)
{
    acap_peer_t x;
    memset(&x, 0, sizeof(x));
    x.key.b[15] = addr; /* one byte tells addresses apart */
    x.loopback = addr >= 200;
    x.state = (uint8_t)state;
    x.seq = ++p->seq;
    return x;
}

static void add(pool_t *p, uint8_t addr, int state, int count)
{
    for (int i = 0; i < count; i++) {
        p->peers[p->n] = peer(p, addr, state);
        p->open[p->n] = &p->peers[p->n];
        p->n++;
    }
}

static const acap_limits_t lim = {.max_conns = 16, .per_addr = 4};

static enum acap_verdict admit(pool_t *p, uint8_t addr, size_t *victim)
{
    acap_peer_t nc = peer(p, addr, ACAP_IDLE);
    *victim = (size_t)-1;
    return acap_admit(&lim, p->open, p->n, &nc, victim);
}

static void test_room_admits(void **state)
{
    pool_t p = {0};
    size_t v;
    assert_int_equal(admit(&p, 1, &v), ACAP_ADMIT);
    add(&p, 1, ACAP_IDLE, 3);
    add(&p, 2, ACAP_IDLE, 12);
    assert_int_equal(admit(&p, 1, &v), ACAP_ADMIT);
}

/* An address at its cap displaces only its own: the oldest answered one,
 * else the oldest idle one; with none, it is refused. */
static void test_per_address_cap(void **state)
{
    pool_t p = {0};
    size_t v;
    add(&p, 1, ACAP_AUTHED, 1);
    add(&p, 1, ACAP_IDLE, 2); /* [1], [2] */
    add(&p, 2, ACAP_IDLE, 1);
    add(&p, 1, ACAP_DONE, 1); /* [4] */
    assert_int_equal(admit(&p, 1, &v), ACAP_EVICT);
    assert_int_equal(v, 4);
    p.peers[4].state = ACAP_ANSWERING;
    assert_int_equal(admit(&p, 1, &v), ACAP_EVICT);
    assert_int_equal(v, 1);
    pool_t q = {0};
    add(&q, 1, ACAP_AUTHED, 2);
    add(&q, 1, ACAP_ANSWERING, 2);
    assert_int_equal(admit(&q, 1, &v), ACAP_REFUSE);
    assert_int_equal(admit(&q, 2, &v), ACAP_ADMIT);
}

/* Full: an answered connection goes first, whoever's it is. */
static void test_full_done_goes_first(void **state)
{
    pool_t p = {0};
    size_t v;
    for (uint8_t a = 1; a <= 4; a++)
        add(&p, a, ACAP_IDLE, 3);
    add(&p, 5, ACAP_AUTHED, 3);
    add(&p, 5, ACAP_DONE, 1); /* [15] */
    assert_int_equal(p.n, 16);
    assert_int_equal(admit(&p, 9, &v), ACAP_EVICT);
    assert_int_equal(v, 15);
}

/* Full of idle connections: the newcomer displaces the oldest idle one of
 * the address holding the most, and only if that is more than its own. */
static void test_full_heaviest_idle_address(void **state)
{
    pool_t p = {0};
    size_t v;
    add(&p, 1, ACAP_IDLE, 2);
    add(&p, 2, ACAP_IDLE, 4); /* [2..5] */
    add(&p, 3, ACAP_IDLE, 4); /* [6..9]: as many, younger */
    add(&p, 4, ACAP_AUTHED, 4);
    add(&p, 5, ACAP_IDLE, 2);
    assert_int_equal(p.n, 16);
    assert_int_equal(admit(&p, 9, &v), ACAP_EVICT);
    assert_int_equal(v, 2);
    /* The newcomer's address already holds as many: nothing to gain. */
    pool_t q = {0};
    for (uint8_t a = 1; a <= 8; a++)
        add(&q, a, ACAP_IDLE, 2);
    assert_int_equal(admit(&q, 1, &v), ACAP_REFUSE);
    assert_int_equal(admit(&q, 9, &v), ACAP_EVICT);
    assert_int_equal(v, 0);
}

/* A loopback newcomer displaces idle connections from off the host first;
 * requests with the token are never displaced. */
static void test_loopback_and_authed(void **state)
{
    pool_t p = {0};
    size_t v;
    add(&p, 201, ACAP_IDLE, 4);
    add(&p, 202, ACAP_IDLE, 4);
    add(&p, 7, ACAP_IDLE, 1); /* [8]: remote, lighter than the loopback ones */
    add(&p, 203, ACAP_IDLE, 4);
    add(&p, 204, ACAP_AUTHED, 3);
    assert_int_equal(admit(&p, 250, &v), ACAP_EVICT);
    assert_int_equal(v, 8);
    /* From off the host, the same pool gives up the heaviest's oldest. */
    assert_int_equal(admit(&p, 9, &v), ACAP_EVICT);
    assert_int_equal(v, 0);

    pool_t q = {0};
    for (uint8_t a = 1; a <= 4; a++)
        add(&q, a, ACAP_AUTHED, 4);
    assert_int_equal(admit(&q, 9, &v), ACAP_REFUSE);
    assert_int_equal(admit(&q, 250, &v), ACAP_REFUSE);
    /* Answering without the token goes after every idle one. */
    q.peers[5].state = ACAP_ANSWERING;
    q.peers[6].state = ACAP_ANSWERING;
    assert_int_equal(admit(&q, 9, &v), ACAP_EVICT);
    assert_int_equal(v, 5);
}

static void test_is_loopback(void **state)
{
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "127.0.0.2", &a4.sin_addr);
    assert_true(acap_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET, "10.0.0.1", &a4.sin_addr);
    assert_false(acap_is_loopback((struct sockaddr *)&a4));
    inet_pton(AF_INET6, "::1", &a6.sin6_addr);
    assert_true(acap_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "::ffff:127.1.2.3", &a6.sin6_addr);
    assert_true(acap_is_loopback((struct sockaddr *)&a6));
    inet_pton(AF_INET6, "2001:db8::1", &a6.sin6_addr);
    assert_false(acap_is_loopback((struct sockaddr *)&a6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_room_admits),
        cmocka_unit_test(test_per_address_cap),
        cmocka_unit_test(test_full_done_goes_first),
        cmocka_unit_test(test_full_heaviest_idle_address),
        cmocka_unit_test(test_loopback_and_authed),
        cmocka_unit_test(test_is_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
