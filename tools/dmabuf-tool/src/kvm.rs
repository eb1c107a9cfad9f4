//! `dmabuf-tool kvm`: KVM imports a dma-buf. A VM (created with rust-vmm's
//! kvm-ioctls) gets an ordinary code slot and then memslots backed by a VFIO
//! dma-buf of ivshmem's BAR2 (`KVM_MEM_DMABUF`). KVM binds the buffer when a
//! slot is created and unbinds it when the slot is deleted or the VM
//! destroyed. Checked here, each with its documented errno
//! (Documentation/virt/kvm/api.rst, KVM_SET_USER_MEMORY_REGION2): creation and
//! deletion, every refusal, that a refusal leaves nothing behind (no
//! descriptor, no KVM attachment, no dma-buf kept alive), a revoke while a
//! slot exists, one buffer behind two slots, closing the buffer's fd while
//! its slot exists, and destroying the VM with the slot alive. A guest then
//! runs on such a slot: see `kvm_guest.rs`.
//!
//! What KVM keeps is read from `/sys/kernel/debug/dma_buf/bufinfo`: KVM
//! attaches with the device of /dev/kvm, listed there as "kvm".

use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use kvm_bindings::{
    kvm_create_guest_memfd, kvm_userspace_memory_region2, KVM_CAP_USER_MEMORY2,
    KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY,
};
use kvm_ioctls::{Kvm, VmFd};

use crate::args::{size, span};
use crate::errno::{expect_errno, Context, Error, Result};
use crate::iommufd::Iommufd;
use crate::mmap::Mapping;
use crate::pci::{Sysfs, IVSHMEM};
use crate::report::{Aborted, Facts, Runner};
use crate::story::{no_fd_left, open_fds};
use crate::sys;
use crate::vfio::{VfioDevice, PCI_COMMAND_MEMORY};

pub use crate::uapi::{KVM_CAP_DMABUF_MEMSLOT, KVM_MEM_DMABUF};

/// `struct kvm_userspace_memory_region2` as the series defines it, generated
/// from the patched kernel's `linux/kvm.h` (build.rs): `pad1` became
/// `dmabuf_fd` and `pad2[0]` `dmabuf_offset`. kvm-bindings 0.14 predates them
/// and has only the padding, so a region is converted to the crate's struct
/// for `VmFd::set_user_memory_region2()`; the assertions below keep both
/// layouts identical.
pub type MemoryRegion2 = crate::uapi::kvm_userspace_memory_region2;

const _: () = {
    type K = kvm_userspace_memory_region2;
    assert!(size_of::<MemoryRegion2>() == size_of::<K>());
    assert!(offset_of!(MemoryRegion2, userspace_addr) == offset_of!(K, userspace_addr));
    assert!(offset_of!(MemoryRegion2, guest_memfd_offset) == offset_of!(K, guest_memfd_offset));
    assert!(offset_of!(MemoryRegion2, guest_memfd) == offset_of!(K, guest_memfd));
    assert!(offset_of!(MemoryRegion2, dmabuf_fd) == offset_of!(K, pad1));
    assert!(offset_of!(MemoryRegion2, dmabuf_offset) == offset_of!(K, pad2));
    assert!(offset_of!(MemoryRegion2, pad2) == offset_of!(K, pad2) + 8);
};

impl MemoryRegion2 {
    /// The same bytes as the crate's struct.
    pub fn to_kvm(self) -> kvm_userspace_memory_region2 {
        let mut pad2 = [0u64; 14];
        pad2[0] = self.dmabuf_offset;
        pad2[1..].copy_from_slice(&self.pad2);
        kvm_userspace_memory_region2 {
            slot: self.slot,
            flags: self.flags,
            guest_phys_addr: self.guest_phys_addr,
            memory_size: self.memory_size,
            userspace_addr: self.userspace_addr,
            guest_memfd_offset: self.guest_memfd_offset,
            guest_memfd: self.guest_memfd,
            pad1: self.dmabuf_fd,
            pad2,
        }
    }

    /// A `KVM_MEM_DMABUF` slot mapping `len` bytes of `fd` from `offset`.
    pub fn dmabuf(slot: u32, gpa: u64, len: u64, fd: RawFd, offset: u64) -> Self {
        MemoryRegion2 {
            slot,
            flags: KVM_MEM_DMABUF,
            guest_phys_addr: gpa,
            memory_size: len,
            dmabuf_fd: fd as u32,
            dmabuf_offset: offset,
            ..Default::default()
        }
    }

    /// The deletion of `slot` (memory_size 0).
    pub fn delete(slot: u32) -> Self {
        MemoryRegion2 {
            slot,
            ..Default::default()
        }
    }
}

const KIB: u64 = 1 << 10;
pub(crate) const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

pub(crate) const BAR2: u32 = 2;
const BAR2_SIZE: u64 = 2 * MIB;
/// BAR2 exported as two 1 MiB ranges: a 2 MiB dma-buf of two ranges.
pub(crate) const BAR2_RANGES: [(u64, u64); 2] = [(0, MIB), (MIB, MIB)];
const BUF_SIZE: u64 = 2 * MIB;

const CODE_SLOT: u32 = 0;
pub(crate) const CODE_SIZE: u64 = 64 * KIB;
const DMABUF_SLOT: u32 = 1;
const SECOND_SLOT: u32 = 2;
const DMABUF_GPA: u64 = 4 * GIB;
const SECOND_GPA: u64 = 4 * GIB + 16 * MIB;
const MOVED_GPA: u64 = 4 * GIB + 64 * MIB;

/// Where the VM's memory and the buffer come from.
pub(crate) struct Lab {
    /// Dropped (the VM destroyed) in the last case; before `_code`.
    vm: Option<VmFd>,
    /// The code slot's memory; outlives the VM.
    code: Mapping,
    pub(crate) ivshmem: VfioDevice,
    iommufd: Iommufd,
}

impl Lab {
    fn vm(&self) -> Result<&VmFd> {
        self.vm.as_ref().ok_or_else(|| Error::msg("the VM is gone"))
    }

    fn set(&self, r: MemoryRegion2) -> Result<()> {
        set_region(self.vm()?, r)
    }

    pub(crate) fn export(&self) -> Result<OwnedFd> {
        self.ivshmem.export_dma_buf(BAR2, &BAR2_RANGES)
    }

    fn export_read_only(&self) -> Result<OwnedFd> {
        self.ivshmem
            .export_dma_buf_flags(BAR2, &BAR2_RANGES, libc::O_RDONLY | libc::O_CLOEXEC)
    }
}

/// `KVM_SET_USER_MEMORY_REGION2` with the dma-buf fields.
pub(crate) fn set_region(vm: &VmFd, r: MemoryRegion2) -> Result<()> {
    // SAFETY: the only host memory KVM can reach through `userspace_addr`
    // is the code slot's anonymous mapping, which `Lab` keeps alive until
    // after the VM is destroyed (the refusal of a non-zero userspace_addr
    // passes that mapping too), and kvm-bench's anonymous data slots, whose
    // mappings it drops only after its VM; dma-buf slots pass 0 and are
    // backed by the buffer, not by our address space.
    unsafe { vm.set_user_memory_region2(r.to_kvm()) }.map_err(|e| {
        Error::sys(
            format!(
                "KVM_SET_USER_MEMORY_REGION2(slot {}, flags {:#x})",
                r.slot, r.flags
            ),
            e.errno(),
        )
    })
}

/// ivshmem's VFIO device, ready to export BAR2.
pub(crate) struct Ivshmem {
    pub(crate) bdf: String,
    /// Closed before `iommufd`.
    pub(crate) dev: VfioDevice,
    pub(crate) iommufd: Iommufd,
}

/// Bind ivshmem to vfio-pci (a device already bound is left as it is), bind
/// its VFIO device to iommufd and attach it to an IOAS, turn memory decoding
/// on; BAR2 must be 2 MiB.
pub(crate) fn open_ivshmem(f: &mut Facts) -> Result<Ivshmem> {
    let sysfs = Sysfs::default();
    let bdf = sysfs.find_one(IVSHMEM)?;
    sysfs.bind_vfio(&bdf)?;
    let cdev = sysfs.vfio_cdev(&bdf)?;
    let iommufd = Iommufd::open(&sysfs.iommu_dev()?)?;
    let dev = VfioDevice::open(&cdev)?;
    dev.bind_iommufd(&iommufd)?;
    let ioas = iommufd.ioas_alloc()?;
    dev.attach_ioas(ioas)?;
    dev.set_command_bits(PCI_COMMAND_MEMORY)?;
    let info = dev.region_info(BAR2)?;
    if info.size != BAR2_SIZE {
        return Err(Error::msg(format!(
            "BAR2 is {}, expected 2 MiB",
            size(info.size)
        )));
    }
    f.add(format!(
        "ivshmem {bdf} ({}), BAR2 {}",
        cdev.display(),
        size(info.size)
    ));
    Ok(Ivshmem { bdf, dev, iommufd })
}

/// What is left that a refusal or a deletion must not leave behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    fds: usize,
    /// dma-bufs alive in the system, attachments of KVM to them.
    bufs: Option<BufInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufInfo {
    pub(crate) objects: usize,
    pub(crate) kvm_attachments: usize,
}

pub(crate) const BUFINFO: &str = "/sys/kernel/debug/dma_buf/bufinfo";

/// Parse dma-buf's debugfs summary: "Total N objects, ..." and the
/// attachments of the device "kvm" (one "\tkvm" line each).
pub(crate) fn parse_bufinfo(text: &str) -> Option<BufInfo> {
    let objects = text.lines().find_map(|l| {
        l.strip_prefix("Total ")?
            .split_once(" objects")?
            .0
            .parse()
            .ok()
    })?;
    let kvm_attachments = text.lines().filter(|l| *l == "\tkvm").count();
    Some(BufInfo {
        objects,
        kvm_attachments,
    })
}

pub(crate) fn bufinfo() -> Option<BufInfo> {
    parse_bufinfo(&std::fs::read_to_string(BUFINFO).ok()?)
}

fn snapshot() -> Result<Snapshot> {
    Ok(Snapshot {
        fds: open_fds()?,
        bufs: bufinfo(),
    })
}

/// Nothing more is open, attached or alive than at `before`.
fn same_as(before: &Snapshot, f: &mut Facts) -> Result<()> {
    let now = snapshot()?;
    if now.fds != before.fds {
        return Err(Error::msg(format!(
            "{} descriptors open, {} before",
            now.fds, before.fds
        )));
    }
    match (before.bufs, now.bufs) {
        (Some(b), Some(n)) => {
            if n != b {
                return Err(Error::msg(format!(
                    "{} dma-bufs alive with {} KVM attachments, {} with {} before",
                    n.objects, n.kvm_attachments, b.objects, b.kvm_attachments
                )));
            }
            f.add(format!(
                "nothing left: {} fds, {} dma-bufs, {} KVM attachments as before",
                now.fds, n.objects, n.kvm_attachments
            ));
        }
        _ => f.add(format!(
            "nothing left: {} fds as before ({BUFINFO} unreadable)",
            now.fds
        )),
    }
    Ok(())
}

/// KVM attachments now, if bufinfo is readable.
fn kvm_attachments() -> Option<usize> {
    bufinfo().map(|b| b.kvm_attachments)
}

/// `want` more KVM attachments than at `before` (when bufinfo says).
fn expect_attachments(before: &Snapshot, want: usize, f: &mut Facts) -> Result<()> {
    let (Some(b), Some(now)) = (before.bufs, kvm_attachments()) else {
        f.add(format!("{BUFINFO} unreadable: attachments not counted"));
        return Ok(());
    };
    if now != b.kvm_attachments + want {
        return Err(Error::msg(format!(
            "{now} KVM attachments, expected {}",
            b.kvm_attachments + want
        )));
    }
    f.add(format!("{want} KVM attachment(s) in {BUFINFO}"));
    Ok(())
}

pub fn run(r: &mut Runner<'_>) -> bool {
    let _ = test(r);
    r.finish()
}

fn test(r: &mut Runner<'_>) -> std::result::Result<(), Aborted> {
    let fds_at_start = open_fds().ok();

    r.section("Setup: a VM with a code slot, ivshmem's BAR2 as a dma-buf");
    let kvm = r.require("open /dev/kvm; KVM_CAP_USER_MEMORY2 is reported", |f| {
        let kvm = Kvm::new().map_err(|e| Error::sys("open /dev/kvm", e.errno()))?;
        let v = kvm.check_extension_raw(KVM_CAP_USER_MEMORY2.into());
        f.add(format!("KVM API version {}", kvm.get_api_version()));
        if v <= 0 {
            return Err(Error::msg("KVM_CAP_USER_MEMORY2 is not reported"));
        }
        Ok(kvm)
    })?;
    let vm = r.require("create a VM (KVM_CREATE_VM)", |_| {
        kvm.create_vm()
            .map_err(|e| Error::sys("KVM_CREATE_VM", e.errno()))
    })?;
    r.check(
        "KVM_CAP_DMABUF_MEMSLOT is reported (1): guests can use the slots",
        |f| {
            let v = vm.check_extension_raw(KVM_CAP_DMABUF_MEMSLOT.into());
            f.add(format!(
                "KVM_CHECK_EXTENSION({KVM_CAP_DMABUF_MEMSLOT}) = {v}"
            ));
            if v != 1 {
                return Err(Error::msg("not reported, though x86 maps dma-buf slots"));
            }
            Ok(())
        },
    );
    let code = r.require("code slot 0: 64 KiB of anonymous memory at GPA 0", |f| {
        let code = Mapping::anonymous(CODE_SIZE as usize).op("mmap the code slot")?;
        set_region(
            &vm,
            MemoryRegion2 {
                slot: CODE_SLOT,
                guest_phys_addr: 0,
                memory_size: CODE_SIZE,
                userspace_addr: code.addr(),
                ..Default::default()
            },
        )?;
        f.add(format!("slot {CODE_SLOT}: GPA {}", span(0, CODE_SIZE)));
        Ok(code)
    })?;
    let (ivshmem, iommufd) = r.require(
        "ivshmem: VFIO device bound to iommufd, memory decoding on",
        |f| open_ivshmem(f).map(|i| (i.dev, i.iommufd)),
    )?;
    let mut lab = Lab {
        vm: Some(vm),
        code,
        ivshmem,
        iommufd,
    };
    r.require("export BAR2 as a dma-buf of two 1 MiB ranges", |f| {
        let fd = lab.export()?;
        f.add(format!("dma-buf fd {}", fd.as_raw_fd()));
        sys::close(fd).op("close the dma-buf")
    })?;
    if bufinfo().is_none() {
        r.comment(&format!(
            "{BUFINFO} unreadable: only descriptors are counted"
        ));
    }

    r.section("A dma-buf slot is created and deleted");
    r.check(
        "create dma-buf slot 1: the whole buffer at GPA 4 GiB",
        |f| {
            let before = snapshot()?;
            let fd = lab.export()?;
            lab.set(MemoryRegion2::dmabuf(
                DMABUF_SLOT,
                DMABUF_GPA,
                BUF_SIZE,
                fd.as_raw_fd(),
                0,
            ))?;
            f.add(format!(
                "slot {DMABUF_SLOT}: GPA {} = dma-buf [0, 2 MiB)",
                span(DMABUF_GPA, BUF_SIZE)
            ));
            let r = expect_attachments(&before, 1, f);
            let del = lab.set(MemoryRegion2::delete(DMABUF_SLOT));
            sys::close(fd).op("close the dma-buf")?;
            r.and(del)
        },
    );
    r.check(
        "delete dma-buf slot 1 (memory_size 0): nothing is left",
        |f| {
            let before = snapshot()?;
            let fd = lab.export()?;
            lab.set(MemoryRegion2::dmabuf(
                DMABUF_SLOT,
                DMABUF_GPA,
                BUF_SIZE,
                fd.as_raw_fd(),
                0,
            ))?;
            lab.set(MemoryRegion2::delete(DMABUF_SLOT))?;
            expect_attachments(&before, 0, f)?;
            sys::close(fd).op("close the dma-buf")?;
            same_as(&before, f)
        },
    );

    r.section("Refusals, each with its documented errno, leaving nothing behind");
    refusals(r, &lab);

    r.section("One dma-buf, two slots");
    r.check(
        "one dma-buf backs slot 1 [0, 1 MiB + 64 KiB) and slot 2 [1 MiB + 64 KiB, 2 MiB)",
        |f| {
            let before = snapshot()?;
            let fd = lab.export()?;
            let split = MIB + 64 * KIB;
            lab.set(MemoryRegion2::dmabuf(
                DMABUF_SLOT,
                DMABUF_GPA,
                split,
                fd.as_raw_fd(),
                0,
            ))?;
            let second = lab.set(MemoryRegion2::dmabuf(
                SECOND_SLOT,
                SECOND_GPA,
                BUF_SIZE - split,
                fd.as_raw_fd(),
                split,
            ));
            let counted = second
                .as_ref()
                .map_err(|e| Error::msg(e.to_string()))
                .and_then(|()| expect_attachments(&before, 2, f));
            f.add(format!(
                "slot {DMABUF_SLOT}: GPA {}, slot {SECOND_SLOT}: GPA {}",
                span(DMABUF_GPA, split),
                span(SECOND_GPA, BUF_SIZE - split)
            ));
            let del1 = lab.set(MemoryRegion2::delete(DMABUF_SLOT));
            let del2 = if second.is_ok() {
                lab.set(MemoryRegion2::delete(SECOND_SLOT))
            } else {
                Ok(())
            };
            sys::close(fd).op("close the dma-buf")?;
            counted.and(del1).and(del2)?;
            same_as(&before, f)
        },
    );

    r.section("The slot outlives the fd; the VM goes with its slot");
    r.check(
        "close the dma-buf fd while slot 1 exists, then delete the slot",
        |f| {
            let before = snapshot()?;
            let fd = lab.export()?;
            lab.set(MemoryRegion2::dmabuf(
                DMABUF_SLOT,
                DMABUF_GPA,
                BUF_SIZE,
                fd.as_raw_fd(),
                0,
            ))?;
            sys::close(fd).op("close the dma-buf")?;
            if let (Some(b), Some(n)) = (before.bufs, bufinfo()) {
                f.add(format!(
                    "fd closed: {} dma-bufs alive, {} before (KVM holds the buffer)",
                    n.objects, b.objects
                ));
                if n.objects != b.objects + 1 || n.kvm_attachments != b.kvm_attachments + 1 {
                    return Err(Error::msg("the buffer or KVM's attachment is gone"));
                }
            }
            lab.set(MemoryRegion2::delete(DMABUF_SLOT))?;
            same_as(&before, f)
        },
    );
    r.check("destroy the VM with dma-buf slot 1 alive", |f| {
        let before = snapshot()?;
        let fd = lab.export()?;
        lab.set(MemoryRegion2::dmabuf(
            DMABUF_SLOT,
            DMABUF_GPA,
            BUF_SIZE,
            fd.as_raw_fd(),
            0,
        ))?;
        sys::close(fd).op("close the dma-buf")?;
        let vm = lab.vm.take().ok_or_else(|| Error::msg("the VM is gone"))?;
        drop(vm);
        f.add("VM fd closed with the slot alive");
        // The VM fd was open before: one descriptor fewer.
        let now = snapshot()?;
        if now.fds + 1 != before.fds {
            return Err(Error::msg(format!(
                "{} descriptors open, expected {}",
                now.fds,
                before.fds - 1
            )));
        }
        if now.bufs != before.bufs {
            return Err(Error::msg(format!(
                "dma-bufs and KVM attachments: {:?}, {:?} before",
                now.bufs, before.bufs
            )));
        }
        f.add("the buffer and KVM's attachment went with the VM");
        Ok(())
    });

    crate::kvm_guest::run(r, &kvm, &lab);

    r.section("Cleanup");
    let Lab {
        vm,
        code,
        ivshmem,
        iommufd,
    } = lab;
    drop(vm);
    drop(code);
    drop(kvm);
    r.check("close ivshmem's VFIO device and /dev/iommu", |_| {
        ivshmem.close()?;
        iommufd.close()
    });
    r.check("no file descriptor is left open", |f| {
        no_fd_left(fds_at_start, f)
    });
    Ok(())
}

/// Which descriptor a refusal passes as `dmabuf_fd`.
enum Fd {
    /// A fresh read/write dma-buf of BAR2.
    DmaBuf,
    /// A fresh read-only dma-buf of BAR2.
    ReadOnly,
    /// A memfd: a file, not a dma-buf.
    Memfd,
    /// No descriptor at all.
    None,
}

/// One refusal: `region(fd)` must fail with `errno`; afterwards, once our fd
/// is closed, nothing is left.
fn refuse(
    r: &mut Runner<'_>,
    lab: &Lab,
    desc: &str,
    fd: Fd,
    errno: i32,
    region: impl FnOnce(RawFd) -> MemoryRegion2,
) {
    r.check(desc, |f| {
        let before = snapshot()?;
        let owned = match fd {
            Fd::DmaBuf => Some(lab.export()?),
            Fd::ReadOnly => Some(lab.export_read_only()?),
            Fd::Memfd => Some(sys::memfd_create(c"kvm-not-a-dma-buf").op("memfd_create")?),
            Fd::None => None,
        };
        let raw = owned.as_ref().map_or(-1, |o| o.as_raw_fd());
        let res = lab.set(region(raw));
        let refused = expect_errno(res, errno);
        if let Some(o) = owned {
            sys::close(o).op("close the fd")?;
        }
        let e = refused?;
        f.add(e.to_string());
        same_as(&before, f)
    });
}

fn refusals(r: &mut Runner<'_>, lab: &Lab) {
    let whole = |fd| MemoryRegion2::dmabuf(DMABUF_SLOT, DMABUF_GPA, BUF_SIZE, fd, 0);
    refuse(
        r,
        lab,
        "a memfd as dmabuf_fd: EBADF",
        Fd::Memfd,
        libc::EBADF,
        whole,
    );
    refuse(r, lab, "dmabuf_fd -1: EBADF", Fd::None, libc::EBADF, whole);
    refuse(
        r,
        lab,
        "dmabuf_offset not page aligned (2 KiB): EINVAL",
        Fd::DmaBuf,
        libc::EINVAL,
        |fd| MemoryRegion2::dmabuf(DMABUF_SLOT, DMABUF_GPA, MIB, fd, 2 * KIB),
    );
    refuse(
        r,
        lab,
        "dmabuf_offset + memory_size beyond the buffer (1 MiB + 2 MiB): E2BIG",
        Fd::DmaBuf,
        libc::E2BIG,
        |fd| MemoryRegion2::dmabuf(DMABUF_SLOT, DMABUF_GPA, BUF_SIZE, fd, MIB),
    );
    refuse(
        r,
        lab,
        "dmabuf_offset past the end of the buffer (2 MiB + 4 KiB): E2BIG",
        Fd::DmaBuf,
        libc::E2BIG,
        |fd| MemoryRegion2::dmabuf(DMABUF_SLOT, DMABUF_GPA, 4 * KIB, fd, BUF_SIZE + 4 * KIB),
    );
    refuse(
        r,
        lab,
        "dmabuf_offset + memory_size wrapping around: E2BIG",
        Fd::DmaBuf,
        libc::E2BIG,
        |fd| MemoryRegion2::dmabuf(DMABUF_SLOT, DMABUF_GPA, MIB, fd, !0xfff),
    );
    let gmem = lab.vm().ok().and_then(|vm| {
        vm.create_guest_memfd(kvm_create_guest_memfd {
            size: BUF_SIZE,
            flags: 0,
            reserved: [0; 6],
        })
        .ok()
    });
    let gmem_fd = gmem.unwrap_or(-1);
    r.comment(&format!(
        "guest_memfd for the combination: {}",
        if gmem_fd >= 0 {
            format!("fd {gmem_fd}")
        } else {
            "none could be created, -1 passed (the flags are refused first)".to_string()
        }
    ));
    refuse(
        r,
        lab,
        "KVM_MEM_DMABUF with KVM_MEM_GUEST_MEMFD: EINVAL",
        Fd::DmaBuf,
        libc::EINVAL,
        |fd| MemoryRegion2 {
            flags: KVM_MEM_DMABUF | KVM_MEM_GUEST_MEMFD,
            guest_memfd: gmem_fd as u32,
            ..whole(fd)
        },
    );
    if gmem_fd >= 0 {
        // SAFETY: `gmem_fd` is the descriptor create_guest_memfd() returned
        // and nothing else owns it.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(gmem_fd) });
    }
    refuse(
        r,
        lab,
        "KVM_MEM_DMABUF with KVM_MEM_LOG_DIRTY_PAGES: EINVAL",
        Fd::DmaBuf,
        libc::EINVAL,
        |fd| MemoryRegion2 {
            flags: KVM_MEM_DMABUF | KVM_MEM_LOG_DIRTY_PAGES,
            ..whole(fd)
        },
    );
    let code_addr = lab.code.addr();
    refuse(
        r,
        lab,
        "userspace_addr not 0: EINVAL",
        Fd::DmaBuf,
        libc::EINVAL,
        |fd| MemoryRegion2 {
            userspace_addr: code_addr,
            memory_size: CODE_SIZE,
            ..whole(fd)
        },
    );
    r.check("moving dma-buf slot 1 to another GPA: EINVAL", |f| {
        let before = snapshot()?;
        let fd = lab.export()?;
        lab.set(whole(fd.as_raw_fd()))?;
        let moved = expect_errno(
            lab.set(MemoryRegion2 {
                guest_phys_addr: MOVED_GPA,
                ..whole(fd.as_raw_fd())
            }),
            libc::EINVAL,
        );
        let del = lab.set(MemoryRegion2::delete(DMABUF_SLOT));
        sys::close(fd).op("close the dma-buf")?;
        f.add(moved?.to_string());
        del?;
        same_as(&before, f)
    });
    r.check("changing the flags of dma-buf slot 1: EINVAL", |f| {
        let before = snapshot()?;
        let fd = lab.export()?;
        lab.set(whole(fd.as_raw_fd()))?;
        let changed = expect_errno(
            lab.set(MemoryRegion2 {
                flags: 0,
                ..whole(fd.as_raw_fd())
            }),
            libc::EINVAL,
        );
        let del = lab.set(MemoryRegion2::delete(DMABUF_SLOT));
        sys::close(fd).op("close the dma-buf")?;
        f.add(changed?.to_string());
        del?;
        same_as(&before, f)
    });
    refuse(
        r,
        lab,
        "a read-only dma-buf fd without KVM_MEM_READONLY: EACCES",
        Fd::ReadOnly,
        libc::EACCES,
        whole,
    );
    r.check(
        "a read-only dma-buf fd with KVM_MEM_READONLY: created, then deleted",
        |f| {
            let before = snapshot()?;
            let fd = lab.export_read_only()?;
            let made = lab.set(MemoryRegion2 {
                flags: KVM_MEM_DMABUF | KVM_MEM_READONLY,
                ..whole(fd.as_raw_fd())
            });
            let counted = made
                .as_ref()
                .map_err(|e| Error::msg(e.to_string()))
                .and_then(|()| expect_attachments(&before, 1, f));
            let del = if made.is_ok() {
                lab.set(MemoryRegion2::delete(DMABUF_SLOT))
            } else {
                Ok(())
            };
            sys::close(fd).op("close the dma-buf")?;
            made?;
            counted?;
            del?;
            same_as(&before, f)
        },
    );
    r.skip(
        "a dma-buf whose exporter has no get_memory: EOPNOTSUPP",
        "no such exporter is reachable from userspace in this guest (udmabuf has get_memory, no \
         dma-buf heaps)",
    );
    r.check(
        "memory decoding off (PCI_COMMAND.MEMORY), the buffer revoked: ENODEV",
        |f| {
            let before = snapshot()?;
            let fd = lab.export()?;
            lab.ivshmem.clear_command_bits(PCI_COMMAND_MEMORY)?;
            let refused = expect_errno(lab.set(whole(fd.as_raw_fd())), libc::ENODEV);
            let restored = lab.ivshmem.set_command_bits(PCI_COMMAND_MEMORY);
            sys::close(fd).op("close the dma-buf")?;
            restored?;
            f.add(refused?.to_string());
            same_as(&before, f)
        },
    );
    r.check(
        "revoke while dma-buf slot 1 exists: KVM lets go, the slot is deleted",
        |f| {
            let before = snapshot()?;
            let fd = lab.export()?;
            lab.set(whole(fd.as_raw_fd()))?;
            // vfio-pci's revoke waits until every importer has put its
            // description: the write returns only if KVM's invalidate did.
            let revoked = lab.ivshmem.clear_command_bits(PCI_COMMAND_MEMORY);
            if revoked.is_ok() {
                f.add("PCI_COMMAND.MEMORY cleared: the buffer is revoked");
            }
            let restored = lab.ivshmem.set_command_bits(PCI_COMMAND_MEMORY);
            let del = lab.set(MemoryRegion2::delete(DMABUF_SLOT));
            sys::close(fd).op("close the dma-buf")?;
            revoked?;
            restored?;
            del?;
            same_as(&before, f)
        },
    );
    r.check("BAR2 is exported again after the refusals", |f| {
        let before = snapshot()?;
        let fd = lab.export()?;
        f.add(format!("dma-buf fd {}", fd.as_raw_fd()));
        sys::close(fd).op("close the dma-buf")?;
        same_as(&before, f)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_fields_land_in_the_padding() {
        let r = MemoryRegion2 {
            pad2: [7; 13],
            ..MemoryRegion2::dmabuf(3, 0x1_0000_0000, 0x20_0000, 9, 0x1000)
        };
        let k = r.to_kvm();
        assert_eq!(k.slot, 3);
        assert_eq!(k.flags, KVM_MEM_DMABUF);
        assert_eq!(k.guest_phys_addr, 0x1_0000_0000);
        assert_eq!(k.memory_size, 0x20_0000);
        assert_eq!(k.userspace_addr, 0);
        assert_eq!(k.pad1, 9);
        assert_eq!(k.pad2[0], 0x1000);
        assert_eq!(k.pad2[1..], [7; 13]);
    }

    #[test]
    fn region_bytes_match_the_uapi_offsets() {
        let r = MemoryRegion2::dmabuf(1, 2, 3, 0x4455_6677, 0x1122_3344_5566_7788);
        // SAFETY: MemoryRegion2 is repr(C) plain data without padding bytes.
        let b: [u8; 160] = unsafe { std::mem::transmute(r) };
        assert_eq!(b[44..48], 0x4455_6677u32.to_ne_bytes());
        assert_eq!(b[48..56], 0x1122_3344_5566_7788u64.to_ne_bytes());
        assert_eq!(b[4..8], KVM_MEM_DMABUF.to_ne_bytes());
    }

    #[test]
    fn bufinfo_counts() {
        let text = "\nDma-buf Objects:\nsize    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\
                    00065536\t00000002\t00080007\t00000002\tvfio_pci\t00000042\t<none>\n\
                    \tAttached Devices:\n\tkvm\n\tkvm\nTotal 2 devices attached\n\n\
                    \nTotal 1 objects, 65536 bytes\n";
        assert_eq!(
            parse_bufinfo(text),
            Some(BufInfo {
                objects: 1,
                kvm_attachments: 2
            })
        );
        assert_eq!(parse_bufinfo("nothing"), None);
    }
}
