//! `dmabuf-tool bench`: figures, not a test. Two measurements of iommufd
//! importing VFIO dma-bufs through `dma_buf_get_memory()`:
//!
//! - IOMMU_IOAS_MAP_FILE + IOMMU_IOAS_UNMAP of the same 256 KiB of ivshmem's
//!   BAR2 exported as 1 to 64 ranges (spaced twice their length apart, so
//!   nothing can merge them), in an IOAS edu and ivshmem are attached to, so
//!   every map fills a real intel-iommu page table. The goal: 64 ranges cost
//!   at most 1.2 times one range.
//! - Revoke latency with 0, 1, 8 and 64 importers of one dma-buf (each
//!   MAP_FILE is its own dma-buf attachment: iopt_map_dmabuf() attaches per
//!   mapping): the time of the config-space write that clears
//!   PCI_COMMAND.MEMORY on ivshmem, inside which vfio revokes the dma-buf,
//!   iommufd unmaps every importer and vfio waits for all of them. Importers
//!   either share the IOAS with the devices (each revoke unmaps a populated
//!   intel-iommu domain) or sit in IOASes of their own without a device (no
//!   domain: the dma-buf and iommufd bookkeeping alone). The goal: linear in
//!   importers.
//!
//! Every line starts with `dmabuf-tool bench: `; lines starting with `row `
//! after it are machine-readable (`key=value`).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use crate::args::size;
use crate::errno::{expect_errno, Error, Result};
use crate::iommufd::Iommufd;
use crate::pci::Sysfs;
use crate::report::Facts;
use crate::story::bind_all;
use crate::sys;
use crate::vfio::{VfioDevice, PCI_COMMAND, PCI_COMMAND_MEMORY};

const KIB: u64 = 1 << 10;
const BAR2: u32 = 2;

/// The bytes every MAP_FILE maps.
const BYTES: u64 = 256 * KIB;
/// Ranges the 256 KiB are split into.
const RANGE_COUNTS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];
const MAP_REPS: usize = 200;
/// Untimed rounds before the timed ones (allocator caches, page tables).
const WARMUP: usize = 10;
/// The goal of the range-count bench: 64 ranges <= this times 1 range.
const RANGE_GOAL: f64 = 1.2;

const IMPORTERS: [usize; 4] = [0, 1, 8, 64];
const REVOKE_REPS: usize = 50;

/// IOVAs: the MAP_FILE bench maps at MAP_IOVA; importer `i` of the revoke
/// bench at REVOKE_IOVA + i * BYTES in the shared IOAS, at REVOKE_IOVA in
/// its own IOAS; PROBE_IOVA is only for a MAP_FILE meant to fail.
const MAP_IOVA: u64 = 0x100_0000;
const REVOKE_IOVA: u64 = 0x200_0000;
const PROBE_IOVA: u64 = 0x800_0000;
const _: () = assert!(REVOKE_IOVA + 64 * BYTES <= PROBE_IOVA);

const PREFIX: &str = "dmabuf-tool bench: ";

/// `n` ranges that together hold `total` bytes, each `total / n` long and
/// starting twice that apart: [0, L), [2L, 3L), ... No two are adjacent.
pub fn spaced_ranges(total: u64, n: usize) -> Vec<(u64, u64)> {
    let len = total / n as u64;
    (0..n as u64).map(|i| (i * 2 * len, len)).collect()
}

/// The `p`-th percentile (0 < p <= 100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[u64], p: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p as usize).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Median, p90 and extremes of unsorted samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub median: u64,
    pub p90: u64,
    pub min: u64,
    pub max: u64,
}

impl Stats {
    pub fn of(samples: &[u64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_unstable();
        Stats {
            median: percentile(&s, 50),
            p90: percentile(&s, 90),
            min: s.first().copied().unwrap_or(0),
            max: s.last().copied().unwrap_or(0),
        }
    }
}

pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// ns elapsed since `t`.
fn ns(t: Instant) -> u64 {
    t.elapsed().as_nanos() as u64
}

/// Lines to `w`, each starting with `prefix`, flushed one by one.
pub(crate) struct Out<'a> {
    w: &'a mut dyn Write,
    prefix: &'static str,
}

impl<'a> Out<'a> {
    pub(crate) fn new(w: &'a mut dyn Write, prefix: &'static str) -> Self {
        Out { w, prefix }
    }

    pub(crate) fn line(&mut self, s: &str) {
        let _ = writeln!(self.w, "{}{s}", self.prefix);
        let _ = self.w.flush();
    }
}

/// The devices, in one IOAS, and ivshmem's PCI_COMMAND in its device fd.
struct Rig {
    iommufd: Iommufd,
    ivshmem: VfioDevice,
    _edu: VfioDevice,
    ioas: u32,
    command_off: u64,
}

impl Rig {
    fn open(out: &mut Out<'_>) -> Result<Self> {
        let sysfs = Sysfs::default();
        let mut facts = Facts::default();
        let devs = bind_all(&sysfs, &mut facts)?;
        let iommufd = Iommufd::open(&sysfs.iommu_dev()?)?;
        let open = |p: &Path| -> Result<VfioDevice> {
            let d = VfioDevice::open(p)?;
            d.bind_iommufd(&iommufd)?;
            Ok(d)
        };
        let ivshmem = open(&devs.ivshmem.1)?;
        let edu = open(&devs.edu.1)?;
        let ioas = iommufd.ioas_alloc()?;
        ivshmem.attach_ioas(ioas)?;
        edu.attach_ioas(ioas)?;
        let command_off = ivshmem.config_offset()? + PCI_COMMAND;
        out.line(&format!(
            "edu {} and ivshmem {} attached to IOAS {ioas} (one intel-iommu domain)",
            devs.edu.0, devs.ivshmem.0
        ));
        Ok(Rig {
            iommufd,
            ivshmem,
            _edu: edu,
            ioas,
            command_off,
        })
    }

    fn map(&self, ioas: u32, fd: &OwnedFd, iova: u64) -> Result<()> {
        self.iommufd.map_file(ioas, fd.as_fd(), 0, BYTES, iova)?;
        Ok(())
    }

    fn unmap(&self, ioas: u32, iova: u64) -> Result<()> {
        let n = self.iommufd.unmap(ioas, iova, BYTES)?;
        if n != BYTES {
            return Err(Error::msg(format!(
                "IOMMU_IOAS_UNMAP at {iova:#x} unmapped {n:#x} bytes, not {BYTES:#x}"
            )));
        }
        Ok(())
    }
}

/// One row of the range-count bench.
struct MapRow {
    ranges: usize,
    pair: Stats,
    map: Stats,
    unmap: Stats,
}

fn bench_ranges(rig: &Rig) -> Result<Vec<MapRow>> {
    let bufs = RANGE_COUNTS
        .iter()
        .map(|&n| rig.ivshmem.export_dma_buf(BAR2, &spaced_ranges(BYTES, n)))
        .collect::<Result<Vec<_>>>()?;
    let mut pair = vec![Vec::with_capacity(MAP_REPS); bufs.len()];
    let mut map = pair.clone();
    let mut unmap = pair.clone();
    // Round-robin over the range counts so drift hits all of them alike.
    for rep in 0..WARMUP + MAP_REPS {
        for (i, fd) in bufs.iter().enumerate() {
            let t0 = Instant::now();
            rig.map(rig.ioas, fd, MAP_IOVA)?;
            let t1 = Instant::now();
            rig.unmap(rig.ioas, MAP_IOVA)?;
            let t2 = Instant::now();
            if rep >= WARMUP {
                map[i].push((t1 - t0).as_nanos() as u64);
                unmap[i].push((t2 - t1).as_nanos() as u64);
                pair[i].push((t2 - t0).as_nanos() as u64);
            }
        }
    }
    for fd in bufs {
        sys::close(fd).map_err(|e| Error::io("close a dma-buf", e))?;
    }
    Ok(RANGE_COUNTS
        .iter()
        .enumerate()
        .map(|(i, &ranges)| MapRow {
            ranges,
            pair: Stats::of(&pair[i]),
            map: Stats::of(&map[i]),
            unmap: Stats::of(&unmap[i]),
        })
        .collect())
}

/// Where the importers of the revoke bench live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// All in the IOAS of edu and ivshmem: each one is in the intel-iommu
    /// domain, which the revoke unmaps.
    Shared,
    /// One IOAS each, no device attached: no domain to unmap.
    Separate,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Shared => "shared-ioas",
            Layout::Separate => "own-ioas",
        }
    }
}

struct RevokeRow {
    layout: Layout,
    importers: usize,
    revoke: Stats,
    restore: Stats,
}

/// (IOAS, IOVA) of importer `i`.
fn importer_at(rig: &Rig, layout: Layout, own: &[u32], i: usize) -> (u32, u64) {
    match layout {
        Layout::Shared => (rig.ioas, REVOKE_IOVA + i as u64 * BYTES),
        Layout::Separate => (own[i], REVOKE_IOVA),
    }
}

fn set_memory(rig: &Rig, command: u16, on: bool) -> Result<u64> {
    let v = if on {
        command | PCI_COMMAND_MEMORY
    } else {
        command & !PCI_COMMAND_MEMORY
    };
    let t = Instant::now();
    rig.ivshmem.pwrite16(rig.command_off, v)?;
    Ok(ns(t))
}

/// The (layout, importers) configurations, in the order they are printed.
fn revoke_configs() -> Vec<(Layout, usize)> {
    let mut v: Vec<(Layout, usize)> = IMPORTERS.iter().map(|&n| (Layout::Shared, n)).collect();
    // 0 importers is the same in both layouts.
    v.extend(
        IMPORTERS
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| (Layout::Separate, n)),
    );
    v
}

fn bench_revoke(rig: &Rig, own: &[u32]) -> Result<Vec<RevokeRow>> {
    let fd = rig.ivshmem.export_dma_buf(BAR2, &[(0, BYTES)])?;
    let command = rig.ivshmem.command()?;
    if command & PCI_COMMAND_MEMORY == 0 {
        return Err(Error::msg("ivshmem's PCI_COMMAND.MEMORY is off"));
    }
    let configs = revoke_configs();
    let mut revoke = vec![Vec::with_capacity(REVOKE_REPS); configs.len()];
    let mut restore = revoke.clone();
    // Round-robin over the configurations so drift hits all of them alike;
    // round 0 is untimed and checks that clearing MEMORY revokes.
    for rep in 0..1 + REVOKE_REPS {
        for (c, &(layout, n)) in configs.iter().enumerate() {
            let at: Vec<(u32, u64)> = (0..n).map(|i| importer_at(rig, layout, own, i)).collect();
            for &(ioas, iova) in &at {
                rig.map(ioas, &fd, iova)?;
            }
            let t_revoke = set_memory(rig, command, false)?;
            let probe = (rep == 0).then(|| {
                rig.iommufd
                    .map_file(rig.ioas, fd.as_fd(), 0, BYTES, PROBE_IOVA)
            });
            let t_restore = set_memory(rig, command, true)?;
            if let Some(p) = probe {
                expect_errno(p, libc::ENODEV)
                    .map_err(|e| Error::msg(format!("MAP_FILE while MEMORY was cleared: {e}")))?;
            }
            if rep > 0 {
                revoke[c].push(t_revoke);
                restore[c].push(t_restore);
            }
            // The mappings are dead but keep their IOVAs until unmapped.
            for &(ioas, iova) in &at {
                rig.unmap(ioas, iova)?;
            }
        }
    }
    sys::close(fd).map_err(|e| Error::io("close the dma-buf", e))?;
    Ok(configs
        .iter()
        .enumerate()
        .map(|(c, &(layout, importers))| RevokeRow {
            layout,
            importers,
            revoke: Stats::of(&revoke[c]),
            restore: Stats::of(&restore[c]),
        })
        .collect())
}

/// For each row, the cost of each importer added since the previous row of
/// its layout (the 0-importer row for the first): (revoke(N) - revoke(M)) /
/// (N - M). None for the 0-importer row.
fn marginal(rows: &[RevokeRow]) -> Vec<Option<i64>> {
    let zero = rows.iter().find(|r| r.importers == 0);
    rows.iter()
        .map(|r| {
            let prev = rows
                .iter()
                .filter(|p| p.layout == r.layout && p.importers < r.importers)
                .max_by_key(|p| p.importers)
                .or(zero)?;
            if prev.importers >= r.importers {
                return None;
            }
            let dn = (r.importers - prev.importers) as i64;
            Some((r.revoke.median as i64 - prev.revoke.median as i64) / dn)
        })
        .collect()
}

/// What kind of kernel the figures come from.
pub(crate) fn kernel_kind() -> String {
    let lockdep = Path::new("/proc/lockdep").exists();
    let kmemleak = Path::new("/sys/kernel/debug/kmemleak").exists();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "kernel {}, lockdep {}, kmemleak {}",
        release.trim(),
        if lockdep { "on" } else { "off" },
        if kmemleak { "on" } else { "off" }
    )
}

fn print_ranges(out: &mut Out<'_>, rows: &[MapRow]) {
    out.line(&format!(
        "IOMMU_IOAS_MAP_FILE + IOMMU_IOAS_UNMAP of {} of ivshmem BAR2, one VFIO dma-buf per range count, \
         ranges spaced twice their length apart; {MAP_REPS} pairs each (after {WARMUP} untimed)",
        size(BYTES)
    ));
    out.line("ns per call; x: pair median / the 1-range pair median");
    out.line(&format!(
        "{:>6} {:>10} | {:>10} {:>10} | {:>10} {:>10} | {:>6}",
        "ranges", "range", "pair med", "pair p90", "map med", "unmap med", "x"
    ));
    let base = rows.first().map_or(0, |r| r.pair.median);
    for r in rows {
        out.line(&format!(
            "{:>6} {:>10} | {:>10} {:>10} | {:>10} {:>10} | {:>6.2}",
            r.ranges,
            size(BYTES / r.ranges as u64),
            r.pair.median,
            r.pair.p90,
            r.map.median,
            r.unmap.median,
            ratio(r.pair.median, base)
        ));
    }
    if let Some(last) = rows.last() {
        let x = ratio(last.pair.median, base);
        out.line(&format!(
            "goal {} ranges <= {RANGE_GOAL}x of 1 range: {x:.2}x, {}",
            last.ranges,
            if x <= RANGE_GOAL { "met" } else { "NOT met" }
        ));
    }
}

fn print_revoke(out: &mut Out<'_>, rows: &[RevokeRow]) {
    out.line(&format!(
        "revoke: pwrite clearing PCI_COMMAND.MEMORY on ivshmem (vfio revokes the dma-buf, iommufd unmaps \
         every importer, vfio waits for them); restore: the pwrite setting it again; \
         one {} dma-buf, each importer one MAP_FILE of all of it; median of {REVOKE_REPS} rounds",
        size(BYTES)
    ));
    out.line(
        "shared-ioas: importers in the IOAS of edu and ivshmem (intel-iommu domain to unmap); \
         own-ioas: one IOAS each, no device, no domain",
    );
    out.line(
        "ns; per imp: revoke / importers; marginal: revoke time added per importer \
         since the row above (since 0 importers for the first of a layout)",
    );
    out.line(&format!(
        "{:>11} {:>9} | {:>10} {:>10} | {:>10} {:>10} | {:>11}",
        "layout", "importers", "revoke med", "revoke p90", "per imp", "marginal", "restore med"
    ));
    let marg = marginal(rows);
    for (r, m) in rows.iter().zip(&marg) {
        let per = match r.importers {
            0 => "-".to_string(),
            n => (r.revoke.median / n as u64).to_string(),
        };
        let m = m.map_or("-".to_string(), |m| m.to_string());
        out.line(&format!(
            "{:>11} {:>9} | {:>10} {:>10} | {:>10} {:>10} | {:>11}",
            r.layout.name(),
            r.importers,
            r.revoke.median,
            r.revoke.p90,
            per,
            m,
            r.restore.median
        ));
    }
    for layout in [Layout::Shared, Layout::Separate] {
        let at = |n: usize| {
            rows.iter()
                .zip(&marg)
                .find(|(r, _)| r.layout == layout && r.importers == n)
                .and_then(|(_, m)| *m)
        };
        if let (Some(m8), Some(m64)) = (at(8), at(64)) {
            out.line(&format!(
                "{}: marginal cost per importer from 8 to 64 / from 1 to 8: {:.2} (1.00 = linear)",
                layout.name(),
                m64 as f64 / m8 as f64
            ));
        }
    }
}

fn print_rows(out: &mut Out<'_>, maps: &[MapRow], revokes: &[RevokeRow]) {
    for r in maps {
        out.line(&format!(
            "row map_file bytes={BYTES} ranges={} reps={MAP_REPS} pair_ns={} pair_p90_ns={} \
             pair_min_ns={} pair_max_ns={} map_ns={} map_p90_ns={} unmap_ns={} unmap_p90_ns={}",
            r.ranges,
            r.pair.median,
            r.pair.p90,
            r.pair.min,
            r.pair.max,
            r.map.median,
            r.map.p90,
            r.unmap.median,
            r.unmap.p90
        ));
    }
    for r in revokes {
        out.line(&format!(
            "row revoke layout={} bytes={BYTES} importers={} reps={REVOKE_REPS} revoke_ns={} \
             revoke_p90_ns={} revoke_min_ns={} revoke_max_ns={} restore_ns={} restore_p90_ns={}",
            r.layout.name(),
            r.importers,
            r.revoke.median,
            r.revoke.p90,
            r.revoke.min,
            r.revoke.max,
            r.restore.median,
            r.restore.p90
        ));
    }
}

fn bench(out: &mut Out<'_>) -> Result<()> {
    out.line(&kernel_kind());
    let rig = Rig::open(out)?;
    let maps = bench_ranges(&rig)?;
    print_ranges(out, &maps);

    let max = *IMPORTERS.iter().max().unwrap_or(&0);
    let own = (0..max)
        .map(|_| rig.iommufd.ioas_alloc())
        .collect::<Result<Vec<_>>>()?;
    let revokes = bench_revoke(&rig, &own)?;
    print_revoke(out, &revokes);
    for id in own {
        rig.iommufd.destroy(id)?;
    }
    print_rows(out, &maps, &revokes);
    Ok(())
}

/// Run the benchmark, printing to `w`; returns whether it finished.
pub fn run(w: &mut dyn Write) -> bool {
    let mut out = Out::new(w, PREFIX);
    match bench(&mut out) {
        Ok(()) => {
            out.line("done");
            true
        }
        Err(e) => {
            out.line(&format!("failed: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing() {
        assert_eq!(spaced_ranges(BYTES, 1), [(0, BYTES)]);
        for n in RANGE_COUNTS {
            let r = spaced_ranges(BYTES, n);
            assert_eq!(r.len(), n);
            assert_eq!(r.iter().map(|x| x.1).sum::<u64>(), BYTES);
            for w in r.windows(2) {
                // a gap as long as a range between neighbours
                assert_eq!(w[1].0, w[0].0 + 2 * w[0].1);
            }
            let (o, l) = r[n - 1];
            assert!(o + l <= 2 << 20, "{n} ranges leave the 2 MiB BAR");
            assert!(r.iter().all(|&(o, l)| o % 4096 == 0 && l % 4096 == 0));
        }
        assert_eq!(spaced_ranges(BYTES, 64)[1], (8192, 4096));
    }

    #[test]
    fn percentiles() {
        let s: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&s, 50), 5);
        assert_eq!(percentile(&s, 90), 9);
        assert_eq!(percentile(&s, 100), 10);
        assert_eq!(percentile(&[7], 50), 7);
        assert_eq!(percentile(&[], 50), 0);
        let st = Stats::of(&[30, 10, 20]);
        assert_eq!(
            st,
            Stats {
                median: 20,
                p90: 30,
                min: 10,
                max: 30
            }
        );
    }

    fn row(layout: Layout, importers: usize, median: u64) -> RevokeRow {
        let st = Stats {
            median,
            p90: median,
            min: median,
            max: median,
        };
        RevokeRow {
            layout,
            importers,
            revoke: st,
            restore: st,
        }
    }

    #[test]
    fn marginal_costs() {
        let rows = [
            row(Layout::Shared, 0, 100),
            row(Layout::Shared, 1, 110),
            row(Layout::Shared, 8, 180),
            row(Layout::Shared, 64, 740),
            row(Layout::Separate, 1, 105),
            row(Layout::Separate, 8, 140),
        ];
        assert_eq!(
            marginal(&rows),
            [None, Some(10), Some(10), Some(10), Some(5), Some(5)]
        );
        assert_eq!(revoke_configs().len(), 7);
        assert_eq!(revoke_configs()[4], (Layout::Separate, 1));
    }
}
