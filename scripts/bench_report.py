#!/usr/bin/env python3
"""`make bench`'s report: every kernel's figures side by side, as CSV and plots.

Usage: bench_report.py OUTDIR KERNEL...

Each KERNEL (a label: production, debug) has its guest run's logs in
OUTDIR/KERNEL/results.log and OUTDIR/KERNEL/console.log (scripts/bench.sh).
Three benchmarks ran in each guest, each printing "row key=value ..." lines:

  bench          bench/dmabuf_bench.ko: dma_buf_get_memory() built per call
                 (get_memory), shared, and dma_buf_map_attachment() without
                 (sg) and with (sg+dma) the DMA mapping, by size and ranges;
                 iommu_map()+iommu_unmap() alone by discontiguous runs
  iommufd_bench  dmabuf-tool bench: IOMMU_IOAS_MAP_FILE + UNMAP by range
                 count, revoke latency by importer count
  kvm_bench      dmabuf-tool kvm-bench: an L2 guest's first touch of a 2 MiB
                 memslot, anonymous memory against a dma-buf

Writes OUTDIR/results.csv (one row per measurement: kernel, case, params,
median_ns, min_ns, max_ns, samples, calls_per_sample) and OUTDIR/*.png;
prints each kernel's tables, the production kernel's goals (met or not), and
a last line; exits 1 if a kernel's benchmarks did not finish or its kernel
logged a report. Only ratios within one kernel's run compare: the machine is
noisy, the two kernels run one after the other.
"""

import csv
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyze  # noqa: E402

CSV_FIELDS = ['kernel', 'case', 'params', 'median_ns', 'min_ns', 'max_ns', 'samples',
              'calls_per_sample']
# The module's four time columns: case name, row key prefix.
MODULE_CASES = [('get_memory', 'mem'), ('get_memory_add_range_each', 'add1'), ('shared', 'shared'),
                ('sg', 'sg'), ('sg+dma', 'sgd')]
# The size the range-count sweep of the module is at.
SWEEP_SIZE = 1 << 30


def kv(line):
    """The key=value fields of a "row [NAME] k=v ..." line, NAME as 'row'."""
    words = line.split()[1:]
    d = {'row': words[0] if words and '=' not in words[0] else ''}
    d.update(w.split('=', 1) for w in words if '=' in w)
    return d


def num(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class Run:
    """One kernel's guest run: its rows, its tables' text, its checks."""

    def __init__(self, kernel, results, console):
        self.kernel = kernel
        self.tally = analyze.Tally()
        self.report = []
        secs = analyze.sections(results)
        rc, body = secs.get('bench', (None, []))
        self.module_text = [l[len('dmabuf-bench: '):] for l in body
                            if l.startswith('dmabuf-bench: ')]
        rows = [kv(l) for l in self.module_text if l.startswith('row ')]
        self.module = [r for r in rows if r['row'] == '']
        # The parts of a shared get+put, each timed alone.
        self.parts = [r for r in rows if r['row'] == 'part']
        # iommu_map()+iommu_unmap() alone, by physically discontiguous runs.
        self.iommu = [r for r in rows if r['row'] == 'iommu']
        self.tally.add('bench', 'insmod succeeds', rc == 0, f'rc={rc}')
        self.tally.add('bench', 'benchmark finished', 'done' in self.module_text and self.module,
                       '\n'.join(self.module_text[-20:]))
        self.tool_text = {}
        rows = {}
        for section, prefix in (('iommufd_bench', 'dmabuf-tool bench: '),
                                ('kvm_bench', 'dmabuf-tool kvm-bench: ')):
            trc, tbody = secs.get(section, (None, []))
            text = [l[len(prefix):] for l in tbody if l.startswith(prefix)]
            self.tool_text[section] = text
            trows = [kv(l) for l in text if l.startswith('row ')]
            rows[section] = trows
            self.tally.add(section, f'{section} finished', trc == 0 and 'done' in text and trows,
                           '\n'.join(tbody[-20:]))
        self.map_file = [r for r in rows['iommufd_bench'] if r['row'] == 'map_file']
        self.revoke = [r for r in rows['iommufd_bench'] if r['row'] == 'revoke']
        self.kvm = [r for r in rows['kvm_bench'] if r['row'] == 'kvm']
        self.kvm_ratio = [r for r in rows['kvm_bench'] if r['row'] == 'kvm_ratio']
        rmmod = secs.get('rmmod', (None, []))
        self.tally.add('bench', 'rmmod succeeds', rmmod[0] == 0, '\n'.join(rmmod[1]))
        leaks = [l for l in secs.get('kmemleak', (0, []))[1] if 'unreferenced object' in l]
        self.tally.add('bench', 'no kmemleak report', not leaks, '\n'.join(leaks[:20]))
        analyze.scan_reports(console, self.tally, self.report)

    def module_time(self, row, prefix):
        """(median, min, max, batches, iters) of one module column, None if absent."""
        med = num(row.get(f'{prefix}_ns'))
        if med is None:
            return None
        return (med, num(row.get(f'{prefix}_ns_min')), num(row.get(f'{prefix}_ns_max')),
                num(row.get(f'{prefix}_batches')), num(row.get(f'{prefix}_iters')))

    def measurements(self):
        """The CSV rows of this run."""
        out = []
        for r in self.module:
            params = f'size={r["size"]} ranges={r["ranges"]} memory={r.get("memory", "")}'
            for case, prefix in MODULE_CASES:
                t = self.module_time(r, prefix)
                if t:
                    out.append(dict(zip(CSV_FIELDS, (self.kernel, case, params) + t)))
        for r in self.parts:
            out.append(dict(zip(CSV_FIELDS, (
                self.kernel, f'part:{r["name"]}', '', num(r['ns']), num(r.get('ns_min')),
                num(r.get('ns_max')), num(r.get('batches')), num(r.get('iters'))))))
        for r in self.iommu:
            out.append(dict(zip(CSV_FIELDS, (
                self.kernel, 'iommu_map+unmap', f'bytes={r["bytes"]} runs={r["runs"]}',
                num(r['ns']), num(r.get('ns_min')), num(r.get('ns_max')), num(r.get('batches')),
                num(r.get('iters'))))))
        for r in self.map_file:
            out.append(dict(zip(CSV_FIELDS, (
                self.kernel, 'iommufd_map_file+unmap', f'bytes={r["bytes"]} ranges={r["ranges"]}',
                num(r['pair_ns']), num(r.get('pair_min_ns')), num(r.get('pair_max_ns')),
                num(r['reps']), 1))))
        for r in self.revoke:
            out.append(dict(zip(CSV_FIELDS, (
                self.kernel, 'revoke', f'layout={r["layout"]} importers={r["importers"]}',
                num(r['revoke_ns']), num(r.get('revoke_min_ns')), num(r.get('revoke_max_ns')),
                num(r['reps']), 1))))
        for r in self.kvm:
            out.append(dict(zip(CSV_FIELDS, (
                self.kernel, 'kvm_first_touch', f'config={r["config"]} pages={r["pages"]}',
                num(r['median_ns']), num(r.get('min_ns')), num(r.get('max_ns')),
                num(r['reps']), 1))))
        return out


def sweep(rows, key, value, prefix, x):
    """(xs, ys) of a module column over rows whose `key` is `value`, by `x`."""
    pts = sorted((int(r[x]), int(r[f'{prefix}_ns'])) for r in rows
                 if int(r[key]) == value and num(r.get(f'{prefix}_ns')) is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def ratio(a, b):
    return a / b if a is not None and b else math.nan


def goals(run):
    """The issue's goals on one run: (text, met) pairs."""
    g = []
    by_range = [r for r in run.module if int(r['size']) == SWEEP_SIZE]
    built = [(int(r['ranges']), ratio(num(r['sg_ns']), num(r['mem_ns']))) for r in by_range]
    if built:
        g.append((f'built per call faster than sg at every range count (1 GiB): '
                  + ', '.join(f'{n}: {x:.2f}x' for n, x in built), all(x > 1 for _, x in built)))
        big = [(n, x) for n, x in built if n >= 256]
        g.append((f'built per call >= 1.5x faster than sg from 256 ranges: '
                  + ', '.join(f'{n}: {x:.2f}x' for n, x in big), bool(big) and
                  all(x >= 1.5 for _, x in big)))
        sh = [num(r['shared_ns']) for r in by_range]
        g.append((f'shared flat within 1.2x from {by_range[0]["ranges"]} to '
                  f'{by_range[-1]["ranges"]} ranges: slowest/fastest {max(sh) / min(sh):.2f}',
                  max(sh) / min(sh) <= 1.2))
    one = [r for r in run.module if int(r['ranges']) == 1]
    if len(one) > 1:
        sh = [num(r['shared_ns']) for r in one]
        g.append((f'shared flat within 1.2x from 4 KiB to 16 GiB (1 range): slowest/fastest '
                  f'{max(sh) / min(sh):.2f}', max(sh) / min(sh) <= 1.2))
    dma = [r for r in run.module if num(r.get('sgd_ns')) is not None]
    if dma:
        xb = min(ratio(num(r['sgd_ns']), num(r['mem_ns'])) for r in dma)
        xs = min(ratio(num(r['sgd_ns']), num(r['shared_ns'])) for r in dma)
        g.append((f'>= 10x faster than sg+dma at every row ({len(dma)} rows): worst built '
                  f'{xb:.1f}x, worst shared {xs:.1f}x', xb >= 10 and xs >= 10))
    mf = sorted(run.map_file, key=lambda r: int(r['ranges']))
    if len(mf) > 1:
        x = ratio(num(mf[-1]['pair_ns']), num(mf[0]['pair_ns']))
        g.append((f'iommufd MAP_FILE+UNMAP of {mf[-1]["ranges"]} ranges within 1.2x of 1: '
                  f'{x:.2f}x', x <= 1.2))
    for layout in sorted({r['layout'] for r in run.revoke}):
        rows = sorted((int(r['importers']), num(r['revoke_ns'])) for r in run.revoke
                      if r['layout'] == layout)
        per = per_importer(rows)
        if per:
            (k1, t1), (k2, t2) = per
            g.append((f'revoke linear in importers ({layout}): {t1 / 1000:.1f} us per importer '
                      f'up to {k1}, {t2 / 1000:.1f} from there to {k2} (linear: within 1.5x)',
                      0 < t2 <= 1.5 * t1 and t1 <= 1.5 * t2))
    for q in run.kvm_ratio:
        x = float(q['x'])
        what = f'KVM first touch {q["dmabuf"]} / {q["anon"]} ({q["entries"]} entries): {x:.2f}x'
        g.append((what + ' (within 1.2x)', x <= 1.2 and q.get('same_entries') == 'yes'))
    whole = [r for r in run.kvm if r['config'] == 'dmabuf-1x2m']
    if whole:
        g.append((f'2 MiB-aligned dma-buf mapped with 2M entries: pages_2m={whole[0]["pages_2m"]}',
                  whole[0]['pages_2m'] not in ('0', '')))
    return g


def breakdown(run):
    """A shared get+put at 1 GiB in one range, and its parts timed alone."""
    row = next((r for r in run.module if int(r['size']) == SWEEP_SIZE and r['ranges'] == '1'),
               None)
    if row is None or not run.parts:
        return None
    parts = ', '.join(f'{p["name"]} {p["ns"]}' for p in run.parts)
    return f'shared get+put {row["shared_ns"]} ns (1 GiB, 1 range); its parts alone, ns: {parts}'


def per_extra(rows, count, ns):
    """(first count, last count, ns per extra unit) of rows sorted by `count`."""
    pts = sorted((int(r[count]), num(r[ns])) for r in rows if num(r.get(ns)) is not None)
    if len(pts) < 2 or pts[-1][0] == pts[0][0]:
        return None
    (c0, t0), (c1, t1) = pts[0], pts[-1]
    return c0, c1, (t1 - t0) / (c1 - c0)


def iommufd_breakdown(run):
    """MAP_FILE's cost per extra range beside the IOMMU driver's per extra run."""
    mf = per_extra(run.map_file, 'ranges', 'pair_ns')
    mp = per_extra(run.map_file, 'ranges', 'map_ns')
    io = per_extra(run.iommu, 'runs', 'ns')
    if mf is None or io is None:
        return None
    text = (f'iommufd MAP_FILE+UNMAP {mf[2]:.0f} ns per extra range ({mf[0]} to {mf[1]} ranges'
            + (f'; map alone {mp[2]:.0f}' if mp else '') + f'); iommu_map()+iommu_unmap() '
            f'alone {io[2]:.0f} ns per extra run ({io[0]} to {io[1]} runs): '
            f'{max(mf[2] - io[2], 0):.0f} ns per range above the IOMMU driver')
    return text


def per_importer(rows):
    """Per-importer cost over the lower and upper halves of (importers, ns) rows."""
    if len(rows) < 3:
        return None
    (k0, t0), (km, tm), (kn, tn) = rows[0], rows[len(rows) // 2], rows[-1]
    if km == k0 or kn == km:
        return None
    return (km, (tm - t0) / (km - k0)), (kn, (tn - tm) / (kn - km))


def size_str(n):
    for unit, name in ((1 << 30, 'GiB'), (1 << 20, 'MiB'), (1 << 10, 'KiB')):
        if n >= unit:
            return f'{n // unit} {name}'
    return f'{n} B'


def side_by_side(runs):
    """The module's time columns of every kernel, one line per row."""
    lines = ['ns per call pair (median); get: built per call, sh: shared; '
             'x columns: sg / get, sg / sh, sg+dma / sh of the first kernel']
    head = f'{"size":>8} {"ranges":>6} |'
    for run in runs:
        head += f' {run.kernel[:10]:>10}: {"get":>9} {"sh":>7} {"sg":>9} {"sg+dma":>9} |'
    lines.append(head + f' {"sg/get":>6} {"sg/sh":>6} {"dma/sh":>7}')
    keys = [(r['size'], r['ranges']) for r in runs[0].module]
    for size, ranges in keys:
        line = f'{size_str(int(size)):>8} {ranges:>6} |'
        first = None
        for run in runs:
            r = next((r for r in run.module if (r['size'], r['ranges']) == (size, ranges)), None)
            if r is None:
                line += ' ' * 50 + '|'
                continue
            first = first or r
            line += (f' {"":>10}  {r["mem_ns"]:>9} {r["shared_ns"]:>7} {r["sg_ns"]:>9} '
                     f'{r.get("sgd_ns", "-"):>9} |')
        if first:
            sg, mem, sh = num(first['sg_ns']), num(first['mem_ns']), num(first['shared_ns'])
            sgd = num(first.get('sgd_ns'))
            line += (f' {ratio(sg, mem):>6.2f} {ratio(sg, sh):>6.2f} '
                     + (f'{ratio(sgd, sh):>7.1f}' if sgd else f'{"-":>7}'))
        lines.append(line)
    return lines


def write_csv(path, runs):
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for run in runs:
            w.writerows(run.measurements())


def plot(outdir, runs):
    """The PNGs; returns their paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    paths = []

    def figure(name, title, draw, xlabel, ylabel, logx=True, logy=True):
        fig, axes = plt.subplots(1, len(runs), figsize=(6.4 * len(runs), 4.8), squeeze=False)
        for ax, run in zip(axes[0], runs):
            draw(ax, run)
            ax.set_title(f'{run.kernel} kernel')
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if logx:
                ax.set_xscale('log', base=2 if logx == 2 else 10)
            if logy:
                ax.set_yscale('log')
            ax.grid(True, which='both', alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize='small')
        fig.suptitle(title)
        fig.tight_layout()
        path = os.path.join(outdir, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    def ranges(ax, run):
        for case, prefix in MODULE_CASES:
            xs, ys = sweep(run.module, 'size', SWEEP_SIZE, prefix, 'ranges')
            if xs:
                ax.plot(xs, ys, marker='o', label=case)
        # Ranges longer than the bench's real block are fake P2P MMIO: no
        # RAM check per range, no sg+dma.
        mmio = [int(r['ranges']) for r in run.module
                if int(r['size']) == SWEEP_SIZE and r.get('memory') == 'mmio']
        if mmio:
            ax.axvspan(min(mmio) / 1.5, max(mmio) * 1.5, color='grey', alpha=0.12,
                       label='P2P MMIO ranges (else CPU)')

    figure('ranges.png', 'dma_buf_get_memory() against dma_buf_map_attachment(): '
           '1 GiB by range count', ranges, 'ranges', 'ns per call pair (median)', logx=2)

    def sizes(ax, run):
        for nr, style in ((1, '-'), (256, '--')):
            for case, prefix in (c for c in MODULE_CASES if c[1] in ('mem', 'shared', 'sg')):
                xs, ys = sweep(run.module, 'ranges', nr, prefix, 'size')
                if len(xs) > 1:
                    ax.plot(xs, ys, style, marker='o', label=f'{case}, {nr} range(s)')

    figure('sizes.png', 'by buffer size, at 1 and 256 ranges', sizes, 'bytes',
           'ns per call pair (median)')

    def map_file(ax, run):
        rows = sorted(run.map_file, key=lambda r: int(r['ranges']))
        xs = [int(r['ranges']) for r in rows]
        med = [num(r['pair_ns']) / 1000 for r in rows]
        lo = [m - num(r['pair_min_ns']) / 1000 for m, r in zip(med, rows)]
        hi = [num(r['pair_max_ns']) / 1000 - m for m, r in zip(med, rows)]
        if xs:
            ax.errorbar(xs, med, yerr=[lo, hi], marker='o', capsize=3,
                        label='MAP_FILE + UNMAP (median, min..max)')

    figure('iommufd.png', 'iommufd IOMMU_IOAS_MAP_FILE + UNMAP of 256 KiB by range count',
           map_file, 'ranges', 'us per pair', logx=2, logy=False)

    def revoke(ax, run):
        for layout in sorted({r['layout'] for r in run.revoke}):
            rows = sorted((int(r['importers']), num(r['revoke_ns']) / 1000) for r in run.revoke
                          if r['layout'] == layout)
            ax.plot([k for k, _ in rows], [t for _, t in rows], marker='o', label=layout)

    figure('revoke.png', 'revoke latency by importer count', revoke, 'importers',
           'us per revoke (median)', logx=False, logy=False)

    def kvm(ax, run):
        names = [r['config'] for r in run.kvm]
        per = [num(r['median_ns']) / int(r['pages']) for r in run.kvm]
        ax.bar(names, per)
        ax.tick_params(axis='x', labelrotation=20)

    figure('kvm.png', 'KVM: first touch of a 2 MiB slot by an L2 guest, per 4 KiB page', kvm,
           'slot', 'ns per 4 KiB page (median)', logx=False, logy=False)
    return paths


def main(argv):
    outdir, kernels = argv[1], argv[2:]
    runs = []
    for k in kernels:
        d = os.path.join(outdir, k)
        runs.append(Run(k, analyze.read_lines(os.path.join(d, 'results.log')),
                        analyze.read_lines(os.path.join(d, 'console.log'))))
    for run in runs:
        print(f'=== {run.kernel} kernel: bench/dmabuf_bench.ko ===')
        print('\n'.join(l for l in run.module_text if not l.startswith('row ')))
        for section in ('iommufd_bench', 'kvm_bench'):
            print(f'=== {run.kernel} kernel: {section} ===')
            print('\n'.join(l for l in run.tool_text[section] if not l.startswith('row ')))
        print()
    print('=== side by side ===')
    print('\n'.join(side_by_side(runs)))
    csv_path = os.path.join(outdir, 'results.csv')
    write_csv(csv_path, runs)
    pngs = plot(outdir, runs)
    print()
    for run in runs:
        print(f'=== goals, {run.kernel} kernel (ratios within its run) ===')
        for text, met in goals(run):
            print(f'{"met    " if met else "NOT met"}  {text}')
        for b in (breakdown(run), iommufd_breakdown(run)):
            if b:
                print(f'         {b}')
    passed = failed = 0
    for run in runs:
        for source, name, detail in run.tally.failures:
            print(f'FAIL [{run.kernel} {source}] {name}')
            if detail:
                print('\n'.join('    | ' + x for x in str(detail).splitlines()[:60]))
        passed += run.tally.passed
        failed += run.tally.failed
    print(f'bench: {sum(len(r.measurements()) for r in runs)} measurements in {csv_path}, '
          f'plots {", ".join(os.path.basename(p) for p in pngs)}; '
          f'{passed} checks passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
