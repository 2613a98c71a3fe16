/* disc: Redis discovery of workers and their published load.
 *
 * Two connections: one for commands and one subscribed to the events
 * channel (a subscribed connection can issue nothing else). A refresh is
 * SMEMBERS of the set followed by one MGET of every state key; at most one
 * runs at a time, and an event arriving meanwhile queues exactly one more.
 *
 * Leave events bump a generation counter. A refresh whose SMEMBERS was
 * sent before the latest leave may describe a worker that has since left,
 * so it updates and removes backends but adds none; the refresh queued by
 * the event adds them a moment later. Joins and drains cannot make a
 * refresh stale that way, and bumping on them would keep every refresh of a
 * join storm (a fleet starting, or re-announcing itself after a Redis
 * failover) from adding anyone until the storm is over.
 *
 * Event-driven refreshes are at most one per DISC_EVENT_MIN_S: every
 * refresh reads every worker's state, and one per event would cost Redis
 * lbs x workers x events during such a storm (bench/README.md, "Fleet
 * scale"). Drains and leaves act on the named backend at once anyway.
 *
 * After a reconnect (Redis restarted empty, or a Sentinel failover to a
 * replica that missed the last writes) the workers need a moment to write
 * their state again: for one state-key lifetime, a backend Redis does not
 * list is kept rather than removed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "disc.h"
#include "fleet.h"
#include "log.h"
#include "rds.h"
#include "util.h"

#define DISC_REFRESH_S 1.0
/* The shortest time between two refreshes that events ask for. */
#define DISC_EVENT_MIN_S 0.2
/* The lifetime of a worker's state key: by then every live worker has
 * written its state to the Redis we reached. */
#define DISC_GRACE_MS FLEET_STATE_TTL_MS

struct disc {
    struct ev_loop *loop;
    be_table_t *t;
    rds_t *cmd; /* SMEMBERS, MGET, SREM */
    rds_t *sub; /* SUBSCRIBE <prefix>events */
    char *prefix, *set_key, *chan;
    ev_timer tick;
    ev_timer sample; /* this lb's counts against the clock, see be.h */
    ev_timer soon;   /* an event's refresh, held back to DISC_EVENT_MIN_S */
    ev_tstamp last;  /* ev_now() of the last refresh sent */
    int inflight;    /* a refresh is running */
    int loaded;      /* a refresh was applied: /healthz stops saying loading */
    int again;       /* run another one when it ends */
    unsigned gen;    /* bumped by every event */
    int down_logged;
    int was_up;           /* the command link was connected before */
    uint64_t grace_until; /* be_now_ms(): keep unlisted backends until then */
    int grace_logged;
    const char *lb_id; /* borrowed; NULL: workers' per-lb counts are not used */
};

/* One MGET in flight: the ids it asked for, in order. */
typedef struct disc_batch {
    disc_t *d;
    unsigned gen;
    size_t n;
    char **ids;
} disc_batch_t;

/* ---- applying a refresh ----------------------------------------------------- */

/* The worker says whether it drains; health checks own UP/DOWN. */
static void disc_set_draining(disc_t *d, be_t *b, int draining)
{
    be_event(d->t, b, draining ? BE_EV_REMOTE_DRAIN : BE_EV_REMOTE_UP,
             draining ? "the worker announced its drain" : "the worker serves again");
}

static void disc_remove(disc_t *d, be_t *b, const char *why)
{
    log_info("backend %s (%s) removed: %s (%s, %lld live connections from this lb)", be_id(b),
             be_addr_str(b), why, be_state_name(be_state(b)), (long long)be_active(b));
    be_remove(d->t, b);
}

static int disc_ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (be_t *const *)a, y = (uintptr_t) * (be_t *const *)b;
    return x < y ? -1 : x > y;
}

/* Whether b is in v (sorted by disc_ptr_cmp): a refresh asks this of every
 * backend, so a scan would make it quadratic in the fleet. */
static int disc_in(be_t *const *v, size_t n, const be_t *b)
{
    return bsearch(&b, v, n, sizeof(*v), disc_ptr_cmp) != NULL;
}

/* Applies one refresh: vals[i] is the MGET answer for ids[i] (NULL or nil =
 * key gone). Main thread. */
static void disc_apply(disc_t *d, char **ids, redisReply **vals, size_t n, int may_add)
{
    be_t **seen = calloc(n ? n : 1, sizeof(*seen));
    size_t nseen = 0;
    if (!seen) {
        log_error("discovery: out of memory");
        return;
    }
    d->loaded = 1;
    be_table_batch(d->t, 1);
    for (size_t i = 0; i < n; i++) {
        redisReply *v = vals ? vals[i] : NULL;
        be_t *b = be_find(d->t, ids[i]);
        if (!v || v->type != REDIS_REPLY_STRING) {
            /* Registration expired: tidy the set so it does not grow forever.
             * A live worker re-adds itself with its next heartbeat. */
            rds_command(d->cmd, NULL, NULL, "SREM %s %s", d->set_key, ids[i]);
            continue;
        }
        fleet_state_t st;
        char err[128];
        int bad = fleet_state_parse(v->str, v->len, d->lb_id, &st, err, sizeof(err)) < 0;
        if (bad || strcmp(st.id, ids[i]) != 0) {
            log_debug("discovery: ignoring state of '%s': %s", ids[i],
                      bad ? err : "id does not match its key");
            if (b) /* keep what we knew */
                seen[nseen++] = b;
            continue;
        }
        if (b && be_source(b) == BE_DISCOVERED && strcmp(be_addr_str(b), st.addr) != 0) {
            disc_remove(d, b, "address changed");
            b = NULL;
        }
        if (!b) {
            if (!may_add)
                continue;
            b = be_add(d->t, st.id, &st.sa, 1, BE_DISCOVERED);
            if (!b) {
                log_error("discovery: cannot add backend %s: out of memory", st.id);
                continue;
            }
            log_info("backend %s (%s) discovered: %s, %lld connections, load %lld", be_id(b),
                     be_addr_str(b), st.draining ? "draining" : "up", (long long)st.conns,
                     (long long)st.load);
        }
        /* Only a newer snapshot may undo a drain: a drain event can arrive
         * before the heartbeat that says so. */
        int fresh = be_update_remote_ex(d->t, b, st.conns, st.load, st.ts_ms, st.mine);
        if (fresh) {
            be_update_info(b, st.evals_running, st.evals_queued, st.started_ms, st.version);
            be_update_rebalance(b, st.rebalance_shed);
        }
        if (st.draining || fresh)
            disc_set_draining(d, b, st.draining);
        seen[nseen++] = b;
    }

    /* Whatever Redis no longer lists has left, unless we just reconnected
     * and it may not have written its state yet. Collect first: removing
     * reshuffles the table. */
    qsort(seen, nseen, sizeof(*seen), disc_ptr_cmp);
    size_t cnt = be_table_count(d->t), ngone = 0, nkept = 0;
    int grace = d->grace_until != 0 && be_now_ms() < d->grace_until;
    be_t **gone = calloc(cnt ? cnt : 1, sizeof(*gone));
    if (gone) {
        for (size_t i = 0; i < cnt; i++) {
            be_t *b = be_table_at(d->t, i);
            if (disc_in(seen, nseen, b))
                continue;
            if (be_source(b) == BE_DISCOVERED && grace)
                nkept++;
            else if (be_source(b) == BE_DISCOVERED)
                gone[ngone++] = b;
            else if (!grace && be_has_remote(b))
                be_clear_remote(d->t, b); /* static: back to local counts */
        }
        for (size_t i = 0; i < ngone; i++)
            disc_remove(d, gone[i], "registration gone from Redis");
    }
    if (nkept > 0 && !d->grace_logged) {
        d->grace_logged = 1;
        log_info("discovery: Redis does not list %zu known backend(s) since the reconnect; "
                 "keeping them for up to %d ms while workers write their state again",
                 nkept, DISC_GRACE_MS);
    }
    free(gone);
    free(seen);
    be_table_batch(d->t, 0);
}

/* ---- Redis plumbing --------------------------------------------------------- */

static void disc_refresh(disc_t *d);

int disc_loaded(const disc_t *d)
{
    return d->loaded;
}

int disc_connected(const disc_t *d)
{
    return rds_connected(d->cmd);
}

static void disc_batch_free(disc_batch_t *bt)
{
    for (size_t i = 0; i < bt->n; i++)
        free(bt->ids[i]);
    free(bt->ids);
    free(bt);
}

static void disc_refresh_done(disc_t *d)
{
    d->inflight = 0;
    if (d->again) {
        d->again = 0;
        disc_refresh(d);
    }
}

static void disc_on_values(rds_t *r, redisReply *reply, void *privdata)
{
    disc_batch_t *bt = privdata;
    disc_t *d = bt->d;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == bt->n)
        disc_apply(d, bt->ids, reply->element, bt->n, bt->gen == d->gen);
    else if (reply)
        log_warn("discovery: unexpected MGET reply (type %d)", reply->type);
    disc_batch_free(bt);
    if (reply) /* NULL: connection gone or shutting down; the tick retries */
        disc_refresh_done(d);
    else
        d->inflight = 0;
}

static void disc_on_members(rds_t *r, redisReply *reply, void *privdata)
{
    disc_t *d = privdata;
    if (!reply) {
        d->inflight = 0;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        log_warn("discovery: unexpected SMEMBERS reply (type %d)", reply->type);
        disc_refresh_done(d);
        return;
    }
    size_t n = reply->elements;
    if (n == 0) {
        disc_apply(d, NULL, NULL, 0, 1);
        disc_refresh_done(d);
        return;
    }
    disc_batch_t *bt = calloc(1, sizeof(*bt));
    const char **argv = calloc(n + 1, sizeof(*argv));
    size_t *argl = calloc(n + 1, sizeof(*argl));
    if (!bt || !argv || !argl || !(bt->ids = calloc(n, sizeof(char *))))
        goto fail;
    bt->d = d;
    bt->gen = d->gen;
    argv[0] = "MGET";
    argl[0] = 4;
    for (size_t i = 0; i < n; i++) {
        redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING)
            goto fail;
        size_t klen = fleet_key_worker(d->prefix, e->str, e->len, NULL, 0);
        char *key = malloc(klen + 1);
        /* ids is the member itself; the key is the state key of that id */
        bt->ids[bt->n] = strndup(e->str, e->len);
        if (!key || !bt->ids[bt->n]) {
            free(key);
            free(bt->ids[bt->n]);
            goto fail;
        }
        bt->n++;
        fleet_key_worker(d->prefix, e->str, e->len, key, klen + 1);
        argv[i + 1] = key;
        argl[i + 1] = klen;
    }
    if (rds_command_argv(d->cmd, disc_on_values, bt, (int)(n + 1), argv, argl) < 0)
        goto fail;
    for (size_t i = 1; i <= n; i++)
        free((char *)argv[i]);
    free(argv);
    free(argl);
    return;
fail:
    if (argv)
        for (size_t i = 1; i <= n; i++)
            free((char *)argv[i]);
    free(argv);
    free(argl);
    if (bt)
        disc_batch_free(bt);
    d->inflight = 0;
}

static void disc_refresh(disc_t *d)
{
    if (d->inflight) {
        d->again = 1;
        return;
    }
    if (!rds_connected(d->cmd))
        return;
    d->inflight = 1;
    d->last = ev_now(d->loop);
    if (rds_command(d->cmd, disc_on_members, d, "SMEMBERS %s", d->set_key) < 0)
        d->inflight = 0;
}

static void disc_soon_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    disc_refresh(container_of(w, disc_t, soon));
}

/* A refresh an event asks for: now, or DISC_EVENT_MIN_S after the last. */
static void disc_refresh_soon(disc_t *d)
{
    ev_tstamp wait = d->last + DISC_EVENT_MIN_S - ev_now(d->loop);
    if (wait <= 0) {
        disc_refresh(d);
    } else if (!ev_is_active(&d->soon)) {
        ev_timer_set(&d->soon, wait, 0.);
        ev_timer_start(d->loop, &d->soon);
    }
}

static void disc_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    disc_refresh(container_of(w, disc_t, tick));
}

static void disc_sample_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    disc_t *d = container_of(w, disc_t, sample);
    be_table_sample(d->t, fleet_wall_ms());
}

/* One message on the events channel: act on drain and leave at once (the
 * next heartbeat may be a second away), then refresh for the full picture. */
static void disc_on_event(disc_t *d, const char *msg, size_t len)
{
    fleet_event_t ev;
    int parsed = fleet_event_parse(msg, len, &ev, NULL, 0) == 0;
    if (parsed) {
        be_t *b = be_find(d->t, ev.id);
        log_debug("discovery: event %s for %s", fleet_event_name(ev.type), ev.id);
        if (b && ev.type == FLEET_EV_DRAIN) {
            disc_set_draining(d, b, 1);
        } else if (b && ev.type == FLEET_EV_LEAVE) {
            if (be_source(b) == BE_DISCOVERED)
                disc_remove(d, b, "the worker announced it leaves");
            else
                be_clear_remote(d->t, b);
        }
    }
    if (!parsed || ev.type == FLEET_EV_LEAVE)
        d->gen++;
    disc_refresh_soon(d);
}

static void disc_on_sub(rds_t *r, redisReply *reply, void *privdata)
{
    disc_t *d = privdata;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    redisReply *kind = reply->element[0], *payload = reply->element[2];
    if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "message") == 0 &&
        payload->type == REDIS_REPLY_STRING)
        disc_on_event(d, payload->str, payload->len);
}

static void disc_cmd_state(rds_t *r, int connected, void *ud)
{
    disc_t *d = ud;
    if (connected) {
        if (d->down_logged)
            log_info("discovery: Redis is back; refreshing");
        d->down_logged = 0;
        if (d->was_up) {
            d->grace_until = be_now_ms() + DISC_GRACE_MS;
            d->grace_logged = 0;
        }
        d->was_up = 1;
        disc_refresh(d);
    } else if (!d->down_logged) {
        d->down_logged = 1;
        log_warn("discovery: Redis unreachable; keeping the last known %zu backends",
                 be_table_count(d->t));
    }
}

static void disc_sub_state(rds_t *r, int connected, void *ud)
{
    disc_t *d = ud;
    if (connected && rds_command(r, disc_on_sub, d, "SUBSCRIBE %s", d->chan) < 0)
        log_warn("discovery: cannot subscribe to %s", d->chan);
    if (connected) /* events may have been missed while away */
        disc_refresh(d);
}

disc_t *disc_create(struct ev_loop *loop, be_table_t *t, const rds_config_t *rc, const char *prefix,
                    char *err, size_t errlen)
{
    char rerr[SOCK_ERR_LEN];
    disc_t *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->t = t;
    ev_timer_init(&d->tick, disc_tick_cb, DISC_REFRESH_S, DISC_REFRESH_S);
    ev_timer_init(&d->sample, disc_sample_cb, 0., BE_SAMPLE_MS / 1000.0);
    ev_timer_init(&d->soon, disc_soon_cb, DISC_EVENT_MIN_S, 0.);
    if (!prefix)
        prefix = FLEET_DEFAULT_PREFIX;
    size_t sn = fleet_key_workers(prefix, NULL, 0) + 1, cn = fleet_key_events(prefix, NULL, 0) + 1;
    d->prefix = strdup(prefix);
    d->set_key = malloc(sn);
    d->chan = malloc(cn);
    if (!d->prefix || !d->set_key || !d->chan) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    fleet_key_workers(prefix, d->set_key, sn);
    fleet_key_events(prefix, d->chan, cn);
    d->cmd = rds_create(loop, rc, disc_cmd_state, d, rerr, sizeof(rerr));
    if (d->cmd)
        d->sub = rds_create(loop, rc, disc_sub_state, d, rerr, sizeof(rerr));
    if (!d->cmd || !d->sub) {
        snprintf(err, errlen, "redis: %s", rerr);
        goto fail;
    }
    ev_timer_start(loop, &d->tick);
    ev_timer_start(loop, &d->sample);
    return d;
fail:
    disc_free(d);
    return NULL;
}

void disc_set_lb_id(disc_t *d, const char *lb_id)
{
    d->lb_id = lb_id;
}

void disc_free(disc_t *d)
{
    if (!d)
        return;
    ev_timer_stop(d->loop, &d->tick);
    ev_timer_stop(d->loop, &d->sample);
    ev_timer_stop(d->loop, &d->soon);
    /* rds_free answers pending commands with NULL while d is still alive. */
    rds_free(d->sub);
    rds_free(d->cmd);
    free(d->prefix);
    free(d->set_key);
    free(d->chan);
    free(d);
}
