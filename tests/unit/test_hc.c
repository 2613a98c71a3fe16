/* Unit tests for lb/hc.c: active health checks against fake backends served
 * by a helper thread on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "evwait.h"
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <ev.h>

#include "be.h"
#include "hc.h"
#include "log.h"
#include "sock.h"

/* One fake backend: answers every request with `status` (0 = accepts and
 * never answers, -1 = garbage), counting the requests it saw. */
typedef struct fake {
    int lfd;
    sock_addr_t addr;
    int status;
    int accepted;
    int requests;
    int stop;
    pthread_t th;
    char last_req[512];
} fake_t;

static void *fake_run(void *p)
{
    fake_t *f = p;
    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd pfd = {.fd = f->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int fd = sock_accept(f->lfd, NULL);
        if (fd < 0)
            continue;
        __atomic_add_fetch(&f->accepted, 1, __ATOMIC_RELEASE);
        int st = __atomic_load_n(&f->status, __ATOMIC_ACQUIRE);
        if (st == 0) { /* hold it open, silent, until the next accept */
            struct pollfd c = {.fd = fd, .events = POLLRDHUP};
            poll(&c, 1, 1000);
            close(fd);
            continue;
        }
        char req[512];
        size_t n = 0;
        while (n < sizeof(req) - 1) {
            struct pollfd c = {.fd = fd, .events = POLLIN};
            if (poll(&c, 1, 500) <= 0)
                break;
            ssize_t r = read(fd, req + n, sizeof(req) - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            req[n] = 0;
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[n] = 0;
        memcpy(f->last_req, req, n + 1);
        __atomic_add_fetch(&f->requests, 1, __ATOMIC_RELEASE);
        char resp[128];
        int len =
            st < 0 ? snprintf(resp, sizeof(resp), "garbage\r\n\r\n")
                   : snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", st);
        if (write(fd, resp, (size_t)len) < 0)
            break;
        close(fd);
    }
    return NULL;
}

static void fake_start(fake_t *f, int status)
{
    memset(f, 0, sizeof(*f));
    sock_addr_t any;
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &any, NULL, 0), 0);
    f->lfd = sock_listen(&any, 16, 0, NULL, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(sock_local_addr(f->lfd, &f->addr), 0);
    f->status = status;
    assert_int_equal(pthread_create(&f->th, NULL, fake_run, f), 0);
}

static void fake_stop(fake_t *f)
{
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join(f->th, NULL);
    close(f->lfd);
}

/* A port nobody listens on: bind, read the port, close. */
static sock_addr_t dead_addr(void)
{
    sock_addr_t a;
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &a, NULL, 0), 0);
    int fd = sock_listen(&a, 1, 0, NULL, 0);
    assert_true(fd >= 0);
    assert_int_equal(sock_local_addr(fd, &a), 0);
    close(fd);
    return a;
}

static int cond_usable(void *p)
{
    return be_usable(p);
}

/* The first check's connect was accepted: it is in flight. */
static int cond_check_in_flight(void *p)
{
    return __atomic_load_n(&((fake_t *)p)->accepted, __ATOMIC_ACQUIRE) >= 1;
}

static int cond_never(void *p)
{
    return 0;
}

typedef struct count_wait {
    fake_t *f;
    int target;
} count_wait_t;

static int cond_requests(void *p)
{
    count_wait_t *cw = p;
    return __atomic_load_n(&cw->f->requests, __ATOMIC_ACQUIRE) >= cw->target;
}

typedef struct scene {
    be_t *ok, *dead, *drain, *silent, *garbage;
    fake_t *okf;
} scene_t;

static int scene_settled(void *p)
{
    scene_t *s = p;
    return be_state(s->dead) == BE_DOWN && be_state(s->drain) == BE_DRAINING &&
           be_state(s->silent) == BE_DOWN && be_state(s->garbage) == BE_DOWN &&
           __atomic_load_n(&s->okf->requests, __ATOMIC_ACQUIRE) >= 2;
}

static void test_states_follow_checks(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    be_table_t *t = be_table_create(NULL, 0);
    fake_t ok, drain, silent, garbage;
    fake_start(&ok, 200);
    fake_start(&drain, 503);
    fake_start(&silent, 0);
    fake_start(&garbage, -1);
    sock_addr_t da = dead_addr();
    scene_t s = {
        .ok = be_add(t, "ok", &ok.addr, 1, BE_STATIC),
        .dead = be_add(t, "dead", &da, 1, BE_STATIC),
        .drain = be_add(t, "drain", &drain.addr, 1, BE_STATIC),
        .silent = be_add(t, "silent", &silent.addr, 1, BE_STATIC),
        .garbage = be_add(t, "garbage", &garbage.addr, 1, BE_DISCOVERED),
        .okf = &ok,
    };
    /* everything starts up, so a fresh lb serves at once */
    assert_int_equal(be_state(s.dead), BE_UP);

    be_table_set_health(t, 2, 2);
    /* a timeout generous enough for a loaded machine: the fake servers are
     * threads that may wait for a core */
    hc_config_t cfg = {.path = "/healthz", .interval_ms = 200, .timeout_ms = 150};
    char err[256];
    hc_t *h = hc_create(loop, t, &cfg, err, sizeof(err));
    assert_non_null(h);
    assert_true(run_until(loop, scene_settled, &s, 6000));
    assert_int_equal(be_state(s.ok), BE_UP);
    assert_true(be_failures(s.dead) >= 2);
    assert_int_equal(be_failures(s.drain), 0); /* draining is not failing */
    assert_non_null(strstr(ok.last_req, "GET /healthz HTTP/1.1\r\n"));
    assert_non_null(strstr(ok.last_req, "Connection: close\r\n"));

    /* the draining worker comes back: rise successes bring it up */
    __atomic_store_n(&drain.status, 200, __ATOMIC_RELEASE);
    be_event(t, s.ok, BE_EV_PASSIVE_FAIL, "test");
    be_event(t, s.ok, BE_EV_PASSIVE_FAIL, "test");
    assert_int_equal(be_state(s.ok), BE_DOWN);
    assert_true(run_until(loop, cond_usable, s.ok, 6000));
    assert_true(run_until(loop, cond_usable, s.drain, 6000));

    /* a worker that announced its drain in Redis stays draining */
    be_event(t, s.ok, BE_EV_REMOTE_DRAIN, "test");
    count_wait_t cw = {&ok, __atomic_load_n(&ok.requests, __ATOMIC_ACQUIRE) + 3};
    assert_true(run_until(loop, cond_requests, &cw, 6000));
    assert_int_equal(be_state(s.ok), BE_DRAINING);

    hc_free(h);
    be_table_free(t);
    fake_stop(&ok);
    fake_stop(&drain);
    fake_stop(&silent);
    fake_stop(&garbage);
    ev_loop_destroy(loop);
}

static void test_removed_during_check(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    be_table_t *t = be_table_create(NULL, 0);
    fake_t silent;
    fake_start(&silent, 0);
    be_t *b = be_add(t, "gone", &silent.addr, 1, BE_DISCOVERED);
    hc_config_t cfg = {.interval_ms = 1000, .timeout_ms = 100};
    char err[256];
    hc_t *h = hc_create(loop, t, &cfg, err, sizeof(err));
    assert_non_null(h);
    /* the first round starts at once; once its connect is accepted, remove */
    assert_true(run_until(loop, cond_check_in_flight, &silent, 2000));
    be_remove(t, b);
    /* the check times out later, touching only its own reference; ASan
     * reports a use after free or a leak if that goes wrong */
    run_until(loop, cond_never, NULL, 250);
    hc_free(h);
    be_table_free(t);
    fake_stop(&silent);
    ev_loop_destroy(loop);
}

static void test_bad_config(void **state)
{
    char err[256];
    hc_config_t cfg = {.path = "healthz"};
    assert_null(hc_create(EV_DEFAULT, NULL, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "health path"));
    hc_free(NULL);
}

int main(void)
{
    log_set_level(LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_states_follow_checks),
        cmocka_unit_test(test_removed_during_check),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
