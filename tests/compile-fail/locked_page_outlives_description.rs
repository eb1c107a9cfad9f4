// SPDX-License-Identifier: GPL-2.0

//! A page behind a lock that `get_memory` drops cannot be described: it could be freed while
//! importers use it (issue 9, item 1). Lock-protected memory is `Exporter::State`.
//!
//! expect: error[E0515]

use kernel::{
    dma_buf::{
        BuiltMemory,
        Dynamic,
        ExportAttachment,
        Exporter,
        MemoryBuilder, //
    },
    new_mutex,
    page::Page,
    prelude::*,
    sync::Mutex, //
};

#[pin_data]
struct Locked {
    #[pin]
    page: Mutex<Page>,
}

#[vtable]
impl Exporter for Locked {
    type Model = Dynamic;
    type State = ();

    fn get_memory<'a>(
        &'a self,
        _state: &'a (),
        _attach: &ExportAttachment,
        mem: MemoryBuilder<'a>,
    ) -> Result<BuiltMemory<'a>> {
        let page = self.page.lock();
        let mut draft = mem.alloc(1, 1, GFP_KERNEL)?;
        draft.cpu_chunk()?;
        draft.page(&page)?;
        Ok(draft.build())
    }
}

module! {
    type: Test,
    name: "cf_locked_page_outlives_description",
    license: "GPL",
}

struct Test;

impl kernel::Module for Test {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let page = Page::alloc_page(GFP_KERNEL)?;
        kernel::dma_buf::export(
            pin_init!(Locked { page <- new_mutex!(page) }),
            (),
            0x1000,
            0,
        )?;
        Ok(Test)
    }
}
