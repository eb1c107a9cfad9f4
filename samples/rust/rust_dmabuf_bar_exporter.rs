// SPDX-License-Identifier: GPL-2.0

//! Rust PCI BAR exporter sample: exports ranges of a PCI BAR as revocable dma-bufs.
//!
//! The driver binds QEMU's `ivshmem` (`1af4:1110`), but only when userspace asks for it: in the
//! test guest the device is bound to `vfio-pci` through `driver_override` before this module
//! loads, and it moves here only once userspace writes `rust_dmabuf_bar_exporter` to its
//! `driver_override` and probes it again.
//!
//! On probe the driver enables the device, binds [`BAR`] for peer-to-peer DMA with a [`P2pBar`]
//! and registers `/dev/rust_dmabuf_bar`. Its ioctl `RUST_DMABUF_BAR_EXPORT` exports a new
//! revocable dma-buf of the [`RANGES`] of the BAR, described to importers as one chunk of PCI
//! MMIO, and returns its file descriptor. Importers such as iommufd map the BAR itself, so a
//! device DMAing to the mapping reaches the BAR peer to peer.
//!
//! When the driver is unbound, the [`P2pBar`] revokes every buffer it exported before the
//! provider goes away: importers are invalidated, and getting the memory fails with `ENODEV`.
//! The buffers themselves live on for as long as userspace holds their file descriptors.

use kernel::{
    device::Core,
    dma_buf::{
        DmaBuf,
        P2pBar, //
    },
    fs::{
        file::{
            flags::{
                O_CLOEXEC,
                O_RDWR, //
            },
            FileDescriptorReservation, //
        },
        File, //
    },
    ioctl::_IO,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    pci,
    prelude::*, //
};

/// The BAR that is exported: ivshmem's shared memory.
const BAR: u32 = 2;

/// The ranges of each buffer, as (offset in the BAR, length), in buffer order.
const RANGES: [(u64, usize); 3] = [(0, 0x1000), (0x1_0000, 0x1000), (0x10_0000, 0x1000)];

/// Returns the file descriptor (`O_CLOEXEC`) of a new buffer of [`RANGES`] of [`BAR`].
const RUST_DMABUF_BAR_EXPORT: u32 = _IO(0xDB, 0x30);

/// Exports a new buffer of [`RANGES`] of `bar` and installs it as a file descriptor.
///
/// [`P2pBar`] revokes the buffer when the device unbinds, and fails with `ENODEV` afterwards.
fn export(bar: &P2pBar) -> Result<isize> {
    let reservation = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    let exported = bar.export::<crate::LocalModule>(&RANGES, O_RDWR)?;
    let fd = isize::try_from(reservation.reserved_fd())?;
    reservation.fd_install(DmaBuf::into_file(exported.into_dma_buf()));
    Ok(fd)
}

/// An open `/dev/rust_dmabuf_bar`.
struct BarFile {
    bar: P2pBar,
}

#[vtable]
impl MiscDevice for BarFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        let misc = core::ptr::from_ref(misc).cast_mut();

        // SAFETY: Every `MiscDeviceRegistration<BarFile>` is the `misc` field of a `BarData`,
        // which is pinned and outlives the registration, so `open` cannot run once it is gone.
        let data = unsafe { &*kernel::container_of!(misc, BarData, misc) };

        let bar = data.bar.clone();
        Ok(KBox::new(BarFile { bar }, GFP_KERNEL)?)
    }

    fn ioctl(me: &BarFile, _file: &File, cmd: u32, _arg: usize) -> Result<isize> {
        match cmd {
            RUST_DMABUF_BAR_EXPORT => export(&me.bar),
            _ => Err(ENOTTY),
        }
    }
}

/// The driver's data of its device.
#[pin_data]
struct BarData {
    // Initialized before the registration: `open` uses it as soon as the device exists.
    bar: P2pBar,
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

            let len = pdev.resource_len(BAR)?;
            let end = RANGES.iter().map(|&(off, len)| off + len as u64).max();
            if end.is_none_or(|end| end > len) {
                dev_err!(pdev, "BAR{} of {:#x} bytes is too small\n", BAR, len);
                return Err(ENODEV);
            }

            // Revokes every buffer it exported when the device unbinds.
            let bar = P2pBar::new(pdev, BAR)?;

            dev_info!(
                pdev,
                "exporting BAR{} ({:#x} bytes) through /dev/rust_dmabuf_bar\n",
                BAR,
                len
            );
            Ok(try_pin_init!(BarData {
                bar,
                misc <- MiscDeviceRegistration::register(MiscDeviceOptions {
                    name: c"rust_dmabuf_bar",
                }),
            }))
        })
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
