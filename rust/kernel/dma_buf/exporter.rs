// SPDX-License-Identifier: GPL-2.0

//! The exporter side of dma-buf: creating buffers and describing their memory.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)

use super::{
    bound::Registry,
    BuiltMemory,
    DmaBuf,
    Dynamic,
    MemoryBuilder,
    MemoryModel,
    Model,
    Revocable, //
};
use crate::{
    bindings,
    device::Device,
    error::{
        from_err_ptr,
        VTABLE_DEFAULT_ERROR, //
    },
    module::{
        this_module,
        ModuleMetadata, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc, //
    },
    types::{
        ForeignOwnable,
        Opaque, //
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

/// An exporter of dma-bufs that describes their physical memory (`struct dma_buf_ops`).
///
/// The implementing type is the unchanging state of one buffer; [`Exporter::State`] is the part
/// that the reservation lock protects. Both are dropped when the buffer is released, after every
/// importer detached. The callbacks have the semantics of their C counterparts, documented in
/// `include/linux/dma-buf.h`.
#[vtable]
pub trait Exporter: Sized + Send + Sync + 'static {
    /// The memory model: [`Pinned`], [`Revocable`] or [`Dynamic`].
    ///
    /// [`Pinned`]: super::Pinned
    type Model: MemoryModel;

    /// State protected by the reservation lock of the buffer.
    ///
    /// [`Exporter::get_memory`] borrows it; only [`Exported::move_memory`] changes it, after
    /// invalidating every importer. Memory owned here can therefore be described safely.
    type State: Send;

    /// Whether the buffer may hold private memory (`memory_private`).
    const PRIVATE: bool = false;

    /// Whether importers of `dma_buf_map_attachment()` get a table of the memory that
    /// [`Exporter::get_memory`] describes, built with `dma_buf_memory_map()`.
    ///
    /// A [`Dynamic`] buffer refuses them with [`EOPNOTSUPP`]: [`Exported::move_memory`] may free
    /// what a table still maps until the importer unmaps it. A table counts as a description
    /// ([`Exporter::put_memory`]) until it is unmapped.
    const MAP_DMA_BUF: bool = false;

    /// Describes the memory of the buffer for the importer of `attach` (`get_memory`).
    ///
    /// Called with the reservation lock held. What `mem` describes must be borrowed for `'a`
    /// from `self` or `state`, which outlive every importer's use of the description; the
    /// [`BuiltMemory`] returned proves that a description was built or shared.
    fn get_memory<'a>(
        &'a self,
        state: &'a Self::State,
        attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>>;

    /// Called with the reservation lock held when a description is put (`put_memory`).
    fn put_memory(&self, _attach: &ExportAttachment) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when a device attaches; an error refuses it (`attach`).
    fn attach(&self, _attach: &ExportAttachment) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when a device detaches (`detach`).
    fn detach(&self, _attach: &ExportAttachment) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// An attachment of a device to a buffer, as its exporter sees it.
///
/// # Invariants
///
/// An [`ExportAttachment`] is a valid `struct dma_buf_attachment` of a buffer for the lifetime of
/// the reference to it.
#[repr(transparent)]
pub struct ExportAttachment(Opaque<bindings::dma_buf_attachment>);

impl ExportAttachment {
    /// Creates a reference to an [`ExportAttachment`] from a valid pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct dma_buf_attachment` that stays valid for `'a`.
    #[inline]
    unsafe fn from_raw<'a>(ptr: *mut bindings::dma_buf_attachment) -> &'a Self {
        // SAFETY: `ExportAttachment` is a transparent wrapper of `struct dma_buf_attachment`, and
        // the caller guarantees that `ptr` stays valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct dma_buf_attachment` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::dma_buf_attachment {
        self.0.get()
    }

    /// Returns the buffer the device is attached to.
    #[inline]
    pub fn dma_buf(&self) -> &DmaBuf {
        // SAFETY: By the type invariant the attachment is valid, and an attachment holds its
        // buffer for as long as it exists.
        unsafe { DmaBuf::from_raw((*self.as_raw()).dmabuf) }
    }

    /// Returns the attached device.
    #[inline]
    pub fn device(&self) -> &Device {
        // SAFETY: By the type invariant the attachment is valid, and importers keep the attached
        // device alive for as long as it is attached.
        unsafe { Device::from_raw((*self.as_raw()).dev) }
    }

    /// Returns whether the importer can handle PCI MMIO without `struct page`s.
    #[inline]
    pub fn peer2peer(&self) -> bool {
        // SAFETY: By the type invariant the attachment is valid; `peer2peer` is set at attach.
        unsafe { (*self.as_raw()).peer2peer }
    }

    /// Returns whether the importer stops using the memory in bounded time when invalidated.
    ///
    /// Exporters whose model is not [`Pinned`] may refuse importers for which this is false in
    /// [`Exporter::attach`].
    ///
    /// [`Pinned`]: super::Pinned
    #[inline]
    pub fn is_revocable(&self) -> bool {
        // SAFETY: By the type invariant the attachment is valid.
        unsafe { bindings::dma_buf_attach_revocable(self.as_raw()) }
    }
}

/// The `priv` of a buffer exported for `T`.
///
/// # Invariants
///
/// `state` is only accessed with the reservation lock of the buffer held, and only mutably by
/// [`Exported::move_memory`], after it invalidated every importer.
#[pin_data]
pub(super) struct ExportData<T: Exporter> {
    #[pin]
    data: T,
    state: UnsafeCell<T::State>,
    /// The device-bound group the buffer belongs to, which revokes it on unbind.
    group: Option<Arc<Registry>>,
}

/// The `struct dma_buf_ops` of an exporter type.
struct ExporterVTable<T: Exporter>(PhantomData<T>);

impl<T: Exporter> ExporterVTable<T> {
    /// Returns the `priv` of a buffer.
    ///
    /// # Safety
    ///
    /// `buf` must be a buffer created by [`export_in`] for `T`, whose release does not happen
    /// during `'a`.
    unsafe fn data<'a>(buf: *mut bindings::dma_buf) -> &'a ExportData<T> {
        // SAFETY: By the safety requirements `priv` is the `Pin<KBox<ExportData<T>>>` that
        // `export_in` converted with `into_foreign()`, and it is only converted back in `release`.
        unsafe { <Pin<KBox<ExportData<T>>> as ForeignOwnable>::borrow((*buf).priv_) }.get_ref()
    }

    /// Describes the memory for `attach`.
    ///
    /// # Safety
    ///
    /// The reservation lock of the buffer of `attach` must be held, and the buffer must have
    /// been created by [`export_in`] for `T`.
    unsafe fn describe<'a>(
        attach: &'a ExportAttachment,
    ) -> Result<(BuiltMemory<'a>, &'a ExportData<T>)> {
        // SAFETY: The buffer of an attachment is not released while the attachment exists.
        let inner = unsafe { Self::data(attach.dma_buf().as_raw()) };

        // The borrow is for as long as importers use the description, past the lock: `state`
        // and `data` are only dropped at release, after every attachment detached, which puts
        // every description; and `state` only changes in `Exported::move_memory`, after every
        // importer was invalidated, when by the C contract no importer uses a range anymore.
        //
        // SAFETY: By the safety requirements the reservation lock is held, so by the type
        // invariant of `ExportData` no one changes `state`.
        let state = unsafe { &*inner.state.get() };

        let built = inner.data.get_memory(state, attach, MemoryBuilder::new())?;
        Ok((built, inner))
    }

    /// # Safety
    ///
    /// `buf` must be a buffer created by [`export_in`] for `T`, and `attach` a valid attachment
    /// being attached to it.
    unsafe extern "C" fn attach(
        buf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) -> c_int {
        // SAFETY: The buffer is not released while a device attaches to it.
        let inner = unsafe { Self::data(buf) };
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };

        match T::attach(&inner.data, attach) {
            Ok(()) => 0,
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `buf` must be a buffer created by [`export_in`] for `T`, and `attach` a valid attachment
    /// being detached from it.
    unsafe extern "C" fn detach(
        buf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) {
        // SAFETY: The buffer is not released while a device detaches from it.
        let inner = unsafe { Self::data(buf) };
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };

        T::detach(&inner.data, attach);
    }

    /// # Safety
    ///
    /// `attach` must be a valid attachment of a buffer created by [`export_in`] for `T`, whose
    /// reservation lock is held, and `mem` valid for writes.
    unsafe extern "C" fn get_memory(
        attach: *mut bindings::dma_buf_attachment,
        mem: *mut *mut bindings::dma_buf_memory,
    ) -> c_int {
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };

        // SAFETY: By the safety requirements the lock is held and the buffer is `T`'s.
        match unsafe { Self::describe(attach) } {
            Ok((built, _)) => {
                // SAFETY: `mem` is valid for writes; the core owns the reference to the
                // description from now on.
                unsafe { *mem = built.into_raw().as_ptr() };
                0
            }
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `attach` must be a valid attachment of a buffer created by [`export_in`] for `T`, and `mem`
    /// a description that `get_memory` returned for it, which the core hands back once, with the
    /// reservation lock held.
    unsafe extern "C" fn put_memory(
        attach: *mut bindings::dma_buf_attachment,
        mem: *mut bindings::dma_buf_memory,
    ) {
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };
        // SAFETY: The buffer of an attachment is not released while the attachment exists.
        let inner = unsafe { Self::data(attach.dma_buf().as_raw()) };

        T::put_memory(&inner.data, attach);

        // SAFETY: `mem` is the reference that `get_memory` handed to the core, which hands it
        // back exactly once. Dropping it frees the description unless it is shared.
        unsafe { bindings::dma_buf_memory_free(mem) };
    }

    /// Maps the memory that [`Exporter::get_memory`] describes for the device of `attach`.
    ///
    /// On success the caller owes one [`Exporter::put_memory`], at unmap.
    ///
    /// # Safety
    ///
    /// The reservation lock of the buffer of `attach` must be held, and the buffer must have
    /// been created by [`export_in`] for `T`.
    unsafe fn map(
        attach: &ExportAttachment,
        dir: bindings::dma_data_direction,
    ) -> Result<NonNull<bindings::sg_table>> {
        // SAFETY: The buffer is valid while `attach` is, and by the safety requirements its
        // reservation lock is held.
        let revoked = unsafe { bindings::dma_buf_is_revoked(attach.dma_buf().as_raw()) };
        // Revoked memory, such as a BAR of an unbound device, must not even be described.
        if revoked {
            return Err(ENODEV);
        }

        // SAFETY: By the safety requirements the lock is held and the buffer is `T`'s.
        let (built, inner) = unsafe { Self::describe(attach) }?;

        // The table does not use the description: `built` drops its reference afterwards.
        // SAFETY: `attach` is valid and its reservation lock is held; `built` holds a reference
        // to the description, which `dma_buf_memory_map()` only seals (if unshared) and reads.
        let sgt = unsafe { bindings::dma_buf_memory_map(attach.as_raw(), built.as_ptr(), dir) };
        let sgt = from_err_ptr(sgt).and_then(|sgt| NonNull::new(sgt).ok_or(ENOMEM));

        // A failure releases the description like the core releases one it rejects.
        if sgt.is_err() && T::HAS_PUT_MEMORY {
            T::put_memory(&inner.data, attach);
        }
        sgt
    }

    /// # Safety
    ///
    /// `attach` must be a valid attachment of a buffer created by [`export_in`] for `T`, whose
    /// reservation lock is held.
    unsafe extern "C" fn map_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        dir: bindings::dma_data_direction,
    ) -> *mut bindings::sg_table {
        if !T::MAP_DMA_BUF || matches!(T::Model::MODEL, Model::Dynamic) {
            return EOPNOTSUPP.to_ptr();
        }

        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };

        // SAFETY: By the safety requirements the reservation lock is held.
        match unsafe { Self::map(attach, dir) } {
            Ok(sgt) => sgt.as_ptr(),
            Err(err) => err.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// `attach` must be a valid attachment of a buffer created by [`export_in`] for `T`, whose
    /// reservation lock is held, and `sgt` a table that `map_dma_buf` returned for it, which the
    /// core hands back once.
    unsafe extern "C" fn unmap_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        sgt: *mut bindings::sg_table,
        dir: bindings::dma_data_direction,
    ) {
        // Without `MAP_DMA_BUF`, `map_dma_buf` never succeeds and this is never called.
        if !T::MAP_DMA_BUF {
            return;
        }

        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };
        // SAFETY: The buffer of an attachment is not released while the attachment exists.
        let inner = unsafe { Self::data(attach.dma_buf().as_raw()) };

        // SAFETY: `sgt` was returned by `dma_buf_memory_map()` for `attach` in `map_dma_buf` and
        // is handed back once, and the reservation lock is held.
        unsafe { bindings::dma_buf_memory_unmap(attach.as_raw(), sgt, dir) };

        // The table counted as a description until now.
        if T::HAS_PUT_MEMORY {
            T::put_memory(&inner.data, attach);
        }
    }

    /// # Safety
    ///
    /// `buf` must be a buffer created by [`export_in`] for `T` whose last reference was dropped.
    unsafe extern "C" fn release(buf: *mut bindings::dma_buf) {
        let inner =
            // SAFETY: By the safety requirements `priv` is the `Pin<KBox<ExportData<T>>>` that
            // `export_in` converted with `into_foreign()`, and nothing uses it anymore.
            unsafe { <Pin<KBox<ExportData<T>>> as ForeignOwnable>::from_foreign((*buf).priv_) };

        if let Some(group) = &inner.group {
            group.remove(buf);
        }
        drop(inner);
    }

    const VTABLE: bindings::dma_buf_ops = bindings::dma_buf_ops {
        attach: if T::HAS_ATTACH {
            Some(Self::attach)
        } else {
            None
        },
        detach: if T::HAS_DETACH {
            Some(Self::detach)
        } else {
            None
        },
        map_dma_buf: Some(Self::map_dma_buf),
        unmap_dma_buf: Some(Self::unmap_dma_buf),
        release: Some(Self::release),
        get_memory: Some(Self::get_memory),
        // Without the hook the core frees the descriptions with `dma_buf_memory_free()`.
        put_memory: if T::HAS_PUT_MEMORY {
            Some(Self::put_memory)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::dma_buf_ops {
        &Self::VTABLE
    }
}

/// Exports a buffer of `size` bytes with `data` and `state` as its exporter state.
///
/// `flags` are the file flags of the buffer, such as [`O_RDWR`]. The buffer holds a reference on
/// the module that implements `T` until it is released. See [`Exported::revoke`] and
/// [`Exported::move_memory`] for examples.
///
/// [`O_RDWR`]: crate::fs::file::flags::O_RDWR
pub fn export<T: Exporter, E>(
    data: impl PinInit<T, E>,
    state: T::State,
    size: usize,
    flags: u32,
) -> Result<Exported<T>>
where
    Error: From<E>,
{
    export_in(data, state, size, flags, None)
}

/// Exports a buffer like [`export()`], as a member of `group`, which must hold it in its list
/// before anyone else can see the buffer.
pub(super) fn export_in<T: Exporter, E>(
    data: impl PinInit<T, E>,
    state: T::State,
    size: usize,
    flags: u32,
    group: Option<Arc<Registry>>,
) -> Result<Exported<T>>
where
    Error: From<E>,
{
    let flags = c_int::try_from(flags).map_err(|_| EINVAL)?;
    let inner = try_pin_init!(ExportData::<T> {
        data <- data,
        state: UnsafeCell::new(state),
        group,
    }? Error);
    let inner = alloc_data::<T>(inner)?.into_foreign();

    let info = bindings::dma_buf_export_info {
        exp_name: <T::OwnerModule as ModuleMetadata>::NAME.as_char_ptr(),
        owner: this_module::<T::OwnerModule>().as_ptr(),
        ops: ExporterVTable::<T>::build(),
        size,
        flags,
        resv: ptr::null_mut(),
        priv_: inner,
        memory_model: T::Model::MODEL.as_raw(),
        memory_private: T::PRIVATE,
    };

    // SAFETY: `info` is valid: the name is a `'static` C string, the ops are a `'static` table
    // with all mandatory callbacks, and `priv` is the exporter state the callbacks expect.
    let buf = from_err_ptr(unsafe { bindings::dma_buf_export(&info) })
        .and_then(|buf| NonNull::new(buf.cast::<DmaBuf>()).ok_or(EINVAL));
    let buf = match buf {
        Ok(buf) => buf,
        Err(err) => {
            // SAFETY: The export failed, so the core did not keep `inner`, which came from
            // `into_foreign()` above.
            drop(unsafe { <Pin<KBox<ExportData<T>>> as ForeignOwnable>::from_foreign(inner) });
            return Err(err);
        }
    };

    // INVARIANT: The buffer was just exported with the ops of `T` and `inner` as its state.
    Ok(Exported {
        // SAFETY: `dma_buf_export()` returned the buffer with one reference, on its file, which
        // the `ARef` takes over.
        buf: unsafe { ARef::from_raw(buf) },
        _p: PhantomData,
    })
}

/// Allocates the `priv` of a buffer (outside of `export_in`, whose `Error: From<E>` bound would
/// pick the wrong error type for the allocation).
fn alloc_data<T: Exporter>(
    init: impl PinInit<ExportData<T>, Error>,
) -> Result<Pin<KBox<ExportData<T>>>> {
    KBox::pin_init(init, GFP_KERNEL)
}

/// A reference to a buffer exported by [`export()`], giving access to the exporter's side.
///
/// # Invariants
///
/// `buf` was created by [`export_in`] for `T`: its ops are those of `ExporterVTable<T>` and its
/// `priv` is the `Pin<KBox<ExportData<T>>>` that `export_in` converted with `into_foreign()`.
pub struct Exported<T: Exporter> {
    buf: ARef<DmaBuf>,
    _p: PhantomData<T>,
}

impl<T: Exporter> Clone for Exported<T> {
    fn clone(&self) -> Self {
        // INVARIANT: The same buffer.
        Self {
            buf: self.buf.clone(),
            _p: PhantomData,
        }
    }
}

impl<T: Exporter> Exported<T> {
    /// Returns the buffer.
    #[inline]
    pub fn dma_buf(&self) -> &DmaBuf {
        &self.buf
    }

    /// Returns a reference to the buffer, for example to install it with [`DmaBuf::into_file`].
    #[inline]
    pub fn into_dma_buf(self) -> ARef<DmaBuf> {
        self.buf
    }

    fn inner(&self) -> &ExportData<T> {
        // SAFETY: By the type invariant the buffer was created by `export_in` for `T`, and it is
        // not released while `self` holds a reference to it.
        unsafe { ExporterVTable::<T>::data(self.buf.as_raw()) }
    }

    /// Returns the exporter state of the buffer that the reservation lock does not protect.
    #[inline]
    pub fn data(&self) -> &T {
        &self.inner().data
    }
}

impl<T: Exporter<Model = Revocable>> Exported<T> {
    /// Revokes the importers' access to the memory (`dma_buf_revoke()`), and waits for the fences
    /// of their outstanding work. Takes the reservation lock.
    ///
    /// Importers of `dma_buf_map_attachment()` may still hold a table until they unmap it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kernel::{device::{Bound, Device}, faux, page::{Page, PAGE_SIZE}, prelude::*};
    /// # use kernel::sync::{atomic::{Atomic, Relaxed}, Arc};
    /// use kernel::dma_buf::{self, BuiltMemory, ExportAttachment, Exporter, Importer};
    /// use kernel::dma_buf::{MemoryBuilder, MemoryDesc, ModelSet, Revocable};
    ///
    /// struct OnePage {
    ///     page: Page,
    /// }
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
    ///         draft.page(&self.page)?;
    ///         Ok(draft.build())
    ///     }
    /// }
    ///
    /// struct Mapper(Atomic<i32>);
    ///
    /// #[vtable]
    /// impl Importer for Mapper {
    ///     const MODELS: ModelSet = ModelSet::REVOCABLE;
    ///
    ///     fn invalidate(&self, kept: Option<&MemoryDesc>) {
    ///         // Unmap what `keep_memory` returned, then return.
    ///         assert_eq!(kept.map(|desc| desc.size()), Some(PAGE_SIZE));
    ///         self.0.add(1, Relaxed);
    ///     }
    /// }
    ///
    /// # let reg = faux::Registration::new(c"rust-dma-buf-revoke", None)?;
    /// # let fdev: &faux::Device<Bound> = reg.as_ref();
    /// # let dev: &Device<Bound> = fdev.as_ref();
    /// let page = Page::alloc_page(GFP_KERNEL)?;
    /// let exported = dma_buf::export(OnePage { page }, (), PAGE_SIZE, 0)?;
    /// let buf = exported.dma_buf();
    /// let attachment = buf.attach(dev, Arc::new(Mapper(Atomic::new(0)), GFP_KERNEL)?)?;
    /// assert_eq!(attachment.keep_memory(&buf.lock())?.size(), PAGE_SIZE);
    ///
    /// exported.revoke();
    /// assert_eq!(attachment.data().0.load(Relaxed), 1);
    /// assert_eq!(attachment.get_memory(&buf.lock()).err(), Some(ENODEV));
    ///
    /// exported.restore()?;
    /// assert_eq!(attachment.keep_memory(&buf.lock())?.size(), PAGE_SIZE);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn revoke(&self) {
        let guard = self.buf.lock();

        // SAFETY: `guard` holds the reservation lock of the buffer.
        unsafe { bindings::dma_buf_revoke(self.buf.as_raw()) };
        guard.wait_idle();
    }

    /// Lets importers get the memory again (`dma_buf_restore()`). Takes the reservation lock.
    ///
    /// Fails with [`ENODEV`] if the buffer belongs to a [`DeviceExports`] whose device was
    /// unbound: its memory is gone.
    ///
    /// [`DeviceExports`]: super::DeviceExports
    pub fn restore(&self) -> Result {
        // Held until the restore is done, so the device cannot unbind in between.
        let _bound = match &self.inner().group {
            Some(group) => Some(group.lock_bound()?),
            None => None,
        };
        let _guard = self.buf.lock();

        // SAFETY: `_guard` holds the reservation lock of the buffer.
        unsafe { bindings::dma_buf_restore(self.buf.as_raw()) };
        Ok(())
    }
}

impl<T: Exporter<Model = Dynamic>> Exported<T> {
    /// Moves the memory: takes the reservation lock, invalidates every importer
    /// (`dma_buf_invalidate_mappings()`), waits for the fences of their work, then calls `f` with
    /// the locked state, which it may change and whose old memory it may free.
    ///
    /// `f` runs under the reservation lock: it must not wait for importers (they may need the
    /// lock to put their descriptions).
    ///
    /// # Examples
    ///
    /// ```
    /// # use kernel::{device::{Bound, Device}, faux, page::{Page, PAGE_SIZE}, prelude::*};
    /// # use kernel::sync::Arc;
    /// use kernel::dma_buf::{self, BuiltMemory, Dynamic, ExportAttachment, Exporter, Importer};
    /// use kernel::dma_buf::{MemoryBuilder, MemoryDesc, ModelSet};
    ///
    /// struct Migrating;
    ///
    /// #[vtable]
    /// impl Exporter for Migrating {
    ///     type Model = Dynamic;
    ///     // The page the buffer is in now.
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
    /// struct Follower;
    ///
    /// #[vtable]
    /// impl Importer for Follower {
    ///     const MODELS: ModelSet = ModelSet::DYNAMIC;
    ///
    ///     fn invalidate(&self, _kept: Option<&MemoryDesc>) {}
    /// }
    ///
    /// # let reg = faux::Registration::new(c"rust-dma-buf-move", None)?;
    /// # let fdev: &faux::Device<Bound> = reg.as_ref();
    /// # let dev: &Device<Bound> = fdev.as_ref();
    /// let exported = dma_buf::export(Migrating, Page::alloc_page(GFP_KERNEL)?, PAGE_SIZE, 0)?;
    /// let buf = exported.dma_buf();
    /// let attachment = buf.attach(dev, Arc::new(Follower, GFP_KERNEL)?)?;
    /// let first = |a: &dma_buf::Attachment<Follower>| -> Result<_> {
    ///     Ok(a.get_memory(&buf.lock())?.chunks()[0].ranges()[0])
    /// };
    ///
    /// let before = first(&attachment)?;
    /// let new = Page::alloc_page(GFP_KERNEL)?;
    /// // The old page is freed after the move: no importer uses it anymore.
    /// drop(exported.move_memory(|page| core::mem::replace(page, new)));
    /// assert_ne!(first(&attachment)?, before);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn move_memory<R>(&self, f: impl FnOnce(&mut T::State) -> R) -> R {
        let guard = self.buf.lock();

        // SAFETY: `guard` holds the reservation lock of the buffer.
        unsafe { bindings::dma_buf_invalidate_mappings(self.buf.as_raw()) };
        guard.wait_idle();

        // SAFETY: `guard` holds the reservation lock, which by the type invariant of `ExportData`
        // protects `state`; every importer was invalidated, so by the C contract none uses what
        // `get_memory` described from the old state, which may now change.
        f(unsafe { &mut *self.inner().state.get() })
    }
}
