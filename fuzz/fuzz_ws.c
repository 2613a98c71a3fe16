/* Fuzzes websocket framing (common/ws.c) the way a connection uses it: bytes
 * arrive in chunks, complete frames are consumed one after another from the
 * front of the buffer, data frames are reassembled by ws_msg_feed, control
 * frames answered, a close payload parsed and the stream stops after close
 * or a protocol error. Every complete message and control frame is written
 * back with ws_frame_write/ws_close_write and parsed by the peer's role,
 * which must give back the same bytes. ws_utf8_valid is compared against a
 * plain decoder on the raw input.
 *
 * Input: byte 0 selects the role (bit 0: 0 = we are the server, so frames
 * must be masked), the frame payload limit (bits 1-2), the message limit
 * (bits 3-4) and the read chunk size (bits 5-7); the rest is the stream. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ws.h"

/* Small limits so that 1009 is reached with short inputs; 125/126 sit on
 * the control-frame and 16-bit length boundaries. */
static const uint64_t fz_max_payload[4] = {0, 125, 126, 70000};
static const uint64_t fz_max_msg[4] = {1, 16, 200, 1 << 20};
static const size_t fz_chunk[8] = {1, 2, 3, 7, 14, 64, 1000, SIZE_MAX};

/* Straightforward UTF-8 check by decoding, as the reference. */
static int fz_utf8_ref(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i], min;
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, c &= 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, c &= 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, c &= 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
            c = (c << 6) | (p[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* Writes one frame as role `role` and parses it back as the peer would:
 * the payload must survive the round trip unchanged. */
static void fz_roundtrip(enum ws_role role, int opcode, int fin, const uint8_t *p, size_t n)
{
    buf_t out = BUF_INIT;
    FZ_CHECK(ws_frame_write(&out, role, opcode, fin, p, n) == 0);
    enum ws_role peer = role == WS_ROLE_SERVER ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
    ws_frame_t f;
    long r = ws_frame_parse((uint8_t *)buf_head(&out), buf_size(&out), peer, n, &f);
    FZ_CHECK(r > 0 && (size_t)r == buf_size(&out));
    FZ_CHECK(f.opcode == opcode && f.fin == fin && f.payload_len == n);
    FZ_CHECK(f.masked == (role == WS_ROLE_CLIENT));
    FZ_CHECK(n == 0 || memcmp(f.payload, p, n) == 0);
    /* One byte short is never a frame. */
    FZ_CHECK(ws_frame_parse((uint8_t *)buf_head(&out), buf_size(&out) - 1, peer, n, &f) == 0);
    buf_free(&out);
}

/* Checks what ws_frame_parse promises about a complete frame. */
static void fz_check_frame(const ws_frame_t *f, long r, enum ws_role role, uint64_t maxp,
                           const uint8_t *at)
{
    FZ_CHECK(f->header_len >= 2 && f->header_len <= WS_MAX_HEADER);
    FZ_CHECK((uint64_t)r == f->header_len + f->payload_len);
    FZ_CHECK(f->payload == at + f->header_len);
    FZ_CHECK(f->payload_len <= maxp);
    FZ_CHECK(f->masked == (role == WS_ROLE_SERVER));
    if (f->opcode & 0x8)
        FZ_CHECK(f->fin && f->payload_len <= 125);
    FZ_CHECK(f->opcode <= 2 || (f->opcode >= 8 && f->opcode <= 10));
}

/* Handles a control frame as a connection would; returns 1 after a close. */
static int fz_control(enum ws_role role, const ws_frame_t *f)
{
    size_t n = (size_t)f->payload_len;
    if (f->opcode == WS_OP_PING || f->opcode == WS_OP_PONG) {
        fz_roundtrip(role, WS_OP_PONG, 1, f->payload, n);
        return 0;
    }
    uint16_t code = 0;
    int r = ws_close_parse(f->payload, n, &code);
    FZ_CHECK(r == 0 || r == -WS_CLOSE_PROTOCOL || r == -WS_CLOSE_INVALID_DATA);
    if (r == 0) {
        FZ_CHECK(n == 0 ? code == WS_CLOSE_NO_STATUS : ws_close_code_valid(code));
        FZ_CHECK(n < 2 || fz_utf8_ref(f->payload + 2, n - 2));
    } else {
        code = (uint16_t)-r;
    }
    /* Echo the close with the peer's reason, as a C string cut at its
     * first NUL; the writer truncates it on a character boundary. */
    char reason[126] = "";
    if (n > 2) {
        memcpy(reason, f->payload + 2, n - 2);
        reason[n - 2] = '\0';
    }
    buf_t out = BUF_INIT;
    FZ_CHECK(ws_close_write(&out, role, code, r == 0 ? reason : "protocol error") == 0);
    enum ws_role peer = role == WS_ROLE_SERVER ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
    ws_frame_t back;
    long br = ws_frame_parse((uint8_t *)buf_head(&out), buf_size(&out), peer, 125, &back);
    FZ_CHECK(br > 0 && back.opcode == WS_OP_CLOSE);
    uint16_t code2 = 0;
    FZ_CHECK(ws_close_parse(back.payload, (size_t)back.payload_len, &code2) == 0);
    FZ_CHECK(code2 == code);
    buf_free(&out);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum ws_role role = (data[0] & 1) ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
    uint64_t maxp = fz_max_payload[(data[0] >> 1) & 3];
    uint64_t maxm = fz_max_msg[(data[0] >> 3) & 3];
    size_t chunk = fz_chunk[data[0] >> 5];
    size_t len = size - 1;

    FZ_CHECK(ws_utf8_valid(data + 1, len) == fz_utf8_ref(data + 1, len));

    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data + 1, len);
    ws_msg_t m = {.max_size = maxm};
    size_t off = 0, avail = 0;
    int done = 0;
    while (!done) {
        ws_frame_t f;
        long r = ws_frame_parse(buf + off, avail - off, role, maxp, &f);
        if (r == 0) {
            if (avail == len)
                break;
            /* The next read. */
            avail = len - avail < chunk ? len : avail + chunk;
            continue;
        }
        if (r < 0) {
            FZ_CHECK(r == -WS_CLOSE_PROTOCOL || r == -WS_CLOSE_TOO_BIG);
            break;
        }
        FZ_CHECK((size_t)r <= avail - off);
        fz_check_frame(&f, r, role, maxp, buf + off);
        off += (size_t)r;
        int mr = ws_msg_feed(&m, &f);
        switch (mr) {
        case WS_MSG_MORE:
            FZ_CHECK(!f.fin && m.opcode != 0 && buf_size(&m.data) <= maxm);
            break;
        case WS_MSG_DONE:
            FZ_CHECK(f.fin && buf_size(&m.data) <= maxm);
            FZ_CHECK(m.opcode == WS_OP_TEXT || m.opcode == WS_OP_BINARY);
            if (m.opcode == WS_OP_TEXT)
                FZ_CHECK(fz_utf8_ref((const uint8_t *)buf_head(&m.data), buf_size(&m.data)));
            /* Echo it, as the worker's /echo does. */
            fz_roundtrip(role, m.opcode, 1, (const uint8_t *)buf_head(&m.data), buf_size(&m.data));
            ws_msg_reset(&m);
            FZ_CHECK(m.opcode == 0 && buf_size(&m.data) == 0);
            break;
        case WS_MSG_CONTROL:
            done = fz_control(role, &f);
            break;
        default:
            FZ_CHECK(mr == -WS_CLOSE_PROTOCOL || mr == -WS_CLOSE_TOO_BIG ||
                     mr == -WS_CLOSE_INVALID_DATA);
            done = 1;
            break;
        }
    }
    ws_msg_free(&m);
    free(buf);
    return 0;
}
