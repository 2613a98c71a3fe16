/* ctl_fleet: the fleet as every lb and the registry see it.
 *
 * One read is a GET /stats on every lb given plus, optionally, one read of
 * the Redis registry. Each source's failure is kept with the source (an
 * unreachable lb, a refused token), so a view of the rest is still there to
 * show. The merge lists every backend id any source knows, in natural order
 * (w2 before w10), with one view per lb. */
#ifndef CTL_FLEET_H
#define CTL_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ctl_http.h"
#include "ctl_reg.h"

/* One backend as one lb sees it (a backend entry of its /stats). */
typedef struct ctl_view {
    int known; /* the lb lists it */
    char addr[CTL_ADDR_MAX];
    char state[16];  /* up|down|draining: what the lb balances on */
    char health[16]; /* the same without the admin drain */
    int admin_drain;
    int64_t active;                      /* this lb's connections to it */
    int64_t conns_global;                /* every lb's, as this lb balances on */
    int64_t evals_running, evals_queued; /* -1: unknown */
    int64_t hb_age_ms;                   /* -1: unknown */
    uint64_t started_ms;                 /* 0: unknown */
    char version[CTL_VER_MAX];
    char source[16];
} ctl_view_t;

typedef struct ctl_lbbe {
    char id[CTL_ID_MAX];
    ctl_view_t v;
} ctl_lbbe_t;

typedef struct ctl_lb {
    const ctl_url_t *url;
    char name[24]; /* lb1, lb2, ... in the order given */
    int ok;        /* its /stats was read */
    char err[400]; /* why not */
    char algo[32];
    long long config_gen; /* the lb's config_generation; 0 = not reported */
    ctl_lbbe_t *bes;
    size_t nbes;
} ctl_lb_t;

typedef struct ctl_be {
    char id[CTL_ID_MAX];
    ctl_view_t *views;     /* one per lb; known = 0 where the lb does not list it */
    const ctl_regw_t *reg; /* its Redis state; NULL when not registered */
} ctl_be_t;

/* Where to look and how. */
typedef struct ctl_conf {
    const ctl_url_t *lbs;
    size_t nlbs;
    const char *token;  /* Authorization: Bearer; NULL: none */
    const char *redis;  /* HOST:PORT; NULL: no registry */
    const char *prefix; /* Redis key prefix */
    double timeout;     /* per request, seconds */
} ctl_conf_t;

typedef struct ctl_fleet {
    ctl_lb_t *lbs;
    size_t nlbs;
    int use_reg, reg_ok;
    char reg_err[300];
    ctl_reg_t reg;
    ctl_be_t *bes;
    size_t nbes;
    uint64_t wall_ms; /* when it was read, for heartbeat ages */
} ctl_fleet_t;

/* Reads every source into f (which needs no init; ctl_fleet_free it). A
 * source that fails leaves its error in lbs[i].err or reg_err. Returns 0,
 * or -1 only when out of memory. */
int ctl_fleet_read(const ctl_conf_t *c, ctl_fleet_t *f);
void ctl_fleet_free(ctl_fleet_t *f);
/* Number of lbs whose /stats could not be read. */
size_t ctl_fleet_lb_errors(const ctl_fleet_t *f);

/* Pure: fills lb->bes and lb->algo from a /stats document. Returns 0, or -1
 * with err. */
int ctl_fleet_parse_stats(const char *json, size_t n, ctl_lb_t *lb, char *err, size_t errlen);
/* Pure: builds f->bes from f->lbs and f->reg. Returns 0 or -1 (memory). */
int ctl_fleet_merge(ctl_fleet_t *f);

ctl_be_t *ctl_fleet_find(const ctl_fleet_t *f, const char *id);
/* A view's state as operators read it: "up", "down", "draining" (the
 * worker drains), "drained" (an admin drain on a healthy backend),
 * "down,drained", "draining,drained", "-" (unknown to that lb). */
const char *ctl_view_state(const ctl_view_t *v, char *buf, size_t len);

/* Derived figures, from the registry when the worker is registered, else
 * from the lbs' views: -1 (or 0 / "") when nobody knows. */
int64_t ctl_be_ws_global(const ctl_fleet_t *f, const ctl_be_t *b);
int64_t ctl_be_evals(const ctl_fleet_t *f, const ctl_be_t *b, int queued);
int64_t ctl_be_hb_age(const ctl_fleet_t *f, const ctl_be_t *b);
uint64_t ctl_be_started(const ctl_fleet_t *f, const ctl_be_t *b);
const char *ctl_be_version(const ctl_fleet_t *f, const ctl_be_t *b);
const char *ctl_be_addr(const ctl_fleet_t *f, const ctl_be_t *b);
/* Sum of `active` over the lbs that know it: its connections from them. */
int64_t ctl_be_active(const ctl_fleet_t *f, const ctl_be_t *b);

/* Pure: appends one line per disagreement ("w2: up on lb2 but down on
 * lb1", "w3: unknown to lb2", "w5: registered in Redis but unknown to every
 * lb") to out, and returns how many. */
int ctl_fleet_warnings(const ctl_fleet_t *f, buf_t *out);
/* The same for one backend. */
int ctl_fleet_be_warnings(const ctl_fleet_t *f, const ctl_be_t *b, buf_t *out);

enum { CTL_POST_OK = 0, CTL_POST_ERR = -1, CTL_POST_UNKNOWN = 1 };
/* POST /backends/<id>/<action> on lb i. Returns CTL_POST_OK, CTL_POST_UNKNOWN
 * (the lb has no such backend) or CTL_POST_ERR with err (unreachable, token
 * refused, any other answer). */
int ctl_fleet_post(const ctl_conf_t *c, size_t i, const char *id, const char *action, char *err,
                   size_t errlen);
/* Pure: the error for an admin answer that is not 2xx, e.g. "401: the admin
 * token was refused (--admin-token-file)". */
void ctl_fleet_http_error(int status, const buf_t *body, int have_token, char *err, size_t errlen);

#endif
