/* ctl_cmd: the rollout's command and its output (see ctl_cmd.h). */
#include "ctl_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- lines (pure) -------------------------------------------------------- */

int ctl_lines_feed(ctl_lines_t *l, int fd, const char *p, size_t n, ctl_line_fn *fn, void *ud)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        size_t room = CTL_LINE_MAX - buf_size(&l->pend);
        if (take > room) {
            /* An overlong line: pass on a full piece and go on with the rest. */
            if (buf_append(&l->pend, p, room) < 0)
                return -1;
            fn(ud, fd, buf_head(&l->pend), buf_size(&l->pend));
            buf_reset(&l->pend);
            p += room;
            n -= room;
            continue;
        }
        if (!nl) {
            return buf_append(&l->pend, p, n);
        }
        if (buf_size(&l->pend) == 0) {
            fn(ud, fd, p, take); /* the common case: no copy */
        } else {
            if (buf_append(&l->pend, p, take) < 0)
                return -1;
            fn(ud, fd, buf_head(&l->pend), buf_size(&l->pend));
            buf_reset(&l->pend);
        }
        p += take + 1;
        n -= take + 1;
    }
    return 0;
}

void ctl_lines_flush(ctl_lines_t *l, int fd, ctl_line_fn *fn, void *ud)
{
    if (buf_size(&l->pend) > 0)
        fn(ud, fd, buf_head(&l->pend), buf_size(&l->pend));
    buf_free(&l->pend);
}

void ctl_lines_free(ctl_lines_t *l)
{
    if (l != NULL)
        buf_free(&l->pend);
}

/* ---- the template (pure) ------------------------------------------------------ */

static int ctl_shell_safe(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._:@%+=,/-", c) != NULL))
            return 0;
    }
    return 1;
}

int ctl_subst(const char *tmpl, const char *id, const char *host, const char *port, buf_t *out,
              char *err, size_t errlen)
{
    static const char *const names[] = {"{id}", "{host}", "{port}"};
    const char *vals[] = {id, host, port};
    const char *what[] = {"WSLB_ID", "WSLB_HOST", "WSLB_PORT"};
    buf_reset(out);
    for (const char *p = tmpl; *p;) {
        int hit = -1;
        for (int k = 0; k < 3 && hit < 0; k++)
            if (strncmp(p, names[k], strlen(names[k])) == 0)
                hit = k;
        if (hit < 0) {
            if (buf_append(out, p, 1) < 0)
                goto oom;
            p++;
            continue;
        }
        if (!ctl_shell_safe(vals[hit])) {
            snprintf(err, errlen,
                     "%s '%.80s' holds characters a shell would interpret: use \"$%s\" in the "
                     "command instead of %s",
                     names[hit], vals[hit], what[hit], names[hit]);
            return -1;
        }
        if (buf_append_str(out, vals[hit]) < 0)
            goto oom;
        p += strlen(names[hit]);
    }
    if (buf_append(out, "", 1) < 0) /* NUL-terminated for exec */
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- the child ----------------------------------------------------------------- */

/* In the child after fork: its own group, default signals, pipes, exec. */
static void ctl_cmd_child(const char *cmdline, int out, int errfd, const char *id, const char *host,
                          const char *port)
{
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    static const int sigs[] = {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], SIG_DFL);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(errfd, 2) < 0)
        _exit(127);
    char addr[300];
    snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    setenv("WSLB_ID", id, 1);
    setenv("WSLB_HOST", host, 1);
    setenv("WSLB_PORT", port, 1);
    setenv("WSLB_ADDR", addr, 1);
    execl("/bin/sh", "sh", "-c", cmdline, (char *)NULL);
    dprintf(2, "wslbctl: exec /bin/sh: %s\n", strerror(errno));
    _exit(127);
}

int ctl_cmd_start(ctl_cmd_t *c, const char *cmdline, const char *id, const char *host,
                  const char *port, char *err, size_t errlen)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    memset(c, 0, sizeof(*c));
    c->fd[0] = c->fd[1] = -1;
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0)
        ctl_cmd_child(cmdline, po[1], pe[1], id, host, port);
    setpgid(pid, pid); /* also here, so a kill right away reaches the group */
    close(po[1]);
    close(pe[1]);
    c->pid = pid;
    c->fd[0] = po[0];
    c->fd[1] = pe[0];
    fcntl(c->fd[0], F_SETFL, O_NONBLOCK);
    fcntl(c->fd[1], F_SETFL, O_NONBLOCK);
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    return -1;
}

void ctl_cmd_pump(ctl_cmd_t *c, int k, ctl_line_fn *fn, void *ud)
{
    char chunk[16384];
    for (int i = 0; i < 4 && c->fd[k] >= 0; i++) {
        ssize_t n = read(c->fd[k], chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            ctl_lines_flush(&c->lines[k], k + 1, fn, ud);
            close(c->fd[k]);
            c->fd[k] = -1;
            return;
        }
        if (ctl_lines_feed(&c->lines[k], k + 1, chunk, (size_t)n, fn, ud) < 0) {
            /* Out of memory: pass on what is held rather than lose it. */
            ctl_lines_flush(&c->lines[k], k + 1, fn, ud);
            fn(ud, k + 1, chunk, (size_t)n);
        }
    }
}

int ctl_cmd_reap(ctl_cmd_t *c)
{
    if (c->exited)
        return 1;
    if (c->pid <= 0)
        return 0;
    int st;
    pid_t r = waitpid(c->pid, &st, WNOHANG);
    if (r == c->pid) {
        c->exited = 1;
        c->status = st;
    }
    return c->exited;
}

void ctl_cmd_kill(ctl_cmd_t *c, int sig)
{
    if (c->pid > 0)
        kill(-c->pid, sig);
}

void ctl_cmd_close(ctl_cmd_t *c, ctl_line_fn *fn, void *ud)
{
    for (int k = 0; k < 2; k++) {
        if (c->fd[k] >= 0) {
            ctl_cmd_pump(c, k, fn, ud);
            ctl_lines_flush(&c->lines[k], k + 1, fn, ud);
            if (c->fd[k] >= 0)
                close(c->fd[k]);
            c->fd[k] = -1;
        }
        ctl_lines_free(&c->lines[k]);
    }
    c->pid = 0;
}

const char *ctl_cmd_describe(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended (wait status %d)", status);
    return buf;
}
