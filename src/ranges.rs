// SPDX-License-Identifier: GPL-2.0

//! Physical range lists for dma-buf memory export.
//!
//! C header: [`include/linux/types.h`](srctree/include/linux/types.h) (`struct phys_vec`)
//!
//! `dma_buf_get_memory()` hands importers arrays of physical ranges. This module holds the pure
//! logic that both sides of that kAPI need for such lists: validating what an exporter returns,
//! detecting ranges that share physical bytes, finding the physical address behind a byte offset
//! of the buffer, and merging physically contiguous neighbours.
//!
//! Everything here uses `core` only and never allocates, so the same file builds into the kernel
//! module and into a host crate where it is tested with `cargo test`. Functions that need working
//! space (sorting, offset tables) take it from the caller.
//!
//! Every failure is a [`RangeError`]; [`RangeError::errno`] gives the errno to return to C.

/// `EINVAL` from `include/uapi/asm-generic/errno-base.h`.
const EINVAL: i32 = 22;

/// A contiguous range of physical memory.
///
/// Mirrors `struct phys_vec` (`phys_addr_t paddr; size_t len;`). The layout matches the C
/// structure where both `phys_addr_t` and `size_t` are 64 bits wide, i.e. on 64-bit kernels;
/// code that reinterprets a `phys_vec` array as `[PhysRange]` must assert that at build time.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// Physical address of the first byte.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
}

impl PhysRange {
    /// Creates a range of `len` bytes starting at physical address `addr`.
    pub const fn new(addr: u64, len: u64) -> Self {
        Self { addr, len }
    }

    /// Returns the physical address one past the last byte, or `None` if that wraps.
    pub const fn end(&self) -> Option<u64> {
        self.addr.checked_add(self.len)
    }
}

/// Why a list of physical ranges was rejected.
///
/// An `index` is a position in the slice that was passed to the function reporting the error;
/// for [`check_overlap`], that slice has been sorted by then (see there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeError {
    /// The page size passed by the caller is zero or not a power of two.
    BadPageSize {
        /// The page size that was passed.
        page_size: u64,
    },
    /// The list holds no ranges.
    Empty,
    /// The list holds more ranges than allowed.
    TooMany {
        /// Number of ranges in the list.
        count: usize,
        /// Largest number of ranges allowed.
        max: usize,
    },
    /// A range has a length of zero.
    ZeroLength {
        /// Position of the range.
        index: usize,
    },
    /// A range's address or length is not a multiple of the page size.
    Misaligned {
        /// Position of the range.
        index: usize,
    },
    /// A range's end (`addr + len`) does not fit in 64 bits, or adding its length to those of
    /// the ranges before it wraps.
    Overflow {
        /// Position of the range.
        index: usize,
    },
    /// Two ranges share at least one physical byte.
    Overlap {
        /// Position of the earlier range (by address) of the two.
        first: usize,
        /// Position of the later range (by address) of the two.
        second: usize,
    },
    /// The lengths of the ranges add up to more than the buffer size.
    TooBig {
        /// Sum of the lengths of all ranges.
        total: u64,
        /// Size of the buffer.
        size: u64,
    },
}

impl RangeError {
    /// Returns the positive errno value for this error.
    ///
    /// Every variant maps to `EINVAL`: each one means that an exporter (or a caller building a
    /// list) produced a malformed range list, and the dma-buf core answers a buggy exporter with
    /// a `WARN` and `-EINVAL`, as `validate_dmabuf_input()` in
    /// `drivers/vfio/pci/vfio_pci_dmabuf.c` does for the same checks (including a wrapping
    /// total). `EOVERFLOW` is left to uAPI boundaries that compute addresses from user offsets.
    /// The match is exhaustive so that a new variant has to choose its errno.
    pub const fn errno(&self) -> i32 {
        match self {
            Self::BadPageSize { .. }
            | Self::Empty
            | Self::TooMany { .. }
            | Self::ZeroLength { .. }
            | Self::Misaligned { .. }
            | Self::Overflow { .. }
            | Self::Overlap { .. }
            | Self::TooBig { .. } => EINVAL,
        }
    }
}

/// Checks a range list against the rules of `dma_buf_get_memory()` and returns its total length.
///
/// The list must hold between one and `max_ranges` ranges. Each range must be non-empty, have a
/// page-aligned address and length, and an end (`addr + len`, one past its last byte) that fits
/// in 64 bits, as `check_add_overflow()` demands in C.
/// The lengths must add up to at most `buf_size`. `page_size` must be a power of two.
///
/// The checks are done range by range, in the order given, so the error names the first
/// offending range; a total that wraps is reported as [`RangeError::Overflow`] for the range
/// that made it wrap. Overlap is not checked here, see [`check_overlap`]. Runs in O(n).
pub fn validate(
    ranges: &[PhysRange],
    page_size: u64,
    buf_size: u64,
    max_ranges: usize,
) -> Result<u64, RangeError> {
    if !page_size.is_power_of_two() {
        return Err(RangeError::BadPageSize { page_size });
    }
    if ranges.is_empty() {
        return Err(RangeError::Empty);
    }
    if ranges.len() > max_ranges {
        return Err(RangeError::TooMany {
            count: ranges.len(),
            max: max_ranges,
        });
    }

    let page_mask = page_size - 1;
    let mut total: u64 = 0;
    for (index, range) in ranges.iter().enumerate() {
        if range.len == 0 {
            return Err(RangeError::ZeroLength { index });
        }
        if (range.addr | range.len) & page_mask != 0 {
            return Err(RangeError::Misaligned { index });
        }
        if range.end().is_none() {
            return Err(RangeError::Overflow { index });
        }
        total = total
            .checked_add(range.len)
            .ok_or(RangeError::Overflow { index })?;
    }

    if total > buf_size {
        return Err(RangeError::TooBig {
            total,
            size: buf_size,
        });
    }
    Ok(total)
}

/// Checks that no two ranges share a physical byte.
///
/// `scratch` is the caller's copy of the list; it is sorted by address in place and left sorted,
/// so that on [`RangeError::Overlap`] the two offending ranges are `scratch[first]` and
/// `scratch[second]`, with `first < second`. Zero-length ranges hold no bytes and never overlap.
/// A range whose end wraps is reported as [`RangeError::Overflow`], again indexed into the sorted
/// `scratch`. Runs in O(n log n) and does not allocate.
pub fn check_overlap(scratch: &mut [PhysRange]) -> Result<(), RangeError> {
    sort_by_addr(scratch);

    // Sorted by address, and disjoint up to the current range, the previous non-empty range has
    // the highest end so far: a range overlaps an earlier one iff it overlaps that one.
    let mut previous: Option<(usize, u64)> = None;
    for (index, range) in scratch.iter().enumerate() {
        if range.len == 0 {
            continue;
        }
        if let Some((first, end)) = previous {
            if range.addr < end {
                return Err(RangeError::Overlap {
                    first,
                    second: index,
                });
            }
        }
        let end = range.end().ok_or(RangeError::Overflow { index })?;
        previous = Some((index, end));
    }
    Ok(())
}

/// Sorts `ranges` by address in place: heapsort, O(n log n), no allocation, no recursion.
///
/// `core`'s slice sorts are not used on purpose: their panic-on-inconsistent-order path is a
/// `noreturn` call objtool does not know about, which makes it warn in a kernel module.
fn sort_by_addr(ranges: &mut [PhysRange]) {
    let n = ranges.len();
    for start in (0..n / 2).rev() {
        sift_down(ranges, start, n);
    }
    for end in (1..n).rev() {
        ranges.swap(0, end);
        sift_down(ranges, 0, end);
    }
}

/// Restores the max-heap property of `heap[..end]` below `root`.
fn sift_down(heap: &mut [PhysRange], mut root: usize, end: usize) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && heap[child + 1].addr > heap[child].addr {
            child += 1;
        }
        if heap[root].addr >= heap[child].addr {
            return;
        }
        heap.swap(root, child);
        root = child;
    }
}

/// Fills in where each range starts within the buffer and returns the buffer's total length.
///
/// `starts[i]` becomes the byte offset of `ranges[i]` within the buffer, that is the sum of the
/// lengths of the ranges before it. `starts` must hold at least `ranges.len()` entries, otherwise
/// [`RangeError::TooMany`] is returned with `max` set to `starts.len()`; entries past
/// `ranges.len()` are left alone. A total that wraps is reported as [`RangeError::Overflow`].
/// The table is what [`lookup`] searches.
pub fn fill_starts(ranges: &[PhysRange], starts: &mut [u64]) -> Result<u64, RangeError> {
    if starts.len() < ranges.len() {
        return Err(RangeError::TooMany {
            count: ranges.len(),
            max: starts.len(),
        });
    }

    let mut offset: u64 = 0;
    for (index, (range, start)) in ranges.iter().zip(starts.iter_mut()).enumerate() {
        *start = offset;
        offset = offset
            .checked_add(range.len)
            .ok_or(RangeError::Overflow { index })?;
    }
    Ok(offset)
}

/// Where a byte offset of the buffer lives in physical memory, as found by [`lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Position of the range holding the byte.
    pub index: usize,
    /// Physical address of the byte.
    pub addr: u64,
    /// Bytes left in that range from this byte on, the byte itself included.
    pub remaining: u64,
}

/// Finds the physical address of the byte at `offset` within the buffer.
///
/// `starts` is the table written by [`fill_starts`] for the same `ranges`. Returns `None` if
/// `offset` is at or past the end of the buffer, or if `starts` is shorter than `ranges`.
/// Runs in O(log n).
pub fn lookup(ranges: &[PhysRange], starts: &[u64], offset: u64) -> Option<Hit> {
    let starts = starts.get(..ranges.len())?;

    // The last range starting at or before `offset`. Zero-length ranges share their start with
    // the range after them, so this lands on the non-empty one.
    let index = starts
        .partition_point(|&start| start <= offset)
        .checked_sub(1)?;
    let range = ranges[index];
    let within = offset.checked_sub(starts[index])?;
    if within >= range.len {
        return None;
    }

    Some(Hit {
        index,
        addr: range.addr.checked_add(within)?,
        remaining: range.len - within,
    })
}

/// Merges physically contiguous neighbours in place and returns the new length.
///
/// Two neighbours `a` then `b` are merged when `a.addr + a.len == b.addr`. The order of the list
/// is the order of bytes in the buffer, so the list is not sorted and the bytes it describes, in
/// order, are unchanged. Neighbours are not merged if the end of `a` or the merged length would
/// wrap. The merged list is in `ranges[..n]` for the returned `n`; entries past it are
/// unspecified. Runs in O(n).
pub fn coalesce(ranges: &mut [PhysRange]) -> usize {
    let mut merged: usize = 0;
    for next in 0..ranges.len() {
        let range = ranges[next];
        if let Some(last) = merged.checked_sub(1).map(|last| &mut ranges[last]) {
            if last.end() == Some(range.addr) {
                if let Some(len) = last.len.checked_add(range.len) {
                    last.len = len;
                    continue;
                }
            }
        }
        ranges[merged] = range;
        merged += 1;
    }
    merged
}
