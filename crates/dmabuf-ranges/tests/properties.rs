// SPDX-License-Identifier: GPL-2.0

//! Property tests: each function of the range logic agrees with a naive reference.
//!
//! The references use `u128` arithmetic and quadratic or linear scans, so they cannot share a
//! wrap-around or search bug with the code under test.

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
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const MAX_RANGES: usize = 12;

/// Ranges in a small physical space (in units of one byte), so that byte-by-byte references are
/// cheap; lengths include zero and addresses collide often.
fn small_range() -> impl Strategy<Value = PhysRange> {
    (0u64..48, 0u64..8).prop_map(|(addr, len)| PhysRange::new(addr, len))
}

fn small_ranges() -> impl Strategy<Value = Vec<PhysRange>> {
    prop::collection::vec(small_range(), 0..MAX_RANGES)
}

/// A value that is often page-aligned, sometimes near `u64::MAX`, sometimes anything.
fn wide_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..64).prop_map(|pages| pages << 12),
        2 => (0u64..4).prop_map(|pages| (u64::MAX - (pages << 12)) & !0xfff),
        1 => Just(1u64 << 63),
        1 => any::<u64>(),
    ]
}

/// Ranges anywhere in the 64-bit space; about a third start where the one before ends (with
/// wrapping), so that contiguous and overlapping neighbours are common.
fn wide_ranges() -> impl Strategy<Value = Vec<PhysRange>> {
    prop::collection::vec(
        (wide_value(), wide_value(), prop::bool::weighted(0.3)),
        0..MAX_RANGES,
    )
    .prop_map(|raw| {
        let mut ranges: Vec<PhysRange> = Vec::with_capacity(raw.len());
        for (addr, len, follow) in raw {
            let addr = match ranges.last() {
                Some(last) if follow => last.addr.wrapping_add(last.len),
                _ => addr,
            };
            ranges.push(PhysRange::new(addr, len));
        }
        ranges
    })
}

fn end128(range: &PhysRange) -> u128 {
    u128::from(range.addr) + u128::from(range.len)
}

fn overlap128(a: &PhysRange, b: &PhysRange) -> bool {
    a.len != 0 && b.len != 0 && u128::from(a.addr) < end128(b) && u128::from(b.addr) < end128(a)
}

/// The physical address of every byte of the buffer, in buffer order.
fn bytes(ranges: &[PhysRange]) -> Vec<u64> {
    ranges.iter().flat_map(|r| r.addr..r.addr + r.len).collect()
}

/// Naive `validate()`: the same rules, checked one range at a time in `u128`.
fn naive_validate(
    ranges: &[PhysRange],
    page_size: u64,
    buf_size: u64,
    max_ranges: usize,
) -> Result<u64, RangeError> {
    if page_size == 0 || page_size & (page_size - 1) != 0 {
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
    let mut total: u128 = 0;
    for (index, r) in ranges.iter().enumerate() {
        if r.len == 0 {
            return Err(RangeError::ZeroLength { index });
        }
        if r.addr % page_size != 0 || r.len % page_size != 0 {
            return Err(RangeError::Misaligned { index });
        }
        total += u128::from(r.len);
        if end128(r) > u128::from(u64::MAX) || total > u128::from(u64::MAX) {
            return Err(RangeError::Overflow { index });
        }
    }
    let total = u64::try_from(total).unwrap();
    if total > buf_size {
        return Err(RangeError::TooBig {
            total,
            size: buf_size,
        });
    }
    Ok(total)
}

/// Naive `lookup()`: walk the ranges, counting bytes.
fn naive_lookup(ranges: &[PhysRange], mut offset: u64) -> Option<Hit> {
    for (index, r) in ranges.iter().enumerate() {
        if offset < r.len {
            return Some(Hit {
                index,
                addr: r.addr + offset,
                remaining: r.len - offset,
            });
        }
        offset -= r.len;
    }
    None
}

/// Naive `coalesce()` in `u128`, into a new vector.
fn naive_coalesce(ranges: &[PhysRange]) -> Vec<PhysRange> {
    let mut out: Vec<PhysRange> = Vec::new();
    for r in ranges {
        if let Some(last) = out.last_mut() {
            let len = u128::from(last.len) + u128::from(r.len);
            if end128(last) == u128::from(r.addr) && len <= u128::from(u64::MAX) {
                last.len = u64::try_from(len).unwrap();
                continue;
            }
        }
        out.push(*r);
    }
    out
}

fn page_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (0u32..16).prop_map(|shift| 1u64 << shift),
        1 => any::<u64>(),
    ]
}

proptest! {
    // Failing inputs are saved beside this file, in properties.regressions, and tried first on
    // the next run.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn validate_agrees_with_naive(
        ranges in wide_ranges(),
        page_size in page_size(),
        raw_size in wide_value(),
        size_choice in 0u8..4,
        max_ranges in 0usize..MAX_RANGES,
    ) {
        // Half the time, a buffer size at the edge of what the list needs.
        let total: u128 = ranges.iter().map(|r| u128::from(r.len)).sum();
        let total = u64::try_from(total).unwrap_or(u64::MAX);
        let buf_size = match size_choice {
            0 => total,
            1 => total.saturating_sub(1),
            _ => raw_size,
        };
        prop_assert_eq!(
            validate(&ranges, page_size, buf_size, max_ranges),
            naive_validate(&ranges, page_size, buf_size, max_ranges)
        );
    }

    #[test]
    fn validate_never_accepts_total_above_size(
        ranges in wide_ranges(),
        buf_size in wide_value(),
    ) {
        if let Ok(total) = validate(&ranges, 1 << 12, buf_size, MAX_RANGES) {
            let naive: u128 = ranges.iter().map(|r| u128::from(r.len)).sum();
            prop_assert_eq!(u128::from(total), naive);
            prop_assert!(naive <= u128::from(buf_size));
        }
    }

    #[test]
    fn check_overlap_agrees_with_quadratic_scan(ranges in small_ranges()) {
        let naive = ranges
            .iter()
            .enumerate()
            .any(|(i, a)| ranges[i + 1..].iter().any(|b| overlap128(a, b)));

        let mut scratch = ranges.clone();
        let result = check_overlap(&mut scratch);

        prop_assert!(scratch.windows(2).all(|w| w[0].addr <= w[1].addr));
        let (mut sorted_in, mut sorted_out) = (ranges.clone(), scratch.clone());
        sorted_in.sort_by_key(|r| (r.addr, r.len));
        sorted_out.sort_by_key(|r| (r.addr, r.len));
        prop_assert_eq!(sorted_in, sorted_out);

        match result {
            Ok(()) => prop_assert!(!naive),
            Err(RangeError::Overlap { first, second }) => {
                prop_assert!(naive);
                prop_assert!(first < second);
                prop_assert!(overlap128(&scratch[first], &scratch[second]));
            }
            Err(error) => prop_assert!(false, "unexpected {:?}", error),
        }
    }

    #[test]
    fn check_overlap_reports_only_true_faults(ranges in wide_ranges()) {
        let overlaps = ranges
            .iter()
            .enumerate()
            .any(|(i, a)| ranges[i + 1..].iter().any(|b| overlap128(a, b)));
        let wraps = ranges
            .iter()
            .any(|r| r.len != 0 && end128(r) > u128::from(u64::MAX));

        let mut scratch = ranges.clone();
        match check_overlap(&mut scratch) {
            Ok(()) => prop_assert!(!overlaps && !wraps),
            Err(RangeError::Overlap { first, second }) => {
                prop_assert!(first < second);
                prop_assert!(overlap128(&scratch[first], &scratch[second]));
            }
            Err(RangeError::Overflow { index }) => {
                prop_assert!(scratch[index].end().is_none());
            }
            Err(error) => prop_assert!(false, "unexpected {:?}", error),
        }
    }

    #[test]
    fn fill_starts_are_prefix_sums(ranges in wide_ranges()) {
        let mut starts = vec![u64::MAX; ranges.len() + 1];
        let result = fill_starts(&ranges, &mut starts);

        let mut sum: u128 = 0;
        let mut wrapped_at = None;
        for (i, r) in ranges.iter().enumerate() {
            sum += u128::from(r.len);
            if sum > u128::from(u64::MAX) && wrapped_at.is_none() {
                wrapped_at = Some(i);
            }
        }
        match wrapped_at {
            Some(index) => prop_assert_eq!(result, Err(RangeError::Overflow { index })),
            None => {
                prop_assert_eq!(result, Ok(u64::try_from(sum).unwrap()));
                let mut start: u64 = 0;
                for (r, s) in ranges.iter().zip(&starts) {
                    prop_assert_eq!(*s, start);
                    start += r.len;
                }
                prop_assert_eq!(starts[ranges.len()], u64::MAX);
            }
        }
    }

    #[test]
    fn lookup_agrees_with_linear_scan_at_every_offset(ranges in small_ranges()) {
        let mut starts = vec![0; ranges.len()];
        let total = fill_starts(&ranges, &mut starts).unwrap();
        for offset in 0..=total + 2 {
            prop_assert_eq!(
                lookup(&ranges, &starts, offset),
                naive_lookup(&ranges, offset),
                "offset {}",
                offset
            );
        }
        prop_assert_eq!(lookup(&ranges, &starts, u64::MAX), None);
    }

    #[test]
    fn coalesce_preserves_byte_sequence(ranges in small_ranges()) {
        let mut merged = ranges.clone();
        let n = coalesce(&mut merged);
        prop_assert!(n <= ranges.len());
        prop_assert_eq!(bytes(&merged[..n]), bytes(&ranges));
    }

    #[test]
    fn coalesce_leaves_no_contiguous_neighbours(ranges in small_ranges()) {
        let mut merged = ranges.clone();
        let n = coalesce(&mut merged);
        for w in merged[..n].windows(2) {
            prop_assert!(w[0].addr + w[0].len != w[1].addr, "{:?}", w);
        }
    }

    #[test]
    fn coalesce_agrees_with_naive_on_wide_values(ranges in wide_ranges()) {
        let mut merged = ranges.clone();
        let n = coalesce(&mut merged);
        prop_assert_eq!(&merged[..n], &naive_coalesce(&ranges)[..]);
    }
}
