//! `dmabuf-tool fuzz`: random and boundary inputs to the uAPIs of the series,
//! every result checked against the documented rules. One TAP case per
//! interface:
//!
//! - `VFIO_DEVICE_FEATURE` with `GET | DMA_BUF` on ivshmem: region index,
//!   open flags, the ranges (count, offsets, lengths);
//! - `IOMMU_IOAS_MAP_FILE` of a three-range VFIO dma-buf of ivshmem's BAR2,
//!   its read-only twin, a memfd, a read-only memfd, /dev/null and numbers
//!   that are not open: flags, IOVA, start, length;
//! - `KVM_SET_USER_MEMORY_REGION2` with `KVM_MEM_DMABUF` on one VM: slot,
//!   extra flags, GPA, size, `dmabuf_fd`, `dmabuf_offset`, `userspace_addr`;
//! - the ioctls of the Rust exporter sample (`/dev/rust_dmabuf_exporter`);
//! - the ioctls of the C import sample (`/dev/dmabuf_import_sample`).
//!
//! For every input a model of the documented rules (an [`Expect`], built
//! from the README's "Bad input" tables, the uAPI documentation and the
//! series' sources, never from what the kernel answered) says whether the
//! call must succeed, must fail and with which errnos, or may do either (a
//! limit this tool cannot see, such as the IOVAs the IOMMU reserves). A
//! result is wrong when its errno is not documented for the call, when a
//! call the rules refuse succeeds, when a call they accept fails, or when a
//! refusal carries an errno that no broken rule gives; ENOMEM is always
//! allowed. A success is checked further (the new dma-buf's fdinfo, the IOVA
//! and the unmap, the slot's deletion) and undone.
//!
//! The inputs come from SplitMix64, one stream per interface derived from
//! `--seed`, so a run replays; each interface also stops at a time budget,
//! since the test guest is TCG with KASAN and lockdep.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY};
use kvm_ioctls::{Kvm, VmFd};
use libc::{
    E2BIG, EACCES, EBADF, EEXIST, EFAULT, EINTR, EINVAL, ENODEV, ENOMEM, ENOSPC, ENOTTY,
    EOPNOTSUPP, EOVERFLOW, EPERM,
};

use crate::args::{size, span};
use crate::dmabuf;
use crate::errno::{name, Context, Error, Result};
use crate::import_sample;
use crate::iommufd::Iommufd;
use crate::kvm::{self, MemoryRegion2, BAR2, BAR2_RANGES, KVM_CAP_DMABUF_MEMSLOT, KVM_MEM_DMABUF};
use crate::mmap::Mapping;
use crate::pci::{PciId, Sysfs, EDU, IVSHMEM, PCI_TESTDEV};
use crate::report::{Facts, Runner};
use crate::rust_exporter;
use crate::story::{no_fd_left, open_fds, DMA_BUF_MEMORY_MAX_RANGES};
use crate::sys::{self, ImportSampleDescribe, ImportSampleMap, VfioRegionDmaRange};
use crate::vfio::VfioDevice;

const PAGE: u64 = 4096;
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The seed when `--seed` is not given.
pub const DEFAULT_SEED: u64 = 0xdb_5eed;
/// The calls in all when `--calls` is not given.
pub const DEFAULT_CALLS: u64 = 10_000;

// The interfaces, in the order they run.
const VFIO: usize = 0;
const MAP: usize = 1;
const SLOT: usize = 2;
const RUST: usize = 3;
const SAMPLE: usize = 4;
const NAMES: [&str; 5] = [
    "VFIO_DEVICE_FEATURE_DMA_BUF",
    "IOMMU_IOAS_MAP_FILE",
    "KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_DMABUF",
    "the ioctls of /dev/rust_dmabuf_exporter",
    "the ioctls of /dev/dmabuf_import_sample",
];
/// Each interface's share of the calls, in percent.
const SHARES: [u64; 5] = [30, 30, 25, 7, 8];
/// Each interface stops after this long even if calls are left: about 76 s
/// in all at most.
const BUDGETS: [Duration; 5] = [
    Duration::from_secs(20),
    Duration::from_secs(20),
    Duration::from_secs(20),
    Duration::from_secs(8),
    Duration::from_secs(8),
];
/// Offending inputs shown per interface.
const SHOWN: usize = 5;

// ---------------------------------------------------------------------------
// The documented errnos of each call, and where they are documented.

/// `VFIO_DEVICE_FEATURE(GET | DMA_BUF)`: README "uAPI: VFIO" (EINVAL,
/// EOVERFLOW, ENODEV; its E2BIG comes from MAP_FILE, not from the export);
/// drivers/vfio/pci/vfio_pci_dmabuf.c vfio_pci_core_feature_dma_buf():
/// EINVAL (no ranges, flags, validate_dmabuf_input(), no P2P provider,
/// vfio_pci_core_fill_phys_vec()), EOVERFLOW (fill_phys_vec()), ENODEV
/// (region not a BAR with a resource, registration), ENOMEM
/// (memdup_array_user(), kzalloc, dma_buf_export()). Left out: EFAULT (our
/// buffer is always readable), EOPNOTSUPP (drivers without get_dmabuf_phys,
/// not vfio-pci), ENOENT (exporter module going away), EMFILE.
const VFIO_ERRNOS: &[i32] = &[EINVAL, EOVERFLOW, ENODEV, ENOMEM];
/// `IOMMU_IOAS_MAP_FILE`: README "uAPI: iommufd" (EACCES, EPERM, ENODEV,
/// EEXIST, EOPNOTSUPP, EINVAL, EBADF) and the E2BIG of vfio's get_memory;
/// drivers/iommu/iommufd/ioas.c iommufd_ioas_map_file() (EOPNOTSUPP for
/// unknown flags, EOVERFLOW, EINVAL), io_pagetable.c iopt_map_file_pages(),
/// iopt_alloc_iova(), iopt_check_iova(), iopt_insert_area() (EINVAL,
/// EOVERFLOW, EBADF, EACCES, ENOSPC, EEXIST, EPERM), pages.c (EINVAL,
/// ENOMEM, EPERM for seals). Left out: ENOENT (the IOAS id is not fuzzed).
const MAP_ERRNOS: &[i32] = &[
    EOPNOTSUPP, EOVERFLOW, EINVAL, EBADF, EACCES, EPERM, EEXIST, ENOSPC, ENODEV, E2BIG, ENOMEM,
];
/// `KVM_SET_USER_MEMORY_REGION2` with `KVM_MEM_DMABUF`:
/// Documentation/virt/kvm/api.rst, "Errors specific to KVM_MEM_DMABUF"
/// (EINVAL, EBADF, E2BIG, EACCES, EOPNOTSUPP, ENODEV) and "Other errors
/// (e.g. ENOMEM) ...; EINTR"; virt/kvm/kvm_main.c kvm_set_memory_region():
/// EEXIST for overlapping slots ("Slots may not overlap", KVM_SET_USER_MEMORY_REGION).
const SLOT_ERRNOS: &[i32] = &[
    EINVAL, EBADF, E2BIG, EACCES, EOPNOTSUPP, ENODEV, EEXIST, ENOMEM, EINTR,
];
/// samples/rust/rust_dmabuf_exporter.rs `ioctl()`: ENOTTY for any other
/// command; ENOMEM from the page and buffer allocations.
const RUST_ERRNOS: &[i32] = &[ENOTTY, ENOMEM];
/// samples/c/dmabuf_import_sample.h, DESCRIBE (EBADF, EINVAL, EOPNOTSUPP,
/// ENODEV, EPERM, EINTR, EFAULT) and MAP (EOPNOTSUPP, ENODEV, EINVAL, EPERM,
/// EFAULT; EBADF from dma_buf_get()); dmabuf_import_sample.c sample_ioctl():
/// ENOTTY; ENOMEM from the attach and the mapping.
const SAMPLE_ERRNOS: &[i32] = &[
    EBADF, EINVAL, EOPNOTSUPP, ENODEV, EPERM, EINTR, EFAULT, ENOTTY, ENOMEM,
];
const ERRNOS: [&[i32]; 5] = [
    VFIO_ERRNOS,
    MAP_ERRNOS,
    SLOT_ERRNOS,
    RUST_ERRNOS,
    SAMPLE_ERRNOS,
];

// ---------------------------------------------------------------------------
// Inputs

/// SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit counter through a
/// mixing function. Small, fast, and good enough to pick test inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The generator of interface `n` for `seed`: its own stream, so that a
    /// time budget cutting one interface short leaves the inputs of the
    /// next as they were.
    pub fn stream(seed: u64, n: u64) -> Self {
        Rng::new(mix(seed ^ mix(n.wrapping_add(1).wrapping_mul(GOLDEN))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `[0, n)`, or 0 when `n` is 0 (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`, which must not be empty.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A random multiple of the page size in `[0, limit]`.
    fn page_in(&mut self, limit: u64) -> u64 {
        self.below(limit / PAGE + 1) * PAGE
    }
}

/// Values at the edges of something of `size` bytes, and at the integer limits.
pub fn boundaries(size: u64) -> [u64; 16] {
    [
        0,
        1,
        PAGE - 1,
        PAGE,
        PAGE + 1,
        size.wrapping_sub(PAGE),
        size.wrapping_sub(1),
        size,
        size.wrapping_add(1),
        size.wrapping_add(PAGE),
        u64::from(u32::MAX),
        1 << 32,
        1 << 63,
        u64::MAX - PAGE + 1,
        u64::MAX - 1,
        u64::MAX,
    ]
}

/// An offset or a length into something of `size` bytes: a boundary, a
/// multiple of the page size within it, a value inside it, or anything.
pub fn value(rng: &mut Rng, size: u64) -> u64 {
    match rng.below(10) {
        0..=3 => rng.pick(&boundaries(size)),
        4..=7 => rng.page_in(size),
        8 => rng.below(size),
        _ => rng.next_u64(),
    }
}

/// ioctl types whose commands the VFS handles itself before a driver sees
/// them (fs/ioctl.c do_vfs_ioctl()): FIBMAP and FIGETBSZ (0x00),
/// FS_IOC_GETFSUUID and FS_IOC_GETFSSYSFSPATH (0x15), FIOCLEX, FIONCLEX,
/// FIONBIO, FIOASYNC, FIOQSIZE and FIONREAD ('T'), FIFREEZE, FITHAW and the
/// fsxattr ioctls ('X'), FS_IOC_FIEMAP, GETFLAGS and SETFLAGS ('f'),
/// FICLONE, FICLONERANGE and FIDEDUPERANGE (0x94).
const VFS_IOCTL_TYPES: [u8; 6] = [0x00, 0x15, b'T', b'X', b'f', 0x94];

/// A random ioctl command that reaches the driver.
pub fn random_cmd(rng: &mut Rng) -> u32 {
    loop {
        let cmd = rng.next_u64() as u32;
        if !VFS_IOCTL_TYPES.contains(&((cmd >> 8) as u8)) {
            return cmd;
        }
    }
}

/// Descriptor numbers that cannot be open: negative, or far above
/// RLIMIT_NOFILE (1024) and below fs.nr_open (1048576) or above it.
const NOT_OPEN: [i32; 6] = [-1, -2, i32::MIN, i32::MAX, 1 << 20, 999_999];

// ---------------------------------------------------------------------------
// What the rules say

/// What the documented rules say of one input: the errnos of the rules it
/// breaks, each with the rule, and whether it may succeed. A rule this tool
/// cannot judge adds its errno without making the call fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    refused: bool,
    errnos: Vec<(i32, &'static str)>,
}

impl Expect {
    /// The input breaks a rule: the call must fail, with `errno` or the
    /// errno of another broken rule.
    fn refuse(&mut self, errno: i32, why: &'static str) {
        self.refused = true;
        self.add(errno, why);
    }

    /// `refuse`, for a rule whose errno depends on what this tool cannot see.
    fn refuse_any(&mut self, errnos: &[i32], why: &'static str) {
        for &e in errnos {
            self.refuse(e, why);
        }
    }

    /// The input may break a rule this tool cannot judge from here: the
    /// call may fail with `errno`, or succeed.
    fn maybe(&mut self, errno: i32, why: &'static str) {
        self.add(errno, why);
    }

    fn add(&mut self, errno: i32, why: &'static str) {
        if !self.errnos.contains(&(errno, why)) {
            self.errnos.push((errno, why));
        }
    }

    /// No rule refuses the input and none is in doubt: it must succeed.
    pub fn is_valid(&self) -> bool {
        !self.refused && self.errnos.is_empty()
    }

    /// A rule refuses the input: it must fail.
    pub fn is_refused(&self) -> bool {
        self.refused
    }

    pub fn allows(&self, errno: i32) -> bool {
        errno == ENOMEM || self.errnos.iter().any(|e| e.0 == errno)
    }

    /// The rules, "; "-separated.
    fn why(&self) -> String {
        let mut v: Vec<&str> = Vec::new();
        for (_, w) in &self.errnos {
            if !v.contains(w) {
                v.push(w);
            }
        }
        v.join("; ")
    }

    /// "EINVAL or EOVERFLOW", or "success or EINVAL".
    fn outcomes(&self) -> String {
        let mut v: Vec<String> = Vec::new();
        if !self.refused {
            v.push("success".into());
        }
        for (e, _) in &self.errnos {
            let n = name(*e).into_owned();
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v.join(" or ")
    }
}

/// Whether `outcome` (success or an errno) is what the rules in `e` allow
/// of a call whose documented errnos are `documented`; if not, why.
pub fn judge(
    outcome: std::result::Result<(), i32>,
    e: &Expect,
    documented: &[i32],
) -> std::result::Result<(), String> {
    match outcome {
        Ok(()) if e.is_refused() => Err(format!("succeeded, but: {}", e.why())),
        Ok(()) => Ok(()),
        Err(n) if !documented.contains(&n) => Err(format!(
            "{}: not among the errnos documented for this call",
            name(n)
        )),
        Err(n) if e.allows(n) => Ok(()),
        Err(n) if e.is_valid() => Err(format!("{} for an input the rules accept", name(n))),
        Err(n) => Err(format!(
            "{}, but the rules give {} ({})",
            name(n),
            e.outcomes(),
            e.why()
        )),
    }
}

/// The errno of a failed call.
fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// VFIO_DEVICE_FEATURE(GET | DMA_BUF)

/// The BARs of a PCI device: VFIO regions 0-5.
const NR_BARS: usize = 6;

/// Range counts at VFIO's and the chain's limits: `DMA_BUF_MEMORY_MAX_RANGES`
/// (more are exported but refused by vfio's get_memory), the most ranges
/// one kmalloc holds (4 MiB / 16 bytes), and beyond.
const HUGE_COUNTS: [usize; 5] = [
    DMA_BUF_MEMORY_MAX_RANGES,
    DMA_BUF_MEMORY_MAX_RANGES + 1,
    1 << 18,
    (1 << 18) + 1,
    1 << 20,
];

/// One export request. Not `Eq`: vfio-bindings' `vfio_region_dma_range` is
/// only `PartialEq`.
#[derive(Debug, Clone, PartialEq)]
pub struct VfioInput {
    pub region: u32,
    pub open_flags: u32,
    pub ranges: Vec<VfioRegionDmaRange>,
}

impl fmt::Display for VfioInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "region {}, open_flags {:#o}, {} ranges",
            self.region,
            self.open_flags,
            self.ranges.len()
        )?;
        for (i, r) in self.ranges.iter().take(8).enumerate() {
            let sep = if i == 0 { ":" } else { "," };
            write!(f, "{sep} {:#x}+{:#x}", r.offset, r.length)?;
        }
        if self.ranges.len() > 8 {
            write!(f, ", ...")?;
        }
        Ok(())
    }
}

fn range_count(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=24 => 0,
        25..=374 => 1,
        375..=724 => 2 + rng.below(3) as usize,
        725..=924 => 5 + rng.below(12) as usize,
        925..=995 => 17 + rng.below(496) as usize,
        _ => rng.pick(&HUGE_COUNTS),
    }
}

/// A range of something of `span` bytes: mostly whole pages inside it
/// (overlapping others as it happens), else from `value`.
fn vfio_range(rng: &mut Rng, span: u64) -> VfioRegionDmaRange {
    let pages = span / PAGE;
    if pages > 0 && rng.chance(60) {
        let first = rng.below(pages);
        let n = 1 + rng.below(pages - first);
        return VfioRegionDmaRange {
            offset: first * PAGE,
            length: n * PAGE,
        };
    }
    VfioRegionDmaRange {
        offset: value(rng, span),
        length: value(rng, span),
    }
}

/// An export request for a device whose BARs are `bars` bytes long.
pub fn vfio_input(rng: &mut Rng, bars: &[u64; NR_BARS]) -> VfioInput {
    let region = match rng.below(100) {
        0..=59 => BAR2,
        60..=74 => 0,
        75..=94 => rng.below(10) as u32,
        _ => rng.next_u64() as u32,
    };
    // Ranges for a region that is not a BAR with memory are made for BAR2,
    // so that only the region is wrong.
    let span = match bars.get(region as usize) {
        Some(&s) if s > 0 => s.max(PAGE),
        _ => bars[BAR2 as usize].max(PAGE),
    };
    let n = range_count(rng);
    let ranges = if n > 4096 {
        // Many pages walking through the BAR; sometimes one bad range.
        let pages = span / PAGE;
        let mut v: Vec<VfioRegionDmaRange> = (0..n as u64)
            .map(|i| VfioRegionDmaRange {
                offset: (i % pages) * PAGE,
                length: PAGE,
            })
            .collect();
        if rng.chance(50) {
            let i = rng.below(n as u64) as usize;
            v[i] = VfioRegionDmaRange {
                offset: value(rng, span),
                length: value(rng, span),
            };
        }
        v
    } else {
        (0..n).map(|_| vfio_range(rng, span)).collect()
    };
    const RW: i32 = libc::O_RDWR | libc::O_CLOEXEC;
    let open_flags = match rng.below(10) {
        0..=4 => RW,
        5..=8 => rng.pick(&[
            libc::O_RDONLY | libc::O_CLOEXEC,
            libc::O_WRONLY | libc::O_CLOEXEC,
            libc::O_RDWR,
            dmabuf::O_ACCMODE | libc::O_CLOEXEC,
            RW | libc::O_NONBLOCK,
            RW | libc::O_APPEND | libc::O_TRUNC | libc::O_CREAT,
            0,
        ]),
        _ => rng.next_u64() as i32,
    } as u32;
    VfioInput {
        region,
        open_flags,
        ranges,
    }
}

/// The rules of the export, for a device whose BARs 0-5 are `bars` bytes
/// long (0: no BAR). `open_flags` are not checked: the dma-buf core keeps
/// their access mode and O_NONBLOCK, the fd its O_CLOEXEC, and drops the
/// rest (dma_buf_getfile(), dma_buf_fd()).
pub fn expect_vfio(input: &VfioInput, bars: &[u64; NR_BARS]) -> Expect {
    let mut e = Expect::default();
    if input.ranges.is_empty() {
        e.refuse(EINVAL, "no ranges");
    }
    let size = bars.get(input.region as usize).copied().unwrap_or(0);
    if size == 0 {
        // Refused before the ranges are read.
        e.refuse(ENODEV, "the region is not a BAR with memory behind it");
        return e;
    }
    for r in &input.ranges {
        if r.length == 0 {
            e.refuse(EINVAL, "a range of length 0");
        } else if r.offset % PAGE != 0 || r.length % PAGE != 0 {
            e.refuse(EINVAL, "a range that is not whole pages");
        } else if r.offset.checked_add(r.length).is_none_or(|end| end > size) {
            // EOVERFLOW when the BAR's address plus the offset overflows,
            // which depends on where the BAR is.
            e.refuse_any(&[EINVAL, EOVERFLOW], "a range beyond the end of the BAR");
        }
    }
    e
}

/// A new dma-buf from `input` must be one: of the requested size, with the
/// exporter's name, and the requested access mode, O_NONBLOCK and O_CLOEXEC.
fn check_vfio_buf(
    fd: &OwnedFd,
    input: &VfioInput,
    exp_name: &str,
) -> std::result::Result<(), String> {
    let total = input
        .ranges
        .iter()
        .fold(0u64, |a, r| a.wrapping_add(r.length));
    let info = |key| dmabuf::fdinfo(fd, key).map_err(|e| format!("not a dma-buf: {e}"));
    let (name, len, flags) = (info("exp_name")?, info("size")?, info("flags")?);
    if name != exp_name || len != total.to_string() {
        return Err(format!(
            "the new dma-buf is {name} of {len} bytes, expected {exp_name} of {total}"
        ));
    }
    let bits = (dmabuf::O_ACCMODE | libc::O_NONBLOCK | libc::O_CLOEXEC) as u32;
    let got = u32::from_str_radix(&flags, 8).map_err(|_| format!("fdinfo flags {flags:?}"))?;
    if got & bits != input.open_flags & bits {
        return Err(format!(
            "the new dma-buf's fdinfo flags are {flags}: not the access mode, \
             O_NONBLOCK and O_CLOEXEC of open_flags"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// IOMMU_IOAS_MAP_FILE

/// The ranges of BAR2 the MAP_FILE target is exported from: out of order,
/// apart, of three sizes.
const MAP_RANGES: [(u64, u64); 3] = [(0, 64 * KIB), (MIB, 128 * KIB), (64 * KIB, 4 * KIB)];
const MAP_LEN: u64 = 196 * KIB;
const _: () = assert!(MAP_RANGES[0].1 + MAP_RANGES[1].1 + MAP_RANGES[2].1 == MAP_LEN);
/// Where that dma-buf stays mapped while MAP_FILE is fuzzed (for EEXIST).
const KEPT_IOVA: u64 = GIB;
/// IOVAs no IOMMU of the test guest reserves: above the first MiB and
/// below x86's MSI window (0xfee00000). Elsewhere a fixed mapping may be
/// refused with EINVAL (reserved, or beyond the IOMMU's address width).
const SAFE_IOVAS: (u64, u64) = (MIB, 0xf000_0000);
const _: () = assert!(SAFE_IOVAS.0 <= KEPT_IOVA && KEPT_IOVA + MAP_LEN <= SAFE_IOVAS.1);
/// No IOMMU has an address width above 57 bits: beyond, every IOVA is reserved.
const MAX_IOVA_BITS: u32 = 57;
/// Where the last check maps BAR2 again.
const WORKS_IOVA: u64 = 2 * MIB;
const _: () = assert!(WORKS_IOVA >= SAFE_IOVAS.0 && WORKS_IOVA + 2 * MIB <= KEPT_IOVA);
const MEMFD_LEN: u64 = 64 * KIB;

const FIXED: u32 = sys::IOMMU_IOAS_MAP_FIXED_IOVA;
const WRITE: u32 = sys::IOMMU_IOAS_MAP_WRITEABLE;
const READ: u32 = sys::IOMMU_IOAS_MAP_READABLE;

/// The file a MAP_FILE call maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapFd {
    /// The three-range dma-buf of BAR2, O_RDWR.
    DmaBuf,
    /// The same ranges exported O_RDONLY.
    DmaBufRo,
    /// A memfd of `MEMFD_LEN` bytes.
    Memfd,
    /// The same memfd reopened O_RDONLY.
    MemfdRo,
    /// /dev/null, O_RDWR: neither a dma-buf nor a memfd.
    DevNull,
    /// A number that is not open.
    NotOpen(i32),
}

impl MapFd {
    fn size(self) -> u64 {
        match self {
            MapFd::Memfd | MapFd::MemfdRo => MEMFD_LEN,
            _ => MAP_LEN,
        }
    }
}

impl fmt::Display for MapFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapFd::DmaBuf => write!(f, "the {} dma-buf", size(MAP_LEN)),
            MapFd::DmaBufRo => write!(f, "the O_RDONLY {} dma-buf", size(MAP_LEN)),
            MapFd::Memfd => write!(f, "the {} memfd", size(MEMFD_LEN)),
            MapFd::MemfdRo => write!(f, "the O_RDONLY {} memfd", size(MEMFD_LEN)),
            MapFd::DevNull => write!(f, "/dev/null"),
            MapFd::NotOpen(n) => write!(f, "fd {n} (not open)"),
        }
    }
}

/// One MAP_FILE request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapInput {
    pub fd: MapFd,
    pub flags: u32,
    pub iova: u64,
    pub start: u64,
    pub length: u64,
}

impl fmt::Display for MapInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, flags {:#x}, iova {:#x}, start {:#x}, length {:#x}",
            self.fd, self.flags, self.iova, self.start, self.length
        )
    }
}

const IOVA_BOUNDARIES: [u64; 14] = [
    0,
    1,
    PAGE - 1,
    PAGE,
    0xf000_0000,
    0xfee0_0000,
    1 << 32,
    1 << 39,
    1 << 47,
    1 << 48,
    1 << 57,
    1 << 63,
    u64::MAX - PAGE + 1,
    u64::MAX,
];

pub fn map_input(rng: &mut Rng) -> MapInput {
    let fd = match rng.below(100) {
        0..=49 => MapFd::DmaBuf,
        50..=61 => MapFd::DmaBufRo,
        62..=76 => MapFd::Memfd,
        77..=84 => MapFd::MemfdRo,
        85..=91 => MapFd::DevNull,
        _ => MapFd::NotOpen(rng.pick(&NOT_OPEN)),
    };
    let len = fd.size();
    let flags = match rng.below(100) {
        0..=39 => FIXED | READ | WRITE,
        40..=54 => FIXED | READ,
        55..=69 => READ | WRITE,
        70..=74 => READ,
        75..=89 => rng.below(8) as u32,
        90..=96 => (1u64 << (3 + rng.below(29))) as u32 | rng.below(8) as u32,
        _ => rng.next_u64() as u32,
    };
    let start = match rng.below(10) {
        0..=4 => 0,
        5..=6 => rng.page_in(len - PAGE),
        7..=8 => rng.pick(&boundaries(len)),
        _ => rng.next_u64(),
    };
    let length = match rng.below(10) {
        0..=2 => len.saturating_sub(start),
        3..=5 => PAGE + rng.page_in(len - PAGE),
        6..=8 => rng.pick(&boundaries(len)),
        _ => rng.next_u64(),
    };
    let iova = match rng.below(10) {
        0..=4 => SAFE_IOVAS.0 + rng.page_in(SAFE_IOVAS.1 - SAFE_IOVAS.0 - MIB),
        5..=6 => rng.pick(&[
            KEPT_IOVA,
            KEPT_IOVA + MAP_LEN - PAGE,
            KEPT_IOVA + MAP_LEN,
            KEPT_IOVA - PAGE,
            KEPT_IOVA - 64 * KIB,
        ]),
        7..=8 => rng.pick(&IOVA_BOUNDARIES),
        _ => rng.next_u64(),
    };
    MapInput {
        fd,
        flags,
        iova,
        start,
        length,
    }
}

/// Whether `[iova, last]` meets the mapping kept at `KEPT_IOVA`.
fn meets_kept(iova: u64, last: u64) -> bool {
    iova < KEPT_IOVA + MAP_LEN && last >= KEPT_IOVA
}

/// The rules of MAP_FILE into an IOAS whose only mapping is the dma-buf at
/// `KEPT_IOVA`, with the IOVA alignment of 4 KiB pages.
pub fn expect_map(m: &MapInput) -> Expect {
    let mut e = Expect::default();
    if m.flags & !(FIXED | WRITE | READ) != 0 {
        e.refuse(EOPNOTSUPP, "unknown flags");
    }
    if m.iova == u64::MAX || m.length == u64::MAX {
        e.refuse(EOVERFLOW, "iova or length is ULONG_MAX");
    }
    if m.flags & (WRITE | READ) == 0 {
        e.refuse(EINVAL, "neither READABLE nor WRITEABLE");
    }
    let last = if m.length == 0 {
        e.refuse(EINVAL, "length 0");
        None
    } else {
        let last = m.start.checked_add(m.length - 1);
        if last.is_none() {
            e.refuse(EOVERFLOW, "start + length wraps around");
        }
        last
    };
    match m.fd {
        MapFd::NotOpen(_) => e.refuse(EBADF, "the descriptor is not open"),
        MapFd::DevNull => e.refuse(EINVAL, "the file is neither a dma-buf nor a memfd"),
        fd => {
            if matches!(fd, MapFd::DmaBufRo | MapFd::MemfdRo) && m.flags & WRITE != 0 {
                e.refuse(
                    EACCES,
                    "WRITEABLE mapping of a descriptor without write access",
                );
            }
            if last.is_some_and(|l| l >= fd.size()) {
                e.refuse(EINVAL, "start + length past the end of the file");
            }
        }
    }
    if m.start % PAGE != 0 {
        e.refuse(EINVAL, "start not a multiple of the IOVA alignment (4 KiB)");
    }
    if m.length % PAGE != 0 {
        e.refuse(
            EINVAL,
            "length not a multiple of the IOVA alignment (4 KiB)",
        );
    }
    if m.flags & FIXED != 0 {
        if m.iova % PAGE != 0 {
            e.refuse(
                EINVAL,
                "FIXED_IOVA not a multiple of the IOVA alignment (4 KiB)",
            );
        }
        if m.length > 0 {
            match m.iova.checked_add(m.length - 1) {
                None => e.refuse(EOVERFLOW, "iova + length wraps around"),
                Some(last) => {
                    if meets_kept(m.iova, last) {
                        e.refuse(EEXIST, "the IOVA range meets the mapping kept there");
                    }
                    if last >> MAX_IOVA_BITS != 0 {
                        e.refuse(EINVAL, "IOVAs beyond any IOMMU's 57 bits");
                    } else if m.iova < SAFE_IOVAS.0 || last >= SAFE_IOVAS.1 {
                        e.maybe(
                            EINVAL,
                            "IOVAs the IOMMU may reserve (outside [1 MiB, 0xf0000000))",
                        );
                    }
                }
            }
        }
    } else {
        if m.length >= u64::MAX / 2 {
            e.refuse(EOVERFLOW, "length too large to allocate an IOVA for");
        }
        // A 39-bit IOMMU, split by the MSI window, has no hole of 2^38 bytes.
        if m.length > 1 << 32 {
            e.maybe(ENOSPC, "there may be no free IOVA range that long");
        }
    }
    e
}

/// The files MAP_FILE is fuzzed with, besides ivshmem's dma-bufs.
struct MapFiles {
    memfd: File,
    memfd_ro: File,
    null: File,
}

impl MapFiles {
    fn open() -> Result<Self> {
        let memfd = File::from(sys::memfd_create(c"dmabuf-tool-fuzz").op("memfd_create")?);
        memfd.set_len(MEMFD_LEN).op("ftruncate the memfd")?;
        let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
        let memfd_ro = File::open(&path).op(format!("open {path} O_RDONLY"))?;
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .op("open /dev/null O_RDWR")?;
        Ok(MapFiles {
            memfd,
            memfd_ro,
            null,
        })
    }

    fn close(self) -> Result<()> {
        for (f, what) in [
            (self.memfd, "the memfd"),
            (self.memfd_ro, "the O_RDONLY memfd"),
            (self.null, "/dev/null"),
        ] {
            sys::close(f.into()).op(format!("close {what}"))?;
        }
        Ok(())
    }
}

/// After a successful MAP_FILE of `m` at `at`: the IOVA is the one asked
/// for (or a free one) and the unmap takes back exactly `m.length` bytes.
fn undo_map(ivs: &Ivs, m: &MapInput, at: u64) -> std::result::Result<(), String> {
    let mut wrong = Vec::new();
    let last = at.wrapping_add(m.length.wrapping_sub(1));
    if m.flags & FIXED != 0 && at != m.iova {
        wrong.push(format!("mapped at {at:#x}, not at the FIXED_IOVA"));
    }
    if m.flags & FIXED == 0 && (at % PAGE != 0 || meets_kept(at, last)) {
        wrong.push(format!(
            "the IOVA the kernel chose, {at:#x}, is unaligned or meets the kept mapping"
        ));
    }
    match ivs.iommufd.unmap(ivs.ioas, at, m.length) {
        Ok(n) if n == m.length => {}
        Ok(n) => wrong.push(format!("IOMMU_IOAS_UNMAP took back {n:#x} bytes")),
        Err(e) => wrong.push(format!("then {e}")),
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

// ---------------------------------------------------------------------------
// KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_DMABUF

/// `KVM_USER_MEM_SLOTS` on x86: `SHRT_MAX - KVM_INTERNAL_MEM_SLOTS` (3).
const KVM_USER_MEM_SLOTS: u32 = 32764;
/// `KVM_MEM_MAX_NR_PAGES` (include/linux/kvm_host.h).
const KVM_MEM_MAX_NR_PAGES: u64 = (1 << 31) - 1;
const KVM_FLAGS: u32 =
    KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD | KVM_MEM_DMABUF;
/// BAR2 as two 1 MiB ranges, the buffer behind the slots.
const SLOT_BUF_LEN: u64 = 2 * MIB;
const _: () = assert!(BAR2_RANGES[0].1 + BAR2_RANGES[1].1 == SLOT_BUF_LEN);
/// A slot that exists the whole time: all of the buffer at 4 GiB.
const KEPT_SLOT: u32 = 1;
const KEPT_GPA: u64 = 4 * GIB;
/// Every x86-64 host has at least 36 physical address bits, and none more
/// than 52: slots ending below the first are within its MAXPHYADDR, above
/// the second beyond it.
const SURE_GPA_BITS: u32 = 36;
const MAX_GPA_BITS: u32 = 52;

/// A slot of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Address space << 16 | id, as userspace passes it.
    pub slot: u32,
    pub gpa: u64,
    pub size: u64,
}

const KEPT: Slot = Slot {
    slot: KEPT_SLOT,
    gpa: KEPT_GPA,
    size: SLOT_BUF_LEN,
};

/// What `dmabuf_fd` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotFd {
    /// The 2 MiB dma-buf, O_RDWR.
    Buf,
    /// The same ranges exported O_RDONLY.
    BufRo,
    /// A memfd.
    Memfd,
    /// Any number: one of the dma-bufs' if it happens to be, else not a dma-buf.
    Raw(i32),
}

/// One call: `region`'s `dmabuf_fd` is set from `fd` when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInput {
    pub fd: SlotFd,
    pub region: MemoryRegion2,
}

impl fmt::Display for SlotInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.region;
        let fd = match self.fd {
            SlotFd::Buf => "the 2 MiB dma-buf".to_string(),
            SlotFd::BufRo => "the O_RDONLY 2 MiB dma-buf".to_string(),
            SlotFd::Memfd => "a memfd".to_string(),
            SlotFd::Raw(n) => format!("fd {n}"),
        };
        write!(
            f,
            "slot {:#x}, flags {:#x}, gpa {:#x}, memory_size {:#x}, userspace_addr {:#x}, \
             dmabuf_fd {fd}, dmabuf_offset {:#x}, guest_memfd {}, guest_memfd_offset {:#x}",
            r.slot,
            r.flags,
            r.guest_phys_addr,
            r.memory_size,
            r.userspace_addr,
            r.dmabuf_offset,
            r.guest_memfd as i32,
            r.guest_memfd_offset
        )
    }
}

const SLOT_BOUNDARIES: [u32; 10] = [
    0,
    KVM_USER_MEM_SLOTS - 1,
    KVM_USER_MEM_SLOTS,
    KVM_USER_MEM_SLOTS + 2,
    0x7fff,
    0xffff,
    1 << 16 | KEPT_SLOT,
    1 << 16 | 2,
    2 << 16 | 2,
    u32::MAX,
];
const SIZE_BOUNDARIES: [u64; 14] = [
    1,
    0x800,
    PAGE,
    PAGE + 1,
    MIB,
    SLOT_BUF_LEN - PAGE,
    SLOT_BUF_LEN + PAGE,
    2 * SLOT_BUF_LEN,
    (KVM_MEM_MAX_NR_PAGES + 1) * PAGE,
    1 << 47,
    1 << 63,
    u64::MAX - PAGE + 1,
    u64::MAX,
    0,
];
const GPA_BOUNDARIES: [u64; 13] = [
    0,
    1,
    PAGE - 1,
    PAGE,
    1 << 32,
    1 << SURE_GPA_BITS,
    1 << 40,
    1 << 48,
    (1 << MAX_GPA_BITS) - SLOT_BUF_LEN,
    1 << MAX_GPA_BITS,
    1 << 63,
    u64::MAX - PAGE + 1,
    u64::MAX,
];
const OFFSET_BOUNDARIES: [u64; 10] = [
    PAGE,
    0x800,
    MIB,
    SLOT_BUF_LEN - PAGE,
    SLOT_BUF_LEN,
    SLOT_BUF_LEN + PAGE,
    1 << 32,
    1 << 63,
    u64::MAX - PAGE + 1,
    u64::MAX,
];

/// A call. `KVM_MEM_DMABUF` is always set, so that every non-zero
/// `userspace_addr` is refused; `mem` is the address of memory the caller
/// owns and keeps mapped until after the VM is gone, the only host memory
/// any `userspace_addr` here could reach (see `kvm::set_region`).
pub fn slot_input(rng: &mut Rng, mem: u64) -> SlotInput {
    let slot = match rng.below(100) {
        0..=14 => KEPT_SLOT,
        15..=59 => 2 + rng.below(8) as u32,
        60..=84 => rng.pick(&SLOT_BOUNDARIES),
        _ => rng.next_u64() as u32,
    };
    let extra = match rng.below(100) {
        0..=49 => 0,
        50..=69 => KVM_MEM_READONLY,
        70..=74 => KVM_MEM_LOG_DIRTY_PAGES,
        75..=79 => KVM_MEM_GUEST_MEMFD,
        80..=82 => KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES,
        83..=92 => (1u64 << (4 + rng.below(28))) as u32,
        _ => rng.next_u64() as u32,
    };
    let memory_size = match rng.below(100) {
        0..=34 => SLOT_BUF_LEN,
        35..=59 => PAGE + rng.page_in(SLOT_BUF_LEN - PAGE),
        60..=64 => 0,
        65..=89 => rng.pick(&SIZE_BOUNDARIES),
        _ => rng.next_u64(),
    };
    let guest_phys_addr = match rng.below(100) {
        // [4 GiB, 60 GiB): inside any host's MAXPHYADDR.
        0..=44 => KEPT_GPA + rng.page_in(56 * GIB),
        45..=59 => rng.pick(&[
            KEPT_GPA,
            KEPT_GPA + MIB,
            KEPT_GPA - MIB,
            KEPT_GPA + SLOT_BUF_LEN - PAGE,
            KEPT_GPA + SLOT_BUF_LEN,
            KEPT_GPA - PAGE,
        ]),
        60..=84 => rng.pick(&GPA_BOUNDARIES),
        85..=92 => rng.next_u64() & !(PAGE - 1),
        _ => rng.next_u64(),
    };
    let dmabuf_offset = match rng.below(100) {
        0..=49 => 0,
        50..=64 => rng.page_in(SLOT_BUF_LEN - PAGE),
        65..=89 => rng.pick(&OFFSET_BOUNDARIES),
        _ => rng.next_u64(),
    };
    let fd = match rng.below(100) {
        0..=54 => SlotFd::Buf,
        55..=69 => SlotFd::BufRo,
        70..=79 => SlotFd::Memfd,
        80..=89 => SlotFd::Raw(rng.pick(&NOT_OPEN)),
        _ => SlotFd::Raw(rng.below(64) as i32),
    };
    let userspace_addr = if rng.chance(85) {
        0
    } else {
        rng.pick(&[
            mem,
            mem + 0x800,
            PAGE,
            1 << 47,
            1 << 63,
            u64::MAX - PAGE + 1,
        ])
    };
    let (guest_memfd, guest_memfd_offset) = if rng.chance(90) {
        (0, 0)
    } else {
        (rng.below(64) as u32, value(rng, SLOT_BUF_LEN))
    };
    SlotInput {
        fd,
        region: MemoryRegion2 {
            slot,
            flags: KVM_MEM_DMABUF | extra,
            guest_phys_addr,
            memory_size,
            userspace_addr,
            guest_memfd_offset,
            guest_memfd,
            dmabuf_fd: 0,
            dmabuf_offset,
            ..Default::default()
        },
    }
}

/// The rules of `KVM_SET_USER_MEMORY_REGION2` for `r` in a VM whose slots
/// are `slots` (all of them dma-buf slots); `buf` is what `dmabuf_fd` is: a
/// dma-buf of `SLOT_BUF_LEN` bytes, opened for writing or not, or no dma-buf.
pub fn expect_slot(r: &MemoryRegion2, buf: Option<bool>, slots: &[Slot]) -> Expect {
    let mut e = Expect::default();
    let (as_id, id) = (r.slot >> 16, r.slot & 0xffff);
    if id >= KVM_USER_MEM_SLOTS {
        e.refuse(EINVAL, "slot id beyond KVM_USER_MEM_SLOTS");
    }
    if r.flags & !KVM_FLAGS != 0 {
        e.refuse(EINVAL, "unknown flags");
    }
    if r.flags & KVM_MEM_DMABUF != 0
        && r.flags & (KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD) != 0
    {
        e.refuse(EINVAL, "KVM_MEM_DMABUF with LOG_DIRTY_PAGES or GUEST_MEMFD");
    }
    if r.memory_size % PAGE != 0 {
        e.refuse(EINVAL, "memory_size not whole pages");
    }
    if r.guest_phys_addr % PAGE != 0 {
        e.refuse(EINVAL, "guest_phys_addr not page aligned");
    }
    if r.userspace_addr != 0 {
        e.refuse(EINVAL, "userspace_addr not 0");
    }
    if r.dmabuf_offset % PAGE != 0 {
        e.refuse(EINVAL, "dmabuf_offset not page aligned");
    }
    match as_id {
        0 => {}
        1 => e.maybe(EINVAL, "address space 1 exists only with SMM"),
        _ => e.refuse(EINVAL, "no such address space"),
    }
    let end = r.guest_phys_addr.checked_add(r.memory_size);
    if end.is_none() {
        e.refuse(EINVAL, "guest_phys_addr + memory_size wraps around");
    }
    if r.memory_size / PAGE > KVM_MEM_MAX_NR_PAGES {
        e.refuse(EINVAL, "more pages than KVM_MEM_MAX_NR_PAGES");
    }
    let existing = slots.iter().any(|s| s.slot == r.slot);
    if r.memory_size == 0 {
        if !existing {
            e.refuse(EINVAL, "deleting a slot that does not exist");
        }
        return e;
    }
    if existing {
        e.refuse(
            EINVAL,
            "an existing dma-buf slot can only be deleted, not moved, resized or changed",
        );
        return e;
    }
    if let Some(end) = end {
        let overlaps = slots
            .iter()
            .any(|s| s.slot >> 16 == as_id && r.guest_phys_addr < s.gpa + s.size && s.gpa < end);
        if overlaps {
            e.refuse(EEXIST, "overlaps another slot");
        }
        if end > 1 << MAX_GPA_BITS {
            e.refuse(
                EINVAL,
                "the slot ends beyond 52-bit guest physical addresses",
            );
        } else if end > 1 << SURE_GPA_BITS {
            e.maybe(EINVAL, "the slot may end beyond the host's MAXPHYADDR");
        }
    }
    match buf {
        None => e.refuse(EBADF, "dmabuf_fd is not a dma-buf"),
        Some(writable) => {
            if r.dmabuf_offset > SLOT_BUF_LEN || r.memory_size > SLOT_BUF_LEN - r.dmabuf_offset {
                e.refuse(
                    E2BIG,
                    "dmabuf_offset + memory_size beyond the end of the buffer",
                );
            }
            if !writable && r.flags & KVM_MEM_READONLY == 0 {
                e.refuse(EACCES, "a read-only dma-buf without KVM_MEM_READONLY");
            }
        }
    }
    e
}

// ---------------------------------------------------------------------------
// The samples

const DESCRIBE: u32 = sys::DMABUF_IMPORT_SAMPLE_DESCRIBE;
const MAP_CMD: u32 = sys::DMABUF_IMPORT_SAMPLE_MAP;
const MAP_PCI: u32 = sys::IMPORT_SAMPLE_MAP_PCI;
/// `DMA_BUF_MODEL_REVOCABLE` and `DMA_BUF_MODEL_DYNAMIC`, as
/// dmabuf_import_sample.h numbers them (1 pinned, 2 revocable, 3 dynamic).
const MODEL_REVOCABLE: u32 = 2;
const MODEL_DYNAMIC: u32 = 3;
const RUST_CMDS: [u32; 3] = [
    rust_exporter::EXPORT_DYNAMIC,
    rust_exporter::MIGRATE,
    rust_exporter::EXPORT_PINNED,
];

/// A command for the Rust exporter: one of its three, the same numbers
/// with direction and size bits, its neighbours, or anything.
pub fn rust_cmd(rng: &mut Rng) -> u32 {
    match rng.below(100) {
        0..=49 => rng.pick(&RUST_CMDS),
        50..=64 => sys::io(0xdb, rng.below(256) as u8),
        65..=74 => {
            rng.pick(&RUST_CMDS)
                | ((1 + rng.below(3) as u32) << 30)
                | (rng.below(1 << 14) as u32) << 16
        }
        _ => random_cmd(rng),
    }
}

/// samples/rust/rust_dmabuf_exporter.rs: its three commands work (whatever
/// the argument), any other is ENOTTY.
pub fn expect_rust(cmd: u32) -> Expect {
    let mut e = Expect::default();
    if !RUST_CMDS.contains(&cmd) {
        e.refuse(ENOTTY, "not one of the sample's three commands");
    }
    e
}

/// A buffer the C sample is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFd {
    /// ivshmem's three-range dma-buf (REVOCABLE P2P MMIO).
    Vfio,
    /// A PINNED dma-buf of the Rust exporter (system memory, MAP_DMA_BUF).
    Pinned,
    /// A DYNAMIC dma-buf of the Rust exporter (no MAP_DMA_BUF).
    Dynamic,
    /// A memfd: not a dma-buf.
    Memfd,
    NotOpen(i32),
}

impl SampleFd {
    /// The buffer's size and memory model.
    fn buffer(self) -> Option<(u64, u32)> {
        match self {
            SampleFd::Vfio => Some((MAP_LEN, MODEL_REVOCABLE)),
            SampleFd::Pinned => Some((rust_exporter::BUF_LEN, import_sample::MODEL_PINNED)),
            SampleFd::Dynamic => Some((rust_exporter::BUF_LEN, MODEL_DYNAMIC)),
            SampleFd::Memfd | SampleFd::NotOpen(_) => None,
        }
    }
}

/// One call of the C sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleCall {
    Describe(SampleFd),
    Map {
        fd: SampleFd,
        flags: u32,
        reserved: u32,
        pci: u32,
    },
    /// DESCRIBE or MAP with a NULL argument.
    NullArg(u32),
    /// Any other command (argument 0).
    Other(u32),
}

impl fmt::Display for SampleCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleCall::Describe(fd) => write!(f, "DESCRIBE of {fd:?}"),
            SampleCall::Map {
                fd,
                flags,
                reserved,
                pci,
            } => write!(
                f,
                "MAP of {fd:?}, flags {flags:#x}, reserved {reserved:#x}, pci {pci:#x}"
            ),
            SampleCall::NullArg(c) => write!(f, "command {c:#x} with a NULL argument"),
            SampleCall::Other(c) => write!(f, "command {c:#x}"),
        }
    }
}

/// What the C sample fuzz has to work with.
#[derive(Debug, Clone, Default)]
pub struct SampleWorld {
    /// The dma-bufs at hand (Vfio, Pinned, Dynamic).
    pub bufs: Vec<SampleFd>,
    /// `pci_id()`s of ivshmem, pci-testdev and edu, those present: the
    /// peers whose P2P paths the other tests exercise.
    pub peers: Vec<u32>,
    /// `pci_id()`s of every PCI device present.
    pub present: Vec<u32>,
}

impl SampleWorld {
    fn fd(&self, rng: &mut Rng) -> SampleFd {
        match rng.below(100) {
            0..=69 if !self.bufs.is_empty() => rng.pick(&self.bufs),
            0..=84 => SampleFd::Memfd,
            _ => SampleFd::NotOpen(rng.pick(&NOT_OPEN)),
        }
    }

    /// A PCI number no device has.
    fn absent(&self, rng: &mut Rng) -> u32 {
        loop {
            let p = match rng.below(4) {
                0 => u32::MAX,
                1 => 0x1_0000 | rng.below(0x1_0000) as u32,
                _ => rng.next_u64() as u32,
            };
            if !self.present.contains(&p) {
                return p;
            }
        }
    }
}

/// A call of the C sample. MAP for a PCI device that is present only gets
/// ivshmem's dma-buf (or no dma-buf): DMA-mapping the Rust exporter's
/// system memory for a device that vfio-pci owns is a path no other test
/// takes, left out.
pub fn sample_call(rng: &mut Rng, w: &SampleWorld) -> SampleCall {
    match rng.below(100) {
        0..=39 => SampleCall::Describe(w.fd(rng)),
        40..=79 => {
            let fd = w.fd(rng);
            let flags = match rng.below(100) {
                0..=44 => 0,
                45..=89 => MAP_PCI,
                90..=94 => (1u64 << (1 + rng.below(31))) as u32 | rng.below(2) as u32,
                _ => rng.next_u64() as u32,
            };
            let reserved = if rng.chance(90) {
                0
            } else {
                (rng.next_u64() as u32).max(1)
            };
            let rust = matches!(fd, SampleFd::Pinned | SampleFd::Dynamic);
            let pci = if !rust && !w.peers.is_empty() && rng.chance(60) {
                rng.pick(&w.peers)
            } else {
                w.absent(rng)
            };
            SampleCall::Map {
                fd,
                flags,
                reserved,
                pci,
            }
        }
        80..=84 => SampleCall::NullArg(rng.pick(&[DESCRIBE, MAP_CMD])),
        _ => loop {
            let c = match rng.below(3) {
                0 => sys::iowr(0xdb, rng.below(4) as u8, rng.below(256) as usize),
                1 => sys::io(0xdb, rng.below(256) as u8),
                _ => random_cmd(rng),
            };
            if c != DESCRIBE && c != MAP_CMD {
                break SampleCall::Other(c);
            }
        },
    }
}

/// The rules of the C sample (dmabuf_import_sample.h and .c, the README's
/// "samples" and attach tables), for a process with CAP_SYS_ADMIN.
pub fn expect_sample(c: &SampleCall, w: &SampleWorld) -> Expect {
    let mut e = Expect::default();
    let not_dmabuf = |e: &mut Expect, fd: SampleFd| match fd {
        SampleFd::NotOpen(_) => e.refuse(EBADF, "the descriptor is not open"),
        SampleFd::Memfd => e.refuse(EINVAL, "the file is not a dma-buf"),
        _ => {}
    };
    match *c {
        SampleCall::Describe(fd) => not_dmabuf(&mut e, fd),
        SampleCall::Map {
            fd,
            flags,
            reserved,
            pci,
        } => {
            if flags & !MAP_PCI != 0 || reserved != 0 {
                e.refuse(EINVAL, "unknown flags or reserved not 0");
            }
            let for_pci = flags & MAP_PCI != 0;
            if for_pci && !w.present.contains(&pci) {
                // Refused before the descriptor is looked at.
                e.refuse(ENODEV, "no such PCI device");
                return e;
            }
            not_dmabuf(&mut e, fd);
            match (fd, for_pci) {
                (SampleFd::Vfio, false) => {
                    e.refuse(EOPNOTSUPP, "a static importer of a REVOCABLE buffer")
                }
                (SampleFd::Vfio, true) => e.maybe(
                    EINVAL,
                    "the peer-to-peer path from that device to ivshmem's BAR may be unsupported",
                ),
                (SampleFd::Dynamic, _) => e.refuse(
                    EOPNOTSUPP,
                    "the exporter does not map its DYNAMIC buffer (no MAP_DMA_BUF)",
                ),
                (SampleFd::Pinned, true) => {
                    e.maybe(EINVAL, "the device may not reach the exporter's pages")
                }
                _ => {}
            }
        }
        SampleCall::NullArg(_) => e.refuse(EFAULT, "a NULL argument"),
        SampleCall::Other(_) => e.refuse(ENOTTY, "not one of the sample's commands"),
    }
    e
}

// ---------------------------------------------------------------------------
// Running

/// `calls` shared out by `SHARES`; the last interface gets the rest.
pub fn split(calls: u64) -> [u64; 5] {
    let mut out = [0; 5];
    let mut left = calls;
    for (o, s) in out.iter_mut().zip(SHARES).take(4) {
        *o = calls / 100 * s + calls % 100 * s / 100;
        left -= *o;
    }
    out[4] = left;
    out
}

/// The results of one interface.
struct Tally {
    what: &'static str,
    documented: &'static [i32],
    planned: u64,
    budget: Duration,
    started: Instant,
    elapsed: Duration,
    calls: u64,
    succeeded: u64,
    errnos: BTreeMap<i32, u64>,
    bad: u64,
    shown: Vec<String>,
}

impl Tally {
    fn new(iface: usize, planned: u64) -> Self {
        Tally {
            what: NAMES[iface],
            documented: ERRNOS[iface],
            planned,
            budget: BUDGETS[iface],
            started: Instant::now(),
            elapsed: Duration::ZERO,
            calls: 0,
            succeeded: 0,
            errnos: BTreeMap::new(),
            bad: 0,
            shown: Vec::new(),
        }
    }

    /// Whether there is another call to make: calls and time are left.
    fn more(&mut self) -> bool {
        self.elapsed = self.started.elapsed();
        self.calls < self.planned && self.elapsed < self.budget
    }

    /// Something wrong that is not one call's result (cleaning up).
    fn problem(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.bad += 1;
            self.shown.push(format!("after the calls: {e}"));
        }
    }

    /// One call's outcome for an input the rules judge as `e`, and what the
    /// check of a success (and its undoing) found.
    fn record(
        &mut self,
        outcome: std::result::Result<(), i32>,
        e: &Expect,
        after: std::result::Result<(), String>,
        input: impl FnOnce() -> String,
    ) {
        let i = self.calls;
        self.calls += 1;
        match outcome {
            Ok(()) => self.succeeded += 1,
            Err(n) => *self.errnos.entry(n).or_default() += 1,
        }
        let wrong: Vec<String> = [judge(outcome, e, self.documented), after]
            .into_iter()
            .filter_map(|r| r.err())
            .collect();
        if !wrong.is_empty() {
            self.bad += 1;
            if self.shown.len() < SHOWN {
                self.shown
                    .push(format!("call {i}: {}: {}", input(), wrong.join("; ")));
            }
        }
    }

    fn report(self, r: &mut Runner<'_>, replay: &str) {
        let verdict = if self.bad == 0 {
            "every errno documented".to_string()
        } else {
            format!("{} results break the documented rules", self.bad)
        };
        let desc = format!(
            "fuzz {}: {} calls, {} succeeded, {verdict}",
            self.what, self.calls, self.succeeded
        );
        r.check(&desc, |f| {
            let stopped = if self.calls < self.planned {
                format!(", stopped by its {} s budget", self.budget.as_secs())
            } else {
                String::new()
            };
            f.add(format!(
                "{} of {} calls in {:.1} s{stopped}",
                self.calls,
                self.planned,
                self.elapsed.as_secs_f64()
            ));
            f.add(format!("documented errnos: {}", names(self.documented)));
            f.add(format!("{:>10} {}", "success", self.succeeded));
            for (n, c) in &self.errnos {
                f.add(format!("{:>10} {c}", name(*n)));
            }
            if self.bad == 0 {
                return Ok(());
            }
            Err(Error::msg(format!(
                "{} of {} results break the documented rules; the first {} \
                 ({replay}, call N is the Nth of this interface):\n{}",
                self.bad,
                self.calls,
                self.shown.len(),
                self.shown.join("\n")
            )))
        });
    }
}

fn names(errnos: &[i32]) -> String {
    errnos
        .iter()
        .map(|&e| name(e).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// How an interface's run ended.
enum Ran {
    Done(Tally),
    Skipped(String),
}

fn report_ran(r: &mut Runner<'_>, iface: usize, ran: Result<Ran>, replay: &str) {
    let desc = format!("fuzz {}", NAMES[iface]);
    match ran {
        Ok(Ran::Done(t)) => t.report(r, replay),
        Ok(Ran::Skipped(why)) => r.skip(&desc, &why),
        Err(e) => {
            r.check(&desc, |_| Err(e));
        }
    }
}

/// ivshmem, ready: its VFIO device in an IOAS of its iommufd, and the
/// dma-bufs the fuzz maps.
struct Ivs {
    dev: VfioDevice,
    iommufd: Iommufd,
    ioas: u32,
    /// The sizes of BARs 0-5 (0: none).
    bars: [u64; NR_BARS],
    /// The exporter name of VFIO's dma-bufs, as fdinfo shows it.
    exp_name: String,
    /// `MAP_RANGES` of BAR2, O_RDWR (mapped at `KEPT_IOVA`) and O_RDONLY.
    multi: OwnedFd,
    multi_ro: OwnedFd,
    /// `BAR2_RANGES`, O_RDWR and O_RDONLY, for the slots.
    slot_buf: OwnedFd,
    slot_buf_ro: OwnedFd,
}

/// Why ivshmem cannot be fuzzed here, if it cannot.
pub(crate) fn ivshmem_absent() -> Option<String> {
    vfio_device_absent(IVSHMEM)
}

/// Why the device `id` cannot be used through VFIO and iommufd here: it is
/// not on the bus, or there is no /dev/iommu.
pub(crate) fn vfio_device_absent(id: PciId) -> Option<String> {
    let sysfs = Sysfs::default();
    match sysfs.find(id) {
        Ok(v) if v.is_empty() => {
            return Some(format!(
                "no {} ({:04x}:{:04x}) in /sys/bus/pci/devices",
                id.name, id.vendor, id.device
            ))
        }
        Err(e) => return Some(e.to_string()),
        Ok(_) => {}
    }
    sysfs
        .iommu_dev()
        .err()
        .map(|e| format!("no /dev/iommu: {e}"))
}

fn setup_ivshmem(f: &mut Facts) -> Result<Ivs> {
    let kvm::Ivshmem { dev, iommufd, .. } = kvm::open_ivshmem(f)?;
    // A new IOAS, whose id we keep: attaching again replaces the one
    // open_ivshmem() attached.
    let ioas = iommufd.ioas_alloc()?;
    dev.attach_ioas(ioas)?;
    let mut bars = [0; NR_BARS];
    for (i, b) in bars.iter_mut().enumerate() {
        *b = dev.region_info(i as u32)?.size;
    }
    f.add(format!(
        "attached to IOAS {ioas}; BARs 0-5: {}",
        bars.map(|b| format!("{b:#x}")).join(" ")
    ));
    let ro = libc::O_RDONLY | libc::O_CLOEXEC;
    let multi = dev.export_dma_buf(BAR2, &MAP_RANGES)?;
    let multi_ro = dev.export_dma_buf_flags(BAR2, &MAP_RANGES, ro)?;
    let slot_buf = dev.export_dma_buf(BAR2, &BAR2_RANGES)?;
    let slot_buf_ro = dev.export_dma_buf_flags(BAR2, &BAR2_RANGES, ro)?;
    let exp_name = dmabuf::fdinfo(&multi, "exp_name")?;
    iommufd.map_file(ioas, multi.as_fd(), 0, MAP_LEN, KEPT_IOVA)?;
    f.add(format!(
        "dma-bufs of {} (3 ranges) and {} (2 ranges), O_RDWR and O_RDONLY, exported by {exp_name}; \
         the first mapped at IOVA {}",
        size(MAP_LEN),
        size(SLOT_BUF_LEN),
        span(KEPT_IOVA, MAP_LEN)
    ));
    Ok(Ivs {
        dev,
        iommufd,
        ioas,
        bars,
        exp_name,
        multi,
        multi_ro,
        slot_buf,
        slot_buf_ro,
    })
}

fn fuzz_vfio(rng: &mut Rng, planned: u64, ivs: &Ivs) -> Result<Ran> {
    let mut t = Tally::new(VFIO, planned);
    while t.more() {
        let input = vfio_input(rng, &ivs.bars);
        let e = expect_vfio(&input, &ivs.bars);
        let res = sys::vfio_feature_dma_buf(
            ivs.dev.as_fd(),
            input.region,
            input.open_flags,
            &input.ranges,
        );
        let (outcome, after) = match res {
            Ok(fd) => {
                let checked = check_vfio_buf(&fd, &input, &ivs.exp_name);
                let closed = sys::close(fd).map_err(|e| format!("close: {e}"));
                (Ok(()), checked.and(closed))
            }
            Err(err) => (Err(errno_of(&err)), Ok(())),
        };
        t.record(outcome, &e, after, || input.to_string());
    }
    Ok(Ran::Done(t))
}

fn fuzz_map(rng: &mut Rng, planned: u64, ivs: &Ivs) -> Result<Ran> {
    let files = MapFiles::open()?;
    let mut t = Tally::new(MAP, planned);
    while t.more() {
        let m = map_input(rng);
        let e = expect_map(&m);
        let fd = match m.fd {
            MapFd::DmaBuf => ivs.multi.as_raw_fd(),
            MapFd::DmaBufRo => ivs.multi_ro.as_raw_fd(),
            MapFd::Memfd => files.memfd.as_raw_fd(),
            MapFd::MemfdRo => files.memfd_ro.as_raw_fd(),
            MapFd::DevNull => files.null.as_raw_fd(),
            MapFd::NotOpen(n) => n,
        };
        let res = ivs
            .iommufd
            .map_file_flags(ivs.ioas, fd, m.start, m.length, m.iova, m.flags);
        let (outcome, after) = match res {
            Ok(at) => (Ok(()), undo_map(ivs, &m, at)),
            Err(err) => (Err(err.errno().unwrap_or(0)), Ok(())),
        };
        t.record(outcome, &e, after, || m.to_string());
    }
    t.problem(files.close());
    Ok(Ran::Done(t))
}

fn fuzz_slots(rng: &mut Rng, planned: u64, ivs: &Ivs) -> Result<Ran> {
    if !Path::new("/dev/kvm").exists() {
        return Ok(Ran::Skipped("no /dev/kvm".into()));
    }
    let kvm = Kvm::new().map_err(|e| Error::sys("open /dev/kvm", e.errno()))?;
    // Owned memory that outlives the VM: dropped after it, below.
    let mem = Mapping::anonymous(64 * KIB as usize).op("mmap")?;
    let vm = kvm
        .create_vm()
        .map_err(|e| Error::sys("KVM_CREATE_VM", e.errno()))?;
    if vm.check_extension_raw(KVM_CAP_DMABUF_MEMSLOT.into()) != 1 {
        return Ok(Ran::Skipped(
            "KVM_CAP_DMABUF_MEMSLOT is not reported: no KVM_MEM_DMABUF here".into(),
        ));
    }
    let memfd = sys::memfd_create(c"dmabuf-tool-fuzz-kvm").op("memfd_create")?;
    let (buf, buf_ro) = (ivs.slot_buf.as_raw_fd(), ivs.slot_buf_ro.as_raw_fd());
    let kept = MemoryRegion2::dmabuf(KEPT.slot, KEPT.gpa, KEPT.size, buf, 0);
    kvm::set_region(&vm, kept)?;
    let mut slots = vec![KEPT];
    let mut t = Tally::new(SLOT, planned);
    while t.more() {
        let input = slot_input(rng, mem.addr());
        let raw = match input.fd {
            SlotFd::Buf => buf,
            SlotFd::BufRo => buf_ro,
            SlotFd::Memfd => memfd.as_raw_fd(),
            SlotFd::Raw(n) => n,
        };
        let kind = if raw == buf {
            Some(true)
        } else if raw == buf_ro {
            Some(false)
        } else {
            None
        };
        let r = MemoryRegion2 {
            dmabuf_fd: raw as u32,
            ..input.region
        };
        let e = expect_slot(&r, kind, &slots);
        let (outcome, after) = match kvm::set_region(&vm, r) {
            Ok(()) => (Ok(()), undo_slot(&vm, &r, kept, &mut slots)),
            Err(err) => (Err(err.errno().unwrap_or(0)), Ok(())),
        };
        t.record(outcome, &e, after, || {
            SlotInput {
                fd: input.fd,
                region: r,
            }
            .to_string()
        });
    }
    for s in &slots {
        t.problem(kvm::set_region(&vm, MemoryRegion2::delete(s.slot)));
    }
    drop(vm);
    drop(mem);
    t.problem(sys::close(memfd).op("close the memfd"));
    Ok(Ran::Done(t))
}

/// After `r` succeeded: delete the slot it created, or create again the
/// kept slot it deleted; keep `slots` up to date.
fn undo_slot(
    vm: &VmFd,
    r: &MemoryRegion2,
    kept: MemoryRegion2,
    slots: &mut Vec<Slot>,
) -> std::result::Result<(), String> {
    if r.memory_size == 0 {
        slots.retain(|s| s.slot != r.slot);
        if r.slot == KEPT.slot {
            kvm::set_region(vm, kept)
                .map_err(|e| format!("the kept slot deleted, creating it again failed: {e}"))?;
            slots.push(KEPT);
        }
        return Ok(());
    }
    slots.push(Slot {
        slot: r.slot,
        gpa: r.guest_phys_addr,
        size: r.memory_size,
    });
    kvm::set_region(vm, MemoryRegion2::delete(r.slot))
        .map_err(|e| format!("created, but deleting it failed: {e}"))?;
    slots.pop();
    Ok(())
}

fn fuzz_rust(rng: &mut Rng, planned: u64) -> Result<Ran> {
    if !Path::new(rust_exporter::DEVICE).exists() {
        return Ok(Ran::Skipped(format!(
            "no {}: rust_dmabuf_exporter is not loaded",
            rust_exporter::DEVICE
        )));
    }
    let dev = rust_exporter::open()?;
    let mut t = Tally::new(RUST, planned);
    while t.more() {
        let cmd = rust_cmd(rng);
        let e = expect_rust(cmd);
        let (outcome, after) = if cmd == rust_exporter::MIGRATE || !RUST_CMDS.contains(&cmd) {
            match sys::ioctl_none(dev.as_fd(), cmd) {
                Ok(0) => (Ok(()), Ok(())),
                Ok(n) => (Ok(()), Err(format!("returned {n}, not 0"))),
                Err(err) => (Err(errno_of(&err)), Ok(())),
            }
        } else {
            match sys::ioctl_new_fd(dev.as_fd(), cmd) {
                Ok(fd) => (Ok(()), check_rust_buf(fd)),
                Err(err) => (Err(errno_of(&err)), Ok(())),
            }
        };
        t.record(outcome, &e, after, || format!("command {cmd:#x}"));
    }
    t.problem(sys::close(dev.into()).op(format!("close {}", rust_exporter::DEVICE)));
    Ok(Ran::Done(t))
}

/// A dma-buf of the Rust exporter, closed after the check.
fn check_rust_buf(fd: OwnedFd) -> std::result::Result<(), String> {
    let mut f = Facts::default();
    let checked =
        dmabuf::check_exporter(&fd, rust_exporter::EXPORTER, rust_exporter::BUF_LEN, &mut f)
            .map_err(|e| format!("the new fd: {e}"));
    let closed = sys::close(fd).map_err(|e| format!("close: {e}"));
    checked.and(closed)
}

/// The `pci_id()` of every PCI device, and of those of `ids` present.
fn pci_ids() -> (Vec<u32>, Vec<u32>) {
    let present = std::fs::read_dir("/sys/bus/pci/devices")
        .map(|d| {
            d.filter_map(|e| import_sample::pci_id(&e.ok()?.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    let sysfs = Sysfs::default();
    let peers = [IVSHMEM, PCI_TESTDEV, EDU]
        .iter()
        .filter_map(|&id| import_sample::pci_id(&sysfs.find_one(id).ok()?))
        .collect();
    (present, peers)
}

fn fuzz_sample(rng: &mut Rng, planned: u64, vfio: Option<&OwnedFd>) -> Result<Ran> {
    if !Path::new(import_sample::DEVICE).exists() {
        return Ok(Ran::Skipped(format!(
            "no {}: dmabuf_import_sample is not loaded",
            import_sample::DEVICE
        )));
    }
    let dev = import_sample::open()?;
    // The Rust exporter's two kinds of buffer, if it is loaded.
    let (pinned, dynamic) = if Path::new(rust_exporter::DEVICE).exists() {
        let exporter = rust_exporter::open()?;
        let pinned = sys::ioctl_new_fd(exporter.as_fd(), rust_exporter::EXPORT_PINNED)
            .op("RUST_DMABUF_EXPORT_PINNED")?;
        let dynamic = rust_exporter::export_dynamic(&exporter)?;
        sys::close(exporter.into()).op(format!("close {}", rust_exporter::DEVICE))?;
        (Some(pinned), Some(dynamic))
    } else {
        (None, None)
    };
    let memfd = sys::memfd_create(c"dmabuf-tool-fuzz-sample").op("memfd_create")?;
    let (present, peers) = pci_ids();
    let mut w = SampleWorld {
        bufs: Vec::new(),
        peers,
        present,
    };
    for (fd, kind) in [
        (vfio, SampleFd::Vfio),
        (pinned.as_ref(), SampleFd::Pinned),
        (dynamic.as_ref(), SampleFd::Dynamic),
    ] {
        if fd.is_some() {
            w.bufs.push(kind);
        }
    }
    let raw = |fd: SampleFd| match fd {
        SampleFd::Vfio => vfio.map_or(-1, |f| f.as_raw_fd()),
        SampleFd::Pinned => pinned.as_ref().map_or(-1, |f| f.as_raw_fd()),
        SampleFd::Dynamic => dynamic.as_ref().map_or(-1, |f| f.as_raw_fd()),
        SampleFd::Memfd => memfd.as_raw_fd(),
        SampleFd::NotOpen(n) => n,
    };
    let mut t = Tally::new(SAMPLE, planned);
    while t.more() {
        let c = sample_call(rng, &w);
        let e = expect_sample(&c, &w);
        let (outcome, after) = match c {
            SampleCall::Describe(fd) => {
                let mut a = ImportSampleDescribe {
                    fd: raw(fd),
                    ..Default::default()
                };
                match sys::ioctl(dev.as_fd(), DESCRIBE, &mut a) {
                    Ok(_) => (Ok(()), check_describe(&a, fd)),
                    Err(err) => (Err(errno_of(&err)), Ok(())),
                }
            }
            SampleCall::Map {
                fd,
                flags,
                reserved,
                pci,
            } => {
                let mut a = ImportSampleMap {
                    fd: raw(fd),
                    flags,
                    pci,
                    reserved,
                    ..Default::default()
                };
                match sys::ioctl(dev.as_fd(), MAP_CMD, &mut a) {
                    Ok(_) => (Ok(()), check_map(&a, fd)),
                    Err(err) => (Err(errno_of(&err)), Ok(())),
                }
            }
            SampleCall::NullArg(cmd) | SampleCall::Other(cmd) => {
                match sys::ioctl_none(dev.as_fd(), cmd) {
                    Ok(_) => (Ok(()), Ok(())),
                    Err(err) => (Err(errno_of(&err)), Ok(())),
                }
            }
        };
        t.record(outcome, &e, after, || c.to_string());
    }
    for fd in [pinned, dynamic, Some(memfd)].into_iter().flatten() {
        t.problem(sys::close(fd).op("close a buffer of the C sample's fuzz"));
    }
    t.problem(sys::close(dev.into()).op(format!("close {}", import_sample::DEVICE)));
    Ok(Ran::Done(t))
}

/// A DESCRIBE of `fd` tells its size and memory model.
fn check_describe(a: &ImportSampleDescribe, fd: SampleFd) -> std::result::Result<(), String> {
    let Some((len, model)) = fd.buffer() else {
        return Ok(());
    };
    if a.size != len || a.model != model || a.nr_chunks == 0 {
        return Err(format!(
            "described {:#x} bytes of model {} in {} chunks, expected {len:#x} bytes of model {model}",
            a.size, a.model, a.nr_chunks
        ));
    }
    if fd == SampleFd::Vfio && a.nr_ranges as usize != MAP_RANGES.len() {
        return Err(format!("described {} ranges, expected 3", a.nr_ranges));
    }
    Ok(())
}

/// A MAP of `fd` has DMA segments covering the buffer.
fn check_map(a: &ImportSampleMap, fd: SampleFd) -> std::result::Result<(), String> {
    match fd.buffer() {
        Some((len, _)) if a.dma_len != len || a.dma_nents == 0 => Err(format!(
            "{} DMA segments of {:#x} bytes, expected {len:#x}",
            a.dma_nents, a.dma_len
        )),
        _ => Ok(()),
    }
}

/// Run the fuzz; returns whether every case passed.
pub fn run(r: &mut Runner<'_>, seed: u64, calls: u64) -> bool {
    fuzz(r, seed, calls);
    r.finish()
}

fn fuzz(r: &mut Runner<'_>, seed: u64, calls: u64) {
    let fds_at_start = open_fds().ok();
    let bufs_at_start = kvm::bufinfo().map(|b| b.objects);
    r.comment(&format!("seed {seed:#x}"));
    let plan = split(calls);
    r.comment(&format!(
        "{calls} calls: {}",
        NAMES
            .iter()
            .zip(plan)
            .map(|(n, c)| format!("{c} to {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let replay = format!("replay: dmabuf-tool fuzz --seed {seed:#x} --calls {calls}");
    let rng = |iface: usize| Rng::stream(seed, iface as u64);

    r.section("VFIO, iommufd and KVM on ivshmem's BAR2");
    let ivs = match ivshmem_absent() {
        Some(why) => {
            for iface in [VFIO, MAP, SLOT] {
                r.skip(&format!("fuzz {}", NAMES[iface]), &why);
            }
            None
        }
        None => {
            let ivs = r.attempt(
                "setup: ivshmem's VFIO device in a new IOAS; BAR2 exported as dma-bufs, \
                 one of them mapped",
                setup_ivshmem,
            );
            if let Some(ivs) = &ivs {
                report_ran(r, VFIO, fuzz_vfio(&mut rng(VFIO), plan[VFIO], ivs), &replay);
                report_ran(r, MAP, fuzz_map(&mut rng(MAP), plan[MAP], ivs), &replay);
                report_ran(
                    r,
                    SLOT,
                    fuzz_slots(&mut rng(SLOT), plan[SLOT], ivs),
                    &replay,
                );
            } else {
                for iface in [VFIO, MAP, SLOT] {
                    r.skip(&format!("fuzz {}", NAMES[iface]), "the setup failed");
                }
            }
            ivs
        }
    };

    r.section("The samples' ioctls");
    report_ran(r, RUST, fuzz_rust(&mut rng(RUST), plan[RUST]), &replay);
    let vfio = ivs.as_ref().map(|i| &i.multi);
    report_ran(
        r,
        SAMPLE,
        fuzz_sample(&mut rng(SAMPLE), plan[SAMPLE], vfio),
        &replay,
    );

    r.section("After the fuzz");
    let works = "ivshmem still works: BAR2 exported again (2 MiB, 2 ranges), \
                 mapped with IOMMU_IOAS_MAP_FILE and unmapped";
    match ivs {
        Some(ivs) => {
            r.check(works, |f| {
                let fd = ivs.dev.export_dma_buf(BAR2, &BAR2_RANGES)?;
                let at = ivs
                    .iommufd
                    .map_file(ivs.ioas, fd.as_fd(), 0, SLOT_BUF_LEN, WORKS_IOVA)?;
                let n = ivs.iommufd.unmap(ivs.ioas, at, SLOT_BUF_LEN)?;
                f.add(format!(
                    "mapped at {}, {} unmapped",
                    span(at, SLOT_BUF_LEN),
                    size(n)
                ));
                sys::close(fd).op("close the dma-buf")?;
                if n != SLOT_BUF_LEN {
                    return Err(Error::msg("expected 2 MiB unmapped"));
                }
                Ok(())
            });
            r.check(
                "close the kept mapping, the dma-bufs, ivshmem's VFIO device and /dev/iommu",
                |_| close_ivs(ivs),
            );
        }
        None => r.skip(works, "no ivshmem setup"),
    }
    r.check("no file descriptor or dma-buf is left behind", |f| {
        no_fd_left(fds_at_start, f)?;
        if let (Some(start), Some(now)) = (bufs_at_start, kvm::bufinfo().map(|b| b.objects)) {
            f.add(format!("{now} dma-bufs alive now, {start} at the start"));
            if now != start {
                return Err(Error::msg("dma-bufs outlived their descriptors"));
            }
        }
        Ok(())
    });
}

fn close_ivs(ivs: Ivs) -> Result<()> {
    let n = ivs.iommufd.unmap(ivs.ioas, KEPT_IOVA, MAP_LEN)?;
    if n != MAP_LEN {
        return Err(Error::msg(format!(
            "the kept mapping: {} unmapped, expected {}",
            size(n),
            size(MAP_LEN)
        )));
    }
    for fd in [ivs.multi, ivs.multi_ro, ivs.slot_buf, ivs.slot_buf_ro] {
        sys::close(fd).op("close a dma-buf")?;
    }
    ivs.dev.close()?;
    ivs.iommufd.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IVSHMEM_BARS: [u64; NR_BARS] = [0x100, 0, 2 * MIB, 0, 0, 0];

    fn ranges(r: &[(u64, u64)]) -> Vec<VfioRegionDmaRange> {
        r.iter()
            .map(|&(offset, length)| VfioRegionDmaRange { offset, length })
            .collect()
    }

    fn vfio(region: u32, r: &[(u64, u64)]) -> Expect {
        let input = VfioInput {
            region,
            open_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
            ranges: ranges(r),
        };
        expect_vfio(&input, &IVSHMEM_BARS)
    }

    fn errnos(e: &Expect) -> Vec<i32> {
        let mut v: Vec<i32> = e.errnos.iter().map(|x| x.0).collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs of SplitMix64 seeded with 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn rng_is_deterministic_and_streams_differ() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::stream(DEFAULT_SEED, 1);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::stream(DEFAULT_SEED, 1);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::stream(DEFAULT_SEED, 2);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|x| !c.contains(x)));
        let mut r = Rng::new(7);
        for n in [1, 2, 3, 10, 1 << 40, u64::MAX] {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
        assert_eq!(r.below(0), 0);
        let mut seen = [false; 5];
        for _ in 0..200 {
            seen[r.pick(&[0, 1, 2, 3, 4])] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn boundaries_and_values() {
        let b = boundaries(2 * MIB);
        for v in [
            0,
            1,
            PAGE - 1,
            PAGE,
            PAGE + 1,
            2 * MIB - 1,
            2 * MIB,
            2 * MIB + 1,
        ] {
            assert!(b.contains(&v), "{v:#x}");
        }
        for v in [u64::from(u32::MAX), 1 << 63, u64::MAX] {
            assert!(b.contains(&v));
        }
        // value() draws boundaries, page multiples within the size, and more.
        let mut r = Rng::new(1);
        let vs: Vec<u64> = (0..2000).map(|_| value(&mut r, 2 * MIB)).collect();
        for v in [0, PAGE, 2 * MIB, u64::MAX, 1 << 63] {
            assert!(vs.contains(&v), "{v:#x} never drawn");
        }
        assert!(vs.iter().any(|&v| v % PAGE != 0 && v < 2 * MIB));
        assert!(vs.iter().any(|&v| v > 2 * MIB + PAGE && v != u64::MAX));
    }

    #[test]
    fn random_commands_reach_the_driver() {
        let mut r = Rng::new(3);
        for _ in 0..10_000 {
            let c = random_cmd(&mut r);
            assert!(!VFS_IOCTL_TYPES.contains(&((c >> 8) as u8)), "{c:#x}");
        }
        // FIOCLEX, FIONREAD, FICLONE, FS_IOC_GETFLAGS are among the excluded.
        for c in [0x5451u32, 0x541b, 0x4004_9409, 0x8008_6601] {
            assert!(VFS_IOCTL_TYPES.contains(&((c >> 8) as u8)), "{c:#x}");
        }
    }

    #[test]
    fn vfio_known_invalid_and_valid_range_sets() {
        // An unaligned second range: refused, with EINVAL only.
        let bad = vfio(BAR2, &[(0, PAGE), (0x800, PAGE)]);
        assert!(bad.is_refused());
        assert_eq!(errnos(&bad), [EINVAL]);
        // Whole pages inside the BAR, apart: valid.
        let good = vfio(BAR2, &[(0, PAGE), (MIB, MIB)]);
        assert!(good.is_valid());
        // Overlapping ranges are fine too (vfio does not look).
        assert!(vfio(BAR2, &[(0, 8 * KIB), (4 * KIB, 8 * KIB)]).is_valid());
        // The whole BAR, and the README's refusals.
        assert!(vfio(BAR2, &[(0, 2 * MIB)]).is_valid());
        assert_eq!(errnos(&vfio(BAR2, &[(0, 0x800)])), [EINVAL]);
        assert_eq!(errnos(&vfio(BAR2, &[(0, 0)])), [EINVAL]);
        assert_eq!(errnos(&vfio(BAR2, &[])), [EINVAL]);
        let past = vfio(BAR2, &[(2 * MIB - PAGE, 2 * PAGE)]);
        assert!(past.is_refused());
        assert_eq!(errnos(&past), [EINVAL, EOVERFLOW]);
        assert!(vfio(BAR2, &[(4 * MIB, PAGE)]).is_refused());
        assert!(vfio(BAR2, &[(u64::MAX - 0xfff, PAGE)]).allows(EOVERFLOW));
        // Not a BAR with memory: the ROM, an absent BAR, beyond.
        for region in [6, 1, 3, 7, 0xffff_ffff] {
            assert_eq!(errnos(&vfio(region, &[(0, PAGE)])), [ENODEV], "{region}");
        }
        // BAR0 has 256 bytes: no page fits.
        assert!(vfio(0, &[(0, PAGE)]).is_refused());
        // One bad range among many.
        let mut many: Vec<(u64, u64)> = (0..100).map(|i| (i * PAGE, PAGE)).collect();
        assert!(vfio(BAR2, &many).is_valid());
        many[57] = (3 * MIB, PAGE);
        assert!(vfio(BAR2, &many).is_refused());
    }

    #[test]
    fn vfio_inputs_cover_both_sides() {
        let mut r = Rng::stream(DEFAULT_SEED, VFIO as u64);
        let (mut valid, mut refused) = (0, 0);
        for _ in 0..500 {
            let i = vfio_input(&mut r, &IVSHMEM_BARS);
            let e = expect_vfio(&i, &IVSHMEM_BARS);
            valid += usize::from(e.is_valid());
            refused += usize::from(e.is_refused());
            // The model never doubts a VFIO export.
            assert!(e.is_valid() || e.is_refused());
        }
        assert!(
            valid > 50 && refused > 50,
            "{valid} valid, {refused} refused"
        );
    }

    #[test]
    fn judging() {
        let doc = VFIO_ERRNOS;
        let valid = Expect::default();
        let mut bad = Expect::default();
        bad.refuse(EINVAL, "a range that is not whole pages");
        let mut unsure = Expect::default();
        unsure.maybe(EINVAL, "reserved");
        assert!(judge(Ok(()), &valid, doc).is_ok());
        assert!(judge(Err(EINVAL), &bad, doc).is_ok());
        let e = judge(Ok(()), &bad, doc).unwrap_err();
        assert_eq!(e, "succeeded, but: a range that is not whole pages");
        let e = judge(Err(EPERM), &bad, doc).unwrap_err();
        assert!(e.contains("not among the errnos documented"), "{e}");
        let e = judge(Err(EINVAL), &valid, doc).unwrap_err();
        assert_eq!(e, "EINVAL for an input the rules accept");
        let e = judge(Err(ENODEV), &bad, doc).unwrap_err();
        assert_eq!(
            e,
            "ENODEV, but the rules give EINVAL (a range that is not whole pages)"
        );
        // An allocation may always fail.
        assert!(judge(Err(ENOMEM), &valid, doc).is_ok());
        // A rule in doubt allows both.
        assert!(judge(Ok(()), &unsure, doc).is_ok());
        assert!(judge(Err(EINVAL), &unsure, doc).is_ok());
        assert_eq!(
            judge(Err(ENODEV), &unsure, doc).unwrap_err(),
            "ENODEV, but the rules give success or EINVAL (reserved)"
        );
    }

    fn map(fd: MapFd, flags: u32, iova: u64, start: u64, length: u64) -> Expect {
        expect_map(&MapInput {
            fd,
            flags,
            iova,
            start,
            length,
        })
    }

    #[test]
    fn map_file_rules() {
        let all = FIXED | READ | WRITE;
        let iova = 2 * MIB;
        assert!(map(MapFd::DmaBuf, all, iova, 0, MAP_LEN).is_valid());
        assert!(map(MapFd::DmaBuf, READ | WRITE, 0, 64 * KIB, PAGE).is_valid());
        assert!(map(MapFd::DmaBufRo, FIXED | READ, iova, 0, MAP_LEN).is_valid());
        assert!(map(MapFd::Memfd, all, iova, 0, MEMFD_LEN).is_valid());
        let one = |e: Expect| errnos(&e);
        assert_eq!(
            one(map(MapFd::DmaBuf, all | 8, iova, 0, PAGE)),
            [EOPNOTSUPP]
        );
        assert_eq!(one(map(MapFd::DmaBufRo, all, iova, 0, PAGE)), [EACCES]);
        assert_eq!(
            one(map(MapFd::MemfdRo, READ | WRITE, iova, 0, PAGE)),
            [EACCES]
        );
        assert_eq!(
            one(map(MapFd::DmaBuf, all, iova, 0, MAP_LEN + PAGE)),
            [EINVAL]
        );
        assert_eq!(
            one(map(MapFd::DmaBuf, all, iova, MAP_LEN / 2, MAP_LEN)),
            [EINVAL]
        );
        assert_eq!(one(map(MapFd::DmaBuf, all, iova, 0x800, PAGE)), [EINVAL]);
        assert_eq!(one(map(MapFd::DmaBuf, all, iova, 0, 0x800)), [EINVAL]);
        assert_eq!(one(map(MapFd::DmaBuf, all, iova, 0, 0)), [EINVAL]);
        assert_eq!(one(map(MapFd::DmaBuf, FIXED, iova, 0, PAGE)), [EINVAL]);
        assert_eq!(one(map(MapFd::DevNull, all, iova, 0, PAGE)), [EINVAL]);
        assert_eq!(one(map(MapFd::NotOpen(-1), all, iova, 0, PAGE)), [EBADF]);
        assert_eq!(
            one(map(MapFd::DmaBuf, all, KEPT_IOVA + PAGE, 0, PAGE)),
            [EEXIST]
        );
        assert_eq!(
            one(map(MapFd::DmaBuf, all, KEPT_IOVA - PAGE, 0, 2 * PAGE)),
            [EEXIST]
        );
        assert!(map(MapFd::DmaBuf, all, KEPT_IOVA + MAP_LEN, 0, PAGE).is_valid());
        assert!(map(MapFd::DmaBuf, all, u64::MAX, 0, PAGE).allows(EOVERFLOW));
        assert!(map(MapFd::DmaBuf, all, u64::MAX - PAGE + 1, 0, 2 * PAGE).is_refused());
        assert!(map(MapFd::DmaBuf, all, 1 << 57, 0, PAGE).is_refused());
        // Outside the IOVAs no IOMMU reserves: either outcome.
        let msi = map(MapFd::DmaBuf, all, 0xfee0_0000, 0, PAGE);
        assert!(!msi.is_valid() && !msi.is_refused() && msi.allows(EINVAL));
        // The kernel picks the IOVA: any iova is fine but ULONG_MAX.
        assert!(map(MapFd::DmaBuf, READ, 0x123, 0, PAGE).is_valid());
    }

    #[test]
    fn map_inputs_cover_both_sides() {
        let mut r = Rng::stream(DEFAULT_SEED, MAP as u64);
        let v: Vec<Expect> = (0..1000).map(|_| expect_map(&map_input(&mut r))).collect();
        assert!(v.iter().filter(|e| e.is_valid()).count() > 100);
        assert!(v.iter().filter(|e| e.is_refused()).count() > 100);
        assert!(v.iter().any(|e| e.allows(EEXIST)));
    }

    fn slot(slot: u32, flags: u32, gpa: u64, len: u64, offset: u64) -> MemoryRegion2 {
        MemoryRegion2 {
            slot,
            flags: KVM_MEM_DMABUF | flags,
            guest_phys_addr: gpa,
            memory_size: len,
            dmabuf_offset: offset,
            ..Default::default()
        }
    }

    #[test]
    fn slot_rules() {
        let kept = [KEPT];
        let rw = Some(true);
        let gpa = 8 * GIB;
        let one = |r: MemoryRegion2, buf: Option<bool>| errnos(&expect_slot(&r, buf, &kept));
        assert!(expect_slot(&slot(2, 0, gpa, SLOT_BUF_LEN, 0), rw, &kept).is_valid());
        assert!(expect_slot(&slot(2, 0, gpa, PAGE, MIB), rw, &kept).is_valid());
        let ro = slot(2, KVM_MEM_READONLY, gpa, SLOT_BUF_LEN, 0);
        assert!(expect_slot(&ro, Some(false), &kept).is_valid());
        // The README's refusals.
        assert_eq!(one(slot(2, 0, gpa, SLOT_BUF_LEN, 0), None), [EBADF]);
        assert_eq!(one(slot(2, 0, gpa, MIB, 2 * KIB), rw), [EINVAL]);
        assert_eq!(one(slot(2, 0, gpa, SLOT_BUF_LEN, MIB), rw), [E2BIG]);
        assert_eq!(one(slot(2, 0, gpa, PAGE, SLOT_BUF_LEN + PAGE), rw), [E2BIG]);
        assert_eq!(one(slot(2, 0, gpa, MIB, !0xfff), rw), [E2BIG]);
        assert_eq!(one(slot(2, KVM_MEM_GUEST_MEMFD, gpa, MIB, 0), rw), [EINVAL]);
        assert_eq!(
            one(slot(2, KVM_MEM_LOG_DIRTY_PAGES, gpa, MIB, 0), rw),
            [EINVAL]
        );
        assert_eq!(one(slot(2, 0, gpa, SLOT_BUF_LEN, 0), Some(false)), [EACCES]);
        let user = MemoryRegion2 {
            userspace_addr: 0x7000_0000,
            ..slot(2, 0, gpa, PAGE, 0)
        };
        assert_eq!(one(user, rw), [EINVAL]);
        // The kept slot: moved, changed, overlapped, deleted.
        assert_eq!(one(slot(KEPT_SLOT, 0, gpa, SLOT_BUF_LEN, 0), rw), [EINVAL]);
        assert_eq!(
            one(
                slot(KEPT_SLOT, KVM_MEM_READONLY, KEPT_GPA, SLOT_BUF_LEN, 0),
                rw
            ),
            [EINVAL]
        );
        assert_eq!(one(slot(2, 0, KEPT_GPA + MIB, PAGE, 0), rw), [EEXIST]);
        assert!(expect_slot(&slot(2, 0, KEPT_GPA + SLOT_BUF_LEN, PAGE, 0), rw, &kept).is_valid());
        assert!(expect_slot(&slot(KEPT_SLOT, 0, 0, 0, 0), None, &kept).is_valid());
        assert_eq!(one(slot(2, 0, 0, 0, 0), rw), [EINVAL]);
        // The same id in address space 1 is another slot, which may not exist.
        let smm = expect_slot(&slot(1 << 16 | KEPT_SLOT, 0, KEPT_GPA, PAGE, 0), rw, &kept);
        assert!(!smm.is_valid() && !smm.is_refused());
        // Limits of ids, flags and addresses.
        for id in [KVM_USER_MEM_SLOTS, 0xffff, 2 << 16 | 2] {
            assert_eq!(one(slot(id, 0, gpa, PAGE, 0), rw), [EINVAL], "{id:#x}");
        }
        assert_eq!(one(slot(2, 1 << 20, gpa, PAGE, 0), rw), [EINVAL]);
        assert_eq!(one(slot(2, 0, gpa + 1, PAGE, 0), rw), [EINVAL]);
        assert_eq!(
            one(slot(2, 0, u64::MAX - PAGE + 1, 2 * PAGE, 0), rw),
            [EINVAL]
        );
        assert!(expect_slot(&slot(2, 0, 1 << 52, PAGE, 0), rw, &kept).is_refused());
        assert!(!expect_slot(&slot(2, 0, 1 << 40, PAGE, 0), rw, &kept).is_valid());
    }

    #[test]
    fn slot_inputs_cover_both_sides() {
        let mut r = Rng::stream(DEFAULT_SEED, SLOT as u64);
        let kept = [KEPT];
        let (mut valid, mut refused) = (0, 0);
        for _ in 0..1000 {
            let i = slot_input(&mut r, 0x7f00_0000_0000);
            assert_ne!(i.region.flags & KVM_MEM_DMABUF, 0);
            let buf = match i.fd {
                SlotFd::Buf => Some(true),
                SlotFd::BufRo => Some(false),
                _ => None,
            };
            let e = expect_slot(&i.region, buf, &kept);
            valid += usize::from(e.is_valid());
            refused += usize::from(e.is_refused());
        }
        assert!(
            valid > 30 && refused > 300,
            "{valid} valid, {refused} refused"
        );
    }

    #[test]
    fn rust_exporter_rules() {
        assert!(expect_rust(rust_exporter::EXPORT_DYNAMIC).is_valid());
        assert!(expect_rust(rust_exporter::MIGRATE).is_valid());
        assert!(expect_rust(rust_exporter::EXPORT_PINNED).is_valid());
        assert_eq!(errnos(&expect_rust(sys::io(0xdb, 0x23))), [ENOTTY]);
        assert_eq!(
            errnos(&expect_rust(rust_exporter::MIGRATE | 1 << 30)),
            [ENOTTY]
        );
        let mut r = Rng::new(5);
        let cmds: Vec<u32> = (0..500).map(|_| rust_cmd(&mut r)).collect();
        assert!(cmds.iter().any(|&c| expect_rust(c).is_valid()));
        assert!(cmds.iter().any(|&c| expect_rust(c).is_refused()));
    }

    fn world() -> SampleWorld {
        SampleWorld {
            bufs: vec![SampleFd::Vfio, SampleFd::Pinned, SampleFd::Dynamic],
            peers: vec![0x20],
            present: vec![0, 0x8, 0x20, 0x1_0000],
        }
    }

    #[test]
    fn sample_rules() {
        let w = world();
        let one = |c: SampleCall| errnos(&expect_sample(&c, &w));
        let map = |fd, flags, reserved, pci| SampleCall::Map {
            fd,
            flags,
            reserved,
            pci,
        };
        for fd in [SampleFd::Vfio, SampleFd::Pinned, SampleFd::Dynamic] {
            assert!(expect_sample(&SampleCall::Describe(fd), &w).is_valid());
        }
        assert_eq!(one(SampleCall::Describe(SampleFd::Memfd)), [EINVAL]);
        assert_eq!(one(SampleCall::Describe(SampleFd::NotOpen(-1))), [EBADF]);
        assert!(expect_sample(&map(SampleFd::Pinned, 0, 0, 0), &w).is_valid());
        assert_eq!(one(map(SampleFd::Dynamic, 0, 0, 0)), [EOPNOTSUPP]);
        assert_eq!(one(map(SampleFd::Vfio, 0, 0, 0)), [EOPNOTSUPP]);
        assert_eq!(one(map(SampleFd::Pinned, 2, 0, 0)), [EINVAL]);
        assert_eq!(one(map(SampleFd::Pinned, 0, 1, 0)), [EINVAL]);
        assert_eq!(one(map(SampleFd::Vfio, MAP_PCI, 0, 0x30)), [ENODEV]);
        let peer = expect_sample(&map(SampleFd::Vfio, MAP_PCI, 0, 0x20), &w);
        assert!(!peer.is_refused() && peer.allows(EINVAL));
        assert_eq!(one(SampleCall::NullArg(DESCRIBE)), [EFAULT]);
        assert_eq!(one(SampleCall::Other(sys::iowr(0xdb, 0, 80))), [ENOTTY]);
    }

    #[test]
    fn sample_calls_keep_the_rust_buffers_away_from_present_devices() {
        let w = world();
        let mut r = Rng::new(9);
        let mut peers = 0;
        for _ in 0..5000 {
            match sample_call(&mut r, &w) {
                SampleCall::Map { fd, pci, .. } if w.present.contains(&pci) => {
                    assert!(!matches!(fd, SampleFd::Pinned | SampleFd::Dynamic));
                    peers += 1;
                }
                SampleCall::Other(c) => assert!(c != DESCRIBE && c != MAP_CMD),
                _ => {}
            }
        }
        assert!(peers > 100);
        // Without buffers, only a memfd and closed numbers.
        let none = SampleWorld {
            bufs: Vec::new(),
            ..world()
        };
        for _ in 0..500 {
            if let SampleCall::Describe(fd) = sample_call(&mut r, &none) {
                assert!(matches!(fd, SampleFd::Memfd | SampleFd::NotOpen(_)));
            }
        }
    }

    #[test]
    fn calls_are_shared_out() {
        assert_eq!(split(DEFAULT_CALLS), [3000, 3000, 2500, 700, 800]);
        for n in [0, 1, 7, 99, 101, 12345, u64::MAX] {
            let s = split(n);
            assert_eq!(s.iter().fold(0u64, |a, &b| a.wrapping_add(b)), n, "{n}");
        }
    }

    #[test]
    fn inputs_print_for_replay() {
        let i = VfioInput {
            region: 2,
            open_flags: 0o2000002,
            ranges: ranges(&[(0, 0x1000), (0x800, 0x1000)]),
        };
        assert_eq!(
            i.to_string(),
            "region 2, open_flags 0o2000002, 2 ranges: 0x0+0x1000, 0x800+0x1000"
        );
        let m = MapInput {
            fd: MapFd::NotOpen(-1),
            flags: 7,
            iova: 0x1000,
            start: 0,
            length: 0x2000,
        };
        assert_eq!(
            m.to_string(),
            "fd -1 (not open), flags 0x7, iova 0x1000, start 0x0, length 0x2000"
        );
    }
}
