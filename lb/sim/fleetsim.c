/* fleetsim: a fleet of simulated workers in one process, for measuring how
 * the lb's discovery, global counts and pick scale with the fleet
 * (bench/fleet.sh; README.md, "Fleet scale").
 *
 * The simulated workers publish what a real one does (worker/pub.c): the
 * state JSON of common/fleet.h with SET <prefix>worker:<id> PX
 * FLEET_STATE_TTL_MS and SADD <prefix>workers on connect, every
 * FLEET_HEARTBEAT_MS and FLEETSIM_COALESCE_S (pub.c's PUB_COALESCE) after a
 * change of their counts, and one join event, each on a Redis connection of
 * its own, starting one after the other over --ramp. They accept no
 * connections: their addresses are free loopback ports.
 *
 * Optionally it also runs --pickers in-process lbs made of the lb's own
 * code: a backend table (lb/be.c, --algo) fed by the lb's discovery
 * (lb/disc.c) from the same Redis, each with its own lb id. Simulated
 * clients arrive at --rate, each through the next picker in turn; the
 * pick's worker counts the connection as a real one would (conns and
 * by_lb, then a coalesced publish), so every picker sees the others'
 * connections only through Redis, as separate lbs do. It reports the
 * spread of connections over the workers (max/mean) and, sampled every
 * 100 ms, how far each picker's global count of each backend is from the
 * worker's real count, and how old its snapshot is.
 *
 * --pick-only N skips Redis: a table of N backends with published counts,
 * timed for CPU ns per pick (pick + release, so the counts stay put), by
 * the tree or (--scan) by the scan it replaced. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#include "be.h"
#include "disc.h"
#include "fleet.h"
#include "log.h"
#include "rds.h"
#include "sock.h"

/* worker/pub.c's coalescing of a burst of changes into one write. */
#define FLEETSIM_COALESCE_S  0.1
#define FLEETSIM_MAX_PICKERS FLEET_MAX_LBS
#define FLEETSIM_SAMPLE_S    0.1
#define FLEETSIM_TICK_S      0.001
/* The lb's default --slowstart-ms. */
#define FLEETSIM_SLOWSTART_MS 3000

typedef struct fleetsim fleetsim_t;

typedef struct sim_worker {
    fleetsim_t *fs;
    int idx;
    rds_t *r;
    ev_timer start, beat, soon;
    int joined;
    uint64_t started_ms;
    int64_t conns;
    int64_t by_lb[FLEETSIM_MAX_PICKERS];
    char id[32];
    char addr[32];
    char key[160];
} sim_worker_t;

typedef struct sim_picker {
    be_table_t *t;
    disc_t *d;
    char id[32];
} sim_picker_t;

struct fleetsim {
    struct ev_loop *loop;
    rds_config_t rc;
    const char *prefix;
    char set[160], chan[160];
    int nworkers, npickers;
    sim_worker_t *w;
    sim_picker_t p[FLEETSIM_MAX_PICKERS];
    double duration, warmup, rate, arrive, ramp;
    double discovered_at, done_at;
    const char *algo;
    long conns_target, conns_done, pick_fail;
    be_t **held; /* each pick, by picker in held_lb, released at the end */
    int *held_lb;
    long nheld;
    int next_picker;
    double arrive_start;
    ev_timer stop, tick, sample;
    uint64_t n_set, n_sadd, n_pub, n_connected;
    /* staleness, over every sample of every picker's backends */
    double err_sum, age_sum, conns_sum;
    uint64_t err_n, age_max, err_max;
    int port_base;
    unsigned seed;
};

/* ---- simulated workers (what worker/pub.c writes) ---------------------------- */

static void sw_write(sim_worker_t *w)
{
    fleetsim_t *fs = w->fs;
    if (!rds_connected(w->r))
        return;
    fleet_state_t st;
    memset(&st, 0, sizeof(st));
    snprintf(st.id, sizeof(st.id), "%s", w->id);
    snprintf(st.addr, sizeof(st.addr), "%s", w->addr);
    st.conns = w->conns;
    st.has = FLEET_HAS_ALL;
    st.max_evals = 4;
    st.ts_ms = fleet_wall_ms();
    st.started_ms = w->started_ms;
    snprintf(st.isolation, sizeof(st.isolation), "full");
    snprintf(st.version, sizeof(st.version), "%s", VERSION);
    for (int i = 0; i < fs->npickers; i++) {
        if (w->by_lb[i] == 0)
            continue;
        fleet_lb_count_t *c = &st.by_lb[st.nlbs++];
        snprintf(c->id, sizeof(c->id), "%s", fs->p[i].id);
        c->n = w->by_lb[i];
    }
    char *s = fleet_state_to_json(&st);
    if (s == NULL)
        return;
    rds_command(w->r, NULL, NULL, "SET %s %s PX %d", w->key, s, FLEET_STATE_TTL_MS);
    rds_command(w->r, NULL, NULL, "SADD %s %s", fs->set, w->id);
    fs->n_set++;
    fs->n_sadd++;
    free(s);
    if (!w->joined) {
        w->joined = 1;
        fleet_event_t e = {.type = FLEET_EV_JOIN};
        snprintf(e.id, sizeof(e.id), "%s", w->id);
        snprintf(e.addr, sizeof(e.addr), "%s", w->addr);
        char *j = fleet_event_to_json(&e);
        if (j != NULL && rds_command(w->r, NULL, NULL, "PUBLISH %s %s", fs->chan, j) == 0)
            fs->n_pub++;
        free(j);
    }
}

static void sw_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    sw_write(t->data);
}

static void sw_state_cb(rds_t *r, int connected, void *ud)
{
    sim_worker_t *w = ud;
    if (connected) {
        w->fs->n_connected++;
        w->joined = 0;
        sw_write(w);
    }
}

/* A connection of this worker's, through picker k: what the worker counts,
 * then a publish within FLEETSIM_COALESCE_S (pub_changed). */
static void sw_take(sim_worker_t *w, int k)
{
    w->conns++;
    w->by_lb[k]++;
    if (!ev_is_active(&w->soon))
        ev_timer_start(w->fs->loop, &w->soon);
}

static void sw_start_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    sim_worker_t *w = t->data;
    char err[256];
    w->started_ms = fleet_wall_ms();
    w->r = rds_create(loop, &w->fs->rc, sw_state_cb, w, err, sizeof(err));
    if (w->r == NULL) {
        fprintf(stderr, "fleetsim: worker %d: %s\n", w->idx, err);
        return;
    }
    ev_timer_start(loop, &w->beat);
}

static int sw_init(fleetsim_t *fs, sim_worker_t *w, int idx, char *err, size_t errlen)
{
    w->fs = fs;
    w->idx = idx;
    w->started_ms = fleet_wall_ms();
    snprintf(w->id, sizeof(w->id), "fsw-%05d", idx);
    /* Nothing listens there: the workers take no connections. */
    snprintf(w->addr, sizeof(w->addr), "127.0.0.1:%d", fs->port_base + idx);
    if (fleet_key_worker(fs->prefix, w->id, strlen(w->id), w->key, sizeof(w->key)) >=
        sizeof(w->key)) {
        snprintf(err, errlen, "--prefix too long");
        return -1;
    }
    /* Real workers start at different times: they start one after the
     * other over --ramp, which spreads their connects (thousands of them at
     * once overflow Redis's accept queue) and their heartbeats, since a
     * worker writes on connect and every FLEET_HEARTBEAT_MS after. */
    ev_timer_init(&w->start, sw_start_cb, fs->ramp * idx / fs->nworkers, 0.);
    ev_timer_init(&w->beat, sw_timer_cb, FLEET_HEARTBEAT_MS / 1000.0, FLEET_HEARTBEAT_MS / 1000.0);
    ev_timer_init(&w->soon, sw_timer_cb, FLEETSIM_COALESCE_S, 0.);
    w->start.data = w->beat.data = w->soon.data = w;
    ev_timer_start(fs->loop, &w->start);
    return 0;
}

static void sw_fini(fleetsim_t *fs, sim_worker_t *w)
{
    ev_timer_stop(fs->loop, &w->start);
    ev_timer_stop(fs->loop, &w->beat);
    ev_timer_stop(fs->loop, &w->soon);
    rds_free(w->r);
}

/* ---- pickers: the lb's table and discovery, in process ------------------------- */

static double fs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fs_all_discovered(fleetsim_t *fs)
{
    for (int k = 0; k < fs->npickers; k++)
        if ((int)be_table_count(fs->p[k].t) < fs->nworkers)
            return 0;
    return 1;
}

/* The worker a backend stands for: its id is fsw-<index>. */
static sim_worker_t *fs_worker_of(fleetsim_t *fs, be_t *b)
{
    int idx = atoi(be_id(b) + 4);
    return idx >= 0 && idx < fs->nworkers ? &fs->w[idx] : NULL;
}

static void fs_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    fleetsim_t *fs = t->data;
    double now = fs_now();
    if (fs->arrive_start == 0) {
        /* Arrivals start once every picker knows every worker and their
         * slow start is over: the steady state, not an lb's first seconds
         * (or at the end of the warm-up, whichever is first). */
        if (fs->discovered_at == 0 && fs_all_discovered(fs))
            fs->discovered_at = now;
        if (now < fs->warmup &&
            (fs->discovered_at == 0 || now < fs->discovered_at + FLEETSIM_SLOWSTART_MS / 1000.0))
            return;
        fs->arrive_start = now;
    }
    if (fs->conns_done >= fs->conns_target) {
        /* A moment for the last publishes to land, then stop. */
        if (fs->done_at == 0)
            fs->done_at = now;
        else if (now >= fs->done_at + 2 * FLEETSIM_COALESCE_S)
            ev_break(loop, EVBREAK_ALL);
        return;
    }
    long due = (long)((now - fs->arrive_start) * fs->rate);
    if (due > fs->conns_target)
        due = fs->conns_target;
    while (fs->conns_done < due) {
        int k = fs->next_picker;
        fs->next_picker = (k + 1) % fs->npickers;
        be_t *b = be_pick(fs->p[k].t, NULL, 0);
        fs->conns_done++;
        if (b == NULL) {
            fs->pick_fail++;
            continue;
        }
        sim_worker_t *w = fs_worker_of(fs, b);
        fs->held[fs->nheld] = b;
        fs->held_lb[fs->nheld++] = k;
        if (w == NULL) {
            fs->pick_fail++;
            continue;
        }
        sw_take(w, k); /* held until the end, as be_pick counted it */
    }
}

/* Each picker's global count of each backend against the worker's own
 * count now, and the age of the snapshot it rests on. */
static void fs_sample_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    fleetsim_t *fs = t->data;
    if (fs->arrive_start == 0 || fs->conns_done >= fs->conns_target)
        return;
    uint64_t wall = fleet_wall_ms();
    for (int k = 0; k < fs->npickers; k++) {
        be_table_t *tb = fs->p[k].t;
        for (size_t i = 0; i < be_table_count(tb); i++) {
            be_t *b = be_table_at(tb, i);
            sim_worker_t *w = fs_worker_of(fs, b);
            if (w == NULL || !be_has_remote(b))
                continue;
            int64_t e = be_conns(b) - w->conns;
            uint64_t ae = (uint64_t)(e < 0 ? -e : e);
            uint64_t ts = be_remote_ts_ms(b), age = wall > ts ? wall - ts : 0;
            fs->err_sum += (double)ae;
            fs->conns_sum += (double)w->conns;
            fs->age_sum += (double)age;
            fs->err_n++;
            if (age > fs->age_max)
                fs->age_max = age;
            if (ae > fs->err_max)
                fs->err_max = ae;
        }
    }
}

static void fs_stop_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static double fs_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU ns per pick (pick + release) on table t, over iters picks: this
 * thread's CPU time, which other work on the machine hardly changes. With
 * scan, each pick excludes a backend that is not in the table, which sends
 * leastconn down the scan of every backend it keeps for retries: the pick
 * as it was before the tree. */
static double fs_time_picks(be_table_t *t, long iters, int scan)
{
    static be_t *const none[1] = {(be_t *)&fs_time_picks};
    double t0 = fs_cpu_now();
    for (long i = 0; i < iters; i++) {
        be_t *b = be_pick(t, scan ? none : NULL, scan);
        if (b)
            be_release(t, b);
    }
    return (fs_cpu_now() - t0) * 1e9 / (double)iters;
}

/* --pick-only: no Redis; n backends with published counts spread like a
 * fleet's (0..2*mean), this lb's own share a tenth of them. */
static int fs_pick_only(int n, long iters, unsigned seed, int scan)
{
    be_table_t *t = be_table_create(be_algo_find("leastconn"), 0);
    if (t == NULL)
        return 1;
    uint64_t ts = fleet_wall_ms();
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "fsw-%05d", i);
        sock_addr_t sa;
        char addr[32], err[128];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", 20000 + i % 40000);
        if (sock_parse_addr(addr, &sa, err, sizeof(err)) < 0) {
            fprintf(stderr, "fleetsim: %s\n", err);
            return 1;
        }
        be_t *b = be_add(t, id, &sa, 1, BE_STATIC);
        if (b == NULL)
            return 1;
        int64_t conns = rand_r(&seed) % 1000;
        be_update_remote_ex(t, b, conns, rand_r(&seed) % 4, ts, conns / 10);
    }
    double ns = fs_time_picks(t, iters, scan);
    printf("RESULT mode=pick backends=%d iters=%ld path=%s ns_per_pick=%.1f\n", n, iters,
           scan ? "scan" : "tree", ns);
    be_table_free(t);
    return 0;
}

static void fs_usage(FILE *f)
{
    fprintf(f, "usage: fleetsim --redis HOST:PORT --workers N [options]\n"
               "       fleetsim --pick-only N [--iters K] [--scan]\n"
               "\n"
               "Simulated workers publishing the real state format at the real rate, and\n"
               "optionally in-process lbs (the lb's table and discovery) picking for simulated\n"
               "clients. Prints one line 'RESULT mode=fleet key=value ...'.\n"
               "\n"
               "  --redis HOST:PORT  Redis to publish into\n"
               "  --prefix P         key prefix (default " FLEET_DEFAULT_PREFIX ")\n"
               "  --workers N        simulated workers (1..10000)\n"
               "  --duration S       seconds to run at most (default 5; with pickers the run\n"
               "                     ends once every connection is placed)\n"
               "  --port-base P      first advertised port (default 20000; nothing listens)\n"
               "  --ramp S           the workers start one after the other over S seconds\n"
               "                     (default 1)\n"
               "  --pickers L        in-process lbs picking (0..32, default 0)\n"
               "  --conns C          simulated connections, spread over the pickers in turn\n"
               "                     (default 10 per worker)\n"
               "  --arrive S         seconds over which they arrive (default 3), once every\n"
               "                     picker knows every worker and its slow start is over\n"
               "  --rate R           connections per second (default: C / arrive)\n"
               "  --algo NAME        the pickers' --algo (default leastconn)\n"
               "  --warmup S         longest wait for discovery before arrivals (default 5)\n"
               "  --pick-only N      time the pick on N backends without Redis\n"
               "  --iters K          picks to time (default 200000)\n"
               "  --scan             --pick-only through leastconn's scan of every backend\n"
               "                     (its path for retries; the pick before the tree)\n"
               "  --seed N           random seed (default 1)\n");
}

int main(int argc, char **argv)
{
    fleetsim_t fs = {.prefix = FLEET_DEFAULT_PREFIX,
                     .duration = 5,
                     .warmup = 5,
                     .port_base = 20000,
                     .seed = 1,
                     .conns_target = -1,
                     .arrive = 3,
                     .ramp = 1,
                     .algo = "leastconn"};
    long pick_only = 0, iters = 200000;
    int scan = 0;
    enum {
        O_REDIS = 256,
        O_PREFIX,
        O_WORKERS,
        O_DURATION,
        O_PORT_BASE,
        O_PICKERS,
        O_CONNS,
        O_RATE,
        O_WARMUP,
        O_PICK_ONLY,
        O_ITERS,
        O_SEED,
        O_ARRIVE,
        O_ALGO,
        O_SCAN,
        O_RAMP
    };
    static const struct option opts[] = {
        {"redis", required_argument, 0, O_REDIS},
        {"prefix", required_argument, 0, O_PREFIX},
        {"workers", required_argument, 0, O_WORKERS},
        {"duration", required_argument, 0, O_DURATION},
        {"port-base", required_argument, 0, O_PORT_BASE},
        {"pickers", required_argument, 0, O_PICKERS},
        {"conns", required_argument, 0, O_CONNS},
        {"rate", required_argument, 0, O_RATE},
        {"warmup", required_argument, 0, O_WARMUP},
        {"pick-only", required_argument, 0, O_PICK_ONLY},
        {"iters", required_argument, 0, O_ITERS},
        {"seed", required_argument, 0, O_SEED},
        {"arrive", required_argument, 0, O_ARRIVE},
        {"algo", required_argument, 0, O_ALGO},
        {"scan", no_argument, 0, O_SCAN},
        {"ramp", required_argument, 0, O_RAMP},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_REDIS:
            fs.rc.addr = optarg;
            break;
        case O_PREFIX:
            fs.prefix = optarg;
            break;
        case O_WORKERS:
            fs.nworkers = atoi(optarg);
            break;
        case O_DURATION:
            fs.duration = atof(optarg);
            break;
        case O_PORT_BASE:
            fs.port_base = atoi(optarg);
            break;
        case O_PICKERS:
            fs.npickers = atoi(optarg);
            break;
        case O_CONNS:
            fs.conns_target = atol(optarg);
            break;
        case O_RATE:
            fs.rate = atof(optarg);
            break;
        case O_WARMUP:
            fs.warmup = atof(optarg);
            break;
        case O_PICK_ONLY:
            pick_only = atol(optarg);
            break;
        case O_ITERS:
            iters = atol(optarg);
            break;
        case O_ARRIVE:
            fs.arrive = atof(optarg);
            break;
        case O_ALGO:
            fs.algo = optarg;
            break;
        case O_SCAN:
            scan = 1;
            break;
        case O_RAMP:
            fs.ramp = atof(optarg);
            break;
        case O_SEED:
            fs.seed = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'h':
            fs_usage(stdout);
            return 0;
        default:
            fs_usage(stderr);
            return 2;
        }
    }
    log_set_level(LOG_LVL_WARN);
    if (pick_only > 0) {
        if (pick_only > 100000 || iters < 1) {
            fprintf(stderr, "fleetsim: --pick-only 1..100000, --iters >= 1\n");
            return 2;
        }
        return fs_pick_only((int)pick_only, iters, fs.seed, scan);
    }
    if (fs.rc.addr == NULL || fs.nworkers < 1 || fs.nworkers > 10000 || fs.npickers < 0 ||
        fs.npickers > FLEETSIM_MAX_PICKERS || fs.duration <= 0 || fs.arrive <= 0 || fs.ramp < 0 ||
        fs.port_base < 1 || fs.port_base + fs.nworkers > 65536) {
        fs_usage(stderr);
        return 2;
    }
    if (fs.conns_target < 0)
        fs.conns_target = 10L * fs.nworkers;
    if (fs.rate <= 0)
        fs.rate = (double)fs.conns_target / fs.arrive;
    if (be_algo_find(fs.algo) == NULL) {
        fprintf(stderr, "fleetsim: unknown --algo %s\n", fs.algo);
        return 2;
    }
    if (fleet_key_workers(fs.prefix, fs.set, sizeof(fs.set)) >= sizeof(fs.set) ||
        fleet_key_events(fs.prefix, fs.chan, sizeof(fs.chan)) >= sizeof(fs.chan)) {
        fprintf(stderr, "fleetsim: --prefix too long\n");
        return 2;
    }
    int rc = 1;
    char err[256];
    fs.loop = EV_DEFAULT;
    fs.w = calloc((size_t)fs.nworkers, sizeof(*fs.w));
    fs.held = calloc((size_t)fs.conns_target + 1, sizeof(*fs.held));
    fs.held_lb = calloc((size_t)fs.conns_target + 1, sizeof(*fs.held_lb));
    if (fs.w == NULL || fs.held == NULL || fs.held_lb == NULL)
        goto out;
    int nw = 0;
    for (; nw < fs.nworkers; nw++)
        if (sw_init(&fs, &fs.w[nw], nw, err, sizeof(err)) < 0) {
            fprintf(stderr, "fleetsim: worker %d: %s\n", nw, err);
            goto out_workers;
        }
    int np = 0;
    for (; np < fs.npickers; np++) {
        sim_picker_t *p = &fs.p[np];
        snprintf(p->id, sizeof(p->id), "fleetsim-lb%d", np);
        /* The lb's default slow start. */
        p->t = be_table_create(be_algo_find(fs.algo), FLEETSIM_SLOWSTART_MS);
        p->d = p->t ? disc_create(fs.loop, p->t, &fs.rc, fs.prefix, err, sizeof(err)) : NULL;
        if (p->d == NULL) {
            fprintf(stderr, "fleetsim: picker %d: %s\n", np, p->t ? err : "out of memory");
            be_table_free(p->t);
            goto out_pickers;
        }
        disc_set_lb_id(p->d, p->id);
    }
    double t0 = fs_now();
    fs.warmup += t0;
    ev_timer_init(&fs.stop, fs_stop_cb, fs.duration, 0.);
    ev_timer_start(fs.loop, &fs.stop);
    if (fs.npickers > 0) {
        ev_timer_init(&fs.tick, fs_tick_cb, FLEETSIM_TICK_S, FLEETSIM_TICK_S);
        ev_timer_init(&fs.sample, fs_sample_cb, FLEETSIM_SAMPLE_S, FLEETSIM_SAMPLE_S);
        fs.tick.data = fs.sample.data = &fs;
        ev_timer_start(fs.loop, &fs.tick);
        ev_timer_start(fs.loop, &fs.sample);
    }
    ev_run(fs.loop, 0);
    ev_timer_stop(fs.loop, &fs.tick);
    ev_timer_stop(fs.loop, &fs.sample);

    /* The spread of connections over the workers, as the workers count. */
    int64_t cmax = 0, csum = 0;
    for (int i = 0; i < fs.nworkers; i++) {
        csum += fs.w[i].conns;
        if (fs.w[i].conns > cmax)
            cmax = fs.w[i].conns;
    }
    double mean = (double)csum / fs.nworkers, ran = fs_now() - t0;
    size_t disc_min = fs.npickers ? (size_t)-1 : 0;
    for (int k = 0; k < fs.npickers; k++)
        if (be_table_count(fs.p[k].t) < disc_min)
            disc_min = be_table_count(fs.p[k].t);
    double pick_ns = fs.npickers ? fs_time_picks(fs.p[0].t, iters, 0) : 0;
    printf("RESULT mode=fleet workers=%d pickers=%d seconds=%.1f connected=%" PRIu64
           " sets=%" PRIu64 " sadds=%" PRIu64 " joins=%" PRIu64 " conns=%" PRId64
           " pick_fail=%ld discovered_min=%zu max=%" PRId64 " mean=%.2f max_over_mean=%.3f"
           " count_err_mean=%.3f count_err_max=%" PRIu64 " count_err_rel=%.4f"
           " age_mean_ms=%.0f age_max_ms=%" PRIu64 " pick_ns=%.1f\n",
           fs.nworkers, fs.npickers, ran, fs.n_connected, fs.n_set, fs.n_sadd, fs.n_pub, csum,
           fs.pick_fail, disc_min, cmax, mean, mean > 0 ? (double)cmax / mean : 0,
           fs.err_n ? fs.err_sum / (double)fs.err_n : 0, fs.err_max,
           fs.conns_sum > 0 ? fs.err_sum / fs.conns_sum : 0,
           fs.err_n ? fs.age_sum / (double)fs.err_n : 0, fs.age_max, pick_ns);
    fflush(stdout);
    rc = 0;
out_pickers:
    for (long i = 0; i < fs.nheld; i++)
        be_release(fs.p[fs.held_lb[i]].t, fs.held[i]);
    for (int k = 0; k < np; k++) {
        disc_free(fs.p[k].d);
        be_table_free(fs.p[k].t);
    }
out_workers:
    for (int i = 0; i < nw; i++)
        sw_fini(&fs, &fs.w[i]);
out:
    free(fs.w);
    free(fs.held);
    free(fs.held_lb);
    return rc;
}
