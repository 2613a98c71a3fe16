/* sbx_child: everything that runs between clone and execve (the run's init,
 * PID 1 of its namespace, and the program's setup as PID 2), plus the
 * helper child that makes the slots' network namespaces.
 *
 * The worker may be multi-threaded and built with sanitizers: a child of it
 * holds copies of locks other threads held at clone time. So nothing here
 * allocates, prints or takes a lock: system calls, plain memory and the
 * constants the parent computed in struct sbx_child. `make check-child`
 * holds this file to that: every function the object calls must be on the
 * list of async-signal-safe functions and plain system call wrappers in
 * scripts/check-child.sh. */
#include "sbx_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Fixed fd numbers in init after the shuffle. */
enum { CFD_STATUS = 3, CFD_SYNC = 4, CFD_NETNS = 5, CFD_FIRST_FREE = 6 };

static size_t sbx_c_strlcat(char *dst, const char *src, size_t size)
{
    size_t n = strlen(dst), m = strlen(src);
    if (n + 1 < size) {
        size_t k = m < size - n - 1 ? m : size - n - 1;
        memcpy(dst + n, src, k);
        dst[n + k] = '\0';
    }
    return n + m;
}

/* Appends v in decimal (snprintf may allocate, and is not on the list). */
static void sbx_c_strlcat_u(char *dst, unsigned v, size_t size)
{
    char num[16];
    int k = (int)sizeof(num) - 1;
    num[k] = '\0';
    do {
        num[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v && k > 0);
    sbx_c_strlcat(dst, num + k, size);
}

/* Reports a setup failure (kind SBX_REP_ERROR) or a failed execve
 * (SBX_REP_EXEC) on the status fd; what + errno name. */
static void sbx_c_report_error(int kind, const char *what, int e)
{
    struct sbx_report rep;
    memset(&rep, 0, sizeof(rep));
    rep.magic = SBX_REPORT_MAGIC;
    rep.kind = kind;
    sbx_c_strlcat(rep.error, what, sizeof(rep.error));
    if (e) {
        const char *name = strerrorname_np(e);
        sbx_c_strlcat(rep.error, ": ", sizeof(rep.error));
        sbx_c_strlcat(rep.error, name ? name : "error", sizeof(rep.error));
    }
    if (write(CFD_STATUS, &rep, sizeof(rep)) < 0) {
    }
}

static __attribute__((noreturn)) void sbx_c_fail(const char *what)
{
    sbx_c_report_error(SBX_REP_ERROR, what, errno);
    _exit(127);
}

/* ---- the run's root ------------------------------------------------------------ */

static void sbx_c_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                        const char *data, const char *what)
{
    if (mount(src, dst, type, flags, data) < 0)
        sbx_c_fail(what);
}

/* Read-only, nosuid, nodev bind of a host directory. Not recursive: a
 * submount (e.g. a container's /etc/hosts) would keep its own write flag. */
static void sbx_c_bind_ro(const char *src, const char *dst)
{
    if (mkdir(dst, 0755) < 0 && errno != EEXIST)
        sbx_c_fail(dst);
    sbx_c_mount(src, dst, NULL, MS_BIND, NULL, src);
    sbx_c_mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL,
                src);
}

static void sbx_c_bind_dev(const char *name)
{
    char src[32] = "/dev/", dst[32] = "dev/";
    sbx_c_strlcat(src, name, sizeof(src));
    sbx_c_strlcat(dst, name, sizeof(dst));
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        sbx_c_fail(dst);
    close(fd);
    sbx_c_mount(src, dst, NULL, MS_BIND, NULL, src);
}

/* /proc entries a program has no business with, masked with /dev/null
 * (they read empty). The first five are root-only already: masking keeps it
 * so should the program ever hold privileges in its namespace. The rest are
 * world-readable and identify or describe the host: its boot command line
 * and boot id, every host user's key quota use, the kernel's configuration,
 * symbols and modules, and its swap devices. */
static const char *const sbx_proc_masked[] = {"proc/kcore",
                                              "proc/sysrq-trigger",
                                              "proc/keys",
                                              "proc/timer_list",
                                              "proc/sched_debug",
                                              "proc/cmdline",
                                              "proc/sys/kernel/random/boot_id",
                                              "proc/key-users",
                                              "proc/config.gz",
                                              "proc/kallsyms",
                                              "proc/modules",
                                              "proc/swaps"};

/* The run's /proc: hidepid, so the program sees only its own processes (not
 * init, a copy of the worker whose command line would show the worker's
 * flags); /proc/sys read-only; a few entries masked. Under a user namespace
 * the kernel may refuse some of this, which we accept: that mode is already
 * reported as partial isolation. */
static void sbx_c_mount_proc(int userns)
{
    const unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount("proc", "proc", "proc", fl, "hidepid=invisible") < 0 &&
        mount("proc", "proc", "proc", fl, "hidepid=2") < 0) {
        if (!userns)
            sbx_c_fail("mount proc");
        if (mount("proc", "proc", "proc", fl, NULL) < 0)
            return;
    }
    if ((mount("proc/sys", "proc/sys", NULL, MS_BIND | MS_REC, NULL) < 0 ||
         mount(NULL, "proc/sys", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | fl, NULL) < 0) &&
        !userns)
        sbx_c_fail("proc/sys read-only");
    /* The PSI files are world-writable: each write makes a trigger that the
     * kernel's psimon thread polls, host-wide, for as long as the fd lives.
     * Reading the (host-wide) pressure stays possible, like loadavg. */
    int rc = mount("proc/pressure", "proc/pressure", NULL, MS_BIND, NULL);
    if (rc == 0)
        rc = mount(NULL, "proc/pressure", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | fl, NULL);
    if (rc < 0 && errno != ENOENT && !userns)
        sbx_c_fail("proc/pressure read-only");
    for (size_t i = 0; i < sizeof(sbx_proc_masked) / sizeof(sbx_proc_masked[0]); i++) {
        if (mount("/dev/null", sbx_proc_masked[i], NULL, MS_BIND, NULL) < 0 && errno != ENOENT &&
            !userns)
            sbx_c_fail(sbx_proc_masked[i]);
    }
}

/* /usr and /etc read-only; /bin, /lib... as on the host: symlinks into /usr
 * on merged-/usr systems, read-only binds otherwise. */
static void sbx_c_bind_system(const sbx_t *s)
{
    sbx_c_bind_ro("/usr", "usr");
    sbx_c_bind_ro(s->etc_dir ? s->etc_dir : "/etc", "etc");
    static const char *const tops[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
        char host[16] = "/", target[PATH_MAX];
        sbx_c_strlcat(host, tops[i], sizeof(host));
        struct stat st;
        if (lstat(host, &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(host, target, sizeof(target) - 1);
            if (n <= 0)
                continue;
            target[n] = '\0';
            if (symlink(target, tops[i]) < 0)
                sbx_c_fail("symlink");
        } else if (S_ISDIR(st.st_mode)) {
            sbx_c_bind_ro(host, tops[i]);
        }
    }
}

/* A read-only /dev holding only the harmless devices. */
static void sbx_c_make_dev(void)
{
    if (mkdir("dev", 0755) < 0)
        sbx_c_fail("mkdir dev");
    sbx_c_mount("sbx-dev", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755",
                "mount dev tmpfs");
    static const char *const devs[] = {"null", "zero", "full", "random", "urandom"};
    for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++)
        sbx_c_bind_dev(devs[i]);
    if (symlink("/proc/self/fd", "dev/fd") < 0 || symlink("/proc/self/fd/0", "dev/stdin") < 0 ||
        symlink("/proc/self/fd/1", "dev/stdout") < 0 ||
        symlink("/proc/self/fd/2", "dev/stderr") < 0 ||
        /* POSIX semaphores and shm_open (Python's multiprocessing) live in
         * /dev/shm: point it at the run's size-limited /tmp. */
        symlink("/tmp", "dev/shm") < 0)
        sbx_c_fail("dev symlinks");
    sbx_c_mount(NULL, "dev", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC,
                "size=64k,nr_inodes=64,mode=0755", "remount dev");
}

/* The run's writable places: its work dir at /work, a small tmpfs at /tmp. */
static void sbx_c_mount_work(const struct sbx_child *c)
{
    sbx_c_mount(c->workdir, "work", NULL, MS_BIND, NULL, "bind work");
    sbx_c_mount(NULL, "work", NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV, NULL,
                "remount work");
    char opts[64] = "mode=1777,nr_inodes=16384,size=";
    sbx_c_strlcat_u(opts, c->s->cfg.tmp_mb, sizeof(opts));
    sbx_c_strlcat(opts, "m", sizeof(opts));
    sbx_c_mount("sbx-tmp", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts, "mount tmp");
}

#define SBX_ROOT_OPTS "size=1m,nr_inodes=256,mode=0755"

/* What every run's root holds alike, made in a new tmpfs at root: /usr,
 * /etc, the /bin... links, /dev, and the mount points of what each run gets
 * of its own (/proc, /work, /tmp). cwd is root afterwards. */
static void sbx_c_static_root(const sbx_t *s, const char *root)
{
    sbx_c_mount("sbx-root", root, "tmpfs", MS_NOSUID | MS_NODEV, SBX_ROOT_OPTS, "mount root tmpfs");
    if (chdir(root) < 0)
        sbx_c_fail("chdir new root");
    sbx_c_bind_system(s);
    sbx_c_make_dev();
    if (mkdir("proc", 0555) < 0 || mkdir("work", 0755) < 0 || mkdir("tmp", 01777) < 0)
        sbx_c_fail("mkdir mount points");
}

/* Builds the run's root in the current (private) mount namespace and enters
 * it. cwd is /work afterwards. */
static void sbx_c_build_root(const struct sbx_child *c)
{
    /* Nothing we mount may propagate back to the host. */
    sbx_c_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, "make / private");
    if (c->s->tmpl_root) {
        /* The worker's read-only template (sbx_child_tmpl), copied into
         * this namespace by clone: only the run's own mounts remain. */
        if (chdir(c->newroot) < 0)
            sbx_c_fail("chdir new root");
    } else {
        sbx_c_static_root(c->s, c->newroot);
    }
    sbx_c_mount_proc((c->s->ns_flags & CLONE_NEWUSER) != 0);
    sbx_c_mount_work(c);

    /* pivot_root(".", ".") stacks the old root on top of the new one; the
     * detach then drops every host mount from this namespace. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        sbx_c_fail("pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        sbx_c_fail("umount old root");
    if (chdir("/") < 0)
        sbx_c_fail("chdir /");
    sbx_c_mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL,
                "remount / read-only");
    if (chdir("/work") < 0)
        sbx_c_fail("chdir /work");
}

/* ---- the program (PID 2) ------------------------------------------------------- */

static void sbx_c_rlimit(int res, rlim_t v, const char *what)
{
    struct rlimit rl = {v, v};
    if (setrlimit(res, &rl) < 0)
        sbx_c_fail(what);
}

/* Every limit that guards something shared is set here, never inherited from
 * however the worker was started (a unit with LimitRTPRIO= would otherwise
 * let a run take the CPUs with SCHED_FIFO and freeze the host). */
static void sbx_c_rlimits(const struct sbx_child *c)
{
    const sbx_t *s = c->s;
    sbx_c_rlimit(RLIMIT_NPROC, s->cfg.nproc, "rlimit nproc");
    sbx_c_rlimit(RLIMIT_NOFILE, s->cfg.nofile, "rlimit nofile");
    sbx_c_rlimit(RLIMIT_FSIZE, (rlim_t)s->cfg.fsize_mb << 20, "rlimit fsize");
    sbx_c_rlimit(RLIMIT_CORE, 0, "rlimit core");
    sbx_c_rlimit(RLIMIT_CPU, s->cfg.cpu_s, "rlimit cpu");
    sbx_c_rlimit(RLIMIT_MEMLOCK, 64 << 10, "rlimit memlock");
    sbx_c_rlimit(RLIMIT_MSGQUEUE, 0, "rlimit msgqueue");
    sbx_c_rlimit(RLIMIT_SIGPENDING, SBX_SIGPENDING, "rlimit sigpending");
    sbx_c_rlimit(RLIMIT_RTPRIO, 0, "rlimit rtprio");
    sbx_c_rlimit(RLIMIT_RTTIME, 0, "rlimit rttime");
    sbx_c_rlimit(RLIMIT_NICE, 0, "rlimit nice");
    if (s->cg == SBX_CG_NONE)
        sbx_c_rlimit(RLIMIT_AS, (rlim_t)c->mem_mb << 20, "rlimit as");
}

/* The program: PID 2 of the namespace. Never returns. */
static __attribute__((noreturn)) void sbx_c_program(const struct sbx_child *c)
{
    const sbx_t *s = c->s;
    /* No controlling terminal. Without a pid namespace the program stays in
     * init's session instead, so sbx_kill can reach the process group. */
    if (s->ns_flags && setsid() < 0)
        sbx_c_fail("setsid");
    /* Raw syscalls: libc's set*id would try to broadcast to the threads the
     * worker had, which do not exist here. */
    if (s->is_root && syscall(SYS_setgroups, 0, NULL) < 0)
        sbx_c_fail("setgroups");
    if (syscall(SYS_setresgid, c->gid, c->gid, c->gid) < 0)
        sbx_c_fail("setresgid");
    if (syscall(SYS_setresuid, c->uid, c->uid, c->uid) < 0)
        sbx_c_fail("setresuid");
    sbx_c_rlimits(c);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        sbx_c_fail("no_new_privs");
    if (s->ns_flags == 0 && chdir(c->workdir) < 0)
        sbx_c_fail("chdir workdir");
    /* Nothing of the worker (listening socket, Redis, other runs' pipes) may
     * reach the program; the status fd closes itself at exec. */
    if (syscall(SYS_close_range, CFD_STATUS + 1, ~0U, 0) < 0) {
        for (int fd = CFD_STATUS + 1; fd < 65536; fd++)
            close(fd);
    }
    if (fcntl(CFD_STATUS, F_SETFD, FD_CLOEXEC) < 0)
        sbx_c_fail("cloexec status");
    if (s->ll_scoped) {
        struct sbx_ll_attr la = {0, 0, SBX_LL_SCOPE_ABSTRACT | SBX_LL_SCOPE_SIGNAL};
        int lfd = (int)syscall(SYS_landlock_create_ruleset, &la, sizeof(la), 0);
        if (lfd < 0 || syscall(SYS_landlock_restrict_self, lfd, 0) < 0)
            sbx_c_fail("landlock");
        close(lfd);
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &s->prog, 0, 0) < 0)
        sbx_c_fail("seccomp");
    execve(c->argv[0], (char *const *)c->argv, c->envp);
    /* The program could not be started (say a runtime that is not
     * installed): not a fault of the sandbox. */
    sbx_c_report_error(SBX_REP_EXEC, "execve", errno);
    _exit(127);
}

/* The program's entry on its own stack (clone). */
static int sbx_c_program_entry(void *arg)
{
    sbx_c_program((const struct sbx_child *)arg);
}

/* ---- init (PID 1) ---------------------------------------------------------------- */

/* The stack the program's process runs on until execve: init's setup of it
 * is a few frames of system calls, far below this even with sanitizers. */
#define SBX_PROG_STACK (64 * 1024)

union sbx_semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *info;
};

/* Removes every SysV IPC object of the run's IPC namespace. The kernel would
 * free them with the namespace, but from a work queue after an RCU grace
 * period (tens of ms), while a shared memory segment stays charged to the
 * slot's memory cgroup: the next run in the slot would start with less
 * memory. Removed here, unattached segments go at once. */
static void sbx_c_ipc_clean(void)
{
    struct shm_info si;
    int max = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&si);
    for (int i = 0; i <= max; i++) {
        struct shmid_ds ds;
        int id = shmctl(i, SHM_STAT_ANY, &ds);
        if (id < 0) /* kernels before 4.17 */
            id = shmctl(i, SHM_STAT, &ds);
        if (id >= 0)
            shmctl(id, IPC_RMID, NULL);
    }
    struct seminfo sem;
    max = semctl(0, 0, SEM_INFO, (union sbx_semun){.info = &sem});
    for (int i = 0; i <= max; i++) {
        struct semid_ds ds;
        int id = semctl(i, 0, SEM_STAT_ANY, (union sbx_semun){.buf = &ds});
        if (id < 0)
            id = semctl(i, 0, SEM_STAT, (union sbx_semun){.buf = &ds});
        if (id >= 0)
            semctl(id, 0, IPC_RMID);
    }
    struct msginfo mi;
    max = msgctl(0, MSG_INFO, (struct msqid_ds *)(void *)&mi);
    for (int i = 0; i <= max; i++) {
        struct msqid_ds ds;
        int id = msgctl(i, MSG_STAT_ANY, &ds);
        if (id < 0)
            id = msgctl(i, MSG_STAT, &ds);
        if (id >= 0)
            msgctl(id, IPC_RMID, NULL);
    }
}

/* After the program ended: kill and reap what it left running, then drop its
 * IPC objects, so everything the run held is released before init reports
 * (and the worker may start the next run in this slot). Only inside our own
 * PID and IPC namespaces: kill(-1) from a root init in the host's namespace
 * would kill the host. */
static void sbx_c_cleanup(const sbx_t *s)
{
    if (s->ns_flags & CLONE_NEWPID) {
        kill(-1, SIGKILL);
        for (;;) {
            pid_t r = wait4(-1, NULL, __WALL, NULL);
            if (r < 0 && errno != EINTR)
                break;
        }
    }
    if (s->ns_flags & CLONE_NEWIPC)
        sbx_c_ipc_clean();
}

/* Handlers installed by the worker (libev's SIGCHLD...) must not run here:
 * they would write into the worker's fds. Signals were blocked around clone,
 * so none can have arrived yet. */
static void sbx_c_reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Moves the fds init keeps to fixed numbers (0-2 the program's stdio, then
 * CFD_*), and drops everything else of the worker's. F_DUPFD above the range
 * first, so the dup2s cannot clobber a source. */
static void sbx_c_fix_fds(const struct sbx_child *c)
{
    int keep[6] = {c->fd_in,     c->fd_out,  c->fd_err,
                   c->fd_status, c->fd_sync, c->s->slot[c->slot].netns_fd};
    for (int i = 0; i < 6; i++) {
        if (keep[i] < 0)
            continue;
        keep[i] = fcntl(keep[i], F_DUPFD, 16);
        if (keep[i] < 0)
            _exit(127);
    }
    for (int i = 0; i < 6; i++) {
        if (keep[i] < 0)
            close(i); /* e.g. no netns: whatever the worker had there must go */
        else if (dup2(keep[i], i) < 0)
            _exit(127);
    }
    if (syscall(SYS_close_range, CFD_FIRST_FREE, ~0U, 0) < 0) {
        for (int fd = CFD_FIRST_FREE; fd < 65536; fd++)
            close(fd);
    }
}

/* Joins the slot's cgroups, unless clone3 made init in them: every process of
 * the run is forked from here on, so all of it is accounted and limited. */
static void sbx_c_join_cgroups(const struct sbx_child *c)
{
    for (int i = 0; !c->cg_joined && i < CG_N; i++) {
        const char *procs = c->s->slot[c->slot].cg_procs[i];
        if (!procs)
            continue;
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            sbx_c_fail("join cgroup");
        close(fd);
    }
}

/* Waits until the parent has its pidfd (and, with a user namespace, has
 * written our id maps). EOF means it gave up. */
static void sbx_c_wait_go(void)
{
    char go = 0;
    ssize_t n;
    while ((n = read(CFD_SYNC, &go, 1)) < 0 && errno == EINTR)
        ;
    if (n != 1)
        _exit(127);
    close(CFD_SYNC);
}

/* The slot's network namespace, a cgroup namespace, the run's root and host
 * name. */
static void sbx_c_enter(const struct sbx_child *c)
{
    const sbx_t *s = c->s;
    if (s->slot[c->slot].netns_fd >= 0) {
        if (setns(CFD_NETNS, CLONE_NEWNET) < 0)
            sbx_c_fail("setns net");
        close(CFD_NETNS);
    }
    /* A cgroup namespace rooted at the slot's cgroup: /proc/self/cgroup then
     * shows "/", not the worker's cgroup path and host pid. */
    if (s->ns_flags && unshare(CLONE_NEWCGROUP) < 0 && errno != EINVAL)
        sbx_c_fail("unshare cgroup");
    if (s->ns_flags) {
        sbx_c_build_root(c);
        if (sethostname("sandbox", 7) < 0)
            sbx_c_fail("sethostname");
    }
}

/* Reaps everything (orphans are re-parented to init) until the program itself
 * is gone; returns its wait status. */
static int sbx_c_wait_program(pid_t prog)
{
    for (;;) {
        int wst;
        pid_t r = wait4(-1, &wst, __WALL, NULL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return 0;
        if (r == prog)
            return wst;
    }
}

void sbx_child_init(const struct sbx_child *c)
{
    /* Cloned from the zygote, init would carry its name. */
    prctl(PR_SET_NAME, "wk-init");
    sbx_c_reset_signals();
    sbx_c_fix_fds(c);
    sbx_c_join_cgroups(c);
    if (!c->s->ns_flags)
        setsid();
    /* If the worker dies, the run goes with it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sbx_c_wait_go();
    sbx_c_enter(c);

    /* The program's process shares init's memory until it execs (init waits
     * for that: CLONE_VFORK), as posix_spawn does: no copy of init's page
     * tables, no copy-on-write faults, no second address space to tear
     * down at exec. It writes only its own stack, below. */
    char stack[SBX_PROG_STACK] __attribute__((aligned(16)));
    pid_t prog = (pid_t)clone(sbx_c_program_entry, stack + sizeof(stack),
                              CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)c);
    if (prog < 0)
        sbx_c_fail("fork program");
    close(0);
    close(1);
    close(2);

    /* Report once the program is gone and what it left is killed; exiting
     * then ends the namespace. */
    int st = sbx_c_wait_program(prog);
    sbx_c_cleanup(c->s);
    struct sbx_report rep;
    memset(&rep, 0, sizeof(rep));
    rep.magic = SBX_REPORT_MAGIC;
    rep.kind = SBX_REP_DONE;
    rep.wstatus = st;
    getrusage(RUSAGE_CHILDREN, &rep.ru);
    if (write(CFD_STATUS, &rep, sizeof(rep)) < 0) {
    }
    _exit(0);
}

/* ---- the template of the runs' root ------------------------------------------------ */

void sbx_child_tmpl(const sbx_t *s, const char *root, int status_fd)
{
    if (dup2(status_fd, CFD_STATUS) < 0)
        _exit(127);
    sbx_c_static_root(s, root);
    /* Read-only down to the superblock (the binds in it are already): no
     * run, nor anything it leaves, can write there. */
    sbx_c_mount(NULL, ".", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, SBX_ROOT_OPTS,
                "remount template read-only");
    /* Private: a mount the host makes later under /usr or /dev does not
     * propagate into it (the binds are not recursive, so none is in it). */
    sbx_c_mount(NULL, ".", NULL, MS_REC | MS_PRIVATE, NULL, "make template private");
    _exit(0);
}

/* ---- the network namespace helper ----------------------------------------------- */

void sbx_child_netns(int req, int ack, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        char c = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
        if (write(req, &c, 1) != 1 || c != 'y' || read(ack, &c, 1) != 1)
            _exit(1);
    }
    _exit(0);
}
