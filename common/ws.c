/* ws: RFC 6455 handshake keys, framing, close payloads, UTF-8 and message
 * reassembly. No I/O and no allocation except in ws_msg_* and writers. */
#include "ws.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define WS_GUID        "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN     24 /* base64 of 16 bytes */
#define WS_MAX_CONTROL 125

/* Fills p with n random bytes: OpenSSL first, then the kernel. If neither
 * answers (a seccomp filter, say), the clock still makes every call differ:
 * handshake keys are nonces, and masking keys only need to be unknown to
 * the application, so callers like ws_make_key can stay infallible. */
static void ws_random(void *p, size_t n)
{
    if (RAND_bytes(p, (int)n) == 1)
        return;
    unsigned char *q = p;
    while (n > 0) {
        ssize_t r = getrandom(q, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        q += r;
        n -= (size_t)r;
    }
    if (n == 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)q;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        q[i] = (unsigned char)(x >> 56);
    }
}

static int ws_is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* key is not NUL-terminated; out receives 28 characters and a NUL. */
int ws_accept_key(const char *key, size_t keylen, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char in[WS_KEY_LEN + sizeof(WS_GUID) - 1];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    /* 16 bytes encode to 22 significant characters and "==". */
    if (key == NULL || keylen != WS_KEY_LEN || key[22] != '=' || key[23] != '=')
        return -1;
    for (size_t i = 0; i < 22; i++)
        if (!ws_is_b64((unsigned char)key[i]))
            return -1;
    memcpy(in, key, WS_KEY_LEN);
    memcpy(in + WS_KEY_LEN, WS_GUID, sizeof(WS_GUID) - 1);
    if (EVP_Digest(in, sizeof(in), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return -1;
    if (EVP_EncodeBlock((unsigned char *)out, md, 20) != WS_ACCEPT_LEN)
        return -1;
    return 0;
}

void ws_make_key(char out[25])
{
    unsigned char raw[16];
    ws_random(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
}

/* Per-thread xorshift state for client masking keys. RFC 6455 10.3 asks
 * that applications cannot predict the key; a generator seeded from the
 * kernel is enough for that and costs no syscall per frame. */
static __thread uint64_t ws_rng_state;

static uint32_t ws_rng_next(void)
{
    uint64_t x = ws_rng_state;
    while (x == 0) {
        ws_random(&x, sizeof(x));
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ws_rng_state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* XORs p[0..n) with the 4-byte mask, eight bytes per step. The payload
 * starts at mask offset 0, so a doubled mask lines up with every 8-byte
 * block whatever the host byte order. */
static void ws_mask_bytes(uint8_t *p, size_t n, const uint8_t mask[4])
{
    uint8_t m8[8];
    uint64_t m;
    size_t i = 0;

    memcpy(m8, mask, 4);
    memcpy(m8 + 4, mask, 4);
    memcpy(&m, m8, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= m;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++)
        p[i] ^= mask[i & 3];
}

static int ws_opcode_known(int op)
{
    return op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
           op == WS_OP_PING || op == WS_OP_PONG;
}

/* data[0..len) is the caller's and is modified (unmasked) only when a whole
 * frame is present; f is written only then too. */
long ws_frame_parse(uint8_t *data, size_t len, enum ws_role role, uint64_t max_payload,
                    ws_frame_t *f)
{
    if (len < 2)
        return 0;
    int fin = data[0] >> 7;
    int opcode = data[0] & 0x0F;
    int masked = data[1] >> 7;
    uint64_t plen = data[1] & 0x7F;
    size_t hdr = 2;

    /* No extension is ever negotiated, so RSV1-3 must be zero. */
    if (data[0] & 0x70)
        return -WS_CLOSE_PROTOCOL;
    if (!ws_opcode_known(opcode))
        return -WS_CLOSE_PROTOCOL;
    if (opcode & 0x8) {
        if (!fin || plen > WS_MAX_CONTROL)
            return -WS_CLOSE_PROTOCOL;
    }
    /* Clients always mask, servers never do (RFC 6455 5.1). */
    if (masked != (role == WS_ROLE_SERVER))
        return -WS_CLOSE_PROTOCOL;

    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = ((uint64_t)data[2] << 8) | data[3];
        if (plen < 126)
            return -WS_CLOSE_PROTOCOL;
        hdr = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 2; i < 10; i++)
            plen = (plen << 8) | data[i];
        if ((plen >> 63) != 0 || plen <= 0xFFFF)
            return -WS_CLOSE_PROTOCOL;
        hdr = 10;
    }
    /* Checked before the mask key and payload arrive, and also keeping the
     * frame length representable as a long. */
    if (plen > max_payload || plen > (uint64_t)(LONG_MAX - WS_MAX_HEADER))
        return -WS_CLOSE_TOO_BIG;
    if (masked)
        hdr += 4;
    if (len < hdr || len - hdr < plen)
        return 0;

    f->fin = fin;
    f->opcode = opcode;
    f->masked = masked;
    f->payload_len = plen;
    f->header_len = hdr;
    f->payload = data + hdr;
    if (masked) {
        memcpy(f->mask, data + hdr - 4, 4);
        ws_mask_bytes(f->payload, (size_t)plen, f->mask);
    } else {
        memset(f->mask, 0, sizeof(f->mask));
    }
    return (long)(hdr + plen);
}

/* Appends the frame header and payload in one reservation; payload may be
 * NULL when len is 0. Control frames must be final and at most 125 bytes. */
int ws_frame_write(buf_t *out, enum ws_role role, int opcode, int fin, const void *payload,
                   size_t len)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t h = 2;

    if (!ws_opcode_known(opcode))
        return -1;
    if ((opcode & 0x8) && (!fin || len > WS_MAX_CONTROL))
        return -1;
    hdr[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        hdr[1] = (uint8_t)len;
    } else if (len <= 0xFFFF) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        h = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        h = 10;
    }
    uint8_t mask[4];
    if (role == WS_ROLE_CLIENT) {
        uint32_t r = ws_rng_next();
        memcpy(mask, &r, 4);
        hdr[1] |= 0x80;
        memcpy(hdr + h, mask, 4);
        h += 4;
    }
    if (len > SIZE_MAX - h)
        return -1;

    uint8_t *dst = (uint8_t *)buf_reserve(out, h + len);
    if (dst == NULL)
        return -1;
    memcpy(dst, hdr, h);
    if (len > 0) {
        memcpy(dst + h, payload, len);
        if (role == WS_ROLE_CLIENT)
            ws_mask_bytes(dst + h, len, mask);
    }
    buf_commit(out, h + len);
    return 0;
}

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence, so a truncated reason stays valid UTF-8. */
static size_t ws_utf8_cut(const uint8_t *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t cut = max;
    /* back off continuation bytes to the start of the cut sequence */
    while (cut > 0 && (s[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}

/* reason may be NULL. Code 1005 ("no status") is sent as an empty payload,
 * which is how the wire says it. */
int ws_close_write(buf_t *out, enum ws_role role, uint16_t code, const char *reason)
{
    uint8_t p[WS_MAX_CONTROL];
    size_t n = 0;

    if (code != WS_CLOSE_NO_STATUS) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        if (reason != NULL) {
            size_t rl = ws_utf8_cut((const uint8_t *)reason, strlen(reason), WS_MAX_CONTROL - 2);
            memcpy(p + 2, reason, rl);
            n += rl;
        }
    }
    return ws_frame_write(out, role, WS_OP_CLOSE, 1, p, n);
}

int ws_close_code_valid(unsigned code)
{
    /* 1012-1014 (service restart, try again later, bad gateway) are in the
     * IANA registry since RFC 6455; proxies and browsers use them. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code)
{
    if (n == 0) {
        *code = WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (n == 1)
        return -WS_CLOSE_PROTOCOL;
    unsigned c = ((unsigned)p[0] << 8) | p[1];
    if (!ws_close_code_valid(c))
        return -WS_CLOSE_PROTOCOL;
    if (!ws_utf8_valid(p + 2, n - 2))
        return -WS_CLOSE_INVALID_DATA;
    *code = (uint16_t)c;
    return 0;
}

/* Well-formed UTF-8 per Unicode Table 3-7: the second byte's range depends
 * on the lead byte, which is what excludes overlongs (C0, C1, E0 80-9F,
 * F0 80-8F), surrogates (ED A0-BF) and code points past U+10FFFF (F4 90+,
 * F5-FF). */
int ws_utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n)
            return -1; /* what is there is a valid start; the rest is missing */
        if (k == 1 ? (p[1] < lo || p[1] > hi) : (p[k] & 0xC0) != 0x80)
            return 0;
    }
    return (int)need + 1;
}

/* ASCII runs are skipped eight bytes at a time. */
int ws_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        int k = ws_utf8_seq(p + i, n - i);
        if (k <= 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

/* f comes from ws_frame_parse on the same connection. After WS_MSG_DONE the
 * message stays in m until ws_msg_reset(); on an error the connection is to
 * be closed and m only freed. */
int ws_msg_feed(ws_msg_t *m, const ws_frame_t *f)
{
    if (f->opcode & 0x8)
        return WS_MSG_CONTROL;
    if (f->opcode == WS_OP_CONT) {
        if (m->opcode == 0)
            return -WS_CLOSE_PROTOCOL;
    } else {
        if (m->opcode != 0)
            return -WS_CLOSE_PROTOCOL;
        m->opcode = f->opcode;
    }
    if (f->payload_len > m->max_size || buf_size(&m->data) > m->max_size - f->payload_len)
        return -WS_CLOSE_TOO_BIG;
    if (f->payload_len > 0 && buf_append(&m->data, f->payload, (size_t)f->payload_len) < 0)
        return -WS_CLOSE_INTERNAL;
    if (!f->fin)
        return WS_MSG_MORE;
    /* Validated once complete: a character may straddle fragments. */
    if (m->opcode == WS_OP_TEXT && buf_size(&m->data) > 0 &&
        !ws_utf8_valid((const uint8_t *)buf_head(&m->data), buf_size(&m->data)))
        return -WS_CLOSE_INVALID_DATA;
    return WS_MSG_DONE;
}

/* Releases the message memory too: an idle connection should hold none,
 * and a large message should not pin its buffer afterwards. */
void ws_msg_reset(ws_msg_t *m)
{
    buf_free(&m->data);
    m->opcode = 0;
}

void ws_msg_free(ws_msg_t *m)
{
    buf_free(&m->data);
    m->opcode = 0;
}
