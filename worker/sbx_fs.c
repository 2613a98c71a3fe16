/* sbx_fs: the sandbox's files on the worker's side: the work root, per-slot
 * work dirs and the runs' allow-listed /etc; see sbx_int.h. */
#include "sbx_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* ---- the work root ------------------------------------------------------------- */

/* A dead worker's root being removed holds its lock for a few system calls;
 * a live worker's, for good. How long to tell them apart. */
#define SBX_LOCK_WAITS   10
#define SBX_LOCK_WAIT_NS (5 * 1000 * 1000)

/* Whether the lock we hold is still the root's: a cleanup that took it before
 * us unlinks it, and may have removed the root, before letting go. */
static int sbx_lock_current(const sbx_t *s, int root_fd, int lock_fd)
{
    struct stat lk, named, rfd, rpath;
    return fstat(lock_fd, &lk) == 0 && lk.st_nlink > 0 &&
           fstatat(root_fd, SBX_LOCK_NAME, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
           named.st_dev == lk.st_dev && named.st_ino == lk.st_ino && fstat(root_fd, &rfd) == 0 &&
           lstat(s->work_root, &rpath) == 0 && rpath.st_dev == rfd.st_dev &&
           rpath.st_ino == rfd.st_ino;
}

/* One attempt at making and locking the root: 0 with *lock_fd set, 1 to try
 * again (a cleanup was removing it), -1 with errno (EBUSY: a live worker
 * holds it). */
static int sbx_root_try(const sbx_t *s, int *lock_fd)
{
    /* Traversable but not listable by the runs. */
    if (mkdir(s->work_root, 0711) < 0 && errno != EEXIST)
        return -1;
    int rfd = open(s->work_root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (rfd < 0)
        return errno == ENOENT ? 1 : -1;
    int lfd = openat(rfd, SBX_LOCK_NAME, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lfd < 0) {
        int e = errno;
        close(rfd);
        errno = e;
        return e == ENOENT ? 1 : -1; /* the root went while we looked */
    }
    int rc = 0;
    for (int waits = 0; flock(lfd, LOCK_EX | LOCK_NB) < 0; waits++) {
        int e = errno;
        struct stat st;
        int unlinked = fstat(lfd, &st) == 0 && st.st_nlink == 0;
        if (e != EWOULDBLOCK || unlinked || waits == SBX_LOCK_WAITS) {
            errno = e == EWOULDBLOCK ? EBUSY : e;
            rc = unlinked ? 1 : -1;
            break;
        }
        nanosleep(&(struct timespec){0, SBX_LOCK_WAIT_NS}, NULL);
    }
    if (rc == 0 && !sbx_lock_current(s, rfd, lfd))
        rc = 1;
    int e = errno;
    close(rfd);
    if (rc == 0)
        *lock_fd = lfd;
    else
        close(lfd);
    errno = e;
    return rc;
}

int sbx_root_lock(sbx_t *s, char *err, size_t errlen)
{
    int rc = 1;
    for (int tries = 0; rc == 1 && tries < 8; tries++)
        rc = sbx_root_try(s, &s->lock_fd);
    if (rc == 0)
        return 0;
    if (rc == 1)
        errno = EAGAIN;
    if (errno == EBUSY)
        sbx_seterr(err, errlen, "work root %s is in use by another worker", s->work_root);
    else
        sbx_seterr(err, errlen, "work root %s: %s", s->work_root, strerror(errno));
    return -1;
}

int sbx_root_open(sbx_t *s, char *err, size_t errlen)
{
    s->root_fd = open(s->work_root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->root_fd < 0) {
        sbx_seterr(err, errlen, "open %s: %s", s->work_root, strerror(errno));
        return -1;
    }
    /* Nothing removes a root whose lock is held: still the one we locked. */
    if (!sbx_lock_current(s, s->root_fd, s->lock_fd)) {
        sbx_seterr(err, errlen, "work root %s was replaced while starting", s->work_root);
        close(s->root_fd);
        s->root_fd = -1;
        return -1;
    }
    if (fchmod(s->root_fd, 0711) < 0 || (s->is_root && fchown(s->root_fd, 0, 0) < 0)) {
        sbx_seterr(err, errlen, "chmod %s: %s", s->work_root, strerror(errno));
        return -1;
    }
    /* Mount point for each run's private root; only ever used inside a run's
     * own mount namespace, so all slots can share it. */
    if (mkdirat(s->root_fd, ".root", 0700) < 0 && errno != EEXIST) {
        sbx_seterr(err, errlen, "mkdir .root: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void sbx_root_remove(sbx_t *s)
{
    if (s->root_fd < 0) {
        if (s->lock_fd >= 0)
            close(s->lock_fd); /* the root stays, for the next cleanup */
        s->lock_fd = -1;
        return;
    }
    char name[32], path[PATH_MAX];
    for (unsigned i = 0; s->slot && i < s->cfg.slots; i++) {
        sbx_fmt(name, sizeof(name), "slot%u", i);
        if (s->workdir_tmpfs) {
            sbx_fmt(path, sizeof(path), "%s/%s", s->work_root, name);
            sbx_umount_all(path);
        }
        sbx_rm_tree(s->root_fd, name);
    }
    sbx_sweep_old(s);
    if (s->tmpl_root) {
        sbx_fmt(path, sizeof(path), "%s/.root", s->work_root);
        sbx_umount_all(path);
    }
    unlinkat(s->root_fd, ".root", AT_REMOVEDIR);
    sbx_free_etc(s);
    /* The lock goes last but one: until the root is gone, a cleanup started
     * meanwhile must see it as live. */
    unlinkat(s->root_fd, SBX_LOCK_NAME, 0);
    close(s->root_fd);
    s->root_fd = -1;
    rmdir(s->work_root);
    close(s->lock_fd);
    s->lock_fd = -1;
}

/* Removes the root name in dfd if no worker holds its lock: its empty
 * directories (the mounts on them went with their worker), then the lock,
 * then the root. A root with no lock file is left alone: whether its worker
 * lives cannot be told. Returns 0 once the root is gone. */
static int sbx_reap_root(int dfd, const char *name)
{
    int rc = -1, lfd = -1, left = 0;
    DIR *d = NULL;
    int rfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (rfd < 0)
        return -1;
    struct stat st;
    lfd = openat(rfd, SBX_LOCK_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    /* Another cleanup may have taken and unlinked it first (st_nlink 0). */
    if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0 || fstat(lfd, &st) < 0 || st.st_nlink == 0)
        goto out;
    int dup_fd = fcntl(rfd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0 || !(d = fdopendir(dup_fd))) {
        if (dup_fd >= 0)
            close(dup_fd);
        goto out;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, SBX_LOCK_NAME) != 0 && unlinkat(rfd, e->d_name, AT_REMOVEDIR) < 0)
            left++;
    }
    /* Something stays: keep the lock file, so that the next start tries again. */
    if (left == 0 && unlinkat(rfd, SBX_LOCK_NAME, 0) == 0)
        rc = unlinkat(dfd, name, AT_REMOVEDIR);
out:
    if (d)
        closedir(d);
    if (lfd >= 0)
        close(lfd); /* only now: until the root is gone, it stays locked */
    close(rfd);
    return rc;
}

int sbx_reap_roots(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *rest = e->d_name + plen;
        if (strncmp(e->d_name, prefix, plen) != 0 || !*rest ||
            rest[strspn(rest, "0123456789-")] != '\0')
            continue;
        if (sbx_reap_root(dirfd(d), e->d_name) == 0) {
            log_info("sandbox: removed the work root %s/%s of a worker that is gone", dir,
                     e->d_name);
            n++;
        }
    }
    closedir(d);
    return n;
}

/* ---- work dirs ---------------------------------------------------------------- */

#define SBX_RM_MAX_DEPTH 32

/* Opens the directory name in dfd for emptying. One a run made unreadable or
 * unwritable (chmod 000, 0500) is given back to its owner first: without
 * privileges the worker is that owner, but has no CAP_DAC_OVERRIDE. */
static int sbx_open_rm(int dfd, const char *name, const struct stat *st)
{
    /* Best effort: if it fails, the openat below says why. */
    if ((st->st_mode & 0700) != 0700 && fchmodat(dfd, name, 0700, AT_SYMLINK_NOFOLLOW) < 0)
        errno = 0;
    return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Empties the directory dfd without following symlinks. Deep trees are
 * flattened by renaming their deep parts up to top (bounded fd use). */
int sbx_rm_contents(int top, int dfd, int depth, unsigned *moved)
{
    int dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        return -1;
    DIR *d = fdopendir(dup_fd);
    if (!d) {
        close(dup_fd);
        return -1;
    }
    int rc = 0, again = 1;
    while (again) {
        again = 0;
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            struct stat st;
            if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                    continue;
                rc = -1;
                continue;
            }
            if (!S_ISDIR(st.st_mode)) {
                if (unlinkat(dfd, e->d_name, 0) < 0 && errno != ENOENT)
                    rc = -1;
                continue;
            }
            if (depth >= SBX_RM_MAX_DEPTH) {
                char name[32];
                sbx_fmt(name, sizeof(name), ".sbx-deep-%u", (*moved)++);
                if (renameat(dfd, e->d_name, top, name) < 0)
                    rc = -1;
                continue; /* the top-level pass picks it up */
            }
            int sub = sbx_open_rm(dfd, e->d_name, &st);
            if (sub < 0) {
                rc = -1;
                continue;
            }
            if (sbx_rm_contents(top, sub, depth + 1, moved) < 0)
                rc = -1;
            close(sub);
            if (unlinkat(dfd, e->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                rc = -1;
            if (depth == 0)
                again = 1; /* deep parts may have been moved up meanwhile */
        }
    }
    closedir(d);
    return rc;
}

int sbx_rm_tree(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
    unsigned moved = 0;
    int fd = sbx_open_rm(dfd, name, &st);
    if (fd < 0)
        return -1;
    int rc = sbx_rm_contents(fd, fd, 0, &moved);
    close(fd);
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

int sbx_open_slot_dir(sbx_t *s, int slot, int create)
{
    char name[32];
    sbx_fmt(name, sizeof(name), "slot%d", slot);
    int fd = openat(s->root_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
        if (mkdirat(s->root_fd, name, 0700) < 0 && errno != EEXIST)
            return -1;
        fd = openat(s->root_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    return fd;
}

/* A new tmpfs (a new superblock: no inode, xattr, ACL or used space of any
 * earlier run) on the slot's mount point. Whatever is mounted there goes
 * first: the last run's tmpfs, whose teardown frees what that run left, in
 * this thread, or anything mounted over it. The mount point must be a
 * directory of ours; whatever else took the name (say a /tmp cleaner removed
 * the directory, which looks empty from the host, and a file appeared) is
 * replaced. */
static int sbx_workdir_remount(sbx_t *s, int slot, char *err, size_t errlen)
{
    char name[32], path[PATH_MAX], opts[128];
    struct stat st;
    sbx_fmt(name, sizeof(name), "slot%d", slot);
    if (sbx_fmt(path, sizeof(path), "%s/%s", s->work_root, name) < 0) {
        sbx_seterr(err, errlen, "work root path too long");
        return -1;
    }
    sbx_umount_all(path);
    if (fstatat(s->root_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
        unlinkat(s->root_fd, name, 0) < 0) {
        sbx_seterr(err, errlen, "replace %s (not a directory): %s", path, strerror(errno));
        return -1;
    }
    if (mkdirat(s->root_fd, name, 0700) < 0 && errno != EEXIST) {
        sbx_seterr(err, errlen, "mkdir %s: %s", path, strerror(errno));
        return -1;
    }
    uid_t uid = sbx_slot_uid(s, slot);
    sbx_fmt(opts, sizeof(opts), "size=%um,nr_inodes=16384,mode=0700,uid=%u,gid=%u", s->cfg.tmp_mb,
            (unsigned)uid, (unsigned)uid);
    if (mount("sbx-work", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
        sbx_seterr(err, errlen, "mount tmpfs on %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Without mount privilege: the slot's directory is renamed away (O(1)), a new
 * one made in its place (no xattr or ACL of any earlier run), and the old
 * tree removed without following links. What cannot be removed stays under
 * a .old- name until the next start. */
static int sbx_workdir_replace(sbx_t *s, int slot, char *err, size_t errlen)
{
    char name[32], old[64];
    sbx_fmt(name, sizeof(name), "slot%d", slot);
    sbx_fmt(old, sizeof(old), ".old-slot%d-%u", slot, s->slot[slot].generation++);
    if (renameat(s->root_fd, name, s->root_fd, old) < 0) {
        if (errno != ENOENT) {
            sbx_seterr(err, errlen, "rename %s: %s", name, strerror(errno));
            return -1;
        }
        old[0] = '\0';
    }
    int fd = -1;
    uid_t uid = sbx_slot_uid(s, slot);
    if (mkdirat(s->root_fd, name, 0700) < 0 ||
        (fd = openat(s->root_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
        (s->is_root && fchown(fd, uid, uid) < 0) || fchmod(fd, 0700) < 0) {
        sbx_seterr(err, errlen, "make %s: %s", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    if (old[0] && sbx_rm_tree(s->root_fd, old) < 0)
        log_warn("sandbox: cannot remove %s/%s entirely: %s", s->work_root, old, strerror(errno));
    return 0;
}

int sbx_workdir_reset(sbx_t *s, int slot, char *err, size_t errlen)
{
    if (!s || slot < 0 || (unsigned)slot >= s->cfg.slots) {
        sbx_seterr(err, errlen, "bad slot %d", slot);
        return -1;
    }
    if (s->slot[slot].pid > 0) {
        /* The run could keep recreating files while we empty the dir. */
        sbx_seterr(err, errlen, "slot %d is busy", slot);
        return -1;
    }
    return s->workdir_tmpfs ? sbx_workdir_remount(s, slot, err, errlen)
                            : sbx_workdir_replace(s, slot, err, errlen);
}

size_t sbx_workdir_capacity(const sbx_t *s)
{
    return s && s->workdir_tmpfs ? (size_t)s->cfg.tmp_mb << 20 : 0;
}

void sbx_sweep_old(sbx_t *s)
{
    DIR *d = NULL;
    int fd = fcntl(s->root_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0 || !(d = fdopendir(fd))) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, ".old-slot", 9) == 0 && sbx_rm_tree(s->root_fd, e->d_name) < 0)
            log_warn("sandbox: cannot remove %s/%s: %s", s->work_root, e->d_name, strerror(errno));
    closedir(d);
}

int sbx_workdir_write(sbx_t *s, int slot, const char *name, const void *data, size_t len, char *err,
                      size_t errlen)
{
    if (!s || slot < 0 || (unsigned)slot >= s->cfg.slots) {
        sbx_seterr(err, errlen, "bad slot %d", slot);
        return -1;
    }
    if (!name || !name[0] || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || strlen(name) > NAME_MAX) {
        sbx_seterr(err, errlen, "bad file name");
        errno = EINVAL;
        return -1;
    }
    int rc = -1, fd = -1;
    int dfd = sbx_open_slot_dir(s, slot, 0);
    if (dfd < 0) {
        sbx_seterr(err, errlen, "open slot%d: %s", slot, strerror(errno));
        return -1;
    }
    fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        sbx_seterr(err, errlen, "create %s: %s", name, strerror(errno));
        goto out;
    }
    const char *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            sbx_seterr(err, errlen, "write %s: %s", name, n < 0 ? strerror(errno) : "short");
            goto out;
        }
        off += (size_t)n;
    }
    /* The run owns its input files: it may rewrite or delete them. */
    uid_t uid = sbx_slot_uid(s, slot);
    if (s->is_root && fchown(fd, uid, uid) < 0) {
        sbx_seterr(err, errlen, "chown %s: %s", name, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    close(dfd);
    return rc;
}

/* Unmounts anything stacked on path (a crashed worker may have left mounts). */
void sbx_umount_all(const char *path)
{
    for (int i = 0; i < 16 && umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0; i++)
        ;
}

/* Moves the worker into its own mount namespace, a slave of the host's: it
 * still sees every host mount, but the slot tmpfs mounts it makes stay out
 * of the host and are released by the kernel when the worker dies, even by
 * SIGKILL (a crash loop would otherwise pile up mounts, and every run copies
 * the whole mount table). Only the calling thread moves: call it before the
 * worker starts threads. */
int sbx_private_mounts(void)
{
    if (unshare(CLONE_NEWNS) < 0)
        return -1;
    /* Without this, shared mounts would still propagate our mounts back. */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        return -1;
    return 0;
}

/* ---- the runs' /etc ---------------------------------------------------------- */

/* What of the host's /etc a run sees: what python3, sh and gcc read (found
 * with strace) plus a few harmless, distribution-wide files. Host specifics
 * (hostname, machine-id, resolv.conf, hosts, ssh keys, service configs,
 * shadow) stay out. passwd and group are written, not copied. */
static const char *const sbx_etc_allow[] = {
    "alternatives",   "ld.so.cache", "localtime",    "timezone",  "nsswitch.conf", "os-release",
    "debian_version", "mime.types",  "locale.alias", "protocols", "services"};

#define SBX_ETC_MAX_FILE (8u << 20)

/* Copies one regular file, world-readable ones only: a file the run's uid
 * could not read on the host must not become readable through the copy. */
static int sbx_copy_file(int sdir, int ddir, const char *name, const struct stat *st)
{
    if (!(st->st_mode & S_IROTH) || (uint64_t)st->st_size > SBX_ETC_MAX_FILE)
        return 0;
    int rc = -1, in = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), out = -1;
    if (in < 0)
        return errno == ENOENT ? 0 : -1;
    out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (out < 0)
        goto out;
    char buf[16384];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            off += w;
        }
    }
    rc = 0;
out:
    if (out >= 0)
        close(out);
    close(in);
    return rc;
}

/* Copies a symlink, a world-readable regular file, or (one level only) a
 * directory of those, from sdir to ddir. Anything else is left out. */
static int sbx_copy_entry(int sdir, int ddir, const char *name, int depth)
{
    struct stat st;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);
        if (n <= 0)
            return -1;
        target[n] = '\0';
        return symlinkat(target, ddir, name);
    }
    if (S_ISREG(st.st_mode))
        return sbx_copy_file(sdir, ddir, name, &st);
    if (!S_ISDIR(st.st_mode) || depth > 0 || !(st.st_mode & S_IROTH))
        return 0;
    int rc = -1, sub = -1, dsub = -1;
    DIR *d = NULL;
    if (mkdirat(ddir, name, 0755) < 0)
        return -1;
    sub = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    dsub = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int dupfd = sub >= 0 ? fcntl(sub, F_DUPFD_CLOEXEC, 0) : -1;
    if (dsub < 0 || dupfd < 0 || !(d = fdopendir(dupfd))) {
        if (dupfd >= 0)
            close(dupfd);
        goto out;
    }
    struct dirent *e;
    rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            sbx_copy_entry(sub, dsub, e->d_name, depth + 1) < 0)
            rc = -1;
    }
out:
    if (d)
        closedir(d);
    if (sub >= 0)
        close(sub);
    if (dsub >= 0)
        close(dsub);
    return rc;
}

/* Writes passwd and group naming every uid a run can have "sandbox", so
 * tools that look their user up (id, whoami, getpass) work. */
static int sbx_write_ids(const sbx_t *s, int dfd)
{
    static const char *const head[2] = {
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "root:x:0:\nnogroup:x:65534:\n"};
    static const char *const name[2] = {"passwd", "group"};
    for (int k = 0; k < 2; k++) {
        FILE *f = NULL;
        int fd = openat(dfd, name[k], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 || !(f = fdopen(fd, "w"))) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        fputs(head[k], f);
        unsigned n = s->cfg.slots + (s->is_root ? 0 : 1);
        for (unsigned i = 0; i < n; i++) {
            unsigned id =
                i < s->cfg.slots ? (unsigned)sbx_slot_uid(s, (int)i) : (unsigned)s->host_uid;
            if (id == 0)
                continue;
            if (k == 0)
                fprintf(f, "sandbox:x:%u:%u:sandbox:/work:/bin/sh\n", id, id);
            else
                fprintf(f, "sandbox:x:%u:\n", id);
        }
        if (fclose(f) != 0)
            return -1;
    }
    return 0;
}

/* Fills work_root/.etc with the allow-listed copy. As root it is a tmpfs in
 * the worker's private mount namespace, so it goes away with the worker.
 * Copied once at start: a changed host file reaches runs at the next start. */
int sbx_make_etc(sbx_t *s, int private_mounts)
{
    char path[PATH_MAX];
    int rc = -1, sdir = -1, dfd = -1;
    if (sbx_fmt(path, sizeof(path), "%s/.etc", s->work_root) < 0)
        return -1;
    if (mkdirat(s->root_fd, ".etc", 0755) < 0 && errno != EEXIST)
        return -1;
    s->etc_dir = strdup(path);
    if (!s->etc_dir)
        return -1;
    sbx_umount_all(path);
    if (private_mounts && mount("sbx-etc", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                "size=16m,nr_inodes=4096,mode=0755") == 0)
        s->etc_tmpfs = 1;
    dfd = openat(s->root_fd, ".etc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    sdir = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || sdir < 0)
        goto out;
    unsigned moved = 0;
    if (sbx_rm_contents(dfd, dfd, 0, &moved) < 0 || fchmod(dfd, 0755) < 0)
        goto out;
    for (size_t i = 0; i < sizeof(sbx_etc_allow) / sizeof(sbx_etc_allow[0]); i++)
        if (sbx_copy_entry(sdir, dfd, sbx_etc_allow[i], 0) < 0)
            goto out;
    if (sbx_write_ids(s, dfd) < 0)
        goto out;
    rc = 0;
out:
    if (sdir >= 0)
        close(sdir);
    if (dfd >= 0)
        close(dfd);
    return rc;
}

void sbx_free_etc(sbx_t *s)
{
    if (!s->etc_dir)
        return;
    int fd = openat(s->root_fd, ".etc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        unsigned moved = 0;
        sbx_rm_contents(fd, fd, 0, &moved);
        close(fd);
    }
    if (s->etc_tmpfs)
        sbx_umount_all(s->etc_dir);
    unlinkat(s->root_fd, ".etc", AT_REMOVEDIR);
    free(s->etc_dir);
    s->etc_dir = NULL;
    s->etc_tmpfs = 0;
}
