//! Batching of reassembled elements into NATS-sized JSON arrays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::value::RawValue;
use sr_chunking::{
    BatchError, DEFAULT_HEADER_RESERVE_BYTES, DEFAULT_NATS_MAX_PAYLOAD, batch_budget, plan_batches,
    split_into_batches,
};

fn raw(texts: &[&str]) -> Vec<Box<RawValue>> {
    texts
        .iter()
        .map(|text| RawValue::from_string((*text).to_owned()).unwrap())
        .collect()
}

/// A JSON string element of exactly `size` bytes (`size >= 2`).
fn sized(size: usize) -> Box<RawValue> {
    RawValue::from_string(format!("\"{}\"", "x".repeat(size - 2))).unwrap()
}

fn texts_of(batch: &[u8]) -> Vec<String> {
    let elements: Vec<Box<RawValue>> = serde_json::from_slice(batch).expect("valid JSON array");
    elements.iter().map(|e| e.get().to_owned()).collect()
}

#[test]
fn batches_fit_the_budget_parse_as_arrays_and_keep_element_order() {
    let elements: Vec<Box<RawValue>> = (0..1000)
        .map(|i| {
            RawValue::from_string(format!(
                r#"{{"ip":"10.0.{}.{}","n":{i}}}"#,
                i / 256,
                i % 256
            ))
            .unwrap()
        })
        .collect();
    let max = 4096;
    let batches = split_into_batches(&elements, max).unwrap();
    assert!(batches.len() > 1);
    let mut seen = Vec::new();
    for batch in &batches {
        assert!(batch.len() <= max);
        seen.extend(texts_of(batch));
    }
    let expected: Vec<String> = elements.iter().map(|e| e.get().to_owned()).collect();
    assert_eq!(seen, expected);
}

#[test]
fn a_batch_may_be_exactly_the_budget_but_not_one_byte_more() {
    let elements = raw(&["1", "2"]);
    // `[1,2]` is 5 bytes.
    let cases: [(usize, Vec<&[u8]>); 3] = [
        (5, vec![b"[1,2]"]),
        (4, vec![b"[1]", b"[2]"]),
        (3, vec![b"[1]", b"[2]"]),
    ];
    for (max, expected) in cases {
        let batches = split_into_batches(&elements, max).unwrap();
        let expected: Vec<Vec<u8>> = expected.into_iter().map(<[u8]>::to_vec).collect();
        assert_eq!(batches, expected, "max {max}");
    }
}

#[test]
fn an_element_exactly_filling_a_batch_alone_is_accepted() {
    let elements = vec![sized(10), sized(98), sized(10)];
    let batches = split_into_batches(&elements, 100).unwrap();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![12, 100, 12]);
}

#[test]
fn an_element_too_large_for_any_batch_is_an_error_naming_it() {
    let elements = vec![sized(10), sized(99), sized(200)];
    let error = split_into_batches(&elements, 100).unwrap_err();
    assert_eq!(
        error,
        BatchError::ElementTooLarge {
            index: 1,
            size: 99,
            max: 100
        }
    );
    assert_eq!(
        error.to_string(),
        "element 1 is 99 bytes; a batch holds at most 100 bytes including its brackets"
    );
}

#[test]
fn no_elements_make_no_batches() {
    let none: Vec<Box<RawValue>> = Vec::new();
    assert!(split_into_batches(&none, 100).unwrap().is_empty());
    assert!(split_into_batches(&none, 0).unwrap().is_empty());
    assert!(plan_batches(&none, 100).unwrap().is_empty());
}

#[test]
fn borrowed_and_boxed_elements_batch_identically() {
    let boxed = raw(&["{\"a\":1}", "[2, 3]", "\"four\"", "null"]);
    let borrowed: Vec<&RawValue> = boxed.iter().map(AsRef::as_ref).collect();
    for max in [9, 12, 20, 100] {
        assert_eq!(
            split_into_batches(&boxed, max).unwrap(),
            split_into_batches(&borrowed, max).unwrap(),
            "max {max}"
        );
    }
}

#[test]
fn the_plan_matches_the_batches_built() {
    let elements = raw(&["1", "22", "333", "4444", "55555", "6"]);
    let ranges = plan_batches(&elements, 9).unwrap();
    assert_eq!(ranges, vec![0..2, 2..3, 3..4, 4..6]);
    let batches = split_into_batches(&elements, 9).unwrap();
    assert_eq!(batches.len(), ranges.len());
    assert_eq!(batches[0], b"[1,22]".to_vec());
}

#[test]
fn the_batch_budget_is_the_server_payload_minus_the_header_reserve() {
    let cases = [
        (
            DEFAULT_NATS_MAX_PAYLOAD,
            DEFAULT_HEADER_RESERVE_BYTES,
            Ok(1024 * 1024 - 4096),
        ),
        (10, 7, Ok(3)),
        (
            10,
            8,
            Err(BatchError::BudgetTooSmall {
                max_payload: 10,
                header_reserve: 8,
            }),
        ),
        (
            5,
            10,
            Err(BatchError::BudgetTooSmall {
                max_payload: 5,
                header_reserve: 10,
            }),
        ),
    ];
    for (max_payload, reserve, expected) in cases {
        assert_eq!(
            batch_budget(max_payload, reserve),
            expected,
            "{max_payload} - {reserve}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_elements_are_batched_greedily_within_budget_or_the_first_oversize_one_is_named(
        sizes in prop::collection::vec(2usize..120, 0..80),
        max in 0usize..400,
    ) {
        let elements: Vec<Box<RawValue>> = sizes.iter().map(|&size| sized(size)).collect();
        match split_into_batches(&elements, max) {
            Ok(batches) => {
                prop_assert!(sizes.iter().all(|size| size + 2 <= max));
                let mut seen = Vec::new();
                let mut per_batch = Vec::new();
                for batch in &batches {
                    prop_assert!(batch.len() <= max);
                    let texts = texts_of(batch);
                    prop_assert!(!texts.is_empty());
                    per_batch.push(texts.clone());
                    seen.extend(texts);
                }
                let expected: Vec<String> = elements.iter().map(|e| e.get().to_owned()).collect();
                prop_assert_eq!(seen, expected);
                for pair in per_batch.windows(2) {
                    let used: usize = 1 + pair[0].len() + pair[0].iter().map(String::len).sum::<usize>();
                    prop_assert!(used + 1 + pair[1][0].len() > max, "batch closed early");
                }
            }
            Err(BatchError::ElementTooLarge { index, size, max: reported }) => {
                prop_assert_eq!(reported, max);
                prop_assert_eq!(size, sizes[index]);
                prop_assert!(size + 2 > max);
                prop_assert!(sizes[..index].iter().all(|s| s + 2 <= max));
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}
