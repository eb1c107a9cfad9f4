#!/usr/bin/env bash
# `make run`: boot the patched kernel in QEMU and tell the dma-buf story
# (export, import, DMA, revoke, restore) on the console.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
out=$1
KBUILD=$(cat "$CACHE/current-build")
log "booting $(cat "$CACHE/linux/.pristine-version") + series under QEMU (TCG); the guest powers off at the end"
"$TOP/scripts/qemu.sh" demo "$KBUILD/arch/x86/boot/bzImage" "$out/initramfs.cpio.gz" "$out/demo" 600
