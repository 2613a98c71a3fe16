/* ct: comparing secrets (the upstream secret, the admin token) without
 * telling their contents through timing. */
#ifndef COMMON_CT_H
#define COMMON_CT_H

#include <stddef.h>

#include <openssl/crypto.h>

/* Whether got[0..gotlen) equals want[0..wantlen), want being the configured
 * secret. The time taken depends on wantlen alone (configured, not secret):
 * a guess of another length is answered after comparing want with itself,
 * so nothing about the secret's bytes leaks one at a time. */
static inline int ct_eq(const void *want, size_t wantlen, const void *got, size_t gotlen)
{
    const void *other = gotlen == wantlen ? got : want;
    int diff = CRYPTO_memcmp(want, other, wantlen);
    return (gotlen == wantlen) & (diff == 0);
}

#endif
