/* cidr: network lists and matching (see cidr.h). */
#include "cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cidr_addr16(const struct sockaddr *sa, uint8_t out[16])
{
    memset(out, 0, 16);
    if (sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

int cidr_parse(const char *s, cidr_t *c, char *err, size_t errlen)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    struct in_addr a4;
    struct in6_addr a6;
    unsigned maxbits, off;

    if (alen == 0 || alen >= sizeof(tmp))
        goto bad;
    memcpy(tmp, s, alen);
    tmp[alen] = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, tmp, &a4) == 1) {
        c->net[10] = c->net[11] = 0xff;
        memcpy(c->net + 12, &a4, 4);
        maxbits = 32;
        off = 96;
    } else if (inet_pton(AF_INET6, tmp, &a6) == 1) {
        memcpy(c->net, &a6, 16);
        maxbits = 128;
        off = 0;
    } else {
        goto bad;
    }
    unsigned bits = maxbits;
    if (slash != NULL) {
        char *end;
        errno = 0;
        long v = strtol(slash + 1, &end, 10);
        if (errno || *end || end == slash + 1 || v < 0 || v > (long)maxbits)
            goto bad;
        bits = (unsigned)v;
    }
    c->bits = off + bits;
    /* Clear host bits so matching is a plain prefix compare. */
    for (unsigned b = c->bits; b < 128; b++)
        c->net[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
    return 0;
bad:
    snprintf(err, errlen, "'%s' is not an address or ADDR/BITS network", s);
    return -1;
}

int cidr_set_add(cidr_set_t *set, const char *spec, char *err, size_t errlen)
{
    char *copy = strdup(spec), *save = NULL;
    int rc = -1;

    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int any = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t n = strlen(tok);
        while (n > 0 && tok[n - 1] == ' ')
            tok[--n] = '\0';
        if (n == 0)
            continue;
        cidr_t c;
        if (cidr_parse(tok, &c, err, errlen) < 0)
            goto out;
        cidr_t *v = realloc(set->v, (set->n + 1) * sizeof(*v));
        if (v == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        set->v = v;
        set->v[set->n++] = c;
        any = 1;
    }
    if (!any) {
        snprintf(err, errlen, "empty network list");
        goto out;
    }
    rc = 0;
out:
    free(copy);
    return rc;
}

int cidr_set_match(const cidr_set_t *set, const struct sockaddr *sa)
{
    uint8_t a[16];
    if (set == NULL || set->n == 0 || cidr_addr16(sa, a) < 0)
        return 0;
    for (size_t i = 0; i < set->n; i++) {
        const cidr_t *c = &set->v[i];
        unsigned full = c->bits / 8, rest = c->bits % 8;
        if (memcmp(a, c->net, full) != 0)
            continue;
        if (rest && ((a[full] ^ c->net[full]) & (uint8_t)(0xff00u >> rest)))
            continue;
        return 1;
    }
    return 0;
}

void cidr_set_free(cidr_set_t *set)
{
    free(set->v);
    set->v = NULL;
    set->n = 0;
}
