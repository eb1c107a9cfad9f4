//! PCI devices through sysfs: find them by vendor:device, bind them to
//! vfio-pci, find their VFIO cdev (`/dev/vfio/devices/vfioN`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::errno::{Context, Error, Result};

pub const VFIO_PCI: &str = "vfio-pci";

/// A device the tests use, by PCI ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciId {
    pub name: &'static str,
    pub vendor: u16,
    pub device: u16,
}

pub const EDU: PciId = PciId {
    name: "edu",
    vendor: 0x1234,
    device: 0x11e8,
};
pub const IVSHMEM: PciId = PciId {
    name: "ivshmem",
    vendor: 0x1af4,
    device: 0x1110,
};
pub const PCI_TESTDEV: PciId = PciId {
    name: "pci-testdev",
    vendor: 0x1b36,
    device: 0x0005,
};

/// The sysfs tree (`/sys` in the guest, a fake tree in tests) and `/dev`.
#[derive(Debug, Clone)]
pub struct Sysfs {
    sys: PathBuf,
    dev: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// What `bind_vfio` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The device was already bound to vfio-pci.
    Already,
    /// The device was unbound from `from` (if it had a driver) and bound to
    /// vfio-pci.
    Rebound { from: Option<String> },
}

/// Parse a sysfs ID file ("0x1af4\n").
pub fn parse_hex_id(s: &str) -> Option<u16> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u16::from_str_radix(s, 16).ok()
}

/// Parse a `dev` file ("511:0\n") into (major, minor).
pub fn parse_dev_numbers(s: &str) -> Option<(u32, u32)> {
    let (ma, mi) = s.trim().split_once(':')?;
    Some((ma.parse().ok()?, mi.parse().ok()?))
}

fn read_trim(p: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(p)?.trim().to_string())
}

fn write_str(p: &Path, s: &str) -> Result<()> {
    fs::write(p, s).op(format!("write {s:?} to {}", p.display()))
}

impl Sysfs {
    #[cfg(test)]
    pub fn at(sys: &Path, dev: &Path) -> Self {
        Sysfs {
            sys: sys.to_path_buf(),
            dev: dev.to_path_buf(),
        }
    }

    fn devices(&self) -> PathBuf {
        self.sys.join("bus/pci/devices")
    }

    fn device(&self, bdf: &str) -> PathBuf {
        self.devices().join(bdf)
    }

    /// The BDFs ("0000:00:03.0") of every device with this ID, sorted.
    pub fn find(&self, id: PciId) -> Result<Vec<String>> {
        let dir = self.devices();
        let entries = fs::read_dir(&dir).op(format!("read {}", dir.display()))?;
        let mut found = Vec::new();
        for e in entries {
            let e = e.op(format!("read {}", dir.display()))?;
            let p = e.path();
            let vendor = read_trim(&p.join("vendor"))
                .ok()
                .and_then(|s| parse_hex_id(&s));
            let device = read_trim(&p.join("device"))
                .ok()
                .and_then(|s| parse_hex_id(&s));
            if vendor == Some(id.vendor) && device == Some(id.device) {
                found.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        found.sort();
        Ok(found)
    }

    /// The first device with this ID, or an error naming it.
    pub fn find_one(&self, id: PciId) -> Result<String> {
        self.find(id)?.into_iter().next().ok_or_else(|| {
            Error::msg(format!(
                "no {} ({:04x}:{:04x}) in {}",
                id.name,
                id.vendor,
                id.device,
                self.devices().display()
            ))
        })
    }

    /// The name of the driver bound to `bdf`, if any.
    pub fn driver(&self, bdf: &str) -> Option<String> {
        let link = fs::read_link(self.device(bdf).join("driver")).ok()?;
        Some(link.file_name()?.to_string_lossy().into_owned())
    }

    /// Bind `bdf` to vfio-pci: set `driver_override`, unbind the current
    /// driver if any, and ask the PCI core to probe the device again.
    pub fn bind_vfio(&self, bdf: &str) -> Result<Bound> {
        let from = self.driver(bdf);
        if from.as_deref() == Some(VFIO_PCI) {
            return Ok(Bound::Already);
        }
        let drv = self.sys.join("bus/pci/drivers").join(VFIO_PCI);
        if !drv.is_dir() {
            return Err(Error::msg(format!(
                "{} does not exist: vfio-pci is neither built in nor loaded",
                drv.display()
            )));
        }
        let dev = self.device(bdf);
        write_str(&dev.join("driver_override"), VFIO_PCI)?;
        if from.is_some() {
            write_str(&dev.join("driver/unbind"), bdf)?;
        }
        write_str(&self.sys.join("bus/pci/drivers_probe"), bdf)?;
        match self.driver(bdf) {
            Some(d) if d == VFIO_PCI => Ok(Bound::Rebound { from }),
            other => Err(Error::msg(format!(
                "{bdf}: after drivers_probe the driver is {}, not vfio-pci",
                other.as_deref().unwrap_or("(none)")
            ))),
        }
    }

    /// The VFIO cdev of `bdf` (`/dev/vfio/devices/vfioN`), created with
    /// mknod from sysfs if devtmpfs did not provide it. Waits up to a second
    /// for it to appear after a bind.
    pub fn vfio_cdev(&self, bdf: &str) -> Result<PathBuf> {
        let dir = self.device(bdf).join("vfio-dev");
        let deadline = Instant::now() + Duration::from_secs(1);
        let name = loop {
            let first = fs::read_dir(&dir).ok().and_then(|mut it| {
                it.find_map(|e| {
                    let n = e.ok()?.file_name().to_string_lossy().into_owned();
                    n.starts_with("vfio").then_some(n)
                })
            });
            match first {
                Some(n) => break n,
                None if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                None => {
                    return Err(Error::msg(format!(
                        "{bdf}: no VFIO cdev under {} (is it bound to vfio-pci, \
                         and is CONFIG_VFIO_DEVICE_CDEV set?)",
                        dir.display()
                    )))
                }
            }
        };
        let node = self.dev.join("vfio/devices").join(&name);
        self.ensure_node(&node, &dir.join(&name).join("dev"))?;
        Ok(node)
    }

    /// `/dev/iommu`, created with mknod from sysfs if missing.
    pub fn iommu_dev(&self) -> Result<PathBuf> {
        let node = self.dev.join("iommu");
        self.ensure_node(&node, &self.sys.join("class/misc/iommu/dev"))?;
        Ok(node)
    }

    fn ensure_node(&self, node: &Path, dev_file: &Path) -> Result<()> {
        if node.exists() {
            return Ok(());
        }
        let text = fs::read_to_string(dev_file).op(format!("read {}", dev_file.display()))?;
        let (major, minor) = parse_dev_numbers(&text)
            .ok_or_else(|| Error::msg(format!("{}: cannot parse {text:?}", dev_file.display())))?;
        if let Some(parent) = node.parent() {
            fs::create_dir_all(parent).op(format!("mkdir {}", parent.display()))?;
        }
        let c = std::ffi::CString::new(node.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::msg("device path contains NUL"))?;
        crate::sys::mknod_char(&c, major, minor).op(format!("mknod {}", node.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids() {
        assert_eq!(parse_hex_id("0x1af4\n"), Some(0x1af4));
        assert_eq!(parse_hex_id("0x11e8"), Some(0x11e8));
        assert_eq!(parse_hex_id("1b36"), Some(0x1b36));
        assert_eq!(parse_hex_id("0xzz"), None);
        assert_eq!(parse_hex_id(""), None);
    }

    #[test]
    fn dev_numbers() {
        assert_eq!(parse_dev_numbers("511:0\n"), Some((511, 0)));
        assert_eq!(parse_dev_numbers("10:123"), Some((10, 123)));
        assert_eq!(parse_dev_numbers("10"), None);
        assert_eq!(parse_dev_numbers("a:b"), None);
    }

    fn fake_tree(tag: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("dmabuf-tool-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let devs = root.join("sys/bus/pci/devices");
        for (bdf, v, d) in [
            ("0000:00:04.0", "0x1af4", "0x1110"),
            ("0000:00:03.0", "0x1234", "0x11e8"),
            ("0000:00:05.0", "0x1b36", "0x0005"),
            ("0000:00:06.0", "0x1234", "0x11e8"),
        ] {
            let p = devs.join(bdf);
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("vendor"), format!("{v}\n")).unwrap();
            fs::write(p.join("device"), format!("{d}\n")).unwrap();
        }
        root
    }

    #[test]
    fn find_by_id() {
        let root = fake_tree("find");
        let s = Sysfs::at(&root.join("sys"), &root.join("dev"));
        assert_eq!(s.find(EDU).unwrap(), ["0000:00:03.0", "0000:00:06.0"]);
        assert_eq!(s.find_one(IVSHMEM).unwrap(), "0000:00:04.0");
        assert_eq!(s.find_one(PCI_TESTDEV).unwrap(), "0000:00:05.0");
        let none = PciId {
            name: "none",
            vendor: 1,
            device: 2,
        };
        assert!(s
            .find_one(none)
            .unwrap_err()
            .to_string()
            .starts_with("no none (0001:0002)"));
        assert_eq!(s.driver("0000:00:03.0"), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn cdev_lookup_uses_existing_node() {
        let root = fake_tree("cdev");
        let s = Sysfs::at(&root.join("sys"), &root.join("dev"));
        let vd = root.join("sys/bus/pci/devices/0000:00:04.0/vfio-dev/vfio2");
        fs::create_dir_all(&vd).unwrap();
        fs::write(vd.join("dev"), "511:2\n").unwrap();
        let node = root.join("dev/vfio/devices/vfio2");
        fs::create_dir_all(node.parent().unwrap()).unwrap();
        fs::write(&node, "").unwrap();
        assert_eq!(s.vfio_cdev("0000:00:04.0").unwrap(), node);
        fs::remove_dir_all(&root).unwrap();
    }
}
