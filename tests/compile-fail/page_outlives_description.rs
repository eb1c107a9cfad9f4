// SPDX-License-Identifier: GPL-2.0

//! A page freed when `get_memory` returns cannot be described (issue 9, item 1).
//!
//! expect: error[E0515]

use kernel::{
    dma_buf::{
        BuiltMemory,
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
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        let page = Page::alloc_page(GFP_KERNEL)?;
        let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
        draft.cpu_chunk()?;
        draft.page(&page)?;
        Ok(draft.build())
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
