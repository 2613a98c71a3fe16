/* ctl_fleet: the fleet through the lbs' admin APIs and the registry (see
 * ctl_fleet.h). */
#include "ctl_fleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* A worker refreshes its state every second and it expires after 3: an
 * older heartbeat means a worker that stopped publishing. */
#define CTL_HB_STALE_MS 3000

/* ---- one lb's /stats (pure) ------------------------------------------------ */

static void ctl_fleet_copy(json_t *o, const char *name, char *dst, size_t max)
{
    const char *s = json_string_value(json_object_get(o, name));
    snprintf(dst, max, "%s", s ? s : "");
    /* Shown in a terminal table: no control characters from a server. */
    for (char *p = dst; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/* An integer field; dflt when absent or null (an older lb, nothing known). */
static int64_t ctl_fleet_int(json_t *o, const char *name, int64_t dflt)
{
    json_t *v = json_object_get(o, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static int ctl_fleet_view(json_t *b, ctl_lbbe_t *e, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(b, "id"));
    if (id == NULL || *id == '\0' || strlen(id) >= sizeof(e->id)) {
        snprintf(err, errlen, "a backend without a usable id");
        return -1;
    }
    memset(e, 0, sizeof(*e));
    memcpy(e->id, id, strlen(id) + 1);
    ctl_view_t *v = &e->v;
    v->known = 1;
    ctl_fleet_copy(b, "addr", v->addr, sizeof(v->addr));
    ctl_fleet_copy(b, "state", v->state, sizeof(v->state));
    ctl_fleet_copy(b, "health", v->health, sizeof(v->health));
    ctl_fleet_copy(b, "version", v->version, sizeof(v->version));
    ctl_fleet_copy(b, "source", v->source, sizeof(v->source));
    if (v->state[0] == '\0') {
        snprintf(err, errlen, "backend '%.60s' has no state", id);
        return -1;
    }
    v->admin_drain = json_is_true(json_object_get(b, "admin_drain"));
    if (v->health[0] == '\0') /* an lb from before "health": judge by state */
        snprintf(v->health, sizeof(v->health), "%s",
                 v->admin_drain && strcmp(v->state, "draining") == 0 ? "up" : v->state);
    v->active = ctl_fleet_int(b, "active", 0);
    v->conns_global = ctl_fleet_int(b, "conns_global", -1);
    v->evals_running = ctl_fleet_int(b, "evals_running", -1);
    v->evals_queued = ctl_fleet_int(b, "evals_queued", -1);
    v->hb_age_ms = ctl_fleet_int(b, "heartbeat_age_ms", -1);
    int64_t st = ctl_fleet_int(b, "started_ms", 0);
    v->started_ms = st > 0 ? (uint64_t)st : 0;
    return 0;
}

int ctl_fleet_parse_stats(const char *json, size_t n, ctl_lb_t *lb, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, n, 0, &jerr);
    json_t *bes = json_object_get(root, "backends");
    int rc = -1;
    free(lb->bes);
    lb->bes = NULL;
    lb->nbes = 0;
    if (root == NULL || !json_is_array(bes)) {
        snprintf(err, errlen, "/stats is not the lb's JSON (%s)",
                 root == NULL ? jerr.text : "no backends array");
        goto done;
    }
    ctl_fleet_copy(root, "algo", lb->algo, sizeof(lb->algo));
    json_t *gen = json_object_get(root, "config_generation");
    lb->config_gen = json_is_integer(gen) ? (long long)json_integer_value(gen) : 0;
    size_t cnt = json_array_size(bes);
    lb->bes = calloc(cnt ? cnt : 1, sizeof(*lb->bes));
    if (lb->bes == NULL) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < cnt; i++) {
        char verr[160];
        if (ctl_fleet_view(json_array_get(bes, i), &lb->bes[lb->nbes], verr, sizeof(verr)) < 0) {
            snprintf(err, errlen, "/stats: %s", verr);
            goto done;
        }
        lb->nbes++;
    }
    rc = 0;
done:
    if (rc < 0) {
        free(lb->bes);
        lb->bes = NULL;
        lb->nbes = 0;
    }
    json_decref(root);
    return rc;
}

/* ---- errors of the admin API --------------------------------------------- */

void ctl_fleet_http_error(int status, const buf_t *body, int have_token, char *err, size_t errlen)
{
    /* The admin API answers {"error":"..."}; anything else is shown raw. */
    json_t *j = json_loadb(buf_head(body), buf_size(body), 0, NULL);
    const char *why = json_string_value(json_object_get(j, "error"));
    char raw[160];
    if (why == NULL) {
        size_t n = buf_size(body) < sizeof(raw) - 1 ? buf_size(body) : sizeof(raw) - 1;
        memcpy(raw, buf_size(body) ? buf_head(body) : "", n);
        raw[n] = '\0';
        for (char *p = raw; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
        why = raw;
    }
    if (status == 401)
        snprintf(err, errlen, "401 unauthorized: %s",
                 have_token ? "the admin token was refused (check --admin-token-file)"
                            : "the lb wants an admin token (--admin-token-file FILE)");
    else
        snprintf(err, errlen, "answered %d%s%s", status, *why ? ": " : "", why);
    json_decref(j);
}

/* ---- reading --------------------------------------------------------------- */

static uint64_t ctl_fleet_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void ctl_fleet_read_lb(const ctl_conf_t *c, ctl_lb_t *lb)
{
    ctl_http_resp_t r;
    char herr[300];
    if (ctl_http_request(lb->url, "GET", "/stats", c->token, c->timeout, &r, herr, sizeof(herr)) <
        0) {
        snprintf(lb->err, sizeof(lb->err), "%s", herr);
    } else if (r.status != 200) {
        ctl_fleet_http_error(r.status, &r.body, c->token != NULL, herr, sizeof(herr));
        snprintf(lb->err, sizeof(lb->err), "GET /stats %s", herr);
    } else if (ctl_fleet_parse_stats(buf_head(&r.body), buf_size(&r.body), lb, herr, sizeof(herr)) <
               0) {
        snprintf(lb->err, sizeof(lb->err), "%s", herr);
    } else {
        lb->ok = 1;
    }
    ctl_http_resp_free(&r);
}

int ctl_fleet_read(const ctl_conf_t *c, ctl_fleet_t *f)
{
    memset(f, 0, sizeof(*f));
    f->lbs = calloc(c->nlbs ? c->nlbs : 1, sizeof(*f->lbs));
    if (f->lbs == NULL)
        return -1;
    f->nlbs = c->nlbs;
    for (size_t i = 0; i < c->nlbs; i++) {
        ctl_lb_t *lb = &f->lbs[i];
        lb->url = &c->lbs[i];
        snprintf(lb->name, sizeof(lb->name), "lb%zu", i + 1);
        ctl_fleet_read_lb(c, lb);
    }
    if (c->redis) {
        char rerr[250];
        f->use_reg = 1;
        f->reg_ok = ctl_reg_read(c->redis, c->prefix, c->timeout, &f->reg, rerr, sizeof(rerr)) == 0;
        if (!f->reg_ok)
            snprintf(f->reg_err, sizeof(f->reg_err), "%s", rerr);
    }
    f->wall_ms = ctl_fleet_wall_ms();
    return ctl_fleet_merge(f);
}

size_t ctl_fleet_lb_errors(const ctl_fleet_t *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->nlbs; i++)
        n += !f->lbs[i].ok;
    return n;
}

void ctl_fleet_free(ctl_fleet_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nlbs; i++)
        free(f->lbs[i].bes);
    for (size_t i = 0; i < f->nbes; i++)
        free(f->bes[i].views);
    free(f->lbs);
    free(f->bes);
    ctl_reg_free(&f->reg);
    memset(f, 0, sizeof(*f));
}

/* ---- merging (pure) ----------------------------------------------------------- */

static int ctl_fleet_cmp(const void *a, const void *b)
{
    return strverscmp(*(const char *const *)a, *(const char *const *)b);
}

int ctl_fleet_merge(ctl_fleet_t *f)
{
    size_t total = f->reg.n;
    for (size_t i = 0; i < f->nlbs; i++)
        total += f->lbs[i].nbes;
    const char **ids = calloc(total ? total : 1, sizeof(*ids));
    if (ids == NULL)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < f->nlbs; i++)
        for (size_t k = 0; k < f->lbs[i].nbes; k++)
            ids[n++] = f->lbs[i].bes[k].id;
    for (size_t k = 0; k < f->reg.n; k++)
        ids[n++] = f->reg.v[k].id;
    qsort(ids, n, sizeof(*ids), ctl_fleet_cmp);
    for (size_t i = 0; i < f->nbes; i++)
        free(f->bes[i].views);
    free(f->bes);
    f->nbes = 0;
    f->bes = calloc(n ? n : 1, sizeof(*f->bes));
    if (f->bes == NULL) {
        free(ids);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (f->nbes > 0 && strcmp(f->bes[f->nbes - 1].id, ids[i]) == 0)
            continue;
        ctl_be_t *b = &f->bes[f->nbes];
        b->views = calloc(f->nlbs ? f->nlbs : 1, sizeof(*b->views));
        if (b->views == NULL) {
            free(ids);
            return -1;
        }
        f->nbes++;
        snprintf(b->id, sizeof(b->id), "%s", ids[i]);
        for (size_t l = 0; l < f->nlbs; l++)
            for (size_t k = 0; k < f->lbs[l].nbes; k++)
                if (strcmp(f->lbs[l].bes[k].id, b->id) == 0)
                    b->views[l] = f->lbs[l].bes[k].v;
        for (size_t k = 0; k < f->reg.n; k++)
            if (strcmp(f->reg.v[k].id, b->id) == 0)
                b->reg = &f->reg.v[k];
    }
    free(ids);
    return 0;
}

ctl_be_t *ctl_fleet_find(const ctl_fleet_t *f, const char *id)
{
    for (size_t i = 0; i < f->nbes; i++)
        if (strcmp(f->bes[i].id, id) == 0)
            return &f->bes[i];
    return NULL;
}

const char *ctl_view_state(const ctl_view_t *v, char *buf, size_t len)
{
    if (!v->known)
        snprintf(buf, len, "-");
    else if (!v->admin_drain)
        snprintf(buf, len, "%s", v->health);
    else if (strcmp(v->health, "up") == 0)
        snprintf(buf, len, "drained");
    else
        snprintf(buf, len, "%s,drained", v->health);
    return buf;
}

/* ---- derived figures ---------------------------------------------------------- */

static int ctl_reg_usable(const ctl_be_t *b)
{
    return b->reg != NULL && b->reg->err[0] == '\0';
}

int64_t ctl_be_ws_global(const ctl_fleet_t *f, const ctl_be_t *b)
{
    if (ctl_reg_usable(b))
        return b->reg->s.conns;
    int64_t best = -1;
    for (size_t l = 0; l < f->nlbs; l++)
        if (b->views[l].known && b->views[l].conns_global > best)
            best = b->views[l].conns_global;
    return best;
}

int64_t ctl_be_evals(const ctl_fleet_t *f, const ctl_be_t *b, int queued)
{
    if (ctl_reg_usable(b))
        return queued ? b->reg->s.evals_queued : b->reg->s.evals_running;
    for (size_t l = 0; l < f->nlbs; l++) {
        int64_t v = queued ? b->views[l].evals_queued : b->views[l].evals_running;
        if (b->views[l].known && v >= 0)
            return v;
    }
    return -1;
}

int64_t ctl_be_hb_age(const ctl_fleet_t *f, const ctl_be_t *b)
{
    if (ctl_reg_usable(b) && b->reg->s.ts_ms)
        return f->wall_ms > b->reg->s.ts_ms ? (int64_t)(f->wall_ms - b->reg->s.ts_ms) : 0;
    int64_t best = -1;
    for (size_t l = 0; l < f->nlbs; l++)
        if (b->views[l].known && b->views[l].hb_age_ms >= 0 &&
            (best < 0 || b->views[l].hb_age_ms < best))
            best = b->views[l].hb_age_ms;
    return best;
}

uint64_t ctl_be_started(const ctl_fleet_t *f, const ctl_be_t *b)
{
    if (ctl_reg_usable(b) && b->reg->s.started_ms)
        return b->reg->s.started_ms;
    for (size_t l = 0; l < f->nlbs; l++)
        if (b->views[l].known && b->views[l].started_ms)
            return b->views[l].started_ms;
    return 0;
}

const char *ctl_be_version(const ctl_fleet_t *f, const ctl_be_t *b)
{
    if (ctl_reg_usable(b) && b->reg->s.version[0])
        return b->reg->s.version;
    for (size_t l = 0; l < f->nlbs; l++)
        if (b->views[l].known && b->views[l].version[0])
            return b->views[l].version;
    return "";
}

const char *ctl_be_addr(const ctl_fleet_t *f, const ctl_be_t *b)
{
    if (ctl_reg_usable(b))
        return b->reg->s.addr;
    for (size_t l = 0; l < f->nlbs; l++)
        if (b->views[l].known && b->views[l].addr[0])
            return b->views[l].addr;
    return "";
}

int64_t ctl_be_active(const ctl_fleet_t *f, const ctl_be_t *b)
{
    int64_t n = 0;
    for (size_t l = 0; l < f->nlbs; l++)
        if (b->views[l].known)
            n += b->views[l].active;
    return n;
}

/* ---- disagreements (pure) ------------------------------------------------------ */

/* Appends "X on lbA, lbB" groups for each distinct state of b. */
static void ctl_fleet_state_groups(const ctl_fleet_t *f, const ctl_be_t *b, buf_t *out)
{
    int done[64] = {0};
    size_t n = f->nlbs < 64 ? f->nlbs : 64;
    int first = 1;
    for (size_t l = 0; l < n; l++) {
        if (done[l] || !b->views[l].known)
            continue;
        char s1[32], s2[32];
        ctl_view_state(&b->views[l], s1, sizeof(s1));
        buf_printf(out, "%s%s on %s", first ? "" : ", ", s1, f->lbs[l].name);
        first = 0;
        for (size_t k = l + 1; k < n; k++) {
            if (done[k] || !b->views[k].known)
                continue;
            if (strcmp(s1, ctl_view_state(&b->views[k], s2, sizeof(s2))) == 0) {
                buf_printf(out, ", %s", f->lbs[k].name);
                done[k] = 1;
            }
        }
    }
}

/* What the lbs disagree on: states, addresses, whether they know it. */
static int ctl_fleet_lb_warnings(const ctl_fleet_t *f, const ctl_be_t *b, buf_t *out)
{
    int n = 0, states_differ = 0, addr_differ = 0;
    size_t known = 0, reachable = 0;
    const ctl_view_t *ref = NULL;
    for (size_t l = 0; l < f->nlbs; l++) {
        reachable += f->lbs[l].ok;
        if (!b->views[l].known)
            continue;
        known++;
        if (ref == NULL) {
            ref = &b->views[l];
            continue;
        }
        char s1[32], s2[32];
        states_differ |= strcmp(ctl_view_state(ref, s1, sizeof(s1)),
                                ctl_view_state(&b->views[l], s2, sizeof(s2))) != 0;
        addr_differ |= strcmp(ref->addr, b->views[l].addr) != 0;
    }
    if (states_differ) {
        buf_printf(out, "%s: the lbs disagree: ", b->id);
        ctl_fleet_state_groups(f, b, out);
        buf_append_str(out, "\n");
        n++;
    }
    if (addr_differ) {
        buf_printf(out, "%s: the lbs know it at different addresses:", b->id);
        for (size_t l = 0; l < f->nlbs; l++)
            if (b->views[l].known)
                buf_printf(out, " %s on %s", b->views[l].addr, f->lbs[l].name);
        buf_append_str(out, "\n");
        n++;
    }
    if (known == 0 && reachable > 0 && b->reg != NULL) {
        buf_printf(out, "%s: registered in Redis (%s) but unknown to every lb\n", b->id,
                   b->reg->s.addr[0] ? b->reg->s.addr : "?");
        n++;
    } else if (known > 0 && known < reachable) {
        buf_printf(out, "%s: unknown to", b->id);
        for (size_t l = 0; l < f->nlbs; l++)
            if (f->lbs[l].ok && !b->views[l].known)
                buf_printf(out, " %s", f->lbs[l].name);
        buf_append_str(out, " (the others list it)\n");
        n++;
    }
    return n;
}

/* What the registry says against the lbs: gone, silent or unreadable. */
static int ctl_fleet_reg_warnings(const ctl_fleet_t *f, const ctl_be_t *b, buf_t *out)
{
    int n = 0, discovered = 0;
    for (size_t l = 0; l < f->nlbs; l++)
        discovered |= b->views[l].known && strcmp(b->views[l].source, "redis") == 0;
    if (f->use_reg && f->reg_ok && b->reg == NULL && discovered) {
        buf_printf(out, "%s: the lbs list it from Redis, but it is not registered there any more\n",
                   b->id);
        n++;
    }
    int64_t age = ctl_be_hb_age(f, b);
    if (age > CTL_HB_STALE_MS) {
        buf_printf(
            out, "%s: last heartbeat %.1fs ago (workers beat every second: stopped or cut off?)\n",
            b->id, (double)age / 1000.0);
        n++;
    }
    if (b->reg != NULL && b->reg->err[0]) {
        buf_printf(out, "%s: its Redis state is unusable: %s\n", b->id, b->reg->err);
        n++;
    }
    return n;
}

int ctl_fleet_be_warnings(const ctl_fleet_t *f, const ctl_be_t *b, buf_t *out)
{
    return ctl_fleet_lb_warnings(f, b, out) + ctl_fleet_reg_warnings(f, b, out);
}

int ctl_fleet_warnings(const ctl_fleet_t *f, buf_t *out)
{
    int count = 0;
    for (size_t i = 0; i < f->nbes; i++)
        count += ctl_fleet_be_warnings(f, &f->bes[i], out);
    return count;
}

/* ---- actions -------------------------------------------------------------------- */

int ctl_fleet_post(const ctl_conf_t *c, size_t i, const char *id, const char *action, char *err,
                   size_t errlen)
{
    char esc[3 * CTL_ID_MAX + 1], path[3 * CTL_ID_MAX + 64], herr[300];
    if (ctl_http_escape(id, esc, sizeof(esc)) < 0) {
        snprintf(err, errlen, "id too long");
        return CTL_POST_ERR;
    }
    snprintf(path, sizeof(path), "/backends/%s/%s", esc, action);
    ctl_http_resp_t r;
    int rc = CTL_POST_ERR;
    if (ctl_http_request(&c->lbs[i], "POST", path, c->token, c->timeout, &r, herr, sizeof(herr)) <
        0) {
        snprintf(err, errlen, "%s", herr);
    } else if (r.status == 200) {
        rc = CTL_POST_OK;
    } else if (r.status == 404) {
        /* Only "unknown backend" means the id; a plain 404 is a wrong URL. */
        json_t *j = json_loadb(buf_head(&r.body), buf_size(&r.body), 0, NULL);
        const char *why = json_string_value(json_object_get(j, "error"));
        if (why && strcmp(why, "unknown backend") == 0)
            rc = CTL_POST_UNKNOWN;
        else
            snprintf(err, errlen, "POST %s answered 404: is this an lb's admin API?", path);
        json_decref(j);
    } else {
        ctl_fleet_http_error(r.status, &r.body, c->token != NULL, herr, sizeof(herr));
        snprintf(err, errlen, "POST %s %s", path, herr);
    }
    ctl_http_resp_free(&r);
    return rc;
}
