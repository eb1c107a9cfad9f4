//! IOMMU_IOAS_MAP_FILE and the file's write access, with the real devices.
//!
//! A device-writable mapping (`IOMMU_IOAS_MAP_WRITEABLE`) of a file lets the
//! device write to it, as a `PROT_WRITE, MAP_SHARED` mmap(2) lets the CPU:
//! iommufd must refuse it when mmap(2) would. A descriptor opened without
//! write access (a VFIO dma-buf exported `O_RDONLY`, a memfd reopened
//! `O_RDONLY` through `/proc/self/fd`) gives EACCES; a memfd sealed with
//! `F_SEAL_WRITE` or `F_SEAL_FUTURE_WRITE` gives EPERM. Readable-only
//! mappings of the same descriptors keep working: edu reads through them,
//! and its writes fault in the IOMMU without reaching the memory. An O_RDWR
//! memfd mapped writable is the control: edu's write lands in the file.
//!
//! Each case first checks the reference, mmap(2) of the same descriptor with
//! `PROT_READ | PROT_WRITE, MAP_SHARED`, so that a refusal of MAP_FILE is
//! known to come from the descriptor and not from a broken setup.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use super::{
    blocked_dma_faults, expect_map_refused, first_mismatch, pattern, prepare_target, raw, usize_of,
    verify_target, Lab, BACKGROUND, BAR2, EXPORT_LEN, KIB, PATTERN_LEN, TARGET_OFF,
};
use crate::args::{hex_preview, size, span};
use crate::dmabuf::check_access;
use crate::errno::{expect_errno, Context, Error, Result};
use crate::iommufd::Access;
use crate::mmap::Mapping;
use crate::report::{Facts, Runner};
use crate::sys;

/// The read-only export: 64 KiB of BAR2 from 512 KiB, which no other part
/// of the story exports.
const RO_EXPORT: (u64, u64) = (512 * KIB, EXPORT_LEN);

/// The memfds: four pages, the pattern in the last one.
const MEMFD_LEN: u64 = 16 * KIB;
const MEMFD_DATA_OFF: u64 = TARGET_OFF;

/// IOVAs: above everything else the smoke story maps below edu's DMA limit
/// (the Rust exporter's buffers end at 0xf0_4000), below the 65536-range
/// dma-buf at 0x1000_0000.
const RO_DMABUF_IOVA: u64 = 0x300_0000;
const RO_MEMFD_IOVA: u64 = 0x320_0000;
const SEALED_IOVA: u64 = 0x340_0000;
const RW_MEMFD_IOVA: u64 = 0x360_0000;

const _: () = assert!(MEMFD_DATA_OFF + PATTERN_LEN <= MEMFD_LEN);
const _: () = assert!(RO_EXPORT.0 + RO_EXPORT.1 <= super::BAR2_SIZE);
const _: () = assert!(RO_DMABUF_IOVA + RO_EXPORT.1 <= RO_MEMFD_IOVA);
const _: () = assert!(RO_MEMFD_IOVA + MEMFD_LEN <= SEALED_IOVA);
const _: () = assert!(SEALED_IOVA + MEMFD_LEN <= RW_MEMFD_IOVA);
const _: () = assert!(RW_MEMFD_IOVA + MEMFD_LEN <= super::MANY_IOVA);

/// The seals that forbid writing a memfd, each of which mmap(2) answers
/// with EPERM for a writable shared mapping.
const WRITE_SEALS: [(libc::c_int, &str); 2] = [
    (libc::F_SEAL_WRITE, "F_SEAL_WRITE"),
    (libc::F_SEAL_FUTURE_WRITE, "F_SEAL_FUTURE_WRITE"),
];

/// The whole content of a test memfd: `BACKGROUND`, with `data` at
/// `MEMFD_DATA_OFF`.
fn memfd_image(data: &[u8]) -> Vec<u8> {
    let mut v = vec![BACKGROUND; usize_of(MEMFD_LEN)];
    let off = usize_of(MEMFD_DATA_OFF);
    v[off..off + data.len()].copy_from_slice(data);
    v
}

/// Where `got` differs from `want`, as an error naming the first byte.
pub(crate) fn compare(what: &str, got: &[u8], want: &[u8]) -> Result<()> {
    if got.len() != want.len() {
        return Err(Error::msg(format!(
            "{what} has {} bytes, expected {}",
            got.len(),
            want.len()
        )));
    }
    match first_mismatch(got, want) {
        None => Ok(()),
        Some(i) => Err(Error::msg(format!(
            "byte {i:#x} of {what} is {:#04x}, expected {:#04x} ({} of {} bytes differ)",
            got[i],
            want[i],
            got.iter().zip(want).filter(|(a, b)| a != b).count(),
            want.len()
        ))),
    }
}

/// Run the cases.
pub(super) fn run(r: &mut Runner<'_>, lab: &Lab) {
    r.section("MAP_FILE honours the file's write access");
    r.explain(
        "A device-writable IOMMU mapping of a file is a writable shared mapping, like\n\
         mmap(PROT_WRITE, MAP_SHARED): iommufd must refuse it for a descriptor opened without\n\
         write access (EACCES) and for a write-sealed memfd (EPERM). Read-only mappings of\n\
         them still work, and the IOMMU faults edu's writes through them.",
    );
    read_only_dma_buf(r, lab);
    read_only_memfd(r, lab);
    for (seal, seal_name) in WRITE_SEALS {
        sealed_memfd(r, lab, seal, seal_name);
    }
    writable_memfd(r, lab);
}

/// The reference: mmap(2) of `fd` with `PROT_READ | PROT_WRITE, MAP_SHARED`
/// fails with `errno`.
fn mmap_refused(r: &mut Runner<'_>, what: &str, fd: BorrowedFd<'_>, len: u64, errno: i32) {
    r.check(
        &format!(
            "reference: mmap(PROT_READ|PROT_WRITE, MAP_SHARED) of {what} fails with {}",
            crate::errno::name(errno)
        ),
        |f| {
            let e = expect_errno(
                Mapping::shared(fd, usize_of(len), 0).op("mmap(PROT_WRITE, MAP_SHARED)"),
                errno,
            )?;
            f.add(format!("kernel: {e}"));
            Ok(())
        },
    );
}

/// MAP_FILE of all `len` bytes of `fd` at `iova`, readable only; returns
/// whether it worked.
fn map_read_only(
    r: &mut Runner<'_>,
    lab: &Lab,
    what: &str,
    fd: BorrowedFd<'_>,
    len: u64,
    iova: u64,
) -> bool {
    r.check(
        &format!("MAP_FILE READABLE (not WRITEABLE) of {what} at IOVA {iova:#x} works"),
        |f| {
            let at = lab
                .iommufd
                .map_file_access(lab.ioas, fd, 0, len, iova, Access::ReadOnly)?;
            f.add(format!("IOVA {} mapped, device read-only", span(at, len)));
            Ok(())
        },
    )
}

/// IOMMU_IOAS_UNMAP of `[iova, iova + len)`, if it was mapped.
fn unmap(r: &mut Runner<'_>, lab: &Lab, mapped: bool, what: &str, iova: u64, len: u64) {
    if mapped {
        r.check(&format!("unmap {what} at IOVA {iova:#x}"), |f| {
            let n = lab.iommufd.unmap(lab.ioas, iova, len)?;
            f.add(format!("{} unmapped", size(n)));
            if n != len {
                return Err(Error::msg(format!("expected {}", size(len))));
            }
            Ok(())
        });
    }
}

/// Put `data` in edu's buffer and have edu write it to `iova`, which the
/// IOMMU maps read-only: edu reports completion, the IOMMU logs a write
/// fault at `iova`'s page (inside an expect-dmar-fault window).
///
/// `iova` must be a page edu has not read through: QEMU's intel-iommu keeps
/// the translation of a read in its IOTLB and drops a later write through
/// that read-only entry without reporting a fault (seen here: the write did
/// not land, and no fault was logged), while a page it has to walk the page
/// table for reports one.
fn write_is_blocked(
    r: &mut Runner<'_>,
    lab: &Lab,
    mapped: bool,
    iova: u64,
    data: &[u8],
    what: &str,
) {
    let dma_check =
        format!("edu DMA to the read-only IOVA {iova:#x} ({what}) completes (the IOMMU blocks it)");
    let staged = r.check(
        &format!("load a pattern into edu's buffer for the write to {what}"),
        |f| {
            if !mapped {
                return Err(Error::msg("skipped: nothing is mapped at the IOVA"));
            }
            lab.stage(data)?;
            f.add(format!("data {}", hex_preview(data, 12)));
            Ok(())
        },
    );
    if !staged {
        r.check(&dma_check, |_| {
            Err(Error::msg("skipped: the write was not set up"))
        });
        return;
    }
    let page = iova & !(4 * KIB - 1);
    blocked_dma_faults(
        r,
        &lab.edu,
        iova,
        data.len() as u64,
        &dma_check,
        &format!("the IOMMU reported a DMA write fault at IOVA {page:#x} ({what})"),
        Some(page),
    );
}

/// Case 1: a VFIO dma-buf of ivshmem's BAR2 exported `O_RDONLY`.
fn read_only_dma_buf(r: &mut Runner<'_>, lab: &Lab) {
    let (off, len) = RO_EXPORT;
    let what = "the O_RDONLY dma-buf";
    let fd = r.attempt(
        &format!(
            "export ivshmem BAR2 {} as a dma-buf with open_flags O_RDONLY",
            span(off, len)
        ),
        |f| {
            let fd = lab.ivshmem.export_dma_buf_flags(
                BAR2,
                &[RO_EXPORT],
                libc::O_RDONLY | libc::O_CLOEXEC,
            )?;
            f.add(format!("dma-buf fd {}, {}", raw(&fd), size(len)));
            check_access(&fd, libc::O_RDONLY, f)?;
            Ok(fd)
        },
    );
    let Some(fd) = fd else {
        return;
    };
    mmap_refused(r, what, fd.as_fd(), len, libc::EACCES);
    r.check(
        &format!(
            "MAP_FILE READABLE|WRITEABLE of {what} fails with EACCES: the descriptor has no \
             FMODE_WRITE"
        ),
        |f| expect_map_refused(lab, raw(&fd), 0, len, libc::EACCES, f),
    );
    let mapped = map_read_only(r, lab, what, fd.as_fd(), len, RO_DMABUF_IOVA);

    let bar_off = off + TARGET_OFF;
    let iova = RO_DMABUF_IOVA + TARGET_OFF;
    let want = pattern(0x11, PATTERN_LEN as usize);
    r.check(
        &format!("edu DMA from the read-only IOVA {iova:#x} reads BAR2 offset {bar_off:#x}"),
        |f| {
            if !mapped {
                return Err(Error::msg("skipped: the dma-buf is not mapped"));
            }
            prepare_target(&lab.bar2, bar_off);
            lab.bar2.write_bytes(usize_of(bar_off), &want);
            lab.expect_read(iova, &want, f)
        },
    );
    // The page before the one edu just read; verify_target's guard covers it.
    write_is_blocked(
        r,
        lab,
        mapped,
        iova - 4 * KIB,
        &pattern(0x12, PATTERN_LEN as usize),
        what,
    );
    r.check(
        &format!(
            "BAR2 offset {bar_off:#x} and the bytes around it are unchanged: the blocked \
             write never landed"
        ),
        |f| {
            if !mapped {
                return Err(Error::msg("skipped: the dma-buf is not mapped"));
            }
            verify_target(&lab.bar2, bar_off, &want, f)
        },
    );
    unmap(r, lab, mapped, what, RO_DMABUF_IOVA, len);
    r.check(&format!("close {what}"), |_| {
        sys::close(fd).op("close the O_RDONLY dma-buf")
    });
}

/// A memfd of `MEMFD_LEN` bytes made with `MFD_CLOEXEC | flags`, holding
/// `image`, through its own O_RDWR descriptor.
fn memfd_with(name: &CStr, flags: libc::c_uint, image: &[u8], f: &mut Facts) -> Result<File> {
    let file = File::from(sys::memfd_create_flags(name, flags).op("memfd_create")?);
    file.set_len(MEMFD_LEN).op("ftruncate the memfd")?;
    file.write_all_at(image, 0).op("pwrite the memfd")?;
    f.add(format!(
        "memfd fd {}, {}, {} at {}",
        file.as_raw_fd(),
        size(MEMFD_LEN),
        hex_preview(&image[usize_of(MEMFD_DATA_OFF)..], 8),
        span(MEMFD_DATA_OFF, PATTERN_LEN)
    ));
    Ok(file)
}

/// Check, with pread, that `file` holds exactly `want`.
fn verify_file(file: &File, want: &[u8], f: &mut Facts) -> Result<()> {
    let mut got = vec![0; want.len()];
    file.read_exact_at(&mut got, 0).op("pread the memfd")?;
    let off = usize_of(MEMFD_DATA_OFF);
    f.add(format!(
        "memfd {} reads {}",
        span(MEMFD_DATA_OFF, PATTERN_LEN),
        hex_preview(&got[off..off + usize_of(PATTERN_LEN)], 12)
    ));
    compare("the memfd", &got, want)?;
    f.add(format!("all {} bytes of the memfd as expected", want.len()));
    Ok(())
}

/// The part of a memfd image edu reads or writes.
fn data_of(image: &[u8]) -> &[u8] {
    let off = usize_of(MEMFD_DATA_OFF);
    &image[off..off + usize_of(PATTERN_LEN)]
}

/// Close memfd descriptors, reporting `close(2)`.
fn close_files(files: impl IntoIterator<Item = File>) -> Result<()> {
    for file in files {
        sys::close(OwnedFd::from(file)).op("close a memfd descriptor")?;
    }
    Ok(())
}

/// Case 2: a memfd reopened `O_RDONLY` through `/proc/self/fd`. The O_RDWR
/// descriptor stays open: what counts is the descriptor passed to MAP_FILE.
fn read_only_memfd(r: &mut Runner<'_>, lab: &Lab) {
    let what = "the O_RDONLY memfd descriptor";
    let image = memfd_image(&pattern(0x13, PATTERN_LEN as usize));
    let files = r.attempt(
        &format!(
            "a {} memfd holding a pattern, reopened O_RDONLY through /proc/self/fd",
            size(MEMFD_LEN)
        ),
        |f| {
            let rw = memfd_with(c"dmabuf-tool-ro", 0, &image, f)?;
            let path = format!("/proc/self/fd/{}", rw.as_raw_fd());
            let ro = File::open(&path).op(format!("open {path} O_RDONLY"))?;
            check_access(&ro, libc::O_RDONLY, f)?;
            Ok((rw, ro))
        },
    );
    let Some((rw, ro)) = files else {
        return;
    };
    mmap_refused(r, what, ro.as_fd(), MEMFD_LEN, libc::EACCES);
    r.check(
        &format!(
            "MAP_FILE READABLE|WRITEABLE of {what} fails with EACCES, though the process \
             also holds an O_RDWR one"
        ),
        |f| expect_map_refused(lab, ro.as_raw_fd(), 0, MEMFD_LEN, libc::EACCES, f),
    );
    let mapped = map_read_only(r, lab, what, ro.as_fd(), MEMFD_LEN, RO_MEMFD_IOVA);
    let iova = RO_MEMFD_IOVA + MEMFD_DATA_OFF;
    r.check(
        &format!("edu DMA from the read-only IOVA {iova:#x} reads the memfd's pattern"),
        |f| {
            if !mapped {
                return Err(Error::msg("skipped: the memfd is not mapped"));
            }
            lab.expect_read(iova, data_of(&image), f)
        },
    );
    // The page before the one edu just read; the whole file is compared.
    write_is_blocked(
        r,
        lab,
        mapped,
        iova - 4 * KIB,
        &pattern(0x14, PATTERN_LEN as usize),
        "the O_RDONLY memfd",
    );
    r.check(
        "the memfd is unchanged (pread): the blocked write never landed",
        |f| verify_file(&ro, &image, f),
    );
    unmap(r, lab, mapped, what, RO_MEMFD_IOVA, MEMFD_LEN);
    r.check("close both memfd descriptors", |_| close_files([ro, rw]));
}

/// Case 3: a memfd sealed with `seal` through its own O_RDWR descriptor.
fn sealed_memfd(r: &mut Runner<'_>, lab: &Lab, seal: libc::c_int, seal_name: &str) {
    let what = format!("the {seal_name} memfd");
    let image = memfd_image(&pattern(0x15, PATTERN_LEN as usize));
    let file = r.attempt(
        &format!(
            "a {} memfd (MFD_ALLOW_SEALING) holding a pattern, sealed with {seal_name}",
            size(MEMFD_LEN)
        ),
        |f| {
            let file = memfd_with(c"dmabuf-tool-sealed", libc::MFD_ALLOW_SEALING, &image, f)?;
            sys::add_seals(file.as_fd(), seal).op(format!("F_ADD_SEALS {seal_name}"))?;
            let seals = sys::seals(file.as_fd()).op("F_GET_SEALS")?;
            f.add(format!("F_GET_SEALS: {seals:#x}"));
            if seals & seal == 0 {
                return Err(Error::msg(format!("{seal_name} is not set")));
            }
            check_access(&file, libc::O_RDWR, f)?;
            Ok(file)
        },
    );
    let Some(file) = file else {
        return;
    };
    mmap_refused(r, &what, file.as_fd(), MEMFD_LEN, libc::EPERM);
    r.check(
        &format!(
            "MAP_FILE READABLE|WRITEABLE of {what} fails with EPERM, through an O_RDWR \
             descriptor"
        ),
        |f| expect_map_refused(lab, file.as_raw_fd(), 0, MEMFD_LEN, libc::EPERM, f),
    );
    let mapped = map_read_only(r, lab, &what, file.as_fd(), MEMFD_LEN, SEALED_IOVA);
    let iova = SEALED_IOVA + MEMFD_DATA_OFF;
    r.check(
        &format!("edu DMA from the read-only IOVA {iova:#x} reads {what}'s pattern"),
        |f| {
            if !mapped {
                return Err(Error::msg("skipped: the memfd is not mapped"));
            }
            lab.expect_read(iova, data_of(&image), f)
        },
    );
    unmap(r, lab, mapped, &what, SEALED_IOVA, MEMFD_LEN);
    r.check(&format!("close {what}"), |_| close_files([file]));
}

/// Case 4, the control: an O_RDWR memfd mapped writable; edu's write lands
/// in the file, exactly where it should.
fn writable_memfd(r: &mut Runner<'_>, lab: &Lab) {
    let what = "the O_RDWR memfd";
    let before = memfd_image(&pattern(0x16, PATTERN_LEN as usize));
    let file = r.attempt(
        &format!(
            "control: a {} memfd holding a pattern, O_RDWR",
            size(MEMFD_LEN)
        ),
        |f| {
            let file = memfd_with(c"dmabuf-tool-rw", 0, &before, f)?;
            check_access(&file, libc::O_RDWR, f)?;
            Ok(file)
        },
    );
    let Some(file) = file else {
        return;
    };
    let mapped = r.check(
        &format!("control: MAP_FILE READABLE|WRITEABLE of {what} at IOVA {RW_MEMFD_IOVA:#x} works"),
        |f| {
            let at = lab
                .iommufd
                .map_file(lab.ioas, file.as_fd(), 0, MEMFD_LEN, RW_MEMFD_IOVA)?;
            f.add(format!(
                "IOVA {} mapped, device read/write",
                span(at, MEMFD_LEN)
            ));
            Ok(())
        },
    );
    let iova = RW_MEMFD_IOVA + MEMFD_DATA_OFF;
    let data = pattern(0x17, PATTERN_LEN as usize);
    r.check(
        &format!(
            "control: edu DMA to IOVA {iova:#x} lands in the memfd at offset \
             {MEMFD_DATA_OFF:#x} and nowhere else (pread)"
        ),
        |f| {
            if !mapped {
                return Err(Error::msg("skipped: the memfd is not mapped"));
            }
            lab.dma_to(&data, iova, f)?;
            verify_file(&file, &memfd_image(&data), f)
        },
    );
    unmap(r, lab, mapped, what, RW_MEMFD_IOVA, MEMFD_LEN);
    r.check(&format!("close {what}"), |_| close_files([file]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images() {
        let data = pattern(1, PATTERN_LEN as usize);
        let img = memfd_image(&data);
        assert_eq!(img.len() as u64, MEMFD_LEN);
        assert_eq!(data_of(&img), &data[..]);
        let off = MEMFD_DATA_OFF as usize;
        assert!(img[..off].iter().all(|&b| b == BACKGROUND));
        assert!(img[off + data.len()..].iter().all(|&b| b == BACKGROUND));
        // Two images differ exactly in the data.
        let other = memfd_image(&pattern(2, PATTERN_LEN as usize));
        let e = compare("the memfd", &other, &img).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "byte {off:#x} of the memfd is {:#04x}, expected {:#04x} \
                 (512 of {MEMFD_LEN} bytes differ)",
                other[off], img[off]
            )
        );
        assert!(compare("the memfd", &img, &img).is_ok());
        let e = compare("the memfd", &img[1..], &img).unwrap_err();
        assert!(e.to_string().contains("has 16383 bytes"), "{e}");
    }

    #[test]
    fn file_verification() {
        let mut f = Facts::default();
        let image = memfd_image(&pattern(3, PATTERN_LEN as usize));
        let file = memfd_with(c"dmabuf-tool-test", 0, &image, &mut f).unwrap();
        verify_file(&file, &image, &mut f).unwrap();
        // One stray byte outside the data is caught.
        file.write_all_at(&[!BACKGROUND], 0).unwrap();
        let e = verify_file(&file, &image, &mut f).unwrap_err();
        assert!(e.to_string().starts_with("byte 0x0 of the memfd"), "{e}");
    }
}
