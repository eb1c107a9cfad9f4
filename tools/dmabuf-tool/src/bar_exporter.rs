//! A PCI BAR exported by a Rust driver, revoked when the driver is unbound.
//!
//! `samples/rust/rust_dmabuf_bar_exporter.rs` is a `pci::Driver` for ivshmem
//! that binds only when asked through `driver_override`. Its misc device
//! `/dev/rust_dmabuf_bar` exports three 4 KiB ranges of BAR2 (offsets 0,
//! 64 KiB and 1 MiB) as a `Model::Revocable` dma-buf of one P2P MMIO chunk.
//! iommufd maps it with IOMMU_IOAS_MAP_FILE into the IOAS edu is attached to;
//! edu writes each range and reads it back through the IOMMU. Unbinding the
//! driver revokes the buffer: a new MAP_FILE fails with ENODEV and edu's DMA
//! to the old IOVA faults in the IOMMU. ivshmem then goes back to vfio-pci,
//! and its BAR2, mapped through VFIO, must hold what edu wrote before the
//! revoke and nothing of what it tried after.
//!
//! The driver also serves importers of `dma_buf_map_attachment()` from the
//! same description (`Exporter::MAP_DMA_BUF`). The C import sample maps the
//! buffer for ivshmem itself and for pci-testdev, its peer behind the same
//! PCIe switch: the PCI core resolves both to bus addresses
//! (`dma_buf_phys_vec_to_sgt()`). For edu, on the root bus, the map fails
//! with EINVAL: the path goes through a host bridge that is not whitelisted
//! for peer-to-peer. After the revoke the map fails with ENODEV.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::args::{hex_preview, size, span};
use crate::dmabuf;
use crate::edu::{Edu, EDU_BUFFER};
use crate::errno::{expect_errno, Context, Error, Result};
use crate::import_sample;
use crate::iommufd::Iommufd;
use crate::mmap::Mapping;
use crate::pci::{Sysfs, EDU, IVSHMEM, PCI_TESTDEV, VFIO_PCI};
use crate::report::{Aborted, Facts, Runner};
use crate::story::{first_mismatch, pattern, revoked_dma_faults};
use crate::sys;
use crate::vfio::{VfioDevice, PCI_COMMAND_MASTER};

/// The driver (and module) name, which its dma-bufs carry as `exp_name`.
const DRIVER: &str = "rust_dmabuf_bar_exporter";
/// The driver's misc device, registered when it binds ivshmem.
const DEVICE: &str = "/dev/rust_dmabuf_bar";

/// `RUST_DMABUF_BAR_EXPORT`: a new revocable dma-buf of `RANGES` of BAR2.
const BAR_EXPORT: u32 = sys::io(0xdb, 0x30);

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const BAR2: u32 = 2;
/// The driver's ranges of BAR2, (offset, length), in buffer order.
const RANGES: [(u64, u64); 3] = [(0, 4 * KIB), (64 * KIB, 4 * KIB), (MIB, 4 * KIB)];
const BUF_LEN: u64 = 12 * KIB;

/// IOVAs below edu's DMA limit.
pub(crate) const STAGING_IOVA: u64 = 0x10_0000;
const BUF_IOVA: u64 = 0x40_0000;
const SPARE_IOVA: u64 = 0x60_0000;

/// Where in each range edu writes, and how much.
const WRITE_OFF: u64 = 0x100;
const WRITE_LEN: u64 = 0x200;
/// Pattern seeds: range `i` gets `SEED + i`; the write attempted after the
/// revoke gets `REVOKED_SEED`.
const SEED: u8 = 0x30;
const REVOKED_SEED: u8 = 0x3f;
/// What the staging page holds before edu copies a read into it.
const SENTINEL: u8 = 0xa5;

const _: () = assert!(RANGES[0].1 + RANGES[1].1 + RANGES[2].1 == BUF_LEN);
const _: () = assert!(WRITE_OFF + WRITE_LEN <= 4 * KIB);
const _: () = assert!(WRITE_LEN <= crate::edu::MAX_DMA);
const _: () = assert!(BUF_IOVA + BUF_LEN <= SPARE_IOVA);
const _: () = assert!(SPARE_IOVA + BUF_LEN <= crate::edu::DMA_LIMIT);

/// The IOVA of byte `WRITE_OFF` of range `i` in the mapped buffer.
fn range_iova(i: usize) -> u64 {
    BUF_IOVA + RANGES[..i].iter().map(|r| r.1).sum::<u64>() + WRITE_OFF
}

fn write_str(p: &Path, s: &str) -> Result<()> {
    std::fs::write(p, s).op(format!("write {s:?} to {}", p.display()))
}

/// Wait up to a second for `path` to exist (`want`) or to be gone.
fn wait_for(path: &str, want: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if Path::new(path).exists() == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Move `bdf` from its driver to `DRIVER`: driver_override, unbind, probe.
fn bind_to_driver(sysfs: &Sysfs, bdf: &str, f: &mut Facts) -> Result<()> {
    let drv = Path::new("/sys/bus/pci/drivers").join(DRIVER);
    if !drv.is_dir() {
        return Err(Error::msg(format!(
            "{} does not exist: is {DRIVER} loaded?",
            drv.display()
        )));
    }
    let dev = Path::new("/sys/bus/pci/devices").join(bdf);
    let from = sysfs.driver(bdf);
    write_str(&dev.join("driver_override"), DRIVER)?;
    if from.is_some() {
        write_str(&dev.join("driver/unbind"), bdf)?;
    }
    write_str(Path::new("/sys/bus/pci/drivers_probe"), bdf)?;
    match sysfs.driver(bdf) {
        Some(d) if d == DRIVER => {}
        other => {
            return Err(Error::msg(format!(
                "{bdf}: after drivers_probe the driver is {}, not {DRIVER}",
                other.as_deref().unwrap_or("(none)")
            )))
        }
    }
    f.add(format!(
        "{bdf}: moved from {} to {DRIVER}",
        from.as_deref().unwrap_or("(no driver)")
    ));
    if !wait_for(DEVICE, true) {
        return Err(Error::msg(format!("{DEVICE} did not appear within 1 s")));
    }
    f.add(format!("{DEVICE} exists"));
    Ok(())
}

/// edu, in its own IOAS, with a staging page of our memory.
pub(crate) struct Lab {
    pub(crate) iommufd: Iommufd,
    pub(crate) edu_dev: VfioDevice,
    pub(crate) ioas: u32,
    pub(crate) edu: Edu,
    pub(crate) staging: Mapping,
}

impl Lab {
    /// DMA `data` (through the staging page and edu's buffer) to `iova`.
    pub(crate) fn dma_to(&self, data: &[u8], iova: u64, f: &mut Facts) -> Result<()> {
        self.staging.write_bytes(0, data);
        let len = data.len() as u64;
        let t1 = self.edu.to_device(STAGING_IOVA, EDU_BUFFER, len)?;
        let t2 = self.edu.to_ram(EDU_BUFFER, iova, len)?;
        f.add(format!(
            "edu wrote {len} bytes: IOVA {STAGING_IOVA:#x} -> edu buffer -> IOVA {iova:#x} ({} ms)",
            (t1 + t2).as_millis()
        ));
        Ok(())
    }

    /// DMA `len` bytes from `iova` into edu's buffer, then to the staging
    /// page (filled with `SENTINEL` first); return what arrived there.
    pub(crate) fn dma_from(&self, iova: u64, len: usize, f: &mut Facts) -> Result<Vec<u8>> {
        self.staging.fill(0, len, SENTINEL);
        let t1 = self.edu.to_device(iova, EDU_BUFFER, len as u64)?;
        let t2 = self.edu.to_ram(EDU_BUFFER, STAGING_IOVA, len as u64)?;
        f.add(format!(
            "edu read {len} bytes: IOVA {iova:#x} -> edu buffer -> IOVA {STAGING_IOVA:#x} ({} ms)",
            (t1 + t2).as_millis()
        ));
        Ok(self.staging.to_vec(0, len))
    }
}

fn compare(got: &[u8], want: &[u8], f: &mut Facts) -> Result<()> {
    f.add(format!("read {}", hex_preview(got, 12)));
    match first_mismatch(got, want) {
        None => {
            f.add(format!("all {} bytes match", want.len()));
            Ok(())
        }
        Some(i) => Err(Error::msg(format!(
            "byte {i:#x} reads {:#04x}, expected {:#04x}",
            got[i], want[i]
        ))),
    }
}

/// Run the test; returns whether every step behaved as expected.
pub fn run(r: &mut Runner<'_>) -> bool {
    let _ = test(r);
    r.finish()
}

fn test(r: &mut Runner<'_>) -> std::result::Result<(), Aborted> {
    let sysfs = Sysfs::default();

    r.section("A PCI BAR exported by a Rust driver");
    r.explain(
        "rust_dmabuf_bar_exporter is a Rust pci::Driver: bound to ivshmem, it exports ranges\n\
         of BAR2 as REVOCABLE dma-bufs of one P2P MMIO chunk through kernel::dma_buf, and\n\
         revokes them when it is unbound, before the BAR's P2P provider goes away.",
    );
    let (ivshmem_bdf, edu_bdf) = r.require("find ivshmem and edu", |f| {
        let i = sysfs.find_one(IVSHMEM)?;
        let e = sysfs.find_one(EDU)?;
        f.add(format!("ivshmem {i}, edu {e}"));
        Ok((i, e))
    })?;
    r.require(
        &format!(
            "bind ivshmem ({ivshmem_bdf}) to {DRIVER} (driver_override, unbind, drivers_probe): \
             {DEVICE} appears"
        ),
        |f| bind_to_driver(&sysfs, &ivshmem_bdf, f),
    )?;
    let (iommu_path, iommufd) = r.require("open /dev/iommu", |f| {
        let p = sysfs.iommu_dev()?;
        let i = Iommufd::open(&p)?;
        f.add(format!("{} open", p.display()));
        Ok((p, i))
    })?;
    let edu_dev = r.require(
        &format!("bind edu ({edu_bdf}) to vfio-pci and to iommufd"),
        |f| {
            sysfs.bind_vfio(&edu_bdf)?;
            let cdev = sysfs.vfio_cdev(&edu_bdf)?;
            let dev = VfioDevice::open(&cdev)?;
            let id = dev.bind_iommufd(&iommufd)?;
            f.add(format!("{} bound, device id {id}", cdev.display()));
            Ok(dev)
        },
    )?;
    let ioas = r.require("allocate an IOAS and attach edu", |f| {
        let id = iommufd.ioas_alloc()?;
        let pt = edu_dev.attach_ioas(id)?;
        f.add(format!("IOAS {id}, page table {pt}"));
        Ok(id)
    })?;
    let edu = r.require("map edu BAR0 and enable bus mastering", |f| {
        let edu = Edu::new(edu_dev.mmap_region(0)?)?;
        let (before, after) = edu_dev.set_command_bits(PCI_COMMAND_MASTER)?;
        f.add(format!(
            "id {:#010x}; PCI_COMMAND {before:#06x} -> {after:#06x}",
            edu.id()
        ));
        if after & PCI_COMMAND_MASTER == 0 {
            return Err(Error::msg("MASTER did not stick"));
        }
        Ok(edu)
    })?;
    let staging = r.require(
        &format!("map a page of our memory at IOVA {STAGING_IOVA:#x} (IOMMU_IOAS_MAP)"),
        |_| {
            let page = Mapping::anonymous(4096).op("mmap a page")?;
            iommufd.map_user(ioas, &page, STAGING_IOVA)?;
            Ok(page)
        },
    )?;
    let lab = Lab {
        iommufd,
        edu_dev,
        ioas,
        edu,
        staging,
    };

    let dev = r.require(&format!("open {DEVICE}"), |_| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(DEVICE)
            .op(format!("open {DEVICE}"))
    })?;
    let buf = r.require(
        &format!(
            "RUST_DMABUF_BAR_EXPORT returns a {} dma-buf whose exporter is {DRIVER}",
            size(BUF_LEN)
        ),
        |f| {
            let fd = sys::ioctl_new_fd(dev.as_fd(), BAR_EXPORT).op("RUST_DMABUF_BAR_EXPORT")?;
            dmabuf::check_exporter(&fd, DRIVER, BUF_LEN, f)?;
            Ok(fd)
        },
    )?;
    let mapped = r.check(
        &format!(
            "MAP_FILE of the driver's REVOCABLE dma-buf at IOVA {BUF_IOVA:#x}: iommufd imports \
             its P2P MMIO chunk of 3 BAR2 ranges"
        ),
        |f| {
            let iova = lab
                .iommufd
                .map_file(lab.ioas, buf.as_fd(), 0, BUF_LEN, BUF_IOVA)?;
            f.add(format!(
                "IOVA {} -> BAR2 0+4K, 64K+4K, 1M+4K",
                span(iova, BUF_LEN)
            ));
            Ok(())
        },
    );
    for (i, &(off, _)) in RANGES.iter().enumerate() {
        let iova = range_iova(i);
        let data = pattern(SEED + i as u8, WRITE_LEN as usize);
        r.check(
            &format!(
                "edu DMA writes {WRITE_LEN} bytes at IOVA {iova:#x} (BAR2 {:#x}) and reads the \
                 same bytes back through the IOMMU",
                off + WRITE_OFF
            ),
            |f| {
                if !mapped {
                    return Err(Error::msg("skipped: the dma-buf is not mapped"));
                }
                lab.dma_to(&data, iova, f)?;
                let got = lab.dma_from(iova, data.len(), f)?;
                compare(&got, &data, f)
            },
        );
    }

    let sample = import_sample::open();
    if let Ok(sample) = &sample {
        let testdev = sysfs.find_one(PCI_TESTDEV).ok();
        map_tables(r, sample, &buf, &ivshmem_bdf, testdev.as_deref(), &edu_bdf);
    }

    r.section("Unbind: the driver revokes its dma-bufs");
    r.explain(
        "Unbinding the driver from ivshmem revokes every dma-buf it exported: iommufd drops\n\
         the IOMMU mapping, so the buffer cannot be mapped again and edu's DMA faults.",
    );
    r.require(
        &format!("unbind {DRIVER} from ivshmem ({ivshmem_bdf})"),
        |f| {
            let unbind = Path::new("/sys/bus/pci/drivers")
                .join(DRIVER)
                .join("unbind");
            write_str(&unbind, &ivshmem_bdf)?;
            if let Some(d) = sysfs.driver(&ivshmem_bdf) {
                return Err(Error::msg(format!("ivshmem is still bound to {d}")));
            }
            f.add("ivshmem has no driver");
            if !wait_for(DEVICE, false) {
                return Err(Error::msg(format!("{DEVICE} is still there after 1 s")));
            }
            f.add(format!("{DEVICE} is gone"));
            Ok(())
        },
    )?;
    r.check(
        "RUST_DMABUF_BAR_EXPORT on the file opened before the unbind fails with ENODEV",
        |f| {
            let res = sys::ioctl_new_fd(dev.as_fd(), BAR_EXPORT).op("RUST_DMABUF_BAR_EXPORT");
            let e = expect_errno(res, libc::ENODEV)?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
    r.check(
        "a new MAP_FILE of the revoked dma-buf fails with ENODEV",
        |f| {
            let res = lab
                .iommufd
                .map_file(lab.ioas, buf.as_fd(), 0, BUF_LEN, SPARE_IOVA);
            if res.is_ok() {
                let _ = lab.iommufd.unmap(lab.ioas, SPARE_IOVA, BUF_LEN);
            }
            let e = expect_errno(res, libc::ENODEV)?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
    r.check(
        "the C sample's dma_buf_map_attachment() of the revoked dma-buf for ivshmem fails with \
         ENODEV",
        |f| {
            let sample = sample.as_ref().map_err(|e| Error::msg(e.to_string()))?;
            let res = import_sample::map_for_pci(sample, &buf, &ivshmem_bdf);
            let e = expect_errno(res, libc::ENODEV)?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
    let revoked = pattern(REVOKED_SEED, WRITE_LEN as usize);
    let staged = r.check("load another pattern into edu's buffer", |f| {
        lab.staging.write_bytes(0, &revoked);
        lab.edu.to_device(STAGING_IOVA, EDU_BUFFER, WRITE_LEN)?;
        f.add(format!("data {}", hex_preview(&revoked, 12)));
        Ok(())
    });
    if mapped && staged {
        let iova = range_iova(0);
        revoked_dma_faults(
            r,
            &lab.edu,
            iova,
            WRITE_LEN,
            "the IOMMU reported a DMA write fault for the revoked mapping",
        );
    }

    r.section("Cleanup");
    cleanup(r, lab, buf, dev);
    r.check(
        &format!("ivshmem ({ivshmem_bdf}) goes back to vfio-pci"),
        |f| {
            sysfs.bind_vfio(&ivshmem_bdf)?;
            f.add(format!("{ivshmem_bdf}: {VFIO_PCI}"));
            Ok(())
        },
    );
    r.check(
        "through VFIO, BAR2 holds what edu wrote to each range before the revoke, \
         and nothing of the DMA after it",
        |f| verify_bar(&sysfs, &ivshmem_bdf, &iommu_path, f),
    );
    Ok(())
}

/// The first address of BAR `bar` of `bdf`, from sysfs `resource`.
fn bar_start(bdf: &str, bar: usize) -> Result<u64> {
    let path = format!("/sys/bus/pci/devices/{bdf}/resource");
    let text = std::fs::read_to_string(&path).op(format!("read {path}"))?;
    let line = text
        .lines()
        .nth(bar)
        .ok_or_else(|| Error::msg(format!("{path}: no BAR {bar}")))?;
    let start = line.split_whitespace().next().unwrap_or("");
    u64::from_str_radix(start.trim_start_matches("0x"), 16)
        .map_err(|_| Error::msg(format!("{path}: bad line {line:?}")))
}

/// The table of the driver's dma-buf mapped by the C sample for `client`: no
/// CPU list and one DMA segment per range at BAR2's bus addresses.
fn check_bus_addr_table(
    sample: &File,
    buf: &OwnedFd,
    ivshmem: &str,
    client: &str,
    f: &mut Facts,
) -> Result<()> {
    let map = import_sample::map_for_pci(sample, buf, client)?;
    let bar2 = bar_start(ivshmem, BAR2 as usize)?;
    f.add(format!(
        "{} entries in the CPU list, {} DMA segments of {} in all, the first at {:#x}; \
         BAR2 at {bar2:#x}",
        map.nents,
        map.dma_nents,
        size(map.dma_len),
        map.dma_addr
    ));
    if map.nents != 0 || map.dma_nents as usize != RANGES.len() {
        return Err(Error::msg(format!(
            "expected no CPU list and {} DMA segments",
            RANGES.len()
        )));
    }
    if map.dma_len != BUF_LEN || map.dma_addr != bar2 + RANGES[0].0 {
        return Err(Error::msg(
            "the DMA segments are not the BAR2 ranges at their bus addresses",
        ));
    }
    Ok(())
}

/// `dma_buf_map_attachment()` of the driver's dma-buf by the C sample: for
/// ivshmem (its own BAR) and pci-testdev (a peer behind the same PCIe
/// switch), bus addresses; for edu, on the root bus, unreachable.
fn map_tables(
    r: &mut Runner<'_>,
    sample: &File,
    buf: &OwnedFd,
    ivshmem: &str,
    testdev: Option<&str>,
    edu: &str,
) {
    r.check(
        "the C sample maps the driver's dma-buf with dma_buf_map_attachment() for ivshmem, a \
         peer-to-peer importer of its own BAR2: a table with no CPU list and one DMA segment \
         per range at BAR2's bus addresses, built from get_memory",
        |f| check_bus_addr_table(sample, buf, ivshmem, ivshmem, f),
    );
    r.check(
        "the same for pci-testdev, a peer behind the same PCIe switch as ivshmem: the PCI \
         core resolves the path to bus addresses, no IOMMU involved",
        |f| {
            let testdev = testdev.ok_or_else(|| Error::msg("no pci-testdev"))?;
            f.add(format!("pci-testdev {testdev}"));
            check_bus_addr_table(sample, buf, ivshmem, testdev, f)
        },
    );
    r.check(
        "the C sample's dma_buf_map_attachment() of the driver's dma-buf for edu fails with \
         EINVAL: from the root bus, the path to ivshmem's BAR goes through a host bridge \
         that is not whitelisted for peer-to-peer",
        |f| {
            let e = expect_errno(import_sample::map_for_pci(sample, buf, edu), libc::EINVAL)?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
}

fn cleanup(r: &mut Runner<'_>, lab: Lab, buf: OwnedFd, dev: File) {
    let Lab {
        iommufd,
        edu_dev,
        ioas,
        edu,
        staging,
    } = lab;
    r.check("close the dma-buf and the misc device file", |_| {
        sys::close(buf).op("close the dma-buf")?;
        sys::close(dev.into()).op(format!("close {DEVICE}"))
    });
    r.check("unmap everything left in the IOAS", |f| {
        let n = iommufd.unmap(ioas, 0, u64::MAX)?;
        f.add(format!(
            "{} unmapped (the dead mapping and the staging page)",
            size(n)
        ));
        Ok(())
    });
    drop((edu, staging));
    r.check(
        "close edu's VFIO fd, destroy the IOAS, close /dev/iommu",
        |_| {
            edu_dev.close()?;
            iommufd.destroy(ioas)?;
            iommufd.close()
        },
    );
}

/// Map ivshmem's BAR2 through VFIO and check the ranges.
fn verify_bar(sysfs: &Sysfs, bdf: &str, iommu_path: &Path, f: &mut Facts) -> Result<()> {
    let cdev = sysfs.vfio_cdev(bdf)?;
    let iommufd = Iommufd::open(iommu_path)?;
    let dev = VfioDevice::open(&cdev)?;
    dev.bind_iommufd(&iommufd)?;
    let bar = dev.mmap_region(BAR2)?;
    let mut result = Ok(());
    for (i, &(off, _)) in RANGES.iter().enumerate() {
        let at = (off + WRITE_OFF) as usize;
        let got = bar.to_vec(at, WRITE_LEN as usize);
        let want = pattern(SEED + i as u8, WRITE_LEN as usize);
        if let Some(j) = first_mismatch(&got, &want) {
            result = Err(Error::msg(format!(
                "BAR2 byte {:#x} reads {:#04x}, expected {:#04x}",
                at + j,
                got[j],
                want[j]
            )));
            break;
        }
        f.add(format!(
            "BAR2 {}: the pattern of range {i}",
            span(off + WRITE_OFF, WRITE_LEN)
        ));
    }
    drop(bar);
    dev.close()?;
    iommufd.close()?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_number() {
        assert_eq!(BAR_EXPORT, 0xdb30);
    }

    #[test]
    fn range_iovas() {
        assert_eq!(range_iova(0), BUF_IOVA + WRITE_OFF);
        assert_eq!(range_iova(1), BUF_IOVA + 4 * KIB + WRITE_OFF);
        assert_eq!(range_iova(2), BUF_IOVA + 8 * KIB + WRITE_OFF);
        // The patterns of the ranges and of the revoked write all differ.
        let p: Vec<_> = (0..3)
            .map(|i| pattern(SEED + i, WRITE_LEN as usize))
            .chain([pattern(REVOKED_SEED, WRITE_LEN as usize)])
            .collect();
        for (i, a) in p.iter().enumerate() {
            for b in &p[i + 1..] {
                assert!(a.iter().zip(b).all(|(x, y)| x != y));
            }
        }
    }
}
