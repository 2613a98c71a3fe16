/* rds: a self-reconnecting Redis connection on hiredis's async API and libev
 * (see rds.h).
 *
 * hiredis 0.14 frees its context by itself after a failed connect and after a
 * disconnect, and it is not safe to free a context from inside its connect or
 * disconnect callbacks. So this module never frees the hiredis context from
 * a hiredis callback: it only forgets it there, a deliberate drop frees it
 * from a timer, and every reconnect is started from a timer. Each command
 * carries a small request record so that rds_free() can answer every pending
 * callback with NULL at once, whatever hiredis does with the context
 * afterwards.
 *
 * Every rds_t is one link of one of three kinds. A plain link connects to its
 * one address. A Sentinel link connects to one Sentinel of a list and moves
 * on to the next whenever that one fails, backing off after a whole round. A
 * master link belongs to the user and owns two Sentinel links: "query" asks
 * SENTINEL get-master-addr-by-name, "watch" is subscribed to +switch-master.
 * A link is usable (and the user told so) only after its handshake: AUTH
 * when there is a password, and for a master link ROLE, which must say
 * "master". */
#include "rds.h"

#include <arpa/inet.h>
#include <fcntl.h>
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
#include "sen.h"

/* Long enough for a loaded LAN, short enough that a black-holed address does
 * not stall reconnection for long. Also bounds the AUTH/ROLE handshake. */
#define RDS_CONNECT_TIMEOUT 2.0
/* Sentinels per link, those learnt from the Sentinels included. */
#define RDS_MAX_ADDRS 16
#define RDS_SWITCH_CH "+switch-master"

enum rds_kind { RDS_PLAIN, RDS_SENTINEL, RDS_MASTER };

enum rds_phase {
    RDS_IDLE,       /* no context: a retry is armed, or an address is awaited */
    RDS_CONNECTING, /* TCP connect in progress */
    RDS_HANDSHAKE,  /* connected, AUTH/ROLE answers outstanding */
    RDS_UP,         /* usable; the user was told */
    RDS_DROPPING,   /* ended on purpose; the context is freed from a timer */
};

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

/* What a master link keeps about the Sentinels. */
struct rds_sn {
    char master[SEN_NAME_MAX];
    rds_t *query; /* SENTINEL get-master-addr-by-name, SENTINEL sentinels */
    rds_t *watch; /* SUBSCRIBE +switch-master */
    int fresh;    /* addrs[0] was just named by a Sentinel and not tried yet */
    int want;     /* the master link waits for an address */
    int verify;   /* compare the Sentinels' answer with the address in use */
    int asking;   /* a query is in flight */
    int rotate;   /* the last answer led nowhere: ask the next Sentinel */
    int nil_logged;
};

struct rds {
    struct ev_loop *loop;
    enum rds_kind kind;
    sen_addr_t addrs[RDS_MAX_ADDRS]; /* a master link: [0], once named */
    size_t naddrs, cur;
    size_t round_fails; /* Sentinel links: failures since an answer was useful */
    char name[SEN_NAME_MAX + 2 * SOCK_ADDRSTRLEN]; /* for log lines */
    char *user, *password;
    redisAsyncContext *ac; /* NULL in RDS_IDLE */
    enum rds_phase phase;
    int hs_left;  /* handshake answers still awaited */
    int drop_now; /* after the drop, try again at once instead of backing off */
    int ever_connected;
    int down_logged; /* the current outage has been logged */
    int quiet;       /* failures at debug level only (the watch link: the
                      * query link reports the same Sentinels) */
    unsigned backoff_min, backoff_max, backoff_cur;
    ev_timer retry;
    ev_timer connect_to;
    ev_timer drop;
    ev_timer defer; /* completes an rds_free() requested from a callback */
    rds_state_cb *on_state;
    void *ud;
    int depth;   /* > 0 while a user callback runs */
    int closing; /* rds_free() was called */
    struct rds_req *reqs;
    struct rds_sn *sn; /* RDS_MASTER only */
};

static void rds_try_connect(rds_t *r);
static void rds_defer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void rds_sn_ask(rds_t *r);
static void rds_sn_on_answer(rds_t *q, redisReply *reply, void *privdata);

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

static void rds_set_name(rds_t *r)
{
    const char *a = r->addrs[r->cur].str;
    if (r->kind == RDS_PLAIN)
        snprintf(r->name, sizeof(r->name), "%s", a);
    else if (r->kind == RDS_SENTINEL)
        snprintf(r->name, sizeof(r->name), "sentinel %s", a);
    else if (r->naddrs == 0)
        snprintf(r->name, sizeof(r->name), "master %s", r->sn->master);
    else
        snprintf(r->name, sizeof(r->name), "master %s (%s)", r->sn->master, a);
}

/* Logs a failure once per outage; later retries only at debug level. */
static void rds_note_failure(rds_t *r, const char *what, const char *why)
{
    if (!r->down_logged && !r->quiet) {
        log_warn("redis %s: %s (%s); %s with backoff up to %u ms", r->name, what,
                 why ? why : "unknown error",
                 r->kind == RDS_SENTINEL ? "trying the next Sentinel"
                 : r->kind == RDS_MASTER ? "asking the Sentinels again"
                                         : "retrying",
                 r->backoff_max);
        r->down_logged = 1;
    } else {
        log_debug("redis %s: %s (%s)", r->name, what, why ? why : "unknown error");
    }
}

static void rds_arm_retry(rds_t *r, double delay)
{
    ev_timer_stop(r->loop, &r->connect_to);
    ev_timer_stop(r->loop, &r->retry);
    ev_timer_set(&r->retry, delay, 0.0);
    ev_timer_start(r->loop, &r->retry);
}

/* The current attempt or connection ended: arms the next one, at once (now)
 * or after the backoff, which doubles each time. A Sentinel link moves on to
 * the next Sentinel and backs off only after a whole round. */
static void rds_next_attempt(rds_t *r, int now)
{
    if (r->closing)
        return;
    if (r->kind == RDS_SENTINEL) {
        r->cur = (r->cur + 1) % r->naddrs;
        rds_set_name(r);
        if (!now && ++r->round_fails < r->naddrs)
            now = 1;
    }
    if (r->kind == RDS_MASTER && !now)
        r->sn->rotate = 1;
    if (now) {
        rds_arm_retry(r, 0.0);
        return;
    }
    r->round_fails = 0;
    rds_arm_retry(r, r->backoff_cur / 1000.0);
    r->backoff_cur = r->backoff_cur > r->backoff_max / 2 ? r->backoff_max : r->backoff_cur * 2;
}

/* Ends the current connection on purpose; the next attempt follows at once
 * (now) or after the backoff. A connected context is freed from a timer,
 * never inside its own callbacks. */
static void rds_drop(rds_t *r, int now)
{
    if (r->closing)
        return;
    if (r->phase == RDS_IDLE) {
        rds_next_attempt(r, now);
        return;
    }
    if (r->phase == RDS_DROPPING) {
        r->drop_now |= now;
        return;
    }
    if (r->phase == RDS_CONNECTING) {
        /* Never connected: no callback of ours runs, nothing is on the stack. */
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        r->phase = RDS_IDLE;
        redisAsyncFree(ac);
        rds_next_attempt(r, now);
        return;
    }
    int was_up = r->phase == RDS_UP;
    r->phase = RDS_DROPPING;
    r->drop_now = now;
    ev_timer_stop(r->loop, &r->connect_to);
    ev_timer_start(r->loop, &r->drop);
    if (was_up)
        rds_notify(r, 0);
}

static void rds_drop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    rds_t *r = w->data;
    /* Runs the remaining callbacks with NULL, then rds_on_disconnect. */
    if (r->ac != NULL && r->phase == RDS_DROPPING)
        redisAsyncFree(r->ac);
}

/* The handshake is complete: the link is usable. */
static void rds_up(rds_t *r)
{
    ev_timer_stop(r->loop, &r->connect_to);
    r->phase = RDS_UP;
    if (r->kind == RDS_SENTINEL) {
        /* A Sentinel link counts as good only once it was useful (see
         * rds_link_good): a round of failures is still one outage. */
        log_debug("redis %s: connected", r->name);
        rds_notify(r, 1);
        return;
    }
    r->backoff_cur = r->backoff_min;
    r->round_fails = 0;
    if (r->down_logged)
        log_info("redis %s: connected again", r->name);
    else if (!r->ever_connected)
        log_info("redis %s: connected", r->name);
    r->down_logged = 0;
    r->ever_connected = 1;
    if (r->sn != NULL) {
        /* The Sentinels served us well: their next failures are news. */
        r->sn->nil_logged = 0;
        r->sn->query->down_logged = 0;
    }
    rds_notify(r, 1);
}

/* A Sentinel link did something useful: its failures start over. The query
 * link's outage ends only when the master it named is up (rds_up), so that
 * a dead Sentinel is not reported again on every round while a failover is
 * pending. */
static void rds_link_good(rds_t *r, int outage_over)
{
    r->round_fails = 0;
    r->backoff_cur = r->backoff_min;
    if (outage_over)
        r->down_logged = 0;
}

static void rds_hs_step(rds_t *r)
{
    if (--r->hs_left == 0)
        rds_up(r);
}

static void rds_on_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
    rds_t *r = privdata;
    redisReply *x = reply;
    if (x == NULL || r->closing || r->phase != RDS_HANDSHAKE)
        return;
    if (x->type == REDIS_REPLY_ERROR) {
        rds_note_failure(r, "AUTH refused", x->str);
        rds_drop(r, 0);
        return;
    }
    rds_hs_step(r);
}

/* A master link writes only to a node that says it is a master. */
static void rds_on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
    rds_t *r = privdata;
    redisReply *x = reply;
    if (x == NULL || r->closing || r->phase != RDS_HANDSHAKE)
        return;
    if (x->type == REDIS_REPLY_ERROR) {
        rds_note_failure(r, "ROLE refused (the ACL user needs +role)", x->str);
        rds_drop(r, 0);
        return;
    }
    const char *role =
        x->type == REDIS_REPLY_ARRAY && x->elements > 0 && x->element[0]->type == REDIS_REPLY_STRING
            ? x->element[0]->str
            : "?";
    if (strcmp(role, "master") != 0) {
        char why[64];
        snprintf(why, sizeof(why), "ROLE says %.32s", role);
        rds_note_failure(r, "not a master", why);
        rds_drop(r, 0);
        return;
    }
    rds_hs_step(r);
}

static void rds_on_connect(const redisAsyncContext *ac, int status)
{
    rds_t *r = ac->data;
    ev_timer_stop(r->loop, &r->connect_to);
    if (status != REDIS_OK) {
        /* hiredis frees ac right after we return. */
        r->ac = NULL;
        r->phase = RDS_IDLE;
        rds_note_failure(r, "cannot connect", ac->errstr);
        rds_next_attempt(r, 0);
        return;
    }
    r->phase = RDS_HANDSHAKE;
    r->hs_left = 1; /* released below, so that no answer completes it early */
    redisAsyncContext *c = r->ac;
    int ok = 1;
    if (r->password != NULL) {
        r->hs_left++;
        ok = (r->user != NULL
                  ? redisAsyncCommand(c, rds_on_auth, r, "AUTH %s %s", r->user, r->password)
                  : redisAsyncCommand(c, rds_on_auth, r, "AUTH %s", r->password)) == REDIS_OK;
    }
    if (ok && r->kind == RDS_MASTER) {
        r->hs_left++;
        ok = redisAsyncCommand(c, rds_on_role, r, "ROLE") == REDIS_OK;
    }
    if (!ok) {
        rds_note_failure(r, "cannot connect", "cannot queue the handshake");
        rds_drop(r, 0);
        return;
    }
    /* The handshake gets the same deadline as the connect. */
    ev_timer_set(&r->connect_to, RDS_CONNECT_TIMEOUT, 0.0);
    ev_timer_start(r->loop, &r->connect_to);
    rds_hs_step(r);
}

/* Called by hiredis as it frees a context that had connected: it has already
 * answered every pending command with NULL. */
static void rds_on_disconnect(const redisAsyncContext *ac, int status)
{
    rds_t *r = ac->data;
    enum rds_phase was = r->phase;
    r->ac = NULL;
    r->phase = RDS_IDLE;
    ev_timer_stop(r->loop, &r->drop);
    rds_drop_reqs(r);
    if (r->closing)
        return;
    if (was == RDS_DROPPING) {
        rds_next_attempt(r, r->drop_now);
        return;
    }
    rds_note_failure(r, "connection lost", status == REDIS_OK ? "closed" : ac->errstr);
    if (was == RDS_UP)
        rds_notify(r, 0);
    rds_next_attempt(r, 0);
}

static void rds_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rds_req *q = privdata;
    rds_t *r = q->r;
    redisReply *x = reply;
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
    /* The master was demoted under us (Sentinel disconnects clients when it
     * reconfigures a node, but a partition can hide that): never keep
     * writing to a replica. */
    if (x != NULL && x->type == REDIS_REPLY_ERROR && r->kind == RDS_MASTER && r->phase == RDS_UP &&
        strncmp(x->str, "READONLY", 8) == 0) {
        rds_note_failure(r, "the master turned replica", x->str);
        rds_drop(r, 0);
    }
}

static void rds_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    rds_t *r = w->data;
    if (r->kind == RDS_MASTER && !r->sn->fresh)
        rds_sn_ask(r);
    else
        rds_try_connect(r);
}

static void rds_connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    rds_t *r = w->data;
    if (r->phase == RDS_HANDSHAKE) {
        rds_note_failure(r, "no answer to AUTH/ROLE", "timed out");
        rds_drop(r, 0);
        return;
    }
    if (r->phase != RDS_CONNECTING)
        return;
    /* Not inside a hiredis callback: this frees at once, and since the
     * context never connected no callback of ours runs. */
    redisAsyncFree(r->ac);
    r->ac = NULL;
    r->phase = RDS_IDLE;
    rds_note_failure(r, "cannot connect", "connect timed out");
    rds_next_attempt(r, 0);
}

/* Starts one connection attempt to addrs[cur]; failures are retried from
 * the timer. */
static void rds_try_connect(rds_t *r)
{
    const sen_addr_t *a = &r->addrs[r->cur];
    if (r->kind == RDS_MASTER)
        r->sn->fresh = 0;
    redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);
    if (ac == NULL) {
        rds_note_failure(r, "cannot connect", "out of memory");
        rds_next_attempt(r, 0);
        return;
    }
    if (ac->err) {
        rds_note_failure(r, "cannot connect", ac->errstr);
        redisAsyncFree(ac);
        rds_next_attempt(r, 0);
        return;
    }
    /* hiredis opens its socket without close-on-exec: mark it before
     * anything of this process can exec (the lb's SIGUSR2 upgrade, the
     * worker's sandboxes), all from this same thread. */
    if (ac->c.fd >= 0)
        (void)fcntl(ac->c.fd, F_SETFD, FD_CLOEXEC);
    ac->data = r;
    /* Attach before setting the connect callback: setting it arms the write
     * watcher that detects the end of the connect. */
    if (redisLibevAttach(r->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        rds_note_failure(r, "cannot connect", "event loop attach failed");
        rds_next_attempt(r, 0);
        return;
    }
    redisAsyncSetConnectCallback(ac, rds_on_connect);
    redisAsyncSetDisconnectCallback(ac, rds_on_disconnect);
    r->ac = ac;
    r->phase = RDS_CONNECTING;
    ev_timer_set(&r->connect_to, RDS_CONNECT_TIMEOUT, 0.0);
    ev_timer_start(r->loop, &r->connect_to);
}

/* ---- the Sentinels ------------------------------------------------------------ */

static void rds_sn_send_query(rds_t *r)
{
    struct rds_sn *sn = r->sn;
    if (sn->asking || !(sn->want || sn->verify) || !rds_connected(sn->query))
        return;
    if (rds_command(sn->query, rds_sn_on_answer, r, "SENTINEL get-master-addr-by-name %s",
                    sn->master) == 0)
        sn->asking = 1;
}

/* The master link needs an address: ask, after moving the query link on to
 * the next Sentinel if the last answer led nowhere. */
static void rds_sn_ask(rds_t *r)
{
    struct rds_sn *sn = r->sn;
    sn->want = 1;
    if (sn->rotate && sn->query->naddrs > 1 && sn->query->phase == RDS_UP) {
        sn->rotate = 0;
        rds_drop(sn->query, 1); /* asks again once it is up */
        return;
    }
    sn->rotate = 0;
    rds_sn_send_query(r);
}

/* A Sentinel named addr as the master (a switch, or an answer that differs
 * from the address in use): go there at once. */
static void rds_sn_switch(rds_t *r, const sen_addr_t *a, const char *who)
{
    struct rds_sn *sn = r->sn;
    if (r->naddrs == 1 && strcmp(a->str, r->addrs[0].str) == 0 &&
        (r->phase == RDS_CONNECTING || r->phase == RDS_HANDSHAKE || r->phase == RDS_UP))
        return; /* there already, or on the way */
    log_info("redis %s: %s names %s as the master; switching", r->name, who, a->str);
    r->addrs[0] = *a;
    r->naddrs = 1;
    r->cur = 0;
    rds_set_name(r);
    sn->fresh = 1;
    sn->want = 0;
    sn->rotate = 0;
    r->backoff_cur = r->backoff_min;
    rds_drop(r, 1);
}

static void rds_sn_learn_cb(rds_t *q, redisReply *reply, void *privdata);

/* The answer to SENTINEL get-master-addr-by-name. */
static void rds_sn_on_answer(rds_t *q, redisReply *reply, void *privdata)
{
    rds_t *r = privdata;
    struct rds_sn *sn = r->sn;
    sn->asking = 0;
    if (reply == NULL || r->closing)
        return; /* the query link asks again once it is back */
    sen_addr_t a;
    const char *why;
    if (sen_master_reply(reply, &a, &why) < 0) {
        if (!sn->nil_logged)
            log_warn("redis %s: no master %s (%s); asking the next Sentinel", q->name, sn->master,
                     why);
        sn->nil_logged = 1;
        rds_drop(q, 0);
        return;
    }
    rds_link_good(q, 0);
    if (sn->want) {
        sn->want = sn->verify = 0;
        r->addrs[0] = a;
        r->naddrs = 1;
        r->cur = 0;
        rds_set_name(r);
        sn->fresh = 1;
        if (r->phase == RDS_IDLE)
            rds_arm_retry(r, 0.0);
    } else if (sn->verify) {
        sn->verify = 0;
        if (r->phase == RDS_UP)
            rds_sn_switch(r, &a, q->name);
    }
    /* Learn the Sentinels this one knows, so that a list that grew since the
     * daemon started is still asked in full. */
    rds_command(q, rds_sn_learn_cb, r, "SENTINEL sentinels %s", sn->master);
}

/* Appends a to a Sentinel link's list; 1 if it was new. */
static int rds_sn_add(rds_t *l, const sen_addr_t *a)
{
    for (size_t i = 0; i < l->naddrs; i++)
        if (strcmp(l->addrs[i].str, a->str) == 0)
            return 0;
    if (l->naddrs == RDS_MAX_ADDRS)
        return 0;
    l->addrs[l->naddrs++] = *a;
    return 1;
}

/* SENTINEL sentinels: the other Sentinels this one knows. */
static void rds_sn_learn_cb(rds_t *q, redisReply *reply, void *privdata)
{
    rds_t *r = privdata;
    sen_addr_t a[RDS_MAX_ADDRS];
    size_t n = reply != NULL && !r->closing ? sen_sentinels_reply(reply, a, RDS_MAX_ADDRS) : 0;
    for (size_t i = 0; i < n; i++)
        if (rds_sn_add(r->sn->query, &a[i]) + rds_sn_add(r->sn->watch, &a[i]) > 0)
            log_info("redis %s: learnt Sentinel %s from %s", r->name, a[i].str, q->name);
}

static void rds_sn_query_state(rds_t *q, int connected, void *ud)
{
    rds_t *r = ud;
    if (connected && !r->closing)
        rds_sn_send_query(r);
}

/* Messages on +switch-master: "<name> <old ip> <old port> <new ip> <new port>". */
static void rds_sn_on_message(rds_t *w, redisReply *reply, void *privdata)
{
    rds_t *r = privdata;
    if (reply == NULL || r->closing || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        rds_link_good(w, 1);
        return;
    }
    redisReply *m = reply->element[2];
    sen_addr_t a;
    if (strcmp(reply->element[0]->str, "message") != 0 || m->type != REDIS_REPLY_STRING)
        return;
    int ours = sen_switch_msg(m->str, r->sn->master, &a);
    if (ours < 0)
        log_warn("redis %s: %s sent an unusable +switch-master: '%.200s'", r->name, w->name,
                 m->str);
    else if (ours > 0)
        rds_sn_switch(r, &a, w->name);
}

/* Every time the watch link is (re)established: subscribe, and, since a
 * switch may have been missed meanwhile, check the master in use. */
static void rds_sn_watch_state(rds_t *w, int connected, void *ud)
{
    rds_t *r = ud;
    if (!connected || r->closing)
        return;
    if (rds_command(w, rds_sn_on_message, r, "SUBSCRIBE %s", RDS_SWITCH_CH) < 0)
        return;
    if (r->phase == RDS_UP) {
        r->sn->verify = 1;
        rds_sn_send_query(r);
    }
}

/* ---- creating and freeing ------------------------------------------------------ */

static rds_t *rds_new(struct ev_loop *loop, enum rds_kind kind, const char *user,
                      const char *password, rds_state_cb *on_state, void *ud)
{
    rds_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->kind = kind;
    r->on_state = on_state;
    r->ud = ud;
    r->backoff_min = r->backoff_cur = 100;
    r->backoff_max = 1000;
    ev_timer_init(&r->retry, rds_retry_cb, 0.0, 0.0);
    ev_timer_init(&r->connect_to, rds_connect_timeout_cb, RDS_CONNECT_TIMEOUT, 0.0);
    ev_timer_init(&r->drop, rds_drop_cb, 0.0, 0.0);
    ev_timer_init(&r->defer, rds_defer_cb, 0.0, 0.0);
    r->retry.data = r->connect_to.data = r->drop.data = r->defer.data = r;
    if ((user != NULL && (r->user = strdup(user)) == NULL) ||
        (password != NULL && (r->password = strdup(password)) == NULL)) {
        free(r->user);
        free(r);
        return NULL;
    }
    return r;
}

/* Frees a link that never started. */
static void rds_discard(rds_t *r)
{
    if (r == NULL)
        return;
    if (r->password != NULL)
        explicit_bzero(r->password, strlen(r->password));
    free(r->password);
    free(r->user);
    free(r->sn);
    free(r);
}

static int rds_check_config(const rds_config_t *c, char *err, size_t errlen)
{
    if (c == NULL || (c->addr == NULL) == (c->sentinels == NULL))
        snprintf(err, errlen, "give either a Redis address or a Sentinel list");
    else if (c->sentinels != NULL && (c->master == NULL || !sen_name_ok(c->master)))
        snprintf(err, errlen, "Sentinels need a master name (1 to %d characters, no blanks)",
                 SEN_NAME_MAX - 1);
    else if ((c->user != NULL && c->password == NULL) ||
             (c->sentinel_user != NULL && c->sentinel_password == NULL))
        snprintf(err, errlen, "an ACL user needs a password");
    else
        return 0;
    return -1;
}

rds_t *rds_create(struct ev_loop *loop, const rds_config_t *cfg, rds_state_cb *on_state, void *ud,
                  char *err, size_t errlen)
{
    char dummy[SOCK_ERR_LEN];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (rds_check_config(cfg, err, errlen) < 0)
        return NULL;
    int sentinel = cfg->sentinels != NULL;
    rds_t *r =
        rds_new(loop, sentinel ? RDS_MASTER : RDS_PLAIN, cfg->user, cfg->password, on_state, ud);
    if (r == NULL)
        goto nomem;
    if (!sentinel) {
        if (sen_addr_parse(&r->addrs[0], cfg->addr, err, errlen) < 0)
            goto fail;
        r->naddrs = 1;
        rds_set_name(r);
        rds_try_connect(r);
        return r;
    }
    if ((r->sn = calloc(1, sizeof(*r->sn))) == NULL)
        goto nomem;
    snprintf(r->sn->master, sizeof(r->sn->master), "%s", cfg->master);
    rds_t *q = rds_new(loop, RDS_SENTINEL, cfg->sentinel_user, cfg->sentinel_password,
                       rds_sn_query_state, r);
    rds_t *w = rds_new(loop, RDS_SENTINEL, cfg->sentinel_user, cfg->sentinel_password,
                       rds_sn_watch_state, r);
    r->sn->query = q;
    r->sn->watch = w;
    if (q == NULL || w == NULL)
        goto nomem;
    w->quiet = 1;
    int n = sen_list_parse(cfg->sentinels, q->addrs, RDS_MAX_ADDRS, err, errlen);
    if (n < 0)
        goto fail;
    memcpy(w->addrs, q->addrs, sizeof(q->addrs));
    q->naddrs = w->naddrs = (size_t)n;
    rds_set_name(q);
    rds_set_name(w);
    rds_set_name(r);
    r->sn->want = 1;
    rds_try_connect(q);
    rds_try_connect(w);
    return r;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    if (r != NULL && r->sn != NULL) {
        rds_discard(r->sn->query);
        rds_discard(r->sn->watch);
    }
    rds_discard(r);
    return NULL;
}

void rds_set_backoff(rds_t *r, unsigned min_ms, unsigned max_ms)
{
    if (min_ms == 0)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    r->backoff_min = r->backoff_cur = min_ms;
    r->backoff_max = max_ms;
    if (r->sn != NULL) {
        rds_set_backoff(r->sn->query, min_ms, max_ms);
        rds_set_backoff(r->sn->watch, min_ms, max_ms);
    }
}

int rds_connected(const rds_t *r)
{
    return r != NULL && r->phase == RDS_UP && !r->closing;
}

/* Final teardown; must not run inside a hiredis or user callback. */
static void rds_destroy(rds_t *r)
{
    ev_timer_stop(r->loop, &r->retry);
    ev_timer_stop(r->loop, &r->connect_to);
    ev_timer_stop(r->loop, &r->drop);
    ev_timer_stop(r->loop, &r->defer);
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        /* Runs the remaining callbacks (already answered, so silent) and,
         * for a connected context, rds_on_disconnect. */
        redisAsyncFree(ac);
    }
    rds_drop_reqs(r);
    rds_discard(r);
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
    if (r->sn != NULL) {
        /* Their callbacks see r->closing and do nothing. */
        rds_free(r->sn->query);
        rds_free(r->sn->watch);
        r->sn->query = r->sn->watch = NULL;
    }
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
