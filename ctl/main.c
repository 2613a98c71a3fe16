/* wslbctl: see and steer a fleet of lbs and workers through the lbs' admin
 * APIs and the Redis registry.
 *
 *   wslbctl status  --lb URL... [--redis HOST:PORT] [--json]
 *   wslbctl drain   ID... --lb URL... [--wait [--timeout S]]
 *   wslbctl enable  ID... --lb URL... [--wait [--timeout S]]
 *   wslbctl rollout [ID...] --lb URL... --exec CMD [--batch N] ...
 *
 * Exit status: 0 success, 1 the operation failed (an unreachable lb, an
 * unknown id, a timeout, a failed worker), 2 a usage error. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "ctl_fleet.h"
#include "ctl_net.h"
#include "ctl_out.h"
#include "ctl_roll.h"
#include "ctl_show.h"
#include "fleet.h"

#ifndef VERSION
#define VERSION "unknown"
#endif

typedef struct ctl_opts {
    cfg_list_t lbs;
    char *redis, *prefix, *token_file, *secret_file, *exec, *probe_runtime, *probe_code;
    int json, wait;
    long timeout, batch, max_failures, retries, drain_timeout, ready_timeout, exec_timeout;
    long request_timeout;
} ctl_opts_t;

typedef struct ctl_ctx {
    ctl_opts_t o;
    ctl_conf_t conf;
    ctl_url_t *urls;
    char *token, *secret;
    ctl_out_t out;
} ctl_ctx_t;

static const char ctl_summary[] =
    "       wslbctl COMMAND [ID...] [OPTIONS]\n"
    "See and steer the lbs and workers of a wslb fleet.\n"
    "\n"
    "Commands:\n"
    "  status             every backend as every lb (and Redis) sees it\n"
    "  drain ID...        drain on every lb given (--wait: until no websocket is left)\n"
    "  enable ID...       enable on every lb given (--wait: until up on every lb)\n"
    "  rollout [ID...]    rolling restart with --exec (every backend when no ID is named)\n"
    "\n"
    "Exit status: 0 done, 1 failed (the reason is printed), 2 usage error.";

#define CTL_NOPTS 19

static void ctl_table(ctl_opts_t *o, cfg_opt_t t[CTL_NOPTS])
{
    cfg_opt_t opts[] = {
        {"lb", CFG_LIST, &o->lbs, "URL", "an lb's admin API, e.g. http://127.0.0.1:8081", 0, 0},
        {"redis", CFG_STR, &o->redis, "HOST:PORT", "the registry: also list workers no lb knows", 0,
         0},
        {"redis-prefix", CFG_STR, &o->prefix, "PREFIX", "Redis key prefix", 0, 0},
        {"admin-token-file", CFG_STR, &o->token_file, "FILE",
         "send the file's first line as Authorization: Bearer", 0, 0},
        {"request-timeout", CFG_INT, &o->request_timeout, "S",
         "seconds for each request to an lb or Redis", 1, 300},
        {"json", CFG_BOOL, &o->json, NULL, "status: print JSON", 0, 0},
        {"wait", CFG_BOOL, &o->wait, NULL, "drain/enable: wait until it took effect", 0, 0},
        {"timeout", CFG_INT, &o->timeout, "S", "drain/enable --wait: give up after S seconds", 1,
         86400},
        {"exec", CFG_STR, &o->exec, "CMD",
         "rollout: restart command for /bin/sh -c; {id} {host} {port} are replaced", 0, 0},
        {"batch", CFG_INT, &o->batch, "N", "rollout: workers restarted at once", 1, 64},
        {"max-failures", CFG_INT, &o->max_failures, "K",
         "rollout: stop after K workers failed for good", 1, 100000},
        {"retries", CFG_INT, &o->retries, "R", "rollout: tries again after a failed step", 0, 100},
        {"drain-timeout", CFG_INT, &o->drain_timeout, "S",
         "rollout: seconds for websockets to move before the restart", 0, 86400},
        {"ready-timeout", CFG_INT, &o->ready_timeout, "S",
         "rollout: seconds for a restarted worker to register, be up and pass the probe", 1, 86400},
        {"exec-timeout", CFG_INT, &o->exec_timeout, "S", "rollout: seconds the command may run", 1,
         86400},
        {"upstream-secret-file", CFG_STR, &o->secret_file, "FILE",
         "rollout: the workers' upstream secret, for the probe", 0, 0},
        {"probe-runtime", CFG_STR, &o->probe_runtime, "NAME", "rollout: the probe's runtime", 0, 0},
        {"probe-code", CFG_STR, &o->probe_code, "SRC",
         "rollout: the probe's program (the default, print(1), must print 1)", 0, 0},
        CFG_END,
    };
    _Static_assert(sizeof(opts) / sizeof(opts[0]) == CTL_NOPTS, "CTL_NOPTS");
    memcpy(t, opts, sizeof(opts));
}

/* Positional words (the command, ids) out of argv into pos; the options
 * stay in flags for cfg_parse. Whether an option takes the next word comes
 * from the table, so "--lb URL status" and "status --lb URL" both work. */
static int ctl_split_args(const cfg_opt_t *t, int argc, char **argv, char **flags, int *nflags,
                          char **pos, int *npos)
{
    *nflags = *npos = 0;
    flags[(*nflags)++] = "wslbctl"; /* for --help and --version, whatever the path */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            while (++i < argc)
                pos[(*npos)++] = argv[i];
            break;
        }
        if (strncmp(a, "--", 2) != 0) {
            pos[(*npos)++] = argv[i];
            continue;
        }
        flags[(*nflags)++] = argv[i];
        if (strchr(a, '=') != NULL || i + 1 >= argc)
            continue;
        int takes = strcmp(a + 2, "config") == 0;
        for (const cfg_opt_t *o = t; o->name && !takes; o++)
            takes = strcmp(a + 2, o->name) == 0 && o->type != CFG_BOOL;
        if (takes)
            flags[(*nflags)++] = argv[++i];
    }
    flags[*nflags] = NULL;
    return 0;
}

/* ---- status ------------------------------------------------------------------ */

static int ctl_status(ctl_ctx_t *x)
{
    ctl_fleet_t f;
    buf_t out = BUF_INIT, warn = BUF_INIT;
    if (ctl_fleet_read(&x->conf, &f) < 0) {
        fprintf(stderr, "wslbctl: out of memory\n");
        return 1;
    }
    int nwarn = ctl_fleet_warnings(&f, &warn);
    int bad = x->o.json ? ctl_show_json(&f, &x->conf, &out) : ctl_show_table(&f, &x->conf, &out);
    ctl_out_write(&x->out, 1, buf_head(&out), buf_size(&out));
    if (!x->o.json && nwarn > 0) {
        /* one "warning: " per line */
        const char *p = buf_head(&warn), *end = p + buf_size(&warn), *e;
        for (; p < end && (e = memchr(p, '\n', (size_t)(end - p))) != NULL; p = e + 1)
            fprintf(stderr, "warning: %.*s\n", (int)(e - p), p);
    }
    int failed = ctl_fleet_lb_errors(&f) > 0 || (f.use_reg && !f.reg_ok);
    for (size_t i = 0; i < f.nlbs && !x->o.json; i++)
        if (!f.lbs[i].ok)
            fprintf(stderr, "wslbctl: %s (%s): %s\n", f.lbs[i].name, f.lbs[i].url->text,
                    f.lbs[i].err);
    if (f.use_reg && !f.reg_ok && !x->o.json)
        fprintf(stderr, "wslbctl: redis %s: %s\n", x->conf.redis, f.reg_err);
    buf_free(&out);
    buf_free(&warn);
    ctl_fleet_free(&f);
    return bad || failed ? 1 : 0;
}

/* ---- drain / enable ------------------------------------------------------------ */

/* "known: w1, w2" for an unknown-id error. */
static void ctl_known_ids(ctl_ctx_t *x, char *out, size_t len)
{
    ctl_fleet_t f;
    size_t off = 0;
    snprintf(out, len, "none");
    if (ctl_fleet_read(&x->conf, &f) < 0)
        return;
    for (size_t i = 0; i < f.nbes && off < len; i++)
        off += (size_t)snprintf(out + off, len - off, "%s%s", i ? ", " : "", f.bes[i].id);
    ctl_fleet_free(&f);
}

/* Posts the action for one id on every lb. Returns 0 when at least one lb
 * took it and none failed; prints what happened. */
static int ctl_act_one(ctl_ctx_t *x, const char *id, const char *action)
{
    char err[400], took[300] = "", unknown[300] = "";
    size_t ot = 0, ou = 0;
    int failed = 0;
    for (size_t l = 0; l < x->conf.nlbs; l++) {
        int rc = ctl_fleet_post(&x->conf, l, id, action, err, sizeof(err));
        if (rc == CTL_POST_OK) {
            ot += (size_t)snprintf(took + ot, ot < sizeof(took) ? sizeof(took) - ot : 0, "%slb%zu",
                                   ot ? ", " : "", l + 1);
        } else if (rc == CTL_POST_UNKNOWN) {
            ou += (size_t)snprintf(unknown + ou, ou < sizeof(unknown) ? sizeof(unknown) - ou : 0,
                                   "%slb%zu", ou ? ", " : "", l + 1);
        } else {
            fprintf(stderr, "wslbctl: %s: lb%zu (%s): %s\n", id, l + 1, x->urls[l].text, err);
            failed = 1;
        }
    }
    if (ot == 0 && ou > 0 && !failed) {
        char known[400];
        ctl_known_ids(x, known, sizeof(known));
        fprintf(stderr, "wslbctl: unknown backend id '%s' on every lb (known: %s)\n", id, known);
        return -1;
    }
    if (ot > 0)
        ctl_out_printf(&x->out, 1, "%s: %s on %s\n", id, action[0] == 'd' ? "drained" : "enabled",
                       took);
    if (ou > 0)
        fprintf(stderr, "warning: %s: unknown to %s\n", id, unknown);
    return failed ? -1 : 0;
}

/* 1 when id has taken effect: no websockets from the lbs (drain), or up on
 * every lb that knows it (enable); *left says how far it is. */
static int ctl_settled(const ctl_fleet_t *f, const char *id, int drain, int64_t *left)
{
    const ctl_be_t *b = ctl_fleet_find(f, id);
    *left = 0;
    if (b == NULL)
        return drain; /* gone: holds nothing, serves nothing */
    int ok = 1;
    for (size_t l = 0; l < f->nlbs; l++) {
        if (!f->lbs[l].ok) {
            ok = 0;
            continue;
        }
        if (!b->views[l].known)
            continue;
        if (drain)
            *left += b->views[l].active;
        else if (strcmp(b->views[l].state, "up") != 0)
            (*left)++;
    }
    return ok && *left == 0;
}

static int ctl_wait(ctl_ctx_t *x, char **ids, int n, int drain)
{
    double t0 = ctl_now(), deadline = t0 + (double)x->o.timeout;
    for (;;) {
        ctl_fleet_t f;
        if (ctl_fleet_read(&x->conf, &f) < 0)
            return -1;
        int all = 1;
        char why[600] = "";
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            int64_t left;
            if (ctl_settled(&f, ids[i], drain, &left))
                continue;
            all = 0;
            off += (size_t)snprintf(why + off, off < sizeof(why) ? sizeof(why) - off : 0,
                                    drain ? "%s%s holds %lld websocket(s) from the lbs"
                                          : "%s%s is not up on %lld lb(s)",
                                    off ? "; " : "", ids[i], (long long)left);
        }
        size_t errs = ctl_fleet_lb_errors(&f);
        ctl_fleet_free(&f);
        if (all) {
            ctl_out_printf(&x->out, 1, "%s after %.1fs\n",
                           drain ? "no websockets left" : "up on every lb", ctl_now() - t0);
            return 0;
        }
        if (ctl_now() >= deadline) {
            fprintf(stderr, "wslbctl: timed out after %lds: %s%s\n", x->o.timeout, why,
                    errs ? " (and an lb does not answer)" : "");
            return -1;
        }
        ctl_out_progress(&x->out, "waiting %.0fs: %s", ctl_now() - t0, why);
        usleep(250000);
    }
}

static int ctl_act(ctl_ctx_t *x, const char *action, char **ids, int n)
{
    if (n == 0) {
        fprintf(stderr, "wslbctl: %s: name the backend id(s)\n", action);
        return 2;
    }
    int failed = 0;
    for (int i = 0; i < n; i++)
        failed |= ctl_act_one(x, ids[i], action) < 0;
    if (failed)
        return 1;
    if (x->o.wait && ctl_wait(x, ids, n, action[0] == 'd') < 0)
        failed = 1;
    ctl_out_done(&x->out);
    return failed;
}

/* ---- rollout ------------------------------------------------------------------- */

static int ctl_rollout(ctl_ctx_t *x, char **ids, int n)
{
    if (x->o.exec == NULL || *x->o.exec == '\0') {
        fprintf(stderr, "wslbctl: rollout: --exec CMD is required, e.g. --exec 'ssh {host} sudo "
                        "systemctl restart wslb-worker'\n");
        return 2;
    }
    ctl_roll_opts_t ro = {
        .exec = x->o.exec,
        .batch = x->o.batch,
        .max_failures = x->o.max_failures,
        .retries = x->o.retries,
        .drain_timeout = (double)x->o.drain_timeout,
        .ready_timeout = (double)x->o.ready_timeout,
        .exec_timeout = (double)x->o.exec_timeout,
        .probe = {.secret = x->secret,
                  .runtime = x->o.probe_runtime,
                  .code = x->o.probe_code,
                  /* the default probe's output is known; another one's is not */
                  .expect_stdout = strcmp(x->o.probe_code, "print(1)") == 0 ? "1\n" : NULL},
    };
    return ctl_roll_run(&x->conf, &ro, ids, (size_t)n, &x->out);
}

/* ---- setup ------------------------------------------------------------------------ */

/* Returns 0, 2 for a usage error or 1 for anything else, said on stderr. */
static int ctl_setup(ctl_ctx_t *x, const char *cmd)
{
    char err[512];
    x->urls = calloc(x->o.lbs.n ? x->o.lbs.n : 1, sizeof(*x->urls));
    if (x->urls == NULL)
        return 1;
    for (size_t i = 0; i < x->o.lbs.n; i++) {
        if (ctl_url_parse(x->o.lbs.v[i], &x->urls[i], err, sizeof(err)) < 0) {
            fprintf(stderr, "wslbctl: --lb %s\n", err);
            return 2;
        }
    }
    if (x->o.lbs.n == 0 && (strcmp(cmd, "status") != 0 || x->o.redis == NULL)) {
        fprintf(stderr, "wslbctl: %s: give at least one --lb URL (an lb's admin API)\n", cmd);
        return 2;
    }
    if (x->o.token_file && (x->token = cfg_read_secret("--admin-token-file", x->o.token_file, err,
                                                       sizeof(err))) == NULL) {
        fprintf(stderr, "wslbctl: %s\n", err);
        return 1;
    }
    if (x->o.secret_file && (x->secret = cfg_read_secret("--upstream-secret-file", x->o.secret_file,
                                                         err, sizeof(err))) == NULL) {
        fprintf(stderr, "wslbctl: %s\n", err);
        return -1;
    }
    x->conf = (ctl_conf_t){.lbs = x->urls,
                           .nlbs = x->o.lbs.n,
                           .token = x->token,
                           .redis = x->o.redis && *x->o.redis ? x->o.redis : NULL,
                           .prefix = x->o.prefix,
                           .timeout = (double)x->o.request_timeout};
    return 0;
}

static void ctl_scrub(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

int main(int argc, char **argv)
{
    ctl_ctx_t x = {.o = {.prefix = FLEET_DEFAULT_PREFIX,
                         .timeout = 60,
                         .batch = 1,
                         .max_failures = 1,
                         .retries = 1,
                         .drain_timeout = 30,
                         .ready_timeout = 60,
                         .exec_timeout = 600,
                         .request_timeout = 5,
                         .probe_runtime = "python3",
                         .probe_code = "print(1)"}};
    cfg_opt_t table[CTL_NOPTS];
    char err[512];
    char **flags = calloc((size_t)argc + 2, sizeof(char *));
    char **pos = calloc((size_t)argc + 1, sizeof(char *));
    int nflags, npos, rc = 2;
    signal(SIGPIPE, SIG_IGN);
    ctl_table(&x.o, table);
    ctl_out_init(&x.out, isatty(2));
    if (flags == NULL || pos == NULL)
        goto done;
    ctl_split_args(table, argc, argv, flags, &nflags, pos, &npos);
    int pr = cfg_parse(table, nflags, flags, ctl_summary, VERSION, err, sizeof(err));
    if (pr == CFG_EXIT) {
        rc = 0;
        goto done;
    }
    if (pr == CFG_ERR || npos == 0) {
        fprintf(stderr, "wslbctl: %s (see wslbctl --help)\n", pr == CFG_ERR ? err : "no command");
        goto done;
    }
    const char *cmd = pos[0];
    if (strcmp(cmd, "status") != 0 && strcmp(cmd, "drain") != 0 && strcmp(cmd, "enable") != 0 &&
        strcmp(cmd, "rollout") != 0) {
        fprintf(stderr, "wslbctl: unknown command '%s' (status, drain, enable, rollout)\n", cmd);
        goto done;
    }
    if (strcmp(cmd, "status") == 0 && npos > 1) {
        fprintf(stderr, "wslbctl: status takes no id\n");
        goto done;
    }
    if ((rc = ctl_setup(&x, cmd)) != 0)
        goto done;
    if (strcmp(cmd, "status") == 0)
        rc = ctl_status(&x);
    else if (strcmp(cmd, "rollout") == 0)
        rc = ctl_rollout(&x, pos + 1, npos - 1);
    else
        rc = ctl_act(&x, cmd, pos + 1, npos - 1);
done:
    ctl_scrub(x.token);
    ctl_scrub(x.secret);
    free(x.urls);
    free(flags);
    free(pos);
    cfg_free(table);
    return rc;
}
