/* sbx: namespaces + cgroups + seccomp sandbox for one untrusted program;
 * this file holds its lifecycle (create, spawn, kill, finish) and the
 * namespaces.
 *
 * See sbx.h for the layout of a run. Everything the child side (between
 * clone and execve, in sbx_child.c) needs is computed here beforehand, so the
 * child only makes system calls: no malloc, no stdio, no locks. That keeps it
 * safe when the worker is multi-threaded or built with sanitizers. Cgroups,
 * work dirs and the seccomp filter live in sbx_cg.c, sbx_fs.c and
 * sbx_seccomp.c. */
#include "sbx_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

void sbx_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int sbx_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static uint64_t sbx_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int sbx_write_file(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = strlen(val);
    ssize_t n = write(fd, val, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}

/* ---- namespaces ------------------------------------------------------------- */

static pid_t sbx_clone(unsigned long flags)
{
    /* Raw clone with no new stack behaves like fork but lets the child be
     * born in new namespaces, so it is PID 1 of its own pid namespace. */
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

/* Tests whether a child can be created in the given namespaces. */
static int sbx_try_ns(unsigned long flags)
{
    pid_t pid = sbx_clone(flags);
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(0);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return 0;
}

/* Makes one empty network namespace per slot and keeps a handle to each:
 * joining one is cheap, creating one per run is not (tens of milliseconds of
 * kernel work for every namespace torn down). One per slot, not one shared:
 * concurrent runs then cannot see each other's unix sockets in
 * /proc/net/unix, nor meet, collide or signal through abstract socket names.
 * A helper child unshares once per slot and waits each time until we hold
 * the namespace. */
static int sbx_make_netns(sbx_t *s)
{
    int req[2], ack[2], rc = -1;
    if (pipe2(req, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(ack, O_CLOEXEC) < 0) {
        close(req[0]);
        close(req[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(req[0]);
        close(ack[1]);
        sbx_child_netns(req[1], ack[0], s->cfg.slots);
    }
    close(req[1]);
    close(ack[0]);
    unsigned made = 0;
    for (char c; pid > 0 && made < s->cfg.slots && read(req[0], &c, 1) == 1 && c == 'y'; made++) {
        char path[64];
        sbx_fmt(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
        s->slot[made].netns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->slot[made].netns_fd < 0 || write(ack[1], "g", 1) != 1)
            break;
    }
    rc = made == s->cfg.slots ? 0 : -1;
    for (unsigned i = 0; rc < 0 && i < s->cfg.slots; i++) {
        if (s->slot[i].netns_fd >= 0)
            close(s->slot[i].netns_fd);
        s->slot[i].netns_fd = -1;
    }
    close(req[0]);
    close(ack[1]);
    if (pid > 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    return rc;
}

/* Builds the runs' template root at work_root/.root, in the worker's mount
 * namespace, through a helper child running the same code a run's init
 * would (sbx_child.c). A run then mounts 2 file systems and up to 15 binds
 * of its own instead of 4 and 22 plus the /dev nodes, links and directories:
 * the same tree for less setup and teardown per run. On failure the runs
 * build it each time. */
static int sbx_make_tmpl(sbx_t *s, char *why, size_t whylen)
{
    char root[PATH_MAX];
    int st[2];
    if (sbx_fmt(root, sizeof(root), "%s/.root", s->work_root) < 0 || pipe2(st, O_CLOEXEC) < 0) {
        sbx_seterr(why, whylen, "%s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0)
        sbx_child_tmpl(s, root, st[1]);
    close(st[1]);
    struct sbx_report rep;
    memset(&rep, 0, sizeof(rep));
    ssize_t n = pid > 0 ? read(st[0], &rep, sizeof(rep)) : -1;
    int wst = 0, fork_errno = errno;
    while (pid > 0 && waitpid(pid, &wst, 0) < 0 && errno == EINTR)
        ;
    close(st[0]);
    if (pid > 0 && n == 0 && WIFEXITED(wst) && WEXITSTATUS(wst) == 0)
        return 0;
    if (pid < 0)
        sbx_seterr(why, whylen, "fork: %s", strerror(fork_errno));
    else if (n == (ssize_t)sizeof(rep) && rep.magic == SBX_REPORT_MAGIC)
        sbx_seterr(why, whylen, "%.*s", (int)sizeof(rep.error) - 1, rep.error);
    else
        sbx_seterr(why, whylen, "helper ended with status 0x%x", (unsigned)wst);
    sbx_umount_all(root);
    return -1;
}

/* Landlock ABI 6 scopes: a run may then neither connect to abstract unix
 * sockets made outside its own domain nor signal outside it. The slot's own
 * network namespace already keeps other runs' abstract names out of reach;
 * the scope is a second wall where the kernel has it (Linux 6.12+). */
static int sbx_landlock_scoped(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, SBX_LL_CREATE_VERSION);
    return abi >= 6;
}

/* ---- create / free --------------------------------------------------------- */

static void sbx_defaults(sbx_config_t *c)
{
    if (c->uid_base == 0)
        c->uid_base = 61000;
    if (c->memory_mb == 0)
        c->memory_mb = 256;
    if (c->nproc == 0)
        c->nproc = 64;
    if (c->nofile == 0)
        c->nofile = 64;
    if (c->fsize_mb == 0)
        c->fsize_mb = 16;
    if (c->tmp_mb == 0)
        c->tmp_mb = 32;
    if (c->cpu_s == 0)
        c->cpu_s = 60;
}

static void sbx_append(sbx_t *s, const char *what)
{
    size_t n = strlen(s->isolation);
    sbx_fmt(s->isolation + n, sizeof(s->isolation) - n, "%s%s", n ? "; " : "partial: ", what);
}

/* A zeroed sbx_t for cfg with defaults applied and nothing opened yet. */
static sbx_t *sbx_alloc(const sbx_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->work_root || cfg->work_root[0] != '/') {
        sbx_seterr(err, errlen, "work_root must be an absolute path");
        return NULL;
    }
    if (cfg->slots == 0 || cfg->slots > SBX_MAX_SLOTS) {
        sbx_seterr(err, errlen, "slots must be 1..%d", SBX_MAX_SLOTS);
        return NULL;
    }
    sbx_t *s = calloc(1, sizeof(*s));
    if (!s) {
        sbx_seterr(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    sbx_defaults(&s->cfg);
    s->root_fd = -1;
    s->lock_fd = -1;
    s->zyg_fd = -1;
    s->zyg_pidfd = -1;
    s->is_root = geteuid() == 0;
    s->host_uid = geteuid();
    s->host_gid = getegid();
    s->work_root = strdup(cfg->work_root);
    s->slot = calloc(s->cfg.slots, sizeof(*s->slot));
    if (!s->work_root || !s->slot) {
        sbx_seterr(err, errlen, "out of memory");
        goto fail;
    }
    s->cfg.work_root = s->work_root;
    for (unsigned i = 0; i < s->cfg.slots; i++) {
        s->slot[i].pidfd = -1;
        s->slot[i].cg_fd = -1;
        s->slot[i].netns_fd = -1;
    }
    if ((uint64_t)s->cfg.uid_base + s->cfg.slots > 0xfffffffeull) {
        sbx_seterr(err, errlen, "uid_base + slots overflows");
        goto fail;
    }
    return s;
fail:
    sbx_free(s);
    return NULL;
}

/* The work root, each slot's work dir and the runs' /etc. */
static int sbx_setup_files(sbx_t *s, char *err, size_t errlen)
{
    if (sbx_root_lock(s, err, errlen) < 0)
        return -1;
    /* Before any fd below, so that they belong to the new namespace (a dirfd
     * from the old one would not see the mounts made here). */
    int private_mounts = s->is_root && sbx_private_mounts() == 0;
    if (sbx_root_open(s, err, errlen) < 0)
        return -1;
    sbx_sweep_old(s);
    /* Each slot's work dir is a tmpfs of its own where we may mount (so /work
     * is size-limited and every run gets a new one), else a plain directory. */
    s->workdir_tmpfs = private_mounts && sbx_workdir_reset(s, 0, NULL, 0) == 0;
    if (!s->workdir_tmpfs && s->is_root)
        sbx_append(s, "/work not size-limited");
    for (unsigned i = 0; i < s->cfg.slots; i++) {
        if (sbx_workdir_reset(s, (int)i, err, errlen) < 0)
            return -1;
    }
    if (sbx_make_etc(s, private_mounts) < 0) {
        log_warn("sandbox: cannot prepare the runs' /etc (%s): runs see the host's",
                 strerror(errno));
        sbx_free_etc(s);
        sbx_append(s, "host /etc visible");
    }
    return 0;
}

/* Which namespaces runs get: as root directly; otherwise through a user
 * namespace; and how their network is isolated. */
static void sbx_setup_ns(sbx_t *s)
{
    const int base = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    if (s->is_root && sbx_try_ns(base) == 0) {
        s->ns_flags = base;
    } else if (sbx_try_ns(base | CLONE_NEWUSER) == 0) {
        s->ns_flags = base | CLONE_NEWUSER;
        if (!s->is_root)
            sbx_append(s, "unprivileged user namespace (one uid for all slots)");
    } else {
        sbx_append(s, "no namespaces (host filesystem, pids and network visible)");
    }
    if (s->ns_flags && !(s->ns_flags & CLONE_NEWUSER)) {
        if (sbx_make_netns(s) < 0)
            sbx_append(s, "network not isolated");
    } else if (s->ns_flags) {
        /* A netns owned by another user namespace cannot be joined: make a
         * new one per run (slower, but isolated). */
        if (sbx_try_ns(s->ns_flags | CLONE_NEWNET) == 0)
            s->ns_flags |= CLONE_NEWNET;
        else
            sbx_append(s, "network not isolated");
    }
}

sbx_t *sbx_create(const sbx_config_t *cfg, char *err, size_t errlen)
{
    sbx_t *s = sbx_alloc(cfg, err, errlen);
    if (!s)
        return NULL;
    if (sbx_setup_files(s, err, errlen) < 0)
        goto fail;
    s->ll_scoped = sbx_landlock_scoped();
    sbx_setup_ns(s);
    /* As root in a mount namespace of our own only: elsewhere the template's
     * mounts would be the host's, or not ours to make. */
    if (s->workdir_tmpfs && s->ns_flags && !(s->ns_flags & CLONE_NEWUSER)) {
        char twhy[160];
        if (sbx_make_tmpl(s, twhy, sizeof(twhy)) == 0)
            s->tmpl_root = 1;
        else
            log_warn("sandbox: no template root (%s): each run builds its own", twhy);
    }
    if (sbx_build_seccomp(s, err, errlen) < 0)
        goto fail;

    char why[256];
    if (s->is_root && sbx_cg_setup(s, why, sizeof(why)) < 0) {
        sbx_append(s, why);
        sbx_append(s, "rlimit only for memory");
    } else if (!s->is_root) {
        sbx_append(s, "no cgroups (not root): rlimit only for memory");
    }
    if (!s->isolation[0])
        sbx_fmt(s->isolation, sizeof(s->isolation), "full");
    /* Last: the zygote's copy of s must hold all of the above. */
    if (sbx_zyg_start(s) < 0)
        log_warn("sandbox: no zygote (%s): runs are cloned from the worker", strerror(errno));
    log_info("sandbox: %u slots under %s, cgroup %s, isolation: %s", s->cfg.slots, s->work_root,
             sbx_cgroup_mode(s), s->isolation);
    return s;
fail:;
    /* EBUSY says that the work root is another live sandbox's, nothing else. */
    int e = errno == EBUSY && s->lock_fd >= 0 ? EIO : errno;
    sbx_free(s);
    errno = e;
    return NULL;
}

void sbx_free(sbx_t *s)
{
    if (!s)
        return;
    sbx_zyg_stop(s);
    for (unsigned i = 0; s->slot && i < s->cfg.slots; i++) {
        if (s->slot[i].pidfd >= 0)
            close(s->slot[i].pidfd);
        if (s->slot[i].netns_fd >= 0)
            close(s->slot[i].netns_fd);
    }
    sbx_cg_cleanup(s);
    sbx_root_remove(s);
    free(s->filter);
    free(s->slot);
    free(s->work_root);
    free(s);
}

const char *sbx_isolation(const sbx_t *s)
{
    return s ? s->isolation : "none";
}

/* ---- spawn / kill / finish ------------------------------------------------------ */

static void sbx_close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    p[0] = p[1] = -1;
}

static int sbx_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Starts a run's init. With cgroup v2 it is born inside the slot's cgroup
 * (clone3 + CLONE_INTO_CGROUP: no migration at all); otherwise the child
 * joins by itself, so the worker's loop never waits on a cgroup migration,
 * which can take milliseconds (an RCU grace period). */
static pid_t sbx_clone_run(const sbx_t *s, int slot, unsigned long extra, int *joined)
{
    *joined = 0;
    if (s->cg == SBX_CG_V2 && s->slot[slot].cg_fd >= 0) {
        struct sbx_clone_args a;
        memset(&a, 0, sizeof(a));
        a.flags = (uint64_t)s->ns_flags | extra | CLONE_INTO_CGROUP;
        /* CLONE_PARENT takes the caller's own exit signal (clone3 wants 0). */
        a.exit_signal = (extra & CLONE_PARENT) ? 0 : SIGCHLD;
        a.cgroup = (uint64_t)s->slot[slot].cg_fd;
        pid_t pid = (pid_t)syscall(SYS_clone3, &a, sizeof(a));
        if (pid >= 0) {
            *joined = 1;
            return pid;
        }
        /* Older kernel (ENOSYS, E2BIG): fall back to clone + self-join. */
    }
    return sbx_clone((unsigned long)s->ns_flags | extra);
}

/* Writes the id maps of a user-namespaced init: the slot uid inside maps to
 * us outside (or, as root, to the same slot uid: never to host root, whose
 * files the program could then open), so the program runs unprivileged
 * even inside its namespace. */
static int sbx_write_idmaps(const sbx_t *s, pid_t pid, uid_t uid)
{
    char path[64], map[64];
    sbx_fmt(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
    if (sbx_write_file(path, "deny") < 0 && errno != ENOENT)
        return -1;
    sbx_fmt(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
    unsigned out_uid = s->is_root ? (unsigned)uid : (unsigned)s->host_uid;
    unsigned out_gid = s->is_root ? (unsigned)uid : (unsigned)s->host_gid;
    sbx_fmt(map, sizeof(map), "%u %u 1\n", (unsigned)uid, out_uid);
    if (sbx_write_file(path, map) < 0)
        return -1;
    sbx_fmt(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
    sbx_fmt(map, sizeof(map), "%u %u 1\n", (unsigned)uid, out_gid);
    return sbx_write_file(path, map);
}

/* The pipes between the worker and a run: [0] read end, [1] write end. The
 * child's ends go to init; the worker keeps the others. */
struct sbx_pipes {
    int in[2], out[2], err[2], stat[2], sync[2];
};

static void sbx_pipes_close_all(struct sbx_pipes *fp)
{
    sbx_close_pair(fp->in);
    sbx_close_pair(fp->out);
    sbx_close_pair(fp->err);
    sbx_close_pair(fp->stat);
    sbx_close_pair(fp->sync);
}

static int sbx_pipes_open(struct sbx_pipes *fp)
{
    if (pipe2(fp->in, O_CLOEXEC) < 0 || pipe2(fp->out, O_CLOEXEC) < 0 ||
        pipe2(fp->err, O_CLOEXEC) < 0 || pipe2(fp->stat, O_CLOEXEC) < 0 ||
        /* A socket for the go byte: send(MSG_NOSIGNAL) cannot raise SIGPIPE
         * in the worker if the child died first. */
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fp->sync) < 0)
        return -1;
    return 0;
}

/* Once init has them: the worker's copies of the child's ends go. */
static void sbx_pipes_close_child_ends(struct sbx_pipes *fp)
{
    close(fp->in[0]);
    close(fp->out[1]);
    close(fp->err[1]);
    close(fp->stat[1]);
    close(fp->sync[0]);
    fp->in[0] = fp->out[1] = fp->err[1] = fp->stat[1] = fp->sync[0] = -1;
}

/* Everything init will need, computed now: the child may not allocate. */
static void sbx_child_prepare(const sbx_t *s, int slot, const char *const argv[], unsigned mem,
                              const struct sbx_pipes *fp, struct sbx_child *c)
{
    static char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/work", "LANG=C.UTF-8",
                                 "TMPDIR=/tmp", NULL};
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->argv = argv;
    c->envp = envp;
    c->uid = sbx_slot_uid(s, slot);
    c->gid = (gid_t)c->uid;
    if (!s->is_root && !(s->ns_flags & CLONE_NEWUSER)) {
        c->uid = getuid();
        c->gid = getgid();
    }
    c->mem_mb = mem;
    c->slot = slot;
    sbx_fmt(c->workdir, sizeof(c->workdir), "%s/slot%d", s->work_root, slot);
    sbx_fmt(c->newroot, sizeof(c->newroot), "%s/.root", s->work_root);
    c->fd_in = fp->in[0];
    c->fd_out = fp->out[1];
    c->fd_err = fp->err[1];
    c->fd_status = fp->stat[1];
    c->fd_sync = fp->sync[0];
}

pid_t sbx_clone_init(const sbx_t *s, int slot, unsigned long extra, struct sbx_child *c)
{
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = sbx_clone_run(s, slot, extra, &c->cg_joined);
    if (pid == 0)
        sbx_child_init(c);
    int clone_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = clone_errno;
    return pid;
}

/* Lets init go once the worker holds what it needs of it: the id maps of a
 * user namespace written, then the go byte; the worker's ends non-blocking. */
static int sbx_release_init(const sbx_t *s, pid_t pid, uid_t uid, struct sbx_pipes *fp, char *err,
                            size_t errlen)
{
    if ((s->ns_flags & CLONE_NEWUSER) && sbx_write_idmaps(s, pid, uid) < 0) {
        sbx_seterr(err, errlen, "user namespace id maps: %s", strerror(errno));
        return -1;
    }
    if (send(fp->sync[1], "g", 1, MSG_NOSIGNAL) != 1) {
        sbx_seterr(err, errlen, "start child: %s", strerror(errno));
        return -1;
    }
    close(fp->sync[1]);
    fp->sync[1] = -1;
    if (sbx_set_nonblock(fp->in[1]) < 0 || sbx_set_nonblock(fp->out[0]) < 0 ||
        sbx_set_nonblock(fp->err[0]) < 0 || sbx_set_nonblock(fp->stat[0]) < 0) {
        sbx_seterr(err, errlen, "nonblock: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* A spawn failed after clone: init is killed and reaped (with whatever it
 * forked), and a setup error it reported becomes err. */
static void sbx_abort_init(sbx_t *s, int slot, pid_t pid, int stat_fd, char *err, size_t errlen)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
    /* A child that failed its setup before we could start it says why. */
    struct sbx_report rep;
    if (stat_fd >= 0 && read(stat_fd, &rep, sizeof(rep)) == (ssize_t)sizeof(rep) &&
        rep.magic == SBX_REPORT_MAGIC && rep.kind != SBX_REP_DONE) {
        rep.error[sizeof(rep.error) - 1] = '\0';
        sbx_seterr(err, errlen, "%s", rep.error);
    }
    sbx_cg_kill_all(s, slot);
}

static int sbx_spawn_check(const sbx_t *s, int slot, const char *const argv[], const sbx_proc_t *p,
                           char *err, size_t errlen)
{
    if (!s || !p || slot < 0 || (unsigned)slot >= s->cfg.slots) {
        sbx_seterr(err, errlen, "bad slot %d", slot);
        return -1;
    }
    if (!argv || !argv[0] || argv[0][0] != '/') {
        sbx_seterr(err, errlen, "argv[0] must be an absolute path");
        return -1;
    }
    if (s->slot[slot].pid > 0) {
        sbx_seterr(err, errlen, "slot %d is busy", slot);
        return -1;
    }
    return 0;
}

int sbx_spawn(sbx_t *s, int slot, const char *const argv[], unsigned memory_mb, sbx_proc_t *p,
              char *err, size_t errlen)
{
    uint64_t t0 = sbx_now_ns();
    struct sbx_pipes fp = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    int pidfd = -1;
    pid_t pid = -1;

    if (sbx_spawn_check(s, slot, argv, p, err, errlen) < 0)
        return -1;
    struct sbx_slot *sl = &s->slot[slot];
    unsigned mem = memory_mb ? memory_mb : s->cfg.memory_mb;
    if (sbx_cg_run_begin(s, slot, mem) < 0) {
        sbx_seterr(err, errlen, "set memory limit: %s", strerror(errno));
        return -1;
    }
    if (sbx_pipes_open(&fp) < 0) {
        sbx_seterr(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    struct sbx_child c;
    sbx_child_prepare(s, slot, argv, mem, &fp, &c);
    /* From the zygote (sbx_zyg.c), whose address space stays small, else
     * from here. */
    pid = sbx_zyg_clone(s, &c);
    if (pid == SBX_ZYG_LOST) {
        /* An init the zygote may have cloned before it was lost holds these
         * pipes: with the same ones, it and ours would race for the go byte
         * and both write the run's status. With new ones, it reads EOF on
         * its sync and exits. */
        pid = -1;
        sbx_pipes_close_all(&fp);
        if (sbx_pipes_open(&fp) < 0) {
            sbx_seterr(err, errlen, "pipe: %s", strerror(errno));
            goto fail;
        }
        sbx_child_prepare(s, slot, argv, mem, &fp, &c);
        pid = SBX_ZYG_NONE;
    }
    if (pid == SBX_ZYG_NONE)
        pid = sbx_clone_init(s, slot, 0, &c);
    if (pid < 0) {
        sbx_seterr(err, errlen, "clone: %s", strerror(errno));
        goto fail;
    }
    /* A pidfd makes sbx_kill safe even after the pid was reaped and reused. */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    sbx_pipes_close_child_ends(&fp);
    if (sbx_release_init(s, pid, c.uid, &fp, err, errlen) < 0)
        goto fail;

    sl->pid = pid;
    sl->pidfd = pidfd;
    p->pid = pid;
    p->in_fd = fp.in[1];
    p->out_fd = fp.out[0];
    p->err_fd = fp.err[0];
    p->status_fd = fp.stat[0];
    p->slot = slot;
    p->spawn_ns = sbx_now_ns() - t0;
    return 0;

fail:
    if (pid > 0)
        sbx_abort_init(s, slot, pid, fp.stat[0], err, errlen);
    if (pidfd >= 0)
        close(pidfd);
    sbx_pipes_close_all(&fp);
    return -1;
}

void sbx_kill(sbx_t *s, sbx_proc_t *p)
{
    if (!s || !p || p->slot < 0 || (unsigned)p->slot >= s->cfg.slots)
        return;
    struct sbx_slot *sl = &s->slot[p->slot];
    if (sl->pid <= 0 || sl->pid != p->pid)
        return;
    if (sl->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, sl->pidfd, SIGKILL, NULL, 0);
    else
        kill(p->pid, SIGKILL);
    /* Without a pid namespace, init's process group is the best we have. */
    if (s->ns_flags == 0)
        kill(-p->pid, SIGKILL);
    sbx_cg_kill_all(s, p->slot);
}

int sbx_finish(sbx_t *s, sbx_proc_t *p, sbx_result_t *r)
{
    if (!s || !p || !r || p->slot < 0 || (unsigned)p->slot >= s->cfg.slots)
        return -1;
    struct sbx_slot *sl = &s->slot[p->slot];
    memset(r, 0, sizeof(*r));

    /* At most two records: the program's setup error, then init's report. */
    struct sbx_report rep;
    while (p->status_fd >= 0) {
        ssize_t n = read(p->status_fd, &rep, sizeof(rep));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(rep) || rep.magic != SBX_REPORT_MAGIC)
            break;
        rep.error[sizeof(rep.error) - 1] = '\0';
        if (rep.kind != SBX_REP_DONE && !r->error[0]) {
            sbx_fmt(r->error, sizeof(r->error), "%s", rep.error);
            r->sandbox_fault = rep.kind == SBX_REP_ERROR;
            r->reported = 1;
        } else if (rep.kind == SBX_REP_DONE) {
            r->reported = 1;
            if (WIFEXITED(rep.wstatus)) {
                r->exited = 1;
                r->status = WEXITSTATUS(rep.wstatus);
            } else if (WIFSIGNALED(rep.wstatus)) {
                r->signal = WTERMSIG(rep.wstatus);
            }
            r->cpu_ms =
                ((uint64_t)rep.ru.ru_utime.tv_sec + (uint64_t)rep.ru.ru_stime.tv_sec) * 1000 +
                ((uint64_t)rep.ru.ru_utime.tv_usec + (uint64_t)rep.ru.ru_stime.tv_usec) / 1000;
            r->max_rss_kb = (uint64_t)rep.ru.ru_maxrss;
        }
    }
    if (r->error[0]) {
        /* A setup failure is not the program's exit status. */
        r->exited = 0;
        r->status = 127;
        r->signal = 0;
    }
    if (p->status_fd >= 0) {
        close(p->status_fd);
        p->status_fd = -1;
    }

    sbx_cg_run_end(s, p->slot, r);
    if (sl->pidfd >= 0)
        close(sl->pidfd);
    sl->pidfd = -1;
    sl->pid = 0;
    return 0;
}
