/* wc: the worker's client connections: HTTP requests (healthz, metrics) and
 * websockets (/echo and /eval).
 *
 * A connection starts by reading one request head. Plain requests get an
 * answer and a close. An upgrade on /echo or /eval turns it into a websocket
 * that lives until either side closes it. Buffers are allocated only while
 * bytes are in flight. A connection is never freed inside its own callback:
 * wc_close() moves it to the worker's closed list and the reaper frees it. */
#ifndef WORKER_CONN_H
#define WORKER_CONN_H

#include <ev.h>
#include <stdint.h>

#include "buf.h"
#include "run.h"
#include "sock.h"
#include "wk.h"
#include "ws.h"

/* Output queued beyond this makes evaluations stop reading their programs'
 * output (and echo stop reading input) until the client catches up. */
#define WC_OUT_HIGH (256 * 1024)
#define WC_OUT_LOW  (64 * 1024)
/* Input for a connection's runs that their programs have not read yet (they
 * are queued, building, or do not read): beyond WC_STDIN_HIGH the websocket
 * is not read until it is back under WC_STDIN_LOW, so the client waits
 * instead of the worker buffering without bound. If none of it is consumed
 * for WC_STDIN_STALL seconds the connection is closed with 1008. */
#define WC_STDIN_HIGH  (1024 * 1024)
#define WC_STDIN_LOW   (256 * 1024)
#define WC_STDIN_STALL 10.0

enum wc_state { WC_HEAD = 0, WC_WS, WC_LINGER };
enum wc_kind { WC_HTTP = 0, WC_ECHO, WC_EVAL };

typedef struct wc_conn {
    wk_t *w;
    int fd;
    ev_io rio, wio;
    ev_timer timer; /* head timeout; stdin stall on a websocket; linger when closing */
    buf_t in, out;
    enum wc_state state;
    enum wc_kind kind;
    ws_msg_t msg;
    int close_after_flush; /* send what is queued, then linger and close */
    int closed;            /* on the closed list, waiting to be freed */
    int read_paused;       /* backpressure: output or stdin above its mark */
    int stdin_paused;      /* stdin above WC_STDIN_HIGH, not yet under LOW */
    size_t stdin_pending;  /* bytes in its runs' stdin buffers */
    int lb_slot;           /* w->by_lb entry this websocket counts in, or -1 */
    ev_tstamp last_frame;  /* a websocket's last bytes either way (rebalancing's idleness) */
    run_client_t rc;       /* an /eval websocket's runs (kind WC_EVAL only) */
    char peer[SOCK_ADDRSTRLEN];
    TAILQ_ENTRY(wc_conn) link;
} wc_conn_t;

/* Starts accepting on w->lfd (common/acc.h). 0, or -1 with err (no memory). */
int wc_listen_start(wk_t *w, char *err, size_t errlen);
/* Stops accepting; the listening socket stays open. */
void wc_listen_stop(wk_t *w);
/* Sends a close frame, then closes once it is flushed. */
void wc_send_close(wc_conn_t *c, uint16_t code, const char *reason);
/* Closes now: stops watchers, kills its evaluations, queues it for freeing. */
void wc_close(wc_conn_t *c, const char *why);
/* Sends every websocket a close frame with code and reason. */
void wc_close_all(wk_t *w, uint16_t code, const char *reason);
/* Rebalancing: whether websocket c could be closed now without hurting
 * anyone: no byte either way for idle_s, nothing queued or half-received
 * in either direction, no evaluation of its own queued or running. */
int wc_sheddable(const wc_conn_t *c, ev_tstamp now, double idle_s);
/* Closes up to max sheddable websockets with code and reason (oldest
 * first); returns how many. The close frame is queued whole on an empty
 * output, so it goes out between frames. */
size_t wc_shed(wk_t *w, size_t max, double idle_s, uint16_t code, const char *reason);
/* Frees the connections on the closed list (from the reaper or at exit). */
void wc_reap(wk_t *w);

#endif
