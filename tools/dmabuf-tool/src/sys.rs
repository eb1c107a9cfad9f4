//! Linux uAPI definitions and the raw system calls behind them.
//!
//! The VFIO structs and constants come from rust-vmm's `vfio-bindings` and the
//! iommufd ones from `iommufd-bindings` (bindgen output of the upstream
//! headers); their `_IO` ioctl numbers, which bindgen cannot translate, are
//! encoded here from the crates' type and command numbers. What neither crate
//! has (`linux/udmabuf.h`, the series' additions to `linux/kvm.h`, the C import
//! sample's `samples/c/dmabuf_import_sample.h`) build.rs generates with
//! bindgen from the patched kernel's own headers, in [`crate::uapi`]. Each
//! struct size is checked at compile time, and each ioctl number by a unit
//! test against its hand-computed value. Every `unsafe` system call of the
//! tool lives here (and in `mmap.rs`), behind a safe function.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// `_IO(type, nr)` from `include/uapi/asm-generic/ioctl.h`: direction and size
/// are zero, so the number is `type << 8 | nr`. VFIO and iommufd encode every
/// ioctl this way and carry the size in the struct's first field instead.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ((ty as u32) << 8) | nr as u32
}

/// `_IOW(type, nr, size)`: userspace writes the argument (1 << 30), its size
/// in bits 16..30, then `type << 8 | nr`.
pub const fn iow(ty: u8, nr: u8, size: usize) -> u32 {
    (1 << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `_IOWR(type, nr, size)`: read and write (3 << 30), the argument's size in
/// bits 16..30, then `type << 8 | nr`.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    (3 << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

// ---------------------------------------------------------------------------
// vfio.h: structs and constants from vfio-bindings 0.7 (Linux 7.2 headers,
// which have the DMA_BUF feature); the ioctl numbers are `_IO` macros, which
// bindgen does not translate, so they are encoded here from its type and base.

use vfio_bindings::bindings::vfio as vfio_h;

pub use vfio_h::{
    vfio_device_attach_iommufd_pt as VfioDeviceAttachIommufdPt,
    vfio_device_bind_iommufd as VfioDeviceBindIommufd, vfio_device_feature as VfioDeviceFeature,
    vfio_device_feature_dma_buf as VfioDeviceFeatureDmaBuf,
    vfio_region_dma_range as VfioRegionDmaRange, vfio_region_info as VfioRegionInfo,
    VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_ROM_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`.
const fn vfio_io(nr: u32) -> u32 {
    io(vfio_h::VFIO_TYPE, (vfio_h::VFIO_BASE + nr) as u8)
}

pub const VFIO_DEVICE_GET_REGION_INFO: u32 = vfio_io(8);
pub const VFIO_DEVICE_FEATURE: u32 = vfio_io(17);
pub const VFIO_DEVICE_BIND_IOMMUFD: u32 = vfio_io(18);
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u32 = vfio_io(19);

const _: () = assert!(size_of::<VfioDeviceBindIommufd>() == 24);
const _: () = assert!(size_of::<VfioDeviceAttachIommufdPt>() == 16);
const _: () = assert!(size_of::<VfioRegionInfo>() == 32);
// The header only: the crate's `data: __IncompleteArrayField<u8>` takes no room.
const _: () = assert!(size_of::<VfioDeviceFeature>() == 8);
const _: () = assert!(std::mem::offset_of!(VfioDeviceFeature, data) == 8);
const _: () = assert!(size_of::<VfioRegionDmaRange>() == 16);
// Likewise `dma_ranges: __IncompleteArrayField<vfio_region_dma_range>`.
const _: () = assert!(size_of::<VfioDeviceFeatureDmaBuf>() == 16);
const _: () = assert!(std::mem::offset_of!(VfioDeviceFeatureDmaBuf, dma_ranges) == 16);

/// The argument of `VFIO_DEVICE_FEATURE` with `GET | DMA_BUF`, laid out as the
/// kernel reads it: `vfio_device_feature` header, `vfio_device_feature_dma_buf`
/// in its `data[]`, then `nr_ranges` ranges. `argsz` covers all of it.
pub fn dma_buf_feature_arg(
    region_index: u32,
    open_flags: u32,
    ranges: &[VfioRegionDmaRange],
) -> Vec<u8> {
    let len =
        size_of::<VfioDeviceFeature>() + size_of::<VfioDeviceFeatureDmaBuf>() + size_of_val(ranges);
    let mut buf = Vec::with_capacity(len);
    let words32 = [
        len as u32,                                            // argsz
        VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF, // flags
        region_index,
        open_flags,
        0, // flags: must be 0
        ranges.len() as u32,
    ];
    for w in words32 {
        buf.extend_from_slice(&w.to_ne_bytes());
    }
    for r in ranges {
        buf.extend_from_slice(&r.offset.to_ne_bytes());
        buf.extend_from_slice(&r.length.to_ne_bytes());
    }
    debug_assert_eq!(buf.len(), len);
    buf
}

// ---------------------------------------------------------------------------
// iommufd.h: structs, command numbers and map flags from iommufd-bindings 0.2
// (Linux 7.1 headers); the ioctl numbers are `_IO` macros, which bindgen does
// not translate, so they are encoded here from its type and command numbers.

use iommufd_bindings as iommufd_h;

pub use iommufd_h::{
    iommu_destroy as IommuDestroy, iommu_ioas_alloc as IommuIoasAlloc,
    iommu_ioas_map as IommuIoasMap, iommu_ioas_map_file as IommuIoasMapFile,
    iommu_ioas_unmap as IommuIoasUnmap,
};

/// `_IO(IOMMUFD_TYPE, cmd)`.
const fn iommufd_io(cmd: u32) -> u32 {
    io(iommufd_h::IOMMUFD_TYPE, cmd as u8)
}

pub const IOMMU_DESTROY: u32 = iommufd_io(iommufd_h::IOMMUFD_CMD_DESTROY);
pub const IOMMU_IOAS_ALLOC: u32 = iommufd_io(iommufd_h::IOMMUFD_CMD_IOAS_ALLOC);
pub const IOMMU_IOAS_MAP: u32 = iommufd_io(iommufd_h::IOMMUFD_CMD_IOAS_MAP);
pub const IOMMU_IOAS_UNMAP: u32 = iommufd_io(iommufd_h::IOMMUFD_CMD_IOAS_UNMAP);
pub const IOMMU_IOAS_MAP_FILE: u32 = iommufd_io(iommufd_h::IOMMUFD_CMD_IOAS_MAP_FILE);

/// `enum iommufd_ioas_map_flags`, whose constants bindgen prefixes with the
/// enum's name.
pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 =
    iommufd_h::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA;
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 =
    iommufd_h::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE;
pub const IOMMU_IOAS_MAP_READABLE: u32 = iommufd_h::iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE;

const _: () = assert!(size_of::<IommuDestroy>() == 8);
const _: () = assert!(size_of::<IommuIoasAlloc>() == 12);
const _: () = assert!(size_of::<IommuIoasMap>() == 40);
const _: () = assert!(size_of::<IommuIoasMapFile>() == 40);
const _: () = assert!(size_of::<IommuIoasUnmap>() == 24);

// ---------------------------------------------------------------------------
// samples/c/dmabuf_import_sample.h and include/uapi/linux/udmabuf.h: the
// structs and constants are generated by build.rs (bindgen over the sample's
// header and the patched kernel's usr/include); bindgen also checks each
// struct's size and field offsets at compile time. The ioctl numbers are
// `_IOWR`/`_IOW` macros, which bindgen does not translate: encoded here.

pub use crate::uapi::{
    dmabuf_import_sample_describe as ImportSampleDescribe,
    dmabuf_import_sample_map as ImportSampleMap, dmabuf_import_sample_range as ImportSampleRange,
    udmabuf_create as UdmabufCreate, udmabuf_create_item as UdmabufCreateItem,
    udmabuf_create_list as UdmabufCreateList,
    DMABUF_IMPORT_SAMPLE_MAP_PCI as IMPORT_SAMPLE_MAP_PCI, UDMABUF_FLAGS_CLOEXEC,
};

/// `DMABUF_IMPORT_SAMPLE_RANGES`: ranges the sample copies out.
pub const IMPORT_SAMPLE_RANGES: usize = crate::uapi::DMABUF_IMPORT_SAMPLE_RANGES as usize;

pub const DMABUF_IMPORT_SAMPLE_DESCRIBE: u32 = iowr(0xdb, 0x00, size_of::<ImportSampleDescribe>());
pub const DMABUF_IMPORT_SAMPLE_MAP: u32 = iowr(0xdb, 0x01, size_of::<ImportSampleMap>());

pub const UDMABUF_CREATE: u32 = iow(b'u', 0x42, size_of::<UdmabufCreate>());
/// The size in the number is the header's only: the items follow it.
pub const UDMABUF_CREATE_LIST: u32 = iow(b'u', 0x43, size_of::<UdmabufCreateList>());

/// The argument of `UDMABUF_CREATE_LIST`, laid out as the kernel reads it:
/// the `udmabuf_create_list` header with `count` = `items.len()`, then the
/// items.
pub fn udmabuf_create_list_arg(flags: u32, items: &[UdmabufCreateItem]) -> Vec<u8> {
    let len = size_of::<UdmabufCreateList>() + size_of_val(items);
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&(items.len() as u32).to_ne_bytes());
    for it in items {
        buf.extend_from_slice(&it.memfd.to_ne_bytes());
        buf.extend_from_slice(&it.__pad.to_ne_bytes());
        buf.extend_from_slice(&it.offset.to_ne_bytes());
        buf.extend_from_slice(&it.size.to_ne_bytes());
    }
    debug_assert_eq!(buf.len(), len);
    buf
}

// ---------------------------------------------------------------------------
// System calls

/// Marker for the fixed-size uAPI structs above.
///
/// # Safety
///
/// Implementors are `#[repr(C)]` plain-old-data structs for which every bit
/// pattern is valid, and every ioctl they are passed to reads and writes at
/// most `size_of::<Self>()` bytes through its argument pointer.
pub unsafe trait IoctlArg {}

// SAFETY: all of these are `#[repr(C)]` structs of integers (any bit pattern is
// valid) whose first field tells the kernel their size; VFIO and iommufd copy
// at most that many bytes in and out (`copy_struct_from_user` / `argsz`).
unsafe impl IoctlArg for VfioDeviceBindIommufd {}
// SAFETY: as above.
unsafe impl IoctlArg for VfioDeviceAttachIommufdPt {}
// SAFETY: as above; we pass argsz == size_of, so the kernel writes no
// capability chain beyond the struct.
unsafe impl IoctlArg for VfioRegionInfo {}
// SAFETY: as above.
unsafe impl IoctlArg for IommuDestroy {}
// SAFETY: as above.
unsafe impl IoctlArg for IommuIoasAlloc {}
// SAFETY: as above.
unsafe impl IoctlArg for IommuIoasMap {}
// SAFETY: as above.
unsafe impl IoctlArg for IommuIoasMapFile {}
// SAFETY: as above.
unsafe impl IoctlArg for IommuIoasUnmap {}
// SAFETY: `#[repr(C)]` integers; the sample's ioctl numbers encode exactly
// this size, and it copies at most that many bytes in and out.
unsafe impl IoctlArg for ImportSampleDescribe {}
// SAFETY: as above.
unsafe impl IoctlArg for ImportSampleMap {}
// SAFETY: `#[repr(C)]` integers; UDMABUF_CREATE encodes exactly this size,
// and udmabuf_ioctl_create() copies that many bytes in and writes none back.
unsafe impl IoctlArg for UdmabufCreate {}

/// `ioctl(fd, request, arg)` for a fixed-size uAPI struct; returns the
/// ioctl's non-negative result or the errno.
pub fn ioctl<T: IoctlArg>(fd: BorrowedFd<'_>, request: u32, arg: &mut T) -> io::Result<i32> {
    // SAFETY: `fd` is a live descriptor for the duration of the call; `arg` is
    // an exclusive reference to a `T`, which by the `IoctlArg` contract the
    // kernel accesses only within `size_of::<T>()` bytes, and any bytes it
    // writes back form a valid `T`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::Ioctl, arg as *mut T) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `VFIO_DEVICE_FEATURE` with `GET | DMA_BUF`: create a dma-buf from `ranges`
/// of region `region_index` and return its new file descriptor.
pub fn vfio_feature_dma_buf(
    device: BorrowedFd<'_>,
    region_index: u32,
    open_flags: u32,
    ranges: &[VfioRegionDmaRange],
) -> io::Result<OwnedFd> {
    let mut arg = DmaBufFeatureArg::new(region_index, open_flags, ranges);
    vfio_feature_dma_buf_arg(device, &mut arg)
}

/// The argument of `VFIO_DEVICE_FEATURE(GET | DMA_BUF)`, built once from
/// [`dma_buf_feature_arg`] so that it can be passed to
/// [`vfio_feature_dma_buf_arg`] many times without allocating: `failnth`
/// must make no system call (a heap growth) between arming a fault and the
/// ioctl.
#[derive(Debug, Clone)]
pub struct DmaBufFeatureArg(Vec<u8>);

impl DmaBufFeatureArg {
    pub fn new(region_index: u32, open_flags: u32, ranges: &[VfioRegionDmaRange]) -> Self {
        DmaBufFeatureArg(dma_buf_feature_arg(region_index, open_flags, ranges))
    }
}

/// `vfio_feature_dma_buf` with its argument built beforehand: one ioctl,
/// nothing allocated.
pub fn vfio_feature_dma_buf_arg(
    device: BorrowedFd<'_>,
    arg: &mut DmaBufFeatureArg,
) -> io::Result<OwnedFd> {
    // SAFETY: `arg.0` is laid out as the kernel expects (only
    // `dma_buf_feature_arg` builds one): `argsz` is its whole length and
    // `nr_ranges` equals the number of ranges it holds, so the kernel's reads
    // (`copy_from_user` of the header, `memdup_array_user` of the ranges) stay
    // inside it. The DMA_BUF GET feature writes nothing back through the
    // pointer; it returns the new fd as the ioctl result.
    unsafe { ioctl_bytes_new_fd(device, VFIO_DEVICE_FEATURE, &mut arg.0) }
}

/// `UDMABUF_CREATE_LIST` on `/dev/udmabuf`: a dma-buf of `items` (memfd
/// ranges, in buffer order); returns its new file descriptor.
pub fn udmabuf_create_list(
    dev: BorrowedFd<'_>,
    flags: u32,
    items: &[UdmabufCreateItem],
) -> io::Result<OwnedFd> {
    let mut arg = udmabuf_create_list_arg(flags, items);
    // SAFETY: `arg` is the header and then exactly `count` items
    // (`udmabuf_create_list_arg`): udmabuf_ioctl_create_list() copies the
    // header, then `count` items after it (memdup_user), and writes nothing
    // back; the new fd is the ioctl result.
    unsafe { ioctl_bytes_new_fd(dev, UDMABUF_CREATE_LIST, &mut arg) }
}

/// `ioctl(fd, request, buf)` for a request whose argument is the
/// variable-size layout in `buf` and whose result is a new descriptor.
///
/// # Safety
///
/// `buf` must hold the whole argument of `request`: every byte the kernel
/// reads or writes through the pointer lies inside it, and on success the
/// ioctl's result is a new descriptor.
unsafe fn ioctl_bytes_new_fd(
    fd: BorrowedFd<'_>,
    request: u32,
    buf: &mut [u8],
) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is a live descriptor for the duration of the call; `buf`
    // is exclusively borrowed and, by the caller's contract, holds every byte
    // the kernel accesses.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::Ioctl, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the ioctl returned a new descriptor that nothing else
    // in this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// `ioctl(fd, request, 0)` for an `_IO` request without an argument;
/// returns the ioctl's non-negative result or the errno.
pub fn ioctl_none(fd: BorrowedFd<'_>, request: u32) -> io::Result<i32> {
    // SAFETY: `fd` is a live descriptor for the duration of the call, and the
    // argument 0 points at none of our memory.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::Ioctl, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `ioctl(fd, request, 0)` for an `_IO` request without an argument that
/// returns a new file descriptor, such as the Rust dma-buf exporter sample's
/// exports.
pub fn ioctl_new_fd(fd: BorrowedFd<'_>, request: u32) -> io::Result<OwnedFd> {
    let rc = ioctl_none(fd, request)?;
    // SAFETY: on success the ioctl returned a new descriptor that nothing else
    // in this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// `ioctl(fd, request, arg)` for a fixed-size uAPI struct that returns a new
/// file descriptor, such as `UDMABUF_CREATE`.
pub fn ioctl_arg_new_fd<T: IoctlArg>(
    fd: BorrowedFd<'_>,
    request: u32,
    arg: &mut T,
) -> io::Result<OwnedFd> {
    let rc = ioctl(fd, request, arg)?;
    // SAFETY: on success the ioctl returned a new descriptor that nothing else
    // in this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// `memfd_create(name, MFD_CLOEXEC)`.
pub fn memfd_create(name: &CStr) -> io::Result<OwnedFd> {
    memfd_create_flags(name, 0)
}

/// `memfd_create(name, MFD_CLOEXEC | flags)` (`MFD_ALLOW_SEALING`, ...).
pub fn memfd_create_flags(name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fcntl(fd, F_ADD_SEALS, seals)`: seal a memfd (`F_SEAL_WRITE`, ...).
pub fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor for the duration of the call; the
    // argument is an integer, no pointer.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `fcntl(fd, F_GET_SEALS)`: the seals of a memfd.
pub fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    fcntl_get(fd, libc::F_GET_SEALS)
}

/// `fcntl(fd, F_GETFL)`: the file's access mode and status flags.
pub fn status_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    fcntl_get(fd, libc::F_GETFL)
}

/// `fcntl(fd, cmd)` for a `cmd` that takes no argument and returns a value.
fn fcntl_get(fd: BorrowedFd<'_>, cmd: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: `fd` is a live descriptor for the duration of the call; the
    // commands passed here (F_GET_SEALS, F_GETFL) take no argument.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), cmd) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The effective user id, `geteuid(2)`.
pub fn euid() -> u32 {
    // SAFETY: geteuid() takes no argument, touches none of our memory and
    // cannot fail.
    unsafe { libc::geteuid() }
}

/// Copy `out.len()` bytes of `fd` from `offset` into `out` through a
/// `mmap(PROT_READ, MAP_SHARED)` of them, unmapped again: what a read-only
/// shared mapping of the file shows (a `Mapping` is always writable). The
/// range must lie inside the file (else the copy faults with SIGBUS).
pub fn read_shared_mapping(fd: BorrowedFd<'_>, offset: u64, out: &mut [u8]) -> io::Result<()> {
    if out.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: a fresh mapping at an address the kernel chooses cannot alias
    // any Rust object; `fd` is a live descriptor for the duration of the call.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            out.len(),
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            offset,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let base = p.cast::<u8>();
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: `base + i` lies inside the readable mapping of `out.len()`
        // bytes made above, which only this function knows of and unmaps
        // below. Volatile: another mapping (or a device) may write the
        // memory meanwhile; no reference to it is formed.
        *b = unsafe { base.add(i).read_volatile() };
    }
    // SAFETY: `p` and `out.len()` describe the mapping made above; nothing
    // refers to it any more.
    unsafe { libc::munmap(p, out.len()) };
    Ok(())
}

/// `mknod(path, S_IFCHR | 0600, makedev(major, minor))`.
pub fn mknod_char(path: &CStr, major: u32, minor: u32) -> io::Result<()> {
    let dev = libc::makedev(major, minor);
    // SAFETY: `path` is a valid NUL-terminated string for the call's duration.
    let rc = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, dev) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Close `fd` and report the result of `close(2)`, which dropping an
/// `OwnedFd` silently ignores.
pub fn close(fd: OwnedFd) -> io::Result<()> {
    let raw: RawFd = fd.into_raw_fd();
    // SAFETY: `raw` came from an `OwnedFd` we consumed, so we are its only
    // owner and it is closed exactly once here.
    let rc = unsafe { libc::close(raw) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_headers() {
        // VFIO_BASE + n with ';' (0x3b) as the type.
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(VFIO_DEVICE_FEATURE, 0x3b75);
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD, 0x3b76);
        assert_eq!(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b77);
        assert_eq!(IOMMU_DESTROY, 0x3b80);
        assert_eq!(IOMMU_IOAS_ALLOC, 0x3b81);
        assert_eq!(IOMMU_IOAS_MAP, 0x3b85);
        assert_eq!(IOMMU_IOAS_UNMAP, 0x3b86);
        assert_eq!(IOMMU_IOAS_MAP_FILE, 0x3b8f);
        // _IOWR(0xDB, n, 88 and 104 bytes).
        assert_eq!(DMABUF_IMPORT_SAMPLE_DESCRIBE, 0xc058_db00);
        assert_eq!(DMABUF_IMPORT_SAMPLE_MAP, 0xc068_db01);
        // _IOW('u', 0x42, 24 bytes) and _IOW('u', 0x43, 8 bytes).
        assert_eq!(UDMABUF_CREATE, 0x4018_7542);
        assert_eq!(UDMABUF_CREATE_LIST, 0x4008_7543);
    }

    /// `_IOC(dir, type, nr, size)` of `include/uapi/asm-generic/ioctl.h`,
    /// written out independently of `io`/`iow`/`iowr` and of the crates.
    const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
        (dir << 30) | (size << 16) | (ty << 8) | nr
    }

    #[test]
    fn crate_ioctl_numbers_and_flags_match_hand_computed_values() {
        // The ioctl numbers built from vfio-bindings' VFIO_TYPE/VFIO_BASE and
        // iommufd-bindings' IOMMUFD_TYPE/IOMMUFD_CMD_*: _IO(';', nr), nr as in
        // vfio.h (VFIO_BASE + 8, 17, 18, 19) and iommufd.h (0x80, 0x81, ...).
        let none = |nr| ioc(0, b';' as u32, nr, 0);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, none(100 + 8));
        assert_eq!(VFIO_DEVICE_FEATURE, none(100 + 17));
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD, none(100 + 18));
        assert_eq!(VFIO_DEVICE_ATTACH_IOMMUFD_PT, none(100 + 19));
        assert_eq!(IOMMU_DESTROY, none(0x80));
        assert_eq!(IOMMU_IOAS_ALLOC, none(0x81));
        assert_eq!(IOMMU_IOAS_MAP, none(0x85));
        assert_eq!(IOMMU_IOAS_UNMAP, none(0x86));
        assert_eq!(IOMMU_IOAS_MAP_FILE, none(0x8f));
        // The hand-written ones: _IOWR(0xdb, ...) of the sample, _IOW('u', ...).
        assert_eq!(DMABUF_IMPORT_SAMPLE_DESCRIBE, ioc(3, 0xdb, 0x00, 88));
        assert_eq!(DMABUF_IMPORT_SAMPLE_MAP, ioc(3, 0xdb, 0x01, 104));
        assert_eq!(UDMABUF_CREATE, ioc(1, b'u' as u32, 0x42, 24));
        assert_eq!(UDMABUF_CREATE_LIST, ioc(1, b'u' as u32, 0x43, 8));
        // The crates' flags and indices the tool uses, as the headers define them.
        assert_eq!(VFIO_REGION_INFO_FLAG_READ, 1 << 0);
        assert_eq!(VFIO_REGION_INFO_FLAG_WRITE, 1 << 1);
        assert_eq!(VFIO_REGION_INFO_FLAG_MMAP, 1 << 2);
        assert_eq!(VFIO_PCI_ROM_REGION_INDEX, 6);
        assert_eq!(VFIO_PCI_CONFIG_REGION_INDEX, 7);
        assert_eq!(VFIO_DEVICE_FEATURE_GET, 1 << 16);
        assert_eq!(VFIO_DEVICE_FEATURE_DMA_BUF, 11);
        assert_eq!(IOMMU_IOAS_MAP_FIXED_IOVA, 1 << 0);
        assert_eq!(IOMMU_IOAS_MAP_WRITEABLE, 1 << 1);
        assert_eq!(IOMMU_IOAS_MAP_READABLE, 1 << 2);
    }

    #[test]
    fn struct_sizes_match_the_headers() {
        assert_eq!(size_of::<VfioDeviceBindIommufd>(), 24);
        assert_eq!(size_of::<VfioDeviceAttachIommufdPt>(), 16);
        assert_eq!(size_of::<VfioRegionInfo>(), 32);
        assert_eq!(size_of::<VfioDeviceFeature>(), 8);
        assert_eq!(size_of::<VfioDeviceFeatureDmaBuf>(), 16);
        assert_eq!(size_of::<VfioRegionDmaRange>(), 16);
        assert_eq!(size_of::<IommuDestroy>(), 8);
        assert_eq!(size_of::<IommuIoasAlloc>(), 12);
        assert_eq!(size_of::<IommuIoasMap>(), 40);
        assert_eq!(size_of::<IommuIoasMapFile>(), 40);
        assert_eq!(size_of::<IommuIoasUnmap>(), 24);
        assert_eq!(size_of::<UdmabufCreate>(), 24);
        assert_eq!(size_of::<UdmabufCreateItem>(), 24);
        assert_eq!(size_of::<UdmabufCreateList>(), 8);
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn dma_buf_feature_layout() {
        let ranges = [
            VfioRegionDmaRange {
                offset: 0,
                length: 0x1000,
            },
            VfioRegionDmaRange {
                offset: 0x10000,
                length: 0x2000,
            },
        ];
        let b = dma_buf_feature_arg(2, 0o2000002, &ranges);
        assert_eq!(b.len(), 8 + 16 + 2 * 16);
        assert_eq!(u32_at(&b, 0), b.len() as u32); // argsz
        assert_eq!(u32_at(&b, 4), (1 << 16) | 11); // GET | DMA_BUF
        assert_eq!(u32_at(&b, 8), 2); // region_index
        assert_eq!(u32_at(&b, 12), 0o2000002); // open_flags
        assert_eq!(u32_at(&b, 16), 0); // flags
        assert_eq!(u32_at(&b, 20), 2); // nr_ranges
        assert_eq!(u64_at(&b, 24), 0);
        assert_eq!(u64_at(&b, 32), 0x1000);
        assert_eq!(u64_at(&b, 40), 0x10000);
        assert_eq!(u64_at(&b, 48), 0x2000);
    }

    #[test]
    fn udmabuf_create_list_layout() {
        let items = [
            UdmabufCreateItem {
                memfd: 5,
                offset: 0x1000,
                size: 0x2000,
                ..Default::default()
            },
            UdmabufCreateItem {
                memfd: 7,
                offset: 0x5000,
                size: 0x3000,
                ..Default::default()
            },
        ];
        let b = udmabuf_create_list_arg(UDMABUF_FLAGS_CLOEXEC, &items);
        assert_eq!(b.len(), 8 + 2 * 24);
        assert_eq!(u32_at(&b, 0), 1); // flags
        assert_eq!(u32_at(&b, 4), 2); // count
        assert_eq!(u32_at(&b, 8), 5); // list[0].memfd
        assert_eq!(u32_at(&b, 12), 0); // list[0].__pad
        assert_eq!(u64_at(&b, 16), 0x1000);
        assert_eq!(u64_at(&b, 24), 0x2000);
        assert_eq!(u32_at(&b, 32), 7);
        assert_eq!(u64_at(&b, 40), 0x5000);
        assert_eq!(u64_at(&b, 48), 0x3000);
        let empty = udmabuf_create_list_arg(0, &[]);
        assert_eq!(empty, [0; 8]);
    }

    #[test]
    fn status_flags_and_read_only_mappings() {
        use std::os::fd::AsFd;
        let memfd = memfd_create(c"dmabuf-tool-test").unwrap();
        let fl = status_flags(memfd.as_fd()).unwrap();
        assert_eq!(fl & 3, libc::O_RDWR);
        let file = std::fs::File::from(memfd);
        std::os::unix::fs::FileExt::write_all_at(&file, b"udmabuf", 0x1001).unwrap();
        let mut out = [0u8; 7];
        read_shared_mapping(file.as_fd(), 0x1000, &mut out[..1]).unwrap();
        assert_eq!(out[0], 0);
        read_shared_mapping(file.as_fd(), 0, &mut [0u8; 0x1000]).unwrap();
        let mut page = [0u8; 0x1008];
        read_shared_mapping(file.as_fd(), 0, &mut page).unwrap();
        assert_eq!(&page[0x1001..0x1008], b"udmabuf");
        let e = read_shared_mapping(file.as_fd(), 0x800, &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let e = read_shared_mapping(file.as_fd(), 0, &mut []).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn dma_buf_feature_without_ranges() {
        let b = dma_buf_feature_arg(2, 0, &[]);
        assert_eq!(b.len(), 24);
        assert_eq!(u32_at(&b, 0), 24);
        assert_eq!(u32_at(&b, 20), 0);
    }
}
