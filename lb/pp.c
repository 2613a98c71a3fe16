/* pp: the PROXY protocol header (see pp.h and HAProxy's
 * doc/proxy-protocol.txt, which defines both versions).
 *
 *   v1: "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...\r\n" or
 *       "PROXY UNKNOWN[ anything]\r\n", at most 107 bytes.
 *   v2: a 12-byte signature, version/command, family/protocol, a 16-bit
 *       length, then the address block and TLVs.
 *
 * The first byte tells the two apart ('P' or '\r'); a connection whose bytes
 * leave both signatures (an HTTP request, a TLS ClientHello) is PP_MISSING
 * at its first differing byte, without waiting for more. */
#include "pp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t pp_sig_v1[] = "PROXY ";
static const uint8_t pp_sig_v2[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
#define PP_SIG_V1_LEN 6
#define PP_V2_HEAD    16

void pp_init(pp_t *p)
{
    memset(p, 0, sizeof(*p));
}

static int pp_fail(pp_t *p, int rc, const char *why, const char **err)
{
    p->over = 1;
    if (err != NULL)
        *err = why;
    return rc;
}

/* A decimal port, 0..65535, 1 to 5 digits. */
static int pp_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    unsigned v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int pp_set(sock_addr_t *a, int af, const void *ip, uint16_t port_n)
{
    memset(a, 0, sizeof(*a));
    if (af == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, ip, 4);
        in->sin_port = port_n;
        a->len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, ip, 16);
        in6->sin6_port = port_n;
        a->len = sizeof(*in6);
    }
    return 0;
}

/* The v1 line in p->keep, CRLF excluded: n bytes. */
static int pp_parse_v1(pp_t *p, size_t n, pp_info_t *out, const char **err)
{
    char line[PP_V1_MAX + 1], *tok[7];
    int ntok = 0;
    memcpy(line, p->keep, n);
    line[n] = '\0';
    /* Single spaces between fields: an empty field is malformed. */
    char *s = line;
    for (;;) {
        char *sp = strchr(s, ' ');
        if (ntok == 7)
            break;
        tok[ntok++] = s;
        if (sp == NULL)
            break;
        *sp = '\0';
        s = sp + 1;
    }
    memset(out, 0, sizeof(*out));
    out->version = 1;
    if (ntok >= 2 && strcmp(tok[1], "UNKNOWN") == 0)
        return PP_DONE; /* the rest is to be ignored, whatever it is */
    int af;
    if (ntok >= 2 && strcmp(tok[1], "TCP4") == 0)
        af = AF_INET;
    else if (ntok >= 2 && strcmp(tok[1], "TCP6") == 0)
        af = AF_INET6;
    else
        return pp_fail(p, PP_ERROR, "v1: unknown protocol (TCP4, TCP6 or UNKNOWN)", err);
    if (ntok != 6)
        return pp_fail(p, PP_ERROR, "v1: want PROXY TCPn SRC DST SPORT DPORT", err);
    unsigned char sip[16], dip[16];
    uint16_t sport, dport;
    if (inet_pton(af, tok[2], sip) != 1 || inet_pton(af, tok[3], dip) != 1)
        return pp_fail(p, PP_ERROR, "v1: bad address", err);
    if (pp_port(tok[4], &sport) < 0 || pp_port(tok[5], &dport) < 0)
        return pp_fail(p, PP_ERROR, "v1: bad port", err);
    pp_set(&out->src, af, sip, htons(sport));
    pp_set(&out->dst, af, dip, htons(dport));
    out->has_addr = 1;
    return PP_DONE;
}

/* The fixed v2 header is in p->keep: checks it and sets p->total. */
static int pp_check_v2_head(pp_t *p, const char **err)
{
    uint8_t vc = p->keep[12], fp = p->keep[13];
    size_t len = (size_t)p->keep[14] << 8 | p->keep[15];
    if (vc >> 4 != 2)
        return pp_fail(p, PP_ERROR, "v2: version is not 2", err);
    if ((vc & 0xf) > 1)
        return pp_fail(p, PP_ERROR, "v2: command is neither LOCAL nor PROXY", err);
    if (fp >> 4 > 3 || (fp & 0xf) > 2)
        return pp_fail(p, PP_ERROR, "v2: unknown address family or protocol", err);
    if (len > PP_V2_MAX_LEN)
        return pp_fail(p, PP_ERROR, "v2: header longer than the lb accepts", err);
    /* A PROXY command for TCP must carry its whole address block. */
    if ((vc & 0xf) == 1 && (fp & 0xf) == 1) {
        if ((fp >> 4 == 1 && len < 12) || (fp >> 4 == 2 && len < 36))
            return pp_fail(p, PP_ERROR, "v2: address block shorter than its family", err);
    }
    p->total = PP_V2_HEAD + len;
    return PP_AGAIN;
}

static int pp_parse_v2(pp_t *p, pp_info_t *out)
{
    uint8_t vc = p->keep[12], fp = p->keep[13];
    const uint8_t *a = p->keep + PP_V2_HEAD;
    memset(out, 0, sizeof(*out));
    out->version = 2;
    /* LOCAL, UNSPEC, UNIX and datagrams carry no TCP client: the socket's
     * peer stands, as the spec tells receivers to do. */
    if ((vc & 0xf) != 1 || (fp & 0xf) != 1)
        return PP_DONE;
    uint16_t sp, dp;
    if (fp >> 4 == 1) {
        memcpy(&sp, a + 8, 2);
        memcpy(&dp, a + 10, 2);
        pp_set(&out->src, AF_INET, a, sp);
        pp_set(&out->dst, AF_INET, a + 4, dp);
        out->has_addr = 1;
    } else if (fp >> 4 == 2) {
        memcpy(&sp, a + 32, 2);
        memcpy(&dp, a + 34, 2);
        pp_set(&out->src, AF_INET6, a, sp);
        pp_set(&out->dst, AF_INET6, a + 16, dp);
        out->has_addr = 1;
    }
    return PP_DONE;
}

int pp_feed(pp_t *p, const void *data, size_t n, size_t *used, pp_info_t *out, const char **err)
{
    const uint8_t *d = data;
    size_t i = 0;
    *used = 0;
    if (p->over)
        return pp_fail(p, PP_ERROR, "header already complete", err);
    while (i < n) {
        if (p->version == 0) {
            /* The signature, one byte at a time: the first byte picks it. */
            uint8_t b = d[i];
            int v1 = p->n == 0 ? b == 'P' : p->keep[0] == 'P';
            if (v1 ? b != pp_sig_v1[p->n] : b != pp_sig_v2[p->n])
                return pp_fail(p, PP_MISSING, "no PROXY protocol header", err);
            p->keep[p->n++] = b;
            i++;
            if (v1 && p->n == PP_SIG_V1_LEN)
                p->version = 1;
            else if (!v1 && p->n == sizeof(pp_sig_v2))
                p->version = 2;
            continue;
        }
        if (p->version == 1) {
            uint8_t b = d[i++];
            if (b == '\n') {
                if (p->keep[p->n - 1] != '\r')
                    return pp_fail(p, PP_ERROR, "v1: line ends without CRLF", err);
                p->n++;
                *used = i;
                int rc = pp_parse_v1(p, p->n - 2, out, err);
                p->over = 1;
                return rc;
            }
            if (p->n >= PP_V1_MAX - 1)
                return pp_fail(p, PP_ERROR, "v1: line longer than 107 bytes", err);
            if (b == '\r' ? 0 : (b < 0x20 || b > 0x7e))
                return pp_fail(p, PP_ERROR, "v1: control byte in the line", err);
            if (p->keep[p->n - 1] == '\r')
                return pp_fail(p, PP_ERROR, "v1: CR inside the line", err);
            p->keep[p->n++] = b;
            continue;
        }
        /* v2: the fixed header byte by byte, then the rest in one go. */
        if (p->n < PP_V2_HEAD) {
            p->keep[p->n++] = d[i++];
            if (p->n == PP_V2_HEAD && pp_check_v2_head(p, err) < 0) {
                *used = i;
                return PP_ERROR;
            }
        } else {
            size_t take = n - i < p->total - p->n ? n - i : p->total - p->n;
            if (p->n < PP_V2_KEEP) {
                size_t k = PP_V2_KEEP - p->n < take ? PP_V2_KEEP - p->n : take;
                memcpy(p->keep + p->n, d + i, k);
            }
            p->n += take;
            i += take;
        }
        if (p->total != 0 && p->n == p->total) {
            *used = i;
            p->over = 1;
            return pp_parse_v2(p, out);
        }
    }
    *used = i;
    return PP_AGAIN;
}
