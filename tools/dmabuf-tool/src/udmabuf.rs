//! `dmabuf-tool udmabuf`: memfd memory as a dma-buf (`/dev/udmabuf`,
//! drivers/dma-buf/udmabuf.c), as the series changes it, and what its
//! importers make of it. Each TAP case checks one rule:
//!
//! - Access mode: the dma-buf is exported `O_RDONLY` when any memfd it is
//!   made from was opened without write access (a memfd reopened `O_RDONLY`
//!   through `/proc/self/fd`), `O_RDWR` otherwise; mmap(2) of it follows
//!   (`PROT_WRITE, MAP_SHARED` gives EACCES on an `O_RDONLY` one).
//! - Refusals: memfds need `F_SEAL_SHRINK` and neither `F_SEAL_WRITE` nor
//!   `F_SEAL_FUTURE_WRITE` (EINVAL), offsets and sizes page aligned and a
//!   size above 0 (EINVAL), a memfd and not another file (EBADFD); a refused
//!   create leaves no descriptor behind.
//! - Description: udmabuf's get_memory describes a `PINNED` buffer of one
//!   CPU chunk with one range per run of physically contiguous pages, in
//!   buffer order (`UDMABUF_CREATE_LIST` items in list order). The C import
//!   sample's `DMABUF_IMPORT_SAMPLE_DESCRIBE` shows it; `/proc/self/pagemap`
//!   shows the memfd's pages (their PFNs to root only).
//! - Huge pages: a hugetlbfs memfd gives whole, aligned 2 MiB ranges.
//! - DMA: `IOMMU_IOAS_MAP_FILE` of a udmabuf lets edu DMA into the memfds'
//!   pages exactly where the items say; a device-writable map of an
//!   `O_RDONLY` udmabuf gives EACCES, a readable one works.
//! - KVM: a `KVM_MEM_DMABUF` slot of an `O_RDONLY` udmabuf needs
//!   `KVM_MEM_READONLY` (EACCES without).
//!
//! Without `/dev/udmabuf` everything is skipped; the description, huge
//! page, DMA and KVM parts are skipped when their device (the import
//! sample, edu and iommufd, /dev/kvm), root or free huge pages are missing.
//! `nr_hugepages` is never changed here.

use std::cell::Cell;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use kvm_bindings::KVM_MEM_READONLY;
use kvm_ioctls::VmFd;
use libc::{EACCES, EBADFD, EINVAL, O_RDONLY, O_RDWR};

use crate::args::{hex_preview, size, span};
use crate::bar_exporter::{Lab, STAGING_IOVA};
use crate::dmabuf::{self, access_name};
use crate::edu::{Edu, DMA_LIMIT, MAX_DMA};
use crate::errno::{expect_errno, name, Context, Error, Result};
use crate::failnth;
use crate::fuzz;
use crate::import_sample::{self, joined, ranges_str, MODEL_PINNED};
use crate::iommufd::{Access, Iommufd};
use crate::kvm::{self, MemoryRegion2, KVM_MEM_DMABUF};
use crate::mmap::Mapping;
use crate::pci::{Sysfs, EDU};
use crate::report::{Facts, Runner};
use crate::rust_exporter::pattern_of;
use crate::story::write_access::compare;
use crate::story::{no_fd_left, open_fds, pattern, usize_of};
use crate::sys::{
    self, ImportSampleDescribe, ImportSampleRange, UdmabufCreate, UdmabufCreateItem,
    IMPORT_SAMPLE_RANGES, UDMABUF_FLAGS_CLOEXEC,
};
use crate::vfio::{VfioDevice, PCI_COMMAND_MASTER};

/// udmabuf's misc device.
pub const DEVICE: &str = "/dev/udmabuf";
/// The name udmabuf's dma-bufs carry as `exp_name` (its KBUILD_MODNAME).
const EXPORTER: &str = "udmabuf";

const PAGE: u64 = 4096;
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The one-memfd buffers: four pages.
const SMALL_LEN: u64 = 4 * PAGE;
/// The larger buffer of the description part.
const LARGE_LEN: u64 = 256 * PAGE;
/// Each of the two memfds of the list buffers.
const MEMFD_LEN: u64 = 8 * PAGE;
/// The list buffer's items, in list order: (memfd 0 or 1, offset, size).
const LIST: [(usize, u64, u64); 3] = [
    (0, 4 * KIB, 8 * KIB),
    (1, 8 * KIB, 12 * KIB),
    (0, 20 * KIB, 8 * KIB),
];
const LIST_LEN: u64 = 28 * KIB;

/// The hugetlbfs buffer: four 2 MiB pages.
const HUGE_PAGE: u64 = 2 * MIB;
const HUGE_PAGES: u64 = 4;
const HUGE_LEN: u64 = HUGE_PAGES * HUGE_PAGE;
const HUGEPAGES_DIR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";

/// Where edu writes and reads in each item: across its first page boundary.
const IN_ITEM: u64 = PAGE - 0x100;
const DMA_LEN: u64 = 0x200;
/// What the list memfds hold before edu writes to them.
const GUARDS: [u8; 2] = [0x5a, 0xc3];
/// Pattern seeds: item `i` is written `WRITE_SEED + i`, then read back as
/// `READ_SEED + i`.
const WRITE_SEED: u8 = 0x40;
const READ_SEED: u8 = 0x48;

/// IOVAs below edu's DMA limit; the staging page is bar_exporter's.
const LIST_IOVA: u64 = 0x40_0000;
const RO_IOVA: u64 = 0x60_0000;
const SPARE_IOVA: u64 = 0x80_0000;

/// The KVM part's memslot, in a VM without other slots.
const SLOT: u32 = 1;
const GPA: u64 = 4 * GIB;

const _: () = assert!(LIST[0].2 + LIST[1].2 + LIST[2].2 == LIST_LEN);
const _: () = {
    let mut i = 0;
    while i < LIST.len() {
        let (m, off, len) = LIST[i];
        assert!(m < 2 && off % PAGE == 0 && len % PAGE == 0 && off + len <= MEMFD_LEN);
        assert!(IN_ITEM + DMA_LEN <= len);
        i += 1;
    }
};
const _: () = assert!(DMA_LEN <= MAX_DMA);
const _: () = assert!(STAGING_IOVA + PAGE <= LIST_IOVA);
const _: () = assert!(LIST_IOVA + LIST_LEN <= RO_IOVA);
const _: () = assert!(RO_IOVA + MEMFD_LEN <= SPARE_IOVA);
const _: () = assert!(SPARE_IOVA + MEMFD_LEN <= DMA_LIMIT);

// ---------------------------------------------------------------------------
// The cases

const ACCESS_CASES: [&str; 9] = [
    "a 16 KiB memfd (MFD_ALLOW_SEALING, F_SEAL_SHRINK) holding a pattern",
    "UDMABUF_CREATE of the O_RDWR memfd gives an O_RDWR dma-buf (F_GETFL), exported by \
     udmabuf, of the memfd's 16 KiB",
    "mmap(PROT_READ|PROT_WRITE, MAP_SHARED) of the O_RDWR udmabuf works: it shows the memfd's \
     bytes, and a write through it is seen in the memfd's own mapping",
    "UDMABUF_CREATE of the same memfd reopened O_RDONLY through /proc/self/fd works and gives \
     an O_RDONLY dma-buf",
    "mmap(PROT_READ|PROT_WRITE, MAP_SHARED) of the O_RDONLY udmabuf fails with EACCES",
    "mmap(PROT_READ, MAP_SHARED) of the O_RDONLY udmabuf works and shows the memfd's bytes",
    "UDMABUF_CREATE_LIST of an O_RDWR and an O_RDONLY memfd descriptor gives an O_RDONLY dma-buf",
    "control: UDMABUF_CREATE_LIST of two O_RDWR memfd descriptors gives an O_RDWR dma-buf",
    "close the udmabufs and the memfd",
];

const DESCRIBE_CASES: [&str; 4] = [
    "DESCRIBE of a udmabuf of a 4-page memfd: PINNED, one chunk, 16 KiB, one range per run of \
     physically contiguous pages as /proc/self/pagemap shows them",
    "DESCRIBE of a UDMABUF_CREATE_LIST udmabuf of 3 items of two memfds (memfd 0 at 4 KiB \
     +8 KiB, memfd 1 at 8 KiB +12 KiB, memfd 0 at 20 KiB +8 KiB): 28 KiB, the runs of the \
     items' pages in list order",
    "DESCRIBE of a udmabuf of a 256-page memfd: as many ranges as pagemap shows runs, the \
     first 4 exactly",
    "DESCRIBE of an O_RDONLY udmabuf of a 4-page memfd: the same ranges as of the O_RDWR one \
     and as pagemap's runs",
];

const HUGE_CASES: [&str; 2] = [
    "UDMABUF_CREATE of an 8 MiB MFD_HUGETLB memfd (4 x 2 MiB pages) gives an 8 MiB dma-buf",
    "DESCRIBE of the hugetlbfs udmabuf: PINNED, 8 MiB, at most 4 ranges, each 2 MiB aligned \
     and whole 2 MiB pages, pagemap's runs",
];

const DMA_CASES: [&str; 9] = [
    "setup: edu on vfio-pci, bound to iommufd, in an IOAS of its own, bus mastering on, a \
     staging page at IOVA 0x100000",
    "UDMABUF_CREATE_LIST of the 3 items of two guard-filled memfds gives a 28 KiB O_RDWR \
     dma-buf; memfd 0 reopened O_RDONLY gives an O_RDONLY one",
    "IOMMU_IOAS_MAP_FILE READABLE|WRITEABLE of the whole 28 KiB udmabuf at IOVA 0x400000 works",
    "edu DMA-writes a pattern into each item at IOVA 0x400000 + the item's buffer offset + \
     0xf00 (across a page boundary): each lands in its memfd at the item's offset + 0xf00, in \
     list order, and every other byte of both memfds keeps its guard",
    "edu DMA-reads each item through the mapping and gets what its memfd holds there",
    "IOMMU_IOAS_MAP_FILE READABLE|WRITEABLE of the O_RDONLY udmabuf fails with EACCES",
    "IOMMU_IOAS_MAP_FILE READABLE of the O_RDONLY udmabuf at IOVA 0x600000 works; edu reads \
     memfd 0 through it; unmapped again",
    "IOMMU_IOAS_UNMAP of the 28 KiB udmabuf at IOVA 0x400000; close the udmabufs and the memfds",
    "unmap the staging page, close edu's VFIO device, destroy the IOAS, close /dev/iommu",
];

const KVM_CASES: [&str; 3] = [
    "KVM_MEM_DMABUF slot 1 of a 16 KiB O_RDWR udmabuf at GPA 4 GiB: created, then deleted, \
     KVM's attachment going with it",
    "KVM_MEM_DMABUF slot of an O_RDONLY udmabuf without KVM_MEM_READONLY fails with EACCES",
    "KVM_MEM_DMABUF | KVM_MEM_READONLY slot of the O_RDONLY udmabuf: created, then deleted",
];

const CLEANUP_CASES: [&str; 2] = ["close /dev/udmabuf", "no file descriptor is left open"];

/// Skip each of `cases` with `why`: what they need is not here.
pub(crate) fn skip_all(r: &mut Runner<'_>, cases: &[&str], why: &str) {
    for c in cases {
        r.skip(c, why);
    }
}

/// Report each of `cases` as failed: a step they need failed.
pub(crate) fn blocked(r: &mut Runner<'_>, cases: &[&str], why: &str) {
    for c in cases {
        r.check(c, |_| Err(skipped(why)));
    }
}

fn skipped(why: &str) -> Error {
    Error::msg(format!("skipped: {why}"))
}

// ---------------------------------------------------------------------------
// /dev/udmabuf and memfds

/// What the run did, for the closing comment.
#[derive(Debug, Default)]
struct Counts {
    created: Cell<u32>,
    refused: Cell<u32>,
    ranges: Cell<u32>,
    transfers: Cell<u32>,
}

fn bump(c: &Cell<u32>, n: u32) {
    c.set(c.get() + n);
}

/// `/dev/udmabuf`, open, and the counts of the run.
pub(crate) struct Udmabuf {
    dev: File,
    counts: Counts,
}

impl Udmabuf {
    pub(crate) fn open() -> Result<Self> {
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(DEVICE)
            .op(format!("open {DEVICE}"))?;
        Ok(Udmabuf {
            dev,
            counts: Counts::default(),
        })
    }

    fn counted(&self, r: Result<OwnedFd>) -> Result<OwnedFd> {
        if r.is_ok() {
            bump(&self.counts.created, 1);
        }
        r
    }

    /// `UDMABUF_CREATE` (with `UDMABUF_FLAGS_CLOEXEC`) of `size` bytes of the
    /// descriptor `memfd` from `offset`. The kernel only looks the number up.
    pub(crate) fn create(&self, memfd: RawFd, offset: u64, size: u64) -> Result<OwnedFd> {
        let mut arg = UdmabufCreate {
            memfd: memfd as u32,
            flags: UDMABUF_FLAGS_CLOEXEC,
            offset,
            size,
        };
        self.counted(
            sys::ioctl_arg_new_fd(self.dev.as_fd(), sys::UDMABUF_CREATE, &mut arg)
                .op("UDMABUF_CREATE"),
        )
    }

    /// `UDMABUF_CREATE_LIST` (with `UDMABUF_FLAGS_CLOEXEC`) of `items`,
    /// (descriptor, offset, size) in buffer order.
    fn create_list(&self, items: &[(RawFd, u64, u64)]) -> Result<OwnedFd> {
        let items: Vec<UdmabufCreateItem> = items
            .iter()
            .map(|&(fd, offset, size)| UdmabufCreateItem {
                memfd: fd as u32,
                offset,
                size,
                ..Default::default()
            })
            .collect();
        self.counted(
            sys::udmabuf_create_list(self.dev.as_fd(), UDMABUF_FLAGS_CLOEXEC, &items)
                .op("UDMABUF_CREATE_LIST"),
        )
    }
}

/// A memfd of `len` bytes made with `MFD_CLOEXEC | MFD_ALLOW_SEALING | flags`
/// and sealed with `seals` (none if 0).
fn sealed_memfd(name: &CStr, flags: libc::c_uint, len: u64, seals: libc::c_int) -> Result<File> {
    let file = File::from(
        sys::memfd_create_flags(name, libc::MFD_ALLOW_SEALING | flags).op("memfd_create")?,
    );
    file.set_len(len).op("ftruncate the memfd")?;
    if seals != 0 {
        sys::add_seals(file.as_fd(), seals).op(format!("F_ADD_SEALS {seals:#x}"))?;
    }
    Ok(file)
}

/// A memfd as udmabuf wants it (`F_SEAL_SHRINK`), mapped shared through its
/// O_RDWR descriptor.
pub(crate) struct Memfd {
    file: File,
    map: Mapping,
}

impl Memfd {
    fn new(name: &CStr, flags: libc::c_uint, len: u64) -> Result<Self> {
        let file = sealed_memfd(name, flags, len, libc::F_SEAL_SHRINK)?;
        let map = Mapping::shared(file.as_fd(), usize_of(len), 0).op("mmap the memfd")?;
        Ok(Memfd { file, map })
    }

    /// A memfd holding `pattern_of(0, len, generation)`.
    pub(crate) fn with_pattern(name: &CStr, len: u64, generation: u32) -> Result<Self> {
        let m = Memfd::new(name, 0, len)?;
        m.map
            .write_bytes(0, &pattern_of(0, usize_of(len), generation));
        Ok(m)
    }

    /// A memfd holding `byte` everywhere.
    fn with_guard(name: &CStr, len: u64, byte: u8) -> Result<Self> {
        let m = Memfd::new(name, 0, len)?;
        m.map.fill(0, usize_of(len), byte);
        Ok(m)
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn note(&self, what: &str) -> String {
        format!("{what}: memfd fd {}, {}", self.raw(), size(self.len()))
    }

    /// The same file opened again, O_RDONLY, through /proc/self/fd.
    pub(crate) fn read_only(&self) -> Result<File> {
        let path = format!("/proc/self/fd/{}", self.raw());
        File::open(&path).op(format!("open {path} O_RDONLY"))
    }

    /// `len` bytes at `off`, read through the memfd's own mapping.
    fn bytes(&self, off: u64, len: u64) -> Vec<u8> {
        self.map.to_vec(usize_of(off), usize_of(len))
    }

    /// The page frames of `[off, off + len)` of the memfd, in order: each
    /// page is read through our mapping first, so that pagemap has it.
    fn frames(&self, off: u64, len: u64) -> Result<Vec<u64>> {
        for p in (off..off + len).step_by(PAGE as usize) {
            let _ = self.map.read_u64(usize_of(p));
        }
        frames(self.map.addr() + off, len / PAGE)
    }

    pub(crate) fn close(self) -> Result<()> {
        drop(self.map);
        sys::close(OwnedFd::from(self.file)).op("close a memfd")
    }
}

/// Close dma-bufs and files, reporting `close(2)`.
fn close_all(fds: impl IntoIterator<Item = OwnedFd>) -> Result<()> {
    for fd in fds {
        sys::close(fd).op("close a descriptor")?;
    }
    Ok(())
}

/// Check, with `fcntl(F_GETFL)`, that `fd` has the access mode `want`
/// (`O_ACCMODE` as the kernel has it: musl's includes `O_PATH`).
fn check_mode(fd: &impl AsFd, what: &str, want: i32, f: &mut Facts) -> Result<()> {
    let fd = fd.as_fd();
    let flags = sys::status_flags(fd).op("fcntl(F_GETFL)")?;
    let got = flags & dmabuf::O_ACCMODE;
    f.add(format!(
        "{what} fd {}: F_GETFL {flags:#o}, {}",
        fd.as_raw_fd(),
        access_name(got)
    ));
    if got != want {
        return Err(Error::msg(format!(
            "{what}: expected {}",
            access_name(want)
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// /proc/self/pagemap and descriptions

const PAGEMAP: &str = "/proc/self/pagemap";
/// Bit 63 of a pagemap entry: the page is present.
const PM_PRESENT: u64 = 1 << 63;
/// Bits 0-54: its page frame number (0 without CAP_SYS_ADMIN).
const PM_PFN: u64 = (1 << 55) - 1;

/// The PFN of a pagemap entry, if the page is present.
fn pfn_of(entry: u64) -> Option<u64> {
    (entry & PM_PRESENT != 0).then_some(entry & PM_PFN)
}

/// The PFNs in pagemap entries `raw` of the pages from `addr`: each must be
/// present, with a PFN.
fn parse_frames(addr: u64, raw: &[u8]) -> Result<Vec<u64>> {
    raw.chunks_exact(8)
        .enumerate()
        .map(|(i, b)| {
            let e = u64::from_ne_bytes(b.try_into().expect("8 bytes"));
            let at = addr + i as u64 * PAGE;
            match pfn_of(e) {
                None => Err(Error::msg(format!(
                    "{PAGEMAP}: page {at:#x} is not present (entry {e:#018x})"
                ))),
                Some(0) => Err(Error::msg(format!(
                    "{PAGEMAP}: page {at:#x} has PFN 0: PFNs are hidden without CAP_SYS_ADMIN"
                ))),
                Some(pfn) => Ok(pfn),
            }
        })
        .collect()
}

/// The PFNs of `pages` pages of our address space from `addr`.
fn frames(addr: u64, pages: u64) -> Result<Vec<u64>> {
    let file = File::open(PAGEMAP).op(format!("open {PAGEMAP}"))?;
    let mut raw = vec![0u8; usize_of(pages * 8)];
    file.read_exact_at(&mut raw, addr / PAGE * 8)
        .op(format!("read {PAGEMAP}"))?;
    parse_frames(addr, &raw)
}

/// Pages `pfns`, in order, as physical ranges: one per run of consecutive
/// frames, as udmabuf describes them.
fn runs(pfns: &[u64]) -> Vec<ImportSampleRange> {
    let pages: Vec<ImportSampleRange> = pfns
        .iter()
        .map(|&pfn| ImportSampleRange {
            paddr: pfn * PAGE,
            len: PAGE,
        })
        .collect();
    joined(&pages)
}

/// The runs of the pages of a buffer made of `parts` (memfd, offset, size),
/// in buffer order.
fn buffer_runs(parts: &[(&Memfd, u64, u64)]) -> Result<Vec<ImportSampleRange>> {
    let mut pfns = Vec::new();
    for &(m, off, len) in parts {
        pfns.extend(m.frames(off, len)?);
    }
    Ok(runs(&pfns))
}

/// `desc`, the sample's view of a buffer of `len` bytes, must be PINNED, of
/// one chunk and `len` bytes, with as many ranges as `runs` and its first
/// ones exactly `runs`'s first. Returns how many ranges it compared.
fn check_description(
    desc: &ImportSampleDescribe,
    len: u64,
    runs: &[ImportSampleRange],
    f: &mut Facts,
) -> Result<usize> {
    let nr = desc.nr_ranges as usize;
    let shown = nr.min(IMPORT_SAMPLE_RANGES);
    let first = runs.len().min(IMPORT_SAMPLE_RANGES);
    f.add(format!(
        "DESCRIBE: model {}, {} chunk(s), {} in {nr} range(s), the first {shown}: {}",
        desc.model,
        desc.nr_chunks,
        size(desc.size),
        ranges_str(&desc.ranges[..shown])
    ));
    f.add(format!(
        "pagemap: {} pages in {} run(s), the first {first}: {}",
        len / PAGE,
        runs.len(),
        ranges_str(&runs[..first])
    ));
    if desc.model != MODEL_PINNED {
        return Err(Error::msg(format!(
            "model {}, expected PINNED ({MODEL_PINNED})",
            desc.model
        )));
    }
    if desc.nr_chunks != 1 {
        return Err(Error::msg("expected one chunk (udmabuf's CPU memory)"));
    }
    if desc.size != len {
        return Err(Error::msg(format!(
            "{} described, the buffer is {}",
            size(desc.size),
            size(len)
        )));
    }
    if nr != runs.len() {
        return Err(Error::msg(format!(
            "{nr} range(s) described, pagemap shows {} run(s) of contiguous pages",
            runs.len()
        )));
    }
    if let Some(i) = (0..shown).find(|&i| desc.ranges[i] != runs[i]) {
        return Err(Error::msg(format!(
            "range {i} is {}, pagemap's run is {}",
            ranges_str(&desc.ranges[i..=i]),
            ranges_str(&runs[i..=i])
        )));
    }
    Ok(shown)
}

/// A hugetlbfs buffer of `HUGE_LEN`: at most one range per huge page, each
/// aligned and whole huge pages, `HUGE_LEN` in all.
fn check_huge(desc: &ImportSampleDescribe, f: &mut Facts) -> Result<()> {
    let nr = desc.nr_ranges as usize;
    if nr == 0 || nr as u64 > HUGE_PAGES {
        return Err(Error::msg(format!(
            "{nr} ranges: 1 to {HUGE_PAGES} expected, one per 2 MiB page at most"
        )));
    }
    let ranges = &desc.ranges[..nr];
    if let Some((i, r)) = ranges
        .iter()
        .enumerate()
        .find(|(_, r)| r.paddr % HUGE_PAGE != 0 || r.len == 0 || r.len % HUGE_PAGE != 0)
    {
        return Err(Error::msg(format!(
            "range {i} ({:#x}+{:#x}) is not whole aligned 2 MiB pages",
            r.paddr, r.len
        )));
    }
    let total: u64 = ranges.iter().map(|r| r.len).sum();
    if total != HUGE_LEN {
        return Err(Error::msg(format!(
            "the ranges add up to {}, expected {}",
            size(total),
            size(HUGE_LEN)
        )));
    }
    f.add(format!(
        "{nr} range(s) of whole, aligned 2 MiB pages, {} in all",
        size(total)
    ));
    Ok(())
}

/// DESCRIBE `buf`, made of `parts`, with the sample `sample` and compare it
/// with pagemap's runs of the parts' pages.
fn described(
    u: &Udmabuf,
    sample: &File,
    buf: &OwnedFd,
    parts: &[(&Memfd, u64, u64)],
    f: &mut Facts,
) -> Result<ImportSampleDescribe> {
    let len = parts.iter().map(|p| p.2).sum();
    let want = buffer_runs(parts)?;
    let desc = import_sample::describe(sample, buf)?;
    let n = check_description(&desc, len, &want, f)?;
    bump(&u.counts.ranges, n as u32);
    Ok(desc)
}

// ---------------------------------------------------------------------------
// The list buffer

/// The offset in the list buffer of item `i`.
fn item_start(i: usize) -> u64 {
    LIST[..i].iter().map(|it| it.2).sum()
}

/// Where edu's transfer into item `i` goes: (memfd, offset in it, IOVA).
fn dma_target(i: usize) -> (usize, u64, u64) {
    let (m, off, _) = LIST[i];
    (m, off + IN_ITEM, LIST_IOVA + item_start(i) + IN_ITEM)
}

/// The list buffer's items for `UDMABUF_CREATE_LIST`.
fn list_items(mems: &[Memfd; 2]) -> Vec<(RawFd, u64, u64)> {
    LIST.iter()
        .map(|&(m, off, len)| (mems[m].raw(), off, len))
        .collect()
}

/// The list buffer's items as (memfd, offset, size) for `described`.
fn list_parts(mems: &[Memfd; 2]) -> Vec<(&Memfd, u64, u64)> {
    LIST.iter()
        .map(|&(m, off, len)| (&mems[m], off, len))
        .collect()
}

fn list_memfds(make: impl Fn(&CStr, usize) -> Result<Memfd>) -> Result<[Memfd; 2]> {
    Ok([make(c"udmabuf-list-0", 0)?, make(c"udmabuf-list-1", 1)?])
}

// ---------------------------------------------------------------------------
// A. The access mode

fn access(r: &mut Runner<'_>, u: &Udmabuf) {
    let c = &ACCESS_CASES;
    let Some(mem) = r.attempt(c[0], |f| {
        let m = Memfd::with_pattern(c"udmabuf-access", SMALL_LEN, 1)?;
        f.add(m.note("the memfd"));
        f.add(format!("holds {} ...", hex_preview(&m.bytes(0, 8), 8)));
        Ok(m)
    }) else {
        blocked(r, &c[1..], "no memfd");
        return;
    };
    let rw = r.attempt(c[1], |f| {
        let buf = u.create(mem.raw(), 0, SMALL_LEN)?;
        check_mode(&buf, "dma-buf", O_RDWR, f)?;
        dmabuf::check_exporter(&buf, EXPORTER, SMALL_LEN, f)?;
        Ok(buf)
    });
    r.check(c[2], |f| {
        let buf = rw.as_ref().ok_or_else(|| skipped("no O_RDWR udmabuf"))?;
        let map = Mapping::shared(buf.as_fd(), usize_of(SMALL_LEN), 0)
            .op("mmap(PROT_READ|PROT_WRITE, MAP_SHARED) of the udmabuf")?;
        compare(
            "the udmabuf's mapping",
            &map.to_vec(0, usize_of(SMALL_LEN)),
            &mem.bytes(0, SMALL_LEN),
        )?;
        f.add(format!("the mapping shows the memfd's {}", size(SMALL_LEN)));
        let (off, data) = (PAGE + 0x80, pattern(0x21, 0x40));
        let old = mem.bytes(off, data.len() as u64);
        map.write_bytes(usize_of(off), &data);
        let seen = mem.bytes(off, data.len() as u64);
        mem.map.write_bytes(usize_of(off), &old);
        compare("the memfd's mapping after the write", &seen, &data)?;
        f.add(format!(
            "{} written through it at {off:#x} read back through the memfd's mapping: {}",
            data.len(),
            hex_preview(&seen, 8)
        ));
        Ok(())
    });
    let ro = r.attempt(c[3], |f| {
        let file = mem.read_only()?;
        check_mode(&file, "memfd", O_RDONLY, f)?;
        let buf = u.create(file.as_raw_fd(), 0, SMALL_LEN);
        sys::close(file.into()).op("close the O_RDONLY memfd")?;
        let buf = buf?;
        check_mode(&buf, "dma-buf", O_RDONLY, f)?;
        Ok(buf)
    });
    r.check(c[4], |f| {
        let buf = ro.as_ref().ok_or_else(|| skipped("no O_RDONLY udmabuf"))?;
        let e = expect_errno(
            Mapping::shared(buf.as_fd(), usize_of(SMALL_LEN), 0)
                .op("mmap(PROT_READ|PROT_WRITE, MAP_SHARED)"),
            EACCES,
        )?;
        f.add(format!("kernel: {e}"));
        Ok(())
    });
    r.check(c[5], |f| {
        let buf = ro.as_ref().ok_or_else(|| skipped("no O_RDONLY udmabuf"))?;
        let mut got = vec![0; usize_of(SMALL_LEN)];
        sys::read_shared_mapping(buf.as_fd(), 0, &mut got)
            .op("mmap(PROT_READ, MAP_SHARED) of the O_RDONLY udmabuf")?;
        compare("the read-only mapping", &got, &mem.bytes(0, SMALL_LEN))?;
        f.add(format!(
            "it shows the memfd's {}: {} ...",
            size(SMALL_LEN),
            hex_preview(&got, 8)
        ));
        Ok(())
    });
    for (desc, read_only, want) in [(c[6], true, O_RDONLY), (c[7], false, O_RDWR)] {
        r.check(desc, |f| {
            let other = Memfd::with_pattern(c"udmabuf-access-2", SMALL_LEN, 2)?;
            let second = if read_only {
                Some(other.read_only()?)
            } else {
                None
            };
            let fd = second.as_ref().map_or(other.raw(), |s| s.as_raw_fd());
            let res = u.create_list(&[(mem.raw(), 0, PAGE), (fd, PAGE, PAGE)]);
            f.add(format!(
                "items: fd {} (O_RDWR) [0, 4 KiB), fd {fd} ({}) [4 KiB, 8 KiB)",
                mem.raw(),
                if read_only { "O_RDONLY" } else { "O_RDWR" }
            ));
            if let Some(s) = second {
                sys::close(s.into()).op("close the O_RDONLY memfd")?;
            }
            other.close()?;
            let buf = res?;
            let checked = check_mode(&buf, "dma-buf", want, f);
            sys::close(buf).op("close the udmabuf")?;
            checked
        });
    }
    r.check(c[8], |_| {
        close_all(rw.into_iter().chain(ro))?;
        mem.close()
    });
}

// ---------------------------------------------------------------------------
// B. Refusals

/// The files the refusals pass.
struct Files {
    /// Two pages, sealed F_SEAL_SHRINK: what udmabuf wants.
    good: File,
    write_sealed: File,
    future_sealed: File,
    /// MFD_ALLOW_SEALING but no seal at all.
    unsealed: File,
    null: File,
}

/// A descriptor number that is not open.
const NOT_OPEN: RawFd = 999_999;

/// A create udmabuf must refuse.
struct Refusal {
    what: &'static str,
    errno: i32,
    /// The rule of udmabuf.c that refuses it.
    rule: &'static str,
    call: fn(&Udmabuf, &Files) -> Result<OwnedFd>,
}

fn fd(f: &File) -> RawFd {
    f.as_raw_fd()
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        what: "UDMABUF_CREATE at an unaligned offset (0x800, +4 KiB)",
        errno: EINVAL,
        rule: "offsets must be page aligned",
        call: |u, x| u.create(fd(&x.good), 0x800, PAGE),
    },
    Refusal {
        what: "UDMABUF_CREATE of an unaligned size (0, +4 KiB + 0x800)",
        errno: EINVAL,
        rule: "sizes must be page aligned",
        call: |u, x| u.create(fd(&x.good), 0, PAGE + 0x800),
    },
    Refusal {
        what: "UDMABUF_CREATE of size 0",
        errno: EINVAL,
        rule: "a buffer has at least one page",
        call: |u, x| u.create(fd(&x.good), 0, 0),
    },
    Refusal {
        what: "UDMABUF_CREATE_LIST whose second item has an unaligned offset",
        errno: EINVAL,
        rule: "every item's offset must be page aligned",
        call: |u, x| u.create_list(&[(fd(&x.good), 0, PAGE), (fd(&x.good), 0x200, PAGE)]),
    },
    Refusal {
        what: "UDMABUF_CREATE_LIST without items",
        errno: EINVAL,
        rule: "a buffer has at least one page",
        call: |u, _| u.create_list(&[]),
    },
    Refusal {
        what: "UDMABUF_CREATE of a memfd sealed F_SEAL_SHRINK | F_SEAL_WRITE",
        errno: EINVAL,
        rule: "F_SEAL_WRITE is denied",
        call: |u, x| u.create(fd(&x.write_sealed), 0, PAGE),
    },
    Refusal {
        what: "UDMABUF_CREATE of a memfd sealed F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE",
        errno: EINVAL,
        rule: "F_SEAL_FUTURE_WRITE is denied",
        call: |u, x| u.create(fd(&x.future_sealed), 0, PAGE),
    },
    Refusal {
        what: "UDMABUF_CREATE of a memfd without F_SEAL_SHRINK",
        errno: EINVAL,
        rule: "F_SEAL_SHRINK is wanted",
        call: |u, x| u.create(fd(&x.unsealed), 0, PAGE),
    },
    Refusal {
        what: "UDMABUF_CREATE of /dev/null (not a memfd)",
        errno: EBADFD,
        rule: "only shmem and hugetlbfs memfds",
        call: |u, x| u.create(fd(&x.null), 0, PAGE),
    },
    Refusal {
        what: "UDMABUF_CREATE of a descriptor number that is not open",
        errno: EBADFD,
        rule: "fget() finds no file",
        call: |u, _| u.create(NOT_OPEN, 0, PAGE),
    },
    Refusal {
        what: "UDMABUF_CREATE_LIST of a good memfd item, then a /dev/null item",
        errno: EBADFD,
        rule: "only memfds; the first item's pinned pages are let go",
        call: |u, x| u.create_list(&[(fd(&x.good), 0, PAGE), (fd(&x.null), 0, PAGE)]),
    },
];

fn refusal_desc(x: &Refusal) -> String {
    format!(
        "{} fails with {} and leaves no new descriptor open",
        x.what,
        name(x.errno)
    )
}

const REFUSAL_SETUP: &str = "refusals: 8 KiB memfds sealed F_SEAL_SHRINK, with F_SEAL_WRITE, \
                             with F_SEAL_FUTURE_WRITE, without seals; /dev/null";

fn refusals(r: &mut Runner<'_>, u: &Udmabuf) {
    let files = r.attempt(REFUSAL_SETUP, |f| {
        let shrink = libc::F_SEAL_SHRINK;
        let len = 2 * PAGE;
        let x = Files {
            good: sealed_memfd(c"udmabuf-good", 0, len, shrink)?,
            write_sealed: sealed_memfd(c"udmabuf-w", 0, len, shrink | libc::F_SEAL_WRITE)?,
            future_sealed: sealed_memfd(c"udmabuf-fw", 0, len, shrink | libc::F_SEAL_FUTURE_WRITE)?,
            unsealed: sealed_memfd(c"udmabuf-none", 0, len, 0)?,
            null: File::open("/dev/null").op("open /dev/null")?,
        };
        for (what, file) in [
            ("F_SEAL_SHRINK", &x.good),
            ("F_SEAL_SHRINK | F_SEAL_WRITE", &x.write_sealed),
            ("F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE", &x.future_sealed),
            ("no seal", &x.unsealed),
        ] {
            let seals = sys::seals(file.as_fd()).op("F_GET_SEALS")?;
            f.add(format!(
                "memfd fd {} ({what}): F_GET_SEALS {seals:#x}",
                fd(file)
            ));
        }
        f.add(format!("/dev/null: fd {}", fd(&x.null)));
        Ok(x)
    });
    let Some(files) = files else {
        for x in REFUSALS {
            r.check(&refusal_desc(x), |_| {
                Err(skipped("the files were not made"))
            });
        }
        return;
    };
    for x in REFUSALS {
        r.check(&refusal_desc(x), |f| {
            let before = open_fds()?;
            let e = expect_errno((x.call)(u, &files), x.errno)?;
            let after = open_fds()?;
            f.add(format!("kernel: {e} ({})", x.rule));
            if after != before {
                return Err(Error::msg(format!(
                    "{after} descriptors open after the refusal, {before} before"
                )));
            }
            bump(&u.counts.refused, 1);
            f.add(format!("{after} descriptors open, as before"));
            Ok(())
        });
    }
    r.check("refusals: close the memfds and /dev/null", |_| {
        let Files {
            good,
            write_sealed,
            future_sealed,
            unsealed,
            null,
        } = files;
        close_all([good, write_sealed, future_sealed, unsealed, null].map(OwnedFd::from))
    });
}

// ---------------------------------------------------------------------------
// C. Descriptions, D. huge pages

/// Why DESCRIBE cannot be compared with pagemap here, if it cannot.
fn describe_absent() -> Option<String> {
    if !Path::new(import_sample::DEVICE).exists() {
        return Some(format!(
            "no {}: dmabuf_import_sample is not loaded",
            import_sample::DEVICE
        ));
    }
    if sys::euid() != 0 {
        return Some("not root: pagemap hides PFNs and DESCRIBE needs CAP_SYS_ADMIN".to_string());
    }
    None
}

fn descriptions(r: &mut Runner<'_>, u: &Udmabuf) {
    let c = &DESCRIBE_CASES;
    if let Some(why) = describe_absent() {
        skip_all(r, c, &why);
        return;
    }
    r.check(c[0], |f| {
        let sample = import_sample::open()?;
        let mem = Memfd::with_pattern(c"udmabuf-small", SMALL_LEN, 3)?;
        let buf = u.create(mem.raw(), 0, SMALL_LEN)?;
        let res = described(u, &sample, &buf, &[(&mem, 0, SMALL_LEN)], f);
        close_all([buf])?;
        mem.close()?;
        res.map(|_| ())
    });
    r.check(c[1], |f| {
        let sample = import_sample::open()?;
        let mems = list_memfds(|n, i| Memfd::with_pattern(n, MEMFD_LEN, 10 + i as u32))?;
        let buf = u.create_list(&list_items(&mems))?;
        let res = described(u, &sample, &buf, &list_parts(&mems), f);
        close_all([buf])?;
        for m in mems {
            m.close()?;
        }
        res.map(|_| ())
    });
    r.check(c[2], |f| {
        let sample = import_sample::open()?;
        let mem = Memfd::with_pattern(c"udmabuf-large", LARGE_LEN, 4)?;
        let buf = u.create(mem.raw(), 0, LARGE_LEN)?;
        let res = described(u, &sample, &buf, &[(&mem, 0, LARGE_LEN)], f);
        close_all([buf])?;
        mem.close()?;
        res.map(|_| ())
    });
    r.check(c[3], |f| {
        let sample = import_sample::open()?;
        let mem = Memfd::with_pattern(c"udmabuf-ro", SMALL_LEN, 5)?;
        let file = mem.read_only()?;
        let ro = u.create(file.as_raw_fd(), 0, SMALL_LEN);
        sys::close(file.into()).op("close the O_RDONLY memfd")?;
        let ro = ro?;
        let rw = u.create(mem.raw(), 0, SMALL_LEN)?;
        let parts = [(&mem, 0, SMALL_LEN)];
        let res = check_mode(&ro, "dma-buf", O_RDONLY, f)
            .and_then(|()| described(u, &sample, &ro, &parts, f))
            .and_then(|a| Ok((a, described(u, &sample, &rw, &parts, f)?)));
        close_all([ro, rw])?;
        mem.close()?;
        let (a, b) = res?;
        if a.ranges != b.ranges || a.nr_ranges != b.nr_ranges {
            return Err(Error::msg(
                "the O_RDONLY and the O_RDWR udmabuf of one memfd are described differently",
            ));
        }
        f.add("the O_RDONLY and the O_RDWR udmabuf are described alike");
        Ok(())
    });
}

/// Free 2 MiB huge pages: `free_hugepages` less `resv_hugepages`.
fn free_huge_pages(free: &str, resv: &str) -> Option<u64> {
    let free: u64 = free.trim().parse().ok()?;
    let resv: u64 = resv.trim().parse().ok()?;
    Some(free.saturating_sub(resv))
}

/// Why the huge page part cannot run, if it cannot.
fn huge_absent() -> Option<String> {
    if let Some(why) = describe_absent() {
        return Some(why);
    }
    let read = |n: &str| std::fs::read_to_string(Path::new(HUGEPAGES_DIR).join(n)).ok();
    let free = match (read("free_hugepages"), read("resv_hugepages")) {
        (Some(f), Some(r)) => free_huge_pages(&f, &r),
        _ => None,
    };
    match free {
        None => Some(format!("no 2 MiB huge pages: {HUGEPAGES_DIR} unreadable")),
        Some(n) if n < HUGE_PAGES => Some(format!(
            "{n} free 2 MiB huge page(s) ({HUGEPAGES_DIR}), {HUGE_PAGES} needed; \
             nr_hugepages is left as it is"
        )),
        Some(_) => None,
    }
}

fn huge_pages(r: &mut Runner<'_>, u: &Udmabuf) {
    let c = &HUGE_CASES;
    if let Some(why) = huge_absent() {
        skip_all(r, c, &why);
        return;
    }
    let made = r.attempt(c[0], |f| {
        let mem = Memfd::new(
            c"udmabuf-huge",
            libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
            HUGE_LEN,
        )?;
        f.add(mem.note("MFD_HUGETLB | MFD_HUGE_2MB"));
        let buf = u.create(mem.raw(), 0, HUGE_LEN)?;
        dmabuf::check_exporter(&buf, EXPORTER, HUGE_LEN, f)?;
        Ok((mem, buf))
    });
    r.check(c[1], |f| {
        let (mem, buf) = made
            .as_ref()
            .ok_or_else(|| skipped("no hugetlbfs udmabuf"))?;
        let sample = import_sample::open()?;
        let desc = described(u, &sample, buf, &[(mem, 0, HUGE_LEN)], f)?;
        check_huge(&desc, f)
    });
    if let Some((mem, buf)) = made {
        r.check("close the hugetlbfs udmabuf and its memfd", |_| {
            close_all([buf])?;
            mem.close()
        });
    }
}

// ---------------------------------------------------------------------------
// E. DMA through iommufd

/// Why edu cannot DMA here, if it cannot.
fn edu_absent() -> Option<String> {
    fuzz::vfio_device_absent(EDU)
}

/// edu on vfio-pci, bound to a new iommufd and attached to an IOAS of its
/// own, BAR0 mapped, bus mastering on, a staging page at `STAGING_IOVA`.
fn open_edu(f: &mut Facts) -> Result<Lab> {
    let sysfs = Sysfs::default();
    let bdf = sysfs.find_one(EDU)?;
    sysfs.bind_vfio(&bdf)?;
    let cdev = sysfs.vfio_cdev(&bdf)?;
    let iommufd = Iommufd::open(&sysfs.iommu_dev()?)?;
    let edu_dev = VfioDevice::open(&cdev)?;
    edu_dev.bind_iommufd(&iommufd)?;
    let ioas = iommufd.ioas_alloc()?;
    edu_dev.attach_ioas(ioas)?;
    let edu = Edu::new(edu_dev.mmap_region(0)?)?;
    let (_, cmd) = edu_dev.set_command_bits(PCI_COMMAND_MASTER)?;
    if cmd & PCI_COMMAND_MASTER == 0 {
        return Err(Error::msg("edu: PCI_COMMAND.MASTER did not stick"));
    }
    let staging = Mapping::anonymous(PAGE as usize).op("mmap a page")?;
    iommufd.map_user(ioas, &staging, STAGING_IOVA)?;
    f.add(format!(
        "edu {bdf} ({}), id {:#010x}, in IOAS {ioas}; staging page at IOVA {STAGING_IOVA:#x}",
        cdev.display(),
        edu.id()
    ));
    Ok(Lab {
        iommufd,
        edu_dev,
        ioas,
        edu,
        staging,
    })
}

/// What the DMA part makes: the memfds, the list udmabuf, the O_RDONLY
/// udmabuf of memfd 0.
struct DmaBufs {
    mems: [Memfd; 2],
    list: OwnedFd,
    ro: OwnedFd,
}

fn dma(r: &mut Runner<'_>, u: &Udmabuf) {
    let c = &DMA_CASES;
    if let Some(why) = edu_absent() {
        skip_all(r, c, &why);
        return;
    }
    let Some(lab) = r.attempt(c[0], open_edu) else {
        blocked(r, &c[1..], "the edu setup failed");
        return;
    };
    let bufs = r.attempt(c[1], |f| {
        let mems = list_memfds(|n, i| Memfd::with_guard(n, MEMFD_LEN, GUARDS[i]))?;
        for (i, m) in mems.iter().enumerate() {
            f.add(m.note(&format!("memfd {i}, all {:#04x}", GUARDS[i])));
        }
        let list = u.create_list(&list_items(&mems))?;
        check_mode(&list, "list dma-buf", O_RDWR, f)?;
        dmabuf::check_exporter(&list, EXPORTER, LIST_LEN, f)?;
        let file = mems[0].read_only()?;
        let ro = u.create(file.as_raw_fd(), 0, MEMFD_LEN);
        sys::close(file.into()).op("close the O_RDONLY memfd")?;
        let ro = ro?;
        check_mode(&ro, "memfd 0's O_RDONLY dma-buf", O_RDONLY, f)?;
        Ok(DmaBufs { mems, list, ro })
    });
    let mapped = r.check(c[2], |f| {
        let b = bufs.as_ref().ok_or_else(|| skipped("no udmabuf"))?;
        let at = lab
            .iommufd
            .map_file(lab.ioas, b.list.as_fd(), 0, LIST_LEN, LIST_IOVA)?;
        for (i, &(m, off, len)) in LIST.iter().enumerate() {
            f.add(format!(
                "IOVA {} -> item {i}: memfd {m} {}",
                span(at + item_start(i), len),
                span(off, len)
            ));
        }
        Ok(())
    });
    let ready = |b: &Option<DmaBufs>| -> Result<()> {
        if b.is_none() || !mapped {
            return Err(skipped("the udmabuf is not mapped"));
        }
        Ok(())
    };
    r.check(c[3], |f| {
        ready(&bufs)?;
        let b = bufs.as_ref().expect("checked");
        let mut want: Vec<Vec<u8>> = GUARDS
            .iter()
            .map(|&g| vec![g; usize_of(MEMFD_LEN)])
            .collect();
        for i in 0..LIST.len() {
            let (m, at, iova) = dma_target(i);
            let data = pattern(WRITE_SEED + i as u8, usize_of(DMA_LEN));
            lab.dma_to(&data, iova, f)?;
            bump(&u.counts.transfers, 2);
            want[m][usize_of(at)..usize_of(at + DMA_LEN)].copy_from_slice(&data);
            for (k, mem) in b.mems.iter().enumerate() {
                compare(
                    &format!("memfd {k} after the write to item {i}"),
                    &mem.bytes(0, MEMFD_LEN),
                    &want[k],
                )?;
            }
            f.add(format!(
                "item {i}: IOVA {} -> memfd {m} {}: {}",
                span(iova, DMA_LEN),
                span(at, DMA_LEN),
                hex_preview(&data, 8)
            ));
        }
        f.add("every other byte of both memfds holds its guard");
        Ok(())
    });
    r.check(c[4], |f| {
        ready(&bufs)?;
        let b = bufs.as_ref().expect("checked");
        for i in 0..LIST.len() {
            let (m, at, iova) = dma_target(i);
            let data = pattern(READ_SEED + i as u8, usize_of(DMA_LEN));
            b.mems[m].map.write_bytes(usize_of(at), &data);
            let got = lab.dma_from(iova, usize_of(DMA_LEN), f)?;
            bump(&u.counts.transfers, 2);
            compare(&format!("what edu read of item {i}"), &got, &data)?;
            f.add(format!(
                "item {i}: memfd {m} {} read at IOVA {iova:#x}: {}",
                span(at, DMA_LEN),
                hex_preview(&got, 8)
            ));
        }
        Ok(())
    });
    r.check(c[5], |f| {
        let b = bufs
            .as_ref()
            .ok_or_else(|| skipped("no O_RDONLY udmabuf"))?;
        let res = lab
            .iommufd
            .map_file(lab.ioas, b.ro.as_fd(), 0, MEMFD_LEN, SPARE_IOVA);
        if let Ok(at) = &res {
            let _ = lab.iommufd.unmap(lab.ioas, *at, MEMFD_LEN);
        }
        let e = expect_errno(res, EACCES)?;
        f.add(format!("kernel: {e}"));
        Ok(())
    });
    r.check(c[6], |f| {
        let b = bufs
            .as_ref()
            .ok_or_else(|| skipped("no O_RDONLY udmabuf"))?;
        let at = lab.iommufd.map_file_access(
            lab.ioas,
            b.ro.as_fd(),
            0,
            MEMFD_LEN,
            RO_IOVA,
            Access::ReadOnly,
        )?;
        f.add(format!(
            "IOVA {} -> memfd 0, device read-only",
            span(at, MEMFD_LEN)
        ));
        let off = LIST[0].1 + IN_ITEM;
        let read = lab.dma_from(RO_IOVA + off, usize_of(DMA_LEN), f);
        let n = lab.iommufd.unmap(lab.ioas, RO_IOVA, MEMFD_LEN)?;
        let got = read?;
        bump(&u.counts.transfers, 2);
        compare(
            "what edu read through the read-only mapping",
            &got,
            &b.mems[0].bytes(off, DMA_LEN),
        )?;
        f.add(format!(
            "memfd 0 {} read at IOVA {:#x}: {}; {} unmapped",
            span(off, DMA_LEN),
            RO_IOVA + off,
            hex_preview(&got, 8),
            size(n)
        ));
        if n != MEMFD_LEN {
            return Err(Error::msg(format!("expected {}", size(MEMFD_LEN))));
        }
        Ok(())
    });
    r.check(c[7], |f| {
        let b = bufs.ok_or_else(|| skipped("no udmabuf"))?;
        let unmapped = if mapped {
            lab.iommufd.unmap(lab.ioas, LIST_IOVA, LIST_LEN).map(Some)
        } else {
            Ok(None)
        };
        close_all([b.list, b.ro])?;
        for m in b.mems {
            m.close()?;
        }
        if let Some(n) = unmapped? {
            f.add(format!("{} unmapped", size(n)));
            if n != LIST_LEN {
                return Err(Error::msg(format!("expected {}", size(LIST_LEN))));
            }
        }
        Ok(())
    });
    r.check(c[8], |f| {
        let Lab {
            iommufd,
            edu_dev,
            ioas,
            edu,
            staging,
        } = lab;
        let n = iommufd.unmap(ioas, 0, u64::MAX)?;
        f.add(format!("{} unmapped (the staging page)", size(n)));
        drop((edu, staging));
        edu_dev.close()?;
        iommufd.destroy(ioas)?;
        iommufd.close()
    });
}

// ---------------------------------------------------------------------------
// F. KVM

/// KVM's attachments to dma-bufs, if bufinfo is readable.
fn kvm_attachments() -> Option<usize> {
    kvm::bufinfo().map(|b| b.kvm_attachments)
}

/// `now` KVM attachments must be `want` (when bufinfo is readable).
fn check_attachments(now: Option<usize>, want: Option<usize>, f: &mut Facts) -> Result<()> {
    match (now, want) {
        (Some(n), Some(w)) if n != w => Err(Error::msg(format!(
            "{n} KVM attachment(s) in {}, expected {w}",
            kvm::BUFINFO
        ))),
        (Some(n), Some(_)) => {
            f.add(format!("{n} KVM attachment(s) in {}", kvm::BUFINFO));
            Ok(())
        }
        _ => {
            f.add(format!(
                "{} unreadable: attachments not counted",
                kvm::BUFINFO
            ));
            Ok(())
        }
    }
}

/// A `KVM_MEM_DMABUF | extra` slot of a fresh udmabuf (of an O_RDONLY memfd
/// descriptor if `read_only`): created and deleted, or refused with `errno`.
fn slot(
    r: &mut Runner<'_>,
    u: &Udmabuf,
    vm: &VmFd,
    desc: &str,
    read_only: bool,
    extra: u32,
    errno: Option<i32>,
) {
    r.check(desc, |f| {
        let mem = Memfd::with_pattern(c"udmabuf-kvm", SMALL_LEN, 6)?;
        let file = if read_only {
            Some(mem.read_only()?)
        } else {
            None
        };
        let buf = u.create(
            file.as_ref().map_or(mem.raw(), |x| x.as_raw_fd()),
            0,
            SMALL_LEN,
        );
        if let Some(x) = file {
            sys::close(x.into()).op("close the O_RDONLY memfd")?;
        }
        let buf = buf?;
        let want = if read_only { O_RDONLY } else { O_RDWR };
        check_mode(&buf, "dma-buf", want, f)?;
        let before = kvm_attachments();
        let region = MemoryRegion2 {
            flags: KVM_MEM_DMABUF | extra,
            ..MemoryRegion2::dmabuf(SLOT, GPA, SMALL_LEN, buf.as_raw_fd(), 0)
        };
        let made = kvm::set_region(vm, region);
        let res = match errno {
            Some(e) => {
                // A slot made against the rule goes again, so that the next
                // case finds slot 1 free.
                if made.is_ok() {
                    let _ = kvm::set_region(vm, MemoryRegion2::delete(SLOT));
                }
                expect_errno(made, e).map(|e| f.add(format!("kernel: {e}")))
            }
            None => made.and_then(|()| {
                f.add(format!(
                    "slot {SLOT} (flags {:#x}): GPA {} = the udmabuf",
                    region.flags,
                    span(GPA, SMALL_LEN)
                ));
                let counted = check_attachments(kvm_attachments(), before.map(|b| b + 1), f);
                let deleted = kvm::set_region(vm, MemoryRegion2::delete(SLOT));
                counted.and(deleted)
            }),
        };
        let left = res.and_then(|()| check_attachments(kvm_attachments(), before, f));
        close_all([buf])?;
        mem.close()?;
        left
    });
}

fn kvm_slots(r: &mut Runner<'_>, u: &Udmabuf) {
    let c = &KVM_CASES;
    if !Path::new("/dev/kvm").exists() {
        skip_all(r, c, "no /dev/kvm");
        return;
    }
    let vm = match failnth::open_vm() {
        Ok(Some(vm)) => vm,
        Ok(None) => {
            skip_all(
                r,
                c,
                "KVM_CAP_DMABUF_MEMSLOT is not reported: no KVM_MEM_DMABUF here",
            );
            return;
        }
        Err(e) => {
            blocked(r, c, &format!("no VM: {e}"));
            return;
        }
    };
    slot(r, u, &vm, c[0], false, 0, None);
    slot(r, u, &vm, c[1], true, 0, Some(EACCES));
    slot(r, u, &vm, c[2], true, KVM_MEM_READONLY, None);
}

// ---------------------------------------------------------------------------
// The run

pub fn run(r: &mut Runner<'_>) -> bool {
    test(r);
    r.finish()
}

fn test(r: &mut Runner<'_>) {
    let parts: [&[&str]; 5] = [
        &ACCESS_CASES,
        &DESCRIBE_CASES,
        &HUGE_CASES,
        &DMA_CASES,
        &KVM_CASES,
    ];
    if !Path::new(DEVICE).exists() {
        let why = format!("no {DEVICE}: the kernel lacks CONFIG_UDMABUF");
        for cases in parts {
            skip_all(r, cases, &why);
        }
        r.skip(REFUSAL_SETUP, &why);
        for x in REFUSALS {
            r.skip(&refusal_desc(x), &why);
        }
        return;
    }
    let fds_at_start = open_fds().ok();
    let Ok(u) = r.require(&format!("open {DEVICE}"), |_| Udmabuf::open()) else {
        return;
    };

    r.section("The dma-buf's access mode follows its memfds'");
    access(r, &u);
    r.section("Refusals, each with its errno, leaving nothing open");
    refusals(r, &u);
    r.section("The description (DMABUF_IMPORT_SAMPLE_DESCRIBE) is pagemap's runs");
    descriptions(r, &u);
    r.section("A hugetlbfs memfd: whole 2 MiB ranges");
    huge_pages(r, &u);
    r.section("edu DMA through IOMMU_IOAS_MAP_FILE of a udmabuf");
    dma(r, &u);
    r.section("KVM_MEM_DMABUF slots of udmabufs");
    kvm_slots(r, &u);

    r.section("Cleanup");
    let Udmabuf { dev, counts } = u;
    r.check(CLEANUP_CASES[0], |_| {
        sys::close(dev.into()).op(format!("close {DEVICE}"))
    });
    r.check(CLEANUP_CASES[1], |f| no_fd_left(fds_at_start, f));
    r.comment(&format!(
        "udmabuf: {} dma-bufs created, {} refusals as documented, {} ranges compared with \
         pagemap, {} edu transfers",
        counts.created.get(),
        counts.refused.get(),
        counts.ranges.get(),
        counts.transfers.get()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(paddr: u64, len: u64) -> ImportSampleRange {
        ImportSampleRange { paddr, len }
    }

    #[test]
    fn pagemap_entries() {
        assert_eq!(pfn_of(PM_PRESENT | 0x1234), Some(0x1234));
        // Soft-dirty (55), exclusive (56), file-mapped (61) are not the PFN.
        assert_eq!(
            pfn_of(PM_PRESENT | 1 << 55 | 1 << 56 | 1 << 61 | 0xabc),
            Some(0xabc)
        );
        assert_eq!(pfn_of(0x1234), None);
        let raw: Vec<u8> = [PM_PRESENT | 7, PM_PRESENT | 8]
            .iter()
            .flat_map(|e| e.to_ne_bytes())
            .collect();
        assert_eq!(parse_frames(0x10000, &raw).unwrap(), [7, 8]);
        let absent: Vec<u8> = [PM_PRESENT | 7, 0]
            .iter()
            .flat_map(|e| e.to_ne_bytes())
            .collect();
        let e = parse_frames(0x10000, &absent).unwrap_err();
        assert!(e.to_string().contains("page 0x11000 is not present"), "{e}");
        let hidden = PM_PRESENT.to_ne_bytes();
        let e = parse_frames(0x10000, &hidden).unwrap_err();
        assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn runs_of_frames() {
        assert_eq!(
            runs(&[10, 11, 12, 20, 21, 5]),
            [
                range(10 * PAGE, 3 * PAGE),
                range(20 * PAGE, 2 * PAGE),
                range(5 * PAGE, PAGE)
            ]
        );
        // A frame that repeats or goes down starts a new run.
        assert_eq!(
            runs(&[3, 3, 2]),
            [
                range(3 * PAGE, PAGE),
                range(3 * PAGE, PAGE),
                range(2 * PAGE, PAGE)
            ]
        );
        assert!(runs(&[]).is_empty());
    }

    fn desc(nr: u32, len: u64, ranges: &[ImportSampleRange]) -> ImportSampleDescribe {
        let mut d = ImportSampleDescribe {
            model: MODEL_PINNED,
            nr_chunks: 1,
            nr_ranges: nr,
            size: len,
            ..Default::default()
        };
        d.ranges[..ranges.len()].copy_from_slice(ranges);
        d
    }

    #[test]
    fn descriptions_are_checked() {
        let mut f = Facts::default();
        let want = [range(0x10000, 0x2000), range(0x40000, 0x1000)];
        let d = desc(2, 0x3000, &want);
        assert_eq!(check_description(&d, 0x3000, &want, &mut f).unwrap(), 2);

        let bad = [
            ImportSampleDescribe { model: 3, ..d },
            ImportSampleDescribe { nr_chunks: 2, ..d },
            ImportSampleDescribe { size: 0x4000, ..d },
            ImportSampleDescribe { nr_ranges: 3, ..d },
            desc(2, 0x3000, &[want[0], range(0x50000, 0x1000)]),
        ];
        let msgs = [
            "model 3",
            "one chunk",
            "16 KiB described",
            "3 range(s)",
            "range 1 is",
        ];
        for (d, m) in bad.iter().zip(msgs) {
            let e = check_description(d, 0x3000, &want, &mut f).unwrap_err();
            assert!(e.to_string().contains(m), "{e}");
        }

        // More ranges than the sample copies out: the count and the first 4.
        let many: Vec<_> = (0..6).map(|i| range(0x10_0000 * (i + 1), PAGE)).collect();
        let d = desc(6, 6 * PAGE, &many[..4]);
        assert_eq!(check_description(&d, 6 * PAGE, &many, &mut f).unwrap(), 4);
        let mut other = many.clone();
        other[5] = range(0x99_0000, PAGE);
        assert!(check_description(&d, 6 * PAGE, &other, &mut f).is_ok());
        other[3] = range(0x99_0000, PAGE);
        assert!(check_description(&d, 6 * PAGE, &other, &mut f).is_err());
    }

    #[test]
    fn huge_descriptions() {
        let mut f = Facts::default();
        let one = desc(1, HUGE_LEN, &[range(0x4000_0000, HUGE_LEN)]);
        assert!(check_huge(&one, &mut f).is_ok());
        let four: Vec<_> = (0..4)
            .map(|i| range(0x4000_0000 + i * 0x80_0000, HUGE_PAGE))
            .collect();
        assert!(check_huge(&desc(4, HUGE_LEN, &four), &mut f).is_ok());
        let mut odd = four.clone();
        odd[2] = range(0x4010_0000, HUGE_PAGE);
        let e = check_huge(&desc(4, HUGE_LEN, &odd), &mut f).unwrap_err();
        assert!(e.to_string().contains("range 2"), "{e}");
        let short = [range(0x4000_0000, HUGE_PAGE)];
        assert!(check_huge(&desc(1, HUGE_LEN, &short), &mut f).is_err());
        assert!(check_huge(&desc(5, HUGE_LEN, &four), &mut f).is_err());
        assert!(check_huge(&desc(0, HUGE_LEN, &[]), &mut f).is_err());
    }

    #[test]
    fn list_layout() {
        assert_eq!(item_start(0), 0);
        assert_eq!(item_start(1), 8 * KIB);
        assert_eq!(item_start(2), 20 * KIB);
        assert_eq!(item_start(3), LIST_LEN);
        assert_eq!(dma_target(0), (0, 4 * KIB + 0xf00, LIST_IOVA + 0xf00));
        assert_eq!(
            dma_target(1),
            (1, 8 * KIB + 0xf00, LIST_IOVA + 8 * KIB + 0xf00)
        );
        assert_eq!(
            dma_target(2),
            (0, 20 * KIB + 0xf00, LIST_IOVA + 20 * KIB + 0xf00)
        );
        // The items of memfd 0 do not overlap: each DMA lands once.
        let (a, b) = (LIST[0], LIST[2]);
        assert!(a.1 + a.2 <= b.1);
        // The patterns of the writes and reads all differ.
        let p: Vec<_> = (0..3)
            .flat_map(|i| [WRITE_SEED + i, READ_SEED + i])
            .map(|s| pattern(s, DMA_LEN as usize))
            .collect();
        for (i, x) in p.iter().enumerate() {
            for y in &p[i + 1..] {
                assert!(x.iter().zip(y).all(|(a, b)| a != b));
            }
        }
    }

    #[test]
    fn case_names_match_the_constants() {
        assert!(DMA_CASES[0].contains(&format!("{STAGING_IOVA:#x}")));
        assert!(DMA_CASES[2].contains(&format!("{LIST_IOVA:#x}")));
        assert!(DMA_CASES[2].contains(&size(LIST_LEN)));
        assert!(DMA_CASES[3].contains(&format!("{IN_ITEM:#x}")));
        assert!(DMA_CASES[6].contains(&format!("{RO_IOVA:#x}")));
        assert!(DMA_CASES[7].contains(&format!("{LIST_IOVA:#x}")));
        assert!(ACCESS_CASES[0].contains(&size(SMALL_LEN)));
        assert!(DESCRIBE_CASES[0].contains(&size(SMALL_LEN)));
        assert!(DESCRIBE_CASES[1].contains(&size(LIST_LEN)));
        assert!(DESCRIBE_CASES[2].contains(&format!("{}-page", LARGE_LEN / PAGE)));
        assert!(HUGE_CASES[0].contains(&size(HUGE_LEN)));
        assert!(KVM_CASES[0].contains(&format!("slot {SLOT}")));
        assert!(KVM_CASES[0].contains(&size(GPA)));
        for (i, &(m, off, len)) in LIST.iter().enumerate() {
            let item = format!("memfd {m} at {} +{}", size(off), size(len));
            assert!(DESCRIBE_CASES[1].contains(&item), "item {i}: {item}");
        }
    }

    #[test]
    fn huge_page_counts() {
        assert_eq!(free_huge_pages("64\n", "0\n"), Some(64));
        assert_eq!(free_huge_pages("4", "2"), Some(2));
        assert_eq!(free_huge_pages("1", "2"), Some(0));
        assert_eq!(free_huge_pages("x", "0"), None);
    }

    #[test]
    fn refusals_are_described() {
        assert_eq!(
            refusal_desc(&REFUSALS[0]),
            "UDMABUF_CREATE at an unaligned offset (0x800, +4 KiB) fails with EINVAL and \
             leaves no new descriptor open"
        );
        let ebadfd = REFUSALS.iter().filter(|x| x.errno == EBADFD).count();
        assert_eq!(ebadfd, 3);
    }

    #[test]
    fn memfds_and_their_access() {
        let m = Memfd::with_pattern(c"dmabuf-tool-test", SMALL_LEN, 1).unwrap();
        assert_eq!(m.len(), SMALL_LEN);
        assert_eq!(m.bytes(0, 8), pattern_of(0, 8, 1));
        let seals = sys::seals(m.file.as_fd()).unwrap();
        assert_eq!(seals & libc::F_SEAL_SHRINK, libc::F_SEAL_SHRINK);
        let mut f = Facts::default();
        check_mode(&m.file, "memfd", O_RDWR, &mut f).unwrap();
        let ro = m.read_only().unwrap();
        check_mode(&ro, "memfd", O_RDONLY, &mut f).unwrap();
        let e = check_mode(&ro, "memfd", O_RDWR, &mut f).unwrap_err();
        assert_eq!(e.to_string(), "memfd: expected O_RDWR");
        // The reopened descriptor reads the same bytes through a read-only
        // shared mapping.
        let mut got = vec![0; 16];
        sys::read_shared_mapping(ro.as_fd(), PAGE, &mut got).unwrap();
        assert_eq!(got, pattern_of(PAGE, 16, 1));
        let g = Memfd::with_guard(c"dmabuf-tool-test", MEMFD_LEN, GUARDS[1]).unwrap();
        assert!(g.bytes(0, MEMFD_LEN).iter().all(|&b| b == GUARDS[1]));
        g.close().unwrap();
        m.close().unwrap();
    }
}
