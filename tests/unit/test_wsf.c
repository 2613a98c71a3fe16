/* Unit tests for lb/wsf: frame boundaries of a relayed stream, fed in every
 * possible split, in both directions. */
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

/* Appends one frame with a payload of n bytes of 'x'; masked frames get a
 * key (the tracker never looks at payloads, so the bytes need not be masked
 * for real). */
static void frame(buf_t *b, int opcode, size_t n, int masked)
{
    uint8_t h[14];
    size_t k = 0;
    h[k++] = (uint8_t)(0x80 | opcode);
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
            h[k++] = (uint8_t)(0xa0 + i);
    assert_int_equal(buf_append(b, h, k), 0);
    char *p = buf_reserve(b, n ? n : 1);
    assert_non_null(p);
    memset(p, 'x', n);
    buf_commit(b, n);
}

/* A stream of text, binary, ping and a large frame, then a close: fed in
 * two pieces split at every offset, the tracker ends between frames with
 * the close seen, and is mid-frame exactly where it should be. */
static void check_splits(int masked)
{
    buf_t b = BUF_INIT;
    frame(&b, WS_OP_TEXT, 5, masked);
    frame(&b, WS_OP_BINARY, 300, masked);
    frame(&b, WS_OP_PING, 0, masked);
    frame(&b, WS_OP_BINARY, 70000, masked);
    size_t before_close = buf_size(&b);
    frame(&b, WS_OP_CLOSE, 2, masked);
    const uint8_t *p = (const uint8_t *)buf_head(&b);
    size_t n = buf_size(&b);
    size_t close_hdr = 2 + (masked ? 4 : 0);
    for (size_t cut = 0; cut <= n; cut += (cut < 400 || cut + 20 > before_close) ? 1 : 997) {
        wsf_t t;
        memset(&t, 0, sizeof(t));
        wsf_feed(&t, masked, p, cut);
        assert_false(t.lost);
        assert_int_equal(t.close, cut >= before_close + close_hdr);
        wsf_feed(&t, masked, p + cut, n - cut);
        assert_false(t.lost);
        assert_true(t.close);
        assert_true(wsf_at_boundary(&t));
    }
    /* Byte by byte: at a boundary exactly after each whole frame. */
    wsf_t t;
    memset(&t, 0, sizeof(t));
    size_t ends[] = {2 + (masked ? 4 : 0) + 5, 0, 0, 0};
    ends[1] = ends[0] + 4 + (masked ? 4 : 0) + 300;
    ends[2] = ends[1] + 2 + (masked ? 4 : 0);
    ends[3] = ends[2] + 10 + (masked ? 4 : 0) + 70000;
    assert_int_equal(ends[3], before_close);
    size_t e = 0;
    for (size_t i = 0; i < before_close; i++) {
        wsf_feed(&t, masked, p + i, 1);
        int want = e < 4 && i + 1 == ends[e];
        assert_int_equal(wsf_at_boundary(&t), want);
        e += want;
    }
    buf_free(&b);
}

static void test_server_frames_any_split(void **state)
{
    check_splits(0);
}

static void test_client_frames_any_split(void **state)
{
    check_splits(1);
}

/* A frame with the wrong mask bit for its direction stops the tracking: no
 * boundary is claimed after it, and no close is reported. */
static void test_wrong_mask_is_lost(void **state)
{
    buf_t b = BUF_INIT;
    frame(&b, WS_OP_TEXT, 3, 1);
    frame(&b, WS_OP_CLOSE, 0, 1);
    wsf_t t;
    memset(&t, 0, sizeof(t));
    wsf_feed(&t, 0, (const uint8_t *)buf_head(&b), buf_size(&b));
    assert_true(t.lost);
    assert_false(t.close);
    assert_false(wsf_at_boundary(&t));
    buf_reset(&b);
    frame(&b, WS_OP_CLOSE, 0, 0);
    memset(&t, 0, sizeof(t));
    wsf_feed(&t, 1, (const uint8_t *)buf_head(&b), buf_size(&b));
    assert_true(t.lost);
    assert_false(t.close);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_frames_any_split),
        cmocka_unit_test(test_client_frames_any_split),
        cmocka_unit_test(test_wrong_mask_is_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
