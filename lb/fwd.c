/* fwd: the head the lb sends a backend (see fwd.h). */
#include "fwd.h"

#include <string.h>

#include "fleet.h"

enum fwd_kind {
    FWD_OTHER = 0,
    FWD_XFF,
    FWD_XFP,
    FWD_REAL_IP,
    FWD_FORWARDED,
    FWD_OURS,  /* X-Request-Id, X-Upstream-Secret, X-Lb-Id: always the lb's */
    FWD_IDENT, /* other client-identity headers: a trusted proxy's only */
    FWD_HOP,   /* Connection, Keep-Alive, Proxy-Connection, Upgrade */
};

static const struct {
    const char *name;
    enum fwd_kind kind;
} fwd_names[] = {
    {FLEET_HDR_FORWARDED_FOR, FWD_XFF},
    {FLEET_HDR_FORWARDED_PROTO, FWD_XFP},
    {FLEET_HDR_REAL_IP, FWD_REAL_IP},
    {FLEET_HDR_FORWARDED, FWD_FORWARDED},
    {FLEET_HDR_REQUEST_ID, FWD_OURS},
    {FLEET_HDR_SECRET, FWD_OURS},
    {FLEET_HDR_LB_ID, FWD_OURS},
    {"X-Forwarded-Host", FWD_IDENT},
    {"X-Forwarded-Port", FWD_IDENT},
    {"X-Forwarded-Server", FWD_IDENT},
    {"X-Forwarded-Prefix", FWD_IDENT},
    {"X-Client-IP", FWD_IDENT},
    {"True-Client-IP", FWD_IDENT},
    {"X-Cluster-Client-IP", FWD_IDENT},
    {"CF-Connecting-IP", FWD_IDENT},
    {"Fastly-Client-IP", FWD_IDENT},
    {"X-Original-Forwarded-For", FWD_IDENT},
    {"Client-IP", FWD_IDENT},
    {"Connection", FWD_HOP},
    {"Keep-Alive", FWD_HOP},
    {"Proxy-Connection", FWD_HOP},
    {"Upgrade", FWD_HOP},
};

static int fwd_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

/* What a header name is to the lb; *alias set when it matched only with
 * '_' read as '-'. */
static enum fwd_kind fwd_kind_of(http_str_t name, int *alias)
{
    *alias = 0;
    for (size_t k = 0; k < sizeof(fwd_names) / sizeof(fwd_names[0]); k++) {
        const char *lit = fwd_names[k].name;
        if (strlen(lit) != name.n)
            continue;
        int us = 0;
        size_t i = 0;
        for (; i < name.n; i++) {
            int a = fwd_lower((unsigned char)name.p[i]), b = fwd_lower((unsigned char)lit[i]);
            if (a == '_' && b == '-')
                us = 1;
            else if (a != b)
                break;
        }
        if (i == name.n) {
            *alias = us;
            return fwd_names[k].kind;
        }
    }
    return FWD_OTHER;
}

/* End (one past the LF) of the header line that holds hd, or NULL. */
static const char *fwd_line_end(const http_header_t *hd, const char *end)
{
    const char *from = hd->value.p + hd->value.n;
    if (from < hd->name.p || from > end)
        return NULL;
    const char *nl = memchr(from, '\n', (size_t)(end - from));
    return nl ? nl + 1 : NULL;
}

/* Whether the client's line hd goes to the backend; notes in *have which
 * kinds a trusted proxy supplied. */
static int fwd_keep(const http_header_t *hd, const fwd_t *f, unsigned *have)
{
    int alias;
    enum fwd_kind k = fwd_kind_of(hd->name, &alias);
    if (k == FWD_OTHER)
        return 1;
    if (alias)
        return 0;
    switch (k) {
    case FWD_XFP:
    case FWD_REAL_IP:
        if (!f->trusted || hd->value.n == 0)
            return 0;
        *have |= 1u << k;
        return 1;
    case FWD_IDENT:
        return f->trusted;
    case FWD_HOP:
        return !f->close;
    default: /* XFF and Forwarded are merged below; ours are replaced */
        return 0;
    }
}

/* Appends the values of a trusted proxy's list header (every non-empty
 * line of `kind`, one list as RFC 9110 5.3 says) followed by ", ". */
static int fwd_merge(const http_head_t *h, enum fwd_kind kind, buf_t *out)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        const http_header_t *hd = &h->headers[i];
        int alias;
        if (hd->value.n == 0 || fwd_kind_of(hd->name, &alias) != kind || alias)
            continue;
        if (buf_append(out, hd->value.p, hd->value.n) < 0 || buf_append_str(out, ", ") < 0)
            return -1;
    }
    return 0;
}

int fwd_rewrite_head(const char *data, size_t len, const http_head_t *h, const fwd_t *f, buf_t *out)
{
    const char *end = data + h->head_len;
    const char *p = data;
    unsigned have = 0;

    if (h->head_len == 0 || h->head_len > len)
        return -1;
    /* http-parser skips blank lines before the request line; so do we. */
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL || buf_append(out, p, (size_t)(nl + 1 - p)) < 0)
        return -1;
    for (size_t i = 0; i < h->nheaders; i++) {
        const http_header_t *hd = &h->headers[i];
        const char *le = fwd_line_end(hd, end);
        if (le == NULL)
            return -1;
        if (fwd_keep(hd, f, &have) && buf_append(out, hd->name.p, (size_t)(le - hd->name.p)) < 0)
            return -1;
    }

    /* RFC 7239 quotes an IPv6 node and puts it in brackets. */
    int v6 = strchr(f->client_ip, ':') != NULL;
    if (buf_append_str(out, FLEET_HDR_FORWARDED_FOR ": ") < 0 ||
        (f->trusted && fwd_merge(h, FWD_XFF, out) < 0) ||
        buf_printf(out, "%s\r\n", f->client_ip) < 0)
        return -1;
    if (!(have & (1u << FWD_XFP)) &&
        buf_printf(out, FLEET_HDR_FORWARDED_PROTO ": %s\r\n", f->proto) < 0)
        return -1;
    if (!(have & (1u << FWD_REAL_IP)) &&
        buf_printf(out, FLEET_HDR_REAL_IP ": %s\r\n", f->client_ip) < 0)
        return -1;
    if (buf_append_str(out, FLEET_HDR_FORWARDED ": ") < 0 ||
        (f->trusted && fwd_merge(h, FWD_FORWARDED, out) < 0) ||
        buf_printf(out, "for=%s%s%s;proto=%s\r\n", v6 ? "\"[" : "", f->client_ip, v6 ? "]\"" : "",
                   f->proto) < 0)
        return -1;
    if (buf_printf(out, FLEET_HDR_REQUEST_ID ": %s\r\n", f->request_id) < 0)
        return -1;
    if (f->upstream_secret != NULL &&
        buf_printf(out, FLEET_HDR_SECRET ": %s\r\n", f->upstream_secret) < 0)
        return -1;
    if (f->lb_id != NULL && buf_printf(out, FLEET_HDR_LB_ID ": %s\r\n", f->lb_id) < 0)
        return -1;
    if (f->close && buf_append_str(out, "Connection: close\r\n") < 0)
        return -1;
    if (buf_append_str(out, "\r\n") < 0)
        return -1;
    size_t rest = len - h->head_len;
    if (f->close && rest > f->body_max)
        rest = f->body_max;
    if (rest > 0 && buf_append(out, end, rest) < 0)
        return -1;
    return 0;
}
