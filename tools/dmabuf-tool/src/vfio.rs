//! A VFIO PCI device opened through its cdev (`/dev/vfio/devices/vfioN`):
//! iommufd bind/attach, regions, config space, dma-buf export.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::errno::{Context, Error, Result};
use crate::iommufd::Iommufd;
use crate::mmap::Mapping;
use crate::sys;

/// `PCI_COMMAND` and its bits (include/uapi/linux/pci_regs.h).
pub const PCI_COMMAND: u64 = 0x04;
pub const PCI_COMMAND_MEMORY: u16 = 0x2;
pub const PCI_COMMAND_MASTER: u16 = 0x4;

/// What `VFIO_DEVICE_GET_REGION_INFO` says about one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    pub index: u32,
    pub flags: u32,
    pub size: u64,
    /// Offset of the region in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
}

impl RegionInfo {
    pub fn readable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_READ != 0
    }
    pub fn writable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_WRITE != 0
    }
    pub fn mmappable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_MMAP != 0
    }

    /// "read,write,mmap".
    pub fn flag_names(&self) -> String {
        let mut v = Vec::new();
        if self.readable() {
            v.push("read");
        }
        if self.writable() {
            v.push("write");
        }
        if self.mmappable() {
            v.push("mmap");
        }
        if v.is_empty() {
            "none".into()
        } else {
            v.join(",")
        }
    }
}

/// An open VFIO device cdev; closed on drop (or by `close`, which reports
/// errors). Closing unbinds it from iommufd and detaches it.
#[derive(Debug)]
pub struct VfioDevice {
    file: File,
    path: PathBuf,
}

impl AsFd for VfioDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl VfioDevice {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .op(format!("open {}", path.display()))?;
        Ok(VfioDevice {
            file,
            path: path.to_path_buf(),
        })
    }

    /// `VFIO_DEVICE_BIND_IOMMUFD`; returns the device id in that iommufd.
    pub fn bind_iommufd(&self, iommufd: &Iommufd) -> Result<u32> {
        let mut b = sys::VfioDeviceBindIommufd {
            argsz: size_of::<sys::VfioDeviceBindIommufd>() as u32,
            iommufd: std::os::fd::AsRawFd::as_raw_fd(&iommufd.as_fd()),
            ..Default::default()
        };
        sys::ioctl(self.as_fd(), sys::VFIO_DEVICE_BIND_IOMMUFD, &mut b)
            .op("VFIO_DEVICE_BIND_IOMMUFD")?;
        Ok(b.out_devid)
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` to an IOAS (or HWPT); returns the
    /// page table the kernel attached (the auto-created HWPT for an IOAS).
    pub fn attach_ioas(&self, pt_id: u32) -> Result<u32> {
        let mut a = sys::VfioDeviceAttachIommufdPt {
            argsz: size_of::<sys::VfioDeviceAttachIommufdPt>() as u32,
            pt_id,
            ..Default::default()
        };
        sys::ioctl(self.as_fd(), sys::VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut a)
            .op("VFIO_DEVICE_ATTACH_IOMMUFD_PT")?;
        Ok(a.pt_id)
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for `index` (BARs 0-5, ROM 6, config 7).
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        let mut r = sys::VfioRegionInfo {
            argsz: size_of::<sys::VfioRegionInfo>() as u32,
            index,
            ..Default::default()
        };
        sys::ioctl(self.as_fd(), sys::VFIO_DEVICE_GET_REGION_INFO, &mut r)
            .op(format!("VFIO_DEVICE_GET_REGION_INFO({index})"))?;
        Ok(RegionInfo {
            index,
            flags: r.flags,
            size: r.size,
            offset: r.offset,
        })
    }

    /// mmap the whole of region `index` read/write, shared.
    pub fn mmap_region(&self, index: u32) -> Result<Mapping> {
        let info = self.region_info(index)?;
        if !info.mmappable() || info.size == 0 {
            return Err(Error::msg(format!(
                "region {index} of {} is not mmappable (size {:#x}, flags {})",
                self.path.display(),
                info.size,
                info.flag_names()
            )));
        }
        let len = usize::try_from(info.size).map_err(|_| Error::msg("region too large"))?;
        Mapping::shared(self.as_fd(), len, info.offset).op(format!("mmap region {index}"))
    }

    /// Offset of the config space region in the device fd.
    pub fn config_offset(&self) -> Result<u64> {
        Ok(self.region_info(sys::VFIO_PCI_CONFIG_REGION_INDEX)?.offset)
    }

    /// pwrite `val` at `off` of the device fd, `off` being `config_offset()`
    /// plus a register: one system call, for timing config writes.
    pub fn pwrite16(&self, off: u64, val: u16) -> Result<()> {
        self.file
            .write_all_at(&val.to_le_bytes(), off)
            .op(format!("pwrite at {off:#x} of the device fd"))
    }

    /// Read `buf.len()` bytes of config space at `reg` (pread on the config region).
    pub fn config_read(&self, reg: u64, buf: &mut [u8]) -> Result<()> {
        let off = self.config_offset()? + reg;
        self.file
            .read_exact_at(buf, off)
            .op(format!("pread config space at {reg:#x}"))
    }

    /// Write `buf` to config space at `reg` (pwrite on the config region).
    pub fn config_write(&self, reg: u64, buf: &[u8]) -> Result<()> {
        let off = self.config_offset()? + reg;
        self.file
            .write_all_at(buf, off)
            .op(format!("pwrite config space at {reg:#x}"))
    }

    pub fn config_read16(&self, reg: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.config_read(reg, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub fn config_write16(&self, reg: u64, val: u16) -> Result<()> {
        self.config_write(reg, &val.to_le_bytes())
    }

    /// PCI_COMMAND.
    pub fn command(&self) -> Result<u16> {
        self.config_read16(PCI_COMMAND)
    }

    /// Set `bits` in PCI_COMMAND; returns (before, after) as read back.
    pub fn set_command_bits(&self, bits: u16) -> Result<(u16, u16)> {
        let before = self.command()?;
        self.config_write16(PCI_COMMAND, before | bits)?;
        Ok((before, self.command()?))
    }

    /// Clear `bits` in PCI_COMMAND; returns (before, after) as read back.
    pub fn clear_command_bits(&self, bits: u16) -> Result<(u16, u16)> {
        let before = self.command()?;
        self.config_write16(PCI_COMMAND, before & !bits)?;
        Ok((before, self.command()?))
    }

    /// `VFIO_DEVICE_FEATURE(GET | DMA_BUF)`: export `ranges` (offset, length)
    /// of region `region` as one dma-buf (opened O_RDWR | O_CLOEXEC).
    pub fn export_dma_buf(&self, region: u32, ranges: &[(u64, u64)]) -> Result<OwnedFd> {
        self.export_dma_buf_with(region, ranges, libc::O_RDWR | libc::O_CLOEXEC)
    }

    /// `export_dma_buf` with the dma-buf file opened with `open_flags`
    /// (e.g. O_RDONLY for a buffer its importers must not write).
    pub fn export_dma_buf_with(
        &self,
        region: u32,
        ranges: &[(u64, u64)],
        open_flags: i32,
    ) -> Result<OwnedFd> {
        let ranges: Vec<sys::VfioRegionDmaRange> = ranges
            .iter()
            .map(|&(offset, length)| sys::VfioRegionDmaRange { offset, length })
            .collect();
        sys::vfio_feature_dma_buf(self.as_fd(), region, open_flags as u32, &ranges)
            .op("VFIO_DEVICE_FEATURE(DMA_BUF)")
    }

    /// Close, reporting what `close(2)` says.
    pub fn close(self) -> Result<()> {
        let what = format!("close {}", self.path.display());
        sys::close(OwnedFd::from(self.file)).op(what)
    }
}
