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
/// This is the Rust view of a C `struct phys_vec`; slices of either can be viewed as the other.
/// In a [`Memory`], `paddr` and `len` are page aligned and `len` is not zero.
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

    /// Returns the provider of the memory BAR `bar` of `pdev`.
    ///
    /// The provider lives until the driver is unbound from `pdev`: an exporter that describes
    /// the BAR to importers must revoke its dma-bufs before its `remove` returns. Fails with
    /// [`EINVAL`] if `bar` is not a memory BAR.
    #[cfg(all(CONFIG_PCI, CONFIG_PCI_P2PDMA))]
    pub fn of_bar<'a>(
        pdev: &'a crate::pci::Device<crate::device::Bound>,
        bar: u32,
    ) -> Result<&'a Self> {
        if bar >= bindings::PCI_STD_NUM_BARS {
            return Err(EINVAL);
        }
        let bar = c_int::try_from(bar)?;
        let dev: &Device<crate::device::Bound> = pdev.as_ref();

        // SAFETY: `dev` is the `dev` field of the `struct pci_dev` that `pdev` wraps.
        let raw = unsafe { crate::container_of!(dev.as_raw(), bindings::pci_dev, dev) };

        // SAFETY: `raw` is a valid PCI device bound to a driver, as `pcim_p2pdma_init()` requires
        // to register its device-managed state.
        to_result(unsafe { bindings::pcim_p2pdma_init(raw) })?;

        // SAFETY: `raw` is valid, its P2P state was set up above, and `bar` is a standard BAR.
        let provider = unsafe { bindings::pcim_p2pdma_provider(raw, bar) };
        let provider = NonNull::new(provider).ok_or(EINVAL)?;

        // SAFETY: The provider is device-managed state of `pdev`, released when the driver is
        // unbound, which cannot happen while `pdev` is borrowed as bound for `'a`.
        Ok(unsafe { Self::from_raw(provider.as_ptr()) })
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

/// The kind of memory a [`Chunk`] describes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// System memory with `struct page`s; the chunk has no provider.
    Cpu,
    /// PCI MMIO of the chunk's [`P2pProvider`]; no `struct page`s, to be mapped uncached.
    P2pMmio,
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
    /// Returns the kind of memory of the chunk.
    pub fn kind(&self) -> ChunkKind {
        match self.0.kind {
            bindings::dma_buf_chunk_kind_DMA_BUF_CHUNK_P2P_MMIO => ChunkKind::P2pMmio,
            // By the type invariant the kind is known, so this is `DMA_BUF_CHUNK_CPU`.
            _ => ChunkKind::Cpu,
        }
    }

    /// Returns whether the memory is private: not accessible to the host CPU.
    ///
    /// Only importers with [`Importer::ALLOW_PRIVATE`] see private chunks.
    ///
    /// [`Importer::ALLOW_PRIVATE`]: super::Importer::ALLOW_PRIVATE
    pub fn is_private(&self) -> bool {
        self.0.flags & bindings::DMA_BUF_CHUNK_PRIVATE != 0
    }

    /// Returns the provider of PCI MMIO chunks, [`None`] for CPU memory.
    pub fn provider(&self) -> Option<&P2pProvider> {
        let provider = NonNull::new(self.0.provider)?;

        // SAFETY: By the type invariant a non-null provider is valid while the chunk is.
        Some(unsafe { P2pProvider::from_raw(provider.as_ptr()) })
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
    /// MMIO, which has no `struct page`s.
    ///
    /// This is the Rust counterpart of C's `dma_buf_chunk_bvec()`. The pages borrow the chunk,
    /// so they cannot outlive the description, and with it the reservation lock or the
    /// importer's mapping. A range whose address has no `struct page` (an exporter that
    /// described something other than system memory as CPU memory) ends the iteration with
    /// [`EFAULT`].
    pub fn pages(&self) -> Result<impl Iterator<Item = Result<BorrowedPage<'_>>> + '_> {
        if self.kind() != ChunkKind::Cpu {
            return Err(EINVAL);
        }
        Ok(self.ranges().iter().flat_map(|range| {
            // The core checked that ranges are page aligned and do not wrap.
            (0..range.len / PAGE_SIZE).map(move |i| {
                let paddr = range.paddr + (i * PAGE_SIZE) as PhysAddr;
                // SAFETY: `dma_buf_phys_to_page()` only computes a pointer; it returns NULL for
                // an address without a `struct page`.
                let page =
                    NonNull::new(unsafe { bindings::dma_buf_phys_to_page(paddr) }).ok_or(EFAULT)?;
                // SAFETY: The page belongs to a CPU chunk, whose memory the exporter keeps valid
                // for as long as the description, which the returned page borrows.
                Ok(unsafe { BorrowedPage::from_raw(page) })
            })
        }))
    }
}

/// A description of the physical memory of a dma-buf: its chunks, in buffer order.
///
/// Importers see it through a [`Memory`] or [`Attachment::map_memory`], both of which keep the
/// reservation lock of the buffer borrowed for as long as the description is.
///
/// [`Attachment::map_memory`]: super::Attachment::map_memory
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
/// It borrows both the attachment and the [`ResvGuard`] it was obtained under: the addresses are
/// valid for as long as it exists, because the exporter can only take the memory back while
/// holding the reservation lock. Dropping it releases it with `dma_buf_put_memory()`, which tells
/// the exporter that the importer no longer uses the ranges. Importers that keep using the
/// ranges after dropping the lock, such as in IOMMU or MMU page tables, use
/// [`Attachment::map_memory`] instead.
///
/// The description is read through [`MemoryDesc`], which [`Memory`] dereferences to.
///
/// [`Attachment::get_memory`]: super::Attachment::get_memory
/// [`Attachment::map_memory`]: super::Attachment::map_memory
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

/// Builds the memory description an exporter returns from [`Exporter::get_memory`].
///
/// Allocate room once with [`MemoryBuilder::alloc`], then add chunks and their ranges in buffer
/// order: a chunk with [`MemoryBuilder::cpu_chunk`] or one of its variants, then its ranges with
/// [`MemoryBuilder::range`] or [`MemoryBuilder::page`]. Every method returns the error of the C
/// builder; when [`Exporter::get_memory`] fails, what was built is freed.
///
/// An exporter whose ranges do not change between calls builds them once, as a
/// [`SharedMemory`], and answers with [`MemoryBuilder::share`] instead.
///
/// The described memory must stay valid until the importer puts it or is invalidated: a
/// [`Model::Pinned`] exporter keeps it for the lifetime of the buffer, the others until they
/// revoke or move it through [`Exported`].
///
/// [`Exporter::get_memory`]: super::Exporter::get_memory
/// [`Model::Pinned`]: super::Model::Pinned
/// [`Exported`]: super::Exported
///
/// # Invariants
///
/// `mem` is either null or a `struct dma_buf_memory` of which the builder owns one reference:
/// one the builder allocated with `dma_buf_memory_alloc()`, which no one else references, or the
/// sealed description of a [`SharedMemory`], which the C builder refuses to change.
pub struct MemoryBuilder {
    mem: *mut bindings::dma_buf_memory,
}

impl MemoryBuilder {
    /// The most chunks a description may have.
    pub const MAX_CHUNKS: u32 = bindings::DMA_BUF_MEMORY_MAX_CHUNKS;

    /// The most ranges a description may have, in all chunks together.
    pub const MAX_RANGES: u32 = bindings::DMA_BUF_MEMORY_MAX_RANGES;

    pub(super) fn new() -> Self {
        // INVARIANT: `mem` is null.
        Self {
            mem: ptr::null_mut(),
        }
    }

    /// Allocates room for `max_chunks` chunks and `max_ranges` ranges in all chunks together.
    ///
    /// Fails with [`EINVAL`] if a limit is zero or above [`MemoryBuilder::MAX_CHUNKS`] or
    /// [`MemoryBuilder::MAX_RANGES`], [`EBUSY`] if room was already allocated or a
    /// [`SharedMemory`] was shared, and [`ENOMEM`].
    pub fn alloc(&mut self, max_chunks: u32, max_ranges: u32, flags: Flags) -> Result {
        if !self.mem.is_null() {
            return Err(EBUSY);
        }
        if !(1..=Self::MAX_CHUNKS).contains(&max_chunks)
            || !(1..=Self::MAX_RANGES).contains(&max_ranges)
        {
            return Err(EINVAL);
        }

        // SAFETY: `dma_buf_memory_alloc()` has no preconditions; it returns NULL on failure.
        let mem = unsafe { bindings::dma_buf_memory_alloc(max_chunks, max_ranges, flags.as_raw()) };
        if mem.is_null() {
            return Err(ENOMEM);
        }

        // INVARIANT: `mem` was just allocated, with the one reference the builder now owns, and
        // was null before, so nothing leaks and nothing was shared.
        self.mem = mem;
        Ok(())
    }

    fn add_chunk(
        &mut self,
        provider: *mut bindings::p2pdma_provider,
        kind: bindings::dma_buf_chunk_kind,
        flags: u32,
    ) -> Result {
        if self.mem.is_null() {
            return Err(EINVAL);
        }

        // SAFETY: By the type invariant `mem` is a valid description the builder holds a reference
        // to: its own, or a sealed one, which the C builder refuses with `EBUSY` without writing
        // to it. The C builder checks `provider`, `kind` and `flags` against each other.
        to_result(unsafe { bindings::dma_buf_memory_add_chunk(self.mem, provider, kind, flags) })
    }

    /// Starts a chunk of CPU memory.
    pub fn cpu_chunk(&mut self) -> Result {
        self.add_chunk(
            ptr::null_mut(),
            bindings::dma_buf_chunk_kind_DMA_BUF_CHUNK_CPU,
            0,
        )
    }

    /// Starts a chunk of CPU memory that the host CPU cannot access.
    ///
    /// Only valid for exporters with [`Exporter::PRIVATE`].
    ///
    /// [`Exporter::PRIVATE`]: super::Exporter::PRIVATE
    pub fn private_cpu_chunk(&mut self) -> Result {
        self.add_chunk(
            ptr::null_mut(),
            bindings::dma_buf_chunk_kind_DMA_BUF_CHUNK_CPU,
            bindings::DMA_BUF_CHUNK_PRIVATE,
        )
    }

    /// Starts a chunk of PCI MMIO of `provider`.
    ///
    /// Only valid for importers that allow peer-to-peer, see [`ExportAttachment::peer2peer`].
    ///
    /// [`ExportAttachment::peer2peer`]: super::ExportAttachment::peer2peer
    ///
    /// # Safety
    ///
    /// `provider` must stay valid until the importer puts the memory or is invalidated: for a
    /// provider from [`P2pProvider::of_bar`], the exporter must revoke the buffer before the
    /// driver is unbound. For a [`SharedMemory`], that is every importer it is shared with.
    pub unsafe fn p2p_chunk(&mut self, provider: &P2pProvider) -> Result {
        self.add_chunk(
            provider.as_raw(),
            bindings::dma_buf_chunk_kind_DMA_BUF_CHUNK_P2P_MMIO,
            0,
        )
    }

    /// Starts a chunk of PCI MMIO of `provider` that the host CPU cannot access.
    ///
    /// Only valid for exporters with [`Exporter::PRIVATE`], and importers that allow
    /// peer-to-peer.
    ///
    /// [`Exporter::PRIVATE`]: super::Exporter::PRIVATE
    ///
    /// # Safety
    ///
    /// The same as for [`MemoryBuilder::p2p_chunk`].
    pub unsafe fn private_p2p_chunk(&mut self, provider: &P2pProvider) -> Result {
        self.add_chunk(
            provider.as_raw(),
            bindings::dma_buf_chunk_kind_DMA_BUF_CHUNK_P2P_MMIO,
            bindings::DMA_BUF_CHUNK_PRIVATE,
        )
    }

    /// Adds `len` bytes at `paddr` to the last chunk.
    ///
    /// Fails with [`EINVAL`] if there is no chunk yet or the range is empty, not page aligned or
    /// wraps around, with [`ENOSPC`] if there is no room left, and with [`EBUSY`] if a
    /// [`SharedMemory`] was shared.
    pub fn range(&mut self, paddr: PhysAddr, len: usize) -> Result {
        if self.mem.is_null() {
            return Err(EINVAL);
        }

        // SAFETY: By the type invariant `mem` is a valid description the builder holds a reference
        // to: its own, or a sealed one, which the C builder refuses with `EBUSY` without writing
        // to it.
        to_result(unsafe { bindings::dma_buf_memory_add_range(self.mem, paddr, len) })
    }

    /// Adds the memory of `page` to the last chunk.
    ///
    /// The exporter must keep the page allocated for as long as importers may use it.
    pub fn page(&mut self, page: &Page) -> Result {
        // SAFETY: `page.as_ptr()` is a valid `struct page`.
        let paddr = unsafe { bindings::page_to_phys(page.as_ptr()) };
        self.range(paddr, PAGE_SIZE)
    }

    /// Answers with the description of `shared` instead of building one.
    ///
    /// The importer gets the very description `shared` holds, with a reference of its own: it
    /// is sealed, so the core only checks what depends on the importer. Afterwards the builder
    /// refuses to change it: [`MemoryBuilder::alloc`], the chunk methods and
    /// [`MemoryBuilder::range`] fail with [`EBUSY`].
    ///
    /// Fails with [`EBUSY`] if the builder already holds a description.
    pub fn share(&mut self, shared: &SharedMemory) -> Result {
        if !self.mem.is_null() {
            return Err(EBUSY);
        }

        // INVARIANT: The builder owns the reference that `dma_buf_memory_share()` takes, to the
        // sealed description of a `SharedMemory`.
        // SAFETY: By the type invariants of `SharedMemory` its description is valid while
        // `shared` holds its reference, and sealed.
        self.mem = unsafe { bindings::dma_buf_memory_share(shared.mem.as_ptr()) };
        Ok(())
    }

    /// Returns the description built or shared, still owned by the builder, or fails with
    /// [`EINVAL`] if there is none.
    pub(super) fn built(&self) -> Result<NonNull<bindings::dma_buf_memory>> {
        NonNull::new(self.mem).ok_or(EINVAL)
    }

    /// Takes the reference to the description out of the builder, or fails with [`EINVAL`] if
    /// there is none.
    pub(super) fn take(&mut self) -> Result<NonNull<bindings::dma_buf_memory>> {
        let mem = NonNull::new(self.mem).ok_or(EINVAL)?;

        // INVARIANT: The caller owns the reference now.
        self.mem = ptr::null_mut();
        Ok(mem)
    }
}

impl Drop for MemoryBuilder {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `mem` is null or a description of which the builder owns
        // a reference; `dma_buf_memory_free()` accepts both, and drops the reference.
        unsafe { bindings::dma_buf_memory_free(self.mem) };
    }
}

/// A memory description built once and shared by every [`Exporter::get_memory`].
///
/// An exporter whose ranges do not change between calls, such as one describing a PCI BAR or
/// pages it keeps for the lifetime of the buffer, builds the description once with
/// [`SharedMemory::new`] and answers every [`Exporter::get_memory`] with
/// [`MemoryBuilder::share`]: no allocation, and the core checks in constant time only what
/// depends on the importer. A [`Model::Dynamic`] exporter that moves its memory builds a
/// new one and replaces the old one in [`Exported::move_memory`]; importers still holding the
/// old description keep it alive until they put it.
///
/// [`SharedMemory::new`] seals the description (`dma_buf_memory_seal()`): it checks it as the
/// core checks what [`Exporter::get_memory`] returns, so a broken description is an error of
/// [`SharedMemory::new`] rather than of an importer's get, and makes it read-only. Nothing writes
/// to it afterwards, not even the core, and a [`MemoryBuilder`] holding it refuses to; so it may
/// also be shared between buffers.
///
/// Dropping it drops the exporter's reference; the description is freed with the last
/// reference, which may sleep.
///
/// [`Exporter::get_memory`]: super::Exporter::get_memory
/// [`Model::Dynamic`]: super::Model::Dynamic
/// [`Exported::move_memory`]: super::Exported::move_memory
///
/// # Invariants
///
/// `mem` is a sealed `struct dma_buf_memory` from `dma_buf_memory_alloc()`, of which `self` owns
/// one reference. Nothing writes to it: it is sealed, and the only builders that reference it
/// hold it through [`MemoryBuilder::share`] and refuse to change it.
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
///         ModelSet,
///         SharedMemory, //
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
/// // Describes its page once, and shares the description with every importer.
/// struct OnePage {
///     _page: Page,
///     memory: SharedMemory,
/// }
///
/// #[vtable]
/// impl Exporter for OnePage {
///     const MODEL: Model = Model::Pinned;
///
///     fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
///         // From here on the builder is read-only: `mem.cpu_chunk()` fails with `EBUSY`.
///         mem.share(&self.memory)
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
/// let reg = faux::Registration::new(c"rust-dma-buf-shared", None)?;
/// let fdev: &faux::Device<Bound> = reg.as_ref();
/// let dev: &Device<Bound> = fdev.as_ref();
///
/// let page = Page::alloc_page(GFP_KERNEL)?;
/// let memory = SharedMemory::new(|mem| {
///     mem.alloc(1, 1, GFP_KERNEL)?;
///     mem.cpu_chunk()?;
///     mem.page(&page)
/// })?;
/// let exported = dma_buf::export(OnePage { _page: page, memory }, PAGE_SIZE, 0)?;
/// let buf = exported.dma_buf();
/// let first = buf.attach(dev, Arc::new(Probe, GFP_KERNEL)?)?;
/// let second = buf.attach(dev, Arc::new(Probe, GFP_KERNEL)?)?;
///
/// // Both importers get the same description.
/// let guard = buf.lock();
/// let a = first.get_memory(&guard)?;
/// let b = second.get_memory(&guard)?;
/// assert_eq!(a.as_raw(), b.as_raw());
/// assert_eq!(a.size(), PAGE_SIZE);
/// # Ok::<(), Error>(())
/// ```
pub struct SharedMemory {
    mem: NonNull<bindings::dma_buf_memory>,
}

// SAFETY: The description is not tied to a thread: its reference may be dropped on any thread.
unsafe impl Send for SharedMemory {}

// SAFETY: Through a `&SharedMemory` the description is only shared, which takes a reference with
// an atomic increment; it is sealed, so no one writes to it.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Builds a description with `build` and seals it, to be shared with
    /// [`MemoryBuilder::share`].
    ///
    /// `build` fills the [`MemoryBuilder`] as [`Exporter::get_memory`] does; its error is
    /// returned, and what was built is freed. Fails with [`EINVAL`] if `build` allocated
    /// nothing or the description breaks a rule of the core (a chunk without ranges, for
    /// instance); `build` may also share another [`SharedMemory`], which makes this one another
    /// reference to the same description.
    ///
    /// [`Exporter::get_memory`]: super::Exporter::get_memory
    pub fn new(build: impl FnOnce(&mut MemoryBuilder) -> Result) -> Result<Self> {
        let mut builder = MemoryBuilder::new();
        build(&mut builder)?;
        let mem = builder.built()?;

        // SAFETY: `mem` is a valid description the builder holds a reference to; sealing only
        // writes to it if the builder allocated it and no one else references it yet.
        to_result(unsafe { bindings::dma_buf_memory_seal(mem.as_ptr()) })?;

        // INVARIANT: `take` hands over the builder's reference to `mem`, which is sealed.
        Ok(Self {
            mem: builder.take()?,
        })
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: By the type invariant `self` owns a reference to `mem`, which it drops here.
        unsafe { bindings::dma_buf_memory_free(self.mem.as_ptr()) };
    }
}
