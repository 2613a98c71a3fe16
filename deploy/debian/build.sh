#!/bin/sh
# Builds the Debian package with dpkg-deb (no debhelper): the programs in
# BINDIR, stripped, under their installed names in /usr/bin, their man pages,
# /etc/wslb/{lb,worker}.conf as conffiles, the systemd units in
# /lib/systemd/system, the copyright file and changelog.Debian.gz.
#
# Usage: build.sh BINDIR VERSION OUTDIR      (make deb)
# Environment: DEB_MAINTAINER ("Name <address>"), DEB_HOMEPAGE.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
here="$top/deploy/debian"
[ $# -eq 3 ] || { echo "usage: build.sh BINDIR VERSION OUTDIR" >&2; exit 2; }
bindir=$(cd "$1" && pwd)
version=$2
mkdir -p "$3"
out=$(cd "$3" && pwd)
maint=${DEB_MAINTAINER:-wslb maintainers <maintainers@wslb.example>}
homepage=${DEB_HOMEPAGE:-https://wslb.example/}
arch=$(dpkg --print-architecture)
upstream=${version%-*}

# dpkg-shlibdeps wants a debian/ directory around the package's tree.
work="$out/work"
root="$work/debian/wslb"
rm -rf "$work"
mkdir -p "$root/DEBIAN"

"$top/scripts/mkman.sh" "$bindir" "$work/man" "$upstream"
WSLB_CONFDIR=/etc/wslb WSLB_UNITDIR=/lib/systemd/system WSLB_STRIP=1 WSLB_GZMAN=1 \
    "$top/scripts/install.sh" "$bindir" "$root" /usr "$work/man" >/dev/null

doc="$root/usr/share/doc/wslb"
install -d -m 755 "$doc" "$root/usr/share/lintian/overrides"
install -m 644 "$here/copyright" "$doc/copyright"
# The date of the commit built, so that the same tree gives the same package.
date=$(git -C "$top" log -1 --format=%cD 2>/dev/null || date -R)
sed -e "s/@VERSION@/$version/" -e "s/@MAINTAINER@/$maint/" -e "s/@DATE@/$date/" \
    "$here/changelog.in" | gzip -9n >"$doc/changelog.Debian.gz"
install -m 644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/wslb"

# Runtime libraries from the binaries themselves; the Debian 12 list when
# dpkg-shlibdeps (dpkg-dev) is not there.
if command -v dpkg-shlibdeps >/dev/null; then
    printf 'Source: wslb\n\nPackage: wslb\nArchitecture: any\n' >"$work/debian/control"
    depends=$(cd "$work" && dpkg-shlibdeps -O -e debian/wslb/usr/bin/* 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p')
else
    depends="libc6 (>= 2.34), libev4 (>= 1:4.04), libhiredis0.14 (>= 0.14.1), libhttp-parser2.9 (>= 2.1), libjansson4 (>= 2.14), libseccomp2 (>= 1.0.1), libssl3 (>= 3.0.0)"
fi
[ -n "$depends" ] || { echo "build.sh: could not compute Depends" >&2; exit 1; }

find "$root" -type d -exec chmod 755 {} +
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@MAINTAINER@/$maint/" \
    -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" -e "s|@HOMEPAGE@|$homepage|" \
    "$here/control.in" >"$work/control"
if [ -x "$root/usr/bin/wslbctl" ]; then
    sed -i -e 's/a websocket load generator\.$/a websocket load generator;/' \
        -e 's/^@WSLBCTL@$/  * wslbctl: shows and steers a fleet of lbs and workers./' "$work/control"
else
    sed -i '/^@WSLBCTL@$/d' "$work/control"
fi
install -m 644 "$work/control" "$root/DEBIAN/control"
printf '/etc/wslb/lb.conf\n/etc/wslb/worker.conf\n' >"$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
    install -m 755 "$here/$s" "$root/DEBIAN/$s"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z |
    xargs -0 md5sum | sed 's|  \./|  |') >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

# Same tree, same package: every file dated like the commit.
epoch=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)
find "$root" -exec touch -h -d "@$epoch" {} +
deb="$out/wslb_${version}_${arch}.deb"
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
rm -rf "$work"
echo "$deb"
