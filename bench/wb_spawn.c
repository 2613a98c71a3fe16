/* wb_spawn: a command run to completion in a loop, timed from writing its
 * program file to reaped. See wb_spawn.h. */
#include "wb_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WB_SPAWN_ARGBUF   8192
#define WB_SPAWN_STOP_S   5.0 /* longest wait for killed runs to be reaped */
#define WB_SPAWN_READ_CAP 65536

/* Set from a signal handler: stop starting runs. */
static volatile sig_atomic_t wb_spawn_stopping;

typedef struct wb_slot {
    pid_t pid; /* 0: free */
    int pidfd, out, err;
    int reaped, status, timed_out, discard;
    struct rusage ru;
    uint64_t t0_ns;
    char dir[PATH_MAX];
    char path[PATH_MAX];
    char *argv[WB_SPAWN_MAX_ARGS];
    char argbuf[WB_SPAWN_ARGBUF];
} wb_slot_t;

/* One measurement: its slots and counters. */
typedef struct wb_spawn_ctx {
    const wb_spawn_opts_t *o;
    wb_spawn_result_t *res;
    wb_slot_t *slots;
    long started, done, busy;
    uint64_t t_start_ns, t_last_ns, t_end_ns;
} wb_spawn_ctx_t;

static uint64_t wb_spawn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double wb_tv_us(struct timeval tv)
{
    return (double)tv.tv_sec * 1e6 + (double)tv.tv_usec;
}

void wb_spawn_stop(void)
{
    wb_spawn_stopping = 1;
}

int wb_spawn_expand(char *const *argv, const char *dir, char **out, size_t cap, char *buf,
                    size_t buflen, char *err, size_t errlen)
{
    size_t n = 0, used = 0, dl = strlen(dir);
    for (; argv[n] != NULL; n++) {
        if (n + 1 >= cap) {
            snprintf(err, errlen, "more than %zu arguments", cap - 1);
            return -1;
        }
        out[n] = buf + used;
        for (const char *a = argv[n]; *a != '\0';) {
            int is_dir = strncmp(a, "{dir}", 5) == 0;
            size_t take = is_dir ? dl : 1;
            if (used + take + 1 > buflen) {
                snprintf(err, errlen, "arguments longer than %zu bytes", buflen);
                return -1;
            }
            memcpy(buf + used, is_dir ? dir : a, take);
            used += take;
            a += is_dir ? 5 : 1;
        }
        if (used + 1 > buflen) {
            snprintf(err, errlen, "arguments longer than %zu bytes", buflen);
            return -1;
        }
        buf[used++] = '\0';
    }
    out[n] = NULL;
    return 0;
}

static void wb_spawn_note(wb_spawn_result_t *r, const char *fmt, const char *a, int e)
{
    if (r->first_err[0] == '\0') {
        char what[128];
        snprintf(what, sizeof(what), fmt, a);
        snprintf(r->first_err, sizeof(r->first_err), "%s: %s", what, strerror(e));
    }
}

/* Writes the program file into s's directory and forks the command with an
 * empty stdin and its stdout/stderr on pipes. 0, or -1 (counted failed). */
static int wb_slot_start(wb_spawn_ctx_t *x, wb_slot_t *s)
{
    const wb_spawn_opts_t *o = x->o;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1}, fd;
    size_t len = strlen(o->code);

    memset(&s->ru, 0, sizeof(s->ru));
    s->reaped = s->status = s->timed_out = s->discard = 0;
    s->t0_ns = wb_spawn_now_ns();
    fd = open(s->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, o->code, len) != (ssize_t)len) {
        wb_spawn_note(x->res, "write %s", s->path, errno);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0) {
        wb_spawn_note(x->res, "%s", "pipe", errno);
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        wb_spawn_note(x->res, "%s", "fork", errno);
        goto fail;
    }
    if (pid == 0) {
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(er[1], 2) < 0 || chdir(s->dir) < 0)
            _exit(126);
        execvp(s->argv[0], s->argv);
        _exit(127);
    }
    close(in[0]);
    close(in[1]); /* no input: the program sees end of file at once */
    close(out[1]);
    close(er[1]);
    s->pid = pid;
    s->out = out[0];
    s->err = er[0];
    (void)fcntl(s->out, F_SETFL, O_NONBLOCK);
    (void)fcntl(s->err, F_SETFL, O_NONBLOCK);
    s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (s->pidfd < 0) {
        /* Without a pidfd the exit cannot be polled: wait for it here. */
        wb_spawn_note(x->res, "%s", "pidfd_open", errno);
        kill(pid, SIGKILL);
        while (wait4(pid, &s->status, 0, &s->ru) < 0 && errno == EINTR)
            ;
        s->reaped = 1;
        s->discard = 1;
    }
    x->busy++;
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (er[i] >= 0)
            close(er[i]);
    }
    return -1;
}

/* Drains a pipe (bounded per call); closes it at end of file. */
static void wb_slot_drain(int *fd)
{
    char buf[4096];
    for (size_t total = 0; *fd >= 0 && total < WB_SPAWN_READ_CAP;) {
        ssize_t n = read(*fd, buf, sizeof(buf));
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        close(*fd);
        *fd = -1;
    }
}

/* Ends a run whose child is reaped and whose pipes are closed: counts it
 * unless it was discarded, and frees the slot. */
static void wb_slot_finish(wb_spawn_ctx_t *x, wb_slot_t *s)
{
    wb_spawn_result_t *r = x->res;
    uint64_t now = wb_spawn_now_ns();
    if (s->pidfd >= 0)
        close(s->pidfd);
    s->pidfd = -1;
    s->pid = 0;
    x->busy--;
    if (s->discard)
        return;
    x->done++;
    x->t_last_ns = now;
    if (WIFEXITED(s->status) && WEXITSTATUS(s->status) == 0 && !s->timed_out) {
        r->runs++;
        wb_hist_add(&r->lat, (now - s->t0_ns) / 1000);
        r->cpu_child_us += wb_tv_us(s->ru.ru_utime) + wb_tv_us(s->ru.ru_stime);
        return;
    }
    r->failed++;
    if (s->timed_out)
        r->timeouts++;
    if (r->first_err[0] == '\0')
        snprintf(r->first_err, sizeof(r->first_err), "%s %d",
                 WIFSIGNALED(s->status) ? "killed by signal" : "exit status",
                 WIFSIGNALED(s->status) ? WTERMSIG(s->status) : WEXITSTATUS(s->status));
}

/* Kills every running child; their runs are not counted. */
static void wb_spawn_kill_all(wb_spawn_ctx_t *x)
{
    for (long i = 0; i < x->o->conc; i++) {
        wb_slot_t *s = &x->slots[i];
        if (s->pid > 0 && !s->reaped) {
            kill(s->pid, SIGKILL);
            s->discard = 1;
        }
    }
}

/* Reaps every child that has exited: a slot's command, or a descendant
 * orphaned to this process (the subreaper) when a wrapper such as bwrap
 * exits before its own child. An orphan's CPU counts as the runs'. */
static void wb_spawn_reap(wb_spawn_ctx_t *x)
{
    struct rusage ru;
    int st;
    pid_t pid;
    while ((pid = wait4(-1, &st, WNOHANG | __WALL, &ru)) > 0) {
        wb_slot_t *s = NULL;
        for (long i = 0; i < x->o->conc && s == NULL; i++)
            if (x->slots[i].pid == pid)
                s = &x->slots[i];
        if (s == NULL) {
            x->res->cpu_child_us += wb_tv_us(ru.ru_utime) + wb_tv_us(ru.ru_stime);
            continue;
        }
        s->status = st;
        s->ru = ru;
        s->reaped = 1;
    }
}

/* One poll round over the running slots; handles output, exits and
 * timeouts. Returns the number of slots still busy. */
static long wb_spawn_poll(wb_spawn_ctx_t *x, int timeout_ms)
{
    const wb_spawn_opts_t *o = x->o;
    struct pollfd pf[3 * WB_SPAWN_MAX_CONC];
    wb_slot_t *who[3 * WB_SPAWN_MAX_CONC];
    int np = 0;
    for (long i = 0; i < o->conc; i++) {
        wb_slot_t *s = &x->slots[i];
        if (s->pid == 0)
            continue;
        if (s->out >= 0)
            pf[np] = (struct pollfd){.fd = s->out, .events = POLLIN}, who[np++] = s;
        if (s->err >= 0)
            pf[np] = (struct pollfd){.fd = s->err, .events = POLLIN}, who[np++] = s;
        if (!s->reaped && s->pidfd >= 0)
            pf[np] = (struct pollfd){.fd = s->pidfd, .events = POLLIN}, who[np++] = s;
    }
    if (np > 0 && poll(pf, (nfds_t)np, timeout_ms) < 0 && errno != EINTR)
        wb_spawn_stop();
    for (int i = 0; i < np; i++) {
        wb_slot_t *s = who[i];
        if (pf[i].revents == 0)
            continue;
        if (pf[i].fd == s->out)
            wb_slot_drain(&s->out);
        else if (pf[i].fd == s->err)
            wb_slot_drain(&s->err);
    }
    wb_spawn_reap(x);
    uint64_t now = wb_spawn_now_ns();
    for (long i = 0; i < o->conc; i++) {
        wb_slot_t *s = &x->slots[i];
        if (s->pid == 0)
            continue;
        if (!s->reaped && !s->timed_out && now - s->t0_ns > (uint64_t)(o->run_timeout * 1e9)) {
            kill(s->pid, SIGKILL);
            s->timed_out = 1;
        }
        /* A killed run's descendants may still hold its pipes: once it is
         * reaped, they no longer matter. */
        if (s->reaped && (s->timed_out || s->discard)) {
            if (s->out >= 0)
                close(s->out);
            if (s->err >= 0)
                close(s->err);
            s->out = s->err = -1;
        }
        if (s->reaped && s->out < 0 && s->err < 0)
            wb_slot_finish(x, s);
    }
    return x->busy;
}

/* Milliseconds until the nearer of the end and the oldest run's timeout. */
static int wb_spawn_wait_ms(const wb_spawn_ctx_t *x)
{
    uint64_t now = wb_spawn_now_ns(), next = x->t_end_ns;
    for (long i = 0; i < x->o->conc; i++) {
        const wb_slot_t *s = &x->slots[i];
        uint64_t t = s->t0_ns + (uint64_t)(x->o->run_timeout * 1e9);
        if (s->pid > 0 && !s->timed_out && t < next)
            next = t;
    }
    return next <= now ? 0 : (int)((next - now) / 1000000u + 1);
}

/* Creates the slot directories and expands the command for each. */
static int wb_spawn_setup(wb_spawn_ctx_t *x, char *err, size_t errlen)
{
    const wb_spawn_opts_t *o = x->o;
    for (long i = 0; i < o->conc; i++) {
        wb_slot_t *s = &x->slots[i];
        s->pidfd = s->out = s->err = -1;
        if (snprintf(s->dir, sizeof(s->dir), "%s/slot%ld", o->root, i) >= (int)sizeof(s->dir) ||
            snprintf(s->path, sizeof(s->path), "%s/%s", s->dir, o->file) >= (int)sizeof(s->path)) {
            snprintf(err, errlen, "%s: path too long", o->root);
            return -1;
        }
        if (mkdir(s->dir, 0755) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "mkdir %s: %s", s->dir, strerror(errno));
            return -1;
        }
        if (wb_spawn_expand(o->argv, s->dir, s->argv, WB_SPAWN_MAX_ARGS, s->argbuf,
                            sizeof(s->argbuf), err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* See wb_spawn.h. One function on purpose: setup, the start/poll loop, the
 * bounded reaping of killed runs and the single cleanup path read in order. */
int wb_spawn_run(const wb_spawn_opts_t *o, wb_spawn_result_t *res, char *err, size_t errlen)
{
    wb_spawn_ctx_t x = {.o = o, .res = res};
    struct rusage ru0, ru1;
    int rc = -1;

    memset(res, 0, sizeof(*res));
    wb_hist_init(&res->lat);
    if (o->conc < 1 || o->conc > WB_SPAWN_MAX_CONC || o->argv == NULL || o->argv[0] == NULL) {
        snprintf(err, errlen, "nothing to run, or concurrency outside 1..%d", WB_SPAWN_MAX_CONC);
        return -1;
    }
    x.slots = calloc((size_t)o->conc, sizeof(*x.slots));
    if (x.slots == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (wb_spawn_setup(&x, err, errlen) < 0)
        goto out;
    /* Orphaned descendants come back here, so that their CPU is seen. */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    getrusage(RUSAGE_SELF, &ru0);
    x.t_start_ns = x.t_last_ns = wb_spawn_now_ns();
    x.t_end_ns = x.t_start_ns + (uint64_t)(o->duration * 1e9);
    for (;;) {
        int stopping = wb_spawn_stopping || wb_spawn_now_ns() >= x.t_end_ns;
        for (long i = 0; i < o->conc && !stopping; i++) {
            if (x.slots[i].pid != 0 || (o->count > 0 && x.started >= o->count))
                continue;
            x.started++;
            if (wb_slot_start(&x, &x.slots[i]) < 0) {
                res->failed++;
                x.done++;
            }
        }
        if (stopping) {
            wb_spawn_kill_all(&x);
            break;
        }
        if (x.busy == 0)
            break; /* the count is done, or nothing could start */
        wb_spawn_poll(&x, wb_spawn_wait_ms(&x));
    }
    /* Killed runs: reap them, bounded (SIGKILL cannot be refused, but a
     * process in uninterruptible sleep takes its time). */
    uint64_t limit = wb_spawn_now_ns() + (uint64_t)(WB_SPAWN_STOP_S * 1e9);
    while (x.busy > 0 && wb_spawn_now_ns() < limit)
        wb_spawn_poll(&x, 100);
    /* Orphans still exiting (bwrap's init outlives bwrap by a moment). */
    while (wb_spawn_now_ns() < limit) {
        wb_spawn_reap(&x);
        siginfo_t si = {0};
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) < 0)
            break; /* no children left */
        if (si.si_pid == 0)
            poll(NULL, 0, 5);
    }
    (void)prctl(PR_SET_CHILD_SUBREAPER, 0);
    getrusage(RUSAGE_SELF, &ru1);
    res->cpu_self_us = wb_tv_us(ru1.ru_utime) + wb_tv_us(ru1.ru_stime) - wb_tv_us(ru0.ru_utime) -
                       wb_tv_us(ru0.ru_stime);
    res->elapsed = (double)(x.t_last_ns - x.t_start_ns) / 1e9;
    rc = 0;

out:
    for (long i = 0; i < o->conc; i++) {
        wb_slot_t *s = &x.slots[i];
        if (s->out >= 0)
            close(s->out);
        if (s->err >= 0)
            close(s->err);
        if (s->pidfd >= 0)
            close(s->pidfd);
        if (s->path[0] != '\0')
            (void)unlink(s->path);
        if (s->dir[0] != '\0')
            (void)rmdir(s->dir);
    }
    free(x.slots);
    return rc;
}

static void wb_spawn_on_signal(int sig)
{
    (void)sig;
    wb_spawn_stop();
}

static void wb_spawn_usage(FILE *f)
{
    fprintf(f, "usage: wsbench spawn [-c N] [-n COUNT] [-d SECS] [--code SRC] [--file NAME]\n"
               "                     [--timeout SECS] [--work-root DIR] [--hist FILE] [-q]\n"
               "                     -- COMMAND [ARG...]\n"
               "\n"
               "Runs COMMAND to completion in a loop, N at once, each run in a directory of its\n"
               "own into which SRC is written as NAME just before it starts (default 'pass' as\n"
               "main.py); '{dir}' in an argument is that directory. Each run is timed from\n"
               "writing the file to the child reaped with its stdout/stderr at end of file.\n"
               "Ends after COUNT runs (default: none) or SECS (default 10); a run over --timeout\n"
               "(default 10 s) is killed and counted failed.\n"
               "\n"
               "  bare:  wsbench spawn -c 4 -n 400 -- /usr/bin/python3 -I -S -B main.py\n"
               "  bwrap: wsbench spawn -c 4 -n 400 -- bwrap --unshare-all --die-with-parent \\\n"
               "           --ro-bind /usr /usr --symlink usr/lib /lib ... --bind {dir} /work \\\n"
               "           --chdir /work /usr/bin/python3 -I -S -B main.py\n"
               "\n"
               "Prints a table and 'RESULT mode=spawn ... evals=N evals_per_s=X failed=N\n"
               "cpu_self_us=X cpu_child_us=X p50_us=...'. Exit status 0, 1 (could not start),\n"
               "2 (bad arguments).\n");
}

static int wb_spawn_bad(const char *what, const char *arg)
{
    fprintf(stderr, "wsbench spawn: %s '%s'\n(wsbench spawn --help for usage)\n", what, arg);
    return 2;
}

/* Prints the human table and the RESULT line. */
static void wb_spawn_report(const wb_spawn_opts_t *o, const wb_spawn_result_t *r)
{
    const wb_hist_t *h = &r->lat;
    double el = r->elapsed > 0 ? r->elapsed : 1e-9;
    uint64_t p50 = wb_hist_quantile(h, 0.5), p99 = wb_hist_quantile(h, 0.99),
             p999 = wb_hist_quantile(h, 0.999), mx = h->count ? h->max : 0;
    printf("\n%-14s spawn, %ld at once\n%-14s", "mode", o->conc, "command");
    for (char *const *a = o->argv; *a != NULL; a++)
        printf(" %s", *a);
    printf("\n%-14s %.2f s\n%-14s %llu ok, %llu failed (%llu timed out)\n", "measured", r->elapsed,
           "runs", (unsigned long long)r->runs, (unsigned long long)r->failed,
           (unsigned long long)r->timeouts);
    printf("%-14s %.1f\n", "runs/s", r->runs / el);
    printf("%-14s p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f ms\n", "latency",
           p50 / 1000.0, p99 / 1000.0, p999 / 1000.0, mx / 1000.0, wb_hist_mean(h) / 1000.0);
    if (r->runs > 0)
        printf("%-14s %.0f us per run (the runs), %.0f us per run (this driver)\n", "cpu",
               r->cpu_child_us / r->runs, r->cpu_self_us / r->runs);
    if (r->first_err[0])
        printf("%-14s %s\n", "first error", r->first_err);
    printf("RESULT mode=spawn procs=1 duration=%.3f conc=%ld evals=%llu evals_per_s=%.2f "
           "failed=%llu timeouts=%llu cpu_self_us=%.0f cpu_child_us=%.0f p50_us=%llu p99_us=%llu "
           "p999_us=%llu max_us=%llu mean_us=%.1f\n",
           r->elapsed, o->conc, (unsigned long long)r->runs, r->runs / el,
           (unsigned long long)r->failed, (unsigned long long)r->timeouts, r->cpu_self_us,
           r->cpu_child_us, (unsigned long long)p50, (unsigned long long)p99,
           (unsigned long long)p999, (unsigned long long)mx, wb_hist_mean(h));
    fflush(stdout);
}

/* Parses a number in [lo, hi]; 0 or -1. */
static int wb_spawn_num(const char *s, double lo, double hi, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return (errno || end == s || *end != '\0' || *v != *v || *v < lo || *v > hi) ? -1 : 0;
}

/* See wb_spawn.h. Long only by its option switch, one case per flag. */
int wb_spawn_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"code", required_argument, NULL, 1000},    {"file", required_argument, NULL, 1001},
        {"timeout", required_argument, NULL, 1002}, {"work-root", required_argument, NULL, 1003},
        {"hist", required_argument, NULL, 1004},    {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    wb_spawn_opts_t o = {
        .conc = 4, .duration = 10, .run_timeout = 10, .code = "pass", .file = "main.py"};
    const char *hist_path = NULL, *root = NULL;
    char tmp_root[] = "/tmp/wsbench-spawn.XXXXXX", err[512];
    int opt;
    double v;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "+c:n:d:qh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            if (wb_spawn_num(optarg, 1, WB_SPAWN_MAX_CONC, &v) < 0 || v != (long)v)
                return wb_spawn_bad("-c: not a count in 1..256:", optarg);
            o.conc = (long)v;
            break;
        case 'n':
            if (wb_spawn_num(optarg, 1, 1e9, &v) < 0 || v != (long)v)
                return wb_spawn_bad("-n: not a count >= 1:", optarg);
            o.count = (long)v;
            break;
        case 'd':
            if (wb_spawn_num(optarg, 0.01, 86400, &o.duration) < 0)
                return wb_spawn_bad("-d: not seconds in 0.01..86400:", optarg);
            break;
        case 1000:
            o.code = optarg;
            break;
        case 1001:
            if (optarg[0] == '\0' || strchr(optarg, '/') != NULL)
                return wb_spawn_bad("--file: not a plain file name:", optarg);
            o.file = optarg;
            break;
        case 1002:
            if (wb_spawn_num(optarg, 0.01, 3600, &o.run_timeout) < 0)
                return wb_spawn_bad("--timeout: not seconds in 0.01..3600:", optarg);
            break;
        case 1003:
            root = optarg;
            break;
        case 1004:
            hist_path = optarg;
            break;
        case 'q':
            break; /* there are no progress lines to silence */
        case 'h':
            wb_spawn_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "(wsbench spawn --help for usage)\n");
            return 2;
        }
    }
    if (optind >= argc)
        return wb_spawn_bad("missing COMMAND after", "--");
    o.argv = &argv[optind];
    if (root == NULL && (root = mkdtemp(tmp_root)) == NULL) {
        fprintf(stderr, "wsbench spawn: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    o.root = root;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = wb_spawn_on_signal; /* no SA_RESTART: poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    wb_spawn_result_t *res = malloc(sizeof(*res));
    int rc = res == NULL ? -1 : wb_spawn_run(&o, res, err, sizeof(err));
    if (root == tmp_root)
        (void)rmdir(tmp_root);
    if (rc < 0) {
        fprintf(stderr, "wsbench spawn: %s\n", res == NULL ? "out of memory" : err);
        free(res);
        return 1;
    }
    if (hist_path != NULL) {
        FILE *f = fopen(hist_path, "w");
        if (f == NULL || wb_hist_write_dist(&res->lat, f) < 0)
            fprintf(stderr, "wsbench spawn: %s: %s\n", hist_path, strerror(errno));
        if (f != NULL)
            fclose(f);
    }
    wb_spawn_report(&o, res);
    free(res);
    return 0;
}
