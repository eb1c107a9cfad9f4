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
    module::{
        this_module,
        ModuleMetadata, //
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

/// An importer of dma-bufs that uses their physical memory (`struct dma_buf_attach_ops`).
///
/// The constants are what the importer can handle; [`DmaBuf::attach`] fails with [`EOPNOTSUPP`]
/// for a buffer whose model is not in [`Importer::MODELS`] or that may hold private memory when
/// [`Importer::ALLOW_PRIVATE`] is not set. An [`Attachment`] holds a reference on the module that
/// implements the importer, so the exporter never calls [`Importer::invalidate`] in unloaded
/// code, even if the attachment is leaked. Like a dma-buf for its exporter's module, it keeps the
/// module from being unloaded: drop attachments with the files or devices that use them, not in
/// the module's exit.
#[vtable]
pub trait Importer: Send + Sync + 'static {
    /// The memory models the importer can handle. Must not be empty.
    const MODELS: ModelSet;

    /// Whether the importer can handle PCI MMIO ([`ChunkKind::P2pMmio`], `allow_peer2peer`).
    ///
    /// [`ChunkKind::P2pMmio`]: super::ChunkKind::P2pMmio
    const ALLOW_P2P: bool = false;

    /// Whether the importer can handle private memory (`allow_private`).
    const ALLOW_PRIVATE: bool = false;

    /// Called with the reservation lock held when the importer must stop using the memory
    /// (`invalidate_mappings`).
    ///
    /// `kept` is the description [`Attachment::keep_memory`] kept, if any, which the importer
    /// unmaps before returning (or fences); the attachment puts it afterwards. No [`Memory`] of
    /// the attachment exists at that point: it borrows the lock.
    fn invalidate(&self, kept: Option<&MemoryDesc>);
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

        // SAFETY: The reservation lock, held by the caller, serialises all accesses to `kept`.
        let kept = unsafe { *shared.kept.get() };
        // SAFETY: `kept` is null or a description got on `attach` and not put yet; it is put
        // below, after `invalidate` no longer borrows it.
        let desc = (!kept.is_null()).then(|| unsafe { MemoryDesc::from_raw(kept) });
        shared.data.invalidate(desc);

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
    /// Attaches `dev` to the buffer as importer `T`, with `data` as the importer's state
    /// (`dma_buf_dynamic_attach()`).
    ///
    /// Fails with [`EOPNOTSUPP`] if the importer cannot handle the buffer, with [`ENODEV`] if the
    /// importer's module is being unloaded, or with the exporter's error. The reservation lock
    /// must not be held.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kernel::{device::{Bound, Device}, faux, page::{Page, PAGE_SIZE}, prelude::*};
    /// # use kernel::sync::Arc;
    /// use kernel::dma_buf::{self, BuiltMemory, Dynamic, ExportAttachment, Exporter, Importer};
    /// use kernel::dma_buf::{MemoryBuilder, MemoryDesc, Model, ModelSet};
    ///
    /// struct Movable;
    ///
    /// #[vtable]
    /// impl Exporter for Movable {
    ///     type Model = Dynamic;
    ///     type State = Page;
    ///
    ///     fn get_memory<'a>(
    ///         &'a self,
    ///         page: &'a Page,
    ///         _attach: &ExportAttachment,
    ///         mem: MemoryBuilder<'a>,
    ///     ) -> Result<BuiltMemory<'a>> {
    ///         let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
    ///         draft.cpu_chunk()?;
    ///         draft.page(page)?;
    ///         Ok(draft.build())
    ///     }
    /// }
    ///
    /// struct PinnedOnly;
    ///
    /// #[vtable]
    /// impl Importer for PinnedOnly {
    ///     const MODELS: ModelSet = ModelSet::PINNED;
    ///
    ///     fn invalidate(&self, _kept: Option<&MemoryDesc>) {}
    /// }
    ///
    /// # let reg = faux::Registration::new(c"rust-dma-buf-attach", None)?;
    /// # let fdev: &faux::Device<Bound> = reg.as_ref();
    /// # let dev: &Device<Bound> = fdev.as_ref();
    /// let exported = dma_buf::export(Movable, Page::alloc_page(GFP_KERNEL)?, PAGE_SIZE, 0)?;
    /// let buf = exported.dma_buf();
    /// assert_eq!(buf.model(), Some(Model::Dynamic));
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

        let owner = this_module::<T::OwnerModule>();
        let shared = KBox::new(
            Shared {
                data,
                kept: UnsafeCell::new(ptr::null_mut()),
            },
            GFP_KERNEL,
        )?;

        // SAFETY: `owner` is a valid module, or null for built-in code, which
        // `try_module_get()` accepts.
        if !unsafe { bindings::try_module_get(owner.as_ptr()) } {
            return Err(ENODEV);
        }
        let owner = ModuleRef(owner);

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
        // ops of `T`, and nothing was kept yet; `owner` holds a reference on `T`'s module.
        Ok(Attachment {
            attach,
            buf: self.into(),
            _dev: dev.into(),
            shared,
            _owner: owner,
        })
    }
}

/// A reference on a module, dropped with `module_put()`.
///
/// # Invariants
///
/// The reference was taken with a successful `try_module_get()`.
struct ModuleRef(&'static ThisModule);

impl Drop for ModuleRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own a reference on the module.
        unsafe { bindings::module_put(self.0.as_ptr()) };
    }
}

/// Returns the reference count of the module `M`, for tests of [`Attachment`]'s reference.
#[doc(hidden)]
pub fn module_refcount<M: ModuleMetadata>() -> i32 {
    let module = this_module::<M>().as_ptr();
    if module.is_null() {
        return -1;
    }
    // SAFETY: `module` is the valid module of `M`, whose code is running.
    unsafe { bindings::module_refcount(module) }
}

/// The importer data of an attachment, which its `importer_priv` points to.
struct Shared<T> {
    data: Arc<T>,
    /// The memory kept by [`Attachment::keep_memory`], or null. Protected by the reservation lock
    /// of the buffer.
    kept: UnsafeCell<*mut bindings::dma_buf_memory>,
}

impl<T> Shared<T> {
    /// Puts the memory kept by [`Attachment::keep_memory`], if any.
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
/// - `_owner` holds a reference on the module of `T`, dropped after the detach: the exporter
///   cannot call into unloaded importer code.
pub struct Attachment<T: Importer> {
    attach: NonNull<bindings::dma_buf_attachment>,
    buf: ARef<DmaBuf>,
    _dev: ARef<Device>,
    shared: KBox<Shared<T>>,
    // Dropped last, after `drop()` detached.
    _owner: ModuleRef,
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

    /// Gets the physical memory of the buffer (`dma_buf_get_memory()`).
    ///
    /// `guard` must hold the reservation lock of the attachment's buffer, else this fails with
    /// [`EINVAL`]. The [`Memory`] borrows `guard`, so the description is put before the lock is
    /// dropped. Fails with [`EOPNOTSUPP`], [`ENODEV`] (revoked), [`EINVAL`] (broken
    /// description) or the exporter's error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kernel::{device::{Bound, Device}, faux, page::{Page, PAGE_SIZE}, prelude::*};
    /// # use kernel::sync::Arc;
    /// use kernel::dma_buf::{self, BuiltMemory, ChunkKind, ExportAttachment, Exporter, Importer};
    /// use kernel::dma_buf::{MemoryBuilder, MemoryDesc, ModelSet, Pinned};
    ///
    /// // Exports two pages, in two ranges of one chunk.
    /// struct TwoPages([Page; 2]);
    ///
    /// #[vtable]
    /// impl Exporter for TwoPages {
    ///     type Model = Pinned;
    ///     type State = ();
    ///
    ///     fn get_memory<'a>(
    ///         &'a self,
    ///         _state: &'a (),
    ///         _attach: &ExportAttachment,
    ///         mem: MemoryBuilder<'a>,
    ///     ) -> Result<BuiltMemory<'a>> {
    ///         let mut draft = mem.alloc(1, 2, GFP_KERNEL)?;
    ///         draft.cpu_chunk()?;
    ///         self.0.iter().try_for_each(|page| draft.page(page))?;
    ///         Ok(draft.build())
    ///     }
    /// }
    ///
    /// struct Probe;
    ///
    /// #[vtable]
    /// impl Importer for Probe {
    ///     const MODELS: ModelSet = ModelSet::PINNED;
    ///
    ///     fn invalidate(&self, _kept: Option<&MemoryDesc>) {}
    /// }
    ///
    /// # let reg = faux::Registration::new(c"rust-dma-buf-get-memory", None)?;
    /// # let fdev: &faux::Device<Bound> = reg.as_ref();
    /// # let dev: &Device<Bound> = fdev.as_ref();
    /// let pages = [Page::alloc_page(GFP_KERNEL)?, Page::alloc_page(GFP_KERNEL)?];
    /// let exported = dma_buf::export(TwoPages(pages), (), 2 * PAGE_SIZE, 0)?;
    /// let buf = exported.dma_buf();
    /// let attachment = buf.attach(dev, Arc::new(Probe, GFP_KERNEL)?)?;
    ///
    /// let guard = buf.lock();
    /// let mem = attachment.get_memory(&guard)?;
    /// assert_eq!(mem.size(), 2 * PAGE_SIZE);
    /// let chunk = &mem.chunks()[0];
    /// assert!(matches!(chunk.kind(), ChunkKind::Cpu));
    /// assert_eq!(chunk.ranges().len(), 2);
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
    /// For importers that map the ranges into page tables that outlive the reservation lock
    /// (IOMMU, second stage MMU). Later calls return the kept description until
    /// [`Importer::invalidate`], which gets it to unmap, after which the attachment puts it.
    /// [`Attachment::put_kept_memory`] and dropping the attachment put it too. `guard` must hold
    /// the reservation lock of the attachment's buffer, else this fails with [`EINVAL`].
    pub fn keep_memory<'a>(&'a self, guard: &'a ResvGuard<'_>) -> Result<&'a MemoryDesc> {
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
        // `guard` holds the lock and `self` is borrowed, and by `put_kept_memory`, which needs
        // `guard` borrowed mutably.
        Ok(unsafe { MemoryDesc::from_raw(*kept) })
    }

    /// Puts the memory kept by [`Attachment::keep_memory`], if any, once the importer unmapped
    /// it. `guard` must hold the reservation lock of the attachment's buffer, else this fails
    /// with [`EINVAL`].
    pub fn put_kept_memory(&self, guard: &mut ResvGuard<'_>) -> Result {
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
