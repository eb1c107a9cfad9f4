//! The C import sample, `samples/c/dmabuf_import_sample.c`, imports the Rust
//! exporter's dma-bufs both ways: with `dma_buf_get_memory()` and, as an
//! importer that declares no memory model, with `dma_buf_map_attachment()`.
//!
//! The Rust sample's `Model::Pinned` buffer sets `Exporter::MAP_DMA_BUF`, so
//! `kernel::dma_buf` builds its sg_table from the same description
//! (`dma_buf_memory_map()`): the table's pages must be the described ranges.
//! Its `Model::Dynamic` buffer does not, and the map fails with EOPNOTSUPP.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::args::size;
use crate::errno::{expect_errno, Context, Error, Result};
use crate::report::{Facts, Runner};
use crate::sys::{self, ImportSampleDescribe, ImportSampleMap, ImportSampleRange};

/// The sample's device node, created by devtmpfs when the module loads.
pub(crate) const DEVICE: &str = "/dev/dmabuf_import_sample";
/// `DMA_BUF_MODEL_PINNED`.
pub(crate) const MODEL_PINNED: u32 = 1;

/// Joins ranges that follow each other physically: an sg_table may split a
/// range that a description keeps whole, or the other way round.
pub(crate) fn joined(ranges: &[ImportSampleRange]) -> Vec<ImportSampleRange> {
    let mut out: Vec<ImportSampleRange> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.paddr + last.len == r.paddr => last.len += r.len,
            _ => out.push(*r),
        }
    }
    out
}

pub(crate) fn describe(dev: &File, buf: &OwnedFd) -> Result<ImportSampleDescribe> {
    let mut arg = ImportSampleDescribe {
        fd: buf.as_raw_fd(),
        ..Default::default()
    };
    sys::ioctl(dev.as_fd(), sys::DMABUF_IMPORT_SAMPLE_DESCRIBE, &mut arg)
        .op("DMABUF_IMPORT_SAMPLE_DESCRIBE")?;
    Ok(arg)
}

/// `DMABUF_IMPORT_SAMPLE_MAP` for the sample's platform device, or with
/// `pci` (see [`pci_id`]) for that PCI device as a peer-to-peer importer.
fn map(dev: &File, buf: &OwnedFd, pci: Option<u32>) -> Result<ImportSampleMap> {
    let mut arg = ImportSampleMap {
        fd: buf.as_raw_fd(),
        flags: pci.map_or(0, |_| sys::IMPORT_SAMPLE_MAP_PCI),
        pci: pci.unwrap_or(0),
        ..Default::default()
    };
    sys::ioctl(dev.as_fd(), sys::DMABUF_IMPORT_SAMPLE_MAP, &mut arg)
        .op("DMABUF_IMPORT_SAMPLE_MAP")?;
    Ok(arg)
}

/// The sample's number for a PCI device: `domain << 16 | bus << 8 | devfn`
/// from "dddd:bb:dd.f".
pub fn pci_id(bdf: &str) -> Option<u32> {
    let (domain, rest) = bdf.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, func) = rest.split_once('.')?;
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let bus = u32::from_str_radix(bus, 16).ok()?;
    let slot = u32::from_str_radix(slot, 16).ok()?;
    let func = u32::from_str_radix(func, 16).ok()?;
    (domain <= 0xffff && bus <= 0xff && slot < 32 && func < 8)
        .then_some(domain << 16 | bus << 8 | slot << 3 | func)
}

/// Opens the sample's device.
pub fn open() -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(DEVICE)
        .op(format!("open {DEVICE} (is dmabuf_import_sample loaded?)"))
}

/// Maps `buf` with `dma_buf_map_attachment()` for the PCI device `bdf`, as a
/// dynamic importer that allows peer-to-peer, and unmaps it again.
pub fn map_for_pci(dev: &File, buf: &OwnedFd, bdf: &str) -> Result<ImportSampleMap> {
    let pci = pci_id(bdf).ok_or_else(|| Error::msg(format!("bad PCI address {bdf}")))?;
    map(dev, buf, Some(pci))
}

/// Maps `buf` with `dma_buf_map_attachment()` for the sample's platform
/// device, as a static importer that declares no memory model, and unmaps it
/// again.
pub fn map_static(dev: &File, buf: &OwnedFd) -> Result<ImportSampleMap> {
    map(dev, buf, None)
}

pub(crate) fn ranges_str(ranges: &[ImportSampleRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{:#x}+{:#x}", r.paddr, r.len))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The table must hold exactly the described memory: the same pages, in the
/// same order, and DMA segments covering the whole buffer.
fn check_same_memory(
    desc: &ImportSampleDescribe,
    map: &ImportSampleMap,
    len: u64,
    f: &mut Facts,
) -> Result<()> {
    let nr = desc.nr_ranges as usize;
    let nents = map.nents as usize;
    f.add(format!(
        "get_memory: {} in {nr} ranges: {}",
        size(desc.size),
        ranges_str(&desc.ranges[..nr.min(sys::IMPORT_SAMPLE_RANGES)])
    ));
    f.add(format!(
        "sg_table: {nents} entries: {}; {} DMA segments of {} in all",
        ranges_str(&map.ranges[..nents.min(sys::IMPORT_SAMPLE_RANGES)]),
        map.dma_nents,
        size(map.dma_len)
    ));
    if desc.model != MODEL_PINNED || desc.size != len {
        return Err(Error::msg("expected a pinned buffer of its full size"));
    }
    if nr > sys::IMPORT_SAMPLE_RANGES || nents > sys::IMPORT_SAMPLE_RANGES {
        return Err(Error::msg("more ranges than the sample copies out"));
    }
    if joined(&desc.ranges[..nr]) != joined(&map.ranges[..nents]) {
        return Err(Error::msg("the table's pages are not the described ranges"));
    }
    if map.dma_nents == 0 || map.dma_len != len {
        return Err(Error::msg("the DMA segments do not cover the buffer"));
    }
    Ok(())
}

/// Imports `pinned` (a `Model::Pinned` buffer of `len` bytes with
/// `MAP_DMA_BUF`) and `dynamic` (a `Model::Dynamic` one without) with the C
/// sample, if it is loaded.
pub fn run(r: &mut Runner<'_>, pinned: Option<&OwnedFd>, dynamic: Option<&OwnedFd>, len: u64) {
    let Some(dev) = r.attempt(&format!("open {DEVICE}"), |_| open()) else {
        return;
    };

    r.check(
        "the C sample maps the Rust exporter's PINNED dma-buf with dma_buf_map_attachment(): \
         kernel::dma_buf builds the sg_table from get_memory, the same pages the sample gets \
         from dma_buf_get_memory()",
        |f| {
            let buf = pinned.ok_or_else(|| Error::msg("skipped: no PINNED dma-buf"))?;
            let desc = describe(&dev, buf)?;
            let map = map(&dev, buf, None)?;
            check_same_memory(&desc, &map, len, f)
        },
    );
    r.check(
        "the C sample's dma_buf_map_attachment() of the Rust exporter's DYNAMIC dma-buf fails \
         with EOPNOTSUPP: that exporter does not set MAP_DMA_BUF",
        |f| {
            let buf = dynamic.ok_or_else(|| Error::msg("skipped: no DYNAMIC dma-buf"))?;
            let e = expect_errno(map(&dev, buf, None), libc::EOPNOTSUPP)?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
    r.check(&format!("close {DEVICE}"), |_| {
        sys::close(dev.into()).op(format!("close {DEVICE}"))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(paddr: u64, len: u64) -> ImportSampleRange {
        ImportSampleRange { paddr, len }
    }

    #[test]
    fn pci_ids() {
        assert_eq!(pci_id("0000:00:04.0"), Some(0x20));
        assert_eq!(pci_id("0001:02:1f.7"), Some(0x1_02ff));
        assert_eq!(pci_id("0000:00:20.0"), None);
        assert_eq!(pci_id("0000:00:04"), None);
        assert_eq!(pci_id("zz:00:04.0"), None);
    }

    #[test]
    fn joins_only_contiguous_ranges() {
        assert_eq!(
            joined(&[r(0x1000, 0x1000), r(0x2000, 0x1000), r(0x5000, 0x1000)]),
            [r(0x1000, 0x2000), r(0x5000, 0x1000)]
        );
        // Out of order is not contiguous.
        assert_eq!(
            joined(&[r(0x2000, 0x1000), r(0x1000, 0x1000)]),
            [r(0x2000, 0x1000), r(0x1000, 0x1000)]
        );
        assert!(joined(&[]).is_empty());
    }

    #[test]
    fn same_memory_is_checked() {
        let mut desc = ImportSampleDescribe {
            model: MODEL_PINNED,
            nr_ranges: 2,
            size: 0x2000,
            ..Default::default()
        };
        desc.ranges[0] = r(0x1000, 0x1000);
        desc.ranges[1] = r(0x8000, 0x1000);
        let mut map = ImportSampleMap {
            nents: 2,
            dma_nents: 1,
            dma_len: 0x2000,
            ..Default::default()
        };
        map.ranges[0] = desc.ranges[0];
        map.ranges[1] = desc.ranges[1];
        let mut f = Facts::default();
        assert!(check_same_memory(&desc, &map, 0x2000, &mut f).is_ok());

        // Another page, a short DMA mapping, another model: each fails.
        let mut other = map;
        other.ranges[1] = r(0x9000, 0x1000);
        assert!(check_same_memory(&desc, &other, 0x2000, &mut f).is_err());
        let mut short = map;
        short.dma_len = 0x1000;
        assert!(check_same_memory(&desc, &short, 0x2000, &mut f).is_err());
        let mut dynamic = desc;
        dynamic.model = 3;
        assert!(check_same_memory(&dynamic, &map, 0x2000, &mut f).is_err());
    }
}
