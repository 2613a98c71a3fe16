/* px_down: a hung or dead worker costs nobody more than the time it takes
 * to notice it. When a backend stops taking new connections (be.h's
 * watcher: a failed check or connection, the admin API, Redis, removal),
 * every proxy thread is woken (its own ev_async; the watcher runs on
 * whichever thread made the change) and walks its connections:
 *   - a request still waiting on that backend, before any byte of the
 *     answer reached its client, goes to another backend at once
 *     (px_retry_policy, PX_F_DOWN);
 *   - a tunnel on a backend that is DOWN (not merely draining) is ended
 *     after --down-close-ms: 1014 to a websocket client at a frame
 *     boundary, as HAProxy's on-marked-down shutdown-sessions. A backend
 *     that comes back up meanwhile keeps its tunnels.
 * A room of px (px_int.h). */
#ifndef LB_PX_DOWN_H
#define LB_PX_DOWN_H

#include "px_int.h"

/* The be watcher (be_table_set_watch, arg = the px_t): any thread. */
void px_down_watch(void *arg, be_t *b);
/* th's watchers, on th's loop, before it runs / after it ended. */
void px_down_thread_init(px_thread_t *th);
void px_down_thread_stop(px_thread_t *th);

#endif
