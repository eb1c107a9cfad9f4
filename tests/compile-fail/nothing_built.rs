// SPDX-License-Identifier: GPL-2.0

//! `get_memory` cannot succeed without building or sharing a description (issue 9).
//!
//! expect: error[E0308]

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

struct Nothing;

#[vtable]
impl Exporter for Nothing {
    type Model = Pinned;
    type State = ();

    fn get_memory<'a>(
        &'a self,
        _state: &'a (),
        _attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        mem.alloc(1, 1, GFP_KERNEL)?;
        Ok(())
    }
}

module! {
    type: Test,
    name: "cf_nothing_built",
    license: "GPL",
}

struct Test;

impl kernel::Module for Test {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Test)
    }
}
