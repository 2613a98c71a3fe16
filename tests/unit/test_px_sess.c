/* Unit tests for lb/px_sess.c (included, through pxfx.h): the retry policy
 * as a table, and each phase before the tunnel (HEAD, CONNECT, WAIT, REPLY,
 * LINGER) against each event that can reach it there (client EOF, client
 * reset, backend EOF, backend reset, timeout, a backend's 503, partial
 * reads and writes), driven over real sockets with fake backends. The
 * tunnel, frame tracking and the TLS transport (TLS_HS included) are in
 * test_px_tun.c. */
#include "pxfx.h"

/* ---- the retry policy, as a table ------------------------------------------ */

typedef struct prow {
    const char *what;
    uint8_t phase;
    uint8_t retryable, is_get, ntried, only_503;
    uint8_t ws, mid_frame, wsb_close, wsc_close, lb_closed;
    enum px_fail f;
    enum px_act want;
} prow_t;

#define PRE(ph, rt, get, f, want)                                                                  \
    {                                                                                              \
#f " in " #ph, ph, rt, get, 1, 0, 0, 0, 0, 0, 0, f, want                                   \
    }
#define TUN(ws, mid, bc, cc, lbc, f, want)                                                         \
    {                                                                                              \
#f " in TUNNEL", PX_TUNNEL, 0, 1, 1, 0, ws, mid, bc, cc, lbc, f, want                      \
    }

static const prow_t policy_rows[] = {
    /* Before the response head: replay while nothing beyond hbuf went out. */
    PRE(PX_HEAD, 1, 1, PX_F_LOCAL, PX_ACT_REPLY_503),
    PRE(PX_HEAD, 1, 1, PX_F_CONNECT, PX_ACT_RETRY),
    PRE(PX_CONNECT, 1, 1, PX_F_CONNECT, PX_ACT_RETRY),
    PRE(PX_CONNECT, 1, 0, PX_F_CONNECT_TIMEOUT, PX_ACT_RETRY),
    PRE(PX_WAIT, 1, 1, PX_F_TIMEOUT, PX_ACT_RETRY),
    PRE(PX_WAIT, 0, 1, PX_F_TIMEOUT, PX_ACT_REPLY_502),
    PRE(PX_WAIT, 1, 1, PX_F_RESET, PX_ACT_RETRY),
    PRE(PX_WAIT, 0, 1, PX_F_RESET, PX_ACT_REPLY_502),
    PRE(PX_WAIT, 1, 0, PX_F_WRITE, PX_ACT_RETRY),
    PRE(PX_WAIT, 0, 0, PX_F_WRITE, PX_ACT_REPLY_502),
    PRE(PX_WAIT, 1, 1, PX_F_EOF, PX_ACT_RETRY),
    PRE(PX_WAIT, 0, 1, PX_F_EOF, PX_ACT_REPLY_502),
    PRE(PX_WAIT, 1, 1, PX_F_BAD_HEAD, PX_ACT_RETRY),
    PRE(PX_WAIT, 0, 1, PX_F_BAD_HEAD, PX_ACT_REPLY_502),
    /* A draining worker's 503: another worker for a GET that can be
     * replayed; anything else gets the 503 itself. */
    PRE(PX_WAIT, 1, 1, PX_F_503, PX_ACT_RETRY),
    PRE(PX_WAIT, 0, 1, PX_F_503, PX_ACT_GO_ON),
    PRE(PX_WAIT, 1, 0, PX_F_503, PX_ACT_GO_ON),
    PRE(PX_WAIT, 1, 1, PX_F_101_PLAIN, PX_ACT_REPLY_502),
    /* Marked down while waiting: elsewhere at once, or 502, never a wait. */
    PRE(PX_CONNECT, 1, 1, PX_F_DOWN, PX_ACT_RETRY),
    PRE(PX_WAIT, 1, 1, PX_F_DOWN, PX_ACT_RETRY),
    PRE(PX_WAIT, 0, 1, PX_F_DOWN, PX_ACT_REPLY_502),
    /* Nobody left: unavailable (503) or failed (502). */
    {"none at all", PX_HEAD, 1, 1, 0, 0, 0, 0, 0, 0, 0, PX_F_EXHAUSTED, PX_ACT_REPLY_503},
    {"all draining", PX_WAIT, 1, 1, 2, 1, 0, 0, 0, 0, 0, PX_F_EXHAUSTED, PX_ACT_REPLY_503},
    {"all failed", PX_WAIT, 1, 1, 2, 0, 0, 0, 0, 0, 0, PX_F_EXHAUSTED, PX_ACT_REPLY_502},
    /* In the tunnel: a 1014 where a frame may go, else a bare close or,
     * for an EOF, the half-close passed on. */
    TUN(0, 0, 0, 0, 0, PX_F_EOF, PX_ACT_GO_ON),
    TUN(1, 0, 0, 0, 0, PX_F_EOF, PX_ACT_WS_CLOSE_1014),
    TUN(1, 1, 0, 0, 0, PX_F_EOF, PX_ACT_GO_ON),
    TUN(1, 0, 1, 0, 0, PX_F_EOF, PX_ACT_GO_ON),
    TUN(1, 0, 0, 1, 0, PX_F_EOF, PX_ACT_GO_ON),
    TUN(1, 0, 0, 0, 1, PX_F_EOF, PX_ACT_GO_ON),
    TUN(0, 0, 0, 0, 0, PX_F_RESET, PX_ACT_CLOSE),
    TUN(1, 0, 0, 0, 0, PX_F_RESET, PX_ACT_WS_CLOSE_1014),
    TUN(1, 1, 0, 0, 0, PX_F_RESET, PX_ACT_CLOSE),
    TUN(1, 0, 0, 1, 0, PX_F_RESET, PX_ACT_CLOSE),
    TUN(1, 0, 0, 0, 0, PX_F_WRITE, PX_ACT_CLOSE),
    TUN(0, 0, 0, 0, 0, PX_F_WRITE, PX_ACT_CLOSE),
};

static void test_retry_policy_table(void **state)
{
    int seen[PX_F__COUNT] = {0};
    for (size_t i = 0; i < sizeof(policy_rows) / sizeof(policy_rows[0]); i++) {
        const prow_t *r = &policy_rows[i];
        px_conn_t c;
        memset(&c, 0, sizeof(c));
        c.phase = r->phase;
        c.retryable = r->retryable;
        c.is_get = r->is_get;
        c.ntried = r->ntried;
        c.only_503 = r->only_503;
        c.ws = r->ws;
        c.wsb.left = r->mid_frame ? 7 : 0;
        c.wsb.close = r->wsb_close;
        c.wsc.close = r->wsc_close;
        c.lb_closed = r->lb_closed;
        enum px_act got = px_retry_policy(&c, r->f);
        if (got != r->want)
            fail_msg("row %zu (%s): got %d, want %d", i, r->what, got, r->want);
        seen[r->f] = 1;
    }
    for (int f = 0; f < PX_F__COUNT; f++)
        if (!seen[f])
            fail_msg("failure %d has no row", f);
}

/* ---- HEAD ------------------------------------------------------------------ */

static void test_head_client_eof(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0};
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, "GET /eval HTTP/1.1\r\nHo");
    shutdown(cl, SHUT_WR);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_eof");
    assert_int_equal(f->end.status, 0);
    fx_wait(f, fx_read(cl, &in));
    assert_int_equal(buf_size(&in.b), 0); /* gone before asking: no answer */
    close(cl);
    buf_free(&in.b);
}

static void test_head_client_reset(void **state)
{
    fx_t *f = *state;
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, "GET /eval HTTP/1.1\r\nHo");
    fx_spin(f, 2);
    fx_reset(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_reset");
}

/* No complete head in time: 408, then the lingering close. */
static void test_head_timeout_408(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0};
    f->px.cfg.timeout_head_ms = 100;
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, "GET /eval HTTP/1.1\r\n");
    fx_wait(f, fx_read(cl, &in)); /* the answer, then the lb's half-close */
    assert_true(fx_starts(&in, "HTTP/1.1 408 "));
    assert_int_equal(f->nfreed, 0); /* lingering: waits for the client */
    assert_int_equal(fx_conn(f)->phase, PX_LINGER);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "head_timeout");
    assert_int_equal(f->end.status, 408);
    assert_int_equal(f->stats.errors[LBS_ERR_HEAD_TIMEOUT], 1);
    buf_free(&in.b);
}

/* The first backend gets the client's upgrade request (rewritten); then
 * both ends go. */
static void expect_forwarded_and_close(fx_t *f, int cl)
{
    fx_in_t hin = {0};
    int bfd = fx_accept(f, 0);
    fx_read_head(f, bfd, &hin);
    assert_true(fx_starts(&hin, "GET /eval HTTP/1.1\r\n"));
    close(bfd);
    close(cl);
    buf_free(&hin.b);
}

/* A head that arrives one byte per read reaches the backend rewritten. */
static void test_head_one_byte_at_a_time(void **state)
{
    fx_t *f = *state;
    fx_in_t hin = {0};
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    const char *req = WS_REQ;
    for (size_t i = 0; req[i]; i++) {
        fx_send(f, cl, req + i, 1);
        fx_spin(f, 1);
        if (req[i + 1])
            assert_int_equal(fx_conn(f)->phase, PX_HEAD);
    }
    int bfd = fx_accept(f, 0);
    fx_read_head(f, bfd, &hin);
    assert_true(fx_starts(&hin, "GET /eval HTTP/1.1\r\n"));
    assert_true(fx_has_str(bfd, &hin, "\r\nX-Forwarded-For: 127.0.0.1\r\n"));
    assert_true(fx_has_str(bfd, &hin, "\r\nUpgrade: websocket\r\n"));
    assert_int_equal(fx_conn(f)->phase, PX_WAIT);
    close(bfd);
    close(cl);
    buf_free(&hin.b);
}

/* The lb's own answers to heads it will not proxy: no backend is asked. */
static void test_head_answers(void **state)
{
    fx_t *f = *state;
    static char big[12000];
    memset(big, 0, sizeof(big));
    snprintf(big, sizeof(big), "GET /eval HTTP/1.1\r\nX-Big: ");
    memset(big + strlen(big), 'a', 9000);
    strcat(big, "\r\n\r\n");
    const struct {
        const char *req, *status, *reason;
    } rows[] = {
        {"BLAH\r\n\r\n", "HTTP/1.1 400 ", "bad_request"},
        {"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", "HTTP/1.1 404 ", "not_found"},
        {"POST /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 411 ",
         "bad_request"},
        {big, "HTTP/1.1 431 ", "head_too_large"},
    };
    fx_backend(f, 16);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        fx_in_t in = {0};
        int cl = fx_client(f, 0);
        fx_send_str(f, cl, rows[i].req);
        fx_wait(f, fx_read(cl, &in));
        if (!fx_starts(&in, rows[i].status))
            fail_msg("row %zu: got %.40s", i, buf_head(&in.b));
        close(cl);
        fx_wait(f, f->nfreed == (int)i + 1);
        assert_string_equal(fx_reason(f), rows[i].reason);
        assert_int_equal(sock_accept(f->be_lfd[0], NULL), -1);
        buf_free(&in.b);
    }
}

/* ---- CONNECT ----------------------------------------------------------------- */

/* Waits until c is connecting to its backend. */
static void fx_wait_connect(fx_t *f)
{
    fx_wait(f, fx_conn(f)->phase == PX_CONNECT);
}

/* A backend whose accept queue is full: a connect to it stays in progress
 * (its SYNs are dropped), so the request cannot go out with the connect. */
static int fx_backend_stuck(fx_t *f, int *filler)
{
    int i = fx_backend(f, 16);
    sock_addr_t a;
    assert_int_equal(listen(f->be_lfd[i], 0), 0); /* room for the filler only */
    assert_int_equal(sock_local_addr(f->be_lfd[i], &a), 0);
    *filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(*filler, (struct sockaddr *)&a.ss, a.len), 0);
    return i;
}

/* A connect that completes inside connect() (loopback) takes the request at
 * once: the connection goes from HEAD straight to WAIT, all of the request
 * sent, the backend watched for its answer only. */
static void test_request_goes_with_the_connect(void **state)
{
    fx_t *f = *state;
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    fx_wait(f, fx_conn(f)->phase != PX_HEAD);
    px_conn_t *c = fx_conn(f);
    assert_int_equal(c->phase, PX_WAIT);
    assert_int_equal(c->pre->hsent, buf_size(&c->pre->hbuf));
    assert_true(ev_is_active(&c->b.io));
    assert_int_equal(c->b.io.events & (EV_READ | EV_WRITE), EV_READ);
    expect_forwarded_and_close(f, cl);
}

/* A connect still in progress (the backend's SYN queue is full) leaves
 * the request for when the socket becomes writable: CONNECT, watching for
 * writability, nothing sent. */
static void test_connect_in_progress_waits(void **state)
{
    fx_t *f = *state;
    fx_in_t hin = {0};
    int filler;
    fx_backend_stuck(f, &filler);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    fx_wait_connect(f);
    px_conn_t *c = fx_conn(f);
    assert_int_equal(c->pre->hsent, 0);
    assert_int_equal(c->b.io.events & (EV_READ | EV_WRITE), EV_WRITE);
    /* The queue makes room: the retransmitted SYN gets through, and the
     * request follows once the socket is writable. */
    int ffd = fx_accept(f, 0);
    close(ffd);
    int bfd = fx_accept(f, 0);
    fx_read_head(f, bfd, &hin);
    assert_int_equal(fx_conn(f)->phase, PX_WAIT);
    assert_int_equal(f->stats.errors[LBS_ERR_CONNECT], 0);
    close(bfd);
    close(cl);
    close(filler);
    buf_free(&hin.b);
}

/* A connect refused at once (the refusal comes back inside connect() on
 * loopback, and fails the request's first send) is a failed connect like
 * one refused later: counted, and the request goes to another backend. */
static void test_connect_refused_is_retried(void **state)
{
    fx_t *f = *state;
    fx_in_t hin = {0}, cin = {0};
    fx_backend_refusing(f);
    fx_backend(f, 16);
    /* The refusing backend first: its weight makes it the least loaded. */
    be_set_weight(f->table, be_find(f->table, "b0"), 256);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    int bfd = fx_accept(f, 1);
    fx_read_head(f, bfd, &hin);
    assert_int_equal(f->stats.errors[LBS_ERR_CONNECT], 1);
    assert_int_equal(fx_conn(f)->ntried, 2);
    fx_send_str(f, bfd, WS_101);
    fx_wait(f, fx_has(cl, &cin, strlen(WS_101)));
    assert_memory_equal(buf_head(&cin.b), WS_101, strlen(WS_101)); /* never saw the failure */
    close(bfd);
    close(cl);
    buf_free(&hin.b);
    buf_free(&cin.b);
}

static void test_connect_refused_everywhere_is_502(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0};
    fx_backend_refusing(f);
    fx_backend_refusing(f);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    fx_wait(f, fx_read(cl, &in));
    assert_true(fx_starts(&in, "HTTP/1.1 502 "));
    assert_true(fx_has_str(cl, &in, "all backends failed"));
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "all_failed");
    assert_int_equal(f->stats.errors[LBS_ERR_CONNECT], 2);
    assert_int_equal(f->stats.errors[LBS_ERR_ALL_FAILED], 1);
    buf_free(&in.b);
}

static void test_connect_timeout_is_retried(void **state)
{
    fx_t *f = *state;
    fx_in_t hin = {0};
    int filler;
    f->px.cfg.timeout_connect_ms = 100;
    fx_backend_stuck(f, &filler);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    fx_wait_connect(f);
    fx_spin(f, 3);
    assert_int_equal(fx_conn(f)->phase, PX_CONNECT); /* still waiting */
    fx_backend(f, 16);
    int bfd = fx_accept(f, 1);
    fx_read_head(f, bfd, &hin);
    assert_int_equal(f->stats.errors[LBS_ERR_CONNECT], 1);
    close(bfd);
    close(cl);
    close(filler);
    buf_free(&hin.b);
}

/* The client's EOF while the lb connects is seen once the request is out:
 * the backend gets the request, then the half-close, and answers. */
static void test_connect_client_eof_is_passed_on(void **state)
{
    fx_t *f = *state;
    fx_in_t hin = {0}, cin = {0};
    int filler;
    f->px.cfg.timeout_connect_ms = 100;
    fx_backend_stuck(f, &filler);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, API_GET);
    shutdown(cl, SHUT_WR);
    fx_wait_connect(f);
    fx_backend(f, 16);
    int bfd = fx_accept(f, 1);
    fx_wait(f, fx_read(bfd, &hin));
    assert_true(hin.eof);
    assert_true(fx_starts(&hin, "GET /api/x HTTP/1.1\r\n"));
    assert_memory_equal(buf_head(&hin.b) + buf_size(&hin.b) - 4, "\r\n\r\n", 4);
    fx_send_str(f, bfd, RESP_OK);
    close(bfd);
    fx_wait(f, fx_read(cl, &cin));
    assert_int_equal(buf_size(&cin.b), strlen(RESP_OK));
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_eof");
    assert_int_equal(f->end.status, 200);
    close(cl);
    close(filler);
    buf_free(&hin.b);
    buf_free(&cin.b);
}

static void test_connect_client_reset(void **state)
{
    fx_t *f = *state;
    fx_in_t hin = {0};
    int filler;
    f->px.cfg.timeout_connect_ms = 100;
    fx_backend_stuck(f, &filler);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    fx_wait_connect(f);
    fx_reset(cl);
    fx_backend(f, 16);
    int bfd = fx_accept(f, 1);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_reset");
    fx_wait(f, fx_read(bfd, &hin)); /* the backend's connection ends too */
    close(bfd);
    close(filler);
    buf_free(&hin.b);
}

/* ---- WAIT -------------------------------------------------------------------- */

/* Sends WS_REQ (or req) and reads it at the first backend, b0, which exists
 * already; then adds b1 so that a retry can only go there. */
static int fx_wait_phase(fx_t *f, const char *req, int *cl, fx_in_t *h0)
{
    fx_backend(f, 16);
    *cl = fx_client(f, 0);
    fx_send_str(f, *cl, req);
    int bfd = fx_accept(f, 0);
    fx_read_head(f, bfd, h0);
    assert_int_equal(fx_conn(f)->phase, PX_WAIT);
    fx_backend(f, 16);
    return bfd;
}

/* b0 ends as told (0 = EOF, 1 = reset, 2 = silence, 3 = garbage head); b1
 * gets the very same request and answers; the client sees only b1. */
static void check_wait_retry(fx_t *f, int how)
{
    fx_in_t h0 = {0}, h1 = {0}, cin = {0};
    int cl;
    if (how == 2)
        f->px.cfg.timeout_response_ms = 100;
    int b0 = fx_wait_phase(f, WS_REQ, &cl, &h0);
    if (how == 0)
        close(b0);
    else if (how == 1)
        fx_reset(b0);
    else if (how == 3)
        fx_send_str(f, b0, "SPDY/9 200 OK\r\n\r\n");
    int b1 = fx_accept(f, 1);
    fx_read_head(f, b1, &h1);
    assert_int_equal(buf_size(&h1.b), buf_size(&h0.b));
    assert_memory_equal(buf_head(&h1.b), buf_head(&h0.b), buf_size(&h0.b));
    assert_int_equal(f->stats.errors[how == 2 ? LBS_ERR_BACKEND_TIMEOUT : LBS_ERR_CONNECT], 1);
    fx_send_str(f, b1, WS_101);
    fx_wait(f, fx_has(cl, &cin, strlen(WS_101)));
    assert_memory_equal(buf_head(&cin.b), WS_101, strlen(WS_101));
    if (how >= 2)
        close(b0);
    close(b1);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(f->end.backend, "b1");
    buf_free(&h0.b);
    buf_free(&h1.b);
    buf_free(&cin.b);
}

static void test_wait_backend_eof_is_retried(void **state)
{
    check_wait_retry(*state, 0);
}

static void test_wait_backend_reset_is_retried(void **state)
{
    check_wait_retry(*state, 1);
}

static void test_wait_timeout_is_retried(void **state)
{
    check_wait_retry(*state, 2);
}

static void test_wait_bad_head_is_retried(void **state)
{
    check_wait_retry(*state, 3);
}

/* The only backend closes without answering: 502 once nobody is left. */
static void test_wait_backend_eof_last_is_502(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0}, cin = {0};
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    int b0 = fx_accept(f, 0);
    fx_read_head(f, b0, &h0);
    close(b0);
    fx_wait(f, fx_read(cl, &cin));
    assert_true(fx_starts(&cin, "HTTP/1.1 502 "));
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "all_failed");
    buf_free(&h0.b);
    buf_free(&cin.b);
}

static const char resp_503[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\ndrain";

static void test_wait_503_is_retried(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0}, h1 = {0}, cin = {0};
    int cl;
    int b0 = fx_wait_phase(f, WS_REQ, &cl, &h0);
    fx_send_str(f, b0, resp_503);
    int b1 = fx_accept(f, 1);
    fx_read_head(f, b1, &h1);
    assert_memory_equal(buf_head(&h1.b), buf_head(&h0.b), buf_size(&h0.b));
    fx_send_str(f, b1, WS_101);
    fx_wait(f, fx_has(cl, &cin, strlen(WS_101)));
    assert_memory_equal(buf_head(&cin.b), WS_101, strlen(WS_101));
    assert_int_equal(f->stats.errors[LBS_ERR_CONNECT], 0); /* not a failure */
    close(b0);
    close(b1);
    close(cl);
    buf_free(&h0.b);
    buf_free(&h1.b);
    buf_free(&cin.b);
}

/* Every backend drains: the lb's own 503, "unavailable". */
static void test_wait_503_everywhere_is_503(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0}, h1 = {0}, cin = {0};
    int cl;
    int b0 = fx_wait_phase(f, WS_REQ, &cl, &h0);
    fx_send_str(f, b0, resp_503);
    int b1 = fx_accept(f, 1);
    fx_read_head(f, b1, &h1);
    fx_send_str(f, b1, resp_503);
    fx_wait(f, fx_read(cl, &cin));
    assert_true(fx_starts(&cin, "HTTP/1.1 503 "));
    assert_true(fx_has_str(cl, &cin, "no backend available"));
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "no_backend");
    close(b0);
    close(b1);
    buf_free(&h0.b);
    buf_free(&h1.b);
    buf_free(&cin.b);
}

/* A 503 to anything but a GET is the answer: passed on, not retried. */
static void test_wait_503_to_post_is_passed_on(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0}, cin = {0};
    int cl;
    int b0 = fx_wait_phase(f, "POST /api/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &cl, &h0);
    fx_send_str(f, b0, resp_503);
    close(b0);
    fx_wait(f, fx_read(cl, &cin));
    assert_int_equal(buf_size(&cin.b), strlen(resp_503));
    assert_memory_equal(buf_head(&cin.b), resp_503, strlen(resp_503));
    assert_int_equal(sock_accept(f->be_lfd[1], NULL), -1);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_int_equal(f->end.status, 503);
    buf_free(&h0.b);
    buf_free(&cin.b);
}

/* A 101 to a plain request would open a tunnel past every route. */
static void test_wait_101_to_plain_is_502(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0}, cin = {0};
    int cl;
    int b0 = fx_wait_phase(f, API_GET, &cl, &h0);
    fx_send_str(f, b0, WS_101);
    fx_wait(f, fx_read(cl, &cin));
    assert_true(fx_starts(&cin, "HTTP/1.1 502 "));
    assert_true(fx_has_str(cl, &cin, "backend failed"));
    assert_int_equal(sock_accept(f->be_lfd[1], NULL), -1);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "all_failed");
    close(b0);
    buf_free(&h0.b);
    buf_free(&cin.b);
}

/* Once the client's EOF (or bytes past the prefix) went to the backend, a
 * replay could not be the same request: 502, no retry. */
static void check_wait_not_replayable(fx_t *f, int eof)
{
    fx_in_t h0 = {0}, cin = {0};
    int cl;
    int b0 = fx_wait_phase(f, WS_REQ, &cl, &h0);
    if (eof) {
        /* A websocket client that leaves while the worker has not answered
         * is let go at once: the worker may be hung. */
        shutdown(cl, SHUT_WR);
        fx_wait(f, f->nfreed == 1);
        assert_string_equal(fx_reason(f), "client_eof");
        assert_int_equal(f->stats.handshakes_abandoned, 1);
        fx_wait(f, fx_read(b0, &h0)); /* the backend's side is closed */
        close(b0);
        close(cl);
        buf_free(&h0.b);
        return;
    } else {
        buf_t fr = BUF_INIT;
        fx_frame(&fr, WS_OP_TEXT, "hi", 2, 1);
        fx_send(f, cl, buf_head(&fr), buf_size(&fr));
        size_t want = buf_size(&h0.b) + buf_size(&fr);
        fx_wait(f, fx_has(b0, &h0, want));
        buf_free(&fr);
    }
    assert_false(fx_conn(f)->retryable);
    close(b0);
    fx_wait(f, fx_read(cl, &cin));
    assert_true(fx_starts(&cin, "HTTP/1.1 502 "));
    assert_true(fx_has_str(cl, &cin, "backend failed"));
    assert_int_equal(sock_accept(f->be_lfd[1], NULL), -1);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), eof ? "client_eof" : "all_failed");
    buf_free(&h0.b);
    buf_free(&cin.b);
}

static void test_wait_client_eof_abandoned(void **state)
{
    check_wait_not_replayable(*state, 1);
}

static void test_wait_after_client_bytes_no_retry(void **state)
{
    check_wait_not_replayable(*state, 0);
}

static void test_wait_client_reset(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0};
    int cl;
    int b0 = fx_wait_phase(f, WS_REQ, &cl, &h0);
    fx_reset(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_reset");
    fx_wait(f, fx_read(b0, &h0)); /* the backend's side is closed */
    close(b0);
    buf_free(&h0.b);
}

/* The response head and the first frames, one byte per read, arrive intact. */
static void test_wait_response_one_byte_at_a_time(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0}, cin = {0};
    int cl;
    buf_t resp = BUF_INIT;
    assert_int_equal(buf_append(&resp, WS_101, strlen(WS_101)), 0);
    fx_frame(&resp, WS_OP_TEXT, "hello", 5, 0);
    int b0 = fx_wait_phase(f, WS_REQ, &cl, &h0);
    for (size_t i = 0; i < buf_size(&resp); i++) {
        fx_send(f, b0, buf_head(&resp) + i, 1);
        fx_spin(f, 1);
    }
    fx_wait(f, fx_has(cl, &cin, buf_size(&resp)));
    assert_int_equal(buf_size(&cin.b), buf_size(&resp));
    assert_memory_equal(buf_head(&cin.b), buf_head(&resp), buf_size(&resp));
    assert_int_equal(fx_conn(f)->phase, PX_TUNNEL);
    assert_true(wsf_at_boundary(&fx_conn(f)->wsb));
    close(b0);
    close(cl);
    buf_free(&resp);
    buf_free(&h0.b);
    buf_free(&cin.b);
}

/* A request body larger than any buffer, to a backend that first reads one
 * byte at a time: the lb never queues more than its cap, and every byte
 * arrives in order. */
static void test_wait_body_to_slow_backend(void **state)
{
    fx_t *f = *state;
    enum { BODY = 1 << 20 };
    char head[128];
    fx_in_t cin = {0};
    int cl, small = 16384;
    snprintf(head, sizeof(head), "POST /api/up HTTP/1.1\r\nContent-Length: %d\r\n\r\n", BODY);
    fx_flow_t fl = {.p = fx_pattern(BODY), .n = BODY};
    f->backend_rcvbuf = small;
    int b0 = fx_wait_phase(f, head, &cl, &fl.got);
    assert_int_equal(setsockopt(fx_conn(f)->b.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    fl.from = cl;
    fl.to = b0;
    fl.skip = buf_size(&fl.got.b);
    fl.q = &fx_conn(f)->b;
    fx_flow_run(f, &fl, 300);
    assert_int_equal(fx_conn(f)->phase, PX_WAIT); /* all of it before any answer */
    fx_send_str(f, b0, RESP_OK);
    fx_wait(f, fx_has(cl, &cin, strlen(RESP_OK)));
    close(b0);
    close(cl);
    free((char *)fl.p);
    buf_free(&fl.got.b);
    buf_free(&cin.b);
}

/* A connect that fails at once after a draining worker's 503 is a failed
 * backend: 502 (failed), as when the same connect fails a moment later. */
static void test_immediate_connect_failure_after_503_is_502(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0}, cin = {0};
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    int b0 = fx_accept(f, 0);
    fx_read_head(f, b0, &h0);
    fx_backend_unix_missing(f);
    fx_send_str(f, b0, resp_503);
    fx_wait(f, fx_read(cl, &cin));
    assert_true(fx_starts(&cin, "HTTP/1.1 502 "));
    assert_int_equal(f->stats.errors[LBS_ERR_CONNECT], 1);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "all_failed");
    close(b0);
    buf_free(&h0.b);
    buf_free(&cin.b);
}

/* ---- REPLY and LINGER ---------------------------------------------------------- */

/* After its answer the lb reads until the client closes, then ends. */
static void test_linger_until_client_eof(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0};
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, "GET /nope HTTP/1.1\r\n\r\n");
    fx_wait(f, fx_read(cl, &in));
    assert_true(fx_starts(&in, "HTTP/1.1 404 "));
    /* What the client still sends is read and dropped, not answered with
     * a reset that could destroy the answer in flight. */
    static char junk[100000];
    memset(junk, 'j', sizeof(junk));
    fx_send(f, cl, junk, sizeof(junk));
    fx_spin(f, 5);
    assert_int_equal(fx_conn(f)->phase, PX_LINGER);
    shutdown(cl, SHUT_WR);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "not_found");
    assert_int_equal(f->end.status, 404);
    close(cl);
    buf_free(&in.b);
}

static void test_linger_timeout(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0};
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, "GET /nope HTTP/1.1\r\n\r\n");
    fx_wait(f, fx_read(cl, &in));
    fx_wait(f, f->nfreed == 1); /* PX_LINGER_S later, though the client stays */
    assert_string_equal(fx_reason(f), "not_found");
    close(cl);
    buf_free(&in.b);
}

/* --static with one file of n bytes ('s' then i % 251), loaded and its
 * directory removed again. */
static void fx_static(fx_t *f, size_t n, char **content)
{
    char dir[] = "/tmp/wslb-pxsess-XXXXXX", path[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/big.bin", dir);
    char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(i % 251);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    fclose(fp);
    f->px.cfg.st = st_create(dir, NULL, err, sizeof(err));
    unlink(path);
    rmdir(dir);
    assert_non_null(f->px.cfg.st);
    *content = p;
}

/* A client with the smallest socket buffers, on its side and the lb's. */
static int fx_small_client(fx_t *f)
{
    int small = 1;
    f->client_rcvbuf = small;
    int cl = fx_client(f, 0);
    f->client_rcvbuf = 0;
    assert_int_equal(setsockopt(fx_conn(f)->a.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    return cl;
}

/* A large answer of the lb's own to a reader that takes one byte at a
 * time: sent in many partial writes, complete and in order. */
static void test_reply_to_slow_reader(void **state)
{
    fx_t *f = *state;
    enum { N = 200000 };
    char *content;
    fx_in_t in = {0};
    fx_static(f, N, &content);
    int cl = fx_small_client(f);
    fx_send_str(f, cl, "GET /big.bin HTTP/1.1\r\n\r\n");
    int saw_reply = 0;
    for (int it = 0; it < 3000 && !in.eof; it++) {
        ev_run(f->loop, EVRUN_NOWAIT);
        if (f->th.conns && fx_conn(f)->phase == PX_REPLY)
            saw_reply = 1;
        fx_read_max(cl, &in, it < 1000 ? 1 : SIZE_MAX);
        if (it >= 1000)
            ev_run(f->loop, EVRUN_ONCE);
    }
    assert_true(saw_reply);
    fx_wait(f, fx_read(cl, &in));
    assert_true(fx_starts(&in, "HTTP/1.1 200 "));
    assert_true(buf_size(&in.b) > N);
    assert_memory_equal(buf_head(&in.b) + buf_size(&in.b) - N, content, N);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_int_equal(f->end.status, 200);
    free(content);
    buf_free(&in.b);
}

static void test_reply_client_reset(void **state)
{
    fx_t *f = *state;
    char *content;
    fx_static(f, 200000, &content);
    int cl = fx_small_client(f);
    fx_send_str(f, cl, "GET /big.bin HTTP/1.1\r\n\r\n");
    fx_wait(f, fx_conn(f)->phase == PX_REPLY);
    fx_reset(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_reset");
    free(content);
}

/* A reader that never reads gets its time (PX_LINGER_S plus a second per
 * PX_STATIC_MIN_BPS), then is dropped. */
static void test_reply_timeout(void **state)
{
    fx_t *f = *state;
    char *content;
    fx_static(f, 20000, &content);
    int cl = fx_small_client(f);
    fx_send_str(f, cl, "GET /big.bin HTTP/1.1\r\n\r\n");
    fx_wait(f, fx_conn(f)->phase == PX_REPLY);
    fx_wait(f, f->nfreed == 1);
    assert_int_equal(f->end.status, 200);
    close(cl);
    free(content);
}

/* ---- admission ----------------------------------------------------------------- */

/* Over --max-conns the newcomer gets 503 once its head is in; the
 * connection that was there goes on. */
static void test_over_max_conns_is_shed(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0}, hin = {0};
    f->px.cfg.max_conns = 1;
    fx_backend(f, 16);
    int first = fx_client(f, 0);
    int second = fx_client(f, 0);
    fx_send_str(f, second, WS_REQ);
    fx_wait(f, fx_read(second, &in));
    assert_true(fx_starts(&in, "HTTP/1.1 503 "));
    assert_true(fx_has_str(second, &in, "overloaded"));
    close(second);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "overload");
    fx_send_str(f, first, WS_REQ);
    int bfd = fx_accept(f, 0);
    fx_read_head(f, bfd, &hin);
    close(bfd);
    close(first);
    buf_free(&in.b);
    buf_free(&hin.b);
}

/* A descriptor bound elsewhere (as one taken over from another lb would be)
 * becomes a listener: its clients are accepted into sessions. */
static void test_listener_from_a_bound_descriptor(void **state)
{
    fx_t *f = *state;
    sock_addr_t a;
    fx_backend(f, 16);
    int lfd = fx_listen(16, &a);
    assert_int_equal(px_listeners_alloc(&f->th, 1), 0);
    char aerr[128];
    assert_int_equal(px_listener_attach(&f->th, 0, lfd, 0, aerr, sizeof(aerr)), 0);
    int cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(cl, (struct sockaddr *)&a.ss, a.len), 0);
    fx_wait(f, f->th.conns != NULL);
    assert_int_equal(f->stats.accepted, 1);
    /* TCP_NODELAY, set once on the listener, is the accepted socket's. */
    int nd = 0;
    socklen_t ndlen = sizeof(nd);
    assert_int_equal(getsockopt(fx_conn(f)->a.fd, IPPROTO_TCP, TCP_NODELAY, &nd, &ndlen), 0);
    assert_int_equal(nd, 1);
    fx_send_str(f, cl, WS_REQ);
    expect_forwarded_and_close(f, cl);
}

/* ---- the idle connection ------------------------------------------------------------ */

static void test_idle_connection_size(void **state)
{
    /* What an idle tunnel costs: the struct alone, no buffers, and none of
     * what only the way to an answer needed (px_pre_t). It was 656 bytes
     * before that moved out, 496 before the rate limiter's key did (it is
     * made again from the peer), 480 before the output queues became
     * pointers, the transport a bit and what only the access log reads (the
     * request line, the start time and the byte counts) left in px_pre_t
     * unless the log is on; it must not grow back. Connections come from a
     * pool (lb/px_pool.h), so this is what each costs, with no malloc
     * header. */
    assert_true(px_conn_idle_bytes() <= 336);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_policy_table),
        cmocka_unit_test(test_idle_connection_size),
        T(test_head_client_eof),
        T(test_head_client_reset),
        T(test_head_timeout_408),
        T(test_head_one_byte_at_a_time),
        T(test_head_answers),
        T(test_request_goes_with_the_connect),
        T(test_connect_in_progress_waits),
        T(test_connect_refused_is_retried),
        T(test_connect_refused_everywhere_is_502),
        T(test_connect_timeout_is_retried),
        T(test_connect_client_eof_is_passed_on),
        T(test_connect_client_reset),
        T(test_wait_backend_eof_is_retried),
        T(test_wait_backend_reset_is_retried),
        T(test_wait_timeout_is_retried),
        T(test_wait_bad_head_is_retried),
        T(test_wait_backend_eof_last_is_502),
        T(test_wait_503_is_retried),
        T(test_wait_503_everywhere_is_503),
        T(test_wait_503_to_post_is_passed_on),
        T(test_wait_101_to_plain_is_502),
        T(test_wait_client_eof_abandoned),
        T(test_wait_after_client_bytes_no_retry),
        T(test_wait_client_reset),
        T(test_wait_response_one_byte_at_a_time),
        T(test_wait_body_to_slow_backend),
        T(test_immediate_connect_failure_after_503_is_502),
        T(test_linger_until_client_eof),
        T(test_linger_timeout),
        T(test_reply_to_slow_reader),
        T(test_reply_client_reset),
        T(test_reply_timeout),
        T(test_over_max_conns_is_shed),
        T(test_listener_from_a_bound_descriptor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
