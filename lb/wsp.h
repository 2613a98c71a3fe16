/* wsp: the lb's own websocket pings, and the filter that takes their pongs
 * out of the client's stream before it reaches the worker.
 *
 * The lb relays a websocket it does not own, so its pings must be invisible
 * to the worker: a client's pong carries the ping's payload back (RFC 6455
 * 5.5.3), and the lb's payload is a token of WSP_TOKEN_LEN bytes of its own.
 * The filter follows the client's frames (masked) as wsf does, and holds
 * back only what may be such a pong: a header until it is complete, and a
 * pong of exactly WSP_TOKEN_LEN bytes until its payload is in; it then
 * unmasks that payload (a control frame's, never a data frame's) and drops
 * the frame when it is the token, or passes it on unchanged. The client's
 * own pongs (to the worker's pings) carry other payloads and go through, in
 * order. What is held fits in wsf_t's header buffer: 6 + 8 bytes. */
#ifndef LB_WSP_H
#define LB_WSP_H

#include <stddef.h>
#include <stdint.h>

#include "wsf.h"

#define WSP_TOKEN_LEN 8
#define WSP_PING_LEN  (2 + WSP_TOKEN_LEN)

/* Takes n bytes that go on; 0, or -1 to stop the filter (an error). */
typedef int (*wsp_emit_fn)(void *ctx, const uint8_t *p, size_t n);

/* Feeds n bytes of the client-to-server stream through t: everything but
 * pongs carrying tok leaves through emit, in order, in as few runs as the
 * frame boundaries allow (one per call when no header straddles two calls
 * and no lb pong is in them). Returns how many lb pongs were removed, or
 * -1 when emit failed. A stream that is not masked frames (t->lost) passes
 * through whole. t may have been fed by wsf_feed() before. */
int wsp_filter(wsf_t *t, const uint8_t tok[WSP_TOKEN_LEN], const uint8_t *p, size_t n,
               wsp_emit_fn emit, void *ctx);

/* The lb's ping (a server frame: FIN, opcode 9, unmasked, tok as payload). */
void wsp_ping_frame(uint8_t out[WSP_PING_LEN], const uint8_t tok[WSP_TOKEN_LEN]);

#endif
