/* wb_conn: client websocket connection for the load generator (see wb_conn.h). */
#include "wb_conn.h"

#include <errno.h>
#include <openssl/err.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "util.h"

#define WB_CLOSE_WAIT_S    2.0
#define WB_MAX_MSG         (64u * 1024 * 1024)
#define WB_READS_PER_EVENT 16

const char *const wb_err_names[WB_E_COUNT] = {
    "ok", "connect", "timeout", "tls", "status", "accept", "eof", "io", "protocol", "abort",
};

uint64_t wb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

SSL_CTX *wb_conn_ssl_ctx(char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "SSL_CTX_new: %s", ERR_reason_error_string(ERR_get_error()));
        return NULL;
    }
    /* A load generator talks to test certificates: no verification. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Partial writes keep the non-blocking write path simple; released
     * buffers keep thousands of idle TLS connections cheap in hold mode. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    return ctx;
}

/* Marks c ended; the io/timer callback tail (or wb_conn_end_now) reports it. */
static void wb_conn_fail(wb_conn_t *c, enum wb_err err, const char *detail)
{
    if (c->dead)
        return;
    c->dead = 1;
    c->err = err;
    snprintf(c->detail, sizeof(c->detail), "%s", detail ? detail : wb_err_names[err]);
}

/* Releases every resource of c; abortive closes send RST so that thousands
 * of failed or aborted cycles do not pile up in TIME_WAIT. */
static void wb_conn_release(wb_conn_t *c, int abortive)
{
    struct ev_loop *loop = c->env->loop;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->tmo);
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        if (abortive) {
            struct linger lg = {1, 0};
            (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(c->fd);
        c->fd = -1;
    }
    buf_free(&c->in);
    buf_free(&c->out);
    ws_msg_free(&c->msg);
    c->state = WB_ST_IDLE;
}

/* Ends a connection marked dead: releases it, then calls on_close as the
 * very last access to c. */
static void wb_conn_finish(wb_conn_t *c)
{
    char detail[sizeof(c->detail)];
    enum wb_err err = c->err;
    int code = c->close_rcvd ? c->peer_code : WS_CLOSE_ABNORMAL;
    memcpy(detail, c->detail, sizeof(detail));
    int quiet = c->quiet;
    wb_conn_release(c, err != WB_OK && err != WB_E_EOF);
    c->dead = 0;
    c->quiet = 0;
    if (!quiet)
        c->ops->on_close(c, err, code, detail);
}

/* Recomputes the watcher's events: a connect waits for writability, every
 * other state reads, and writes are watched only while output is pending
 * (or TLS asked for it). */
static void wb_conn_events(wb_conn_t *c, int tls_want_write)
{
    int ev = EV_READ;
    if (c->state == WB_ST_CONNECTING)
        ev = EV_WRITE;
    else if (buf_size(&c->out) > 0 || tls_want_write)
        ev |= EV_WRITE;
    if ((c->io.events & (EV_READ | EV_WRITE)) == ev && ev_is_active(&c->io))
        return;
    ev_io_stop(c->env->loop, &c->io);
    ev_io_set(&c->io, c->fd, ev);
    ev_io_start(c->env->loop, &c->io);
}

/* Writes pending output. Returns 0 (written or would block; *want_write set
 * when TLS needs writability) or -1 on a fatal error (detail in c->detail). */
static int wb_conn_flush(wb_conn_t *c, int *want_write)
{
    while (buf_size(&c->out) > 0) {
        size_t n = buf_size(&c->out);
        if (c->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, buf_head(&c->out), n > INT32_MAX ? INT32_MAX : (int)n);
            if (r > 0) {
                buf_consume(&c->out, (size_t)r);
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE) {
                *want_write = 1;
                return 0;
            }
            if (e == SSL_ERROR_WANT_READ)
                return 0;
            snprintf(c->detail, sizeof(c->detail), "SSL_write: %s",
                     e == SSL_ERROR_SYSCALL ? strerror(errno)
                                            : ERR_reason_error_string(ERR_peek_error()));
            return -1;
        }
        ssize_t w = send(c->fd, buf_head(&c->out), n, MSG_NOSIGNAL);
        if (w > 0) {
            buf_consume(&c->out, (size_t)w);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        snprintf(c->detail, sizeof(c->detail), "write: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* Flushes from inside a callback: errors end the connection. */
static void wb_conn_flush_cb(wb_conn_t *c, int *want_write)
{
    if (wb_conn_flush(c, want_write) < 0) {
        char d[sizeof(c->detail)];
        memcpy(d, c->detail, sizeof(d));
        wb_conn_fail(c, WB_E_IO, d);
    }
}

/* Queues the upgrade request; the key is kept to check the 101's accept. */
static void wb_conn_send_upgrade(wb_conn_t *c, int *want_write)
{
    ws_make_key(c->key);
    if (buf_printf(&c->out,
                   "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "User-Agent: wsbench/" VERSION "\r\n%s\r\n",
                   c->url->path, c->url->host_hdr, c->key, c->hdr) < 0) {
        wb_conn_fail(c, WB_E_IO, "out of memory");
        return;
    }
    c->state = WB_ST_UPGRADE;
    wb_conn_flush_cb(c, want_write);
}

/* Checks a complete response head; on success the connection is open. */
static void wb_conn_check_101(wb_conn_t *c, const http_head_t *h)
{
    char want[WS_ACCEPT_LEN + 1];
    if (h->status != 101) {
        char d[64];
        snprintf(d, sizeof(d), "HTTP %d instead of 101", h->status);
        wb_conn_fail(c, WB_E_STATUS, d);
        return;
    }
    const http_str_t *acc = http_header_get(h, "Sec-WebSocket-Accept");
    if (!http_header_has_token(h, "Upgrade", "websocket") ||
        !http_header_has_token(h, "Connection", "upgrade")) {
        wb_conn_fail(c, WB_E_ACCEPT, "101 without Upgrade: websocket / Connection: upgrade");
        return;
    }
    if (acc == NULL || ws_accept_key(c->key, strlen(c->key), want) < 0 ||
        !http_str_eq(*acc, want)) {
        wb_conn_fail(c, WB_E_ACCEPT, "101 with a wrong Sec-WebSocket-Accept");
        return;
    }
    c->state = WB_ST_OPEN;
    c->t_open_ns = wb_now_ns();
    ev_timer_stop(c->env->loop, &c->tmo);
    c->ops->on_open(c);
}

/* Handles one complete frame from the server. */
static void wb_conn_frame(wb_conn_t *c, ws_frame_t *f, int *want_write)
{
    switch (f->opcode) {
    case WS_OP_PING:
        if (!c->close_sent) {
            ws_frame_write(&c->out, WS_ROLE_CLIENT, WS_OP_PONG, 1, f->payload,
                           (size_t)f->payload_len);
            wb_conn_flush_cb(c, want_write);
        }
        return;
    case WS_OP_PONG:
        return;
    case WS_OP_CLOSE: {
        uint16_t code = WS_CLOSE_NO_STATUS;
        if (ws_close_parse(f->payload, (size_t)f->payload_len, &code) < 0)
            code = WS_CLOSE_PROTOCOL;
        c->close_rcvd = 1;
        c->peer_code = code;
        if (!c->close_sent) {
            uint16_t echo = code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code;
            ws_close_write(&c->out, WS_ROLE_CLIENT, echo, "");
            c->close_sent = 1;
            wb_conn_flush_cb(c, want_write);
        }
        /* RFC 6455 7.1.1: the server closes TCP first; wait for its EOF so
         * TIME_WAIT lands on the server side, not on our ports. */
        if (c->state != WB_ST_CLOSING) {
            c->state = WB_ST_CLOSING;
            ev_timer_stop(c->env->loop, &c->tmo);
            ev_timer_set(&c->tmo, WB_CLOSE_WAIT_S, 0);
            ev_timer_start(c->env->loop, &c->tmo);
        }
        return;
    }
    default:
        break;
    }
    if (c->close_sent)
        return; /* data after our close frame is discarded */
    if (f->fin && f->opcode != WS_OP_CONT && c->msg.opcode == 0) {
        c->ops->on_message(c, f->opcode, f->payload, (size_t)f->payload_len);
        return;
    }
    int r = ws_msg_feed(&c->msg, f);
    if (r < 0) {
        char d[64];
        snprintf(d, sizeof(d), "bad fragmented message (close %d)", -r);
        wb_conn_fail(c, WB_E_PROTO, d);
        return;
    }
    if (r == WS_MSG_DONE) {
        int op = c->msg.opcode;
        c->ops->on_message(c, op, (const uint8_t *)buf_head(&c->msg.data), buf_size(&c->msg.data));
        ws_msg_reset(&c->msg);
    }
}

/* Parses as much of p[0..len) as is complete; returns bytes consumed. */
static size_t wb_conn_parse(wb_conn_t *c, uint8_t *p, size_t len, int *want_write)
{
    size_t used = 0;
    while (used < len && !c->dead) {
        if (c->state == WB_ST_UPGRADE) {
            http_head_t h;
            int r = http_parse_response((const char *)p + used, len - used, 16384, &h);
            if (r == HTTP_PARSE_AGAIN)
                break;
            if (r < 0) {
                wb_conn_fail(c, WB_E_STATUS, "malformed HTTP response");
                break;
            }
            used += (size_t)r;
            wb_conn_check_101(c, &h);
            continue;
        }
        if (c->state != WB_ST_OPEN && c->state != WB_ST_CLOSING)
            break;
        ws_frame_t f;
        long r = ws_frame_parse(p + used, len - used, WS_ROLE_CLIENT, WB_MAX_MSG, &f);
        if (r == 0)
            break;
        if (r < 0) {
            char d[64];
            snprintf(d, sizeof(d), "invalid frame from server (close %ld)", -r);
            wb_conn_fail(c, WB_E_PROTO, d);
            break;
        }
        used += (size_t)r;
        wb_conn_frame(c, &f, want_write);
    }
    return used;
}

/* Feeds freshly read bytes: parses straight from the scratch buffer when
 * nothing is pending, so steady traffic never copies into c->in. */
static void wb_conn_feed(wb_conn_t *c, uint8_t *p, size_t n, int *want_write)
{
    if (buf_size(&c->in) == 0) {
        size_t used = wb_conn_parse(c, p, n, want_write);
        if (!c->dead && used < n && buf_append(&c->in, p + used, n - used) < 0)
            wb_conn_fail(c, WB_E_IO, "out of memory");
        return;
    }
    if (buf_append(&c->in, p, n) < 0) {
        wb_conn_fail(c, WB_E_IO, "out of memory");
        return;
    }
    size_t used = wb_conn_parse(c, (uint8_t *)buf_head(&c->in), buf_size(&c->in), want_write);
    if (!c->dead)
        buf_consume(&c->in, used);
}

/* Reads until the socket would block, capped per event for fairness. */
static void wb_conn_read(wb_conn_t *c, int *want_write)
{
    uint8_t *p = c->env->scratch;
    for (int i = 0; i < WB_READS_PER_EVENT && !c->dead; i++) {
        ssize_t n;
        if (c->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, p, WB_CONN_SCRATCH);
            if (r > 0) {
                n = r;
            } else {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    return;
                if (e == SSL_ERROR_WANT_WRITE) {
                    *want_write = 1;
                    return;
                }
                if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) {
                    n = 0;
                } else {
                    char d[96];
                    snprintf(d, sizeof(d), "SSL_read: %s",
                             e == SSL_ERROR_SYSCALL ? strerror(errno)
                                                    : ERR_reason_error_string(ERR_peek_error()));
                    wb_conn_fail(c, WB_E_TLS, d);
                    return;
                }
            }
        } else {
            n = recv(c->fd, p, WB_CONN_SCRATCH, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                char d[96];
                snprintf(d, sizeof(d), "read: %s", strerror(errno));
                wb_conn_fail(c, WB_E_IO, d);
                return;
            }
        }
        if (n == 0) {
            if (c->close_rcvd)
                wb_conn_fail(c, WB_OK, NULL);
            else
                wb_conn_fail(c, WB_E_EOF,
                             c->state == WB_ST_OPEN || c->state == WB_ST_CLOSING
                                 ? "server closed without a close frame"
                                 : "server closed during the handshake");
            return;
        }
        wb_conn_feed(c, p, (size_t)n, want_write);
    }
}

/* Drives the TLS handshake one step. */
static void wb_conn_tls(wb_conn_t *c, int *want_write)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        wb_conn_send_upgrade(c, want_write);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return;
    if (e == SSL_ERROR_WANT_WRITE) {
        *want_write = 1;
        return;
    }
    char d[96];
    snprintf(d, sizeof(d), "TLS handshake: %s",
             e == SSL_ERROR_SYSCALL ? (errno ? strerror(errno) : "connection closed")
                                    : ERR_reason_error_string(ERR_peek_error()));
    wb_conn_fail(c, WB_E_TLS, d);
}

static void wb_conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    wb_conn_t *c = container_of(w, wb_conn_t, io);
    int want_write = 0;

    c->in_cb = 1;
    if (c->state == WB_ST_CONNECTING) {
        int e = sock_connect_result(c->fd);
        if (e != 0) {
            wb_conn_fail(c, WB_E_CONNECT, strerror(e));
        } else {
            sock_set_nodelay(c->fd);
            if (c->url->tls) {
                c->ssl = SSL_new(c->env->ssl_ctx);
                if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
                    wb_conn_fail(c, WB_E_TLS, "SSL_new failed");
                } else {
                    SSL_set_connect_state(c->ssl);
                    c->state = WB_ST_TLS;
                    wb_conn_tls(c, &want_write);
                }
            } else {
                wb_conn_send_upgrade(c, &want_write);
            }
        }
    } else if (c->state == WB_ST_TLS) {
        wb_conn_tls(c, &want_write);
    } else {
        if (revents & EV_WRITE)
            wb_conn_flush_cb(c, &want_write);
        if (!c->dead && (revents & EV_READ))
            wb_conn_read(c, &want_write);
        if (!c->dead && buf_size(&c->out) > 0)
            wb_conn_flush_cb(c, &want_write);
    }
    c->in_cb = 0;
    if (c->dead) {
        wb_conn_finish(c);
        return;
    }
    wb_conn_events(c, want_write);
}

static void wb_conn_tmo_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    wb_conn_t *c = container_of(w, wb_conn_t, tmo);
    if (c->close_sent && c->close_rcvd)
        wb_conn_fail(c, WB_OK, NULL); /* both close frames seen: clean enough */
    else
        wb_conn_fail(c, WB_E_TIMEOUT,
                     c->state == WB_ST_CLOSING ? "close handshake timed out"
                                               : "connect/upgrade timed out");
    wb_conn_finish(c);
}

int wb_conn_start(wb_conn_t *c, wb_conn_env_t *env, const wb_url_t *url, const sock_addr_t *src,
                  const wb_conn_ops_t *ops, void *ud, char *err, size_t errlen)
{
    c->env = env;
    c->ops = ops;
    c->ud = ud;
    c->url = url;
    c->ssl = NULL;
    c->state = WB_ST_IDLE;
    c->close_sent = c->close_rcvd = 0;
    c->peer_code = WS_CLOSE_ABNORMAL;
    c->in_cb = c->dead = c->quiet = 0;
    c->err = WB_OK;
    c->in = (buf_t)BUF_INIT;
    c->out = (buf_t)BUF_INIT;
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.max_size = WB_MAX_MSG;
    c->t_start_ns = wb_now_ns();
    c->t_open_ns = 0;
    c->fd = sock_connect(&url->addr, src, err, errlen);
    if (c->fd < 0)
        return -1;
    c->state = WB_ST_CONNECTING;
    ev_io_init(&c->io, wb_conn_io_cb, c->fd, EV_WRITE);
    ev_io_start(env->loop, &c->io);
    ev_timer_init(&c->tmo, wb_conn_tmo_cb, env->hs_timeout, 0);
    ev_timer_start(env->loop, &c->tmo);
    return 0;
}

int wb_conn_send(wb_conn_t *c, int opcode, const void *p, size_t n)
{
    int want_write = 0;
    if (c->state != WB_ST_OPEN || c->dead)
        return -1;
    if (ws_frame_write(&c->out, WS_ROLE_CLIENT, opcode, 1, p, n) < 0)
        return -1;
    if (!c->in_cb && wb_conn_flush(c, &want_write) < 0)
        want_write = 1; /* the io callback meets the error again and reports it */
    if (!c->in_cb)
        wb_conn_events(c, want_write);
    return 0;
}

void wb_conn_close(wb_conn_t *c, uint16_t code)
{
    int want_write = 0;
    if (c->state == WB_ST_IDLE || c->dead || c->state == WB_ST_CLOSING)
        return;
    if (c->state != WB_ST_OPEN) {
        wb_conn_abort(c, 1);
        return;
    }
    ws_close_write(&c->out, WS_ROLE_CLIENT, code, "");
    c->close_sent = 1;
    c->state = WB_ST_CLOSING;
    ev_timer_stop(c->env->loop, &c->tmo);
    ev_timer_set(&c->tmo, WB_CLOSE_WAIT_S, 0);
    ev_timer_start(c->env->loop, &c->tmo);
    if (!c->in_cb) {
        if (wb_conn_flush(c, &want_write) < 0)
            want_write = 1;
        wb_conn_events(c, want_write);
    }
}

void wb_conn_abort(wb_conn_t *c, int notify)
{
    if (c->state == WB_ST_IDLE || c->dead)
        return;
    wb_conn_fail(c, WB_E_ABORT, "aborted");
    c->quiet = !notify;
    if (!c->in_cb)
        wb_conn_finish(c); /* otherwise the callback tail finishes it */
}
