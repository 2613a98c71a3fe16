/* rld: SIGHUP reloads the configuration (see rld.h).
 *
 * The running options live in lb->o, written by lb->opts. A reload parses
 * into a second set through a second table built the same way, so both
 * tables list the same options in the same order: entry i of one and of the
 * other are the same option, which lets the differences and the swap below
 * be generic. Values are swapped, never copied: what a module still points
 * into (the id, the admin address) stays where it was. */
#include "rld.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fleet.h"
#include "log.h"
#include "met_names.h"
#include "util.h"

#ifndef VERSION
#define VERSION "dev"
#endif

/* Options a reload applies; every other one needs a new process (a
 * takeover), whose listeners, threads, connections or pointers it sets. */
static const char *const rld_live[] = {
    "backend",
    "algo",
    "health-path",
    "health-interval-ms",
    "rise",
    "fall",
    "retries",
    "max-conns",
    "timeout-head-ms",
    "timeout-connect-ms",
    "timeout-response-ms",
    "timeout-idle-s",
    "max-head",
    "limit-conns",
    "limit-rate",
    "limit-burst",
    "trusted-proxies",
    "admin-token-file",
    "cert",
    "key",
    "log-level",
    "access-log",
    "grace-s",
    /* Only how this process was started, not what it runs. */
    "check",
    "takeover",
    "config",
};

static int rld_is_live(const char *name)
{
    for (size_t i = 0; i < sizeof(rld_live) / sizeof(rld_live[0]); i++)
        if (strcmp(rld_live[i], name) == 0)
            return 1;
    return 0;
}

static uint64_t rld_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Whether the values behind a and b (the same option of two tables)
 * differ. */
static int rld_differs(const cfg_opt_t *a, const cfg_opt_t *b)
{
    switch (a->type) {
    case CFG_STR:
        return !lbo_str_eq(*(char **)a->dst, *(char **)b->dst);
    case CFG_INT:
        return *(long *)a->dst != *(long *)b->dst;
    case CFG_BOOL:
        return *(int *)a->dst != *(int *)b->dst;
    case CFG_LIST:
        return !lbo_list_eq(a->dst, b->dst);
    }
    return 0;
}

static void rld_swap(const cfg_opt_t *a, const cfg_opt_t *b)
{
#define RLD_SWAP(T)                                                                                \
    do {                                                                                           \
        T tmp = *(T *)a->dst;                                                                      \
        *(T *)a->dst = *(T *)b->dst;                                                               \
        *(T *)b->dst = tmp;                                                                        \
    } while (0)
    switch (a->type) {
    case CFG_STR:
        RLD_SWAP(char *);
        break;
    case CFG_INT:
        RLD_SWAP(long);
        break;
    case CFG_BOOL:
        RLD_SWAP(int);
        break;
    case CFG_LIST:
        RLD_SWAP(cfg_list_t);
        break;
    }
#undef RLD_SWAP
}

int rld_parse(lb_opts_t *o, cfg_opt_t *table, int argc, char **argv, char *err, size_t errlen)
{
    lbo_defaults(o);
    lbo_table(o, table);
    int pr = cfg_parse(table, argc, argv, lbo_summary, VERSION, err, errlen);
    if (pr != CFG_OK)
        return pr;
    return lbo_check(o, err, errlen) < 0 ? CFG_ERR : CFG_OK;
}

void rld_px_tunables(const lb_t *lb, px_config_t *pc)
{
    const lb_opts_t *o = &lb->o;
    pc->max_conns = o->max_conns;
    pc->timeout_head_ms = (unsigned)o->timeout_head_ms;
    pc->timeout_connect_ms = (unsigned)o->timeout_connect_ms;
    pc->timeout_response_ms = (unsigned)o->timeout_response_ms;
    pc->timeout_idle_s = (unsigned)o->timeout_idle_s;
    pc->retries = (int)o->retries;
    pc->access_log = o->access_log;
    pc->max_head = (size_t)o->max_head;
    pc->lim = lb->lim;
    pc->trusted = lb->trusted;
}

int rld_trusted(const lb_opts_t *o, cidr_set_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (o->trusted_proxies.n == 0)
        return 0;
    cidr_set_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < o->trusted_proxies.n; i++) {
        char e2[256];
        if (cidr_set_add(s, o->trusted_proxies.v[i], e2, sizeof(e2)) < 0) {
            snprintf(err, errlen, "--trusted-proxies: %s", e2);
            cidr_set_free(s);
            free(s);
            return -1;
        }
    }
    *out = s;
    return 0;
}

/* A proxy thread loads the set (PX_CFG) and matches one address against it
 * at once, so one that saw the old set is long done after the grace, as
 * with be.c's replaced algorithms (BE_AI_GRACE_MS). */
int rld_retire_trusted(lb_t *lb, cidr_set_t *old, uint64_t now_ms)
{
    size_t k = 0;
    while (k < lb->nretired && now_ms - lb->retired[k].ms >= RLD_RETIRE_GRACE_MS) {
        cidr_set_free(lb->retired[k].set);
        free(lb->retired[k].set);
        k++;
    }
    if (k > 0) {
        memmove(lb->retired, lb->retired + k, (lb->nretired - k) * sizeof(*lb->retired));
        lb->nretired -= k;
    }
    lb_retired_t *r = realloc(lb->retired, (lb->nretired + 1) * sizeof(*r));
    if (r == NULL)
        return -1;
    lb->retired = r;
    r[lb->nretired++] = (lb_retired_t){.set = old, .ms = now_ms};
    return 0;
}

int rld_init(lb_t *lb)
{
    lb->m_generation = met_gauge(lb->reg, MN_LB_CONFIG_GENERATION, NULL,
                                 "Configurations loaded: 1 at start, one more per reload");
    lb->m_loaded = met_gauge(lb->reg, MN_LB_CONFIG_LOADED, NULL,
                             "Unix time the running configuration was loaded");
    lb->m_reload_failed = met_counter(lb->reg, MN_LB_RELOAD_FAILED, NULL,
                                      "Reloads refused: the running configuration stayed");
    if (lb->m_generation == NULL || lb->m_loaded == NULL || lb->m_reload_failed == NULL)
        return -1;
    uint64_t now = rld_wall_ms();
    AT_STORE(&lb->stats.config_generation, 1);
    AT_STORE(&lb->stats.config_loaded_ms, now);
    met_set(lb->m_generation, 1);
    met_set(lb->m_loaded, (int64_t)(now / 1000));
    return 0;
}

static int rld_fail(lb_t *lb, const char *why)
{
    AT_ADD(&lb->stats.reload_failed, 1);
    met_inc(lb->m_reload_failed, 1);
    log_error("reload refused, the running configuration stays (generation %llu): %s",
              (unsigned long long)AT_LOAD(&lb->stats.config_generation), why);
    return -1;
}

/* One --backend of the new configuration, parsed once. */
typedef struct rld_be {
    char id[BE_ID_MAX];
    char addr[SOCK_ADDRSTRLEN];
    sock_addr_t sa;
    unsigned weight;
} rld_be_t;

/* The static backends as n lists them: removed, moved, re-weighted, added.
 * Discovered ones are discovery's. A removed backend leaves the table at
 * once; its open tunnels hold it until they end. Each spec is parsed once,
 * not once per backend of the table. */
static void rld_backends(lb_t *lb, const lb_opts_t *n)
{
    be_table_t *t = lb->table;
    char e[256];
    rld_be_t *nv = n->backend.n ? calloc(n->backend.n, sizeof(*nv)) : NULL;
    size_t nn = 0;

    if (n->backend.n && nv == NULL) {
        log_error("reload: static backends: out of memory; keeping the current ones");
        return;
    }
    for (size_t k = 0; k < n->backend.n; k++) {
        rld_be_t *s = &nv[nn];
        if (lbo_parse_backend(n->backend.v[k], s->id, &s->sa, &s->weight, e, sizeof(e)) < 0)
            continue; /* checked before: cannot happen */
        sock_addr_str(&s->sa, s->addr, sizeof(s->addr));
        nn++;
    }
    for (size_t i = be_table_count(t); i-- > 0;) {
        be_t *b = be_table_at(t, i);
        if (be_source(b) != BE_STATIC)
            continue;
        int keep = 0;
        for (size_t k = 0; k < nn && !keep; k++)
            keep = strcmp(nv[k].id, be_id(b)) == 0 && strcmp(nv[k].addr, be_addr_str(b)) == 0;
        if (!keep) {
            log_info("reload: backend %s (%s) removed; its open tunnels stay until they end",
                     be_id(b), be_addr_str(b));
            be_remove(t, b);
        }
    }
    for (size_t k = 0; k < nn; k++) {
        be_t *b = be_find(t, nv[k].id);
        if (b != NULL && be_source(b) != BE_STATIC) {
            log_warn("reload: backend %s is a discovered worker; the static one is ignored",
                     nv[k].id);
            continue;
        }
        if (b != NULL) {
            be_set_weight(t, b, nv[k].weight);
            continue;
        }
        if (be_add(t, nv[k].id, &nv[k].sa, nv[k].weight, BE_STATIC) == NULL)
            log_error("reload: backend %s: out of memory", nv[k].id);
        else
            log_info("reload: backend %s (%s, weight %u) added", nv[k].id, nv[k].addr,
                     nv[k].weight);
    }
    free(nv);
}

int rld_reload(lb_t *lb)
{
    lb_opts_t n = {0};
    cfg_opt_t nt[LBO_MAX];
    char err[1024];
    char *token = NULL;
    cidr_set_t *trusted = NULL;
    int rc = -1;

    memset(nt, 0, sizeof(nt));
    /* 1. Everything is checked before anything changes. */
    int pr = rld_parse(&n, nt, lb->argc, lb->argv, err, sizeof(err));
    if (pr != CFG_OK) {
        rld_fail(lb, pr == CFG_EXIT ? "--help or --version on the command line" : err);
        goto out;
    }
    /* The id was made up at start when none was given: the same one. */
    if (n.id == NULL && lb->o.id != NULL && (n.id = strdup(lb->o.id)) == NULL) {
        rld_fail(lb, "out of memory");
        goto out;
    }
    if (n.admin_token_file != NULL && *n.admin_token_file) {
        token = cfg_read_secret("--admin-token-file", n.admin_token_file, err, sizeof(err));
        if (token == NULL) {
            rld_fail(lb, err);
            goto out;
        }
    }
    if (rld_trusted(&n, &trusted, err, sizeof(err)) < 0) {
        rld_fail(lb, err);
        goto out;
    }
    const be_algo_t *algo = be_algo_find(n.algo);
    lim_config_t lc = {.max_conns = (unsigned)n.limit_conns,
                       .rate = (unsigned)n.limit_rate,
                       .burst = (unsigned)n.limit_burst};
    lim_t *fresh_lim = NULL;
    if (lb->lim == NULL && lim_enabled(&lc) &&
        (fresh_lim = lim_create(&lc, err, sizeof(err))) == NULL) {
        rld_fail(lb, err);
        goto out;
    }
    /* Last check, first change: a certificate that does not load leaves
     * the current one (tls_reload_files changes nothing then). */
    if (lb->tls != NULL && n.cert != NULL && n.key != NULL &&
        tls_reload_files(lb->tls, n.cert, n.key, err, sizeof(err)) < 0) {
        lim_free(fresh_lim);
        rld_fail(lb, err);
        goto out;
    }
    if (lb->tls != NULL)
        log_info("reload: TLS certificate and key reloaded (generation %u)",
                 tls_generation(lb->tls));

    /* 2. Apply, in lb->o's terms: from here nothing can fail but memory. */
    int tr_changed = !lbo_list_eq(&n.trusted_proxies, &lb->o.trusted_proxies);
    int hc_changed = !lbo_str_eq(n.health_path, lb->o.health_path) ||
                     n.health_interval_ms != lb->o.health_interval_ms;
    for (size_t i = 0; lb->opts[i].name != NULL; i++) {
        if (!rld_differs(&lb->opts[i], &nt[i]))
            continue;
        if (rld_is_live(lb->opts[i].name))
            rld_swap(&lb->opts[i], &nt[i]);
        else
            log_warn("reload: --%s changed: it takes effect through a takeover (lb --takeover "
                     "PATH, see README), not a reload",
                     lb->opts[i].name);
    }
    lb_opts_t *o = &lb->o; /* now the new values of every live option */

    enum log_level lvl;
    if (log_parse_level(o->log_level, &lvl) == 0)
        log_set_level(lvl);
    rld_backends(lb, o);
    if (be_table_algo(lb->table) != algo) {
        if (be_table_set_algo(lb->table, algo) < 0)
            log_error("reload: --algo %s: out of memory; keeping %s", algo->name,
                      be_table_algo(lb->table)->name);
        else
            log_info("reload: balancing with %s", algo->name);
    }
    be_table_set_health(lb->table, (int)o->rise, (int)o->fall);
    if (hc_changed) {
        hc_config_t hcc = {.path = o->health_path, .interval_ms = (unsigned)o->health_interval_ms};
        hc_t *h = hc_create(lb->loop, lb->table, &hcc, err, sizeof(err));
        if (h == NULL) {
            log_error("reload: health checks: %s; keeping the current ones", err);
        } else {
            hc_free(lb->hc);
            lb->hc = h;
        }
    }
    if (fresh_lim != NULL)
        lb->lim = fresh_lim; /* lives until the end: connections leave it */
    else if (lb->lim != NULL)
        lim_set(lb->lim, lc.max_conns, lc.rate, lc.burst);
    if (!tr_changed) {
        /* the same networks: the set in use stays */
    } else if (lb->trusted != NULL) {
        /* A proxy thread may be matching against it right now. */
        if (rld_retire_trusted(lb, lb->trusted, be_now_ms()) == 0) {
            lb->trusted = trusted;
            trusted = NULL;
        } else {
            log_error("reload: --trusted-proxies: out of memory; keeping the current ones");
        }
    } else {
        lb->trusted = trusted;
        trusted = NULL;
    }
    px_config_t pc = {0};
    rld_px_tunables(lb, &pc);
    px_tune(lb->px, &pc);
    if (lb->admin != NULL && admin_set_token(lb->admin, token) < 0)
        log_error("reload: admin token: out of memory; keeping the current one");

    uint64_t gen = AT_ADD(&lb->stats.config_generation, 1), now = rld_wall_ms();
    AT_STORE(&lb->stats.config_loaded_ms, now);
    met_set(lb->m_generation, (int64_t)gen);
    met_set(lb->m_loaded, (int64_t)(now / 1000));
    log_info("reload: configuration generation %llu applied: %zu static backend(s), algo %s, "
             "log level %s",
             (unsigned long long)gen, o->backend.n, algo->name, o->log_level);
    rc = 0;

out:
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    if (trusted != NULL) {
        cidr_set_free(trusted);
        free(trusted);
    }
    cfg_free(nt);
    return rc;
}
