#!/usr/bin/env bash
# Render the series' kernel documentation to HTML with the kernel's own Sphinx
# set-up (Documentation/conf.py, its extensions, kernel-doc), as
# `make htmldocs SPHINXDIRS=...` would, but only for the pages the series
# touches: the .rst files it changes and every page that pulls kernel-doc
# from a C file it adds or changes (seconds, where the whole tree has
# thousands of pages).
#
# Usage: docs.sh OUTDIR [TREE]
#   OUTDIR/html/index.html   the rendered pages
#   OUTDIR/sphinx.log        what sphinx-build printed (its warnings)
#   OUTDIR/pages             the pages rendered, one per line
# Fails on any Sphinx or kernel-doc warning (-W), as `make htmldocs` with
# SPHINXOPTS=-W would. TREE defaults to the cache's kernel tree (branch
# `series`); pristine..HEAD of TREE is "the series".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=$(realpath -m "$1")
TREE=$(realpath "${2:-$CACHE/linux}")
# Debian's Sphinx, run by Debian's python3 (pyenv's has no Sphinx).
SPHINX=/usr/bin/sphinx-build
[ -x "$SPHINX" ] || die "$SPHINX not found: run scripts/deps.sh"

cd "$TREE"
{
	git diff --name-only pristine HEAD -- 'Documentation/*.rst' | grep -v '/index\.rst$' || true
	for f in $(git diff --name-only --diff-filter=AM pristine HEAD -- '*.c' '*.h'); do
		git grep -l -e "kernel-doc:: $f\$" HEAD -- 'Documentation/*.rst' | sed 's/^HEAD://' || true
	done
} | sort -u > "$out.pages.tmp" 2>/dev/null || { mkdir -p "$out"; false; }
rm -rf "$out"
mkdir -p "$out/src/Documentation"
mv "$out.pages.tmp" "$out/pages"

# The source directory holds only these pages, at their own paths, and an
# index that lists them. The kernel's extensions look for it below a
# directory named Documentation, next to MAINTAINERS.
src=$out/src/Documentation
ln -s "$TREE/MAINTAINERS" "$out/src/MAINTAINERS"
{
	echo "The dma-buf memory series: the pages it touches"
	echo "==============================================="
	echo
	echo ".. toctree::"
	echo "   :maxdepth: 1"
	echo
} > "$src/index.rst"
while read -r page; do
	rel=${page#Documentation/}
	mkdir -p "$src/$(dirname "$rel")"
	cp "$page" "$src/$rel"
	echo "   ${rel%.rst}" >> "$src/index.rst"
done < "$out/pages"

# kernel-doc paths in the pages are relative to Documentation/ of the tree
# (conf.py: kerneldoc_srctree = ".."), hence the directory.
cd "$TREE/Documentation"
rc=0
srctree=$TREE PYTHONDONTWRITEBYTECODE=1 "$SPHINX" -q -W --keep-going -b html \
	-c "$TREE/Documentation" -d "$out/doctrees" "$src" "$out/html" >"$out/sphinx.log" 2>&1 || rc=$?
grep -v '^Using alabaster theme$' "$out/sphinx.log" >&2 || true
exit $rc
