/* px_ping: the lb's own pings to websocket clients (--ping-interval-s,
 * --ping-timeout-s), which reap clients that are gone: behind a NAT that
 * forgot them, or a phone that left the network, a tunnel stays open and
 * holds a worker's capacity for as long as nobody writes.
 *
 * Every interval, between two of the worker's frames, the client gets a
 * ping whose payload is a token of the connection's (lb/wsp.h); the
 * client's matching pong is taken out of its stream, so the worker never
 * sees the lb's pings. A client that answers none within the timeout is
 * closed: 1001 toward the worker (at a frame boundary of the client's
 * stream), a plain TCP close toward the client, everything freed.
 *
 * State per connection: one bit and 16 bits of time (deciseconds of the
 * loop's clock, compared modulo 2^16, so intervals and timeouts stay under
 * 6553 s). The tunnel's single timer serves both the idle timeout and the
 * pings. A room of px (px_int.h). */
#ifndef LB_PX_PING_H
#define LB_PX_PING_H

#include "px_int.h"
#include "wsp.h"

#define PX_PING_MAX_S 3600 /* longest interval or timeout the 16-bit clock allows */

/* Whether c's client stream goes through the pong filter (px_tun.c). */
static inline int px_ping_filters(const px_conn_t *c)
{
    return c->ws && c->th->px->cfg.ping_interval_s > 0 && !c->wsc.lost;
}
/* c's token: the payload of its pings. */
void px_ping_token(const px_conn_t *c, uint8_t tok[WSP_TOKEN_LEN]);
/* The tunnel starts: the first ping is one interval away. */
void px_ping_start(px_conn_t *c);
/* The client answered. */
void px_ping_pong(px_conn_t *c);
/* Seconds until the pings need the timer, or `other` when that is sooner
 * (0 = none). */
double px_ping_wait(const px_conn_t *c, double other);
/* From c's timer in TUNNEL: sends a ping that is due, or closes c when its
 * client answered none in time. -1 when c is closing. */
int px_ping_tick(px_conn_t *c);

#endif
