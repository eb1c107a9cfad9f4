//! The end-to-end story, written once: `smoke` reports it as TAP, `demo`
//! narrates it. ivshmem's BAR2 is exported as a VFIO dma-buf, mapped with
//! iommufd into the IOAS edu is attached to, and edu DMAs into it; then the
//! mapping is revoked and restored, the kernel's answers to bad input are
//! checked, and MAP_FILE must respect the file's write access
//! (`story/write_access.rs`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::args::{hex_preview, size, span};
use crate::edu::{Edu, EDU_BUFFER};
use crate::errno::{expect_errno, name, Context, Error, Result};
use crate::inspect::{self, Model};
use crate::iommufd::Iommufd;
use crate::kmsg;
use crate::mmap::Mapping;
use crate::pci::{Bound, Sysfs, EDU, IVSHMEM, PCI_TESTDEV};
use crate::report::{Aborted, Facts, Runner};
use crate::sys;
use crate::vfio::{VfioDevice, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY};

pub(crate) mod write_access;

/// Whether IOMMU_IOAS_MAP_FILE accepts a dma-buf of more than one range.
/// Stock Linux 7.3 refuses with EOPNOTSUPP (vfio_pci_dma_buf_iommufd_map()
/// took one range only); with the patch series iommufd imports any dma-buf
/// through dma_buf_get_memory(), and the smoke test DMAs into the second and
/// third chunks. Set it to false to check a stock kernel.
pub const MULTI_RANGE_MAP_SUPPORTED: bool = true;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// ivshmem-plain's shared RAM.
const BAR2: u32 = 2;
const BAR2_SIZE: u64 = 2 * MIB;

/// IOVAs (all below edu's 28-bit DMA limit).
const STAGING_IOVA: u64 = 0x10_0000; // one page of our memory, edu's DMA source
const DMABUF_IOVA: u64 = 0x20_0000; // the single-range dma-buf
const MULTI_IOVA: u64 = 0x40_0000; // the three-range dma-buf
const SPARE_IOVA: u64 = 0x60_0000; // MAP_FILE attempts meant to fail
const MEMFD_IOVA: u64 = 0x80_0000; // the memfd control
const NEVER_MAPPED_IOVA: u64 = 0xa0_0000;
const OVERLAP_IOVA: u64 = 0xc0_0000; // the dma-buf of two overlapping ranges
/// The 65536-range dma-buf (256 MiB): above edu's DMA limit, never DMAed to.
const MANY_IOVA: u64 = 0x1000_0000;

/// The single-range export: BAR2 [0, 64 KiB).
const EXPORT_LEN: u64 = 64 * KIB;
/// The three-range export.
const MULTI_RANGES: [(u64, u64); 3] = [(0, 4 * KIB), (64 * KIB, 4 * KIB), (MIB, 4 * KIB)];

/// Two overlapping ranges in one export: [0, 8 KiB) and [4 KiB, 12 KiB).
/// VFIO does not look for overlap, so this is a 16 KiB dma-buf whose pages
/// 1 and 2 are both BAR2 page 1.
const OVERLAP_RANGES: [(u64, u64); 2] = [(0, 8 * KIB), (4 * KIB, 8 * KIB)];
const OVERLAP_LEN: u64 = 16 * KIB;
/// Where edu writes through the overlapping dma-buf: 0x100 into BAR2 page 1.
const OVERLAP_BAR_OFF: u64 = 4 * KIB + 0x100;

/// `DMA_BUF_MEMORY_MAX_RANGES` (include/linux/dma-buf-memory.h): the most
/// ranges vfio's get_memory describes; more gives E2BIG.
pub const DMA_BUF_MEMORY_MAX_RANGES: usize = 65536;

/// Where in the BAR (and so in the dma-buf) edu writes, and how much.
const TARGET_OFF: u64 = 0x3000;
pub(crate) const PATTERN_LEN: u64 = 0x200;
/// Bytes checked on each side of a write to prove nothing else changed.
pub(crate) const GUARD: u64 = 0x1000;
const BACKGROUND: u8 = 0x5a;

// The target and its guards sit inside the single-range export, and one
// pattern fits one edu DMA.
const _: () = assert!(TARGET_OFF >= GUARD && TARGET_OFF + PATTERN_LEN + GUARD <= EXPORT_LEN);
const _: () = assert!(PATTERN_LEN <= crate::edu::MAX_DMA);
// The aliased target and its guards sit inside the overlapping export's
// BAR span [0, 12 KiB).
const _: () =
    assert!(OVERLAP_BAR_OFF >= GUARD && OVERLAP_BAR_OFF + PATTERN_LEN + GUARD <= 12 * KIB);

/// Bytes for DMA number `seed`: at every index the patterns of two seeds
/// (1..=255 apart) differ, so a stale pattern is never mistaken for a new one.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(7)
                .wrapping_add(seed.wrapping_mul(0x41))
        })
        .collect()
}

/// The first index at which `got` differs from `want`.
pub fn first_mismatch(got: &[u8], want: &[u8]) -> Option<usize> {
    got.iter().zip(want).position(|(a, b)| a != b)
}

pub(crate) fn usize_of(v: u64) -> usize {
    usize::try_from(v).expect("offset fits in usize")
}

/// Fill the target area and its guards in the BAR with `BACKGROUND`.
pub(crate) fn prepare_target(bar: &Mapping, off: u64) {
    bar.fill(
        usize_of(off - GUARD),
        usize_of(PATTERN_LEN + 2 * GUARD),
        BACKGROUND,
    );
}

/// Check that `want` is at `off` in the BAR and the guards around it still
/// hold `BACKGROUND`.
pub(crate) fn verify_target(bar: &Mapping, off: u64, want: &[u8], facts: &mut Facts) -> Result<()> {
    let len = want.len() as u64;
    let got = bar.to_vec(usize_of(off), want.len());
    facts.add(format!(
        "BAR2 {} reads {}",
        span(off, len),
        hex_preview(&got, 12)
    ));
    if let Some(i) = first_mismatch(&got, want) {
        return Err(Error::msg(format!(
            "byte {:#x} of the BAR is {:#04x}, expected {:#04x} ({} of {} bytes differ)",
            off + i as u64,
            got[i],
            want[i],
            got.iter().zip(want).filter(|(a, b)| a != b).count(),
            want.len()
        )));
    }
    for (start, glen) in [(off - GUARD, GUARD), (off + len, GUARD)] {
        let g = bar.to_vec(usize_of(start), usize_of(glen));
        if let Some(i) = g.iter().position(|&b| b != BACKGROUND) {
            return Err(Error::msg(format!(
                "byte {:#x} next to the target changed: {:#04x}, expected {BACKGROUND:#04x}",
                start + i as u64,
                g[i]
            )));
        }
    }
    facts.add(format!(
        "all {} bytes match; {} and {} still hold {BACKGROUND:#04x}",
        want.len(),
        span(off - GUARD, GUARD),
        span(off + len, GUARD)
    ));
    Ok(())
}

/// Everything the story holds open.
struct Lab {
    iommufd: Iommufd,
    ivshmem: VfioDevice,
    edu_dev: VfioDevice,
    ioas: u32,
    bar2: Mapping,
    edu: Edu,
    staging: Mapping,
}

impl Lab {
    /// Put `data` in edu's buffer: write it to the staging page, DMA it in.
    fn stage(&self, data: &[u8]) -> Result<()> {
        self.staging.write_bytes(0, data);
        self.edu
            .to_device(STAGING_IOVA, EDU_BUFFER, data.len() as u64)?;
        Ok(())
    }

    /// Stage `data`, then DMA it from edu's buffer to `iova`.
    fn dma_to(&self, data: &[u8], iova: u64, facts: &mut Facts) -> Result<()> {
        self.stage(data)?;
        let t = self.edu.to_ram(EDU_BUFFER, iova, data.len() as u64)?;
        facts.add(format!(
            "edu moved {} bytes: IOVA {STAGING_IOVA:#x} -> edu buffer {EDU_BUFFER:#x} -> IOVA {iova:#x} ({} ms)",
            data.len(),
            t.as_millis()
        ));
        facts.add(format!("data {}", hex_preview(data, 12)));
        Ok(())
    }

    /// DMA `len` bytes from `iova` into edu's buffer, then out to the staging
    /// page (filled with `!BACKGROUND` first, so a DMA that moves nothing is
    /// seen), and return what arrived there.
    fn dma_from(&self, iova: u64, len: usize, facts: &mut Facts) -> Result<Vec<u8>> {
        self.staging.fill(0, len, !BACKGROUND);
        let t1 = self.edu.to_device(iova, EDU_BUFFER, len as u64)?;
        let t2 = self.edu.to_ram(EDU_BUFFER, STAGING_IOVA, len as u64)?;
        facts.add(format!(
            "edu moved {len} bytes: IOVA {iova:#x} -> edu buffer {EDU_BUFFER:#x} -> IOVA {STAGING_IOVA:#x} ({} ms)",
            (t1 + t2).as_millis()
        ));
        Ok(self.staging.to_vec(0, len))
    }

    /// `dma_from` `want.len()` bytes at `iova`: they must be `want`.
    fn expect_read(&self, iova: u64, want: &[u8], facts: &mut Facts) -> Result<()> {
        let got = self.dma_from(iova, want.len(), facts)?;
        facts.add(format!("read {}", hex_preview(&got, 12)));
        match first_mismatch(&got, want) {
            None => Ok(()),
            Some(j) => Err(Error::msg(format!(
                "byte {j:#x} read {:#04x}, the memory holds {:#04x}",
                got[j], want[j]
            ))),
        }
    }
}

/// Number of open descriptors of this process.
pub fn open_fds() -> Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")
        .op("read /proc/self/fd")?
        .count())
}

/// Fails unless as many descriptors are open as were at the start
/// (`at_start`, `None` if they could not be counted then).
pub fn no_fd_left(at_start: Option<usize>, f: &mut Facts) -> Result<()> {
    let (Some(start), Ok(now)) = (at_start, open_fds()) else {
        return Err(Error::msg("cannot count /proc/self/fd"));
    };
    f.add(format!("{now} descriptors open now, {start} at the start"));
    if now != start {
        return Err(Error::msg(format!(
            "{} descriptors leaked",
            now as i64 - start as i64
        )));
    }
    Ok(())
}

/// The two devices the story uses, bound to vfio-pci.
pub struct Devices {
    pub edu: (String, PathBuf),
    pub ivshmem: (String, PathBuf),
}

/// Bind edu, ivshmem and (if present) pci-testdev to vfio-pci and find their
/// VFIO cdevs; what happened goes to `facts`.
pub fn bind_all(sysfs: &Sysfs, facts: &mut Facts) -> Result<Devices> {
    let mut edu = None;
    let mut ivshmem = None;
    for id in [EDU, IVSHMEM, PCI_TESTDEV] {
        let bdf = match sysfs.find_one(id) {
            Ok(b) => b,
            // pci-testdev is bound for completeness; the story does not use it.
            Err(e) if id == PCI_TESTDEV => {
                facts.add(format!("{e} (not needed)"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let how = match sysfs.bind_vfio(&bdf)? {
            Bound::Already => "already bound".to_string(),
            Bound::Rebound { from: Some(d) } => format!("moved from {d}"),
            Bound::Rebound { from: None } => "bound (it had no driver)".to_string(),
        };
        let cdev = sysfs.vfio_cdev(&bdf)?;
        facts.add(format!(
            "{} {bdf}: vfio-pci, {how}, {}",
            id.name,
            cdev.display()
        ));
        if id == EDU {
            edu = Some((bdf, cdev));
        } else if id == IVSHMEM {
            ivshmem = Some((bdf, cdev));
        }
    }
    match (edu, ivshmem) {
        (Some(edu), Some(ivshmem)) => Ok(Devices { edu, ivshmem }),
        _ => Err(Error::msg("edu or ivshmem missing")),
    }
}

fn open_and_bind(path: &Path, iommufd: &Iommufd, facts: &mut Facts) -> Result<VfioDevice> {
    let dev = VfioDevice::open(path)?;
    let devid = dev.bind_iommufd(iommufd)?;
    facts.add(format!(
        "{} bound to iommufd, device id {devid}",
        path.display()
    ));
    Ok(dev)
}

/// Run the story; returns whether every step behaved as expected.
pub fn run(r: &mut Runner<'_>) -> bool {
    let _ = story(r);
    r.finish()
}

fn story(r: &mut Runner<'_>) -> std::result::Result<(), Aborted> {
    let sysfs = Sysfs::default();
    let fds_at_start = open_fds().ok();

    // ------------------------------------------------------------------
    r.section("Setup: two devices in one IO address space");
    r.explain(
        "edu is a PCI device with a DMA engine; ivshmem exposes 2 MiB of RAM as its BAR2.\n\
         Both go to vfio-pci and into one iommufd IO address space (IOAS), so an IOVA\n\
         mapped there means the same memory to both.",
    );
    let Devices {
        edu: (edu_bdf, edu_cdev),
        ivshmem: (ivshmem_bdf, ivshmem_cdev),
    } = r.require("bind edu, ivshmem and pci-testdev to vfio-pci", |f| {
        bind_all(&sysfs, f)
    })?;
    let (iommu_path, iommufd) = r.require("open /dev/iommu", |f| {
        let p = sysfs.iommu_dev()?;
        let i = Iommufd::open(&p)?;
        f.add(format!("{} open", p.display()));
        Ok((p, i))
    })?;
    let ivshmem = r.require(&format!("bind ivshmem ({ivshmem_bdf}) to iommufd"), |f| {
        open_and_bind(&ivshmem_cdev, &iommufd, f)
    })?;
    let edu_dev = r.require(&format!("bind edu ({edu_bdf}) to iommufd"), |f| {
        open_and_bind(&edu_cdev, &iommufd, f)
    })?;
    let ioas = r.require("allocate an IOAS", |f| {
        let id = iommufd.ioas_alloc()?;
        f.add(format!("IOAS id {id}"));
        Ok(id)
    })?;
    r.require("attach ivshmem to the IOAS", |f| {
        let pt = ivshmem.attach_ioas(ioas)?;
        f.add(format!("attached; page table id {pt}"));
        Ok(())
    })?;
    r.require("attach edu to the IOAS", |f| {
        let pt = edu_dev.attach_ioas(ioas)?;
        f.add(format!("attached; page table id {pt}"));
        Ok(())
    })?;
    let bar2 = r.require("ivshmem BAR2 is 2 MiB and mmappable", |f| {
        let info = ivshmem.region_info(BAR2)?;
        f.add(format!(
            "region {BAR2}: size {}, flags {}, at offset {:#x} of the device fd",
            size(info.size),
            info.flag_names(),
            info.offset
        ));
        if info.size != BAR2_SIZE || !info.mmappable() || !info.readable() || !info.writable() {
            return Err(Error::msg("expected a 2 MiB read/write/mmap region"));
        }
        ivshmem.mmap_region(BAR2)
    })?;
    let edu = r.require(
        "edu BAR0 is mapped and its id register reads 0x010000ed",
        |f| {
            let edu = Edu::new(edu_dev.mmap_region(0)?)?;
            f.add(format!("id {:#010x}", edu.id()));
            Ok(edu)
        },
    )?;
    r.require("enable bus mastering on edu (PCI_COMMAND.MASTER)", |f| {
        let (before, after) = edu_dev.set_command_bits(PCI_COMMAND_MASTER)?;
        f.add(format!("PCI_COMMAND {before:#06x} -> {after:#06x}"));
        if after & PCI_COMMAND_MASTER == 0 {
            return Err(Error::msg("MASTER did not stick"));
        }
        Ok(())
    })?;
    let staging = r.require(
        &format!("map a page of our memory at IOVA {STAGING_IOVA:#x} (IOMMU_IOAS_MAP)"),
        |f| {
            let page = Mapping::anonymous(4096).op("mmap a page")?;
            iommufd.map_user(ioas, &page, STAGING_IOVA)?;
            f.add(format!(
                "user address {:#x} -> IOVA {STAGING_IOVA:#x}, 4 KiB",
                page.addr()
            ));
            Ok(page)
        },
    )?;
    let lab = Lab {
        iommufd,
        ivshmem,
        edu_dev,
        ioas,
        bar2,
        edu,
        staging,
    };

    // ------------------------------------------------------------------
    r.section("Peer-to-peer DMA through a dma-buf mapping");
    r.explain(
        "VFIO exports part of ivshmem's BAR2 as a dma-buf; iommufd maps that dma-buf at an\n\
         IOVA; edu then writes to the IOVA and the bytes must appear in ivshmem's BAR.",
    );
    let dmabuf = r.require(
        &format!("export ivshmem BAR2 {} as a dma-buf", span(0, EXPORT_LEN)),
        |f| {
            let fd = lab.ivshmem.export_dma_buf(BAR2, &[(0, EXPORT_LEN)])?;
            f.add(format!("dma-buf fd {}, {}", raw(&fd), size(EXPORT_LEN)));
            Ok(fd)
        },
    )?;
    r.require(
        &format!("map the dma-buf at IOVA {DMABUF_IOVA:#x} (IOMMU_IOAS_MAP_FILE)"),
        |f| {
            let iova =
                lab.iommufd
                    .map_file(lab.ioas, dmabuf.as_fd(), 0, EXPORT_LEN, DMABUF_IOVA)?;
            f.add(format!(
                "IOVA {} -> BAR2 {}",
                span(iova, EXPORT_LEN),
                span(0, EXPORT_LEN)
            ));
            Ok(())
        },
    )?;
    r.explain(
        "What the kernel now knows of the dma-buf (dmabuf-tool inspect, from bufinfo in\n\
         debugfs): its memory model, who holds it, and iommufd (device \"iommu\") attached.",
    );
    inspect_step(
        r,
        "inspect: revocable memory, not revoked; iommufd accepts pinned and revocable memory \
         and holds 1 description of it",
        &dmabuf,
        false,
    );
    let first = pattern(1, PATTERN_LEN as usize);
    let target_iova = DMABUF_IOVA + TARGET_OFF;
    r.check(
        &format!("edu DMA writes {PATTERN_LEN} bytes to IOVA {target_iova:#x}"),
        |f| {
            prepare_target(&lab.bar2, TARGET_OFF);
            lab.dma_to(&first, target_iova, f)
        },
    );
    r.check(
        &format!("the bytes landed at BAR2 offset {TARGET_OFF:#x} and nothing around them changed"),
        |f| verify_target(&lab.bar2, TARGET_OFF, &first, f),
    );

    // ------------------------------------------------------------------
    r.section("A dma-buf of three ranges");
    r.explain(
        "One dma-buf can hold several ranges of a BAR. Stock Linux 7.3 exports it, but\n\
         iommufd maps only single-range VFIO dma-bufs; dma_buf_get_memory() lifts that.",
    );
    let multi = r.attempt(
        "export three 4 KiB ranges of BAR2 (at 0, 64 KiB, 1 MiB) as one dma-buf",
        |f| {
            let fd = lab.ivshmem.export_dma_buf(BAR2, &MULTI_RANGES)?;
            f.add(format!(
                "dma-buf fd {}, {} in 3 ranges",
                raw(&fd),
                size(12 * KIB)
            ));
            Ok(fd)
        },
    );
    multi_range(r, &lab, multi);

    // ------------------------------------------------------------------
    r.section("Revoke and restore");
    r.explain(
        "Clearing PCI_COMMAND.MEMORY on ivshmem revokes its dma-bufs: iommufd must drop the\n\
         IOMMU mapping, so edu's next write faults in the IOMMU instead of reaching the BAR.",
    );
    r.require("revoke: clear PCI_COMMAND.MEMORY on ivshmem", |f| {
        let (before, after) = lab.ivshmem.clear_command_bits(PCI_COMMAND_MEMORY)?;
        f.add(format!("PCI_COMMAND {before:#06x} -> {after:#06x}"));
        if after & PCI_COMMAND_MEMORY != 0 {
            return Err(Error::msg("MEMORY is still set"));
        }
        Ok(())
    })?;
    r.check(
        "a new MAP_FILE of the revoked dma-buf fails with ENODEV",
        |f| {
            let e = expect_errno(
                lab.iommufd
                    .map_file(lab.ioas, dmabuf.as_fd(), 0, EXPORT_LEN, SPARE_IOVA),
                libc::ENODEV,
            )?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
    inspect_step(
        r,
        "inspect: the dma-buf is revoked and iommufd holds no description of it any more",
        &dmabuf,
        true,
    );
    let revoked = pattern(2, PATTERN_LEN as usize);
    let staged = r.check("load a second pattern into edu's buffer", |f| {
        lab.stage(&revoked)?;
        f.add(format!("data {}", hex_preview(&revoked, 12)));
        Ok(())
    });
    if staged {
        revoked_dma_faults(
            r,
            &lab.edu,
            target_iova,
            PATTERN_LEN,
            "the IOMMU reported a DMA write fault",
        );
    }
    r.require("restore: set PCI_COMMAND.MEMORY on ivshmem", |f| {
        let (before, after) = lab.ivshmem.set_command_bits(PCI_COMMAND_MEMORY)?;
        f.add(format!("PCI_COMMAND {before:#06x} -> {after:#06x}"));
        if after & PCI_COMMAND_MEMORY == 0 {
            return Err(Error::msg("MEMORY did not stick"));
        }
        Ok(())
    })?;
    r.check(
        "the BAR still holds the first pattern: the revoked DMA never landed",
        |f| verify_target(&lab.bar2, TARGET_OFF, &first, f),
    );
    r.check(
        &format!(
            "MAP_FILE at the old IOVA {DMABUF_IOVA:#x} fails with EEXIST until it is unmapped"
        ),
        |f| {
            let e = expect_errno(
                lab.iommufd
                    .map_file(lab.ioas, dmabuf.as_fd(), 0, EXPORT_LEN, DMABUF_IOVA),
                libc::EEXIST,
            )?;
            f.add(format!("kernel: {e}"));
            f.add("the dead mapping keeps its IOVA range reserved");
            Ok(())
        },
    );
    r.check(
        &format!("IOMMU_IOAS_UNMAP the dead mapping at {DMABUF_IOVA:#x}"),
        |f| {
            let n = lab.iommufd.unmap(lab.ioas, DMABUF_IOVA, EXPORT_LEN)?;
            f.add(format!("{} unmapped", size(n)));
            Ok(())
        },
    );
    let remapped = r.check(
        &format!("MAP_FILE of the same dma-buf at {DMABUF_IOVA:#x} works again"),
        |f| {
            let iova =
                lab.iommufd
                    .map_file(lab.ioas, dmabuf.as_fd(), 0, EXPORT_LEN, DMABUF_IOVA)?;
            f.add(format!(
                "IOVA {} -> BAR2 {}",
                span(iova, EXPORT_LEN),
                span(0, EXPORT_LEN)
            ));
            Ok(())
        },
    );
    let third = pattern(3, PATTERN_LEN as usize);
    r.check("edu DMA lands in the BAR again", |f| {
        if !remapped {
            return Err(Error::msg("skipped: the dma-buf is not mapped"));
        }
        prepare_target(&lab.bar2, TARGET_OFF);
        lab.dma_to(&third, target_iova, f)?;
        verify_target(&lab.bar2, TARGET_OFF, &third, f)
    });

    // ------------------------------------------------------------------
    r.section("Bad input");
    r.explain(
        "Each request below is wrong on purpose; the kernel must refuse it with this errno.\n\
         Where the uAPI accepts an odd request (overlapping ranges, a range count VFIO does\n\
         not limit), the check says what the kernel does with it instead.",
    );
    bad_input(r, &lab, &dmabuf);

    // ------------------------------------------------------------------
    write_access::run(r, &lab);

    // ------------------------------------------------------------------
    crate::rust_exporter::run(
        r,
        &lab.iommufd,
        lab.ioas,
        &lab.edu,
        &lab.staging,
        STAGING_IOVA,
    );

    // ------------------------------------------------------------------
    r.section("Cleanup");
    cleanup(
        r,
        lab,
        dmabuf,
        fds_at_start,
        &iommu_path,
        [&ivshmem_cdev, &edu_cdev],
    );
    Ok(())
}

/// What `dmabuf-tool inspect` shows of `dmabuf`, which iommufd has mapped
/// once: revocable memory, `revoked` or not, iommufd holding 1 description
/// of it (0 once revoked). A kernel that prints no memory models (without the
/// series) is only shown.
fn inspect_step(r: &mut Runner<'_>, desc: &str, dmabuf: &OwnedFd, revoked: bool) {
    r.check(desc, |f| {
        let shown = inspect::show_fds(&[dmabuf.as_fd()], f)?;
        let [b] = &shown[..] else {
            return Err(Error::msg("no bufinfo entry"));
        };
        if b.model.is_none() {
            f.add("(this kernel prints no memory models: nothing to compare)");
            return Ok(());
        }
        inspect::expect_model(b, Model::Revocable, revoked)?;
        let holds = if revoked { 0 } else { 1 };
        inspect::expect_importer(
            b,
            inspect::IOMMUFD_DEVICE,
            &inspect::IOMMUFD_ACCEPTS,
            &[holds],
        )
        .map(drop)
    });
}

/// DMA `len` bytes from edu's buffer to `iova`, whose mapping was revoked,
/// inside an expect-dmar-fault window for the runner: check that edu reports
/// completion (the IOMMU blocks the write, edu does not notice) and, as
/// `fault_check`, that the IOMMU logged a DMA write fault.
pub fn revoked_dma_faults(r: &mut Runner<'_>, edu: &Edu, iova: u64, len: u64, fault_check: &str) {
    let dma_check =
        format!("edu DMA to the revoked IOVA {iova:#x} completes (the IOMMU blocks it)");
    blocked_dma_faults(r, edu, iova, len, &dma_check, fault_check, None);
}

/// `revoked_dma_faults` for any IOVA the IOMMU must not let edu write to,
/// with the DMA's check named `dma_check`. With `fault_page`, `fault_check`
/// also requires a fault report naming that page (QEMU may fold faults that
/// arrive while one is pending, so any one of the new reports will do).
pub fn blocked_dma_faults(
    r: &mut Runner<'_>,
    edu: &Edu,
    iova: u64,
    len: u64,
    dma_check: &str,
    fault_check: &str,
    fault_page: Option<u64>,
) {
    let mut watch = kmsg::Watch::open().ok();
    r.comment("expect-dmar-fault");
    kmsg::mark("expect-begin dmar-fault");
    let dma = edu.to_ram(EDU_BUFFER, iova, len);
    let faults = kmsg::wait_for_dma_write_faults(watch.as_mut(), Duration::from_secs(1));
    kmsg::mark("expect-end dmar-fault");
    r.comment("end-expect-dmar-fault");
    r.check(dma_check, |f| {
        let t = dma?;
        f.add(format!(
            "edu reported completion after {} ms",
            t.as_millis()
        ));
        Ok(())
    });
    r.check(fault_check, |f| match (watch.is_some(), faults.first()) {
        (_, Some(first)) => {
            let Some(page) = fault_page else {
                f.add(format!("kernel: {first}"));
                return Ok(());
            };
            match faults.iter().find(|l| kmsg::fault_addr(l) == Some(page)) {
                Some(l) => {
                    f.add(format!("kernel: {l}"));
                    Ok(())
                }
                None => Err(Error::msg(format!(
                    "no fault report names page {page:#x}; the kernel logged: {}",
                    faults.join(" | ")
                ))),
            }
        }
        (false, None) => Err(Error::msg("could not read /dev/kmsg")),
        (true, None) => Err(Error::msg(
            "no \"DMAR: [DMA Write\" line in the kernel log within 1 s",
        )),
    });
}

fn raw(fd: &OwnedFd) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(fd)
}

fn multi_range(r: &mut Runner<'_>, lab: &Lab, multi: Option<OwnedFd>) {
    let total: u64 = MULTI_RANGES.iter().map(|x| x.1).sum();
    let Some(multi) = multi else {
        r.check("map the 3-range dma-buf", |_| {
            Err(Error::msg("skipped: the export failed"))
        });
        return;
    };
    if !MULTI_RANGE_MAP_SUPPORTED {
        r.check(
            "MAP_FILE of the 3-range dma-buf fails with EOPNOTSUPP (stock: one range only)",
            |f| {
                let e = expect_errno(
                    lab.iommufd
                        .map_file(lab.ioas, multi.as_fd(), 0, total, MULTI_IOVA),
                    libc::EOPNOTSUPP,
                )?;
                f.add(format!("kernel: {e}"));
                Ok(())
            },
        );
    } else {
        let mapped = r.check(
            &format!("map the 3-range dma-buf at IOVA {MULTI_IOVA:#x}"),
            |f| {
                lab.iommufd
                    .map_file(lab.ioas, multi.as_fd(), 0, total, MULTI_IOVA)?;
                let mut at = MULTI_IOVA;
                for (off, len) in MULTI_RANGES {
                    f.add(format!("IOVA {} -> BAR2 {}", span(at, len), span(off, len)));
                    at += len;
                }
                Ok(())
            },
        );
        // One pattern, written through the second and third chunks.
        let data = pattern(4, PATTERN_LEN as usize);
        for (i, (bar_off, _)) in MULTI_RANGES.iter().enumerate().skip(1) {
            let iova = MULTI_IOVA + i as u64 * 4 * KIB + 0x100;
            let off = bar_off + 0x100;
            r.check(
                &format!(
                    "edu DMA to IOVA {iova:#x} lands at BAR2 offset {off:#x} (chunk {})",
                    i + 1
                ),
                |f| {
                    if !mapped {
                        return Err(Error::msg("skipped: the dma-buf is not mapped"));
                    }
                    prepare_target(&lab.bar2, off);
                    lab.dma_to(&data, iova, f)?;
                    verify_target(&lab.bar2, off, &data, f)
                },
            );
        }
        // The read direction, through every chunk: what edu reads at each
        // IOVA is what the BAR holds at that chunk's offset.
        for (i, (bar_off, _)) in MULTI_RANGES.iter().enumerate() {
            let iova = MULTI_IOVA + i as u64 * 4 * KIB + 0x100;
            let off = bar_off + 0x100;
            let want = pattern(5 + i as u8, PATTERN_LEN as usize);
            r.check(
                &format!(
                    "edu DMA from IOVA {iova:#x} reads BAR2 offset {off:#x} (chunk {})",
                    i + 1
                ),
                |f| {
                    if !mapped {
                        return Err(Error::msg("skipped: the dma-buf is not mapped"));
                    }
                    lab.bar2.write_bytes(usize_of(off), &want);
                    lab.expect_read(iova, &want, f)
                },
            );
        }
        if mapped {
            r.check("unmap the 3-range dma-buf", |f| {
                let n = lab.iommufd.unmap(lab.ioas, MULTI_IOVA, total)?;
                f.add(format!("{} unmapped", size(n)));
                Ok(())
            });
        }
    }
    r.check("close the 3-range dma-buf", |_| {
        sys::close(multi).op("close the 3-range dma-buf")
    });
}

/// A dma-buf export the kernel must refuse, and with which errno.
struct BadExport {
    what: &'static str,
    region: u32,
    ranges: &'static [(u64, u64)],
    errno: i32,
    /// Where Linux 7.3 returns it.
    source: &'static str,
}

const BAD_EXPORTS: &[BadExport] = &[
    BadExport {
        what: "export with an unaligned offset (0x800 + 4 KiB)",
        region: BAR2,
        ranges: &[(0x800, 4 * KIB)],
        errno: libc::EINVAL,
        source: "validate_dmabuf_input()",
    },
    BadExport {
        what: "export with an unaligned length (0 + 0x800)",
        region: BAR2,
        ranges: &[(0, 0x800)],
        errno: libc::EINVAL,
        source: "validate_dmabuf_input()",
    },
    BadExport {
        what: "export with a zero-length range",
        region: BAR2,
        ranges: &[(0, 0)],
        errno: libc::EINVAL,
        source: "validate_dmabuf_input()",
    },
    BadExport {
        what: "export of a range running past the end of the BAR (2 MiB - 4 KiB, +8 KiB)",
        region: BAR2,
        ranges: &[(BAR2_SIZE - 4 * KIB, 8 * KIB)],
        errno: libc::EINVAL,
        source: "vfio_pci_core_fill_phys_vec()",
    },
    BadExport {
        what: "export of a range starting beyond the BAR (4 MiB, +4 KiB)",
        region: BAR2,
        ranges: &[(4 * MIB, 4 * KIB)],
        errno: libc::EINVAL,
        source: "vfio_pci_core_fill_phys_vec()",
    },
    BadExport {
        what: "export with an offset that overflows the physical address",
        region: BAR2,
        ranges: &[(u64::MAX - 0xfff, 4 * KIB)],
        errno: libc::EOVERFLOW,
        source: "vfio_pci_core_fill_phys_vec()",
    },
    BadExport {
        what: "export with no ranges",
        region: BAR2,
        ranges: &[],
        errno: libc::EINVAL,
        source: "vfio_pci_core_feature_dma_buf()",
    },
    BadExport {
        what: "export of the ROM region (index 6)",
        region: sys::VFIO_PCI_ROM_REGION_INDEX,
        ranges: &[(0, 4 * KIB)],
        errno: libc::ENODEV,
        source: "vfio_pci_core_feature_dma_buf()",
    },
];

/// MAP_FILE of `[start, start + len)` of descriptor `fd` at `SPARE_IOVA`
/// must fail with `errno`. Should it succeed, the mapping is removed again so
/// that later attempts at `SPARE_IOVA` are not refused with EEXIST instead.
fn expect_map_refused(
    lab: &Lab,
    fd: i32,
    start: u64,
    len: u64,
    errno: i32,
    f: &mut Facts,
) -> Result<()> {
    let r = lab
        .iommufd
        .map_file_raw(lab.ioas, fd, start, len, SPARE_IOVA);
    if let Ok(at) = &r {
        let _ = lab.iommufd.unmap(lab.ioas, *at, len);
    }
    let e = expect_errno(r, errno)?;
    f.add(format!("kernel: {e}"));
    Ok(())
}

/// `n` ranges of 4 KiB walking through a BAR of `bar_len` bytes page by page
/// and starting over at its end (so they overlap once `n` exceeds its pages).
pub fn cycling_ranges(n: usize, bar_len: u64) -> Vec<(u64, u64)> {
    (0..n as u64)
        .map(|i| ((i * 4 * KIB) % bar_len, 4 * KIB))
        .collect()
}

/// An export of two overlapping ranges: vfio accepts it (it checks every
/// range against the BAR, not against each other), the dma-buf core accepts
/// the description (it only requires the ranges to add up to no more than
/// the buffer), and iommufd maps each range at its own IOVA, so two IOVAs
/// alias one BAR page.
fn overlapping_ranges(r: &mut Runner<'_>, lab: &Lab) {
    let [(a_off, a_len), (b_off, b_len)] = OVERLAP_RANGES;
    let fd = r.attempt(
        &format!(
            "export of two overlapping ranges, BAR2 {} and {}, is accepted \
             (vfio does not check for overlap): a {} dma-buf",
            span(a_off, a_len),
            span(b_off, b_len),
            size(OVERLAP_LEN)
        ),
        |f| {
            let fd = lab.ivshmem.export_dma_buf(BAR2, &OVERLAP_RANGES)?;
            f.add(format!("dma-buf fd {}", raw(&fd)));
            Ok(fd)
        },
    );
    let second_iova = OVERLAP_IOVA + a_len; // the second range's first page
    let mapped = fd.as_ref().is_some_and(|fd| {
        r.check(
            &format!(
                "MAP_FILE of all {} of it at IOVA {OVERLAP_IOVA:#x} works: \
                 IOVAs {:#x} and {second_iova:#x} both map BAR2 offset {b_off:#x}",
                size(OVERLAP_LEN),
                OVERLAP_IOVA + b_off
            ),
            |f| {
                lab.iommufd
                    .map_file(lab.ioas, fd.as_fd(), 0, OVERLAP_LEN, OVERLAP_IOVA)?;
                f.add(format!(
                    "IOVA {} -> BAR2 {}",
                    span(OVERLAP_IOVA, a_len),
                    span(a_off, a_len)
                ));
                f.add(format!(
                    "IOVA {} -> BAR2 {}",
                    span(second_iova, b_len),
                    span(b_off, b_len)
                ));
                Ok(())
            },
        )
    });
    let in_page = OVERLAP_BAR_OFF - b_off;
    for (seed, iova, what) in [
        (5, second_iova + in_page, "the second range's first page"),
        (
            6,
            OVERLAP_IOVA + OVERLAP_BAR_OFF,
            "the first range's second page, the alias",
        ),
    ] {
        let data = pattern(seed, PATTERN_LEN as usize);
        r.check(
            &format!(
                "edu DMA to IOVA {iova:#x} ({what}) lands at BAR2 offset {OVERLAP_BAR_OFF:#x}"
            ),
            |f| {
                if !mapped {
                    return Err(Error::msg("skipped: the dma-buf is not mapped"));
                }
                prepare_target(&lab.bar2, OVERLAP_BAR_OFF);
                lab.dma_to(&data, iova, f)?;
                verify_target(&lab.bar2, OVERLAP_BAR_OFF, &data, f)
            },
        );
    }
    if mapped {
        r.check("unmap the overlapping dma-buf", |f| {
            let n = lab.iommufd.unmap(lab.ioas, OVERLAP_IOVA, OVERLAP_LEN)?;
            f.add(format!("{} unmapped", size(n)));
            Ok(())
        });
    }
    if let Some(fd) = fd {
        r.check("close the overlapping dma-buf", |_| {
            sys::close(fd).op("close the overlapping dma-buf")
        });
    }
}

/// Range counts around `DMA_BUF_MEMORY_MAX_RANGES`. VFIO_DEVICE_FEATURE_DMA_BUF
/// has no count limit of its own (its ranges must only fit one kmalloc, about
/// 262000 of them), so the limit the chain enforces is vfio's get_memory:
/// -E2BIG above 65536 ranges, which MAP_FILE returns.
fn too_many_ranges(r: &mut Runner<'_>, lab: &Lab) {
    let max = DMA_BUF_MEMORY_MAX_RANGES;
    let len = max as u64 * 4 * KIB;
    let fd = r.attempt(
        &format!(
            "export of {max} 4 KiB ranges (DMA_BUF_MEMORY_MAX_RANGES) cycling through BAR2 is accepted"
        ),
        |f| {
            let fd = lab
                .ivshmem
                .export_dma_buf(BAR2, &cycling_ranges(max, BAR2_SIZE))?;
            f.add(format!("dma-buf fd {}, {}", raw(&fd), size(len)));
            Ok(fd)
        },
    );
    if let Some(fd) = fd {
        r.check(
            &format!(
                "MAP_FILE of all {} of the {max}-range dma-buf at IOVA {MANY_IOVA:#x} works, and unmaps",
                size(len)
            ),
            |f| {
                let t = Instant::now();
                lab.iommufd
                    .map_file(lab.ioas, fd.as_fd(), 0, len, MANY_IOVA)?;
                f.add(format!(
                    "IOVA {} mapped in {} ms",
                    span(MANY_IOVA, len),
                    t.elapsed().as_millis()
                ));
                let n = lab.iommufd.unmap(lab.ioas, MANY_IOVA, len)?;
                f.add(format!("{} unmapped", size(n)));
                Ok(())
            },
        );
        r.check(&format!("close the {max}-range dma-buf"), |_| {
            sys::close(fd).op("close the dma-buf")
        });
    }
    let over = max + 1;
    let fd = r.attempt(
        &format!(
            "export of {over} 4 KiB ranges is accepted: VFIO_DEVICE_FEATURE_DMA_BUF \
             has no range limit of its own"
        ),
        |f| {
            let fd = lab
                .ivshmem
                .export_dma_buf(BAR2, &cycling_ranges(over, BAR2_SIZE))?;
            f.add(format!(
                "dma-buf fd {}, {}",
                raw(&fd),
                size(over as u64 * 4 * KIB)
            ));
            Ok(fd)
        },
    );
    if let Some(fd) = fd {
        r.check(
            &format!(
                "MAP_FILE of the first 4 KiB of the {over}-range dma-buf fails with E2BIG: \
                 vfio's get_memory refuses more than DMA_BUF_MEMORY_MAX_RANGES ({max}) ranges"
            ),
            |f| {
                expect_map_refused(lab, raw(&fd), 0, 4 * KIB, libc::E2BIG, f)?;
                f.add("from vfio_pci_dma_buf_get_memory(), through dma_buf_get_memory()");
                Ok(())
            },
        );
        r.check(&format!("close the {over}-range dma-buf"), |_| {
            sys::close(fd).op("close the dma-buf")
        });
    }
}

fn bad_input(r: &mut Runner<'_>, lab: &Lab, dmabuf: &OwnedFd) {
    // (description, ranges, region, errno)
    for bad in BAD_EXPORTS {
        r.check(
            &format!("{} fails with {}", bad.what, name(bad.errno)),
            |f| {
                let e = expect_errno(
                    lab.ivshmem.export_dma_buf(bad.region, bad.ranges),
                    bad.errno,
                )?;
                f.add(format!("kernel: {e}, from {}", bad.source));
                Ok(())
            },
        );
    }

    overlapping_ranges(r, lab);
    too_many_ranges(r, lab);

    r.check(
        "MAP_FILE of /dev/null (not a dma-buf, not a memfd) fails with EINVAL",
        |f| {
            // Read-write, so that only the kind of file is wrong: a writable
            // mapping of a read-only fd fails earlier, with EACCES.
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .op("open /dev/null O_RDWR")?;
            let e = expect_errno(
                lab.iommufd
                    .map_file(lab.ioas, null.as_fd(), 0, 4 * KIB, SPARE_IOVA),
                libc::EINVAL,
            )?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
    r.check(
        "MAP_FILE of a descriptor number that is not open fails with EBADF",
        |f| {
            let e = expect_errno(
                lab.iommufd
                    .map_file_raw(lab.ioas, 999_999, 0, 4 * KIB, SPARE_IOVA),
                libc::EBADF,
            )?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
    r.check(
        "MAP_FILE of a dma-buf descriptor after close() fails with EBADF",
        |f| {
            let fd = lab.ivshmem.export_dma_buf(BAR2, &[(0, 4 * KIB)])?;
            let n = raw(&fd);
            sys::close(fd).op("close the dma-buf")?;
            f.add(format!("dma-buf fd {n} exported and closed"));
            expect_map_refused(lab, n, 0, 4 * KIB, libc::EBADF, f)
        },
    );
    r.check(
        "MAP_FILE of more bytes than the dma-buf holds fails with EINVAL",
        |f| expect_map_refused(lab, raw(dmabuf), 0, 2 * EXPORT_LEN, libc::EINVAL, f),
    );
    let (start, len) = (EXPORT_LEN / 2, EXPORT_LEN);
    r.check(
        &format!(
            "MAP_FILE of {} of the {} dma-buf (start + length past its end) fails with EINVAL",
            span(start, len),
            size(EXPORT_LEN)
        ),
        |f| expect_map_refused(lab, raw(dmabuf), start, len, libc::EINVAL, f),
    );
    r.check(
        "MAP_FILE at an unaligned start (0x800, 4 KiB) fails with EINVAL: the start's \
         offset in its page must be a multiple of the IOAS's IOVA alignment (4 KiB)",
        |f| expect_map_refused(lab, raw(dmabuf), 0x800, 4 * KIB, libc::EINVAL, f),
    );
    r.check(
        "MAP_FILE of an unaligned length (0, 0x800) fails with EINVAL",
        |f| expect_map_refused(lab, raw(dmabuf), 0, 0x800, libc::EINVAL, f),
    );
    r.check(
        "IOMMU_IOAS_UNMAP of an IOVA that was never mapped fails with ENOENT",
        |f| {
            let e = expect_errno(
                lab.iommufd.unmap(lab.ioas, NEVER_MAPPED_IOVA, 4 * KIB),
                libc::ENOENT,
            )?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
    r.check(
        "control: MAP_FILE of a 4 KiB memfd works (the non-dma-buf file path)",
        |f| {
            let memfd = sys::memfd_create(c"dmabuf-tool").op("memfd_create")?;
            let file = std::fs::File::from(memfd);
            file.set_len(4 * KIB).op("ftruncate the memfd")?;
            lab.iommufd
                .map_file(lab.ioas, file.as_fd(), 0, 4 * KIB, MEMFD_IOVA)?;
            let n = lab.iommufd.unmap(lab.ioas, MEMFD_IOVA, 4 * KIB)?;
            f.add(format!(
                "mapped at {MEMFD_IOVA:#x} and unmapped again ({})",
                size(n)
            ));
            Ok(())
        },
    );
}

fn cleanup(
    r: &mut Runner<'_>,
    lab: Lab,
    dmabuf: OwnedFd,
    fds_at_start: Option<usize>,
    iommu_path: &Path,
    cdevs: [&Path; 2],
) {
    let Lab {
        iommufd,
        ivshmem,
        edu_dev,
        ioas,
        bar2,
        edu,
        staging,
    } = lab;
    r.check("close the dma-buf", |_| {
        sys::close(dmabuf).op("close the dma-buf")
    });
    r.check("unmap everything left in the IOAS", |f| {
        let n = iommufd.unmap(ioas, 0, u64::MAX)?;
        f.add(format!(
            "{} unmapped (the dma-buf and the staging page)",
            size(n)
        ));
        Ok(())
    });
    drop((bar2, edu, staging));
    r.check("close ivshmem's and edu's VFIO device fds", |f| {
        ivshmem.close()?;
        edu_dev.close()?;
        f.add("both closed cleanly (unbound from iommufd, detached)");
        Ok(())
    });
    r.check("destroy the IOAS", |f| {
        iommufd.destroy(ioas)?;
        f.add(format!("IOAS {ioas} destroyed"));
        Ok(())
    });
    r.check("close /dev/iommu", |_| iommufd.close());
    r.check("no file descriptor is left open", |f| {
        no_fd_left(fds_at_start, f)
    });
    r.check(
        "ivshmem and edu can be opened and bound to a new iommufd again",
        |f| {
            let fresh = Iommufd::open(iommu_path)?;
            for p in cdevs {
                let d = open_and_bind(p, &fresh, f)?;
                d.close()?;
            }
            fresh.close()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_everywhere() {
        let a = pattern(1, 0x800);
        for seed in 2..=4 {
            let b = pattern(seed, 0x800);
            assert!(a.iter().zip(&b).all(|(x, y)| x != y), "seed {seed}");
        }
        assert_eq!(pattern(1, 4), [0x41, 0x48, 0x4f, 0x56]);
    }

    #[test]
    fn mismatch() {
        assert_eq!(first_mismatch(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_mismatch(&[1, 9, 3], &[1, 2, 3]), Some(1));
    }

    #[test]
    fn target_verification() {
        let bar = Mapping::anonymous(64 * 1024).unwrap();
        let data = pattern(1, PATTERN_LEN as usize);
        prepare_target(&bar, TARGET_OFF);
        bar.write_bytes(TARGET_OFF as usize, &data);
        let mut f = Facts::default();
        verify_target(&bar, TARGET_OFF, &data, &mut f).unwrap();

        // A stray byte next to the target is caught.
        bar.write_bytes((TARGET_OFF + PATTERN_LEN) as usize, &[0]);
        let e = verify_target(&bar, TARGET_OFF, &data, &mut f).unwrap_err();
        assert!(e.to_string().contains("next to the target changed"), "{e}");

        // A wrong pattern is caught.
        prepare_target(&bar, TARGET_OFF);
        bar.write_bytes(TARGET_OFF as usize, &pattern(2, PATTERN_LEN as usize));
        let e = verify_target(&bar, TARGET_OFF, &data, &mut f).unwrap_err();
        assert!(e.to_string().contains("512 of 512 bytes differ"), "{e}");
    }

    #[test]
    fn cycling() {
        let r = cycling_ranges(514, 2 * MIB);
        assert_eq!(r.len(), 514);
        assert_eq!(r[0], (0, 4096));
        assert_eq!(r[511], (2 * MIB - 4096, 4096));
        assert_eq!(r[512], (0, 4096));
        assert_eq!(r[513], (4096, 4096));
        assert!(r.iter().all(|&(o, l)| o + l <= 2 * MIB && o % 4096 == 0));
    }

    #[test]
    fn iovas_fit_edu_and_do_not_overlap() {
        let spans = [
            (STAGING_IOVA, 4 * KIB),
            (DMABUF_IOVA, EXPORT_LEN),
            (MULTI_IOVA, 12 * KIB),
            (SPARE_IOVA, 2 * EXPORT_LEN),
            (MEMFD_IOVA, 4 * KIB),
            (NEVER_MAPPED_IOVA, 4 * KIB),
            (OVERLAP_IOVA, OVERLAP_LEN),
        ];
        for (i, a) in spans.iter().enumerate() {
            assert!(a.0 + a.1 <= crate::edu::DMA_LIMIT);
            assert_eq!(a.0 % (4 * KIB), 0);
            for b in &spans[i + 1..] {
                assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{a:?} overlaps {b:?}");
            }
            // The 65536-range dma-buf lies above all of them.
            assert!(a.0 + a.1 <= MANY_IOVA);
        }
    }
}
