/* rdo: the Redis flags both daemons take, defined once so that they mean the
 * same to both: --redis-sentinel, --redis-master, --redis-user,
 * --redis-password-file, --redis-sentinel-user and
 * --redis-sentinel-password-file (each daemon describes --redis HOST:PORT
 * itself). rdo_config() checks their combination, reads the password files
 * and turns them into an rds_config_t. */
#ifndef COMMON_RDO_H
#define COMMON_RDO_H

#include <stddef.h>

#include "cfg.h"
#include "rds.h"

/* Destinations of RDO_CFG_OPTS. */
typedef struct rdo {
    cfg_list_t sentinels;
    char *master, *user, *password_file, *sentinel_user, *sentinel_password_file;
} rdo_t;

/* The cfg_opt_t entries for rdo_t *o, to splice into an option table. */
/* clang-format off */
#define RDO_CFG_OPTS(o)                                                                            \
    {"redis-sentinel", CFG_LIST, &(o)->sentinels, "HOST:PORT[,HOST:PORT...]",                      \
     "ask these Redis Sentinels for the master (instead of --redis)", 0, 0},           \
    {"redis-master", CFG_STR, &(o)->master, "NAME",                                                \
     "with --redis-sentinel: the master's name at the Sentinels", 0, 0},                           \
    {"redis-user", CFG_STR, &(o)->user, "NAME",                                                    \
     "Redis ACL user (default: the default user)", 0, 0},                                          \
    {"redis-password-file", CFG_STR, &(o)->password_file, "FILE",                                  \
     "AUTH to Redis with the file's first line", 0, 0},                                            \
    {"redis-sentinel-user", CFG_STR, &(o)->sentinel_user, "NAME",                                  \
     "ACL user on the Sentinels (default: their default user)", 0, 0},                             \
    {"redis-sentinel-password-file", CFG_STR, &(o)->sentinel_password_file, "FILE",                \
     "AUTH to the Sentinels with the file's first line (default: no AUTH)", 0, 0}
/* clang-format on */

/* Checks the combination of addr (--redis) and o, reads the password files
 * and fills cfg, whose strings it then owns: release them with rdo_clear().
 * cfg->addr and cfg->sentinels both NULL afterwards means no Redis. Returns
 * 0, or -1 with err. */
int rdo_config(const char *addr, const rdo_t *o, rds_config_t *cfg, char *err, size_t errlen);
/* Wipes the passwords and frees what rdo_config() allocated; cfg is zeroed. */
void rdo_clear(rds_config_t *cfg);

#endif
