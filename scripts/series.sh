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
#   series.sh steps DIR  the full series, then every step of it built in
#                        turn (pristine first) in a worktree and build tree
#                        of its own; not part of make check
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
	# UNKNOWN_COMMIT_ID: the tree has no upstream history for Fixes: ids.
	PATH=/usr/bin:$PATH ./scripts/checkpatch.pl --strict --quiet \
		--ignore FILE_PATH_CHANGES,UNKNOWN_COMMIT_ID \
		$(ls "$dir"/*.patch | grep -v /0000-cover-letter) ||
		die "checkpatch --strict found problems (above)"
	for f in $(git diff --name-only --diff-filter=A pristine series) \
		 $(for o in $overlay; do echo "rust/${o#./}"; done); do
		sec=$(./scripts/get_maintainer.pl --no-git --no-rolestats --sections -f "$f" 2>/dev/null | sed -n 1p)
		[ -n "$sec" ] && [ "$sec" != "THE REST" ] || die "no MAINTAINERS section covers $f"
	done
	log "checkpatch --strict: clean; every new file has a MAINTAINERS section"
	;;
steps)
	# Every step of the full series builds: apply its patches one at a
	# time onto pristine in a worktree of their own and build each with
	# the test kernel's config, incrementally, in a build tree of their
	# own (so the main tree and its build are left as they are).
	dir=${2:?usage: series.sh steps DIR}
	"$0" full "$dir"
	B="$(cat "$CACHE/current-build")"
	SB="$CACHE/build-steps"
	wt="$CACHE/steps-tree"
	git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
	git worktree prune
	git worktree add -q --detach "$wt" pristine
	mkdir -p "$SB"
	cp "$B/.config" "$SB/.config"
	t0=$(date +%s)
	log "steps: pristine"
	(cd "$wt" && "${KMAKE[@]}" -s O="$SB" olddefconfig all >"$SB/build.log" 2>&1) ||
		{ tail -n 30 "$SB/build.log" >&2; die "pristine does not build"; }
	n=0
	for p in $(ls "$dir"/*.patch | grep -v /0000-cover-letter); do
		n=$((n + 1))
		s=$(date +%s)
		git -C "$wt" -c user.name=build -c user.email=build@localhost am -q "$p" ||
			{ git -C "$wt" am --abort; die "step $n does not apply: $p"; }
		(cd "$wt" && "${KMAKE[@]}" -s O="$SB" all >"$SB/build.log" 2>&1) ||
			{ tail -n 30 "$SB/build.log" >&2; die "step $n does not build: $(basename "$p")"; }
		log "steps: $n builds ($(( $(date +%s) - s ))s) $(basename "$p")"
	done
	git worktree remove --force "$wt"
	log "steps: all $n steps build, $(( $(date +%s) - t0 ))s in all (build tree $SB)"
	;;
*)
	die "usage: series.sh export|reset|full DIR|steps DIR"
	;;
esac
