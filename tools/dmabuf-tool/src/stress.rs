//! `dmabuf-tool stress`: the dma-buf paths on real devices, concurrently.
//! ivshmem (BAR2, bound to vfio-pci) and edu share one iommufd IOAS; for a
//! bounded number of iterations ([`MAPPER_ITERS`] + [`KVM_ITERS`]) or
//! [`BUDGET`], whichever comes first, scoped threads run:
//!
//! - the mapper: exports a three-range VFIO dma-buf of BAR2, maps it with
//!   `IOMMU_IOAS_MAP_FILE` at [`MAPPER_IOVA`], unmaps it, closes it (the
//!   descriptor is sometimes kept for several rounds, sometimes re-exported);
//! - the toggler: clears and sets PCI_COMMAND.MEMORY on ivshmem through
//!   VFIO's config space, with short sleeps (revoke, restore);
//! - the KVM thread: in one VM, creates and deletes a `KVM_MEM_DMABUF`
//!   memslot of a fresh or kept dma-buf.
//!
//! `make check` runs it in a boot of its own, under single-threaded TCG
//! (scripts/qemu.sh): its first run under multi-threaded TCG crashed the
//! emulator itself (QEMU 7.2, Debian 12: SIGSEGV of qemu-system-x86_64 about
//! 20 s in; the guest kernel had logged nothing wrong), a second run passed.
//! The suspect is QEMU's handling of memory-map changes (each
//! PCI_COMMAND.MEMORY toggle is two) while another vCPU runs; one host
//! thread running both vCPUs in turn rules that race out.
//!
//! Every call must succeed, or fail with ENODEV when memory decoding was off
//! at some point during it (the buffer revoked): [`Decoding`] keeps a
//! sequence number that is odd from just before decoding is turned off until
//! just after it is back on, read before and after each call
//! ([`enodev_allowed`]). Any other errno is a failure.
//!
//! Every few hundred mapper iterations (or seconds) the main thread samples
//! the data path with the toggler paused (it holds [`Decoding`]'s lock):
//! edu DMA-writes a pattern through a fresh mapping of the buffer while
//! decoding is on, and it must appear in the BAR (read through VFIO's mmap
//! of region 2); then, decoding off, edu's DMA to the same IOVA must not
//! land (the IOMMU faults it, inside an expect window for the log analyzer):
//! with decoding back on the BAR still holds the first pattern.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VmFd};
use libc::{ENODEV, ENOENT};

use crate::args::{size, span};
use crate::edu::{Edu, EDU_BUFFER, MAX_DMA};
use crate::errno::{Context, Error, Result};
use crate::fuzz::{self, Rng};
use crate::iommufd::Iommufd;
use crate::kmsg;
use crate::kvm::{self, MemoryRegion2, BAR2};
use crate::mmap::Mapping;
use crate::pci::{Sysfs, EDU};
use crate::report::{Facts, Runner};
use crate::story::{self, open_fds, pattern, prepare_target, verify_target, GUARD};
use crate::sys;
use crate::vfio::{VfioDevice, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Iterations of the mapper and the KVM thread: 10^4 in all.
pub const MAPPER_ITERS: u64 = 6_000;
pub const KVM_ITERS: u64 = 4_000;
/// Wall-clock budget of the worker threads (single-threaded TCG, KASAN,
/// UBSAN, lockdep: 60 s gave about 9 100 iterations in all).
pub const BUDGET: Duration = Duration::from_secs(100);

/// The three-range dma-buf of BAR2 every thread exports (as fuzz and failnth).
const RANGES: [(u64, u64); 3] = [(0, 64 * KIB), (MIB, 128 * KIB), (64 * KIB, 4 * KIB)];
const LEN: u64 = 196 * KIB;
const _: () = assert!(RANGES[0].1 + RANGES[1].1 + RANGES[2].1 == LEN);

/// IOVAs, all below edu's 28-bit DMA mask and apart.
const STAGING_IOVA: u64 = 0x10_0000;
const MAPPER_IOVA: u64 = 0x100_0000;
const CHECK_IOVA: u64 = 0x200_0000;
const _: () = assert!(STAGING_IOVA + 4 * KIB <= MAPPER_IOVA);
const _: () = assert!(MAPPER_IOVA + LEN <= CHECK_IOVA);
const _: () = assert!(CHECK_IOVA + LEN <= crate::edu::DMA_LIMIT);

/// Where the sampled DMA lands: in the second range, so the check also
/// covers the translation of a dma-buf offset into a later range.
const TARGET_BAR: u64 = MIB + 0x3000;
/// story's: prepare_target() fills the guards around this many bytes.
const PATTERN_LEN: u64 = story::PATTERN_LEN;
const TARGET_BUF: u64 = match buf_offset(&RANGES, TARGET_BAR - GUARD, PATTERN_LEN + 2 * GUARD) {
    Some(o) => o + GUARD,
    None => panic!("the target and its guards leave one range"),
};
const TARGET_IOVA: u64 = CHECK_IOVA + TARGET_BUF;
const _: () = assert!(PATTERN_LEN <= MAX_DMA);

/// The KVM thread's memslot, in a VM without other slots.
const SLOT: u32 = 1;
const GPA: u64 = 4 * GIB;

/// A sample every this many mapper iterations, or this often.
const SAMPLE_EVERY: u64 = 500;
const SAMPLE_PERIOD: Duration = Duration::from_secs(5);
const MAX_SAMPLES: u32 = 12;

/// How often (percent) a thread exports a fresh dma-buf before a round
/// (else it keeps the last one), and closes it after a round.
const REEXPORT_PERCENT: u64 = 30;
const CLOSE_PERCENT: u64 = 30;
/// Messages kept per thread.
const SHOWN: usize = 5;
const SEED: u64 = 0xdb_5eed;

/// The offset in a dma-buf of `ranges` of the BAR bytes
/// `[bar_off, bar_off + len)`, if they lie inside one range.
pub const fn buf_offset(ranges: &[(u64, u64)], bar_off: u64, len: u64) -> Option<u64> {
    let mut at = 0;
    let mut i = 0;
    while i < ranges.len() {
        let (off, rlen) = ranges[i];
        if bar_off >= off && bar_off - off <= rlen && len <= rlen - (bar_off - off) {
            return Some(at + bar_off - off);
        }
        at += rlen;
        i += 1;
    }
    None
}

/// Whether ENODEV is the documented answer to a call that began with
/// [`Decoding::seq`] at `before` and ended with it at `after`: decoding was
/// off, or being turned off or on, at some point during the call.
pub fn enodev_allowed(before: u64, after: u64) -> bool {
    before % 2 == 1 || after != before
}

/// What a call's result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// ENODEV while the buffer was (or may have been) revoked.
    Revoked,
    /// Anything else: a failure.
    Undocumented,
}

pub fn judge<T>(r: &Result<T>, before: u64, after: u64) -> Verdict {
    match r {
        Ok(_) => Verdict::Ok,
        Err(e) if e.errno() == Some(ENODEV) && enodev_allowed(before, after) => Verdict::Revoked,
        Err(_) => Verdict::Undocumented,
    }
}

/// "1234 iterations in 60.0 s (20.6/s)".
pub fn rate(n: u64, t: Duration) -> String {
    let s = t.as_secs_f64();
    let per = if s > 0.0 { n as f64 / s } else { 0.0 };
    format!("{n} iterations in {s:.1} s ({per:.1}/s)")
}

// ---------------------------------------------------------------------------
// Memory decoding, shared by the toggler and the sampler

/// ivshmem's PCI_COMMAND.MEMORY. Changed only with `lock` held; `seq` is
/// odd from just before decoding goes off until just after it is back on.
struct Decoding<'a> {
    dev: &'a VfioDevice,
    seq: AtomicU64,
    lock: Mutex<()>,
}

impl<'a> Decoding<'a> {
    fn new(dev: &'a VfioDevice) -> Self {
        Decoding {
            dev,
            seq: AtomicU64::new(0),
            lock: Mutex::new(()),
        }
    }

    fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Revoke: clear PCI_COMMAND.MEMORY.
    fn off(&self, _held: &MutexGuard<'_, ()>) -> Result<()> {
        if self.seq() % 2 == 0 {
            self.seq.fetch_add(1, Ordering::SeqCst);
        }
        let (_, after) = self.dev.clear_command_bits(PCI_COMMAND_MEMORY)?;
        if after & PCI_COMMAND_MEMORY != 0 {
            return Err(Error::msg(format!(
                "PCI_COMMAND reads {after:#06x} after clearing MEMORY"
            )));
        }
        Ok(())
    }

    /// Restore: set PCI_COMMAND.MEMORY. `seq` stays odd if it did not stick.
    fn on(&self, _held: &MutexGuard<'_, ()>) -> Result<()> {
        let (_, after) = self.dev.set_command_bits(PCI_COMMAND_MEMORY)?;
        if after & PCI_COMMAND_MEMORY == 0 {
            return Err(Error::msg(format!(
                "PCI_COMMAND reads {after:#06x} after setting MEMORY"
            )));
        }
        if self.seq() % 2 == 1 {
            self.seq.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// What each thread saw

#[derive(Debug, Default)]
struct Tally {
    iterations: u64,
    elapsed: Duration,
    /// (successes, ENODEV while revoked) by operation.
    ops: BTreeMap<&'static str, (u64, u64)>,
    undocumented: u64,
    shown: Vec<String>,
}

impl Tally {
    fn fail(&mut self, msg: String) {
        self.undocumented += 1;
        if self.shown.len() < SHOWN {
            self.shown
                .push(format!("iteration {}: {msg}", self.iterations));
        }
    }

    /// Judge `r` of `op`, begun at sequence number `before`; its value if it
    /// succeeded.
    fn record<T>(
        &mut self,
        op: &'static str,
        r: Result<T>,
        before: u64,
        d: &Decoding<'_>,
    ) -> Option<T> {
        let after = d.seq();
        let v = judge(&r, before, after);
        let e = self.ops.entry(op).or_default();
        match (v, r) {
            (Verdict::Ok, Ok(x)) => {
                e.0 += 1;
                Some(x)
            }
            (Verdict::Revoked, _) => {
                e.1 += 1;
                None
            }
            (_, Err(err)) => {
                self.fail(format!("{err} with memory decoding on throughout"));
                None
            }
            (_, Ok(_)) => unreachable!("a success is judged Ok"),
        }
    }

    /// A call that must succeed whatever the decoding state.
    fn must<T>(&mut self, op: &'static str, r: Result<T>) -> Option<T> {
        match r {
            Ok(x) => {
                self.ops.entry(op).or_default().0 += 1;
                Some(x)
            }
            Err(e) => {
                self.fail(e.to_string());
                None
            }
        }
    }

    fn close(&mut self, fd: OwnedFd) {
        self.must("close", sys::close(fd).op("close the dma-buf"));
    }

    fn facts(&self, f: &mut Facts) {
        f.add(rate(self.iterations, self.elapsed));
        let ops: Vec<String> = self
            .ops
            .iter()
            .map(|(op, (ok, nodev))| format!("{op} {ok} ok, {nodev} ENODEV"))
            .collect();
        if !ops.is_empty() {
            f.add(ops.join("; "));
        }
    }

    fn verdict(&self, f: &mut Facts) -> Result<()> {
        self.facts(f);
        if self.undocumented == 0 {
            return Ok(());
        }
        Err(Error::msg(format!(
            "{} undocumented results; the first: {}",
            self.undocumented,
            self.shown.join(" | ")
        )))
    }
}

// ---------------------------------------------------------------------------
// The threads

/// What the worker threads share.
struct Env<'a> {
    dev: &'a VfioDevice,
    iommufd: &'a Iommufd,
    ioas: u32,
    decoding: &'a Decoding<'a>,
    start: Instant,
}

impl Env<'_> {
    fn over(&self, iterations: u64, limit: u64, stop: &AtomicBool) -> bool {
        iterations >= limit || self.start.elapsed() >= BUDGET || stop.load(Ordering::SeqCst)
    }

    fn export(&self, t: &mut Tally) -> Option<OwnedFd> {
        let s = self.decoding.seq();
        t.record(
            "export",
            self.dev.export_dma_buf(BAR2, &RANGES),
            s,
            self.decoding,
        )
    }
}

/// Keep `fd`, or close it and export a fresh one.
fn fresh_or_kept(env: &Env<'_>, t: &mut Tally, rng: &mut Rng, fd: &mut Option<OwnedFd>) {
    if fd.is_none() || rng.chance(REEXPORT_PERCENT) {
        if let Some(old) = fd.take() {
            t.close(old);
        }
        *fd = env.export(t);
    }
}

fn mapper(env: &Env<'_>, progress: &AtomicU64, stop: &AtomicBool) -> Tally {
    let d = env.decoding;
    let mut t = Tally::default();
    let mut rng = Rng::stream(SEED, 0);
    let mut fd: Option<OwnedFd> = None;
    // A mapping at MAPPER_IOVA may be left by a failed unmap.
    let mut left = false;
    while !env.over(t.iterations, MAPPER_ITERS, stop) {
        t.iterations += 1;
        progress.store(t.iterations, Ordering::SeqCst);
        if left {
            let s = d.seq();
            match env.iommufd.unmap(env.ioas, MAPPER_IOVA, LEN) {
                Err(e) if e.errno() == Some(ENOENT) => left = false,
                r => left = t.record("unmap (retry)", r, s, d).is_none(),
            }
        }
        fresh_or_kept(env, &mut t, &mut rng, &mut fd);
        let Some(buf) = &fd else { continue };
        let s = d.seq();
        let mapped = env
            .iommufd
            .map_file(env.ioas, buf.as_fd(), 0, LEN, MAPPER_IOVA);
        if let Some(at) = t.record("MAP_FILE", mapped, s, d) {
            let s = d.seq();
            match t.record("UNMAP", env.iommufd.unmap(env.ioas, at, LEN), s, d) {
                Some(n) if n == LEN => {}
                Some(n) => t.fail(format!(
                    "IOMMU_IOAS_UNMAP unmapped {n:#x} bytes, not {LEN:#x}"
                )),
                None => left = true,
            }
        }
        if rng.chance(CLOSE_PERCENT) {
            if let Some(old) = fd.take() {
                t.close(old);
            }
        }
    }
    if let Some(old) = fd.take() {
        t.close(old);
    }
    if left {
        t.must(
            "unmap (retry)",
            env.iommufd.unmap(env.ioas, MAPPER_IOVA, LEN).map(|_| ()),
        );
    }
    t.elapsed = env.start.elapsed();
    t
}

fn toggler(env: &Env<'_>, stop: &AtomicBool) -> Tally {
    let d = env.decoding;
    let mut t = Tally::default();
    let mut rng = Rng::stream(SEED, 1);
    while !stop.load(Ordering::SeqCst) {
        t.iterations += 1;
        {
            let g = d.lock();
            t.must("clear MEMORY", d.off(&g));
        }
        thread::sleep(Duration::from_millis(1 + rng.below(3)));
        {
            let g = d.lock();
            t.must("set MEMORY", d.on(&g));
        }
        thread::sleep(Duration::from_millis(2 + rng.below(5)));
    }
    t.elapsed = env.start.elapsed();
    t
}

fn memslots(env: &Env<'_>, vm: &VmFd, stop: &AtomicBool) -> Tally {
    let d = env.decoding;
    let mut t = Tally::default();
    let mut rng = Rng::stream(SEED, 2);
    let mut fd: Option<OwnedFd> = None;
    let mut slot_left = false;
    while !env.over(t.iterations, KVM_ITERS, stop) {
        t.iterations += 1;
        if slot_left {
            slot_left = t
                .must(
                    "delete (retry)",
                    kvm::set_region(vm, MemoryRegion2::delete(SLOT)),
                )
                .is_none();
        }
        fresh_or_kept(env, &mut t, &mut rng, &mut fd);
        let Some(buf) = &fd else { continue };
        let s = d.seq();
        let slot = MemoryRegion2::dmabuf(SLOT, GPA, LEN, buf.as_raw_fd(), 0);
        if t.record("create slot", kvm::set_region(vm, slot), s, d)
            .is_some()
        {
            slot_left = t
                .must(
                    "delete slot",
                    kvm::set_region(vm, MemoryRegion2::delete(SLOT)),
                )
                .is_none();
        }
        if rng.chance(CLOSE_PERCENT) {
            if let Some(old) = fd.take() {
                t.close(old);
            }
        }
    }
    if let Some(old) = fd.take() {
        t.close(old);
    }
    if slot_left {
        t.must(
            "delete (retry)",
            kvm::set_region(vm, MemoryRegion2::delete(SLOT)),
        );
    }
    t.elapsed = env.start.elapsed();
    t
}

// ---------------------------------------------------------------------------
// The sampled DMA check (main thread)

/// edu in the IOAS, BAR2 as the host sees it, a staging page at STAGING_IOVA.
struct Probe {
    edu: Edu,
    bar: Mapping,
    staging: Mapping,
}

impl Probe {
    /// Put `data` in edu's buffer (through the staging page).
    fn stage(&self, data: &[u8]) -> Result<()> {
        self.staging.write_bytes(0, data);
        self.edu
            .to_device(STAGING_IOVA, EDU_BUFFER, data.len() as u64)?;
        Ok(())
    }
}

/// What one sample saw.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// A DMAR write fault was logged for the revoked DMA.
    faulted: bool,
}

/// Export and map a buffer at CHECK_IOVA with decoding on, run `body`, then
/// restore decoding, unmap and close whatever `body` returned.
fn with_mapping<T>(
    env: &Env<'_>,
    held: &MutexGuard<'_, ()>,
    body: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let d = env.decoding;
    d.on(held)?;
    let fd = env.dev.export_dma_buf(BAR2, &RANGES)?;
    let at = match env
        .iommufd
        .map_file(env.ioas, fd.as_fd(), 0, LEN, CHECK_IOVA)
    {
        Ok(at) => at,
        Err(e) => {
            let _ = sys::close(fd);
            return Err(e);
        }
    };
    let r = body();
    let restored = d.on(held);
    let unmapped = env.iommufd.unmap(env.ioas, at, LEN);
    let closed = sys::close(fd).op("close the dma-buf");
    let v = r?;
    restored?;
    let n = unmapped?;
    if n != LEN {
        return Err(Error::msg(format!(
            "IOMMU_IOAS_UNMAP of the checked mapping unmapped {n:#x} bytes, not {LEN:#x}"
        )));
    }
    closed?;
    Ok(v)
}

/// With decoding on, edu writes `want` to TARGET_IOVA: it must be in the BAR.
fn lands(probe: &Probe, want: &[u8], f: &mut Facts) -> Result<()> {
    prepare_target(&probe.bar, TARGET_BAR);
    probe.stage(want)?;
    probe
        .edu
        .to_ram(EDU_BUFFER, TARGET_IOVA, want.len() as u64)?;
    verify_target(&probe.bar, TARGET_BAR, want, f)
}

/// One sample: a pattern lands with decoding on; with decoding off (the
/// mapping revoked) another one does not.
fn sample(env: &Env<'_>, probe: &Probe, k: u32, f: &mut Facts) -> Result<Seen> {
    let d = env.decoding;
    let held = d.lock();
    let first = pattern((2 * k + 1) as u8, PATTERN_LEN as usize);
    let second = pattern((2 * k + 2) as u8, PATTERN_LEN as usize);
    with_mapping(env, &held, || {
        let mut scratch = Facts::default();
        lands(probe, &first, &mut scratch)
            .map_err(|e| Error::msg(format!("with decoding on: {e}")))?;
        probe.stage(&second)?;
        d.off(&held)?;
        let mut watch = kmsg::Watch::open().ok();
        kmsg::mark("expect-begin dmar-fault");
        let dma = probe.edu.to_ram(EDU_BUFFER, TARGET_IOVA, PATTERN_LEN);
        let faults = kmsg::wait_for_dma_write_faults(watch.as_mut(), Duration::from_secs(1));
        kmsg::mark("expect-end dmar-fault");
        d.on(&held)?;
        dma.map_err(|e| Error::msg(format!("edu DMA while revoked: {e}")))?;
        verify_target(&probe.bar, TARGET_BAR, &first, &mut scratch).map_err(|e| {
            Error::msg(format!(
                "edu's DMA while revoked landed in the BAR: {e} (kept at {})",
                span(TARGET_BAR, PATTERN_LEN)
            ))
        })?;
        if k == 0 {
            for l in scratch.lines() {
                f.add(l.clone());
            }
        }
        Ok(Seen {
            faulted: !faults.is_empty(),
        })
    })
}

// ---------------------------------------------------------------------------
// Setup

/// Everything the test holds open, closed in this order.
struct Lab {
    vm: Option<VmFd>,
    _kvm: Option<Kvm>,
    probe: Probe,
    /// Kept open: closing it would detach edu from the IOAS.
    _edu_dev: VfioDevice,
    ivshmem: VfioDevice,
    ioas: u32,
    iommufd: Iommufd,
}

/// ivshmem (kvm::open_ivshmem) and edu in a fresh IOAS of its iommufd, edu's
/// BAR0 mapped and bus mastering on, a staging page, BAR2 mapped.
fn open_lab(f: &mut Facts) -> Result<Lab> {
    let kvm::Ivshmem { bdf, dev, iommufd } = kvm::open_ivshmem(f)?;
    let ioas = iommufd.ioas_alloc()?;
    dev.attach_ioas(ioas)?;
    let sysfs = Sysfs::default();
    let edu_bdf = sysfs.find_one(EDU)?;
    sysfs.bind_vfio(&edu_bdf)?;
    let edu_dev = VfioDevice::open(&sysfs.vfio_cdev(&edu_bdf)?)?;
    edu_dev.bind_iommufd(&iommufd)?;
    edu_dev.attach_ioas(ioas)?;
    let edu = Edu::new(edu_dev.mmap_region(0)?)?;
    let (_, cmd) = edu_dev.set_command_bits(PCI_COMMAND_MASTER)?;
    if cmd & PCI_COMMAND_MASTER == 0 {
        return Err(Error::msg("edu: PCI_COMMAND.MASTER did not stick"));
    }
    let staging = Mapping::anonymous(4096).op("mmap a page")?;
    iommufd.map_user(ioas, &staging, STAGING_IOVA)?;
    let bar = dev.mmap_region(BAR2)?;
    f.add(format!(
        "ivshmem {bdf} and edu {edu_bdf} in IOAS {ioas}; staging page at IOVA {STAGING_IOVA:#x}"
    ));
    f.add(format!(
        "dma-buf: BAR2 {} in 3 ranges ({}); mapper at IOVA {}, checks at {}, edu writes BAR2 {}",
        RANGES
            .iter()
            .map(|&(o, l)| span(o, l))
            .collect::<Vec<_>>()
            .join(" "),
        size(LEN),
        span(MAPPER_IOVA, LEN),
        span(CHECK_IOVA, LEN),
        span(TARGET_BAR, PATTERN_LEN)
    ));
    let (kvm, vm) = if Path::new("/dev/kvm").exists() {
        let kvm = Kvm::new().map_err(|e| Error::sys("open /dev/kvm", e.errno()))?;
        let vm = kvm
            .create_vm()
            .map_err(|e| Error::sys("KVM_CREATE_VM", e.errno()))?;
        f.add(format!("a VM for slot {SLOT} at GPA {}", span(GPA, LEN)));
        (Some(kvm), Some(vm))
    } else {
        f.add("no /dev/kvm: no KVM thread");
        (None, None)
    };
    Ok(Lab {
        vm,
        _kvm: kvm,
        probe: Probe { edu, bar, staging },
        _edu_dev: edu_dev,
        ivshmem: dev,
        ioas,
        iommufd,
    })
}

// ---------------------------------------------------------------------------
// The run

const CASES: [&str; 6] = [
    "stress: the mapper (export, MAP_FILE, UNMAP, close)",
    "stress: the toggler (PCI_COMMAND.MEMORY off, on)",
    "stress: the KVM thread (KVM_MEM_DMABUF slot create, delete)",
    "nothing lands in the BAR while revoked",
    "no file descriptor is left open",
    "the device works normally afterwards",
];

fn skip_all(r: &mut Runner<'_>, why: &str) {
    for c in CASES {
        r.skip(c, why);
    }
}

pub fn run(r: &mut Runner<'_>) -> bool {
    test(r);
    r.finish()
}

/// "{what}: N iterations in T s without an undocumented errno".
fn thread_case(r: &mut Runner<'_>, what: &str, t: &Tally) {
    let desc = format!(
        "{what}: {} iterations in {:.1} s without an undocumented errno",
        t.iterations,
        t.elapsed.as_secs_f64()
    );
    r.check(&desc, |f| t.verdict(f));
}

fn test(r: &mut Runner<'_>) {
    if let Some(why) = fuzz::ivshmem_absent() {
        skip_all(r, &why);
        return;
    }
    let fds_at_start = open_fds();
    let Ok(lab) = r.require(
        "setup: ivshmem and edu in one IOAS, BAR2 mapped, a VM",
        open_lab,
    ) else {
        return;
    };
    r.comment(&format!(
        "at most {MAPPER_ITERS} mapper and {KVM_ITERS} KVM iterations, {} s",
        BUDGET.as_secs()
    ));
    let decoding = Decoding::new(&lab.ivshmem);
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let env = Env {
        dev: &lab.ivshmem,
        iommufd: &lab.iommufd,
        ioas: lab.ioas,
        decoding: &decoding,
        start: Instant::now(),
    };

    r.section("Concurrent export, MAP_FILE, memslots and revokes");
    let (map_t, tog_t, kvm_t, samples) = thread::scope(|s| {
        let mapper_h = s.spawn(|| mapper(&env, &progress, &stop));
        let toggler_h = s.spawn(|| toggler(&env, &stop));
        let kvm_h = lab.vm.as_ref().map(|vm| {
            let env = &env;
            let stop = &stop;
            s.spawn(move || memslots(env, vm, stop))
        });
        let mut samples: Vec<Result<Seen>> = Vec::new();
        let mut facts = Facts::default();
        let mut next_at = SAMPLE_EVERY / 2;
        let mut last = Instant::now();
        loop {
            let done = mapper_h.is_finished() && kvm_h.as_ref().is_none_or(|h| h.is_finished());
            if done {
                break;
            }
            let due = progress.load(Ordering::SeqCst) >= next_at || last.elapsed() >= SAMPLE_PERIOD;
            if due && samples.len() < MAX_SAMPLES as usize {
                let k = samples.len() as u32;
                samples.push(sample(&env, &lab.probe, k, &mut facts));
                next_at = progress.load(Ordering::SeqCst) + SAMPLE_EVERY;
                last = Instant::now();
            }
            thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::SeqCst);
        let join = |h: thread::ScopedJoinHandle<'_, Tally>| {
            h.join().unwrap_or_else(|_| {
                let mut t = Tally::default();
                t.fail("the thread panicked".into());
                t
            })
        };
        let map_t = join(mapper_h);
        let tog_t = join(toggler_h);
        let kvm_t = kvm_h.map(join);
        (map_t, tog_t, kvm_t, (samples, facts))
    });
    r.comment(&format!(
        "iterations: mapper {}, toggler {}, kvm {}",
        rate(map_t.iterations, map_t.elapsed),
        rate(tog_t.iterations, tog_t.elapsed),
        kvm_t
            .as_ref()
            .map_or("none".to_string(), |t| rate(t.iterations, t.elapsed))
    ));

    r.section("Results");
    thread_case(r, CASES[0], &map_t);
    thread_case(r, CASES[1], &tog_t);
    match &kvm_t {
        Some(t) => thread_case(r, CASES[2], t),
        None => r.skip(CASES[2], "no /dev/kvm"),
    }
    let (samples, sample_facts) = samples;
    let k = samples.len();
    r.check(&format!("{} ({k} samples)", CASES[3]), |f| {
        for l in sample_facts.lines() {
            f.add(l.clone());
        }
        let faulted = samples
            .iter()
            .filter(|s| matches!(s, Ok(Seen { faulted: true })))
            .count();
        f.add(format!(
            "{k} samples at IOVA {TARGET_IOVA:#x}: the pattern landed with decoding on, \
             the revoked DMA did not; {faulted} with a DMAR write fault logged"
        ));
        let bad: Vec<String> = samples
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().err().map(|e| format!("sample {i}: {e}")))
            .collect();
        if k == 0 {
            return Err(Error::msg("no sample was taken"));
        }
        if !bad.is_empty() {
            return Err(Error::msg(bad.join("\n")));
        }
        Ok(())
    });

    // After the threads: the device must work as before.
    let afterwards = {
        let mut f = Facts::default();
        let held = decoding.lock();
        let r = with_mapping(&env, &held, || {
            lands(&lab.probe, &pattern(0xa5, PATTERN_LEN as usize), &mut f)
        });
        drop(held);
        (r, f)
    };
    let cmd = lab.ivshmem.command();
    drop(lab);

    r.check(CASES[4], |f| {
        let before = fds_at_start?;
        let now = open_fds()?;
        f.add(format!("{now} descriptors open, {before} at the start"));
        if now != before {
            return Err(Error::msg(format!(
                "{} descriptors more",
                now as i64 - before as i64
            )));
        }
        Ok(())
    });
    r.check(CASES[5], |f| {
        let (res, facts) = afterwards;
        f.add(format!(
            "decoding on, export, MAP_FILE at {}, edu DMA, UNMAP",
            span(CHECK_IOVA, LEN)
        ));
        for l in facts.lines() {
            f.add(l.clone());
        }
        res?;
        let cmd = cmd?;
        f.add(format!("ivshmem PCI_COMMAND {cmd:#06x}"));
        if cmd & PCI_COMMAND_MEMORY == 0 {
            return Err(Error::msg("memory decoding is off at the end"));
        }
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_in_the_buffer() {
        assert_eq!(buf_offset(&RANGES, 0, 64 * KIB), Some(0));
        assert_eq!(buf_offset(&RANGES, 0x100, 0x100), Some(0x100));
        assert_eq!(buf_offset(&RANGES, MIB, 4 * KIB), Some(64 * KIB));
        assert_eq!(
            buf_offset(&RANGES, MIB + 0x3000, 0x200),
            Some(64 * KIB + 0x3000)
        );
        assert_eq!(buf_offset(&RANGES, 64 * KIB, 4 * KIB), Some(192 * KIB));
        // Crossing the end of a range, or outside every range.
        assert_eq!(buf_offset(&RANGES, 60 * KIB, 8 * KIB), None);
        assert_eq!(buf_offset(&RANGES, MIB + 127 * KIB, 2 * KIB), None);
        assert_eq!(buf_offset(&RANGES, 2 * MIB - 1, 1), None);
        assert_eq!(buf_offset(&RANGES, u64::MAX, 1), None);
        assert_eq!(buf_offset(&[], 0, 0), None);
        assert_eq!(TARGET_BUF, 64 * KIB + 0x3000);
        assert_eq!(TARGET_IOVA, CHECK_IOVA + 64 * KIB + 0x3000);
    }

    #[test]
    fn enodev_rule() {
        // Decoding on throughout: ENODEV is not documented.
        assert!(!enodev_allowed(0, 0));
        assert!(!enodev_allowed(4, 4));
        // Off at the start, turned off or on during the call.
        assert!(enodev_allowed(1, 1));
        assert!(enodev_allowed(0, 1));
        assert!(enodev_allowed(0, 2));
        assert!(enodev_allowed(3, 4));
    }

    #[test]
    fn verdicts() {
        let ok: Result<()> = Ok(());
        assert_eq!(judge(&ok, 0, 0), Verdict::Ok);
        assert_eq!(judge(&ok, 1, 1), Verdict::Ok);
        let nodev: Result<()> = Err(Error::sys("IOMMU_IOAS_MAP_FILE", ENODEV));
        assert_eq!(judge(&nodev, 1, 1), Verdict::Revoked);
        assert_eq!(judge(&nodev, 2, 3), Verdict::Revoked);
        assert_eq!(judge(&nodev, 2, 2), Verdict::Undocumented);
        let other: Result<()> = Err(Error::sys("IOMMU_IOAS_MAP_FILE", libc::EEXIST));
        assert_eq!(judge(&other, 1, 1), Verdict::Undocumented);
        let msg: Result<()> = Err(Error::msg("boom"));
        assert_eq!(judge(&msg, 1, 2), Verdict::Undocumented);
    }

    #[test]
    fn rates() {
        assert_eq!(
            rate(1200, Duration::from_secs(60)),
            "1200 iterations in 60.0 s (20.0/s)"
        );
        assert_eq!(rate(5, Duration::ZERO), "5 iterations in 0.0 s (0.0/s)");
    }

    #[test]
    fn tally_messages() {
        let mut t = Tally {
            iterations: 3,
            ..Default::default()
        };
        for _ in 0..SHOWN + 2 {
            t.fail("x".into());
        }
        assert_eq!(t.undocumented, SHOWN as u64 + 2);
        assert_eq!(t.shown.len(), SHOWN);
        assert_eq!(t.shown[0], "iteration 3: x");
        let mut f = Facts::default();
        let e = t.verdict(&mut f).unwrap_err().to_string();
        assert!(e.starts_with("7 undocumented results; the first: iteration 3: x | "));
        assert!(Tally::default().verdict(&mut Facts::default()).is_ok());
    }
}
