//! dmabuf-tool: drives VFIO, iommufd and QEMU's edu device inside the test
//! guest to show (and test) peer-to-peer DMA into a PCI BAR through an IOMMU
//! mapping of a VFIO dma-buf. See `dmabuf-tool help`.

mod args;
mod bar_exporter;
mod bench;
mod bufinfo_test;
mod dmabuf;
mod edu;
mod errno;
mod failnth;
mod fuzz;
mod import_sample;
mod inspect;
mod iommufd;
mod kmsg;
mod kvm;
mod kvm_bench;
mod kvm_guest;
mod mmap;
mod pci;
mod report;
mod rust_exporter;
mod story;
mod stress;
mod sys;
mod tap;
mod uapi;
mod udmabuf;
mod vfio;

use std::io;
use std::os::fd::AsFd;
use std::process::ExitCode;

use args::{size, span, Command};
use errno::Result;
use report::{Facts, Narrator, Reporter, Runner};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dmabuf-tool: {e}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let ok = match cmd {
        Command::Help => {
            print!("{}", args::USAGE);
            true
        }
        Command::Bind => bind(),
        Command::Smoke => {
            let mut tap = tap::Tap::new(io::stdout());
            story::run(&mut Runner::new(&mut tap))
        }
        Command::Demo => {
            let mut n = Narrator::new(io::stdout());
            n.explain(
                "dma-buf peer-to-peer demo: a PCI device (edu) writes straight into another\n\
                 device's memory (ivshmem's BAR2) through an IOMMU mapping that iommufd built\n\
                 from a VFIO dma-buf.",
            );
            let p2p = story::run(&mut Runner::new(&mut n));
            n.explain(
                "KVM chapter: the same BAR, exported as a dma-buf, backs a memslot\n\
                 (KVM_MEM_DMABUF) that no process has mapped; a tiny nested guest reads and\n\
                 writes it, a revoke stops it with KVM_EXIT_MEMORY_FAULT, a restore resumes it.",
            );
            let kvm = kvm::run(&mut Runner::new(&mut n));
            p2p && kvm
        }
        Command::Kvm => {
            let mut tap = tap::Tap::new(io::stdout());
            kvm::run(&mut Runner::new(&mut tap))
        }
        Command::BarExporter => {
            let mut tap = tap::Tap::new(io::stdout());
            bar_exporter::run(&mut Runner::new(&mut tap))
        }
        Command::Fuzz { seed, calls } => {
            let mut tap = tap::Tap::new(io::stdout());
            fuzz::run(&mut Runner::new(&mut tap), seed, calls)
        }
        Command::Udmabuf => {
            let mut tap = tap::Tap::new(io::stdout());
            udmabuf::run(&mut Runner::new(&mut tap))
        }
        Command::Failnth => {
            let mut tap = tap::Tap::new(io::stdout());
            failnth::run(&mut Runner::new(&mut tap))
        }
        Command::Stress => {
            let mut tap = tap::Tap::new(io::stdout());
            stress::run(&mut Runner::new(&mut tap))
        }
        Command::Bufinfo => {
            let mut tap = tap::Tap::new(io::stdout());
            bufinfo_test::run(&mut Runner::new(&mut tap))
        }
        Command::Inspect { pid, fd } => report_result(inspect::run(pid, fd)),
        Command::Bench => bench::run(&mut io::stdout()),
        Command::KvmBench => kvm_bench::run(&mut io::stdout()),
        Command::TryMap { bar, iova, ranges } => report_result(try_map(bar, iova, &ranges)),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn report_result(r: Result<()>) -> bool {
    match r {
        Ok(()) => true,
        Err(e) => {
            eprintln!("dmabuf-tool: {e}");
            false
        }
    }
}

/// `dmabuf-tool bind`.
fn bind() -> bool {
    let mut facts = Facts::default();
    let r = story::bind_all(&pci::Sysfs::default(), &mut facts);
    for l in facts.lines() {
        println!("{l}");
    }
    report_result(r.map(|_| ()))
}

/// `dmabuf-tool try-map`: export `ranges` of ivshmem's BAR `bar` and try to
/// map the dma-buf at `iova`; print what the kernel says at each step.
fn try_map(bar: u32, iova: u64, ranges: &[(u64, u64)]) -> Result<()> {
    let sysfs = pci::Sysfs::default();
    let bdf = sysfs.find_one(pci::IVSHMEM)?;
    sysfs.bind_vfio(&bdf)?;
    let cdev = sysfs.vfio_cdev(&bdf)?;
    let iommufd = iommufd::Iommufd::open(&sysfs.iommu_dev()?)?;
    let dev = vfio::VfioDevice::open(&cdev)?;
    dev.bind_iommufd(&iommufd)?;
    let ioas = iommufd.ioas_alloc()?;
    dev.attach_ioas(ioas)?;
    println!("ivshmem {bdf} ({}) attached to IOAS {ioas}", cdev.display());
    let info = dev.region_info(bar)?;
    println!("BAR{bar}: {} ({})", size(info.size), info.flag_names());
    for (i, &(off, len)) in ranges.iter().enumerate() {
        println!("  range {i}: BAR{bar} {}", span(off, len));
    }
    let total = ranges.iter().fold(0u64, |a, r| a.saturating_add(r.1));
    let fd = match dev.export_dma_buf(bar, ranges) {
        Ok(fd) => fd,
        Err(e) => {
            println!("export: {e}");
            return Err(e);
        }
    };
    println!(
        "export: dma-buf of {} in {} range(s)",
        size(total),
        ranges.len()
    );
    match iommufd.map_file(ioas, fd.as_fd(), 0, total, iova) {
        Ok(at) => {
            println!("IOMMU_IOAS_MAP_FILE: mapped at IOVA {}", span(at, total));
            let n = iommufd.unmap(ioas, at, total)?;
            println!("IOMMU_IOAS_UNMAP: {} unmapped", size(n));
            Ok(())
        }
        Err(e) => {
            println!("{e}");
            Err(e)
        }
    }
}
