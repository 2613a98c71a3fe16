/* acc: accepts connections on a listening socket, for a libev loop.
 *
 * Up to `batch` connections per wakeup, so that a burst cannot hog the
 * loop; each one goes to on_fd, non-blocking and close-on-exec. A client
 * that gave up before it was accepted (ECONNABORTED, EPROTO) or one a
 * firewall refused (EPERM) is skipped.
 *
 * Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), the
 * connection stays queued and the listener stays readable, so accepting
 * again at once would spin: the acceptor logs it, stops watching and looks
 * again backoff_s later. Before that, on EMFILE, an on_emfile hook may turn
 * one client away itself (the lb frees a descriptor it keeps in reserve,
 * accepts, answers 503 and closes), which empties the backlog so that
 * clients learn at once instead of hanging. */
#ifndef COMMON_ACC_H
#define COMMON_ACC_H

#include <stddef.h>

#include <ev.h>

#include "sock.h"

#define ACC_DEFAULT_BATCH   64
#define ACC_DEFAULT_BACKOFF 0.1 /* s */

typedef struct acc acc_t;

typedef struct acc_config {
    int fd;           /* listening and non-blocking; not owned */
    int batch;        /* accepts per wakeup; 0 = ACC_DEFAULT_BATCH */
    double backoff_s; /* the pause when out of descriptors; 0 = ACC_DEFAULT_BACKOFF */
    const char *name; /* prefixes its log lines ("admin: accept: ..."); NULL = none */
    /* A new connection: fd is the callee's from here on. */
    void (*on_fd)(acc_t *a, int fd, const sock_addr_t *peer, void *ud);
    /* accept failed with EMFILE: 0 when the hook dealt with one client itself
     * (accepting goes on), else -1 with errno as its own accept left it
     * (EAGAIN: the backlog is empty, nothing to pause for). NULL = none. */
    int (*on_emfile)(acc_t *a, int lfd, void *ud);
    /* Accepting pauses for errno err; it resumes by itself. NULL = none. */
    void (*on_pause)(acc_t *a, int err, void *ud);
    /* The pause is over, just before accepting again. NULL = none. */
    void (*on_resume)(acc_t *a, void *ud);
    void *ud;
} acc_config_t;

/* Watches cfg->fd on loop once started. NULL with err only when out of
 * memory or without on_fd. */
acc_t *acc_create(struct ev_loop *loop, const acc_config_t *cfg, char *err, size_t errlen);
/* Stops it; the listening descriptor stays open. NULL is a no-op. Not from
 * inside its own callbacks. */
void acc_free(acc_t *a);
/* Starts or stops accepting; stopping also cancels a pending resume, and
 * starting during a pause only ends the pause early. Callbacks may stop it. */
void acc_start(acc_t *a);
void acc_stop(acc_t *a);
/* Whether it is started and not paused, i.e. watching the listener. */
int acc_watching(const acc_t *a);
int acc_fd(const acc_t *a);

#endif
