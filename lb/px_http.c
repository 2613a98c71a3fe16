/* px_http: the HTTP a session speaks itself: reading the client's request
 * head, deciding what it is (a route to proxy, a static file, a 404),
 * rewriting it for a backend, and the lb's own answers, each followed by a
 * lingering close (see px_int.h). */
#include "px_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "fwd.h"
#include "sock.h"

/* Starts the lingering close after an lb answer went out. */
static void px_linger(px_conn_t *c)
{
    c->phase = PX_LINGER;
    px_io_ops(&c->a)->shutdown_wr(&c->a);
    c->a.wr_shut = 1;
}

void px_flush_reply(px_conn_t *c)
{
    while (px_out_size(&c->a) > 0) {
        ssize_t w = px_io_send(&c->a, px_out_head(&c->a), px_out_size(&c->a));
        if (w < 0) {
            if (errno == EAGAIN)
                return;
            px_close(c, PX_R_CLIENT_RESET);
            return;
        }
        px_out_consume(&c->a, (size_t)w);
        px_count_out(c, (uint64_t)w);
    }
    px_linger(c);
}

/* Answers the client with status, a small JSON body and extra (header lines
 * ending in CRLF, or NULL), then closes. err is an lbs error kind to count,
 * or -1. */
static void px_reply_ex(px_conn_t *c, int status, int err, enum px_reason r, const char *msg,
                        const char *extra)
{
    px_t *px = c->th->px;
    char body[128];

    if (err >= 0)
        lbs_inc(&px->stats->errors[err]);
    px_hq_del(c);
    px_set_reason(c, r);
    c->status = (uint16_t)status;
    px_close_backend_fd(c);
    px_pre_free(c);
    px_out_free(&c->a);
    if (c->phase == PX_TLS_HS) {
        /* No TLS session yet: nothing HTTP can be said. */
        px_close(c, r);
        return;
    }
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", msg);
    if (px_out(&c->a) == NULL ||
        http_write_response(c->a.out, status, "application/json", body, (size_t)n, extra) < 0) {
        px_close(c, PX_R_NO_MEMORY);
        return;
    }
    c->phase = PX_REPLY;
    px_timer(c, PX_LINGER_S);
    px_flush_reply(c);
}

void px_reply(px_conn_t *c, int status, int err, enum px_reason r, const char *msg)
{
    px_reply_ex(c, status, err, r, msg, NULL);
}

/* 429 for a client over a per-address limit. Sent as soon as the connection
 * can carry HTTP, without waiting for the request: a refused client must cost
 * as little as possible, and the lingering close keeps the answer from being
 * lost to a reset when its request arrives afterwards. */
void px_reply_limited(px_conn_t *c)
{
    char extra[48];
    snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", (unsigned)c->retry_after);
    px_reply_ex(c, 429, LBS_ERR_RATE_LIMITED, PX_R_RATE_LIMITED,
                c->limited == LIM_CONNS ? "too many connections from this address"
                                        : "too many requests from this address",
                extra);
}

#define PX_STATIC_MIN_BPS (16 * 1024) /* a static answer must leave at least this fast */

/* Answers a plain request from the in-memory files when they have it (a
 * file, its 304, a directory's redirect, a 405 or a 400 for an unclean
 * path); returns 0 when they do not, and the request goes on. The answer is
 * rendered into the client's output at once and sent with the lb's own
 * lingering close: no disk, no backend. A client gets PX_LINGER_S plus
 * one second per PX_STATIC_MIN_BPS of the answer to take it, so a slow
 * reader cannot hold a large file's copy for long. */
static int px_static(px_conn_t *c, const http_head_t *h)
{
    px_t *px = c->th->px;
    int status = 0;

    if (px->cfg.st == NULL || h->upgrade)
        return 0;
    /* Rendered aside and handed over whole (px_out_take): a request that
     * is not st's costs no queue, made and dropped again. */
    buf_t out = BUF_INIT;
    int r = st_respond(px->cfg.st, h, time(NULL), &out, &status);
    if (r == ST_PASS) {
        buf_free(&out);
        return 0;
    }
    px_out_free(&c->a);
    if (r < 0 || px_out_take(&c->a, &out) < 0) {
        buf_free(&out);
        px_close(c, PX_R_NO_MEMORY);
        return 1;
    }
    st_count(px->cfg.st, status);
    c->status = (uint16_t)status;
    px_pre_free(c);
    c->phase = PX_REPLY;
    px_timer(c, PX_LINGER_S + (double)px_out_size(&c->a) / PX_STATIC_MIN_BPS);
    px_flush_reply(c);
    return 1;
}

/* Lines fwd_rewrite_head adds to c's request. */
static size_t px_added_lines(const px_conn_t *c, int close)
{
    const px_config_t *cfg = &c->th->px->cfg;
    return FWD_BASE_LINES + (cfg->upstream_secret != NULL) + (cfg->lb_id != NULL) + (close != 0);
}

/* Decides what the public port does with a complete head, in this order:
 * (1) a websocket upgrade on a --route path is proxied; (2) a plain request
 * under a --proxy-http prefix is proxied, one per connection; (3) static
 * files (see the mark below); (4) the lb answers 404. 0 when the request
 * goes to a backend (c->ws_route says how), -1 when c was answered. */
static int px_route(px_conn_t *c, const http_head_t *h)
{
    px_t *px = c->th->px;

    switch (route_decide(px->cfg.routes, h)) {
    case ROUTE_WS:
        c->ws_route = 1;
        break;
    case ROUTE_HTTP:
        /* The lb follows a plain request's body only by its Content-Length:
         * a chunked one could carry a second request past the route check. */
        if (h->chunked) {
            px_reply(c, 411, LBS_ERR_BAD_REQUEST, PX_R_BAD_REQUEST, "length required");
            return -1;
        }
        c->up_capped = 1;
        c->up_left = h->has_content_length ? h->content_length : 0;
        break;
    case ROUTE_NONE:
        /* (3) GET and HEAD of a path that is no route: the static files. */
        if (px_static(c, h))
            return -1;
        px_reply(c, 404, LBS_ERR_NOT_FOUND, PX_R_NOT_FOUND, "not found");
        return -1;
    }
    /* A worker parses at most HTTP_MAX_HEADERS lines: with the lb's own
     * added, a head that would exceed that gets its 431 here, from the lb. */
    if (h->nheaders + px_added_lines(c, !c->ws_route) > HTTP_MAX_HEADERS) {
        px_reply(c, 431, LBS_ERR_HEAD_TOO_LARGE, PX_R_HEAD_TOO_LARGE,
                 "request header fields too large");
        return -1;
    }
    return 0;
}

/* The client's head is complete in hbuf. */
static void px_head_done(px_conn_t *c, const http_head_t *h)
{
    px_thread_t *th = c->th;
    char ip[SOCK_ADDRSTRLEN], rid[PX_REQID_LEN];
    sock_addr_t pa;

    px_hq_del(c);
    snprintf(c->pre->acct.req, sizeof(c->pre->acct.req), "%.*s %.*s", (int)h->method_str.n,
             h->method_str.p, (int)(h->path.n > 200 ? 200 : h->path.n), h->path.p);
    c->is_get = http_str_eq(h->method_str, "GET");
    if (c->shed) {
        px_reply(c, 503, LBS_ERR_OVERLOAD, PX_R_OVERLOAD, "overloaded");
        return;
    }
    c->rid = ++th->rid_seq;
    c->has_rid = 1;
    px_reqid(c, rid);
    if (px_route(c, h) < 0)
        return;
    if (th->px->cfg.aff != NULL && c->ws_route)
        c->pre->aff_has = aff_key(th->px->cfg.aff, h, &c->pre->aff_key);
    buf_t *hb = &c->pre->hbuf;
    if (buf_size(hb) > h->head_len) /* frames sent with the upgrade */
        px_pass(c, 1, buf_head(hb) + h->head_len, buf_size(hb) - h->head_len);
    px_peer_addr(c, &pa);
    if (sock_addr_host(&pa, ip, sizeof(ip)) == NULL)
        snprintf(ip, sizeof(ip), "unknown");
    fwd_t fwd = {.client_ip = ip,
                 .proto = c->tls ? "https" : "http",
                 .request_id = rid,
                 .trusted = c->trusted,
                 .upstream_secret = th->px->cfg.upstream_secret,
                 .lb_id = th->px->cfg.lb_id,
                 .close = !c->ws_route,
                 .body_max = (size_t)c->up_left};
    buf_t nb = BUF_INIT;
    if (fwd_rewrite_head(buf_head(hb), buf_size(hb), h, &fwd, &nb) < 0) {
        buf_free(&nb);
        px_close(c, PX_R_NO_MEMORY);
        return;
    }
    /* What came with the head counts against the body it may carry. */
    if (c->up_capped) {
        size_t extra = buf_size(hb) - h->head_len;
        c->up_left -= extra < c->up_left ? extra : c->up_left;
    }
    buf_free(hb);
    *hb = nb;
    c->retryable = 1;
    px_try_backend(c);
}

void px_read_head(px_conn_t *c)
{
    px_t *px = c->th->px;
    size_t max_head = PX_CFG(px, max_head);
    if (max_head == 0)
        max_head = HTTP_DEFAULT_MAX_HEAD;

    for (;;) {
        /* Read into the thread's scratch buffer and keep only what came:
         * reserving a 4 KiB chunk in hbuf per connection for a head of a
         * few hundred bytes cost a malloc of that size per handshake, and
         * the holes it left between long-lived connections stayed resident
         * (idle memory per websocket). */
        char *p = c->th->scratch;
        ssize_t n = px_io_recv(&c->a, p, PX_HEAD_CHUNK);
        if (n < 0) {
            if (errno != EAGAIN)
                px_close(c, PX_R_CLIENT_RESET);
            return;
        }
        if (n == 0) {
            /* Gone before asking anything: no answer is possible. */
            px_close(c, PX_R_CLIENT_EOF);
            return;
        }
        if (buf_append(&c->pre->hbuf, p, (size_t)n) < 0) {
            px_close(c, PX_R_NO_MEMORY);
            return;
        }
        px_count_in(c, (uint64_t)n);
        lbs_add(&px->stats->bytes_in, (uint64_t)n);

        http_head_t h;
        int r = http_parse_request(buf_head(&c->pre->hbuf), buf_size(&c->pre->hbuf), max_head, &h);
        if (r == HTTP_PARSE_AGAIN)
            continue;
        if (r == HTTP_PARSE_ERROR) {
            px_reply(c, 400, LBS_ERR_BAD_REQUEST, PX_R_BAD_REQUEST, "bad request");
            return;
        }
        if (r == HTTP_PARSE_TOO_LARGE || r == HTTP_PARSE_TOO_MANY) {
            px_reply(c, 431, LBS_ERR_HEAD_TOO_LARGE, PX_R_HEAD_TOO_LARGE,
                     "request header fields too large");
            return;
        }
        px_head_done(c, &h);
        return;
    }
}

void px_linger_read(px_conn_t *c)
{
    char *sc = c->th->scratch;
    for (int i = 0; i < 16; i++) {
        ssize_t n = px_io_recv(&c->a, sc, PX_SCRATCH);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            px_close(c, PX_R_NONE);
            return;
        }
    }
}
