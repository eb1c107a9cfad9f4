// SPDX-License-Identifier: GPL-2.0

//! Example-based tests of the dma-buf physical range logic, one behaviour per test.
//!
//! `tests/kunit/ranges.rs` runs the same cases inside the kernel.

use dmabuf_ranges::{
    check_overlap,
    coalesce,
    fill_starts,
    lookup,
    validate,
    Hit,
    PhysRange,
    RangeError, //
};

const PAGE: u64 = 0x1000;
const MAX: usize = 16;

/// Three page-aligned ranges: 2 pages, 1 page, 3 pages (6 pages in all), not physically adjacent.
const THREE: [PhysRange; 3] = [
    PhysRange::new(0x10_0000, 2 * PAGE),
    PhysRange::new(0x40_0000, PAGE),
    PhysRange::new(0x20_0000, 3 * PAGE),
];

fn starts_of(ranges: &[PhysRange]) -> [u64; 3] {
    let mut starts = [0; 3];
    fill_starts(ranges, &mut starts).unwrap();
    starts
}

// validate()

#[test]
fn validate_accepts_good_list_and_returns_total() {
    assert_eq!(validate(&THREE, PAGE, 6 * PAGE, MAX), Ok(6 * PAGE));
}

#[test]
fn validate_accepts_total_below_buffer_size() {
    assert_eq!(validate(&THREE, PAGE, 8 * PAGE, MAX), Ok(6 * PAGE));
}

#[test]
fn validate_accepts_exactly_max_ranges() {
    assert_eq!(validate(&THREE, PAGE, 6 * PAGE, 3), Ok(6 * PAGE));
}

#[test]
fn validate_accepts_range_ending_below_last_page() {
    let ranges = [PhysRange::new(u64::MAX - 2 * PAGE + 1, PAGE)];
    assert_eq!(validate(&ranges, PAGE, PAGE, MAX), Ok(PAGE));
}

#[test]
fn validate_rejects_range_ending_at_2_pow_64() {
    // The exclusive end must fit in 64 bits, as with check_add_overflow() in C.
    let ranges = [PhysRange::new(u64::MAX - PAGE + 1, PAGE)];
    assert_eq!(
        validate(&ranges, PAGE, PAGE, MAX),
        Err(RangeError::Overflow { index: 0 })
    );
}

#[test]
fn validate_rejects_empty_list() {
    assert_eq!(validate(&[], PAGE, PAGE, MAX), Err(RangeError::Empty));
}

#[test]
fn validate_rejects_more_than_max_ranges() {
    assert_eq!(
        validate(&THREE, PAGE, 6 * PAGE, 2),
        Err(RangeError::TooMany { count: 3, max: 2 })
    );
}

#[test]
fn validate_rejects_zero_length_range() {
    let ranges = [THREE[0], PhysRange::new(0x40_0000, 0), THREE[2]];
    assert_eq!(
        validate(&ranges, PAGE, 6 * PAGE, MAX),
        Err(RangeError::ZeroLength { index: 1 })
    );
}

#[test]
fn validate_rejects_misaligned_address() {
    let ranges = [THREE[0], THREE[1], PhysRange::new(0x20_0800, PAGE)];
    assert_eq!(
        validate(&ranges, PAGE, 6 * PAGE, MAX),
        Err(RangeError::Misaligned { index: 2 })
    );
}

#[test]
fn validate_rejects_misaligned_length() {
    let ranges = [PhysRange::new(0x10_0000, PAGE + 1)];
    assert_eq!(
        validate(&ranges, PAGE, 2 * PAGE, MAX),
        Err(RangeError::Misaligned { index: 0 })
    );
}

#[test]
fn validate_rejects_range_wrapping_address_space() {
    let ranges = [THREE[0], PhysRange::new(u64::MAX - PAGE + 1, 2 * PAGE)];
    assert_eq!(
        validate(&ranges, PAGE, u64::MAX, MAX),
        Err(RangeError::Overflow { index: 1 })
    );
}

#[test]
fn validate_rejects_wrapping_total() {
    let half = 1 << 63;
    let ranges = [PhysRange::new(0, half), PhysRange::new(0, half)];
    assert_eq!(
        validate(&ranges, PAGE, u64::MAX, MAX),
        Err(RangeError::Overflow { index: 1 })
    );
}

#[test]
fn validate_rejects_total_above_buffer_size() {
    assert_eq!(
        validate(&THREE, PAGE, 5 * PAGE, MAX),
        Err(RangeError::TooBig {
            total: 6 * PAGE,
            size: 5 * PAGE
        })
    );
}

#[test]
fn validate_rejects_page_size_not_power_of_two() {
    assert_eq!(
        validate(&THREE, 3 * PAGE, 6 * PAGE, MAX),
        Err(RangeError::BadPageSize {
            page_size: 3 * PAGE
        })
    );
}

#[test]
fn validate_rejects_zero_page_size() {
    assert_eq!(
        validate(&THREE, 0, 6 * PAGE, MAX),
        Err(RangeError::BadPageSize { page_size: 0 })
    );
}

#[test]
fn validate_reports_first_offending_range() {
    let ranges = [PhysRange::new(0x1001, PAGE), PhysRange::new(0x3000, 0)];
    assert_eq!(
        validate(&ranges, PAGE, 2 * PAGE, MAX),
        Err(RangeError::Misaligned { index: 0 })
    );
}

// RangeError::errno()

#[test]
fn every_error_maps_to_einval() {
    let errors = [
        RangeError::BadPageSize { page_size: 3 },
        RangeError::Empty,
        RangeError::TooMany { count: 2, max: 1 },
        RangeError::ZeroLength { index: 0 },
        RangeError::Misaligned { index: 0 },
        RangeError::Overflow { index: 0 },
        RangeError::Overlap {
            first: 0,
            second: 1,
        },
        RangeError::TooBig { total: 2, size: 1 },
    ];
    for error in errors {
        assert_eq!(error.errno(), 22, "{error:?}");
    }
}

// check_overlap()

#[test]
fn check_overlap_accepts_disjoint_ranges() {
    let mut scratch = THREE;
    assert_eq!(check_overlap(&mut scratch), Ok(()));
}

#[test]
fn check_overlap_leaves_scratch_sorted_by_address() {
    let mut scratch = THREE;
    check_overlap(&mut scratch).unwrap();
    assert_eq!(scratch, [THREE[0], THREE[2], THREE[1]]);
}

#[test]
fn check_overlap_accepts_touching_ranges() {
    let mut scratch = [PhysRange::new(0x2000, PAGE), PhysRange::new(0x1000, PAGE)];
    assert_eq!(check_overlap(&mut scratch), Ok(()));
}

#[test]
fn check_overlap_accepts_empty_list() {
    assert_eq!(check_overlap(&mut []), Ok(()));
}

#[test]
fn check_overlap_rejects_partial_overlap() {
    let mut scratch = [
        PhysRange::new(0x3000, 2 * PAGE),
        PhysRange::new(0x1000, 3 * PAGE),
    ];
    assert_eq!(
        check_overlap(&mut scratch),
        Err(RangeError::Overlap {
            first: 0,
            second: 1
        })
    );
    assert_eq!(scratch[0], PhysRange::new(0x1000, 3 * PAGE));
    assert_eq!(scratch[1], PhysRange::new(0x3000, 2 * PAGE));
}

#[test]
fn check_overlap_rejects_identical_ranges() {
    let mut scratch = [THREE[1], THREE[0], THREE[1]];
    assert_eq!(
        check_overlap(&mut scratch),
        Err(RangeError::Overlap {
            first: 1,
            second: 2
        })
    );
}

#[test]
fn check_overlap_sees_past_zero_length_range() {
    // Sorted: [0x1000, 0x5000), [0x2000, 0x2000), [0x3000, 0x4000): the overlapping pair is
    // not adjacent after sorting because an empty range sorts between them.
    let mut scratch = [
        PhysRange::new(0x3000, PAGE),
        PhysRange::new(0x2000, 0),
        PhysRange::new(0x1000, 4 * PAGE),
    ];
    assert_eq!(
        check_overlap(&mut scratch),
        Err(RangeError::Overlap {
            first: 0,
            second: 2
        })
    );
}

#[test]
fn check_overlap_ignores_zero_length_range_inside_another() {
    let mut scratch = [PhysRange::new(0x1000, 4 * PAGE), PhysRange::new(0x2000, 0)];
    assert_eq!(check_overlap(&mut scratch), Ok(()));
}

#[test]
fn check_overlap_rejects_wrapping_range() {
    let mut scratch = [PhysRange::new(u64::MAX, 2), PhysRange::new(0, 1)];
    assert_eq!(
        check_overlap(&mut scratch),
        Err(RangeError::Overflow { index: 1 })
    );
}

// fill_starts() and lookup()

#[test]
fn fill_starts_writes_prefix_sums_and_returns_total() {
    let mut starts = [u64::MAX; 4];
    assert_eq!(fill_starts(&THREE, &mut starts), Ok(6 * PAGE));
    assert_eq!(starts, [0, 2 * PAGE, 3 * PAGE, u64::MAX]);
}

#[test]
fn fill_starts_rejects_short_table() {
    let mut starts = [0; 2];
    assert_eq!(
        fill_starts(&THREE, &mut starts),
        Err(RangeError::TooMany { count: 3, max: 2 })
    );
}

#[test]
fn fill_starts_rejects_wrapping_total() {
    let ranges = [PhysRange::new(0, u64::MAX), PhysRange::new(0, 1)];
    let mut starts = [0; 2];
    assert_eq!(
        fill_starts(&ranges, &mut starts),
        Err(RangeError::Overflow { index: 1 })
    );
}

#[test]
fn lookup_first_byte() {
    let starts = starts_of(&THREE);
    assert_eq!(
        lookup(&THREE, &starts, 0),
        Some(Hit {
            index: 0,
            addr: 0x10_0000,
            remaining: 2 * PAGE
        })
    );
}

#[test]
fn lookup_first_byte_of_middle_range() {
    let starts = starts_of(&THREE);
    assert_eq!(
        lookup(&THREE, &starts, 2 * PAGE),
        Some(Hit {
            index: 1,
            addr: 0x40_0000,
            remaining: PAGE
        })
    );
}

#[test]
fn lookup_last_byte_of_first_range() {
    let starts = starts_of(&THREE);
    assert_eq!(
        lookup(&THREE, &starts, 2 * PAGE - 1),
        Some(Hit {
            index: 0,
            addr: 0x10_0000 + 2 * PAGE - 1,
            remaining: 1
        })
    );
}

#[test]
fn lookup_inside_last_range() {
    let starts = starts_of(&THREE);
    assert_eq!(
        lookup(&THREE, &starts, 4 * PAGE + 0x10),
        Some(Hit {
            index: 2,
            addr: 0x20_0000 + PAGE + 0x10,
            remaining: 2 * PAGE - 0x10
        })
    );
}

#[test]
fn lookup_last_byte() {
    let starts = starts_of(&THREE);
    assert_eq!(
        lookup(&THREE, &starts, 6 * PAGE - 1),
        Some(Hit {
            index: 2,
            addr: 0x20_0000 + 3 * PAGE - 1,
            remaining: 1
        })
    );
}

#[test]
fn lookup_at_end_is_none() {
    let starts = starts_of(&THREE);
    assert_eq!(lookup(&THREE, &starts, 6 * PAGE), None);
}

#[test]
fn lookup_past_end_is_none() {
    let starts = starts_of(&THREE);
    assert_eq!(lookup(&THREE, &starts, u64::MAX), None);
}

#[test]
fn lookup_in_empty_list_is_none() {
    assert_eq!(lookup(&[], &[], 0), None);
}

#[test]
fn lookup_with_short_table_is_none() {
    let starts = starts_of(&THREE);
    assert_eq!(lookup(&THREE, &starts[..2], 0), None);
}

#[test]
fn lookup_skips_zero_length_range() {
    let ranges = [
        PhysRange::new(0x1000, PAGE),
        PhysRange::new(0x8000, 0),
        PhysRange::new(0x5000, PAGE),
    ];
    let starts = starts_of(&ranges);
    assert_eq!(
        lookup(&ranges, &starts, PAGE),
        Some(Hit {
            index: 2,
            addr: 0x5000,
            remaining: PAGE
        })
    );
}

// coalesce()

#[test]
fn coalesce_merges_contiguous_neighbours() {
    let mut ranges = [
        PhysRange::new(0x1000, PAGE),
        PhysRange::new(0x2000, 2 * PAGE),
        PhysRange::new(0x4000, PAGE),
    ];
    assert_eq!(coalesce(&mut ranges), 1);
    assert_eq!(ranges[0], PhysRange::new(0x1000, 4 * PAGE));
}

#[test]
fn coalesce_keeps_non_contiguous_ranges() {
    let mut ranges = THREE;
    assert_eq!(coalesce(&mut ranges), 3);
    assert_eq!(ranges, THREE);
}

#[test]
fn coalesce_does_not_merge_out_of_order_ranges() {
    // Physically contiguous, but the buffer holds the higher page first.
    let mut ranges = [PhysRange::new(0x2000, PAGE), PhysRange::new(0x1000, PAGE)];
    assert_eq!(coalesce(&mut ranges), 2);
    assert_eq!(
        ranges,
        [PhysRange::new(0x2000, PAGE), PhysRange::new(0x1000, PAGE)]
    );
}

#[test]
fn coalesce_preserves_order_of_merged_runs() {
    let mut ranges = [
        PhysRange::new(0x8000, PAGE),
        PhysRange::new(0x9000, PAGE),
        PhysRange::new(0x1000, PAGE),
        PhysRange::new(0x2000, PAGE),
    ];
    assert_eq!(coalesce(&mut ranges), 2);
    assert_eq!(
        ranges[..2],
        [
            PhysRange::new(0x8000, 2 * PAGE),
            PhysRange::new(0x1000, 2 * PAGE)
        ]
    );
}

#[test]
fn coalesce_of_empty_list_is_empty() {
    assert_eq!(coalesce(&mut []), 0);
}

#[test]
fn coalesce_merges_up_to_largest_length() {
    let half = 1 << 63;
    let mut ranges = [PhysRange::new(0, half), PhysRange::new(half, half - 1)];
    assert_eq!(coalesce(&mut ranges), 1);
    assert_eq!(ranges[0], PhysRange::new(0, u64::MAX));
}

#[test]
fn coalesce_does_not_wrap_merged_length() {
    // Only a second range that itself wraps can make the merged length wrap.
    let half = 1 << 63;
    let mut ranges = [PhysRange::new(0, half), PhysRange::new(half, half)];
    assert_eq!(coalesce(&mut ranges), 2);
    assert_eq!(
        ranges,
        [PhysRange::new(0, half), PhysRange::new(half, half)]
    );
}

#[test]
fn coalesce_does_not_merge_after_wrapping_range() {
    let mut ranges = [PhysRange::new(u64::MAX, 2), PhysRange::new(1, 1)];
    assert_eq!(coalesce(&mut ranges), 2);
}
