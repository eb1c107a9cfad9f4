#!/usr/bin/env bash
# Build what runs in the guest against the patched kernel in $KBUILD: the
# out-of-tree modules (the Rust module, the C sample, the benchmark), the
# static userspace tool, the upstream iommufd selftest; then pack them with
# guest/init into OUT/initramfs.cpio.gz.
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

"$TOP/scripts/initramfs.sh" "$out/initramfs.cpio.gz" \
	"$TOP/src/dmabuf_memory.ko:lib/modules/dmabuf_memory.ko" \
	"$TOP/samples/c/dmabuf_import_sample.ko:lib/modules/dmabuf_import_sample.ko" \
	"$TOP/bench/dmabuf_bench.ko:lib/modules/dmabuf_bench.ko" \
	"$TOP/samples/rust/rust_dmabuf_exporter.ko:lib/modules/rust_dmabuf_exporter.ko" \
	"$TOP/samples/rust/rust_dmabuf_importer.ko:lib/modules/rust_dmabuf_importer.ko" \
	"$TOP/samples/rust/rust_dmabuf_bar_exporter.ko:lib/modules/rust_dmabuf_bar_exporter.ko" \
	"$tool:bin/dmabuf-tool" \
	"$st/iommufd:bin/iommufd"
log "initramfs: $out/initramfs.cpio.gz ($(du -h "$out/initramfs.cpio.gz" | cut -f1))"
