// SPDX-License-Identifier: GPL-2.0

//! A page freed when `get_memory` returns cannot be described (issue 9, item 1).
//!
//! expect: error[E0597]

use kernel::{
    dma_buf::{
        ExportAttachment,
        Exporter,
        MemoryBuilder,
        Pinned, //
    },
    page::Page,
    prelude::*, //
};

struct Temporary;

#[vtable]
impl Exporter for Temporary {
    type Model = Pinned;
    type State = ();

    fn get_memory<'a>(
        &'a self,
        _state: &'a (),
        _attach: &ExportAttachment,
        mem: &mut MemoryBuilder<'a>,
    ) -> Result {
        let page = Page::alloc_page(GFP_KERNEL)?;
        mem.alloc(1, 1, GFP_KERNEL)?;
        mem.cpu_chunk()?;
        mem.page(&page)
    }
}

module! {
    type: Test,
    name: "cf_page_outlives_description",
    license: "GPL",
}

struct Test;

impl kernel::Module for Test {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        kernel::dma_buf::export(Temporary, (), 0x1000, 0)?;
        Ok(Test)
    }
}
