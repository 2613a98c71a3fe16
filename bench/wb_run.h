/* wb_run: the load generator's modes, run on one event loop.
 *
 * One call runs one mode in the calling process and fills a plain-data
 * result that a parent process can add up with others (wb_result_merge), so
 * `--procs N` is just N calls in N forked processes. Every mode is bounded:
 * by its duration, by a watchdog a little past it, and by its counts. */
#ifndef BENCH_WB_RUN_H
#define BENCH_WB_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "sock.h"
#include "wb_conn.h"
#include "wb_hist.h"
#include "wb_url.h"

enum wb_mode { WB_MODE_RTT = 0, WB_MODE_HANDSHAKE, WB_MODE_HOLD, WB_MODE_BALANCE, WB_MODE_EVAL };
extern const char *const wb_mode_names[];

/* Evaluation outcomes as the worker names them, plus "other" for anything
 * else, "status" for an ok run with a non-zero exit status and "lost" for a
 * run whose connection closed before its exit message. */
enum {
    WB_V_OK = 0,
    WB_V_SIGNALED,
    WB_V_TIMEOUT,
    WB_V_MEMORY,
    WB_V_OUTPUT,
    WB_V_KILLED,
    WB_V_ERROR,
    WB_V_OTHER,
    WB_V_STATUS,
    WB_V_LOST,
    WB_V_COUNT
};
extern const char *const wb_verdict_names[WB_V_COUNT];

#define WB_MAX_WORKERS   32
#define WB_WORKER_ID_LEN 48

typedef struct wb_opts {
    enum wb_mode mode;
    const wb_url_t *urls; /* connections go to these in turn */
    size_t nurls;
    const sock_addr_t *srcs; /* source addresses, port 0, used in turn */
    size_t nsrcs;
    long conns;      /* -c: rtt/handshake/eval concurrency, balance target alive */
    long count;      /* -n: hold connections; eval evaluations to complete (0: no limit) */
    double rate;     /* -r: new connections per second (0: as fast as possible) */
    long size;       /* -s: rtt message bytes (>= 8: carries the send time) */
    long inflight;   /* -w: rtt messages in flight per connection */
    double duration; /* -d: measured seconds (balance: total, warm-up included) */
    double life_ms;  /* -L: balance mean lifetime */
    double warmup;   /* balance seconds excluded from the ratio; <0: automatic */
    double interval; /* balance sampling period, seconds */
    long workers;    /* balance: number of workers for the mean (0: those seen) */
    const char *runtime;
    const char *code;
    long eval_timeout_ms;    /* 0: the worker's default */
    int reconnect;           /* eval: reopen a closed client and go on */
    double hs_timeout;       /* connect + TLS + upgrade, seconds */
    const char *series_path; /* balance: per-worker series file */
    /* balance: with life_ms 0, no churn: `conns` connections are opened at
     * `rate` and held until the end. reopen: a connection the server ends
     * is opened again at once (same key), as a client that reconnects on
     * 1012 or a lost worker does. keys > 0: each new client carries one of
     * `keys` session keys (random) in header key_header, and every reopen
     * or new client with a key seen before counts a hit when it lands on
     * the worker that key had last. */
    int reopen;
    long keys;
    const char *key_header;
    int quiet; /* no progress lines */
    unsigned seed;
} wb_opts_t;

typedef struct wb_result {
    double elapsed;   /* seconds measured (the longest of merged processes) */
    uint64_t opened;  /* connections that reached a verified 101 */
    uint64_t hs_fail; /* connections that never reached it */
    uint64_t dropped; /* open connections the server or network ended early */
    uint64_t err_kind[WB_E_COUNT];
    uint64_t msgs;     /* rtt echoes / handshakes / evaluations within the window */
    uint64_t bytes;    /* rtt echoed payload bytes */
    uint64_t held;     /* hold: connections open when holding started */
    uint64_t held_end; /* hold: still open when holding ended */
    uint64_t reconnects;
    uint64_t drain_retries; /* eval: runs a draining worker refused, resent elsewhere */
    uint64_t resent_1001;   /* eval: runs unanswered at a 1001 close, resent elsewhere */
    uint64_t verdict[WB_V_COUNT];
    wb_hist_t lat; /* rtt / handshake / eval latency, us */
    /* balance only (never merged: balance runs in one process) */
    uint64_t ratio_samples;
    double ratio_p50, ratio_p99, ratio_max, ratio_mean;
    uint64_t pool_full;
    uint64_t closed_1012;  /* server closes with 1012 (service restart) */
    uint64_t closed_other; /* other ends by the server: close codes, EOF, reset */
    uint64_t key_hits, key_misses;
    int nworkers;
    char worker_id[WB_MAX_WORKERS][WB_WORKER_ID_LEN];
    uint64_t worker_opened[WB_MAX_WORKERS];
    char first_err[128];
} wb_result_t;

void wb_result_init(wb_result_t *r);
void wb_result_merge(wb_result_t *dst, const wb_result_t *src);

/* Called once in hold mode when every connection is open (or has failed). */
typedef void (*wb_holding_fn)(void *ud, uint64_t n);

/* The connections one process of run o holds at most (its client pool):
 * what it needs in descriptors. */
long wb_pool_size(const wb_opts_t *o);

/* Runs o->mode to completion. Returns 0, or -1 with err filled when the run
 * could not start (the result then means nothing). */
int wb_run(const wb_opts_t *o, wb_result_t *res, wb_holding_fn holding, void *ud, char *err,
           size_t errlen);

/* Pulls a string field out of a JSON object message; 0 or -1. */
int wb_json_str(const uint8_t *p, size_t n, const char *key, char *out, size_t outlen);

#endif
