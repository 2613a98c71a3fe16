/* Sandbox tests: real runs of real programs, so they need root (namespaces,
 * cgroups, uid switching) and skip otherwise. Each run is driven by a small
 * poll() loop with a deadline, the way the worker's event loop would. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sbx.h"
#include "sbx_int.h"

#define WORK_ROOT_FMT "/tmp/sbx-test-%d"
#define OUT_MAX       65536

struct run {
    char out[OUT_MAX];
    char err[OUT_MAX];
    size_t out_len, err_len;
    sbx_result_t res;
    uint64_t elapsed_ms;
    uint64_t spawn_ns;
};

static sbx_t *S;
static char work_root[64];
/* The slots' uids are this test's own, so that workers and other tests on the
 * host, whose slots count processes against their uids, cannot interfere. */
static uid_t uid0;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int drain(int *fd, char *buf, size_t *len)
{
    if (*fd < 0)
        return 0;
    for (;;) {
        char tmp[4096];
        ssize_t n = read(*fd, tmp, sizeof(tmp));
        if (n > 0) {
            size_t room = OUT_MAX - 1 - *len;
            size_t k = (size_t)n < room ? (size_t)n : room;
            memcpy(buf + *len, tmp, k);
            *len += k;
            buf[*len] = '\0';
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        close(*fd);
        *fd = -1;
        return 0;
    }
}

/* Runs argv in slot, feeding input; kills it after kill_after_ms (0: never)
 * and fails the test if it is not over within timeout_ms. */
static void run_full(int slot, const char *const argv[], const char *input, unsigned mem_mb,
                     unsigned kill_after_ms, unsigned timeout_ms, struct run *r)
{
    char err[256] = "";
    sbx_proc_t p;
    memset(r, 0, sizeof(*r));
    uint64_t t0 = now_ms();
    int rc = sbx_spawn(S, slot, argv, mem_mb, &p, err, sizeof(err));
    if (rc != 0)
        fail_msg("sbx_spawn: %s", err);
    r->spawn_ns = p.spawn_ns;
    if (input && input[0]) {
        ssize_t n = write(p.in_fd, input, strlen(input));
        assert_int_equal(n, (ssize_t)strlen(input));
    }
    close(p.in_fd);
    int out = p.out_fd, errfd = p.err_fd, reaped = 0, killed = 0;
    /* Readable when init exits: no polling interval in the measurements. */
    int pidfd = (int)syscall(SYS_pidfd_open, p.pid, 0);
    assert_true(pidfd >= 0);
    while (!reaped || out >= 0 || errfd >= 0) {
        uint64_t el = now_ms() - t0;
        if (el > timeout_ms) {
            sbx_kill(S, &p);
            if (el > timeout_ms + 5000)
                fail_msg("run did not end: %s", argv[0]);
        }
        if (kill_after_ms && !killed && el >= kill_after_ms) {
            sbx_kill(S, &p);
            sbx_kill(S, &p); /* idempotent */
            killed = 1;
        }
        struct pollfd pf[3] = {
            {out, POLLIN, 0}, {errfd, POLLIN, 0}, {reaped ? -1 : pidfd, POLLIN, 0}};
        poll(pf, 3, 20);
        drain(&out, r->out, &r->out_len);
        drain(&errfd, r->err, &r->err_len);
        if (!reaped) {
            int st;
            pid_t w = waitpid(p.pid, &st, WNOHANG);
            if (w == p.pid)
                reaped = 1;
        }
    }
    close(pidfd);
    assert_int_equal(sbx_finish(S, &p, &r->res), 0);
    r->elapsed_ms = now_ms() - t0;
}

static void run(const char *const argv[], const char *input, struct run *r)
{
    run_full(0, argv, input, 0, 0, 20000, r);
}

/* Runs a Python snippet in the sandbox. */
static void py(const char *code, struct run *r)
{
    const char *argv[] = {"/usr/bin/python3", "-c", code, NULL};
    run(argv, NULL, r);
    if (!r->res.exited || r->res.status != 0)
        print_message("python stderr: %s\n", r->err);
}

static int group_setup(void **state)
{
    char err[256] = "";
    if (geteuid() != 0)
        return 0;
    snprintf(work_root, sizeof(work_root), WORK_ROOT_FMT, (int)getpid());
    uid0 = (uid_t)(3000000 + 4 * getpid());
    sbx_config_t cfg = {
        .work_root = work_root, .slots = 2, .uid_base = uid0, .memory_mb = 256, .nproc = 32};
    S = sbx_create(&cfg, err, sizeof(err));
    if (!S) {
        fprintf(stderr, "sbx_create: %s\n", err);
        return -1;
    }
    printf("sandbox isolation: %s (cgroup %s)\n", sbx_isolation(S), sbx_cgroup_mode(S));
    return 0;
}

static int group_teardown(void **state)
{
    sbx_free(S);
    S = NULL;
    char roots[96];
    snprintf(roots, sizeof(roots), "%s-roots", work_root);
    if (work_root[0])
        sbx_rm_tree(AT_FDCWD, roots); /* test_root_lock's, should it fail */
    struct stat st;
    if (work_root[0] && stat(work_root, &st) == 0)
        fprintf(stderr, "work root %s left behind\n", work_root);
    return 0;
}

static int test_setup(void **state)
{
    char err[256] = "";
    if (!S)
        skip();
    for (int i = 0; i < 2; i++)
        if (sbx_workdir_reset(S, i, err, sizeof(err)) != 0)
            fail_msg("reset: %s", err);
    return 0;
}

#define NEED_ROOT()                                                                                \
    do {                                                                                           \
        if (!S)                                                                                    \
            skip();                                                                                \
    } while (0)

static void test_echo(void **state)
{
    struct run r;
    const char *argv[] = {"/bin/echo", "hello", NULL};
    run(argv, NULL, &r);
    assert_true(r.res.reported);
    assert_true(r.res.exited);
    assert_int_equal(r.res.status, 0);
    assert_string_equal(r.out, "hello\n");
}

static void test_python(void **state)
{
    struct run r;
    py("print(6*7)", &r);
    assert_string_equal(r.out, "42\n");
    assert_int_equal(r.res.status, 0);
}

static void test_stdin(void **state)
{
    struct run r;
    const char *argv[] = {"/bin/cat", NULL};
    run(argv, "abc\ndef\n", &r);
    assert_string_equal(r.out, "abc\ndef\n");
}

static void test_exit_status(void **state)
{
    struct run r;
    const char *argv[] = {"/bin/sh", "-c", "echo oops >&2; exit 3", NULL};
    run(argv, NULL, &r);
    assert_true(r.res.exited);
    assert_int_equal(r.res.status, 3);
    assert_int_equal(r.res.signal, 0);
    assert_string_equal(r.err, "oops\n");
}

static void test_signal(void **state)
{
    struct run r;
    const char *argv[] = {"/bin/sh", "-c", "kill -SEGV $$", NULL};
    run(argv, NULL, &r);
    assert_false(r.res.exited);
    assert_int_equal(r.res.signal, SIGSEGV);
}

static void test_exec_error(void **state)
{
    struct run r;
    const char *argv[] = {"/nonexistent", NULL};
    run(argv, NULL, &r);
    assert_true(r.res.reported);
    assert_false(r.res.exited);
    assert_non_null(strstr(r.res.error, "ENOENT"));
    /* A program that does not exist is not the slot's fault. */
    assert_false(r.res.sandbox_fault);
}

/* A slot whose work dir is gone (a /tmp cleaner removed the directory, which
 * looks empty from the host, and a file took its name) fails the sandbox's
 * setup, which says so; a reset gives it a new tmpfs and it works again. */
static void test_setup_fault_and_reset(void **state)
{
    char path[128], err[256] = "";
    snprintf(path, sizeof(path), "%s/slot0", work_root);
    assert_int_equal(umount2(path, MNT_DETACH), 0);
    assert_int_equal(rmdir(path), 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    sbx_proc_t p;
    const char *argv[] = {"/bin/true", NULL};
    if (sbx_spawn(S, 0, argv, 0, &p, err, sizeof(err)) == 0) {
        int st;
        close(p.in_fd);
        assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
        sbx_result_t res;
        assert_int_equal(sbx_finish(S, &p, &res), 0);
        close(p.out_fd);
        close(p.err_fd);
        assert_true(res.sandbox_fault);
        snprintf(err, sizeof(err), "%s", res.error);
    }
    assert_non_null(strstr(err, "work"));
    assert_int_equal(sbx_workdir_reset(S, 0, err, sizeof(err)), 0);
    struct statfs sf;
    assert_int_equal(statfs(path, &sf), 0);
    assert_int_equal((long)sf.f_type, (long)TMPFS_MAGIC);
    struct run r;
    const char *echo[] = {"/bin/echo", "again", NULL};
    run(echo, NULL, &r);
    assert_string_equal(r.out, "again\n");
    assert_false(r.res.sandbox_fault);
}

static void test_identity(void **state)
{
    struct run r;
    const char *argv[] = {"/bin/sh", "-c", "id -u; id -G; hostname; pwd; echo $HOME $TMPDIR $LANG",
                          NULL};
    run(argv, NULL, &r);
    char want[128];
    snprintf(want, sizeof(want), "%u\n%u\nsandbox\n/work\n/work /tmp C.UTF-8\n", (unsigned)uid0,
             (unsigned)uid0);
    assert_string_equal(r.out, want);
}

static void test_kill(void **state)
{
    struct run r;
    const char *argv[] = {"/bin/sleep", "100", NULL};
    run_full(0, argv, NULL, 0, 100, 3000, &r);
    assert_int_equal(r.res.reported, 0);
    assert_true(r.elapsed_ms < 2000);
}

/* Scans /proc for a process whose command line contains marker. */
static int proc_with_marker(const char *marker)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int found = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[300], buf[4096];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        if (n > 0) {
            buf[n] = '\0';
            if (strstr(buf, marker))
                found = 1;
        }
    }
    closedir(d);
    return found;
}

static void test_double_fork(void **state)
{
    struct run r;
    char cmd[128], marker[32];
    snprintf(marker, sizeof(marker), "1000.%d", (int)getpid());
    snprintf(cmd, sizeof(cmd), "(setsid sleep %s &) ; sleep 0.2; exit 0", marker);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    run(argv, NULL, &r);
    assert_true(r.res.exited);
    assert_true(r.elapsed_ms < 5000);
    assert_false(proc_with_marker(marker));
}

static void test_memory_bomb(void **state)
{
    struct run r;
    const char *argv[] = {"/usr/bin/python3", "-c", "x = b'a' * (1 << 30)\nprint('survived')",
                          NULL};
    run_full(0, argv, NULL, 64, 0, 30000, &r);
    print_message("memory bomb: oom=%d signal=%d exited=%d status=%d\n", r.res.oom, r.res.signal,
                  r.res.exited, r.res.status);
    assert_true(r.res.oom || r.res.signal == SIGKILL);
    assert_null(strstr(r.out, "survived"));
    /* The limit override was per run: the next run has the default again. */
    struct run r2;
    py("x = b'a' * (100 << 20); print(len(x))", &r2);
    assert_string_equal(r2.out, "104857600\n");
    assert_int_equal(r2.res.oom, 0);
}

static void test_fork_bomb(void **state)
{
    struct run r;
    py("import os, time\n"
       "n = 0\n"
       "while True:\n"
       "    try:\n"
       "        pid = os.fork()\n"
       "    except OSError:\n"
       "        break\n"
       "    if pid == 0:\n"
       "        time.sleep(30)\n"
       "        os._exit(0)\n"
       "    n += 1\n"
       "print(n)\n",
       &r);
    assert_true(r.res.exited);
    int n = atoi(r.out);
    assert_true(n > 0 && n < 32);
    assert_true(r.elapsed_ms < 10000);
    struct run r2;
    const char *argv[] = {"/bin/echo", "next", NULL};
    run(argv, NULL, &r2);
    assert_string_equal(r2.out, "next\n");
}

static void test_files(void **state)
{
    struct run r;
    py("import errno\n"
       "def t(path, mode):\n"
       "    try:\n"
       "        open(path, mode).close()\n"
       "        return 'ok'\n"
       "    except OSError as e:\n"
       "        return errno.errorcode[e.errno]\n"
       "print(t('/etc/shadow', 'r'), t('/usr/x', 'w'), t('/x', 'w'), t('/etc/x', 'w'),\n"
       "      t('/dev/x', 'w'), t('/proc/sys/kernel/hostname', 'w'),\n"
       "      t('/work/x', 'w'), t('/tmp/x', 'w'), t('/dev/null', 'w'))\n"
       "import multiprocessing\n"
       "multiprocessing.Lock()\n"
       "print(open('/dev/urandom', 'rb').read(4) != b'', open('/dev/zero', 'rb').read(2))\n",
       &r);
    /* /etc/shadow is not in the run's /etc at all; /proc/sys is read-only. */
    assert_string_equal(r.out, "ENOENT EROFS EROFS EROFS EROFS EROFS ok ok ok\n"
                               "True b'\\x00\\x00'\n");
}

static void test_syscalls(void **state)
{
    struct run r;
    py("import ctypes, errno, os, socket\n"
       "libc = ctypes.CDLL(None, use_errno=True)\n"
       "def sock(fam):\n"
       "    try:\n"
       "        socket.socket(fam, socket.SOCK_STREAM).close()\n"
       "        return 'ok'\n"
       "    except OSError as e:\n"
       "        return errno.errorcode[e.errno]\n"
       "def c(rv):\n"
       "    return 'ok' if rv == 0 else errno.errorcode[ctypes.get_errno()]\n"
       "L = ctypes.c_long\n"
       "def sc(*a):\n"
       "    return c(libc.syscall(*[L(x) for x in a]))\n"
       "print(sock(socket.AF_INET), sock(socket.AF_INET6), sock(socket.AF_UNIX),\n"
       "      c(libc.ptrace(0, 0, 0, 0)), c(libc.unshare(0x10000000)),\n"
       "      c(libc.unshare(0x20000)), c(libc.mount(b'x', b'/tmp', b'tmpfs', 0, 0)),\n"
       "      c(libc.personality(0x0040000)))\n"
       "p = ctypes.create_string_buffer(b'x')\n"
       "print(sc(56, 0x10000000 | 17, 0, 0, 0, 0), sc(56, 0x20000000 | 17, 0, 0, 0, 0),\n"
       "      sc(435, 0, 0), sc(425, 1, 0), sc(321, 0, 0, 0),\n"
       "      sc(16, 0, (1 << 32) | 0x5412, ctypes.addressof(p)), sc(250, 0, 0, 0),\n"
       "      sc(323, 0), sc(298, 0, 0, -1, -1, 0), sc(310, 1, 0, 0, 0, 0),\n"
       "      sc(53, 2, 1, 0, 0))\n",
       &r);
    /* clone(NEWUSER), clone(NEWPID), clone3, io_uring_setup, bpf,
     * ioctl(TIOCSTI with high bits), keyctl, userfaultfd, perf_event_open,
     * process_vm_readv, socketpair(AF_INET). */
    assert_string_equal(r.out, "EPERM EPERM ok EPERM EPERM EPERM EPERM EPERM\n"
                               "EPERM EPERM ENOSYS EPERM EPERM EPERM EPERM EPERM EPERM EPERM "
                               "EPERM\n");
}

/* Kernel quotas one run could take from the host and the other runs: the AIO
 * pool (fs.aio-max-nr), PSI triggers (host-wide psimon polling), KSM; and
 * surface no run needs. Each is refused the way a kernel without it would
 * refuse, so runtimes that probe fall back quietly. */
static void test_kernel_quotas(void **state)
{
    struct run r;
    py("import ctypes, errno, mmap\n"
       "libc = ctypes.CDLL(None, use_errno=True)\n"
       "L = ctypes.c_long\n"
       "def sc(*a):\n"
       "    rv = libc.syscall(*[L(x) for x in a])\n"
       "    return 'ok' if rv >= 0 else errno.errorcode[ctypes.get_errno()]\n"
       "ctx = ctypes.c_ulong(0)\n"
       "print(sc(206, 1, ctypes.addressof(ctx)), sc(209, 0, 0, 0), sc(208, 0, 0, 0, 0, 0),\n"
       "      sc(333, 0, 0, 0, 0, 0, 0), sc(210, 0, 0, 0), sc(207, 0))\n"
       "print(sc(154, 0, 0, 0), sc(447, 0), sc(457, 0, 0, 0, 0), sc(458, 0, 0, 0, 0),\n"
       "      sc(459, 0, 0, 0, 0), sc(460, 0, 0, 0, 0), sc(461, 0, 0, 0), sc(467, 0, 0, 0, 0, 0))\n"
       "m = mmap.mmap(-1, 1 << 16)\n"
       "a = ctypes.c_void_p.from_buffer(m)\n"
       "print(sc(28, ctypes.addressof(a), 1 << 16, 12), sc(28, ctypes.addressof(a), 1 << 16, 4))\n"
       "del a\n"
       "res = []\n"
       "for f in ('cpu', 'io', 'memory'):\n"
       "    try:\n"
       "        open('/proc/pressure/' + f, 'w').close()\n"
       "        res.append('opened')\n"
       "    except OSError as e:\n"
       "        res.append(errno.errorcode[e.errno])\n"
       "print(*res, len(open('/proc/pressure/cpu').read()) > 0)\n",
       &r);
    /* io_setup, io_submit, io_getevents, io_pgetevents, io_cancel,
     * io_destroy; modify_ldt, memfd_secret, statmount, listmount, the three
     * lsm_* calls, open_tree_attr; madvise MADV_MERGEABLE (KSM), then
     * MADV_DONTNEED still working; /proc/pressure read-only but readable. */
    assert_string_equal(r.out, "ENOSYS ENOSYS ENOSYS ENOSYS ENOSYS ENOSYS\n"
                               "ENOSYS ENOSYS ENOSYS ENOSYS ENOSYS ENOSYS ENOSYS EPERM\n"
                               "EINVAL ok\n"
                               "EROFS EROFS EROFS True\n");
    /* The host's AIO is untouched. */
    unsigned long ctx = 0;
    assert_int_equal(syscall(SYS_io_setup, 1, &ctx), 0);
    assert_int_equal(syscall(SYS_io_destroy, ctx), 0);
}

/* Limits that guard something shared are the sandbox's, not inherited: a
 * worker started with LimitRTPRIO=/LimitNICE= (here: this process, where it
 * may raise them) must not hand real-time scheduling or negative nice values
 * to its runs; the queued-signal and real-time CPU limits it has (the host's
 * defaults, far above the sandbox's) must not reach them either. */
static void test_rlimits_not_inherited(void **state)
{
    static const int res[] = {RLIMIT_RTPRIO, RLIMIT_NICE, RLIMIT_SIGPENDING, RLIMIT_RTTIME};
    struct rlimit saved[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(getrlimit(res[i], &saved[i]), 0);
    struct rlimit rt = {99, 99}, nice = {40, 40};
    if (setrlimit(RLIMIT_RTPRIO, &rt) < 0 || setrlimit(RLIMIT_NICE, &nice) < 0)
        print_message("cannot raise RLIMIT_RTPRIO/RLIMIT_NICE here (no CAP_SYS_RESOURCE); "
                      "checking what the sandbox sets\n");
    /* Soft limits up to the hard ones: what a run would inherit. */
    for (int i = 2; i < 4; i++) {
        struct rlimit up = {saved[i].rlim_max, saved[i].rlim_max};
        assert_int_equal(setrlimit(res[i], &up), 0);
        assert_true(up.rlim_cur > 1024);
    }
    struct run r;
    py("import os, resource as R\n"
       "for n in ('RTPRIO', 'NICE', 'SIGPENDING', 'MSGQUEUE', 'MEMLOCK', 'RTTIME'):\n"
       "    print(n, *R.getrlimit(getattr(R, 'RLIMIT_' + n)))\n"
       "try:\n"
       "    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))\n"
       "    print('fifo')\n"
       "except OSError as e:\n"
       "    print(e.strerror)\n"
       "try:\n"
       "    os.nice(-1)\n"
       "    print('nice')\n"
       "except OSError as e:\n"
       "    print(e.strerror)\n",
       &r);
    for (int i = 0; i < 4; i++)
        setrlimit(res[i], &saved[i]);
    assert_string_equal(r.out, "RTPRIO 0 0\nNICE 0 0\nSIGPENDING 1024 1024\nMSGQUEUE 0 0\n"
                               "MEMLOCK 65536 65536\nRTTIME 0 0\n"
                               "Operation not permitted\nOperation not permitted\n");
}

static void test_kill_all(void **state)
{
    struct run r;
    const char *argv[] = {"/bin/sh", "-c", "kill -9 -1; echo survived", NULL};
    run(argv, NULL, &r);
    assert_string_equal(r.out, "survived\n");
    assert_int_equal(kill(getpid(), 0), 0);
}

static void test_fds(void **state)
{
    /* A descriptor without O_CLOEXEC in the worker must still not leak. */
    int leak = open("/dev/null", O_RDONLY);
    assert_true(leak >= 0);
    struct run r;
    py("import os; print(sorted(int(x) for x in os.listdir('/proc/self/fd')))", &r);
    close(leak);
    /* 3 is listdir's own directory fd. */
    assert_string_equal(r.out, "[0, 1, 2, 3]\n");
}

static void test_proc(void **state)
{
    struct run r;
    py("import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))", &r);
    /* hidepid: init (a copy of the worker, root) is invisible; only the
     * program's own processes are listed. */
    assert_string_equal(r.out, "[2]\n");
}

/* What /proc and /proc/self/mountinfo show: no init, /proc/sys read-only,
 * root-only entries masked, the cgroup namespace rooted at the slot, and
 * nothing of the host's paths but /usr and the devices. */
static void test_proc_hardened(void **state)
{
    struct run r;
    py("import os\n"
       "print(os.path.exists('/proc/1'), os.path.exists('/proc/1/cmdline'))\n"
       "print(set(l.rsplit(':', 1)[1] for l in open('/proc/self/cgroup').read().split()))\n"
       "m = {}\n"
       "for l in open('/proc/self/mountinfo'):\n"
       "    f = l.split()\n"
       "    m[f[4]] = (f[3], f[5].split(',')[0])\n"
       "masked = ('/proc/kcore', '/proc/sysrq-trigger', '/proc/keys', '/proc/timer_list',\n"
       "          '/proc/cmdline', '/proc/sys/kernel/random/boot_id', '/proc/key-users',\n"
       "          '/proc/kallsyms', '/proc/config.gz', '/proc/swaps')\n"
       "print(m['/proc/sys'][1], m['/proc/pressure'][1], [p for p in masked if\n"
       "      os.path.exists(p) and (m.get(p, ('',))[0] != '/null' or open(p).read())])\n"
       "print(sorted(k for k in m if not k.startswith(('/proc/', '/dev/'))))\n"
       "print(sorted(set(v[0] for k, v in m.items() if k not in ('/usr', '/etc'))))\n"
       "print(os.path.exists('/sys'))\n",
       &r);
    assert_string_equal(r.out, "False False\n"
                               "{'/'}\n"
                               "ro ro []\n"
                               "['/', '/dev', '/etc', '/proc', '/tmp', '/usr', '/work']\n"
                               "['/', '/full', '/null', '/pressure', '/random', '/sys', '/urandom',"
                               " '/zero']\n"
                               "False\n");
}

/* The run's /etc is an allow-listed copy with a sandbox user: enough for
 * python3, sh and gcc, nothing host-specific. */
static void test_etc(void **state)
{
    struct run r;
    const char *argv[] = {
        "/bin/sh", "-c",
        "id -un; ls /etc | tr '\\n' ' '; echo; for f in hostname hosts resolv.conf machine-id "
        "shadow ssh redis; do [ -e /etc/$f ] && echo HOST $f; done; "
        "printf '#include <stdio.h>\\nint main(void){puts(\"built\");return 0;}\\n' > a.c && "
        "gcc -O2 -o a a.c && ./a && python3 -I -c 'import time, ssl, getpass; "
        "print(getpass.getuser(), time.localtime().tm_zone)'",
        NULL};
    run(argv, NULL, &r);
    if (r.res.status != 0)
        print_message("stderr: %s\n", r.err);
    assert_int_equal(r.res.status, 0);
    char *nl = strchr(r.out, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_string_equal(r.out, "sandbox");
    const char *listing = nl + 1;
    static const char *const allowed[] = {
        "alternatives", "ld.so.cache",    "localtime",  "timezone",     "nsswitch.conf",
        "os-release",   "debian_version", "mime.types", "locale.alias", "protocols",
        "services",     "passwd",         "group"};
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", listing);
    nl = strchr(copy, '\n');
    assert_non_null(nl);
    *nl = '\0';
    char *save = NULL;
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        int ok = 0;
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
            ok |= strcmp(w, allowed[i]) == 0;
        if (!ok)
            fail_msg("unexpected /etc entry %s", w);
    }
    assert_null(strstr(listing, "HOST"));
    assert_non_null(strstr(listing, "\nbuilt\nsandbox "));
}

/* SysV shared memory left behind by a run is charged to the slot's cgroup
 * until it is removed; the kernel frees an IPC namespace asynchronously, so
 * init removes the objects itself before reporting. The next run in the
 * slot, started at once, must have its whole limit. */
static void test_ipc_released(void **state)
{
    struct run r;
    for (int i = 0; i < 3; i++) {
        py("import ctypes\n"
           "libc = ctypes.CDLL(None, use_errno=True)\n"
           "libc.shmat.restype = ctypes.c_void_p\n"
           "for k in (0, 1):\n"
           "    i = libc.shmget(0, 90 << 20, 0o1000 | 0o600)\n"
           "    p = libc.shmat(i, None, 0)\n"
           "    ctypes.memset(p, 1, 90 << 20)\n"
           "libc.semget(0, 4, 0o1000 | 0o600)\n"
           "libc.msgget(0, 0o1000 | 0o600)\n"
           "print('left')\n",
           &r);
        assert_string_equal(r.out, "left\n");
        py("x = bytearray(180 << 20)\n"
           "print(len(x) >> 20, [len(open('/proc/sysvipc/' + n).readlines()) for n in "
           "('shm', 'sem', 'msg')])\n",
           &r);
        assert_int_equal(r.res.oom, 0);
        assert_string_equal(r.out, "180 [1, 1, 1]\n");
    }
}

/* Two concurrent runs in different slots have different network namespaces:
 * neither sees the other's unix sockets in /proc/net/unix, connects to its
 * abstract name, or collides with it when binding the same one. */
static void test_abstract_socket(void **state)
{
    char err[256] = "";
    sbx_proc_t p;
    const char *srv[] = {"/usr/bin/python3", "-c",
                         "import socket, sys\n"
                         "s = socket.socket(socket.AF_UNIX)\n"
                         "s.bind(b'\\0sbx-test-abstract')\n"
                         "s.listen(4)\n"
                         "t = socket.socket(socket.AF_UNIX)\n"
                         "t.bind('/tmp/sbx-test-path')\n"
                         "t.listen(4)\n"
                         "print('bound', flush=True)\n"
                         "sys.stdin.read()\n",
                         NULL};
    assert_int_equal(sbx_spawn(S, 1, srv, 0, &p, err, sizeof(err)), 0);
    struct pollfd pf = {p.out_fd, POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 10000), 1);
    char buf[64];
    ssize_t n = read(p.out_fd, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "bound\n");
    struct run r;
    py("import socket, errno\n"
       "u = open('/proc/net/unix').read()\n"
       "print('sbx-test' in u, len(u.splitlines()))\n"
       "s = socket.socket(socket.AF_UNIX)\n"
       "try:\n"
       "    s.connect(b'\\0sbx-test-abstract')\n"
       "    print('CONNECTED')\n"
       "except OSError as e:\n"
       "    print(errno.errorcode[e.errno])\n"
       "s = socket.socket(socket.AF_UNIX)\n"
       "try:\n"
       "    s.bind(b'\\0sbx-test-abstract')\n"
       "    print('bound too')\n"
       "except OSError as e:\n"
       "    print(errno.errorcode[e.errno])\n",
       &r);
    close(p.in_fd);
    int st;
    assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
    sbx_result_t res;
    assert_int_equal(sbx_finish(S, &p, &res), 0);
    close(p.out_fd);
    close(p.err_fd);
    assert_int_equal(res.status, 0);
    /* Only the header line of /proc/net/unix: no socket of the other run. */
    assert_string_equal(r.out, "False 1\nECONNREFUSED\nbound too\n");
}

/* Other syscall ABIs of an x86-64 kernel: i386 via int 0x80 (getpid is 20
 * there) and x32 (syscall number with bit 30 set). The filter only knows the
 * native table, so both must be killed, not merely fail. */
static void test_int80(void **state)
{
    static const char src[] =
        "#include <string.h>\n"
        "int main(int argc, char **argv)\n"
        "{\n"
        "    long r;\n"
        "    if (argc > 1 && strcmp(argv[1], \"x32\") == 0)\n"
        "        __asm__ volatile(\"syscall\" : \"=a\"(r)\n"
        "                         : \"a\"(0x40000000L + 39) : \"rcx\", \"r11\");\n"
        "    else\n"
        "        __asm__ volatile(\"int $0x80\" : \"=a\"(r) : \"a\"(20L));\n"
        "    return r > 0 ? 0 : 1;\n"
        "}\n";
    char cpath[128], cmd[512];
    snprintf(cpath, sizeof(cpath), "%s-int80.c", work_root);
    FILE *f = fopen(cpath, "w");
    assert_non_null(f);
    fputs(src, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "gcc -O0 -o %s/slot0/int80 %s 2>/dev/null && chmod 755 %s/slot0/int80", work_root,
             cpath, work_root);
    int rc = system(cmd);
    unlink(cpath);
    if (rc != 0)
        skip();
    struct run r;
    const char *argv[] = {"/work/int80", NULL};
    run(argv, NULL, &r);
    assert_false(r.res.exited);
    assert_int_equal(r.res.signal, SIGSYS);
    const char *argv2[] = {"/work/int80", "x32", NULL};
    run(argv2, NULL, &r);
    assert_false(r.res.exited);
    assert_int_equal(r.res.signal, SIGSYS);
}

static void test_workdir_reset(void **state)
{
    char err[256] = "", target[128], path[256];
    snprintf(target, sizeof(target), "%s-target", work_root);
    FILE *f = fopen(target, "w");
    assert_non_null(f);
    fputs("keep me\n", f);
    fclose(f);

    /* Planted from inside: symlinks to host files and dirs, a deep tree. */
    struct run r;
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "ln -s /etc/passwd /work/pw && mkdir -p /work/a/b && ln -s /etc /work/a/b/etc && "
             "cd /work && for i in $(seq 60); do mkdir d && cd d || exit 1; done && touch f");
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    run(argv, NULL, &r);
    assert_true(r.res.exited);
    assert_int_equal(r.res.status, 0);
    /* Planted from outside: a symlink to a host file and a hard link. */
    snprintf(path, sizeof(path), "%s/slot0/evil", work_root);
    assert_int_equal(symlink(target, path), 0);

    assert_int_equal(sbx_workdir_reset(S, 0, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/slot0", work_root);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)) != NULL)
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    assert_int_equal(entries, 0);
    struct stat st;
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(stat("/etc/passwd", &st), 0);
    assert_int_equal(stat("/etc/hostname", &st), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, uid0);
    assert_int_equal(st.st_mode & 07777, 0700);
    unlink(target);
}

/* The removal used for plain-directory work dirs (no mount privilege) and
 * the runs' /etc: planted symlinks and hard links are removed, never
 * followed; unreadable and unwritable directories and deep trees go too. */
static void test_rm_tree_safe(void **state)
{
    char base[96], target[112], tdir[112], cmd[1200];
    snprintf(base, sizeof(base), "%s-rm", work_root);
    snprintf(target, sizeof(target), "%s-rm-target", work_root);
    snprintf(tdir, sizeof(tdir), "%s-rm-dir", work_root);
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s/t/a %s && echo keep > %s && echo keep > %s/f && cd %s/t && "
             "ln -s %s file-link && ln -s %s dir-link && ln %s hard && mkdir -p x/y && "
             "touch x/y/z && chmod 0 x/y && chmod 500 x && "
             "for i in $(seq 40); do mkdir d && cd d || exit 1; done && touch f",
             base, tdir, target, tdir, base, target, tdir, target);
    assert_int_equal(system(cmd), 0);
    int dfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(sbx_rm_tree(dfd, "t"), 0);
    struct stat st;
    assert_int_equal(fstatat(dfd, "t", &st, AT_SYMLINK_NOFOLLOW), -1);
    close(dfd);
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(st.st_nlink, 1);
    snprintf(cmd, sizeof(cmd), "%s/f", tdir);
    assert_int_equal(stat(cmd, &st), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s %s", base, target, tdir);
    assert_int_equal(system(cmd), 0);
}

static void test_workdir_write(void **state)
{
    char err[256] = "";
    assert_int_equal(sbx_workdir_write(S, 0, "a/b", "x", 1, err, sizeof(err)), -1);
    assert_int_equal(sbx_workdir_write(S, 0, "..", "x", 1, err, sizeof(err)), -1);
    assert_int_equal(sbx_workdir_write(S, 0, ".", "x", 1, err, sizeof(err)), -1);
    assert_int_equal(sbx_workdir_write(S, 0, "", "x", 1, err, sizeof(err)), -1);
    assert_int_equal(sbx_workdir_write(S, 5, "ok", "x", 1, err, sizeof(err)), -1);
    assert_int_equal(
        sbx_workdir_write(S, 0, "main.py", "print('from file')\n", 19, err, sizeof(err)), 0);
    /* O_EXCL: an existing name (or a planted symlink) is never written through. */
    assert_int_equal(sbx_workdir_write(S, 0, "main.py", "x", 1, err, sizeof(err)), -1);
    struct run r;
    const char *argv[] = {"/usr/bin/python3", "/work/main.py", NULL};
    run(argv, NULL, &r);
    assert_string_equal(r.out, "from file\n");
}

/* The slot tmpfs mounts live in the worker's own mount namespace: the host's
 * (pid 1's) table never sees them, so a killed worker cannot leak mounts. */
static void test_no_host_mounts(void **state)
{
    char buf[8192];
    int fd = open("/proc/1/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        skip();
    size_t off = 0;
    ssize_t n;
    int found = 0;
    while ((n = read(fd, buf + off, sizeof(buf) - 1 - off)) > 0) {
        off += (size_t)n;
        buf[off] = '\0';
        if (strstr(buf, work_root))
            found = 1;
        /* keep a tail so a match across reads is still seen */
        if (off > sizeof(buf) / 2) {
            memmove(buf, buf + off - 256, 256);
            off = 256;
        }
    }
    close(fd);
    assert_false(found);
}

/* As root, the run's root is the worker's template: read-only down to its
 * superblock (nothing a run leaves can land in it), with the run's own
 * /proc, /work and /tmp, a file left in /tmp by one run absent from the
 * next, and every device still usable. */
static void test_template_root(void **state)
{
    if (geteuid() != 0)
        skip();
    struct run r;
    py("import os\n"
       "sb = [l.split(' - ')[1].split()[2] for l in open('/proc/self/mountinfo')\n"
       "      if l.split()[4] == '/'][0]\n"
       "print(sb.split(',')[0], os.path.exists('/tmp/left'), open('/dev/zero','rb').read(1))\n"
       "open('/tmp/left', 'w').write('x')\n",
       &r);
    assert_string_equal(r.out, "ro False b'\\x00'\n");
    py("import os\n"
       "links = {'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'}\n"
       "print(os.path.exists('/tmp/left'), sorted(set(os.listdir('/')) - links))\n",
       &r);
    assert_string_equal(r.out, "False ['dev', 'etc', 'proc', 'tmp', 'usr', 'work']\n");
}

static void test_slots_isolated(void **state)
{
    /* Slot 1 runs as another uid: it cannot read slot 0's files. */
    char err[256] = "";
    assert_int_equal(sbx_workdir_write(S, 0, "secret", "s", 1, err, sizeof(err)), 0);
    struct run r;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "id -u; ls /work; cat %s/slot0/secret 2>&1 | head -c 0", work_root);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    run_full(1, argv, NULL, 0, 0, 20000, &r);
    char want[32];
    snprintf(want, sizeof(want), "%u\n", (unsigned)uid0 + 1);
    assert_string_equal(r.out, want);
}

static void test_concurrent(void **state)
{
    /* Two slots at once: each gets its own namespace, cgroup and result. */
    char err[256] = "";
    sbx_proc_t p[2];
    const char *a0[] = {"/bin/sh", "-c", "sleep 0.3; echo zero; exit 4", NULL};
    const char *a1[] = {"/bin/sh", "-c", "echo one; kill -9 $$", NULL};
    assert_int_equal(sbx_spawn(S, 0, a0, 0, &p[0], err, sizeof(err)), 0);
    assert_int_equal(sbx_spawn(S, 1, a1, 0, &p[1], err, sizeof(err)), 0);
    assert_int_equal(sbx_spawn(S, 1, a1, 0, &p[1], err, sizeof(err)), -1); /* busy */
    assert_int_equal(sbx_workdir_reset(S, 0, err, sizeof(err)), -1);
    sbx_result_t res[2];
    char out[2][64];
    for (int i = 0; i < 2; i++) {
        int st;
        close(p[i].in_fd);
        assert_int_equal(waitpid(p[i].pid, &st, 0), p[i].pid);
        struct pollfd pf = {p[i].out_fd, POLLIN, 0};
        poll(&pf, 1, 1000);
        ssize_t n = read(p[i].out_fd, out[i], sizeof(out[i]) - 1);
        out[i][n > 0 ? n : 0] = '\0';
        assert_int_equal(sbx_finish(S, &p[i], &res[i]), 0);
        close(p[i].out_fd);
        close(p[i].err_fd);
    }
    assert_string_equal(out[0], "zero\n");
    assert_true(res[0].exited);
    assert_int_equal(res[0].status, 4);
    assert_string_equal(out[1], "one\n");
    assert_int_equal(res[1].signal, SIGKILL);
    assert_int_equal(res[1].oom, 0);
}

/* Informational, not asserted (timing depends on the machine's load): how
 * long from starting a run until the program's main() runs, sandboxed vs a
 * bare fork/exec, and the whole spawn-to-reaped time. Medians of N runs. */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_u64);
    return v[n / 2];
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* fork/exec/wait of argv without a sandbox; returns the program's stdout. */
static uint64_t bare_run_ns(const char *const argv[], char *out, size_t outlen)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    ssize_t n, off = 0;
    while ((n = read(pfd[0], out + off, outlen - 1 - (size_t)off)) > 0)
        off += n;
    out[off] = '\0';
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    return now_ns() - t0;
}

#define BENCH_N 30

static void bench_total(const char *label, const char *const argv[])
{
    uint64_t bare[BENCH_N], sbx[BENCH_N], spawn[BENCH_N];
    char out[256];
    struct run *r = malloc(sizeof(*r));
    assert_non_null(r);
    for (int i = 0; i < BENCH_N; i++) {
        bare[i] = bare_run_ns(argv, out, sizeof(out));
        uint64_t t0 = now_ns();
        run(argv, NULL, r);
        sbx[i] = now_ns() - t0;
        spawn[i] = r->spawn_ns;
        assert_true(r->res.exited);
    }
    uint64_t b = median(bare, BENCH_N), s = median(sbx, BENCH_N);
    printf("sandbox start-to-reaped %-16s bare %6.2f ms, sandboxed %6.2f ms (+%.2f ms); "
           "sbx_spawn itself %.3f ms\n",
           label, b / 1e6, s / 1e6, ((double)s - (double)b) / 1e6, median(spawn, BENCH_N) / 1e6);
    free(r);
}

static void test_bench(void **state)
{
    static const char src[] = "#include <stdio.h>\n"
                              "#include <time.h>\n"
                              "int main(void)\n"
                              "{\n"
                              "    struct timespec t;\n"
                              "    clock_gettime(CLOCK_MONOTONIC, &t);\n"
                              "    printf(\"%lld\\n\", (long long)t.tv_sec * 1000000000LL + "
                              "t.tv_nsec);\n"
                              "    return 0;\n"
                              "}\n";
    char cpath[128], cmd[512], host[128];
    snprintf(cpath, sizeof(cpath), "%s-stamp.c", work_root);
    snprintf(host, sizeof(host), "%s/slot0/stamp", work_root);
    FILE *f = fopen(cpath, "w");
    assert_non_null(f);
    fputs(src, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "gcc -O1 -o %s %s 2>/dev/null && chmod 755 %s", host, cpath, host);
    int rc = system(cmd);
    unlink(cpath);
    if (rc == 0) {
        /* Time until the program's main(): the sandbox's real start cost. */
        uint64_t bare[BENCH_N], sbx[BENCH_N];
        char out[64];
        const char *hargv[] = {host, NULL};
        const char *sargv[] = {"/work/stamp", NULL};
        struct run *r = malloc(sizeof(*r));
        assert_non_null(r);
        for (int i = 0; i < BENCH_N; i++) {
            uint64_t t0 = now_ns();
            bare_run_ns(hargv, out, sizeof(out));
            bare[i] = strtoull(out, NULL, 10) - t0;
            t0 = now_ns();
            run(sargv, NULL, r);
            sbx[i] = strtoull(r->out, NULL, 10) - t0;
        }
        free(r);
        uint64_t b = median(bare, BENCH_N), s = median(sbx, BENCH_N);
        printf("sandbox start-to-main(): bare fork/exec %.3f ms, sandboxed %.3f ms (+%.3f ms)\n",
               b / 1e6, s / 1e6, ((double)s - (double)b) / 1e6);
    }
    const char *t[] = {"/bin/true", NULL};
    const char *p[] = {"/usr/bin/python3", "-c", "pass", NULL};
    bench_total("/bin/true", t);
    bench_total("python3 -c pass", p);
}

/* Makes dir/name with the given entries ("d:" a directory, "f:" a file). */
static void make_root(const char *dir, const char *name, const char *const *entries)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(mkdir(path, 0711), 0);
    for (; *entries; entries++) {
        snprintf(path, sizeof(path), "%s/%s/%s", dir, name, *entries + 2);
        if ((*entries)[0] == 'd') {
            assert_int_equal(mkdir(path, 0700), 0);
        } else {
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            assert_true(fd >= 0);
            close(fd);
        }
    }
}

static int exists_in(const char *dir, const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return lstat(path, &st) == 0;
}

/* A work root is live while its sandbox holds its lock, whatever its pid
 * looks like from here: another sandbox is refused it (EBUSY, and the live
 * one keeps working), and sbx_reap_roots keeps it. A root whose lock nobody
 * holds is removed; one without a lock file, or with something left in it,
 * or of another name, stays. */
static void test_root_lock(void **state)
{
    char err[256] = "", dir[96];
    sbx_config_t mine = {.work_root = work_root, .slots = 1, .uid_base = uid0 + 2};
    errno = 0;
    assert_null(sbx_create(&mine, err, sizeof(err)));
    assert_int_equal(errno, EBUSY);
    assert_non_null(strstr(err, "in use"));
    struct run *r = calloc(1, sizeof(*r));
    run((const char *[]){"/bin/echo", "still mine", NULL}, NULL, r);
    assert_true(r->res.exited && r->res.status == 0);
    assert_string_equal(r->out, "still mine\n");
    free(r);

    snprintf(dir, sizeof(dir), "%s-roots", work_root);
    assert_int_equal(mkdir(dir, 0700), 0);
    make_root(dir, "t-1", (const char *[]){"f:.lock", "d:slot0", NULL});
    make_root(dir, "t-2", (const char *[]){"f:.lock", "d:slot0", "d:.root", "d:.etc", NULL});
    make_root(dir, "t-3", (const char *[]){"d:slot0", NULL});
    make_root(dir, "t-4-2", (const char *[]){"f:.lock", "d:slot0", "f:slot0/left", NULL});
    make_root(dir, "t-x", (const char *[]){"f:.lock", NULL});
    make_root(dir, "u-5", (const char *[]){"f:.lock", NULL});
    char path[256];
    snprintf(path, sizeof(path), "%s/t-1/.lock", dir);
    int held = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(held >= 0);
    assert_int_equal(flock(held, LOCK_EX | LOCK_NB), 0);

    assert_int_equal(sbx_reap_roots(dir, "t-"), 1);
    assert_true(exists_in(dir, "t-1/slot0"));   /* live: its lock is held */
    assert_false(exists_in(dir, "t-2"));        /* gone */
    assert_true(exists_in(dir, "t-3/slot0"));   /* no lock: cannot tell */
    assert_true(exists_in(dir, "t-4-2/.lock")); /* not empty: tried again later */
    assert_true(exists_in(dir, "t-x/.lock"));   /* not a root's name */
    assert_true(exists_in(dir, "u-5/.lock"));
    close(held);
    assert_int_equal(sbx_reap_roots(dir, "t-"), 1);
    assert_false(exists_in(dir, "t-1"));
    assert_true(exists_in(dir, "t-4-2/.lock"));

    assert_int_equal(sbx_rm_tree(AT_FDCWD, dir), 0);
}

static void test_validation(void **state)
{
    char err[256] = "";
    sbx_config_t bad = {.work_root = "relative", .slots = 1};
    assert_null(sbx_create(&bad, err, sizeof(err)));
    sbx_config_t bad2 = {.work_root = "/tmp/x", .slots = 0};
    assert_null(sbx_create(&bad2, err, sizeof(err)));
    sbx_free(NULL);
    if (!S)
        return;
    sbx_proc_t p;
    const char *rel[] = {"echo", NULL};
    assert_int_equal(sbx_spawn(S, 0, rel, 0, &p, err, sizeof(err)), -1);
    assert_int_equal(sbx_spawn(S, 9, (const char *[]){"/bin/true", NULL}, 0, &p, err, sizeof(err)),
                     -1);
}

/* The first line of /proc/PID/FILE that starts with key, its number. */
static long proc_field(pid_t pid, const char *file, const char *key)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, key, strlen(key)) == 0)
            return strtol(l + strlen(key), NULL, 10);
    }
    fail_msg("no %s in %s", key, path);
    return -1;
}

/* Inits are cloned by the zygote, whose memory is the sandbox's at creation:
 * a caller whose heap grew since does not make each init (its clone, its
 * faults, its exit) bigger. Init is still the caller's child, reaped by it.
 * Without the zygote (gone), runs are cloned by the caller and still work. */
static void test_zygote(void **state)
{
    pid_t z = sbx_zyg_pid(S);
    assert_true(z > 0);
    assert_int_equal(proc_field(z, "status", "PPid:"), getpid());

    const size_t big = (size_t)64 << 20;
    char *mem = malloc(big);
    assert_non_null(mem);
    memset(mem, 1, big);
    char err[256] = "";
    sbx_proc_t p;
    const char *argv[] = {"/bin/sleep", "10", NULL};
    assert_int_equal(sbx_spawn(S, 0, argv, 0, &p, err, sizeof(err)), 0);
    assert_int_equal(proc_field(p.pid, "status", "PPid:"), getpid());
    long anon_kb = proc_field(p.pid, "status", "RssAnon:");
    assert_true(anon_kb < 32 * 1024); /* a clone of ours would map the 64 MB */
    sbx_kill(S, &p);
    int st;
    assert_int_equal(waitpid(p.pid, &st, 0), p.pid);
    sbx_result_t res;
    assert_int_equal(sbx_finish(S, &p, &res), 0);
    close(p.in_fd);
    close(p.out_fd);
    close(p.err_fd);
    free(mem);

    assert_int_equal(kill(z, SIGKILL), 0);
    struct run r;
    const char *echo[] = {"/bin/echo", "still", NULL};
    run(echo, NULL, &r);
    assert_string_equal(r.out, "still\n");
    assert_int_equal(sbx_zyg_pid(S), 0);
}

/* A zygote that takes a request and never answers (stopped here; stuck in
 * the kernel in life) is given up after its timeout, and the run is cloned
 * by the caller with pipes of its own: an init the zygote might have cloned
 * with the first ones cannot take the run's go byte or write its status. */
static void test_zygote_stuck(void **state)
{
    if (sbx_zyg_pid(S) == 0)
        assert_int_equal(sbx_zyg_start(S), 0);
    pid_t z = sbx_zyg_pid(S);
    assert_true(z > 0);
    assert_int_equal(kill(z, SIGSTOP), 0);
    struct run r;
    const char *echo[] = {"/bin/echo", "unstuck", NULL};
    run(echo, NULL, &r);
    assert_true(r.res.exited);
    assert_int_equal(r.res.status, 0);
    assert_string_equal(r.out, "unstuck\n");
    assert_int_equal(sbx_zyg_pid(S), 0);
    assert_int_equal(kill(z, 0), -1); /* stopped, killed and reaped */
    assert_int_equal(errno, ESRCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test_setup(test_root_lock, test_setup),
        cmocka_unit_test_setup(test_echo, test_setup),
        cmocka_unit_test_setup(test_python, test_setup),
        cmocka_unit_test_setup(test_stdin, test_setup),
        cmocka_unit_test_setup(test_exit_status, test_setup),
        cmocka_unit_test_setup(test_signal, test_setup),
        cmocka_unit_test_setup(test_exec_error, test_setup),
        cmocka_unit_test_setup(test_setup_fault_and_reset, test_setup),
        cmocka_unit_test_setup(test_identity, test_setup),
        cmocka_unit_test_setup(test_kill, test_setup),
        cmocka_unit_test_setup(test_double_fork, test_setup),
        cmocka_unit_test_setup(test_memory_bomb, test_setup),
        cmocka_unit_test_setup(test_fork_bomb, test_setup),
        cmocka_unit_test_setup(test_files, test_setup),
        cmocka_unit_test_setup(test_syscalls, test_setup),
        cmocka_unit_test_setup(test_kernel_quotas, test_setup),
        cmocka_unit_test_setup(test_rlimits_not_inherited, test_setup),
        cmocka_unit_test_setup(test_kill_all, test_setup),
        cmocka_unit_test_setup(test_fds, test_setup),
        cmocka_unit_test_setup(test_proc, test_setup),
        cmocka_unit_test_setup(test_proc_hardened, test_setup),
        cmocka_unit_test_setup(test_etc, test_setup),
        cmocka_unit_test_setup(test_ipc_released, test_setup),
        cmocka_unit_test_setup(test_abstract_socket, test_setup),
        cmocka_unit_test_setup(test_int80, test_setup),
        cmocka_unit_test_setup(test_workdir_reset, test_setup),
        cmocka_unit_test_setup(test_rm_tree_safe, test_setup),
        cmocka_unit_test_setup(test_workdir_write, test_setup),
        cmocka_unit_test_setup(test_slots_isolated, test_setup),
        cmocka_unit_test_setup(test_no_host_mounts, test_setup),
        cmocka_unit_test_setup(test_template_root, test_setup),
        cmocka_unit_test_setup(test_concurrent, test_setup),
        cmocka_unit_test_setup(test_bench, test_setup),
        /* Last: they stop the zygote. */
        cmocka_unit_test_setup(test_zygote, test_setup),
        cmocka_unit_test_setup(test_zygote_stuck, test_setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
