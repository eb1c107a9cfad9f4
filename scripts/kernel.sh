#!/usr/bin/env bash
# Build the patched kernel in the cache, incrementally.
#
#   $CACHE/linux          git tree: tag `pristine` = Debian's source, branch
#                         `series` = pristine + patches/*.patch, and the Rust
#                         overlay (rust/ of this repo) copied in as new files.
#   $CACHE/build-<kver>   O= build tree, one per kernel version; .config-key
#                         records the config fragments it was configured from.
#   $CACHE/build-<kver>-production  the same for DMABUF_FLAVOUR=production:
#                         kernel/production.fragment merged after the test
#                         kernel's fragment (make bench's second kernel).
#   $CACHE/build-<kver>/.stamp  hash of version + series + overlay + config of
#                         the last good build: equal means nothing to do.
#
# Prints the path of the build tree on stdout; with --tree-only, applies the
# series and the overlay, skips configuring and building, and prints the
# source tree's path.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Held from the series to the build: the tree is shared by every checkout.
cpu_lock
"$TOP/scripts/fetch-kernel.sh"
TREE="$CACHE/linux"
FLAVOUR=${DMABUF_FLAVOUR:-test}
FRAGMENTS=("$TOP/kernel/config.fragment")
case "$FLAVOUR" in
test) suffix= ;;
production) FRAGMENTS+=("$TOP/kernel/production.fragment") suffix=-production ;;
*) die "DMABUF_FLAVOUR=$FLAVOUR: test or production" ;;
esac
cd "$TREE"

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
overlay_files() { (cd "$TOP/rust" && find . -type f ! -name README.md | sort); }

# --- 1. the patch series -------------------------------------------------
series_hash=$(hash_of "$TOP"/patches/*.patch)
applied=$(cat .git/dmabuf-series 2>/dev/null || true)
if [ "$applied" != "$series_hash $(git rev-parse HEAD)" ]; then
	if [ -n "$applied" ] && [ "${applied#* }" != "$(git rev-parse HEAD)" ]; then
		die "$TREE has commits that are not in patches/ (HEAD moved since the series was applied).
  Export them first:  make export-patches   (or discard them: make reset-tree)"
	fi
	if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
		die "$TREE has uncommitted changes to tracked files; commit them and run
  make export-patches, or discard them with make reset-tree"
	fi
	log "series: applying $(ls "$TOP"/patches/*.patch | wc -l) patches onto pristine"
	git checkout -q series
	git reset -q --hard pristine
	git -c user.name=build -c user.email=build@localhost am -q --committer-date-is-author-date \
		"$TOP"/patches/*.patch || { git am --abort; die "patch series does not apply"; }
	echo "$series_hash $(git rev-parse HEAD)" > .git/dmabuf-series
fi

# --- 2. the Rust overlay: new files only ------------------------------------
overlay_hash=$(cd "$TOP/rust" && overlay_files | xargs -r sha256sum | sha256sum | cut -c1-16)
# Files a previous overlay added and this one no longer has go away.
for f in $(git ls-files --others -- rust/); do
	[ -f "$TOP/$f" ] || { log "overlay: removing stale $f"; rm -f "$f"; }
done
for f in $(overlay_files); do
	if git cat-file -e "HEAD:rust/${f#./}" 2>/dev/null; then
		die "overlay file rust/${f#./} exists in the kernel tree: change it with a patch"
	fi
	mkdir -p "rust/$(dirname "$f")"
	cmp -s "$TOP/rust/$f" "rust/$f" || cp "$TOP/rust/$f" "rust/$f"
done

if [ "${1:-}" = --tree-only ]; then
	echo "$TREE"
	exit 0
fi

# --- 3. config ------------------------------------------------------------
# One build tree per kernel version. A changed fragment regenerates .config
# in place; kbuild then rebuilds only what depends on the options that
# changed (include/config/ + fixdep), and every object whose flags changed.
kver=$(make -s kernelversion)
config_key=$(printf '%s %s' "$kver" "$(hash_of "${FRAGMENTS[@]}")" | sha256sum | cut -c1-12)
B="$CACHE/build-$kver$suffix"
if [ "$(cat "$B/.config-key" 2>/dev/null)" != "$config_key" ] || [ ! -f "$B/.config" ]; then
	log "config: tinyconfig + ${FRAGMENTS[*]#$TOP/} in $B"
	"${KMAKE[@]}" -s rustavailable >/dev/null ||
		die "make LLVM=-19 rustavailable failed: run scripts/deps.sh"
	mkdir -p "$B"
	[ -f "$B/.config" ] && cp "$B/.config" "$B/.config.prev"
	"${KMAKE[@]}" -s O="$B" tinyconfig >/dev/null
	KCONFIG_CONFIG="$B/.config" scripts/kconfig/merge_config.sh -m -O "$B" \
		"$B/.config" "${FRAGMENTS[@]}" >/dev/null
	"${KMAKE[@]}" -s O="$B" olddefconfig >/dev/null
	bad=0
	while IFS= read -r line; do
		case "$line" in CONFIG_*=*) ;; *) continue ;; esac
		opt=${line%%=*} val=${line#*=}
		if [ "$val" = n ]; then
			grep -qx "$opt=y\|$opt=m" "$B/.config" && { echo "  $opt: wanted n" >&2; bad=1; }
		else
			grep -qx "$line" "$B/.config" || { echo "  $opt: wanted $val, got $(grep "^$opt=\|# $opt " "$B/.config" || echo unset)" >&2; bad=1; }
		fi
	# The last fragment to set an option decides it.
	done < <(cat "${FRAGMENTS[@]}" | awk -F= '/^CONFIG_/ { v[$1] = $0 } END { for (o in v) print v[o] }')
	if [ $bad = 1 ]; then
		[ -f "$B/.config.prev" ] && mv "$B/.config.prev" "$B/.config"
		die "Kconfig refused part of ${FRAGMENTS[*]#$TOP/} (see above)"
	fi
	echo "$config_key" > "$B/.config-key"
	for old in "$CACHE"/build-*; do	# trees of other kernel versions
		case "$old" in "$CACHE/build-$kver" | "$CACHE/build-$kver-"*) ;; *) rm -rf "$old" ;; esac
	done
fi

# --- 4. build ---------------------------------------------------------------
stamp=$(printf '%s\n' "$(cat .pristine-version)" "$series_hash" "$overlay_hash" "$config_key" \
	"${KMAKE[*]}" | sha256sum | cut -c1-16)
if [ "$(cat "$B/.stamp" 2>/dev/null)" = "$stamp" ] && [ -f "$B/arch/x86/boot/bzImage" ]; then
	log "kernel: up to date ($(cat .pristine-version), series $series_hash)"
else
	log "kernel: building $kver in $B (LLVM=-19, $(nproc) jobs)"
	"${KMAKE[@]}" -s O="$B" all headers >"$B/build.log" 2>&1 ||
		{ tail -n 40 "$B/build.log" >&2; die "kernel build failed (log: $B/build.log)"; }
	echo "$stamp" > "$B/.stamp"
	log "kernel: built $(cat .pristine-version) + series $series_hash"
fi
echo "$B" > "$CACHE/current-build$suffix"
echo "$B"
