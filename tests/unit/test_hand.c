/* Unit tests for lb/hand: the takeover protocol between two lbs, both sides
 * in one process (the old side's loop in a thread of its own). */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "hand.h"

typedef struct fix {
    char dir[64], path[128];
    struct ev_loop *loop;
    hand_t *h;
    pthread_t tid;
    ev_timer tick;
    int stop, done;
    int fds[2];
} fix_t;

static size_t fix_fds(void *ud, int *fds, char *kinds, size_t cap)
{
    fix_t *f = ud;
    fds[0] = f->fds[0];
    kinds[0] = 'p';
    fds[1] = f->fds[1];
    kinds[1] = 'a';
    return 2;
}

static void fix_done(void *ud)
{
    fix_t *f = ud;
    __atomic_store_n(&f->done, 1, __ATOMIC_RELEASE);
}

static void fix_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    fix_t *f = w->data;
    if (__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE))
        ev_break(loop, EVBREAK_ALL);
}

static void *fix_run(void *arg)
{
    fix_t *f = arg;
    ev_run(f->loop, 0);
    return NULL;
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof(*f));
    char err[256];
    strcpy(f->dir, "/tmp/hand-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/ctl.sock", f->dir);
    f->fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    f->fds[1] = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    hand_ops_t ops = {.fds = fix_fds, .done = fix_done};
    f->h = hand_listen(f->loop, f->path, &ops, f, err, sizeof(err));
    assert_non_null(f->h);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600); /* only this user may take over */
    ev_timer_init(&f->tick, fix_tick, 0.02, 0.02);
    f->tick.data = f;
    ev_timer_start(f->loop, &f->tick);
    assert_int_equal(pthread_create(&f->tid, NULL, fix_run, f), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join(f->tid, NULL);
    ev_timer_stop(f->loop, &f->tick);
    hand_free(f->h, 1);
    ev_loop_destroy(f->loop);
    close(f->fds[0]);
    close(f->fds[1]);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_takes_the_descriptors_then_ready(void **state)
{
    fix_t *f = *state;
    int fds[HAND_MAX_FDS];
    char kinds[HAND_MAX_FDS], err[256];
    size_t n = 0;
    int c = hand_take(f->path, fds, kinds, &n, err, sizeof(err));
    assert_true(c >= 0);
    assert_int_equal(n, 2);
    assert_int_equal(kinds[0], 'p');
    assert_int_equal(kinds[1], 'a');
    /* The same files, as new descriptors of this process. */
    struct stat a, b;
    assert_int_equal(fstat(fds[1], &a), 0);
    assert_int_equal(fstat(f->fds[1], &b), 0);
    assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
    assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    assert_int_equal(__atomic_load_n(&f->done, __ATOMIC_ACQUIRE), 0);
    assert_int_equal(hand_ready(c, err, sizeof(err)), 0);
    for (int i = 0; i < 200 && !__atomic_load_n(&f->done, __ATOMIC_ACQUIRE); i++)
        usleep(10000);
    assert_int_equal(__atomic_load_n(&f->done, __ATOMIC_ACQUIRE), 1);
    close(fds[0]);
    close(fds[1]);
}

static void test_refuses_a_peer_without_the_magic(void **state)
{
    fix_t *f = *state;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, f->path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_true(send(s, "HELLO\n", 6, 0) == 6);
    char buf[128] = "";
    ssize_t r = recv(s, buf, sizeof(buf) - 1, 0);
    assert_true(r > 0);
    assert_memory_equal(buf, HAND_MAGIC_RESP "ERR", strlen(HAND_MAGIC_RESP "ERR"));
    close(s);
    /* It still hands over to an lb afterwards. */
    int fds[HAND_MAX_FDS];
    char kinds[HAND_MAX_FDS], err[256];
    size_t n = 0;
    int c = hand_take(f->path, fds, kinds, &n, err, sizeof(err));
    assert_true(c >= 0);
    assert_int_equal(n, 2);
    close(fds[0]);
    close(fds[1]);
    close(c); /* abandoned: the old side keeps serving */
}

static void test_second_takeover_is_busy(void **state)
{
    fix_t *f = *state;
    int fds[HAND_MAX_FDS], fds2[HAND_MAX_FDS];
    char kinds[HAND_MAX_FDS], err[256];
    size_t n = 0, n2 = 0;
    int c = hand_take(f->path, fds, kinds, &n, err, sizeof(err));
    assert_true(c >= 0);
    int c2 = hand_take(f->path, fds2, kinds, &n2, err, sizeof(err));
    assert_int_equal(c2, -1);
    assert_int_equal(n2, 0);
    assert_non_null(strstr(err, "another takeover is in progress"));
    close(fds[0]);
    close(fds[1]);
    close(c);
}

static void test_not_an_lb_on_the_other_side(void **state)
{
    char dir[] = "/tmp/hand-test-XXXXXX", path[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/x.sock", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    /* A stream socket (some other daemon): the connect itself fails. */
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 1), 0);
    int fds[HAND_MAX_FDS];
    char kinds[HAND_MAX_FDS];
    size_t n = 0;
    assert_int_equal(hand_take(path, fds, kinds, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an lb"));
    close(l);
    unlink(path);
    /* Nothing there at all. */
    assert_int_equal(hand_take(path, fds, kinds, &n, err, sizeof(err)), -1);
    rmdir(dir);
}

/* An old side that dies after the first of two messages of descriptors:
 * the ones received are closed, none is left open in the new lb. */
typedef struct half {
    int l;
} half_t;

static void *half_run(void *arg)
{
    half_t *hf = arg;
    char buf[64];
    int c = accept(hf->l, NULL, NULL);
    if (c < 0)
        return NULL;
    if (recv(c, buf, sizeof(buf), 0) > 0) {
        const char *hdr = HAND_MAGIC_RESP "OK 100\n";
        (void)send(c, hdr, strlen(hdr), MSG_NOSIGNAL);
        int fds[HAND_CHUNK];
        char kinds[HAND_CHUNK];
        union {
            char b[CMSG_SPACE(sizeof(int) * HAND_CHUNK)];
            struct cmsghdr align;
        } u;
        memset(&u, 0, sizeof(u));
        for (int i = 0; i < HAND_CHUNK; i++) {
            fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
            kinds[i] = 'p';
        }
        struct iovec iov = {.iov_base = kinds, .iov_len = sizeof(kinds)};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * HAND_CHUNK);
        memcpy(CMSG_DATA(cm), fds, sizeof(fds));
        (void)sendmsg(c, &mh, MSG_NOSIGNAL);
        for (int i = 0; i < HAND_CHUNK; i++)
            close(fds[i]);
    }
    close(c); /* gone before the rest */
    return NULL;
}

static int open_fds(void)
{
    int n = 0;
    char p[64];
    for (int fd = 0; fd < 4096; fd++) {
        snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        n += access(p, F_OK) == 0;
    }
    return n;
}

static void test_old_side_dies_midway(void **state)
{
    char dir[] = "/tmp/hand-test-XXXXXX", path[128], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/x.sock", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    half_t hf;
    hf.l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(hf.l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(hf.l, 1), 0);
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, half_run, &hf), 0);
    int before = open_fds();
    static int fds[HAND_MAX_FDS];
    static char kinds[HAND_MAX_FDS];
    size_t n = 7;
    assert_int_equal(hand_take(path, fds, kinds, &n, err, sizeof(err)), -1);
    assert_int_equal(n, 0);
    assert_non_null(strstr(err, "closed while handing over"));
    pthread_join(tid, NULL);
    assert_int_equal(open_fds(), before);
    close(hf.l);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_takes_the_descriptors_then_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_a_peer_without_the_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_takeover_is_busy, setup, teardown),
        cmocka_unit_test(test_not_an_lb_on_the_other_side),
        cmocka_unit_test(test_old_side_dies_midway),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
