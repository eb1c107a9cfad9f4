//! `dmabuf-tool kvm-bench`: figures, not a test. What an L2 guest's first
//! write to each page of a memslot costs when the slot is a dma-buf
//! (`KVM_MEM_DMABUF`: ivshmem's BAR2 exported by vfio-pci) against
//! anonymous memory, for the same NPT entry size. Four configurations of a
//! 2 MiB slot (512 pages) at a 2 MiB-aligned GPA:
//!
//! - `anon-4k`: anonymous memory, `MADV_NOHUGEPAGE`, pre-touched by the host
//!   (no host page fault is measured): 4K entries;
//! - `anon-thp`: 2 MiB-aligned anonymous memory, `MADV_HUGEPAGE`, pre-touched:
//!   one 2M entry if THP gave it a huge page (THP may be unavailable: the
//!   region's `AnonHugePages` is printed);
//! - `dmabuf-2x1m`: BAR2 as two 1 MiB ranges (`BAR2_RANGES`): no 2 MiB block
//!   is contiguous, so 4K entries; a 2M entry fails the run;
//! - `dmabuf-1x2m`: BAR2 as one 2 MiB range: one 2M entry when BAR2 is 2 MiB
//!   aligned in host physical memory (sysfs `resource`), anything else then
//!   fails the run; when it is not aligned, the output says so.
//!
//! One VM (`kvm_guest::Guest`: code slot 0, one vCPU). In each round, for
//! each configuration in turn: slot 1 is created, the L2 code (32-bit
//! protected mode, no paging) writes one byte to every page of it and halts,
//! the KVM_RUN until HLT is timed (wall clock), `pages_4k` and `pages_2m` of
//! the VM's binary stats are read before and after the run (the deltas: the
//! NPT entries of each size the run created), and the slot is deleted, which
//! zaps its mappings.
//!
//! Every line starts with `dmabuf-tool kvm-bench: `; lines starting with
//! `row ` after it are machine-readable (`key=value`; an entry count that
//! differs between rounds is printed as `a/b/c`). The command fails when a
//! configuration does (its setup, the slot, an exit other than HLT such as
//! KVM_EXIT_MMIO, a loop that did not finish, the entry counts above),
//! never because of a time.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::Kvm;

use crate::args::{size, span};
use crate::bench::{kernel_kind, percentile, ratio, Out};
use crate::errno::{Context, Error, Result};
use crate::kvm::{open_ivshmem, Ivshmem, MemoryRegion2, BAR2, BAR2_RANGES, MIB};
use crate::kvm_guest::{parse_resource, Exit, Guest, ENTRY};
use crate::mmap::Mapping;
use crate::report::Facts;

const PREFIX: &str = "dmabuf-tool kvm-bench: ";

const PAGE: u64 = 4096;
/// Pages of the slot, each written once per run.
const PAGES: u32 = 512;
const SLOT_SIZE: u64 = PAGES as u64 * PAGE;
const HUGE: u64 = 2 * MIB;
const SLOT: u32 = 1;
/// The slot's GPA: 2 MiB aligned, below 4 GiB (no paging in L2).
const GPA: u64 = 2 * MIB;
const _: () = assert!(SLOT_SIZE == HUGE && GPA % HUGE == 0 && GPA + SLOT_SIZE <= 1 << 32);
const REPS: usize = 3;
/// The byte L2 writes (AL).
const VAL: u8 = 0xa5;
/// A lone HLT in the code page after the program (at ENTRY): run before
/// each timed run, it maps the code page again if the last slot deletion
/// zapped every mapping of the VM, not only the slot's.
const HLT_AT: u64 = ENTRY + 0x800;

const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// The code, 32-bit: `mov ecx, pages; mov ebx, gpa; 1: mov [ebx], al;
/// add ebx, 0x1000; dec ecx; jnz 1b; hlt`.
pub fn touch_program(pages: u32, gpa: u32) -> Vec<u8> {
    let mut c = vec![0xb9];
    c.extend(pages.to_le_bytes());
    c.push(0xbb);
    c.extend(gpa.to_le_bytes());
    let top = c.len();
    c.extend([0x88, 0x03]);
    c.extend([0x81, 0xc3]);
    c.extend((PAGE as u32).to_le_bytes());
    c.push(0x49);
    // jnz rel8, relative to the end of its two bytes.
    let rel = top as isize - (c.len() as isize + 2);
    c.extend([0x75, rel as i8 as u8]);
    c.push(0xf4);
    c
}

/// Flat 32-bit protected mode without paging: CR0.PE, CS a 4 GiB code
/// segment, DS/ES/SS 4 GiB data segments, all based at 0.
pub fn flat_protected_mode(s: &mut kvm_sregs) {
    let seg = |selector, type_| kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    s.cs = seg(0x08, 0xb);
    let data = seg(0x10, 0x3);
    s.ds = data;
    s.es = data;
    s.ss = data;
    s.cr0 |= 1;
}

/// The smallest and the median (nearest rank) of samples; (0, 0) for none.
pub fn min_median(samples: &[u64]) -> (u64, u64) {
    let mut s = samples.to_vec();
    s.sort_unstable();
    (s.first().copied().unwrap_or(0), percentile(&s, 50))
}

/// "512" when every round created the same count, "512/510/512" otherwise.
pub fn counts(v: &[i64]) -> String {
    match v.first() {
        Some(f) if v.iter().all(|x| x == f) => f.to_string(),
        _ => v
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("/"),
    }
}

/// `AnonHugePages` (kB) of the mapping in `/proc/self/smaps` text that
/// contains `addr`.
pub fn parse_anon_huge_kb(smaps: &str, addr: u64) -> Option<u64> {
    let range = |l: &str| {
        let (a, b) = l.split_whitespace().next()?.split_once('-')?;
        Some((
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        ))
    };
    let mut inside = false;
    for l in smaps.lines() {
        if let Some((start, end)) = range(l) {
            inside = start <= addr && addr < end;
        } else if inside {
            if let Some(v) = l.strip_prefix("AnonHugePages:") {
                return v.trim().strip_suffix("kB")?.trim().parse().ok();
            }
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Config {
    Anon4k,
    AnonThp,
    DmaBufSplit,
    DmaBufWhole,
}

const CONFIGS: [Config; 4] = [
    Config::Anon4k,
    Config::AnonThp,
    Config::DmaBufSplit,
    Config::DmaBufWhole,
];

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Anon4k => "anon-4k",
            Config::AnonThp => "anon-thp",
            Config::DmaBufSplit => "dmabuf-2x1m",
            Config::DmaBufWhole => "dmabuf-1x2m",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Config::Anon4k => "anonymous, MADV_NOHUGEPAGE, pre-touched",
            Config::AnonThp => "anonymous, 2 MiB aligned, MADV_HUGEPAGE, pre-touched",
            Config::DmaBufSplit => "dma-buf of BAR2 as two 1 MiB ranges",
            Config::DmaBufWhole => "dma-buf of BAR2 as one 2 MiB range",
        }
    }

    /// The anonymous configuration a dma-buf one is compared with.
    fn baseline(self) -> Option<Config> {
        match self {
            Config::DmaBufSplit => Some(Config::Anon4k),
            Config::DmaBufWhole => Some(Config::AnonThp),
            _ => None,
        }
    }
}

/// What one run created: its time and the NPT entries of each size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    ns: u64,
    p4k: i64,
    p2m: i64,
}

/// The entry counts `config` must create; `aligned`: whether BAR2 is 2 MiB
/// aligned in host physical memory, None when unknown.
fn check_entries(config: Config, s: &Sample, aligned: Option<bool>) -> Result<()> {
    match config {
        Config::DmaBufSplit if s.p2m != 0 => Err(Error::msg(format!(
            "{} 2M entries for a slot whose 2 MiB block spans two ranges",
            s.p2m
        ))),
        Config::DmaBufWhole if aligned == Some(true) && s.p2m != 1 => Err(Error::msg(format!(
            "{} 2M entries (pages_4k +{}): BAR2 is one 2 MiB-aligned range, expected one",
            s.p2m, s.p4k
        ))),
        _ => Ok(()),
    }
}

/// What backs slot 1 in a configuration.
enum Backing {
    /// `map[off, off + SLOT_SIZE)`.
    Anon {
        map: Mapping,
        off: usize,
    },
    DmaBuf(OwnedFd),
}

impl Backing {
    fn region(&self) -> MemoryRegion2 {
        match self {
            Backing::Anon { map, off } => MemoryRegion2 {
                slot: SLOT,
                guest_phys_addr: GPA,
                memory_size: SLOT_SIZE,
                userspace_addr: map.addr() + *off as u64,
                ..Default::default()
            },
            Backing::DmaBuf(fd) => MemoryRegion2::dmabuf(SLOT, GPA, SLOT_SIZE, fd.as_raw_fd(), 0),
        }
    }
}

/// 2 MiB of anonymous memory at a 2 MiB-aligned address, advised `huge` or
/// not, every page written by the host (populated before KVM sees it).
fn anonymous(huge: bool) -> Result<Backing> {
    let map = Mapping::anonymous((SLOT_SIZE + HUGE) as usize).op("mmap anonymous memory")?;
    let off = (map.addr().next_multiple_of(HUGE) - map.addr()) as usize;
    map.advise_huge(off, SLOT_SIZE as usize, huge).op(if huge {
        "madvise(MADV_HUGEPAGE)"
    } else {
        "madvise(MADV_NOHUGEPAGE)"
    })?;
    for p in 0..PAGES as usize {
        map.write_bytes(off + p * PAGE as usize, &[0x5a]);
    }
    Ok(Backing::Anon { map, off })
}

/// BAR2's host physical start, from sysfs.
fn bar2_start(bdf: &str) -> Option<u64> {
    let t = std::fs::read_to_string(format!("/sys/bus/pci/devices/{bdf}/resource")).ok()?;
    parse_resource(&t, BAR2 as usize).map(|(start, _)| start)
}

/// The touch program at ENTRY, a HLT at HLT_AT.
fn load(g: &Guest) -> Result<()> {
    let prog = touch_program(PAGES, GPA as u32);
    if ENTRY + prog.len() as u64 > HLT_AT {
        return Err(Error::msg("the program overlaps the HLT after it"));
    }
    g.code.write_bytes(ENTRY as usize, &prog);
    g.code.write_bytes(HLT_AT as usize, &[0xf4]);
    Ok(())
}

/// Point the vCPU at `rip` in flat protected mode, AL = VAL.
fn start(g: &Guest, rip: u64) -> Result<()> {
    let mut sregs = g
        .vcpu
        .get_sregs()
        .map_err(|e| Error::sys("KVM_GET_SREGS", e.errno()))?;
    flat_protected_mode(&mut sregs);
    g.vcpu
        .set_sregs(&sregs)
        .map_err(|e| Error::sys("KVM_SET_SREGS", e.errno()))?;
    let regs = kvm_regs {
        rip,
        rflags: 2,
        rax: VAL.into(),
        ..Default::default()
    };
    g.vcpu
        .set_regs(&regs)
        .map_err(|e| Error::sys("KVM_SET_REGS", e.errno()))
}

/// KVM_RUN until the loaded program halts.
fn run_to_hlt(g: &mut Guest) -> Result<()> {
    match g.run()? {
        Exit::Hlt => Ok(()),
        other => Err(Error::msg(format!("expected HLT, got {other:?}"))),
    }
}

/// One run: create the slot, time L2 writing to every page until HLT,
/// count the entries it created, delete the slot.
fn once(g: &mut Guest, b: &Backing) -> Result<Sample> {
    g.set(b.region())?;
    let res = (|| {
        // Untimed, uncounted: the code page mapped.
        start(g, HLT_AT)?;
        run_to_hlt(g).map_err(|e| Error::msg(format!("the lone HLT: {e}")))?;
        let before = g.pages()?;
        start(g, ENTRY)?;
        let t = Instant::now();
        let ran = run_to_hlt(g);
        let ns = t.elapsed().as_nanos() as u64;
        ran?;
        let after = g.pages()?;
        let regs = g
            .vcpu
            .get_regs()
            .map_err(|e| Error::sys("KVM_GET_REGS", e.errno()))?;
        let (ecx, ebx) = (regs.rcx & 0xffff_ffff, regs.rbx & 0xffff_ffff);
        if ecx != 0 || ebx != GPA + SLOT_SIZE {
            return Err(Error::msg(format!(
                "L2 halted with ecx {ecx:#x}, ebx {ebx:#x}: the loop did not finish"
            )));
        }
        Ok(Sample {
            ns,
            p4k: after.p4k as i64 - before.p4k as i64,
            p2m: after.p2m as i64 - before.p2m as i64,
        })
    })();
    let del = g.set(MemoryRegion2::delete(SLOT));
    let s = res?;
    del?;
    Ok(s)
}

/// A configuration's rounds, or why it stopped.
struct Row {
    config: Config,
    samples: Vec<Sample>,
    error: Option<String>,
}

impl Row {
    fn ok(&self) -> bool {
        self.error.is_none() && self.samples.len() == REPS
    }

    fn times(&self) -> (u64, u64) {
        min_median(&self.samples.iter().map(|s| s.ns).collect::<Vec<_>>())
    }

    fn p4k(&self) -> String {
        counts(&self.samples.iter().map(|s| s.p4k).collect::<Vec<_>>())
    }

    fn p2m(&self) -> String {
        counts(&self.samples.iter().map(|s| s.p2m).collect::<Vec<_>>())
    }

    /// "4K" or "2M" when every round created only entries of that size for
    /// the slot's 2 MiB block, "no" when none counted any, "mixed" otherwise.
    fn entries(&self) -> &'static str {
        let s = &self.samples;
        if s.iter().all(|s| s.p2m == 0 && s.p4k == 0) {
            "no"
        } else if s.iter().all(|s| s.p2m == 0 && s.p4k > 0) {
            "4K"
        } else if s.iter().all(|s| s.p2m == 1) {
            "2M"
        } else {
            "mixed"
        }
    }
}

/// A dma-buf configuration against its anonymous baseline.
struct Ratio<'a> {
    dmabuf: &'a Row,
    anon: &'a Row,
    x: f64,
    same_entries: bool,
}

fn ratios(rows: &[Row]) -> Vec<Ratio<'_>> {
    rows.iter()
        .filter(|r| r.ok())
        .filter_map(|r| {
            let base = r.config.baseline()?;
            let anon = rows.iter().find(|a| a.config == base && a.ok())?;
            Some(Ratio {
                dmabuf: r,
                anon,
                x: ratio(r.times().1, anon.times().1),
                same_entries: r.entries() == anon.entries(),
            })
        })
        .collect()
}

fn print_table(out: &mut Out<'_>, rows: &[Row]) {
    out.line(&format!(
        "L2 (32-bit protected mode, no paging) writes one byte to each of the {PAGES} pages of \
         slot {SLOT}, GPA {}, then HLT; the slot is created before and deleted after each run; \
         {REPS} rounds, round-robin over the configurations",
        span(GPA, SLOT_SIZE)
    ));
    out.line(
        "ns: wall clock of KVM_RUN until HLT; ns/page: median / pages; 4K, 2M: NPT entries \
         the run created (pages_4k, pages_2m of the VM's binary stats, after - before); \
         x anon: median / the median of the anonymous configuration named",
    );
    out.line(&format!(
        "{:>11} | {:>10} {:>10} {:>8} | {:>5} {:>5} | {:<16} | {}",
        "config", "min ns", "median ns", "ns/page", "4K", "2M", "x anon", "backing"
    ));
    let ratios = ratios(rows);
    for r in rows {
        if let Some(e) = &r.error {
            out.line(&format!("{:>11} | FAILED: {e}", r.config.name()));
            continue;
        }
        let (min, median) = r.times();
        let x = ratios
            .iter()
            .find(|q| q.dmabuf.config == r.config)
            .map_or("-".to_string(), |q| {
                format!("{:.2} of {}", q.x, q.anon.config.name())
            });
        out.line(&format!(
            "{:>11} | {min:>10} {median:>10} {:>8} | {:>5} {:>5} | {x:<16} | {}",
            r.config.name(),
            median / u64::from(PAGES),
            r.p4k(),
            r.p2m(),
            r.config.what()
        ));
    }
    if let Some(r) = rows.iter().find(|r| r.config == Config::AnonThp && r.ok()) {
        out.line(&format!(
            "anon-thp: a 2M entry: {}",
            match r.entries() {
                "2M" => "yes".to_string(),
                e => format!("no ({e} entries)"),
            }
        ));
    }
    for q in &ratios {
        out.line(&format!(
            "dma-buf / anonymous, {} entries: {} / {} = {:.2}{}",
            q.dmabuf.entries(),
            q.dmabuf.config.name(),
            q.anon.config.name(),
            q.x,
            if q.same_entries {
                String::new()
            } else {
                format!(
                    " (NOT the same entry size: {} got {} entries)",
                    q.anon.config.name(),
                    q.anon.entries()
                )
            }
        ));
    }
}

fn print_rows(out: &mut Out<'_>, rows: &[Row]) {
    for r in rows.iter().filter(|r| r.ok()) {
        let (min, median) = r.times();
        let max = r.samples.iter().map(|s| s.ns).max().unwrap_or(0);
        out.line(&format!(
            "row kvm config={} pages={PAGES} reps={REPS} min_ns={min} median_ns={median} \
             max_ns={max} ns_per_page={} pages_4k={} pages_2m={}",
            r.config.name(),
            median / u64::from(PAGES),
            r.p4k(),
            r.p2m()
        ));
    }
    for q in ratios(rows) {
        out.line(&format!(
            "row kvm_ratio dmabuf={} anon={} x={:.2} entries={} anon_entries={} same_entries={}",
            q.dmabuf.config.name(),
            q.anon.config.name(),
            q.x,
            q.dmabuf.entries(),
            q.anon.entries(),
            if q.same_entries { "yes" } else { "no" }
        ));
    }
}

/// Set up every configuration's backing (None, with the error in its row,
/// when that fails) and say what it got.
fn backings(
    out: &mut Out<'_>,
    ivshmem: &Result<Ivshmem>,
    rows: &mut [Row],
) -> Vec<Option<Backing>> {
    let mut v = Vec::new();
    for row in rows.iter_mut() {
        let b = match row.config {
            Config::Anon4k => anonymous(false),
            Config::AnonThp => anonymous(true),
            Config::DmaBufSplit | Config::DmaBufWhole => match ivshmem {
                Ok(i) => {
                    let ranges: &[(u64, u64)] = if row.config == Config::DmaBufSplit {
                        &BAR2_RANGES
                    } else {
                        &[(0, SLOT_SIZE)]
                    };
                    i.dev.export_dma_buf(BAR2, ranges).map(Backing::DmaBuf)
                }
                Err(e) => Err(Error::msg(format!("ivshmem: {e}"))),
            },
        };
        if let (Config::AnonThp, Ok(Backing::Anon { map, off })) = (row.config, &b) {
            let at = map.addr() + *off as u64;
            let huge = std::fs::read_to_string("/proc/self/smaps")
                .ok()
                .and_then(|t| parse_anon_huge_kb(&t, at));
            let thp = std::fs::read_to_string(THP_ENABLED)
                .map_or_else(|_| "unreadable".to_string(), |t| t.trim().to_string());
            out.line(&format!(
                "anon-thp: THP {thp} ({THP_ENABLED}); AnonHugePages of its mapping: {}",
                huge.map_or("unknown".to_string(), |kb| format!("{kb} kB"))
            ));
        }
        match b {
            Ok(b) => v.push(Some(b)),
            Err(e) => {
                row.error = Some(format!("setup: {e}"));
                v.push(None);
            }
        }
    }
    v
}

fn bench(out: &mut Out<'_>) -> Result<bool> {
    out.line(&kernel_kind());
    let kvm = Kvm::new().map_err(|e| Error::sys("open /dev/kvm", e.errno()))?;
    let mut f = Facts::default();
    let ivshmem = open_ivshmem(&mut f);
    let aligned = match &ivshmem {
        Ok(i) => match bar2_start(&i.bdf) {
            Some(start) if start % HUGE == 0 => {
                f.add(format!(
                    "BAR2 at host physical {start:#x}, 2 MiB aligned: \
                     dmabuf-1x2m must get one 2M entry"
                ));
                Some(true)
            }
            Some(start) => {
                f.add(format!(
                    "BAR2 at host physical {start:#x}, NOT 2 MiB aligned: \
                     no 2M entry is possible for dmabuf-1x2m"
                ));
                Some(false)
            }
            None => {
                f.add("BAR2's address is not readable from sysfs: dmabuf-1x2m's entries unchecked");
                None
            }
        },
        Err(e) => {
            f.add(format!("ivshmem: {e}: the dma-buf configurations fail"));
            None
        }
    };
    for l in f.lines() {
        out.line(l);
    }
    let mut rows: Vec<Row> = CONFIGS
        .iter()
        .map(|&config| Row {
            config,
            samples: Vec::with_capacity(REPS),
            error: None,
        })
        .collect();
    // Declared before the guest, so dropped after it: no slot can outlive
    // the memory behind it, even one whose deletion failed.
    let backings = backings(out, &ivshmem, &mut rows);

    let mut f = Facts::default();
    let mut g = Guest::new(&kvm, &mut f)?;
    for l in f.lines() {
        out.line(l);
    }
    load(&g)?;
    // Untimed: the vCPU's first entry.
    start(&g, HLT_AT)?;
    run_to_hlt(&mut g).map_err(|e| Error::msg(format!("warm-up: {e}")))?;

    for _ in 0..REPS {
        for (row, b) in rows.iter_mut().zip(&backings) {
            let Some(b) = b.as_ref().filter(|_| row.error.is_none()) else {
                continue;
            };
            match once(&mut g, b).and_then(|s| {
                check_entries(row.config, &s, aligned)?;
                Ok(s)
            }) {
                Ok(s) => row.samples.push(s),
                Err(e) => {
                    row.error = Some(format!("round {}: {e}", row.samples.len() + 1));
                }
            }
        }
    }
    print_table(out, &rows);
    print_rows(out, &rows);
    let failed: Vec<&Row> = rows.iter().filter(|r| !r.ok()).collect();
    for r in &failed {
        out.line(&format!(
            "failed: config={}: {}",
            r.config.name(),
            r.error.as_deref().unwrap_or("incomplete")
        ));
    }
    drop(g);
    drop(backings);
    if let Ok(i) = ivshmem {
        i.dev.close()?;
        i.iommufd.close()?;
    }
    if !failed.is_empty() {
        out.line(&format!(
            "failed: {} of {} configurations (a {} slot of {PAGES} pages)",
            failed.len(),
            rows.len(),
            size(SLOT_SIZE)
        ));
    }
    Ok(failed.is_empty())
}

/// Run the benchmark, printing to `w`; returns whether every configuration
/// finished as it must.
pub fn run(w: &mut dyn Write) -> bool {
    let mut out = Out::new(w, PREFIX);
    match bench(&mut out) {
        Ok(true) => {
            out.line("done");
            true
        }
        Ok(false) => false,
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
    fn program_bytes() {
        assert_eq!(
            touch_program(512, 0x20_0000),
            [
                0xb9, 0x00, 0x02, 0x00, 0x00, // mov ecx, 512
                0xbb, 0x00, 0x00, 0x20, 0x00, // mov ebx, 0x200000
                0x88, 0x03, // 1: mov [ebx], al
                0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, // add ebx, 0x1000
                0x49, // dec ecx
                0x75, 0xf5, // jnz 1b
                0xf4, // hlt
            ]
        );
    }

    #[test]
    fn protected_mode_segments() {
        let mut s = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        flat_protected_mode(&mut s);
        assert_eq!(s.cr0, 0x6000_0011);
        assert_eq!(
            (
                s.cs.base,
                s.cs.limit,
                s.cs.type_,
                s.cs.db,
                s.cs.g,
                s.cs.s,
                s.cs.present
            ),
            (0, 0xffff_ffff, 0xb, 1, 1, 1, 1)
        );
        assert_eq!(s.cs.l, 0);
        for d in [s.ds, s.es, s.ss] {
            assert_eq!(
                (d.base, d.limit, d.type_, d.db, d.g, d.s, d.present),
                (0, 0xffff_ffff, 0x3, 1, 1, 1, 1)
            );
        }
    }

    #[test]
    fn summaries() {
        assert_eq!(min_median(&[30, 10, 20]), (10, 20));
        assert_eq!(min_median(&[5]), (5, 5));
        assert_eq!(min_median(&[]), (0, 0));
        assert_eq!(counts(&[512, 512, 512]), "512");
        assert_eq!(counts(&[512, 510, 512]), "512/510/512");
        assert_eq!(counts(&[-1]), "-1");
        assert_eq!(counts(&[]), "");
    }

    fn row(config: Config, ns: [u64; 3], p2m: i64) -> Row {
        Row {
            config,
            samples: ns
                .iter()
                .map(|&ns| Sample {
                    ns,
                    p4k: if p2m == 0 { 512 } else { 0 },
                    p2m,
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn ratios_pair_each_dmabuf_with_its_anonymous_baseline() {
        let rows = [
            row(Config::Anon4k, [100, 200, 300], 0),
            row(Config::AnonThp, [40, 50, 60], 0),
            row(Config::DmaBufSplit, [250, 300, 400], 0),
            row(Config::DmaBufWhole, [10, 25, 30], 1),
        ];
        let q = ratios(&rows);
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].dmabuf.config, Config::DmaBufSplit);
        assert_eq!(q[0].anon.config, Config::Anon4k);
        assert!((q[0].x - 1.5).abs() < 1e-9);
        assert!(q[0].same_entries);
        // THP gave no huge page: compared, but not the same entry size.
        assert_eq!(q[1].anon.config, Config::AnonThp);
        assert!((q[1].x - 0.5).abs() < 1e-9);
        assert!(!q[1].same_entries);
        assert_eq!(rows[3].entries(), "2M");
        assert_eq!(rows[1].entries(), "4K");
        let mut none = row(Config::Anon4k, [1, 1, 1], 0);
        for s in &mut none.samples {
            s.p4k = 0;
        }
        assert_eq!(none.entries(), "no");
        none.samples[0].p2m = 1;
        assert_eq!(none.entries(), "mixed");

        let mut failed = rows;
        failed[0].error = Some("x".into());
        assert_eq!(ratios(&failed).len(), 1);
    }

    #[test]
    fn output_lines() {
        let mut rows = vec![
            row(Config::Anon4k, [100, 200, 300], 0),
            row(Config::AnonThp, [40, 50, 60], 1),
            row(Config::DmaBufSplit, [250, 300, 400], 0),
            row(Config::DmaBufWhole, [10, 25, 30], 1),
        ];
        rows[2].samples[1].p4k = 511;
        let mut buf = Vec::new();
        let mut out = Out::new(&mut buf, PREFIX);
        print_table(&mut out, &rows);
        print_rows(&mut out, &rows);
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.iter().all(|l| l.starts_with(PREFIX)));
        let lines: Vec<&str> = lines.iter().map(|l| &l[PREFIX.len()..]).collect();
        assert!(lines.contains(
            &"dmabuf-2x1m |        250        300        0 | 512/511/512     0 | 1.50 of anon-4k  \
              | dma-buf of BAR2 as two 1 MiB ranges"
        ));
        assert!(lines.contains(&"dma-buf / anonymous, 2M entries: dmabuf-1x2m / anon-thp = 0.50"));
        assert!(lines.contains(&"anon-thp: a 2M entry: yes"));
        assert!(lines.contains(
            &"row kvm config=anon-4k pages=512 reps=3 min_ns=100 median_ns=200 max_ns=300 \
              ns_per_page=0 pages_4k=512 pages_2m=0"
        ));
        assert!(lines.contains(
            &"row kvm config=dmabuf-2x1m pages=512 reps=3 min_ns=250 median_ns=300 \
              max_ns=400 ns_per_page=0 pages_4k=512/511/512 pages_2m=0"
        ));
        assert!(lines.contains(
            &"row kvm_ratio dmabuf=dmabuf-1x2m anon=anon-thp x=0.50 entries=2M anon_entries=2M \
              same_entries=yes"
        ));
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("row kvm ")).count(),
            4
        );
    }

    #[test]
    fn entry_rules() {
        let s = |p4k, p2m| Sample { ns: 1, p4k, p2m };
        assert!(check_entries(Config::DmaBufSplit, &s(512, 0), Some(true)).is_ok());
        assert!(check_entries(Config::DmaBufSplit, &s(0, 1), Some(true)).is_err());
        assert!(check_entries(Config::DmaBufWhole, &s(0, 1), Some(true)).is_ok());
        assert!(check_entries(Config::DmaBufWhole, &s(512, 0), Some(true)).is_err());
        assert!(check_entries(Config::DmaBufWhole, &s(512, 0), Some(false)).is_ok());
        assert!(check_entries(Config::DmaBufWhole, &s(512, 0), None).is_ok());
        assert!(check_entries(Config::AnonThp, &s(512, 0), Some(true)).is_ok());
        assert!(check_entries(Config::Anon4k, &s(0, 1), Some(true)).is_ok());
    }

    #[test]
    fn smaps_anon_huge() {
        let t = "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon\n\
                 Size:                328 kB\n\
                 AnonHugePages:         0 kB\n\
                 7f0000000000-7f0000200000 rw-p 00000000 00:00 0 \n\
                 Size:               2048 kB\n\
                 AnonHugePages:      2048 kB\n\
                 VmFlags: rd wr mr mw me ac hg\n\
                 7f0000200000-7f0000400000 rw-p 00000000 00:00 0\n\
                 AnonHugePages:         0 kB\n";
        assert_eq!(parse_anon_huge_kb(t, 0x7f00_0000_0000), Some(2048));
        assert_eq!(parse_anon_huge_kb(t, 0x7f00_001f_f000), Some(2048));
        assert_eq!(parse_anon_huge_kb(t, 0x7f00_0020_0000), Some(0));
        assert_eq!(parse_anon_huge_kb(t, 0x1000), None);
    }

    #[test]
    fn slot_regions() {
        let map = Mapping::anonymous(3 * PAGE as usize).unwrap();
        let at = map.addr();
        let r = Backing::Anon {
            map,
            off: PAGE as usize,
        }
        .region();
        assert_eq!(
            (r.slot, r.flags, r.guest_phys_addr, r.memory_size),
            (SLOT, 0, GPA, SLOT_SIZE)
        );
        assert_eq!(r.userspace_addr, at + PAGE);
    }
}
