// SPDX-License-Identifier: GPL-2.0

//! KUnit tests for `dma_buf_get_memory()` through the Rust abstraction, `kernel::dma_buf`.
//!
//! The same behaviours as the C suite `dma_buf_memory` (drivers/dma-buf/dma-buf-memory-test.c),
//! reached the way a Rust driver reaches them: mock exporters written against
//! [`Exporter`], one per memory model, and mock importers written against [`Importer`] that count
//! their invalidations, attached from a faux device.
//!
//! The mock exporters describe fake, page-aligned physical addresses that nobody accesses, so
//! that a test can check exactly what the importer gets; [`PageBacked`] describes real pages
//! from [`Page::alloc_page`].
//!
//! Not testable here: an exporter with [`Model::None`] does not compile (`export()` refuses it
//! with a `const_assert!`), and a C exporter without `get_memory` cannot be created from Rust;
//! the C suite covers the latter. Nor are the scatter-gather tables of [`Exporter::MAP_DMA_BUF`]:
//! the Rust importer cannot call `dma_buf_map_attachment()` and a faux device has no DMA mask;
//! the C suite maps the same descriptions with `dma_buf_memory_map()`.
//!
//! Included from the module's crate root; `#[kunit_tests]` compiles the suite only when
//! `CONFIG_KUNIT=y`, and KUnit runs it when the module is loaded.

#[::kernel::macros::kunit_tests(dmabuf_memory_kapi)]
mod tests {
    use core::marker::PhantomData;
    use kernel::{
        device::{
            Bound,
            Device, //
        },
        dma_buf::{
            self,
            Attachment,
            ChunkKind,
            DmaBuf,
            ExportAttachment,
            Exported,
            Exporter,
            Importer,
            MemoryBuilder,
            MemoryDesc,
            Model,
            ModelSet,
            PhysVec,
            ResvGuard,
            SharedMemory, //
        },
        faux,
        fs::file::flags::O_RDWR,
        io::PhysAddr,
        new_mutex,
        page::{
            Page,
            PAGE_SIZE, //
        },
        prelude::*,
        sync::{
            atomic::{
                Acquire,
                Atomic,
                Relaxed,
                Release, //
            },
            Arc,
            Mutex, //
        },
        time::{
            delay::fsleep,
            Delta, //
        }, //
    };

    const PAGE: PhysAddr = PAGE_SIZE as PhysAddr;

    /// Size of the mock buffers: eight pages.
    const MOCK_SIZE: usize = 8 * PAGE_SIZE;

    /// Where the first range of a mock exporter starts, until it moves.
    const MOCK_BASE: PhysAddr = 0x1000_0000;

    /// Where the private chunk of a private mock exporter is.
    const MOCK_PRIVATE_BASE: PhysAddr = 0x2000_0000;

    /// How far [`Exported::move_memory`] moves a dynamic mock exporter.
    const MOCK_MOVE: PhysAddr = 0x10_0000;

    /// The ranges of a mock exporter at `base`: two pages at `base`, two pages further on.
    fn mock_ranges(base: PhysAddr) -> [PhysVec; 2] {
        [
            PhysVec {
                paddr: base,
                len: 2 * PAGE_SIZE,
            },
            PhysVec {
                paddr: base + 4 * PAGE,
                len: 2 * PAGE_SIZE,
            },
        ]
    }

    /// What a mock exporter saw, kept by the test beyond the life of the buffer.
    struct Tracker {
        /// Descriptions built once, as a [`SharedMemory`].
        builds: Atomic<u32>,
        /// Changes to a shared description that the builder refused.
        refused: Atomic<u32>,
        gets: Atomic<u32>,
        puts: Atomic<u32>,
        attaches: Atomic<u32>,
        detaches: Atomic<u32>,
        released: Atomic<bool>,
    }

    impl Tracker {
        fn new() -> Result<Arc<Self>> {
            Ok(Arc::new(
                Tracker {
                    builds: Atomic::new(0),
                    refused: Atomic::new(0),
                    gets: Atomic::new(0),
                    puts: Atomic::new(0),
                    attaches: Atomic::new(0),
                    detaches: Atomic::new(0),
                    released: Atomic::new(false),
                },
                GFP_KERNEL,
            )?)
        }

        /// Waits up to a second for the buffer to be released.
        ///
        /// KUnit runs tests in a kernel thread, whose last `fput()` of the dma-buf file is
        /// deferred to a work item.
        fn wait_released(&self) -> bool {
            for _ in 0..100 {
                if self.released.load(Acquire) {
                    return true;
                }
                fsleep(Delta::from_millis(10));
            }
            false
        }
    }

    /// The memory model and privacy of a mock exporter.
    trait Kind: Send + Sync + 'static {
        const MODEL: Model;
        const PRIVATE: bool = false;
    }

    struct Pinned;
    impl Kind for Pinned {
        const MODEL: Model = Model::Pinned;
    }

    struct Revocable;
    impl Kind for Revocable {
        const MODEL: Model = Model::Revocable;
    }

    struct Dynamic;
    impl Kind for Dynamic {
        const MODEL: Model = Model::Dynamic;
    }

    /// A pinned exporter that may hold memory the CPU cannot access.
    struct Private;
    impl Kind for Private {
        const MODEL: Model = Model::Pinned;
        const PRIVATE: bool = true;
    }

    /// A mock exporter: one CPU chunk of [`mock_ranges`] at `base`, and for private exporters a
    /// private chunk of one page.
    struct Mock<K: Kind> {
        base: Atomic<PhysAddr>,
        tracker: Arc<Tracker>,
        _kind: PhantomData<K>,
    }

    #[vtable]
    impl<K: Kind> Exporter for Mock<K> {
        const MODEL: Model = K::MODEL;
        const PRIVATE: bool = K::PRIVATE;

        fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
            let chunks = if K::PRIVATE { 2 } else { 1 };

            mem.alloc(chunks, 3, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            for range in mock_ranges(self.base.load(Relaxed)) {
                mem.range(range.paddr, range.len)?;
            }
            if K::PRIVATE {
                mem.private_cpu_chunk()?;
                mem.range(MOCK_PRIVATE_BASE, PAGE_SIZE)?;
            }

            self.tracker.gets.add(1, Relaxed);
            Ok(())
        }

        fn put_memory(&self, _attach: &ExportAttachment) {
            self.tracker.puts.add(1, Relaxed);
        }

        fn attach(&self, _attach: &ExportAttachment) -> Result {
            self.tracker.attaches.add(1, Relaxed);
            Ok(())
        }

        fn detach(&self, _attach: &ExportAttachment) {
            self.tracker.detaches.add(1, Relaxed);
        }
    }

    impl<K: Kind> Drop for Mock<K> {
        fn drop(&mut self) {
            self.tracker.released.store(true, Release);
        }
    }

    /// Exports a [`MOCK_SIZE`] buffer from a mock exporter of kind `K`.
    fn export_mock<K: Kind>(tracker: &Arc<Tracker>) -> Result<Exported<Mock<K>>> {
        let mock = Mock::<K> {
            base: Atomic::new(MOCK_BASE),
            tracker: tracker.clone(),
            _kind: PhantomData,
        };
        dma_buf::export(mock, MOCK_SIZE, O_RDWR)
    }

    /// An exporter that runs `script` on the builder and reports its result to the importer
    /// unchanged; `seen` keeps the errno, to tell the builder's errors from the core's.
    struct Scripted {
        script: fn(&mut MemoryBuilder) -> Result,
        seen: Atomic<i32>,
    }

    #[vtable]
    impl Exporter for Scripted {
        const MODEL: Model = Model::Pinned;

        fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
            let res = (self.script)(mem);
            self.seen
                .store(res.err().map_or(0, |err| err.to_errno()), Relaxed);
            res
        }
    }

    fn export_scripted(script: fn(&mut MemoryBuilder) -> Result) -> Result<Exported<Scripted>> {
        let scripted = Scripted {
            script,
            seen: Atomic::new(0),
        };
        dma_buf::export(scripted, MOCK_SIZE, O_RDWR)
    }

    /// A pinned exporter of two real pages, each its own range.
    struct PageBacked {
        pages: [Page; 2],
    }

    #[vtable]
    impl Exporter for PageBacked {
        const MODEL: Model = Model::Pinned;

        fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
            mem.alloc(1, 2, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            for page in &self.pages {
                mem.page(page)?;
            }
            Ok(())
        }
    }

    /// A pinned exporter of one real page that also serves `dma_buf_map_attachment()`
    /// ([`Exporter::MAP_DMA_BUF`]) and counts its descriptions in `tracker`.
    ///
    /// Its tables cannot be tested from here: the Rust importer has no scatter-gather API, and a
    /// faux device has no DMA mask. The C suite `dma_buf_memory` maps the same kind of
    /// description with `dma_buf_memory_map()`.
    struct Mapped {
        page: Page,
        tracker: Arc<Tracker>,
    }

    #[vtable]
    impl Exporter for Mapped {
        const MODEL: Model = Model::Pinned;
        const MAP_DMA_BUF: bool = true;

        fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            mem.page(&self.page)?;
            self.tracker.gets.add(1, Relaxed);
            Ok(())
        }

        fn put_memory(&self, _attach: &ExportAttachment) {
            self.tracker.puts.add(1, Relaxed);
        }
    }

    impl Drop for Mapped {
        fn drop(&mut self) {
            self.tracker.released.store(true, Release);
        }
    }

    /// Builds [`mock_ranges`] at `base` once, as a [`SharedMemory`], and counts the build in
    /// `tracker`.
    ///
    /// There is room for one more chunk and one more range: only the builder's refusal keeps a
    /// tampering [`Sharing`] from adding them to the shared description.
    fn build_shared(base: PhysAddr, tracker: &Tracker) -> Result<SharedMemory> {
        SharedMemory::new(|mem| {
            tracker.builds.add(1, Relaxed);
            mem.alloc(2, 3, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            for range in mock_ranges(base) {
                mem.range(range.paddr, range.len)?;
            }
            Ok(())
        })
    }

    /// A mock exporter of kind `K` that shares one description of [`mock_ranges`] with every
    /// importer; a dynamic one replaces it when it moves.
    #[pin_data(PinnedDrop)]
    struct Sharing<K: Kind> {
        #[pin]
        memory: Mutex<SharedMemory>,
        tracker: Arc<Tracker>,
        /// Whether `get_memory` tries to change the description after sharing it, counting each
        /// refusal in `tracker`.
        tamper: bool,
        _kind: PhantomData<K>,
    }

    #[vtable]
    impl<K: Kind> Exporter for Sharing<K> {
        const MODEL: Model = K::MODEL;

        fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
            mem.share(&self.memory.lock())?;
            self.tracker.gets.add(1, Relaxed);

            if self.tamper {
                let tries = [
                    mem.alloc(1, 1, GFP_KERNEL),
                    mem.cpu_chunk(),
                    mem.range(MOCK_BASE + 6 * PAGE, PAGE_SIZE),
                    mem.share(&self.memory.lock()),
                ];
                for res in tries {
                    if res == Err(EBUSY) {
                        self.tracker.refused.add(1, Relaxed);
                    }
                }
            }
            Ok(())
        }

        fn put_memory(&self, _attach: &ExportAttachment) {
            self.tracker.puts.add(1, Relaxed);
        }
    }

    #[pinned_drop]
    impl<K: Kind> PinnedDrop for Sharing<K> {
        fn drop(self: Pin<&mut Self>) {
            self.tracker.released.store(true, Release);
        }
    }

    /// Exports a [`MOCK_SIZE`] buffer from a sharing mock exporter of kind `K`.
    fn export_sharing<K: Kind>(
        tracker: &Arc<Tracker>,
        tamper: bool,
    ) -> Result<Exported<Sharing<K>>> {
        let memory = build_shared(MOCK_BASE, tracker)?;
        let sharing = pin_init!(Sharing::<K> {
            memory <- new_mutex!(memory),
            tracker: tracker.clone(),
            tamper,
            _kind: PhantomData,
        });
        dma_buf::export(sharing, MOCK_SIZE, O_RDWR)
    }

    /// A pinned exporter sharing a description that another buffer may share too.
    struct Borrowing {
        memory: Arc<SharedMemory>,
    }

    #[vtable]
    impl Exporter for Borrowing {
        const MODEL: Model = Model::Pinned;

        fn get_memory(&self, _attach: &ExportAttachment, mem: &mut MemoryBuilder) -> Result {
            mem.share(&self.memory)
        }
    }

    /// The models, and privacy, a mock importer accepts.
    trait Accepts: Send + Sync + 'static {
        const MODELS: ModelSet;
        const ALLOW_PRIVATE: bool = false;
    }

    struct AcceptsPinned;
    impl Accepts for AcceptsPinned {
        const MODELS: ModelSet = ModelSet::PINNED;
    }

    struct AcceptsRevocable;
    impl Accepts for AcceptsRevocable {
        const MODELS: ModelSet = ModelSet::REVOCABLE;
    }

    struct AcceptsDynamic;
    impl Accepts for AcceptsDynamic {
        const MODELS: ModelSet = ModelSet::DYNAMIC;
    }

    struct AcceptsAll;
    impl Accepts for AcceptsAll {
        const MODELS: ModelSet = ModelSet::ALL;
    }

    struct AcceptsPrivate;
    impl Accepts for AcceptsPrivate {
        const MODELS: ModelSet = ModelSet::ALL;
        const ALLOW_PRIVATE: bool = true;
    }

    /// A mock importer that counts its invalidations.
    struct Counting<A: Accepts> {
        invalidated: Atomic<u32>,
        _accepts: PhantomData<A>,
    }

    impl<A: Accepts> Importer for Counting<A> {
        const MODELS: ModelSet = A::MODELS;
        const ALLOW_P2P: bool = true;
        const ALLOW_PRIVATE: bool = A::ALLOW_PRIVATE;

        fn invalidate(&self) {
            self.invalidated.add(1, Relaxed);
        }
    }

    /// Attaches `dev` to `buf` as a [`Counting`] importer accepting `A`.
    fn attach<A: Accepts>(buf: &DmaBuf, dev: &Device) -> Result<Attachment<Counting<A>>> {
        let importer = Counting::<A> {
            invalidated: Atomic::new(0),
            _accepts: PhantomData,
        };
        buf.attach(dev, Arc::new(importer, GFP_KERNEL)?)
    }

    /// Returns how often the importer of `attachment` was invalidated.
    fn invalidated<A: Accepts>(attachment: &Attachment<Counting<A>>) -> u32 {
        attachment.data().invalidated.load(Relaxed)
    }

    /// Returns the first range the importer of `attachment` gets now.
    fn first_range<T: Importer>(attachment: &Attachment<T>) -> Result<PhysVec> {
        let guard = attachment.dma_buf().lock();
        let mem = attachment.get_memory(&guard)?;
        let range = mem.chunks()[0].ranges()[0];
        Ok(range)
    }

    /// Returns how many descriptions the core counts as got and not yet put on `attachment`.
    ///
    /// This looks inside the C attachment, at the counter with which `dma_buf_detach()` finds
    /// leaks; the core protects it with the reservation lock that `_guard` holds.
    fn nr_memory<T: Importer>(attachment: &Attachment<T>, _guard: &ResvGuard<'_>) -> u32 {
        // SAFETY: The attachment is valid while `attachment` exists, and `_guard` holds the
        // reservation lock that protects `nr_memory`.
        unsafe { (*attachment.as_raw()).nr_memory }
    }

    /// Returns how many references to `desc` there are: the exporter's, if it shares `desc`, and
    /// one per description got and not yet put.
    ///
    /// This looks inside the C description, at its reference count, as [`nr_memory`] looks
    /// inside the attachment.
    fn refs(desc: &MemoryDesc) -> i32 {
        // SAFETY: `desc` is a valid description while it is borrowed.
        let count = unsafe { &raw mut (*desc.as_raw()).refcount.refs.counter };

        // SAFETY: `count` is the aligned counter of a `refcount_t`, valid while `desc` is borrowed
        // and only accessed atomically.
        unsafe { Atomic::from_ptr(count) }.load(Relaxed)
    }

    /// Gets the memory of the buffer of `attachment`, expecting the exporter's builder to fail
    /// with `expected`, and returns whether it did.
    fn builder_fails_with(
        exported: &Exported<Scripted>,
        attachment: &Attachment<Counting<AcceptsAll>>,
        expected: Error,
    ) -> bool {
        let guard = exported.dma_buf().lock();
        let res = attachment.get_memory(&guard).err();

        res == Some(expected)
            && exported.data().seen.load(Relaxed) == expected.to_errno()
            && nr_memory(attachment, &guard) == 0
    }

    /// Registers the faux device that attaches in a test.
    fn faux_device(name: &'static CStr) -> Result<faux::Registration> {
        faux::Registration::new(name, None)
    }

    /// Returns the device of a faux registration.
    fn device(reg: &faux::Registration) -> &Device<Bound> {
        let fdev: &faux::Device<Bound> = reg.as_ref();
        fdev.as_ref()
    }

    #[test]
    fn get_returns_the_exporters_ranges() -> Result {
        let reg = faux_device(c"dmabuf-kapi-get")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Pinned>(&tracker)?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        let guard = exported.dma_buf().lock();
        let mem = attachment.get_memory(&guard)?;
        assert_eq!(mem.size(), 4 * PAGE_SIZE);
        assert_eq!(mem.chunks().len(), 1);

        let chunk = &mem.chunks()[0];
        assert_eq!(chunk.kind(), ChunkKind::Cpu);
        assert!(chunk.provider().is_none());
        assert!(!chunk.is_private());
        assert_eq!(chunk.size(), 4 * PAGE_SIZE);
        assert!(chunk.ranges() == mock_ranges(MOCK_BASE));
        assert_eq!(tracker.gets.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn get_returns_real_pages() -> Result {
        let reg = faux_device(c"dmabuf-kapi-pages")?;
        let dev = device(&reg);
        let pages = [Page::alloc_page(GFP_KERNEL)?, Page::alloc_page(GFP_KERNEL)?];
        let exported = dma_buf::export(PageBacked { pages }, 2 * PAGE_SIZE, O_RDWR)?;
        let attachment = attach::<AcceptsPinned>(exported.dma_buf(), dev)?;

        let guard = exported.dma_buf().lock();
        let first = attachment.get_memory(&guard)?;
        let second = attachment.get_memory(&guard)?;
        let ranges = first.chunks()[0].ranges();

        assert_eq!(ranges.len(), 2);
        for range in ranges {
            assert_eq!(range.len, PAGE_SIZE);
            assert_eq!(range.paddr % PAGE, 0);
            assert!(range.paddr != 0);
        }
        assert!(ranges[0].paddr != ranges[1].paddr);
        // A pinned exporter describes the same pages every time.
        assert!(second.chunks()[0].ranges() == ranges);

        // The page view of the CPU chunk gives back exactly the exporter's pages.
        let exporter_pages = &exported.data().pages;
        let mut n = 0;
        for (i, page) in first.chunks()[0].pages()?.enumerate() {
            assert!(i < exporter_pages.len());
            assert!(page?.as_ptr() == exporter_pages[i].as_ptr());
            n += 1;
        }
        assert_eq!(n, exporter_pages.len());
        Ok(())
    }

    #[test]
    fn map_dma_buf_opt_in_leaves_get_memory_alone() -> Result {
        let reg = faux_device(c"dmabuf-kapi-map-opt-in")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let mapped = Mapped {
            page: Page::alloc_page(GFP_KERNEL)?,
            tracker: tracker.clone(),
        };
        let exported = dma_buf::export(mapped, PAGE_SIZE, O_RDWR)?;
        let attachment = attach::<AcceptsPinned>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            let mem = attachment.get_memory(&guard)?;
            assert_eq!(mem.size(), PAGE_SIZE);
            assert_eq!(mem.chunks()[0].kind(), ChunkKind::Cpu);
            assert_eq!(nr_memory(&attachment, &guard), 1);
        }

        // Getting the memory goes through `get_memory` and `put_memory` exactly once each.
        assert_eq!(tracker.gets.load(Relaxed), 1);
        assert_eq!(tracker.puts.load(Relaxed), 1);
        drop(attachment);
        drop(exported);
        assert!(tracker.wait_released());
        Ok(())
    }

    #[test]
    fn dropping_memory_puts_it() -> Result {
        let reg = faux_device(c"dmabuf-kapi-put")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Pinned>(&tracker)?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            let mem = attachment.get_memory(&guard)?;
            assert_eq!(nr_memory(&attachment, &guard), 1);
            assert_eq!(tracker.puts.load(Relaxed), 0);
            drop(mem);
            assert_eq!(nr_memory(&attachment, &guard), 0);
            // The exporter's put_memory hook ran, under the lock, exactly once.
            assert_eq!(tracker.puts.load(Relaxed), 1);
        }

        // `dma_buf_detach()` warns about descriptions not put; the run fails on any warning.
        drop(attachment);
        assert_eq!(tracker.gets.load(Relaxed), 1);
        assert_eq!(tracker.attaches.load(Relaxed), 1);
        assert_eq!(tracker.detaches.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn map_memory_keeps_one_description_until_unmapped() -> Result {
        let reg = faux_device(c"dmabuf-kapi-map")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Pinned>(&tracker)?;
        let attachment = attach::<AcceptsPinned>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            assert_eq!(attachment.map_memory(&guard)?.size(), 4 * PAGE_SIZE);
        }
        let mut guard = exported.dma_buf().lock();
        // The second call returns the kept description without asking the exporter.
        assert_eq!(attachment.map_memory(&guard)?.size(), 4 * PAGE_SIZE);
        assert_eq!(tracker.gets.load(Relaxed), 1);
        assert_eq!(nr_memory(&attachment, &guard), 1);

        attachment.unmap_memory(&mut guard)?;
        assert_eq!(nr_memory(&attachment, &guard), 0);
        Ok(())
    }

    #[test]
    fn builder_refuses_misaligned_address() -> Result {
        let reg = faux_device(c"dmabuf-kapi-addr")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            mem.range(MOCK_BASE + PAGE / 2, PAGE_SIZE)
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        assert!(builder_fails_with(&exported, &attachment, EINVAL));
        Ok(())
    }

    #[test]
    fn builder_refuses_misaligned_length() -> Result {
        let reg = faux_device(c"dmabuf-kapi-len")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            mem.range(MOCK_BASE, PAGE_SIZE / 2)
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        assert!(builder_fails_with(&exported, &attachment, EINVAL));
        Ok(())
    }

    #[test]
    fn builder_refuses_zero_length() -> Result {
        let reg = faux_device(c"dmabuf-kapi-zero")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            mem.range(MOCK_BASE, 0)
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        assert!(builder_fails_with(&exported, &attachment, EINVAL));
        Ok(())
    }

    #[test]
    fn builder_refuses_wrapping_range() -> Result {
        let reg = faux_device(c"dmabuf-kapi-wrap")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            mem.range(PhysAddr::MAX - PAGE + 1, 2 * PAGE_SIZE)
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        assert!(builder_fails_with(&exported, &attachment, EINVAL));
        Ok(())
    }

    #[test]
    fn builder_refuses_more_ranges_than_allocated() -> Result {
        let reg = faux_device(c"dmabuf-kapi-ranges")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            mem.range(MOCK_BASE, PAGE_SIZE)?;
            mem.range(MOCK_BASE + PAGE, PAGE_SIZE)
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        assert!(builder_fails_with(&exported, &attachment, ENOSPC));
        Ok(())
    }

    #[test]
    fn builder_refuses_more_chunks_than_allocated() -> Result {
        let reg = faux_device(c"dmabuf-kapi-chunks")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            mem.alloc(1, 2, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            mem.range(MOCK_BASE, PAGE_SIZE)?;
            mem.cpu_chunk()
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        assert!(builder_fails_with(&exported, &attachment, ENOSPC));
        Ok(())
    }

    #[test]
    fn builder_refuses_a_range_before_a_chunk() -> Result {
        let reg = faux_device(c"dmabuf-kapi-nochunk")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.range(MOCK_BASE, PAGE_SIZE)
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        assert!(builder_fails_with(&exported, &attachment, EINVAL));
        Ok(())
    }

    #[test]
    fn builder_refuses_bad_limits() -> Result {
        let reg = faux_device(c"dmabuf-kapi-limits")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            // Each refusal must leave the builder usable; the script fails only if one does not.
            let refused = [
                mem.alloc(0, 1, GFP_KERNEL),
                mem.alloc(MemoryBuilder::MAX_CHUNKS + 1, 1, GFP_KERNEL),
                mem.alloc(1, 0, GFP_KERNEL),
                mem.alloc(1, MemoryBuilder::MAX_RANGES + 1, GFP_KERNEL),
            ];
            if refused.iter().any(|res| *res != Err(EINVAL)) {
                return Err(EFAULT);
            }
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.alloc(1, 1, GFP_KERNEL)
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        // A second allocation is refused; the first one is freed with the builder.
        assert!(builder_fails_with(&exported, &attachment, EBUSY));
        Ok(())
    }

    #[test]
    fn core_refuses_ranges_beyond_the_buffer() -> Result {
        let reg = faux_device(c"dmabuf-kapi-oversize")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            mem.alloc(1, 1, GFP_KERNEL)?;
            mem.cpu_chunk()?;
            mem.range(MOCK_BASE, MOCK_SIZE + PAGE_SIZE)
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        let guard = exported.dma_buf().lock();
        // The core warns once per boot about a broken exporter; the C suite may have already.
        pr_info!("dmabuf-test: expect-begin warn\n");
        let res = attachment.get_memory(&guard).err();
        pr_info!("dmabuf-test: expect-end warn\n");

        assert_eq!(res, Some(EINVAL));
        // The builder accepted the range: the core caught it, and released the description.
        assert_eq!(exported.data().seen.load(Relaxed), 0);
        assert_eq!(nr_memory(&attachment, &guard), 0);
        Ok(())
    }

    #[test]
    fn negotiation_pinned_buffer() -> Result {
        let reg = faux_device(c"dmabuf-kapi-neg-pinned")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Pinned>(&tracker)?;
        let buf = exported.dma_buf();

        assert_eq!(buf.model(), Model::Pinned);
        assert!(attach::<AcceptsPinned>(buf, dev).is_ok());
        assert_eq!(attach::<AcceptsRevocable>(buf, dev).err(), Some(EOPNOTSUPP));
        assert_eq!(attach::<AcceptsDynamic>(buf, dev).err(), Some(EOPNOTSUPP));
        assert!(attach::<AcceptsAll>(buf, dev).is_ok());
        // The exporter never heard of the refused importers.
        assert_eq!(tracker.attaches.load(Relaxed), 2);
        Ok(())
    }

    #[test]
    fn negotiation_revocable_buffer() -> Result {
        let reg = faux_device(c"dmabuf-kapi-neg-revocable")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Revocable>(&tracker)?;
        let buf = exported.dma_buf();

        assert_eq!(buf.model(), Model::Revocable);
        assert_eq!(attach::<AcceptsPinned>(buf, dev).err(), Some(EOPNOTSUPP));
        assert!(attach::<AcceptsRevocable>(buf, dev).is_ok());
        assert_eq!(attach::<AcceptsDynamic>(buf, dev).err(), Some(EOPNOTSUPP));
        assert!(attach::<AcceptsAll>(buf, dev).is_ok());
        assert_eq!(tracker.attaches.load(Relaxed), 2);
        Ok(())
    }

    #[test]
    fn negotiation_dynamic_buffer() -> Result {
        let reg = faux_device(c"dmabuf-kapi-neg-dynamic")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Dynamic>(&tracker)?;
        let buf = exported.dma_buf();

        assert_eq!(buf.model(), Model::Dynamic);
        assert_eq!(attach::<AcceptsPinned>(buf, dev).err(), Some(EOPNOTSUPP));
        assert_eq!(attach::<AcceptsRevocable>(buf, dev).err(), Some(EOPNOTSUPP));
        assert!(attach::<AcceptsDynamic>(buf, dev).is_ok());
        assert!(attach::<AcceptsAll>(buf, dev).is_ok());
        assert_eq!(tracker.attaches.load(Relaxed), 2);
        Ok(())
    }

    #[test]
    fn private_buffer_needs_allow_private() -> Result {
        let reg = faux_device(c"dmabuf-kapi-neg-private")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Private>(&tracker)?;
        let buf = exported.dma_buf();

        assert_eq!(attach::<AcceptsAll>(buf, dev).err(), Some(EOPNOTSUPP));
        assert!(attach::<AcceptsPrivate>(buf, dev).is_ok());
        assert_eq!(tracker.attaches.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn private_importer_attaches_to_shared_buffer() -> Result {
        let reg = faux_device(c"dmabuf-kapi-neg-shared")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Pinned>(&tracker)?;

        assert!(attach::<AcceptsPrivate>(exported.dma_buf(), dev).is_ok());
        Ok(())
    }

    #[test]
    fn get_returns_private_chunk() -> Result {
        let reg = faux_device(c"dmabuf-kapi-private")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Private>(&tracker)?;
        let attachment = attach::<AcceptsPrivate>(exported.dma_buf(), dev)?;

        let guard = exported.dma_buf().lock();
        let mem = attachment.get_memory(&guard)?;
        let chunks = mem.chunks();
        assert_eq!(chunks.len(), 2);
        assert!(!chunks[0].is_private());
        assert!(chunks[1].is_private());
        assert_eq!(chunks[1].kind(), ChunkKind::Cpu);
        assert!(
            chunks[1].ranges()
                == [PhysVec {
                    paddr: MOCK_PRIVATE_BASE,
                    len: PAGE_SIZE,
                }]
        );
        assert_eq!(mem.size(), 5 * PAGE_SIZE);
        Ok(())
    }

    #[test]
    fn move_invalidates_once_and_get_returns_new_ranges() -> Result {
        let reg = faux_device(c"dmabuf-kapi-move")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Dynamic>(&tracker)?;
        let attachment = attach::<AcceptsDynamic>(exported.dma_buf(), dev)?;

        assert!(first_range(&attachment)?.paddr == MOCK_BASE);
        exported.move_memory(|mock| mock.base.store(MOCK_BASE + MOCK_MOVE, Relaxed));
        assert_eq!(invalidated(&attachment), 1);

        let guard = exported.dma_buf().lock();
        let mem = attachment.get_memory(&guard)?;
        assert!(mem.chunks()[0].ranges() == mock_ranges(MOCK_BASE + MOCK_MOVE));
        assert_eq!(tracker.gets.load(Relaxed), 2);
        Ok(())
    }

    #[test]
    fn move_puts_mapped_memory() -> Result {
        let reg = faux_device(c"dmabuf-kapi-move-map")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Dynamic>(&tracker)?;
        let attachment = attach::<AcceptsDynamic>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            let paddr = attachment.map_memory(&guard)?.chunks()[0].ranges()[0].paddr;
            assert!(paddr == MOCK_BASE);
        }
        exported.move_memory(|mock| mock.base.store(MOCK_BASE + MOCK_MOVE, Relaxed));

        let guard = exported.dma_buf().lock();
        // The invalidation put what `map_memory` kept; mapping again gets the new ranges.
        assert_eq!(nr_memory(&attachment, &guard), 0);
        let paddr = attachment.map_memory(&guard)?.chunks()[0].ranges()[0].paddr;
        assert!(paddr == MOCK_BASE + MOCK_MOVE);
        assert_eq!(nr_memory(&attachment, &guard), 1);
        Ok(())
    }

    #[test]
    fn revoke_invalidates_once_and_get_fails() -> Result {
        let reg = faux_device(c"dmabuf-kapi-revoke")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        first_range(&attachment)?;
        exported.revoke();
        assert_eq!(invalidated(&attachment), 1);

        let guard = exported.dma_buf().lock();
        assert!(guard.is_revoked());
        assert_eq!(attachment.get_memory(&guard).err(), Some(ENODEV));
        assert_eq!(attachment.map_memory(&guard).err(), Some(ENODEV));
        // The exporter was not asked.
        assert_eq!(tracker.gets.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn restore_lets_get_work_again() -> Result {
        let reg = faux_device(c"dmabuf-kapi-restore")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        exported.revoke();
        exported.restore();
        // Importers are not told about a restore.
        assert_eq!(invalidated(&attachment), 1);

        let guard = exported.dma_buf().lock();
        assert!(!guard.is_revoked());
        let mem = attachment.get_memory(&guard)?;
        assert!(mem.chunks()[0].ranges() == mock_ranges(MOCK_BASE));
        Ok(())
    }

    #[test]
    fn revoke_twice_invalidates_once() -> Result {
        let reg = faux_device(c"dmabuf-kapi-revoke2")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        exported.revoke();
        exported.revoke();
        assert_eq!(invalidated(&attachment), 1);
        Ok(())
    }

    #[test]
    fn drop_attachment_while_revoked() -> Result {
        let reg = faux_device(c"dmabuf-kapi-revoked-drop")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            attachment.map_memory(&guard)?;
        }
        exported.revoke();

        // Nothing is left to put: the invalidation put the mapped memory; no leak warning.
        drop(attachment);
        assert_eq!(tracker.detaches.load(Relaxed), 1);
        assert!(exported.dma_buf().lock().is_revoked());
        Ok(())
    }

    #[test]
    fn attachment_keeps_buffer_after_exporter_drops_it() -> Result {
        let reg = faux_device(c"dmabuf-kapi-orphan")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        // The `Attachment` holds a reference on the buffer: the exporter state lives on.
        drop(exported);
        assert!(!tracker.wait_released());
        assert!(first_range(&attachment)?.paddr == MOCK_BASE);

        // Detaching drops the last reference; the buffer is released afterwards.
        drop(attachment);
        assert_eq!(tracker.detaches.load(Relaxed), 1);
        assert!(tracker.wait_released());
        Ok(())
    }

    #[test]
    fn revoke_only_invalidates_idle_importer() -> Result {
        let reg = faux_device(c"dmabuf-kapi-idle")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_mock::<Revocable>(&tracker)?;
        let idle = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        exported.revoke();
        assert_eq!(invalidated(&idle), 1);
        assert_eq!(tracker.gets.load(Relaxed), 0);
        {
            let guard = exported.dma_buf().lock();
            assert_eq!(nr_memory(&idle, &guard), 0);
        }

        // The attachment is as usable as before once the exporter restores the buffer.
        exported.restore();
        assert!(first_range(&idle)?.paddr == MOCK_BASE);
        drop(idle);
        assert_eq!(tracker.detaches.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn shared_description_is_built_once_and_outlives_the_importers() -> Result {
        let reg = faux_device(c"dmabuf-kapi-shared")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_sharing::<Pinned>(&tracker, false)?;
        let first = attach::<AcceptsPinned>(exported.dma_buf(), dev)?;
        let second = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        let shared = {
            let guard = exported.dma_buf().lock();
            let a = first.get_memory(&guard)?;
            let b = second.get_memory(&guard)?;

            // Not only the same ranges: the same description, with the exporter's reference and
            // one per importer.
            assert!(a.as_raw() == b.as_raw());
            assert!(a.chunks()[0].ranges() == mock_ranges(MOCK_BASE));
            assert!(b.chunks()[0].ranges() == mock_ranges(MOCK_BASE));
            assert_eq!(a.chunks().len(), 1);
            assert_eq!(a.size(), 4 * PAGE_SIZE);
            assert_eq!(refs(&a), 3);
            a.as_raw()
        };
        assert_eq!(tracker.gets.load(Relaxed), 2);
        assert_eq!(tracker.puts.load(Relaxed), 2);

        // Both importers put it; the exporter's reference keeps it for the next importer.
        {
            let guard = exported.dma_buf().lock();
            let desc = first.map_memory(&guard)?;
            assert!(desc.as_raw() == shared);
            assert!(desc.chunks()[0].ranges() == mock_ranges(MOCK_BASE));
            assert_eq!(refs(desc), 2);
        }
        assert_eq!(tracker.builds.load(Relaxed), 1);

        // The importers go first; the last reference goes with the buffer (kmemleak checks).
        drop(first);
        drop(second);
        assert_eq!(tracker.puts.load(Relaxed), 3);
        drop(exported);
        assert!(tracker.wait_released());
        assert_eq!(tracker.builds.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn builder_holding_shared_memory_refuses_changes() -> Result {
        let reg = faux_device(c"dmabuf-kapi-shared-ro")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_sharing::<Revocable>(&tracker, true)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        // Every get tampers, and is refused each time.
        for round in 1..=2 {
            let guard = exported.dma_buf().lock();
            let mem = attachment.get_memory(&guard)?;

            // alloc, cpu_chunk, range and a second share were each refused.
            assert_eq!(tracker.refused.load(Relaxed), 4 * round);
            assert_eq!(mem.chunks().len(), 1);
            assert!(mem.chunks()[0].ranges() == mock_ranges(MOCK_BASE));
            assert_eq!(mem.size(), 4 * PAGE_SIZE);
        }
        assert_eq!(tracker.builds.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn shared_memory_new_checks_and_seals() -> Result {
        let tracker = Tracker::new()?;
        let shared = build_shared(MOCK_BASE, &tracker)?;

        assert_eq!(SharedMemory::new(|_| Ok(())).err(), Some(EINVAL));
        // The builder's error is returned as is.
        assert_eq!(
            SharedMemory::new(|mem| mem.alloc(1, 0, GFP_KERNEL)).err(),
            Some(EINVAL)
        );
        assert_eq!(
            SharedMemory::new(|mem| {
                mem.alloc(1, 1, GFP_KERNEL)?;
                mem.range(MOCK_BASE, PAGE_SIZE)
            })
            .err(),
            Some(EINVAL)
        );
        // Sealing checks what the builder cannot: a chunk without ranges is an error of
        // `SharedMemory::new`, not of an importer's get.
        assert_eq!(
            SharedMemory::new(|mem| {
                mem.alloc(1, 1, GFP_KERNEL)?;
                mem.cpu_chunk()
            })
            .err(),
            Some(EINVAL)
        );
        // Sharing a sealed description as one's own is another reference to it.
        let again = SharedMemory::new(|mem| mem.share(&shared))?;
        drop(again);
        assert_eq!(tracker.builds.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn shared_memory_serves_several_buffers() -> Result {
        let reg = faux_device(c"dmabuf-kapi-shared-two")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let memory = Arc::new(build_shared(MOCK_BASE, &tracker)?, GFP_KERNEL)?;
        let mine = dma_buf::export(
            Borrowing {
                memory: memory.clone(),
            },
            MOCK_SIZE,
            O_RDWR,
        )?;
        let other = dma_buf::export(Borrowing { memory }, MOCK_SIZE, O_RDWR)?;
        let mine_attachment = attach::<AcceptsPinned>(mine.dma_buf(), dev)?;
        let other_attachment = attach::<AcceptsPinned>(other.dma_buf(), dev)?;

        // Sealed when built, the description is never written again: both buffers' importers
        // get it, under different reservation locks.
        assert!(first_range(&mine_attachment)?.paddr == MOCK_BASE);
        assert!(first_range(&other_attachment)?.paddr == MOCK_BASE);
        assert!(first_range(&mine_attachment)?.paddr == MOCK_BASE);
        assert_eq!(tracker.builds.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn move_replaces_the_shared_description() -> Result {
        let reg = faux_device(c"dmabuf-kapi-shared-move")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exported = export_sharing::<Dynamic>(&tracker, false)?;
        let attachment = attach::<AcceptsDynamic>(exported.dma_buf(), dev)?;

        let old = {
            let guard = exported.dma_buf().lock();
            let desc = attachment.map_memory(&guard)?;
            assert!(desc.chunks()[0].ranges() == mock_ranges(MOCK_BASE));
            assert_eq!(refs(desc), 2);
            desc.as_raw()
        };

        // Build the new description outside of the reservation lock; swap it in under it.
        let new = build_shared(MOCK_BASE + MOCK_MOVE, &tracker)?;
        let old_memory =
            exported.move_memory(|sharing| core::mem::replace(&mut *sharing.memory.lock(), new));
        assert_eq!(invalidated(&attachment), 1);
        // The invalidation put the importer's reference; the exporter drops its own.
        assert_eq!(tracker.puts.load(Relaxed), 1);
        drop(old_memory);

        let guard = exported.dma_buf().lock();
        assert_eq!(nr_memory(&attachment, &guard), 0);
        let desc = attachment.map_memory(&guard)?;
        assert!(desc.as_raw() != old);
        assert!(desc.chunks()[0].ranges() == mock_ranges(MOCK_BASE + MOCK_MOVE));
        assert_eq!(refs(desc), 2);
        assert_eq!(tracker.builds.load(Relaxed), 2);
        assert_eq!(tracker.gets.load(Relaxed), 2);
        Ok(())
    }
}
