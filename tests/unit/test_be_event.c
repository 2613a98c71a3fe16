/* Unit tests for be_event() (lb/be.c): the rules of the state word, the
 * races between health checks, proxy threads, discovery and the admin API,
 * the log line of each transition, the algorithms' hooks and the layout of
 * a backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "be.h"
#include "be_int.h"
#include "log.h"

static sock_addr_t addr_of(int port)
{
    sock_addr_t a;
    char s[32];
    snprintf(s, sizeof(s), "127.0.0.1:%d", port);
    assert_int_equal(sock_parse_addr(s, &a, NULL, 0), 0);
    return a;
}

static be_t *add(be_table_t *t, const char *id, int port)
{
    sock_addr_t a = addr_of(port);
    be_t *b = be_add(t, id, &a, 1, BE_STATIC);
    assert_non_null(b);
    return b;
}

static void repeat(be_table_t *t, be_t *b, enum be_ev ev, int n)
{
    for (int i = 0; i < n; i++)
        be_event(t, b, ev, "test");
}

/* ---- capturing the log ------------------------------------------------------- */

/* Log lines go to fd 2 with one write(2) each; while captured they go to a
 * file opened for appending, so lines from several threads stay whole. */
typedef struct capture {
    char path[64];
    int fd, saved;
} capture_t;

static void capture_start(capture_t *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/wslb-be-log-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    close(fd);
    c->fd = open(c->path, O_WRONLY | O_APPEND);
    assert_true(c->fd >= 0);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_true(dup2(c->fd, 2) >= 0);
    log_set_level(LOG_LVL_INFO);
}

/* Restores stderr and returns what was logged (malloc'd; the file is gone). */
static char *capture_stop(capture_t *c)
{
    log_set_level(LOG_LVL_ERROR);
    assert_true(dup2(c->saved, 2) >= 0);
    close(c->saved);
    close(c->fd);
    FILE *f = fopen(c->path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    unlink(c->path);
    /* Whatever else went to stderr meanwhile (a sanitizer's report) is
     * passed on, not swallowed. */
    for (const char *p = s; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        if (memmem(p, len, " backend ", 9) == NULL)
            fwrite(p, 1, len, stderr);
        p += len;
    }
    return s;
}

/* Lines holding needle (one line at a time: a sanitizer checks the whole
 * rest of the string on every strstr). */
static int count_lines(const char *log, const char *needle)
{
    int n = 0;
    for (const char *p = log; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        n += memmem(p, len, needle, strlen(needle)) != NULL;
        p += len;
    }
    return n;
}

/* ---- the rules -------------------------------------------------------------- */

/* The pure function: rise, fall, saturation, the sequence, and drains that
 * never touch health. */
static void test_word_rules(void **state)
{
    const unsigned rise = 3, fall = 2;
    uint64_t w = 0;
    assert_int_equal(be_word_state(w), BE_UP);
    assert_true(be_word_usable(w));

    w = be_word_next(w, BE_EV_CHECK_FAIL, rise, fall);
    assert_int_equal(be_word_fails(w), 1);
    assert_int_equal(be_word_seq(w), 1);
    assert_int_equal(be_word_state(w), BE_UP);
    w = be_word_next(w, BE_EV_PASSIVE_FAIL, rise, fall); /* checks and passive count together */
    assert_int_equal(be_word_state(w), BE_DOWN);
    assert_int_equal(be_word_seq(w), 2);

    /* Nothing but checks brings it back: drains and their ends leave it down. */
    static const enum be_ev drains[] = {BE_EV_REMOTE_DRAIN, BE_EV_REMOTE_UP,   BE_EV_ADMIN_DRAIN,
                                        BE_EV_ADMIN_ENABLE, BE_EV_REMOTE_GONE, BE_EV_PASSIVE_OK};
    for (size_t i = 0; i < sizeof(drains) / sizeof(drains[0]); i++) {
        w = be_word_next(w, drains[i], rise, fall);
        assert_true(w & BE_W_DOWN);
        assert_false(be_word_usable(w));
    }
    w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    assert_int_equal(be_word_state(w), BE_DOWN);
    w = be_word_next(w, BE_EV_PASSIVE_FAIL, rise, fall); /* a failure restarts the count */
    assert_int_equal(be_word_oks(w), 0);
    for (unsigned i = 0; i < rise - 1; i++)
        w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    assert_false(be_word_usable(w));
    w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    assert_int_equal(be_word_state(w), BE_UP);
    assert_true(be_word_usable(w));

    /* A 503 is no failure and no success; it ends after rise 200s. */
    w = be_word_next(w, BE_EV_CHECK_FAIL, rise, fall);
    w = be_word_next(w, BE_EV_CHECK_DRAIN, rise, fall);
    assert_int_equal(be_word_fails(w), 0);
    assert_int_equal(be_word_state(w), BE_DRAINING);
    for (unsigned i = 0; i < rise - 1; i++)
        w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    assert_int_equal(be_word_state(w), BE_DRAINING);
    w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    assert_int_equal(be_word_state(w), BE_UP);
    /* ... or when failures take it down; a down backend answering 503 is
     * alive and leaving. */
    w = be_word_next(w, BE_EV_CHECK_DRAIN, rise, fall);
    w = be_word_next(w, BE_EV_CHECK_FAIL, rise, fall);
    assert_int_equal(be_word_state(w), BE_DRAINING);
    w = be_word_next(w, BE_EV_CHECK_FAIL, rise, fall);
    assert_int_equal(be_word_state(w), BE_DOWN);
    w = be_word_next(w, BE_EV_CHECK_DRAIN, rise, fall);
    assert_int_equal(be_word_state(w), BE_DRAINING);
    assert_true(w & BE_W_DOWN);

    /* The worker's drain; its state gone while draining: checks end it. */
    w = 0;
    w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    w = be_word_next(w, BE_EV_REMOTE_DRAIN, rise, fall);
    assert_int_equal(be_word_state(w), BE_DRAINING);
    w = be_word_next(w, BE_EV_REMOTE_GONE, rise, fall);
    assert_int_equal(be_word_state(w), BE_DRAINING);
    assert_false(w & BE_W_REMOTE_DRAIN);
    w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    w = be_word_next(w, BE_EV_CHECK_OK, rise, fall);
    assert_int_equal(be_word_state(w), BE_UP);

    /* The admin drain is not a state: usable only without it. */
    w = be_word_next(w, BE_EV_ADMIN_DRAIN, rise, fall);
    assert_int_equal(be_word_state(w), BE_UP);
    assert_false(be_word_usable(w));

    /* No change, same word (no sequence step); streaks saturate. */
    assert_int_equal(be_word_next(w, BE_EV_ADMIN_DRAIN, rise, fall), w);
    assert_int_equal(be_word_next(w, BE_EV__COUNT, rise, fall), w);
    for (int i = 0; i < 300; i++)
        w = be_word_next(w, BE_EV_PASSIVE_FAIL, rise, fall);
    assert_int_equal(be_word_fails(w), BE_W_STREAK_MAX);
    assert_int_equal(be_word_next(w, BE_EV_PASSIVE_FAIL, rise, fall), w);
    assert_string_equal(be_ev_name(BE_EV_REMOTE_GONE), "remote_gone");
    assert_string_equal(be_ev_name(BE_EV__COUNT), "?");
}

/* The interleaving that used to bring a dead backend back: discovery reads
 * "up", a proxy thread takes the backend down, discovery writes "draining"
 * and later "up". With one word and no separate read there is no gap to
 * fall into; whichever order the events land in, the backend stays down
 * until rise checks pass. */
static void test_drain_end_never_revives(void **state)
{
    static const enum be_ev orders[][4] = {
        /* the drain lands before the failures, or after them */
        {BE_EV_REMOTE_DRAIN, BE_EV_PASSIVE_FAIL, BE_EV_PASSIVE_FAIL, BE_EV_REMOTE_UP},
        {BE_EV_PASSIVE_FAIL, BE_EV_PASSIVE_FAIL, BE_EV_REMOTE_DRAIN, BE_EV_REMOTE_UP},
        {BE_EV_PASSIVE_FAIL, BE_EV_REMOTE_DRAIN, BE_EV_PASSIVE_FAIL, BE_EV_REMOTE_UP},
        /* the same with the check's 503 and with the operator */
        {BE_EV_CHECK_DRAIN, BE_EV_PASSIVE_FAIL, BE_EV_PASSIVE_FAIL, BE_EV_REMOTE_UP},
        {BE_EV_ADMIN_DRAIN, BE_EV_PASSIVE_FAIL, BE_EV_PASSIVE_FAIL, BE_EV_ADMIN_ENABLE},
    };
    for (size_t k = 0; k < sizeof(orders) / sizeof(orders[0]); k++) {
        be_table_t *t = be_table_create(NULL, 1000);
        be_table_set_health(t, 2, 2);
        be_t *b = add(t, "w1", 9000);
        for (int i = 0; i < 4; i++)
            be_event(t, b, orders[k][i], "test");
        assert_int_equal(be_state(b), BE_DOWN);
        assert_false(be_usable(b));
        be_event(t, b, BE_EV_CHECK_OK, "test");
        assert_false(be_usable(b));
        be_event(t, b, BE_EV_REMOTE_UP, "test");
        assert_false(be_usable(b));
        assert_null(be_pick(t, NULL, 0));
        be_event(t, b, BE_EV_CHECK_OK, "test");
        assert_true(be_usable(b));
        assert_true(be_joined_ms(b) > 0); /* came back: slow start again */
        be_table_free(t);
    }
}

/* Each change is logged once, by the call that made it, with its cause;
 * events that change nothing log nothing. */
static void test_transitions_logged_once(void **state)
{
    be_table_t *t = be_table_create(NULL, 0);
    be_table_set_health(t, 2, 2);
    be_t *b = add(t, "w1", 9000);
    capture_t cap;
    capture_start(&cap);
    assert_int_equal(be_event(t, b, BE_EV_PASSIVE_FAIL, "connection refused"), 0);
    assert_int_equal(be_event(t, b, BE_EV_CHECK_FAIL, "status 500"), 1);
    repeat(t, b, BE_EV_CHECK_FAIL, 3);
    assert_int_equal(be_event(t, b, BE_EV_REMOTE_DRAIN, "the worker announced its drain"), 0);
    repeat(t, b, BE_EV_CHECK_OK, 2); /* up, but the worker drains */
    assert_int_equal(be_event(t, b, BE_EV_REMOTE_UP, "the worker serves again"), 1);
    assert_int_equal(be_event(t, b, BE_EV_CHECK_DRAIN, "health check answered 503"), 1);
    assert_int_equal(be_admin_drain(t, "w1", 1), 0);
    assert_int_equal(be_admin_drain(t, "w1", 1), 0); /* twice is once */
    assert_int_equal(be_admin_drain(t, "gone", 1), 0);
    assert_int_equal(be_admin_drain(t, "gone", 0), 0);
    char *log = capture_stop(&cap);
    static const char *const want[] = {
        "WARN  backend w1 (127.0.0.1:9000) up -> down: status 500 (2 consecutive failures)\n",
        "INFO  backend w1 (127.0.0.1:9000) down -> draining: 2 consecutive successful checks\n",
        "INFO  backend w1 (127.0.0.1:9000) draining -> up: the worker serves again\n",
        "INFO  backend w1 (127.0.0.1:9000) up -> draining: health check answered 503\n",
        "INFO  backend w1 (127.0.0.1:9000) drained through the admin API (health draining)\n",
        "INFO  backend gone (absent) drained through the admin API while absent\n",
        "INFO  backend gone (absent) enabled through the admin API while absent\n",
    };
    const char *p = log;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *q = strstr(p, want[i]);
        if (q == NULL)
            fail_msg("missing or out of order: %s in:\n%s", want[i], log);
        p = q + strlen(want[i]);
    }
    assert_int_equal(count_lines(log, "\n"), sizeof(want) / sizeof(want[0]));
    free(log);
    be_table_free(t);
}

/* A static backend whose worker announced a drain and then left Redis:
 * nobody will say "up" again, so health checks end the drain. */
static void test_remote_gone_ends_by_checks(void **state)
{
    be_table_t *t = be_table_create(NULL, 0);
    be_t *b = add(t, "s1", 9000);
    repeat(t, b, BE_EV_CHECK_OK, 2);
    be_update_remote(t, b, 3, 0, 1000);
    be_event(t, b, BE_EV_REMOTE_DRAIN, "test");
    be_clear_remote(t, b);
    assert_false(be_has_remote(b));
    assert_false(be_remote_draining(b));
    assert_int_equal(be_state(b), BE_DRAINING);
    be_event(t, b, BE_EV_CHECK_OK, "test");
    assert_int_equal(be_state(b), BE_UP);
    be_table_free(t);
}

/* ---- the algorithms' hooks -------------------------------------------------- */

struct hook_counts {
    int init, free, take, release, update, take_saw_active;
};
static struct hook_counts hk;

static int hk_init(be_table_t *t, void **ctx)
{
    hk.init++;
    *ctx = &hk;
    return 0;
}

static void hk_free(void *ctx)
{
    ((struct hook_counts *)ctx)->free++;
}

/* The first usable backend not excluded, through the public accessors. */
static be_t *hk_pick(be_table_t *t, void *ctx, be_t *const *ex, int nex, uint64_t now)
{
    for (size_t i = 0; i < be_table_count(t); i++) {
        be_t *b = be_table_at(t, i);
        int skip = !be_usable(b);
        for (int k = 0; k < nex; k++)
            skip |= ex[k] == b;
        if (!skip)
            return b;
    }
    return NULL;
}

static void hk_take(be_table_t *t, void *ctx, be_t *b)
{
    hk.take++;
    hk.take_saw_active += be_active(b) > 0;
}

static void hk_release(be_table_t *t, void *ctx, be_t *b)
{
    hk.release++;
}

static void hk_update(be_table_t *t, void *ctx, be_t *b)
{
    hk.update++;
}

static const be_algo_t hk_algo = {.name = "first",
                                  .init = hk_init,
                                  .free = hk_free,
                                  .pick = hk_pick,
                                  .take = hk_take,
                                  .release = hk_release,
                                  .update = hk_update};

static void test_algo_hooks(void **state)
{
    memset(&hk, 0, sizeof(hk));
    be_table_t *t = be_table_create(&hk_algo, 0);
    assert_int_equal(hk.init, 1);
    be_t *b0 = add(t, "b0", 9000), *b1 = add(t, "b1", 9001);
    assert_int_equal(hk.update, 2); /* joined */
    be_t *p = be_pick(t, NULL, 0), *q = be_pick(t, NULL, 0);
    assert_ptr_equal(p, b0);
    assert_ptr_equal(q, b0);
    assert_int_equal(hk.take, 2);
    assert_int_equal(hk.take_saw_active, 2); /* counted before the hook */
    be_release(t, p);
    assert_int_equal(hk.release, 1);
    repeat(t, b0, BE_EV_CHECK_FAIL, 2); /* one change of state */
    assert_int_equal(hk.update, 3);
    assert_ptr_equal((p = be_pick(t, NULL, 0)), b1);
    be_release(t, p);
    assert_int_equal(be_update_remote(t, b1, 4, 0, 1000), 1);
    assert_int_equal(be_update_remote(t, b1, 4, 0, 1000), 0); /* not newer: no update */
    assert_int_equal(hk.update, 4);
    be_remove(t, b0);
    assert_int_equal(hk.update, 5); /* left */
    be_table_free(t);
    assert_int_equal(hk.free, 1);
    be_release(NULL, q); /* the table is gone: no hook, only the backend freed */
    assert_int_equal(hk.release, 2);
}

/* ---- layout ------------------------------------------------------------------ */

#define HOT_END(f) (offsetof(struct be, f) + sizeof(((struct be *)0)->f))

/* What every pick reads and proxies write sits in the first two lines; the
 * strings, the published info and the main thread's samples start on lines
 * of their own, and backends are allocated on a line boundary. */
static void test_layout(void **state)
{
    size_t hot_end = 0;
    size_t ends[] = {HOT_END(word),         HOT_END(active),   HOT_END(total),
                     HOT_END(refs),         HOT_END(removed),  HOT_END(remote_conns),
                     HOT_END(remote_base),  HOT_END(load),     HOT_END(joined_ms),
                     HOT_END(remote_ts_ms), HOT_END(failures), HOT_END(has_remote),
                     HOT_END(weight)};
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
        hot_end = ends[i] > hot_end ? ends[i] : hot_end;
    print_message("sizeof(be_t) %zu: hot 0..%zu, id at %zu, evals_running at %zu, hist at %zu\n",
                  sizeof(struct be), hot_end, offsetof(struct be, id),
                  offsetof(struct be, evals_running), offsetof(struct be, hist));
    assert_int_equal(offsetof(struct be, word), 0);
    assert_true(hot_end <= 2 * BE_CACHELINE);
    assert_int_equal(offsetof(struct be, id), 2 * BE_CACHELINE);
    assert_int_equal(offsetof(struct be, evals_running) % BE_CACHELINE, 0);
    assert_int_equal(offsetof(struct be, hist) % BE_CACHELINE, 0);
    assert_true(offsetof(struct be, hist) > offsetof(struct be, version));
    assert_int_equal(sizeof(struct be) % BE_CACHELINE, 0);
    assert_int_equal(_Alignof(struct be), BE_CACHELINE);

    be_table_t *t = be_table_create(be_algo_find("roundrobin"), 0);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "b%d", i);
        assert_int_equal((uintptr_t)add(t, id, 9000 + i) % BE_CACHELINE, 0);
    }
    be_table_free(t);
}

/* ---- the races, from several threads ----------------------------------------- */

#define RACE_RISE 3
#define RACE_FALL 2
#define RACE_N    20000 /* events per thread */

typedef struct rec {
    uint8_t ev, thread;
    uint64_t before, after;
} rec_t;

typedef struct racer {
    be_table_t *t;
    be_t *b;
    pthread_barrier_t *go;
    int idx;
    const enum be_ev *mix; /* what this thread reports, drawn at random */
    int nmix;
    int pick; /* also picks and releases, as a proxy thread */
    uint64_t seed;
    rec_t *recs; /* one per event */
    long fails;  /* CHECK_FAIL and PASSIVE_FAIL reported */
    long picks, b_picks;
} racer_t;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void *racer_run(void *p)
{
    racer_t *r = p;
    be_seed(r->seed);
    pthread_barrier_wait(r->go);
    for (int i = 0; i < RACE_N; i++) {
        be_t *held = NULL;
        if (r->pick) {
            held = be_pick(r->t, NULL, 0);
            r->picks += held != NULL;
            r->b_picks += held == r->b;
        }
        enum be_ev ev = r->mix[xorshift(&r->seed) % (uint64_t)r->nmix];
        r->fails += ev == BE_EV_CHECK_FAIL || ev == BE_EV_PASSIVE_FAIL;
        r->recs[i].ev = (uint8_t)ev;
        r->recs[i].thread = (uint8_t)r->idx;
        be_event_ex(r->t, r->b, ev, "race", &r->recs[i].before, &r->recs[i].after);
        if (held)
            be_release(r->t, held);
        /* On a busy machine a thread may otherwise run its whole share
         * alone: hand over often, so that the events interleave. */
        if ((xorshift(&r->seed) & 3) == 0)
            sched_yield();
    }
    return NULL;
}

static int rec_by_seq(const void *a, const void *b)
{
    uint32_t x = be_word_seq(((const rec_t *)a)->after), y = be_word_seq(((const rec_t *)b)->after);
    return x < y ? -1 : x > y;
}

/* An independent model of the rules, stepped along the changes in the
 * order they were committed. */
typedef struct model {
    unsigned oks, fails; /* consecutive */
    int down, check_drain, remote_drain, admin_drain;
} model_t;

static void model_step(model_t *m, enum be_ev ev)
{
    switch (ev) {
    case BE_EV_CHECK_OK:
        m->fails = 0;
        if (++m->oks >= RACE_RISE)
            m->down = m->check_drain = 0;
        break;
    case BE_EV_CHECK_DRAIN:
        m->oks = m->fails = 0;
        m->check_drain = 1;
        break;
    case BE_EV_CHECK_FAIL:
    case BE_EV_PASSIVE_FAIL:
        m->oks = 0;
        if (++m->fails >= RACE_FALL) {
            m->down = 1;
            m->check_drain = 0;
        }
        break;
    case BE_EV_PASSIVE_OK:
        m->fails = 0;
        break;
    case BE_EV_REMOTE_DRAIN:
    case BE_EV_REMOTE_UP:
        m->remote_drain = ev == BE_EV_REMOTE_DRAIN;
        break;
    case BE_EV_ADMIN_DRAIN:
    case BE_EV_ADMIN_ENABLE:
        m->admin_drain = ev == BE_EV_ADMIN_DRAIN;
        break;
    default:
        fail_msg("unexpected event %d", ev);
    }
}

/* The kind of a change as its log line names it: "from -> to" or the admin
 * drain's "drained"/"enabled". */
static void change_kind(uint64_t before, uint64_t after, char *out, size_t n)
{
    enum be_state so = be_word_state(before), sn = be_word_state(after);
    if (so != sn)
        snprintf(out, n, "%s -> %s:", be_state_name(so), be_state_name(sn));
    else
        snprintf(out, n, "%s ", (after & BE_W_ADMIN_DRAIN) ? "drained" : "enabled");
}

/* What a run shows once its changes are put in commit order. */
typedef struct race_sum {
    uint64_t last; /* the word after the last change */
    long revived;  /* changes that brought the backend back from down */
    long switches; /* changes made by another thread than the one before */
    long logged;   /* changes of state or admin drain: one log line each */
} race_sum_t;

/* Every change of every thread (each checked to be the rules applied to
 * the word it replaced), sorted by the word's change counter. */
static size_t race_chain(const racer_t *rs, int nt, rec_t *chain)
{
    size_t n = 0;
    for (int i = 0; i < nt; i++) {
        for (int k = 0; k < RACE_N; k++) {
            const rec_t *r = &rs[i].recs[k];
            assert_int_equal(r->after, be_word_next(r->before, r->ev, RACE_RISE, RACE_FALL));
            if (r->after != r->before)
                chain[n++] = *r;
        }
    }
    qsort(chain, n, sizeof(*chain), rec_by_seq);
    return n;
}

/* Walks the chain: each change replaced the word the one before left (no
 * update lost or applied to a stale state), the word follows the model,
 * a down backend came back only after rise consecutive successful checks,
 * and drains never touched health. */
static race_sum_t race_check(const rec_t *chain, size_t n)
{
    race_sum_t sum = {0};
    model_t m = {0};
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) {
        const rec_t *r = &chain[i];
        if (r->before != w)
            fail_msg("change %zu (%s) replaced %#llx, but the word was %#llx", i, be_ev_name(r->ev),
                     (unsigned long long)r->before, (unsigned long long)w);
        w = r->after;
        sum.switches += i > 0 && chain[i - 1].thread != r->thread;
        model_step(&m, r->ev);
        assert_int_equal(!!(w & BE_W_DOWN), m.down);
        assert_int_equal(!!(w & BE_W_CHECK_DRAIN), m.check_drain);
        assert_int_equal(!!(w & BE_W_REMOTE_DRAIN), m.remote_drain);
        assert_int_equal(!!(w & BE_W_ADMIN_DRAIN), m.admin_drain);
        if ((r->before & BE_W_DOWN) && !(w & BE_W_DOWN)) {
            assert_int_equal(r->ev, BE_EV_CHECK_OK);
            assert_true(m.oks >= RACE_RISE);
            sum.revived++;
        }
        if (r->ev != BE_EV_CHECK_OK && r->ev != BE_EV_CHECK_FAIL && r->ev != BE_EV_PASSIVE_FAIL)
            assert_int_equal(r->before & BE_W_DOWN, w & BE_W_DOWN);
        if (be_word_usable(w))
            assert_true(!m.down && !m.remote_drain && !m.admin_drain && !m.check_drain);
        sum.logged +=
            be_word_state(r->before) != be_word_state(w) || ((r->before ^ w) & BE_W_ADMIN_DRAIN);
    }
    sum.last = w;
    return sum;
}

/* One line per change of state or admin drain, nothing else, and per kind
 * of change as many lines as changes. */
static void race_check_log(const rec_t *chain, size_t n, const char *log, long logged)
{
    static const char *const kinds[] = {
        "up -> down:",     "up -> draining:",   "down -> up:", "down -> draining:",
        "draining -> up:", "draining -> down:", "drained ",    "enabled "};
    assert_int_equal(count_lines(log, "backend b0 (127.0.0.1:9000) "), logged);
    assert_int_equal(count_lines(log, "\n"), logged);
    long sum = 0;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        long want = 0;
        for (size_t i = 0; i < n; i++) {
            char kind[48];
            uint64_t bw = chain[i].before, aw = chain[i].after;
            if (be_word_state(bw) == be_word_state(aw) && !((bw ^ aw) & BE_W_ADMIN_DRAIN))
                continue;
            change_kind(bw, aw, kind, sizeof(kind));
            want += strcmp(kind, kinds[k]) == 0;
        }
        char needle[96];
        snprintf(needle, sizeof(needle), "backend b0 (127.0.0.1:9000) %s", kinds[k]);
        assert_int_equal(count_lines(log, needle), want);
        sum += want;
    }
    assert_int_equal(sum, logged);
}

/* A checker, two proxy threads, discovery and the operator report on one
 * backend at once while the proxies pick. Afterwards the changes form one
 * chain that follows the rules (race_check), each was logged once
 * (race_check_log), and the counters add up. Run it under
 * -fsanitize=thread too. */
static void test_races_from_threads(void **state)
{
    static const enum be_ev checker[] = {BE_EV_CHECK_OK,   BE_EV_CHECK_OK,   BE_EV_CHECK_OK,
                                         BE_EV_CHECK_OK,   BE_EV_CHECK_FAIL, BE_EV_CHECK_FAIL,
                                         BE_EV_CHECK_DRAIN};
    static const enum be_ev proxy[] = {BE_EV_PASSIVE_OK, BE_EV_PASSIVE_OK, BE_EV_PASSIVE_OK,
                                       BE_EV_PASSIVE_FAIL};
    static const enum be_ev disc[] = {BE_EV_REMOTE_DRAIN, BE_EV_REMOTE_UP, BE_EV_REMOTE_UP};
    static const enum be_ev admin[] = {BE_EV_ADMIN_DRAIN, BE_EV_ADMIN_ENABLE, BE_EV_ADMIN_ENABLE};
    enum { NT = 5 };
    be_table_t *t = be_table_create(be_algo_find("leastconn"), 0);
    be_table_set_health(t, RACE_RISE, RACE_FALL);
    be_t *b = add(t, "b0", 9000), *other = add(t, "b1", 9001);
    racer_t rs[NT] = {
        {.mix = checker, .nmix = sizeof(checker) / sizeof(checker[0])},
        {.mix = proxy, .nmix = sizeof(proxy) / sizeof(proxy[0]), .pick = 1},
        {.mix = proxy, .nmix = sizeof(proxy) / sizeof(proxy[0]), .pick = 1},
        {.mix = disc, .nmix = sizeof(disc) / sizeof(disc[0])},
        {.mix = admin, .nmix = sizeof(admin) / sizeof(admin[0])},
    };
    pthread_t th[NT];
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, NT), 0);
    capture_t cap;
    capture_start(&cap);
    for (int i = 0; i < NT; i++) {
        rs[i].t = t;
        rs[i].go = &go;
        rs[i].idx = i;
        rs[i].b = b;
        rs[i].seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        rs[i].recs = calloc(RACE_N, sizeof(rec_t));
        assert_non_null(rs[i].recs);
        assert_int_equal(pthread_create(&th[i], NULL, racer_run, &rs[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
    char *log = capture_stop(&cap);

    rec_t *chain = calloc((size_t)NT * RACE_N, sizeof(rec_t));
    assert_non_null(chain);
    size_t n = race_chain(rs, NT, chain);
    race_sum_t sum = race_check(chain, n);
    assert_int_equal(sum.last, __atomic_load_n(&b->word, __ATOMIC_ACQUIRE));
    race_check_log(chain, n, log, sum.logged);
    long fails = 0, picks = 0;
    for (int i = 0; i < NT; i++) {
        fails += rs[i].fails;
        picks += rs[i].picks;
    }
    print_message("%zu changes (%ld by another thread than the one before), %ld logged, %ld back "
                  "from down, %ld picks\n",
                  n, sum.switches, sum.logged, sum.revived, picks);
    assert_true(sum.revived > 10);   /* the interesting path was taken, often */
    assert_true(sum.switches > 100); /* and the threads did interleave */

    assert_int_equal((long)be_failures(b), fails);
    assert_int_equal(be_active(b), 0);
    assert_int_equal(be_active(other), 0);
    assert_int_equal((long)(be_total(b) + be_total(other)), picks);
    assert_int_equal((long)be_total(b), rs[1].b_picks + rs[2].b_picks);
    free(log);
    free(chain);
    for (int i = 0; i < NT; i++)
        free(rs[i].recs);
    be_table_free(t);
}

int main(void)
{
    log_set_level(LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_word_rules),
        cmocka_unit_test(test_drain_end_never_revives),
        cmocka_unit_test(test_transitions_logged_once),
        cmocka_unit_test(test_remote_gone_ends_by_checks),
        cmocka_unit_test(test_algo_hooks),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_races_from_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
