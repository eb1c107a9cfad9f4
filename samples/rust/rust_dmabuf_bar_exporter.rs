// SPDX-License-Identifier: GPL-2.0

//! Rust PCI BAR exporter sample: exports ranges of a PCI BAR as revocable dma-bufs.
//!
//! The driver binds QEMU's `ivshmem` (`1af4:1110`), but only when userspace asks for it: in the
//! test guest the device is bound to `vfio-pci` through `driver_override` before this module
//! loads, and it moves here only once userspace writes `rust_dmabuf_bar_exporter` to its
//! `driver_override` and probes it again.
//!
//! On probe the driver enables the device, gets the peer-to-peer provider of [`BAR`] and
//! registers `/dev/rust_dmabuf_bar`. Its ioctl `RUST_DMABUF_BAR_EXPORT` exports a new
//! [`Model::Revocable`] dma-buf of the [`RANGES`] of the BAR, described to importers as one chunk
//! of PCI MMIO, and returns its file descriptor. The ranges never change, so each buffer describes
//! them once, as a [`SharedMemory`] that every importer gets. Importers such as iommufd map the
//! BAR itself, so a device DMAing to the mapping reaches the BAR peer to peer.
//!
//! When the driver is unbound, every buffer it exported is revoked before the provider goes away:
//! importers are invalidated, and new attempts to get the memory fail with `ENODEV`. The buffers
//! themselves live on for as long as userspace holds their file descriptors.

use core::ptr::NonNull;
use kernel::{
    device::Core,
    dma_buf::{
        self,
        DmaBuf,
        ExportAttachment,
        Exported,
        Exporter,
        MemoryBuilder,
        Model,
        P2pProvider,
        SharedMemory, //
    },
    fs::{
        file::flags::{
            O_CLOEXEC,
            O_RDWR, //
        },
        File, //
    },
    io::PhysAddr,
    ioctl::_IO,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    new_mutex,
    pci,
    prelude::*,
    sync::{
        Arc,
        Mutex, //
    }, //
};

/// The BAR that is exported: ivshmem's shared memory.
const BAR: u32 = 2;

/// The ranges of each buffer, as (offset in the BAR, length), in buffer order.
const RANGES: [(u64, usize); 3] = [(0, 0x1000), (0x1_0000, 0x1000), (0x10_0000, 0x1000)];

/// The size of each buffer: the ranges together.
const BUF_LEN: usize = {
    let mut len = 0;
    let mut i = 0;
    while i < RANGES.len() {
        len += RANGES[i].1;
        i += 1;
    }
    len
};

/// Returns the file descriptor (`O_CLOEXEC`) of a new buffer of [`RANGES`] of [`BAR`].
const RUST_DMABUF_BAR_EXPORT: u32 = _IO(0xDB, 0x30);

/// The peer-to-peer provider of [`BAR`], as buffers outliving the driver's borrow keep it.
///
/// # Invariants
///
/// Points to the provider of [`BAR`] of the bound device, which stays valid until the driver is
/// unbound; [`BarDriver::unbind`] revokes every buffer holding it before that.
#[derive(Clone, Copy)]
struct ProviderPtr(NonNull<P2pProvider>);

// SAFETY: A `P2pProvider` is `Sync`, so a pointer to it may be sent to and used from any thread.
unsafe impl Send for ProviderPtr {}
// SAFETY: See the `Send` implementation above.
unsafe impl Sync for ProviderPtr {}

/// The exporter's state of one buffer: the description of its ranges, built once.
struct BarBuffer {
    memory: SharedMemory,
}

impl BarBuffer {
    /// Describes [`RANGES`] of the BAR at CPU physical address `base` as one chunk of PCI MMIO of
    /// `provider`, for one new buffer.
    ///
    /// # Safety
    ///
    /// `provider` must be valid now, and the buffer must be revoked before it goes away.
    unsafe fn new(provider: ProviderPtr, base: PhysAddr) -> Result<Self> {
        // SAFETY: By the safety requirements the pointer is valid here.
        let provider = unsafe { provider.0.as_ref() };

        let memory = SharedMemory::new(|mem| {
            // CAST: `RANGES` has three entries.
            mem.alloc(1, RANGES.len() as u32, GFP_KERNEL)?;

            // SAFETY: Only this buffer's `get_memory` shares the description, which the core
            // calls only while the buffer is not revoked; by the safety requirements the buffer
            // is revoked, which invalidates every importer and waits until they stopped using the
            // memory, before the provider goes away.
            unsafe { mem.p2p_chunk(provider)? };
            RANGES
                .iter()
                .try_for_each(|&(off, len)| mem.range(base + off, len))
        })?;
        Ok(Self { memory })
    }
}

#[vtable]
impl Exporter for BarBuffer {
    // The BAR goes away with the driver: buffers are revoked on unbind.
    const MODEL: Model = Model::Revocable;
    // Importers of `dma_buf_map_attachment()` that unmap when invalidated (peer-to-peer RDMA or
    // GPU drivers) get an sg_table of the same description, DMA-mapped for their device.
    const MAP_DMA_BUF: bool = true;

    fn get_memory(&self, attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
        // PCI MMIO has no `struct page`s: only peer-to-peer importers can use it.
        if !attach.peer2peer() {
            return Err(EOPNOTSUPP);
        }

        // Every importer gets the same description: no allocation, and the core checks it in
        // full only the first time.
        mem.share(&self.memory)
    }
}

/// What the driver shares with its open files and the buffers it exported.
#[pin_data]
struct Shared {
    provider: ProviderPtr,
    base: PhysAddr,
    #[pin]
    state: Mutex<State>,
}

/// The buffers exported so far, revoked on unbind.
struct State {
    /// Set when the driver was unbound: no more buffers.
    unbound: bool,
    exported: KVec<Exported<BarBuffer>>,
}

impl Shared {
    /// Exports a new buffer and returns its file descriptor.
    fn export(&self) -> Result<u32> {
        let mut state = self.state.lock();
        if state.unbound {
            return Err(ENODEV);
        }

        // SAFETY: By the type invariant of `ProviderPtr` the provider is valid until the driver is
        // unbound, which has not happened yet: `unbind` sets `unbound` under the lock held here.
        // Before the provider goes away `revoke_all` revokes every buffer remembered below.
        let buffer = unsafe { BarBuffer::new(self.provider, self.base)? };
        let exported = dma_buf::export(buffer, BUF_LEN, O_RDWR)?;

        // Remember the buffer before userspace can use it, so that `unbind` revokes it.
        state.exported.push(exported.clone(), GFP_KERNEL)?;
        match DmaBuf::into_fd(exported.into_dma_buf(), O_CLOEXEC) {
            Ok(fd) => Ok(fd),
            Err(err) => {
                // No one but us has the buffer: forget it.
                state.exported.pop();
                Err(err)
            }
        }
    }

    /// Revokes every buffer exported so far, and refuses new ones; returns how many there were.
    fn revoke_all(&self) -> usize {
        let mut state = self.state.lock();
        state.unbound = true;
        let exported = core::mem::take(&mut state.exported);

        // Revoking invalidates every importer and waits until they stopped using the BAR.
        for buf in exported.iter() {
            buf.revoke();
        }
        exported.len()
    }
}

/// An open `/dev/rust_dmabuf_bar`.
struct BarFile {
    shared: Arc<Shared>,
}

#[vtable]
impl MiscDevice for BarFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        let misc = core::ptr::from_ref(misc).cast_mut();

        // SAFETY: Every `MiscDeviceRegistration<BarFile>` is the `misc` field of a `BarData`,
        // which is pinned and outlives the registration, so `open` cannot run once it is gone.
        let data = unsafe { &*kernel::container_of!(misc, BarData, misc) };

        let shared = data.shared.clone();
        Ok(KBox::new(BarFile { shared }, GFP_KERNEL)?)
    }

    fn ioctl(me: &BarFile, _file: &File, cmd: u32, _arg: usize) -> Result<isize> {
        match cmd {
            RUST_DMABUF_BAR_EXPORT => Ok(isize::try_from(me.shared.export()?)?),
            _ => Err(ENOTTY),
        }
    }
}

/// The driver's data of its device.
#[pin_data]
struct BarData {
    // Initialized before the registration: `open` uses it as soon as the device exists.
    shared: Arc<Shared>,
    #[pin]
    misc: MiscDeviceRegistration<BarFile>,
}

struct BarDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <BarDriver as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, 0x1110),
        ()
    )]
);

impl pci::Driver for BarDriver {
    type IdInfo = ();
    type Data<'bound> = BarData;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || {
            pdev.enable_device_mem()?;

            let base = pdev.resource_start(BAR)?;
            let len = pdev.resource_len(BAR)?;
            let end = RANGES.iter().map(|&(off, len)| off + len as u64).max();
            if end.is_none_or(|end| end > len) {
                dev_err!(pdev, "BAR{} of {:#x} bytes is too small\n", BAR, len);
                return Err(ENODEV);
            }

            // INVARIANT: The provider of `BAR` lives until the driver is unbound, and `unbind`
            // revokes every buffer that holds it.
            let provider = ProviderPtr(NonNull::from(P2pProvider::of_bar(pdev, BAR)?));
            let shared = Arc::pin_init(
                pin_init!(Shared {
                    provider,
                    base,
                    state <- new_mutex!(State {
                        unbound: false,
                        exported: KVec::new(),
                    }),
                }),
                GFP_KERNEL,
            )?;

            dev_info!(
                pdev,
                "exporting BAR{} ({:#x} bytes) through /dev/rust_dmabuf_bar\n",
                BAR,
                len
            );
            Ok(try_pin_init!(BarData {
                shared,
                misc <- MiscDeviceRegistration::register(MiscDeviceOptions {
                    name: c"rust_dmabuf_bar",
                }),
            }))
        })
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        let n = this.shared.revoke_all();
        dev_info!(pdev, "unbound: revoked {} dma-buf(s) of BAR{}\n", n, BAR);
    }
}

kernel::module_pci_driver! {
    type: BarDriver,
    name: "rust_dmabuf_bar_exporter",
    authors: ["dma-buf memory export contributors"],
    description: "Rust PCI BAR exporter: revocable dma-bufs of a BAR",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}
