/* fakesn: a fake Redis Sentinel served from a unit test's own libev loop,
 * for tests that need a Sentinel to say something on cue (name a replica,
 * know no master, announce a switch). Header only, after cmocka.h: each test
 * binary includes it once. */
#ifndef TESTS_UNIT_FAKESN_H
#define TESTS_UNIT_FAKESN_H

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "sock.h"

/* A fake Sentinel on the test's loop: answers get-master-addr-by-name with
 * `answer` ("HOST PORT", or "" for nil), accepts SUBSCRIBE, and sends
 * +switch-master messages when told. */
struct fake_cl {
    struct fake_sn *s;
    int fd;
    ev_io w;
    int sub;
    char buf[2048];
    size_t len;
};

struct fake_sn {
    int lfd, port;
    ev_io acc;
    char answer[64];
    int queries;
    struct fake_cl cl[8];
};

/* One RESP array of bulk strings from b; bytes used, 0 when incomplete. */
static size_t fake_parse(const char *b, size_t len, char args[][64], int *argc)
{
    const char *p = b, *end = b + len;
    char *e;
    if (len < 4 || *p != '*')
        return 0;
    long n = strtol(p + 1, &e, 10);
    p = e + 2;
    for (*argc = 0; n-- > 0;) {
        if (p >= end || *p != '$')
            return 0;
        long l = strtol(p + 1, &e, 10);
        if (e + 4 + l > end)
            return 0;
        if (*argc < 8)
            snprintf(args[(*argc)++], 64, "%.*s", (int)l, e + 2);
        p = e + 4 + l;
    }
    return p <= end ? (size_t)(p - b) : 0;
}

static void fake_answer(struct fake_cl *c, char args[][64], int argc)
{
    char out[1024], host[64], port[16];
    if (argc == 3 && strcasecmp(args[1], "get-master-addr-by-name") == 0) {
        c->s->queries++;
        if (sscanf(c->s->answer, "%63s %15s", host, port) == 2)
            snprintf(out, sizeof(out), "*2\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(host), host,
                     strlen(port), port);
        else
            snprintf(out, sizeof(out), "*-1\r\n");
    } else if (argc >= 1 && strcasecmp(args[0], "SENTINEL") == 0) {
        snprintf(out, sizeof(out), "*0\r\n"); /* SENTINEL sentinels: no others */
    } else if (argc == 2 && strcasecmp(args[0], "SUBSCRIBE") == 0) {
        c->sub = 1;
        snprintf(out, sizeof(out), "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n", strlen(args[1]),
                 args[1]);
    } else {
        snprintf(out, sizeof(out), "-ERR unknown command\r\n");
    }
    assert_int_equal(write(c->fd, out, strlen(out)), (ssize_t)strlen(out));
}

static void fake_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fake_cl *c = w->data;
    ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (n <= 0) {
        ev_io_stop(loop, w);
        close(c->fd);
        c->fd = -1;
        c->sub = 0;
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char args[8][64];
    int argc;
    size_t used;
    while ((used = fake_parse(c->buf, c->len, args, &argc)) > 0) {
        memmove(c->buf, c->buf + used, c->len - used + 1);
        c->len -= used;
        fake_answer(c, args, argc);
    }
}

static void fake_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fake_sn *s = w->data;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return;
    for (int i = 0; i < 8; i++) {
        struct fake_cl *c = &s->cl[i];
        if (c->fd <= 0) {
            memset(c, 0, sizeof(*c));
            c->s = s;
            c->fd = fd;
            ev_io_init(&c->w, fake_read_cb, fd, EV_READ);
            c->w.data = c;
            ev_io_start(loop, &c->w);
            return;
        }
    }
    close(fd);
}

static void fake_start(struct ev_loop *loop, struct fake_sn *s)
{
    sock_addr_t a;
    assert_int_equal(sock_parse_addr("127.0.0.1:0", &a, NULL, 0), 0);
    s->lfd = sock_listen(&a, 16, 0, NULL, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(sock_local_addr(s->lfd, &a), 0);
    s->port = ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
    ev_io_init(&s->acc, fake_accept_cb, s->lfd, EV_READ);
    s->acc.data = s;
    ev_io_start(loop, &s->acc);
}

static void fake_stop(struct ev_loop *loop, struct fake_sn *s)
{
    ev_io_stop(loop, &s->acc);
    close(s->lfd);
    for (int i = 0; i < 8; i++) {
        if (s->cl[i].fd > 0) {
            ev_io_stop(loop, &s->cl[i].w);
            close(s->cl[i].fd);
        }
    }
}

/* How many clients are subscribed. */
static int fake_subscribers(const struct fake_sn *s)
{
    int n = 0;
    for (int i = 0; i < 8; i++)
        n += s->cl[i].fd > 0 && s->cl[i].sub;
    return n;
}

/* Sends a +switch-master message to every subscriber; returns how many. */
static int fake_switch(struct fake_sn *s, const char *payload)
{
    char out[256];
    int n = 0;
    snprintf(out, sizeof(out), "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%zu\r\n%s\r\n",
             strlen(payload), payload);
    for (int i = 0; i < 8; i++) {
        if (s->cl[i].fd > 0 && s->cl[i].sub) {
            assert_int_equal(write(s->cl[i].fd, out, strlen(out)), (ssize_t)strlen(out));
            n++;
        }
    }
    return n;
}

#endif
