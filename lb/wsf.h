/* wsf: follows the frame boundaries of one direction of a websocket tunnel
 * the lb relays but does not own (RFC 6455 section 5.2).
 *
 * Payload bytes are skipped, never looked at; only headers are collected,
 * byte by byte, which is cheap next to the read that brought them. This is
 * what lets the lb put a frame of its own between two of the worker's (a
 * 1014 or 1001 close instead of a bare TCP close) and say who closed a
 * websocket (whose close frame came first). A frame whose mask bit is wrong
 * for its direction stops the tracking for good: the lb then never injects
 * anything and reports nothing it cannot know. */
#ifndef LB_WSF_H
#define LB_WSF_H

#include <stddef.h>
#include <stdint.h>

typedef struct wsf {
    uint64_t left;     /* payload bytes of the current frame still to skip */
    uint8_t hlen;      /* header bytes collected so far */
    uint8_t hdr[14];   /* 2 + 8 (length) + 4 (mask) at most */
    uint8_t lost : 1;  /* not frames of the expected kind: no longer followed */
    uint8_t close : 1; /* a close frame's header went by */
    /* lb/wsp.c's filter only: */
    uint8_t pend : 1; /* hdr[0..hlen) is held back, not passed on yet */
    uint8_t cand : 1; /* a pong that may be the lb's: its payload goes to hdr too */
} wsf_t;

/* Feeds n bytes of one direction: masked = client to server. */
void wsf_feed(wsf_t *t, int masked, const uint8_t *p, size_t n);

/* A frame header's size once its first two bytes are in (the extended
 * length and the mask key, if any, included). */
static inline size_t wsf_hdr_size(const uint8_t *hdr, int masked)
{
    uint8_t len7 = hdr[1] & 0x7f;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
}

/* The payload length of a whole frame header. */
static inline uint64_t wsf_hdr_len(const uint8_t *hdr)
{
    uint8_t len7 = hdr[1] & 0x7f;
    uint64_t len = len7;
    if (len7 == 126)
        len = (uint64_t)hdr[2] << 8 | hdr[3];
    else if (len7 == 127)
        for (int k = 2; k < 10; k++)
            len = (len << 8) | hdr[k];
    return len;
}

/* Between two frames of a stream still followed. */
static inline int wsf_at_boundary(const wsf_t *t)
{
    return !t->lost && t->left == 0 && t->hlen == 0;
}

#endif
