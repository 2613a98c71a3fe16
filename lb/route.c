/* route: the lb's route table (see route.h). Tiny lists scanned linearly:
 * a handful of entries, read by every proxy thread, written only before
 * they start. */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route {
    char *ws[ROUTE_MAX];
    size_t nws;
    char *http[ROUTE_MAX];
    size_t nhttp;
};

route_t *route_create(void)
{
    return calloc(1, sizeof(route_t));
}

void route_free(route_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nws; i++)
        free(r->ws[i]);
    for (size_t i = 0; i < r->nhttp; i++)
        free(r->http[i]);
    free(r);
}

static int route_hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Whether a path means the same to every backend: absolute, only the
 * characters RFC 3986 allows in a path but ';', no empty, "." or ".."
 * segment, and no %XX that decodes to a control byte, '/', '.', '\' or '%'. A backend that
 * normalises such a path could serve something outside the prefix that
 * matched (/api/../metrics, /api/%2e%2e/metrics, /api/..;/metrics). */
static int route_path_clean(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        /* RFC 3986 path characters, less ';' (parameters some servers
         * strip before matching: /api/..;/metrics). */
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("-._~!$&'()*+,=:@/%", ch) != NULL) ||
            ch == '\0')
            return 0;
        if (ch == '%') {
            int hi = i + 2 < n ? route_hexval((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < n ? route_hexval((unsigned char)p[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return 0;
            int d = hi * 16 + lo;
            if (d < 0x20 || d >= 0x7f || d == '/' || d == '.' || d == '\\' || d == '%')
                return 0;
        }
    }
    /* Segments: none empty but the last ("/", "/a/"), none "." or "..". */
    size_t seg = 1;
    for (size_t i = 1; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        size_t len = i - seg;
        if (len == 0 && i < n)
            return 0;
        if ((len == 1 && p[seg] == '.') || (len == 2 && p[seg] == '.' && p[seg + 1] == '.'))
            return 0;
        seg = i + 1;
    }
    return 1;
}

/* A configured path or prefix: clean (see above), no query or fragment. */
static int route_check(const char *s, const char *flag, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n == 0 || n > ROUTE_MAX_LEN || s[0] != '/' || strpbrk(s, "?#") != NULL ||
        !route_path_clean(s, n)) {
        snprintf(err, errlen,
                 "%s '%.64s': want an absolute path of printable characters, without a query, "
                 "dot segments or '//'",
                 flag, s);
        return -1;
    }
    return 0;
}

static int route_push(char **v, size_t *n, const char *s, const char *flag, char *err,
                      size_t errlen)
{
    if (route_check(s, flag, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < *n; i++)
        if (strcmp(v[i], s) == 0)
            return 0;
    if (*n >= ROUTE_MAX) {
        snprintf(err, errlen, "%s: at most %d", flag, ROUTE_MAX);
        return -1;
    }
    if ((v[*n] = strdup(s)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    (*n)++;
    return 0;
}

int route_add_ws(route_t *r, const char *path, char *err, size_t errlen)
{
    return route_push(r->ws, &r->nws, path, "--route", err, errlen);
}

int route_add_http(route_t *r, const char *prefix, char *err, size_t errlen)
{
    /* "/api/" and "/api" mean the same: the segment boundary is implied. */
    char tmp[ROUTE_MAX_LEN + 1];
    size_t n = strlen(prefix);
    if (n > 1 && n <= ROUTE_MAX_LEN && prefix[n - 1] == '/') {
        memcpy(tmp, prefix, n - 1);
        tmp[n - 1] = '\0';
        prefix = tmp;
    }
    return route_push(r->http, &r->nhttp, prefix, "--proxy-http", err, errlen);
}

int route_finish(route_t *r, char *err, size_t errlen)
{
    return r->nws == 0 ? route_add_ws(r, "/eval", err, errlen) : 0;
}

static int route_under(http_str_t path, const char *prefix)
{
    size_t k = strlen(prefix);
    if (k == 1) /* "/": everything */
        return 1;
    return path.n >= k && memcmp(path.p, prefix, k) == 0 && (path.n == k || path.p[k] == '/');
}

enum route_action route_decide(const route_t *r, const http_head_t *h)
{
    if (h->is_websocket) {
        if (h->method_str.p == NULL || !http_str_eq(h->method_str, "GET"))
            return ROUTE_NONE;
        if (r == NULL)
            return http_str_eq(h->path, "/eval") ? ROUTE_WS : ROUTE_NONE;
        for (size_t i = 0; i < r->nws; i++)
            if (http_str_eq(h->path, r->ws[i]))
                return ROUTE_WS;
        /* A websocket to anything else is not proxied, --proxy-http or not. */
        return ROUTE_NONE;
    }
    if (r == NULL || r->nhttp == 0 || !route_path_clean(h->path.p, h->path.n))
        return ROUTE_NONE;
    for (size_t i = 0; i < r->nhttp; i++)
        if (route_under(h->path, r->http[i]))
            return ROUTE_HTTP;
    return ROUTE_NONE;
}
