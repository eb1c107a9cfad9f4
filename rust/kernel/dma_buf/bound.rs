// SPDX-License-Identifier: GPL-2.0

//! Revocable dma-bufs whose memory belongs to a bound device.
//!
//! C headers: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h),
//! [`include/linux/pci-p2pdma.h`](srctree/include/linux/pci-p2pdma.h)

use super::{
    exporter::export_in,
    Exported,
    Exporter,
    Revocable, //
};
use crate::{
    bindings,
    device::{
        Bound,
        Device, //
    },
    devres, new_mutex,
    prelude::*,
    sync::{
        Arc,
        Mutex,
        MutexGuard, //
    },
    task::MAX_SCHEDULE_TIMEOUT,
};
use core::ptr::NonNull;

/// A buffer of a [`DeviceExports`] group.
///
/// # Invariants
///
/// Points to a `struct dma_buf` exported into the group, whose release has not yet removed it
/// from the group's list: the buffer and its reservation object are valid while it is listed.
struct Member(NonNull<bindings::dma_buf>);

// SAFETY: A pointer to a dma-buf may be sent to any thread; `Registry` only uses it under its
// lock, while the buffer's release waits for that lock to remove it.
unsafe impl Send for Member {}

/// The buffers of a group, and whether its device is gone.
pub(super) struct Members {
    unbound: bool,
    bufs: KVec<Member>,
}

/// What a [`DeviceExports`] and each of its buffers share.
#[pin_data]
pub(super) struct Registry {
    #[pin]
    members: Mutex<Members>,
}

impl Registry {
    /// Locks the group, or fails with [`ENODEV`] once its device is unbound.
    ///
    /// While the guard is held the device cannot finish unbinding.
    pub(super) fn lock_bound(&self) -> Result<MutexGuard<'_, Members>> {
        let members = self.members.lock();
        if members.unbound {
            return Err(ENODEV);
        }
        Ok(members)
    }

    /// Removes `buf` from the group; called by the release of `buf`.
    pub(super) fn remove(&self, buf: *mut bindings::dma_buf) {
        self.members
            .lock()
            .bufs
            .retain(|member| member.0.as_ptr() != buf);
    }

    /// Marks the group unbound and revokes every buffer in it; returns how many there were.
    fn unbind(&self) -> usize {
        let mut members = self.members.lock();
        members.unbound = true;
        let bufs = core::mem::take(&mut members.bufs);

        for member in bufs.iter() {
            let buf = member.0.as_ptr();
            // CAST: `MAX_SCHEDULE_TIMEOUT` is `LONG_MAX`, which fits in an `unsigned long`.
            let timeout = MAX_SCHEDULE_TIMEOUT as c_ulong;

            // SAFETY: By the type invariant of `Member` the buffer and its reservation object
            // are valid: its release cannot remove it while we hold the lock. Its reference
            // count may be zero already; revoking only needs the object, and an uninterruptible
            // wait without timeout needs no result.
            unsafe {
                let resv = (*buf).resv;
                bindings::dma_resv_lock(resv, core::ptr::null_mut());
                bindings::dma_buf_revoke(buf);
                bindings::dma_resv_wait_timeout(
                    resv,
                    bindings::dma_resv_usage_DMA_RESV_USAGE_BOOKKEEP,
                    false,
                    timeout,
                );
                bindings::dma_resv_unlock(resv);
            }
        }
        bufs.len()
    }
}

/// Revokes the buffers of a group when the device unbinds (a devres action).
struct Unbind(Arc<Registry>);

impl Drop for Unbind {
    fn drop(&mut self) {
        self.0.unbind();
    }
}

/// [`Revocable`] dma-bufs whose memory belongs to a bound device.
///
/// Created from a bound device, it registers a devres action that, when the driver unbinds,
/// revokes every buffer it exported that still exists, and refuses new exports and
/// [`Exported::restore`] from then on ([`ENODEV`]). Devres actions run in reverse order of
/// registration: create it after whatever it describes (a PCI P2P provider, a mapping), and the
/// buffers are revoked before that goes away. The list it keeps holds only the buffers that
/// still exist: a buffer leaves it when it is released.
///
/// # Examples
///
/// ```
/// # use kernel::{device::{Bound, Device}, faux, page::{Page, PAGE_SIZE}, prelude::*};
/// # use kernel::sync::Arc;
/// use kernel::dma_buf::{BuiltMemory, DeviceExports, ExportAttachment, Exporter};
/// use kernel::dma_buf::{MemoryBuilder, Revocable};
///
/// struct OnePage(Page);
///
/// #[vtable]
/// impl Exporter for OnePage {
///     type Model = Revocable;
///     type State = ();
///
///     fn get_memory<'a>(
///         &'a self,
///         _state: &'a (),
///         _attach: &ExportAttachment,
///         mem: MemoryBuilder<'a>,
///     ) -> Result<BuiltMemory<'a>> {
///         let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
///         draft.cpu_chunk()?;
///         draft.page(&self.0)?;
///         Ok(draft.build())
///     }
/// }
///
/// let reg = faux::Registration::new(c"rust-dma-buf-bound", None)?;
/// let fdev: &faux::Device<Bound> = reg.as_ref();
/// let exports = DeviceExports::new(fdev.as_ref())?;
/// let exported = exports.export(OnePage(Page::alloc_page(GFP_KERNEL)?), (), PAGE_SIZE, 0)?;
///
/// // The device goes away: the buffer is revoked, for good.
/// drop(reg);
/// assert!(exported.dma_buf().lock().is_revoked());
/// assert_eq!(exported.restore().err(), Some(ENODEV));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone)]
pub struct DeviceExports {
    registry: Arc<Registry>,
}

impl DeviceExports {
    /// Creates an empty group of exports bound to `dev`.
    pub fn new(dev: &Device<Bound>) -> Result<Self> {
        let registry = Arc::pin_init(
            pin_init!(Registry {
                members <- new_mutex!(Members {
                    unbound: false,
                    bufs: KVec::new(),
                }),
            }),
            GFP_KERNEL,
        )?;
        devres::register(dev, Unbind(registry.clone()), GFP_KERNEL)?;
        Ok(Self { registry })
    }

    /// Returns the number of buffers of the group that still exist.
    pub fn nr_exports(&self) -> usize {
        self.registry.members.lock().bufs.len()
    }

    /// Returns whether the device is still bound.
    pub fn is_bound(&self) -> bool {
        self.registry.lock_bound().is_ok()
    }

    /// Exports a buffer like [`export()`] into the group, or fails with [`ENODEV`] once the
    /// device is unbound.
    ///
    /// [`export()`]: super::export
    pub fn export<T, E>(
        &self,
        data: impl PinInit<T, E>,
        state: T::State,
        size: usize,
        flags: u32,
    ) -> Result<Exported<T>>
    where
        T: Exporter<Model = Revocable>,
        Error: From<E>,
    {
        self.export_with(|| Ok((data, state)), size, flags)
    }

    /// Exports a buffer whose state `make` creates while the device is bound and cannot unbind.
    fn export_with<T, E, I>(
        &self,
        make: impl FnOnce() -> Result<(I, T::State)>,
        size: usize,
        flags: u32,
    ) -> Result<Exported<T>>
    where
        T: Exporter<Model = Revocable>,
        I: PinInit<T, E>,
        Error: From<E>,
    {
        let mut members = self.registry.lock_bound()?;
        members.bufs.reserve(1, GFP_KERNEL)?;

        let (data, state) = make()?;
        let exported = export_in(data, state, size, flags, Some(self.registry.clone()))?;
        let member = Member(NonNull::from(exported.dma_buf()).cast());

        // INVARIANT: The buffer was just exported into the group; its release removes it.
        // Room was reserved above, so this does not fail.
        if members.bufs.push_within_capacity(member).is_err() {
            // Released without the lock, which the release takes.
            drop(members);
            drop(exported);
            return Err(ENOMEM);
        }
        Ok(exported)
    }
}

#[cfg(all(CONFIG_PCI, CONFIG_PCI_P2PDMA))]
pub use p2p::{
    P2pBar,
    P2pBuffer, //
};

#[cfg(all(CONFIG_PCI, CONFIG_PCI_P2PDMA))]
mod p2p {
    use super::DeviceExports;
    use crate::{
        bindings,
        device::{
            Bound,
            Core,
            Device, //
        },
        dma_buf::{
            BuiltMemory,
            ExportAttachment,
            Exported,
            Exporter,
            MemoryBuilder,
            P2pProvider,
            Revocable,
            SharedMemory, //
        },
        error::to_result,
        io::PhysAddr,
        module::ModuleMetadata,
        pci,
        prelude::*,
    };
    use core::{
        marker::PhantomData,
        ptr::NonNull, //
    };

    /// The P2P provider of a BAR.
    ///
    /// # Invariants
    ///
    /// Points to the `struct p2pdma_provider` of a BAR of a bound PCI device, which is valid
    /// until the devres action of `pcim_p2pdma_init()` frees it at unbind.
    #[derive(Clone, Copy)]
    struct Provider(NonNull<bindings::p2pdma_provider>);

    // SAFETY: A provider is not changed after `pcim_p2pdma_init()` set it up; it is only read,
    // from any thread, while `P2pBar` holds its group's lock with the device bound.
    unsafe impl Send for Provider {}
    // SAFETY: See the `Send` implementation.
    unsafe impl Sync for Provider {}

    /// A BAR of a bound PCI device, exported as [`Revocable`] dma-bufs of its MMIO.
    ///
    /// It owns the binding to the BAR's P2P provider (`pcim_p2pdma_init()`,
    /// `pcim_p2pdma_provider()`) and a [`DeviceExports`] group registered after it: on unbind
    /// every buffer it exported is revoked before the provider is freed, and none is restored.
    /// Drivers describe ranges of the BAR by offset; they never see the provider.
    #[derive(Clone)]
    pub struct P2pBar {
        exports: DeviceExports,
        provider: Provider,
        start: PhysAddr,
        len: u64,
    }

    impl P2pBar {
        /// Sets up peer-to-peer DMA for memory BAR `bar` of `pdev`.
        ///
        /// Fails with [`EINVAL`] if `bar` is not a memory BAR.
        pub fn new(pdev: &pci::Device<Core<'_>>, bar: u32) -> Result<Self> {
            if bar >= bindings::PCI_STD_NUM_BARS {
                return Err(EINVAL);
            }
            let start = pdev.resource_start(bar)?;
            let len = pdev.resource_len(bar)?;
            let pdev: &pci::Device<Bound> = pdev;
            let dev: &Device<Bound> = pdev.as_ref();
            // SAFETY: `dev` is the `dev` field of the `struct pci_dev` that `pdev` wraps.
            let raw = unsafe { crate::container_of!(dev.as_raw(), bindings::pci_dev, dev) };

            // SAFETY: `raw` is the `struct pci_dev` of `dev`, in the core context of its driver
            // (the device lock is held), as `pcim_p2pdma_init()` requires to register its
            // device-managed state.
            to_result(unsafe { bindings::pcim_p2pdma_init(raw) })?;

            // SAFETY: `raw` is valid, its P2P state was set up above, and `bar` is a standard
            // BAR.
            let provider = unsafe { bindings::pcim_p2pdma_provider(raw, bar.try_into()?) };
            let provider = Provider(NonNull::new(provider).ok_or(EINVAL)?);

            // Registered after `pcim_p2pdma_init()`'s devres action, so it runs before it.
            let exports = DeviceExports::new(dev)?;
            Ok(Self {
                exports,
                provider,
                start,
                len,
            })
        }

        /// Exports a buffer of the BAR ranges `ranges`, (offset, length) in buffer order, as
        /// one chunk of PCI MMIO, described once and shared with every importer.
        ///
        /// The buffer's exporter is module `M` (its name and owner). Fails with [`EINVAL`] for
        /// ranges outside the BAR and with [`ENODEV`] once the device is unbound.
        pub fn export<M: ModuleMetadata + 'static>(
            &self,
            ranges: &[(u64, usize)],
            flags: u32,
        ) -> Result<Exported<P2pBuffer<M>>> {
            let mut size = 0usize;
            for &(off, len) in ranges {
                let end = u64::try_from(len)
                    .ok()
                    .and_then(|len| off.checked_add(len))
                    .ok_or(EINVAL)?;
                if end > self.len {
                    return Err(EINVAL);
                }
                size = size.checked_add(len).ok_or(EINVAL)?;
            }

            let make = || {
                // SAFETY: `describe` only describes the BAR's MMIO, valid while importers may
                // get the description: `make` runs with the group locked and the device bound,
                // and the unbind revokes the buffer, for good, before the provider is freed.
                let memory =
                    unsafe { SharedMemory::new_unchecked((), |mem| self.describe(ranges, mem)) }?;
                let buffer = P2pBuffer {
                    memory,
                    _module: PhantomData,
                };
                Ok((buffer, ()))
            };
            self.exports
                .export_with::<P2pBuffer<M>, core::convert::Infallible, _>(make, size, flags)
        }
    }

    impl P2pBar {
        /// Describes `ranges`, checked to be inside the BAR, as one chunk of PCI MMIO.
        ///
        /// # Safety
        ///
        /// The device must be bound, and the group locked, while this runs; the description
        /// must only reach importers while the buffer is not revoked.
        unsafe fn describe<'x>(
            &self,
            ranges: &[(u64, usize)],
            mem: MemoryBuilder<'x>,
        ) -> Result<BuiltMemory<'x>> {
            // SAFETY: By the safety requirements the device is bound, so by the type invariant
            // the provider is valid, and it stays valid for as long as importers can get the
            // description: the unbind revokes the buffer, for good, before the provider is freed.
            let provider = unsafe { P2pProvider::from_raw(self.provider.0.as_ptr()) };
            let mut draft = mem.alloc(1, u32::try_from(ranges.len())?, GFP_KERNEL)?;
            draft.p2p_chunk(provider)?;
            for &(off, len) in ranges {
                // SAFETY: The range is inside the BAR (checked by the caller), MMIO of the
                // chunk's provider, valid for as long as the provider, as above.
                unsafe { draft.range(self.start + off, len) }?;
            }
            Ok(draft.build())
        }
    }

    /// A dma-buf of ranges of a BAR, exported by [`P2pBar::export`] for module `M`.
    pub struct P2pBuffer<M: ModuleMetadata + 'static> {
        memory: SharedMemory,
        _module: PhantomData<fn() -> M>,
    }

    #[vtable]
    impl<M: ModuleMetadata + 'static> Exporter for P2pBuffer<M> {
        type OwnerModule = M;
        type Model = Revocable;
        type State = ();
        // Importers of `dma_buf_map_attachment()` that unmap when invalidated get a table of
        // the same description.
        const MAP_DMA_BUF: bool = true;

        fn get_memory<'a>(
            &'a self,
            _state: &'a (),
            attach: &ExportAttachment,
            mem: MemoryBuilder<'a>,
        ) -> Result<BuiltMemory<'a>> {
            // PCI MMIO has no `struct page`s: only peer-to-peer importers can use it.
            if !attach.peer2peer() {
                return Err(EOPNOTSUPP);
            }
            Ok(mem.share(&self.memory))
        }
    }
}
