#!/bin/sh
# Installs (or removes) what `make` built: every program in BINDIR under its
# installed name, its man page, the example configs and the systemd units.
#
# Usage: install.sh [--uninstall] BINDIR DESTDIR PREFIX MANDIR
# Environment (the Debian package sets these):
#   WSLB_CONFDIR  where lb.conf and worker.conf go (default PREFIX/share/wslb)
#   WSLB_UNITDIR  where the units go (default PREFIX/lib/systemd/system)
#   WSLB_STRIP=1  strip the programs as Debian does
#   WSLB_GZMAN=1  compress man pages (gzip -9n)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/names.sh"

uninstall=0
if [ "${1:-}" = --uninstall ]; then
    uninstall=1
    shift
fi
[ $# -eq 4 ] || { echo "usage: install.sh [--uninstall] BINDIR DESTDIR PREFIX MANDIR" >&2; exit 2; }
bindir=$1 dest=$2 prefix=$3 mandir=$4
confdir=${WSLB_CONFDIR:-$prefix/share/wslb}
unitdir=${WSLB_UNITDIR:-$prefix/lib/systemd/system}
progs=$(wslb_programs "$bindir")
[ -n "$progs" ] || { echo "install: nothing built in $bindir (run make first)" >&2; exit 1; }

if [ "$uninstall" -eq 1 ]; then
    for p in $progs; do
        n=$(wslb_installed_name "$p")
        rm -f "$dest$prefix/bin/$n" "$dest$prefix/share/man/man1/$n.1" \
            "$dest$prefix/share/man/man1/$n.1.gz"
    done
    rm -f "$dest$confdir/lb.conf" "$dest$confdir/worker.conf" \
        "$dest$unitdir/wslb-lb.service" "$dest$unitdir/wslb-worker.service"
    rmdir "$dest$confdir" 2>/dev/null || true
    echo "removed wslb from $dest$prefix"
    exit 0
fi

install -d -m 755 "$dest$prefix/bin" "$dest$prefix/share/man/man1" "$dest$confdir" "$dest$unitdir"
for p in $progs; do
    n=$(wslb_installed_name "$p")
    install -m 755 "$bindir/$p" "$dest$prefix/bin/$n"
    if [ "${WSLB_STRIP:-0}" = 1 ]; then
        strip --remove-section=.comment --remove-section=.note --strip-unneeded \
            "$dest$prefix/bin/$n"
    fi
    if [ -f "$mandir/$n.1" ]; then
        install -m 644 "$mandir/$n.1" "$dest$prefix/share/man/man1/$n.1"
        if [ "${WSLB_GZMAN:-0}" = 1 ]; then
            gzip -9nf "$dest$prefix/share/man/man1/$n.1"
        fi
    fi
    echo "installed $dest$prefix/bin/$n"
done
install -m 644 "$top/deploy/conf/lb.conf" "$top/deploy/conf/worker.conf" "$dest$confdir/"
# The units name /usr/bin, where the package puts the programs.
for u in wslb-lb.service wslb-worker.service; do
    sed "s|/usr/bin/wslb|$prefix/bin/wslb|g" "$top/deploy/systemd/$u" >"$dest$unitdir/$u"
    chmod 644 "$dest$unitdir/$u"
done
echo "installed $dest$confdir/{lb,worker}.conf and $dest$unitdir/wslb-{lb,worker}.service"
