/* pub: the worker's state in Redis (see README "Redis schema").
 *
 * Every second, and soon after anything changes, the worker SETs its state
 * JSON with a short expiry and SADDs its id, so a worker that dies silently
 * vanishes within the expiry. join/drain/leave go out on the events channel.
 * Redis being away never blocks the worker: beats are skipped and the
 * connection comes back by itself. */
#ifndef WORKER_PUB_H
#define WORKER_PUB_H

#include "rds.h"
#include "wk.h"

struct pub;

/* rc says where Redis is (see rds.h). NULL pub (no Redis) is accepted by
 * every function below. */
struct pub *pub_create(wk_t *w, const rds_config_t *rc, char *err, size_t errlen);
void pub_free(struct pub *p);
/* The Redis connection it publishes on, for readers of the fleet that share
 * it (worker/rb.h); NULL when p is. */
rds_t *pub_rds(struct pub *p);
/* Something counted changed: publish soon (coalesced). */
void pub_changed(struct pub *p);
void pub_drain(struct pub *p);
/* 1 while the connection to Redis (the master) is up; 0 for a NULL pub. */
int pub_connected(const struct pub *p);
/* Deletes the state, removes the id, announces leave, then calls done(w)
 * (at once when not connected, or after a short timeout). */
void pub_leave(struct pub *p, void (*done)(wk_t *w));

#endif
