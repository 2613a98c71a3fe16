/* cidr: lists of IPv4 and IPv6 networks ("10.0.0.0/8,::1,fd00::/8") and
 * whether a peer address falls in one, e.g. the lb's --trusted-proxies.
 *
 * Both families are held in one 16-byte form, IPv4 as ::ffff:a.b.c.d, so
 * that a v4-mapped peer on an IPv6 socket matches the IPv4 network it
 * belongs to. */
#ifndef COMMON_CIDR_H
#define COMMON_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct cidr {
    uint8_t net[16]; /* host bits cleared */
    unsigned bits;   /* prefix length over the 128-bit form */
} cidr_t;

typedef struct cidr_set {
    cidr_t *v;
    size_t n;
} cidr_set_t;

/* Parses one "ADDR[/BITS]" (a bare address is a /32 or /128). 0, or -1 with
 * err. */
int cidr_parse(const char *s, cidr_t *out, char *err, size_t errlen);
/* Adds every network of a comma-separated list (blanks around items are
 * ignored) to set, which starts as {0}. 0, or -1 with err (set unchanged
 * beyond entries already added). */
int cidr_set_add(cidr_set_t *set, const char *spec, char *err, size_t errlen);
/* Whether sa falls in one of the networks; 0 for a NULL or empty set and for
 * families other than IPv4/IPv6. */
int cidr_set_match(const cidr_set_t *set, const struct sockaddr *sa);
/* Frees the entries; the set becomes empty. */
void cidr_set_free(cidr_set_t *set);

/* The 16-byte form of sa's address (IPv4 mapped as above); -1 for families
 * other than IPv4/IPv6. */
int cidr_addr16(const struct sockaddr *sa, uint8_t out[16]);

#endif
