/* hand: handing the listening sockets of a running lb to a new one (a
 * takeover), over a unix SOCK_SEQPACKET control socket with SCM_RIGHTS, in
 * the way HAProxy's `-x` does.
 *
 * The protocol, one message each:
 *   new -> old   "WSLB-TAKEOVER 1\n"               magic and version
 *   old -> new   "WSLB-HAND 1 OK <n>\n"            or "... BUSY\n", "... ERR why\n"
 *   old -> new   up to HAND_CHUNK kind bytes ('p' plain, 't' TLS, 'a' admin)
 *                with as many descriptors, until n are sent
 *   new -> old   "READY\n"                         the new lb accepts now
 * The old lb keeps accepting on its copies until READY, so a new lb that
 * fails on its way (a bad certificate, a crash) costs nothing: the old one
 * sees the connection close and carries on. Anything that does not open
 * with the magic is refused, on both sides, and a second takeover while one
 * is in progress gets BUSY. */
#ifndef LB_HAND_H
#define LB_HAND_H

#include <stddef.h>

struct ev_loop;

#define HAND_MAGIC_REQ  "WSLB-TAKEOVER 1\n"
#define HAND_MAGIC_RESP "WSLB-HAND 1 "
#define HAND_CHUNK      64 /* descriptors per message (the kernel allows 253) */
#define HAND_MAX_FDS    1024
#define HAND_TIMEOUT_S  5.0  /* for each step of a takeover before READY */
#define HAND_READY_S    60.0 /* for the new lb to start accepting */

typedef struct hand hand_t;

typedef struct hand_ops {
    /* The descriptors to pass and their kinds ('p', 't', 'a'), at most cap;
     * returns how many. They stay the caller's. */
    size_t (*fds)(void *ud, int *fds, char *kinds, size_t cap);
    /* The new lb said READY: stop accepting and drain. Called once. */
    void (*done)(void *ud);
} hand_ops_t;

/* Old side: listens on path (a stale socket file there is replaced) on loop.
 * NULL with err. */
hand_t *hand_listen(struct ev_loop *loop, const char *path, const hand_ops_t *ops, void *ud,
                    char *err, size_t errlen);
/* Closes the listener and any takeover in flight. unlink: remove the path
 * too, if it is still this socket's (not after a takeover: the new lb has
 * bound it again). NULL is a no-op. */
void hand_free(hand_t *h, int unlink_path);

/* From now on a takeover is answered "ERR why" (this lb is stopping: its
 * listeners are closed, and their numbers may belong to other sockets).
 * One in flight goes on. why must outlive h. */
void hand_refuse(hand_t *h, const char *why);

/* Whether the listeners were handed over (the new lb said READY). */
int hand_done(const hand_t *h);

/* New side, blocking (before any loop runs): connects to path and receives
 * the descriptors into fds/kinds (HAND_MAX_FDS each). Returns the
 * connection, to be given to hand_ready() or closed, and *n; -1 with err
 * (nothing received is left open). */
int hand_take(const char *path, int *fds, char *kinds, size_t *n, char *err, size_t errlen);
/* New side: tells the old lb that this one accepts, and closes conn. 0, or
 * -1 with err. */
int hand_ready(int conn, char *err, size_t errlen);

#endif
