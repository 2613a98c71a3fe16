/* rdo: the Redis flags both daemons take (see rdo.h). */
#include "rdo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The list's items joined with commas (each may hold commas itself). */
static char *rdo_join(const cfg_list_t *l)
{
    size_t n = 1;
    for (size_t i = 0; i < l->n; i++)
        n += strlen(l->v[i]) + 1;
    char *s = calloc(1, n);
    for (size_t i = 0; s != NULL && i < l->n; i++) {
        if (i > 0)
            strcat(s, ",");
        strcat(s, l->v[i]);
    }
    return s;
}

/* Copies s into *dst; 0, or -1 when out of memory. */
static int rdo_dup(const char **dst, const char *s)
{
    *dst = NULL;
    return s == NULL || (*dst = strdup(s)) != NULL ? 0 : -1;
}

/* Which combination is wrong, or NULL. */
static const char *rdo_check(const char *addr, const rdo_t *o)
{
    int sentinel = o->sentinels.n > 0;
    if (addr != NULL && sentinel)
        return "--redis and --redis-sentinel exclude each other";
    if (sentinel && o->master == NULL)
        return "--redis-sentinel needs --redis-master NAME";
    if (!sentinel && (o->master || o->sentinel_user || o->sentinel_password_file))
        return "--redis-master and --redis-sentinel-* need --redis-sentinel";
    if (addr == NULL && !sentinel && (o->user || o->password_file))
        return "--redis-user and --redis-password-file need --redis or --redis-sentinel";
    if (o->user != NULL && o->password_file == NULL)
        return "--redis-user needs --redis-password-file";
    if (o->sentinel_user != NULL && o->sentinel_password_file == NULL)
        return "--redis-sentinel-user needs --redis-sentinel-password-file";
    return NULL;
}

int rdo_config(const char *addr, const rdo_t *o, rds_config_t *cfg, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    if (addr != NULL && *addr == '\0')
        addr = NULL;
    const char *bad = rdo_check(addr, o);
    if (bad != NULL) {
        snprintf(err, errlen, "%s", bad);
        return -1;
    }
    if (addr == NULL && o->sentinels.n == 0)
        return 0;
    if (o->sentinels.n > 0 && (cfg->sentinels = rdo_join(&o->sentinels)) == NULL)
        goto nomem;
    if (rdo_dup(&cfg->addr, addr) < 0 || rdo_dup(&cfg->master, o->master) < 0 ||
        rdo_dup(&cfg->user, o->user) < 0 || rdo_dup(&cfg->sentinel_user, o->sentinel_user) < 0)
        goto nomem;
    if (o->password_file != NULL &&
        (cfg->password = cfg_read_secret("--redis-password-file", o->password_file, err, errlen)) ==
            NULL)
        goto fail;
    if (o->sentinel_password_file != NULL &&
        (cfg->sentinel_password = cfg_read_secret("--redis-sentinel-password-file",
                                                  o->sentinel_password_file, err, errlen)) == NULL)
        goto fail;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
fail:
    rdo_clear(cfg);
    return -1;
}

static void rdo_wipe(const char *s)
{
    if (s != NULL) {
        explicit_bzero((char *)s, strlen(s));
        free((char *)s);
    }
}

void rdo_clear(rds_config_t *cfg)
{
    rdo_wipe(cfg->addr);
    rdo_wipe(cfg->sentinels);
    rdo_wipe(cfg->master);
    rdo_wipe(cfg->user);
    rdo_wipe(cfg->password);
    rdo_wipe(cfg->sentinel_user);
    rdo_wipe(cfg->sentinel_password);
    memset(cfg, 0, sizeof(*cfg));
}
