//! `/dev/iommu`: IOAS allocation, mapping user memory and files (memfds and
//! dma-bufs) at fixed IOVAs, unmapping, destroying objects.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::errno::{Context, Result};
use crate::mmap::Mapping;
use crate::sys;

/// Read + write DMA at a caller-chosen IOVA.
const MAP_FLAGS: u32 = Access::ReadWrite.map_flags();

/// What a device may do through a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE`.
    ReadWrite,
    /// `IOMMU_IOAS_MAP_READABLE` only: the IOMMU faults device writes.
    ReadOnly,
}

impl Access {
    /// The `IOMMU_IOAS_MAP_*` flags for a mapping at a fixed IOVA.
    pub const fn map_flags(self) -> u32 {
        let rw = match self {
            Access::ReadWrite => sys::IOMMU_IOAS_MAP_READABLE | sys::IOMMU_IOAS_MAP_WRITEABLE,
            Access::ReadOnly => sys::IOMMU_IOAS_MAP_READABLE,
        };
        sys::IOMMU_IOAS_MAP_FIXED_IOVA | rw
    }
}

/// An open iommufd; closed on drop (or by `close`, which reports errors).
#[derive(Debug)]
pub struct Iommufd {
    fd: OwnedFd,
}

impl AsFd for Iommufd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Iommufd {
    pub fn open(path: &Path) -> Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .op(format!("open {}", path.display()))?;
        Ok(Iommufd { fd: f.into() })
    }

    /// `IOMMU_IOAS_ALLOC`: a new, empty IO address space; returns its id.
    pub fn ioas_alloc(&self) -> Result<u32> {
        let mut a = sys::IommuIoasAlloc {
            size: size_of::<sys::IommuIoasAlloc>() as u32,
            ..Default::default()
        };
        sys::ioctl(self.as_fd(), sys::IOMMU_IOAS_ALLOC, &mut a).op("IOMMU_IOAS_ALLOC")?;
        Ok(a.out_ioas_id)
    }

    /// `IOMMU_IOAS_MAP` of all of `mem` at `iova` (fixed, readable, writeable).
    /// The kernel pins the pages; they stay pinned until unmapped even if
    /// `mem` is dropped first.
    pub fn map_user(&self, ioas: u32, mem: &Mapping, iova: u64) -> Result<()> {
        let mut m = sys::IommuIoasMap {
            size: size_of::<sys::IommuIoasMap>() as u32,
            flags: MAP_FLAGS,
            ioas_id: ioas,
            user_va: mem.addr(),
            length: mem.len() as u64,
            iova,
            ..Default::default()
        };
        sys::ioctl(self.as_fd(), sys::IOMMU_IOAS_MAP, &mut m).op("IOMMU_IOAS_MAP")?;
        Ok(())
    }

    /// `IOMMU_IOAS_MAP_FILE` of `[start, start + length)` of `fd` (a memfd or
    /// a supported dma-buf) at `iova` (fixed, readable, writeable). Returns
    /// the IOVA the kernel reports.
    pub fn map_file(
        &self,
        ioas: u32,
        fd: BorrowedFd<'_>,
        start: u64,
        length: u64,
        iova: u64,
    ) -> Result<u64> {
        self.map_file_access(ioas, fd, start, length, iova, Access::ReadWrite)
    }

    /// `map_file` with the device's `access` chosen: `Access::ReadOnly`
    /// maps without `IOMMU_IOAS_MAP_WRITEABLE`.
    pub fn map_file_access(
        &self,
        ioas: u32,
        fd: BorrowedFd<'_>,
        start: u64,
        length: u64,
        iova: u64,
        access: Access,
    ) -> Result<u64> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
        self.map_file_flags(ioas, fd, start, length, iova, access.map_flags())
    }

    /// `map_file` with a raw descriptor number, for passing numbers that are
    /// not open (the kernel's EBADF path). The kernel only looks the number up.
    pub fn map_file_raw(
        &self,
        ioas: u32,
        fd: i32,
        start: u64,
        length: u64,
        iova: u64,
    ) -> Result<u64> {
        self.map_file_flags(ioas, fd, start, length, iova, MAP_FLAGS)
    }

    pub(crate) fn map_file_flags(
        &self,
        ioas: u32,
        fd: i32,
        start: u64,
        length: u64,
        iova: u64,
        flags: u32,
    ) -> Result<u64> {
        let mut m = sys::IommuIoasMapFile {
            size: size_of::<sys::IommuIoasMapFile>() as u32,
            flags,
            ioas_id: ioas,
            fd,
            start,
            length,
            iova,
        };
        sys::ioctl(self.as_fd(), sys::IOMMU_IOAS_MAP_FILE, &mut m).op("IOMMU_IOAS_MAP_FILE")?;
        Ok(m.iova)
    }

    /// `IOMMU_IOAS_UNMAP` of `[iova, iova + length)`; returns the number of
    /// bytes unmapped. `(0, u64::MAX)` unmaps everything.
    pub fn unmap(&self, ioas: u32, iova: u64, length: u64) -> Result<u64> {
        let mut u = sys::IommuIoasUnmap {
            size: size_of::<sys::IommuIoasUnmap>() as u32,
            ioas_id: ioas,
            iova,
            length,
        };
        sys::ioctl(self.as_fd(), sys::IOMMU_IOAS_UNMAP, &mut u).op("IOMMU_IOAS_UNMAP")?;
        Ok(u.length)
    }

    /// `IOMMU_DESTROY` of any object (an IOAS here).
    pub fn destroy(&self, id: u32) -> Result<()> {
        let mut d = sys::IommuDestroy {
            size: size_of::<sys::IommuDestroy>() as u32,
            id,
        };
        sys::ioctl(self.as_fd(), sys::IOMMU_DESTROY, &mut d).op("IOMMU_DESTROY")?;
        Ok(())
    }

    /// Close, reporting what `close(2)` says.
    pub fn close(self) -> Result<()> {
        sys::close(self.fd).op("close /dev/iommu")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_flags() {
        // FIXED_IOVA (1) | WRITEABLE (2) | READABLE (4), as in iommufd.h.
        assert_eq!(Access::ReadWrite.map_flags(), 0b111);
        assert_eq!(Access::ReadOnly.map_flags(), 0b101);
        assert_eq!(MAP_FLAGS, Access::ReadWrite.map_flags());
    }
}
