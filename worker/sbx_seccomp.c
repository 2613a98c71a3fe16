/* sbx_seccomp: the syscall filter every program runs under; see sbx_int.h. */
#include "sbx_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- seccomp ---------------------------------------------------------------- */

/* Syscalls no evaluation needs and that widen the kernel attack surface or
 * could escape or disturb the sandbox: EPERM. Unknown names (older headers
 * or other arches) are skipped. */
static const char *const sbx_denied[] = {"ptrace",
                                         "process_vm_readv",
                                         "process_vm_writev",
                                         "mount",
                                         "umount2",
                                         "pivot_root",
                                         "chroot",
                                         "unshare",
                                         "setns",
                                         "kexec_load",
                                         "kexec_file_load",
                                         "reboot",
                                         "init_module",
                                         "finit_module",
                                         "delete_module",
                                         "bpf",
                                         "perf_event_open",
                                         "keyctl",
                                         "add_key",
                                         "request_key",
                                         "io_uring_setup",
                                         "io_uring_enter",
                                         "io_uring_register",
                                         "userfaultfd",
                                         "swapon",
                                         "swapoff",
                                         "acct",
                                         "quotactl",
                                         "quotactl_fd",
                                         "open_by_handle_at",
                                         "name_to_handle_at",
                                         "settimeofday",
                                         "clock_settime",
                                         "clock_adjtime",
                                         "adjtimex",
                                         "syslog",
                                         "lookup_dcookie",
                                         "fanotify_init",
                                         "fsopen",
                                         "fsconfig",
                                         "fsmount",
                                         "fspick",
                                         "move_mount",
                                         "open_tree",
                                         "mount_setattr",
                                         "iopl",
                                         "ioperm",
                                         "vhangup",
                                         "nfsservctl",
                                         "uselib",
                                         "pidfd_getfd",
                                         "process_madvise",
                                         "kcmp",
                                         "sethostname",
                                         "setdomainname",
                                         "mbind",
                                         "migrate_pages",
                                         "move_pages",
                                         "set_mempolicy",
                                         "set_mempolicy_home_node",
                                         "landlock_create_ruleset"};

/* Syscalls answered as a kernel built without them would answer (ENOSYS),
 * because runtimes probe some of them and fall back quietly:
 * - the native AIO calls: every io_setup takes slots of fs.aio-max-nr, one
 *   host-wide pool, so one run could make AIO fail for the host and for
 *   every other run;
 * - modify_ldt (16-bit segments, only for old 32-bit code) and memfd_secret
 *   (takes pages out of the kernel's direct map): surface no run needs;
 * - statmount/listmount (the mount tree) and the lsm_* calls (security
 *   module attributes): introspection no run needs.
 * nr is the x86-64/generic number, used when libseccomp 2.5 (Debian 12) does
 * not know the name; 0 = always known. */
static const struct {
    const char *name;
    int nr;
    int err;
} sbx_absent[] = {{"io_setup", 0, ENOSYS},
                  {"io_destroy", 0, ENOSYS},
                  {"io_submit", 0, ENOSYS},
                  {"io_cancel", 0, ENOSYS},
                  {"io_getevents", 0, ENOSYS},
                  {"io_pgetevents", 0, ENOSYS},
                  {"modify_ldt", 0, ENOSYS},
                  {"memfd_secret", 447, ENOSYS},
                  {"statmount", 457, ENOSYS},
                  {"listmount", 458, ENOSYS},
                  {"lsm_get_self_attr", 459, ENOSYS},
                  {"lsm_set_self_attr", 460, ENOSYS},
                  {"lsm_list_modules", 461, ENOSYS},
                  /* The mount API's open_tree with attributes (Linux 6.15). */
                  {"open_tree_attr", 467, EPERM}};

/* Syscall numbers from here on are newer than this filter (Linux 6.18 ends at
 * file_setattr, 469): they get ENOSYS until someone has looked at them, as a
 * default-allow filter would otherwise let every new kernel feature in. */
#define SBX_NR_REVIEWED_END 470
#define SBX_X32_BIT         0x40000000u

/* Adds rule action for the syscall called name, or number nr when this
 * libseccomp does not know the name (nr 0: skip it then). */
static int sbx_rule_named(scmp_filter_ctx ctx, uint32_t action, const char *name, int nr)
{
    int n = seccomp_syscall_resolve_name(name);
    if (n == __NR_SCMP_ERROR)
        n = nr;
    if (n <= 0)
        return 0;
    return seccomp_rule_add(ctx, action, n, 0);
}

/* Runs before libseccomp's program: a native syscall numbered at or above
 * SBX_NR_REVIEWED_END returns ENOSYS; anything else (other arches, x32)
 * falls through to it unchanged. */
static const struct sock_filter sbx_prefix_tmpl[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0 /* native arch, set at build */, 0, 4),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, SBX_X32_BIT, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, SBX_NR_REVIEWED_END, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
};
#define SBX_PREFIX_LEN (sizeof(sbx_prefix_tmpl) / sizeof(sbx_prefix_tmpl[0]))

/* Adds the rules beyond the plain deny list; r is the status so far. */
static int sbx_rules_quotas(const sbx_t *s, scmp_filter_ctx ctx, int r)
{
    for (size_t i = 0; r == 0 && i < sizeof(sbx_absent) / sizeof(sbx_absent[0]); i++)
        r = sbx_rule_named(ctx, SCMP_ACT_ERRNO((uint32_t)sbx_absent[i].err), sbx_absent[i].name,
                           sbx_absent[i].nr);
    /* sync() writes back every file system of the host, syncfs() the host's
     * /usr: a loop of either stalls the host's I/O. A run's own files live on
     * tmpfs, so both succeed without doing anything (fsync stays real). */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(0), SCMP_SYS(sync), 0);
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(0), SCMP_SYS(syncfs), 0);
    /* KSM merging would let a run time page faults to learn what other runs
     * hold in memory, and keeps the host's ksmd busy: "no KSM" (EINVAL). The
     * kernel takes advice as an int. */
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EINVAL), SCMP_SYS(madvise), 1,
                             SCMP_A2(SCMP_CMP_MASKED_EQ, 0xffffffffu, MADV_MERGEABLE));
    /* inotify instances and watches are counted per user, and in a user
     * namespace also against the user who made it: unprivileged, every run
     * would share the worker's own budget (128 instances by default). As
     * root each slot has its own uid and nothing outlives the run. */
    if (r == 0 && (s->ns_flags & CLONE_NEWUSER)) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(inotify_init), 0);
        if (r == 0)
            r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(inotify_init1), 0);
    }
    return r;
}

/* Calls refused by their arguments: sockets other than unix ones, new
 * namespaces through clone, terminal injection, personality flags. r is the
 * result so far (0: go on). */
static int sbx_rules_args(scmp_filter_ctx ctx, int r)
{
    const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
    if (r == 0)
        r = seccomp_rule_add(ctx, eperm, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    if (r == 0)
        r = seccomp_rule_add(ctx, eperm, SCMP_SYS(socketpair), 1, SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    /* clone's arg0 low byte is the exit signal, so CLONE_NEWTIME (0x80)
     * cannot be tested there; clone3 hides its flags in memory, so it gets
     * ENOSYS and libc falls back to clone. */
    static const unsigned long newflags[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS,
                                             CLONE_NEWIPC, CLONE_NEWUSER,   CLONE_NEWPID,
                                             CLONE_NEWNET};
    for (size_t i = 0; r == 0 && i < sizeof(newflags) / sizeof(newflags[0]); i++)
        r = seccomp_rule_add(ctx, eperm, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, newflags[i], newflags[i]));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* The kernel truncates ioctl's request to 32 bits: compare only those,
     * or 1<<32 | TIOCSTI would slip through. */
    if (r == 0)
        r = seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
    if (r == 0)
        r = seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX));
    /* Personality flags such as ADDR_NO_RANDOMIZE or READ_IMPLIES_EXEC weaken
     * exploit mitigations; plain PER_LINUX is harmless. */
    if (r == 0)
        r = seccomp_rule_add(ctx, eperm, SCMP_SYS(personality), 1, SCMP_A0(SCMP_CMP_NE, PER_LINUX));
    return r;
}

/* Compiles ctx to BPF and keeps it in s->prog behind the ABI prefix. */
static int sbx_export_bpf(sbx_t *s, scmp_filter_ctx ctx, char *err, size_t errlen)
{
    int rc = -1, memfd = memfd_create("sbx-seccomp", MFD_CLOEXEC);
    if (memfd < 0) {
        sbx_seterr(err, errlen, "memfd_create: %s", strerror(errno));
        return -1;
    }
    int r = seccomp_export_bpf(ctx, memfd);
    if (r != 0) {
        sbx_seterr(err, errlen, "seccomp_export_bpf: %s", strerror(-r));
        goto out;
    }
    struct stat st;
    if (fstat(memfd, &st) < 0 || st.st_size <= 0 ||
        st.st_size % (off_t)sizeof(struct sock_filter) != 0 ||
        st.st_size / (off_t)sizeof(struct sock_filter) + SBX_PREFIX_LEN > BPF_MAXINSNS) {
        sbx_seterr(err, errlen, "seccomp export: bad program size");
        goto out;
    }
    size_t n = (size_t)st.st_size / sizeof(struct sock_filter);
    s->filter = malloc((n + SBX_PREFIX_LEN) * sizeof(struct sock_filter));
    if (!s->filter ||
        pread(memfd, s->filter + SBX_PREFIX_LEN, (size_t)st.st_size, 0) != st.st_size) {
        sbx_seterr(err, errlen, "seccomp export: read failed");
        goto out;
    }
    memcpy(s->filter, sbx_prefix_tmpl, sizeof(sbx_prefix_tmpl));
    s->filter[1].k = seccomp_arch_native();
    s->prog.len = (unsigned short)(n + SBX_PREFIX_LEN);
    s->prog.filter = s->filter;
    rc = 0;
out:
    close(memfd);
    return rc;
}

/* Builds the filter once and keeps it as a raw BPF program, so the child only
 * needs a prctl() instead of running libseccomp's compiler per run. */
int sbx_build_seccomp(sbx_t *s, char *err, size_t errlen)
{
    int rc = -1;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        sbx_seterr(err, errlen, "seccomp_init failed");
        return -1;
    }
    /* Only the native ABI: int 0x80 (i386) and x32 calls take other syscall
     * tables that the rules below would not cover. */
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    /* The child sets NO_NEW_PRIVS itself before loading. */
    if (r == 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    /* A binary tree of syscall numbers instead of a linear list: each
     * syscall the program makes runs O(log n) instructions, and so does the
     * kernel's emulation of the filter for every syscall number when it is
     * loaded (the allow-bitmap cache, computed with interrupts off in the
     * run's setup: 0.13 ms per run with the linear list). */
    if (r == 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    for (size_t i = 0; r == 0 && i < sizeof(sbx_denied) / sizeof(sbx_denied[0]); i++) {
        int nr = seccomp_syscall_resolve_name(sbx_denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    }
    r = sbx_rules_quotas(s, ctx, r);
    r = sbx_rules_args(ctx, r);
    if (r != 0) {
        sbx_seterr(err, errlen, "seccomp rule: %s", strerror(-r));
        goto out;
    }
    rc = sbx_export_bpf(s, ctx, err, errlen);
out:
    seccomp_release(ctx);
    return rc;
}
