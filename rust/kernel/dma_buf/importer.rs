// SPDX-License-Identifier: GPL-2.0

//! The importer side of dma-buf: attachments and their physical memory.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)

use super::{
    DmaBuf,
    Memory,
    MemoryDesc,
    ModelSet,
    ResvGuard, //
};
use crate::{
    bindings,
    device::Device,
    error::{
        from_err_ptr,
        to_result, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc, //
    }, //
};
use core::{
    cell::UnsafeCell,
    marker::PhantomData,
    ptr::{
        self,
        NonNull, //
    },
};

/// An importer of dma-bufs that uses their physical memory.
///
/// The constants are what the importer can handle; [`DmaBuf::attach`] fails with [`EOPNOTSUPP`]
/// for a buffer whose exporter's [`Model`] is not in [`Importer::MODELS`] or, if the buffer may
/// hold private memory, when [`Importer::ALLOW_PRIVATE`] is not set.
///
/// [`Model`]: super::Model
pub trait Importer: Send + Sync + 'static {
    /// The memory models the importer can handle. Must not be empty.
    const MODELS: ModelSet;

    /// Whether the importer can handle PCI MMIO without `struct page`s (chunks of kind
    /// [`ChunkKind::P2pMmio`]).
    ///
    /// [`ChunkKind::P2pMmio`]: super::ChunkKind::P2pMmio
    const ALLOW_P2P: bool = false;

    /// Whether the importer can handle memory the host CPU cannot access (private chunks).
    const ALLOW_PRIVATE: bool = false;

    /// Called when the importer must stop using the memory it got from the buffer.
    ///
    /// The exporter is revoking or moving the memory. This is called with the reservation lock
    /// of the buffer held, so no [`Memory`] of this importer exists. By the time it returns the
    /// importer must have removed the ranges it got from [`Attachment::map_memory`] from its page
    /// tables and stopped its DMA to them, or added fences to the reservation object that signal
    /// when it has; it must not take the reservation lock. The attachment then puts the memory
    /// kept by [`Attachment::map_memory`].
    ///
    /// After a [`Model::Dynamic`] move, getting the memory again returns the new addresses; after
    /// a revoke it fails with [`ENODEV`] until the exporter restores the buffer.
    ///
    /// [`Model::Dynamic`]: super::Model::Dynamic
    fn invalidate(&self);
}

/// The `struct dma_buf_attach_ops` of an importer type.
struct ImporterVTable<T: Importer>(PhantomData<T>);

impl<T: Importer> ImporterVTable<T> {
    /// # Safety
    ///
    /// `attach` must be an attachment created by [`DmaBuf::attach`] for `T`, whose
    /// `importer_priv` therefore points to the `Shared<T>` of its [`Attachment`], and the
    /// reservation lock of its buffer must be held.
    unsafe extern "C" fn invalidate_mappings(attach: *mut bindings::dma_buf_attachment) {
        // SAFETY: By the safety requirements `importer_priv` points to a `Shared<T>` that the
        // `Attachment` keeps alive until after it is detached.
        let shared = unsafe { &*(*attach).importer_priv.cast::<Shared<T>>() };

        shared.data.invalidate();

        // SAFETY: `shared` belongs to `attach`, and the reservation lock is held.
        unsafe { shared.put_kept(attach) };
    }

    const VTABLE: bindings::dma_buf_attach_ops = bindings::dma_buf_attach_ops {
        allow_peer2peer: T::ALLOW_P2P,
        invalidate_mappings: Some(Self::invalidate_mappings),
        memory_models: T::MODELS.bits(),
        allow_private: T::ALLOW_PRIVATE,
    };

    const fn build() -> &'static bindings::dma_buf_attach_ops {
        &Self::VTABLE
    }
}

impl DmaBuf {
    /// Attaches `dev` to the buffer as importer `T`, with `data` as the importer's state.
    ///
    /// Fails with [`EOPNOTSUPP`] if the importer cannot handle the buffer's memory model or
    /// private memory, or with the error of the exporter, which may refuse the device. The
    /// reservation lock must not be held.
    ///
    /// # Examples
    ///
    /// An importer that only handles pinned memory cannot attach to a buffer whose memory the
    /// exporter may move:
    ///
    /// ```
    /// use kernel::{
    ///     device::{
    ///         Bound,
    ///         Device, //
    ///     },
    ///     dma_buf::{
    ///         self,
    ///         ExportAttachment,
    ///         Exporter,
    ///         Importer,
    ///         MemoryBuilder,
    ///         Model,
    ///         ModelSet, //
    ///     },
    ///     faux,
    ///     page::{
    ///         Page,
    ///         PAGE_SIZE, //
    ///     },
    ///     prelude::*,
    ///     sync::Arc, //
    /// };
    ///
    /// struct Movable {
    ///     page: Page,
    /// }
    ///
    /// #[vtable]
    /// impl Exporter for Movable {
    ///     const MODEL: Model = Model::Dynamic;
    ///
    ///     fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
    ///         mem.alloc(1, 1, GFP_KERNEL)?;
    ///         mem.cpu_chunk()?;
    ///         mem.page(&self.page)
    ///     }
    /// }
    ///
    /// struct PinnedOnly;
    ///
    /// impl Importer for PinnedOnly {
    ///     const MODELS: ModelSet = ModelSet::PINNED;
    ///
    ///     fn invalidate(&self) {}
    /// }
    ///
    /// let reg = faux::Registration::new(c"rust-dma-buf-attach", None)?;
    /// let fdev: &faux::Device<Bound> = reg.as_ref();
    /// let dev: &Device<Bound> = fdev.as_ref();
    ///
    /// let page = Page::alloc_page(GFP_KERNEL)?;
    /// let exported = dma_buf::export(Movable { page }, PAGE_SIZE, 0)?;
    /// let buf = exported.dma_buf();
    /// assert_eq!(buf.model(), Model::Dynamic);
    ///
    /// let res = buf.attach(dev, Arc::new(PinnedOnly, GFP_KERNEL)?);
    /// assert_eq!(res.err(), Some(EOPNOTSUPP));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn attach<T: Importer>(&self, dev: &Device, data: Arc<T>) -> Result<Attachment<T>> {
        const_assert!(
            !T::MODELS.is_empty(),
            "an importer must accept a memory model"
        );

        let shared = KBox::new(
            Shared {
                data,
                kept: UnsafeCell::new(ptr::null_mut()),
            },
            GFP_KERNEL,
        )?;

        // SAFETY:
        // - `self` and `dev` are valid.
        // - The ops are a `'static` table whose callback expects `importer_priv` to point to a
        //   `Shared<T>`; the `Attachment` keeps `shared` alive until after it detached.
        let ptr = from_err_ptr(unsafe {
            bindings::dma_buf_dynamic_attach(
                self.as_raw(),
                dev.as_raw(),
                ImporterVTable::<T>::build(),
                ptr::from_ref(&*shared).cast_mut().cast(),
            )
        })?;
        let attach = NonNull::new(ptr).ok_or(EINVAL)?;

        // INVARIANT: `attach` was just attached to `self` with `shared` as importer data and the
        // ops of `T`, and nothing was kept yet; the attachment holds references on the buffer and
        // the device.
        Ok(Attachment {
            attach,
            buf: self.into(),
            _dev: dev.into(),
            shared,
        })
    }
}

/// The importer data of an attachment, which its `importer_priv` points to.
struct Shared<T> {
    data: Arc<T>,
    /// The memory kept by [`Attachment::map_memory`], or null. Protected by the reservation lock
    /// of the buffer.
    kept: UnsafeCell<*mut bindings::dma_buf_memory>,
}

impl<T> Shared<T> {
    /// Puts the memory kept by [`Attachment::map_memory`], if any.
    ///
    /// # Safety
    ///
    /// `self` must be the importer data of `attach`, and the reservation lock of its buffer must
    /// be held.
    unsafe fn put_kept(&self, attach: *mut bindings::dma_buf_attachment) {
        // SAFETY: The reservation lock, held by the caller, serialises all accesses to `kept`.
        let mem = unsafe { self.kept.get().replace(ptr::null_mut()) };

        // SAFETY: `mem` is null or was got on `attach` and not put yet, and the reservation lock
        // is held.
        unsafe { bindings::dma_buf_put_memory(attach, mem) };
    }
}

/// A device attached to a dma-buf as importer `T`.
///
/// Created by [`DmaBuf::attach`]; dropping it puts the memory it kept and detaches, which takes
/// the reservation lock, so it must not be dropped while the lock is held.
///
/// # Invariants
///
/// - `attach` is a `struct dma_buf_attachment` of `buf`, created by `dma_buf_dynamic_attach()`
///   with the ops of `ImporterVTable<T>` and a pointer to `shared` as importer data, and not yet
///   detached.
/// - `shared.kept` is null or memory got with `dma_buf_get_memory()` on `attach` and not put.
/// - `_dev` is the attached device, kept alive for the exporter, which may use it while the
///   attachment exists.
pub struct Attachment<T: Importer> {
    attach: NonNull<bindings::dma_buf_attachment>,
    buf: ARef<DmaBuf>,
    _dev: ARef<Device>,
    shared: KBox<Shared<T>>,
}

// SAFETY: An attachment may be detached from any thread, and `T` is `Send + Sync`.
unsafe impl<T: Importer> Send for Attachment<T> {}

// SAFETY: The methods taking `&self` only read the attachment, or access the kept memory and call
// C functions with the reservation lock held, which the caller proves with a guard; `T` is
// `Sync`.
unsafe impl<T: Importer> Sync for Attachment<T> {}

impl<T: Importer> Attachment<T> {
    /// Returns the buffer of the attachment.
    #[inline]
    pub fn dma_buf(&self) -> &DmaBuf {
        &self.buf
    }

    /// Returns the importer's state.
    #[inline]
    pub fn data(&self) -> &Arc<T> {
        &self.shared.data
    }

    /// Returns the raw `struct dma_buf_attachment` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::dma_buf_attachment {
        self.attach.as_ptr()
    }

    /// Gets the physical memory of the buffer.
    ///
    /// `guard` must hold the reservation lock of the attachment's buffer, else this fails with
    /// [`EINVAL`]. The returned [`Memory`] borrows `guard`: the addresses cannot be used after the
    /// lock is released. Fails with [`EOPNOTSUPP`] if the exporter does not describe its memory,
    /// [`ENODEV`] if it revoked the buffer, [`EINVAL`] if it returned an invalid description, or
    /// with the exporter's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{
    ///     device::{
    ///         Bound,
    ///         Device, //
    ///     },
    ///     dma_buf::{
    ///         self,
    ///         ChunkKind,
    ///         ExportAttachment,
    ///         Exporter,
    ///         Importer,
    ///         MemoryBuilder,
    ///         Model,
    ///         ModelSet, //
    ///     },
    ///     faux,
    ///     io::PhysAddr,
    ///     page::{
    ///         Page,
    ///         PAGE_SIZE, //
    ///     },
    ///     prelude::*,
    ///     sync::Arc, //
    /// };
    ///
    /// // Exports two pages, in two ranges of one chunk.
    /// struct TwoPages {
    ///     pages: [Page; 2],
    /// }
    ///
    /// #[vtable]
    /// impl Exporter for TwoPages {
    ///     const MODEL: Model = Model::Pinned;
    ///
    ///     fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
    ///         mem.alloc(1, 2, GFP_KERNEL)?;
    ///         mem.cpu_chunk()?;
    ///         for page in &self.pages {
    ///             mem.page(page)?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// struct Probe;
    ///
    /// impl Importer for Probe {
    ///     const MODELS: ModelSet = ModelSet::PINNED;
    ///
    ///     fn invalidate(&self) {}
    /// }
    ///
    /// let reg = faux::Registration::new(c"rust-dma-buf-get-memory", None)?;
    /// let fdev: &faux::Device<Bound> = reg.as_ref();
    /// let dev: &Device<Bound> = fdev.as_ref();
    ///
    /// let pages = [Page::alloc_page(GFP_KERNEL)?, Page::alloc_page(GFP_KERNEL)?];
    /// let exported = dma_buf::export(TwoPages { pages }, 2 * PAGE_SIZE, 0)?;
    /// let buf = exported.dma_buf();
    /// let attachment = buf.attach(dev, Arc::new(Probe, GFP_KERNEL)?)?;
    ///
    /// let guard = buf.lock();
    /// let mem = attachment.get_memory(&guard)?;
    /// assert_eq!(mem.size(), 2 * PAGE_SIZE);
    /// assert_eq!(mem.chunks().len(), 1);
    ///
    /// let chunk = &mem.chunks()[0];
    /// assert_eq!(chunk.kind(), ChunkKind::Cpu);
    /// assert!(!chunk.is_private());
    /// assert!(chunk.provider().is_none());
    /// assert_eq!(chunk.size(), 2 * PAGE_SIZE);
    ///
    /// let ranges = chunk.ranges();
    /// assert_eq!(ranges.len(), 2);
    /// for range in ranges {
    ///     assert_eq!(range.len, PAGE_SIZE);
    ///     assert_eq!(range.paddr % PAGE_SIZE as PhysAddr, 0);
    /// }
    /// assert_ne!(ranges[0].paddr, ranges[1].paddr);
    /// drop(mem);
    /// drop(guard);
    ///
    /// // A guard of another buffer does not hold the right lock.
    /// let other = dma_buf::export(
    ///     TwoPages {
    ///         pages: [Page::alloc_page(GFP_KERNEL)?, Page::alloc_page(GFP_KERNEL)?],
    ///     },
    ///     2 * PAGE_SIZE,
    ///     0,
    /// )?;
    /// let other_guard = other.dma_buf().lock();
    /// assert_eq!(attachment.get_memory(&other_guard).err(), Some(EINVAL));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_memory<'a>(&'a self, guard: &'a ResvGuard<'_>) -> Result<Memory<'a>> {
        if !guard.holds(&self.buf) {
            return Err(EINVAL);
        }

        let mut mem = ptr::null_mut();

        // SAFETY: By the type invariant `attach` is attached, and `guard` holds the reservation
        // lock of its buffer.
        to_result(unsafe { bindings::dma_buf_get_memory(self.as_raw(), &mut mem) })?;
        let mem = NonNull::new(mem).ok_or(EINVAL)?;

        // SAFETY: `mem` was just returned by `dma_buf_get_memory()` on `attach`. Both the lock
        // held by `guard` and the attachment are borrowed for `'a`.
        Ok(unsafe { Memory::from_raw(mem, self.attach) })
    }

    /// Gets the physical memory of the buffer and keeps it until the importer is invalidated.
    ///
    /// This is for importers that map the ranges into page tables that outlive the reservation
    /// lock, such as IOMMU or second stage MMU page tables. The first call gets the memory from
    /// the exporter; later calls return the same memory until [`Importer::invalidate`] was
    /// called, after which the attachment puts it and the next call gets it again. The memory is
    /// also put by [`Attachment::unmap_memory`] and when the attachment is dropped.
    ///
    /// `guard` must hold the reservation lock of the attachment's buffer, else this fails with
    /// [`EINVAL`]; the returned description borrows it. Fails like [`Attachment::get_memory`].
    pub fn map_memory<'a>(&'a self, guard: &'a ResvGuard<'_>) -> Result<&'a MemoryDesc> {
        if !guard.holds(&self.buf) {
            return Err(EINVAL);
        }

        let kept = self.shared.kept.get();

        // SAFETY: `guard` holds the reservation lock, which serialises all accesses to `kept`.
        if unsafe { *kept }.is_null() {
            let mut mem = ptr::null_mut();

            // SAFETY: By the type invariant `attach` is attached, and `guard` holds the
            // reservation lock of its buffer.
            to_result(unsafe { bindings::dma_buf_get_memory(self.as_raw(), &mut mem) })?;
            if mem.is_null() {
                return Err(EINVAL);
            }

            // INVARIANT: `mem` was just got on `attach`.
            // SAFETY: `guard` holds the reservation lock, which serialises all accesses to `kept`.
            unsafe { *kept = mem };
        }

        // SAFETY: The kept memory was returned by `dma_buf_get_memory()`. It is only put with the
        // reservation lock held: by the invalidate callback and `drop`, which cannot run while
        // `guard` holds the lock and `self` is borrowed, and by `unmap_memory`, which needs `guard`
        // borrowed mutably.
        Ok(unsafe { MemoryDesc::from_raw(*kept) })
    }

    /// Puts the memory kept by [`Attachment::map_memory`], if any.
    ///
    /// The importer must have removed the ranges from its page tables and stopped its DMA to
    /// them. `guard` must hold the reservation lock of the attachment's buffer, else this fails
    /// with [`EINVAL`].
    pub fn unmap_memory(&self, guard: &mut ResvGuard<'_>) -> Result {
        if !guard.holds(&self.buf) {
            return Err(EINVAL);
        }

        // SAFETY: `shared` belongs to `attach`, and `guard` holds the reservation lock.
        unsafe { self.shared.put_kept(self.as_raw()) };
        Ok(())
    }
}

impl<T: Importer> Drop for Attachment<T> {
    fn drop(&mut self) {
        let guard = self.buf.lock();

        // SAFETY: `shared` belongs to `attach`, and `guard` holds the reservation lock.
        unsafe { self.shared.put_kept(self.as_raw()) };
        drop(guard);

        // SAFETY: By the type invariant `attach` is an attachment of `buf` that was not detached
        // yet. No memory got on it is left: `Memory` borrows `self`, and the kept memory was just
        // put. After this the core no longer calls `invalidate_mappings`, so `shared` may be
        // dropped.
        unsafe { bindings::dma_buf_detach(self.buf.as_raw(), self.as_raw()) };
    }
}
