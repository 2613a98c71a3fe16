/* ctl_http: blocking HTTP/1.1 client (see ctl_http.h). */
#include "ctl_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl_net.h"
#include "http.h"

#define CTL_HTTP_MAX_HEAD 16384

int ctl_url_parse(const char *s, ctl_url_t *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *p = s;
    if (s == NULL || *s == '\0') {
        snprintf(err, errlen, "empty URL");
        return -1;
    }
    if (strncasecmp(p, "https://", 8) == 0) {
        snprintf(err, errlen,
                 "'%.200s': https is not supported; the lb's admin API speaks plain HTTP "
                 "(keep it on loopback or a private network)",
                 s);
        return -1;
    }
    if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://") != NULL) {
        snprintf(err, errlen, "'%.200s': only http:// URLs are supported", s);
        return -1;
    }
    size_t hp = strcspn(p, "/?#");
    if (p[hp] == '?' || p[hp] == '#') {
        snprintf(err, errlen, "'%.200s': a query or fragment makes no sense here", s);
        return -1;
    }
    char hostport[300];
    if (hp == 0 || hp >= sizeof(hostport)) {
        snprintf(err, errlen, "'%.200s': missing or overlong host", s);
        return -1;
    }
    memcpy(hostport, p, hp);
    hostport[hp] = '\0';
    /* The port is optional in a URL: add the default before splitting. */
    int has_port =
        hostport[0] == '[' ? strstr(hostport, "]:") != NULL : strchr(hostport, ':') != NULL;
    if (!has_port && hp + 3 < sizeof(hostport))
        strcat(hostport, ":80");
    char serr[160];
    if (ctl_net_split(hostport, u->host, sizeof(u->host), u->port, sizeof(u->port), serr,
                      sizeof(serr)) < 0) {
        snprintf(err, errlen, "'%.200s': %s", s, serr);
        return -1;
    }
    const char *path = p + hp;
    size_t pl = strlen(path);
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    if (pl >= sizeof(u->base)) {
        snprintf(err, errlen, "'%.200s': path prefix too long", s);
        return -1;
    }
    for (size_t i = 0; i < pl; i++) {
        if ((unsigned char)path[i] <= 0x20 || path[i] == 0x7f) {
            snprintf(err, errlen, "'%.200s': blank or control character in the path", s);
            return -1;
        }
    }
    memcpy(u->base, path, pl);
    u->base[pl] = '\0';
    snprintf(u->text, sizeof(u->text), strchr(u->host, ':') ? "http://[%s]:%s%s" : "http://%s:%s%s",
             u->host, u->port, u->base);
    return 0;
}

int ctl_http_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~';
        if (o + (plain ? 1 : 3) >= outlen)
            return -1;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (o >= outlen)
        return -1;
    out[o] = '\0';
    return 0;
}

/* Parses a chunk-size line's hex number; -1 when there is none or it is
 * absurd. */
static long ctl_http_hex(const char *p, size_t n)
{
    long v = 0;
    size_t i = 0;
    for (; i < n; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            break;
        v = v * 16 + d;
        if (v > (long)CTL_HTTP_MAX_BODY)
            return -1;
    }
    /* blanks, then chunk extensions (";name=value"), may follow the size */
    size_t j = i;
    while (j < n && (p[j] == ' ' || p[j] == '\t'))
        j++;
    if (i == 0 || (j < n && p[j] != ';'))
        return -1;
    return v;
}

int ctl_http_dechunk(const char *p, size_t n, buf_t *out)
{
    size_t off = 0;
    buf_reset(out);
    for (;;) {
        const char *eol = memmem(p + off, n - off, "\r\n", 2);
        if (eol == NULL)
            return n - off > 1024 ? -1 : 0;
        long sz = ctl_http_hex(p + off, (size_t)(eol - (p + off)));
        if (sz < 0)
            return -1;
        off = (size_t)(eol - p) + 2;
        if (sz == 0) {
            /* trailer fields, then an empty line */
            for (;;) {
                const char *e = memmem(p + off, n - off, "\r\n", 2);
                if (e == NULL)
                    return 0;
                if (e == p + off)
                    return 1;
                off = (size_t)(e - p) + 2;
            }
        }
        if (n - off < (size_t)sz + 2)
            return buf_append(out, p + off, n - off < (size_t)sz ? n - off : (size_t)sz) < 0 ? -1
                                                                                             : 0;
        if (buf_size(out) + (size_t)sz > CTL_HTTP_MAX_BODY || buf_append(out, p + off, (size_t)sz))
            return -1;
        off += (size_t)sz;
        if (p[off] != '\r' || p[off + 1] != '\n')
            return -1;
        off += 2;
    }
}

void ctl_http_resp_free(ctl_http_resp_t *r)
{
    if (r == NULL)
        return;
    buf_free(&r->body);
    r->status = 0;
}

/* Reads the whole answer into raw until the body is complete by h's
 * framing; returns 0 and the decoded body in r, or -1 with err. */
static int ctl_http_read_body(int fd, buf_t *raw, const http_head_t *h, size_t head_len,
                              double deadline, ctl_http_resp_t *r, char *err, size_t errlen)
{
    char rerr[128];
    for (;;) {
        size_t have = buf_size(raw) - head_len;
        const char *body = buf_head(raw) + head_len;
        if (h->chunked) {
            int d = ctl_http_dechunk(body, have, &r->body);
            if (d == 1)
                return 0;
            if (d < 0) {
                snprintf(err, errlen, "malformed chunked body");
                return -1;
            }
        } else if (h->has_content_length && have >= h->content_length) {
            return buf_append(&r->body, body, (size_t)h->content_length);
        }
        if (have > CTL_HTTP_MAX_BODY + 65536 ||
            (h->has_content_length && h->content_length > CTL_HTTP_MAX_BODY)) {
            snprintf(err, errlen, "answer over %u bytes", CTL_HTTP_MAX_BODY);
            return -1;
        }
        char *w = buf_reserve(raw, 16384);
        if (w == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        ssize_t n = ctl_net_read(fd, w, 16384, deadline, rerr, sizeof(rerr));
        if (n < 0) {
            snprintf(err, errlen, "reading the answer: %s", rerr);
            return -1;
        }
        if (n == 0) {
            if (h->chunked || h->has_content_length) {
                snprintf(err, errlen, "connection closed before the end of the answer");
                return -1;
            }
            /* delimited by the close (the reserve may have moved the bytes) */
            return buf_append(&r->body, buf_head(raw) + head_len, have);
        }
        buf_commit(raw, (size_t)n);
    }
}

int ctl_http_request(const ctl_url_t *u, const char *method, const char *path, const char *token,
                     double timeout_s, ctl_http_resp_t *r, char *err, size_t errlen)
{
    double deadline = ctl_now() + timeout_s;
    buf_t req = BUF_INIT, raw = BUF_INIT;
    char rerr[256];
    int rc = -1, fd = -1;
    memset(r, 0, sizeof(*r));
    int v6 = strchr(u->host, ':') != NULL;
    if (buf_printf(&req, "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: wslbctl\r\n", method,
                   u->base, path, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port) < 0 ||
        (token && buf_printf(&req, "Authorization: Bearer %s\r\n", token) < 0) ||
        buf_append_str(&req, "Content-Length: 0\r\nConnection: close\r\n\r\n") < 0) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    fd = ctl_net_connect(u->host, u->port, deadline, rerr, sizeof(rerr));
    if (fd < 0) {
        snprintf(err, errlen, "cannot reach it: %s", rerr);
        goto done;
    }
    if (ctl_net_write(fd, buf_head(&req), buf_size(&req), deadline, rerr, sizeof(rerr)) < 0) {
        snprintf(err, errlen, "sending the request: %s", rerr);
        goto done;
    }
    http_head_t h;
    for (;;) {
        int hl = http_parse_response(buf_head(&raw), buf_size(&raw), CTL_HTTP_MAX_HEAD, &h);
        if (hl > 0) {
            r->status = h.status;
            rc = ctl_http_read_body(fd, &raw, &h, (size_t)hl, deadline, r, err, errlen);
            break;
        }
        if (hl < 0) {
            snprintf(err, errlen, "%s",
                     hl == HTTP_PARSE_ERROR ? "not an HTTP answer" : "answer head too large");
            break;
        }
        char *w = buf_reserve(&raw, 4096);
        if (w == NULL) {
            snprintf(err, errlen, "out of memory");
            break;
        }
        ssize_t n = ctl_net_read(fd, w, 4096, deadline, rerr, sizeof(rerr));
        if (n <= 0) {
            snprintf(err, errlen, "%s", n == 0 ? "closed without an answer" : rerr);
            if (n < 0 && strcmp(rerr, "timed out") == 0)
                snprintf(err, errlen, "no answer within %.1f s", timeout_s);
            break;
        }
        buf_commit(&raw, (size_t)n);
    }
done:
    if (fd >= 0)
        close(fd);
    if (token && buf_size(&req) > 0) /* the request held the secret */
        explicit_bzero(buf_head(&req), buf_size(&req));
    buf_free(&req);
    buf_free(&raw);
    return rc;
}
