#!/usr/bin/env bash
# Build the guest initramfs: busybox-static, guest/init, the module and the
# test programs. Usage: initramfs.sh OUT.cpio.gz FILE:DEST...
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=$1
shift
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,lib/modules,etc}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
	[ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$TOP/guest/init" "$root/init"
for spec in "$@"; do
	src=${spec%%:*} dst=${spec#*:}
	install -D -m 0755 "$src" "$root/$dst"
done
(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --reproducible --quiet) | gzip -1 > "$out"
