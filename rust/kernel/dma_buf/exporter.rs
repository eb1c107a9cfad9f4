// SPDX-License-Identifier: GPL-2.0

//! The exporter side of dma-buf: creating buffers and describing their memory.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)

use super::{
    DmaBuf,
    MemoryBuilder,
    Model, //
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
    sync::aref::ARef,
    types::{
        ForeignOwnable,
        Opaque, //
    }, //
};
use core::{
    marker::PhantomData,
    ptr::{
        self,
        NonNull, //
    },
};

/// An exporter of dma-bufs that describes their physical memory.
///
/// The implementing type is the state of one buffer, created by [`export()`] and dropped when the
/// last reference to the buffer is gone. Importers get the memory through
/// [`Exporter::get_memory`], always with the reservation lock of the buffer held.
///
/// Importers that need a DMA-mapped scatter-gather table, through `dma_buf_map_attachment()`, are
/// served from the same description when the exporter sets [`Exporter::MAP_DMA_BUF`]; otherwise
/// the `map_dma_buf` callback of the buffer fails with [`EOPNOTSUPP`].
///
/// See [`Attachment::get_memory`], [`Exported::revoke`] and [`Exported::move_memory`] for
/// examples.
///
/// [`Attachment::get_memory`]: super::Attachment::get_memory
#[vtable]
pub trait Exporter: Sized + Send + Sync + 'static {
    /// How the memory may change while importers use it; not [`Model::None`].
    ///
    /// This decides which of [`Exported::revoke`], [`Exported::restore`] and
    /// [`Exported::move_memory`] the exporter can use, and which importers can attach.
    const MODEL: Model;

    /// Whether the buffer may hold memory the host CPU cannot access, described with
    /// [`MemoryBuilder::private_cpu_chunk`] or [`MemoryBuilder::private_p2p_chunk`]. Only
    /// importers with [`Importer::ALLOW_PRIVATE`] can attach to such a buffer.
    ///
    /// [`Importer::ALLOW_PRIVATE`]: super::Importer::ALLOW_PRIVATE
    const PRIVATE: bool = false;

    /// Whether importers that call `dma_buf_map_attachment()` get a DMA-mapped scatter-gather
    /// table of the memory that [`Exporter::get_memory`] describes.
    ///
    /// If `false`, the default, their `map_dma_buf` fails with [`EOPNOTSUPP`]. If `true`, the
    /// buffer's `map_dma_buf` calls [`Exporter::get_memory`] for the attachment, with the
    /// reservation lock held, and maps the description for the attached device with
    /// `dma_buf_memory_map()`: CPU chunks as their pages, DMA-mapped with `dma_map_sgtable()`,
    /// or a single PCI MMIO chunk as `dma_buf_phys_vec_to_sgt()` maps it. Any other description,
    /// with private chunks, several MMIO chunks, or CPU and MMIO chunks together, fails with
    /// [`EOPNOTSUPP`], and so does a description of PCI MMIO for an importer without
    /// peer-to-peer, which [`Exporter::get_memory`] must refuse anyway.
    ///
    /// The importer uses the table after the reservation lock is dropped, until it unmaps it.
    /// Therefore:
    ///
    /// - A [`Model::Pinned`] buffer serves every importer. A buffer of another model serves only
    ///   importers that unmap when invalidated ([`ExportAttachment::is_revocable`]); others fail
    ///   with [`EOPNOTSUPP`] from `dma_buf_memory_map()`, because nothing would make them give up
    ///   the memory when it is revoked or moved. A revoked buffer fails with [`ENODEV`] before
    ///   [`Exporter::get_memory`] is called.
    /// - A table counts as one description from the `map_dma_buf` that built it until the
    ///   importer unmaps it: the description itself is released once the table is built, but
    ///   [`Exporter::put_memory`] is only called at `unmap_dma_buf`, or when mapping fails. An
    ///   exporter that counts descriptions there, to wait in a revoke or move until no importer
    ///   uses the old memory, counts the tables too.
    const MAP_DMA_BUF: bool = false;

    /// Describes the memory of the buffer for the importer of `attach`.
    ///
    /// Called with the reservation lock of the buffer held. The description must be in buffer
    /// order and must not be larger than the buffer; the core checks it before any importer sees
    /// it. PCI MMIO may only be described for importers that allow peer-to-peer (see
    /// [`ExportAttachment::peer2peer`]).
    ///
    /// An exporter whose ranges do not change between calls builds them once, as a
    /// [`SharedMemory`], and answers with [`MemoryBuilder::share`].
    ///
    /// With [`Exporter::MAP_DMA_BUF`] it is also called to map the buffer for importers that use
    /// `dma_buf_map_attachment()`, which may be importers that never call
    /// `dma_buf_get_memory()`.
    ///
    /// [`SharedMemory`]: super::SharedMemory
    fn get_memory(&self, attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result;

    /// Called with the reservation lock held when an importer puts a description that
    /// [`Exporter::get_memory`] built or shared, or when the core rejects one; the core drops
    /// the importer's reference to the description afterwards. With [`Exporter::MAP_DMA_BUF`],
    /// also when an importer unmaps a table built from a description, or when building the table
    /// failed.
    ///
    /// An exporter that holds something per description, for instance a reference that keeps a
    /// revoke waiting until every importer has stopped using the ranges (as vfio-pci does),
    /// releases it here.
    fn put_memory(&self, _attach: &ExportAttachment) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when a device attaches to the buffer; an error refuses the attachment.
    ///
    /// Called without the reservation lock held.
    fn attach(&self, _attach: &ExportAttachment) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when a device detaches from the buffer.
    ///
    /// Called without the reservation lock held.
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
    /// Exporters with a model other than [`Model::Pinned`] may refuse importers for which this is
    /// false in [`Exporter::attach`].
    #[inline]
    pub fn is_revocable(&self) -> bool {
        // SAFETY: By the type invariant the attachment is valid.
        unsafe { bindings::dma_buf_attach_revocable(self.as_raw()) }
    }
}

/// The `struct dma_buf_ops` of an exporter type.
struct ExporterVTable<T: Exporter>(PhantomData<T>);

impl<T: Exporter> ExporterVTable<T> {
    /// Returns the state of a buffer.
    ///
    /// # Safety
    ///
    /// `buf` must be a buffer created by [`export()`] for `T`, whose release does not happen
    /// during `'a`.
    unsafe fn data<'a>(buf: *mut bindings::dma_buf) -> &'a T {
        // SAFETY: By the safety requirements `priv` is the `Pin<KBox<T>>` that `export` converted
        // with `into_foreign()`, and it is only converted back in `release`.
        unsafe { <Pin<KBox<T>> as ForeignOwnable>::borrow((*buf).priv_) }.get_ref()
    }

    /// # Safety
    ///
    /// `buf` must be a buffer created by [`export()`] for `T`, and `attach` a valid attachment
    /// being attached to it.
    unsafe extern "C" fn attach(
        buf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) -> c_int {
        // SAFETY: The buffer is not released while a device attaches to it.
        let data = unsafe { Self::data(buf) };
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };

        match T::attach(data, attach) {
            Ok(()) => 0,
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `buf` must be a buffer created by [`export()`] for `T`, and `attach` a valid attachment
    /// being detached from it.
    unsafe extern "C" fn detach(
        buf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) {
        // SAFETY: The buffer is not released while a device detaches from it.
        let data = unsafe { Self::data(buf) };
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };

        T::detach(data, attach);
    }

    /// # Safety
    ///
    /// `attach` must be a valid attachment of a buffer created by [`export()`] for `T`, and `mem`
    /// valid for writes.
    unsafe extern "C" fn get_memory(
        attach: *mut bindings::dma_buf_attachment,
        mem: *mut *mut bindings::dma_buf_memory,
    ) -> c_int {
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };
        // SAFETY: The buffer of an attachment is not released while the attachment exists.
        let data = unsafe { Self::data(attach.dma_buf().as_raw()) };

        // On error, dropping the builder frees whatever was built, or drops the shared reference.
        let mut builder = MemoryBuilder::new();
        match T::get_memory(data, attach, &mut builder).and_then(|()| builder.take()) {
            Ok(desc) => {
                // SAFETY: `mem` is valid for writes; the core owns the builder's reference to the
                // description from now on.
                unsafe { *mem = desc.as_ptr() };
                0
            }
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `attach` must be a valid attachment of a buffer created by [`export()`] for `T`, and `mem`
    /// a description that `get_memory` returned for it, which the core hands back once, with the
    /// reservation lock held.
    unsafe extern "C" fn put_memory(
        attach: *mut bindings::dma_buf_attachment,
        mem: *mut bindings::dma_buf_memory,
    ) {
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };
        // SAFETY: The buffer of an attachment is not released while the attachment exists.
        let data = unsafe { Self::data(attach.dma_buf().as_raw()) };

        T::put_memory(data, attach);

        // SAFETY: `mem` is the reference that `get_memory` handed to the core, to a description
        // it built or to a `SharedMemory`'s, and the core hands it back exactly once: this
        // importer no longer uses it. Dropping it frees the description unless it is shared.
        unsafe { bindings::dma_buf_memory_free(mem) };
    }

    /// Maps the memory that [`Exporter::get_memory`] describes for the device of `attach`.
    ///
    /// On success the caller owes one [`Exporter::put_memory`], at unmap; on failure nothing is
    /// owed.
    ///
    /// # Safety
    ///
    /// The reservation lock of the buffer of `attach` must be held.
    unsafe fn map(
        data: &T,
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

        // On error, dropping the builder frees whatever was built, or drops the shared reference.
        let mut builder = MemoryBuilder::new();
        T::get_memory(data, attach, &mut builder)?;
        let mem = builder.built()?;

        // SAFETY: `attach` is valid, by the safety requirements its reservation lock is held, and
        // `builder` holds a reference to `mem`. `dma_buf_memory_map()` only reads it, but for
        // sealing it as `dma_buf_get_memory()` does when the builder allocated it, and then no
        // one else references it yet; a `SharedMemory`'s description is sealed already.
        let sgt = from_err_ptr(unsafe {
            bindings::dma_buf_memory_map(attach.as_raw(), mem.as_ptr(), dir)
        })
        .and_then(|sgt| NonNull::new(sgt).ok_or(ENOMEM));

        // The table does not refer to the description, whose reference `builder` drops when
        // dropped; a failure releases the description like the core releases one it rejects.
        if sgt.is_err() && T::HAS_PUT_MEMORY {
            T::put_memory(data, attach);
        }
        sgt
    }

    /// # Safety
    ///
    /// `attach` must be a valid attachment of a buffer created by [`export()`] for `T`, whose
    /// reservation lock is held.
    unsafe extern "C" fn map_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        dir: bindings::dma_data_direction,
    ) -> *mut bindings::sg_table {
        if !T::MAP_DMA_BUF {
            return EOPNOTSUPP.to_ptr();
        }

        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExportAttachment::from_raw(attach) };
        // SAFETY: The buffer of an attachment is not released while the attachment exists.
        let data = unsafe { Self::data(attach.dma_buf().as_raw()) };

        // SAFETY: By the safety requirements the reservation lock is held.
        match unsafe { Self::map(data, attach, dir) } {
            Ok(sgt) => sgt.as_ptr(),
            Err(err) => err.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// `attach` must be a valid attachment of a buffer created by [`export()`] for `T`, whose
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
        let data = unsafe { Self::data(attach.dma_buf().as_raw()) };

        // SAFETY: `sgt` was returned by `dma_buf_memory_map()` for `attach` in `map_dma_buf` and
        // is handed back once, and the reservation lock is held.
        unsafe { bindings::dma_buf_memory_unmap(attach.as_raw(), sgt, dir) };

        // The table counted as a description until now.
        if T::HAS_PUT_MEMORY {
            T::put_memory(data, attach);
        }
    }

    /// # Safety
    ///
    /// `buf` must be a buffer created by [`export()`] for `T` whose last reference was dropped.
    unsafe extern "C" fn release(buf: *mut bindings::dma_buf) {
        // SAFETY: By the safety requirements `priv` is the `Pin<KBox<T>>` that `export` converted
        // with `into_foreign()`, and nothing uses it anymore.
        drop(unsafe { <Pin<KBox<T>> as ForeignOwnable>::from_foreign((*buf).priv_) });
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

/// Exports a buffer of `size` bytes with `data` as its exporter state.
///
/// `flags` are the file flags of the buffer, such as [`O_RDWR`]. The buffer holds a reference on
/// the module that implements `T` until it is released.
///
/// [`O_RDWR`]: crate::fs::file::flags::O_RDWR
pub fn export<T: Exporter, E>(
    data: impl PinInit<T, E>,
    size: usize,
    flags: u32,
) -> Result<Exported<T>>
where
    Error: From<E>,
{
    const_assert!(
        !matches!(T::MODEL, Model::None),
        "an exporter must declare the model of its memory"
    );

    let flags = c_int::try_from(flags).map_err(|_| EINVAL)?;
    let data = KBox::pin_init(data, GFP_KERNEL)?.into_foreign();

    let info = bindings::dma_buf_export_info {
        exp_name: <T::OwnerModule as ModuleMetadata>::NAME.as_char_ptr(),
        owner: this_module::<T::OwnerModule>().as_ptr(),
        ops: ExporterVTable::<T>::build(),
        size,
        flags,
        resv: ptr::null_mut(),
        priv_: data,
        memory_model: T::MODEL.as_raw(),
        memory_private: T::PRIVATE,
    };

    // SAFETY: `info` is valid: the name is a `'static` C string, the ops are a `'static` table
    // with all mandatory callbacks, and `priv` is the exporter state the callbacks expect.
    let buf = from_err_ptr(unsafe { bindings::dma_buf_export(&info) })
        .and_then(|buf| NonNull::new(buf.cast::<DmaBuf>()).ok_or(EINVAL));
    let buf = match buf {
        Ok(buf) => buf,
        Err(err) => {
            // SAFETY: The export failed, so the core did not keep `data`, which came from
            // `into_foreign()` above.
            drop(unsafe { <Pin<KBox<T>> as ForeignOwnable>::from_foreign(data) });
            return Err(err);
        }
    };

    // INVARIANT: The buffer was just exported with the ops of `T` and `data` as its state.
    Ok(Exported {
        // SAFETY: `dma_buf_export()` returned the buffer with one reference, on its file, which
        // the `ARef` takes over.
        buf: unsafe { ARef::from_raw(buf) },
        _p: PhantomData,
    })
}

/// A reference to a buffer exported by [`export()`], giving access to the exporter's side.
///
/// # Invariants
///
/// `buf` was created by [`export()`] for `T`: its ops are those of `ExporterVTable<T>` and its
/// `priv` is the `Pin<KBox<T>>` that `export` converted with `into_foreign()`.
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

    /// Returns a reference to the buffer, for example to install it as a file descriptor with
    /// [`DmaBuf::into_fd`].
    #[inline]
    pub fn into_dma_buf(self) -> ARef<DmaBuf> {
        self.buf
    }

    /// Returns the exporter state of the buffer.
    #[inline]
    pub fn data(&self) -> &T {
        // SAFETY: By the type invariant the buffer was created by `export` for `T`, and it is not
        // released while `self` holds a reference to it.
        unsafe { ExporterVTable::<T>::data(self.buf.as_raw()) }
    }

    /// Revokes the importers' access to the memory of a [`Model::Revocable`] buffer.
    ///
    /// Marks the buffer revoked, invalidates every importer and waits for the fences of their
    /// outstanding work; afterwards no importer uses the memory, and getting it fails with
    /// [`ENODEV`] until [`Exported::restore`]. Takes the reservation lock.
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
    ///     sync::{
    ///         atomic::{
    ///             Atomic,
    ///             Relaxed, //
    ///         },
    ///         Arc, //
    ///     }, //
    /// };
    ///
    /// struct Revocable {
    ///     page: Page,
    /// }
    ///
    /// #[vtable]
    /// impl Exporter for Revocable {
    ///     const MODEL: Model = Model::Revocable;
    ///
    ///     fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
    ///         mem.alloc(1, 1, GFP_KERNEL)?;
    ///         mem.cpu_chunk()?;
    ///         mem.page(&self.page)
    ///     }
    /// }
    ///
    /// struct Mapper {
    ///     invalidated: Atomic<i32>,
    /// }
    ///
    /// impl Importer for Mapper {
    ///     const MODELS: ModelSet = ModelSet::REVOCABLE;
    ///
    ///     fn invalidate(&self) {
    ///         self.invalidated.add(1, Relaxed);
    ///     }
    /// }
    ///
    /// let reg = faux::Registration::new(c"rust-dma-buf-revoke", None)?;
    /// let fdev: &faux::Device<Bound> = reg.as_ref();
    /// let dev: &Device<Bound> = fdev.as_ref();
    ///
    /// let page = Page::alloc_page(GFP_KERNEL)?;
    /// let exported = dma_buf::export(Revocable { page }, PAGE_SIZE, 0)?;
    /// let buf = exported.dma_buf();
    /// let mapper = Arc::new(Mapper { invalidated: Atomic::new(0) }, GFP_KERNEL)?;
    /// let attachment = buf.attach(dev, mapper)?;
    ///
    /// // The importer maps the memory and keeps it after unlocking.
    /// {
    ///     let guard = buf.lock();
    ///     assert_eq!(attachment.map_memory(&guard)?.size(), PAGE_SIZE);
    /// }
    ///
    /// // Revoking invalidates the importer and puts the memory it kept.
    /// exported.revoke();
    /// assert_eq!(attachment.data().invalidated.load(Relaxed), 1);
    /// assert!(buf.lock().is_revoked());
    /// {
    ///     let guard = buf.lock();
    ///     assert_eq!(attachment.get_memory(&guard).err(), Some(ENODEV));
    ///     assert_eq!(attachment.map_memory(&guard).err(), Some(ENODEV));
    /// }
    ///
    /// // After a restore the importer maps the memory again.
    /// exported.restore();
    /// assert!(!buf.lock().is_revoked());
    /// {
    ///     let guard = buf.lock();
    ///     assert_eq!(attachment.map_memory(&guard)?.size(), PAGE_SIZE);
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn revoke(&self) {
        const_assert!(
            matches!(T::MODEL, Model::Revocable),
            "only a revocable exporter can revoke"
        );

        let guard = self.buf.lock();

        // SAFETY: `guard` holds the reservation lock of the buffer.
        unsafe { bindings::dma_buf_revoke(self.buf.as_raw()) };
        guard.wait_idle();
    }

    /// Lets importers get the memory of a revoked [`Model::Revocable`] buffer again.
    ///
    /// Takes the reservation lock.
    pub fn restore(&self) {
        const_assert!(
            matches!(T::MODEL, Model::Revocable),
            "only a revocable exporter can restore"
        );

        let _guard = self.buf.lock();

        // SAFETY: `_guard` holds the reservation lock of the buffer.
        unsafe { bindings::dma_buf_restore(self.buf.as_raw()) };
    }

    /// Moves the memory of a [`Model::Dynamic`] buffer.
    ///
    /// Takes the reservation lock, invalidates every importer and waits for the fences of their
    /// outstanding work, then calls `f` to update the exporter state, still under the lock: `f`
    /// may free the old memory, and the next [`Exporter::get_memory`] describes the new one.
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
    ///         Attachment,
    ///         ExportAttachment,
    ///         Exporter,
    ///         Importer,
    ///         MemoryBuilder,
    ///         Model,
    ///         ModelSet,
    ///         PhysVec, //
    ///     },
    ///     faux,
    ///     page::{
    ///         Page,
    ///         PAGE_SIZE, //
    ///     },
    ///     prelude::*,
    ///     sync::{
    ///         atomic::{
    ///             Atomic,
    ///             Relaxed, //
    ///         },
    ///         Arc, //
    ///     }, //
    /// };
    ///
    /// // Migrates its one page of memory to a second page.
    /// struct Migrating {
    ///     pages: [Page; 2],
    ///     moved: Atomic<bool>,
    /// }
    ///
    /// #[vtable]
    /// impl Exporter for Migrating {
    ///     const MODEL: Model = Model::Dynamic;
    ///
    ///     fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
    ///         let page = &self.pages[usize::from(self.moved.load(Relaxed))];
    ///
    ///         mem.alloc(1, 1, GFP_KERNEL)?;
    ///         mem.cpu_chunk()?;
    ///         mem.page(page)
    ///     }
    /// }
    ///
    /// struct Follower {
    ///     invalidated: Atomic<i32>,
    /// }
    ///
    /// impl Importer for Follower {
    ///     const MODELS: ModelSet = ModelSet::DYNAMIC;
    ///
    ///     fn invalidate(&self) {
    ///         self.invalidated.add(1, Relaxed);
    ///     }
    /// }
    ///
    /// fn first_range(attachment: &Attachment<Follower>) -> Result<PhysVec> {
    ///     let guard = attachment.dma_buf().lock();
    ///     let mem = attachment.get_memory(&guard)?;
    ///     let range = mem.chunks()[0].ranges()[0];
    ///     Ok(range)
    /// }
    ///
    /// let reg = faux::Registration::new(c"rust-dma-buf-move", None)?;
    /// let fdev: &faux::Device<Bound> = reg.as_ref();
    /// let dev: &Device<Bound> = fdev.as_ref();
    ///
    /// let pages = [Page::alloc_page(GFP_KERNEL)?, Page::alloc_page(GFP_KERNEL)?];
    /// let migrating = Migrating {
    ///     pages,
    ///     moved: Atomic::new(false),
    /// };
    /// let exported = dma_buf::export(migrating, PAGE_SIZE, 0)?;
    /// let follower = Arc::new(Follower { invalidated: Atomic::new(0) }, GFP_KERNEL)?;
    /// let attachment = exported.dma_buf().attach(dev, follower)?;
    ///
    /// let before = first_range(&attachment)?;
    /// exported.move_memory(|state| state.moved.store(true, Relaxed));
    /// assert_eq!(attachment.data().invalidated.load(Relaxed), 1);
    ///
    /// let after = first_range(&attachment)?;
    /// assert_eq!(after.len, before.len);
    /// assert_ne!(after.paddr, before.paddr);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn move_memory<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        const_assert!(
            matches!(T::MODEL, Model::Dynamic),
            "only a dynamic exporter can move its memory"
        );

        let guard = self.buf.lock();

        // SAFETY: `guard` holds the reservation lock of the buffer.
        unsafe { bindings::dma_buf_invalidate_mappings(self.buf.as_raw()) };
        guard.wait_idle();

        f(self.data())
    }
}
