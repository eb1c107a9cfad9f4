// SPDX-License-Identifier: GPL-2.0

//! Host build of the dma-buf physical range logic.
//!
//! The logic lives in the repository's `src/ranges.rs`, which the out-of-tree kernel module
//! builds as its `ranges` module. This crate includes the same file so that it can be tested
//! with `cargo test` (see `tests/`). It is `no_std`, like the kernel, so anything in
//! `ranges.rs` that needs `std` or `alloc` fails to build here too.

#![no_std]

#[path = "../../../src/ranges.rs"]
mod ranges;

pub use ranges::*;
