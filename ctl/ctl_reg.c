/* ctl_reg: the worker registry in Redis (see ctl_reg.h). */
#include "ctl_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "ctl_net.h"
#include "fleet.h"

int ctl_reg_parse(const char *json, size_t len, ctl_regw_t *w)
{
    w->err[0] = '\0';
    if (fleet_state_parse(json, len, NULL, &w->s, w->err, sizeof(w->err)) == 0)
        return 0;
    if (w->err[0] == '\0')
        snprintf(w->err, sizeof(w->err), "unusable state");
    return -1;
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
        if (ctl_reg_parse(v->str, v->len, w) == 0 && strcmp(w->s.id, w->id) != 0)
            snprintf(w->err, sizeof(w->err), "its state names id '%.60s'", w->s.id);
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
