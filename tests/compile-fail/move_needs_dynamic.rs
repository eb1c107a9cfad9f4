// SPDX-License-Identifier: GPL-2.0

//! Only dynamic exports can move their memory (issue 9, model as a type).
//!
//! expect: error[E0599]

use kernel::{
    dma_buf::{
        BuiltMemory,
        ExportAttachment,
        Exporter,
        MemoryBuilder,
        Revocable, //
    },
    page::Page,
    prelude::*, //
};

struct Revoked;

#[vtable]
impl Exporter for Revoked {
    type Model = Revocable;
    type State = Page;

    fn get_memory<'a>(
        &'a self,
        page: &'a Page,
        _attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
        draft.cpu_chunk()?;
        draft.page(page)?;
        Ok(draft.build())
    }
}

module! {
    type: Test,
    name: "cf_move_needs_dynamic",
    license: "GPL",
}

struct Test;

impl kernel::Module for Test {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let page = Page::alloc_page(GFP_KERNEL)?;
        let exported = kernel::dma_buf::export(Revoked, page, 0x1000, 0)?;
        let new = Page::alloc_page(GFP_KERNEL)?;
        drop(exported.move_memory(|page| core::mem::replace(page, new)));
        Ok(Test)
    }
}
