/* Unit tests for common/rds.c against real redis-server and redis-sentinel
 * processes started on free 127.0.0.1 ports, and a fake Sentinel served from
 * the test's own loop (to make a Sentinel name a replica, or announce a
 * switch, on cue). Skipped when redis-server is not installed. */
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
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "rds.h"
#include "sock.h"

#include "fakesn.h"

/* Upper bound for every wait; generous because the sanitizer build is slow. */
#define WAIT_SECS 10.0

struct fx {
    int have_redis;
    struct ev_loop *loop;
    pid_t pid;
    int port;
    char addr[SOCK_ADDRSTRLEN];
    pid_t more[8]; /* other servers and Sentinels, killed at teardown */
    int nmore;
    char dir[64]; /* Sentinel configuration files; "" until needed */
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

/* Readiness check: a TCP connect plus PING answered (+PONG, or -NOAUTH from a
 * server that wants a password). */
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
             read(fd, rb, sizeof(rb) - 1) >= 5 &&
             (strncmp(rb, "+PONG", 5) == 0 || strncmp(rb, "-NOAUTH", 7) == 0);
    close(fd);
    return ok ? 0 : -1;
}

/* Runs argv (a redis-server or redis-sentinel) until it answers on port. */
static pid_t spawn(char *const *argv, int port)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    double deadline = ev_time() + WAIT_SECS;
    while (redis_ping(port) < 0) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            fail_msg("%s exited during startup (status %d)", argv[0], st);
        if (ev_time() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("%s not ready on port %d after %.0fs", argv[0], port, WAIT_SECS);
        }
        msleep(10);
    }
    return pid;
}

/* A redis-server on port with extra configuration arguments (NULL-ended). */
static pid_t redis_spawn(int port, ...)
{
    char ps[16];
    char *argv[40] = {
        "redis-server", "--port",      ps,   "--bind", "127.0.0.1", "--save", "", "--appendonly",
        "no",           "--daemonize", "no", "--dir",  "/tmp"};
    int n = 13;
    va_list ap;
    va_start(ap, port);
    for (char *a; n < 39 && (a = va_arg(ap, char *)) != NULL;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    snprintf(ps, sizeof(ps), "%d", port);
    return spawn(argv, port);
}

static void redis_start(struct fx *f)
{
    f->pid = redis_spawn(f->port, (char *)NULL);
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
    for (int i = 0; i < f->nmore; i++) {
        if (f->more[i] > 0) {
            kill(f->more[i], SIGKILL);
            waitpid(f->more[i], NULL, 0);
        }
    }
    DIR *d = f->dir[0] ? opendir(f->dir) : NULL;
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d != NULL) {
        closedir(d);
        rmdir(f->dir);
    }
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

/* A plain (no Sentinel, no AUTH) configuration for addr; static storage,
 * valid until the next call, which is enough since rds_create copies it. */
static const rds_config_t *plain(const char *addr)
{
    static rds_config_t c;
    memset(&c, 0, sizeof(c));
    c.addr = addr;
    return &c;
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
    assert_null(rds_create(f->loop, plain("redis.example:6379"), NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "not a numeric IPv4"));
    assert_null(rds_create(f->loop, plain("127.0.0.1"), NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "missing ':PORT'"));
    assert_null(rds_create(f->loop, plain("127.0.0.1:0"), NULL, NULL, err, sizeof(err)));
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
    rds_t *r = rds_create(f->loop, plain(f->addr), record_state, &st, err, sizeof(err));
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
    rds_t *r = rds_create(f->loop, plain(f->addr), record_state, &st, err, sizeof(err));
    assert_non_null(r);
    rds_set_backoff(r, 20, 200);
    /* The connect completes on the loop, never inside rds_create. */
    assert_int_equal(rds_connected(r), 0);
    assert_int_equal(rds_command(r, NULL, NULL, "PING"), -1);

    struct sub s = {0};
    s.r = rds_create(f->loop, plain(f->addr), sub_state, &s, err, sizeof(err));
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
    rds_t *a = rds_create(f->loop, plain(f->addr), free_in_state, &state_calls, err, sizeof(err));
    assert_non_null(a);

    /* From a reply callback, with another command still pending. */
    struct states st = {0};
    struct self_free sf = {0};
    sf.r = rds_create(f->loop, plain(f->addr), record_state, &st, err, sizeof(err));
    assert_non_null(sf.r);
    WAIT_FOR(f->loop, st.n == 1 && state_calls == 1);
    assert_int_equal(rds_command(sf.r, free_in_reply, &sf, "PING"), 0);
    assert_int_equal(rds_command(sf.r, record_reply, &sf.second, "PING"), 0);
    WAIT_FOR(f->loop, sf.freed);

    /* From a subscription message. */
    struct states st2 = {0};
    int msg_calls = 0;
    rds_t *sub = rds_create(f->loop, plain(f->addr), record_state, &st2, err, sizeof(err));
    rds_t *pub = rds_create(f->loop, plain(f->addr), NULL, NULL, err, sizeof(err));
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
    rds_t *r = rds_create(f->loop, plain(addr), record_state, &st, err, sizeof(err));
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

/* ---- configuration, AUTH and the Sentinels ---------------------------------- */

static void test_config_errors(void **state)
{
    struct fx *f = *state;
    char err[SOCK_ERR_LEN];
    struct {
        rds_config_t c;
        const char *want;
    } bad[] = {
        {{.addr = "127.0.0.1:1", .sentinels = "127.0.0.1:2", .master = "m"}, "either"},
        {{.master = "m"}, "either"},
        {{.sentinels = "127.0.0.1:2"}, "master name"},
        {{.sentinels = "127.0.0.1:2", .master = "a b"}, "master name"},
        {{.addr = "127.0.0.1:1", .user = "u"}, "needs a password"},
        {{.sentinels = "127.0.0.1:2", .master = "m", .sentinel_user = "u"}, "needs a password"},
        {{.sentinels = "127.0.0.1:2, sentinel.example:26379", .master = "m"}, "not a numeric"},
        {{.sentinels = " , ", .master = "m"}, "no address"},
        {{.sentinels = "1.1.1.1:1,1.1.1.1:2,1.1.1.1:3,1.1.1.1:4,1.1.1.1:5,1.1.1.1:6,1.1.1.1:7,"
                       "1.1.1.1:8,1.1.1.1:9,1.1.1.1:10,1.1.1.1:11,1.1.1.1:12,1.1.1.1:13,"
                       "1.1.1.1:14,1.1.1.1:15,1.1.1.1:16,1.1.1.1:17",
          .master = "m"},
         "too many addresses"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(rds_create(f->loop, &bad[i].c, NULL, NULL, err, sizeof(err)));
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("case %zu: error '%s' does not say '%s'", i, err, bad[i].want);
    }
    assert_null(rds_create(f->loop, NULL, NULL, NULL, err, sizeof(err)));
}

static void track(struct fx *f, pid_t pid)
{
    assert_true(f->nmore < 8);
    f->more[f->nmore++] = pid;
}

/* stderr into a temporary file, to read what was logged. */
struct capture {
    FILE *f;
    int saved;
};

static void capture_start(struct capture *c)
{
    fflush(stderr);
    c->f = tmpfile();
    assert_non_null(c->f);
    c->saved = dup(STDERR_FILENO);
    dup2(fileno(c->f), STDERR_FILENO);
}

static const char *capture_text(struct capture *c, char *buf, size_t len)
{
    size_t n = (size_t)pread(fileno(c->f), buf, len - 1, 0);
    buf[n < len ? n : 0] = '\0';
    return buf;
}

static void capture_stop(struct capture *c)
{
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    fclose(c->f);
}

static void test_auth(void **state)
{
    struct fx *f = *state;
    if (!f->have_redis)
        skip();
    f->pid = redis_spawn(f->port, "--requirepass", "default-pw", "--user", "wk", "on", ">wk-pw",
                         "~*", "&*", "+@all", (char *)NULL);
    char err[SOCK_ERR_LEN], text[8192];
    struct states ok = {0}, acl = {0}, bad = {0};
    rds_config_t c = {.addr = f->addr, .password = "default-pw"};
    rds_t *r = rds_create(f->loop, &c, record_state, &ok, err, sizeof(err));
    c.user = "wk";
    c.password = "wk-pw";
    rds_t *u = rds_create(f->loop, &c, record_state, &acl, err, sizeof(err));
    WAIT_FOR(f->loop, ok.n == 1 && acl.n == 1);
    struct reply set = {0};
    assert_int_equal(rds_command(u, record_reply, &set, "SET %s %s", "k", "v"), 0);
    WAIT_FOR(f->loop, set.called);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);

    /* A wrong password: never connected, refused in the log, the password
     * nowhere in it. */
    struct capture cap;
    capture_start(&cap);
    c.password = "not-the-pw";
    rds_t *w = rds_create(f->loop, &c, record_state, &bad, err, sizeof(err));
    rds_set_backoff(w, 5, 20);
    double end = ev_time() + WAIT_SECS;
    while (strstr(capture_text(&cap, text, sizeof(text)), "AUTH refused") == NULL &&
           ev_time() < end)
        tick(f->loop);
    run_for(f->loop, 100); /* several more refused attempts */
    capture_text(&cap, text, sizeof(text));
    capture_stop(&cap);
    if (strstr(text, "AUTH refused") == NULL || strstr(text, "WRONGPASS") == NULL)
        fail_msg("no AUTH refusal logged: %s", text);
    assert_null(strstr(text, "not-the-pw"));
    assert_int_equal(bad.n, 0);
    assert_int_equal(rds_connected(w), 0);
    assert_int_equal(rds_command(w, NULL, NULL, "PING"), -1);
    rds_free(w);
    rds_free(u);
    rds_free(r);
}

/* The port of the server an rds_t talks to, from CONFIG GET port. */
static void port_reply(rds_t *r, struct redisReply *reply, void *privdata)
{
    int *port = privdata;
    *port = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
                ? atoi(reply->element[1]->str)
                : -1;
}

static int served_port(struct fx *f, rds_t *r)
{
    int port = 0;
    assert_int_equal(rds_command(r, port_reply, &port, "CONFIG GET port"), 0);
    WAIT_FOR(f->loop, port != 0);
    return port;
}

/* A synchronous command to the server on port, AUTHed with password unless
 * NULL; the caller frees the reply. */
static redisReply *sync_cmd(int port, const char *password, const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_true(c != NULL && !c->err);
    if (password != NULL)
        freeReplyObject(redisCommand(c, "AUTH %s", password));
    va_list ap;
    va_start(ap, fmt);
    redisReply *x = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(x);
    return x;
}

/* Records the state and frees the link when it goes down. */
static void free_on_down(rds_t *r, int connected, void *ud)
{
    record_state(r, connected, ud);
    if (!connected)
        rds_free(r);
}

/* What the Sentinels name is asked in turn, checked with ROLE (a replica is
 * never used), and a +switch-master moves the link even though the old
 * master is still up and still a master. */
static void test_sentinel_names_and_switches(void **state)
{
    struct fx *f = *state;
    if (!f->have_redis)
        skip();
    int pa = f->port, pb = free_port(), dead = free_port();
    char pas[16], cfgs[128], msg[128];
    snprintf(pas, sizeof(pas), "%d", pa);
    redis_start(f);
    track(f, redis_spawn(pb, "--replicaof", "127.0.0.1", pas, (char *)NULL));
    struct fake_sn s1 = {0}, s2 = {0};
    fake_start(f->loop, &s1);
    fake_start(f->loop, &s2);
    snprintf(s2.answer, sizeof(s2.answer), "127.0.0.1 %d", pb); /* the replica */
    snprintf(cfgs, sizeof(cfgs), "127.0.0.1:%d, 127.0.0.1:%d,127.0.0.1:%d", dead, s1.port, s2.port);
    rds_config_t c = {.sentinels = cfgs, .master = "m"};
    char err[SOCK_ERR_LEN];
    struct states st = {0};
    rds_t *r = rds_create(f->loop, &c, record_state, &st, err, sizeof(err));
    assert_non_null(r);
    rds_set_backoff(r, 10, 50);

    /* The dead one is skipped, s1 knows no such master, s2 names a replica:
     * ROLE refuses it, again and again. */
    WAIT_FOR(f->loop, s2.queries >= 3);
    assert_true(s1.queries >= 2);
    assert_int_equal(st.n, 0);
    assert_int_equal(rds_connected(r), 0);
    redisReply *x = sync_cmd(pb, NULL, "INFO commandstats");
    const char *role = strstr(x->str, "cmdstat_role:calls=");
    assert_true(role != NULL && atoi(role + strlen("cmdstat_role:calls=")) >= 2);
    assert_null(strstr(x->str, "cmdstat_set:"));
    freeReplyObject(x);

    /* Now s2 names the master. A second link, which frees itself when the
     * switch below takes it down, comes up too. */
    snprintf(s2.answer, sizeof(s2.answer), "127.0.0.1 %d", pa);
    struct states gone = {0};
    rds_t *g = rds_create(f->loop, &c, free_on_down, &gone, err, sizeof(err));
    WAIT_FOR(f->loop, st.n == 1 && gone.n == 1);
    assert_int_equal(served_port(f, r), pa);

    /* B is promoted and a Sentinel announces it: the link moves at once. */
    freeReplyObject(sync_cmd(pb, NULL, "REPLICAOF NO ONE"));
    WAIT_FOR(f->loop, fake_subscribers(&s1) + fake_subscribers(&s2) == 2);
    snprintf(msg, sizeof(msg), "other 127.0.0.1 %d 127.0.0.1 %d", pa, dead);
    assert_int_equal(fake_switch(&s1, msg) + fake_switch(&s2, msg), 2); /* not ours */
    snprintf(msg, sizeof(msg), "m 127.0.0.1 %d 127.0.0.1 %d", pa, pb);
    assert_int_equal(fake_switch(&s1, msg) + fake_switch(&s2, msg), 2);
    WAIT_FOR(f->loop, st.n == 3);
    assert_int_equal(st.ev[1], 0);
    assert_int_equal(st.ev[2], 1);
    assert_int_equal(served_port(f, r), pb);
    struct reply set = {0};
    assert_int_equal(rds_command(r, record_reply, &set, "SET %s %s", "k", "on-b"), 0);
    WAIT_FOR(f->loop, set.called);
    assert_int_equal(set.type, REDIS_REPLY_STATUS);
    assert_int_equal(st.n, 3);
    assert_int_equal(gone.n, 2); /* up, then down and freed: nothing after */
    (void)g;

    rds_free(r);
    fake_stop(f->loop, &s1);
    fake_stop(f->loop, &s2);
}

static int have_sentinel(void)
{
    return access("/usr/bin/redis-sentinel", X_OK) == 0;
}

/* A SIGKILLed master, a real Sentinel, passwords everywhere: the link and a
 * subscriber follow the failover to the promoted replica. */
static void test_sentinel_failover(void **state)
{
    struct fx *f = *state;
    if (!f->have_redis || !have_sentinel())
        skip();
    int pm = f->port, pr = free_port(), ps = free_port();
    char pms[16], pss[16], path[128];
    snprintf(pms, sizeof(pms), "%d", pm);
    snprintf(pss, sizeof(pss), "%d", ps);
    f->pid = redis_spawn(pm, "--requirepass", "data-pw", "--masterauth", "data-pw", (char *)NULL);
    track(f, redis_spawn(pr, "--requirepass", "data-pw", "--masterauth", "data-pw", "--replicaof",
                         "127.0.0.1", pms, (char *)NULL));
    snprintf(f->dir, sizeof(f->dir), "/tmp/wslb-rds-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(path, sizeof(path), "%s/sentinel.conf", f->dir);
    FILE *cf = fopen(path, "w");
    assert_non_null(cf);
    fprintf(cf,
            "port %d\nbind 127.0.0.1\ndir %s\nrequirepass sentinel-pw\n"
            "sentinel monitor m 127.0.0.1 %d 1\nsentinel auth-pass m data-pw\n"
            "sentinel down-after-milliseconds m 500\nsentinel failover-timeout m 3000\n",
            ps, f->dir, pm);
    fclose(cf);
    char *argv[] = {"redis-sentinel", path, NULL};
    track(f, spawn(argv, ps));
    /* A failover needs a replica the Sentinel has seen in good health. */
    double end = ev_time() + WAIT_SECS;
    for (;;) {
        redisReply *x = sync_cmd(ps, "sentinel-pw", "SENTINEL replicas m");
        int good = 0;
        for (size_t i = 0; x->type == REDIS_REPLY_ARRAY && i < x->elements; i++)
            for (size_t k = 0; k + 1 < x->element[i]->elements; k += 2)
                good |= strcmp(x->element[i]->element[k]->str, "master-link-status") == 0 &&
                        strcmp(x->element[i]->element[k + 1]->str, "ok") == 0;
        freeReplyObject(x);
        if (good)
            break;
        if (ev_time() > end)
            fail_msg("the Sentinel did not see the replica");
        msleep(50);
    }

    char sl[64], err[SOCK_ERR_LEN];
    snprintf(sl, sizeof(sl), "127.0.0.1:%d", ps);
    rds_config_t c = {
        .sentinels = sl, .master = "m", .password = "data-pw", .sentinel_password = "sentinel-pw"};
    struct states st = {0};
    rds_t *r = rds_create(f->loop, &c, record_state, &st, err, sizeof(err));
    struct sub s = {0};
    s.r = rds_create(f->loop, &c, sub_state, &s, err, sizeof(err));
    assert_true(r != NULL && s.r != NULL);
    WAIT_FOR(f->loop, st.n == 1 && s.subscribed == 1);
    assert_int_equal(served_port(f, r), pm);

    redis_stop(f);
    WAIT_FOR(f->loop, st.n == 3 && s.subscribed == 2);
    assert_int_equal(st.ev[1], 0);
    assert_int_equal(st.ev[2], 1);
    assert_int_equal(served_port(f, r), pr);
    assert_int_equal(s.resubscribe_failures, 0);
    struct reply pub = {0};
    assert_int_equal(rds_command(r, record_reply, &pub, "PUBLISH chan %s", "after"), 0);
    WAIT_FOR(f->loop, s.nmsg == 1 && pub.called);
    assert_string_equal(s.msgs[0], "after");
    rds_free(s.r);
    rds_free(r);
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
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sentinel_names_and_switches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sentinel_failover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
