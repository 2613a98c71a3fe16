/* disc: discovers workers and their load from the Redis schema workers
 * publish (common/fleet.h; README.md, "Redis schema").
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

/* rc says where Redis is (see rds.h); prefix NULL = FLEET_DEFAULT_PREFIX. Connection
 * failures are retried in the background; NULL only for a bad configuration
 * or no memory. The table must outlive the discoverer. */
disc_t *disc_create(struct ev_loop *loop, be_table_t *t, const rds_config_t *rc, const char *prefix,
                    char *err, size_t errlen);
void disc_free(disc_t *d);
/* This lb's id, as sent in X-Lb-Id: workers count connections per lb id so
 * that each lb can tell its own connections from the others' exactly. */
void disc_set_lb_id(disc_t *d, const char *lb_id);
/* Main thread: 1 once a read of Redis has been applied (the worker set is
 * known), 0 before. Stays 1 while Redis is away: the last set is kept. */
int disc_loaded(const disc_t *d);
/* Main thread: 1 while the command connection to Redis (the master) is up. */
int disc_connected(const disc_t *d);

#endif
