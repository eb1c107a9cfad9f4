#!/usr/bin/env bash
# Boot the patched kernel under QEMU (TCG) with the test topology.
# Usage: qemu.sh MODE BZIMAGE INITRD OUTDIR [TIMEOUT_S]
#   MODE check, bench, stress, tests: console to OUTDIR/console.log only, every kernel message
#   (bench skips the boot-time KUnit suites); demo/shell: console on stdout too.
# The results port (second serial line, /dev/ttyS1 in the guest) goes to
# OUTDIR/results.log.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mode=$1 kernel=$2 initrd=$3 out=$4 tmo=${5:-1200}
mkdir -p "$out"
rm -f "$out/console.log" "$out/results.log"

append="console=ttyS0 intel_iommu=on iommu.strict=1 panic=-1 oops=panic no5lvl"
append+=" dmabuf_mode=$mode"
# Multi-threaded TCG (a host thread per vCPU), except for the device stress
# test: its first run under it crashed QEMU 7.2 itself (SIGSEGV; a second run
# passed). It changes the memory map thousands of times (each
# PCI_COMMAND.MEMORY toggle) while the other vCPU runs, the suspect race;
# single-threaded TCG runs both vCPUs in turn on one host thread.
# DMABUF_ACCEL overrides (e.g. DMABUF_ACCEL=tcg to try the stress test
# multi-threaded).
accel=tcg
case "$mode" in
check) ;;
bench) append+=" kunit.enable=0" ;;
stress) append+=" kunit.enable=0" accel=tcg,thread=single ;;
tests) append+=" kunit.enable=0 dmabuf_tests=${DMABUF_TESTS:?}" ;;
*) append+=" quiet loglevel=4" ;;
esac
accel=${DMABUF_ACCEL:-$accel}
append+=" ${DMABUF_APPEND:-}"

# edu sits on the root bus; ivshmem and pci-testdev sit below one PCIe switch
# (no ACS on its ports), so that the PCI core maps P2P between them by bus
# address, as it cannot through q35's host bridge.
qemu=(qemu-system-x86_64 -machine q35 -accel "$accel" -cpu max -smp 2 -m 4096
	-device intel-iommu
	-device edu
	-device pcie-root-port,id=rp1,chassis=1,slot=1
	-device x3130-upstream,id=sw,bus=rp1
	-device xio3130-downstream,id=dn1,bus=sw,chassis=2,slot=0
	-device xio3130-downstream,id=dn2,bus=sw,chassis=3,slot=1
	-object memory-backend-ram,id=shm,size=2M -device ivshmem-plain,memdev=shm,bus=dn1
	-device pci-testdev,bus=dn2
	-kernel "$kernel" -initrd "$initrd" -append "$append"
	-display none -monitor none -no-reboot
	-chardev "stdio,id=con,signal=off,logfile=$out/console.log"
	-serial chardev:con -serial "file:$out/results.log")

cpu_lock
rc=0
if [ "$mode" != shell ] && [ "$mode" != demo ]; then
	timeout -k 10 "$tmo" "${qemu[@]}" </dev/null >/dev/null 2>"$out/qemu.err" || rc=$?
elif [ "$mode" = shell ]; then
	"${qemu[@]}" || rc=$?
else
	timeout -k 10 "$tmo" "${qemu[@]}" </dev/null 2>"$out/qemu.err" || rc=$?
fi
[ $rc = 124 ] && log "qemu: timed out after ${tmo}s"
exit $rc
