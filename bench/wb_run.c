/* wb_run: the load generator's modes (see wb_run.h). */
#include "wb_run.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define WB_PACE_S      0.001 /* opener granularity */
#define WB_DRAIN_S     3.0   /* graceful close budget at the end */
#define WB_RETRY_S     0.02  /* delay before reopening a failed client */
#define WB_MAX_SAMPLES 200000

const char *const wb_mode_names[] = {"rtt", "handshake", "hold", "balance", "eval"};
const char *const wb_verdict_names[WB_V_COUNT] = {
    "ok", "signaled", "timeout", "memory", "output", "killed", "error", "other", "status", "lost",
};

enum wb_phase { WB_PH_RAMP = 0, WB_PH_RUN, WB_PH_STOP };

typedef struct wb_ctx wb_ctx_t;

/* One simulated client; its connection is restarted in place. */
typedef struct wb_client {
    wb_conn_t conn;
    ev_timer timer; /* balance lifetime, or a reopen delay */
    wb_ctx_t *ctx;
    int widx;        /* balance: worker it landed on, -1 before the hello */
    long key;        /* balance with keys: its session key, -1 = none yet */
    int self_closed; /* balance: its lifetime ended it, not the server */
    int in_use;
    long inflight; /* rtt messages out */
    int run_pending;
    uint64_t run_seq;
    uint64_t run_start_ns;
    int next_free;
} wb_client_t;

struct wb_ctx {
    const wb_opts_t *o;
    wb_result_t *res;
    struct ev_loop *loop;
    wb_conn_env_t env;
    wb_client_t *cl;
    long ncl;
    int free_head;
    size_t next_url, next_src;
    enum wb_phase phase;
    uint64_t t0_ns;    /* run start */
    uint64_t t_run_ns; /* measuring window start */
    long started;      /* connections started by the opener */
    long target;       /* connections the opener should start in total (-1: unbounded) */
    long live;         /* clients with an active connection */
    long settled;      /* hold: opened or failed */
    int holding_sent;
    int ramp_fed; /* rtt: "all open" already signalled */
    wb_holding_fn holding;
    void *holding_ud;
    ev_timer pace, end, watchdog, sample, drain;
    ev_signal sigint, sigterm;
    uint8_t *payload;
    char *run_prefix; /* eval: serialized run message pieces */
    /* balance */
    int nw;
    long live_w[WB_MAX_WORKERS];
    long opened_w[WB_MAX_WORKERS];
    FILE *series;
    long nsamples;
    double *ratios;
    long nratios;
    long ticks;
    int *key_w; /* keys: the worker each key was last served by, -1 = none */
};

void wb_result_init(wb_result_t *r)
{
    memset(r, 0, sizeof(*r));
    wb_hist_init(&r->lat);
}

void wb_result_merge(wb_result_t *d, const wb_result_t *s)
{
    if (s->elapsed > d->elapsed)
        d->elapsed = s->elapsed;
    d->opened += s->opened;
    d->hs_fail += s->hs_fail;
    d->dropped += s->dropped;
    for (int i = 0; i < WB_E_COUNT; i++)
        d->err_kind[i] += s->err_kind[i];
    d->msgs += s->msgs;
    d->bytes += s->bytes;
    d->held += s->held;
    d->held_end += s->held_end;
    d->reconnects += s->reconnects;
    d->drain_retries += s->drain_retries;
    d->resent_1001 += s->resent_1001;
    for (int i = 0; i < WB_V_COUNT; i++)
        d->verdict[i] += s->verdict[i];
    wb_hist_merge(&d->lat, &s->lat);
    d->pool_full += s->pool_full;
    if (d->first_err[0] == '\0')
        memcpy(d->first_err, s->first_err, sizeof(d->first_err));
}

int wb_json_str(const uint8_t *p, size_t n, const char *key, char *out, size_t outlen)
{
    json_error_t je;
    json_t *root = json_loadb((const char *)p, n, 0, &je);
    int rc = -1;
    if (root == NULL)
        return -1;
    json_t *v = json_object_get(root, key);
    if (json_is_string(v) && json_string_length(v) < outlen) {
        memcpy(out, json_string_value(v), json_string_length(v) + 1);
        rc = 0;
    }
    json_decref(root);
    return rc;
}

static double wb_secs_since(uint64_t t_ns)
{
    return (double)(wb_now_ns() - t_ns) / 1e9;
}

static void wb_note_error(wb_ctx_t *x, enum wb_err err, const char *detail)
{
    x->res->err_kind[err]++;
    if (x->res->first_err[0] == '\0')
        snprintf(x->res->first_err, sizeof(x->res->first_err), "%s: %.100s", wb_err_names[err],
                 detail);
}

static void wb_stop(wb_ctx_t *x);
static void wb_client_open(wb_client_t *k);
static void wb_hold_check(wb_ctx_t *x);

/* ---- client pool -------------------------------------------------------- */

static wb_client_t *wb_client_get(wb_ctx_t *x)
{
    if (x->free_head < 0)
        return NULL;
    wb_client_t *k = &x->cl[x->free_head];
    x->free_head = k->next_free;
    k->in_use = 1;
    k->widx = -1;
    k->key = -1;
    k->inflight = 0;
    k->run_pending = 0;
    return k;
}

static void wb_client_put(wb_client_t *k)
{
    wb_ctx_t *x = k->ctx;
    ev_timer_stop(x->loop, &k->timer);
    k->in_use = 0;
    k->next_free = x->free_head;
    x->free_head = (int)(k - x->cl);
}

/* ---- callbacks shared by all modes --------------------------------------- */

static void wb_send_rtt(wb_client_t *k)
{
    wb_ctx_t *x = k->ctx;
    uint64_t now = wb_now_ns();
    memcpy(x->payload, &now, sizeof(now));
    if (wb_conn_send(&k->conn, WS_OP_BINARY, x->payload, (size_t)x->o->size) == 0)
        k->inflight++;
}

static void wb_send_run(wb_client_t *k)
{
    wb_ctx_t *x = k->ctx;
    char id[32];
    snprintf(id, sizeof(id), "r%llu", (unsigned long long)++k->run_seq);
    json_t *m = json_pack("{s:s, s:s, s:s, s:s}", "type", "run", "id", id, "runtime", x->o->runtime,
                          "code", x->o->code);
    if (m == NULL)
        return;
    if (x->o->eval_timeout_ms > 0)
        json_object_set_new(m, "timeout_ms", json_integer(x->o->eval_timeout_ms));
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (s == NULL)
        return;
    k->run_start_ns = wb_now_ns();
    if (wb_conn_send(&k->conn, WS_OP_TEXT, s, strlen(s)) == 0)
        k->run_pending = 1;
    free(s);
}

static int wb_worker_index(wb_ctx_t *x, const char *id)
{
    for (int i = 0; i < x->nw; i++)
        if (strcmp(x->res->worker_id[i], id) == 0)
            return i;
    if (x->nw == WB_MAX_WORKERS)
        return -1;
    snprintf(x->res->worker_id[x->nw], WB_WORKER_ID_LEN, "%s", id);
    return x->nw++;
}

static void wb_lifetime_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    wb_client_t *k = container_of(w, wb_client_t, timer);
    k->self_closed = 1;
    wb_conn_close(&k->conn, WS_CLOSE_NORMAL);
}

static void wb_on_open(wb_conn_t *c)
{
    wb_client_t *k = c->ud;
    wb_ctx_t *x = k->ctx;
    const wb_opts_t *o = x->o;
    uint64_t hs_us = (c->t_open_ns - c->t_start_ns) / 1000;

    x->res->opened++;
    switch (o->mode) {
    case WB_MODE_RTT:
        if (x->phase == WB_PH_RUN)
            for (long i = 0; i < o->inflight; i++)
                wb_send_rtt(k);
        else if (x->phase == WB_PH_RAMP && !x->ramp_fed &&
                 x->res->opened + x->res->hs_fail >= (uint64_t)o->conns) {
            x->ramp_fed = 1;
            ev_feed_event(x->loop, &x->end, EV_CUSTOM); /* all open: start measuring */
        }
        break;
    case WB_MODE_HANDSHAKE:
        if (x->phase == WB_PH_RUN && c->t_start_ns >= x->t_run_ns) {
            wb_hist_add(&x->res->lat, hs_us);
            x->res->msgs++;
        }
        wb_conn_close(c, WS_CLOSE_NORMAL);
        break;
    case WB_MODE_HOLD:
        x->settled++;
        wb_hold_check(x);
        break;
    case WB_MODE_BALANCE:
    case WB_MODE_EVAL:
        break; /* both wait for the hello */
    }
}

static void wb_on_message(wb_conn_t *c, int opcode, const uint8_t *p, size_t n)
{
    wb_client_t *k = c->ud;
    wb_ctx_t *x = k->ctx;
    const wb_opts_t *o = x->o;

    if (o->mode == WB_MODE_RTT) {
        if (opcode != WS_OP_BINARY)
            return; /* the hello */
        uint64_t sent;
        if (n < sizeof(sent))
            return;
        memcpy(&sent, p, sizeof(sent));
        k->inflight--;
        if (x->phase == WB_PH_RUN && sent >= x->t_run_ns) {
            wb_hist_add(&x->res->lat, (wb_now_ns() - sent) / 1000);
            x->res->msgs++;
            x->res->bytes += n;
        }
        if (x->phase == WB_PH_RUN)
            wb_send_rtt(k);
        return;
    }
    if (opcode != WS_OP_TEXT)
        return;
    if (o->mode == WB_MODE_BALANCE && k->widx < 0) {
        char id[WB_WORKER_ID_LEN];
        if (wb_json_str(p, n, "worker", id, sizeof(id)) < 0)
            return;
        k->widx = wb_worker_index(x, id);
        if (k->widx < 0)
            return;
        x->live_w[k->widx]++;
        x->opened_w[k->widx]++;
        x->res->worker_opened[k->widx]++;
        if (k->key >= 0 && x->key_w != NULL) {
            if (x->key_w[k->key] >= 0)
                (*(x->key_w[k->key] == k->widx ? &x->res->key_hits : &x->res->key_misses))++;
            x->key_w[k->key] = k->widx;
        }
        if (o->life_ms <= 0)
            return; /* no churn: held to the end */
        /* Exponential lifetime: -ln(U) * mean, U in (0,1]. */
        double u = (random() + 1.0) / ((double)RAND_MAX + 1.0);
        double life = -log(u) * o->life_ms / 1000.0;
        ev_timer_set(&k->timer, life, 0);
        ev_timer_start(x->loop, &k->timer);
        return;
    }
    if (o->mode == WB_MODE_EVAL) {
        char type[16], verdict[16];
        if (wb_json_str(p, n, "type", type, sizeof(type)) < 0)
            return;
        if (strcmp(type, "hello") == 0) {
            if (x->phase == WB_PH_RUN && !k->run_pending)
                wb_send_run(k);
            return;
        }
        if (strcmp(type, "exit") != 0 && strcmp(type, "error") != 0)
            return; /* stdout / stderr */
        if (!k->run_pending)
            return;
        k->run_pending = 0;
        char why[128];
        if (strcmp(type, "error") == 0 && wb_json_str(p, n, "error", why, sizeof(why)) == 0 &&
            strncmp(why, "draining", 8) == 0) {
            /* A draining worker refuses new runs and asks the client to go
             * elsewhere: what a real client does is reconnect and resend. */
            x->res->drain_retries++;
            wb_conn_close(c, WS_CLOSE_NORMAL);
            return;
        }
        int v = WB_V_OTHER;
        if (strcmp(type, "error") == 0) {
            v = WB_V_ERROR;
        } else if (wb_json_str(p, n, "verdict", verdict, sizeof(verdict)) == 0) {
            for (int i = 0; i < WB_V_OTHER; i++)
                if (strcmp(verdict, wb_verdict_names[i]) == 0)
                    v = i;
        }
        if (v == WB_V_OK) {
            json_t *root = json_loadb((const char *)p, n, 0, NULL);
            json_t *st = root ? json_object_get(root, "status") : NULL;
            if (json_is_integer(st) && json_integer_value(st) != 0)
                v = WB_V_STATUS;
            json_decref(root);
        }
        if (k->run_start_ns >= x->t_run_ns) {
            x->res->verdict[v]++;
            if (v == WB_V_OK) {
                x->res->msgs++;
                wb_hist_add(&x->res->lat, (wb_now_ns() - k->run_start_ns) / 1000);
            }
            if (o->count > 0 && x->res->msgs >= (uint64_t)o->count) {
                wb_stop(x); /* -n evaluations done: the window ends here */
                return;
            }
        }
        if (x->phase == WB_PH_RUN)
            wb_send_run(k);
    }
}

static void wb_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    wb_client_t *k = container_of(w, wb_client_t, timer);
    if (k->ctx->phase == WB_PH_RUN || k->ctx->phase == WB_PH_RAMP)
        wb_client_open(k);
    else
        wb_client_put(k);
}

/* Schedules a reopen of k after a short delay (never synchronously, so a
 * failing address cannot recurse or spin). */
static void wb_client_retry(wb_client_t *k, double delay)
{
    ev_timer_stop(k->ctx->loop, &k->timer);
    ev_timer_init(&k->timer, wb_retry_cb, delay, 0);
    ev_timer_start(k->ctx->loop, &k->timer);
}

static void wb_on_close(wb_conn_t *c, enum wb_err err, int code, const char *detail)
{
    wb_client_t *k = c->ud;
    wb_ctx_t *x = k->ctx;
    const wb_opts_t *o = x->o;
    int was_open = c->t_open_ns != 0;

    x->live--;
    if (!was_open && x->phase == WB_PH_STOP && err == WB_E_ABORT) {
        /* our own stop cut a handshake short: not a failure */
    } else if (!was_open) {
        x->res->hs_fail++;
        wb_note_error(x, err, detail);
        if (o->mode == WB_MODE_HOLD) {
            x->settled++;
            wb_hold_check(x);
        }
    } else if (o->mode == WB_MODE_BALANCE && x->phase != WB_PH_STOP && !k->self_closed) {
        /* The server ended it: a rebalancing worker's 1012, or anything
         * else (a lost worker, a drain, an error). */
        if (c->close_rcvd && code == 1012) {
            x->res->closed_1012++;
        } else {
            x->res->closed_other++;
            if (x->res->first_err[0] == '\0')
                snprintf(x->res->first_err, sizeof(x->res->first_err), "ended by server: %d %s",
                         code, err != WB_OK ? wb_err_names[err] : "");
        }
    } else if (x->phase != WB_PH_STOP && !c->close_sent) {
        /* The server (or a proxy) ended a connection we still wanted. */
        x->res->dropped++;
        if (err != WB_OK)
            wb_note_error(x, err, detail);
        else if (x->res->first_err[0] == '\0')
            snprintf(x->res->first_err, sizeof(x->res->first_err), "closed by server: %d", code);
    } else if (err != WB_OK && err != WB_E_EOF && err != WB_E_ABORT) {
        wb_note_error(x, err, detail);
    }
    if (k->widx >= 0) {
        x->live_w[k->widx]--;
        k->widx = -1;
    }
    if (k->run_pending) {
        /* A run cut short by our own stop is not the server's failure. A
         * draining worker lets running evaluations finish before it closes
         * with 1001, so a run still unanswered then was never started (it
         * crossed the close on the wire): the client resends it after
         * reconnecting. Any other close with a run outstanding lost it. */
        k->run_pending = 0;
        if (x->phase != WB_PH_STOP && k->run_start_ns >= x->t_run_ns) {
            if (c->close_rcvd && code == WS_CLOSE_GOING_AWAY && o->reconnect)
                x->res->resent_1001++;
            else
                x->res->verdict[WB_V_LOST]++;
        }
    }
    ev_timer_stop(x->loop, &k->timer);

    if (x->phase == WB_PH_STOP) {
        wb_client_put(k);
        if (x->live == 0)
            ev_break(x->loop, EVBREAK_ONE);
        return;
    }
    switch (o->mode) {
    case WB_MODE_HANDSHAKE:
        wb_client_open(k); /* next cycle */
        break;
    case WB_MODE_EVAL:
        if (o->reconnect) {
            x->res->reconnects += was_open;
            wb_client_retry(k, was_open ? 0 : WB_RETRY_S);
        } else {
            wb_client_put(k);
        }
        break;
    case WB_MODE_BALANCE:
        if (o->reopen && !k->self_closed) {
            x->res->reconnects += was_open;
            wb_client_retry(k, was_open ? 0 : WB_RETRY_S);
        } else {
            wb_client_put(k);
        }
        break;
    default:
        wb_client_put(k);
        break;
    }
}

static const wb_conn_ops_t wb_ops = {wb_on_open, wb_on_message, wb_on_close};

/* Starts k's connection to the next URL from the next source address. */
static void wb_client_open(wb_client_t *k)
{
    wb_ctx_t *x = k->ctx;
    char err[SOCK_ERR_LEN];
    const wb_url_t *u = &x->o->urls[x->next_url++ % x->o->nurls];
    const sock_addr_t *src = x->o->nsrcs ? &x->o->srcs[x->next_src++ % x->o->nsrcs] : NULL;
    k->widx = -1;
    k->inflight = 0;
    k->run_pending = 0;
    k->self_closed = 0;
    k->conn.hdr[0] = '\0';
    if (x->o->keys > 0 && x->o->key_header != NULL) {
        if (k->key < 0) /* a new client; a reopen keeps its key */
            k->key = random() % x->o->keys;
        snprintf(k->conn.hdr, sizeof(k->conn.hdr), "%s: k%ld\r\n", x->o->key_header, k->key);
    }
    if (wb_conn_start(&k->conn, &x->env, u, src, &wb_ops, k, err, sizeof(err)) < 0) {
        x->res->hs_fail++;
        wb_note_error(x, WB_E_CONNECT, err);
        if (x->o->mode == WB_MODE_HOLD) {
            x->settled++;
            wb_client_put(k);
            wb_hold_check(x);
        } else if (x->o->mode == WB_MODE_BALANCE && !x->o->reopen) {
            wb_client_put(k);
        } else {
            wb_client_retry(k, WB_RETRY_S);
        }
        return;
    }
    x->live++;
}

/* ---- phases ------------------------------------------------------------- */

static void wb_emit_holding(wb_ctx_t *x)
{
    if (x->holding_sent)
        return;
    x->holding_sent = 1;
    x->res->held = (uint64_t)x->live;
    if (x->holding)
        x->holding(x->holding_ud, x->res->held);
    x->phase = WB_PH_RUN;
    x->t_run_ns = wb_now_ns();
    ev_timer_set(&x->end, x->o->duration, 0);
    ev_timer_start(x->loop, &x->end);
}

/* Hold mode: starts holding once every connection is open or failed. */
static void wb_hold_check(wb_ctx_t *x)
{
    if (x->o->mode == WB_MODE_HOLD && x->phase == WB_PH_RAMP && x->started >= x->target &&
        x->settled >= x->target)
        wb_emit_holding(x);
}

/* Opens connections at the configured rate until the target is reached. */
static void wb_pace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    wb_ctx_t *x = container_of(w, wb_ctx_t, pace);
    const wb_opts_t *o = x->o;
    if (x->phase == WB_PH_STOP)
        return;
    long due = o->rate > 0 ? (long)(wb_secs_since(x->t0_ns) * o->rate) + 1 : x->target;
    if (x->target >= 0 && due > x->target)
        due = x->target;
    /* Cap per tick so a stalled loop does not burst thousands at once. */
    long budget = 2000;
    while (x->started < due && budget-- > 0) {
        wb_client_t *k = wb_client_get(x);
        if (k == NULL) {
            x->res->pool_full++;
            x->started++;
            continue;
        }
        x->started++;
        wb_client_open(k);
    }
    wb_hold_check(x);
    if (x->target >= 0 && x->started >= x->target)
        ev_timer_stop(loop, w);
}

/* Balance sampler: live connections per worker, max/mean, series rows. */
static void wb_sample_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    wb_ctx_t *x = container_of(w, wb_ctx_t, sample);
    const wb_opts_t *o = x->o;
    double t = wb_secs_since(x->t0_ns);
    long total = 0, max = 0;
    int nw = o->workers > 0 ? (int)o->workers : x->nw;
    for (int i = 0; i < x->nw; i++) {
        total += x->live_w[i];
        if (x->live_w[i] > max)
            max = x->live_w[i];
    }
    double ratio = (total > 0 && nw > 0) ? (double)max / ((double)total / nw) : 0;
    double warm = o->warmup;
    if (t >= warm && total > 0 && x->nratios < WB_MAX_SAMPLES)
        x->ratios[x->nratios++] = ratio;
    if (x->series != NULL) {
        fprintf(x->series, "%.3f %ld %.4f", t, total, ratio);
        for (int i = 0; i < WB_MAX_WORKERS; i++)
            fprintf(x->series, " %ld", i < x->nw ? x->live_w[i] : 0L);
        for (int i = 0; i < WB_MAX_WORKERS; i++)
            fprintf(x->series, " %ld", i < x->nw ? x->opened_w[i] : 0L);
        fputc('\n', x->series);
    }
    /* One progress line a second whatever the sampling period. */
    long per_line = o->interval > 0 ? (long)(1.0 / o->interval + 0.5) : 1;
    if (!o->quiet && per_line > 0 && x->ticks++ % per_line == 0) {
        printf("t=%6.1fs live=%ld max/mean=%.3f%s", t, total, ratio, t < warm ? " (warm-up)" : "");
        for (int i = 0; i < x->nw; i++)
            printf(" %s=%ld", x->res->worker_id[i], x->live_w[i]);
        printf("\n");
        fflush(stdout);
    }
}

static int wb_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void wb_drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    wb_ctx_t *x = container_of(w, wb_ctx_t, drain);
    /* Graceful closes ran out of time: abort what is left. */
    for (long i = 0; i < x->ncl; i++)
        if (x->cl[i].in_use && wb_conn_active(&x->cl[i].conn))
            wb_conn_abort(&x->cl[i].conn, 1);
    ev_break(loop, EVBREAK_ONE);
}

/* Ends the measuring window and closes every connection gracefully. */
static void wb_stop(wb_ctx_t *x)
{
    if (x->phase == WB_PH_STOP)
        return;
    if (x->phase == WB_PH_RUN)
        x->res->elapsed = wb_secs_since(x->t_run_ns);
    x->phase = WB_PH_STOP;
    x->res->held_end = (uint64_t)x->live;
    ev_timer_stop(x->loop, &x->pace);
    ev_timer_stop(x->loop, &x->end);
    ev_timer_stop(x->loop, &x->sample);
    for (long i = 0; i < x->ncl; i++) {
        wb_client_t *k = &x->cl[i];
        if (!k->in_use)
            continue;
        if (!wb_conn_active(&k->conn)) {
            wb_client_put(k); /* waiting for a retry */
            continue;
        }
        ev_timer_stop(x->loop, &k->timer);
        k->self_closed = 1;
        wb_conn_close(&k->conn, WS_CLOSE_NORMAL);
    }
    if (x->live == 0) {
        ev_break(x->loop, EVBREAK_ONE);
        return;
    }
    ev_timer_set(&x->drain, WB_DRAIN_S, 0);
    ev_timer_start(x->loop, &x->drain);
}

static void wb_start_run(wb_ctx_t *x)
{
    x->phase = WB_PH_RUN;
    x->t_run_ns = wb_now_ns();
    ev_timer_set(&x->end, x->o->duration, 0);
    ev_timer_start(x->loop, &x->end);
    if (x->o->mode == WB_MODE_RTT || x->o->mode == WB_MODE_EVAL) {
        for (long i = 0; i < x->ncl; i++) {
            wb_client_t *k = &x->cl[i];
            if (!k->in_use || k->conn.state != WB_ST_OPEN)
                continue;
            if (x->o->mode == WB_MODE_RTT)
                for (long j = 0; j < x->o->inflight; j++)
                    wb_send_rtt(k);
            else if (!k->run_pending)
                wb_send_run(k);
        }
    }
}

/* The end timer doubles as "start measuring" for the ramp of rtt (also fed
 * by hand when every connection is open). */
static void wb_end_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    wb_ctx_t *x = container_of(w, wb_ctx_t, end);
    if (x->phase == WB_PH_RAMP) {
        ev_timer_stop(loop, w);
        wb_start_run(x);
        return;
    }
    if (x->phase == WB_PH_RUN && x->o->mode == WB_MODE_HOLD && !x->holding_sent)
        return;
    wb_stop(x);
}

static void wb_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    wb_ctx_t *x = container_of(w, wb_ctx_t, watchdog);
    log_warn("watchdog: run exceeded its time budget, stopping");
    if (x->phase != WB_PH_STOP)
        wb_stop(x);
    else
        wb_drain_cb(loop, &x->drain, 0);
}

static void wb_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    wb_ctx_t *x = w->data;
    if (x->phase == WB_PH_STOP)
        wb_drain_cb(loop, &x->drain, 0);
    else
        wb_stop(x);
}

/* Sizes the client pool: balance keeps about rate*life alive, with room for
 * the exponential tail; the others know their counts. */
long wb_pool_size(const wb_opts_t *o)
{
    switch (o->mode) {
    case WB_MODE_HOLD:
        return o->count;
    case WB_MODE_BALANCE: {
        if (o->life_ms <= 0)
            return o->conns;
        double alive = o->rate * o->life_ms / 1000.0;
        return (long)(alive * 2 + 200);
    }
    default:
        return o->conns;
    }
}

int wb_run(const wb_opts_t *o, wb_result_t *res, wb_holding_fn holding, void *ud, char *err,
           size_t errlen)
{
    wb_ctx_t x;
    int rc = -1;

    memset(&x, 0, sizeof(x));
    wb_result_init(res);
    x.o = o;
    x.res = res;
    x.holding = holding;
    x.holding_ud = ud;
    x.free_head = -1;
    srandom(o->seed);
    x.loop = ev_loop_new(EVFLAG_AUTO);
    if (x.loop == NULL) {
        snprintf(err, errlen, "ev_loop_new failed");
        return -1;
    }
    x.env.loop = x.loop;
    x.env.hs_timeout = o->hs_timeout;
    x.env.scratch = malloc(WB_CONN_SCRATCH);
    x.ncl = wb_pool_size(o);
    x.cl = calloc((size_t)(x.ncl > 0 ? x.ncl : 1), sizeof(*x.cl));
    if (x.env.scratch == NULL || x.cl == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < o->nurls; i++) {
        if (o->urls[i].tls && x.env.ssl_ctx == NULL) {
            x.env.ssl_ctx = wb_conn_ssl_ctx(err, errlen);
            if (x.env.ssl_ctx == NULL)
                goto out;
        }
    }
    for (long i = x.ncl - 1; i >= 0; i--) {
        x.cl[i].ctx = &x;
        x.cl[i].conn.fd = -1;
        x.cl[i].next_free = x.free_head;
        ev_timer_init(&x.cl[i].timer, o->mode == WB_MODE_BALANCE ? wb_lifetime_cb : wb_retry_cb, 1,
                      0);
        x.free_head = (int)i;
    }
    if (o->mode == WB_MODE_RTT) {
        x.payload = malloc((size_t)o->size);
        if (x.payload == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        for (long i = 0; i < o->size; i++)
            x.payload[i] = (uint8_t)random();
    }
    if (o->mode == WB_MODE_BALANCE) {
        x.ratios = malloc(sizeof(double) * WB_MAX_SAMPLES);
        if (x.ratios == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        if (o->series_path != NULL) {
            x.series = fopen(o->series_path, "w");
            if (x.series == NULL) {
                snprintf(err, errlen, "%s: %s", o->series_path, strerror(errno));
                goto out;
            }
            fprintf(x.series, "# t_s total max_over_mean live_w1..w%d opened_w1..w%d\n",
                    WB_MAX_WORKERS, WB_MAX_WORKERS);
        }
    }

    x.t0_ns = wb_now_ns();
    x.target = o->mode == WB_MODE_HOLD                        ? o->count
               : o->mode == WB_MODE_BALANCE && o->life_ms > 0 ? -1
                                                              : o->conns;
    if (o->mode == WB_MODE_BALANCE && o->keys > 0) {
        x.key_w = malloc(sizeof(int) * (size_t)o->keys);
        if (x.key_w == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        for (long i = 0; i < o->keys; i++)
            x.key_w[i] = -1;
    }
    ev_timer_init(&x.pace, wb_pace_cb, 0, WB_PACE_S);
    ev_timer_init(&x.end, wb_end_cb, 1, 0);
    ev_timer_init(&x.drain, wb_drain_cb, WB_DRAIN_S, 0);
    ev_timer_init(&x.sample, wb_sample_cb, o->interval, o->interval);
    /* Whatever happens, the loop ends: ramp + run + drain + slack. */
    double ramp = o->mode == WB_MODE_HOLD && o->rate > 0 ? o->count / o->rate : 0;
    ev_timer_init(&x.watchdog, wb_watchdog_cb, ramp + o->duration + o->hs_timeout + 30, 0);
    ev_timer_start(x.loop, &x.watchdog);
    ev_signal_init(&x.sigint, wb_signal_cb, SIGINT);
    ev_signal_init(&x.sigterm, wb_signal_cb, SIGTERM);
    x.sigint.data = x.sigterm.data = &x;
    ev_signal_start(x.loop, &x.sigint);
    ev_signal_start(x.loop, &x.sigterm);
    ev_unref(x.loop); /* signal watchers must not keep the loop alive */
    ev_unref(x.loop);

    switch (o->mode) {
    case WB_MODE_RTT:
        /* Ramp: open everything, then measure (end timer fires early when
         * all are open, or after the handshake timeout with what is open). */
        x.phase = WB_PH_RAMP;
        ev_timer_set(&x.end, o->hs_timeout + (o->rate > 0 ? o->conns / o->rate : 0), 0);
        ev_timer_start(x.loop, &x.end);
        break;
    case WB_MODE_EVAL:
        /* Clients start their first run on the hello; the window starts now. */
        wb_start_run(&x);
        break;
    case WB_MODE_HOLD:
        x.phase = WB_PH_RAMP;
        break;
    case WB_MODE_HANDSHAKE:
    case WB_MODE_BALANCE:
        wb_start_run(&x);
        if (o->mode == WB_MODE_BALANCE)
            ev_timer_start(x.loop, &x.sample);
        break;
    }
    ev_timer_start(x.loop, &x.pace);
    ev_run(x.loop, 0);

    if (x.phase != WB_PH_STOP)
        wb_stop(&x); /* loop ran dry: nothing left to do */
    if (o->mode == WB_MODE_BALANCE) {
        res->nworkers = x.nw;
        res->ratio_samples = (uint64_t)x.nratios;
        if (x.nratios > 0) {
            double sum = 0;
            qsort(x.ratios, (size_t)x.nratios, sizeof(double), wb_cmp_double);
            for (long i = 0; i < x.nratios; i++)
                sum += x.ratios[i];
            res->ratio_mean = sum / x.nratios;
            res->ratio_p50 = x.ratios[(long)ceil(0.50 * x.nratios) - 1];
            res->ratio_p99 = x.ratios[(long)ceil(0.99 * x.nratios) - 1];
            res->ratio_max = x.ratios[x.nratios - 1];
        }
    }
    rc = 0;

out:
    if (x.cl != NULL) {
        for (long i = 0; i < x.ncl; i++) {
            if (wb_conn_active(&x.cl[i].conn))
                wb_conn_abort(&x.cl[i].conn, 0);
            ev_timer_stop(x.loop, &x.cl[i].timer);
        }
    }
    if (x.series != NULL) {
        /* Worker names are only known once each has been seen: list them
         * last, in column order. */
        fprintf(x.series, "# workers:");
        for (int i = 0; i < x.nw; i++)
            fprintf(x.series, " %s", res->worker_id[i]);
        fprintf(x.series, "\n");
        fclose(x.series);
    }
    if (x.env.ssl_ctx != NULL)
        SSL_CTX_free(x.env.ssl_ctx);
    ev_ref(x.loop);
    ev_ref(x.loop);
    ev_signal_stop(x.loop, &x.sigint);
    ev_signal_stop(x.loop, &x.sigterm);
    ev_loop_destroy(x.loop);
    free(x.ratios);
    free(x.key_w);
    free(x.payload);
    free(x.cl);
    free(x.env.scratch);
    return rc;
}
