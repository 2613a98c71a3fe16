/* sbx: the sandbox that runs one untrusted program.
 *
 * Layout of a run: the worker forks a child that joins fresh PID, mount, IPC
 * and UTS namespaces and its slot's empty network namespace (one per slot,
 * made at start: a new one per run costs tens of milliseconds). That child is PID 1
 * of the new namespace, a tiny init: it enters a cgroup namespace rooted at
 * the slot's cgroup, builds a private read-only root (/usr, an allow-listed
 * copy of /etc, a /proc with hidepid and /proc/sys read-only, a few devices)
 * with the run's work directory at /work and a small tmpfs at /tmp (as root,
 * everything but /proc, /work and /tmp comes from a read-only template the
 * worker built once, which the run's clone copied), then starts the program
 * as PID 2 (CLONE_VM|CLONE_VFORK, as posix_spawn), which drops to the slot's unprivileged uid,
 * applies rlimits, PR_SET_NO_NEW_PRIVS, a Landlock scope where the kernel has
 * one (no abstract unix sockets or signals outside the run) and the seccomp
 * filter, and execs. When the program ends, init kills and reaps whatever it
 * left, removes the run's SysV IPC objects (so their memory is uncharged
 * before the next run in the slot), writes its wait status and rusage to the
 * status pipe and exits; a setsid double-fork cannot outlive the run. Killing
 * init from the worker kills the whole tree the same way (the kernel then
 * ends the namespace).
 *
 * Memory, pids and CPU accounting use a cgroup per slot (v1 hierarchies or
 * the v2 unified tree, detected at start); without cgroups the sandbox falls
 * back to rlimits and says so in sbx_isolation().
 *
 * Not thread-safe: one sbx_t per worker, used from its event loop (but see
 * sbx_workdir_reset). */
#ifndef WORKER_SBX_H
#define WORKER_SBX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct sbx sbx_t;

typedef struct sbx_config {
    const char *work_root; /* parent of per-run work dirs; created 0711 if missing */
    unsigned slots;        /* concurrent runs (the worker's --max-evals) */
    uid_t uid_base;        /* slot N runs as uid_base + N (root only); 0 = 61000 */
    unsigned memory_mb;    /* per run, default 256 */
    unsigned nproc;        /* processes/threads per run, default 64 */
    unsigned nofile;       /* open files per process, default 64 */
    unsigned fsize_mb;     /* largest file a run may write, default 16 */
    unsigned tmp_mb;       /* size of /tmp and of /work, default 32 */
    unsigned cpu_s;        /* RLIMIT_CPU backstop, default 60 */
} sbx_config_t;

/* Why a finished program ended, from the status init reported. */
typedef struct sbx_result {
    int exited;      /* 1: exited normally, status valid */
    int status;      /* exit status when exited */
    int signal;      /* signal number that ended it, 0 if none */
    int oom;         /* the memory limit killed something in the run */
    int reported;    /* 0: init died before reporting (killed from outside) */
    uint64_t cpu_ms; /* user + system CPU of the whole run */
    uint64_t max_rss_kb;
    /* Non-empty when the sandbox could not start the program (setup failed
     * before exec): exited = 0, signal = 0, status = 127 then. */
    char error[128];
    /* error is the sandbox's own setup failing (a mount, a cgroup, a limit),
     * not the program failing to exec: the slot is at fault, not the run. */
    int sandbox_fault;
} sbx_result_t;

typedef struct sbx_proc {
    pid_t pid;     /* the namespace's init, as the worker sees it; reap it */
    int in_fd;     /* write end of the program's stdin (non-blocking) */
    int out_fd;    /* read end of its stdout (non-blocking) */
    int err_fd;    /* read end of its stderr (non-blocking) */
    int status_fd; /* read end of the status pipe (non-blocking) */
    int slot;
    uint64_t spawn_ns; /* time sbx_spawn took, for the start-latency histogram */
} sbx_proc_t;

/* Detects namespaces and cgroups, prepares the per-slot network namespaces,
 * the seccomp program, the per-slot cgroups and work dirs. Fails only when
 * nothing of the sandbox can work; partial isolation is reported by
 * sbx_isolation(). As root it also moves the calling thread into a private
 * (slave) mount namespace holding the per-slot work dir tmpfs mounts, so
 * they vanish with the worker: call it before starting threads (a thread
 * started after it shares that namespace). */
sbx_t *sbx_create(const sbx_config_t *cfg, char *err, size_t errlen);
/* sbx_create holds an exclusive flock on a lock file in work_root until
 * sbx_free, whatever PID namespace or container it runs in: a work_root held
 * by a live sandbox makes sbx_create fail with errno EBUSY. */
/* Removes the work roots of sandboxes that are gone (killed, crashed): the
 * directories in dir named prefix followed by digits and dashes whose lock
 * no process holds. Only their empty directories and lock file are removed;
 * a directory without a lock file is left alone. Returns how many went. */
int sbx_reap_roots(const char *dir, const char *prefix);
/* Kills nothing: callers kill and reap their runs first. Removes the cgroups
 * and the work root. */
void sbx_free(sbx_t *s);
/* "full" or a short description of what is missing, e.g.
 * "partial: no cgroup memory controller (rlimit only)". */
const char *sbx_isolation(const sbx_t *s);
/* "v1", "v2" or "none". */
const char *sbx_cgroup_mode(const sbx_t *s);

/* Gives the slot a work dir that is fresh by construction: a new tmpfs (a new
 * superblock: no file, xattr, ACL or used space of any earlier run), or
 * without mount privilege a new directory, the old one renamed away and
 * removed with openat / unlinkat / O_NOFOLLOW relative to a directory fd, so
 * planted symlinks and hard links are never followed. The teardown of the
 * old tmpfs or tree costs time in proportion to what the last run left: call
 * it off the event loop. The one sbx function another thread may call, for
 * a slot with no run, while the loop uses the other slots. */
int sbx_workdir_reset(sbx_t *s, int slot, char *err, size_t errlen);
/* Bytes a work dir holds (its tmpfs size), or 0 when it is not limited. */
size_t sbx_workdir_capacity(const sbx_t *s);
/* Writes a file into the slot's work dir. name must be a plain file name (no
 * '/', not "." or "..", no NUL); the file is created O_EXCL|O_NOFOLLOW. */
int sbx_workdir_write(sbx_t *s, int slot, const char *name, const void *data, size_t len, char *err,
                      size_t errlen);

/* Starts argv (argv[0] an absolute path) in the slot's work dir with a
 * minimal environment (PATH, HOME=/work, LANG=C.UTF-8, TMPDIR=/tmp). The
 * slot's memory limit may be overridden per run (0 = default). Returns 0 and
 * fills p, or -1 with err (nothing is left running then). */
int sbx_spawn(sbx_t *s, int slot, const char *const argv[], unsigned memory_mb, sbx_proc_t *p,
              char *err, size_t errlen);
/* Kills the run's whole tree (SIGKILL to init, and to the cgroup where there
 * is one). Safe to call more than once and after it ended. */
void sbx_kill(sbx_t *s, sbx_proc_t *p);
/* After the caller reaped p->pid (waitpid/ev_child) and drained status_fd's
 * readiness, fills r from what init reported plus cgroup figures, closes the
 * status fd, and resets the slot's cgroup counters for the next run. The
 * caller closes in/out/err fds itself (it owns their watchers). */
int sbx_finish(sbx_t *s, sbx_proc_t *p, sbx_result_t *r);

#endif
