//! `dmabuf-tool failnth`: every allocation of the series' uAPI calls fails
//! once, and the call must fail cleanly. The kernel's per-task `fail-nth`
//! (Documentation/fault-injection/fault-injection.rst, "Fault injection with
//! fail-nth"): writing N to `/proc/thread-self/fail-nth` makes the Nth
//! fault-injectable call of this thread fail; reading it back gives 0 when
//! the fault was injected, non-zero when the call made fewer than N. One TAP
//! case per call, each run with N = 1, 2, 3, ... until the call completes
//! without consuming the fault (or [`MAX_N`], or [`BUDGET`]):
//!
//! - `VFIO_DEVICE_FEATURE(GET | DMA_BUF)`: a three-range dma-buf of ivshmem's BAR2;
//! - `IOMMU_IOAS_MAP_FILE` of such a dma-buf (a fresh one each N: VFIO
//!   builds the buffer's description on its first import and keeps it);
//! - `KVM_SET_USER_MEMORY_REGION2` with `KVM_MEM_DMABUF` of such a dma-buf;
//! - `RUST_DMABUF_EXPORT_PINNED` on the Rust exporter sample;
//! - `DMABUF_IMPORT_SAMPLE_DESCRIBE` (`dma_buf_get_memory()`) of such a dma-buf;
//! - `DMABUF_IMPORT_SAMPLE_MAP` (`dma_buf_map_attachment()`) of such a
//!   dma-buf for ivshmem: vfio-pci's P2P sg_table, DMA-mapped through the
//!   IOMMU;
//! - `DMABUF_IMPORT_SAMPLE_MAP` of a Rust `PINNED` buffer for the sample's
//!   platform device: the sg_table `dma_buf_memory_map()` builds from the
//!   exporter's shared description;
//! - `DMABUF_IMPORT_SAMPLE_DESCRIBE` of a fresh udmabuf, which builds its
//!   description on the first get_memory.
//!
//! Every injected failure must fail the call with the errno the kernel path
//! gives an allocation failure (ENOMEM; see each target's `allowed`), leave
//! nothing behind (open descriptors, dma-bufs, their attachments in
//! /sys/kernel/debug/dma_buf/bufinfo, an IOAS mapping, a memslot), and the
//! same call without injection must then succeed. A call that succeeds
//! although it consumed the fault (an optional allocation, or one the
//! kernel retried: kmemleak's metadata, kvmalloc's vmalloc fallback, a
//! mempool) is reported, not failed.
//!
//! `fail-nth` drives every fault attribute (lib/fault-inject.c,
//! should_fail_ex(): with `fail_nth` set, probability, interval, times,
//! space and task-filter are not looked at). So before the loop every
//! `/sys/kernel/debug/fail*` attribute gets probability 0 (nothing fails but
//! through fail-nth) and verbose 0 (no stack dump per failure); failslab gets
//! ignore-gfp-wait N (else GFP_KERNEL allocations never fail) and
//! cache-filter N. Each attribute's `times` is set high: the fail path
//! decrements it, which tells which attribute fired (failslab, or the
//! iommufd selftest's fail_iommufd, which CONFIG_IOMMUFD_TEST compiles
//! in). Everything is restored at the end, on error too.
//!
//! The loop runs on the main thread (fail-nth is per thread). Between arming
//! and the call nothing allocates or makes another system call: the
//! arguments are built beforehand, fail-nth is written and read with
//! pwrite/pread from stack buffers, and nothing is printed until a case ends.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvm_ioctls::{Kvm, VmFd};
use libc::{ENOENT, ENOMEM};

use crate::args::{size, span};
use crate::errno::{expect_errno, name, Context, Error, Result};
use crate::fuzz;
use crate::import_sample;
use crate::iommufd::Iommufd;
use crate::kvm::{self, BufInfo, MemoryRegion2, BAR2, KVM_CAP_DMABUF_MEMSLOT};
use crate::report::{Facts, Runner};
use crate::rust_exporter;
use crate::story::open_fds;
use crate::sys::{self, DmaBufFeatureArg, VfioRegionDmaRange};
use crate::udmabuf::{self, Memfd, Udmabuf};
use crate::vfio::VfioDevice;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The largest N tried per call.
pub const MAX_N: u32 = 300;
/// The time each call may take in all (TCG, KASAN, lockdep).
pub const BUDGET: Duration = Duration::from_secs(30);

const FAIL_NTH: &str = "/proc/thread-self/fail-nth";
const DEBUGFS: &str = "/sys/kernel/debug";
const FAILSLAB: &str = "/sys/kernel/debug/failslab";
/// What each attribute's `times` is set to; the fail path decrements it.
const TIMES: i64 = 1_000_000;

/// The three-range dma-buf of BAR2 every case uses (as `fuzz` does).
const RANGES: [(u64, u64); 3] = [(0, 64 * KIB), (MIB, 128 * KIB), (64 * KIB, 4 * KIB)];
const LEN: u64 = 196 * KIB;
const _: () = assert!(RANGES[0].1 + RANGES[1].1 + RANGES[2].1 == LEN);
/// Where MAP_FILE maps it, in an IOAS of its own.
const IOVA: u64 = GIB;
/// The memslot of the KVM case, in a VM without other slots.
const SLOT: u32 = 1;
const GPA: u64 = 4 * GIB;

const CASES: [&str; 8] = [
    "fail-nth: VFIO_DEVICE_FEATURE(GET | DMA_BUF) of a three-range dma-buf of ivshmem's BAR2",
    "fail-nth: IOMMU_IOAS_MAP_FILE of a three-range VFIO dma-buf",
    "fail-nth: KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_DMABUF of a three-range VFIO dma-buf",
    "fail-nth: RUST_DMABUF_EXPORT_PINNED on /dev/rust_dmabuf_exporter",
    "fail-nth: DMABUF_IMPORT_SAMPLE_DESCRIBE (dma_buf_get_memory) of a dma-buf",
    "fail-nth: DMABUF_IMPORT_SAMPLE_MAP of a three-range VFIO dma-buf for ivshmem (P2P sg_table)",
    "fail-nth: DMABUF_IMPORT_SAMPLE_MAP of a Rust PINNED buffer (dma_buf_memory_map())",
    "fail-nth: DMABUF_IMPORT_SAMPLE_DESCRIBE of a fresh udmabuf (its description is built on first get_memory)",
];
const VFIO: usize = 0;
const MAP: usize = 1;
const SLOT_CASE: usize = 2;
const RUST: usize = 3;
const DESCRIBE: usize = 4;
const SG_VFIO: usize = 5;
const SG_RUST: usize = 6;
const UDMABUF: usize = 7;
/// The udmabuf DESCRIBE case's buffer: 16 pages of a memfd.
const UDMABUF_LEN: u64 = 64 * KIB;

// ---------------------------------------------------------------------------
// fail-nth

/// `n` in decimal in `buf`, without allocating.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// What reading fail-nth gave: "0\n" when the fault was injected.
fn parse_left(bytes: &[u8]) -> Option<u32> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// `/proc/thread-self/fail-nth` of the thread that opened it.
struct FailNth(File);

impl FailNth {
    fn open() -> Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(FAIL_NTH)
            .op("open /proc/thread-self/fail-nth")?;
        Ok(FailNth(f))
    }

    /// One pwrite, from the stack: the kernel only sets `current->fail_nth`.
    fn write(&self, n: u32) -> io::Result<()> {
        let mut buf = [0u8; 10];
        self.0.write_at(decimal(n, &mut buf), 0).map(|_| ())
    }

    /// One pread, into the stack.
    fn left(&self) -> io::Result<u32> {
        let mut buf = [0u8; 16];
        let k = self.0.read_at(&mut buf, 0)?;
        parse_left(&buf[..k]).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// Runs `call` with the `n`th fault-injectable call of this thread set
    /// to fail; returns what it returned and whether the fault was consumed.
    /// `call` must make one system call and allocate nothing before it.
    fn inject<T>(&self, n: u32, call: impl FnOnce() -> T) -> Result<(T, bool)> {
        self.write(n).op("write /proc/thread-self/fail-nth")?;
        let out = call();
        let left = self.left();
        let disarmed = self.write(0);
        let left = left.op("read /proc/thread-self/fail-nth")?;
        disarmed.op("write 0 to /proc/thread-self/fail-nth")?;
        Ok((out, left == 0))
    }
}

// ---------------------------------------------------------------------------
// The fault attributes in debugfs

/// A debugfs file and what it held before we wrote it.
struct Saved {
    path: PathBuf,
    old: String,
}

/// The fault attributes as this test needs them; restored on `restore` or drop.
struct FaultSettings {
    saved: Vec<Saved>,
    /// (name, `times` file) of every attribute.
    attrs: Vec<(String, PathBuf)>,
}

fn read_setting(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .op(format!("read {}", path.display()))?
        .trim()
        .to_string())
}

fn write_setting(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).op(format!("write {value:?} to {}", path.display()))
}

/// The fault attribute directories of debugfs: `fail*` with a `verbose`
/// and a `probability` (fault_create_debugfs_attr()).
fn fault_attr_dirs() -> Result<Vec<(String, PathBuf)>> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(DEBUGFS)
        .op(format!("read {DEBUGFS}"))?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let p = e.path();
            (name.starts_with("fail")
                && p.join("verbose").is_file()
                && p.join("probability").is_file()
                && p.join("times").is_file())
            .then_some((name, p))
        })
        .collect();
    v.sort();
    Ok(v)
}

impl FaultSettings {
    fn apply(f: &mut Facts) -> Result<Self> {
        let mut s = FaultSettings {
            saved: Vec::new(),
            attrs: Vec::new(),
        };
        let failslab = Path::new(FAILSLAB);
        s.set(&failslab.join("ignore-gfp-wait"), "N")?;
        if failslab.join("cache-filter").is_file() {
            s.set(&failslab.join("cache-filter"), "N")?;
        }
        for (name, dir) in fault_attr_dirs()? {
            s.set(&dir.join("probability"), "0")?;
            s.set(&dir.join("verbose"), "0")?;
            s.set(&dir.join("times"), &TIMES.to_string())?;
            s.attrs.push((name, dir.join("times")));
        }
        f.add(format!(
            "failslab: ignore-gfp-wait N, cache-filter N; probability 0, verbose 0, \
             times {TIMES} in {}",
            s.attrs
                .iter()
                .map(|a| a.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(s)
    }

    fn set(&mut self, path: &Path, value: &str) -> Result<()> {
        let old = read_setting(path)?;
        self.saved.push(Saved {
            path: path.to_path_buf(),
            old,
        });
        write_setting(path, value)
    }

    /// The attributes whose fail path ran since the last call, `times`
    /// set back for the next.
    fn fired(&self) -> Result<Vec<String>> {
        let mut v = Vec::new();
        for (name, times) in &self.attrs {
            let t = read_setting(times)?;
            if t != TIMES.to_string() {
                v.push(name.clone());
                write_setting(times, &TIMES.to_string())?;
            }
        }
        Ok(v)
    }

    /// Writes back every old value, the last written first; the first error.
    fn restore(&mut self) -> Result<usize> {
        let n = self.saved.len();
        let mut first = Ok(n);
        while let Some(s) = self.saved.pop() {
            if let Err(e) = write_setting(&s.path, &s.old) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

impl Drop for FaultSettings {
    fn drop(&mut self) {
        // Reached with values left only on an early return; `restore`
        // reports its errors where it is called.
        let _ = self.restore();
    }
}

/// Which attribute fired, as reported: "failslab", "fail_iommufd", or
/// "unknown" when no `times` moved.
fn source_of(fired: &[String]) -> String {
    if fired.is_empty() {
        "unknown".into()
    } else {
        fired.join("+")
    }
}

// ---------------------------------------------------------------------------
// What a failed call must not leave behind

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    fds: usize,
    /// dma-bufs alive and KVM's attachments to them.
    bufs: Option<BufInfo>,
    /// Attachments of any device to any dma-buf.
    attached: Option<usize>,
}

/// The sum of bufinfo's "Total N devices attached" lines.
fn attached_devices(text: &str) -> Option<usize> {
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("Total ")?
                .strip_suffix(" devices attached")?
                .parse::<usize>()
                .ok()
        })
        .try_fold(0usize, |a, n| a.checked_add(n))
}

fn state() -> Result<State> {
    let fds = open_fds()?;
    let text = std::fs::read_to_string(kvm::BUFINFO).ok();
    let text = text.as_deref();
    Ok(State {
        fds,
        bufs: text.and_then(kvm::parse_bufinfo),
        attached: text.and_then(attached_devices),
    })
}

/// What differs between `before` and `now`, if anything.
fn changes(before: &State, now: &State) -> Option<String> {
    let mut v = Vec::new();
    if now.fds != before.fds {
        v.push(format!(
            "{} descriptors open, {} before",
            now.fds, before.fds
        ));
    }
    if let (Some(b), Some(n)) = (before.bufs, now.bufs) {
        if n.objects != b.objects {
            v.push(format!(
                "{} dma-bufs alive, {} before",
                n.objects, b.objects
            ));
        }
        if n.kvm_attachments != b.kvm_attachments {
            v.push(format!(
                "{} KVM attachments, {} before",
                n.kvm_attachments, b.kvm_attachments
            ));
        }
    }
    if let (Some(b), Some(n)) = (before.attached, now.attached) {
        if n != b {
            v.push(format!("{n} dma-buf attachments, {b} before"));
        }
    }
    (!v.is_empty()).then(|| v.join("; "))
}

// ---------------------------------------------------------------------------
// The loop

/// One call under test.
trait Target {
    /// Made before arming, for each N: a fresh dma-buf, or nothing.
    type Input;
    type Output;
    fn prepare(&mut self) -> Result<Self::Input>;
    /// The one system call under test: allocates nothing before it.
    fn call(&mut self, input: &Self::Input) -> Result<Self::Output>;
    /// Undo a success (close, unmap, delete).
    fn undo(&mut self, input: &Self::Input, out: Self::Output) -> Result<()>;
    /// After an injected failure: what `state()` cannot see is not left.
    fn nothing_left(&mut self, _input: &Self::Input) -> Result<()> {
        Ok(())
    }
    /// A line about the target for the report.
    fn note(&self) -> Option<String> {
        None
    }
    /// The errnos an injected failure of attribute `source` may give.
    fn allowed(&self, _source: &str) -> &'static [i32] {
        &[ENOMEM]
    }
}

/// What one call's loop saw.
#[derive(Debug, Default)]
struct Tally {
    /// (attribute, errno) of every injected failure, counted.
    failed: BTreeMap<(String, i32), u32>,
    /// N that consumed the fault yet succeeded, by attribute.
    succeeded: BTreeMap<String, Vec<u32>>,
    /// What consumed-but-succeeded calls left after their undo, by N.
    left: Vec<String>,
    /// The N at which the call made fewer than N injectable calls.
    completed_at: Option<u32>,
    /// Why the loop stopped before that.
    stopped: Option<String>,
}

/// "1-3, 7, 9-10" for an ascending list.
fn runs(ns: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ns.len() {
        let mut j = i;
        while j + 1 < ns.len() && ns[j + 1] == ns[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            ns[i].to_string()
        } else {
            format!("{}-{}", ns[i], ns[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

impl Tally {
    /// N values that consumed the fault.
    fn points(&self) -> u32 {
        self.failed.values().sum::<u32>()
            + self.succeeded.values().map(|v| v.len() as u32).sum::<u32>()
    }

    /// "ENOENT x 1 (fail_iommufd), ENOMEM x 20 (failslab)" (by attribute,
    /// then errno), or "none".
    fn histogram(&self) -> String {
        if self.failed.is_empty() {
            return "none".into();
        }
        self.failed
            .iter()
            .map(|((src, e), c)| format!("{} x {c} ({src})", name(*e)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn facts(&self, f: &mut Facts) {
        let failures: u32 = self.failed.values().sum();
        f.add(format!(
            "{} failure points (N that consumed the fault): {failures} failed, {} succeeded anyway",
            self.points(),
            self.points() - failures
        ));
        f.add(format!(
            "errnos of the injected failures: {}",
            self.histogram()
        ));
        for (src, ns) in &self.succeeded {
            f.add(format!(
                "consumed yet succeeded (an optional or retried allocation), {src}: N = {}",
                runs(ns)
            ));
        }
        for l in &self.left {
            f.add(format!("note: {l}"));
        }
        match (self.completed_at, &self.stopped) {
            (Some(n), _) => f.add(format!("N = {n}: completed without consuming the fault")),
            (None, Some(why)) => f.add(format!("stopped before completion: {why}")),
            (None, None) => {}
        }
    }
}

/// Runs `t` with N = 1, 2, ... into `tally`; an error is a broken rule (or
/// a step of the test that failed).
fn exercise<T: Target>(
    fail: &FailNth,
    settings: &FaultSettings,
    t: &mut T,
    tally: &mut Tally,
) -> Result<()> {
    let started = Instant::now();
    let at = |n: u32, e: Error| Error::msg(format!("N = {n}: {e}"));
    for n in 1..=MAX_N {
        if started.elapsed() > BUDGET {
            tally.stopped = Some(format!(
                "the time budget of {} s was spent before N = {n}",
                BUDGET.as_secs()
            ));
            return Ok(());
        }
        let base = state().map_err(|e| at(n, e))?;
        let input = t.prepare().map_err(|e| at(n, e))?;
        let before = state().map_err(|e| at(n, e))?;
        let (res, consumed) = fail.inject(n, || t.call(&input)).map_err(|e| at(n, e))?;
        let fired = if consumed {
            source_of(&settings.fired().map_err(|e| at(n, e))?)
        } else {
            String::new()
        };
        match (res, consumed) {
            (Ok(out), false) => {
                t.undo(&input, out).map_err(|e| at(n, e))?;
                drop(input);
                tally.completed_at = Some(n);
                if let Some(c) = changes(&base, &state()?) {
                    return Err(Error::msg(format!(
                        "N = {n}: after the uninjected call and its undo: {c}"
                    )));
                }
                return Ok(());
            }
            (Ok(out), true) => {
                tally.succeeded.entry(fired).or_default().push(n);
                t.undo(&input, out)
                    .map_err(|e| at(n, Error::msg(format!("undoing the success: {e}"))))?;
                drop(input);
                // Reported, not failed: the brief's rule is for failures.
                if let Some(c) = changes(&base, &state()?) {
                    tally
                        .left
                        .push(format!("N = {n} succeeded, undone, but: {c}"));
                }
            }
            (Err(e), true) => {
                let errno = e.errno().unwrap_or(0);
                let allowed = t.allowed(&fired);
                if !allowed.contains(&errno) {
                    return Err(Error::msg(format!(
                        "N = {n}: the injected failure ({fired}) gave {e}; expected {}",
                        allowed
                            .iter()
                            .map(|&a| name(a))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )));
                }
                *tally.failed.entry((fired, errno)).or_default() += 1;
                let ename = name(errno);
                if let Some(c) = changes(&before, &state()?) {
                    return Err(Error::msg(format!(
                        "N = {n}: the injected {ename} left something behind: {c}"
                    )));
                }
                t.nothing_left(&input)
                    .map_err(|e| at(n, Error::msg(format!("after the injected {ename}: {e}"))))?;
                let out = t.call(&input).map_err(|e| {
                    at(
                        n,
                        Error::msg(format!(
                        "after the injected {ename}, the same call without injection failed: {e}"
                    )),
                    )
                })?;
                t.undo(&input, out)
                    .map_err(|e| at(n, Error::msg(format!("undoing the retry: {e}"))))?;
                drop(input);
                if let Some(c) = changes(&base, &state()?) {
                    return Err(Error::msg(format!(
                        "N = {n}: after the injected {ename}, the retry and its undo: {c}"
                    )));
                }
            }
            (Err(e), false) => {
                return Err(Error::msg(format!(
                    "N = {n}: failed without consuming the injected fault: {e}"
                )))
            }
        }
    }
    tally.stopped = Some(format!("N reached the cap of {MAX_N}"));
    Ok(())
}

// ---------------------------------------------------------------------------
// The calls

fn dma_ranges() -> Vec<VfioRegionDmaRange> {
    RANGES
        .iter()
        .map(|&(offset, length)| VfioRegionDmaRange { offset, length })
        .collect()
}

/// ivshmem's VFIO device in an IOAS of its own.
struct Ivs {
    bdf: String,
    /// Closed before `iommufd`.
    dev: VfioDevice,
    iommufd: Iommufd,
    ioas: u32,
}

impl Ivs {
    fn open(f: &mut Facts) -> Result<Self> {
        let kvm::Ivshmem { bdf, dev, iommufd } = kvm::open_ivshmem(f)?;
        let ioas = iommufd.ioas_alloc()?;
        dev.attach_ioas(ioas)?;
        // The range is free in the new IOAS, or every case would fail.
        let buf = dev.export_dma_buf(BAR2, &RANGES)?;
        let at = iommufd.map_file(ioas, buf.as_fd(), 0, LEN, IOVA)?;
        iommufd.unmap(ioas, at, LEN)?;
        f.add(format!(
            "attached to IOAS {ioas}; a {} dma-buf of 3 ranges maps at IOVA {}",
            size(LEN),
            span(IOVA, LEN)
        ));
        Ok(Ivs {
            bdf,
            dev,
            iommufd,
            ioas,
        })
    }

    fn export(&self) -> Result<OwnedFd> {
        self.dev.export_dma_buf(BAR2, &RANGES)
    }
}

/// VFIO_DEVICE_FEATURE(GET | DMA_BUF).
struct ExportVfio<'a> {
    ivs: &'a Ivs,
    arg: DmaBufFeatureArg,
}

impl Target for ExportVfio<'_> {
    type Input = ();
    type Output = OwnedFd;
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }
    fn call(&mut self, _: &()) -> Result<OwnedFd> {
        sys::vfio_feature_dma_buf_arg(self.ivs.dev.as_fd(), &mut self.arg)
            .op("VFIO_DEVICE_FEATURE(DMA_BUF)")
    }
    fn undo(&mut self, _: &(), fd: OwnedFd) -> Result<()> {
        sys::close(fd).op("close the dma-buf")
    }
    // ENOMEM only: vfio_pci_core_feature_dma_buf() returns -ENOMEM for
    // memdup_array_user(), priv and phys_vec; dma_buf_export() for the
    // anon inode, alloc_file_pseudo() and the dma_buf; dma_buf_fd() needs no
    // allocation with a small fd table.
}

/// IOMMU_IOAS_MAP_FILE of a fresh dma-buf at IOVA, unmapped on success.
struct MapFile<'a> {
    ivs: &'a Ivs,
}

impl Target for MapFile<'_> {
    type Input = OwnedFd;
    type Output = u64;
    fn prepare(&mut self) -> Result<OwnedFd> {
        self.ivs.export()
    }
    fn call(&mut self, buf: &OwnedFd) -> Result<u64> {
        self.ivs
            .iommufd
            .map_file(self.ivs.ioas, buf.as_fd(), 0, LEN, IOVA)
    }
    fn undo(&mut self, _: &OwnedFd, at: u64) -> Result<()> {
        if at != IOVA {
            return Err(Error::msg(format!(
                "mapped at {at:#x}, asked for {IOVA:#x}"
            )));
        }
        let n = self.ivs.iommufd.unmap(self.ivs.ioas, at, LEN)?;
        if n != LEN {
            return Err(Error::msg(format!(
                "unmapped {}, mapped {}",
                size(n),
                size(LEN)
            )));
        }
        Ok(())
    }
    /// No IOAS mapping left: unmapping the range finds nothing.
    fn nothing_left(&mut self, _: &OwnedFd) -> Result<()> {
        expect_errno(self.ivs.iommufd.unmap(self.ivs.ioas, IOVA, LEN), ENOENT)
            .map(|_| ())
            .map_err(|e| Error::msg(format!("IOMMU_IOAS_UNMAP of {}: {e}", span(IOVA, LEN))))
    }
    fn allowed(&self, source: &str) -> &'static [i32] {
        map_allowed(source)
    }
}

/// The errnos of an injected failure of IOMMU_IOAS_MAP_FILE, by attribute.
/// failslab: ENOMEM only (dma_buf_dynamic_attach(), the description VFIO
/// builds in vfio_pci_dma_buf_describe(), xa_alloc() in
/// dma_buf_get_memory(), kvcalloc() in iopt_dmabuf_set_memory(),
/// iopt_alloc_pages() and the area, the domain tracker). fail_iommufd
/// (CONFIG_IOMMUFD_TEST's iommufd_should_fail(), not an allocation):
/// iommufd_get_object() of the IOAS gives ENOENT, temp_kmalloc() and the
/// pinned-page accounting ENOMEM.
fn map_allowed(source: &str) -> &'static [i32] {
    if source == "fail_iommufd" {
        &[ENOENT, ENOMEM]
    } else {
        &[ENOMEM]
    }
}

/// KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_DMABUF of a fresh dma-buf,
/// deleted on success.
struct Memslot<'a> {
    ivs: &'a Ivs,
    vm: VmFd,
}

impl Target for Memslot<'_> {
    type Input = OwnedFd;
    type Output = ();
    fn prepare(&mut self) -> Result<OwnedFd> {
        self.ivs.export()
    }
    fn call(&mut self, buf: &OwnedFd) -> Result<()> {
        // set_region() formats its error after the ioctl only; the success
        // path allocates nothing.
        kvm::set_region(
            &self.vm,
            MemoryRegion2::dmabuf(SLOT, GPA, LEN, buf.as_raw_fd(), 0),
        )
    }
    fn undo(&mut self, _: &OwnedFd, (): ()) -> Result<()> {
        kvm::set_region(&self.vm, MemoryRegion2::delete(SLOT))
    }
    // ENOMEM only: kvm_set_memory_region() (the new slot),
    // kvm_alloc_memslot_metadata() (rmap, lpage_info, page tracking),
    // kvm_dmabuf_bind() (kvm_dmabuf_slot, dma_buf_dynamic_attach()),
    // dma_buf_get_memory() and kvm_dmabuf_build_ranges() all give -ENOMEM.
    // No memslot left is shown by the retry: creating the slot succeeds.
}

/// RUST_DMABUF_EXPORT_PINNED.
struct ExportRust {
    dev: File,
}

impl Target for ExportRust {
    type Input = ();
    type Output = OwnedFd;
    fn prepare(&mut self) -> Result<()> {
        Ok(())
    }
    fn call(&mut self, _: &()) -> Result<OwnedFd> {
        sys::ioctl_new_fd(self.dev.as_fd(), rust_exporter::EXPORT_PINNED)
            .op("RUST_DMABUF_EXPORT_PINNED")
    }
    fn undo(&mut self, _: &(), fd: OwnedFd) -> Result<()> {
        sys::close(fd).op("close the dma-buf")
    }
    // ENOMEM only: the sample's KVec/KBox and the description's builder
    // return AllocError, which kernel::error maps to ENOMEM; the C side
    // (dma_buf_export(), dma_buf_fd()) as for VFIO.
}

/// Where DESCRIBE's fresh buffers come from.
enum Exporter<'a> {
    Vfio(&'a Ivs),
    Rust(File),
}

/// DMABUF_IMPORT_SAMPLE_DESCRIBE of a fresh dma-buf.
struct Describe<'a> {
    sample: File,
    from: Exporter<'a>,
}

impl Target for Describe<'_> {
    type Input = OwnedFd;
    type Output = ();
    fn prepare(&mut self) -> Result<OwnedFd> {
        match &self.from {
            Exporter::Vfio(ivs) => ivs.export(),
            Exporter::Rust(dev) => sys::ioctl_new_fd(dev.as_fd(), rust_exporter::EXPORT_PINNED)
                .op("RUST_DMABUF_EXPORT_PINNED"),
        }
    }
    fn call(&mut self, buf: &OwnedFd) -> Result<()> {
        import_sample::describe(&self.sample, buf).map(|_| ())
    }
    fn note(&self) -> Option<String> {
        Some(match self.from {
            Exporter::Vfio(_) => format!("a fresh {} VFIO dma-buf of 3 ranges each N", size(LEN)),
            Exporter::Rust(_) => "a fresh RUST_DMABUF_EXPORT_PINNED buffer each N".into(),
        })
    }
    fn undo(&mut self, _: &OwnedFd, (): ()) -> Result<()> {
        Ok(())
    }
    // ENOMEM only: sample_describe() passes on dma_buf_dynamic_attach()'s
    // -ENOMEM and dma_buf_get_memory()'s (xa_alloc(), the exporter's
    // description).
}

/// DMABUF_IMPORT_SAMPLE_MAP of a fresh VFIO dma-buf for ivshmem itself: a
/// dynamic P2P attachment and vfio-pci's map_dma_buf, which builds the
/// sg_table from the buffer's ranges and DMA-maps it for the device.
struct MapVfio<'a> {
    sample: File,
    ivs: &'a Ivs,
}

impl Target for MapVfio<'_> {
    type Input = OwnedFd;
    type Output = ();
    fn prepare(&mut self) -> Result<OwnedFd> {
        self.ivs.export()
    }
    fn call(&mut self, buf: &OwnedFd) -> Result<()> {
        import_sample::map_for_pci(&self.sample, buf, &self.ivs.bdf).map(|_| ())
    }
    fn undo(&mut self, _: &OwnedFd, (): ()) -> Result<()> {
        Ok(())
    }
    // ENOMEM only: dma_buf_dynamic_attach() (the attachment),
    // dma_buf_phys_vec_to_sgt() (the table, its scatterlist) and the
    // IOMMU's page tables behind dma_map_phys() all give -ENOMEM.
}

/// DMABUF_IMPORT_SAMPLE_MAP of a fresh RUST_DMABUF_EXPORT_PINNED buffer: a
/// static attachment of the sample's platform device, served by the Rust
/// exporter's MAP_DMA_BUF from its shared description
/// (dma_buf_memory_map()).
struct MapRust {
    sample: File,
    dev: File,
}

impl Target for MapRust {
    type Input = OwnedFd;
    type Output = ();
    fn prepare(&mut self) -> Result<OwnedFd> {
        sys::ioctl_new_fd(self.dev.as_fd(), rust_exporter::EXPORT_PINNED)
            .op("RUST_DMABUF_EXPORT_PINNED")
    }
    fn call(&mut self, buf: &OwnedFd) -> Result<()> {
        import_sample::map_static(&self.sample, buf).map(|_| ())
    }
    fn undo(&mut self, _: &OwnedFd, (): ()) -> Result<()> {
        Ok(())
    }
    // ENOMEM only: dma_buf_attach(), dma_buf_memory_map()'s table and
    // scatterlist (sg_alloc_table()), and dma_map_sgtable()'s give -ENOMEM;
    // kernel::error maps the Rust side's AllocError to ENOMEM.
}

/// DMABUF_IMPORT_SAMPLE_DESCRIBE of a fresh udmabuf of one memfd: udmabuf
/// builds and seals its description on the first get_memory.
struct DescribeUdmabuf {
    sample: File,
    dev: Udmabuf,
    memfd: Memfd,
}

impl Target for DescribeUdmabuf {
    type Input = OwnedFd;
    type Output = ();
    fn prepare(&mut self) -> Result<OwnedFd> {
        self.dev.create(self.memfd.raw(), 0, UDMABUF_LEN)
    }
    fn call(&mut self, buf: &OwnedFd) -> Result<()> {
        import_sample::describe(&self.sample, buf).map(|_| ())
    }
    fn undo(&mut self, _: &OwnedFd, (): ()) -> Result<()> {
        Ok(())
    }
    // ENOMEM only: dma_buf_dynamic_attach(), udmabuf_describe()'s
    // dma_buf_memory_alloc() and the core's xa_alloc() give -ENOMEM.
}

// ---------------------------------------------------------------------------
// The cases

/// A VM with KVM_MEM_DMABUF, `None` when KVM does not offer it.
pub(crate) fn open_vm() -> Result<Option<VmFd>> {
    let kvm = Kvm::new().map_err(|e| Error::sys("open /dev/kvm", e.errno()))?;
    let vm = kvm
        .create_vm()
        .map_err(|e| Error::sys("KVM_CREATE_VM", e.errno()))?;
    Ok((vm.check_extension_raw(KVM_CAP_DMABUF_MEMSLOT.into()) == 1).then_some(vm))
}

/// Runs one case; adds its failure points to `total`.
fn case<T: Target>(
    r: &mut Runner<'_>,
    which: usize,
    fail: &FailNth,
    settings: &FaultSettings,
    mut t: T,
    total: &mut u32,
) {
    let mut tally = Tally::default();
    let note = t.note();
    r.check(CASES[which], |f| {
        if let Some(n) = note {
            f.add(n);
        }
        let res = exercise(fail, settings, &mut t, &mut tally);
        tally.facts(f);
        res
    });
    *total += tally.points();
}

fn skip_all(r: &mut Runner<'_>, why: &str) {
    for c in CASES {
        r.skip(c, why);
    }
}

fn absent() -> Option<String> {
    if !Path::new(FAIL_NTH).exists() {
        return Some(format!(
            "no {FAIL_NTH}: the kernel lacks CONFIG_FAULT_INJECTION"
        ));
    }
    if !Path::new(FAILSLAB).is_dir() {
        return Some(format!(
            "no {FAILSLAB}: the kernel lacks CONFIG_FAILSLAB or \
             CONFIG_FAULT_INJECTION_DEBUG_FS, or debugfs is not mounted"
        ));
    }
    None
}

pub fn run(r: &mut Runner<'_>) -> bool {
    test(r);
    r.finish()
}

fn test(r: &mut Runner<'_>) {
    if let Some(why) = absent() {
        skip_all(r, &why);
        return;
    }
    let Ok((fail, mut settings)) = r.require(
        "setup: fault injection by fail-nth only (failslab, the other fault attributes)",
        |f| {
            let s = FaultSettings::apply(f)?;
            let fail = FailNth::open()?;
            f.add(format!(
                "at most N = {MAX_N} and {} s per call",
                BUDGET.as_secs()
            ));
            Ok((fail, s))
        },
    ) else {
        return;
    };
    let mut total = 0u32;

    r.section("VFIO, iommufd and KVM on ivshmem's BAR2");
    let (ivs, why) = match fuzz::ivshmem_absent() {
        Some(why) => (None, why),
        None => (
            r.attempt(
                "setup: ivshmem's VFIO device in an IOAS of its own",
                Ivs::open,
            ),
            "the setup failed".to_string(),
        ),
    };
    if let Some(ivs) = &ivs {
        let arg =
            DmaBufFeatureArg::new(BAR2, (libc::O_RDWR | libc::O_CLOEXEC) as u32, &dma_ranges());
        case(
            r,
            VFIO,
            &fail,
            &settings,
            ExportVfio { ivs, arg },
            &mut total,
        );
        case(r, MAP, &fail, &settings, MapFile { ivs }, &mut total);
        if !Path::new("/dev/kvm").exists() {
            r.skip(CASES[SLOT_CASE], "no /dev/kvm");
        } else {
            match open_vm() {
                Ok(Some(vm)) => case(
                    r,
                    SLOT_CASE,
                    &fail,
                    &settings,
                    Memslot { ivs, vm },
                    &mut total,
                ),
                Ok(None) => r.skip(
                    CASES[SLOT_CASE],
                    "KVM_CAP_DMABUF_MEMSLOT is not reported: no KVM_MEM_DMABUF here",
                ),
                Err(e) => {
                    r.check(CASES[SLOT_CASE], |_| Err(e));
                }
            }
        }
    } else {
        for c in [VFIO, MAP, SLOT_CASE] {
            r.skip(CASES[c], &why);
        }
    }

    r.section("The samples");
    let rust = Path::new(rust_exporter::DEVICE).exists();
    if rust {
        match rust_exporter::open() {
            Ok(dev) => case(r, RUST, &fail, &settings, ExportRust { dev }, &mut total),
            Err(e) => {
                r.check(CASES[RUST], |_| Err(e));
            }
        }
    } else {
        r.skip(
            CASES[RUST],
            &format!(
                "no {}: rust_dmabuf_exporter is not loaded",
                rust_exporter::DEVICE
            ),
        );
    }
    if !Path::new(import_sample::DEVICE).exists() {
        r.skip(
            CASES[DESCRIBE],
            &format!(
                "no {}: dmabuf_import_sample is not loaded",
                import_sample::DEVICE
            ),
        );
    } else {
        let from = match &ivs {
            Some(ivs) => Ok(Some(Exporter::Vfio(ivs))),
            None if rust => rust_exporter::open().map(|d| Some(Exporter::Rust(d))),
            None => Ok(None),
        };
        match (from, import_sample::open()) {
            (Ok(Some(from)), Ok(sample)) => case(
                r,
                DESCRIBE,
                &fail,
                &settings,
                Describe { sample, from },
                &mut total,
            ),
            (Ok(None), _) => r.skip(
                CASES[DESCRIBE],
                "no exporter: neither ivshmem nor the Rust sample",
            ),
            (Err(e), _) | (_, Err(e)) => {
                r.check(CASES[DESCRIBE], |_| Err(e));
            }
        }
    }

    r.section("udmabuf through the C sample");
    udmabuf_describe(r, &fail, &settings, &mut total);

    r.section("sg_table maps through the C sample");
    sg_maps(r, &fail, &settings, ivs.as_ref(), rust, &mut total);
    drop(ivs);

    r.check("the fault injection settings are restored", |f| {
        let n = settings.restore()?;
        f.add(format!("{n} debugfs values written back"));
        Ok(())
    });
    r.comment(&format!("failnth: {total} failure points in all"));
}

fn udmabuf_describe(r: &mut Runner<'_>, fail: &FailNth, settings: &FaultSettings, total: &mut u32) {
    if !Path::new(udmabuf::DEVICE).exists() {
        r.skip(
            CASES[UDMABUF],
            &format!("no {}: the kernel lacks CONFIG_UDMABUF", udmabuf::DEVICE),
        );
        return;
    }
    if !Path::new(import_sample::DEVICE).exists() {
        r.skip(
            CASES[UDMABUF],
            &format!(
                "no {}: dmabuf_import_sample is not loaded",
                import_sample::DEVICE
            ),
        );
        return;
    }
    let parts = import_sample::open().and_then(|sample| {
        let dev = Udmabuf::open()?;
        let memfd = Memfd::with_pattern(c"failnth-udmabuf", UDMABUF_LEN, 0)?;
        Ok(DescribeUdmabuf { sample, dev, memfd })
    });
    match parts {
        Ok(t) => case(r, UDMABUF, fail, settings, t, total),
        Err(e) => {
            r.check(CASES[UDMABUF], |_| Err(e));
        }
    }
}

/// The two sg_table paths: vfio-pci's own (P2P, for ivshmem) and the Rust
/// exporter's through `dma_buf_memory_map()`.
fn sg_maps(
    r: &mut Runner<'_>,
    fail: &FailNth,
    settings: &FaultSettings,
    ivs: Option<&Ivs>,
    rust: bool,
    total: &mut u32,
) {
    if !Path::new(import_sample::DEVICE).exists() {
        let why = format!(
            "no {}: dmabuf_import_sample is not loaded",
            import_sample::DEVICE
        );
        r.skip(CASES[SG_VFIO], &why);
        r.skip(CASES[SG_RUST], &why);
        return;
    }
    match (ivs, import_sample::open()) {
        (None, _) => r.skip(CASES[SG_VFIO], "no ivshmem VFIO device (see above)"),
        (Some(ivs), Ok(sample)) => case(r, SG_VFIO, fail, settings, MapVfio { sample, ivs }, total),
        (Some(_), Err(e)) => {
            r.check(CASES[SG_VFIO], |_| Err(e));
        }
    }
    if !rust {
        r.skip(
            CASES[SG_RUST],
            &format!(
                "no {}: rust_dmabuf_exporter is not loaded",
                rust_exporter::DEVICE
            ),
        );
        return;
    }
    match (import_sample::open(), rust_exporter::open()) {
        (Ok(sample), Ok(dev)) => case(r, SG_RUST, fail, settings, MapRust { sample, dev }, total),
        (Err(e), _) | (_, Err(e)) => {
            r.check(CASES[SG_RUST], |_| Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        let mut b = [0u8; 10];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(7, &mut b), b"7");
        assert_eq!(decimal(300, &mut b), b"300");
        assert_eq!(decimal(u32::MAX, &mut b), b"4294967295");
    }

    #[test]
    fn fail_nth_read_back() {
        assert_eq!(parse_left(b"0\n"), Some(0));
        assert_eq!(parse_left(b"12\n"), Some(12));
        assert_eq!(parse_left(b""), None);
        assert_eq!(parse_left(b"x\n"), None);
    }

    #[test]
    fn attachments_are_summed() {
        let text = "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\
                    00065536\t00000002\t00080007\t00000002\tvfio_pci\t00000042\t<none>\n\
                    \tAttached Devices:\n\tkvm\n\tiommufd\nTotal 2 devices attached\n\n\
                    00016384\t00000002\t00080007\t00000001\trust_dmabuf_exporter\t00000043\t<none>\n\
                    \tAttached Devices:\nTotal 0 devices attached\n\n\
                    \nTotal 2 objects, 81920 bytes\n";
        assert_eq!(attached_devices(text), Some(2));
        assert_eq!(attached_devices("nothing"), Some(0));
        assert_eq!(
            kvm::parse_bufinfo(text),
            Some(BufInfo {
                objects: 2,
                kvm_attachments: 1
            })
        );
    }

    #[test]
    fn changes_are_named() {
        let b = State {
            fds: 5,
            bufs: Some(BufInfo {
                objects: 2,
                kvm_attachments: 0,
            }),
            attached: Some(1),
        };
        assert_eq!(changes(&b, &b), None);
        let n = State {
            fds: 6,
            bufs: Some(BufInfo {
                objects: 3,
                kvm_attachments: 1,
            }),
            attached: Some(2),
        };
        assert_eq!(
            changes(&b, &n).unwrap(),
            "6 descriptors open, 5 before; 3 dma-bufs alive, 2 before; \
             1 KVM attachments, 0 before; 2 dma-buf attachments, 1 before"
        );
        // An unreadable bufinfo compares only descriptors.
        let u = State {
            bufs: None,
            attached: None,
            ..b
        };
        assert_eq!(changes(&b, &u), None);
    }

    #[test]
    fn runs_of_n() {
        assert_eq!(runs(&[]), "");
        assert_eq!(runs(&[4]), "4");
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
    }

    #[test]
    fn tally_report() {
        let mut t = Tally::default();
        assert_eq!(t.points(), 0);
        assert_eq!(t.histogram(), "none");
        *t.failed.entry(("failslab".into(), ENOMEM)).or_default() += 20;
        *t.failed.entry(("fail_iommufd".into(), ENOENT)).or_default() += 1;
        t.succeeded
            .entry("failslab".into())
            .or_default()
            .extend([4, 5, 9]);
        t.completed_at = Some(25);
        assert_eq!(t.points(), 24);
        assert_eq!(
            t.histogram(),
            "ENOENT x 1 (fail_iommufd), ENOMEM x 20 (failslab)"
        );
        let mut f = Facts::default();
        t.facts(&mut f);
        assert_eq!(
            f.lines(),
            [
                "24 failure points (N that consumed the fault): 21 failed, 3 succeeded anyway",
                "errnos of the injected failures: ENOENT x 1 (fail_iommufd), ENOMEM x 20 (failslab)",
                "consumed yet succeeded (an optional or retried allocation), failslab: N = 4-5, 9",
                "N = 25: completed without consuming the fault",
            ]
        );
    }

    #[test]
    fn sources() {
        assert_eq!(source_of(&[]), "unknown");
        assert_eq!(source_of(&["failslab".into()]), "failslab");
        assert_eq!(
            source_of(&["fail_iommufd".into(), "failslab".into()]),
            "fail_iommufd+failslab"
        );
    }

    #[test]
    fn allowed_errnos() {
        assert_eq!(map_allowed("failslab"), &[ENOMEM]);
        assert_eq!(map_allowed("unknown"), &[ENOMEM]);
        assert_eq!(map_allowed("fail_iommufd"), &[ENOENT, ENOMEM]);
    }
}
