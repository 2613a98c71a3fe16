/* wsbench: websocket load generator (rtt, handshake, hold, balance, eval),
 * plus `spawn`, the unsandboxed baseline of an evaluation (wb_spawn).
 *
 * Each process runs one libev loop (wb_run). `--procs N` forks N of them,
 * splits the connection counts and rates between them and adds their
 * results up from pipes, so large counts stay under the per-process
 * open-files limit and use more than one core. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "wb_run.h"
#include "wb_spawn.h"

#define WB_MAX_URLS  16
#define WB_MAX_SRCS  64
#define WB_MAX_PROCS 64

/* Children to forward SIGINT/SIGTERM to: signal-handler state only. */
static volatile pid_t wb_children[WB_MAX_PROCS];
static volatile int wb_nchildren;

static void wb_usage(FILE *f)
{
    fprintf(f,
            "usage: wsbench MODE [options] URL [URL...]\n"
            "\n"
            "Modes:\n"
            "  rtt        -c conns each sending -s-byte binary messages, -w in flight, for -d s\n"
            "             (against an echo endpoint such as the worker's /echo)\n"
            "  handshake  -c concurrent connect -> upgrade -> close cycles for -d s\n"
            "  hold       open -n connections at -r/s, print 'HOLDING n=N', hold -d s, close\n"
            "  balance    connections with exponential lifetimes (mean -L ms) opened at -r/s\n"
            "             (default -c/-L*1000, i.e. about -c alive); per-worker live counts from\n"
            "             the hello message, max/mean over time\n"
            "  eval       -c clients running --code with --runtime on /eval in a loop (-n: stop\n"
            "             after that many evaluations)\n"
            "  spawn      the same program without a worker: wsbench spawn --help\n"
            "\n"
            "Options:\n"
            "  -c N               connections / clients (default: rtt 50, handshake 50, balance\n"
            "                     1000, eval 4)\n"
            "  -n N               hold: connections to open (default 1000); eval: evaluations\n"
            "                     to complete before stopping (default: until -d)\n"
            "  -r RATE            new connections per second (default: hold 2000, balance c/L,\n"
            "                     others all at once)\n"
            "  -s BYTES           rtt message size, >= 8 (default 64)\n"
            "  -w N               rtt messages in flight per connection (default 1)\n"
            "  -d SECS            measured duration (default 10; balance: total incl. warm-up)\n"
            "  -L MS              balance: mean connection lifetime (default 5000)\n"
            "  --warmup SECS      balance: seconds excluded from max/mean (default min(2L, d/3))\n"
            "  --interval SECS    balance: sampling period (default 0.1)\n"
            "  --workers N        balance: workers in the mean (default: those seen)\n"
            "  --series FILE      balance: write per-worker live/opened counts per sample\n"
            "  -L 0               balance: no churn: open -c connections at -r/s (default 500)\n"
            "                     and hold them to the end\n"
            "  --reopen           balance: reopen a connection the server ends, at once and\n"
            "                     with the same key (counts 1012 closes apart)\n"
            "  --keys N --key-header NAME  balance: each client sends one of N session keys\n"
            "                     in header NAME; counts how often a key returns to its worker\n"
            "  --hist FILE        write the latency percentile distribution (us)\n"
            "  --runtime NAME     eval runtime (default python3)\n"
            "  --code SRC         eval program (default 'pass')\n"
            "  --eval-timeout-ms N  timeout_ms sent with each run (default: worker's)\n"
            "  --no-reconnect     eval: do not reopen clients the server closes\n"
            "  --timeout SECS     connect + TLS + upgrade timeout (default 10)\n"
            "  --procs N          split the load over N processes (default 1)\n"
            "  --source-ips A,B   bind client sockets to these local addresses in turn\n"
            "  --seed N           random seed (default: time)\n"
            "  -q, --quiet        no progress lines\n"
            "  -h, --help         this text\n"
            "  --version\n"
            "\n"
            "Prints a table and one final line 'RESULT mode=... key=value ...'. Exit status: 0\n"
            "done, 1 run failed to start, 2 bad arguments.\n");
}

static int wb_bad(const char *fmt, const char *a)
{
    fprintf(stderr, "wsbench: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n(wsbench --help for usage)\n");
    return 2;
}

/* Strict number parsing: the whole string, finite, within [lo, hi]. */
static int wb_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || v != v || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int wb_long(const char *s, long lo, long hi, long *out)
{
    double v;
    if (wb_num(s, (double)lo, (double)hi, &v) < 0 || v != (double)(long)v)
        return -1;
    *out = (long)v;
    return 0;
}

static int wb_parse_srcs(const char *s, sock_addr_t *srcs, size_t *n)
{
    char tmp[1024], err[SOCK_ERR_LEN];
    if (strlen(s) >= sizeof(tmp))
        return -1;
    strcpy(tmp, s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char hp[128];
        if (*n == WB_MAX_SRCS)
            return -1;
        snprintf(hp, sizeof(hp), "%s:0", t);
        if (sock_parse_addr(hp, &srcs[*n], err, sizeof(err)) < 0)
            return -1;
        (*n)++;
    }
    return *n > 0 ? 0 : -1;
}

/* Writes all of p or fails. */
static int wb_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void wb_holding_print(void *ud, uint64_t n)
{
    printf("HOLDING n=%llu\n", (unsigned long long)n);
    fflush(stdout);
}

static void wb_holding_pipe(void *ud, uint64_t n)
{
    int fd = *(int *)ud;
    char msg[1 + sizeof(n)];
    msg[0] = 'H';
    memcpy(msg + 1, &n, sizeof(n));
    (void)wb_write_all(fd, msg, sizeof(msg));
}

static void wb_forward_signal(int sig)
{
    for (int i = 0; i < wb_nchildren; i++)
        if (wb_children[i] > 0)
            kill(wb_children[i], sig);
}

/* Per-process parent side of one child: what it has sent so far. */
typedef struct wb_child {
    pid_t pid;
    int fd;
    char *buf; /* accumulated bytes */
    size_t len;
    int holding_seen;
    int done;
} wb_child_t;

/* Forks n children running o with their share of the load and merges their
 * results into res. Returns 0, or -1 with err. */
static int wb_run_procs(const wb_opts_t *o, int n, wb_result_t *res, char *err, size_t errlen)
{
    wb_child_t ch[WB_MAX_PROCS];
    const size_t rsz = 1 + sizeof(wb_result_t);
    int rc = -1, nholding = 0;
    uint64_t held = 0;

    memset(ch, 0, sizeof(ch));
    wb_result_init(res);
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        int p[2];
        if (pipe(p) < 0) {
            snprintf(err, errlen, "pipe: %s", strerror(errno));
            goto out;
        }
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(err, errlen, "fork: %s", strerror(errno));
            close(p[0]);
            close(p[1]);
            goto out;
        }
        if (pid == 0) {
            close(p[0]);
            for (int j = 0; j < i; j++)
                close(ch[j].fd);
            wb_opts_t co = *o;
            /* Share counts and rates so the whole adds up to what was asked. */
            co.conns = o->conns / n + (i < o->conns % n);
            co.count = o->count / n + (i < o->count % n);
            co.rate = o->rate / n;
            co.seed = o->seed + (unsigned)i * 7919u;
            co.quiet = 1;
            wb_result_t *r = malloc(sizeof(*r));
            char cerr[256] = "";
            int wfd = p[1];
            if (r == NULL || wb_run(&co, r, wb_holding_pipe, &wfd, cerr, sizeof(cerr)) < 0) {
                char msg[1 + sizeof(cerr)];
                msg[0] = 'E';
                memcpy(msg + 1, cerr, sizeof(cerr));
                (void)wb_write_all(wfd, msg, sizeof(msg));
                _exit(1);
            }
            char *msg = malloc(rsz);
            if (msg != NULL) {
                msg[0] = 'R';
                memcpy(msg + 1, r, sizeof(*r));
                (void)wb_write_all(wfd, msg, rsz);
            }
            _exit(0);
        }
        close(p[1]);
        ch[i].pid = pid;
        ch[i].fd = p[0];
        ch[i].buf = malloc(rsz + 512);
        wb_children[i] = pid;
        wb_nchildren = i + 1;
        if (ch[i].buf == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }

    int open = n;
    while (open > 0) {
        struct pollfd pf[WB_MAX_PROCS];
        int idx[WB_MAX_PROCS], np = 0;
        for (int i = 0; i < n; i++)
            if (!ch[i].done) {
                pf[np].fd = ch[i].fd;
                pf[np].events = POLLIN;
                idx[np++] = i;
            }
        if (poll(pf, (nfds_t)np, -1) < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "poll: %s", strerror(errno));
            goto out;
        }
        for (int j = 0; j < np; j++) {
            if (!(pf[j].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            wb_child_t *c = &ch[idx[j]];
            ssize_t r = read(c->fd, c->buf + c->len, rsz + 512 - c->len);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                c->done = 1;
                open--;
                continue;
            }
            c->len += (size_t)r;
            /* Messages: 'H' + u64 (holding), 'E' + 256-byte reason, 'R' + result. */
            for (;;) {
                if (c->len >= 1 + sizeof(uint64_t) && c->buf[0] == 'H') {
                    uint64_t h;
                    memcpy(&h, c->buf + 1, sizeof(h));
                    held += h;
                    if (!c->holding_seen++ && ++nholding == n)
                        wb_holding_print(NULL, held);
                    memmove(c->buf, c->buf + 1 + sizeof(h), c->len - 1 - sizeof(h));
                    c->len -= 1 + sizeof(h);
                    continue;
                }
                if (c->len >= 257 && c->buf[0] == 'E') {
                    snprintf(err, errlen, "process %d: %.200s", idx[j], c->buf + 1);
                    c->len = 0;
                    break;
                }
                if (c->len >= rsz && c->buf[0] == 'R') {
                    wb_result_t *cr = malloc(sizeof(*cr));
                    if (cr != NULL) {
                        memcpy(cr, c->buf + 1, sizeof(*cr));
                        wb_result_merge(res, cr);
                        free(cr);
                    }
                    c->len = 0;
                }
                break;
            }
        }
    }
    rc = err[0] ? -1 : 0;

out:
    for (int i = 0; i < n; i++) {
        if (ch[i].pid > 0) {
            if (rc < 0)
                kill(ch[i].pid, SIGTERM);
            waitpid(ch[i].pid, NULL, 0);
        }
        if (ch[i].fd > 0)
            close(ch[i].fd);
        free(ch[i].buf);
    }
    wb_nchildren = 0;
    return rc;
}

static double wb_ms(uint64_t us)
{
    return (double)us / 1000.0;
}

/* Prints the human table and the RESULT line for res. */
static void wb_report(const wb_opts_t *o, const char *url_text, int procs, const wb_result_t *r)
{
    const wb_hist_t *h = &r->lat;
    double el = r->elapsed > 0 ? r->elapsed : 1e-9;
    uint64_t errors = r->hs_fail + r->dropped;
    char kinds[512] = "";
    size_t kl = 0;
    for (int i = 1; i < WB_E_COUNT; i++)
        if (r->err_kind[i] && kl < sizeof(kinds))
            kl += (size_t)snprintf(kinds + kl, sizeof(kinds) - kl, " %s=%llu", wb_err_names[i],
                                   (unsigned long long)r->err_kind[i]);

    printf("\n%-14s %s\n", "mode", wb_mode_names[o->mode]);
    printf("%-14s %s\n", "url", url_text);
    printf("%-14s %d\n", "processes", procs);
    printf("%-14s %.2f s\n", "measured", r->elapsed);
    printf("%-14s %llu opened, %llu failed, %llu dropped by server\n", "connections",
           (unsigned long long)r->opened, (unsigned long long)r->hs_fail,
           (unsigned long long)r->dropped);
    switch (o->mode) {
    case WB_MODE_RTT:
        printf("%-14s %.0f\n", "messages/s", r->msgs / el);
        printf("%-14s %.2f\n", "MB/s", r->bytes / el / 1e6);
        break;
    case WB_MODE_HANDSHAKE:
        printf("%-14s %.0f\n", "handshakes/s", r->msgs / el);
        break;
    case WB_MODE_HOLD:
        printf("%-14s %llu at start, %llu at end\n", "held", (unsigned long long)r->held,
               (unsigned long long)r->held_end);
        break;
    case WB_MODE_BALANCE:
        printf("%-14s p50 %.3f  p99 %.3f  max %.3f  mean %.3f  (%llu samples after warm-up)\n",
               "max/mean", r->ratio_p50, r->ratio_p99, r->ratio_max, r->ratio_mean,
               (unsigned long long)r->ratio_samples);
        printf("%-14s", "opened/worker");
        for (int i = 0; i < r->nworkers; i++)
            printf(" %s=%llu", r->worker_id[i], (unsigned long long)r->worker_opened[i]);
        printf("\n%-14s %llu with 1012, %llu otherwise; %llu reopened\n", "server closed",
               (unsigned long long)r->closed_1012, (unsigned long long)r->closed_other,
               (unsigned long long)r->reconnects);
        if (o->keys > 0)
            printf("%-14s %llu hits, %llu misses (%.1f%%)\n", "affinity",
                   (unsigned long long)r->key_hits, (unsigned long long)r->key_misses,
                   r->key_hits + r->key_misses
                       ? 100.0 * r->key_hits / (double)(r->key_hits + r->key_misses)
                       : 0.0);
        break;
    case WB_MODE_EVAL:
        printf("%-14s %.1f\n", "evals/s", r->msgs / el);
        printf("%-14s", "verdicts");
        for (int i = 0; i < WB_V_COUNT; i++)
            if (r->verdict[i])
                printf(" %s=%llu", wb_verdict_names[i], (unsigned long long)r->verdict[i]);
        printf("\n%-14s %llu (runs resent: %llu refused by a draining worker, %llu unanswered at "
               "its 1001 close)\n",
               "reconnects", (unsigned long long)r->reconnects,
               (unsigned long long)r->drain_retries, (unsigned long long)r->resent_1001);
        break;
    }
    if (o->mode != WB_MODE_HOLD && o->mode != WB_MODE_BALANCE)
        printf("%-14s p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f ms (n=%llu)\n", "latency",
               wb_ms(wb_hist_quantile(h, 0.5)), wb_ms(wb_hist_quantile(h, 0.99)),
               wb_ms(wb_hist_quantile(h, 0.999)), wb_ms(h->count ? h->max : 0),
               wb_hist_mean(h) / 1000.0, (unsigned long long)h->count);
    printf("%-14s %llu%s\n", "errors", (unsigned long long)errors, kinds);
    if (r->first_err[0])
        printf("%-14s %s\n", "first error", r->first_err);

    printf("RESULT mode=%s procs=%d duration=%.3f opened=%llu hs_fail=%llu dropped=%llu "
           "errors=%llu",
           wb_mode_names[o->mode], procs, r->elapsed, (unsigned long long)r->opened,
           (unsigned long long)r->hs_fail, (unsigned long long)r->dropped,
           (unsigned long long)errors);
    switch (o->mode) {
    case WB_MODE_RTT:
        printf(" conns=%ld size=%ld inflight=%ld msgs=%llu msgs_per_s=%.1f mb_per_s=%.3f", o->conns,
               o->size, o->inflight, (unsigned long long)r->msgs, r->msgs / el,
               r->bytes / el / 1e6);
        break;
    case WB_MODE_HANDSHAKE:
        printf(" conns=%ld handshakes=%llu hs_per_s=%.1f", o->conns, (unsigned long long)r->msgs,
               r->msgs / el);
        break;
    case WB_MODE_HOLD:
        printf(" n=%ld held=%llu held_end=%llu", o->count, (unsigned long long)r->held,
               (unsigned long long)r->held_end);
        break;
    case WB_MODE_BALANCE:
        printf(" target=%ld life_ms=%.0f rate=%.1f workers=%d samples=%llu "
               "max_over_mean_p50=%.4f max_over_mean_p99=%.4f max_over_mean_max=%.4f "
               "max_over_mean_mean=%.4f pool_full=%llu",
               o->conns, o->life_ms, o->rate, r->nworkers, (unsigned long long)r->ratio_samples,
               r->ratio_p50, r->ratio_p99, r->ratio_max, r->ratio_mean,
               (unsigned long long)r->pool_full);
        printf(" closed_1012=%llu closed_other=%llu reopened=%llu keys=%ld key_hits=%llu "
               "key_misses=%llu hit_rate=%.4f",
               (unsigned long long)r->closed_1012, (unsigned long long)r->closed_other,
               (unsigned long long)r->reconnects, o->keys, (unsigned long long)r->key_hits,
               (unsigned long long)r->key_misses,
               r->key_hits + r->key_misses
                   ? (double)r->key_hits / (double)(r->key_hits + r->key_misses)
                   : 0.0);
        printf(" opened_by_worker=");
        for (int i = 0; i < r->nworkers; i++)
            printf("%s%s:%llu", i ? "," : "", r->worker_id[i],
                   (unsigned long long)r->worker_opened[i]);
        break;
    case WB_MODE_EVAL: {
        uint64_t fails = 0;
        for (int i = 1; i < WB_V_COUNT; i++)
            fails += r->verdict[i];
        printf(" conns=%ld evals=%llu evals_per_s=%.2f failed=%llu reconnects=%llu "
               "drain_retries=%llu resent_1001=%llu",
               o->conns, (unsigned long long)r->msgs, r->msgs / el, (unsigned long long)fails,
               (unsigned long long)r->reconnects, (unsigned long long)r->drain_retries,
               (unsigned long long)r->resent_1001);
        for (int i = 0; i < WB_V_COUNT; i++)
            printf(" v_%s=%llu", wb_verdict_names[i], (unsigned long long)r->verdict[i]);
        break;
    }
    }
    if (o->mode != WB_MODE_HOLD && o->mode != WB_MODE_BALANCE)
        printf(" p50_us=%llu p99_us=%llu p999_us=%llu max_us=%llu mean_us=%.1f",
               (unsigned long long)wb_hist_quantile(h, 0.5),
               (unsigned long long)wb_hist_quantile(h, 0.99),
               (unsigned long long)wb_hist_quantile(h, 0.999),
               (unsigned long long)(h->count ? h->max : 0), wb_hist_mean(h));
    for (int i = 1; i < WB_E_COUNT; i++)
        printf(" e_%s=%llu", wb_err_names[i], (unsigned long long)r->err_kind[i]);
    printf("\n");
    fflush(stdout);
}

/* Reads the ephemeral port range size (connections per source/destination pair). */
static long wb_port_range(void)
{
    long lo = 32768, hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &lo, &hi) != 2) {
            lo = 32768;
            hi = 60999;
        }
        fclose(f);
    }
    return hi - lo + 1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"warmup", required_argument, NULL, 1000},
        {"interval", required_argument, NULL, 1001},
        {"workers", required_argument, NULL, 1002},
        {"series", required_argument, NULL, 1003},
        {"hist", required_argument, NULL, 1004},
        {"runtime", required_argument, NULL, 1005},
        {"code", required_argument, NULL, 1006},
        {"eval-timeout-ms", required_argument, NULL, 1007},
        {"no-reconnect", no_argument, NULL, 1008},
        {"timeout", required_argument, NULL, 1009},
        {"procs", required_argument, NULL, 1010},
        {"source-ips", required_argument, NULL, 1011},
        {"seed", required_argument, NULL, 1012},
        {"version", no_argument, NULL, 1013},
        {"reopen", no_argument, NULL, 1014},
        {"keys", required_argument, NULL, 1015},
        {"key-header", required_argument, NULL, 1016},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    wb_opts_t o;
    static wb_url_t urls[WB_MAX_URLS];
    static sock_addr_t srcs[WB_MAX_SRCS];
    size_t nsrcs = 0;
    long procs = 1;
    const char *hist_path = NULL;
    int have_c = 0, have_n = 0, have_r = 0, have_warm = 0, opt;
    char err[512];

    log_set_tag("wsbench");
    memset(&o, 0, sizeof(o));
    o.size = 64;
    o.inflight = 1;
    o.duration = 10;
    o.life_ms = 5000;
    o.interval = 0.1;
    o.runtime = "python3";
    o.code = "pass";
    o.reconnect = 1;
    o.hs_timeout = 10;
    o.count = 1000;
    o.seed = (unsigned)time(NULL) ^ (unsigned)getpid();

    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        wb_usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("wsbench " VERSION "\n");
        return 0;
    }
    if (argc < 2)
        return wb_bad("%s", "missing MODE (rtt|handshake|hold|balance|eval|spawn)");
    if (strcmp(argv[1], "spawn") == 0)
        return wb_spawn_main(argc - 1, argv + 1);
    int m = -1;
    for (int i = 0; i <= WB_MODE_EVAL; i++)
        if (strcmp(argv[1], wb_mode_names[i]) == 0)
            m = i;
    if (m < 0)
        return wb_bad("unknown mode '%s' (expected rtt|handshake|hold|balance|eval|spawn)",
                      argv[1]);
    o.mode = (enum wb_mode)m;
    o.conns = o.mode == WB_MODE_BALANCE ? 1000 : o.mode == WB_MODE_EVAL ? 4 : 50;

    optind = 2;
    while ((opt = getopt_long(argc, argv, "c:n:r:s:w:d:L:qh", longopts, NULL)) != -1) {
        double d;
        switch (opt) {
        case 'c':
            if (wb_long(optarg, 1, 10000000, &o.conns) < 0)
                return wb_bad("-c: '%s' is not a count >= 1", optarg);
            have_c = 1;
            break;
        case 'n':
            if (wb_long(optarg, 1, 10000000, &o.count) < 0)
                return wb_bad("-n: '%s' is not a count >= 1", optarg);
            have_n = 1;
            break;
        case 'r':
            if (wb_num(optarg, 0.001, 1e7, &o.rate) < 0)
                return wb_bad("-r: '%s' is not a rate > 0", optarg);
            have_r = 1;
            break;
        case 's':
            if (wb_long(optarg, 8, 16 * 1024 * 1024, &o.size) < 0)
                return wb_bad("-s: '%s' is not a size in 8..16777216 bytes", optarg);
            break;
        case 'w':
            if (wb_long(optarg, 1, 100000, &o.inflight) < 0)
                return wb_bad("-w: '%s' is not a count >= 1", optarg);
            break;
        case 'd':
            if (wb_num(optarg, 0.01, 86400, &o.duration) < 0)
                return wb_bad("-d: '%s' is not a duration in seconds (0.01..86400)", optarg);
            break;
        case 'L':
            if (wb_num(optarg, 0, 86400000, &o.life_ms) < 0)
                return wb_bad("-L: '%s' is not a lifetime in ms (0: no churn)", optarg);
            break;
        case 1014:
            o.reopen = 1;
            break;
        case 1015:
            if (wb_long(optarg, 1, 10000000, &o.keys) < 0)
                return wb_bad("--keys: '%s' is not a count >= 1", optarg);
            break;
        case 1016:
            if (*optarg == '\0' || strlen(optarg) > 64 || strpbrk(optarg, ": \t\r\n") != NULL)
                return wb_bad("--key-header: '%s' is not a header name", optarg);
            o.key_header = optarg;
            break;
        case 1000:
            if (wb_num(optarg, 0, 86400, &o.warmup) < 0)
                return wb_bad("--warmup: '%s' is not seconds >= 0", optarg);
            have_warm = 1;
            break;
        case 1001:
            if (wb_num(optarg, 0.01, 60, &o.interval) < 0)
                return wb_bad("--interval: '%s' is not seconds in 0.01..60", optarg);
            break;
        case 1002:
            if (wb_long(optarg, 1, WB_MAX_WORKERS, &o.workers) < 0)
                return wb_bad("--workers: '%s' is not a count in 1..32", optarg);
            break;
        case 1003:
            o.series_path = optarg;
            break;
        case 1004:
            hist_path = optarg;
            break;
        case 1005:
            o.runtime = optarg;
            break;
        case 1006:
            o.code = optarg;
            break;
        case 1007:
            if (wb_long(optarg, 1, 3600000, &o.eval_timeout_ms) < 0)
                return wb_bad("--eval-timeout-ms: '%s' is not milliseconds >= 1", optarg);
            break;
        case 1008:
            o.reconnect = 0;
            break;
        case 1009:
            if (wb_num(optarg, 0.01, 3600, &o.hs_timeout) < 0)
                return wb_bad("--timeout: '%s' is not seconds in 0.01..3600", optarg);
            break;
        case 1010:
            if (wb_long(optarg, 1, WB_MAX_PROCS, &procs) < 0)
                return wb_bad("--procs: '%s' is not a count in 1..64", optarg);
            break;
        case 1011:
            if (wb_parse_srcs(optarg, srcs, &nsrcs) < 0)
                return wb_bad("--source-ips: '%s' is not a comma-separated list of up to 64 "
                              "numeric addresses",
                              optarg);
            break;
        case 1012: {
            long s;
            if (wb_long(optarg, 0, 4294967295L, &s) < 0)
                return wb_bad("--seed: '%s' is not a number", optarg);
            o.seed = (unsigned)s;
            break;
        }
        case 1013:
            printf("wsbench " VERSION "\n");
            return 0;
        case 'q':
            o.quiet = 1;
            break;
        case 'h':
            wb_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "(wsbench --help for usage)\n");
            return 2;
        }
        (void)d;
    }
    if (optind >= argc)
        return wb_bad("%s", "missing URL (ws://host:port/path or wss://...)");
    size_t nurls = 0;
    for (int i = optind; i < argc; i++) {
        if (nurls == WB_MAX_URLS)
            return wb_bad("too many URLs (at most %s)", "16");
        if (wb_url_parse(argv[i], &urls[nurls], err, sizeof(err)) < 0)
            return wb_bad("%s", err);
        nurls++;
    }
    o.urls = urls;
    o.nurls = nurls;
    o.srcs = srcs;
    o.nsrcs = nsrcs;

    if (o.mode == WB_MODE_HOLD && !have_r)
        o.rate = 2000;
    if ((o.keys > 0) != (o.key_header != NULL))
        return wb_bad("%s", "--keys and --key-header go together");
    if (o.mode == WB_MODE_BALANCE && o.life_ms <= 0) {
        /* No churn: -c connections opened at -r/s and held. */
        if (!have_r)
            o.rate = 500;
        if (!have_warm)
            o.warmup = 0;
        if (procs > 1)
            return wb_bad("%s", "balance runs in one process; drop --procs");
    } else if (o.mode == WB_MODE_BALANCE) {
        if (!have_r)
            o.rate = (double)o.conns / (o.life_ms / 1000.0);
        else if (!have_c)
            o.conns = (long)(o.rate * o.life_ms / 1000.0);
        if (!have_warm) {
            o.warmup = 2 * o.life_ms / 1000.0;
            if (o.warmup > o.duration / 3)
                o.warmup = o.duration / 3;
        }
        if (procs > 1)
            return wb_bad("%s", "balance runs in one process (its per-worker counts are live); "
                                "drop --procs");
    }
    if (o.mode == WB_MODE_EVAL && strlen(o.code) > 1024 * 1024)
        return wb_bad("%s", "--code is over 1 MiB");
    if (o.mode == WB_MODE_EVAL && !have_n)
        o.count = 0; /* no count: the duration alone ends it */
    if (o.mode == WB_MODE_EVAL && have_n && o.count < procs)
        return wb_bad("%s", "-n is below --procs: every process needs at least one evaluation");

    /* Descriptors: raise the soft limit to the hard one, then check. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    long per_proc = (wb_pool_size(&o) + procs - 1) / procs;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)per_proc + 64 > rl.rlim_cur) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%ld connections per process exceed the open-files limit %llu",
                 per_proc, (unsigned long long)rl.rlim_cur);
        return wb_bad("%s; raise --procs", msg);
    }
    /* Ports: one source address reaches one destination over at most the
     * ephemeral range. */
    long total = o.mode == WB_MODE_HOLD ? o.count : o.conns;
    long ports = wb_port_range() * (long)(nsrcs ? nsrcs : 1) * (long)nurls;
    if (total > ports * 9 / 10) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "%ld connections need more local ports than %zu source address(es) offer", total,
                 nsrcs ? nsrcs : (size_t)1);
        return wb_bad("%s; add --source-ips 127.0.0.2,127.0.0.3,...", msg);
    }

    signal(SIGPIPE, SIG_IGN);
    wb_result_t *res = malloc(sizeof(*res));
    if (res == NULL) {
        fprintf(stderr, "wsbench: out of memory\n");
        return 1;
    }
    err[0] = '\0';
    int rc;
    if (procs > 1) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = wb_forward_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        rc = wb_run_procs(&o, (int)procs, res, err, sizeof(err));
    } else {
        rc = wb_run(&o, res, wb_holding_print, NULL, err, sizeof(err));
    }
    if (rc < 0) {
        fprintf(stderr, "wsbench: %s\n", err);
        free(res);
        return 1;
    }
    char url_text[WB_MAX_URLS * 64] = "";
    size_t ul = 0;
    for (int i = optind; i < argc && ul < sizeof(url_text); i++)
        ul += (size_t)snprintf(url_text + ul, sizeof(url_text) - ul, "%s%s", i > optind ? " " : "",
                               argv[i]);
    if (hist_path != NULL) {
        FILE *f = fopen(hist_path, "w");
        if (f == NULL || wb_hist_write_dist(&res->lat, f) < 0)
            fprintf(stderr, "wsbench: %s: %s\n", hist_path, strerror(errno));
        if (f != NULL)
            fclose(f);
    }
    wb_report(&o, url_text, (int)procs, res);
    free(res);
    return 0;
}
