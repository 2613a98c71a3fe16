/* pxfx: a world for unit tests of the lb's session state machine. It
 * includes lb/px_sess.c (the h2o habit: its static functions are in reach),
 * and builds one px_thread_t on a private ev_loop with no listener and no
 * thread of its own:
 *   - a client is a TCP connection on 127.0.0.1 whose far end the test
 *     holds; the near end goes to px_conn_new() as if accepted;
 *   - a backend is a listening socket on 127.0.0.1 in a real be_table_t;
 *     the test accepts the lb's connections to it and plays the worker.
 * The loop runs one iteration at a time until a condition holds, at most
 * FX_ITER iterations, each of which a 10 ms tick ends. Every connection
 * that ends is seen by the free hook (FX_END: its reason, status, bytes).
 *
 * Header only: each test binary includes it once, and its Makefile entry
 * (test_NAME_INCLUDES) keeps px_sess.o out of the link. */
#ifndef TESTS_UNIT_PXFX_H
#define TESTS_UNIT_PXFX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

struct px_conn;
static void fx_on_free(const struct px_conn *c);
#define PX_SESS_FREE_HOOK(c) fx_on_free(c)

#include "../../lb/px_sess.c"

#include "px_listen.h"
#include "route.h"
#include "ws.h"

#define FX_ITER   800 /* loop iterations one wait may take (8 s at the tick) */
#define FX_MAX_BE 4
#define FX_UNUSED __attribute__((unused))

#define WS_REQ                                                                                     \
    "GET /eval HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"               \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
#define WS_101                                                                                     \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"            \
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
#define API_GET "GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n"
#define RESP_OK "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

/* What the last connection to end said. */
typedef struct fx_end {
    int reason; /* enum px_reason */
    int status;
    uint64_t in, out;
    int ws_first;
    int lb_closed;
    char backend[128]; /* "" = none */
} fx_end_t;

typedef struct fx {
    struct ev_loop *loop;
    ev_timer tick;
    px_t px;
    px_thread_t th;
    lbs_t stats;
    be_table_t *table;
    route_t *routes;
    tls_t *tls;
    int front; /* the listener test clients come through */
    int nbe;
    int be_lfd[FX_MAX_BE]; /* -1 = not a TCP listener */
    int client_rcvbuf;     /* SO_RCVBUF for the next client; 0 = the default */
    int backend_rcvbuf;    /* SO_RCVBUF for the next backend's connections */
    int nfreed;
    fx_end_t end;
} fx_t;

/* Bytes read from one socket. */
typedef struct fx_in {
    buf_t b;
    int eof;
    int err; /* errno of a failed read, 0 = none */
} fx_in_t;

static void fx_on_free(const struct px_conn *c)
{
    fx_t *f = container_of(c->th, fx_t, th);
    f->nfreed++;
    memset(&f->end, 0, sizeof(f->end));
    f->end.reason = c->reason;
    f->end.status = c->status;
    f->end.in = c->acct != NULL ? c->acct->bytes_in : 0;
    f->end.out = c->acct != NULL ? c->acct->bytes_out : 0;
    f->end.ws_first = c->ws_first;
    f->end.lb_closed = c->lb_closed;
    if (c->be != NULL)
        snprintf(f->end.backend, sizeof(f->end.backend), "%s", be_id(c->be));
}

static void fx_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Runs f's loop until expr holds, one iteration at a time, at most FX_ITER
 * of them; fails the test if it never does. */
#define fx_wait(f, expr)                                                                           \
    do {                                                                                           \
        int ok_ = 0;                                                                               \
        for (int i_ = 0; i_ < FX_ITER && !(ok_ = (expr)); i_++)                                    \
            ev_run((f)->loop, EVRUN_ONCE);                                                         \
        if (!ok_)                                                                                  \
            fail_msg("%s:%d: never happened: %s", __FILE__, __LINE__, #expr);                      \
    } while (0)

/* Runs f's loop for n iterations (at most n ticks): time for something
 * that must not happen to show. */
FX_UNUSED static void fx_spin(fx_t *f, int n)
{
    for (int i = 0; i < n; i++)
        ev_run(f->loop, EVRUN_ONCE);
}

/* A non-blocking TCP listener on 127.0.0.1, any port. */
static int fx_listen(int backlog, sock_addr_t *bound)
{
    sock_addr_t a;
    char err[SOCK_ERR_LEN];
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &a, err, sizeof(err)), 0);
    int fd = sock_listen(&a, backlog, 0, err, sizeof(err));
    assert_true(fd >= 0);
    assert_int_equal(sock_local_addr(fd, bound), 0);
    return fd;
}

static int fx_setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char err[128];
    sock_addr_t a;

    assert_non_null(f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    ev_timer_init(&f->tick, fx_tick_cb, 0.01, 0.01);
    ev_timer_start(f->loop, &f->tick);
    f->table = be_table_create(NULL, 0);
    /* A fake backend that fails stays in rotation: each test says who fails. */
    be_table_set_health(f->table, 2, 1000);
    f->routes = route_create();
    assert_int_equal(route_add_ws(f->routes, "/eval", err, sizeof(err)), 0);
    assert_int_equal(route_add_http(f->routes, "/api", err, sizeof(err)), 0);
    assert_int_equal(route_finish(f->routes, err, sizeof(err)), 0);
    f->px.table = f->table;
    f->px.stats = &f->stats;
    f->px.th = &f->th;
    f->px.nth = 1;
    f->px.cfg.threads = 1;
    /* The byte counts the tests read (fx_on_free) are kept for the log. */
    f->px.cfg.access_log = 1;
    f->px.cfg.nlisten = 1;
    f->px.cfg.timeout_head_ms = 5000;
    f->px.cfg.timeout_connect_ms = 5000;
    f->px.cfg.timeout_response_ms = 5000;
    f->px.cfg.retries = 2;
    f->px.cfg.routes = f->routes;
    f->th.px = &f->px;
    f->th.loop = f->loop;
    f->th.reserve_fd = -1;
    f->th.scratch = malloc(PX_SCRATCH);
    assert_non_null(f->th.scratch);
    f->front = fx_listen(16, &a);
    for (int i = 0; i < FX_MAX_BE; i++)
        f->be_lfd[i] = -1;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *f = *state;
    while (f->th.conns != NULL)
        px_conn_free(f->th.conns);
    for (size_t i = 0; i < f->th.nls; i++) {
        acc_free(f->th.ls[i].acc);
        if (f->th.ls[i].fd >= 0)
            close(f->th.ls[i].fd);
    }
    free(f->th.ls);
    for (int i = 0; i < f->nbe; i++)
        if (f->be_lfd[i] >= 0)
            close(f->be_lfd[i]);
    close(f->front);
    be_table_free(f->table);
    route_free(f->routes);
    tls_free(f->tls);
    st_free(f->px.cfg.st);
    ev_timer_stop(f->loop, &f->tick);
    ev_loop_destroy(f->loop);
    free(f->th.scratch);
    px_pool_destroy(&f->th.cpool);
    free(f);
    return 0;
}

/* The connection being tested (the newest one). */
FX_UNUSED static px_conn_t *fx_conn(fx_t *f)
{
    return f->th.conns;
}

/* A client of the session: the test's end of a new TCP connection whose
 * other end px_conn_new() took, as from a plain (tls 0) or TLS listener. */
static int fx_client(fx_t *f, int tls)
{
    sock_addr_t fa, peer;
    assert_int_equal(sock_local_addr(f->front, &fa), 0);
    int cl = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(cl >= 0);
    if (f->client_rcvbuf > 0)
        assert_int_equal(
            setsockopt(cl, SOL_SOCKET, SO_RCVBUF, &f->client_rcvbuf, sizeof(f->client_rcvbuf)), 0);
    int r = connect(cl, (struct sockaddr *)&fa.ss, fa.len);
    assert_true(r == 0 || errno == EINPROGRESS);
    struct pollfd p = {.fd = f->front, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    int fd = sock_accept(f->front, &peer);
    assert_true(fd >= 0);
    px_conn_new(&f->th, fd, &peer, tls);
    return cl;
}

/* A fake backend: a listener on 127.0.0.1 in the table as "bN". */
static int fx_backend(fx_t *f, int backlog)
{
    sock_addr_t a;
    char id[8];
    assert_true(f->nbe < FX_MAX_BE);
    int i = f->nbe++;
    f->be_lfd[i] = fx_listen(backlog, &a);
    /* Accepted sockets take it from the listener (before their SYN). */
    if (f->backend_rcvbuf > 0)
        assert_int_equal(setsockopt(f->be_lfd[i], SOL_SOCKET, SO_RCVBUF, &f->backend_rcvbuf,
                                    sizeof(f->backend_rcvbuf)),
                         0);
    snprintf(id, sizeof(id), "b%d", i);
    assert_non_null(be_add(f->table, id, &a, 1, BE_STATIC));
    return i;
}

/* A backend nobody listens on: a bound socket that never listens, so that
 * a connect to it is refused and no one else gets its port meanwhile. The
 * socket is kept (closed at teardown). */
FX_UNUSED static int fx_backend_refusing(fx_t *f)
{
    sock_addr_t a;
    char err[SOCK_ERR_LEN], id[8];
    assert_true(f->nbe < FX_MAX_BE);
    int i = f->nbe++;
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &a, err, sizeof(err)), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a.ss, a.len), 0);
    assert_int_equal(sock_local_addr(fd, &a), 0);
    f->be_lfd[i] = fd;
    snprintf(id, sizeof(id), "b%d", i);
    assert_non_null(be_add(f->table, id, &a, 1, BE_STATIC));
    return i;
}

/* A backend whose connect fails at once, before any packet: a unix socket
 * path that does not exist. */
FX_UNUSED static int fx_backend_unix_missing(fx_t *f)
{
    sock_addr_t a;
    char id[8];
    assert_true(f->nbe < FX_MAX_BE);
    int i = f->nbe++;
    memset(&a, 0, sizeof(a));
    struct sockaddr_un *un = (struct sockaddr_un *)&a.ss;
    un->sun_family = AF_UNIX;
    snprintf(un->sun_path, sizeof(un->sun_path), "/nonexistent/wslb-test-%d.sock", (int)getpid());
    a.len = sizeof(*un);
    snprintf(id, sizeof(id), "b%d", i);
    assert_non_null(be_add(f->table, id, &a, 1, BE_STATIC));
    return i;
}

/* The lb's next connection to backend i, accepted (non-blocking). */
FX_UNUSED static int fx_accept(fx_t *f, int i)
{
    int fd = -1;
    fx_wait(f, (fd = sock_accept(f->be_lfd[i], NULL)) >= 0);
    return fd;
}

/* The lb's next connection to any listening backend; *which says whose. */
FX_UNUSED static int fx_accept_any(fx_t *f, int *which)
{
    int fd = -1;
    for (int it = 0; it < FX_ITER && fd < 0; it++) {
        for (int i = 0; i < f->nbe && fd < 0; i++) {
            if (f->be_lfd[i] >= 0 && (fd = sock_accept(f->be_lfd[i], NULL)) >= 0)
                *which = i;
        }
        if (fd < 0)
            ev_run(f->loop, EVRUN_ONCE);
    }
    if (fd < 0)
        fail_msg("no connection reached any backend");
    return fd;
}

/* Reads at most max bytes of what fd has into in, without blocking. 1 once
 * fd said EOF or failed. */
static int fx_read_max(int fd, fx_in_t *in, size_t max)
{
    while (!in->eof && !in->err && max > 0) {
        size_t want = max < 65536 ? max : 65536;
        char *p = buf_reserve(&in->b, want);
        assert_non_null(p);
        ssize_t n = recv(fd, p, want, MSG_DONTWAIT);
        if (n > 0) {
            buf_commit(&in->b, (size_t)n);
            max -= (size_t)n;
        } else if (n == 0) {
            in->eof = 1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            in->err = errno;
        }
    }
    return in->eof || in->err;
}

/* Reads what fd has; 1 once it ended. */
static int fx_read(int fd, fx_in_t *in)
{
    return fx_read_max(fd, in, SIZE_MAX);
}

/* Reads what fd has; 1 once in holds at least n bytes. */
static int fx_has(int fd, fx_in_t *in, size_t n)
{
    fx_read(fd, in);
    return buf_size(&in->b) >= n;
}

/* Reads what fd has; 1 once in holds s (in its first limit bytes). */
FX_UNUSED static int fx_has_str(int fd, fx_in_t *in, const char *s)
{
    fx_read(fd, in);
    return memmem(buf_head(&in->b), buf_size(&in->b), s, strlen(s)) != NULL;
}

FX_UNUSED static int fx_starts(const fx_in_t *in, const char *s)
{
    size_t n = strlen(s);
    return buf_size(&in->b) >= n && memcmp(buf_head(&in->b), s, n) == 0;
}

FX_UNUSED static void fx_in_reset(fx_in_t *in)
{
    buf_free(&in->b);
    memset(in, 0, sizeof(*in));
}

/* Writes all of p to fd, running the loop while the socket is full. */
static void fx_send(fx_t *f, int fd, const void *p, size_t n)
{
    const char *q = p;
    for (int it = 0; n > 0 && it < FX_ITER; it++) {
        ssize_t w = send(fd, q, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            q += w;
            n -= (size_t)w;
            it = 0;
            continue;
        }
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
        ev_run(f->loop, EVRUN_ONCE);
    }
    assert_int_equal(n, 0);
}

FX_UNUSED static void fx_send_str(fx_t *f, int fd, const char *s)
{
    fx_send(f, fd, s, strlen(s));
}

/* A stream of n bytes from the test's end `from`, through the session, to
 * its end `to`, with the lb's queue toward `to` watched. */
typedef struct fx_flow {
    int from, to;
    const char *p;
    size_t n, sent;
    fx_in_t got;        /* what `to` received */
    size_t skip;        /* bytes of got before the stream (a head) */
    const px_side_t *q; /* the lb's side toward `to`, whose queue is watched */
    size_t max_q;       /* the most it held */
} fx_flow_t;

/* One step: sends what `from` takes, reads at most max bytes at `to`. 1
 * once the whole stream arrived. */
/* One non-blocking send of what is left of p[n] (*sent so far). */
FX_UNUSED static void fx_push(int fd, const char *p, size_t n, size_t *sent)
{
    if (*sent < n) {
        ssize_t w = send(fd, p + *sent, n - *sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0)
            *sent += (size_t)w;
    }
}

FX_UNUSED static int fx_flow_step(fx_flow_t *fl, size_t max)
{
    fx_push(fl->from, fl->p, fl->n, &fl->sent);
    if (fl->q != NULL && px_out_size(fl->q) > fl->max_q)
        fl->max_q = px_out_size(fl->q);
    fx_read_max(fl->to, &fl->got, max);
    return buf_size(&fl->got.b) >= fl->skip + fl->n;
}

/* Runs fl with a reader at `to` that takes one byte per loop iteration for
 * `slow` iterations, then everything; checks that the lb queued something
 * meanwhile but never more than its cap, and that the stream arrived whole
 * and in order. */
FX_UNUSED static void fx_flow_run(fx_t *f, fx_flow_t *fl, int slow)
{
    for (int i = 0; i < slow; i++) {
        fx_flow_step(fl, 1);
        ev_run(f->loop, EVRUN_NOWAIT);
    }
    assert_true(fl->max_q > 0);
    fx_wait(f, fx_flow_step(fl, SIZE_MAX));
    assert_true(fl->max_q <= PX_TUNNEL_CAP + PX_SCRATCH);
    assert_int_equal(buf_size(&fl->got.b), fl->skip + fl->n);
    assert_memory_equal(buf_head(&fl->got.b) + fl->skip, fl->p, fl->n);
}

/* n bytes of a pattern that shows a lost, repeated or swapped block. */
FX_UNUSED static char *fx_pattern(size_t n)
{
    char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(i % 251);
    return p;
}

/* Ends fd with a TCP reset. */
FX_UNUSED static void fx_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
}

/* Reads a request head (and whatever came with it) from a backend's end. */
FX_UNUSED static void fx_read_head(fx_t *f, int fd, fx_in_t *in)
{
    fx_wait(f, fx_has_str(fd, in, "\r\n\r\n"));
}

/* Appends one websocket frame: opcode op, n payload bytes (p, or 'x's). */
FX_UNUSED static void fx_frame(buf_t *b, int op, const char *p, size_t n, int masked)
{
    uint8_t h[14];
    size_t k = 0;
    h[k++] = (uint8_t)(0x80 | op);
    uint8_t m = masked ? 0x80 : 0;
    if (n < 126) {
        h[k++] = (uint8_t)(m | n);
    } else if (n < 65536) {
        h[k++] = m | 126;
        h[k++] = (uint8_t)(n >> 8);
        h[k++] = (uint8_t)n;
    } else {
        h[k++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[k++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (masked)
        for (int i = 0; i < 4; i++)
            h[k++] = 0; /* a zero key: the payload goes as it is */
    assert_int_equal(buf_append(b, h, k), 0);
    char *q = buf_reserve(b, n ? n : 1);
    assert_non_null(q);
    if (p != NULL)
        memcpy(q, p, n);
    else
        memset(q, 'x', n);
    buf_commit(b, n);
}

/* The close code of the lb's close frame at the start of s (server frame,
 * unmasked), or -1 if s does not start with one. */
FX_UNUSED static int fx_close_code(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    if (n < 4 || p[0] != (0x80 | WS_OP_CLOSE) || (p[1] & 0x80) || (p[1] & 0x7f) < 2 ||
        n < 2u + (p[1] & 0x7f))
        return -1;
    return p[2] << 8 | p[3];
}

/* A websocket tunnel through the session: client cl, backend end *bfd
 * (backend index *which; one is made if there is none), the 101 read by
 * the client. */
FX_UNUSED static void fx_ws_tunnel(fx_t *f, int *cl, int *bfd, int *which)
{
    fx_in_t hin = {0}, cin = {0};
    if (f->nbe == 0)
        fx_backend(f, 16);
    *cl = fx_client(f, 0);
    fx_send_str(f, *cl, WS_REQ);
    *bfd = fx_accept_any(f, which);
    fx_read_head(f, *bfd, &hin);
    fx_send_str(f, *bfd, WS_101);
    fx_wait(f, fx_has(*cl, &cin, strlen(WS_101)));
    assert_memory_equal(buf_head(&cin.b), WS_101, strlen(WS_101));
    assert_int_equal(fx_conn(f)->phase, PX_TUNNEL);
    assert_true(fx_conn(f)->ws);
    buf_free(&hin.b);
    buf_free(&cin.b);
}

/* A self-signed certificate for the lb's TLS side; the files are removed
 * again once loaded. */
FX_UNUSED static void fx_tls(fx_t *f)
{
    char dir[] = "/tmp/wslb-pxsess-XXXXXX", cert[64], key[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, nm);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    int kfd = open(key, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(kfd >= 0);
    FILE *fp = fdopen(kfd, "w");
    assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    fp = fopen(cert, "w");
    assert_int_equal(PEM_write_X509(fp, x), 1);
    fclose(fp);
    f->tls = tls_create(cert, key, err, sizeof(err));
    unlink(key);
    unlink(cert);
    rmdir(dir);
    X509_free(x);
    EVP_PKEY_free(k);
    assert_non_null(f->tls);
    f->px.cfg.tls = f->tls;
}

FX_UNUSED static const char *fx_reason(const fx_t *f)
{
    return px_reason_names[f->end.reason];
}

#endif
