/* px_ping: the lb's pings to websocket clients (see px_ping.h). */
#include "px_ping.h"

#include "ws.h"

/* The loop's clock in deciseconds, modulo 2^16. */
static uint16_t px_ping_now(const px_conn_t *c)
{
    return (uint16_t)(int64_t)(ev_now(c->th->loop) * 10.0);
}

/* Pings go to a websocket whose close has not begun on either side. */
static int px_ping_on(const px_conn_t *c)
{
    return c->th->px->cfg.ping_interval_s > 0 && c->ws && c->phase == PX_TUNNEL && !c->lb_closed &&
           !c->a.rd_eof && !c->b.rd_eof && !c->wsb.close && !c->wsc.close;
}

void px_ping_token(const px_conn_t *c, uint8_t tok[WSP_TOKEN_LEN])
{
    /* Unique per connection among this lb's, unpredictable to nobody in
     * particular: it only has to differ from the worker's ping payloads. */
    uint64_t x = ((uint64_t)c->th->rid_rand << 32 | (uint64_t)(c->th->idx & 0xff) << 24) ^ c->rid ^
                 (uint64_t)(uintptr_t)c;
    x += 0x9e3779b97f4a7c15ull; /* splitmix64's finaliser */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    for (int i = 0; i < WSP_TOKEN_LEN; i++)
        tok[i] = (uint8_t)(x >> (8 * i));
}

void px_ping_start(px_conn_t *c)
{
    c->ping_ds = px_ping_now(c);
    c->ping_out = 0;
}

void px_ping_pong(px_conn_t *c)
{
    c->ping_out = 0;
}

double px_ping_wait(const px_conn_t *c, double other)
{
    if (!px_ping_on(c))
        return other;
    const px_config_t *cfg = &c->th->px->cfg;
    double elapsed = (uint16_t)(px_ping_now(c) - c->ping_ds) / 10.0;
    /* The next ping is due at the interval; with one unanswered, the
     * timer also comes at the interval (a pong may have come meanwhile: the
     * pong does not touch the timer) and at the timeout. */
    double w = cfg->ping_interval_s - elapsed;
    if (c->ping_out) {
        double t = cfg->ping_timeout_s - elapsed;
        if (w < 0.05 || t < w)
            w = t;
    }
    /* Due but the worker is mid-frame: look again shortly. */
    if (w < 0.05)
        w = 0.05;
    return other > 0 && other < w ? other : w;
}

/* No answer in time: the worker hears a 1001 where a frame may start in the
 * client's stream (one non-blocking write, best effort; else only the TCP
 * close), the client only the TCP close: it is gone, or as good as gone. */
static void px_ping_reap(px_conn_t *c)
{
    lbs_inc(&c->th->px->stats->ping_timeouts);
    if (c->b.fd >= 0 && !c->b.wr_shut && wsf_at_boundary(&c->wsc) && px_out(&c->b) != NULL &&
        ws_close_write(c->b.out, WS_ROLE_CLIENT, WS_CLOSE_GOING_AWAY, "client answered no ping") ==
            0)
        (void)px_io_send(&c->b, px_out_head(&c->b), px_out_size(&c->b));
    px_close(c, PX_R_PING_TIMEOUT);
}

int px_ping_tick(px_conn_t *c)
{
    if (!px_ping_on(c))
        return 0;
    const px_config_t *cfg = &c->th->px->cfg;
    uint16_t now = px_ping_now(c);
    unsigned elapsed = (uint16_t)(now - c->ping_ds);
    if (c->ping_out) {
        if (elapsed < cfg->ping_timeout_s * 10u)
            return 0;
        px_ping_reap(c);
        return -1;
    }
    if (elapsed < cfg->ping_interval_s * 10u || !px_ws_at_boundary(c))
        return 0;
    uint8_t tok[WSP_TOKEN_LEN], f[WSP_PING_LEN];
    px_ping_token(c, tok);
    wsp_ping_frame(f, tok);
    /* Sent at once when nothing is queued toward the client, so that the
     * ping is no traffic for the idle timeout (px_flush counts what it
     * writes); else behind what is queued, all of which wsb followed. */
    size_t off = 0;
    if (px_out_size(&c->a) == 0) {
        ssize_t w = px_io_send(&c->a, (const char *)f, sizeof(f));
        off = w > 0 ? (size_t)w : 0;
    }
    if (off < sizeof(f) && px_out_append(&c->a, f + off, sizeof(f) - off) < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return -1;
    }
    c->ping_out = 1;
    c->ping_ds = now;
    lbs_inc(&c->th->px->stats->pings_sent);
    return 0;
}
