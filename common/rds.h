/* rds: a Redis connection on hiredis's async API, attached to a libev loop,
 * that reconnects by itself with exponential backoff.
 *
 * It talks either to one Redis at a fixed address, or to the master that a
 * set of Sentinels names: it asks them in turn for the master's address,
 * checks with ROLE that the node it reached is a master (never writing to a
 * replica), follows +switch-master announcements on a subscription to one
 * Sentinel, and asks again whenever the connection is lost. With a password
 * it AUTHs (as an ACL user when one is given) before anything else.
 *
 * Commands issued while disconnected fail at once (-1) rather than queueing:
 * callers publish state periodically and simply skip a beat. The state
 * callback fires on every connect and disconnect (a failover is one of
 * each), so a subscriber re-issues its SUBSCRIBE there. A lost connection is
 * logged once, not once per retry; passwords are never logged. */
#ifndef COMMON_RDS_H
#define COMMON_RDS_H

#include <stddef.h>

struct ev_loop;
struct redisReply;

typedef struct rds rds_t;

/* Where Redis is and how to log in: addr, or sentinels + master. rds_create
 * copies what it keeps. */
typedef struct rds_config {
    const char *addr;              /* "HOST:PORT" of the one Redis to use */
    const char *sentinels;         /* or "HOST:PORT[,HOST:PORT...]": Sentinels to ask */
    const char *master;            /* the master's name in the Sentinels' configuration */
    const char *user;              /* ACL user on the Redis nodes; NULL: the default user */
    const char *password;          /* NULL: no AUTH */
    const char *sentinel_user;     /* the same for the Sentinels themselves */
    const char *sentinel_password; /* NULL: the Sentinels need no AUTH */
} rds_config_t;

/* reply is NULL when the connection dropped before the answer came. For a
 * SUBSCRIBE the callback fires for every message. */
typedef void rds_reply_cb(rds_t *r, struct redisReply *reply, void *privdata);
typedef void rds_state_cb(rds_t *r, int connected, void *ud);

/* Starts connecting (or asking the Sentinels) at once. Returns NULL with err
 * on a bad configuration; connection failures are retried, not reported. */
rds_t *rds_create(struct ev_loop *loop, const rds_config_t *cfg, rds_state_cb *on_state, void *ud,
                  char *err, size_t errlen);
/* Stops watchers and frees; pending callbacks are called with reply NULL. */
void rds_free(rds_t *r);
int rds_connected(const rds_t *r);
/* Returns 0, or -1 when not connected. */
int rds_command(rds_t *r, rds_reply_cb *cb, void *privdata, const char *fmt, ...);
int rds_command_argv(rds_t *r, rds_reply_cb *cb, void *privdata, int argc, const char **argv,
                     const size_t *argvlen);
/* Backoff bounds in ms (defaults 100 and 1000), Sentinel links included. */
void rds_set_backoff(rds_t *r, unsigned min_ms, unsigned max_ms);

#endif
