/* ws: the websocket protocol (RFC 6455) without I/O.
 *
 * Frame parsing works on bytes the caller has already read; it never
 * allocates. Message reassembly (fragmentation) and UTF-8 validation sit on
 * top in ws_msg_*. Both roles are supported: a server expects masked frames
 * from clients, a client expects unmasked ones from servers. */
#ifndef COMMON_WS_H
#define COMMON_WS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never sent on the wire */
    WS_CLOSE_ABNORMAL = 1006,  /* never sent on the wire */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_EXTENSION = 1010,
    WS_CLOSE_INTERNAL = 1011,
};

enum ws_role { WS_ROLE_SERVER = 0, WS_ROLE_CLIENT = 1 };

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1, without the NUL */
#define WS_MAX_HEADER 14

/* Computes Sec-WebSocket-Accept for a client key; out gets WS_ACCEPT_LEN
 * characters and a NUL. Returns 0, or -1 if the key is not 24 base64 chars
 * decoding to 16 bytes. */
int ws_accept_key(const char *key, size_t keylen, char out[WS_ACCEPT_LEN + 1]);
/* Makes a random client key (24 chars + NUL). */
void ws_make_key(char out[25]);

typedef struct ws_frame {
    int fin;
    int opcode;
    int masked;
    uint8_t mask[4];
    uint64_t payload_len;
    size_t header_len;
    uint8_t *payload; /* points into the caller's data; unmasked in place */
} ws_frame_t;

/* Parses one frame at data[0..len). Returns the full frame length (> 0) when
 * the whole frame is present (its payload then unmasked in place), 0 when
 * more bytes are needed, or -(close code) on a protocol violation: reserved
 * bits set (1002), unknown opcode (1002), control frame fragmented or over
 * 125 bytes (1002), wrong masking for the role (1002), non-minimal or 64-bit
 * length with the top bit set (1002), payload over max_payload (1009). The
 * header is validated as soon as it is complete, so an oversized frame is
 * rejected before its payload arrives. */
long ws_frame_parse(uint8_t *data, size_t len, enum ws_role role, uint64_t max_payload,
                    ws_frame_t *f);

/* Appends one frame. A client (role WS_ROLE_CLIENT) masks with a random key. */
int ws_frame_write(buf_t *out, enum ws_role role, int opcode, int fin, const void *payload,
                   size_t len);
/* Appends a close frame with a code and a reason (truncated to fit 125 bytes). */
int ws_close_write(buf_t *out, enum ws_role role, uint16_t code, const char *reason);
/* Parses a close payload. Returns 0 and sets code (1005 when empty), or
 * -1002 for a 1-byte payload or an invalid code, -1007 for bad UTF-8. */
int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code);
/* True for codes a peer may send (1000-1003, 1007-1014, 3000-4999). */
int ws_close_code_valid(unsigned code);

/* Validates UTF-8 (no overlongs, no surrogates, max U+10FFFF). */
int ws_utf8_valid(const uint8_t *p, size_t n);
/* One character at p[0..n) (n >= 1): its length (1-4) when well formed, 0
 * when invalid, -1 when it is a valid start cut off by the end of the input
 * (for streams that validate chunk by chunk). */
int ws_utf8_seq(const uint8_t *p, size_t n);

/* Message reassembly. Feed every frame returned by ws_frame_parse; control
 * frames pass through untouched. */
typedef struct ws_msg {
    buf_t data;        /* payload of the message being assembled */
    int opcode;        /* WS_OP_TEXT / WS_OP_BINARY of the message in progress, 0 if none */
    uint64_t max_size; /* largest message accepted */
} ws_msg_t;

enum {
    WS_MSG_MORE = 0,    /* fragment stored; nothing complete yet */
    WS_MSG_DONE = 1,    /* a data message is complete in m->data */
    WS_MSG_CONTROL = 2, /* f is a control frame: handle it directly */
};
/* Returns WS_MSG_* or -(close code): continuation without a start, a new
 * message inside a fragmented one (1002), message over max_size (1009),
 * invalid UTF-8 in a complete text message (1007), out of memory (1011).
 * After WS_MSG_DONE the caller reads m->data and calls ws_msg_reset(). */
int ws_msg_feed(ws_msg_t *m, const ws_frame_t *f);
void ws_msg_reset(ws_msg_t *m);
void ws_msg_free(ws_msg_t *m);

#endif
