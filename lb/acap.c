/* acap: admission to the admin API's connections (see acap.h). A few dozen
 * connections at most, so every decision is a plain scan. */
#include "acap.h"

#include <netinet/in.h>
#include <string.h>

static int acap_same(const acap_peer_t *a, const acap_peer_t *b)
{
    return memcmp(a->key.b, b->key.b, sizeof(a->key.b)) == 0;
}

/* Connections of k's address in a state that may be displaced (idle, or
 * answering with answering set). */
static size_t acap_count(const acap_peer_t *const *open, size_t n, const acap_peer_t *k,
                         int answering)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (acap_same(open[i], k) &&
            (open[i]->state == ACAP_IDLE || (answering && open[i]->state == ACAP_ANSWERING)))
            c++;
    return c;
}

/* The oldest connection in `state` that pred accepts; -1 if none. */
static long acap_oldest(const acap_peer_t *const *open, size_t n, int state,
                        int (*pred)(const acap_peer_t *p, const acap_peer_t *arg),
                        const acap_peer_t *arg)
{
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        if (open[i]->state != state || (pred && !pred(open[i], arg)))
            continue;
        if (best < 0 || open[i]->seq < open[(size_t)best]->seq)
            best = (long)i;
    }
    return best;
}

static int acap_pred_same(const acap_peer_t *p, const acap_peer_t *arg)
{
    return acap_same(p, arg);
}

static int acap_pred_remote(const acap_peer_t *p, const acap_peer_t *arg)
{
    return !p->loopback;
}

/* Of the connections in `state`, the oldest of the address that holds the
 * most displaceable ones, if that is more than the newcomer's address
 * holds; -1 if none. */
static long acap_heaviest(const acap_peer_t *const *open, size_t n, int state,
                          const acap_peer_t *newcomer)
{
    int answering = state == ACAP_ANSWERING;
    size_t mine = acap_count(open, n, newcomer, answering), most = 0;
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        if (open[i]->state != state)
            continue;
        size_t c = acap_count(open, n, open[i], answering);
        if (c > most || (c == most && best >= 0 && open[i]->seq < open[(size_t)best]->seq)) {
            most = c;
            best = (long)i;
        }
    }
    return best >= 0 && most > mine ? best : -1;
}

enum acap_verdict acap_admit(const acap_limits_t *lim, const acap_peer_t *const *open, size_t n,
                             const acap_peer_t *newcomer, size_t *victim)
{
    long v = -1;
    size_t held = 0;
    for (size_t i = 0; i < n; i++)
        held += acap_same(open[i], newcomer);
    if (held >= lim->per_addr) {
        /* Its own oldest answered or idle one makes way, nobody else's. */
        v = acap_oldest(open, n, ACAP_DONE, acap_pred_same, newcomer);
        if (v < 0)
            v = acap_oldest(open, n, ACAP_IDLE, acap_pred_same, newcomer);
    } else if (n < lim->max_conns) {
        return ACAP_ADMIT;
    } else {
        v = acap_oldest(open, n, ACAP_DONE, NULL, NULL);
        if (v < 0 && newcomer->loopback)
            v = acap_oldest(open, n, ACAP_IDLE, acap_pred_remote, NULL);
        if (v < 0)
            v = acap_heaviest(open, n, ACAP_IDLE, newcomer);
        if (v < 0)
            v = acap_heaviest(open, n, ACAP_ANSWERING, newcomer);
    }
    if (v < 0)
        return ACAP_REFUSE;
    *victim = (size_t)v;
    return ACAP_EVICT;
}

int acap_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}
