// SPDX-License-Identifier: GPL-2.0

//! Rust dma-buf importer sample: what `dma_buf_get_memory()` tells an importer.
//!
//! Userspace passes a dma-buf file descriptor to `/dev/rust_dmabuf_importer` with the
//! `RUST_DMABUF_IMPORT` ioctl, whose argument is the descriptor itself. The sample attaches to the
//! buffer through [`kernel::dma_buf`], gets its physical memory under the reservation lock, logs
//! every chunk and range, and lets go of everything before the ioctl returns. A real importer
//! (an IOMMU or second stage MMU) would map the ranges with [`Attachment::keep_memory`] instead,
//! keep them until it is invalidated, and then unmap them.
//!
//! Physical addresses are for the administrator's eyes only: the device node is root's (misc
//! devices are created with mode 0600), and the kernel log may be restricted too.
//!
//! This is the Rust counterpart of the C sample in `samples/c/`; any exporter with a
//! `get_memory` callback will do, such as `samples/rust/rust_dmabuf_exporter.rs`.
//!
//! [`Attachment::keep_memory`]: kernel::dma_buf::Attachment::keep_memory

use kernel::{
    device::Device,
    dma_buf::{
        ChunkKind,
        DmaBuf,
        Importer,
        MemoryDesc,
        ModelSet, //
    },
    fs::File,
    ioctl::_IO,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc, //
    }, //
};

/// Describes, in the kernel log, the dma-buf whose file descriptor is the argument.
const RUST_DMABUF_IMPORT: u32 = _IO(0xDB, 0x40);

module! {
    type: RustDmabufImporter,
    name: "rust_dmabuf_importer",
    authors: ["dma-buf memory export contributors"],
    description: "Rust dma-buf importer sample",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}

/// The importer: it handles memory of every model, and PCI MMIO of other devices (peer-to-peer).
/// It does not allow private memory, so exporters of memory the CPU cannot access refuse it.
struct Logger;

#[vtable]
impl Importer for Logger {
    const MODELS: ModelSet = ModelSet::ALL;
    const ALLOW_P2P: bool = true;

    // Called with the reservation lock held when the exporter revokes or moves the memory. The
    // sample only holds memory while it holds the lock itself, so it never has any to unmap.
    fn invalidate(&self, _kept: Option<&MemoryDesc>) {
        pr_info!("invalidated, nothing to unmap\n");
    }
}

/// Attaches `dev` to the dma-buf behind `fd` and logs its memory.
fn describe(dev: &Device, fd: u32) -> Result {
    let buf = DmaBuf::from_fd(fd)?;

    // Fails with EOPNOTSUPP, before the exporter hears of us, if we cannot handle the buffer.
    let attachment = buf.attach(dev, Arc::new(Logger, GFP_KERNEL)?)?;

    // The memory borrows the lock guard: the description is put before the lock is released.
    let guard = buf.lock_interruptible()?;
    // ENODEV if the exporter revoked the buffer, EINVAL if it described broken memory.
    let mem = attachment.get_memory(&guard)?;

    pr_info!(
        "{} bytes in {} chunks, model {:?}\n",
        mem.size(),
        mem.chunks().len(),
        buf.model()
    );
    for (i, chunk) in mem.chunks().iter().enumerate() {
        // P2P MMIO chunks name the PCI device whose BAR holds them.
        match chunk.kind() {
            ChunkKind::P2pMmio(provider) => pr_info!(
                "chunk {i}: P2pMmio of {}, {} ranges\n",
                provider.owner().name(),
                chunk.ranges().len()
            ),
            ChunkKind::Cpu => pr_info!("chunk {i}: Cpu, {} ranges\n", chunk.ranges().len()),
        }
        for range in chunk.ranges() {
            pr_info!("  {:#x} + {:#x}\n", range.paddr, range.len);
        }
    }

    // Dropping `mem` puts the memory, `guard` unlocks, `attachment` detaches, `buf` is put: in
    // this order, the reverse of their creation.
    Ok(())
}

/// An open `/dev/rust_dmabuf_importer`.
struct SampleFile {
    /// The misc device, which attaches to the buffers.
    dev: ARef<Device>,
}

#[vtable]
impl MiscDevice for SampleFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        let dev = ARef::from(misc.device());
        Ok(KBox::new(SampleFile { dev }, GFP_KERNEL)?)
    }

    fn ioctl(me: &SampleFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            RUST_DMABUF_IMPORT => {
                let fd = u32::try_from(arg).map_err(|_| EBADF)?;
                describe(&me.dev, fd).map(|()| 0)
            }
            _ => Err(ENOTTY),
        }
    }
}

#[pin_data]
struct RustDmabufImporter {
    #[pin]
    _miscdev: MiscDeviceRegistration<SampleFile>,
}

impl kernel::InPlaceModule for RustDmabufImporter {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!("pass a dma-buf fd to /dev/rust_dmabuf_importer to describe it\n");

        let options = MiscDeviceOptions {
            name: c"rust_dmabuf_importer",
        };
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(options),
        })
    }
}
