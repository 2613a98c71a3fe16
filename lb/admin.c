/* admin: a deliberately small HTTP/1.1 server for the lb's admin API.
 *
 * One request per connection, answered with Connection: close. Heads are
 * bounded in size and in time (a client that has not sent a complete
 * request within ADMIN_IDLE_TIMEOUT is dropped), connections are admitted
 * by lb/acap.c (a total and a per-address cap, where idle connections make
 * way for newcomers and a request with the token is never displaced, so a
 * pile of silent connections cannot lock out /healthz or the token holder),
 * and after the answer the socket is half-closed and drained before
 * close(2) so a request body left unread cannot turn the close into a reset
 * that destroys the answer in flight.
 * Runs on the main loop; the table is only read here, apart from the
 * admin_drain flag. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>
#include <jansson.h>

#include "acap.h"
#include "acc.h"
#include "atomic.h"
#include "admin.h"
#include "ct.h"
#include "fleet.h"
#include "http.h"
#include "log.h"
#include "met_names.h"
#include "util.h"

#define ADMIN_MAX_HEAD      8192
#define ADMIN_IDLE_TIMEOUT  2.0 /* s, from accept to a complete request head */
#define ADMIN_WRITE_TIMEOUT 5.0 /* s, to write the answer */
#define ADMIN_LINGER        1.0 /* s, draining the client after the answer */
#define ADMIN_MAX_CONNS     64
#define ADMIN_PER_ADDR      8  /* connections one address (IPv6 /64) may hold */
#define ADMIN_ACCEPTS       16 /* per wakeup, so one burst cannot hog the loop */

enum admin_phase { ADMIN_READ, ADMIN_WRITE, ADMIN_LINGERING };

typedef struct admin_conn {
    ev_io io;
    ev_timer tmo;
    admin_t *a;
    int fd;
    enum admin_phase phase;
    buf_t in, out;
    acap_peer_t peer;
    struct admin_conn *next, **pprev;
} admin_conn_t;

struct admin {
    struct ev_loop *loop;
    be_table_t *t;
    lbs_t *stats;
    char *token; /* NULL = no auth */
    int open_reads;
    met_registry_t *extra;
    enum admin_life (*life)(void *ud);
    void *life_ud;
    int lfd;
    sock_addr_t local;
    acc_t *acc; /* accepts on lfd */
    ev_prepare reap;
    admin_conn_t *conns; /* open */
    admin_conn_t *dead;  /* closed, freed by the reap watcher */
    int nconns;
    uint64_t seq; /* accept order, for acap */
};

/* For lbs_t's counters only: backends are read through be.h. */

/* ---- rendering (pure) ----------------------------------------------------- */

static const char *admin_state_name(const be_t *b)
{
    enum be_state st = be_state(b);
    if (st == BE_DOWN)
        return "down";
    if (st == BE_DRAINING || be_in_admin_drain(b))
        return "draining";
    return "up";
}

/* What the worker published besides its counts, null while nothing is
 * known (a static backend without Redis). Main thread: discovery writes
 * these fields on the same loop. */
static int admin_backend_info(json_t *j, const be_t *b)
{
    int known = be_has_remote(b);
    uint64_t ts = be_remote_ts_ms(b), now = fleet_wall_ms(), started = be_started_ms(b);
    json_int_t age = now > ts ? (json_int_t)(now - ts) : 0; /* a clock step is not negative */
    const char *version = be_version(b);
    return json_object_set_new(j, "health", json_string(be_state_name(be_state(b)))) ||
           json_object_set_new(j, "evals_running",
                               known ? json_integer(be_evals_running(b)) : json_null()) ||
           json_object_set_new(j, "evals_queued",
                               known ? json_integer(be_evals_queued(b)) : json_null()) ||
           json_object_set_new(j, "version",
                               known && version[0] ? json_string(version) : json_null()) ||
           json_object_set_new(j, "started_ms",
                               known && started ? json_integer((json_int_t)started)
                                                : json_null()) ||
           json_object_set_new(j, "heartbeat_age_ms",
                               known && ts ? json_integer(age) : json_null()) ||
           json_object_set_new(j, "rebalance_shed",
                               known ? json_integer(be_rebalance_shed(b)) : json_null());
}

static json_t *admin_backend_json(const be_t *b)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:I, s:I, s:s, s:b}", "id", be_id(b),
                     "addr", be_addr_str(b), "state", admin_state_name(b), "active",
                     (json_int_t)be_active(b), "total", (json_int_t)be_total(b), "failures",
                     (json_int_t)be_failures(b), "weight", (int)be_weight(b), "load",
                     (json_int_t)be_load(b), "conns_global", (json_int_t)be_conns(b), "source",
                     be_source(b) == BE_STATIC ? "static" : "redis", "admin_drain",
                     be_in_admin_drain(b));
}

/* /stats "affinity": picks by what became of the key's owner, and those the
 * algorithm made instead (all 0 without --affinity). */
static int admin_affinity_json(json_t *root, lbs_t *s)
{
    json_t *a = json_object();
    if (a == NULL)
        return -1;
    for (int w = 0; w < AFF_WHY__COUNT; w++)
        if (json_object_set_new(a, aff_why_name(w),
                                json_integer((json_int_t)AT_LOAD(&s->aff[w])))) {
            json_decref(a);
            return -1;
        }
    if (json_object_set_new(a, "fallback", json_integer((json_int_t)AT_LOAD(&s->aff_fallback)))) {
        json_decref(a);
        return -1;
    }
    return json_object_set_new(root, "affinity", a) ? -1 : 0;
}

/* Appends the /stats document. Takes the table's read lock. */
int admin_render_stats(be_table_t *t, lbs_t *s, const char *algo, buf_t *out)
{
    int rc = -1;
    char *txt = NULL;
    json_t *drained = NULL;
    json_t *root =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "accepted",
                  (json_int_t)AT_LOAD(&s->accepted), "active", (json_int_t)AT_LOAD(&s->active),
                  "handshakes", (json_int_t)AT_LOAD(&s->handshakes), "requests",
                  (json_int_t)AT_LOAD(&s->requests), "bytes_in", (json_int_t)AT_LOAD(&s->bytes_in),
                  "bytes_out", (json_int_t)AT_LOAD(&s->bytes_out), "algo", algo ? algo : "");
    json_t *errs = json_object();
    json_t *bes = json_array();
    json_t *adm = json_pack("{s:I, s:I, s:I}", "refused", (json_int_t)AT_LOAD(&s->admin_refused),
                            "evicted", (json_int_t)AT_LOAD(&s->admin_evicted), "timed_out",
                            (json_int_t)AT_LOAD(&s->admin_timed_out));
    json_t *wsa = json_pack(
        "{s:I, s:I, s:I, s:I, s:I}", "handshakes_moved", (json_int_t)AT_LOAD(&s->handshakes_moved),
        "handshakes_abandoned", (json_int_t)AT_LOAD(&s->handshakes_abandoned), "down_closed",
        (json_int_t)AT_LOAD(&s->down_closed), "pings_sent", (json_int_t)AT_LOAD(&s->pings_sent),
        "ping_timeouts", (json_int_t)AT_LOAD(&s->ping_timeouts));
    if (!root || !errs || !bes || !adm || !wsa) {
        json_decref(wsa);
        goto done;
    }
    int bad = json_object_set_new(root, "admin_conns", adm); /* takes adm, even on failure */
    bad |= json_object_set_new(root, "config_generation",
                               json_integer((json_int_t)AT_LOAD(&s->config_generation)));
    bad |= json_object_set_new(root, "config_loaded_at",
                               json_integer((json_int_t)AT_LOAD(&s->config_loaded_ms) / 1000));
    bad |= json_object_set_new(root, "reload_failed",
                               json_integer((json_int_t)AT_LOAD(&s->reload_failed)));
    adm = NULL;
    bad |= json_object_set_new(root, "ws_closes", wsa); /* takes wsa, even on failure */
    if (bad)
        goto done;
    for (int e = 0; e < LBS_ERR__COUNT; e++)
        if (json_object_set_new(errs, lbs_err_name(e),
                                json_integer((json_int_t)AT_LOAD(&s->errors[e]))))
            goto done;
    if (admin_affinity_json(root, s) < 0)
        goto done;
    be_table_rdlock(t);
    for (size_t i = 0; i < be_table_count(t); i++) {
        json_t *bj = admin_backend_json(be_table_at(t, i));
        if (bj && admin_backend_info(bj, be_table_at(t, i)) < 0) {
            json_decref(bj);
            bj = NULL;
        }
        if (json_array_append_new(bes, bj)) {
            be_table_unlock(t);
            goto done;
        }
    }
    be_table_unlock(t);
    /* Every id drained through this API, present or away (main thread). */
    drained = json_array();
    for (size_t i = 0; drained && i < be_admin_drained_count(t); i++)
        if (json_array_append_new(drained, json_string(be_admin_drained_at(t, i))))
            goto done;
    if (!drained || json_object_set(root, "errors", errs) ||
        json_object_set(root, "backends", bes) || json_object_set(root, "admin_drained", drained))
        goto done;
    txt = json_dumps(root, JSON_COMPACT);
    if (txt && buf_append_str(out, txt) == 0 && buf_append(out, "\n", 1) == 0)
        rc = 0;
done:
    free(txt);
    json_decref(drained);
    json_decref(adm);
    json_decref(errs);
    json_decref(bes);
    json_decref(root);
    return rc;
}

/* Prometheus label values escape backslash, double quote and newline. */
static int admin_label(buf_t *out, const char *v)
{
    for (; *v; v++) {
        const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        if (esc ? buf_append_str(out, esc) : buf_append(out, v, 1))
            return -1;
    }
    return 0;
}

typedef int64_t (*admin_be_val)(const be_t *b);
static int64_t admin_v_up(const be_t *b)
{
    return be_usable(b);
}
static int64_t admin_v_draining(const be_t *b)
{
    return strcmp(admin_state_name(b), "draining") == 0;
}
static int64_t admin_v_active(const be_t *b)
{
    return be_active(b);
}
static int64_t admin_v_total(const be_t *b)
{
    return (int64_t)be_total(b);
}
static int64_t admin_v_failures(const be_t *b)
{
    return (int64_t)be_failures(b);
}
static int64_t admin_v_weight(const be_t *b)
{
    return be_weight(b);
}
static int64_t admin_v_load(const be_t *b)
{
    return be_load(b);
}
static int64_t admin_v_shed(const be_t *b)
{
    return be_rebalance_shed(b);
}
static int64_t admin_v_global(const be_t *b)
{
    return be_conns(b);
}

static const struct {
    const char *name, *type, *help;
    admin_be_val fn;
} admin_be_series[] = {
    {MN_BE_UP, "gauge", "1 when the backend takes new connections", admin_v_up},
    {MN_BE_DRAINING, "gauge", "1 while the backend is draining (worker or admin)",
     admin_v_draining},
    {MN_BE_ACTIVE, "gauge", "Connections this lb has open to the backend", admin_v_active},
    {MN_BE_CONNECTIONS, "counter", "Connections this lb sent to the backend", admin_v_total},
    {MN_BE_FAILURES, "counter", "Connect and health-check failures", admin_v_failures},
    {MN_BE_WEIGHT, "gauge", "Configured weight", admin_v_weight},
    {MN_BE_LOAD, "gauge", "Evaluations running and queued, as the worker publishes", admin_v_load},
    {MN_BE_GLOBAL, "gauge", "Connections on the backend from every lb, as balanced on",
     admin_v_global},
    {MN_BE_REBALANCE_SHED, "counter",
     "Websockets the worker closed with 1012 to rebalance (its --rebalance), as it publishes",
     admin_v_shed},
};

/* Lb totals through a throwaway met registry (so the rendering stays pure
 * and types are right), then per-backend series by hand (met has no
 * per-render series), then the caller's registry. */
int admin_render_metrics(be_table_t *t, lbs_t *s, met_registry_t *extra, buf_t *out)
{
    int rc = -1;
    met_registry_t *r = met_create();
    if (!r)
        return -1;
    met_set_legacy(r, extra ? met_legacy(extra) : 1);
    static const struct {
        const char *name, *help;
        size_t off;
    } totals[] = {
        {MN_LB_ACCEPTED, "Client connections accepted", offsetof(lbs_t, accepted)},
        {MN_LB_HANDSHAKES, "Websocket upgrades answered 101", offsetof(lbs_t, handshakes)},
        {MN_LB_REQUESTS, "Plain HTTP requests proxied", offsetof(lbs_t, requests)},
        {MN_LB_RECEIVED_BYTES, "Bytes from clients to backends", offsetof(lbs_t, bytes_in)},
        {MN_LB_SENT_BYTES, "Bytes from backends to clients", offsetof(lbs_t, bytes_out)},
        {MN_LB_HANDSHAKES_MOVED, "Requests waiting on a backend marked down, sent to another one",
         offsetof(lbs_t, handshakes_moved)},
        {MN_LB_HANDSHAKES_ABANDONED,
         "Websocket upgrades whose client left while the backend had not answered",
         offsetof(lbs_t, handshakes_abandoned)},
        {MN_LB_DOWN_CLOSED,
         "Tunnels closed (websockets with 1014) on a backend down past --down-close-ms",
         offsetof(lbs_t, down_closed)},
        {MN_LB_PINGS_SENT, "The lb's own pings to websocket clients", offsetof(lbs_t, pings_sent)},
        {MN_LB_PING_TIMEOUTS, "Websocket clients closed for answering no ping in time",
         offsetof(lbs_t, ping_timeouts)},
    };
    for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++) {
        met_counter_t *c = met_counter(r, totals[i].name, NULL, totals[i].help);
        if (!c)
            goto done;
        met_inc(c, AT_LOAD((uint64_t *)((char *)s + totals[i].off)));
    }
    met_gauge_t *g = met_gauge(r, MN_LB_ACTIVE, NULL, "Client connections open");
    if (!g)
        goto done;
    met_set(g, AT_LOAD(&s->active));
    for (int e = 0; e < LBS_ERR__COUNT; e++) {
        char label[64];
        snprintf(label, sizeof(label), "kind=\"%s\"", lbs_err_name(e));
        met_counter_t *c = met_counter(r, MN_LB_ERRORS, label, "Errors by kind");
        if (!c)
            goto done;
        met_inc(c, AT_LOAD(&s->errors[e]));
    }
    for (int w = 0; w < AFF_WHY__COUNT; w++) {
        char label[64];
        snprintf(label, sizeof(label), "result=\"%s\"", aff_why_name(w));
        met_counter_t *c =
            met_counter(r, MN_LB_AFFINITY, label,
                        "Affinity picks: hit (the key's owner took it) or why the owner was "
                        "passed over");
        if (!c)
            goto done;
        met_inc(c, AT_LOAD(&s->aff[w]));
    }
    met_counter_t *fb = met_counter(r, MN_LB_AFFINITY_FALLBACK, NULL,
                                    "Affinity picks the algorithm made: no key, or no backend "
                                    "on the ring within the load bound");
    if (!fb)
        goto done;
    met_inc(fb, AT_LOAD(&s->aff_fallback));
    static const struct {
        const char *label;
        size_t off;
    } dropped[] = {
        {"why=\"refused\"", offsetof(lbs_t, admin_refused)},
        {"why=\"evicted\"", offsetof(lbs_t, admin_evicted)},
        {"why=\"timed_out\"", offsetof(lbs_t, admin_timed_out)},
    };
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
        met_counter_t *c =
            met_counter(r, MN_ADMIN_DROPPED, dropped[i].label,
                        "Admin API connections closed unanswered: no room, displaced, or silent");
        if (!c)
            goto done;
        met_inc(c, AT_LOAD((uint64_t *)((char *)s + dropped[i].off)));
    }
    if (met_render(r, out) < 0)
        goto done;

    be_table_rdlock(t);
    size_t n = be_table_count(t);
    int bad = 0;
    for (size_t k = 0; k < sizeof(admin_be_series) / sizeof(admin_be_series[0]) && !bad; k++) {
        bad |= buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", admin_be_series[k].name,
                          admin_be_series[k].help, admin_be_series[k].name,
                          admin_be_series[k].type) < 0;
        for (size_t i = 0; i < n && !bad; i++) {
            be_t *b = be_table_at(t, i);
            bad |= buf_printf(out, "%s{backend=\"", admin_be_series[k].name) < 0;
            bad |= admin_label(out, be_id(b)) < 0;
            bad |= buf_printf(out, "\"} %lld\n", (long long)admin_be_series[k].fn(b)) < 0;
        }
    }
    be_table_unlock(t);
    if (bad)
        goto done;
    if (extra && met_render(extra, out) < 0)
        goto done;
    rc = 0;
done:
    met_free(r);
    return rc;
}

/* A front (an NLB's target check, a DNS health check) takes an lb out on
 * anything but 200, so 200 means a new client would be served: not
 * stopping, and some backend takes connections. Until discovery has read
 * Redis once, an empty table says "loading" rather than "no backend". */
int admin_render_health(be_table_t *t, enum admin_life life, buf_t *out)
{
    if (life == ADMIN_LIFE_STOPPING)
        return buf_append_str(out, "shutting down: no longer accepting\n") < 0 ? -1 : 503;
    size_t usable = 0, down = 0, draining = 0;
    be_table_rdlock(t);
    size_t n = be_table_count(t);
    for (size_t i = 0; i < n; i++) {
        be_t *b = be_table_at(t, i);
        if (be_usable(b))
            usable++;
        else if (be_state(b) == BE_DOWN)
            down++;
        else
            draining++;
    }
    be_table_unlock(t);
    int rc;
    if (usable > 0)
        rc = buf_append_str(out, "ok\n");
    else if (life == ADMIN_LIFE_LOADING)
        rc = buf_append_str(out, "loading: waiting for the first discovery from Redis\n");
    else
        rc = buf_printf(out, "no usable backend: %zu known, %zu down, %zu draining\n", n, down,
                        draining);
    if (rc < 0)
        return -1;
    return usable > 0 ? 200 : 503;
}

/* ---- connections ---------------------------------------------------------- */

static void admin_reap_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    admin_t *a = container_of(w, admin_t, reap);
    while (a->dead) {
        admin_conn_t *c = a->dead;
        a->dead = c->next;
        buf_free(&c->in);
        buf_free(&c->out);
        free(c);
    }
    ev_prepare_stop(loop, w);
}

/* Closes c now and queues its memory for the reap watcher, so callers may
 * still be inside c's own callback. */
static void admin_close(admin_conn_t *c)
{
    admin_t *a = c->a;
    ev_io_stop(a->loop, &c->io);
    ev_timer_stop(a->loop, &c->tmo);
    close(c->fd);
    c->fd = -1;
    if (c->next)
        c->next->pprev = c->pprev;
    *c->pprev = c->next;
    a->nconns--;
    c->next = a->dead;
    a->dead = c;
    ev_prepare_start(a->loop, &a->reap);
}

static void admin_set_io(admin_conn_t *c, int events)
{
    ev_io_stop(c->a->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->a->loop, &c->io);
}

static void admin_reply(admin_conn_t *c, int status, const char *ctype, const char *body,
                        size_t len, const char *extra)
{
    buf_reset(&c->out);
    if (http_write_response(&c->out, status, ctype, body, len, extra) < 0) {
        admin_close(c);
        return;
    }
    c->phase = ADMIN_WRITE;
    if (c->peer.state == ACAP_IDLE)
        c->peer.state = ACAP_ANSWERING;
    admin_set_io(c, EV_WRITE);
    ev_timer_stop(c->a->loop, &c->tmo);
    ev_timer_set(&c->tmo, ADMIN_WRITE_TIMEOUT, 0.);
    ev_timer_start(c->a->loop, &c->tmo);
}

static void admin_reply_str(admin_conn_t *c, int status, const char *json, const char *extra)
{
    admin_reply(c, status, "application/json", json, strlen(json), extra);
}

static void admin_reply_json(admin_conn_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void admin_reply_json(admin_conn_t *c, int status, const char *fmt, ...)
{
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(body))
        n = snprintf(body, sizeof(body), "{\"error\":\"internal\"}\n");
    admin_reply(c, status, "application/json", body, (size_t)n, NULL);
}

static int admin_authorized(const admin_t *a, const http_head_t *h)
{
    if (!a->token)
        return 1;
    const http_str_t *v = http_header_get(h, "Authorization");
    if (!v || v->n < 7 || strncasecmp(v->p, "Bearer ", 7) != 0)
        return 0;
    const char *p = v->p + 7;
    size_t n = v->n - 7;
    while (n && *p == ' ')
        p++, n--;
    while (n && p[n - 1] == ' ')
        n--;
    /* Constant time in the token's contents (common/ct.h): timing reveals
     * nothing but the (configured, not secret) length check. */
    return ct_eq(a->token, strlen(a->token), p, n);
}

static int admin_hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes of an id taken from the path into out (NUL-ended);
 * -1 when malformed, empty, holding a NUL or too long. */
static int admin_unescape(const char *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)p[i];
        if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = admin_hexval(p[i + 1]), lo = admin_hexval(p[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        }
        if (ch == 0 || o + 1 >= outlen)
            return -1;
        out[o++] = (char)ch;
    }
    out[o] = 0;
    return o ? 0 : -1;
}

static void admin_backend_action(admin_conn_t *c, const http_head_t *h, const char *rest, size_t n)
{
    admin_t *a = c->a;
    const char *slash = memrchr(rest, '/', n);
    if (!slash) {
        admin_reply_json(c, 404, "{\"error\":\"not found\"}\n");
        return;
    }
    http_str_t action = {slash + 1, (size_t)(rest + n - slash - 1)};
    int drain = http_str_eq(action, "drain"), enable = http_str_eq(action, "enable");
    if (!drain && !enable) {
        admin_reply_json(c, 404, "{\"error\":\"not found\"}\n");
        return;
    }
    if (h->method != HTTP_POST) {
        admin_reply_str(c, 405, "{\"error\":\"method not allowed\"}\n", "Allow: POST\r\n");
        return;
    }
    char id[BE_ID_MAX];
    be_t *b = NULL;
    int was = 0;
    if (admin_unescape(rest, (size_t)(slash - rest), id, sizeof(id)) == 0) {
        b = be_find(a->t, id);
        was = be_admin_drained(a->t, id);
    }
    /* A drained id is known while it is away: it can be enabled then. */
    if (!b && !was) {
        admin_reply_json(c, 404, "{\"error\":\"unknown backend\"}\n");
        return;
    }
    /* Logged there, once, when it changes something. */
    if (be_admin_drain(a->t, id, drain) < 0) {
        admin_reply_json(c, 503, "{\"error\":\"too many drained backends\"}\n");
        return;
    }
    json_t *j = json_pack("{s:s, s:s, s:b}", "id", id, "state", b ? admin_state_name(b) : "absent",
                          "admin_drain", drain);
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (txt) {
        buf_t body = BUF_INIT;
        if (buf_printf(&body, "%s\n", txt) == 0)
            admin_reply(c, 200, "application/json", buf_head(&body), buf_size(&body), NULL);
        else
            admin_close(c);
        buf_free(&body);
    } else {
        admin_reply_json(c, 500, "{\"error\":\"internal\"}\n");
    }
    free(txt);
}

static void admin_route(admin_conn_t *c, const http_head_t *h)
{
    admin_t *a = c->a;
    /* The token holder's request is never displaced by newcomers (acap). */
    c->peer.state = a->token && admin_authorized(a, h) ? ACAP_AUTHED : ACAP_ANSWERING;
    if (!(a->open_reads && h->method == HTTP_GET) && !admin_authorized(a, h)) {
        admin_reply_str(c, 401, "{\"error\":\"unauthorized\"}\n", "WWW-Authenticate: Bearer\r\n");
        return;
    }
    http_str_t p = h->path;
    int get = h->method == HTTP_GET;
    if (http_str_eq(p, "/healthz") || http_str_eq(p, "/stats") || http_str_eq(p, "/metrics") ||
        http_str_eq(p, "/livez")) {
        if (!get) {
            admin_reply_str(c, 405, "{\"error\":\"method not allowed\"}\n", "Allow: GET\r\n");
            return;
        }
        if (http_str_eq(p, "/livez")) {
            admin_reply(c, 200, "text/plain", "ok\n", 3, NULL);
            return;
        }
        buf_t body = BUF_INIT;
        int rc;
        const char *ctype;
        if (http_str_eq(p, "/healthz")) {
            int st = admin_render_health(a->t, a->life ? a->life(a->life_ud) : ADMIN_LIFE_SERVING,
                                         &body);
            if (st > 0)
                admin_reply(c, st, "text/plain", buf_head(&body), buf_size(&body), NULL);
            else
                admin_reply_json(c, 500, "{\"error\":\"internal\"}\n");
            buf_free(&body);
            return;
        }
        if (http_str_eq(p, "/stats")) {
            rc = admin_render_stats(a->t, a->stats, be_table_algo(a->t)->name, &body);
            ctype = "application/json";
        } else {
            rc = admin_render_metrics(a->t, a->stats, a->extra, &body);
            ctype = "text/plain; version=0.0.4";
        }
        if (rc == 0)
            admin_reply(c, 200, ctype, buf_head(&body), buf_size(&body), NULL);
        else
            admin_reply_json(c, 500, "{\"error\":\"internal\"}\n");
        buf_free(&body);
        return;
    }
    static const char pre[] = "/backends/";
    if (p.n > sizeof(pre) - 1 && memcmp(p.p, pre, sizeof(pre) - 1) == 0) {
        admin_backend_action(c, h, p.p + sizeof(pre) - 1, p.n - (sizeof(pre) - 1));
        return;
    }
    admin_reply_json(c, 404, "{\"error\":\"not found\"}\n");
}

/* After the answer: discard whatever the client still sends until its EOF. */
static void admin_on_linger(admin_conn_t *c)
{
    char sink[2048];
    for (int i = 0; i < 16; i++) {
        ssize_t n = read(c->fd, sink, sizeof(sink));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0)
            break;
    }
    admin_close(c); /* EOF, error, or a client that keeps talking */
}

static void admin_on_read(admin_conn_t *c)
{
    for (;;) {
        char *p = buf_reserve(&c->in, 2048);
        if (!p) {
            admin_close(c);
            return;
        }
        ssize_t n = read(c->fd, p, 2048);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            if (n == 0 && buf_size(&c->in) > 0)
                log_debug("admin: client closed mid-head");
            admin_close(c);
            return;
        }
        buf_commit(&c->in, (size_t)n);
        http_head_t h;
        int r = http_parse_request(buf_head(&c->in), buf_size(&c->in), ADMIN_MAX_HEAD, &h);
        if (r == HTTP_PARSE_AGAIN)
            continue;
        if (r == HTTP_PARSE_ERROR)
            admin_reply_json(c, 400, "{\"error\":\"bad request\"}\n");
        else if (r < 0)
            admin_reply_json(c, 431, "{\"error\":\"request head too large\"}\n");
        else
            admin_route(c, &h);
        return;
    }
}

static void admin_on_write(admin_conn_t *c)
{
    while (buf_size(&c->out) > 0) {
        ssize_t n = write(c->fd, buf_head(&c->out), buf_size(&c->out));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            admin_close(c);
            return;
        }
        buf_consume(&c->out, (size_t)n);
    }
    /* Answer sent: half-close and wait for the client's EOF. */
    shutdown(c->fd, SHUT_WR);
    buf_free(&c->in);
    c->phase = ADMIN_LINGERING;
    c->peer.state = ACAP_DONE;
    admin_set_io(c, EV_READ);
    ev_timer_stop(c->a->loop, &c->tmo);
    ev_timer_set(&c->tmo, ADMIN_LINGER, 0.);
    ev_timer_start(c->a->loop, &c->tmo);
}

static void admin_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    admin_conn_t *c = container_of(w, admin_conn_t, io);
    if (c->phase == ADMIN_WRITE)
        admin_on_write(c);
    else if (c->phase == ADMIN_LINGERING)
        admin_on_linger(c);
    else
        admin_on_read(c);
}

static void admin_tmo_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    admin_conn_t *c = container_of(w, admin_conn_t, tmo);
    if (c->phase == ADMIN_READ)
        lbs_inc(&c->a->stats->admin_timed_out);
    if (c->phase == ADMIN_READ && buf_size(&c->in) > 0) {
        /* A slow head gets its 408 (best effort; admin_reply gives the
         * write its own deadline, so a stuck client still goes). */
        admin_reply_json(c, 408, "{\"error\":\"request timeout\"}\n");
        buf_free(&c->in);
        return;
    }
    admin_close(c);
}

/* Whether the newcomer described by p gets a connection: may close another
 * one to make room (acap.h). 0 = admit, -1 = refuse. */
static int admin_admit(admin_t *a, const acap_peer_t *p)
{
    const acap_peer_t *v[ADMIN_MAX_CONNS];
    admin_conn_t *cv[ADMIN_MAX_CONNS];
    size_t n = 0, victim = 0;
    for (admin_conn_t *c = a->conns; c != NULL && n < ADMIN_MAX_CONNS; c = c->next) {
        cv[n] = c;
        v[n++] = &c->peer;
    }
    acap_limits_t lim = {.max_conns = ADMIN_MAX_CONNS, .per_addr = ADMIN_PER_ADDR};
    switch (acap_admit(&lim, v, n, p, &victim)) {
    case ACAP_ADMIT:
        return 0;
    case ACAP_EVICT:
        /* Not inside the victim's callbacks: closing it here is safe. */
        lbs_inc(&a->stats->admin_evicted);
        admin_close(cv[victim]);
        return 0;
    default:
        lbs_inc(&a->stats->admin_refused);
        return -1;
    }
}

/* A new connection from the acceptor: admitted by acap, or closed. */
static void admin_on_accept(acc_t *acc, int fd, const sock_addr_t *pa, void *ud)
{
    admin_t *a = ud;
    acap_peer_t peer = {.seq = ++a->seq, .state = ACAP_IDLE};
    const struct sockaddr *sa = (const struct sockaddr *)&pa->ss;
    if (lim_key_from_sa(sa, &peer.key) < 0)
        memset(&peer.key, 0, sizeof(peer.key));
    peer.loopback = (uint8_t)acap_is_loopback(sa);
    admin_conn_t *c = admin_admit(a, &peer) == 0 ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        close(fd); /* no room, nothing to displace: not worth more */
        return;
    }
    c->peer = peer;
    c->a = a;
    c->fd = fd;
    c->phase = ADMIN_READ;
    c->next = a->conns;
    if (c->next)
        c->next->pprev = &c->next;
    c->pprev = &a->conns;
    a->conns = c;
    a->nconns++;
    ev_io_init(&c->io, admin_io_cb, fd, EV_READ);
    ev_io_start(a->loop, &c->io);
    ev_timer_init(&c->tmo, admin_tmo_cb, ADMIN_IDLE_TIMEOUT, 0.);
    ev_timer_start(a->loop, &c->tmo);
}

admin_t *admin_create(struct ev_loop *loop, be_table_t *t, lbs_t *stats, const admin_config_t *cfg,
                      char *err, size_t errlen)
{
    const char *listen = cfg && cfg->listen ? cfg->listen : "127.0.0.1:8081";
    char serr[SOCK_ERR_LEN];
    int e;
    sock_addr_t sa;
    if (sock_parse_addr(listen, &sa, serr, sizeof(serr)) < 0) {
        snprintf(err, errlen, "admin address: %s", serr);
        return NULL;
    }
    admin_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->lfd = -1;
    if (cfg && cfg->token && !(a->token = strdup(cfg->token))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    a->open_reads = cfg && cfg->open_reads;
    a->lfd = cfg && cfg->has_fd ? cfg->fd : sock_listen(&sa, 64, 0, serr, sizeof(serr));
    if (a->lfd < 0) {
        snprintf(err, errlen, "%s", serr);
        goto fail;
    }
    sock_local_addr(a->lfd, &a->local);
    a->loop = loop;
    a->t = t;
    a->stats = stats;
    a->extra = cfg ? cfg->metrics : NULL;
    a->life = cfg ? cfg->life : NULL;
    a->life_ud = cfg ? cfg->life_ud : NULL;
    ev_prepare_init(&a->reap, admin_reap_cb);
    acc_config_t ac = {
        .fd = a->lfd, .batch = ADMIN_ACCEPTS, .name = "admin", .on_fd = admin_on_accept, .ud = a};
    if ((a->acc = acc_create(loop, &ac, err, errlen)) == NULL)
        goto fail;
    acc_start(a->acc);
    return a;
fail:
    e = errno; /* EADDRINUSE tells the caller the address is taken */
    if (a->lfd >= 0 && !(cfg && cfg->has_fd))
        close(a->lfd);
    free(a->token);
    free(a);
    errno = e;
    return NULL;
}

int admin_set_token(admin_t *a, const char *token)
{
    char *t = NULL;
    if (token != NULL && (t = strdup(token)) == NULL)
        return -1;
    if (a->token) /* scrub the secret before handing the memory back */
        explicit_bzero(a->token, strlen(a->token));
    free(a->token);
    a->token = t;
    return 0;
}

int admin_listen_fd(const admin_t *a)
{
    return a->lfd;
}

int admin_local_addr(const admin_t *a, sock_addr_t *out)
{
    *out = a->local;
    return 0;
}

void admin_free(admin_t *a)
{
    if (!a)
        return;
    acc_free(a->acc);
    close(a->lfd);
    while (a->conns)
        admin_close(a->conns);
    admin_reap_cb(a->loop, &a->reap, 0);
    if (a->token) /* scrub the secret before handing the memory back */
        explicit_bzero(a->token, strlen(a->token));
    free(a->token);
    free(a);
}
