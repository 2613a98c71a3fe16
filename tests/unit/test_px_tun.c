/* Unit tests for the tunnel of lb/px_sess.c's sessions (lb/px_tun.c, the
 * session included through pxfx.h): each event in TUNNEL (client EOF and
 * reset, backend EOF and reset at and between frame boundaries, idle
 * timeout, shutdown, partial writes to slow readers both ways), websocket
 * frame tracking over every split of the byte stream in both directions,
 * and the TLS transport: its handshake phase (TLS_HS) against client EOF,
 * garbage and timeout, and the same tunnel through it. */
#include "pxfx.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

/* ---- ends of a tunnel ----------------------------------------------------- */

/* The backend closes (0) or resets (1) a websocket tunnel at a frame
 * boundary or in the middle of a frame. */
static void check_backend_gone(fx_t *f, int reset, int mid_frame)
{
    fx_in_t in = {0};
    buf_t out = BUF_INIT;
    int cl, bfd, which;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    fx_frame(&out, WS_OP_TEXT, "{\"type\":\"hello\"}", 16, 0);
    size_t whole = buf_size(&out);
    if (mid_frame)
        fx_frame(&out, WS_OP_TEXT, NULL, 40, 0);
    size_t sent = mid_frame ? whole + 10 : whole;
    fx_send(f, bfd, buf_head(&out), sent);
    fx_wait(f, fx_has(cl, &in, sent));
    if (reset)
        fx_reset(bfd);
    else
        close(bfd);
    fx_wait(f, fx_read(cl, &in));
    assert_memory_equal(buf_head(&in.b), buf_head(&out), sent);
    if (mid_frame) /* nothing can be said mid-frame: the EOF is passed on */
        assert_int_equal(buf_size(&in.b), sent);
    else
        assert_int_equal(fx_close_code(buf_head(&in.b) + sent, buf_size(&in.b) - sent), 1014);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), reset ? "backend_reset" : "backend_lost");
    assert_int_equal(f->end.status, 101);
    assert_int_equal(f->end.lb_closed, !mid_frame);
    buf_free(&out);
    buf_free(&in.b);
}

static void test_ws_backend_eof_at_boundary_1014(void **state)
{
    check_backend_gone(*state, 0, 0);
}

static void test_ws_backend_eof_mid_frame_bare(void **state)
{
    check_backend_gone(*state, 0, 1);
}

static void test_ws_backend_reset_at_boundary_1014(void **state)
{
    check_backend_gone(*state, 1, 0);
}

static void test_ws_backend_reset_mid_frame_bare(void **state)
{
    check_backend_gone(*state, 1, 1);
}

/* The worker's own close frame, then its EOF: passed on as they are. */
static void test_ws_backend_close_frame(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0};
    buf_t out = BUF_INIT;
    int cl, bfd, which;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    fx_frame(&out, WS_OP_CLOSE, "\x03\xe9", 2, 0);
    fx_send(f, bfd, buf_head(&out), buf_size(&out));
    close(bfd);
    fx_wait(f, fx_read(cl, &in));
    assert_int_equal(buf_size(&in.b), buf_size(&out));
    assert_int_equal(fx_close_code(buf_head(&in.b), buf_size(&in.b)), 1001);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "backend_close");
    assert_int_equal(f->end.ws_first, PX_WS_BY_BACKEND);
    assert_false(f->end.lb_closed);
    buf_free(&out);
    buf_free(&in.b);
}

/* The client closes first: the worker's answer and EOF end it, with no
 * 1014 from the lb; both directions' bytes are counted. */
static void test_ws_client_closes_first(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0}, bin = {0};
    buf_t up = BUF_INIT, down = BUF_INIT;
    int cl, bfd, which;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    fx_frame(&up, WS_OP_TEXT, "print(1)", 8, 1);
    fx_frame(&up, WS_OP_CLOSE, "\x03\xe8", 2, 1);
    fx_send(f, cl, buf_head(&up), buf_size(&up));
    shutdown(cl, SHUT_WR);
    fx_wait(f, fx_read(bfd, &bin)); /* the frames, then the half-close */
    assert_int_equal(buf_size(&bin.b), buf_size(&up));
    assert_memory_equal(buf_head(&bin.b), buf_head(&up), buf_size(&up));
    fx_frame(&down, WS_OP_CLOSE, "\x03\xe8", 2, 0);
    fx_send(f, bfd, buf_head(&down), buf_size(&down));
    close(bfd);
    fx_wait(f, fx_read(cl, &in));
    assert_int_equal(buf_size(&in.b), buf_size(&down));
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_close");
    assert_int_equal(f->end.ws_first, PX_WS_BY_CLIENT);
    assert_int_equal(f->end.in, strlen(WS_REQ) + buf_size(&up));
    assert_int_equal(f->end.out, strlen(WS_101) + buf_size(&down));
    close(cl);
    buf_free(&up);
    buf_free(&down);
    buf_free(&in.b);
    buf_free(&bin.b);
}

/* The client's close frame, the worker's answer and its half-close (the
 * worker lingers, reading until its peer closes): the lb ends both at once,
 * the client with a FIN, its close frame whole before it, the worker with
 * a reset, as nothing is left to carry on that side. */
static void test_ws_closed_both_ways_resets_the_worker(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0}, bin = {0};
    buf_t up = BUF_INIT, down = BUF_INIT;
    int cl, bfd, which;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    fx_frame(&up, WS_OP_CLOSE, "\x03\xe8", 2, 1);
    fx_send(f, cl, buf_head(&up), buf_size(&up));
    fx_wait(f, fx_has(bfd, &bin, buf_size(&up)));
    fx_frame(&down, WS_OP_CLOSE, "\x03\xe8", 2, 0);
    fx_send(f, bfd, buf_head(&down), buf_size(&down));
    shutdown(bfd, SHUT_WR);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_close");
    fx_wait(f, fx_read(cl, &in));
    assert_true(in.eof); /* a FIN, not a reset */
    assert_int_equal(buf_size(&in.b), buf_size(&down));
    fx_wait(f, fx_read(bfd, &bin));
    assert_int_equal(bin.err, ECONNRESET);
    close(bfd);
    close(cl);
    buf_free(&up);
    buf_free(&down);
    buf_free(&in.b);
    buf_free(&bin.b);
}

static void test_tunnel_client_reset(void **state)
{
    fx_t *f = *state;
    fx_in_t bin = {0};
    int cl, bfd, which;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    fx_reset(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_reset");
    fx_wait(f, fx_read(bfd, &bin)); /* the worker's connection ends too */
    close(bfd);
    buf_free(&bin.b);
}

/* A plain request's answer streamed until the backend closes: all of it,
 * then the EOF, reaches the client. */
static void test_plain_backend_eof(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0}, hin = {0};
    static const char resp[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstreamed until EOF";
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, API_GET);
    int bfd = fx_accept(f, 0);
    fx_read_head(f, bfd, &hin);
    fx_send_str(f, bfd, resp);
    close(bfd);
    fx_wait(f, fx_read(cl, &in));
    assert_int_equal(buf_size(&in.b), strlen(resp));
    assert_memory_equal(buf_head(&in.b), resp, strlen(resp));
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "backend_eof");
    assert_int_equal(f->end.status, 200);
    buf_free(&in.b);
    buf_free(&hin.b);
}

/* In a tunnel the client's half-close goes to the backend, which can still
 * answer: the tunnel ends when both are done. */
static void test_plain_client_half_close(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0}, hin = {0};
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, "POST /api/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    int bfd = fx_accept(f, 0);
    fx_wait(f, fx_has_str(bfd, &hin, "\r\n\r\nhello"));
    fx_send_str(f, bfd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ");
    fx_wait(f, fx_has_str(cl, &in, "part one, "));
    assert_int_equal(fx_conn(f)->phase, PX_TUNNEL);
    shutdown(cl, SHUT_WR);
    fx_wait(f, fx_read(bfd, &hin));
    assert_true(hin.eof);
    fx_send_str(f, bfd, "part two");
    close(bfd);
    fx_wait(f, fx_read(cl, &in));
    assert_non_null(memmem(buf_head(&in.b), buf_size(&in.b), "part one, part two", 18));
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_eof");
    close(cl);
    buf_free(&in.b);
    buf_free(&hin.b);
}

/* ---- timeouts and shutdown ---------------------------------------------------- */

static void test_ws_idle_timeout_1001(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0}, bin = {0};
    int cl, bfd, which;
    f->px.cfg.timeout_idle_s = 1;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    fx_wait(f, fx_read(cl, &in));
    assert_int_equal(fx_close_code(buf_head(&in.b), buf_size(&in.b)), 1001);
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "idle_timeout");
    fx_wait(f, fx_read(bfd, &bin)); /* the worker's side was dropped */
    close(bfd);
    buf_free(&in.b);
    buf_free(&bin.b);
}

static void test_plain_idle_timeout_bare(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0}, hin = {0};
    f->px.cfg.timeout_idle_s = 1;
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, API_GET);
    int bfd = fx_accept(f, 0);
    fx_read_head(f, bfd, &hin);
    fx_send_str(f, bfd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "idle_timeout");
    fx_wait(f, fx_read(cl, &in));
    assert_int_equal(buf_size(&in.b), strlen("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
    close(cl);
    close(bfd);
    buf_free(&in.b);
    buf_free(&hin.b);
}

/* Shutdown past the grace period: a websocket between frames gets 1001, one
 * in the middle of a frame only the close. */
static void check_shutdown(fx_t *f, int mid_frame)
{
    fx_in_t in = {0};
    buf_t out = BUF_INIT;
    int cl, bfd, which;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    fx_frame(&out, WS_OP_TEXT, NULL, 30, 0);
    size_t sent = mid_frame ? 12 : buf_size(&out);
    fx_send(f, bfd, buf_head(&out), sent);
    fx_wait(f, fx_has(cl, &in, sent));
    px_sess_shutdown(&f->th);
    assert_int_equal(f->nfreed, 1);
    assert_string_equal(fx_reason(f), "shutdown");
    fx_wait(f, fx_read(cl, &in));
    if (mid_frame)
        assert_int_equal(buf_size(&in.b), sent);
    else
        assert_int_equal(fx_close_code(buf_head(&in.b) + sent, buf_size(&in.b) - sent), 1001);
    close(cl);
    close(bfd);
    buf_free(&out);
    buf_free(&in.b);
}

static void test_shutdown_between_frames_1001(void **state)
{
    check_shutdown(*state, 0);
}

static void test_shutdown_mid_frame_bare(void **state)
{
    check_shutdown(*state, 1);
}

/* ---- partial writes and backpressure ------------------------------------------- */

/* One frame of a megabyte from the worker to a client that first reads a
 * byte at a time. */
static void test_slow_client_backpressure(void **state)
{
    fx_t *f = *state;
    enum { N = 1 << 20 };
    int cl, bfd, which, small = 16384;
    f->client_rcvbuf = small;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    assert_int_equal(setsockopt(fx_conn(f)->a.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    buf_t fr = BUF_INIT;
    char *data = fx_pattern(N);
    fx_frame(&fr, WS_OP_BINARY, data, N, 0);
    fx_flow_t fl = {.from = bfd, .to = cl, .p = buf_head(&fr), .n = buf_size(&fr)};
    fl.q = &fx_conn(f)->a;
    fx_flow_run(f, &fl, 300);
    assert_true(wsf_at_boundary(&fx_conn(f)->wsb));
    close(bfd);
    close(cl);
    free(data);
    buf_free(&fr);
    buf_free(&fl.got.b);
}

/* And a megabyte the other way, to a worker that first reads a byte at a
 * time. */
static void test_slow_backend_backpressure(void **state)
{
    fx_t *f = *state;
    enum { N = 1 << 20 };
    int cl, bfd, which, small = 16384;
    f->backend_rcvbuf = small;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    assert_int_equal(setsockopt(fx_conn(f)->b.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    buf_t fr = BUF_INIT;
    char *data = fx_pattern(N);
    fx_frame(&fr, WS_OP_BINARY, data, N, 1);
    fx_flow_t fl = {.from = cl, .to = bfd, .p = buf_head(&fr), .n = buf_size(&fr)};
    fl.q = &fx_conn(f)->b;
    fx_flow_run(f, &fl, 300);
    assert_true(wsf_at_boundary(&fx_conn(f)->wsc));
    close(bfd);
    close(cl);
    free(data);
    buf_free(&fr);
    buf_free(&fl.got.b);
}

/* ---- frame tracking over every split ------------------------------------------ */

/* Small xorshift, seeded per test: chunk sizes that differ run to run of a
 * loop but not between runs of the test. */
static uint32_t fx_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* The worker sends the first `cut` bytes of a stream of frames, in chunks
 * of random size, then closes. Whatever the cut, the client gets exactly
 * those bytes, followed by the lb's 1014 if and only if the cut is between
 * two frames. */
static void test_backend_frames_every_split(void **state)
{
    fx_t *f = *state;
    buf_t s = BUF_INIT;
    size_t bounds[8];
    int nb = 0;
    uint32_t seed = 0x9e3779b9u;
    bounds[nb++] = 0;
    fx_frame(&s, WS_OP_TEXT, "hello", 5, 0);
    bounds[nb++] = buf_size(&s);
    fx_frame(&s, WS_OP_BINARY, NULL, 200, 0);
    bounds[nb++] = buf_size(&s);
    fx_frame(&s, WS_OP_PING, NULL, 0, 0);
    bounds[nb++] = buf_size(&s);
    fx_frame(&s, WS_OP_TEXT, NULL, 130, 0);
    bounds[nb++] = buf_size(&s);
    for (size_t cut = 0; cut <= buf_size(&s); cut++) {
        fx_in_t in = {0};
        int cl, bfd, which, at = 0;
        for (int i = 0; i < nb; i++)
            at |= bounds[i] == cut;
        fx_ws_tunnel(f, &cl, &bfd, &which);
        in.b = (buf_t)BUF_INIT;
        for (size_t off = 0; off < cut;) {
            size_t k = 1 + fx_rand(&seed) % 17;
            if (k > cut - off)
                k = cut - off;
            fx_send(f, bfd, buf_head(&s) + off, k);
            off += k;
            ev_run(f->loop, EVRUN_NOWAIT);
        }
        fx_wait(f, fx_has(cl, &in, cut));
        close(bfd);
        fx_wait(f, fx_read(cl, &in));
        assert_memory_equal(buf_head(&in.b), buf_head(&s), cut);
        if (at)
            assert_int_equal(fx_close_code(buf_head(&in.b) + cut, buf_size(&in.b) - cut), 1014);
        else if (buf_size(&in.b) != cut)
            fail_msg("cut %zu (mid-frame): %zu bytes after it", cut, buf_size(&in.b) - cut);
        close(cl);
        fx_wait(f, f->nfreed == (int)cut + 1);
        assert_string_equal(fx_reason(f), "backend_lost");
        buf_free(&in.b);
    }
    buf_free(&s);
}

/* The client's frames, then its close frame, in chunks of every size: the
 * lb sees the close once its header is complete, and from then on a
 * worker that goes away gets no 1014 from the lb (the client is closing
 * the websocket itself). */
static void test_client_frames_every_split(void **state)
{
    fx_t *f = *state;
    buf_t s = BUF_INIT;
    fx_frame(&s, WS_OP_TEXT, "print(1)", 8, 1);
    fx_frame(&s, WS_OP_BINARY, NULL, 300, 1);
    size_t close_at = buf_size(&s);
    fx_frame(&s, WS_OP_CLOSE, "\x03\xe8", 2, 1);
    size_t close_hdr = close_at + 2 + 4; /* header and mask key */
    const size_t cuts[] = {
        0, 1, close_at - 1, close_at, close_at + 1, close_hdr - 1, close_hdr, buf_size(&s)};
    for (size_t chunk = 1; chunk <= 9; chunk += 4) {
        for (size_t ci = 0; ci < sizeof(cuts) / sizeof(cuts[0]); ci++) {
            size_t cut = cuts[ci];
            fx_in_t in = {0}, bin = {0};
            int cl, bfd, which;
            fx_ws_tunnel(f, &cl, &bfd, &which);
            for (size_t off = 0; off < cut; off += chunk) {
                size_t k = chunk < cut - off ? chunk : cut - off;
                fx_send(f, cl, buf_head(&s) + off, k);
                fx_wait(f, fx_has(bfd, &bin, off + k)); /* the lb has seen them */
                assert_int_equal(fx_conn(f)->wsc.close, off + k >= close_hdr);
            }
            assert_memory_equal(buf_head(&bin.b), buf_head(&s), cut);
            close(bfd);
            fx_wait(f, fx_read(cl, &in));
            close(cl);
            fx_wait(f, f->nfreed == 1);
            if (cut >= close_hdr) {
                assert_int_equal(buf_size(&in.b), 0);
                assert_string_equal(fx_reason(f), "client_close");
            } else {
                assert_int_equal(fx_close_code(buf_head(&in.b), buf_size(&in.b)), 1014);
                assert_string_equal(fx_reason(f), "backend_lost");
            }
            f->nfreed = 0;
            buf_free(&in.b);
            buf_free(&bin.b);
        }
    }
    buf_free(&s);
}

/* ---- the TLS transport ------------------------------------------------------------ */

/* The handshake phase (TLS_HS). */

static void test_tls_hs_client_eof(void **state)
{
    fx_t *f = *state;
    fx_tls(f);
    int cl = fx_client(f, 1);
    fx_spin(f, 2);
    assert_int_equal(fx_conn(f)->phase, PX_TLS_HS);
    shutdown(cl, SHUT_WR);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "client_eof");
    close(cl);
}

/* Plain HTTP on a TLS listener: a TLS error, and no HTTP answer. */
static void test_tls_hs_garbage(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0};
    fx_tls(f);
    int cl = fx_client(f, 1);
    fx_send_str(f, cl, "GET /eval HTTP/1.1\r\nHost: t\r\n\r\n");
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "tls_error");
    assert_int_equal(f->stats.errors[LBS_ERR_TLS], 1);
    fx_wait(f, fx_read(cl, &in));
    assert_null(memmem(buf_head(&in.b), buf_size(&in.b), "HTTP/", 5));
    close(cl);
    buf_free(&in.b);
}

static void test_tls_hs_timeout(void **state)
{
    fx_t *f = *state;
    fx_in_t in = {0};
    fx_tls(f);
    f->px.cfg.timeout_head_ms = 100;
    int cl = fx_client(f, 1);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "head_timeout");
    assert_int_equal(f->stats.errors[LBS_ERR_HEAD_TIMEOUT], 1);
    fx_wait(f, fx_read(cl, &in));
    assert_int_equal(buf_size(&in.b), 0); /* nothing HTTP can be said */
    close(cl);
    buf_free(&in.b);
}

/* A TLS client of the session, with its handshake done. */
static SSL *fx_tls_client(fx_t *f, int cl, SSL_CTX **cctx)
{
    *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(*cctx);
    SSL_CTX_set_mode(*cctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL *s = SSL_new(*cctx);
    assert_non_null(s);
    SSL_set_fd(s, cl);
    SSL_set_connect_state(s);
    fx_wait(f, SSL_do_handshake(s) == 1);
    fx_wait(f, fx_conn(f)->phase == PX_HEAD); /* the lb's side is done too */
    return s;
}

/* One non-blocking SSL_write of what is left of p[n] (*sent so far), in
 * records of 16 KiB: a retry after a want repeats the same call. */
static void fx_tls_push(SSL *s, const char *p, size_t n, size_t *sent)
{
    if (*sent >= n)
        return;
    size_t k = n - *sent < 16384 ? n - *sent : 16384;
    int w = SSL_write(s, p + *sent, (int)k);
    if (w > 0) {
        *sent += (size_t)w;
        return;
    }
    int e = SSL_get_error(s, w);
    assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
}

/* Reads what s has (at most max bytes); 1 once it ended. */
static int fx_tls_read(SSL *s, fx_in_t *in, size_t max)
{
    while (!in->eof && max > 0) {
        size_t want = max < 16384 ? max : 16384;
        char *p = buf_reserve(&in->b, want);
        assert_non_null(p);
        int r = SSL_read(s, p, (int)want);
        if (r > 0) {
            buf_commit(&in->b, (size_t)r);
            max -= (size_t)r;
            continue;
        }
        int e = SSL_get_error(s, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        in->eof = 1;
        ERR_clear_error();
    }
    return in->eof;
}

/* A websocket through the TLS transport, with small socket buffers on
 * every side: the handshake; a megabyte frame from the worker to a client
 * that first reads a byte at a time (partial SSL_writes, the transport's
 * wants); a megabyte frame from the client to a worker that first reads a
 * byte at a time (the lb then reads the client into a nearly full queue,
 * in pieces smaller than a TLS record, so that decrypted bytes wait in the
 * transport where the socket does not show them); then the worker gone
 * between frames: the 1014 arrives encrypted, with the lb's close_notify
 * after it. */
static void test_tls_tunnel(void **state)
{
    fx_t *f = *state;
    enum { N = 1 << 20 };
    SSL_CTX *cctx;
    fx_in_t in = {0}, bin = {0};
    buf_t down = BUF_INIT, up = BUF_INIT;
    char *data = fx_pattern(N);
    int small = 16384;
    size_t sent = 0;
    fx_tls(f);
    f->client_rcvbuf = small;
    f->backend_rcvbuf = small;
    fx_backend(f, 16);
    int cl = fx_client(f, 1);
    assert_int_equal(setsockopt(fx_conn(f)->a.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    SSL *s = fx_tls_client(f, cl, &cctx);
    fx_wait(f, (fx_tls_push(s, WS_REQ, strlen(WS_REQ), &sent), sent == strlen(WS_REQ)));
    int bfd = fx_accept(f, 0);
    assert_int_equal(setsockopt(fx_conn(f)->b.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    fx_read_head(f, bfd, &bin);
    assert_non_null(memmem(buf_head(&bin.b), buf_size(&bin.b), "X-Forwarded-Proto: https", 24));
    size_t hlen = buf_size(&bin.b);

    assert_int_equal(buf_append(&down, WS_101, strlen(WS_101)), 0);
    fx_frame(&down, WS_OP_BINARY, data, N, 0);
    const char *dp = buf_head(&down);
    size_t dn = buf_size(&down), max_q = 0;
    sent = 0;
    for (int i = 0; i < 300; i++) {
        fx_push(bfd, dp, dn, &sent);
        fx_tls_read(s, &in, 1);
        ev_run(f->loop, EVRUN_NOWAIT);
        if (px_out_size(&fx_conn(f)->a) > max_q)
            max_q = px_out_size(&fx_conn(f)->a);
    }
    assert_true(max_q > 0);
    fx_wait(f, (fx_push(bfd, dp, dn, &sent), fx_tls_read(s, &in, SIZE_MAX), buf_size(&in.b) >= dn));
    assert_int_equal(buf_size(&in.b), dn);
    assert_memory_equal(buf_head(&in.b), dp, dn);

    fx_frame(&up, WS_OP_BINARY, data, N, 1);
    const char *upp = buf_head(&up);
    size_t un = buf_size(&up);
    sent = 0;
    max_q = 0;
    for (int i = 0; i < 300; i++) {
        fx_tls_push(s, upp, un, &sent);
        fx_read_max(bfd, &bin, 1);
        ev_run(f->loop, EVRUN_NOWAIT);
        if (px_out_size(&fx_conn(f)->b) > max_q)
            max_q = px_out_size(&fx_conn(f)->b);
    }
    assert_true(max_q > 0);
    fx_wait(f, (fx_tls_push(s, upp, un, &sent), fx_has(bfd, &bin, hlen + un)));
    assert_int_equal(buf_size(&bin.b), hlen + un);
    assert_memory_equal(buf_head(&bin.b) + hlen, upp, un);

    close(bfd);
    fx_in_reset(&in);
    fx_wait(f, fx_tls_read(s, &in, SIZE_MAX));
    assert_int_equal(fx_close_code(buf_head(&in.b), buf_size(&in.b)), 1014);
    assert_true(SSL_get_shutdown(s) & SSL_RECEIVED_SHUTDOWN); /* close_notify */
    close(cl);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "backend_lost");
    SSL_free(s);
    SSL_CTX_free(cctx);
    free(data);
    buf_free(&down);
    buf_free(&up);
    buf_free(&in.b);
    buf_free(&bin.b);
}

/* Bytes the TLS transport decrypted but the lb could not take yet (its
 * queue toward the worker was full) are not announced by the socket again:
 * the transport's pending() and buffered say they are there, and the
 * session reads them once the queue drains, with nothing more arriving. */
static void test_tls_bytes_held_by_the_transport(void **state)
{
    fx_t *f = *state;
    SSL_CTX *cctx;
    fx_in_t in = {0}, bin = {0};
    buf_t fr = BUF_INIT;
    size_t sent = 0, filled = 0;
    static char junk[PX_TUNNEL_CAP];
    memset(junk, 'j', sizeof(junk));
    fx_tls(f);
    fx_backend(f, 16);
    int cl = fx_client(f, 1);
    SSL *s = fx_tls_client(f, cl, &cctx);
    fx_wait(f, (fx_tls_push(s, WS_REQ, strlen(WS_REQ), &sent), sent == strlen(WS_REQ)));
    int bfd = fx_accept(f, 0);
    fx_read_head(f, bfd, &bin);
    fx_send_str(f, bfd, WS_101);
    fx_wait(f, (fx_tls_read(s, &in, SIZE_MAX), buf_size(&in.b) >= strlen(WS_101)));
    px_conn_t *c = fx_conn(f);
    assert_int_equal(c->phase, PX_TUNNEL);
    assert_true(px_io_ops(&c->a)->buffered);
    assert_false(px_io_ops(&c->b)->buffered);
    /* The way to the worker full, and the queue toward it 100 bytes short
     * of its cap: the next read from the client may take 100 bytes. */
    for (ssize_t w; (w = send(c->b.fd, junk, sizeof(junk), MSG_DONTWAIT)) > 0;)
        filled += (size_t)w;
    assert_int_equal(px_out_append(&c->b, junk, PX_TUNNEL_CAP - 100), 0);
    fx_frame(&fr, WS_OP_BINARY, NULL, 5000, 1); /* one TLS record */
    assert_int_equal(SSL_write(s, buf_head(&fr), (int)buf_size(&fr)), (int)buf_size(&fr));
    struct pollfd p = {.fd = c->a.fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    c->rd_hint_a = 1;
    c->rd_hint_b = 0;
    px_pump(c);
    assert_int_equal(px_out_size(&c->b), PX_TUNNEL_CAP);
    assert_int_equal(px_io_ops(&c->a)->pending(&c->a), (int)buf_size(&fr) - 100);
    assert_int_equal(poll(&p, 1, 0), 0); /* the socket has nothing more to say */
    px_after(c);
    size_t want = buf_size(&bin.b) + filled + PX_TUNNEL_CAP - 100 + buf_size(&fr);
    fx_wait(f, fx_has(bfd, &bin, want));
    assert_int_equal(buf_size(&bin.b), want);
    assert_memory_equal(buf_head(&bin.b) + want - buf_size(&fr), buf_head(&fr), buf_size(&fr));
    close(bfd);
    close(cl);
    SSL_free(s);
    SSL_CTX_free(cctx);
    buf_free(&fr);
    buf_free(&in.b);
    buf_free(&bin.b);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_ws_backend_eof_at_boundary_1014),
        T(test_ws_backend_eof_mid_frame_bare),
        T(test_ws_backend_reset_at_boundary_1014),
        T(test_ws_backend_reset_mid_frame_bare),
        T(test_ws_backend_close_frame),
        T(test_ws_client_closes_first),
        T(test_ws_closed_both_ways_resets_the_worker),
        T(test_tunnel_client_reset),
        T(test_plain_backend_eof),
        T(test_plain_client_half_close),
        T(test_ws_idle_timeout_1001),
        T(test_plain_idle_timeout_bare),
        T(test_shutdown_between_frames_1001),
        T(test_shutdown_mid_frame_bare),
        T(test_slow_client_backpressure),
        T(test_slow_backend_backpressure),
        T(test_backend_frames_every_split),
        T(test_client_frames_every_split),
        T(test_tls_hs_client_eof),
        T(test_tls_hs_garbage),
        T(test_tls_hs_timeout),
        T(test_tls_tunnel),
        T(test_tls_bytes_held_by_the_transport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
