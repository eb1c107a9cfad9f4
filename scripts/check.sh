#!/usr/bin/env bash
# `make check`: install what is missing, build the patched kernel, the module,
# the guest tools and the upstream selftests, run the host tests, boot QEMU,
# run every guest test, and print one final line "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/lib.sh"
# The whole run holds the lock: kernel, modules and boot see one tree.
cpu_lock

OUT=${DMABUF_OUT:-$TOP/out}
mkdir -p "$OUT"
declare -a TIMES
passed=0 failed=0 skipped=0
t0=$(date +%s)

stage() {	# stage NAME CMD...: run a stage, record its time, stop on failure
	local name=$1 s e rc
	shift
	s=$(date +%s)
	"$@"
	rc=$?
	e=$(date +%s)
	TIMES+=("$(printf '%-14s %5ss' "$name" $((e - s)))")
	if [ $rc != 0 ]; then
		log "stage '$name' failed (rc=$rc)"
		failed=$((failed + 1))
		finish
	fi
}

finish() {
	[ -z "$BESIDE" ] || collect
	log "stage times:"
	printf '  %s\n' "${TIMES[@]}" >&2
	log "total $(( $(date +%s) - t0 ))s"
	echo "$passed passed, $failed failed${skipped:+, $skipped skipped}"
	[ "$failed" = 0 ]
	exit $?
}

host_tests() {
	cargo test --workspace --quiet 2>&1 | tee "$OUT/cargo-test.log" | grep -E '^(test result|error|failures)' || true
	local p f
	p=$(awk '/^test result:/ { s += $4 } END { print s + 0 }' "$OUT/cargo-test.log")
	f=$(awk '/^test result:/ { s += $6 } END { print s + 0 }' "$OUT/cargo-test.log")
	log "host cargo test: $p passed, $f failed"
	passed=$((passed + p)) failed=$((failed + f))
	grep -q '^test result:' "$OUT/cargo-test.log" || { failed=$((failed + 1)); return 1; }

	# The runner's own tests (can it tell a failing guest run from a good
	# one?), make rust-analyzer's and make bench's report's.
	DMABUF_KUNIT_PY="$CACHE/linux/tools/testing/kunit/kunit.py" \
		python3 -m unittest "$TOP/scripts/test_analyze.py" "$TOP/scripts/test_rust_analyzer.py" \
		"$TOP/scripts/test_bench_report.py" \
		> "$OUT/test-analyze.log" 2>&1
	local ran bad sk
	ran=$(sed -n 's/^Ran \([0-9]*\) tests\? .*/\1/p' "$OUT/test-analyze.log")
	bad=$(grep -oE '(failures|errors)=[0-9]+' "$OUT/test-analyze.log" | cut -d= -f2 | paste -sd+ | bc)
	sk=$(grep -oE 'skipped=[0-9]+' "$OUT/test-analyze.log" | cut -d= -f2)
	ran=${ran:-0} bad=${bad:-0} sk=${sk:-0}
	log "script self-tests: $((ran - bad - sk)) passed, $bad failed, $sk skipped"
	[ "$ran" -gt 0 ] || { tail -n 20 "$OUT/test-analyze.log" >&2; bad=1; }
	passed=$((passed + ran - bad - sk)) failed=$((failed + bad)) skipped=$((skipped + sk))
	[ "$f" = 0 ] && [ "$bad" = 0 ]
}

# guest_run MODE OUTDIR EXPECT TIMEOUT [ANALYZE-ARGS]: boot the guest in MODE,
# judge its results (every section in EXPECT must be there) and count them.
guest_run() {
	local mode=$1 dir=$2 expect=$3 tmo=$4 rc line
	shift 4
	"$TOP/scripts/qemu.sh" "$mode" "$KBUILD/arch/x86/boot/bzImage" "$OUT/initramfs.cpio.gz" \
		"$dir" "$tmo"
	log "guest ($mode): qemu exited rc=$?; analysing $dir"
	python3 "$TOP/scripts/analyze.py" "$dir" --expect "$expect" "$@" \
		--kunit-py "$CACHE/linux/tools/testing/kunit/kunit.py" | tee "$dir/summary.txt"
	rc=${PIPESTATUS[0]}
	line=$(grep '^GUEST ' "$dir/summary.txt")
	[[ $line =~ passed=([0-9]+)\ failed=([0-9]+)\ skipped=([0-9]+) ]] || { failed=$((failed + 1)); return 1; }
	passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
	skipped=$((skipped + BASH_REMATCH[3]))
	return 0	# counted above; failures are reported in the final line
}

# beside NAME:FUNC...: run these stages one after another in the background,
# niced and one job at a time (make, cargo), beside the next foreground
# stage; `collect` waits for them, shows their output and counts them.
BESIDE= BESIDE_PID=
beside() {
	local st
	BESIDE="$*"
	for st; do rm -f "$OUT/${st%%:*}.counts"; done	# no count of an earlier run
	(
		renice -n 10 -p $BASHPID >/dev/null
		export DMABUF_JOBS=1 CARGO_BUILD_JOBS=1
		for st in "$@"; do
			passed=0 failed=0 skipped=0
			s=$(date +%s)
			"${st#*:}" > "$OUT/${st%%:*}.stage.log" 2>&1
			rc=$?
			echo "$passed $failed $skipped $rc $(($(date +%s) - s))" > "$OUT/${st%%:*}.counts"
		done
	) &
	BESIDE_PID=$!
}

collect() {	# fails if a stage beside failed
	local st name p f sk rc secs bad=0
	wait "$BESIDE_PID"
	for st in $BESIDE; do
		name=${st%%:*}
		cat "$OUT/$name.stage.log" >&2
		read -r p f sk rc secs < "$OUT/$name.counts" || { p=0 f=1 sk=0 rc=1 secs=0; }
		passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + sk))
		TIMES+=("$(printf '%-14s %5ss (beside the next)' "$name" "$secs")")
		if [ "$rc" != 0 ]; then
			log "stage '$name' failed (rc=$rc)"
			failed=$((failed + 1)) bad=1
		fi
	done
	BESIDE=
	return $bad
}

fetch_kernel() { "$TOP/scripts/fetch-kernel.sh"; }

lint() {
	local p f
	"$TOP/scripts/lint.sh" "$OUT/lint" 2>/dev/null | tee "$OUT/lint.tap"
	p=$(grep -c '^ok ' "$OUT/lint.tap")
	f=$(grep -c '^not ok ' "$OUT/lint.tap")
	[ "$p" -gt 0 ] || f=$((f + 1))
	passed=$((passed + p)) failed=$((failed + f))
	return 0	# counted above
}

# Unpacking the kernel source into a git tree takes a minute of CPU and
# disk, installing packages mostly network: side by side when the fetch has
# what it runs (on a bare machine deps may have to install it first).
fetch_can_run() {
	local c
	for c in xz git tar make dpkg-deb apt-get; do command -v "$c" >/dev/null || return 1; done
}
if fetch_can_run; then
	beside fetch:fetch_kernel
	stage deps "$TOP/scripts/deps.sh"
	collect || finish
else
	stage deps "$TOP/scripts/deps.sh"
	stage fetch fetch_kernel
fi
stage kernel "$TOP/scripts/kernel.sh" >/dev/null
KBUILD=$(cat "$CACHE/current-build")
export KBUILD
stage module+tools "$TOP/scripts/build-guest.sh" "$OUT"
stage boot+tests guest_run check "$OUT/guest" \
	sanitizers,insmod,rmmod,stress,rmmod_stress,samples,bind,smoke,kvm,udmabuf,bufinfo,fuzz,failnth,bar_exporter,iommufd_selftest,iommufd_fail_nth_selftest,udmabuf_selftest,kvm_memslot_selftest,kvm_gmem_selftest,kmemleak \
	"${DMABUF_TIMEOUT:-2400}"
# The device stress test boots on its own, with single-threaded TCG: one
# host thread, one core. The host tests and lint take the other, niced so
# that the guest keeps its core.
beside host-tests:host_tests lint:lint
stage stress-boot guest_run stress "$OUT/guest-stress" bind,device_stress,kmemleak 600 --no-kunit
TIMES+=("(stress-boot's time includes the stages beside it)")
collect
finish
