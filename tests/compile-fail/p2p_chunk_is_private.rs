// SPDX-License-Identifier: GPL-2.0

//! Drivers cannot describe PCI MMIO of a provider themselves: only `P2pBar`, which revokes its
//! buffers before the provider goes away, can (issue 9, items 2 and 3).
//!
//! expect: error[E0624]

use kernel::{
    dma_buf::{
        BuiltMemory,
        ExportAttachment,
        Exporter,
        MemoryBuilder,
        P2pProvider,
        Revocable, //
    },
    prelude::*, //
};

struct Bar(&'static P2pProvider);

#[vtable]
impl Exporter for Bar {
    type Model = Revocable;
    type State = ();

    fn get_memory<'a>(
        &'a self,
        _state: &'a (),
        _attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
        draft.p2p_chunk(self.0)?;
        Ok(draft.build())
    }
}

module! {
    type: Test,
    name: "cf_p2p_chunk_is_private",
    license: "GPL",
}

struct Test;

impl kernel::Module for Test {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Test)
    }
}
