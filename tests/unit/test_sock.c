/* Unit tests for common/sock.c. All traffic stays on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "sock.h"

static uint16_t port_of(const sock_addr_t *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* Parses s and renders it back, asserting both succeed. */
static void roundtrip(const char *s, const char *expect)
{
    sock_addr_t a;
    char err[SOCK_ERR_LEN] = "";
    char out[SOCK_ADDRSTRLEN];
    assert_int_equal(sock_parse_addr(s, &a, err, sizeof(err)), 0);
    assert_string_equal(sock_addr_str(&a, out, sizeof(out)), expect);
}

static void test_parse_valid(void **state)
{
    roundtrip("127.0.0.1:8080", "127.0.0.1:8080");
    roundtrip("0.0.0.0:0", "0.0.0.0:0");
    roundtrip(":9000", "0.0.0.0:9000");
    roundtrip("localhost:6379", "127.0.0.1:6379");
    roundtrip("LocalHost:1", "127.0.0.1:1");
    roundtrip("[::1]:443", "[::1]:443");
    roundtrip("[::]:65535", "[::]:65535");
    roundtrip("[2001:db8::5]:80", "[2001:db8::5]:80");

    sock_addr_t a;
    assert_int_equal(sock_parse_addr("10.1.2.3:77", &a, NULL, 0), 0);
    assert_int_equal(a.ss.ss_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(port_of(&a), 77);
    char host[SOCK_ADDRSTRLEN];
    assert_string_equal(sock_addr_host(&a, host, sizeof(host)), "10.1.2.3");

    assert_int_equal(sock_parse_addr("[fe80::1]:5", &a, NULL, 0), 0);
    assert_int_equal(a.ss.ss_family, AF_INET6);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
    assert_string_equal(sock_addr_host(&a, host, sizeof(host)), "fe80::1");
}

/* Asserts s is rejected and the message contains want. */
static void rejects(const char *s, const char *want)
{
    sock_addr_t a;
    char err[SOCK_ERR_LEN] = "";
    errno = 0;
    assert_int_equal(sock_parse_addr(s, &a, err, sizeof(err)), -1);
    assert_int_equal(errno, EINVAL);
    if (strstr(err, want) == NULL)
        fail_msg("'%s': error '%s' lacks '%s'", s ? s : "(null)", err, want);
    /* Also fine without an error buffer. */
    assert_int_equal(sock_parse_addr(s, &a, NULL, 0), -1);
}

static void test_parse_invalid(void **state)
{
    rejects(NULL, "empty");
    rejects("", "empty");
    rejects("127.0.0.1", "missing ':PORT'");
    rejects("localhost", "missing ':PORT'");
    rejects("127.0.0.1:", "bad port");
    rejects("127.0.0.1:65536", "bad port");
    rejects("127.0.0.1:99999999999999999999", "bad port");
    rejects("127.0.0.1:-1", "bad port");
    rejects("127.0.0.1:+1", "bad port");
    rejects("127.0.0.1: 80", "bad port");
    rejects("127.0.0.1:80x", "bad port");
    rejects("127.0.0.1:0x50", "bad port");
    rejects("example.com:80", "not a numeric IPv4");
    rejects("127.1:80", "not a numeric IPv4");
    rejects("256.0.0.1:80", "not a numeric IPv4");
    rejects("::1:80", "[ADDR]:PORT");
    rejects("[::1]", "':PORT'");
    rejects("[::1]80", "':PORT'");
    rejects("[::1:80", "missing ']'");
    rejects("[1.2.3.4]:80", "bad IPv6");
    rejects("[]:80", "bad IPv6");
    rejects("[::1]:70000", "bad port");

    char longhost[400];
    memset(longhost, '1', sizeof(longhost));
    memcpy(longhost + sizeof(longhost) - 4, ":80", 4);
    rejects(longhost, "too long");

    /* A tiny error buffer is truncated, never overrun. */
    sock_addr_t a;
    char tiny[4] = "zzz";
    assert_int_equal(sock_parse_addr("nope", &a, tiny, sizeof(tiny)), -1);
    assert_int_equal(strlen(tiny), 3);
}

static int has_fd_flag(int fd, int getcmd, int flag)
{
    int v = fcntl(fd, getcmd);
    assert_true(v >= 0);
    return (v & flag) != 0;
}

/* Waits up to ms for events on fd; returns revents (0 on timeout). */
static short wait_fd(int fd, short events, int ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, ms);
    assert_true(n >= 0);
    return n ? p.revents : 0;
}

static void test_listen_connect_accept(void **state)
{
    sock_addr_t la, bound, peer;
    char err[SOCK_ERR_LEN] = "";
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &la, err, sizeof(err)), 0);
    int lfd = sock_listen(&la, 16, 0, err, sizeof(err));
    assert_true(lfd >= 0);
    assert_true(has_fd_flag(lfd, F_GETFL, O_NONBLOCK));
    assert_true(has_fd_flag(lfd, F_GETFD, FD_CLOEXEC));
    int v = 0;
    socklen_t vl = sizeof(v);
    assert_int_equal(getsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &v, &vl), 0);
    assert_int_not_equal(v, 0);

    assert_int_equal(sock_local_addr(lfd, &bound), 0);
    assert_int_not_equal(port_of(&bound), 0);

    /* Nothing pending yet. */
    errno = 0;
    assert_int_equal(sock_accept(lfd, &peer), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

    int cfd = sock_connect(&bound, NULL, err, sizeof(err));
    assert_true(cfd >= 0);
    assert_true(has_fd_flag(cfd, F_GETFL, O_NONBLOCK));
    assert_true(has_fd_flag(cfd, F_GETFD, FD_CLOEXEC));
    assert_true(wait_fd(cfd, POLLOUT, 5000) & POLLOUT);
    assert_int_equal(sock_connect_result(cfd), 0);
    assert_int_equal(sock_set_nodelay(cfd), 0);
    vl = sizeof(v);
    assert_int_equal(getsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    assert_int_not_equal(v, 0);

    assert_true(wait_fd(lfd, POLLIN, 5000) & POLLIN);
    int afd = sock_accept(lfd, &peer);
    assert_true(afd >= 0);
    assert_true(has_fd_flag(afd, F_GETFL, O_NONBLOCK));
    assert_true(has_fd_flag(afd, F_GETFD, FD_CLOEXEC));
    sock_addr_t cl;
    assert_int_equal(sock_local_addr(cfd, &cl), 0);
    char a1[SOCK_ADDRSTRLEN], a2[SOCK_ADDRSTRLEN];
    assert_string_equal(sock_addr_str(&peer, a1, sizeof(a1)), sock_addr_str(&cl, a2, sizeof(a2)));

    assert_int_equal(write(cfd, "ping", 4), 4);
    assert_true(wait_fd(afd, POLLIN, 5000) & POLLIN);
    char rb[8];
    assert_int_equal(read(afd, rb, sizeof(rb)), 4);
    assert_memory_equal(rb, "ping", 4);

    close(afd);
    close(cfd);
    close(lfd);
}

static void test_accept_null_peer(void **state)
{
    sock_addr_t la, bound;
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &la, NULL, 0), 0);
    int lfd = sock_listen(&la, 0, 0, NULL, 0);
    assert_true(lfd >= 0);
    assert_int_equal(sock_local_addr(lfd, &bound), 0);
    int cfd = sock_connect(&bound, NULL, NULL, 0);
    assert_true(cfd >= 0);
    assert_true(wait_fd(lfd, POLLIN, 5000) & POLLIN);
    int afd = sock_accept(lfd, NULL);
    assert_true(afd >= 0);
    close(afd);
    close(cfd);
    close(lfd);
}

static void test_connect_refused(void **state)
{
    /* Grab a free port, then close it so nothing listens there. */
    sock_addr_t la, bound;
    char err[SOCK_ERR_LEN] = "";
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &la, NULL, 0), 0);
    int lfd = sock_listen(&la, 1, 0, NULL, 0);
    assert_true(lfd >= 0);
    assert_int_equal(sock_local_addr(lfd, &bound), 0);
    close(lfd);

    int cfd = sock_connect(&bound, NULL, err, sizeof(err));
    if (cfd < 0) {
        /* Loopback may refuse synchronously; that is reported too. */
        assert_int_equal(errno, ECONNREFUSED);
        assert_non_null(strstr(err, "connect"));
        return;
    }
    assert_true(wait_fd(cfd, POLLOUT, 5000) != 0);
    assert_int_equal(sock_connect_result(cfd), ECONNREFUSED);
    close(cfd);
}

static void test_connect_with_source(void **state)
{
    sock_addr_t la, bound, src, cl;
    char err[SOCK_ERR_LEN] = "";
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &la, NULL, 0), 0);
    int lfd = sock_listen(&la, 4, 0, err, sizeof(err));
    assert_true(lfd >= 0);
    assert_int_equal(sock_local_addr(lfd, &bound), 0);

    /* 127.0.0.2 is loopback too, so the source bind is visible in getsockname. */
    assert_int_equal(sock_parse_addr("127.0.0.2:0", &src, NULL, 0), 0);
    int cfd = sock_connect(&bound, &src, err, sizeof(err));
    assert_true(cfd >= 0);
    assert_true(wait_fd(cfd, POLLOUT, 5000) & POLLOUT);
    assert_int_equal(sock_connect_result(cfd), 0);
    assert_int_equal(sock_local_addr(cfd, &cl), 0);
    char host[SOCK_ADDRSTRLEN];
    assert_string_equal(sock_addr_host(&cl, host, sizeof(host)), "127.0.0.2");
    close(cfd);

    /* A source address that is not local cannot be bound. */
    assert_int_equal(sock_parse_addr("192.0.2.1:0", &src, NULL, 0), 0);
    assert_int_equal(sock_connect(&bound, &src, err, sizeof(err)), -1);
    assert_int_equal(errno, EADDRNOTAVAIL);
    assert_non_null(strstr(err, "bind source 192.0.2.1:0"));
    close(lfd);
}

static void test_listen_errors_and_reuseport(void **state)
{
    sock_addr_t la, bound;
    char err[SOCK_ERR_LEN] = "";
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &la, NULL, 0), 0);
    int a = sock_listen(&la, 4, SOCK_REUSEPORT, err, sizeof(err));
    assert_true(a >= 0);
    assert_int_equal(sock_local_addr(a, &bound), 0);

    /* Without SO_REUSEPORT a second bind on the same port fails and says why. */
    assert_int_equal(sock_listen(&bound, 4, 0, err, sizeof(err)), -1);
    assert_int_equal(errno, EADDRINUSE);
    assert_non_null(strstr(err, "address in use: 127.0.0.1:"));

    /* With it, a second listener shares the port, unnoticed... */
    int b = sock_listen(&bound, 4, SOCK_REUSEPORT, err, sizeof(err));
    assert_true(b >= 0);
    close(b);
    /* ...which is what the probe is for: it sees the SO_REUSEPORT
     * listener, binds nothing itself, and finds the port free once closed. */
    char want[64];
    sock_addr_str(&bound, want, sizeof(want));
    assert_int_equal(sock_probe_free(&bound, err, sizeof(err)), -1);
    assert_int_equal(errno, EADDRINUSE);
    assert_non_null(strstr(err, "address in use: "));
    assert_non_null(strstr(err, want));
    /* Another address on the same port, a wildcard listener's port too. */
    sock_addr_t any = bound;
    ((struct sockaddr_in *)&any.ss)->sin_addr.s_addr = htonl(INADDR_ANY);
    assert_int_equal(sock_probe_free(&any, err, sizeof(err)), -1);
    close(a);
    assert_int_equal(sock_probe_free(&bound, err, sizeof(err)), 0);
    int c = sock_listen(&bound, 4, 0, err, sizeof(err));
    assert_true(c >= 0);
    close(c);
    /* Port 0 is always free. */
    assert_int_equal(sock_probe_free(&la, err, sizeof(err)), 0);
}

static void test_set_nonblock(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_false(has_fd_flag(p[0], F_GETFL, O_NONBLOCK));
    assert_int_equal(sock_set_nonblock(p[0]), 0);
    assert_true(has_fd_flag(p[0], F_GETFL, O_NONBLOCK));
    assert_int_equal(sock_set_nonblock(p[0]), 0); /* idempotent */
    close(p[0]);
    close(p[1]);
    assert_int_equal(sock_set_nonblock(p[0]), -1);
    assert_int_equal(errno, EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_listen_connect_accept),
        cmocka_unit_test(test_accept_null_peer),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connect_with_source),
        cmocka_unit_test(test_listen_errors_and_reuseport),
        cmocka_unit_test(test_set_nonblock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
