/* ctl_roll: the rolling restart (see ctl_roll.h).
 *
 * One loop per batch: poll(2) over a signalfd and the running commands'
 * pipes, with a tick of at most CTL_ROLL_TICK; on every tick the fleet is
 * read again (when a worker waits on it) and each worker of the batch
 * advances its own state machine. HTTP calls and the probe block, each
 * bounded by its own timeout. */
#include "ctl_roll.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "ctl_cmd.h"
#include "ctl_net.h"
#include "ctl_show.h"

#define CTL_ROLL_TICK    0.25 /* s between fleet reads while waiting on it */
#define CTL_ROLL_BACKOFF 1.0  /* s before a failed step is tried again */
#define CTL_ROLL_PIPE_S  2.0  /* s to drain pipes a daemonized child keeps open */
#define CTL_ROLL_KILL_S  5.0  /* s between SIGTERM and SIGKILL of a command */
#define CTL_ROLL_PROBE_S 10.0 /* s at most for one probe */
#define CTL_ROLL_MAX_LBS 32

enum ctl_step {
    CTL_PENDING = 0,
    CTL_DRAIN,
    CTL_DRAIN_WAIT,
    CTL_EXEC,  /* command running, or about to start at `next` */
    CTL_READY, /* waiting for registration, health and the probe */
    CTL_ENABLE,
    CTL_DONE,      /* restarted and enabled */
    CTL_FAILED,    /* left drained */
    CTL_SKIPPED,   /* interrupted before its restart: enabled again */
    CTL_UNTOUCHED, /* never started */
};

static const char *const ctl_step_names[] = {
    "pending", "drain", "drain-wait", "restart",     "ready-wait",
    "enable",  "ok",    "FAILED",     "interrupted", "not started",
};

typedef struct ctl_rw {
    char id[CTL_ID_MAX];
    char host[256], port[8];
    unsigned char known[CTL_ROLL_MAX_LBS];       /* listed by lb l at the start */
    unsigned char pre_drained[CTL_ROLL_MAX_LBS]; /* admin-drained there before us */
    unsigned char drained[CTL_ROLL_MAX_LBS];     /* drained by us */
    uint64_t pre_started[CTL_ROLL_MAX_LBS];      /* started_ms lb l showed (0: none) */
    int in_reg;                                  /* registered in Redis at the start */
    uint64_t reg_started;
    enum ctl_step step;
    int attempts, tries; /* restarts started; tries of the current drain/enable */
    double t_start, t_end, deadline, next, exited_at, term_at;
    ctl_cmd_t cmd;
    int running, timed_out;
    char why[300]; /* what the ready wait still misses */
    buf_t notes;   /* for the summary */
} ctl_rw_t;

typedef struct ctl_roll {
    const ctl_conf_t *c;
    const ctl_roll_opts_t *o;
    ctl_out_t *out;
    ctl_rw_t *w;
    size_t n;
    double t0;
    int sfd;
    int stop;  /* 1: a signal asked to stop; 2: --max-failures reached */
    int abort; /* a second signal: kill the commands */
    long failures;
    ctl_fleet_t fleet;
    double fleet_at;
} ctl_roll_t;

/* ---- output ------------------------------------------------------------------ */

static void ctl_roll_say(ctl_roll_t *r, ctl_rw_t *w, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ctl_roll_say(ctl_roll_t *r, ctl_rw_t *w, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctl_out_printf(r->out, 1, "[%s +%.1fs] -- %s\n", w->id, ctl_now() - r->t0, msg);
}

static void ctl_roll_note(ctl_rw_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ctl_roll_note(ctl_rw_t *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (buf_size(&w->notes) > 0)
        buf_append_str(&w->notes, "; ");
    buf_vprintf(&w->notes, fmt, ap);
    va_end(ap);
}

typedef struct ctl_line_ctx {
    ctl_roll_t *r;
    ctl_rw_t *w;
} ctl_line_ctx_t;

/* One line of the command's output, written whole with its prefix: to
 * stdout or stderr as the command wrote it. */
static void ctl_roll_line(void *ud, int fd, const char *line, size_t n)
{
    ctl_line_ctx_t *x = ud;
    buf_t b = BUF_INIT;
    if (buf_printf(&b, "[%s +%.1fs] ", x->w->id, ctl_now() - x->r->t0) == 0 &&
        buf_append(&b, line, n) == 0 && buf_append(&b, "\n", 1) == 0)
        ctl_out_write(x->r->out, fd, buf_head(&b), buf_size(&b));
    buf_free(&b);
}

static void ctl_roll_progress(ctl_roll_t *r)
{
    char line[512];
    size_t settled = 0, off = 0;
    for (size_t i = 0; i < r->n; i++)
        settled += r->w[i].step >= CTL_DONE;
    off += (size_t)snprintf(line, sizeof(line), "[%zu/%zu done", settled, r->n);
    if (r->failures)
        off += (size_t)snprintf(line + off, sizeof(line) - off, ", %ld failed", r->failures);
    off += (size_t)snprintf(line + off, sizeof(line) - off, "]");
    for (size_t i = 0; i < r->n && off < sizeof(line) - 64; i++) {
        ctl_rw_t *w = &r->w[i];
        if (w->step > CTL_PENDING && w->step < CTL_DONE)
            off += (size_t)snprintf(
                line + off, sizeof(line) - off, " %s: %s%s %.1fs", w->id, ctl_step_names[w->step],
                w->step == CTL_EXEC && w->attempts > 1 ? " (retry)" : "", ctl_now() - w->t_start);
    }
    ctl_out_progress(r->out, "%s | %.1fs%s", line, ctl_now() - r->t0, r->stop ? " | stopping" : "");
}

/* ---- talking to the lbs ---------------------------------------------------------- */

/* Drains (or enables) w on every lb that knew it and still needs it.
 * Returns 0, or -1 with err naming the lbs that failed. */
static int ctl_roll_post(ctl_roll_t *r, ctl_rw_t *w, int drain, char *err, size_t errlen)
{
    size_t off = 0;
    err[0] = '\0';
    for (size_t l = 0; l < r->c->nlbs; l++) {
        if (!w->known[l] || (drain ? w->drained[l] : !w->drained[l] || w->pre_drained[l]))
            continue;
        char perr[300];
        int rc = ctl_fleet_post(r->c, l, w->id, drain ? "drain" : "enable", perr, sizeof(perr));
        if (rc == CTL_POST_OK) {
            w->drained[l] = (unsigned char)drain;
            continue;
        }
        if (rc == CTL_POST_UNKNOWN)
            snprintf(perr, sizeof(perr), "lb%zu does not know it (any more)", l + 1);
        off += (size_t)snprintf(err + off, off < errlen ? errlen - off : 0, "%slb%zu: %s",
                                off ? "; " : "", l + 1, perr);
    }
    return err[0] ? -1 : 0;
}

static void ctl_roll_lbs(ctl_roll_t *r, ctl_rw_t *w, const unsigned char *set, char *out,
                         size_t len)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t l = 0; l < r->c->nlbs && off < len; l++)
        if (set[l])
            off += (size_t)snprintf(out + off, len - off, "%slb%zu", off ? ", " : "", l + 1);
    if (off == 0)
        snprintf(out, len, "no lb");
}

/* ---- ending a worker ----------------------------------------------------------- */

static void ctl_roll_fail(ctl_roll_t *r, ctl_rw_t *w, const char *why)
{
    w->step = CTL_FAILED;
    w->t_end = ctl_now();
    r->failures++;
    ctl_roll_note(w, "%s; left drained", why);
    ctl_roll_say(r, w, "FAILED: %s; left drained", why);
    if (r->failures >= r->o->max_failures && r->stop == 0) {
        r->stop = 2;
        ctl_out_printf(r->out, 1,
                       "wslbctl: %ld failure%s (--max-failures %ld): stopping after this batch; "
                       "the workers not started yet are left untouched\n",
                       r->failures, r->failures == 1 ? "" : "s", r->o->max_failures);
    }
}

/* A restart attempt failed: try again after a pause, or give up. */
static void ctl_roll_retry(ctl_roll_t *r, ctl_rw_t *w, const char *why)
{
    ctl_roll_note(w, "attempt %d: %s", w->attempts, why);
    if (w->attempts <= r->o->retries && !r->abort) {
        ctl_roll_say(r, w, "attempt %d failed: %s; trying again (attempt %d of %ld)", w->attempts,
                     why, w->attempts + 1, r->o->retries + 1);
        w->step = CTL_EXEC;
        w->next = ctl_now() + CTL_ROLL_BACKOFF;
        return;
    }
    char msg[400];
    snprintf(msg, sizeof(msg), "gave up after %d attempt%s", w->attempts,
             w->attempts == 1 ? "" : "s");
    ctl_roll_fail(r, w, msg);
}

/* Interrupted before its restart: it takes clients again. */
static void ctl_roll_skip(ctl_roll_t *r, ctl_rw_t *w)
{
    char err[600];
    w->t_end = ctl_now();
    if (ctl_roll_post(r, w, 0, err, sizeof(err)) < 0) {
        ctl_roll_fail(r, w, "interrupted before its restart, and enabling it again failed");
        ctl_roll_note(w, "%s", err);
        return;
    }
    w->step = CTL_SKIPPED;
    ctl_roll_note(w, "interrupted before its restart; enabled again");
    ctl_roll_say(r, w, "interrupted before its restart: enabled again");
}

/* ---- the steps ------------------------------------------------------------------- */

static void ctl_roll_drain(ctl_roll_t *r, ctl_rw_t *w)
{
    char err[600], lbs[200];
    if (ctl_now() < w->next)
        return;
    if (ctl_roll_post(r, w, 1, err, sizeof(err)) < 0) {
        if (++w->tries <= r->o->retries) {
            ctl_roll_say(r, w, "drain failed (%s); trying again", err);
            ctl_roll_note(w, "drain try %d: %s", w->tries, err);
            w->next = ctl_now() + CTL_ROLL_BACKOFF;
            return;
        }
        snprintf(lbs, sizeof(lbs), "could not drain it: %.150s", err);
        ctl_roll_fail(r, w, lbs);
        return;
    }
    ctl_roll_lbs(r, w, w->known, lbs, sizeof(lbs));
    if (r->o->drain_timeout > 0)
        ctl_roll_say(r, w, "drained on %s; waiting up to %.0fs for its websockets to move", lbs,
                     r->o->drain_timeout);
    else
        ctl_roll_say(r, w, "drained on %s", lbs);
    w->step = CTL_DRAIN_WAIT;
    w->deadline = ctl_now() + r->o->drain_timeout;
}

static void ctl_roll_drain_wait(ctl_roll_t *r, ctl_rw_t *w)
{
    const ctl_be_t *b = ctl_fleet_find(&r->fleet, w->id);
    int64_t left = 0;
    int unsure = 0;
    for (size_t l = 0; l < r->c->nlbs; l++) {
        if (!w->known[l])
            continue;
        if (!r->fleet.lbs[l].ok)
            unsure = 1;
        else if (b && b->views[l].known)
            left += b->views[l].active;
    }
    if (!unsure && left == 0) {
        ctl_roll_say(r, w, "no websockets left from the lbs");
    } else if (ctl_now() >= w->deadline) {
        ctl_roll_say(r, w,
                     "drain timeout: %lld websocket%s still open%s; the worker's own drain "
                     "closes them with 1001 and clients reconnect elsewhere",
                     (long long)left, left == 1 ? "" : "s",
                     unsure ? " (an lb did not answer)" : "");
    } else {
        return;
    }
    w->step = CTL_EXEC;
    w->next = 0;
}

static void ctl_roll_exec_start(ctl_roll_t *r, ctl_rw_t *w)
{
    char err[300];
    buf_t cmd = BUF_INIT;
    if (ctl_subst(r->o->exec, w->id, w->host, w->port, &cmd, err, sizeof(err)) < 0) {
        buf_free(&cmd);
        ctl_roll_fail(r, w, err);
        return;
    }
    w->attempts++;
    ctl_roll_say(r, w, "restart, attempt %d of %ld: %s", w->attempts, r->o->retries + 1,
                 buf_head(&cmd));
    if (ctl_cmd_start(&w->cmd, buf_head(&cmd), w->id, w->host, w->port, err, sizeof(err)) < 0) {
        ctl_roll_retry(r, w, err);
    } else {
        w->running = 1;
        w->timed_out = 0;
        w->exited_at = 0;
        w->term_at = 0;
        w->deadline = ctl_now() + r->o->exec_timeout;
    }
    buf_free(&cmd);
}

/* The command ended and its pipes are drained or given up on. */
static void ctl_roll_exec_end(ctl_roll_t *r, ctl_rw_t *w)
{
    char how[120], msg[200];
    ctl_line_ctx_t x = {r, w};
    ctl_cmd_close(&w->cmd, ctl_roll_line, &x);
    w->running = 0;
    ctl_cmd_describe(w->cmd.status, how, sizeof(how));
    if (r->abort) {
        ctl_roll_fail(r, w, "aborted: the command was stopped");
    } else if (w->timed_out) {
        snprintf(msg, sizeof(msg), "the command did not end within %.0fs (--exec-timeout)",
                 r->o->exec_timeout);
        ctl_roll_retry(r, w, msg);
    } else if (w->cmd.status != 0) {
        snprintf(msg, sizeof(msg), "the command %s", how);
        ctl_roll_retry(r, w, msg);
    } else {
        ctl_roll_say(r, w, "the command %s; waiting up to %.0fs for the worker to be ready", how,
                     r->o->ready_timeout);
        w->step = CTL_READY;
        w->deadline = ctl_now() + r->o->ready_timeout;
        w->next = 0;
        w->why[0] = '\0';
    }
}

static void ctl_roll_exec(ctl_roll_t *r, ctl_rw_t *w)
{
    double now = ctl_now();
    if (!w->running) {
        if (r->abort)
            ctl_roll_fail(r, w, "aborted before the next attempt");
        else if (now >= w->next)
            ctl_roll_exec_start(r, w);
        return;
    }
    if (!w->cmd.exited && ctl_cmd_reap(&w->cmd))
        w->exited_at = now;
    if (!w->cmd.exited) {
        if (now >= w->deadline && w->term_at == 0) {
            w->timed_out = 1;
            w->term_at = now;
            ctl_roll_say(r, w, "the command runs past --exec-timeout: stopping it");
            ctl_cmd_kill(&w->cmd, SIGTERM);
        } else if (w->term_at && now >= w->term_at + CTL_ROLL_KILL_S) {
            ctl_cmd_kill(&w->cmd, SIGKILL);
        }
        return;
    }
    /* Something it started in the background may hold the pipes open. */
    if ((w->cmd.fd[0] < 0 && w->cmd.fd[1] < 0) || now >= w->exited_at + CTL_ROLL_PIPE_S)
        ctl_roll_exec_end(r, w);
}

/* 1 when w has re-registered and is up on every lb it was on; else 0 with
 * what is missing in w->why. */
static int ctl_roll_ready_state(ctl_roll_t *r, ctl_rw_t *w, const ctl_be_t *b)
{
    const ctl_fleet_t *f = &r->fleet;
    if (w->in_reg) {
        const ctl_regw_t *g = b ? b->reg : NULL;
        const char *miss = !f->reg_ok                          ? "Redis does not answer"
                           : g == NULL                         ? "not registered in Redis yet"
                           : g->err[0]                         ? g->err
                           : g->s.started_ms == w->reg_started ? "Redis still shows the old process"
                           : g->s.draining                     ? "draining in Redis"
                                                               : NULL;
        if (miss) {
            snprintf(w->why, sizeof(w->why), "%s", miss);
            return 0;
        }
    }
    for (size_t l = 0; l < r->c->nlbs; l++) {
        if (!w->known[l])
            continue;
        const ctl_view_t *v = b ? &b->views[l] : NULL;
        const char *miss = !f->lbs[l].ok            ? "does not answer"
                           : v == NULL || !v->known ? "does not know it yet"
                           : w->pre_started[l] && v->started_ms == w->pre_started[l]
                               ? "still sees the old process"
                           : strcmp(v->health, "up") != 0 ? v->health
                                                          : NULL;
        if (miss) {
            snprintf(w->why, sizeof(w->why), "lb%zu: %s", l + 1, miss);
            return 0;
        }
    }
    return 1;
}

static void ctl_roll_ready(ctl_roll_t *r, ctl_rw_t *w)
{
    double now = ctl_now();
    if (r->abort) {
        ctl_roll_fail(r, w, "aborted while waiting for it to be ready");
        return;
    }
    if (now >= w->deadline) {
        char msg[400];
        snprintf(msg, sizeof(msg), "not ready within %.0fs (--ready-timeout): %s",
                 r->o->ready_timeout, w->why[0] ? w->why : "?");
        ctl_roll_retry(r, w, msg);
        return;
    }
    const ctl_be_t *b = ctl_fleet_find(&r->fleet, w->id);
    if (now < w->next || !ctl_roll_ready_state(r, w, b))
        return;
    ctl_probe_opts_t po = r->o->probe;
    double ms = 0, left = w->deadline - now;
    char err[300];
    po.addr = ctl_be_addr(&r->fleet, b);
    po.expect_id = w->id;
    po.timeout_s = left < CTL_ROLL_PROBE_S ? left : CTL_ROLL_PROBE_S;
    if (ctl_probe_run(&po, &ms, err, sizeof(err)) < 0) {
        snprintf(w->why, sizeof(w->why), "probe at %.60s: %.200s", po.addr, err);
        w->next = ctl_now() + CTL_ROLL_BACKOFF;
        return;
    }
    ctl_roll_say(r, w, "ready: re-registered, up on every lb, probe %s ran at %s in %.0f ms",
                 po.runtime, po.addr, ms);
    w->step = CTL_ENABLE;
    w->tries = 0;
    w->next = 0;
}

static void ctl_roll_enable(ctl_roll_t *r, ctl_rw_t *w)
{
    char err[600], lbs[200];
    if (ctl_now() < w->next)
        return;
    if (ctl_roll_post(r, w, 0, err, sizeof(err)) < 0) {
        if (++w->tries <= r->o->retries) {
            ctl_roll_say(r, w, "enable failed (%s); trying again", err);
            w->next = ctl_now() + CTL_ROLL_BACKOFF;
            return;
        }
        snprintf(lbs, sizeof(lbs), "restarted, but could not enable it: %.150s", err);
        ctl_roll_fail(r, w, lbs);
        return;
    }
    unsigned char kept[CTL_ROLL_MAX_LBS] = {0};
    int any_kept = 0;
    for (size_t l = 0; l < r->c->nlbs; l++)
        any_kept |= kept[l] = w->known[l] && w->pre_drained[l];
    w->step = CTL_DONE;
    w->t_end = ctl_now();
    if (any_kept) {
        ctl_roll_lbs(r, w, kept, lbs, sizeof(lbs));
        ctl_roll_note(w, "was drained before the rollout on %s: left drained there", lbs);
    }
    ctl_roll_lbs(r, w, w->known, lbs, sizeof(lbs));
    ctl_roll_say(r, w, "enabled on %s: done in %.1fs", lbs, w->t_end - w->t_start);
}

/* Returns 1 when w moved to another step (so the loop goes on at once). */
static int ctl_roll_advance(ctl_roll_t *r, ctl_rw_t *w)
{
    enum ctl_step was = w->step;
    if (r->stop == 1 && (w->step == CTL_DRAIN || w->step == CTL_DRAIN_WAIT)) {
        ctl_roll_skip(r, w);
        return 1;
    }
    switch (w->step) {
    case CTL_DRAIN:
        ctl_roll_drain(r, w);
        break;
    case CTL_DRAIN_WAIT:
        ctl_roll_drain_wait(r, w);
        break;
    case CTL_EXEC:
        ctl_roll_exec(r, w);
        break;
    case CTL_READY:
        ctl_roll_ready(r, w);
        break;
    case CTL_ENABLE:
        ctl_roll_enable(r, w);
        break;
    default:
        break;
    }
    return w->step != was;
}

/* ---- the loop --------------------------------------------------------------------- */

static void ctl_roll_signal(ctl_roll_t *r)
{
    struct signalfd_siginfo si;
    while (read(r->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD)
            continue;
        if (r->stop != 1) {
            r->stop = 1;
            ctl_out_printf(r->out, 1,
                           "wslbctl: %s: stopping after the workers being restarted (again to "
                           "abort them)\n",
                           strsignal((int)si.ssi_signo));
        } else if (!r->abort) {
            r->abort = 1;
            ctl_out_printf(r->out, 1, "wslbctl: aborting: stopping the running commands\n");
            for (size_t i = 0; i < r->n; i++)
                if (r->w[i].running && !r->w[i].cmd.exited)
                    ctl_cmd_kill(&r->w[i].cmd, SIGTERM);
        }
    }
}

/* Waits for output, a signal or the next tick (not at all when wait is 0),
 * and handles the first two. */
static void ctl_roll_poll(ctl_roll_t *r, ctl_rw_t *batch, size_t nb, int wait)
{
    struct pollfd pfd[1 + 2 * 64];
    ctl_rw_t *owner[1 + 2 * 64];
    int which[1 + 2 * 64];
    nfds_t np = 0;
    pfd[np++] = (struct pollfd){.fd = r->sfd, .events = POLLIN};
    for (size_t i = 0; i < nb && i < 64; i++)
        for (int k = 0; k < 2; k++)
            if (batch[i].running && batch[i].cmd.fd[k] >= 0) {
                owner[np] = &batch[i];
                which[np] = k;
                pfd[np++] = (struct pollfd){.fd = batch[i].cmd.fd[k], .events = POLLIN};
            }
    int n = poll(pfd, np, wait ? (int)(CTL_ROLL_TICK * 1000) : 0);
    if (n <= 0)
        return;
    if (pfd[0].revents)
        ctl_roll_signal(r);
    for (nfds_t i = 1; i < np; i++) {
        if (!pfd[i].revents)
            continue;
        ctl_line_ctx_t x = {r, owner[i]};
        ctl_cmd_pump(&owner[i]->cmd, which[i], ctl_roll_line, &x);
    }
}

static int ctl_roll_needs_fleet(const ctl_rw_t *batch, size_t nb)
{
    for (size_t i = 0; i < nb; i++)
        if (batch[i].step == CTL_DRAIN_WAIT || batch[i].step == CTL_READY)
            return 1;
    return 0;
}

static void ctl_roll_batch(ctl_roll_t *r, ctl_rw_t *batch, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        batch[i].step = CTL_DRAIN;
        batch[i].t_start = ctl_now();
    }
    for (;;) {
        if (ctl_roll_needs_fleet(batch, nb) && ctl_now() - r->fleet_at >= CTL_ROLL_TICK) {
            ctl_fleet_free(&r->fleet);
            ctl_fleet_read(r->c, &r->fleet);
            r->fleet_at = ctl_now();
        }
        size_t active = 0;
        int moved = 0;
        for (size_t i = 0; i < nb; i++) {
            moved |= ctl_roll_advance(r, &batch[i]);
            active += batch[i].step < CTL_DONE;
        }
        if (active == 0)
            return;
        ctl_roll_progress(r);
        ctl_roll_poll(r, batch, nb, !moved);
    }
}

/* ---- before and after ------------------------------------------------------------ */

/* Takes what the lbs and Redis know of w before anything changes. */
static int ctl_roll_snapshot(ctl_roll_t *r, ctl_rw_t *w, const ctl_be_t *b, char *err,
                             size_t errlen)
{
    const ctl_fleet_t *f = &r->fleet;
    int any = 0;
    for (size_t l = 0; l < f->nlbs; l++) {
        w->known[l] = (unsigned char)b->views[l].known;
        w->pre_drained[l] = (unsigned char)(b->views[l].known && b->views[l].admin_drain);
        w->drained[l] = w->pre_drained[l];
        w->pre_started[l] = b->views[l].known ? b->views[l].started_ms : 0;
        any |= w->known[l];
    }
    if (!any) {
        snprintf(err, errlen,
                 "%s is registered in Redis but unknown to every lb: nothing to "
                 "drain it on",
                 b->id);
        return -1;
    }
    w->in_reg = b->reg != NULL && b->reg->err[0] == '\0';
    w->reg_started = w->in_reg ? b->reg->s.started_ms : 0;
    snprintf(w->id, sizeof(w->id), "%s", b->id);
    char serr[200];
    if (ctl_net_split(ctl_be_addr(f, b), w->host, sizeof(w->host), w->port, sizeof(w->port), serr,
                      sizeof(serr)) < 0) {
        snprintf(err, errlen, "%s: %s", b->id, serr);
        return -1;
    }
    buf_t probe = BUF_INIT;
    int rc = ctl_subst(r->o->exec, w->id, w->host, w->port, &probe, err, errlen);
    buf_free(&probe);
    return rc;
}

static void ctl_roll_known(const ctl_fleet_t *f, buf_t *out)
{
    for (size_t i = 0; i < f->nbes && i < 20; i++)
        buf_printf(out, "%s%s", i ? ", " : "", f->bes[i].id);
    if (f->nbes > 20)
        buf_append_str(out, ", ...");
    if (f->nbes == 0)
        buf_append_str(out, "none");
}

/* Checks the sources and picks the workers. Returns 0, or -1 with err. */
static int ctl_roll_prepare(ctl_roll_t *r, char *const *ids, size_t nids, char *err, size_t errlen)
{
    ctl_fleet_t *f = &r->fleet;
    if (ctl_fleet_read(r->c, f) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->fleet_at = ctl_now();
    for (size_t l = 0; l < f->nlbs; l++) {
        if (!f->lbs[l].ok) {
            snprintf(err, errlen, "%s (%.200s): %.300s: a rollout needs every lb", f->lbs[l].name,
                     f->lbs[l].url->text, f->lbs[l].err);
            return -1;
        }
    }
    if (f->use_reg && !f->reg_ok) {
        snprintf(err, errlen, "redis %s: %s: cannot tell restarted workers from old ones",
                 r->c->redis, f->reg_err);
        return -1;
    }
    size_t cnt = nids ? nids : f->nbes;
    r->w = calloc(cnt ? cnt : 1, sizeof(*r->w));
    if (r->w == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cnt; i++) {
        const ctl_be_t *b = nids ? ctl_fleet_find(f, ids[i]) : &f->bes[i];
        if (b == NULL) {
            buf_t known = BUF_INIT;
            ctl_roll_known(f, &known);
            snprintf(err, errlen, "unknown backend id '%.100s' (known: %.300s)", ids[i],
                     buf_size(&known) ? buf_head(&known) : "");
            buf_free(&known);
            return -1;
        }
        int anywhere = 0;
        for (size_t l = 0; l < f->nlbs; l++)
            anywhere |= b->views[l].known;
        if (!nids && !anywhere) {
            ctl_out_printf(r->out, 2,
                           "wslbctl: skipping %s: registered in Redis but unknown to "
                           "every lb\n",
                           b->id);
            continue;
        }
        if (ctl_roll_snapshot(r, &r->w[r->n], b, err, errlen) < 0)
            return -1;
        for (size_t k = 0; k < r->n; k++) {
            if (strcmp(r->w[k].id, r->w[r->n].id) == 0) {
                snprintf(err, errlen, "%s is named twice", r->w[k].id);
                return -1;
            }
        }
        r->n++;
    }
    if (r->n == 0) {
        snprintf(err, errlen, "no backends to roll out");
        return -1;
    }
    return 0;
}

static int ctl_roll_summary(ctl_roll_t *r)
{
    ctl_tab_t t;
    buf_t out = BUF_INIT;
    char age[32];
    size_t ok = 0, failed = 0, other = 0;
    ctl_tab_init(&t, 5, 1u << 2 | 1u << 3);
    ctl_tab_cell(&t, "WORKER");
    ctl_tab_cell(&t, "RESULT");
    ctl_tab_cell(&t, "ATTEMPTS");
    ctl_tab_cell(&t, "TIME");
    ctl_tab_cell(&t, "NOTES");
    for (size_t i = 0; i < r->n; i++) {
        ctl_rw_t *w = &r->w[i];
        ok += w->step == CTL_DONE;
        failed += w->step == CTL_FAILED;
        other += w->step != CTL_DONE && w->step != CTL_FAILED;
        ctl_tab_cell(&t, "%s", w->id);
        ctl_tab_cell(&t, "%s", ctl_step_names[w->step]);
        ctl_tab_cell(&t, "%d", w->attempts);
        ctl_tab_cell(&t, "%s",
                     w->t_end
                         ? ctl_show_age((int64_t)((w->t_end - w->t_start) * 1000), age, sizeof(age))
                         : "-");
        ctl_tab_cell(&t, "%s", buf_size(&w->notes) ? buf_head(&w->notes) : "");
    }
    buf_append_str(&out, "\n");
    ctl_tab_render(&t, &out);
    buf_printf(&out, "rollout: %zu of %zu restarted, %zu failed, %zu not restarted, in %s\n", ok,
               r->n, failed, other,
               ctl_show_age((int64_t)((ctl_now() - r->t0) * 1000), age, sizeof(age)));
    ctl_out_done(r->out);
    ctl_out_write(r->out, 1, buf_head(&out), buf_size(&out));
    buf_free(&out);
    ctl_tab_free(&t);
    return ok == r->n ? 0 : 1;
}

static int ctl_roll_signals(ctl_roll_t *r, sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, old) < 0)
        return -1;
    r->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return r->sfd < 0 ? -1 : 0;
}

int ctl_roll_run(const ctl_conf_t *c, const ctl_roll_opts_t *o, char *const *ids, size_t nids,
                 ctl_out_t *out)
{
    ctl_roll_t r = {.c = c, .o = o, .out = out, .sfd = -1};
    char err[800];
    sigset_t old;
    int rc = 1;
    r.t0 = ctl_now();
    sigprocmask(SIG_SETMASK, NULL, &old);
    if (c->nlbs > CTL_ROLL_MAX_LBS) {
        ctl_out_printf(out, 2, "wslbctl: rollout: at most %d lbs\n", CTL_ROLL_MAX_LBS);
        return 1;
    }
    if (ctl_roll_signals(&r, &old) < 0) {
        ctl_out_printf(out, 2, "wslbctl: rollout: signals: %s\n", strerror(errno));
        goto done;
    }
    if (ctl_roll_prepare(&r, ids, nids, err, sizeof(err)) < 0) {
        ctl_out_printf(out, 2, "wslbctl: rollout refused: %s\n", err);
        goto done;
    }
    ctl_out_printf(out, 1,
                   "wslbctl: rolling out %zu worker%s over %zu lb%s, %ld at a time (retries %ld, "
                   "max failures %ld)\n",
                   r.n, r.n == 1 ? "" : "s", c->nlbs, c->nlbs == 1 ? "" : "s", o->batch, o->retries,
                   o->max_failures);
    for (size_t i = 0; i < r.n; i += (size_t)o->batch) {
        if (r.stop || r.abort)
            break;
        size_t nb = r.n - i < (size_t)o->batch ? r.n - i : (size_t)o->batch;
        ctl_roll_batch(&r, &r.w[i], nb);
    }
    for (size_t i = 0; i < r.n; i++)
        if (r.w[i].step == CTL_PENDING)
            r.w[i].step = CTL_UNTOUCHED;
    rc = ctl_roll_summary(&r);
done:
    ctl_out_done(out);
    if (r.sfd >= 0) {
        /* A signal still pending would act once unblocked: the summary
         * is out, so it has nothing left to stop. */
        struct signalfd_siginfo si;
        while (read(r.sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            ;
        close(r.sfd);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    for (size_t i = 0; i < r.n; i++)
        buf_free(&r.w[i].notes);
    free(r.w);
    ctl_fleet_free(&r.fleet);
    return rc;
}
