#!/usr/bin/env bash
# Build what runs in the guest against the patched kernel in $KBUILD: the
# out-of-tree modules (the Rust module, the C sample, the benchmark, the
# stress suite), the static userspace tool, the upstream iommufd selftest;
# then pack them with guest/init into OUT/initramfs.cpio.gz.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=$(realpath -m "$1")
mkdir -p "$out"
KBUILD=${KBUILD:-$(cat "$CACHE/current-build")}
TREE="$CACHE/linux"

cpu_lock
log "modules: make -C $KBUILD M=$TOP"
"${KMAKE[@]}" -s -C "$KBUILD" M="$TOP" modules

log "tools: dmabuf-tool (static, musl)"
cargo build --quiet --release --target x86_64-unknown-linux-musl -p dmabuf-tool
tool="$TOP/target/x86_64-unknown-linux-musl/release/dmabuf-tool"

log "selftests: iommufd (static, patched headers)"
st="$CACHE/selftests/iommu"
mkdir -p "$st"
make -s -C "$TREE/tools/testing/selftests/iommu" OUTPUT="$st" \
	KHDR_INCLUDES="-isystem $KBUILD/usr/include" USERLDFLAGS=-static \
	"$st/iommufd" 2>&1 | grep -v 'warning: Using .* in statically linked' >&2 || true
[ -x "$st/iommufd" ] || die "iommufd selftest did not build"

# Upstream's KVM selftests of what KVM_MEM_DMABUF touches: memslots and
# guest_memfd (the whole KVM suite is far too slow for a nested guest under
# TCG).
log "selftests: kvm set_memory_region_test, guest_memfd_test (static)"
kst="$CACHE/selftests/kvm"
mkdir -p "$kst"
make -s -C "$TREE/tools/testing/selftests/kvm" OUTPUT="$kst" \
	KHDR_INCLUDES="-isystem $KBUILD/usr/include" LDFLAGS=-static \
	"$kst/set_memory_region_test" "$kst/guest_memfd_test" 2>&1 |
	grep -v 'warning: Using .* in statically linked' >&2 || true
for t in set_memory_region_test guest_memfd_test; do
	[ -x "$kst/$t" ] || die "kvm selftest $t did not build"
done

"$TOP/scripts/initramfs.sh" "$out/initramfs.cpio.gz" \
	"$TOP/src/dmabuf_memory.ko:lib/modules/dmabuf_memory.ko" \
	"$TOP/samples/c/dmabuf_import_sample.ko:lib/modules/dmabuf_import_sample.ko" \
	"$TOP/bench/dmabuf_bench.ko:lib/modules/dmabuf_bench.ko" \
	"$TOP/tests/stress/dmabuf_stress.ko:lib/modules/dmabuf_stress.ko" \
	"$TOP/samples/rust/rust_dmabuf_exporter.ko:lib/modules/rust_dmabuf_exporter.ko" \
	"$TOP/samples/rust/rust_dmabuf_importer.ko:lib/modules/rust_dmabuf_importer.ko" \
	"$TOP/samples/rust/rust_dmabuf_bar_exporter.ko:lib/modules/rust_dmabuf_bar_exporter.ko" \
	"$tool:bin/dmabuf-tool" \
	"$st/iommufd:bin/iommufd" \
	"$kst/set_memory_region_test:bin/set_memory_region_test" \
	"$kst/guest_memfd_test:bin/guest_memfd_test"
log "initramfs: $out/initramfs.cpio.gz ($(du -h "$out/initramfs.cpio.gz" | cut -f1))"
