/* pub: worker state publishing; see pub.h. */
#include "pub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "fleet.h"
#include "log.h"
#include "rds.h"

/* Changes are published at most this often, so a burst of connections costs
 * one write, yet the lb's view lags by little. */
#define PUB_COALESCE 0.1

struct pub {
    wk_t *w;
    rds_t *rds;
    ev_timer beat;
    ev_timer soon;
    ev_timer leave_timeout;
    uint64_t started_ms;
    int joined;  /* join announced on this connection */
    int leaving; /* no more state writes */
    void (*leave_done)(wk_t *w);
    char key[256];
    char set[256];
    char chan[256];
};

int pub_connected(const struct pub *p)
{
    return p != NULL && rds_connected(p->rds);
}

static void pub_event(struct pub *p, enum fleet_event_type type)
{
    fleet_event_t e = {.type = type};
    /* pub_create checked that both fit. */
    snprintf(e.id, sizeof(e.id), "%s", p->w->cfg.id);
    snprintf(e.addr, sizeof(e.addr), "%s", p->w->cfg.advertise);
    char *s = fleet_event_to_json(&e);
    if (s != NULL)
        rds_command(p->rds, NULL, NULL, "PUBLISH %s %s", p->chan, s);
    free(s);
}

/* This worker's state as the contract has it (common/fleet.h). */
static void pub_state(struct pub *p, fleet_state_t *st)
{
    wk_t *w = p->w;
    memset(st, 0, sizeof(*st));
    /* pub_create checked that id and address fit. */
    snprintf(st->id, sizeof(st->id), "%s", w->cfg.id);
    snprintf(st->addr, sizeof(st->addr), "%s", w->cfg.advertise);
    /* No usable slot: "draining" is what every lb already reads as "send no
     * new websockets here"; slots_broken says why. */
    st->draining = w->draining || wk_unusable(w);
    st->conns = (int64_t)w->nws;
    st->has = FLEET_HAS_ALL;
    st->evals_running = (int64_t)w->nrunning;
    st->evals_queued = (int64_t)w->nqueued;
    st->max_evals = w->cfg.max_evals;
    st->load = (int64_t)(w->nrunning + w->nqueued);
    st->ts_ms = fleet_wall_ms();
    st->started_ms = p->started_ms;
    snprintf(st->isolation, sizeof(st->isolation), "%s", sbx_isolation(w->sbx));
    snprintf(st->version, sizeof(st->version), "%s", VERSION);
    st->slots_broken = (int64_t)wk_slots_broken(w);
    st->rebalance_shed = (int64_t)w->nshed;
    for (int i = 0; i < WK_MAX_LBS && st->nlbs < FLEET_MAX_LBS; i++) {
        if (w->by_lb[i].n == 0)
            continue;
        fleet_lb_count_t *c = &st->by_lb[st->nlbs++];
        snprintf(c->id, sizeof(c->id), "%s", w->by_lb[i].id);
        c->n = (int64_t)w->by_lb[i].n;
    }
}

static void pub_write(struct pub *p)
{
    wk_t *w = p->w;
    if (p->leaving || !rds_connected(p->rds))
        return;
    fleet_state_t st;
    pub_state(p, &st);
    char *s = fleet_state_to_json(&st);
    if (s != NULL) {
        rds_command(p->rds, NULL, NULL, "SET %s %s PX %d", p->key, s, FLEET_STATE_TTL_MS);
        rds_command(p->rds, NULL, NULL, "SADD %s %s", p->set, w->cfg.id);
        if (!p->joined) {
            p->joined = 1;
            pub_event(p, w->draining ? FLEET_EV_DRAIN : FLEET_EV_JOIN);
        }
    }
    free(s);
}

static void pub_beat_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    pub_write(t->data);
}

static void pub_soon_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    pub_write(t->data);
}

static void pub_state_cb(rds_t *r, int connected, void *ud)
{
    struct pub *p = ud;
    if (connected) {
        log_info("redis: publishing as %s", p->w->cfg.id);
        p->joined = 0;
        pub_write(p);
    }
}

struct pub *pub_create(wk_t *w, const rds_config_t *rc, char *err, size_t errlen)
{
    struct pub *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->w = w;
    p->started_ms = fleet_wall_ms();
    const char *id = w->cfg.id, *prefix = w->cfg.redis_prefix;
    /* What the lbs would not read is refused here rather than published. */
    if (!fleet_worker_id_ok(id, strlen(id)) || strlen(w->cfg.advertise) >= SOCK_ADDRSTRLEN) {
        snprintf(err, errlen,
                 "worker id '%.40s' or address '%.80s' cannot be published: "
                 "an id is 1-127 bytes without control characters, an address HOST:PORT",
                 id, w->cfg.advertise);
        goto fail;
    }
    if (fleet_key_worker(prefix, id, strlen(id), p->key, sizeof(p->key)) >= sizeof(p->key) ||
        fleet_key_workers(prefix, p->set, sizeof(p->set)) >= sizeof(p->set) ||
        fleet_key_events(prefix, p->chan, sizeof(p->chan)) >= sizeof(p->chan)) {
        snprintf(err, errlen, "--redis-prefix and --id make keys over %zu bytes", sizeof(p->key));
        goto fail;
    }
    ev_timer_init(&p->beat, pub_beat_cb, FLEET_HEARTBEAT_MS / 1000.0, FLEET_HEARTBEAT_MS / 1000.0);
    ev_timer_init(&p->soon, pub_soon_cb, PUB_COALESCE, 0.);
    p->beat.data = p->soon.data = p;
    p->rds = rds_create(w->loop, rc, pub_state_cb, p, err, errlen);
    if (p->rds == NULL)
        goto fail;
    ev_timer_start(w->loop, &p->beat);
    return p;
fail:
    free(p);
    return NULL;
}

void pub_free(struct pub *p)
{
    if (p == NULL)
        return;
    ev_timer_stop(p->w->loop, &p->beat);
    ev_timer_stop(p->w->loop, &p->soon);
    ev_timer_stop(p->w->loop, &p->leave_timeout);
    rds_free(p->rds);
    free(p);
}

rds_t *pub_rds(struct pub *p)
{
    return p != NULL ? p->rds : NULL;
}

void pub_changed(struct pub *p)
{
    if (p == NULL || p->leaving)
        return;
    if (!ev_is_active(&p->soon))
        ev_timer_start(p->w->loop, &p->soon);
}

void pub_drain(struct pub *p)
{
    if (p == NULL)
        return;
    pub_write(p);
    if (rds_connected(p->rds))
        pub_event(p, FLEET_EV_DRAIN);
}

static void pub_leave_finish(struct pub *p)
{
    ev_timer_stop(p->w->loop, &p->leave_timeout);
    void (*done)(wk_t *) = p->leave_done;
    p->leave_done = NULL;
    if (done != NULL)
        done(p->w);
}

static void pub_leave_reply(rds_t *r, struct redisReply *reply, void *privdata)
{
    pub_leave_finish(privdata);
}

static void pub_leave_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    log_warn("redis: leave not acknowledged in time; exiting anyway");
    pub_leave_finish(t->data);
}

void pub_leave(struct pub *p, void (*done)(wk_t *w))
{
    p->leaving = 1;
    p->leave_done = done;
    ev_timer_stop(p->w->loop, &p->beat);
    ev_timer_stop(p->w->loop, &p->soon);
    if (!rds_connected(p->rds)) {
        pub_leave_finish(p);
        return;
    }
    rds_command(p->rds, NULL, NULL, "DEL %s", p->key);
    rds_command(p->rds, NULL, NULL, "SREM %s %s", p->set, p->w->cfg.id);
    pub_event(p, FLEET_EV_LEAVE);
    /* Replies come in order: the PING's answer means all of the above landed. */
    ev_timer_init(&p->leave_timeout, pub_leave_timeout_cb, 1.0, 0.);
    p->leave_timeout.data = p;
    ev_timer_start(p->w->loop, &p->leave_timeout);
    if (rds_command(p->rds, pub_leave_reply, p, "PING") < 0)
        pub_leave_finish(p);
}
