/* worker: serves websockets and runs sandboxed evaluations; see README. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "cfg.h"
#include "conn.h"
#include "fleet.h"
#include "log.h"
#include "met.h"
#include "met_names.h"
#include "pub.h"
#include "rb.h"
#include "run.h"
#include "slot.h"
#include "sock.h"
#include "wk.h"
#include "ws.h"

#define WK_CLOSE_WAIT 2.0 /* after the 1001 close frames, how long to wait for clients */

static void wk_exit_now(wk_t *w)
{
    ev_break(w->loop, EVBREAK_ALL);
}

static void wk_left(wk_t *w)
{
    log_info("drained; exiting");
    wk_exit_now(w);
}

/* Drives the drain: runs finish (or are killed at the deadline), then every
 * websocket gets a 1001, then the worker leaves Redis and exits. Called from
 * an idle watcher so that it never runs inside a connection's callback. */
static void wk_drain_step(struct ev_loop *loop, ev_idle *idle, int revents)
{
    wk_t *w = idle->data;
    ev_idle_stop(loop, idle);
    if (w->draining == DRAIN_RUNS && w->nrunning + w->nqueued == 0) {
        w->draining = DRAIN_CLOSING;
        log_info("drain: evaluations done; closing %zu websockets with 1001", w->nws);
        wc_close_all(w, WS_CLOSE_GOING_AWAY, "worker draining");
        ev_timer_stop(loop, &w->drain_timer);
        ev_timer_set(&w->drain_timer, WK_CLOSE_WAIT, 0.);
        ev_timer_start(loop, &w->drain_timer);
    }
    if (w->draining == DRAIN_CLOSING && w->nws == 0) {
        w->draining = DRAIN_LEAVING;
        ev_timer_stop(loop, &w->drain_timer);
        if (w->pub != NULL)
            pub_leave(w->pub, wk_left);
        else
            wk_left(w);
    }
}

static void wk_drain_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    wk_t *w = t->data;
    if (w->draining == DRAIN_RUNS) {
        log_warn("drain: deadline reached; killing %zu evaluations", w->nrunning + w->nqueued);
        run_kill_all(w, V_KILLED);
        /* The killed runs finish when reaped; the idle step moves on then. */
        return;
    }
    if (w->draining == DRAIN_CLOSING) {
        log_warn("drain: %zu websockets did not close in time; closing them", w->nws);
        wc_conn_t *c, *next;
        for (c = TAILQ_FIRST(&w->conns); c != NULL; c = next) {
            next = TAILQ_NEXT(c, link);
            if (c->kind != WC_HTTP)
                wc_close(c, "drain");
        }
        ev_idle_start(loop, &w->drain_check);
    }
}

static void wk_signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    wk_t *w = s->data;
    if (w->draining != DRAIN_NONE) {
        log_warn("second signal: exiting at once");
        run_kill_all(w, V_KILLED);
        wk_exit_now(w);
        return;
    }
    log_info("signal %d: draining (up to %ld s for running evaluations)", s->signum,
             w->cfg.drain_s);
    w->draining = DRAIN_RUNS;
    pub_drain(w->pub);
    ev_timer_init(&w->drain_timer, wk_drain_timer_cb, (double)w->cfg.drain_s, 0.);
    w->drain_timer.data = w;
    ev_timer_start(loop, &w->drain_timer);
    ev_idle_start(loop, &w->drain_check);
}

/* A slot became free, or one that was out of service stays out. */
static void wk_slots_changed(void *ud)
{
    wk_t *w = ud;
    run_pump(w);
    pub_changed(w->pub);
    wk_on_run_change(w);
}

static double wk_gauge_conns(void *ud)
{
    return (double)((wk_t *)ud)->nconns;
}
static double wk_gauge_ws(void *ud)
{
    return (double)((wk_t *)ud)->nws;
}
static double wk_gauge_running(void *ud)
{
    return (double)((wk_t *)ud)->nrunning;
}
static double wk_gauge_queued(void *ud)
{
    return (double)((wk_t *)ud)->nqueued;
}
static double wk_gauge_draining(void *ud)
{
    return ((wk_t *)ud)->draining ? 1.0 : 0.0;
}
static double wk_gauge_one(void *ud)
{
    return 1.0;
}

static double wk_gauge_redis(void *ud)
{
    const wk_t *w = ud;
    return pub_connected(w->pub);
}

static int wk_metrics(wk_t *w)
{
    static const double start_bounds[] = {0.001, 0.002, 0.003, 0.005, 0.0075, 0.01,
                                          0.015, 0.025, 0.05,  0.1,   0.25,   1};
    static const double wall_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    char labels[256];
    met_registry_t *m = w->met = met_create();
    if (m == NULL)
        return -1;
    met_set_legacy(m, w->cfg.metrics_legacy);
    met_gauge_fn(m, MN_WK_CONNECTIONS, NULL, "Open client connections (HTTP and websocket).",
                 wk_gauge_conns, w);
    met_gauge_fn(m, MN_WK_WEBSOCKETS, NULL, "Open websocket connections.", wk_gauge_ws, w);
    w->m_conns_total = met_counter(m, MN_WK_CONNECTIONS_TOTAL, NULL, "Accepted connections.");
    w->m_ws_total = met_counter(m, MN_WK_WEBSOCKETS_TOTAL, NULL, "Websocket upgrades.");
    met_gauge_fn(m, MN_WK_EVALS_RUNNING, NULL, "Evaluations holding a sandbox slot.",
                 wk_gauge_running, w);
    met_gauge_fn(m, MN_WK_EVALS_QUEUED, NULL, "Evaluations waiting for a slot.", wk_gauge_queued,
                 w);
    w->m_evals_total =
        met_counter(m, MN_WK_EVALS_TOTAL, NULL, "Evaluations finished, any verdict.");
    for (int v = 0; v < V__COUNT; v++) {
        snprintf(labels, sizeof(labels), "verdict=\"%s\"", run_verdict_name(v));
        w->m_verdict[v] =
            met_counter(m, MN_WK_VERDICTS, labels, "Evaluations finished, by verdict.");
    }
    w->m_proto_errors =
        met_counter(m, MN_WK_PROTOCOL_ERRORS, NULL, "Malformed requests, frames and messages.");
    w->m_requeued = met_counter(m, MN_WK_REQUEUED, NULL,
                                "Evaluations started again in another slot after theirs failed.");
    w->m_start_ms =
        met_hist(m, MN_WK_SANDBOX_START, NULL, "Time to start a sandboxed process, in seconds.",
                 start_bounds, sizeof(start_bounds) / sizeof(start_bounds[0]));
    w->m_wall_ms = met_hist(m, MN_WK_EVAL_DURATION, NULL, "Wall time of evaluations, in seconds.",
                            wall_bounds, sizeof(wall_bounds) / sizeof(wall_bounds[0]));
    met_gauge_fn(m, MN_WK_DRAINING, NULL, "1 while draining.", wk_gauge_draining, w);
    snprintf(labels, sizeof(labels), "level=\"%s\",cgroup=\"%s\"", sbx_isolation(w->sbx),
             sbx_cgroup_mode(w->sbx));
    met_gauge_fn(m, MN_WK_ISOLATION, labels, "Sandbox isolation in effect.", wk_gauge_one, w);
    return 0;
}

/* Default work roots: /tmp/wsworker-PID, or /tmp/wsworker-PID-N when a
 * live worker of another PID namespace (a container sharing /tmp) has the
 * same pid and holds that name. */
#define WK_ROOT_DIR    "/tmp"
#define WK_ROOT_PREFIX "wsworker-"
#define WK_ROOT_TRIES  16

/* Starts the sandbox in --work-root, or in a default root of its own after
 * removing those of workers that are gone (their mounts went with them,
 * their directories did not). Whether a worker is gone is told by the lock
 * it holds on its root, never by its pid: a pid means nothing in another PID
 * namespace. */
static sbx_t *wk_sandbox(wk_config_t *c, char *err, size_t errlen)
{
    sbx_config_t sc = {.work_root = c->work_root,
                       .slots = (unsigned)c->max_evals,
                       .uid_base = (uid_t)c->uid_base,
                       .memory_mb = (unsigned)c->memory_mb};
    if (c->work_root != NULL)
        return sbx_create(&sc, err, errlen);
    sbx_reap_roots(WK_ROOT_DIR, WK_ROOT_PREFIX);
    char root[64];
    sc.work_root = root;
    for (int n = 1; n <= WK_ROOT_TRIES; n++) {
        if (n == 1)
            snprintf(root, sizeof(root), WK_ROOT_DIR "/" WK_ROOT_PREFIX "%d", (int)getpid());
        else
            snprintf(root, sizeof(root), WK_ROOT_DIR "/" WK_ROOT_PREFIX "%d-%d", (int)getpid(), n);
        sbx_t *s = sbx_create(&sc, err, errlen);
        if (s != NULL)
            c->work_root = strdup(root);
        if (s != NULL || errno != EBUSY)
            return s;
    }
    return NULL;
}

static void wk_defaults(wk_config_t *c)
{
    c->listen = "127.0.0.1:9001";
    c->redis_prefix = FLEET_DEFAULT_PREFIX;
    c->log_level = "info";
    c->metrics_legacy = 1;
    c->max_evals = 0; /* below the bounds: "auto" in --help, computed after parsing */
    c->queue = -1;
    c->timeout_ms = 10000;
    c->memory_mb = 256;
    c->output_kb = 1024;
    c->max_message_kb = 1024;
    c->drain_s = 30;
    c->uid_base = 61000;
    c->rebalance_hold_s = 5;
    c->rebalance_idle_s = 30;
    c->rebalance_rate = 10;
}

/* Applies --log-level and --log-format; says why on stderr if it cannot. */
static int wk_setup_log(const wk_config_t *c, const char *log_format)
{
    log_set_tag("worker");
    enum log_level lvl;
    if (log_parse_level(c->log_level, &lvl) < 0) {
        fprintf(stderr, "worker: --log-level: unknown level '%s'\n", c->log_level);
        return -1;
    }
    log_set_level(lvl);
    enum log_format lfmt;
    if (log_parse_format(log_format, &lfmt) < 0) {
        fprintf(stderr, "worker: --log-format: unknown format '%s' (text or json)\n", log_format);
        return -1;
    }
    log_set_format(lfmt);
    return 0;
}

/* Checks and reads what the flags name before anything starts: the listen
 * address, the upstream secret, the Redis options. Logs what is wrong. */
static int wk_configure(wk_t *w, sock_addr_t *laddr, rds_config_t *rcfg)
{
    wk_config_t *c = &w->cfg;
    char err[512];
    if (c->max_evals == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        c->max_evals = 2 * (ncpu > 0 ? ncpu : 1);
    }
    if (c->queue < 0)
        c->queue = 4 * c->max_evals;
    if (sock_parse_addr(c->listen, laddr, err, sizeof(err)) < 0) {
        log_error("--listen: %s", err);
        return -1;
    }
    if (c->upstream_secret_file != NULL) {
        char *secret =
            cfg_read_secret("--upstream-secret-file", c->upstream_secret_file, err, sizeof(err));
        if (secret == NULL || strlen(secret) >= sizeof(w->upstream_secret)) {
            log_error("%s", secret == NULL ? err : "--upstream-secret-file: secret too long");
            free(secret);
            return -1;
        }
        memcpy(w->upstream_secret, secret, strlen(secret) + 1);
        free(secret);
    }
    if (rdo_config(c->redis, &c->rdo, rcfg, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

/* Listens, names the worker after its address unless --id/--advertise did,
 * and loads the runtimes. */
static int wk_listen(wk_t *w, sock_addr_t *laddr, char *idbuf, size_t idlen)
{
    wk_config_t *c = &w->cfg;
    char err[512];
    w->lfd = sock_listen(laddr, 1024, 0, err, sizeof(err));
    if (w->lfd < 0) {
        log_error("listen %s: %s", c->listen, err);
        return -1;
    }
    sock_local_addr(w->lfd, laddr);
    sock_addr_str(laddr, idbuf, idlen);
    if (c->id == NULL)
        c->id = strdup(idbuf);
    if (c->advertise == NULL)
        c->advertise = strdup(idbuf);

    if (c->runtimes != NULL) {
        if (rt_load_file(&w->rt, c->runtimes, err, sizeof(err)) < 0) {
            log_error("--runtimes: %s", err);
            return -1;
        }
        rt_prune_missing(&w->rt);
    } else {
        rt_load_defaults(&w->rt);
    }
    if (w->rt.n == 0)
        log_warn("no runtime is available: every run will fail");
    return 0;
}

/* --rebalance: needs the fleet's states, so Redis. Logs what is wrong. */
static struct rb *wk_rebalance(wk_t *w)
{
    wk_config_t *c = &w->cfg;
    unsigned th_milli = 1200;
    if (w->pub == NULL) {
        log_error(
            "--rebalance needs --redis or --redis-sentinel: it reads the fleet's counts there");
        return NULL;
    }
    char err[256];
    if (c->rebalance_threshold != NULL &&
        cfg_parse_milli("rebalance-threshold", c->rebalance_threshold, 1.0, 100.0, &th_milli, err,
                        sizeof(err)) < 0) {
        log_error("%s", err);
        return NULL;
    }
    rb_config_t rc = {.threshold_milli = th_milli,
                      .hold_s = (double)c->rebalance_hold_s,
                      .idle_s = (double)c->rebalance_idle_s,
                      .rate = (unsigned)c->rebalance_rate};
    struct rb *rb = rb_create(w, pub_rds(w->pub), &rc);
    if (rb == NULL)
        log_error("out of memory");
    else
        log_info("rebalance: on (max/mean over %.2f for %lds; idle %lds; %ld/s fleet-wide)",
                 th_milli / 1000.0, c->rebalance_hold_s, c->rebalance_idle_s, c->rebalance_rate);
    return rb;
}

/* Starts the sandbox, the loop, the slots, the publisher, the signal
 * watchers and accepting. rcfg is consumed. Stop signals are blocked by the
 * caller; they are let through once their watchers are in place. */
static int wk_start(wk_t *w, rds_config_t *rcfg, const sigset_t *stopsigs)
{
    wk_config_t *c = &w->cfg;
    char err[512];
    /* The sandbox forks helpers and reaps them itself, so it must exist
     * before libev's default loop installs its SIGCHLD handler. */
    w->sbx = wk_sandbox(c, err, sizeof(err));
    if (w->sbx == NULL) {
        log_error("sandbox: %s", err);
        return -1;
    }
    w->loop = ev_default_loop(EVFLAG_AUTO);
    if (w->loop == NULL || wk_metrics(w) < 0) {
        log_error("out of memory");
        return -1;
    }
    /* After sbx_create: the janitor thread must share its mount namespace. */
    w->slots = slot_pool_create(w->loop, w->sbx, (unsigned)c->max_evals, w->met, wk_slots_changed,
                                w, err, sizeof(err));
    if (w->slots == NULL) {
        log_error("sandbox slots: %s", err);
        return -1;
    }
    TAILQ_INIT(&w->conns);
    TAILQ_INIT(&w->closed);
    TAILQ_INIT(&w->queue);
    TAILQ_INIT(&w->running);
    if ((rcfg->addr != NULL || rcfg->sentinels != NULL) &&
        (w->pub = pub_create(w, rcfg, err, sizeof(err))) == NULL) {
        log_error("--redis: %s", err);
        return -1;
    }
    /* Rendered on this loop, where the publisher runs. */
    if (w->pub != NULL &&
        met_gauge_fn(w->met, MN_WK_REDIS_UP, NULL, "1 while the connection to Redis is up.",
                     wk_gauge_redis, w) < 0) {
        log_error("out of memory");
        return -1;
    }
    rdo_clear(rcfg);
    if (c->rebalance && (w->rb = wk_rebalance(w)) == NULL)
        return -1;
    ev_signal_init(&w->sigterm_w, wk_signal_cb, SIGTERM);
    ev_signal_init(&w->sigint_w, wk_signal_cb, SIGINT);
    w->sigterm_w.data = w->sigint_w.data = w;
    ev_signal_start(w->loop, &w->sigterm_w);
    ev_signal_start(w->loop, &w->sigint_w);
    sigprocmask(SIG_UNBLOCK, stopsigs, NULL);
    ev_idle_init(&w->drain_check, wk_drain_step);
    w->drain_check.data = w;
    ev_init(&w->drain_timer, wk_drain_timer_cb);
    w->drain_timer.data = w;
    if (wc_listen_start(w, err, sizeof(err)) < 0) {
        log_error("listen: %s", err);
        return -1;
    }
    return 0;
}

/* Closes whatever wk_listen and wk_start opened (any part of it). */
static void wk_stop(wk_t *w)
{
    if (w->loop != NULL) {
        wc_listen_stop(w);
        wc_conn_t *cn;
        while ((cn = TAILQ_FIRST(&w->conns)) != NULL)
            wc_close(cn, "exit");
        wc_reap(w);
        pub_free(w->pub); /* before rb_free: its pending replies still reach rb */
        rb_free(w->rb);
        ev_signal_stop(w->loop, &w->sigterm_w);
        ev_signal_stop(w->loop, &w->sigint_w);
        ev_timer_stop(w->loop, &w->drain_timer);
        ev_idle_stop(w->loop, &w->drain_check);
        ev_idle_stop(w->loop, &w->reaper);
    }
    if (w->lfd > 0)
        close(w->lfd);
    slot_pool_free(w->slots);
    sbx_free(w->sbx);
    met_free(w->met);
    rt_free(&w->rt);
    if (w->loop != NULL)
        ev_loop_destroy(w->loop);
}

/* Runs the worker until it has drained (0) or failed (1). */
static int wk_run(wk_t *w)
{
    int status = 1;
    sock_addr_t laddr;
    rds_config_t rcfg = {0};
    char idbuf[SOCK_ADDRSTRLEN];
    sigset_t stopsigs;
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGTERM);
    sigaddset(&stopsigs, SIGINT);
    if (wk_configure(w, &laddr, &rcfg) < 0)
        goto out;
    /* SIGTERM before the event loop handles it must not kill the worker
     * half-started: hold it until the ev_signal watchers are in place. */
    sigprocmask(SIG_BLOCK, &stopsigs, NULL);
    /* Ignore SIGPIPE: a client or program that goes away must give EPIPE, not
     * kill the worker. */
    signal(SIGPIPE, SIG_IGN);
    if (wk_listen(w, &laddr, idbuf, sizeof(idbuf)) < 0 || wk_start(w, &rcfg, &stopsigs) < 0)
        goto out;

    log_info("worker %s listening on %s (max-evals %ld, sandbox %s, cgroups %s, %zu runtimes)",
             w->cfg.id, idbuf, w->cfg.max_evals, sbx_isolation(w->sbx), sbx_cgroup_mode(w->sbx),
             w->rt.n);
    ev_run(w->loop, 0);
    status = w->draining == DRAIN_LEAVING ? 0 : 1;

out:
    /* Once the loop is done, a late SIGTERM (a supervisor's second one) must
     * not turn a clean exit into death by signal. */
    sigprocmask(SIG_BLOCK, &stopsigs, NULL);
    wk_stop(w);
    rdo_clear(&rcfg);
    return status;
}

int main(int argc, char **argv)
{
    wk_t w;
    memset(&w, 0, sizeof(w));
    wk_config_t *c = &w.cfg;
    wk_defaults(c);
    char *log_format = "text";
    const cfg_opt_t opts[] = {
        {"listen", CFG_STR, &c->listen, "HOST:PORT", "address to serve on (127.0.0.1:9001)", 0, 0},
        {"id", CFG_STR, &c->id, "NAME", "worker id in hello and Redis (default: HOST:PORT)", 0, 0},
        {"advertise", CFG_STR, &c->advertise, "HOST:PORT",
         "address the lb should dial (default: --listen)", 0, 0},
        {"redis", CFG_STR, &c->redis, "HOST:PORT", "publish state to this Redis", 0, 0},
        {"redis-prefix", CFG_STR, &c->redis_prefix, "PREFIX",
         "Redis key prefix (" FLEET_DEFAULT_PREFIX ")", 0, 0},
        RDO_CFG_OPTS(&c->rdo),
        {"max-evals", CFG_INT, &c->max_evals, "N", "concurrent evaluations (2 x cores)", 1, 1024},
        {"queue", CFG_INT, &c->queue, "N",
         "evaluations that may wait for a slot before 'busy' (4 x max-evals)", 0, 100000},
        {"timeout-ms", CFG_INT, &c->timeout_ms, "MS", "wall-clock limit per run (10000)", 1,
         86400000},
        {"memory-mb", CFG_INT, &c->memory_mb, "MB", "memory limit per run (256)", 8, 1048576},
        {"output-kb", CFG_INT, &c->output_kb, "KB", "stdout+stderr cap per run (1024)", 1, 1048576},
        {"max-message-kb", CFG_INT, &c->max_message_kb, "KB",
         "largest websocket message accepted (1024)", 1, 65536},
        {"runtimes", CFG_STR, &c->runtimes, "FILE", "runtimes file (built-in defaults)", 0, 0},
        {"work-root", CFG_STR, &c->work_root, "DIR",
         "where per-run work dirs live (/tmp/wsworker-PID)", 0, 0},
        {"uid-base", CFG_INT, &c->uid_base, "UID",
         "slot N runs as UID+N; workers sharing a host need ranges of their own (61000)", 1000,
         4000000000L},
        {"drain-s", CFG_INT, &c->drain_s, "S", "how long running evaluations may finish (30)", 0,
         86400},
        {"upstream-secret-file", CFG_STR, &c->upstream_secret_file, "FILE",
         "require this secret in X-Upstream-Secret on upgrades", 0, 0},
        {"rebalance", CFG_BOOL, &c->rebalance, NULL,
         "after a scale-out, close idle websockets over the fleet's mean with 1012 so they "
         "reconnect to emptier workers (off; needs --redis)",
         0, 0},
        {"rebalance-threshold", CFG_STR, &c->rebalance_threshold, "F",
         "with --rebalance, act when the fleet's max/mean of websockets stays above this (1.2)", 0,
         0},
        {"rebalance-hold-s", CFG_INT, &c->rebalance_hold_s, "S",
         "how long max/mean must stay above --rebalance-threshold (5)", 0, 3600},
        {"rebalance-idle-s", CFG_INT, &c->rebalance_idle_s, "S",
         "only websockets without a frame either way for this long, running nothing, are "
         "closed (30)",
         0, 86400},
        {"rebalance-rate", CFG_INT, &c->rebalance_rate, "N",
         "most websockets closed per second by the whole fleet, counted in Redis (10)", 1, 100000},
        {"log-level", CFG_STR, &c->log_level, "LEVEL", "debug|info|warn|error (info)", 0, 0},
        {"log-format", CFG_STR, &log_format, "FORMAT",
         "text|json: plain lines or one JSON object per line (text)", 0, 0},
        {"metrics-legacy", CFG_BOOL, &c->metrics_legacy, NULL,
         "/metrics also shows the deprecated worker_* and *_ms names beside the current "
         "wslb_worker_* ones (on; --metrics-legacy=no drops them; they go in 0.3.0)",
         0, 0},
        CFG_END,
    };
    char err[512];
    int rc = cfg_parse(opts, argc, argv,
                       "Websocket worker: sandboxed code evaluations, load published in Redis.",
                       VERSION, err, sizeof(err));
    if (rc != CFG_OK || wk_setup_log(c, log_format) < 0) {
        if (rc != CFG_OK && rc != CFG_EXIT)
            fprintf(stderr, "worker: %s (try --help)\n", err);
        cfg_free(opts);
        return rc == CFG_EXIT ? 0 : 2;
    }

    int status = wk_run(&w);
    cfg_free(opts);
    return status;
}
