/* run: evaluations; see run.h. */
#include "run.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "proto.h"
#include "pub.h"
#include "slot.h"
#include "ws.h"

#define RUN_READ_CHUNK 65536
/* Slots that may fail one run for a sandbox reason before it gets an error. */
#define RUN_MAX_ATTEMPTS 3
#define RUN_NO_SLOT      "no usable sandbox slot on this worker; reconnect to run elsewhere"

static const char *const run_verdicts[V__COUNT] = {"ok",     "signaled", "timeout", "memory",
                                                   "output", "killed",   "error"};
_Static_assert(V__COUNT <= sizeof(((wk_t *)0)->m_verdict) / sizeof(((wk_t *)0)->m_verdict[0]),
               "wk_t.m_verdict has a counter per verdict");

const char *run_verdict_name(enum run_verdict v)
{
    return (unsigned)v < V__COUNT ? run_verdicts[v] : "error";
}

static uint64_t run_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void run_start(run_t *r, int slot);

static void run_send(run_client_t *rc, json_t *j)
{
    rc->sink->send_json(rc->ctx, j);
}

/* Sends {"type":"error","id":id,"error":msg} (id may be NULL). */
static void run_send_error(run_client_t *rc, const char *id, const char *msg)
{
    json_t *j = json_pack("{s:s, s:o, s:s}", "type", "error", "id",
                          id ? json_string(id) : json_null(), "error", msg);
    if (j == NULL)
        return;
    met_inc(rc->w->m_proto_errors, 1);
    run_send(rc, j);
    json_decref(j);
}

static run_t *run_find(run_client_t *rc, const char *id)
{
    run_t *r;
    TAILQ_FOREACH(r, &rc->runs, clink)
    if (strcmp(r->id, id) == 0)
        return r;
    return NULL;
}

/* ---- UTF-8 sanitising ------------------------------------------------------
 * Program output is arbitrary bytes but JSON strings must be valid UTF-8.
 * Valid sequences pass through; a sequence cut by a read boundary waits for
 * the next chunk; anything invalid becomes U+FFFD, one per bad byte. */

static void run_utf8(run_t *r, int s, const uint8_t *p, size_t n, int final, buf_t *out)
{
    uint8_t tmp[8];
    size_t i = 0;
    /* Complete a carried sequence first, byte by byte. */
    while (r->ncarry[s] > 0) {
        size_t k = (size_t)r->ncarry[s];
        memcpy(tmp, r->carry[s], k);
        size_t add = 0;
        while (k < 4 && i + add < n)
            tmp[k++] = p[i + add++];
        int len = ws_utf8_seq(tmp, k);
        if (len == -1 && !final) {
            memcpy(r->carry[s], tmp, k);
            r->ncarry[s] = (int)k;
            return;
        }
        if (len > 0) {
            buf_append(out, tmp, (size_t)len);
            i += (size_t)len - (size_t)r->ncarry[s];
            r->ncarry[s] = 0;
        } else {
            buf_append(out, "\xEF\xBF\xBD", 3);
            /* Drop the first carried byte and retry with the rest. */
            memmove(r->carry[s], r->carry[s] + 1, (size_t)r->ncarry[s] - 1);
            r->ncarry[s]--;
        }
    }
    size_t start = i;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int len = ws_utf8_seq(p + i, n - i);
        if (len > 0) {
            i += (size_t)len;
            continue;
        }
        buf_append(out, p + start, i - start);
        if (len == -1 && !final) {
            memcpy(r->carry[s], p + i, n - i);
            r->ncarry[s] = (int)(n - i);
            return;
        }
        buf_append(out, "\xEF\xBF\xBD", 3);
        i++;
        start = i;
    }
    buf_append(out, p + start, i - start);
}

/* ---- messages to the client ---------------------------------------------- */

static void run_send_output(run_t *r, int s, const uint8_t *p, size_t n, int final)
{
    if (r->client == NULL)
        return;
    buf_t b = BUF_INIT;
    run_utf8(r, s, p, n, final, &b);
    if (buf_size(&b) > 0) {
        json_t *j = json_pack("{s:s, s:s, s:s%}", "type", s == 0 ? "stdout" : "stderr", "id", r->id,
                              "data", buf_head(&b), buf_size(&b));
        if (j != NULL) {
            run_send(r->client, j);
            json_decref(j);
        }
    }
    buf_free(&b);
}

/* r->in grew or shrank by delta bytes: the client's backpressure on input
 * its runs have not consumed follows. */
static void run_in_changed(run_t *r, long delta)
{
    if (r->client != NULL && delta != 0)
        r->client->sink->stdin_changed(r->client->ctx, delta);
}

static void run_in_drop(run_t *r)
{
    run_in_changed(r, -(long)buf_size(&r->in));
    buf_free(&r->in);
}

/* Frees the run: it must not be queued, and its process must be reaped. */
static void run_free(run_t *r)
{
    wk_t *w = r->w;
    ev_io_stop(w->loop, &r->out_w);
    ev_io_stop(w->loop, &r->err_w);
    ev_io_stop(w->loop, &r->in_w);
    ev_timer_stop(w->loop, &r->timer);
    ev_child_stop(w->loop, &r->child_w);
    run_in_drop(r);
    if (r->client != NULL) {
        TAILQ_REMOVE(&r->client->runs, r, clink);
        r->client->nruns--;
    }
    free(r->code);
    free(r);
}

static void run_close_fds(run_t *r)
{
    wk_t *w = r->w;
    ev_io_stop(w->loop, &r->out_w);
    ev_io_stop(w->loop, &r->err_w);
    ev_io_stop(w->loop, &r->in_w);
    if (r->proc.in_fd >= 0)
        close(r->proc.in_fd);
    if (r->proc.out_fd >= 0)
        close(r->proc.out_fd);
    if (r->proc.err_fd >= 0)
        close(r->proc.err_fd);
    r->proc.in_fd = r->proc.out_fd = r->proc.err_fd = -1;
}

/* Sends the exit message, releases the slot and frees the run. */
static void run_finish(run_t *r, enum run_verdict v, const sbx_result_t *res, const char *error)
{
    wk_t *w = r->w;
    uint64_t wall_ms = r->t_start_ns ? (run_now_ns() - r->t_start_ns) / 1000000u : 0;
    met_inc(w->m_verdict[v], 1);
    met_inc(w->m_evals_total, 1);
    if (r->t_start_ns)
        met_observe(w->m_wall_ms, (double)(run_now_ns() - r->t_start_ns) / 1e9);
    if (r->client != NULL) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I}", "type", "exit", "id", r->id, "verdict",
                              run_verdict_name(v), "wall_ms", (json_int_t)wall_ms);
        json_t *status = json_null(), *sig = json_null();
        uint64_t cpu = r->cpu_ms_build, rss = 0;
        if (res != NULL) {
            if (res->reported && res->exited)
                status = json_integer(res->status);
            if (res->signal)
                sig = json_integer(res->signal);
            else if (!res->reported && r->kill_reason >= 0)
                sig = json_integer(SIGKILL);
            cpu += res->cpu_ms;
            rss = res->max_rss_kb;
        }
        json_object_set_new(j, "status", status);
        json_object_set_new(j, "signal", sig);
        json_object_set_new(j, "cpu_ms", json_integer((json_int_t)cpu));
        json_object_set_new(j, "max_rss_kb", json_integer((json_int_t)rss));
        if (error != NULL)
            json_object_set_new(j, "error", json_string(error));
        run_send(r->client, j);
        json_decref(j);
    }
    if (r->slot >= 0) {
        /* A fresh work dir before the next run: off the loop, in the janitor. */
        slot_release(w->slots, r->slot);
        r->slot = -1;
        TAILQ_REMOVE(&w->running, r, qlink);
        w->nrunning--;
    }
    r->phase = RUN_DONE;
    run_free(r);
    pub_changed(w->pub);
    run_pump(w);
    wk_on_run_change(w);
}

/* ---- process I/O ---------------------------------------------------------- */

static void run_kill(run_t *r, enum run_verdict why)
{
    if (r->kill_reason < 0)
        r->kill_reason = (int)why;
    if (r->proc_live)
        sbx_kill(r->w->sbx, &r->proc);
}

static void run_try_complete(run_t *r);
static void run_sandbox_fault(run_t *r, enum slot_stage stage, const char *why);

/* Output the client has not taken yet: stop reading the program's pipes (it
 * blocks on a full pipe) until the client catches up. */
static int run_output_backlog(run_t *r)
{
    if (r->client == NULL || !r->client->sink->out_full(r->client->ctx))
        return 0;
    ev_io_stop(r->w->loop, &r->out_w);
    ev_io_stop(r->w->loop, &r->err_w);
    r->client->paused = 1;
    return 1;
}

static void run_read(run_t *r, int s)
{
    /* Checked before reading too: with several runs on one connection,
     * each would otherwise add a chunk beyond the mark. */
    if (run_output_backlog(r))
        return;
    ev_io *io = s == 0 ? &r->out_w : &r->err_w;
    int fd = s == 0 ? r->proc.out_fd : r->proc.err_fd;
    uint8_t chunk[RUN_READ_CHUNK];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        ev_io_stop(r->w->loop, io);
        if (s == 0)
            r->out_eof = 1;
        else
            r->err_eof = 1;
        run_send_output(r, s, NULL, 0, 1);
        run_try_complete(r);
        return;
    }
    size_t take = (size_t)n;
    if (r->out_bytes + take > r->out_cap) {
        /* Deliver up to the cap, then stop the run; what it wrote before is
         * the user's output and must arrive. */
        take = r->out_cap > r->out_bytes ? (size_t)(r->out_cap - r->out_bytes) : 0;
        run_kill(r, V_OUTPUT);
    }
    if (take > 0 && r->kill_reason != V_KILLED) {
        r->out_bytes += take;
        run_send_output(r, s, chunk, take, 0);
    }
    run_output_backlog(r);
}

static void run_out_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    run_read(io->data, 0);
}

static void run_err_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    run_read(io->data, 1);
}

static void run_close_stdin(run_t *r)
{
    ev_io_stop(r->w->loop, &r->in_w);
    if (r->proc.in_fd >= 0) {
        close(r->proc.in_fd);
        r->proc.in_fd = -1;
    }
    run_in_drop(r);
}

/* Writes pending stdin to the program. Only during the exec phase. */
static void run_write_stdin(run_t *r)
{
    if (r->phase != RUN_EXEC || r->proc.in_fd < 0)
        return;
    while (buf_size(&r->in) > 0) {
        ssize_t n = write(r->proc.in_fd, buf_head(&r->in), buf_size(&r->in));
        if (n > 0) {
            buf_consume(&r->in, (size_t)n);
            r->in_written += (uint64_t)n;
            run_in_changed(r, -(long)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            ev_io_start(r->w->loop, &r->in_w);
            return;
        }
        /* EPIPE: the program closed its stdin or ended; drop the input,
         * and whatever input comes later. */
        r->in_gone = 1;
        run_close_stdin(r);
        return;
    }
    ev_io_stop(r->w->loop, &r->in_w);
    if (r->in_close)
        run_close_stdin(r);
}

static void run_in_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    run_write_stdin(io->data);
}

static void run_child_cb(struct ev_loop *loop, ev_child *cw, int revents)
{
    run_t *r = cw->data;
    ev_child_stop(loop, cw);
    r->wstatus = cw->rstatus;
    r->reaped = 1;
    run_try_complete(r);
}

static void run_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    run_kill(t->data, V_TIMEOUT);
}

/* Nothing can run here until a slot heals: say so to the queued runs now
 * rather than keep them waiting; the lb stops sending clients (healthz 503,
 * Redis "draining"). Whether the last slot broke in a run or in its reset. */
static void run_fail_queue_if_unusable(wk_t *w)
{
    run_t *q;
    while (wk_unusable(w) && (q = TAILQ_FIRST(&w->queue)) != NULL) {
        TAILQ_REMOVE(&w->queue, q, qlink);
        w->nqueued--;
        run_finish(q, V_ERROR, NULL, "sandbox failure: " RUN_NO_SLOT);
    }
}

/* Spawns argv for the run's current phase and starts its watchers. */
static int run_spawn(run_t *r, char **argv, char *err, size_t errlen)
{
    wk_t *w = r->w;
    if (sbx_spawn(w->sbx, r->slot, (const char *const *)argv, (unsigned)w->cfg.memory_mb, &r->proc,
                  err, errlen) < 0)
        return -1;
    met_observe(w->m_start_ms, (double)r->proc.spawn_ns / 1e9);
    r->proc_live = 1;
    r->out_eof = r->err_eof = r->reaped = 0;
    ev_io_init(&r->out_w, run_out_cb, r->proc.out_fd, EV_READ);
    ev_io_init(&r->err_w, run_err_cb, r->proc.err_fd, EV_READ);
    ev_io_init(&r->in_w, run_in_cb, r->proc.in_fd, EV_WRITE);
    ev_child_init(&r->child_w, run_child_cb, r->proc.pid, 0);
    r->out_w.data = r->err_w.data = r->in_w.data = r->child_w.data = r;
    ev_child_start(w->loop, &r->child_w);
    if (r->client != NULL && r->client->sink->out_full(r->client->ctx)) {
        r->client->paused = 1; /* started when the client catches up */
    } else {
        ev_io_start(w->loop, &r->out_w);
        ev_io_start(w->loop, &r->err_w);
    }
    if (r->phase == RUN_BUILD) {
        /* The compiler gets no input; the program's stdin waits for exec. */
        close(r->proc.in_fd);
        r->proc.in_fd = -1;
    } else {
        run_write_stdin(r);
    }
    return 0;
}

static enum run_verdict run_verdict_of(const run_t *r, const sbx_result_t *res)
{
    if (r->kill_reason >= 0)
        return (enum run_verdict)r->kill_reason;
    if (res->error[0])
        return V_ERROR;
    if (res->oom)
        return V_MEMORY;
    if (!res->reported)
        return V_ERROR;
    if (res->signal == SIGXCPU)
        return V_TIMEOUT;
    if (res->signal == SIGXFSZ)
        return V_OUTPUT;
    if (res->signal)
        return V_SIGNALED;
    return V_OK;
}

/* Called whenever one of the three things a phase waits for happened: the
 * init reaped, stdout EOF, stderr EOF. */
static void run_try_complete(run_t *r)
{
    if (!r->reaped || !r->out_eof || !r->err_eof)
        return;
    wk_t *w = r->w;
    sbx_result_t res;
    memset(&res, 0, sizeof(res));
    sbx_finish(w->sbx, &r->proc, &res);
    r->proc_live = 0;
    run_close_fds(r);
    if (res.sandbox_fault)
        return run_sandbox_fault(r, SLOT_STAGE_SETUP, res.error);
    if (r->phase == RUN_BUILD) {
        r->cpu_ms_build = res.cpu_ms;
        if (r->kill_reason < 0 && res.reported && res.exited && res.status == 0 && !res.oom) {
            r->phase = RUN_EXEC;
            char err[256];
            if (run_spawn(r, r->rt->run_argv, err, sizeof(err)) < 0)
                run_sandbox_fault(r, SLOT_STAGE_SPAWN, err);
            return;
        }
        enum run_verdict v = run_verdict_of(r, &res);
        char why[192];
        if (res.error[0]) {
            snprintf(why, sizeof(why), "build: %s", res.error);
        } else if (v == V_OK || v == V_SIGNALED) {
            v = V_ERROR;
            if (res.exited)
                snprintf(why, sizeof(why), "build failed (exit status %d)", res.status);
            else
                snprintf(why, sizeof(why), "build failed (signal %d)", res.signal);
        } else {
            snprintf(why, sizeof(why), "build step ended: %s", run_verdict_name(v));
        }
        run_finish(r, v, &res, why);
        return;
    }
    enum run_verdict v = run_verdict_of(r, &res);
    const char *why = NULL;
    if (v == V_ERROR)
        why = res.error[0]    ? res.error
              : !res.reported ? "sandbox failed to start the program"
                              : NULL;
    run_finish(r, v, &res, why);
}

/* The slot r holds failed for a sandbox reason (not the program's): the slot
 * goes out of service, and r starts again in another slot when nothing of it
 * has reached the client or the program yet; otherwise it ends with an error
 * that says the sandbox failed. */
static void run_sandbox_fault(run_t *r, enum slot_stage stage, const char *why)
{
    wk_t *w = r->w;
    log_debug("run %s: slot %d failed: %s", r->id, r->slot, why);
    ev_timer_stop(w->loop, &r->timer);
    run_close_fds(r);
    slot_fail(w->slots, r->slot, stage, why);
    r->slot = -1;
    TAILQ_REMOVE(&w->running, r, qlink);
    w->nrunning--;
    r->attempts++;
    if (r->client != NULL && r->kill_reason < 0 && r->out_bytes == 0 && r->in_written == 0 &&
        r->attempts < RUN_MAX_ATTEMPTS && !wk_unusable(w)) {
        r->phase = RUN_QUEUED;
        r->t_start_ns = 0;
        r->cpu_ms_build = 0;
        TAILQ_INSERT_HEAD(&w->queue, r, qlink);
        w->nqueued++;
        met_inc(w->m_requeued, 1);
        run_pump(w);
    } else {
        char msg[320];
        snprintf(msg, sizeof(msg), "sandbox failure: %s", wk_unusable(w) ? RUN_NO_SLOT : why);
        run_finish(r, r->kill_reason >= 0 ? (enum run_verdict)r->kill_reason : V_ERROR, NULL, msg);
    }
    run_fail_queue_if_unusable(w);
    pub_changed(w->pub);
}

/* Starts r in slot, which the caller took for it. */
static void run_start(run_t *r, int slot)
{
    wk_t *w = r->w;
    r->slot = slot;
    TAILQ_INSERT_TAIL(&w->running, r, qlink);
    w->nrunning++;
    r->t_start_ns = run_now_ns();
    r->phase = r->rt->build_argv ? RUN_BUILD : RUN_EXEC;
    /* The loop's cached time may lag the clock by this iteration's work; the
     * timeout must not fire before timeout_ms of real time. */
    ev_now_update(w->loop);
    ev_timer_init(&r->timer, run_timer_cb, r->timeout_ms / 1000.0, 0.);
    r->timer.data = r;
    ev_timer_start(w->loop, &r->timer);
    char err[256];
    /* The slot's work dir is fresh: its reset completed before it was FREE. */
    if (sbx_workdir_write(w->sbx, slot, r->rt->file, r->code, r->code_len, err, sizeof(err)) < 0)
        return run_sandbox_fault(r, SLOT_STAGE_WRITE, err);
    if (run_spawn(r, r->phase == RUN_BUILD ? r->rt->build_argv : r->rt->run_argv, err,
                  sizeof(err)) < 0)
        return run_sandbox_fault(r, SLOT_STAGE_SPAWN, err);
    pub_changed(w->pub);
}

void run_pump(wk_t *w)
{
    /* A run that fails its slot goes back to the head of the queue; the loop
     * below (not a nested one) gives it the next slot. */
    if (w->pumping)
        return;
    w->pumping = 1;
    run_t *r;
    int slot;
    while ((r = TAILQ_FIRST(&w->queue)) != NULL && (slot = slot_take(w->slots)) >= 0) {
        TAILQ_REMOVE(&w->queue, r, qlink);
        w->nqueued--;
        run_start(r, slot);
    }
    run_fail_queue_if_unusable(w);
    w->pumping = 0;
}

/* ---- protocol ------------------------------------------------------------- */

/* Sends an exit message for a run that never got a slot. */
static void run_send_exit_error(run_client_t *rc, const char *id, const char *why)
{
    json_t *j = json_pack("{s:s, s:s, s:n, s:n, s:s, s:i, s:i, s:i, s:s}", "type", "exit", "id", id,
                          "status", "signal", "verdict", "error", "wall_ms", 0, "cpu_ms", 0,
                          "max_rss_kb", 0, "error", why);
    met_inc(rc->w->m_verdict[V_ERROR], 1);
    met_inc(rc->w->m_evals_total, 1);
    if (j != NULL) {
        run_send(rc, j);
        json_decref(j);
    }
}

static void run_cmd_run(run_client_t *c, const proto_msg_t *m)
{
    wk_t *w = c->w;
    if (run_find(c, m->id) != NULL)
        return run_send_error(c, m->id, "a run with this id is still active on this connection");
    if (w->draining)
        return run_send_error(c, m->id, "draining: reconnect to run on another worker");
    const rt_runtime_t *rt = rt_find(&w->rt, m->runtime);
    if (rt == NULL) {
        buf_t b = BUF_INIT;
        buf_printf(&b, "unknown runtime '%.64s' (available:", m->runtime);
        for (size_t i = 0; i < w->rt.n; i++)
            buf_printf(&b, "%s %s", i ? "," : "", w->rt.v[i].name);
        buf_printf(&b, ")");
        run_send_exit_error(c, m->id, buf_head(&b));
        buf_free(&b);
        return;
    }
    if (wk_unusable(w))
        return run_send_error(c, m->id, "unavailable: " RUN_NO_SLOT);
    /* A source file the work dir cannot hold is the client's doing: say so,
     * rather than fail a slot with "No space left on device". */
    size_t cap = sbx_workdir_capacity(w->sbx);
    if (cap != 0 && m->code_len > cap - cap / 8) {
        char why[128];
        snprintf(why, sizeof(why), "code too large for the work dir (at most %zu KiB)",
                 (cap - cap / 8) >> 10);
        return run_send_exit_error(c, m->id, why);
    }
    if (slot_count(w->slots, SLOT_FREE) == 0 && w->nqueued >= (size_t)w->cfg.queue)
        return run_send_error(c, m->id, "busy");

    run_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->code = malloc(m->code_len + 1)) == NULL) {
        free(r);
        return run_send_error(c, m->id, "out of memory");
    }
    r->w = w;
    r->client = c;
    snprintf(r->id, sizeof(r->id), "%s", m->id);
    r->rt = rt;
    r->kill_reason = -1;
    r->slot = -1;
    r->proc.in_fd = r->proc.out_fd = r->proc.err_fd = r->proc.status_fd = -1;
    memcpy(r->code, m->code, m->code_len + 1);
    r->code_len = m->code_len;
    r->timeout_ms = (unsigned)w->cfg.timeout_ms;
    /* A run may lower the worker's timeout, never raise it. */
    if (m->timeout_ms > 0 && m->timeout_ms < w->cfg.timeout_ms)
        r->timeout_ms = (unsigned)m->timeout_ms;
    r->out_cap = (uint64_t)w->cfg.output_kb * 1024;
    if (m->has_stdin && buf_append(&r->in, m->stdin_data, m->stdin_len) < 0) {
        free(r->code);
        free(r);
        return run_send_error(c, m->id, "out of memory");
    }
    /* Input given up front is the whole input unless the client says it
     * will send more with "stdin" messages. */
    r->in_close = m->has_stdin && !m->stdin_open;
    TAILQ_INSERT_TAIL(&c->runs, r, clink);
    c->nruns++;
    run_in_changed(r, (long)buf_size(&r->in));
    /* Through the queue, so that runs start in order even while slots are
     * being reset; it starts at once when a slot is free. */
    r->phase = RUN_QUEUED;
    TAILQ_INSERT_TAIL(&w->queue, r, qlink);
    w->nqueued++;
    run_pump(w);
    pub_changed(w->pub);
}

void run_client_init(run_client_t *rc, wk_t *w, const run_sink_t *sink, void *ctx)
{
    memset(rc, 0, sizeof(*rc));
    rc->w = w;
    rc->sink = sink;
    rc->ctx = ctx;
    TAILQ_INIT(&rc->runs);
}

void run_handle_message(run_client_t *c, const char *data, size_t len)
{
    proto_msg_t m;
    char err[256];
    if (proto_parse(data, len, &m, err, sizeof(err)) < 0) {
        run_send_error(c, m.id, err);
        proto_msg_free(&m);
        return;
    }
    if (m.type == PROTO_RUN) {
        run_cmd_run(c, &m);
        proto_msg_free(&m);
        return;
    }
    run_t *r = run_find(c, m.id);
    if (r == NULL) {
        run_send_error(c, m.id, "no active run with this id");
    } else if (m.type == PROTO_KILL) {
        if (r->phase == RUN_QUEUED) {
            TAILQ_REMOVE(&c->w->queue, r, qlink);
            c->w->nqueued--;
            r->kill_reason = V_KILLED;
            run_finish(r, V_KILLED, NULL, NULL);
        } else {
            run_kill(r, V_KILLED);
        }
    } else if (m.type == PROTO_STDIN) {
        if (r->in_close) {
            run_send_error(c, m.id, "stdin is already closed");
        } else if (r->in_gone) {
            /* Buffering it would only grow the worker: the program will never
             * read it. Said once. */
            if (r->in_gone == 1)
                run_send_error(c, m.id, "the program closed its stdin; input is discarded");
            r->in_gone = 2;
        } else if (buf_append(&r->in, m.stdin_data, m.stdin_len) < 0) {
            run_send_error(c, m.id, "out of memory");
        } else {
            run_in_changed(r, (long)m.stdin_len);
            run_write_stdin(r);
        }
    } else {
        r->in_close = 1;
        if (buf_size(&r->in) == 0 && r->phase == RUN_EXEC)
            run_close_stdin(r);
    }
    proto_msg_free(&m);
}

void run_client_gone(run_client_t *c)
{
    run_t *r, *next;
    for (r = TAILQ_FIRST(&c->runs); r != NULL; r = next) {
        next = TAILQ_NEXT(r, clink);
        TAILQ_REMOVE(&c->runs, r, clink);
        c->nruns--;
        run_in_changed(r, -(long)buf_size(&r->in));
        r->client = NULL;
        if (r->phase == RUN_QUEUED) {
            TAILQ_REMOVE(&c->w->queue, r, qlink);
            c->w->nqueued--;
            run_finish(r, V_KILLED, NULL, NULL);
            continue;
        }
        /* Killed and detached: it is freed when its init is reaped. Keep
         * draining its pipes so it ends promptly. */
        run_kill(r, V_KILLED);
        if (r->proc_live && !r->out_eof)
            ev_io_start(c->w->loop, &r->out_w);
        if (r->proc_live && !r->err_eof)
            ev_io_start(c->w->loop, &r->err_w);
    }
}

void run_resume_output(run_client_t *c)
{
    /* Most flushes have nothing to resume and should not walk the runs. */
    if (!c->paused)
        return;
    c->paused = 0;
    run_t *r;
    TAILQ_FOREACH(r, &c->runs, clink)
    {
        if (!r->proc_live)
            continue;
        if (!r->out_eof && !ev_is_active(&r->out_w))
            ev_io_start(c->w->loop, &r->out_w);
        if (!r->err_eof && !ev_is_active(&r->err_w))
            ev_io_start(c->w->loop, &r->err_w);
    }
}

void run_kill_all(wk_t *w, enum run_verdict why)
{
    /* Queued runs end at once. With pumping held off none of them starts
     * meanwhile, and killing a running one changes no list: both walks are
     * safe. */
    int pumping = w->pumping;
    w->pumping = 1;
    run_t *r;
    while ((r = TAILQ_FIRST(&w->queue)) != NULL) {
        TAILQ_REMOVE(&w->queue, r, qlink);
        w->nqueued--;
        run_finish(r, why, NULL, NULL);
    }
    TAILQ_FOREACH(r, &w->running, qlink)
    run_kill(r, why);
    w->pumping = pumping;
}
