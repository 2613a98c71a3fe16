/* sen: what Redis Sentinels say, parsed: the addresses of a Sentinel list,
 * the answer to SENTINEL get-master-addr-by-name, +switch-master messages
 * and the SENTINEL sentinels listing. Pure functions (no I/O), so that rds
 * stays about connections and every reply shape is tested on its own. */
#ifndef COMMON_SEN_H
#define COMMON_SEN_H

#include <stddef.h>

#include "sock.h"

struct redisReply;

/* Master names are at most this long, terminator included. */
#define SEN_NAME_MAX 256

/* One Redis or Sentinel address, ready for redisAsyncConnect. */
typedef struct sen_addr {
    char host[SOCK_ADDRSTRLEN]; /* numeric, without brackets */
    int port;                   /* 1..65535 */
    char str[SOCK_ADDRSTRLEN];  /* "1.2.3.4:26379" or "[::1]:26379" */
} sen_addr_t;

/* A master name Sentinel can have: no blanks or control characters. */
int sen_name_ok(const char *name);
/* "HOST:PORT" (numeric, see sock_parse_addr; port 0 refused). 0, or -1 with err. */
int sen_addr_parse(sen_addr_t *out, const char *s, char *err, size_t errlen);
/* A host and a port as Sentinel sends them, apart ("::1" and "6379"). 0 or -1. */
int sen_addr_from(sen_addr_t *out, const char *host, const char *port);
/* "HOST:PORT[,HOST:PORT...]", blanks around items allowed, into out[max].
 * Returns how many (at least 1), or -1 with err. */
int sen_list_parse(const char *list, sen_addr_t *out, size_t max, char *err, size_t errlen);
/* The answer to SENTINEL get-master-addr-by-name: 0 with the master in out,
 * or -1 with why (a constant, or the error reply's text). */
int sen_master_reply(const struct redisReply *reply, sen_addr_t *out, const char **why);
/* A +switch-master payload, "<name> <old ip> <old port> <new ip> <new port>":
 * 1 with the new master in out when it is about master, 0 when it is about
 * another one, -1 when it is malformed. */
int sen_switch_msg(const char *msg, const char *master, sen_addr_t *out);
/* The reply to SENTINEL sentinels (one flat field/value array per Sentinel):
 * the usable addresses into out[max]; returns how many. */
size_t sen_sentinels_reply(const struct redisReply *reply, sen_addr_t *out, size_t max);

#endif
