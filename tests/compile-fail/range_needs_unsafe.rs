// SPDX-License-Identifier: GPL-2.0

//! Describing an arbitrary physical address is `unsafe` (issue 9, item 1).
//!
//! expect: error[E0133]

use kernel::{
    dma_buf::{
        BuiltMemory,
        ExportAttachment,
        Exporter,
        MemoryBuilder,
        Pinned, //
    },
    prelude::*, //
};

struct Anywhere;

#[vtable]
impl Exporter for Anywhere {
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
        draft.range(0x1000_0000, 0x1000)?;
        Ok(draft.build())
    }
}

module! {
    type: Test,
    name: "cf_range_needs_unsafe",
    license: "GPL",
}

struct Test;

impl kernel::Module for Test {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        kernel::dma_buf::export(Anywhere, (), 0x1000, 0)?;
        Ok(Test)
    }
}
