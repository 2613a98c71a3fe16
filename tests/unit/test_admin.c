/* Unit tests for lb/admin.c: the pure renderers, and the HTTP server driven
 * by a client thread over loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>

#include "admin.h"
#include "be.h"
#include "lbs.h"
#include "fleet.h"
#include "met_names.h"
#include "log.h"
#include "sock.h"

typedef struct fixture {
    be_table_t *t;
    be_t *b0, *b1, *w;
    lbs_t stats;
} fixture_t;

static int fixture_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->t = be_table_create(be_algo_find("leastload"), 0);
    sock_addr_t a;
    sock_parse_addr("127.0.0.1:9001", &a, NULL, 0);
    f->b0 = be_add(f->t, "b0", &a, 2, BE_STATIC);
    sock_parse_addr("127.0.0.1:9002", &a, NULL, 0);
    f->b1 = be_add(f->t, "b1", &a, 1, BE_STATIC);
    sock_parse_addr("[::1]:9003", &a, NULL, 0);
    f->w = be_add(f->t, "w:\"1\"", &a, 1, BE_DISCOVERED);
    f->stats.accepted = 10;
    f->stats.active = 3;
    f->stats.handshakes = 7;
    f->stats.requests = 2;
    f->stats.bytes_in = 1234;
    f->stats.bytes_out = 5678;
    f->stats.errors[LBS_ERR_NO_BACKEND] = 4;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture_t *f = *state;
    be_table_free(f->t);
    free(f);
    return 0;
}

static json_t *backend_by_id(json_t *root, const char *id)
{
    json_t *arr = json_object_get(root, "backends"), *v;
    size_t i;
    json_array_foreach(arr, i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "id")), id) == 0)
            return v;
    }
    return NULL;
}

static void test_render_stats(void **state)
{
    fixture_t *f = *state;
    be_t *held = be_pick(f->t, NULL, 0);
    be_update_remote(f->t, f->b1, 9, 2, 100);
    be_update_info(f->b1, 1, 1, 50, "9.8.7");
    uint64_t before = fleet_wall_ms();
    be_event(f->t, f->w, BE_EV_CHECK_FAIL, "test");
    be_event(f->t, f->w, BE_EV_CHECK_FAIL, "test");
    be_event(f->t, f->b0, BE_EV_ADMIN_DRAIN, "test");

    buf_t out = BUF_INIT;
    assert_int_equal(admin_render_stats(f->t, &f->stats, "leastload", &out), 0);
    json_error_t jerr;
    json_t *root = json_loadb(buf_head(&out), buf_size(&out), 0, &jerr);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(root, "accepted")), 10);
    assert_int_equal(json_integer_value(json_object_get(root, "active")), 3);
    assert_int_equal(json_integer_value(json_object_get(root, "handshakes")), 7);
    assert_int_equal(json_integer_value(json_object_get(root, "bytes_out")), 5678);
    assert_string_equal(json_string_value(json_object_get(root, "algo")), "leastload");
    json_t *errs = json_object_get(root, "errors");
    assert_int_equal(json_object_size(errs), LBS_ERR__COUNT);
    assert_int_equal(json_integer_value(json_object_get(errs, "no_backend")), 4);
    assert_int_equal(json_integer_value(json_object_get(errs, "bad_request")), 0);
    assert_int_equal(json_array_size(json_object_get(root, "backends")), 3);

    json_t *b0 = backend_by_id(root, "b0"), *b1 = backend_by_id(root, "b1");
    json_t *w = backend_by_id(root, "w:\"1\"");
    assert_non_null(b0);
    assert_non_null(b1);
    assert_non_null(w);
    assert_string_equal(json_string_value(json_object_get(b0, "state")), "draining");
    assert_string_equal(json_string_value(json_object_get(b0, "addr")), "127.0.0.1:9001");
    assert_string_equal(json_string_value(json_object_get(b0, "source")), "static");
    assert_int_equal(json_integer_value(json_object_get(b0, "weight")), 2);
    assert_string_equal(json_string_value(json_object_get(w, "state")), "down");
    assert_string_equal(json_string_value(json_object_get(w, "source")), "redis");
    assert_string_equal(json_string_value(json_object_get(w, "addr")), "[::1]:9003");
    assert_string_equal(json_string_value(json_object_get(b1, "state")), "up");
    assert_int_equal(json_integer_value(json_object_get(b1, "load")), 2);
    assert_int_equal(json_integer_value(json_object_get(b1, "conns_global")), 9);
    /* what the worker published beyond its counts: null while unknown */
    assert_string_equal(json_string_value(json_object_get(b0, "health")), "up");
    assert_string_equal(json_string_value(json_object_get(w, "health")), "down");
    assert_true(json_is_null(json_object_get(b0, "evals_running")));
    assert_true(json_is_null(json_object_get(b0, "version")));
    assert_true(json_is_null(json_object_get(b0, "heartbeat_age_ms")));
    assert_int_equal(json_integer_value(json_object_get(b1, "evals_running")), 1);
    assert_int_equal(json_integer_value(json_object_get(b1, "evals_queued")), 1);
    assert_string_equal(json_string_value(json_object_get(b1, "version")), "9.8.7");
    assert_int_equal(json_integer_value(json_object_get(b1, "started_ms")), 50);
    json_int_t age = json_integer_value(json_object_get(b1, "heartbeat_age_ms"));
    assert_true(age >= (json_int_t)(before - 100) && age <= (json_int_t)(fleet_wall_ms() - 100));
    json_t *picked = backend_by_id(root, be_id(held));
    assert_int_equal(json_integer_value(json_object_get(picked, "active")), 1);
    assert_int_equal(json_integer_value(json_object_get(picked, "total")), 1);
    json_decref(root);
    buf_free(&out);
    be_release(f->t, held);
}

static void test_render_metrics(void **state)
{
    fixture_t *f = *state;
    met_registry_t *extra = met_create();
    double bounds[] = {0.001, 0.01, 0.1};
    met_hist_t *hs =
        met_hist(extra, MN_LB_HANDSHAKE_DURATION, NULL, "Handshake latency", bounds, 3);
    met_observe(hs, 0.005);
    be_update_remote(f->t, f->b1, 9, 2, 100);

    buf_t out = BUF_INIT;
    assert_int_equal(admin_render_metrics(f->t, &f->stats, extra, &out), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    const char *txt = buf_head(&out);
    assert_non_null(strstr(txt, "# TYPE wslb_lb_accepted_total counter\n"));
    assert_non_null(strstr(txt, "wslb_lb_accepted_total 10\n"));
    assert_non_null(strstr(txt, "wslb_lb_active_connections 3\n"));
    assert_non_null(strstr(txt, "wslb_lb_errors_total{kind=\"no_backend\"} 4\n"));
    assert_non_null(strstr(txt, "# TYPE wslb_backend_connections_total counter\n"));
    assert_non_null(strstr(txt, "wslb_backend_up{backend=\"b0\"} 1\n"));
    assert_non_null(strstr(txt, "wslb_backend_global_connections{backend=\"b1\"} 9\n"));
    assert_non_null(strstr(txt, "wslb_backend_load{backend=\"b1\"} 2\n"));
    /* label values are escaped */
    assert_non_null(strstr(txt, "wslb_backend_weight{backend=\"w:\\\"1\\\"\"} 1\n"));
    assert_non_null(strstr(txt, "wslb_lb_handshake_duration_seconds_bucket{le=\"0.01\"} 1\n"));
    assert_non_null(strstr(txt, "wslb_lb_received_bytes_total 1234\n"));
    /* The legacy names ride along while the registry says so, in their units. */
    assert_non_null(strstr(txt, "wslb_lb_handshake_ms_bucket{le=\"10\"} 1\n"));
    assert_non_null(strstr(txt, "wslb_lb_bytes_in_total 1234\n"));
    buf_reset(&out);
    met_set_legacy(extra, 0);
    assert_int_equal(admin_render_metrics(f->t, &f->stats, extra, &out), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    txt = buf_head(&out);
    assert_non_null(strstr(txt, "wslb_lb_received_bytes_total 1234\n"));
    assert_null(strstr(txt, "wslb_lb_bytes_in_total"));
    assert_null(strstr(txt, "_ms"));
    /* every series has exactly one TYPE line */
    const char *p = txt;
    int ntype = 0;
    while ((p = strstr(p, "# TYPE wslb_backend_up ")))
        ntype++, p++;
    assert_int_equal(ntype, 1);
    buf_free(&out);
    met_free(extra);
}

/* ---- the server, over loopback ----------------------------------------------- */

typedef struct exchange {
    const char *req;
    char resp[65536];
    size_t len;
} exchange_t;

typedef struct client {
    sock_addr_t addr;
    exchange_t *ex;
    size_t n;
    int done;
} client_t;

/* Blocking client in its own thread: sends each request on a fresh
 * connection and reads the answer until the server closes. */
static void *client_run(void *p)
{
    client_t *cl = p;
    for (size_t i = 0; i < cl->n; i++) {
        exchange_t *e = &cl->ex[i];
        int fd = socket(cl->addr.ss.ss_family, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&cl->addr.ss, cl->addr.len) < 0) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        size_t off = 0, rlen = strlen(e->req);
        while (off < rlen) {
            ssize_t w = write(fd, e->req + off, rlen - off);
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        shutdown(fd, SHUT_WR);
        while (e->len < sizeof(e->resp) - 1) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, 3000) <= 0)
                break;
            ssize_t r = read(fd, e->resp + e->len, sizeof(e->resp) - 1 - e->len);
            if (r <= 0)
                break;
            e->len += (size_t)r;
        }
        e->resp[e->len] = 0;
        close(fd);
    }
    __atomic_store_n(&cl->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void poll_done_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    client_t *cl = w->data;
    if (__atomic_load_n(&cl->done, __ATOMIC_ACQUIRE))
        ev_break(loop, EVBREAK_ALL);
}

/* Runs the admin server on a private loop while the client thread talks. */
static void run_exchanges(fixture_t *f, const char *token, exchange_t *ex, size_t n)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char err[256];
    admin_config_t cfg = {.listen = "127.0.0.1:0", .token = token};
    admin_t *a = admin_create(loop, f->t, &f->stats, &cfg, err, sizeof(err));
    assert_non_null(a);
    client_t cl = {.ex = ex, .n = n};
    admin_local_addr(a, &cl.addr);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_run, &cl), 0);
    ev_timer poll_done, deadline;
    ev_timer_init(&poll_done, poll_done_cb, 0.005, 0.005);
    poll_done.data = &cl;
    ev_timer_start(loop, &poll_done);
    ev_timer_init(&deadline, poll_done_cb, 20., 0.);
    deadline.data = &cl;
    ev_timer_start(loop, &deadline);
    while (!__atomic_load_n(&cl.done, __ATOMIC_ACQUIRE) && ev_is_active(&deadline))
        ev_run(loop, EVRUN_ONCE);
    pthread_join(th, NULL);
    ev_timer_stop(loop, &poll_done);
    ev_timer_stop(loop, &deadline);
    admin_free(a);
    ev_loop_destroy(loop);
}

static int status_of(const exchange_t *e)
{
    int st = 0;
    if (sscanf(e->resp, "HTTP/1.1 %d ", &st) != 1)
        return -1;
    return st;
}

static const char *body_of(const exchange_t *e)
{
    const char *p = strstr(e->resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

/* b's bytes as a C string (short bodies only). */
static const char *buf_cstr(buf_t *b)
{
    static char s[256];
    size_t n = buf_size(b) < sizeof(s) - 1 ? buf_size(b) : sizeof(s) - 1;
    memcpy(s, buf_head(b), n);
    s[n] = '\0';
    return s;
}

/* /healthz: 200 only while the lb would serve a new client; each 503 says why. */
static void test_render_health(void **state)
{
    fixture_t *f = *state;
    buf_t b = BUF_INIT;
    assert_int_equal(admin_render_health(f->t, ADMIN_LIFE_SERVING, &b), 200);
    assert_string_equal(buf_cstr(&b), "ok\n");
    buf_reset(&b);
    /* Loading with a usable backend (static ones) still serves. */
    assert_int_equal(admin_render_health(f->t, ADMIN_LIFE_LOADING, &b), 200);
    buf_reset(&b);
    assert_int_equal(admin_render_health(f->t, ADMIN_LIFE_STOPPING, &b), 503);
    assert_non_null(strstr(buf_cstr(&b), "shutting down"));
    buf_reset(&b);

    /* Two down, one drained by the operator: nothing usable. */
    for (int i = 0; i < be_table_fall(f->t); i++) {
        be_event(f->t, f->b0, BE_EV_CHECK_FAIL, "test");
        be_event(f->t, f->b1, BE_EV_CHECK_FAIL, "test");
    }
    assert_int_equal(be_admin_drain(f->t, be_id(f->w), 1), 0);
    assert_int_equal(admin_render_health(f->t, ADMIN_LIFE_SERVING, &b), 503);
    assert_string_equal(buf_cstr(&b), "no usable backend: 3 known, 2 down, 1 draining\n");
    buf_reset(&b);
    assert_int_equal(admin_render_health(f->t, ADMIN_LIFE_LOADING, &b), 503);
    assert_non_null(strstr(buf_cstr(&b), "loading"));
    buf_reset(&b);
    /* One back up is enough. */
    assert_int_equal(be_admin_drain(f->t, be_id(f->w), 0), 0);
    assert_int_equal(admin_render_health(f->t, ADMIN_LIFE_SERVING, &b), 200);
    buf_free(&b);
}

static void test_server_endpoints(void **state)
{
    fixture_t *f = *state;
    char big[12000];
    snprintf(big, sizeof(big), "GET /stats HTTP/1.1\r\nX-Big: %0*d\r\n\r\n", 10000, 0);
    exchange_t ex[] = {
        {.req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"},
        {.req = "GET /stats HTTP/1.1\r\nHost: x\r\n\r\n"},
        {.req = "POST /backends/b0/drain HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
        {.req = "GET /stats HTTP/1.1\r\n\r\n"},
        {.req = "POST /backends/b0/enable HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"},
        {.req = "POST /backends/nope/drain HTTP/1.1\r\n\r\n"},
        {.req = "GET /backends/b0/drain HTTP/1.1\r\n\r\n"},
        {.req = "POST /stats HTTP/1.1\r\n\r\n"},
        {.req = "GET /nothing HTTP/1.1\r\n\r\n"},
        {.req = "POST /backends/w%3A%221%22/drain HTTP/1.1\r\n\r\n"},
        {.req = "POST /backends/%zz/drain HTTP/1.1\r\n\r\n"},
        {.req = "GET /metrics HTTP/1.1\r\n\r\n"},
        {.req = "NONSENSE\r\n\r\n"},
        {.req = big},
        {.req = "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"},
    };
    run_exchanges(f, NULL, ex, sizeof(ex) / sizeof(ex[0]));
    assert_int_equal(status_of(&ex[14]), 200);
    assert_string_equal(body_of(&ex[14]), "ok\n");

    assert_int_equal(status_of(&ex[0]), 200);
    assert_string_equal(body_of(&ex[0]), "ok\n");
    assert_non_null(strstr(ex[0].resp, "Connection: close\r\n"));

    assert_int_equal(status_of(&ex[1]), 200);
    json_t *root = json_loads(body_of(&ex[1]), 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "algo")), "leastload");
    assert_string_equal(json_string_value(json_object_get(backend_by_id(root, "b0"), "state")),
                        "up");
    json_decref(root);

    assert_int_equal(status_of(&ex[2]), 200);
    assert_non_null(strstr(body_of(&ex[2]), "\"state\":\"draining\""));
    root = json_loads(body_of(&ex[3]), 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(backend_by_id(root, "b0"), "state")),
                        "draining");
    json_decref(root);

    assert_int_equal(status_of(&ex[4]), 200); /* an unread body does not spoil the answer */
    assert_non_null(strstr(body_of(&ex[4]), "\"state\":\"up\""));
    assert_int_equal(be_in_admin_drain(f->b0), 0);
    assert_int_equal(status_of(&ex[5]), 404);
    assert_non_null(strstr(body_of(&ex[5]), "\"error\""));
    assert_int_equal(status_of(&ex[6]), 405);
    assert_non_null(strstr(ex[6].resp, "Allow: POST\r\n"));
    assert_int_equal(status_of(&ex[7]), 405);
    assert_int_equal(status_of(&ex[8]), 404);
    assert_non_null(strstr(body_of(&ex[8]), "\"error\""));
    assert_int_equal(status_of(&ex[9]), 200); /* percent-encoded id */
    assert_int_equal(be_in_admin_drain(f->w), 1);
    assert_int_equal(status_of(&ex[10]), 404);
    assert_int_equal(status_of(&ex[11]), 200);
    assert_non_null(strstr(ex[11].resp, "text/plain; version=0.0.4"));
    assert_non_null(strstr(body_of(&ex[11]), "wslb_backend_draining{backend=\"w:\\\"1\\\"\"} 1"));
    assert_int_equal(status_of(&ex[12]), 400);
    assert_int_equal(status_of(&ex[13]), 431);
}

static void test_server_token(void **state)
{
    fixture_t *f = *state;
    exchange_t ex[] = {
        {.req = "GET /stats HTTP/1.1\r\n\r\n"},
        {.req = "GET /stats HTTP/1.1\r\nAuthorization: Bearer s3cret-but-longer\r\n\r\n"},
        {.req = "GET /stats HTTP/1.1\r\nAuthorization: Bearer s3cre\r\n\r\n"},
        {.req = "GET /stats HTTP/1.1\r\nAuthorization: Basic czNjcmV0\r\n\r\n"},
        {.req = "POST /backends/b1/drain HTTP/1.1\r\n\r\n"},
        {.req = "GET /stats HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n"},
        {.req = "POST /backends/b1/drain HTTP/1.1\r\nauthorization: bearer s3cret\r\n\r\n"},
    };
    run_exchanges(f, "s3cret", ex, sizeof(ex) / sizeof(ex[0]));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(status_of(&ex[i]), 401);
        assert_non_null(strstr(ex[i].resp, "WWW-Authenticate: Bearer\r\n"));
    }
    assert_int_equal(status_of(&ex[5]), 200);
    assert_int_equal(status_of(&ex[6]), 200);
    assert_int_equal(be_in_admin_drain(f->b1), 1);
}

static void test_bad_listen(void **state)
{
    char err[256];
    admin_config_t cfg = {.listen = "not-an-address"};
    assert_null(admin_create(EV_DEFAULT, NULL, NULL, &cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "admin address"));
    admin_free(NULL);
}

int main(void)
{
    log_set_level(LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_render_stats, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_render_metrics, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_render_health, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_server_endpoints, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_server_token, fixture_setup, fixture_teardown),
        cmocka_unit_test(test_bad_listen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
