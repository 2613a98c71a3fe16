/* wsf: websocket frame boundaries of a relayed stream (see wsf.h). */
#include "wsf.h"

#include "ws.h"

void wsf_feed(wsf_t *t, int masked, const uint8_t *p, size_t n)
{
    while (n > 0 && !t->lost) {
        if (t->left > 0) {
            size_t k = t->left < n ? (size_t)t->left : n;
            t->left -= k;
            p += k;
            n -= k;
            continue;
        }
        t->hdr[t->hlen++] = *p++;
        n--;
        if (t->hlen < 2)
            continue;
        if (((t->hdr[1] & 0x80) != 0) != (masked != 0)) {
            t->lost = 1; /* a server frame is never masked, a client frame always */
            return;
        }
        if (t->hlen < wsf_hdr_size(t->hdr, masked))
            continue;
        uint64_t len = wsf_hdr_len(t->hdr);
        if ((t->hdr[0] & 0x0f) == WS_OP_CLOSE)
            t->close = 1;
        t->left = len;
        t->hlen = 0;
    }
}
