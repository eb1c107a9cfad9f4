#!/usr/bin/env bash
# Build what runs in the guest against the patched kernel in $KBUILD: the
# out-of-tree modules (the Rust module, the C sample, the benchmark, the
# stress suite), the static userspace tool, the upstream iommufd (and its
# fail-nth), udmabuf and KVM selftests;
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

# selftest DIR LDVAR TARGET...: upstream selftests of DIR, static, built
# against the patched kernel's uAPI headers, into $CACHE/selftests/DIR.
# HARNESS=DIR (optional): with the kselftest harness in DIR instead of the
# tree's, a dependency of the tests like the tree's (lib.mk appends its own
# headers to LOCAL_HDRS from the environment).
selftest() {
	local dir=$1 ldvar=$2 out="$CACHE/selftests/$1" t
	shift 2
	mkdir -p "$out"
	local khdr="-isystem $KBUILD/usr/include" hdrs=
	if [ -n "${HARNESS:-}" ]; then
		khdr+=" -iquote $HARNESS" hdrs="$HARNESS/kselftest_harness.h"
	fi
	LOCAL_HDRS="$hdrs" make -s -C "$TREE/tools/testing/selftests/$dir" OUTPUT="$out" \
		KHDR_INCLUDES="$khdr" "$ldvar=-static" \
		"${@/#/$out/}" 2>&1 | grep -v 'warning: Using .* in statically linked' >&2 || true
	for t; do
		[ -x "$out/$t" ] || die "$dir selftest $t did not build"
	done
}

# The kselftest harness kills a test after TEST_TIMEOUT_DEFAULT (30) s, a
# compile-time constant. iommufd's cases that call check_access_rw()
# (25 000 ioctls) take 4-9 s on the debug kernel under TCG here, and more
# than 30 s on a loaded CI machine: build them with a copy of the harness
# that differs only in that constant, found before the tree's through
# -iquote. The tests themselves are upstream's, unchanged.
HARNESS_TIMEOUT=150
harness_copy() {
	local dir="$CACHE/selftests/harness" h=kselftest_harness.h
	mkdir -p "$dir"
	sed "s/^#define TEST_TIMEOUT_DEFAULT 30\$/#define TEST_TIMEOUT_DEFAULT $HARNESS_TIMEOUT/" \
		"$TREE/tools/testing/selftests/$h" > "$dir/$h.new"
	grep -q "^#define TEST_TIMEOUT_DEFAULT $HARNESS_TIMEOUT\$" "$dir/$h.new" ||
		die "$h: no TEST_TIMEOUT_DEFAULT 30 to raise"
	# Replaced only when it changes: its mtime is what make rebuilds on.
	if cmp -s "$dir/$h.new" "$dir/$h"; then
		rm "$dir/$h.new"
	else
		mv "$dir/$h.new" "$dir/$h"
	fi
	echo "$dir"
}

log "selftests: iommufd, drivers/dma-buf (udmabuf) (static, patched headers; iommufd's harness timeout ${HARNESS_TIMEOUT} s)"
# (Assigned first: set -e stops the build if the copy cannot be made.)
harness=$(harness_copy)
HARNESS=$harness selftest iommu USERLDFLAGS iommufd iommufd_fail_nth
selftest drivers/dma-buf LDFLAGS udmabuf
st="$CACHE/selftests/iommu" dst="$CACHE/selftests/drivers/dma-buf"

# Upstream's KVM selftests of what KVM_MEM_DMABUF touches: memslots and
# guest_memfd (the whole KVM suite is far too slow for a nested guest under
# TCG).
log "selftests: kvm set_memory_region_test, guest_memfd_test (static)"
selftest kvm LDFLAGS set_memory_region_test guest_memfd_test
kst="$CACHE/selftests/kvm"

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
	"$st/iommufd_fail_nth:bin/iommufd_fail_nth" \
	"$dst/udmabuf:bin/udmabuf" \
	"$kst/set_memory_region_test:bin/set_memory_region_test" \
	"$kst/guest_memfd_test:bin/guest_memfd_test"
log "initramfs: $out/initramfs.cpio.gz ($(du -h "$out/initramfs.cpio.gz" | cut -f1))"
