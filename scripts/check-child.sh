#!/bin/sh
# Checks that the sandbox's child side (worker/sbx_child.c: the code that runs
# between clone and execve) calls only async-signal-safe functions and plain
# system call wrappers. The worker may have other threads, and a child of it
# inherits their locks held: malloc, stdio, or anything that takes a lock or
# allocates, could deadlock or corrupt the run's setup.
#
# The object's undefined symbols are what it calls (or reads) outside itself,
# after inlining: an allow-list of those is stronger than a grep of the
# source for names that must not appear, as a call hidden behind a helper of
# another file, or a new unsafe function, is caught too.
#
# Usage: check-child.sh OBJECT (an object built without sanitizers).
set -eu
obj=${1:?usage: check-child.sh OBJECT}
[ -f "$obj" ] || { echo "check-child: $obj: no such file" >&2; exit 2; }

# POSIX.1-2017's async-signal-safe functions the child uses (2.4.3).
posix="_exit chdir close dup2 execve fcntl kill lstat memcmp memcpy memmove memset
mkdir open read readlink setsid sigaction sigaddset sigemptyset sigfillset
sigprocmask stat strlen symlink write"
# Linux system calls without a libc lock or allocation: glibc's wrappers make
# the call and set errno, nothing more.
linux="dup3 getrusage mount msgctl prctl semctl sethostname setns setrlimit shmctl syscall
umount2 unshare wait4"
# clone: glibc's is the system call plus a jump to fn on the given stack (no
# atfork handlers, no lock), the way posix_spawn starts its child.
linux="$linux clone"
# Reading errno; errno names from a static table (strerror may allocate a
# message for an unknown number, strerrorname_np returns NULL instead).
libc="__errno_location strerrorname_np"
# 64-bit-offset aliases of the above, in case _FILE_OFFSET_BITS=64.
alias64="fcntl64 lstat64 open64 setrlimit64 stat64"
# Deliberately absent although POSIX lists them: fork (runs the atfork
# handlers: malloc's locks) and setuid/setgid/setgroups (glibc broadcasts
# them to the worker's other threads, which do not exist in the child: raw
# syscall() instead).

allowed=$(printf '%s\n' $posix $linux $libc $alias64 | sort -u)
# nm -u: "U name" per line; versioned names (name@GLIBC_2.2.5) lose the tail.
used=$(nm -u "$obj" | awk '{print $NF}' | sed 's/@.*//' | sort -u)
[ -n "$used" ] || { echo "check-child: $obj calls nothing: not the object meant?" >&2; exit 2; }
bad=$(printf '%s\n' "$used" | grep -vxF "$allowed" || true)
if [ -n "$bad" ]; then
    echo "check-child: $obj calls functions that are not async-signal-safe after clone:" >&2
    printf '  %s\n' $bad >&2
    echo "(if one is safe, add it with its reason to scripts/check-child.sh)" >&2
    exit 1
fi
echo "check-child: $obj calls only async-signal-safe functions ($(printf '%s\n' "$used" | wc -l) symbols)"
