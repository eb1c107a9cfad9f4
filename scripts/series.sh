#!/usr/bin/env bash
# The patch series workflow.
#   series.sh export     write the cached tree's commits (pristine..series)
#                        back to patches/ as git format-patch files
#   series.sh reset      drop local commits/changes in the cached tree; the
#                        next build re-applies patches/
#   series.sh full DIR   the upstream-style series in DIR: patches/ + the Rust
#                        overlay as one more patch + a cover letter, checked
#                        with checkpatch --strict
set -euo pipefail
. "$(dirname "$0")/lib.sh"
TREE="$CACHE/linux"
[ -d "$TREE/.git" ] || die "no kernel tree yet: run make kernel"
cd "$TREE"
fp=(git format-patch -q --no-signature --zero-commit --no-numbered --keep-subject)

case "${1:-}" in
export)
	[ -z "$(git status --porcelain --untracked-files=no)" ] ||
		die "uncommitted changes in $TREE: commit them first"
	rm -f "$TOP"/patches/*.patch
	git format-patch -q --no-signature --zero-commit -o "$TOP/patches" pristine..series
	series_hash=$(cat "$TOP"/patches/*.patch | sha256sum | cut -c1-16)
	echo "$series_hash $(git rev-parse HEAD)" > .git/dmabuf-series
	log "exported $(ls "$TOP"/patches/*.patch | wc -l) patches to patches/"
	;;
reset)
	git reset -q --hard pristine
	git checkout -q series
	rm -f .git/dmabuf-series
	log "tree reset to pristine; the next build applies patches/"
	;;
full)
	dir=${2:?usage: series.sh full DIR}
	"$TOP/scripts/kernel.sh" >/dev/null	# tree = pristine + patches/ + overlay
	rm -rf "$dir" && mkdir -p "$dir"
	tmp=dmabuf-full-series
	git branch -q -f "$tmp" HEAD
	wt=$(mktemp -d)
	git worktree add -q "$wt" "$tmp"
	overlay=$(cd "$TOP/rust" && find . -type f ! -name README.md | sort)
	if [ -n "$overlay" ]; then
		(cd "$TOP/rust" && cp --parents $overlay "$wt/rust/")
		git -C "$wt" add -A rust
		git -C "$wt" -c user.name="dma-buf memory project" \
			-c user.email="dmabuf-memory@localhost" commit -q -s \
			-F "$TOP/kernel/overlay-commit.txt"
	fi
	git -C "$wt" format-patch -q --no-signature --zero-commit --cover-letter \
		-o "$dir" pristine.."$tmp"
	python3 - "$dir"/0000-cover-letter.patch "$TOP/kernel/cover-letter.txt" <<'PY'
import sys
p, src = sys.argv[1], sys.argv[2]
subject, _, blurb = open(src).read().partition('\n\n')
s = open(p).read().replace('*** SUBJECT HERE ***', subject.strip())
open(p, 'w').write(s.replace('*** BLURB HERE ***', blurb.strip()))
PY
	git worktree remove --force "$wt"
	git branch -q -D "$tmp"
	log "series: $(ls "$dir" | wc -l) files in $dir"
	./scripts/checkpatch.pl --strict --quiet $(ls "$dir"/*.patch | grep -v /0000-cover-letter) ||
		die "checkpatch --strict found problems (above)"
	log "checkpatch --strict: clean"
	;;
*)
	die "usage: series.sh export|reset|full DIR"
	;;
esac
