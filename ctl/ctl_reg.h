/* ctl_reg: the worker registry in Redis, read once with hiredis's
 * synchronous API (see README.md, "Redis schema").
 *
 * SMEMBERS <prefix>workers, then one MGET of every <prefix>worker:<id>. An
 * id whose state key is gone has left and is not listed; a state that does
 * not parse is listed with its error, so a confused worker shows up instead
 * of vanishing. */
#ifndef CTL_REG_H
#define CTL_REG_H

#include <stddef.h>
#include <stdint.h>

#define CTL_ID_MAX   128
#define CTL_ADDR_MAX 64
#define CTL_VER_MAX  64

/* One worker's published state. */
typedef struct ctl_regw {
    char id[CTL_ID_MAX];
    char addr[CTL_ADDR_MAX];
    char state[16]; /* "up" or "draining" */
    int64_t conns, evals_running, evals_queued, max_evals;
    uint64_t ts_ms, started_ms; /* 0 when not published */
    char version[CTL_VER_MAX];  /* "" when not published */
    char err[128];              /* why the state did not parse; "" when it did */
} ctl_regw_t;

typedef struct ctl_reg {
    ctl_regw_t *v;
    size_t n;
} ctl_reg_t;

/* Reads every registered worker from Redis at "HOST:PORT" (prefix NULL =
 * "wslb:"), with connect and command timeouts of timeout_s. Returns 0 with
 * the workers in out (ctl_reg_free it), or -1 with err. */
int ctl_reg_read(const char *hostport, const char *prefix, double timeout_s, ctl_reg_t *out,
                 char *err, size_t errlen);
void ctl_reg_free(ctl_reg_t *r);

/* Pure: parses one state JSON into w. Returns 0, or -1 with the reason in
 * w->err (id and what else could be read are kept). */
int ctl_reg_parse(const char *json, size_t len, ctl_regw_t *w);

#endif
