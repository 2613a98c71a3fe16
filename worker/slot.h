/* slot: the worker's sandbox slots and their life.
 *
 *   FREE -> BUSY (a run) -> RESETTING -> FREE
 *   BUSY or RESETTING -> BROKEN -> (back-off, reset) -> FREE
 *
 * A slot is handed to a run only when FREE: its work dir is then fresh (a new
 * tmpfs, or a new directory) and what the last run held, tmpfs pages charged
 * to the slot's cgroup included, is released. After a run the slot is
 * RESETTING while the janitor thread gives it a new work dir: the teardown of
 * the old one costs the kernel time in proportion to what the run left, so it
 * never runs on the event loop.
 *
 * A slot whose work dir, setup or start failed for a reason of the sandbox's
 * (not of the program's) is BROKEN: out of service, logged once, counted, and
 * reset again in the background with back-off (1 s doubling to 30 s) until
 * it works; its first successful run clears the back-off.
 *
 * The janitor is one thread, created after sbx_create so that it shares the
 * worker's private mount namespace; it only calls sbx_workdir_reset and
 * reports to the loop through an ev_async. Everything else runs on the loop.
 */
#ifndef WORKER_SLOT_H
#define WORKER_SLOT_H

#include <ev.h>
#include <stddef.h>

#include "met.h"
#include "sbx.h"

enum slot_state { SLOT_FREE = 0, SLOT_BUSY, SLOT_RESETTING, SLOT_BROKEN, SLOT__STATES };

/* Where a slot failed, for logs and worker_slot_failures_total{stage}. */
enum slot_stage {
    SLOT_STAGE_WRITE = 0,
    SLOT_STAGE_SPAWN,
    SLOT_STAGE_SETUP,
    SLOT_STAGE_RESET,
    SLOT__STAGES
};

typedef struct slot_pool slot_pool_t;

/* Called on the loop after a slot became FREE or stayed BROKEN after a reset,
 * never from inside slot_take, slot_release or slot_fail. */
typedef void (*slot_change_fn)(void *ud);

/* Starts the janitor for the n slots of sbx (all FREE: sbx_create made their
 * work dirs) and registers the slot metrics in met. Call after sbx_create, in
 * the thread that called it. */
slot_pool_t *slot_pool_create(struct ev_loop *loop, sbx_t *sbx, unsigned n, met_registry_t *met,
                              slot_change_fn on_change, void *ud, char *err, size_t errlen);
/* Stops and joins the janitor (a reset under way completes first). Call
 * before sbx_free. slot_pool_free(NULL) is a no-op. */
void slot_pool_free(slot_pool_t *p);

/* The lowest FREE slot, now BUSY, or -1 when none is free. */
int slot_take(slot_pool_t *p);
/* A run is done with its BUSY slot: it gets a fresh work dir, then is FREE. */
void slot_release(slot_pool_t *p, int slot);
/* The BUSY slot failed for a sandbox reason: it is taken out of service. */
void slot_fail(slot_pool_t *p, int slot, enum slot_stage stage, const char *why);

unsigned slot_count(const slot_pool_t *p, enum slot_state st);
unsigned slot_total(const slot_pool_t *p);

#endif
