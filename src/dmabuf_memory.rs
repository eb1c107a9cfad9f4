// SPDX-License-Identifier: GPL-2.0

//! dma-buf physical memory export (`dma_buf_get_memory()`): out-of-tree module.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! For now the module holds the physical range logic ([`ranges`]) that exporters and importers
//! of the kAPI share, and two KUnit suites that KUnit runs when the module is loaded into a kernel
//! built with `CONFIG_KUNIT=y`: `dmabuf_memory_ranges` for that logic, and `dmabuf_memory_kapi`
//! for `dma_buf_get_memory()` through `kernel::dma_buf`, with mock Rust exporters and importers.
//! At load time the module checks a built-in range list and logs what it found.

use crate::ranges::{
    PhysRange,
    RangeError, //
};
use kernel::{
    page::PAGE_SIZE,
    prelude::*, //
};

pub mod ranges;

// `#[kunit_tests]` compiles the suite only when `CONFIG_KUNIT=y`.
#[path = "../tests/kunit/ranges.rs"]
mod ranges_kunit;

#[path = "../tests/kunit/dma_buf.rs"]
mod dma_buf_kunit;

module! {
    type: DmabufMemory,
    name: "dmabuf_memory",
    authors: ["dma-buf memory export contributors"],
    description: "dma-buf physical memory export (dma_buf_get_memory) support",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}

const PAGE: u64 = PAGE_SIZE as u64;

/// A made-up buffer of seven pages in four ranges, the first two physically contiguous.
const EXAMPLE: [PhysRange; 4] = [
    PhysRange::new(0x1_0000_0000, 2 * PAGE),
    PhysRange::new(0x1_0000_0000 + 2 * PAGE, PAGE),
    PhysRange::new(0x8000_0000, 3 * PAGE),
    PhysRange::new(0x4000_0000, PAGE),
];

/// Size of the buffer that [`EXAMPLE`] describes.
const EXAMPLE_SIZE: u64 = 7 * PAGE;

/// What [`self_check`] found in [`EXAMPLE`].
struct SelfCheck {
    /// Total length of the ranges.
    total: u64,
    /// Number of ranges once physically contiguous neighbours are merged.
    merged: usize,
}

/// Runs [`EXAMPLE`] through the checks that `dma_buf_get_memory()` applies to an exporter.
fn self_check() -> Result<SelfCheck, RangeError> {
    let total = ranges::validate(&EXAMPLE, PAGE, EXAMPLE_SIZE, EXAMPLE.len())?;

    let mut scratch = EXAMPLE;
    ranges::check_overlap(&mut scratch)?;

    let mut merged = EXAMPLE;
    let merged = ranges::coalesce(&mut merged);

    Ok(SelfCheck { total, merged })
}

struct DmabufMemory;

impl kernel::Module for DmabufMemory {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        match self_check() {
            Ok(check) => pr_info!(
                "loaded; range self-check: {} ranges, {:#x} bytes, {} after merging\n",
                EXAMPLE.len(),
                check.total,
                check.merged
            ),
            Err(err) => pr_warn!(
                "loaded; range self-check failed: {:?} (errno {})\n",
                err,
                err.errno()
            ),
        }

        Ok(DmabufMemory)
    }
}
