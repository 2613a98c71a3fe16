/* slot: sandbox slot lifecycle and the janitor thread; see slot.h. */
#include "slot.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "met_names.h"

#define SLOT_BACKOFF_MIN 1.0
#define SLOT_BACKOFF_MAX 30.0

/* A slot's reset job, shared by the loop and the janitor under the mutex. */
enum { JOB_NONE = 0, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

static const char *const slot_stage_names[SLOT__STAGES] = {"write", "spawn", "setup", "reset"};
static const char *const slot_state_names[SLOT__STATES] = {"free", "busy", "resetting", "broken"};

struct slot {
    slot_pool_t *p;
    int idx;
    enum slot_state st;
    unsigned fails; /* failures since the slot last completed a run */
    ev_timer retry; /* BROKEN: when to reset it again */
    /* Under p->mu: */
    int job;
    int job_rc;
    double job_ms;
    char job_err[192];
};

struct slot_gauge {
    slot_pool_t *p;
    enum slot_state st;
};

struct slot_pool {
    struct ev_loop *loop;
    sbx_t *sbx;
    unsigned n;
    struct slot *v;
    unsigned count[SLOT__STATES];
    slot_change_fn on_change;
    void *ud;
    ev_async done_w;
    pthread_t thr;
    int thr_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;      /* under mu */
    unsigned next; /* under mu: the janitor serves slots round robin */
    struct slot_gauge gauges[SLOT__STATES];
    met_counter_t *m_fail[SLOT__STAGES];
    met_hist_t *m_reset_ms;
};

static double slot_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The janitor: takes queued resets one at a time, runs them, reports. */
static void *slot_janitor(void *arg)
{
    slot_pool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct slot *sl = NULL;
        for (unsigned k = 0; k < p->n && sl == NULL; k++) {
            struct slot *c = &p->v[(p->next + k) % p->n];
            if (c->job == JOB_QUEUED)
                sl = c;
        }
        if (sl == NULL) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        p->next = (unsigned)sl->idx + 1;
        sl->job = JOB_RUNNING;
        pthread_mutex_unlock(&p->mu);

        char err[sizeof(sl->job_err)] = "";
        double t0 = slot_now_ms();
        int rc = sbx_workdir_reset(p->sbx, sl->idx, err, sizeof(err));
        double ms = slot_now_ms() - t0;

        pthread_mutex_lock(&p->mu);
        sl->job = JOB_DONE;
        sl->job_rc = rc;
        sl->job_ms = ms;
        memcpy(sl->job_err, err, sizeof(err));
        ev_async_send(p->loop, &p->done_w);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void slot_set(slot_pool_t *p, struct slot *sl, enum slot_state st)
{
    p->count[sl->st]--;
    sl->st = st;
    p->count[st]++;
}

static void slot_queue_reset(slot_pool_t *p, struct slot *sl)
{
    pthread_mutex_lock(&p->mu);
    sl->job = JOB_QUEUED;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Takes sl out of service (or keeps it out) and schedules its next reset. */
static void slot_broken(slot_pool_t *p, struct slot *sl, enum slot_stage stage, const char *why)
{
    int was_broken = sl->st == SLOT_BROKEN;
    sl->fails++;
    met_inc(p->m_fail[stage], 1);
    slot_set(p, sl, SLOT_BROKEN);
    double delay = SLOT_BACKOFF_MIN;
    for (unsigned i = 1; i < sl->fails && delay < SLOT_BACKOFF_MAX; i++)
        delay *= 2;
    if (delay > SLOT_BACKOFF_MAX)
        delay = SLOT_BACKOFF_MAX;
    /* Once per outage: the retries that fail again only count. */
    if (!was_broken && sl->fails == 1)
        log_warn("slot %d out of service (%s: %s); %u of %u slots usable; retrying in the "
                 "background",
                 sl->idx, slot_stage_names[stage], why, p->n - p->count[SLOT_BROKEN], p->n);
    else
        log_debug("slot %d still out of service (%s: %s); next try in %.0f s", sl->idx,
                  slot_stage_names[stage], why, delay);
    ev_timer_stop(p->loop, &sl->retry);
    ev_timer_set(&sl->retry, delay, 0.);
    ev_timer_start(p->loop, &sl->retry);
}

static void slot_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct slot *sl = t->data;
    if (sl->st == SLOT_BROKEN)
        slot_queue_reset(sl->p, sl);
}

/* Completed resets: the slot is FREE, or (still) BROKEN. */
static void slot_done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    slot_pool_t *p = a->data;
    int changed = 0;
    pthread_mutex_lock(&p->mu);
    for (unsigned i = 0; i < p->n; i++) {
        struct slot *sl = &p->v[i];
        if (sl->job != JOB_DONE)
            continue;
        sl->job = JOB_NONE;
        changed = 1;
        met_observe(p->m_reset_ms, sl->job_ms / 1000.0);
        log_debug("slot %d reset in %.2f ms%s%s", sl->idx, sl->job_ms, sl->job_rc < 0 ? ": " : "",
                  sl->job_rc < 0 ? sl->job_err : "");
        if (sl->job_rc < 0) {
            slot_broken(p, sl, SLOT_STAGE_RESET, sl->job_err);
            continue;
        }
        if (sl->st == SLOT_BROKEN)
            log_info("slot %d back in service", sl->idx);
        slot_set(p, sl, SLOT_FREE);
    }
    pthread_mutex_unlock(&p->mu);
    if (changed && p->on_change != NULL)
        p->on_change(p->ud);
}

static double slot_gauge_fn(void *ud)
{
    const struct slot_gauge *g = ud;
    return (double)g->p->count[g->st];
}

static int slot_metrics(slot_pool_t *p, met_registry_t *met)
{
    static const double reset_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   1};
    char labels[64];
    for (int st = 0; st < SLOT__STATES; st++) {
        p->gauges[st].p = p;
        p->gauges[st].st = (enum slot_state)st;
        snprintf(labels, sizeof(labels), "state=\"%s\"", slot_state_names[st]);
        if (met_gauge_fn(met, MN_WK_SLOTS, labels,
                         "Sandbox slots by state; broken ones are out of service.", slot_gauge_fn,
                         &p->gauges[st]) < 0)
            return -1;
    }
    for (int sg = 0; sg < SLOT__STAGES; sg++) {
        snprintf(labels, sizeof(labels), "stage=\"%s\"", slot_stage_names[sg]);
        p->m_fail[sg] = met_counter(met, MN_WK_SLOT_FAILURES, labels,
                                    "Slot failures for a sandbox reason, by stage.");
        if (p->m_fail[sg] == NULL)
            return -1;
    }
    p->m_reset_ms = met_hist(met, MN_WK_SLOT_RESET_DURATION, NULL,
                             "Time the janitor took to give a slot a fresh work dir, in seconds.",
                             reset_bounds, sizeof(reset_bounds) / sizeof(reset_bounds[0]));
    return p->m_reset_ms != NULL ? 0 : -1;
}

slot_pool_t *slot_pool_create(struct ev_loop *loop, sbx_t *sbx, unsigned n, met_registry_t *met,
                              slot_change_fn on_change, void *ud, char *err, size_t errlen)
{
    slot_pool_t *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->v = calloc(n, sizeof(*p->v))) == NULL) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->loop = loop;
    p->sbx = sbx;
    p->n = n;
    p->count[SLOT_FREE] = n;
    p->on_change = on_change;
    p->ud = ud;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (unsigned i = 0; i < n; i++) {
        p->v[i].p = p;
        p->v[i].idx = (int)i;
        ev_timer_init(&p->v[i].retry, slot_retry_cb, 0., 0.);
        p->v[i].retry.data = &p->v[i];
    }
    ev_async_init(&p->done_w, slot_done_cb);
    p->done_w.data = p;
    ev_async_start(loop, &p->done_w);
    if (slot_metrics(p, met) < 0) {
        snprintf(err, errlen, "out of memory");
        slot_pool_free(p);
        return NULL;
    }
    /* Signals are the loop thread's business: the janitor blocks them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->thr, NULL, slot_janitor, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "janitor thread: %s", strerror(rc));
        slot_pool_free(p);
        return NULL;
    }
    p->thr_started = 1;
    return p;
}

void slot_pool_free(slot_pool_t *p)
{
    if (p == NULL)
        return;
    if (p->thr_started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thr, NULL);
    }
    ev_async_stop(p->loop, &p->done_w);
    for (unsigned i = 0; i < p->n; i++)
        ev_timer_stop(p->loop, &p->v[i].retry);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->v);
    free(p);
}

int slot_take(slot_pool_t *p)
{
    for (unsigned i = 0; i < p->n; i++) {
        if (p->v[i].st == SLOT_FREE) {
            slot_set(p, &p->v[i], SLOT_BUSY);
            return (int)i;
        }
    }
    return -1;
}

void slot_release(slot_pool_t *p, int slot)
{
    struct slot *sl = &p->v[slot];
    if (sl->st != SLOT_BUSY)
        return;
    sl->fails = 0; /* it ran something: whatever broke it before is mended */
    slot_set(p, sl, SLOT_RESETTING);
    slot_queue_reset(p, sl);
}

void slot_fail(slot_pool_t *p, int slot, enum slot_stage stage, const char *why)
{
    struct slot *sl = &p->v[slot];
    if (sl->st == SLOT_BUSY)
        slot_broken(p, sl, stage, why);
}

unsigned slot_count(const slot_pool_t *p, enum slot_state st)
{
    return p != NULL ? p->count[st] : 0;
}

unsigned slot_total(const slot_pool_t *p)
{
    return p != NULL ? p->n : 0;
}
