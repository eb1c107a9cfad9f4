# Shared helpers for the project's scripts. Sourced, not run.
# shellcheck shell=bash

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${DMABUF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmabuf-memory}
export PATH="$HOME/.cargo/bin:$PATH"
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
# CLIPPY=1: every Rust object of the kernel and the modules goes through clippy.
# DMABUF_JOBS: how many jobs (check.sh's stages beside a QEMU run take one).
KMAKE=(make LLVM=-19 CLIPPY=1 -j"${DMABUF_JOBS:-$(nproc)}")

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# One kernel build or QEMU run at a time on this 2-core machine, and one
# user of the shared kernel tree in the cache at a time: every such step, and
# every whole run (make check, make bench, ...), holds this lock, so that
# checkouts working in parallel wait for each other instead of swapping the
# tree's series or Rust overlay under each other's build. The lock is taken
# once per run: the processes it starts inherit it (DMABUF_CPU_LOCKED).
LOCKFILE="${TMPDIR:-/tmp}/dmabuf-cpu.lock"
cpu_lock() {
	[ -z "${DMABUF_CPU_LOCKED:-}" ] || return 0
	exec 9>"$LOCKFILE"
	flock 9
	export DMABUF_CPU_LOCKED=1
}
