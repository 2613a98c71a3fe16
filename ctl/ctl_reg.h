/* ctl_reg: the worker registry in Redis, read once with hiredis's
 * synchronous API (see README.md, "Redis schema").
 *
 * SMEMBERS <prefix>workers, then one MGET of every <prefix>worker:<id>
 * (common/fleet.h). An
 * id whose state key is gone has left and is not listed; a state that does
 * not parse is listed with its error, so a confused worker shows up instead
 * of vanishing. */
#ifndef CTL_REG_H
#define CTL_REG_H

#include <stddef.h>
#include <stdint.h>

#include "fleet.h"

/* Sizes of what workers publish (ids, addresses, versions), as the lbs
 * show them too. */
#define CTL_ID_MAX   FLEET_WORKER_ID_LEN
#define CTL_ADDR_MAX SOCK_ADDRSTRLEN
#define CTL_VER_MAX  FLEET_VERSION_LEN

/* One registered worker. */
typedef struct ctl_regw {
    char id[CTL_ID_MAX]; /* the member of the workers set */
    fleet_state_t s;     /* its state, when err is "" */
    char err[128];       /* why the state did not parse; "" when it did */
} ctl_regw_t;

typedef struct ctl_reg {
    ctl_regw_t *v;
    size_t n;
} ctl_reg_t;

/* Reads every registered worker from Redis at "HOST:PORT" (prefix NULL =
 * FLEET_DEFAULT_PREFIX), with connect and command timeouts of timeout_s. Returns 0 with
 * the workers in out (ctl_reg_free it), or -1 with err. */
int ctl_reg_read(const char *hostport, const char *prefix, double timeout_s, ctl_reg_t *out,
                 char *err, size_t errlen);
void ctl_reg_free(ctl_reg_t *r);

/* Pure: parses one state JSON into w->s with the lbs' own rules
 * (fleet_state_parse). Returns 0, or -1 with the reason in w->err; w->id
 * is left as the caller set it. */
int ctl_reg_parse(const char *json, size_t len, ctl_regw_t *w);

#endif
