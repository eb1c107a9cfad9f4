#!/usr/bin/env python3
"""Tests of scripts/bench_report.py: parsing, CSV rows, goals (no plots: make
bench draws those, with Debian's matplotlib, which make check does not install)."""

import csv
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_report  # noqa: E402

G = 1 << 30


def module_row(size, ranges, mem, shared, sg, sgd=None):
    sgd_s = '-' if sgd is None else str(sgd)
    return (f'dmabuf-bench: row size={size} ranges={ranges} memory=cpu mem_ns={mem} '
            f'mem_ns_min={mem - 1} mem_ns_max={mem + 1} mem_iters=64 mem_batches=15 mem_bytes=96 '
            f'mem_allocs=2 shared_ns={shared} shared_ns_min={shared} shared_ns_max={shared} '
            f'shared_iters=64 shared_batches=15 sg_ns={sg} sg_ns_min={sg} sg_ns_max={sg} '
            f'sg_iters=32 sg_batches=15 sg_nents={ranges} sg_bytes=4096 sg_allocs=2 '
            f'sgd_ns={sgd_s} sgd_ns_min={sgd or 0} sgd_ns_max={sgd or 0} sgd_iters=1 '
            f'sgd_batches=5 sgd_nents=1')


def results(module_rows, map_rows=(), revoke_rows=(), kvm_rows=(), finished=True):
    lines = ['### begin bench'] + [l for l in module_rows]
    if finished:
        lines.append('dmabuf-bench: done')
    lines += ['### end bench rc=0', '### begin rmmod', '### end rmmod rc=0']
    lines += ['### begin iommufd_bench'] + [f'dmabuf-tool bench: {l}' for l in map_rows]
    lines += [f'dmabuf-tool bench: {l}' for l in revoke_rows]
    lines += ['dmabuf-tool bench: done', '### end iommufd_bench rc=0']
    lines += ['### begin kvm_bench'] + [f'dmabuf-tool kvm-bench: {l}' for l in kvm_rows]
    lines += ['dmabuf-tool kvm-bench: done', '### end kvm_bench rc=0']
    return lines


def map_row(ranges, ns):
    return (f'row map_file bytes=262144 ranges={ranges} reps=200 pair_ns={ns} pair_p90_ns={ns} '
            f'pair_min_ns={ns - 10} pair_max_ns={ns + 10} map_ns=1 map_p90_ns=1 unmap_ns=1 '
            f'unmap_p90_ns=1')


def revoke_row(importers, ns, layout='shared'):
    return (f'row revoke layout={layout} bytes=262144 importers={importers} reps=50 '
            f'revoke_ns={ns} revoke_p90_ns={ns} revoke_min_ns={ns} revoke_max_ns={ns} '
            f'restore_ns=1 restore_p90_ns=1')


KVM = ['row kvm config=anon-4k pages=512 reps=3 min_ns=90 median_ns=100 max_ns=110 '
       'ns_per_page=0 pages_4k=512 pages_2m=0',
       'row kvm config=dmabuf-1x2m pages=512 reps=3 min_ns=10 median_ns=20 max_ns=30 '
       'ns_per_page=0 pages_4k=0 pages_2m=1',
       'row kvm_ratio dmabuf=dmabuf-2x1m anon=anon-4k x=1.10 entries=4K anon_entries=4K '
       'same_entries=yes']


class ReportTest(unittest.TestCase):
    def run_of(self, lines, kernel='production', console=()):
        return bench_report.Run(kernel, lines, list(console))

    def test_csv_rows(self):
        run = self.run_of(results([module_row(G, 1, 100, 10, 200, 5000)], [map_row(1, 1000)],
                                  [revoke_row(0, 500)], KVM))
        self.assertEqual(run.tally.failed, 0, run.tally.failures)
        m = run.measurements()
        cases = [r['case'] for r in m]
        self.assertEqual(cases, ['get_memory', 'shared', 'sg', 'sg+dma', 'iommufd_map_file+unmap',
                                 'revoke', 'kvm_first_touch', 'kvm_first_touch'])
        get = m[0]
        self.assertEqual((get['median_ns'], get['min_ns'], get['max_ns'], get['samples'],
                          get['calls_per_sample']), (100, 99, 101, 15, 64))
        self.assertEqual(get['params'], f'size={G} ranges=1 memory=cpu')
        self.assertEqual((m[4]['min_ns'], m[4]['max_ns'], m[4]['samples']), (990, 1010, 200))
        self.assertEqual(m[7]['params'], 'config=dmabuf-1x2m pages=512')
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, 'r.csv')
            bench_report.write_csv(path, [run])
            with open(path) as f:
                rows = list(csv.DictReader(f))
            self.assertEqual(list(rows[0].keys()), bench_report.CSV_FIELDS)
            self.assertEqual(len(rows), 8)
            self.assertEqual(rows[0]['kernel'], 'production')

    def test_parts(self):
        part = ('dmabuf-bench: row part name=xa_alloc+xa_erase ns=40 ns_min=39 ns_max=45 '
                'iters=65536 batches=15')
        run = self.run_of(results([module_row(G, 1, 100, 10, 200), part]))
        self.assertEqual(len(run.module), 1)
        m = [r for r in run.measurements() if r['case'].startswith('part:')]
        self.assertEqual(m, [dict(kernel='production', case='part:xa_alloc+xa_erase', params='',
                                  median_ns=40, min_ns=39, max_ns=45, samples=15,
                                  calls_per_sample=65536)])
        self.assertEqual(bench_report.breakdown(run), 'shared get+put 10 ns (1 GiB, 1 range); '
                         'its parts alone, ns: xa_alloc+xa_erase 40')

    def test_no_sgd_column_where_absent(self):
        run = self.run_of(results([module_row(G, 1, 100, 10, 200)]))
        self.assertNotIn('sg+dma', [r['case'] for r in run.measurements()])

    def test_unfinished_bench_fails(self):
        run = self.run_of(results([module_row(G, 1, 100, 10, 200)], [map_row(1, 1000)],
                                  kvm_rows=KVM, finished=False))
        self.assertEqual([f[1] for f in run.tally.failures], ['benchmark finished'])

    def test_kernel_report_fails(self):
        run = self.run_of(results([module_row(G, 1, 100, 10, 200)]),
                          console=['[    1.000000] BUG: KASAN: use-after-free in x'])
        self.assertTrue(run.tally.failed)

    def goals(self, rows, **kw):
        return dict((t.split(':')[0], met) for t, met in
                    bench_report.goals(self.run_of(results(rows, **kw))))

    def test_goals(self):
        good = [module_row(G, n, 100, 10, 300, 10000) for n in (1, 256, 65536)]
        g = self.goals(good, map_rows=[map_row(1, 1000), map_row(64, 1100)],
                       revoke_rows=[revoke_row(0, 100), revoke_row(8, 900), revoke_row(64, 7300)],
                       kvm_rows=KVM)
        self.assertTrue(all(g.values()), g)
        # Built per call slower than sg at one range count; shared not flat;
        # sg+dma only 5x; MAP_FILE 2x; revoke quadratic; KVM 1.5x.
        bad = [module_row(G, 1, 100, 10, 300, 10000), module_row(G, 256, 400, 30, 300, 2000),
               module_row(G, 65536, 100, 10, 300, 150)]
        g = self.goals(bad, map_rows=[map_row(1, 1000), map_row(64, 2000)],
                       revoke_rows=[revoke_row(0, 100), revoke_row(8, 900), revoke_row(64, 70000)],
                       kvm_rows=KVM[:2] + [KVM[2].replace('x=1.10', 'x=1.50')])
        self.assertFalse(g['built per call faster than sg at every range count (1 GiB)'])
        self.assertFalse(g['built per call >= 1.5x faster than sg from 256 ranges'])
        self.assertFalse(g['shared flat within 1.2x from 1 to 65536 ranges'])
        self.assertFalse(g['>= 10x faster than sg+dma at every row (3 rows)'])
        self.assertFalse(g['iommufd MAP_FILE+UNMAP of 64 ranges within 1.2x of 1'])
        self.assertFalse(g['revoke linear in importers (shared)'])
        self.assertFalse(g['KVM first touch dmabuf-2x1m / anon-4k (4K entries)'])
        self.assertTrue(g['2 MiB-aligned dma-buf mapped with 2M entries'])

    def test_sweep_and_side_by_side(self):
        rows = [module_row(G, n, 10 * n, 10, 20 * n) for n in (16, 1, 4)]
        run = self.run_of(results(rows + [module_row(1 << 20, 1, 5, 5, 5)]))
        self.assertEqual(bench_report.sweep(run.module, 'size', G, 'mem', 'ranges'),
                         ([1, 4, 16], [10, 40, 160]))
        debug = self.run_of(results(rows), kernel='debug')
        lines = bench_report.side_by_side([run, debug])
        self.assertEqual(len(lines), 2 + 4)
        self.assertIn('production', lines[1])
        self.assertIn('debug', lines[1])
        self.assertTrue(lines[-1].startswith('   1 MiB'))
        self.assertIn(' ' * 50 + '|', lines[-1])   # no debug row of that size

    def test_iommu_breakdown(self):
        iommu = [f'dmabuf-bench: row iommu runs={n} bytes=262144 ns={ns} ns_min={ns - 5} '
                 f'ns_max={ns + 5} iters=128 batches=15' for n, ns in ((1, 2000), (64, 8300))]
        run = self.run_of(results([module_row(G, 1, 100, 10, 200)] + iommu,
                                  [map_row(1, 10000), map_row(64, 41500)]))
        m = [r for r in run.measurements() if r['case'] == 'iommu_map+unmap']
        self.assertEqual([(r['params'], r['median_ns'], r['samples'], r['calls_per_sample'])
                          for r in m], [('bytes=262144 runs=1', 2000, 15, 128),
                                        ('bytes=262144 runs=64', 8300, 15, 128)])
        # (41500 - 10000) / 63 = 500 per range, (8300 - 2000) / 63 = 100 per run.
        self.assertEqual(bench_report.iommufd_breakdown(run),
                         'iommufd MAP_FILE+UNMAP 500 ns per extra range (1 to 64 ranges; map '
                         'alone 0); iommu_map()+iommu_unmap() alone 100 ns per extra run '
                         '(1 to 64 runs): 400 ns per range above the IOMMU driver')
        self.assertIsNone(bench_report.iommufd_breakdown(
            self.run_of(results([module_row(G, 1, 100, 10, 200)], [map_row(1, 10000)]))))

    def test_per_importer(self):
        self.assertEqual(bench_report.per_importer([(0, 0), (8, 80), (64, 640)]),
                         ((8, 10.0), (64, 10.0)))
        self.assertIsNone(bench_report.per_importer([(0, 0), (8, 80)]))


if __name__ == '__main__':
    unittest.main()
