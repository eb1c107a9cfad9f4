// SPDX-License-Identifier: GPL-2.0

//! Only revocable exports can be revoked and restored (issue 9, model as a type).
//!
//! expect: error[E0599]

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

struct Fixed(Page);

#[vtable]
impl Exporter for Fixed {
    type Model = Pinned;
    type State = ();

    fn get_memory<'a>(
        &'a self,
        _state: &'a (),
        _attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
        draft.cpu_chunk()?;
        draft.page(&self.0)?;
        Ok(draft.build())
    }
}

module! {
    type: Test,
    name: "cf_restore_needs_revocable",
    license: "GPL",
}

struct Test;

impl kernel::Module for Test {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let page = Page::alloc_page(GFP_KERNEL)?;
        let exported = kernel::dma_buf::export(Fixed(page), (), 0x1000, 0)?;
        exported.restore()?;
        Ok(Test)
    }
}
