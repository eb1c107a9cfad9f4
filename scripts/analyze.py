#!/usr/bin/env python3
"""Judge one guest run from its two logs.

console.log  the kernel console (ttyS0): KTAP from KUnit, splats.
results.log  the results port (ttyS1): "### begin NAME" ... "### end NAME rc=N"
             sections written by guest/init, TAP from the userspace tests.

Every KUnit case, every userspace TAP line and a few whole-run checks
(module loads/unloads, no kmemleak report, no unexpected kernel report, the
guest finished) count as tests. Prints a report and a last line
"GUEST passed=N failed=N skipped=N" for scripts/check.sh; exits 1 on any
failure.

Kernel reports a test provokes on purpose are bracketed in the console by
"dmabuf-test: expect-begin KIND" / "dmabuf-test: expect-end KIND" lines (the
tests write them to /dev/kmsg). Inside such a window the reports of that KIND
are expected and counted, not failures; outside, every report fails the run.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

TS = r'(?:\[\s*\d+\.\d+\]\s*)?'
MARK = re.compile(TS + r'dmabuf-test: expect-(begin|end) (\S+)')
KTAP_TOP = re.compile(r'(?:\[\s*\d+\.\d+\] )?KTAP version \d+\s*$')
# Kernel messages carry a printk timestamp (CONFIG_PRINTK_TIME); lines
# without one are userspace output echoed to the console and never count as
# kernel reports.
KERNEL_LINE = re.compile(r'^\[\s*\d+\.\d+\] ')

# Kernel reports that fail a run. Each: (kind, regex). The kind names what an
# expect window may allow.
REPORTS = [
    # __warn() prints "WARNING: CPU: 0 PID: 1 at file:line sym" in older kernels,
    # "WARNING: file:line at sym, CPU#0: comm/pid" (or "WARNING: at sym, CPU#0: ...")
    # in newer ones, the 7.3 built here among them.
    ('warn', re.compile(r'WARNING: (CPU: \d+ PID: \d+|(\S+:\d+ )?at .+, CPU#\d+: )')),
    # The headers of kernel/locking/lockdep.c's reports.
    ('lockdep', re.compile(r'WARNING: (possible circular locking|possible recursive locking|'
                           r'inconsistent lock state|suspicious RCU usage|lock held when returning|'
                           r'possible irq lock inversion|\S+-safe -> \S+-unsafe lock order|'
                           r'bad unlock balance|held lock freed|\S+ still has locks held|'
                           r'Nested lock was not taken|chain_key collision|bad contention)|'
                           r'DEBUG_LOCKS_WARN_ON|INFO: trying to register non-static key')),
    ('kasan', re.compile(r'BUG: KASAN: |KASAN: .*(out-of-bounds|use-after-free)')),
    ('bug', re.compile(r'\bBUG: |kernel BUG at|Oops: |general protection fault|Kernel panic')),
    ('kmemleak', re.compile(r'kmemleak: \d+ new suspected memory leaks')),
    ('ubsan', re.compile(r'UBSAN: ')),
    ('stall', re.compile(r'rcu: INFO: .*detected stalls|blocked for more than \d+ seconds|'
                         r'soft lockup|hard LOCKUP')),
    ('dmar-fault', re.compile(r'DMAR: \[DMA (Read|Write)')),
]


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []

    def add(self, source, name, ok, detail=None, skipped=False):
        if skipped:
            self.skipped += 1
            return
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append((source, name, detail))


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, 'r', errors='replace') as f:
        return [l.rstrip('\r\n').replace('\r', '') for l in f]


# printk's nbcon consoles, interrupted mid-line by an urgent message (a WARN
# on another CPU), print this marker and the whole line again: the line
# before the marker is a truncated copy of the one after it.
PRINTK_REPLAY = re.compile(r'\*\* replaying previous printk message \*\*')


def drop_printk_replays(lines):
    """Drop each replay marker and the truncated line it repeats."""
    out = []
    for i, l in enumerate(lines):
        if PRINTK_REPLAY.fullmatch(KERNEL_LINE.sub('', l)):
            nxt = lines[i + 1] if i + 1 < len(lines) else ''
            if out and nxt.startswith(out[-1]):
                out.pop()
            continue
        out.append(l)
    return out


def ktap_segments(lines):
    """Split the console into one chunk per top-level KTAP run (boot, each insmod)."""
    starts = [i for i, l in enumerate(lines) if KTAP_TOP.fullmatch(l)]
    for n, s in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        yield lines[s:end]


def count_kunit(test, tally, path=''):
    """Walk kunit.py's JSON: count leaf cases."""
    name = f"{path}.{test['name']}" if path else test['name']
    subs = test.get('sub_groups') or []
    cases = test.get('test_cases') or []
    if not subs and not cases:
        return
    for case in cases:
        status = case.get('status')
        cname = f"{name}.{case['name'] or '(unnamed)'}" if name else case['name'] or '(unnamed)'
        if status == 'SKIP':
            tally.add('kunit', cname, True, skipped=True)
        else:
            tally.add('kunit', cname, status == 'PASS', status)
    for sub in subs:
        count_kunit(sub, tally, name)


def parse_kunit(console, kunit_py, tally, report):
    runs = 0
    for seg in ktap_segments(drop_printk_replays(console)):
        runs += 1
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, 'ktap.log')
            js = os.path.join(tmp, 'ktap.json')
            with open(src, 'w') as f:
                f.write('\n'.join(seg) + '\n')
            p = subprocess.run([sys.executable, kunit_py, 'parse', f'--json={js}', src],
                               capture_output=True, text=True)
            summary = [l for l in p.stdout.splitlines() if 'Ran ' in l or 'Testing complete' in l]
            if not os.path.exists(js):
                tally.add('kunit', f'run {runs}', False, 'kunit.py parse failed:\n' + p.stdout[-2000:])
                continue
            with open(js) as f:
                data = json.load(f)
        before = (tally.passed, tally.failed, tally.skipped)
        # From the root, not just its sub_groups: a top-level test without
        # subtests (a suite the plan announced but the log lacks, one with no
        # case lines) is a case of the root.
        count_kunit(dict(data, name=''), tally)
        d = [a - b for a, b in zip((tally.passed, tally.failed, tally.skipped), before)]
        suites = [g['name'] for g in data.get('sub_groups', [])]
        report.append(f"kunit run {runs}: {d[0]} passed, {d[1]} failed, {d[2]} skipped "
                      f"({', '.join(suites)})")
        if d[1] or p.returncode:
            report.extend('    ' + l for l in p.stdout.splitlines() if 'FAIL' in l or 'CRASH' in l)
    if runs == 0:
        tally.add('kunit', 'KTAP output', False, 'no KTAP output in the console log')


def sections(results):
    out, cur, body = {}, None, []
    for l in results:
        if l.startswith('### begin '):
            cur, body = l[len('### begin '):].strip(), []
        elif l.startswith('### end ') and cur:
            m = re.search(r'rc=(-?\d+)', l)
            out[cur] = (int(m.group(1)) if m else -1, body)
            cur = None
        elif cur is not None:
            body.append(l)
    if cur is not None:
        out[cur] = (None, body)   # began, never ended: the guest died inside
    return out


SECTION = re.compile(r'^\[\s*(\d+\.\d+)\] dmabuf-test: section (\S+)( ends)?\s*$')


def section_times(console):
    """[(name, seconds or None)] of the sections guest/init timed in the kernel
    log, in the order they began; None: began and never ended."""
    began, took = {}, {}
    for l in console:
        m = SECTION.match(l)
        if not m:
            continue
        t, name, end = float(m.group(1)), m.group(2), m.group(3)
        if not end:
            began[name] = t
        elif name in began:
            took[name] = t - began[name]
    return [(n, took.get(n)) for n in sorted(began, key=began.get)]


def format_section_times(times):
    """One line for the report: how long each section took, guest clock."""
    parts = [f'{n} {s:.0f}' if s is not None else f'{n} (no end)' for n, s in times]
    return 'section times (s, guest clock): ' + ', '.join(parts)


TAP_LINE = re.compile(r'^(not ok|ok)\s+(\d+)\s*(?:-\s*)?(.*)$')


def parse_tap(name, rc, body, tally, report):
    n = [0, 0, 0]
    for l in body:
        m = TAP_LINE.match(l)
        if not m:
            continue
        desc = m.group(3)
        skip = bool(re.search(r'#\s*SKIP', desc, re.I))
        ok = m.group(1) == 'ok'
        tally.add(name, desc, ok, None, skipped=skip and ok)
        n[2 if skip and ok else (0 if ok else 1)] += 1
    if sum(n) == 0:
        tally.add(name, 'produced TAP', False, '\n'.join(body[-20:]))
    if rc is None:
        tally.add(name, 'finished', False, 'the guest stopped inside this test')
    elif rc != 0 and n[1] == 0:
        tally.add(name, 'exit status', False, f'rc={rc} with no failing case:\n' + '\n'.join(body[-20:]))
    report.append(f"{name}: {n[0]} passed, {n[1]} failed, {n[2]} skipped (rc={rc})")


def scan_reports(console, tally, report):
    windows = {}   # kind -> open count
    expected = {}
    unexpected = []
    in_splat_until = -1
    for i, l in enumerate(console):
        if not KERNEL_LINE.match(l):
            continue
        m = MARK.search(l)
        if m:
            kind = m.group(2)
            windows[kind] = windows.get(kind, 0) + (1 if m.group(1) == 'begin' else -1)
            continue
        for kind, rx in REPORTS:
            if not rx.search(l):
                continue
            allowed = windows.get(kind, 0) > 0
            if allowed:
                expected[kind] = expected.get(kind, 0) + 1
            elif i > in_splat_until:
                unexpected.append(i)
                in_splat_until = i + 3
            break
    for kind, c in sorted(expected.items()):
        report.append(f"expected kernel reports: {c} x {kind}")
    if unexpected:
        detail = []
        for i in unexpected[:5]:
            detail.append('\n'.join(console[max(0, i - 2):i + 40]))
        tally.add('kernel log', 'no unexpected WARN/BUG/lockdep/KASAN/kmemleak/DMAR report',
                  False, '\n----\n'.join(detail))
    else:
        tally.add('kernel log', 'no unexpected WARN/BUG/lockdep/KASAN/kmemleak/DMAR report', True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('outdir')
    ap.add_argument('--kunit-py', required=True)
    ap.add_argument('--expect', default='insmod,rmmod,smoke,iommufd_selftest,kmemleak',
                    help='sections the guest must have produced')
    ap.add_argument('--no-kunit', action='store_true',
                    help='the guest booted with kunit.enable=0: expect no KTAP')
    a = ap.parse_args()

    console = read_lines(os.path.join(a.outdir, 'console.log'))
    results = read_lines(os.path.join(a.outdir, 'results.log'))
    tally, report = Tally(), []

    if not a.no_kunit:
        parse_kunit(console, a.kunit_py, tally, report)
    secs = sections(results)
    for name in a.expect.split(','):
        if name not in secs:
            tally.add('guest', name, False, 'section missing from the results port')
            continue
        rc, body = secs[name]
        # Judged by exit status: their KUnit cases are counted from the
        # console; upstream's KVM selftests print no TAP, they exit 0.
        if name in ('insmod', 'rmmod', 'stress', 'rmmod_stress', 'bind', 'samples',
                    'kvm_memslot_selftest', 'kvm_gmem_selftest'):
            tally.add('guest', f'{name} succeeds', rc == 0, '\n'.join(body[-20:]))
            report.append(f"{name}: rc={rc}")
        elif name == 'kmemleak':
            leaks = [l for l in body if 'unreferenced object' in l]
            tally.add('kmemleak', 'no leaked objects', not leaks, '\n'.join(body[:60]))
            report.append(f"kmemleak: {len(leaks)} unreferenced objects")
        else:
            parse_tap(name, rc, body, tally, report)
    tally.add('guest', 'ran to the end', any(l.startswith('### done') for l in results),
              'no "### done" on the results port: timeout, panic or hang; console tail:\n'
              + '\n'.join(console[-40:]))
    scan_reports(console, tally, report)
    # Timeouts and a slow machine show here first: which section ran long.
    times = section_times(console)
    if times:
        report.append(format_section_times(times))

    for l in report:
        print('  ' + l)
    for source, name, detail in tally.failures:
        print(f"FAIL [{source}] {name}")
        if detail:
            print('\n'.join('    | ' + x for x in str(detail).splitlines()[:80]))
    print(f"GUEST passed={tally.passed} failed={tally.failed} skipped={tally.skipped}")
    return 1 if tally.failed else 0


if __name__ == '__main__':
    sys.exit(main())
