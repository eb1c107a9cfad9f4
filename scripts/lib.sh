# Shared helpers for the project's scripts. Sourced, not run.
# shellcheck shell=bash

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${DMABUF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmabuf-memory}
export PATH="$HOME/.cargo/bin:$PATH"
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
# CLIPPY=1: every Rust object of the kernel and the modules goes through clippy.
KMAKE=(make LLVM=-19 CLIPPY=1 -j"$(nproc)")

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# One kernel build or QEMU run at a time on this 2-core machine: every such
# step holds this lock (helpers and parallel shells wait for each other).
cpu_lock() {
	exec 9>"${TMPDIR:-/tmp}/dmabuf-cpu.lock"
	flock 9
}
