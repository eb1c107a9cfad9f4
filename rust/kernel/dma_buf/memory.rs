// SPDX-License-Identifier: GPL-2.0

//! The physical memory description of a dma-buf.
//!
//! C header: [`include/linux/dma-buf-memory.h`](srctree/include/linux/dma-buf-memory.h)

use crate::{
    alloc::Flags,
    bindings,
    device::Device,
    error::to_result,
    io::PhysAddr,
    page::{
        BorrowedPage,
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    types::Opaque, //
};
use core::{
    marker::PhantomData,
    mem::offset_of,
    ops::Deref,
    ptr::{
        self,
        NonNull, //
    },
    slice, //
};

/// A range of physical memory: `len` bytes at CPU physical address `paddr`.
///
/// The Rust view of a C `struct phys_vec`. In a [`Memory`], `paddr` and `len` are page aligned
/// and `len` is not zero. It is a copy of two numbers: nothing ties a copy to the description it
/// came from, so using one after the description is put is the importer's contract to keep.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PhysVec {
    /// CPU physical address of the first byte.
    pub paddr: PhysAddr,
    /// Length in bytes.
    pub len: usize,
}

// `Chunk::ranges` views a C array of `struct phys_vec` as a slice of `PhysVec`.
static_assert!(size_of::<PhysVec>() == size_of::<bindings::phys_vec>());
static_assert!(align_of::<PhysVec>() == align_of::<bindings::phys_vec>());
static_assert!(offset_of!(PhysVec, paddr) == offset_of!(bindings::phys_vec, paddr));
static_assert!(offset_of!(PhysVec, len) == offset_of!(bindings::phys_vec, len));

/// The provider of PCI peer-to-peer memory: one BAR of a PCI device.
///
/// Importers compare providers by address ([`PartialEq`]) and use [`P2pProvider::owner`] to
/// decide whether they can reach the memory.
///
/// # Invariants
///
/// A [`P2pProvider`] is a valid `struct p2pdma_provider` for the lifetime of the reference to it.
#[repr(transparent)]
pub struct P2pProvider(Opaque<bindings::p2pdma_provider>);

// SAFETY: A `struct p2pdma_provider` is not modified after its device set it up, so it may be
// referenced from any thread.
unsafe impl Sync for P2pProvider {}

impl P2pProvider {
    /// Creates a reference to a [`P2pProvider`] from a valid pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct p2pdma_provider` that stays valid for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::p2pdma_provider) -> &'a Self {
        // SAFETY: `P2pProvider` is a transparent wrapper of `struct p2pdma_provider`, and the
        // caller guarantees that `ptr` stays valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct p2pdma_provider` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::p2pdma_provider {
        self.0.get()
    }

    /// Returns the PCI device whose BAR this provider describes.
    #[inline]
    pub fn owner(&self) -> &Device {
        // SAFETY: By the type invariant `self.as_raw()` is valid, and `owner` is the device the
        // provider belongs to, which outlives it.
        unsafe { Device::from_raw((*self.as_raw()).owner) }
    }

    /// Returns the offset of bus addresses from CPU physical addresses of this BAR.
    #[inline]
    pub fn bus_offset(&self) -> u64 {
        // SAFETY: By the type invariant `self.as_raw()` is valid.
        unsafe { (*self.as_raw()).bus_offset }
    }
}

impl PartialEq for P2pProvider {
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.as_raw(), other.as_raw())
    }
}

impl Eq for P2pProvider {}

impl core::fmt::Debug for P2pProvider {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "P2pProvider({:p})", self.as_raw())
    }
}

/// The kind of memory a [`Chunk`] describes (`enum dma_buf_chunk_kind`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ChunkKind<'a> {
    /// System memory with `struct page`s.
    Cpu,
    /// PCI MMIO of a BAR, without `struct page`s.
    P2pMmio(&'a P2pProvider),
}

/// Physical ranges sharing one kind of memory and one provider.
///
/// # Invariants
///
/// The chunk was validated by `dma_buf_get_memory()` and is part of a [`Memory`] that outlives
/// the reference to it: `kind` and `flags` are known values, `provider` is a valid provider if
/// and only if the chunk is PCI MMIO, and `ranges` points to `nr_ranges` valid `struct phys_vec`.
#[repr(transparent)]
pub struct Chunk(bindings::dma_buf_chunk);

impl Chunk {
    /// Returns the kind of memory of the chunk, with the provider of PCI MMIO.
    pub fn kind(&self) -> ChunkKind<'_> {
        let Some(provider) = NonNull::new(self.0.provider) else {
            return ChunkKind::Cpu;
        };

        // SAFETY: By the type invariant a chunk has a provider if and only if it is PCI MMIO, and
        // the provider is valid while the chunk is.
        ChunkKind::P2pMmio(unsafe { P2pProvider::from_raw(provider.as_ptr()) })
    }

    /// Returns whether the memory is private: not accessible to the host CPU.
    ///
    /// Only importers with [`Importer::ALLOW_PRIVATE`] see private chunks.
    ///
    /// [`Importer::ALLOW_PRIVATE`]: super::Importer::ALLOW_PRIVATE
    pub fn is_private(&self) -> bool {
        self.0.flags & bindings::DMA_BUF_CHUNK_PRIVATE != 0
    }

    /// Returns the physical ranges of the chunk, in buffer order.
    pub fn ranges(&self) -> &[PhysVec] {
        // CAST: `u32` always fits in `usize` on the architectures the kernel supports.
        let len = self.0.nr_ranges as usize;
        if len == 0 {
            return &[];
        }

        // SAFETY: By the type invariant `ranges` points to `len` valid `struct phys_vec` that are
        // not modified while the chunk exists, and `PhysVec` has the layout of `struct phys_vec`.
        unsafe { slice::from_raw_parts(self.0.ranges.cast::<PhysVec>(), len) }
    }

    /// Returns the number of bytes in the chunk.
    pub fn size(&self) -> usize {
        // The core checked that the sizes of all ranges add up without overflow.
        self.ranges().iter().map(|range| range.len).sum()
    }

    /// Returns the pages of a [`ChunkKind::Cpu`] chunk, in buffer order, or [`EINVAL`] for PCI
    /// MMIO (the Rust counterpart of C's `dma_buf_chunk_bvec()`).
    ///
    /// The pages borrow the chunk, so they cannot outlive the description. Only what
    /// [`BorrowedPage`] stands for is handed out: a page of an address without a `struct page`,
    /// of `ZONE_DEVICE` memory or a tail page of a compound page ends the iteration with
    /// [`EFAULT`].
    pub fn pages(&self) -> Result<impl Iterator<Item = Result<BorrowedPage<'_>>> + '_> {
        if self.kind() != ChunkKind::Cpu {
            return Err(EINVAL);
        }
        Ok(self.ranges().iter().flat_map(|range| {
            // The core checked that ranges are page aligned and do not wrap.
            (0..range.len / PAGE_SIZE).map(move |i| {
                let paddr = range.paddr + (i * PAGE_SIZE) as PhysAddr;
                page_of(paddr).ok_or(EFAULT)
            })
        }))
    }
}

/// Returns the page at `paddr` if it is an order-0 or head page of ordinary memory.
fn page_of<'a>(paddr: PhysAddr) -> Option<BorrowedPage<'a>> {
    // CAST: A page frame number of a physical address fits in an `unsigned long`.
    let pfn = (paddr >> crate::page::PAGE_SHIFT) as c_ulong;

    // SAFETY: `pfn_valid()` accepts any page frame number.
    if unsafe { bindings::pfn_valid(pfn) } == 0 {
        return None;
    }
    // SAFETY: `pfn` is valid, so it has a `struct page`.
    let page = NonNull::new(unsafe { bindings::pfn_to_page(pfn) })?;

    // SAFETY: `page` is a valid `struct page`.
    let unusual = unsafe {
        bindings::is_zone_device_page(page.as_ptr()) || bindings::PageTail(page.as_ptr())
    };
    if unusual {
        return None;
    }

    // SAFETY: The page is ordinary memory of a CPU chunk, which the exporter keeps for as long
    // as the description that the caller borrows for `'a` (`Exporter::get_memory` describes
    // pages it borrows from its state for as long as importers use the description, or promises
    // as much with `MemoryDraft::range`).
    Some(unsafe { BorrowedPage::from_raw(page) })
}

/// A description of the physical memory of a dma-buf: its chunks, in buffer order.
///
/// Importers see it through a [`Memory`] or [`Attachment::keep_memory`], both of which keep the
/// reservation lock of the buffer borrowed for as long as the description is.
///
/// [`Attachment::keep_memory`]: super::Attachment::keep_memory
///
/// # Invariants
///
/// A [`MemoryDesc`] is a `struct dma_buf_memory` returned by `dma_buf_get_memory()`, validated by
/// the core, that is neither modified nor released for the lifetime of the reference to it.
#[repr(transparent)]
pub struct MemoryDesc(Opaque<bindings::dma_buf_memory>);

impl MemoryDesc {
    /// Creates a reference to a [`MemoryDesc`] from a valid pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must have been returned by a successful `dma_buf_get_memory()`, and must be neither
    /// put nor otherwise modified for `'a`.
    pub(super) unsafe fn from_raw<'a>(ptr: *mut bindings::dma_buf_memory) -> &'a Self {
        // SAFETY: `MemoryDesc` is a transparent wrapper of `struct dma_buf_memory`, and the caller
        // guarantees that `ptr` stays valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct dma_buf_memory` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::dma_buf_memory {
        self.0.get()
    }

    /// Returns the total number of bytes in all ranges; at most the size of the buffer.
    pub fn size(&self) -> usize {
        // SAFETY: By the type invariant the description is valid; the core set `size` before
        // returning it.
        unsafe { (*self.as_raw()).size }
    }

    /// Returns the chunks, in buffer order. There is at least one.
    pub fn chunks(&self) -> &[Chunk] {
        let mem = self.as_raw();

        // SAFETY: By the type invariant the description is valid.
        // CAST: `u32` always fits in `usize` on the architectures the kernel supports.
        let len = unsafe { (*mem).nr_chunks } as usize;
        if len == 0 {
            return &[];
        }

        // SAFETY: By the type invariant the description was validated by the core: its `chunks`
        // array holds `nr_chunks` valid chunks that are not modified while `self` exists. `Chunk`
        // is a transparent wrapper of `struct dma_buf_chunk`.
        unsafe { slice::from_raw_parts((&raw const (*mem).chunks).cast::<Chunk>(), len) }
    }
}

/// The physical memory of a dma-buf, as one importer got it with [`Attachment::get_memory`].
///
/// It borrows the attachment and the [`ResvGuard`] it was got under: the description is put
/// (`dma_buf_put_memory()`) when it is dropped, before the lock can be. Importers that keep
/// using the ranges after the lock is dropped use [`Attachment::keep_memory`] instead. It
/// dereferences to [`MemoryDesc`].
///
/// [`Attachment::get_memory`]: super::Attachment::get_memory
/// [`Attachment::keep_memory`]: super::Attachment::keep_memory
/// [`ResvGuard`]: super::ResvGuard
///
/// # Invariants
///
/// - `mem` is a `struct dma_buf_memory` that `dma_buf_get_memory()` returned on `attach`, owned
///   by this object until it is released in `drop`.
/// - The reservation lock of the buffer of `attach` is held, and `attach` is attached, for `'a`.
pub struct Memory<'a> {
    mem: NonNull<bindings::dma_buf_memory>,
    attach: NonNull<bindings::dma_buf_attachment>,
    _p: PhantomData<&'a ()>,
}

impl Memory<'_> {
    /// Creates a [`Memory`] from the result of `dma_buf_get_memory()`.
    ///
    /// # Safety
    ///
    /// - `mem` must have been returned by a successful `dma_buf_get_memory()` on `attach` and not
    ///   yet been put; ownership of it passes to the new object.
    /// - The reservation lock of the buffer of `attach` must be held, and `attach` must stay
    ///   attached, for the lifetime of the new object.
    pub(super) unsafe fn from_raw(
        mem: NonNull<bindings::dma_buf_memory>,
        attach: NonNull<bindings::dma_buf_attachment>,
    ) -> Self {
        // INVARIANT: Guaranteed by the safety requirements.
        Self {
            mem,
            attach,
            _p: PhantomData,
        }
    }
}

impl Deref for Memory<'_> {
    type Target = MemoryDesc;

    fn deref(&self) -> &MemoryDesc {
        // SAFETY: By the type invariants `mem` was returned by `dma_buf_get_memory()` and is only
        // put when `self` is dropped.
        unsafe { MemoryDesc::from_raw(self.mem.as_ptr()) }
    }
}

impl Drop for Memory<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants `mem` was obtained on `attach`, which is still attached,
        // it was not put yet, and the reservation lock is held.
        unsafe { bindings::dma_buf_put_memory(self.attach.as_ptr(), self.mem.as_ptr()) };
    }
}

/// What [`Exporter::get_memory`] gets to describe the memory with: it either allocates a
/// [`MemoryDraft`] and builds it, or shares a [`SharedMemory`]. Either way it returns the
/// [`BuiltMemory`] that proves it described something; a second allocation, or a change to a
/// shared description, cannot be written.
///
/// Whatever is described must stay valid for `'a`, the borrow of the exporter state the builder
/// was handed with: [`MemoryDraft::page`] and [`MemoryBuilder::share`] take what they describe
/// borrowed for `'a`, so safe code can only describe memory the exporter state owns. Describing
/// an arbitrary address, [`MemoryDraft::range`], is `unsafe`.
///
/// [`Exporter::get_memory`]: super::Exporter::get_memory
pub struct MemoryBuilder<'a> {
    // Invariant in `'a`: a builder cannot be passed off as one of a shorter or longer borrow.
    _p: PhantomData<fn(&'a ()) -> &'a ()>,
}

impl<'a> MemoryBuilder<'a> {
    /// The most chunks a description may have.
    pub const MAX_CHUNKS: u32 = bindings::DMA_BUF_MEMORY_MAX_CHUNKS;

    /// The most ranges a description may have, in all chunks together.
    pub const MAX_RANGES: u32 = bindings::DMA_BUF_MEMORY_MAX_RANGES;

    pub(super) fn new() -> Self {
        Self { _p: PhantomData }
    }

    /// Allocates a description of at most `max_chunks` chunks and `max_ranges` ranges in all
    /// chunks together (`dma_buf_memory_alloc()`).
    ///
    /// Fails with [`EINVAL`] for a limit of zero or above [`MemoryBuilder::MAX_CHUNKS`] or
    /// [`MemoryBuilder::MAX_RANGES`].
    pub fn alloc(self, max_chunks: u32, max_ranges: u32, flags: Flags) -> Result<MemoryDraft<'a>> {
        if !(1..=Self::MAX_CHUNKS).contains(&max_chunks)
            || !(1..=Self::MAX_RANGES).contains(&max_ranges)
        {
            return Err(EINVAL);
        }

        // SAFETY: `dma_buf_memory_alloc()` has no preconditions; it returns NULL on failure.
        let mem = unsafe { bindings::dma_buf_memory_alloc(max_chunks, max_ranges, flags.as_raw()) };

        // INVARIANT: `mem` was just allocated, with the one reference the draft now owns; it has
        // no ranges yet.
        Ok(MemoryDraft {
            mem: NonNull::new(mem).ok_or(ENOMEM)?,
            _p: PhantomData,
        })
    }

    /// Answers with the description of `shared`, borrowed for `'a`, instead of building one
    /// (`dma_buf_memory_share()`).
    pub fn share<O: Send + Sync>(self, shared: &'a SharedMemory<O>) -> BuiltMemory<'a> {
        // SAFETY: By the type invariants of `SharedMemory` its description is valid while
        // `shared` holds its reference, and sealed. It returns its argument.
        unsafe { bindings::dma_buf_memory_share(shared.mem.as_ptr()) };

        // INVARIANT: We own the reference that `dma_buf_memory_share()` took, to the sealed
        // description of a `SharedMemory`, whose memory `shared` keeps valid while it is
        // borrowed, for `'a`.
        BuiltMemory {
            mem: shared.mem,
            _p: PhantomData,
        }
    }
}

/// A description being built: chunks and their ranges, in buffer order.
///
/// Every method returns the error of the C builder; dropping the draft frees it.
///
/// # Invariants
///
/// - `mem` is a `struct dma_buf_memory` from `dma_buf_memory_alloc()` of which the draft owns
///   the only reference.
/// - Every range of `mem` is memory that stays valid for `'a`.
pub struct MemoryDraft<'a> {
    mem: NonNull<bindings::dma_buf_memory>,
    _p: PhantomData<fn(&'a ()) -> &'a ()>,
}

impl<'a> MemoryDraft<'a> {
    fn add_chunk(
        &mut self,
        provider: *mut bindings::p2pdma_provider,
        kind: bindings::dma_buf_chunk_kind,
        flags: u32,
    ) -> Result {
        // SAFETY: By the type invariant `mem` is a valid description only the draft references.
        // The C builder checks `provider`, `kind` and `flags` against each other.
        to_result(unsafe {
            bindings::dma_buf_memory_add_chunk(self.mem.as_ptr(), provider, kind, flags)
        })
    }

    /// Starts a chunk of CPU memory.
    pub fn cpu_chunk(&mut self) -> Result {
        self.add_chunk(
            ptr::null_mut(),
            bindings::dma_buf_chunk_kind_DMA_BUF_CHUNK_CPU,
            0,
        )
    }

    /// Starts a chunk of private CPU memory (`DMA_BUF_CHUNK_PRIVATE`), for exporters with
    /// [`Exporter::PRIVATE`].
    ///
    /// [`Exporter::PRIVATE`]: super::Exporter::PRIVATE
    pub fn private_cpu_chunk(&mut self) -> Result {
        self.add_chunk(
            ptr::null_mut(),
            bindings::dma_buf_chunk_kind_DMA_BUF_CHUNK_CPU,
            bindings::DMA_BUF_CHUNK_PRIVATE,
        )
    }

    /// Starts a chunk of PCI MMIO of `provider`, which stays valid for `'a`.
    pub(super) fn p2p_chunk(&mut self, provider: &'a P2pProvider) -> Result {
        self.add_chunk(
            provider.as_raw(),
            bindings::dma_buf_chunk_kind_DMA_BUF_CHUNK_P2P_MMIO,
            0,
        )
    }

    /// Adds `len` bytes at `paddr` to the last chunk.
    ///
    /// Fails with [`EINVAL`] if there is no chunk yet or the range is empty, not page aligned or
    /// wraps around, and with [`ENOSPC`] if there is no room left.
    ///
    /// # Safety
    ///
    /// Unless this returns an error, the memory must stay valid for `'a`, that is for as long as
    /// importers may use the description (until they put it or are invalidated), and be of the
    /// kind of the chunk: RAM with `struct page`s that the exporter owns for a CPU chunk, MMIO
    /// of the chunk's provider for PCI MMIO.
    pub unsafe fn range(&mut self, paddr: PhysAddr, len: usize) -> Result {
        // INVARIANT: By the safety requirements the range stays valid for `'a`.
        // SAFETY: By the type invariant `mem` is a valid description only the draft references.
        to_result(unsafe { bindings::dma_buf_memory_add_range(self.mem.as_ptr(), paddr, len) })
    }

    /// Adds the memory of `page`, borrowed for `'a`, to the last chunk.
    pub fn page(&mut self, page: &'a Page) -> Result {
        // SAFETY: `page.as_ptr()` is a valid `struct page`.
        let paddr = unsafe { bindings::page_to_phys(page.as_ptr()) };

        // SAFETY: `page` is RAM with a `struct page`, allocated for as long as it is borrowed,
        // which is `'a`; a [`Page`] owns its page, so the exporter state owns it.
        unsafe { self.range(paddr, PAGE_SIZE) }
    }

    /// Finishes the description. The core checks it before any importer sees it.
    pub fn build(self) -> BuiltMemory<'a> {
        let mem = self.mem;
        core::mem::forget(self);

        // INVARIANT: The draft's reference, to a description of memory valid for `'a`, is the
        // built description's now.
        BuiltMemory {
            mem,
            _p: PhantomData,
        }
    }
}

impl Drop for MemoryDraft<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the draft owns a reference to `mem`.
        unsafe { bindings::dma_buf_memory_free(self.mem.as_ptr()) };
    }
}

/// A description that [`MemoryDraft::build`] built or [`MemoryBuilder::share`] shared: what
/// [`Exporter::get_memory`] returns. It has no method that changes it.
///
/// [`Exporter::get_memory`]: super::Exporter::get_memory
///
/// # Invariants
///
/// `mem` is a `struct dma_buf_memory` of which `self` owns one reference: one that no one else
/// references, or a sealed one, which no one writes to. What it describes stays valid for `'a`.
#[must_use = "the description is freed when dropped"]
pub struct BuiltMemory<'a> {
    mem: NonNull<bindings::dma_buf_memory>,
    _p: PhantomData<fn(&'a ()) -> &'a ()>,
}

impl BuiltMemory<'_> {
    /// Returns the description, still owned by `self`.
    pub(super) fn as_ptr(&self) -> *mut bindings::dma_buf_memory {
        self.mem.as_ptr()
    }

    /// Hands the reference to the description to the caller.
    pub(super) fn into_raw(self) -> NonNull<bindings::dma_buf_memory> {
        let mem = self.mem;
        core::mem::forget(self);
        mem
    }
}

impl Drop for BuiltMemory<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `self` owns a reference to `mem`.
        unsafe { bindings::dma_buf_memory_free(self.mem.as_ptr()) };
    }
}

/// A sealed memory description built once and shared by every [`Exporter::get_memory`]
/// (`dma_buf_memory_seal()`, `dma_buf_memory_share()`), with `O`, what it describes.
///
/// [`SharedMemory::new`] takes the memory it describes, `O` (for instance the pages), and keeps
/// it at a fixed address until it is dropped, after its own reference to the description; the
/// builder borrows it, so the description can only refer to memory that lives as long.
///
/// [`Exporter::get_memory`]: super::Exporter::get_memory
///
/// # Invariants
///
/// - `mem` is a sealed `struct dma_buf_memory` from `dma_buf_memory_alloc()`, of which `self`
///   owns one reference. Nothing writes to it: it is sealed, and the only builders that reference
///   it hold it as a [`BuiltMemory`], which has no method that changes it.
/// - The memory it describes stays valid while `owner` does.
///
/// # Examples
///
/// ```
/// # use kernel::{device::{Bound, Device}, faux, page::{Page, PAGE_SIZE}, prelude::*};
/// # use kernel::sync::Arc;
/// use kernel::dma_buf::{self, BuiltMemory, ExportAttachment, Exporter, Importer};
/// use kernel::dma_buf::{MemoryBuilder, MemoryDesc, ModelSet, Pinned, SharedMemory};
///
/// // Describes its page once, and shares the description with every importer.
/// struct OnePage(SharedMemory<Page>);
///
/// #[vtable]
/// impl Exporter for OnePage {
///     type Model = Pinned;
///     type State = ();
///
///     fn get_memory<'a>(
///         &'a self,
///         _state: &'a (),
///         _attach: &ExportAttachment,
///         mem: MemoryBuilder<'a>,
///     ) -> Result<BuiltMemory<'a>> {
///         Ok(mem.share(&self.0))
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
/// # let reg = faux::Registration::new(c"rust-dma-buf-shared", None)?;
/// # let fdev: &faux::Device<Bound> = reg.as_ref();
/// # let dev: &Device<Bound> = fdev.as_ref();
/// let memory = SharedMemory::new(Page::alloc_page(GFP_KERNEL)?, |page, mem| {
///     let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
///     draft.cpu_chunk()?;
///     draft.page(page)?;
///     Ok(draft.build())
/// })?;
/// let exported = dma_buf::export(OnePage(memory), (), PAGE_SIZE, 0)?;
/// let buf = exported.dma_buf();
/// let first = buf.attach(dev, Arc::new(Probe, GFP_KERNEL)?)?;
/// let second = buf.attach(dev, Arc::new(Probe, GFP_KERNEL)?)?;
///
/// // Both importers get the same description.
/// let guard = buf.lock();
/// assert_eq!(first.get_memory(&guard)?.as_raw(), second.get_memory(&guard)?.as_raw());
/// # Ok::<(), Error>(())
/// ```
///
/// A page that does not live as long as the description cannot be described: see
/// `tests/compile-fail/` in the project (the kernel's doctests cannot be `compile_fail`).
pub struct SharedMemory<O: Send + Sync = ()> {
    mem: NonNull<bindings::dma_buf_memory>,
    // Dropped after `drop()` dropped the reference to `mem`.
    owner: Pin<KBox<O>>,
}

// SAFETY: The description is not tied to a thread: its reference may be dropped on any thread;
// `O` is `Send`.
unsafe impl<O: Send + Sync> Send for SharedMemory<O> {}

// SAFETY: Through a `&SharedMemory` the description is only shared, which takes a reference with
// an atomic increment; it is sealed, so no one writes to it. `O` is `Sync`.
unsafe impl<O: Send + Sync> Sync for SharedMemory<O> {}

impl<O: Send + Sync> SharedMemory<O> {
    /// Takes `owner`, builds a description of memory it owns with `build` and seals it.
    ///
    /// `build` fills the [`MemoryBuilder`] as [`Exporter::get_memory`] does; its error is
    /// returned. Fails with [`EINVAL`] if the description breaks a
    /// rule of the core; `build` may also share a [`SharedMemory`] that `owner` holds.
    ///
    /// [`Exporter::get_memory`]: super::Exporter::get_memory
    pub fn new(
        owner: O,
        build: impl for<'b> FnOnce(&'b O, MemoryBuilder<'b>) -> Result<BuiltMemory<'b>>,
    ) -> Result<Self> {
        let owner = KBox::pin(owner, GFP_KERNEL)?;

        // What the builder describes is borrowed from `owner`, which `Self` keeps, pinned in its
        // box, until after it dropped its reference to the description.
        let mem = build(owner.as_ref().get_ref(), MemoryBuilder::new())?.into_raw();
        Self::seal(owner, mem)
    }

    /// Builds a description with `build` and seals it, like [`SharedMemory::new`], of memory
    /// that `build` vouches for.
    ///
    /// # Safety
    ///
    /// What `build` describes must stay valid for as long as importers may use the description.
    pub(super) unsafe fn new_unchecked<'x>(
        owner: O,
        build: impl FnOnce(MemoryBuilder<'x>) -> Result<BuiltMemory<'x>>,
    ) -> Result<Self> {
        let owner = KBox::pin(owner, GFP_KERNEL)?;
        let mem = build(MemoryBuilder::new())?.into_raw();
        Self::seal(owner, mem)
    }

    /// Seals `mem`, a description of which the caller hands over its reference.
    fn seal(owner: Pin<KBox<O>>, mem: NonNull<bindings::dma_buf_memory>) -> Result<Self> {
        // SAFETY: `mem` is a valid description the caller holds a reference to; sealing only
        // writes to it if no one else references it yet.
        if let Err(err) = to_result(unsafe { bindings::dma_buf_memory_seal(mem.as_ptr()) }) {
            // SAFETY: The caller handed over its reference.
            unsafe { bindings::dma_buf_memory_free(mem.as_ptr()) };
            return Err(err);
        }

        // INVARIANT: We own the reference to `mem`, which is sealed; the callers made sure that
        // what it describes outlives the importers' use.
        Ok(Self { mem, owner })
    }

    /// Returns what the description describes.
    pub fn owner(&self) -> &O {
        &self.owner
    }
}

impl<O: Send + Sync> Drop for SharedMemory<O> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `self` owns a reference to `mem`, which it drops here.
        unsafe { bindings::dma_buf_memory_free(self.mem.as_ptr()) };
    }
}
