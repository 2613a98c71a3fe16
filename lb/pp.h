/* pp: the PROXY protocol header, v1 (text) and v2 (binary), that a load
 * balancer in front (HAProxy, a cloud network load balancer) puts before a
 * connection's first byte to say whom the connection is from.
 *
 * Incremental and bounded: pp_feed() takes the bytes as they arrive, in any
 * pieces, and says how many of them belong to the header, never one more, so
 * that what follows (an HTTP request, a TLS ClientHello) can stay in the
 * socket for the next reader. A v1 line is at most PP_V1_MAX bytes, a v2
 * header at most 16 + PP_V2_MAX_LEN; TLVs are skipped, unread. Pure: no I/O,
 * no allocation. */
#ifndef LB_PP_H
#define LB_PP_H

#include <stddef.h>
#include <stdint.h>

#include "sock.h"

#define PP_V1_MAX     107  /* the longest v1 line, CRLF included (the spec's bound) */
#define PP_V2_MAX_LEN 2048 /* v2 address block and TLVs we accept (the spec allows 65535) */
#define PP_V2_KEEP    52   /* v2 bytes kept: the fixed header and the IPv6 address block */

enum pp_rc {
    PP_MISSING = -2, /* the connection does not start with a PROXY signature */
    PP_ERROR = -1,   /* a signature, then a header that does not parse */
    PP_AGAIN = 0,    /* every byte given was taken; more are needed */
    PP_DONE = 1,     /* the header is complete */
};

/* What a complete header says. */
typedef struct pp_info {
    int version; /* 1 or 2 */
    /* 1: src and dst are the client's connection. 0: v1 UNKNOWN, v2 LOCAL
     * (the proxy's own health check), or a family that carries no IP
     * address: the socket's own peer stands. */
    int has_addr;
    sock_addr_t src, dst;
} pp_info_t;

typedef struct pp {
    size_t n;     /* header bytes taken so far */
    size_t total; /* v2: the header's whole length once known; 0 before */
    int version;  /* 0 until the signature is complete */
    int over;     /* PP_DONE or an error was returned */
    uint8_t keep[PP_V1_MAX + 1];
} pp_t;

void pp_init(pp_t *p);
/* Feeds the n bytes that follow those fed before. *used gets how many of
 * them are header bytes: all n with PP_AGAIN, those up to the header's end
 * with PP_DONE (then *out is filled). PP_MISSING and PP_ERROR set *err to a
 * constant string; feeding again after them or after PP_DONE is an error. */
int pp_feed(pp_t *p, const void *data, size_t n, size_t *used, pp_info_t *out, const char **err);

#endif
