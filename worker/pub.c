/* pub: worker state publishing; see pub.h. */
#include "pub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

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

static void pub_write(struct pub *p)
{
    wk_t *w = p->w;
    if (p->leaving || !rds_connected(p->rds))
        return;
    /* No usable slot: "draining" is what every lb already reads as "send no
     * new websockets here"; slots_broken says why. */
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:I}", "id", w->cfg.id,
        "addr", w->cfg.advertise, "state", w->draining || wk_unusable(w) ? "draining" : "up",
        "conns", (json_int_t)w->nws, "evals_running", (json_int_t)w->nrunning, "evals_queued",
        (json_int_t)w->nqueued, "max_evals", (json_int_t)w->cfg.max_evals, "load",
        (json_int_t)(w->nrunning + w->nqueued), "ts_ms", (json_int_t)fleet_wall_ms(), "started_ms",
        (json_int_t)p->started_ms, "isolation", sbx_isolation(w->sbx), "version", VERSION,
        "slots_broken", (json_int_t)wk_slots_broken(w));
    json_t *bylb = json_object();
    for (int i = 0; j != NULL && bylb != NULL && i < WK_MAX_LBS; i++)
        if (w->by_lb[i].n > 0)
            json_object_set_new(bylb, w->by_lb[i].id, json_integer((json_int_t)w->by_lb[i].n));
    if (j != NULL && bylb != NULL)
        json_object_set(j, "by_lb", bylb);
    json_decref(bylb);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (s != NULL) {
        rds_command(p->rds, NULL, NULL, "SET %s %s PX %d", p->key, s, FLEET_STATE_TTL_MS);
        rds_command(p->rds, NULL, NULL, "SADD %s %s", p->set, w->cfg.id);
        if (!p->joined) {
            p->joined = 1;
            pub_event(p, w->draining ? FLEET_EV_DRAIN : FLEET_EV_JOIN);
        }
    }
    free(s);
    json_decref(j);
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
