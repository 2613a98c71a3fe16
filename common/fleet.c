/* fleet: the lb/worker contract (see fleet.h). */
#include "fleet.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* ---- ids ------------------------------------------------------------------ */

static int fleet_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

int fleet_id_ok(const char *p, size_t n)
{
    if (n == 0 || n > FLEET_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!fleet_id_char(p[i]))
            return 0;
    return 1;
}

char *fleet_id_default(const char *host, long pid, char *out, size_t outlen)
{
    char suffix[24];
    int sn = snprintf(suffix, sizeof(suffix), "-%ld", pid);
    size_t hn = strlen(host);
    if (outlen == 0)
        return out;
    if (hn == 0) {
        host = "lb";
        hn = 2;
    }
    if (fleet_id_ok(host, hn) && hn + (size_t)sn <= FLEET_ID_MAX) {
        snprintf(out, outlen, "%s%s", host, suffix);
        return out;
    }
    /* FNV-1a of the whole name: a cut name keeps what told it apart. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < hn; i++)
        h = (h ^ (unsigned char)host[i]) * 16777619u;
    size_t keep = FLEET_ID_MAX - (size_t)sn - 7; /* "-" and 6 hex digits */
    if (keep > hn)
        keep = hn;
    if (keep >= outlen)
        keep = outlen - 1;
    for (size_t i = 0; i < keep; i++)
        out[i] = fleet_id_char(host[i]) ? host[i] : '-';
    snprintf(out + keep, outlen - keep, "-%06x%s", (unsigned)(h & 0xffffff), suffix);
    return out;
}

/* ---- Redis ---------------------------------------------------------------- */

static size_t fleet_key(const char *prefix, const char *name, const char *id, size_t idlen,
                        char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s%s%.*s", prefix ? prefix : FLEET_DEFAULT_PREFIX, name, (int)idlen,
                     id ? id : "");
    return n < 0 ? 0 : (size_t)n;
}

size_t fleet_key_workers(const char *prefix, char *buf, size_t len)
{
    return fleet_key(prefix, "workers", NULL, 0, buf, len);
}

size_t fleet_key_worker(const char *prefix, const char *id, size_t idlen, char *buf, size_t len)
{
    return fleet_key(prefix, "worker:", id, idlen, buf, len);
}

size_t fleet_key_events(const char *prefix, char *buf, size_t len)
{
    return fleet_key(prefix, "events", NULL, 0, buf, len);
}

size_t fleet_key_rebalance(const char *prefix, uint64_t unix_s, char *buf, size_t len)
{
    char sec[24];
    int n = snprintf(sec, sizeof(sec), "%llu", (unsigned long long)unix_s);
    return fleet_key(prefix, "rebalance:", sec, (size_t)n, buf, len);
}

int64_t fleet_rebalance_granted(int64_t rate, int64_t want, int64_t after)
{
    /* A counter below what was just added to it, or past any real count,
     * is not Redis's answer to INCRBY: grant nothing (and do no arithmetic
     * on it that could overflow). */
    if (want <= 0 || rate <= 0 || after < want || after > FLEET_MAX_COUNT)
        return 0;
    int64_t before = after - want, left = rate - before;
    if (left <= 0)
        return 0;
    return left < want ? left : want;
}

/* 1 to max-1 bytes, none of them a control character: safe to log and to
 * show in a table, and it fits a buffer of max bytes. */
static int fleet_text_ok(const char *p, size_t n, size_t max)
{
    if (n == 0 || n >= max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

int fleet_worker_id_ok(const char *p, size_t n)
{
    return fleet_text_ok(p, n, FLEET_WORKER_ID_LEN);
}

/* A JSON string that passes fleet_text_ok for dst's size, copied into dst. */
static int fleet_json_text(json_t *v, char *dst, size_t max)
{
    if (!json_is_string(v) || !fleet_text_ok(json_string_value(v), json_string_length(v), max))
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static const char *const fleet_event_names[] = {"join", "drain", "leave"};

const char *fleet_event_name(enum fleet_event_type t)
{
    return (unsigned)t < 3 ? fleet_event_names[t] : "?";
}

char *fleet_event_to_json(const fleet_event_t *e)
{
    json_t *j = json_pack("{s:s, s:s}", "event", fleet_event_name(e->type), "id", e->id);
    if (j != NULL && e->addr[0] && json_object_set_new(j, "addr", json_string(e->addr)) < 0) {
        json_decref(j);
        j = NULL;
    }
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

int fleet_event_parse(const char *json, size_t len, fleet_event_t *out, char *err, size_t errlen)
{
    char dummy[1];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    int rc = -1;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    memset(out, 0, sizeof(*out));
    if (!root) {
        snprintf(err, errlen, "not JSON: %s", jerr.text);
        return -1;
    }
    const char *ev = json_string_value(json_object_get(root, "event"));
    json_t *addr = json_object_get(root, "addr");
    size_t k = 0;
    while (ev && k < 3 && strcmp(ev, fleet_event_names[k]) != 0)
        k++;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "not a JSON object");
    } else if (!ev || k == 3) {
        snprintf(err, errlen, "bad or missing event");
    } else if (fleet_json_text(json_object_get(root, "id"), out->id, sizeof(out->id)) < 0) {
        snprintf(err, errlen, "bad or missing id");
    } else if (addr && fleet_json_text(addr, out->addr, sizeof(out->addr)) < 0) {
        snprintf(err, errlen, "bad addr");
    } else {
        out->type = (enum fleet_event_type)k;
        rc = 0;
    }
    json_decref(root);
    return rc;
}

/* ---- the worker's state ------------------------------------------------------ */

const char *fleet_state_name(const fleet_state_t *s)
{
    return s->draining ? "draining" : "up";
}

/* Adds k: v to j (taking v, even on failure); 1 on failure. */
static int fleet_put(json_t *j, const char *k, json_t *v)
{
    if (j == NULL || v == NULL) {
        json_decref(v);
        return 1;
    }
    return json_object_set_new(j, k, v) < 0;
}

static json_t *fleet_int(int64_t v)
{
    return json_integer((json_int_t)v);
}

/* by_lb as an object, in the order of the array. */
static json_t *fleet_by_lb_json(const fleet_state_t *s)
{
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < s->nlbs && i < FLEET_MAX_LBS; i++)
        if (fleet_put(o, s->by_lb[i].id, fleet_int(s->by_lb[i].n))) {
            json_decref(o);
            o = NULL;
        }
    return o;
}

/* The optional fields other than by_lb, in the order they are written. */
enum fleet_kind { FLEET_COUNT, FLEET_TIME, FLEET_TEXT };

static const struct fleet_field {
    const char *name;
    unsigned bit;
    enum fleet_kind kind;
    size_t off;  /* in fleet_state_t: int64_t, uint64_t or char[size] */
    size_t size; /* FLEET_TEXT */
} fleet_fields[] = {
#define F(name, bit, kind, size)                                                                   \
    {                                                                                              \
#name, bit, kind, offsetof(fleet_state_t, name), size                                      \
    }
    F(evals_running, FLEET_HAS_EVALS_RUNNING, FLEET_COUNT, 0),
    F(evals_queued, FLEET_HAS_EVALS_QUEUED, FLEET_COUNT, 0),
    F(max_evals, FLEET_HAS_MAX_EVALS, FLEET_COUNT, 0),
    F(load, FLEET_HAS_LOAD, FLEET_COUNT, 0),
    F(ts_ms, FLEET_HAS_TS, FLEET_TIME, 0),
    F(started_ms, FLEET_HAS_STARTED, FLEET_TIME, 0),
    F(isolation, FLEET_HAS_ISOLATION, FLEET_TEXT, FLEET_ISOLATION_LEN),
    F(version, FLEET_HAS_VERSION, FLEET_TEXT, FLEET_VERSION_LEN),
    F(slots_broken, FLEET_HAS_SLOTS_BROKEN, FLEET_COUNT, 0),
    F(rebalance_shed, FLEET_HAS_REBALANCE_SHED, FLEET_COUNT, 0),
#undef F
};
#define FLEET_NFIELDS (sizeof(fleet_fields) / sizeof(fleet_fields[0]))

static json_t *fleet_field_json(const struct fleet_field *f, const fleet_state_t *s)
{
    const char *p = (const char *)s + f->off;
    if (f->kind == FLEET_TEXT)
        return json_string(p);
    if (f->kind == FLEET_TIME)
        return fleet_int((int64_t) * (const uint64_t *)p);
    return fleet_int(*(const int64_t *)p);
}

char *fleet_state_to_json(const fleet_state_t *s)
{
    json_t *j = json_object();
    int bad = fleet_put(j, "id", json_string(s->id));
    bad |= fleet_put(j, "addr", json_string(s->addr));
    bad |= fleet_put(j, "state", json_string(fleet_state_name(s)));
    bad |= fleet_put(j, "conns", fleet_int(s->conns));
    for (size_t i = 0; i < FLEET_NFIELDS; i++)
        if (s->has & fleet_fields[i].bit)
            bad |= fleet_put(j, fleet_fields[i].name, fleet_field_json(&fleet_fields[i], s));
    if (s->has & FLEET_HAS_BY_LB)
        bad |= fleet_put(j, "by_lb", fleet_by_lb_json(s));
    char *out = bad ? NULL : json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return out;
}

/* A count: 1 when v is an integer in 0..FLEET_MAX_COUNT, 0 when v is
 * absent, -1 otherwise. */
static int fleet_count(json_t *v, int64_t *out)
{
    *out = 0;
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > FLEET_MAX_COUNT)
        return -1;
    *out = json_integer_value(v);
    return 1;
}

/* One optional field from v (not NULL) into s; -1 when it breaks its rule. */
static int fleet_field_parse(const struct fleet_field *f, json_t *v, fleet_state_t *s)
{
    char *p = (char *)s + f->off;
    if (f->kind == FLEET_TEXT)
        return fleet_json_text(v, p, f->size);
    if (f->kind == FLEET_COUNT)
        return fleet_count(v, (int64_t *)p) > 0 ? 0 : -1;
    /* a time in milliseconds: any non-negative integer */
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *(uint64_t *)p = (uint64_t)json_integer_value(v);
    return 0;
}

/* id, addr and state: who the worker is, where, and whether it takes new
 * websockets. */
static int fleet_parse_ident(json_t *root, fleet_state_t *out, char *err, size_t errlen)
{
    json_t *addr = json_object_get(root, "addr"), *state = json_object_get(root, "state");
    char aerr[SOCK_ERR_LEN], host[SOCK_ADDRSTRLEN];
    if (fleet_json_text(json_object_get(root, "id"), out->id, sizeof(out->id)) < 0) {
        snprintf(err, errlen, "bad or missing id");
        return -1;
    }
    if (!json_is_string(addr) || json_string_length(addr) >= sizeof(out->addr) ||
        sock_parse_addr(json_string_value(addr), &out->sa, aerr, sizeof(aerr)) < 0) {
        snprintf(err, errlen, "bad or missing addr");
        return -1;
    }
    /* A wildcard or port 0 names no reachable worker. */
    sock_addr_host(&out->sa, host, sizeof(host));
    sock_addr_str(&out->sa, out->addr, sizeof(out->addr));
    size_t alen = strlen(out->addr);
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
        (alen >= 2 && strcmp(out->addr + alen - 2, ":0") == 0)) {
        snprintf(err, errlen, "addr '%s' is not a reachable worker address", out->addr);
        return -1;
    }
    if (!json_is_string(state)) {
        snprintf(err, errlen, "bad or missing state");
        return -1;
    }
    if (strcmp(json_string_value(state), "draining") == 0) {
        out->draining = 1;
    } else if (strcmp(json_string_value(state), "up") != 0) {
        snprintf(err, errlen, "unknown state '%.32s'", json_string_value(state));
        return -1;
    }
    return 0;
}

/* conns and the optional fields besides by_lb. */
static int fleet_parse_figures(json_t *root, fleet_state_t *out, char *err, size_t errlen)
{
    if (fleet_count(json_object_get(root, "conns"), &out->conns) <= 0) {
        snprintf(err, errlen, "bad or missing conns");
        return -1;
    }
    for (size_t i = 0; i < FLEET_NFIELDS; i++) {
        const struct fleet_field *f = &fleet_fields[i];
        json_t *v = json_object_get(root, f->name);
        if (v == NULL)
            continue;
        if (fleet_field_parse(f, v, out) < 0) {
            snprintf(err, errlen, "bad %s", f->name);
            return -1;
        }
        out->has |= f->bit;
    }
    if (!(out->has & FLEET_HAS_LOAD))
        out->load = out->evals_running + out->evals_queued;
    return 0;
}

/* by_lb: connections per lb id, and lb_id's own into out->mine. */
static int fleet_parse_by_lb(json_t *root, const char *lb_id, fleet_state_t *out, char *err,
                             size_t errlen)
{
    json_t *bylb = json_object_get(root, "by_lb");
    out->mine = -1;
    if (bylb == NULL)
        return 0;
    if (!json_is_object(bylb)) {
        snprintf(err, errlen, "bad by_lb");
        return -1;
    }
    if (json_object_size(bylb) > FLEET_MAX_LBS) {
        snprintf(err, errlen, "by_lb lists more than %d lbs", FLEET_MAX_LBS);
        return -1;
    }
    out->has |= FLEET_HAS_BY_LB;
    if (lb_id != NULL)
        out->mine = 0; /* listed others, not us: none of ours */
    for (void *it = json_object_iter(bylb); it != NULL; it = json_object_iter_next(bylb, it)) {
        const char *k = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        fleet_lb_count_t *c = &out->by_lb[out->nlbs];
        if (!fleet_id_ok(k, klen)) {
            snprintf(err, errlen, "bad by_lb id");
            return -1;
        }
        if (fleet_count(json_object_iter_value(it), &c->n) <= 0) {
            snprintf(err, errlen, "bad by_lb count");
            return -1;
        }
        memcpy(c->id, k, klen + 1);
        out->nlbs++;
        if (lb_id != NULL && strcmp(c->id, lb_id) == 0)
            out->mine = c->n;
    }
    return 0;
}

int fleet_state_parse(const char *json, size_t len, const char *lb_id, fleet_state_t *out,
                      char *err, size_t errlen)
{
    char dummy[1];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    memset(out, 0, sizeof(*out));
    out->mine = -1;
    if (!root) {
        snprintf(err, errlen, "not JSON: %s", jerr.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root))
        snprintf(err, errlen, "not a JSON object");
    else if (fleet_parse_ident(root, out, err, errlen) == 0 &&
             fleet_parse_figures(root, out, err, errlen) == 0 &&
             fleet_parse_by_lb(root, lb_id, out, err, errlen) == 0)
        rc = 0;
    json_decref(root);
    return rc;
}

/* ---- time ----------------------------------------------------------------- */

uint64_t fleet_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
