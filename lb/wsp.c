/* wsp: the lb's pings and the filter of their pongs (see wsp.h). */
#include "wsp.h"

#include <string.h>

#include "ws.h"

void wsp_ping_frame(uint8_t out[WSP_PING_LEN], const uint8_t tok[WSP_TOKEN_LEN])
{
    out[0] = 0x80 | WS_OP_PING;
    out[1] = WSP_TOKEN_LEN;
    memcpy(out + 2, tok, WSP_TOKEN_LEN);
}

/* hdr holds a whole masked pong of WSP_TOKEN_LEN bytes: is it the token? */
static int wsp_is_ours(const wsf_t *t, const uint8_t *tok)
{
    const uint8_t *mask = t->hdr + 2, *pl = t->hdr + 6;
    for (int i = 0; i < WSP_TOKEN_LEN; i++)
        if ((uint8_t)(pl[i] ^ mask[i & 3]) != tok[i])
            return 0;
    return 1;
}

/* Invariants: while t->pend, the bytes in hdr have not been emitted and
 * `run` (the start of the bytes of p still to emit) is right after the last
 * byte consumed; otherwise a header that began in this call (at hstart) is
 * still part of the run. A header that began before this call without pend
 * (wsf_feed was following the stream then) was already passed on, so it
 * can never be withheld. */
int wsp_filter(wsf_t *t, const uint8_t tok[WSP_TOKEN_LEN], const uint8_t *p, size_t n,
               wsp_emit_fn emit, void *ctx)
{
    size_t i = 0, run = 0, hstart = SIZE_MAX;
    int removed = 0;

    while (i < n && !t->lost) {
        if (t->left > 0 && !t->cand) { /* payload: part of the run */
            size_t k = t->left < n - i ? (size_t)t->left : n - i;
            t->left -= k;
            i += k;
            continue;
        }
        if (t->hlen == 0)
            hstart = i;
        t->hdr[t->hlen++] = p[i++];
        if (t->pend)
            run = i;
        if (t->cand) { /* the payload of a pong that may be ours */
            if (--t->left > 0)
                continue;
            int ours = wsp_is_ours(t, tok);
            if (!ours && emit(ctx, t->hdr, t->hlen) < 0)
                return -1;
            removed += ours;
            t->hlen = 0;
            t->cand = t->pend = 0;
            continue;
        }
        if (t->hlen < 2)
            continue;
        if (!(t->hdr[1] & 0x80)) {
            t->lost = 1; /* a client frame is always masked */
            break;
        }
        uint8_t len7 = t->hdr[1] & 0x7f;
        if (t->hlen < wsf_hdr_size(t->hdr, 1))
            continue;
        uint64_t len = wsf_hdr_len(t->hdr);
        int op = t->hdr[0] & 0x0f;
        if (op == WS_OP_CLOSE)
            t->close = 1;
        t->left = len;
        if (op == WS_OP_PONG && len7 == WSP_TOKEN_LEN && (t->pend || hstart != SIZE_MAX)) {
            /* Hold it until its payload says whose it is. */
            if (!t->pend && hstart > run && emit(ctx, p + run, hstart - run) < 0)
                return -1;
            t->cand = t->pend = 1;
            run = i;
            continue;
        }
        if (t->pend) { /* a header that straddled two calls: not a pong of ours */
            if (emit(ctx, t->hdr, t->hlen) < 0)
                return -1;
            t->pend = 0;
            run = i;
        }
        t->hlen = 0;
    }
    if (t->lost && t->pend) { /* no longer followed: what was held goes on first */
        if (emit(ctx, t->hdr, t->hlen) < 0)
            return -1;
        t->pend = t->cand = 0;
    } else if (!t->lost && t->hlen > 0 && !t->pend && hstart != SIZE_MAX) {
        /* A header cut by the end of this call: held until it is whole. */
        if (hstart > run && emit(ctx, p + run, hstart - run) < 0)
            return -1;
        t->pend = 1;
        run = n;
    }
    if (n > run && emit(ctx, p + run, n - run) < 0)
        return -1;
    return removed;
}
