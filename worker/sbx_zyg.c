/* sbx_zyg: the zygote, a small process that clones the runs' inits for the
 * worker.
 *
 * A run's init used to be a clone of the worker itself. The clone copies the
 * page tables of every anonymous page the worker has (and takes a reference
 * on each page), the worker's loop then takes a copy-on-write fault on each
 * page it writes while an init shares it, and init's exit tears the copy
 * down again: all of it in proportion to the worker's heap, which grows with
 * the websockets it holds and rarely shrinks (freed memory stays in the
 * allocator). A worker that had held 10,000 websockets carried 44 MB of
 * anonymous memory against 0.7 MB fresh, and its CPU per evaluation of
 * `python3 -c pass` went from 1.5 ms to 3-5 ms of its own plus more in the
 * inits.
 *
 * The zygote is forked by sbx_create, before the worker starts threads or
 * serves anything, so its address space is the worker's at start (small) and
 * stays so: it only waits for requests, clones and answers. Each request
 * carries what sbx_child_prepare computed (struct sbx_child, with argv
 * packed into the message) and the run's five pipe ends (SCM_RIGHTS); the
 * zygote clones init with CLONE_PARENT, so init is the worker's child as
 * before: the worker reaps it, gets its SIGCHLD and its CPU in its
 * children's time, writes its id maps and starts it. The sbx_t the child
 * code reads is the zygote's copy, made after sbx_create built everything in
 * it; what changes later (a slot's pid, pidfd, limits) the child does not
 * read.
 *
 * The zygote runs no code of the worker's besides this loop and the child
 * side (sbx_child.c): system calls on its own copy of memory. If it is gone
 * or does not answer, the worker stops it and clones inits itself. */
#include "sbx_int.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

#define ZYG_ARGS_MAX 8192 /* packed argv, NUL-separated */
#define ZYG_ARGC_MAX 64
#define ZYG_NFDS     5
/* How long the loop waits for an answer before it gives up on the zygote: a
 * clone takes well under a millisecond; this only bounds a stuck zygote. */
#define ZYG_TIMEOUT_MS 2000

struct zyg_req {
    struct sbx_child c; /* pointers and fds replaced on the zygote's side */
    unsigned argc;
    unsigned args_len;
    char args[ZYG_ARGS_MAX];
};

struct zyg_rep {
    int32_t pid; /* > 0, or -errno */
    int32_t cg_joined;
};

/* ---- the zygote's side ------------------------------------------------------------ */

/* Receives one request and its fds; 0 at EOF (the worker is gone). */
static ssize_t zyg_recv(int fd, struct zyg_req *q, int fds[ZYG_NFDS])
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * ZYG_NFDS)];
        struct cmsghdr align;
    } cb;
    struct iovec iov = {.iov_base = q, .iov_len = sizeof(*q)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.buf, .msg_controllen = sizeof(cb.buf)};
    ssize_t n;
    while ((n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    for (int i = 0; i < ZYG_NFDS; i++)
        fds[i] = -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (n > 0 && cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        size_t got = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        memcpy(fds, CMSG_DATA(cm), sizeof(int) * (got < ZYG_NFDS ? got : ZYG_NFDS));
    }
    return n;
}

/* One clone for a well-formed request: the answer's pid, or -errno. */
static int zyg_clone(const sbx_t *s, struct zyg_req *q, ssize_t n, const int fds[ZYG_NFDS])
{
    static const char *argv[ZYG_ARGC_MAX + 1];
    size_t head = sizeof(*q) - sizeof(q->args);
    if (n < (ssize_t)head || q->argc == 0 || q->argc > ZYG_ARGC_MAX ||
        q->args_len > sizeof(q->args) || (size_t)n != head + q->args_len || q->c.slot < 0 ||
        (unsigned)q->c.slot >= s->cfg.slots)
        return -EINVAL;
    for (int i = 0; i < ZYG_NFDS; i++) {
        if (fds[i] < 0)
            return -EBADF;
    }
    unsigned argc = 0;
    for (size_t off = 0; off < q->args_len && argc < q->argc; argc++) {
        const char *a = q->args + off;
        size_t len = strnlen(a, q->args_len - off);
        if (off + len >= q->args_len)
            return -EINVAL; /* not NUL-terminated */
        argv[argc] = a;
        off += len + 1;
    }
    if (argc != q->argc)
        return -EINVAL;
    argv[argc] = NULL;
    /* s and envp point where they did in the worker: the zygote is a fork
     * of it, made after both existed. argv was the worker's heap. */
    q->c.s = s;
    q->c.argv = argv;
    q->c.fd_in = fds[0];
    q->c.fd_out = fds[1];
    q->c.fd_err = fds[2];
    q->c.fd_status = fds[3];
    q->c.fd_sync = fds[4];
    pid_t pid = sbx_clone_init(s, q->c.slot, CLONE_PARENT, &q->c);
    return pid > 0 ? (int)pid : -errno;
}

static int zyg_needs(const sbx_t *s, int fd, int keep)
{
    if (fd <= 2 || fd == keep || fd == s->root_fd)
        return 1;
    for (unsigned i = 0; s->slot && i < s->cfg.slots; i++) {
        if (fd == s->slot[i].cg_fd || fd == s->slot[i].netns_fd)
            return 1;
    }
    return 0;
}

/* Closes what the worker had open at the fork besides its socket and the
 * sandbox's own descriptors: its listening socket above all, which would
 * otherwise stay open in the zygote, and keep the port bound, for as long
 * as the worker lives; the lock on the work root, which is the worker's
 * alone. */
static void zyg_close_others(const sbx_t *s, int keep)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != dirfd(d) && !zyg_needs(s, fd, keep))
            close(fd);
    }
    closedir(d);
}

__attribute__((noreturn)) static void zyg_main(const sbx_t *s, int fd, pid_t worker)
{
    /* The worker's stop signals (a terminal's ^C goes to the whole process
     * group) are the worker's to act on: it stops the zygote itself, and
     * the zygote also dies with it. Inits reset every signal. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != worker)
        _exit(0);
    prctl(PR_SET_NAME, "wk-zygote");
    zyg_close_others(s, fd);
    static struct zyg_req q;
    for (;;) {
        int fds[ZYG_NFDS];
        ssize_t n = zyg_recv(fd, &q, fds);
        if (n <= 0)
            _exit(0);
        struct zyg_rep rep = {.pid = zyg_clone(s, &q, n, fds), .cg_joined = q.c.cg_joined};
        for (int i = 0; i < ZYG_NFDS; i++) {
            if (fds[i] >= 0)
                close(fds[i]);
        }
        if (send(fd, &rep, sizeof(rep), MSG_NOSIGNAL) != (ssize_t)sizeof(rep))
            _exit(0);
    }
}

/* ---- the worker's side ------------------------------------------------------------ */

int sbx_zyg_start(sbx_t *s)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        zyg_main(s, sv[1], me);
    }
    close(sv[1]);
    /* Stopped and reaped by pidfd only (see sbx_zyg_stop); without one
     * (before Linux 5.3) there is no zygote. Nothing else reaps yet. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        int e = errno;
        close(sv[0]);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        errno = e;
        return -1;
    }
    s->zyg_fd = sv[0];
    s->zyg_pid = pid;
    s->zyg_pidfd = pidfd;
    return 0;
}

void sbx_zyg_stop(sbx_t *s)
{
    if (s->zyg_fd >= 0)
        close(s->zyg_fd); /* EOF: the zygote exits by itself */
    s->zyg_fd = -1;
    if (s->zyg_pidfd >= 0) {
        /* By pidfd: if libev's SIGCHLD handler reaped the zygote already,
         * its pid may be a run's now. */
        syscall(SYS_pidfd_send_signal, s->zyg_pidfd, SIGKILL, NULL, 0);
        siginfo_t si;
        while (waitid((idtype_t)P_PIDFD, (id_t)s->zyg_pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        close(s->zyg_pidfd);
    }
    s->zyg_pidfd = -1;
    s->zyg_pid = 0;
}

pid_t sbx_zyg_pid(const sbx_t *s)
{
    return s && s->zyg_fd >= 0 ? s->zyg_pid : 0;
}

/* Packs argv into q; -1 if it does not fit (the worker then clones itself). */
static int zyg_pack(struct zyg_req *q, const char *const *argv)
{
    size_t off = 0;
    unsigned argc = 0;
    for (; argv[argc]; argc++) {
        size_t len = strlen(argv[argc]) + 1;
        if (argc == ZYG_ARGC_MAX || len > sizeof(q->args) - off)
            return -1;
        memcpy(q->args + off, argv[argc], len);
        off += len;
    }
    q->argc = argc;
    q->args_len = (unsigned)off;
    return 0;
}

/* Waits for the answer to one request, within ZYG_TIMEOUT_MS. */
static int zyg_wait_reply(int fd, struct zyg_rep *rep)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, ZYG_TIMEOUT_MS)) < 0 && errno == EINTR)
        ;
    if (rc <= 0)
        return -1;
    ssize_t n;
    while ((n = recv(fd, rep, sizeof(*rep), 0)) < 0 && errno == EINTR)
        ;
    return n == (ssize_t)sizeof(*rep) ? 0 : -1;
}

pid_t sbx_zyg_clone(sbx_t *s, struct sbx_child *c)
{
    static struct zyg_req q; /* 16 KB: not on the loop's stack; the loop is one thread */
    if (s->zyg_fd < 0 || zyg_pack(&q, c->argv) < 0)
        return SBX_ZYG_NONE;
    q.c = *c;
    int fds[ZYG_NFDS] = {c->fd_in, c->fd_out, c->fd_err, c->fd_status, c->fd_sync};
    union {
        char buf[CMSG_SPACE(sizeof(fds))];
        struct cmsghdr align;
    } cb;
    memset(&cb, 0, sizeof(cb));
    struct iovec iov = {.iov_base = &q, .iov_len = sizeof(q) - sizeof(q.args) + q.args_len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb.buf, .msg_controllen = sizeof(cb.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    ssize_t n;
    while ((n = sendmsg(s->zyg_fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    struct zyg_rep rep;
    if (n != (ssize_t)iov.iov_len || zyg_wait_reply(s->zyg_fd, &rep) < 0) {
        log_warn("sandbox: zygote lost (%s); runs are cloned from the worker from now on",
                 n < 0 ? strerror(errno) : "no answer");
        sbx_zyg_stop(s);
        /* Delivered but unanswered: an init may have been cloned with c's
         * fds before the zygote was lost. */
        return n == (ssize_t)iov.iov_len ? SBX_ZYG_LOST : SBX_ZYG_NONE;
    }
    if (rep.pid < 0) {
        errno = -rep.pid;
        return -1;
    }
    c->cg_joined = rep.cg_joined;
    return (pid_t)rep.pid;
}
