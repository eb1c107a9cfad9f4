#!/usr/bin/env bash
# `make run`: boot the patched kernel in QEMU and tell the dma-buf story
# (export, import, DMA, revoke, restore, then a nested KVM guest on a
# dma-buf memslot) on the console.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
out=$1
KBUILD=$(cat "$CACHE/current-build")
log "booting $(cat "$CACHE/linux/.pristine-version") + series under QEMU (TCG); the guest powers off at the end"
"$TOP/scripts/qemu.sh" demo "$KBUILD/arch/x86/boot/bzImage" "$out/initramfs.cpio.gz" "$out/demo" 600
# Each chapter (peer-to-peer DMA, then KVM) prints its verdict last; a step
# that misbehaved, or a chapter that never finished, fails `make run`.
chapters=$(grep -c 'All [0-9]* steps behaved as expected' "$out/demo/console.log" || true)
if [ "$chapters" != 2 ] || grep -q 'did not behave as expected' "$out/demo/console.log"; then
	log "demo: some step did not behave as expected (marked !! above; $out/demo/console.log)"
	exit 1
fi
log "demo: every step behaved as expected"
