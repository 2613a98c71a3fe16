/* ctl_show: tables and JSON (see ctl_show.h). */
#include "ctl_show.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---- text tables ----------------------------------------------------------- */

void ctl_tab_init(ctl_tab_t *t, size_t ncols, uint64_t right_mask)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->right_mask = right_mask;
}

int ctl_tab_cell(ctl_tab_t *t, const char *fmt, ...)
{
    if (t->ncells == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **v = realloc(t->cells, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        t->cells = v;
        t->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&t->cells[t->ncells], fmt, ap);
    va_end(ap);
    if (rc < 0)
        return -1;
    t->ncells++;
    return 0;
}

int ctl_tab_render(const ctl_tab_t *t, buf_t *out)
{
    size_t w[64] = {0};
    size_t nc = t->ncols < 64 ? t->ncols : 64;
    if (nc == 0)
        return 0;
    for (size_t i = 0; i < t->ncells; i++) {
        size_t l = strlen(t->cells[i]);
        if (l > w[i % t->ncols] && i % t->ncols < nc)
            w[i % t->ncols] = l;
    }
    int bad = 0;
    for (size_t i = 0; i < t->ncells && !bad; i++) {
        size_t col = i % t->ncols;
        int last = col == t->ncols - 1 || i == t->ncells - 1;
        int right = col < 64 && (t->right_mask >> col) & 1;
        bad |= buf_printf(out, right ? "%*s" : "%-*s", col < nc ? (int)w[col] : 0, t->cells[i]) < 0;
        if (!last) {
            bad |= buf_append_str(out, "  ") < 0;
            continue;
        }
        /* No trailing blanks: an empty last column, or padding, ends the line early. */
        while (buf_size(out) > 0 && buf_head(out)[buf_size(out) - 1] == ' ')
            out->len--;
        bad |= buf_append_str(out, "\n") < 0;
    }
    return bad ? -1 : 0;
}

void ctl_tab_free(ctl_tab_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

const char *ctl_show_age(int64_t ms, char *buf, size_t len)
{
    if (ms < 0)
        snprintf(buf, len, "-");
    else if (ms < 60000)
        snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(buf, len, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else
        snprintf(buf, len, "%lldh%02lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
    return buf;
}

/* ---- the status table ---------------------------------------------------------- */

static int ctl_show_sources(const ctl_fleet_t *f, const ctl_conf_t *c, buf_t *out)
{
    ctl_tab_t t;
    ctl_tab_init(&t, 3, 0);
    int bad = 0;
    for (size_t i = 0; i < f->nlbs; i++) {
        const ctl_lb_t *lb = &f->lbs[i];
        bad |= ctl_tab_cell(&t, "%s", lb->name) | ctl_tab_cell(&t, "%s", lb->url->text);
        if (lb->ok) {
            char gen[48] = ""; /* an older lb reports no generation */
            if (lb->config_gen > 0)
                snprintf(gen, sizeof(gen), ", config generation %lld", lb->config_gen);
            bad |= ctl_tab_cell(&t, "%s, %zu backend%s%s", lb->algo[0] ? lb->algo : "?", lb->nbes,
                                lb->nbes == 1 ? "" : "s", gen);
        } else {
            bad |= ctl_tab_cell(&t, "UNREACHABLE: %s", lb->err);
        }
    }
    if (f->use_reg) {
        bad |= ctl_tab_cell(&t, "redis") | ctl_tab_cell(&t, "%s %s", c->redis, c->prefix);
        if (f->reg_ok)
            bad |= ctl_tab_cell(&t, "%zu worker%s registered", f->reg.n, f->reg.n == 1 ? "" : "s");
        else
            bad |= ctl_tab_cell(&t, "UNREACHABLE: %s", f->reg_err);
    }
    bad |= ctl_tab_render(&t, out);
    ctl_tab_free(&t);
    return bad ? -1 : 0;
}

static int ctl_show_num(ctl_tab_t *t, int64_t v)
{
    return v < 0 ? ctl_tab_cell(t, "-") : ctl_tab_cell(t, "%lld", (long long)v);
}

static int ctl_show_row(ctl_tab_t *t, const ctl_fleet_t *f, const ctl_be_t *b)
{
    char s[32];
    buf_t warn = BUF_INIT;
    int nwarn = ctl_fleet_be_warnings(f, b, &warn);
    buf_free(&warn);
    int bad = ctl_tab_cell(t, "%s", b->id) | ctl_tab_cell(t, "%s", ctl_be_addr(f, b));
    for (size_t l = 0; l < f->nlbs; l++)
        bad |=
            ctl_tab_cell(t, "%s", f->lbs[l].ok ? ctl_view_state(&b->views[l], s, sizeof(s)) : "?");
    for (size_t l = 0; l < f->nlbs; l++)
        bad |= !f->lbs[l].ok        ? ctl_tab_cell(t, "?")
               : !b->views[l].known ? ctl_tab_cell(t, "-")
                                    : ctl_show_num(t, b->views[l].active);
    bad |= ctl_show_num(t, ctl_be_ws_global(f, b));
    bad |= ctl_show_num(t, ctl_be_evals(f, b, 0)) | ctl_show_num(t, ctl_be_evals(f, b, 1));
    const char *ver = ctl_be_version(f, b);
    bad |= ctl_tab_cell(t, "%s", *ver ? ver : "-");
    bad |= ctl_tab_cell(t, "%s", ctl_show_age(ctl_be_hb_age(f, b), s, sizeof(s)));
    bad |= ctl_tab_cell(t, "%s", nwarn ? "!" : "");
    return bad ? -1 : 0;
}

int ctl_show_table(const ctl_fleet_t *f, const ctl_conf_t *c, buf_t *out)
{
    size_t nl = f->nlbs, ncols = 2 + 2 * nl + 6;
    if (ncols > 64) {
        buf_append_str(out, "too many lbs for a table: use --json\n");
        return -1;
    }
    /* numbers right-aligned: the websocket columns and the counts */
    uint64_t right = 0;
    for (size_t k = 2 + nl; k < 2 + 2 * nl + 3; k++)
        right |= 1ull << k;
    right |= 1ull << (2 + 2 * nl + 4); /* heartbeat */
    ctl_tab_t t;
    ctl_tab_init(&t, ncols, right);
    int bad = ctl_show_sources(f, c, out) | buf_append_str(out, "\n");
    bad |= ctl_tab_cell(&t, "ID") | ctl_tab_cell(&t, "ADDRESS");
    for (size_t l = 0; l < nl; l++)
        bad |= ctl_tab_cell(&t, "LB%zu", l + 1);
    for (size_t l = 0; l < nl; l++)
        bad |= ctl_tab_cell(&t, "WS:LB%zu", l + 1);
    bad |= ctl_tab_cell(&t, "WS:ALL") | ctl_tab_cell(&t, "RUNNING") | ctl_tab_cell(&t, "QUEUED");
    bad |= ctl_tab_cell(&t, "VERSION") | ctl_tab_cell(&t, "HEARTBEAT") | ctl_tab_cell(&t, "%s", "");
    for (size_t i = 0; i < f->nbes; i++)
        bad |= ctl_show_row(&t, f, &f->bes[i]);
    if (f->nbes == 0)
        bad |= buf_append_str(out, "no backends\n");
    else
        bad |= ctl_tab_render(&t, out);
    ctl_tab_free(&t);
    return bad ? -1 : 0;
}

/* ---- JSON ------------------------------------------------------------------------ */

static json_t *ctl_show_int(int64_t v)
{
    return v < 0 ? json_null() : json_integer((json_int_t)v);
}

static json_t *ctl_show_str(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *ctl_show_view(const ctl_view_t *v)
{
    char s[32];
    if (!v->known)
        return json_null();
    return json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:s}", "state",
                     ctl_view_state(v, s, sizeof(s)), "lb_state", v->state, "health", v->health,
                     "admin_drain", v->admin_drain, "websockets", json_integer(v->active),
                     "websockets_global", ctl_show_int(v->conns_global), "addr", v->addr);
}

static json_t *ctl_show_reg(const ctl_regw_t *r)
{
    if (r == NULL)
        return json_null();
    if (r->err[0])
        return json_pack("{s:s}", "error", r->err);
    const fleet_state_t *s = &r->s;
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:o, s:o}", "addr", s->addr, "state",
                     fleet_state_name(s), "websockets", (json_int_t)s->conns, "evals_running",
                     (json_int_t)s->evals_running, "evals_queued", (json_int_t)s->evals_queued,
                     "version", ctl_show_str(s->version), "ts_ms",
                     s->ts_ms ? json_integer((json_int_t)s->ts_ms) : json_null(), "started_ms",
                     s->started_ms ? json_integer((json_int_t)s->started_ms) : json_null());
}

static json_t *ctl_show_be(const ctl_fleet_t *f, const ctl_be_t *b)
{
    json_t *lbs = json_object(), *warn = json_array();
    buf_t w = BUF_INIT;
    ctl_fleet_be_warnings(f, b, &w);
    for (size_t l = 0; lbs && l < f->nlbs; l++)
        json_object_set_new(lbs, f->lbs[l].name, ctl_show_view(&b->views[l]));
    /* one warning per line */
    for (const char *p = buf_head(&w), *e; warn && p && p < buf_head(&w) + buf_size(&w);
         p = e + 1) {
        e = memchr(p, '\n', (size_t)(buf_head(&w) + buf_size(&w) - p));
        if (e == NULL)
            break;
        json_array_append_new(warn, json_stringn(p, (size_t)(e - p)));
    }
    buf_free(&w);
    uint64_t st = ctl_be_started(f, b);
    return json_pack(
        "{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", b->id, "addr",
        ctl_show_str(ctl_be_addr(f, b)), "lbs", lbs, "websockets_global",
        ctl_show_int(ctl_be_ws_global(f, b)), "evals_running", ctl_show_int(ctl_be_evals(f, b, 0)),
        "evals_queued", ctl_show_int(ctl_be_evals(f, b, 1)), "version",
        ctl_show_str(ctl_be_version(f, b)), "heartbeat_age_ms", ctl_show_int(ctl_be_hb_age(f, b)),
        "started_ms", st ? json_integer((json_int_t)st) : json_null(), "redis",
        ctl_show_reg(b->reg), "warnings", warn);
}

int ctl_show_json(const ctl_fleet_t *f, const ctl_conf_t *c, buf_t *out)
{
    json_t *lbs = json_array(), *bes = json_array(), *warn = json_array(), *reg = json_null();
    for (size_t i = 0; lbs && i < f->nlbs; i++) {
        const ctl_lb_t *lb = &f->lbs[i];
        json_array_append_new(
            lbs, json_pack(
                     "{s:s, s:s, s:b, s:o, s:o, s:o, s:o}", "name", lb->name, "url", lb->url->text,
                     "ok", lb->ok, "error", lb->ok ? json_null() : json_string(lb->err), "algo",
                     lb->ok ? ctl_show_str(lb->algo) : json_null(), "backends",
                     lb->ok ? json_integer((json_int_t)lb->nbes) : json_null(), "config_generation",
                     lb->ok && lb->config_gen > 0 ? json_integer((json_int_t)lb->config_gen)
                                                  : json_null()));
    }
    if (f->use_reg)
        reg = json_pack("{s:s, s:s, s:b, s:o, s:o}", "addr", c->redis, "prefix", c->prefix, "ok",
                        f->reg_ok, "error", f->reg_ok ? json_null() : json_string(f->reg_err),
                        "workers", f->reg_ok ? json_integer((json_int_t)f->reg.n) : json_null());
    for (size_t i = 0; bes && warn && i < f->nbes; i++) {
        json_t *b = ctl_show_be(f, &f->bes[i]);
        json_t *bw = json_object_get(b, "warnings"), *v;
        size_t k;
        json_array_foreach(bw, k, v) json_array_append(warn, v);
        json_array_append_new(bes, b);
    }
    json_t *root = json_pack("{s:o, s:o, s:o, s:o}", "lbs", lbs, "redis", reg, "backends", bes,
                             "warnings", warn);
    char *txt = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    int rc = txt && buf_append_str(out, txt) == 0 && buf_append_str(out, "\n") == 0 ? 0 : -1;
    free(txt);
    json_decref(root);
    return rc;
}
