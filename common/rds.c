/* rds: a self-reconnecting Redis connection on hiredis's async API and libev
 * (see rds.h).
 *
 * hiredis 0.14 frees its context by itself after a failed connect and after a
 * disconnect, and it is not safe to free a context from inside its connect or
 * disconnect callbacks. So this module never frees the hiredis context from
 * a hiredis callback: it only forgets it there, and every reconnect is
 * started from a timer. Each command carries a small request record so that
 * rds_free() can answer every pending callback with NULL at once, whatever
 * hiredis does with the context afterwards. */
#include "rds.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
/* Defines static functions: included in this one file only. */
#include <hiredis/adapters/libev.h>

#include "log.h"
#include "sock.h"

/* Long enough for a loaded LAN, short enough that a black-holed address does
 * not stall reconnection for long. */
#define RDS_CONNECT_TIMEOUT 2.0

struct rds_req {
    struct rds_req *prev, *next;
    rds_t *r;
    rds_reply_cb *cb;
    void *privdata;
    /* A (P)SUBSCRIBE or MONITOR callback: hiredis keeps calling it, possibly
     * from several channel entries, until the connection goes away. */
    int sub;
    /* The user callback got its final call (a reply, or NULL); later calls
     * from hiredis are swallowed. */
    int done;
};

struct rds {
    struct ev_loop *loop;
    char host[SOCK_ADDRSTRLEN];
    int port;
    char name[SOCK_ADDRSTRLEN]; /* "host:port" for log lines */
    redisAsyncContext *ac;      /* NULL between attempts */
    int connected;              /* ac has completed its connect */
    int ever_connected;
    int down_logged; /* the current outage has been logged */
    unsigned backoff_min, backoff_max, backoff_cur;
    ev_timer retry;
    ev_timer connect_to;
    ev_timer defer; /* completes an rds_free() requested from a callback */
    rds_state_cb *on_state;
    void *ud;
    int depth;   /* > 0 while a user callback runs */
    int closing; /* rds_free() was called */
    struct rds_req *reqs;
};

static void rds_try_connect(rds_t *r);
static void rds_defer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void rds_req_unlink(rds_t *r, struct rds_req *q)
{
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        r->reqs = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

/* Gives the user callback its final NULL, unless it had it already. */
static void rds_req_finish(rds_t *r, struct rds_req *q)
{
    if (q->done)
        return;
    q->done = 1;
    if (q->cb != NULL) {
        r->depth++;
        q->cb(r, NULL, q->privdata);
        r->depth--;
    }
}

/* Drops the subscription records left when a context is gone; hiredis has
 * made its last call to them by then. */
static void rds_drop_reqs(rds_t *r)
{
    while (r->reqs != NULL) {
        struct rds_req *q = r->reqs;
        rds_req_finish(r, q);
        rds_req_unlink(r, q);
        free(q);
    }
}

static void rds_notify(rds_t *r, int connected)
{
    if (r->on_state == NULL || r->closing)
        return;
    r->depth++;
    r->on_state(r, connected, r->ud);
    r->depth--;
}

/* Logs a failure once per outage; later retries only at debug level. */
static void rds_note_failure(rds_t *r, const char *what, const char *why)
{
    if (!r->down_logged) {
        log_warn("redis %s: %s (%s); retrying with backoff up to %u ms", r->name, what,
                 why ? why : "unknown error", r->backoff_max);
        r->down_logged = 1;
    } else {
        log_debug("redis %s: %s (%s)", r->name, what, why ? why : "unknown error");
    }
}

/* Arms the retry timer with the current delay and doubles it for next time. */
static void rds_schedule_retry(rds_t *r)
{
    if (r->closing)
        return;
    ev_timer_stop(r->loop, &r->connect_to);
    ev_timer_stop(r->loop, &r->retry);
    ev_timer_set(&r->retry, r->backoff_cur / 1000.0, 0.0);
    ev_timer_start(r->loop, &r->retry);
    r->backoff_cur = r->backoff_cur > r->backoff_max / 2 ? r->backoff_max : r->backoff_cur * 2;
}

static void rds_on_connect(const redisAsyncContext *ac, int status)
{
    rds_t *r = ac->data;
    ev_timer_stop(r->loop, &r->connect_to);
    if (status != REDIS_OK) {
        /* hiredis frees ac right after we return. */
        r->ac = NULL;
        rds_note_failure(r, "cannot connect", ac->errstr);
        rds_schedule_retry(r);
        return;
    }
    r->connected = 1;
    r->backoff_cur = r->backoff_min;
    if (r->down_logged)
        log_info("redis %s: connected again", r->name);
    else if (!r->ever_connected)
        log_info("redis %s: connected", r->name);
    r->down_logged = 0;
    r->ever_connected = 1;
    rds_notify(r, 1);
}

/* Called by hiredis as it frees a context that had connected: it has already
 * answered every pending command with NULL. */
static void rds_on_disconnect(const redisAsyncContext *ac, int status)
{
    rds_t *r = ac->data;
    r->ac = NULL;
    r->connected = 0;
    rds_drop_reqs(r);
    if (r->closing)
        return;
    rds_note_failure(r, "connection lost", status == REDIS_OK ? "closed" : ac->errstr);
    rds_notify(r, 0);
    rds_schedule_retry(r);
}

static void rds_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rds_req *q = privdata;
    rds_t *r = q->r;
    if (!q->done && q->cb != NULL) {
        if (!q->sub || reply == NULL)
            q->done = 1;
        r->depth++;
        q->cb(r, reply, q->privdata);
        r->depth--;
    }
    if (!q->sub) {
        rds_req_unlink(r, q);
        free(q);
    }
}

static void rds_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    rds_t *r = w->data;
    rds_try_connect(r);
}

static void rds_connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    rds_t *r = w->data;
    if (r->ac == NULL || r->connected)
        return;
    /* Not inside a hiredis callback: this frees at once, and since the
     * context never connected no callback of ours runs. */
    redisAsyncFree(r->ac);
    r->ac = NULL;
    rds_note_failure(r, "cannot connect", "connect timed out");
    rds_schedule_retry(r);
}

/* Starts one connection attempt; failures are retried from the timer. */
static void rds_try_connect(rds_t *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (ac == NULL) {
        rds_note_failure(r, "cannot connect", "out of memory");
        rds_schedule_retry(r);
        return;
    }
    if (ac->err) {
        rds_note_failure(r, "cannot connect", ac->errstr);
        redisAsyncFree(ac);
        rds_schedule_retry(r);
        return;
    }
    ac->data = r;
    /* Attach before setting the connect callback: setting it arms the write
     * watcher that detects the end of the connect. */
    if (redisLibevAttach(r->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        rds_note_failure(r, "cannot connect", "event loop attach failed");
        rds_schedule_retry(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, rds_on_connect);
    redisAsyncSetDisconnectCallback(ac, rds_on_disconnect);
    r->ac = ac;
    ev_timer_set(&r->connect_to, RDS_CONNECT_TIMEOUT, 0.0);
    ev_timer_start(r->loop, &r->connect_to);
}

rds_t *rds_create(struct ev_loop *loop, const char *hostport, rds_state_cb *on_state, void *ud,
                  char *err, size_t errlen)
{
    sock_addr_t a;
    if (sock_parse_addr(hostport, &a, err, errlen) < 0)
        return NULL;
    rds_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sock_addr_host(&a, r->host, sizeof(r->host));
    sock_addr_str(&a, r->name, sizeof(r->name));
    r->port = a.ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
    if (r->port == 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "'%s': port 0 is not a Redis port", hostport);
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->on_state = on_state;
    r->ud = ud;
    r->backoff_min = r->backoff_cur = 100;
    r->backoff_max = 5000;
    ev_timer_init(&r->retry, rds_retry_cb, 0.0, 0.0);
    ev_timer_init(&r->connect_to, rds_connect_timeout_cb, RDS_CONNECT_TIMEOUT, 0.0);
    ev_timer_init(&r->defer, rds_defer_cb, 0.0, 0.0);
    r->retry.data = r;
    r->connect_to.data = r;
    r->defer.data = r;
    rds_try_connect(r);
    return r;
}

void rds_set_backoff(rds_t *r, unsigned min_ms, unsigned max_ms)
{
    if (min_ms == 0)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    r->backoff_min = r->backoff_cur = min_ms;
    r->backoff_max = max_ms;
}

int rds_connected(const rds_t *r)
{
    return r != NULL && r->connected && !r->closing;
}

/* Final teardown; must not run inside a hiredis or user callback. */
static void rds_destroy(rds_t *r)
{
    ev_timer_stop(r->loop, &r->retry);
    ev_timer_stop(r->loop, &r->connect_to);
    ev_timer_stop(r->loop, &r->defer);
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        /* Runs the remaining callbacks (already answered, so silent) and,
         * for a connected context, rds_on_disconnect. */
        redisAsyncFree(ac);
    }
    rds_drop_reqs(r);
    free(r);
}

static void rds_defer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    rds_destroy(w->data);
}

void rds_free(rds_t *r)
{
    if (r == NULL || r->closing)
        return;
    r->closing = 1;
    ev_timer_stop(r->loop, &r->retry);
    ev_timer_stop(r->loop, &r->connect_to);
    /* Answer every pending command now, so callers may free their privdata
     * as soon as rds_free() returns. */
    for (struct rds_req *q = r->reqs; q != NULL; q = q->next)
        rds_req_finish(r, q);
    if (r->depth > 0) {
        /* Inside one of our callbacks, possibly with hiredis on the stack:
         * finish from the loop, where nothing of ours is running. */
        ev_timer_start(r->loop, &r->defer);
        return;
    }
    rds_destroy(r);
}

/* Reads the command name out of a formatted RESP command ("*N\r\n$L\r\nNAME"). */
static int rds_cmd_is(const char *cmd, size_t len, const char *name)
{
    const char *p = memchr(cmd, '\n', len);
    if (p == NULL || ++p >= cmd + len || *p != '$')
        return 0;
    const char *nl = memchr(p, '\n', (size_t)(cmd + len - p));
    if (nl == NULL)
        return 0;
    long n = strtol(p + 1, NULL, 10);
    const char *s = nl + 1;
    if (n <= 0 || (size_t)n != strlen(name) || s + n > cmd + len)
        return 0;
    return strncasecmp(s, name, (size_t)n) == 0;
}

/* Queues an already formatted command; takes ownership of nothing. */
static int rds_send(rds_t *r, rds_reply_cb *cb, void *privdata, const char *cmd, size_t len)
{
    if (!rds_connected(r) || r->ac == NULL)
        return -1;
    /* hiredis keeps no callback for (P)UNSUBSCRIBE: its confirmations arrive
     * on the subscription's callback. */
    if (rds_cmd_is(cmd, len, "unsubscribe") || rds_cmd_is(cmd, len, "punsubscribe"))
        return redisAsyncFormattedCommand(r->ac, NULL, NULL, cmd, len) == REDIS_OK ? 0 : -1;
    struct rds_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -1;
    q->r = r;
    q->cb = cb;
    q->privdata = privdata;
    q->sub = rds_cmd_is(cmd, len, "subscribe") || rds_cmd_is(cmd, len, "psubscribe") ||
             rds_cmd_is(cmd, len, "monitor");
    if (redisAsyncFormattedCommand(r->ac, rds_on_reply, q, cmd, len) != REDIS_OK) {
        free(q);
        return -1;
    }
    q->next = r->reqs;
    if (r->reqs != NULL)
        r->reqs->prev = q;
    r->reqs = q;
    return 0;
}

int rds_command(rds_t *r, rds_reply_cb *cb, void *privdata, const char *fmt, ...)
{
    if (!rds_connected(r))
        return -1;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return -1;
    int rc = rds_send(r, cb, privdata, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

int rds_command_argv(rds_t *r, rds_reply_cb *cb, void *privdata, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (!rds_connected(r) || argc <= 0)
        return -1;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return -1;
    int rc = rds_send(r, cb, privdata, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}
