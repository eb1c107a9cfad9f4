// SPDX-License-Identifier: GPL-2.0

//! KUnit tests for `dma_buf_get_memory()` through the Rust abstraction, `kernel::dma_buf`.
//!
//! The behaviours of the C suite `dma_buf_memory` (drivers/dma-buf/dma-buf-memory-test.c),
//! reached the way a Rust driver reaches them: mock exporters written against [`Exporter`], one
//! per memory model, describing real pages that cover the whole buffer, and mock importers
//! written against [`Importer`] that count their invalidations, attached from a faux device.
//! Then what safe code must not be able to do: restore a buffer whose device is gone, keep a
//! list of dead buffers, or unload an importer's module under an attachment.
//!
//! What does not compile is tested by `tests/compile-fail/` (describing an arbitrary address
//! without `unsafe`, a page that does not outlive the description, revoking a pinned buffer).
//! The scatter-gather tables of [`Exporter::MAP_DMA_BUF`] are the C suite's: a faux device has
//! no DMA mask.
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
            BuiltMemory,
            ChunkKind,
            DeviceExports,
            DmaBuf,
            Dynamic,
            ExportAttachment,
            Exported,
            Exporter,
            Importer,
            MemoryBuilder,
            MemoryDesc,
            MemoryDraft,
            MemoryModel,
            Model,
            ModelSet,
            PhysVec,
            Pinned,
            Revocable,
            SharedMemory, //
        },
        faux,
        fs::file::flags::O_RDWR,
        io::PhysAddr,
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
            Arc, //
        },
        time::{
            delay::fsleep,
            Delta, //
        }, //
    };

    const PAGE: PhysAddr = PAGE_SIZE as PhysAddr;

    /// Pages of the mock buffers.
    const MOCK_PAGES: usize = 4;

    /// Size of the mock buffers.
    const MOCK_SIZE: usize = MOCK_PAGES * PAGE_SIZE;

    /// A page-aligned address that the builder or the core refuses before any importer sees it.
    const BOGUS: PhysAddr = 0x1000_0000;

    /// The pages of a mock buffer, and their `struct page` pointers, to compare with what an
    /// importer gets.
    struct MockPages {
        pages: KVec<Page>,
        ptrs: [usize; MOCK_PAGES],
    }

    fn mock_pages() -> Result<MockPages> {
        let mut pages = KVec::with_capacity(MOCK_PAGES, GFP_KERNEL)?;
        let mut ptrs = [0; MOCK_PAGES];
        for ptr in &mut ptrs {
            let page = Page::alloc_page(GFP_KERNEL)?;
            *ptr = page.as_ptr() as usize;
            pages.push(page, GFP_KERNEL)?;
        }
        Ok(MockPages { pages, ptrs })
    }

    /// Returns whether the CPU chunks of `desc`, in order, are exactly the pages `ptrs`.
    fn is_pages(desc: &MemoryDesc, ptrs: &[usize]) -> bool {
        let mut n = 0;
        for chunk in desc.chunks() {
            let Ok(pages) = chunk.pages() else {
                return false;
            };
            for page in pages {
                match page {
                    Ok(page) if n < ptrs.len() && page.as_ptr() as usize == ptrs[n] => n += 1,
                    _ => return false,
                }
            }
        }
        n == ptrs.len()
    }

    /// What a mock exporter saw, kept by the test beyond the life of the buffer.
    struct Tracker {
        /// Descriptions built once, as a [`SharedMemory`].
        builds: Atomic<u32>,
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
                    gets: Atomic::new(0),
                    puts: Atomic::new(0),
                    attaches: Atomic::new(0),
                    detaches: Atomic::new(0),
                    released: Atomic::new(false),
                },
                GFP_KERNEL,
            )?)
        }

        /// Descriptions got and not put yet, as the exporter counts them.
        fn outstanding(&self) -> u32 {
            self.gets.load(Relaxed) - self.puts.load(Relaxed)
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
        type Model: MemoryModel;
        const PRIVATE: bool = false;
    }

    impl Kind for Pinned {
        type Model = Pinned;
    }

    impl Kind for Revocable {
        type Model = Revocable;
    }

    impl Kind for Dynamic {
        type Model = Dynamic;
    }

    /// A pinned exporter whose last page is private memory.
    struct Private;
    impl Kind for Private {
        type Model = Pinned;
        const PRIVATE: bool = true;
    }

    /// A mock exporter: its pages, one range each, in one CPU chunk; for private exporters the
    /// last page in a private chunk of its own.
    struct Mock<K: Kind> {
        tracker: Arc<Tracker>,
        _kind: PhantomData<K>,
    }

    #[vtable]
    impl<K: Kind> Exporter for Mock<K> {
        type Model = K::Model;
        type State = KVec<Page>;
        const PRIVATE: bool = K::PRIVATE;

        fn get_memory<'a>(
            &'a self,
            pages: &'a KVec<Page>,
            _attach: &ExportAttachment,
            mem: MemoryBuilder<'a>,
        ) -> Result<BuiltMemory<'a>> {
            let (shared, private) = pages.split_at(if K::PRIVATE { 3 } else { 4 });

            let mut draft = mem.alloc(2, 4, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            shared.iter().try_for_each(|page| draft.page(page))?;
            if K::PRIVATE {
                draft.private_cpu_chunk()?;
                private.iter().try_for_each(|page| draft.page(page))?;
            }

            self.tracker.gets.add(1, Relaxed);
            Ok(draft.build())
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

    fn mock<K: Kind>(tracker: &Arc<Tracker>) -> Mock<K> {
        Mock {
            tracker: tracker.clone(),
            _kind: PhantomData,
        }
    }

    /// Exports a mock buffer of kind `K`; returns it and the pointers of its pages.
    fn export_mock<K: Kind>(
        tracker: &Arc<Tracker>,
    ) -> Result<(Exported<Mock<K>>, [usize; MOCK_PAGES])> {
        let MockPages { pages, ptrs } = mock_pages()?;
        let exported = dma_buf::export(mock::<K>(tracker), pages, MOCK_SIZE, O_RDWR)?;
        Ok((exported, ptrs))
    }

    /// A builder script.
    type Script = for<'a> fn(MemoryBuilder<'a>) -> Result<BuiltMemory<'a>>;

    /// An exporter that runs `script` on the builder and reports its result to the importer
    /// unchanged; `seen` keeps the errno, to tell the builder's errors from the core's.
    struct Scripted {
        script: Script,
        seen: Atomic<i32>,
    }

    #[vtable]
    impl Exporter for Scripted {
        type Model = Pinned;
        type State = ();

        fn get_memory<'a>(
            &'a self,
            _state: &'a (),
            _attach: &ExportAttachment,
            mem: MemoryBuilder<'a>,
        ) -> Result<BuiltMemory<'a>> {
            let res = (self.script)(mem);
            let errno = res.as_ref().err().map_or(0, |err| err.to_errno());
            self.seen.store(errno, Relaxed);
            res
        }
    }

    fn export_scripted(script: Script) -> Result<Exported<Scripted>> {
        let scripted = Scripted {
            script,
            seen: Atomic::new(0),
        };
        dma_buf::export(scripted, (), MOCK_SIZE, O_RDWR)
    }

    /// Describes `len` bytes at `paddr`, which the builder or the core refuses.
    fn refused_range(draft: &mut MemoryDraft<'_>, paddr: PhysAddr, len: usize) -> Result {
        // SAFETY: Every caller's description is refused, by the builder or the core, before any
        // importer sees it.
        unsafe { draft.range(paddr, len) }
    }

    /// Builds a description of four new pages once, as a [`SharedMemory`] that owns them, and
    /// counts the build in `tracker`.
    fn build_shared(tracker: &Tracker) -> Result<(SharedMemory<KVec<Page>>, [usize; MOCK_PAGES])> {
        let MockPages { pages, ptrs } = mock_pages()?;
        let shared = SharedMemory::new(pages, |pages, mem| {
            tracker.builds.add(1, Relaxed);
            let mut draft = mem.alloc(1, MOCK_PAGES as u32, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            pages.iter().try_for_each(|page| draft.page(page))?;
            Ok(draft.build())
        })?;
        Ok((shared, ptrs))
    }

    /// A mock exporter of kind `K` that shares one description with every importer; a dynamic
    /// one replaces it when it moves. (It cannot change the shared description: see
    /// `tests/compile-fail/shared_description_is_read_only.rs`.)
    struct Sharing<K: Kind> {
        tracker: Arc<Tracker>,
        _kind: PhantomData<K>,
    }

    #[vtable]
    impl<K: Kind> Exporter for Sharing<K> {
        type Model = K::Model;
        type State = SharedMemory<KVec<Page>>;

        fn get_memory<'a>(
            &'a self,
            memory: &'a SharedMemory<KVec<Page>>,
            _attach: &ExportAttachment,
            mem: MemoryBuilder<'a>,
        ) -> Result<BuiltMemory<'a>> {
            self.tracker.gets.add(1, Relaxed);
            Ok(mem.share(memory))
        }

        fn put_memory(&self, _attach: &ExportAttachment) {
            self.tracker.puts.add(1, Relaxed);
        }
    }

    impl<K: Kind> Drop for Sharing<K> {
        fn drop(&mut self) {
            self.tracker.released.store(true, Release);
        }
    }

    /// Exports a buffer from a sharing mock exporter of kind `K`.
    fn export_sharing<K: Kind>(
        tracker: &Arc<Tracker>,
    ) -> Result<(Exported<Sharing<K>>, [usize; MOCK_PAGES])> {
        let (memory, ptrs) = build_shared(tracker)?;
        let sharing = Sharing::<K> {
            tracker: tracker.clone(),
            _kind: PhantomData,
        };
        Ok((dma_buf::export(sharing, memory, MOCK_SIZE, O_RDWR)?, ptrs))
    }

    /// A pinned exporter sharing a description that another buffer may share too.
    struct Borrowing {
        memory: Arc<SharedMemory<KVec<Page>>>,
    }

    #[vtable]
    impl Exporter for Borrowing {
        type Model = Pinned;
        type State = ();

        fn get_memory<'a>(
            &'a self,
            _state: &'a (),
            _attach: &ExportAttachment,
            mem: MemoryBuilder<'a>,
        ) -> Result<BuiltMemory<'a>> {
            Ok(mem.share(&self.memory))
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

    /// A mock importer that counts its invalidations, and those that got a kept description.
    struct Counting<A: Accepts> {
        invalidated: Atomic<u32>,
        kept: Atomic<u32>,
        _accepts: PhantomData<A>,
    }

    #[vtable]
    impl<A: Accepts> Importer for Counting<A> {
        const MODELS: ModelSet = A::MODELS;
        const ALLOW_P2P: bool = true;
        const ALLOW_PRIVATE: bool = A::ALLOW_PRIVATE;

        fn invalidate(&self, kept: Option<&MemoryDesc>) {
            self.invalidated.add(1, Relaxed);
            if kept.is_some_and(|desc| desc.size() != 0) {
                self.kept.add(1, Relaxed);
            }
        }
    }

    /// Attaches `dev` to `buf` as a [`Counting`] importer accepting `A`.
    fn attach<A: Accepts>(buf: &DmaBuf, dev: &Device) -> Result<Attachment<Counting<A>>> {
        let importer = Counting::<A> {
            invalidated: Atomic::new(0),
            kept: Atomic::new(0),
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

    /// Returns whether the importer of `attachment` gets exactly the pages `ptrs` now.
    fn gets_pages<T: Importer>(attachment: &Attachment<T>, ptrs: &[usize]) -> Result<bool> {
        let guard = attachment.dma_buf().lock();
        let mem = attachment.get_memory(&guard)?;
        Ok(is_pages(&mem, ptrs))
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

        res == Some(expected) && exported.data().seen.load(Relaxed) == expected.to_errno()
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
    fn get_returns_the_exporters_pages() -> Result {
        let reg = faux_device(c"dmabuf-kapi-get")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, ptrs) = export_mock::<Pinned>(&tracker)?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        let guard = exported.dma_buf().lock();
        let mem = attachment.get_memory(&guard)?;
        let second = attachment.get_memory(&guard)?;
        assert_eq!(mem.size(), MOCK_SIZE);
        assert_eq!(mem.chunks().len(), 1);

        let chunk = &mem.chunks()[0];
        assert_eq!(chunk.kind(), ChunkKind::Cpu);
        assert!(!chunk.is_private());
        assert_eq!(chunk.size(), MOCK_SIZE);
        assert_eq!(chunk.ranges().len(), MOCK_PAGES);
        for range in chunk.ranges() {
            assert_eq!(range.len, PAGE_SIZE);
            assert_eq!(range.paddr % PAGE, 0);
        }
        // The page view gives back exactly the exporter's pages, every time.
        assert!(is_pages(&mem, &ptrs));
        assert!(second.chunks()[0].ranges() == chunk.ranges());
        assert_eq!(tracker.gets.load(Relaxed), 2);
        Ok(())
    }

    #[test]
    fn dropping_memory_puts_it() -> Result {
        let reg = faux_device(c"dmabuf-kapi-put")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, _) = export_mock::<Pinned>(&tracker)?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            let mem = attachment.get_memory(&guard)?;
            assert_eq!(tracker.outstanding(), 1);
            drop(mem);
            // The exporter's put_memory hook ran, under the lock, exactly once.
            assert_eq!(tracker.puts.load(Relaxed), 1);
        }

        drop(attachment);
        assert_eq!(tracker.attaches.load(Relaxed), 1);
        assert_eq!(tracker.detaches.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn keep_memory_keeps_one_description_until_put() -> Result {
        let reg = faux_device(c"dmabuf-kapi-keep")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, _) = export_mock::<Pinned>(&tracker)?;
        let attachment = attach::<AcceptsPinned>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            assert_eq!(attachment.keep_memory(&guard)?.size(), MOCK_SIZE);
        }
        let mut guard = exported.dma_buf().lock();
        // The second call returns the kept description without asking the exporter.
        assert_eq!(attachment.keep_memory(&guard)?.size(), MOCK_SIZE);
        assert_eq!(tracker.gets.load(Relaxed), 1);
        assert_eq!(tracker.outstanding(), 1);

        attachment.put_kept_memory(&mut guard)?;
        assert_eq!(tracker.outstanding(), 0);
        Ok(())
    }

    #[test]
    fn builder_refuses_misaligned_address() -> Result {
        let reg = faux_device(c"dmabuf-kapi-addr")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            refused_range(&mut draft, BOGUS + PAGE / 2, MOCK_SIZE)?;
            Ok(draft.build())
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
            let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            refused_range(&mut draft, BOGUS, PAGE_SIZE / 2)?;
            Ok(draft.build())
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
            let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            refused_range(&mut draft, BOGUS, 0)?;
            Ok(draft.build())
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
            let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            refused_range(&mut draft, PhysAddr::MAX - PAGE + 1, 2 * PAGE_SIZE)?;
            Ok(draft.build())
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
            let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            refused_range(&mut draft, BOGUS, PAGE_SIZE)?;
            refused_range(&mut draft, BOGUS + PAGE, PAGE_SIZE)?;
            Ok(draft.build())
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
            let mut draft = mem.alloc(1, 2, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            refused_range(&mut draft, BOGUS, PAGE_SIZE)?;
            draft.cpu_chunk()?;
            Ok(draft.build())
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
            let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
            refused_range(&mut draft, BOGUS, MOCK_SIZE)?;
            Ok(draft.build())
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        assert!(builder_fails_with(&exported, &attachment, EINVAL));
        Ok(())
    }

    #[test]
    fn builder_refuses_bad_limits() -> Result {
        let reg = faux_device(c"dmabuf-kapi-limits")?;
        let dev = device(&reg);
        let scripts: [Script; 4] = [
            |mem| Ok(mem.alloc(0, 1, GFP_KERNEL)?.build()),
            |mem| {
                Ok(mem
                    .alloc(MemoryBuilder::MAX_CHUNKS + 1, 1, GFP_KERNEL)?
                    .build())
            },
            |mem| Ok(mem.alloc(1, 0, GFP_KERNEL)?.build()),
            |mem| {
                Ok(mem
                    .alloc(1, MemoryBuilder::MAX_RANGES + 1, GFP_KERNEL)?
                    .build())
            },
        ];
        // A second allocation, or one after sharing, does not compile: `alloc` takes the builder.
        for script in scripts {
            let exported = export_scripted(script)?;
            let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;
            assert!(builder_fails_with(&exported, &attachment, EINVAL));
        }
        Ok(())
    }

    #[test]
    fn core_refuses_ranges_beyond_the_buffer() -> Result {
        let reg = faux_device(c"dmabuf-kapi-oversize")?;
        let dev = device(&reg);
        let exported = export_scripted(|mem| {
            let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
            draft.cpu_chunk()?;
            refused_range(&mut draft, BOGUS, MOCK_SIZE + PAGE_SIZE)?;
            Ok(draft.build())
        })?;
        let attachment = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        let guard = exported.dma_buf().lock();
        // The core warns once per boot about a broken exporter; the C suite may have already.
        pr_info!("dmabuf-test: expect-begin warn\n");
        let res = attachment.get_memory(&guard).err();
        pr_info!("dmabuf-test: expect-end warn\n");

        assert_eq!(res, Some(EINVAL));
        // The builder accepted the range: the core caught it.
        assert_eq!(exported.data().seen.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn negotiation_pinned_buffer() -> Result {
        let reg = faux_device(c"dmabuf-kapi-neg-pinned")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, _) = export_mock::<Pinned>(&tracker)?;
        let buf = exported.dma_buf();

        assert_eq!(buf.model(), Some(Model::Pinned));
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
        let (exported, _) = export_mock::<Revocable>(&tracker)?;
        let buf = exported.dma_buf();

        assert_eq!(buf.model(), Some(Model::Revocable));
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
        let (exported, _) = export_mock::<Dynamic>(&tracker)?;
        let buf = exported.dma_buf();

        assert_eq!(buf.model(), Some(Model::Dynamic));
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
        let (exported, _) = export_mock::<Private>(&tracker)?;
        let buf = exported.dma_buf();

        assert_eq!(attach::<AcceptsAll>(buf, dev).err(), Some(EOPNOTSUPP));
        assert!(attach::<AcceptsPrivate>(buf, dev).is_ok());
        assert_eq!(tracker.attaches.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn get_returns_private_chunk() -> Result {
        let reg = faux_device(c"dmabuf-kapi-private")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, ptrs) = export_mock::<Private>(&tracker)?;
        let attachment = attach::<AcceptsPrivate>(exported.dma_buf(), dev)?;

        let guard = exported.dma_buf().lock();
        let mem = attachment.get_memory(&guard)?;
        let chunks = mem.chunks();
        assert_eq!(chunks.len(), 2);
        assert!(!chunks[0].is_private());
        assert!(chunks[1].is_private());
        assert_eq!(chunks[1].kind(), ChunkKind::Cpu);
        assert_eq!(chunks[1].size(), PAGE_SIZE);
        assert_eq!(mem.size(), MOCK_SIZE);
        assert!(is_pages(&mem, &ptrs));
        Ok(())
    }

    #[test]
    fn move_invalidates_once_and_get_returns_new_pages() -> Result {
        let reg = faux_device(c"dmabuf-kapi-move")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, ptrs) = export_mock::<Dynamic>(&tracker)?;
        let attachment = attach::<AcceptsDynamic>(exported.dma_buf(), dev)?;

        assert!(gets_pages(&attachment, &ptrs)?);
        let new = mock_pages()?;
        let old = exported.move_memory(|pages| core::mem::replace(pages, new.pages));
        // No importer uses the old pages anymore.
        drop(old);
        assert_eq!(invalidated(&attachment), 1);
        assert!(gets_pages(&attachment, &new.ptrs)?);
        assert_eq!(tracker.gets.load(Relaxed), 2);
        Ok(())
    }

    #[test]
    fn move_puts_kept_memory_and_hands_it_to_invalidate() -> Result {
        let reg = faux_device(c"dmabuf-kapi-move-keep")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, ptrs) = export_mock::<Dynamic>(&tracker)?;
        let attachment = attach::<AcceptsDynamic>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            assert!(is_pages(attachment.keep_memory(&guard)?, &ptrs));
        }
        let new = mock_pages()?;
        drop(exported.move_memory(|pages| core::mem::replace(pages, new.pages)));

        // The importer got the kept description to unmap; the invalidation then put it.
        assert_eq!(attachment.data().kept.load(Relaxed), 1);
        assert_eq!(tracker.outstanding(), 0);
        let guard = exported.dma_buf().lock();
        assert!(is_pages(attachment.keep_memory(&guard)?, &new.ptrs));
        assert_eq!(tracker.outstanding(), 1);
        Ok(())
    }

    #[test]
    fn revoke_invalidates_once_and_get_fails() -> Result {
        let reg = faux_device(c"dmabuf-kapi-revoke")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, _) = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        first_range(&attachment)?;
        exported.revoke();
        assert_eq!(invalidated(&attachment), 1);

        let guard = exported.dma_buf().lock();
        assert!(guard.is_revoked());
        assert_eq!(attachment.get_memory(&guard).err(), Some(ENODEV));
        assert_eq!(attachment.keep_memory(&guard).err(), Some(ENODEV));
        // The exporter was not asked.
        assert_eq!(tracker.gets.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn restore_lets_get_work_again() -> Result {
        let reg = faux_device(c"dmabuf-kapi-restore")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, ptrs) = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        exported.revoke();
        exported.restore()?;
        // Importers are not told about a restore.
        assert_eq!(invalidated(&attachment), 1);
        assert!(!exported.dma_buf().lock().is_revoked());
        assert!(gets_pages(&attachment, &ptrs)?);
        Ok(())
    }

    #[test]
    fn revoke_twice_invalidates_once() -> Result {
        let reg = faux_device(c"dmabuf-kapi-revoke2")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, _) = export_mock::<Revocable>(&tracker)?;
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
        let (exported, _) = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        {
            let guard = exported.dma_buf().lock();
            attachment.keep_memory(&guard)?;
        }
        exported.revoke();

        // Nothing is left to put: the invalidation put the kept memory.
        assert_eq!(tracker.outstanding(), 0);
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
        let (exported, ptrs) = export_mock::<Revocable>(&tracker)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;

        // The `Attachment` holds a reference on the buffer: the exporter state lives on.
        drop(exported);
        assert!(!tracker.wait_released());
        assert!(gets_pages(&attachment, &ptrs)?);

        // Detaching drops the last reference; the buffer is released afterwards.
        drop(attachment);
        assert_eq!(tracker.detaches.load(Relaxed), 1);
        assert!(tracker.wait_released());
        Ok(())
    }

    #[test]
    fn shared_description_is_built_once_and_outlives_the_importers() -> Result {
        let reg = faux_device(c"dmabuf-kapi-shared")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, ptrs) = export_sharing::<Pinned>(&tracker)?;
        let first = attach::<AcceptsPinned>(exported.dma_buf(), dev)?;
        let second = attach::<AcceptsAll>(exported.dma_buf(), dev)?;

        let shared = {
            let guard = exported.dma_buf().lock();
            let a = first.get_memory(&guard)?;
            let b = second.get_memory(&guard)?;

            // Not only the same pages: the same description.
            assert!(a.as_raw() == b.as_raw());
            assert!(is_pages(&a, &ptrs));
            assert_eq!(a.size(), MOCK_SIZE);
            a.as_raw()
        };
        assert_eq!(tracker.gets.load(Relaxed), 2);
        assert_eq!(tracker.puts.load(Relaxed), 2);

        // Both importers put it; the exporter's reference keeps it for the next importer.
        {
            let guard = exported.dma_buf().lock();
            let desc = first.keep_memory(&guard)?;
            assert!(desc.as_raw() == shared);
            assert!(is_pages(desc, &ptrs));
        }
        assert_eq!(tracker.builds.load(Relaxed), 1);

        // The importers go first; the last reference, and the pages, go with the buffer
        // (kmemleak checks).
        drop(first);
        drop(second);
        assert_eq!(tracker.puts.load(Relaxed), 3);
        drop(exported);
        assert!(tracker.wait_released());
        Ok(())
    }

    #[test]
    fn shared_memory_new_checks_and_seals() -> Result {
        let tracker = Tracker::new()?;
        let (shared, _) = build_shared(&tracker)?;

        // The builder's error is returned as is.
        assert_eq!(
            SharedMemory::new((), |(), mem| Ok(mem.alloc(1, 0, GFP_KERNEL)?.build())).err(),
            Some(EINVAL)
        );
        assert_eq!(
            SharedMemory::new((), |(), mem| {
                let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
                refused_range(&mut draft, BOGUS, PAGE_SIZE)?;
                Ok(draft.build())
            })
            .err(),
            Some(EINVAL)
        );
        // Sealing checks what the builder cannot: a chunk without ranges is an error of
        // `SharedMemory::new`, not of an importer's get.
        assert_eq!(
            SharedMemory::new((), |(), mem| {
                let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
                draft.cpu_chunk()?;
                Ok(draft.build())
            })
            .err(),
            Some(EINVAL)
        );
        // Sharing a sealed description that the owner holds is another reference to it.
        let again = SharedMemory::new(shared, |shared, mem| Ok(mem.share(shared)))?;
        drop(again);
        assert_eq!(tracker.builds.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn shared_memory_serves_several_buffers() -> Result {
        let reg = faux_device(c"dmabuf-kapi-shared-two")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (memory, ptrs) = build_shared(&tracker)?;
        let memory = Arc::new(memory, GFP_KERNEL)?;
        let mine = dma_buf::export(
            Borrowing {
                memory: memory.clone(),
            },
            (),
            MOCK_SIZE,
            O_RDWR,
        )?;
        let other = dma_buf::export(Borrowing { memory }, (), MOCK_SIZE, O_RDWR)?;
        let mine_attachment = attach::<AcceptsPinned>(mine.dma_buf(), dev)?;
        let other_attachment = attach::<AcceptsPinned>(other.dma_buf(), dev)?;

        // Sealed when built, the description is never written again: both buffers' importers
        // get it, under different reservation locks.
        assert!(gets_pages(&mine_attachment, &ptrs)?);
        assert!(gets_pages(&other_attachment, &ptrs)?);
        assert!(gets_pages(&mine_attachment, &ptrs)?);
        assert_eq!(tracker.builds.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn move_replaces_the_shared_description() -> Result {
        let reg = faux_device(c"dmabuf-kapi-shared-move")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, ptrs) = export_sharing::<Dynamic>(&tracker)?;
        let attachment = attach::<AcceptsDynamic>(exported.dma_buf(), dev)?;

        let old = {
            let guard = exported.dma_buf().lock();
            let desc = attachment.keep_memory(&guard)?;
            assert!(is_pages(desc, &ptrs));
            desc.as_raw()
        };

        // Build the new description outside of the reservation lock; swap it in under it.
        let (new, new_ptrs) = build_shared(&tracker)?;
        let old_memory = exported.move_memory(|memory| core::mem::replace(memory, new));
        assert_eq!(invalidated(&attachment), 1);
        // The invalidation put the importer's reference; the exporter drops its own, and the
        // old pages with it.
        assert_eq!(tracker.puts.load(Relaxed), 1);
        drop(old_memory);

        let guard = exported.dma_buf().lock();
        let desc = attachment.keep_memory(&guard)?;
        assert!(desc.as_raw() != old);
        assert!(is_pages(desc, &new_ptrs));
        assert_eq!(tracker.builds.load(Relaxed), 2);
        assert_eq!(tracker.gets.load(Relaxed), 2);
        Ok(())
    }

    #[test]
    fn unbind_revokes_device_exports_for_good() -> Result {
        let owner = faux_device(c"dmabuf-kapi-bound-owner")?;
        let reg = faux_device(c"dmabuf-kapi-bound-importer")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let exports = DeviceExports::new(device(&owner))?;
        let MockPages { pages, .. } = mock_pages()?;
        let exported = exports.export(mock::<Revocable>(&tracker), pages, MOCK_SIZE, O_RDWR)?;
        let attachment = attach::<AcceptsRevocable>(exported.dma_buf(), dev)?;
        {
            let guard = exported.dma_buf().lock();
            attachment.keep_memory(&guard)?;
        }
        assert!(exports.is_bound());

        // Unbinding the owner revokes the buffer and puts what the importer kept.
        drop(owner);
        assert!(!exports.is_bound());
        assert_eq!(invalidated(&attachment), 1);
        assert_eq!(attachment.data().kept.load(Relaxed), 1);
        assert_eq!(tracker.outstanding(), 0);

        // Its memory is gone: no restore, no get, no new export.
        assert_eq!(exported.restore().err(), Some(ENODEV));
        assert_eq!(first_range(&attachment).err(), Some(ENODEV));
        let MockPages { pages, .. } = mock_pages()?;
        let res = exports.export(mock::<Revocable>(&tracker), pages, MOCK_SIZE, O_RDWR);
        assert_eq!(res.err(), Some(ENODEV));
        Ok(())
    }

    #[test]
    fn device_exports_forget_released_buffers() -> Result {
        let owner = faux_device(c"dmabuf-kapi-bound-forget")?;
        let exports = DeviceExports::new(device(&owner))?;

        for _ in 0..3 {
            let tracker = Tracker::new()?;
            let MockPages { pages, .. } = mock_pages()?;
            let exported = exports.export(mock::<Revocable>(&tracker), pages, MOCK_SIZE, O_RDWR)?;
            assert_eq!(exports.nr_exports(), 1);
            drop(exported);
            assert!(tracker.wait_released());
            // A released buffer leaves the list: it only holds buffers that exist.
            assert_eq!(exports.nr_exports(), 0);
        }
        Ok(())
    }

    #[test]
    fn attachment_pins_the_importers_module() -> Result {
        let reg = faux_device(c"dmabuf-kapi-module")?;
        let dev = device(&reg);
        let tracker = Tracker::new()?;
        let (exported, _) = export_mock::<Pinned>(&tracker)?;

        let before = dma_buf::module_refcount::<crate::LocalModule>();
        let attachment = attach::<AcceptsPinned>(exported.dma_buf(), dev)?;
        // Even a leaked attachment keeps the module that implements `invalidate` loaded.
        assert_eq!(dma_buf::module_refcount::<crate::LocalModule>(), before + 1);
        drop(attachment);
        assert_eq!(dma_buf::module_refcount::<crate::LocalModule>(), before);
        Ok(())
    }
}
