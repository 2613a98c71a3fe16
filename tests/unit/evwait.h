/* evwait: runs an event loop until a condition holds or a deadline passes,
 * for unit tests that drive real sockets (health checks, discovery). Header
 * only: each test binary includes it once. */
#ifndef TESTS_UNIT_EVWAIT_H
#define TESTS_UNIT_EVWAIT_H

#include <ev.h>

typedef int (*cond_fn)(void *);

typedef struct waiter {
    ev_timer poll; /* first: the callback casts the watcher back */
    cond_fn cond;
    void *ud;
    int met;
} waiter_t;

static void waiter_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    waiter_t *wt = (waiter_t *)w;
    if (wt->cond(wt->ud)) {
        wt->met = 1;
        ev_break(loop, EVBREAK_ALL);
    }
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until cond holds (checked every 5 ms) or ms pass; returns
 * whether it held. */
static int run_until(struct ev_loop *loop, cond_fn cond, void *ud, unsigned ms)
{
    waiter_t wt = {.cond = cond, .ud = ud};
    ev_timer_init(&wt.poll, waiter_cb, 0.005, 0.005);
    ev_timer_start(loop, &wt.poll);
    ev_timer dl;
    ev_timer_init(&dl, deadline_cb, ms / 1000.0, 0.);
    ev_timer_start(loop, &dl);
    ev_run(loop, 0);
    ev_timer_stop(loop, &wt.poll);
    ev_timer_stop(loop, &dl);
    return wt.met;
}

#endif
