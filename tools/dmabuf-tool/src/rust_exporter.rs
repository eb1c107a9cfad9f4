//! A dma-buf exported by a Rust module, imported by iommufd.
//!
//! `samples/rust/rust_dmabuf_exporter.rs` exports, through `kernel::dma_buf`,
//! a `Model::Pinned` buffer of four pages of system memory filled with a
//! pattern. iommufd maps it with IOMMU_IOAS_MAP_FILE into the IOAS edu is
//! attached to, and edu's DMA engine reads every page through the IOMMU: the
//! bytes must be the pattern at the right buffer offset. The sample's
//! `Model::Dynamic` buffer is refused, since iommufd cannot follow memory that
//! moves.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::args::{hex_preview, size, span};
use crate::dmabuf;
use crate::edu::{Edu, EDU_BUFFER, MAX_DMA};
use crate::errno::{expect_errno, Context, Error, Result};
use crate::iommufd::Iommufd;
use crate::mmap::Mapping;
use crate::report::{Facts, Runner};
use crate::sys;

/// The sample's device node, created by devtmpfs when the module loads.
pub const DEVICE: &str = "/dev/rust_dmabuf_exporter";
/// The sample's name, which its dma-bufs carry as `exp_name`.
pub(crate) const EXPORTER: &str = "rust_dmabuf_exporter";

/// `RUST_DMABUF_EXPORT`: a descriptor of the open file's `Model::Dynamic` buffer.
pub const EXPORT_DYNAMIC: u32 = sys::io(0xdb, 0x20);
/// `RUST_DMABUF_MIGRATE`: the open file's buffer moves to new pages, which
/// hold the pattern of the next generation.
pub const MIGRATE: u32 = sys::io(0xdb, 0x21);
/// `RUST_DMABUF_EXPORT_PINNED`: a new `Model::Pinned` buffer holding `pattern`.
pub(crate) const EXPORT_PINNED: u32 = sys::io(0xdb, 0x22);

const PAGE: u64 = 4096;
/// Pages in each of the sample's buffers (its `NR_PAGES`).
pub const NR_PAGES: u64 = 4;
pub const BUF_LEN: u64 = NR_PAGES * PAGE;

/// Where the pinned buffer is mapped and where the dynamic one is refused:
/// IOVAs nothing else in the story uses, below edu's 28-bit DMA limit.
const PINNED_IOVA: u64 = 0xe0_0000;
const DYNAMIC_IOVA: u64 = 0xf0_0000;

/// What edu reads of each page: one DMA's worth, from 0x100 into the page.
const READ_OFF: u64 = 0x100;
const READ_LEN: u64 = MAX_DMA;
/// What our page holds before edu copies what it read there.
const SENTINEL: u8 = 0xee;

const _: () = assert!(READ_OFF + READ_LEN <= PAGE);
const _: () = assert!(PINNED_IOVA + BUF_LEN <= DYNAMIC_IOVA);
const _: () = assert!(DYNAMIC_IOVA + BUF_LEN <= crate::edu::DMA_LIMIT);

/// The sample's `pattern()` of generation 0, what pinned buffers and new
/// dynamic ones hold: `len` bytes of the buffer from offset `start`.
pub fn pattern(start: u64, len: usize) -> Vec<u8> {
    pattern_of(start, len, 0)
}

/// The sample's `pattern()` of `generation` (the moves of a dynamic buffer):
/// the little-endian 32-bit word at buffer offset `o` (a multiple of 4) is
/// `o ^ 0xdb5a_a5db ^ generation * 0x0101_0101`. Returns `len` bytes of the
/// buffer from offset `start`.
pub fn pattern_of(start: u64, len: usize, generation: u32) -> Vec<u8> {
    (start..start + len as u64)
        .map(|o| {
            ((o & !3) as u32 ^ 0xdb5a_a5db ^ generation.wrapping_mul(0x0101_0101)).to_le_bytes()
                [(o & 3) as usize]
        })
        .collect()
}

/// Opens the sample's device: a new dynamic buffer of generation 0.
pub fn open() -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(DEVICE)
        .op(format!("open {DEVICE} (is rust_dmabuf_exporter loaded?)"))
}

/// A new descriptor of the dynamic buffer of `dev`, from `open()`.
pub fn export_dynamic(dev: &File) -> Result<OwnedFd> {
    export(dev, EXPORT_DYNAMIC, "RUST_DMABUF_EXPORT")
}

/// Moves the dynamic buffer of `dev` to new pages, of the next generation.
pub fn migrate(dev: &File) -> Result<()> {
    sys::ioctl_none(dev.as_fd(), MIGRATE).op("RUST_DMABUF_MIGRATE")?;
    Ok(())
}

/// `ioctl` `request` on the sample's device: a new dma-buf descriptor.
fn export(dev: &File, request: u32, what: &'static str) -> Result<OwnedFd> {
    sys::ioctl_new_fd(dev.as_fd(), request).op(what)
}

/// The edu DMA engine reading through the IOAS, and the page of our memory
/// (mapped in the IOAS at `bounce_iova`) where it copies what it read: edu's
/// own buffer cannot be read through BAR0.
struct Reader<'a> {
    edu: &'a Edu,
    bounce: &'a Mapping,
    bounce_iova: u64,
}

impl Reader<'_> {
    /// edu reads `READ_LEN` bytes at `iova` into its buffer, then writes them
    /// to our page; returns them.
    fn read(&self, iova: u64, f: &mut Facts) -> Result<Vec<u8>> {
        let len = READ_LEN as usize;
        self.bounce.fill(0, len, SENTINEL);
        let t_in = self.edu.to_device(iova, EDU_BUFFER, READ_LEN)?;
        let t_out = self.edu.to_ram(EDU_BUFFER, self.bounce_iova, READ_LEN)?;
        f.add(format!(
            "edu: IOVA {iova:#x} -> edu buffer {EDU_BUFFER:#x} -> IOVA {:#x} ({} + {} ms)",
            self.bounce_iova,
            t_in.as_millis(),
            t_out.as_millis()
        ));
        Ok(self.bounce.to_vec(0, len))
    }
}

/// Check that page `page` of the pinned buffer, mapped at `PINNED_IOVA`,
/// holds the sample's pattern as edu sees it.
fn check_page(reader: &Reader<'_>, page: u64, f: &mut Facts) -> Result<()> {
    let off = page * PAGE + READ_OFF;
    let got = reader.read(PINNED_IOVA + off, f)?;
    let want = pattern(off, got.len());
    f.add(format!("read {}", hex_preview(&got, 12)));
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        return Err(Error::msg(format!(
            "byte {:#x} of the buffer reads {:#04x}, expected {:#04x} ({} of {} bytes differ)",
            off + i as u64,
            got[i],
            want[i],
            got.iter().zip(&want).filter(|(a, b)| a != b).count(),
            want.len()
        )));
    }
    f.add(format!(
        "all {} bytes are the pattern at buffer offset {off:#x}",
        want.len()
    ));
    Ok(())
}

/// Run the Rust exporter's part of the story in the IOAS `ioas` of `iommufd`,
/// which edu is attached to (with bus mastering on); `bounce` is a page of
/// our memory mapped in it at `bounce_iova`. Every mapping made here is
/// removed and every descriptor closed before returning.
pub fn run(
    r: &mut Runner<'_>,
    iommufd: &Iommufd,
    ioas: u32,
    edu: &Edu,
    bounce: &Mapping,
    bounce_iova: u64,
) {
    r.section("A dma-buf exported by a Rust module");
    r.explain(
        "rust_dmabuf_exporter exports system memory through the kernel::dma_buf Rust\n\
         abstraction. iommufd imports any exporter that describes its memory with\n\
         get_memory, not only VFIO: edu must read the Rust exporter's pages through the IOMMU.\n\
         Memory that may move (the DYNAMIC model) is refused.",
    );
    let Some(dev) = r.attempt(&format!("open {DEVICE}"), |f| {
        let dev = open()?;
        f.add("the sample exported the open file's DYNAMIC buffer");
        Ok(dev)
    }) else {
        return;
    };

    let pinned = r.attempt(
        &format!(
            "RUST_DMABUF_EXPORT_PINNED returns a {} dma-buf whose exporter is {EXPORTER}",
            size(BUF_LEN)
        ),
        |f| {
            let fd = export(&dev, EXPORT_PINNED, "RUST_DMABUF_EXPORT_PINNED")?;
            dmabuf::check_exporter(&fd, EXPORTER, BUF_LEN, f)?;
            Ok(fd)
        },
    );
    let mapped = pinned.as_ref().is_some_and(|fd| {
        r.check(
            &format!(
                "MAP_FILE of the Rust exporter's PINNED dma-buf at IOVA {PINNED_IOVA:#x} works: \
                 iommufd imports its pages through get_memory"
            ),
            |f| {
                let iova = iommufd.map_file(ioas, fd.as_fd(), 0, BUF_LEN, PINNED_IOVA)?;
                f.add(format!(
                    "IOVA {} -> the exporter's {NR_PAGES} pages",
                    span(iova, BUF_LEN)
                ));
                Ok(())
            },
        )
    });
    let reader = Reader {
        edu,
        bounce,
        bounce_iova,
    };
    for page in 0..NR_PAGES {
        let iova = PINNED_IOVA + page * PAGE + READ_OFF;
        r.check(
            &format!(
                "edu DMA reads {READ_LEN} bytes at IOVA {iova:#x} through the IOMMU: the \
                 exporter's pattern for page {page}, offset {READ_OFF:#x}"
            ),
            |f| {
                if !mapped {
                    return Err(Error::msg("skipped: the dma-buf is not mapped"));
                }
                check_page(&reader, page, f)
            },
        );
    }
    if mapped {
        r.check("unmap the Rust exporter's PINNED dma-buf", |f| {
            let n = iommufd.unmap(ioas, PINNED_IOVA, BUF_LEN)?;
            f.add(format!("{} unmapped", size(n)));
            if n != BUF_LEN {
                return Err(Error::msg(format!("expected {}", size(BUF_LEN))));
            }
            Ok(())
        });
    }

    let dynamic = r.attempt(
        "RUST_DMABUF_EXPORT returns the open file's DYNAMIC dma-buf",
        |f| {
            let fd = export_dynamic(&dev)?;
            f.add(format!(
                "dma-buf fd {}: exp_name {}",
                fd.as_raw_fd(),
                dmabuf::fdinfo(&fd, "exp_name")?
            ));
            Ok(fd)
        },
    );
    if let Some(fd) = &dynamic {
        r.check(
            "MAP_FILE of the Rust exporter's DYNAMIC dma-buf fails with EOPNOTSUPP: \
             iommufd accepts only PINNED and REVOCABLE memory, and the attach is refused",
            |f| {
                let res = iommufd.map_file(ioas, fd.as_fd(), 0, BUF_LEN, DYNAMIC_IOVA);
                if res.is_ok() {
                    let _ = iommufd.unmap(ioas, DYNAMIC_IOVA, BUF_LEN);
                }
                let e = expect_errno(res, libc::EOPNOTSUPP)?;
                f.add(format!("kernel: {e}"));
                Ok(())
            },
        );
    }

    crate::import_sample::run(r, pinned.as_ref(), dynamic.as_ref(), BUF_LEN);

    for (fd, what) in [(pinned, "PINNED"), (dynamic, "DYNAMIC")] {
        if let Some(fd) = fd {
            r.check(&format!("close the {what} dma-buf"), |_| {
                sys::close(fd).op(format!("close the {what} dma-buf"))
            });
        }
    }
    r.check(&format!("close {DEVICE}"), |_| {
        sys::close(dev.into()).op(format!("close {DEVICE}"))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_the_sample() {
        // Words 0 and 1: 0 ^ 0xdb5aa5db, 4 ^ 0xdb5aa5db, little-endian.
        assert_eq!(
            pattern(0, 8),
            [0xdb, 0xa5, 0x5a, 0xdb, 0xdf, 0xa5, 0x5a, 0xdb]
        );
        // Any start, even inside a word.
        assert_eq!(pattern(0x1002, 4), pattern(0x1000, 8)[2..6]);
        assert_eq!(pattern(0x1000, 4), [0xdb, 0xb5, 0x5a, 0xdb]);
        // Every byte of a generation differs from the one before.
        assert_eq!(pattern_of(0x1000, 4, 1), [0xda, 0xb4, 0x5b, 0xda]);
        for g in 0..255 {
            let (a, b) = (pattern_of(0x2344, 4, g), pattern_of(0x2344, 4, g + 1));
            assert!(a.iter().zip(&b).all(|(x, y)| x != y));
        }
    }

    #[test]
    fn pages_differ() {
        // What edu reads of one page never passes for another page's.
        let pages: Vec<_> = (0..NR_PAGES)
            .map(|p| pattern(p * PAGE + READ_OFF, READ_LEN as usize))
            .collect();
        for (i, a) in pages.iter().enumerate() {
            for b in &pages[i + 1..] {
                assert!(a.chunks(4).zip(b.chunks(4)).all(|(x, y)| x != y));
            }
            assert!(!a.iter().all(|&b| b == SENTINEL));
        }
    }

    #[test]
    fn ioctl_numbers() {
        assert_eq!(EXPORT_DYNAMIC, 0xdb20);
        assert_eq!(MIGRATE, 0xdb21);
        assert_eq!(EXPORT_PINNED, 0xdb22);
    }
}
