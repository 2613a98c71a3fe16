/* worker: serves websockets and runs sandboxed evaluations; see README. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "pub.h"
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

static int wk_metrics(wk_t *w)
{
    static const double ms_bounds[] = {1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 1000};
    static const double wall_bounds[] = {10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000};
    char labels[256];
    met_registry_t *m = w->met = met_create();
    if (m == NULL)
        return -1;
    met_gauge_fn(m, "worker_connections", NULL, "Open client connections (HTTP and websocket).",
                 wk_gauge_conns, w);
    met_gauge_fn(m, "worker_websockets", NULL, "Open websocket connections.", wk_gauge_ws, w);
    w->m_conns_total = met_counter(m, "worker_connections_total", NULL, "Accepted connections.");
    w->m_ws_total = met_counter(m, "worker_websockets_total", NULL, "Websocket upgrades.");
    met_gauge_fn(m, "worker_evaluations_running", NULL, "Evaluations holding a sandbox slot.",
                 wk_gauge_running, w);
    met_gauge_fn(m, "worker_evaluations_queued", NULL, "Evaluations waiting for a slot.",
                 wk_gauge_queued, w);
    w->m_evals_total =
        met_counter(m, "worker_evaluations_total", NULL, "Evaluations finished, any verdict.");
    for (int v = 0; v < V__COUNT; v++) {
        snprintf(labels, sizeof(labels), "verdict=\"%s\"", run_verdict_name(v));
        w->m_verdict[v] =
            met_counter(m, "worker_verdicts_total", labels, "Evaluations finished, by verdict.");
    }
    w->m_proto_errors = met_counter(m, "worker_protocol_errors_total", NULL,
                                    "Malformed requests, frames and messages.");
    w->m_requeued = met_counter(m, "worker_evaluations_requeued_total", NULL,
                                "Evaluations started again in another slot after theirs failed.");
    w->m_start_ms = met_hist(m, "worker_sandbox_start_ms", NULL,
                             "Time to start a sandboxed process, in milliseconds.", ms_bounds,
                             sizeof(ms_bounds) / sizeof(ms_bounds[0]));
    w->m_wall_ms =
        met_hist(m, "worker_evaluation_wall_ms", NULL, "Wall time of evaluations, in milliseconds.",
                 wall_bounds, sizeof(wall_bounds) / sizeof(wall_bounds[0]));
    met_gauge_fn(m, "worker_draining", NULL, "1 while draining.", wk_gauge_draining, w);
    snprintf(labels, sizeof(labels), "level=\"%s\",cgroup=\"%s\"", sbx_isolation(w->sbx),
             sbx_cgroup_mode(w->sbx));
    met_gauge_fn(m, "worker_isolation_info", labels, "Sandbox isolation in effect.", wk_gauge_one,
                 w);
    return 0;
}

/* Removes the empty work roots (/tmp/wsworker-PID) that workers killed with
 * SIGKILL left behind: their mounts went with them, their directories did
 * not. Only empty directories are removed (rmdir), never files, and only for
 * pids that no longer exist. */
static void wk_clean_stale_roots(void)
{
    DIR *d = opendir("/tmp");
    if (d == NULL)
        return;
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        if (strncmp(e->d_name, "wsworker-", 9) != 0)
            continue;
        long pid = strtol(e->d_name + 9, &end, 10);
        if (*end != '\0' || pid <= 0 || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        int rfd = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (rfd < 0)
            continue;
        DIR *rd = fdopendir(rfd);
        if (rd == NULL) {
            close(rfd);
            continue;
        }
        struct dirent *s;
        while ((s = readdir(rd)) != NULL)
            if (strcmp(s->d_name, ".") != 0 && strcmp(s->d_name, "..") != 0)
                (void)unlinkat(rfd, s->d_name, AT_REMOVEDIR);
        closedir(rd);
        (void)unlinkat(dfd, e->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    wk_t w;
    sigset_t stopsigs;
    memset(&w, 0, sizeof(w));
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    wk_config_t *c = &w.cfg;
    c->listen = "127.0.0.1:9001";
    c->redis_prefix = FLEET_DEFAULT_PREFIX;
    c->log_level = "info";
    c->max_evals = 2 * (ncpu > 0 ? ncpu : 1);
    c->queue = -1;
    c->timeout_ms = 10000;
    c->memory_mb = 256;
    c->output_kb = 1024;
    c->max_message_kb = 1024;
    c->drain_s = 30;
    char *log_format = "text";
    c->uid_base = 61000;
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
        {"log-level", CFG_STR, &c->log_level, "LEVEL", "debug|info|warn|error (info)", 0, 0},
        {"log-format", CFG_STR, &log_format, "FORMAT",
         "text|json: plain lines or one JSON object per line (text)", 0, 0},
        CFG_END,
    };
    char err[512];
    rds_config_t rcfg = {0};
    char idbuf[SOCK_ADDRSTRLEN], workroot[256];
    int rc = cfg_parse(opts, argc, argv,
                       "Websocket worker: sandboxed code evaluations, load published in Redis.",
                       VERSION, err, sizeof(err));
    if (rc == CFG_EXIT) {
        cfg_free(opts);
        return 0;
    }
    int status = 1;
    if (rc != CFG_OK) {
        fprintf(stderr, "worker: %s (try --help)\n", err);
        cfg_free(opts);
        return 2;
    }
    log_set_tag("worker");
    enum log_level lvl;
    if (log_parse_level(c->log_level, &lvl) < 0) {
        fprintf(stderr, "worker: --log-level: unknown level '%s'\n", c->log_level);
        cfg_free(opts);
        return 2;
    }
    log_set_level(lvl);
    enum log_format lfmt;
    if (log_parse_format(log_format, &lfmt) < 0) {
        fprintf(stderr, "worker: --log-format: unknown format '%s' (text or json)\n", log_format);
        cfg_free(opts);
        return 2;
    }
    log_set_format(lfmt);
    if (c->queue < 0)
        c->queue = 4 * c->max_evals;

    sock_addr_t laddr;
    if (sock_parse_addr(c->listen, &laddr, err, sizeof(err)) < 0) {
        log_error("--listen: %s", err);
        goto out;
    }
    if (c->upstream_secret_file != NULL) {
        char *secret =
            cfg_read_secret("--upstream-secret-file", c->upstream_secret_file, err, sizeof(err));
        if (secret == NULL || strlen(secret) >= sizeof(w.upstream_secret)) {
            log_error("%s", secret == NULL ? err : "--upstream-secret-file: secret too long");
            free(secret);
            goto out;
        }
        memcpy(w.upstream_secret, secret, strlen(secret) + 1);
        free(secret);
    }
    if (rdo_config(c->redis, &c->rdo, &rcfg, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    /* SIGTERM before the event loop handles it must not kill the worker
     * half-started: hold it until the ev_signal watchers are in place. */
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGTERM);
    sigaddset(&stopsigs, SIGINT);
    sigprocmask(SIG_BLOCK, &stopsigs, NULL);
    /* Ignore SIGPIPE: a client or program that goes away must give EPIPE, not
     * kill the worker. */
    signal(SIGPIPE, SIG_IGN);

    w.lfd = sock_listen(&laddr, 1024, 0, err, sizeof(err));
    if (w.lfd < 0) {
        log_error("listen %s: %s", c->listen, err);
        goto out;
    }
    sock_local_addr(w.lfd, &laddr);
    sock_addr_str(&laddr, idbuf, sizeof(idbuf));
    if (c->id == NULL)
        c->id = strdup(idbuf);
    if (c->advertise == NULL)
        c->advertise = strdup(idbuf);

    if (c->runtimes != NULL) {
        if (rt_load_file(&w.rt, c->runtimes, err, sizeof(err)) < 0) {
            log_error("--runtimes: %s", err);
            goto out;
        }
        rt_prune_missing(&w.rt);
    } else {
        rt_load_defaults(&w.rt);
    }
    if (w.rt.n == 0)
        log_warn("no runtime is available: every run will fail");

    /* The sandbox forks helpers and reaps them itself, so it must exist
     * before libev's default loop installs its SIGCHLD handler. */
    if (c->work_root == NULL) {
        wk_clean_stale_roots();
        snprintf(workroot, sizeof(workroot), "/tmp/wsworker-%d", (int)getpid());
        c->work_root = strdup(workroot);
    }
    sbx_config_t sc = {.work_root = c->work_root,
                       .slots = (unsigned)c->max_evals,
                       .uid_base = (uid_t)c->uid_base,
                       .memory_mb = (unsigned)c->memory_mb};
    w.sbx = sbx_create(&sc, err, sizeof(err));
    if (w.sbx == NULL) {
        log_error("sandbox: %s", err);
        goto out;
    }
    w.loop = ev_default_loop(EVFLAG_AUTO);
    if (w.loop == NULL || wk_metrics(&w) < 0) {
        log_error("out of memory");
        goto out;
    }
    /* After sbx_create: the janitor thread must share its mount namespace. */
    w.slots = slot_pool_create(w.loop, w.sbx, (unsigned)c->max_evals, w.met, wk_slots_changed, &w,
                               err, sizeof(err));
    if (w.slots == NULL) {
        log_error("sandbox slots: %s", err);
        goto out;
    }
    TAILQ_INIT(&w.conns);
    TAILQ_INIT(&w.closed);
    TAILQ_INIT(&w.queue);
    if ((rcfg.addr != NULL || rcfg.sentinels != NULL) &&
        (w.pub = pub_create(&w, &rcfg, err, sizeof(err))) == NULL) {
        log_error("--redis: %s", err);
        goto out;
    }
    rdo_clear(&rcfg);
    ev_signal_init(&w.sigterm_w, wk_signal_cb, SIGTERM);
    ev_signal_init(&w.sigint_w, wk_signal_cb, SIGINT);
    w.sigterm_w.data = w.sigint_w.data = &w;
    ev_signal_start(w.loop, &w.sigterm_w);
    ev_signal_start(w.loop, &w.sigint_w);
    sigprocmask(SIG_UNBLOCK, &stopsigs, NULL);
    ev_idle_init(&w.drain_check, wk_drain_step);
    w.drain_check.data = &w;
    ev_init(&w.drain_timer, wk_drain_timer_cb);
    w.drain_timer.data = &w;
    if (wc_listen_start(&w, err, sizeof(err)) < 0) {
        log_error("listen: %s", err);
        goto out;
    }

    log_info("worker %s listening on %s (max-evals %ld, sandbox %s, cgroups %s, %zu runtimes)",
             c->id, idbuf, c->max_evals, sbx_isolation(w.sbx), sbx_cgroup_mode(w.sbx), w.rt.n);
    ev_run(w.loop, 0);
    status = w.draining == DRAIN_LEAVING ? 0 : 1;

out:
    /* Once the loop is done, a late SIGTERM (a supervisor's second one) must
     * not turn a clean exit into death by signal. */
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGTERM);
    sigaddset(&stopsigs, SIGINT);
    sigprocmask(SIG_BLOCK, &stopsigs, NULL);
    if (w.loop != NULL) {
        wc_listen_stop(&w);
        wc_conn_t *cn;
        while ((cn = TAILQ_FIRST(&w.conns)) != NULL)
            wc_close(cn, "exit");
        wc_reap(&w);
        pub_free(w.pub);
        ev_signal_stop(w.loop, &w.sigterm_w);
        ev_signal_stop(w.loop, &w.sigint_w);
        ev_timer_stop(w.loop, &w.drain_timer);
        ev_idle_stop(w.loop, &w.drain_check);
        ev_idle_stop(w.loop, &w.reaper);
    }
    if (w.lfd > 0)
        close(w.lfd);
    slot_pool_free(w.slots);
    sbx_free(w.sbx);
    met_free(w.met);
    rt_free(&w.rt);
    rdo_clear(&rcfg);
    if (w.loop != NULL)
        ev_loop_destroy(w.loop);
    cfg_free(opts);
    return status;
}
