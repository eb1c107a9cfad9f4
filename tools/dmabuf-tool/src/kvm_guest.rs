//! `dmabuf-tool kvm`, second step: a guest runs on a dma-buf memslot. A VM
//! with one ordinary code slot holding a few bytes of 16-bit real-mode code
//! and a `KVM_MEM_DMABUF` data slot backed by ivshmem's BAR2, exported by
//! vfio-pci. The code reads a byte of the slot, reports it on an I/O port
//! (`KVM_EXIT_IO`), writes a byte and halts (`KVM_EXIT_HLT`); the host sees
//! the BAR through VFIO's mmap of region 2, which only the checks use: KVM
//! maps the BAR into the guest from the dma-buf, without a host mapping.
//!
//! The rules checked (Documentation/virt/kvm/api.rst,
//! KVM_SET_USER_MEMORY_REGION2 and KVM_CAP_DMABUF_MEMSLOT): guest accesses
//! reach the buffer's memory, in a buffer of several ranges too; while the
//! exporter revokes the buffer (PCI_COMMAND.MEMORY cleared), an access makes
//! KVM_RUN fail with EFAULT and KVM_EXIT_MEMORY_FAULT for the faulting page,
//! and once the buffer is restored the same vCPU runs on; a naturally
//! aligned 2 MiB block in one contiguous range is mapped with one 2M entry
//! (`pages_2m` of the VM's binary stats), a block that spans two ranges is
//! not; a DYNAMIC buffer of a Rust exporter (the system-memory sample) backs
//! a slot, and when the exporter moves it KVM is invalidated once
//! (`dmabuf_invalidations`), unmaps the slot and faults the new pages in.

use std::io::Read;

use kvm_bindings::kvm_regs;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use crate::args::span;
use crate::errno::{Context, Error, Result};
use crate::kvm::{set_region, Lab, MemoryRegion2, BAR2, CODE_SIZE, MIB};
use crate::mmap::Mapping;
use crate::pci::{Sysfs, IVSHMEM};
use crate::report::{Facts, Runner};
use crate::rust_exporter;
use crate::sys;
use crate::vfio::PCI_COMMAND_MEMORY;

const CODE_SLOT: u32 = 0;
/// Where the code starts in the code slot (GPA, CS base 0).
pub(crate) const ENTRY: u64 = 0x1000;
const DATA_SLOT: u32 = 1;
/// The data slot: 2 MiB aligned, below 4 GiB so that a real-mode segment
/// base reaches it.
const DATA_GPA: u64 = 2 * MIB;
const DATA_SIZE: u64 = 2 * MIB;
/// The I/O port the code reports the byte it read on.
const REPORT_PORT: u16 = 0x10;
/// The guest's DS window (64 KiB) in the slot: in the buffer's second range
/// of [`crate::kvm::BAR2_RANGES`].
const WINDOW: u64 = MIB + 0x3_0000;
/// Offsets in the window of the byte the code reads and of the one it writes,
/// in different pages.
const READ_OFF: u16 = 0x1234;
const WRITE_OFF: u16 = 0x2345;
const PAGE: u64 = 4096;
/// `KVM_GET_STATS_FD`, `_IO(KVMIO, 0xce)`.
const KVM_GET_STATS_FD: u32 = 0xae_ce;

/// The code: `mov al, [READ]; out REPORT_PORT, al; mov byte [WRITE], val;
/// hlt`, 16-bit, DS-relative.
pub fn program(read: u16, write: u16, val: u8) -> Vec<u8> {
    let mut c = vec![0xa0];
    c.extend(read.to_le_bytes());
    c.extend([0xe6, REPORT_PORT as u8]);
    c.extend([0xc6, 0x06]);
    c.extend(write.to_le_bytes());
    c.push(val);
    c.push(0xf4);
    c
}

/// The byte the host writes at `off` of the buffer before a case.
pub fn pattern(off: u64) -> u8 {
    (off.wrapping_mul(0x9e37_79b9) >> 24) as u8 ^ (off as u8)
}

/// What a KVM_RUN ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    Out(u16, Vec<u8>),
    Hlt,
    MemoryFault { flags: u64, gpa: u64, size: u64 },
}

/// A VM with the code slot and one vCPU.
pub(crate) struct Guest {
    pub(crate) vcpu: VcpuFd,
    vm: VmFd,
    /// The code slot's memory; outlives the VM (declared after it).
    pub(crate) code: Mapping,
}

impl Guest {
    pub(crate) fn new(kvm: &Kvm, f: &mut Facts) -> Result<Self> {
        let vm = kvm
            .create_vm()
            .map_err(|e| Error::sys("KVM_CREATE_VM", e.errno()))?;
        // Needed on Intel without unrestricted guest, harmless elsewhere.
        let _ = vm.set_tss_address(0xfffb_d000);
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
        let vcpu = vm
            .create_vcpu(0)
            .map_err(|e| Error::sys("KVM_CREATE_VCPU", e.errno()))?;
        f.add(format!(
            "code slot {CODE_SLOT}: GPA {}, one vCPU",
            span(0, CODE_SIZE)
        ));
        Ok(Guest { vcpu, vm, code })
    }

    pub(crate) fn set(&self, r: MemoryRegion2) -> Result<()> {
        set_region(&self.vm, r)
    }

    /// Load `prog` at ENTRY and point the vCPU at it, real mode, CS base 0,
    /// DS base `ds_base`.
    fn start(&self, prog: &[u8], ds_base: u64) -> Result<()> {
        self.code.write_bytes(ENTRY as usize, prog);
        let mut sregs = self
            .vcpu
            .get_sregs()
            .map_err(|e| Error::sys("KVM_GET_SREGS", e.errno()))?;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        sregs.ds.base = ds_base;
        sregs.ds.selector = 0;
        sregs.ds.limit = 0xffff;
        self.vcpu
            .set_sregs(&sregs)
            .map_err(|e| Error::sys("KVM_SET_SREGS", e.errno()))?;
        let regs = kvm_regs {
            rip: ENTRY,
            rflags: 2,
            ..Default::default()
        };
        self.vcpu
            .set_regs(&regs)
            .map_err(|e| Error::sys("KVM_SET_REGS", e.errno()))
    }

    fn rip(&self) -> Result<u64> {
        Ok(self
            .vcpu
            .get_regs()
            .map_err(|e| Error::sys("KVM_GET_REGS", e.errno()))?
            .rip)
    }

    /// KVM_RUN until an exit this test knows; anything else is an error.
    pub(crate) fn run(&mut self) -> Result<Exit> {
        for _ in 0..16 {
            match self.vcpu.run() {
                Ok(VcpuExit::IoOut(port, data)) => return Ok(Exit::Out(port, data.to_vec())),
                Ok(VcpuExit::Hlt) => return Ok(Exit::Hlt),
                Ok(VcpuExit::MemoryFault { flags, gpa, size }) => {
                    return Ok(Exit::MemoryFault { flags, gpa, size })
                }
                Ok(VcpuExit::MmioRead(addr, _)) | Ok(VcpuExit::MmioWrite(addr, _)) => {
                    return Err(Error::msg(format!(
                        "KVM_EXIT_MMIO at GPA {addr:#x}: the access was not served from the buffer"
                    )))
                }
                Ok(other) => return Err(Error::msg(format!("unexpected exit {other:?}"))),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(Error::sys("KVM_RUN", e.errno())),
            }
        }
        Err(Error::msg("KVM_RUN interrupted 16 times"))
    }

    /// Run the loaded program to its end: the byte it reported, then HLT.
    fn run_program(&mut self, f: &mut Facts) -> Result<u8> {
        let byte = match self.run()? {
            Exit::Out(REPORT_PORT, d) if d.len() == 1 => d[0],
            other => {
                return Err(Error::msg(format!(
                    "expected a 1-byte OUT to port {REPORT_PORT:#x}, got {other:?}"
                )))
            }
        };
        f.add(format!("KVM_EXIT_IO: OUT {REPORT_PORT:#x}, {byte:#04x}"));
        match self.run()? {
            Exit::Hlt => f.add("KVM_EXIT_HLT"),
            other => return Err(Error::msg(format!("expected HLT, got {other:?}"))),
        }
        Ok(byte)
    }

    /// The VM's binary statistics, if KVM_GET_STATS_FD works.
    fn stats(&self) -> Result<Vec<(String, u64)>> {
        let fd = sys::ioctl_new_fd(self.vm_fd(), KVM_GET_STATS_FD).op("KVM_GET_STATS_FD")?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut bytes)
            .op("read the stats fd")?;
        parse_stats(&bytes).ok_or_else(|| Error::msg("malformed binary stats"))
    }

    fn vm_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the VM fd stays open for as long as `self` is borrowed.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(&self.vm)) }
    }

    /// The VM's statistics `names`, in that order.
    fn stat<const N: usize>(&self, names: [&str; N]) -> Result<[u64; N]> {
        let s = self.stats()?;
        let mut out = [0; N];
        for (v, name) in out.iter_mut().zip(names) {
            *v = s
                .iter()
                .find(|(n, _)| n == name)
                .map(|&(_, v)| v)
                .ok_or_else(|| Error::msg(format!("no {name} in the VM's stats")))?;
        }
        Ok(out)
    }

    pub(crate) fn pages(&self) -> Result<Pages> {
        let [p4k, p2m] = self.stat(["pages_4k", "pages_2m"])?;
        Ok(Pages { p4k, p2m })
    }

    /// 4K mappings and the exporters' invalidations of dma-buf slots
    /// (`dmabuf_invalidations`, KVM_MEM_DMABUF in api.rst).
    fn invalidations(&self) -> Result<(u64, u64)> {
        let [p4k, inval] = self.stat(["pages_4k", "dmabuf_invalidations"])?;
        Ok((p4k, inval))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pages {
    pub(crate) p4k: u64,
    pub(crate) p2m: u64,
}

/// Parse the contents of a KVM binary stats fd (Documentation/virt/kvm/
/// api.rst, KVM_GET_STATS_FD): the header, the descriptors of `name_size`
/// names each, the data; returns the first value of every statistic.
pub fn parse_stats(b: &[u8]) -> Option<Vec<(String, u64)>> {
    let u32_at = |o: usize| Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u16_at = |o: usize| Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let name_size = u32_at(4)? as usize;
    let num_desc = u32_at(8)? as usize;
    let desc_offset = u32_at(16)? as usize;
    let data_offset = u32_at(20)? as usize;
    let desc_len = 16 + name_size;
    let mut out = Vec::with_capacity(num_desc);
    for i in 0..num_desc {
        let d = desc_offset + i * desc_len;
        let size = u16_at(d + 6)?;
        let offset = u32_at(d + 8)? as usize;
        let name = b.get(d + 16..d + 16 + name_size)?;
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        let name = String::from_utf8_lossy(&name[..end]).into_owned();
        let value = if size == 0 {
            0
        } else {
            u64_at(data_offset + offset)?
        };
        out.push((name, value));
    }
    Some(out)
}

/// Bytes of `bar` in `[from, to)` that differ from [`pattern`], except `skip`.
fn changed(bar: &Mapping, from: u64, to: u64, skip: u64) -> Vec<u64> {
    let v = bar.to_vec(from as usize, (to - from) as usize);
    (from..to)
        .zip(v)
        .filter(|&(o, b)| o != skip && b != pattern(o))
        .map(|(o, _)| o)
        .collect()
}

/// The physical start of BAR `bar` of `bdf`, from sysfs `resource`.
pub fn parse_resource(text: &str, bar: usize) -> Option<(u64, u64)> {
    let line = text.lines().nth(bar)?;
    let mut it = line.split_whitespace();
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let start = hex(it.next()?)?;
    let end = hex(it.next()?)?;
    Some((start, end))
}

pub fn run(r: &mut Runner<'_>, kvm: &Kvm, lab: &Lab) {
    r.section("A guest runs on a dma-buf slot: ivshmem's BAR2, never mapped for KVM");
    let Some(mut g) = r.attempt("a second VM: code slot 0, one vCPU", |f| Guest::new(kvm, f))
    else {
        return;
    };
    let Some(bar) = r.attempt(
        "the host's view of BAR2 for the checks: VFIO mmap of region 2",
        |f| {
            let bar = lab.ivshmem.mmap_region(BAR2)?;
            f.add(format!("{} mapped", crate::args::size(bar.len() as u64)));
            Ok(bar)
        },
    ) else {
        return;
    };
    let stats = g.pages().ok();
    if stats.is_none() {
        r.comment("KVM_GET_STATS_FD unavailable or without pages_4k/pages_2m");
    }

    let read_at = WINDOW + u64::from(READ_OFF);
    let write_at = WINDOW + u64::from(WRITE_OFF);
    let pages = (WINDOW + 0x1000, WINDOW + 0x3000);
    let slot_ok = r.check(
        "vfio-pci MMIO in the guest: L2 reads BAR2 through the slot, writes it back",
        |f| {
            let fd = lab.export()?;
            let made = g.set(MemoryRegion2::dmabuf(
                DATA_SLOT,
                DATA_GPA,
                DATA_SIZE,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            ));
            sys::close(fd).op("close the dma-buf")?;
            made?;
            f.add(format!(
                "slot {DATA_SLOT}: GPA {} = BAR2 as two 1 MiB ranges, fd closed",
                span(DATA_GPA, DATA_SIZE)
            ));
            for o in pages.0..pages.1 {
                bar.write_bytes(o as usize, &[pattern(o)]);
            }
            let val = !pattern(write_at);
            let before = g.pages().ok();
            g.start(&program(READ_OFF, WRITE_OFF, val), DATA_GPA + WINDOW)?;
            let got = g.run_program(f)?;
            if got != pattern(read_at) {
                return Err(Error::msg(format!(
                    "L2 read {got:#04x} at buffer offset {read_at:#x}, the BAR holds {:#04x}",
                    pattern(read_at)
                )));
            }
            f.add(format!(
                "L2 read BAR2[{read_at:#x}] = {got:#04x}, as the host wrote"
            ));
            let mut w = [0u8];
            bar.read_bytes(write_at as usize, &mut w);
            if w[0] != val {
                return Err(Error::msg(format!(
                    "BAR2[{write_at:#x}] = {:#04x}, L2 wrote {val:#04x}",
                    w[0]
                )));
            }
            let other = changed(&bar, pages.0, pages.1, write_at);
            if !other.is_empty() {
                return Err(Error::msg(format!(
                    "{} other bytes changed, first at {:#x}",
                    other.len(),
                    other[0]
                )));
            }
            f.add(format!(
                "BAR2[{write_at:#x}] = {val:#04x} as L2 wrote; the rest of its two pages unchanged"
            ));
            if let (Some(b), Ok(a)) = (before, g.pages()) {
                f.add(format!(
                    "pages_4k {} -> {}, pages_2m {} -> {}",
                    b.p4k, a.p4k, b.p2m, a.p2m
                ));
                // The 2 MiB block of the slot spans the buffer's two ranges.
                if a.p2m != b.p2m {
                    return Err(Error::msg("a 2M mapping of a block that spans two ranges"));
                }
                if a.p4k < b.p4k + 2 {
                    return Err(Error::msg(
                        "the two data pages are not mapped with 4K entries",
                    ));
                }
            }
            Ok(())
        },
    );

    if slot_ok {
        revoke(r, &mut g, lab, &bar, read_at, write_at, pages);
    } else {
        r.skip(
            "revoke: KVM_EXIT_MEMORY_FAULT, then the same vCPU runs on",
            "the dma-buf slot does not work",
        );
    }
    let _ = g.set(MemoryRegion2::delete(DATA_SLOT));

    huge(r, &mut g, lab, &bar, stats.is_some());

    rust_exporter(r, &mut g);
}

fn revoke(
    r: &mut Runner<'_>,
    g: &mut Guest,
    lab: &Lab,
    bar: &Mapping,
    read_at: u64,
    write_at: u64,
    pages: (u64, u64),
) {
    r.check(
        "revoke (PCI_COMMAND.MEMORY off): KVM_EXIT_MEMORY_FAULT; restored: the same vCPU runs on",
        |f| {
            // New contents, written while the BAR decodes.
            for o in pages.0..pages.1 {
                bar.write_bytes(o as usize, &[pattern(o)]);
            }
            let fresh = pattern(read_at) ^ 0x5a;
            bar.write_bytes(read_at as usize, &[fresh]);
            let val = pattern(write_at) ^ 0xc3;
            g.start(&program(READ_OFF, WRITE_OFF, val), DATA_GPA + WINDOW)?;

            lab.ivshmem.clear_command_bits(PCI_COMMAND_MEMORY)?;
            f.add("PCI_COMMAND.MEMORY cleared: the buffer is revoked");
            let faulted = g.run();
            let rip = g.rip();
            let restored = lab.ivshmem.set_command_bits(PCI_COMMAND_MEMORY);
            let exit = faulted?;
            restored?;
            let page = (DATA_GPA + read_at) & !(PAGE - 1);
            match exit {
                Exit::MemoryFault { flags, gpa, size } => {
                    f.add(format!(
                        "KVM_RUN: EFAULT, KVM_EXIT_MEMORY_FAULT gpa {gpa:#x} size {size:#x} flags {flags:#x}"
                    ));
                    if gpa != page || size != PAGE || flags != 0 {
                        return Err(Error::msg(format!(
                            "expected gpa {page:#x} size {PAGE:#x} flags 0"
                        )));
                    }
                }
                other => {
                    return Err(Error::msg(format!(
                        "expected KVM_EXIT_MEMORY_FAULT while revoked, got {other:?}"
                    )))
                }
            }
            let rip = rip?;
            if rip != ENTRY {
                return Err(Error::msg(format!(
                    "rip {rip:#x} after the fault, the load at {ENTRY:#x} must not retire"
                )));
            }
            f.add(format!("rip still {ENTRY:#x}; PCI_COMMAND.MEMORY set again"));

            // The same vCPU, not restarted.
            let got = g.run_program(f)?;
            if got != fresh {
                return Err(Error::msg(format!(
                    "L2 read {got:#04x} after the restore, the BAR holds {fresh:#04x}"
                )));
            }
            let mut w = [0u8];
            bar.read_bytes(write_at as usize, &mut w);
            if w[0] != val {
                return Err(Error::msg(format!(
                    "BAR2[{write_at:#x}] = {:#04x}, L2 wrote {val:#04x}",
                    w[0]
                )));
            }
            let mut other = changed(bar, pages.0, pages.1, write_at);
            other.retain(|&o| o != read_at);
            if !other.is_empty() {
                return Err(Error::msg(format!(
                    "{} other bytes changed, first at {:#x}",
                    other.len(),
                    other[0]
                )));
            }
            f.add(format!(
                "after the restore L2 read {got:#04x} and wrote {val:#04x}; nothing else changed"
            ));
            Ok(())
        },
    );
}

fn huge(r: &mut Runner<'_>, g: &mut Guest, lab: &Lab, bar: &Mapping, stats: bool) {
    const DESC: &str =
        "a 2M-aligned slot of one 2 MiB range is mapped with one 2M entry (pages_2m)";
    if !stats {
        r.skip(DESC, "the VM's binary stats have no pages_2m");
        return;
    }
    let sysfs = Sysfs::default();
    let bar_start = sysfs
        .find_one(IVSHMEM)
        .ok()
        .and_then(|bdf| {
            std::fs::read_to_string(format!("/sys/bus/pci/devices/{bdf}/resource")).ok()
        })
        .and_then(|t| parse_resource(&t, BAR2 as usize));
    let Some((start, _)) = bar_start else {
        r.skip(DESC, "BAR2's address is not readable from sysfs");
        return;
    };
    if start % (2 * MIB) != 0 {
        r.skip(
            DESC,
            &format!("BAR2 is at {start:#x}, not 2 MiB aligned: no 2M block of host memory"),
        );
        return;
    }
    r.check(DESC, |f| {
        f.add(format!("BAR2 at host physical {start:#x}, 2 MiB aligned"));
        let fd = lab.ivshmem.export_dma_buf(BAR2, &[(0, DATA_SIZE)])?;
        let made = g.set(MemoryRegion2::dmabuf(
            DATA_SLOT,
            DATA_GPA,
            DATA_SIZE,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            0,
        ));
        sys::close(fd).op("close the dma-buf")?;
        made?;
        f.add(format!(
            "slot {DATA_SLOT}: GPA {} = BAR2 as one 2 MiB range",
            span(DATA_GPA, DATA_SIZE)
        ));
        let res = (|| {
            let (read, write) = (0x0100u16, 0x0180u16);
            for o in 0..0x1000u64 {
                bar.write_bytes(o as usize, &[pattern(o)]);
            }
            let val = !pattern(u64::from(write));
            let before = g.pages()?;
            g.start(&program(read, write, val), DATA_GPA)?;
            let got = g.run_program(f)?;
            if got != pattern(u64::from(read)) {
                return Err(Error::msg(format!(
                    "L2 read {got:#04x}, the BAR holds {:#04x}",
                    pattern(u64::from(read))
                )));
            }
            let mut w = [0u8];
            bar.read_bytes(usize::from(write), &mut w);
            if w[0] != val {
                return Err(Error::msg(format!(
                    "BAR2[{write:#x}] = {:#04x}, L2 wrote {val:#04x}",
                    w[0]
                )));
            }
            let after = g.pages()?;
            f.add(format!(
                "pages_2m {} -> {}, pages_4k {} -> {}",
                before.p2m, after.p2m, before.p4k, after.p4k
            ));
            if after.p2m != before.p2m + 1 {
                return Err(Error::msg(
                    "the slot's 2 MiB block is not mapped with one 2M entry",
                ));
            }
            Ok(())
        })();
        let del = g.set(MemoryRegion2::delete(DATA_SLOT));
        res?;
        del?;
        // Not a documented rule, only what the deletion's zap left.
        if let Ok(gone) = g.pages() {
            f.add(format!("slot deleted: pages_2m {}", gone.p2m));
        }
        Ok(())
    });
}

/// The Rust exporter's buffer in the guest: slot 2, 4 pages at 8 MiB.
const RUST_SLOT: u32 = 2;
const RUST_GPA: u64 = 8 * MIB;

/// What L2 reads of page `page` of the Rust exporter's buffer, and where it
/// writes: offsets in the buffer (and in the guest's segment at [`RUST_GPA`]),
/// different in every page.
fn rust_offsets(page: u64) -> (u16, u16) {
    let base = page * PAGE;
    ((base + 0x100 + 8 * page) as u16, (base + 0x800) as u16)
}

/// L2 reads a byte of `page` of the Rust exporter's buffer, which must be of
/// generation `generation` of the sample's pattern, and writes `val` to
/// another byte of it.
fn read_rust_page(g: &mut Guest, page: u64, generation: u32, val: u8, f: &mut Facts) -> Result<()> {
    let (read, write) = rust_offsets(page);
    g.start(&program(read, write, val), RUST_GPA)?;
    let got = g.run_program(f)?;
    let want = rust_exporter::pattern_of(u64::from(read), 1, generation)[0];
    if got != want {
        return Err(Error::msg(format!(
            "L2 read {got:#04x} at buffer offset {read:#x}, generation {generation} holds {want:#04x}"
        )));
    }
    f.add(format!(
        "page {page}: L2 read {got:#04x} at {read:#x}, the pattern of generation {generation}"
    ));
    Ok(())
}

/// L2 reads the byte at buffer offset `off` of the Rust exporter's buffer.
fn read_rust_byte(g: &mut Guest, off: u16, f: &mut Facts) -> Result<u8> {
    // The write goes to the byte it read: a second write of the same page.
    let (_, scratch) = rust_offsets(u64::from(off) / PAGE);
    g.start(&program(off, scratch + 1, 0), RUST_GPA)?;
    g.run_program(f)
}

/// The value L2 writes to page `page` of the Rust exporter's buffer.
fn rust_val(page: u64) -> u8 {
    0xa0 | page as u8
}

/// The system-memory sample (`samples/rust/rust_dmabuf_exporter.rs`, through
/// `kernel::dma_buf`) behind a slot: a DYNAMIC buffer, whose pages hold the
/// pattern of their generation. L2 reads what the exporter wrote; after
/// RUST_DMABUF_MIGRATE, KVM is invalidated once, unmaps the slot, and L2
/// reads the new pages, not the old ones it wrote to.
fn rust_exporter(r: &mut Runner<'_>, g: &mut Guest) {
    r.section("A guest runs on memory of a Rust exporter, which moves it");
    let Some(dev) = r.attempt(
        &format!(
            "open {}: a DYNAMIC buffer of system memory",
            rust_exporter::DEVICE
        ),
        |f| {
            let dev = rust_exporter::open()?;
            f.add(format!("{} pages of generation 0", rust_exporter::NR_PAGES));
            Ok(dev)
        },
    ) else {
        return;
    };
    let made = r.check(
        "a Rust exporter's DYNAMIC buffer backs a slot: L2 reads the exporter's pages",
        |f| {
            let fd = rust_exporter::export_dynamic(&dev)?;
            let made = g.set(MemoryRegion2::dmabuf(
                RUST_SLOT,
                RUST_GPA,
                rust_exporter::BUF_LEN,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            ));
            sys::close(fd).op("close the dma-buf")?;
            made?;
            f.add(format!(
                "slot {RUST_SLOT}: GPA {} = the whole buffer, fd closed",
                span(RUST_GPA, rust_exporter::BUF_LEN)
            ));
            for page in 0..rust_exporter::NR_PAGES {
                read_rust_page(g, page, 0, rust_val(page), f)?;
            }
            let (_, w) = rust_offsets(0);
            let back = read_rust_byte(g, w, f)?;
            if back != rust_val(0) {
                return Err(Error::msg(format!(
                    "L2 wrote {:#04x} at {w:#x} and read back {back:#04x}",
                    rust_val(0)
                )));
            }
            f.add(format!("L2 read back its write at {w:#x}: {back:#04x}"));
            Ok(())
        },
    );
    if made {
        r.check(
            "RUST_DMABUF_MIGRATE: KVM is invalidated once, unmaps the old pages; L2 reads the new ones",
            |f| {
                let (p4k, inval) = g.invalidations()?;
                rust_exporter::migrate(&dev)?;
                let (p4k_moved, inval_moved) = g.invalidations()?;
                f.add(format!(
                    "migrated: dmabuf_invalidations {inval} -> {inval_moved}, \
                     pages_4k {p4k} -> {p4k_moved}"
                ));
                // Every broken rule is reported, not only the first.
                let mut broken = Vec::new();
                if inval_moved != inval + 1 {
                    broken.push("not exactly one invalidation of the slot".to_string());
                }
                if p4k_moved + rust_exporter::NR_PAGES > p4k {
                    broken.push(format!(
                        "the {} pages L2 touched are still mapped",
                        rust_exporter::NR_PAGES
                    ));
                }
                // The old page 0 holds L2's write; the new one the pattern.
                let (_, w) = rust_offsets(0);
                let want = rust_exporter::pattern_of(u64::from(w), 1, 1)[0];
                let got = read_rust_byte(g, w, f)?;
                if got == want {
                    f.add(format!(
                        "L2 read {got:#04x} at {w:#x}: the new page, not its write to the old one"
                    ));
                } else {
                    broken.push(format!(
                        "L2 read {got:#04x} at {w:#x}: not generation 1's {want:#04x}{}",
                        if got == rust_val(0) {
                            ", but its own write to the old page"
                        } else {
                            ""
                        }
                    ));
                }
                for page in 0..rust_exporter::NR_PAGES {
                    if let Err(e) = read_rust_page(g, page, 1, rust_val(page), f) {
                        broken.push(e.to_string());
                    }
                }
                let (p4k_end, inval_end) = g.invalidations()?;
                f.add(format!(
                    "after the reads: dmabuf_invalidations {inval_end}, pages_4k {p4k_end}"
                ));
                if inval_end != inval_moved {
                    broken.push("the slot was invalidated again".to_string());
                }
                if !broken.is_empty() {
                    return Err(Error::msg(broken.join("; ")));
                }
                Ok(())
            },
        );
    } else {
        r.skip(
            "RUST_DMABUF_MIGRATE: KVM is invalidated once, unmaps the old pages; L2 reads the new ones",
            "the Rust exporter's slot does not work",
        );
    }
    let _ = g.set(MemoryRegion2::delete(RUST_SLOT));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_bytes() {
        assert_eq!(
            program(0x1234, 0x2345, 0xa5),
            [0xa0, 0x34, 0x12, 0xe6, 0x10, 0xc6, 0x06, 0x45, 0x23, 0xa5, 0xf4]
        );
    }

    #[test]
    fn stats_parse() {
        // Header, two descriptors with 8-byte names, data.
        let name_size = 8u32;
        let mut b = Vec::new();
        let desc_off = 24u32;
        let data_off = desc_off + 2 * (16 + name_size);
        for v in [0u32, name_size, 2, 24, desc_off, data_off] {
            b.extend(v.to_ne_bytes());
        }
        for (i, name) in [b"pages_4k", b"pages_2m"].iter().enumerate() {
            b.extend(0u32.to_ne_bytes());
            b.extend(0i16.to_ne_bytes());
            b.extend(1u16.to_ne_bytes());
            b.extend((i as u32 * 8).to_ne_bytes());
            b.extend(0u32.to_ne_bytes());
            b.extend(name.iter());
        }
        b.extend(7u64.to_ne_bytes());
        b.extend(3u64.to_ne_bytes());
        assert_eq!(
            parse_stats(&b),
            Some(vec![("pages_4k".into(), 7), ("pages_2m".into(), 3)])
        );
        assert_eq!(parse_stats(&b[..10]), None);
    }

    #[test]
    fn resource_parse() {
        let t = "0x00000000febf1000 0x00000000febf10ff 0x0000000000040200\n\
                 0x00000000febf2000 0x00000000febf2fff 0x0000000000040200\n\
                 0x0000000800000000 0x00000008001fffff 0x000000000014220c\n";
        assert_eq!(parse_resource(t, 2), Some((0x8_0000_0000, 0x8_001f_ffff)));
        assert_eq!(parse_resource(t, 5), None);
    }

    #[test]
    fn pattern_differs_from_its_complement() {
        for o in 0..0x10000u64 {
            assert_ne!(pattern(o), !pattern(o));
        }
    }
}
