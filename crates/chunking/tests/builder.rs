//! Chunk building on the sender side.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;

use proptest::prelude::*;
use serde::Serialize;
use serde_json::value::RawValue;
use sr_chunking::{
    Chunk, ChunkBuilder, ChunkLimits, DEFAULT_MAX_CHUNK_BYTES, HARD_MAX_CHUNK_BYTES, LimitsError,
    PushError,
};

const MIB: usize = 1024 * 1024;

#[derive(Serialize)]
struct Device {
    device_id: String,
    ip: String,
    source: &'static str,
}

fn device(i: usize) -> Device {
    Device {
        device_id: format!("armis:{i}"),
        ip: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
        source: "armis",
    }
}

/// A device object serialised to exactly `size` bytes (`size >= 21`), tagged with `i`.
fn padded_device(i: usize, size: usize) -> String {
    let head = format!("{{\"i\":\"{i:06}\",\"p\":\"");
    let pad = size - head.len() - 2;
    let json = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(json.len(), size);
    json
}

/// Parses a chunk as a JSON array and returns its elements' raw text.
fn elements_of(payload: &[u8]) -> Vec<String> {
    let elements: Vec<Box<RawValue>> =
        serde_json::from_slice(payload).expect("chunk is a JSON array");
    elements
        .into_iter()
        .map(|element| element.get().to_owned())
        .collect()
}

fn build(limits: ChunkLimits, devices: &[String]) -> Vec<Chunk> {
    let mut builder = ChunkBuilder::new(limits);
    for device in devices {
        builder.push_serialized(device.as_bytes()).unwrap();
    }
    let expected_count = builder.chunk_count();
    let chunks = builder.finish_chunks();
    assert_eq!(chunks.len(), expected_count);
    chunks
}

#[test]
fn twenty_thousand_small_devices_fill_chunks_within_both_budgets_and_keep_order() {
    let limits = ChunkLimits::default();
    let mut builder = ChunkBuilder::new(limits);
    let mut expected = Vec::new();
    for i in 0..20_000 {
        let device = device(i);
        expected.push(serde_json::to_string(&device).unwrap());
        builder.push(&device).unwrap();
    }
    assert_eq!(builder.device_count(), 20_000);

    let chunks = builder.finish_chunks();
    // Small devices: the device count, not the byte budget, closes each chunk.
    assert_eq!(chunks.len(), 20);
    let mut seen = Vec::new();
    for chunk in &chunks {
        assert!(chunk.payload.len() <= DEFAULT_MAX_CHUNK_BYTES);
        let elements = elements_of(&chunk.payload);
        assert!(elements.len() <= 1000);
        assert_eq!(elements.len(), chunk.device_count);
        seen.extend(elements);
    }
    assert_eq!(seen.len(), 20_000);
    assert_eq!(seen, expected);
}

#[test]
fn megabyte_devices_go_alone_and_only_a_lone_oversize_device_exceeds_the_budget() {
    let sizes = [
        MIB - 2,    // fills a chunk exactly: `[` + device + `]` == 1 MiB
        MIB - 1000, // alone: a second device of this size cannot fit
        MIB + 10,   // oversize: alone, over budget
        MIB - 1000,
        2 * MIB, // oversize
        MIB / 2 + 1,
    ];
    let devices: Vec<String> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| padded_device(i, size))
        .collect();

    let chunks = build(ChunkLimits::default(), &devices);

    assert_eq!(chunks.len(), 6);
    let mut seen = Vec::new();
    for chunk in &chunks {
        assert_eq!(chunk.device_count, 1);
        let elements = elements_of(&chunk.payload);
        if chunk.payload.len() > MIB {
            assert_eq!(
                elements.len(),
                1,
                "only a lone device may exceed the budget"
            );
            assert!(elements[0].len() + 2 > MIB);
        }
        seen.extend(elements);
    }
    assert_eq!(seen, devices);
    assert_eq!(chunks[0].payload.len(), MIB);
}

#[test]
fn small_devices_share_a_chunk_with_a_half_megabyte_device_when_the_budget_allows() {
    let devices = vec![
        padded_device(0, MIB / 2),
        padded_device(1, 100),
        padded_device(2, MIB / 2),
    ];
    let chunks = build(ChunkLimits::default(), &devices);
    let counts: Vec<usize> = chunks.iter().map(|chunk| chunk.device_count).collect();
    assert_eq!(counts, vec![2, 1]);
}

#[test]
fn empty_stream_is_exactly_one_empty_array_chunk() {
    let builder = ChunkBuilder::new(ChunkLimits::default());
    assert_eq!(builder.chunk_count(), 1);
    assert_eq!(builder.finish(), vec![b"[]".to_vec()]);

    let chunks = ChunkBuilder::new(ChunkLimits::default()).finish_chunks();
    assert_eq!(
        chunks,
        vec![Chunk {
            index: 0,
            total: 1,
            is_final: true,
            device_count: 0,
            payload: b"[]".to_vec(),
        }]
    );
}

#[test]
fn chunk_plan_numbers_chunks_from_zero_with_constant_total_and_only_the_last_final() {
    let devices: Vec<String> = (0..7).map(|i| padded_device(i, 24)).collect();
    let chunks = build(ChunkLimits::new(1024, 3).unwrap(), &devices);
    let plan: Vec<(i32, i32, bool, usize)> = chunks
        .iter()
        .map(|chunk| (chunk.index, chunk.total, chunk.is_final, chunk.device_count))
        .collect();
    assert_eq!(
        plan,
        vec![(0, 3, false, 3), (1, 3, false, 3), (2, 3, true, 1)]
    );
}

#[test]
fn chunk_closes_exactly_at_the_byte_budget() {
    // Two 24-byte devices make `[` 24 `,` 24 `]` = 51 bytes.
    let devices: Vec<String> = (0..2).map(|i| padded_device(i, 24)).collect();
    let cases = [(51, vec![2]), (50, vec![1, 1]), (52, vec![2])];
    for (budget, expected) in cases {
        let chunks = build(ChunkLimits::new(budget, 10).unwrap(), &devices);
        let counts: Vec<usize> = chunks.iter().map(|chunk| chunk.device_count).collect();
        assert_eq!(counts, expected, "budget {budget}");
        assert!(chunks.iter().all(|chunk| chunk.payload.len() <= budget));
    }
}

#[test]
fn each_device_is_serialised_exactly_once() {
    struct Counted<'a> {
        calls: &'a Cell<usize>,
        value: usize,
    }
    impl Serialize for Counted<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            self.calls.set(self.calls.get() + 1);
            serializer.serialize_u64(self.value as u64)
        }
    }

    let calls = Cell::new(0);
    let mut builder = ChunkBuilder::new(ChunkLimits::new(64, 5).unwrap());
    for value in 0..500 {
        builder
            .push(&Counted {
                calls: &calls,
                value,
            })
            .unwrap();
    }
    assert_eq!(calls.get(), 500);
    let chunks = builder.finish();
    assert!(chunks.len() > 1);
    let all: Vec<String> = chunks.iter().flat_map(|chunk| elements_of(chunk)).collect();
    let expected: Vec<String> = (0..500).map(|value: usize| value.to_string()).collect();
    assert_eq!(all, expected);
}

#[test]
fn pre_serialised_bytes_that_are_not_one_json_value_are_refused_without_changing_the_builder() {
    let cases: [&[u8]; 6] = [b"", b"   ", b"{", b"{} {}", b"nope", b"[1,]"];
    let mut builder = ChunkBuilder::new(ChunkLimits::default());
    builder.push_serialized(b"1").unwrap();
    for bytes in cases {
        let error = builder.push_serialized(bytes).unwrap_err();
        assert!(
            matches!(error, PushError::InvalidJson(_)),
            "{:?} gave {error:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(builder.device_count(), 1);
    }
    builder.push_serialized(b"2").unwrap();
    assert_eq!(builder.finish(), vec![b"[1,2]".to_vec()]);
}

#[test]
fn whitespace_around_a_pre_serialised_device_is_dropped() {
    let mut builder = ChunkBuilder::new(ChunkLimits::default());
    builder
        .push_serialized(b"  {\"ip\": \"10.0.0.1\"}\n")
        .unwrap();
    builder.push_serialized(b"\t2 ").unwrap();
    assert_eq!(
        builder.finish(),
        vec![b"[{\"ip\": \"10.0.0.1\"},2]".to_vec()]
    );
}

#[test]
fn raw_devices_are_appended_verbatim() {
    let raw = RawValue::from_string("{\"a\" : [1, 2]}".to_owned()).unwrap();
    let mut builder = ChunkBuilder::new(ChunkLimits::default());
    builder.push_raw(&raw).unwrap();
    builder.push_raw(&raw).unwrap();
    assert_eq!(
        builder.finish(),
        vec![b"[{\"a\" : [1, 2]},{\"a\" : [1, 2]}]".to_vec()]
    );
}

#[test]
fn a_device_that_could_never_be_sent_is_refused_and_the_largest_sendable_goes_alone() {
    let mut builder = ChunkBuilder::new(ChunkLimits::default());
    builder.push_serialized(b"1").unwrap();

    let too_large = padded_device(1, HARD_MAX_CHUNK_BYTES - 1);
    let error = builder.push_serialized(too_large.as_bytes()).unwrap_err();
    assert!(matches!(
        error,
        PushError::DeviceTooLarge { size, max }
            if size == HARD_MAX_CHUNK_BYTES - 1 && max == HARD_MAX_CHUNK_BYTES - 2
    ));
    assert_eq!(builder.device_count(), 1);

    let largest = padded_device(2, HARD_MAX_CHUNK_BYTES - 2);
    builder.push_serialized(largest.as_bytes()).unwrap();
    let chunks = builder.finish();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].len(), HARD_MAX_CHUNK_BYTES);
}

#[test]
fn a_device_whose_serialisation_fails_is_refused_without_changing_the_builder() {
    let mut bad = std::collections::HashMap::new();
    bad.insert(vec![1u8], 1);
    let mut builder = ChunkBuilder::new(ChunkLimits::default());
    builder.push(&1).unwrap();
    let error = builder.push(&bad).unwrap_err();
    assert!(matches!(error, PushError::Serialize(_)));
    builder.push(&2).unwrap();
    assert_eq!(builder.finish(), vec![b"[1,2]".to_vec()]);
}

#[test]
fn chunk_limits_are_validated() {
    let cases: [(usize, usize, Result<(), LimitsError>); 7] = [
        (DEFAULT_MAX_CHUNK_BYTES, 1000, Ok(())),
        (2, 1, Ok(())),
        (HARD_MAX_CHUNK_BYTES, 1, Ok(())),
        (
            0,
            1000,
            Err(LimitsError::BelowMinimum {
                name: "max_chunk_bytes",
                value: 0,
                min: 2,
            }),
        ),
        (
            1,
            1000,
            Err(LimitsError::BelowMinimum {
                name: "max_chunk_bytes",
                value: 1,
                min: 2,
            }),
        ),
        (
            HARD_MAX_CHUNK_BYTES + 1,
            1000,
            Err(LimitsError::AboveMaximum {
                name: "max_chunk_bytes",
                value: HARD_MAX_CHUNK_BYTES + 1,
                max: HARD_MAX_CHUNK_BYTES,
            }),
        ),
        (
            1024,
            0,
            Err(LimitsError::BelowMinimum {
                name: "max_devices_per_chunk",
                value: 0,
                min: 1,
            }),
        ),
    ];
    for (bytes, devices, expected) in cases {
        let got = ChunkLimits::new(bytes, devices).map(|limits| {
            assert_eq!(limits.max_chunk_bytes(), bytes);
            assert_eq!(limits.max_devices_per_chunk(), devices);
        });
        assert_eq!(got, expected, "({bytes}, {devices})");
    }
    assert_eq!(ChunkLimits::default(), ChunkLimits::new(MIB, 1000).unwrap());
}

#[test]
fn limits_errors_read_as_configuration_messages() {
    let error = ChunkLimits::new(HARD_MAX_CHUNK_BYTES + 1, 1).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "max_chunk_bytes must be at most {HARD_MAX_CHUNK_BYTES}, got {}",
            HARD_MAX_CHUNK_BYTES + 1
        )
    );
    let error = ChunkLimits::new(1024, 0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "max_devices_per_chunk must be at least 1, got 0"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_devices_round_trip_in_order_and_multi_device_chunks_stay_within_budget(
        sizes in prop::collection::vec(21usize..400, 0..120),
        max_bytes in 2usize..1500,
        max_devices in 1usize..12,
    ) {
        let devices: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| padded_device(i, size))
            .collect();
        let chunks = build(ChunkLimits::new(max_bytes, max_devices).unwrap(), &devices);

        prop_assert!(!chunks.is_empty());
        let total = i32::try_from(chunks.len()).unwrap();
        let mut seen = Vec::new();
        let mut per_chunk = Vec::new();
        for (position, chunk) in chunks.iter().enumerate() {
            prop_assert_eq!(chunk.index, i32::try_from(position).unwrap());
            prop_assert_eq!(chunk.total, total);
            prop_assert_eq!(chunk.is_final, position + 1 == chunks.len());
            let elements = elements_of(&chunk.payload);
            prop_assert_eq!(elements.len(), chunk.device_count);
            prop_assert!(chunk.device_count <= max_devices);
            if chunk.device_count > 1 || devices.is_empty() {
                prop_assert!(chunk.payload.len() <= max_bytes);
            } else {
                prop_assert!(chunk.payload.len() <= max_bytes || elements[0].len() + 2 > max_bytes);
            }
            per_chunk.push(elements.clone());
            seen.extend(elements);
        }
        prop_assert_eq!(&seen, &devices);

        // Greedy: a chunk closed only because the next device did not fit it.
        for pair in per_chunk.windows(2) {
            let (current, next) = (&pair[0], &pair[1]);
            let current_bytes: usize = 2 + current.len() - 1 + current.iter().map(String::len).sum::<usize>();
            prop_assert!(
                current.len() == max_devices || current_bytes + 1 + next[0].len() > max_bytes
            );
        }
    }
}

#[test]
fn taking_closed_chunks_while_building_gives_the_same_stream_as_building_at_once() {
    let limits = ChunkLimits::new(4 * 1024, 50).unwrap();
    let devices: Vec<String> = (0..2_345)
        .map(|i| serde_json::to_string(&device(i)).unwrap())
        .collect();
    let whole = build(limits, &devices);

    let mut b = ChunkBuilder::new(limits);
    let mut taken: Vec<(Vec<u8>, usize)> = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        b.push_serialized(d.as_bytes()).unwrap();
        if i % 97 == 0 {
            taken.extend(b.take_closed());
        }
    }
    taken.extend(b.take_closed());
    assert_eq!(b.chunk_count(), whole.len());
    let rest = b.finish_chunks();
    assert_eq!(taken.len() + rest.len(), whole.len());
    for (i, (payload, count)) in taken.iter().enumerate() {
        assert_eq!(payload, &whole[i].payload);
        assert_eq!(*count, whole[i].device_count);
    }
    for c in &rest {
        let w = &whole[usize::try_from(c.index).unwrap()];
        assert_eq!(c, w);
    }
}

#[test]
fn an_empty_stream_after_nothing_was_taken_is_one_empty_chunk() {
    let mut b = ChunkBuilder::new(ChunkLimits::default());
    assert!(b.take_closed().is_empty());
    let chunks = b.finish_chunks();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].payload, b"[]");
    assert!(chunks[0].is_final);
}
