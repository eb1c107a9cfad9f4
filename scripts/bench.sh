#!/usr/bin/env bash
# `make bench`: boot the patched kernel in QEMU, load bench/dmabuf_bench.ko,
# which times dma_buf_get_memory() against dma_buf_map_attachment() and
# counts their bytes, and print its table and a summary of its three time
# columns: get_memory, sg (an sg_table without the DMA API, a lower bound)
# and sg+dma (dma_map_sgtable() for pci-testdev through the guest's
# intel-iommu, what a real exporter pays), with sg+dma / get_memory; then
# print the table of
# `dmabuf-tool bench` (iommufd MAP_FILE+UNMAP by range count, revoke by
# importer count, through VFIO and a real intel-iommu domain) and that of
# `dmabuf-tool kvm-bench` (an L2 guest's first touch of a 2 MiB memslot:
# anonymous memory against ivshmem's BAR2 as a dma-buf, 4K and 2M entries).
# The full results are in OUT/bench/results.log, one machine-readable "row"
# line per measurement in OUT/bench/rows.txt, OUT/bench/iommufd_rows.txt and
# OUT/bench/kvm_rows.txt. Fails if any benchmark did not finish, rmmod failed,
# kmemleak found a leak, or the kernel logged a WARN, BUG, lockdep, KASAN
# or other report (scripts/analyze.py's list).
# Usage: bench.sh OUT (OUT/initramfs.cpio.gz from build-guest.sh)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=$(realpath -m "$1")
KBUILD=${KBUILD:-$(cat "$CACHE/current-build")}
log "booting $(cat "$CACHE/linux/.pristine-version" 2>/dev/null || echo 7.3) + series under QEMU (TCG) to run the benchmark"
rc=0
"$TOP/scripts/qemu.sh" bench "$KBUILD/arch/x86/boot/bzImage" "$out/initramfs.cpio.gz" \
	"$out/bench" "${DMABUF_TIMEOUT:-900}" || rc=$?
[ $rc = 0 ] || log "qemu exited rc=$rc"

python3 - "$TOP/scripts" "$out/bench" <<'PY'
import os
import sys

sys.path.insert(0, sys.argv[1])
import analyze  # noqa: E402

outdir = sys.argv[2]
console = analyze.read_lines(os.path.join(outdir, 'console.log'))
secs = analyze.sections(analyze.read_lines(os.path.join(outdir, 'results.log')))
tally, report = analyze.Tally(), []

rc, body = secs.get('bench', (None, []))
lines = [l[len('dmabuf-bench: '):] for l in body if l.startswith('dmabuf-bench: ')]
rows = [l for l in lines if l.startswith('row ')]
for l in lines:
    if not l.startswith('row '):
        print(l)
with open(os.path.join(outdir, 'rows.txt'), 'w') as f:
    f.writelines(l + '\n' for l in rows)


def size_str(n):
    for unit, name in ((1 << 30, 'GiB'), (1 << 20, 'MiB'), (1 << 10, 'KiB')):
        if n >= unit:
            return f'{n // unit} {name}'
    return f'{n} B'


# The three time columns of the module's table, from its row lines.
if rows:
    print()
    print('summary: ns per call pair (median); get_memory: description built per call, '
          'shared: one description shared by every call; sg x: sg / get_memory, '
          'sh x: sg / shared, sg+dma x: sg+dma / shared; sg+dma only where the ranges are real memory')
    print(f'{"size":>8} {"ranges":>6} | {"get_memory":>10} {"shared":>8} {"sg":>10} {"sg+dma":>10} | '
          f'{"sg x":>6} {"sh x":>6} {"sg+dma x":>8}')
    for l in rows:
        kv = dict(f.split('=', 1) for f in l.split()[1:] if '=' in f)
        mem, sg, sgd = int(kv['mem_ns']), int(kv['sg_ns']), kv.get('sgd_ns', '-')
        sh = int(kv['shared_ns'])
        sgd_x = f'{int(sgd) / sh:.2f}' if sgd != '-' and sh else '-'
        print(f'{size_str(int(kv["size"])):>8} {kv["ranges"]:>6} | {mem:>10} {sh:>8} {sg:>10} {sgd:>10} | '
              f'{sg / mem if mem else 0:>6.2f} {sg / sh if sh else 0:>6.2f} {sgd_x:>8}')

tally.add('bench', 'insmod succeeds', rc == 0, f'rc={rc}')
tally.add('bench', 'benchmark finished', 'done' in lines and rows, '\n'.join(lines[-20:]))
def tool_section(section, prefix, rows_file, what):
    """Print a dmabuf-tool benchmark's table, keep its row lines in rows_file."""
    trc, tbody = secs.get(section, (None, []))
    tlines = [l[len(prefix):] for l in tbody if l.startswith(prefix)]
    trows = [l for l in tlines if l.startswith('row ')]
    print()
    for l in tlines:
        if not l.startswith('row '):
            print(l)
    with open(os.path.join(outdir, rows_file), 'w') as f:
        f.writelines(l + '\n' for l in trows)
    tally.add(section, f'{what} finished', trc == 0 and 'done' in tlines and trows,
              '\n'.join(tbody[-20:]))
    return trows


# dmabuf-tool bench (iommufd side), after the module's table; then
# dmabuf-tool kvm-bench (KVM side).
irows = tool_section('iommufd_bench', 'dmabuf-tool bench: ', 'iommufd_rows.txt',
                     'dmabuf-tool bench')
krows = tool_section('kvm_bench', 'dmabuf-tool kvm-bench: ', 'kvm_rows.txt',
                     'dmabuf-tool kvm-bench')

rmmod = secs.get('rmmod', (None, []))
tally.add('bench', 'rmmod succeeds', rmmod[0] == 0, '\n'.join(rmmod[1]))
leaks = [l for l in secs.get('kmemleak', (0, []))[1] if 'unreferenced object' in l]
tally.add('bench', 'no kmemleak report', not leaks, '\n'.join(leaks[:20]))
analyze.scan_reports(console, tally, report)
for source, name, detail in tally.failures:
    print(f'FAIL [{source}] {name}')
    if detail:
        print('\n'.join('    | ' + x for x in str(detail).splitlines()[:60]))
print(f'bench: {len(rows)} rows in {os.path.join(outdir, "rows.txt")}, '
      f'{len(irows)} in {os.path.join(outdir, "iommufd_rows.txt")}, '
      f'{len(krows)} in {os.path.join(outdir, "kvm_rows.txt")}; '
      f'{tally.passed} checks passed, {tally.failed} failed (console: {outdir}/console.log)')
sys.exit(1 if tally.failed else 0)
PY
