/* px_down: what a proxy thread does when a backend goes down (see
 * px_down.h). */
#include "px_down.h"

#include "log.h"

/* Any thread (the be watcher, be.h): every proxy thread looks at its own
 * connections in its own loop. The flag and the async's own fences carry
 * the news; the backend's state itself is read from its word. */
void px_down_watch(void *arg, be_t *b)
{
    px_t *px = arg;
    (void)b;
    for (int i = 0; i < px->nth; i++) {
        px_thread_t *th = &px->th[i];
        if (th->loop != NULL)
            ev_async_send(th->loop, &th->down_wake);
    }
}

/* A tunnel on a dead backend: the client gets the lb's 1014 between two of
 * the worker's frames (it reconnects elsewhere); anything else is closed
 * bare, since a hung worker will never finish the frame it was sending. */
static void px_down_cut(px_conn_t *c)
{
    lbs_inc(&c->th->px->stats->down_closed);
    if (px_ws_at_boundary(c))
        px_ws_close_client(c, 1014, "worker marked down", PX_R_BACKEND_DOWN);
    else
        px_close(c, PX_R_BACKEND_DOWN);
}

/* Walks th's connections: a request still waiting on a backend that takes
 * no new connections goes elsewhere (the retry policy's PX_F_DOWN), and a
 * tunnel whose backend has been DOWN for down_close_ms is ended; the timer
 * comes back for tunnels whose grace has not run out. Not inside any
 * connection's callback, so px_after may free them. */
static void px_down_sweep(px_thread_t *th)
{
    px_t *px = th->px;
    uint64_t grace = px->cfg.down_close_ms, now = be_now_ms(), wait = 0;

    for (px_conn_t *c = th->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->be == NULL)
            continue;
        if (c->phase == PX_CONNECT || c->phase == PX_WAIT) {
            if (be_usable(c->be) && !be_removed(c->be))
                continue;
            /* A draining or removed worker is alive and answers what it was
             * sent: only a GET (a handshake) may go elsewhere, as a request
             * with a body sent again could run twice. */
            if (be_state(c->be) != BE_DOWN && !c->is_get)
                continue;
            (void)px_backend_error(c, PX_F_DOWN, "marked down while the request waited");
        } else if (c->phase == PX_TUNNEL && be_state(c->be) == BE_DOWN) {
            uint64_t since = now - be_down_ms(c->be);
            if (since < grace) {
                if (wait == 0 || grace - since < wait)
                    wait = grace - since;
                continue;
            }
            px_down_cut(c);
        } else {
            continue;
        }
        px_after(c);
    }
    if (wait > 0) {
        ev_timer_stop(th->loop, &th->down_timer);
        ev_timer_set(&th->down_timer, (double)wait / 1000.0 + 0.001, 0);
        ev_timer_start(th->loop, &th->down_timer);
    }
}

static void px_down_wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    px_down_sweep(container_of(w, px_thread_t, down_wake));
}

static void px_down_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    px_down_sweep(container_of(w, px_thread_t, down_timer));
}

void px_down_thread_init(px_thread_t *th)
{
    ev_async_init(&th->down_wake, px_down_wake_cb);
    ev_async_start(th->loop, &th->down_wake);
    ev_init(&th->down_timer, px_down_timer_cb);
}

void px_down_thread_stop(px_thread_t *th)
{
    ev_async_stop(th->loop, &th->down_wake);
    ev_timer_stop(th->loop, &th->down_timer);
}
