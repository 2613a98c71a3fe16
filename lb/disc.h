/* disc: discovers workers and their load from the Redis schema workers
 * publish (see README.md, "Redis schema").
 *
 * On connect, every second and whenever a join/drain/leave event arrives on
 * <prefix>events, it reads SMEMBERS <prefix>workers and MGET of every
 * <prefix>worker:<id>: new ids become BE_DISCOVERED backends (slow start
 * from now), known ones get their published connection count and load, and
 * discovered backends whose key expired are removed (and SREM'd). An id that
 * names a static backend updates that one's counts instead of duplicating
 * it. With Redis down the last known set stays and the lb keeps serving.
 * Runs on the main loop. */
#ifndef LB_DISC_H
#define LB_DISC_H

#include <stddef.h>
#include <stdint.h>

#include "be.h"
#include "rds.h"
#include "sock.h"

struct ev_loop;

typedef struct disc disc_t;

/* One worker's published state, validated. */
typedef struct disc_state {
    char id[128];
    char addr_str[SOCK_ADDRSTRLEN];
    sock_addr_t addr;
    int draining; /* state "draining" (else "up") */
    int64_t conns;
    int64_t load; /* "load", or evals_running + evals_queued when absent */
    uint64_t ts_ms;
    int64_t mine; /* by_lb[lb_id]: this lb's connections on it; -1 if not said */
    /* For operators only (shown on the admin API, never balanced on). */
    int64_t evals_running, evals_queued; /* 0 when not published */
    uint64_t started_ms;                 /* 0 when not published */
    char version[64];                    /* "" when not published */
} disc_state_t;

/* Pure: parses and validates one worker state JSON. Returns 0, or -1 with a
 * reason in err (may be NULL). */
int disc_parse_state(const char *json, size_t len, disc_state_t *out, char *err, size_t errlen);
/* Same, also reading "by_lb" (connections per lb id) for lb_id into out->mine:
 * 0 when the worker lists other lbs but not this one, -1 when it publishes no
 * per-lb counts (older workers) or lb_id is NULL. */
int disc_parse_state_for(const char *json, size_t len, const char *lb_id, disc_state_t *out,
                         char *err, size_t errlen);

/* rc says where Redis is (see rds.h); prefix NULL = FLEET_DEFAULT_PREFIX. Connection
 * failures are retried in the background; NULL only for a bad configuration
 * or no memory. The table must outlive the discoverer. */
disc_t *disc_create(struct ev_loop *loop, be_table_t *t, const rds_config_t *rc, const char *prefix,
                    char *err, size_t errlen);
void disc_free(disc_t *d);
/* This lb's id, as sent in X-Lb-Id: workers count connections per lb id so
 * that each lb can tell its own connections from the others' exactly. */
void disc_set_lb_id(disc_t *d, const char *lb_id);

#endif
