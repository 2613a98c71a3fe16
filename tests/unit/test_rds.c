/* Unit tests for common/rds.c against a real redis-server started on a free
 * 127.0.0.1 port. Skipped when redis-server is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "rds.h"
#include "sock.h"

/* Upper bound for every wait; generous because the sanitizer build is slow. */
#define WAIT_SECS 10.0

struct fx {
    int have_redis;
    struct ev_loop *loop;
    pid_t pid;
    int port;
    char addr[SOCK_ADDRSTRLEN];
};

static int have_redis(void)
{
    const char *path = getenv("PATH");
    char buf[4096];
    if (path == NULL)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof(buf), "%.*s/redis-server", (int)n, path);
        if (access(buf, X_OK) == 0)
            return 1;
        path += n + (path[n] == ':');
    }
    return 0;
}

/* A port nobody listens on right now: bind port 0, read it back, close. */
static int free_port(void)
{
    sock_addr_t a;
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &a, NULL, 0), 0);
    int fd = sock_listen(&a, 1, 0, NULL, 0);
    assert_true(fd >= 0);
    assert_int_equal(sock_local_addr(fd, &a), 0);
    close(fd);
    return ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Readiness check: a TCP connect plus PING answered with +PONG. */
static int redis_ping(int port)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    sock_addr_t a;
    if (sock_parse_addr(addr, &a, NULL, 0) < 0)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char rb[16] = "";
    int ok = connect(fd, (struct sockaddr *)&a.ss, a.len) == 0 && write(fd, "PING\r\n", 6) == 6 &&
             read(fd, rb, sizeof(rb) - 1) >= 5 && strncmp(rb, "+PONG", 5) == 0;
    close(fd);
    return ok ? 0 : -1;
}

static void redis_start(struct fx *f)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", f->port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    f->pid = pid;
    double deadline = ev_time() + WAIT_SECS;
    while (redis_ping(f->port) < 0) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            f->pid = 0;
            fail_msg("redis-server exited during startup (status %d)", st);
        }
        if (ev_time() > deadline)
            fail_msg("redis-server not ready on port %d after %.0fs", f->port, WAIT_SECS);
        msleep(10);
    }
}

static void redis_stop(struct fx *f)
{
    if (f->pid <= 0)
        return;
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
    f->pid = 0;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    f->have_redis = have_redis();
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->port = free_port();
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%d", f->port);
    *state = f;
    return f->loop ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    redis_stop(f);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Runs one loop iteration, never blocking longer than 20 ms. */
static void tick(struct ev_loop *loop)
{
    ev_timer t;
    ev_timer_init(&t, tick_cb, 0.02, 0.0);
    ev_timer_start(loop, &t);
    ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

#define WAIT_FOR(loop, cond)                                                                       \
    do {                                                                                           \
        double dl_ = ev_time() + WAIT_SECS;                                                        \
        while (!(cond) && ev_time() < dl_)                                                         \
            tick(loop);                                                                            \
        if (!(cond))                                                                               \
            fail_msg("timed out waiting for: %s", #cond);                                          \
    } while (0)

/* Lets the loop run for about ms, e.g. to let deferred work finish. */
static void run_for(struct ev_loop *loop, int ms)
{
    double end = ev_time() + ms / 1000.0;
    while (ev_time() < end)
        tick(loop);
}

/* ---- recording callbacks --------------------------------------------------- */

struct states {
    int ev[16];
    int n;
};

static void record_state(rds_t *r, int connected, void *ud)
{
    struct states *s = ud;
    if (s->n < 16)
        s->ev[s->n++] = connected;
}

struct reply {
    int called;
    int was_null;
    int type;
    char str[64];
    size_t len;
    long long integer;
};

static void record_reply(rds_t *r, struct redisReply *reply, void *privdata)
{
    struct reply *x = privdata;
    x->called++;
    x->was_null = reply == NULL;
    if (reply == NULL)
        return;
    x->type = reply->type;
    x->integer = reply->integer;
    if (reply->str != NULL) {
        x->len = reply->len < sizeof(x->str) ? reply->len : sizeof(x->str);
        memcpy(x->str, reply->str, x->len);
    }
}

struct sub {
    rds_t *r;
    int subscribed;
    int nulls;
    char msgs[8][32];
    int nmsg;
    int resubscribe_failures;
};

static void on_message(rds_t *r, struct redisReply *reply, void *privdata)
{
    struct sub *s = privdata;
    if (reply == NULL) {
        s->nulls++;
        return;
    }
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_true(reply->elements >= 3);
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "subscribe") == 0)
        s->subscribed++;
    else if (strcmp(kind, "message") == 0 && s->nmsg < 8)
        snprintf(s->msgs[s->nmsg++], sizeof(s->msgs[0]), "%s", reply->element[2]->str);
}

/* A subscriber re-issues SUBSCRIBE on every (re)connect, as rds.h advises. */
static void sub_state(rds_t *r, int connected, void *ud)
{
    struct sub *s = ud;
    if (connected && rds_command(r, on_message, s, "SUBSCRIBE %s", "chan") < 0)
        s->resubscribe_failures++;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_bad_address(void **state)
{
    struct fx *f = *state;
    char err[SOCK_ERR_LEN] = "";
    assert_null(rds_create(f->loop, "redis.example:6379", NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "not a numeric IPv4"));
    assert_null(rds_create(f->loop, "127.0.0.1", NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "missing ':PORT'"));
    assert_null(rds_create(f->loop, "127.0.0.1:0", NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "port 0"));
    rds_free(NULL);
    assert_int_equal(rds_connected(NULL), 0);
}

static void test_no_server_retries_quietly(void **state)
{
    struct fx *f = *state;
    if (!f->have_redis)
        skip();
    struct states st = {0};
    char err[SOCK_ERR_LEN];
    rds_t *r = rds_create(f->loop, f->addr, record_state, &st, err, sizeof(err));
    assert_non_null(r);
    rds_set_backoff(r, 5, 20);
    struct reply x = {0};
    /* Several refused attempts: no state change, commands fail at once. */
    run_for(f->loop, 150);
    assert_int_equal(st.n, 0);
    assert_int_equal(rds_connected(r), 0);
    assert_int_equal(rds_command(r, record_reply, &x, "PING"), -1);
    const char *argv[] = {"PING"};
    assert_int_equal(rds_command_argv(r, record_reply, &x, 1, argv, NULL), -1);
    assert_int_equal(x.called, 0);

    /* Once a server appears the retry loop finds it. */
    redis_start(f);
    WAIT_FOR(f->loop, st.n == 1);
    assert_int_equal(st.ev[0], 1);
    assert_int_equal(rds_connected(r), 1);
    rds_free(r);
}

static void test_commands_pubsub_reconnect(void **state)
{
    struct fx *f = *state;
    if (!f->have_redis)
        skip();
    redis_start(f);
    char err[SOCK_ERR_LEN];
    struct states st = {0};
    rds_t *r = rds_create(f->loop, f->addr, record_state, &st, err, sizeof(err));
    assert_non_null(r);
    rds_set_backoff(r, 20, 200);
    /* The connect completes on the loop, never inside rds_create. */
    assert_int_equal(rds_connected(r), 0);
    assert_int_equal(rds_command(r, NULL, NULL, "PING"), -1);

    struct sub s = {0};
    s.r = rds_create(f->loop, f->addr, sub_state, &s, err, sizeof(err));
    assert_non_null(s.r);
    rds_set_backoff(s.r, 20, 200);

    WAIT_FOR(f->loop, st.n == 1 && s.subscribed == 1);
    assert_int_equal(st.ev[0], 1);

    /* SET/GET with a binary value through the argv form. */
    struct reply set = {0}, get = {0};
    const char *argv[] = {"SET", "k", "a\0b"};
    const size_t argvlen[] = {3, 1, 3};
    assert_int_equal(rds_command_argv(r, record_reply, &set, 3, argv, argvlen), 0);
    assert_int_equal(rds_command(r, record_reply, &get, "GET %s", "k"), 0);
    WAIT_FOR(f->loop, set.called && get.called);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_memory_equal(set.str, "OK", 2);
    assert_int_equal(get.type, REDIS_REPLY_STRING);
    assert_int_equal(get.len, 3);
    assert_memory_equal(get.str, "a\0b", 3);
    assert_int_equal(get.called, 1);

    /* PUBLISH reaches the subscriber's callback once per message. */
    struct reply pub[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(rds_command(r, record_reply, &pub[i], "PUBLISH chan m%d", i), 0);
    WAIT_FOR(f->loop, s.nmsg == 3);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof(want), "m%d", i);
        assert_string_equal(s.msgs[i], want);
        assert_int_equal(pub[i].type, REDIS_REPLY_INTEGER);
        assert_int_equal(pub[i].integer, 1); /* one subscriber got it */
    }

    /* A command still waiting when the server dies is answered with NULL. */
    struct reply blocked = {0};
    assert_int_equal(rds_command(r, record_reply, &blocked, "BLPOP %s 0", "nolist"), 0);
    run_for(f->loop, 50);
    assert_int_equal(blocked.called, 0);

    redis_stop(f);
    WAIT_FOR(f->loop, st.n == 2 && s.nulls == 1 && blocked.called);
    assert_int_equal(st.ev[1], 0);
    assert_int_equal(blocked.was_null, 1);
    assert_int_equal(blocked.called, 1);
    assert_int_equal(rds_connected(r), 0);
    assert_int_equal(rds_connected(s.r), 0);
    assert_int_equal(rds_command(r, NULL, NULL, "PING"), -1);

    /* Same port, fresh server: both reconnect, the subscriber re-subscribes. */
    redis_start(f);
    WAIT_FOR(f->loop, st.n == 3 && s.subscribed == 2);
    assert_int_equal(st.ev[2], 1);
    assert_int_equal(s.resubscribe_failures, 0);
    struct reply again = {0}, gone = {0};
    assert_int_equal(rds_command(r, record_reply, &again, "PUBLISH chan %s", "after"), 0);
    assert_int_equal(rds_command(r, record_reply, &gone, "GET k"), 0);
    WAIT_FOR(f->loop, s.nmsg == 4 && gone.called);
    assert_string_equal(s.msgs[3], "after");
    assert_int_equal(gone.type, REDIS_REPLY_NIL); /* no persistence: a new server */

    /* Freeing a subscriber: its callback gets a final NULL. */
    int nulls = s.nulls;
    rds_free(s.r);
    assert_int_equal(s.nulls, nulls + 1);
    rds_free(r);
    assert_int_equal(st.n, 3); /* no state callback for a deliberate free */
}

struct self_free {
    rds_t *r;
    int freed;
    struct reply second;
};

static void free_in_reply(rds_t *r, struct redisReply *reply, void *privdata)
{
    struct self_free *sf = privdata;
    assert_non_null(reply);
    rds_free(r);
    sf->freed = 1;
    /* The module refuses work once freeing has started. */
    assert_int_equal(rds_command(r, NULL, NULL, "PING"), -1);
    assert_int_equal(rds_connected(r), 0);
    /* The command queued behind this one was answered inside rds_free. */
    assert_int_equal(sf->second.called, 1);
    assert_int_equal(sf->second.was_null, 1);
}

static void free_in_state(rds_t *r, int connected, void *ud)
{
    int *n = ud;
    (*n)++;
    rds_free(r);
}

static void free_in_message(rds_t *r, struct redisReply *reply, void *privdata)
{
    int *n = privdata;
    (*n)++;
    if (reply != NULL && reply->elements >= 3 && strcmp(reply->element[0]->str, "message") == 0)
        rds_free(r);
}

static void test_free_inside_callbacks(void **state)
{
    struct fx *f = *state;
    if (!f->have_redis)
        skip();
    redis_start(f);
    char err[SOCK_ERR_LEN];

    /* From a state callback. */
    int state_calls = 0;
    rds_t *a = rds_create(f->loop, f->addr, free_in_state, &state_calls, err, sizeof(err));
    assert_non_null(a);

    /* From a reply callback, with another command still pending. */
    struct states st = {0};
    struct self_free sf = {0};
    sf.r = rds_create(f->loop, f->addr, record_state, &st, err, sizeof(err));
    assert_non_null(sf.r);
    WAIT_FOR(f->loop, st.n == 1 && state_calls == 1);
    assert_int_equal(rds_command(sf.r, free_in_reply, &sf, "PING"), 0);
    assert_int_equal(rds_command(sf.r, record_reply, &sf.second, "PING"), 0);
    WAIT_FOR(f->loop, sf.freed);

    /* From a subscription message. */
    struct states st2 = {0};
    int msg_calls = 0;
    rds_t *sub = rds_create(f->loop, f->addr, record_state, &st2, err, sizeof(err));
    rds_t *pub = rds_create(f->loop, f->addr, NULL, NULL, err, sizeof(err));
    WAIT_FOR(f->loop, st2.n == 1 && rds_connected(pub));
    assert_int_equal(rds_command(sub, free_in_message, &msg_calls, "SUBSCRIBE c1 c2"), 0);
    WAIT_FOR(f->loop, msg_calls == 2); /* one confirmation per channel */
    assert_int_equal(rds_command(pub, NULL, NULL, "PUBLISH c1 x"), 0);
    /* Message, then the final NULL from rds_free: exactly once for both channels. */
    WAIT_FOR(f->loop, msg_calls == 4);

    /* Outside callbacks: pending callbacks run before rds_free returns. */
    struct reply p1 = {0}, p2 = {0};
    assert_int_equal(rds_command(pub, record_reply, &p1, "PING"), 0);
    assert_int_equal(rds_command(pub, record_reply, &p2, "GET %s", "x"), 0);
    rds_free(pub);
    assert_int_equal(p1.called, 1);
    assert_int_equal(p1.was_null, 1);
    assert_int_equal(p2.called, 1);
    assert_int_equal(p2.was_null, 1);

    /* Give the deferred frees their turn; nothing may be called again. */
    run_for(f->loop, 100);
    assert_int_equal(state_calls, 1);
    assert_int_equal(msg_calls, 4);
    assert_int_equal(sf.second.called, 1);
    assert_int_equal(p1.called, 1);
    assert_int_equal(st.n, 1);
    assert_int_equal(ev_pending_count(f->loop), 0);
}

static void test_connect_timeout(void **state)
{
    struct fx *f = *state;
    if (!f->have_redis)
        skip();
    /* A listener whose accept queue is full and never drained: the kernel
     * drops further SYNs, so a connect hangs just as with a black-holed host. */
    sock_addr_t a;
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &a, NULL, 0), 0);
    int lfd = sock_listen(&a, 0, 0, NULL, 0);
    assert_true(lfd >= 0);
    assert_int_equal(listen(lfd, 0), 0); /* sock_listen maps 0 to SOMAXCONN */
    assert_int_equal(sock_local_addr(lfd, &a), 0);
    int fill[4];
    int nfill = 0;
    for (; nfill < 4; nfill++) {
        fill[nfill] = sock_connect(&a, NULL, NULL, 0);
        assert_true(fill[nfill] >= 0);
    }
    run_for(f->loop, 50);
    char addr[SOCK_ADDRSTRLEN];
    sock_addr_str(&a, addr, sizeof(addr));

    /* Capture the log: the timeout shows there and nowhere else. */
    fflush(stderr);
    FILE *cap = tmpfile();
    assert_non_null(cap);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(cap), STDERR_FILENO);

    struct states st = {0};
    char err[SOCK_ERR_LEN];
    rds_t *r = rds_create(f->loop, addr, record_state, &st, err, sizeof(err));
    double start = ev_time();
    char text[4096] = "";
    while (strstr(text, "connect timed out") == NULL && ev_time() < start + WAIT_SECS) {
        tick(f->loop);
        size_t n = (size_t)pread(fileno(cap), text, sizeof(text) - 1, 0);
        text[n < sizeof(text) ? n : 0] = '\0';
    }
    double took = ev_time() - start;
    rds_free(r);
    dup2(saved, STDERR_FILENO);
    close(saved);
    fclose(cap);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    close(lfd);

    if (strstr(text, "connect timed out") == NULL)
        fail_msg("no connect timeout logged after %.1fs; log: %s", took, text);
    assert_true(took >= 1.0);
    assert_int_equal(st.n, 0);
}

int main(void)
{
    if (!have_redis())
        fprintf(stderr, "redis-server not installed: the rds tests that need it are skipped\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_server_retries_quietly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_pubsub_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
