/* Unit tests for common/acc.c: batches per wakeup, the pause when out of
 * descriptors (without spinning) and the resume, the hook that turns a
 * client away on EMFILE, and stopping from a callback. Real sockets on
 * loopback; descriptors are exhausted under a lowered RLIMIT_NOFILE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <ev.h>

#include "acc.h"
#include "log.h"
#include "sock.h"

#define NCLI 5

typedef struct fx {
    struct ev_loop *loop;
    int lfd;
    sock_addr_t addr;
    int cli[NCLI];
    int accepted[16];
    int naccepted;
    int pauses, last_err, resumes, turned_away, emfile_calls;
    int stop_after; /* on_fd stops the acceptor after this many; 0 = never */
    int reserve;    /* for the turn-away hook */
    acc_t *acc;
    int fill[512]; /* descriptors that exhaust the table, under `saved` lowered */
    int nfill;
    struct rlimit saved;
} fx_t;

static int setup(void **state)
{
    static fx_t f;
    memset(&f, 0, sizeof(f));
    f.loop = ev_loop_new(EVFLAG_AUTO);
    sock_addr_t a;
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &a, NULL, 0), 0);
    f.lfd = sock_listen(&a, 64, 0, NULL, 0);
    assert_true(f.lfd >= 0);
    sock_local_addr(f.lfd, &f.addr);
    f.reserve = -1;
    for (int i = 0; i < NCLI; i++) {
        f.cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(f.cli[i] >= 0);
        /* completes against the backlog, before any accept */
        assert_int_equal(connect(f.cli[i], (struct sockaddr *)&f.addr.ss, f.addr.len), 0);
    }
    *state = &f;
    return 0;
}

static void unfill(fx_t *f);

static int teardown(void **state)
{
    fx_t *f = *state;
    unfill(f);
    acc_free(f->acc);
    for (int i = 0; i < f->naccepted; i++)
        close(f->accepted[i]);
    for (int i = 0; i < NCLI; i++)
        close(f->cli[i]);
    if (f->reserve >= 0)
        close(f->reserve);
    close(f->lfd);
    ev_loop_destroy(f->loop);
    return 0;
}

static void on_fd(acc_t *a, int fd, const sock_addr_t *peer, void *ud)
{
    fx_t *f = ud;
    assert_true(f->naccepted < 16);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(peer->ss.ss_family, AF_INET);
    f->accepted[f->naccepted++] = fd;
    if (f->stop_after && f->naccepted == f->stop_after)
        acc_stop(a);
}

static void on_pause(acc_t *a, int err, void *ud)
{
    fx_t *f = ud;
    f->pauses++;
    f->last_err = err;
    assert_false(acc_watching(a));
}

static void on_resume(acc_t *a, void *ud)
{
    ((fx_t *)ud)->resumes++;
}

static acc_t *make(fx_t *f, int batch, double backoff)
{
    acc_config_t cfg = {.fd = f->lfd,
                        .batch = batch,
                        .backoff_s = backoff,
                        .name = "test",
                        .on_fd = on_fd,
                        .on_pause = on_pause,
                        .on_resume = on_resume,
                        .ud = f};
    char err[128];
    f->acc = acc_create(f->loop, &cfg, err, sizeof(err));
    assert_non_null(f->acc);
    return f->acc;
}

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop for ms; returns how many iterations that took. */
static unsigned run_for(struct ev_loop *loop, unsigned ms)
{
    ev_timer t;
    ev_timer_init(&t, stop_cb, ms / 1000.0, 0.);
    ev_timer_start(loop, &t);
    unsigned before = ev_iteration(loop);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
    return ev_iteration(loop) - before;
}

static void test_batches(void **state)
{
    fx_t *f = *state;
    acc_t *a = make(f, 2, 0);
    assert_int_equal(acc_fd(a), f->lfd);
    assert_false(acc_watching(a));
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_int_equal(f->naccepted, 0); /* not started */
    acc_start(a);
    assert_true(acc_watching(a));
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_int_equal(f->naccepted, 2); /* one batch per wakeup */
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_int_equal(f->naccepted, 4);
    ev_run(f->loop, EVRUN_NOWAIT);
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_int_equal(f->naccepted, NCLI);
    assert_int_equal(f->pauses, 0);
    acc_stop(a);
    assert_false(acc_watching(a));
}

static void test_stop_from_callback(void **state)
{
    fx_t *f = *state;
    f->stop_after = 1;
    acc_start(make(f, 64, 0));
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_int_equal(f->naccepted, 1);
    assert_false(acc_watching(f->acc));
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_int_equal(f->naccepted, 1);
}

/* Fills the descriptor table under a lowered limit (unfill, or the
 * teardown, gives both back). */
static void fill(fx_t *f)
{
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &f->saved), 0);
    struct rlimit low = f->saved;
    if (low.rlim_cur > 256)
        low.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    f->nfill = 0;
    while (f->nfill < 512) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            assert_int_equal(errno, EMFILE);
            break;
        }
        f->fill[f->nfill++] = fd;
    }
    assert_true(f->nfill > 0 && f->nfill < 512);
}

static void unfill(fx_t *f)
{
    if (f->nfill == 0)
        return;
    for (int i = 0; i < f->nfill; i++)
        close(f->fill[i]);
    f->nfill = 0;
    setrlimit(RLIMIT_NOFILE, &f->saved);
}

/* Out of descriptors with clients waiting: pause, do not spin, come back. */
static void test_emfile_pauses_then_resumes(void **state)
{
    fx_t *f = *state;
    acc_t *a = make(f, 64, 0.1);
    acc_start(a);
    fill(f);

    unsigned iters = run_for(f->loop, 350);
    /* a listener that stays readable would have spun thousands of times */
    if (iters > 50)
        fail_msg("%u loop iterations in 350 ms: spinning", iters);
    assert_int_equal(f->naccepted, 0);
    assert_true(f->pauses >= 2 && f->pauses <= 5); /* one per back-off */
    assert_int_equal(f->last_err, EMFILE);
    assert_true(f->resumes >= 1);

    unfill(f);
    int pauses = f->pauses;
    run_for(f->loop, 250); /* the next resume finds descriptors */
    assert_int_equal(f->naccepted, NCLI);
    assert_int_equal(f->pauses, pauses);
    assert_true(acc_watching(a));
}

/* The lb's trick: free a reserve descriptor to accept and turn away. */
static int turn_away(acc_t *a, int lfd, void *ud)
{
    fx_t *f = ud;
    f->emfile_calls++;
    if (f->reserve < 0)
        return -1;
    close(f->reserve);
    f->reserve = -1;
    int fd = sock_accept(lfd, NULL);
    int e = errno;
    if (fd >= 0) {
        close(fd);
        f->turned_away++;
    }
    f->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    errno = e;
    return fd >= 0 ? 0 : -1;
}

static void test_emfile_hook_turns_clients_away(void **state)
{
    fx_t *f = *state;
    acc_config_t cfg = {
        .fd = f->lfd, .on_fd = on_fd, .on_emfile = turn_away, .on_pause = on_pause, .ud = f};
    f->acc = acc_create(f->loop, &cfg, (char[64]){0}, 64);
    assert_non_null(f->acc);
    f->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    acc_start(f->acc);
    fill(f);
    ev_run(f->loop, EVRUN_NOWAIT);
    /* every waiting client was turned away; with the backlog empty the
     * hook's accept says EAGAIN, which is no reason to pause */
    assert_int_equal(f->turned_away, NCLI);
    assert_int_equal(f->emfile_calls, NCLI + 1);
    assert_int_equal(f->naccepted, 0);
    assert_int_equal(f->pauses, 0);
    assert_true(acc_watching(f->acc));
    unfill(f);
    char c;
    for (int i = 0; i < NCLI; i++)
        assert_int_equal(read(f->cli[i], &c, 1), 0); /* closed on them */
}

static void test_create_free(void **state)
{
    char err[64] = "";
    acc_config_t cfg = {.fd = 0};
    assert_null(acc_create(EV_DEFAULT, &cfg, err, sizeof(err)));
    assert_true(err[0] != '\0');
    acc_free(NULL);
}

int main(void)
{
    log_set_level(LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emfile_pauses_then_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emfile_hook_turns_clients_away, setup, teardown),
        cmocka_unit_test(test_create_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
