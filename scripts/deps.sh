#!/usr/bin/env bash
# Install what building and testing need. Idempotent: a few seconds when
# everything is present. Never edits the system's apt sources.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BINDGEN_VERSION=0.72.1

PKGS=(clang-19 lld-19 llvm-19 libclang-19-dev flex bison bc libelf-dev
      libssl-dev cpio kmod dwarves rsync busybox-static qemu-system-x86
      libcap-dev python3 python3-ply python3-git xz-utils git make gcc libc6-dev musl-tools
      python3-sphinx graphviz)

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustup >/dev/null; then
	die "rustup not found: this project needs the machine's rustup toolchain"
fi
if ! rustup component list --installed | grep -q '^rust-src'; then
	log "rustup: adding rust-src"
	rustup component add rust-src
fi
if ! rustup target list --installed | grep -q '^x86_64-unknown-linux-musl'; then
	log "rustup: adding x86_64-unknown-linux-musl (static guest tools)"
	rustup target add x86_64-unknown-linux-musl
fi

# bindgen-cli compiles (CPU) while apt downloads and unpacks (network, disk):
# side by side on a bare machine. It loads libclang at run time, so it needs
# none of the packages below to build.
bindgen_pid=
if ! bindgen --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
	log "cargo: installing bindgen-cli $BINDGEN_VERSION (in the background)"
	cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION" &
	bindgen_pid=$!
fi

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	log "apt: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -n "$bindgen_pid" ]; then
	wait "$bindgen_pid" || die "cargo install bindgen-cli $BINDGEN_VERSION failed"
fi
log "deps: ok ($(rustc --version), $(bindgen --version), clang-19 $(clang-19 -dumpversion))"
