//! `dmabuf-tool bufinfo`: what `/sys/kernel/debug/dma_buf/bufinfo` and
//! `dmabuf-tool inspect` show of buffers whose memory model is known, each
//! found by the inode of our descriptor (`fstat`):
//!
//! - a VFIO dma-buf of ivshmem's BAR2 is "revocable", not revoked; with a
//!   `IOMMU_IOAS_MAP_FILE` mapping of it, iommufd's attachment ("iommu")
//!   accepts pinned and revocable memory and holds 1 description; a
//!   `KVM_MEM_DMABUF` slot adds KVM's ("kvm"), which also accepts dynamic
//!   memory and holds 1; with PCI_COMMAND.MEMORY off the buffer is
//!   "revocable, revoked" and both hold 0; back on it is not revoked, iommufd
//!   still holds 0 (its mapping stays dead until unmapped) and KVM holds 0
//!   until a fault gets the memory again (reported, either is accepted);
//!   after the unmap and the slot's deletion nothing is attached;
//! - the Rust sample's `PINNED` and `DYNAMIC` buffers are "pinned" and
//!   "dynamic"; udmabufs are "pinned", mode rw, or ro when made from a memfd
//!   reopened `O_RDONLY`;
//! - inspect lists each of our buffers under our pid (pid:fd) and under a
//!   forked child's, whose descriptors `pidfd_getfd()` duplicates, and the C
//!   import sample's DESCRIBE of them through those duplicates gives the
//!   model bufinfo shows;
//! - at the end none of the buffers is left and no descriptor is open.
//!
//! Parts whose device is missing are skipped with the reason.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use kvm_ioctls::VmFd;

use crate::args::{size, span};
use crate::errno::{Context, Error, Result};
use crate::import_sample;
use crate::inspect::{
    self, expect_importer, expect_model, Buffer, Bufinfo, Holder, Model, Report, Target,
    IOMMUFD_ACCEPTS, IOMMUFD_DEVICE, KVM_ACCEPTS, KVM_DEVICE,
};
use crate::kvm::{self, Ivshmem, MemoryRegion2, BAR2, BAR2_RANGES, BUFINFO, MIB};
use crate::report::{Facts, Runner};
use crate::rust_exporter;
use crate::story::open_fds;
use crate::sys;
use crate::udmabuf::{self, blocked, skip_all, Memfd, Udmabuf};
use crate::vfio::PCI_COMMAND_MEMORY;
use crate::{failnth, fuzz};

/// The VFIO dma-buf: BAR2 as two 1 MiB ranges.
const VFIO_LEN: u64 = 2 * MIB;
/// Where MAP_FILE maps it, in an IOAS of its own.
const IOVA: u64 = 1 << 30;
/// Its memslot, in a VM without other slots.
const SLOT: u32 = 1;
const GPA: u64 = 4 << 30;
/// The udmabufs: four pages of one memfd.
const UDMABUF_LEN: u64 = 4 * 4096;

const SETUP_CASE: &str = "bufinfo parses: each entry has its devices' total, the object count and \
     bytes match the entries, no line is left unknown but the fences";

const VFIO_CASES: [&str; 7] = [
    "setup: ivshmem on vfio-pci, bound to iommufd, memory decoding on; an IOAS of its own",
    "a VFIO dma-buf of ivshmem's BAR2 (2 MiB, two ranges) is found in bufinfo by its fd's \
     inode: a vfio exporter, 2 MiB, rw, Memory model: revocable, not revoked, no memory error, \
     nothing attached",
    "IOMMU_IOAS_MAP_FILE of it: one attachment of iommu (iommufd) that accepts pinned revocable \
     and holds 1 memory description",
    "a KVM_MEM_DMABUF slot of it adds one attachment of kvm that accepts pinned revocable \
     dynamic and holds 1 memory description",
    "PCI_COMMAND.MEMORY off: Memory model: revocable, revoked; iommu and kvm hold 0 memory \
     descriptions",
    "PCI_COMMAND.MEMORY on: not revoked; iommu still holds 0 (its mapping stays dead until \
     unmapped), kvm 0 or 1 (0 until a fault gets the memory again; reported)",
    "IOMMU_IOAS_UNMAP and the slot's deletion: nothing is attached to the buffer any more",
];
const RUST_CASES: [&str; 2] = [
    "RUST_DMABUF_EXPORT_PINNED: bufinfo shows rust_dmabuf_exporter, 16 KiB, rw, Memory model: \
     pinned, nothing attached",
    "RUST_DMABUF_EXPORT (the open file's DYNAMIC buffer): bufinfo shows rust_dmabuf_exporter, \
     16 KiB, rw, Memory model: dynamic, nothing attached",
];
const UDMABUF_CASES: [&str; 2] = [
    "UDMABUF_CREATE of a 16 KiB memfd: bufinfo shows udmabuf, 16 KiB, rw, Memory model: pinned, \
     nothing attached",
    "UDMABUF_CREATE of the memfd reopened O_RDONLY: bufinfo shows mode ro (no FMODE_WRITE), \
     Memory model: pinned",
];
const INSPECT_CASES: [&str; 4] = [
    "inspect of our pid lists exactly our dma-bufs, each held by our pid:fd under the entry of \
     the fd's inode; inspect PID:FD shows that one buffer",
    "a forked child holding copies of our descriptors: inspect of its pid lists each buffer held \
     by child:fd and by us; pidfd_getfd() of the child's fd gives the same inode",
    "DESCRIBE (dmabuf_import_sample) of each buffer through pidfd_getfd() of the child's fd: the \
     model bufinfo shows, the buffer's size",
    "the child exits: each buffer is held by our fd alone again",
];
const CLEANUP_CASES: [&str; 2] = [
    "close the buffers and the devices: none of the buffers is left in bufinfo, which counts as \
     many objects as at the start",
    "no file descriptor is left open",
];

/// What bufinfo must show of a new buffer.
struct Want {
    what: &'static str,
    /// A prefix: vfio-pci's buffers carry the name of the module that holds
    /// vfio_pci_dmabuf.c.
    exporter: &'static str,
    len: u64,
    access: &'static str,
    model: Model,
}

impl Want {
    fn check(&self, b: &Buffer) -> Result<()> {
        if !b.exp_name.starts_with(self.exporter) || b.size != self.len || b.access() != self.access
        {
            return Err(Error::msg(format!(
                "bufinfo shows {}, {} bytes, {}; expected {}*, {}, {}",
                b.exp_name,
                b.size,
                b.access(),
                self.exporter,
                self.len,
                self.access
            )));
        }
        expect_model(b, self.model.clone(), false)?;
        if !b.attachments.is_empty() {
            return Err(Error::msg(format!(
                "{} attachment(s) of a new buffer",
                b.attachments.len()
            )));
        }
        Ok(())
    }
}

/// A buffer kept for the inspect part.
struct Held {
    fd: OwnedFd,
    want: Want,
}

/// What the run holds open until the cleanup.
#[derive(Default)]
struct Lab {
    held: Vec<Held>,
    ivshmem: Option<Ivshmem>,
    rust: Option<File>,
    udmabuf: Option<(Udmabuf, Memfd)>,
}

/// The bufinfo entry of `fd`, found by its inode; the inspect view of it
/// goes to `f`.
fn entry(fd: &OwnedFd, f: &mut Facts) -> Result<Buffer> {
    inspect::show_fds(&[fd.as_fd()], f)?
        .pop()
        .ok_or_else(|| Error::msg("no entry"))
}

/// Case `desc`: `make` a buffer, find it in bufinfo, check it against
/// `want`. The buffer is returned even if the check failed.
fn made(
    r: &mut Runner<'_>,
    desc: &str,
    want: &Want,
    make: impl FnOnce(&mut Facts) -> Result<OwnedFd>,
) -> Option<OwnedFd> {
    let mut kept = None;
    r.check(desc, |f| {
        let fd = kept.insert(make(f)?);
        f.add(format!("{}: fd {}", want.what, fd.as_raw_fd()));
        want.check(&entry(fd, f)?)
    });
    kept
}

/// iommufd (if `mapped`) and KVM (if `slot`) are attached once and hold
/// one of `iommu` and `kvm` descriptions.
fn expect_holds(
    b: &Buffer,
    (mapped, slot): (bool, bool),
    iommu: &[u32],
    kvm: &[u32],
    f: &mut Facts,
) -> Result<()> {
    let mut seen = Vec::new();
    if mapped {
        let n = expect_importer(b, IOMMUFD_DEVICE, &IOMMUFD_ACCEPTS, iommu)?;
        seen.push(format!("{IOMMUFD_DEVICE} holds {n}"));
    }
    if slot {
        let n = expect_importer(b, KVM_DEVICE, &KVM_ACCEPTS, kvm)?;
        seen.push(format!("{KVM_DEVICE} holds {n}"));
    }
    if !seen.is_empty() {
        f.add(format!("seen: {}", seen.join(", ")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A. VFIO

fn vfio(r: &mut Runner<'_>, lab: &mut Lab) {
    let c = &VFIO_CASES;
    if let Some(why) = fuzz::ivshmem_absent() {
        skip_all(r, c, &why);
        return;
    }
    let Some((ivs, ioas)) = r.attempt(c[0], |f| {
        let ivs = kvm::open_ivshmem(f)?;
        let ioas = ivs.iommufd.ioas_alloc()?;
        f.add(format!("IOAS {ioas} for MAP_FILE"));
        Ok((ivs, ioas))
    }) else {
        blocked(r, &c[1..], "the setup failed");
        return;
    };
    let want = Want {
        what: "the VFIO dma-buf of BAR2",
        exporter: "vfio",
        len: VFIO_LEN,
        access: "rw",
        model: Model::Revocable,
    };
    let Some(buf) = made(r, c[1], &want, |_| {
        ivs.dev.export_dma_buf(BAR2, &BAR2_RANGES)
    }) else {
        blocked(r, &c[2..], "no VFIO dma-buf");
        lab.ivshmem = Some(ivs);
        return;
    };

    let mut mapped = false;
    r.check(c[2], |f| {
        let at = ivs.iommufd.map_file(ioas, buf.as_fd(), 0, VFIO_LEN, IOVA)?;
        mapped = true;
        f.add(format!("IOMMU_IOAS_MAP_FILE: IOVA {}", span(at, VFIO_LEN)));
        let b = entry(&buf, f)?;
        expect_holds(&b, (true, false), &[1], &[], f)
    });

    let mut slot = false;
    let vm = kvm_slot(r, c[3], &buf, mapped, &mut slot);

    r.check(c[4], |f| {
        let (before, after) = ivs.dev.clear_command_bits(PCI_COMMAND_MEMORY)?;
        f.add(format!("PCI_COMMAND {before:#06x} -> {after:#06x}"));
        let b = entry(&buf, f)?;
        expect_model(&b, Model::Revocable, true)?;
        expect_holds(&b, (mapped, slot), &[0], &[0], f)
    });
    // Run even if the revoke failed half-way: decoding must be back on.
    r.check(c[5], |f| {
        let (before, after) = ivs.dev.set_command_bits(PCI_COMMAND_MEMORY)?;
        f.add(format!("PCI_COMMAND {before:#06x} -> {after:#06x}"));
        let b = entry(&buf, f)?;
        expect_model(&b, Model::Revocable, false)?;
        expect_holds(&b, (mapped, slot), &[0], &[0, 1], f)
    });
    r.check(c[6], |f| {
        if mapped {
            let n = ivs.iommufd.unmap(ioas, IOVA, VFIO_LEN)?;
            f.add(format!("IOMMU_IOAS_UNMAP: {}", size(n)));
        }
        if let (Some(vm), true) = (&vm, slot) {
            kvm::set_region(vm, MemoryRegion2::delete(SLOT))?;
            f.add(format!("slot {SLOT} deleted"));
        }
        let b = entry(&buf, f)?;
        if !b.attachments.is_empty() {
            return Err(Error::msg(format!(
                "{} attachment(s) left",
                b.attachments.len()
            )));
        }
        Ok(())
    });
    drop(vm);
    lab.held.push(Held { fd: buf, want });
    lab.ivshmem = Some(ivs);
}

/// Case `desc`: a KVM_MEM_DMABUF slot of all of `buf`; `slot` says whether
/// it was made. Returns the VM, if there is one.
fn kvm_slot(
    r: &mut Runner<'_>,
    desc: &str,
    buf: &OwnedFd,
    mapped: bool,
    slot: &mut bool,
) -> Option<VmFd> {
    if !Path::new("/dev/kvm").exists() {
        r.skip(desc, "no /dev/kvm");
        return None;
    }
    let vm = match failnth::open_vm() {
        Ok(Some(vm)) => vm,
        Ok(None) => {
            r.skip(
                desc,
                "KVM_CAP_DMABUF_MEMSLOT is not reported: no KVM_MEM_DMABUF here",
            );
            return None;
        }
        Err(e) => {
            r.check(desc, |_| Err(e));
            return None;
        }
    };
    r.check(desc, |f| {
        kvm::set_region(
            &vm,
            MemoryRegion2::dmabuf(SLOT, GPA, VFIO_LEN, buf.as_raw_fd(), 0),
        )?;
        *slot = true;
        f.add(format!(
            "slot {SLOT}: GPA {} = the dma-buf",
            span(GPA, VFIO_LEN)
        ));
        let b = entry(buf, f)?;
        expect_holds(&b, (mapped, true), &[1], &[1], f)
    });
    Some(vm)
}

// ---------------------------------------------------------------------------
// B. The Rust sample, C. udmabuf

fn rust(r: &mut Runner<'_>, lab: &mut Lab) {
    let c = &RUST_CASES;
    if !Path::new(rust_exporter::DEVICE).exists() {
        let why = format!(
            "no {}: rust_dmabuf_exporter is not loaded",
            rust_exporter::DEVICE
        );
        skip_all(r, c, &why);
        return;
    }
    let dev = match rust_exporter::open() {
        Ok(d) => d,
        Err(e) => {
            blocked(r, c, &e.to_string());
            return;
        }
    };
    for (desc, what, model) in [
        (c[0], "the Rust PINNED buffer", Model::Pinned),
        (c[1], "the Rust DYNAMIC buffer", Model::Dynamic),
    ] {
        let want = Want {
            what,
            exporter: rust_exporter::EXPORTER,
            len: rust_exporter::BUF_LEN,
            access: "rw",
            model,
        };
        let pinned = want.model == Model::Pinned;
        if let Some(fd) = made(r, desc, &want, |_| {
            if pinned {
                sys::ioctl_new_fd(dev.as_fd(), rust_exporter::EXPORT_PINNED)
                    .op("RUST_DMABUF_EXPORT_PINNED")
            } else {
                rust_exporter::export_dynamic(&dev)
            }
        }) {
            lab.held.push(Held { fd, want });
        }
    }
    lab.rust = Some(dev);
}

fn udmabufs(r: &mut Runner<'_>, lab: &mut Lab) {
    let c = &UDMABUF_CASES;
    if !Path::new(udmabuf::DEVICE).exists() {
        let why = format!("no {}: the kernel lacks CONFIG_UDMABUF", udmabuf::DEVICE);
        skip_all(r, c, &why);
        return;
    }
    let (u, mem) = match Udmabuf::open().and_then(|u| {
        let mem = Memfd::with_pattern(c"bufinfo-udmabuf", UDMABUF_LEN, 0)?;
        Ok((u, mem))
    }) {
        Ok(x) => x,
        Err(e) => {
            blocked(r, c, &e.to_string());
            return;
        }
    };
    for (desc, what, access) in [
        (c[0], "the udmabuf of the O_RDWR memfd", "rw"),
        (c[1], "the udmabuf of the memfd reopened O_RDONLY", "ro"),
    ] {
        let want = Want {
            what,
            exporter: "udmabuf",
            len: UDMABUF_LEN,
            access,
            model: Model::Pinned,
        };
        let made = made(r, desc, &want, |f| {
            if access == "rw" {
                return u.create(mem.raw(), 0, UDMABUF_LEN);
            }
            let file = mem.read_only()?;
            f.add(format!(
                "memfd fd {} reopened O_RDONLY: fd {}",
                mem.raw(),
                file.as_raw_fd()
            ));
            let buf = u.create(file.as_raw_fd(), 0, UDMABUF_LEN);
            sys::close(file.into()).op("close the O_RDONLY memfd")?;
            buf
        });
        if let Some(fd) = made {
            lab.held.push(Held { fd, want });
        }
    }
    lab.udmabuf = Some((u, mem));
}

// ---------------------------------------------------------------------------
// D. inspect

/// A forked child that holds copies of all our descriptors until told to
/// exit; told and reaped on drop.
struct Child {
    pid: i32,
    /// The write end of a pipe the child reads until EOF.
    release: Option<OwnedFd>,
}

impl Child {
    fn fork() -> Result<Child> {
        let mut p: [RawFd; 2] = [-1; 2];
        // SAFETY: pipe2 writes two descriptors to the array.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(Error::io("pipe2", io::Error::last_os_error()));
        }
        // SAFETY: both descriptors are new and ours alone.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        // SAFETY: the child only calls close(), read() and _exit(), which
        // are async-signal-safe (so other threads, as in `cargo test`, do
        // not matter), and never returns from here.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: the child closes its copy of the write end (dropping
            // nothing), reads into a byte on its stack until EOF or an
            // error, and exits without running destructors.
            unsafe {
                libc::close(wr.as_raw_fd());
                while libc::read(rd.as_raw_fd(), (&raw mut b).cast(), 1) < 0
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {
                }
                libc::_exit(0);
            }
        }
        if pid < 0 {
            return Err(Error::io("fork", io::Error::last_os_error()));
        }
        drop(rd);
        Ok(Child {
            pid,
            release: Some(wr),
        })
    }

    /// Tells the child to exit and waits for it; its wait status.
    fn reap(&mut self) -> Result<i32> {
        let Some(wr) = self.release.take() else {
            return Err(Error::msg("already reaped"));
        };
        let closed = sys::close(wr).op("close the child's pipe");
        let mut status = 0;
        loop {
            // SAFETY: waitpid writes the status to the pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::io(format!("waitpid({})", self.pid), e));
            }
        }
        closed?;
        Ok(status)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.release.is_some() {
            // Reached only on an early return; reap() is reported where it
            // is called.
            let _ = self.reap();
        }
    }
}

/// Each of `held` is in `report`, held by `pid` and by each of `also`.
fn listed(report: &Report, held: &[Held], pid: i32, also: &[i32], f: &mut Facts) -> Result<()> {
    for h in held {
        let ino = inspect::ino_of(h.fd.as_fd())?;
        let e = report
            .entry(ino)
            .ok_or_else(|| Error::msg(format!("{}: inode {ino} not listed", h.want.what)))?;
        let holders: Vec<String> = e.holders.iter().map(Holder::to_string).collect();
        f.add(format!(
            "{}: inode {ino}, {}, held by {}",
            h.want.what,
            e.buf.state(),
            holders.join(" ")
        ));
        for &p in std::iter::once(&pid).chain(also) {
            let want = Holder {
                pid: p,
                fd: h.fd.as_raw_fd(),
            };
            if !e.holders.contains(&want) {
                return Err(Error::msg(format!("{}: {want} is not listed", h.want.what)));
            }
        }
    }
    if report.entries.len() != held.len() {
        return Err(Error::msg(format!(
            "{} buffers listed, {} held",
            report.entries.len(),
            held.len()
        )));
    }
    Ok(())
}

fn inspect_part(r: &mut Runner<'_>, held: &[Held]) {
    let c = &INSPECT_CASES;
    if held.is_empty() {
        skip_all(r, c, "no dma-buf could be made here (see above)");
        return;
    }
    let me = std::process::id() as i32;
    r.check(c[0], |f| {
        let report = Report::gather(&Target::Pid(me))?;
        listed(&report, held, me, &[], f)?;
        for h in held {
            let one = Report::gather(&Target::Fd(Holder {
                pid: me,
                fd: h.fd.as_raw_fd(),
            }))?;
            let ino = inspect::ino_of(h.fd.as_fd())?;
            if one.entries.len() != 1 || one.entries[0].buf.ino != ino {
                return Err(Error::msg(format!(
                    "inspect {me}:{} does not show inode {ino} alone",
                    h.fd.as_raw_fd()
                )));
            }
        }
        f.add(format!("inspect {me}:FD shows each one alone"));
        Ok(())
    });
    let mut child = Child::fork();
    r.check(c[1], |f| {
        let child = child.as_ref().map_err(|e| Error::msg(e.to_string()))?;
        f.add(format!("child {} forked", child.pid));
        let report = Report::gather(&Target::Pid(child.pid))?;
        listed(&report, held, child.pid, &[me], f)?;
        for h in held {
            let dup = inspect::duplicate(Holder {
                pid: child.pid,
                fd: h.fd.as_raw_fd(),
            })?;
            let (a, b) = (
                inspect::ino_of(dup.as_fd())?,
                inspect::ino_of(h.fd.as_fd())?,
            );
            sys::close(dup).op("close the duplicate")?;
            if a != b {
                return Err(Error::msg(format!("the duplicate is inode {a}, not {b}")));
            }
        }
        f.add("pidfd_getfd() of each: the same inode");
        Ok(())
    });
    describe(r, c[2], held, child.as_ref().ok().map(|c| c.pid));
    r.check(c[3], |f| {
        let child = child.as_mut().map_err(|e| Error::msg(e.to_string()))?;
        let status = child.reap()?;
        f.add(format!(
            "child {} exited, wait status {status:#x}",
            child.pid
        ));
        let report = Report::gather(&Target::Pid(me))?;
        listed(&report, held, me, &[], f)?;
        for h in held {
            let ino = inspect::ino_of(h.fd.as_fd())?;
            let n = report.entry(ino).map_or(0, |e| e.holders.len());
            if n != 1 {
                return Err(Error::msg(format!("{}: {n} holders", h.want.what)));
            }
        }
        Ok(())
    });
}

/// DESCRIBE of each of `held` through the child's descriptor.
fn describe(r: &mut Runner<'_>, desc: &str, held: &[Held], child: Option<i32>) {
    if !Path::new(import_sample::DEVICE).exists() {
        let why = format!(
            "no {}: dmabuf_import_sample is not loaded",
            import_sample::DEVICE
        );
        r.skip(desc, &why);
        return;
    }
    r.check(desc, |f| {
        let pid = child.ok_or_else(|| Error::msg("no child"))?;
        let dev = import_sample::open()?;
        let mut res = Ok(());
        for h in held {
            let ino = inspect::ino_of(h.fd.as_fd())?;
            let holder = Holder {
                pid,
                fd: h.fd.as_raw_fd(),
            };
            let d = inspect::describe_holder(&dev, holder, ino)?;
            f.add(format!(
                "{} through {holder}: {}",
                h.want.what,
                inspect::description(&d)
            ));
            if Model::from_number(d.model) != h.want.model || d.size != h.want.len {
                res = Err(Error::msg(format!(
                    "{}: described as {} of {}, bufinfo shows {} of {}",
                    h.want.what,
                    Model::from_number(d.model),
                    size(d.size),
                    h.want.model,
                    size(h.want.len)
                )));
            }
        }
        sys::close(dev.into()).op(format!("close {}", import_sample::DEVICE))?;
        res
    });
}

// ---------------------------------------------------------------------------
// The run

/// Closes everything in `lab`; the inodes of its buffers.
fn close_lab(lab: Lab) -> Result<Vec<u64>> {
    let mut inos = Vec::new();
    for h in lab.held {
        inos.push(inspect::ino_of(h.fd.as_fd())?);
        sys::close(h.fd).op(format!("close {}", h.want.what))?;
    }
    if let Some(dev) = lab.rust {
        sys::close(dev.into()).op(format!("close {}", rust_exporter::DEVICE))?;
    }
    if let Some((u, mem)) = lab.udmabuf {
        mem.close()?;
        drop(u);
    }
    if let Some(Ivshmem { dev, iommufd, .. }) = lab.ivshmem {
        dev.close()?;
        iommufd.close()?;
    }
    Ok(inos)
}

/// The live bufinfo is understood: what `Bufinfo::parse` leaves unknown is
/// only the reservation objects' fences.
fn parses(info: &Bufinfo, f: &mut Facts) -> Result<()> {
    f.add(format!(
        "{} buffers, {:?} objects, {:?} bytes",
        info.buffers.len(),
        info.objects,
        info.bytes
    ));
    let bytes: u64 = info.buffers.iter().map(|b| b.size).sum();
    if info.objects != Some(info.buffers.len()) || info.bytes != Some(bytes) {
        return Err(Error::msg(format!(
            "the entries add up to {} objects, {bytes} bytes",
            info.buffers.len()
        )));
    }
    for b in &info.buffers {
        if b.attached != Some(b.attachments.len()) {
            return Err(Error::msg(format!(
                "inode {}: {} attachments read, the total says {:?}",
                b.ino,
                b.attachments.len(),
                b.attached
            )));
        }
        if let Some(l) = b.other.iter().find(|l| !l.contains(" fence:")) {
            return Err(Error::msg(format!("inode {}: unknown line {l:?}", b.ino)));
        }
    }
    Ok(())
}

pub fn run(r: &mut Runner<'_>) -> bool {
    test(r);
    r.finish()
}

fn test(r: &mut Runner<'_>) {
    let all: [&[&str]; 5] = [
        &VFIO_CASES,
        &RUST_CASES,
        &UDMABUF_CASES,
        &INSPECT_CASES,
        &CLEANUP_CASES,
    ];
    let start = match Bufinfo::read() {
        Ok(info) => info,
        Err(e) => {
            let why = format!("{BUFINFO} unreadable ({e}): no debugfs or no CONFIG_DEBUG_FS");
            r.skip(SETUP_CASE, &why);
            for c in all {
                skip_all(r, c, &why);
            }
            return;
        }
    };
    let fds_at_start = open_fds();
    r.check(SETUP_CASE, |f| parses(&start, f));

    let mut lab = Lab::default();
    r.section("A VFIO dma-buf of ivshmem's BAR2: revocable");
    vfio(r, &mut lab);
    r.section("The Rust sample's buffers: pinned and dynamic");
    rust(r, &mut lab);
    r.section("udmabufs: pinned, ro from an O_RDONLY memfd");
    udmabufs(r, &mut lab);
    r.section("inspect: who holds them, what they are");
    inspect_part(r, &lab.held);

    r.section("Cleanup");
    r.check(CLEANUP_CASES[0], |f| {
        let inos = close_lab(lab)?;
        let now = Bufinfo::read()?;
        if let Some(i) = inos.iter().find(|&&i| now.by_ino(i).is_some()) {
            return Err(Error::msg(format!("inode {i} is still in bufinfo")));
        }
        f.add(format!(
            "{} buffers closed; {:?} objects, {:?} at the start",
            inos.len(),
            now.objects,
            start.objects
        ));
        if now.objects != start.objects {
            return Err(Error::msg("the object count differs"));
        }
        Ok(())
    });
    r.check(CLEANUP_CASES[1], |f| {
        let (was, now) = (fds_at_start?, open_fds()?);
        f.add(format!("{now} open now, {was} at the start"));
        if now != was {
            return Err(Error::msg(format!("{now} descriptors open, {was} before")));
        }
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wants() {
        let text = "00016384\t00000000\t000a001d\t00000001\tudmabuf\t00000044\t<none>\n\
                    \tMemory model: pinned\n\tAttached Devices:\nTotal 0 devices attached\n\n\
                    \nTotal 1 objects, 16384 bytes\n";
        let info = Bufinfo::parse(text);
        let mut f = Facts::default();
        parses(&info, &mut f).unwrap();
        let b = &info.buffers[0];
        let mut w = Want {
            what: "x",
            exporter: "udmabuf",
            len: UDMABUF_LEN,
            access: "ro",
            model: Model::Pinned,
        };
        w.check(b).unwrap();
        w.access = "rw";
        assert!(w.check(b).is_err());
        w.access = "ro";
        w.model = Model::Dynamic;
        assert!(w.check(b).is_err());
        w.model = Model::Pinned;
        w.exporter = "vfio";
        assert!(w.check(b).is_err());
        // An entry that does not add up is not understood.
        let short = text.replace("Total 1 objects", "Total 2 objects");
        assert!(parses(&Bufinfo::parse(&short), &mut f).is_err());
        let odd = text.replace("\tAttached", "\tsomething new\n\tAttached");
        assert!(parses(&Bufinfo::parse(&odd), &mut f).is_err());
    }

    #[test]
    fn holds() {
        let text = "02097152\t00000002\t000a001f\t00000003\tvfio_pci_core\t00000042\t<none>\n\
                    \tMemory model: revocable\n\tAttached Devices:\n\tiommu\n\
                    \t\taccepts: pinned revocable; holds 1 memory descriptions\n\tkvm\n\
                    \t\taccepts: pinned revocable dynamic; holds 0 memory descriptions\n\
                    Total 2 devices attached\n";
        let b = &Bufinfo::parse(text).buffers[0];
        let mut f = Facts::default();
        expect_holds(b, (true, true), &[1], &[0, 1], &mut f).unwrap();
        assert_eq!(f.lines(), ["seen: iommu holds 1, kvm holds 0"]);
        assert!(expect_holds(b, (true, true), &[1], &[1], &mut f).is_err());
        assert!(expect_holds(b, (true, false), &[0], &[], &mut f).is_err());
    }

    #[test]
    fn forked_child_holds_our_descriptors() {
        let m = sys::memfd_create(c"bufinfo-test").unwrap();
        let mut child = Child::fork().unwrap();
        let p = format!("/proc/{}/fd/{}", child.pid, m.as_raw_fd());
        assert!(std::fs::read_link(&p)
            .unwrap()
            .to_string_lossy()
            .starts_with("/memfd:"));
        assert_eq!(child.reap().unwrap(), 0);
        assert!(child.reap().is_err());
    }
}
