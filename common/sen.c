/* sen: what Redis Sentinels say, parsed (see sen.h). */
#include "sen.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

int sen_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= SEN_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] <= 0x20 || name[i] == 0x7f)
            return 0;
    return 1;
}

int sen_addr_parse(sen_addr_t *out, const char *s, char *err, size_t errlen)
{
    sock_addr_t a;
    if (sock_parse_addr(s, &a, err, errlen) < 0)
        return -1;
    sock_addr_host(&a, out->host, sizeof(out->host));
    sock_addr_str(&a, out->str, sizeof(out->str));
    out->port = a.ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
    if (out->port == 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "'%s': port 0 is not a Redis port", s);
        return -1;
    }
    return 0;
}

int sen_addr_from(sen_addr_t *out, const char *host, const char *port)
{
    char s[2 * SOCK_ADDRSTRLEN];
    if (strlen(host) >= SOCK_ADDRSTRLEN || strlen(port) > 5 || strchr(host, '[') != NULL)
        return -1;
    snprintf(s, sizeof(s), strchr(host, ':') != NULL ? "[%s]:%s" : "%s:%s", host, port);
    return sen_addr_parse(out, s, NULL, 0);
}

int sen_list_parse(const char *list, sen_addr_t *out, size_t max, char *err, size_t errlen)
{
    size_t n = 0;
    for (const char *p = list; *p != '\0';) {
        size_t len = strcspn(p, ",");
        const char *s = p;
        p += len + (p[len] == ',');
        while (len > 0 && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 0)
            continue;
        char item[SOCK_ADDRSTRLEN + 8];
        if (n == max || len >= sizeof(item)) {
            snprintf(err, errlen, "Sentinel list: %s",
                     n == max ? "too many addresses" : "address too long");
            return -1;
        }
        memcpy(item, s, len);
        item[len] = '\0';
        if (sen_addr_parse(&out[n], item, err, errlen) < 0)
            return -1;
        n++;
    }
    if (n == 0)
        snprintf(err, errlen, "Sentinel list: no address");
    return n > 0 ? (int)n : -1;
}

int sen_master_reply(const struct redisReply *reply, sen_addr_t *out, const char **why)
{
    if (reply->type == REDIS_REPLY_ERROR)
        *why = reply->str;
    else if (reply->type == REDIS_REPLY_NIL)
        *why = "it does not know that name";
    else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
             reply->element[0]->type != REDIS_REPLY_STRING ||
             reply->element[1]->type != REDIS_REPLY_STRING)
        *why = "not an address";
    else if (sen_addr_from(out, reply->element[0]->str, reply->element[1]->str) < 0)
        *why = "not a numeric address";
    else
        return 0;
    return -1;
}

int sen_switch_msg(const char *msg, const char *master, sen_addr_t *out)
{
    char name[SEN_NAME_MAX], oip[SOCK_ADDRSTRLEN], oport[8], nip[SOCK_ADDRSTRLEN], nport[8],
        rest[2];
    int n = sscanf(msg, "%255s %63s %7s %63s %7s %1s", name, oip, oport, nip, nport, rest);
    if (n < 1)
        return -1;
    if (strcmp(name, master) != 0)
        return 0;
    return n == 5 && sen_addr_from(out, nip, nport) == 0 ? 1 : -1;
}

size_t sen_sentinels_reply(const struct redisReply *reply, sen_addr_t *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements && n < max; i++) {
        const redisReply *e = reply->element[i];
        const char *ip = NULL, *port = NULL;
        for (size_t k = 0; e->type == REDIS_REPLY_ARRAY && k + 1 < e->elements; k += 2) {
            const redisReply *f = e->element[k], *v = e->element[k + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(f->str, "ip") == 0)
                ip = v->str;
            else if (strcmp(f->str, "port") == 0)
                port = v->str;
        }
        if (ip != NULL && port != NULL && sen_addr_from(&out[n], ip, port) == 0)
            n++;
    }
    return n;
}
