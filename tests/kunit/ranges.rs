// SPDX-License-Identifier: GPL-2.0

//! KUnit tests for the dma-buf physical range logic in `src/ranges.rs`.
//!
//! The host crate `crates/dmabuf-ranges` runs the same cases, plus property tests, with
//! `cargo test`; this suite checks the logic as built into the kernel module, and that its errno
//! matches the kernel's. Included from the module's crate root; `#[kunit_tests]` compiles the
//! suite only when `CONFIG_KUNIT=y`.

#[::kernel::macros::kunit_tests(dmabuf_memory_ranges)]
mod tests {
    use crate::ranges::*;
    use kernel::error::code::EINVAL;

    const PAGE: u64 = 0x1000;
    const MAX: usize = 16;

    /// Three page-aligned ranges: 2 pages, 1 page, 3 pages (6 pages in all), not contiguous.
    const THREE: [PhysRange; 3] = [
        PhysRange::new(0x10_0000, 2 * PAGE),
        PhysRange::new(0x40_0000, PAGE),
        PhysRange::new(0x20_0000, 3 * PAGE),
    ];

    /// Returns the offset table of `THREE`.
    fn starts_of_three() -> Result<[u64; 3], RangeError> {
        let mut starts = [0; 3];
        fill_starts(&THREE, &mut starts)?;
        Ok(starts)
    }

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
    fn validate_rejects_range_ending_at_2_pow_64() {
        let ranges = [PhysRange::new(u64::MAX - PAGE + 1, PAGE)];
        assert_eq!(
            validate(&ranges, PAGE, PAGE, MAX),
            Err(RangeError::Overflow { index: 0 })
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
                size: 5 * PAGE,
            })
        );
    }

    #[test]
    fn validate_rejects_page_size_not_power_of_two() {
        assert_eq!(
            validate(&THREE, 3 * PAGE, 6 * PAGE, MAX),
            Err(RangeError::BadPageSize {
                page_size: 3 * PAGE,
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

    #[test]
    fn every_error_maps_to_kernel_einval() {
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
            assert_eq!(-error.errno(), EINVAL.to_errno());
        }
    }

    #[test]
    fn check_overlap_accepts_disjoint_ranges() {
        let mut scratch = THREE;
        assert_eq!(check_overlap(&mut scratch), Ok(()));
    }

    #[test]
    fn check_overlap_leaves_scratch_sorted_by_address() {
        let mut scratch = THREE;
        assert_eq!(check_overlap(&mut scratch), Ok(()));
        assert_eq!(scratch, [THREE[0], THREE[2], THREE[1]]);
    }

    #[test]
    fn check_overlap_accepts_touching_ranges() {
        let mut scratch = [PhysRange::new(0x2000, PAGE), PhysRange::new(0x1000, PAGE)];
        assert_eq!(check_overlap(&mut scratch), Ok(()));
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
                second: 1,
            })
        );
        assert_eq!(scratch[0], PhysRange::new(0x1000, 3 * PAGE));
    }

    #[test]
    fn check_overlap_rejects_identical_ranges() {
        let mut scratch = [THREE[1], THREE[0], THREE[1]];
        assert_eq!(
            check_overlap(&mut scratch),
            Err(RangeError::Overlap {
                first: 1,
                second: 2,
            })
        );
    }

    #[test]
    fn check_overlap_sees_past_zero_length_range() {
        let mut scratch = [
            PhysRange::new(0x3000, PAGE),
            PhysRange::new(0x2000, 0),
            PhysRange::new(0x1000, 4 * PAGE),
        ];
        assert_eq!(
            check_overlap(&mut scratch),
            Err(RangeError::Overlap {
                first: 0,
                second: 2,
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
    fn lookup_first_byte() -> Result<(), RangeError> {
        let starts = starts_of_three()?;
        assert_eq!(
            lookup(&THREE, &starts, 0),
            Some(Hit {
                index: 0,
                addr: 0x10_0000,
                remaining: 2 * PAGE,
            })
        );
        Ok(())
    }

    #[test]
    fn lookup_last_byte_of_first_range() -> Result<(), RangeError> {
        let starts = starts_of_three()?;
        assert_eq!(
            lookup(&THREE, &starts, 2 * PAGE - 1),
            Some(Hit {
                index: 0,
                addr: 0x10_0000 + 2 * PAGE - 1,
                remaining: 1,
            })
        );
        Ok(())
    }

    #[test]
    fn lookup_first_byte_of_middle_range() -> Result<(), RangeError> {
        let starts = starts_of_three()?;
        assert_eq!(
            lookup(&THREE, &starts, 2 * PAGE),
            Some(Hit {
                index: 1,
                addr: 0x40_0000,
                remaining: PAGE,
            })
        );
        Ok(())
    }

    #[test]
    fn lookup_inside_last_range() -> Result<(), RangeError> {
        let starts = starts_of_three()?;
        assert_eq!(
            lookup(&THREE, &starts, 4 * PAGE + 0x10),
            Some(Hit {
                index: 2,
                addr: 0x20_0000 + PAGE + 0x10,
                remaining: 2 * PAGE - 0x10,
            })
        );
        Ok(())
    }

    #[test]
    fn lookup_last_byte() -> Result<(), RangeError> {
        let starts = starts_of_three()?;
        assert_eq!(
            lookup(&THREE, &starts, 6 * PAGE - 1),
            Some(Hit {
                index: 2,
                addr: 0x20_0000 + 3 * PAGE - 1,
                remaining: 1,
            })
        );
        Ok(())
    }

    #[test]
    fn lookup_at_end_is_none() -> Result<(), RangeError> {
        let starts = starts_of_three()?;
        assert_eq!(lookup(&THREE, &starts, 6 * PAGE), None);
        Ok(())
    }

    #[test]
    fn lookup_past_end_is_none() -> Result<(), RangeError> {
        let starts = starts_of_three()?;
        assert_eq!(lookup(&THREE, &starts, u64::MAX), None);
        Ok(())
    }

    #[test]
    fn lookup_with_short_table_is_none() -> Result<(), RangeError> {
        let starts = starts_of_three()?;
        assert_eq!(lookup(&THREE, &starts[..2], 0), None);
        Ok(())
    }

    #[test]
    fn lookup_skips_zero_length_range() -> Result<(), RangeError> {
        let ranges = [
            PhysRange::new(0x1000, PAGE),
            PhysRange::new(0x8000, 0),
            PhysRange::new(0x5000, PAGE),
        ];
        let mut starts = [0; 3];
        fill_starts(&ranges, &mut starts)?;
        assert_eq!(
            lookup(&ranges, &starts, PAGE),
            Some(Hit {
                index: 2,
                addr: 0x5000,
                remaining: PAGE,
            })
        );
        Ok(())
    }

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
        let mut ranges = [PhysRange::new(0x2000, PAGE), PhysRange::new(0x1000, PAGE)];
        assert_eq!(coalesce(&mut ranges), 2);
        assert_eq!(ranges[0], PhysRange::new(0x2000, PAGE));
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
        assert_eq!(ranges[0], PhysRange::new(0x8000, 2 * PAGE));
        assert_eq!(ranges[1], PhysRange::new(0x1000, 2 * PAGE));
    }

    #[test]
    fn coalesce_of_empty_list_is_empty() {
        assert_eq!(coalesce(&mut []), 0);
    }

    #[test]
    fn coalesce_does_not_wrap_merged_length() {
        let half = 1 << 63;
        let mut ranges = [PhysRange::new(0, half), PhysRange::new(half, half)];
        assert_eq!(coalesce(&mut ranges), 2);
    }
}
