#!/usr/bin/env bash
# `make bench`: the same benchmarks on two kernels of the same series, one
# after the other in the same QEMU topology: the production kernel
# (kernel/production.fragment: no KASAN, KFENCE, UBSAN, lockdep, kmemleak,
# fault injection, KUnit or iommufd test hooks; built in a tree of its own,
# $CACHE/build-<kver>-production, the first time make bench runs) and the
# debug test kernel make check uses. In each guest:
#   - bench/dmabuf_bench.ko times dma_buf_get_memory() (built per call, and
#     shared) against dma_buf_map_attachment() without (sg) and with
#     (sg+dma: dma_map_sgtable() for pci-testdev through the guest's
#     intel-iommu) the DMA mapping, 1 GiB in 1 to 65536 ranges and 4 KiB to
#     16 GiB in 1 and 256, and counts their bytes;
#   - `dmabuf-tool bench`: iommufd MAP_FILE+UNMAP of 256 KiB of a VFIO
#     dma-buf in 1 to 64 ranges, revoke latency with 0 to 64 importers;
#   - `dmabuf-tool kvm-bench`: an L2 guest's first touch of a 2 MiB memslot,
#     anonymous memory against ivshmem's BAR2 as a dma-buf, 4K and 2M entries.
# scripts/bench_report.py prints both kernels' tables side by side, the
# production kernel's goals met or not, and writes OUT/bench/results.csv and
# OUT/bench/*.png. Each guest's logs are in OUT/bench/<kernel>/. Fails if a
# benchmark did not finish, rmmod failed, kmemleak found a leak, or a kernel
# logged a WARN, BUG, lockdep, KASAN or other report (scripts/analyze.py's
# list).
# Usage: bench.sh OUT (OUT/initramfs.cpio.gz from build-guest.sh, for the
# debug kernel)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=$(realpath -m "$1")
KBUILD=${KBUILD:-$(cat "$CACHE/current-build")}
mkdir -p "$out/bench"
# The report draws its plots with Debian's matplotlib: make bench only.
dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null | grep -q 'ok installed' || {
	log "apt: installing python3-matplotlib (make bench's plots)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		python3-matplotlib >/dev/null
}

# The production kernel, its build of the benchmark module, and an initramfs
# of that module and the tool (the bench mode of guest/init needs nothing
# else).
PBUILD=$(DMABUF_FLAVOUR=production "$TOP/scripts/kernel.sh")
pmod=$CACHE/bench-module-production
mkdir -p "$pmod"
echo 'obj-m := dmabuf_bench.o' > "$pmod/Kbuild"
cmp -s "$TOP/bench/dmabuf_bench.c" "$pmod/dmabuf_bench.c" || cp "$TOP/bench/dmabuf_bench.c" "$pmod/"
log "modules: dmabuf_bench for the production kernel"
"${KMAKE[@]}" -s -C "$PBUILD" M="$pmod" modules
mkdir -p "$out/bench/production"
"$TOP/scripts/initramfs.sh" "$out/bench/production/initramfs.cpio.gz" \
	"$pmod/dmabuf_bench.ko:lib/modules/dmabuf_bench.ko" \
	"$TOP/target/x86_64-unknown-linux-musl/release/dmabuf-tool:bin/dmabuf-tool"

ver=$(cat "$CACHE/linux/.pristine-version" 2>/dev/null || echo 7.3)
for k in production debug; do
	if [ $k = production ]; then
		kernel=$PBUILD/arch/x86/boot/bzImage initrd=$out/bench/production/initramfs.cpio.gz
	else
		kernel=$KBUILD/arch/x86/boot/bzImage initrd=$out/initramfs.cpio.gz
	fi
	log "booting the $k kernel ($ver + series) under QEMU (TCG) to run the benchmarks"
	rc=0
	"$TOP/scripts/qemu.sh" bench "$kernel" "$initrd" "$out/bench/$k" "${DMABUF_TIMEOUT:-1500}" || rc=$?
	[ $rc = 0 ] || log "qemu ($k kernel) exited rc=$rc"
done
PATH=/usr/bin:$PATH python3 "$TOP/scripts/bench_report.py" "$out/bench" production debug
