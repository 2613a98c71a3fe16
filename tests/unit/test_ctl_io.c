/* Unit tests for wslbctl's I/O (ctl/): the blocking HTTP client against a
 * scripted server thread on loopback (framings, a silent server, a refused
 * connect, the token), and the rollout command as a real child process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_cmd.h"
#include "ctl_http.h"
#include "ctl_net.h"

/* ---- a scripted HTTP server ------------------------------------------------------ */

typedef struct srv {
    int lfd, port;
    pthread_t th;
    const char *const *parts; /* written in order, a short pause between them */
    int silent;               /* read the request, answer nothing until closed */
    char request[4096];
} srv_t;

static void *srv_main(void *arg)
{
    srv_t *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t n = 0;
    while (n < sizeof(s->request) - 1 && !strstr(s->request, "\r\n\r\n")) {
        ssize_t r = read(fd, s->request + n, sizeof(s->request) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        s->request[n] = '\0';
    }
    if (s->silent) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 5000); /* until the client gives up and closes */
    }
    for (size_t i = 0; s->parts && s->parts[i]; i++) {
        if (write(fd, s->parts[i], strlen(s->parts[i])) < 0)
            break;
        usleep(20000); /* each part in a read of its own: the framing under test */
    }
    close(fd);
    return NULL;
}

static void srv_start(srv_t *s, const char *const *parts, int silent)
{
    memset(s, 0, sizeof(*s));
    s->parts = parts;
    s->silent = silent;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, srv_main, s);
}

static void srv_stop(srv_t *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static void url_of(const srv_t *s, const char *base, ctl_url_t *u)
{
    char txt[128], err[200];
    snprintf(txt, sizeof(txt), "http://127.0.0.1:%d%s", s->port, base);
    assert_int_equal(ctl_url_parse(txt, u, err, sizeof(err)), 0);
}

static void test_http_framings(void **state)
{
    static const char *const cl[] = {"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"a\":", "1}\n",
                                     "trailing junk is not the body", NULL};
    static const char *const chunked[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "2\r\nde\r\n0\r\n\r\n",
        NULL};
    static const char *const eof[] = {"HTTP/1.1 200 OK\r\n", "Connection: close\r\n\r\nto the end",
                                      NULL};
    static const char *const denied[] = {
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 25\r\n\r\n{\"error\":\"unauthorized\"}\n",
        NULL};
    struct {
        const char *const *parts;
        int status;
        const char *body;
    } cases[] = {{cl, 200, "{\"a\":1}\n"},
                 {chunked, 200, "abcde"},
                 {eof, 200, "to the end"},
                 {denied, 401, "{\"error\":\"unauthorized\"}\n"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        srv_t s;
        ctl_url_t u;
        ctl_http_resp_t r;
        char err[300];
        srv_start(&s, cases[i].parts, 0);
        url_of(&s, "/pre/", &u);
        assert_int_equal(ctl_http_request(&u, "POST", "/backends/w%201/drain", "s3cret", 5, &r, err,
                                          sizeof(err)),
                         0);
        srv_stop(&s);
        assert_int_equal(r.status, cases[i].status);
        assert_int_equal(buf_size(&r.body), strlen(cases[i].body));
        assert_memory_equal(buf_head(&r.body), cases[i].body, strlen(cases[i].body));
        ctl_http_resp_free(&r);
        /* the request: path under the prefix, the token, no body, one shot */
        assert_non_null(strstr(s.request, "POST /pre/backends/w%201/drain HTTP/1.1\r\n"));
        assert_non_null(strstr(s.request, "\r\nAuthorization: Bearer s3cret\r\n"));
        assert_non_null(strstr(s.request, "\r\nContent-Length: 0\r\n"));
        assert_non_null(strstr(s.request, "\r\nConnection: close\r\n"));
    }
}

static void test_http_errors(void **state)
{
    srv_t s;
    ctl_url_t u;
    ctl_http_resp_t r;
    char err[300];
    /* a server that never answers costs the timeout, not more */
    srv_start(&s, NULL, 1);
    url_of(&s, "", &u);
    double t0 = ctl_now();
    assert_int_equal(ctl_http_request(&u, "GET", "/stats", NULL, 0.3, &r, err, sizeof(err)), -1);
    double took = ctl_now() - t0;
    assert_true(took >= 0.25 && took < 3.0);
    assert_non_null(strstr(err, "no answer within 0.3 s"));
    ctl_http_resp_free(&r);
    srv_stop(&s);

    /* cut short: Content-Length promised more than came */
    static const char *const cut[] = {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", NULL};
    srv_start(&s, cut, 0);
    url_of(&s, "", &u);
    assert_int_equal(ctl_http_request(&u, "GET", "/stats", NULL, 5, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "closed before the end"));
    ctl_http_resp_free(&r);
    srv_stop(&s);

    /* not HTTP at all */
    static const char *const junk[] = {"SSH-2.0-OpenSSH\r\n\r\n", NULL};
    srv_start(&s, junk, 0);
    url_of(&s, "", &u);
    assert_int_equal(ctl_http_request(&u, "GET", "/stats", NULL, 5, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an HTTP answer"));
    ctl_http_resp_free(&r);
    srv_stop(&s);

    /* nobody listening: the port of a closed listener */
    srv_start(&s, NULL, 0);
    int port = s.port;
    shutdown(s.lfd, SHUT_RDWR);
    srv_stop(&s);
    char txt[64];
    snprintf(txt, sizeof(txt), "127.0.0.1:%d", port);
    assert_int_equal(ctl_url_parse(txt, &u, err, sizeof(err)), 0);
    assert_int_equal(ctl_http_request(&u, "GET", "/stats", NULL, 5, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "Connection refused"));
    ctl_http_resp_free(&r);
}

/* ---- the command ------------------------------------------------------------------ */

typedef struct seen {
    char out[8192];
    size_t n;
} seen_t;

static void seen_cb(void *ud, int fd, const char *line, size_t n)
{
    seen_t *s = ud;
    s->n += (size_t)snprintf(s->out + s->n, sizeof(s->out) - s->n, "%d:%.*s|", fd, (int)n, line);
}

/* Runs the command to its end the way a rollout does; returns its status. */
static int run_cmd(const char *cmd, seen_t *s, double limit)
{
    ctl_cmd_t c;
    char err[200];
    assert_int_equal(ctl_cmd_start(&c, cmd, "w1", "127.0.0.1", "9001", err, sizeof(err)), 0);
    double t0 = ctl_now(), exited = 0;
    while (ctl_now() - t0 < limit) {
        struct pollfd p[2];
        int np = 0, which[2];
        for (int k = 0; k < 2; k++)
            if (c.fd[k] >= 0) {
                which[np] = k;
                p[np++] = (struct pollfd){.fd = c.fd[k], .events = POLLIN};
            }
        poll(p, (nfds_t)np, 50);
        for (int i = 0; i < np; i++)
            if (p[i].revents)
                ctl_cmd_pump(&c, which[i], seen_cb, s);
        if (!exited && ctl_cmd_reap(&c))
            exited = ctl_now();
        if (exited && ((c.fd[0] < 0 && c.fd[1] < 0) || ctl_now() - exited > 0.5))
            break;
    }
    assert_true(c.exited);
    ctl_cmd_close(&c, seen_cb, s);
    return c.status;
}

static void test_cmd(void **state)
{
    seen_t s;
    memset(&s, 0, sizeof(s));
    int st = run_cmd("echo out $WSLB_ID $WSLB_ADDR; echo err >&2; printf partial; exit 3", &s, 10);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    assert_non_null(strstr(s.out, "1:out w1 127.0.0.1:9001|"));
    assert_non_null(strstr(s.out, "2:err|"));
    assert_non_null(strstr(s.out, "1:partial|"));
    char how[100];
    assert_string_equal(ctl_cmd_describe(st, how, sizeof(how)), "exited with status 3");

    /* stdin is /dev/null: a command that reads it does not hang */
    memset(&s, 0, sizeof(s));
    st = run_cmd("cat; echo done", &s, 10);
    assert_int_equal(st, 0);
    assert_string_equal(s.out, "1:done|");

    /* a daemon started in the background keeps the pipe: the command's end
     * is still seen, and what it printed before is not lost */
    memset(&s, 0, sizeof(s));
    double t0 = ctl_now();
    st = run_cmd("sleep 3 & echo started", &s, 10);
    assert_int_equal(st, 0);
    assert_true(ctl_now() - t0 < 2.5);
    assert_string_equal(s.out, "1:started|");

    /* its own process group: a signal to the group reaches the children */
    ctl_cmd_t c;
    char err[200];
    assert_int_equal(
        ctl_cmd_start(&c, "sleep 30 & echo up; sleep 30; wait", "w", "h", "1", err, sizeof(err)),
        0);
    assert_int_equal(getpgid(c.pid), c.pid);
    /* the background sleep exists once the shell has gone past it */
    struct pollfd p = {.fd = c.fd[0], .events = POLLIN};
    char up[8];
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_int_equal(read(c.fd[0], up, sizeof(up)), 3);
    assert_memory_equal(up, "up\n", 3);
    ctl_cmd_kill(&c, SIGTERM);
    double t1 = ctl_now();
    while (!ctl_cmd_reap(&c) && ctl_now() - t1 < 5)
        usleep(10000);
    assert_true(c.exited);
    assert_true(WIFSIGNALED(c.status));
    assert_string_equal(ctl_cmd_describe(c.status, err, sizeof(err)),
                        "killed by signal 15 (Terminated)");
    /* the background sleep went with the group: the pipe reaches EOF at once */
    assert_int_equal(poll(&p, 1, 2000), 1);
    char b;
    assert_int_equal(read(c.fd[0], &b, 1), 0);
    ctl_cmd_close(&c, seen_cb, &s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_framings),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_cmd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
