/* Unit tests for lb/px_down.c and lb/px_ping.c (px_down.c included,
 * through pxfx.h's world): a request waiting on a backend that goes down
 * moves at once, a tunnel on a down backend gets 1014 after the grace (a
 * draining one never), and the lb's pings: sent between the worker's
 * frames, their pongs kept from the worker, a silent client reaped with
 * 1001 toward the worker. Over real sockets, with fake backends. */
#include "pxfx.h"

#include "../../lb/px_down.c"

static be_t *fx_be(fx_t *f, int i)
{
    char id[8];
    snprintf(id, sizeof(id), "b%d", i);
    be_t *b = be_find(f->table, id);
    assert_non_null(b);
    return b;
}

/* A handshake waiting on one of two backends moves to the other when its
 * backend stops taking connections, and the move is not a failed try: it
 * spends no retry of its own, so it happens even with --retries 0. */
static void move_waiting_handshake(fx_t *f, int retries)
{
    fx_in_t h0 = {0}, h1 = {0}, cin = {0};
    f->px.cfg.retries = retries;
    px_down_thread_init(&f->th);
    fx_backend(f, 16);
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, WS_REQ);
    int first = -1;
    int b0 = fx_accept_any(f, &first);
    fx_read_head(f, b0, &h0);
    assert_int_equal(fx_conn(f)->phase, PX_WAIT);
    /* Still up: the sweep leaves it alone. */
    px_down_sweep(&f->th);
    assert_int_equal(f->stats.handshakes_moved, 0);
    be_event(f->table, fx_be(f, first), BE_EV_ADMIN_DRAIN, "test");
    px_down_sweep(&f->th);
    assert_int_equal(f->stats.handshakes_moved, 1);
    assert_int_equal(fx_conn(f)->pre->moved, 1);
    int b1 = fx_accept(f, 1 - first);
    fx_read_head(f, b1, &h1);
    assert_int_equal(fx_conn(f)->ntried, 2);
    assert_int_equal(buf_size(&h1.b), buf_size(&h0.b)); /* the same request */
    fx_wait(f, fx_read(b0, &h0));                       /* the first one is let go */
    fx_send_str(f, b1, WS_101);
    fx_wait(f, fx_has(cl, &cin, strlen(WS_101)));
    assert_memory_equal(buf_head(&cin.b), WS_101, strlen(WS_101));
    assert_int_equal(f->stats.errors[LBS_ERR_CONNECT], 0); /* no failure of its own */
    px_down_thread_stop(&f->th);
    close(b0);
    close(b1);
    close(cl);
    buf_free(&h0.b);
    buf_free(&h1.b);
    buf_free(&cin.b);
}

static void test_waiting_request_moves_when_its_backend_goes_down(void **state)
{
    move_waiting_handshake(*state, ((fx_t *)*state)->px.cfg.retries);
}

static void test_move_spends_no_retry(void **state)
{
    move_waiting_handshake(*state, 0);
}

/* A POST waiting on a worker that is only draining stays: the worker is
 * alive and will answer, and sent again elsewhere it could run twice. The
 * same request on a backend that goes DOWN is let go. */
static void test_waiting_post_stays_on_a_draining_backend(void **state)
{
    fx_t *f = *state;
    fx_in_t h0 = {0}, cin = {0};
    static const char post[] = "POST /api/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi";
    px_down_thread_init(&f->th);
    fx_backend(f, 16);
    fx_backend(f, 16);
    int cl = fx_client(f, 0);
    fx_send_str(f, cl, post);
    int first = -1;
    int b0 = fx_accept_any(f, &first);
    fx_read_head(f, b0, &h0);
    assert_int_equal(fx_conn(f)->phase, PX_WAIT);
    be_event(f->table, fx_be(f, first), BE_EV_ADMIN_DRAIN, "test");
    px_down_sweep(&f->th);
    assert_int_equal(f->stats.handshakes_moved, 0);
    assert_int_equal(fx_conn(f)->phase, PX_WAIT);
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    fx_send_str(f, b0, ok);
    fx_wait(f, fx_has(cl, &cin, strlen(ok)));
    assert_memory_equal(buf_head(&cin.b), ok, strlen(ok));
    px_down_thread_stop(&f->th);
    close(b0);
    close(cl);
    buf_free(&h0.b);
    buf_free(&cin.b);
}

static void test_tunnel_on_down_backend_gets_1014_after_grace(void **state)
{
    fx_t *f = *state;
    fx_in_t cin = {0}, bin = {0};
    int cl, bfd, which;
    px_down_thread_init(&f->th);
    f->px.cfg.down_close_ms = 150;
    be_table_set_health(f->table, 2, 1);
    fx_ws_tunnel(f, &cl, &bfd, &which);
    be_event(f->table, fx_be(f, which), BE_EV_CHECK_FAIL, "test");
    assert_int_equal(be_state(fx_be(f, which)), BE_DOWN);
    uint64_t t0 = be_now_ms();
    px_down_sweep(&f->th);
    assert_true(ev_is_active(&f->th.down_timer));
    fx_wait(f, f->nfreed == 1);
    assert_true(be_now_ms() - t0 >= 140);
    assert_string_equal(fx_reason(f), "backend_down");
    assert_int_equal(f->stats.down_closed, 1);
    fx_wait(f, fx_read(cl, &cin));
    assert_int_equal(fx_close_code(buf_head(&cin.b), buf_size(&cin.b)), 1014);
    fx_wait(f, fx_read(bfd, &bin)); /* the worker's side is closed */
    px_down_thread_stop(&f->th);
    close(cl);
    close(bfd);
    buf_free(&cin.b);
    buf_free(&bin.b);
}

static void test_draining_or_recovered_backend_keeps_its_tunnels(void **state)
{
    fx_t *f = *state;
    int cl, bfd, which;
    px_down_thread_init(&f->th);
    f->px.cfg.down_close_ms = 50;
    be_table_set_health(f->table, 1, 1);
    fx_ws_tunnel(f, &cl, &bfd, &which);
    be_t *b = fx_be(f, which);
    be_event(f->table, b, BE_EV_REMOTE_DRAIN, "test");
    px_down_sweep(&f->th);
    be_event(f->table, b, BE_EV_REMOTE_UP, "test");
    be_event(f->table, b, BE_EV_CHECK_FAIL, "test"); /* down... */
    px_down_sweep(&f->th);
    be_event(f->table, b, BE_EV_CHECK_OK, "test"); /* ...and back within the grace */
    fx_spin(f, 20);
    assert_int_equal(f->nfreed, 0);
    assert_int_equal(f->stats.down_closed, 0);
    px_down_thread_stop(&f->th);
    close(cl);
    close(bfd);
}

/* ---- the lb's pings ------------------------------------------------------------------------ */

/* Reads frames the client got until a ping of the lb's; its payload into
 * tok. */
static void fx_wait_ping(fx_t *f, int cl, fx_in_t *cin, uint8_t tok[WSP_TOKEN_LEN])
{
    fx_wait(f, fx_has(cl, cin, WSP_PING_LEN));
    const uint8_t *p = (const uint8_t *)buf_head(&cin->b);
    assert_int_equal(p[0], 0x80 | WS_OP_PING);
    assert_int_equal(p[1], WSP_TOKEN_LEN);
    memcpy(tok, p + 2, WSP_TOKEN_LEN);
}

static void test_ping_between_frames_and_its_pong_kept_from_the_worker(void **state)
{
    fx_t *f = *state;
    fx_in_t cin = {0}, bin = {0};
    uint8_t tok[WSP_TOKEN_LEN];
    int cl, bfd, which;
    f->px.cfg.ping_interval_s = 1;
    f->px.cfg.ping_timeout_s = 1;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    /* The worker is mid-frame when the ping falls due: it waits for the
     * frame's end. */
    buf_t fr = BUF_INIT;
    fx_frame(&fr, WS_OP_TEXT, NULL, 10, 0);
    fx_send(f, bfd, buf_head(&fr), 5);
    fx_wait(f, fx_has(cl, &cin, 5));
    fx_spin(f, 110);
    assert_int_equal(buf_size(&cin.b), 5);
    fx_send(f, bfd, buf_head(&fr) + 5, buf_size(&fr) - 5);
    fx_wait(f, fx_has(cl, &cin, buf_size(&fr) + WSP_PING_LEN));
    assert_memory_equal(buf_head(&cin.b), buf_head(&fr), buf_size(&fr));
    buf_consume(&cin.b, buf_size(&fr));
    fx_wait_ping(f, cl, &cin, tok);
    assert_int_equal(f->stats.pings_sent, 1);
    /* The client answers between two frames of its own, and pongs the
     * worker with another payload: only the lb's pong is taken out. */
    buf_t up = BUF_INIT;
    fx_frame(&up, WS_OP_TEXT, "one", 3, 1);
    fx_frame(&up, WS_OP_PONG, (const char *)tok, WSP_TOKEN_LEN, 1);
    size_t mine = buf_size(&up);
    fx_frame(&up, WS_OP_PONG, "worker's", 8, 1);
    fx_frame(&up, WS_OP_TEXT, "two", 3, 1);
    for (size_t i = 0; i < buf_size(&up); i++) { /* one byte at a time */
        fx_send(f, cl, buf_head(&up) + i, 1);
        fx_spin(f, 1);
    }
    size_t want = buf_size(&up) - (2 + 4 + WSP_TOKEN_LEN);
    fx_wait(f, fx_has(bfd, &bin, want));
    fx_spin(f, 5);
    assert_int_equal(buf_size(&bin.b), want);
    assert_memory_equal(buf_head(&bin.b), buf_head(&up), 2 + 4 + 3);
    assert_memory_equal(buf_head(&bin.b) + 9, buf_head(&up) + mine, buf_size(&up) - mine);
    assert_false(fx_conn(f)->ping_out);
    close(cl);
    close(bfd);
    buf_free(&fr);
    buf_free(&up);
    buf_free(&cin.b);
    buf_free(&bin.b);
}

static void test_silent_client_reaped_with_1001_to_the_worker(void **state)
{
    fx_t *f = *state;
    fx_in_t cin = {0}, bin = {0};
    uint8_t tok[WSP_TOKEN_LEN];
    int cl, bfd, which;
    f->px.cfg.ping_interval_s = 1;
    f->px.cfg.ping_timeout_s = 1;
    fx_ws_tunnel(f, &cl, &bfd, &which);
    fx_wait_ping(f, cl, &cin, tok);
    fx_wait(f, f->nfreed == 1);
    assert_string_equal(fx_reason(f), "ping_timeout");
    assert_int_equal(f->stats.ping_timeouts, 1);
    fx_wait(f, fx_read(bfd, &bin));
    /* A masked close 1001 (the fixture's key is random: unmask it). */
    const uint8_t *p = (const uint8_t *)buf_head(&bin.b);
    assert_true(buf_size(&bin.b) >= 8);
    assert_int_equal(p[0], 0x80 | WS_OP_CLOSE);
    assert_true(p[1] & 0x80);
    int code = (p[6] ^ p[2]) << 8 | (p[7] ^ p[3]);
    assert_int_equal(code, 1001);
    assert_true(bin.eof);
    close(cl);
    close(bfd);
    buf_free(&cin.b);
    buf_free(&bin.b);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_waiting_request_moves_when_its_backend_goes_down),
        T(test_tunnel_on_down_backend_gets_1014_after_grace),
        T(test_draining_or_recovered_backend_keeps_its_tunnels),
        T(test_waiting_post_stays_on_a_draining_backend),
        T(test_move_spends_no_retry),
        T(test_ping_between_frames_and_its_pong_kept_from_the_worker),
        T(test_silent_client_reaped_with_1001_to_the_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
