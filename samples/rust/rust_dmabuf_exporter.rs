// SPDX-License-Identifier: GPL-2.0

//! Rust dma-buf exporter sample: a few pages of system memory that can move, or that never do.
//!
//! Every open of `/dev/rust_dmabuf_exporter` exports a new dma-buf of [`NR_PAGES`] pages through
//! [`kernel::dma_buf`], with the [`Dynamic`] model: the exporter may replace the pages, and
//! importers must follow. Two ioctls act on the buffer of the open file:
//!
//! - `RUST_DMABUF_EXPORT` returns a new file descriptor of the buffer, for an importer such as
//!   `samples/rust/rust_dmabuf_importer.rs`, the C sample in `samples/c/`, or a KVM memslot;
//! - `RUST_DMABUF_MIGRATE` moves the buffer to fresh pages: importers are invalidated, and the
//!   next time they get the memory they see the new addresses.
//!
//! The pages hold [`pattern`] of the buffer's generation, 0 when it is exported and one more
//! after every move, so an importer can tell the pages it reads: a real exporter would copy the
//! contents instead.
//!
//! The buffer lives as long as the open file or any of its dma-buf file descriptors.
//!
//! A third ioctl, `RUST_DMABUF_EXPORT_PINNED`, exports another buffer of [`NR_PAGES`] pages,
//! [`Pinned`]: its pages hold [`pattern`] and never change, so importers that cannot follow
//! a move can use it too, such as iommufd, whose `IOMMU_IOAS_MAP_FILE` maps it for device DMA.
//! Importers that call `dma_buf_map_attachment()` get a scatter-gather table of the same pages,
//! mapped for their device ([`Exporter::MAP_DMA_BUF`]). Since the pages never change, the buffer
//! describes them once, as a [`SharedMemory`] that every importer gets. Its only reference is the
//! returned file descriptor.

use kernel::{
    dma_buf::{
        self,
        BuiltMemory,
        DmaBuf,
        Dynamic,
        ExportAttachment,
        Exported,
        Exporter,
        MemoryBuilder,
        Pinned,
        SharedMemory, //
    },
    fs::{
        file::{
            flags::{
                O_CLOEXEC,
                O_RDWR, //
            },
            FileDescriptorReservation, //
        },
        File, //
    },
    ioctl::_IO,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::aref::ARef, //
};

/// Size of each buffer, in pages.
const NR_PAGES: usize = 4;

/// Returns a new file descriptor (`O_CLOEXEC`) of the buffer.
const RUST_DMABUF_EXPORT: u32 = _IO(0xDB, 0x20);
/// Moves the buffer to new pages.
const RUST_DMABUF_MIGRATE: u32 = _IO(0xDB, 0x21);
/// Returns the file descriptor (`O_CLOEXEC`) of a new pinned buffer holding [`pattern`].
const RUST_DMABUF_EXPORT_PINNED: u32 = _IO(0xDB, 0x22);

module! {
    type: RustDmabufExporter,
    name: "rust_dmabuf_exporter",
    authors: ["dma-buf memory export contributors"],
    description: "Rust dma-buf exporter sample",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}

/// Allocates the pages of a buffer, zeroed: importers must not see stale kernel data.
fn alloc_pages() -> Result<KVec<Page>> {
    let mut pages = KVec::with_capacity(NR_PAGES, GFP_KERNEL)?;
    for _ in 0..NR_PAGES {
        pages.push(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?, GFP_KERNEL)?;
    }
    Ok(pages)
}

/// Describes `pages` as one chunk of CPU memory, one range per page: the pages need not be
/// contiguous. The builder borrows them for as long as importers may use the description.
fn describe<'a>(pages: &'a [Page], mem: MemoryBuilder<'a>) -> Result<BuiltMemory<'a>> {
    // CAST: `NR_PAGES` is a small constant.
    let mut draft = mem.alloc(1, NR_PAGES as u32, GFP_KERNEL)?;
    draft.cpu_chunk()?;
    pages.iter().try_for_each(|page| draft.page(page))?;
    Ok(draft.build())
}

/// The contents of a buffer of generation `generation`: the little-endian 32-bit word at byte
/// `offset` of the buffer is `offset ^ 0xdb5a_a5db ^ generation * 0x0101_0101`. Every word says
/// where it is, so a reader can tell which page and which offset it got, every byte says which
/// generation it is of (modulo 256), and no word of generation 0 is zero. Pinned buffers are of
/// generation 0.
fn pattern(offset: usize, generation: u32) -> u32 {
    // CAST: Buffer offsets are below `NR_PAGES * PAGE_SIZE`.
    offset as u32 ^ 0xdb5a_a5db ^ generation.wrapping_mul(0x0101_0101)
}

/// Fills `pages`, the pages of a buffer in order, with [`pattern`] of `generation`.
fn fill_pattern(pages: &[Page], generation: u32) -> Result {
    pages
        .iter()
        .enumerate()
        .try_for_each(|(i, page)| fill_page(page, i * PAGE_SIZE, generation))
}

/// Fills `page`, which is at byte `base` of its buffer, with [`pattern`] of `generation`.
fn fill_page(page: &Page, base: usize, generation: u32) -> Result {
    // A page does not fit on the stack: write it a few words at a time.
    let mut words = [0u32; 64];
    let len = size_of_val(&words);
    for off in (0..PAGE_SIZE).step_by(len) {
        for (i, word) in words.iter_mut().enumerate() {
            *word = pattern(base + off + i * size_of::<u32>(), generation).to_le();
        }
        // SAFETY: `words` is valid for reading `len` bytes, and no one else has the page yet.
        unsafe { page.write_raw(words.as_ptr().cast(), off, len)? };
    }
    Ok(())
}

/// Installs `buf` as a new file descriptor (`O_CLOEXEC`) of the current task.
fn install(buf: ARef<DmaBuf>) -> Result<isize> {
    let reservation = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
    let fd = isize::try_from(reservation.reserved_fd())?;
    reservation.fd_install(DmaBuf::into_file(buf));
    Ok(fd)
}

/// The exporter of a buffer whose pages may move.
struct SampleBuffer;

/// The memory of a [`SampleBuffer`] now.
struct Backing {
    /// The pages that hold the buffer.
    pages: KVec<Page>,
    /// How many times the buffer moved: the pages hold [`pattern`] of this generation.
    generation: u32,
}

#[vtable]
impl Exporter for SampleBuffer {
    type Model = Dynamic;
    // Protected by the reservation lock.
    type State = Backing;

    fn get_memory<'a>(
        &'a self,
        backing: &'a Backing,
        _attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        describe(&backing.pages, mem)
    }
}

/// The exporter of a pinned buffer: its pages, and their description, built once.
struct PinnedBuffer {
    memory: SharedMemory<KVec<Page>>,
}

#[vtable]
impl Exporter for PinnedBuffer {
    // Importers may map the pages once and keep them: nothing ever invalidates them.
    type Model = Pinned;
    type State = ();
    // So importers that want a DMA-mapped scatter-gather table can have one too.
    const MAP_DMA_BUF: bool = true;

    // Every importer, and every scatter-gather table, is served from the same description.
    fn get_memory<'a>(
        &'a self,
        _state: &'a (),
        _attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        Ok(mem.share(&self.memory))
    }
}

/// Exports a new pinned buffer, its pages filled with [`pattern`], and returns its only file
/// descriptor.
fn export_pinned() -> Result<isize> {
    let pages = alloc_pages()?;
    fill_pattern(&pages, 0)?;
    // The description owns the pages: they are freed with it, with the buffer.
    let memory = SharedMemory::new(pages, |pages, mem| describe(pages, mem))?;
    let exported = dma_buf::export(PinnedBuffer { memory }, (), NR_PAGES * PAGE_SIZE, O_RDWR)?;

    let buf = exported.dma_buf();
    pr_info!("exported {} bytes, model {:?}\n", buf.size(), buf.model());
    install(exported.into_dma_buf())
}

/// An open `/dev/rust_dmabuf_exporter`, with its buffer.
struct SampleFile {
    exported: Exported<SampleBuffer>,
}

impl SampleFile {
    fn migrate(&self) -> Result {
        // Allocate outside of the reservation lock, which importers may be waiting for.
        let new = alloc_pages()?;

        // Takes the lock, invalidates every importer and waits for their work, then fills the new
        // pages with the next generation's pattern, where a real exporter would copy the contents,
        // and swaps them in. If that fails, the importers get the old pages again.
        let (old, generation) = self.exported.move_memory(|backing| -> Result<_> {
            let generation = backing.generation.wrapping_add(1);
            fill_pattern(&new, generation)?;
            backing.generation = generation;
            Ok((core::mem::replace(&mut backing.pages, new), generation))
        })?;

        // No importer uses the old pages anymore: free them.
        drop(old);
        pr_info!("migrated {} pages, generation {}\n", NR_PAGES, generation);
        Ok(())
    }
}

#[vtable]
impl MiscDevice for SampleFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        let pages = alloc_pages()?;
        fill_pattern(&pages, 0)?;
        let backing = Backing {
            pages,
            generation: 0,
        };
        let exported = dma_buf::export(SampleBuffer, backing, NR_PAGES * PAGE_SIZE, O_RDWR)?;

        let buf = exported.dma_buf();
        pr_info!("exported {} bytes, model {:?}\n", buf.size(), buf.model());
        Ok(KBox::new(SampleFile { exported }, GFP_KERNEL)?)
    }

    fn ioctl(me: &SampleFile, _file: &File, cmd: u32, _arg: usize) -> Result<isize> {
        match cmd {
            // The new file descriptor holds its own reference to the buffer.
            RUST_DMABUF_EXPORT => install(me.exported.clone().into_dma_buf()),
            RUST_DMABUF_MIGRATE => me.migrate().map(|()| 0),
            RUST_DMABUF_EXPORT_PINNED => export_pinned(),
            _ => Err(ENOTTY),
        }
    }
}

#[pin_data]
struct RustDmabufExporter {
    #[pin]
    _miscdev: MiscDeviceRegistration<SampleFile>,
}

impl kernel::InPlaceModule for RustDmabufExporter {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!(
            "open /dev/rust_dmabuf_exporter to export {} pages\n",
            NR_PAGES
        );

        let options = MiscDeviceOptions {
            name: c"rust_dmabuf_exporter",
        };
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(options),
        })
    }
}
