/* ctl_roll: a rolling restart of workers behind one or more lbs.
 *
 * Batch after batch, each worker is drained on every lb that knows it, its
 * websockets are given --drain-timeout to move, the --exec command restarts
 * it (its output streamed, each line prefixed with the worker's id and the
 * elapsed time), and it is enabled again only once it has re-registered
 * (a new started_ms in Redis or on the lbs), is up on every lb and has run
 * a probe evaluation directly at its address. A failed command or a worker
 * that does not become ready is restarted again up to --retries times; a
 * worker that still fails is left drained and reported, and after
 * --max-failures such workers the rollout stops and leaves the rest alone.
 * Workers already done are never touched again.
 *
 * SIGINT (or SIGTERM) stops after the workers being restarted, enabling
 * again any worker drained but not yet restarted; a second one kills the
 * running commands and leaves their workers drained. */
#ifndef CTL_ROLL_H
#define CTL_ROLL_H

#include <stddef.h>

#include "ctl_fleet.h"
#include "ctl_out.h"
#include "ctl_probe.h"

typedef struct ctl_roll_opts {
    const char *exec; /* /bin/sh -c template with {id}, {host}, {port} */
    long batch, max_failures, retries;
    double drain_timeout, ready_timeout, exec_timeout;
    ctl_probe_opts_t probe; /* addr and expect_id are set per worker */
} ctl_roll_opts_t;

/* Rolls ids[0..nids) in that order, or every backend the lbs know (in
 * natural order) when nids is 0. Prints to out; returns the exit status: 0
 * when every worker was restarted, 1 otherwise (failures, an interruption,
 * a refusal to start, with the reason printed). */
int ctl_roll_run(const ctl_conf_t *c, const ctl_roll_opts_t *o, char *const *ids, size_t nids,
                 ctl_out_t *out);

#endif
