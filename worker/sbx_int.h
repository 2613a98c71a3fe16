/* sbx internals shared by the sandbox's source files (sbx.c: lifecycle and
 * namespaces; sbx_child.c: everything after clone; sbx_cg.c: cgroups v1 and
 * v2; sbx_fs.c: work dirs and the runs' /etc; sbx_seccomp.c: the syscall
 * filter). Not for other modules: they use sbx.h. */
#ifndef WORKER_SBX_INT_H
#define WORKER_SBX_INT_H

#include <limits.h>
#include <linux/filter.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "sbx.h"

#define SBX_MAX_SLOTS    1024
#define SBX_REPORT_MAGIC 0x53425852u /* "SBXR" */
#define SBX_CG1          "/sys/fs/cgroup"
/* In the work root: the worker flocks it for its whole life, so that whoever
 * can take it knows the root is a dead worker's (see sbx_reap_roots). */
#define SBX_LOCK_NAME ".lock"
/* Queued signals and POSIX timers of a slot's uid (RLIMIT_SIGPENDING). */
#define SBX_SIGPENDING 1024

/* Landlock scopes (ABI 6, Linux 6.12); Debian 12's headers predate them. */
#define SBX_LL_CREATE_VERSION 1u
#define SBX_LL_SCOPE_ABSTRACT 1ull
#define SBX_LL_SCOPE_SIGNAL   2ull
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_restrict_self  446
#endif
struct sbx_ll_attr {
    uint64_t handled_access_fs, handled_access_net, scoped;
};

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
/* clone3's argument, version 2 (with cgroup); glibc 2.36 has no wrapper. */
struct sbx_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

/* The pipe record init (or the program, before exec) writes. Smaller than
 * PIPE_BUF, so each write is atomic and the reader sees whole records. */
enum { SBX_REP_DONE = 1, SBX_REP_ERROR = 2, SBX_REP_EXEC = 3 };
struct sbx_report {
    uint32_t magic;
    int32_t kind;
    int32_t wstatus;
    int32_t pad;
    struct rusage ru;
    char error[120];
};

enum sbx_cgmode { SBX_CG_NONE = 0, SBX_CG_V1, SBX_CG_V2 };
/* v1 controllers we use; v2 keeps its single directory in CG_MEM. */
enum { CG_MEM = 0, CG_PIDS, CG_CPU, CG_FRZ, CG_N };

struct sbx_slot {
    int pidfd;         /* of the running init, -1 when idle */
    pid_t pid;         /* of the running init, 0 when idle */
    unsigned mem_mb;   /* limit currently written to the slot's cgroup */
    uint64_t oom_base; /* oom_kill counter when the run started */
    uint64_t cpu_base; /* v2 usage_usec when the run started */
    /* "<slot cgroup>/cgroup.procs" per controller: the run's init writes
     * itself there, so the worker never blocks on a cgroup migration. */
    char *cg_procs[CG_N];
    int cg_fd;    /* v2: the slot's cgroup directory, for CLONE_INTO_CGROUP */
    int netns_fd; /* the slot's empty network namespace, -1 if none */
    /* Names the old work dir sbx_workdir_reset renames away (plain
     * directories only); whoever resets the slot owns it. */
    unsigned generation;
};

struct sbx {
    sbx_config_t cfg;
    char *work_root;
    int root_fd; /* work_root, O_DIRECTORY */
    int lock_fd; /* work_root/.lock, flocked while root_fd is open */
    int is_root;
    int ns_flags;   /* CLONE_NEW* for each run; 0 when namespaces are unavailable */
    uid_t host_uid; /* when unprivileged: who we are outside the user namespace */
    gid_t host_gid;
    enum sbx_cgmode cg;
    char *cg_base[CG_N]; /* per-worker parent cgroup per controller, NULL if absent */
    char *cg_parent_v2;  /* v2: the cgroup we enabled controllers in */
    int cg_memsw;        /* v1 memory.memsw.* present */
    int cg_v2_kill;      /* v2 cgroup.kill present */
    int workdir_tmpfs;   /* slot dirs are size-limited tmpfs mounts */
    char *etc_dir;       /* the runs' /etc: an allow-listed copy, NULL = host /etc */
    int etc_tmpfs;       /* etc_dir is a tmpfs mount of ours */
    int ll_scoped;       /* Landlock can scope abstract sockets and signals */
    int tmpl_root;       /* .root holds the runs' read-only template root (sbx_make_tmpl) */
    struct sock_filter *filter;
    struct sock_fprog prog;
    struct sbx_slot *slot;
    int zyg_fd;    /* socket to the zygote (sbx_zyg.c), -1 when there is none */
    pid_t zyg_pid; /* the zygote, 0 when none */
    int zyg_pidfd; /* the zygote's pidfd, -1 when none */
    char isolation[256];
};

void sbx_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* snprintf that reports truncation: paths cut short must fail, not point
 * somewhere else. */
int sbx_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes val to a small kernel file (cgroup, /proc). */
int sbx_write_file(const char *path, const char *val);

static inline uid_t sbx_slot_uid(const sbx_t *s, int slot)
{
    return s->cfg.uid_base + (uid_t)slot;
}

/* sbx_cg.c. Root only; every call is a no-op without cgroups (s->cg NONE),
 * except sbx_cg_setup, which decides that. */
/* Detects the cgroup version, makes the worker's and the slots' cgroups with
 * their limits, and removes those of dead workers; on failure says why and
 * leaves none. */
int sbx_cg_setup(sbx_t *s, char *why, size_t whylen);
/* Removes the cgroups sbx_cg_setup made (they must be empty). */
void sbx_cg_cleanup(sbx_t *s);
/* Before a run in slot: its memory limit, and the counters it is measured by. */
int sbx_cg_run_begin(sbx_t *s, int slot, unsigned mem_mb);
/* After the run in slot was reaped: kills leftovers, adds what the cgroup
 * measured (OOM kills, CPU, peak memory) to r and resets the counters. */
void sbx_cg_run_end(sbx_t *s, int slot, sbx_result_t *r);
/* Kills whatever is still in the slot's cgroup. */
void sbx_cg_kill_all(sbx_t *s, int slot);

/* sbx_fs.c */
/* Makes the work root, or takes over one whose worker is gone, and holds its
 * lock (lock_fd). Fails with EBUSY when a live worker holds it. Call before
 * sbx_private_mounts, so that a refusal leaves the caller as it was. */
int sbx_root_lock(sbx_t *s, char *err, size_t errlen);
/* Then, in the worker's mount namespace: opens root_fd, root-owned 0711. */
int sbx_root_open(sbx_t *s, char *err, size_t errlen);
/* Removes what sbx_root_open and the work dirs made, then the root itself. */
void sbx_root_remove(sbx_t *s);
int sbx_rm_contents(int top, int dfd, int depth, unsigned *moved);
/* Removes name in dfd: a file, or a directory tree without following links. */
int sbx_rm_tree(int dfd, const char *name);
int sbx_open_slot_dir(sbx_t *s, int slot, int create);
/* Removes the .old-slot* trees a replaced work dir could not shed. */
void sbx_sweep_old(sbx_t *s);
void sbx_umount_all(const char *path);
int sbx_private_mounts(void);
int sbx_make_etc(sbx_t *s, int private_mounts);
void sbx_free_etc(sbx_t *s);

/* What a run's init needs, computed by the parent before clone so that the
 * child only makes system calls. */
struct sbx_child {
    const sbx_t *s;
    const char *const *argv;
    char *const *envp;
    int fd_in, fd_out, fd_err, fd_status, fd_sync; /* child ends, before the shuffle */
    int slot;
    int cg_joined; /* born in the slot's cgroup (clone3 CLONE_INTO_CGROUP) */
    uid_t uid;
    gid_t gid;
    unsigned mem_mb;
    char workdir[PATH_MAX];
    char newroot[PATH_MAX];
};

/* sbx_child.c: run in a child between clone and execve; never return. */
/* The run's init (PID 1 of its namespace): builds the run's world, starts the
 * program as PID 2, reaps the run and reports on the status fd. */
__attribute__((noreturn)) void sbx_child_init(const struct sbx_child *c);
/* The helper that builds, in the worker's mount namespace, the part of the
 * runs' root that is the same for every run (a read-only tmpfs at root with
 * /usr, /etc, /dev and the mount points), reporting a failure on status_fd;
 * each run's clone copies it and mounts only what is its own. */
__attribute__((noreturn)) void sbx_child_tmpl(const sbx_t *s, const char *root, int status_fd);
/* The helper that makes n network namespaces: one unshare per 'g' on ack,
 * each answered by 'y' (or 'n') on req. */
__attribute__((noreturn)) void sbx_child_netns(int req, int ack, unsigned n);

/* sbx.c: clones a run's init with every signal blocked, so that no handler
 * of the caller's runs in the child before init resets them; extra adds
 * clone flags (CLONE_PARENT from the zygote). In the child this never
 * returns. */
pid_t sbx_clone_init(const sbx_t *s, int slot, unsigned long extra, struct sbx_child *c);

/* sbx_zyg.c: the zygote that clones the runs' inits (see there why). */
#define SBX_ZYG_NONE (-2)
#define SBX_ZYG_LOST (-3)
/* Forks the zygote from the sandbox as it is now; -1 with errno if not. */
int sbx_zyg_start(sbx_t *s);
/* Stops it (EOF, then SIGKILL) and reaps it; a no-op without one. */
void sbx_zyg_stop(sbx_t *s);
/* Has the zygote clone c's init, as the worker's child: its pid, -1 with
 * errno if the clone failed, or SBX_ZYG_NONE when there is no zygote (or
 * it just failed and was stopped), and the caller must clone itself;
 * SBX_ZYG_LOST when it was stopped after it had the request: an init of
 * the zygote's may hold c's fds, so the caller clones itself with new
 * ones. */
pid_t sbx_zyg_clone(sbx_t *s, struct sbx_child *c);
/* The zygote's pid, 0 when there is none. */
pid_t sbx_zyg_pid(const sbx_t *s);

/* sbx_seccomp.c */
int sbx_build_seccomp(sbx_t *s, char *err, size_t errlen);

#endif
