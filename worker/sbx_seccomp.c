/* sbx_seccomp: the syscall filter every program runs under; see sbx_int.h. */
#include "sbx_int.h"

#include <errno.h>
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
 * could escape or disturb the sandbox. Unknown names (older headers or other
 * arches) are skipped. */
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
                                         "landlock_create_ruleset"};

/* Builds the filter once and keeps it as a raw BPF program, so the child only
 * needs a prctl() instead of running libseccomp's compiler per run. */
int sbx_build_seccomp(sbx_t *s, char *err, size_t errlen)
{
    int rc = -1, memfd = -1;
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
    const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
    for (size_t i = 0; r == 0 && i < sizeof(sbx_denied) / sizeof(sbx_denied[0]); i++) {
        int nr = seccomp_syscall_resolve_name(sbx_denied[i]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        r = seccomp_rule_add(ctx, eperm, nr, 0);
    }
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
    if (r != 0) {
        sbx_seterr(err, errlen, "seccomp rule: %s", strerror(-r));
        goto out;
    }

    memfd = memfd_create("sbx-seccomp", MFD_CLOEXEC);
    if (memfd < 0) {
        sbx_seterr(err, errlen, "memfd_create: %s", strerror(errno));
        goto out;
    }
    r = seccomp_export_bpf(ctx, memfd);
    if (r != 0) {
        sbx_seterr(err, errlen, "seccomp_export_bpf: %s", strerror(-r));
        goto out;
    }
    struct stat st;
    if (fstat(memfd, &st) < 0 || st.st_size <= 0 ||
        st.st_size % (off_t)sizeof(struct sock_filter) != 0 ||
        st.st_size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
        sbx_seterr(err, errlen, "seccomp export: bad program size");
        goto out;
    }
    s->filter = malloc((size_t)st.st_size);
    if (!s->filter || pread(memfd, s->filter, (size_t)st.st_size, 0) != st.st_size) {
        sbx_seterr(err, errlen, "seccomp export: read failed");
        goto out;
    }
    s->prog.len = (unsigned short)(st.st_size / (off_t)sizeof(struct sock_filter));
    s->prog.filter = s->filter;
    rc = 0;
out:
    if (memfd >= 0)
        close(memfd);
    seccomp_release(ctx);
    return rc;
}
