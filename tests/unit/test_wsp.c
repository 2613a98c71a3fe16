/* Unit tests for lb/wsp: the filter that takes the lb's pongs out of a
 * client's stream. Random streams of masked frames (fragmented messages
 * with control frames between their fragments, the client's own pongs,
 * pongs that look like the lb's but are not, every length encoding) are
 * cut at random places; what comes out must be the stream without the lb's
 * pongs, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "ws.h"
#include "wsf.h"
#include "wsp.h"

static const uint8_t tok[WSP_TOKEN_LEN] = {'l', 'b', 0x01, 0xfe, 0x33, 0x00, 0x7f, 0x80};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* Appends one masked client frame carrying payload pl[0..n) (masked for
 * real with a random key). */
static void frame(buf_t *b, int fin, int opcode, const uint8_t *pl, size_t n, int nonminimal)
{
    uint8_t h[14];
    size_t k = 0;
    h[k++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (n < 126 && !nonminimal) {
        h[k++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[k++] = 0x80 | 126;
        h[k++] = (uint8_t)(n >> 8);
        h[k++] = (uint8_t)n;
    } else {
        h[k++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[k++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint8_t mask[4];
    for (int i = 0; i < 4; i++)
        mask[i] = h[k++] = (uint8_t)rnd();
    assert_int_equal(buf_append(b, h, k), 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(pl[i] ^ mask[i & 3]);
        assert_int_equal(buf_append(b, &c, 1), 0);
    }
}

typedef struct sink {
    buf_t out;
    int calls;
    int fail_at; /* the call that fails, 0 = none */
} sink_t;

static int sink_emit(void *ctx, const uint8_t *p, size_t n)
{
    sink_t *s = ctx;
    assert_true(n > 0);
    if (++s->calls == s->fail_at)
        return -1;
    return buf_append(&s->out, p, n);
}

/* A random stream into in (everything) and want (without the lb's pongs);
 * returns how many lb pongs it has. */
static int make_stream(buf_t *in, buf_t *want)
{
    uint8_t pl[70200];
    int ours = 0;
    for (int m = 0; m < 40; m++) {
        int kind = (int)(rnd() % 8);
        if (kind == 0) { /* the lb's pong */
            frame(in, 1, WS_OP_PONG, tok, WSP_TOKEN_LEN, 0);
            ours++;
            continue;
        }
        buf_t *both[2] = {in, want};
        if (kind == 1 || kind == 2) { /* a control frame of the client's */
            int op = kind == 1 ? WS_OP_PONG : WS_OP_PING;
            size_t n = rnd() % 3 == 0 ? WSP_TOKEN_LEN : rnd() % 126;
            for (size_t i = 0; i < n; i++)
                pl[i] = (uint8_t)rnd();
            if (n == WSP_TOKEN_LEN && rnd() % 2) { /* the token but one byte */
                memcpy(pl, tok, n);
                pl[rnd() % n] ^= 0x20;
            }
            int nonmin = n == WSP_TOKEN_LEN && rnd() % 4 == 0;
            uint64_t save = rng;
            for (int j = 0; j < 2; j++) {
                rng = save; /* the same mask both times */
                frame(both[j], 1, op, pl, n, nonmin);
            }
            continue;
        }
        /* A message in fragments, with control frames between them. */
        int nfrag = 1 + (int)(rnd() % 4);
        for (int f = 0; f < nfrag; f++) {
            size_t n = rnd() % 5 == 0 ? 126 + rnd() % 70000 : rnd() % 200;
            for (size_t i = 0; i < n; i++)
                pl[i] = (uint8_t)rnd();
            uint64_t save = rng;
            for (int j = 0; j < 2; j++) {
                rng = save;
                frame(both[j], f == nfrag - 1, f == 0 ? WS_OP_BINARY : WS_OP_CONT, pl, n, 0);
            }
            if (f < nfrag - 1 && rnd() % 2) {
                frame(in, 1, WS_OP_PONG, tok, WSP_TOKEN_LEN, 0);
                ours++;
            }
        }
    }
    return ours;
}

static void feed_in_pieces(wsf_t *t, const buf_t *in, sink_t *s, size_t maxpiece, int *removed)
{
    size_t off = 0, n = buf_size(in);
    while (off < n) {
        size_t k = 1 + rnd() % maxpiece;
        if (k > n - off)
            k = n - off;
        int r = wsp_filter(t, tok, (const uint8_t *)buf_head(in) + off, k, sink_emit, s);
        assert_true(r >= 0);
        *removed += r;
        off += k;
    }
}

static void test_random_streams_random_cuts(void **state)
{
    (void)state;
    size_t pieces[] = {1, 2, 7, 64, 4096, 100000};
    for (int round = 0; round < 60; round++) {
        buf_t in = BUF_INIT, want = BUF_INIT;
        int ours = make_stream(&in, &want);
        sink_t s = {BUF_INIT, 0, 0};
        wsf_t t;
        memset(&t, 0, sizeof(t));
        int removed = 0;
        feed_in_pieces(&t, &in, &s, pieces[round % 6], &removed);
        assert_int_equal(removed, ours);
        assert_int_equal(buf_size(&s.out), buf_size(&want));
        assert_memory_equal(buf_head(&s.out), buf_head(&want), buf_size(&want));
        assert_true(wsf_at_boundary(&t));
        assert_false(t.pend);
        buf_free(&in);
        buf_free(&want);
        buf_free(&s.out);
    }
}

/* Whole frames in one call: one run per call, unless a pong of ours splits
 * it. */
static void test_one_run_per_call(void **state)
{
    (void)state;
    buf_t in = BUF_INIT;
    uint8_t pl[300];
    memset(pl, 'a', sizeof(pl));
    frame(&in, 0, WS_OP_TEXT, pl, 10, 0);
    frame(&in, 1, WS_OP_PING, pl, 8, 0);
    frame(&in, 1, WS_OP_CONT, pl, 300, 0);
    sink_t s = {BUF_INIT, 0, 0};
    wsf_t t;
    memset(&t, 0, sizeof(t));
    assert_int_equal(
        wsp_filter(&t, tok, (const uint8_t *)buf_head(&in), buf_size(&in), sink_emit, &s), 0);
    assert_int_equal(s.calls, 1);
    size_t first = buf_size(&in);
    frame(&in, 1, WS_OP_PONG, tok, WSP_TOKEN_LEN, 0);
    frame(&in, 1, WS_OP_TEXT, pl, 5, 0);
    s.calls = 0;
    assert_int_equal(wsp_filter(&t, tok, (const uint8_t *)buf_head(&in) + first,
                                buf_size(&in) - first, sink_emit, &s),
                     1);
    assert_int_equal(s.calls, 1); /* only the text frame after the pong */
    assert_int_equal(buf_size(&s.out), first + 2 + 4 + 5);
    buf_free(&in);
    buf_free(&s.out);
}

/* Unmasked bytes are no client frames: tracking stops, everything goes on,
 * a held header first. */
static void test_unmasked_passes_through(void **state)
{
    (void)state;
    const uint8_t in[] = {0x8a, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    sink_t s = {BUF_INIT, 0, 0};
    wsf_t t;
    memset(&t, 0, sizeof(t));
    assert_int_equal(wsp_filter(&t, tok, in, 1, sink_emit, &s), 0);
    assert_int_equal(buf_size(&s.out), 0); /* held: may be a pong */
    assert_int_equal(wsp_filter(&t, tok, in + 1, sizeof(in) - 1, sink_emit, &s), 0);
    assert_true(t.lost);
    assert_int_equal(buf_size(&s.out), sizeof(in));
    assert_memory_equal(buf_head(&s.out), in, sizeof(in));
    buf_free(&s.out);
}

/* A header wsf_feed() began (already passed on) is never withheld. */
static void test_after_wsf_feed_mid_header(void **state)
{
    (void)state;
    buf_t in = BUF_INIT;
    frame(&in, 1, WS_OP_PONG, tok, WSP_TOKEN_LEN, 0);
    wsf_t t;
    memset(&t, 0, sizeof(t));
    wsf_feed(&t, 1, (const uint8_t *)buf_head(&in), 3);
    sink_t s = {BUF_INIT, 0, 0};
    assert_int_equal(
        wsp_filter(&t, tok, (const uint8_t *)buf_head(&in) + 3, buf_size(&in) - 3, sink_emit, &s),
        0);
    assert_int_equal(buf_size(&s.out), buf_size(&in) - 3);
    assert_true(wsf_at_boundary(&t));
    buf_free(&in);
    buf_free(&s.out);
}

static void test_emit_failure_stops(void **state)
{
    (void)state;
    buf_t in = BUF_INIT;
    uint8_t pl[8] = {0};
    frame(&in, 1, WS_OP_TEXT, pl, 8, 0);
    sink_t s = {BUF_INIT, 0, 1};
    wsf_t t;
    memset(&t, 0, sizeof(t));
    assert_int_equal(
        wsp_filter(&t, tok, (const uint8_t *)buf_head(&in), buf_size(&in), sink_emit, &s), -1);
    buf_free(&in);
    buf_free(&s.out);
}

static void test_ping_frame(void **state)
{
    (void)state;
    uint8_t f[WSP_PING_LEN];
    wsp_ping_frame(f, tok);
    assert_int_equal(f[0], 0x89);
    assert_int_equal(f[1], WSP_TOKEN_LEN);
    assert_memory_equal(f + 2, tok, WSP_TOKEN_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_streams_random_cuts),
        cmocka_unit_test(test_one_run_per_call),
        cmocka_unit_test(test_unmasked_passes_through),
        cmocka_unit_test(test_after_wsf_feed_mid_header),
        cmocka_unit_test(test_emit_failure_stops),
        cmocka_unit_test(test_ping_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
