/* wb_url: ws:// and wss:// URL parsing (see wb_url.h). */
#include "wb_url.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Parses a decimal port 1..65535 from p[0..n). */
static int wb_url_port(const char *p, size_t n, unsigned *out)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

int wb_url_parse(const char *s, wb_url_t *u, char *err, size_t errlen)
{
    const char *p;
    char hp[300], serr[SOCK_ERR_LEN];
    size_t hlen;
    int v6 = 0;

    memset(u, 0, sizeof(*u));
    if (s == NULL) {
        snprintf(err, errlen, "missing URL");
        return -1;
    }
    if (strncasecmp(s, "ws://", 5) == 0) {
        p = s + 5;
    } else if (strncasecmp(s, "wss://", 6) == 0) {
        u->tls = 1;
        p = s + 6;
    } else {
        snprintf(err, errlen, "'%s': URL must start with ws:// or wss://", s);
        return -1;
    }
    for (const char *q = s; *q; q++) {
        if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
            snprintf(err, errlen, "'%s': spaces and control characters are not allowed", s);
            return -1;
        }
    }
    if (strchr(s, '#') != NULL) {
        /* RFC 6455 section 3: fragments are meaningless in websocket URIs. */
        snprintf(err, errlen, "'%s': fragments (#) are not allowed in websocket URLs", s);
        return -1;
    }

    size_t alen = strcspn(p, "/?");
    const char *auth_end = p + alen;
    if (memchr(p, '@', alen) != NULL) {
        snprintf(err, errlen, "'%s': user information is not supported", s);
        return -1;
    }
    const char *hend, *port = NULL;
    if (alen > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', alen);
        if (close == NULL) {
            snprintf(err, errlen, "'%s': missing ']' after IPv6 address", s);
            return -1;
        }
        v6 = 1;
        hlen = (size_t)(close - p - 1);
        memcpy(u->host, p + 1, hlen < sizeof(u->host) ? hlen : 0);
        hend = close + 1;
        if (hend < auth_end && *hend != ':') {
            snprintf(err, errlen, "'%s': expected ':PORT' after ']'", s);
            return -1;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        hend = colon ? colon : auth_end;
        hlen = (size_t)(hend - p);
        memcpy(u->host, p, hlen < sizeof(u->host) ? hlen : 0);
    }
    if (hlen == 0) {
        snprintf(err, errlen, "'%s': empty host", s);
        return -1;
    }
    if (hlen >= sizeof(u->host)) {
        snprintf(err, errlen, "'%s': host too long", s);
        return -1;
    }
    u->host[hlen] = '\0';
    if (hend < auth_end && *hend == ':')
        port = hend + 1;
    u->port = u->tls ? 443 : 80;
    if (port != NULL && wb_url_port(port, (size_t)(auth_end - port), &u->port) < 0) {
        snprintf(err, errlen, "'%s': bad port (expected 1-65535)", s);
        return -1;
    }

    if (*auth_end == '\0') {
        strcpy(u->path, "/");
    } else {
        size_t plen = strlen(auth_end);
        if (plen + 1 >= sizeof(u->path)) {
            snprintf(err, errlen, "'%s': path too long", s);
            return -1;
        }
        if (*auth_end == '?')
            u->path[0] = '/'; /* "ws://h?x" means path "/" with a query */
        memcpy(u->path + (*auth_end == '?'), auth_end, plen + 1);
    }

    snprintf(hp, sizeof(hp), v6 ? "[%s]:%u" : "%s:%u", u->host, u->port);
    if (sock_parse_addr(hp, &u->addr, serr, sizeof(serr)) < 0) {
        snprintf(err, errlen, "'%s': %s", s, serr);
        return -1;
    }
    if (u->port == (u->tls ? 443u : 80u))
        snprintf(u->host_hdr, sizeof(u->host_hdr), v6 ? "[%s]" : "%s", u->host);
    else
        snprintf(u->host_hdr, sizeof(u->host_hdr), v6 ? "[%s]:%u" : "%s:%u", u->host, u->port);
    return 0;
}
