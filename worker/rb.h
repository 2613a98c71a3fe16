/* rb: rebalancing after a scale-out (--rebalance).
 *
 * Websockets live for hours, so a worker that joins a busy fleet gets only
 * the newcomers while the old workers keep theirs. Once a second, each
 * worker reads every worker's published state from Redis (the same states
 * the lbs balance on) and, when the fleet's max/mean of websockets has
 * stayed above --rebalance-threshold for --rebalance-hold-s, closes its own
 * excess over the mean with 1012 (service restart): the client reconnects
 * and the lb sends it to the least-loaded worker.
 *
 * The decision lives in the worker because only the worker knows exactly
 * which of its sockets are idle (no frame either way for
 * --rebalance-idle-s, nothing half-sent, no evaluation queued or running)
 * and it writes whole frames itself, so its close always falls between
 * frames; the fleet view it needs is already in Redis. Each worker sheds
 * only its own excess, so the workers together move the sum of the
 * excesses (what the new worker lacks) and no more. A fleet-wide budget of
 * --rebalance-rate sockets per second is shared through Redis
 * (fleet_key_rebalance): ten workers do not each shed ten times. A
 * reconnected socket is new, so it cannot be shed again before it has been
 * idle for --rebalance-idle-s.
 *
 * The arithmetic (rb_decide) is pure and unit-tested; rb.c's I/O feeds it. */
#ifndef WORKER_RB_H
#define WORKER_RB_H

#include <stddef.h>
#include <stdint.h>

#include "rds.h"
#include "wk.h"

typedef struct rb_config {
    unsigned threshold_milli; /* max/mean that starts it, in thousandths (1200) */
    double hold_s;            /* how long the fleet must stay above it (5) */
    double idle_s;            /* a socket sheddable after this long without a frame (30) */
    unsigned rate;            /* sockets per second, fleet-wide (10) */
} rb_config_t;

/* The fleet as one tick saw it: websockets of each worker that takes new
 * ones (draining workers are left out), this worker's own exact. */
typedef struct rb_view {
    int64_t mine;  /* this worker's websockets now */
    int64_t total; /* all of the fleet's, mine included */
    int64_t max;   /* the most any worker has */
    size_t n;      /* workers counted, this one included */
} rb_view_t;

typedef struct rb_state {
    double above_since; /* when max/mean first went over the threshold; < 0: it is not */
    int active;         /* held long enough: shedding until at the mean */
} rb_state_t;

void rb_state_init(rb_state_t *s);
/* Pure: how many of its websockets this worker should shed now (0 when
 * none), given the fleet view v at time now (seconds). Starts once
 * max/mean has stayed above the threshold for hold_s; then sheds down to
 * ceil(mean) and stops there (the next round needs the threshold and the
 * hold again). */
int64_t rb_decide(rb_state_t *s, const rb_config_t *cfg, const rb_view_t *v, double now);
/* max/mean of v (0 when it has no websockets). */
double rb_ratio(const rb_view_t *v);

struct rb;

/* Registers its metrics in w->met and ticks once a second while rds is
 * connected and w is not draining. rds belongs to the caller (the
 * publisher's connection) and must be freed before rb_free(): its pending
 * callbacks still reach rb. NULL without memory. */
struct rb *rb_create(wk_t *w, rds_t *rds, const rb_config_t *cfg);
void rb_free(struct rb *rb);

#endif
