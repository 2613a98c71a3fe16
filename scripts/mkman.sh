#!/bin/sh
# Writes a short man page per built program from its --help output.
# Usage: mkman.sh BINDIR OUTDIR VERSION
# Each page is named after the installed program (wslb-lb.1, ...); the help
# text is run through a link of that name, so it shows the installed name.
set -eu
. "$(dirname "$0")/names.sh"
bindir=$1 out=$2 version=$3
mkdir -p "$out"
links=$(mktemp -d "${TMPDIR:-/tmp}/wslb-man.XXXXXX")
trap 'rm -rf "$links"' EXIT

# roff: backslashes, then minus signs; a line starting with . or ' would be
# read as a request.
roff_escape() {
    sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\([.']\)/\\\\\&\1/"
}

all=""
for p in $(wslb_programs "$bindir"); do
    all="$all $(wslb_installed_name "$p")"
done
for p in $(wslb_programs "$bindir"); do
    name=$(wslb_installed_name "$p")
    ln -sf "$(cd "$bindir" && pwd)/$p" "$links/$name"
    help=$("$links/$name" --help 2>&1) || true
    [ -n "$help" ] || { echo "mkman: $p --help printed nothing" >&2; exit 1; }
    upper=$(echo "$name" | tr 'a-z' 'A-Z')
    see=""
    for o in $all; do
        [ "$o" = "$name" ] && continue
        see="$see${see:+,
}.BR $o (1)"
    done
    {
        printf '%s\n' ".TH $upper 1 \"\" \"wslb $version\" \"User Commands\""
        printf '%s\n' ".SH NAME"
        printf '%s\n' "$name \\- $(wslb_description "$name")"
        printf '%s\n' ".SH SYNOPSIS"
        printf '%s\n' ".B $name"
        printf '%s\n' "[\\fIOPTIONS\\fR]"
        printf '%s\n' ".SH DESCRIPTION"
        printf '%s\n' "The text below is what"
        printf '%s\n' ".B $name \\-\\-help"
        printf '%s\n' "prints."
        printf '%s\n' ".PP"
        printf '%s\n' ".nf"
        printf '%s\n' "$help" | roff_escape
        printf '%s\n' ".fi"
        case "$name" in
        wslb-lb | wslb-worker)
            printf '%s\n' ".SH FILES"
            printf '%s\n' ".TP"
            printf '%s\n' ".I /etc/wslb/${name#wslb-}.conf"
            printf '%s\n' "Options as \\fIname = value\\fR lines, read with \\fB\\-\\-config\\fR by the"
            printf '%s\n' "systemd unit \\fB$name.service\\fR."
            ;;
        esac
        if [ -n "$see" ]; then
            printf '%s\n' ".SH SEE ALSO"
            printf '%s\n' "$see"
        fi
    } >"$out/$name.1"
done
