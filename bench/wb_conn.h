/* wb_conn: one client websocket for the load generator, plain or TLS.
 *
 * Life: wb_conn_start() -> TCP connect -> (TLS handshake) -> upgrade request
 * -> verified 101 -> ops->on_open -> messages -> close handshake or error ->
 * ops->on_close, after which the connection holds no fd, watcher or buffer
 * and its struct may be started again or freed by the owner. on_close is the
 * last thing the connection's own callbacks do, so the owner may restart the
 * struct from inside on_close, but must not free it there (free later). */
#ifndef BENCH_WB_CONN_H
#define BENCH_WB_CONN_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "buf.h"
#include "sock.h"
#include "ws.h"
#include "wb_url.h"

typedef struct wb_conn wb_conn_t;

/* Why a connection ended; the owner counts these. */
enum wb_err {
    WB_OK = 0,    /* clean close handshake */
    WB_E_CONNECT, /* connect() failed or refused */
    WB_E_TIMEOUT, /* handshake or close took too long */
    WB_E_TLS,     /* TLS handshake or record error */
    WB_E_STATUS,  /* upgrade answered with something other than 101 */
    WB_E_ACCEPT,  /* 101 without a valid Sec-WebSocket-Accept / Upgrade */
    WB_E_EOF,     /* peer closed TCP without a close frame */
    WB_E_IO,      /* read/write error (e.g. reset) */
    WB_E_PROTO,   /* invalid frame from the server */
    WB_E_ABORT,   /* closed by the owner with wb_conn_abort() */
    WB_E_COUNT
};
extern const char *const wb_err_names[WB_E_COUNT];

typedef struct wb_conn_ops {
    void (*on_open)(wb_conn_t *c);
    /* A complete data message; p is only valid during the call. */
    void (*on_message)(wb_conn_t *c, int opcode, const uint8_t *p, size_t n);
    /* code: the peer's close code (1005 none, 1006 abnormal); detail: a
     * human reason for errors (static or in c->detail). */
    void (*on_close)(wb_conn_t *c, enum wb_err err, int code, const char *detail);
} wb_conn_ops_t;

/* Shared by every connection of one event loop. */
typedef struct wb_conn_env {
    struct ev_loop *loop;
    SSL_CTX *ssl_ctx;  /* NULL unless some URL is wss:// */
    double hs_timeout; /* seconds for connect + TLS + upgrade */
    uint8_t *scratch;  /* read buffer, WB_CONN_SCRATCH bytes */
} wb_conn_env_t;
#define WB_CONN_SCRATCH (64 * 1024)

enum wb_conn_state {
    WB_ST_IDLE = 0,
    WB_ST_CONNECTING,
    WB_ST_TLS,
    WB_ST_UPGRADE,
    WB_ST_OPEN,
    WB_ST_CLOSING, /* our close frame is out (or theirs came in): waiting for EOF */
};

struct wb_conn {
    ev_io io;
    ev_timer tmo; /* handshake / close deadline */
    wb_conn_env_t *env;
    const wb_conn_ops_t *ops;
    void *ud; /* owner's */
    const wb_url_t *url;
    SSL *ssl;
    int fd;
    enum wb_conn_state state;
    int close_sent;
    int close_rcvd;
    int peer_code;
    int in_cb; /* inside our own io callback: defer the end to its tail */
    int dead;  /* ended; on_close pending */
    int quiet; /* ended by wb_conn_abort(c, 0): no on_close */
    enum wb_err err;
    buf_t in;     /* unparsed bytes (head or partial frame) */
    buf_t out;    /* bytes not yet written */
    ws_msg_t msg; /* fragmented message being reassembled */
    char key[25];
    char hdr[160];       /* extra request header lines, each ending CRLF; the owner's, "" = none */
    uint64_t t_start_ns; /* wb_conn_start */
    uint64_t t_open_ns;  /* verified 101 */
    char detail[96];
};

uint64_t wb_now_ns(void);

/* Creates the client SSL_CTX (no verification: load testing only). */
SSL_CTX *wb_conn_ssl_ctx(char *err, size_t errlen);

/* Starts connecting c (zeroed or previously ended) to url from src (NULL:
 * any). Returns 0, or -1 with err filled when the socket could not even be
 * created (on_close is then NOT called). */
int wb_conn_start(wb_conn_t *c, wb_conn_env_t *env, const wb_url_t *url, const sock_addr_t *src,
                  const wb_conn_ops_t *ops, void *ud, char *err, size_t errlen);
/* Queues one frame (OPEN only) and writes what the socket takes now.
 * Returns 0, or -1 when the connection is not open. */
int wb_conn_send(wb_conn_t *c, int opcode, const void *p, size_t n);
/* Starts the close handshake; on_close follows when the server closes. */
void wb_conn_close(wb_conn_t *c, uint16_t code);
/* Ends c at once (RST, no TIME_WAIT); on_close is called with WB_E_ABORT
 * unless the owner passes notify=0. */
void wb_conn_abort(wb_conn_t *c, int notify);
static inline int wb_conn_active(const wb_conn_t *c)
{
    return c->state != WB_ST_IDLE;
}

#endif
