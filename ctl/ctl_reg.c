/* ctl_reg: the worker registry in Redis (see ctl_reg.h). */
#include "ctl_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "ctl_net.h"
#include "fleet.h"

/* A printable string of at most max-1 bytes into dst; 0 or -1. */
static int ctl_reg_str(json_t *root, const char *name, char *dst, size_t max, int required)
{
    json_t *v = json_object_get(root, name);
    if (v == NULL)
        return required ? -1 : 0;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= max)
        return -1;
    const char *s = json_string_value(v);
    for (size_t i = 0; i < json_string_length(v); i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -1;
    memcpy(dst, s, json_string_length(v) + 1);
    return 0;
}

static int ctl_reg_int(json_t *root, const char *name, int64_t *out)
{
    json_t *v = json_object_get(root, name);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

int ctl_reg_parse(const char *json, size_t len, ctl_regw_t *w)
{
    char id[CTL_ID_MAX];
    memcpy(id, w->id, sizeof(id)); /* the caller may have set it from the set */
    memset(w, 0, sizeof(*w));
    memcpy(w->id, id, sizeof(id));
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    int64_t ts = 0, st = 0;
    const char *bad = NULL;
    if (root == NULL || !json_is_object(root))
        bad = "not a JSON object";
    else if (ctl_reg_str(root, "id", w->id, sizeof(w->id), 1) < 0)
        bad = "bad or missing id";
    else if (ctl_reg_str(root, "addr", w->addr, sizeof(w->addr), 1) < 0)
        bad = "bad or missing addr";
    else if (ctl_reg_str(root, "state", w->state, sizeof(w->state), 1) < 0 ||
             (strcmp(w->state, "up") != 0 && strcmp(w->state, "draining") != 0))
        bad = "bad or missing state";
    else if (ctl_reg_int(root, "conns", &w->conns) < 0 ||
             ctl_reg_int(root, "evals_running", &w->evals_running) < 0 ||
             ctl_reg_int(root, "evals_queued", &w->evals_queued) < 0 ||
             ctl_reg_int(root, "max_evals", &w->max_evals) < 0 ||
             ctl_reg_int(root, "ts_ms", &ts) < 0 || ctl_reg_int(root, "started_ms", &st) < 0)
        bad = "a count or time is not a non-negative integer";
    else if (ctl_reg_str(root, "version", w->version, sizeof(w->version), 0) < 0)
        bad = "bad version";
    w->ts_ms = (uint64_t)ts;
    w->started_ms = (uint64_t)st;
    if (bad)
        snprintf(w->err, sizeof(w->err), "%s", bad);
    json_decref(root);
    return bad ? -1 : 0;
}

void ctl_reg_free(ctl_reg_t *r)
{
    if (r == NULL)
        return;
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

static int ctl_reg_cmp(const void *a, const void *b)
{
    return strverscmp(((const ctl_regw_t *)a)->id, ((const ctl_regw_t *)b)->id);
}

/* MGET of every member's state key into out. */
static int ctl_reg_states(redisContext *c, const char *prefix, redisReply *members, ctl_reg_t *out,
                          char *err, size_t errlen)
{
    size_t n = members->elements;
    const char **argv = calloc(n + 1, sizeof(*argv));
    size_t *argl = calloc(n + 1, sizeof(*argl));
    char **keys = calloc(n + 1, sizeof(*keys));
    redisReply *vals = NULL;
    int rc = -1;
    out->v = calloc(n ? n : 1, sizeof(*out->v));
    if (!argv || !argl || !keys || !out->v) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    argv[0] = "MGET";
    argl[0] = 4;
    for (size_t i = 0; i < n; i++) {
        redisReply *e = members->element[i];
        size_t kl =
            e->type == REDIS_REPLY_STRING ? fleet_key_worker(prefix, e->str, e->len, NULL, 0) : 0;
        if (e->type != REDIS_REPLY_STRING || (keys[i] = malloc(kl + 1)) == NULL) {
            snprintf(err, errlen, "unexpected member in the workers set");
            goto done;
        }
        fleet_key_worker(prefix, e->str, e->len, keys[i], kl + 1);
        argv[i + 1] = keys[i];
        argl[i + 1] = kl;
    }
    vals = redisCommandArgv(c, (int)n + 1, argv, argl);
    if (vals == NULL || vals->type != REDIS_REPLY_ARRAY || vals->elements != n) {
        snprintf(err, errlen, "MGET: %s", vals == NULL ? c->errstr : "unexpected reply");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *v = vals->element[i];
        if (v->type != REDIS_REPLY_STRING)
            continue; /* left (or expired): not a member any more */
        ctl_regw_t *w = &out->v[out->n++];
        snprintf(w->id, sizeof(w->id), "%.*s", (int)members->element[i]->len,
                 members->element[i]->str);
        char want[CTL_ID_MAX];
        memcpy(want, w->id, sizeof(want));
        if (ctl_reg_parse(v->str, v->len, w) == 0 && strcmp(w->id, want) != 0) {
            snprintf(w->err, sizeof(w->err), "its state names id '%.60s'", w->id);
            memcpy(w->id, want, sizeof(want));
        }
    }
    qsort(out->v, out->n, sizeof(*out->v), ctl_reg_cmp);
    rc = 0;
done:
    if (vals)
        freeReplyObject(vals);
    for (size_t i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
    free(argv);
    free(argl);
    if (rc < 0)
        ctl_reg_free(out);
    return rc;
}

int ctl_reg_read(const char *hostport, const char *prefix, double timeout_s, ctl_reg_t *out,
                 char *err, size_t errlen)
{
    char host[256], port[8], serr[200], set[256];
    memset(out, 0, sizeof(*out));
    if (prefix == NULL)
        prefix = FLEET_DEFAULT_PREFIX;
    if (fleet_key_workers(prefix, set, sizeof(set)) >= sizeof(set)) {
        snprintf(err, errlen, "--redis-prefix: too long");
        return -1;
    }
    if (ctl_net_split(hostport, host, sizeof(host), port, sizeof(port), serr, sizeof(serr)) < 0) {
        snprintf(err, errlen, "--redis: %s", serr);
        return -1;
    }
    struct timeval tv = {.tv_sec = (long)timeout_s,
                         .tv_usec = (long)((timeout_s - (long)timeout_s) * 1e6)};
    redisContext *c = redisConnectWithTimeout(host, atoi(port), tv);
    redisReply *members = NULL;
    int rc = -1;
    if (c == NULL || c->err) {
        snprintf(err, errlen, "cannot reach it: %s", c ? c->errstr : "out of memory");
        goto done;
    }
    redisSetTimeout(c, tv);
    members = redisCommand(c, "SMEMBERS %s", set);
    if (members == NULL || members->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "SMEMBERS %s: %s", set,
                 members == NULL                      ? c->errstr
                 : members->type == REDIS_REPLY_ERROR ? members->str
                                                      : "not a set");
        goto done;
    }
    rc = members->elements == 0 ? 0 : ctl_reg_states(c, prefix, members, out, err, errlen);
done:
    if (members)
        freeReplyObject(members);
    if (c)
        redisFree(c);
    return rc;
}
