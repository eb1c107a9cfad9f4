// SPDX-License-Identifier: GPL-2.0

//! DMA buffer sharing (dma-buf), with the physical memory description of a buffer.
//!
//! The semantics (memory models, locking, what a description may hold) are those of the C API
//! and are documented once, in its kernel-doc; this module adds the Rust types that make them
//! hold in safe code:
//!
//! - [`DmaBuf`] is a reference counted dma-buf, [`ResvGuard`] holds its reservation lock.
//! - Importers implement [`Importer`] and attach with [`DmaBuf::attach`]. A [`Memory`] borrows
//!   the [`ResvGuard`] it was got under: the *description* cannot outlive the lock. The addresses
//!   in it are plain numbers ([`PhysVec`] is `Copy`): what keeps them valid after the lock is
//!   dropped is the importer's contract, not the borrow; importers that keep them use
//!   [`Attachment::keep_memory`] and get the kept description back in [`Importer::invalidate`].
//! - Exporters implement [`Exporter`], whose `get_memory` returns the [`BuiltMemory`] of the
//!   [`MemoryBuilder`] it is given, and create a buffer with [`export()`], or with a
//!   [`DeviceExports`] when the memory belongs to a bound device (see [`P2pBar`] for PCI BARs).
//!   The memory model is a type ([`Pinned`], [`Revocable`], [`Dynamic`]): only revocable exports
//!   have [`Exported::revoke`], only dynamic ones [`Exported::move_memory`].
//!
//! C headers: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h),
//! [`include/linux/dma-buf-memory.h`](srctree/include/linux/dma-buf-memory.h) and
//! [`include/linux/dma-resv.h`](srctree/include/linux/dma-resv.h).
//!
//! Reference: <https://docs.kernel.org/driver-api/dma-buf.html>

use crate::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    fs::File,
    prelude::*,
    sync::aref::{
        ARef,
        AlwaysRefCounted, //
    },
    task::MAX_SCHEDULE_TIMEOUT,
    types::{
        NotThreadSafe,
        Opaque, //
    }, //
};
use core::ptr::{
    self,
    NonNull, //
};

mod bound;
mod exporter;
mod importer;
mod memory;

pub use bound::DeviceExports;
#[cfg(all(CONFIG_PCI, CONFIG_PCI_P2PDMA))]
pub use bound::{
    P2pBar,
    P2pBuffer, //
};
pub use exporter::{
    export,
    ExportAttachment,
    Exported,
    Exporter, //
};
#[doc(hidden)]
pub use importer::module_refcount;
pub use importer::{
    Attachment,
    Importer, //
};
pub use memory::{
    BuiltMemory,
    Chunk,
    ChunkKind,
    Memory,
    MemoryBuilder,
    MemoryDesc,
    MemoryDraft,
    P2pProvider,
    PhysVec,
    SharedMemory, //
};

/// How the memory of a dma-buf may change while importers use it (`enum dma_buf_memory_model`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Model {
    /// `DMA_BUF_MODEL_PINNED`.
    Pinned = bindings::dma_buf_memory_model_DMA_BUF_MODEL_PINNED,
    /// `DMA_BUF_MODEL_REVOCABLE`.
    Revocable = bindings::dma_buf_memory_model_DMA_BUF_MODEL_REVOCABLE,
    /// `DMA_BUF_MODEL_DYNAMIC`.
    Dynamic = bindings::dma_buf_memory_model_DMA_BUF_MODEL_DYNAMIC,
}

impl Model {
    /// Converts a C `enum dma_buf_memory_model`; [`None`] for `DMA_BUF_MODEL_NONE` and values
    /// this module does not know.
    fn from_raw(model: bindings::dma_buf_memory_model) -> Option<Self> {
        match model {
            bindings::dma_buf_memory_model_DMA_BUF_MODEL_PINNED => Some(Self::Pinned),
            bindings::dma_buf_memory_model_DMA_BUF_MODEL_REVOCABLE => Some(Self::Revocable),
            bindings::dma_buf_memory_model_DMA_BUF_MODEL_DYNAMIC => Some(Self::Dynamic),
            _ => None,
        }
    }

    /// Returns the C `enum dma_buf_memory_model` value of this model.
    const fn as_raw(self) -> bindings::dma_buf_memory_model {
        self as bindings::dma_buf_memory_model
    }
}

mod private {
    pub trait Sealed {}
}

/// The memory model of an [`Exporter`], as a type: [`Pinned`], [`Revocable`] or [`Dynamic`].
///
/// Which operations an [`Exported`] handle has depends on it: [`Exported::revoke`] and
/// [`Exported::restore`] exist only for [`Revocable`], [`Exported::move_memory`] only for
/// [`Dynamic`].
pub trait MemoryModel: private::Sealed + Send + Sync + 'static {
    /// The model's C value.
    const MODEL: Model;
}

/// The memory never moves and is never revoked while the dma-buf exists.
pub enum Pinned {}

/// The memory does not move, but the exporter may revoke it and restore it.
pub enum Revocable {}

/// The exporter may move the memory, after invalidating every importer.
pub enum Dynamic {}

impl private::Sealed for Pinned {}
impl private::Sealed for Revocable {}
impl private::Sealed for Dynamic {}

impl MemoryModel for Pinned {
    const MODEL: Model = Model::Pinned;
}

impl MemoryModel for Revocable {
    const MODEL: Model = Model::Revocable;
}

impl MemoryModel for Dynamic {
    const MODEL: Model = Model::Dynamic;
}

/// A set of [`Model`]s, as accepted by an importer (`DMA_BUF_ACCEPT_*`).
///
/// ```
/// use kernel::dma_buf::{Model, ModelSet};
///
/// const MODELS: ModelSet = ModelSet::PINNED.union(ModelSet::REVOCABLE);
///
/// assert!(MODELS.contains(Model::Revocable));
/// assert!(!MODELS.contains(Model::Dynamic));
/// assert_eq!(MODELS | ModelSet::DYNAMIC, ModelSet::ALL);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ModelSet(u32);

impl ModelSet {
    /// No model.
    pub const EMPTY: Self = Self(0);

    /// [`Model::Pinned`].
    pub const PINNED: Self = Self(bindings::DMA_BUF_ACCEPT_PINNED);

    /// [`Model::Revocable`].
    pub const REVOCABLE: Self = Self(bindings::DMA_BUF_ACCEPT_REVOCABLE);

    /// [`Model::Dynamic`].
    pub const DYNAMIC: Self = Self(bindings::DMA_BUF_ACCEPT_DYNAMIC);

    /// Every model.
    pub const ALL: Self = Self::PINNED.union(Self::REVOCABLE).union(Self::DYNAMIC);

    /// Returns the set of both `self` and `other`.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Returns whether `model` is in the set.
    pub const fn contains(self, model: Model) -> bool {
        self.0 & (1 << model.as_raw()) != 0
    }

    /// Returns whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Returns the `DMA_BUF_ACCEPT_*` bits of the set.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl core::ops::BitOr for ModelSet {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl From<Model> for ModelSet {
    fn from(model: Model) -> Self {
        Self(1 << model.as_raw())
    }
}

/// A dma-buf.
///
/// Dma-bufs are reference counted through their file: an [`ARef<DmaBuf>`] owns a reference, and a
/// `&DmaBuf` borrows one.
///
/// # Invariants
///
/// A [`DmaBuf`] is a valid `struct dma_buf` created by `dma_buf_export()` whose file reference
/// count is non-zero for the lifetime of the [`DmaBuf`] reference.
#[repr(transparent)]
pub struct DmaBuf(Opaque<bindings::dma_buf>);

// SAFETY: A `struct dma_buf` is not tied to the thread that created it, and its last reference may
// be dropped on any thread.
unsafe impl Send for DmaBuf {}

// SAFETY: The methods of `DmaBuf` taking `&self` either read fields that are invariant over the
// lifetime of the buffer, or call C functions that do their own locking.
unsafe impl Sync for DmaBuf {}

// SAFETY: The reference count of a dma-buf is that of its file: `get_dma_buf()` increments it,
// `dma_buf_put()` decrements it, and the buffer is freed only when it reaches zero.
unsafe impl AlwaysRefCounted for DmaBuf {
    #[inline]
    fn inc_ref(&self) {
        // SAFETY: The existence of a shared reference means that the reference count is non-zero.
        unsafe { bindings::get_dma_buf(self.as_raw()) };
    }

    #[inline]
    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The safety requirements guarantee that the reference count is non-zero.
        unsafe { bindings::dma_buf_put(obj.cast().as_ptr()) };
    }
}

impl DmaBuf {
    /// Creates a reference to a [`DmaBuf`] from a valid pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct dma_buf` whose reference count stays non-zero for the
    /// lifetime `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::dma_buf) -> &'a Self {
        // SAFETY: `DmaBuf` is a transparent wrapper of `struct dma_buf`, and the caller guarantees
        // that `ptr` stays valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct dma_buf` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::dma_buf {
        self.0.get()
    }

    /// Gets the dma-buf behind the file descriptor `fd` of the current task.
    ///
    /// Fails with [`EBADF`] if `fd` is not an open file descriptor and with [`EINVAL`] if it is
    /// not a dma-buf.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::dma_buf::DmaBuf;
    ///
    /// assert_eq!(DmaBuf::from_fd(u32::MAX).err(), Some(EBADF));
    /// ```
    pub fn from_fd(fd: u32) -> Result<ARef<Self>> {
        let fd = c_int::try_from(fd).map_err(|_| EBADF)?;

        // SAFETY: `dma_buf_get()` accepts any file descriptor number; on success it returns a
        // dma-buf with a new reference on its file.
        let ptr = from_err_ptr(unsafe { bindings::dma_buf_get(fd) })?;
        let ptr = NonNull::new(ptr.cast::<Self>()).ok_or(EINVAL)?;

        // SAFETY: `dma_buf_get()` took the reference that the `ARef` now owns.
        Ok(unsafe { ARef::from_raw(ptr) })
    }

    /// Turns the reference into one on the buffer's file, to install it with
    /// [`FileDescriptorReservation::fd_install`].
    ///
    /// A dma-buf's reference count is its file's, so this moves the same reference.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kernel::{dma_buf::DmaBuf, fs::file::{flags::O_CLOEXEC, FileDescriptorReservation}};
    /// # use kernel::{prelude::*, sync::aref::ARef};
    /// fn install(buf: ARef<DmaBuf>) -> Result<u32> {
    ///     let reservation = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    ///     let fd = reservation.reserved_fd();
    ///     // Anything that can fail (`copy_to_user()` of `fd`) goes here, before the install.
    ///     reservation.fd_install(DmaBuf::into_file(buf));
    ///     Ok(fd)
    /// }
    /// ```
    ///
    /// [`FileDescriptorReservation::fd_install`]:
    ///     crate::fs::file::FileDescriptorReservation::fd_install
    pub fn into_file(this: ARef<Self>) -> ARef<File> {
        // SAFETY: By the type invariant the buffer is valid; `file` is set at export and never
        // changes.
        let file = unsafe { (*this.as_raw()).file };
        // The reference `this` owned is the file's.
        let _ = ARef::into_raw(this);

        // SAFETY: `file` is the valid file of the buffer, and the reference `this` owned on it
        // now belongs to the `ARef`. `fdget_pos()` only elides `f_pos_lock` for files with
        // `FMODE_ATOMIC_POS`, which `alloc_file_pseudo()` does not set on dma-buf files, so no
        // call relies on the file being unshared: `File`'s invariant holds.
        unsafe { ARef::from_raw(NonNull::from(File::from_raw_file(file))) }
    }

    /// Returns the size of the buffer in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        // SAFETY: By the type invariant `self.as_raw()` is valid, and `size` is invariant over the
        // lifetime of the buffer.
        unsafe { (*self.as_raw()).size }
    }

    /// Returns the memory model the exporter declared, [`None`] if it describes no memory.
    pub fn model(&self) -> Option<Model> {
        // SAFETY: By the type invariant `self.as_raw()` is valid.
        Model::from_raw(unsafe { bindings::dma_buf_model(self.as_raw()) })
    }

    /// Returns the reservation object of the buffer.
    #[inline]
    fn resv(&self) -> *mut bindings::dma_resv {
        // SAFETY: By the type invariant `self.as_raw()` is valid, and `resv` is set at export and
        // never changes.
        unsafe { (*self.as_raw()).resv }
    }

    /// Takes the reservation lock of the buffer.
    ///
    /// The lock is a `ww_mutex` taken without an acquire context: it must not already be held by
    /// the current task, and it must not be held while calling functions that take it
    /// themselves, such as [`DmaBuf::attach`], dropping an [`Attachment`], or the revoke, restore
    /// and move operations of [`Exported`].
    pub fn lock(&self) -> ResvGuard<'_> {
        // SAFETY: The reservation object is valid for the lifetime of the buffer. Without an
        // acquire context `dma_resv_lock()` cannot fail.
        unsafe { bindings::dma_resv_lock(self.resv(), ptr::null_mut()) };

        // INVARIANT: We just took the lock.
        ResvGuard {
            buf: self,
            _not_send: NotThreadSafe,
        }
    }

    /// Takes the reservation lock of the buffer, or fails with [`EINTR`] if a signal arrives
    /// first.
    ///
    /// The same rules as for [`DmaBuf::lock`] apply.
    pub fn lock_interruptible(&self) -> Result<ResvGuard<'_>> {
        // SAFETY: The reservation object is valid for the lifetime of the buffer.
        to_result(unsafe { bindings::dma_resv_lock_interruptible(self.resv(), ptr::null_mut()) })?;

        // INVARIANT: We just took the lock.
        Ok(ResvGuard {
            buf: self,
            _not_send: NotThreadSafe,
        })
    }
}

/// A held reservation lock of a [`DmaBuf`].
///
/// The lock is released when the guard is dropped. A [`Memory`] borrows the guard: the
/// description it holds cannot outlive the lock.
///
/// # Invariants
///
/// The current task holds the lock of `self.buf`'s reservation object.
#[must_use = "the reservation lock unlocks immediately when the guard is unused"]
pub struct ResvGuard<'a> {
    buf: &'a DmaBuf,
    _not_send: NotThreadSafe,
}

impl<'a> ResvGuard<'a> {
    /// Returns the buffer whose reservation lock is held.
    #[inline]
    pub fn dma_buf(&self) -> &'a DmaBuf {
        self.buf
    }

    /// Returns whether the guard holds the reservation lock of `buf`.
    ///
    /// Several dma-bufs may share one reservation object, so this compares reservation objects
    /// rather than buffers.
    #[inline]
    pub fn holds(&self, buf: &DmaBuf) -> bool {
        ptr::eq(self.buf.resv(), buf.resv())
    }

    /// Returns whether the exporter revoked the buffer.
    pub fn is_revoked(&self) -> bool {
        // SAFETY: The buffer is valid, and by the type invariant its reservation lock is held.
        unsafe { bindings::dma_buf_is_revoked(self.buf.as_raw()) }
    }

    /// Waits until every fence of the reservation object, of all usages, has signalled.
    ///
    /// This is how exporters wait for importers' outstanding work after invalidating them.
    fn wait_idle(&self) {
        // CAST: `MAX_SCHEDULE_TIMEOUT` is `LONG_MAX`, which fits in an `unsigned long`.
        let timeout = MAX_SCHEDULE_TIMEOUT as c_ulong;

        // SAFETY: The reservation object is valid while the buffer is. An uninterruptible wait
        // without a timeout only returns once all fences signalled, so the result is not needed.
        unsafe {
            bindings::dma_resv_wait_timeout(
                self.buf.resv(),
                bindings::dma_resv_usage_DMA_RESV_USAGE_BOOKKEEP,
                false,
                timeout,
            )
        };
    }
}

impl Drop for ResvGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant the current task holds the lock.
        unsafe { bindings::dma_resv_unlock(self.buf.resv()) };
    }
}
