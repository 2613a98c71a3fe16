/* wk: the worker's one context struct, shared by its modules.
 *
 * Everything the worker owns hangs off a wk_t: the listening socket, the
 * connections, the evaluation queue, the sandbox, the Redis publisher and
 * the metrics. Nothing is global; signal handling goes through ev_signal. */
#ifndef WORKER_WK_H
#define WORKER_WK_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "fleet.h"
#include "met.h"
#include "rdo.h"
#include "rt.h"
#include "sbx.h"
#include "sock.h"

struct wc_conn;
struct run;
struct pub;
struct rb;
struct slot_pool;

typedef struct wk_config {
    char *listen;
    char *id;
    char *advertise;
    char *redis;
    char *redis_prefix;
    char *runtimes;
    char *work_root;
    char *log_level;
    int metrics_legacy; /* --metrics-legacy: /metrics also shows the deprecated names */
    char *upstream_secret_file;
    long max_evals;
    long queue;
    long timeout_ms;
    long memory_mb;
    long output_kb;
    long max_message_kb;
    long drain_s;
    rdo_t rdo; /* --redis-sentinel, --redis-password-file, ... */
    long uid_base;
    int rebalance; /* --rebalance and its knobs (worker/rb.h) */
    char *rebalance_threshold;
    long rebalance_hold_s, rebalance_idle_s, rebalance_rate;
} wk_config_t;

TAILQ_HEAD(wc_list, wc_conn);
TAILQ_HEAD(run_list, run);

/* Websockets per load balancer (the X-Lb-Id header on the upgrade), published
 * as "by_lb" so that each lb can tell its own connections from the others'
 * exactly. Bounded: ids beyond WK_MAX_LBS are counted in conns only. */
#define WK_MAX_LBS FLEET_MAX_LBS
typedef struct wk_lbcount {
    char id[FLEET_ID_MAX + 1]; /* "" = free */
    size_t n;
} wk_lbcount_t;

typedef struct wk {
    struct ev_loop *loop;
    wk_config_t cfg;
    char upstream_secret[256]; /* empty: no secret required */

    int lfd;
    struct acc *acc; /* accepts on lfd */

    struct wc_list conns;  /* live connections */
    struct wc_list closed; /* closed, freed from the reaper */
    ev_idle reaper;
    size_t nconns; /* all accepted connections */
    size_t nws;    /* of which websockets */
    wk_lbcount_t by_lb[WK_MAX_LBS];

    sbx_t *sbx;
    struct slot_pool *slots; /* the sandbox slots' states and their janitor */
    rt_table_t rt;
    struct run_list queue; /* waiting for a slot */
    size_t nqueued;
    struct run_list running; /* holding a slot */
    size_t nrunning;
    int pumping; /* run_pump is on the stack, or run_kill_all holds it off */

    struct pub *pub;
    struct rb *rb; /* --rebalance; NULL = off */
    size_t nshed;  /* websockets closed with 1012 to rebalance (written by rb.c only) */

    int draining;
    ev_timer drain_timer;
    ev_signal sigterm_w, sigint_w;
    ev_idle drain_check;

    /* metrics */
    met_registry_t *met;
    met_counter_t *m_conns_total;
    met_counter_t *m_ws_total;
    met_counter_t *m_evals_total;
    met_counter_t *m_verdict[8]; /* by enum run_verdict (run.h) */
    met_counter_t *m_proto_errors;
    met_counter_t *m_requeued;
    met_hist_t *m_start_ms;
    met_hist_t *m_wall_ms;
} wk_t;

/* Drain phases, in w->draining. */
enum { DRAIN_NONE = 0, DRAIN_RUNS, DRAIN_CLOSING, DRAIN_LEAVING };

/* Counts a websocket from the lb with this id (the X-Lb-Id value, validated
 * by the caller); returns the slot to pass to wk_lb_release(), or -1 when the
 * table is full. */
int wk_lb_take(wk_t *w, const char *id, size_t len);
void wk_lb_release(wk_t *w, int slot);

/* Called when a slot frees or a run ends, so the drain logic can proceed. */
void wk_on_run_change(wk_t *w);

/* Slots out of service (BROKEN), and whether none is usable: then the worker
 * can run nothing, says so on /healthz (503) and in Redis (draining), and
 * refuses new /eval websockets and runs. */
unsigned wk_slots_broken(const wk_t *w);
int wk_unusable(const wk_t *w);

#endif
