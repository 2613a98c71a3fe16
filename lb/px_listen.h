/* px_listen: the listeners of the proxy threads, accepting, the threads
 * themselves and the lifecycle of a px_t (proxy.h is the public face).
 *
 * Making a listening socket and listening on it are apart: px_create binds
 * one socket per address per thread and hands each to
 * px_listener_attach(), which takes any bound, listening, non-blocking
 * descriptor. Descriptors taken over from another lb process (--takeover)
 * go the same way, without binding anything. */
#ifndef LB_PX_LISTEN_H
#define LB_PX_LISTEN_H

#include <stddef.h>

#include "px_int.h"

/* Makes room for n listeners on th (none attached yet). 0, or -1 without
 * memory. */
int px_listeners_alloc(px_thread_t *th, size_t n);
/* Takes fd (bound, listening, non-blocking; owned once this returns 0) as
 * th's listener i, for TLS clients when tls, and starts accepting on it; -1
 * with err without memory.
 * Precondition: i < th->nls, slot i empty, th's loop not running in
 * another thread. */
int px_listener_attach(px_thread_t *th, size_t i, int fd, int tls, char *err, size_t errlen);

#endif
