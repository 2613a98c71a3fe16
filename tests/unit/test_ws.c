/* Unit tests for common/ws: handshake keys, framing, close payloads, UTF-8,
 * message reassembly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws.h"

#define NO_LIMIT UINT64_MAX

/* A heap copy of exactly n bytes so ASan catches reads past the end. */
static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    if (n > 0)
        memcpy(d, p, n);
    return d;
}

static long parse_copy(const void *p, size_t n, enum ws_role role, uint64_t max, ws_frame_t *f)
{
    uint8_t *d = dup_bytes(p, n);
    long r = ws_frame_parse(d, n, role, max, f);
    free(d);
    return r;
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

/* ---- handshake ------------------------------------------------------- */

static void test_accept_key_rfc(void **state)
{
    char out[WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    memset(out, 'x', sizeof(out));
    assert_int_equal(ws_accept_key(key, strlen(key), out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    /* keylen is honoured: the key need not be NUL-terminated */
    const char padded[] = "dGhlIHNhbXBsZSBub25jZQ==trailing";
    assert_int_equal(ws_accept_key(padded, 24, out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_accept_key_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 chars */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 chars */
        "dGhlIHNhbXBsZSBub25jZSEh",  /* 24 chars but 18 bytes */
        "dGhlIHNhbXBsZSBub25jZ===",  /* padding too early */
        "dGhlIHNhbXBsZSBub25j*Q==",  /* not base64 */
        "dGhlIHNhbXBsZSBub25jZQ.=",
        "dGhlIHNhbXBsZ Bub25jZQ==",
        "=GhlIHNhbXBsZSBub25jZQ==",
        NULL,
    };
    char out[WS_ACCEPT_LEN + 1];
    for (size_t i = 0; bad[i] != NULL; i++) {
        if (ws_accept_key(bad[i], strlen(bad[i]), out) != -1)
            fail_msg("key %zu \"%s\" accepted", i, bad[i]);
    }
    /* right key, wrong length given */
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 22, out), -1);
}

static void test_make_key(void **state)
{
    char a[25], b[25], acc[WS_ACCEPT_LEN + 1];
    memset(a, 'x', sizeof(a));
    ws_make_key(a);
    ws_make_key(b);
    assert_int_equal(strlen(a), 24);
    assert_int_equal(a[24], '\0');
    /* a fresh key is a valid key */
    assert_int_equal(ws_accept_key(a, 24, acc), 0);
    assert_int_equal(strlen(acc), WS_ACCEPT_LEN);
    assert_string_not_equal(a, b);
}

/* ---- framing ------------------------------------------------------- */

/* Writes a frame in one role, parses it in the other and compares. */
static void roundtrip(enum ws_role writer, int opcode, size_t size)
{
    enum ws_role reader = writer == WS_ROLE_CLIENT ? WS_ROLE_SERVER : WS_ROLE_CLIENT;
    uint8_t *payload = malloc(size ? size : 1);
    assert_non_null(payload);
    fill_pattern(payload, size, (uint32_t)size);

    buf_t b = BUF_INIT;
    assert_int_equal(ws_frame_write(&b, writer, opcode, 1, payload, size), 0);
    size_t ext = size < 126 ? 0 : size <= 0xFFFF ? 2 : 8;
    size_t hdr = 2 + ext + (writer == WS_ROLE_CLIENT ? 4 : 0);
    assert_int_equal(buf_size(&b), hdr + size);

    uint8_t *wire = dup_bytes(buf_head(&b), buf_size(&b));
    if (writer == WS_ROLE_CLIENT && size >= 16) {
        /* masked on the wire (an all-zero key would leave it clear) */
        if (memcmp(wire + hdr - 4, "\0\0\0\0", 4) != 0)
            assert_memory_not_equal(wire + hdr, payload, size);
    }
    ws_frame_t f;
    memset(&f, 0xAA, sizeof(f));
    long r = ws_frame_parse(wire, buf_size(&b), reader, size, &f);
    assert_int_equal(r, (long)(hdr + size));
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.opcode, opcode);
    assert_int_equal(f.masked, writer == WS_ROLE_CLIENT);
    assert_int_equal(f.payload_len, size);
    assert_int_equal(f.header_len, hdr);
    assert_ptr_equal(f.payload, wire + hdr);
    if (size > 0)
        assert_memory_equal(f.payload, payload, size);
    free(wire);

    /* one byte under the limit is refused from the header alone */
    if (size > 0) {
        wire = dup_bytes(buf_head(&b), 2 + ext);
        assert_int_equal(ws_frame_parse(wire, 2 + ext, reader, size - 1, &f), -WS_CLOSE_TOO_BIG);
        free(wire);
    }
    buf_free(&b);
    free(payload);
}

static void test_roundtrip_sizes(void **state)
{
    static const size_t sizes[] = {0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 1 << 20};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        roundtrip(WS_ROLE_CLIENT, WS_OP_BINARY, sizes[i]);
        roundtrip(WS_ROLE_SERVER, WS_OP_BINARY, sizes[i]);
        roundtrip(WS_ROLE_CLIENT, WS_OP_TEXT, sizes[i]);
    }
    roundtrip(WS_ROLE_CLIENT, WS_OP_PING, 125);
    roundtrip(WS_ROLE_SERVER, WS_OP_PONG, 0);
    roundtrip(WS_ROLE_SERVER, WS_OP_CLOSE, 2);
}

static void test_fin_and_multiple_frames(void **state)
{
    buf_t b = BUF_INIT;
    assert_int_equal(ws_frame_write(&b, WS_ROLE_SERVER, WS_OP_TEXT, 0, "ab", 2), 0);
    assert_int_equal(ws_frame_write(&b, WS_ROLE_SERVER, WS_OP_CONT, 1, "c", 1), 0);
    uint8_t *wire = dup_bytes(buf_head(&b), buf_size(&b));
    ws_frame_t f;
    long r = ws_frame_parse(wire, buf_size(&b), WS_ROLE_CLIENT, NO_LIMIT, &f);
    assert_int_equal(r, 4);
    assert_int_equal(f.fin, 0);
    assert_int_equal(f.opcode, WS_OP_TEXT);
    /* the parser stops at the first frame; the second follows */
    r = ws_frame_parse(wire + 4, buf_size(&b) - 4, WS_ROLE_CLIENT, NO_LIMIT, &f);
    assert_int_equal(r, 3);
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.opcode, WS_OP_CONT);
    assert_memory_equal(f.payload, "c", 1);
    free(wire);
    buf_free(&b);
}

/* The RFC 6455 5.7 examples, byte for byte. */
static void test_rfc_examples(void **state)
{
    ws_frame_t f;
    uint8_t unmasked[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    assert_int_equal(ws_frame_parse(unmasked, sizeof(unmasked), WS_ROLE_CLIENT, 125, &f), 7);
    assert_memory_equal(f.payload, "Hello", 5);

    uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    assert_int_equal(ws_frame_parse(masked, sizeof(masked), WS_ROLE_SERVER, 125, &f), 11);
    assert_memory_equal(f.mask, "\x37\xfa\x21\x3d", 4);
    assert_memory_equal(f.payload, "Hello", 5);

    uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    assert_int_equal(ws_frame_parse(ping, sizeof(ping), WS_ROLE_CLIENT, 125, &f), 7);
    assert_int_equal(f.opcode, WS_OP_PING);

    /* server output for "Hello" is exactly the unmasked example */
    buf_t b = BUF_INIT;
    assert_int_equal(ws_frame_write(&b, WS_ROLE_SERVER, WS_OP_TEXT, 1, "Hello", 5), 0);
    assert_int_equal(buf_size(&b), 7);
    assert_memory_equal(buf_head(&b), "\x81\x05Hello", 7);
    buf_free(&b);
}

static void test_unmask_every_length(void **state)
{
    /* the 8-byte fast path and the byte tail must agree with the RFC rule */
    uint8_t payload[64], wire[64 + 14];
    const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
    for (size_t n = 0; n <= 40; n++) {
        fill_pattern(payload, n, (uint32_t)n + 7);
        wire[0] = 0x82;
        wire[1] = (uint8_t)(0x80 | n);
        memcpy(wire + 2, key, 4);
        for (size_t i = 0; i < n; i++)
            wire[6 + i] = payload[i] ^ key[i % 4];
        ws_frame_t f;
        assert_int_equal(ws_frame_parse(wire, 6 + n, WS_ROLE_SERVER, NO_LIMIT, &f), (long)(6 + n));
        if (n > 0)
            assert_memory_equal(f.payload, payload, n);
    }
}

static void expect_error(const uint8_t *p, size_t n, enum ws_role role, uint64_t max, long want,
                         const char *what)
{
    ws_frame_t f;
    long r = parse_copy(p, n, role, max, &f);
    if (r != want)
        fail_msg("%s: got %ld, want %ld", what, r, want);
}

static void test_malformed_frames(void **state)
{
    /* masked (client) frames checked by a server, with a mask key present */
    for (int rsv = 1; rsv <= 7; rsv++) {
        uint8_t p[] = {(uint8_t)(0x81 | (rsv << 4)), 0x80, 1, 2, 3, 4};
        expect_error(p, sizeof(p), WS_ROLE_SERVER, NO_LIMIT, -1002, "rsv bits");
    }
    for (int op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 0xA))
            continue;
        uint8_t p[] = {(uint8_t)(0x80 | op), 0x80, 1, 2, 3, 4};
        expect_error(p, sizeof(p), WS_ROLE_SERVER, NO_LIMIT, -1002, "reserved opcode");
        expect_error(p, 2, WS_ROLE_SERVER, NO_LIMIT, -1002, "reserved opcode, header only");
    }
    /* fragmented control frames */
    for (int op = 8; op <= 0xA; op++) {
        uint8_t p[] = {(uint8_t)op, 0x80, 1, 2, 3, 4};
        expect_error(p, sizeof(p), WS_ROLE_SERVER, NO_LIMIT, -1002, "fragmented control");
    }
    /* control frames over 125 bytes, whether 16- or 64-bit encoded */
    uint8_t big_ping16[] = {0x89, 0x80 | 126, 0x00, 0x7E};
    expect_error(big_ping16, sizeof(big_ping16), WS_ROLE_SERVER, NO_LIMIT, -1002, "ping 126");
    expect_error(big_ping16, 2, WS_ROLE_SERVER, NO_LIMIT, -1002, "ping 126 (2 bytes)");
    uint8_t big_close64[] = {0x88, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0};
    expect_error(big_close64, sizeof(big_close64), WS_ROLE_SERVER, NO_LIMIT, -1002, "close 64");

    /* masking by role */
    uint8_t unmasked[] = {0x81, 0x01, 'a'};
    expect_error(unmasked, sizeof(unmasked), WS_ROLE_SERVER, NO_LIMIT, -1002,
                 "unmasked from client");
    uint8_t masked[] = {0x81, 0x81, 1, 2, 3, 4, 'a'};
    expect_error(masked, sizeof(masked), WS_ROLE_CLIENT, NO_LIMIT, -1002, "masked from server");

    /* non-minimal lengths */
    uint8_t nm16[] = {0x82, 0x80 | 126, 0x00, 125, 1, 2, 3, 4};
    expect_error(nm16, sizeof(nm16), WS_ROLE_SERVER, NO_LIMIT, -1002, "16-bit holding 125");
    uint8_t nm16z[] = {0x82, 0x80 | 126, 0x00, 0x00, 1, 2, 3, 4};
    expect_error(nm16z, sizeof(nm16z), WS_ROLE_SERVER, NO_LIMIT, -1002, "16-bit holding 0");
    uint8_t nm64[] = {0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4};
    expect_error(nm64, sizeof(nm64), WS_ROLE_SERVER, NO_LIMIT, -1002, "64-bit holding 65535");
    uint8_t nm64s[] = {0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5};
    expect_error(nm64s, sizeof(nm64s), WS_ROLE_CLIENT, NO_LIMIT, -1002, "64-bit holding 5");
    uint8_t top[] = {0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    expect_error(top, sizeof(top), WS_ROLE_SERVER, NO_LIMIT, -1002, "64-bit top bit");
    uint8_t allones[] = {0x82, 127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    expect_error(allones, sizeof(allones), WS_ROLE_CLIENT, NO_LIMIT, -1002, "64-bit all ones");

    /* oversized frames are refused from the header alone, before the
     * mask key or any payload byte */
    uint8_t over7[] = {0x82, 0x80 | 100};
    expect_error(over7, sizeof(over7), WS_ROLE_SERVER, 99, -1009, "7-bit over limit");
    uint8_t over16[] = {0x82, 0x80 | 126, 0x10, 0x00};
    expect_error(over16, sizeof(over16), WS_ROLE_SERVER, 4095, -1009, "16-bit over limit");
    uint8_t over64[] = {0x82, 127, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00};
    expect_error(over64, sizeof(over64), WS_ROLE_CLIENT, 1 << 20, -1009, "64-bit over limit");
    uint8_t huge[] = {0x82, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    expect_error(huge, sizeof(huge), WS_ROLE_CLIENT, NO_LIMIT, -1009, "2^63-1 even unlimited");
    /* exactly at the limit is fine: just incomplete here */
    uint8_t at16[] = {0x82, 0x80 | 126, 0x10, 0x00};
    expect_error(at16, sizeof(at16), WS_ROLE_SERVER, 4096, 0, "16-bit at limit");
}

/* Every strict prefix of a valid frame asks for more and leaves the bytes
 * untouched; the whole frame parses. */
static void check_every_split(const uint8_t *frame, size_t n, enum ws_role role)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t *d = dup_bytes(frame, i);
        ws_frame_t f;
        long r = ws_frame_parse(d, i, role, NO_LIMIT, &f);
        if (r != 0)
            fail_msg("prefix %zu of %zu: got %ld", i, n, r);
        if (i > 0)
            assert_memory_equal(d, frame, i);
        free(d);
    }
    ws_frame_t f;
    assert_int_equal(parse_copy(frame, n, role, NO_LIMIT, &f), (long)n);
}

static void test_partial_every_split(void **state)
{
    static const size_t sizes[] = {0, 5, 125, 126, 300, 65536};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        uint8_t *payload = malloc(n ? n : 1);
        assert_non_null(payload);
        fill_pattern(payload, n, 3);
        for (int role = WS_ROLE_SERVER; role <= WS_ROLE_CLIENT; role++) {
            buf_t b = BUF_INIT;
            assert_int_equal(ws_frame_write(&b, (enum ws_role)role, WS_OP_BINARY, 1, payload, n),
                             0);
            enum ws_role reader = role == WS_ROLE_CLIENT ? WS_ROLE_SERVER : WS_ROLE_CLIENT;
            if (n <= 300) {
                check_every_split((const uint8_t *)buf_head(&b), buf_size(&b), reader);
            } else {
                /* big frame: every header split, then a few payload ones */
                for (size_t k = 0; k < 20; k++) {
                    ws_frame_t f;
                    assert_int_equal(parse_copy(buf_head(&b), k, reader, NO_LIMIT, &f), 0);
                }
                ws_frame_t f;
                assert_int_equal(parse_copy(buf_head(&b), buf_size(&b) - 1, reader, NO_LIMIT, &f),
                                 0);
                assert_int_equal(parse_copy(buf_head(&b), buf_size(&b), reader, NO_LIMIT, &f),
                                 (long)buf_size(&b));
            }
            buf_free(&b);
        }
        free(payload);
    }
}

static void test_write_refuses_bad_frames(void **state)
{
    buf_t b = BUF_INIT;
    char big[126] = {0};
    assert_int_equal(ws_frame_write(&b, WS_ROLE_SERVER, WS_OP_PING, 1, big, 126), -1);
    assert_int_equal(ws_frame_write(&b, WS_ROLE_SERVER, WS_OP_PING, 0, big, 1), -1);
    assert_int_equal(ws_frame_write(&b, WS_ROLE_SERVER, 3, 1, big, 1), -1);
    assert_int_equal(ws_frame_write(&b, WS_ROLE_CLIENT, 0xB, 1, big, 1), -1);
    assert_int_equal(buf_size(&b), 0);
    buf_free(&b);
}

/* ---- close --------------------------------------------------------- */

static void test_close_parse(void **state)
{
    uint16_t code = 0;
    assert_int_equal(ws_close_parse(NULL, 0, &code), 0);
    assert_int_equal(code, WS_CLOSE_NO_STATUS);
    const uint8_t one[] = {0x03};
    assert_int_equal(ws_close_parse(one, 1, &code), -1002);

    static const unsigned bad[] = {0,    1,    999,  1004, 1005, 1006,
                                   1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        if (ws_close_parse(p, 2, &code) != -1002)
            fail_msg("code %u accepted", bad[i]);
        assert_false(ws_close_code_valid(bad[i]));
    }
    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                    1011, 1012, 1013, 1014, 3000, 4000, 4999};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint8_t p[2] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i]};
        code = 0;
        if (ws_close_parse(p, 2, &code) != 0)
            fail_msg("code %u refused", good[i]);
        assert_int_equal(code, good[i]);
        assert_true(ws_close_code_valid(good[i]));
    }
    const uint8_t reason[] = {0x03, 0xE8, 'b', 'y', 'e', ' ', 0xC3, 0xA9};
    assert_int_equal(ws_close_parse(reason, sizeof(reason), &code), 0);
    assert_int_equal(code, 1000);
    const uint8_t badutf[] = {0x03, 0xE8, 'b', 0xC3};
    assert_int_equal(ws_close_parse(badutf, sizeof(badutf), &code), -1007);
    const uint8_t badcode_badutf[] = {0x03, 0xED, 0xFF};
    assert_int_equal(ws_close_parse(badcode_badutf, sizeof(badcode_badutf), &code), -1002);
}

static void parse_written_close(buf_t *b, ws_frame_t *f, uint8_t **wire)
{
    *wire = dup_bytes(buf_head(b), buf_size(b));
    assert_int_equal(ws_frame_parse(*wire, buf_size(b), WS_ROLE_SERVER, 125, f), (long)buf_size(b));
    assert_int_equal(f->opcode, WS_OP_CLOSE);
    assert_int_equal(f->fin, 1);
}

static void test_close_write(void **state)
{
    buf_t b = BUF_INIT;
    ws_frame_t f;
    uint8_t *wire;
    uint16_t code;

    assert_int_equal(ws_close_write(&b, WS_ROLE_CLIENT, 1001, "going away"), 0);
    parse_written_close(&b, &f, &wire);
    assert_int_equal(f.payload_len, 12);
    assert_int_equal(ws_close_parse(f.payload, f.payload_len, &code), 0);
    assert_int_equal(code, 1001);
    assert_memory_equal(f.payload + 2, "going away", 10);
    free(wire);
    buf_free(&b);

    assert_int_equal(ws_close_write(&b, WS_ROLE_CLIENT, 1000, NULL), 0);
    parse_written_close(&b, &f, &wire);
    assert_int_equal(f.payload_len, 2);
    free(wire);
    buf_free(&b);

    /* 1005 is never on the wire: an empty close says it */
    assert_int_equal(ws_close_write(&b, WS_ROLE_CLIENT, WS_CLOSE_NO_STATUS, "x"), 0);
    parse_written_close(&b, &f, &wire);
    assert_int_equal(f.payload_len, 0);
    assert_int_equal(ws_close_parse(f.payload, f.payload_len, &code), 0);
    assert_int_equal(code, WS_CLOSE_NO_STATUS);
    free(wire);
    buf_free(&b);

    /* a long reason is cut to fit, never inside a character: with 'é' (two
     * bytes) repeated, the 123-byte cut would fall inside the 62nd one */
    char longr[200];
    size_t n = 0;
    for (int i = 0; i < 80; i++) {
        longr[n++] = (char)0xC3;
        longr[n++] = (char)0xA9;
    }
    longr[n] = '\0';
    assert_int_equal(ws_close_write(&b, WS_ROLE_CLIENT, 4000, longr), 0);
    parse_written_close(&b, &f, &wire);
    assert_true(f.payload_len <= 125);
    assert_int_equal(f.payload_len, 2 + 2 * 61);
    assert_int_equal(ws_close_parse(f.payload, f.payload_len, &code), 0);
    assert_int_equal(code, 4000);
    free(wire);
    buf_free(&b);

    /* plain ASCII is cut at exactly 123 bytes */
    memset(longr, 'z', 150);
    longr[150] = '\0';
    assert_int_equal(ws_close_write(&b, WS_ROLE_CLIENT, 1000, longr), 0);
    parse_written_close(&b, &f, &wire);
    assert_int_equal(f.payload_len, 125);
    free(wire);
    buf_free(&b);
}

/* ---- UTF-8 --------------------------------------------------------- */

static int utf8(const char *s, size_t n)
{
    uint8_t *d = dup_bytes(s, n);
    int r = ws_utf8_valid(d, n);
    free(d);
    return r;
}
#define U8(lit) utf8(lit, sizeof(lit) - 1)

static void test_utf8(void **state)
{
    assert_true(ws_utf8_valid(NULL, 0));
    assert_true(U8("plain ascii, long enough for the 8-byte path"));
    assert_true(U8("\x7f"));
    assert_true(U8("\xC2\x80"));         /* U+0080 */
    assert_true(U8("\xDF\xBF"));         /* U+07FF */
    assert_true(U8("\xE0\xA0\x80"));     /* U+0800 */
    assert_true(U8("\xED\x9F\xBF"));     /* U+D7FF */
    assert_true(U8("\xEE\x80\x80"));     /* U+E000 */
    assert_true(U8("\xEF\xBF\xBF"));     /* U+FFFF */
    assert_true(U8("\xF0\x90\x80\x80")); /* U+10000 */
    assert_true(U8("\xF4\x8F\xBF\xBF")); /* U+10FFFF */
    assert_true(U8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 abcdefgh\xCE\xBA"));

    assert_false(U8("\xC0\x80"));     /* overlong NUL */
    assert_false(U8("\xC1\xBF"));     /* overlong 2-byte */
    assert_false(U8("\xE0\x80\x80")); /* overlong 3-byte */
    assert_false(U8("\xE0\x9F\xBF"));
    assert_false(U8("\xF0\x80\x80\x80")); /* overlong 4-byte */
    assert_false(U8("\xF0\x8F\xBF\xBF"));
    assert_false(U8("\xED\xA0\x80"));     /* U+D800 */
    assert_false(U8("\xED\xBF\xBF"));     /* U+DFFF */
    assert_false(U8("\xF4\x90\x80\x80")); /* U+110000 */
    assert_false(U8("\xF5\x80\x80\x80"));
    assert_false(U8("\xF8\x88\x80\x80\x80")); /* 5-byte form */
    assert_false(U8("\xFE"));
    assert_false(U8("\xFF"));
    assert_false(U8("\x80")); /* stray continuation */
    assert_false(U8("abcdefgh\xBF"));
    assert_false(U8("\xC3")); /* truncated */
    assert_false(U8("\xE2\x82"));
    assert_false(U8("\xF0\x9F\x98"));
    assert_false(U8("abcdefghijklmno\xF0\x9F\x98"));
    assert_false(U8("\xC3\x28")); /* bad continuation */
    assert_false(U8("\xE2\x28\xA1"));
    assert_false(U8("\xE2\x82\x28"));
    assert_false(U8("\xF0\x9F\x98\x28"));
    assert_false(U8("\xCE\xBA"
                    "abc\xED\xA0\x80"
                    "xyz"));
    assert_false(utf8("a\0b\xC0", 4));
    assert_true(utf8("a\0b", 3)); /* NUL is a character */
}

/* ---- messages ------------------------------------------------------ */

/* Builds a frame as a client would send it and parses it as the server. */
typedef struct wframe {
    uint8_t *wire;
    ws_frame_t f;
} wframe_t;

static void mkframe(wframe_t *w, int opcode, int fin, const void *p, size_t n)
{
    buf_t b = BUF_INIT;
    assert_int_equal(ws_frame_write(&b, WS_ROLE_CLIENT, opcode, fin, p, n), 0);
    w->wire = dup_bytes(buf_head(&b), buf_size(&b));
    assert_int_equal(ws_frame_parse(w->wire, buf_size(&b), WS_ROLE_SERVER, NO_LIMIT, &w->f),
                     (long)buf_size(&b));
    buf_free(&b);
}

static int feed(ws_msg_t *m, int opcode, int fin, const void *p, size_t n)
{
    wframe_t w;
    mkframe(&w, opcode, fin, p, n);
    int r = ws_msg_feed(m, &w.f);
    free(w.wire);
    return r;
}

static void test_msg_single(void **state)
{
    ws_msg_t m = {BUF_INIT, 0, 1024};
    assert_int_equal(feed(&m, WS_OP_TEXT, 1, "hello", 5), WS_MSG_DONE);
    assert_int_equal(m.opcode, WS_OP_TEXT);
    assert_int_equal(buf_size(&m.data), 5);
    assert_memory_equal(buf_head(&m.data), "hello", 5);
    ws_msg_reset(&m);
    assert_int_equal(m.opcode, 0);
    assert_int_equal(buf_size(&m.data), 0);

    assert_int_equal(feed(&m, WS_OP_BINARY, 1, "\xC0\x80\xFF", 3), WS_MSG_DONE);
    assert_int_equal(m.opcode, WS_OP_BINARY);
    ws_msg_reset(&m);

    assert_int_equal(feed(&m, WS_OP_TEXT, 1, "", 0), WS_MSG_DONE);
    assert_int_equal(buf_size(&m.data), 0);
    ws_msg_reset(&m);

    assert_int_equal(feed(&m, WS_OP_TEXT, 1, "\xED\xA0\x80", 3), -WS_CLOSE_INVALID_DATA);
    ws_msg_free(&m);
}

static void test_msg_fragmented_with_ping(void **state)
{
    /* "h\xC3\xA9llo w\xC3\xB6rld": both 2-byte characters straddle a
     * fragment boundary; a ping arrives between fragments */
    const char *frag1 = "h\xC3";
    const char *frag2 = "\xA9llo w\xC3";
    const char *frag3 = "\xB6rld";
    ws_msg_t m = {BUF_INIT, 0, 1 << 20};

    assert_int_equal(feed(&m, WS_OP_TEXT, 0, frag1, strlen(frag1)), WS_MSG_MORE);
    assert_int_equal(feed(&m, WS_OP_CONT, 0, frag2, strlen(frag2)), WS_MSG_MORE);
    wframe_t ping;
    mkframe(&ping, WS_OP_PING, 1, "are you there", 13);
    assert_int_equal(ws_msg_feed(&m, &ping.f), WS_MSG_CONTROL);
    assert_memory_equal(ping.f.payload, "are you there", 13);
    free(ping.wire);
    assert_int_equal(feed(&m, WS_OP_PONG, 1, NULL, 0), WS_MSG_CONTROL);
    assert_int_equal(feed(&m, WS_OP_CONT, 1, frag3, strlen(frag3)), WS_MSG_DONE);
    const char *want = "h\xC3\xA9llo w\xC3\xB6rld";
    assert_int_equal(buf_size(&m.data), strlen(want));
    assert_memory_equal(buf_head(&m.data), want, strlen(want));
    assert_int_equal(m.opcode, WS_OP_TEXT);
    ws_msg_reset(&m);

    /* the next message starts cleanly after a reset */
    assert_int_equal(feed(&m, WS_OP_BINARY, 0, "ab", 2), WS_MSG_MORE);
    assert_int_equal(feed(&m, WS_OP_CONT, 0, NULL, 0), WS_MSG_MORE);
    assert_int_equal(feed(&m, WS_OP_CONT, 1, "c", 1), WS_MSG_DONE);
    assert_int_equal(m.opcode, WS_OP_BINARY);
    assert_memory_equal(buf_head(&m.data), "abc", 3);
    ws_msg_free(&m);
}

static void test_msg_errors(void **state)
{
    ws_msg_t m = {BUF_INIT, 0, 10};

    /* continuation with nothing to continue */
    assert_int_equal(feed(&m, WS_OP_CONT, 1, "x", 1), -WS_CLOSE_PROTOCOL);
    ws_msg_free(&m);
    /* a new data message inside a fragmented one */
    assert_int_equal(feed(&m, WS_OP_TEXT, 0, "a", 1), WS_MSG_MORE);
    assert_int_equal(feed(&m, WS_OP_TEXT, 1, "b", 1), -WS_CLOSE_PROTOCOL);
    ws_msg_free(&m);
    assert_int_equal(feed(&m, WS_OP_BINARY, 0, "a", 1), WS_MSG_MORE);
    assert_int_equal(feed(&m, WS_OP_TEXT, 0, "b", 1), -WS_CLOSE_PROTOCOL);
    ws_msg_free(&m);

    /* size: exactly max_size passes, one more byte does not, in one frame
     * or accumulated over fragments */
    assert_int_equal(feed(&m, WS_OP_BINARY, 1, "0123456789", 10), WS_MSG_DONE);
    ws_msg_reset(&m);
    assert_int_equal(feed(&m, WS_OP_BINARY, 1, "0123456789A", 11), -WS_CLOSE_TOO_BIG);
    ws_msg_free(&m);
    assert_int_equal(feed(&m, WS_OP_TEXT, 0, "01234", 5), WS_MSG_MORE);
    assert_int_equal(feed(&m, WS_OP_CONT, 0, "56789", 5), WS_MSG_MORE);
    assert_int_equal(feed(&m, WS_OP_CONT, 1, "A", 1), -WS_CLOSE_TOO_BIG);
    ws_msg_free(&m);

    /* text invalid only once complete: a truncated final character */
    assert_int_equal(feed(&m, WS_OP_TEXT, 0, "ab\xE2", 3), WS_MSG_MORE);
    assert_int_equal(feed(&m, WS_OP_CONT, 1, "\x82", 1), -WS_CLOSE_INVALID_DATA);
    ws_msg_free(&m);
    assert_int_equal(m.opcode, 0);
}

/* One character at a time, for streams: complete, invalid, or a valid start
 * cut off by the end of the input. */
static void test_utf8_seq(void **state)
{
    static const struct {
        const char *b;
        size_t n;
        int want;
    } cases[] = {
        {"A", 1, 1},
        {"\xC3\xA9", 2, 2},
        {"\xE2\x82\xAC", 3, 3},
        {"\xF0\x9F\x98\x80", 4, 4},
        {"\xF0\x9F\x98\x80zz", 6, 4}, /* only the first character */
        {"\xC3", 1, -1},
        {"\xE2\x82", 2, -1},
        {"\xF0\x9F\x98", 3, -1},
        {"\xE0\x80", 2, 0}, /* overlong already at the second byte */
        {"\xED\xA0", 2, 0}, /* surrogate */
        {"\xF4\x90", 2, 0}, /* past U+10FFFF */
        {"\xC0\x80", 2, 0},
        {"\x80", 1, 0},
        {"\xFF", 1, 0},
        {"\xE2\x28\xA1", 3, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = ws_utf8_seq((const uint8_t *)cases[i].b, cases[i].n);
        if (got != cases[i].want)
            fail_msg("case %zu: %d, want %d", i, got, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_rfc),
        cmocka_unit_test(test_accept_key_bad),
        cmocka_unit_test(test_make_key),
        cmocka_unit_test(test_roundtrip_sizes),
        cmocka_unit_test(test_fin_and_multiple_frames),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_unmask_every_length),
        cmocka_unit_test(test_malformed_frames),
        cmocka_unit_test(test_partial_every_split),
        cmocka_unit_test(test_write_refuses_bad_frames),
        cmocka_unit_test(test_close_parse),
        cmocka_unit_test(test_close_write),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_msg_single),
        cmocka_unit_test(test_msg_fragmented_with_ping),
        cmocka_unit_test(test_msg_errors),
        cmocka_unit_test(test_utf8_seq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
