/* Unit tests for lb/disc.c: discovery against a private redis-server on a
 * free loopback port (skipped when the binary is missing). The state parser
 * it uses is tested in test_fleet.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "evwait.h"
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "be.h"
#include "disc.h"
#include "log.h"
#include "sock.h"

/* ---- against a real Redis ------------------------------------------------------ */

typedef struct redis_fx {
    pid_t pid;
    int port;
    char addr[32];
    redisContext *c;
} redis_fx_t;

static int free_port(void)
{
    sock_addr_t a;
    sock_parse_addr("127.0.0.1:0", &a, NULL, 0);
    int fd = sock_listen(&a, 1, 0, NULL, 0);
    if (fd < 0)
        return -1;
    sock_local_addr(fd, &a);
    close(fd);
    char s[SOCK_ADDRSTRLEN];
    sock_addr_str(&a, s, sizeof(s));
    return atoi(strrchr(s, ':') + 1);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void redis_kill(redis_fx_t *fx)
{
    if (fx->pid > 0) {
        kill(fx->pid, SIGKILL);
        waitpid(fx->pid, NULL, 0);
        fx->pid = 0;
    }
}

/* Starts redis-server on fx->port and connects fx->c; 0, or -1. */
static int redis_boot(redis_fx_t *fx)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", fx->port);
    fx->pid = fork();
    if (fx->pid == 0) {
        freopen("/dev/null", "w", stdout);
        execl("/usr/bin/redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    /* ready when it answers PING, within a bounded deadline */
    uint64_t end = mono_ms() + 5000;
    while (mono_ms() < end) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", fx->port, tv);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            if (r && r->type == REDIS_REPLY_STATUS) {
                freeReplyObject(r);
                fx->c = c;
                return 0;
            }
            freeReplyObject(r);
        }
        redisFree(c);
        usleep(20000); /* between connection attempts, not as synchronisation */
    }
    redis_kill(fx);
    return -1;
}

static int redis_setup(void **state)
{
    redis_fx_t *fx = calloc(1, sizeof(*fx));
    *state = fx;
    if (access("/usr/bin/redis-server", X_OK) != 0)
        return 0; /* tests skip */
    fx->port = free_port();
    snprintf(fx->addr, sizeof(fx->addr), "127.0.0.1:%d", fx->port);
    return redis_boot(fx); /* teardown does not run when setup fails */
}

static int redis_teardown(void **state)
{
    redis_fx_t *fx = *state;
    if (fx->c)
        redisFree(fx->c);
    redis_kill(fx);
    free(fx);
    return 0;
}

static void rcmd(redis_fx_t *fx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(fx->c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static long long rint_cmd(redis_fx_t *fx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(fx->c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void put_state(redis_fx_t *fx, const char *id, const char *addr, const char *st, int conns,
                      int load, long long ts)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s\",\"addr\":\"%s\",\"state\":\"%s\",\"conns\":%d,\"load\":%d,"
             "\"ts_ms\":%lld}",
             id, addr, st, conns, load, ts);
    rcmd(fx, "SET wslb:worker:%s %s PX 60000", id, json);
    rcmd(fx, "SADD wslb:workers %s", id);
}

typedef struct probe {
    be_table_t *t;
    redis_fx_t *fx;
    const char *id;
    int64_t want;
} probe_t;

static int cond_present(void *p)
{
    probe_t *pr = p;
    return be_find(pr->t, pr->id) != NULL;
}

static int cond_absent(void *p)
{
    return !cond_present(p);
}

static int cond_draining(void *p)
{
    probe_t *pr = p;
    be_t *b = be_find(pr->t, pr->id);
    return b && be_state(b) == BE_DRAINING;
}

static int cond_conns(void *p)
{
    probe_t *pr = p;
    be_t *b = be_find(pr->t, pr->id);
    return b && be_has_remote(b) && be_conns(b) == pr->want;
}

static int cond_not_member(void *p)
{
    probe_t *pr = p;
    return rint_cmd(pr->fx, "SISMEMBER wslb:workers %s", pr->id) == 0;
}

static int cond_never(void *p)
{
    return 0;
}

static void test_discovery(void **state)
{
    redis_fx_t *fx = *state;
    if (!fx->c)
        skip();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    be_table_t *t = be_table_create(NULL, 5000);
    sock_addr_t sa;
    sock_parse_addr("127.0.0.1:9500", &sa, NULL, 0);
    be_t *s1 = be_add(t, "s1", &sa, 3, BE_STATIC);

    put_state(fx, "w1", "127.0.0.1:9501", "up", 3, 1, 1000);
    put_state(fx, "s1", "127.0.0.1:9500", "up", 7, 0, 1000);
    rcmd(fx, "SADD wslb:workers ghost"); /* listed, but its key expired */

    char err[256];
    rds_config_t rc = {.addr = fx->addr};
    disc_t *d = disc_create(loop, t, &rc, "wslb:", err, sizeof(err));
    assert_non_null(d);
    probe_t w1 = {t, fx, "w1", 3}, ghost = {t, fx, "ghost", 0}, s1p = {t, fx, "s1", 7};
    assert_true(run_until(loop, cond_conns, &w1, 3000));
    be_t *b = be_find(t, "w1");
    assert_int_equal(be_source(b), BE_DISCOVERED);
    assert_string_equal(be_addr_str(b), "127.0.0.1:9501");
    assert_int_equal(be_load(b), 1);
    assert_true(be_joined_ms(b) > 0); /* slow start from discovery */
    /* the static backend got counts, not a twin */
    assert_true(run_until(loop, cond_conns, &s1p, 3000));
    assert_ptr_equal(be_find(t, "s1"), s1);
    assert_int_equal(be_source(s1), BE_STATIC);
    assert_int_equal(be_weight(s1), 3);
    assert_int_equal(be_table_count(t), 2);
    /* the expired registration was tidied away */
    assert_true(run_until(loop, cond_not_member, &ghost, 3000));
    assert_null(be_find(t, "ghost"));

    /* a newer heartbeat updates the counts */
    put_state(fx, "w1", "127.0.0.1:9501", "up", 5, 2, 2000);
    w1.want = 5;
    assert_true(run_until(loop, cond_conns, &w1, 3000));

    /* a join event is acted on without waiting for the periodic refresh */
    put_state(fx, "w2", "127.0.0.1:9502", "up", 0, 0, 1000);
    rcmd(fx, "PUBLISH wslb:events %s", "{\"event\":\"join\",\"id\":\"w2\"}");
    probe_t w2 = {t, fx, "w2", 0};
    uint64_t t0 = mono_ms();
    assert_true(run_until(loop, cond_present, &w2, 3000));
    assert_true(mono_ms() - t0 < 900);

    /* drain event: no new connections at once */
    rcmd(fx, "PUBLISH wslb:events %s", "{\"event\":\"drain\",\"id\":\"w1\"}");
    assert_true(run_until(loop, cond_draining, &w1, 3000));
    assert_int_equal(be_remote_draining(be_find(t, "w1")), 1);

    /* leave event: gone at once, even though its key is still there for a
     * moment (no flapping back in from the heartbeat) */
    rcmd(fx, "DEL wslb:worker:w2");
    rcmd(fx, "PUBLISH wslb:events %s", "{\"event\":\"leave\",\"id\":\"w2\"}");
    assert_true(run_until(loop, cond_absent, &w2, 3000));

    /* a key that expires silently: removed by the periodic refresh */
    rcmd(fx, "DEL wslb:worker:w1");
    assert_true(run_until(loop, cond_absent, &w1, 3000));
    assert_non_null(be_find(t, "s1"));

    /* a bad state never becomes a backend */
    rcmd(fx, "SET wslb:worker:bad %s PX 60000", "{\"id\":\"bad\",\"addr\":\"0.0.0.0:1\"}");
    rcmd(fx, "SADD wslb:workers bad");
    put_state(fx, "w3", "127.0.0.1:9503", "up", 1, 0, 1000);
    probe_t w3 = {t, fx, "w3", 0}, badp = {t, fx, "bad", 0};
    assert_true(run_until(loop, cond_present, &w3, 3000));
    assert_false(cond_present(&badp));

    /* Redis dies: the last known set stays and nothing breaks */
    size_t before = be_table_count(t);
    redis_kill(fx);
    run_until(loop, cond_never, NULL, 1500);
    assert_int_equal(be_table_count(t), before);
    assert_non_null(be_find(t, "w3"));

    disc_free(d);
    be_table_free(t);
    ev_loop_destroy(loop);
}

/* SMEMBERS calls the server has answered (INFO commandstats). */
static long long smembers_calls(redis_fx_t *fx)
{
    redisReply *r = redisCommand(fx->c, "INFO commandstats");
    assert_non_null(r);
    const char *p =
        r->type == REDIS_REPLY_STRING ? strstr(r->str, "cmdstat_smembers:calls=") : NULL;
    long long n = p ? atoll(p + strlen("cmdstat_smembers:calls=")) : 0;
    freeReplyObject(r);
    return n;
}

static int cond_smembers2(void *p)
{
    return smembers_calls(p) >= 2;
}

/* A join storm (a fleet starting, or re-announcing itself after a Redis
 * failover): one join event every 20 ms for 1.2 s. A worker whose state is
 * there is added while the storm still runs, not only once it is over, and
 * the events cost a few refreshes, not one each. */
typedef struct storm {
    redis_fx_t *fx;
    be_table_t *t;
    ev_timer tick;
    int sent;
} storm_t;

enum { STORM_EVENTS = 60 };

static void storm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    storm_t *st = w->data;
    char ev[128];
    snprintf(ev, sizeof(ev), "{\"event\":\"join\",\"id\":\"s%d\"}", st->sent);
    rcmd(st->fx, "PUBLISH wslb:events %s", ev);
    if (++st->sent == STORM_EVENTS)
        ev_timer_stop(loop, w);
}

static int cond_added_in_storm(void *p)
{
    storm_t *st = p;
    return be_find(st->t, "w1") != NULL || st->sent == STORM_EVENTS;
}

static void test_join_storm(void **state)
{
    redis_fx_t *fx = *state;
    if (!fx->c)
        skip();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    be_table_t *t = be_table_create(NULL, 0);
    char err[256];
    rds_config_t rc = {.addr = fx->addr};
    disc_t *d = disc_create(loop, t, &rc, "wslb:", err, sizeof(err));
    assert_non_null(d);
    assert_true(run_until(loop, cond_smembers2, fx, 3000)); /* connected, refreshed */
    long long before = smembers_calls(fx);
    storm_t st = {.fx = fx, .t = t};
    ev_timer_init(&st.tick, storm_cb, 0.02, 0.02);
    st.tick.data = &st;
    ev_timer_start(loop, &st.tick);
    put_state(fx, "w1", "127.0.0.1:9501", "up", 0, 0, 1000);
    assert_true(run_until(loop, cond_added_in_storm, &st, 5000));
    assert_non_null(be_find(t, "w1"));
    assert_true(st.sent < STORM_EVENTS);
    while (st.sent < STORM_EVENTS)
        ev_run(loop, EVRUN_ONCE);
    long long during = smembers_calls(fx) - before;
    /* 1.2 s of events: a refresh per DISC_EVENT_MIN_S and the periodic ones */
    print_message("join storm: %d events, %lld refreshes\n", STORM_EVENTS, during);
    assert_true(during <= 10);
    disc_free(d);
    be_table_free(t);
    ev_loop_destroy(loop);
}

/* Redis comes back empty (a restart without persistence, or a failover to a
 * replica that missed the last writes): the lb keeps what it knew for one
 * state-key lifetime, so workers that write their state again in time are
 * never dropped, and only those that do not are removed. */
static void test_reconnect_keeps_backends_for_a_grace(void **state)
{
    redis_fx_t *fx = *state;
    if (!fx->c)
        skip();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    be_table_t *t = be_table_create(NULL, 0);
    put_state(fx, "w1", "127.0.0.1:9501", "up", 1, 0, 1000);
    put_state(fx, "w2", "127.0.0.1:9502", "up", 1, 0, 1000);
    char err[256];
    rds_config_t rc = {.addr = fx->addr};
    disc_t *d = disc_create(loop, t, &rc, "wslb:", err, sizeof(err));
    assert_non_null(d);
    probe_t w1 = {t, fx, "w1", 0}, w2 = {t, fx, "w2", 0};
    assert_true(run_until(loop, cond_present, &w1, 3000));
    assert_true(run_until(loop, cond_present, &w2, 3000));
    uint64_t joined = be_joined_ms(be_find(t, "w1"));

    redisFree(fx->c);
    fx->c = NULL;
    redis_kill(fx);
    assert_int_equal(redis_boot(fx), 0);
    /* Two SMEMBERS on the empty Redis: the first answer has been applied. */
    assert_true(run_until(loop, cond_smembers2, fx, 5000));
    assert_non_null(be_find(t, "w1"));
    assert_non_null(be_find(t, "w2"));
    /* w1 writes its state again; w2 never does. */
    put_state(fx, "w1", "127.0.0.1:9501", "up", 1, 0, 2000);
    uint64_t t0 = mono_ms();
    assert_true(run_until(loop, cond_absent, &w2, 6000));
    assert_true(mono_ms() - t0 >= 1000);
    be_t *b = be_find(t, "w1");
    assert_non_null(b);
    assert_int_equal(be_joined_ms(b), joined); /* never removed and re-added */

    disc_free(d);
    be_table_free(t);
    ev_loop_destroy(loop);
}

static void test_bad_address(void **state)
{
    char err[256];
    be_table_t *t = be_table_create(NULL, 0);
    rds_config_t rc = {.addr = "nowhere"};
    assert_null(disc_create(EV_DEFAULT, t, &rc, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "redis"));
    disc_free(NULL);
    be_table_free(t);
}

int main(void)
{
    log_set_level(LOG_LVL_OFF);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_discovery, redis_setup, redis_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_keeps_backends_for_a_grace, redis_setup,
                                        redis_teardown),
        cmocka_unit_test_setup_teardown(test_join_storm, redis_setup, redis_teardown),
        cmocka_unit_test(test_bad_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
