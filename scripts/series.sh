#!/usr/bin/env bash
# The patch series workflow.
#   series.sh export     write the cached tree's commits (pristine..series)
#                        back to patches/ as git format-patch files
#   series.sh reset      drop local commits/changes in the cached tree; the
#                        next build re-applies patches/
#   series.sh full DIR   the upstream-style series in DIR: patches/ with the
#                        Rust overlay squashed into the patch that declares
#                        its module, + a cover letter, checked
#                        with checkpatch --strict
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cpu_lock
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
	git worktree prune
	wt=$(mktemp -d)
	git worktree add -q "$wt" "$tmp"
	overlay=$(cd "$TOP/rust" && find . -type f ! -name README.md | sort)
	if [ -n "$overlay" ]; then
		(cd "$TOP/rust" && cp --parents $overlay "$wt/rust/")
		# The overlay belongs to the patch that declares its module in
		# rust/kernel/lib.rs: squash it there so every patch builds.
		target=$(git -C "$wt" log --format=%s -1 -S'pub mod dma_buf;' \
			pristine..HEAD -- rust/kernel/lib.rs)
		[ -n "$target" ] || die "no patch declares the overlay's module in rust/kernel/lib.rs"
		git -C "$wt" add -A -f rust
		git -C "$wt" commit -q -m "fixup! $target"
		GIT_SEQUENCE_EDITOR=true git -C "$wt" rebase -q -i --autosquash pristine
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
	# checkpatch's "does MAINTAINERS need updating?" fires for every new
	# file; what it asks is checked directly below: each file the series
	# adds must belong to a MAINTAINERS section.
	PATH=/usr/bin:$PATH ./scripts/checkpatch.pl --strict --quiet --ignore FILE_PATH_CHANGES \
		$(ls "$dir"/*.patch | grep -v /0000-cover-letter) ||
		die "checkpatch --strict found problems (above)"
	for f in $(git diff --name-only --diff-filter=A pristine series) \
		 $(for o in $overlay; do echo "rust/${o#./}"; done); do
		sec=$(./scripts/get_maintainer.pl --no-git --no-rolestats --sections -f "$f" 2>/dev/null | sed -n 1p)
		[ -n "$sec" ] && [ "$sec" != "THE REST" ] || die "no MAINTAINERS section covers $f"
	done
	log "checkpatch --strict: clean; every new file has a MAINTAINERS section"
	;;
*)
	die "usage: series.sh export|reset|full DIR"
	;;
esac
