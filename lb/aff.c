/* aff: the ring, the key and the bound of session affinity (see aff.h). */
#include "aff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct aff_point {
    uint64_t h;
    uint32_t node;
};

struct aff_ring {
    struct aff_point *p; /* sorted by h */
    size_t np;
    size_t nodes;
};

static const char *const aff_kind_names[] = {"none", "query", "header", "cookie"};
static const char *const aff_why_names[AFF_WHY__COUNT] = {"hit", "no_key", "down", "overload",
                                                          "retry"};

const char *aff_kind_name(enum aff_kind k)
{
    return (unsigned)k <= AFF_COOKIE ? aff_kind_names[k] : "none";
}

const char *aff_why_name(enum aff_why w)
{
    return (unsigned)w < AFF_WHY__COUNT ? aff_why_names[w] : "?";
}

/* A name is a token: what a header name, a cookie name or a query key can
 * be without quoting, so that "header:X-Session" cannot smuggle anything. */
static int aff_name_ok(const char *n)
{
    if (*n == '\0')
        return 0;
    for (; *n; n++) {
        unsigned char ch = (unsigned char)*n;
        if (ch <= ' ' || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}&", ch))
            return 0;
    }
    return 1;
}

int aff_spec_parse(const char *text, aff_spec_t *s, char *err, size_t errlen)
{
    const char *colon = text ? strchr(text, ':') : NULL;
    memset(s, 0, sizeof(*s));
    if (colon == NULL)
        goto bad;
    size_t kl = (size_t)(colon - text);
    for (int k = AFF_QUERY; k <= AFF_COOKIE; k++)
        if (strlen(aff_kind_names[k]) == kl && strncmp(text, aff_kind_names[k], kl) == 0)
            s->kind = (enum aff_kind)k;
    if (s->kind == AFF_NONE || strlen(colon + 1) >= sizeof(s->name) || !aff_name_ok(colon + 1))
        goto bad;
    memcpy(s->name, colon + 1, strlen(colon + 1) + 1);
    return 0;
bad:
    s->kind = AFF_NONE;
    snprintf(err, errlen,
             "--affinity '%s': want query:NAME, header:NAME or cookie:NAME (NAME a token of "
             "at most %d characters)",
             text ? text : "", AFF_NAME_MAX - 1);
    return -1;
}

uint64_t aff_hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    /* FNV alone leaves similar keys ("user1", "user2") close together on
     * the ring: the murmur3 finaliser scatters them. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* The value of name=value in a list of pairs separated by sep (and the
 * spaces after it, for cookies). */
static int aff_pair(const char *p, size_t n, char sep, const char *name, http_str_t *out)
{
    size_t nl = strlen(name), i = 0;
    while (i < n) {
        while (i < n && p[i] == ' ')
            i++;
        size_t j = i;
        while (j < n && p[j] != sep)
            j++;
        if (j - i > nl && memcmp(p + i, name, nl) == 0 && p[i + nl] == '=') {
            out->p = p + i + nl + 1;
            out->n = j - i - nl - 1;
            return 1;
        }
        i = j + 1;
    }
    return 0;
}

int aff_key(const aff_spec_t *s, const http_head_t *h, uint64_t *hash)
{
    http_str_t v = {NULL, 0};
    int found = 0;
    switch (s->kind) {
    case AFF_QUERY: {
        const char *q = memchr(h->url.p, '?', h->url.n);
        if (q != NULL) {
            size_t qn = h->url.n - (size_t)(q + 1 - h->url.p);
            const char *hash_mark = memchr(q + 1, '#', qn);
            if (hash_mark != NULL)
                qn = (size_t)(hash_mark - q - 1);
            found = aff_pair(q + 1, qn, '&', s->name, &v);
        }
        break;
    }
    case AFF_HEADER: {
        const http_str_t *hv = http_header_get(h, s->name);
        if (hv != NULL) {
            v = *hv;
            found = 1;
        }
        break;
    }
    case AFF_COOKIE:
        /* A browser may split its cookies over several Cookie lines. */
        for (size_t i = 0; i < h->nheaders && !found; i++)
            if (http_str_caseeq(h->headers[i].name, "Cookie"))
                found = aff_pair(h->headers[i].value.p, h->headers[i].value.n, ';', s->name, &v);
        break;
    case AFF_NONE:
        break;
    }
    if (!found || v.n == 0)
        return 0;
    *hash = aff_hash(v.p, v.n);
    return 1;
}

/* ---- the ring ------------------------------------------------------------------ */

aff_ring_t *aff_ring_create(void)
{
    return calloc(1, sizeof(aff_ring_t));
}

void aff_ring_free(aff_ring_t *r)
{
    if (r == NULL)
        return;
    free(r->p);
    free(r);
}

static int aff_point_cmp(const void *a, const void *b)
{
    const struct aff_point *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node; /* a tie is ordered, never random */
}

/* A point's place depends on the id and its replica number only, never on
 * the node's index, so the ring of a set of ids is the same whatever the
 * order they were added in. */
int aff_ring_build(aff_ring_t *r, const char *const *ids, size_t n)
{
    struct aff_point *p = NULL;
    if (n > 0 && (p = malloc(n * AFF_VNODES * sizeof(*p))) == NULL) {
        free(r->p);
        r->p = NULL;
        r->np = r->nodes = 0;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        for (unsigned v = 0; v < AFF_VNODES; v++) {
            int len = snprintf(buf, sizeof(buf), "%s#%u", ids[i], v);
            p[i * AFF_VNODES + v] = (struct aff_point){
                aff_hash(buf, (size_t)len < sizeof(buf) ? (size_t)len : sizeof(buf) - 1),
                (uint32_t)i};
        }
    }
    if (n > 0)
        qsort(p, n * AFF_VNODES, sizeof(*p), aff_point_cmp);
    free(r->p);
    r->p = p;
    r->np = n * AFF_VNODES;
    r->nodes = n;
    return 0;
}

void aff_ring_remove_node(aff_ring_t *r, uint32_t node)
{
    if (node >= r->nodes)
        return;
    size_t k = 0;
    for (size_t i = 0; i < r->np; i++) {
        struct aff_point pt = r->p[i];
        if (pt.node == node)
            continue;
        if (pt.node > node)
            pt.node--; /* order kept: ties stay ordered by node */
        r->p[k++] = pt;
    }
    r->np = k;
    r->nodes--;
}

size_t aff_ring_nodes(const aff_ring_t *r)
{
    return r->nodes;
}

/* The first point at or after key (wrapping). */
static size_t aff_ring_find(const aff_ring_t *r, uint64_t key)
{
    size_t lo = 0, hi = r->np;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->p[mid].h < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == r->np ? 0 : lo;
}

size_t aff_ring_walk(const aff_ring_t *r, uint64_t key, uint32_t *out, size_t max)
{
    size_t got = 0, want = r->nodes < max ? r->nodes : max;
    if (want == 0)
        return 0;
    size_t at = aff_ring_find(r, key);
    for (size_t k = 0; k < r->np && got < want; k++) {
        uint32_t node = r->p[(at + k) % r->np].node;
        size_t j = 0;
        while (j < got && out[j] != node)
            j++;
        if (j == got)
            out[got++] = node;
    }
    return got;
}

long aff_choose(const aff_ring_t *r, uint64_t key, aff_probe_fn probe, void *ctx, enum aff_why *why)
{
    uint32_t order[AFF_WALK_MAX];
    size_t n = aff_ring_walk(r, key, order, AFF_WALK_MAX);
    *why = AFF_HIT;
    for (size_t i = 0; i < n; i++) {
        enum aff_probe pr = probe(ctx, order[i]);
        if (pr == AFF_P_OK)
            return (long)order[i];
        if (i == 0)
            *why = pr == AFF_P_DOWN ? AFF_DOWN : pr == AFF_P_OVERLOAD ? AFF_OVERLOAD : AFF_RETRY;
    }
    if (n == 0)
        *why = AFF_DOWN; /* no backend on the ring at all */
    return -1;
}

int aff_within(int64_t conns, unsigned w, int64_t total, uint64_t wsum, unsigned factor_milli)
{
    if (wsum == 0)
        return 1;
    if (conns < 0)
        conns = 0;
    if (total < 0)
        total = 0;
    unsigned __int128 num = (unsigned __int128)factor_milli * (uint64_t)(total + 1) * (w ? w : 1);
    unsigned __int128 den = (unsigned __int128)1000 * wsum;
    unsigned __int128 cap = (num + den - 1) / den;
    return (unsigned __int128)(conns + 1) <= cap;
}
