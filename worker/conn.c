/* wc: worker connections; see conn.h. */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>

#include "acc.h"
#include "ct.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "pub.h"
#include "run.h"

#define WC_READ_CHUNK      16384
#define WC_READS_PER_EVENT 8
#define WC_HEAD_TIMEOUT    10.0
#define WC_LINGER_TIMEOUT  2.0
#define WC_MAX_HEAD        16384 /* the lb adds headers to heads up to 8 KiB */

static void wc_read_cb(struct ev_loop *loop, ev_io *io, int revents);
static void wc_write_cb(struct ev_loop *loop, ev_io *io, int revents);
static void wc_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

static void wc_reaper_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
    wk_t *w = idle->data;
    wc_reap(w);
    ev_idle_stop(loop, idle);
}

/* Updates the read watcher for backpressure: a websocket stops reading while
 * its output is above the high-water mark, or the input its runs have not
 * consumed is (until it is back under the low-water mark, with a deadline
 * for some of it to be consumed). */
static void wc_update_read(wc_conn_t *c)
{
    if (c->state == WC_WS) {
        if (!c->stdin_paused && c->stdin_pending > WC_STDIN_HIGH) {
            c->stdin_paused = 1;
            /* A repeating timer, so that progress only needs ev_timer_again. */
            ev_timer_set(&c->timer, 0., WC_STDIN_STALL);
            ev_timer_again(c->w->loop, &c->timer);
        } else if (c->stdin_paused && c->stdin_pending <= WC_STDIN_LOW) {
            c->stdin_paused = 0;
            ev_timer_stop(c->w->loop, &c->timer);
        }
    }
    int want =
        !c->closed && !(c->state == WC_WS && (buf_size(&c->out) > WC_OUT_HIGH || c->stdin_paused));
    if (want && !ev_is_active(&c->rio))
        ev_io_start(c->w->loop, &c->rio);
    else if (!want && ev_is_active(&c->rio))
        ev_io_stop(c->w->loop, &c->rio);
    /* Frames read before the pause wait in c->in, and no read event may ever
     * come for them (the client may be waiting for their answer): have the
     * read callback parse them. */
    if (want && c->read_paused && buf_size(&c->in) > 0)
        ev_feed_event(c->w->loop, &c->rio, EV_READ);
    c->read_paused = !want;
}

/* The stdin its runs hold changed by delta bytes (negative when written to
 * a program or dropped): pauses or resumes reading the websocket. */
static void wc_stdin_changed(wc_conn_t *c, long delta)
{
    if (delta < 0 && (size_t)-delta > c->stdin_pending)
        delta = -(long)c->stdin_pending;
    c->stdin_pending += (size_t)delta;
    if (c->closed)
        return;
    /* Input consumed: the stall deadline starts over. */
    if (delta < 0 && c->stdin_paused)
        ev_timer_again(c->w->loop, &c->timer);
    wc_update_read(c);
}

static void wc_start_linger(wc_conn_t *c)
{
    /* Half-close and keep reading (discarding) until the peer closes: a
     * close() with unread input would send a RST that can destroy the close
     * frame or error answer we just wrote. */
    c->state = WC_LINGER;
    shutdown(c->fd, SHUT_WR);
    ev_timer_stop(c->w->loop, &c->timer);
    ev_timer_set(&c->timer, WC_LINGER_TIMEOUT, 0.);
    ev_timer_start(c->w->loop, &c->timer);
    wc_update_read(c);
}

/* Writes as much queued output as the socket takes. Returns -1 when the
 * connection was closed because of an error. */
static int wc_flush(wc_conn_t *c)
{
    while (buf_size(&c->out) > 0) {
        ssize_t n = write(c->fd, buf_head(&c->out), buf_size(&c->out));
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            c->last_frame = ev_now(c->w->loop);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        wc_close(c, "write error");
        return -1;
    }
    if (buf_size(&c->out) > 0) {
        if (!ev_is_active(&c->wio))
            ev_io_start(c->w->loop, &c->wio);
    } else {
        if (ev_is_active(&c->wio))
            ev_io_stop(c->w->loop, &c->wio);
        if (c->close_after_flush && c->state != WC_LINGER) {
            wc_start_linger(c);
            return 0;
        }
    }
    if (c->state == WC_WS) {
        wc_update_read(c);
        if (c->kind == WC_EVAL && buf_size(&c->out) < WC_OUT_LOW)
            run_resume_output(&c->rc);
    }
    return 0;
}

/* Queues one JSON text message (borrowed). Returns -1 if the connection is
 * closing. */
static int wc_send_json(wc_conn_t *c, json_t *j)
{
    if (c->closed || c->close_after_flush)
        return -1;
    char *s = json_dumps(j, JSON_COMPACT);
    if (s == NULL)
        return -1;
    int rc = ws_frame_write(&c->out, WS_ROLE_SERVER, WS_OP_TEXT, 1, s, strlen(s));
    free(s);
    if (rc < 0) {
        wc_close(c, "out of memory");
        return -1;
    }
    return wc_flush(c);
}

void wc_send_close(wc_conn_t *c, uint16_t code, const char *reason)
{
    if (c->closed || c->close_after_flush)
        return;
    ws_close_write(&c->out, WS_ROLE_SERVER, code, reason);
    c->close_after_flush = 1;
    wc_flush(c);
}

static void wc_send_http(wc_conn_t *c, int status, const char *ctype, const char *body, size_t len,
                         const char *extra)
{
    if (http_write_response(&c->out, status, ctype, body, len, extra) < 0) {
        wc_close(c, "out of memory");
        return;
    }
    c->close_after_flush = 1;
    wc_flush(c);
}

static void wc_send_text(wc_conn_t *c, int status, const char *text)
{
    wc_send_http(c, status, "text/plain; charset=utf-8", text, strlen(text), NULL);
}

void wc_close(wc_conn_t *c, const char *why)
{
    if (c->closed)
        return;
    wk_t *w = c->w;
    log_debug("conn %s closed: %s", c->peer, why);
    c->closed = 1;
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->timer);
    if (c->kind == WC_EVAL)
        run_client_gone(&c->rc);
    close(c->fd);
    c->fd = -1;
    TAILQ_REMOVE(&w->conns, c, link);
    TAILQ_INSERT_TAIL(&w->closed, c, link);
    w->nconns--;
    if (c->kind != WC_HTTP) {
        w->nws--;
        wk_lb_release(w, c->lb_slot);
        pub_changed(w->pub);
    }
    ev_idle_start(w->loop, &w->reaper);
    wk_on_run_change(w);
}

void wc_reap(wk_t *w)
{
    wc_conn_t *c;
    while ((c = TAILQ_FIRST(&w->closed)) != NULL) {
        TAILQ_REMOVE(&w->closed, c, link);
        buf_free(&c->in);
        buf_free(&c->out);
        ws_msg_free(&c->msg);
        free(c);
    }
}

void wc_close_all(wk_t *w, uint16_t code, const char *reason)
{
    wc_conn_t *c, *next;
    for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
        next = TAILQ_NEXT(c, link);
        if (c->kind != WC_HTTP && c->state == WC_WS)
            wc_send_close(c, code, reason);
    }
}

int wc_sheddable(const wc_conn_t *c, ev_tstamp now, double idle_s)
{
    if (c->closed || c->close_after_flush || c->state != WC_WS || c->kind == WC_HTTP)
        return 0;
    if (buf_size(&c->in) > 0 || buf_size(&c->out) > 0 || c->msg.opcode != 0)
        return 0;
    if (c->kind == WC_EVAL && c->rc.nruns > 0)
        return 0;
    return now - c->last_frame >= idle_s;
}

size_t wc_shed(wk_t *w, size_t max, double idle_s, uint16_t code, const char *reason)
{
    size_t n = 0;
    ev_tstamp now = ev_now(w->loop);
    wc_conn_t *c, *next;
    for (c = TAILQ_FIRST(&w->conns); c != NULL && n < max; c = next) {
        next = TAILQ_NEXT(c, link);
        if (!wc_sheddable(c, now, idle_s))
            continue;
        wc_send_close(c, code, reason);
        n++;
    }
    return n;
}

static void wc_send_hello(wc_conn_t *c)
{
    wk_t *w = c->w;
    json_t *rts = json_array();
    for (size_t i = 0; i < w->rt.n; i++)
        json_array_append_new(rts, json_string(w->rt.v[i].name));
    json_t *j =
        json_pack("{s:s, s:s, s:o, s:s, s:I, s:I}", "type", "hello", "worker", w->cfg.id,
                  "runtimes", rts, "isolation", sbx_isolation(w->sbx), "max_evals",
                  (json_int_t)w->cfg.max_evals, "slots_broken", (json_int_t)wk_slots_broken(w));
    if (j != NULL) {
        wc_send_json(c, j);
        json_decref(j);
    }
}

/* Compared in constant time, so that the secret cannot be guessed byte by
 * byte from response timing. */
static int wc_secret_ok(const wk_t *w, const http_head_t *h)
{
    size_t n = strlen(w->upstream_secret);
    if (n == 0)
        return 1;
    const http_str_t *v = http_header_get(h, FLEET_HDR_SECRET);
    return v != NULL && ct_eq(w->upstream_secret, n, v->p, v->n);
}

/* The lb this upgrade came through, from X-Lb-Id: counted per lb for the
 * Redis state. An id that is not plain (1-63 of A-Z a-z 0-9 . _ : -) is
 * ignored rather than published. */
static int wc_lb_slot(wk_t *w, const http_head_t *h)
{
    const http_str_t *v = http_header_get(h, FLEET_HDR_LB_ID);
    if (v == NULL || !fleet_id_ok(v->p, v->n))
        return -1;
    return wk_lb_take(w, v->p, v->n);
}

/* How an /eval websocket's runs reach it. */
static int wc_sink_send_json(void *ctx, json_t *j)
{
    return wc_send_json(ctx, j);
}

static int wc_sink_out_full(void *ctx)
{
    return buf_size(&((wc_conn_t *)ctx)->out) > WC_OUT_HIGH;
}

static void wc_sink_stdin_changed(void *ctx, long delta)
{
    wc_stdin_changed(ctx, delta);
}

static const run_sink_t wc_run_sink = {wc_sink_send_json, wc_sink_out_full, wc_sink_stdin_changed};

/* Answers a websocket upgrade or refuses it with a reason. */
static void wc_upgrade(wc_conn_t *c, const http_head_t *h, enum wc_kind kind)
{
    wk_t *w = c->w;
    if (h->method != HTTP_GET)
        return wc_send_text(c, 400, "websocket upgrade requires GET\n");
    if (!h->is_websocket)
        return wc_send_text(c, 400, "websocket upgrade required (Upgrade: websocket)\n");
    const http_str_t *ver = http_header_get(h, "Sec-WebSocket-Version");
    if (ver == NULL || !http_str_eq(*ver, "13"))
        return wc_send_http(c, 426, "text/plain; charset=utf-8",
                            "unsupported Sec-WebSocket-Version (need 13)\n", 44,
                            "Sec-WebSocket-Version: 13\r\n");
    const http_str_t *key = http_header_get(h, "Sec-WebSocket-Key");
    char accept[WS_ACCEPT_LEN + 1];
    if (key == NULL || ws_accept_key(key->p, key->n, accept) < 0)
        return wc_send_text(c, 400, "missing or invalid Sec-WebSocket-Key\n");
    if (!wc_secret_ok(w, h))
        return wc_send_text(c, 403, "forbidden: missing or wrong upstream secret\n");
    if (w->draining)
        return wc_send_text(c, 503, "draining\n");
    if (kind == WC_EVAL && wk_unusable(w))
        return wc_send_text(c, 503, "no usable slot\n");

    buf_printf(&c->out,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
               accept);
    c->state = WC_WS;
    c->kind = kind;
    if (kind == WC_EVAL)
        run_client_init(&c->rc, w, &wc_run_sink, c);
    c->lb_slot = wc_lb_slot(w, h);
    c->last_frame = ev_now(w->loop);
    c->msg.max_size = (uint64_t)w->cfg.max_message_kb * 1024;
    ev_timer_stop(w->loop, &c->timer);
    w->nws++;
    met_inc(w->m_ws_total, 1);
    pub_changed(w->pub);
    wc_send_hello(c);
}

static void wc_handle_request(wc_conn_t *c, const http_head_t *h)
{
    wk_t *w = c->w;
    if (http_str_eq(h->path, "/eval"))
        return wc_upgrade(c, h, WC_EVAL);
    if (http_str_eq(h->path, "/echo"))
        return wc_upgrade(c, h, WC_ECHO);
    if (http_str_eq(h->path, "/healthz")) {
        if (h->method != HTTP_GET && h->method != HTTP_HEAD)
            return wc_send_text(c, 405, "method not allowed\n");
        if (w->draining)
            return wc_send_text(c, 503, "draining\n");
        /* Slots out of service: a worker that can run nothing must not be
         * sent users (503); one that can run less says so. */
        if (wk_unusable(w))
            return wc_send_text(c, 503, "no usable slot\n");
        unsigned broken = wk_slots_broken(w);
        if (broken > 0) {
            char msg[96];
            snprintf(msg, sizeof(msg), "degraded: %u of %ld slots out of service\n", broken,
                     w->cfg.max_evals);
            return wc_send_text(c, 200, msg);
        }
        return wc_send_text(c, 200, "ok\n");
    }
    if (http_str_eq(h->path, "/metrics")) {
        if (h->method != HTTP_GET)
            return wc_send_text(c, 405, "method not allowed\n");
        buf_t b = BUF_INIT;
        met_render(w->met, &b);
        wc_send_http(c, 200, "text/plain; version=0.0.4", buf_head(&b), buf_size(&b), NULL);
        buf_free(&b);
        return;
    }
    wc_send_text(c, 404, "not found\n");
}

static void wc_process_head(wc_conn_t *c)
{
    http_head_t h;
    int rc = http_parse_request(buf_head(&c->in), buf_size(&c->in), WC_MAX_HEAD, &h);
    if (rc == HTTP_PARSE_AGAIN)
        return;
    if (rc == HTTP_PARSE_TOO_LARGE || rc == HTTP_PARSE_TOO_MANY) {
        met_inc(c->w->m_proto_errors, 1);
        return wc_send_text(c, 431, "request header fields too large\n");
    }
    if (rc < 0) {
        met_inc(c->w->m_proto_errors, 1);
        return wc_send_text(c, 400, "malformed request\n");
    }
    wc_handle_request(c, &h);
    /* The head is done with: the parsed pointers into c->in die here. */
    buf_consume(&c->in, (size_t)rc);
    if (c->state != WC_WS)
        buf_reset(&c->in);
}

static void wc_on_message(wc_conn_t *c)
{
    if (c->kind == WC_ECHO) {
        if (ws_frame_write(&c->out, WS_ROLE_SERVER, c->msg.opcode, 1, buf_head(&c->msg.data),
                           buf_size(&c->msg.data)) < 0)
            return wc_close(c, "out of memory");
        wc_flush(c);
        return;
    }
    if (c->msg.opcode != WS_OP_TEXT) {
        json_t *j = json_pack("{s:s, s:n, s:s}", "type", "error", "id", "error",
                              "binary messages are not part of the protocol; send JSON text");
        wc_send_json(c, j);
        json_decref(j);
        return;
    }
    run_handle_message(&c->rc, buf_head(&c->msg.data), buf_size(&c->msg.data));
}

static void wc_on_control(wc_conn_t *c, const ws_frame_t *f)
{
    if (f->opcode == WS_OP_PING) {
        ws_frame_write(&c->out, WS_ROLE_SERVER, WS_OP_PONG, 1, f->payload, f->payload_len);
        wc_flush(c);
    } else if (f->opcode == WS_OP_CLOSE) {
        uint16_t code;
        int rc = ws_close_parse(f->payload, f->payload_len, &code);
        if (rc < 0)
            return wc_send_close(c, (uint16_t)-rc, "invalid close frame");
        /* Echo the peer's code, as RFC 6455 5.5.1 suggests. */
        wc_send_close(c, code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code, "");
    }
}

/* Parses the complete frames in c->in, until backpressure pauses the
 * connection (the rest waits there; wc_update_read resumes it). */
static void wc_process_frames(wc_conn_t *c)
{
    uint64_t max = (uint64_t)c->w->cfg.max_message_kb * 1024;
    while (!c->closed && !c->close_after_flush && !c->read_paused && buf_size(&c->in) > 0) {
        ws_frame_t f;
        long n =
            ws_frame_parse((uint8_t *)buf_head(&c->in), buf_size(&c->in), WS_ROLE_SERVER, max, &f);
        if (n == 0)
            break;
        if (n < 0) {
            met_inc(c->w->m_proto_errors, 1);
            wc_send_close(c, (uint16_t)-n,
                          n == -WS_CLOSE_TOO_BIG ? "message too big" : "protocol error");
            break;
        }
        int rc = ws_msg_feed(&c->msg, &f);
        if (rc == WS_MSG_CONTROL)
            wc_on_control(c, &f);
        buf_consume(&c->in, (size_t)n);
        if (rc < 0) {
            met_inc(c->w->m_proto_errors, 1);
            wc_send_close(c, (uint16_t)-rc,
                          rc == -WS_CLOSE_TOO_BIG ? "message too big" : "invalid message");
            break;
        }
        if (rc == WS_MSG_DONE) {
            wc_on_message(c);
            ws_msg_reset(&c->msg);
        }
    }
}

/* Parses what c->in holds: the request head, then, once it is a websocket,
 * frames, including any that came in the same segment as the head. */
static void wc_process_input(wc_conn_t *c)
{
    if (c->state == WC_HEAD && !c->close_after_flush)
        wc_process_head(c);
    if (c->state == WC_WS)
        wc_process_frames(c);
}

static void wc_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    wc_conn_t *c = io->data;
    /* Bytes already here first (fed after backpressure lifted). */
    if (c->state != WC_LINGER && buf_size(&c->in) > 0)
        wc_process_input(c);
    for (int i = 0; i < WC_READS_PER_EVENT && !c->closed &&
                    (c->state == WC_LINGER || (!c->read_paused && !c->close_after_flush));
         i++) {
        char *p = buf_reserve(&c->in, WC_READ_CHUNK);
        if (p == NULL)
            return wc_close(c, "out of memory");
        ssize_t n = read(c->fd, p, WC_READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return wc_close(c, n == 0 ? "eof" : "read error");
        if (c->state == WC_LINGER) {
            buf_reset(&c->in);
            continue;
        }
        buf_commit(&c->in, (size_t)n);
        c->last_frame = ev_now(loop);
        wc_process_input(c);
        if ((size_t)n < WC_READ_CHUNK)
            break;
    }
    /* Don't keep an empty buffer's memory while the connection idles. */
    if (!c->closed && buf_size(&c->in) == 0)
        buf_free(&c->in);
}

static void wc_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    wc_flush(io->data);
}

static void wc_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    wc_conn_t *c = t->data;
    if (c->state == WC_HEAD && !c->close_after_flush) {
        buf_reset(&c->in);
        return wc_send_text(c, 408, "request timeout\n");
    }
    if (c->state == WC_WS && c->stdin_paused && !c->close_after_flush) {
        /* Backpressure cannot help: the runs hold input they do not read. */
        met_inc(c->w->m_proto_errors, 1);
        return wc_send_close(c, WS_CLOSE_POLICY, "stdin not consumed: runs are not reading input");
    }
    wc_close(c, c->state == WC_LINGER ? "linger done" : "timeout");
}

/* A new connection from the acceptor: reads its head under a deadline. */
static void wc_on_accept(acc_t *a, int fd, const sock_addr_t *peer, void *ud)
{
    wk_t *w = ud;
    wc_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    sock_set_nodelay(fd);
    c->w = w;
    c->fd = fd;
    c->lb_slot = -1;
    sock_addr_str(peer, c->peer, sizeof(c->peer));
    ev_io_init(&c->rio, wc_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, wc_write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, wc_timer_cb, WC_HEAD_TIMEOUT, 0.);
    c->rio.data = c->wio.data = c->timer.data = c;
    TAILQ_INSERT_TAIL(&w->conns, c, link);
    w->nconns++;
    met_inc(w->m_conns_total, 1);
    ev_io_start(w->loop, &c->rio);
    ev_timer_start(w->loop, &c->timer);
}

int wc_listen_start(wk_t *w, char *err, size_t errlen)
{
    acc_config_t ac = {.fd = w->lfd, .on_fd = wc_on_accept, .ud = w};
    w->acc = acc_create(w->loop, &ac, err, errlen);
    if (w->acc == NULL)
        return -1;
    ev_idle_init(&w->reaper, wc_reaper_cb);
    w->reaper.data = w;
    acc_start(w->acc);
    return 0;
}

void wc_listen_stop(wk_t *w)
{
    acc_free(w->acc);
    w->acc = NULL;
}
