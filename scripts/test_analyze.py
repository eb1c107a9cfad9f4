#!/usr/bin/env python3
"""Tests for scripts/analyze.py, the judge of a guest run.

Each test writes a small synthetic console.log / results.log pair (excerpts
of a real passing run, edited to provoke one behaviour) into a temp dir, runs
analyze.py as a subprocess, the way scripts/check.sh does, and checks its exit
status, its last line "GUEST passed=N failed=N skipped=N" and its FAIL lines.

Fixtures that hold KTAP need the kernel's kunit.py (analyze.py hands KTAP to
"kunit.py parse"); point DMABUF_KUNIT_PY at it, else those tests are skipped:

  DMABUF_KUNIT_PY=.../linux/tools/testing/kunit/kunit.py \\
      python3 -m unittest scripts/test_analyze.py -v

Each kunit.py start costs a few hundred ms, so all fixtures are analysed
concurrently when the module is set up; each test waits for its own.
"""

import collections
import concurrent.futures
import functools
import os
import re
import subprocess
import sys
import tempfile
import unittest

ANALYZE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'analyze.py')
KUNIT_PY = os.environ.get('DMABUF_KUNIT_PY', '')
HAVE_KUNIT = bool(KUNIT_PY) and os.path.isfile(KUNIT_PY)
needs_kunit = unittest.skipUnless(
    HAVE_KUNIT, 'DMABUF_KUNIT_PY is unset or not a file (the kernel\'s tools/testing/kunit/kunit.py)')

# --------------------------------------------------------------------------
# Fixture pieces, copied from a real passing run and shortened.

BOOT = [
    '[    0.000000] Linux version 7.3.4+ (root@build) #1 SMP PREEMPT_DYNAMIC',
    '[    0.000000] DMAR: IOMMU enabled',
    '[    8.124546] DMAR: dmar0: Using Queued invalidation',
    '[   13.756837] kmemleak: Kernel memory leak detector initialized (mem pool available: 15127)',
    '[   15.151788] Run /init as init process',
    '[   15.627984] dmabuf-test: guest check begins',
    '[   15.686318] dmabuf_memory: loading out-of-tree module taints kernel.',
    '[   15.716521] dmabuf_memory: loaded; range self-check: 4 ranges, 0x7000 bytes, 3 after merging',
]

KTAP_HEAD = [
    '[   15.718973] KTAP version 1',
    '[   15.719034] 1..1',
    '[   15.725547]     KTAP version 1',
    '[   15.725614]     # Subtest: dmabuf_memory_ranges',
    '[   15.725654]     # speed: normal',
    '[   15.725979]     1..3',
    '[   15.737221]     # validate_accepts_good_list_and_returns_total.speed: normal',
    '[   15.737627]     ok 1 validate_accepts_good_list_and_returns_total',
    '[   15.745505]     # validate_accepts_total_below_buffer_size.speed: normal',
    '[   15.745934]     ok 2 validate_accepts_total_below_buffer_size',
    '[   15.751994]     # validate_accepts_exactly_max_ranges.speed: normal',
]
KTAP_PASS = KTAP_HEAD + [
    '[   15.752371]     ok 3 validate_accepts_exactly_max_ranges',
    '[   16.116873] # dmabuf_memory_ranges: pass:3 fail:0 skip:0 total:3',
    '[   16.117202] # Totals: pass:3 fail:0 skip:0 total:3',
    '[   16.117530] ok 1 dmabuf_memory_ranges',
]
KTAP_ONE_FAILS = KTAP_HEAD + [
    '[   15.752300]     # validate_accepts_exactly_max_ranges: EXPECTATION FAILED at ranges.rs:88',
    '[   15.752371]     not ok 3 validate_accepts_exactly_max_ranges',
    '[   16.116873] # dmabuf_memory_ranges: pass:2 fail:1 skip:0 total:3',
    '[   16.117202] # Totals: pass:2 fail:1 skip:0 total:3',
    '[   16.117530] not ok 1 dmabuf_memory_ranges',
]

# Userspace output echoed to the console: no printk timestamp. It quotes a
# DMAR fault, which must not count as a kernel report.
CONSOLE_TAIL = [
    'edu 0000:00:03.0: vfio-pci, bound (it had no driver), /dev/vfio/devices/vfio0',
    'TAP version 13',
    'ok 1 - bind edu, ivshmem and pci-testdev to vfio-pci',
    '# 3 passed, 0 failed',
    '[   38.759365] dmabuf-test: guest done',
    '[   38.881706] ACPI: PM: Preparing to enter system sleep state S5',
    '[   38.896176] reboot: machine restart',
]

SMOKE = [
    'TAP version 13',
    '# --- Setup: two devices in one IO address space',
    'ok 1 - bind edu, ivshmem and pci-testdev to vfio-pci',
    '#   edu 0000:00:03.0: vfio-pci, already bound, /dev/vfio/devices/vfio0',
    'ok 2 - open /dev/iommu',
    '#   /dev/iommu open',
    'ok 3 - bind ivshmem (0000:00:04.0) to iommufd',
    '1..3',
    '# 3 passed, 0 failed',
]
IOMMUFD = [
    'TAP version 13',
    '1..2',
    '# Starting 2 tests from 1 test cases.',
    '#  RUN           iommufd_ioas.no_domain.dmabuf_simple ...',
    '#            OK  iommufd_ioas.no_domain.dmabuf_simple',
    'ok 1 iommufd_ioas.no_domain.dmabuf_simple',
    '#  RUN           iommufd_ioas.no_domain.dmabuf_revoke ...',
    '#            OK  iommufd_ioas.no_domain.dmabuf_revoke',
    'ok 2 iommufd_ioas.no_domain.dmabuf_revoke',
    '# PASSED: 2 / 2 tests passed.',
    '# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0',
]
KMEMLEAK_REPORT = [
    'unreferenced object 0xffff888004c3a000 (size 64):',
    '  comm "insmod", pid 71, jiffies 4294672345',
    '  hex dump (first 32 bytes):',
    '    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................',
    '  backtrace (crc 5f1a2b3c):',
    '    kmemleak_alloc+0x4e/0x90',
    '    __kmalloc_noprof+0x2a1/0x3e0',
]

# What a clean fixture counts: 3 KUnit cases, insmod, rmmod, 3 smoke cases,
# 2 iommufd cases, kmemleak, "ran to the end", "no unexpected kernel report".
CLEAN_PASSED = 3 + 1 + 1 + 3 + 2 + 1 + 1 + 1

# Kernel reports, as the kernel prints them.
WARN_SPLAT = [
    '[   21.100000] ------------[ cut here ]------------',
    '[   21.100001] WARNING: CPU: 0 PID: 1 at drivers/dma-buf/dma-buf.c:1234 dma_buf_map_attachment+0x1a/0x50',
    '[   21.100002] Modules linked in: dmabuf_memory(O)',
    '[   21.100003] CPU: 0 UID: 0 PID: 1 Comm: dmabuf-tool Tainted: G           O        7.3.4+ #1',
    '[   21.100004] RIP: 0010:dma_buf_map_attachment+0x1a/0x50',
    '[   21.100005] Call Trace:',
    '[   21.100006]  <TASK>',
    '[   21.100007]  vfio_pci_dma_buf_map+0x40/0x90',
    '[   21.100008]  </TASK>',
    '[   21.100009] ---[ end trace 0000000000000000 ]---',
]
# The same WARN as kernel/panic.c:__warn() prints it in newer kernels, the 7.3
# this project builds among them: "WARNING: file:line at sym, CPU#n: comm/pid".
WARN_SPLAT_NEW = [
    WARN_SPLAT[0],
    '[   21.100001] WARNING: drivers/dma-buf/dma-buf.c:1234 at dma_buf_map_attachment+0x1a/0x50 '
    '[dmabuf_memory], CPU#0: dmabuf-tool/87',
] + WARN_SPLAT[2:]
DMAR_FAULT = [
    '[   18.482196] DMAR: DRHD: handling fault status reg 2',
    '[   18.482501] DMAR: [DMA Write NO_PASID] Request device [0000:00:03.0] fault addr 0x203000 '
    '[fault reason 0x05] PTE Write access is not set',
]
LOCKDEP_SPLAT = [
    '[   24.000001] ======================================================',
    '[   24.000002] WARNING: possible circular locking dependency detected',
    '[   24.000003] 7.3.4+ #1 Tainted: G           O',
    '[   24.000004] ------------------------------------------------------',
    '[   24.000005] dmabuf-tool/87 is trying to acquire lock:',
    '[   24.000006] ffff888004a1c0b8 (&vdev->memory_lock){++++}-{4:4}, at: vfio_pci_dma_buf_move+0x2a/0x90',
]
LOCKDEP_UNLOCK_SPLAT = [
    '[   24.000001] =====================================',
    '[   24.000002] WARNING: bad unlock balance detected!',
    '[   24.000003] 7.3.4+ #1 Tainted: G           O',
    '[   24.000004] -------------------------------------',
    '[   24.000005] dmabuf-tool/87 is trying to release lock (&vdev->memory_lock) at:',
]
KASAN_SPLAT = [
    '[   24.100000] ==================================================================',
    '[   24.100001] BUG: KASAN: slab-use-after-free in dmabuf_memory_unmap+0x3c/0x80 [dmabuf_memory]',
    '[   24.100002] Read of size 8 at addr ffff888004b2c010 by task dmabuf-tool/87',
    '[   24.100003] Call Trace:',
]


def window(kind, lines):
    """Kernel lines bracketed by the markers the guest tests write to /dev/kmsg."""
    return (['[   18.381688] dmabuf-test: expect-begin ' + kind] + lines
            + ['[   18.497110] dmabuf-test: expect-end ' + kind])


def console(ktap=KTAP_PASS, kernel=()):
    """A console log: boot, KTAP of the module's KUnit suite, then `kernel` lines."""
    return BOOT + list(ktap) + list(kernel) + CONSOLE_TAIL


def results(smoke=SMOKE, smoke_rc=0, iommufd=IOMMUFD, kmemleak=(), drop=(), done=True):
    """A results log with the sections guest/init writes, minus those in `drop`."""
    secs = [('insmod', [], 0), ('rmmod', [], 0), ('smoke', smoke, smoke_rc),
            ('iommufd_selftest', iommufd, 0), ('kmemleak', list(kmemleak), 0)]
    out = []
    for name, body, rc in secs:
        if name not in drop:
            out += ['### begin ' + name] + list(body) + [f'### end {name} rc={rc}']
    return out + (['### done'] if done else [])


# The stress module's KUnit suite at insmod: a KTAP run of its own, with the
# lines it logs (rates, counts, the total from suite_exit) between its cases.
KTAP_STRESS = [
    '[   40.100000] KTAP version 1',
    '[   40.100001] 1..1',
    '[   40.100002]     KTAP version 1',
    '[   40.100003]     # Subtest: dma_buf_memory_stress',
    '[   40.100004]     1..4',
] + [l for i, case in enumerate(('pinned', 'revocable', 'dynamic', 'mixed'), 1) for l in (
    f'[   6{i}.000000]     # stress_{case}: 41234 operations in 20004 ms: 2061 per second',
    f'[   6{i}.000001]     # stress_{case}: attach=401 detach=401 get=12000 put=11800',
    f'[   6{i}.000002]     # stress_{case}.speed: slow',
    f'[   6{i}.000003]     ok {i} stress_{case}',
)] + [
    '[   70.000000] dmabuf-stress: 164936 operations in all cases',
    '[   70.000001] # dma_buf_memory_stress: pass:4 fail:0 skip:0 total:4',
    '[   70.000002] # Totals: pass:4 fail:0 skip:0 total:4',
    '[   70.000003] ok 1 dma_buf_memory_stress',
]
STRESS_EXPECT = 'insmod,rmmod,stress,rmmod_stress,smoke,iommufd_selftest,kmemleak'


def stress_results(rmmod_rc=0):
    """results() with the stress module's sections, which guest/init writes after rmmod."""
    out = results()
    i = out.index('### end rmmod rc=0') + 1
    return (out[:i] + ['### begin stress', '### end stress rc=0',
                       '### begin rmmod_stress', f'### end rmmod_stress rc={rmmod_rc}'] + out[i:])


# --------------------------------------------------------------------------
# Running analyze.py

Result = collections.namedtuple('Result', 'rc out passed failed skipped fails')
GUEST = re.compile(r'^GUEST passed=(\d+) failed=(\d+) skipped=(\d+)$')
FAIL = re.compile(r'^FAIL (\[[^]]*\] .*)$')


def run_analyze(fixture):
    console_lines, results_lines, expect, _, args = fixture
    with tempfile.TemporaryDirectory(prefix='test-analyze-') as d:
        for name, lines in (('console.log', console_lines), ('results.log', results_lines)):
            with open(os.path.join(d, name), 'w') as f:
                f.write(''.join(l + '\r\n' for l in lines))   # the serial console writes CRLF
        cmd = [sys.executable, ANALYZE, d,
               '--kunit-py', KUNIT_PY if HAVE_KUNIT else os.path.join(d, 'no-kunit.py')]
        if expect is not None:
            cmd += ['--expect', expect]
        cmd += list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    last = p.stdout.rstrip('\n').splitlines()[-1] if p.stdout.strip() else ''
    m = GUEST.match(last)
    counts = tuple(int(x) for x in m.groups()) if m else (None, None, None)
    fails = [f.group(1) for f in map(FAIL.match, p.stdout.splitlines()) if f]
    return Result(p.returncode, out, *counts, fails)


FIXTURES = {}   # test name -> fixture
_pool = None
_futures = {}


def analyzed(console_lines, results_lines, expect=None, kunit=True, args=()):
    """Decorator: the test gets analyze.py's Result for this fixture."""
    def deco(fn):
        fixture = (tuple(console_lines), tuple(results_lines), expect, kunit, tuple(args))
        FIXTURES[fn.__qualname__] = fixture

        @functools.wraps(fn)
        def test(self):
            fut = _futures.get(fn.__qualname__)
            r = fut.result() if fut else run_analyze(fixture)
            try:
                fn(self, r)
            except AssertionError as e:     # show the whole report with the failure
                raise AssertionError(f'{e}\n--- analyze.py rc={r.rc} output:\n{r.out}') from None
        return test
    return deco


def setUpModule():
    global _pool
    _pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))
    for name, fixture in FIXTURES.items():
        if fixture[3] and not HAVE_KUNIT:
            continue    # those tests are skipped
        _futures[name] = _pool.submit(run_analyze, fixture)


def tearDownModule():
    _pool.shutdown(wait=True)


class Base(unittest.TestCase):
    maxDiff = None

    def assertCounts(self, r, passed, failed, skipped=0):
        self.assertEqual((r.passed, r.failed, r.skipped), (passed, failed, skipped),
                         'GUEST passed/failed/skipped')

    def assertPasses(self, r, passed=CLEAN_PASSED, skipped=0):
        self.assertEqual(r.fails, [])
        self.assertEqual(r.rc, 0)
        self.assertCounts(r, passed, 0, skipped)

    def assertFailsWith(self, r, fail, passed, failed=1):
        """Exit status 1, `fail` among the FAIL lines, exactly `failed` failures."""
        self.assertEqual(r.rc, 1)
        self.assertIn(fail, r.fails)
        self.assertEqual(len(r.fails), failed, 'one FAIL line per failure')
        self.assertCounts(r, passed, failed)


KERNEL_REPORT = '[kernel log] no unexpected WARN/BUG/lockdep/KASAN/kmemleak/DMAR report'


# --------------------------------------------------------------------------

@needs_kunit
class TestResults(Base):
    """The results port: sections, TAP, exit statuses, the end marker."""

    @analyzed(console(), results())
    def test_clean_run_passes_with_exact_counts(self, r):
        self.assertPasses(r)
        self.assertIn('kunit run 1: 3 passed, 0 failed, 0 skipped (dmabuf_memory_ranges)', r.out)
        self.assertIn('smoke: 3 passed, 0 failed, 0 skipped (rc=0)', r.out)
        self.assertIn('iommufd_selftest: 2 passed, 0 failed, 0 skipped (rc=0)', r.out)

    @analyzed(console(), results(
        smoke=SMOKE[:4] + ['not ok 2 - open /dev/iommu', '#   open: ENOENT'] + SMOKE[6:],
        smoke_rc=1))
    def test_tap_not_ok_fails_and_is_counted_once(self, r):
        # rc=1 comes with the failing case: no second failure for the exit status
        self.assertFailsWith(r, '[smoke] open /dev/iommu', passed=CLEAN_PASSED - 1)
        self.assertIn('smoke: 2 passed, 1 failed, 0 skipped (rc=1)', r.out)

    @analyzed(console(), results(smoke_rc=2))
    def test_nonzero_rc_without_failing_case_fails(self, r):
        self.assertFailsWith(r, '[smoke] exit status', passed=CLEAN_PASSED)
        self.assertIn('rc=2 with no failing case', r.out)

    @analyzed(console(), results(drop=('iommufd_selftest',)))
    def test_missing_required_section_fails(self, r):
        self.assertFailsWith(r, '[guest] iommufd_selftest', passed=CLEAN_PASSED - 2)
        self.assertIn('section missing from the results port', r.out)

    @analyzed(console(), results(done=False))
    def test_run_without_done_fails(self, r):
        self.assertFailsWith(r, '[guest] ran to the end', passed=CLEAN_PASSED - 1)
        self.assertIn('no "### done" on the results port', r.out)

    @analyzed(console(), ['### begin insmod', '### end insmod rc=0',
                          '### begin smoke'] + SMOKE[:5], expect='insmod,smoke')
    def test_section_begun_never_ended_fails(self, r):
        # The guest died inside smoke: that section fails, and so does the run
        # as a whole for want of "### done". The 2 cases printed still count.
        self.assertEqual(r.rc, 1)
        self.assertEqual(sorted(r.fails), ['[guest] ran to the end', '[smoke] finished'])
        self.assertIn('the guest stopped inside this test', r.out)
        self.assertIn('smoke: 2 passed, 0 failed, 0 skipped (rc=None)', r.out)
        self.assertCounts(r, 3 + 1 + 2 + 1, 2)

    @analyzed(console(ktap=KTAP_PASS + KTAP_STRESS), stress_results(),
              expect=STRESS_EXPECT)
    def test_stress_sections_pass_on_exit_status_and_its_cases_count(self, r):
        # insmod of the stress module prints nothing on the results port:
        # no TAP is needed; its 4 KUnit cases come from the console.
        self.assertPasses(r, passed=CLEAN_PASSED + 2 + 4)
        self.assertIn('kunit run 2: 4 passed, 0 failed, 0 skipped (dma_buf_memory_stress)', r.out)
        self.assertIn('stress: rc=0', r.out)
        self.assertIn('rmmod_stress: rc=0', r.out)

    @analyzed(console(ktap=KTAP_PASS + KTAP_STRESS), stress_results(rmmod_rc=1),
              expect=STRESS_EXPECT)
    def test_stress_module_that_cannot_unload_fails(self, r):
        # A dma-buf it leaked would hold a reference to the module.
        self.assertFailsWith(r, '[guest] rmmod_stress succeeds', passed=CLEAN_PASSED + 1 + 4)

    @analyzed(console(), stress_results() + [
        '### begin kvm_memslot_selftest', 'Random seed: 0x1', '### end kvm_memslot_selftest rc=0',
        '### begin kvm_gmem_selftest', '### end kvm_gmem_selftest rc=1'],
        expect=STRESS_EXPECT + ',kvm_memslot_selftest,kvm_gmem_selftest')
    def test_kvm_selftests_are_judged_by_exit_status(self, r):
        # Upstream's KVM selftests print no TAP: rc 0 passes, anything else fails.
        self.assertIn('kvm_memslot_selftest: rc=0', r.out)
        self.assertFailsWith(r, '[guest] kvm_gmem_selftest succeeds', passed=CLEAN_PASSED + 2 + 1)

    @analyzed(console(), results(kmemleak=KMEMLEAK_REPORT))
    def test_kmemleak_report_fails(self, r):
        self.assertFailsWith(r, '[kmemleak] no leaked objects', passed=CLEAN_PASSED - 1)
        self.assertIn('kmemleak: 1 unreferenced objects', r.out)
        self.assertIn('| unreferenced object 0xffff888004c3a000 (size 64):', r.out)

    @analyzed(console(), results(
        smoke=SMOKE[:6] + ['ok 3 - bind ivshmem (0000:00:04.0) to iommufd # SKIP no ivshmem'] + SMOKE[7:]))
    def test_tap_skip_counts_as_skipped_not_passed(self, r):
        self.assertPasses(r, passed=CLEAN_PASSED - 1, skipped=1)
        self.assertIn('smoke: 2 passed, 0 failed, 1 skipped (rc=0)', r.out)

    @analyzed(console(kernel=[
        '[  200.000001] dmabuf-test: section iommufd_selftest',
        '[  200.100000] dmabuf-test: section kvm_memslot_selftest',
        '[  400.100000] dmabuf-test: section kvm_memslot_selftest ends',
        '[  630.500000] dmabuf-test: section iommufd_selftest ends',
        '[  631.000000] dmabuf-test: section kvm_gmem_selftest',
    ]), results())
    def test_section_times_are_reported_from_the_kernel_log(self, r):
        # guest/init brackets each section with kmsg lines; the report says how
        # long each took, in the order they began, and which never ended. The
        # figures inform, they do not judge.
        self.assertPasses(r)
        self.assertIn('section times (s, guest clock): iommufd_selftest 430, '
                      'kvm_memslot_selftest 200, kvm_gmem_selftest (no end)', r.out)


@needs_kunit
class TestKUnit(Base):
    """KTAP in the console, parsed by kunit.py."""

    @analyzed(console(ktap=KTAP_ONE_FAILS), results())
    def test_kunit_case_failure_is_counted(self, r):
        self.assertFailsWith(r, '[kunit] dmabuf_memory_ranges.validate_accepts_exactly_max_ranges',
                             passed=CLEAN_PASSED - 1)
        self.assertIn('kunit run 1: 2 passed, 1 failed, 0 skipped', r.out)

    @analyzed(console(ktap=KTAP_PASS[:-4] + [
        # The third case, parameterized: its nested header was cut short.
        '[   15.751995]         KTAP version 1',
        '[   15.751996]         # Subtest: validate_accepts_exac',
        '** replaying previous printk message **',
        '[   15.751996]         # Subtest: validate_accepts_exactly_max_ranges',
        '[   15.752001]         ok 1 one chunk',
        '[   15.752002]         ok 2 two chunks',
        '[   15.752003]     # validate_accepts_exactly_max_ranges: pass:2 fail:0 skip:0 total:2',
    ] + KTAP_PASS[-4:]), results())
    def test_printk_replay_of_a_ktap_line_is_not_a_failure(self, r):
        # A WARN on another CPU cut a KTAP line short; printk printed the
        # marker and the whole line again.
        self.assertPasses(r, passed=CLEAN_PASSED + 1)
        self.assertIn('kunit run 1: 4 passed, 0 failed, 0 skipped', r.out)

    @analyzed(console(ktap=[KTAP_PASS[0], '[   15.719034] 1..2'] + KTAP_PASS[2:]), results())
    def test_kunit_suite_missing_from_plan_fails(self, r):
        # "1..2" but one suite printed (a crash, or printk dropped the lines):
        # kunit.py reports the second as a nameless crashed test; one failure.
        self.assertFailsWith(r, '[kunit] (unnamed)', passed=CLEAN_PASSED)
        self.assertIn('kunit run 1: 3 passed, 1 failed, 0 skipped', r.out)


class TestNoKTAP(Base):
    """Needs no kunit.py: without KTAP analyze.py never runs it."""

    @analyzed(BOOT + CONSOLE_TAIL, results(), kunit=False)
    def test_no_ktap_at_all_fails(self, r):
        self.assertFailsWith(r, '[kunit] KTAP output', passed=CLEAN_PASSED - 3)
        self.assertIn('no KTAP output in the console log', r.out)

    @analyzed(BOOT + CONSOLE_TAIL, results(), kunit=False, args=['--no-kunit'])
    def test_no_ktap_is_fine_for_a_boot_without_kunit(self, r):
        self.assertPasses(r, passed=CLEAN_PASSED - 3)


@needs_kunit
class TestKernelReports(Base):
    """Kernel reports in the console, and the expect windows that allow them."""

    @analyzed(console(kernel=WARN_SPLAT), results())
    def test_warn_outside_window_fails_with_context(self, r):
        self.assertFailsWith(r, KERNEL_REPORT, passed=CLEAN_PASSED - 1)
        # the report quotes the splat: from two lines before through its trace
        self.assertIn('    | [   21.100000] ------------[ cut here ]------------\n'
                      '    | [   21.100001] WARNING: CPU: 0 PID: 1 at drivers/dma-buf/dma-buf.c:1234', r.out)
        self.assertIn('    | [   21.100007]  vfio_pci_dma_buf_map+0x40/0x90', r.out)

    @analyzed(console(kernel=window('warn', WARN_SPLAT)), results())
    def test_warn_inside_warn_window_is_expected(self, r):
        self.assertPasses(r)
        self.assertIn('expected kernel reports: 1 x warn', r.out)

    @analyzed(console(kernel=WARN_SPLAT_NEW), results())
    def test_warn_in_current_kernel_format_fails(self, r):
        self.assertFailsWith(r, KERNEL_REPORT, passed=CLEAN_PASSED - 1)
        self.assertIn('| [   21.100001] WARNING: drivers/dma-buf/dma-buf.c:1234 at', r.out)

    @analyzed(console(kernel=window('warn', WARN_SPLAT_NEW)), results())
    def test_warn_in_current_kernel_format_inside_window_is_expected(self, r):
        self.assertPasses(r)
        self.assertIn('expected kernel reports: 1 x warn', r.out)

    @analyzed(console(kernel=DMAR_FAULT), results())
    def test_dmar_fault_outside_window_fails(self, r):
        self.assertFailsWith(r, KERNEL_REPORT, passed=CLEAN_PASSED - 1)
        self.assertIn('| [   18.482501] DMAR: [DMA Write NO_PASID] Request device [0000:00:03.0]', r.out)

    @analyzed(console(kernel=window('dmar-fault', DMAR_FAULT)), results())
    def test_dmar_fault_inside_dmar_window_is_expected(self, r):
        self.assertPasses(r)
        self.assertIn('expected kernel reports: 1 x dmar-fault', r.out)

    @analyzed(console(kernel=window('dmar-fault', WARN_SPLAT)), results())
    def test_window_of_one_kind_does_not_allow_another(self, r):
        self.assertFailsWith(r, KERNEL_REPORT, passed=CLEAN_PASSED - 1)
        self.assertIn('| [   21.100001] WARNING: CPU: 0 PID: 1 at', r.out)
        self.assertNotIn('expected kernel reports', r.out)

    @analyzed(console(kernel=[
        '#   kernel: DMAR: [DMA Write NO_PASID] Request device [0000:00:03.0] fault addr 0x203000 '
        '[fault reason 0x05] PTE Write access is not set',
        'DMAR: [DMA Write NO_PASID] Request device [0000:00:03.0] fault addr 0x203000',
        'dmabuf-tool: WARNING: CPU: 0 PID: 1 at quoted.c:1']), results())
    def test_userspace_line_quoting_a_report_is_not_a_report(self, r):
        self.assertPasses(r)
        self.assertNotIn('expected kernel reports', r.out)

    @analyzed(console(kernel=LOCKDEP_SPLAT), results())
    def test_lockdep_report_fails(self, r):
        self.assertFailsWith(r, KERNEL_REPORT, passed=CLEAN_PASSED - 1)
        self.assertIn('| [   24.000002] WARNING: possible circular locking dependency detected', r.out)

    @analyzed(console(kernel=LOCKDEP_UNLOCK_SPLAT), results())
    def test_lockdep_bad_unlock_balance_fails(self, r):
        self.assertFailsWith(r, KERNEL_REPORT, passed=CLEAN_PASSED - 1)
        self.assertIn('| [   24.000002] WARNING: bad unlock balance detected!', r.out)

    @analyzed(console(kernel=KASAN_SPLAT), results())
    def test_kasan_report_fails(self, r):
        self.assertFailsWith(r, KERNEL_REPORT, passed=CLEAN_PASSED - 1)
        self.assertIn('| [   24.100001] BUG: KASAN: slab-use-after-free in dmabuf_memory_unmap', r.out)

    @analyzed(console(kernel=window('kasan', KASAN_SPLAT) + window('lockdep', LOCKDEP_SPLAT)), results())
    def test_kasan_and_lockdep_are_their_own_kinds(self, r):
        # a KASAN report is kind "kasan" (not "bug"), a lockdep one "lockdep"
        self.assertPasses(r)
        self.assertIn('expected kernel reports: 1 x kasan', r.out)
        self.assertIn('expected kernel reports: 1 x lockdep', r.out)


if __name__ == '__main__':
    unittest.main()
