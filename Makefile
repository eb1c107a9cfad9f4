# dma-buf physical memory export (dma_buf_get_memory()) for Rust-for-Linux.
#
#   make run     build the patched kernel, boot it in QEMU, show a dma-buf
#                exported, imported and revoked
#   make check   build everything, run every test, print "N passed, N failed, N skipped"
#
# The kernel's kbuild reads ./Kbuild (not this file) when it builds the
# out-of-tree module with `make -C $KDIR M=$PWD`.

SHELL := /bin/bash
S := scripts
OUT ?= $(CURDIR)/out

.PHONY: all deps kernel guest guest-test check run bench shell rust-analyzer docs series series-steps export-patches reset-tree \
	clean cache-clean host-test

all: check

deps:
	@$(S)/deps.sh

# Targets that build and then use the kernel run as one locked sequence
# (scripts/lib.sh, cpu_lock): another checkout sharing the kernel cache
# cannot change the tree between the kernel, module and QEMU steps.
LOCKED = flock $${TMPDIR:-/tmp}/dmabuf-cpu.lock env DMABUF_CPU_LOCKED=1 bash -c
GUEST = $(S)/kernel.sh >/dev/null && $(S)/build-guest.sh $(OUT)

kernel: deps
	@$(S)/kernel.sh >/dev/null

guest: deps
	@$(LOCKED) '$(GUEST)'

check:
	@$(S)/check.sh

run: deps
	@$(LOCKED) '$(GUEST) && $(S)/run-demo.sh $(OUT)'

# dma_buf_get_memory() against dma_buf_map_attachment(): time and bytes
# (bench/dmabuf_bench.c), iommufd MAP_FILE by range count and revoke by
# importer count (`dmabuf-tool bench`), KVM fault-in (`dmabuf-tool
# kvm-bench`); on a production-config kernel (built the first time, in a
# tree of its own) and on the debug test kernel, side by side: tables,
# $(OUT)/bench/results.csv and plots (scripts/bench.sh).
bench: deps
	@$(LOCKED) '$(GUEST) && $(S)/bench.sh $(OUT)'

# An interactive shell in the guest (Ctrl-a x leaves QEMU).
shell: deps
	@$(LOCKED) '$(GUEST) && $(S)/qemu.sh shell \
		$$(cat $${DMABUF_CACHE:-$$HOME/.cache/dmabuf-memory}/current-build)/arch/x86/boot/bzImage \
		$(OUT)/initramfs.cpio.gz $(OUT)/shell'

# Only some of the guest's dmabuf-tool tests, e.g. `make guest-test
# T=udmabuf,bufinfo`, judged like make check's (results in out/guest-test).
guest-test: deps
	@$(LOCKED) '$(GUEST) && DMABUF_TESTS=$(T) $(S)/qemu.sh tests \
		$$(cat $${DMABUF_CACHE:-$$HOME/.cache/dmabuf-memory}/current-build)/arch/x86/boot/bzImage \
		$(OUT)/initramfs.cpio.gz $(OUT)/guest-test 900; \
		python3 $(S)/analyze.py $(OUT)/guest-test --no-kunit --expect bind,$(T),kmemleak \
		--kunit-py $${DMABUF_CACHE:-$$HOME/.cache/dmabuf-memory}/linux/tools/testing/kunit/kunit.py'

# rust-project.json for rust-analyzer: the kernel's crates from the build
# tree, kernel::dma_buf from rust/kernel/dma_buf/ of this repository, and
# the out-of-tree crates of ./Kbuild (scripts/rust-analyzer.py).
rust-analyzer: deps
	@$(LOCKED) '$(S)/kernel.sh >/dev/null && \
		$(MAKE) -s LLVM=-19 -C $$(cat $${DMABUF_CACHE:-$$HOME/.cache/dmabuf-memory}/current-build) \
			M=$(CURDIR) rust-analyzer && \
		python3 $(S)/rust-analyzer.py $(CURDIR) \
			$${DMABUF_CACHE:-$$HOME/.cache/dmabuf-memory}/linux $(OUT)/rust-analyzer'

host-test:
	cargo test --workspace

# The kernel pages the series touches (dma-buf-memory.rst, the KVM and
# iommufd uAPI, dma-buf.rst), rendered by Sphinx with the kernel's own
# conf.py and kernel-doc: $(OUT)/docs/html/index.html. Fails on a warning.
docs: deps
	@$(LOCKED) '$(S)/kernel.sh --tree-only >/dev/null && $(S)/docs.sh $(OUT)/docs && \
		echo "$(OUT)/docs/html/index.html"'

# Patch workflow (see README): commit in the cached kernel tree, then
# export-patches writes those commits back to patches/.
export-patches:
	@$(S)/series.sh export

reset-tree:
	@$(S)/series.sh reset

# The full upstream-style series (C patches + Rust overlay as a patch +
# cover letter) in $(OUT)/series.
series:
	@$(S)/series.sh full $(OUT)/series

# Every step of the full series builds (incremental builds of each patch in
# a tree of their own; slow, not part of make check).
series-steps:
	@$(S)/series.sh steps $(OUT)/series

clean:
	rm -rf $(OUT) target src/*.o src/*.ko src/*.mod* src/.*.cmd .*.cmd \
		Module.symvers modules.order src/modules.order \
		$(foreach d,samples/c samples/rust bench tests/stress,$(d)/*.o $(d)/*.ko $(d)/*.mod* $(d)/.*.cmd)

# Removes the kernel source and build trees (a cold build follows).
cache-clean:
	rm -rf $${DMABUF_CACHE:-$$HOME/.cache/dmabuf-memory}
