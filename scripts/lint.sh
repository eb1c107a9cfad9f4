#!/usr/bin/env bash
# Style and lint checks, reported as TAP: checkpatch --strict on the C patch
# series and the C modules, rustfmt (kernel config) on the kernel-side Rust,
# clippy-clean module build (CLIPPY=1), cargo fmt and cargo clippy on the
# host crates. Usage: lint.sh OUTDIR (logs go there).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

out=$(realpath -m "$1")
mkdir -p "$out"
TREE="$CACHE/linux"
KBUILD=${KBUILD:-$(cat "$CACHE/current-build")}
n=0 bad=0

check() {	# check DESCRIPTION LOG CMD...
	local desc=$1 logf=$out/$2
	shift 2
	n=$((n + 1))
	if "$@" >"$logf" 2>&1; then
		echo "ok $n - $desc"
	else
		bad=$((bad + 1))
		echo "not ok $n - $desc"
		sed 's/^/# /' "$logf" | head -n 40
	fi
}

# checkpatch's spdxcheck needs Debian's python3 (python3-ply), not pyenv's.
cp_strict() { PATH=/usr/bin:$PATH "$TREE/scripts/checkpatch.pl" --strict --quiet "$@"; }

# New files in a patch trip FILE_PATH_CHANGES ("does MAINTAINERS need
# updating?"); `make series` checks MAINTAINERS coverage directly instead.
# UNKNOWN_COMMIT_ID: Debian's source has no upstream history in which
# checkpatch could look up the commits that Fixes: tags name.
check "checkpatch --strict: the $(ls "$TOP"/patches/*.patch | wc -l) patches of the series" \
	checkpatch-patches.log cp_strict --ignore FILE_PATH_CHANGES,UNKNOWN_COMMIT_ID \
	"$TOP"/patches/*.patch
check "checkpatch --strict: the C modules (samples/c, bench, tests/stress)" checkpatch-modules.log \
	cp_strict --no-tree -f $(cd "$TOP" && git ls-files --full-name -- 'samples/c/*.[ch]' 'bench/*.c' \
		'tests/stress/*.c' |
		sed "s|^|$TOP/|")

# kernel-doc: files the series adds are warning-free; files it changes have
# no more warnings than in the pristine tree.
kdoc() {
	local f new old rc=0
	cd "$TREE" || return 1
	for f in $(git diff --name-only --diff-filter=A pristine series -- '*.c' '*.h'); do
		new=$(scripts/kernel-doc -none -Wall "$f" 2>&1)
		[ -z "$new" ] || { echo "$f:"; echo "$new"; rc=1; }
	done
	for f in $(git diff --name-only --diff-filter=M pristine series -- '*.c' '*.h'); do
		new=$(scripts/kernel-doc -none -Wall "$f" 2>&1 | wc -l)
		old=$(git show "pristine:$f" > "$out/kdoc-old.${f##*.}" &&
			scripts/kernel-doc -none -Wall "$out/kdoc-old.${f##*.}" 2>&1 | wc -l)
		[ "$new" -le "$old" ] || { echo "$f: $old -> $new kernel-doc warnings"; rc=1; }
	done
	return $rc
}
check "kernel-doc -Wall: no new warning in the files the series adds or changes" kernel-doc.log kdoc

# The pages the series touches, rendered by Sphinx with the kernel's conf.py
# (scripts/docs.sh: fails on any warning), then read back: what the series
# exports and the uAPI it adds must be in them.
check "sphinx-build -W: the kernel pages the series touches render with no warning" \
	docs.log "$TOP/scripts/docs.sh" "$out/docs" "$TREE"
html_text() { cat "$out"/docs/html/*/*.html "$out"/docs/html/*/*/*.html 2>/dev/null; }
docs_exports() {	# every function the series exports from dma-buf has its entry
	local s rc=0 ids
	[ -f "$out/docs/html/index.html" ] || { echo "not rendered"; return 1; }
	ids=$(html_text | grep -o 'id="c\.[A-Za-z0-9_]*"')
	for s in $(git -C "$TREE" diff pristine series -- drivers/dma-buf |
		grep -oP '^\+EXPORT_SYMBOL\w*\(\K\w+'); do
		if grep -qx "id=\"c\.$s\"" <<<"$ids"; then echo "$s: documented"; else echo "$s: no entry"; rc=1; fi
	done
	return $rc
}
check "rendered docs: each function the series exports from drivers/dma-buf has a kernel-doc entry" \
	docs-exports.log docs_exports
docs_uapi() {	# every #define and struct field the series adds to the uAPI is described
	local s rc=0 text
	[ -f "$out/docs/html/index.html" ] || { echo "not rendered"; return 1; }
	text=$(html_text | sed 's/<[^>]*>//g')
	for s in $(git -C "$TREE" diff pristine series -- 'include/uapi/*' 'arch/*/include/uapi/*' |
		sed -nE 's/^\+#define[[:space:]]+([A-Z0-9_]+).*/\1/p; s/^\+[[:space:]]+__[us][0-9]+[[:space:]]+([a-z0-9_]+);.*/\1/p' |
		grep -v '^pad'); do
		if grep -qw -- "$s" <<<"$text"; then echo "$s: described"; else echo "$s: not in the pages"; rc=1; fi
	done
	return $rc
}
check "rendered docs: each #define and field the series adds to the uAPI is described" \
	docs-uapi.log docs_uapi

rust_files=$(cd "$TOP" && ls rust/kernel/dma_buf/*.rs src/*.rs tests/kunit/*.rs tests/compile-fail/*.rs \
	samples/rust/*.rs)
check "rustfmt (kernel .rustfmt.toml): kernel::dma_buf, the module, its tests, the Rust samples" \
	rustfmt.log sh -c "cd '$TOP' && rustfmt --check --edition 2021 --config-path '$TREE/.rustfmt.toml' $(echo $rust_files)"
# rustfmt leaves comments alone: the kernel's 100-column limit for them too.
check "no line over 100 columns in the same Rust files (comments included)" \
	rust-columns.log sh -c "cd '$TOP' && ! awk 'length > 100 { print FILENAME \":\" FNR; n++ } END { exit !n }' $(echo $rust_files)"

clippy_module() {
	cpu_lock
	touch "$TOP"/src/dmabuf_memory.rs "$TOP"/samples/rust/*.rs
	"${KMAKE[@]}" -C "$KBUILD" M="$TOP" CLIPPY=1 modules 2>&1 | tee /dev/stderr |
		grep -E '^(warning|error)' && return 1
	return 0
}
check "the out-of-tree modules build with CLIPPY=1 and no warning" clippy-module.log clippy_module
# What safe code must not be able to write: each file of tests/compile-fail/ is a module that
# must fail to build with exactly one error, the one its `//! expect:` line names.
compile_fail() {	# compile_fail FILE
	local f=$1 name dir expect rc=0
	name=$(basename "$f" .rs)
	expect=$(sed -n 's|^//! expect: ||p' "$f")
	[ -n "$expect" ] || { echo "$f: no '//! expect:' line"; return 1; }
	cpu_lock
	dir=$(mktemp -d)
	cp "$f" "$dir/$name.rs"
	echo "obj-m := $name.o" > "$dir/Kbuild"
	"${KMAKE[@]}" -C "$KBUILD" M="$dir" modules >"$dir/log" 2>&1
	if ! grep -q '^error' "$dir/log"; then
		echo "$f: compiled, but must not"
		rc=1
	elif ! grep -qF -- "$expect" "$dir/log" ||
		! grep -q 'aborting due to 1 previous error' "$dir/log"; then
		echo "$f: expected exactly one error, $expect"
		rc=1
	fi
	cat "$dir/log"
	rm -rf "$dir"
	return $rc
}
for f in "$TOP"/tests/compile-fail/*.rs; do
	check "compile-fail: $(sed -n '3s|^//! ||p' "$f")" "compile-fail-$(basename "$f" .rs).log" \
		compile_fail "$f"
done
check "kernel::dma_buf: no compiler or clippy warning in the last kernel build" kernel-warnings.log \
	sh -c "! grep -B2 -A8 -E '^(warning|error)' '$KBUILD/build.log' | grep -A10 -B2 'dma_buf\|dma-buf'"
check "cargo fmt --check (host crates)" cargo-fmt.log sh -c "cd '$TOP' && cargo fmt --all --check"
check "cargo clippy -D warnings (host crates, all targets)" cargo-clippy.log \
	sh -c "cd '$TOP' && cargo clippy --quiet --workspace --all-targets -- -D warnings"

echo "1..$n"
[ $bad = 0 ]
