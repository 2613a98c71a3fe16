/* rb: rebalancing after a scale-out; see rb.h.
 *
 * One tick a second, a chain of three Redis round trips on the publisher's
 * connection: SMEMBERS of the workers set, MGET of their states, then (only
 * when there is something to shed) INCRBY of this second's shed counter.
 * One chain at a time; a tick that finds one in flight is skipped. */
#include "rb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "conn.h"
#include "fleet.h"
#include "log.h"
#include "met_names.h"

#define RB_TICK_S      1.0
#define RB_MAX_WORKERS 4096
#define RB_CLOSE_CODE  1012 /* service restart: reconnect */

struct rb {
    wk_t *w;
    rds_t *rds;
    rb_config_t cfg;
    rb_state_t st;
    ev_timer tick;
    int busy;     /* a chain is in flight */
    int cooldown; /* ticks to skip after a shed: let the reconnects land */
    int64_t asked;
    double ratio; /* max/mean as last seen, for the gauge */
    fleet_state_t *fs;
    char set[256];
    met_counter_t *m_shed, *m_held_rate, *m_held_busy;
};

/* ---- the decision (pure) ------------------------------------------------- */

void rb_state_init(rb_state_t *s)
{
    s->above_since = -1;
    s->active = 0;
}

double rb_ratio(const rb_view_t *v)
{
    if (v->n == 0 || v->total <= 0)
        return 0;
    return (double)v->max * (double)v->n / (double)v->total;
}

int64_t rb_decide(rb_state_t *s, const rb_config_t *cfg, const rb_view_t *v, double now)
{
    if (v->n < 2 || v->total <= 0) {
        rb_state_init(s);
        return 0;
    }
    /* max / (total / n) > threshold, in integers */
    int above = (__int128)v->max * (int64_t)v->n * 1000 > (__int128)cfg->threshold_milli * v->total;
    if (!s->active) {
        if (!above) {
            s->above_since = -1;
            return 0;
        }
        if (s->above_since < 0)
            s->above_since = now;
        if (now - s->above_since < cfg->hold_s)
            return 0;
        s->active = 1;
    }
    int64_t target = (v->total + (int64_t)v->n - 1) / (int64_t)v->n;
    int64_t excess = v->mine - target;
    if (excess <= 0) {
        rb_state_init(s);
        return 0;
    }
    return excess;
}

/* ---- the chain ------------------------------------------------------------- */

static size_t rb_sheddable(wk_t *w, double idle_s)
{
    size_t n = 0;
    ev_tstamp now = ev_now(w->loop);
    wc_conn_t *c;
    TAILQ_FOREACH(c, &w->conns, link)
    n += wc_sheddable(c, now, idle_s) != 0;
    return n;
}

static void rb_tokens_cb(rds_t *r, redisReply *reply, void *privdata)
{
    struct rb *rb = privdata;
    rb->busy = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || rb->w->draining)
        return;
    int64_t granted = fleet_rebalance_granted(rb->cfg.rate, rb->asked, reply->integer);
    met_inc(rb->m_held_rate, (uint64_t)(rb->asked - granted));
    if (granted <= 0)
        return;
    size_t shed = wc_shed(rb->w, (size_t)granted, rb->cfg.idle_s, RB_CLOSE_CODE, "rebalance");
    met_inc(rb->m_shed, shed);
    rb->w->nshed += shed;
    if (shed > 0) {
        log_info("rebalance: closed %zu idle websocket(s) with 1012 (fleet max/mean %.2f, %zu "
                 "left here)",
                 shed, rb->ratio, rb->w->nws);
        rb->cooldown = 1;
    }
}

/* Sums the fleet's states into a view, this worker's own count exact. */
static void rb_view(struct rb *rb, redisReply *reply, rb_view_t *v)
{
    wk_t *w = rb->w;
    memset(v, 0, sizeof(*v));
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING ||
            fleet_state_parse(e->str, e->len, NULL, rb->fs, NULL, 0) < 0)
            continue; /* expired or unreadable: not part of the fleet now */
        if (rb->fs->draining || strcmp(rb->fs->id, w->cfg.id) == 0)
            continue;
        v->n++;
        v->total += rb->fs->conns;
        if (rb->fs->conns > v->max)
            v->max = rb->fs->conns;
    }
    v->mine = (int64_t)w->nws;
    v->n++;
    v->total += v->mine;
    if (v->mine > v->max)
        v->max = v->mine;
}

static void rb_states_cb(rds_t *r, redisReply *reply, void *privdata)
{
    struct rb *rb = privdata;
    wk_t *w = rb->w;
    rb->busy = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || w->draining)
        return;
    rb_view_t v;
    rb_view(rb, reply, &v);
    rb->ratio = rb_ratio(&v);
    int64_t want = rb_decide(&rb->st, &rb->cfg, &v, ev_now(w->loop));
    if (want <= 0)
        return;
    int64_t idle = (int64_t)rb_sheddable(w, rb->cfg.idle_s);
    int64_t k = want < idle ? want : idle;
    met_inc(rb->m_held_busy, (uint64_t)(want - k));
    if (k > (int64_t)rb->cfg.rate)
        k = rb->cfg.rate;
    if (k <= 0)
        return;
    char key[320];
    if (fleet_key_rebalance(w->cfg.redis_prefix, fleet_wall_ms() / 1000, key, sizeof(key)) >=
        sizeof(key))
        return;
    char n[24];
    snprintf(n, sizeof(n), "%lld", (long long)k);
    /* The counter is created with its expiry, then added to: replies come
     * in order, so INCRBY's answer is this second's count with k in it. */
    if (rds_command(rb->rds, NULL, NULL, "SET %s 0 EX %d NX", key, FLEET_REBALANCE_TTL_S) < 0 ||
        rds_command(rb->rds, rb_tokens_cb, rb, "INCRBY %s %s", key, n) < 0)
        return;
    rb->asked = k;
    rb->busy = 1;
}

static void rb_members_cb(rds_t *r, redisReply *reply, void *privdata)
{
    struct rb *rb = privdata;
    rb->busy = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0 ||
        rb->w->draining)
        return;
    size_t n = reply->elements < RB_MAX_WORKERS ? reply->elements : RB_MAX_WORKERS;
    const char **argv = calloc(n + 1, sizeof(*argv));
    size_t *lens = calloc(n + 1, sizeof(*lens));
    char **keys = calloc(n, sizeof(*keys));
    size_t argc = 1;
    if (argv == NULL || lens == NULL || keys == NULL)
        goto done;
    argv[0] = "MGET";
    lens[0] = 4;
    for (size_t i = 0; i < n; i++) {
        redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING || !fleet_worker_id_ok(e->str, e->len))
            continue;
        size_t kl = fleet_key_worker(rb->w->cfg.redis_prefix, e->str, e->len, NULL, 0);
        if ((keys[i] = malloc(kl + 1)) == NULL)
            goto done;
        fleet_key_worker(rb->w->cfg.redis_prefix, e->str, e->len, keys[i], kl + 1);
        argv[argc] = keys[i];
        lens[argc++] = kl;
    }
    if (argc > 1 && rds_command_argv(rb->rds, rb_states_cb, rb, (int)argc, argv, lens) == 0)
        rb->busy = 1;
done:
    for (size_t i = 0; keys != NULL && i < n; i++)
        free(keys[i]);
    free(keys);
    free(lens);
    free(argv);
}

static void rb_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct rb *rb = t->data;
    if (rb->busy || rb->w->draining || !rds_connected(rb->rds))
        return;
    if (rb->cooldown > 0) {
        rb->cooldown--;
        return;
    }
    if (rds_command(rb->rds, rb_members_cb, rb, "SMEMBERS %s", rb->set) == 0)
        rb->busy = 1;
}

static double rb_gauge_ratio(void *ud)
{
    return ((struct rb *)ud)->ratio;
}

struct rb *rb_create(wk_t *w, rds_t *rds, const rb_config_t *cfg)
{
    struct rb *rb = calloc(1, sizeof(*rb));
    if (rb == NULL || (rb->fs = malloc(sizeof(*rb->fs))) == NULL)
        goto fail;
    rb->w = w;
    rb->rds = rds;
    rb->cfg = *cfg;
    if (rb->cfg.rate == 0)
        rb->cfg.rate = 1;
    rb_state_init(&rb->st);
    fleet_key_workers(w->cfg.redis_prefix, rb->set, sizeof(rb->set));
    met_registry_t *m = w->met;
    rb->m_shed = met_counter(m, MN_WK_REBALANCE_SHED, "why=\"over_mean\"",
                             "Idle websockets closed with 1012 to rebalance the fleet, by why.");
    static const char held_help[] = "Websockets over the mean kept open: the fleet-wide "
                                    "--rebalance-rate was used up, or they were not idle.";
    rb->m_held_rate = met_counter(m, MN_WK_REBALANCE_HELD, "why=\"rate\"", held_help);
    rb->m_held_busy = met_counter(m, MN_WK_REBALANCE_HELD, "why=\"busy\"", held_help);
    if (rb->m_shed == NULL || rb->m_held_rate == NULL || rb->m_held_busy == NULL ||
        met_gauge_fn(m, MN_WK_REBALANCE_RATIO, NULL,
                     "Max/mean of websockets per worker over the fleet, as last read from Redis.",
                     rb_gauge_ratio, rb) < 0)
        goto fail;
    ev_timer_init(&rb->tick, rb_tick_cb, RB_TICK_S, RB_TICK_S);
    rb->tick.data = rb;
    ev_timer_start(w->loop, &rb->tick);
    return rb;
fail:
    if (rb != NULL)
        free(rb->fs);
    free(rb);
    return NULL;
}

void rb_free(struct rb *rb)
{
    if (rb == NULL)
        return;
    ev_timer_stop(rb->w->loop, &rb->tick);
    free(rb->fs);
    free(rb);
}
