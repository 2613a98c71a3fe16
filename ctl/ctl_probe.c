/* ctl_probe: a probe evaluation over /eval (see ctl_probe.h). */
#include "ctl_probe.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "ctl_net.h"
#include "fleet.h"
#include "http.h"
#include "ws.h"

#define CTL_PROBE_MAX_MSG  (1u << 20)
#define CTL_PROBE_MAX_KEEP 4096 /* output kept for the verdict and errors */

enum ctl_probe_phase { CTL_PROBE_HELLO, CTL_PROBE_RUN, CTL_PROBE_DONE };

typedef struct ctl_probe {
    const ctl_probe_opts_t *o;
    int fd;
    double deadline, t_run;
    enum ctl_probe_phase phase;
    buf_t in, out;
    ws_msg_t msg;
    char stdout_[CTL_PROBE_MAX_KEEP], stderr_[CTL_PROBE_MAX_KEEP];
    size_t nout, nerr;
} ctl_probe_t;

/* Sends the upgrade and checks the 101; leftover bytes stay in p->in. */
static int ctl_probe_upgrade(ctl_probe_t *p, char *err, size_t errlen)
{
    char key[25], want[WS_ACCEPT_LEN + 1], rerr[160];
    ws_make_key(key);
    if (ws_accept_key(key, 24, want) < 0) {
        snprintf(err, errlen, "cannot make a handshake key");
        return -1;
    }
    buf_t req = BUF_INIT;
    int bad = buf_printf(&req,
                         "GET /eval HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                         "Sec-WebSocket-Version: 13\r\nUser-Agent: wslbctl-probe\r\n",
                         p->o->addr, key) < 0;
    if (!bad && p->o->secret)
        bad = buf_printf(&req, FLEET_HDR_SECRET ": %s\r\n", p->o->secret) < 0;
    bad = bad || buf_append_str(&req, "\r\n") < 0;
    int rc =
        bad ? -1
            : ctl_net_write(p->fd, buf_head(&req), buf_size(&req), p->deadline, rerr, sizeof(rerr));
    if (p->o->secret && buf_size(&req))
        explicit_bzero(buf_head(&req), buf_size(&req));
    buf_free(&req);
    if (rc < 0) {
        snprintf(err, errlen, "sending the upgrade: %s", bad ? "out of memory" : rerr);
        return -1;
    }
    for (;;) {
        http_head_t h;
        int hl = http_parse_response(buf_head(&p->in), buf_size(&p->in), 8192, &h);
        if (hl < 0) {
            snprintf(err, errlen, "the answer to the upgrade is not HTTP");
            return -1;
        }
        if (hl > 0) {
            if (h.status != 101) {
                /* The worker says why in a short text body: show its first line. */
                const char *body = buf_head(&p->in) + hl;
                size_t bl = strcspn(body, "\r\n");
                bl = bl > buf_size(&p->in) - (size_t)hl ? buf_size(&p->in) - (size_t)hl : bl;
                snprintf(err, errlen, "upgrade answered %d%s%.*s", h.status, bl ? ": " : "",
                         (int)(bl > 120 ? 120 : bl), body);
                return -1;
            }
            const http_str_t *acc = http_header_get(&h, "Sec-WebSocket-Accept");
            if (acc == NULL || !http_str_eq(*acc, want)) {
                snprintf(err, errlen, "upgrade answered 101 with a wrong Sec-WebSocket-Accept");
                return -1;
            }
            buf_consume(&p->in, (size_t)hl);
            return 0;
        }
        char *w = buf_reserve(&p->in, 4096);
        ssize_t n = w ? ctl_net_read(p->fd, w, 4096, p->deadline, rerr, sizeof(rerr)) : -1;
        if (n <= 0) {
            snprintf(err, errlen, "waiting for the upgrade: %s",
                     n == 0 ? "closed without an answer"
                     : w    ? rerr
                            : "out of memory");
            return -1;
        }
        buf_commit(&p->in, (size_t)n);
    }
}

static int ctl_probe_send(ctl_probe_t *p, int opcode, const void *data, size_t n, char *err,
                          size_t errlen)
{
    char rerr[160];
    buf_reset(&p->out);
    if (ws_frame_write(&p->out, WS_ROLE_CLIENT, opcode, 1, data, n) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (ctl_net_write(p->fd, buf_head(&p->out), buf_size(&p->out), p->deadline, rerr,
                      sizeof(rerr)) < 0) {
        snprintf(err, errlen, "sending: %s", rerr);
        return -1;
    }
    return 0;
}

static void ctl_probe_keep(char *dst, size_t *n, const char *s)
{
    size_t l = strlen(s);
    if (l > CTL_PROBE_MAX_KEEP - 1 - *n)
        l = CTL_PROBE_MAX_KEEP - 1 - *n;
    memcpy(dst + *n, s, l);
    *n += l;
    dst[*n] = '\0';
}

/* The hello: the right worker, offering the runtime; then the run. */
static int ctl_probe_hello(ctl_probe_t *p, json_t *m, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(m, "worker"));
    if (p->o->expect_id && (id == NULL || strcmp(id, p->o->expect_id) != 0)) {
        snprintf(err, errlen, "the worker at %s is '%.100s', not '%.100s'", p->o->addr,
                 id ? id : "?", p->o->expect_id);
        return -1;
    }
    json_t *rts = json_object_get(m, "runtimes"), *v;
    size_t i;
    int found = !json_is_array(rts);
    json_array_foreach(rts, i, v) found |=
        json_is_string(v) && strcmp(json_string_value(v), p->o->runtime) == 0;
    if (!found) {
        char *have = json_dumps(rts, JSON_COMPACT);
        snprintf(err, errlen, "the worker offers no runtime '%s' (it has %.200s)", p->o->runtime,
                 have ? have : "?");
        free(have);
        return -1;
    }
    json_t *run = json_pack("{s:s, s:s, s:s, s:s}", "type", "run", "id", "wslbctl-probe", "runtime",
                            p->o->runtime, "code", p->o->code);
    char *txt = run ? json_dumps(run, JSON_COMPACT) : NULL;
    json_decref(run);
    if (txt == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->t_run = ctl_now();
    int rc = ctl_probe_send(p, WS_OP_TEXT, txt, strlen(txt), err, errlen);
    free(txt);
    p->phase = CTL_PROBE_RUN;
    return rc;
}

/* One complete text message; 1 when the probe passed, 0 to go on, -1. */
static int ctl_probe_message(ctl_probe_t *p, const char *data, size_t n, char *err, size_t errlen)
{
    json_t *m = json_loadb(data, n, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    int rc = 0;
    if (type == NULL) {
        snprintf(err, errlen, "the worker sent something that is not a protocol message");
        rc = -1;
    } else if (p->phase == CTL_PROBE_HELLO) {
        if (strcmp(type, "hello") != 0) {
            snprintf(err, errlen, "the worker did not start with hello (got '%.40s')", type);
            rc = -1;
        } else {
            rc = ctl_probe_hello(p, m, err, errlen);
        }
    } else if (strcmp(type, "stdout") == 0 || strcmp(type, "stderr") == 0) {
        const char *d = json_string_value(json_object_get(m, "data"));
        if (d && type[3] == 'o')
            ctl_probe_keep(p->stdout_, &p->nout, d);
        else if (d)
            ctl_probe_keep(p->stderr_, &p->nerr, d);
    } else if (strcmp(type, "error") == 0) {
        const char *why = json_string_value(json_object_get(m, "error"));
        snprintf(err, errlen, "the worker refused the run: %.200s", why ? why : "?");
        rc = -1;
    } else if (strcmp(type, "exit") == 0) {
        const char *verdict = json_string_value(json_object_get(m, "verdict"));
        json_t *st = json_object_get(m, "status");
        if (verdict == NULL || strcmp(verdict, "ok") != 0 || !json_is_integer(st) ||
            json_integer_value(st) != 0) {
            snprintf(err, errlen, "the run ended with verdict %s, status %lld%s%.200s",
                     verdict ? verdict : "?", json_is_integer(st) ? json_integer_value(st) : -1LL,
                     p->nerr ? "; stderr: " : "", p->stderr_);
            rc = -1;
        } else if (p->o->expect_stdout && strcmp(p->stdout_, p->o->expect_stdout) != 0) {
            snprintf(err, errlen, "the run printed '%.100s', not '%.100s'", p->stdout_,
                     p->o->expect_stdout);
            rc = -1;
        } else {
            p->phase = CTL_PROBE_DONE;
            rc = 1;
        }
    }
    json_decref(m);
    return rc;
}

/* Reads and handles frames until the probe passes (1) or fails (-1). */
static int ctl_probe_loop(ctl_probe_t *p, char *err, size_t errlen)
{
    char rerr[160];
    for (;;) {
        ws_frame_t f;
        long fl = ws_frame_parse((uint8_t *)buf_head(&p->in), buf_size(&p->in), WS_ROLE_CLIENT,
                                 CTL_PROBE_MAX_MSG, &f);
        if (fl < 0) {
            snprintf(err, errlen, "the worker broke the websocket protocol (%ld)", -fl);
            return -1;
        }
        if (fl > 0) {
            int r = ws_msg_feed(&p->msg, &f);
            int rc = 0;
            if (r < 0) {
                snprintf(err, errlen, "bad message from the worker (%d)", -r);
                rc = -1;
            } else if (r == WS_MSG_DONE) {
                rc = ctl_probe_message(p, buf_head(&p->msg.data), buf_size(&p->msg.data), err,
                                       errlen);
                ws_msg_reset(&p->msg);
            } else if (r == WS_MSG_CONTROL && f.opcode == WS_OP_PING) {
                rc = ctl_probe_send(p, WS_OP_PONG, f.payload, (size_t)f.payload_len, err, errlen);
            } else if (r == WS_MSG_CONTROL && f.opcode == WS_OP_CLOSE) {
                uint16_t code = 1005;
                ws_close_parse(f.payload, (size_t)f.payload_len, &code);
                snprintf(err, errlen, "the worker closed the websocket with %u", code);
                rc = -1;
            }
            buf_consume(&p->in, (size_t)fl);
            if (rc != 0)
                return rc;
            continue;
        }
        char *w = buf_reserve(&p->in, 16384);
        ssize_t n = w ? ctl_net_read(p->fd, w, 16384, p->deadline, rerr, sizeof(rerr)) : -1;
        if (n <= 0) {
            snprintf(err, errlen, "waiting for %s: %s",
                     p->phase == CTL_PROBE_HELLO ? "the hello" : "the run's exit",
                     n == 0 ? "the worker closed the connection"
                     : w    ? (strcmp(rerr, "timed out") ? rerr : "timed out")
                            : "out of memory");
            return -1;
        }
        buf_commit(&p->in, (size_t)n);
    }
}

int ctl_probe_run(const ctl_probe_opts_t *o, double *ms, char *err, size_t errlen)
{
    ctl_probe_t p = {.o = o, .fd = -1, .in = BUF_INIT, .out = BUF_INIT};
    char host[256], port[8], rerr[200];
    int rc = -1;
    p.deadline = ctl_now() + o->timeout_s;
    p.msg.max_size = CTL_PROBE_MAX_MSG;
    if (ctl_net_split(o->addr, host, sizeof(host), port, sizeof(port), err, errlen) < 0)
        return -1;
    p.fd = ctl_net_connect(host, port, p.deadline, rerr, sizeof(rerr));
    if (p.fd < 0) {
        snprintf(err, errlen, "%s", rerr);
        goto done;
    }
    if (ctl_probe_upgrade(&p, err, errlen) < 0 || ctl_probe_loop(&p, err, errlen) < 0)
        goto done;
    *ms = (ctl_now() - p.t_run) * 1000.0;
    rc = 0;
    /* A polite close; the answer is not waited for beyond a moment. */
    buf_reset(&p.out);
    if (ws_close_write(&p.out, WS_ROLE_CLIENT, WS_CLOSE_NORMAL, "probe done") == 0) {
        double d = ctl_now() + 0.5;
        ctl_net_write(p.fd, buf_head(&p.out), buf_size(&p.out), d < p.deadline ? d : p.deadline,
                      rerr, sizeof(rerr));
    }
done:
    if (p.fd >= 0)
        close(p.fd);
    buf_free(&p.in);
    buf_free(&p.out);
    ws_msg_free(&p.msg);
    return rc;
}
