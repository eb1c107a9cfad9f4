// SPDX-License-Identifier: GPL-2.0

//! A shared description cannot be changed: `BuiltMemory` has no method that would (issue 9).
//!
//! expect: error[E0599]

use kernel::{
    dma_buf::{
        BuiltMemory,
        ExportAttachment,
        Exporter,
        MemoryBuilder,
        Pinned,
        SharedMemory, //
    },
    prelude::*, //
};

struct Sharing(SharedMemory);

#[vtable]
impl Exporter for Sharing {
    type Model = Pinned;
    type State = ();

    fn get_memory<'a>(
        &'a self,
        _state: &'a (),
        _attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        let mut shared = mem.share(&self.0);
        shared.cpu_chunk()?;
        Ok(shared)
    }
}

module! {
    type: Test,
    name: "cf_shared_description_is_read_only",
    license: "GPL",
}

struct Test;

impl kernel::Module for Test {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Test)
    }
}
