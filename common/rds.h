/* rds: a Redis connection on hiredis's async API, attached to a libev loop,
 * that reconnects by itself with exponential backoff.
 *
 * Commands issued while disconnected fail at once (-1) rather than queueing:
 * callers publish state periodically and simply skip a beat. The state
 * callback fires on every connect and disconnect, so a subscriber re-issues
 * its SUBSCRIBE there. A lost connection is logged once, not once per retry. */
#ifndef COMMON_RDS_H
#define COMMON_RDS_H

#include <stddef.h>

struct ev_loop;
struct redisReply;

typedef struct rds rds_t;

/* reply is NULL when the connection dropped before the answer came. For a
 * SUBSCRIBE the callback fires for every message. */
typedef void rds_reply_cb(rds_t *r, struct redisReply *reply, void *privdata);
typedef void rds_state_cb(rds_t *r, int connected, void *ud);

/* Starts connecting to "HOST:PORT" at once. Returns NULL with err on a bad
 * address; connection failures are retried, not reported here. */
rds_t *rds_create(struct ev_loop *loop, const char *hostport, rds_state_cb *on_state, void *ud,
                  char *err, size_t errlen);
/* Stops watchers and frees; pending callbacks are called with reply NULL. */
void rds_free(rds_t *r);
int rds_connected(const rds_t *r);
/* Returns 0, or -1 when not connected. */
int rds_command(rds_t *r, rds_reply_cb *cb, void *privdata, const char *fmt, ...);
int rds_command_argv(rds_t *r, rds_reply_cb *cb, void *privdata, int argc, const char **argv,
                     const size_t *argvlen);
/* Backoff bounds in ms (defaults 100 and 5000). */
void rds_set_backoff(rds_t *r, unsigned min_ms, unsigned max_ms);

#endif
