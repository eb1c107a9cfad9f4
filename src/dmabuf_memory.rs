// SPDX-License-Identifier: GPL-2.0

//! dma-buf physical memory export (`dma_buf_get_memory()`): the out-of-tree test module.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! The module carries the KUnit suite `dmabuf_memory_kapi`, which tests `dma_buf_get_memory()`
//! through `kernel::dma_buf` with mock Rust exporters and importers. KUnit runs it when the
//! module is loaded into a kernel built with `CONFIG_KUNIT=y`; doctests of an out-of-tree module
//! never run, so its tests are `#[kunit_tests]`.

use kernel::prelude::*;

// `#[kunit_tests]` compiles the suite only when `CONFIG_KUNIT=y`.
#[path = "../tests/kunit/dma_buf.rs"]
mod dma_buf_kunit;

module! {
    type: DmabufMemory,
    name: "dmabuf_memory",
    authors: ["dma-buf memory export contributors"],
    description: "dma-buf physical memory export (dma_buf_get_memory) tests",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}

struct DmabufMemory;

impl kernel::Module for DmabufMemory {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("loaded\n");
        Ok(DmabufMemory)
    }
}
